package bounce

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The corpus is read in place (never copied into the repository): from
// $BACKSCATTER_CORPUS, else from the project's shared checkout. Where the
// corpus must be there (CI=true, BACKSCATTER_REQUIRE_INTEGRATION=1, or
// BACKSCATTER_CORPUS set), its absence fails the test instead of skipping it.
func corpusDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("BACKSCATTER_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "truth.jsonl")); err != nil {
		if why := corpusRequired(); why != "" {
			tb.Fatalf("bounce corpus not found at %s (%s): %v", dir, why, err)
		}
		tb.Skipf("bounce corpus not found at %s: skipped (set BACKSCATTER_CORPUS to a folder with truth.jsonl and bounces/; CI=true or BACKSCATTER_REQUIRE_INTEGRATION=1 make this a failure)", dir)
	}
	return dir
}

// corpusRequired says why a missing corpus is a failure here, or "".
func corpusRequired() string {
	switch {
	case os.Getenv("BACKSCATTER_CORPUS") != "":
		return "BACKSCATTER_CORPUS is set"
	case os.Getenv("BACKSCATTER_REQUIRE_INTEGRATION") == "1":
		return "BACKSCATTER_REQUIRE_INTEGRATION=1"
	case os.Getenv("CI") == "true":
		return "CI=true"
	}
	return ""
}

type truthHop struct {
	Raw     string   `json:"raw"`
	FromIPs []string `json:"from_ips"`
	By      string   `json:"by"`
}

type truthEntry struct {
	File                 string     `json:"file"`
	Kind                 string     `json:"kind"`
	IsBounce             bool       `json:"is_bounce"`
	FailedRecipients     []string   `json:"failed_recipients"`
	HasOriginalMessageID bool       `json:"has_original_message_id"`
	OriginalMessageID    string     `json:"original_message_id"`
	OriginalReceived     []truthHop `json:"original_received"`
	OriginalMessage      string     `json:"original_message"`
}

