package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
)

const (
	unitFile      = "dist/backscatter-milter.service"
	exampleConfig = "dist/config.example.yaml"
	installedBin  = "/usr/local/bin/backscatter-milter"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit, with the
// binary path pointed at an executable that exists (verify checks it).
// Any warning fails the test, not only errors.
func TestSystemdUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("BACKSCATTER_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("systemd-analyze not found and BACKSCATTER_REQUIRE_INTEGRATION=1: install systemd")
		}
		t.Skip("systemd-analyze not found: unit not verified (install systemd to run this test)")
	}
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart="+installedBin+" serve") {
		t.Fatalf("unit does not start %s serve", installedBin)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "backscatter-milter")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "backscatter-milter.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), installedBin, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitSandbox pins the sandboxing the unit promises, so a later
// edit cannot drop it silently.
func TestSystemdUnitSandbox(t *testing.T) {
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(unit), "\n")
	for _, want := range []string{
		"User=backscatter-milter", "RuntimeDirectory=backscatter-milter", "StateDirectory=backscatter-milter",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP $MAINPID", "PrivateTmp=yes",
		"ProtectHome=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "CapabilityBoundingSet=",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

// TestExampleConfigLoads: the annotated example is valid as shipped and
// names every key of the built-in defaults.
func TestExampleConfigLoads(t *testing.T) {
	for _, k := range os.Environ() {
		if strings.HasPrefix(k, config.EnvPrefix+"_") {
			t.Setenv(strings.SplitN(k, "=", 2)[0], "")
		}
	}
	cfg, err := config.Load(exampleConfig, nil)
	if err != nil {
		t.Fatalf("config.Load(%s): %v", exampleConfig, err)
	}
	if cfg.Mode != "observe" {
		t.Errorf("the example should start in observe mode, has %q", cfg.Mode)
	}
	example, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	have := leafKeys(t, example)
	for _, k := range leafKeys(t, config.Defaults) {
		if !slices.Contains(have, k) {
			t.Errorf("example config lacks key %s", k)
		}
	}
}

// leafKeys lists the dotted keys of a YAML document down to values (lists
// and empty maps are values).
func leafKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(prefix+k+".", sub)
				continue
			}
			out = append(out, prefix+k)
		}
	}
	walk("", m)
	return out
}
