package main

import (
	"fmt"
	"io"
	"reflect"

	"go.yaml.in/yaml/v3"

	"github.com/backscatter-milter/backscatter-milter/cmd/backscatter-milter/internal/config"
)

func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" && args[0] != "show" {
		fmt.Fprintln(stderr, "usage: backscatter-milter config check|show [--config FILE]")
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("config "+sub, stderr)
	config.Flags(fs)
	if done, code := parse(fs, args[1:]); done {
		return code
	}
	path, _ := fs.GetString("config")
	cfg, err := config.Load(path, fs)
	if sub == "check" {
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", sourceName(path, cfg), err)
			return exitUsage
		}
		comp, _ := cfg.Compile()
		fmt.Fprintf(stdout, "%s: ok (mode %s, %d DNSBL zones, BATV %s, NDR suppression %s, sent log %s)\n",
			cfg.Source, cfg.Mode, len(comp.Zones), onOff(cfg.BATV.Enabled), onOff(cfg.NDR.Enabled), cfg.SentLog.Backend)
		return exitOK
	}
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
