package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Client is a Resolver that asks one or more recursive servers directly with
// miekg/dns: UDP first, TCP when the answer is truncated.
type Client struct {
	Servers []string      // host:port, tried in order
	Timeout time.Duration // per exchange; the caller's context bounds the whole lookup
	udp     *dns.Client
	tcp     *dns.Client
}

// System is the conventional name for "use /etc/resolv.conf".
const System = "system"

// New returns a Client for spec: "system" (or "") reads /etc/resolv.conf;
// otherwise a comma-separated list of addresses, each "host" or "host:port".
func New(spec string, timeout time.Duration) (*Client, error) {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var servers []string
	if spec == "" || spec == System {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("resolver: reading /etc/resolv.conf: %w", err)
		}
		for _, s := range conf.Servers {
			servers = append(servers, net.JoinHostPort(s, conf.Port))
		}
		if len(servers) == 0 {
			return nil, errors.New("resolver: /etc/resolv.conf names no nameserver")
		}
	} else {
		for _, s := range strings.Split(spec, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
			}
			host, _, _ := net.SplitHostPort(s)
			if _, err := netip.ParseAddr(host); err != nil {
				return nil, fmt.Errorf("resolver: %q is not an IP address (a resolver must be given by address)", host)
			}
			servers = append(servers, s)
		}
		if len(servers) == 0 {
			return nil, fmt.Errorf("resolver: no server in %q", spec)
		}
	}
	return &Client{
		Servers: servers,
		Timeout: timeout,
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
	}, nil
}

// exchange asks each server in turn until one gives a usable answer.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	var lastErr error
	for _, srv := range c.Servers {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrTemporary, name, dns.TypeToString[qtype], err)
		}
		r, _, err := c.udp.ExchangeContext(ctx, m, srv)
		if err == nil && r.Truncated {
			r, _, err = c.tcp.ExchangeContext(ctx, m, srv)
		}
		if err != nil {
			lastErr = err
			continue
		}
		if r.Id != m.Id || len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, m.Question[0].Name) {
			lastErr = errors.New("answer does not match the question")
			continue
		}
		switch r.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return r, nil
		default:
			lastErr = fmt.Errorf("server %s answered %s", srv, dns.RcodeToString[r.Rcode])
		}
	}
	return nil, fmt.Errorf("%w: %s %s: %w", ErrTemporary, name, dns.TypeToString[qtype], lastErr)
}

// answers returns the records of type qtype for name, following CNAMEs the
// server included, and the smallest TTL among them.
func (c *Client) answers(ctx context.Context, name string, qtype uint16) ([]dns.RR, time.Duration, error) {
	r, err := c.exchange(ctx, name, qtype)
	if err != nil {
		return nil, 0, err
	}
	if r.Rcode == dns.RcodeNameError {
		return nil, negativeTTL(r), fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	var out []dns.RR
	var ttl uint32
	for _, rr := range r.Answer {
		if rr.Header().Rrtype != qtype {
			continue
		}
		if len(out) == 0 || rr.Header().Ttl < ttl {
			ttl = rr.Header().Ttl
		}
		out = append(out, rr)
	}
	if len(out) == 0 {
		return nil, negativeTTL(r), fmt.Errorf("%w: %s %s", ErrNotFound, name, dns.TypeToString[qtype])
	}
	return out, time.Duration(ttl) * time.Second, nil
}

// negativeTTL is the SOA minimum of a negative answer (RFC 2308), or 0.
func negativeTTL(r *dns.Msg) time.Duration {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			t := min(soa.Minttl, soa.Hdr.Ttl)
			return time.Duration(t) * time.Second
		}
	}
	return 0
}

// answerFunc asks one question: the records of type qtype for name, the
// smallest TTL among them, ErrNotFound or ErrTemporary. Client and Cache
// share the conversions below through it.
type answerFunc func(ctx context.Context, name string, qtype uint16) ([]dns.RR, time.Duration, error)

// LookupA implements Resolver.
func (c *Client) LookupA(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	return lookupA(ctx, c.answers, name)
}

// LookupTXT implements Resolver.
func (c *Client) LookupTXT(ctx context.Context, name string) ([]string, time.Duration, error) {
	return lookupTXT(ctx, c.answers, name)
}

// LookupIP implements Resolver: A and AAAA; not found only when both are.
func (c *Client) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return lookupIP(ctx, c.answers, host)
}

// LookupMX implements Resolver.
func (c *Client) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return lookupMX(ctx, c.answers, name)
}

// LookupPTR implements Resolver.
func (c *Client) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	return lookupPTR(ctx, c.answers, addr)
}

func lookupA(ctx context.Context, answers answerFunc, name string) ([]netip.Addr, time.Duration, error) {
	rrs, ttl, err := answers(ctx, name, dns.TypeA)
	if err != nil {
		return nil, ttl, err
	}
	out := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		if a, ok := netip.AddrFromSlice(rr.(*dns.A).A.To4()); ok {
			out = append(out, a)
		}
	}
	return out, ttl, nil
}

func lookupTXT(ctx context.Context, answers answerFunc, name string) ([]string, time.Duration, error) {
	rrs, ttl, err := answers(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, ttl, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, ttl, nil
}

func lookupIP(ctx context.Context, answers answerFunc, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	var errs []error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, _, err := answers(ctx, host, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range rrs {
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	for _, err := range errs {
		if IsTemporary(err) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, host)
}

func lookupMX(ctx context.Context, answers answerFunc, name string) ([]*net.MX, error) {
	rrs, _, err := answers(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, nil
}

func lookupPTR(ctx context.Context, answers answerFunc, addr netip.Addr) ([]string, error) {
	rev, err := dns.ReverseAddr(addr.String())
	if err != nil {
		return nil, fmt.Errorf("resolver: %v", err)
	}
	rrs, _, err := answers(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}
