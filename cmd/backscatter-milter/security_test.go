package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	goruntime "runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/spf13/pflag"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// The tests in this file are the evidence for docs/security.md: each one
// attacks one thing an outsider or a local user controls.

// TestSecurityBATVKeyReadableRefused: a BATV key file that group or others
// can read is refused when the configuration loads, the error names the
// key, and serve exits non-zero without printing the secret.
func TestSecurityBATVKeyReadableRefused(t *testing.T) {
	secret := "refused-secret-" + randomHex(t, 12)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			dir := t.TempDir()
			key := filepath.Join(dir, "batv.key")
			if err := os.WriteFile(key, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(key, mode); err != nil { // past the umask
				t.Fatal(err)
			}
			cfgPath := writeConfig(t, "listen: unix:"+filepath.Join(dir, "m.sock")+"\nmetrics: { listen: '' }\nsent_log: { backend: memory }\n"+
				"local_domains: [example.org]\nbatv: { enabled: true, keys: [{ id: 0, file: "+key+" }] }\n")
			_, err := config.Load(cfgPath, nil)
			if err == nil || !strings.Contains(err.Error(), "batv.keys[0].file") {
				t.Fatalf("config.Load: %v, want an error naming batv.keys[0].file", err)
			}
			code, out, errOut := runCLI("serve", "--config", cfgPath)
			if code == exitOK {
				t.Fatalf("serve with a %04o key file exited 0", mode)
			}
			if !strings.Contains(errOut, "batv.keys[0].file") {
				t.Errorf("serve's error does not name batv.keys[0].file: %q", errOut)
			}
			if strings.Contains(out+errOut, secret) {
				t.Errorf("serve printed the key: %q", out+errOut)
			}
			if _, err := os.Stat(filepath.Join(dir, "m.sock")); err == nil {
				t.Errorf("serve refused the key but left a socket listening")
			}
		})
	}
}

