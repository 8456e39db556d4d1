//go:build benche2e

package benche2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// serveInProcess runs a milter.Server with a DNS-free engine on ln until the
// test ends: the same server code as the daemon, so that the listener is
// the only difference between two of them.
func serveInProcess(t *testing.T, ln net.Listener) string {
	t.Helper()
	s := policy.DefaultSettings()
	s.LocalDomains = []string{"example.org"}
	s.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	eng := &policy.Engine{Settings: s}
	srv := milter.NewServer(milter.Options{Engine: func() *policy.Engine { return eng }, Log: zap.NewNop()})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, milter.ErrServerClosed) {
			t.Errorf("milter server: %v", err)
		}
	})
	return "inet:" + ln.Addr().String()
}

// latencyConfig is one MTA instance in a latency comparison.
type latencyConfig struct {
	name, short string
	spec        string // milter address; "" for none
	smtpAddr    string // set once the MTA runs
	ms          []float64
}

// measureLatency sends n messages per configuration, one per SMTP session
// (timed from connect to the QUIT reply), one at a time, alternating the
// configurations message by message; the first configuration is the
// reference of the ratios. It returns the Markdown table.
func measureLatency(t *testing.T, mta string, configs []*latencyConfig, n int) (string, map[string]float64) {
	t.Helper()
	send := func(c *latencyConfig, i int) time.Duration {
		id := fmt.Sprintf("lat-%s-%d", c.short, i)
		start := time.Now()
		r, err := mtatest.SendSession(c.smtpAddr, mtatest.Session{LocalIP: cleanIP, Helo: "mail.pass.test", Messages: []mtatest.SMTPMessage{
			{From: "alice@pass.test", To: []string{"bob@example.org"}, Data: ordinaryMessage(id)}}})
		d := time.Since(start)
		if err != nil || len(r.Messages) != 1 || !r.Messages[0].Accepted() {
			t.Fatalf("%s, %s: message %d: %v %+v", mta, c.name, i, err, r)
		}
		return d
	}
	for _, c := range configs { // warm up: first connections, DNS cache
		for i := range 3 {
			send(c, -1-i)
		}
	}
	for i := range n {
		for k := range configs {
			c := configs[(k+i)%len(configs)]
			c.ms = append(c.ms, float64(send(c, i).Microseconds())/1000)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s. Machine: %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	fmt.Fprintf(&b, "%d messages per configuration through %s, one per SMTP session (connect to QUIT reply), sent one at a time, "+
		"configurations alternated message by message; 5 KB message from a client outside the trusted networks.\n\n", n, mta)
	fmt.Fprintf(&b, "| %s with | median ms | p90 ms | min–max ms | median / %s |\n| --- | --- | --- | --- | --- |\n", mta, configs[0].name)
	base := summarize(configs[0].ms).med
	ratio := map[string]float64{}
	for _, c := range configs {
		s := summarize(c.ms)
		ratio[c.short] = s.med / base
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f–%.1f | %.2f |\n", c.name, s.med, percentile(c.ms, 90), s.lo, s.hi, ratio[c.short])
	}
	return b.String(), ratio
}

// latencyMilters starts the milters every latency comparison uses: the
// daemon on TCP and on a unix socket, and the same milter.Server code
// in-process on TCP with and without the quick-ACK listener.
func latencyMilters(t *testing.T) []*latencyConfig {
	t.Helper()
	dnsAddr := startDNS(t)
	bin := buildDaemon(t)
	tcpDaemon := startDaemon(t, bin, fmt.Sprintf("inet:127.0.0.1:%d", mtatest.FreePort(t)), dnsAddr)
	unixDaemon := startDaemon(t, bin, "", dnsAddr)
	quick, err := milter.Listen("inet:127.0.0.1:0", milter.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	configs := []*latencyConfig{
		{name: "no milter", short: "none"},
		{name: "backscatter-milter, unix socket", short: "unix", spec: unixDaemon.Spec},
		{name: "backscatter-milter, TCP (quick ACK, the default)", short: "tcp", spec: tcpDaemon.Spec},
		{name: "milter.Server in-process, TCP with quick ACK (milter.Listen)", short: "tcp-quick", spec: serveInProcess(t, quick)},
		{name: "milter.Server in-process, TCP without quick ACK (net.Listen)", short: "tcp-plain", spec: serveInProcess(t, plain)},
	}
	if other := os.Getenv(compareEnv); other != "" {
		name := os.Getenv(compareNameEnv)
		if name == "" {
			name = other
		}
		configs = append(configs, &latencyConfig{name: name + ", TCP", short: "compare",
			spec: startDaemon(t, other, fmt.Sprintf("inet:127.0.0.1:%d", mtatest.FreePort(t)), dnsAddr).Spec})
	}
	return configs
}

// TestSendmailLatency is item 3 of the performance plan. Sendmail writes a
// macro packet and its command as two small writes; over TCP the second
// waits for the ACK of the first, which the milter's kernel delays unless
// the milter sets TCP_QUICKACK (milter/quickack.go).
func TestSendmailLatency(t *testing.T) {
	requireGate(t)
	mtatest.RequireSendmail(t)
	n := envInt(t, "BACKSCATTER_BENCH_LATENCY_MESSAGES", 30)
	configs := latencyMilters(t)
	sink := mtatest.StartSink(t, mtatest.SinkOptions{})
	for _, c := range configs {
		c.smtpAddr = mtatest.StartSendmail(t, mtatest.SendmailOptions{MilterAddr: c.spec, Relay: sink}).SMTPAddr
	}
	table, ratio := measureLatency(t, "Sendmail", configs, n)
	table += fmt.Sprintf("\nGoal: backscatter-milter over TCP ≤ 1.2 × no milter: %s (%.2f); unix socket %.2f; without quick ACK %.2f.\n",
		map[bool]string{true: "met", false: "**missed**"}[ratio["tcp"] <= 1.2], ratio["tcp"], ratio["unix"], ratio["tcp-plain"])
	t.Log("\n" + table)
	writeSection(t, "bench-sendmail", table)
}

// TestPostfixLatency is the same comparison through Postfix, which also
// writes a milter's macros and command separately, plus go-milter's
// do-nothing milter on a plain TCP listener.
func TestPostfixLatency(t *testing.T) {
	requireGate(t)
	mtatest.RequirePostfix(t)
	n := envInt(t, "BACKSCATTER_BENCH_LATENCY_MESSAGES", 30)
	configs := latencyMilters(t)
	configs = append(configs,
		&latencyConfig{name: "do-nothing go-milter, TCP without quick ACK", short: "noop-plain", spec: startNoop(t, true).Spec},
		&latencyConfig{name: "do-nothing go-milter, TCP with quick ACK", short: "noop-quick", spec: startNoop(t, false).Spec})
	sink := mtatest.StartSink(t, mtatest.SinkOptions{})
	for _, c := range configs {
		c.smtpAddr = mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: c.spec, Relay: sink}).SMTPAddr
	}
	table, _ := measureLatency(t, "Postfix", configs, n)
	t.Log("\n" + table)
	writeSection(t, "bench-postfix-latency", table)
}
