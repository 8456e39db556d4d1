package policy_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/policytest"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
	"github.com/backscatter-milter/backscatter-milter/policy/stamp"
)

// realStamper puts the real policy/stamp behind the policy's interface, as
// the wiring in cmd does.
type realStamper struct {
	s      *stamp.Stamper
	header string
}

func newRealStamper(now time.Time) realStamper {
	keys := &batv.Signer{Keys: []batv.Key{{ID: 2, Secret: []byte("provenance-test-key-0123456789")}}, Current: 2,
		Lifetime: 30 * 24 * time.Hour, Now: func() time.Time { return now }}
	return realStamper{s: &stamp.Stamper{Keys: keys}, header: stamp.DefaultHeader}
}

func (r realStamper) Stamp(id, date, from string) (policy.Header, error) {
	v, err := r.s.Sign(stamp.Fields{MessageID: id, Date: date, From: from})
	return policy.Header{Name: r.header, Value: v}, err
}

func (r realStamper) CheckStamp(h []byte) (policy.StampStatus, string, bool) {
	res, found := r.s.Check(h, r.header)
	switch {
	case !found:
		return "", "", false
	case res.Status == stamp.StatusOK:
		return policy.StampOK, "", true
	case res.Status == stamp.StatusExpired:
		return policy.StampExpired, "", true
	case res.Status == stamp.StatusUnverifiable:
		return policy.StampUnverifiable, res.Reason, true
	}
	return policy.StampBad, res.Reason, true
}

type fakeDKIM struct {
	res       policy.DKIMProof
	withBody  bool
	calls     int
	gotHeader []byte
}

func (f *fakeDKIM) VerifyOwn(_ context.Context, header, body []byte) policy.DKIMProof {
	f.calls++
	f.withBody, f.gotHeader = body != nil, header
	return f.res
}

type fakeOriginSPF struct {
	res   map[string]string // by IP
	asked []string
}

func (f *fakeOriginSPF) SPFOfOriginal(_ context.Context, ip netip.Addr, sender string) (string, string, error) {
	f.asked = append(f.asked, ip.String()+" "+sender)
	if r, ok := f.res[ip.String()]; ok {
		return r, policy.Domain(sender), nil
	}
	return "temperror", policy.Domain(sender), errors.New("dns: temporary failure")
}

// TestProvenanceWeights holds the default weights to the rules of the
// ladder: a proof outweighs bounce:not-ours and batv:missing together; an
// origin SPF fail with bounce:not-ours quarantines; none of these rejects
// on its own.
func TestProvenanceWeights(t *testing.T) {
	s := policy.DefaultSettings()
	th := s.Thresholds
	ws := policy.DefaultWeights()
	against := weight(ws, policy.EvBounceNotOurs) + weight(ws, policy.EvBATVMissing)
	for _, proof := range []string{policy.EvBounceOursStamp, policy.EvBounceOursDKIM, policy.EvBounceOursDKIMHdr} {
		if got := th.Action(weight(ws, proof) + against); got != policy.Accept {
			t.Errorf("%s + not-ours + batv:missing = %d: %v, want accept", proof, weight(ws, proof)+against, got)
		}
	}
	if weight(ws, policy.EvBounceOursDKIMHdr) <= weight(ws, policy.EvBounceOursDKIM) {
		t.Errorf("headers-only DKIM should weigh a little less than whole-message DKIM")
	}
	if got := th.Action(weight(ws, policy.EvBounceOriginSPFFail) + weight(ws, policy.EvBounceNotOurs)); got != policy.Quarantine {
		t.Errorf("origin-spf-fail + not-ours: %v, want quarantine", got)
	}
	for _, n := range []string{policy.EvBounceStampBad, policy.EvBounceStampExpired, policy.EvBounceOriginSPFFail} {
		if w := weight(ws, n); w <= 0 || th.Action(w) == policy.Reject || th.Action(w+weight(ws, policy.EvBounceNotOurs)) == policy.Reject {
			t.Errorf("%s weighs %d: must be positive, and reject neither alone nor with not-ours", n, w)
		}
	}
	if w := weight(ws, policy.EvBounceOriginSPFPass); w >= 0 || w <= weight(ws, policy.EvBounceOursDKIMHdr) {
		t.Errorf("origin-spf-pass weighs %d: want a weak negative", w)
	}
	if weight(ws, policy.EvBounceStampExpired) >= weight(ws, policy.EvBounceStampBad) {
		t.Error("an expired stamp must weigh less than a bad one")
	}
}

