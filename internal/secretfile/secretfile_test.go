package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func write(t *testing.T, name, data string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLine(t *testing.T) {
	p := write(t, "pw", "s3cret pass\r\n", 0o640)
	got, err := Line(p, "redis password file", 0o007)
	if err != nil || got != "s3cret pass" {
		t.Fatalf("Line = %q, %v", got, err)
	}
	if _, err := Line(p, "batv key file", 0o077); err == nil || !strings.Contains(err.Error(), "group or others") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("group-readable file under 0o077: %v", err)
	}
	world := write(t, "w", "s3cret\n", 0o604)
	if _, err := Line(world, "redis password file", 0o007); err == nil || !strings.Contains(err.Error(), "others can access") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("world-readable: %v", err)
	}
	empty := write(t, "e", "\n", 0o600)
	if _, err := Line(empty, "x", 0o077); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	big := write(t, "b", strings.Repeat("a", 5000), 0o600)
	if _, err := Line(big, "x", 0o077); err == nil {
		t.Error("oversized file accepted")
	}
	if _, err := Line(filepath.Join(t.TempDir(), "missing"), "x", 0o077); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write(t, "target", "secret\n", 0o600), link); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "fifo-link")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"fifo": fifo, "dir": dir, "symlink to a fifo": fifoLink, "device": "/dev/null"} {
		done := make(chan error, 1)
		go func() { _, err := Read(p, "x", 100, 0o077); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			// A FIFO without a writer blocks a plain open forever: this
			// catches the hang, it does not measure speed.
			t.Fatalf("%s: Read blocks", name)
		}
	}
	// A symlink to a regular file is how secrets are often deployed.
	if got, err := Line(link, "x", 0o077); err != nil || got != "secret" {
		t.Errorf("symlink to a regular file: %q, %v", got, err)
	}
}
