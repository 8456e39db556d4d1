package milter_test

// The protocol tests drive a real milter.Server over loopback TCP with
// go-milter's client playing the MTA. The policy engine gets small fakes for
// its sources of facts (DNSBL, BATV, sent log, return path), so every
// verdict below follows from the fakes' data alone.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
	"github.com/backscatter-milter/backscatter-milter/internal/policytest"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// Client addresses with fixed DNSBL listings (see testEngine).
const (
	cleanIP      = "198.51.100.7"
	tagIP        = "192.0.2.4"  // any.bl.test, weight 4: tag
	quarantineIP = "192.0.2.7"  // any.bl.test, weight 7: quarantine
	backscatIP   = "192.0.2.66" // bounce.backscatter.test, weight 6, bounce-class senders only
)

// testEngine is the engine every test starts from: example.org is ours,
// BATV on, a sent log knowing sent-1@example.org, pass.test passes SPF.
func testEngine() *policy.Engine {
	s := policy.DefaultSettings()
	s.LocalDomains = []string{"example.org"}
	s.RelayHosts = []string{"mx1.example.org"}
	return &policy.Engine{
		Settings: s,
		Lists: policytest.Lists{Listed: map[netip.Addr][]policy.Listing{
			netip.MustParseAddr(tagIP):        {{Zone: "any.bl.test", Weight: 4, Detail: "127.0.0.2"}},
			netip.MustParseAddr(quarantineIP): {{Zone: "any.bl.test", Weight: 7, Detail: "127.0.0.2"}},
			netip.MustParseAddr(backscatIP):   {{Zone: "bounce.backscatter.test", Weight: 6, Detail: "127.0.0.2"}},
		}},
		Tagger:     policytest.Tagger{},
		Sent:       policytest.NewSent("sent-1@example.org"),
		Auth:       policytest.Auth{"pass.test": "pass", "fail.test": "fail"},
		AuthMemory: policy.NewAuthMemory(100, time.Hour),
	}
}

// recorder is the Observer: it keeps what the metrics side would see.
type recorder struct {
	mu       sync.Mutex
	verdicts []seenVerdict
	starts   int
	ends     int
	errors   map[string]int
}

// seenVerdict copies what a verdict was based on at the moment it was taken.
type seenVerdict struct {
	stage, action string
	session       string
	queueID       string
	rcpts         []string
	rejected      []string
	headers       []policy.Header
	body          int
	evidence      []string
}

func (r *recorder) Verdict(t *policy.Transaction, v *policy.Verdict) {
	sv := seenVerdict{stage: string(v.Stage), action: v.Action.String(), session: t.SessionID, queueID: t.QueueID,
		rejected: append([]string(nil), t.Rejected...), headers: append([]policy.Header(nil), t.Headers...),
		body: len(t.Body), evidence: v.Evidence.Names()}
	for _, rc := range t.Recipients {
		sv.rcpts = append(sv.rcpts, rc.Addr)
	}
	r.mu.Lock()
	r.verdicts = append(r.verdicts, sv)
	r.mu.Unlock()
}

func (r *recorder) SessionStart() { r.mu.Lock(); r.starts++; r.mu.Unlock() }
func (r *recorder) SessionEnd()   { r.mu.Lock(); r.ends++; r.mu.Unlock() }
func (r *recorder) Error(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errors == nil {
		r.errors = map[string]int{}
	}
	r.errors[kind]++
}

func (r *recorder) errorCount(kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errors[kind]
}

func (r *recorder) all() []seenVerdict {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seenVerdict(nil), r.verdicts...)
}

type harness struct {
	tb   testing.TB
	srv  *milter.Server
	addr string
	logs *observer.ObservedLogs
	json *mtatest.LockedBuffer
	rec  *recorder
}

// start serves eng on a loopback port until the test ends. opts may adjust
// the options (Role, OnError, limits) before the server is built.
func start(tb testing.TB, eng *policy.Engine, opts func(*milter.Options)) *harness {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return startOn(tb, ln, eng, opts)
}

