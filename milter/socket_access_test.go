package milter_test

import (
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/milter"
)

// dialEnv makes the test binary a one-shot client: dial the unix socket
// named by it and report "connected" or the error, then exit.
const dialEnv = "BACKSCATTER_TEST_DIAL_SOCKET"

func TestMain(m *testing.M) {
	if p := os.Getenv(dialEnv); p != "" {
		c, err := net.DialTimeout("unix", p, 5*time.Second)
		if err != nil {
			io.WriteString(os.Stdout, "refused: "+err.Error())
			os.Exit(0)
		}
		c.Close()
		io.WriteString(os.Stdout, "connected")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSocketRefusesNonMembers: only the socket's group can talk to the
// milter. A process running as `nobody` is refused; the same user with the
// socket's group among its groups connects (so the refusal is the
// socket's mode, not the path or the binary).
func TestSocketRefusesNonMembers(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("BACKSCATTER_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("needs root to run a child as another user")
		}
		t.Skip("needs root to run a child as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroup("mail")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	ngid, _ := strconv.Atoi(nobody.Gid)
	gid, _ := strconv.Atoi(grp.Gid)

	// A directory every user may traverse, as /var/spool/postfix is, and
	// a copy of this test binary every user may run.
	dir, err := os.MkdirTemp("", "bsm-sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dial")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "milter.sock")
	ln, err := milter.Listen("unix:"+sock, milter.SocketOptions{Mode: 0o660, Group: "mail"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	dial := func(groups []uint32) string {
		cmd := exec.Command(bin)
		cmd.Env = []string{dialEnv + "=" + sock}
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(ngid), Groups: groups}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v: %s", err, out)
		}
		return string(out)
	}
	if got := dial(nil); !strings.HasPrefix(got, "refused:") || !strings.Contains(got, "permission denied") {
		t.Errorf("nobody, not in group mail: %q, want permission denied", got)
	}
	if got := dial([]uint32{uint32(gid)}); got != "connected" {
		t.Errorf("nobody with group mail: %q, want connected", got)
	}
}
