package main

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/policy"
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
		df := &dtoFamily{values: map[string]float64{}}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			df.values[strings.Join(labels, ",")] = v
		}
		out[name] = df
	}
	return out
}

type dtoFamily struct{ values map[string]float64 }

func TestMetricsScrape(t *testing.T) {
	m, err := startMetrics("127.0.0.1:0", &daemon{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
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
	obs.Error("panic")
	m.reloaded(true)
	m.reloaded(false)
	m.reloaded(false)

	fams := scrape(t, "http://"+m.addr+"/metrics")
	want := map[string]map[string]float64{
		"backscatter_milter_messages_total": {
			"action=quarantine,direction=inbound,mode=enforce": 1,
			"action=accept,direction=inbound,mode=enforce":     2,
			"action=tag,direction=inbound,mode=observe":        1,
			"action=accept,direction=outbound,mode=enforce":    1,
		},
		"backscatter_milter_evidence_total": {
			"name=batv:missing": 2, "name=dnsbl:ips.backscatterer.org": 1, "name=callout": 1, "name=bounce:not-ours": 1,
		},
		"backscatter_milter_rcpt_rejects_total":   {"": 2},
		"backscatter_milter_ndr_rewrites_total":   {"kind=suppressed": 2, "kind=success-dsn-stripped": 1},
		"backscatter_milter_sessions_in_flight":   {"": 1},
		"backscatter_milter_errors_total":         {"kind=panic": 1},
		"backscatter_milter_config_reloads_total": {"result=ok": 1, "result=refused": 2},
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
		if len(f.values) != len(series) {
			t.Errorf("%s has series %v, want exactly %v", name, f.values, series)
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, "backscatter_milter_") && strings.HasSuffix(name, "_total") {
			continue
		}
		if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "backscatter_milter_") {
			t.Errorf("unexpected metric family %s", name)
		}
	}

	resp, err := http.Get("http://" + m.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz: %s %q", resp.Status, body)
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
