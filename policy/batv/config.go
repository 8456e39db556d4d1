package batv

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/problem"
)

// Config is the batv section of the configuration, as the operator writes
// it; Compile checks it.
type Config struct {
	Enabled    bool
	Syntax     string // subaddress or standard
	Delimiter  string // the MTA's recipient delimiter
	Keys       []KeyFile
	CurrentKey int // the ID of the key that signs
	Lifetime   time.Duration
	GraceUntil string // YYYY-MM-DD; empty: no grace window
	Domains    []string
	// LoadKeys reads the key files even with BATV off: the outbound stamp
	// (policy/stamp) signs with the same keys.
	LoadKeys bool
}

// KeyFile names a key by its ID and the file holding its secret.
type KeyFile struct {
	ID   int
	File string
}

// Setup is a checked batv section: what the signer and the wiring need.
type Setup struct {
	Keys   []Key // secrets: never print; only read when BATV is enabled or LoadKeys is set
	Syntax Syntax
	Scope  Scope
}

// Compile checks the section and reads the key files when BATV is enabled
// (or LoadKeys is set).
// localDomains are the (checked, lowercased) local domains: Domains must be
// among them. Every problem names its key within the section.
func (c Config) Compile(localDomains []string) (Setup, problem.List) {
	var out Setup
	var ps problem.List
	if syn, err := ParseSyntax(c.Syntax); err != nil {
		ps.Add("syntax", "%v", err)
	} else {
		out.Syntax = syn
	}
	if len(c.Delimiter) != 1 || strings.ContainsAny(c.Delimiter, "@=\" ") {
		ps.Add("delimiter", "%q: want one character such as + (the same as Postfix recipient_delimiter)", c.Delimiter)
	}
	if c.Lifetime < day || c.Lifetime > MaxLifetime {
		ps.Add("lifetime", "%s: want between 1d and %dd", days(c.Lifetime), int(MaxLifetime/day))
	}
	if c.GraceUntil != "" {
		t, err := time.Parse("2006-01-02", c.GraceUntil)
		if err != nil {
			ps.Add("grace_until", "%q: want a date YYYY-MM-DD", c.GraceUntil)
		}
		out.Scope.GraceUntil = t
	}
	for i, d := range c.Domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if !slices.Contains(localDomains, d) {
			ps.Add(fmt.Sprintf("domains[%d]", i), "%q is not in local_domains", c.Domains[i])
		}
		out.Scope.Domains = append(out.Scope.Domains, d)
	}
	if !c.Enabled && !c.LoadKeys {
		return out, ps
	}
	if len(c.Keys) == 0 {
		who := "BATV is"
		if !c.Enabled {
			who = "the stamp (provenance.stamp) is"
		}
		ps.Add("keys", "%s enabled but no key is configured: add {id: 0, file: /etc/backscatter-milter/batv.key}", who)
	}
	haveCurrent := false
	for i, k := range c.Keys {
		key := fmt.Sprintf("keys[%d]", i)
		if k.ID < 0 || k.ID > 9 {
			ps.Add(key+".id", "%d: key numbers are 0-9", k.ID)
			continue
		}
		// A key whose file cannot be read is still listed: its file is the
		// one error, not current_key as well.
		haveCurrent = haveCurrent || k.ID == c.CurrentKey
		secret, err := LoadKeyFile(k.File)
		if err != nil {
			ps.Add(key+".file", "%v", err)
			continue
		}
		out.Keys = append(out.Keys, Key{ID: k.ID, Secret: secret})
	}
	if len(c.Keys) > 0 && !haveCurrent {
		ps.Add("current_key", "%d is not among keys", c.CurrentKey)
	}
	return out, ps
}

// days writes a whole number of days as "7d", anything else as Go does.
func days(d time.Duration) string {
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
