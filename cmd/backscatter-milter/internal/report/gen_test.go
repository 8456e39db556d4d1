package report

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// The generator writes verdict lines through milter.LogVerdict itself, so
// the report is tested against the real log format, and tallies what each
// line must add to the report from what it knows it wrote.

type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time                         { return c.t }
func (c *fixedClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

// want is the expected report, kept as plain maps.
type want struct {
	lines, verdicts, other, malformed, outside int
	msgTotal                                   int
	byAction                                   map[string]int
	byDir                                      map[string]int
	byDirAction                                map[string]map[string]int
	rcptRejected, rcptRejectedBounce           int
	events                                     int
	callouts                                   int
	refusedRcpt                                int
	blockedEOM                                 map[string]int
	real                                       int
	realBy                                     map[string]int
	ownNDR                                     map[string]int
	ndrSuppressed, ndrStripped                 int
	observe, wouldRcpt                         int
	wouldMsg                                   map[string]int
	wouldBlock, wouldRefuse                    int
	wouldSuppress, wouldStrip                  int
	fired, decided                             map[string]int
	clients, sources, zones, targets           map[string]int
	observeSources                             map[string]int
	hours, days                                map[string]map[string]int
	held, released, deleted, unmatched         int
	heldBy, releasedBy                         map[string]int
	heldList                                   []HeldMessage // in log order: oldest first
}

func newWant() *want {
	return &want{byAction: map[string]int{}, byDir: map[string]int{},
		byDirAction: map[string]map[string]int{"inbound": {}, "outbound": {}},
		blockedEOM:  map[string]int{}, realBy: map[string]int{}, ownNDR: map[string]int{}, wouldMsg: map[string]int{},
		fired: map[string]int{}, decided: map[string]int{}, clients: map[string]int{}, sources: map[string]int{},
		zones: map[string]int{}, targets: map[string]int{}, hours: map[string]map[string]int{}, days: map[string]map[string]int{},
		observeSources: map[string]int{}, heldBy: map[string]int{}, releasedBy: map[string]int{}}
}

// genLine is one line of the generated log and what it adds to the report.
type genLine struct {
	text  []byte
	at    time.Time // zero for lines that are not verdicts
	apply func(w *want)
	// event is the queue ID of an operator's event line; verdict the
	// queue ID of the quarantine verdict it is about.
	event, verdict string
}

type generator struct {
	rng   *rand.Rand
	clk   *fixedClock
	buf   bytes.Buffer
	log   *zap.Logger
	lines []genLine
	sess  int
}

func newGenerator(seed uint64, start time.Time) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), clk: &fixedClock{start}}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	g.log = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(&g.buf), zap.InfoLevel), zap.WithClock(g.clk))
	return g
}

var (
	genClients = []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "203.0.113.7", "203.0.113.8", "2001:db8::25", "192.0.2.44"}
	genTargets = []string{"alice@example.org", "bob@example.org", "Carol@Example.org", "info@example.org", "sales@example.org"}
)

func (g *generator) pick(s []string) string { return s[g.rng.IntN(len(s))] }

// emit logs one verdict and records its expected contribution.
func (g *generator) emit(t *policy.Transaction, v *policy.Verdict, apply func(w *want, at time.Time)) {
	g.buf.Reset()
	milter.LogVerdict(g.log, t, v, 1500*time.Microsecond)
	at := g.clk.t
	g.lines = append(g.lines, genLine{text: bytes.Clone(bytes.TrimRight(g.buf.Bytes(), "\n")), at: at, apply: func(w *want) {
		w.lines++
		w.verdicts++
		for _, e := range v.Evidence {
			w.fired[e.Name]++
			if z, ok := strings.CutPrefix(e.Name, "dnsbl:"); ok {
				w.zones[z]++
			}
		}
		if v.Mode == policy.Observe {
			w.observe++
		}
		apply(w, at)
	}})
	g.clk.t = g.clk.t.Add(time.Duration(1+g.rng.IntN(13)) * time.Second)
}

func (g *generator) other(text string) {
	g.lines = append(g.lines, genLine{text: []byte(text), apply: func(w *want) { w.lines++; w.other++ }})
}

func (g *generator) broken(text []byte) {
	g.lines = append(g.lines, genLine{text: text, apply: func(w *want) { w.lines++; w.malformed++ }})
}

