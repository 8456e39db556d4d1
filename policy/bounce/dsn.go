package bounce

import (
	"bytes"
	"strings"
)

// dsnGroup is one block of RFC 3464 fields: the per-message block or one
// per-recipient block.
type dsnGroup struct {
	h header
}

func (g dsnGroup) recipient() bool {
	return g.h.has("Final-Recipient") || g.h.has("Original-Recipient")
}

// action returns the lowercased Action value without comments.
func (g dsnGroup) action() string {
	a := strings.ToLower(strings.TrimSpace(g.h.get("Action")))
	if i := strings.IndexAny(a, " (;"); i >= 0 {
		a = a[:i]
	}
	return a
}

// statusClass returns the first digit of the Status code ('2', '4', '5')
// or 0 when absent.
func (g dsnGroup) statusClass() byte {
	s := strings.TrimSpace(g.h.get("Status"))
	if len(s) > 0 && (s[0] == '2' || s[0] == '4' || s[0] == '5') {
		return s[0]
	}
	return 0
}

// address returns the recipient address: Original-Recipient (what the
// sender wrote) when it is an address, else Final-Recipient.
func (g dsnGroup) address() string {
	if a := dsnAddr(g.h.get("Original-Recipient")); a != "" {
		return a
	}
	return dsnAddr(g.h.get("Final-Recipient"))
}

// parseDSN splits a message/delivery-status body (RFC 3464 section 2.1)
// into groups separated by blank lines. Broken reports without the blank
// lines still work: a second Final-Recipient starts a new group.
func parseDSN(b []byte) []dsnGroup {
	var groups []dsnGroup
	for len(b) > 0 && len(groups) < maxHeaderFields {
		b = skipBlank(b)
		if len(b) == 0 {
			break
		}
		h, off, _ := parseHeader(b)
		if len(h) == 0 {
			// Not a field line: skip it and keep looking.
			_, next := nextLine(b, 0)
			b = b[next:]
			continue
		}
		groups = append(groups, splitRecipients(h)...)
		b = b[off:]
	}
	return groups
}

// splitRecipients cuts a header block that holds several recipients' fields
// without blank lines between them.
func splitRecipients(h header) []dsnGroup {
	var out []dsnGroup
	start := 0
	var seen uint8 // bit per recipient field seen in the current group
	for i, f := range h {
		var bit uint8
		switch {
		case strings.EqualFold(f.Name, "Final-Recipient"):
			bit = 1
		case strings.EqualFold(f.Name, "Original-Recipient"):
			bit = 2
		case strings.EqualFold(f.Name, "Action"):
			bit = 4
		case strings.EqualFold(f.Name, "Status"):
			bit = 8
		}
		if seen&bit != 0 {
			out = append(out, dsnGroup{h[start:i:i]})
			start, seen = i, 0
		}
		seen |= bit
	}
	if start < len(h) {
		out = append(out, dsnGroup{h[start:]})
	}
	return out
}

// dsnAddr returns the address of an "addr-type; address" value such as
// "rfc822; user@example.org", lowercased, or "" when it is not an address.
func dsnAddr(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[i+1:]
	}
	v = decodeText(v)
	a := parseAddr(v)
	if a == "" {
		return ""
	}
	return strings.ToLower(a)
}

// findDSNFields finds RFC 3464 fields quoted in a text part (a report
// whose MIME structure is broken, or one pasted into text by a gateway).
// lt is t lowercased (lowerASCII keeps offsets).
func findDSNFields(t []byte, low string) []dsnGroup {
	if !strings.Contains(low, "final-recipient:") {
		return nil
	}
	lt := []byte(low)
	i := bytes.Index(lt, []byte("\nfinal-recipient:"))
	if i < 0 {
		if bytes.HasPrefix(lt, []byte("final-recipient:")) {
			i = -1
		} else {
			return nil
		}
	}
	// Start at the per-message block when it is just above.
	start := i + 1
	if r := bytes.LastIndex(lt[:start], []byte("\nreporting-mta:")); r >= 0 && start-r < 2048 {
		start = r + 1
	}
	return parseDSN(t[start:])
}
