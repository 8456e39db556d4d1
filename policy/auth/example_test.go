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

// The policy turns a Verdict into NDR suppression with the operator's Require.
func ExampleChecker_Check() {
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
		v := c.Check(context.Background(), netip.MustParseAddr(ip), "mx.example.test", "alice@example.test", nil)
		suppress := !auth.RequireSPFOrDKIM.Authenticated(v.Result)
		fmt.Printf("%s: %s, NOTIFY=NEVER: %v\n", ip, v.Reason, suppress)
	}
	// Output:
	// 192.0.2.7: authenticated: spf=pass (example.test); dkim=not checked, NOTIFY=NEVER: false
	// 198.51.100.1: forged: spf=fail (example.test); dkim=not checked, NOTIFY=NEVER: true
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

func ExampleRequire_Authenticated() {
	for _, q := range []auth.Require{auth.RequireSPFOrDKIM, auth.RequireSPFFailOnly} {
		fmt.Printf("%s: unauthenticated ok=%v, forged ok=%v\n", q,
			q.Authenticated(auth.Unauthenticated), q.Authenticated(auth.Forged))
	}
	// Output:
	// spf-or-dkim: unauthenticated ok=false, forged ok=false
	// spf-fail-only: unauthenticated ok=true, forged ok=false
}

func ExampleOrgDomain() {
	fmt.Println(auth.OrgDomain("bounces.mail.example.co.uk"))
	// Output: example.co.uk
}
