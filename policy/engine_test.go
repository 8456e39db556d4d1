package policy_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/internal/policytest"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

var (
	listedIP  = netip.MustParseAddr("192.0.2.66")
	cleanIP   = netip.MustParseAddr("198.51.100.7")
	trustedIP = netip.MustParseAddr("127.0.0.1")
)

func testEngine() *policy.Engine {
	s := policy.DefaultSettings()
	s.LocalDomains = []string{"example.org"}
	s.RelayHosts = []string{"mx1.example.org", ".out.example.org"}
	s.RelayNets = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	return &policy.Engine{
		Settings: s,
		Lists:    policytest.Lists{Listed: map[netip.Addr][]policy.Listing{listedIP: {{Zone: "bounce.backscatter.test", Weight: 6}, {Zone: "any.bl.test", Weight: 5}}}},
		Tagger:   policytest.Tagger{},
		Sent:     policytest.NewSent("sent-1@example.org"),
		Auth:     policytest.Auth{"pass.test": "pass", "fail.test": "fail", "dnserr.test": "temperror"},
	}
}

func begin(e *policy.Engine, ip netip.Addr, sender string) *policy.Transaction {
	return e.Begin(context.Background(), "s1", policy.Connection{ClientIP: ip, Helo: "client.test"}, sender, "", "")
}

func TestThresholds(t *testing.T) {
	th := policy.Thresholds{Tag: 3, Quarantine: 6, Reject: 10}
	for _, c := range []struct {
		score int
		want  policy.Action
	}{{-5, policy.Accept}, {0, policy.Accept}, {2, policy.Accept}, {3, policy.Tag}, {5, policy.Tag}, {6, policy.Quarantine}, {9, policy.Quarantine}, {10, policy.Reject}, {99, policy.Reject}} {
		if got := th.Action(c.score); got != c.want {
			t.Errorf("Action(%d) = %v, want %v", c.score, got, c.want)
		}
	}
	if got := (policy.Thresholds{Tag: 3, Reject: 10}).Action(7); got != policy.Tag {
		t.Errorf("quarantine disabled: Action(7) = %v, want tag", got)
	}
}

func TestRcpt(t *testing.T) {
	cases := []struct {
		name     string
		ip       netip.Addr
		sender   string
		rcpt     string
		observe  bool
		grace    bool
		want     policy.Action
		would    policy.Action
		evidence []string
	}{
		{"ordinary mail", cleanIP, "alice@remote.test", "bob@example.org", false, false, policy.Accept, policy.Accept, nil},
		{"bounce, valid tag", cleanIP, "", "bob+prvs=0123abcdef@example.org", false, false, policy.Accept, policy.Accept, []string{"batv:ok"}},
		// A missing tag is decided at end of message: it may be a read receipt, an auto-reply or a callout.
		{"bounce, missing tag: decided at EOM", cleanIP, "", "bob@example.org", false, false, policy.Accept, policy.Accept, nil},
		{"bounce, bad tag", cleanIP, "", "bob+prvs=9999999999@example.org", false, false, policy.Reject, policy.Reject, []string{"batv:bad"}},
		{"bounce, expired tag", cleanIP, "", "bob+prvs=0000000000@example.org", false, false, policy.Accept, policy.Accept, []string{"batv:expired"}},
		{"postmaster sender is bounce class", cleanIP, "Postmaster@remote.test", "bob+prvs=9999999999@example.org", false, false, policy.Reject, policy.Reject, []string{"batv:bad"}},
		{"bounce to a non-local domain: no BATV", cleanIP, "", "bob@elsewhere.test", false, false, policy.Accept, policy.Accept, nil},
		{"listed client, bounce", listedIP, "", "bob+prvs=0123abcdef@example.org", false, false, policy.Accept, policy.Accept, []string{"batv:ok", "dnsbl:any.bl.test", "dnsbl:bounce.backscatter.test"}},
		{"listed client, normal sender: safe mode zone skipped", listedIP, "alice@remote.test", "bob@example.org", false, false, policy.Accept, policy.Accept, []string{"dnsbl:any.bl.test"}},
		{"observe mode never rejects", cleanIP, "", "bob+prvs=9999999999@example.org", true, false, policy.Accept, policy.Reject, []string{"batv:bad"}},
		{"no_bounces address", cleanIP, "", "noreply+prvs=0123abcdef@example.org", false, false, policy.Reject, policy.Reject, []string{"batv:ok", "rcpt:no-bounces"}},
		{"no_bounces domain", cleanIP, "MAILER-DAEMON@remote.test", "x@receive-only.example.org", false, false, policy.Reject, policy.Reject, []string{"rcpt:no-bounces"}},
		{"no_bounces does not apply to ordinary mail", cleanIP, "alice@remote.test", "noreply@example.org", false, false, policy.Accept, policy.Accept, nil},
		{"trusted network is outbound: not scored", trustedIP, "", "bob@example.org", false, false, policy.Accept, policy.Accept, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := testEngine()
			e.Tagger = policytest.Tagger{InGrace: c.grace}
			e.Settings.NoBounces = []string{"noreply@example.org", "receive-only.example.org"}
			if c.observe {
				e.Settings.Mode = policy.Observe
			}
			tx := begin(e, c.ip, c.sender)
			v := e.Rcpt(context.Background(), tx, c.rcpt, "")
			if v.Action != c.want || v.Would != c.would {
				t.Fatalf("action %v would %v, want %v/%v (evidence %v)", v.Action, v.Would, c.want, c.would, v.Evidence)
			}
			if got := strings.Join(v.Evidence.Names(), ","); got != strings.Join(c.evidence, ",") {
				t.Errorf("evidence %q, want %q", got, strings.Join(c.evidence, ","))
			}
			if c.want == policy.Reject {
				if v.Reply == nil || v.Reply.Code != 550 || !strings.Contains(v.Reply.Text, c.rcpt) {
					t.Errorf("reply %v", v.Reply)
				}
				if len(tx.Recipients) != 0 || len(tx.Rejected) != 1 {
					t.Errorf("rejected recipient kept: %v / %v", tx.Recipients, tx.Rejected)
				}
			} else if len(tx.Recipients) != 1 {
				t.Errorf("accepted recipient not kept")
			}
		})
	}
}

