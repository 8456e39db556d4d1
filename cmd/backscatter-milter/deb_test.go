package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/backscatter-milter/backscatter-milter/internal/await"
	"github.com/backscatter-milter/backscatter-milter/internal/mtatest"
)

// What the Debian package installs, as the test checks it.
const (
	debPackage   = "backscatter-milter"
	debTestVer   = "0.0.0~citest"
	debUser      = "backscatter-milter"
	debConfig    = "/etc/backscatter-milter/config.yaml"
	debUnit      = "/lib/systemd/system/backscatter-milter.service"
	debBinary    = "/usr/sbin/backscatter-milter"
	debStateDir  = "/var/lib/backscatter-milter"
	debLogDir    = "/var/log/backscatter-milter"
	debLogFile   = "/var/log/backscatter-milter/milter.log"
	debSocketDir = "/var/spool/postfix/backscatter-milter"
	debWantsLink = "/etc/systemd/system/multi-user.target.wants/backscatter-milter.service"
	// debPostfixMilter is how Postfix names the package's socket: relative
	// to its queue directory, chrooted or not (README, docs/postfix.md).
	debPostfixMilter = "unix:backscatter-milter/milter.sock"
)

// TestDebianPackage builds the .deb with `make deb`, installs it with dpkg,
// starts the installed daemon the way its unit does (config check, then
// serve, as the unit's User and Group), runs mail through a Postfix with
// Debian's default chrooted master.cf attached as
// unix:backscatter-milter/milter.sock, rotates the log with the shipped
// logrotate file, upgrades over an edited configuration, then removes and
// purges the package and checks what is left. No systemd runs here: the
// unit's commands are run by the test, and systemd-analyze verifies it.
func TestDebianPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs the Debian package")
	}
	mtatest.RequirePostfix(t)
	mtatest.Require(t, "dpkg", "dpkg-deb", "dpkg-query", "dpkg-shlibdeps", "lintian", "make", "go-md2man", "setpriv", "systemd-analyze", "logrotate", "useradd")
	lockDebianTest(t)
	if status, version := debStatus(t); strings.HasSuffix(status, " installed") && version != debTestVer {
		t.Fatalf("a real %s package (%s) is installed on this machine: the test will not touch it", debPackage, version)
	}
	debRun(t, "dpkg", "--purge", debPackage) // what a failed earlier run left
	_, userErr := user.Lookup(debUser)
	userExisted := userErr == nil
	dir := t.TempDir()
	deb := buildDeb(t, dir)
	checkLintian(t, deb)

	// The machine is left as it was: the package purged, and the user the
	// package keeps on purge removed if the test created it.
	t.Cleanup(func() {
		debRun(t, "dpkg", "--purge", debPackage)
		if !userExisted {
			debRun(t, "userdel", debUser)
			debRun(t, "groupdel", debUser)
		}
	})

	debMustRun(t, "dpkg", "-i", deb)
	if status, _ := debStatus(t); status != "install ok installed" {
		t.Fatalf("dpkg status after install: %q", status)
	}
	checkInstalled(t)
	unit := verifyInstalledUnit(t)

	// The postmaster's edits: enforce, our domains, a test resolver, and a
	// socket inside the private Postfix's queue directory (its chroot).
	pf := mtatest.StartPostfix(t, mtatest.PostfixOptions{Chroot: true, MilterAddr: debPostfixMilter})
	sockDir := filepath.Join(pf.QueueDir, "backscatter-milter")
	mirrorDir(t, debSocketDir, sockDir)
	editConfig(t, map[string]string{
		"listen: unix:" + debianSocket: "listen: unix:" + filepath.Join(sockDir, "milter.sock"),
		"mode: observe":                "mode: enforce",
	}, testPolicy(t)+"metrics: { listen: '' }\n")

	d := startAsUnit(t, unit)
	d.waitFor(t, "the daemon's socket", func() bool {
		_, err := os.Stat(filepath.Join(sockDir, "milter.sock"))
		return err == nil
	})
	checkOwner(t, filepath.Join(sockDir, "milter.sock"), debUser, debUser, 0o660)
	checkDeliveryAndHold(t, pf)
	checkLogRotation(t, d, pf, dir)
	if err := d.stop(); err != nil {
		t.Errorf("daemon exit after SIGTERM: %v\n%s", err, d.out.String())
	}
	checkUpgradeRemovePurge(t, deb)
}

