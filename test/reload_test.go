//go:build e2e

package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// restartIdP stops test/idp and starts it again: oidc-provider reads its clients and its certificate
// at start-up only. The tokens it issued are gone with its memory.
func restartIdP(t *testing.T, e *env) {
	t.Helper()
	e.idp.Stop()
	e.idp.start()
}

// rotateBrokerSecret restarts the IdP with the broker's client secret changed to secret.
func rotateBrokerSecret(t *testing.T, e *env, secret string) {
	t.Helper()
	var list []map[string]any
	for _, c := range clients["clients"].([]map[string]any) {
		if c["client_id"] == "broker" {
			c = map[string]any{"client_id": "broker", "client_secret": secret}
		}
		list = append(list, c)
	}
	b, _ := json.Marshal(map[string]any{"clients": list})
	writeFile(t, e.dir, "clients.json", string(b))
	restartIdP(t, e)
}

// rotateIdPCertificate restarts the IdP with a certificate from a new CA, and returns that CA's PEM.
func rotateIdPCertificate(t *testing.T, e *env) string {
	t.Helper()
	next := newPKI(t, e.dir, "next")
	for from, to := range map[string]string{next.CertFile: e.pki.CertFile, next.KeyFile: e.pki.KeyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Dir(to), filepath.Base(to), string(b))
	}
	e.idp.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: next.Pool}}}
	restartIdP(t, e)
	b, err := os.ReadFile(next.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// On SIGHUP the plugin re-reads client_secret_file and ca_file: after a secret or CA rotated at the
// IdP, the file updated and a SIGHUP, fresh tokens are accepted again, and no connected client is
// dropped. Before the SIGHUP, with the file updated or not, fresh tokens are refused; a file that
// cannot be used at a SIGHUP keeps the value in use, and the log says why.
func TestReloadRereadsFiles(t *testing.T) {
	const (
		newSecret = "broker-secret-rotated-5d3c"
		// Both files are configured, so each SIGHUP re-reads both.
		reloaded = "reload: client_secret_file re-read; ca_file re-read: 1 certificate"
	)
	cases := []struct {
		name    string
		file    string                        // which of the two files the rotation concerns
		rotate  func(*testing.T, *env) string // changes the IdP; returns what the file must hold then
		broken  string                        // content that cannot be used
		warning string                        // the log line then, after the file's path
	}{
		{"client_secret_file", "secret", func(t *testing.T, e *env) string { rotateBrokerSecret(t, e, newSecret); return newSecret + "\n" },
			"\n", " is empty; keeping the client secret in use"},
		{"ca_file", "ca.pem", rotateIdPCertificate, "not a certificate\n", " holds no PEM certificate; keeping the CAs in use"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ca, err := os.ReadFile(e.pki.CAFile)
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]string{
				"secret": writeFile(t, e.dir, "secret", brokerSecret+"\n"),
				"ca.pem": writeFile(t, e.dir, "ca.pem", string(ca)),
			}
			b := startBroker(t, "listener LISTENER\n"+pluginBlock("introspection_endpoint", e.idp.IntrospectionURL(),
				"client_id", "broker", "client_secret_file", files["secret"], "ca_file", files["ca.pem"]))
			fresh := func(id string) byte {
				t.Helper()
				_, rc := connect5(t, b.Port, id, "alice", e.idp.Token("alice", aliceSecret, ""))
				return rc
			}
			// With a username: Mosquitto's SIGHUP disconnects anonymous clients unless allow_anonymous is true.
			keeper, rc := connect5(t, b.Port, "keeper", "alice", e.idp.Token("alice", aliceSecret, ""))
			if rc != 0 {
				t.Fatalf("before the rotation: CONNACK %#x", rc)
			}
			keeper.Subscribe(t, "reload/#")
			sighup := func() {
				t.Helper()
				n := strings.Count(b.Log(), "Reloading config")
				b.cmd.Process.Signal(syscall.SIGHUP)
				for deadline := time.Now().Add(5 * time.Second); strings.Count(b.Log(), "Reloading config") == n; time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no reload in the log:\n%s", b.Log())
					}
				}
			}

			content := tc.rotate(t, e)
			if rc := fresh("rotated-old-file"); rc != 0x87 {
				t.Errorf("IdP rotated, old file: CONNACK %#x, want 0x87", rc)
			}
			path := files[tc.file]
			writeFile(t, e.dir, tc.file, content)
			if rc := fresh("new-file-no-sighup"); rc != 0x87 {
				t.Errorf("file updated, no SIGHUP: CONNACK %#x, want 0x87 (the file is read at SIGHUP only)", rc)
			}
			sighup()
			if !b.WaitLog(reloaded, 5*time.Second) {
				t.Fatalf("no %q in the log:\n%s", reloaded, b.Log())
			}
			if rc := fresh("after-sighup"); rc != 0 {
				t.Errorf("after the SIGHUP: CONNACK %#x", rc)
			}

			writeFile(t, e.dir, tc.file, tc.broken)
			sighup()
			if !b.WaitLog(path+tc.warning, 5*time.Second) {
				t.Fatalf("no %q in the log:\n%s", path+tc.warning, b.Log())
			}
			c, rc := connect5(t, b.Port, "after-broken-file", "alice", e.idp.Token("alice", aliceSecret, ""))
			if rc != 0 {
				t.Fatalf("after a SIGHUP with a broken %s: CONNACK %#x", tc.file, rc)
			}

			c.Publish(t, "reload/still", "here")
			keeper.Expect(t, "reload/still here")
			select {
			case at := <-keeper.lost:
				t.Errorf("the client connected before the rotation was disconnected at %v", at)
			default:
			}
			b.Alive()
			b.AssertLogClean(newSecret)
		})
	}
}
