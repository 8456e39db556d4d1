package report

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

var genStart = time.Date(2026, 3, 1, 22, 30, 0, 0, time.FixedZone("CET", 3600))

const genEvents = 30000

func joinLines(lines []genLine) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l.text)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func aggregate(t testing.TB, data []byte, opt Options) *Report {
	t.Helper()
	opt.Location = time.UTC
	a := New(opt)
	if err := a.Read(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return a.Report()
}

// checkTop checks a "top" list against the expected counts by what a top
// list must be, without ranking the expected map the way the code does:
// every row carries its key's count, rows go down by count (up by key on a
// tie), no key left out beats the last row, and there are as many rows as
// the limit allows.
func checkTop(t *testing.T, name string, got []Count, want map[string]int, n int) {
	t.Helper()
	nonzero := 0
	for _, v := range want {
		if v > 0 {
			nonzero++
		}
	}
	if wantLen := min(nonzero, n); len(got) != wantLen {
		t.Errorf("%s: %d rows, want %d: %v", name, len(got), wantLen, got)
		return
	}
	in := map[string]bool{}
	for i, c := range got {
		in[c.Key] = true
		if want[c.Key] != c.Count {
			t.Errorf("%s: %s counted %d, want %d", name, c.Key, c.Count, want[c.Key])
		}
		if i > 0 && (got[i-1].Count < c.Count || got[i-1].Count == c.Count && got[i-1].Key >= c.Key) {
			t.Errorf("%s: row %d %v out of order after %v", name, i, c, got[i-1])
		}
	}
	if len(got) == 0 {
		return
	}
	last := got[len(got)-1]
	for k, v := range want {
		if !in[k] && v > 0 && (v > last.Count || v == last.Count && k < last.Key) {
			t.Errorf("%s: %s (%d) left out, but it beats the last row %v", name, k, v, last)
		}
	}
}

func withActions(m map[string]int, keys ...string) map[string]int {
	out := map[string]int{}
	for _, k := range keys {
		out[k] = 0
	}
	maps.Copy(out, m)
	return out
}

// checkBuckets compares hourly or daily buckets (cut in UTC by the tests)
// with the expected counts keyed by layout.
func checkBuckets(t *testing.T, name string, got []Bucket, want map[string]map[string]int, layout string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d buckets, want %d", name, len(got), len(want))
	}
	for i, b := range got {
		k := b.Start.UTC().Format(layout)
		acts, ok := want[k]
		if !ok {
			t.Errorf("%s: unexpected bucket %s", name, k)
			continue
		}
		total := 0
		for _, n := range acts {
			total += n
		}
		if b.Total != total || !maps.Equal(b.ByAction, withActions(acts, Actions...)) {
			t.Errorf("%s %s: total %d %v, want %d %v", name, k, b.Total, b.ByAction, total, acts)
		}
		if i > 0 && !got[i-1].Start.Before(b.Start) {
			t.Errorf("%s: bucket %s not after %s", name, k, got[i-1].Start)
		}
	}
}

