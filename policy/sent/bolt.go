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
	"sync"
	"sync/atomic"
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
)

// BoltStore keeps the log in a bbolt file, so it survives restarts. Expired
// entries are ignored on read and deleted by Purge, which also runs in the
// background every hour.
type BoltStore struct {
	db     *bolt.DB
	path   string
	ttl    time.Duration
	now    func() time.Time
	batch  int
	closed atomic.Bool
	cancel context.CancelFunc // stops the background purge
	done   chan struct{}
	once   sync.Once
}

// OpenBolt opens (or creates) the log at path, creating its parent directory
// with mode 0700 and the file with mode 0600. Only one process may have it
// open; a second gets an error after a short wait.
func OpenBolt(path string, ttl time.Duration) (*BoltStore, error) {
	return openBolt(path, ttl, defaultPurgeEvery, time.Now)
}

func openBolt(path string, ttl, purgeEvery time.Duration, now func() time.Time) (*BoltStore, error) {
	if path == "" {
		return nil, errors.New("sent: bolt: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sent: bolt: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("sent: bolt: %s is locked by another process (another backscatter-milter?)", path)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("sent: bolt: %w", err) // the error names the path already
		}
		return nil, fmt.Errorf("sent: bolt: open %s: %w", path, err)
	}
	// Batch coalesces concurrent Records into one fsync; a short delay keeps
	// a lone Record fast.
	db.MaxBatchDelay = time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketExpiry} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sent: bolt: init %s: %w", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &BoltStore{
		db:     db,
		path:   path,
		ttl:    orDefault(ttl),
		now:    now,
		batch:  purgeBatch,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go s.purgeLoop(ctx, purgeEvery)
	return s, nil
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
			_, _ = s.Purge(ctx)
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
	val := encodeTime(exp)
	k := []byte(key)
	err := s.db.Batch(func(tx *bolt.Tx) error {
		entries, index := tx.Bucket(bucketEntries), tx.Bucket(bucketExpiry)
		if old := entries.Get(k); old != nil {
			if err := index.Delete(append(bytes.Clone(old), k...)); err != nil {
				return err
			}
		}
		if err := entries.Put(k, val); err != nil {
			return err
		}
		return index.Put(append(bytes.Clone(val), k...), nil)
	})
	if err != nil {
		return s.wrap("record", err)
	}
	return nil
}

func (s *BoltStore) seen(ctx context.Context, key string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if s.closed.Load() {
		return false, ErrClosed
	}
	now := encodeTime(s.now())
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get([]byte(key))
		found = len(v) == 8 && bytes.Compare(v, now) > 0
		return nil
	})
	if err != nil {
		return false, s.wrap("seen", err)
	}
	return found, nil
}

func (s *BoltStore) wrap(op string, err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
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
		err := s.db.Update(func(tx *bolt.Tx) error {
			entries, index := tx.Bucket(bucketEntries), tx.Bucket(bucketExpiry)
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
		if err != nil {
			return total, s.wrap("purge", err)
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
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketEntries).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, s.wrap("len", err)
	}
	return n, nil
}

// Close stops the background purge and closes the file. It is safe to call
// more than once.
func (s *BoltStore) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		s.cancel()
		<-s.done
		err = s.db.Close()
	})
	return err
}
