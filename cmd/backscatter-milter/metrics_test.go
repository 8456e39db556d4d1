package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/auth"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

func scrape(t *testing.T, url string) map[string]*dtoFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	body, _ := io.ReadAll(resp.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	out := map[string]*dtoFamily{}
	for name, f := range fams {
		df := &dtoFamily{values: map[string]float64{}, counts: map[string]uint64{}}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			df.values[strings.Join(labels, ",")] = v
			if h := m.GetHistogram(); h != nil {
				df.counts[strings.Join(labels, ",")] = h.GetSampleCount()
			}
		}
		out[name] = df
	}
	return out
}

type dtoFamily struct {
	values map[string]float64
	counts map[string]uint64 // histograms: sample count by labels
}

func TestMetricsScrape(t *testing.T) {
	d := &daemon{sentHealth: sent.NewHealth("embedded", nil)}
	m, err := startMetrics("127.0.0.1:0", d, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()

	// Before anything happened, every labelled counter is there at 0, so
	// that increase() sees the first event after a restart.
	fams := scrape(t, "http://"+m.addr+"/metrics")
	for name, labels := range map[string][]string{
		"backscatter_milter_messages_total":            {"action=quarantine,direction=inbound,mode=enforce,role=smtpd", "action=discard,direction=inbound,mode=enforce,role=internal-bounce"},
		"backscatter_milter_evidence_total":            {"name=batv:missing", "name=bounce:not-ours", "name=ndr:forged-sender"},
		"backscatter_milter_errors_total":              {"kind=panic", "kind=internal", "kind=negotiation"},
		"backscatter_milter_config_reloads_total":      {"result=ok", "result=refused"},
		"backscatter_milter_ndr_rewrites_total":        {"kind=suppressed", "kind=success-dsn-stripped"},
		"backscatter_milter_ndr_generated_total":       {"auth=authenticated", "auth=unauthenticated", "auth=forged", "auth=unknown"},
		"backscatter_milter_spf_results_total":         {"result=pass", "result=fail", "result=temperror"},
		"backscatter_milter_dkim_results_total":        {"aligned=true,result=pass", "aligned=false,result=fail"},
		"backscatter_milter_batv_signatures_total":     {"result=signed", "result=error"},
		"backscatter_milter_sent_log_errors_total":     {"backend=embedded,op=record", "backend=embedded,op=seen", "backend=embedded,op=purge", "backend=embedded,op=open"},
		"backscatter_milter_sent_log_replaced_total":   {"backend=embedded"},
		"backscatter_milter_sent_log_degraded":         {"backend=embedded"},
		"backscatter_milter_connections_refused_total": {""},
	} {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing before the first event", name)
			continue
		}
		for _, l := range labels {
			if v, ok := f.values[l]; !ok || v != 0 {
				t.Errorf("%s{%s} = %v (present %v) at start, want 0", name, l, v, ok)
			}
		}
	}
	if bi := fams["backscatter_milter_build_info"]; bi == nil || len(bi.values) != 1 {
		t.Errorf("build_info: %v", bi)
	} else {
		for l, v := range bi.values {
			if v != 1 || !strings.Contains(l, "version="+version) || !strings.Contains(l, "goversion=go") {
				t.Errorf("build_info{%s} = %v", l, v)
			}
		}
	}

	obs := m.observer()
	in := &policy.Transaction{Direction: policy.Inbound, Connection: policy.Connection{ClientIP: netip.MustParseAddr("198.51.100.23")}}
	out := &policy.Transaction{Direction: policy.Outbound}
	bl := policy.Evidence{Name: "dnsbl:ips.backscatterer.org", Weight: 6}
	missing := policy.Evidence{Name: "batv:missing", Weight: 10}
	obs.SessionStart()
	obs.SessionStart()
	obs.SessionEnd()
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageRcpt, Action: policy.Reject, Would: policy.Reject, Evidence: policy.Evidences{bl, missing}})
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageRcpt, Action: policy.Reject, Would: policy.Reject, Evidence: policy.Evidences{missing}})
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageCallout, Evidence: policy.Evidences{{Name: "callout"}}})
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageEOM, Action: policy.Quarantine, Would: policy.Quarantine,
		Evidence: policy.Evidences{{Name: "bounce:not-ours", Weight: 6}}})
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageEOM, NDR: "suppressed"})
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageEOM, NDR: "suppressed"})
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageEOM, Mode: policy.Observe, Action: policy.Tag, Would: policy.Reject, NDR: "success-dsn-stripped"})
	obs.Verdict(out, &policy.Verdict{Stage: policy.StageEOM})
	// Postfix's own NDRs: a hold is not an inbound quarantine.
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageInternal, Action: policy.Quarantine, Would: policy.Quarantine, Auth: policy.Forged,
		Evidence: policy.Evidences{{Name: policy.EvNDRForged, Weight: 10}}})
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageInternal, Action: policy.Accept, Auth: policy.Authenticated})
	obs.Verdict(in, &policy.Verdict{Stage: policy.StageInternal, Action: policy.Accept})
	obs.Error("panic")
	dobs := obs.(milter.DecisionObserver)
	dobs.Decided(policy.StageRcpt, 3*time.Millisecond)
	dobs.Decided(policy.StageEOM, 40*time.Millisecond)
	dobs.Decided(policy.StageEOM, 2*time.Second)
	obs.(milter.ConnObserver).ConnRefused()
	m.reloaded(true)
	m.reloaded(false)
	m.reloaded(false)
	m.counts.spfResult(auth.SPFPass)
	m.counts.spfResult(auth.SPFFail)
	m.counts.spfResult(auth.SPFFail)
	m.counts.dkimResult(true, true)
	m.counts.batvSigned(nil)
	m.counts.batvSigned(errors.New("x"))
	d.sentHealth.Fail(sent.OpRecord, errors.New("disk full"))
	d.sentHealth.Replaced("/x/sent.db.damaged-1", errors.New("bad page"))

	fams = scrape(t, "http://"+m.addr+"/metrics")
	want := map[string]map[string]float64{
		"backscatter_milter_messages_total": {
			"action=quarantine,direction=inbound,mode=enforce,role=smtpd":           1,
			"action=accept,direction=inbound,mode=enforce,role=smtpd":               2,
			"action=tag,direction=inbound,mode=observe,role=smtpd":                  1,
			"action=accept,direction=outbound,mode=enforce,role=smtpd":              1,
			"action=quarantine,direction=inbound,mode=enforce,role=internal-bounce": 1,
			"action=accept,direction=inbound,mode=enforce,role=internal-bounce":     2,
		},
		"backscatter_milter_evidence_total": {
			"name=batv:missing": 2, "name=dnsbl:ips.backscatterer.org": 1, "name=callout": 1, "name=bounce:not-ours": 1, "name=ndr:forged-sender": 1,
		},
		"backscatter_milter_rcpt_rejects_total":        {"": 2},
		"backscatter_milter_ndr_rewrites_total":        {"kind=suppressed": 2, "kind=success-dsn-stripped": 1},
		"backscatter_milter_ndr_generated_total":       {"auth=forged": 1, "auth=authenticated": 1, "auth=unknown": 1},
		"backscatter_milter_sessions_in_flight":        {"": 1},
		"backscatter_milter_errors_total":              {"kind=panic": 1},
		"backscatter_milter_config_reloads_total":      {"result=ok": 1, "result=refused": 2},
		"backscatter_milter_connections_refused_total": {"": 1},
		"backscatter_milter_spf_results_total":         {"result=pass": 1, "result=fail": 2},
		"backscatter_milter_dkim_results_total":        {"aligned=true,result=pass": 1},
		"backscatter_milter_batv_signatures_total":     {"result=signed": 1, "result=error": 1},
		"backscatter_milter_sent_log_errors_total":     {"backend=embedded,op=record": 1, "backend=embedded,op=open": 1},
		"backscatter_milter_sent_log_replaced_total":   {"backend=embedded": 1},
		"backscatter_milter_sent_log_degraded":         {"backend=embedded": 1},
	}
	for name, series := range want {
		f := fams[name]
		if f == nil {
			t.Errorf("%s missing from /metrics", name)
			continue
		}
		for labels, v := range series {
			if got, ok := f.values[labels]; !ok || got != v {
				t.Errorf("%s{%s} = %v (present %v), want %v", name, labels, got, ok, v)
			}
		}
		// Every other series of the family is still 0.
		for labels, v := range f.values {
			if _, ok := series[labels]; !ok && v != 0 {
				t.Errorf("%s{%s} = %v, want 0", name, labels, v)
			}
		}
	}
	if h := fams["backscatter_milter_decision_seconds"]; h == nil {
		t.Error("decision_seconds missing")
	} else if h.counts["stage=eom"] != 2 || h.counts["stage=rcpt"] != 1 || h.counts["stage=internal-bounce"] != 0 {
		t.Errorf("decision_seconds counts %v", h.counts)
	}
	for name := range fams {
		if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "backscatter_milter_") {
			t.Errorf("unexpected metric family %s", name)
		}
	}

	// /healthz: 200 and the failing dependency by name; ok once it works.
	body := healthz(t, m.addr)
	if !strings.HasPrefix(body, "degraded\n") || !strings.Contains(body, "sent_log (embedded): record: disk full") {
		t.Errorf("/healthz while the store fails: %q", body)
	}
	d.sentHealth.OK()
	if body := healthz(t, m.addr); body != "ok\n" {
		t.Errorf("/healthz: %q", body)
	}
}

