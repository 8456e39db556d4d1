package policy_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/policytest"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// dsn and dsnBody are policytest.DSN, a bounce of an original with the
// given Message-ID that passed relay: its header fields and its body.
func dsn(msgID, relay string) []policy.Header {
	h, _ := policytest.DSN(msgID, relay)
	return h
}

func dsnBody(msgID, relay string) []byte {
	_, b := policytest.DSN(msgID, relay)
	return b
}

func endBounce(t *testing.T, e *policy.Engine, ip netip.Addr, rcpt, msgID, relay string) *policy.Verdict {
	t.Helper()
	tx := begin(e, ip, "")
	if v := e.Rcpt(context.Background(), tx, rcpt, ""); v.Action != policy.Accept {
		t.Fatalf("rcpt %s: %v %v", rcpt, v.Action, v.Evidence)
	}
	tx.Headers = dsn(msgID, relay)
	if !e.WantBody(tx) {
		t.Fatal("a bounce's body is not wanted")
	}
	tx.Body = dsnBody(msgID, relay)
	return e.End(context.Background(), tx)
}

func TestEndBounceProvenance(t *testing.T) {
	e := testEngine()
	e.Tagger = nil // BATV off: content decides
	cases := []struct {
		name, msgID, relay string
		want               policy.Action
		evidence           string
	}{
		{"bounce of mail we sent (sent log)", "sent-1@example.org", "spam.remote.test", policy.Accept, policy.EvBounceOurs},
		{"bounce of mail through our relay", "unknown@example.org", "mx1.example.org", policy.Accept, policy.EvBounceOursRelay},
		{"bounce of mail from our relay network", "unknown@example.org", "[203.0.113.9]", policy.Accept, policy.EvBounceOursRelay},
		{"bounce of mail through a relay below our relay domain", "unknown@example.org", "a.out.example.org", policy.Accept, policy.EvBounceOursRelay},
		{"forged bounce: unknown id, foreign relay", "forged@example.org", "spam.remote.test", policy.Quarantine, policy.EvBounceNotOurs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := endBounce(t, e, cleanIP, "bob@example.org", c.msgID, c.relay)
			if v.Action != c.want || !v.Evidence.Has(c.evidence) {
				t.Fatalf("action %v evidence %v notes %v, want %v with %s", v.Action, v.Evidence, v.Notes, c.want, c.evidence)
			}
			if c.want == policy.Quarantine && !strings.Contains(v.Mods.QuarantineReason, policy.EvBounceNotOurs) {
				t.Errorf("quarantine reason %q", v.Mods.QuarantineReason)
			}
			if c.want != policy.Accept && (len(v.Mods.AddHeaders) != 1 || v.Mods.AddHeaders[0].Name != "X-Backscatter") {
				t.Errorf("no tag header: %+v", v.Mods)
			}
		})
	}
}

func TestEndForgedBounceFromListedHostIsRejected(t *testing.T) {
	e := testEngine()
	e.Tagger = nil
	e.Lists = policytest.Lists{Listed: map[netip.Addr][]policy.Listing{listedIP: {{Zone: "bounce.backscatter.test", Weight: 6}}}}
	v := endBounce(t, e, listedIP, "bob@example.org", "forged@example.org", "spam.remote.test")
	// 6 (backscatter zone: below the reject threshold at RCPT) + 6 (not ours) = 12
	if v.Action != policy.Reject || v.Reply == nil || v.Reply.Code != 550 {
		t.Fatalf("action %v score %d evidence %v", v.Action, v.Score, v.Evidence)
	}
}

func TestEndObserveOnlyTags(t *testing.T) {
	e := testEngine()
	e.Tagger = nil
	e.Settings.Mode = policy.Observe
	e.Lists = policytest.Lists{Listed: map[netip.Addr][]policy.Listing{listedIP: {{Zone: "bounce.backscatter.test", Weight: 6}}}}
	v := endBounce(t, e, listedIP, "bob@example.org", "forged@example.org", "spam.remote.test")
	if v.Action != policy.Tag || v.Would != policy.Reject || v.Reply != nil || v.Mods.QuarantineReason != "" {
		t.Fatalf("observe: action %v would %v", v.Action, v.Would)
	}
	if h := v.Mods.AddHeaders[0].Value; !strings.Contains(h, "action=reject") || !strings.Contains(h, "mode=observe") {
		t.Errorf("header %q", h)
	}
}

