package mtatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"
)

// PostfixOptions configures a private Postfix.
type PostfixOptions struct {
	// MilterAddr goes to smtpd_milters, e.g. "inet:127.0.0.1:8899" or
	// "unix:/path/milter.sock"; empty: no milter for SMTP mail.
	MilterAddr string
	// NonSMTPDMilterAddr goes to non_smtpd_milters with
	// internal_mail_filter_classes = bounce, so the milter sees the
	// bounces Postfix writes itself.
	NonSMTPDMilterAddr string
	// MilterDefaultAction is milter_default_action; default "tempfail".
	MilterDefaultAction string
	// Hostname is myhostname, fully qualified; default "mx.example.org".
	Hostname string
	// MyNetworks is mynetworks, the trusted clients; default
	// "127.0.0.1/32", so 127.0.0.2 and up are untrusted.
	MyNetworks string
	// RelayDomains are accepted from untrusted clients and relayed; default
	// example.org.
	RelayDomains []string
	// Relay receives all relayed mail (relayhost); nil starts a new Sink.
	Relay *Sink
	// Transports routes domains elsewhere than Relay (transport_maps):
	// domain → next hop, e.g. "reject.example.net" → "smtp:" + sink.Addr
	// of a Sink started with RejectRcpt, to make Postfix write a bounce.
	Transports map[string]string
	// Main holds extra main.cf settings; they override the template.
	Main map[string]string
	// MasterLines are extra master.cf lines.
	MasterLines []string
	// Chroot runs the services chrooted where Debian's default master.cf
	// does (smtpd and cleanup among them), in the queue directory
	// (Postfix.QueueDir), set up by Debian's own configure-instance.sh.
	// A unix milter socket must then live inside the queue directory and
	// be named relative to it: unix:backscatter-milter/milter.sock.
	Chroot bool
}

// Postfix is a running private Postfix.
type Postfix struct {
	Dir       string // holds etc/ (ConfigDir), queue/, data/ and maillog
	ConfigDir string // postfix -c ConfigDir
	QueueDir  string // queue_directory, the chroot with PostfixOptions.Chroot
	SMTPAddr  string // 127.0.0.1:PORT where smtpd listens
	Port      int
	Sink      *Sink // where relayed mail goes (PostfixOptions.Relay or a new one)

	token  string // in the SMTP greeting, to recognise this instance
	ns     *namespace
	mntNS  *mountNS
	master *exec.Cmd
	done   chan struct{}
	werr   error
}

// RequirePostfix skips (or fails, see Require) when a private Postfix cannot
// run here.
func RequirePostfix(t testing.TB) {
	t.Helper()
	Require(t, append([]string{"/usr/lib/postfix/sbin/master", "postqueue", "postsuper", "smtp-sink"}, namespaceTools...)...)
	requireRoot(t)
}

