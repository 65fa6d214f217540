# Vault/OpenBao policy 'vaultbridge' for vaultbridge, rendered by
# `vaultbridge policy render --kind vault` from 2 CredentialRotation(s). Re-render when CRs change.

# credential source of rook-ceph/app
path "secret/data/ceph/app" {
  capabilities = ["create", "read", "update"]
}

# credential source of rook-ceph/app
path "secret/metadata/ceph/app" {
  capabilities = ["patch", "read"]
}

# credential source of rook-ceph/rgw-keystone
path "secret/data/ceph/rgw-keystone" {
  capabilities = ["read"]
}

# credential source of rook-ceph/rgw-keystone
path "secret/metadata/ceph/rgw-keystone" {
  capabilities = ["patch", "read"]
}

# random bytes for generated credentials and cephx keys
path "sys/tools/random/*" {
  capabilities = ["update"]
}

# its own token (Vault Agent and vaultbridge check it)
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# its own token (Vault Agent renews it)
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# `vaultbridge check` and dry runs ask what the token may do
path "sys/capabilities-self" {
  capabilities = ["update"]
}
