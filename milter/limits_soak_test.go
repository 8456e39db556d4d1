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
	testStalled(t, conns, milter.DefaultMaxConnections, 384<<20)
}
