package dnsbl

import (
	"strings"
	"testing"
	"time"
)

func TestConfigCompile(t *testing.T) {
	good := Config{Timeout: 2 * time.Second, MinTTL: time.Minute, MaxTTL: time.Hour, CacheSize: 10,
		Zones: []any{"bl.test=127.0.0.2*6 senders=bounce", map[string]any{"zone": "wl.test", "weight": -3}}}
	zones, ps := good.Compile()
	if len(ps) != 0 || len(zones) != 2 || zones[0].Weight != 6 || zones[1].Name != "wl.test" || zones[1].Weight != -3 {
		t.Fatalf("zones %+v, problems %v", zones, ps)
	}
	bad := Config{Timeout: 0, MinTTL: time.Hour, MaxTTL: time.Minute, CacheSize: -1, Zones: []any{"bl.test=127.0.0.2*six", 42}}
	_, ps = bad.Compile()
	got := map[string]string{}
	for _, p := range ps {
		got[p.Key] = p.Msg
	}
	for _, k := range []string{"timeout", "max_ttl", "cache_size", "zones[0]", "zones[1]"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no problem for %s: %v", k, ps)
		}
	}
	if !strings.Contains(got["zones[0]"], "six") {
		t.Errorf("zone problem does not say what is wrong: %q", got["zones[0]"])
	}
}
