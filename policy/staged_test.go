package policy_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// signerTagger presents a real batv.Signer to the policy (the wiring's
// adapter lives in package main), BATV on for example.org only.
type signerTagger struct {
	s     *batv.Signer
	grace bool
}

func (t signerTagger) Enabled(d string) bool            { return d == "example.org" }
func (t signerTagger) Sign(addr string) (string, error) { return t.s.Sign(addr) }
func (t signerTagger) Strip(addr string) string         { return t.s.Strip(addr) }
func (t signerTagger) Grace(time.Time) bool             { return t.grace }
func (t signerTagger) Verify(addr string) policy.TagStatus {
	switch t.s.Verify(addr).Status {
	case batv.StatusOK:
		return policy.TagOK
	case batv.StatusMissing:
		return policy.TagMissing
	case batv.StatusExpired:
		return policy.TagExpired
	}
	return policy.TagBad
}

func newSigner(syntax batv.Syntax) *batv.Signer {
	return &batv.Signer{Keys: []batv.Key{{ID: 0, Secret: []byte("policy-test-secret-0123456789")}}, Syntax: syntax}
}

// batvEngine is testEngine with a real signer and two local domains, only
// example.org signing.
func batvEngine(t *testing.T) (*policy.Engine, *batv.Signer) {
	t.Helper()
	e := testEngine()
	e.Settings.LocalDomains = []string{"example.org", "other.example"}
	s := newSigner(batv.SyntaxSubaddress)
	e.Tagger = signerTagger{s: s}
	return e, s
}

func sign(t *testing.T, s *batv.Signer, addr string) string {
	t.Helper()
	tagged, err := s.Sign(addr)
	if err != nil {
		t.Fatal(err)
	}
	return tagged
}

// mdn is an RFC 8098 read receipt for the message origID, sent to to.
func mdn(to, origID string) ([]policy.Header, []byte) {
	h := []policy.Header{
		{"From", " carol@remote.test"}, {"To", " " + to}, {"Subject", " Read: hello"},
		{"MIME-Version", " 1.0"},
		{"Content-Type", ` multipart/report; report-type=disposition-notification; boundary="MM"`},
	}
	body := strings.ReplaceAll(`--MM
Content-Type: text/plain

Your message was displayed.

--MM
Content-Type: message/disposition-notification

Reporting-UA: mail.remote.test; Thunderbird
Final-Recipient: rfc822;carol@remote.test
Original-Message-ID: <`+origID+`>
Disposition: manual-action/MDN-sent-manually; displayed

--MM--
`, "\n", "\r\n")
	return h, []byte(body)
}

func autoReply(to, inReplyTo string) []policy.Header {
	return []policy.Header{{"From", " carol@remote.test"}, {"To", " " + to}, {"Subject", " Out of office"},
		{"Auto-Submitted", " auto-replied"}, {"In-Reply-To", " <" + inReplyTo + ">"}}
}

type eomCase struct {
	name     string
	rcpts    []string
	headers  []policy.Header
	body     []byte
	want     policy.Action
	evidence []string // must be present
	absent   []string // must not be present
}

func runEOM(t *testing.T, e *policy.Engine, sender string, c eomCase) *policy.Verdict {
	t.Helper()
	tx := begin(e, cleanIP, sender)
	for _, r := range c.rcpts {
		if v := e.Rcpt(context.Background(), tx, r, ""); v.Action != policy.Accept {
			t.Fatalf("%s: RCPT %s refused (%v): a missing tag is decided at end of message", c.name, r, v.Evidence)
		}
	}
	tx.DataSeen = true
	tx.Headers = c.headers
	if c.body != nil && !e.WantBody(tx) {
		t.Fatalf("%s: the body is not wanted", c.name)
	}
	tx.Body = c.body
	v := e.End(context.Background(), tx)
	if v.Action != c.want {
		t.Errorf("%s: action %v, want %v (evidence %v notes %v)", c.name, v.Action, c.want, v.Evidence, v.Notes)
	}
	for _, n := range c.evidence {
		if !v.Evidence.Has(n) {
			t.Errorf("%s: evidence %v lacks %s", c.name, v.Evidence, n)
		}
	}
	for _, n := range c.absent {
		if v.Evidence.Has(n) {
			t.Errorf("%s: evidence %v has %s", c.name, v.Evidence, n)
		}
	}
	return v
}