// TestSecurityNoSecretsInLogs runs real traffic through Postfix with a BATV
// key and a password-protected Redis sent log, a reload (good and bad) and
// a Redis with the wrong password, then searches everything the daemon
// logged for the key, the passwords and a marker written in every body.
func TestSecurityNoSecretsInLogs(t *testing.T) {
	mtatest.RequirePostfix(t)
	mtatest.Require(t, "redis-server")
	dnsSrv := startDNS(t, dnsZone)
	secret := "batv-key-" + randomHex(t, 16)
	keyFile := filepath.Join(t.TempDir(), "batv.key")
	if err := os.WriteFile(keyFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	signer := &batv.Signer{Keys: []batv.Key{{ID: 0, Secret: []byte(secret)}}}
	password := "redis-pass-" + randomHex(t, 12)
	wrongPassword := "wrong-pass-" + randomHex(t, 12)
	redisAddr := startRedisServer(t, "--requirepass", password)
	marker := "BODY-MARKER-" + randomHex(t, 10)

	cfg := func(pw string) string {
		return `
mode: enforce
local_domains: [example.org, other.example]
trusted_networks: [127.0.0.1/32]
resolver: ` + dnsSrv.Addr + `
dnsbl: { zones: [] }
batv: { enabled: true, keys: [{ id: 0, file: ` + keyFile + ` }], domains: [example.org] }
sent_log: { backend: redis, redis: { addr: "` + redisAddr + `", password: "` + pw + `" } }
`
	}
	m := startMilter(t, cfg(password))
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "other.example"},
		Main: map[string]string{"recipient_delimiter": "+"}})
	body := "Dear friend,\n" + marker + "\nthis line must never reach a log.\n"
	outside := func(msgs ...mtatest.SMTPMessage) mtatest.SessionResult {
		return pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: msgs})
	}
	// Outbound: signed with the key, its Message-ID stored in Redis.
	r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.1", Helo: "client.example.org", Messages: []mtatest.SMTPMessage{{
		From: "alice@example.org", To: []string{"friend@remote.test"},
		Data: plainMessage("alice@example.org", "friend@remote.test", "sec-out-1@example.org", "", body)}}})
	if !r.Messages[0].Accepted() {
		t.Fatalf("outbound: %s", r.Messages[0])
	}
	msgs := pf.Sink.WaitMessages(t, 1, 30*time.Second)
	signed := msgs[len(msgs)-1].Sender()
	if !strings.Contains(signed, "prvs=") {
		t.Fatalf("outbound sender not signed: %q", signed)
	}
	tagged, _ := signer.Sign("bob@example.org")
	dsnWithMarker := func(to, id string) []byte {
		return bytes.Replace(dsnFor(to, id, "mx.remote.test", "198.51.100.9"), []byte("Your message could not be delivered."),
			[]byte("Your message could not be delivered.\n"+marker), 1)
	}
	outside(
		// Ordinary inbound mail.
		mtatest.SMTPMessage{From: "carol@pass.test", To: []string{"bob@example.org"},
			Data: plainMessage("carol@pass.test", "bob@example.org", "sec-in-1@pass.test", "", body)},
		// Real bounce of the outbound message (parsed: body read).
		mtatest.SMTPMessage{From: "<>", To: []string{signed}, Data: dsnWithMarker(signed, "sec-out-1@example.org")},
		// Forged bounces: one rejected at RCPT (BATV), one quarantined.
		mtatest.SMTPMessage{From: "<>", To: []string{"bob@example.org", tagged}, Data: dsnWithMarker("bob@example.org", "sec-x-1@example.org")},
		mtatest.SMTPMessage{From: "<>", To: []string{"carol@other.example"}, Data: dsnWithMarker("carol@other.example", "sec-x-2@other.example")},
		// An auto-reply (parsed too).
		mtatest.SMTPMessage{From: "dave@remote.test", To: []string{"alice@example.org"},
			Data: plainMessage("dave@remote.test", "alice@example.org", "sec-ar-1@remote.test",
				"Auto-Submitted: auto-replied\nIn-Reply-To: <sec-out-1@example.org>\n", body)},
	)
	// A BATV verification failure names the tag, never the key.
	outside(mtatest.SMTPMessage{From: "<>", To: []string{"bob+prvs=0999ffffff@example.org"}, Data: dsnWithMarker("bob@example.org", "sec-x-3@example.org")})
	real := m.waitVerdict(t, "real bounce", func(v verdict) bool { return v.Stage == "eom" && v.has("bounce:ours") })
	if real.Action != "accept" {
		t.Errorf("the real bounce was not recognised through Redis: %s", real)
	}
	m.waitVerdict(t, "quarantine", func(v verdict) bool { return v.Action == "quarantine" })
	m.waitVerdict(t, "auto-reply", func(v verdict) bool { return v.has("autoreply:ours") })

	// Reloads: a good one, and one refused because the key file opened up.
	cfgPath := filepath.Join(m.Dir, "config.yaml")
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.Flags(fs)
	fs.Set("config", cfgPath)
	m.d.reload(fs)
	os.Chmod(keyFile, 0o644)
	m.d.reload(fs)
	os.Chmod(keyFile, 0o600)

	// The same daemon configuration with the wrong Redis password: every
	// sent-log access fails and is logged.
	m2 := startMilter(t, cfg(wrongPassword))
	sendThroughClient(t, m2.Spec, "192.0.2.7", "<>", []string{"carol@other.example"},
		dsnWithMarker("carol@other.example", "sec-wrong-1@example.org"))
	bad := m2.waitVerdict(t, "verdict with a failing sent log", func(v verdict) bool { return v.Stage == "eom" })
	if !strings.Contains(strings.Join(bad.Notes, " "), "sent log") {
		t.Logf("note: the sent-log failure is not in the verdict notes: %s", bad)
	}
	m2.stop()
	m.stop()

	logs := map[string][]byte{}
	for name, path := range map[string]string{"milter log": m.LogFile, "milter log (wrong password)": m2.LogFile} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		logs[name] = b
	}
	all := string(logs["milter log"]) + string(logs["milter log (wrong password)"])
	for _, want := range []string{"configuration reloaded", "reload refused", `"msg":"verdict"`} {
		if !strings.Contains(all, want) {
			t.Errorf("the logs lack %q: the flow did not run as planned", want)
		}
	}
	for name, b := range logs {
		for what, s := range map[string]string{
			"BATV key": secret, "BATV key (base64)": base64.StdEncoding.EncodeToString([]byte(secret)),
			"BATV key (hex)": hex.EncodeToString([]byte(secret)), "Redis password": password,
			"wrong Redis password": wrongPassword, "body marker": marker,
		} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains the %s", name, what)
			}
		}
	}
	t.Logf("searched %d bytes of log (%d verdict lines)", len(all), strings.Count(all, `"msg":"verdict"`))
}