func TestEndAutoReply(t *testing.T) {
	for _, c := range []struct {
		inReplyTo string
		want      policy.Action
		evidence  string
	}{
		{"<sent-1@example.org>", policy.Accept, policy.EvAutoreplyOurs},
		{"<never-sent@example.org>", policy.Tag, policy.EvAutoreplyNot},
	} {
		e := testEngine()
		tx := begin(e, cleanIP, "carol@remote.test")
		e.Rcpt(context.Background(), tx, "bob@example.org", "")
		tx.Headers = []policy.Header{{"From", " carol@remote.test"}, {"Subject", " Out of office"},
			{"Auto-Submitted", " auto-replied"}, {"In-Reply-To", " " + c.inReplyTo}}
		v := e.End(context.Background(), tx)
		if v.Action != c.want || !v.Evidence.Has(c.evidence) {
			t.Errorf("In-Reply-To %s: action %v evidence %v notes %v", c.inReplyTo, v.Action, v.Evidence, v.Notes)
		}
	}
}

func TestEndOutboundSignsAndRecords(t *testing.T) {
	e := testEngine()
	tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: trustedIP}, "alice@example.org", "SIZE=100 RET=FULL BODY=8BITMIME", "")
	if tx.Direction != policy.Outbound {
		t.Fatal("trusted client not outbound")
	}
	e.Rcpt(context.Background(), tx, "x@remote.test", "")
	tx.Headers = []policy.Header{{"Message-ID", " <Out-1@EXAMPLE.org>"}}
	v := e.End(context.Background(), tx)
	if !v.Mods.ChangeFromSet || v.Mods.ChangeFrom != "alice+prvs=0123abcdef@example.org" || v.Mods.ChangeFromArgs != "RET=FULL" {
		t.Errorf("change from %+v", v.Mods)
	}
	if seen, _ := e.Sent.Seen(context.Background(), "Out-1@example.org"); !seen {
		t.Error("message-id not recorded (normalised: domain lowercased)")
	}
	// SASL-authenticated from anywhere is outbound too.
	tx = e.Begin(context.Background(), "s2", policy.Connection{ClientIP: cleanIP}, "alice@example.org", "", "alice")
	if tx.Direction != policy.Outbound {
		t.Error("SASL client not outbound")
	}
}

