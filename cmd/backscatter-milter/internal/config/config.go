// Package config loads, validates and explains backscatter-milter's
// configuration: embedded defaults, then a YAML file, then environment
// (BACKSCATTER_…), then flags. Validation reports every bad key at once.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/quarantine"
	"github.com/backscatter-milter/backscatter-milter/internal/problem"
)

//go:embed defaults.yaml
var Defaults []byte

// DefaultPath is read when no --config is given and the file exists. Tests
// point it elsewhere, so that a package installed on the machine does not
// change what they read.
var DefaultPath = "/etc/backscatter-milter/config.yaml"

// EnvPrefix prefixes environment overrides: BACKSCATTER_DNSBL_TIMEOUT=1s.
const EnvPrefix = "BACKSCATTER"

// Config is the whole configuration. Field tags are the YAML keys.
type Config struct {
	Listen          string         `mapstructure:"listen"`
	Socket          Socket         `mapstructure:"socket"`
	InternalBounce  InternalBounce `mapstructure:"internal_bounce"`
	Mode            string         `mapstructure:"mode"`
	OnError         string         `mapstructure:"on_error"`
	LocalDomains    []string       `mapstructure:"local_domains"`
	TrustedNetworks []string       `mapstructure:"trusted_networks"`
	Relays          []string       `mapstructure:"relays"`
	Resolver        string         `mapstructure:"resolver"`
	Allowlist       Allowlist      `mapstructure:"allowlist"`
	NoBounces       []string       `mapstructure:"no_bounces"`
	DNSBL           DNSBL          `mapstructure:"dnsbl"`
	Thresholds      Thresholds     `mapstructure:"thresholds"`
	Weights         map[string]int `mapstructure:"weights"`
	BATV            BATV           `mapstructure:"batv"`
	NDR             NDR            `mapstructure:"ndr_suppression"`
	SentLog         SentLog        `mapstructure:"sent_log"`
	Provenance      Provenance     `mapstructure:"provenance"`
	Limits          Limits         `mapstructure:"limits"`
	Log             Log            `mapstructure:"log"`
	Metrics         Metrics        `mapstructure:"metrics"`
	SelfWatch       SelfWatch      `mapstructure:"self_watch"`
	ShutdownTimeout Duration       `mapstructure:"shutdown_timeout"`
	// Quarantine tells the quarantine command which MTA holds the mail
	// and how to reach its tools; the package that uses it validates it.
	Quarantine quarantine.Settings `mapstructure:"quarantine"`

	// Source says where the file part came from ("embedded defaults" or a path).
	Source string `mapstructure:"-"`
}

type Socket struct {
	Mode  string `mapstructure:"mode"`
	Group string `mapstructure:"group"`
}

type InternalBounce struct {
	Listen string `mapstructure:"listen"`
	Action string `mapstructure:"action"`
}

type Allowlist struct {
	ClientNetworks []string `mapstructure:"client_networks"`
	Senders        []string `mapstructure:"senders"`
	Recipients     []string `mapstructure:"recipients"`
}

type DNSBL struct {
	Timeout        Duration `mapstructure:"timeout"`
	MinTTL         Duration `mapstructure:"min_ttl"`
	MaxTTL         Duration `mapstructure:"max_ttl"`
	CacheSize      int      `mapstructure:"cache_size"`
	HealthInterval Duration `mapstructure:"health_interval"`
	FetchTXT       bool     `mapstructure:"fetch_txt"`
	Zones          []any    `mapstructure:"zones"` // one-line strings or {zone, filter, weight, senders}
}

type Thresholds struct {
	Tag        int `mapstructure:"tag"`
	Quarantine int `mapstructure:"quarantine"`
	Reject     int `mapstructure:"reject"`
}

type BATVKey struct {
	ID   int    `mapstructure:"id"`
	File string `mapstructure:"file"`
}

type BATV struct {
	Enabled     bool      `mapstructure:"enabled"`
	Syntax      string    `mapstructure:"syntax"`
	Delimiter   string    `mapstructure:"delimiter"`
	Keys        []BATVKey `mapstructure:"keys"`
	CurrentKey  int       `mapstructure:"current_key"`
	Lifetime    Duration  `mapstructure:"lifetime"`
	GraceUntil  string    `mapstructure:"grace_until"`
	GraceWeight int       `mapstructure:"grace_weight"`
	Domains     []string  `mapstructure:"domains"`
	SignExempt  []string  `mapstructure:"sign_exempt"`
}

