package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/pflag"
)

// cpuProfileFlag declares serve --cpu-profile: a CPU profile of the whole
// run, written when the daemon stops, for performance work (make bench-e2e
// BENCH_PROFILE=…, docs/performance.md).
func cpuProfileFlag(fs *pflag.FlagSet) {
	fs.String("cpu-profile", "", "write a CPU profile of this run to FILE when the daemon stops (performance work)")
}

// startCPUProfile starts the profile --cpu-profile asks for; stop writes it.
func startCPUProfile(fs *pflag.FlagSet) (stop func(), err error) {
	path, _ := fs.GetString("cpu-profile")
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
