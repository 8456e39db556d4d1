package dnstest_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/miekg/dns"
)

const zone = `
2.0.0.127.bl.test. 300 IN A 127.0.0.2
2.0.0.127.bl.test. 300 IN TXT "listed: see http://bl.test/"
example.test. 3600 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
example.test. 3600 IN MX 10 mx.example.test.
mx.example.test. 3600 IN A 192.0.2.25
mx.example.test. 3600 IN AAAA 2001:db8::25
`

func newClient(t *testing.T, s *dnstest.Server) *resolver.Client {
	t.Helper()
	c, err := resolver.New(s.Addr, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResolverAgainstServer(t *testing.T) {
	s := dnstest.Start(t, zone)
	c := newClient(t, s)
	ctx := context.Background()

	addrs, ttl, err := c.LookupA(ctx, "2.0.0.127.bl.test")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.2") || ttl != 300*time.Second {
		t.Fatalf("LookupA = %v %v %v", addrs, ttl, err)
	}
	if _, _, err := c.LookupA(ctx, "1.0.0.127.bl.test"); !resolver.IsNotFound(err) {
		t.Fatalf("missing name: err = %v, want not found", err)
	}
	if _, _, err := c.LookupA(ctx, "example.test"); !resolver.IsNotFound(err) {
		t.Fatalf("NODATA: err = %v, want not found", err)
	}
	txt, _, err := c.LookupTXT(ctx, "example.test")
	if err != nil || len(txt) != 1 || txt[0] != "v=spf1 ip4:192.0.2.0/24 -all" {
		t.Fatalf("LookupTXT = %q %v", txt, err)
	}
	mx, err := c.LookupMX(ctx, "example.test")
	if err != nil || len(mx) != 1 || mx[0].Host != "mx.example.test." {
		t.Fatalf("LookupMX = %v %v", mx, err)
	}
	ips, err := c.LookupIP(ctx, "mx.example.test")
	if err != nil || len(ips) != 2 {
		t.Fatalf("LookupIP = %v %v", ips, err)
	}
}

func TestResolverFaults(t *testing.T) {
	s := dnstest.Start(t, zone)
	c := newClient(t, s)
	ctx := context.Background()
	name := "2.0.0.127.bl.test"

	s.SetFault(name, dnstest.Fault{Rcode: dns.RcodeServerFailure})
	if _, _, err := c.LookupA(ctx, name); !resolver.IsTemporary(err) {
		t.Errorf("SERVFAIL: err = %v, want temporary", err)
	}
	s.SetFault(name, dnstest.Fault{Truncate: true})
	if addrs, _, err := c.LookupA(ctx, name); err != nil || len(addrs) != 1 {
		t.Errorf("truncated: %v %v, want the TCP answer", addrs, err)
	}
	if s.Queries(name, "A") < 3 {
		t.Errorf("truncation did not cause a TCP retry (queries %d)", s.Queries(name, "A"))
	}
	s.SetFault(name, dnstest.Fault{Garbage: true})
	if _, _, err := c.LookupA(ctx, name); !resolver.IsTemporary(err) {
		t.Errorf("garbage: err = %v, want temporary", err)
	}
	s.SetFault(name, dnstest.Fault{Drop: true})
	if _, _, err := c.LookupA(ctx, name); !resolver.IsTemporary(err) {
		t.Errorf("no answer: err = %v, want temporary", err)
	}
	s.SetFault(name, dnstest.Fault{})
	if _, _, err := c.LookupA(ctx, name); err != nil {
		t.Errorf("fault cleared: %v", err)
	}
}

func TestResolverDeadServer(t *testing.T) {
	s := dnstest.Start(t, zone)
	addr := s.Addr
	s.Close()
	c, err := resolver.New(addr, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.LookupA(context.Background(), "2.0.0.127.bl.test"); !resolver.IsTemporary(err) {
		t.Fatalf("dead server: err = %v, want temporary", err)
	}
}

func TestNewRejectsHostnames(t *testing.T) {
	if _, err := resolver.New("dns.example.net", time.Second); err == nil {
		t.Fatal("a resolver named by hostname was accepted")
	}
	c, err := resolver.New("127.0.0.1, [::1]:5353", time.Second)
	if err != nil || len(c.Servers) != 2 || c.Servers[0] != "127.0.0.1:53" || c.Servers[1] != "[::1]:5353" {
		t.Fatalf("New = %+v, %v", c, err)
	}
}

func TestResolverTimeoutIsVisible(t *testing.T) {
	s := dnstest.Start(t, zone)
	s.SetFault("*", dnstest.Fault{Drop: true})
	c, err := resolver.New(s.Addr, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.LookupA(context.Background(), "2.0.0.127.bl.test")
	var ne interface{ Timeout() bool }
	if !resolver.IsTemporary(err) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v: want a temporary error that unwraps to a timeout", err)
	}
}
