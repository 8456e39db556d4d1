package quarantine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const mailqSample = `		/var/spool/mqueue (2 requests)
-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------
5B1EGM5p012345*     567 Tue Dec  1 14:16 <>
     QUARANTINE: backscatter: bounce:not-ours
					 <carol@other.example>
5B1EGM5q012346     1234 Mon Nov 30 09:05 <MAILER-DAEMON@victim.example>
     QUARANTINE: backscatter: batv:missing
					 <dan@example.org>
					 <erin@example.org>
		Total requests: 2
`

func TestParseMailQ(t *testing.T) {
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	msgs := parseMailQ(mailqSample, now)
	if len(msgs) != 2 {
		t.Fatalf("%d messages: %+v", len(msgs), msgs)
	}
	a, b := msgs[0], msgs[1]
	if a.QueueID != "5B1EGM5p012345" || a.Size != 567 || a.Sender != "" || a.Reason != "backscatter: bounce:not-ours" ||
		len(a.Recipients) != 1 || a.Recipients[0] != "carol@other.example" || !a.Arrival.Equal(time.Date(2026, 12, 1, 14, 16, 0, 0, time.UTC)) {
		t.Errorf("first %+v", a)
	}
	if b.QueueID != "5B1EGM5q012346" || b.Size != 1234 || b.Sender != "MAILER-DAEMON@victim.example" || len(b.Recipients) != 2 || b.Recipients[1] != "erin@example.org" {
		t.Errorf("second %+v", b)
	}
	// A date later in the year than now is last year's.
	jan := time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)
	if got := parseMailQ(mailqSample, jan)[0].Arrival; got.Year() != 2026 {
		t.Errorf("December seen in January: %v", got)
	}
	if got := parseMailQ("		/var/spool/mqueue is empty\n\t\tTotal requests: 0\n", now); len(got) != 0 {
		t.Errorf("empty queue: %+v", got)
	}
}

const qfSample = "V8\nT1764598560\nK0\nN0\nP30523\nI8/1/1234\nMDeferred\nFs\n$_localhost [127.0.0.1]\n$rESMTP\nS<>\nqbackscatter: bounce:not-ours\nRPFD:<carol@other.example>\n" +
	"H?P?Return-Path: <>\nHReceived: from mx.remote.test ([127.0.0.2])\n\tby mta.example.org with ESMTP id 5B1EGM5p012345\n\tfor <carol@other.example>; Tue, 1 Dec 2026 14:16:00 +0000\n" +
	"HMessage-ID: <dsn-1@other.example>\nHSubject: Undelivered Mail\n.\n"

func TestParseQF(t *testing.T) {
	qf := parseQF([]byte(qfSample))
	if !qf.Arrival.Equal(time.Unix(1764598560, 0)) || qf.Sender != "" || qf.Reason != "backscatter: bounce:not-ours" ||
		len(qf.Rcpts) != 1 || qf.Rcpts[0] != "carol@other.example" {
		t.Errorf("%+v", qf)
	}
	want := "Return-Path: <>\nReceived: from mx.remote.test ([127.0.0.2])\n\tby mta.example.org with ESMTP id 5B1EGM5p012345\n\tfor <carol@other.example>; Tue, 1 Dec 2026 14:16:00 +0000\n" +
		"Message-ID: <dsn-1@other.example>\nSubject: Undelivered Mail\n"
	if string(qf.Header) != want {
		t.Errorf("header:\n%s\nwant\n%s", qf.Header, want)
	}
}

func TestParsePostqueue(t *testing.T) {
	out := `{"queue_name": "hold", "queue_id": "8587698410F", "arrival_time": 1764598551, "message_size": 1172, "forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"address": "carol@other.example"}]}
{"queue_name": "deferred", "queue_id": "9587698410F", "arrival_time": 1764598551, "message_size": 99, "sender": "a@b.example", "recipients": [{"address": "x@y.example", "delay_reason": "connect refused"}]}
{"queue_name": "hold", "queue_id": "../../etc", "arrival_time": 1, "message_size": 1, "sender": "", "recipients": []}
`
	msgs, err := parsePostqueue([]byte(out))
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%+v %v", msgs, err)
	}
	m := msgs[0]
	if m.QueueID != "8587698410F" || m.Sender != "" || m.Size != 1172 || !m.Arrival.Equal(time.Unix(1764598551, 0)) || m.Recipients[0] != "carol@other.example" {
		t.Errorf("%+v", m)
	}
	if _, err := parsePostqueue([]byte(`{"queue_name": "hold", "queue_id": 5}`)); err == nil {
		t.Error("a broken line must be an error")
	}
}

