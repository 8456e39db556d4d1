package policy

import (
	"context"
	"net/netip"
	"time"
)

// The policy asks its sources of facts through these small interfaces, so it
// can be tested with fakes and so the wiring (package main) chooses the
// concrete implementations: dnsbl, policy/batv, policy/sent, policy/auth.

// Listing is one DNSBL zone that lists the client (or an allowlist that
// vouches for it: negative weight).
type Listing struct {
	Zone   string
	Weight int
	Detail string // the answer, and the TXT explanation when fetched
}

// Lists starts DNSBL lookups for a client. Lookups must be concurrent and
// bounded by one deadline, and fail open: an error is a note, not a listing.
type Lists interface {
	Start(ctx context.Context, ip netip.Addr, bounceClass bool) PendingLists
}

// PendingLists is a set of lookups in flight.
type PendingLists interface {
	// Wait returns the listings, and notes about zones that failed or were skipped.
	Wait(ctx context.Context) (listings []Listing, notes []string)
}

// TagStatus is the state of a BATV tag on a recipient.
type TagStatus string

const (
	TagOK      TagStatus = "ok"
	TagMissing TagStatus = "missing"
	TagBad     TagStatus = "bad"
	TagExpired TagStatus = "expired"
)

// Tagger signs outbound senders and verifies inbound recipients (BATV).
type Tagger interface {
	// Enabled reports whether BATV applies to addresses in domain.
	Enabled(domain string) bool
	Sign(addr string) (string, error)
	Verify(addr string) TagStatus
	// Strip returns addr without its tag (addr itself when it has none):
	// a verified tag is removed before delivery.
	Strip(addr string) string
	// Grace reports whether unsigned bounces are still only scored lightly
	// (the grace window after BATV was switched on).
	Grace(now time.Time) bool
}

// SentLog remembers the Message-IDs of what we sent.
type SentLog interface {
	Record(ctx context.Context, messageID string, at time.Time) error
	Seen(ctx context.Context, messageID string) (bool, error)
}

// AuthResult is the state of the return path of an inbound message.
type AuthResult string

const (
	Authenticated   AuthResult = "authenticated"
	Unauthenticated AuthResult = "unauthenticated"
	Forged          AuthResult = "forged" // SPF fail
	AuthUnknown     AuthResult = "unknown"
)

// ReturnPath checks whether the envelope sender is authenticated.
type ReturnPath interface {
	// SPF evaluates the sender (or HELO for <>) against the client IP.
	SPF(ctx context.Context, ip netip.Addr, helo, mailFrom string) (result, domain string, err error)
	// Result combines the SPF result with DKIM signatures found in raw
	// (raw may be nil: SPF only) into one verdict with a one-line reason.
	Result(ctx context.Context, spfResult string, raw []byte, mailFrom string) (AuthResult, string)
	// HasAlignedSignature reports, from headers only, whether a DKIM
	// signature could align with mailFrom: only then is the body worth keeping.
	HasAlignedSignature(dkimSignatures []string, mailFrom string) bool
}
