package main

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/dnstest"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// TestSoakCI is the scaled-down load-with-faults run every `go test` does:
// the same phases as TestSoak (soak_full_test.go, build tag soak: make
// soak) with 500 messages over 30 sessions.
func TestSoakCI(t *testing.T) {
	if testing.Short() {
		t.Skip("integration load test: runs real Postfix (not in -short)")
	}
	runSoak(t, soakSize{messages: 500, sessions: 30, perSession: 2})
}

type soakSize struct {
	messages   int // transactions to send
	sessions   int // concurrent SMTP sessions
	perSession int // transactions per SMTP session
}

// soakPhase is a stretch of the run, entered when the given share of the
// messages has been started: the DNS server the milter uses misbehaves, or
// the milter is restarted.
type soakPhase struct {
	name    string
	at      float64
	fault   dnstest.Fault
	restart bool
	damage  bool // overwrite the sent log's meta pages under the running milter
}

var soakPhases = []soakPhase{
	{name: "normal", at: 0},
	{name: "dns stopped (no answers)", at: 0.10, fault: dnstest.Fault{Drop: true}},
	{name: "dns slow (3 s)", at: 0.25, fault: dnstest.Fault{Delay: 3 * time.Second}},
	{name: "dns SERVFAIL", at: 0.40, fault: dnstest.Fault{Rcode: dns.RcodeServerFailure}},
	{name: "dns garbage", at: 0.50, fault: dnstest.Fault{Garbage: true}},
	{name: "sent log damaged", at: 0.55, damage: true},
	{name: "normal again", at: 0.60},
	{name: "milter restarted", at: 0.70, restart: true},
	{name: "after restart"},
}

// soakKind is what a message is; the mix repeats every ten messages.
type soakKind int

const (
	kindOrdinary       soakKind = iota // inbound mail from an SPF-pass domain
	kindForgedBATV                     // forged bounce to an untagged address of a BATV domain: 550 at end of DATA
	kindForgedHold                     // forged bounce to a domain without BATV: quarantined
	kindRealBounce                     // bounce to a BATV-signed address of mail that passed our relay
	kindForgedListed                   // forged bounce from the DNSBL-listed client: 550 (hold when DNS fails)
	kindOrdinaryListed                 // ordinary mail from the listed client: safe mode does not score it
)

var kindNames = map[soakKind]string{kindOrdinary: "ordinary", kindForgedBATV: "forged bounce (BATV)",
	kindForgedHold: "forged bounce (no BATV)", kindRealBounce: "real bounce",
	kindForgedListed: "forged bounce, listed client", kindOrdinaryListed: "ordinary, listed client"}

// soakMsg is one transaction and what became of it.
type soakMsg struct {
	kind    soakKind
	phase   int
	sinkID  string // Message-ID the sink will see
	session int
	// outcome at the SMTP client
	outcome string // "accepted", "5xx", "4xx", "error"
	reply   string
	queueID string
}

type soakSession struct {
	start, end time.Time
}

const listedIP = "127.0.0.2"