type NDR struct {
	Enabled                  bool   `mapstructure:"enabled"`
	Require                  string `mapstructure:"require"`
	UnknownIsUnauthenticated bool   `mapstructure:"unknown_is_unauthenticated"`
	StripSuccessDSN          bool   `mapstructure:"strip_success_dsn"`
	// Sendmail is "off" or "case-variant" (docs/sendmail.md); SendmailSMTP
	// is the Sendmail address whose EHLO must list DSN for it to act,
	// checked at start and every SendmailCheckInterval.
	Sendmail              string   `mapstructure:"sendmail"`
	SendmailSMTP          string   `mapstructure:"sendmail_smtp"`
	SendmailCheckInterval Duration `mapstructure:"sendmail_check_interval"`
}

// Provenance configures the stateless proofs that a returned original is
// ours (policy/provenance.go).
type Provenance struct {
	Stamp       Stamp    `mapstructure:"stamp"`
	DKIM        bool     `mapstructure:"dkim"`
	DKIMDomains []string `mapstructure:"dkim_domains"`
	OriginSPF   bool     `mapstructure:"origin_spf"`
}

// Stamp is the outbound stamp header; its keys are batv.keys.
type Stamp struct {
	Enabled  bool     `mapstructure:"enabled"`
	Header   string   `mapstructure:"header"`
	Lifetime Duration `mapstructure:"lifetime"`
}

// Redis is sent_log.redis: one server, a Sentinel set or a Cluster.
type Redis struct {
	Addrs []string `mapstructure:"addrs"`
	// Addr is the older, one-server spelling of Addrs, still read so that
	// an upgrade keeps working; giving both is an error.
	Addr                 string   `mapstructure:"addr"`
	MasterName           string   `mapstructure:"master_name"`
	Cluster              bool     `mapstructure:"cluster"`
	Username             string   `mapstructure:"username"`
	Password             string   `mapstructure:"password"`
	PasswordFile         string   `mapstructure:"password_file"`
	SentinelUsername     string   `mapstructure:"sentinel_username"`
	SentinelPasswordFile string   `mapstructure:"sentinel_password_file"`
	DB                   int      `mapstructure:"db"`
	Prefix               string   `mapstructure:"prefix"`
	TLS                  RedisTLS `mapstructure:"tls"`
}

// RedisTLS is sent_log.redis.tls.
type RedisTLS struct {
	Enabled    bool   `mapstructure:"enabled"`
	CA         string `mapstructure:"ca"`
	Cert       string `mapstructure:"cert"`
	Key        string `mapstructure:"key"`
	ServerName string `mapstructure:"server_name"`
}

type SentLog struct {
	Backend string   `mapstructure:"backend"`
	Path    string   `mapstructure:"path"`
	TTL     Duration `mapstructure:"ttl"`
	Redis   Redis    `mapstructure:"redis"`
}

type Limits struct {
	BodyBytes      int      `mapstructure:"body_bytes"`
	HeaderBytes    int      `mapstructure:"header_bytes"`
	Timeout        Duration `mapstructure:"timeout"`
	MaxConnections int      `mapstructure:"max_connections"`
}

type Log struct {
	Format string `mapstructure:"format"`
	Level  string `mapstructure:"level"`
	File   string `mapstructure:"file"`
	Syslog string `mapstructure:"syslog"` // facility, e.g. mail; "" = no syslog
}

type Metrics struct {
	Listen string `mapstructure:"listen"`
}

// SelfWatch is self_watch: our own outbound addresses looked up in
// backscatter DNSBLs. Off while egress is empty.
type SelfWatch struct {
	Egress   []string `mapstructure:"egress"`
	Zones    []string `mapstructure:"zones"`
	Interval Duration `mapstructure:"interval"`
}

// Duration is a time.Duration that also reads "7d" and "30d".
type Duration time.Duration

func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string {
	t := time.Duration(d)
	if t >= 24*time.Hour && t%(24*time.Hour) == 0 {
		return strconv.Itoa(int(t/(24*time.Hour))) + "d"
	}
	return t.String()
}

// ParseDuration reads Go durations plus a whole-days form "7d".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("%q is not a duration (want e.g. 30s, 5m, 1h, 7d)", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 30s, 5m, 1h, 7d)", s)
	}
	return d, nil
}

