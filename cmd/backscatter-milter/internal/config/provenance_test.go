package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/policy/stamp"
)

func TestProvenanceConfig(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Provenance.Stamp.Enabled || c.Provenance.Stamp.Header != stamp.DefaultHeader || c.Provenance.Stamp.Lifetime.D() != 30*24*time.Hour ||
		!c.Provenance.DKIM || !c.Provenance.OriginSPF {
		t.Fatalf("defaults: %+v", c.Provenance)
	}

	// The stamp needs batv.keys even with BATV off, and loads them.
	p := write(t, "local_domains: [example.org]\nprovenance: { stamp: { enabled: true } }\n")
	_, err = Load(p, nil)
	ps, _ := AsProblems(err)
	if len(ps) != 1 || ps[0].Key != "batv.keys" || !strings.Contains(ps[0].Msg, "provenance.stamp") {
		t.Fatalf("stamp without keys: %v", err)
	}
	key := filepath.Join(t.TempDir(), "k")
	os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	p = write(t, "local_domains: [Example.org]\nbatv: { keys: [{ id: 0, file: "+key+" }] }\nprovenance: { stamp: { enabled: true } }\n")
	c, err = Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	comp, _ := c.Compile()
	if len(comp.BATVKeys) != 1 || !slices.Equal(comp.DKIMDomains, []string{"example.org"}) {
		t.Fatalf("keys %d, dkim domains %v", len(comp.BATVKeys), comp.DKIMDomains)
	}

	p = write(t, `
provenance:
  stamp: { enabled: true, header: "From", lifetime: 400d }
  dkim_domains: [mail.example.org, "not a domain"]
  origin_spf: maybe
`)
	_, err = Load(p, nil)
	ps, _ = AsProblems(err)
	var keys []string
	for _, p := range ps {
		keys = append(keys, p.Key)
	}
	for _, want := range []string{"provenance.stamp.header", "provenance.stamp.lifetime", "provenance.dkim_domains[1]", "provenance.origin_spf", "batv.keys"} {
		if !slices.Contains(keys, want) {
			t.Errorf("%s not reported; got %v", want, keys)
		}
	}
	p = write(t, "provenance: { dkim_domains: [Mail.Example.org.] }\n")
	c, err = Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if comp, _ := c.Compile(); !slices.Equal(comp.DKIMDomains, []string{"mail.example.org"}) {
		t.Fatalf("dkim_domains: %v", comp.DKIMDomains)
	}
}
