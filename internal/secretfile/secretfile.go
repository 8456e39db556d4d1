// Package secretfile reads small secrets (keys, passwords) from files the
// way a daemon must: without blocking on a FIFO or a device, only from a
// regular file, refusing modes that let others read it, and never putting
// the secret into an error.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Read returns the contents of path, at most max bytes. It never blocks on
// what path names: a FIFO, a socket or a device is refused from Lstat (or,
// behind a symlink, after an open with O_NONBLOCK, which returns at once
// for a FIFO without a writer), so a wrong path cannot hang a start, a
// check or a reload. It refuses a file whose permission bits intersect
// forbidden (0o077: group or others may read; 0o007: others may read),
// checked on the open file. what names the secret in errors ("batv: key
// file", "redis password file"); no error contains the secret.
func Read(path, what string, max int, forbidden os.FileMode) ([]byte, error) {
	lst, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if t := lst.Mode().Type(); t != 0 && t != fs.ModeSymlink {
		return nil, fmt.Errorf("%s %s is not a regular file (%s)", what, path, t)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file (%s)", what, path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); perm&forbidden != 0 {
		return nil, fmt.Errorf("%s %s has mode %04o: %s; run chmod %o %s",
			what, path, perm, who(forbidden), perm&^forbidden, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(data) > max {
		return nil, fmt.Errorf("%s %s is larger than %d bytes; is it the right file?", what, path, max)
	}
	return data, nil
}

// ErrEmpty is returned by Line for a file that holds nothing but white space.
var ErrEmpty = errors.New("secret file is empty")

// Line reads a one-line secret (a password) and trims the trailing line
// ending; inner white space is kept, it may be part of the secret.
func Line(path, what string, forbidden os.FileMode) (string, error) {
	data, err := Read(path, what, 4096, forbidden)
	if err != nil {
		return "", err
	}
	for len(data) > 0 && (data[len(data)-1] == '\n' || data[len(data)-1] == '\r') {
		data = data[:len(data)-1]
	}
	if len(data) == 0 {
		return "", fmt.Errorf("%s %s: %w", what, path, ErrEmpty)
	}
	return string(data), nil
}

func who(forbidden os.FileMode) string {
	if forbidden&0o070 != 0 {
		return "group or others can access it"
	}
	return "others can access it"
}