func TestEndNDRSuppression(t *testing.T) {
	cases := []struct {
		name, sender, rcptArgs, mailArgs string
		spfFailOnly                      bool
		wantNDR                          policy.NDROutcome
		wantArgs                         string
		wantMailArgs                     string // "" = no ChangeFrom
	}{
		{"unauthenticated: NOTIFY=NEVER, ORCPT kept", "x@none.test", "ORCPT=rfc822;bob@example.org NOTIFY=FAILURE", "", false, "suppressed", "ORCPT=rfc822;bob@example.org NOTIFY=NEVER", ""},
		{"unauthenticated without DSN params", "x@none.test", "", "", false, "suppressed", "NOTIFY=NEVER", ""},
		{"forged (SPF fail)", "x@fail.test", "", "", false, "suppressed", "NOTIFY=NEVER", ""},
		{"RET=FULL stripped", "x@none.test", "", "RET=FULL ENVID=abc SIZE=10", false, "suppressed", "NOTIFY=NEVER", "RET=HDRS ENVID=abc"},
		{"RET=HDRS left alone", "x@none.test", "", "ret=hdrs SIZE=10", false, "suppressed", "NOTIFY=NEVER", ""},
		{"ret=full in lower case", "x@none.test", "NOTIFY=SUCCESS", "SIZE=10 ret=full", false, "suppressed", "NOTIFY=NEVER", "RET=HDRS"},
		{"SPF pass untouched", "x@pass.test", "NOTIFY=SUCCESS,FAILURE", "RET=FULL", false, "", "", ""},
		{"DNS error is not proof of forgery", "x@dnserr.test", "NOTIFY=FAILURE", "", false, "", "", ""},
		{"spf-fail-only: softfail keeps NDRs, success DSN stripped", "x@none.test", "NOTIFY=SUCCESS,FAILURE", "", true, "success-dsn-stripped", "NOTIFY=FAILURE", ""},
		{"spf-fail-only: fail suppressed", "x@fail.test", "NOTIFY=FAILURE", "", true, "suppressed", "NOTIFY=NEVER", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := testEngine()
			e.Settings.NDR.SPFFailOnly = c.spfFailOnly
			tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: cleanIP, Helo: "h.test"}, c.sender, c.mailArgs, "")
			e.Rcpt(context.Background(), tx, "bob@example.org", c.rcptArgs)
			tx.Headers = []policy.Header{{"Subject", " hi"}}
			v := e.End(context.Background(), tx)
			if v.NDR != c.wantNDR {
				t.Fatalf("NDR %q, want %q (auth %s %s)", v.NDR, c.wantNDR, v.Auth, v.AuthWhy)
			}
			if c.wantArgs == "" {
				if len(v.Mods.RcptRewrites) != 0 {
					t.Fatalf("rewrites %+v", v.Mods.RcptRewrites)
				}
			} else if len(v.Mods.RcptRewrites) != 1 || v.Mods.RcptRewrites[0].NewArgs != c.wantArgs || v.Mods.RcptRewrites[0].OldArgs != c.rcptArgs {
				t.Fatalf("rewrites %+v, want %q", v.Mods.RcptRewrites, c.wantArgs)
			}
			if got := v.Mods.ChangeFromArgs; v.Mods.ChangeFromSet != (c.wantMailArgs != "") || got != c.wantMailArgs {
				t.Errorf("change from %+v, want args %q", v.Mods, c.wantMailArgs)
			}
		})
	}
}

func TestNullSenderNeverRewritten(t *testing.T) {
	e := testEngine()
	v := endBounce(t, e, cleanIP, "bob+prvs=0123abcdef@example.org", "sent-1@example.org", "x.test")
	// The only rewrite is the verified tag's removal, parameters unchanged.
	want := policy.RcptRewrite{Addr: "bob+prvs=0123abcdef@example.org", NewAddr: "bob@example.org"}
	if len(v.Mods.RcptRewrites) != 1 || v.Mods.RcptRewrites[0] != want || v.NDR != policy.NDRUntouched {
		t.Fatalf("null sender rewritten: %+v, NDR %q", v.Mods, v.NDR)
	}
}

func TestParamHelpers(t *testing.T) {
	if got := policy.SetNotify("ORCPT=rfc822;a@b notify=SUCCESS X-FOO=1", "NEVER"); got != "ORCPT=rfc822;a@b NOTIFY=NEVER X-FOO=1" {
		t.Errorf("SetNotify = %q", got)
	}
	if got, ch := policy.StripSuccessNotify("NOTIFY=SUCCESS,DELAY"); got != "NOTIFY=NEVER" || !ch {
		t.Errorf("strip = %q %v", got, ch)
	}
	if got := policy.SenderChangeArgs("SIZE=5 ret=hdrs BODY=8BITMIME SMTPUTF8 ENVID=x AUTH=<> "); got != "ret=hdrs ENVID=x" {
		t.Errorf("SenderChangeArgs = %q", got)
	}
}

func TestObserveModeOnlyLogsNDRSuppression(t *testing.T) {
	e := testEngine()
	e.Settings.Mode = policy.Observe
	tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: cleanIP, Helo: "h.test"}, "x@fail.test", "RET=FULL", "")
	e.Rcpt(context.Background(), tx, "bob@example.org", "NOTIFY=FAILURE")
	v := e.End(context.Background(), tx)
	if v.NDR != "would-be-suppressed" || len(v.Mods.RcptRewrites) != 0 || v.Mods.ChangeFromSet {
		t.Fatalf("observe mode changed delivery: NDR %q mods %+v", v.NDR, v.Mods)
	}
}

