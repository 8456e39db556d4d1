package milter_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/policytest"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

const (
	batvOKRcpt  = "bob+prvs=0123abcdef@example.org" // a recipient our fake tagger signed
	batvBadRcpt = "bob+prvs=9999999999@example.org" // a forged tag: refused at RCPT
)

// onlyVerdict returns the single verdict line of a test that expects one.
func onlyVerdict(t *testing.T, h *harness) verdictLine {
	t.Helper()
	vs := h.verdicts()
	if len(vs) != 1 {
		t.Fatalf("%d verdict lines, want 1; log:\n%s", len(vs), h.json.String())
	}
	return vs[0]
}

func wantAction(t *testing.T, what string, got *gomilter.Action, typ gomilter.ActionType, reply string) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no action, want %v", what, typ)
	}
	if got.Type != typ || reply != "" && got.SMTPReply != reply {
		t.Fatalf("%s: action %v, want type %v reply %q", what, got, typ, reply)
	}
}

func wantMods(t *testing.T, got []gomilter.ModifyAction, want ...string) {
	t.Helper()
	if g := modString(got); !slices.Equal(g, want) {
		t.Fatalf("modifications:\n got  %q\n want %q", g, want)
	}
}

func wantField(t *testing.T, v verdictLine, key, want string) {
	t.Helper()
	if got := v.str(key); got != want {
		t.Errorf("log field %s = %q, want %q (line %v)", key, got, want, v.fields)
	}
}

