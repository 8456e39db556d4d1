package quarantine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sendmailMTA is Sendmail's quarantine: mailq -qQ lists it, the queue
// files show a message, sendmail -qQ -Q -qI<id> lifts the quarantine (then
// -qI<id> delivers it now), and deleting removes the message's files, as
// Sendmail has no command for it (qtool.pl does the same).
type sendmailMTA struct {
	argv  []string
	queue string
	now   func() time.Time // for mailq's dates without a year; nil is time.Now
}

func (s *sendmailMTA) Name() string { return Sendmail }

func (s *sendmailMTA) sendmail(ctx context.Context, what string, args ...string) ([]byte, []byte, error) {
	argv := append(append([]string{}, s.argv[1:]...), args...)
	return run(ctx, what, "root, or a user Sendmail's PrivacyOptions let see and run the queue", s.argv[0], argv...)
}

func (s *sendmailMTA) List(ctx context.Context) ([]Message, error) {
	out, _, err := s.sendmail(ctx, "mailq -qQ (listing Sendmail's quarantine)", "-bp", "-qQ")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	msgs := parseMailQ(string(out), now)
	// The queue file has the exact arrival time; mailq only has minutes.
	for i := range msgs {
		if b, _, err := s.readQueueFile(msgs[i].QueueID); err == nil {
			if qf := parseQF(b); !qf.Arrival.IsZero() {
				msgs[i].Arrival = qf.Arrival
			}
		}
	}
	return msgs, nil
}

var (
	mailqEntry  = regexp.MustCompile(`^([0-9A-Za-z]{8,40})[*X-]?\s+(\d+)\s+\+?\s*((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d\d:\d\d)\s+(.*)$`)
	mailqReason = regexp.MustCompile(`^\s+QUARANTINE:\s*(.*)$`)
	mailqRcpt   = regexp.MustCompile(`^\s+<([^>]*)>`)
)

// parseMailQ reads Sendmail's mailq listing:
//
//	-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------
//	4B1EGM5p012345*     567 Tue Dec  1 14:16 <>
//	     QUARANTINE: backscatter: bounce:not-ours
//						 <carol@example.org>
//
// Dates carry no year: the latest one not after now (plus a day of clock
// skew) is taken.
func parseMailQ(out string, now time.Time) []Message {
	var msgs []Message
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r")
		if m := mailqEntry.FindStringSubmatch(l); m != nil {
			size, _ := strconv.ParseInt(m[2], 10, 64)
			msg := Message{QueueID: m[1], Size: size, Arrival: mailqTime(m[3], now), Recipients: []string{}}
			if f := strings.Fields(m[4]); len(f) > 0 {
				msg.Sender = trimAngle(f[0])
			}
			msgs = append(msgs, msg)
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		msg := &msgs[len(msgs)-1]
		if m := mailqReason.FindStringSubmatch(l); m != nil {
			msg.Reason = m[1]
		} else if m := mailqRcpt.FindStringSubmatch(l); m != nil {
			msg.Recipients = append(msg.Recipients, m[1])
		}
	}
	return msgs
}

func mailqTime(s string, now time.Time) time.Time {
	t, err := time.ParseInLocation("Mon Jan _2 15:04", s, now.Location())
	if err != nil {
		return time.Time{}
	}
	for y := now.Year(); y >= now.Year()-1; y-- {
		c := time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, now.Location())
		if !c.After(now.Add(24 * time.Hour)) {
			return c
		}
	}
	return time.Time{}
}

// queueFile is what a Sendmail queue control file (qf, or hf while
// quarantined) tells.
type queueFile struct {
	Arrival time.Time
	Sender  string
	Rcpts   []string
	Reason  string
	Header  []byte
}

