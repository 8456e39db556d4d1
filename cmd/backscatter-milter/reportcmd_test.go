package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
)

const sampleLog = `{"level":"info","ts":"2026-03-03T10:00:00Z","msg":"started","version":"dev"}
{"level":"info","ts":"2026-03-03T10:00:01Z","msg":"verdict","session":"a1","queue_id":"","stage":"rcpt","action":"reject","would":"reject","mode":"enforce","score":10,"evidence":[{"name":"batv:missing","weight":10}],"direction":"inbound","client_ip":"198.51.100.23","client_name":"","helo":"x","sender":"<>","rcpts":["alice@example.org"],"duration_ms":0.4}
{"level":"info","ts":"2026-03-04T11:00:00Z","msg":"verdict","session":"a2","queue_id":"Q1","stage":"eom","action":"accept","would":"accept","mode":"enforce","score":-10,"evidence":[{"name":"bounce:ours","weight":-10}],"direction":"inbound","client_ip":"198.51.100.7","client_name":"","helo":"y","sender":"<>","rcpts":["bob@example.org"],"duration_ms":2.1}
{"level":"info","ts":"2026-03-05T12:00:00Z","msg":"verdict","session":"a3","queue_id":"Q2","stage":"eom","action":"quarantine","would":"quarantine","mode":"enforce","score":6,"evidence":[{"name":"bounce:not-ours","weight":6}],"direction":"inbound","client_ip":"203.0.113.9","client_name":"","helo":"z","sender":"<>","rcpts":["carol@example.org"],"ndr":"","duration_ms":2.1}
{"level":"info","ts":"2026-03-05T12:00:01Z","msg":"verdict","session":"a4","stage":"eom","act
`

func runReportCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	now := time.Date(2026, 3, 6, 0, 0, 0, 0, time.UTC)
	code := runReportAt(append(args, "--utc"), strings.NewReader(stdin), &out, &errb, now)
	return code, out.String(), errb.String()
}

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "milter.log")
	os.WriteFile(plain, []byte(sampleLog), 0o644)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(sampleLog))
	zw.Close()
	os.WriteFile(filepath.Join(dir, "milter.log.1.gz"), gz.Bytes(), 0o644)

	code, out, errs := runReportCmd(t, "", "--format", "json", filepath.Join(dir, "milter.log*"))
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Input.Files != 2 || r.Input.Lines != 10 || r.Input.Malformed != 2 || r.Input.Verdicts != 6 ||
		r.Backscatter.RefusedRecipients != 2 || r.Backscatter.BlockedMessages != 2 || r.Backscatter.RealBouncesDelivered != 2 {
		t.Errorf("two copies of the sample: %+v %+v", r.Input, r.Backscatter)
	}
	if r.Schema != report.Schema || r.Generated.At.IsZero() || r.Generated.Host == "" || r.Period.TZ != "UTC" {
		t.Errorf("schema %d, generated %+v, tz %q", r.Schema, r.Generated, r.Period.TZ)
	}

	// stdin, a window, text.
	code, out, errs = runReportCmd(t, sampleLog, "--since", "2026-03-04", "--until", "2026-03-05 06:00", "-")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"real bounces delivered", "2 outside --since/--until", "1 verdicts"} {
		if !strings.Contains(normalizeSpace(out), want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	// An age relative to now (2026-03-06 00:00 UTC): the last 36 hours.
	_, out, _ = runReportCmd(t, sampleLog, "--since", "36h", "--format", "json", "-")
	json.Unmarshal([]byte(out), &r)
	if r.Input.Verdicts != 1 || r.Messages.ByAction["quarantine"] != 1 {
		t.Errorf("--since 36h: %+v", r.Input)
	}

	code, out, _ = runReportCmd(t, sampleLog, "--format", "html", "--top", "3", "-")
	if code != exitOK || !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, "<svg") {
		t.Errorf("html: exit %d, %.80q", code, out)
	}
}

// TestReportConfiguredLog: with no FILE, report reads the configuration's
// log.file and its rotated siblings, oldest first, and names the
// configuration, its mode, the host and the time in the report.
func TestReportConfiguredLog(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "milter.log")
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte("mode: observe\nlog: { file: "+logFile+" }\n"), 0o600)
	lines := strings.SplitAfter(sampleLog, "\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(lines[0] + lines[1])) // the oldest: started, RCPT reject
	zw.Close()
	os.WriteFile(logFile+".2.gz", gz.Bytes(), 0o640)
	os.WriteFile(logFile+".1", []byte(lines[2]), 0o640)
	os.WriteFile(logFile, []byte(lines[3]+`{"level":"info","ts":"2026-03-05T13:00:00Z","msg":"quarantine","event":"released","queue_id":"Q2","operator":"alice","mta":"postfix"}`+"\n"), 0o640)

	code, out, errs := runReportCmd(t, "must not be read", "--config", cfgFile, "--format", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	want := []string{logFile + ".2.gz", logFile + ".1", logFile}
	if strings.Join(r.Input.FileNames, " ") != strings.Join(want, " ") || r.Input.Verdicts != 3 || r.Input.Events != 1 {
		t.Errorf("read %v (%d verdicts, %d events), want %v, 3 and 1", r.Input.FileNames, r.Input.Verdicts, r.Input.Events, want)
	}
	if r.Generated.Config != cfgFile || r.Generated.Mode != "observe" || !r.Generated.At.Equal(time.Date(2026, 3, 6, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("generated %+v", r.Generated)
	}
	// Q2 was quarantined, then released: a false positive, not backscatter blocked.
	if r.Quarantine.Held != 1 || r.Quarantine.Released != 1 || r.Backscatter.BlockedMessages != 0 || len(r.TopSources) != 1 {
		t.Errorf("release not applied: quarantine %+v, blocked %d, sources %v", r.Quarantine, r.Backscatter.BlockedMessages, r.TopSources)
	}
	// JSON times are RFC 3339 with a zone, buckets included.
	var raw struct {
		Hourly []struct{ Start string } `json:"hourly"`
	}
	json.Unmarshal([]byte(out), &raw)
	if len(raw.Hourly) == 0 || raw.Hourly[0].Start != "2026-03-03T10:00:00Z" {
		t.Errorf("hourly starts %+v, want RFC 3339", raw.Hourly)
	}

	// A configuration without log.file: a clear refusal, not a wait on stdin.
	noLog := filepath.Join(dir, "nolog.yaml")
	os.WriteFile(noLog, []byte("mode: enforce\n"), 0o600)
	code, _, errs = runReportCmd(t, sampleLog, "--config", noLog)
	if code != exitUsage || !strings.Contains(errs, "log.file") || !strings.Contains(errs, "report -") {
		t.Errorf("no log.file: exit %d, %q", code, errs)
	}
}

func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestReportCommandBadArgs(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--format", "pdf"},
		{"--top", "0"},
		{"--since", "yesterday"},
		{"--until", "soon"},
		{"--since", "2026-03-05", "--until", "2026-03-04"},
		{filepath.Join(dir, "missing.log")},
		{filepath.Join(dir, "*.log")},
		{"--bogus"},
	} {
		code, _, errs := runReportCmd(t, "", args...)
		if code != exitUsage || errs == "" {
			t.Errorf("report %q: exit %d, stderr %q; want %d and a message", args, code, errs, exitUsage)
		}
	}
}
