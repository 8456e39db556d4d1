package stamp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/batv"
)

var (
	secret0 = []byte("stamp-test-secret-zero-0123456789")
	secret1 = []byte("stamp-test-secret-one-9876543210!")
)

func atDay(day int) func() time.Time {
	return func() time.Time { return time.Unix(int64(day)*86400+3600, 0).UTC() }
}

func newStamper(day int) *Stamper {
	return &Stamper{Keys: &batv.Signer{Keys: []batv.Key{{ID: 0, Secret: secret0}}, Lifetime: 7 * 24 * time.Hour, Now: atDay(day)}}
}

var msg = Fields{
	MessageID: "<20261201.abc@Mail.Example.ORG>",
	Date:      "Tue, 01 Dec 2026 14:00:00 +0000",
	From:      `"Alice Example" <alice@Example.org>`,
}

// TestKnownVector recomputes a stamp by hand from the definition in the
// package documentation, independently of mac().
func TestKnownVector(t *testing.T) {
	const today = 20000
	s := newStamper(today)
	got, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	var in []byte
	in = append(in, "backscatter-stamp"...)
	in = append(in, 1, 0)
	in = binary.BigEndian.AppendUint16(in, 7) // (20000+7) mod 1000
	for _, f := range []string{"20261201.abc@mail.example.org", "t1796133600", "alice@example.org"} {
		in = binary.BigEndian.AppendUint16(in, uint16(len(f)))
		in = append(in, f...)
	}
	h := hmac.New(sha256.New, secret0)
	h.Write(in)
	want := "1.0.007." + hex.EncodeToString(h.Sum(nil)[:16])
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	s := newStamper(20000)
	v, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Verify(v, msg); r.Status != StatusOK || r.KeyID != 0 || r.Day != 7 || r.DaysLeft != 7 {
		t.Fatalf("Verify = %+v", r)
	}
	if _, err := s.Sign(Fields{Date: msg.Date, From: msg.From}); err != ErrNoMessageID {
		t.Fatalf("Sign without Message-ID: %v", err)
	}
	if _, err := s.Sign(Fields{MessageID: "  <> ", From: msg.From}); err != ErrNoMessageID {
		t.Fatalf("Sign with empty Message-ID: %v", err)
	}
	if _, err := s.Sign(Fields{MessageID: msg.MessageID, From: msg.From}); err != ErrNoDate {
		t.Fatalf("Sign without Date: %v", err)
	}
	if _, err := s.Sign(Fields{MessageID: msg.MessageID, Date: msg.Date, From: " "}); err != ErrNoFrom {
		t.Fatalf("Sign without From: %v", err)
	}
	for _, f := range []Fields{{MessageID: msg.MessageID, From: msg.From}, {MessageID: msg.MessageID, Date: msg.Date}} {
		if r := s.Verify(v, f); r.Status != StatusUnverifiable || r.Reason != ReasonNoField {
			t.Fatalf("Verify of a copy without Date or From = %+v", r)
		}
	}
	if r := s.Verify(v, Fields{Date: msg.Date, From: msg.From}); r.Status != StatusUnverifiable || r.Reason != ReasonNoMessageID {
		t.Fatalf("Verify without Message-ID = %+v", r)
	}
}

// TestSurvivals: what bouncing MTAs do to a returned header block must not
// break the proof.
func TestSurvivals(t *testing.T) {
	s := newStamper(20000)
	v, _ := s.Sign(msg)
	cases := map[string]Fields{
		"domain case":          {"<20261201.abc@mail.example.org>", msg.Date, `"Alice Example" <alice@EXAMPLE.ORG>`},
		"no brackets":          {"20261201.abc@mail.example.org", msg.Date, msg.From},
		"folded":               {"\r\n <20261201.abc@Mail.Example.ORG>", "Tue, 01 Dec 2026\r\n\t14:00:00 +0000", "\"Alice Example\"\r\n <alice@Example.org>"},
		"date re-rendered":     {msg.MessageID, "Tue, 1 Dec 2026 15:00:00 +0100 (CET)", msg.From},
		"date without weekday": {msg.MessageID, "1 Dec 2026 14:00:00 GMT", msg.From},
		"display re-encoded":   {msg.MessageID, msg.Date, "=?utf-8?q?Alice_Example?= <alice@example.org>"},
		"display dropped":      {msg.MessageID, msg.Date, "alice@example.org"},
		"display unknown cs":   {msg.MessageID, msg.Date, "=?x-unknown?q?Alice?= <alice@example.org>"},
	}
	for name, f := range cases {
		if r := s.Verify(v, f); r.Status != StatusOK {
			t.Errorf("%s: %+v", name, r)
		}
	}
	for name, val := range map[string]string{
		"upper hex":  strings.ToUpper(v),
		"refolded":   v[:8] + "\r\n\t" + v[8:],
		"spaces":     " " + strings.ReplaceAll(v, ".", " . ") + " ",
		"qp-decoded": qpRoundTrip(t, v),
	} {
		if r := s.Verify(val, msg); r.Status != StatusOK {
			t.Errorf("value %s (%q): %+v", name, val, r)
		}
	}
}