// TestNullSenderKinds: with BATV on, null-sender mail to the untagged header
// From is judged by what it is: an untagged bounce is refused at end of
// DATA, answers to our mail arrive, forged answers are tagged, and mail that
// is not bounce-shaped is no evidence.
func TestNullSenderKinds(t *testing.T) {
	e, _ := batvEngine(t)
	mdnOurs, mdnOursBody := mdn("bob@example.org", "sent-1@example.org")
	mdnForged, mdnForgedBody := mdn("bob@example.org", "never-sent@example.org")
	for _, c := range []eomCase{
		{name: "forged DSN to an untagged address", rcpts: []string{"bob@example.org"},
			headers: dsn("", ""), body: dsnBody("forged@example.org", "spam.remote.test"),
			want: policy.Reject, evidence: []string{policy.EvBATVMissing, policy.EvBounceNotOurs}},
		{name: "real DSN sent to the header From of our message", rcpts: []string{"bob@example.org"},
			headers: dsn("", ""), body: dsnBody("sent-1@example.org", "spam.remote.test"),
			want: policy.Accept, evidence: []string{policy.EvBATVMissing, policy.EvBounceOurs}},
		{name: "read receipt for our message", rcpts: []string{"bob@example.org"},
			headers: mdnOurs, body: mdnOursBody, want: policy.Accept, evidence: []string{policy.EvMDNOurs}, absent: []string{policy.EvBATVMissing}},
		{name: "forged read receipt", rcpts: []string{"bob@example.org"},
			headers: mdnForged, body: mdnForgedBody, want: policy.Tag, evidence: []string{policy.EvMDNNot}, absent: []string{policy.EvBATVMissing}},
		{name: "out-of-office for our message", rcpts: []string{"bob@example.org"},
			headers: autoReply("bob@example.org", "sent-1@example.org"), body: []byte("Away.\r\n"),
			want: policy.Accept, evidence: []string{policy.EvAutoreplyOurs}, absent: []string{policy.EvBATVMissing}},
		{name: "forged out-of-office", rcpts: []string{"bob@example.org"},
			headers: autoReply("bob@example.org", "never-sent@example.org"), body: []byte("Away.\r\n"),
			want: policy.Tag, evidence: []string{policy.EvAutoreplyNot}, absent: []string{policy.EvBATVMissing}},
		{name: "null-sender mail that is not bounce-shaped", rcpts: []string{"bob@example.org"},
			headers: []policy.Header{{"From", " alerts@remote.test"}, {"Subject", " your invoice"}}, body: []byte("Hello.\r\n"),
			want: policy.Accept, absent: []string{policy.EvBATVMissing}},
		{name: "untagged bounce to a domain without BATV: content decides", rcpts: []string{"carol@other.example"},
			headers: dsn("", ""), body: dsnBody("forged@example.org", "spam.remote.test"),
			want: policy.Quarantine, evidence: []string{policy.EvBounceNotOurs}, absent: []string{policy.EvBATVMissing}},
	} {
		runEOM(t, e, "", c)
	}
	// The reject after DATA names the missing tag.
	v := runEOM(t, e, "", eomCase{name: "reply text", rcpts: []string{"bob@example.org"}, headers: dsn("", ""),
		body: dsnBody("forged@example.org", "spam.remote.test"), want: policy.Reject})
	if v.Reply == nil || v.Reply.Code != 550 || !strings.Contains(v.Reply.Text, "BATV") {
		t.Errorf("reply %v", v.Reply)
	}
}