// buildDeb runs make deb into dir and returns the package file.
func buildDeb(t *testing.T, dir string) string {
	t.Helper()
	out := debMustRun(t, "make", "-s", "-C", "../..", "deb", "DEB_VERSION="+debTestVer, "DEB_OUT="+dir,
		"DEB_BUILD="+filepath.Join(dir, "root"), "BIN="+filepath.Join(dir, "backscatter-milter"), "MAN_OUT="+filepath.Join(dir, "man"))
	debs, _ := filepath.Glob(filepath.Join(dir, debPackage+"_"+debTestVer+"_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb did not build %s_%s_ARCH.deb in %s: %v\n%s", debPackage, debTestVer, dir, debs, out)
	}
	return debs[0]
}

// checkLintian runs Debian's own package checker on the .deb: every error
// and warning it reports is a defect of the package (the build user is
// root here, which lintian only mentions).
func checkLintian(t *testing.T, deb string) {
	t.Helper()
	out, _ := debCommand("lintian", "--tag-display-limit", "0", deb)
	var tags []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			tags = append(tags, line)
		}
	}
	if len(tags) > 0 {
		t.Errorf("lintian %s:\n%s", filepath.Base(deb), strings.Join(tags, "\n"))
	}
	if !strings.Contains(debMustRun(t, "dpkg-deb", "-f", deb, "Depends"), "libc6") {
		t.Errorf("Depends does not name the C library the binary links")
	}
}

// verifyInstalledUnit runs systemd-analyze verify and security on the
// installed unit (its binary and man pages are there now) and returns the
// unit.
func verifyInstalledUnit(t *testing.T) []byte {
	t.Helper()
	unit, err := os.ReadFile(debUnit)
	if err != nil {
		t.Fatal(err)
	}
	va := exec.Command("systemd-analyze", "verify", debUnit)
	va.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	if out, err := va.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", debUnit, err, out)
	}
	if !strings.Contains(string(unit), "\nBefore=postfix@-.service postfix.service") {
		t.Errorf("unit not ordered before postfix@-.service")
	}
	// systemd's own rating of the sandbox, read from the unit file: 1.5
	// ("OK") when written; above 2.0 a hardening line was lost.
	sec := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=20", debUnit)
	if out, err := sec.CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze security: the unit's sandbox rates above 2.0: %v\n%s", err, out)
	}
	return unit
}

// unitDaemon is the installed daemon started the way its unit starts it.
type unitDaemon struct {
	cmd     *exec.Cmd
	out     mtatest.LockedBuffer // written by the process, read while it runs
	exited  chan struct{}
	exitErr error
}

// startAsUnit runs the unit's ExecStartPre (config check must pass), then
// its ExecStart, as the unit's user; t.Cleanup stops it.
func startAsUnit(t *testing.T, unit []byte) *unitDaemon {
	t.Helper()
	startPre, start := unitCommand(t, unit, "ExecStartPre"), unitCommand(t, unit, "ExecStart")
	runAs := unitCredentials(t, unit)
	if out, err := asServiceUser(runAs, startPre...).CombinedOutput(); err != nil || !strings.Contains(string(out), ": ok (mode enforce") {
		t.Fatalf("ExecStartPre %q: %v\n%s", startPre, err, out)
	}
	d := &unitDaemon{cmd: asServiceUser(runAs, start...), exited: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exitErr = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.stop() })
	return d
}

// stop sends SIGTERM and waits for the exit, as systemctl stop does.
func (d *unitDaemon) stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return d.exitErr
	case <-time.After(45 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("no exit 45s after SIGTERM")
	}
}

