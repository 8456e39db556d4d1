//go:build soak

package main

import "testing"

// TestSoak is the full run of issue 7 item 5: 10,000 messages, 120
// concurrent SMTP sessions, DNS faults and a milter restart. It takes
// minutes, so it is built only with -tags soak (make soak).
func TestSoak(t *testing.T) {
	runSoak(t, soakSize{messages: 10000, sessions: 120, perSession: 4})
}
