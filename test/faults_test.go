//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// An IdP that goes away must cost a new client at most the timeout, and nobody already connected
// anything.
func TestIdPStopped(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "timeout", "1")
	sub, rc := connect5(t, b.Port, "sub", "", e.idp.Token("alice", aliceSecret, ""))
	if rc != 0 {
		t.Fatalf("subscriber: %#x", rc)
	}
	pub, rc := connect3(t, b.Port, "pub", "alice", e.idp.Token("alice", aliceSecret, ""))
	if rc != 0 {
		t.Fatalf("publisher: %#x", rc)
	}
	sub.Subscribe(t, "fleet/#")
	fresh := e.idp.Token("bob", "bob-secret", "")
	e.idp.Stop()

	for _, p := range protocols {
		start := time.Now()
		if _, rc := p.connect(t, b.Port, "late-"+p.name, "", fresh); rc != p.refused {
			t.Errorf("%s with the IdP down: CONNACK %#x, want %#x", p.name, rc, p.refused)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: refusal took %v, more than timeout + 1s", p.name, d)
		}
		pub.Publish(t, "fleet/a", p.name)
		sub.Expect(t, "fleet/a "+p.name)
	}
	b.Alive()
	if !strings.Contains(b.Log(), "introspection failed") {
		t.Errorf("the log does not say why:\n%s", b.Log())
	}
	b.AssertLogClean(fresh)
}

// A broken IdP (errors, garbage, huge bodies, redirects, slowness) gets each client a clean refusal
// and leaves the broker running.
func TestFaultyIdP(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the plugin followed a redirect")
		fmt.Fprint(w, `{"active":true}`)
	}))
	defer target.Close()
	faults := map[string]func(w http.ResponseWriter){
		"status-500": func(w http.ResponseWriter) { http.Error(w, `{"active":true}`, http.StatusInternalServerError) },
		"malformed": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"active":true,`)
		},
		"huge-body": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"active":true,"pad":"`)
			w.Write([]byte(strings.Repeat("x", 10<<20)))
			fmt.Fprint(w, `"}`)
		},
		"redirect": func(w http.ResponseWriter) {
			w.Header().Set("Location", target.URL)
			w.WriteHeader(http.StatusFound)
		},
		"active-string": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"active":"true"}`)
		},
		"slow": func(w http.ResponseWriter) { time.Sleep(3 * time.Second) },
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := faults[r.PostFormValue("token")]; ok {
			f(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"active":true,"sub":"ok"}`)
	}))
	defer srv.Close()

	b := startBroker(t, "listener LISTENER\n"+pluginBlock("introspection_endpoint", srv.URL,
		"client_id", "broker", "client_secret", brokerSecret, "timeout", "1",
		// Twelve failures in a row would open the breaker; this test is about each fault on its own.
		"circuit_breaker_failures", "0"))
	for token := range faults {
		for _, p := range protocols {
			start := time.Now()
			if _, rc := p.connect(t, b.Port, "f", "", token); rc != p.refused {
				t.Errorf("%s %s: CONNACK %#x, want %#x", p.name, token, rc, p.refused)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s %s: took %v", p.name, token, d)
			}
		}
	}
	if _, rc := connect5(t, b.Port, "ok", "", "good-token"); rc != 0 {
		t.Errorf("after the faults a good token got %#x", rc)
	}
	if want := `redirect (status 302) to "` + target.URL + `" not followed`; !strings.Contains(b.Log(), want) {
		t.Errorf("the log does not say where the redirect led (%s):\n%s", want, b.Log())
	}
	b.Alive()
}

// TLS is verified by default: an IdP certificate from an unknown CA is refused until ca_file names the
// CA.
func TestIdPCertificate(t *testing.T) {
	e := newEnv(t)
	token := e.idp.Token("alice", aliceSecret, "")
	base := []string{"introspection_endpoint", e.idp.IntrospectionURL(), "client_id", "broker", "client_secret", brokerSecret}
	untrusted := startBroker(t, "listener LISTENER\n"+pluginBlock(base...))
	if _, rc := connect5(t, untrusted.Port, "c", "", token); rc != 0x87 {
		t.Errorf("untrusted IdP certificate: CONNACK %#x, want 0x87", rc)
	}
	if !strings.Contains(untrusted.Log(), "certificate") {
		t.Errorf("the log does not say the certificate was refused:\n%s", untrusted.Log())
	}
	trusted := startBroker(t, "listener LISTENER\n"+pluginBlock(append(base, "ca_file", e.pki.CAFile)...))
	if _, rc := connect5(t, trusted.Port, "c", "", token); rc != 0 {
		t.Errorf("with ca_file: CONNACK %#x, want 0", rc)
	}
	unverified := startBroker(t, "listener LISTENER\n"+pluginBlock(append(base, "tls_verification", "false")...))
	if _, rc := connect5(t, unverified.Port, "c", "", token); rc != 0 {
		t.Errorf("with tls_verification false: CONNACK %#x, want 0", rc)
	}
}

// client_secret_post and client_secret_file, as a Kubernetes or Docker secret would be mounted.
func TestClientSecretPostFromFile(t *testing.T) {
	e := newEnv(t)
	secretFile := writeFile(t, e.dir, "client_secret", brokerSecret+"\n")
	b := startBroker(t, "listener LISTENER\n"+pluginBlock("introspection_endpoint", e.idp.IntrospectionURL(),
		"client_id", "broker-post", "client_secret_file", secretFile, "introspection_auth_method", "client_secret_post",
		"ca_file", e.pki.CAFile))
	token := e.idp.Token("alice", aliceSecret, "")
	if _, rc := connect3(t, b.Port, "c", "alice", token); rc != 0 {
		t.Errorf("CONNACK %d, want 0", rc)
	}
	b.AssertLogClean(token)
}

// With per_listener_settings true, each listener's plugin instance keeps its own options.
func TestTwoListeners(t *testing.T) {
	e := newEnv(t)
	token := e.idp.Token("alice", aliceSecret, "")
	common := introspectionOpts(e.idp, e.pki)
	conf := "per_listener_settings true\n" +
		"listener LISTENER\n" + pluginBlock(common...) +
		"listener LISTENER\n" + pluginBlock(append(common, "username_validation", "true",
		"username_validation_template", "user-%%oidc-username%%", "username_validation_error", "deny")...)
	b := startBroker(t, conf)
	open, strict := b.Ports[0], b.Ports[1]
	for _, p := range protocols {
		if _, rc := p.connect(t, open, "a", "anyone", token); rc != 0 {
			t.Errorf("%s first listener: %#x, want 0", p.name, rc)
		}
		if _, rc := p.connect(t, strict, "b", "anyone", token); rc != p.refused {
			t.Errorf("%s second listener, wrong username: %#x, want %#x", p.name, rc, p.refused)
		}
		if _, rc := p.connect(t, strict, "c", "user-alice", token); rc != 0 {
			t.Errorf("%s second listener, right username: %#x, want 0", p.name, rc)
		}
	}
	b.AssertLogClean(token)
}
