package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
)

// testMilter is the real daemon (config file → config.Load → newDaemon)
// running in the test process, logging verdicts to a file.
type testMilter struct {
	d       *daemon
	Spec    string // milter address for the MTA
	ISpec   string // internal-bounce role address, if configured
	LogFile string
	Dir     string
}

// startMilter writes yaml (with LISTEN, ILISTEN and DIR placeholders
// replaced) to a config file and starts the daemon from it.
func startMilter(t *testing.T, yaml string) *testMilter {
	t.Helper()
	dir := mtatest.ShortDir(t) // unix socket paths must stay short
	m := &testMilter{Dir: dir, Spec: "unix:" + filepath.Join(dir, "m.sock"), ISpec: "unix:" + filepath.Join(dir, "ib.sock"),
		LogFile: filepath.Join(dir, "milter.log")}
	yaml = strings.NewReplacer("LISTEN", m.Spec, "ILISTEN", m.ISpec, "DIR", dir).Replace(yaml)
	base := "log: { format: json, level: info, file: " + m.LogFile + " }\nmetrics: { listen: \"127.0.0.1:0\" }\nshutdown_timeout: 5s\n"
	if !strings.Contains(yaml, "sent_log:") {
		base += "sent_log: { backend: embedded, path: " + filepath.Join(dir, "sent.db") + " }\n"
	}
	if !regexp.MustCompile(`(?m)^listen:`).MatchString(yaml) {
		base += "listen: " + m.Spec + "\n"
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(base+yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("test config: %v\n%s", err, base+yaml)
	}
	comp, _ := cfg.Compile()
	log, err := newLogger(cfg.Log)
	if err != nil {
		t.Fatal(err)
	}
	m.d, err = newDaemon(cfg, comp, log)
	if err != nil {
		t.Fatalf("start milter: %v", err)
	}
	// Postfix's cleanup and smtpd run as the postfix user: let them reach the socket.
	for _, s := range []string{m.Spec, m.ISpec} {
		os.Chmod(strings.TrimPrefix(s, "unix:"), 0o666)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(m.stop)
	return m
}

func (m *testMilter) stop() { m.d.shutdown() }

// idle reports whether no MTA session is open on any of the milter's listeners.
func (m *testMilter) idle() bool {
	for _, s := range m.d.servers {
		if s.Active() != 0 {
			return false
		}
	}
	return true
}

// verdict is a decoded verdict log line, its fields as logged (strings).
type verdict struct{ report.RawLine }

func (v verdict) has(name string) bool {
	for _, e := range v.Evidence {
		if e.Name == name {
			return true
		}
	}
	return false
}

func (v verdict) String() string {
	b, _ := json.Marshal(v)
	return string(b)
}

// verdicts returns the verdict lines logged so far.
func (m *testMilter) verdicts(t *testing.T) []verdict {
	t.Helper()
	f, err := os.Open(m.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []verdict
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v verdict
		if json.Unmarshal(sc.Bytes(), &v) == nil && v.Msg == "verdict" {
			out = append(out, v)
		}
	}
	return out
}

// waitVerdict waits for a verdict line matching cond.
func (m *testMilter) waitVerdict(t *testing.T, what string, cond func(verdict) bool) verdict {
	t.Helper()
	var found verdict
	if !await.True(20*time.Second, func() bool {
		for _, v := range m.verdicts(t) {
			if cond(v) {
				found = v
				return true
			}
		}
		return false
	}) {
		raw, _ := os.ReadFile(m.LogFile)
		t.Fatalf("no verdict line for %s; log:\n%s", what, raw)
	}
	return found
}

// startRbldnsd serves zone (ip4set data) as name on a loopback port.
func startRbldnsd(t *testing.T, name, data string) string {
	t.Helper()
	mtatest.Require(t, "rbldnsd")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "zone"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	bin, _ := exec.LookPath("rbldnsd")
	if bin == "" {
		bin = "/usr/sbin/rbldnsd"
	}
	cmd := exec.Command(bin, "-n", "-a", "-t", "60", "-b", "127.0.0.1/"+strconv.Itoa(port), "-w", dir, name+":ip4set:zone")
	out, _ := os.Create(filepath.Join(dir, "rbldnsd.out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("rbldnsd: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until it answers.
	if await.True(10*time.Second, func() bool { return dnsAnswers(addr, "2.0.0.127."+name) }) {
		return addr
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "rbldnsd.out"))
	t.Fatalf("rbldnsd did not answer on %s: %s", addr, raw)
	return ""
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		// The same port must be free for TCP too (rbldnsd is UDP only, but
		// the resolver falls back to TCP on truncation).
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func dnsAnswers(addr, name string) bool {
	r, err := resolver.New(addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _, err = r.LookupA(ctx, name)
	return err == nil
}

// dnsZone serves the SPF records of the test domains: pass.test allows the
// untrusted loopback clients, fail.test allows nobody.
const dnsZone = `
pass.test. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
fail.test. 300 IN TXT "v=spf1 -all"
remote.test. 300 IN TXT "v=spf1 ?all"
`

// testPolicy is the configuration the end-to-end tests share: domains are
// ours, only 127.0.0.1 is trusted (the test clients come from 127.0.0.2),
// SPF records come from an in-process DNS server, and no DNSBL is asked.
func testPolicy(t *testing.T, domains ...string) string {
	t.Helper()
	if len(domains) == 0 {
		domains = []string{"example.org"}
	}
	dns := dnstest.Start(t, dnsZone)
	return "local_domains: [" + strings.Join(domains, ", ") + "]\ntrusted_networks: [127.0.0.1/32]\nresolver: " +
		dns.Addr + "\ndnsbl: { zones: [] }\n"
}

// batvPolicy turns BATV on for example.org with a fresh key, and returns the
// configuration line and a signer with the same key.
func batvPolicy(t *testing.T) (string, *batv.Signer) {
	t.Helper()
	keyFile, signer := writeKey(t)
	return "batv: { enabled: true, keys: [{ id: 0, file: " + keyFile + " }], domains: [example.org] }\n", signer
}

// writeKey writes a BATV key file (mode 0600) and returns its path and a signer.
func writeKey(t *testing.T) (string, *batv.Signer) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "batv.key")
	secret := []byte("e2e-test-secret-0123456789abcdef")
	if err := os.WriteFile(p, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, &batv.Signer{Keys: []batv.Key{{ID: 0, Secret: secret}}}
}

// tempfailed reports whether the MTA answered some command of the
// transaction with 451 and the enhanced code (the milter-down answer).
func tempfailed(mr mtatest.MessageResult, enhanced string) bool {
	for _, c := range append([]mtatest.Reply{mr.Mail, mr.Data, mr.Final}, mr.Rcpts...) {
		if c.Code == 451 && strings.Contains(c.Text, enhanced) {
			return true
		}
	}
	return false
}

// dsnFor is a bounce to to of an original with msgID that passed relay.
func dsnFor(to, msgID, relayName, relayIP string) []byte {
	return mtatest.DSN(to, "dsn-"+msgID, msgID, relayName, relayIP)
}

func plainMessage(from, to, msgID, extra, body string) []byte {
	return []byte("From: " + from + "\nTo: " + to + "\nSubject: test\nMessage-ID: <" + msgID + ">\n" + extra + "\n" + body)
}