// An auto-reply known only by a vendor header or its subject is an
// auto-reply to the policy too: one predicate, bounce.AutoReplyReason.
func TestAutoReplyOnePredicate(t *testing.T) {
	e := testEngine()
	for _, h := range [][]policy.Header{
		{{"From", " carol@remote.test"}, {"X-Autoresponder", " yes"}, {"In-Reply-To", " <never@example.org>"}},
		{{"From", " carol@remote.test"}, {"Subject", " Out of Office: hello"}, {"In-Reply-To", " <never@example.org>"}},
	} {
		runEOM(t, e, "carol@remote.test", eomCase{name: h[1].Name, rcpts: []string{"bob@example.org"}, headers: h,
			want: policy.Tag, evidence: []string{policy.EvAutoreplyNot}})
	}
}

// TestCalloutNeverRefusedForAMissingTag: a sender-verification probe of a
// header address gets 250 and one callout verdict; a forged tag is still
// refused at RCPT.
func TestCalloutNeverRefusedForAMissingTag(t *testing.T) {
	e, s := batvEngine(t)
	tx := begin(e, cleanIP, "")
	if v := e.Rcpt(context.Background(), tx, "bob@example.org", ""); v.Action != policy.Accept || len(v.Evidence) != 0 {
		t.Fatalf("callout to the header From: %v %v", v.Action, v.Evidence)
	}
	if !tx.Callout() {
		t.Fatal("a transaction that ended after RCPT is not a callout")
	}
	if v := e.Callout(tx); v.Stage != policy.StageCallout || v.Action != policy.Accept || !v.Evidence.Has(policy.EvCallout) {
		t.Fatalf("callout verdict %+v", v)
	}
	tagged := sign(t, s, "bob@example.org")
	forged := tagged[:len(tagged)-len("@example.org")-1] + "0@example.org"
	if forged == tagged {
		forged = tagged[:len(tagged)-len("@example.org")-1] + "1@example.org"
	}
	tx = begin(e, cleanIP, "")
	if v := e.Rcpt(context.Background(), tx, forged, ""); v.Action != policy.Reject || !v.Evidence.Has(policy.EvBATVBad) {
		t.Fatalf("forged tag %s: %v %v", forged, v.Action, v.Evidence)
	}
}

// TestTagProvesOnlyItsRecipient: a harvested tag on one recipient must not
// carry a forged bounce to the others (issue 11 item 4).
func TestTagProvesOnlyItsRecipient(t *testing.T) {
	e, s := batvEngine(t)
	alice := sign(t, s, "alice@example.org")
	forged := eomCase{name: "tag + 3 recipients of a domain without BATV",
		rcpts:   []string{alice, "v1@other.example", "v2@other.example", "v3@other.example"},
		headers: dsn("", ""), body: dsnBody("forged@example.org", "spam.remote.test"),
		want: policy.Quarantine, evidence: []string{policy.EvBounceNotOurs}, absent: []string{policy.EvBATVOK}}
	v := runEOM(t, e, "", forged)
	if !strings.Contains(strings.Join(v.Notes, "; "), "held") {
		t.Errorf("notes %v do not say why it was held", v.Notes)
	}
	runEOM(t, e, "", eomCase{name: "tag + an untagged local recipient", rcpts: []string{alice, "bob@example.org"},
		headers: dsn("", ""), body: dsnBody("forged@example.org", "spam.remote.test"),
		want: policy.Quarantine, evidence: []string{policy.EvBATVMissing}})
	runEOM(t, e, "", eomCase{name: "the tagged recipient alone", rcpts: []string{alice},
		headers: dsn("", ""), body: dsnBody("forged@example.org", "spam.remote.test"),
		want: policy.Accept, evidence: []string{policy.EvBATVOK}})
	// Observe mode holds nothing: it says what enforce would do.
	e.Settings.Mode = policy.Observe
	if v := runEOM(t, e, "", eomCase{name: "observe", rcpts: forged.rcpts, headers: forged.headers, body: forged.body, want: policy.Tag}); v.Would != policy.Quarantine {
		t.Errorf("observe: would %v", v.Would)
	}
}