// checkReport compares every figure of r with w.
func checkReport(t *testing.T, r *Report, w *want, top int) {
	t.Helper()
	eq := func(name string, got, want any) {
		t.Helper()
		g, _ := json.Marshal(got)
		x, _ := json.Marshal(want)
		if !bytes.Equal(g, x) {
			t.Errorf("%s:\n got %s\nwant %s", name, g, x)
		}
	}
	eq("schema", r.Schema, 2)
	eq("input.lines", r.Input.Lines, w.lines)
	eq("input.verdicts", r.Input.Verdicts, w.verdicts)
	eq("input.events", r.Input.Events, w.events)
	eq("input.other", r.Input.Other, w.other)
	eq("input.malformed", r.Input.Malformed, w.malformed)
	eq("input.outside_range", r.Input.OutsideRange, w.outside)
	eq("messages.total", r.Messages.Total, w.msgTotal)
	eq("messages.by_action", r.Messages.ByAction, withActions(w.byAction, Actions...))
	eq("messages.by_direction", r.Messages.ByDirection, withActions(w.byDir, "inbound", "outbound"))
	for _, d := range []string{"inbound", "outbound"} {
		eq("messages.by_direction_action."+d, r.Messages.ByDirectionAction[d], withActions(w.byDirAction[d], Actions...))
	}
	eq("rcpt.rejected", r.Rcpt.Rejected, w.rcptRejected)
	eq("rcpt.rejected_bounce_class", r.Rcpt.RejectedBounceClass, w.rcptRejectedBounce)
	eq("callouts", r.Callouts, w.callouts)
	eq("backscatter.blocked_messages", r.Backscatter.BlockedMessages, w.blockedEOM["reject"]+w.blockedEOM["quarantine"]+w.blockedEOM["discard"])
	eq("backscatter.refused_recipients", r.Backscatter.RefusedRecipients, w.refusedRcpt)
	eq("backscatter.blocked_at_eom", r.Backscatter.BlockedAtEOM, withActions(w.blockedEOM, "reject", "quarantine", "discard"))
	eq("backscatter.real_bounces_delivered", r.Backscatter.RealBouncesDelivered, w.real)
	eq("backscatter.real_bounces_by", r.Backscatter.RealBouncesBy, w.realBy)
	eq("backscatter.own_ndrs_stopped", r.Backscatter.OwnNDRsStopped, withActions(w.ownNDR, "quarantine", "discard"))
	eq("ndr.suppressed", r.NDR.Suppressed, w.ndrSuppressed)
	eq("ndr.success_dsn_stripped", r.NDR.SuccessDSNStripped, w.ndrStripped)
	eq("observe.verdicts", r.Observe.Verdicts, w.observe)
	eq("observe.would_messages", r.Observe.WouldMessages, withActions(w.wouldMsg, Actions...))
	eq("observe.would_reject_rcpt", r.Observe.WouldRejectRcpt, w.wouldRcpt)
	eq("observe.would_block_messages", r.Observe.WouldBlockMessages, w.wouldBlock)
	eq("observe.would_refuse_recipients", r.Observe.WouldRefuseRecipients, w.wouldRefuse)
	eq("observe.would_suppress_ndr", r.Observe.WouldSuppressNDR, w.wouldSuppress)
	eq("observe.would_strip_success_dsn", r.Observe.WouldStripSuccessDSN, w.wouldStrip)
	checkTop(t, "observe.top_sources", r.Observe.TopSources, w.observeSources, top)

	q := r.Quarantine
	eq("quarantine.held", q.Held, w.held)
	eq("quarantine.released", q.Released, w.released)
	eq("quarantine.deleted", q.Deleted, w.deleted)
	eq("quarantine.unmatched_events", q.UnmatchedEvents, w.unmatched)
	if w.held > 0 && math.Abs(q.FalsePositiveRate-float64(w.released)/float64(w.held)) > 1e-9 {
		t.Errorf("false positive rate %v, want %d/%d", q.FalsePositiveRate, w.released, w.held)
	}
	byEv := map[string]FalsePositives{}
	for _, f := range q.ByEvidence {
		byEv[f.Evidence] = f
	}
	if len(byEv) != len(w.heldBy) {
		t.Errorf("false positives by evidence: %v, want held %v", q.ByEvidence, w.heldBy)
	}
	for ev, n := range w.heldBy {
		f := byEv[ev]
		if f.Held != n || f.Released != w.releasedBy[ev] || math.Abs(f.Rate*float64(n)-float64(w.releasedBy[ev])) > 1e-9 {
			t.Errorf("false positives of %s: %+v, want held %d released %d", ev, f, n, w.releasedBy[ev])
		}
	}
	// Times grow through the generated log: newest first is log order reversed.
	var wantHeld []HeldMessage
	for i := len(w.heldList) - 1; i >= 0 && len(wantHeld) < 100; i-- {
		wantHeld = append(wantHeld, w.heldList[i])
	}
	eq("quarantine.messages", q.Messages, wantHeld)

	fired := 0
	for _, n := range w.fired {
		if n > 0 {
			fired++
		}
	}
	if len(r.Evidence) != fired {
		t.Errorf("evidence: %d rows, want %d", len(r.Evidence), fired)
	}
	for i, e := range r.Evidence {
		if e.Fired != w.fired[e.Name] || e.Decided != w.decided[e.Name] {
			t.Errorf("evidence %s: fired %d decided %d, want %d %d", e.Name, e.Fired, e.Decided, w.fired[e.Name], w.decided[e.Name])
		}
		if i > 0 && (r.Evidence[i-1].Fired < e.Fired || r.Evidence[i-1].Fired == e.Fired && r.Evidence[i-1].Name >= e.Name) {
			t.Errorf("evidence row %d (%s) out of order", i, e.Name)
		}
	}
	checkTop(t, "top_clients", r.TopClients, w.clients, top)
	checkTop(t, "top_backscatter_sources", r.TopSources, w.sources, top)
	checkTop(t, "top_dnsbl_zones", r.TopZones, w.zones, top)
	checkTop(t, "top_targets", r.TopTargets, w.targets, top)
	checkBuckets(t, "hourly", r.Hourly, w.hours, "2006-01-02T15")
	checkBuckets(t, "daily", r.Daily, w.days, "2006-01-02")
	if r.Approximate {
		t.Error("report says approximate on a small log")
	}
}

