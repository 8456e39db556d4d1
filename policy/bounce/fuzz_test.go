package bounce

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and keeps its invariants on
// any input. Seeds: the hand-written samples, and the corpus (read in
// place) when it is present.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(testdataDir, "*.eml"))
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
	})
}
