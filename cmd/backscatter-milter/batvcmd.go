package main

import (
	"fmt"
	"io"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
	"github.com/backscatter-milter/backscatter-milter/policy/batv"
)

// runBATV: batv sign ADDR | batv verify ADDR, with the configured keys.
func runBATV(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "sign" && args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: backscatter-milter batv sign|verify ADDR [--config FILE]")
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("batv "+sub, stderr)
	config.Flags(fs)
	if done, code := parse(fs, args[1:]); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: backscatter-milter batv %s ADDR\n", sub)
		return exitUsage
	}
	cfg, comp, err := config.FromFlags(fs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if len(comp.BATVKeys) == 0 {
		fmt.Fprintln(stderr, "no BATV key configured (batv.enabled and batv.keys)")
		return exitUsage
	}
	s := &batv.Signer{Keys: comp.BATVKeys, Current: cfg.BATV.CurrentKey, Lifetime: cfg.BATV.Lifetime.D(),
		Syntax: comp.BATVSyntax, Delimiter: cfg.BATV.Delimiter}
	addr := fs.Arg(0)
	if sub == "sign" {
		signed, err := s.Sign(addr)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitFail
		}
		fmt.Fprintln(stdout, signed)
		return exitOK
	}
	r := s.Verify(addr)
	fmt.Fprintf(stdout, "%s: %s (original %s)\n", addr, r.Status, r.Original)
	if r.Status != batv.StatusOK {
		return exitFail
	}
	return exitOK
}