func TestReportGeneratedLog(t *testing.T) {
	lines := generate(1, genEvents, genStart)
	data := joinLines(lines)
	if len(lines) < 30000 {
		t.Fatalf("generator wrote only %d lines", len(lines))
	}
	w := expect(lines, time.Time{}, time.Time{})
	if w.malformed < 100 || w.other < 300 || w.callouts == 0 || w.ndrStripped == 0 || w.ownNDR["discard"] == 0 || len(w.days) < 3 ||
		w.released < 100 || w.deleted < 100 || w.unmatched == 0 || w.wouldSuppress == 0 || w.wouldBlock == 0 {
		t.Fatalf("generator does not cover the cases: %+v", w)
	}
	r := aggregate(t, data, Options{Top: 5})
	checkReport(t, r, w, 5)

	// The JSON output carries the same figures.
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON output does not parse: %v", err)
	}
	checkReport(t, &back, w, 5)
	if back.Period.First == nil || !back.Period.First.Equal(lines[0].at) {
		t.Errorf("period.first %v, want %v", back.Period.First, lines[0].at)
	}

	checkText(t, r, w)
	checkHTML(t, r)
}

func TestReportSinceUntil(t *testing.T) {
	lines := generate(2, 5000, genStart)
	since := genStart.Add(3 * time.Hour)
	until := genStart.Add(9*time.Hour + 17*time.Minute)
	w := expect(lines, since, until)
	if w.outside == 0 || w.verdicts == 0 {
		t.Fatalf("window misses the data: %d in, %d out", w.verdicts, w.outside)
	}
	r := aggregate(t, joinLines(lines), Options{Since: since, Until: until, Top: 3})
	checkReport(t, r, w, 3)
	if r.Period.Since == nil || !r.Period.Since.Equal(since) || r.Period.Last.After(until) {
		t.Errorf("period %+v", r.Period)
	}
}

// normalize joins each line's words with one space, so tests need not
// know the column widths.
func normalize(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(out, "\n")
}