// StartPostfix writes a configuration under a new temporary directory,
// starts Postfix and waits until smtpd answers. t.Cleanup stops it.
func StartPostfix(t testing.TB, o PostfixOptions) *Postfix {
	t.Helper()
	RequirePostfix(t)
	start := time.Now()
	if o.MilterDefaultAction == "" {
		o.MilterDefaultAction = "tempfail"
	}
	if o.Hostname == "" {
		o.Hostname = "mx.example.org"
	}
	if !strings.Contains(o.Hostname, ".") {
		t.Fatalf("mtatest: Postfix hostname %q must be fully qualified", o.Hostname)
	}
	if o.MyNetworks == "" {
		o.MyNetworks = "127.0.0.1/32"
	}
	if o.RelayDomains == nil {
		o.RelayDomains = []string{"example.org"}
	}
	p := &Postfix{Dir: instanceDir(t, "pf"), Sink: o.Relay, token: instanceToken()}
	p.ConfigDir = filepath.Join(p.Dir, "etc")
	p.QueueDir = filepath.Join(p.Dir, "queue")
	chroot := "n"
	if o.Chroot {
		Require(t, debianChrootSetup)
		chroot = "y"
	}
	if p.Sink == nil {
		p.Sink = StartSink(t, SinkOptions{})
	}
	if err := makePostfixDirs(p.Dir); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	p.ns = newNamespace(t, p.Dir, o.Hostname)
	transportMaps := ""
	if len(o.Transports) > 0 {
		var b strings.Builder
		for _, dom := range sortedKeys(o.Transports) {
			fmt.Fprintf(&b, "%s %s\n", dom, o.Transports[dom])
		}
		f := filepath.Join(p.ConfigDir, "transport")
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		transportMaps = "texthash:" + f
	}
	classes := ""
	if o.NonSMTPDMilterAddr != "" {
		classes = "bounce"
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("mtatest: maillog of the Postfix on %s:\n%s", p.SMTPAddr, p.Log())
		}
	})
	for attempt := 1; ; attempt++ {
		p.Port = pickPort(t)
		p.SMTPAddr = fmt.Sprintf("127.0.0.1:%d", p.Port)
		vars := map[string]string{
			"Dir":                   p.Dir,
			"Hostname":              o.Hostname,
			"RelayDomains":          strings.Join(o.RelayDomains, ", "),
			"Relayhost":             "[127.0.0.1]:" + strconv.Itoa(p.Sink.Port),
			"TransportMaps":         transportMaps,
			"MyNetworks":            o.MyNetworks,
			"MilterAddr":            o.MilterAddr,
			"NonSMTPDMilterAddr":    o.NonSMTPDMilterAddr,
			"InternalFilterClasses": classes,
			"MilterDefaultAction":   o.MilterDefaultAction,
			"SMTPListen":            p.SMTPAddr,
			"Token":                 p.token,
			"Chroot":                chroot,
		}
		main := render(t, "postfix/main.cf.tmpl", vars)
		main = setMainCF(main, ParseMainCF(readTestdata(t, "postfix/milter.cf")), "testdata/mta/postfix/milter.cf")
		main = setMainCF(main, o.Main, "PostfixOptions.Main")
		master := render(t, "postfix/master.cf.tmpl", vars)
		for _, l := range o.MasterLines {
			master += l + "\n"
		}
		writeFile(t, filepath.Join(p.ConfigDir, "main.cf"), main)
		writeFile(t, filepath.Join(p.ConfigDir, "master.cf"), master)
		// Postfix rereads a dictionary file changed in the current second,
		// 300 ms at a time, to not read a half-written file: backdate them.
		backdate(t, p.ConfigDir)
		if o.Chroot {
			if err := p.setUpChroot(); err != nil {
				t.Fatalf("mtatest: %v", err)
			}
		}

		logStart := len(p.ns.syslog.String())
		out, err := p.startMaster()
		if err == nil {
			if err = soleListener(p.Port); err == nil {
				break
			}
			if attempt < 3 {
				p.stop()
				continue
			}
		}
		p.stop()
		// Another test may take the port between FreePort and bind; the
		// master's last words before postlogd runs go to syslog.
		if attempt < 3 && strings.Contains(p.ns.syslog.String()[logStart:], "Address already in use") {
			continue
		}
		t.Fatalf("mtatest: postfix: %v\n%s\nmaillog:\n%s", err, out, p.Log())
	}
	t.Logf("mtatest: Postfix on %s (dir %s, relay %s) started in %v", p.SMTPAddr, p.Dir, p.Sink.Addr, time.Since(start).Round(time.Millisecond))
	return p
}

// debianChrootSetup is what Debian's postfix@.service runs before it
// starts an instance (ExecStartPre): it copies the files a chrooted
// daemon needs (etc/services, etc/localtime, NSS libraries, ...) into
// the queue directory.
const debianChrootSetup = "/usr/lib/postfix/configure-instance.sh"

