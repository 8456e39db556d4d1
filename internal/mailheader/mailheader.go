// Package mailheader splits a raw RFC 5322 header block, as a bounce returns
// it, into whole fields with their bytes as written: DKIM's canonicalisation
// needs the exact folding, and the checks of a returned original need each
// field's name and unfolded value. One splitter serves both, so they always
// agree on where a field starts and ends.
package mailheader

import (
	"bytes"
	"strings"
)

// Split returns the fields of a header block, each with its folding and
// every line ending in CRLF (LF-only input is given CRLF). It stops at the
// first empty line. A continuation line before any field is dropped; a line
// that is neither a field nor a continuation is kept as a field of its own
// (Name returns "" for it), so a damaged block still yields what it holds.
func Split(block []byte) []string {
	var out []string
	var cur []byte
	for len(block) > 0 {
		line := block
		if i := bytes.IndexByte(block, '\n'); i >= 0 {
			line, block = block[:i], block[i+1:]
		} else {
			block = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil {
				cur = append(append(cur, line...), '\r', '\n')
			}
			continue
		}
		if cur != nil {
			out = append(out, string(cur))
		}
		cur = append(append([]byte{}, line...), '\r', '\n')
	}
	if cur != nil {
		out = append(out, string(cur))
	}
	return out
}

// Name returns the field name of a field from Split (white space before the
// colon dropped), or "" when the field has no colon or its name holds white
// space: such a line is no field.
func Name(field string) string {
	name, _, ok := strings.Cut(field, ":")
	name = strings.TrimRight(name, " \t")
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return ""
	}
	return name
}

// Value returns the value of a field from Split, unfolded: each line trimmed
// of surrounding white space and joined to the previous one by one space.
func Value(field string) string {
	_, v, ok := strings.Cut(field, ":")
	if !ok {
		return ""
	}
	var b strings.Builder
	for i, line := range strings.Split(strings.TrimSuffix(v, "\r\n"), "\r\n") {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strings.TrimSpace(line))
	}
	return strings.TrimSpace(b.String())
}