// TestDeliveredHereIsLocal: an address literal of the address the client
// reached, or a recipient the MTA delivers locally, is ours for BATV
// (issue 11 item 5).
func TestDeliveredHereIsLocal(t *testing.T) {
	e, _ := batvEngine(t)
	body := dsnBody("forged@example.org", "spam.remote.test")
	for _, c := range []struct {
		name     string
		rcpt     policy.Recipient
		local    netip.Addr
		wantBATV bool
	}{
		{"literal of the daemon address", policy.Recipient{Addr: "alice@[127.0.0.1]"}, netip.MustParseAddr("127.0.0.1"), true},
		{"IPv6 literal", policy.Recipient{Addr: "alice@[IPv6:2001:db8::25]"}, netip.MustParseAddr("2001:db8::25"), true},
		{"rcpt_mailer local", policy.Recipient{Addr: "alice@localhost.localdomain", Mailer: "local"}, netip.Addr{}, true},
		{"literal of another host", policy.Recipient{Addr: "alice@[192.0.2.1]", Mailer: "smtp"}, netip.MustParseAddr("127.0.0.1"), false},
	} {
		tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: cleanIP, LocalIP: c.local}, "", "", "")
		e.RcptTo(context.Background(), tx, c.rcpt)
		tx.DataSeen, tx.Headers, tx.Body = true, dsn("", ""), body
		v := e.End(context.Background(), tx)
		if got := v.Evidence.Has(policy.EvBATVMissing); got != c.wantBATV {
			t.Errorf("%s: batv:missing %v, want %v (action %v evidence %v)", c.name, got, c.wantBATV, v.Action, v.Evidence)
		}
		if c.wantBATV && v.Action != policy.Reject {
			t.Errorf("%s: action %v, want reject", c.name, v.Action)
		}
	}
}

// TestVerifiedTagRemoved: both BATV forms, a VERP extension kept intact,
// parameters kept, and one delete + add with the NOTIFY=NEVER rewrite.
func TestVerifiedTagRemoved(t *testing.T) {
	for _, c := range []struct {
		syntax batv.Syntax
		base   string
	}{
		{batv.SyntaxSubaddress, "bob@example.org"},
		{batv.SyntaxPrefix, "bob@example.org"},
		{batv.SyntaxSubaddress, "list-bounces+bob=remote.test@example.org"},
	} {
		e, _ := batvEngine(t)
		s := newSigner(c.syntax)
		e.Tagger = signerTagger{s: s}
		tagged := sign(t, s, c.base)
		tx := begin(e, cleanIP, "")
		e.Rcpt(context.Background(), tx, tagged, "ORCPT=rfc822;"+tagged)
		tx.DataSeen, tx.Headers, tx.Body = true, dsn("", ""), dsnBody("sent-1@example.org", "x.test")
		v := e.End(context.Background(), tx)
		want := policy.RcptRewrite{Addr: tagged, NewAddr: c.base, OldArgs: "ORCPT=rfc822;" + tagged, NewArgs: "ORCPT=rfc822;" + tagged}
		if v.Action != policy.Accept || len(v.Mods.RcptRewrites) != 1 || v.Mods.RcptRewrites[0] != want {
			t.Errorf("%s: action %v rewrites %+v, want %+v", tagged, v.Action, v.Mods.RcptRewrites, want)
		}
	}
	// A bounce-class sender that is not <> gets NDR suppression too: one rewrite does both.
	e, s := batvEngine(t)
	tagged := sign(t, s, "bob@example.org")
	tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: cleanIP, Helo: "h.test"}, "postmaster@none.test", "", "")
	e.Rcpt(context.Background(), tx, tagged, "NOTIFY=FAILURE")
	tx.DataSeen, tx.Headers, tx.Body = true, dsn("", ""), dsnBody("sent-1@example.org", "x.test")
	v := e.End(context.Background(), tx)
	want := policy.RcptRewrite{Addr: tagged, NewAddr: "bob@example.org", OldArgs: "NOTIFY=FAILURE", NewArgs: "NOTIFY=NEVER"}
	if len(v.Mods.RcptRewrites) != 1 || v.Mods.RcptRewrites[0] != want || v.NDR != policy.NDRSuppressed {
		t.Errorf("rewrites %+v NDR %q, want %+v", v.Mods.RcptRewrites, v.NDR, want)
	}
	// A tag on ordinary mail is not evidence, but it is removed all the same.
	tx = begin(e, cleanIP, "friend@pass.test")
	e.Rcpt(context.Background(), tx, tagged, "")
	tx.DataSeen, tx.Headers = true, []policy.Header{{"Subject", " re: hello"}}
	v = e.End(context.Background(), tx)
	if len(v.Evidence) != 0 || len(v.Mods.RcptRewrites) != 1 || v.Mods.RcptRewrites[0].To() != "bob@example.org" {
		t.Errorf("ordinary mail to a tagged address: evidence %v rewrites %+v", v.Evidence, v.Mods.RcptRewrites)
	}
}