// TestActions runs one message per verdict the adapter can give and checks
// the milter answer, the modifications with their exact ESMTP arguments,
// and the verdict log line.
func TestActions(t *testing.T) {
	t.Run("accept", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		r := h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}},
			headers: [][2]string{{"Subject", " hello"}}, body: []byte("hi\r\n")})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		wantMods(t, r.mods)
		v := onlyVerdict(t, h)
		wantField(t, v, "action", "accept")
		wantField(t, v, "stage", "eom")
		wantField(t, v, "direction", "inbound")
		wantField(t, v, "auth", "authenticated")
		wantField(t, v, "client_ip", cleanIP)
		wantField(t, v, "sender", "<alice@pass.test>")
		if !slices.Equal(v.list("rcpts"), []string{"bob@example.org"}) {
			t.Errorf("rcpts %v", v.list("rcpts"))
		}
	})

	t.Run("tag", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		r := h.deliver(tagIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}},
			headers: [][2]string{{"Subject", " hello"}}})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		v := onlyVerdict(t, h)
		sid := v.str("session")
		// The MTA negotiated SMFIP_HDR_LEADSPC: it adds no space after
		// the colon itself, so the value carries it.
		wantMods(t, r.mods, fmt.Sprintf("AddHeader %q %q", "X-Backscatter",
			" score=4 action=tag session="+sid+"\n\tevidence=\"dnsbl:any.bl.test(+4)\""))
		wantField(t, v, "action", "tag")
		if ev := v.evidence(); !slices.Equal(ev, []string{"dnsbl:any.bl.test(4)"}) {
			t.Errorf("evidence %v", ev)
		}
		if v.fields["score"] != int64(4) {
			t.Errorf("score %v (%T)", v.fields["score"], v.fields["score"])
		}
	})

	t.Run("tag header without leading-space negotiation", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		c := h.client(gomilter.WithProtocols(mtaProtocols &^ gomilter.OptHeaderLeadingSpace))
		macros := gomilter.NewMacroBag()
		s, err := c.Session(macros)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Conn("client.test", gomilter.FamilyInet, 25, tagIP); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Helo("client.test"); err != nil {
			t.Fatal(err)
		}
		r := h.send(s, macros, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}},
			headers: [][2]string{{"Subject", "hello"}}})
		sid := onlyVerdict(t, h).str("session")
		// Here the MTA puts the space in: the value must not bring one.
		wantMods(t, r.mods, fmt.Sprintf("AddHeader %q %q", "X-Backscatter",
			"score=4 action=tag session="+sid+"\n\tevidence=\"dnsbl:any.bl.test(+4)\""))
	})

	t.Run("quarantine", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		r := h.deliver(quarantineIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}},
			headers: [][2]string{{"Subject", " hello"}}})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		v := onlyVerdict(t, h)
		sid := v.str("session")
		wantMods(t, r.mods,
			fmt.Sprintf("AddHeader %q %q", "X-Backscatter", " score=7 action=quarantine session="+sid+"\n\tevidence=\"dnsbl:any.bl.test(+7)\""),
			fmt.Sprintf("Quarantine %q", "backscatter score 7: dnsbl:any.bl.test(+7)"))
		wantField(t, v, "action", "quarantine")
	})

	t.Run("reject at RCPT", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		r := h.deliver(cleanIP, message{from: "", rcpts: []rcpt{{batvBadRcpt, ""}}})
		wantAction(t, "rcpt", r.rcpts[0], gomilter.ActionRejectWithCode,
			"550 5.7.1 <"+batvBadRcpt+">: rejected as backscatter: invalid BATV signature: the message you are bouncing was not sent by us")
		if r.rcpts[0].SMTPCode != 550 {
			t.Errorf("code %d", r.rcpts[0].SMTPCode)
		}
		// The transaction was aborted with no recipient left and no DATA:
		// a null-sender probe, logged as a callout too.
		vs := h.waitVerdicts(2)
		wantField(t, vs[0], "stage", "rcpt")
		wantField(t, vs[0], "action", "reject")
		wantField(t, vs[0], "reply", "550 5.7.1 <"+batvBadRcpt+">: rejected as backscatter: invalid BATV signature: the message you are bouncing was not sent by us")
		if ev := vs[0].evidence(); !slices.Equal(ev, []string{"batv:bad(10)"}) {
			t.Errorf("evidence %v", ev)
		}
		wantField(t, vs[1], "stage", "callout")
	})

	t.Run("reject at EOM", func(t *testing.T) {
		e := testEngine()
		e.Tagger = nil // BATV off: the content decides
		h := start(t, e, nil)
		r := h.deliver(backscatIP, message{from: "", rcpts: []rcpt{{"bob@example.org", ""}},
			headers: dsnHeaders(), body: dsnBody("forged@example.org", "spam.remote.test")})
		wantAction(t, "rcpt", r.rcpts[0], gomilter.ActionContinue, "")
		wantAction(t, "eom", r.end, gomilter.ActionRejectWithCode,
			"550 5.7.1 rejected as backscatter: client listed at bounce.backscatter.test (backscatter source)")
		wantMods(t, r.mods)
		v := onlyVerdict(t, h)
		wantField(t, v, "action", "reject")
		if ev := v.evidence(); !slices.Equal(ev, []string{"dnsbl:bounce.backscatter.test(6)", "bounce:not-ours(6)"}) {
			t.Errorf("evidence %v", ev)
		}
	})

	t.Run("tempfail after a DNSBL panic at MAIL", func(t *testing.T) {
		e := testEngine()
		e.Lists = policytest.Lists{PanicStart: true}
		h := start(t, e, func(o *milter.Options) { o.OnError = policy.Tempfail })
		r := h.deliver(cleanIP, message{from: "alice@remote.test", rcpts: []rcpt{{"bob@example.org", ""}}})
		// MAIL gets no reply (SMFIP_NR_MAIL): the failure is answered at RCPT.
		wantAction(t, "mail", r.mail, gomilter.ActionContinue, "")
		if len(r.rcpts) != 1 {
			t.Fatalf("rcpt answers %v", r.rcpts)
		}
		wantAction(t, "rcpt", r.rcpts[0], gomilter.ActionTempFail, "")
		if h.rec.errorCount("panic") != 1 {
			t.Errorf("observer saw %d panics, want 1", h.rec.errorCount("panic"))
		}
		p := h.logs.FilterMessage("panic in milter session; answering per on_error").All()
		if len(p) != 1 || p[0].ContextMap()["stage"] != "mail" || p[0].ContextMap()["on_error"] != "tempfail" {
			t.Fatalf("panic log %v", p)
		}
	})

	t.Run("tempfail after a sent-log panic at EOM", func(t *testing.T) {
		e := testEngine()
		e.Sent = &policytest.Sent{Panics: true}
		h := start(t, e, func(o *milter.Options) { o.OnError = policy.Tempfail })
		r := h.deliver(cleanIP, message{from: "", rcpts: []rcpt{{batvOKRcpt, ""}},
			headers: dsnHeaders(), body: dsnBody("sent-1@example.org", "spam.remote.test")})
		wantAction(t, "eom", r.end, gomilter.ActionTempFail, "")
		wantMods(t, r.mods)
		p := h.logs.FilterMessage("panic in milter session; answering per on_error").All()
		if len(p) != 1 || p[0].ContextMap()["stage"] != "eom" {
			t.Fatalf("panic log %v", p)
		}
		// The server survives: the next session is served.
		e.Sent = &policytest.Sent{}
		r = h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}})
		wantAction(t, "eom after panic", r.end, gomilter.ActionAccept, "")
	})

	t.Run("accept after a panic with on_error accept", func(t *testing.T) {
		e := testEngine()
		e.Lists = policytest.Lists{PanicStart: true}
		h := start(t, e, nil)
		r := h.deliver(cleanIP, message{from: "alice@remote.test", rcpts: []rcpt{{"bob@example.org", ""}}})
		wantAction(t, "mail", r.mail, gomilter.ActionContinue, "")
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
	})

	t.Run("change sender of outbound mail, without the args a sender change may not carry", func(t *testing.T) {
		e := testEngine()
		sent := &policytest.Sent{}
		e.Sent = sent
		h := start(t, e, nil)
		macros := gomilter.NewMacroBag()
		macros.Set(gomilter.MacroAuthAuthen, "alice-login")
		s := h.conn(macros, cleanIP, "laptop.example.org")
		r := h.send(s, macros, message{from: "alice@example.org", fromArgs: "SIZE=1234 BODY=8BITMIME",
			rcpts:   []rcpt{{"x@remote.test", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@remote.test"}},
			headers: [][2]string{{"Message-ID", " <out-1@example.org>"}, {"Subject", " hi"}}, queueID: "4OUT"})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		wantMods(t, r.mods, fmt.Sprintf("ChangeFrom %q %q", "<alice+prvs=0123abcdef@example.org>", ""))
		if !sent.Has("out-1@example.org") {
			t.Error("Message-ID not recorded in the sent log")
		}
		v := onlyVerdict(t, h)
		wantField(t, v, "direction", "outbound")
		wantField(t, v, "queue_id", "4OUT")
		if v.fields["sasl"] != true {
			t.Errorf("sasl = %v", v.fields["sasl"])
		}
		if notes := v.list("notes"); !slices.Contains(notes, "sender signed") || !slices.Contains(notes, "recorded message-id") {
			t.Errorf("notes %v", notes)
		}
		if strings.Contains(h.json.String(), "alice-login") {
			t.Error("the SASL login name is in the log")
		}
	})

	t.Run("NDR suppression rewrites recipients keeping ORCPT", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		r := h.deliver(cleanIP, message{from: "alice@remote.test", fromArgs: "RET=FULL ENVID=abc123 SIZE=100",
			rcpts: []rcpt{
				{"bob@example.org", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org"},
				{"carol@example.org", "ORCPT=rfc822;Carol@Example.org X-EXT=1"},
			},
			headers: [][2]string{{"Subject", " hello"}}, queueID: "4NDR"})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		wantMods(t, r.mods,
			fmt.Sprintf("ChangeFrom %q %q", "<alice@remote.test>", "RET=HDRS ENVID=abc123"),
			fmt.Sprintf("DelRcpt %q", "<bob@example.org>"),
			fmt.Sprintf("AddRcpt %q %q", "<bob@example.org>", "NOTIFY=NEVER ORCPT=rfc822;bob@example.org"),
			fmt.Sprintf("DelRcpt %q", "<carol@example.org>"),
			fmt.Sprintf("AddRcpt %q %q", "<carol@example.org>", "ORCPT=rfc822;Carol@Example.org X-EXT=1 NOTIFY=NEVER"))
		v := onlyVerdict(t, h)
		wantField(t, v, "ndr", "suppressed")
		wantField(t, v, "auth", "unauthenticated")
		wantField(t, v, "auth_detail", "spf=none")
		wantField(t, v, "action", "accept")
	})
}

// internalBounce is Postfix's own NDR as non_smtpd_milters shows it: fake
// localhost connection, null sender, the (maybe forged) original sender as
// recipient, the queue ID of the original in the report.
func internalBounce(h *harness) result {
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "4NDR1")
	s := h.conn(macros, "127.0.0.1", "localhost")
	r := h.send(s, macros, message{from: "", rcpts: []rcpt{{"victim@remote.test", ""}},
		headers: dsnHeaders(), body: dsnBody("orig@example.org", "mx1.example.org", "X-Postfix-Queue-ID: 4ORIG")})
	s.Close()
	return r
}

