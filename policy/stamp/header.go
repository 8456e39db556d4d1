package stamp

import (
	"strings"

	"github.com/backscatter-milter/backscatter-milter/internal/mailheader"
)

// maxStamps bounds how many stamp fields of one header block are checked.
const maxStamps = 4

// ReadHeader reads a raw header block (CRLF or LF line ends, folded or not,
// as a bounce returns it) and returns the covered fields (the first of each)
// and the values of the fields named name (at most a few). It stops at the
// first empty line and skips lines that are neither a field nor a
// continuation, so a damaged block still yields what it holds.
func ReadHeader(header []byte, name string) (f Fields, stamps []string) {
	for _, field := range mailheader.Split(header) {
		n := mailheader.Name(field)
		switch {
		case n == "":
			// neither a field nor a continuation: skipped
		case strings.EqualFold(n, "Message-ID"):
			if f.MessageID == "" {
				f.MessageID = mailheader.Value(field)
			}
		case strings.EqualFold(n, "Date"):
			if f.Date == "" {
				f.Date = mailheader.Value(field)
			}
		case strings.EqualFold(n, "From"):
			if f.From == "" {
				f.From = mailheader.Value(field)
			}
		case strings.EqualFold(n, name):
			if len(stamps) < maxStamps {
				stamps = append(stamps, mailheader.Value(field))
			}
		}
	}
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
