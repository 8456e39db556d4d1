package main

import (
	"net"
	"strings"
	"testing"
)

func TestConfigCheckExplainsSendmailNDR(t *testing.T) {
	code, out, _ := runCLI("config", "check")
	if code != exitOK || !strings.Contains(out, "ndr_suppression.sendmail: off") {
		t.Errorf("defaults: %d\n%s", code, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	cfg := writeConfig(t, "ndr_suppression: { sendmail: case-variant, sendmail_smtp: \""+closed+"\" }\n")
	code, out, _ = runCLI("config", "check", "--config", cfg)
	if code != exitOK || !strings.Contains(out, "bob@EXAMPLE.ORG") || !strings.Contains(out, "self-check now: cannot read "+closed) {
		t.Errorf("case-variant: %d\n%s", code, out)
	}
	bad := writeConfig(t, "ndr_suppression: { sendmail: yes, }\n")
	code, out, _ = runCLI("config", "check", "--config", bad)
	if code != exitUsage || !strings.Contains(out, "ndr_suppression.sendmail:") {
		t.Errorf("bad value: %d\n%s", code, out)
	}
	bad = writeConfig(t, "ndr_suppression: { sendmail: case-variant, sendmail_smtp: localhost, sendmail_check_interval: 0s }\n")
	code, out, _ = runCLI("config", "check", "--config", bad)
	if code != exitUsage || !strings.Contains(out, "ndr_suppression.sendmail_smtp:") || !strings.Contains(out, "ndr_suppression.sendmail_check_interval:") {
		t.Errorf("bad address and interval: %d\n%s", code, out)
	}
}
