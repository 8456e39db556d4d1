package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadFile feeds arbitrary files to Load: it never panics, and a file
// it refuses gets a problem list or a FileError (the two forms `config
// check` prints), never anything else.
func FuzzLoadFile(f *testing.F) {
	f.Add(Defaults)
	f.Add([]byte("treshold: 5\ndnsbl: { timout: 1s }\nbatv: { keys: [{ id: 0, fiel: x }] }\n"))
	f.Add([]byte("mode: observe\nlisten: unix: /x\n"))
	f.Add([]byte("local_domains: [example.org\n"))
	f.Add([]byte("- a list\n- not a map\n"))
	f.Add([]byte("dnsbl: { timeout: soon, min_ttl: 2h, max_ttl: 1h }\nthresholds: { tag: x }\n"))
	f.Add([]byte("log: { syslog: mial, file: relative.log }\n"))
	f.Add([]byte("\t\x00\xff: ["))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, nil)
		if err == nil {
			if c == nil {
				t.Fatal("no configuration and no error")
			}
			return
		}
		var fe *FileError
		if ps, ok := AsProblems(err); ok {
			if len(ps) == 0 {
				t.Fatal("an empty problem list as an error")
			}
			c.AccessProblems() // must not panic on what was read
			return
		}
		if !errors.As(err, &fe) {
			t.Fatalf("error of type %T: %v", err, err)
		}
	})
}
