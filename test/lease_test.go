//go:build e2e

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// jwtExpiry reads the exp of a JWT access token, for measuring how late its client is disconnected.
func jwtExpiry(t *testing.T, token string) time.Time {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Exp int64 }
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == 0 {
		t.Fatalf("no exp in the JWT: %v", err)
	}
	return time.Unix(claims.Exp, 0)
}

// Every admitted client is disconnected when its token expires (test/idp gives shorty's tokens 2 s):
// MQTT 3.1.1 and 5, opaque and JWT, a fresh check and a cache hit. A client whose token lives an hour
// stays connected and keeps receiving, and a kicked client's Will is not sent, while the Will of a
// client that vanishes before its exp is.
func TestExpiryDisconnects(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "jwt_verification", "true", "jwt_issuer", e.idp.URL, "jwt_audience", jwtAudiences, "cache_ttl", "300")
	if !b.WaitLog("signing keys from", 10*time.Second) {
		t.Fatalf("no key fetch:\n%s", b.Log())
	}
	control, rc := connect5(t, b.Port, "control", "alice", e.idp.Token("alice", aliceSecret, ""))
	if rc != 0 {
		t.Fatalf("control: CONNACK %#x", rc)
	}
	control.Subscribe(t, "will/#")

	type lease struct {
		name string
		c    *client
		exp  time.Time // exact for JWTs; for opaque tokens the latest it can be
	}
	var leases []lease
	for _, kind := range []struct{ name, resource string }{{"opaque", ""}, {"jwt", "urn:mqtt:es256"}} {
		issued := time.Now()
		token := e.idp.Token("shorty", "shorty-secret", kind.resource)
		exp := issued.Add(2 * time.Second)
		if kind.resource != "" {
			exp = jwtExpiry(t, token)
		}
		// The first connect of each token is checked fresh; the second is a cache hit (or, for the JWT,
		// verified again with the key held).
		for i, p := range []struct {
			name    string
			connect connectFunc
		}{{"mqtt311-fresh", connect3}, {"mqtt5-cached", connect5}} {
			name := kind.name + "-" + p.name
			c, rc := p.connect(t, b.Port, name, "shorty", token)
			if rc != 0 {
				t.Fatalf("%s (connect %d): CONNACK %#x", name, i, rc)
			}
			leases = append(leases, lease{name, c, exp})
		}
	}
	willToken := e.idp.Token("shorty", "shorty-secret", "")
	kickedWill := connectWithWill(t, b, "will-kicked", willToken, "will/kicked", "sent")
	defer kickedWill.Close()
	vanishing := connectWithWill(t, b, "will-vanishing", willToken, "will/vanishing", "sent")
	vanishing.Close()
	control.Expect(t, "will/vanishing sent")

	var late []time.Duration
	for _, l := range leases {
		select {
		case at := <-l.c.lost:
			d := at.Sub(l.exp)
			t.Logf("%s: disconnected %v after exp", l.name, d.Round(time.Millisecond))
			if strings.HasPrefix(l.name, "jwt") {
				late = append(late, d)
			}
			if d > 1500*time.Millisecond {
				t.Errorf("%s: disconnected %v after its token's exp", l.name, d)
			}
		case <-time.After(time.Until(l.exp) + 5*time.Second):
			t.Errorf("%s: still connected 5 s after its token's exp", l.name)
		}
	}
	kickedWill.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, kickedWill); err != nil {
		t.Errorf("the client with a Will was not disconnected: %v", err)
	}
	slices.Sort(late)
	if len(late) > 0 {
		t.Logf("JWT clients disconnected after exp: p50 %v, max %v", late[len(late)/2].Round(time.Millisecond), late[len(late)-1].Round(time.Millisecond))
	}
	// The control client, with an hour left, is still connected and receiving; the kicked Will never came.
	control.Subscribe(t, "after/kicks")
	control.Publish(t, "after/kicks", "alive")
	control.Expect(t, "after/kicks alive")
	control.ExpectNothing(t)
	if n := strings.Count(b.Log(), "token expired; disconnecting"); n != len(leases)+1 {
		t.Errorf("%d expiry lines in the log, want %d", n, len(leases)+1)
	}
	b.Alive()
}

// With disconnect_on_expiry false a client stays connected past its token's exp, as with the C plugin.
// The same setup with the default is TestExpiryDisconnects.
func TestExpiryKeepsClientsWhenOff(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "disconnect_on_expiry", "false")
	c, rc := connect3(t, b.Port, "stays", "shorty", e.idp.Token("shorty", "shorty-secret", ""))
	if rc != 0 {
		t.Fatalf("CONNACK %#x", rc)
	}
	select {
	case <-c.lost:
		t.Fatal("disconnected although disconnect_on_expiry is false")
	case <-time.After(3500 * time.Millisecond):
	}
	c.Subscribe(t, "still/here")
	c.Publish(t, "still/here", "yes")
	c.Expect(t, "still/here yes")
	if strings.Contains(b.Log(), "token expired") {
		t.Error("an expiry was logged although disconnect_on_expiry is false")
	}
	b.Alive()
}

