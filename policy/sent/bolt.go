package sent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Two buckets: entries maps key → expiry (8 bytes, big-endian Unix ns);
// expiry maps expiry + key → nothing, so Purge walks only what has expired,
// oldest first, instead of the whole log.
var (
	bucketEntries = []byte("entries")
	bucketExpiry  = []byte("expiry")
)

const (
	// purgeBatch bounds one purge transaction, so a purge after a long
	// downtime never holds the write lock for long.
	purgeBatch = 1000
	// defaultPurgeEvery is how often the background purge runs.
	defaultPurgeEvery = time.Hour
	// lockTimeout bounds the wait for the file lock held by another process.
	lockTimeout = 2 * time.Second
	// maxWriteBatch bounds the writes committed in one transaction.
	maxWriteBatch = 256
	// batchDelay is how long the writer gathers writes after the first
	// before it commits them in one fsync (bbolt's Batch default too): a
	// lone write waits that much, concurrent writes share the sync.
	batchDelay = time.Millisecond
	// closeWait bounds how long Close waits for bbolt to let go of a file.
	closeWait = 5 * time.Second
)

// reopenEvery spaces attempts to start a fresh file after one failed (a
// full disk, a directory gone): lookups meanwhile answer "no evidence". A
// variable for tests.
var reopenEvery = 30 * time.Second

// Errors of the bolt backend beyond those every backend returns.
var (
	// ErrDamaged means the file was found damaged during the operation: it
	// has been moved aside and a fresh one started (see BoltStore).
	ErrDamaged = errors.New("sent: bolt: store damaged")
	// ErrUnavailable means no file is open: the last one was damaged and a
	// fresh one could not be created yet.
	ErrUnavailable = errors.New("sent: bolt: no usable store file (retrying)")
)

// BoltStore keeps the log in a bbolt file, so it survives restarts. Expired
// entries are ignored on read and deleted by Purge, which also runs in the
// background every hour.
//
// The sent log is evidence, never a reason to stop mail, so a damaged file
// must not take the process down: bbolt trusts its pages and panics (or
// faults on a truncated mapping) when they are garbage. Every access runs
// in a goroutine of its own with panics recovered and memory faults turned
// into panics; the caller waits no longer than its context. A panic, a
// fault, a file bbolt refuses as invalid at open or a bucket gone missing
// means damage: the file is renamed to PATH.damaged-TIMESTAMP (kept for the
// postmaster), a fresh file is started at PATH, and Health.Replaced reports
// it. The old file's handle is abandoned, not closed in the caller's way:
// bbolt may hold its own locks after the panic.
type BoltStore struct {
	path   string
	ttl    time.Duration
	now    func() time.Time
	batch  int
	health *Health

	cur     atomic.Pointer[boltGen] // nil: unavailable (see retryAt)
	mu      sync.Mutex              // serialises replacing and reopening
	retryAt time.Time               // under mu

	closed atomic.Bool
	cancel context.CancelFunc // stops the background purge
	done   chan struct{}
	once   sync.Once
}

// boltGen is one opened file and the goroutine that writes to it.
type boltGen struct {
	db   *bolt.DB
	reqs chan *writeReq // unbuffered: a request is either taken or not
	quit chan struct{}  // closed when the file is abandoned or the store closed
	done chan struct{}  // closed when the writer has returned
}

type writeReq struct {
	key, val []byte
	err      chan error // buffered: the writer never blocks on a caller gone
}

// OpenBolt opens (or creates) the log at path, creating its parent directory
// with mode 0700 and the file with mode 0600. Only one process may have it
// open; a second gets an error after a short wait.
func OpenBolt(path string, ttl time.Duration) (*BoltStore, error) {
	return openBolt(path, ttl, defaultPurgeEvery, time.Now, nil)
}

// OpenBoltHealth is OpenBolt reporting to h: replaced damaged files and
// failures to start a fresh one. A file found damaged at open is replaced
// too. A damaged file that cannot be replaced, or a full or failing disk,
// does not stop the start: the store answers ErrUnavailable ("no
// evidence") and tries again every 30 seconds. Only set-up errors are
// returned (the lock held by another process, no permission, a read-only
// file system).
func OpenBoltHealth(path string, ttl time.Duration, h *Health) (*BoltStore, error) {
	return openBolt(path, ttl, defaultPurgeEvery, time.Now, h)
}

