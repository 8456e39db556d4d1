package quarantine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// postfixMTA is Postfix's hold queue: postqueue -j lists it (any user
// allowed by authorized_mailq_users), postcat -h -q shows a message
// (root or the postfix user: it reads the queue file), postsuper -H and -d
// release and delete (root only).
type postfixMTA struct {
	configDir, commandDir string
}

func (p *postfixMTA) Name() string { return Postfix }

func (p *postfixMTA) command(name string) string {
	if p.commandDir != "" {
		return filepath.Join(p.commandDir, name)
	}
	if path := filepath.Join("/usr/sbin", name); executable(path) {
		return path
	}
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	return name
}

func (p *postfixMTA) args(a ...string) []string {
	if p.configDir != "" {
		return append([]string{"-c", p.configDir}, a...)
	}
	return a
}

// postqueueEntry is one line of postqueue -j (Postfix >= 3.1).
type postqueueEntry struct {
	QueueName   string `json:"queue_name"`
	QueueID     string `json:"queue_id"`
	ArrivalTime int64  `json:"arrival_time"`
	MessageSize int64  `json:"message_size"`
	Sender      string `json:"sender"`
	Recipients  []struct {
		Address string `json:"address"`
	} `json:"recipients"`
}

func (p *postfixMTA) List(ctx context.Context) ([]Message, error) {
	out, _, err := run(ctx, "postqueue -j (reading the Postfix queue)", "a user allowed by authorized_mailq_users, or root",
		p.command("postqueue"), p.args("-j")...)
	var denied *DeniedError
	if err != nil && p.configDir != "" && os.Geteuid() != 0 && !errors.As(err, &denied) {
		// postqueue is set-gid: for anyone but root it reads only the
		// default main.cf and the directories that one allows.
		return nil, &DeniedError{What: "postqueue -c " + p.configDir + " (reading the Postfix queue)",
			Right: "root, or " + p.configDir + " listed in alternate_config_directories of the default main.cf", Detail: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	return parsePostqueue(out)
}

// parsePostqueue reads postqueue -j and keeps the messages on hold.
func parsePostqueue(out []byte) ([]Message, error) {
	var msgs []Message
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var e postqueueEntry
		if err := dec.Decode(&e); err != nil {
			return msgs, fmt.Errorf("postqueue -j: %w", err)
		}
		if e.QueueName != "hold" || !ValidID(e.QueueID) {
			continue
		}
		m := Message{QueueID: e.QueueID, Arrival: time.Unix(e.ArrivalTime, 0), Sender: e.Sender, Size: e.MessageSize, Recipients: []string{}}
		if m.Sender == "MAILER-DAEMON" { // how postqueue shows the null sender
			m.Sender = ""
		}
		for _, r := range e.Recipients {
			m.Recipients = append(m.Recipients, r.Address)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func (p *postfixMTA) held(ctx context.Context, id string) error { return isHeld(ctx, p, id) }

func (p *postfixMTA) Headers(ctx context.Context, id string) ([]byte, error) {
	if err := p.held(ctx, id); err != nil {
		return nil, err
	}
	out, _, err := run(ctx, "postcat -h -q (reading a queue file)", "root or the postfix user",
		p.command("postcat"), p.args("-h", "-q", id)...)
	if err != nil {
		return nil, err
	}
	// postcat frames the section it prints with "*** ... ***" lines.
	var b bytes.Buffer
	for _, l := range bytes.SplitAfter(out, []byte("\n")) {
		if !bytes.HasPrefix(l, []byte("*** ")) {
			b.Write(l)
		}
	}
	return b.Bytes(), nil
}

var postsuperCount = regexp.MustCompile(`(Released from hold|Deleted): (\d+) message`)

// postsuper runs postsuper with op on id and checks from its summary line
// that it acted on one message.
func (p *postfixMTA) postsuper(ctx context.Context, what string, args ...string) error {
	_, stderr, err := run(ctx, what, "root", p.command("postsuper"), p.args(args...)...)
	if err != nil {
		return err
	}
	m := postsuperCount.FindSubmatch(stderr)
	if m == nil {
		return fmt.Errorf("%s: no summary from postsuper: %s", what, firstLine(string(stderr)))
	}
	if n, _ := strconv.Atoi(string(m[2])); n != 1 {
		return fmt.Errorf("%s: postsuper acted on %d messages: %w", what, n, ErrNotHeld)
	}
	return nil
}

func (p *postfixMTA) Release(ctx context.Context, id string) error {
	if err := p.held(ctx, id); err != nil {
		return err
	}
	return p.postsuper(ctx, "postsuper -H (releasing from hold)", "-H", id)
}

func (p *postfixMTA) Delete(ctx context.Context, id string) error {
	if err := p.held(ctx, id); err != nil {
		return err
	}
	// Naming the hold queue keeps a message that was released meanwhile.
	return p.postsuper(ctx, "postsuper -d (deleting from hold)", "-d", id, "hold")
}

func executable(path string) bool {
	_, err := exec.LookPath(path)
	return err == nil
}

// trimAngle removes the brackets around an address.
func trimAngle(s string) string { return strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">") }
