package batv

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	secret0 = []byte("key-zero-0123456789abcdef")
	secret1 = []byte("key-one--0123456789abcdef")
)

// atDay returns a clock fixed at noon of the given day number.
func atDay(n int) func() time.Time {
	return func() time.Time { return time.Unix(int64(n)*86400+12*3600, 0).UTC() }
}

func newSigner(day int) *Signer {
	return &Signer{Keys: []Key{{ID: 0, Secret: secret0}}, Now: atDay(day)}
}

func TestSignKnownVector(t *testing.T) {
	// Computed by hand from the definition, independently of mac():
	// HMAC-SHA1(secret, "KDDD" + address), first 3 bytes in hex.
	const today = 20000
	h := hmac.New(sha1.New, secret0)
	h.Write([]byte("0007user@example.org")) // 20007 mod 1000 = 7
	sum := hex.EncodeToString(h.Sum(nil)[:3])

	s := newSigner(today)
	got, err := s.Sign("User@Example.ORG")
	if err != nil {
		t.Fatal(err)
	}
	if want := "User+prvs=0007" + sum + "@Example.ORG"; got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
	s.Syntax = SyntaxPrefix
	got, err = s.Sign("user@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if want := "prvs=0007" + sum + "=user@example.org"; got != want {
		t.Errorf("Sign prefix = %q, want %q", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	addrs := []string{
		"user@example.org",
		"User.Name@Example.ORG",
		"a+b@example.org",
		"a-b@example.org",
		"<user@example.org>",
		"user+prvs=0123abcdef@example.org",         // already tagged: re-signed
		"prvs=0123abcdef=user+prvs=0999aaaaaa@x.y", // tagged twice
		"prvs=zz=user@example.org",                 // looks odd, not a tag
		"üser@exämple.org",
	}
	for _, syntax := range []Syntax{SyntaxSubaddress, SyntaxPrefix} {
		for _, delim := range []string{"", "+", "-", "--"} {
			for _, addr := range addrs {
				name := fmt.Sprintf("%s/%q/%s", syntax, delim, addr)
				t.Run(name, func(t *testing.T) {
					s := newSigner(12345)
					s.Syntax, s.Delimiter = syntax, delim
					signed, err := s.Sign(addr)
					if err != nil {
						t.Fatal(err)
					}
					if n := strings.Count(strings.ToLower(signed), "prvs="); n != 1+strings.Count(strings.ToLower(s.Strip(signed)), "prvs=") {
						t.Errorf("Sign(%q) = %q: double tagged", addr, signed)
					}
					r := s.Verify(signed)
					if r.Status != StatusOK || r.KeyID != 0 || r.Syntax != syntax || r.Reason != "" {
						t.Fatalf("Verify(%q) = %+v", signed, r)
					}
					if r.Original != s.Strip(signed) {
						t.Errorf("Original %q, Strip %q", r.Original, s.Strip(signed))
					}
					// Idempotent: signing the signed address gives the same result.
					again, err := s.Sign(signed)
					if err != nil || again != signed {
						t.Errorf("Sign(Sign(x)) = %q, %v; want %q", again, err, signed)
					}
					// ASCII case changes by a remote MTA do not break it.
					upper := strings.Map(func(r rune) rune {
						if 'a' <= r && r <= 'z' {
							return r - 'a' + 'A'
						}
						return r
					}, signed)
					if r := s.Verify(upper); r.Status != StatusOK {
						t.Errorf("Verify(upper %q) = %+v", signed, r)
					}
				})
			}
		}
	}
}

func TestExpiry(t *testing.T) {
	for _, start := range []int{20000, 20995, 20999, 21000, 0} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			s := newSigner(start)
			signed, err := s.Sign("user@example.org")
			if err != nil {
				t.Fatal(err)
			}
			tag, _, _ := s.Parse(signed)
			if want := (start + 7) % 1000; tag.Day != want {
				t.Fatalf("day %d, want %d", tag.Day, want)
			}
			tests := []struct {
				offset int
				want   Status
				left   int
			}{
				{0, StatusOK, 7},
				{1, StatusOK, 6},
				{6, StatusOK, 1},      // the 7th day, the last
				{7, StatusExpired, 0}, // the 8th day: refused
				{8, StatusExpired, 999},
				{500, StatusExpired, 507},
				{993, StatusExpired, 14},
				{999, StatusExpired, 8},
				{1000, StatusOK, 7}, // the wrap: DayWrap days later the tag looks fresh (rotate keys)
				{1006, StatusOK, 1}, // for a whole lifetime
				{1007, StatusExpired, 0},
				{-1, StatusExpired, 8}, // clock set back: too far in the future to be ours
			}
			for _, tt := range tests {
				if start+tt.offset < 0 {
					continue
				}
				s.Now = atDay(start + tt.offset)
				r := s.Verify(signed)
				if r.Status != tt.want || r.DaysLeft != tt.left {
					t.Errorf("day +%d: %s left %d, want %s left %d", tt.offset, r.Status, r.DaysLeft, tt.want, tt.left)
				}
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	tests := []struct {
		lifetime time.Duration
		days     int
	}{
		{0, 7},
		{time.Hour, 1},
		{24 * time.Hour, 1},
		{25 * time.Hour, 2},
		{30 * 24 * time.Hour, 30},
	}
	for _, tt := range tests {
		s := newSigner(20000)
		s.Lifetime = tt.lifetime
		signed, err := s.Sign("u@example.org")
		if err != nil {
			t.Fatal(err)
		}
		// Valid on tt.days calendar days counting the day it was made,
		// refused on the next: never longer than the lifetime.
		s.Now = atDay(20000 + tt.days - 1)
		if r := s.Verify(signed); r.Status != StatusOK {
			t.Errorf("lifetime %s: last day %s", tt.lifetime, r.Status)
		}
		s.Now = atDay(20000 + tt.days)
		if r := s.Verify(signed); r.Status != StatusExpired {
			t.Errorf("lifetime %s: day after %s", tt.lifetime, r.Status)
		}
		// Late on the day it was made, the tag still has its full days
		// left but not one more: signed at 23:59, refused lifetime−1 days
		// and a minute later.
		s.Now = func() time.Time { return time.Unix(20000*86400+86399, 0) }
		late, err := s.Sign("u@example.org")
		if err != nil {
			t.Fatal(err)
		}
		s.Now = func() time.Time { return time.Unix(int64(20000+tt.days)*86400, 0) }
		if r := s.Verify(late); r.Status != StatusExpired {
			t.Errorf("lifetime %s: signed late, %s after %d days", tt.lifetime, r.Status, tt.days)
		}
	}
}

func TestRotation(t *testing.T) {
	old := &Signer{Keys: []Key{{ID: 0, Secret: secret0}}, Current: 0, Now: atDay(20000)}
	oldTag, err := old.Sign("user@example.org")
	if err != nil {
		t.Fatal(err)
	}
	rotated := &Signer{Keys: []Key{{ID: 0, Secret: secret0}, {ID: 1, Secret: secret1}}, Current: 1, Now: atDay(20001)}
	newTag, err := rotated.Sign("user@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if tag, _, _ := rotated.Parse(newTag); tag.KeyID != 1 {
		t.Errorf("new tag key %d, want 1", tag.KeyID)
	}
	if r := rotated.Verify(oldTag); r.Status != StatusOK || r.KeyID != 0 {
		t.Errorf("retired key: %+v", r)
	}
	if r := rotated.Verify(newTag); r.Status != StatusOK || r.KeyID != 1 {
		t.Errorf("current key: %+v", r)
	}
	// Key 0 removed: its tags are now bad, not missing.
	dropped := &Signer{Keys: []Key{{ID: 1, Secret: secret1}}, Current: 1, Now: atDay(20001)}
	if r := dropped.Verify(oldTag); r.Status != StatusBad || r.Reason != ReasonUnknownKey {
		t.Errorf("dropped key: %+v", r)
	}
	// Same ID, different secret: MAC mismatch.
	replaced := &Signer{Keys: []Key{{ID: 0, Secret: secret1}}, Now: atDay(20001)}
	if r := replaced.Verify(oldTag); r.Status != StatusBad || r.Reason != ReasonMAC {
		t.Errorf("replaced key: %+v", r)
	}
	// A configured key shorter than MinKeyLen never verifies anything.
	weak := &Signer{Keys: []Key{{ID: 0, Secret: []byte("short")}}, Now: atDay(20001)}
	if r := weak.Verify(oldTag); r.Status != StatusBad {
		t.Errorf("weak key: %+v", r)
	}
}

func TestVerifyStatuses(t *testing.T) {
	s := newSigner(20000)
	good, err := s.Sign("user@example.org")
	if err != nil {
		t.Fatal(err)
	}
	flip := func(addr string, i int) string {
		b := []byte(addr)
		if b[i] == '0' {
			b[i] = '1'
		} else {
			b[i] = '0'
		}
		return string(b)
	}
	macAt := strings.Index(good, "prvs=") + 5 + 4
	tests := []struct {
		addr     string
		want     Status
		reason   string
		original string
	}{
		{good, StatusOK, "", "user@example.org"},
		{strings.Replace(good, "user", "usex", 1), StatusBad, ReasonMAC, "usex@example.org"},
		{strings.Replace(good, "example.org", "example.net", 1), StatusBad, ReasonMAC, "user@example.net"},
		{flip(good, macAt), StatusBad, ReasonMAC, "user@example.org"},
		{flip(good, macAt+5), StatusBad, ReasonMAC, "user@example.org"},
		{flip(good, macAt-1), StatusBad, ReasonMAC, "user@example.org"}, // day changed
		{strings.Replace(good, "prvs=0", "prvs=5", 1), StatusBad, ReasonUnknownKey, "user@example.org"},
		{"user@example.org", StatusMissing, "", "user@example.org"},
		{"<user@example.org>", StatusMissing, "", "user@example.org"},
		{"user+news@example.org", StatusMissing, "", "user+news@example.org"},
		{"", StatusMissing, "", ""},
		{"<>", StatusMissing, "", ""},
		{"postmaster", StatusMissing, "", "postmaster"},
		{`"user+prvs=0123abcdef"@example.org`, StatusMissing, "", `"user+prvs=0123abcdef"@example.org`},
		{"prvs=zz=user@example.org", StatusBad, ReasonMalformed, "prvs=zz=user@example.org"},
		{"user+prvs=0123@example.org", StatusBad, ReasonMalformed, "user+prvs=0123@example.org"},
		{"user+prvs=0123abcdeZ@example.org", StatusBad, ReasonMalformed, "user+prvs=0123abcdeZ@example.org"},
		{strings.Repeat("x", 2000) + "+prvs=0123abcdef@example.org", StatusBad, ReasonMalformed, ""},
		{strings.Repeat("x", 2000) + "@example.org", StatusMissing, "", ""},
	}
	for _, tt := range tests {
		r := s.Verify(tt.addr)
		if r.Status != tt.want || r.Reason != tt.reason || (tt.original != "" && r.Original != tt.original) {
			t.Errorf("Verify(%.40q) = %s %q %.40q, want %s %q %q", tt.addr, r.Status, r.Reason, r.Original, tt.want, tt.reason, tt.original)
		}
		if (r.Status == StatusMissing || r.Reason == ReasonMalformed) && (r.KeyID != -1 || r.Day != -1) {
			t.Errorf("Verify(%.40q): KeyID %d Day %d for no tag", tt.addr, r.KeyID, r.Day)
		}
	}
}

func TestSignErrors(t *testing.T) {
	s := newSigner(20000)
	for _, addr := range []string{"", "<>", "user", "prvs=0123abcdef=@x", "@example.org", "user@", `"a b"@example.org`, strings.Repeat("a", 2000) + "@x.org"} {
		if got, err := s.Sign(addr); err == nil {
			t.Errorf("Sign(%.40q) = %q, want error", addr, got)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Signer
		want string // substring of the error; "" for none
	}{
		{"ok", Signer{Keys: []Key{{ID: 3, Secret: secret0}}, Current: 3}, ""},
		{"no keys", Signer{}, "no keys"},
		{"id range", Signer{Keys: []Key{{ID: 10, Secret: secret0}}, Current: 10}, "out of range"},
		{"negative id", Signer{Keys: []Key{{ID: -1, Secret: secret0}}, Current: -1}, "out of range"},
		{"duplicate", Signer{Keys: []Key{{ID: 1, Secret: secret0}, {ID: 1, Secret: secret1}}, Current: 1}, "twice"},
		{"short", Signer{Keys: []Key{{ID: 0, Secret: []byte("0123456789")}}}, "at least 16"},
		{"current missing", Signer{Keys: []Key{{ID: 0, Secret: secret0}}, Current: 2}, "current key 2"},
		{"lifetime", Signer{Keys: []Key{{ID: 0, Secret: secret0}}, Lifetime: 400 * 24 * time.Hour}, "lifetime"},
		{"negative lifetime", Signer{Keys: []Key{{ID: 0, Secret: secret0}}, Lifetime: -time.Hour}, "lifetime"},
		{"syntax", Signer{Keys: []Key{{ID: 0, Secret: secret0}}, Syntax: 7}, "syntax"},
		{"delimiter", Signer{Keys: []Key{{ID: 0, Secret: secret0}}, Delimiter: "="}, "delimiter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
			if _, serr := tt.s.Sign("u@example.org"); serr == nil {
				t.Error("Sign succeeded with an invalid signer")
			}
			for _, k := range tt.s.Keys {
				if strings.Contains(err.Error(), string(k.Secret)) {
					t.Errorf("error contains a secret: %v", err)
				}
			}
		})
	}
	// All problems at once.
	bad := Signer{Keys: []Key{{ID: 11, Secret: []byte("x")}}, Lifetime: -1}
	if err := bad.Validate(); err == nil || strings.Count(err.Error(), "\n") < 3 {
		t.Errorf("Validate() = %v, want every problem", err)
	}
}

func TestNoSecretInOutput(t *testing.T) {
	s := &Signer{Keys: []Key{{ID: 0, Secret: secret0}, {ID: 1, Secret: secret1}}, Current: 1}
	outs := []string{
		s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v", s, s, s), fmt.Sprintf("%v %+v %#v", *s, *s, *s),
		fmt.Sprint(s.Keys), fmt.Sprintf("%#v %+v", s.Keys[0], s.Keys), fmt.Sprint(s.Verify("x+prvs=0000000000@y")),
	}
	for _, out := range outs {
		for _, sec := range [][]byte{secret0, secret1} {
			if strings.Contains(out, string(sec)) || strings.Contains(out, fmt.Sprint(sec)) || strings.Contains(out, hex.EncodeToString(sec)) {
				t.Errorf("output shows a secret: %s", out)
			}
		}
	}
}

func TestStatusString(t *testing.T) {
	want := map[Status]string{StatusOK: "ok", StatusMissing: "missing", StatusBad: "bad", StatusExpired: "expired", Status(42): "unknown"}
	for s, w := range want {
		if s.String() != w {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), w)
		}
	}
}

func TestConcurrent(t *testing.T) {
	s := newSigner(20000)
	done := make(chan bool)
	for i := 0; i < 4; i++ {
		go func(i int) {
			defer func() { done <- true }()
			for j := 0; j < 200; j++ {
				addr := fmt.Sprintf("u%d.%d@example.org", i, j)
				signed, err := s.Sign(addr)
				if err != nil || s.Verify(signed).Status != StatusOK {
					t.Errorf("%s: %v", addr, err)
					return
				}
			}
		}(i)
	}
	for i := 0; i < 4; i++ {
		<-done
	}
}