// A token revoked at the IdP is refused at the next CONNECT (no cache by default, as with the C plugin);
// a fresh token of the same device is the control.
func TestRevokedTokenRefusedAtReconnect(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "")
	token := e.idp.Token("alice", aliceSecret, "")
	for _, p := range protocols {
		c, rc := p.connect(t, b.Port, "before-"+p.name, "alice", token)
		if rc != 0 {
			t.Fatalf("%s: before revocation: CONNACK %#x", p.name, rc)
		}
		if c.v3 != nil {
			c.v3.Disconnect(0)
		}
	}
	e.idp.Revoke(token)
	for _, p := range protocols {
		if _, rc := p.connect(t, b.Port, "after-"+p.name, "alice", token); rc != p.refused {
			t.Errorf("%s: revoked token: CONNACK %#x, want %#x", p.name, rc, p.refused)
		}
		if _, rc := p.connect(t, b.Port, "fresh-"+p.name, "alice", e.idp.Token("alice", aliceSecret, "")); rc != 0 {
			t.Errorf("%s: fresh token after the revocation: CONNACK %#x", p.name, rc)
		}
	}
	b.Alive()
}

// With reintrospection_interval, a token revoked at the IdP disconnects its client within a few
// intervals, and the client of another token stays connected and keeps receiving. The re-checks cost
// the IdP about one request per client per interval (counted at a proxy).
func TestReintrospectionKicksRevoked(t *testing.T) {
	e := newEnv(t)
	proxy := newCountingProxy(t, e)
	b := startBroker(t, "listener LISTENER\n"+pluginBlock(append(proxy.opts(), "reintrospection_interval", "1")...))
	revoked := e.idp.Token("alice", aliceSecret, "")
	kept := e.idp.Token("bob", "bob-secret", "")
	victim, rc := connect3(t, b.Port, "victim", "alice", revoked)
	if rc != 0 {
		t.Fatalf("victim: CONNACK %#x", rc)
	}
	control, rc := connect5(t, b.Port, "control", "bob", kept)
	if rc != 0 {
		t.Fatalf("control: CONNACK %#x", rc)
	}
	control.Subscribe(t, "fleet/#")
	start, before := time.Now(), proxy.introspections.Load()
	time.Sleep(3 * time.Second)
	rate := float64(proxy.introspections.Load()-before) / time.Since(start).Seconds()
	t.Logf("re-checks of 2 clients every 1 s: %.1f introspection requests a second", rate)
	if rate < 1 || rate > 3 {
		t.Errorf("%.1f requests a second for 2 clients re-checked every second, want about 2", rate)
	}

	e.idp.Revoke(revoked)
	revokedAt := time.Now()
	select {
	case at := <-victim.lost:
		t.Logf("disconnected %v after the revocation", at.Sub(revokedAt).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatalf("still connected 5 s after its token was revoked:\n%s", b.Log())
	}
	control.Publish(t, "fleet/after", "alive")
	control.Expect(t, "fleet/after alive")
	select {
	case <-control.lost:
		t.Error("the control client was disconnected")
	default:
	}
	log := b.Log()
	if n := strings.Count(log, "disconnecting"); n != 1 || !strings.Contains(log, `client "victim": token no longer valid at the identity provider`) {
		t.Errorf("want one line disconnecting the victim, got %d:\n%s", n, log)
	}
	b.Alive()
	b.AssertLogClean(revoked, kept)
}

// An IdP that stops answering while clients are re-checked disconnects nobody: the re-checks fail, the
// circuit breaker opens, and every client stays connected and keeps exchanging messages.
func TestReintrospectionSurvivesIdPOutage(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "reintrospection_interval", "1", "timeout", "1")
	pub, rc := connect3(t, b.Port, "pub", "alice", e.idp.Token("alice", aliceSecret, ""))
	if rc != 0 {
		t.Fatalf("pub: CONNACK %#x", rc)
	}
	sub, rc := connect5(t, b.Port, "sub", "bob", e.idp.Token("bob", "bob-secret", ""))
	if rc != 0 {
		t.Fatalf("sub: CONNACK %#x", rc)
	}
	sub.Subscribe(t, "fleet/#")
	e.idp.Stop()
	if !b.WaitLog("circuit breaker open", 8*time.Second) {
		t.Errorf("the re-checks did not open the breaker:\n%s", b.Log())
	}
	time.Sleep(3 * time.Second) // more intervals with the breaker open
	for _, c := range []*client{pub, sub} {
		select {
		case <-c.lost:
			t.Fatalf("a client was disconnected while the IdP was down:\n%s", b.Log())
		default:
		}
	}
	pub.Publish(t, "fleet/during", "outage")
	sub.Expect(t, "fleet/during outage")
	if strings.Contains(b.Log(), "disconnecting") {
		t.Errorf("the log disconnects someone:\n%s", b.Log())
	}
	b.Alive()
}

// Re-checks further apart than the IdP's keep-alive timeout (node's 5 s) find their kept connection
// closed by the IdP, and must still reach it: a revoked token is seen at the check after the pause.
func TestReintrospectionAfterKeepAlivePause(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "reintrospection_interval", "6")
	token := e.idp.Token("alice", aliceSecret, "")
	victim, rc := connect5(t, b.Port, "victim", "alice", token)
	if rc != 0 {
		t.Fatalf("CONNACK %#x", rc)
	}
	time.Sleep(6500 * time.Millisecond) // one check happened, and the IdP closed its idle connection
	e.idp.Revoke(token)
	select {
	case <-victim.lost:
	case <-time.After(8 * time.Second):
		t.Fatalf("still connected 8 s after its token was revoked:\n%s", b.Log())
	}
	if strings.Contains(b.Log(), "introspection failed") {
		t.Errorf("a re-check failed:\n%s", b.Log())
	}
	b.Alive()
}
