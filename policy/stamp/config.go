package stamp

import (
	"fmt"
	"strings"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/problem"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
)

// Config is the provenance.stamp section as the operator writes it. Its
// keys are batv.keys (checked and read by the batv section).
type Config struct {
	Enabled  bool
	Header   string
	Lifetime time.Duration
}

// Check reports the section's problems, keys within the section.
func (c Config) Check() problem.List {
	var ps problem.List
	if !c.Enabled {
		return ps
	}
	if err := headerName(c.Header); err != nil {
		ps.Add("header", "%q: %v", c.Header, err)
	}
	if c.Lifetime <= 0 || c.Lifetime > batv.MaxLifetime {
		ps.Add("lifetime", "%s: want more than 0 and at most %dd (the day number wraps)", c.Lifetime, int(batv.MaxLifetime/(24*time.Hour)))
	}
	return ps
}

// headerName accepts an RFC 5322 field name that is not one the stamp
// covers, or another header with a meaning of its own.
func headerName(n string) error {
	if n == "" {
		return fmt.Errorf("empty")
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("not a header field name (printable ASCII without ':' or spaces)")
		}
	}
	for _, taken := range []string{"Message-ID", "Date", "From", "X-Backscatter", "DKIM-Signature", "Received"} {
		if strings.EqualFold(n, taken) {
			return fmt.Errorf("that field has another meaning; use e.g. %s", DefaultHeader)
		}
	}
	return nil
}
