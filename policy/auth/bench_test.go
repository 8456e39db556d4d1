package auth

import (
	"context"
	"crypto"
	"net/netip"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/emersion/go-msgauth/dkim"
)

// BenchmarkCheck measures one message's authentication against a loopback
// DNS server (no cache: every iteration does its lookups), so the numbers
// are CPU plus loopback round trips, not Internet latency.
func BenchmarkCheck(b *testing.B) {
	c, s := newChecker(b, dkimZone(b)+spfZone)
	// Timeouts no busy machine reaches: this measures cost, not deadlines.
	r, err := resolver.New(s.Addr, 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	c.Resolver, c.Timeout = r, 30*time.Second
	ed, rk := testKeys(b)
	ip := netip.MustParseAddr("192.0.2.10")
	cases := []struct {
		name string
		raw  []byte
	}{
		{"spf-only", nil},
		{"spf+no-signature", []byte(plainMessage)},
		{"spf+dkim-ed25519", sign(b, plainMessage, "example.test", "ed", ed)},
		{"spf+dkim-rsa2048", sign(b, plainMessage, "example.test", "rsa", rk)},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v := check(c, context.Background(), ip, "client.test", "alice@example.test", tc.raw)
				if v.Result != Authenticated {
					b.Fatalf("check = %s", v.Why)
				}
			}
		})
	}
}

// BenchmarkCombine is the pure part, for comparison.
func BenchmarkCombine(b *testing.B) {
	sigs := []DKIMSig{{Domain: "other.test", Valid: true}, {Domain: "example.test", Aligned: true, TempError: true}}
	for b.Loop() {
		if Combine("softfail", sigs) != Unknown {
			b.Fatal("wrong result")
		}
	}
}

// BenchmarkVerifyOwn measures our own DKIM signature on a returned original
// behind the milter's caching resolver: the key comes from the cache after
// the first lookup, so this is the crypto and parsing cost.
func BenchmarkVerifyOwn(b *testing.B) {
	c, _ := cachedChecker(b, dkimZone(b))
	c.Timeout = 30 * time.Second
	ed, rk := testKeys(b)
	ours := []string{"example.test"}
	for _, k := range []struct {
		name string
		sel  string
		key  crypto.Signer
	}{{"ed25519", "ed", ed}, {"rsa2048", "rsa", rk}} {
		h, body := splitMsg(signWith(b, outbound, "example.test", k.sel, k.key, dkim.CanonicalizationRelaxed))
		for _, tc := range []struct {
			name string
			body []byte
			want string
		}{{"whole", body, OwnPass}, {"headers-only", nil, OwnHeadersPass}} {
			b.Run(k.name+"/"+tc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if got := c.VerifyOwn(context.Background(), h, tc.body, ours); got.Result != tc.want {
						b.Fatalf("%+v", got)
					}
				}
			})
		}
	}
}