// TestSecuritySocketModeAndGroup: the daemon's unix socket gets the
// configured mode and group (a real group, mail, when the system has one).
func TestSecuritySocketModeAndGroup(t *testing.T) {
	g, err := user.LookupGroup("mail")
	if err != nil {
		t.Skipf("no group mail on this system (%v): milter/listen_test.go covers the group with the test's own gid", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	if os.Geteuid() != 0 && !inGroup(gid) {
		t.Skip("neither root nor a member of group mail: cannot give a socket to that group")
	}
	for _, c := range []struct {
		mode string
		want os.FileMode
	}{{"0660", 0o660}, {"0600", 0o600}} {
		t.Run(c.mode, func(t *testing.T) {
			dir := mtatest.ShortDir(t)
			sock := filepath.Join(dir, "m.sock")
			d := startPlainDaemon(t, "listen: unix:"+sock+"\nsocket: { mode: \""+c.mode+"\", group: mail }\n")
			defer d.shutdown()
			fi, err := os.Lstat(sock)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != c.want || int(st.Gid) != gid {
				t.Errorf("socket %v gid %d, want socket %v gid %d (mail)", fi.Mode(), st.Gid, c.want, gid)
			}
		})
	}
}

// TestSecurityLogInjection sends CR, LF, NUL-free control characters and
// JSON fragments in HELO, a quoted MAIL FROM local part and header values
// through a real Postfix, then reads the daemon's log line by line: every
// line must be one JSON object, and none may carry the injected key.
func TestSecurityLogInjection(t *testing.T) {
	mtatest.RequirePostfix(t)
	dnsSrv := startDNS(t, dnsZone)
	m := startMilter(t, `
mode: enforce
local_domains: [example.org, other.example]
trusted_networks: [127.0.0.1/32]
resolver: `+dnsSrv.Addr+`
dnsbl: { zones: [] }
`)
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "other.example"}})
	const inject = `"}{"level":"info","msg":"verdict","action":"accept","injected":"yes"}`
	ctl := "\x1b[2J\x07\x08\x7f\t"
	helos := []string{
		"evil.test" + ctl + inject,
		"evil.test\r" + inject,   // bare CR inside the command line
		"evil.test\n" + inject,   // bare LF: Postfix sees two commands
		"evil.test\r\n" + inject, // a real line break: two commands
	}
	sender := `<"evil` + ctl + "\r" + `\"}{\"injected\":\"yes\"}"@pass.test>`
	header := "Subject: hello" + ctl + "\r" + inject + "\n" +
		"X-Folded: a\n " + inject + "\n" +
		"Auto-Submitted: auto-replied" + ctl + "\n" +
		"In-Reply-To: <x" + ctl + `"}{"injected":"yes"}@example.org>` + "\n"
	dsn := strings.Replace(string(dsnFor("carol@other.example", "orig"+ctl+`"}{"injected":"yes"}@x`, "spam"+ctl+".test", "198.51.100.9")),
		"Reporting-MTA: dns; mx.remote.test", "Reporting-MTA: dns; mx"+ctl+`"}{"injected":"yes"}`, 1)
	var transcripts []string
	for i, helo := range helos {
		tr := rawSMTP(t, pf.SMTPAddr, "127.0.0.2", []string{
			"EHLO " + helo,
			"MAIL FROM:" + sender,
			"RCPT TO:<bob@example.org>",
			"DATA",
			"\x00data:" + header + "Message-ID: <inj-" + strconv.Itoa(i) + "@pass.test>\n\nbody\n",
			"MAIL FROM:<>",
			"RCPT TO:<carol@other.example>",
			"DATA",
			"\x00data:" + dsn,
			"QUIT",
		})
		transcripts = append(transcripts, tr)
	}
	// At least one of the hostile transactions must have reached the milter.
	m.waitVerdict(t, "a verdict for the hostile sessions", func(v verdict) bool { return v.Stage == "eom" && v.ClientIP == "127.0.0.2" })
	// The hostile sessions still open log their verdicts when they end.
	if !await.True(20*time.Second, m.idle) {
		t.Fatal("milter sessions still open after every SMTP session quit")
	}
	m.stop()

	raw, err := os.ReadFile(m.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	// No raw control character at all: CR, ESC, BEL... are escaped inside
	// the JSON strings, so a terminal or a line-based tool sees them inert.
	for i, c := range raw {
		if c < 0x20 && c != '\n' {
			t.Errorf("raw control byte %#x at offset %d of the log: %q", c, i, raw[max(0, i-40):min(len(raw), i+40)])
			break
		}
	}
	lines, verdicts, hostile := 0, 0, 0
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Errorf("log line %d is not one JSON object (%v): %q", lines, err, sc.Text())
			continue
		}
		if _, ok := obj["injected"]; ok {
			t.Errorf("log line %d carries a forged key: %q", lines, sc.Text())
		}
		if obj["msg"] == "verdict" {
			verdicts++
			if s, _ := obj["session"].(string); s == "" {
				t.Errorf("log line %d: a verdict without a session id: %q", lines, sc.Text())
			}
			if strings.Contains(fmt.Sprint(obj), "injected") {
				hostile++ // the attempt is inside a field value, escaped
			}
		}
	}
	if verdicts == 0 || hostile == 0 {
		t.Errorf("%d verdict lines, %d carrying the hostile text: the attack did not reach the log, so this test proves nothing\n%s",
			verdicts, hostile, strings.Join(transcripts, "\n----\n"))
	}
	t.Logf("%d log lines, all JSON; %d verdicts, %d of them carry the hostile input inside a value", lines, verdicts, hostile)
	if testing.Verbose() {
		t.Logf("log:\n%s", raw)
	}
}

