package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// AccessProblems checks, as the user running it, that the files and
// directories the daemon will open can be opened: the sent log's
// directory, log.file, the directories of unix sockets. (BATV key files
// are read by Compile already.) `config check --as USER` runs it as the
// service user, so root sees what that user will see.
func (c *Config) AccessProblems() Problems {
	var ps Problems
	add := func(key string, err error) {
		if err != nil {
			ps = append(ps, Problem{Key: key, Msg: err.Error()})
		}
	}
	if c.SentLog.Backend == "embedded" && strings.HasPrefix(c.SentLog.Path, "/") {
		add("sent_log.path", canWriteFile(c.SentLog.Path))
	}
	if c.Log.File != "" {
		add("log.file", canWriteFile(c.Log.File))
	}
	for _, l := range []struct{ key, spec string }{{"listen", c.Listen}, {"internal_bounce.listen", c.InternalBounce.Listen}} {
		if path, ok := strings.CutPrefix(l.spec, "unix:"); ok && path != "" {
			add(l.key, canCreateIn(filepath.Dir(path)))
		}
	}
	return ps
}

// canWriteFile: an existing file must be writable; a missing one must be
// creatable in its directory (or the first existing directory above it,
// which the daemon creates the rest of).
func canWriteFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return fmt.Errorf("%s is a directory", path)
	case err == nil:
		if err := syscall.Access(path, rwOK); err != nil {
			return fmt.Errorf("%s: cannot write: %v", path, err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return canCreateIn(filepath.Dir(path))
	}
	return fmt.Errorf("cannot reach %s: %v", path, unwrapPath(err))
}

// canCreateIn: files can be made in dir, or in the first existing
// directory above it.
func canCreateIn(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			if err := syscall.Access(d, wxOK); err != nil {
				return fmt.Errorf("cannot create files in %s: %v", d, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			// Searching a parent was refused: say so for the first one.
			return fmt.Errorf("%s: %v", d, unwrapPath(err))
		}
		if d == filepath.Dir(d) {
			return fmt.Errorf("%s does not exist", dir)
		}
	}
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// access(2) modes: read+write a file, write+search a directory.
const (
	rwOK = 0x4 | 0x2
	wxOK = 0x2 | 0x1
)
