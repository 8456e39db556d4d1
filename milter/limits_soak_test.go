//go:build soak

package milter_test

import (
	"testing"

	"github.com/backscatter-milter/backscatter-milter/milter"
)

// TestMemoryStalledConnectionsSoak is the figure docs/security.md gives:
// 5,000 connections stalled inside nearly 1 MiB packets against the
// default connection cap (make soak).
func TestMemoryStalledConnectionsSoak(t *testing.T) {
	const conns = 5000
	// Each kept connection holds its 1 MiB packet; the garbage collector
	// may let the heap reach twice what is live before it runs.
	testStalled(t, conns, milter.DefaultMaxConnections, 64<<20+milter.DefaultMaxConnections*(2<<20))
}
