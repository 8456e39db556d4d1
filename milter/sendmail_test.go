package milter_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

func TestCaseVariant(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"bob@example.org", "bob@EXAMPLE.ORG"},
		{"Bob@Example.Org", "Bob@EXAMPLE.ORG"},
		{"bob@EXAMPLE.ORG", "bob@example.org"},
		{"bob+prvs=0123abcdef@mx-1.example.org", "bob+prvs=0123abcdef@MX-1.EXAMPLE.ORG"},
		{`"a@b"@example.org`, `"a@b"@EXAMPLE.ORG`},
		{"bob@b\u00fccher.example", "bob@B\u00fcCHER.EXAMPLE"}, // only ASCII letters change
		{"bob@[192.0.2.1]", ""},
		{"bob@[IPv6:2001:db8::1]", ""},
		{"bob@123.45", ""},
		{"bob@", ""},
		{"bob", ""},
		{"", ""},
	} {
		got, ok := milter.CaseVariant(c.in)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("CaseVariant(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
}

// FuzzCaseVariant: a variant differs from the address, only in the letter
// case of the domain, and never for an address literal.
func FuzzCaseVariant(f *testing.F) {
	for _, s := range []string{"bob@example.org", "a@[1.2.3.4]", "x@Y", "@", "a@b@c.D", "\xff@\xfe", "u@1.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		v, ok := milter.CaseVariant(addr)
		if !ok {
			if v != "" {
				t.Fatalf("no variant but %q", v)
			}
			return
		}
		at := strings.LastIndexByte(addr, '@')
		if v == addr || len(v) != len(addr) || v[:at] != addr[:at] || !strings.EqualFold(v, addr) || addr[at+1] == '[' {
			t.Fatalf("CaseVariant(%q) = %q", addr, v)
		}
	})
}

