//go:build tools

// Package conformance pins the upstream programs that ./build compiles besides
// the suite: echo-basic, the backend every conformance Deployment runs.
package conformance

import (
	_ "sigs.k8s.io/gateway-api/conformance/echo-basic"
)
