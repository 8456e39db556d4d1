package config

import (
	"os"
	"testing"
)

// TestMain keeps the tests from reading a configuration installed on the
// machine: without a path they see the embedded defaults.
func TestMain(m *testing.M) {
	DefaultPath = "/nonexistent/backscatter-milter-test/config.yaml"
	os.Exit(m.Run())
}