func volume(w *want, at time.Time, action string) {
	at = at.UTC()
	h, d := at.Format("2006-01-02T15"), at.Format("2006-01-02")
	if w.hours[h] == nil {
		w.hours[h] = map[string]int{}
	}
	if w.days[d] == nil {
		w.days[d] = map[string]int{}
	}
	w.hours[h][action]++
	w.days[d][action]++
}

func message(w *want, at time.Time, dir, action string) {
	w.msgTotal++
	w.byAction[action]++
	w.byDir[dir]++
	w.byDirAction[dir][action]++
	volume(w, at, action)
}

func (g *generator) tx(ip, sender string, rcpts ...string) *policy.Transaction {
	g.sess++
	t := &policy.Transaction{SessionID: fmt.Sprintf("s%06d", g.sess), QueueID: fmt.Sprintf("Q%05X", g.sess),
		Connection: policy.Connection{ClientIP: netip.MustParseAddr(ip), ClientName: "host.example", Helo: "helo.example"},
		Sender:     sender}
	for _, r := range rcpts {
		t.Recipients = append(t.Recipients, policy.Recipient{Addr: r})
	}
	return t
}

// held records a quarantine verdict the report must list, and what an
// operator did with it: "" (nothing), EventReleased or EventDeleted.
func held(w *want, t *policy.Transaction, v *policy.Verdict, at time.Time, deciding, fate string) {
	w.held++
	w.heldBy[deciding]++
	status := "held"
	switch fate {
	case EventReleased:
		w.released++
		w.releasedBy[deciding]++
		status = fate
	case EventDeleted:
		w.deleted++
		status = fate
	}
	var rcpts []string
	for _, r := range t.Recipients {
		rcpts = append(rcpts, r.Addr)
	}
	op := ""
	if fate != "" {
		op = "op-" + t.QueueID
	}
	w.heldList = append(w.heldList, HeldMessage{QueueID: t.QueueID, Time: at, Stage: string(v.Stage), ClientIP: t.ClientIP.String(),
		Sender: t.Sender, Rcpts: rcpts, Score: v.Score, Deciding: deciding, Status: status, Operator: op})
}

// operator writes the event line of a release or deletion through
// LogEvent, the writer the quarantine command uses.
func (g *generator) operator(qid, fate string) {
	g.buf.Reset()
	LogEvent(g.log, Event{Event: fate, QueueID: qid, Operator: "op-" + qid, MTA: "postfix"})
	g.lines = append(g.lines, genLine{text: bytes.Clone(bytes.TrimRight(g.buf.Bytes(), "\n")), event: qid,
		apply: func(w *want) { w.lines++; w.events++ }})
	g.clk.t = g.clk.t.Add(time.Second)
}

// fate picks what an operator does with a held message.
func (g *generator) fate() string {
	return []string{"", "", EventReleased, EventDeleted}[g.rng.IntN(4)]
}