// TestSecurityManyRecipients: 10,000 recipients in one transaction, from
// an unauthenticated sender so the NDR-suppression rewrite touches each.
func TestSecurityManyRecipients(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 milter round trips")
	}
	dnsSrv := startDNS(t, dnsZone)
	m := startMilter(t, `
local_domains: [example.org]
trusted_networks: [127.0.0.1/32]
resolver: `+dnsSrv.Addr+`
dnsbl: { zones: [] }
`)
	const n = 10000
	var rcpts []string
	for i := 0; i < n; i++ {
		rcpts = append(rcpts, fmt.Sprintf("user%d@example.org", i))
	}
	before := heapInUse()
	base := liveHeap()
	var held uint64
	mods, act := sendThroughClientAfterRcpts(t, m.Spec, "192.0.2.8", "<alice@remote.test>", rcpts,
		plainMessage("alice@remote.test", "list@example.org", "many-rcpts@remote.test", "", "hello\n"),
		func() { held = liveHeap() - min(base, liveHeap()) })
	after := heapInUse()
	// With every recipient accepted, the milter holds each once (address
	// and ESMTP arguments): measured 0.4 MiB live, about 40 bytes a
	// recipient. 4 MiB (400 bytes a recipient) leaves room for what the
	// runtime keeps; anything kept per recipient beyond its address (a
	// verdict, a copy of per-message state) would pass it.
	const maxHeld = 4 << 20
	if held > maxHeld {
		t.Errorf("the milter holds %.1f MiB live for 10,000 recipients, bound %.0f MiB", mib(held), mib(maxHeld))
	}
	if act.Type != gomilter.ActionAccept {
		t.Fatalf("end of message: %v", act)
	}
	if len(mods) != 2*n {
		t.Errorf("%d modifications, want %d (each recipient deleted and re-added with NOTIFY=NEVER)", len(mods), 2*n)
	}
	v := m.waitVerdict(t, "the verdict", func(v verdict) bool { return v.Stage == "eom" })
	// The line carries what fits milter.MaxLogRcptBytes and counts the rest.
	if len(v.Rcpts)+v.RcptsNotLogged != n || len(v.Rcpts) == 0 || v.RcptsNotLogged == 0 || v.NDR != "suppressed" {
		t.Errorf("verdict has %d recipients and %d not logged, ndr %q", len(v.Rcpts), v.RcptsNotLogged, v.NDR)
	}
	longest := 0
	if raw, err := os.ReadFile(m.LogFile); err == nil {
		for _, l := range bytes.Split(raw, []byte("\n")) {
			longest = max(longest, len(l))
		}
	}
	t.Logf("10,000 recipients: %d modifications; %.1f MiB live after RCPT; heap in use %.1f → %.1f MiB; longest log line %d bytes", len(mods), mib(held), mib(before), mib(after), longest)
}

