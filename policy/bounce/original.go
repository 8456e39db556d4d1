package bounce

import (
	"bytes"
	"strings"
)

// This file finds the returned original in a report: which copy is the
// original (RFC 3462/6522 carriers first, at the outermost level; then
// inline copies, a full header block before a short summary), and the
// original's header and body bytes as they were written.

// original is a candidate header block of the bounced message.
type original struct {
	h       header
	header  []byte // the field lines, LF line endings, unquoted and decoded
	body    []byte // the body when the whole message came back, else nil
	carrier string // how it was found
	depth   int    // MIME depth of a structured carrier
	seq     int    // order of the text part an inline copy was found in
	rest    []byte // an inline copy: the text after its header, still quoted
	quote   []byte // an inline copy: its quoting prefix
}

// Ranks of an inline copy: a block with Received fields and a Message-ID is
// a message header as transported; a short summary ("Subject: ... Date:
// ...") written into a notice is the weakest.
const (
	rankSummary   = iota // named fields only
	rankMessageID        // a Message-ID, no Received
	rankReceived         // Received fields, no Message-ID
	rankFull             // Received fields and a Message-ID
)

func (o *original) rank() int {
	recv, mid := o.h.has("Received"), o.h.has("Message-ID")
	switch {
	case recv && mid:
		return rankFull
	case recv:
		return rankReceived
	case mid:
		return rankMessageID
	}
	return rankSummary
}

// namedFields are header fields that mark a block as a message header
// rather than DSN fields or a MIME part header.
var namedFields = map[string]bool{
	"received": true, "message-id": true, "return-path": true, "from": true,
	"to": true, "subject": true, "date": true, "delivered-to": true,
	"sender": true, "reply-to": true, "cc": true, "x-mailer": true,
	"dkim-signature": true, "mime-version": true, "x-original-to": true,
}

// looksLikeOriginal reports whether h is plausibly a message header.
func looksLikeOriginal(h header) bool {
	named := 0
	strong := false
	for _, f := range h {
		n := strings.ToLower(f.Name)
		if namedFields[n] {
			named++
		}
		if n == "message-id" || n == "received" || n == "return-path" || n == "date" {
			strong = true
		}
	}
	return named >= 2 && (strong || named >= 3) || (named >= 1 && strong && len(h) >= 2)
}

// structuredOriginal reads the content of a message/rfc822,
// message/global, text/rfc822-headers or message/global-headers part
// (already transfer-decoded). withBody is false for the header-only types.
func structuredOriginal(inner []byte, carrier string, depth int, withBody bool) (original, bool) {
	inner = skipBlank(inner)
	blk := scanHeader(inner, true)
	if len(blk.h) == 0 {
		// The part header itself was folded badly (Exchange), so its tail
		// reads as the start of the content: the original follows the
		// first empty line.
		if k := bytes.Index(inner[:min(len(inner), 16<<10)], []byte("\n\n")); k >= 0 {
			inner = skipBlank(inner[k+2:])
			blk = scanHeader(inner, true)
		}
	}
	if !looksLikeOriginal(blk.h) {
		return original{}, false
	}
	o := original{h: blk.h, header: blk.raw(inner), carrier: carrier, depth: depth}
	if withBody {
		o.body = nonEmpty(inner[blk.body:])
	}
	return o, true
}

// nonEmpty returns b, or nil when b holds only white space.
func nonEmpty(b []byte) []byte {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return b
}

// findInlineOriginal finds the original quoted in a text part. Every block
// of lines that reads like a message header is a candidate, wherever it
// stands (after a separator line, after a one-line note, or without any);
// the first block with Received fields is the original, and what follows it
// is its body, so a message quoted inside the original (a double bounce, a
// list reply quoting spam) is never taken for it. A summary before it (a
// notice that repeats Subject and Date) gives way to it; a block with only a
// Message-ID does too, but only to a later block with the same Message-ID.
//
// Only blocks starting in the first limit bytes are considered.
func findInlineOriginal(t []byte, limit int) (original, bool) {
	var best original
	found := false
	for i := 0; i < len(t) && i < limit; {
		line, next := nextLine(t, i)
		if !startsBlock(line) {
			i = next
			continue
		}
		o, end, ok := inlineBlock(t[i:])
		if ok {
			if o.h.has("Received") {
				if found && best.rank() == rankMessageID &&
					NormalizeMessageID(best.h.get("Message-ID")) != NormalizeMessageID(o.h.get("Message-ID")) {
					return best, true
				}
				return o, true
			}
			if !found || best.rank() < o.rank() {
				best, found = o, true
			}
		}
		// Resume after the block tried: a field line inside it never
		// starts another candidate, and the scan stays linear.
		if end <= 0 {
			end = next - i
		}
		i += end
	}
	return best, found
}

