"""The annotations vaultbridge writes on the Secrets it manages (names only, never values)."""

VERSION_ANNOTATION = "vaultbridge.io/vault-version"
"""The Vault KV version the Secret holds."""
ROTATION_ANNOTATION = "vaultbridge.io/rotation-id"
"""The rotation that wrote it (on a pre-image: the rotation it belongs to)."""
ABSENT_ANNOTATION = "vaultbridge.io/absent-keys"
"""On a pre-image: the keys Ceph did not hold before, which a rollback removes again."""
