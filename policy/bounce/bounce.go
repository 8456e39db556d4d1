package bounce

import (
	"bytes"
	"errors"
	"io"
	"net/mail"
	"net/netip"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

// charsetReader converts legacy charsets (ISO-2022-JP is common in bounces)
// to UTF-8; importing go-message/charset also registers it for message.New.
var charsetReader = charset.Reader

// Kind is what a message is, as far as backscatter is concerned.
type Kind int

// Kinds of messages. KindNone is an ordinary message.
const (
	KindNone      Kind = iota // not a bounce
	KindFailure               // non-delivery report (permanent failure)
	KindDelay                 // delay notification (delivery still being tried)
	KindDelivered             // success DSN (delivered, relayed or expanded)
	KindAutoReply             // RFC 3834 auto-reply (vacation, out of office, ...)
	KindFeedback              // RFC 5965 ARF feedback report
)

// String returns the name used in logs: "none", "failure", "delay",
// "delivered", "autoreply" or "feedback-report".
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
	// when none was found.
	OriginalMessageID string
	// OriginalHeaders is set when the original's header block was found
	// (message/rfc822, text/rfc822-headers, message/global* or inline).
	OriginalHeaders bool
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

// original is a candidate header block of the bounced message.
type original struct {
	h       header
	carrier string // how it was found, for Why
}

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
	texts      [][]byte   // human-readable parts, in order
	originals  []original // structured originals (MIME parts)
}

// walk visits one MIME entity.
func (p *parser) walk(h header, body []byte, depth int) {
	mt, params := contentType(h)
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
			ph, off, trunc := parseHeader(part)
			if trunc {
				p.rep.Truncated = true
			}
			p.walk(ph, part[off:], depth+1)
		}
	case mt == "message/delivery-status" || mt == "message/global-delivery-status":
		p.dsnSeen = true
		p.dsn = append(p.dsn, parseDSN(p.decode(h, body))...)
	case mt == "message/feedback-report":
		p.feedback = true
	case mt == "message/rfc822" || mt == "message/global" || mt == "message/partial":
		inner := p.decode(h, body)
		ih, _, _ := parseHeader(skipBlank(inner))
		if looksLikeOriginal(ih) {
			p.originals = append(p.originals, original{ih, mt})
		} else if looksLikeOriginal(h.withoutMIME()) {
			// Some MTAs write the original's fields into the part
			// header itself instead of the part body.
			p.originals = append(p.originals, original{h.withoutMIME(), mt + " (part header)"})
		}
	case mt == "text/rfc822-headers" || mt == "text/rfc822-header" || mt == "message/global-headers":
		inner := p.decode(h, body)
		ih, _, _ := parseHeader(skipBlank(inner))
		if looksLikeOriginal(ih) {
			p.originals = append(p.originals, original{ih, mt})
		} else {
			p.texts = append(p.texts, inner)
		}
	case mt == "" || strings.HasPrefix(mt, "text/"):
		p.texts = append(p.texts, p.decode(h, body))
	default:
		// Attachments (application/*, image/*) say nothing about bounces.
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
// UTF-8 with go-message. Undecodable bodies are returned as they are.
func (p *parser) decode(h header, body []byte) []byte {
	cte := h.get("Content-Transfer-Encoding")
	ct := h.get("Content-Type")
	if cte == "" && !strings.Contains(strings.ToLower(ct), "charset") {
		return body
	}
	var th textproto.Header
	if ct != "" {
		th.Add("Content-Type", ct)
	}
	if cte != "" {
		th.Add("Content-Transfer-Encoding", strings.TrimSpace(cte))
	}
	ent, err := message.New(message.Header{Header: th}, bytes.NewReader(body))
	if ent == nil || (err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
		return body
	}
	out, err := io.ReadAll(io.LimitReader(ent.Body, int64(p.lim.MaxBytes)))
	if err != nil && len(out) == 0 {
		return body
	}
	return out
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

// finish combines what walk found into the report.
func (p *parser) finish() {
	r := p.rep
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

	// The original message: prefer a structured part, then inline text.
	var orig *original
	for i := range p.originals {
		orig = &p.originals[i]
		break
	}
	// When MIME structure failed us (wrong boundary, a report pasted into
	// text), the raw body is the last place to look.
	fallback := append(p.texts[:len(p.texts):len(p.texts)], p.body)
	if orig == nil {
		for _, t := range fallback {
			if o, ok := findInlineOriginal(t); ok {
				orig = &o
				break
			}
		}
	}
	if orig != nil {
		r.OriginalHeaders = true
		if id := orig.h.get("Message-ID"); id != "" {
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
	a = strings.ToLower(strings.TrimSpace(a))
	if a == "" || !strings.Contains(a, "@") {
		return list
	}
	return appendUnique(list, a)
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

// NormalizeMessageID returns the canonical form of a Message-ID, as used
// throughout this package: the first "<...>" token (or the whole trimmed
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
	s = strings.NewReplacer("<", "", ">", "").Replace(s)
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		// ASCII only, as policy/sent does: the two must agree byte for
		// byte, and strings.ToLower rewrites invalid UTF-8.
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
