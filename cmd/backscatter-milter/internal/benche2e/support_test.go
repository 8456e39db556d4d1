//go:build benche2e

package benche2e

// What the end-to-end benchmarks share: the gate, the do-nothing milter (this
// test binary run again as a child), the real daemon as a child process, a
// DNSBL and SPF zone served by rbldnsd, /proc readers for CPU and memory,
// the messages, and the writer that puts a table into docs/performance.md.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
	"github.com/backscatter-milter/backscatter-milter/internal/resolver"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
)

const (
	// gateEnv must be 1 for the benchmarks to run: they take minutes and
	// load the machine, so make test skips them.
	gateEnv = "BACKSCATTER_BENCH_E2E"
	// docEnv names the Markdown file whose marked sections receive the
	// result tables (make sets it to docs/performance.md).
	docEnv = "BACKSCATTER_BENCH_DOC"
	// noteEnv is a free-text note for the machine description: what else
	// was running.
	noteEnv = "BACKSCATTER_BENCH_NOTE"
	// noopEnv makes this test binary serve the do-nothing milter on the
	// given TCP address instead of running tests; with noopPlainEnv=1 on a
	// plain net.Listen listener, else on milter.Listen's (quick ACK).
	noopEnv      = "BACKSCATTER_BENCH_NOOP_MILTER"
	noopPlainEnv = "BACKSCATTER_BENCH_NOOP_PLAIN"
	// noopOursEnv=1 makes the do-nothing milter negotiate milter.Protocol,
	// backscatter-milter's own flags, instead of noopProtocol.
	noopOursEnv = "BACKSCATTER_BENCH_NOOP_OURS"
	// profileEnv names a file for a CPU profile of backscatter-milter (c)
	// over the whole throughput run (go tool pprof BINARY FILE).
	profileEnv = "BACKSCATTER_BENCH_PROFILE"
	// compareEnv names another backscatter-milter binary (an earlier
	// commit's) to run as configuration (d), compareNameEnv its label.
	compareEnv     = "BACKSCATTER_BENCH_COMPARE_BIN"
	compareNameEnv = "BACKSCATTER_BENCH_COMPARE_NAME"
	// bodyKBEnv sets the ordinary message's body size in KB (default 5).
	bodyKBEnv = "BACKSCATTER_BENCH_BODY_KB"
)

// noopProtocol is what the reference do-nothing milter negotiates: no reply
// at every stage where it can only continue (the set DESIGN.md measured:
// connect, HELO, headers, end of headers, unknown, DATA) and SMFIP_SKIP, so
// that it asks for no more recipients, headers or body chunks once it may.
const noopProtocol = gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoHeaderReply |
	gomilter.OptNoEOHReply | gomilter.OptNoUnknownReply | gomilter.OptNoDataReply | gomilter.OptSkip

func TestMain(m *testing.M) {
	if addr := os.Getenv(noopEnv); addr != "" {
		os.Exit(serveNoop(addr))
	}
	os.Exit(m.Run())
}

// serveNoop is the child process: go-milter's NoOpMilter with the no-reply
// flags, until killed. By default it listens like backscatter-milter does
// (milter.Listen acknowledges at once), so that the comparison is about
// what the milters do, not about delayed ACKs.
func serveNoop(addr string) int {
	var ln net.Listener
	var err error
	if os.Getenv(noopPlainEnv) == "1" {
		ln, err = net.Listen("tcp", addr)
	} else {
		ln, err = milter.Listen("inet:"+addr, milter.SocketOptions{})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	protocol := noopProtocol
	if os.Getenv(noopOursEnv) == "1" {
		protocol = milter.Protocol
	}
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }),
		gomilter.WithProtocols(protocol),
		gomilter.WithActions(0),
	)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, gomilter.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// requireGate skips unless BACKSCATTER_BENCH_E2E=1.
func requireGate(t *testing.T) {
	t.Helper()
	if os.Getenv(gateEnv) != "1" {
		t.Skipf("end-to-end benchmark: set %s=1 to run it (make bench-e2e); it takes minutes and needs root, Postfix, Sendmail and rbldnsd", gateEnv)
	}
}

// envInt reads a positive integer setting with a default.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// child is a milter running as a process of its own, so that its CPU time
// and memory can be read from /proc.
type child struct {
	name string
	cmd  *exec.Cmd
	Spec string // milter address in Postfix form
	out  *bytes.Buffer
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// startNoop runs this test binary again as the do-nothing milter; plain:
// without the quick-ACK listener; ours: with backscatter-milter's protocol
// flags (milter.Protocol) rather than the reference set.
func startNoop(t *testing.T, plain bool, ours ...bool) *child {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), noopEnv+"="+addr)
	if plain {
		cmd.Env = append(cmd.Env, noopPlainEnv+"=1")
	}
	if len(ours) > 0 && ours[0] {
		cmd.Env = append(cmd.Env, noopOursEnv+"=1")
	}
	return startChild(t, "do-nothing milter", cmd, "inet:"+addr, addr)
}

