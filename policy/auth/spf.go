package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
)

// SPF checks whether ip may send mail for the MAIL FROM domain, or for the
// HELO name when mailFrom is the null sender (RFC 7208 §2.4: the identity is
// then postmaster@helo). It returns the RFC 7208 result name (or "skipped"),
// the domain checked, and for results other than pass, fail, softfail and
// neutral an error saying why (DNS failure, bad record, nothing to check).
func (c *Checker) SPF(ctx context.Context, ip netip.Addr, helo, mailFrom string) (result, domain string, err error) {
	local, domain := splitSender(mailFrom)
	sender := local + "@" + domain
	if domain == "" {
		// Null sender (or a sender without a domain, which the SMTP server
		// should have refused): the HELO identity is the only one left.
		domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(helo), "."))
		sender = "postmaster@" + domain
		if domain == "" {
			return SPFSkipped, "", errors.New("null sender and no HELO name")
		}
	}
	if strings.Contains(local, "@") {
		// The library splits at the first "@"; a quoted local part holding
		// one would make it check the wrong domain. The local part only
		// feeds the rare %{l} macro, so trade it for the right domain.
		sender = "postmaster@" + domain
	}
	if !ip.IsValid() {
		return SPFSkipped, domain, errors.New("no client IP address")
	}
	if err := checkDomain(domain); err != nil {
		// RFC 7208 §4.3: a malformed or single-label domain gives "none".
		return SPFNone, domain, err
	}

	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	res, err := spf.CheckHostWithSender(net.IP(ip.Unmap().AsSlice()), helo, sender,
		spf.WithResolver(spfResolver{c.Resolver}),
		spf.WithContext(ctx))
	switch res {
	case spf.Pass, spf.Fail, spf.SoftFail, spf.Neutral:
		// The library also returns an error naming the matched mechanism;
		// it is not a failure.
		return string(res), domain, nil
	case spf.None:
		return SPFNone, domain, errors.New("no SPF record")
	case spf.TempError:
		return SPFTempError, domain, fmt.Errorf("spf: %v", err)
	case spf.PermError:
		return SPFPermError, domain, fmt.Errorf("spf: %v", err)
	}
	return SPFPermError, domain, fmt.Errorf("spf: unexpected result %q: %v", res, err)
}

// SPFOfOriginal checks SPF of a bounced message's original sender against
// the client IP that submitted the original: in the internal-bounce role it
// tells whether the address Postfix is about to bounce to was forged. There
// is no HELO for that transaction, so a null original sender is "skipped".
func (c *Checker) SPFOfOriginal(ctx context.Context, ip netip.Addr, sender string) (result, domain string, err error) {
	return c.SPF(ctx, ip, "", sender)
}

// checkDomain applies RFC 7208 §4.3's test of a usable domain: a multi-label
// name, labels of 1–63 octets, at most 253 octets in all. Characters are left
// to DNS: internationalized names arrive as A-labels.
func checkDomain(d string) error {
	if len(d) > 253 {
		return errors.New("domain longer than 253 octets")
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q is not a multi-label domain", d)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%q has an empty or over-long label", d)
		}
		if strings.ContainsAny(l, " \t\r\n\\\"[]@") {
			return fmt.Errorf("%q is not a domain name", d)
		}
	}
	return nil
}

// spfResolver adapts resolver.Resolver to spf.DNSResolver. The library
// recognizes outcomes only by type-asserting *net.DNSError (not errors.As):
// NotFound must become IsNotFound (→ "none" or a non-matching mechanism),
// anything else IsTemporary (→ temperror). An unmapped error would be read
// as permerror, turning our resolver's trouble into the domain's fault.
type spfResolver struct{ r resolver.Resolver }

func (a spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if !validName(name) {
		return nil, invalidName(name)
	}
	txt, _, err := a.r.LookupTXT(ctx, name)
	return txt, dnsError(err, name)
}

func (a spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	if !validName(name) {
		return nil, invalidName(name)
	}
	mx, err := a.r.LookupMX(ctx, name)
	return mx, dnsError(err, name)
}

func (a spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if !validName(host) {
		return nil, invalidName(host)
	}
	addrs, err := a.r.LookupIP(ctx, host)
	if err != nil {
		return nil, dnsError(err, host)
	}
	out := make([]net.IPAddr, 0, len(addrs))
	for _, ip := range addrs {
		out = append(out, net.IPAddr{IP: net.IP(ip.Unmap().AsSlice()), Zone: ip.Zone()})
	}
	return out, nil
}

func (a spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unparsable address", Name: addr, IsNotFound: true}
	}
	names, err := a.r.LookupPTR(ctx, ip.Unmap())
	return names, dnsError(err, addr)
}

// validName reports whether name can be asked at all: at most 253 octets,
// labels of 1–63. A name that cannot be put in a query does not exist; left
// to the resolver it would fail as a temporary error, and a sender could then
// turn an SPF fail (via macros such as %{l}) or a DKIM failure (via a long
// s= or d=) into "unknown" at will.
func validName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for l := range strings.SplitSeq(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

func invalidName(name string) error {
	return &net.DNSError{Err: "invalid domain name", Name: oneLine(name), IsNotFound: true}
}

// dnsError maps the resolver's sentinel errors to the *net.DNSError shapes
// that the SPF and DKIM libraries test for.
func dnsError(err error, name string) error {
	switch {
	case err == nil:
		return nil
	case resolver.IsNotFound(err):
		return &net.DNSError{Err: "no such record", Name: name, IsNotFound: true, UnwrapErr: err}
	default:
		return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true, UnwrapErr: err}
	}
}