// TestSecurityHugeBody sends a 64 MiB body of a null-sender message (the
// milter reads bounce bodies): once as Postfix and Sendmail negotiate it,
// with no reply to body chunks, where every chunk arrives; once from an MTA
// without body no-reply, where the milter asks it to skip the rest; and
// once from one with neither, where every chunk is answered. The milter
// keeps limits.body_bytes and its heap stays far below 64 MiB.
func TestSecurityHugeBody(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB through the milter")
	}
	dnsSrv := startDNS(t, dnsZone)
	m := startMilter(t, `
local_domains: [example.org]
trusted_networks: [127.0.0.1/32]
resolver: `+dnsSrv.Addr+`
dnsbl: { zones: [] }
limits: { body_bytes: 1048576 }
`)
	const size = 64 << 20
	for _, c := range []struct {
		name  string
		opts  []gomilter.Option
		skips bool
	}{
		{"body no-reply negotiated", nil, false},
		{"skip without body no-reply", []gomilter.Option{gomilter.WithoutProtocol(gomilter.OptNoBodyReply)}, true},
		{"neither", []gomilter.Option{gomilter.WithoutProtocol(gomilter.OptNoBodyReply | gomilter.OptSkip)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := clientSession(t, m.Spec, "192.0.2.9", c.opts...)
			defer s.Close()
			mustAct(t, "mail")(s.Mail("<>", ""))
			mustAct(t, "rcpt")(s.Rcpt("<carol@example.org>", ""))
			mustAct(t, "data")(s.DataStart())
			mustAct(t, "header")(s.HeaderField("From", "MAILER-DAEMON@remote.test", nil))
			mustAct(t, "header")(s.HeaderField("Subject", "Undelivered Mail Returned to Sender", nil))
			mustAct(t, "eoh")(s.HeaderEnd())
			goruntime.GC() // a measured base: the live heap is 0 until the first collection
			base := gcLiveHeap()
			var peak atomic.Int64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					maxInt(&peak, int64(gcLiveHeap()))
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond):
					}
				}
			}()
			chunk := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 1000)
			sent := 0
			for sent < size && !s.Skip() {
				if _, err := s.BodyChunk(chunk); err != nil {
					t.Fatalf("body chunk at %d bytes: %v", sent, err)
				}
				sent += len(chunk)
			}
			_, act, err := s.End()
			close(stop)
			<-done
			if err != nil || act.Type != gomilter.ActionAccept {
				t.Fatalf("end: %v %v", act, err)
			}
			if c.skips && sent >= size {
				t.Errorf("the milter never asked to skip the rest of a 64 MiB body")
			}
			if !c.skips && sent < size {
				t.Errorf("only %d bytes sent without skip", sent)
			}
			extra := float64(peak.Load()-int64(base)) / (1 << 20)
			// The live heap, not the heap in use: garbage of streamed chunks
			// the collector has not reclaimed yet is no retention (heap in
			// use swung past 24 MiB on a loaded machine from GC lag alone).
			if extra > 24 {
				t.Errorf("live heap grew by %.1f MiB while the body streamed in (body cap 1 MiB)", extra)
			}
			v := m.waitVerdict(t, "verdict", func(v verdict) bool {
				return v.Stage == "eom" && strings.Contains(strings.Join(v.Notes, " "), "body over 1048576 bytes")
			})
			t.Logf("%s: %d MiB sent, heap peak +%.1f MiB over %.1f MiB; notes %q", c.name, sent>>20, extra, mib(base), v.Notes)
			m.d.log.Sync()
			os.Truncate(m.LogFile, 0) // the next case must find its own verdict
		})
	}
}

