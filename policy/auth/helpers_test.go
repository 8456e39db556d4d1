package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/emersion/go-msgauth/dkim"
)

// spfZone publishes one SPF situation per domain.
const spfZone = `
$TTL 300
pass.test.             IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"
soft.test.             IN TXT "v=spf1 ~all"
neutral.test.          IN TXT "v=spf1 ?all"
empty.test.            IN TXT "v=spf1"
notspf.test.           IN TXT "google-site-verification=abc"
perm.test.             IN TXT "v=spf1 bogus:thing -all"
multi.test.            IN TXT "v=spf1 -all"
multi.test.            IN TXT "v=spf1 +all"
temp.test.             IN TXT "v=spf1 -all"
inctemp.test.          IN TXT "v=spf1 include:broken.test -all"
broken.test.           IN TXT "v=spf1 +all"
mx.helo.test.          IN TXT "v=spf1 a -all"
mx.helo.test.          IN A   192.0.2.25
mxmech.test.           IN TXT "v=spf1 mx -all"
mxmech.test.           IN MX  10 mail.mxmech.test.
mail.mxmech.test.      IN A   198.51.100.7
ptr.test.              IN TXT "v=spf1 ptr -all"
7.113.0.203.in-addr.arpa. IN PTR host.ptr.test.
host.ptr.test.         IN A   203.0.113.7
voids.test.            IN TXT "v=spf1 a:n1.voids.test a:n2.voids.test a:n3.voids.test -all"
loop.test.             IN TXT "v=spf1 include:loop.test -all"
macro.test.            IN TXT "v=spf1 a:%{l}.macro.test -all"
`

// Test keys, made once per test binary: RSA generation is slow.
var (
	keysOnce sync.Once
	edKey    ed25519.PrivateKey
	rsaKey   *rsa.PrivateKey
)

func testKeys(t testing.TB) (ed25519.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		_, edKey, err = ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
	})
	return edKey, rsaKey
}

// dkimZone publishes the test keys: selector "ed" (ed25519) at example.test,
// mail.example.test and other.test; selector "rsa" (RSA-2048, a TXT record of
// several character-strings, as real ones are) at example.test; selector
// "temp" at example.test exists but the tests make it SERVFAIL.
func dkimZone(t testing.TB) string {
	ed, rk := testKeys(t)
	edPub := base64.StdEncoding.EncodeToString(ed.Public().(ed25519.PublicKey))
	der, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaTXT := `"v=DKIM1; k=rsa; p=` + chunk(base64.StdEncoding.EncodeToString(der), 200) + `"`
	var b strings.Builder
	for _, d := range []string{"example.test", "mail.example.test", "other.test"} {
		fmt.Fprintf(&b, "ed._domainkey.%s. 300 IN TXT \"v=DKIM1; k=ed25519; p=%s\"\n", d, edPub)
	}
	fmt.Fprintf(&b, "rsa._domainkey.example.test. 300 IN TXT %s\n", rsaTXT)
	fmt.Fprintf(&b, "temp._domainkey.example.test. 300 IN TXT \"v=DKIM1; k=ed25519; p=%s\"\n", edPub)
	fmt.Fprintf(&b, "example.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n")
	fmt.Fprintf(&b, "mail.example.test. 300 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n")
	return b.String()
}

// chunk splits s into zone-file character-strings of at most n octets.
func chunk(s string, n int) string {
	var parts []string
	for len(s) > n {
		parts = append(parts, s[:n])
		s = s[n:]
	}
	parts = append(parts, s)
	return strings.Join(parts, `" "`)
}

const plainMessage = "From: Alice <alice@example.test>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: lunch\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <lunch-1@example.test>\r\n" +
	"\r\n" +
	"Noon at the usual place?\r\n"

// sign returns msg with a DKIM-Signature for domain and selector prepended.
func sign(t testing.TB, msg, domain, selector string, key crypto.Signer) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{
		Domain:                 domain,
		Selector:               selector,
		Signer:                 key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatalf("dkim.Sign: %v", err)
	}
	return out.Bytes()
}

// newChecker starts a DNS server with zone and returns a Checker using it.
func newChecker(t testing.TB, zone string) (*Checker, *dnstest.Server) {
	t.Helper()
	s := dnstest.Start(t, zone)
	r, err := resolver.New(s.Addr, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return &Checker{Resolver: r, Timeout: 2 * time.Second}, s
}

// checked is what check found.
type checked struct {
	Result Result
	SPF    string
	Why    string
	DKIM   []DKIMSig
}

// check asks SPF, then judges with the message, the way the milter does
// across a transaction (SPF at MAIL FROM, Judge at end of message).
func check(c *Checker, ctx context.Context, ip netip.Addr, helo, mailFrom string, raw []byte) checked {
	res, _, _ := c.SPF(ctx, ip, helo, mailFrom)
	r, why, sigs := c.Judge(ctx, res, raw, mailFrom)
	return checked{r, res, why, sigs}
}
