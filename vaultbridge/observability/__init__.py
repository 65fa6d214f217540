"""Metrics, health endpoints and a logger that never prints a secret."""
