//go:build tools

// Package tools pins kube-controller-manager, which tests/conformance/build
// compiles from the same k8s.io/kubernetes release as tests/envtest (this
// go.mod is envtest's with the module path changed; keep the two in step).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
