package bounce

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and keeps its invariants on
// any input. Seeds: the hand-written samples, and the corpus (read in
// place) when it is present.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(testdataDir, "*.eml"))
	own, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	seeds = append(seeds, own...)
	dir := os.Getenv("BACKSCATTER_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	more, _ := filepath.Glob(filepath.Join(dir, "bounces", "*", "*.eml"))
	seeds = append(seeds, more...)
	if len(seeds) == 0 {
		f.Fatal("no seeds found in " + testdataDir)
	}
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\nAction: failed\n"))
	lim := Limits{MaxBytes: 1 << 16, MaxDepth: 5, MaxParts: 20}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Parse(raw, lim)
		if err != nil {
			if r != nil {
				t.Fatal("report with error")
			}
			return
		}
		if r.Kind.String() == "unknown" {
			t.Fatalf("kind %d", r.Kind)
		}
		if len(raw) > lim.MaxBytes && !r.Truncated {
			t.Fatal("oversized input not marked truncated")
		}
		if r.OriginalMessageID != NormalizeMessageID(r.OriginalMessageID) {
			t.Fatalf("message-id %q not normalised", r.OriginalMessageID)
		}
		if r.OriginalHeader != nil && !r.OriginalHeaders || r.OriginalBody != nil && r.OriginalHeader == nil {
			t.Fatalf("original bytes without an original: headers %v, %d header bytes, %d body bytes",
				r.OriginalHeaders, len(r.OriginalHeader), len(r.OriginalBody))
		}
		for _, b := range [][]byte{r.OriginalHeader, r.OriginalBody} {
			if b != nil && (!bytes.HasSuffix(b, []byte("\r\n")) || bytes.Count(b, []byte("\n")) != bytes.Count(b, []byte("\r\n"))) {
				t.Fatalf("original bytes not in CRLF lines: %q", b)
			}
		}
	})
}

// FuzzParseReceived checks that any Received value parses without panic,
// and that an address it reports is written in the value.
func FuzzParseReceived(f *testing.F) {
	for _, s := range []string{
		"from a.example (a.example [192.0.2.1]) by b.example with ESMTP id 1",
		"from [127.0.0.1] ([192.0.2.21]) by 10.37.1.137 with SMTP",
		"from a ([fe80::1%7]) by b ([IPv6:2001:db8::9]) with mapi",
		"from x (HELO [1.2.3.4]) (5.6.7.8) by 2002:ac9:6610::1",
		"((((by (from [",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := parseReceived(v)
		for _, a := range []netip.Addr{h.ClientIP, h.ByIP} {
			if !a.IsValid() {
				continue
			}
			s := a.String()
			if a.Is4() && !strings.Contains(v, s) && !strings.Contains(v, a.Unmap().String()) && !strings.Contains(strings.ToLower(v), "ffff:") {
				t.Fatalf("address %s not in %q", s, v)
			}
		}
	})
}