func loadTruth(tb testing.TB, dir string) []truthEntry {
	tb.Helper()
	f, err := os.Open(filepath.Join(dir, "truth.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []truthEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e truthEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			tb.Fatalf("truth.jsonl: %v", err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(out) == 0 {
		tb.Fatal("truth.jsonl is empty")
	}
	return out
}

// truthKind maps the corpus' kind names onto Kind.
var truthKind = map[string]Kind{
	"bounce": KindFailure, "delay": KindDelay, "dsn-delivered": KindDelivered,
	"autoreply": KindAutoReply, "feedback-report": KindFeedback, "not-bounce": KindNone,
}

// score accumulates the measured rates for one group of files.
type score struct {
	n                            int
	tp, fp, fn                   int
	kindOK                       int
	midN, midOK                  int
	rcptN, rcptOK                int
	hopN, hopOK                  int
	origN, origOK                int
	errors, truncated            int
	missDetect, missID, missKind []string
	missRcpt, missHop, missOrig  []string
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

func (s *score) precision() float64 { return ratio(s.tp, s.tp+s.fp) }
func (s *score) recall() float64    { return ratio(s.tp, s.tp+s.fn) }

func (s *score) add(e truthEntry, r *Report) {
	s.n++
	got := r != nil && r.Kind.IsBounce()
	switch {
	case got && e.IsBounce:
		s.tp++
	case got && !e.IsBounce:
		s.fp++
		s.missDetect = append(s.missDetect, e.File+" (false positive: "+r.Kind.String()+")")
	case !got && e.IsBounce:
		s.fn++
		k := "error"
		if r != nil {
			k = r.Kind.String()
		}
		s.missDetect = append(s.missDetect, e.File+" (missed: "+k+")")
	}
	if r == nil {
		return
	}
	if want, ok := truthKind[e.Kind]; ok && want == r.Kind {
		s.kindOK++
	} else {
		s.missKind = append(s.missKind, fmt.Sprintf("%s want %s got %s %q", e.File, e.Kind, r.Kind, r.Why))
	}
	if e.HasOriginalMessageID && e.OriginalMessageID != "" {
		s.midN++
		if NormalizeMessageID(e.OriginalMessageID) == r.OriginalMessageID {
			s.midOK++
		} else {
			s.missID = append(s.missID, fmt.Sprintf("%s want %q got %q", e.File, NormalizeMessageID(e.OriginalMessageID), r.OriginalMessageID))
		}
	}
	if e.OriginalMessage == "full" || e.OriginalMessage == "headers" {
		s.origN++
		if r.OriginalHeaders {
			s.origOK++
		} else {
			s.missOrig = append(s.missOrig, e.File+" ("+e.OriginalMessage+")")
		}
	}
	if len(e.FailedRecipients) > 0 && e.IsBounce {
		s.rcptN++
		have := map[string]bool{}
		for _, a := range r.FailedRecipients {
			have[a] = true
		}
		ok := true
		for _, a := range e.FailedRecipients {
			if !have[strings.ToLower(a)] {
				ok = false
			}
		}
		if ok {
			s.rcptOK++
		} else {
			s.missRcpt = append(s.missRcpt, fmt.Sprintf("%s want %q got %q", e.File, e.FailedRecipients, r.FailedRecipients))
		}
	}
	if len(e.OriginalReceived) > 0 {
		s.hopN++
		if hopsMatch(e.OriginalReceived, r.Received) {
			s.hopOK++
		} else {
			s.missHop = append(s.missHop, fmt.Sprintf("%s want %s got %s", e.File, fmtTruthHops(e.OriginalReceived), fmtHops(r.Received)))
		}
	}
	if r.Truncated {
		s.truncated++
	}
}

// hopsMatch: same number of hops, same "by" host, and the client IP is one
// of the IPs the corpus found in the from clause.
func hopsMatch(want []truthHop, got []Hop) bool {
	if len(want) != len(got) {
		return false
	}
	for i, w := range want {
		if w.By != "" && !strings.EqualFold(w.By, got[i].By) {
			return false
		}
		if len(w.FromIPs) > 0 && got[i].ClientIP.IsValid() {
			found := false
			for _, ip := range w.FromIPs {
				if ip == got[i].ClientIP.String() {
					found = true
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

func fmtTruthHops(hs []truthHop) string {
	var parts []string
	for _, h := range hs {
		parts = append(parts, fmt.Sprintf("{by %s ip %v}", h.By, h.FromIPs))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func fmtHops(hs []Hop) string {
	var parts []string
	for _, h := range hs {
		parts = append(parts, fmt.Sprintf("{by %s ip %v byip %v}", h.By, h.ClientIP, h.ByIP))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// groupOf maps "lhost-postfix/x.eml" to "lhost-*" and so on.
func groupOf(file string) string {
	d, _, _ := strings.Cut(file, "/")
	for _, p := range []string{"lhost-", "rhost-"} {
		if strings.HasPrefix(d, p) {
			return p + "*"
		}
	}
	return d
}

// Floors are set a little under the measured values (see the table).
var corpusFloors = struct {
	precision, recall, kind, messageID, recipients, hops, originals float64
}{
	precision: 1.0, recall: 0.997, kind: 0.995, messageID: 1.0, recipients: 0.979, hops: 0.933, originals: 0.998,
}

// issue10Originals are the corpus bounces whose original headers the parser
// used to miss (GMX, mxlogic, Office 365, mFILTER, X1, ezweb, X3, and the
// same files with other line endings). lhost-x3-06 stays out: its
// text/rfc822-headers part holds only "xxxx" (the anonymised header), so
// there are no fields to find.
var issue10Originals = []string{
	"lhost-ezweb/lhost-ezweb-01.eml", "lhost-gmx/lhost-gmx-01.eml", "lhost-gmx/lhost-gmx-02.eml",
	"lhost-gmx/lhost-gmx-03.eml", "lhost-gmx/lhost-gmx-04.eml", "lhost-mfilter/lhost-mfilter-03.eml",
	"lhost-mfilter/lhost-mfilter-04.eml", "lhost-mfilter/lhost-mfilter-05.eml", "lhost-mxlogic/lhost-mxlogic-01.eml",
	"lhost-mxlogic/lhost-mxlogic-02.eml", "lhost-mxlogic/lhost-mxlogic-03.eml", "lhost-office365/lhost-office365-08.eml",
	"lhost-office365/lhost-office365-09.eml", "lhost-office365/lhost-office365-10.eml", "lhost-office365/lhost-office365-11.eml",
	"lhost-office365/lhost-office365-12.eml", "lhost-x1/lhost-x1-01.eml", "lhost-x1/lhost-x1-02.eml",
	"not-bounce/rb-issue-368-bug.eml", "crlf-dos/lhost-ezweb-01.eml", "crlf-dos/lhost-gmx-01.eml",
	"crlf-dos/lhost-mxlogic-01.eml", "crlf-dos/lhost-x1-01.eml", "cr-mac/lhost-ezweb-01.eml",
	"cr-mac/lhost-gmx-01.eml", "cr-mac/lhost-mxlogic-01.eml", "cr-mac/lhost-x1-01.eml",
}

// TestCorpusIssue10Originals: each of those yields its original header
// bytes, and the Message-ID the corpus truth names.
func TestCorpusIssue10Originals(t *testing.T) {
	dir := corpusDir(t)
	truth := map[string]truthEntry{}
	for _, e := range loadTruth(t, dir) {
		truth[e.File] = e
	}
	found := 0
	for _, f := range issue10Originals {
		e, ok := truth[f]
		if !ok {
			t.Errorf("%s: not in truth.jsonl", f)
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, "bounces", filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(raw, DefaultLimits())
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		switch {
		case !r.OriginalHeaders || len(r.OriginalHeader) == 0:
			t.Errorf("%s: no original header found", f)
		case e.HasOriginalMessageID && NormalizeMessageID(e.OriginalMessageID) != r.OriginalMessageID:
			t.Errorf("%s: message-id %q, want %q", f, r.OriginalMessageID, NormalizeMessageID(e.OriginalMessageID))
		case e.OriginalMessage == "full" && r.OriginalBody == nil:
			t.Errorf("%s: the whole original came back, no body found", f)
		default:
			found++
		}
	}
	t.Logf("%d of %d bounces named in issue 10 yield their original header", found, len(issue10Originals))
}

func TestCorpus(t *testing.T) {
	dir := corpusDir(t)
	truth := loadTruth(t, dir)
	total := &score{}
	groups := map[string]*score{}
	for _, e := range truth {
		raw, err := os.ReadFile(filepath.Join(dir, "bounces", filepath.FromSlash(e.File)))
		if err != nil {
			t.Fatalf("%s: %v", e.File, err)
		}
		r, err := Parse(raw, DefaultLimits())
		if err != nil {
			total.errors++
			t.Logf("%s: %v", e.File, err)
		}
		g := groups[groupOf(e.File)]
		if g == nil {
			g = &score{}
			groups[groupOf(e.File)] = g
		}
		total.add(e, r)
		g.add(e, r)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n%-16s %5s %6s %6s %6s %7s %7s %7s %7s\n", "group", "files", "prec", "recall", "kind", "msg-id", "rcpts", "hops", "orig")
	row := func(name string, s *score) {
		fmt.Fprintf(&b, "%-16s %5d %6.3f %6.3f %6.3f %7s %7s %7s %7s\n", name, s.n, s.precision(), s.recall(),
			ratio(s.kindOK, s.n), frac(s.midOK, s.midN), frac(s.rcptOK, s.rcptN), frac(s.hopOK, s.hopN), frac(s.origOK, s.origN))
	}
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		row(n, groups[n])
	}
	row("ALL", total)
	fmt.Fprintf(&b, "parse errors %d, truncated %d\n", total.errors, total.truncated)
	t.Log(b.String())
	if os.Getenv("BOUNCE_CORPUS_VERBOSE") != "" {
		for _, m := range total.missDetect {
			t.Log("detect: " + m)
		}
		for _, m := range total.missKind {
			t.Log("kind: " + m)
		}
		for _, m := range total.missID {
			t.Log("msgid: " + m)
		}
		for _, m := range total.missRcpt {
			t.Log("rcpts: " + m)
		}
		for _, m := range total.missHop {
			t.Log("hops: " + m)
		}
		for _, m := range total.missOrig {
			t.Log("original: " + m)
		}
	}

	check := func(name string, got, floor float64) {
		if got < floor {
			t.Errorf("%s = %.3f, below the floor %.3f", name, got, floor)
		}
	}
	check("precision", total.precision(), corpusFloors.precision)
	check("recall", total.recall(), corpusFloors.recall)
	check("kind accuracy", ratio(total.kindOK, total.n), corpusFloors.kind)
	check("message-id extraction", ratio(total.midOK, total.midN), corpusFloors.messageID)
	check("failed-recipient extraction", ratio(total.rcptOK, total.rcptN), corpusFloors.recipients)
	check("received-hop extraction", ratio(total.hopOK, total.hopN), corpusFloors.hops)
	check("original-header detection", ratio(total.origOK, total.origN), corpusFloors.originals)
	if total.errors > 0 {
		t.Errorf("%d corpus messages gave a parse error", total.errors)
	}
}

func frac(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", float64(a)/float64(b))
}

// BenchmarkParseCorpus parses every corpus message once per iteration and
// reports throughput (MB/s, messages/s) and allocations. On a shared machine
// wall-clock figures swing with the load, so it also reports the process
// CPU time per message and messages per CPU second (run with -cpu 1 for the
// one-core figure; GC work is included).
func BenchmarkParseCorpus(b *testing.B) {
	dir := corpusDir(b)
	files, err := filepath.Glob(filepath.Join(dir, "bounces", "*", "*.eml"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no corpus files under %s: %v", dir, err)
	}
	var msgs [][]byte
	var size int64
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, raw)
		size += int64(len(raw))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	lim := DefaultLimits()
	cpu0 := cpuTime()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for _, m := range msgs {
			if _, err := Parse(m, lim); err != nil {
				b.Fatal(err)
			}
		}
		n += len(msgs)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if n > 0 && cpu > 0 {
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		b.ReportMetric(float64(n)/cpu.Seconds(), "msgs/cpu-s")
	}
}

// cpuTime is the user and system CPU time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