func checkText(t *testing.T, r *Report, w *want) {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := normalize(b.String())
	has := func(format string, a ...any) {
		t.Helper()
		line := fmt.Sprintf(format, a...)
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(text) {
			t.Errorf("text output lacks the line %q", line)
		}
	}
	has("input: %d files, %d lines, %d verdicts, %d events, %d other lines, %d malformed (skipped), 0 outside --since/--until, 0 without time", r.Input.Files,
		w.lines, w.verdicts, w.events, w.other, w.malformed)
	for _, a := range Actions {
		has("%s %d %d %d", a, w.byAction[a], w.byDirAction["inbound"][a], w.byDirAction["outbound"][a])
	}
	has("total %d %d %d", w.msgTotal, w.byDir["inbound"], w.byDir["outbound"])
	has("RECIPIENTS REJECTED AT RCPT (recipients) %d", w.rcptRejected)
	has("of bounce-class senders %d", w.rcptRejectedBounce)
	has("CALLOUTS (null-sender probes, no DATA) %d", w.callouts)
	has("blocked messages (end of message) %d", w.blockedEOM["reject"]+w.blockedEOM["quarantine"]+w.blockedEOM["discard"])
	has("refused recipients (at RCPT) %d", w.refusedRcpt)
	has("rejected %d", w.blockedEOM["reject"])
	has("quarantined (not released) %d", w.blockedEOM["quarantine"])
	has("real bounces delivered (messages) %d", w.real)
	for k, n := range w.realBy {
		has("proved by %s %d", k, n)
	}
	has("our NDRs to forged senders stopped (messages) %d", w.ownNDR["discard"]+w.ownNDR["quarantine"])
	has("discarded %d", w.ownNDR["discard"])
	has("NDRs suppressed (NOTIFY=NEVER) %d", w.ndrSuppressed)
	has("success DSN stripped %d", w.ndrStripped)
	has("verdicts in observe mode %d", w.observe)
	has("would have rejected (messages) %d", w.wouldMsg["reject"])
	has("would have quarantined (messages) %d", w.wouldMsg["quarantine"])
	has("would have refused at RCPT (recipients) %d", w.wouldRcpt)
	has("would have blocked backscatter (messages) %d", w.wouldBlock)
	has("would have refused backscatter (recipients) %d", w.wouldRefuse)
	has("would have suppressed NDRs (messages) %d", w.wouldSuppress)
	has("would have stripped success DSN (messages) %d", w.wouldStrip)
	has("held %d", w.held)
	has("released by an operator (false positives) %d %.1f%%", w.released, 100*float64(w.released)/float64(w.held))
	has("deleted by an operator %d", w.deleted)
	has("events for messages held before this log %d", w.unmatched)
	for ev, n := range w.heldBy {
		has("%s %d %d %.1f%%", ev, n, w.releasedBy[ev], 100*float64(w.releasedBy[ev])/float64(n))
	}
	last := w.heldList[len(w.heldList)-1]
	status := last.Status
	if last.Operator != "" {
		status += " by " + last.Operator
	}
	has("%s %s %s <%s> %d %s %s", last.QueueID, last.Time.UTC().Format("2006-01-02 15:04:05"), last.ClientIP, last.Sender, last.Score, last.Deciding, status)
	for name, n := range w.fired {
		has("%s %d %d", name, n, w.decided[name])
	}
	for _, list := range [][]Count{r.TopClients, r.TopSources, r.TopZones, r.TopTargets, r.Observe.TopSources} {
		for _, c := range list {
			has("%s %d", c.Key, c.Count)
		}
	}
	for _, v := range []struct {
		m      map[string]map[string]int
		layout string
	}{{w.days, "2006-01-02"}, {w.hours, "2006-01-02T15"}} {
		for k, acts := range v.m {
			tm, _ := time.Parse(v.layout, k)
			row := ""
			total := 0
			for _, a := range Actions {
				row += fmt.Sprintf(" %d", acts[a])
				total += acts[a]
			}
			if v.layout == "2006-01-02" {
				has("%s %d%s", tm.Format("2006-01-02"), total, row)
			} else {
				has("%s %d%s", tm.Format("2006-01-02 15:00"), total, row)
			}
		}
	}
}

