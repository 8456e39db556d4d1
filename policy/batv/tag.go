package batv

import (
	"encoding/hex"
	"strconv"
	"strings"
)

// Syntax is the way a tag is attached to an address.
type Syntax int

const (
	// SyntaxSubaddress is user+prvs=KDDDSSSSSS@domain; it passes Postfix's
	// recipient checks with recipient_delimiter = + and is the default.
	SyntaxSubaddress Syntax = iota
	// SyntaxPrefix is the draft's prvs=KDDDSSSSSS=user@domain.
	SyntaxPrefix
)

// String returns "subaddress" or "prefix".
func (s Syntax) String() string {
	switch s {
	case SyntaxSubaddress:
		return "subaddress"
	case SyntaxPrefix:
		return "prefix"
	}
	return "unknown"
}

// ParseSyntax turns a configuration word into a Syntax.
func ParseSyntax(word string) (Syntax, error) {
	switch strings.ToLower(strings.TrimSpace(word)) {
	case "", "subaddress", "sub-address":
		return SyntaxSubaddress, nil
	case "prefix", "prvs":
		return SyntaxPrefix, nil
	}
	return 0, &syntaxError{word: word}
}

type syntaxError struct{ word string }

func (e *syntaxError) Error() string {
	return "batv: unknown syntax " + quoteShort(e.word) + ` (want "subaddress" or "prefix")`
}

// DefaultDelimiter is the sub-address delimiter used when none is configured;
// it matches Postfix's usual recipient_delimiter.
const DefaultDelimiter = "+"

// maxAddressLen bounds the input we look at: RFC 5321 limits a path to 256
// octets, so anything far longer is hostile or broken.
const maxAddressLen = 1024

const (
	prvsPrefix = "prvs="
	tagLen     = 10 // KDDDSSSSSS
)

// Tag is a parsed prvs tag.
type Tag struct {
	KeyID  int     // K, 0–9
	Day    int     // DDD, expiry day number modulo 1000
	MAC    [3]byte // SSSSSS
	Syntax Syntax  // the form it was found in
}

// String returns the tag as KDDDSSSSSS (lowercase hex).
func (t Tag) String() string {
	var b [tagLen]byte
	return string(t.appendTo(b[:0]))
}

func (t Tag) appendTo(b []byte) []byte {
	b = append(b, byte('0'+t.KeyID), byte('0'+t.Day/100), byte('0'+t.Day/10%10), byte('0'+t.Day%10))
	return hex.AppendEncode(b, t.MAC[:])
}

// Parse is ParseDelimiter with DefaultDelimiter.
func Parse(addr string) (tag Tag, base string, ok bool) {
	return ParseDelimiter(addr, DefaultDelimiter)
}

// ParseDelimiter finds a prvs tag in addr, in either form, and returns it with
// the address it was attached to. It only checks syntax: no key, no clock.
// "prvs=" and the hex digits match in any case. Surrounding spaces and one pair
// of angle brackets are ignored. ok is false when there is no well-formed tag
// (quoted local parts never carry one).
func ParseDelimiter(addr, delim string) (tag Tag, base string, ok bool) {
	tag, base, found := parse(addr, delim)
	return tag, base, found == tagOK
}

// Strip returns addr without its prvs tag (DefaultDelimiter), or addr
// unchanged when it carries none.
func Strip(addr string) string {
	if _, base, ok := Parse(addr); ok {
		return base
	}
	return addr
}

type tagState int

const (
	tagNone      tagState = iota // no sign of a tag
	tagOK                        // well-formed tag
	tagMalformed                 // looks like a tag attempt but is not one
)

// clean drops surrounding spaces and one pair of angle brackets, as MTAs hand
// envelope addresses over either way.
func clean(addr string) string {
	addr = strings.TrimSpace(addr)
	if len(addr) >= 2 && addr[0] == '<' && addr[len(addr)-1] == '>' {
		addr = strings.TrimSpace(addr[1 : len(addr)-1])
	}
	return addr
}

// split returns the local part and domain of a cleaned address; ok is false
// for addresses without '@', with an empty side, or with a quoted local part.
func split(addr string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", "", false
	}
	local, domain = addr[:at], addr[at+1:]
	if local[0] == '"' {
		return "", "", false
	}
	return local, domain, true
}

func parse(addr, delim string) (Tag, string, tagState) {
	if delim == "" {
		delim = DefaultDelimiter
	}
	addr = clean(addr)
	if len(addr) > maxAddressLen {
		if hasPrefixFold(addr, prvsPrefix) || containsFold(addr, delim+prvsPrefix) {
			return Tag{}, "", tagMalformed
		}
		return Tag{}, "", tagNone
	}
	local, domain, ok := split(addr)
	if !ok {
		return Tag{}, "", tagNone
	}
	// Prefix form: prvs=KDDDSSSSSS=user
	attempt := false
	if hasPrefixFold(local, prvsPrefix) {
		attempt = true
		rest := local[len(prvsPrefix):]
		if len(rest) >= tagLen+2 && rest[tagLen] == '=' {
			if tag, ok := parseTag(rest[:tagLen]); ok {
				tag.Syntax = SyntaxPrefix
				// base is a substring of addr: no allocation.
				return tag, addr[len(prvsPrefix)+tagLen+1:], tagOK
			}
		}
	}
	// Sub-address form: user<delim>prvs=KDDDSSSSSS, tag last.
	marker := len(local) - tagLen - len(prvsPrefix) - len(delim)
	if marker > 0 && local[marker:marker+len(delim)] == delim &&
		equalFoldASCII(local[marker+len(delim):marker+len(delim)+len(prvsPrefix)], prvsPrefix) {
		if tag, ok := parseTag(local[len(local)-tagLen:]); ok {
			tag.Syntax = SyntaxSubaddress
			return tag, local[:marker] + "@" + domain, tagOK
		}
	}
	if attempt || containsFold(local, delim+prvsPrefix) {
		return Tag{}, "", tagMalformed
	}
	return Tag{}, "", tagNone
}

func parseTag(s string) (Tag, bool) {
	if len(s) != tagLen {
		return Tag{}, false
	}
	for i := 0; i < 4; i++ {
		if s[i] < '0' || s[i] > '9' {
			return Tag{}, false
		}
	}
	var t Tag
	t.KeyID = int(s[0] - '0')
	t.Day = int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
	for i := 0; i < 3; i++ {
		hi, ok1 := unhex(s[4+2*i])
		lo, ok2 := unhex(s[5+2*i])
		if !ok1 || !ok2 {
			return Tag{}, false
		}
		t.MAC[i] = hi<<4 | lo
	}
	return t, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && equalFoldASCII(s[:len(prefix)], prefix)
}

// containsFold reports whether s contains sub, ASCII case-insensitively,
// without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFoldASCII(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// quoteShort quotes user input for an error message, cut to a sane length.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// equalFoldASCII compares ASCII case-insensitively; unlike equalFoldASCII
// it never matches non-ASCII look-alikes (U+017F folds to 's').
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
