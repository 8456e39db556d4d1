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
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

const (
	unitFile      = "dist/backscatter-milter.service"
	exampleConfig = "dist/config.example.yaml"
	installedBin  = "/usr/local/bin/backscatter-milter"
	// debianSocket is where the shipped configuration listens: inside the
	// queue directory of Debian's chrooted Postfix.
	debianSocket = "/var/spool/postfix/backscatter-milter/milter.sock"
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
	// The man pages named in Documentation= are installed by the package,
	// not here: TestDebianPackage verifies the installed unit with them.
	cmd := exec.Command(sa, "verify", "--man=no", path)
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
		"ReadWritePaths=-" + filepath.Dir(debianSocket), "StateDirectoryMode=0700", "LogsDirectory=backscatter-milter",
		// Debian's Postfix runs in its default instance, postfix@-.service.
		"Before=postfix@-.service postfix.service sendmail.service",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
}

// TestExampleConfigLoads: the shipped configuration (the package's
// conffile, make install's config.yaml) is valid as it is, in observe mode,
// listening where a chrooted Postfix reaches it, with nothing else live; and
// with every example uncommented it is valid too and names every key of the
// built-in defaults.
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
	if cfg.Listen != "unix:"+debianSocket {
		t.Errorf("the example listens on %q, want unix:%s", cfg.Listen, debianSocket)
	}
	example, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	var live map[string]any
	if err := yaml.Unmarshal(example, &live); err != nil {
		t.Fatal(err)
	}
	for k := range live {
		if !slices.Contains([]string{"listen", "socket", "mode", "log"}, k) {
			t.Errorf("example value %s is live: comment it out", k)
		}
	}

	uncommented := uncommentExamples(example)
	// The example's key file does not exist here: point it at one that does.
	keyFile, _ := writeKey(t)
	uncommented = []byte(strings.ReplaceAll(string(uncommented), "/etc/backscatter-milter/batv.key", keyFile))
	path := filepath.Join(t.TempDir(), "uncommented.yaml")
	if err := os.WriteFile(path, uncommented, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, nil); err != nil {
		t.Errorf("the example with every value uncommented is not valid: %v\n%s", err, uncommented)
	}
	have := leafKeys(t, uncommented)
	for _, k := range leafKeys(t, config.Defaults) {
		// An empty map in the defaults (weights: {}) is shown with an entry.
		if !slices.ContainsFunc(have, func(h string) bool { return h == k || strings.HasPrefix(h, k+".") }) {
			t.Errorf("example config lacks key %s", k)
		}
	}
}