// startsBlock reports whether line may start a quoted header block: a field
// line, possibly quoted ("> ", "| ") or indented, or an mbox "From " line.
func startsBlock(line []byte) bool {
	if bytes.HasPrefix(line, []byte("From ")) {
		return true
	}
	return isFieldLine(bytes.TrimLeft(line, " \t>|"))
}

func isFieldLine(line []byte) bool {
	_, _, ok := fieldLine(line)
	return ok
}

// inlineBlock parses the quoted header block at the start of b. It returns
// the candidate, and how many bytes of b the block (header and the lines
// tried) covered, so the caller resumes after it. The body is read only for
// the candidate finally chosen (inlineBody), which keeps the scan linear.
func inlineBlock(b []byte) (original, int, bool) {
	pre := quotePrefix(b)
	q, consumed := unquote(b, pre, true)
	blk := scanHeader(q, true)
	if blk.end <= blk.start {
		return original{}, 0, false
	}
	// Bytes of b covered by the header: map back through the quoting.
	covered := consumed(blk.end)
	if !looksLikeOriginal(blk.h) {
		return original{}, covered, false
	}
	o := original{h: blk.h, header: blk.raw(q), carrier: "inline", rest: b[covered:], quote: pre}
	return o, covered, true
}

// inlineBody sets the body of an inline copy: what follows its header
// block, unquoted, after the empty line.
func (o *original) inlineBody() {
	if o.rest == nil {
		return
	}
	q, _ := unquote(o.rest, o.quote, false)
	if line, next := nextLine(q, 0); isBlank(line) {
		q = q[next:]
	}
	o.body, o.rest = nonEmpty(q), nil
}

// quotePrefix returns the quoting prefix of a block ("> ", "| " or leading
// blanks) as written on its first line, or nil.
func quotePrefix(b []byte) []byte {
	first, _ := nextLine(b, 0)
	n := 0
	for n < len(first) && (first[n] == ' ' || first[n] == '\t' || first[n] == '>' || first[n] == '|') {
		n++
	}
	if n == 0 || n > 8 {
		return nil
	}
	return first[:n]
}

// unquote removes the quoting prefix pre from the lines of b, up to the
// first line without it (empty lines and differently indented continuation
// lines stay), or with headerOnly up to the first empty line. It returns the
// unquoted text and a function that maps an offset in it back to an offset
// in b. Without a prefix b itself is returned.
func unquote(b, pre []byte, headerOnly bool) ([]byte, func(int) int) {
	if len(pre) == 0 {
		return b, func(n int) int { return n }
	}
	bare := bytes.TrimRight(pre, " \t") // "> " quoting writes empty lines as ">"
	var out []byte
	var marks []int // marks[k]: offset in b of the line starting at out line k
	var outStarts []int
	i := 0
lines:
	for i < len(b) {
		line, next := nextLine(b, i)
		var keep []byte
		switch {
		case bytes.HasPrefix(line, pre):
			keep = line[len(pre):]
		case len(bare) > 0 && bytes.Equal(bytes.TrimRight(line, " \t"), bare) || isBlank(line):
			if headerOnly {
				break lines
			}
			keep = nil
		case line[0] == ' ' || line[0] == '\t':
			keep = line // a continuation indented differently
		default:
			break lines
		}
		if headerOnly && isBlank(keep) {
			break lines
		}
		marks = append(marks, i)
		outStarts = append(outStarts, len(out))
		out = append(out, keep...)
		out = append(out, '\n')
		i = next
	}
	marks = append(marks, i)
	outStarts = append(outStarts, len(out))
	return out, func(n int) int {
		for k := range outStarts {
			if outStarts[k] >= n {
				return marks[k]
			}
		}
		return i
	}
}

// crlf returns b with LF line endings turned into CRLF and a final line
// ending added, the form DKIM and every MTA use on the wire.
func crlf(b []byte) []byte {
	if b == nil {
		return nil
	}
	out := make([]byte, 0, len(b)+bytes.Count(b, []byte("\n"))+2)
	for len(b) > 0 {
		line, next := nextLine(b, 0)
		out = append(out, line...)
		out = append(out, '\r', '\n')
		b = b[next:]
	}
	return out
}
