package main

import (
	"os"
	"testing"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
)

// TestMain keeps the tests from reading a configuration installed on the
// machine (/etc/backscatter-milter/config.yaml, e.g. by TestDebianPackage
// or a real install): without --config they see the embedded defaults.
func TestMain(m *testing.M) {
	config.DefaultPath = "/nonexistent/backscatter-milter-test/config.yaml"
	os.Exit(m.Run())
}
