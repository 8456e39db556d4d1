// Command backscatter-milter is a milter for Postfix and Sendmail that stops
// backscatter: forged bounces, auto-replies and callouts inbound, and our
// own non-delivery reports to forged senders outbound.
//
// Usage:
//
//	backscatter-milter [serve] [--config FILE] [--listen SPEC] [--mode enforce|observe]
//	backscatter-milter config check|show [--config FILE] (check: [--as USER])
//	backscatter-milter dnsbl check IP [--sender ADDR]
//	backscatter-milter batv sign|verify ADDR
//	backscatter-milter selfcheck [--log FILE] [--since AGE] [--json]
//	backscatter-milter version
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
)

// Set at build time: go build -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

// exit codes
const (
	exitOK     = 0
	exitFail   = 1 // the command ran and found a problem
	exitUsage  = 2 // bad arguments or configuration
	exitNotRun = 3
	exitDenied = 4 // a right is missing (quarantine: reading the queue, postsuper, log.file)
)

type command struct {
	name  string
	about string
	run   func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the milter (the default)", runServe},
		{"config", "config check | config show: validate or print the effective configuration", runConfig},
		{"dnsbl", "dnsbl check IP [--sender ADDR]: each zone's answer and the score", runDNSBL},
		{"batv", "batv sign ADDR | batv verify ADDR", runBATV},
		{"report", "report [FILES|-] [--since T] [--until T] [--format text|json|html]: review verdict logs (default: log.file and its rotations)", runReport},
		{"selfcheck", "selfcheck [--log FILE] [--since 24h] [--json]: are our outbound IPs listed; NDRs our MTA generated", runSelfcheck},
		{"quarantine", "quarantine list|show ID|release ID...|delete ID...: held mail with its verdicts", runQuarantine},
		{"test", "test FILE.eml [--mail-from A] [--rcpt A]... [--offline]: run a message through the milter, in process", runTest},
		{"version", "print the version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || len(args[0]) > 0 && args[0][0] == '-' && args[0] != "-h" && args[0] != "--help" {
		return runServe(args, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "backscatter-milter: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: backscatter-milter COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.about)
	}
	fmt.Fprintln(w, "\nRun 'backscatter-milter COMMAND --help' for a command's flags.")
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "backscatter-milter %s (commit %s)\n", version, commit)
	return exitOK
}

// newFlags returns a flag set that prints its usage to stderr.
func newFlags(name string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags, mapping --help to success.
func parse(fs *pflag.FlagSet, args []string) (done bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return true, exitOK
		}
		return true, exitUsage
	}
	return false, 0
}