// waitFor polls cond; the daemon dying first fails the test at once.
func (d *unitDaemon) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !await.True(20*time.Second, func() bool {
		select {
		case <-d.exited:
			t.Fatalf("daemon exited while waiting for %s:\n%s", what, d.out.String())
		default:
		}
		return cond()
	}) {
		t.Fatalf("no %s after 20s; daemon output:\n%s", what, d.out.String())
	}
}

// sendOutside sends one message from an untrusted client.
func sendOutside(t *testing.T, pf *mtatest.Postfix, m mtatest.SMTPMessage) mtatest.MessageResult {
	t.Helper()
	r := pf.SendSession(t, mtatest.Session{LocalIP: "127.0.0.2", Helo: "mx.remote.test", Messages: []mtatest.SMTPMessage{m}})
	return r.Messages[0]
}

// checkDeliveryAndHold: through the chrooted smtpd, a plain message is
// delivered and a forged bounce held, each with its verdict in log.file.
func checkDeliveryAndHold(t *testing.T, pf *mtatest.Postfix) {
	t.Helper()
	log := &testMilter{LogFile: debLogFile}
	r := sendOutside(t, pf, mtatest.SMTPMessage{From: "alice@pass.test", To: []string{"bob@example.org"},
		Data: plainMessage("alice@pass.test", "bob@example.org", "deb-1@pass.test", "", "hello\n")})
	if !r.Accepted() {
		t.Fatalf("plain message: %s\nmaillog:\n%s", r, pf.Log())
	}
	pf.Sink.WaitMessages(t, 1, 30*time.Second)
	v := log.waitVerdict(t, "delivered message", func(v verdict) bool { return v.QueueID == r.QueueID() && v.Stage == "eom" })
	if v.Action != "accept" {
		t.Errorf("verdict of the delivered message: %s", v)
	}
	held := sendOutside(t, pf, mtatest.SMTPMessage{From: "<>", To: []string{"carol@example.org"},
		Data: dsnFor("carol@example.org", "unknown-9@example.org", "spam.remote.test", "198.51.100.9")})
	if !held.Accepted() {
		t.Fatalf("forged bounce: %s", held)
	}
	pf.WaitQueue(t, 20*time.Second, "forged bounce on hold", func(q []mtatest.QueueEntry) bool {
		return len(q) == 1 && q[0].QueueID == held.QueueID() && q[0].QueueName == "hold"
	})
	v = log.waitVerdict(t, "held message", func(v verdict) bool { return v.QueueID == held.QueueID() && v.Stage == "eom" })
	if v.Action != "quarantine" || !v.has("bounce:not-ours") {
		t.Errorf("verdict of the held message: %s", v)
	}
}

