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

// plainFieldName reports whether a field name is one that mail software
// writes: a letter, then letters, digits, "-", "_" or ".". In a badly
// folded block, "07:31:37 +0000" or "([fe80::1]) by" is a continuation,
// not a field.
func plainFieldName(n []byte) bool {
	if len(n) == 0 || !(n[0] >= 'a' && n[0] <= 'z' || n[0] >= 'A' && n[0] <= 'Z') {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
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
	blk := scanHeader(b, false)
	return blk.h, blk.body, blk.truncated
}

// headerBlock is a parsed header block and where it lies in its input.
type headerBlock struct {
	h         header
	start     int // offset of the first field line (after an mbox "From " line)
	end       int // offset just after the last field line
	body      int // offset of the body (after the empty line, if any)
	truncated bool
}

// raw returns the block's field lines as written.
func (blk headerBlock) raw(b []byte) []byte { return b[blk.start:blk.end] }

// scanHeader reads a header block. With badFolds, as for the header of a
// returned original, a line that is neither a field nor a continuation
// continues the field before it: reporting MTAs often fold badly (lines
// without leading white space, Exchange's "Original message headers:"), and
// only an empty line or a MIME boundary ends such a block.
func scanHeader(b []byte, badFolds bool) (blk headerBlock) {
	i := 0
	if bytes.HasPrefix(b, []byte("From ")) {
		_, i = nextLine(b, 0)
	}
	blk.start, blk.end, blk.body = i, i, i
	// The current field spans b[fStart:fEnd] (name included); most fields
	// are one line, and their value is sliced without building.
	fStart, fEnd, nameEnd, lines := -1, 0, 0, 0
	flush := func() {
		if fStart < 0 {
			return
		}
		var value string
		if lines == 1 {
			value = string(bytes.TrimSpace(b[nameEnd+1 : fEnd]))
		} else {
			value = unfold(b[nameEnd+1 : fEnd])
		}
		name := bytes.TrimRight(b[fStart:nameEnd], " \t")
		n, ok := commonNames[string(name)] // no allocation for the lookup
		if !ok {
			n = string(name)
		}
		if blk.h == nil {
			blk.h = make(header, 0, 16)
		}
		blk.h = append(blk.h, field{Name: n, Value: value})
		fStart = -1
	}
	for i < len(b) {
		line, next := nextLine(b, i)
		if isBlank(line) {
			flush()
			blk.body = next
			return blk
		}
		if line[0] == ' ' || line[0] == '\t' {
			if fStart < 0 {
				// A continuation before any field: not a header block.
				blk.body = i
				return blk
			}
			fEnd, blk.end = i+len(line), next
			lines++
			i = next
			continue
		}
		if name, _, ok := fieldLine(line); !ok || badFolds && !plainFieldName(name) {
			if badFolds && fStart >= 0 && !bytes.HasPrefix(line, []byte("--")) {
				fEnd, blk.end = i+len(line), next
				lines++
				i = next
				continue
			}
			flush()
			blk.body = i
			return blk
		}
		flush()
		if len(blk.h) >= maxHeaderFields {
			blk.truncated = true
			blk.body = i
			return blk
		}
		fStart, nameEnd, fEnd, lines = i, i+bytes.IndexByte(line, ':'), i+len(line), 1
		blk.end = next
		i = next
	}
	flush()
	blk.body = len(b)
	return blk
}

// commonNames holds field names as most software writes them, so parsing
// shares one string instead of allocating one per field.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{
		"Received", "Message-ID", "Message-Id", "From", "To", "Cc", "Subject", "Date",
		"Return-Path", "Return-path", "Reply-To", "Sender", "In-Reply-To", "References",
		"MIME-Version", "Mime-Version", "Content-Type", "Content-type", "Content-Transfer-Encoding",
		"Content-Description", "Content-Disposition", "Content-ID", "Content-Language",
		"Delivered-To", "X-Original-To", "X-Mailer", "DKIM-Signature", "Auto-Submitted",
		"Precedence", "X-Failed-Recipients", "Final-Recipient", "Original-Recipient",
		"Action", "Status", "Reporting-MTA", "Remote-MTA", "Diagnostic-Code", "Arrival-Date",
		"Last-Attempt-Date", "Received-From-MTA", "X-Postfix-Queue-ID", "X-Postfix-Sender",
		"Original-Envelope-Id", "X-Actual-Recipient", "Authentication-Results", "Received-SPF",
		"X-Spam-Status", "X-Priority", "Importance", "Thread-Topic", "Thread-Index",
		"Accept-Language", "Content-Length", "Status", "X-UID", "X-Keywords", "List-Unsubscribe",
	} {
		m[n] = n
	}
	return m
}()

// unfold joins the lines of a folded value with single spaces.
func unfold(v []byte) string {
	var sb strings.Builder
	sb.Grow(len(v))
	for len(v) > 0 {
		line, next := nextLine(v, 0)
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			sb.Write(t)
		}
		v = v[next:]
	}
	return sb.String()
}

