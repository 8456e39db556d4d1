package stamp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/bounce"
)

// DefaultHeader is the name of the stamp header when none is configured.
const DefaultHeader = "X-Backscatter-Stamp"

// Version is the format version written into new stamps.
const Version = 1

// MACLen is how many bytes of the HMAC-SHA256 a stamp keeps: 128 bits, far
// beyond what an attacker can guess, short enough for one header line.
const MACLen = 16

// maxValueLen bounds what Parse looks at: a stamp is about 40 bytes.
const maxValueLen = 256

// maxFieldLen bounds each covered field fed to the MAC; a longer field is
// cut, the same way at signing and at verification.
const maxFieldLen = 4096

// Errors returned by Sign for a message that lacks a covered field. Without
// a Message-ID a stamp would be bound to no identity; without Date or From
// the MTA may add one after the milter has seen the header (Sendmail does),
// and the stamp would then not verify against what was sent.
var (
	ErrNoMessageID = errors.New("stamp: message has no Message-ID")
	ErrNoDate      = errors.New("stamp: message has no Date")
	ErrNoFrom      = errors.New("stamp: message has no From")
)

// Fields are the header values a stamp covers, as written in the message
// (unfolded or not: canonicalisation takes care of that).
type Fields struct {
	MessageID string
	Date      string
	From      string
}

// Stamp is a parsed stamp value.
type Stamp struct {
	Version int
	KeyID   int // 0–9
	Day     int // expiry day number modulo 1000
	MAC     [MACLen]byte
}

// String returns the header value.
func (s Stamp) String() string {
	var b strings.Builder
	b.Grow(8 + 2*MACLen)
	fmt.Fprintf(&b, "%d.%d.%03d.", s.Version, s.KeyID, s.Day)
	b.WriteString(hex.EncodeToString(s.MAC[:]))
	return b.String()
}

// Parse reads a stamp value. White space anywhere in it is ignored (folding,
// re-wrapping) and the hex digits match in either case. It checks syntax
// only: no key, no clock.
func Parse(value string) (Stamp, error) {
	if len(value) > maxValueLen {
		return Stamp{}, errors.New("stamp: value too long")
	}
	var buf [maxValueLen]byte
	v := buf[:0]
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case ' ', '\t', '\r', '\n':
		default:
			v = append(v, c)
		}
	}
	var parts [4][]byte
	n := 0
	start := 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == '.' {
			if n == len(parts) {
				return Stamp{}, errors.New("stamp: too many fields")
			}
			parts[n] = v[start:i]
			n++
			start = i + 1
		}
	}
	if n != len(parts) {
		return Stamp{}, errors.New("stamp: want VERSION.KEY.DAY.MAC")
	}
	var s Stamp
	var ok bool
	if s.Version, ok = digits(parts[0], 1, 3); !ok || s.Version != Version {
		return Stamp{}, errors.New("stamp: unknown version")
	}
	if s.KeyID, ok = digits(parts[1], 1, 1); !ok {
		return Stamp{}, errors.New("stamp: bad key number")
	}
	if s.Day, ok = digits(parts[2], 3, 3); !ok {
		return Stamp{}, errors.New("stamp: bad day number")
	}
	if len(parts[3]) != 2*MACLen {
		return Stamp{}, errors.New("stamp: bad MAC length")
	}
	if _, err := hex.Decode(s.MAC[:], parts[3]); err != nil {
		return Stamp{}, errors.New("stamp: MAC is not hex")
	}
	return s, nil
}

