package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuarantineCommandBadArgs(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("quarantine: { mta: postfix, postfix_command_dir: "+dir+" }\n"), 0o600)
	exim := filepath.Join(dir, "exim.yaml")
	os.WriteFile(exim, []byte("quarantine: { mta: exim }\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"purge"}, "usage"},
		{[]string{"show", "--config", good}, "usage"},
		{[]string{"release", "--config", good}, "usage"},
		{[]string{"list", "ABCDEF123", "--config", good}, "takes no queue ID"},
		{[]string{"release", "ABC;rm", "--config", good}, "is not a queue ID"},
		{[]string{"list", "--since", "soon", "--config", good}, "--since"},
		{[]string{"list", "--config", exim}, "quarantine.mta"},
		{[]string{"list", "--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
	} {
		code, _, errs := runQ(t, c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("quarantine %q: exit %d, %q; want %d and %q", c.args, code, errs, exitUsage, c.want)
		}
	}
	// A Postfix whose tools are missing: a plain failure, not a refusal.
	code, _, errs := runQ(t, "list", "--config", good)
	if code != exitFail || !strings.Contains(errs, "postqueue") {
		t.Errorf("missing postqueue: exit %d %q", code, errs)
	}
}
