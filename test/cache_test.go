//go:build e2e

package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingProxy stands between the broker and test/idp and counts introspection requests, so tests can
// see what reached the IdP.
type countingProxy struct {
	*httptest.Server
	introspections atomic.Int64
}

func newCountingProxy(t *testing.T, e *env) *countingProxy {
	t.Helper()
	target, _ := url.Parse(e.idp.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pki.Pool}}
	p := &countingProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token/introspection" {
			p.introspections.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *countingProxy) opts() []string {
	return []string{"introspection_endpoint", p.URL + "/token/introspection", "client_id", "broker", "client_secret", brokerSecret}
}

// connectFour connects four devices with one token, alternating MQTT 3.1.1 and 5.
func connectFour(t *testing.T, b *broker, token string) []*client {
	t.Helper()
	var clients []*client
	for i, p := range []connectFunc{connect3, connect5, connect3, connect5} {
		c, rc := p(t, b.Port, "dev-"+string(rune('a'+i)), "alice", token)
		if rc != 0 {
			t.Fatalf("connect %d: %#x", i, rc)
		}
		clients = append(clients, c)
	}
	return clients
}

// With cache_ttl, devices reconnecting with the same token need no new request, and refusals are
// remembered too.
func TestCacheSparesTheIdP(t *testing.T) {
	e := newEnv(t)
	proxy := newCountingProxy(t, e)
	b := startBroker(t, "listener LISTENER\n"+pluginBlock(append(proxy.opts(), "cache_ttl", "300")...))
	token := e.idp.Token("alice", aliceSecret, "")
	connectFour(t, b, token)
	if n := proxy.introspections.Load(); n != 1 {
		t.Errorf("4 connects with one token made %d introspection requests, want 1", n)
	}
	garbage := "not-a-token"
	for i := 0; i < 3; i++ {
		connect5(t, b.Port, "bad", "", garbage)
	}
	if n := proxy.introspections.Load(); n != 2 {
		t.Errorf("3 connects with one refused token made %d requests in all, want 2 (refusals are cached)", n-1)
	}
	b.Alive()
	b.AssertLogClean(token, garbage)
}

// Without a cache (the default) every CONNECT asks the IdP, but Mosquitto's re-check of every connected
// client on SIGHUP is answered by the clients' leases: no request at all.
func TestReloadAsksNothing(t *testing.T) {
	e := newEnv(t)
	proxy := newCountingProxy(t, e)
	b := startBroker(t, "listener LISTENER\n"+pluginBlock(proxy.opts()...))
	token := e.idp.Token("alice", aliceSecret, "")
	clients := connectFour(t, b, token)
	if n := proxy.introspections.Load(); n != 4 {
		t.Errorf("4 connects without a cache made %d introspection requests, want 4", n)
	}
	b.cmd.Process.Signal(syscall.SIGHUP)
	if !b.WaitLog("Reloading config", 5*time.Second) {
		t.Fatal("no reload in the log")
	}
	time.Sleep(500 * time.Millisecond)
	clients[0].Subscribe(t, "after/reload")
	clients[1].Publish(t, "after/reload", "still here")
	clients[0].Expect(t, "after/reload still here")
	if n := proxy.introspections.Load(); n != 4 {
		t.Errorf("SIGHUP made %d introspection requests, want none", n-4)
	}
	b.Alive()
	b.AssertLogClean(token)
}

