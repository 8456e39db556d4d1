package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedisTopologies(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("hunter2-secret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	world := filepath.Join(dir, "world")
	if err := os.WriteFile(world, []byte("hunter2-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, yaml string
		topology   string   // want, when valid
		addrs      string   // want, when valid
		problems   []string // keys, when invalid
	}{
		{name: "default", yaml: "", topology: "single", addrs: ""},
		{name: "older addr spelling", yaml: `{ addr: "10.1.1.1:6380" }`, topology: "single", addrs: "10.1.1.1:6380"},
		{name: "sentinel", yaml: `{ addrs: ["s1:26379", "s2:26379", "s3:26379"], master_name: mymaster }`, topology: "sentinel", addrs: "s1:26379,s2:26379,s3:26379"},
		{name: "cluster one seed", yaml: `{ addrs: ["c1:7000"], cluster: true }`, topology: "cluster", addrs: "c1:7000"},
		{name: "password file", yaml: `{ password_file: "` + pw + `" }`, topology: "single"},
		{name: "both spellings", yaml: `{ addr: "a:1", addrs: ["b:2"] }`, problems: []string{"sent_log.redis.addr"}},
		{name: "several addrs no topology", yaml: `{ addrs: ["a:1", "b:2"] }`, problems: []string{"sent_log.redis"}},
		{name: "cluster with db", yaml: `{ addrs: ["a:1"], cluster: true, db: 3 }`, problems: []string{"sent_log.redis"}},
		{name: "world-readable password", yaml: `{ password_file: "` + world + `" }`, problems: []string{"sent_log.redis.password_file"}},
		{name: "password twice", yaml: `{ password: x, password_file: "` + pw + `" }`, problems: []string{"sent_log.redis.password_file"}},
		{name: "sentinel password without sentinel", yaml: `{ sentinel_password_file: "` + pw + `" }`, problems: []string{"sent_log.redis.sentinel_password_file"}},
		{name: "tls settings while off", yaml: `{ tls: { ca: /etc/ssl/ca.pem } }`, problems: []string{"sent_log.redis.tls.enabled"}},
		{name: "tls ca missing", yaml: `{ tls: { enabled: true, ca: "` + filepath.Join(dir, "nope.pem") + `" } }`, problems: []string{"sent_log.redis.tls"}},
		{name: "tls cert without key", yaml: `{ tls: { enabled: true, cert: "` + pw + `" } }`, problems: []string{"sent_log.redis.tls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := "sent_log: { backend: redis"
			if tc.yaml != "" {
				body += ", redis: " + tc.yaml
			}
			body += " }\n"
			c, err := Load(write(t, body), nil)
			if len(tc.problems) > 0 {
				if err == nil {
					t.Fatalf("no error; want problems at %v", tc.problems)
				}
				for _, k := range tc.problems {
					if !strings.Contains(err.Error(), "\n  "+k+": ") {
						t.Errorf("no problem at %s:\n%v", k, err)
					}
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("a password is shown: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			comp, ps := c.Compile()
			if len(ps) > 0 {
				t.Fatal(ps)
			}
			if got := comp.Redis.Topology(); got != tc.topology {
				t.Errorf("topology %q, want %q", got, tc.topology)
			}
			if got := strings.Join(comp.Redis.Addrs, ","); tc.addrs != "" && got != tc.addrs {
				t.Errorf("addrs %q, want %q", got, tc.addrs)
			}
			if strings.Contains(tc.name, "password file") && comp.Redis.Password != "hunter2-secret" {
				t.Errorf("password from file not read")
			}
		})
	}
}
