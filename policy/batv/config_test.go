package batv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigCompile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "batv.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	local := []string{"example.org", "example.net"}
	good := Config{Enabled: true, Syntax: "subaddress", Delimiter: "+", Keys: []KeyFile{{ID: 3, File: key}}, CurrentKey: 3,
		Lifetime: DefaultLifetime, GraceUntil: "2026-12-31", Domains: []string{"Example.ORG"}}
	s, ps := good.Compile(local)
	if len(ps) != 0 || len(s.Keys) != 1 || s.Keys[0].ID != 3 || !s.Scope.Applies("example.org") || s.Scope.Applies("example.net") ||
		!s.Scope.InGrace(time.Date(2026, 12, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("setup %+v, problems %v", s.Scope, ps)
	}
	bad := Config{Enabled: true, Syntax: "fancy", Delimiter: "@", Keys: []KeyFile{{ID: 12, File: key}, {ID: 1, File: filepath.Join(dir, "none")}},
		CurrentKey: 5, Lifetime: time.Hour, GraceUntil: "soon", Domains: []string{"other.example"}}
	_, ps = bad.Compile(local)
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Key] = true
		if strings.Contains(p.Msg, "0123456789abcdef") {
			t.Fatalf("a secret in a problem: %s", p.Msg)
		}
	}
	for _, k := range []string{"syntax", "delimiter", "lifetime", "grace_until", "domains[0]", "keys[0].id", "keys[1].file", "current_key"} {
		if !got[k] {
			t.Errorf("no problem for %s: %v", k, ps)
		}
	}
	if s, ps := (Config{Syntax: "subaddress", Delimiter: "+", Lifetime: DefaultLifetime, Keys: []KeyFile{{ID: 0, File: "/nonexistent"}}}).Compile(local); len(ps) != 0 || len(s.Keys) != 0 {
		t.Errorf("BATV off: key files are not read (%v, %d keys)", ps, len(s.Keys))
	}
}