func TestOutboundStamp(t *testing.T) {
	now := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	e := testEngine()
	st := newRealStamper(now)
	e.Provenance = &policy.Provenance{Stamp: st}
	tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: netip.MustParseAddr("127.0.0.1")}, "alice@example.org", "", "")
	tx.Headers = []policy.Header{{"From", " Alice <alice@example.org>"}, {"Message-Id", " <out-1@example.org>"}, {"Date", " Tue, 01 Dec 2026 14:00:00 +0000"}}
	v := e.End(context.Background(), tx)
	if len(v.Mods.AddHeaders) != 1 || v.Mods.AddHeaders[0].Name != stamp.DefaultHeader || !hasNote(v, "stamped") {
		t.Fatalf("mods %+v notes %v", v.Mods, v.Notes)
	}
	// Returned with that header: proof.
	block := append(headerBlock(tx.Headers), []byte(v.Mods.AddHeaders[0].Name+": "+v.Mods.AddHeaders[0].Value+"\n")...)
	if s, _, found := st.CheckStamp(block); !found || s != policy.StampOK {
		t.Fatalf("own stamp: %v %v", s, found)
	}
	// Passing through a second MTA of ours: not stamped twice.
	tx2 := e.Begin(context.Background(), "s2", policy.Connection{ClientIP: netip.MustParseAddr("127.0.0.1")}, "alice@example.org", "", "")
	tx2.Headers = append(append([]policy.Header{}, tx.Headers...), v.Mods.AddHeaders[0])
	if v2 := e.End(context.Background(), tx2); len(v2.Mods.AddHeaders) != 0 || !hasNote(v2, "already stamped") {
		t.Fatalf("second pass: %+v %v", v2.Mods, v2.Notes)
	}
	// No Message-ID: no stamp, and the verdict says so.
	tx3 := e.Begin(context.Background(), "s3", policy.Connection{ClientIP: netip.MustParseAddr("127.0.0.1")}, "alice@example.org", "", "")
	tx3.Headers = []policy.Header{{"From", " alice@example.org"}}
	if v3 := e.End(context.Background(), tx3); len(v3.Mods.AddHeaders) != 0 || !hasNote(v3, "no Message-ID: not stamped") {
		t.Fatalf("no Message-ID: %+v %v", v3.Mods, v3.Notes)
	}
	// No Date (Sendmail adds one after the milter): no stamp either.
	tx4 := e.Begin(context.Background(), "s4", policy.Connection{ClientIP: netip.MustParseAddr("127.0.0.1")}, "alice@example.org", "", "")
	tx4.Headers = []policy.Header{{"From", " alice@example.org"}, {"Message-Id", " <out-4@example.org>"}}
	if v4 := e.End(context.Background(), tx4); len(v4.Mods.AddHeaders) != 0 || !hasNote(v4, "no Date: not stamped") {
		t.Fatalf("no Date: %+v %v", v4.Mods, v4.Notes)
	}
}