func TestSignExempt(t *testing.T) {
	e := testEngine()
	e.Settings.SignExempt = []string{"lists.remote.test", "challenge@other.test"}
	for _, c := range []struct {
		rcpts  []string
		signed bool
	}{
		{[]string{"friend@remote.test"}, true},
		{[]string{"friend@remote.test", "ezmlm-list@Lists.Remote.Test"}, false},
		{[]string{"challenge@other.test"}, false},
	} {
		tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: trustedIP}, "alice@example.org", "", "")
		for _, r := range c.rcpts {
			e.Rcpt(context.Background(), tx, r, "")
		}
		id := "exempt-" + c.rcpts[len(c.rcpts)-1] + "@example.org"
		tx.Headers = []policy.Header{{"Message-ID", " <" + id + ">"}}
		v := e.End(context.Background(), tx)
		if v.Mods.ChangeFromSet != c.signed {
			t.Errorf("%v: signed %v, want %v (notes %v)", c.rcpts, v.Mods.ChangeFromSet, c.signed, v.Notes)
		}
		if seen, _ := e.Sent.Seen(context.Background(), id); !seen {
			t.Errorf("%v: message-id not recorded", c.rcpts)
		}
	}
}

// A relay given as an address matches the client address of a from clause
// and the IP literal of a by clause (Gmail and Yahoo write "by 10.37.1.137").
func TestRelayMatchesByIP(t *testing.T) {
	e := testEngine()
	e.Settings.RelayNets = []netip.Prefix{netip.MustParsePrefix("10.37.0.0/16"), netip.MustParsePrefix("2002:ac9:6610::/48")}
	for _, c := range []struct {
		hop  bounce.Hop
		want bool
	}{
		{bounce.Hop{From: "spam.remote.test", ByIP: netip.MustParseAddr("10.37.1.137")}, true},
		{bounce.Hop{ByIP: netip.MustParseAddr("2002:ac9:6610::1")}, true},
		{bounce.Hop{ClientIP: netip.MustParseAddr("10.37.9.9"), By: "mx.remote.test"}, true},
		{bounce.Hop{From: "spam.remote.test", ClientIP: netip.MustParseAddr("198.51.100.9"), ByIP: netip.MustParseAddr("10.38.1.1")}, false},
	} {
		ev, ok := e.RelayEvidence(&bounce.Report{Received: []bounce.Hop{c.hop}})
		if ok != c.want || ok && ev.Name != policy.EvBounceOursRelay {
			t.Errorf("hop %+v: %v %v, want %v", c.hop, ev, ok, c.want)
		}
	}
}