// startOn is start on a listener of the caller's (milter.Listen's).
func startOn(tb testing.TB, ln net.Listener, eng *policy.Engine, opts func(*milter.Options)) *harness {
	tb.Helper()
	obsCore, logs := observer.New(zapcore.DebugLevel)
	buf := &mtatest.LockedBuffer{}
	jsonCore := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), buf, zapcore.DebugLevel)
	h := &harness{tb: tb, logs: logs, json: buf, rec: &recorder{}}
	o := milter.Options{
		Engine:   func() *policy.Engine { return eng },
		Log:      zap.New(zapcore.NewTee(obsCore, jsonCore)),
		Observer: h.rec,
	}
	if opts != nil {
		opts(&o)
	}
	h.srv = milter.NewServer(o)
	h.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ln) }()
	tb.Cleanup(func() {
		h.srv.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			tb.Error("Serve did not return after Close")
		}
	})
	return h
}

// mtaProtocols is what a modern MTA offers: every no-reply flag, skip, and
// header values with their leading space.
const mtaProtocols = gomilter.OptNoReplies | gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom |
	gomilter.OptNoRcptTo | gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH | gomilter.OptNoUnknown |
	gomilter.OptNoData | gomilter.OptSkip | gomilter.OptRcptRej | gomilter.OptHeaderLeadingSpace

func (h *harness) client(extra ...gomilter.Option) *gomilter.Client {
	opts := append([]gomilter.Option{
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
		gomilter.WithProtocols(mtaProtocols),
		gomilter.WithReadTimeout(20 * time.Second),
		gomilter.WithWriteTimeout(20 * time.Second),
	}, extra...)
	return gomilter.NewClient("tcp", h.addr, opts...)
}

// conn opens an MTA session and sends connect and HELO for a client.
func (h *harness) conn(macros *gomilter.MacroBag, clientIP, helo string) *gomilter.ClientSession {
	h.tb.Helper()
	s, err := h.client().Session(macros)
	if err != nil {
		h.tb.Fatalf("session: %v", err)
	}
	h.tb.Cleanup(func() { s.Close() })
	fam := gomilter.FamilyInet
	if strings.Contains(clientIP, ":") {
		fam = gomilter.FamilyInet6
	}
	macros.Set(gomilter.MacroClientAddr, clientIP)
	if _, err := s.Conn("client.test", fam, 25, clientIP); err != nil {
		h.tb.Fatalf("conn: %v", err)
	}
	if _, err := s.Helo(helo); err != nil {
		h.tb.Fatalf("helo: %v", err)
	}
	return s
}

type rcpt struct{ addr, args string }

// message is one SMTP transaction as the MTA reports it to the milter.
type message struct {
	from, fromArgs string
	rcpts          []rcpt
	queueID        string // the {i} macro, given from DATA on (as Postfix does)
	headers        [][2]string
	body           []byte
}

type result struct {
	mail  *gomilter.Action
	rcpts []*gomilter.Action
	mods  []gomilter.ModifyAction
	end   *gomilter.Action // nil when the message never reached end of data
	skip  bool             // the milter asked for no more body chunks
}

