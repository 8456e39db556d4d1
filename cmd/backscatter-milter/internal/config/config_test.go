package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEmbeddedDefaultsAreValid(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatalf("embedded defaults: %v", err)
	}
	if c.Listen != DefaultSocket || c.DNSBL.Timeout.D() != 2*time.Second || c.SentLog.TTL.D() != 30*24*time.Hour {
		t.Errorf("defaults not read: %+v", c)
	}
	comp, ps := c.Compile()
	if len(ps) > 0 || len(comp.Zones) != 1 || comp.Zones[0].Name != "ips.backscatterer.org" || comp.Zones[0].Senders != "bounce" {
		t.Fatalf("compile: %v %+v", ps, comp.Zones)
	}
}

func TestEveryBadKeyIsReported(t *testing.T) {
	p := write(t, `
listen: "tcp-ish:nowhere"
mode: enforcing
treshold: 5
local_domains: [example.org, "not a domain"]
trusted_networks: [10.0.0.0/33]
dnsbl:
  timeout: soon
  zones:
    - ips.backscatterer.org=127.0.0.2*six
    - { zone: zen.example, filter: "127.0.0.[2..1]" }
thresholds: { tag: 3, quarantine: 2, reject: 10 }
weights: { "bounce:unheard-of": 3 }
internal_bounce: { listen: "unix:/run/x.sock", action: reject }
ndr_suppression: { require: always }
sent_log: { backend: sqlite }
log: { format: xml }
`)
	_, err := Load(p, nil)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not a problem list", err)
	}
	want := []string{"listen", "mode", "treshold", "local_domains[1]", "trusted_networks[0]", "dnsbl.timeout",
		"dnsbl.zones[0]", "dnsbl.zones[1]", "thresholds.quarantine", "weights.bounce:unheard-of",
		"internal_bounce.action", "ndr_suppression.require", "sent_log.backend", "log.format"}
	got := map[string]string{}
	for _, p := range ps {
		got[p.Key] = p.Msg
	}
	for _, k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("no problem reported for %s; got:\n%v", k, err)
		}
	}
	if !strings.Contains(got["dnsbl.zones[0]"], `"six" is not an integer`) {
		t.Errorf("zone error does not explain: %q", got["dnsbl.zones[0]"])
	}
	if !strings.Contains(got["internal_bounce.action"], "retry or lose the bounce log") {
		t.Errorf("internal bounce reject not explained: %q", got["internal_bounce.action"])
	}
}

func TestBATVKeyFileChecks(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.key")
	os.WriteFile(open, []byte("0123456789abcdef0123456789abcdef\n"), 0o644)
	p := write(t, `
local_domains: [example.org]
batv: { enabled: true, keys: [{ id: 0, file: `+open+` }, { id: 1, file: /nonexistent/batv.key }] }
`)
	_, err := Load(p, nil)
	var ps Problems
	errors.As(err, &ps)
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key+": "+p.Msg)
	}
	joined := strings.Join(keys, "\n")
	if !strings.Contains(joined, "batv.keys[0].file") || !strings.Contains(joined, "batv.keys[1].file") {
		t.Fatalf("key file problems not reported:\n%s", joined)
	}
	if strings.Contains(joined, "0123456789abcdef") {
		t.Fatal("a key appeared in an error")
	}
	os.Chmod(open, 0o600)
	p = write(t, "local_domains: [example.org]\nbatv: { enabled: true, keys: [{ id: 0, file: "+open+" }] }\n")
	c, err := Load(p, nil)
	if err != nil {
		t.Fatalf("private key file refused: %v", err)
	}
	comp, _ := c.Compile()
	if len(comp.BATVKeys) != 1 {
		t.Fatalf("key not loaded")
	}
}

func TestOverrides(t *testing.T) {
	p := write(t, "mode: observe\ndnsbl: { timeout: 1s }\nbatv: { lifetime: 14d }\n")
	t.Setenv("BACKSCATTER_DNSBL_TIMEOUT", "750ms")
	t.Setenv("BACKSCATTER_LOCAL_DOMAINS", "a.example,b.example")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse([]string{"--listen", "unix:/tmp/x.sock", "--log-format", "console"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != "observe" || c.DNSBL.Timeout.D() != 750*time.Millisecond || c.Listen != "unix:/tmp/x.sock" ||
		c.Log.Format != "console" || c.BATV.Lifetime.D() != 14*24*time.Hour || len(c.LocalDomains) != 2 {
		t.Fatalf("overrides not applied: mode %s timeout %s listen %s format %s lifetime %s domains %v",
			c.Mode, c.DNSBL.Timeout, c.Listen, c.Log.Format, c.BATV.Lifetime, c.LocalDomains)
	}
}

func TestBadYAMLAndMissingFile(t *testing.T) {
	if _, err := Load(write(t, "listen: [unclosed\n"), nil); err == nil || !strings.Contains(err.Error(), "YAML") {
		t.Errorf("bad YAML: %v", err)
	}
	if _, err := Load("/nonexistent/config.yaml", nil); err == nil {
		t.Error("missing file accepted")
	}
}

func TestStructuredZones(t *testing.T) {
	p := write(t, `
dnsbl:
  zones:
    - { zone: list.dnswl.example, filter: "127.0.[0..255].[1..3]", weight: -3 }
    - bl.example=127.0.0.[2..11]*3 senders=any
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	comp, _ := c.Compile()
	if len(comp.Zones) != 2 || comp.Zones[0].Weight != -3 || comp.Zones[1].Weight != 3 {
		t.Fatalf("zones %+v", comp.Zones)
	}
}
