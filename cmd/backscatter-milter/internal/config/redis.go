package config

import (
	"github.com/backscatter-milter/backscatter-milter/internal/secretfile"
	"github.com/backscatter-milter/backscatter-milter/policy/sent"
)

// compileRedis turns sent_log.redis into the store's options: topology,
// credentials read from their files (refused when others may read them)
// and the TLS configuration. Every problem is reported with its key.
func compileRedis(r *Redis, bad func(key, format string, a ...any)) sent.RedisOptions {
	o := sent.RedisOptions{
		Addrs: r.Addrs, MasterName: r.MasterName, Cluster: r.Cluster,
		Username: r.Username, Password: r.Password, SentinelUsername: r.SentinelUsername,
		DB: r.DB, Prefix: r.Prefix,
	}
	switch {
	case r.Addr != "" && len(r.Addrs) > 0:
		bad("sent_log.redis.addr", "give sent_log.redis.addrs only (addr is its older, one-server spelling)")
	case r.Addr != "":
		o.Addrs = []string{r.Addr}
	}
	if err := o.Validate(); err != nil {
		bad("sent_log.redis", "%v", err)
	}
	// Passwords: a file keeps the secret out of the configuration, the
	// process list and `config show`.
	if r.PasswordFile != "" {
		if r.Password != "" {
			bad("sent_log.redis.password_file", "give password or password_file, not both")
		}
		pw, err := secretfile.Line(r.PasswordFile, "redis password file", 0o007)
		if err != nil {
			bad("sent_log.redis.password_file", "%v", err)
		}
		o.Password = pw
	}
	if r.SentinelPasswordFile != "" {
		if r.MasterName == "" {
			bad("sent_log.redis.sentinel_password_file", "only used with master_name (Sentinel)")
		}
		pw, err := secretfile.Line(r.SentinelPasswordFile, "redis sentinel password file", 0o007)
		if err != nil {
			bad("sent_log.redis.sentinel_password_file", "%v", err)
		}
		o.SentinelPassword = pw
	}
	t := r.TLS
	if !t.Enabled && (t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != "") {
		bad("sent_log.redis.tls.enabled", "tls settings are given but tls.enabled is false")
	}
	if t.Enabled {
		c, err := sent.TLSFiles{CA: t.CA, Cert: t.Cert, Key: t.Key, ServerName: t.ServerName}.Config()
		if err != nil {
			bad("sent_log.redis.tls", "%v", err)
		}
		o.TLS = c
	}
	return o
}
