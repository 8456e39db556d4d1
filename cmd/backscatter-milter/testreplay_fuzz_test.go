package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadMTAMessage: any bytes give header fields a milter can take (a
// name without colon or line break, a value without CR) or an error,
// never a panic.
func FuzzReadMTAMessage(f *testing.F) {
	for _, name := range []string{"forged-bounce.eml", "real-bounce.eml", "ordinary.eml", "autoreply.eml"} {
		if b, err := os.ReadFile(filepath.Join(emlDir, name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("From MAILER-DAEMON Tue Mar  3 11:02:11 2026\nSubject: a\n\tb\n\nbody"))
	f.Add([]byte("Subject: no line end"))
	f.Add([]byte(" leading continuation\nSubject: x\n\n"))
	f.Add([]byte("Bad Name: x\n\n"))
	f.Add([]byte(":empty name\nSubject: x\n\n"))
	f.Add([]byte("Subject : spaced\r\n\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := readMTAMessage(raw)
		if err != nil {
			return
		}
		if len(m.fields) == 0 {
			t.Fatal("no error and no header field")
		}
		for _, fl := range m.fields {
			if fl.name == "" || strings.ContainsAny(fl.name, ":\r\n") {
				t.Fatalf("field name %q", fl.name)
			}
			if strings.Contains(fl.value, "\r") && strings.Contains(fl.value, "\r\n") {
				t.Fatalf("field %s keeps CRLF in %q", fl.name, fl.value)
			}
			if len(fl.value) > headerFieldLimit {
				t.Fatalf("field %s: %d bytes, over the limit", fl.name, len(fl.value))
			}
		}
	})
}
