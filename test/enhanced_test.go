//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// staticAuther is the AuthHandler paho needs for enhanced authentication: the token goes in the CONNECT
// or the AUTH packet itself, so there is nothing to answer to a challenge.
type staticAuther struct{}

func (staticAuther) Authenticate(*paho.Auth) *paho.Auth { return &paho.Auth{} }
func (staticAuther) Authenticated()                     {}

// connectExt connects with MQTT 5 enhanced authentication: method as the Authentication Method and
// data as the Authentication Data. It returns the CONNACK reason code; the client is nil unless 0.
func connectExt(t *testing.T, port int, id, method string, data []byte) (*client, byte) {
	t.Helper()
	return connectV5(t, port, staticAuther{}, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: method, AuthData: data}})
}

// reauth sends AUTH 0x19 with a new token and reports whether the broker answered success.
func (c *client) reauth(t *testing.T, method, token string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.v5.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19,
		Properties: &paho.AuthProperties{AuthMethod: method, AuthData: []byte(token)}})
	if err != nil || resp == nil || !resp.Success {
		t.Logf("re-authentication: %+v, %v", resp, err)
		return false
	}
	return true
}

// bearer frames a token as RFC 7628's OAUTHBEARER client response.
func bearer(token string) []byte { return []byte("n,,\x01auth=Bearer " + token + "\x01\x01") }

// MQTT 5 enhanced authentication: the token in the Authentication Data under a method the operator
// enabled (Azure Event Grid's OAUTH2-JWT, RFC 7628's OAUTHBEARER) is checked exactly like a password
// token; an unknown method gets "bad authentication method"; a re-authentication with a fresh token of
// the same subject moves the lease past the first token's exp, and one with another subject's token or
// garbage ends the connection, while a control client stays.
func TestEnhancedAuth(t *testing.T) {
	e := newEnv(t)
	b := e.broker(t, "", "enhanced_auth_method", "OAUTH2-JWT OAUTHBEARER",
		"jwt_verification", "true", "jwt_issuer", e.idp.URL, "jwt_audience", jwtAudiences)
	if !b.WaitLog("signing keys from", 10*time.Second) {
		t.Fatalf("no key fetch:\n%s", b.Log())
	}
	control, rc := connectExt(t, b.Port, "control", "OAUTH2-JWT", []byte(e.idp.Token("carol", "carol-secret", "")))
	if rc != 0 {
		t.Fatalf("control: CONNACK %#x", rc)
	}
	control.Subscribe(t, "ext/#")

	t.Run("accepted, refused, unknown method", func(t *testing.T) {
		for _, tc := range []struct {
			name, method string
			data         []byte
			want         byte
		}{
			{"OAUTH2-JWT opaque", "OAUTH2-JWT", []byte(e.idp.Token("alice", aliceSecret, "")), 0},
			{"OAUTH2-JWT JWT", "OAUTH2-JWT", []byte(e.idp.Token("alice", aliceSecret, "urn:mqtt:es256")), 0},
			{"OAUTHBEARER JWT", "OAUTHBEARER", bearer(e.idp.Token("alice", aliceSecret, "urn:mqtt:rs256")), 0},
			{"OAUTH2-JWT garbage", "OAUTH2-JWT", []byte("not-a-token"), 0x87},
			{"OAUTHBEARER unframed", "OAUTHBEARER", []byte(e.idp.Token("alice", aliceSecret, "")), 0x87},
			{"unknown method", "SCRAM-SHA-256", []byte(e.idp.Token("alice", aliceSecret, "")), 0x8C},
		} {
			c, rc := connectExt(t, b.Port, "ext-"+strings.ReplaceAll(tc.name, " ", "-"), tc.method, tc.data)
			if rc != tc.want {
				t.Errorf("%s: CONNACK %#x, want %#x", tc.name, rc, tc.want)
			}
			if c != nil {
				c.Publish(t, "ext/"+tc.name, "in")
				control.Expect(t, "ext/"+tc.name+" in")
			}
		}
	})
	t.Run("re-authentication extends the session past the first exp", func(t *testing.T) {
		// shorty's tokens live 2 s from a whole second, so 1 to 2 s from now: renew 600 ms before exp.
		first := e.idp.Token("shorty", "shorty-secret", "urn:mqtt:es256")
		c, rc := connectExt(t, b.Port, "renewer", "OAUTH2-JWT", []byte(first))
		if rc != 0 {
			t.Fatalf("CONNACK %#x", rc)
		}
		time.Sleep(time.Until(jwtExpiry(t, first).Add(-600 * time.Millisecond)))
		fresh := e.idp.Token("shorty", "shorty-secret", "urn:mqtt:es256")
		if !c.reauth(t, "OAUTH2-JWT", fresh) {
			t.Fatalf("re-authentication with a fresh token of the same subject refused:\n%s", tail(b.Log(), 1500))
		}
		second := jwtExpiry(t, fresh)
		if !second.After(jwtExpiry(t, first)) {
			t.Fatalf("the fresh token expires no later than the first (%v)", second)
		}
		time.Sleep(time.Until(jwtExpiry(t, first).Add(300 * time.Millisecond))) // past the first token's exp
		select {
		case <-c.lost:
			t.Fatal("disconnected at the first token's exp despite the re-authentication")
		default:
		}
		c.Publish(t, "ext/renewed", "still here")
		control.Expect(t, "ext/renewed still here")
		select {
		case <-c.lost:
		case <-time.After(time.Until(second) + 3*time.Second):
			t.Error("not disconnected at the second token's exp")
		}
	})
	t.Run("re-authentication with another subject's token or garbage ends the connection", func(t *testing.T) {
		for _, tc := range []struct{ name, token string }{
			{"foreign", e.idp.Token("bob", "bob-secret", "")},
			{"garbage", "not-a-token"},
		} {
			c, rc := connectExt(t, b.Port, "reauth-"+tc.name, "OAUTH2-JWT", []byte(e.idp.Token("alice", aliceSecret, "")))
			if rc != 0 {
				t.Fatalf("%s: CONNACK %#x", tc.name, rc)
			}
			if c.reauth(t, "OAUTH2-JWT", tc.token) {
				t.Errorf("%s: re-authentication accepted", tc.name)
			}
			select {
			case <-c.lost:
			case <-time.After(3 * time.Second):
				t.Errorf("%s: still connected after a refused re-authentication", tc.name)
			}
		}
		control.Publish(t, "ext/control", "still here")
		control.Expect(t, "ext/control still here")
	})
	b.Alive()
	b.AssertLogClean()
}
