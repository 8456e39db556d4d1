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
		r.Backscatter.Blocked != 4 || r.Backscatter.RealBouncesDelivered != 2 {
		t.Errorf("two copies of the sample: %+v %+v", r.Input, r.Backscatter)
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
	_, out, _ = runReportCmd(t, sampleLog, "--since", "36h", "--format", "json")
	json.Unmarshal([]byte(out), &r)
	if r.Input.Verdicts != 1 || r.Messages.ByAction["quarantine"] != 1 {
		t.Errorf("--since 36h: %+v", r.Input)
	}

	code, out, _ = runReportCmd(t, sampleLog, "--format", "html", "--top", "3")
	if code != exitOK || !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.Contains(out, "<svg") {
		t.Errorf("html: exit %d, %.80q", code, out)
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
