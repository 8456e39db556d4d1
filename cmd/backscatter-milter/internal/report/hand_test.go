package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// handLog is a short log whose figures were counted by hand (see
// TestReportHandCounted): one transaction with a RCPT refusal and a
// quarantine, a released and a deleted message, a release of a message
// held before the log, observe mode at RCPT and end of message.
const handLog = `{"level":"info","ts":"2026-03-03T09:59:00Z","msg":"started","version":"dev"}
{"level":"info","ts":"2026-03-03T10:00:00Z","msg":"verdict","session":"s1","queue_id":"","stage":"rcpt","action":"reject","would":"reject","mode":"enforce","score":10,"evidence":[{"name":"batv:missing","weight":10}],"direction":"inbound","client_ip":"198.51.100.23","client_name":"","helo":"a","sender":"<>","rcpts":["alice@example.org"],"duration_ms":0.4}
{"level":"info","ts":"2026-03-03T10:00:01Z","msg":"verdict","session":"s1","queue_id":"Q1","stage":"eom","action":"quarantine","would":"quarantine","mode":"enforce","score":6,"evidence":[{"name":"bounce:not-ours","weight":6}],"direction":"inbound","client_ip":"198.51.100.23","client_name":"","helo":"a","sender":"<>","rcpts":["bob@example.org"],"rejected_rcpts":["alice@example.org"],"duration_ms":2}
{"level":"info","ts":"2026-03-03T10:05:00Z","msg":"verdict","session":"s2","queue_id":"Q2","stage":"eom","action":"quarantine","would":"quarantine","mode":"enforce","score":6,"evidence":[{"name":"bounce:not-ours","weight":6}],"direction":"inbound","client_ip":"203.0.113.9","client_name":"","helo":"b","sender":"<>","rcpts":["carol@example.org"],"duration_ms":2}
{"level":"info","ts":"2026-03-03T10:06:00Z","msg":"verdict","session":"s3","queue_id":"Q3","stage":"eom","action":"reject","would":"reject","mode":"enforce","score":12,"evidence":[{"name":"dnsbl:zen.example","weight":6},{"name":"bounce:not-ours","weight":6}],"direction":"inbound","client_ip":"203.0.113.9","client_name":"","helo":"b","sender":"<>","rcpts":["dave@example.org","erin@example.org"],"reply":"550 5.7.1 no","duration_ms":2}
{"level":"info","ts":"2026-03-03T10:07:00Z","msg":"verdict","session":"s4","queue_id":"Q4","stage":"eom","action":"accept","would":"accept","mode":"enforce","score":-10,"evidence":[{"name":"bounce:ours","weight":-10}],"direction":"inbound","client_ip":"198.51.100.7","client_name":"","helo":"c","sender":"<>","rcpts":["bob@example.org"],"duration_ms":2}
{"level":"info","ts":"2026-03-03T11:00:00Z","msg":"verdict","session":"s5","queue_id":"","stage":"rcpt","action":"accept","would":"reject","mode":"observe","score":10,"evidence":[{"name":"batv:missing","weight":10}],"direction":"inbound","client_ip":"192.0.2.44","client_name":"","helo":"d","sender":"<>","rcpts":["frank@example.org"],"duration_ms":0.3}
{"level":"info","ts":"2026-03-03T11:00:01Z","msg":"verdict","session":"s5","queue_id":"Q5","stage":"eom","action":"tag","would":"reject","mode":"observe","score":10,"evidence":[{"name":"batv:missing","weight":10}],"direction":"inbound","client_ip":"192.0.2.44","client_name":"","helo":"d","sender":"<>","rcpts":["frank@example.org"],"duration_ms":2}
{"level":"info","ts":"2026-03-03T11:10:00Z","msg":"verdict","session":"s6","queue_id":"Q6","stage":"eom","action":"accept","would":"accept","mode":"observe","score":0,"evidence":[],"direction":"inbound","client_ip":"192.0.2.50","client_name":"","helo":"e","sender":"<x@forged.example>","rcpts":["gina@example.org"],"auth":"unauthenticated","auth_detail":"spf=none","ndr":"would-be-suppressed","duration_ms":2}
{"level":"info","ts":"2026-03-03T12:00:00Z","msg":"quarantine","event":"released","queue_id":"Q2","operator":"alice","mta":"postfix"}
{"level":"info","ts":"2026-03-03T12:01:00Z","msg":"quarantine","event":"deleted","queue_id":"Q1","operator":"bob","mta":"postfix"}
{"level":"info","ts":"2026-03-03T12:02:00Z","msg":"quarantine","event":"released","queue_id":"QOLD","operator":"alice","mta":"postfix"}
`

