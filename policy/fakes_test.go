package policy

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"
)

type fakeLists map[netip.Addr][]Listing // listed IPs; bounce-only scope is modelled by zone name prefix "bounce."

func (f fakeLists) Start(_ context.Context, ip netip.Addr, bounceClass bool) PendingLists {
	var out []Listing
	for _, l := range f[ip] {
		if strings.HasPrefix(l.Zone, "bounce.") && !bounceClass {
			continue
		}
		out = append(out, l)
	}
	return fakePending(out)
}

type fakePending []Listing

func (p fakePending) Wait(context.Context) ([]Listing, []string) { return p, nil }

type fakeTagger struct{ grace bool }

func (fakeTagger) Enabled(string) bool { return true }
func (fakeTagger) Sign(addr string) (string, error) {
	l, d, _ := strings.Cut(addr, "@")
	return l + "+prvs=0123abcdef@" + d, nil
}
func (fakeTagger) Verify(addr string) TagStatus {
	switch {
	case strings.Contains(addr, "+prvs=0123abcdef@"):
		return TagOK
	case strings.Contains(addr, "+prvs=0000000000@"):
		return TagExpired
	case strings.Contains(addr, "+prvs="):
		return TagBad
	}
	return TagMissing
}
func (f fakeTagger) Grace(time.Time) bool { return f.grace }
func (fakeTagger) Strip(addr string) string {
	if i := strings.Index(addr, "+prvs="); i >= 0 {
		if j := strings.LastIndexByte(addr, '@'); j > i {
			return addr[:i] + addr[j:]
		}
	}
	return addr
}

type fakeSent struct {
	mu  sync.Mutex
	ids map[string]bool
	err error
}

func (f *fakeSent) Record(_ context.Context, id string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ids == nil {
		f.ids = map[string]bool{}
	}
	f.ids[id] = true
	return f.err
}
func (f *fakeSent) Seen(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ids[id], f.err
}

// fakeAuth: SPF result by sender domain; DKIM never present.
type fakeAuth map[string]string

func (f fakeAuth) SPF(_ context.Context, _ netip.Addr, _ string, from string) (string, string, error) {
	r, ok := f[Domain(from)]
	if !ok {
		return "none", Domain(from), nil
	}
	if r == "temperror" {
		return r, Domain(from), errors.New("dns: temporary failure")
	}
	return r, Domain(from), nil
}
func (f fakeAuth) Result(_ context.Context, spf string, _ []byte, _ string) (AuthResult, string) {
	switch spf {
	case "pass":
		return Authenticated, "spf=pass"
	case "fail":
		return Forged, "spf=fail"
	case "temperror":
		return AuthUnknown, "spf=temperror"
	}
	return Unauthenticated, "spf=" + spf
}
func (fakeAuth) HasAlignedSignature([]string, string) bool { return false }
