package bounce

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/mail"
	"net/netip"
	"strings"

	"github.com/emersion/go-message/charset"
)

// charsetReader converts legacy charsets (ISO-2022-JP is common in bounces)
// to UTF-8.
var charsetReader = charset.Reader

// Kind is what a message is, as far as backscatter is concerned.
type Kind int

// Kinds of messages. KindNone is an ordinary message.
const (
	KindNone            Kind = iota // not a bounce
	KindFailure                     // non-delivery report (permanent failure)
	KindDelay                       // delay notification (delivery still being tried)
	KindDelivered                   // success DSN (delivered, relayed or expanded)
	KindAutoReply                   // RFC 3834 auto-reply (vacation, out of office, ...)
	KindFeedback                    // RFC 5965 ARF feedback report
	KindMDN                         // RFC 8098 message disposition notification (read receipt)
	KindChallenge                   // challenge-response request (confirm you sent this)
	KindAggregateReport             // DMARC aggregate (RFC 7489) or SMTP TLS (RFC 8460) report
)

// String returns the name used in logs: "none", "failure", "delay",
// "delivered", "autoreply", "feedback-report", "mdn", "challenge" or
// "aggregate-report".
func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindFailure:
		return "failure"
	case KindDelay:
		return "delay"
	case KindDelivered:
		return "delivered"
	case KindAutoReply:
		return "autoreply"
	case KindFeedback:
		return "feedback-report"
	case KindMDN:
		return "mdn"
	case KindChallenge:
		return "challenge"
	case KindAggregateReport:
		return "aggregate-report"
	}
	return "unknown"
}

// IsBounce reports whether k is a delivery report about a message that
// could not be delivered (yet): a failure or a delay.
func (k Kind) IsBounce() bool { return k == KindFailure || k == KindDelay }

// Hop is one Received field of the original message.
type Hop struct {
	From     string     // host name after "from" (as written, may be empty)
	By       string     // host name after "by" (may be empty)
	ClientIP netip.Addr // client address recorded in the from clause; zero if none
	ByIP     netip.Addr // the receiving host when the by clause names it by IP literal; zero if none
	Raw      string     // the field value, unfolded, white space collapsed
}

// Report is what Parse found. All addresses are lowercased; Message-IDs are
// in NormalizeMessageID form.
type Report struct {
	Kind Kind
	// Why holds short reasons for the classification, most decisive first.
	Why []string
	// OriginalSenders are envelope sender candidates of the original
	// message: X-Postfix-Sender / Original-Envelope sender from the DSN,
	// then the original's Return-Path, Sender and From.
	OriginalSenders []string
	// FailedRecipients are the recipients the report is about: failed or
	// delayed DSN recipients (Original-Recipient when given, else
	// Final-Recipient), X-Failed-Recipients, or addresses named in a
	// plain-text bounce.
	FailedRecipients []string
	// OriginalMessageID is the original's Message-ID, normalised; empty
	// when none was found. For an MDN it is the report's
	// Original-Message-ID (RFC 8098 section 3.2.5) when given.
	OriginalMessageID string
	// OriginalHeaders is set when the original's header block was found
	// (message/rfc822, text/rfc822-headers, message/global* or inline).
	OriginalHeaders bool
	// OriginalHeader is the raw header block of the returned original as
	// it was written: CRLF line endings, folding kept, after undoing the
	// carrier's transfer encoding (quoted-printable, base64) and any "> "
	// quoting of an inline copy; nil when none was found, and when the
	// reporting MTA wrote the original's fields into a MIME part header
	// (no bytes of their own). Header blocks that the reporting MTA
	// re-folded are returned as the report has them.
	OriginalHeader []byte
	// OriginalBody is the original's body, CRLF line endings, when the
	// whole message came back (message/rfc822, or an inline copy followed
	// by its body); nil when only its header did. An inline copy's body
	// runs to the end of its text part.
	OriginalBody []byte
	// Received are the original's Received hops, in header order (the
	// most recent hop first).
	Received []Hop
	// InReplyTo holds the Message-IDs from the message's own In-Reply-To
	// and References fields, for auto-replies (and every other kind).
	InReplyTo []string
	// Truncated is set when a limit was hit; the report covers what was read.
	Truncated bool
}

