package milter_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// checkerLists presents a real dnsbl.Checker to the policy, as the daemon's
// wiring does.
type checkerLists struct{ c *dnsbl.Checker }

func (l checkerLists) Start(ctx context.Context, ip netip.Addr, bounceClass bool) policy.PendingLists {
	return checkerPending{l.c.Start(ctx, ip, bounceClass)}
}

type checkerPending struct{ p *dnsbl.Pending }

func (p checkerPending) Wait(ctx context.Context) ([]policy.Listing, []string) {
	var ls []policy.Listing
	var notes []string
	for _, z := range p.p.Wait(ctx).Zones {
		switch z.Status {
		case dnsbl.StatusListed:
			ls = append(ls, policy.Listing{Zone: z.Zone.Name, Weight: z.Weight})
		case dnsbl.StatusError:
			notes = append(notes, "dnsbl "+z.Zone.Name+": "+string(z.ErrKind))
		}
	}
	return ls, notes
}

// vmRSS returns the process's resident set size in bytes (0 if unknown).
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestScaleThousandSessions holds 1,000 MTA sessions open at once, each
// stopped after RCPT (its DNSBL lookups done), against a real dnsbl.Checker
// asking a real DNS server whose answers take 20 ms, so that sessions for
// the same client overlap in flight. It checks that the whole process
// (both the MTA side and the milter side) stays within 64 MiB RSS, and that
// each zone was asked at most once per client address.
func TestScaleThousandSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test: 1,000 concurrent sessions take a few seconds; not run with -short")
	}
	const (
		sessions = 1000
		clients  = 50 // distinct client addresses, so 20 sessions share each
		maxRSS   = 64 << 20
	)
	zoneText := ""
	for i := range clients {
		if i%10 == 0 { // every tenth client is listed in both zones
			zoneText += fmt.Sprintf("%d.0.0.10.bl.test. 300 IN A 127.0.0.2\n%d.0.0.10.backscatter.test. 300 IN A 127.0.0.2\n", i, i)
		}
	}
	dns := dnstest.Start(t, zoneText)
	dns.SetFault("*", dnstest.Fault{Delay: 20 * time.Millisecond})
	var zones []dnsbl.Zone
	for _, spec := range []string{"bl.test=127.0.0.2*4 senders=any", "backscatter.test=127.0.0.2*6 senders=bounce"} {
		z, err := dnsbl.ParseZoneSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		zones = append(zones, z)
	}
	r, err := resolver.New(dns.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checker, err := dnsbl.New(zones, r, dnsbl.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	eng := testEngine()
	eng.Lists = checkerLists{checker}
	eng.Tagger = nil // BATV would refuse every untagged bounce and hide the DNSBL's effect
	h := start(t, eng, func(o *milter.Options) { o.Log = zap.NewNop(); o.MaxConnections = sessions })

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rssBefore := vmRSS()

	client := h.client()
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	errs := make(chan error, sessions)
	var mu sync.Mutex
	rcptActions := map[gomilter.ActionType]int{}
	ready.Add(sessions)
	done.Add(sessions)
	for i := range sessions {
		go func() {
			defer done.Done()
			ip := fmt.Sprintf("10.0.0.%d", i%clients)
			from := "alice@remote.test"
			if (i/clients)%2 == 1 {
				from = "" // bounce-class: the safe-mode zone is asked too
			}
			readyOnce := sync.OnceFunc(ready.Done)
			defer readyOnce()
			fail := func(stage string, err error) { errs <- fmt.Errorf("session %d %s: %w", i, stage, err) }
			macros := gomilter.NewMacroBag()
			macros.Set(gomilter.MacroClientAddr, ip)
			s, err := client.Session(macros)
			if err != nil {
				fail("open", err)
				return
			}
			defer s.Close()
			if _, err := s.Conn("client.test", gomilter.FamilyInet, 25, ip); err != nil {
				fail("connect", err)
				return
			}
			if _, err := s.Helo("client.test"); err != nil {
				fail("helo", err)
				return
			}
			if _, err := s.Mail(from, ""); err != nil {
				fail("mail", err)
				return
			}
			act, err := s.Rcpt("bob@example.org", "")
			if err != nil {
				fail("rcpt", err)
				return
			}
			mu.Lock()
			rcptActions[act.Type]++
			mu.Unlock()
			readyOnce()
			<-release
			if act.StopProcessing() {
				return
			}
			macros.Set(gomilter.MacroQueueId, fmt.Sprintf("Q%d", i))
			if _, err := s.DataStart(); err != nil {
				fail("data", err)
				return
			}
			if _, err := s.HeaderField("Subject", " hello", nil); err != nil {
				fail("header", err)
				return
			}
			if _, err := s.HeaderEnd(); err != nil {
				fail("eoh", err)
				return
			}
			if _, err := s.BodyChunk([]byte("hello\r\n")); err != nil {
				fail("body", err)
				return
			}
			if _, _, err := s.End(); err != nil {
				fail("end", err)
			}
		}()
	}
	waited := make(chan struct{})
	go func() { ready.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(60 * time.Second):
		t.Fatal("1,000 sessions did not all reach RCPT within 60 s")
	}
	// Every session is open and past its lookups: this is the peak.
	var peak runtime.MemStats
	runtime.ReadMemStats(&peak)
	rssPeak := vmRSS()
	open := h.srv.Active()
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if open != sessions {
		t.Errorf("milter saw %d open sessions at the peak, want %d", open, sessions)
	}
	t.Logf("RSS %.1f MiB before, %.1f MiB with %d sessions open (+%.1f MiB); heap in use %.1f → %.1f MiB; goroutines %d; RCPT actions %v",
		float64(rssBefore)/(1<<20), float64(rssPeak)/(1<<20), sessions, float64(rssPeak-rssBefore)/(1<<20),
		float64(before.HeapInuse)/(1<<20), float64(peak.HeapInuse)/(1<<20), runtime.NumGoroutine(), rcptActions)
	if rssPeak > maxRSS {
		t.Errorf("RSS %.1f MiB with %d sessions open, goal ≤ 64 MiB (MTA and milter sides together)", float64(rssPeak)/(1<<20), sessions)
	}

	// Deduplication: each zone asked at most once per client address, and
	// asked at all (so the check above is not vacuous).
	for i := range clients {
		ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		for _, z := range []string{"bl.test", "backscatter.test"} {
			q := dns.Queries(dnsbl.QueryName(ip, z), "A")
			if q != 1 {
				t.Errorf("%s asked %d times for %s, want exactly 1 (20 sessions share the address)", z, q, ip)
			}
		}
	}
	// Bounce-class sessions from listed clients were refused at RCPT:
	// bl.test (4) + backscatter.test (6) reach the reject threshold (10);
	// ordinary senders from them get bl.test only. Five listed addresses,
	// ten bounce-class sessions each.
	if refused := rcptActions[gomilter.ActionRejectWithCode] + rcptActions[gomilter.ActionReject]; refused != 50 {
		t.Errorf("%d RCPTs refused, want 50: the DNSBL answers did not reach the policy as expected (actions %v)", refused, rcptActions)
	}
}
