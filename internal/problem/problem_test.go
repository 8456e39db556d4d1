package problem

import "testing"

func TestList(t *testing.T) {
	var l List
	l.Add("timeout", "must be a positive duration")
	l.Add("zones[1]", "%q is not a zone", "x")
	under := l.Under("dnsbl")
	if under[0].Key != "dnsbl.timeout" || under[1].Key != "dnsbl.zones[1]" || under[1].Msg != `"x" is not a zone` {
		t.Errorf("Under: %+v", under)
	}
	if l[0].Key != "timeout" {
		t.Error("Under changed the original list")
	}
	want := "2 configuration errors:\n  dnsbl.timeout: must be a positive duration\n  dnsbl.zones[1]: \"x\" is not a zone"
	if got := under.Error(); got != want {
		t.Errorf("Error:\n%s\nwant\n%s", got, want)
	}
}
