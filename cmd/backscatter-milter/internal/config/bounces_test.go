package config

import (
	"slices"
	"testing"
)

// no_bounces and batv.sign_exempt reach the policy settings, lowercased,
// and a bad entry is named by its key.
func TestNoBouncesAndSignExempt(t *testing.T) {
	p := write(t, `
local_domains: [example.org]
no_bounces: [NoReply@example.org, "@receive-only.example.org"]
batv: { sign_exempt: [lists.remote.test, challenge@remote.test] }
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	comp, ps := c.Compile()
	if len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	if s := comp.Settings; !slices.Equal(s.NoBounces, []string{"noreply@example.org", "@receive-only.example.org"}) ||
		!slices.Equal(s.SignExempt, []string{"lists.remote.test", "challenge@remote.test"}) {
		t.Errorf("settings: no_bounces %v sign_exempt %v", s.NoBounces, s.SignExempt)
	}

	p = write(t, "no_bounces: [\"not an address\"]\nbatv: { sign_exempt: [\"@\"] }\n")
	_, err = Load(p, nil)
	got, ok := AsProblems(err)
	if !ok {
		t.Fatalf("error %v is not a problem list", err)
	}
	var keys []string
	for _, pr := range got {
		keys = append(keys, pr.Key)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"batv.sign_exempt[0]", "no_bounces[0]"}) {
		t.Errorf("problems %v", got)
	}
}
