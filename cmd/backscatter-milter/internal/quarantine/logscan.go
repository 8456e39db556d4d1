package quarantine

import (
	"fmt"
	"os"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/report"
)

// scanVerdicts calls fn for every verdict and event line of one log file
// (plain or gzip). Broken lines are skipped, as report skips them.
func scanVerdicts(name string, fn func(*report.Line)) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	err = report.EachLine(f, func(b []byte) {
		if l, err := report.ParseLine(b); err == nil {
			fn(&l)
		}
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
