package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

// Compiled is the configuration turned into the types the program uses.
type Compiled struct {
	Settings   policy.Settings
	Zones      []dnsbl.Zone
	SocketMode os.FileMode
	OnError    policy.Action
	BATVKeys   []batv.Key // secrets: never print
	BATVSyntax batv.Syntax
	BATVScope  batv.Scope
	// SelfWatch is self_watch compiled: nil while no egress is configured.
	SelfWatch *SelfWatchPlan
	// Redis is the sent log's Redis deployment (backend redis), with its
	// passwords read from their files and TLS loaded: never print.
	Redis sent.RedisOptions
}

// Values of ndr_suppression.sendmail.
const (
	SendmailOff         = "off"          // recipients are never rewritten under Sendmail
	SendmailCaseVariant = "case-variant" // re-added with the domain in the other case (milter/sendmail.go)
)

// Validate reports every problem; it is Compile without the result.
func (c *Config) Validate() Problems {
	_, ps := c.Compile()
	return ps
}

// Compile checks every key and converts the configuration.
func (c *Config) Compile() (*Compiled, Problems) {
	var ps Problems
	bad := func(key, format string, a ...any) { ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(format, a...)}) }
	out := &Compiled{Settings: policy.DefaultSettings()}
	s := &out.Settings

	if _, _, err := milter.ParseAddress(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if c.InternalBounce.Listen != "" {
		if _, _, err := milter.ParseAddress(c.InternalBounce.Listen); err != nil {
			bad("internal_bounce.listen", "%v", err)
		}
		if c.InternalBounce.Listen == c.Listen {
			bad("internal_bounce.listen", "must differ from listen (the two roles need their own sockets)")
		}
	}
	switch a, err := policy.ParseAction(c.InternalBounce.Action); {
	case err != nil:
		bad("internal_bounce.action", "%v", err)
	case a != policy.Discard && a != policy.Quarantine:
		bad("internal_bounce.action", "%q is not allowed for Postfix's own bounces: a reject or tempfail makes Postfix retry or lose the bounce log; use discard or quarantine", c.InternalBounce.Action)
	default:
		s.InternalBounceAction = a
	}
	if m, err := strconv.ParseUint(c.Socket.Mode, 8, 32); err != nil || m > 0o777 {
		bad("socket.mode", "%q is not an octal file mode such as 0660", c.Socket.Mode)
	} else {
		out.SocketMode = os.FileMode(m)
		if m&0o007 != 0 {
			bad("socket.mode", "%s lets every local user talk to the milter; use 0660 with socket.group", c.Socket.Mode)
		}
	}
	if m, err := policy.ParseMode(c.Mode); err != nil {
		bad("mode", "%v", err)
	} else {
		s.Mode = m
	}
	switch strings.ToLower(c.OnError) {
	case "accept", "":
		out.OnError = policy.Accept
	case "tempfail":
		out.OnError = policy.Tempfail
	default:
		bad("on_error", "%q: want accept (mail flows, protection lapses) or tempfail (mail waits)", c.OnError)
	}
	for i, d := range c.LocalDomains {
		if !validDomain(d) {
			bad(fmt.Sprintf("local_domains[%d]", i), "%q is not a domain name", d)
		}
		s.LocalDomains = append(s.LocalDomains, strings.ToLower(strings.TrimSuffix(d, ".")))
	}
	s.TrustedNetworks = nil
	for i, n := range c.TrustedNetworks {
		if p, err := parsePrefix(n); err != nil {
			bad(fmt.Sprintf("trusted_networks[%d]", i), "%v", err)
		} else {
			s.TrustedNetworks = append(s.TrustedNetworks, p)
		}
	}
	for i, r := range c.Relays {
		if p, err := parsePrefix(r); err == nil {
			s.RelayNets = append(s.RelayNets, p)
		} else if validDomain(strings.TrimPrefix(r, ".")) {
			s.RelayHosts = append(s.RelayHosts, strings.ToLower(strings.TrimSuffix(r, ".")))
		} else {
			bad(fmt.Sprintf("relays[%d]", i), "%q is neither a host name, a .domain nor an address or CIDR", r)
		}
	}
	if c.Resolver != "system" && c.Resolver != "" {
		for _, srv := range strings.Split(c.Resolver, ",") {
			host := strings.TrimSpace(srv)
			if h, _, err := splitHostPortLoose(host); err == nil {
				host = h
			}
			if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil {
				bad("resolver", "%q: want system or IP[:port][,IP[:port]…] (a resolver is named by address)", c.Resolver)
				break
			}
		}
	}
	for i, n := range c.Allowlist.ClientNetworks {
		if p, err := parsePrefix(n); err != nil {
			bad(fmt.Sprintf("allowlist.client_networks[%d]", i), "%v", err)
		} else {
			s.Allow.ClientNets = append(s.Allow.ClientNets, p)
		}
	}
	for _, l := range []struct {
		key  string
		in   []string
		dest *[]string
	}{{"allowlist.senders", c.Allowlist.Senders, &s.Allow.Senders}, {"allowlist.recipients", c.Allowlist.Recipients, &s.Allow.Recipients},
		{"no_bounces", c.NoBounces, &s.NoBounces}, {"batv.sign_exempt", c.BATV.SignExempt, &s.SignExempt}} {
		for i, a := range l.in {
			if !validAddrOrDomain(a) {
				bad(fmt.Sprintf("%s[%d]", l.key, i), "%q: want user@domain, @domain or domain", a)
			}
			*l.dest = append(*l.dest, strings.ToLower(a))
		}
	}

	// DNSBL
	positive(&ps, "dnsbl.timeout", c.DNSBL.Timeout.D())
	positive(&ps, "dnsbl.min_ttl", c.DNSBL.MinTTL.D())
	positive(&ps, "dnsbl.max_ttl", c.DNSBL.MaxTTL.D())
	if c.DNSBL.MaxTTL < c.DNSBL.MinTTL {
		bad("dnsbl.max_ttl", "%s is below dnsbl.min_ttl %s", c.DNSBL.MaxTTL, c.DNSBL.MinTTL)
	}
	if c.DNSBL.CacheSize < 0 {
		bad("dnsbl.cache_size", "must not be negative")
	}
	for i, z := range c.DNSBL.Zones {
		key := fmt.Sprintf("dnsbl.zones[%d]", i)
		var zone dnsbl.Zone
		var err error
		switch v := z.(type) {
		case string:
			zone, err = dnsbl.ParseZoneSpec(v)
		case map[string]any:
			var zc dnsbl.ZoneConfig
			if err = mapstructure.Decode(v, &zc); err == nil {
				zone, err = zc.Compile()
			}
		default:
			err = fmt.Errorf("want a line like \"zone=127.0.0.2*6 senders=bounce\" or a map with zone, filter, weight, senders")
		}
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		out.Zones = append(out.Zones, zone)
	}

	// Thresholds and weights
	th := c.Thresholds
	for _, t := range []struct {
		key string
		v   int
	}{{"thresholds.tag", th.Tag}, {"thresholds.quarantine", th.Quarantine}, {"thresholds.reject", th.Reject}} {
		if t.v < 0 {
			bad(t.key, "must be 0 (off) or positive")
		}
	}
	if th.Quarantine > 0 && th.Tag > 0 && th.Quarantine < th.Tag {
		bad("thresholds.quarantine", "%d is below thresholds.tag %d", th.Quarantine, th.Tag)
	}
	if th.Reject > 0 && th.Quarantine > 0 && th.Reject < th.Quarantine {
		bad("thresholds.reject", "%d is below thresholds.quarantine %d", th.Reject, th.Quarantine)
	}
	s.Thresholds = policy.Thresholds{Tag: th.Tag, Quarantine: th.Quarantine, Reject: th.Reject}
	known := policy.DefaultWeights()
	for name, w := range c.Weights {
		if _, ok := known[name]; !ok {
			bad("weights."+name, "unknown evidence (known: %s; DNSBL weights are set on each zone)", strings.Join(slices.Sorted(maps.Keys(known)), ", "))
			continue
		}
		s.Weights[name] = w
	}

	// BATV
	b := c.BATV
	if syn, err := batv.ParseSyntax(b.Syntax); err != nil {
		bad("batv.syntax", "%v", err)
	} else {
		out.BATVSyntax = syn
	}
	if b.Delimiter == "" || len(b.Delimiter) != 1 || strings.ContainsAny(b.Delimiter, "@=\" ") {
		bad("batv.delimiter", "%q: want one character such as + (the same as Postfix recipient_delimiter)", b.Delimiter)
	}
	if b.Lifetime.D() < 24*time.Hour || b.Lifetime.D() > batv.MaxLifetime {
		bad("batv.lifetime", "%s: want between 1d and %dd", b.Lifetime, int(batv.MaxLifetime/(24*time.Hour)))
	}
	if b.GraceUntil != "" {
		t, err := time.Parse("2006-01-02", b.GraceUntil)
		if err != nil {
			bad("batv.grace_until", "%q: want a date YYYY-MM-DD", b.GraceUntil)
		}
		out.BATVScope.GraceUntil = t
	}
	s.GraceWeight = b.GraceWeight
	for i, d := range b.Domains {
		if !validDomain(d) {
			bad(fmt.Sprintf("batv.domains[%d]", i), "%q is not a domain name", d)
		} else if !slices.Contains(s.LocalDomains, strings.ToLower(d)) {
			bad(fmt.Sprintf("batv.domains[%d]", i), "%q is not in local_domains", d)
		}
		out.BATVScope.Domains = append(out.BATVScope.Domains, strings.ToLower(d))
	}
	if b.Enabled {
		if len(b.Keys) == 0 {
			bad("batv.keys", "BATV is enabled but no key is configured: add {id: 0, file: /etc/backscatter-milter/batv.key}")
		}
		if len(s.LocalDomains) == 0 {
			bad("local_domains", "BATV is enabled but no local domain is configured")
		}
		haveCurrent := false
		for i, k := range b.Keys {
			key := fmt.Sprintf("batv.keys[%d]", i)
			if k.ID < 0 || k.ID > 9 {
				bad(key+".id", "%d: key numbers are 0-9", k.ID)
				continue
			}
			// A key whose file cannot be read is still listed: its file
			// is the one error, not current_key as well.
			haveCurrent = haveCurrent || k.ID == b.CurrentKey
			secret, err := batv.LoadKeyFile(k.File)
			if err != nil {
				bad(key+".file", "%v", err)
				continue
			}
			out.BATVKeys = append(out.BATVKeys, batv.Key{ID: k.ID, Secret: secret})
		}
		if len(b.Keys) > 0 && !haveCurrent {
			bad("batv.current_key", "%d is not among batv.keys", b.CurrentKey)
		}
	}

	// NDR suppression
	s.NDR = policy.NDR{Enabled: c.NDR.Enabled, UnknownIsUnauthenticated: c.NDR.UnknownIsUnauthenticated, StripSuccessDSN: c.NDR.StripSuccessDSN}
	switch c.NDR.Require {
	case "spf-or-dkim":
	case "spf-fail":
		s.NDR.SPFFailOnly = true
	default:
		bad("ndr_suppression.require", "%q: want spf-or-dkim (suppress unless SPF passes or an aligned DKIM signature verifies) or spf-fail (suppress only on SPF fail)", c.NDR.Require)
	}
	switch c.NDR.Sendmail {
	case SendmailOff:
	case SendmailCaseVariant:
		if _, _, err := net.SplitHostPort(c.NDR.SendmailSMTP); err != nil {
			bad("ndr_suppression.sendmail_smtp", "%q: want host:port of the Sendmail whose EHLO must offer DSN", c.NDR.SendmailSMTP)
		}
		if c.NDR.SendmailCheckInterval.D() <= 0 {
			bad("ndr_suppression.sendmail_check_interval", "%s: want a positive duration", c.NDR.SendmailCheckInterval)
		}
	default:
		bad("ndr_suppression.sendmail", "%q: want off (no recipient rewrite under Sendmail) or case-variant (re-add recipients with the domain in the other case; docs/sendmail.md)", c.NDR.Sendmail)
	}

	// Sent log
	switch c.SentLog.Backend {
	case "embedded":
		if c.SentLog.Path == "" || !strings.HasPrefix(c.SentLog.Path, "/") {
			bad("sent_log.path", "%q: want an absolute path", c.SentLog.Path)
		}
	case "redis":
		out.Redis = compileRedis(&c.SentLog.Redis, bad)
	case "memory":
	default:
		bad("sent_log.backend", "%q: want embedded, redis or memory", c.SentLog.Backend)
	}
	if c.SentLog.TTL.D() < time.Hour {
		bad("sent_log.ttl", "%s: want at least 1h (bounces arrive days later)", c.SentLog.TTL)
	}

	out.SelfWatch = compileSelfWatch(&c.SelfWatch, bad)

	// Limits, log, metrics
	if c.Limits.BodyBytes < 4096 || c.Limits.BodyBytes > 64<<20 {
		bad("limits.body_bytes", "%d: want 4096 to 67108864", c.Limits.BodyBytes)
	}
	s.BodyMax = c.Limits.BodyBytes
	if c.Limits.HeaderBytes < 4096 || c.Limits.HeaderBytes > 64<<20 {
		bad("limits.header_bytes", "%d: want 4096 to 67108864", c.Limits.HeaderBytes)
	}
	positive(&ps, "limits.timeout", c.Limits.Timeout.D())
	if c.Limits.MaxConnections < 1 || c.Limits.MaxConnections > 100000 {
		bad("limits.max_connections", "%d: want 1 to 100000 (default %d)", c.Limits.MaxConnections, milter.DefaultMaxConnections)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		bad("log.format", "%q: want json or console", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if _, ok := SyslogFacility(c.Log.Syslog); c.Log.Syslog != "" && !ok {
		bad("log.syslog", "%q: want a syslog facility (%s), or empty for none", c.Log.Syslog, strings.Join(slices.Sorted(maps.Keys(syslogFacilities)), ", "))
	}
	if c.Metrics.Listen != "" {
		if _, _, err := splitHostPortLoose(c.Metrics.Listen); err != nil {
			bad("metrics.listen", "%q: want host:port, or empty to disable", c.Metrics.Listen)
		}
	}
	positive(&ps, "shutdown_timeout", c.ShutdownTimeout.D())
	for _, e := range c.Quarantine.Validate() {
		bad("quarantine."+e.Key, "%s", e.Msg)
	}
	return out, ps
}

func positive(ps *Problems, key string, d time.Duration) {
	if d <= 0 {
		*ps = append(*ps, Problem{Key: key, Msg: "must be a positive duration"})
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR network", s)
}

func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") && d != "localhost" {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func validAddrOrDomain(a string) bool {
	if d, ok := strings.CutPrefix(a, "@"); ok {
		return validDomain(d)
	}
	if i := strings.LastIndexByte(a, '@'); i > 0 {
		return validDomain(a[i+1:])
	}
	return validDomain(a)
}

func splitHostPortLoose(s string) (string, string, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.HasSuffix(s, "]") {
		return s, "", fmt.Errorf("no port")
	}
	host, port := s[:i], s[i+1:]
	if _, err := strconv.Atoi(port); err != nil {
		return "", "", fmt.Errorf("bad port")
	}
	return strings.Trim(host, "[]"), port, nil
}