func TestValidateAndIDs(t *testing.T) {
	good := Settings{MTA: Postfix}
	if errs := good.Validate(); len(errs) != 0 {
		t.Errorf("%v", errs)
	}
	bad := Settings{MTA: "exim", PostfixConfigDir: "etc/postfix"}
	if errs := bad.Validate(); len(errs) != 2 {
		t.Errorf("want mta and postfix_config_dir: %v", errs)
	}
	if errs := (Settings{MTA: Sendmail}).Validate(); len(errs) != 2 {
		t.Errorf("sendmail without command and queue: %v", errs)
	}
	for id, ok := range map[string]bool{"8587698410F": true, "5B1EGM5p012345": true, "4Xyz": false, "../etc/passwd": false, "ABC DEF12": false, "-qQ12345": false} {
		if ValidID(id) != ok {
			t.Errorf("ValidID(%q) = %v", id, !ok)
		}
	}
}

// TestRefusal: a tool that says it needs more rights becomes a
// DeniedError naming the right; other failures stay plain errors.
func TestRefusal(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "postsuper")
	os.WriteFile(tool, []byte("#!/bin/sh\necho 'postsuper: fatal: use of this command is reserved for the superuser' >&2\nexit 1\n"), 0o755)
	p := &postfixMTA{commandDir: dir}
	err := p.postsuper(context.Background(), "postsuper -H", "-H", "ABCDEF123")
	var denied *DeniedError
	if !errors.As(err, &denied) || denied.Right != "root" || !strings.Contains(err.Error(), "reserved for the superuser") {
		t.Errorf("refusal: %v", err)
	}
	os.WriteFile(tool, []byte("#!/bin/sh\necho 'postsuper: Released from hold: 0 messages' >&2\n"), 0o755)
	if err := p.postsuper(context.Background(), "postsuper -H", "-H", "ABCDEF123"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("nothing released: %v", err)
	}
	sm := &sendmailMTA{queue: filepath.Join(dir, "mqueue")}
	os.Mkdir(sm.queue, 0o700)
	os.WriteFile(filepath.Join(sm.queue, "hfABCDEF123"), []byte(qfSample), 0o600)
	if b, name, err := sm.readQueueFile("ABCDEF123"); err != nil || !strings.HasSuffix(name, "hfABCDEF123") || len(b) == 0 {
		t.Errorf("readQueueFile: %v %s", err, name)
	}
	if _, _, err := sm.readQueueFile("ABCDEF999"); !errors.Is(err, ErrNotHeld) {
		t.Errorf("missing queue file: %v", err)
	}
}

func FuzzParseMailQ(f *testing.F) {
	f.Add(mailqSample)
	f.Add("5B1EGM5p012345      0 Sun Feb 29 00:00 <a>\n QUARANTINE:\n\t<\n")
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range parseMailQ(s, now) {
			if !ValidID(m.QueueID) || m.Size < 0 || m.Arrival.After(now.Add(25*time.Hour)) {
				t.Fatalf("bad entry %+v", m)
			}
		}
	})
}

func FuzzParseQF(f *testing.F) {
	f.Add([]byte(qfSample))
	f.Add([]byte("H?\nH??\nR\nT-1\n\tcontinued\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		qf := parseQF(b)
		if len(qf.Header) > len(b)+len(b)/2+1 {
			t.Fatalf("header of %d bytes from %d", len(qf.Header), len(b))
		}
	})
}

func FuzzParsePostqueue(f *testing.F) {
	f.Add([]byte(`{"queue_name": "hold", "queue_id": "8587698410F", "arrival_time": 1, "message_size": 1, "sender": "", "recipients": [{"address": "a@b"}]}`))
	f.Add([]byte(`{"queue_name": "hold"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _ := parsePostqueue(b)
		for _, m := range msgs {
			if !ValidID(m.QueueID) {
				t.Fatalf("invalid queue ID listed: %q", m.QueueID)
			}
		}
	})
}