var durationType = reflect.TypeOf(Duration(0))

func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		d, err := ParseDuration(v)
		return Duration(d), err
	case int:
		return Duration(time.Duration(v) * time.Second), nil
	case float64:
		return Duration(time.Duration(v * float64(time.Second))), nil
	}
	return data, nil
}

// Flags declares the command-line overrides on fs.
func Flags(fs *pflag.FlagSet) {
	fs.String("config", "", "configuration file (YAML); default "+DefaultPath+" if it exists, else embedded defaults")
	fs.String("listen", "", "milter socket: inet:HOST:PORT or unix:/PATH (overrides listen)")
	fs.String("mode", "", "enforce or observe (overrides mode)")
	fs.String("log-format", "", "json or console (overrides log.format)")
	fs.String("log-level", "", "debug, info, warn or error (overrides log.level)")
}

var flagKeys = map[string]string{"listen": "listen", "mode": "mode", "log-format": "log.format", "log-level": "log.level"}

// Load reads the configuration: defaults, file (explicit path, else
// DefaultPath if present), environment, flags (fs may be nil). It returns
// the configuration and every problem found; a nil error means valid.
func Load(path string, fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(Defaults)); err != nil {
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	source := "embedded defaults"
	if path == "" {
		if _, err := os.Stat(DefaultPath); err == nil {
			path = DefaultPath
		}
	}
	var problems Problems
	if path != "" {
		data, err := readConfigFile(path)
		if err != nil {
			return nil, err
		}
		if err := v.MergeConfig(bytes.NewReader(data)); err != nil {
			// readConfigFile parsed it already: this is not a YAML error.
			return nil, &FileError{Path: path, Msg: err.Error()}
		}
		source = path
		problems = append(problems, unknownKeys(data)...)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for _, k := range v.AllKeys() {
		_ = v.BindEnv(k) // AutomaticEnv alone does not reach nested keys in Unmarshal
	}
	if fs != nil {
		for flag, key := range flagKeys {
			if f := fs.Lookup(flag); f != nil && f.Changed {
				v.Set(key, f.Value.String())
			}
		}
	}
	var c Config
	err := v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(durationHook, mapstructure.StringToSliceHookFunc(","))
		dc.WeaklyTypedInput = true
	})
	var decoded Problems
	if err != nil {
		decoded = decodeProblems(err)
	}
	c.Source = source
	problems = append(problems, decoded...)
	problems = append(problems, withoutCascades(c.Validate(), decoded)...)
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Key < problems[j].Key })
		return &c, problems
	}
	return &c, nil
}

// Problem is one bad key; Problems, every bad key, is the error Load
// returns. Each package reports its own section's problems the same way.
type (
	Problem  = problem.Problem
	Problems = problem.List
)

// AsProblems extracts the problem list from an error returned by Load.
func AsProblems(err error) (Problems, bool) {
	var ps Problems
	ok := errors.As(err, &ps)
	return ps, ok
}

func decodeProblems(err error) Problems {
	var out Problems
	var walk func(error)
	walk = func(e error) {
		var de *mapstructure.DecodeError
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, sub := range j.Unwrap() {
				walk(sub)
			}
			return
		}
		if errors.As(e, &de) {
			out = append(out, Problem{Key: de.Name(), Msg: de.Unwrap().Error()})
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
			return
		}
		out = append(out, problemFromDecode(e.Error()))
	}
	walk(err)
	return out
}

func problemFromDecode(msg string) Problem {
	// mapstructure says: "'dnsbl.timeout' ..." — lift the key out.
	if i := strings.IndexByte(msg, '\''); i >= 0 {
		if j := strings.IndexByte(msg[i+1:], '\''); j >= 0 {
			return Problem{Key: msg[i+1 : i+1+j], Msg: strings.TrimSpace(msg[i+j+2:])}
		}
	}
	return Problem{Key: "(config)", Msg: msg}
}

// FromFlags loads the configuration named by fs's --config flag (declared
// by Flags) with fs's overrides, and compiles it. On error the
// configuration read so far is returned with the problems.
func FromFlags(fs *pflag.FlagSet) (*Config, *Compiled, error) {
	path, _ := fs.GetString("config")
	cfg, err := Load(path, fs)
	if err != nil {
		return cfg, nil, err
	}
	comp, _ := cfg.Compile()
	return cfg, comp, nil
}