// send runs one transaction on s, from MAIL to end of message. A
// transaction whose every recipient was refused is aborted, as an MTA does.
func (h *harness) send(s *gomilter.ClientSession, macros *gomilter.MacroBag, m message) result {
	h.tb.Helper()
	var r result
	var err error
	if r.mail, err = s.Mail(m.from, m.fromArgs); err != nil {
		h.tb.Fatalf("mail: %v", err)
	}
	if r.mail.StopProcessing() {
		if err := s.Abort(nil); err != nil {
			h.tb.Fatalf("abort: %v", err)
		}
		return r
	}
	accepted := 0
	for _, rc := range m.rcpts {
		act, err := s.Rcpt(rc.addr, rc.args)
		if err != nil {
			h.tb.Fatalf("rcpt %s: %v", rc.addr, err)
		}
		r.rcpts = append(r.rcpts, act)
		if !act.StopProcessing() {
			accepted++
		}
	}
	if accepted == 0 {
		if err := s.Abort(nil); err != nil {
			h.tb.Fatalf("abort: %v", err)
		}
		return r
	}
	if m.queueID != "" {
		macros.Set(gomilter.MacroQueueId, m.queueID)
	}
	if _, err := s.DataStart(); err != nil {
		h.tb.Fatalf("data: %v", err)
	}
	for _, hf := range m.headers {
		if _, err := s.HeaderField(hf[0], hf[1], nil); err != nil {
			h.tb.Fatalf("header %s: %v", hf[0], err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		h.tb.Fatalf("eoh: %v", err)
	}
	body := m.body
	if len(body) == 0 {
		body = []byte("\r\n") // the client's End wants one body chunk first
	}
	for len(body) > 0 {
		n := min(len(body), int(gomilter.DataSize64K))
		if _, err := s.BodyChunk(body[:n]); err != nil {
			h.tb.Fatalf("body: %v", err)
		}
		body = body[n:]
		if s.Skip() {
			r.skip = true
			break
		}
	}
	if r.mods, r.end, err = s.End(); err != nil {
		h.tb.Fatalf("end: %v", err)
	}
	macros.Set(gomilter.MacroQueueId, "")
	return r
}

// deliver runs m in a fresh MTA session of its own.
func (h *harness) deliver(clientIP string, m message) result {
	h.tb.Helper()
	macros := gomilter.NewMacroBag()
	s := h.conn(macros, clientIP, "client.test")
	r := h.send(s, macros, m)
	s.Close()
	return r
}

// verdictLine is one "verdict" log line, read from the observed entry.
type verdictLine struct {
	fields map[string]any
}

func (v verdictLine) str(k string) string {
	s, _ := v.fields[k].(string)
	return s
}

func (v verdictLine) list(k string) []string {
	var out []string
	switch l := v.fields[k].(type) {
	case []any:
		for _, x := range l {
			out = append(out, fmt.Sprint(x))
		}
	case []string:
		out = l
	}
	return out
}

// evidence returns "name(weight)" per evidence entry.
func (v verdictLine) evidence() []string {
	var out []string
	l, _ := v.fields["evidence"].([]any)
	for _, x := range l {
		m, _ := x.(map[string]any)
		out = append(out, fmt.Sprintf("%v(%v)", m["name"], m["weight"]))
	}
	return out
}

func (h *harness) verdicts() []verdictLine {
	var out []verdictLine
	for _, e := range h.logs.FilterMessage("verdict").All() {
		out = append(out, verdictLine{e.ContextMap()})
	}
	return out
}

// waitVerdicts waits for n verdict lines: lines logged on abort or close
// have no reply the client could wait for.
func (h *harness) waitVerdicts(n int) []verdictLine {
	h.tb.Helper()
	var v []verdictLine
	if !await.True(10*time.Second, func() bool { v = h.verdicts(); return len(v) >= n }) {
		h.tb.Fatalf("%d verdict lines, want %d; log:\n%s", len(v), n, h.json.String())
	}
	return v
}

// jsonLines checks that every line of the JSON log parses on its own and
// returns them.
func (h *harness) jsonLines() []map[string]any {
	h.tb.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(h.json.String(), "\n"), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			h.tb.Fatalf("log line is not JSON (%v): %q", err, l)
		}
		out = append(out, m)
	}
	return out
}

func jsonValid(line string) bool { return json.Valid([]byte(line)) }

func modString(ms []gomilter.ModifyAction) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.String())
	}
	return out
}

// dsnHeaders and dsnBody are policytest.DSN, a bounce of an original with
// the given Message-ID that passed relay, in the harness's shapes.
func dsnHeaders() [][2]string {
	hs, _ := policytest.DSN("orig@example.org", "relay.remote.test")
	out := make([][2]string, len(hs))
	for i, h := range hs {
		out[i] = [2]string{h.Name, h.Value}
	}
	return out
}

func dsnBody(msgID, relay string, statusFields ...string) []byte {
	_, body := policytest.DSN(msgID, relay, statusFields...)
	return body
}