// setUpChroot prepares the queue directory as the chroot the way Debian
// does, then puts the instance's own hosts and resolv.conf there (DNS at
// 127.0.0.1, where nothing answers): a chrooted daemon must not reach the
// machine's resolvers either.
func (p *Postfix) setUpChroot() error {
	if _, err := runCmd(60*time.Second, p.env(), debianChrootSetup, "-"); err != nil {
		return err
	}
	for _, f := range []string{"hosts", "resolv.conf"} {
		b, err := os.ReadFile(filepath.Join(p.Dir, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(p.QueueDir, "etc", f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// startMaster runs the master daemon in the foreground as our child (in
// its namespaces), not through "postfix start": postfix-script's permission
// checks take seconds and add nothing for a directory made a moment ago. It
// waits until smtpd answers and returns the master's output.
func (p *Postfix) startMaster() (string, error) {
	p.master = p.ns.command("/usr/lib/postfix/sbin/master", "-d", "-c", p.ConfigDir)
	p.master.Env = append(os.Environ(), p.env()...)
	out := &LockedBuffer{}
	p.master.Stdout = out
	p.master.Stderr = out
	if err := p.master.Start(); err != nil {
		p.master = nil
		return "", fmt.Errorf("start postfix master: %w", err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { p.werr = cmd.Wait(); close(done) }(p.master, p.done)
	err := waitGreeting(p.SMTPAddr, p.token, 30*time.Second, p.exited)
	if err == nil {
		p.mntNS = pinMountNS(p.master.Process.Pid)
	}
	return out.String(), err
}

func (p *Postfix) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("postfix master exited: %v", p.werr)
	default:
		return nil
	}
}

// makePostfixDirs creates the configuration, queue and data directories
// with the owners and modes of Debian's /etc/postfix/postfix-files.
func makePostfixDirs(dir string) error {
	type d struct {
		path       string
		owner, grp string
		mode       os.FileMode
	}
	dirs := []d{
		{"etc", "root", "root", 0o755},
		{"data", "postfix", "", 0o700},
		{"queue", "root", "root", 0o755},
		{"queue/pid", "root", "root", 0o755},
		{"queue/maildrop", "postfix", "postdrop", 0o730},
		{"queue/public", "postfix", "postdrop", 0o710},
	}
	for _, q := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, d{"queue/" + q, "postfix", "", 0o700})
	}
	for _, x := range dirs {
		p := filepath.Join(dir, x.path)
		if err := os.Mkdir(p, x.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, x.mode); err != nil { // umask
			return err
		}
		if err := chownTo(p, x.owner, x.grp); err != nil {
			return err
		}
	}
	return nil
}

// ParseMainCF reads the "name = value" lines of main.cf text (no continuation
// lines), as Postfix would: comments and indented lines are skipped.
func ParseMainCF(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "#") || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
			continue
		}
		if k, v, ok := strings.Cut(l, "="); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// setMainCF replaces the settings in main.cf text, or appends those not yet
// there under a comment naming where they come from: Postfix warns about a
// setting given twice.
func setMainCF(main string, set map[string]string, from string) string {
	lines := strings.Split(main, "\n")
	done := map[string]bool{}
	for i, l := range lines {
		k, _, ok := strings.Cut(l, "=")
		k = strings.TrimSpace(k)
		if !ok || strings.HasPrefix(l, "#") || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t") {
			continue
		}
		if v, ok := set[k]; ok {
			lines[i] = k + " = " + v
			done[k] = true
		}
	}
	main = strings.Join(lines, "\n")
	var extra []string
	for _, k := range sortedKeys(set) {
		if !done[k] {
			extra = append(extra, k+" = "+set[k])
		}
	}
	if len(extra) > 0 {
		main = strings.TrimRight(main, "\n") + "\n# " + from + "\n" + strings.Join(extra, "\n") + "\n"
	}
	return main
}

func (p *Postfix) env() []string { return []string{"MAIL_CONFIG=" + p.ConfigDir} }

// stop does what "postfix stop" does (SIGTERM to the master, which ends its
// children), then kills whatever is left of this instance: daemons carry
// its MAIL_CONFIG or live in its mount namespace (see stopInstance).
func (p *Postfix) stop() {
	if p.master == nil {
		return
	}
	stopInstance(p.master, p.done, p.mntNS, func() []int { return processesWithEnv("MAIL_CONFIG=" + p.ConfigDir) })
	p.master, p.mntNS = nil, nil
}

// Send sends one message from 127.0.0.1 (trusted by default) in its own
// session and fails the test on a network error; SMTP rejections are in
// the result.
func (p *Postfix) Send(t testing.TB, m SMTPMessage) MessageResult {
	t.Helper()
	return sendOne(t, p.SMTPAddr, Session{Messages: []SMTPMessage{m}})
}

// SendSession runs a whole session; see SendSession.
func (p *Postfix) SendSession(t testing.TB, s Session) SessionResult {
	t.Helper()
	return sendSession(t, p.SMTPAddr, s)
}

func sendOne(t testing.TB, addr string, s Session) MessageResult {
	t.Helper()
	res := sendSession(t, addr, s)
	if len(res.Messages) == 0 {
		return MessageResult{}
	}
	return res.Messages[0]
}

func sendSession(t testing.TB, addr string, s Session) SessionResult {
	t.Helper()
	res, err := SendSession(addr, s)
	if err != nil {
		t.Fatalf("mtatest: SMTP session with %s: %v (replies so far: %+v)", addr, err, res)
	}
	return res
}

// QueueEntry is one message in Postfix's queue, as "postqueue -j" lists it.
type QueueEntry struct {
	QueueName    string           `json:"queue_name"` // incoming, active, deferred, hold, ...
	QueueID      string           `json:"queue_id"`
	ArrivalTime  int64            `json:"arrival_time"`
	MessageSize  int64            `json:"message_size"`
	ForcedExpire bool             `json:"forced_expire"`
	Sender       string           `json:"sender"`
	Recipients   []QueueRecipient `json:"recipients"`
}

// QueueRecipient is one recipient of a QueueEntry.
type QueueRecipient struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason"`
}

