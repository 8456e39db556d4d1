// Package policytest holds fakes of the policy's sources of facts (DNSBL,
// BATV, sent log, return path) for the unit tests of policy and milter: one
// set, so that every test reads the same rules. Each fake's data alone
// decides what it answers.
package policytest

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// Lists lists the IPs in Listed. A zone whose name starts with "bounce." is
// consulted for bounce-class senders only (safe mode). PanicStart and
// PanicWait make it panic, for the session's recovery; Starts, when set,
// counts the lookups started.
type Lists struct {
	Listed     map[netip.Addr][]policy.Listing
	PanicStart bool
	PanicWait  bool
	Starts     *Counter
}

// Counter is a count safe for concurrent use.
type Counter struct {
	mu sync.Mutex
	n  int
}

// Inc adds one.
func (c *Counter) Inc() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

// N returns the count.
func (c *Counter) N() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Start returns the zones listing ip that apply to the sender's class.
func (f Lists) Start(_ context.Context, ip netip.Addr, bounceClass bool) policy.PendingLists {
	if f.Starts != nil {
		f.Starts.Inc()
	}
	if f.PanicStart {
		panic("fake DNSBL exploded at start")
	}
	var out []policy.Listing
	for _, l := range f.Listed[ip] {
		if strings.HasPrefix(l.Zone, "bounce.") && !bounceClass {
			continue
		}
		out = append(out, l)
	}
	return pending{out, f.PanicWait}
}

type pending struct {
	listings []policy.Listing
	panics   bool
}

func (p pending) Wait(context.Context) ([]policy.Listing, []string) {
	if p.panics {
		panic("fake DNSBL exploded while waiting")
	}
	return p.listings, nil
}

// Tags the fake Tagger knows: a recipient local part ending in
// "+prvs=<GoodTag>" verifies, "+prvs=<ExpiredTag>" has expired, any other
// tag is bad.
const (
	GoodTag    = "0123abcdef"
	ExpiredTag = "0000000000"
)

// Tagger signs every address with GoodTag, in every domain. InGrace is its
// answer to Grace.
type Tagger struct{ InGrace bool }

func (Tagger) Enabled(string) bool { return true }

func (Tagger) Sign(addr string) (string, error) {
	l, d, _ := strings.Cut(addr, "@")
	return l + "+prvs=" + GoodTag + "@" + d, nil
}

func (Tagger) Verify(addr string) policy.TagStatus {
	switch {
	case strings.Contains(addr, "+prvs="+GoodTag+"@"):
		return policy.TagOK
	case strings.Contains(addr, "+prvs="+ExpiredTag+"@"):
		return policy.TagExpired
	case strings.Contains(addr, "+prvs="):
		return policy.TagBad
	}
	return policy.TagMissing
}

func (f Tagger) Grace(time.Time) bool { return f.InGrace }

// Strip removes a "+prvs=…" tag: addr itself when it has none.
func (Tagger) Strip(addr string) string {
	if i := strings.Index(addr, "+prvs="); i >= 0 {
		if j := strings.LastIndexByte(addr, '@'); j > i {
			return addr[:i] + addr[j:]
		}
	}
	return addr
}

// Sent is a sent log in memory. Err, when set, is returned by every call
// (after the call took effect); Panics makes every call panic.
type Sent struct {
	mu     sync.Mutex
	IDs    map[string]bool
	Err    error
	Panics bool
}

// NewSent returns a sent log that knows ids.
func NewSent(ids ...string) *Sent {
	s := &Sent{IDs: map[string]bool{}}
	for _, id := range ids {
		s.IDs[id] = true
	}
	return s
}

func (f *Sent) Record(_ context.Context, id string, _ time.Time) error {
	if f.Panics {
		panic("fake sent log exploded at record")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.IDs == nil {
		f.IDs = map[string]bool{}
	}
	f.IDs[id] = true
	return f.Err
}

func (f *Sent) Seen(_ context.Context, id string) (bool, error) {
	if f.Panics {
		panic("fake sent log exploded at seen")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.IDs[id], f.Err
}

// Has reports whether id was recorded (or known from the start).
func (f *Sent) Has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.IDs[id]
}

// Auth gives the SPF result by sender domain ("none" when the domain is not
// in the map; "temperror" comes with an error). No DKIM signature is ever
// present, so the result follows SPF alone.
type Auth map[string]string

func (f Auth) SPF(_ context.Context, _ netip.Addr, _ string, from string) (string, string, error) {
	d := policy.Domain(from)
	r, ok := f[d]
	if !ok {
		return "none", d, nil
	}
	if r == "temperror" {
		return r, d, errors.New("dns: temporary failure")
	}
	return r, d, nil
}

func (Auth) Result(_ context.Context, spf string, _ []byte, _ string) (policy.AuthResult, string) {
	switch spf {
	case "pass":
		return policy.Authenticated, "spf=pass"
	case "fail":
		return policy.Forged, "spf=fail"
	case "temperror":
		return policy.AuthUnknown, "spf=temperror"
	}
	return policy.Unauthenticated, "spf=" + spf
}

func (Auth) HasAlignedSignature([]string, string) bool { return false }

var (
	_ policy.Lists      = Lists{}
	_ policy.Tagger     = Tagger{}
	_ policy.SentLog    = (*Sent)(nil)
	_ policy.ReturnPath = Auth{}
)
