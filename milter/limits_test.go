package milter_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// capRecorder counts refused connections and decision timings on top of
// the harness recorder.
type capRecorder struct {
	*recorder
	refused atomic.Int64
	decided sync.Map // stage → *atomic.Int64
}

func (c *capRecorder) ConnRefused() { c.refused.Add(1) }
func (c *capRecorder) Decided(st policy.Stage, d time.Duration) {
	v, _ := c.decided.LoadOrStore(st, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (c *capRecorder) decisions(st policy.Stage) int64 {
	if v, ok := c.decided.Load(st); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// TestConnectionCap: past MaxConnections a connection is closed at once and
// counted; once one closes, the next is served.
func TestConnectionCap(t *testing.T) {
	rec := &capRecorder{recorder: &recorder{}}
	h := start(t, testEngine(), func(o *milter.Options) { o.MaxConnections = 3; o.Observer = rec })
	var held []*gomilter.ClientSession
	for i := 0; i < 3; i++ {
		s, err := h.client().Session(gomilter.NewMacroBag())
		if err != nil {
			t.Fatalf("session %d under the cap: %v", i, err)
		}
		held = append(held, s)
	}
	for i := 0; i < 2; i++ {
		if s, err := h.client().Session(gomilter.NewMacroBag()); err == nil {
			s.Close()
			t.Fatalf("a connection over the cap was served")
		}
	}
	await.True(10*time.Second, func() bool { return rec.refused.Load() >= 2 })
	if got := rec.refused.Load(); got != 2 {
		t.Errorf("refused %d, want 2", got)
	}
	held[0].Close()
	if !await.True(10*time.Second, func() bool { return h.srv.Conns() <= 2 }) {
		t.Fatalf("closed connection still counted: %d open", h.srv.Conns())
	}
	r := h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}})
	wantAction(t, "after one closed", r.end, gomilter.ActionAccept, "")
	if rec.decisions(policy.StageEOM) != 1 {
		t.Errorf("eom decisions timed %d, want 1", rec.decisions(policy.StageEOM))
	}
	for _, s := range held[1:] {
		s.Close()
	}
	if n := len(h.logs.FilterMessageSnippet("limits.max_connections").All()); n != 1 {
		t.Errorf("%d cap warnings, want 1 (throttled)", n)
	}
}

// TestRecipientBytesCap: a recipient past the per-message byte cap is
// answered 452 4.5.3 and not kept; the message goes on with the others.
func TestRecipientBytesCap(t *testing.T) {
	h := start(t, testEngine(), func(o *milter.Options) { o.MaxRcptBytes = 4096 })
	big := strings.Repeat("a", 3000) + "@example.org"
	r := h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}, {big, ""}, {"carol@example.org", ""}, {big, ""}}})
	want := []gomilter.ActionType{gomilter.ActionContinue, gomilter.ActionContinue, gomilter.ActionContinue, gomilter.ActionRejectWithCode}
	for i, a := range r.rcpts {
		if a.Type != want[i] {
			t.Errorf("rcpt %d: %v, want %v", i, a.Type, want[i])
		}
	}
	if a := r.rcpts[3]; a.SMTPCode != 452 || !strings.Contains(a.SMTPReply, "4.5.3") {
		t.Errorf("over the cap: %d %q, want 452 4.5.3", a.SMTPCode, a.SMTPReply)
	}
	wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
	v := onlyVerdict(t, h)
	if got := v.list("rcpts"); len(got) != 3 {
		t.Errorf("rcpts kept %d, want 3", len(got))
	}
}

// TestVerdictLineCap: a verdict line carries at most MaxLogRcptBytes of
// recipients and counts the rest.
func TestVerdictLineCap(t *testing.T) {
	h := start(t, testEngine(), nil)
	var rcpts []rcpt
	for i := 0; i < 2000; i++ {
		rcpts = append(rcpts, rcpt{fmt.Sprintf("user%04d.%s@example.org", i, strings.Repeat("x", 40)), ""})
	}
	r := h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: rcpts})
	wantAction(t, "eom", r.end, gomilter.ActionAccept, "")
	v := onlyVerdict(t, h)
	kept := v.list("rcpts")
	n := 0
	for _, a := range kept {
		n += len(a)
	}
	if n > milter.MaxLogRcptBytes || len(kept) == 0 {
		t.Errorf("verdict line carries %d recipients, %d bytes; cap %d", len(kept), n, milter.MaxLogRcptBytes)
	}
	if cut, _ := v.fields["rcpts_not_logged"].(int64); int(cut)+len(kept) != 2000 {
		t.Errorf("rcpts_not_logged %v + %d logged != 2000", v.fields["rcpts_not_logged"], len(kept))
	}
}

// baseRSS returns the RSS after handing freed memory back to the OS, so
// that what earlier tests left does not count.
func baseRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return vmRSS()
}

