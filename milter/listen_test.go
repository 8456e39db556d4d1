package milter_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/backscatter-milter/backscatter-milter/milter"
)

func TestParseAddress(t *testing.T) {
	cases := []struct {
		spec, network, address string
		err                    string // substring of the error; "" = valid
	}{
		{"inet:127.0.0.1:8899", "tcp", "127.0.0.1:8899", ""},
		{"inet:localhost:8899", "tcp", "localhost:8899", ""},
		{"INET:127.0.0.1:8899", "tcp", "127.0.0.1:8899", ""},
		{"inet:8899@127.0.0.1", "tcp", "127.0.0.1:8899", ""}, // Sendmail's form
		{"inet6:[::1]:8899", "tcp", "[::1]:8899", ""},
		{"inet:[::1]:8899", "tcp", "[::1]:8899", ""},
		{"inet6:8899@::1", "tcp", "[::1]:8899", ""},
		{"tcp:127.0.0.1:0", "tcp", "127.0.0.1:0", ""},
		{"inet::8899", "tcp", ":8899", ""}, // all addresses
		{"unix:/run/backscatter-milter/milter.sock", "unix", "/run/backscatter-milter/milter.sock", ""},
		{"local:/run/m.sock", "unix", "/run/m.sock", ""},
		{"/run/m.sock", "unix", "/run/m.sock", ""},
		{"unix:run/m.sock", "", "", "must be absolute"},
		{"unix:./m.sock", "", "", "must be absolute"},
		{"run/m.sock", "", "", "want inet:HOST:PORT or unix:/PATH"},
		{"", "", "", "want inet:HOST:PORT or unix:/PATH"},
		{"inet:127.0.0.1", "", "", "missing port"},
		{"inet:127.0.0.1:99999", "", "", "bad port"},
		{"inet:127.0.0.1:-1", "", "", "bad port"},
		{"inet:127.0.0.1:smtp", "", "", "bad port"},
		{"inet:::1:8899", "", "", "too many colons"},
		{"udp:127.0.0.1:8899", "", "", "unknown scheme"},
	}
	for _, c := range cases {
		network, address, err := milter.ParseAddress(c.spec)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("ParseAddress(%q): %v", c.spec, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseAddress(%q) error %v, want one containing %q", c.spec, err, c.err)
		case network != c.network || address != c.address:
			t.Errorf("ParseAddress(%q) = %q %q, want %q %q", c.spec, network, address, c.network, c.address)
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"inet:127.0.0.1:8899", "inet:8899@[::1]", "unix:/a", "/a", "inet6:[::1]:1", "x:y:z", ":", "inet:@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		network, address, err := milter.ParseAddress(spec)
		if err != nil {
			return
		}
		switch network {
		case "unix":
			if !filepath.IsAbs(address) {
				t.Fatalf("%q: relative unix path %q", spec, address)
			}
		case "tcp":
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				t.Fatalf("%q: address %q: %v", spec, address, err)
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				t.Fatalf("%q: port %q", spec, port)
			}
		default:
			t.Fatalf("%q: network %q", spec, network)
		}
	})
}

// shortDir is a directory with a short path: unix socket paths are limited
// to 107 bytes, which t.TempDir under a long test name can exceed.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "bml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func socketMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("%s is not a socket: %v", path, fi.Mode())
	}
	return fi.Mode().Perm()
}

func TestListenUnixMode(t *testing.T) {
	for _, c := range []struct {
		mode, want os.FileMode
	}{{0, 0o660}, {0o600, 0o600}, {0o666, 0o666}} {
		path := filepath.Join(shortDir(t), "m.sock")
		ln, err := milter.Listen("unix:"+path, milter.SocketOptions{Mode: c.mode})
		if err != nil {
			t.Fatal(err)
		}
		if got := socketMode(t, path); got != c.want {
			t.Errorf("mode %o: socket is %o, want %o", c.mode, got, c.want)
		}
		ln.Close()
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("socket left behind after Close: %v", err)
		}
	}
}

func TestListenUnixGroup(t *testing.T) {
	path := filepath.Join(shortDir(t), "m.sock")
	gid := os.Getgid()
	ln, err := milter.Listen("unix:"+path, milter.SocketOptions{Group: strconv.Itoa(gid)})
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	_, err = milter.Listen("unix:"+path, milter.SocketOptions{Group: "no-such-group-backscatter"})
	if err == nil || !strings.Contains(err.Error(), "no such group") {
		t.Fatalf("unknown group: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind after a failed Listen: %v", err)
	}
}

func TestListenUnixStaleReplaced(t *testing.T) {
	path := filepath.Join(shortDir(t), "m.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close() // a dead process's socket: the file stays, nobody answers
	socketMode(t, path)
	ln, err := milter.Listen("unix:"+path, milter.SocketOptions{})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	// The new socket is the one answering.
	h := start(t, testEngine(), nil)
	go h.srv.Serve(ln)
	macros := gomilter.NewMacroBag()
	s, err := gomilter.NewClient("unix", path, gomilter.WithProtocols(mtaProtocols)).Session(macros)
	if err != nil {
		t.Fatalf("no milter on the replaced socket: %v", err)
	}
	s.Close()
}

func TestListenUnixLiveRefused(t *testing.T) {
	path := filepath.Join(shortDir(t), "m.sock")
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	go func() {
		for {
			c, err := live.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, err = milter.Listen("unix:"+path, milter.SocketOptions{})
	if err == nil || !strings.Contains(err.Error(), "another process is serving") {
		t.Fatalf("live socket: %v", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the live socket was removed: %v", err)
	}
}

func TestListenUnixNotASocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "m.sock")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := milter.Listen("unix:"+path, milter.SocketOptions{})
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("the file in the way was touched")
	}
}

func TestListenInet(t *testing.T) {
	for _, spec := range []string{"inet:127.0.0.1:0", "inet:0@127.0.0.1", "inet6:[::1]:0", "inet:[::1]:0"} {
		t.Run(spec, func(t *testing.T) {
			ln, err := milter.Listen(spec, milter.SocketOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			addr := ln.Addr().(*net.TCPAddr)
			if want := strings.Contains(spec, "::1"); want != (addr.IP.To4() == nil) || !addr.IP.IsLoopback() {
				t.Fatalf("listening on %v", addr)
			}
			h := start(t, testEngine(), nil)
			go h.srv.Serve(ln)
			h.addr = ln.Addr().String()
			r := h.deliver(cleanIP, message{from: "alice@pass.test", rcpts: []rcpt{{"bob@example.org", ""}}})
			wantAction(t, "eom over "+spec, r.end, gomilter.ActionAccept, "")
		})
	}
}

func TestListenBadSpec(t *testing.T) {
	for _, spec := range []string{"unix:relative.sock", "bogus", "inet:127.0.0.1:99999"} {
		if ln, err := milter.Listen(spec, milter.SocketOptions{}); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) succeeded", spec)
		}
	}
}
