package bounce

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const testdataDir = "../../testdata/bounce"

func readSample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSamples(t *testing.T) {
	tests := []struct {
		file       string
		kind       Kind
		msgID      string
		rcpts      []string
		senders    []string
		hops       int
		inReplyTo  []string
		noOriginal bool
	}{
		{file: "dsn-failure.eml", kind: KindFailure, msgID: "Lunch.42@out.example.org",
			rcpts: []string{"nobody@example.net"}, senders: []string{"alice@example.org"}, hops: 2},
		{file: "dsn-delay.eml", kind: KindDelay, msgID: "delay-1@example.org",
			rcpts: []string{"carol@slow.example.com"}, senders: []string{"bob@example.org"}, hops: 1},
		{file: "dsn-delivered.eml", kind: KindDelivered, msgID: "sent-ok@example.org", senders: []string{"dave@example.org"}},
		{file: "qmail.eml", kind: KindFailure, msgID: "q-77@example.org",
			rcpts: []string{"gone@example.net"}, senders: []string{"frank@example.org"}, hops: 2},
		{file: "exim.eml", kind: KindFailure, msgID: "grace.1@example.org",
			rcpts: []string{"heidi@example.net"}, senders: []string{"grace@example.org"}, hops: 1},
		{file: "broken-boundary.eml", kind: KindFailure, msgID: "walter-5@example.org",
			rcpts: []string{"xavier@example.net"}, senders: []string{"walter@example.org"}, hops: 1},
		{file: "autoreply.eml", kind: KindAutoReply, noOriginal: true,
			inReplyTo: []string{"meeting-1@example.org", "thread-0@example.org"}},
		{file: "out-of-office.eml", kind: KindAutoReply, noOriginal: true},
		{file: "suppress-only.eml", kind: KindNone, noOriginal: true},
		{file: "forwarded.eml", kind: KindNone, msgID: "offer@example.com", senders: []string{"victor@example.com"}, hops: 1},
		{file: "arf.eml", kind: KindFeedback, msgID: "news-9@example.org", senders: []string{"news@example.org"}, hops: 1},
	}
	for _, tc := range tests {
		raw := readSample(t, tc.file)
		// Every sample must read the same with any line ending.
		variants := map[string][]byte{
			"lf":   raw,
			"crlf": bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n")),
			"cr":   bytes.ReplaceAll(raw, []byte("\n"), []byte("\r")),
		}
		for vname, v := range variants {
			t.Run(tc.file+"/"+vname, func(t *testing.T) {
				r, err := Parse(v, DefaultLimits())
				if err != nil {
					t.Fatal(err)
				}
				if r.Kind != tc.kind {
					t.Errorf("kind %v, want %v (why %q)", r.Kind, tc.kind, r.Why)
				}
				if len(r.Why) == 0 && tc.kind != KindNone {
					t.Error("no reason given")
				}
				if r.OriginalMessageID != tc.msgID {
					t.Errorf("message-id %q, want %q", r.OriginalMessageID, tc.msgID)
				}
				if !reflect.DeepEqual(r.FailedRecipients, tc.rcpts) {
					t.Errorf("failed recipients %q, want %q", r.FailedRecipients, tc.rcpts)
				}
				if !reflect.DeepEqual(r.OriginalSenders, tc.senders) {
					t.Errorf("original senders %q, want %q", r.OriginalSenders, tc.senders)
				}
				if len(r.Received) != tc.hops {
					t.Errorf("%d hops, want %d: %+v", len(r.Received), tc.hops, r.Received)
				}
				if r.OriginalHeaders == tc.noOriginal {
					t.Errorf("OriginalHeaders = %v", r.OriginalHeaders)
				}
				if tc.inReplyTo != nil {
					for _, id := range tc.inReplyTo {
						if !contains(r.InReplyTo, id) {
							t.Errorf("InReplyTo %q lacks %q", r.InReplyTo, id)
						}
					}
				}
				if r.Truncated {
					t.Error("truncated")
				}
			})
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestReceivedHops(t *testing.T) {
	r, err := Parse(readSample(t, "dsn-failure.eml"), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	want := []Hop{
		{From: "out.example.org", By: "mx.example.net", ClientIP: netip.MustParseAddr("192.0.2.10")},
		{From: "[IPv6:2001:db8::5]", By: "out.example.org", ClientIP: netip.MustParseAddr("2001:db8::5")},
	}
	if len(r.Received) != len(want) {
		t.Fatalf("hops %+v", r.Received)
	}
	for i, w := range want {
		g := r.Received[i]
		if g.From != w.From || g.By != w.By || g.ClientIP != w.ClientIP || g.Raw == "" {
			t.Errorf("hop %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestParseReceived(t *testing.T) {
	tests := []struct {
		in       string
		from, by string
		ip, byIP string
	}{
		{"from a.example (a.example [192.0.2.1]) by b.example with ESMTP id 1", "a.example", "b.example", "192.0.2.1", ""},
		{"from relay (HELO x) (192.0.2.4)\n  by mx.example with SMTP; 24 Apr 2013", "relay", "mx.example", "192.0.2.4", ""},
		{"(qmail 4242 invoked from network); 5 Mar 2026", "", "", "", ""},
		{"(qmail 4242 invoked by uid 89); 5 Mar 2026", "", "", "", ""},
		{"by mx9.example.com; (5.65/1.37) id 0000000", "", "mx9.example.com", "", ""},
		{"from x (authenticated by y) by z.example", "x", "z.example", "", ""},
		{"from [203.0.113.5] by h.example", "[203.0.113.5]", "h.example", "203.0.113.5", ""},
		{"from x ([IPv6:::ffff:192.0.2.9]) by y", "x", "y", "192.0.2.9", ""},
		// The TCP-info address, never the bracketed HELO literal.
		{"from [127.0.0.1] ([192.0.2.21]) by mx.example with ESMTP", "[127.0.0.1]", "mx.example", "192.0.2.21", ""},
		{"from [10.0.0.1] (c135.example.net [192.0.2.240]) by mx.example", "[10.0.0.1]", "mx.example", "192.0.2.240", ""},
		{"from unknown (HELO [198.51.100.7]) (192.0.2.4) by mx.example", "unknown", "mx.example", "192.0.2.4", ""},
		// Exim: the client is outside the comment, the HELO inside it.
		{"from [192.0.2.9] (helo=[10.0.0.1]) by mx.example with esmtp", "[192.0.2.9]", "mx.example", "192.0.2.9", ""},
		{"from mail.example ([192.0.2.8] helo=mail.example) by mx.example", "mail.example", "mx.example", "192.0.2.8", ""},
		// An IP written in the by clause, IPv4 and IPv6.
		{"from x (x [192.0.2.3]) by 10.37.1.137 with SMTP id q1", "x", "10.37.1.137", "192.0.2.3", "10.37.1.137"},
		{"from y (y [2001:db8::7]) by 2002:ac9:6610::1 with SMTP id q2", "y", "2002:ac9:6610::1", "2001:db8::7", "2002:ac9:6610::1"},
		{"by [IPv6:2001:db8::1] with LMTP", "", "[IPv6:2001:db8::1]", "", "2001:db8::1"},
		{"from a (10.152.250.56) by b.outlook.example (10.152.250.217) with Microsoft SMTP Server", "a", "b.outlook.example", "10.152.250.56", "10.152.250.217"},
		{"from a ([fe80::1%7]) by b ([fe80::2%7]) with mapi id 15.20", "a", "b", "fe80::1", "fe80::2"},
		{"from a (a [192.0.2.1]) by mx.example (Postfix) with ESMTP", "a", "mx.example", "192.0.2.1", ""},
		{"from a by localhost (mx4.example [127.0.0.1]) (amavisd-new, port 10024)", "a", "localhost", "", "127.0.0.1"},
		{"", "", "", "", ""},
	}
	for _, tc := range tests {
		h := parseReceived(tc.in)
		var ip, byIP netip.Addr
		if tc.ip != "" {
			ip = netip.MustParseAddr(tc.ip)
		}
		if tc.byIP != "" {
			byIP = netip.MustParseAddr(tc.byIP)
		}
		if h.From != tc.from || h.By != tc.by || h.ClientIP != ip || h.ByIP != byIP {
			t.Errorf("parseReceived(%q) = %+v, want from %q by %q ip %q by-ip %q", tc.in, h, tc.from, tc.by, tc.ip, tc.byIP)
		}
	}
}

func TestNormalizeMessageID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<Abc.1@Example.ORG>", "Abc.1@example.org"},
		{"  <abc@example.org> (comment)", "abc@example.org"},
		{"abc@EXAMPLE.org", "abc@example.org"},
		{"<abc@example.org", "abc@example.org"},
		{"<a@b@C>", "a@b@c"},
		{"", ""},
		{"<>", ""},
	}
	for _, tc := range tests {
		if got := NormalizeMessageID(tc.in); got != tc.want {
			t.Errorf("NormalizeMessageID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestKindString(t *testing.T) {
	want := map[Kind]string{KindNone: "none", KindFailure: "failure", KindDelay: "delay",
		KindDelivered: "delivered", KindAutoReply: "autoreply", KindFeedback: "feedback-report", Kind(99): "unknown"}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), s)
		}
	}
	if !KindFailure.IsBounce() || !KindDelay.IsBounce() || KindDelivered.IsBounce() || KindAutoReply.IsBounce() {
		t.Error("IsBounce wrong")
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "\n\nbody only", "no header here\n"} {
		if r, err := Parse([]byte(in), DefaultLimits()); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", in, r)
		}
	}
}

func TestLimits(t *testing.T) {
	raw := readSample(t, "dsn-failure.eml")
	t.Run("bytes", func(t *testing.T) {
		r, err := Parse(raw, Limits{MaxBytes: 900})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Truncated {
			t.Error("not marked truncated")
		}
	})
	t.Run("parts", func(t *testing.T) {
		r, err := Parse(raw, Limits{MaxParts: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || r.Kind != KindFailure {
			t.Errorf("truncated %v kind %v", r.Truncated, r.Kind)
		}
	})
	t.Run("depth", func(t *testing.T) {
		// 50 nested multiparts against a depth limit of 10.
		var b strings.Builder
		b.WriteString("From: a@example.org\nSubject: nest\nContent-Type: multipart/mixed; boundary=b0\n\n")
		for i := 1; i < 50; i++ {
			b.WriteString("--b" + itoa(i-1) + "\nContent-Type: multipart/mixed; boundary=b" + itoa(i) + "\n\n")
		}
		r, err := Parse([]byte(b.String()), DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || r.Kind != KindNone {
			t.Errorf("truncated %v kind %v", r.Truncated, r.Kind)
		}
	})
	t.Run("fields", func(t *testing.T) {
		b := bytes.Repeat([]byte("X-A: b\n"), 5000)
		r, err := Parse(b, DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		if !r.Truncated {
			t.Error("not marked truncated")
		}
	})
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
