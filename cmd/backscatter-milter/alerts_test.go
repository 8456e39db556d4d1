package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// promtool is found on PATH or where .ci/install-test-deps unpacks it.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	root := os.Getenv("BACKSCATTER_PROMTOOL_ROOT")
	if root == "" {
		root = "/opt/backscatter-test/prometheus"
	}
	p := filepath.Join(root, "usr/bin/promtool")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if os.Getenv("BACKSCATTER_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("promtool not found (run .ci/install-test-deps)")
	}
	t.Skip("promtool not found (run .ci/install-test-deps)")
	return ""
}

// alertRules returns the YAML code blocks of docs/operations.md that hold
// Prometheus rule groups.
func alertRules(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1) {
		if bytes.Contains(m[1], []byte("groups:")) {
			out = append(out, string(m[1]))
		}
	}
	if len(out) == 0 {
		t.Fatal("no alert rules (a ```yaml block with groups:) in docs/operations.md")
	}
	return out
}

// TestAlertRules: the alert rules in docs/operations.md load in promtool,
// and every backscatter_milter_ metric they name is one the milter exports.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	m, err := startMetrics("", &daemon{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range fams {
		exported[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				exported[f.GetName()+suffix] = true
			}
		}
	}
	// Collected at scrape time from the daemon's parts: named here.
	for _, n := range []string{"dnsbl_queries_total", "dnsbl_errors_total", "dnsbl_zone_healthy", "dnsbl_cache_entries", "dnsbl_lookups_total",
		"sent_log_errors_total", "sent_log_degraded", "sent_log_replaced_total", "egress_listed"} {
		exported[ns+"_"+n] = true
	}
	for i, rules := range alertRules(t) {
		p := filepath.Join(t.TempDir(), "rules.yml")
		if err := os.WriteFile(p, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "check", "rules", p).CombinedOutput()
		if err != nil {
			t.Errorf("block %d: promtool check rules: %v\n%s\n%s", i, err, out, rules)
		} else if !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("block %d: promtool said: %s", i, out)
		}
		names := regexp.MustCompile(ns+`_[a-z_]+`).FindAllString(rules, -1)
		if len(names) == 0 {
			t.Errorf("block %d names no backscatter_milter metric", i)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("block %d: %s is not a metric the milter exports", i, n)
			}
		}
	}
}
