package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// The command line: exit codes and the one line each mistake gets, before any request is made.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "none"))
	good := write(t, dir, "good.conf", "# device\nclient-id = dev\nscope = openid offline_access\n", 0o644)
	unknown := write(t, dir, "unknown.conf", "client_id = dev\n", 0o600)
	open := write(t, dir, "open.conf", "client-secret = s3cret\n", 0o644)
	empty := write(t, dir, "empty-secret", "\n", 0o600)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string // a part of it
	}{
		{"no subcommand", nil, 2, "Usage:"},
		{"unknown subcommand", []string{"publish"}, 2, `unknown subcommand "publish"`},
		{"help", []string{"--help"}, 0, ""},
		{"token help", []string{"token", "--help"}, 0, "-client-id"},
		{"sub help", []string{"sub", "-h"}, 0, "-mqtt-version"},
		{"pub help", []string{"pub", "--help"}, 0, "-margin"},
		{"unknown option", []string{"token", "--secret", "x"}, 2, "flag provided but not defined: -secret"},
		{"stray argument", []string{"token", "extra"}, 2, `unexpected argument "extra"`},
		{"no client id", []string{"token", "--issuer", "https://idp.example"}, 2, "--client-id is required"},
		{"no issuer", []string{"token", "--client-id", "dev"}, 2, "--issuer (or --token-url) is required"},
		{"bad grant", []string{"token", "--client-id", "dev", "--token-url", "https://idp.example/token", "--grant", "password"}, 2, "--grant must be"},
		{"credentials without secret", []string{"token", "--client-id", "dev", "--token-url", "https://idp.example/token", "--grant", "client_credentials"}, 2, "needs --client-secret-file"},
		{"both secrets", []string{"token", "--client-id", "dev", "--token-url", "https://idp.example/token", "--client-secret", "a", "--client-secret-file", empty}, 1, "not both"},
		{"empty secret file", []string{"token", "--client-id", "dev", "--token-url", "https://idp.example/token", "--client-secret-file", empty}, 1, "is empty"},
		{"config unknown key", []string{"token", "--config", unknown}, 2, `line 1: unknown option "client_id"`},
		{"config secret readable by others", []string{"token", "--config", open}, 2, "chmod 600"},
		{"config missing", []string{"token", "--config", filepath.Join(dir, "nope")}, 2, "no such file"},
		{"config fills options", []string{"token", "--config", good}, 2, "--issuer (or --token-url) is required"},
		{"pub without topic", []string{"pub", "--client-id", "dev", "-m", "x"}, 2, "pub takes one -t TOPIC"},
		{"pub wildcard", []string{"pub", "-t", "a/#", "-m", "x"}, 2, "without wildcards"},
		{"pub without message", []string{"pub", "-t", "a/b"}, 2, "-m MESSAGE or -l"},
		{"sub without filter", []string{"sub"}, 2, "at least one -t FILTER"},
		{"bad margin", []string{"sub", "-t", "x", "--margin", "0s"}, 2, "--margin must be positive"},
		{"bad broker URL", []string{"sub", "-t", "x", "--broker", "127.0.0.1:1883"}, 2, "is not a URL like mqtt://host:1883"},
		{"bad broker scheme", []string{"sub", "-t", "x", "--broker", "ws://127.0.0.1:8080"}, 2, `scheme "ws" is not mqtt:// or mqtts://`},
		{"bad QoS", []string{"sub", "-t", "x", "-q", "3"}, 2, "-q must be 0, 1 or 2"},
		{"bad MQTT version", []string{"pub", "-t", "x", "-m", "y", "--mqtt-version", "3"}, 2, "--mqtt-version must be 5 or 3.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String()+stdout.String(), tc.stderr) {
				t.Errorf("exit %d, want %d; output %q, want it to contain %q", code, tc.code, stderr.String()+stdout.String(), tc.stderr)
			}
			if strings.Contains(stderr.String(), "s3cret") {
				t.Errorf("the secret was printed: %q", stderr.String())
			}
		})
	}
}