// checkHTML parses the page and checks it is one self-contained file with
// the three charts.
func checkHTML(t *testing.T, r *Report) {
	t.Helper()
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	z := html.NewTokenizer(strings.NewReader(page))
	var stack []string
	charts := map[string]int{}      // svg id -> rects inside
	titles := map[string][]string{} // svg id -> bar titles
	inSVG, inTitle := "", false
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			for _, a := range tok.Attr {
				if a.Key == "src" || a.Key == "href" || (a.Key != "xmlns" && strings.Contains(a.Val, "http")) {
					t.Errorf("external reference: <%s %s=%q>", tok.Data, a.Key, a.Val)
				}
				if tok.Data == "svg" && a.Key == "id" {
					inSVG = a.Val
				}
			}
			switch tok.Data {
			case "script", "link", "img", "iframe", "object":
				t.Errorf("<%s> in a self-contained page", tok.Data)
			case "rect":
				charts[inSVG]++
				for _, a := range tok.Attr {
					if inSVG == "chart-sources" && a.Key == "width" && (a.Val == "0" || a.Val == "0.0") {
						t.Errorf("%s: a bar of width 0 (%v)", inSVG, tok.Attr)
					}
				}
			case "title":
				inTitle = inSVG != ""
			}
			if tt == html.StartTagToken && !voidElement[tok.Data] {
				stack = append(stack, tok.Data)
			}
		case html.TextToken:
			if inTitle {
				titles[inSVG] = append(titles[inSVG], tok.Data)
			}
		case html.EndTagToken:
			inTitle = false
			if len(stack) == 0 || stack[len(stack)-1] != tok.Data {
				t.Fatalf("HTML not well formed: </%s> closes %v", tok.Data, stack)
			}
			stack = stack[:len(stack)-1]
			if tok.Data == "svg" {
				inSVG = ""
			}
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed elements: %v", stack)
	}
	segs := 0
	for _, bk := range r.Hourly { // the generated log spans less than a week: hourly bars
		for _, n := range bk.ByAction {
			if n > 0 {
				segs++
			}
		}
	}
	if charts["chart-volume"] != segs {
		t.Errorf("volume chart has %d bar segments, want %d", charts["chart-volume"], segs)
	}
	if charts["chart-sources"] != len(r.TopSources) {
		t.Errorf("sources chart has %d bars, want %d", charts["chart-sources"], len(r.TopSources))
	}
	for i, c := range r.TopSources {
		if want := fmt.Sprintf("%s: %d", c.Key, c.Count); i >= len(titles["chart-sources"]) || titles["chart-sources"][i] != want {
			t.Errorf("sources chart bar %d is %q, want %q", i, titles["chart-sources"], want)
			break
		}
	}
	if charts["chart-evidence"] != 2*len(r.Evidence) {
		t.Errorf("evidence chart has %d bars, want %d", charts["chart-evidence"], 2*len(r.Evidence))
	}
	if _, err := html.Parse(strings.NewReader(page)); err != nil {
		t.Errorf("html.Parse: %v", err)
	}
}

var voidElement = map[string]bool{"meta": true, "br": true, "hr": true, "img": true, "input": true, "link": true}

func TestReportEmptyInput(t *testing.T) {
	r := aggregate(t, nil, Options{})
	for _, write := range []func(*Report, *bytes.Buffer) error{
		func(r *Report, b *bytes.Buffer) error { return r.WriteText(b) },
		func(r *Report, b *bytes.Buffer) error { return r.WriteJSON(b) },
		func(r *Report, b *bytes.Buffer) error { return r.WriteHTML(b) },
	} {
		var b bytes.Buffer
		if err := write(r, &b); err != nil || b.Len() == 0 {
			t.Errorf("empty report: %v, %d bytes", err, b.Len())
		}
	}
}

func TestReadGzipLongAndTruncated(t *testing.T) {
	lines := generate(3, 200, genStart)
	w := expect(lines, time.Time{}, time.Time{})
	plain := joinLines(lines)
	// A runaway line longer than MaxLineBytes, then the log goes on.
	long := append(append([]byte(`{"msg":"verdict","x":"`), bytes.Repeat([]byte("a"), MaxLineBytes+10)...), "\"}\n"...)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(long)
	zw.Write(plain)
	zw.Close()
	a := New(Options{Location: time.UTC})
	if err := a.Read(bytes.NewReader(gz.Bytes())); err != nil {
		t.Fatal(err)
	}
	r := a.Report()
	if r.Input.Lines != w.lines+1 || r.Input.Malformed != w.malformed+1 || r.Messages.Total != w.msgTotal {
		t.Errorf("gzip with a long line: lines %d malformed %d messages %d; want %d %d %d",
			r.Input.Lines, r.Input.Malformed, r.Messages.Total, w.lines+1, w.malformed+1, w.msgTotal)
	}

	// A .gz cut short (rotation in progress): what was read counts, the error is noted.
	cut := gz.Bytes()[:gz.Len()*2/3]
	a = New(Options{})
	if err := a.Read(bytes.NewReader(cut)); err == nil {
		t.Error("a truncated gzip stream should report an error")
	}
	r = a.Report()
	if len(r.Input.Errors) != 1 || r.Messages.Total == 0 {
		t.Errorf("truncated gzip: errors %v, messages %d", r.Input.Errors, r.Messages.Total)
	}
}

