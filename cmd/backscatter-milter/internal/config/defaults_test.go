package config

import (
	"reflect"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

// TestDefaultsYAMLIsThePackagesDefaults: the embedded defaults.yaml (what
// `config show` prints and the docs list) compiles to the defaults the
// packages declare, so the two homes of each default cannot drift apart.
func TestDefaultsYAMLIsThePackagesDefaults(t *testing.T) {
	c, err := Load(write(t, "{}\n"), nil) // an empty file: nothing but the embedded defaults
	if err != nil {
		t.Fatalf("embedded defaults: %v", err)
	}
	comp, ps := c.Compile()
	if len(ps) > 0 {
		t.Fatalf("embedded defaults: %v", ps)
	}
	if want := policy.DefaultSettings(); !reflect.DeepEqual(comp.Settings, want) {
		got, wv := reflect.ValueOf(comp.Settings), reflect.ValueOf(want)
		for i := range got.NumField() {
			if !reflect.DeepEqual(got.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("policy.Settings.%s: defaults.yaml gives %+v, policy.DefaultSettings %+v",
					got.Type().Field(i).Name, got.Field(i).Interface(), wv.Field(i).Interface())
			}
		}
	}
	for _, d := range []struct {
		key       string
		yaml, pkg any
	}{
		{"dnsbl.timeout", c.DNSBL.Timeout.D(), dnsbl.DefaultTimeout},
		{"dnsbl.min_ttl", c.DNSBL.MinTTL.D(), dnsbl.DefaultMinTTL},
		{"dnsbl.max_ttl", c.DNSBL.MaxTTL.D(), dnsbl.DefaultMaxTTL},
		{"dnsbl.cache_size", c.DNSBL.CacheSize, dnsbl.DefaultCacheSize},
		{"batv.lifetime", c.BATV.Lifetime.D(), batv.DefaultLifetime},
		{"batv.delimiter", c.BATV.Delimiter, batv.DefaultDelimiter},
		{"batv.syntax", comp.BATVSyntax, batv.SyntaxSubaddress},
		{"sent_log.ttl", c.SentLog.TTL.D(), sent.DefaultTTL},
		{"limits.header_bytes", c.Limits.HeaderBytes, milter.DefaultMaxHeaderBytes},
		{"limits.timeout", c.Limits.Timeout.D(), milter.DefaultTimeout},
		{"sent_log.redis.prefix", c.SentLog.Redis.Prefix, sent.DefaultRedisPrefix},
	} {
		if d.yaml != d.pkg {
			t.Errorf("%s: defaults.yaml gives %v, the package's default is %v", d.key, d.yaml, d.pkg)
		}
	}
	if len(comp.Zones) != 1 || comp.Zones[0].Senders != dnsbl.DefaultSenders(comp.Zones[0].Name) {
		t.Errorf("default zones %+v: a backscatter list is asked in safe mode by default", comp.Zones)
	}
}
