package auth

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"golang.org/x/net/publicsuffix"
)

// Result is the answer to "is the return path authenticated?".
type Result int

// Results, see the package documentation for how they are reached.
const (
	// Unauthenticated: nothing vouches for the return path, nothing condemns it.
	Unauthenticated Result = iota
	// Authenticated: SPF pass, or a valid DKIM signature aligned with MAIL FROM.
	Authenticated
	// Forged: SPF fail and no valid aligned DKIM signature.
	Forged
	// Unknown: a DNS failure (temperror) hid the answer and nothing passed.
	Unknown
)

// String returns the name used in logs and configuration.
func (r Result) String() string {
	switch r {
	case Authenticated:
		return "authenticated"
	case Unauthenticated:
		return "unauthenticated"
	case Forged:
		return "forged"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// SPF results as strings, the RFC 7208 §8 names plus "skipped" (no client IP,
// or a null sender without a usable HELO name: nothing to check).
const (
	SPFPass      = "pass"
	SPFFail      = "fail"
	SPFSoftFail  = "softfail"
	SPFNeutral   = "neutral"
	SPFNone      = "none"
	SPFTempError = "temperror"
	SPFPermError = "permerror"
	SPFSkipped   = "skipped"
)

// DKIMSig is the outcome of one DKIM signature.
type DKIMSig struct {
	Domain    string // d= tag, lowercased ("" when the signature is too broken to say)
	Aligned   bool   // same organizational domain as the MAIL FROM domain
	Valid     bool   // the signature verified
	TempError bool   // verification failed for a DNS failure (key lookup); it might pass later
	Err       string // why it did not verify; "" when Valid
}

// DefaultTimeout bounds a Check when Checker.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// DefaultMaxSignatures is how many DKIM signatures are verified when
// Checker.MaxSignatures is zero: enough for the author's, a list's and an
// ESP's signature, few enough that a message stuffed with signatures cannot
// make us do unbounded DNS and crypto work.
const DefaultMaxSignatures = 5

// Checker checks SPF and DKIM. The zero value is not usable: Resolver is
// required. A Checker is safe for concurrent use.
type Checker struct {
	Resolver      resolver.Resolver
	Timeout       time.Duration // for all lookups of one call; 0 means DefaultTimeout
	MaxSignatures int           // DKIM signatures verified per message; 0 means DefaultMaxSignatures
}

func (c *Checker) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	t := c.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return context.WithTimeout(ctx, t)
}

// Combine maps the SPF result and the DKIM signatures to a Result, as the
// package documentation describes.
func Combine(spfResult string, sigs []DKIMSig) Result {
	dkimTemp := false
	for _, s := range sigs {
		if s.Aligned && s.Valid {
			return Authenticated
		}
		if s.Aligned && s.TempError {
			dkimTemp = true
		}
	}
	switch spfResult {
	case SPFPass:
		return Authenticated
	case SPFFail:
		return Forged
	case SPFTempError:
		return Unknown
	}
	if dkimTemp {
		return Unknown
	}
	return Unauthenticated
}

// OrgDomain returns the organizational domain of domain (RFC 7489 §3.2): the
// public suffix plus one label, lowercased, without a trailing dot. A name
// that is itself a public suffix, or that the list cannot parse, is returned
// normalized but otherwise unchanged, so that it only matches itself.
func OrgDomain(domain string) string {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if d == "" {
		return ""
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// aligned reports relaxed alignment of a DKIM d= domain with the MAIL FROM domain.
func aligned(sigDomain, fromDomain string) bool {
	if sigDomain == "" || fromDomain == "" {
		return false
	}
	return OrgDomain(sigDomain) == OrgDomain(fromDomain)
}

// splitSender returns the local part and the lowercased domain of an
// envelope sender given with or without angle brackets; both are "" for the
// null sender. The domain is what follows the last "@" so that a quoted
// local part or a source route cannot pick it.
func splitSender(mailFrom string) (local, domain string) {
	s := strings.TrimSpace(mailFrom)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.HasPrefix(s, "@") {
		s = s[i+1:] // RFC 5321 source route: <@relay:user@dom>
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.ToLower(strings.TrimSuffix(s[i+1:], "."))
}

// oneLine keeps a log line one line long and short, whatever an error
// message quotes from hostile input.
func oneLine(s string) string {
	const limit = 200
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "…"
	}
	return s
}
