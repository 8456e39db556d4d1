package sent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
)

// events collects what a Health logs.
type events struct {
	mu sync.Mutex
	ev []Event
}

func (e *events) log(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev = append(e.ev, ev)
}

func (e *events) levels() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := map[string]int{}
	for _, ev := range e.ev {
		m[ev.Level]++
	}
	return m
}

func damagedFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + ".damaged-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBoltDamagedAtOpen: a file bbolt refuses is moved aside, reported at
// error level and counted, and the store starts afresh.
func TestBoltDamagedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sent.db")
	garbage := []byte(strings.Repeat("not a bolt file ", 1000))
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	var ev events
	h := NewHealth("embedded", ev.log)
	s, err := OpenBoltHealth(path, time.Hour, h)
	if err != nil {
		t.Fatalf("OpenBoltHealth on a damaged file: %v", err)
	}
	defer s.Close()
	moved := damagedFiles(t, path)
	if len(moved) != 1 {
		t.Fatalf("damaged files: %v, want one", moved)
	}
	if b, err := os.ReadFile(moved[0]); err != nil || !bytes.Equal(b, garbage) {
		t.Errorf("%s does not hold the damaged file (%v)", moved[0], err)
	}
	if h.Replacements() != 1 || h.Errors(OpOpen) != 1 || ev.levels()["error"] != 1 {
		t.Errorf("replacements %d, open errors %d, events %v", h.Replacements(), h.Errors(OpOpen), ev.levels())
	}
	ctx := context.Background()
	if err := s.Record(ctx, "<a@x>", time.Now()); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Seen(ctx, "a@x"); !ok || err != nil {
		t.Errorf("Seen after replacement = %v, %v", ok, err)
	}
}

// pageKinds returns the page ids of bbolt branch and leaf pages in the
// file: the page header is id (8), flags (2), count (2), overflow (4).
func pageKinds(t *testing.T, path string) (branch, leaf []int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const ps = 4096
	for id := int64(2); (id+1)*ps <= int64(len(b)); id++ {
		p := b[id*ps:]
		if int64(binary.LittleEndian.Uint64(p)) != id {
			continue
		}
		switch binary.LittleEndian.Uint16(p[8:]) {
		case 0x01:
			branch = append(branch, id)
		case 0x02:
			leaf = append(leaf, id)
		}
	}
	return branch, leaf
}

func randomPage(r *rand.Rand) []byte {
	p := make([]byte, 4096)
	for i := range p {
		p[i] = byte(r.UintN(256))
	}
	return p
}

// TestBoltDamagedLive damages the file under a running store in the ways a
// disk, a tool or a person does, and checks that no operation panics or
// hangs, that damage is replaced and reported, and that the store works
// again after it.
func TestBoltDamagedLive(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string)
		replace bool // the damage must be detected and the file replaced
		// emptyOK: an empty file at start is a new store to bbolt, not
		// damage.
		emptyOK bool
	}{
		{"meta pages", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r := rand.New(rand.NewPCG(1, 2))
			for id := int64(0); id < 2; id++ {
				if _, err := f.WriteAt(randomPage(r), id*4096); err != nil {
					t.Fatal(err)
				}
			}
		}, true, false},
		{"branch pages", func(t *testing.T, path string) {
			branch, _ := pageKinds(t, path)
			if len(branch) == 0 {
				t.Fatal("no branch page to damage: record more entries")
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r := rand.New(rand.NewPCG(3, 4))
			for _, id := range branch {
				if _, err := f.WriteAt(randomPage(r), id*4096); err != nil {
					t.Fatal(err)
				}
			}
		}, true, false},
		{"every page after the meta pages", func(t *testing.T, path string) {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r := rand.New(rand.NewPCG(5, 6))
			for off := int64(2 * 4096); off < st.Size(); off += 4096 {
				if _, err := f.WriteAt(randomPage(r), off); err != nil {
					t.Fatal(err)
				}
			}
		}, true, false},
		{"truncated to nothing", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, true, true},
		{"truncated to three pages", func(t *testing.T, path string) {
			if err := os.Truncate(path, 3*4096); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"truncated mid-page", func(t *testing.T, path string) {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, st.Size()/2+100); err != nil {
				t.Fatal(err)
			}
		}, true, false},
	}
	for _, c := range cases {
		for _, restart := range []bool{false, true} {
			name := c.name + " while running"
			if restart {
				name = c.name + " then restart"
			}
			t.Run(name, func(t *testing.T) { testDamage(t, c.damage, restart, c.replace && !(restart && c.emptyOK)) })
		}
	}
}

