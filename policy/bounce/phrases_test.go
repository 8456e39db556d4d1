package bounce

import (
	"strings"
	"testing"
)

// The one-pass matcher must find what a strings.Contains per phrase finds.
func TestPhraseMatcher(t *testing.T) {
	lists := [][]string{strongBounceText, weakBounceText, delayText, permanentText}
	texts := []string{
		"",
		"x",
		"this is the mail system at host mx.example.org.\nuser unknown\n",
		"delivery to the following recipient has been delayed. we will keep trying. permanent failure? no.",
		"smtp error 550 5.1.1 giving up; the message will be retried",
		strings.Repeat("undelivered ", 100) + "i'm sorry to have to inform you that your message could not",
		"nothing to see here, just an ordinary letter about lunch",
	}
	for _, tx := range texts {
		got := make([]string, len(lists))
		reportPhrases.scan(tx, got)
		for l, list := range lists {
			want := ""
			for _, ph := range list {
				if strings.Contains(tx, ph) {
					want = ph
					break
				}
			}
			if got[l] != want {
				t.Errorf("list %d in %.40q: got %q, want %q", l, tx, got[l], want)
			}
		}
	}
}

// separatorIndex only looks at lines holding a trigger: every separator
// phrase must contain one.
func TestSeparatorTriggers(t *testing.T) {
	for _, ph := range separatorPhrases {
		ok := false
		for _, tr := range separatorTriggers {
			if strings.Contains(ph, tr) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("separator phrase %q contains no trigger of %q", ph, separatorTriggers)
		}
	}
	if k := separatorIndex("text\n--- original message follows ---\nReceived: x\n"); k != 5 {
		t.Errorf("separatorIndex = %d, want 5", k)
	}
}
