package dnsbl

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseZoneSpec(t *testing.T) {
	tests := []struct {
		spec    string
		name    string
		filter  string
		weight  int
		senders Senders
		str     string // String(); "" means same as spec
	}{
		{"zen.spamhaus.org", "zen.spamhaus.org", "", 1, SendersAny, ""},
		{"zen.spamhaus.org*3", "zen.spamhaus.org", "", 3, SendersAny, ""},
		{"Zen.Spamhaus.ORG.=127.0.0.[2..11]*3", "zen.spamhaus.org", "127.0.0.[2..11]", 3, SendersAny, "zen.spamhaus.org=127.0.0.[2..11]*3"},
		{"bl.test=127.0.[0;2;4..6].1", "bl.test", "127.0.[0;2;4..6].1", 1, SendersAny, ""},
		{"list.dnswl.org=127.0.[0..255].[1..3]*-2", "list.dnswl.org", "127.0.[0..255].[1..3]", -2, SendersAny, ""},
		{"ips.backscatterer.org=127.0.0.2*6", "ips.backscatterer.org", "127.0.0.2", 6, SendersBounce, ""},
		{"ips.backscatterer.org=127.0.0.2*6 senders=bounce", "ips.backscatterer.org", "127.0.0.2", 6, SendersBounce, "ips.backscatterer.org=127.0.0.2*6"},
		{"ips.backscatterer.org senders=any", "ips.backscatterer.org", "", 1, SendersAny, ""},
		{"bl.test=127.0.0.[5]*0 senders=BOUNCE", "bl.test", "127.0.0.5", 0, SendersBounce, "bl.test=127.0.0.5*0 senders=bounce"},
		{"  bl.test*+2\t senders=any ", "bl.test", "", 2, SendersAny, "bl.test*2"},
		{"my-backscatter.example=127.0.0.[2;4]", "my-backscatter.example", "127.0.0.[2;4]", 1, SendersBounce, ""},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			z, err := ParseZoneSpec(tt.spec)
			if err != nil {
				t.Fatalf("ParseZoneSpec: %v", err)
			}
			if z.Name != tt.name || z.Filter.String() != tt.filter || z.Weight != tt.weight || z.Senders != tt.senders {
				t.Errorf("got %q %q %d %q, want %q %q %d %q", z.Name, z.Filter, z.Weight, z.Senders, tt.name, tt.filter, tt.weight, tt.senders)
			}
			want := tt.str
			if want == "" {
				want = tt.spec
			}
			if z.String() != want {
				t.Errorf("String() = %q, want %q", z.String(), want)
			}
			z2, err := ParseZoneSpec(z.String())
			if err != nil || !reflect.DeepEqual(z, z2) {
				t.Errorf("round trip: %+v %v, want %+v", z2, err, z)
			}
		})
	}
}