func TestStripSuccessDSNWithoutSuppression(t *testing.T) {
	e := testEngine()
	e.Settings.NDR.Enabled = false
	tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: cleanIP, Helo: "h.test"}, "x@none.test", "", "")
	e.Rcpt(context.Background(), tx, "bob@example.org", "NOTIFY=SUCCESS,FAILURE")
	v := e.End(context.Background(), tx)
	if v.NDR != "success-dsn-stripped" || len(v.Mods.RcptRewrites) != 1 || v.Mods.RcptRewrites[0].NewArgs != "NOTIFY=FAILURE" {
		t.Fatalf("NDR %q mods %+v", v.NDR, v.Mods)
	}
}

func TestInternalBounceIgnoresNonBounces(t *testing.T) {
	e := testEngine()
	e.Settings.InternalBounceAction = policy.Discard
	tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: trustedIP}, "root@example.org", "", "")
	e.Rcpt(context.Background(), tx, "victim@fail.test", "")
	if v := e.InternalBounce(context.Background(), tx); v.Action != policy.Accept {
		t.Fatalf("a locally submitted message was judged as an NDR: %+v", v)
	}
}

// A sent log that fails (Redis down) is no evidence either way: a bounce of
// our own mail must not be held because the store could not be asked.
func TestEndSentLogDownIsNoEvidence(t *testing.T) {
	e := testEngine()
	e.Tagger = nil
	e.Sent = &policytest.Sent{Err: errors.New("redis: connection refused")}
	v := endBounce(t, e, cleanIP, "bob@example.org", "sent-1@example.org", "spam.remote.test")
	if v.Action != policy.Accept || v.Evidence.Has(policy.EvBounceNotOurs) || len(v.Evidence) != 0 {
		t.Fatalf("sent log down: action %v evidence %v notes %v", v.Action, v.Evidence, v.Notes)
	}
	if !strings.Contains(strings.Join(v.Notes, "; "), "sent log") {
		t.Errorf("the failure is not noted: %v", v.Notes)
	}
	// Our relay in the bounce is still proof, store or no store.
	v = endBounce(t, e, cleanIP, "bob@example.org", "x@example.org", "mx1.example.org")
	if !v.Evidence.Has(policy.EvBounceOursRelay) {
		t.Errorf("relay proof lost when the store is down: %v", v.Evidence)
	}
}

func TestInternalBounceNeverRejects(t *testing.T) {
	for _, configured := range []policy.Action{policy.Reject, policy.Tempfail} {
		e := testEngine()
		e.Settings.InternalBounceAction = configured
		e.AuthMemory = policy.NewAuthMemory(10, time.Hour)
		e.AuthMemory.Remember("4ABC", policy.Forged, time.Now())
		tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: trustedIP}, "", "", "")
		e.Rcpt(context.Background(), tx, "victim@fail.test", "")
		tx.Headers = []policy.Header{{"Subject", " Undelivered Mail Returned to Sender"}}
		tx.Body = []byte("Reporting-MTA: dns; mx.example.org\r\nX-Postfix-Queue-ID: 4ABC\r\n")
		v := e.InternalBounce(context.Background(), tx)
		if v.Action != policy.Quarantine || !strings.Contains(v.Mods.QuarantineReason, "forged") || !v.Evidence.Has(policy.EvNDRForged) {
			t.Errorf("configured %v: action %v reason %q evidence %v", configured, v.Action, v.Mods.QuarantineReason, v.Evidence)
		}
	}
}

// The sent log failing on outbound mail is noted; the message still goes
// out, signed.
func TestOutboundSentLogDown(t *testing.T) {
	e := testEngine()
	e.Sent = &policytest.Sent{Err: errors.New("redis: connection refused")}
	tx := e.Begin(context.Background(), "s1", policy.Connection{ClientIP: trustedIP}, "alice@example.org", "", "")
	e.Rcpt(context.Background(), tx, "x@remote.test", "")
	tx.Headers = []policy.Header{{"Message-ID", " <out-2@example.org>"}}
	v := e.End(context.Background(), tx)
	notes := strings.Join(v.Notes, "; ")
	if v.Action != policy.Accept || !v.Mods.ChangeFromSet || !strings.Contains(notes, "sent log: redis") {
		t.Fatalf("action %v mods %+v notes %q", v.Action, v.Mods, notes)
	}
}