// stallConns opens n raw connections that each send a length claiming
// maxPacket and then fill bytes of it, and stall. It returns the
// connections the server kept open.
func stallConns(t *testing.T, addr string, n, fill int) []net.Conn {
	t.Helper()
	payload := make([]byte, 4+fill)
	binary.BigEndian.PutUint32(payload, 1<<20+1000)
	payload[4] = 'B'
	var mu sync.Mutex
	var open []net.Conn
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write(payload); err != nil {
				c.Close()
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return open
}

// TestMemoryStalledConnections: connections stalled inside nearly 1 MiB
// packets cost at most what the cap lets in. The heavy figure (5,000
// connections at the default cap) is TestMemoryStalledConnectionsSoak.
func TestMemoryStalledConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement")
	}
	const conns, maxConns = 1000, 48
	// Each kept connection holds about 1 MiB; the garbage collector may
	// let the heap reach twice what is live on a busy machine.
	testStalled(t, conns, maxConns, 32<<20+maxConns*(2<<20))
}

func testStalled(t *testing.T, conns, maxConns int, budget int64) {
	rec := &capRecorder{recorder: &recorder{}}
	h := start(t, testEngine(), func(o *milter.Options) { o.MaxConnections = maxConns; o.Observer = rec; o.Log = zap.NewNop() })
	before := baseRSS()
	open := stallConns(t, h.addr, conns, 1<<20-64)
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	// Wait until the server has read what the kept connections sent.
	await.True(60*time.Second, func() bool { return h.srv.Conns() >= int64(maxConns) })
	time.Sleep(200 * time.Millisecond) // let the last reads land; RSS only grows
	peak := vmRSS()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d stalled connections, cap %d: %d kept by the server, %d refused; RSS %.1f → %.1f MiB (+%.1f MiB); heap in use %.1f MiB, stacks %.1f MiB, goroutines %d",
		conns, maxConns, h.srv.Conns(), rec.refused.Load(), float64(before)/(1<<20), float64(peak)/(1<<20), float64(peak-before)/(1<<20),
		float64(ms.HeapInuse)/(1<<20), float64(ms.StackInuse)/(1<<20), runtime.NumGoroutine())
	if h.srv.Conns() > int64(maxConns) {
		t.Errorf("server holds %d connections, cap %d", h.srv.Conns(), maxConns)
	}
	if rec.refused.Load() == 0 {
		t.Errorf("no connection refused")
	}
	if peak-before > budget {
		t.Errorf("RSS grew by %.1f MiB, bound %.1f MiB", float64(peak-before)/(1<<20), float64(budget)/(1<<20))
	}
	// And the server still serves once the flood is gone.
	for _, c := range open {
		c.Close()
	}
	open = nil
	await.True(30*time.Second, func() bool { return h.srv.Conns() == 0 })
	r := h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}})
	wantAction(t, "after the flood", r.end, gomilter.ActionAccept, "")
}

// TestMemoryHugeRecipients: 300 recipients of 1 MB each in one message
// (the guard lets a 1 MiB packet through) stay bounded: the first fits
// the per-message cap, the rest are answered 452, and nothing keeps the
// packets once read.
func TestMemoryHugeRecipients(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement")
	}
	h := start(t, testEngine(), nil)
	before := baseRSS()
	macros := gomilter.NewMacroBag()
	s := h.conn(macros, cleanIP, "client.test")
	if _, err := s.Mail("<>", ""); err != nil {
		t.Fatal(err)
	}
	addr := strings.Repeat("x", 1_000_000-len("@example.org")) + "@example.org"
	refused := 0
	var peak int64
	for i := 0; i < 300; i++ {
		a, err := s.Rcpt(addr, "")
		if err != nil {
			t.Fatalf("rcpt %d: %v", i, err)
		}
		if a.Type == gomilter.ActionRejectWithCode && a.SMTPCode == 452 {
			refused++
		}
		if i%30 == 0 {
			peak = max(peak, vmRSS())
		}
	}
	if _, err := s.DataStart(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BodyChunk([]byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.End(); err != nil {
		t.Fatal(err)
	}
	peak = max(peak, vmRSS())
	line := h.json.String()
	t.Logf("300 × 1 MB recipients: %d refused 452; RSS %.1f → %.1f MiB (+%.1f MiB); log %d bytes",
		refused, float64(before)/(1<<20), float64(peak)/(1<<20), float64(peak-before)/(1<<20), len(line))
	if refused != 299 {
		t.Errorf("%d recipients refused, want 299", refused)
	}
	if len(line) > 2*milter.MaxLogRcptBytes+4096 {
		t.Errorf("log is %d bytes for one message", len(line))
	}
	// The client holds its own copies of each 1 MB packet too.
	if peak-before > 96<<20 {
		t.Errorf("RSS grew by %.1f MiB", float64(peak-before)/(1<<20))
	}
}