// Limits bound the work Parse does on one message.
type Limits struct {
	MaxBytes int // input beyond this is ignored (Truncated is set)
	MaxDepth int // MIME nesting depth
	MaxParts int // MIME parts in total
}

// DefaultLimits returns 10 MiB, depth 10 and 100 parts: more than any real
// bounce needs.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 10 << 20, MaxDepth: 10, MaxParts: 100}
}

// ErrNotMessage is returned for input that has no RFC 5322 header at all.
var ErrNotMessage = errors.New("bounce: input is not a mail message (no header fields)")

// Parse classifies raw, a whole RFC 5322 message (header and body, CRLF, LF
// or CR line endings), and extracts what it says about the original
// message. Limits with zero fields take the DefaultLimits value. It returns
// an error only when raw is not a message at all.
func Parse(raw []byte, lim Limits) (*Report, error) {
	def := DefaultLimits()
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = def.MaxBytes
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = def.MaxDepth
	}
	if lim.MaxParts <= 0 {
		lim.MaxParts = def.MaxParts
	}
	p := &parser{lim: lim, rep: &Report{}}
	if len(raw) > lim.MaxBytes {
		raw = raw[:lim.MaxBytes]
		p.rep.Truncated = true
	}
	b := normalizeNewlines(raw)
	h, off, trunc := parseHeader(b)
	if trunc {
		p.rep.Truncated = true
	}
	if len(h) == 0 {
		return nil, ErrNotMessage
	}
	p.top = h
	p.body = b[off:]
	p.walk(h, b[off:], 0)
	p.finish()
	return p.rep, nil
}

// normalizeNewlines turns CRLF and lone CR into LF so that every scanner
// below deals with one line ending. It copies only when needed.
func normalizeNewlines(b []byte) []byte {
	if bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\r' {
			if i+1 < len(b) && b[i+1] == '\n' {
				continue
			}
			c = '\n'
		}
		out = append(out, c)
	}
	return out
}

// maxTextScan bounds the text heuristics per part (see finish).
const maxTextScan = 256 << 10

type parser struct {
	lim   Limits
	rep   *Report
	top   header
	body  []byte // the whole body, for the text fallbacks
	parts int

	reportType string     // report-type of a multipart/report
	dsn        []dsnGroup // parsed delivery-status groups (per-message first)
	dsnSeen    bool       // a message/delivery-status part was present
	feedback   bool       // a message/feedback-report part was present
	mdn        header     // fields of a message/disposition-notification part
	mdnSeen    bool       // such a part was present
	tlsrpt     bool       // an application/tlsrpt+* part was present
	dmarcFile  bool       // a DMARC aggregate report file was attached
	texts      [][]byte   // human-readable parts, in order
	low        []string   // texts lowercased (lower), filled on demand
	sep        []int      // separator offsets in low (separator), -2 until known
	originals  []original // structured originals (MIME parts)
	partOrigs  []original // parts whose own header is the original's
}

// walk visits one MIME entity.
func (p *parser) walk(h header, body []byte, depth int) {
	mt, params := contentType(h)
	p.walkTyped(h, mt, params, body, depth)
}