func qpRoundTrip(t *testing.T, s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	fmt.Fprint(w, s)
	w.Close()
	out, err := io.ReadAll(quotedprintable.NewReader(&b))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestTampering(t *testing.T) {
	s := newStamper(20000)
	v, _ := s.Sign(msg)
	for name, f := range map[string]Fields{
		"message-id":       {"<20261201.abd@mail.example.org>", msg.Date, msg.From},
		"message-id local": {"<20261201.ABC@mail.example.org>", msg.Date, msg.From},
		"date":             {msg.MessageID, "Tue, 01 Dec 2026 14:00:01 +0000", msg.From},
		"from":             {msg.MessageID, msg.Date, "<mallory@example.org>"},
		"from added":       {msg.MessageID, msg.Date, msg.From + ", <mallory@example.org>"},
		"from local case":  {msg.MessageID, msg.Date, "<Alice@example.org>"},
	} {
		if r := s.Verify(v, f); r.Status != StatusBad || r.Reason != ReasonMAC {
			t.Errorf("%s changed: %+v", name, r)
		}
	}
	st, err := Parse(v)
	if err != nil {
		t.Fatal(err)
	}
	// The key number and the day are covered too.
	for name, mut := range map[string]func(*Stamp){
		"key": func(x *Stamp) { x.KeyID = 1 },
		"day": func(x *Stamp) { x.Day = (x.Day + 1) % 1000 },
		"mac": func(x *Stamp) { x.MAC[15] ^= 1 },
	} {
		x := st
		mut(&x)
		s2 := newStamper(20000)
		s2.Keys.Keys = append(s2.Keys.Keys, batv.Key{ID: 1, Secret: secret0}) // same secret: only the number differs
		if r := s2.Verify(x.String(), msg); r.Status != StatusBad {
			t.Errorf("%s changed: %+v", name, r)
		}
	}
	x := st
	x.KeyID = 5
	if r := s.Verify(x.String(), msg); r.Status != StatusUnverifiable || r.Reason != ReasonUnknownKey {
		t.Errorf("unknown key: %+v", r)
	}
}

// TestCopied: a stamp lifted from one of our messages onto another (a
// forger who received mail from us) is not proof for the other.
func TestCopied(t *testing.T) {
	s := newStamper(20000)
	v, _ := s.Sign(msg)
	hdr := "Message-ID: <spam.123@bulk.example.net>\r\nDate: " + msg.Date + "\r\nFrom: " + msg.From +
		"\r\n" + DefaultHeader + ": " + v + "\r\n\r\nbody"
	r, found := s.Check([]byte(hdr), DefaultHeader)
	if !found || r.Status != StatusBad || r.Reason != ReasonMAC {
		t.Fatalf("copied stamp: %+v found=%v", r, found)
	}
}

func TestRotation(t *testing.T) {
	old := newStamper(20000)
	v0, _ := old.Sign(msg)
	// Key 1 becomes current; key 0 is kept (retired) and still verifies.
	s := &Stamper{Keys: &batv.Signer{Keys: []batv.Key{{ID: 0, Secret: secret0}, {ID: 1, Secret: secret1}},
		Current: 1, Lifetime: 7 * 24 * time.Hour, Now: atDay(20002)}}
	v1, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v1, "1.1.") {
		t.Fatalf("new stamp %q not made with key 1", v1)
	}
	for _, v := range []string{v0, v1} {
		if r := s.Verify(v, msg); r.Status != StatusOK {
			t.Errorf("%s: %+v", v, r)
		}
	}
	// Key 0 dropped: its stamps are no longer ours.
	s.Keys.Keys = s.Keys.Keys[1:]
	if r := s.Verify(v0, msg); r.Status != StatusUnverifiable || r.Reason != ReasonUnknownKey {
		t.Errorf("retired key removed: %+v", r)
	}
	if r := s.Verify(v1, msg); r.Status != StatusOK {
		t.Errorf("current key: %+v", r)
	}
}

