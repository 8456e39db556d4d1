package report

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// FuzzParseLine: any input gives a verdict, an event, ErrNotVerdict or a
// *MalformedError, never a panic; a verdict has a known stage, an event a
// known kind and a queue ID.
func FuzzParseLine(f *testing.F) {
	for _, l := range generate(5, 40, genStart) {
		f.Add(l.text)
	}
	for _, s := range []string{
		"", "{", "not json", `{"msg":"verdict"}`, `{"msg":"verdict","stage":"eom","action":"tag","ts":12345.5}`,
		`Mar  3 10:00:00 mx backscatter-milter[12]: {"msg":"verdict","stage":"rcpt","action":"reject","ts":"2026-03-03T10:00:00Z"}`,
		`{"msg":"verdict","stage":"eom","action":"accept","evidence":[{"name":1}]}`,
		`{"msg":"verdict","stage":"eom","action":"accept","ts":"yesterday"}`,
		`{"msg":"verdict","stage":"eom","action":"accept","direction":"sideways"}`,
		`{"msg":"quarantine","event":"released","queue_id":"4F1A2C0DE","operator":"alice","ts":"2026-03-03T10:00:00Z"}`,
		`{"msg":"quarantine","event":"exploded","queue_id":"4F1A2C0DE"}`,
		`{"msg":"quarantine","event":"deleted"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLine(b)
		var me *MalformedError
		switch {
		case err == nil && l.Event != "":
			if l.Stage != "" || l.QueueID == "" || l.Event != EventReleased && l.Event != EventDeleted {
				t.Fatalf("event %q with stage %q, queue ID %q", l.Event, l.Stage, l.QueueID)
			}
		case err == nil:
			switch l.Stage {
			case "rcpt", "eom", "callout", "internal-bounce":
			default:
				t.Fatalf("verdict with stage %q", l.Stage)
			}
		case errors.Is(err, ErrNotVerdict), errors.As(err, &me):
		default:
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
	})
}

// FuzzReport: a whole log of arbitrary bytes is read and rendered in every
// format without a panic, and every line is accounted for.
func FuzzReport(f *testing.F) {
	f.Add(joinLines(generate(6, 30, genStart)))
	f.Add([]byte("{\n\n{\"msg\":\"verdict\"\n\x1f\x8b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a := New(Options{Top: 3, Location: time.UTC})
		_ = a.Read(bytes.NewReader(b))
		r := a.Report()
		if r.Input.Verdicts+r.Input.Events+r.Input.Other+r.Input.Malformed+r.Input.OutsideRange+r.Input.NoTime != r.Input.Lines {
			t.Fatalf("lines not accounted for: %+v", r.Input)
		}
		for _, w := range []func(io.Writer) error{r.WriteText, r.WriteJSON, r.WriteHTML} {
			if err := w(io.Discard); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// BenchmarkRead measures log lines per second through parsing and counting.
func BenchmarkRead(b *testing.B) {
	lines := generate(7, 20000, genStart)
	data := joinLines(lines)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		a := New(Options{Location: time.UTC})
		if err := a.Read(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkWriteHTML(b *testing.B) {
	r := aggregate(b, joinLines(generate(8, 20000, genStart)), Options{})
	for b.Loop() {
		if err := r.WriteHTML(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
