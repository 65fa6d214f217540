//go:build tools

// Package tools pins the helm CLI the test environment builds.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
