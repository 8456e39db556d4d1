package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"go.yaml.in/yaml/v3"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
)

func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" && args[0] != "show" {
		fmt.Fprintln(stderr, "usage: backscatter-milter config check|show [--config FILE] (check: [--as USER])")
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("config "+sub, stderr)
	config.Flags(fs)
	if sub == "check" {
		fs.String("as", "", "check file access as this user (the service user, e.g. backscatter-milter); needs root")
	}
	if done, code := parse(fs, args[1:]); done {
		return code
	}
	path, _ := fs.GetString("config")
	if sub == "check" {
		if as, _ := fs.GetString("as"); as != "" {
			return checkAsUser(as, args[1:], stdout, stderr)
		}
		return checkConfig(path, fs, stdout)
	}
	cfg, err := config.Load(path, fs)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	out := showable(cfg)
	b, err := yaml.Marshal(out)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	fmt.Fprintf(stdout, "# effective configuration (defaults, %s, environment, flags)\n%s", cfg.Source, b)
	return exitOK
}

// checkConfig is `config check`: every problem of the configuration at
// once, then whether the user running it can open what the daemon opens.
func checkConfig(path string, fs *pflag.FlagSet, stdout io.Writer) int {
	cfg, err := config.Load(path, fs)
	if _, isList := config.AsProblems(err); err != nil && !isList {
		// The file itself is unusable; its error names it.
		fmt.Fprintf(stdout, "%v\n", err)
		return exitUsage
	}
	ps, _ := config.AsProblems(err)
	ps = append(ps, cfg.AccessProblems()...)
	if len(ps) > 0 {
		fmt.Fprintf(stdout, "%s: %v\n", sourceName(path, cfg), ps)
		return exitUsage
	}
	comp, _ := cfg.Compile()
	for _, w := range cfg.Warnings(time.Now()) {
		fmt.Fprintf(stdout, "%s: WARNING %s\n", cfg.Source, w)
	}
	fmt.Fprintf(stdout, "%s: ok (mode %s, %d DNSBL zones, BATV %s, NDR suppression %s, sent log %s)\n",
		cfg.Source, cfg.Mode, len(comp.Zones), onOff(cfg.BATV.Enabled), onOff(cfg.NDR.Enabled), cfg.SentLog.Backend)
	explainSendmailNDR(stdout, cfg)
	return exitOK
}

// checkAsUser runs `config check` again as another user, so that key
// files, the sent log, the log file and the socket directory are checked
// with that user's rights (root can open everything).
func checkAsUser(name string, args []string, stdout, stderr io.Writer) int {
	u, err := user.Lookup(name)
	if err != nil {
		fmt.Fprintf(stderr, "backscatter-milter: config check --as: %v\n", err)
		return exitUsage
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	var groups []uint32
	gids, err := u.GroupIds()
	if err != nil {
		fmt.Fprintf(stderr, "backscatter-milter: config check --as %s: groups: %v\n", name, err)
		return exitFail
	}
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			groups = append(groups, uint32(n))
		}
	}
	if os.Geteuid() != 0 && uint64(os.Geteuid()) != uid {
		fmt.Fprintf(stderr, "backscatter-milter: config check --as %s needs root\n", name)
		return exitUsage
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "backscatter-milter: config check --as: %v\n", err)
		return exitFail
	}
	cmd := exec.Command(self, append([]string{"config", "check"}, withoutAsFlag(args)...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	fmt.Fprintf(stdout, "checking as %s (uid %d, gid %d, groups %s)\n", name, uid, gid, strings.Join(gids, ","))
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintf(stderr, "backscatter-milter: config check --as %s: %v\n", name, err)
		return exitFail
	}
	return exitOK
}

// withoutAsFlag removes --as USER / --as=USER from check's arguments and
// makes --config absolute: the check as the other user runs in /.
func withoutAsFlag(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--as" || a == "-as":
			i++
		case strings.HasPrefix(a, "--as=") || strings.HasPrefix(a, "-as="):
		case (a == "--config" || a == "-config") && i+1 < len(args):
			out = append(out, a, absPath(args[i+1]))
			i++
		case strings.HasPrefix(a, "--config="):
			out = append(out, "--config="+absPath(strings.TrimPrefix(a, "--config=")))
		default:
			out = append(out, a)
		}
	}
	return out
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func sourceName(path string, cfg *config.Config) string {
	if cfg != nil && cfg.Source != "" {
		return cfg.Source
	}
	if path != "" {
		return path
	}
	return "configuration"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// showable is the configuration as YAML with secrets masked.
func showable(c *config.Config) map[string]any {
	ms := map[string]any{}
	cfg := *c
	if cfg.SentLog.Redis.Password != "" {
		cfg.SentLog.Redis.Password = "(set)"
	}
	b, _ := yaml.Marshal(structToMap(cfg))
	yaml.Unmarshal(b, &ms)
	return ms
}

// structToMap renders a config struct by its mapstructure keys, durations
// in their written form ("2s", "7d") so the output can be pasted back.
func structToMap(v any) any {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Struct:
		m := map[string]any{}
		t := rv.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("mapstructure")
			if tag == "" || tag == "-" {
				continue
			}
			m[tag] = structToMap(rv.Field(i).Interface())
		}
		return m
	case reflect.Slice:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = structToMap(rv.Index(i).Interface())
		}
		return out
	}
	if d, ok := v.(config.Duration); ok {
		return d.String()
	}
	return v
}
