package dnsbl

import (
	"fmt"
	"strings"
)

// Detail is what a listing answered, for the evidence of a verdict: the
// addresses and, when fetched, the list's TXT explanation.
func (z ZoneResult) Detail() string {
	s := make([]string, len(z.Answers))
	for i, a := range z.Answers {
		s[i] = a.String()
	}
	detail := strings.Join(s, ",")
	if z.TXT != "" {
		detail += " " + z.TXT
	}
	return detail
}

// Note says why a zone gave no evidence when that is worth a note on the
// verdict (a failed lookup, a zone skipped as unhealthy); "" otherwise.
func (z ZoneResult) Note() string {
	switch z.Status {
	case StatusError:
		return fmt.Sprintf("dnsbl %s: %s (no evidence)", z.Zone.Name, z.ErrKind)
	case StatusSkippedHealth:
		return fmt.Sprintf("dnsbl %s: skipped, unhealthy", z.Zone.Name)
	}
	return ""
}
