package dnsbl_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
)

const healthZone = `
$TTL 300
2.0.0.127.good.test.       A 127.0.0.2
1.2.0.192.good.test.       A 127.0.0.2
2.0.0.127.everything.test. A 127.0.0.2
1.0.0.127.everything.test. A 127.0.0.2
1.2.0.192.everything.test. A 127.0.0.2
1.2.0.192.empty.test.      A 127.0.0.2
2.0.0.127.fail.test.       A 127.0.0.2
2.0.0.127.quota.test.      A 127.255.255.254
`

func TestHealth(t *testing.T) {
	s := dnstest.Start(t, healthZone)
	s.SetFault("2.0.0.127.fail.test", dnstest.Fault{Rcode: dns.RcodeServerFailure})
	c := newChecker(t, s.Addr, dnsbl.Options{Timeout: 500 * time.Millisecond},
		"good.test", "everything.test", "empty.test", "fail.test", "quota.test")
	if len(c.Health()) != 0 {
		t.Fatalf("health before any check: %v", c.Health())
	}
	// Before any health check every zone is asked.
	if r := c.Check(ctx, ip("192.0.2.1"), false); r.Score() != 3 {
		t.Fatalf("score before health check %d, want 3", r.Score())
	}

	got := c.CheckHealth(ctx)
	want := map[string]string{
		"good.test":       "",
		"everything.test": "127.0.0.1 is listed",
		"empty.test":      "127.0.0.2 is not listed",
		"fail.test":       "SERVFAIL",
		"quota.test":      "refused",
	}
	for zone, w := range want {
		err, ok := got[zone]
		switch {
		case !ok:
			t.Errorf("%s: no health result", zone)
		case w == "" && err != nil:
			t.Errorf("%s: %v, want healthy", zone, err)
		case w != "" && (err == nil || !errors.Is(err, dnsbl.ErrUnhealthy) || !strings.Contains(err.Error(), w)):
			t.Errorf("%s: %v, want an error containing %q", zone, err, w)
		}
	}
	if h := c.Health(); len(h) != 5 || h["good.test"] != nil || h["fail.test"] == nil {
		t.Errorf("Health() = %v", h)
	}

	before := s.Queries("1.2.0.192.everything.test", "A")
	c2 := c.Check(ctx, netip.MustParseAddr("192.0.2.1"), false)
	for _, zr := range c2.Zones {
		wantStatus := dnsbl.StatusSkippedHealth
		if zr.Zone.Name == "good.test" {
			wantStatus = dnsbl.StatusListed
		}
		if zr.Status != wantStatus {
			t.Errorf("%s: %s, want %s", zr.Zone.Name, zr.Status, wantStatus)
		}
	}
	if c2.Score() != 1 {
		t.Errorf("score %d, want 1 (unhealthy zones skipped)", c2.Score())
	}
	if s.Queries("1.2.0.192.everything.test", "A") != before {
		t.Error("an unhealthy zone was queried")
	}

	// Repaired zones come back at the next health check.
	s.SetFault("2.0.0.127.fail.test", dnstest.Fault{})
	if err := s.AddZone("2.0.0.127.empty.test. 300 A 127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	got = c.CheckHealth(ctx)
	if got["fail.test"] != nil || got["empty.test"] != nil || got["everything.test"] == nil {
		t.Errorf("after repair: %v", got)
	}
	if r := c.Check(ctx, ip("192.0.2.1"), false); r.Zones[2].Status != dnsbl.StatusListed {
		t.Errorf("repaired zone: %+v", r.Zones[2])
	}
}

func TestRunHealth(t *testing.T) {
	s := dnstest.Start(t, healthZone)
	c := newChecker(t, s.Addr, dnsbl.Options{}, "good.test", "empty.test")
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.RunHealth(hctx, 10*time.Millisecond); close(done) }()
	waitFor(t, func() bool { return s.Queries("2.0.0.127.good.test", "A") >= 3 })
	cancel()
	<-done
	h := c.Health()
	if h["good.test"] != nil || h["empty.test"] == nil {
		t.Errorf("Health() = %v", h)
	}
	// A health check cut short by its caller records nothing.
	c.CheckHealth(hctx)
	if h := c.Health(); h["good.test"] != nil {
		t.Errorf("canceled check marked a zone unhealthy: %v", h)
	}
}