// checkLogRotation rotates log.file with the shipped logrotate file. Its
// postrotate asks systemd for a reload, which sends SIGHUP; without
// systemd the test sends it. The next verdict is in the new file.
func checkLogRotation(t *testing.T, d *unitDaemon, pf *mtatest.Postfix, dir string) {
	t.Helper()
	lr := exec.Command("logrotate", "-v", "-f", "-s", filepath.Join(dir, "logrotate.state"), "/etc/logrotate.d/backscatter-milter")
	if out, err := lr.CombinedOutput(); err != nil || bytes.Contains(out, []byte("error:")) {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}
	if _, err := os.Stat(debLogFile + ".1"); err != nil {
		t.Fatalf("logrotate did not rotate %s: %v", debLogFile, err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, "the reload after SIGHUP", func() bool {
		b, _ := os.ReadFile(debLogFile)
		return bytes.Contains(b, []byte(`"msg":"configuration reloaded"`))
	})
	r := sendOutside(t, pf, mtatest.SMTPMessage{From: "alice@pass.test", To: []string{"bob@example.org"},
		Data: plainMessage("alice@pass.test", "bob@example.org", "deb-2@pass.test", "", "after rotation\n")})
	log := &testMilter{LogFile: debLogFile}
	log.waitVerdict(t, "message after rotation, in the new file", func(v verdict) bool { return v.QueueID == r.QueueID() })
	if rotated, _ := os.ReadFile(debLogFile + ".1"); bytes.Contains(rotated, []byte(r.QueueID())) {
		t.Errorf("a verdict after rotation went to the rotated file")
	}
}

// checkUpgradeRemovePurge: reinstalling keeps the edited conffile; remove
// keeps configuration, state and user; purge removes all but the user.
func checkUpgradeRemovePurge(t *testing.T, deb string) {
	t.Helper()
	debMustRun(t, "dpkg", "-i", deb)
	if b, _ := os.ReadFile(debConfig); !bytes.Contains(b, []byte("\nmode: enforce\n")) {
		t.Errorf("reinstall lost the edited configuration:\n%s", b)
	}
	debMustRun(t, "dpkg", "-r", debPackage)
	for _, gone := range []string{debBinary, debUnit} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("%s left after dpkg -r", gone)
		}
	}
	for _, kept := range []string{debConfig, debStateDir} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s removed by dpkg -r (only purge removes it): %v", kept, err)
		}
	}
	debMustRun(t, "dpkg", "--purge", debPackage)
	for _, gone := range []string{"/etc/backscatter-milter", debStateDir, debLogDir, debSocketDir, debWantsLink,
		"/etc/systemd/system/backscatter-milter.service"} { // the mask dpkg -r left
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s left after purge", gone)
		}
	}
	if status, _ := debStatus(t); status != "" && !strings.HasPrefix(status, "unknown ok not-installed") && !strings.HasPrefix(status, "purge ok not-installed") {
		t.Errorf("dpkg status after purge: %q", status)
	}
	if _, err := user.Lookup(debUser); err != nil {
		t.Errorf("purge removed the system user %s: it stays", debUser)
	}
}

// lockDebianTest serialises this test across processes: two test runs on
// one machine (two work trees) would install and purge the same package
// and user under each other.
func lockDebianTest(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "backscatter-milter-deb-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock, after the purge
}

// checkInstalled checks what the package and its postinst made.
func checkInstalled(t *testing.T) {
	t.Helper()
	for _, f := range []string{debBinary, debConfig, debUnit, "/usr/lib/tmpfiles.d/backscatter-milter.conf",
		"/etc/logrotate.d/backscatter-milter", "/usr/share/bash-completion/completions/backscatter-milter",
		"/usr/share/doc/backscatter-milter/postfix.md"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	for page, head := range map[string]string{
		"/usr/share/man/man8/backscatter-milter.8.gz":      ".TH BACKSCATTER-MILTER 8",
		"/usr/share/man/man5/backscatter-milter.yaml.5.gz": ".TH BACKSCATTER-MILTER.YAML 5",
	} {
		if b := gunzip(t, page); !strings.Contains(b, head) {
			t.Errorf("%s lacks %q", page, head)
		}
	}
	conffiles := debMustRun(t, "dpkg-query", "-W", "-f", "${Conffiles}", debPackage)
	if !strings.Contains(conffiles, debConfig) || !strings.Contains(conffiles, "/etc/logrotate.d/backscatter-milter") {
		t.Errorf("conffiles: %q", conffiles)
	}
	u, err := user.Lookup(debUser)
	if err != nil {
		t.Fatalf("postinst made no user: %v", err)
	}
	if u.HomeDir != debStateDir {
		t.Errorf("user home %s", u.HomeDir)
	}
	if _, err := user.Lookup("postfix"); err == nil {
		if groups := debMustRun(t, "id", "-nG", "postfix"); !strings.Contains(" "+groups+" ", " "+debUser+" ") &&
			!strings.Contains(groups, debUser+"\n") {
			t.Errorf("postfix is not in the %s group: %q", debUser, groups)
		}
	}
	checkOwner(t, debStateDir, debUser, debUser, 0o700)
	checkOwner(t, debLogDir, debUser, debUser, 0o750)
	checkOwner(t, debSocketDir, debUser, debUser, 0o750)
	checkOwner(t, debConfig, "root", debUser, 0o640)
	if out, err := exec.Command(debBinary, "config", "check", "--as", debUser, "--config", debConfig).CombinedOutput(); err != nil {
		t.Errorf("the shipped configuration does not pass config check as %s: %v\n%s", debUser, err, out)
	}
}

func checkOwner(t *testing.T, path, owner, group string, mode os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	sys := st.Sys().(*syscall.Stat_t)
	u, _ := user.LookupId(fmt.Sprint(sys.Uid))
	g, _ := user.LookupGroupId(fmt.Sprint(sys.Gid))
	if u == nil || g == nil || u.Username != owner || g.Name != group || st.Mode().Perm() != mode {
		t.Errorf("%s: %v uid %d gid %d, want %s:%s %v", path, st.Mode().Perm(), sys.Uid, sys.Gid, owner, group, mode)
	}
}

// mirrorDir makes dst with the owner and mode of src (the directory the
// package made for the socket in the system Postfix's queue).
func mirrorDir(t *testing.T, src, dst string) {
	t.Helper()
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if err := os.Mkdir(dst, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dst, int(sys.Uid), int(sys.Gid)); err != nil {
		t.Fatal(err)
	}
}

// editConfig edits the installed configuration as an administrator would:
// lines replaced, lines appended; owner and mode stay.
func editConfig(t *testing.T, replace map[string]string, appendix string) {
	t.Helper()
	b, err := os.ReadFile(debConfig)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, new := range replace {
		if !strings.Contains(s, "\n"+old+"\n") {
			t.Fatalf("%s lacks the line %q", debConfig, old)
		}
		s = strings.Replace(s, "\n"+old+"\n", "\n"+new+"\n", 1)
	}
	if err := os.WriteFile(debConfig, []byte(s+appendix), 0); err != nil {
		t.Fatal(err)
	}
}

// unitCommand returns the argv of a unit's Exec line.
func unitCommand(t *testing.T, unit []byte, key string) []string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("unit has no %s", key)
	return nil
}

