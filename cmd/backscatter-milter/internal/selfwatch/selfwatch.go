// Package selfwatch tells a postmaster that their own MTA emits
// backscatter before a four-week listing has done the damage: it looks our
// outbound addresses up in backscatter DNSBLs on a schedule, and counts the
// non-delivery reports our MTA still generated, by whether the original's
// return path was authenticated.
package selfwatch

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
)

// DefaultZone is the list every backscatter self-watch asks when none is
// configured: it lists servers that bounce or auto-reply to forged senders.
const DefaultZone = "ips.backscatterer.org=127.0.0.2"

// DefaultInterval is how often the egress addresses are looked up.
const DefaultInterval = time.Hour

// MaxAddrs bounds how many addresses the egress prefixes may expand to:
// each costs one query per zone and interval.
const MaxAddrs = 1024

// Expand turns the configured egress prefixes into addresses, refusing more
// than MaxAddrs in total.
func Expand(prefixes []netip.Prefix) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, p := range prefixes {
		p = p.Masked()
		bits := p.Addr().BitLen() - p.Bits()
		if bits > 10 { // 2^10 = MaxAddrs
			return nil, fmt.Errorf("%s holds more than %d addresses; list the outbound hosts", p, MaxAddrs)
		}
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
			if len(out) > MaxAddrs {
				return nil, fmt.Errorf("egress addresses expand to more than %d", MaxAddrs)
			}
			if !a.Next().IsValid() {
				break
			}
		}
	}
	return out, nil
}

// State is what one zone said about one egress address at its last check.
type State struct {
	IP      netip.Addr
	Zone    string
	Listed  bool
	Answers []netip.Addr
	TXT     string
	Err     error     // the last lookup failed: Listed keeps its previous value
	Checked time.Time // when the last answer (or error) came
	Known   bool      // an answer has been received at least once
}

// Watcher looks the egress addresses up in its zones. Its methods are safe
// for concurrent use.
type Watcher struct {
	IPs      []netip.Addr
	Checker  *dnsbl.Checker // its zones are the lists to watch
	Interval time.Duration
	Log      *zap.Logger
	Now      func() time.Time

	mu    sync.Mutex
	state map[string]*State // ip + " " + zone
}

func (w *Watcher) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watcher) log() *zap.Logger {
	if w.Log != nil {
		return w.Log
	}
	return zap.NewNop()
}

// Check looks every address up once and returns the states, sorted by
// address and zone. A listing is logged as a warning; a failed lookup keeps
// what was known before (a DNS outage says nothing about a listing).
func (w *Watcher) Check(ctx context.Context) []State {
	for _, ip := range w.IPs {
		// bounceClass true: a backscatter zone's sender scope never skips it.
		res := w.Checker.Check(ctx, ip, true)
		for _, z := range res.Zones {
			w.note(ip, z)
		}
	}
	return w.States()
}

func (w *Watcher) note(ip netip.Addr, z dnsbl.ZoneResult) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == nil {
		w.state = map[string]*State{}
	}
	key := ip.String() + " " + z.Zone.Name
	s := w.state[key]
	if s == nil {
		s = &State{IP: ip, Zone: z.Zone.Name}
		w.state[key] = s
	}
	s.Checked = w.now()
	switch z.Status {
	case dnsbl.StatusListed, dnsbl.StatusNotListed:
		if z.Listed {
			w.log().Warn("our outbound address is listed on a backscatter DNSBL: our MTA sends bounces or auto-replies to forged senders",
				zap.String("ip", ip.String()), zap.String("zone", z.Zone.Name), zap.Any("answers", z.Answers), zap.String("txt", z.TXT))
		} else if s.Listed {
			w.log().Info("our outbound address is no longer listed", zap.String("ip", ip.String()), zap.String("zone", z.Zone.Name))
		}
		s.Listed, s.Answers, s.TXT, s.Err, s.Known = z.Listed, z.Answers, z.TXT, nil, true
	default:
		err := z.Err
		if err == nil {
			err = fmt.Errorf("%s", z.Status)
		}
		s.Err = err
		w.log().Warn("self-watch lookup failed: listing state unknown", zap.String("ip", ip.String()),
			zap.String("zone", z.Zone.Name), zap.Error(err))
	}
}

// States returns a copy of the last states, sorted by address and zone.
func (w *Watcher) States() []State {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]State, 0, len(w.state))
	for _, s := range w.state {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].IP.Compare(out[j].IP); c != 0 {
			return c < 0
		}
		return out[i].Zone < out[j].Zone
	})
	return out
}

// Run checks at once, then every Interval, until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	iv := w.Interval
	if iv <= 0 {
		iv = DefaultInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		w.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
