package batv

import (
	"crypto/hmac"
	"crypto/sha1"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DefaultLifetime is how long a tag stays valid when Signer.Lifetime is zero.
const DefaultLifetime = 7 * 24 * time.Hour

// MaxLifetime is the longest lifetime accepted. The day number wraps at
// DayWrap, so a lifetime near it would make old tags look fresh again.
const MaxLifetime = 365 * 24 * time.Hour

// DayWrap is the period of a tag's day number (three digits, the BATV
// draft's DDD): a tag made on day D verifies again on days D+DayWrap …
// D+DayWrap+lifetime−1 if its key is still configured. Rotating keys is the
// cure (docs/operations.md, "BATV key rotation"); config check warns when a
// key is old enough.
const DayWrap = 1000

const day = 24 * time.Hour

// Errors returned by Sign.
var (
	ErrNoAddress   = errors.New("batv: cannot sign an address without local part and domain")
	ErrQuotedLocal = errors.New("batv: cannot sign a quoted local part")
	ErrAmbiguous   = errors.New("batv: address would not read back unambiguously once tagged")
)

// Signer signs and verifies tags. The zero value of each optional field means
// its default. A Signer is safe for concurrent use as long as its fields are
// not changed.
type Signer struct {
	Keys      []Key            // every key that verifies; looked up by Key.ID
	Current   int              // ID of the key that signs
	Lifetime  time.Duration    // validity of a new tag; DefaultLifetime when 0
	Syntax    Syntax           // form of new tags; SyntaxSubaddress by default
	Delimiter string           // sub-address delimiter; DefaultDelimiter when ""
	Now       func() time.Time // clock; time.Now when nil
}

// String describes the signer without any secret.
func (s *Signer) String() string {
	ids := make([]string, 0, len(s.Keys))
	for _, k := range s.Keys {
		ids = append(ids, fmt.Sprint(k.ID))
	}
	return fmt.Sprintf("batv signer (keys [%s], current %d, lifetime %dd, %s, delimiter %q)",
		strings.Join(ids, " "), s.Current, s.lifetimeDays(), s.Syntax, s.delim())
}

// GoString keeps %#v from printing secrets.
func (s *Signer) GoString() string { return s.String() }

// Validate reports every configuration problem at once; Sign calls it.
func (s *Signer) Validate() error {
	var errs []error
	if len(s.Keys) == 0 {
		errs = append(errs, errNoKeys)
	}
	var seen [10]bool
	for _, k := range s.Keys {
		switch {
		case k.ID < 0 || k.ID > 9:
			errs = append(errs, fmt.Errorf("batv: key id %d out of range 0-9", k.ID))
		case seen[k.ID]:
			errs = append(errs, fmt.Errorf("batv: key id %d configured twice", k.ID))
		default:
			seen[k.ID] = true
		}
		if len(k.Secret) < MinKeyLen {
			errs = append(errs, fmt.Errorf("batv: key %d is %d bytes, need at least %d", k.ID, len(k.Secret), MinKeyLen))
		}
	}
	if len(s.Keys) > 0 && (s.Current < 0 || s.Current > 9 || !seen[s.Current]) {
		errs = append(errs, fmt.Errorf("batv: current key %d is not among the configured keys", s.Current))
	}
	if s.Lifetime < 0 || s.Lifetime > MaxLifetime {
		errs = append(errs, fmt.Errorf("batv: lifetime %s out of range (0, %s]", s.Lifetime, MaxLifetime))
	}
	if s.Syntax != SyntaxSubaddress && s.Syntax != SyntaxPrefix {
		errs = append(errs, fmt.Errorf("batv: unknown syntax %d", int(s.Syntax)))
	}
	if d := s.delim(); strings.ContainsAny(d, "@=\"<> \t\r\n") {
		errs = append(errs, fmt.Errorf("batv: delimiter %q may not contain '@', '=', quotes, brackets or spaces", d))
	}
	return errors.Join(errs...)
}

func (s *Signer) delim() string {
	if s.Delimiter == "" {
		return DefaultDelimiter
	}
	return s.Delimiter
}

func (s *Signer) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// lifetimeDays is the lifetime in whole days, rounded up, at least 1.
func (s *Signer) lifetimeDays() int { return LifetimeDays(s.Lifetime) }

// LifetimeDays is a lifetime in whole days, rounded up, at least 1
// (DefaultLifetime when l ≤ 0): the number of calendar days a tag
// verifies, counting the day it was made.
func LifetimeDays(l time.Duration) int {
	if l <= 0 {
		l = DefaultLifetime
	}
	d := int((l + day - 1) / day)
	return max(d, 1)
}

// dayNumber is the number of days since the Unix epoch, UTC.
func dayNumber(t time.Time) int {
	return int(t.Unix() / 86400)
}

func (s *Signer) key(id int) ([]byte, bool) {
	for _, k := range s.Keys {
		if k.ID == id && len(k.Secret) >= MinKeyLen {
			return k.Secret, true
		}
	}
	return nil, false
}

// Sign returns addr tagged with the current key. The tag carries its expiry
// day, today + lifetime (UTC): it verifies on the day it was made and the
// lifetime−1 days after, and is refused from the expiry day on, so a tag
// never lives longer than Lifetime (a 7d tag made on a Monday verifies
// through Sunday).
// An address that already carries a tag is re-signed from its base, never
// tagged twice. Surrounding spaces and angle brackets are dropped.
func (s *Signer) Sign(addr string) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	addr = clean(addr)
	if len(addr) > maxAddressLen {
		return "", fmt.Errorf("batv: address longer than %d bytes", maxAddressLen)
	}
	// Strip every tag, not just the outer one; each pass shortens addr.
	for {
		_, base, st := parse(addr, s.delim())
		if st != tagOK {
			break
		}
		addr = base
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", ErrNoAddress
	}
	local, domain := addr[:at], addr[at+1:]
	if local[0] == '"' {
		return "", ErrQuotedLocal
	}
	secret, _ := s.key(s.Current)
	t := Tag{KeyID: s.Current, Day: s.ExpiryDay()}
	t.MAC = mac(secret, t, addr)

	var b strings.Builder
	b.Grow(len(addr) + len(prvsPrefix) + tagLen + len(s.delim()) + 1)
	var buf [tagLen]byte
	if s.Syntax == SyntaxPrefix {
		b.WriteString(prvsPrefix)
		b.Write(t.appendTo(buf[:0]))
		b.WriteByte('=')
		b.WriteString(addr)
	} else {
		b.WriteString(local)
		b.WriteString(s.delim())
		b.WriteString(prvsPrefix)
		b.Write(t.appendTo(buf[:0]))
		b.WriteByte('@')
		b.WriteString(domain)
	}
	out := b.String()
	// Refuse what would not read back as this tag on this address, such as
	// a local part that itself looks like a prefix-form tag.
	if got, gotBase, st := parse(out, s.delim()); st != tagOK || got.KeyID != t.KeyID || got.Day != t.Day || got.MAC != t.MAC || gotBase != addr {
		return "", ErrAmbiguous
	}
	return out, nil
}

