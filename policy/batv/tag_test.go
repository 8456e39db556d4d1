package batv

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		addr   string
		delim  string
		ok     bool
		base   string
		tag    string
		syntax Syntax
	}{
		{"subaddress", "user+prvs=0123abcdef@example.org", "+", true, "user@example.org", "0123abcdef", SyntaxSubaddress},
		{"prefix", "prvs=0123abcdef=user@example.org", "+", true, "user@example.org", "0123abcdef", SyntaxPrefix},
		{"upper prefix and hex", "PRVS=9999ABCDEF=User@Example.ORG", "+", true, "User@Example.ORG", "9999abcdef", SyntaxPrefix},
		{"upper subaddress", "user+PrVs=1000FFFFFF@example.org", "+", true, "user@example.org", "1000ffffff", SyntaxSubaddress},
		{"angle brackets and spaces", " <user+prvs=0123abcdef@example.org> ", "+", true, "user@example.org", "0123abcdef", SyntaxSubaddress},
		{"local part with delimiter", "a+b+prvs=0123abcdef@example.org", "+", true, "a+b@example.org", "0123abcdef", SyntaxSubaddress},
		{"other delimiter", "user-prvs=0123abcdef@example.org", "-", true, "user@example.org", "0123abcdef", SyntaxSubaddress},
		{"multi-char delimiter", "user--prvs=0123abcdef@example.org", "--", true, "user@example.org", "0123abcdef", SyntaxSubaddress},
		{"wrong delimiter", "user-prvs=0123abcdef@example.org", "+", false, "", "", 0},
		{"empty delimiter means default", "user+prvs=0123abcdef@example.org", "", true, "user@example.org", "0123abcdef", SyntaxSubaddress},
		{"broken prefix, good subaddress", "prvs=zz=user+prvs=0123abcdef@example.org", "+", true, "prvs=zz=user@example.org", "0123abcdef", SyntaxSubaddress},
		{"plain", "user@example.org", "+", false, "", "", 0},
		{"plain with delimiter", "user+news@example.org", "+", false, "", "", 0},
		{"null sender", "", "+", false, "", "", 0},
		{"null sender brackets", "<>", "+", false, "", "", 0},
		{"no domain", "prvs=0123abcdef=user", "+", false, "", "", 0},
		{"empty domain", "prvs=0123abcdef=user@", "+", false, "", "", 0},
		{"empty base local", "prvs=0123abcdef=@example.org", "+", false, "", "", 0},
		{"empty subaddress user", "+prvs=0123abcdef@example.org", "+", false, "", "", 0},
		{"quoted", `"user+prvs=0123abcdef"@example.org`, "+", false, "", "", 0},
		{"short tag", "prvs=0123abcde=user@example.org", "+", false, "", "", 0},
		{"non-hex", "prvs=0123abcdeg=user@example.org", "+", false, "", "", 0},
		{"non-digit key", "prvs=a123abcdef=user@example.org", "+", false, "", "", 0},
		{"non-digit day", "user+prvs=01x3abcdef@example.org", "+", false, "", "", 0},
		{"tag not last", "user+prvs=0123abcdef+x@example.org", "+", false, "", "", 0},
		{"long s look-alike", "prvſ=0123abcdef=user@example.org", "+", false, "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag, base, ok := ParseDelimiter(tt.addr, tt.delim)
			if ok != tt.ok {
				t.Fatalf("ParseDelimiter(%q, %q) ok = %v, want %v", tt.addr, tt.delim, ok, tt.ok)
			}
			if !ok {
				return
			}
			if base != tt.base || tag.String() != tt.tag || tag.Syntax != tt.syntax {
				t.Errorf("ParseDelimiter(%q) = %s %q %s, want %s %q %s", tt.addr, tag, base, tag.Syntax, tt.tag, tt.base, tt.syntax)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	tag, _, ok := Parse("prvs=7042A0ff13=u@example.org")
	if !ok {
		t.Fatal("not parsed")
	}
	want := Tag{KeyID: 7, Day: 42, MAC: [3]byte{0xa0, 0xff, 0x13}, Syntax: SyntaxPrefix}
	if tag != want {
		t.Errorf("got %+v, want %+v", tag, want)
	}
}

func TestStrip(t *testing.T) {
	tests := map[string]string{
		"user+prvs=0123abcdef@example.org": "user@example.org",
		"prvs=0123abcdef=user@example.org": "user@example.org",
		"user@example.org":                 "user@example.org",
		"user+prvs=bad@example.org":        "user+prvs=bad@example.org",
		"":                                 "",
	}
	for in, want := range tests {
		if got := Strip(in); got != want {
			t.Errorf("Strip(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSyntax(t *testing.T) {
	tests := []struct {
		in      string
		want    Syntax
		wantErr bool
	}{
		{"", SyntaxSubaddress, false},
		{"subaddress", SyntaxSubaddress, false},
		{"Prefix", SyntaxPrefix, false},
		{"suffix", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSyntax(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSyntax(%q) = %v, %v", tt.in, got, err)
		}
	}
	if SyntaxPrefix.String() != "prefix" || SyntaxSubaddress.String() != "subaddress" || Syntax(9).String() != "unknown" {
		t.Error("Syntax.String")
	}
}

func TestParseHugeInput(t *testing.T) {
	addr := strings.Repeat("a", 1<<20) + "+prvs=0123abcdef@example.org"
	if _, _, ok := Parse(addr); ok {
		t.Error("parsed a 1 MiB address")
	}
}