// event writes one randomly chosen transaction: one to three lines. The
// expected figures are written out per case, from what the case is (a
// forged bounce, a real one, ...), not from the code under test.
func (g *generator) event() {
	ip, rcpt := g.pick(genClients), g.pick(genTargets)
	lrcpt := strings.ToLower(rcpt)
	switch k := g.rng.IntN(17); k {
	case 0, 1, 2: // ordinary inbound mail
		t := g.tx(ip, "user@example.net", rcpt)
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM}, func(w *want, at time.Time) { message(w, at, "inbound", "accept") })
	case 3: // outbound
		t := g.tx("127.0.0.1", "alice@example.org", "x@example.net")
		t.Direction, t.Auth = policy.Outbound, "alice"
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM, Notes: []string{"sender signed"}}, func(w *want, at time.Time) { message(w, at, "outbound", "accept") })
	case 4: // forged bounce refused at RCPT, then the callout line of the session's reset
		t := g.tx(ip, "", rcpt)
		ev := policy.Evidences{{Name: "batv:missing", Weight: 10}}
		listed := g.rng.IntN(2) == 0
		if listed {
			ev = append(policy.Evidences{{Name: "dnsbl:ips.backscatterer.org", Weight: 6, Detail: "127.0.0.2"}}, ev...)
		}
		g.emit(t, &policy.Verdict{Stage: policy.StageRcpt, Action: policy.Reject, Would: policy.Reject, Recipient: rcpt,
			Score: ev.Score(), Evidence: ev, Reply: &policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "rejected as backscatter"}},
			func(w *want, at time.Time) {
				w.rcptRejected++
				w.rcptRejectedBounce++
				w.refusedRcpt++
				w.sources[ip]++
				w.targets[lrcpt]++
				w.clients[ip]++
				w.decided["batv:missing"]++
				volume(w, at, "reject")
			})
		t.Recipients, t.Rejected = nil, []string{rcpt}
		cev := policy.Evidences{{Name: "callout", Weight: 0, Detail: "null-sender transaction ended without DATA"}}
		if listed {
			cev = append(cev, ev[0])
		}
		g.emit(t, &policy.Verdict{Stage: policy.StageCallout, Evidence: cev, Score: cev.Score()}, func(w *want, at time.Time) { w.callouts++ })
	case 5: // forged bounce quarantined at end of message; an operator may release or delete it
		sender := []string{"", "MAILER-DAEMON@victim.example", "postmaster@victim.example"}[g.rng.IntN(3)]
		t := g.tx(ip, sender, rcpt)
		ev := policy.Evidences{{Name: "bounce:not-ours", Weight: 6}}
		v := &policy.Verdict{Stage: policy.StageEOM, Action: policy.Quarantine, Would: policy.Quarantine, Score: 6, Evidence: ev,
			Mods: policy.Modifications{QuarantineReason: "x"}}
		fate := g.fate()
		g.emit(t, v, func(w *want, at time.Time) {
			message(w, at, "inbound", "quarantine")
			w.clients[ip]++
			w.decided["bounce:not-ours"]++
			held(w, t, v, at, "bounce:not-ours", fate)
			if fate != EventReleased { // a released message was no backscatter
				w.blockedEOM["quarantine"]++
				w.sources[ip]++
				w.targets[lrcpt]++
			}
		})
		if fate != "" {
			g.lines[len(g.lines)-1].verdict = t.QueueID
			g.operator(t.QueueID, fate)
		}
	case 6: // forged bounce from a listed host rejected at end of message, two recipients
		rcpt2 := g.pick(genTargets)
		t := g.tx(ip, "", rcpt, rcpt2)
		ev := policy.Evidences{{Name: "dnsbl:zen.example", Weight: 6}, {Name: "bounce:not-ours", Weight: 6}}
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM, Action: policy.Reject, Would: policy.Reject, Score: 12, Evidence: ev,
			Reply: &policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "rejected"}}, func(w *want, at time.Time) {
			message(w, at, "inbound", "reject")
			w.blockedEOM["reject"]++
			w.sources[ip]++
			w.targets[lrcpt]++
			w.targets[strings.ToLower(rcpt2)]++
			w.clients[ip]++
			w.decided["dnsbl:zen.example"]++
		})
	case 7: // real bounce, proven by BATV and the sent log, or by our relay
		t := g.tx(ip, "", rcpt)
		ev, by := policy.Evidences{{Name: "batv:ok", Weight: -10}, {Name: "bounce:ours", Weight: -10}}, "batv:ok"
		if g.rng.IntN(3) == 0 {
			ev, by = policy.Evidences{{Name: "bounce:ours-relay", Weight: -6}}, "bounce:ours-relay"
		}
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM, Score: ev.Score(), Evidence: ev}, func(w *want, at time.Time) {
			message(w, at, "inbound", "accept")
			w.real++
			w.realBy[by]++
		})
	case 8: // auto-reply to mail we did not send: tagged
		t := g.tx(ip, "ivan@example.net", rcpt)
		ev := policy.Evidences{{Name: "autoreply:not-ours", Weight: 4}}
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM, Action: policy.Tag, Would: policy.Tag, Score: 4, Evidence: ev}, func(w *want, at time.Time) {
			message(w, at, "inbound", "tag")
			w.clients[ip]++
			w.decided["autoreply:not-ours"]++
		})
	case 9: // auto-reply from a listed host: quarantined, it counts as backscatter blocked
		t := g.tx(ip, "ivan@example.net", rcpt)
		ev := policy.Evidences{{Name: "dnsbl:zen.example", Weight: 3}, {Name: "autoreply:not-ours", Weight: 4}}
		v := &policy.Verdict{Stage: policy.StageEOM, Action: policy.Quarantine, Would: policy.Quarantine, Score: 7, Evidence: ev}
		fate := g.fate()
		g.emit(t, v, func(w *want, at time.Time) {
			message(w, at, "inbound", "quarantine")
			w.clients[ip]++
			w.decided["autoreply:not-ours"]++
			held(w, t, v, at, "autoreply:not-ours", fate)
			if fate != EventReleased {
				w.blockedEOM["quarantine"]++
				w.sources[ip]++
				w.targets[lrcpt]++
			}
		})
		if fate != "" {
			g.lines[len(g.lines)-1].verdict = t.QueueID
			g.operator(t.QueueID, fate)
		}
	case 10: // NDR suppression or success-DSN stripping on unauthenticated mail, or what observe mode would do
		t := g.tx(ip, "someone@forged.example", rcpt)
		ndr := []policy.NDROutcome{policy.NDRSuppressed, policy.NDRSuccessDSNStripped, policy.NDRWouldSuppress, policy.NDRWouldStripSuccessDSN}[g.rng.IntN(4)]
		mode := policy.Enforce
		if ndr == policy.NDRWouldSuppress || ndr == policy.NDRWouldStripSuccessDSN {
			mode = policy.Observe
		}
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM, Mode: mode, Auth: policy.Unauthenticated, AuthWhy: "spf=none", NDR: ndr}, func(w *want, at time.Time) {
			message(w, at, "inbound", "accept")
			switch ndr {
			case policy.NDRSuppressed:
				w.ndrSuppressed++
			case policy.NDRSuccessDSNStripped:
				w.ndrStripped++
			case policy.NDRWouldSuppress:
				w.wouldSuppress++
			default:
				w.wouldStrip++
			}
		})
	case 11: // observe mode: a forged bounce only tagged
		t := g.tx(ip, "", rcpt)
		ev := policy.Evidences{{Name: "bounce:not-ours", Weight: 6}}
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM, Mode: policy.Observe, Action: policy.Tag, Would: policy.Quarantine, Score: 6, Evidence: ev}, func(w *want, at time.Time) {
			message(w, at, "inbound", "tag")
			w.wouldMsg["quarantine"]++
			w.wouldBlock++
			w.observeSources[ip]++
			w.clients[ip]++
			w.decided["bounce:not-ours"]++
		})
	case 12: // observe mode at RCPT, then the message it let through: one transaction
		t := g.tx(ip, "", rcpt)
		ev := policy.Evidences{{Name: "batv:missing", Weight: 10}}
		g.emit(t, &policy.Verdict{Stage: policy.StageRcpt, Mode: policy.Observe, Would: policy.Reject, Recipient: rcpt, Score: 10, Evidence: ev}, func(w *want, at time.Time) {
			w.wouldRcpt++
			w.wouldRefuse++
			w.clients[ip]++        // the transaction, counted on its first line...
			w.observeSources[ip]++ // ...in each list
		})
		t.Recipients[0].Evidence = ev
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM, Mode: policy.Observe, Action: policy.Tag, Would: policy.Reject, Score: 10, Evidence: ev}, func(w *want, at time.Time) {
			message(w, at, "inbound", "tag")
			w.wouldMsg["reject"]++
			w.wouldBlock++
			w.decided["batv:missing"]++
		})
	case 13: // our own NDR to a forged sender, in the internal-bounce role
		t := g.tx("127.0.0.1", "", "forged@victim.example")
		t.Direction = policy.Outbound
		act := []policy.Action{policy.Discard, policy.Quarantine}[g.rng.IntN(2)]
		ev := policy.Evidences{{Name: "ndr:forged-sender", Weight: 10}}
		v := &policy.Verdict{Stage: policy.StageInternal, Action: act, Would: act, Score: 10, Evidence: ev}
		fate := ""
		if act == policy.Quarantine {
			fate = g.fate()
		}
		g.emit(t, v, func(w *want, at time.Time) {
			message(w, at, "outbound", act.String())
			w.decided["ndr:forged-sender"]++
			if act == policy.Quarantine {
				held(w, t, v, at, "ndr:forged-sender", fate)
			}
			if fate != EventReleased {
				w.ownNDR[act.String()]++
			}
		})
		if fate != "" {
			g.lines[len(g.lines)-1].verdict = t.QueueID
			g.operator(t.QueueID, fate)
		}
	case 14: // allowlisted client
		t := g.tx(ip, "", rcpt)
		t.Allowed = "client 198.51.100.0/24"
		g.emit(t, &policy.Verdict{Stage: policy.StageEOM, Notes: []string{"allowlisted: client 198.51.100.0/24"}}, func(w *want, at time.Time) {
			message(w, at, "inbound", "accept")
		})
	case 15: // one recipient refused at RCPT, the other quarantined at end of message: one transaction
		rcpt2 := g.pick(genTargets)
		t := g.tx(ip, "", rcpt)
		ev := policy.Evidences{{Name: "batv:bad", Weight: 10}}
		g.emit(t, &policy.Verdict{Stage: policy.StageRcpt, Action: policy.Reject, Would: policy.Reject, Recipient: rcpt, Score: 10, Evidence: ev,
			Reply: &policy.Reply{Code: 550, Enhanced: "5.7.1", Text: "bad tag"}}, func(w *want, at time.Time) {
			w.rcptRejected++
			w.rcptRejectedBounce++
			w.refusedRcpt++
			w.targets[lrcpt]++
			w.clients[ip]++ // the transaction's source and client, once
			w.sources[ip]++
			w.decided["batv:bad"]++
			volume(w, at, "reject")
		})
		t.Recipients, t.Rejected = []policy.Recipient{{Addr: rcpt2}}, []string{rcpt}
		qev := policy.Evidences{{Name: "bounce:not-ours", Weight: 6}}
		v := &policy.Verdict{Stage: policy.StageEOM, Action: policy.Quarantine, Would: policy.Quarantine, Score: 6, Evidence: qev}
		g.emit(t, v, func(w *want, at time.Time) {
			message(w, at, "inbound", "quarantine")
			w.decided["bounce:not-ours"]++
			held(w, t, v, at, "bounce:not-ours", "")
			w.blockedEOM["quarantine"]++
			w.targets[strings.ToLower(rcpt2)]++
		})
	case 16: // an operator releases a message held before the log began
		g.sess++
		g.operator(fmt.Sprintf("OLD%05X", g.sess), EventReleased)
	}
}

