//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// jwtAudiences are the resources test/idp issues JWT access tokens for (RS256 and ES256).
const jwtAudiences = "urn:mqtt:rs256 urn:mqtt:es256"

// checkRenamedFromJWT connects with token, which must be accepted and renamed to the token's username
// claim: acl_file's "pattern readwrite jwt/%u/#" then lets it subscribe and publish under jwt/alice/.
func checkRenamedFromJWT(t *testing.T, b *broker, id, token string) {
	t.Helper()
	for _, p := range protocols {
		c, rc := p.connect(t, b.Port, id+"-"+p.name, "device", token)
		if rc != 0 {
			t.Fatalf("%s %s: CONNACK %#x, want 0", id, p.name, rc)
		}
		if got := c.Subscribe(t, "jwt/alice/#"); got >= 0x80 {
			t.Fatalf("%s %s: subscribe to jwt/alice/# refused (%#x): the username is not alice", id, p.name, got)
		}
		c.Publish(t, "jwt/alice/"+p.name, id)
		c.Expect(t, "jwt/alice/"+p.name+" "+id)
	}
}

// JWT access tokens are verified locally with keys found by discovery; the IdP may stop and rotate
// its keys without the broker noticing more than one key fetch.
func TestJWTVerification(t *testing.T) {
	e := newEnv(t)
	acl := writeFile(t, e.dir, "acl", "pattern readwrite jwt/%u/#\n")
	started := time.Now()
	b := e.broker(t, "acl_file "+acl+"\n",
		"jwt_verification", "true", "jwt_issuer", e.idp.URL, "jwt_audience", jwtAudiences, "timeout", "1",
		"username_replacement", "true", "username_replacement_template", "%%oidc-username%%")
	if !b.WaitLog("signing keys from "+e.idp.URL+"/jwks", 10*time.Second) {
		t.Fatalf("no key fetch logged after start-up:\n%s", b.Log())
	}
	var secrets []string
	token := func(resource string) string {
		tok := e.idp.Token("alice", aliceSecret, resource)
		secrets = append(secrets, tok)
		return tok
	}

	t.Run("RS256 and ES256 with discovery", func(t *testing.T) {
		checkRenamedFromJWT(t, b, "rs", token("urn:mqtt:rs256"))
		checkRenamedFromJWT(t, b, "es", token("urn:mqtt:es256"))
	})
	t.Run("opaque tokens still introspected", func(t *testing.T) {
		checkRenamedFromJWT(t, b, "opaque", token(""))
	})
	t.Run("another audience refused", func(t *testing.T) {
		other := token("urn:elsewhere:rs256")
		for _, p := range protocols {
			if _, rc := p.connect(t, b.Port, "aud-"+p.name, "device", other); rc != p.refused {
				t.Errorf("%s: token for another audience got CONNACK %#x", p.name, rc)
			}
		}
		if !strings.Contains(b.Log(), `jwt: wrong audience: aud "urn:elsewhere:rs256", want one of jwt_audience "`+jwtAudiences+`"`) {
			t.Errorf("the log does not say why, with the token's aud and the expected ones:\n%s", b.Log())
		}
	})
	t.Run("IdP down: JWTs accepted, opaque tokens refused", func(t *testing.T) {
		jwts := map[string]string{}
		for _, p := range protocols {
			jwts[p.name] = token("urn:mqtt:rs256") // fresh ones: not in the cache
		}
		opaque := token("")
		e.idp.Stop()
		for _, p := range protocols {
			if _, rc := p.connect(t, b.Port, "down-"+p.name, "device", jwts[p.name]); rc != 0 {
				t.Errorf("%s: JWT with the IdP down got CONNACK %#x", p.name, rc)
			}
			if _, rc := p.connect(t, b.Port, "down-opaque-"+p.name, "device", opaque); rc != p.refused {
				t.Errorf("%s: opaque token with the IdP down got CONNACK %#x", p.name, rc)
			}
		}
	})
	t.Run("keys rotated", func(t *testing.T) {
		// test/idp makes new keys each start. The plugin fetches keys for an unknown kid at most once per
		// 5 s, and fetched them at start-up. On 2.1 the first token with a new kid waits for the fetch; on
		// 2.0 it starts the fetch and is refused, so the broker thread never waits while it holds keys.
		e.idp.start()
		time.Sleep(time.Until(started.Add(6 * time.Second)))
		rs := token("urn:mqtt:rs256")
		_, rc := connect5(t, b.Port, "rotated-first", "device", rs)
		if rc != 0 && rc != notAuthorized {
			t.Fatalf("first token with a new kid: CONNACK %#x", rc)
		}
		for deadline := time.Now().Add(10 * time.Second); strings.Count(b.Log(), "signing keys from") < 2; {
			if time.Now().After(deadline) {
				t.Fatalf("no second key fetch logged:\n%s", b.Log())
			}
			time.Sleep(50 * time.Millisecond)
		}
		checkRenamedFromJWT(t, b, "rotated-rs", rs)
		checkRenamedFromJWT(t, b, "rotated-es", token("urn:mqtt:es256"))
		if n := strings.Count(b.Log(), "signing keys from"); n != 2 {
			t.Errorf("%d key set changes logged, want 2 (start-up, rotation):\n%s", n, b.Log())
		}
	})
	b.Alive()
	b.AssertLogClean(secrets...)
}

// Without introspection_endpoint only JWTs of jwt_issuer can get in.
func TestJWTOnly(t *testing.T) {
	e := newEnv(t)
	b := startBroker(t, "listener LISTENER\n"+pluginBlock(
		"jwt_verification", "true", "jwt_issuer", e.idp.URL, "ca_file", e.pki.CAFile))
	jwt := e.idp.Token("bob", "bob-secret", "urn:mqtt:es256")
	opaque := e.idp.Token("bob", "bob-secret", "")
	for _, p := range protocols {
		if _, rc := p.connect(t, b.Port, "jwt-"+p.name, "bob", jwt); rc != 0 {
			t.Errorf("%s: JWT got CONNACK %#x", p.name, rc)
		}
		if _, rc := p.connect(t, b.Port, "opaque-"+p.name, "bob", opaque); rc != p.refused {
			t.Errorf("%s: opaque token got CONNACK %#x", p.name, rc)
		}
	}
	if !strings.Contains(b.Log(), "no introspection_endpoint") {
		t.Errorf("the log does not say why the opaque token was refused:\n%s", b.Log())
	}
	b.Alive()
	b.AssertLogClean(jwt, opaque)
}

// A JWT whose iss is not jwt_issuer, here by a trailing slash, goes to introspection, and the log says
// so with the token's iss next to jwt_issuer; the refusal, if introspection refuses it, says it too.
func TestJWTOfAnotherIssuerSaysWhy(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "jwt_verification", "true", "jwt_issuer", e.idp.URL+"/", "jwks_endpoint", e.idp.URL+"/jwks")
	tok := e.idp.Token("alice", aliceSecret, "urn:mqtt:rs256")
	why := `iss "` + e.idp.URL + `" is not jwt_issuer "` + e.idp.URL + `/"`
	_, rc := connect5(t, b.Port, "other-iss", "", tok)
	if !b.WaitLog("a JWT goes to introspection, not local verification: "+why, 5*time.Second) {
		t.Errorf("the routing is not logged:\n%s", b.Log())
	}
	if rc != 0 && !strings.Contains(b.Log(), "(a JWT sent to introspection: "+why+")") {
		t.Errorf("refused (CONNACK %#x) without the reason:\n%s", rc, b.Log())
	}
	b.Alive()
	b.AssertLogClean(tok)
}