// fakeSendmailSMTP answers EHLO like Sendmail, with or without DSN, until
// the test ends. It stands in for Sendmail in unit tests; the real one is
// in TestSendmailCaseVariant (cmd/backscatter-milter).
func fakeSendmailSMTP(t *testing.T, dsn *bool, mu *sync.Mutex) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				fmt.Fprint(c, "220 mta.example.org ESMTP Sendmail 8.17.1.9/8.17.1.9; ready\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch strings.ToUpper(strings.Fields(line + " x")[0]) {
					case "EHLO":
						mu.Lock()
						offer := *dsn
						mu.Unlock()
						fmt.Fprint(c, "250-mta.example.org Hello localhost\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n")
						if offer {
							fmt.Fprint(c, "250-DSN\r\n")
						}
						fmt.Fprint(c, "250 HELP\r\n")
					case "QUIT":
						fmt.Fprint(c, "221 2.0.0 closing\r\n")
						return
					default:
						fmt.Fprint(c, "500 5.5.1 what\r\n")
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

func TestDSNCheck(t *testing.T) {
	var mu sync.Mutex
	dsn := true
	core, logs := observer.New(zapcore.InfoLevel)
	c := &milter.DSNCheck{Addr: fakeSendmailSMTP(t, &dsn, &mu), Log: zap.New(core)}
	if c.Offered() || c.Status() != "not checked yet" {
		t.Fatalf("before any check: offered %v, %q", c.Offered(), c.Status())
	}
	if !c.Check(context.Background()) || !c.Offered() || c.Status() != "DSN offered" || c.Switches() != 1 {
		t.Fatalf("DSN listed: offered %v, %q, %d switches", c.Offered(), c.Status(), c.Switches())
	}
	c.Check(context.Background()) // no change: no new log line, no switch
	mu.Lock()
	dsn = false
	mu.Unlock()
	if c.Check(context.Background()) || c.Offered() || c.Status() != "DSN not offered" || c.Switches() != 2 {
		t.Fatalf("DSN not listed: offered %v, %q, %d switches", c.Offered(), c.Status(), c.Switches())
	}
	msgs := []string{}
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message)
	}
	if len(msgs) != 2 || !strings.Contains(msgs[0], "is on") || !strings.Contains(msgs[1], "is off") {
		t.Errorf("log %q, want one line per switch", msgs)
	}

	down := &milter.DSNCheck{Addr: closedPort(t)}
	if down.Check(context.Background()) || down.Offered() || !strings.HasPrefix(down.Status(), "unproven: ") {
		t.Errorf("unreachable Sendmail: offered %v, %q", down.Offered(), down.Status())
	}
	var nilCheck *milter.DSNCheck
	if nilCheck.Offered() {
		t.Error("a nil check offers DSN")
	}
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestSendmailCaseVariant: under Sendmail (macro v is a bare version) the
// NDR-suppression rewrite re-adds each qualifying recipient with its domain
// in the other case, deleting first; recipients that do not qualify, and
// every recipient while DSN is not proven, are left alone.
func TestSendmailCaseVariant(t *testing.T) {
	var mu sync.Mutex
	dsn := true
	check := &milter.DSNCheck{Addr: fakeSendmailSMTP(t, &dsn, &mu)}
	check.Check(context.Background())
	h := start(t, testEngine(), func(o *milter.Options) {
		o.SendmailDSN = func() *milter.DSNCheck { return check }
	})
	type smRcpt struct{ addr, args, rcptAddr, mailer string }
	send := func(rcpts ...smRcpt) result {
		t.Helper()
		macros := gomilter.NewMacroBag()
		macros.Set(gomilter.MacroMTAVersion, "8.17.1.9")
		s := h.conn(macros, cleanIP, "mx.fail.test")
		defer s.Close()
		if _, err := s.Mail("<forger@fail.test>", ""); err != nil {
			t.Fatal(err)
		}
		for _, rc := range rcpts {
			macros.Set(gomilter.MacroRcptAddr, rc.rcptAddr)
			macros.Set(gomilter.MacroRcptMailer, rc.mailer)
			if _, err := s.Rcpt(rc.addr, rc.args); err != nil {
				t.Fatal(err)
			}
		}
		macros.Set(gomilter.MacroQueueId, "4SM1")
		if _, err := s.DataStart(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.HeaderField("Subject", " hi", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.HeaderEnd(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.BodyChunk([]byte("hello\r\n")); err != nil {
			t.Fatal(err)
		}
		mods, end, err := s.End()
		if err != nil {
			t.Fatal(err)
		}
		return result{mods: mods, end: end}
	}
	lastVerdict := func() verdictLine {
		v := h.verdicts()
		return v[len(v)-1]
	}

	t.Run("qualifying recipients are re-added as case variants, others left alone", func(t *testing.T) {
		r := send(
			smRcpt{"bob@example.org", "ORCPT=rfc822;bob@example.org", "bob@example.org", "esmtp"},
			smRcpt{"carol@Example.org", "", "carol@Example.org", "relay"},
			smRcpt{"dave@example.org", "", "dave", "local"},
			smRcpt{"erin@example.org", "", "erin@mail.example.org", "esmtp"},
			smRcpt{"frank@[192.0.2.1]", "", "frank@[192.0.2.1]", "esmtp"},
		)
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		wantMods(t, r.mods,
			fmt.Sprintf("DelRcpt %q", "<bob@example.org>"),
			fmt.Sprintf("AddRcpt %q %q", "<bob@EXAMPLE.ORG>", "ORCPT=rfc822;bob@example.org NOTIFY=NEVER"),
			fmt.Sprintf("DelRcpt %q", "<carol@Example.org>"),
			fmt.Sprintf("AddRcpt %q %q", "<carol@EXAMPLE.ORG>", "NOTIFY=NEVER"))
		v := lastVerdict()
		wantField(t, v, "ndr", "suppressed")
		notes := v.list("notes")
		for _, want := range []string{
			"sendmail: <dave@example.org> left as it is: delivered by the local mailer",
			"sendmail: <erin@example.org> left as it is: Sendmail rewrites it (to erin@mail.example.org)",
			"sendmail: <frank@[192.0.2.1]> left as it is: its domain has no ASCII letter",
			"sendmail: <bob@example.org> re-added as <bob@EXAMPLE.ORG>",
		} {
			if !slices.Contains(notes, want) {
				t.Errorf("notes %q lack %q", notes, want)
			}
		}
	})

	t.Run("no qualifying recipient: nothing rewritten", func(t *testing.T) {
		r := send(smRcpt{"dave@example.org", "", "dave", "local"})
		wantMods(t, r.mods)
		wantField(t, lastVerdict(), "ndr", string(policy.NDRNotPossibleWithSendmail))
	})

	t.Run("DSN no longer offered: nothing rewritten", func(t *testing.T) {
		mu.Lock()
		dsn = false
		mu.Unlock()
		defer func() {
			mu.Lock()
			dsn = true
			mu.Unlock()
			check.Check(context.Background())
		}()
		check.Check(context.Background())
		r := send(smRcpt{"bob@example.org", "", "bob@example.org", "esmtp"})
		wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
		wantMods(t, r.mods)
		wantField(t, lastVerdict(), "ndr", string(policy.NDRSendmailDSNUnproven))
	})

	t.Run("case variant off: nothing rewritten under Sendmail", func(t *testing.T) {
		off := start(t, testEngine(), nil)
		macros := gomilter.NewMacroBag()
		macros.Set(gomilter.MacroMTAVersion, "8.17.1.9")
		s := off.conn(macros, cleanIP, "mx.fail.test")
		defer s.Close()
		macros.Set(gomilter.MacroRcptAddr, "bob@example.org")
		macros.Set(gomilter.MacroRcptMailer, "esmtp")
		r := off.send(s, macros, message{from: "forger@fail.test", rcpts: []rcpt{{"bob@example.org", ""}}, queueID: "4SM2",
			headers: [][2]string{{"Subject", " hi"}}})
		wantMods(t, r.mods)
		wantField(t, onlyVerdict(t, off), "ndr", string(policy.NDRNotPossibleWithSendmail))
	})

	t.Run("Postfix: same spelling, as before", func(t *testing.T) {
		r := h.deliver(cleanIP, message{from: "forger@fail.test", rcpts: []rcpt{{"bob@example.org", ""}},
			headers: [][2]string{{"Subject", " hi"}}})
		wantMods(t, r.mods,
			fmt.Sprintf("DelRcpt %q", "<bob@example.org>"),
			fmt.Sprintf("AddRcpt %q %q", "<bob@example.org>", "NOTIFY=NEVER"))
	})
}
