package sent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// DefaultTTL is how long an entry is kept when a constructor gets ttl ≤ 0.
// Bounces and auto-replies normally come back within days; 30 days covers
// slow retry queues and vacation replies to long threads.
const DefaultTTL = 30 * 24 * time.Hour

// MaxKeyLen bounds a normalised Message-ID or sender. RFC 5322 lines are at
// most 998 octets, so anything longer did not come from a header.
const MaxKeyLen = 998

// Errors returned by every backend.
var (
	ErrEmpty   = errors.New("sent: empty Message-ID or address")
	ErrTooLong = fmt.Errorf("sent: Message-ID or address longer than %d bytes", MaxKeyLen)
	ErrInvalid = errors.New("sent: Message-ID or address contains spaces, control characters or angle brackets")
	ErrClosed  = errors.New("sent: store is closed")
)

// Store is a log of sent mail with expiry. Implementations are safe for
// concurrent use. at is when the message was sent: the entry lives until
// at + TTL, and an at later than now (clock skew) counts as now. Record and
// Seen normalise their argument (bounce.NormalizeMessageID), so
// callers may pass header values with angle brackets.
type Store interface {
	Record(ctx context.Context, messageID string, at time.Time) error
	Seen(ctx context.Context, messageID string) (bool, error)
	Close() error
}

// kindMessageID starts every Message-ID key, leaving room for other kinds
// of entries in one keyspace.
const kindMessageID = "m:"

// normalID returns the stored form of a Message-ID: one ID, optionally in
// angle brackets (lists, spaces and control characters are refused, see
// trim), in the form of bounce.NormalizeMessageID, the one normaliser. The
// policy records our Message-IDs and looks up the ones bounces quote
// through it, so both sides agree byte for byte.
func normalID(id string) (string, error) {
	s, err := trim(id)
	if err != nil {
		return "", err
	}
	return bounce.NormalizeMessageID(s), nil
}

func trim(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	switch {
	case s == "":
		return "", ErrEmpty
	case len(s) > MaxKeyLen:
		return "", ErrTooLong
	}
	for i := 0; i < len(s); i++ {
		// Brackets left inside mean a list or a broken header, not one ID.
		if c := s[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return "", ErrInvalid
		}
	}
	return s, nil
}

func messageIDKey(id string) (string, error) {
	n, err := normalID(id)
	if err != nil {
		return "", err
	}
	return kindMessageID + n, nil
}

// expiry is when an entry recorded at at, with the given ttl, stops counting.
func expiry(at, now time.Time, ttl time.Duration) time.Time {
	if at.IsZero() || at.After(now) {
		at = now
	}
	return at.Add(ttl)
}

func orDefault(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return DefaultTTL
	}
	return ttl
}
