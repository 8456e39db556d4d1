package dnsbl

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Senders says which envelope senders a zone is consulted for.
type Senders string

const (
	// SendersAny queries the zone for every message.
	SendersAny Senders = "any"
	// SendersBounce queries the zone only for bounce-class senders (null
	// sender, postmaster@): Backscatterer's "safe mode". Backscatter lists
	// list legitimate servers that bounce badly, so asking them about
	// ordinary mail rejects real mail.
	SendersBounce Senders = "bounce"
)

// Limits that keep hostile or mistaken configuration from costing memory or
// overflowing a score sum.
const (
	maxSpecLen = 1024
	maxWeight  = 1_000_000
)

// DefaultSenders is the scope a zone gets when its spec names none: bounce
// for known backscatter lists (any zone whose name contains "backscatter",
// such as ips.backscatterer.org), any otherwise.
func DefaultSenders(zone string) Senders {
	if strings.Contains(strings.ToLower(zone), "backscatter") {
		return SendersBounce
	}
	return SendersAny
}

// Range is an inclusive range of octet values.
type Range struct{ Lo, Hi uint8 }

// Filter is a postscreen answer filter, d.d.d.d where each d is a number or
// a bracketed list "[n;m..k]". The zero Filter matches any answer in
// 127.0.0.0/8.
type Filter struct {
	octets [4][]Range // all nil: no filter
}

// IsZero reports whether f is the empty filter (any 127.0.0.0/8 answer).
func (f Filter) IsZero() bool { return f.octets[0] == nil }

