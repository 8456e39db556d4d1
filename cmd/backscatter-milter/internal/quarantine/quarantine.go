// Package quarantine lists, shows, releases and deletes the messages the
// milter put on hold, through the MTA's own tools — Postfix's hold queue
// (postqueue, postcat, postsuper) and Sendmail's quarantine (mailq -qQ,
// sendmail -qQ -Q) — and joins each with its verdict line by queue ID,
// since neither MTA keeps our reasons in a form a postmaster can query.
package quarantine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
	"github.com/backscatter-milter/backscatter-milter/policy"
)

// Settings is the quarantine: section of the configuration.
type Settings struct {
	MTA               string   `mapstructure:"mta"`                 // postfix or sendmail
	PostfixConfigDir  string   `mapstructure:"postfix_config_dir"`  // -c DIR for postqueue, postsuper, postcat; "" = Postfix's default
	PostfixCommandDir string   `mapstructure:"postfix_command_dir"` // where those commands are; "" = /usr/sbin, then PATH
	SendmailCommand   []string `mapstructure:"sendmail_command"`    // argv that runs Sendmail (add -C FILE for another sendmail.cf)
	SendmailQueue     string   `mapstructure:"sendmail_queue"`      // QUEUE_DIR, where show reads the queue files and delete removes them
}

// MTA names.
const (
	Postfix  = "postfix"
	Sendmail = "sendmail"
)

// SettingError is one bad key of Settings (Key is relative to quarantine.).
type SettingError struct{ Key, Msg string }

func (e *SettingError) Error() string { return "quarantine." + e.Key + ": " + e.Msg }

// Validate reports every bad key.
func (s Settings) Validate() []*SettingError {
	var out []*SettingError
	bad := func(key, format string, a ...any) { out = append(out, &SettingError{key, fmt.Sprintf(format, a...)}) }
	switch s.MTA {
	case Postfix, Sendmail:
	default:
		bad("mta", "%q: want postfix or sendmail", s.MTA)
	}
	for key, dir := range map[string]string{"postfix_config_dir": s.PostfixConfigDir, "postfix_command_dir": s.PostfixCommandDir, "sendmail_queue": s.SendmailQueue} {
		if dir != "" && !filepath.IsAbs(dir) {
			bad(key, "%q must be an absolute path (postfix -c ignores a relative one)", dir)
		}
	}
	if s.MTA == Sendmail {
		if len(s.SendmailCommand) == 0 || s.SendmailCommand[0] == "" {
			bad("sendmail_command", "empty: want the path of sendmail, e.g. [/usr/sbin/sendmail]")
		}
		if s.SendmailQueue == "" {
			bad("sendmail_queue", "empty: want Sendmail's QUEUE_DIR, e.g. /var/spool/mqueue")
		}
	}
	return out
}

// Message is one held message.
type Message struct {
	QueueID    string    `json:"queue_id"`
	Arrival    time.Time `json:"arrival"`
	Sender     string    `json:"sender"` // "" is the null sender
	Recipients []string  `json:"recipients"`
	Size       int64     `json:"size"`
	Reason     string    `json:"reason,omitempty"`  // the MTA's quarantine reason (Sendmail keeps ours)
	Verdict    *Verdict  `json:"verdict,omitempty"` // nil when the log has none for this queue ID
}

// Verdict is what the milter logged about a held message.
type Verdict struct {
	Time     time.Time         `json:"time"`
	Session  string            `json:"session"`
	Stage    string            `json:"stage"`
	Action   string            `json:"action"`
	Score    int               `json:"score"`
	Evidence []policy.Evidence `json:"evidence"`
	ClientIP string            `json:"client_ip"`
	Helo     string            `json:"helo"`
	Reply    string            `json:"reply,omitempty"`
	Notes    []string          `json:"notes,omitempty"`
}

// EvidenceText is the evidence as "name(weight) name(weight)".
func (v *Verdict) EvidenceText() string {
	if v == nil {
		return ""
	}
	parts := make([]string, 0, len(v.Evidence))
	for _, e := range v.Evidence {
		parts = append(parts, fmt.Sprintf("%s(%+d)", e.Name, e.Weight))
	}
	return strings.Join(parts, " ")
}