// buildDaemon compiles the real backscatter-milter binary once per test,
// with the flags go test uses so that the build cache serves it.
func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "backscatter-milter")
	goBin, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("go command: %v", err)
	}
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// daemonConfig is the default configuration in enforce mode with the
// settings a site must give (local domains, trusted networks, its resolver)
// and a loopback DNSBL in place of ips.backscatterer.org. listen is the
// milter address; resolverAddr serves backscatter.test and pass.test.
//
// It is production-like: BATV on (signing outbound, checking bounces), NDR
// suppression on (the default: an SPF check per inbound message, and the
// NOTIFY=NEVER rewrite for the senders whose SPF fails), one DNSBL zone.
func daemonConfig(dir, listen, resolverAddr string) string {
	return `listen: ` + listen + `
mode: enforce
local_domains: [example.org]
trusted_networks: [127.0.0.1/32]
relays: [mx1.example.org, 192.0.2.0/24]
resolver: ` + resolverAddr + `
dnsbl: { zones: ["backscatter.test=127.0.0.2*6 senders=bounce"] }
batv: { enabled: true, keys: [{ id: 0, file: ` + filepath.Join(dir, "batv.key") + ` }] }
sent_log: { backend: embedded, path: ` + filepath.Join(dir, "sent.db") + ` }
log: { format: json, level: info, file: ` + filepath.Join(dir, "milter.log") + ` }
metrics: { listen: "127.0.0.1:0" }
`
}

// startDaemon runs the real daemon with daemonConfig on listen
// ("inet:127.0.0.1:PORT" or "unix:/path").
// extraArgs go to serve (--cpu-profile).
func startDaemon(t *testing.T, bin, listen, resolverAddr string, extraArgs ...string) *child {
	t.Helper()
	dir := mtatest.ShortDir(t)
	if listen == "" {
		listen = "unix:" + filepath.Join(dir, "m.sock")
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(daemonConfig(dir, listen, resolverAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "batv.key"), batvSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--config", cfg}, extraArgs...)...)
	_, addr, _ := strings.Cut(listen, ":")
	return startChild(t, "backscatter-milter", cmd, listen, addr)
}

func startChild(t *testing.T, name string, cmd *exec.Cmd, spec, dialAddr string) *child {
	t.Helper()
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := &child{name: name, cmd: cmd, Spec: spec, out: out}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	network := "tcp"
	if strings.HasPrefix(spec, "unix:") {
		network = "unix"
	}
	if !await.True(20*time.Second, func() bool {
		if conn, err := net.DialTimeout(network, dialAddr, time.Second); err == nil {
			conn.Close()
			return true
		}
		select {
		case <-done:
			t.Fatalf("%s exited: %s", name, out)
		default:
		}
		return false
	}) {
		t.Fatalf("%s does not listen on %s: %s", name, spec, out)
	}
	if network == "unix" {
		// Postfix's smtpd runs as the postfix user.
		os.Chmod(dialAddr, 0o666)
	}
	return c
}

// startDNS serves, with rbldnsd on a loopback port: backscatter.test, a
// backscatter list in ip4set form listing 127.0.0.2 (which its health check
// also requires), the SPF record of pass.test allowing loopback and that of
// fail.test allowing nobody.
func startDNS(t *testing.T) string {
	t.Helper()
	mtatest.Require(t, "rbldnsd")
	dir := mtatest.ShortDir(t)
	files := map[string]string{
		"bl":      ":127.0.0.2:Listed as a backscatter source\n127.0.0.2\n",
		"spf":     "@ 300 TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\nmail 300 TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n",
		"spffail": "@ 300 TXT \"v=spf1 -all\"\n",
	}
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := exec.LookPath("rbldnsd")
	if err != nil {
		bin = "/usr/sbin/rbldnsd"
	}
	port := mtatest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "-n", "-a", "-t", "300", "-b", "127.0.0.1/"+strconv.Itoa(port), "-w", dir,
		"backscatter.test:ip4set:bl", "pass.test:generic:spf", "fail.test:generic:spffail")
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("rbldnsd: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r, err := resolver.New(addr, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var errA, errT error
	var txt []string
	if !await.True(10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _, errA = r.LookupA(ctx, "2.0.0.127.backscatter.test")
		txt, _, errT = r.LookupTXT(ctx, "pass.test")
		return errA == nil && errT == nil && len(txt) == 1
	}) {
		t.Fatalf("rbldnsd on %s does not answer (A: %v, TXT %q: %v): %s", addr, errA, txt, errT, out)
	}
	return addr
}

// cpuTicks returns utime+stime of a process in clock ticks (1/100 s).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields count from after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return u + s, nil
}