// walkTyped visits one MIME entity whose Content-Type is already parsed.
func (p *parser) walkTyped(h header, mt string, params map[string]string, body []byte, depth int) {
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if mt == "multipart/report" && p.reportType == "" {
			p.reportType = strings.ToLower(params["report-type"])
		}
		boundary := params["boundary"]
		if depth >= p.lim.MaxDepth {
			p.rep.Truncated = true
			p.texts = append(p.texts, body)
			return
		}
		parts, ok := splitMultipart(body, boundary)
		if !ok {
			// Broken MIME: the boundary is missing or never used. The
			// text scanners below still find what is in there.
			p.texts = append(p.texts, body)
			return
		}
		for _, part := range parts {
			if p.parts >= p.lim.MaxParts {
				p.rep.Truncated = true
				return
			}
			p.parts++
			blk := scanHeader(part, false)
			if blk.truncated {
				p.rep.Truncated = true
			}
			pmt, pparams := contentType(blk.h)
			p.partHeaderOriginal(blk, part, pmt)
			p.walkTyped(blk.h, pmt, pparams, part[blk.body:], depth+1)
		}
	case mt == "message/delivery-status" || mt == "message/global-delivery-status":
		p.dsnSeen = true
		p.dsn = append(p.dsn, parseDSN(p.decode(h, params["charset"], body))...)
	case mt == "message/feedback-report":
		p.feedback = true
	case mt == "message/disposition-notification" || mt == "message/global-disposition-notification":
		if !p.mdnSeen {
			p.mdn, _, _ = parseHeader(skipBlank(p.decodeTransfer(h, body)))
		}
		p.mdnSeen = true
	case mt == "message/rfc822" || mt == "message/global" || mt == "message/partial":
		if o, ok := structuredOriginal(p.decodeTransfer(h, body), mt, depth, mt != "message/partial"); ok {
			p.originals = append(p.originals, o)
		} else if wm := h.withoutMIME(); looksLikeOriginal(wm) {
			// Some MTAs write the original's fields into the part
			// header itself instead of the part body.
			p.originals = append(p.originals, original{h: wm, carrier: mt + " (part header)", depth: depth})
		}
	case mt == "text/rfc822-headers" || mt == "text/rfc822-header" || mt == "message/global-headers":
		inner := p.decodeTransfer(h, body)
		if o, ok := structuredOriginal(inner, mt, depth, false); ok {
			p.originals = append(p.originals, o)
		} else {
			p.texts = append(p.texts, inner)
		}
	case mt == "text/xml":
		p.noteAttachment(mt, h)
	case mt == "" || strings.HasPrefix(mt, "text/"):
		p.texts = append(p.texts, p.decode(h, params["charset"], body))
	default:
		// Other attachments (application/*, image/*) say nothing about
		// bounces; aggregate reports are recognised by theirs.
		p.noteAttachment(mt, h)
	}
}

// withoutMIME returns the fields that are not MIME part fields.
func (h header) withoutMIME() header {
	var out header
	for _, f := range h {
		n := strings.ToLower(f.Name)
		if strings.HasPrefix(n, "content-") || n == "mime-version" {
			continue
		}
		out = append(out, f)
	}
	return out
}

func skipBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\n' || b[0] == ' ' || b[0] == '\t') {
		if b[0] != '\n' {
			// Only skip whole blank lines, not indentation of a field.
			line, next := nextLine(b, 0)
			if len(bytes.TrimSpace(line)) != 0 {
				return b
			}
			b = b[next:]
			continue
		}
		b = b[1:]
	}
	return b
}

// decode undoes the Content-Transfer-Encoding and converts text charsets to
// UTF-8 (go-message's charset package). Undecodable bodies are returned as
// they are.
func (p *parser) decode(h header, charset string, body []byte) []byte {
	body = p.decodeTransfer(h, body)
	cs := strings.ToLower(strings.TrimSpace(charset))
	switch cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return body
	}
	if !needsCharset(body) {
		return body // pure ASCII reads the same in every ASCII-based charset
	}
	r, err := charsetReader(cs, bytes.NewReader(body))
	if err != nil {
		return body
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(p.lim.MaxBytes)))
	if err != nil && len(out) == 0 {
		return body
	}
	return normalizeNewlines(out)
}

