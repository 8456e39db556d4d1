package await

import (
	"testing"
	"time"
)

func TestTrue(t *testing.T) {
	n := 0
	if !True(10*time.Second, func() bool { n++; return n == 5 }) || n != 5 {
		t.Errorf("condition met on poll %d, want True after poll 5", n)
	}
	calls := 0
	if True(20*time.Millisecond, func() bool { calls++; return false }) {
		t.Error("True for a condition that never holds")
	}
	if calls < 2 {
		t.Errorf("cond polled %d times before giving up, want at least 2 (first try and deadline)", calls)
	}
	if !True(0, func() bool { return true }) {
		t.Error("a condition that holds at once is true even with no time left")
	}
}