func TestRcptDNSBLRejectNamesList(t *testing.T) {
	e := testEngine()
	e.Lists = policytest.Lists{Listed: map[netip.Addr][]policy.Listing{listedIP: {{Zone: "ips.backscatterer.test", Weight: 10}}}}
	tx := begin(e, listedIP, "")
	v := e.Rcpt(context.Background(), tx, "bob+prvs=0123abcdef@example.org", "")
	// batv:ok (-10) + listing (10) = 0: a real bounce from a listed server still arrives.
	if v.Action != policy.Accept {
		t.Fatalf("tagged bounce from listed host: %v", v.Action)
	}
	v = e.Rcpt(context.Background(), tx, "carol@example.org", "")
	if v.Action != policy.Reject || !strings.Contains(v.Reply.Text, "ips.backscatterer.test") {
		t.Fatalf("reply %v, want a reject naming the list", v.Reply)
	}
}

func TestPerRecipientDecision(t *testing.T) {
	e := testEngine()
	tx := begin(e, cleanIP, "")
	ok := e.Rcpt(context.Background(), tx, "bob+prvs=0123abcdef@example.org", "")
	bad := e.Rcpt(context.Background(), tx, "carol+prvs=9999999999@example.org", "")
	missing := e.Rcpt(context.Background(), tx, "dave@example.org", "")
	if ok.Action != policy.Accept || bad.Action != policy.Reject || missing.Action != policy.Accept {
		t.Fatalf("got %v, %v and %v, want accept, reject and accept (decided at EOM)", ok.Action, bad.Action, missing.Action)
	}
	if len(tx.Recipients) != 2 || tx.Recipients[0].Tag != policy.TagOK || tx.Recipients[1].Tag != policy.TagMissing {
		t.Errorf("recipients %+v", tx.Recipients)
	}
}

func TestAllowlists(t *testing.T) {
	for _, c := range []struct {
		name  string
		allow policy.Allowlist
		rcpt  string
	}{
		{"client network", policy.Allowlist{ClientNets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}, "bob@example.org"},
		{"recipient address", policy.Allowlist{Recipients: []string{"BOB@example.org"}}, "bob@example.org"},
		{"recipient domain", policy.Allowlist{Recipients: []string{"@example.org"}}, "bob@example.org"},
		{"recipient bare domain", policy.Allowlist{Recipients: []string{"example.org"}}, "bob@example.org"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := testEngine()
			e.Settings.Allow = c.allow
			tx := begin(e, cleanIP, "")
			if v := e.Rcpt(context.Background(), tx, c.rcpt, ""); v.Action != policy.Accept || len(v.Evidence) != 0 {
				t.Fatalf("allowlisted: %v %v", v.Action, v.Evidence)
			}
		})
	}
	e := testEngine()
	e.Settings.Allow.Senders = []string{"@remote.test"}
	tx := begin(e, cleanIP, "postmaster@remote.test")
	if tx.Allowed == "" {
		t.Fatal("sender domain allowlist did not apply")
	}
	if v := e.Rcpt(context.Background(), tx, "bob@example.org", ""); v.Action != policy.Accept {
		t.Fatalf("allowlisted sender rejected: %v", v.Evidence)
	}
}

func TestCallout(t *testing.T) {
	e := testEngine()
	tx := begin(e, listedIP, "")
	e.Rcpt(context.Background(), tx, "bob+prvs=0123abcdef@example.org", "")
	v := e.Callout(tx)
	if v.Stage != policy.StageCallout || !v.Evidence.Has(policy.EvCallout) || v.Action != policy.Accept {
		t.Fatalf("callout verdict %+v", v)
	}
}

func TestIsBounceSender(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "postmaster@x.test": true, "MAILER-DAEMON@x.test": true, "Mailer-Daemon": true,
		"alice@x.test": false, "postmaster.bob@x.test": false, "bob@postmaster.test": false,
	} {
		if got := policy.IsBounceSender(s); got != want {
			t.Errorf("IsBounceSender(%q) = %v", s, got)
		}
	}
}