func TestInternalBounceRole(t *testing.T) {
	forgedEngine := func(action policy.Action) *policy.Engine {
		e := testEngine()
		e.Settings.InternalBounceAction = action
		e.AuthMemory.Remember("4ORIG", policy.Forged, time.Now())
		return e
	}
	internal := func(o *milter.Options) { o.Role = milter.RoleInternalBounce }

	t.Run("discard an NDR to a forged sender", func(t *testing.T) {
		h := start(t, forgedEngine(policy.Discard), internal)
		r := internalBounce(h)
		wantAction(t, "eom", r.end, gomilter.ActionDiscard, "")
		wantMods(t, r.mods)
		if r.skip {
			t.Error("the internal-bounce role must read the whole NDR")
		}
		v := onlyVerdict(t, h)
		wantField(t, v, "stage", "internal-bounce")
		wantField(t, v, "action", "discard")
		wantField(t, v, "queue_id", "4NDR1")
		if ev := v.evidence(); len(ev) != 1 || ev[0] != "ndr:forged-sender(0)" {
			t.Errorf("evidence %v", ev)
		}
	})

	t.Run("a reject comes out as quarantine, with a reason", func(t *testing.T) {
		h := start(t, forgedEngine(policy.Reject), internal)
		r := internalBounce(h)
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		if len(r.mods) != 1 || r.mods[0].Type != gomilter.ActionQuarantine || r.mods[0].Reason == "" {
			t.Fatalf("modifications %q, want one quarantine with a reason", modString(r.mods))
		}
		wantField(t, onlyVerdict(t, h), "action", "quarantine")
	})

	t.Run("a tempfail comes out as quarantine", func(t *testing.T) {
		h := start(t, forgedEngine(policy.Tempfail), internal)
		r := internalBounce(h)
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		if len(r.mods) != 1 || r.mods[0].Type != gomilter.ActionQuarantine || r.mods[0].Reason == "" {
			t.Fatalf("modifications %q, want one quarantine with a reason", modString(r.mods))
		}
	})

	t.Run("an authenticated original's NDR goes out", func(t *testing.T) {
		e := testEngine()
		e.AuthMemory.Remember("4ORIG", policy.Authenticated, time.Now())
		h := start(t, e, internal)
		r := internalBounce(h)
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		wantMods(t, r.mods)
	})

	t.Run("on_error is forced to accept", func(t *testing.T) {
		e := forgedEngine(policy.Discard)
		e.Settings.TrustedNetworks = nil // so that 127.0.0.1 is scored and the DNSBL asked
		e.Lists = policytest.Lists{PanicStart: true}
		h := start(t, e, func(o *milter.Options) {
			o.Role = milter.RoleInternalBounce
			o.OnError = policy.Tempfail
		})
		r := internalBounce(h)
		wantAction(t, "mail", r.mail, gomilter.ActionContinue, "")
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		p := h.logs.FilterMessage("panic in milter session; answering per on_error").All()
		if len(p) != 1 || p[0].ContextMap()["on_error"] != "accept" {
			t.Fatalf("panic log %v", p)
		}
	})
}

