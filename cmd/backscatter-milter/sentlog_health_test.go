package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSentLogOutageVisible: a sent log that fails (here a Redis nobody
// listens on) shows on /healthz as degraded with the dependency named, in
// the error and degraded metrics by backend and operation, and in one
// throttled warning for many failures; mail decisions go on.
func TestSentLogOutageVisible(t *testing.T) {
	m := startMilter(t, "sent_log: { backend: redis, redis: { addr: \"127.0.0.1:1\" } }\n"+testPolicy(t))
	routeLibraryLogs(m.d.log) // as serve does: go-redis warns through our log
	addr := m.d.metrics.addr
	if body := healthz(t, addr); body != "ok\n" {
		t.Fatalf("/healthz before any failure: %q", body)
	}
	st := m.d.rt.Load().store
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if _, err := st.Seen(ctx, "x@example.org"); err == nil {
			t.Fatal("Seen on a dead Redis: no error")
		}
		cancel()
	}
	if err := st.Record(context.Background(), "y@example.org", time.Now()); err == nil {
		t.Fatal("Record on a dead Redis: no error")
	}
	body := healthz(t, addr)
	if !strings.HasPrefix(body, "degraded\n") || !strings.Contains(body, "sent_log (redis): record:") {
		t.Errorf("/healthz with Redis down: %q", body)
	}
	fams := scrape(t, "http://"+addr+"/metrics")
	for name, want := range map[string]map[string]float64{
		"backscatter_milter_sent_log_errors_total": {"backend=redis,op=seen": 5, "backend=redis,op=record": 1, "backend=redis,op=open": 0},
		"backscatter_milter_sent_log_degraded":     {"backend=redis": 1},
	} {
		for l, v := range want {
			if f := fams[name]; f == nil || f.values[l] != v {
				t.Errorf("%s{%s} = %v, want %v", name, l, fams[name], v)
			}
		}
	}
	m.stop()
	raw, _ := os.ReadFile(m.LogFile)
	if n := bytes.Count(raw, []byte("sent log failing")); n != 1 {
		t.Errorf("%d warnings for 6 failures in a minute, want 1 (throttled)\n%s", n, raw)
	}
	if n := bytes.Count(raw, []byte("failed to dial")); n > 1 {
		t.Errorf("go-redis logged %d dial failures for 6 operations in a minute, want at most 1 (throttled)", n)
	}
}
