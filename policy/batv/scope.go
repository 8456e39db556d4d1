package batv

import (
	"slices"
	"strings"
	"time"
)

// Scope is where BATV applies and when a missing tag is still forgiven.
type Scope struct {
	// Domains are the domains whose addresses are signed and checked,
	// lowercased; empty means every domain the caller asks about (the
	// local domains).
	Domains []string
	// GraceUntil ends the window after BATV was switched on in which an
	// untagged bounce only counts lightly (mail sent before it carried no
	// tag); zero means no window.
	GraceUntil time.Time
}

// Applies reports whether BATV covers addresses in domain.
func (s Scope) Applies(domain string) bool {
	return len(s.Domains) == 0 || slices.Contains(s.Domains, strings.ToLower(domain))
}

// InGrace reports whether now falls inside the grace window.
func (s Scope) InGrace(now time.Time) bool {
	return !s.GraceUntil.IsZero() && now.Before(s.GraceUntil)
}
