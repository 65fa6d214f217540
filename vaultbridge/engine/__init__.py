"""Runs rotations: drives the pure state machine against Vault, Kubernetes and Ceph ports."""