// TestPerRecipientReject: one recipient refused at RCPT, another accepted in
// the same transaction; both log lines carry the same session ID, the final
// one the queue ID.
func TestPerRecipientReject(t *testing.T) {
	h := start(t, testEngine(), nil)
	r := h.deliver(cleanIP, message{from: "", rcpts: []rcpt{{batvBadRcpt, ""}, {batvOKRcpt, ""}},
		queueID: "4QID", headers: dsnHeaders(), body: dsnBody("sent-1@example.org", "mx1.example.org")})
	wantAction(t, "rcpt 1", r.rcpts[0], gomilter.ActionRejectWithCode, "")
	wantAction(t, "rcpt 2", r.rcpts[1], gomilter.ActionContinue, "")
	wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
	// The verified tag is removed before delivery, parameters kept.
	wantMods(t, r.mods, `DelRcpt "<`+batvOKRcpt+`>"`, `AddRcpt "<bob@example.org>" ""`)
	vs := h.verdicts()
	if len(vs) != 2 {
		t.Fatalf("%d verdict lines, want 2:\n%s", len(vs), h.json.String())
	}
	rc, final := vs[0], vs[1]
	wantField(t, rc, "stage", "rcpt")
	wantField(t, rc, "queue_id", "") // Postfix gives {i} only from DATA on
	if !slices.Equal(rc.list("rcpts"), []string{batvBadRcpt}) {
		t.Errorf("rcpt line rcpts %v", rc.list("rcpts"))
	}
	wantField(t, final, "stage", "eom")
	wantField(t, final, "queue_id", "4QID")
	wantField(t, final, "action", "accept")
	if rc.str("session") == "" || rc.str("session") != final.str("session") {
		t.Errorf("sessions %q and %q differ", rc.str("session"), final.str("session"))
	}
	if !slices.Equal(final.list("rcpts"), []string{batvOKRcpt}) || !slices.Equal(final.list("rejected_rcpts"), []string{batvBadRcpt}) {
		t.Errorf("final rcpts %v rejected %v", final.list("rcpts"), final.list("rejected_rcpts"))
	}
	if ev := final.evidence(); !slices.Contains(ev, "batv:ok(-10)") || !slices.Contains(ev, "bounce:ours(-10)") {
		t.Errorf("final evidence %v", ev)
	}
}