// MTA is one mail system's quarantine.
type MTA interface {
	Name() string
	// List returns every held message.
	List(ctx context.Context) ([]Message, error)
	// Headers returns the header block of a held message.
	Headers(ctx context.Context, id string) ([]byte, error)
	// Release lets a held message go on to delivery.
	Release(ctx context.Context, id string) error
	// Delete removes a held message.
	Delete(ctx context.Context, id string) error
}

// isHeld checks that id is a queue ID on m's hold queue (quarantine), so
// release and delete never act on mail the milter did not hold.
func isHeld(ctx context.Context, m MTA, id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q is not a queue ID", id)
	}
	msgs, err := m.List(ctx)
	if err != nil {
		return err
	}
	for _, msg := range msgs {
		if msg.QueueID == id {
			return nil
		}
	}
	return fmt.Errorf("%s: %w", id, ErrNotHeld)
}

// New returns the MTA the settings name.
func New(s Settings) (MTA, error) {
	if errs := s.Validate(); len(errs) > 0 {
		return nil, errs[0]
	}
	if s.MTA == Sendmail {
		return &sendmailMTA{argv: s.SendmailCommand, queue: s.SendmailQueue}, nil
	}
	return &postfixMTA{configDir: s.PostfixConfigDir, commandDir: s.PostfixCommandDir}, nil
}

// ErrNotHeld is returned for a queue ID that is not (or no longer) held.
var ErrNotHeld = errors.New("not on hold")

// DeniedError says the command lacks a right the MTA's tool needs.
type DeniedError struct {
	What   string // what was tried: "postsuper -H"
	Right  string // what it needs: "root"
	Detail string // the tool's own words
}

func (e *DeniedError) Error() string {
	s := e.What + " needs " + e.Right
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// deniedWords are what Postfix's and Sendmail's tools print when the
// caller lacks a right.
var deniedWords = regexp.MustCompile(`(?i)permission denied|reserved for the superuser|not authorized|only the super-?user|operation not permitted|insufficient privileges|you do not have permission`)

// ValidID reports whether id looks like a Postfix or Sendmail queue ID:
// letters and digits only, so it can go on a command line and into a file
// name unchecked.
func ValidID(id string) bool {
	if len(id) < 5 || len(id) > 40 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// run runs a tool and returns its standard output; a failure carries its
// standard error, and a refusal becomes a *DeniedError.
func run(ctx context.Context, what, right, name string, args ...string) ([]byte, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	if err != nil {
		if deniedWords.MatchString(msg) {
			return nil, stderr.Bytes(), &DeniedError{What: what, Right: right, Detail: firstLine(msg)}
		}
		if msg == "" {
			msg = err.Error()
		}
		return nil, stderr.Bytes(), fmt.Errorf("%s: %s", what, firstLine(msg))
	}
	return stdout.Bytes(), stderr.Bytes(), nil
}

// firstLine is the first non-empty line: a tool's fatal message.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// JoinVerdicts reads verdict logs (plain or gzip) and attaches to each
// message the last verdict line that has its queue ID, preferring a
// quarantine verdict: the one that put it on hold.
func JoinVerdicts(msgs []Message, files []string) error {
	want := map[string]int{}
	for i := range msgs {
		want[msgs[i].QueueID] = i
	}
	if len(want) == 0 {
		return nil
	}
	for _, name := range files {
		if err := scanVerdicts(name, func(l *report.Line) {
			i, ok := want[l.QueueID]
			if !ok || l.Event != "" {
				return
			}
			cur := msgs[i].Verdict
			if cur != nil && cur.Action == policy.Quarantine.String() && l.Action != policy.Quarantine {
				return
			}
			msgs[i].Verdict = &Verdict{Time: l.Time, Session: l.Session, Stage: string(l.Stage), Action: l.Action.String(),
				Score: l.Score, Evidence: l.Evidence, ClientIP: l.ClientIP, Helo: l.Helo, Reply: l.Reply, Notes: l.Notes}
		}); err != nil {
			return err
		}
	}
	return nil
}
