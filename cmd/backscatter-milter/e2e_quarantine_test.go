package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/quarantine"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// quarantineConfig writes the configuration the quarantine command reads:
// the milter's log and the MTA section; readable by any user, so the
// refusal test can run the command unprivileged.
func quarantineConfig(t *testing.T, m *testMilter, section string) string {
	t.Helper()
	path := filepath.Join(m.Dir, "quarantine.yaml")
	if err := os.WriteFile(path, []byte("log: { format: json, file: "+m.LogFile+" }\nquarantine: "+section+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runQ runs the quarantine command in-process.
func runQ(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"quarantine"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

type qList struct {
	Schema   int                  `json:"schema"`
	MTA      string               `json:"mta"`
	Messages []quarantine.Message `json:"messages"`
}

func listHeld(t *testing.T, cfg string) qList {
	t.Helper()
	code, out, errs := runQ(t, "list", "--json", "--config", cfg)
	if code != exitOK {
		t.Fatalf("quarantine list: exit %d: %s", code, errs)
	}
	var l qList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("quarantine list --json: %v\n%s", err, out)
	}
	return l
}

// eventLines returns the operator event lines of the milter's log.
func eventLines(t *testing.T, m *testMilter) []report.Line {
	t.Helper()
	raw, err := os.ReadFile(m.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []report.Line
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if pl, err := report.ParseLine(l); err == nil && pl.Event != "" {
			out = append(out, pl)
		}
	}
	return out
}

// checkHeld checks the listing against the queue IDs the MTA gave and the
// recipients sent to: every held message carries the verdict that held it.
func checkHeld(t *testing.T, l qList, want map[string]string) {
	t.Helper()
	if len(l.Messages) != len(want) {
		t.Fatalf("%d held messages listed, want %d: %+v", len(l.Messages), len(want), l.Messages)
	}
	for _, msg := range l.Messages {
		rcpt, ok := want[msg.QueueID]
		if !ok {
			t.Errorf("listed %s, not one of %v", msg.QueueID, want)
			continue
		}
		if msg.Sender != "" || len(msg.Recipients) != 1 || msg.Recipients[0] != rcpt || msg.Size < 200 ||
			time.Since(msg.Arrival) > 5*time.Minute || time.Since(msg.Arrival) < -time.Minute {
			t.Errorf("held message %+v, want <> to %s, a size and a recent arrival", msg, rcpt)
		}
		v := msg.Verdict
		if v == nil || v.Action != "quarantine" || v.Stage != "eom" || v.Score < 6 || !strings.Contains(v.EvidenceText(), "bounce:not-ours(+6)") || v.ClientIP != "127.0.0.2" {
			t.Errorf("%s: verdict %+v", msg.QueueID, v)
		}
	}
}

// TestQuarantinePostfix lists, shows, releases and deletes messages the
// milter put on a private Postfix's hold queue, and checks what the report
// makes of the operator's events.
func TestQuarantinePostfix(t *testing.T) {
	mtatest.RequirePostfix(t)
	batvLine, _ := batvPolicy(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t, "example.org", "other.example")+batvLine)
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "other.example"}})
	want := map[string]string{}
	var ids []string
	for i, rcpt := range []string{"carol@other.example", "dan@other.example"} {
		r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
			From: "<>", To: []string{rcpt}, Data: dsnFor(rcpt, "unknown-q"+string(rune('0'+i))+"@other.example", "spam.remote.test", "198.51.100.9")}}})
		if !r.Messages[0].Accepted() {
			t.Fatalf("%s", r.Messages[0])
		}
		id := r.Messages[0].QueueID()
		want[id], ids = rcpt, append(ids, id)
		m.waitVerdict(t, "quarantine of "+id, func(v verdict) bool { return v.QueueID == id && v.Action == "quarantine" })
	}
	pf.WaitQueue(t, 20*time.Second, "two messages on hold", func(q []mtatest.QueueEntry) bool {
		n := 0
		for _, e := range q {
			if e.QueueName == "hold" {
				n++
			}
		}
		return n == 2
	})
	cfg := quarantineConfig(t, m, "{ mta: postfix, postfix_config_dir: "+pf.ConfigDir+" }")

	l := listHeld(t, cfg)
	if l.MTA != "postfix" || l.Schema != 1 {
		t.Errorf("list header %+v", l)
	}
	checkHeld(t, l, want)
	code, out, errs := runQ(t, "list", "--config", cfg)
	if code != exitOK || !strings.Contains(out, ids[0]) || !strings.Contains(out, "bounce:not-ours(+6)") || !strings.Contains(out, "2 held message(s) (postfix)") {
		t.Errorf("text list: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := runQ(t, "list", "--json", "--since", "2h", "--config", cfg); code != exitOK || !strings.Contains(out, ids[1]) {
		t.Errorf("list --since 2h: exit %d %s", code, out)
	}

	code, out, errs = runQ(t, "show", ids[0], "--config", cfg)
	if code != exitOK || !strings.Contains(out, "verdict:    quarantine at eom") || !strings.Contains(out, "bounce:not-ours") ||
		!strings.Contains(out, "Content-Type: multipart/report") || strings.Contains(out, "*** ") {
		t.Errorf("show: exit %d\n%s%s", code, out, errs)
	}

	t.Setenv("SUDO_USER", "postmaster-ann")
	code, out, errs = runQ(t, "release", ids[0], "--config", cfg)
	if code != exitOK || strings.TrimSpace(out) != "released "+ids[0] {
		t.Fatalf("release: exit %d %q %s", code, out, errs)
	}
	lastTo(t, pf.Sink, want[ids[0]], 30*time.Second) // delivered to the next hop
	code, out, errs = runQ(t, "delete", ids[1], "--config", cfg)
	if code != exitOK || strings.TrimSpace(out) != "deleted "+ids[1] {
		t.Fatalf("delete: exit %d %q %s", code, out, errs)
	}
	pf.WaitQueueEmpty(t, 30*time.Second)
	if code, _, errs := runQ(t, "release", ids[1], "--config", cfg); code != exitFail || !strings.Contains(errs, "not on hold") {
		t.Errorf("releasing a deleted message: exit %d %q", code, errs)
	}
	if code, _, _ := runQ(t, "release", "../etc/passwd", "--config", cfg); code != exitUsage {
		t.Errorf("a path as queue ID: exit %d", code)
	}
	ev := eventLines(t, m)
	if len(ev) != 2 || ev[0].Event != report.EventReleased || ev[0].QueueID != ids[0] || ev[0].Operator != "postmaster-ann" ||
		ev[1].Event != report.EventDeleted || ev[1].QueueID != ids[1] || ev[1].Time.IsZero() {
		t.Errorf("event lines %+v", ev)
	}

	// The report: one false positive out of two held; the released one is
	// no longer blocked backscatter.
	var rb, re bytes.Buffer
	if code := runReportAt([]string{"--config", cfg, "--format", "json"}, nil, &rb, &re, time.Now()); code != exitOK {
		t.Fatalf("report: exit %d %s", code, re.String())
	}
	var r report.Report
	if err := json.Unmarshal(rb.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	q := r.Quarantine
	if q.Held != 2 || q.Released != 1 || q.Deleted != 1 || q.FalsePositiveRate != 0.5 || r.Backscatter.BlockedAtEOM["quarantine"] != 1 ||
		len(r.TopSources) != 1 || r.TopSources[0].Count != 1 || len(q.Messages) != 2 || q.Messages[0].Status == q.Messages[1].Status {
		t.Errorf("report quarantine %+v, blocked %v, sources %v", q, r.Backscatter.BlockedAtEOM, r.TopSources)
	}

	t.Run("refused without the rights", func(t *testing.T) {
		requireNobody(t)
		bin := buildBinary(t)
		os.Chmod(m.LogFile, 0o644)
		// nobody may list (postqueue) but not release (postsuper), and not write the log.
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"release", "ABCDEF123"}, "needs write access to log.file"},
			{[]string{"list"}, "needs root, or " + pf.ConfigDir + " listed in alternate_config_directories"},
		} {
			cmd := exec.Command("runuser", append([]string{"-u", "nobody", "--", bin, "quarantine"}, append(c.args, "--config", cfg)...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			ee, _ := err.(*exec.ExitError)
			if ee == nil || ee.ExitCode() != exitDenied || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("quarantine %v as nobody: %v, stderr %q; want exit %d naming the right", c.args, err, stderr.String(), exitDenied)
			}
		}
	})
}