// uncommentExamples removes the "#" of example lines: a commented section
// ("#dnsbl:") and the indented lines that follow it ("#  timeout: 2s"),
// and indented commented lines inside a live section. Prose comments
// ("# text") end a section and stay comments.
func uncommentExamples(doc []byte) []byte {
	var out []string
	inBlock := false
	for _, l := range strings.Split(string(doc), "\n") {
		switch {
		case inBlock && strings.HasPrefix(l, "#  "):
			l = l[1:]
		case l == "" || strings.HasPrefix(l, "# "):
			inBlock = false
		case len(l) > 1 && l[0] == '#' && l[1] != ' ' && l[1] != '#' && l[1] != '-':
			l, inBlock = l[1:], true
		case len(l) > 0 && l[0] != '#' && l[0] != ' ':
			inBlock = true // a live section
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n"))
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

// TestMakeInstallWithoutGo: `make install` copies what `make build` built
// and never compiles, so it works under sudo, whose PATH has no Go.
func TestMakeInstallWithoutGo(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not found")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "built-binary")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho built\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	cmd := exec.Command("make", "-s", "-C", "../..", "install", "BIN="+bin, "DESTDIR="+root, "MAN_OUT="+filepath.Join(dir, "no-man"))
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make install without Go on PATH: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(root, "usr/local/bin/backscatter-milter"))
	if err != nil || string(got) != "#!/bin/sh\necho built\n" {
		t.Errorf("installed binary is not the built one: %q %v", got, err)
	}
	for _, f := range []string{"etc/systemd/system/backscatter-milter.service", "etc/backscatter-milter/config.yaml",
		"etc/tmpfiles.d/backscatter-milter.conf", "etc/logrotate.d/backscatter-milter",
		"usr/local/share/bash-completion/completions/backscatter-milter", "usr/local/share/doc/backscatter-milter/postfix.md"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("not installed: %s", f)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/backscatter-milter.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/backscatter-milter serve") {
		t.Errorf("unit does not start the installed binary:\n%s", unit)
	}

	missing := exec.Command("make", "-s", "-C", "../..", "install", "BIN="+filepath.Join(dir, "absent"), "DESTDIR="+root)
	missing.Env = cmd.Env
	out, err = missing.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "run 'make build' first") {
		t.Errorf("install without a built binary: %v\n%s", err, out)
	}
}

// TestBashCompletion sources the shipped completion and completes against
// the real binary: commands, subcommands and flags come from the program.
func TestBashCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	dir := t.TempDir()
	if err := os.Symlink(testBinary(t), filepath.Join(dir, "backscatter-milter")); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		script := `source dist/backscatter-milter.bash-completion
COMP_WORDS=(backscatter-milter "$@"); COMP_CWORD=$#
_backscatter_milter
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, append([]string{"-c", script, "bash"}, words...)...)
		cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("completion of %q: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{""}, []string{"serve", "config", "report", "version"}},
		{[]string{"con"}, []string{"config"}},
		{[]string{"config", ""}, []string{"check", "show"}},
		{[]string{"batv", ""}, []string{"sign", "verify"}},
		{[]string{"config", "check", "--"}, []string{"--as", "--config"}},
		{[]string{"serve", "--l"}, []string{"--listen", "--log-format", "--log-level"}},
	} {
		got := complete(c.words...)
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("completing %q: %v lacks %s", c.words, got, w)
			}
		}
	}
}

// TestDocsPostfixSnippetsAreTested: every main.cf line in README's "Attach
// it to Postfix" and docs/postfix.md's "A production setup" is a setting
// the integration tests run: the milter settings of testdata/mta/postfix
// (milter.cf, and the fixed lines of main.cf.tmpl), the socket name
// TestDebianPackage gives its chrooted Postfix, mtatest's default
// milter_default_action and TestPostfixEndToEnd's recipient_delimiter.
func TestDocsPostfixSnippetsAreTested(t *testing.T) {
	tested := map[string]string{
		"smtpd_milters":         debPostfixMilter,
		"milter_default_action": "tempfail",
		"recipient_delimiter":   "+",
	}
	for _, f := range []string{"../../testdata/mta/postfix/milter.cf", "../../testdata/mta/postfix/main.cf.tmpl"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range mtatest.ParseMainCF(string(b)) {
			if !strings.Contains(v, "{{") {
				tested[k] = v
			}
		}
	}
	for _, doc := range []struct{ file, section string }{
		{"../../README.md", "## Attach it to Postfix"},
		{"../../docs/postfix.md", "## A production setup"},
	} {
		b, err := os.ReadFile(doc.file)
		if err != nil {
			t.Fatal(err)
		}
		_, after, ok := strings.Cut(string(b), "\n"+doc.section+"\n")
		if !ok {
			t.Fatalf("%s has no section %q", doc.file, doc.section)
		}
		_, block, _ := strings.Cut(after, "```\n")
		block, _, _ = strings.Cut(block, "```")
		settings := mtatest.ParseMainCF(block)
		if len(settings) < 3 {
			t.Fatalf("%s %q: no main.cf block found:\n%s", doc.file, doc.section, block)
		}
		for k, v := range settings {
			if tv, ok := tested[k]; !ok || tv != v {
				t.Errorf("%s %q: %s = %s is not what the tests run (%q)", doc.file, doc.section, k, v, tv)
			}
		}
	}
}