// mac is the first three bytes of HMAC-SHA1(secret, "KDDD" + lowercased base).
func mac(secret []byte, t Tag, base string) [3]byte {
	var buf [4 + 256]byte
	msg := t.appendTo(buf[:0])[:4]
	msg = appendLower(msg, base)
	h := hmac.New(sha1.New, secret)
	h.Write(msg)
	var sum [sha1.Size]byte
	out := h.Sum(sum[:0])
	return [3]byte{out[0], out[1], out[2]}
}

// appendLower appends s with ASCII letters lowercased. Other bytes are kept
// as they are, so distinct addresses never share a MAC input (Unicode case
// folding would map invalid UTF-8 to U+FFFD).
func appendLower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// Status is the outcome of Verify.
type Status int

const (
	StatusOK      Status = iota // valid tag within its lifetime
	StatusMissing               // no tag at all
	StatusBad                   // malformed tag, unknown key or wrong MAC
	StatusExpired               // valid MAC, outside its lifetime
)

// String returns "ok", "missing", "bad" or "expired", the names used in
// evidence and logs.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusMissing:
		return "missing"
	case StatusBad:
		return "bad"
	case StatusExpired:
		return "expired"
	}
	return "unknown"
}

// Reasons for StatusBad, fit for logs.
const (
	ReasonMalformed  = "malformed tag"
	ReasonUnknownKey = "unknown key"
	ReasonMAC        = "MAC mismatch"
)

// Result is what Verify found.
type Result struct {
	Status   Status
	Original string // the address without its tag (the input, cleaned, when there is none)
	Reason   string // why the status is bad; empty otherwise
	KeyID    int    // K, -1 when no well-formed tag
	Day      int    // DDD, expiry day mod 1000, -1 when no well-formed tag
	// DaysLeft is (DDD − today) mod DayWrap: 1..lifetime for a live tag,
	// 0 on its expiry day, larger for one that expired DayWrap − DaysLeft
	// days ago (if it is ours).
	DaysLeft int
	Syntax   Syntax // form the tag was in
}

// Verify checks the tag on addr (a recipient of a bounce, normally). It
// accepts any configured key ID, compares MACs in constant time, and never
// fails: problems are reported in the Result.
func (s *Signer) Verify(addr string) Result {
	tag, base, st := parse(addr, s.delim())
	switch st {
	case tagNone:
		return Result{Status: StatusMissing, Original: clean(addr), KeyID: -1, Day: -1}
	case tagMalformed:
		return Result{Status: StatusBad, Original: clean(addr), Reason: ReasonMalformed, KeyID: -1, Day: -1}
	}
	r := Result{Original: base, KeyID: tag.KeyID, Day: tag.Day, Syntax: tag.Syntax}
	secret, ok := s.key(tag.KeyID)
	if !ok {
		r.Status, r.Reason = StatusBad, ReasonUnknownKey
		return r
	}
	want := mac(secret, tag, base)
	if !hmac.Equal(want[:], tag.MAC[:]) {
		r.Status, r.Reason = StatusBad, ReasonMAC
		return r
	}
	var live bool
	if r.DaysLeft, live = s.Live(tag.Day); live {
		r.Status = StatusOK
	} else {
		r.Status = StatusExpired
	}
	return r
}

// Parse is ParseDelimiter with the signer's delimiter.
func (s *Signer) Parse(addr string) (tag Tag, base string, ok bool) {
	return ParseDelimiter(addr, s.delim())
}

// Strip returns addr without its tag (the signer's delimiter), or addr
// unchanged when it carries none.
func (s *Signer) Strip(addr string) string {
	if _, base, ok := s.Parse(addr); ok {
		return base
	}
	return addr
}
