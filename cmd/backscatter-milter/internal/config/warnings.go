package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/backscatter-milter/backscatter-milter/milter"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
)

// DefaultSocket is where the packaged milter listens: inside Debian's
// Postfix chroot (/var/spool/postfix), so a chrooted smtpd reaches it as
// unix:backscatter-milter/milter.sock. Mode 0660 and socket.group keep it
// to the MTA.
const DefaultSocket = "unix:/var/spool/postfix/backscatter-milter/milter.sock"

// keyRotationMargin is how long before a BATV key can replay old tags
// `config check` starts to warn.
const keyRotationMargin = 30 * 24 * time.Hour

// Warnings reports settings that are valid but let someone other than the
// MTA act as the MTA, expose the metrics, or let old BATV tags verify
// again. config check prints them; serve logs them at start and reload.
// now is the current time (key ages are measured from it).
func (c *Config) Warnings(now time.Time) Problems {
	var ws Problems
	warn := func(key, format string, a ...any) { ws = append(ws, Problem{Key: key, Msg: fmt.Sprintf(format, a...)}) }

	for _, l := range []struct{ key, spec string }{{"listen", c.Listen}, {"internal_bounce.listen", c.InternalBounce.Listen}} {
		network, address, err := milter.ParseAddress(l.spec)
		if err != nil || network != "tcp" || l.spec == "" {
			continue
		}
		host, _, _ := net.SplitHostPort(address)
		who := "every local user"
		if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
			who = "every local user and every host that can reach " + address
		}
		// The milter believes what the MTA says: the client address in
		// CONNECT and the SASL login in {auth_authen}. Whoever connects can
		// claim a trusted address or a login and get outbound treatment.
		gets := "its Message-IDs recorded in the sent log as ours (a later forged bounce quoting them passes as bounce:ours)"
		if c.BATV.Enabled {
			gets = "valid BATV signatures for any of your addresses and " + gets
		}
		warn(l.key, "%s is TCP: %s can connect and pose as the MTA (claim a trusted_networks address or a SASL login) and get %s; "+
			"use %s with socket.mode 0660 and socket.group (docs/security.md, \"The trust boundary\")", l.spec, who, gets, DefaultSocket)
	}
	if c.Metrics.Listen != "" {
		host, _, err := splitHostPortLoose(c.Metrics.Listen)
		ip, perr := netip.ParseAddr(host)
		if err == nil && (host != "localhost" && (perr != nil || !ip.IsLoopback())) {
			warn("metrics.listen", "%s is reachable beyond this host: /metrics describes your users' mail (senders' counts, evidence, DNSBL hits); bind it to 127.0.0.1 or put access control in front", c.Metrics.Listen)
		}
	}
	if c.BATV.Enabled {
		ws = append(ws, c.keyAgeWarnings(now)...)
	}
	return ws
}

// keyAgeWarnings warns about BATV keys old enough for their first tags to
// verify again: a tag carries its expiry day modulo 1000, so 1000 days
// after it was made it looks fresh for another lifetime. A key's age is
// its file's modification time (a key is written once, when it is made).
func (c *Config) keyAgeWarnings(now time.Time) Problems {
	var ws Problems
	lifetime := batv.LifetimeDays(c.BATV.Lifetime.D())
	replay := time.Duration(batv.DayWrap-lifetime) * 24 * time.Hour
	for i, k := range c.BATV.Keys {
		fi, err := os.Stat(k.File)
		if err != nil || !fi.Mode().IsRegular() {
			continue // Compile reports it
		}
		age := now.Sub(fi.ModTime())
		if age < replay-keyRotationMargin {
			continue
		}
		days := int(age / (24 * time.Hour))
		left := int((replay - age) / (24 * time.Hour))
		when := fmt.Sprintf("in %d days", left)
		if left <= 0 {
			when = "now"
		}
		what := "it is a retired key: remove it from batv.keys (its tags expired long ago)"
		if k.ID == c.BATV.CurrentKey {
			what = "make a new key, add it to batv.keys and make it batv.current_key (docs/operations.md, \"BATV key rotation\")"
			if len(c.BATV.Keys) == 1 {
				what = "it is the only key: " + what
			}
		}
		ws = append(ws, Problem{Key: fmt.Sprintf("batv.keys[%d].file", i), Msg: fmt.Sprintf(
			"key %d is %d days old (file mtime): BATV day numbers wrap every %d days, so its tags from %d days ago verify again %s; %s",
			k.ID, days, batv.DayWrap, batv.DayWrap-lifetime, when, what)})
	}
	return ws
}
