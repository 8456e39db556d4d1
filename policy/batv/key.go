package batv

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/backscatter-milter/backscatter-milter/internal/secretfile"
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
	data, err := secretfile.Read(path, "batv: key file", maxKeyFileLen, 0o077)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimRight(data, "\r\n")
	if len(data) < MinKeyLen {
		return nil, fmt.Errorf("batv: key file %s holds %d bytes, need at least %d", path, len(data), MinKeyLen)
	}
	return data, nil
}

var errNoKeys = errors.New("batv: no keys configured")
