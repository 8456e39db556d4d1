package dnsbl

import (
	"fmt"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/backscatter-milter/backscatter-milter/internal/problem"
)

// Config is the dnsbl section of the configuration, as the operator
// writes it; Compile checks it.
type Config struct {
	Timeout        time.Duration
	MinTTL         time.Duration
	MaxTTL         time.Duration
	CacheSize      int
	HealthInterval time.Duration
	FetchTXT       bool
	// Zones are one-line postscreen specs ("ips.backscatterer.org=127.0.0.2*6
	// senders=bounce") or maps with zone, filter, weight and senders.
	Zones []any
}

// Compile checks the section and returns its zones, in order. Every
// problem names its key within the section ("max_ttl", "zones[2]").
func (c Config) Compile() ([]Zone, problem.List) {
	var ps problem.List
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"timeout", c.Timeout}, {"min_ttl", c.MinTTL}, {"max_ttl", c.MaxTTL}} {
		if d.v <= 0 {
			ps.Add(d.key, "must be a positive duration")
		}
	}
	if c.MaxTTL < c.MinTTL {
		ps.Add("max_ttl", "%s is below min_ttl %s", c.MaxTTL, c.MinTTL)
	}
	if c.CacheSize < 0 {
		ps.Add("cache_size", "must not be negative")
	}
	var zones []Zone
	for i, z := range c.Zones {
		zone, err := compileZone(z)
		if err != nil {
			ps.Add(fmt.Sprintf("zones[%d]", i), "%v", err)
			continue
		}
		zones = append(zones, zone)
	}
	return zones, ps
}

// compileZone reads one zone, written either way.
func compileZone(z any) (Zone, error) {
	switch v := z.(type) {
	case string:
		return ParseZoneSpec(v)
	case map[string]any:
		var zc ZoneConfig
		if err := mapstructure.Decode(v, &zc); err != nil {
			return Zone{}, err
		}
		return zc.Compile()
	}
	return Zone{}, fmt.Errorf("want a line like \"zone=127.0.0.2*6 senders=bounce\" or a map with zone, filter, weight, senders")
}
