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

	"github.com/backscatter-milter/backscatter-milter/dnsbl"
	"github.com/backscatter-milter/backscatter-milter/internal/problem"
	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

// Values of ndr_suppression.sendmail.
const (
	SendmailOff         = "off"          // recipients are never rewritten under Sendmail
	SendmailCaseVariant = "case-variant" // re-added with the domain in the other case (milter/sendmail.go)
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
	// DKIMDomains are the d= domains whose signatures prove a returned
	// original ours: provenance.dkim_domains, else local_domains.
	DKIMDomains []string
}

// Validate reports every problem; it is Compile without the result.
func (c *Config) Validate() Problems {
	_, ps := c.Compile()
	return ps
}

// Compile checks every key and converts the configuration. Each package
// checks its own section (policy, dnsbl, batv, sent); what is left here is
// the process's own: sockets, resolver, limits, log, metrics.
func (c *Config) Compile() (*Compiled, Problems) {
	var ps Problems
	bad := ps.Add
	out := &Compiled{}
	var sub problem.List
	out.Settings, sub = c.policy().Settings()
	ps = append(ps, sub...)
	out.Zones, sub = c.DNSBL.config().Compile()
	ps = append(ps, sub.Under("dnsbl")...)
	var setup batv.Setup
	bc := c.BATV.config()
	bc.LoadKeys = c.Provenance.Stamp.Enabled // the stamp signs with BATV's keys
	setup, sub = bc.Compile(out.Settings.LocalDomains)
	ps = append(ps, sub.Under("batv")...)
	out.BATVKeys, out.BATVSyntax, out.BATVScope = setup.Keys, setup.Syntax, setup.Scope
	if c.BATV.Enabled && len(out.Settings.LocalDomains) == 0 {
		bad("local_domains", "BATV is enabled but no local domain is configured")
	}
	c.compileProvenance(out, bad)
	c.compileSockets(out, bad)
	c.checkResolver(bad)
	c.compileSentLog(out, bad)
	c.checkSendmail(bad)
	out.SelfWatch = compileSelfWatch(&c.SelfWatch, bad)
	for _, e := range c.Quarantine.Validate() {
		bad("quarantine."+e.Key, "%s", e.Msg)
	}
	c.checkProcess(bad)
	return out, ps
}

// policy is the policy's part of the configuration.
func (c *Config) policy() policy.Config {
	return policy.Config{
		Mode: c.Mode, LocalDomains: c.LocalDomains, TrustedNetworks: c.TrustedNetworks, Relays: c.Relays,
		Allowlist: policy.AllowlistConfig{ClientNetworks: c.Allowlist.ClientNetworks, Senders: c.Allowlist.Senders,
			Recipients: c.Allowlist.Recipients},
		Thresholds:  policy.Thresholds{Tag: c.Thresholds.Tag, Quarantine: c.Thresholds.Quarantine, Reject: c.Thresholds.Reject},
		Weights:     c.Weights,
		GraceWeight: c.BATV.GraceWeight,
		NDR: policy.NDRConfig{Enabled: c.NDR.Enabled, Require: c.NDR.Require,
			UnknownIsUnauthenticated: c.NDR.UnknownIsUnauthenticated, StripSuccessDSN: c.NDR.StripSuccessDSN},
		BodyBytes:            c.Limits.BodyBytes,
		InternalBounceAction: c.InternalBounce.Action,
		NoBounces:            c.NoBounces,
		SignExempt:           c.BATV.SignExempt,
	}
}

func (d DNSBL) config() dnsbl.Config {
	return dnsbl.Config{Timeout: d.Timeout.D(), MinTTL: d.MinTTL.D(), MaxTTL: d.MaxTTL.D(), CacheSize: d.CacheSize,
		HealthInterval: d.HealthInterval.D(), FetchTXT: d.FetchTXT, Zones: d.Zones}
}

func (b BATV) config() batv.Config {
	keys := make([]batv.KeyFile, len(b.Keys))
	for i, k := range b.Keys {
		keys[i] = batv.KeyFile{ID: k.ID, File: k.File}
	}
	return batv.Config{Enabled: b.Enabled, Syntax: b.Syntax, Delimiter: b.Delimiter, Keys: keys, CurrentKey: b.CurrentKey,
		Lifetime: b.Lifetime.D(), GraceUntil: b.GraceUntil, Domains: b.Domains}
}

// compileSockets checks the milter listeners, the socket mode and on_error.
func (c *Config) compileSockets(out *Compiled, bad func(key, format string, a ...any)) {
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
	if m, err := strconv.ParseUint(c.Socket.Mode, 8, 32); err != nil || m > 0o777 {
		bad("socket.mode", "%q is not an octal file mode such as 0660", c.Socket.Mode)
	} else {
		out.SocketMode = os.FileMode(m)
		if m&0o007 != 0 {
			bad("socket.mode", "%s lets every local user talk to the milter; use 0660 with socket.group", c.Socket.Mode)
		}
	}
	switch strings.ToLower(c.OnError) {
	case "accept", "":
		out.OnError = policy.Accept
	case "tempfail":
		out.OnError = policy.Tempfail
	default:
		bad("on_error", "%q: want accept (mail flows, protection lapses) or tempfail (mail waits)", c.OnError)
	}
}

// checkResolver checks that the resolver is named by address.
func (c *Config) checkResolver(bad func(key, format string, a ...any)) {
	if c.Resolver == "system" || c.Resolver == "" {
		return
	}
	for _, srv := range strings.Split(c.Resolver, ",") {
		host := strings.TrimSpace(srv)
		if h, _, err := splitHostPortLoose(host); err == nil {
			host = h
		}
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil {
			bad("resolver", "%q: want system or IP[:port][,IP[:port]…] (a resolver is named by address)", c.Resolver)
			return
		}
	}
}

// compileSentLog checks the sent log's backend and its settings.
func (c *Config) compileSentLog(out *Compiled, bad func(key, format string, a ...any)) {
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
}

// checkSendmail checks how NDR suppression works with Sendmail.
func (c *Config) checkSendmail(bad func(key, format string, a ...any)) {
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
}

// checkProcess checks the limits of one milter event, the log, the metrics
// listener and the shutdown deadline.
func (c *Config) checkProcess(bad func(key, format string, a ...any)) {
	if c.Limits.HeaderBytes < 4096 || c.Limits.HeaderBytes > 64<<20 {
		bad("limits.header_bytes", "%d: want 4096 to 67108864", c.Limits.HeaderBytes)
	}
	positive(bad, "limits.timeout", c.Limits.Timeout.D())
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
	positive(bad, "shutdown_timeout", c.ShutdownTimeout.D())
}

func positive(bad func(key, format string, a ...any), key string, d time.Duration) {
	if d <= 0 {
		bad(key, "must be a positive duration")
	}
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
