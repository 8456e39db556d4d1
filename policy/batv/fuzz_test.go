package batv

import (
	"strings"
	"testing"
	"unicode/utf8"
)

var fuzzSeeds = []string{
	"user+prvs=0123abcdef@example.org",
	"prvs=0123abcdef=user@example.org",
	"PRVS=9999ABCDEF=u@x",
	"a+b+prvs=0000000000@x.y",
	"prvs=zz=user+prvs=0123abcdef@example.org",
	"<user@example.org>",
	`"q+prvs=0123abcdef"@x`,
	"+prvs=0123abcdef@x",
	"prvs=0123abcdef=@x",
	"user@",
	"",
	"@",
	"prvs=",
}

// FuzzParse checks that Parse never panics and that what it reports is
// consistent with the input.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, "+")
	}
	f.Add("user--prvs=0123abcdef@x", "--")
	f.Fuzz(func(t *testing.T, addr, delim string) {
		if strings.ContainsAny(delim, "@=\"") || !isASCII(delim) {
			return // configuration allows only ASCII delimiters (config check)
		}
		tag, base, ok := ParseDelimiter(addr, delim)
		if !ok {
			return
		}
		if tag.KeyID < 0 || tag.KeyID > 9 || tag.Day < 0 || tag.Day > 999 {
			t.Fatalf("tag out of range: %+v", tag)
		}
		if len(base) >= len(addr) || !strings.Contains(base, "@") {
			t.Fatalf("base %q from %q", base, addr)
		}
		if s := tag.String(); len(s) != tagLen || !containsFold(addr, s) {
			t.Fatalf("tag %q not in %q", s, addr)
		}
		if utf8.ValidString(addr) && !utf8.ValidString(base) {
			t.Fatalf("base %q of valid UTF-8 %q is not", base, addr)
		}
	})
}

// FuzzVerify checks that Verify never panics, that whatever Sign produces
// verifies, and that a one-byte change to a signed tag never verifies.
func FuzzVerify(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, uint8(0))
	}
	s := newSigner(20000)
	f.Fuzz(func(t *testing.T, addr string, flip uint8) {
		r := s.Verify(addr)
		if r.Status < StatusOK || r.Status > StatusExpired {
			t.Fatalf("status %d", r.Status)
		}
		if r.Status == StatusOK && r.Original == "" {
			t.Fatal("ok without original")
		}
		signed, err := s.Sign(addr)
		if err != nil {
			return
		}
		if r := s.Verify(signed); r.Status != StatusOK {
			t.Fatalf("Verify(Sign(%q) = %q) = %+v", addr, signed, r)
		}
		// The tag is in the local part; the domain may contain "prvs=" too.
		local := signed[:strings.LastIndexByte(signed, '@')]
		tagAt := lastIndexFold(local, prvsPrefix) + len(prvsPrefix)
		i := tagAt + int(flip)%tagLen
		b := []byte(signed)
		b[i] ^= 0x01
		if r := s.Verify(string(b)); r.Status == StatusOK && !strings.EqualFold(string(b), signed) {
			t.Fatalf("tampered %q verifies", b)
		}
	})
}

func lastIndexFold(s, sub string) int {
	for i := len(s) - len(sub); i >= 0; i-- {
		if equalFoldASCII(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