// TestTwoMessagesOneConnection: Sendmail sends no abort between two
// messages on one connection. Nothing of the first message (headers,
// recipients, refused recipients, evidence, queue ID) may reach the second.
func TestTwoMessagesOneConnection(t *testing.T) {
	for _, abort := range []bool{false, true} {
		t.Run(fmt.Sprintf("abort=%v", abort), func(t *testing.T) {
			h := start(t, testEngine(), nil)
			macros := gomilter.NewMacroBag()
			s := h.conn(macros, cleanIP, "client.test")
			first := h.send(s, macros, message{from: "", rcpts: []rcpt{{batvBadRcpt, ""}, {batvOKRcpt, ""}},
				queueID: "Q1", headers: append(dsnHeaders(), [2]string{"X-First", " yes"}),
				body: dsnBody("forged@example.org", "spam.remote.test")})
			wantAction(t, "first eom", first.end, gomilter.ActionAccept, "")
			if abort {
				if err := s.Abort(nil); err != nil {
					t.Fatal(err)
				}
			}
			second := h.send(s, macros, message{from: "alice@pass.test", rcpts: []rcpt{{"carol@example.org", ""}},
				queueID: "Q2", headers: [][2]string{{"Subject", " second"}}})
			wantAction(t, "second eom", second.end, gomilter.ActionAccept, "")
			wantMods(t, second.mods)

			rv := h.rec.all()
			if len(rv) != 3 { // rcpt reject, first eom, second eom
				t.Fatalf("%d verdicts, want 3: %+v", len(rv), rv)
			}
			v1, v2 := rv[1], rv[2]
			if !slices.Contains(v1.evidence, policy.EvBounceNotOurs) {
				t.Fatalf("first message evidence %v: the test does not test what it should", v1.evidence)
			}
			want := seenVerdict{stage: "eom", action: "accept", session: v2.session, queueID: "Q2",
				rcpts: []string{"carol@example.org"}, headers: []policy.Header{{Name: "Subject", Value: " second"}},
				evidence: []string{}}
			if v2.session == v1.session {
				t.Errorf("both messages share session ID %s", v1.session)
			}
			if !reflect.DeepEqual(v2, want) {
				t.Errorf("second message saw\n %+v\nwant\n %+v", v2, want)
			}
			final := h.verdicts()[2]
			if final.list("rejected_rcpts") != nil || final.evidence() != nil || final.str("queue_id") != "Q2" {
				t.Errorf("second log line carries the first message's state: %v", final.fields)
			}
		})
	}
}