// Queue lists the messages in the queue (all queues, hold included).
func (p *Postfix) Queue() ([]QueueEntry, error) {
	out, err := runCmd(30*time.Second, p.env(), mustPath("postqueue"), "-c", p.ConfigDir, "-j")
	if err != nil {
		return nil, err
	}
	var q []QueueEntry
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e QueueEntry
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("postqueue -j: %w", err)
		}
		q = append(q, e)
	}
	return q, nil
}

// WaitQueue waits until cond holds for the queue; it fails the test after
// timeout and shows the queue and the log.
func (p *Postfix) WaitQueue(t testing.TB, timeout time.Duration, what string, cond func([]QueueEntry) bool) []QueueEntry {
	t.Helper()
	var q []QueueEntry
	var err error
	if !waitFor(timeout, func() bool {
		q, err = p.Queue()
		return err == nil && cond(q)
	}) {
		t.Fatalf("mtatest: Postfix queue: no %s after %v (err %v); queue %+v\nmaillog:\n%s", what, timeout, err, q, p.Log())
	}
	return q
}

// WaitQueueEmpty waits until the queue, hold queue included, is empty.
func (p *Postfix) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	p.WaitQueue(t, timeout, "empty queue", func(q []QueueEntry) bool { return len(q) == 0 })
}

// Held returns the messages on hold (quarantined by a milter).
func (p *Postfix) Held() ([]QueueEntry, error) {
	q, err := p.Queue()
	var held []QueueEntry
	for _, e := range q {
		if e.QueueName == "hold" {
			held = append(held, e)
		}
	}
	return held, err
}

// Flush asks Postfix to deliver the deferred queue now (postqueue -f).
func (p *Postfix) Flush() error {
	_, err := runCmd(30*time.Second, p.env(), mustPath("postqueue"), "-c", p.ConfigDir, "-f")
	return err
}

// Release moves a held message back to the active queue (postsuper -H).
func (p *Postfix) Release(queueID string) error {
	_, err := runCmd(30*time.Second, p.env(), mustPath("postsuper"), "-c", p.ConfigDir, "-H", queueID)
	return err
}

// Log returns the maillog so far, followed by anything logged to syslog
// (the master's errors before postlogd runs).
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	if sl := p.ns.syslog.String(); sl != "" {
		b = append(b, "syslog:\n"+sl...)
	}
	return string(b)
}

// WaitLog waits until the maillog contains substr and returns the log.
func (p *Postfix) WaitLog(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	return waitLog(t, "Postfix", p.Log, substr, timeout)
}

func waitLog(t testing.TB, who string, read func() string, substr string, timeout time.Duration) string {
	t.Helper()
	var log string
	if !waitFor(timeout, func() bool { log = read(); return strings.Contains(log, substr) }) {
		t.Fatalf("mtatest: %s log lacks %q after %v:\n%s", who, substr, timeout, log)
	}
	return log
}

func render(t testing.TB, name string, vars any) string {
	t.Helper()
	tmpl, err := template.New(name).Option("missingkey=error").Parse(readTestdata(t, name))
	if err != nil {
		t.Fatalf("mtatest: template %s: %v", name, err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, vars); err != nil {
		t.Fatalf("mtatest: template %s: %v", name, err)
	}
	return b.String()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mustPath(name string) string {
	p, err := lookPath(name)
	if err != nil {
		return name // the Require check already ran; the error surfaces at exec
	}
	return p
}

// processesWithEnv lists the processes whose environment holds the exact
// entry kv, to find what is left of one private instance.
func processesWithEnv(kv string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, v := range bytes.Split(b, []byte{0}) {
			if string(v) == kv {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
