package batv

import (
	"testing"
	"time"
)

func TestScope(t *testing.T) {
	all := Scope{}
	if !all.Applies("Example.ORG") || all.InGrace(time.Now()) {
		t.Errorf("the zero scope covers every domain and has no grace window")
	}
	until := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s := Scope{Domains: []string{"example.org"}, GraceUntil: until}
	if !s.Applies("EXAMPLE.org") || s.Applies("other.example") {
		t.Errorf("Applies: a listed domain in any case, no other")
	}
	if !s.InGrace(until.Add(-time.Second)) || s.InGrace(until) {
		t.Errorf("InGrace: before %v only", until)
	}
}