// After repeated IdP failures the breaker answers at once, cached tokens keep working, and a probe
// closes it when the IdP is back.
func TestCircuitBreaker(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "timeout", "1", "circuit_breaker_failures", "2", "circuit_breaker_cooldown", "1", "cache_ttl", "300")
	cached := e.idp.Token("alice", aliceSecret, "")
	if _, rc := connect5(t, b.Port, "warm", "", cached); rc != 0 {
		t.Fatalf("warm-up: %#x", rc)
	}
	fresh := []string{e.idp.Token("bob", "bob-secret", ""), e.idp.Token("bob", "bob-secret", ""), e.idp.Token("bob", "bob-secret", "")}
	e.idp.Stop()
	for _, tok := range fresh[:2] {
		connect5(t, b.Port, "f", "", tok)
	}
	if !b.WaitLog("circuit breaker open", 2*time.Second) {
		t.Fatalf("the breaker did not open:\n%s", b.Log())
	}
	start := time.Now()
	if _, rc := connect5(t, b.Port, "f", "", fresh[2]); rc != 0x87 {
		t.Errorf("open breaker: %#x", rc)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the open breaker took %v to answer", d)
	}
	if _, rc := connect5(t, b.Port, "warm2", "", cached); rc != 0 {
		t.Errorf("a cached token while the breaker is open: %#x", rc)
	}

	e.idp.start()
	time.Sleep(1100 * time.Millisecond) // the cool-down
	again := e.idp.Token("alice", aliceSecret, "")
	if _, rc := connect5(t, b.Port, "back", "", again); rc != 0 {
		t.Errorf("probe with the IdP back: %#x", rc)
	}
	if !b.WaitLog("circuit breaker closed", 2*time.Second) {
		t.Errorf("the breaker did not close:\n%s", b.Log())
	}
	b.AssertLogClean(cached, again)
}

// On Mosquitto 2.1 a slow IdP delays only the client whose token it is checking.
func TestSlowIdPDoesNotStallOthers(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.PostFormValue("token"), "slow") {
			select {
			case <-release:
			case <-time.After(3 * time.Second):
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"active":true,"sub":"x"}`))
	}))
	defer srv.Close()
	b := startBroker(t, "listener LISTENER\n"+pluginBlock("introspection_endpoint", srv.URL,
		"client_id", "broker", "client_secret", brokerSecret, "timeout", "5"))
	delayed := b.Delayed()
	sub, _ := connect5(t, b.Port, "sub", "", "fast-1")
	pub, _ := connect5(t, b.Port, "pub", "", "fast-2")
	if sub == nil || pub == nil {
		t.Fatal("fast clients refused")
	}
	sub.Subscribe(t, "t")

	// A client whose check is slow, and another that gives up and leaves while its check is pending.
	slow := make(chan byte, 1)
	go func() { _, rc := connect5(t, b.Port, "slow", "", "slow-1"); slow <- rc }()
	quitter, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port)))
	if err != nil {
		t.Fatal(err)
	}
	quitter.Write(connectPacket("quitter", "slow-2"))
	time.Sleep(200 * time.Millisecond)
	quitter.Close()

	start := time.Now()
	pub.Publish(t, "t", "during")
	sub.Expect(t, "t during")
	waited := time.Since(start)
	if delayed && waited > 500*time.Millisecond {
		t.Errorf("with delayed checks a message took %v while another token was being checked", waited)
	}
	t.Logf("delayed=%v: a message took %v while a slow token was checked", delayed, waited)
	close(release)
	if rc := <-slow; rc != 0 {
		t.Errorf("slow client: %#x", rc)
	}
	// The client that left is gone without harm, and its id is free again.
	if _, rc := connect5(t, b.Port, "quitter", "", "fast-3"); rc != 0 {
		t.Errorf("reusing the id of a client that left while pending: %#x", rc)
	}
	b.Alive()
}

// On SIGHUP Mosquitto re-checks every client with its current username: a client renamed from
// oauth2-token (the C plugin's third configuration) must survive it.
func TestRenamedClientSurvivesReload(t *testing.T) {
	e := newEnv(t)
	pw := passwordFile(t, e.dir, "bob", "bobpw")
	b := e.broker(t, "password_file "+pw+"\n",
		"username_validation", "true", "username_validation_template", "oauth2-token",
		"username_replacement", "true", "username_replacement_template", "%%oidc-email%%")
	token := e.idp.Token("alice", aliceSecret, "")
	c, rc := connect5(t, b.Port, "renamed", "oauth2-token", token)
	if rc != 0 {
		t.Fatalf("connect: %#x", rc)
	}
	b.cmd.Process.Signal(syscall.SIGHUP)
	if !b.WaitLog("Reloading config", 5*time.Second) {
		t.Fatal("no reload in the log")
	}
	time.Sleep(500 * time.Millisecond)
	c.Subscribe(t, "still/here")
	c.Publish(t, "still/here", "yes")
	c.Expect(t, "still/here yes")
	b.Alive()
}
