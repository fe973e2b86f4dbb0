package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/cache"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

// jwtIssuer is a test issuer: an ES256 key, published with discovery by an httptest server.
type jwtIssuer struct {
	srv     *httptest.Server
	signer  jose.Signer
	fetches atomic.Int64
}

func newJWTIssuer(t *testing.T) *jwtIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &jwtIssuer{}
	iss.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	iss.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss.srv.URL, "jwks_uri": iss.srv.URL + "/jwks"})
		case "/jwks":
			iss.fetches.Add(1)
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(iss.srv.Close)
	return iss
}

func (iss *jwtIssuer) token(t *testing.T, exp time.Time, extra string) string {
	t.Helper()
	payload := `{"iss":"` + iss.srv.URL + `","sub":"device-7","username":"dev7","exp":` + jsonNum(exp.Unix()) + extra + `}`
	obj, err := iss.signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }

// jwtEngine builds an engine with local JWT verification and, when intro is not nil, introspection.
func jwtEngine(t *testing.T, iss *jwtIssuer, intro verified.Verifier, clk *testClock, extra ...config.Option) (*Engine, *logRecorder) {
	t.Helper()
	opts := []config.Option{{Key: "jwt_verification", Value: "true"}, {Key: "jwt_issuer", Value: iss.srv.URL}}
	if intro != nil {
		opts = append(opts, config.Option{Key: "introspection_endpoint", Value: "https://idp.example/introspect"},
			config.Option{Key: "client_id", Value: "broker"}, config.Option{Key: "client_secret", Value: "s"})
	}
	cfg, err := config.Parse(append(opts, extra...))
	if err != nil {
		t.Fatal(err)
	}
	log := &logRecorder{}
	stats := new(counters)
	jv, err := newJWTVerifier(cfg, nil, log, clk.now, false, stats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jv.Close)
	var v verified.Verifier
	if intro != nil {
		v = intro
	}
	return newEngine(cfg, v, jv, log, clk.now, stats), log
}

func TestJWTRoutedLocallyWhileIntrospectionIsDown(t *testing.T) {
	iss := newJWTIssuer(t)
	clk := &testClock{t: time.Now()}
	idp := &scriptedIdP{err: errDown}
	e, _ := jwtEngine(t, iss, idp, clk, opt("circuit_breaker_failures", "1"),
		opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-username%%"))
	ctx := context.Background()
	// Open the breaker with an opaque token.
	if d := e.Authenticate(ctx, Request{ClientID: "c0", Password: "opaque-1"}); d.Result != Deny {
		t.Fatalf("opaque token with the IdP down: %v", d.Result)
	}
	tok := iss.token(t, clk.t.Add(time.Hour), "")
	d := e.Authenticate(ctx, Request{ClientID: "c1", Password: tok})
	if d.Result != Allow || d.Username != "dev7" || d.Introspected {
		t.Fatalf("JWT with introspection down: %+v", d)
	}
	if n := idp.calls.Load(); n != 1 {
		t.Errorf("introspection called %d times, want 1 (the opaque token only)", n)
	}
	// Another JWT is decided from memory with the held key: no I/O, no delayed path.
	if d, ok := e.FromMemory(Request{ClientID: "c2", Password: iss.token(t, clk.t.Add(time.Hour), `,"n":2`)}); !ok || d.Result != Allow || d.Introspected {
		t.Fatalf("FromMemory for a JWT with a held key: ok=%v %+v", ok, d)
	}
	if n := iss.fetches.Load(); n != 1 {
		t.Errorf("%d key fetches, want 1", n)
	}
}

func TestJWTOnlyRefusesOtherTokens(t *testing.T) {
	iss := newJWTIssuer(t)
	clk := &testClock{t: time.Now()}
	e, log := jwtEngine(t, iss, nil, clk)
	d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: "opaque-token"})
	if d.Result != Deny || !strings.Contains(log.text(), "no introspection_endpoint") {
		t.Fatalf("opaque token without introspection: %v, log %q", d.Result, log.text())
	}
	if d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: iss.token(t, clk.t.Add(time.Hour), "")}); d.Result != Allow {
		t.Fatalf("JWT: %v", d.Result)
	}
}

func TestJWTCacheEntryEndsAtExp(t *testing.T) {
	iss := newJWTIssuer(t)
	clk := &testClock{t: time.Now()}
	e, log := jwtEngine(t, iss, nil, clk, opt("jwt_clock_skew", "0"))
	tok := iss.token(t, clk.t.Add(90*time.Second), "")
	req := Request{ClientID: "c", Password: tok}
	if d := e.Authenticate(context.Background(), req); d.Result != Allow {
		t.Fatalf("fresh JWT: %v", d.Result)
	}
	clk.advance(91 * time.Second)
	// The cache entry lived until exp only; the token is checked again and is now expired.
	d, ok := e.FromMemory(req)
	if !ok || d.Result != Deny || !strings.Contains(log.text(), "jwt: expired") {
		t.Fatalf("after exp: ok=%v %v, log %q", ok, d.Result, log.text())
	}
}

func TestJWTKeysUnavailableFollowsPolicy(t *testing.T) {
	iss := newJWTIssuer(t)
	clk := &testClock{t: time.Now()}
	e, log := jwtEngine(t, iss, nil, clk, opt("token_verification_error", "defer"))
	tok := iss.token(t, clk.t.Add(time.Hour), "")
	iss.srv.Close() // no keys were ever fetched
	d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: tok})
	if d.Result != Defer || !strings.Contains(log.text(), "signing keys unavailable") {
		t.Fatalf("keys unavailable: %v, log %q", d.Result, log.text())
	}
	if _, hit := e.v.cached(cache.KeyOf(tok)); hit {
		t.Error("an IdP failure was cached")
	}
}

func (l *logRecorder) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