var handGenerated = Generated{At: time.Date(2026, 3, 4, 8, 0, 0, 0, time.UTC), Host: "mx1.example.org", Mode: "enforce", Config: "/etc/backscatter-milter/config.yaml"}

func handReport(t *testing.T) *Report {
	t.Helper()
	a := New(Options{Location: time.UTC, Generated: handGenerated})
	if err := a.Read(strings.NewReader(handLog)); err != nil {
		t.Fatal(err)
	}
	return a.Report()
}

// TestReportHandCounted checks figures counted by hand from handLog.
func TestReportHandCounted(t *testing.T) {
	r := handReport(t)
	js, _ := json.Marshal(r)
	var doc map[string]any
	json.Unmarshal(js, &doc)
	get := func(path string) any {
		var v any = doc
		for _, k := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		return v
	}
	for path, want := range map[string]float64{
		"schema": 2, "input.lines": 12, "input.verdicts": 8, "input.events": 3, "input.other": 1,
		"messages.total": 6, "messages.by_action.quarantine": 2, "messages.by_action.reject": 1,
		"messages.by_action.accept": 2, "messages.by_action.tag": 1,
		"rcpt.rejected": 1, "rcpt.rejected_bounce_class": 1,
		// Q1 stays blocked (deleted), Q2 was released: one quarantined, one rejected.
		"backscatter.blocked_messages": 2, "backscatter.blocked_at_eom.quarantine": 1, "backscatter.blocked_at_eom.reject": 1,
		"backscatter.refused_recipients": 1, "backscatter.real_bounces_delivered": 1,
		"observe.verdicts": 3, "observe.would_messages.reject": 1, "observe.would_reject_rcpt": 1,
		"observe.would_block_messages": 1, "observe.would_refuse_recipients": 1, "observe.would_suppress_ndr": 1,
		"ndr.suppressed":  0,
		"quarantine.held": 2, "quarantine.released": 1, "quarantine.deleted": 1, "quarantine.unmatched_events": 1,
		"quarantine.false_positive_rate": 0.5,
	} {
		if got, ok := get(path).(float64); !ok || got != want {
			t.Errorf("%s = %v, want %v", path, get(path), want)
		}
	}
	for path, want := range map[string]string{
		"generated.at": "2026-03-04T08:00:00Z", "generated.host": "mx1.example.org", "generated.mode": "enforce",
		"generated.config": "/etc/backscatter-milter/config.yaml",
		"period.first":     "2026-03-03T10:00:00Z", "period.last": "2026-03-03T11:10:00Z", "period.tz": "UTC",
	} {
		if got := get(path); got != want {
			t.Errorf("%s = %v, want %q", path, got, want)
		}
	}
	same := func(name string, got any, want string) {
		t.Helper()
		b, _ := json.Marshal(got)
		if string(b) != want {
			t.Errorf("%s:\n got %s\nwant %s", name, b, want)
		}
	}
	// s1's RCPT and end-of-message lines are one transaction, and so are s5's.
	same("top_clients", r.TopClients, `[{"key":"203.0.113.9","count":2},{"key":"192.0.2.44","count":1},{"key":"198.51.100.23","count":1}]`)
	// Q2 (203.0.113.9) was released: only Q3 counts for that client.
	same("top_backscatter_sources", r.TopSources, `[{"key":"198.51.100.23","count":1},{"key":"203.0.113.9","count":1}]`)
	same("top_targets", r.TopTargets, `[{"key":"alice@example.org","count":1},{"key":"bob@example.org","count":1},{"key":"dave@example.org","count":1},{"key":"erin@example.org","count":1}]`)
	same("observe.top_sources", r.Observe.TopSources, `[{"key":"192.0.2.44","count":1}]`)
	same("evidence", r.Evidence, `[{"name":"batv:missing","fired":3,"decided":2},{"name":"bounce:not-ours","fired":3,"decided":2},{"name":"bounce:ours","fired":1,"decided":0},{"name":"dnsbl:zen.example","fired":1,"decided":1}]`)
	same("quarantine.by_evidence", r.Quarantine.ByEvidence, `[{"evidence":"bounce:not-ours","held":2,"released":1,"rate":0.5}]`)
	same("quarantine.messages", r.Quarantine.Messages, `[`+
		`{"queue_id":"Q2","time":"2026-03-03T10:05:00Z","stage":"eom","client_ip":"203.0.113.9","sender":"","rcpts":["carol@example.org"],"score":6,"deciding":"bounce:not-ours","status":"released","operator":"alice"},`+
		`{"queue_id":"Q1","time":"2026-03-03T10:00:01Z","stage":"eom","client_ip":"198.51.100.23","sender":"","rcpts":["bob@example.org"],"score":6,"deciding":"bounce:not-ours","status":"deleted","operator":"bob"}]`)
	same("hourly", r.Hourly, `[{"start":"2026-03-03T10:00:00Z","total":5,"by_action":{"accept":1,"discard":0,"quarantine":2,"reject":2,"tag":0,"tempfail":0}},`+
		`{"start":"2026-03-03T11:00:00Z","total":2,"by_action":{"accept":1,"discard":0,"quarantine":0,"reject":0,"tag":1,"tempfail":0}}]`)

	// Hours in a named zone: 10:00Z is 11:00 in Paris in March.
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	a := New(Options{Location: paris})
	a.Read(strings.NewReader(handLog))
	pr := a.Report()
	if pr.Period.TZ != "Europe/Paris" || len(pr.Hourly) == 0 || pr.Hourly[0].Start.Format(time.RFC3339) != "2026-03-03T11:00:00+01:00" {
		t.Errorf("Paris: tz %q, hourly %v", pr.Period.TZ, pr.Hourly)
	}
	var text bytes.Buffer
	pr.WriteText(&text)
	if !strings.Contains(text.String(), "(Europe/Paris)") || strings.Contains(text.String(), "Local") {
		t.Errorf("text does not name the zone:\n%s", text.String())
	}
}