func TestReadFilesAndExpand(t *testing.T) {
	dir := t.TempDir()
	lines := generate(4, 300, genStart)
	data := joinLines(lines)
	half := len(lines) / 2
	os.WriteFile(filepath.Join(dir, "milter.log.1"), joinLines(lines[:half]), 0o644)
	os.WriteFile(filepath.Join(dir, "milter.log"), joinLines(lines[half:]), 0o644)
	names, err := Expand([]string{filepath.Join(dir, "milter.log*")})
	if err != nil || len(names) != 2 {
		t.Fatalf("Expand: %v %v", names, err)
	}
	a := New(Options{Location: time.UTC})
	if err := a.ReadFiles(names, nil); err != nil {
		t.Fatal(err)
	}
	whole := aggregate(t, data, Options{})
	got := a.Report()
	if got.Input.Files != 2 || got.Messages.Total != whole.Messages.Total || got.Input.Lines != whole.Input.Lines {
		t.Errorf("two files: %+v, want the same as one: %+v", got.Input, whole.Input)
	}
	a = New(Options{})
	if err := a.ReadFiles([]string{"-"}, bytes.NewReader(data)); err != nil || a.Report().Messages.Total != whole.Messages.Total {
		t.Errorf("stdin: %v", err)
	}
	for _, bad := range [][]string{{filepath.Join(dir, "nope*")}, {filepath.Join(dir, "[")}} {
		if _, err := Expand(bad); err == nil {
			t.Errorf("Expand(%q) should fail", bad)
		}
	}
	if err := New(Options{}).ReadFiles([]string{filepath.Join(dir, "missing.log")}, nil); err == nil {
		t.Error("a missing file must be an error")
	}
	if err := New(Options{}).ReadFiles([]string{dir}, nil); err == nil {
		t.Error("a directory must be an error")
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	cet := time.FixedZone("CET", 3600)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, cet)},
		{"2026-03-01 14:30", time.Date(2026, 3, 1, 14, 30, 0, 0, cet)},
		{"2026-03-01T14:30:05", time.Date(2026, 3, 1, 14, 30, 5, 0, cet)},
		{"2026-03-01T14:30:05Z", time.Date(2026, 3, 1, 14, 30, 5, 0, time.UTC)},
		{"24h", now.Add(-24 * time.Hour)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
	}
	for _, tc := range tests {
		got, err := ParseTime(tc.in, now, cet)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5h", "2026-13-01", "7x", "-1d"} {
		if _, err := ParseTime(bad, now, cet); err == nil {
			t.Errorf("ParseTime(%q) should fail", bad)
		}
	}
}

func TestCounterBound(t *testing.T) {
	c := counter{max: 10}
	for i := 0; i < 1000; i++ {
		c.add(fmt.Sprint("k", i))
		if i%3 == 0 {
			c.add("heavy")
		}
	}
	if len(c.m) > 20 || !c.pruned {
		t.Fatalf("counter kept %d keys, pruned %v", len(c.m), c.pruned)
	}
	if top := c.top(1); top[0].Key != "heavy" {
		t.Errorf("the heavy hitter was lost: %v", top)
	}
	c.add(strings.Repeat("x", 10000))
	for k := range c.m {
		if len(k) > maxKeyLen {
			t.Errorf("key of %d bytes kept", len(k))
		}
	}
}