// deepMIME builds a message nested depth multipart levels deep.
func deepMIME(depth int, from string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: carol@example.org\r\nSubject: deep\r\nMIME-Version: 1.0\r\nMessage-ID: <deep-%d@remote.test>\r\n", from, depth)
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ninnermost\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.Bytes()
}

// TestSecurityDeepMIME: 1,000 nested multiparts, parsed directly and
// through the milter as the body of a null-sender message.
func TestSecurityDeepMIME(t *testing.T) {
	raw := deepMIME(1000, "MAILER-DAEMON@remote.test")
	rep, err := bounce.Parse(raw, bounce.Limits{})
	if err != nil {
		t.Fatalf("bounce.Parse: %v", err)
	}
	if !rep.Truncated {
		t.Errorf("1,000-deep MIME parsed without hitting a limit: %+v", rep)
	}
	if testing.Short() {
		return
	}
	dnsSrv := startDNS(t, dnsZone)
	m := startMilter(t, `
local_domains: [example.org]
trusted_networks: [127.0.0.1/32]
resolver: `+dnsSrv.Addr+`
dnsbl: { zones: [] }
`)
	_, act := sendThroughClient(t, m.Spec, "192.0.2.10", "<>", []string{"carol@example.org"}, raw)
	if act.Type != gomilter.ActionAccept {
		t.Errorf("end: %v", act)
	}
	v := m.waitVerdict(t, "verdict", func(v verdict) bool { return v.Stage == "eom" })
	if !strings.Contains(strings.Join(v.Notes, " "), "hit a limit") {
		t.Errorf("verdict without the truncation note: %s", v)
	}
}

// --- helpers ---