// requireNobody skips (fails under BACKSCATTER_REQUIRE_INTEGRATION) unless
// the test runs as root with runuser and a nobody user.
func requireNobody(t *testing.T) {
	t.Helper()
	mtatest.Require(t, "runuser")
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a command as nobody")
	}
}

// buildBinary builds the command once per test binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	dir := mtatest.ShortDir(t)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "backscatter-milter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// sendmailWrapper writes a script that runs the instance's sendmail in its
// namespaces with any extra arguments: what quarantine.sendmail_command
// names on a real host is /usr/sbin/sendmail.
func sendmailWrapper(t *testing.T, sm *mtatest.Sendmail) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("#!/bin/sh\nexec")
	for _, a := range sm.CommandLine() {
		b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	b.WriteString(" \"$@\"\n")
	path := filepath.Join(sm.Dir, "sendmail-wrapper")
	if err := os.WriteFile(path, []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestQuarantineSendmail does the same against a private Sendmail's quarantine.
func TestQuarantineSendmail(t *testing.T) {
	mtatest.RequireSendmail(t)
	batvLine, _ := batvPolicy(t)
	m := startMilter(t, "mode: enforce\n"+testPolicy(t, "example.org", "other.example")+batvLine)
	sm := mtatest.StartSendmail(t, mtatest.SendmailOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "other.example"}})
	want := map[string]string{}
	var ids []string
	for i, rcpt := range []string{"carol@other.example", "dan@other.example"} {
		r := sm.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
			From: "<>", To: []string{rcpt}, Data: dsnFor(rcpt, "unknown-s"+string(rune('0'+i))+"@other.example", "spam.remote.test", "198.51.100.9")}}})
		if !r.Messages[0].Accepted() {
			t.Fatalf("%s", r.Messages[0])
		}
		id := r.Messages[0].QueueID()
		want[id], ids = rcpt, append(ids, id)
		m.waitVerdict(t, "quarantine of "+id, func(v verdict) bool { return v.QueueID == id && v.Action == "quarantine" })
	}
	cfg := quarantineConfig(t, m, "{ mta: sendmail, sendmail_command: ["+sendmailWrapper(t, sm)+"], sendmail_queue: "+sm.QueueDir()+" }")

	var l qList
	await.True(20*time.Second, func() bool { l = listHeld(t, cfg); return len(l.Messages) >= 2 })
	if l.MTA != "sendmail" {
		t.Errorf("list header %+v", l)
	}
	checkHeld(t, l, want)
	for _, msg := range l.Messages {
		if !strings.Contains(msg.Reason, "bounce:not-ours") {
			t.Errorf("%s: Sendmail's quarantine reason %q", msg.QueueID, msg.Reason)
		}
	}
	code, out, errs := runQ(t, "show", ids[0], "--config", cfg)
	if code != exitOK || !strings.Contains(out, "verdict:    quarantine at eom") || !strings.Contains(out, "Content-Type: multipart/report") ||
		!strings.Contains(out, "Message-ID: <dsn-unknown-s0@other.example>") {
		t.Errorf("show: exit %d\n%s%s", code, out, errs)
	}

	t.Setenv("SUDO_USER", "postmaster-ann")
	code, out, errs = runQ(t, "release", ids[0], "--config", cfg)
	if code != exitOK || strings.TrimSpace(out) != "released "+ids[0] {
		t.Fatalf("release: exit %d %q %s\n%s", code, out, errs, sm.Log())
	}
	lastTo(t, sm.Sink, want[ids[0]], 30*time.Second) // delivered to the next hop
	code, out, errs = runQ(t, "delete", ids[1], "--config", cfg)
	if code != exitOK || strings.TrimSpace(out) != "deleted "+ids[1] {
		t.Fatalf("delete: exit %d %q %s", code, out, errs)
	}
	if l := listHeld(t, cfg); len(l.Messages) != 0 {
		t.Errorf("still quarantined: %+v", l.Messages)
	}
	if q, err := sm.Queue(); err != nil || len(q) != 0 {
		t.Errorf("Sendmail's queue after release and delete: %+v %v", q, err)
	}
	if ents, _ := os.ReadDir(sm.QueueDir()); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files left in the queue directory: %v", names)
	}
	if code, _, errs := runQ(t, "delete", ids[1], "--config", cfg); code != exitFail || !strings.Contains(errs, "not on hold") {
		t.Errorf("deleting twice: exit %d %q", code, errs)
	}
	ev := eventLines(t, m)
	if len(ev) != 2 || ev[0].Event != report.EventReleased || ev[0].QueueID != ids[0] || ev[0].Operator != "postmaster-ann" ||
		ev[1].Event != report.EventDeleted || ev[1].QueueID != ids[1] {
		t.Errorf("event lines %+v", ev)
	}
}
