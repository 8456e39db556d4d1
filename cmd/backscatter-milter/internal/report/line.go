// Package report reads backscatter-milter verdict logs, with the event
// lines of operators' releases and deletions, and summarises them for a
// postmaster: totals, backscatter blocked against real bounces delivered,
// held mail and false positives, evidence, sources, targets and volume
// over time, as text, JSON or one self-contained HTML page. It streams:
// memory stays bounded whatever the size of the logs.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy"
)

// ErrNotVerdict is returned by ParseLine for a line that is not a verdict
// line (another log message, a blank line, text): such lines are ignored.
var ErrNotVerdict = errors.New("not a verdict line")

// MalformedError is returned by ParseLine for a line that looks like JSON
// but cannot be read as a verdict (truncated, wrong types, unknown action).
type MalformedError struct{ Reason string }

func (e *MalformedError) Error() string { return "malformed log line: " + e.Reason }

// Line is one verdict, as milter.LogVerdict writes it.
type Line struct {
	Time          time.Time // zero when the line has no usable "ts"
	Session       string
	QueueID       string
	Stage         policy.Stage
	Action        policy.Action
	Would         policy.Action
	Mode          policy.Mode
	Score         int
	Evidence      []policy.Evidence
	Direction     policy.Direction
	ClientIP      string
	ClientName    string
	Helo          string
	Sender        string // without angle brackets; "" is the null sender
	Rcpts         []string
	RejectedRcpts []string
	Allowlisted   string
	Auth          string
	AuthDetail    string
	NDR           policy.NDROutcome // one of policy.NDROutcomes(), or a newer milter's
	Reply         string
	Notes         []string
	DurationMS    float64

	// Event is set, and Stage empty, on an operator's event line
	// (EventReleased, EventDeleted): QueueID, Time and Operator say which
	// message, when and who.
	Event    string
	Operator string
}

// RawLine is a verdict or event line's JSON object as the milter writes it
// (milter/log.go), field by field, before ParseLine checks and types it.
// The end-to-end tests decode the log with it too, so the field names have
// one home on the reading side.
type RawLine struct {
	Msg           string            `json:"msg"`
	TS            json.RawMessage   `json:"ts"`
	Session       string            `json:"session"`
	QueueID       string            `json:"queue_id"`
	Stage         string            `json:"stage"`
	Action        string            `json:"action"`
	Would         string            `json:"would"`
	Mode          string            `json:"mode"`
	Score         int               `json:"score"`
	Evidence      []policy.Evidence `json:"evidence"`
	Direction     string            `json:"direction"`
	ClientIP      string            `json:"client_ip"`
	ClientName    string            `json:"client_name"`
	Helo          string            `json:"helo"`
	Sender        string            `json:"sender"`
	Rcpts         []string          `json:"rcpts"`
	RejectedRcpts []string          `json:"rejected_rcpts"`
	// RcptsNotLogged counts the recipients past the line's cap.
	RcptsNotLogged int      `json:"rcpts_not_logged"`
	Allowlisted    string   `json:"allowlisted"`
	Auth           string   `json:"auth"`
	AuthDetail     string   `json:"auth_detail"`
	NDR            string   `json:"ndr"`
	Reply          string   `json:"reply"`
	Notes          []string `json:"notes"`
	DurationMS     float64  `json:"duration_ms"`
	Event          string   `json:"event"`
	Operator       string   `json:"operator"`
}

var verdictWord, eventWord = []byte("verdict"), []byte(`"event"`)