func openBolt(path string, ttl, purgeEvery time.Duration, now func() time.Time, h *Health) (*BoltStore, error) {
	if path == "" {
		return nil, errors.New("sent: bolt: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sent: bolt: %w", err)
	}
	s := &BoltStore{path: path, ttl: orDefault(ttl), now: now, batch: purgeBatch, health: h, done: make(chan struct{})}
	g, err := openGen(path)
	replaced := false
	if err != nil && isDamage(err) {
		replaced = true
		g, err = s.replaceFile(err)
	}
	switch {
	case err == nil:
		s.cur.Store(g)
		go s.writer(g)
	case replaced || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EDQUOT):
		// A damaged file that could not be replaced, a full disk, a bad
		// one: refusing to start would stop all mail (the MTA tempfails
		// without its milter) and a restart loop would not cure it. Start
		// without a file, answer "no evidence" (ErrUnavailable, counted
		// and in the health check) and try again every reopenEvery.
		if !replaced { // replaceFile has reported its own failure
			s.health.Fail(OpOpen, err)
		}
		s.retryAt = time.Now().Add(reopenEvery)
	default:
		// The lock held by another process, no permission, a read-only
		// file system: set-up errors that a retry does not cure and the
		// postmaster must see at start.
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.purgeLoop(ctx, purgeEvery)
	return s, nil
}

// openGen opens path as bbolt and makes sure its buckets exist. Any sign of
// damage comes back as an error wrapping ErrDamaged.
func openGen(path string) (g *boltGen, err error) {
	var db *bolt.DB
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: open %s: %v", ErrDamaged, path, r)
			g = nil
			abandon(db)
		}
	}()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	// The directory may have gone since the start (a cleanup gone wrong):
	// a fresh file needs it back.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sent: bolt: %w", err)
	}
	fi, serr := os.Stat(path)
	fresh := serr != nil || fi.Size() == 0
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil && fresh && !errors.Is(err, berrors.ErrTimeout) {
		// A new file that could not be written whole (a full disk) would
		// be taken for a damaged one at the next attempt, and moved aside
		// again at every retry: nothing of value is in it.
		_ = os.Remove(path)
	}
	if err != nil {
		var pe *fs.PathError
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("sent: bolt: %s is locked by another process (another backscatter-milter?)", path)
		case errors.As(err, &pe):
			return nil, fmt.Errorf("sent: bolt: %w", err) // the error names the path already
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("sent: bolt: open %s: %w", path, err)
		}
		return nil, fmt.Errorf("%w: open %s: %v", ErrDamaged, path, err)
	}
	// A page tree that loops would hang or crash bbolt below, beyond
	// recovery: look at the tree first (we hold the file's lock now).
	if cerr := checkTree(path); cerr != nil {
		abandon(db)
		db = nil
		return nil, fmt.Errorf("%w: %s: %v", ErrDamaged, path, cerr)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketExpiry} {
			bk, err := tx.CreateBucketIfNotExists(b)
			if err != nil {
				return err
			}
			// Walk both ends of each bucket: a damaged branch page on
			// the way shows now rather than on the first bounce.
			c := bk.Cursor()
			c.First()
			c.Last()
		}
		return nil
	})
	if err != nil {
		abandon(db)
		db = nil
		return nil, fmt.Errorf("%w: init %s: %v", ErrDamaged, path, err)
	}
	return &boltGen{db: db, reqs: make(chan *writeReq), quit: make(chan struct{}), done: make(chan struct{})}, nil
}

func isDamage(err error) bool { return errors.Is(err, ErrDamaged) }

// abandon closes db in the background, as far as bbolt lets it: after a
// panic bbolt may still hold its own locks, and Close would wait forever.
func abandon(db *bolt.DB) {
	if db == nil {
		return
	}
	go func() {
		defer func() { _ = recover() }()
		old := debug.SetPanicOnFault(true)
		defer debug.SetPanicOnFault(old)
		_ = db.Close()
	}()
}

// moveAside renames the file at path to path.damaged-TIMESTAMP and returns
// the new name ("" when there was no file).
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".damaged-" + now.UTC().Format("20060102T150405Z")
	name := base
	// Only a name that exists is skipped: any other answer (no such
	// file, or a path that cannot exist) ends the search, and Rename says
	// what is wrong.
	for i := 2; i < 1000; i++ {
		if _, err := os.Lstat(name); err != nil {
			break
		}
		name = fmt.Sprintf("%s.%d", base, i)
	}
	if err := os.Rename(path, name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	return name, nil
}

// replaceFile moves the damaged file aside and opens a fresh one.
func (s *BoltStore) replaceFile(cause error) (*boltGen, error) {
	moved, err := moveAside(s.path, time.Now())
	if err != nil {
		err = fmt.Errorf("sent: bolt: cannot move damaged %s aside: %w", s.path, err)
		s.health.Fail(OpOpen, err)
		return nil, err
	}
	s.health.Replaced(moved, cause)
	g, err := openGen(s.path)
	if err != nil {
		s.health.Fail(OpOpen, err)
		return nil, err
	}
	return g, nil
}