// needsCharset reports whether b holds bytes that an ASCII-based charset
// decoder would change: 8-bit bytes, or ESC (ISO-2022 shifts).
func needsCharset(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || c == 0x1b || c == 0x0e || c == 0x0f {
			return true
		}
	}
	return false
}

// decodeTransfer undoes a quoted-printable or base64
// Content-Transfer-Encoding (RFC 2045 section 6), leniently: a broken
// escape stays as written, stray characters in base64 are skipped. Other
// encodings (7bit, 8bit, binary, unknown) are returned as they are.
func (p *parser) decodeTransfer(h header, body []byte) []byte {
	cte := h.get("Content-Transfer-Encoding")
	if cte == "" {
		return body
	}
	cte = strings.ToLower(strings.TrimSpace(cte))
	if i := strings.IndexAny(cte, " \t;("); i >= 0 {
		cte = cte[:i]
	}
	switch cte {
	case "quoted-printable":
		return normalizeNewlines(decodeQP(body))
	case "base64":
		return normalizeNewlines(decodeBase64(body))
	}
	return body
}

// decodeQP decodes quoted-printable text with LF line endings.
func decodeQP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		line, next := nextLine(b, 0)
		hasLF := next > len(line)
		b = b[next:]
		// Trailing white space is padding added in transport (RFC 2045).
		line = bytes.TrimRight(line, " \t")
		soft := len(line) > 0 && line[len(line)-1] == '='
		if soft {
			line = line[:len(line)-1]
		}
		for i := 0; i < len(line); i++ {
			c := line[i]
			if c == '=' && i+2 < len(line) {
				if hi, ok := unhex(line[i+1]); ok {
					if lo, ok := unhex(line[i+2]); ok {
						out = append(out, hi<<4|lo)
						i += 2
						continue
					}
				}
			}
			out = append(out, c)
		}
		if hasLF && !soft {
			out = append(out, '\n')
		}
	}
	return out
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

// decodeBase64 decodes base64 text, skipping line breaks and any other
// byte outside the alphabet, and stopping at the padding.
func decodeBase64(b []byte) []byte {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
			clean = append(clean, c)
		} else if c == '=' {
			break
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1] // a lone sextet carries no whole byte
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil && n == 0 {
		return b
	}
	return out[:n]
}

// splitMultipart splits body at the boundary delimiter lines (RFC 2046
// section 5.1.1). It tolerates a missing close delimiter and trailing white
// space after delimiters, and reports false when no delimiter is found.
func splitMultipart(body []byte, boundary string) ([][]byte, bool) {
	if boundary == "" {
		return nil, false
	}
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1
	for i := 0; i < len(body); {
		line, next := nextLine(body, i)
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t")
			closing := bytes.Equal(rest, []byte("--"))
			if len(rest) == 0 || closing {
				if start >= 0 {
					end := i
					if end > start {
						end-- // the LF before the delimiter belongs to it
					}
					parts = append(parts, body[start:end])
				}
				if closing {
					return parts, len(parts) > 0
				}
				start = next
			}
		}
		i = next
	}
	if start >= 0 && start < len(body) {
		parts = append(parts, body[start:])
	}
	return parts, len(parts) > 0
}

// lower returns text part i lowercased (ASCII), computed once.
func (p *parser) lower(i int) string {
	if len(p.low) != len(p.texts) {
		p.low = make([]string, len(p.texts))
		p.sep = make([]int, len(p.texts))
		for k := range p.sep {
			p.sep[k] = -2
		}
	}
	if p.low[i] == "" && len(p.texts[i]) > 0 {
		p.low[i] = lowerASCII(p.texts[i])
	}
	return p.low[i]
}

// separator returns separatorIndex of text part i, computed once.
func (p *parser) separator(i int) int {
	lt := p.lower(i)
	if p.sep[i] == -2 {
		p.sep[i] = separatorIndex(lt)
	}
	return p.sep[i]
}

