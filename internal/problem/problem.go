// Package problem collects what is wrong with a configuration, each
// problem with the key it concerns, so that every package can check its own
// section and `config check` still names every bad key at once.
package problem

import (
	"fmt"
	"strings"
)

// Problem is one bad key.
type Problem struct {
	Key string // as the operator writes it: "dnsbl.zones[2]", "mode"
	Msg string
}

// String is "key: message", one line of `config check`.
func (p Problem) String() string { return p.Key + ": " + strings.TrimSpace(p.Msg) }

// List is every bad key found; as an error it lists them all.
type List []Problem

// Add records a problem with key.
func (l *List) Add(key, format string, a ...any) {
	*l = append(*l, Problem{Key: key, Msg: fmt.Sprintf(format, a...)})
}

// Under returns l with each key placed under the section prefix
// ("timeout" under "dnsbl" is "dnsbl.timeout").
func (l List) Under(prefix string) List {
	out := make(List, len(l))
	for i, p := range l {
		out[i] = Problem{Key: prefix + "." + p.Key, Msg: p.Msg}
	}
	return out
}

func (l List) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d configuration error", len(l))
	if len(l) != 1 {
		b.WriteString("s")
	}
	b.WriteString(":")
	for _, p := range l {
		fmt.Fprintf(&b, "\n  %s: %s", p.Key, p.Msg)
	}
	return b.String()
}