// ticksPerSecond is USER_HZ, 100 on every Linux architecture Go supports.
const ticksPerSecond = 100

// memKB returns Rss and Pss of a process from smaps_rollup, in KiB.
func memKB(pid int) (rss, pss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "Rss":
			rss = n
		case "Pss":
			pss = n
		}
	}
	return rss, pss, sc.Err()
}

// statusKB returns one field (VmHWM, VmRSS) of /proc/PID/status in KiB.
func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// systemBusy reads the machine's total and idle CPU ticks, to tell how busy
// it was during a run.
func systemBusy() (total, idle int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, s := range f[1:] {
		n, _ := strconv.ParseInt(s, 10, 64)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return total, idle
}

// machine describes the host for the tables.
func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := statusLine("/proc/meminfo", "MemTotal")
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	pf, _ := exec.Command("/usr/sbin/postconf", "-d", "-h", "mail_version").Output()
	s := fmt.Sprintf("%d CPUs (%s), %s RAM, Linux %s, %s, Postfix %s; load average at start %s",
		runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)), runtime.Version(),
		strings.TrimSpace(string(pf)), strings.Join(strings.Fields(string(load))[:3], " "))
	if n := os.Getenv(noteEnv); n != "" {
		s += ". Also running: " + n
	}
	return s
}

func statusLine(path, field string) string {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

// writeSection replaces the text between "<!-- NAME:begin -->" and
// "<!-- NAME:end -->" in the file named by BACKSCATTER_BENCH_DOC.
func writeSection(t *testing.T, name, text string) {
	t.Helper()
	path := os.Getenv(docEnv)
	if path == "" {
		t.Logf("%s not set: results not written to a file", docEnv)
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v", docEnv, err)
	}
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	i, j := bytes.Index(b, []byte(begin)), bytes.Index(b, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("%s has no %s … %s markers", path, begin, end)
	}
	var out bytes.Buffer
	out.Write(b[:i+len(begin)])
	out.WriteString("\n" + text + "\n")
	out.Write(b[j:])
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("results written to %s (section %s)", path, name)
}

// stats summarises samples: median, min, max.
type stats struct{ med, lo, hi float64 }

func summarize(xs []float64) stats {
	if len(xs) == 0 {
		return stats{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{med: m, lo: s[0], hi: s[len(s)-1]}
}

// percentile returns the p-th percentile (0..100) by nearest rank.
func percentile(xs []float64, p float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	k := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(k, len(s)-1))]
}

// Messages. The ordinary one is 5 KB of text from a sender whose SPF passes;
// the DSN is an RFC 3464 report whose returned header names relay, a host
// of ours (mx1.example.org, 192.0.2.10) or a stranger's.

// ordinaryKB is the size of the ordinary message's body: 5 KB, or
// $BACKSCATTER_BENCH_BODY_KB (make bench-e2e BENCH_BODY_KB=200, to weigh
// body no-reply against skip on larger mail).
var ordinaryKB = func() int {
	if n, err := strconv.Atoi(os.Getenv(bodyKBEnv)); err == nil && n > 0 {
		return n
	}
	return 5
}()

var ordinaryBody = func() string {
	line := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 2)[:70] + "\n"
	size := ordinaryKB * 1024
	return strings.Repeat(line, size/len(line)+1)[:size]
}()

func ordinaryMessage(id string) []byte { return ordinaryMessageFrom("alice@pass.test", id) }

func ordinaryMessageFrom(from, id string) []byte {
	return []byte("From: <" + from + ">\nTo: bob@example.org\nSubject: report " + id +
		"\nDate: Tue, 24 Nov 2026 00:00:00 +0000\nMessage-ID: <" + id + "@" + policyDomain(from) + ">\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n" + ordinaryBody)
}

func dsnMessage(id, relayName, relayIP string) []byte {
	return mtatest.DSN("bob@example.org", "dsn-"+id+"@mx.remote.test", "orig-"+id+"@example.org", relayName, relayIP)
}

// batvSecret is the daemon's BATV key; taggedRcpt signs with it, as our
// outbound mail would have been signed.
var batvSecret = []byte("bench-batv-secret-0123456789abcdef")

func taggedRcpt(addr string) string {
	s := &batv.Signer{Keys: []batv.Key{{ID: 0, Secret: batvSecret}}}
	tagged, err := s.Sign(addr)
	if err != nil {
		panic(err)
	}
	return tagged
}

func policyDomain(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}
