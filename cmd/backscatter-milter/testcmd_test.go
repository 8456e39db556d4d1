package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

const emlDir = "../../testdata/eml"

// runTestCmd runs `test` in process and decodes its --json output.
func runTestCmd(t *testing.T, args ...string) (int, testResult, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runTest(append(args, "--json"), &out, &errb)
	var res testResult
	if code < testExitUsage {
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("test %v: output is not JSON: %v\n%s", args, err, out.String())
		}
	}
	return code, res, errb.String()
}

func evidenceNames(v *testVerdict) []string {
	if v == nil {
		return nil
	}
	var ns []string
	for _, e := range v.Evidence {
		ns = append(ns, e.Name)
	}
	return ns
}

// batvConfig writes a configuration with BATV on (the key file must be
// private, which git cannot keep, so it is made here).
func batvConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "batv.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	body := "local_domains: [example.org]\nsent_log: { backend: memory }\ndnsbl: { zones: [] }\n" +
		"batv: { enabled: true, keys: [{ id: 0, file: " + key + " }] }\n" + extra
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// badTag changes one character of a valid tag: it no longer verifies.
func badTag(tagged string) string {
	i := strings.Index(tagged, "prvs=") + len("prvs=") + 4
	c := byte('0')
	if tagged[i] == '0' {
		c = '1'
	}
	return tagged[:i] + string(c) + tagged[i+1:]
}

