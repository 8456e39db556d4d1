package mtatest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// namespace runs an MTA's processes in private mount and UTS namespaces
// (unshare -m -u): /dev/log is our syslog socket, /etc/hosts names the
// instance, /etc/resolv.conf points at 127.0.0.1 where nothing answers DNS,
// and the host name is the instance's fully qualified name. So Sendmail
// (which logs only to syslog and sleeps 60 s on an unqualified host name)
// and Postfix's master (whose errors before postlogd runs go to syslog) log
// somewhere we can read, and no lookup leaves the machine.
type namespace struct {
	dir, hostname string
	syslog        *syslogSink
}

// namespaceTools are the programs nsScript runs.
var namespaceTools = []string{"unshare", "mount", "umount", "hostname"}

// nsScript prepares the namespaces and execs the command after its first
// two arguments (instance directory, host name). /dev gets a tmpfs with the
// few devices MTAs open, so that /dev/log can be a bind mount of our syslog
// socket even where the machine has no /dev/log to mount over (creating one
// would change the machine).
const nsScript = `set -e
d=$1; h=$2; shift 2
mount --rbind /dev "$d/olddev"
mount -t tmpfs -o mode=755,size=1m mtatest-dev /dev
for n in null zero full random urandom tty; do
	[ -e "$d/olddev/$n" ] || continue
	: >"/dev/$n"
	mount --bind "$d/olddev/$n" "/dev/$n"
done
umount -l "$d/olddev"
ln -s /proc/self/fd /dev/fd
: >/dev/log
mount --bind "$d/log.sock" /dev/log
mount --bind "$d/hosts" /etc/hosts
mount --bind "$d/resolv.conf" /etc/resolv.conf
hostname "$h"
exec "$@"
`

// newNamespace writes the files the namespace mounts into dir and starts
// the syslog listener; t.Cleanup closes it.
func newNamespace(t testing.TB, dir, hostname string) *namespace {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, "olddev"), 0o700); err != nil {
		t.Fatal(err)
	}
	short, _, _ := strings.Cut(hostname, ".")
	writeFile(t, filepath.Join(dir, "hosts"), fmt.Sprintf("127.0.0.1\t%s %s localhost\n::1\tlocalhost\n", hostname, short))
	writeFile(t, filepath.Join(dir, "resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
	sl, err := listenSyslog(filepath.Join(dir, "log.sock"))
	if err != nil {
		t.Fatalf("mtatest: syslog socket: %v", err)
	}
	t.Cleanup(sl.close)
	return &namespace{dir: dir, hostname: hostname, syslog: sl}
}

// command returns argv to run in fresh namespaces, in its own process
// group. unshare and sh exec, so the process started is argv[0] itself.
func (n *namespace) command(argv ...string) *exec.Cmd {
	args := append([]string{"-m", "-u", "--propagation", "private", "sh", "-c", nsScript, "sh", n.dir, n.hostname}, argv...)
	cmd := exec.Command(mustPath("unshare"), args...)
	cmd.Dir = n.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// mountNS is an instance's mount namespace, held open. The kernel reuses
// a freed namespace's number at once (the lowest free one), so a number
// alone could name another instance's namespace after ours is gone: its
// processes were killed as ours (seen: a concurrent Sendmail's newaliases
// got SIGKILL). The open descriptor keeps our namespace, and so its number,
// alive until release.
type mountNS struct {
	id string // "mnt:[inode]"
	f  *os.File
}

// pinMountNS opens pid's mount namespace; nil when that is this process's
// own (killing by namespace must never reach anything outside an instance)
// or cannot be read.
func pinMountNS(pid int) *mountNS {
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return nil
	}
	id, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	own, oerr := os.Readlink("/proc/self/ns/mnt")
	if err != nil || oerr != nil || id == own {
		f.Close()
		return nil
	}
	return &mountNS{id: id, f: f}
}

// processes lists the processes in the namespace; none for nil.
func (m *mountNS) processes() []int {
	if m == nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt")); err == nil && l == m.id {
			pids = append(pids, pid)
		}
	}
	return pids
}

// release closes the descriptor; the namespace's number may then be reused.
func (m *mountNS) release() {
	if m != nil {
		m.f.Close()
	}
}

// stopInstance ends an MTA instance whose main process is cmd (done closes
// once it is reaped): SIGTERM, and SIGKILL to its process group if it has
// not ended after 10 s. Once it is reaped its group number may already lead
// another test's processes (seen: a concurrent test's Postfix master
// killed), so what is left is killed one by one, and only what is known to
// be the instance's: the processes in its mount namespace, and those extra
// names (nil: none). Then the namespace is released.
func stopInstance(cmd *exec.Cmd, done <-chan struct{}, ns *mountNS, extra func() []int) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	pids := ns.processes()
	if extra != nil {
		pids = append(pids, extra()...)
	}
	for _, pid := range pids {
		killPID(pid)
	}
	ns.release()
}