func TestLifetimeAndWrap(t *testing.T) {
	for _, signDay := range []int{20000, 20995, 20999} { // the last two wrap past 999
		s := newStamper(signDay)
		v, _ := s.Sign(msg)
		// 1000 days on, the day number comes round again (BATV's wrap; key
		// rotation is the cure, docs/operations.md).
		for d, want := range map[int]Status{0: StatusOK, 6: StatusOK, 7: StatusExpired, 500: StatusExpired, 993: StatusExpired, 1000: StatusOK} {
			s.Keys.Now = atDay(signDay + d)
			if r := s.Verify(v, msg); r.Status != want {
				t.Errorf("signed day %d, checked %d days later: %+v, want %s", signDay, d, r, want)
			}
		}
	}
}

func TestParse(t *testing.T) {
	good := "1.3.042." + strings.Repeat("ab", 16)
	st, err := Parse(good)
	if err != nil || st.KeyID != 3 || st.Day != 42 || st.MAC[0] != 0xab || st.String() != good {
		t.Fatalf("Parse(%q) = %+v, %v", good, st, err)
	}
	for _, bad := range []string{"", "1", "1.3.042", "2.3.042." + strings.Repeat("ab", 16),
		"1.33.042." + strings.Repeat("ab", 16), "1.3.42." + strings.Repeat("ab", 16),
		"1.3.042." + strings.Repeat("ab", 15), "1.3.042." + strings.Repeat("zz", 16),
		"1.3.042." + strings.Repeat("ab", 16) + ".x", "1.-3.042." + strings.Repeat("ab", 16),
		strings.Repeat("1", 300)} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestReadHeader(t *testing.T) {
	raw := "Received: from a by b;\n\tTue, 01 Dec 2026\nMessage-Id:\n  <x@Y.example>\nDate: Tue, 01 Dec 2026 14:00:00 +0000\n" +
		"garbage line\nFrom: a@b.example\nmessage-id: <second@y.example>\nx-backscatter-stamp: one\nX-Backscatter-Stamp:\r\n two\r\n\r\nX-Backscatter-Stamp: body\n"
	f, st := ReadHeader([]byte(raw), DefaultHeader)
	if f.MessageID != "<x@Y.example>" || f.Date != "Tue, 01 Dec 2026 14:00:00 +0000" || f.From != "a@b.example" {
		t.Errorf("fields %+v", f)
	}
	if len(st) != 2 || st[0] != "one" || st[1] != "two" {
		t.Errorf("stamps %q", st)
	}
}

func TestCheckBest(t *testing.T) {
	s := newStamper(20000)
	v, _ := s.Sign(msg)
	hdr := "Message-ID: " + msg.MessageID + "\nDate: " + msg.Date + "\nFrom: " + msg.From + "\n" +
		DefaultHeader + ": junk\n" + DefaultHeader + ": " + v + "\n"
	if r, found := s.Check([]byte(hdr), DefaultHeader); !found || r.Status != StatusOK {
		t.Fatalf("junk before a good stamp: %+v", r)
	}
	if r, found := s.Check([]byte("Message-ID: <a@b>\n"+DefaultHeader+": 1.0.007.zz\n"), DefaultHeader); !found || r.Status != StatusUnverifiable {
		t.Fatalf("malformed stamp alone: %+v", r)
	}
	if _, found := s.Check([]byte("Message-ID: <a@b>\n"), DefaultHeader); found {
		t.Fatal("found a stamp where there is none")
	}
	if r, found := s.Check([]byte(hdr), "X-Other-Stamp"); found {
		t.Fatalf("other header name: %+v", r)
	}
}

// TestNoSecretPrinted: the stamper's text forms never show a key.
func TestNoSecretPrinted(t *testing.T) {
	s := newStamper(20000)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
		if strings.Contains(out, string(secret0)) || strings.Contains(out, hex.EncodeToString(secret0)) {
			t.Fatalf("secret printed: %s", out)
		}
	}
	s.Keys.Current = 4
	if _, err := s.Sign(msg); err == nil || strings.Contains(err.Error(), string(secret0)) {
		t.Fatalf("Sign with a missing current key: %v", err)
	}
}