func runSoak(t *testing.T, size soakSize) {
	mtatest.RequirePostfix(t)
	began := time.Now()
	dnsSrv := startDNS(t, dnsZone+`
2.0.0.127.bl.test. 1 IN A 127.0.0.2
`)
	keyFile, signer := writeKey(t)
	m := startMilter(t, `
mode: enforce
local_domains: [example.org, other.example]
trusted_networks: [127.0.0.1/32]
relays: [mx.example.org, 192.0.2.0/24]
resolver: `+dnsSrv.Addr+`
dnsbl: { timeout: 2s, min_ttl: 1s, max_ttl: 1s, zones: ["bl.test=127.0.0.2*10 senders=bounce"] }
batv: { enabled: true, keys: [{ id: 0, file: `+keyFile+` }], domains: [example.org] }
`)
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{MilterAddr: m.Spec, RelayDomains: []string{"example.org", "other.example"},
		Main: map[string]string{
			"recipient_delimiter":                 "+",
			"default_process_limit":               fmt.Sprint(size.sessions + 60),
			"smtpd_client_connection_count_limit": "0",
			"smtpd_client_connection_rate_limit":  "0",
			"smtpd_client_message_rate_limit":     "0",
		}})
	tagged, err := signer.Sign("bob@example.org")
	if err != nil {
		t.Fatal(err)
	}

	// Warm up (first Postfix processes, the first milter connection), then
	// take the baseline the daemon must return to.
	warm := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.3", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{{
		From: "alice@pass.test", To: []string{"bob@example.org"},
		Data: plainMessage("alice@pass.test", "bob@example.org", "warmup@pass.test", "", "warm-up\n")}}})
	if !warm.Messages[0].Accepted() {
		t.Fatalf("warm-up message: %s", warm.Messages[0])
	}
	pf.Sink.WaitMessages(t, 1, 30*time.Second)
	baseG, baseFD := settle(0, 0, 3*time.Second)
	var heapPeak, gPeak, fdPeak atomic.Int64
	stopSample := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms goruntime.MemStats
		for {
			select {
			case <-stopSample:
				return
			case <-time.After(250 * time.Millisecond):
			}
			goruntime.ReadMemStats(&ms)
			maxInt(&heapPeak, int64(ms.HeapInuse))
			maxInt(&gPeak, int64(goruntime.NumGoroutine()))
			maxInt(&fdPeak, int64(openFDs()))
		}
	}()

	msgs := make([]soakMsg, size.messages)
	body := strings.Repeat("All work and no play makes a soak test.\n", 50)
	for i := range msgs {
		msgs[i].kind = soakKind([]soakKind{kindOrdinary, kindOrdinary, kindOrdinary, kindOrdinary, kindForgedBATV,
			kindForgedBATV, kindForgedHold, kindRealBounce, kindRealBounce, kindOrdinary}[i%10])
	}
	message := func(i int, listed bool) mtatest.SMTPMessage {
		id := fmt.Sprintf("soak-%d-%d@remote.test", i, began.UnixNano())
		mm := &msgs[i]
		if listed {
			// The listed client sends forged bounces and ordinary mail.
			if mm.kind == kindOrdinary {
				mm.kind = kindOrdinaryListed
			} else {
				mm.kind = kindForgedListed
			}
		}
		switch mm.kind {
		case kindOrdinary, kindOrdinaryListed:
			mm.sinkID = id
			return mtatest.SMTPMessage{From: "alice@pass.test", To: []string{"bob@example.org"},
				Data: plainMessage("alice@pass.test", "bob@example.org", id, "", body)}
		case kindForgedBATV:
			mm.sinkID = "dsn-" + id
			return mtatest.SMTPMessage{From: "<>", To: []string{"bob@example.org"},
				Data: dsnFor("bob@example.org", id, "spam.remote.test", "198.51.100.9")}
		case kindForgedHold, kindForgedListed:
			mm.sinkID = "dsn-" + id
			return mtatest.SMTPMessage{From: "<>", To: []string{"carol@other.example"},
				Data: dsnFor("carol@other.example", id, "spam.remote.test", "198.51.100.9")}
		default: // kindRealBounce
			mm.sinkID = "dsn-" + id
			return mtatest.SMTPMessage{From: "<>", To: []string{tagged},
				Data: dsnFor(tagged, id, "mx.example.org", "192.0.2.10")}
		}
	}

	// Work queue: every index is taken once; a session the server ends
	// early gives its unsent messages back.
	todo := make(chan int, size.messages)
	for i := range msgs {
		todo <- i
	}
	var started, finished atomic.Int64
	var phase atomic.Int32
	var sessMu sync.Mutex
	var sessions []soakSession
	var restartStart, restartEnd atomic.Int64 // unix nanoseconds
	var replaced atomic.Uint64                // damaged sent logs replaced before the restart
	var damageStart, damageEnd atomic.Int64   // unix nanoseconds: from the damage to its replacement
	var sessNo, sessErrs atomic.Int64

	// The controller moves through the phases as messages are started.
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		for p := 1; p < len(soakPhases); {
			if finished.Load() == int64(size.messages) {
				return
			}
			// The phase after a restart begins as soon as the daemon is
			// back: the restart is one event, not a stretch of the run.
			if !soakPhases[p-1].restart && started.Load() < int64(soakPhases[p].at*float64(size.messages)) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			ph := soakPhases[p]
			dnsSrv.SetFault("*", ph.fault)
			phase.Store(int32(p))
			t.Logf("soak: %v: phase %q at message %d", time.Since(began).Round(time.Millisecond), ph.name, started.Load())
			if ph.damage {
				damageStart.Store(time.Now().UnixNano())
				scribble(t, filepath.Join(m.Dir, "sent.db"), 0, 2*4096, 7)
				// The next lookup finds the damage and replaces the file;
				// until then lookups fail and give no evidence.
				for deadline := time.Now().Add(30 * time.Second); m.d.sentHealth.Replacements() == 0 && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				damageEnd.Store(time.Now().UnixNano())
			}
			if ph.restart {
				replaced.Store(m.d.sentHealth.Replacements())
				restartStart.Store(time.Now().UnixNano())
				if err := m.restart(); err != nil {
					t.Errorf("milter restart: %v", err)
				}
				restartEnd.Store(time.Now().UnixNano())
				t.Logf("soak: milter restarted in %v", time.Duration(restartEnd.Load()-restartStart.Load()).Round(time.Millisecond))
			}
			p++
		}
	}()

	var wg sync.WaitGroup
	for w := 0; w < size.sessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for finished.Load() < int64(size.messages) {
				var batch []int
			take:
				for len(batch) < size.perSession {
					select {
					case i := <-todo:
						batch = append(batch, i)
					default:
						break take
					}
				}
				if len(batch) == 0 {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				sn := int(sessNo.Add(1))
				ip := fmt.Sprintf("127.0.0.%d", 3+sn%6)
				listed := sn%7 == 3 // 7 is prime to the mix of 10: every kind comes from it
				if listed {
					ip = listedIP
				}
				s := mtatest.Session{LocalIP: ip, Helo: "mx.remote.test"}
				for _, i := range batch {
					s.Messages = append(s.Messages, message(i, listed))
					msgs[i].phase = int(phase.Load())
					msgs[i].session = sn
				}
				started.Add(int64(len(batch)))
				ss := soakSession{start: time.Now()}
				res, err := mtatest.SendSession(pf.SMTPAddr, s)
				ss.end = time.Now()
				if err != nil {
					sessErrs.Add(1)
					if sessErrs.Load() <= 5 {
						t.Logf("soak: session %d: %v", sn, err)
					}
				}
				sessMu.Lock()
				for len(sessions) <= sn {
					sessions = append(sessions, soakSession{})
				}
				sessions[sn] = ss
				sessMu.Unlock()
				tempfailed := false
				for k, i := range batch {
					if k >= len(res.Messages) {
						// Not sent: the server hung up (421), the greeting
						// failed or the connection did: send it again later.
						started.Add(-1)
						todo <- i
						continue
					}
					classify(&msgs[i], res.Messages[k], err != nil && k == len(res.Messages)-1, err)
					tempfailed = tempfailed || msgs[i].outcome == "4xx"
					finished.Add(1)
				}
				if tempfailed {
					// A sending MTA told 4xx defers its queue and tries later.
					time.Sleep(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	<-ctlDone
	sendTook := time.Since(began)
	dnsSrv.SetFault("*", dnstest.Fault{})
	if restartStart.Load() == 0 {
		t.Errorf("the milter was never restarted")
	}
	// The damaged sent log was found by the lookups that followed, moved
	// aside and replaced, with mail flowing (the accounting below).
	if moved, _ := filepath.Glob(filepath.Join(m.Dir, "sent.db.damaged-*")); replaced.Load() == 0 || len(moved) == 0 {
		t.Errorf("sent log damaged mid-run: %d replacements before the restart, damaged files %v", replaced.Load(), moved)
	}

	// Let Postfix deliver what it accepted: nothing may stay in the active,
	// incoming or deferred queues for long (the sink accepts everything).
	var queue []mtatest.QueueEntry
	await.True(2*time.Minute, func() bool {
		queue, err = pf.Queue()
		return err == nil && pendingCount(queue) == 0
	})
	if err != nil {
		t.Fatalf("postqueue: %v", err)
	}
	held := map[string]bool{}
	queued := map[string]bool{}
	for _, e := range queue {
		if e.QueueName == "hold" {
			held[e.QueueID] = true
		} else {
			queued[e.QueueID] = true
		}
	}
	sink, err := pf.Sink.Messages()
	if err != nil {
		t.Fatal(err)
	}
	atSink := map[string]int{}
	for _, sm := range sink {
		atSink[headerMessageID(sm.Header())]++
	}

	// Account for every message.
	type tally struct{ sent, delivered, held, queued, rejected5, tempfailed, errors, lost int }
	var total tally
	byPhase := make([]tally, len(soakPhases))
	byKind := map[soakKind]*tally{}
	var problems []string
	damagedOpen := 0 // forged bounces let through while the sent log was damaged
	var storeFailed map[string]bool
	// storeFailedFor reports whether the verdict of queueID says the sent
	// log failed.
	storeFailedFor := func(queueID string) bool {
		if storeFailed == nil {
			storeFailed = map[string]bool{}
			for _, v := range m.verdicts(t) {
				if strings.Contains(strings.Join(v.Notes, " "), "sent log") {
					storeFailed[v.QueueID] = true
				}
			}
		}
		return storeFailed[queueID]
	}
	problem := func(format string, args ...any) {
		if len(problems) < 30 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for i := range msgs {
		mm := &msgs[i]
		var where string
		switch mm.outcome {
		case "accepted":
			n := atSink[mm.sinkID]
			switch {
			case n > 1:
				problem("message %d (%s) delivered %d times", i, mm.sinkID, n)
				where = "delivered"
			case n == 1:
				where = "delivered"
			case held[mm.queueID]:
				where = "held"
			case queued[mm.queueID]:
				where = "queued"
			default:
				where = "lost"
				problem("message %d (%s, %s, queue id %q) accepted but neither delivered, held nor queued", i, kindNames[mm.kind], mm.sinkID, mm.queueID)
			}
			if n >= 1 && (held[mm.queueID] || queued[mm.queueID]) {
				problem("message %d delivered and still in the queue", i)
			}
		case "5xx":
			where = "rejected5"
		case "4xx":
			where = "tempfailed"
		default:
			where = "errors"
			problem("message %d: %s %s", i, mm.outcome, mm.reply)
		}
		if atSink[mm.sinkID] > 0 && mm.outcome != "accepted" {
			problem("message %d (%s) was refused (%s) but arrived at the sink", i, mm.sinkID, mm.reply)
		}
		// What each kind may become, whatever the DNS does.
		switch {
		case where == "tempfailed":
			// Only while the milter was down: the session overlapped the restart.
			ss := sessions[mm.session]
			rs, re := time.Unix(0, restartStart.Load()), time.Unix(0, restartEnd.Load())
			if restartStart.Load() == 0 || ss.end.Before(rs) || ss.start.After(re.Add(2*time.Second)) {
				problem("message %d (%s, phase %q) tempfailed outside the restart: %s", i, kindNames[mm.kind], soakPhases[mm.phase].name, mm.reply)
			}
		case (mm.kind == kindOrdinary || mm.kind == kindOrdinaryListed || mm.kind == kindRealBounce) && where != "delivered" && where != "queued":
			problem("message %d (%s, phase %q) is %s (%s): legitimate mail must pass", i, kindNames[mm.kind], soakPhases[mm.phase].name, where, mm.reply)
		case (mm.kind == kindForgedHold || mm.kind == kindForgedListed) && where == "delivered" &&
			overlaps(sessions[mm.session], damageStart.Load(), damageEnd.Load()) && storeFailedFor(mm.queueID):
			// In flight while the sent log was damaged: its lookup failed,
			// so no bounce:not-ours (fail open, as designed); the listed
			// client's DNSBL evidence may be missing too (DNS faults).
			damagedOpen++
		case (mm.kind == kindForgedBATV || mm.kind == kindForgedHold || mm.kind == kindForgedListed) && where == "delivered":
			problem("message %d (%s, phase %q) was delivered: backscatter got through", i, kindNames[mm.kind], soakPhases[mm.phase].name)
		}
		for _, tl := range []*tally{&total, &byPhase[mm.phase], kindTally(byKind, mm.kind)} {
			tl.sent++
			switch where {
			case "delivered":
				tl.delivered++
			case "held":
				tl.held++
			case "queued":
				tl.queued++
			case "rejected5":
				tl.rejected5++
			case "tempfailed":
				tl.tempfailed++
			case "lost":
				tl.lost++
			default:
				tl.errors++
			}
		}
	}
	// Nothing at the sink that we did not send (or sent twice).
	ours := map[string]bool{"warmup@pass.test": true}
	for i := range msgs {
		ours[msgs[i].sinkID] = true
	}
	for id, n := range atSink {
		if !ours[id] {
			problem("the sink has %d unexpected message(s) with Message-ID %q", n, id)
		}
	}

	close(stopSample)
	<-sampled
	// Resources back to the idle level of before the run.
	endG, endFD := settle(baseG+10, baseFD+4, 60*time.Second)

	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d messages, %d concurrent sessions × %d messages, sent in %v (%.0f msg/s), accounted %v after start\n",
		size.messages, size.sessions, size.perSession, sendTook.Round(time.Second), float64(size.messages)/sendTook.Seconds(), time.Since(began).Round(time.Second))
	row := func(name string, tl tally) {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d | %d |\n", name, tl.sent, tl.delivered, tl.held, tl.rejected5, tl.tempfailed, tl.queued, tl.lost, tl.errors)
	}
	b.WriteString("| | sent | delivered | held | rejected 5xx | tempfailed 4xx | queued | lost | errors |\n|---|---|---|---|---|---|---|---|---|\n")
	for p, ph := range soakPhases {
		row(ph.name, byPhase[p])
	}
	kinds := make([]int, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, int(k))
	}
	sort.Ints(kinds)
	for _, k := range kinds {
		row(kindNames[soakKind(k)], *byKind[soakKind(k)])
	}
	row("**total**", total)
	fmt.Fprintf(&b, "SMTP sessions: %d (%d ended by a network error, their unsent messages sent again)\n", sessNo.Load(), sessErrs.Load())
	fmt.Fprintf(&b, "duplicates at the sink: %d; goroutines %d → peak %d → %d; open files %d → peak %d → %d; heap in use peak %.1f MiB\n",
		duplicates(atSink), baseG, gPeak.Load(), endG, baseFD, fdPeak.Load(), endFD, float64(heapPeak.Load())/(1<<20))
	fmt.Fprintf(&b, "sent log damaged for %v until replaced; forged bounces (no BATV) in flight then and delivered for want of evidence: %d\n",
		time.Duration(damageEnd.Load()-damageStart.Load()).Round(time.Millisecond), damagedOpen)
	t.Log("\n" + b.String())

	if s := total.delivered + total.held + total.rejected5 + total.tempfailed + total.queued; s != size.messages || total.lost != 0 || total.errors != 0 {
		t.Errorf("accounting: delivered %d + held %d + rejected %d + tempfailed %d + queued %d = %d, sent %d; lost %d, errors %d",
			total.delivered, total.held, total.rejected5, total.tempfailed, total.queued, s, size.messages, total.lost, total.errors)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if endG > baseG+10 {
		t.Errorf("goroutines did not return to the baseline: %d, baseline %d", endG, baseG)
	}
	if endFD > baseFD+4 {
		t.Errorf("open files did not return to the baseline: %d, baseline %d", endFD, baseFD)
	}
}

// classify records what the SMTP client saw for one transaction.
func classify(mm *soakMsg, r mtatest.MessageResult, broken bool, err error) {
	if r.Accepted() {
		mm.outcome, mm.queueID, mm.reply = "accepted", r.QueueID(), r.Final.String()
		return
	}
	if broken {
		mm.outcome, mm.reply = "error", fmt.Sprintf("%s: %v", r, err)
		return
	}
	replies := append([]mtatest.Reply{r.Mail}, r.Rcpts...)
	replies = append(replies, r.Data, r.Final)
	for _, rep := range replies {
		switch rep.Class() {
		case 4:
			mm.outcome, mm.reply = "4xx", rep.String()
			return
		case 5:
			mm.outcome, mm.reply = "5xx", rep.String()
			return
		}
	}
	mm.outcome, mm.reply = "error", "no final reply: "+r.String()
}

func kindTally[T any](m map[soakKind]*T, k soakKind) *T {
	if m[k] == nil {
		m[k] = new(T)
	}
	return m[k]
}

func pendingCount(q []mtatest.QueueEntry) int {
	n := 0
	for _, e := range q {
		if e.QueueName != "hold" {
			n++
		}
	}
	return n
}

func duplicates(atSink map[string]int) int {
	n := 0
	for _, c := range atSink {
		if c > 1 {
			n += c - 1
		}
	}
	return n
}

// headerMessageID returns the Message-ID of a header block, without brackets.
func headerMessageID(h []byte) string {
	for _, l := range strings.Split(string(h), "\n") {
		if name, val, ok := strings.Cut(l, ":"); ok && strings.EqualFold(name, "Message-ID") {
			return strings.Trim(strings.TrimSpace(val), "<>")
		}
	}
	return ""
}

func maxInt(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// openFDs counts this process's open file descriptors.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// settle waits until goroutines and open files are at most maxG and maxFD
// (0: just let things quiet down for the whole wait) and returns the counts.
func settle(maxG, maxFD int, wait time.Duration) (int, int) {
	var g, fd int
	await.True(wait, func() bool {
		goruntime.GC()
		g, fd = goruntime.NumGoroutine(), openFDs()
		return maxG > 0 && g <= maxG && fd <= maxFD
	})
	return g, fd
}

// restart does what SIGTERM and a new start do: the running daemon drains
// and stops, and a new one is built from the same configuration file on
// the same socket path. It keeps the logger (in a real restart the process
// ends and its log file closes with it).
// overlaps reports whether a session ran during [from, to] (Unix ns).
func overlaps(ss soakSession, from, to int64) bool {
	if from == 0 {
		return false
	}
	return !ss.end.Before(time.Unix(0, from)) && !ss.start.After(time.Unix(0, to).Add(time.Second))
}

func (m *testMilter) restart() error {
	log := m.d.log
	m.d.shutdown()
	cfg, err := config.Load(filepath.Join(m.Dir, "config.yaml"), nil)
	if err != nil {
		return err
	}
	comp, _ := cfg.Compile()
	d, err := newDaemon(cfg, comp, log)
	if err != nil {
		return err
	}
	for _, s := range []string{m.Spec, m.ISpec} {
		os.Chmod(strings.TrimPrefix(s, "unix:"), 0o666)
	}
	m.d = d
	return nil
}
