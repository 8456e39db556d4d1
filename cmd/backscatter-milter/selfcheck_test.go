package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
)

// selfZone lists 192.0.2.10 on bs.test; 192.0.2.11 is not listed.
const selfZone = `
10.2.0.192.bs.test. 60 IN A 127.0.0.2
10.2.0.192.bs.test. 60 IN TXT "backscatter source"
2.0.0.127.bs.test. 60 IN A 127.0.0.2
`

func ndrLine(at time.Time, auth string) string {
	return `{"level":"info","ts":"` + at.UTC().Format(time.RFC3339) + `","msg":"verdict","stage":"internal-bounce","action":"accept","would":"accept","mode":"enforce","sender":"<>","auth":"` + auth + `"}` + "\n"
}

func TestSelfcheckCommand(t *testing.T) {
	srv := dnstest.Start(t, selfZone)
	dir := t.TempDir()
	quiet := filepath.Join(dir, "quiet.log")
	noisy := filepath.Join(dir, "noisy.log")
	now := time.Now()
	os.WriteFile(quiet, []byte(ndrLine(now.Add(-time.Hour), "authenticated")+ndrLine(now.Add(-48*time.Hour), "unauthenticated")), 0o600)
	os.WriteFile(noisy, []byte(ndrLine(now.Add(-time.Hour), "unauthenticated")+ndrLine(now.Add(-2*time.Hour), "forged")), 0o600)
	cfg := func(resolver, egress, log string) string {
		return writeConfig(t, "resolver: "+resolver+"\ndnsbl: { zones: [] }\nself_watch: { egress: ["+egress+
			"], zones: [\"bs.test=127.0.0.2\"] }\nlog: { file: "+log+" }\n")
	}
	for _, tc := range []struct {
		name, resolver, egress, log string
		code                        int
		status                      string
		out                         []string
	}{
		{"clean", srv.Addr, "192.0.2.11", quiet, selfOK, "ok", []string{"192.0.2.11 on bs.test: not listed", "0 to unauthenticated senders"}},
		{"listed", srv.Addr, "192.0.2.10, 192.0.2.11", quiet, selfCritical, "critical", []string{"192.0.2.10 on bs.test: LISTED [127.0.0.2] backscatter source"}},
		{"ndrs to unauthenticated senders", srv.Addr, "192.0.2.11", noisy, selfWarning, "warning", []string{"2 to unauthenticated senders", "turn on ndr_suppression"}},
		{"dead resolver", "127.0.0.1:" + strconv.Itoa(freeUDPPort(t)), "192.0.2.11", quiet, selfUnknown, "unknown", []string{"lookup failed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := cfg(tc.resolver, tc.egress, tc.log)
			code, out, errs := runCLI("selfcheck", "--config", p)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, errs)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			code, out, _ = runCLI("selfcheck", "--config", p, "--json")
			var res selfcheckResult
			if err := json.Unmarshal([]byte(out), &res); err != nil || code != tc.code || res.Status != tc.status {
				t.Errorf("json: exit %d status %q err %v\n%s", code, res.Status, err, out)
			}
		})
	}
	if code, _, _ := runCLI("selfcheck", "--log", filepath.Join(dir, "missing.log")); code != selfUnknown {
		t.Errorf("missing log: exit %d, want %d", code, selfUnknown)
	}
	if code, _, _ := runCLI("selfcheck", "--bogus"); code != selfUnknown {
		t.Errorf("bad flag: exit %d, want %d", code, selfUnknown)
	}
}

// The running daemon exports its watch as metrics.
func TestSelfWatchMetrics(t *testing.T) {
	srv := dnstest.Start(t, selfZone)
	m := startMilter(t, "resolver: "+srv.Addr+"\ndnsbl: { zones: [] }\nself_watch: { egress: [192.0.2.10, 192.0.2.11], zones: [\"bs.test=127.0.0.2\"] }\n")
	want := []string{
		`backscatter_milter_egress_listed{ip="192.0.2.10",zone="bs.test"} 1`,
		`backscatter_milter_egress_listed{ip="192.0.2.11",zone="bs.test"} 0`,
		`backscatter_milter_egress_check_ok{ip="192.0.2.10",zone="bs.test"} 1`,
	}
	missing := ""
	if !await.True(20*time.Second, func() bool {
		resp, err := http.Get("http://" + m.d.metrics.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = ""
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				missing = w
			}
		}
		return missing == ""
	}) {
		t.Fatalf("metrics lack %q", missing)
	}
}