// Match reports whether the answer a satisfies the filter. The caller has
// already rejected answers outside 127.0.0.0/8 and error codes.
func (f Filter) Match(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	if f.IsZero() {
		return a.As4()[0] == 127
	}
	b := a.As4()
	for i, rs := range f.octets {
		ok := false
		for _, r := range rs {
			if b[i] >= r.Lo && b[i] <= r.Hi {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// String returns the filter in postscreen syntax ("" for the zero filter).
func (f Filter) String() string {
	if f.IsZero() {
		return ""
	}
	var sb strings.Builder
	for i, rs := range f.octets {
		if i > 0 {
			sb.WriteByte('.')
		}
		if len(rs) == 1 && rs[0].Lo == rs[0].Hi {
			sb.WriteString(strconv.Itoa(int(rs[0].Lo)))
			continue
		}
		sb.WriteByte('[')
		for j, r := range rs {
			if j > 0 {
				sb.WriteByte(';')
			}
			sb.WriteString(strconv.Itoa(int(r.Lo)))
			if r.Hi != r.Lo {
				sb.WriteString("..")
				sb.WriteString(strconv.Itoa(int(r.Hi)))
			}
		}
		sb.WriteByte(']')
	}
	return sb.String()
}

// ParseFilter parses a postscreen filter such as "127.0.0.[2..11]" or
// "127.0.[0;2;4..6].1". The empty string is the zero Filter.
func ParseFilter(s string) (Filter, error) {
	var f Filter
	if s == "" {
		return f, nil
	}
	if len(s) > maxSpecLen {
		return f, fmt.Errorf("filter is longer than %d characters", maxSpecLen)
	}
	// Split on dots outside brackets: ranges use ".." inside brackets.
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
			if depth > 1 {
				return f, fmt.Errorf("filter %q: nested '['", s)
			}
		case ']':
			depth--
			if depth < 0 {
				return f, fmt.Errorf("filter %q: ']' without '['", s)
			}
		case '.':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return f, fmt.Errorf("filter %q: '[' without ']'", s)
	}
	parts = append(parts, s[start:])
	if len(parts) != 4 {
		return f, fmt.Errorf("filter %q: want four octets d.d.d.d, got %d", s, len(parts))
	}
	for i, p := range parts {
		rs, err := parseOctet(p)
		if err != nil {
			return Filter{}, fmt.Errorf("filter %q: octet %d: %w", s, i+1, err)
		}
		f.octets[i] = rs
	}
	return f, nil
}

func parseOctet(p string) ([]Range, error) {
	if p == "" {
		return nil, errors.New("empty octet")
	}
	if p[0] != '[' {
		n, err := parseOctetNumber(p)
		if err != nil {
			return nil, err
		}
		return []Range{{n, n}}, nil
	}
	if p[len(p)-1] != ']' {
		return nil, fmt.Errorf("%q: text after ']'", p)
	}
	inner := p[1 : len(p)-1]
	if inner == "" {
		return nil, errors.New("empty list []")
	}
	var rs []Range
	for _, item := range strings.Split(inner, ";") {
		lo, hi, isRange := strings.Cut(item, "..")
		a, err := parseOctetNumber(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parseOctetNumber(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("octet range %d..%d is empty", a, b)
			}
		}
		rs = append(rs, Range{a, b})
	}
	return rs, nil
}

func parseOctetNumber(s string) (uint8, error) {
	if s == "" {
		return 0, errors.New("missing number")
	}
	if len(s) > 3 {
		return 0, fmt.Errorf("%q is not an octet (0-255)", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not an octet (0-255)", s)
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 255 {
		return 0, fmt.Errorf("%q is not an octet (0-255)", s)
	}
	return uint8(n), nil
}

// Zone is one configured DNS list: the postscreen entry
// "name=filter*weight" plus the sender scope.
type Zone struct {
	Name    string  // DNS zone, lower case, no trailing dot
	Filter  Filter  // which answers count as a listing
	Weight  int     // added to the score when listed; negative for allowlists
	Senders Senders // which senders the zone is consulted for
}

// String returns the zone in the one-line syntax ParseZoneSpec reads; the
// weight and sender scope appear only when they differ from the defaults.
func (z Zone) String() string {
	s := z.Name
	if !z.Filter.IsZero() {
		s += "=" + z.Filter.String()
	}
	if z.Weight != 1 {
		s += "*" + strconv.Itoa(z.Weight)
	}
	if z.Senders != DefaultSenders(z.Name) {
		s += " senders=" + string(z.Senders)
	}
	return s
}

// MarshalText implements encoding.TextMarshaler with String.
func (z Zone) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseZoneSpec, so
// a configuration decoder (mapstructure's TextUnmarshallerHookFunc) can read
// zones from strings.
func (z *Zone) UnmarshalText(b []byte) error {
	v, err := ParseZoneSpec(string(b))
	if err != nil {
		return err
	}
	*z = v
	return nil
}

// ParseZoneSpec parses one zone in postscreen syntax with optional
// "key=value" options after white space:
//
//	zen.spamhaus.org=127.0.0.[2..11]*3
//	list.dnswl.org=127.0.[0..255].[1..3]*-2
//	ips.backscatterer.org=127.0.0.2*6 senders=bounce
//
// No filter means any answer in 127.0.0.0/8; no weight means 1. The only
// option is senders=bounce|any (default: DefaultSenders).
func ParseZoneSpec(s string) (Zone, error) {
	if len(s) > maxSpecLen {
		return Zone{}, fmt.Errorf("zone spec is longer than %d characters", maxSpecLen)
	}
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return Zone{}, errors.New("zone spec is empty")
	}
	cfg := ZoneConfig{}
	spec := fields[0]
	if i := strings.LastIndexByte(spec, '*'); i >= 0 {
		ws := spec[i+1:]
		w, err := strconv.Atoi(ws)
		if err != nil {
			return Zone{}, fmt.Errorf("zone spec %q: weight %q is not an integer", s, ws)
		}
		cfg.Weight = &w
		spec = spec[:i]
	}
	cfg.Zone, cfg.Filter, _ = strings.Cut(spec, "=")
	if strings.Contains(spec, "=") && cfg.Filter == "" {
		return Zone{}, fmt.Errorf("zone spec %q: empty filter after '='", s)
	}
	for _, opt := range fields[1:] {
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			return Zone{}, fmt.Errorf("zone spec %q: option %q is not key=value", s, opt)
		}
		switch strings.ToLower(k) {
		case "senders":
			if cfg.Senders != "" {
				return Zone{}, fmt.Errorf("zone spec %q: senders given twice", s)
			}
			cfg.Senders = v
			if v == "" {
				return Zone{}, fmt.Errorf("zone spec %q: senders is empty, want bounce or any", s)
			}
		default:
			return Zone{}, fmt.Errorf("zone spec %q: unknown option %q (known: senders)", s, k)
		}
	}
	z, err := cfg.Compile()
	if err != nil {
		return Zone{}, fmt.Errorf("zone spec %q: %w", s, err)
	}
	return z, nil
}

// ZoneConfig is the structured form of a zone for YAML configuration.
type ZoneConfig struct {
	Zone    string `mapstructure:"zone"`    // DNS zone, e.g. zen.spamhaus.org
	Filter  string `mapstructure:"filter"`  // postscreen filter, e.g. 127.0.0.[2..11]; empty: any 127/8 answer
	Weight  *int   `mapstructure:"weight"`  // nil: 1
	Senders string `mapstructure:"senders"` // bounce, any, or empty for DefaultSenders
}

// Compile validates the configuration and returns the zone it describes.
func (c ZoneConfig) Compile() (Zone, error) {
	name, err := checkZoneName(c.Zone)
	if err != nil {
		return Zone{}, err
	}
	z := Zone{Name: name, Weight: 1}
	if z.Filter, err = ParseFilter(c.Filter); err != nil {
		return Zone{}, err
	}
	if c.Weight != nil {
		if *c.Weight > maxWeight || *c.Weight < -maxWeight {
			return Zone{}, fmt.Errorf("weight %d is outside ±%d", *c.Weight, maxWeight)
		}
		z.Weight = *c.Weight
	}
	switch strings.ToLower(c.Senders) {
	case "":
		z.Senders = DefaultSenders(name)
	case string(SendersAny):
		z.Senders = SendersAny
	case string(SendersBounce):
		z.Senders = SendersBounce
	default:
		return Zone{}, fmt.Errorf("senders %q: want bounce or any", c.Senders)
	}
	return z, nil
}

// checkZoneName validates a DNS zone name and returns it in canonical form.
func checkZoneName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if name == "" {
		return "", errors.New("zone name is empty")
	}
	// The query name adds up to 64 characters (IPv6 nibbles) to the zone.
	if len(name) > 253-64 {
		return "", fmt.Errorf("zone name %q is too long", s)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "", fmt.Errorf("zone name %q has an empty label", s)
		}
		if len(label) > 63 {
			return "", fmt.Errorf("zone name %q has a label longer than 63 characters", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("zone name %q: character %q is not allowed", s, c)
			}
		}
	}
	return name, nil
}