func isBlank(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
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

// parseReceived parses one Received field value (RFC 5321 section 4.4)
// into a Hop: the "from" host name, the "by" host name, the client address
// of the from clause and an address written for the by host.
func parseReceived(v string) Hop {
	raw := strings.Join(strings.Fields(v), " ")
	hop := Hop{Raw: raw}
	lower := lowerASCII([]byte(raw))
	byAt := indexWord(lower, "by")
	if strings.HasPrefix(lower, "from ") {
		end := len(raw)
		if byAt >= 5 {
			end = byAt
		}
		fromClause := raw[5:end]
		hop.From = firstToken(fromClause)
		hop.ClientIP = clientIP(fromClause)
	}
	if byAt >= 0 {
		byClause := raw[byAt+3:]
		hop.By = firstToken(byClause)
		hop.ByIP = byIP(byClause)
	}
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

// ipMention is an IP address written in a Received clause.
type ipMention struct {
	addr      netip.Addr
	depth     int  // parenthesis depth: 0 outside comments
	bracketed bool // written as an address literal, [192.0.2.1]
	helo      bool // tagged as what the client said in HELO/EHLO
}

// ipMentions lists the IP addresses written in a Received clause, with
// where they stand. Address literals ("[192.0.2.1]", "[IPv6:2001:db8::1]"),
// bare addresses and IPv6 zones ("%7") are recognised.
func ipMentions(s string) []ipMention {
	var out []ipMention
	depth := 0
	for i := 0; i < len(s) && len(out) < 16; i++ {
		c := s[i]
		switch c {
		case '(':
			depth++
			continue
		case ')':
			if depth > 0 {
				depth--
			}
			continue
		}
		// An address starts at the clause start or after a delimiter.
		if i > 0 && !isIPDelim(s[i-1]) || !(isHex(c) || c == ':' || c == '[' || c == 'I' || c == 'i') {
			continue
		}
		a, end, ok := readAddr(s, i)
		if ok {
			out = append(out, ipMention{addr: a, depth: depth, bracketed: c == '[', helo: heloTagged(s[:i])})
		}
		i = max(i, end-1)
	}
	return out
}

// readAddr reads an IP address written at s[i:], as a literal
// ("[192.0.2.1]", "[IPv6:2001:db8::1]", "[fe80::1%7]") or bare. It returns
// the address, the offset after what it read, and whether it was one.
func readAddr(s string, i int) (netip.Addr, int, bool) {
	j := i
	if s[j] == '[' {
		j++
	}
	if len(s) >= j+5 && strings.EqualFold(s[j:j+5], "ipv6:") {
		j += 5
	}
	k := j
	for k < len(s) && (isHex(s[k]) || s[k] == '.' || s[k] == ':') {
		k++
	}
	cand := s[j:k]
	if k < len(s) && s[k] == '%' {
		// Zone index (fe80::1%7): part of the literal, not of the address.
		for k < len(s) && s[k] != ']' && s[k] != ' ' && s[k] != ')' {
			k++
		}
	}
	if len(cand) < 2 || !strings.ContainsAny(cand, ".:") {
		return netip.Addr{}, k, false
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(cand, "."))
	if err != nil {
		return netip.Addr{}, k, false
	}
	return a.Unmap(), k, true
}

func isIPDelim(c byte) bool {
	return c == ' ' || c == '[' || c == '(' || c == '=' || c == '@' || c == ','
}

// heloTagged reports whether the text before an address ends with a HELO
// tag: "(HELO [192.0.2.1])", "(helo=[192.0.2.1])", "EHLO 192.0.2.1".
func heloTagged(before string) bool {
	t := strings.TrimRight(before, " [=")
	if len(t) < 4 {
		return false
	}
	w := strings.ToLower(t[len(t)-4:])
	return w == "helo" || w == "ehlo"
}

// clientIP returns the client address of a Received from clause: the
// TCP-info address the receiving MTA recorded in the comment after the
// HELO name ("from [127.0.0.1] (host [192.0.2.21])" gives 192.0.2.21),
// never the HELO literal itself; when no comment names an address, the
// address literal or bare address outside comments (Exim writes
// "from [192.0.2.21] (helo=x)").
func clientIP(s string) netip.Addr {
	var outBracket, outBare netip.Addr
	for _, m := range ipMentions(s) {
		switch {
		case m.helo:
		case m.depth > 0:
			return m.addr
		case m.bracketed && !outBracket.IsValid():
			outBracket = m.addr
		case !m.bracketed && !outBare.IsValid():
			outBare = m.addr
		}
	}
	if outBracket.IsValid() {
		return outBracket
	}
	return outBare
}

// byIP returns the address of the receiving host when the by clause writes
// one: as the host itself ("by 10.37.1.137 with SMTP", "by [IPv6:...]") or
// in the comment right after the host name ("by host (10.152.250.211)").
func byIP(s string) netip.Addr {
	s = strings.TrimSpace(s)
	end := strings.IndexAny(s, " \t;(")
	if end < 0 {
		end = len(s)
	}
	if ms := ipMentions(s[:end]); len(ms) > 0 && ms[0].depth == 0 {
		return ms[0].addr
	}
	rest := strings.TrimLeft(s[end:], " \t")
	if !strings.HasPrefix(rest, "(") {
		return netip.Addr{}
	}
	d := 0
	for i := 0; i < len(rest); i++ {
		if rest[i] == '(' {
			d++
		} else if rest[i] == ')' {
			d--
			if d == 0 {
				rest = rest[:i+1]
				break
			}
		}
	}
	for _, m := range ipMentions(rest) {
		if !m.helo {
			return m.addr
		}
	}
	return netip.Addr{}
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
