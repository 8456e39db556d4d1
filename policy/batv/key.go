package batv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MinKeyLen is the shortest secret accepted. Anything shorter makes the
// 24-bit MAC easier to forge than it needs to be.
const MinKeyLen = 16

// maxKeyFileLen bounds how much of a key file is read: a key is a short
// secret, and a large file means a wrong path.
const maxKeyFileLen = 4096

// Key is one signing secret. ID is the K digit written into tags (0–9), so
// retired keys keep verifying the tags they made until those expire.
type Key struct {
	ID     int
	Secret []byte
}

// String describes the key without its secret, so it is safe to log.
func (k Key) String() string {
	return fmt.Sprintf("batv key %d (%d bytes)", k.ID, len(k.Secret))
}

// GoString keeps %#v from printing the secret.
func (k Key) GoString() string { return k.String() }

// LoadKeyFile reads a secret from path. It refuses a file that group or
// others may read (any bit of mode 0o077), a file that is not a regular file,
// and a secret shorter than MinKeyLen after trailing newlines are trimmed.
// The error never contains key material.
//
// It never blocks on what path names: a FIFO, a socket or a device is
// refused from Lstat (or, behind a symlink, after an open with O_NONBLOCK,
// which returns at once for a FIFO without a writer), so a wrong path
// cannot hang config check, serve or a reload.
func LoadKeyFile(path string) ([]byte, error) {
	lst, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("batv: key file: %w", err)
	}
	if t := lst.Mode().Type(); t != 0 && t != fs.ModeSymlink {
		return nil, fmt.Errorf("batv: key file %s is not a regular file (%s)", path, lst.Mode().Type())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("batv: key file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the mode checked is the mode of
	// the file read.
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("batv: key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("batv: key file %s is not a regular file (%s)", path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("batv: key file %s has mode %04o: group or others can access it; run chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileLen+1))
	if err != nil {
		return nil, fmt.Errorf("batv: key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileLen {
		return nil, fmt.Errorf("batv: key file %s is larger than %d bytes; is it the right file?", path, maxKeyFileLen)
	}
	data = bytes.TrimRight(data, "\r\n")
	if len(data) < MinKeyLen {
		return nil, fmt.Errorf("batv: key file %s holds %d bytes, need at least %d", path, len(data), MinKeyLen)
	}
	return data, nil
}

var errNoKeys = errors.New("batv: no keys configured")