// damaged retires g after an operation found it damaged, and starts a
// fresh file unless another operation already did.
func (s *BoltStore) damaged(g *boltGen, cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.Load() != g {
		return // already replaced, or closed
	}
	s.cur.Store(nil)
	close(g.quit)
	abandon(g.db)
	if s.closed.Load() {
		return
	}
	ng, err := s.replaceFile(cause)
	if err != nil {
		s.retryAt = time.Now().Add(reopenEvery)
		return
	}
	s.cur.Store(ng)
	go s.writer(ng)
}

// gen returns the open file, trying again to open one when none is open
// and the last attempt is old enough.
func (s *BoltStore) gen() (*boltGen, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if g := s.cur.Load(); g != nil {
		return g, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.cur.Load(); g != nil {
		return g, nil
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if time.Now().Before(s.retryAt) {
		return nil, ErrUnavailable
	}
	g, err := openGen(s.path)
	if err != nil && isDamage(err) {
		g, err = s.replaceFile(err)
	}
	if err != nil {
		s.retryAt = time.Now().Add(reopenEvery)
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	s.cur.Store(g)
	go s.writer(g)
	return g, nil
}

// guard runs fn on g with panics recovered and memory faults (a mapping
// of a file truncated under us) turned into panics; either retires g.
func (s *BoltStore) guard(g *boltGen, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDamaged, r)
		}
		if err != nil && (isDamage(err) || errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) ||
			errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrInvalidMapping)) {
			if !isDamage(err) {
				err = fmt.Errorf("%w: %v", ErrDamaged, err)
			}
			s.damaged(g, err)
		}
	}()
	return fn()
}

// run runs fn on the current file in a goroutine of its own and waits for
// it no longer than ctx allows: a bbolt left stuck by damage never holds
// a mail transaction.
func (s *BoltStore) run(ctx context.Context, op string, fn func(db *bolt.DB) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g, err := s.gen()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- s.guard(g, func() error { return fn(g.db) }) }()
	select {
	case err := <-done:
		if err != nil {
			return s.wrap(op, err)
		}
		return nil
	case <-ctx.Done():
		return s.wrap(op, ctx.Err())
	}
}

// writer commits the writes sent to g, as many as are waiting in one
// transaction (one fsync), until g is retired.
func (s *BoltStore) writer(g *boltGen) {
	defer close(g.done)
	batch := make([]*writeReq, 0, maxWriteBatch)
	timer := time.NewTimer(batchDelay)
	timer.Stop()
	for {
		select {
		case <-g.quit:
			return
		case r := <-g.reqs:
			batch = append(batch[:0], r)
			timer.Reset(batchDelay)
		gather:
			for len(batch) < maxWriteBatch {
				select {
				case r := <-g.reqs:
					batch = append(batch, r)
				case <-timer.C:
					break gather
				case <-g.quit:
					break gather
				}
			}
			timer.Stop()
			err := s.guard(g, func() error {
				return g.db.Update(func(tx *bolt.Tx) error {
					for _, r := range batch {
						if err := put(tx, r.key, r.val); err != nil {
							return err
						}
					}
					return nil
				})
			})
			for _, r := range batch {
				r.err <- err
			}
			clear(batch)
		}
	}
}

// buckets returns both buckets; their absence means a damaged root.
func buckets(tx *bolt.Tx) (entries, index *bolt.Bucket, err error) {
	entries, index = tx.Bucket(bucketEntries), tx.Bucket(bucketExpiry)
	if entries == nil || index == nil {
		return nil, nil, fmt.Errorf("%w: bucket missing", ErrDamaged)
	}
	return entries, index, nil
}

func put(tx *bolt.Tx, k, val []byte) error {
	entries, index, err := buckets(tx)
	if err != nil {
		return err
	}
	if old := entries.Get(k); old != nil {
		if err := index.Delete(append(bytes.Clone(old), k...)); err != nil {
			return err
		}
	}
	if err := entries.Put(k, val); err != nil {
		return err
	}
	return index.Put(append(bytes.Clone(val), k...), nil)
}

// String describes the store.
func (s *BoltStore) String() string { return "bolt sent log " + s.path }

func (s *BoltStore) purgeLoop(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Errors are not fatal: the next run retries, and reads ignore
			// expired entries anyway.
			if _, err := s.Purge(ctx); err != nil {
				s.health.Fail(OpPurge, err)
			}
		}
	}
}

