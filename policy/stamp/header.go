package stamp

import (
	"bytes"
	"strings"
)

// maxStamps bounds how many stamp fields of one header block are checked.
const maxStamps = 4

// ReadHeader reads a raw header block (CRLF or LF line ends, folded or not,
// as a bounce returns it) and returns the covered fields (the first of each)
// and the values of the fields named name (at most a few). It stops at the
// first empty line and skips lines that are neither a field nor a
// continuation, so a damaged block still yields what it holds.
func ReadHeader(header []byte, name string) (f Fields, stamps []string) {
	var cur, curName []byte
	var val strings.Builder
	flush := func() {
		if cur == nil {
			return
		}
		v := strings.TrimSpace(val.String())
		switch {
		case bytes.EqualFold(curName, []byte("Message-ID")):
			if f.MessageID == "" {
				f.MessageID = v
			}
		case bytes.EqualFold(curName, []byte("Date")):
			if f.Date == "" {
				f.Date = v
			}
		case bytes.EqualFold(curName, []byte("From")):
			if f.From == "" {
				f.From = v
			}
		case strings.EqualFold(string(curName), name):
			if len(stamps) < maxStamps {
				stamps = append(stamps, v)
			}
		}
		cur = nil
		val.Reset()
	}
	for len(header) > 0 {
		line := header
		if i := bytes.IndexByte(header, '\n'); i >= 0 {
			line, header = header[:i], header[i+1:]
		} else {
			header = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil {
				val.WriteByte(' ')
				val.Write(bytes.TrimSpace(line))
			}
			continue
		}
		flush()
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		n := bytes.TrimRight(line[:colon], " \t")
		if len(n) == 0 || bytes.ContainsAny(n, " \t") {
			continue
		}
		cur, curName = line, n
		val.Write(bytes.TrimSpace(line[colon+1:]))
	}
	flush()
	return f, stamps
}

// Check verifies the stamps in a returned header block against that block's
// own Message-ID, Date and From. found is false when the block carries no
// stamp field named name; otherwise the best result is returned (ok, then
// expired, then unverifiable, then bad), so a stray field cannot hide a
// good one.
func (s *Stamper) Check(header []byte, name string) (r Result, found bool) {
	f, stamps := ReadHeader(header, name)
	if len(stamps) == 0 {
		return Result{}, false
	}
	for i, v := range stamps {
		got := s.Verify(v, f)
		if i == 0 || rank(got.Status) < rank(r.Status) {
			r = got
		}
	}
	return r, true
}

func rank(s Status) int {
	switch s {
	case StatusOK:
		return 0
	case StatusExpired:
		return 1
	case StatusUnverifiable:
		return 2
	}
	return 3
}