func TestParseZoneSpecErrors(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"bl.test*x", `weight "x" is not an integer`},
		{"bl.test*", `weight "" is not an integer`},
		{"bl.test*1.5", `weight "1.5" is not an integer`},
		{"bl.test*99999999", "outside"},
		{"bl.test=127.0.0.[2..1]", "octet range 2..1 is empty"},
		{"bl.test=127.0.0.256", `"256" is not an octet`},
		{"bl.test=127.0.0.-1", `"-1" is not an octet`},
		{"bl.test=127.0.0.+1", `"+1" is not an octet`},
		{"bl.test=127.0.0", "want four octets"},
		{"bl.test=127.0.0.1.1", "want four octets"},
		{"bl.test=127.0.0.[2", "'[' without ']'"},
		{"bl.test=127.0.0.2]", "']' without '['"},
		{"bl.test=127.0.0.[[2]]", "nested"},
		{"bl.test=127.0.0.[]", "empty list"},
		{"bl.test=127.0.0.[2;]", "missing number"},
		{"bl.test=127.0.0.[2..]", "missing number"},
		{"bl.test=127.0.0.[2]x", "text after"},
		{"bl.test=127..0.1", "empty octet"},
		{"bl.test=", "empty filter"},
		{"=127.0.0.2", "zone name is empty"},
		{"bl..test", "empty label"},
		{"bl.te st", "not key=value"},
		{"bl.test/x", "not allowed"},
		{"bl.test senders=all", `senders "all"`},
		{"bl.test senders=", "senders is empty"},
		{"bl.test senders=any senders=bounce", "senders given twice"},
		{"bl.test ttl=5", `unknown option "ttl"`},
		{strings.Repeat("a", 64) + ".test", "longer than 63"},
		{strings.Repeat("abcdefgh.", 25) + "test", "too long"},
		{"bl.test=" + strings.Repeat("1", 2000), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			z, err := ParseZoneSpec(tt.spec)
			if err == nil {
				t.Fatalf("ParseZoneSpec(%q) = %+v, want error containing %q", tt.spec, z, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	tests := []struct {
		filter string
		yes    []string
		no     []string
	}{
		{"", []string{"127.0.0.2", "127.1.2.3", "127.255.255.254"}, []string{"128.0.0.2", "10.0.0.1", "::1"}},
		{"127.0.0.[2..11]", []string{"127.0.0.2", "127.0.0.11", "127.0.0.4"}, []string{"127.0.0.1", "127.0.0.12", "127.0.1.2"}},
		{"127.0.[0;2;4..6].1", []string{"127.0.0.1", "127.0.2.1", "127.0.5.1", "127.0.6.1"}, []string{"127.0.1.1", "127.0.3.1", "127.0.7.1", "127.0.0.2"}},
		{"127.0.0.2", []string{"127.0.0.2"}, []string{"127.0.0.3"}},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range tt.yes {
			if !f.Match(netip.MustParseAddr(a)) {
				t.Errorf("filter %q does not match %s", tt.filter, a)
			}
		}
		for _, a := range tt.no {
			if f.Match(netip.MustParseAddr(a)) {
				t.Errorf("filter %q matches %s", tt.filter, a)
			}
		}
	}
}

func TestZoneConfig(t *testing.T) {
	w := -3
	z, err := ZoneConfig{Zone: "list.dnswl.org", Filter: "127.0.[0..255].[1..3]", Weight: &w}.Compile()
	if err != nil || z.String() != "list.dnswl.org=127.0.[0..255].[1..3]*-3" {
		t.Fatalf("Compile = %v %v", z, err)
	}
	z, err = ZoneConfig{Zone: "ips.backscatterer.org"}.Compile()
	if err != nil || z.Weight != 1 || z.Senders != SendersBounce {
		t.Fatalf("defaults: %+v %v", z, err)
	}
	if _, err := (ZoneConfig{Zone: "bl.test", Senders: "sometimes"}).Compile(); err == nil {
		t.Error("bad senders accepted")
	}
	if _, err := (ZoneConfig{Filter: "127.0.0.2"}).Compile(); err == nil {
		t.Error("missing zone accepted")
	}
	var tz Zone
	if err := tz.UnmarshalText([]byte("bl.test=127.0.0.[2..3]*4")); err != nil || tz.Weight != 4 {
		t.Fatalf("UnmarshalText: %+v %v", tz, err)
	}
	if b, _ := tz.MarshalText(); string(b) != "bl.test=127.0.0.[2..3]*4" {
		t.Errorf("MarshalText = %q", b)
	}
	if err := tz.UnmarshalText([]byte("bl.test*x")); err == nil {
		t.Error("UnmarshalText accepted a bad spec")
	}
}

func FuzzParseZoneSpec(f *testing.F) {
	for _, s := range []string{
		"zen.spamhaus.org=127.0.0.[2..11]*3",
		"bl.test=127.0.[0;2;4..6].1",
		"list.dnswl.org=127.0.[0..255].[1..3]*-2",
		"ips.backscatterer.org=127.0.0.2*6 senders=bounce",
		"bl.test*x", "bl.test=127.0.0.[2..1]", "bl.test=[", "a=1.2.3.4*-0 senders=any",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z, err := ParseZoneSpec(s)
		if err != nil {
			return
		}
		z2, err := ParseZoneSpec(z.String())
		if err != nil {
			t.Fatalf("%q parsed as %q, which does not parse: %v", s, z.String(), err)
		}
		if !reflect.DeepEqual(z, z2) {
			t.Fatalf("%q: round trip %+v != %+v", s, z2, z)
		}
		if z2.String() != z.String() {
			t.Fatalf("String not stable: %q vs %q", z.String(), z2.String())
		}
	})
}