// mboxCopy writes a sample with an mbox "From " line on top.
func mboxCopy(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(emlDir, name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, append([]byte("From MAILER-DAEMON Tue Mar  3 11:02:11 2026\n"), data...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTestCommandSamples(t *testing.T) {
	plain := filepath.Join(emlDir, "config.yaml")
	batv := batvConfig(t, "")
	var signed bytes.Buffer
	if code := runBATV([]string{"sign", "alice@example.org", "--config", batv}, &signed, os.Stderr); code != 0 {
		t.Fatalf("batv sign: exit %d", code)
	}
	tagged := strings.TrimSpace(signed.String())
	if !strings.Contains(tagged, "prvs=") {
		t.Fatalf("batv sign gave %q", tagged)
	}
	lunch := "--sent-id=<20260303.lunch.1@example.org>"

	tests := []struct {
		name     string
		args     []string
		exit     int
		action   string
		would    string
		evidence []string
		refused  bool
		check    func(t *testing.T, r testResult)
	}{
		{name: "forged bounce is quarantined", args: []string{"forged-bounce.eml", "--config", plain},
			exit: testExitQuarantine, action: "quarantine", would: "quarantine", evidence: []string{"bounce:not-ours"},
			check: func(t *testing.T, r testResult) {
				if !strings.HasPrefix(r.Modifications.QuarantineReason, "backscatter score 6") {
					t.Errorf("quarantine reason %q", r.Modifications.QuarantineReason)
				}
				if len(r.Modifications.AddHeaders) != 1 || r.Modifications.AddHeaders[0].Name != "X-Backscatter" {
					t.Errorf("headers %+v", r.Modifications.AddHeaders)
				}
				if r.Envelope.MailFrom != "" || r.Envelope.ClientIP != "198.51.100.23" || r.Envelope.Helo != "mx.victim.example" ||
					!slices.Equal(r.Envelope.Rcpts, []string{"alice@example.org"}) {
					t.Errorf("envelope from headers: %+v", r.Envelope)
				}
			}},
		{name: "real bounce of a recorded message is delivered", args: []string{"real-bounce.eml", "--config", plain, lunch},
			exit: testExitAccept, action: "accept", would: "accept", evidence: []string{"bounce:ours"},
			check: func(t *testing.T, r testResult) {
				if len(r.Modifications.AddHeaders) != 0 {
					t.Errorf("an accepted real bounce gets no header: %+v", r.Modifications)
				}
			}},
		{name: "the same bounce unrecorded looks forged", args: []string{"real-bounce.eml", "--config", plain},
			exit: testExitQuarantine, action: "quarantine", would: "quarantine", evidence: []string{"bounce:not-ours"}},
		{name: "ordinary mail is accepted untouched", args: []string{"ordinary.eml", "--config", plain},
			exit: testExitAccept, action: "accept", would: "accept", evidence: nil,
			check: func(t *testing.T, r testResult) {
				if !slices.Equal(r.Envelope.Rcpts, []string{"alice@example.org", "carol@example.org"}) || r.Envelope.MailFrom != "bob@example.net" {
					t.Errorf("envelope %+v", r.Envelope)
				}
				if len(r.Rcpt) != 2 {
					t.Errorf("want a RCPT verdict per recipient, got %d", len(r.Rcpt))
				}
			}},
		{name: "auto-reply to mail we did not send is tagged", args: []string{"autoreply.eml", "--config", plain},
			exit: testExitTag, action: "tag", would: "tag", evidence: []string{"autoreply:not-ours"}},
		{name: "observe mode only tags", args: []string{"forged-bounce.eml", "--config", plain, "--mode", "observe"},
			exit: testExitTag, action: "tag", would: "quarantine", evidence: []string{"bounce:not-ours"},
			check: func(t *testing.T, r testResult) {
				if r.Modifications.QuarantineReason != "" {
					t.Error("observe mode must not quarantine")
				}
			}},
		{name: "envelope flags win over headers", args: []string{"ordinary.eml", "--config", plain, "--mail-from", "<>",
			"--rcpt", "dave@example.org", "--client-ip", "192.0.2.99", "--helo", "probe.example"},
			exit: testExitAccept, action: "accept", would: "accept",
			check: func(t *testing.T, r testResult) {
				e := r.Envelope
				if e.MailFrom != "" || !slices.Equal(e.Rcpts, []string{"dave@example.org"}) || e.ClientIP != "192.0.2.99" || e.Helo != "probe.example" {
					t.Errorf("envelope %+v", e)
				}
			}},
		// A missing tag is judged once the message is known to be a bounce: at end of DATA.
		{name: "BATV: forged bounce to an untagged address refused at end of DATA", args: []string{"forged-bounce.eml", "--config", batv},
			exit: testExitReject, action: "reject", would: "reject", evidence: []string{"batv:missing", "bounce:not-ours"},
			check: func(t *testing.T, r testResult) {
				if len(r.Rcpt) != 1 || r.Rcpt[0].Action != "accept" || r.Verdict.Reply == "" || !strings.HasPrefix(r.Verdict.Reply, "550 5.7.1") {
					t.Errorf("RCPT verdicts %+v, final %+v", r.Rcpt, r.Verdict)
				}
			}},
		{name: "BATV: a bad tag is refused at RCPT, and the refusal is the verdict", args: []string{"forged-bounce.eml", "--config", batv, "--rcpt", badTag(tagged)},
			exit: testExitReject, action: "reject", would: "reject", evidence: []string{"batv:bad"}, refused: true,
			check: func(t *testing.T, r testResult) {
				if r.Verdict.Action != "reject" || r.Verdict.Stage != "rcpt" || !strings.HasPrefix(r.Verdict.Reply, "550 5.7.1") || r.Verdict.Score <= 0 {
					t.Errorf("verdict %+v, want the RCPT refusal", r.Verdict)
				}
			}},
		{name: "mbox From line first", args: []string{mboxCopy(t, "forged-bounce.eml"), "--config", plain},
			exit: testExitQuarantine, action: "quarantine", would: "quarantine", evidence: []string{"bounce:not-ours"},
			check: func(t *testing.T, r testResult) {
				if r.Envelope.MailFrom != "" || r.Envelope.ClientIP != "198.51.100.23" {
					t.Errorf("envelope from headers: %+v", r.Envelope)
				}
			}},
		{name: "BATV: real bounce to a tagged address", args: []string{"real-bounce.eml", "--config", batv, lunch, "--rcpt", tagged},
			exit: testExitAccept, action: "accept", would: "accept", evidence: []string{"batv:ok", "bounce:ours"}},
		{name: "BATV: outbound mail has its sender signed", args: []string{"ordinary.eml", "--config", batv, "--auth", "alice",
			"--mail-from", "alice@example.org RET=FULL", "--rcpt", "bob@example.net"},
			exit: testExitAccept, action: "accept", would: "accept",
			check: func(t *testing.T, r testResult) {
				m := r.Modifications
				if r.Direction != "outbound" || m.ChangeFrom == nil || !strings.Contains(*m.ChangeFrom, "prvs=") || m.ChangeFromArgs != "RET=FULL" {
					t.Errorf("direction %s, modifications %+v", r.Direction, m)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.args[0]
			if !filepath.IsAbs(file) {
				file = filepath.Join(emlDir, file)
			}
			args := append([]string{file, "--offline"}, tc.args[1:]...)
			code, r, stderr := runTestCmd(t, args...)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.exit, stderr)
			}
			if r.Exit != code || r.Action != tc.action || r.AllRefused != tc.refused {
				t.Errorf("result exit %d action %q refused %v; want %d %q %v", r.Exit, r.Action, r.AllRefused, code, tc.action, tc.refused)
			}
			if tc.would != "" && (r.Verdict == nil || r.Verdict.Would != tc.would) {
				t.Errorf("verdict %+v, want would %q", r.Verdict, tc.would)
			}
			if got := evidenceNames(r.Verdict); !slices.Equal(got, tc.evidence) {
				t.Errorf("evidence %v, want %v", got, tc.evidence)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

// TestTestCommandWithDNS runs `test` with the configured resolver pointed
// at a DNS server on loopback: a DNSBL listing and SPF decide, and the NDR
// suppression rewrite appears among the modifications.
func TestTestCommandWithDNS(t *testing.T) {
	srv := dnstest.Start(t, `$ORIGIN .
$TTL 300
23.100.51.198.bl.test.     A   127.0.0.2
example.net.               TXT "v=spf1 ip4:198.51.100.40 -all"
victim.example.            TXT "v=spf1 -all"
`)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := "local_domains: [example.org]\nsent_log: { backend: memory }\nresolver: \"" + srv.Addr + "\"\n" +
		"dnsbl: { timeout: 2s, zones: [\"bl.test=127.0.0.2*6 senders=bounce\"] }\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}

	code, r, stderr := runTestCmd(t, filepath.Join(emlDir, "forged-bounce.eml"), "--config", cfg)
	if code != testExitReject || r.Verdict == nil || !slices.Equal(evidenceNames(r.Verdict), []string{"dnsbl:bl.test", "bounce:not-ours"}) {
		t.Fatalf("forged bounce from a listed host: exit %d, verdict %+v; stderr %s", code, r.Verdict, stderr)
	}
	if !strings.HasPrefix(r.Verdict.Reply, "550 5.7.1") || len(r.Modifications.AddHeaders) != 0 {
		t.Errorf("a reject carries a reply and no modifications: %+v %+v", r.Verdict, r.Modifications)
	}

	// SPF fails for a forged sender: every recipient gets NOTIFY=NEVER.
	code, r, stderr = runTestCmd(t, filepath.Join(emlDir, "ordinary.eml"), "--config", cfg,
		"--mail-from", "someone@victim.example RET=FULL", "--rcpt", "alice@example.org NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.org")
	if code != testExitAccept || r.Verdict == nil || r.Verdict.NDR != "suppressed" || r.Verdict.Auth != "forged" {
		t.Fatalf("forged sender: exit %d verdict %+v; stderr %s", code, r.Verdict, stderr)
	}
	rw := r.Modifications.RcptRewrites
	if len(rw) != 1 || rw[0].NewArgs != "NOTIFY=NEVER ORCPT=rfc822;alice@example.org" {
		t.Errorf("recipient rewrite %+v", rw)
	}
	if r.Modifications.ChangeFrom == nil || r.Modifications.ChangeFromArgs != "RET=HDRS" {
		t.Errorf("RET=FULL must become RET=HDRS: %+v", r.Modifications)
	}

	// SPF passes: nothing is rewritten.
	code, r, _ = runTestCmd(t, filepath.Join(emlDir, "ordinary.eml"), "--config", cfg)
	if code != testExitAccept || r.Verdict.NDR != "" || len(r.Modifications.RcptRewrites) != 0 || r.Verdict.Auth != "authenticated" {
		t.Errorf("authenticated sender: exit %d verdict %+v mods %+v", code, r.Verdict, r.Modifications)
	}
}

func TestTestCommandTextOutput(t *testing.T) {
	var out, errb bytes.Buffer
	code := runTest([]string{filepath.Join(emlDir, "forged-bounce.eml"), "--offline", "--config", filepath.Join(emlDir, "config.yaml")}, &out, &errb)
	if code != testExitQuarantine {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"verdict (eom stage): QUARANTINE", "+6  bounce:not-ours", "quarantine: backscatter score 6",
		"add header: X-Backscatter: score=6 action=quarantine", "action: quarantine (exit 2)", "mail from:     <>"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestTestCommandUsageErrors(t *testing.T) {
	dir := t.TempDir()
	notMail := filepath.Join(dir, "not-mail.eml")
	os.WriteFile(notMail, []byte("this is not a message\n"), 0o644)
	noRcpt := filepath.Join(dir, "no-rcpt.eml")
	os.WriteFile(noRcpt, []byte("From: a@example.net\nSubject: x\n\nbody\n"), 0o644)
	plain := filepath.Join(emlDir, "config.yaml")
	msg := filepath.Join(emlDir, "ordinary.eml")
	for _, args := range [][]string{
		{},
		{msg, msg},
		{filepath.Join(dir, "missing.eml"), "--config", plain},
		{notMail, "--config", plain},
		{noRcpt, "--config", plain},
		{msg, "--config", plain, "--client-ip", "not-an-ip"},
		{msg, "--config", plain, "--no-such-flag"},
		{msg, "--config", filepath.Join(dir, "missing.yaml")},
		{msg, "--config", plain, "--sent-log", "--sent-id", "a@b"},
		{msg, "--config", plain, "--rcpt", " "},
	} {
		var out, errb bytes.Buffer
		if code := runTest(append(args, "--offline"), &out, &errb); code != testExitUsage {
			t.Errorf("test %q: exit %d, want %d", args, code, testExitUsage)
		} else if errb.Len() == 0 {
			t.Errorf("test %q: no message on stderr", args)
		}
	}
}

func TestReadMTAMessageAndReceived(t *testing.T) {
	m, err := readMTAMessage([]byte("From MAILER-DAEMON Tue Mar  3 11:02:11 2026\nReceived: from helo.example ([IPv6:2001:db8::1])\r\n\tby mx; date\r\nSubject: a\r\n b\r\n\r\nline1\nline2\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Values go to the milter as the MTA sends them: leading space and
	// folding kept.
	want := []mtaField{{"Received", " from helo.example ([IPv6:2001:db8::1])\n\tby mx; date"}, {"Subject", " a\n b"}}
	if !slices.Equal(m.fields, want) {
		t.Fatalf("headers %q", m.fields)
	}
	if string(m.body) != "line1\r\nline2\r\n" {
		t.Errorf("body %q", m.body)
	}
	rcvd, _ := m.first("Received")
	if h := bounce.ParseReceived(rcvd); h.From != "helo.example" || h.ClientIP.String() != "2001:db8::1" {
		t.Errorf("hop %+v", h)
	}
}

// foldedMessage is a forged bounce whose Subject is folded folds times, each
// continuation line carrying width bytes.
func foldedMessage(tb testing.TB, folds, width int) string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(emlDir, "forged-bounce.eml"))
	if err != nil {
		tb.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("X-Long: start")
	line := "\n\t" + strings.Repeat("x", width)
	for range folds {
		b.WriteString(line)
	}
	b.WriteString("\n")
	b.Write(data)
	p := filepath.Join(tb.TempDir(), "folded.eml")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestTestCommandHugeFoldedHeader: a field folded 100k times reaches a
// verdict like any other message (its speed is BenchmarkTestCommandFolded's).
func TestTestCommandHugeFoldedHeader(t *testing.T) {
	code, r, stderr := runTestCmd(t, foldedMessage(t, 100_000, 16), "--offline", "--config", filepath.Join(emlDir, "config.yaml"))
	if code != testExitQuarantine || !slices.Equal(evidenceNames(r.Verdict), []string{"bounce:not-ours"}) {
		t.Fatalf("exit %d verdict %+v; stderr %s", code, r.Verdict, stderr)
	}
}

// BenchmarkTestCommandFolded runs `test` on a message with one header field
// folded 100k times, and on one with a 50 MB field folded into 1 MB lines:
// reading them is linear (it was quadratic: 25k folds took 20 s).
func BenchmarkTestCommandFolded(b *testing.B) {
	cfg := filepath.Join(emlDir, "config.yaml")
	for _, c := range []struct {
		name         string
		folds, width int
	}{{"100k-folds", 100_000, 16}, {"50MB-field", 50, 1 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			msg := foldedMessage(b, c.folds, c.width)
			for b.Loop() {
				var out, errb bytes.Buffer
				if code := runTest([]string{msg, "--offline", "--config", cfg}, &out, &errb); code != testExitQuarantine {
					b.Fatalf("exit %d: %s", code, errb.String())
				}
			}
		})
	}
}
