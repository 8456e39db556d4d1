// Package await lets tests wait for a condition instead of sleeping a fixed
// time: the condition is polled, quickly at first, until it holds or a
// deadline passes.
package await

import "time"

// maxInterval bounds the pause between two polls.
const maxInterval = 100 * time.Millisecond

// True polls cond until it returns true, and reports whether it did within
// timeout. cond runs at least once, and once more at the deadline.
func True(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left))
		pause = min(2*pause, maxInterval)
	}
}