// generate writes n transactions and some noise: other log lines, text,
// truncated and mistyped verdict lines, a syslog-prefixed verdict.
func generate(seed uint64, n int, start time.Time) []genLine {
	g := newGenerator(seed, start)
	for i := 0; i < n; i++ {
		g.event()
		switch {
		case i%97 == 0:
			g.buf.Reset()
			g.log.Info("listening", zap.String("listen", "inet:127.0.0.1:8899"), zap.String("role", "smtpd"))
			g.other(strings.TrimSpace(g.buf.String()))
		case i%211 == 0:
			g.other("this is not JSON at all")
		case i%307 == 0:
			last := g.lines[len(g.lines)-1]
			if last.at.IsZero() {
				break
			}
			g.broken(last.text[:len(last.text)/2]) // a line cut short (disk full, rotation)
		case i%401 == 0:
			g.broken([]byte(`{"level":"info","ts":"2026-03-01T00:00:00Z","msg":"verdict","stage":"eom","action":"accept","score":"high"}`))
		case i%503 == 0:
			g.broken([]byte(`{"level":"info","msg":"verdict","stage":"eom","action":"annihilate"}`))
		case i%601 == 0:
			g.broken([]byte(`{"level":"info","msg":"started","oops`))
		}
	}
	return g.lines
}

// expect tallies what a report over lines should say, counting verdicts
// only inside [since, until) when either is set.
func expect(lines []genLine, since, until time.Time) *want {
	w := newWant()
	counted := map[string]bool{} // quarantine verdicts counted, by queue ID
	for _, l := range lines {
		if !l.at.IsZero() && (!since.IsZero() || !until.IsZero()) {
			if !since.IsZero() && l.at.Before(since) || !until.IsZero() && !l.at.Before(until) {
				w.lines++
				w.outside++
				continue
			}
		}
		if l.verdict != "" {
			counted[l.verdict] = true
		}
		if l.event != "" && !counted[l.event] {
			w.unmatched++
		}
		l.apply(w)
	}
	return w
}