// Record notes a sent Message-ID.
func (s *BoltStore) Record(ctx context.Context, messageID string, at time.Time) error {
	key, err := messageIDKey(messageID)
	if err != nil {
		return err
	}
	return s.record(ctx, key, at)
}

// Seen reports whether a Message-ID was recorded and has not expired.
func (s *BoltStore) Seen(ctx context.Context, messageID string) (bool, error) {
	key, err := messageIDKey(messageID)
	if err != nil {
		return false, err
	}
	return s.seen(ctx, key)
}

func encodeTime(t time.Time) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(t.UnixNano(), 0)))
	return b[:]
}

func (s *BoltStore) record(ctx context.Context, key string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return ErrClosed
	}
	now := s.now()
	exp := expiry(at, now, s.ttl)
	if !exp.After(now) {
		return nil // already expired: nothing to remember
	}
	g, err := s.gen()
	if err != nil {
		return err
	}
	r := &writeReq{key: []byte(key), val: encodeTime(exp), err: make(chan error, 1)}
	select {
	case g.reqs <- r:
	case <-g.quit:
		return s.wrap("record", ErrDamaged)
	case <-ctx.Done():
		return s.wrap("record", ctx.Err())
	}
	select {
	case err := <-r.err:
		if err != nil {
			return s.wrap("record", err)
		}
		return nil
	case <-ctx.Done():
		return s.wrap("record", ctx.Err())
	}
}

func (s *BoltStore) seen(ctx context.Context, key string) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	now := encodeTime(s.now())
	var found bool
	err := s.run(ctx, "seen", func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error {
			entries, _, err := buckets(tx)
			if err != nil {
				return err
			}
			v := entries.Get([]byte(key))
			found = len(v) == 8 && bytes.Compare(v, now) > 0
			return nil
		})
	})
	if err != nil {
		return false, err
	}
	return found, nil
}

func (s *BoltStore) wrap(op string, err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("sent: bolt %s: %w", op, err)
}

// Purge deletes expired entries in transactions of at most 1000, checking
// ctx between them, and reports how many it deleted.
func (s *BoltStore) Purge(ctx context.Context) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		if s.closed.Load() {
			return total, ErrClosed
		}
		now := encodeTime(s.now())
		n := 0
		err := s.run(ctx, "purge", func(db *bolt.DB) error {
			return db.Update(func(tx *bolt.Tx) error {
				entries, index, err := buckets(tx)
				if err != nil {
					return err
				}
				// Collect first: deleting under a moving cursor can skip keys.
				var expired [][]byte
				c := index.Cursor()
				for k, _ := c.First(); k != nil && len(expired) < s.batch; k, _ = c.Next() {
					if len(k) < 8 || bytes.Compare(k[:8], now) > 0 {
						break
					}
					expired = append(expired, bytes.Clone(k))
				}
				for _, k := range expired {
					exp, key := k[:8], k[8:]
					// Delete the entry only if this index row is its current
					// one; a re-recorded key has a later row.
					if v := entries.Get(key); bytes.Equal(v, exp) {
						if err := entries.Delete(key); err != nil {
							return err
						}
					}
					if err := index.Delete(k); err != nil {
						return err
					}
				}
				n = len(expired)
				return nil
			})
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < s.batch {
			return total, nil
		}
	}
}

// Len returns the number of entries held, expired or not.
func (s *BoltStore) Len() (int, error) {
	var n int
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	err := s.run(ctx, "len", func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error {
			entries, _, err := buckets(tx)
			if err != nil {
				return err
			}
			n = entries.Stats().KeyN
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Close stops the background purge and the writer and closes the file. It
// is safe to call more than once.
func (s *BoltStore) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		s.cancel()
		<-s.done
		s.mu.Lock()
		g := s.cur.Swap(nil)
		s.mu.Unlock()
		if g == nil {
			return
		}
		close(g.quit)
		select {
		case <-g.done:
		case <-time.After(closeWait):
			// The writer is stuck inside bbolt (damage): leave it.
			err = fmt.Errorf("sent: bolt: %s: writer did not stop within %s", s.path, closeWait)
			return
		}
		closed := make(chan error, 1)
		go func() {
			defer func() {
				if r := recover(); r != nil {
					closed <- fmt.Errorf("%w: close: %v", ErrDamaged, r)
				}
			}()
			closed <- g.db.Close()
		}()
		select {
		case err = <-closed:
		case <-time.After(closeWait):
			err = fmt.Errorf("sent: bolt: %s did not close within %s", s.path, closeWait)
		}
	})
	return err
}
