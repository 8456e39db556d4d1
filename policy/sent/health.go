package sent

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/throttle"
)

// Op names a store operation in counters and log lines.
type Op int

// The operations a store performs. OpOpen covers opening, reopening and
// replacing a damaged file.
const (
	OpRecord Op = iota
	OpSeen
	OpPurge
	OpOpen
	numOps
)

// Ops lists every operation, in order, so a metrics exporter can create
// each counter at 0 before the first error.
var Ops = [...]Op{OpRecord, OpSeen, OpPurge, OpOpen}

func (o Op) String() string {
	switch o {
	case OpRecord:
		return "record"
	case OpSeen:
		return "seen"
	case OpPurge:
		return "purge"
	case OpOpen:
		return "open"
	}
	return "unknown"
}

// DefaultWarnInterval is how often Health logs a failing store: one warning
// per interval, carrying the number of failures it stands for.
const DefaultWarnInterval = time.Minute

// Event is something a Health wants logged.
type Event struct {
	Level      string // "error" (a damaged store was replaced), "warn" (failing) or "info" (working again)
	Msg        string // what happened, for people
	Op         Op
	Err        error
	Suppressed uint64 // failures since the previous warning that were not logged
	MovedTo    string // where a damaged file was moved
}

// Health is where a backend reports how it is doing: every failed operation
// is counted by operation, the store is "failing" from a failure until the
// next success, and warnings are throttled to one per interval. The metrics
// and /healthz read it. A nil *Health ignores every report, so a backend may
// always call it. Safe for concurrent use; the success path is one atomic
// load.
type Health struct {
	Backend  string        // "embedded", "redis", "memory": the metrics label
	Interval time.Duration // between two warnings; DefaultWarnInterval when 0
	Log      func(Event)   // nil: nothing logged
	Now      func() time.Time

	errs     [numOps]atomic.Uint64
	replaced atomic.Uint64
	failing  atomic.Pointer[string] // nil while the store works
	warned   atomic.Bool            // a warning was logged since the last success

	warnings throttle.Throttle
}

// NewHealth returns a Health for backend that logs through log.
func NewHealth(backend string, log func(Event)) *Health {
	return &Health{Backend: backend, Log: log}
}

func (h *Health) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Fail records a failed operation. Errors that say nothing about the store
// (a malformed Message-ID, a caller that cancelled) are ignored.
func (h *Health) Fail(op Op, err error) {
	if h == nil || err == nil || !storeFault(err) {
		return
	}
	if op < 0 || op >= numOps {
		op = OpRecord
	}
	h.errs[op].Add(1)
	reason := op.String() + ": " + err.Error()
	h.failing.Store(&reason)
	every := h.Interval
	if every <= 0 {
		every = DefaultWarnInterval
	}
	ok, n := h.warnings.Allow(h.now(), every)
	if !ok {
		return
	}
	h.warned.Store(true)
	if h.Log != nil {
		h.Log(Event{Level: "warn", Msg: "sent log failing: no provenance evidence from it until it works again", Op: op, Err: err, Suppressed: uint64(n)})
	}
}

// OK records a successful operation: the store is no longer failing.
func (h *Health) OK() {
	if h == nil || h.failing.Load() == nil {
		return
	}
	h.failing.Store(nil)
	// Said only after a warning: a store that flaps logs at most a
	// warning and this line per interval.
	if h.warned.Swap(false) && h.Log != nil {
		h.Log(Event{Level: "info", Msg: "sent log works again", Op: OpRecord})
	}
}

// Replaced records that a damaged store was moved aside to movedTo and a
// fresh one started. It is always logged, at error level: the entries of
// the old file no longer count as evidence.
func (h *Health) Replaced(movedTo string, cause error) {
	if h == nil {
		return
	}
	h.replaced.Add(1)
	h.errs[OpOpen].Add(1)
	if h.Log != nil {
		h.Log(Event{Level: "error", Msg: "sent log damaged: moved aside and started afresh (mail keeps flowing; earlier entries no longer count)",
			Op: OpOpen, Err: cause, MovedTo: movedTo})
	}
}

// Errors returns the number of failures of op.
func (h *Health) Errors(op Op) uint64 {
	if h == nil || op < 0 || op >= numOps {
		return 0
	}
	return h.errs[op].Load()
}

// Replacements returns how many damaged stores were replaced.
func (h *Health) Replacements() uint64 {
	if h == nil {
		return 0
	}
	return h.replaced.Load()
}

// Failing reports whether the last operation failed, and how.
func (h *Health) Failing() (string, bool) {
	if h == nil {
		return "", false
	}
	if r := h.failing.Load(); r != nil {
		return *r, true
	}
	return "", false
}

// storeFault reports whether err is the store's fault, not the caller's.
func storeFault(err error) bool {
	switch {
	case errors.Is(err, ErrEmpty), errors.Is(err, ErrTooLong), errors.Is(err, ErrInvalid),
		errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		return false
	}
	return true
}

// ErrPanic wraps a panic raised inside a backend.
var ErrPanic = errors.New("sent: store panicked")

// Watch wraps a Store so that every failure is reported to h and no panic
// from the backend reaches the caller: it becomes an error wrapping
// ErrPanic, counted like any failure. Wrap every store the milter uses, so
// a backend without reporting of its own (Redis) still feeds the counters.
func Watch(s Store, h *Health) Store {
	if s == nil {
		return nil
	}
	return &watched{s: s, h: h}
}

type watched struct {
	s Store
	h *Health
}

// Unwrap returns the store being watched.
func (w *watched) Unwrap() Store { return w.s }

func (w *watched) String() string { return fmt.Sprint(w.s) }

func (w *watched) report(op Op, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %s: %v", ErrPanic, op, r)
	}
	if *err != nil {
		w.h.Fail(op, *err)
	} else {
		w.h.OK()
	}
}

func (w *watched) Record(ctx context.Context, id string, at time.Time) (err error) {
	defer w.report(OpRecord, &err)
	return w.s.Record(ctx, id, at)
}

func (w *watched) Seen(ctx context.Context, id string) (ok bool, err error) {
	defer w.report(OpSeen, &err)
	return w.s.Seen(ctx, id)
}

func (w *watched) Close() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: close: %v", ErrPanic, r)
		}
	}()
	return w.s.Close()
}
