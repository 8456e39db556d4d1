package batv

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLoadKeyFile(t *testing.T) {
	const secret = "s3cret-0123456789-abcdef"
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // key; "" means an error is expected
		errHas  string
	}{
		{"0600", secret, 0o600, secret, ""},
		{"0400", secret, 0o400, secret, ""},
		{"trailing newline", secret + "\n", 0o600, secret, ""},
		{"trailing CRLF", secret + "\r\n\n", 0o600, secret, ""},
		{"0644 refused", secret, 0o644, "", "chmod 600"},
		{"0640 refused", secret, 0o640, "", "group or others"},
		{"0604 refused", secret, 0o604, "", "group or others"},
		{"empty", "", 0o600, "", "at least 16"},
		{"newline only", "\n", 0o600, "", "at least 16"},
		{"short", "0123456789abcde\n", 0o600, "", "at least 16"},
		{"huge", strings.Repeat("k", 5000), 0o600, "", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			// Chmod explicitly: WriteFile's mode is filtered by the umask.
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := LoadKeyFile(path)
			if tt.want != "" {
				if err != nil || string(got) != tt.want {
					t.Fatalf("LoadKeyFile = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadKeyFile = %q, want error", got)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("error %q does not mention %q", err, tt.errHas)
			}
			if strings.TrimSpace(tt.content) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.content)) {
				t.Errorf("error shows the key: %v", err)
			}
		})
	}
}

func TestLoadKeyFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(dir); err == nil || !strings.Contains(err.Error(), "regular") {
		t.Errorf("directory: %v", err)
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "absent")); err == nil {
		t.Error("missing file: no error")
	}
}

// TestLoadKeyFileNeverBlocks: a FIFO (no writer), a FIFO behind a symlink,
// a unix socket and a device are refused at once; an open of a FIFO for
// reading would otherwise wait forever for a writer.
func TestLoadKeyFileNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	goodLink := filepath.Join(dir, "link-to-good")
	if err := os.Symlink(good, goodLink); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, link, sock, "/dev/null"} {
		done := make(chan error, 1)
		go func() { _, err := LoadKeyFile(p); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "regular") {
				t.Errorf("%s: %v, want a not-a-regular-file error", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("LoadKeyFile(%s) blocks", p)
		}
	}
	if k, err := LoadKeyFile(goodLink); err != nil || string(k) != "0123456789abcdef0123" {
		t.Errorf("key behind a symlink: %q, %v", k, err)
	}
}