func healthz(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
	return string(body)
}

// TestMetricsNoAllocs: what every milter callback does to the metrics
// allocates nothing.
func TestMetricsNoAllocs(t *testing.T) {
	m, err := startMetrics("", nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	obs := m.observer()
	tx := &policy.Transaction{Direction: policy.Inbound}
	v := &policy.Verdict{Stage: policy.StageEOM, Action: policy.Quarantine, NDR: "suppressed",
		Evidence: policy.Evidences{{Name: "bounce:not-ours", Weight: 6}, {Name: "batv:missing", Weight: 10}}}
	dobs := obs.(milter.DecisionObserver)
	allocs := testing.AllocsPerRun(200, func() {
		obs.SessionStart()
		dobs.Decided(policy.StageRcpt, time.Millisecond)
		obs.Verdict(tx, v)
		dobs.Decided(policy.StageEOM, time.Millisecond)
		m.counts.spfResult(auth.SPFPass)
		m.counts.batvSigned(nil)
		obs.SessionEnd()
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per message", allocs)
	}
}

// TestMetricsDefaultLoopback: the embedded defaults bind the metrics
// listener to loopback only, so it is not reachable from other hosts.
func TestMetricsDefaultLoopback(t *testing.T) {
	t.Setenv("BACKSCATTER_METRICS_LISTEN", "") // the environment must not decide this test
	cfg, err := config.Load(writeTemp(t, "config.yaml", "sent_log: { backend: memory }\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		t.Fatalf("metrics.listen %q: %v", cfg.Metrics.Listen, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		t.Fatalf("default metrics.listen %q is not a loopback address", cfg.Metrics.Listen)
	}
	// And a listener on that host answers only on loopback: it is not
	// bound to the unspecified address.
	m, err := startMetrics(net.JoinHostPort(host, "0"), &daemon{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	got, err := netip.ParseAddrPort(m.addr)
	if err != nil || !got.Addr().IsLoopback() {
		t.Errorf("metrics listener bound to %s", m.addr)
	}
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
