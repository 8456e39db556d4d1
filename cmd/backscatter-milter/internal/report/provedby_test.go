package report

import (
	"bytes"
	"strings"
	"testing"
)

// TestProvedBy: each delivered answer counts once, under the strongest
// proof it carries (the policy's ladder order, not the line's order); a
// held one and one without proof are not real bounces.
func TestProvedBy(t *testing.T) {
	a := New(Options{})
	for _, l := range []string{
		`{"msg":"verdict","ts":"2026-12-01T14:00:00Z","stage":"eom","action":"accept","direction":"inbound","mode":"enforce","sender":"<>",` +
			`"evidence":[{"name":"bounce:not-ours","weight":6},{"name":"bounce:ours-stamp","weight":-16}]}`,
		`{"msg":"verdict","ts":"2026-12-01T14:01:00Z","stage":"eom","action":"tag","direction":"inbound","mode":"enforce","sender":"<>",` +
			`"evidence":[{"name":"bounce:ours","weight":-10},{"name":"bounce:ours-dkim-headers","weight":-14}]}`,
		`{"msg":"verdict","ts":"2026-12-01T14:02:00Z","stage":"eom","action":"accept","direction":"inbound","mode":"enforce","sender":"<>",` +
			`"evidence":[{"name":"bounce:ours-relay","weight":-6},{"name":"batv:ok","weight":-10}]}`,
		`{"msg":"verdict","ts":"2026-12-01T14:03:00Z","stage":"eom","action":"quarantine","direction":"inbound","mode":"enforce","sender":"<>",` +
			`"evidence":[{"name":"bounce:stamp-bad","weight":3},{"name":"bounce:not-ours","weight":6}]}`,
		`{"msg":"verdict","ts":"2026-12-01T14:04:00Z","stage":"eom","action":"accept","direction":"inbound","mode":"enforce","sender":"<>",` +
			`"evidence":[{"name":"bounce:origin-spf-pass","weight":-2}]}`,
	} {
		a.AddLine([]byte(l))
	}
	r := a.Report()
	want := map[string]int{"bounce:ours-stamp": 1, "bounce:ours-dkim-headers": 1, "batv:ok": 1}
	if r.Backscatter.RealBouncesDelivered != 3 || len(r.Backscatter.RealBouncesBy) != len(want) {
		t.Fatalf("real bounces %d by %v, want 3 by %v", r.Backscatter.RealBouncesDelivered, r.Backscatter.RealBouncesBy, want)
	}
	for k, n := range want {
		if r.Backscatter.RealBouncesBy[k] != n {
			t.Errorf("proved by %s: %d, want %d", k, r.Backscatter.RealBouncesBy[k], n)
		}
	}
	var out bytes.Buffer
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	i, j := strings.Index(text, "proved by batv:ok"), strings.Index(text, "proved by bounce:ours-stamp")
	if i < 0 || j < 0 || i > j || !strings.Contains(text, "proved by bounce:ours-dkim-headers") {
		t.Errorf("text lacks the proved-by lines in ladder order:\n%s", text)
	}
}