// parseQF reads a queue control file: one letter per line says what the
// line is (T creation time, S sender, R recipient, q quarantine reason, H
// header), lines starting with white space continue the previous one.
func parseQF(b []byte) queueFile {
	var qf queueFile
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if (strings.HasPrefix(l, "\t") || strings.HasPrefix(l, " ")) && len(lines) > 0 {
			lines[len(lines)-1] += "\n" + l
			continue
		}
		lines = append(lines, l)
	}
	var hdr strings.Builder
	for _, l := range lines {
		if l == "" || l == "." {
			continue
		}
		val := l[1:]
		switch l[0] {
		case 'T':
			if sec, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64); err == nil && sec > 0 {
				qf.Arrival = time.Unix(sec, 0)
			}
		case 'S':
			qf.Sender = trimAngle(val)
		case 'R':
			if _, addr, ok := strings.Cut(val, ":"); ok {
				val = addr
			}
			qf.Rcpts = append(qf.Rcpts, trimAngle(val))
		case 'q':
			qf.Reason = val
		case 'H':
			// H?flags?Name: value — the flags say when Sendmail adds the header.
			if strings.HasPrefix(val, "?") {
				if i := strings.IndexByte(val[1:], '?'); i >= 0 {
					val = val[i+2:]
				}
			}
			hdr.WriteString(val)
			hdr.WriteByte('\n')
		}
	}
	qf.Header = []byte(hdr.String())
	return qf
}

// queueFileNames are where a message's control file may be: hf while
// quarantined, qf otherwise; in QUEUE_DIR or its qf/ subdirectory.
func (s *sendmailMTA) queueFileNames(id string) []string {
	var out []string
	for _, sub := range []string{"", "qf"} {
		for _, p := range []string{"hf", "qf"} {
			out = append(out, filepath.Join(s.queue, sub, p+id))
		}
	}
	return out
}

func (s *sendmailMTA) readQueueFile(id string) ([]byte, string, error) {
	if !ValidID(id) {
		return nil, "", fmt.Errorf("%q is not a queue ID", id)
	}
	for _, name := range s.queueFileNames(id) {
		b, err := os.ReadFile(name)
		switch {
		case err == nil:
			return b, name, nil
		case errors.Is(err, fs.ErrPermission):
			return nil, "", &DeniedError{What: "reading Sendmail's queue " + s.queue, Right: "root (the queue directory is Sendmail's alone)", Detail: err.Error()}
		}
	}
	return nil, "", fmt.Errorf("%s: no queue file in %s: %w", id, s.queue, ErrNotHeld)
}

func (s *sendmailMTA) held(ctx context.Context, id string) error { return isHeld(ctx, s, id) }

func (s *sendmailMTA) Headers(ctx context.Context, id string) ([]byte, error) {
	if err := s.held(ctx, id); err != nil {
		return nil, err
	}
	b, _, err := s.readQueueFile(id)
	if err != nil {
		return nil, err
	}
	return parseQF(b).Header, nil
}

func (s *sendmailMTA) Release(ctx context.Context, id string) error {
	if err := s.held(ctx, id); err != nil {
		return err
	}
	// -Q without a reason lifts the quarantine of the jobs -qQ selects.
	if _, _, err := s.sendmail(ctx, "sendmail -qQ -Q (lifting the quarantine)", "-qQ", "-Q", "-qI"+id); err != nil {
		return err
	}
	if err := s.held(ctx, id); err == nil {
		return fmt.Errorf("%s: still quarantined after sendmail -qQ -Q", id)
	} else if !errors.Is(err, ErrNotHeld) {
		return err
	}
	// Deliver it now rather than at the next queue run; if this attempt
	// fails the message simply waits in the queue.
	_, _, _ = s.sendmail(ctx, "sendmail -qI (delivering)", "-qI"+id)
	return nil
}

func (s *sendmailMTA) Delete(ctx context.Context, id string) error {
	if err := s.held(ctx, id); err != nil {
		return err
	}
	_, ctl, err := s.readQueueFile(id)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(ctl, os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return &DeniedError{What: "deleting from Sendmail's queue " + s.queue, Right: "root", Detail: err.Error()}
		}
		return err
	}
	defer f.Close()
	// Sendmail locks the control file of a job it works on: never pull
	// one from under it.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("%s: Sendmail is working on it (%v); try again", id, err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		return fmt.Errorf("%s: Sendmail is working on it (%v); try again", id, err)
	}
	base := s.queue
	var errs []error
	// The data (df) and transcript (xf) files first: a control file
	// without its data file would be a broken job, the reverse is ignored.
	for _, name := range []string{
		filepath.Join(base, "df"+id), filepath.Join(base, "df", "df"+id),
		filepath.Join(base, "xf"+id), filepath.Join(base, "xf", "xf"+id),
	} {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(ctl); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return &DeniedError{What: "deleting from Sendmail's queue " + s.queue, Right: "root", Detail: err.Error()}
		}
		return err
	}
	return nil
}