// startDNS is dnstest.Start, retried: dnstest.New takes a free UDP port
// and fails when another process holds the same TCP port.
func startDNS(t *testing.T, zone string) *dnstest.Server {
	t.Helper()
	var err error
	for i := 0; i < 5; i++ {
		var s *dnstest.Server
		if s, err = dnstest.New(zone); err == nil {
			t.Cleanup(s.Close)
			return s
		}
	}
	t.Fatalf("dnstest: %v", err)
	return nil
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// gcLiveHeap is the live heap as the last collection measured it: cheap to
// sample (no stop-the-world) and blind to garbage not yet reclaimed.
func gcLiveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func heapInUse() uint64 {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// liveHeap is the heap still reachable: allocated bytes right after a
// collection, so garbage not yet reclaimed does not count.
func liveHeap() uint64 {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func inGroup(gid int) bool {
	gs, _ := os.Getgroups()
	for _, g := range gs {
		if g == gid {
			return true
		}
	}
	return os.Getegid() == gid
}

// startPlainDaemon starts the daemon from yaml without startMilter's
// chmod of the socket, so the configured mode and group can be checked.
func startPlainDaemon(t *testing.T, yaml string) *daemon {
	t.Helper()
	path := writeConfig(t, "metrics: { listen: '' }\nsent_log: { backend: memory }\ndnsbl: { zones: [] }\nresolver: 127.0.0.1:9\n"+
		"log: { format: json, level: info, file: "+filepath.Join(t.TempDir(), "milter.log")+" }\n"+yaml)
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	comp, _ := cfg.Compile()
	log, err := newLogger(cfg.Log)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDaemon(cfg, comp, log)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// clientSession opens a milter session as an MTA would, after connect and HELO.
func clientSession(t *testing.T, spec, ip string, opts ...gomilter.Option) *gomilter.ClientSession {
	t.Helper()
	opts = append([]gomilter.Option{gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithReadTimeout(60 * time.Second), gomilter.WithWriteTimeout(60 * time.Second)}, opts...)
	c := gomilter.NewClient("unix", strings.TrimPrefix(spec, "unix:"), opts...)
	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroQueueId, "SEC"+strconv.FormatInt(time.Now().UnixNano()%1e6, 10))
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	mustAct(t, "connect")(s.Conn("client.remote.test", gomilter.FamilyInet, 25, ip))
	mustAct(t, "helo")(s.Helo("client.remote.test"))
	return s
}

func mustAct(t *testing.T, what string) func(*gomilter.Action, error) {
	return func(_ *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// sendThroughClient runs one whole transaction through the milter with
// milter.Client (no MTA) and returns the modifications and the final action.
func sendThroughClient(t *testing.T, spec, ip, from string, rcpts []string, msg []byte) ([]gomilter.ModifyAction, *gomilter.Action) {
	t.Helper()
	return sendThroughClientAfterRcpts(t, spec, ip, from, rcpts, msg, nil)
}

// sendThroughClientAfterRcpts is sendThroughClient calling afterRcpts (when
// not nil) once the milter holds every recipient, before DATA.
func sendThroughClientAfterRcpts(t *testing.T, spec, ip, from string, rcpts []string, msg []byte, afterRcpts func()) ([]gomilter.ModifyAction, *gomilter.Action) {
	t.Helper()
	s := clientSession(t, spec, ip)
	defer s.Close()
	mustAct(t, "mail")(s.Mail(from, ""))
	for _, r := range rcpts {
		mustAct(t, "rcpt")(s.Rcpt("<"+r+">", ""))
	}
	if afterRcpts != nil {
		afterRcpts()
	}
	mustAct(t, "data")(s.DataStart())
	msg = bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	hdr, bodyPart, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	var name, value string
	flush := func() {
		if name != "" {
			mustAct(t, "header")(s.HeaderField(name, value, nil))
		}
	}
	for _, l := range strings.Split(string(hdr), "\r\n") {
		if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
			value += "\r\n" + l
			continue
		}
		flush()
		name, value, _ = strings.Cut(l, ":")
		value = strings.TrimPrefix(value, " ")
	}
	flush()
	mustAct(t, "eoh")(s.HeaderEnd())
	mods, act, err := s.BodyReadFrom(bytes.NewReader(bodyPart))
	if err != nil {
		t.Fatalf("body/end: %v", err)
	}
	return mods, act
}

// rawSMTP talks SMTP byte for byte, so commands can carry bare CR and
// control characters that a well-behaved client would refuse to send. A
// step starting with "\x00data:" is a message body sent after DATA; it is
// skipped when DATA was refused. It returns the transcript.
func rawSMTP(t *testing.T, addr, localIP string, steps []string) string {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	tp := textproto.NewReader(bufio.NewReader(c))
	var tr strings.Builder
	read := func() int {
		code, msg, err := tp.ReadResponse(0)
		if err != nil && code == 0 {
			// The server hung up (Postfix does on pipelining abuse).
			fmt.Fprintf(&tr, "S: (closed: %v)\n", err)
			return 421
		}
		fmt.Fprintf(&tr, "S: %d %s\n", code, msg)
		return code
	}
	if read() != 220 {
		t.Fatalf("SMTP greeting: %s", tr.String())
	}
	last := 0
	for _, st := range steps {
		if data, ok := strings.CutPrefix(st, "\x00data:"); ok {
			if last != 354 {
				continue
			}
			data = strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\n", "\r\n")
			fmt.Fprintf(&tr, "C: <%d bytes of message>\n", len(data))
			c.Write([]byte(data + "\r\n.\r\n"))
		} else {
			fmt.Fprintf(&tr, "C: %q\n", st)
			c.Write([]byte(st + "\r\n"))
			// A line break inside the step puts several commands on the
			// wire: one reply each; the first is the step's own.
			last = read()
			for i := strings.Count(st, "\n"); i > 0 && last != 421; i-- {
				if read() == 421 {
					last = 421
				}
			}
			if last == 421 {
				break
			}
			continue
		}
		last = read()
		if last == 421 {
			break
		}
	}
	return tr.String()
}

// startRedisServer runs a private redis-server on a loopback port with
// extra arguments (e.g. --requirepass) and returns host:port.
func startRedisServer(t *testing.T, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		port := mtatest.FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", t.TempDir()}, extra...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if await.True(5*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		}) {
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			return addr
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Fatal("redis-server did not start")
	return ""
}