// TestAbort: an abort after the headers forgets the message; a
// null-sender transaction that ends after RCPT is logged as a callout.
func TestAbort(t *testing.T) {
	t.Run("after headers", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		macros := gomilter.NewMacroBag()
		s := h.conn(macros, cleanIP, "client.test")
		mustAct(t)(s.Mail("alice@remote.test", ""))
		mustAct(t)(s.Rcpt("bob@example.org", ""))
		mustAct(t)(s.DataStart())
		mustAct(t)(s.HeaderField("X-Secret", " one", nil))
		mustAct(t)(s.HeaderEnd())
		if err := s.Abort(nil); err != nil {
			t.Fatal(err)
		}
		r := h.send(s, macros, message{from: "alice@pass.test", rcpts: []rcpt{{"carol@example.org", ""}},
			headers: [][2]string{{"Subject", " after abort"}}})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		rv := h.rec.all()
		if len(rv) != 1 {
			t.Fatalf("%d verdicts, want 1 (an aborted message has none): %+v", len(rv), rv)
		}
		if len(rv[0].headers) != 1 || rv[0].headers[0].Name != "Subject" || !slices.Equal(rv[0].rcpts, []string{"carol@example.org"}) {
			t.Errorf("aborted message leaked: %+v", rv[0])
		}
	})

	t.Run("null sender aborted after RCPT is a callout", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		macros := gomilter.NewMacroBag()
		s := h.conn(macros, backscatIP, "probe.remote.test")
		mustAct(t)(s.Mail("", ""))
		mustAct(t)(s.Rcpt(batvOKRcpt, ""))
		if err := s.Abort(nil); err != nil {
			t.Fatal(err)
		}
		v := h.waitVerdicts(1)[0]
		wantField(t, v, "stage", "callout")
		wantField(t, v, "sender", "<>")
		wantField(t, v, "helo", "probe.remote.test")
		if ev := v.evidence(); !slices.Equal(ev, []string{"callout(0)", "dnsbl:bounce.backscatter.test(6)"}) {
			t.Errorf("evidence %v", ev)
		}
		if !slices.Equal(v.list("rcpts"), []string{batvOKRcpt}) || v.str("session") == "" {
			t.Errorf("line %v", v.fields)
		}
	})

	t.Run("null sender that quits after RCPT is a callout", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		macros := gomilter.NewMacroBag()
		s := h.conn(macros, cleanIP, "probe.remote.test")
		mustAct(t)(s.Mail("", ""))
		mustAct(t)(s.Rcpt(batvOKRcpt, ""))
		s.Close()
		wantField(t, h.waitVerdicts(1)[0], "stage", "callout")
	})

	t.Run("an untagged callout gets 250: a missing tag is decided at end of message", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		macros := gomilter.NewMacroBag()
		s := h.conn(macros, cleanIP, "probe.remote.test")
		mustAct(t)(s.Mail("", ""))
		a, err := s.Rcpt("dora@example.org", "")
		if err != nil || a.Type != gomilter.ActionContinue {
			t.Fatalf("RCPT: %+v %v", a, err)
		}
		s.Close()
		vs := h.waitVerdicts(1)
		wantField(t, vs[0], "stage", "callout")
		if len(h.verdicts()) != 1 {
			t.Errorf("want one line, the callout: %v", h.verdicts())
		}
	})

	t.Run("an NDR the MTA drops in the internal role is no callout", func(t *testing.T) {
		h := start(t, testEngine(), func(o *milter.Options) { o.Role = milter.RoleInternalBounce })
		macros := gomilter.NewMacroBag()
		macros.Set(gomilter.MacroQueueId, "4NDR2")
		s := h.conn(macros, "127.0.0.1", "localhost")
		mustAct(t)(s.Mail("", ""))
		mustAct(t)(s.Rcpt("victim@remote.test", ""))
		if err := s.Abort(nil); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if !await.True(10*time.Second, func() bool { return strings.Contains(h.json.String(), "ndr dropped by the MTA") }) {
			t.Fatalf("no dropped-NDR line:\n%s", h.json.String())
		}
		if vs := h.verdicts(); len(vs) != 0 {
			t.Errorf("the dropped NDR got a verdict: %v", vs)
		}
	})

	t.Run("ordinary sender aborted after RCPT is no callout", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		macros := gomilter.NewMacroBag()
		s := h.conn(macros, cleanIP, "client.test")
		mustAct(t)(s.Mail("alice@remote.test", ""))
		mustAct(t)(s.Rcpt("bob@example.org", ""))
		if err := s.Abort(nil); err != nil {
			t.Fatal(err)
		}
		// A message with a reply orders the abort before it.
		r := h.send(s, macros, message{from: "alice@pass.test", rcpts: []rcpt{{"carol@example.org", ""}}})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		if vs := h.verdicts(); len(vs) != 1 || vs[0].str("stage") != "eom" {
			t.Fatalf("verdicts %v", vs)
		}
	})
}

func mustAct(t *testing.T) func(*gomilter.Action, error) {
	return func(a *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if a.StopProcessing() {
			t.Fatalf("unexpected %v", a)
		}
	}
}