// ParseLine reads one log line. It accepts the JSON object alone (the
// milter's own log file, `journalctl -o cat`) or behind a syslog-style
// prefix. It returns ErrNotVerdict for lines to ignore and a
// *MalformedError for lines that are broken.
func ParseLine(b []byte) (Line, error) {
	b = bytes.TrimSpace(b)
	i := bytes.IndexByte(b, '{')
	if i < 0 {
		return Line{}, ErrNotVerdict
	}
	obj := b[i:]
	if !bytes.Contains(obj, verdictWord) && !bytes.Contains(obj, eventWord) {
		// Cheap path for the other log messages; a broken object still counts.
		if !json.Valid(obj) {
			return Line{}, &MalformedError{"not valid JSON"}
		}
		return Line{}, ErrNotVerdict
	}
	var r RawLine
	if err := json.Unmarshal(obj, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Line{}, &MalformedError{fmt.Sprintf("field %q: want %s", te.Field, te.Type)}
		}
		return Line{}, &MalformedError{"not valid JSON (truncated?)"}
	}
	switch r.Msg {
	case "verdict":
		return r.line()
	case EventMsg:
		return r.event()
	}
	return Line{}, ErrNotVerdict
}

func (r *RawLine) event() (Line, error) {
	switch r.Event {
	case EventReleased, EventDeleted:
	default:
		return Line{}, &MalformedError{fmt.Sprintf("unknown event %q", shorten(r.Event))}
	}
	if r.QueueID == "" {
		return Line{}, &MalformedError{"event without queue_id"}
	}
	l := Line{Event: r.Event, QueueID: r.QueueID, Operator: r.Operator}
	if len(r.TS) > 0 {
		var err error
		if l.Time, err = parseTS(r.TS); err != nil {
			return Line{}, &MalformedError{err.Error()}
		}
	}
	return l, nil
}

func (r *RawLine) line() (Line, error) {
	l := Line{
		Session: r.Session, QueueID: r.QueueID, Score: r.Score, Evidence: r.Evidence,
		ClientIP: r.ClientIP, ClientName: r.ClientName, Helo: r.Helo,
		Rcpts: r.Rcpts, RejectedRcpts: r.RejectedRcpts, Allowlisted: r.Allowlisted,
		Auth: r.Auth, AuthDetail: r.AuthDetail, NDR: policy.NDROutcome(r.NDR), Reply: r.Reply, Notes: r.Notes, DurationMS: r.DurationMS,
	}
	switch st := policy.Stage(r.Stage); st {
	case policy.StageRcpt, policy.StageEOM, policy.StageCallout, policy.StageInternal:
		l.Stage = st
	default:
		return Line{}, &MalformedError{fmt.Sprintf("unknown stage %q", shorten(r.Stage))}
	}
	var err error
	if l.Action, err = policy.ParseAction(r.Action); err != nil {
		return Line{}, &MalformedError{fmt.Sprintf("unknown action %q", shorten(r.Action))}
	}
	l.Would = l.Action
	if r.Would != "" {
		if l.Would, err = policy.ParseAction(r.Would); err != nil {
			return Line{}, &MalformedError{fmt.Sprintf("unknown would %q", shorten(r.Would))}
		}
	}
	if l.Mode, err = policy.ParseMode(r.Mode); err != nil {
		return Line{}, &MalformedError{fmt.Sprintf("unknown mode %q", shorten(r.Mode))}
	}
	switch r.Direction {
	case "inbound", "":
		l.Direction = policy.Inbound
	case "outbound":
		l.Direction = policy.Outbound
	default:
		return Line{}, &MalformedError{fmt.Sprintf("unknown direction %q", shorten(r.Direction))}
	}
	l.Sender = strings.TrimSuffix(strings.TrimPrefix(r.Sender, "<"), ">")
	if len(r.TS) > 0 {
		if l.Time, err = parseTS(r.TS); err != nil {
			return Line{}, &MalformedError{err.Error()}
		}
	}
	return l, nil
}

// parseTS reads zap's time: an RFC 3339 string (our logger) or epoch
// seconds as a number (zap's default encoder).
func parseTS(raw json.RawMessage) (time.Time, error) {
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, errors.New("ts is not a string")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("ts %q is not an RFC 3339 time", shorten(s))
		}
		return t, nil
	}
	if string(raw) == "null" {
		return time.Time{}, nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > 1e11 {
		return time.Time{}, errors.New("ts is neither a time nor epoch seconds")
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), nil
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}
