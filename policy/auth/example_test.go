package auth_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/backscatter-milter/backscatter-milter/policy/auth"
)

// The milter asks SPF when MAIL FROM arrives and judges at end of message,
// with the body when DKIM could still authenticate (here: no body).
func ExampleChecker_Judge() {
	// In the milter the resolver comes from the configuration
	// (resolver.New(cfg.Resolver, timeout)); here it is a test server.
	srv, err := dnstest.New(`example.test. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	r, err := resolver.New(srv.Addr, time.Second)
	if err != nil {
		panic(err)
	}
	c := &auth.Checker{Resolver: r, Timeout: 3 * time.Second}

	for _, ip := range []string{"192.0.2.7", "198.51.100.1"} {
		spf, _, _ := c.SPF(context.Background(), netip.MustParseAddr(ip), "mx.example.test", "alice@example.test")
		res, why, _ := c.Judge(context.Background(), spf, nil, "alice@example.test")
		fmt.Printf("%s: %s (%s)\n", ip, res, why)
	}
	// Output:
	// 192.0.2.7: authenticated (spf=pass)
	// 198.51.100.1: forged (spf=fail)
}

func ExampleCombine() {
	forwarded := []auth.DKIMSig{{Domain: "example.test", Aligned: true, Valid: true}}
	fmt.Println(auth.Combine("fail", forwarded)) // a forwarder broke SPF, DKIM survived
	fmt.Println(auth.Combine("fail", nil))
	fmt.Println(auth.Combine("softfail", nil))
	fmt.Println(auth.Combine("temperror", nil))
	// Output:
	// authenticated
	// forged
	// unauthenticated
	// unknown
}

func ExampleOrgDomain() {
	fmt.Println(auth.OrgDomain("bounces.mail.example.co.uk"))
	// Output: example.co.uk
}
