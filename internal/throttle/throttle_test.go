package throttle

import (
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var th Throttle
	steps := []struct {
		at   time.Duration
		ok   bool
		held int
	}{
		{0, true, 0},
		{10 * time.Second, false, 0},
		{59 * time.Second, false, 0},
		{60 * time.Second, true, 2},
		{61 * time.Second, false, 0},
		{5 * time.Minute, true, 1},
		{6 * time.Minute, true, 0},
	}
	for _, s := range steps {
		ok, held := th.Allow(t0.Add(s.at), time.Minute)
		if ok != s.ok || held != s.held {
			t.Errorf("at +%s: Allow = %v, %d; want %v, %d", s.at, ok, held, s.ok, s.held)
		}
	}
}

func TestKeyed(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	k := Keyed[string]{Interval: time.Minute}
	if ok, _ := k.Allow("a", t0); !ok {
		t.Fatal("first a held")
	}
	if ok, _ := k.Allow("b", t0); !ok {
		t.Fatal("first b held: keys share a throttle")
	}
	if ok, _ := k.Allow("a", t0.Add(time.Second)); ok {
		t.Fatal("second a let through")
	}
	if ok, held := k.Allow("a", t0.Add(2*time.Minute)); !ok || held != 1 {
		t.Fatalf("a after the interval: %v, %d", ok, held)
	}
}
