package mailheader

import (
	"reflect"
	"testing"
)

func TestSplit(t *testing.T) {
	block := " leading continuation\nFrom: a@example.org\r\nSubject: one\n  two\r\n\tthree\nnot a field\n  its continuation\nDate : Mon, 1 Dec 2026\n\nBody: not header\n"
	got := Split([]byte(block))
	want := []string{
		"From: a@example.org\r\n",
		"Subject: one\r\n  two\r\n\tthree\r\n",
		"not a field\r\n  its continuation\r\n",
		"Date : Mon, 1 Dec 2026\r\n",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Split = %q\nwant %q", got, want)
	}
	names := []string{"From", "Subject", "", "Date"}
	values := []string{"a@example.org", "one two three", "", "Mon, 1 Dec 2026"}
	for i, f := range got {
		if Name(f) != names[i] {
			t.Errorf("Name(%q) = %q, want %q", f, Name(f), names[i])
		}
		if names[i] != "" && Value(f) != values[i] {
			t.Errorf("Value(%q) = %q, want %q", f, Value(f), values[i])
		}
	}
	if Split(nil) != nil || Split([]byte("\r\nFrom: x\r\n")) != nil {
		t.Error("an empty block has fields")
	}
	if Name("Bad Name: x\r\n") != "" || Value("no colon\r\n") != "" {
		t.Error("a line that is no field got a name or value")
	}
}

func FuzzSplit(f *testing.F) {
	f.Add([]byte("From: a\r\n b\r\nX: y\n\nbody"))
	f.Add([]byte(" \n:\n\t\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, fld := range Split(b) {
			if len(fld) < 2 || fld[len(fld)-2:] != "\r\n" {
				t.Fatalf("field %q does not end in CRLF", fld)
			}
			if fld[0] == ' ' || fld[0] == '\t' {
				t.Fatalf("field %q starts with a continuation", fld)
			}
			Name(fld)
			Value(fld)
		}
	})
}