func testDamage(t *testing.T, damage func(t *testing.T, path string), restart, replace bool) {
	{
		{
			path := filepath.Join(t.TempDir(), "sent.db")
			var ev events
			h := NewHealth("embedded", ev.log)
			st, err := OpenBoltHealth(path, time.Hour, h)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			s := Watch(st, h)
			ctx := context.Background()
			for i := 0; i < 3000; i += 100 {
				var wg sync.WaitGroup
				for j := i; j < i+100; j++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := s.Record(ctx, fmt.Sprintf("<m%05d.%s@example.org>", j, strings.Repeat("x", 20)), time.Now()); err != nil {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			if restart {
				// Damaged while the milter was down: it must start.
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				damage(t, path)
				st, err = OpenBoltHealth(path, time.Hour, h)
				if err != nil {
					t.Fatalf("start on a damaged file: %v", err)
				}
				defer st.Close()
				s = Watch(st, h)
			} else {
				damage(t, path)
			}
			// Keep using the store as the milter does: every call must
			// come back within its timeout, never panic.
			works := false
			var errs []error
			for i := 0; i < 200 && !works; i++ {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				start := time.Now()
				_, serr := s.Seen(cctx, fmt.Sprintf("m%05d.%s@example.org", i*7%3000, strings.Repeat("x", 20)))
				id := fmt.Sprintf("after%d@example.org", i)
				rerr := s.Record(cctx, id, time.Now())
				ok, err := s.Seen(cctx, id)
				cancel()
				if time.Since(start) > 30*time.Second {
					t.Fatalf("one round took %s", time.Since(start))
				}
				errs = append(errs, serr, rerr, err)
				works = rerr == nil && err == nil && ok
			}
			if !works {
				t.Fatalf("the store never worked again after the damage; errors: %v", errors.Join(errs...))
			}
			moved := damagedFiles(t, path)
			if replace && (h.Replacements() == 0 || len(moved) == 0) {
				t.Errorf("damage not replaced: replacements %d, files %v, events %v", h.Replacements(), moved, ev.levels())
			}
			if h.Replacements() > 0 && ev.levels()["error"] == 0 {
				t.Errorf("replacement not logged at error level: %v", ev.levels())
			}
			// The fresh file is a real one: it survives a reopen.
			if err := st.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			s2, err := OpenBoltHealth(path, time.Hour, h)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if ok, err := s2.Seen(ctx, "after0@example.org"); err != nil || (!ok && h.Replacements() < 1) {
				t.Errorf("after reopen: Seen = %v, %v", ok, err)
			}
			t.Logf("replacements %d, errors record %d seen %d open %d", h.Replacements(), h.Errors(OpRecord), h.Errors(OpSeen), h.Errors(OpOpen))
		}
	}
}

// TestHealthThrottle: one warning per interval, carrying the count of the
// failures it stands for; a success clears the failing state.
func TestHealthThrottle(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var ev events
	h := &Health{Backend: "redis", Interval: time.Minute, Log: ev.log, Now: func() time.Time { return now }}
	boom := errors.New("connection refused")
	for i := 0; i < 10; i++ {
		h.Fail(OpSeen, boom)
	}
	h.Fail(OpSeen, ErrInvalid)                 // the caller's fault: not counted
	h.Fail(OpSeen, context.Canceled)           // idem
	h.Fail(OpRecord, context.DeadlineExceeded) // a timeout is the store's
	if got := h.Errors(OpSeen); got != 10 {
		t.Errorf("seen errors %d, want 10", got)
	}
	if got := h.Errors(OpRecord); got != 1 {
		t.Errorf("record errors %d, want 1", got)
	}
	if why, bad := h.Failing(); !bad || !strings.Contains(why, "record") {
		t.Errorf("Failing = %q, %v", why, bad)
	}
	if l := ev.levels(); l["warn"] != 1 {
		t.Errorf("warnings in one interval: %v, want 1", l)
	}
	now = now.Add(61 * time.Second)
	h.Fail(OpSeen, boom)
	ev.mu.Lock()
	last := ev.ev[len(ev.ev)-1]
	ev.mu.Unlock()
	if last.Level != "warn" || last.Suppressed != 10 {
		t.Errorf("second warning %+v, want 10 suppressed", last)
	}
	h.OK()
	if _, bad := h.Failing(); bad {
		t.Error("still failing after a success")
	}
	// Flapping within the interval: no warning, and no "works again".
	n := len(ev.levels())
	before := ev.levels()
	for i := 0; i < 5; i++ {
		h.Fail(OpSeen, boom)
		h.OK()
	}
	if after := ev.levels(); after["warn"] != before["warn"] || after["info"] != before["info"] || len(after) != n {
		t.Errorf("flapping logged %v, before %v", after, before)
	}
	var nilH *Health
	nilH.Fail(OpSeen, boom)
	nilH.OK()
	nilH.Replaced("x", boom)
}

// panicStore panics on every call, like a backend with a bug.
type panicStore struct{}

func (panicStore) Record(context.Context, string, time.Time) error { panic("boom") }
func (panicStore) Seen(context.Context, string) (bool, error)      { panic("boom") }
func (panicStore) Close() error                                    { panic("boom") }

func TestWatchRecovers(t *testing.T) {
	h := NewHealth("test", nil)
	s := Watch(panicStore{}, h)
	ctx := context.Background()
	if err := s.Record(ctx, "a@b", time.Now()); !errors.Is(err, ErrPanic) {
		t.Errorf("Record: %v", err)
	}
	if _, err := s.Seen(ctx, "a@b"); !errors.Is(err, ErrPanic) {
		t.Errorf("Seen: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrPanic) {
		t.Errorf("Close: %v", err)
	}
	if h.Errors(OpRecord) != 1 || h.Errors(OpSeen) != 1 {
		t.Errorf("errors record %d seen %d, want 1 and 1", h.Errors(OpRecord), h.Errors(OpSeen))
	}
}

// TestBoltUnavailableThenBack: when no fresh file can be started (here the
// state directory was replaced by a plain file), operations fail fast with
// ErrUnavailable, counted, and the store tries again later and recovers
// once the obstacle is gone.
func TestBoltUnavailableThenBack(t *testing.T) {
	old := reopenEvery
	reopenEvery = 50 * time.Millisecond
	defer func() { reopenEvery = old }()
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "sent.db")
	h := NewHealth("embedded", nil)
	st, err := OpenBoltHealth(path, time.Hour, h)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := Watch(st, h)
	ctx := context.Background()
	// Damage the file, and put a plain file where the directory was, so
	// that neither the rename nor a fresh file can succeed.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var sawUnavailable bool
	for i := 0; i < 50 && !sawUnavailable; i++ {
		_, err := s.Seen(ctx, "a@example.org")
		sawUnavailable = errors.Is(err, ErrUnavailable)
	}
	if !sawUnavailable {
		t.Fatal("never ErrUnavailable with no place for a fresh file")
	}
	if _, bad := h.Failing(); !bad {
		t.Error("not failing while unavailable")
	}
	// The obstacle goes: within a few retry intervals the store works.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	awaitRecovery(t, s, h)
}

// awaitRecovery waits until the store, unavailable until now, records
// again, then checks that it finds what it recorded and is healthy.
func awaitRecovery(t *testing.T, s Store, h *Health) {
	t.Helper()
	ctx := context.Background()
	var err error
	if !await.True(20*time.Second, func() bool { err = s.Record(ctx, "b@example.org", time.Now()); return err == nil }) {
		t.Fatalf("the store never came back: %v", err)
	}
	if ok, err := s.Seen(ctx, "b@example.org"); !ok || err != nil {
		t.Errorf("after recovery: Seen = %v, %v", ok, err)
	}
	if _, bad := h.Failing(); bad {
		t.Error("still failing after recovery")
	}
}
