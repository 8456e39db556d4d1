package policy_test

import (
	"go/build"
	"slices"
	"testing"
)

// TestLayering keeps the data flow README.md describes: policy asks DNSBL,
// BATV, the sent log and the return-path check through its own interfaces
// (wired in cmd), and nothing below policy imports policy or milter.
func TestLayering(t *testing.T) {
	const mod = "github.com/backscatter-milter/backscatter-milter/"
	for dir, forbidden := range map[string][]string{
		".":        {"dnsbl", "policy/batv", "policy/sent", "policy/auth", "milter", "internal/resolver"},
		"bounce":   {"policy", "milter", "dnsbl", "policy/batv", "policy/sent", "policy/auth"},
		"batv":     {"policy", "milter", "dnsbl", "policy/bounce", "policy/sent", "policy/auth"},
		"sent":     {"policy", "milter", "dnsbl", "policy/batv", "policy/auth"},
		"auth":     {"policy", "milter", "dnsbl", "policy/batv", "policy/sent", "policy/bounce"},
		"../dnsbl": {"policy", "milter", "policy/bounce", "policy/batv", "policy/sent", "policy/auth"},
	} {
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if dir == "." && !slices.Contains(pkg.Imports, mod+"policy/bounce") {
			t.Fatalf("policy's imports read as %v: the check would see nothing", pkg.Imports)
		}
		for _, f := range forbidden {
			if slices.Contains(pkg.Imports, mod+f) {
				t.Errorf("%s imports %s", pkg.ImportPath, f)
			}
		}
	}
}
