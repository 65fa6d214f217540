"""vaultbridge: keeps Ceph credentials in step with HashiCorp Vault / OpenBao on Kubernetes.

Vault is the source of truth; vaultbridge writes owner-referenced Kubernetes Secrets, applies
credentials to the Ceph mon configuration database, config-key store and cephx auth database,
verifies Ceph accepts them, and only then retires the old ones; any failure rolls back.
"""

__version__ = "0.1.0"
