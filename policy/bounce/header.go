package bounce

import (
	"bytes"
	"mime"
	"net/netip"
	"strings"
)

// field is one header field with its value unfolded (continuation lines
// joined by a single space) but otherwise undecoded.
type field struct {
	Name  string // as written
	Value string
}

// header is an ordered list of fields; lookups are case-insensitive.
type header []field

func (h header) get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

func (h header) has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

func (h header) values(name string) []string {
	var vs []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// maxHeaderFields bounds one header block, so a hostile message made of
// millions of one-letter fields cannot make us allocate without bound.
const maxHeaderFields = 1000

// nextLine returns the line starting at b[i:] (without its LF) and the index
// just after it. Input is already normalised to LF line endings.
func nextLine(b []byte, i int) (line []byte, next int) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		return b[i:], len(b)
	}
	return b[i : i+j], i + j + 1
}

// validFieldName reports whether s is an RFC 5322 field name: printable
// US-ASCII except colon and space. Real-world names are short.
func validFieldName(s []byte) bool {
	if len(s) == 0 || len(s) > 76 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c >= 127 || c == ':' {
			return false
		}
	}
	return true
}

// fieldLine splits "Name: value" and reports whether line starts a field.
func fieldLine(line []byte) (name, value []byte, ok bool) {
	k := bytes.IndexByte(line, ':')
	if k <= 0 {
		return nil, nil, false
	}
	n := line[:k]
	// Tolerate "Name : value" written by some old MTAs.
	n = bytes.TrimRight(n, " \t")
	if !validFieldName(n) {
		return nil, nil, false
	}
	return n, line[k+1:], true
}

// parseHeader reads a header block from b. It is lenient: it stops at the
// first empty line, or at the first line that is neither a field nor a
// continuation (so the body starts there), and it skips an mbox "From " line
// at the very top. It returns the fields and the offset of the body.
// truncated is set when maxHeaderFields was reached.
func parseHeader(b []byte) (h header, body int, truncated bool) {
	i := 0
	if bytes.HasPrefix(b, []byte("From ")) {
		_, i = nextLine(b, 0)
	}
	var cur *strings.Builder
	var curName string
	flush := func() {
		if cur != nil {
			h = append(h, field{Name: curName, Value: strings.TrimSpace(cur.String())})
			cur = nil
		}
	}
	for i < len(b) {
		line, next := nextLine(b, i)
		if len(bytes.TrimRight(line, " \t")) == 0 {
			flush()
			return h, next, truncated
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil {
				// A continuation before any field: not a header block.
				flush()
				return h, i, truncated
			}
			cur.WriteByte(' ')
			cur.Write(bytes.TrimSpace(line))
			i = next
			continue
		}
		name, value, ok := fieldLine(line)
		if !ok {
			flush()
			return h, i, truncated
		}
		flush()
		if len(h) >= maxHeaderFields {
			return h, i, true
		}
		cur = &strings.Builder{}
		curName = string(name)
		cur.Write(bytes.TrimSpace(value))
		i = next
	}
	flush()
	return h, len(b), truncated
}

// wordDecoder decodes RFC 2047 encoded words; charsets beyond UTF-8,
// US-ASCII and ISO-8859-1 come from go-message's charset package.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// decodeText decodes RFC 2047 encoded words in an unstructured value and
// returns the input unchanged when it cannot.
func decodeText(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// contentType returns the lowercased media type and its parameters. Broken
// values yield the best guess mime.ParseMediaType can give (it returns the
// media type even with bad parameters) or the bare type before ";".
func contentType(h header) (string, map[string]string) {
	v := h.get("Content-Type")
	if v == "" {
		return "", nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil && mt == "" {
		mt = strings.TrimSpace(strings.ToLower(strings.SplitN(v, ";", 2)[0]))
		params = looseParams(v)
	} else if err != nil {
		params = looseParams(v)
	}
	return mt, params
}

// looseParams recovers parameters (mainly boundary and report-type) from a
// Content-Type value that mime.ParseMediaType rejects.
func looseParams(v string) map[string]string {
	p := map[string]string{}
	for _, part := range strings.Split(v, ";")[1:] {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' {
			if e := strings.IndexByte(val[1:], '"'); e >= 0 {
				val = val[1 : 1+e]
			} else {
				val = val[1:]
			}
		}
		if k != "" {
			if _, dup := p[k]; !dup {
				p[k] = val
			}
		}
	}
	return p
}

// parseReceived parses one Received field value into a Hop: the "from" host
// name, the "by" host name and the client IP (an address literal in brackets
// in the from clause, else a bare IP in its comment, else any IP there).
func parseReceived(v string) Hop {
	raw := strings.Join(strings.Fields(v), " ")
	hop := Hop{Raw: raw}
	lower := lowerASCII([]byte(raw))
	fromClause := ""
	if strings.HasPrefix(lower, "from ") {
		fromClause = raw[5:]
		if k := indexWord(lowerASCII([]byte(fromClause)), "by"); k >= 0 {
			fromClause = fromClause[:k]
		}
		hop.From = firstToken(fromClause)
	}
	if k := indexWord(lower, "by"); k >= 0 {
		hop.By = firstToken(raw[k+3:])
	}
	hop.ClientIP = clientIP(fromClause)
	return hop
}

// indexWord finds " word " (or "word " at the start) outside parentheses,
// so a "by" inside a comment such as "(authenticated by ...)" is skipped.
func indexWord(s, word string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			if depth > 0 {
				depth--
			}
		}
		if depth != 0 {
			continue
		}
		if (i == 0 || s[i-1] == ' ' || s[i-1] == ')') && strings.HasPrefix(s[i:], word) {
			end := i + len(word)
			if end < len(s) && (s[end] == ' ' || s[end] == '\t') {
				return i
			}
		}
	}
	return -1
}

func firstToken(s string) string {
	s = strings.TrimSpace(s)
	if k := strings.IndexAny(s, " \t;()"); k >= 0 {
		s = s[:k]
	}
	return strings.Trim(s, "<>")
}

// clientIP looks for an IP address in a Received from clause, preferring
// the bracketed address literal that the receiving MTA recorded.
func clientIP(s string) netip.Addr {
	var fallback netip.Addr
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '[' && c != '(' && c != ' ' && c != '=' && c != '@' {
			continue
		}
		j := i + 1
		for j < len(s) && (isHex(s[j]) || s[j] == '.' || s[j] == ':') {
			j++
		}
		cand := s[i+1 : j]
		cand = strings.TrimPrefix(strings.TrimPrefix(cand, "IPv6:"), "ipv6:")
		if len(s) > i+6 && strings.EqualFold(s[i+1:i+6], "ipv6:") {
			k := i + 6
			for k < len(s) && (isHex(s[k]) || s[k] == '.' || s[k] == ':') {
				k++
			}
			cand = s[i+6 : k]
			j = k
		}
		a, err := netip.ParseAddr(cand)
		if err != nil || !strings.ContainsAny(cand, ".:") {
			continue
		}
		a = a.Unmap()
		if c == '[' {
			return a
		}
		if !fallback.IsValid() {
			fallback = a
		}
	}
	return fallback
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// lowerASCII lowercases ASCII letters only, so offsets in the result are
// offsets in b (strings.ToLower may change the length of invalid UTF-8).
func lowerASCII(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}