// serviceCreds is what the unit says the service runs as.
type serviceCreds struct{ user, group, umask string }

func unitCredentials(t *testing.T, unit []byte) serviceCreds {
	t.Helper()
	var c serviceCreds
	for _, l := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(l, "User="); ok {
			c.user = v
		}
		if v, ok := strings.CutPrefix(l, "Group="); ok {
			c.group = v
		}
		if v, ok := strings.CutPrefix(l, "UMask="); ok {
			c.umask = v
		}
	}
	if c.user == "" || c.group == "" || c.umask == "" {
		t.Fatalf("unit lacks User, Group or UMask: %+v", c)
	}
	return c
}

// asServiceUser runs argv as systemd would for the unit: its user, group
// and supplementary groups, its umask, no new privileges, working directory
// /, a clean environment.
func asServiceUser(c serviceCreds, argv ...string) *exec.Cmd {
	args := append([]string{"-c", `umask "$0" && exec setpriv --reuid="$1" --regid="$2" --init-groups --no-new-privs -- "${@:3}"`,
		c.umask, c.user, c.group}, argv...)
	cmd := exec.Command("bash", args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	return cmd
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Error(err)
		return ""
	}
	b, _ := io.ReadAll(zr)
	return string(b)
}

// debStatus returns dpkg's status and version of the package ("" when dpkg
// never heard of it).
func debStatus(t *testing.T) (status, version string) {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}|${Version}", debPackage).Output()
	if err != nil {
		return "", ""
	}
	status, version, _ = strings.Cut(string(out), "|")
	return status, version
}

// debRun runs a command and returns its output; errors are the caller's
// business (cleanup of what may not be there).
func debRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, _ := debCommand(name, args...)
	return out
}

func debMustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := debCommand(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// debCommand runs a command; a dpkg that finds dpkg's lock taken (an
// apt-get of the machine's own, or of install-test-deps run beside the
// tests) is run again until the lock is free, for up to three minutes.
func debCommand(name string, args ...string) (string, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock was locked by another process") || time.Now().After(deadline) {
			return string(out), err
		}
		time.Sleep(2 * time.Second)
	}
}