func hasNote(v *policy.Verdict, s string) bool {
	for _, n := range v.Notes {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// stampedDSN is dsnBody with header lines added to the original.
func stampedDSN(msgID, relay, extra string) []byte {
	b := dsnBody(msgID, relay)
	return bytes.Replace(b, []byte("Message-ID: <"+msgID+">"), []byte(extra+"Message-ID: <"+msgID+">"), 1)
}

func endWith(t *testing.T, e *policy.Engine, body []byte) *policy.Verdict {
	t.Helper()
	tx := begin(e, cleanIP, "")
	e.Rcpt(context.Background(), tx, "bob@example.org", "")
	tx.Headers = dsn("", "")
	tx.Body = body
	return e.End(context.Background(), tx)
}

func TestBounceLadder(t *testing.T) {
	now := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	st := newRealStamper(now)
	const date = "Tue, 01 Dec 2026 13:00:00 +0000"
	own, _ := st.Stamp("<mine-1@example.org>", date, "someone@example.org") // the From of policytest.DSN's original
	copied, _ := st.Stamp("<other@example.org>", date, "someone@example.org")
	line := func(h policy.Header) string { return "Date: " + date + "\r\n" + h.Name + ": " + h.Value + "\r\n" }

	cases := []struct {
		name     string
		extra    string
		dkim     policy.DKIMProof
		spf      map[string]string
		want     policy.Action
		has, not []string
	}{
		{"stamp proves it, whatever the sent log says", line(own), policy.DKIMProof{Result: policy.DKIMNone}, nil, policy.Accept,
			[]string{policy.EvBounceOursStamp, policy.EvBounceNotOurs}, []string{policy.EvBounceStampBad}},
		{"copied stamp is no proof", line(copied), policy.DKIMProof{Result: policy.DKIMNone}, nil, policy.Quarantine,
			[]string{policy.EvBounceStampBad, policy.EvBounceNotOurs}, []string{policy.EvBounceOursStamp}},
		{"unreadable stamp: no evidence either way", line(policy.Header{Name: own.Name, Value: "1.0.007.zz"}), policy.DKIMProof{Result: policy.DKIMNone}, nil, policy.Quarantine,
			[]string{policy.EvBounceNotOurs}, []string{policy.EvBounceOursStamp, policy.EvBounceStampBad}},
		{"own DKIM, whole", "", policy.DKIMProof{Result: policy.DKIMPass, Domain: "example.org"}, nil, policy.Accept,
			[]string{policy.EvBounceOursDKIM}, nil},
		{"own DKIM, headers", "", policy.DKIMProof{Result: policy.DKIMHeadersPass, Domain: "example.org"}, nil, policy.Accept,
			[]string{policy.EvBounceOursDKIMHdr}, nil},
		{"own DKIM fails: only a note", "", policy.DKIMProof{Result: policy.DKIMFail, Detail: "body hash"}, nil, policy.Quarantine,
			[]string{policy.EvBounceNotOurs}, []string{policy.EvBounceOursDKIM, policy.EvBounceOursDKIMHdr}},
		{"origin SPF fail", "", policy.DKIMProof{Result: policy.DKIMNone}, map[string]string{"198.51.100.9": "fail"}, policy.Quarantine,
			[]string{policy.EvBounceOriginSPFFail, policy.EvBounceNotOurs}, nil},
		// Weak: a real bounce of ours that the sent log missed is delivered
		// (tagged); a forger who writes our address into Received gets as far.
		{"origin SPF pass", "", policy.DKIMProof{Result: policy.DKIMNone}, map[string]string{"198.51.100.9": "pass"}, policy.Tag,
			[]string{policy.EvBounceOriginSPFPass}, nil},
		{"origin SPF temperror: no evidence", "", policy.DKIMProof{Result: policy.DKIMNone}, nil, policy.Quarantine,
			nil, []string{policy.EvBounceOriginSPFFail, policy.EvBounceOriginSPFPass}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := testEngine()
			e.Tagger = nil
			e.Sent = policytest.NewSent()
			dk := &fakeDKIM{res: c.dkim}
			spf := &fakeOriginSPF{res: c.spf}
			e.Provenance = &policy.Provenance{Stamp: st, DKIM: dk, OriginSPF: spf}
			v := endWith(t, e, stampedDSN("mine-1@example.org", "spam.remote.test", c.extra))
			if v.Action != c.want {
				t.Errorf("action %v score %d evidence %v notes %v, want %v", v.Action, v.Score, v.Evidence, v.Notes, c.want)
			}
			for _, n := range c.has {
				if !v.Evidence.Has(n) {
					t.Errorf("missing %s in %v", n, v.Evidence)
				}
			}
			for _, n := range c.not {
				if v.Evidence.Has(n) {
					t.Errorf("unexpected %s in %v", n, v.Evidence)
				}
			}
			if c.dkim.Result == policy.DKIMFail && !hasNote(v, "did not verify") {
				t.Errorf("no note for the DKIM failure: %v", v.Notes)
			}
			if v.Evidence.Has(policy.EvBounceOursStamp) && (dk.calls != 0 || len(spf.asked) != 0) {
				t.Errorf("a stamp proved it, yet DNS checks ran (dkim %d, spf %v)", dk.calls, spf.asked)
			}
			if c.spf != nil && len(spf.asked) != 1 {
				t.Errorf("origin SPF asked %v", spf.asked)
			}
		})
	}
}

func TestOriginIP(t *testing.T) {
	e := testEngine()
	e.Settings.TrustedNetworks = append(e.Settings.TrustedNetworks, netip.MustParsePrefix("203.0.113.0/24"))
	hop := func(raw, ip string) bounce.Hop { return bounce.Hop{Raw: raw, ClientIP: netip.MustParseAddr(ip)} }
	for _, c := range []struct {
		name string
		hops []bounce.Hop // most recent first
		want string
	}{
		{"direct from a bot", []bounce.Hop{hop("from x by mx.remote.test with ESMTP", "198.51.100.9")}, "198.51.100.9"},
		{"earliest public hop wins", []bounce.Hop{hop("from a by b with ESMTP", "192.0.2.1"), hop("from c by a with SMTP", "198.51.100.9")}, "198.51.100.9"},
		{"authenticated submission skipped", []bounce.Hop{hop("from mail.example.org by mx.remote.test with ESMTPS", "192.0.2.1"),
			hop("from home (home [198.51.100.9]) by mail.example.org with ESMTPSA id X", "198.51.100.9")}, "192.0.2.1"},
		{"sendmail authenticated skipped", []bounce.Hop{hop("from m by r with ESMTP", "192.0.2.1"),
			hop("from h (h [198.51.100.9]) (authenticated bits=0) by m (8.17/8.17) with ESMTP", "198.51.100.9")}, "192.0.2.1"},
		{"private and trusted skipped", []bounce.Hop{hop("from m by r with ESMTP", "192.0.2.1"), hop("from web by m with SMTP", "203.0.113.5"),
			hop("from pc by web with SMTP", "10.1.2.3")}, "192.0.2.1"},
		{"none public", []bounce.Hop{hop("from pc by web with SMTP", "10.1.2.3")}, "invalid IP"},
	} {
		if got := e.OriginIP(c.hops).String(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestProvenanceOffline(t *testing.T) {
	e := testEngine()
	e.Tagger = nil
	e.Sent = policytest.NewSent()
	e.Provenance = &policy.Provenance{Offline: true}
	v := endWith(t, e, stampedDSN("x@example.org", "spam.remote.test", ""))
	if !hasNote(v, "skipped (offline)") {
		t.Fatalf("notes %v", v.Notes)
	}
}

// ---- corpus scenarios ------------------------------------------------

// originalIDLine finds the line of the returned original that carries its
// Message-ID (plain, or "> "-quoted), in the body of the bounce.
var originalIDLine = regexp.MustCompile(`(?im)^([ \t>|]*)message-id:`)

// insertStamp adds a stamp field to the returned original right above its
// Message-ID field, with the same quoting prefix, and checks with the parser
// that the stamp landed in the original's header block (a bounce may quote
// several header blocks). ok is false when no Message-ID line of the
// original is there as text (a base64 part).
func insertStamp(hs []policy.Header, body []byte, value string) ([]byte, bool) {
	top := rawHeader(hs)
	for _, l := range originalIDLine.FindAllSubmatchIndex(body, -1) {
		prefix := body[l[2]:l[3]]
		out := append([]byte{}, body[:l[0]]...)
		out = append(out, prefix...)
		out = append(out, stamp.DefaultHeader+": "+value+"\r\n"...)
		out = append(out, body[l[0]:]...)
		rep, err := bounce.Parse(append(append([]byte{}, top...), out...), bounce.DefaultLimits())
		if err != nil {
			continue
		}
		if _, st := stamp.ReadHeader(rep.OriginalHeader, stamp.DefaultHeader); len(st) > 0 {
			return out, true
		}
	}
	return nil, false
}

func runCorpusMessage(e *policy.Engine, hs []policy.Header, body []byte) *policy.Verdict {
	tx := begin(e, cleanIP, "")
	e.Rcpt(context.Background(), tx, "bob@example.org", "")
	tx.Headers = hs
	tx.Body = body
	return e.End(context.Background(), tx)
}

// TestCorpusStamp: every corpus original that can carry our stamp (it has a
// Message-ID we can see as text) is accepted once stamped, with BATV off and
// an empty sent log; and a stamp copied from another original is never proof.
func TestCorpusStamp(t *testing.T) {
	dir := corpusRoot(t)
	now := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	st := newRealStamper(now)
	e := testEngine()
	e.Tagger = nil
	e.Sent = policytest.NewSent()
	e.Lists = nil
	e.Provenance = &policy.Provenance{Stamp: st}

	var stamped, copiedRuns, noOriginal, noText int
	var prev stamp.Fields
	for _, cf := range loadCorpus(t, dir) {
		raw, err := os.ReadFile(filepath.Join(dir, "bounces", cf.File))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := bounce.Parse(raw, bounce.DefaultLimits())
		if err != nil || len(rep.OriginalHeader) == 0 || rep.Kind == bounce.KindFeedback {
			noOriginal++
			continue
		}
		fields, _ := stamp.ReadHeader(rep.OriginalHeader, stamp.DefaultHeader)
		hs, body := splitMessage(raw)
		h, err := st.Stamp(fields.MessageID, fields.Date, fields.From)
		if err != nil {
			noOriginal++ // we never stamp mail without Message-ID, Date or From
			continue
		}
		sb, ok := insertStamp(hs, body, h.Value)
		if !ok {
			noText++
			if testing.Verbose() {
				t.Logf("not stampable as text: %s", cf.File)
			}
			continue
		}
		stamped++
		v := runCorpusMessage(e, hs, sb)
		if v.Action != policy.Accept || !v.Evidence.Has(policy.EvBounceOursStamp) {
			t.Errorf("%s (%s): stamped original: %v score %d %v notes %v", cf.File, cf.Kind, v.Action, v.Score, v.Evidence, v.Notes)
		}
		if v.Evidence.ProvedBy() != policy.EvBounceOursStamp {
			t.Errorf("%s: proved by %q", cf.File, v.Evidence.ProvedBy())
		}

		// A stamp lifted from the previous original onto this one.
		if prev.MessageID != "" && bounce.NormalizeMessageID(prev.MessageID) != rep.OriginalMessageID {
			c, _ := st.Stamp(prev.MessageID, prev.Date, prev.From)
			cb, _ := insertStamp(hs, body, c.Value)
			base := runCorpusMessage(e, hs, body)
			v := runCorpusMessage(e, hs, cb)
			copiedRuns++
			if v.Evidence.Has(policy.EvBounceOursStamp) || !v.Evidence.Has(policy.EvBounceStampBad) || v.Action < base.Action || v.Score <= base.Score {
				t.Errorf("%s: copied stamp: %v score %d %v (unstamped: %v %d)", cf.File, v.Action, v.Score, v.Evidence, base.Action, base.Score)
			}
		}
		prev = fields
	}
	t.Logf("stamped and accepted: %d; copied-stamp runs: %d; no original, or no Message-ID, Date or From: %d; original not stampable as text: %d",
		stamped, copiedRuns, noOriginal, noText)
	if stamped < 700 || copiedRuns < stamped*9/10 {
		t.Errorf("only %d originals stamped (%d copied runs): the scenario covers too little of the corpus", stamped, copiedRuns)
	}
}

func rawHeader(hs []policy.Header) []byte {
	var b bytes.Buffer
	for _, h := range hs {
		b.WriteString(h.Name + ":" + strings.ReplaceAll(h.Value, "\n", "\r\n") + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// TestStampSurvivesReturnFormats: the stamp proves the original whatever
// form the bouncer returned it in: a "> "-quoted inline copy, a
// quoted-printable text part with soft line breaks, re-folded fields.
func TestStampSurvivesReturnFormats(t *testing.T) {
	now := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	st := newRealStamper(now)
	from := `"Bob Example, Accounts Receivable Department of Example Org" <bob@Example.ORG>`
	h, err := st.Stamp("<inv-7@example.org>", "Tue, 01 Dec 2026 13:59:00 +0000", from)
	if err != nil {
		t.Fatal(err)
	}
	orig := "Received: from mail.example.org (mail.example.org [192.0.2.1])\n\tby mx.remote.test with ESMTP id 1; Tue, 01 Dec 2026 14:00:00 +0000\n" +
		"From: " + from + "\nTo: nobody@remote.test\nSubject: invoice\nDate: Tue, 01 Dec 2026 13:59:00 +0000\n" +
		"Message-ID: <inv-7@example.org>\n" + h.Name + ": " + h.Value + "\n"
	quoted := "> " + strings.ReplaceAll(strings.TrimSuffix(orig, "\n"), "\n", "\n> ") + "\n"
	// Quoted-printable as a bouncer writes it: long lines broken with soft
	// breaks ("=" at the end of a line), '=' itself as =3D.
	qp := strings.NewReplacer("=", "=3D").Replace(orig)
	qp = strings.Replace(qp, "Accounts Receivable", "Accounts =\nReceivable", 1)
	qp = strings.Replace(qp, h.Value[:20], h.Value[:20]+"=\n", 1)
	refolded := strings.Replace(orig, h.Name+": ", h.Name+":\n\t", 1)
	refolded = strings.Replace(refolded, "Message-ID: <", "Message-ID:\n  <", 1)

	textBounce := func(text string) []byte {
		return []byte("This is the mail system at host mx.remote.test.\n\nI'm sorry to have to inform you that your message could not\n" +
			"be delivered to one or more recipients.\n\n<nobody@remote.test>: host mx.remote.test said: 550 5.1.1 unknown user\n\n" +
			"--- Original message follows ---\n\n" + text + "\nbody\n")
	}
	for name, body := range map[string][]byte{
		"> quoted inline": textBounce(quoted),
		"re-folded":       textBounce(refolded),
	} {
		e := testEngine()
		e.Tagger, e.Sent, e.Provenance = nil, policytest.NewSent(), &policy.Provenance{Stamp: st}
		tx := begin(e, cleanIP, "")
		e.Rcpt(context.Background(), tx, "bob@example.org", "")
		tx.Headers = []policy.Header{{"From", " MAILER-DAEMON@mx.remote.test"}, {"To", " bob@example.org"}, {"Subject", " Undelivered Mail Returned to Sender"}}
		tx.Body = body
		v := e.End(context.Background(), tx)
		if !v.Evidence.Has(policy.EvBounceOursStamp) || v.Action != policy.Accept {
			t.Errorf("%s: %v %v notes %v", name, v.Action, v.Evidence, v.Notes)
		}
	}
	// The same in a quoted-printable text part of a multipart report.
	e := testEngine()
	e.Tagger, e.Sent, e.Provenance = nil, policytest.NewSent(), &policy.Provenance{Stamp: st}
	tx := begin(e, cleanIP, "")
	e.Rcpt(context.Background(), tx, "bob@example.org", "")
	tx.Headers = dsn("", "")
	tx.Body = []byte(strings.ReplaceAll("--BB\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: quoted-printable\n\n"+
		"Your message could not be delivered.\n\n--- Original message follows ---\n\n"+qp+"\n--BB\nContent-Type: message/delivery-status\n\n"+
		"Reporting-MTA: dns; mx.remote.test\n\nFinal-Recipient: rfc822; nobody@remote.test\nAction: failed\nStatus: 5.1.1\n\n--BB--\n", "\n", "\r\n"))
	if v := e.End(context.Background(), tx); !v.Evidence.Has(policy.EvBounceOursStamp) || v.Action != policy.Accept {
		t.Errorf("quoted-printable inline copy: %v %v notes %v", v.Action, v.Evidence, v.Notes)
	}
}

// TestMDNStamp: a read receipt (RFC 8098) returning our stamped header is
// proved ours by the stamp, with nothing in the sent log.
func TestMDNStamp(t *testing.T) {
	st := newRealStamper(time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC))
	const date = "Tue, 01 Dec 2026 13:00:00 +0000"
	h, err := st.Stamp("<read-1@example.org>", date, "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	e := testEngine()
	e.Tagger, e.Sent, e.Provenance = nil, policytest.NewSent(), &policy.Provenance{Stamp: st}
	tx := begin(e, cleanIP, "")
	e.Rcpt(context.Background(), tx, "bob@example.org", "")
	tx.Headers = []policy.Header{{"From", " carol@remote.test"}, {"To", " bob@example.org"}, {"Subject", " Read: hello"},
		{"MIME-Version", " 1.0"}, {"Content-Type", ` multipart/report; report-type=disposition-notification; boundary="RR"`}}
	tx.Body = []byte(strings.ReplaceAll("--RR\nContent-Type: text/plain\n\nYour message was displayed.\n\n"+
		"--RR\nContent-Type: message/disposition-notification\n\nReporting-UA: mua.remote.test; Mail\n"+
		"Final-Recipient: rfc822; carol@remote.test\nOriginal-Message-ID: <read-1@example.org>\n"+
		"Disposition: manual-action/MDN-sent-manually; displayed\n\n"+
		"--RR\nContent-Type: text/rfc822-headers\n\nFrom: bob@example.org\nTo: carol@remote.test\nSubject: hello\nDate: "+date+
		"\nMessage-ID: <read-1@example.org>\n"+h.Name+": "+h.Value+"\n\n--RR--\n", "\n", "\r\n"))
	v := e.End(context.Background(), tx)
	if !v.Evidence.Has(policy.EvBounceOursStamp) || v.Action != policy.Accept || v.Evidence.ProvedBy() != policy.EvBounceOursStamp {
		t.Fatalf("MDN: %v %v notes %v", v.Action, v.Evidence, v.Notes)
	}
}

func weight(ws map[string]int, name string) int { return ws[name] }

// headerBlock writes header fields as a raw block.
func headerBlock(hs []policy.Header) []byte {
	var b bytes.Buffer
	for _, h := range hs {
		b.WriteString(h.Name + ":" + h.Value + "\n")
	}
	return b.Bytes()
}