// TestLimits: big and hostile messages are judged within bounds and never
// take the server down.
func TestLimits(t *testing.T) {
	t.Run("1000 recipients", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		var rs []rcpt
		for i := range 1000 {
			a := fmt.Sprintf("r%04d@example.org", i)
			rs = append(rs, rcpt{a, "ORCPT=rfc822;" + a})
		}
		r := h.deliver(cleanIP, message{from: "alice@remote.test", rcpts: rs, headers: [][2]string{{"Subject", " many"}}})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		if len(r.mods) != 2000 {
			t.Fatalf("%d modifications, want 2000", len(r.mods))
		}
		for i, rc := range rs {
			del, add := r.mods[2*i], r.mods[2*i+1]
			if del.Type != gomilter.ActionDelRcpt || del.Rcpt != "<"+rc.addr+">" ||
				add.Type != gomilter.ActionAddRcpt || add.Rcpt != "<"+rc.addr+">" || add.RcptArgs != rc.args+" NOTIFY=NEVER" {
				t.Fatalf("recipient %d: %v %v", i, del, add)
			}
		}
		if got := len(onlyVerdict(t, h).list("rcpts")); got != 1000 {
			t.Errorf("log line lists %d recipients", got)
		}
	})

	t.Run("header block over 1 MiB", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		var hs [][2]string
		filler := " " + strings.Repeat("a", 1000)
		for i := range 1100 {
			hs = append(hs, [2]string{fmt.Sprintf("X-Filler-%d", i), filler})
		}
		r := h.deliver(tagIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}, headers: hs})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		if len(r.mods) != 1 || r.mods[0].Type != gomilter.ActionAddHeader {
			t.Errorf("modifications %q", modString(r.mods))
		}
		onlyVerdict(t, h)
		if n := h.logs.FilterMessage("header block over the limit: judged on the headers kept").Len(); n != 1 {
			t.Errorf("%d header-limit warnings", n)
		}
		rv := h.rec.all()
		kept := 0
		for _, hf := range rv[0].headers {
			kept += len(hf.Name) + len(hf.Value) + 3
		}
		if kept > 1<<20 || len(rv[0].headers) >= 1100 || len(rv[0].headers) < 1000 {
			t.Errorf("kept %d headers, %d bytes", len(rv[0].headers), kept)
		}
		// Still serving.
		r = h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}})
		wantAction(t, "next message", r.end, gomilter.ActionAccept, "")
	})

	t.Run("non-UTF-8 bytes", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		macros := gomilter.NewMacroBag()
		s := h.conn(macros, tagIP, "h\xe9lo.test")
		r := h.send(s, macros, message{from: "caf\xe9@remote.test", rcpts: []rcpt{{"b\xffb@example.org", "ORCPT=rfc822;\xff"}},
			headers: [][2]string{{"Subject", " caf\xe9 \xff\xfe"}, {"From", " \xc3\x28@remote.test"}}, body: []byte("\xff\xfe\x00body\r\n")})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		for _, l := range strings.Split(strings.TrimSpace(h.json.String()), "\n") {
			if !jsonValid(l) {
				t.Errorf("invalid JSON log line %q", l)
			}
		}
		lines := h.jsonLines()
		var v map[string]any
		for _, l := range lines {
			if l["msg"] == "verdict" {
				v = l
			}
		}
		if v == nil || v["helo"] != "h\ufffdlo.test" || v["sender"] != "<caf\ufffd@remote.test>" {
			t.Errorf("verdict line %v", v)
		}
		if h.rec.errorCount("panic") != 0 {
			t.Error("a panic was recovered")
		}
	})

	t.Run("body over BodyMax", func(t *testing.T) {
		e := testEngine()
		e.Settings.BodyMax = 1000
		h := start(t, e, nil)
		body := append(dsnBody("sent-1@example.org", "mx1.example.org"), bytes.Repeat([]byte("padding line\r\n"), 400)...)
		r := h.deliver(cleanIP, message{from: "", rcpts: []rcpt{{batvOKRcpt, ""}}, headers: dsnHeaders(), body: body})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		if r.skip {
			t.Error("SMFIR_SKIP sent although body chunks get no reply")
		}
		v := onlyVerdict(t, h)
		if !slices.Contains(v.list("notes"), "body over 1000 bytes: judged on the first 1000") {
			t.Errorf("notes %v", v.list("notes"))
		}
		if b := h.rec.all()[0].body; b != 1000 {
			t.Errorf("kept %d body bytes", b)
		}
	})

	t.Run("body of ordinary mail is not kept", func(t *testing.T) {
		h := start(t, testEngine(), nil)
		r := h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}},
			headers: [][2]string{{"Subject", " x"}}, body: bytes.Repeat([]byte("x"), 200000)})
		if r.skip {
			t.Error("SMFIR_SKIP sent although body chunks get no reply")
		}
		if b := h.rec.all()[0].body; b != 0 {
			t.Errorf("kept %d body bytes", b)
		}
	})
}