// pickOriginal chooses the returned original among the candidates walk
// found: a MIME-carried one at the outermost level first (a message nested
// inside it is never walked); else the best inline copy over all text parts
// (a full header block before a summary, the earlier part on a tie); else,
// when MIME structure failed us (wrong boundary, a report pasted into text),
// an inline copy in the raw body.
func (p *parser) pickOriginal() *original {
	var best *original
	for i := range p.originals {
		if best == nil || p.originals[i].depth < best.depth {
			best = &p.originals[i]
		}
	}
	if best != nil {
		return best
	}
	cands := p.partOrigs
	for i, t := range p.texts {
		if o, ok := findInlineOriginal(t, maxTextScan); ok {
			o.seq = i
			cands = append(cands, o)
		}
	}
	for i := range cands {
		c := &cands[i]
		if best == nil || c.rank() > best.rank() || c.rank() == best.rank() && c.seq < best.seq {
			best = c
		}
	}
	if best != nil {
		best.inlineBody()
		return best
	}
	if o, ok := findInlineOriginal(p.body, maxTextScan); ok {
		o.inlineBody()
		return &o
	}
	return nil
}

// partHeaderOriginal notes a MIME part whose own header is the original's
// (some MTAs put the returned message's fields straight after the
// boundary, without a part header of their own).
func (p *parser) partHeaderOriginal(blk headerBlock, part []byte, mt string) {
	if mt != "" && !strings.HasPrefix(mt, "text/") {
		return
	}
	wm := blk.h.withoutMIME()
	if !wm.has("Received") || !wm.has("Message-ID") {
		return
	}
	p.partOrigs = append(p.partOrigs, original{h: blk.h, header: blk.raw(part), body: nonEmpty(part[blk.body:]),
		carrier: "part header", seq: len(p.texts)})
}

// finish combines what walk found into the report.
func (p *parser) finish() {
	r := p.rep
	// The original is looked for in whole parts (its body may be long),
	// but only blocks that start in the first maxTextScan bytes count.
	orig := p.pickOriginal()
	// Reports put what matters near the top of a part; the heuristic text
	// scans look at a bounded prefix so a huge part costs little.
	for i, t := range p.texts {
		if len(t) > maxTextScan {
			p.texts[i] = t[:maxTextScan]
		}
	}
	if len(p.body) > maxTextScan {
		p.body = p.body[:maxTextScan]
	}
	p.scanTexts()
	fallback := append(p.texts[:len(p.texts):len(p.texts)], p.body)

	if id := p.mdn.get("Original-Message-ID"); id != "" {
		r.OriginalMessageID = NormalizeMessageID(id)
	}
	if orig != nil {
		r.OriginalHeaders = true
		r.OriginalHeader = crlf(orig.header)
		r.OriginalBody = crlf(orig.body)
		if id := orig.h.get("Message-ID"); id != "" && r.OriginalMessageID == "" {
			r.OriginalMessageID = NormalizeMessageID(id)
		}
		for _, v := range orig.h.values("Received") {
			r.Received = append(r.Received, parseReceived(v))
		}
	}
	if r.OriginalMessageID == "" {
		for _, t := range fallback {
			if id := findMessageIDLine(t); id != "" {
				r.OriginalMessageID = id
				break
			}
		}
	}

	// Envelope sender candidates.
	for _, g := range p.dsn {
		for _, k := range []string{"X-Postfix-Sender", "X-Original-Sender", "Original-Sender"} {
			if v := g.h.get(k); v != "" {
				r.OriginalSenders = appendAddr(r.OriginalSenders, dsnAddr(v))
			}
		}
	}
	if orig != nil {
		for _, k := range []string{"Return-Path", "Sender", "From"} {
			for _, v := range orig.h.values(k) {
				r.OriginalSenders = appendAddr(r.OriginalSenders, parseAddr(v))
			}
		}
	}

	// Auto-replies answer a message; keep what they say they answer.
	for _, k := range []string{"In-Reply-To", "References"} {
		for _, v := range p.top.values(k) {
			for _, id := range splitMessageIDs(v) {
				r.InReplyTo = appendUnique(r.InReplyTo, id)
			}
		}
	}

	p.classify(orig != nil)
	p.recipients()
}

