// Package resolver is the project's one seam to DNS: every lookup (DNSBL, SPF,
// DKIM) goes through the Resolver interface, so tests can point it at an
// in-process server and a change of DNS library touches this package only.
// Client asks the servers; Cache keeps a Client's answers for their TTL (SPF
// and DKIM use it; package dnsbl caches its own).
package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// ErrNotFound means the name does not exist or has no record of the asked
// type (NXDOMAIN or NODATA). It is an answer, not a failure.
var ErrNotFound = errors.New("dns: no such record")

// ErrTemporary wraps every failure that says nothing about the record:
// timeout, SERVFAIL, REFUSED, a dead or garbled server. Callers fail open.
var ErrTemporary = errors.New("dns: temporary failure")

// Resolver answers the few DNS questions the milter asks. TTLs are returned
// where callers cache (DNSBL); the others follow net.Resolver's shapes so the
// SPF and DKIM libraries can use them directly.
type Resolver interface {
	// LookupA returns the IPv4 addresses of name with the smallest TTL of the answer.
	LookupA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error)
	// LookupTXT returns each TXT record of name as one string (its character-strings joined).
	LookupTXT(ctx context.Context, name string) ([]string, time.Duration, error)
	// LookupIP returns the A and AAAA addresses of host.
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
	// LookupMX returns the MX records of name.
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	// LookupPTR returns the names of addr.
	LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error)
}

// IsNotFound reports whether err says the record does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsTemporary reports whether err is a failure to get an answer.
func IsTemporary(err error) bool { return errors.Is(err, ErrTemporary) }