func TestZoneNames(t *testing.T) {
	t.Setenv("TZ", "America/New_York")
	if loc := LocalZone(); loc.String() != "America/New_York" {
		t.Errorf("LocalZone with TZ=America/New_York: %q", loc)
	}
	t.Setenv("TZ", ":/usr/share/zoneinfo/Asia/Tokyo")
	if loc := LocalZone(); loc.String() != "Asia/Tokyo" {
		t.Errorf("LocalZone with a TZ path: %q", loc)
	}
	if n := ZoneName(time.FixedZone("", 5*3600+1800)); n != "UTC+05:30" {
		t.Errorf("a zone without a name is named %q", n)
	}
	if n := ZoneName(time.Local); n == "Local" || n == "" {
		t.Errorf("ZoneName(time.Local) = %q, want a name", n)
	}
}

func TestRotated(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "milter.log")
	for _, n := range []string{"milter.log", "milter.log.1", "milter.log.2.gz", "milter.log.10.gz", "milter.log.old", "milter.logger", "other.log.1"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	got, err := Rotated(base)
	want := []string{"milter.log.10.gz", "milter.log.2.gz", "milter.log.1", "milter.log"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("Rotated = %v, %v; want %v", got, err, want)
	}
	for i := range want {
		if got[i] != filepath.Join(dir, want[i]) {
			t.Errorf("Rotated[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	dated := t.TempDir()
	for _, n := range []string{"m.log-20260302.gz", "m.log-20260301.gz", "m.log-20260303"} {
		os.WriteFile(filepath.Join(dated, n), nil, 0o644)
	}
	got, err = Rotated(filepath.Join(dated, "m.log"))
	if err != nil || len(got) != 3 || filepath.Base(got[0]) != "m.log-20260301.gz" || filepath.Base(got[2]) != "m.log-20260303" {
		t.Errorf("dated: %v %v", got, err)
	}
	if _, err := Rotated(filepath.Join(dir, "none.log")); !os.IsNotExist(err) && !strings.Contains(err.Error(), "not exist") {
		t.Errorf("a log that does not exist: %v", err)
	}
}

// TestHTMLInChromium loads the page in headless Chromium and reads the
// figures from the DOM it built: what a postmaster's browser shows.
func TestHTMLInChromium(t *testing.T) {
	mtatest.Require(t, "chromium")
	r := handReport(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, _ := exec.LookPath("chromium")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--dump-dom", "file://"+page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || len(out) == 0 {
		t.Fatalf("chromium --dump-dom: %v\n%s", err, stderr.String())
	}
	doc, err := html.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	// text is the text of n as a reader sees it: cells and boxes apart.
	text := func(n *html.Node) string {
		var sb strings.Builder
		var walk func(*html.Node)
		walk = func(n *html.Node) {
			if n.Type == html.TextNode {
				sb.WriteString(n.Data)
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				walk(c)
			}
			if n.Type == html.ElementNode && (n.Data == "td" || n.Data == "th" || n.Data == "div") {
				sb.WriteString(" ")
			}
		}
		walk(n)
		return strings.Join(strings.Fields(sb.String()), " ")
	}
	byID := map[string]*html.Node{}
	var cards []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key == "id" {
					byID[a.Val] = n
				}
				if a.Key == "class" && a.Val == "card" {
					cards = append(cards, text(n))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	rows := func(id string) []string {
		var out []string
		n := byID[id]
		if n == nil {
			t.Errorf("no element #%s in the DOM", id)
			return nil
		}
		var find func(*html.Node)
		find = func(n *html.Node) {
			if n.Type == html.ElementNode && n.Data == "tr" {
				out = append(out, text(n))
				return
			}
			for c := n.FirstChild; c != nil; c = c.NextSibling {
				find(c)
			}
		}
		find(n)
		return out
	}
	wantCards := []string{
		"6 messages decided 6 inbound, 0 outbound",
		"2 backscatter messages blocked 1 rejected, 1 quarantined, 0 discarded at end of message",
		"1 backscatter recipients refused at RCPT",
		"1 real bounces delivered messages answering mail we sent",
		"1 held messages released false positives: 50.0% of 2 held",
		"1 observe: would block backscatter messages; 1 recipients at RCPT; 1 NDRs would be suppressed",
	}
	for _, w := range wantCards {
		found := false
		for _, c := range cards {
			found = found || c == w
		}
		if !found {
			t.Errorf("no card %q among %q", w, cards)
		}
	}
	if g := text(byID["generated"]); g != "generated: 2026-03-04 08:00:00 on mx1.example.org, mode enforce, config /etc/backscatter-milter/config.yaml" {
		t.Errorf("generated line %q", g)
	}
	if p := text(byID["period"]); !strings.HasPrefix(p, "2026-03-03 10:00:00 .. 2026-03-03 11:10:00 (UTC)") {
		t.Errorf("period line %q", p)
	}
	held := rows("held-table")
	wantHeld := []string{
		"queue ID time client sender score deciding evidence status",
		"Q2 2026-03-03 10:05:00 203.0.113.9 <> 6 bounce:not-ours released by alice",
		"Q1 2026-03-03 10:00:01 198.51.100.23 <> 6 bounce:not-ours deleted by bob",
	}
	if strings.Join(held, "\n") != strings.Join(wantHeld, "\n") {
		t.Errorf("held table:\n%s\nwant\n%s", strings.Join(held, "\n"), strings.Join(wantHeld, "\n"))
	}
	if fp := rows("fp-table"); len(fp) != 2 || fp[1] != "bounce:not-ours 2 1 50.0%" {
		t.Errorf("false positive table %q", fp)
	}
	if tc := rows("top-clients"); len(tc) != 4 || tc[1] != "203.0.113.9 2" || tc[2] != "192.0.2.44 1" || tc[3] != "198.51.100.23 1" {
		t.Errorf("top clients %q", tc)
	}
	if os := rows("observe-sources"); len(os) != 2 || os[1] != "192.0.2.44 1" {
		t.Errorf("observe sources %q", os)
	}
}

// TestHeldBound: held messages, events and open transactions stay within
// MaxKeys however many the log names, and a field longer than maxKeyLen is cut.
func TestHeldBound(t *testing.T) {
	a := New(Options{MaxKeys: 10, Location: time.UTC})
	long := strings.Repeat("x", 5000)
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("Q%04d", i)
		a.AddLine([]byte(fmt.Sprintf(`{"ts":"2026-03-03T10:%02d:%02dZ","msg":"verdict","session":"s%d%s","queue_id":"%s","stage":"eom","action":"quarantine","mode":"enforce","score":6,"evidence":[{"name":"bounce:not-ours","weight":6}],"direction":"inbound","client_ip":"192.0.2.1","sender":"<%s>","rcpts":["a@example.org"]}`,
			i/60, i%60, i, long, id, long)))
		a.AddLine([]byte(fmt.Sprintf(`{"ts":"2026-03-03T10:00:00Z","msg":"verdict","session":"r%d","stage":"rcpt","action":"reject","mode":"enforce","direction":"inbound","client_ip":"192.0.2.2","sender":"<>","rcpts":["b@example.org"]}`, i)))
		a.AddLine([]byte(fmt.Sprintf(`{"ts":"2026-03-03T12:00:00Z","msg":"quarantine","event":"deleted","queue_id":"E%04d","operator":"%s"}`, i, long)))
	}
	if len(a.held) > 10 || len(a.events) > 10 || len(a.open) > 10 {
		t.Errorf("kept %d held, %d events, %d open transactions; bound 10", len(a.held), len(a.events), len(a.open))
	}
	r := a.Report()
	if !r.Approximate || r.Quarantine.Held != 100 || len(r.Quarantine.Messages) == 0 || r.Quarantine.Messages[0].QueueID != "Q0099" {
		t.Errorf("approximate %v, held %d, newest %+v", r.Approximate, r.Quarantine.Held, r.Quarantine.Messages)
	}
	for _, m := range r.Quarantine.Messages {
		if len(m.Sender) > maxKeyLen {
			t.Errorf("sender of %d bytes kept", len(m.Sender))
		}
	}
}