// appendAddr appends a lowercased address unless empty or already present.
func appendAddr(list []string, a string) []string {
	a = unquoteAddr(strings.ToLower(strings.TrimSpace(a)))
	if a == "" || !strings.Contains(a, "@") {
		return list
	}
	return appendUnique(list, a)
}

// unquoteAddr removes quotes around an address ('a@b', "a@b") and around
// its local part ("user"@example.org names the same mailbox as
// user@example.org whenever the bare form is valid).
func unquoteAddr(a string) string {
	a = strings.Trim(a, "\"'")
	if at := strings.LastIndexByte(a, '@'); at > 0 && strings.ContainsAny(a[:at], "\"'") {
		a = strings.Trim(a[:at], "\"'") + a[at:]
	}
	return a
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// parseAddr extracts the address from a Return-Path, From or similar value,
// falling back to the text between angle brackets for broken values.
func parseAddr(v string) string {
	v = strings.TrimSpace(v)
	if v == "" || v == "<>" {
		return ""
	}
	// Fast path for the common shapes, "a@b", "<a@b>" and "Name <a@b>"
	// with a plain address: what net/mail would return, without its cost.
	if validAddr(v) && !strings.ContainsAny(v, "\"'") {
		return v
	}
	if i := strings.LastIndexByte(v, '<'); i >= 0 && strings.HasSuffix(v, ">") && !strings.ContainsAny(v[:i], "\"(),:;<>@[]\\") {
		if a := v[i+1 : len(v)-1]; validAddr(a) && !strings.ContainsAny(a, "\"'") {
			return a
		}
	}
	if a, err := mail.ParseAddress(v); err == nil {
		return a.Address
	}
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	for _, f := range strings.Fields(v) {
		f = strings.Trim(f, "<>\"'(),;:[]")
		if strings.Count(f, "@") == 1 && !strings.HasPrefix(f, "@") && !strings.HasSuffix(f, "@") {
			return f
		}
	}
	return ""
}

// NormalizeMessageID returns the canonical form of a Message-ID, the one
// used throughout the project (the sent log's keys, the policy's lookups): the first "<...>" token (or the whole trimmed
// value when there are no brackets) without the brackets, with the part
// after the last "@" lowercased. It returns "" for an empty value.
func NormalizeMessageID(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i+1:], '>'); j >= 0 {
			s = s[i+1 : i+1+j]
		} else {
			s = s[i+1:]
		}
	}
	// No white space or brackets survive, which keeps the function
	// idempotent on broken values such as "<a b" or "<<a>".
	if f := strings.Fields(s); len(f) > 0 {
		s = f[0]
	} else {
		s = ""
	}
	if strings.ContainsAny(s, "<>") {
		// Byte by byte: strings.Map would rewrite invalid UTF-8.
		b := make([]byte, 0, len(s))
		for i := 0; i < len(s); i++ {
			if s[i] != '<' && s[i] != '>' {
				b = append(b, s[i])
			}
		}
		s = string(b)
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		// ASCII only: strings.ToLower rewrites invalid UTF-8, and the sent
		// log's keys (policy/sent) are made with this function.
		s = s[:at+1] + lowerASCII([]byte(s[at+1:]))
	}
	return s
}

// splitMessageIDs returns every "<...>" token in v, normalised.
func splitMessageIDs(v string) []string {
	var ids []string
	for {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			break
		}
		if id := NormalizeMessageID(v[i : i+j+1]); id != "" {
			ids = append(ids, id)
		}
		v = v[i+j+1:]
	}
	if len(ids) == 0 {
		if id := NormalizeMessageID(v); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}