func TestClamp(t *testing.T) {
	for _, c := range []struct {
		stage policy.Stage
		mode  policy.Mode
		would policy.Action
		want  policy.Action
	}{
		{policy.StageRcpt, policy.Enforce, policy.Reject, policy.Reject},
		{policy.StageRcpt, policy.Enforce, policy.Quarantine, policy.Accept},
		{policy.StageRcpt, policy.Observe, policy.Reject, policy.Accept},
		{policy.StageEOM, policy.Enforce, policy.Quarantine, policy.Quarantine},
		{policy.StageEOM, policy.Observe, policy.Reject, policy.Tag},
		{policy.StageEOM, policy.Observe, policy.Tag, policy.Tag},
		{policy.StageCallout, policy.Enforce, policy.Reject, policy.Accept},
		{policy.StageInternal, policy.Enforce, policy.Reject, policy.Quarantine},
		{policy.StageInternal, policy.Enforce, policy.Tempfail, policy.Quarantine},
		{policy.StageInternal, policy.Enforce, policy.Discard, policy.Discard},
		{policy.StageInternal, policy.Observe, policy.Discard, policy.Accept},
	} {
		got := policy.Clamp(c.stage, c.mode, c.would)
		if got != c.want {
			t.Errorf("Clamp(%s, %s, %s) = %s, want %s", c.stage, c.mode, c.would, got, c.want)
		}
		if again := policy.Clamp(c.stage, c.mode, got); again != got {
			t.Errorf("Clamp is not idempotent at %s/%s: %s then %s", c.stage, c.mode, got, again)
		}
	}
}

func TestEvidencesTop(t *testing.T) {
	ev := policy.Evidences{{Name: "a", Weight: -10}, {Name: "b", Weight: 6}, {Name: "c", Weight: 10}, {Name: "d", Weight: 10}}
	if top, ok := ev.Top(); !ok || top.Name != "c" {
		t.Errorf("Top = %v %v, want c (first of the heaviest)", top, ok)
	}
	if _, ok := (policy.Evidences{{Name: "a", Weight: -1}, {Name: "z", Weight: 0}}).Top(); ok {
		t.Error("nothing weighs against the message, yet Top found something")
	}
}

func TestNDROutcomes(t *testing.T) {
	seen := map[policy.NDROutcome]bool{}
	for _, o := range policy.NDROutcomes() {
		if seen[o] {
			t.Errorf("%q listed twice", o)
		}
		seen[o] = true
		if w := o.Would(); !seen[w] && w != o {
			// Would must map into the list too.
			found := false
			for _, x := range policy.NDROutcomes() {
				found = found || x == w
			}
			if !found {
				t.Errorf("%q.Would() = %q is not listed", o, w)
			}
		}
	}
}

// FuzzAddressLiteral: the address-literal reader never panics, and what it
// accepts is a plain (unmapped, zoneless) address that round-trips.
func FuzzAddressLiteral(f *testing.F) {
	for _, s := range []string{"[127.0.0.1]", "[IPv6:2001:db8::1]", "[ipv6:::ffff:192.0.2.1]", "[]", "[", "[fe80::1%eth0]", "example.org", "[IPv6:]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dom string) {
		ip, ok := policy.AddressLiteral(dom)
		if !ok {
			return
		}
		if !ip.IsValid() || ip.Is4In6() || ip.Zone() != "" {
			t.Fatalf("%q gave %v", dom, ip)
		}
		lit := "[" + ip.String() + "]"
		if ip.Is6() {
			lit = "[IPv6:" + ip.String() + "]"
		}
		if again, ok := policy.AddressLiteral(lit); !ok || again != ip {
			t.Fatalf("%q: %v does not round-trip through %q", dom, ip, lit)
		}
		_ = policy.MayBeTagged(dom)
	})
}