// digits parses min..max decimal digits.
func digits(b []byte, min, max int) (int, bool) {
	if len(b) < min || len(b) > max {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// Stamper signs and verifies stamps with the key ring and lifetime of a
// batv.Signer (Keys.Current signs; every key verifies; Keys.Lifetime is the
// stamp's lifetime). It is safe for concurrent use.
type Stamper struct {
	Keys *batv.Signer
}

// String describes the stamper without any secret.
func (s *Stamper) String() string { return "stamp: " + s.Keys.String() }

// GoString keeps %#v from printing secrets.
func (s *Stamper) GoString() string { return s.String() }

// Sign returns the stamp value for a message with these fields.
func (s *Stamper) Sign(f Fields) (string, error) {
	id := bounce.NormalizeMessageID(f.MessageID)
	switch {
	case id == "":
		return "", ErrNoMessageID
	case strings.TrimSpace(f.Date) == "":
		return "", ErrNoDate
	case strings.TrimSpace(f.From) == "":
		return "", ErrNoFrom
	}
	if err := s.Keys.Validate(); err != nil {
		return "", err
	}
	st := Stamp{Version: Version, KeyID: s.Keys.Current, Day: s.Keys.ExpiryDay()}
	mac, ok := s.mac(st, id, f)
	if !ok {
		return "", fmt.Errorf("stamp: current key %d is not configured", st.KeyID)
	}
	st.MAC = mac
	return st.String(), nil
}

// mac computes the MAC of a stamp for fields whose Message-ID is already
// normalised (id).
func (s *Stamper) mac(st Stamp, id string, f Fields) ([MACLen]byte, bool) {
	h, ok := s.Keys.NewHMAC(st.KeyID, sha256.New)
	if !ok {
		return [MACLen]byte{}, false
	}
	var buf [512]byte
	b := append(buf[:0], "backscatter-stamp"...)
	b = append(b, byte(st.Version), byte(st.KeyID))
	b = binary.BigEndian.AppendUint16(b, uint16(st.Day))
	b = appendField(b, id)
	b = appendField(b, CanonicalDate(f.Date))
	b = appendField(b, CanonicalFrom(f.From))
	h.Write(b)
	var sum [sha256.Size]byte
	var out [MACLen]byte
	copy(out[:], h.Sum(sum[:0]))
	return out, true
}

// appendField appends a length-prefixed field, so that no two field lists
// share a MAC input.
func appendField(b []byte, s string) []byte {
	if len(s) > maxFieldLen {
		s = s[:maxFieldLen]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Status is the outcome of Verify.
type Status int

const (
	StatusOK      Status = iota // ours, for this message, within its lifetime
	StatusBad                   // made for other fields: copied onto another message, or altered
	StatusExpired               // ours and for this message, but past its lifetime
	// StatusUnverifiable: the stamp cannot be checked (malformed, made with
	// a key no longer configured, or the copy lacks a covered field). A forger
	// gains nothing by writing one, so it says nothing either way; a real
	// stamp damaged in transit or made with a retired key looks like this.
	StatusUnverifiable
)

// String returns "ok", "bad", "expired" or "unverifiable".
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusBad:
		return "bad"
	case StatusExpired:
		return "expired"
	case StatusUnverifiable:
		return "unverifiable"
	}
	return "unknown"
}

// Reasons for StatusBad and StatusUnverifiable, fit for logs.
const (
	ReasonMalformed   = "malformed stamp"
	ReasonUnknownKey  = "unknown key"
	ReasonMAC         = "does not match this message's Message-ID, Date and From"
	ReasonNoMessageID = "the message has no Message-ID"
	ReasonNoField     = "the copy lacks its Date or From"
)

// Result is what Verify found.
type Result struct {
	Status   Status
	Reason   string // why the status is bad or unverifiable; empty otherwise
	KeyID    int    // -1 when the stamp did not parse
	Day      int    // -1 when the stamp did not parse
	DaysLeft int    // (Day − today) mod 1000, for a stamp whose MAC verified
}

// Verify checks a stamp value against the fields of the message that
// carries it. It compares MACs in constant time and never fails: problems
// are reported in the Result.
func (s *Stamper) Verify(value string, f Fields) Result {
	st, err := Parse(value)
	if err != nil {
		return Result{Status: StatusUnverifiable, Reason: ReasonMalformed, KeyID: -1, Day: -1}
	}
	r := Result{KeyID: st.KeyID, Day: st.Day}
	id := bounce.NormalizeMessageID(f.MessageID)
	if id == "" {
		r.Status, r.Reason = StatusUnverifiable, ReasonNoMessageID
		return r
	}
	if strings.TrimSpace(f.Date) == "" || strings.TrimSpace(f.From) == "" {
		// Stamps are only made with both: a copy without one was cut short.
		r.Status, r.Reason = StatusUnverifiable, ReasonNoField
		return r
	}
	want, ok := s.mac(st, id, f)
	if !ok {
		r.Status, r.Reason = StatusUnverifiable, ReasonUnknownKey
		return r
	}
	if !hmac.Equal(want[:], st.MAC[:]) {
		r.Status, r.Reason = StatusBad, ReasonMAC
		return r
	}
	var live bool
	if r.DaysLeft, live = s.Keys.Live(st.Day); live {
		r.Status = StatusOK
	} else {
		r.Status = StatusExpired
	}
	return r
}

// CanonicalDate is the Date field reduced to the instant it names (Unix
// seconds), or, when it does not parse, to its text with white space runs
// collapsed and ASCII letters lowered.
func CanonicalDate(v string) string {
	c := collapse(v)
	// The form nearly every MTA writes first: mail.ParseDate tries many
	// layouts, each failure costing allocations.
	if t, err := time.Parse(time.RFC1123Z, c); err == nil {
		return "t" + strconv.FormatInt(t.Unix(), 10)
	}
	if t, err := mail.ParseDate(c); err == nil {
		return "t" + strconv.FormatInt(t.Unix(), 10)
	}
	return "s" + lowerASCII(c)
}

// CanonicalFrom is the list of addresses in a From field, display names
// dropped, domains in lower case, joined by ",". A field that does not parse
// as an address list falls back to its <…> addresses, and then to its text
// with white space collapsed and ASCII letters lowered.
func CanonicalFrom(v string) string {
	c := collapse(v)
	if list, err := mail.ParseAddressList(c); err == nil && len(list) > 0 {
		addrs := make([]string, len(list))
		for i, a := range list {
			addrs[i] = lowerDomain(a.Address)
		}
		return strings.Join(addrs, ",")
	}
	var addrs []string
	rest := c
	for {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			break
		}
		if a := strings.TrimSpace(rest[i+1 : i+j]); a != "" {
			addrs = append(addrs, lowerDomain(a))
		}
		rest = rest[i+j+1:]
	}
	if len(addrs) > 0 {
		return strings.Join(addrs, ",")
	}
	return lowerASCII(c)
}

func lowerDomain(a string) string {
	if at := strings.LastIndexByte(a, '@'); at >= 0 {
		return a[:at+1] + lowerASCII(a[at+1:])
	}
	return a
}

// collapse unfolds a field value: every run of white space (CR, LF, space,
// tab) becomes one space, and the ends are trimmed.
func collapse(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	space := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case ' ', '\t', '\r', '\n':
			space = b.Len() > 0
		default:
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

// lowerASCII lowers ASCII letters only, so that invalid UTF-8 stays as it is
// and distinct inputs stay distinct.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
