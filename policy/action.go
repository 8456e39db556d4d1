package policy

import (
	"fmt"
	"strings"
)

// Action is what happens to a recipient or a message, mildest first.
type Action int

const (
	Accept     Action = iota
	Tag               // add an X-Backscatter header with score and evidence
	Quarantine        // hold queue (Postfix) / quarantine (Sendmail): nothing is lost
	Reject            // 5xx with a clear text
	Discard           // drop silently: only for proven backscatter in the internal-bounce role
	Tempfail          // 4xx: only where the operator chose fail-closed
)

var actionNames = [...]string{"accept", "tag", "quarantine", "reject", "discard", "tempfail"}

func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// ParseAction parses an action name.
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if strings.EqualFold(s, n) {
			return Action(i), nil
		}
	}
	return Accept, fmt.Errorf("unknown action %q (want one of %s)", s, strings.Join(actionNames[:], ", "))
}

// MarshalText lets actions appear by name in JSON logs and reports.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText parses an action name.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	*a = v
	return err
}

// Mode is enforce (act on verdicts) or observe (decide and log, only tag).
type Mode int

const (
	Enforce Mode = iota
	Observe
)

func (m Mode) String() string {
	if m == Observe {
		return "observe"
	}
	return "enforce"
}

// ParseMode parses "enforce" or "observe".
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "enforce", "":
		return Enforce, nil
	case "observe":
		return Observe, nil
	}
	return Enforce, fmt.Errorf("unknown mode %q (want enforce or observe)", s)
}

// Direction says whether the milter protects our users (inbound) or speaks
// for them (outbound: SASL-authenticated or from trusted networks).
type Direction int

const (
	Inbound Direction = iota
	Outbound
)

func (d Direction) String() string {
	if d == Outbound {
		return "outbound"
	}
	return "inbound"
}

// MarshalText lets directions appear by name in JSON.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
