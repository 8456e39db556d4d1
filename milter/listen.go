package milter

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SocketOptions are the owner settings of a unix socket.
type SocketOptions struct {
	Mode  os.FileMode // e.g. 0o660
	Group string      // name or numeric id; "" keeps the process group
}

// ParseAddress splits a milter socket spec the way Postfix and Sendmail
// write it: "inet:HOST:PORT", "inet6:[HOST]:PORT" (or "inet:[::1]:PORT"),
// "unix:/path" (also "local:/path"), or a bare "/path".
func ParseAddress(spec string) (network, address string, err error) {
	scheme, rest, ok := strings.Cut(spec, ":")
	if !ok || strings.HasPrefix(spec, "/") {
		if strings.HasPrefix(spec, "/") {
			return "unix", spec, nil
		}
		return "", "", fmt.Errorf("milter address %q: want inet:HOST:PORT or unix:/PATH", spec)
	}
	switch strings.ToLower(scheme) {
	case "unix", "local":
		if !filepath.IsAbs(rest) {
			return "", "", fmt.Errorf("milter address %q: a unix socket path must be absolute", spec)
		}
		return "unix", rest, nil
	case "inet", "inet6", "tcp":
		// Sendmail writes inet:PORT@HOST; accept it too.
		if port, host, ok := strings.Cut(rest, "@"); ok {
			rest = net.JoinHostPort(host, port)
		}
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("milter address %q: %v", spec, err)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return "", "", fmt.Errorf("milter address %q: bad port %q", spec, port)
		}
		return "tcp", net.JoinHostPort(host, port), nil
	}
	return "", "", fmt.Errorf("milter address %q: unknown scheme %q (want inet, inet6 or unix)", spec, scheme)
}

// Listen opens the listener for spec. A unix socket left behind by a dead
// process is replaced; one a live process still answers on is not (two
// milters on one socket would steal each other's connections).
func Listen(spec string, so SocketOptions) (net.Listener, error) {
	network, address, err := ParseAddress(spec)
	if err != nil {
		return nil, err
	}
	if network != "unix" {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, err
		}
		return quickAckListener{ln}, nil
	}
	if fi, err := os.Lstat(address); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("listen %s: a file that is not a socket is in the way", address)
		}
		if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another process is serving on this socket", address)
		}
		if err := os.Remove(address); err != nil {
			return nil, fmt.Errorf("listen %s: removing stale socket: %w", address, err)
		}
	}
	mode := so.Mode
	if mode == 0 {
		mode = 0o660
	}
	// Create the socket with no permissions for anyone, then open it up:
	// there is no moment at which the socket is wider than configured.
	old := syscall.Umask(0o777)
	ln, err := net.Listen("unix", address)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if so.Group != "" {
		gid, err := lookupGroup(so.Group)
		if err == nil {
			err = os.Chown(address, -1, gid)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen %s: socket group %q: %w", address, so.Group, err)
		}
	}
	if err := os.Chmod(address, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s: socket mode: %w", address, err)
	}
	return ln, nil
}

func lookupGroup(g string) (int, error) {
	if id, err := strconv.Atoi(g); err == nil {
		return id, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, errors.New("no such group")
	}
	return strconv.Atoi(grp.Gid)
}
