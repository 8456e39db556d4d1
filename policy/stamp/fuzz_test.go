package stamp

import (
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that what it accepts is in
// range, and that it reads its own output back.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"1.0.007." + strings.Repeat("0f", 16), "1.9.999." + strings.Repeat("AB", 16),
		" 1 . 3 . 042 .\r\n\t" + strings.Repeat("ab", 16), "", "1...", "1.0.007.", "9.9.999.zz", strings.Repeat(".", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		st, err := Parse(v)
		if err != nil {
			return
		}
		if st.Version != Version || st.KeyID < 0 || st.KeyID > 9 || st.Day < 0 || st.Day > 999 {
			t.Fatalf("out of range: %+v from %q", st, v)
		}
		back, err := Parse(st.String())
		if err != nil || back != st {
			t.Fatalf("%q: re-parse of %q = %+v, %v", v, st.String(), back, err)
		}
	})
}

// FuzzCheck feeds arbitrary header blocks through the whole inbound path:
// it must never panic, and a block holding a stamp must report it.
func FuzzCheck(f *testing.F) {
	s := newStamper(20000)
	v, _ := s.Sign(msg)
	f.Add("Message-ID: " + msg.MessageID + "\nDate: " + msg.Date + "\nFrom: " + msg.From + "\n" + DefaultHeader + ": " + v + "\n")
	f.Add(DefaultHeader + ":\n\t" + v + "\r\n")
	f.Add("From: =?x?q?\xff?= <a@b>\nDate: \x00\n" + DefaultHeader + ": 1.0.0.0\n")
	f.Add(":\n \n\t\n")
	f.Fuzz(func(t *testing.T, hdr string) {
		r, found := s.Check([]byte(hdr), DefaultHeader)
		if !found {
			if _, st := ReadHeader([]byte(hdr), DefaultHeader); len(st) != 0 {
				t.Fatal("stamp fields read but not found")
			}
			return
		}
		if r.Status == StatusOK && !strings.Contains(strings.ToLower(hdr), strings.ToLower(DefaultHeader)) {
			t.Fatalf("ok without a stamp header: %q", hdr)
		}
	})
}
