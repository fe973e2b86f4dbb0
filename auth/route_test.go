package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
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
	key     *ecdsa.PrivateKey
	signer  jose.Signer
	fetches atomic.Int64
}

func newJWTIssuer(t *testing.T) *jwtIssuer {
	t.Helper()
	iss := newSigningIssuer(t)
	iss.srv = httptest.NewServer(iss.publish(http.NotFound))
	t.Cleanup(iss.srv.Close)
	return iss
}

// newSigningIssuer makes the issuer's key; its server is the caller's to start, with publish.
func newSigningIssuer(t *testing.T) *jwtIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &jwtIssuer{key: key}
	iss.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// publish serves discovery and the key set, and hands other paths to next.
func (iss *jwtIssuer) publish(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss.srv.URL, "jwks_uri": iss.srv.URL + "/jwks"})
		case "/jwks":
			iss.fetches.Add(1)
			json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &iss.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
		default:
			next(w, r)
		}
	}
}

func (iss *jwtIssuer) token(t *testing.T, exp time.Time, extra string) string {
	t.Helper()
	return iss.sign(t, `{"iss":"`+iss.srv.URL+`","sub":"device-7","username":"dev7","exp":`+jsonNum(exp.Unix())+extra+`}`)
}

// sign signs payload, whatever it claims, with the issuer's key.
func (iss *jwtIssuer) sign(t *testing.T, payload string) string {
	t.Helper()
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

// A JWT that is not verified locally says why, at info level when jwt_verification is on (the
// operator expected it here) and debug when it is off, and a refusal carries the reason; the token's
// iss is quoted next to jwt_issuer. Other tokens go to introspection without a word.
func TestRoutingSaysWhy(t *testing.T) {
	iss := newJWTIssuer(t)
	clk := &testClock{t: time.Now()}
	exp := jsonNum(clk.t.Add(time.Hour).Unix())
	foreign := iss.sign(t, `{"iss":"`+iss.srv.URL+`/","sub":"d","exp":`+exp+`}`)
	forged := iss.sign(t, `{"iss":"x\r\n1999999999: New client connected","sub":"d","exp":`+exp+`}`)
	noIss := iss.sign(t, `{"sub":"d","exp":`+exp+`}`)
	inactive := &scriptedIdP{err: fmt.Errorf("%w: inactive", verified.ErrInvalid)}
	active := &scriptedIdP{res: verified.Token{Claims: []byte(`{"active":true}`), Source: verified.Introspection}}
	issIs := `iss "` + iss.srv.URL + `/" is not jwt_issuer "` + iss.srv.URL + `"`
	tests := []struct {
		name     string
		intro    verified.Verifier // nil: jwt_verification without introspection
		noJWT    bool              // introspection only
		token    string
		want     Result
		route    string // the routing line's text; "" for none
		level    Level
		refusal  string // part of the refusal; "" when accepted
		notInLog string
	}{
		{name: "other iss, refused by introspection", intro: inactive, token: foreign, want: Deny,
			route: "a JWT goes to introspection, not local verification: " + issIs, level: LevelInfo,
			refusal: "token verification failed: token rejected: inactive (a JWT sent to introspection: " + issIs + ") (deny)"},
		{name: "other iss, accepted by introspection", intro: active, token: foreign, want: Allow,
			route: "not local verification: " + issIs, level: LevelInfo},
		{name: "iss with a line break", intro: inactive, token: forged, want: Deny,
			route: `iss "x\r\n1999999999: New client connected" is not jwt_issuer`, level: LevelInfo,
			refusal: `(a JWT sent to introspection: iss "x\r\n1999999999`, notInLog: "\n1999999999"},
		{name: "no iss", intro: inactive, token: noIss, want: Deny,
			route: "not local verification: its payload holds no iss string", level: LevelInfo,
			refusal: "inactive (a JWT sent to introspection: its payload holds no iss string)"},
		{name: "opaque token", intro: inactive, token: "opaque-token", want: Deny,
			refusal: "token verification failed: token rejected: inactive (deny)"},
		{name: "other iss, no introspection", token: foreign, want: Deny,
			refusal: "token verification failed: token rejected: " + issIs + ", and no introspection_endpoint is set (deny)"},
		{name: "opaque token, no introspection", token: "opaque-token", want: Deny,
			refusal: "token rejected: not a JWS, and no introspection_endpoint is set"},
		{name: "jwt_verification off", intro: inactive, noJWT: true, token: foreign, want: Deny,
			route: "a JWT goes to introspection, not local verification: jwt_verification is false", level: LevelDebug,
			refusal: "token verification failed: token rejected: inactive (deny)"},
		{name: "jwt_verification off, opaque token", intro: inactive, noJWT: true, token: "opaque-token", want: Deny,
			refusal: "token rejected: inactive (deny)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *Engine
			var log *logRecorder
			if tt.noJWT {
				e, log = newTestEngine(t, tt.intro, clk)
			} else {
				e, log = jwtEngine(t, iss, tt.intro, clk)
			}
			if d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: tt.token}); d.Result != tt.want {
				t.Fatalf("%v, want %v; log %q", d.Result, tt.want, log.text())
			}
			line, level, found := log.find("goes to introspection")
			switch {
			case tt.route == "" && found:
				t.Errorf("routing logged: %q", line)
			case tt.route != "" && (!strings.Contains(line, tt.route) || level != tt.level):
				t.Errorf("routing line %q at level %d, want %q at %d; log %q", line, level, tt.route, tt.level, log.text())
			}
			if tt.refusal != "" {
				if _, _, ok := log.find(tt.refusal); !ok {
					t.Errorf("no refusal holding %q in %q", tt.refusal, log.text())
				}
			}
			text := log.text()
			if strings.Contains(text, tt.token) || (tt.notInLog != "" && strings.Contains(text, tt.notInLog)) {
				t.Errorf("log %q holds the token or an unquoted value", text)
			}
		})
	}
}

// However long the iss a token carries, the refusal kept in the negative cache stays within its bound,
// while the refusal logged when it is made names both issuers whole.
func TestRoutingReasonStaysBounded(t *testing.T) {
	iss := newJWTIssuer(t)
	clk := &testClock{t: time.Now()}
	tok := iss.sign(t, `{"iss":"`+strings.Repeat("i", 5000)+`","exp":`+jsonNum(clk.t.Add(time.Hour).Unix())+`}`)
	e, log := jwtEngine(t, iss, &scriptedIdP{err: fmt.Errorf("%w: inactive", verified.ErrInvalid)}, clk)
	if d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: tok}); d.Result != Deny {
		t.Fatalf("%v, want deny", d.Result)
	}
	vd, ok := e.v.cached(cache.KeyOf(tok))
	if !ok || len(vd.reason) > maxReason+len("…") || !strings.Contains(vd.reason, `iss "iiii`) {
		t.Errorf("cached %v, reason of %d bytes: %q", ok, len(vd.reason), vd.reason)
	}
	if _, _, ok := log.find(`"… is not jwt_issuer "` + iss.srv.URL + `") (deny)`); !ok {
		t.Errorf("the refusal does not name both issuers: %q", log.text())
	}
}
