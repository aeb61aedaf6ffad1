// Package conformance runs the Gateway API conformance suite against Weir.
//
// ./build compiles this package with `go test -c` into conformance.test; ./run
// starts it against the harness cluster. Every option comes from the suite's
// own command-line flags (-gateway-class, -supported-features, -skip-tests,
// -run-test, -conformance-profiles, -report-output, -organization, -project,
// -url, -version, -contact, -disable-parallel-tests, ...), read by
// conformance.DefaultOptions, so that what ./run passes is exactly what the
// report records and nothing is decided here.
package conformance

import (
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunConformance(t)
}