// TestLogForgery: CR and LF in HELO, MAIL FROM and RCPT TO cannot make an
// extra log line, nor a second SMTP reply line.
func TestLogForgery(t *testing.T) {
	h := start(t, testEngine(), nil)
	forged := "\r\n{\"level\":\"info\",\"msg\":\"verdict\",\"action\":\"accept\"}\n"
	macros := gomilter.NewMacroBag()
	s := h.conn(macros, cleanIP, "evil.test"+forged)
	r := h.send(s, macros, message{from: "", rcpts: []rcpt{{"x" + forged + "250 ok+prvs=9999999999@example.org", ""}, {batvOKRcpt, ""}},
		headers: [][2]string{{"Subject", " x" + forged}}})
	wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
	reply := r.rcpts[0].SMTPReply
	if r.rcpts[0].Type != gomilter.ActionRejectWithCode || strings.ContainsAny(reply, "\r\n") || !strings.HasPrefix(reply, "550 5.7.1 <x") {
		t.Errorf("reply %q", reply)
	}
	s.Close()
	lines := h.jsonLines()
	if len(lines) != h.logs.Len() {
		t.Fatalf("%d JSON lines for %d log entries:\n%s", len(lines), h.logs.Len(), h.json.String())
	}
	n := 0
	for _, l := range lines {
		if l["msg"] == "verdict" {
			n++
			if l["helo"] != "evil.test"+forged {
				t.Errorf("helo field %q", l["helo"])
			}
		}
	}
	if n != 2 { // the RCPT reject and the final line
		t.Errorf("%d verdict lines, want 2:\n%s", n, h.json.String())
	}
}

// TestClientAddressFromMacro: with no connect event (SMFIP_NOCONNECT or a
// Sendmail that skipped it) the client address comes from {client_addr}.
func TestClientAddressFromMacro(t *testing.T) {
	h := start(t, testEngine(), nil)
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroClientAddr, quarantineIP)
	s, err := h.client().Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Connect with an unknown family: no address in the event.
	if _, err := s.Conn("unknown", gomilter.FamilyUnknown, 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Helo("client.test"); err != nil {
		t.Fatal(err)
	}
	r := h.send(s, macros, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}})
	if len(r.mods) != 2 || r.mods[1].Type != gomilter.ActionQuarantine {
		t.Errorf("modifications %q", modString(r.mods))
	}
	wantField(t, onlyVerdict(t, h), "client_ip", netip.MustParseAddr(quarantineIP).String())
}

// TestSessionCounting: Active and the observer follow sessions.
func TestSessionCounting(t *testing.T) {
	h := start(t, testEngine(), nil)
	macros := gomilter.NewMacroBag()
	s := h.conn(macros, cleanIP, "client.test")
	h.send(s, macros, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}})
	if n := h.srv.Active(); n != 1 {
		t.Errorf("Active = %d with one session open", n)
	}
	s.Close()
	await.True(10*time.Second, func() bool { return h.srv.Active() == 0 })
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	if h.srv.Active() != 0 || h.rec.starts != 1 || h.rec.ends != 1 {
		t.Errorf("Active %d, starts %d, ends %d", h.srv.Active(), h.rec.starts, h.rec.ends)
	}
}

// TestPanicAtRcptFailsClosed: with on_error tempfail, a panic while judging
// one recipient must not let the rest of the message through unjudged.
func TestPanicAtRcptFailsClosed(t *testing.T) {
	e := testEngine()
	e.Lists = policytest.Lists{PanicWait: true}
	h := start(t, e, func(o *milter.Options) { o.OnError = policy.Tempfail })
	r := h.deliver(cleanIP, message{from: "alice@remote.test",
		rcpts: []rcpt{{"bob@example.org", ""}, {"carol@example.org", ""}}, headers: [][2]string{{"Subject", " x"}}})
	wantAction(t, "rcpt 1", r.rcpts[0], gomilter.ActionTempFail, "")
	if !r.rcpts[1].StopProcessing() && (r.end == nil || r.end.Type != gomilter.ActionTempFail) {
		t.Fatalf("after a panic at RCPT with on_error tempfail: rcpt 2 %v, end of message %v (accepted unjudged, no verdict line: %d)",
			r.rcpts[1], r.end, len(h.verdicts()))
	}
}
