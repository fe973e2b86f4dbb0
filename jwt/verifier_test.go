package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

// signer is one test signing key with its kid.
type signer struct {
	kid string
	alg string
	key crypto.Signer
}

func newRSA(t testing.TB, kid string) signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid, "RS256", k}
}

func newEC(t testing.TB, kid string) signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid, "ES256", k}
}

func newEd(t testing.TB, kid string) signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid, "EdDSA", k}
}

func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: s.alg, Use: "sig"}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64json(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// token builds a compact JWS by hand, so tests control every header field, including forged ones.
func (s signer) token(t testing.TB, header, claims map[string]any) string {
	h := map[string]any{"alg": s.alg, "typ": "at+jwt"}
	if s.kid != "" {
		h["kid"] = s.kid
	}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	hj, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return s.raw(t, string(hj), string(cj))
}

// raw signs a header and claims set given as JSON text, so tests can write what json.Marshal never
// does: duplicate members, escaped names.
func (s signer) raw(t testing.TB, header, claims string) string {
	input := b64([]byte(header)) + "." + b64([]byte(claims))
	return input + "." + b64(s.sign(t, []byte(input)))
}

func (s signer) sign(t testing.TB, input []byte) []byte {
	sum := sha256.Sum256(input)
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case *ecdsa.PrivateKey:
		r, ss, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		ss.FillBytes(out[32:])
		return out
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input)
	}
	t.Fatalf("unknown key type %T", s.key)
	return nil
}

// idp serves discovery and a key set that tests can swap, stop and count.
type idp struct {
	srv      *httptest.Server
	mu       sync.Mutex
	keys     []jose.JSONWebKey
	down     bool
	jwksHits atomic.Int64
	docHits  atomic.Int64
	oidc     bool // serve /.well-known/openid-configuration (else only RFC 8414 metadata)
}

func newIdP(t *testing.T, keys ...signer) *idp {
	p := &idp{oidc: true}
	p.setKeys(keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) setKeys(keys ...signer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = nil
	for _, k := range keys {
		p.keys = append(p.keys, k.jwk())
	}
}

func (p *idp) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	down, keys := p.down, p.keys
	p.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	path := r.URL.Path
	if strings.HasSuffix(path, "/.well-known/openid-configuration") {
		path = "/.well-known/openid-configuration" // any issuer path: the document names the root
	}
	switch path {
	case "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server":
		if path == "/.well-known/openid-configuration" && !p.oidc {
			http.NotFound(w, r)
			return
		}
		p.docHits.Add(1)
		json.NewEncoder(w).Encode(map[string]string{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/jwks"})
	case "/jwks":
		p.jwksHits.Add(1)
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: keys})
	default:
		http.NotFound(w, r)
	}
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	idp *idp
	v   *Verifier
	clk *clock
	now time.Time
}

func setup(t *testing.T, cfg Config, keys ...signer) *fixture {
	t.Helper()
	p := newIdP(t, keys...)
	clk := &clock{t: time.Now()}
	if cfg.Issuer == "" {
		cfg.Issuer = p.srv.URL
	}
	cfg.Timeout = 2 * time.Second
	cfg.Now = clk.now
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return &fixture{idp: p, v: v, clk: clk, now: clk.now()}
}

func (f *fixture) claims(extra map[string]any) map[string]any {
	c := map[string]any{
		"iss": f.idp.srv.URL, "sub": "device-1", "aud": "urn:mqtt",
		"exp": f.now.Add(time.Hour).Unix(), "iat": f.now.Unix(), "nbf": f.now.Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func (f *fixture) verify(t *testing.T, tok string) (verified.Token, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return f.v.Verify(ctx, tok)
}

func TestAcceptsEachAlgorithm(t *testing.T) {
	for _, s := range []signer{newRSA(t, "rsa"), newEC(t, "ec"), newEd(t, "ed")} {
		t.Run(s.alg, func(t *testing.T) {
			f := setup(t, Config{}, s)
			tok := s.token(t, nil, f.claims(nil))
			if !f.v.Route(tok).Local() {
				t.Fatal("a token of this issuer is not routed here")
			}
			res, err := f.verify(t, tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got := string(res.Claims); !strings.Contains(got, `"sub":"device-1"`) {
				t.Errorf("claims %s", got)
			}
			if want := f.now.Add(time.Hour).Truncate(time.Second); !res.Expiry.Equal(want) {
				t.Errorf("expiry %v, want %v", res.Expiry, want)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	rs, other := newRSA(t, "k1"), newRSA(t, "k1")
	f := setup(t, Config{Audiences: []string{"urn:mqtt", "urn:other"}, ClockSkew: 30 * time.Second}, rs)
	good := rs.token(t, nil, f.claims(nil))
	parts := strings.Split(good, ".")
	pub, err := x509.MarshalPKIXPublicKey(rs.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	hmacWithPublicKey := func() string {
		input := b64json(t, map[string]any{"alg": "HS256", "kid": "k1"}) + "." + parts[1]
		m := hmac.New(sha256.New, pub)
		m.Write([]byte(input))
		return input + "." + b64(m.Sum(nil))
	}()
	tampered := func() string {
		c := f.claims(map[string]any{"sub": "admin"})
		return parts[0] + "." + b64json(t, c) + "." + parts[2]
	}()
	badSig := func() string {
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[10] ^= 1
		return parts[0] + "." + parts[1] + "." + b64(sig)
	}()
	cases := []struct {
		name   string
		tok    string
		reason error
	}{
		{"tampered payload", tampered, ErrBadSignature},
		{"tampered signature", badSig, ErrBadSignature},
		{"signed by another key with the same kid", other.token(t, nil, f.claims(nil)), ErrBadSignature},
		{"alg none", parts[0][:0] + b64json(t, map[string]any{"alg": "none"}) + "." + parts[1] + ".", ErrMalformed},
		{"alg none with a signature part", b64json(t, map[string]any{"alg": "none", "kid": "k1"}) + "." + parts[1] + ".AAAA", ErrAlgorithm},
		{"HS256 keyed with the RSA public key", hmacWithPublicKey, ErrAlgorithm},
		{"wrong iss", rs.token(t, nil, f.claims(map[string]any{"iss": "https://evil.example"})), ErrIssuer},
		{"wrong aud", rs.token(t, nil, f.claims(map[string]any{"aud": "urn:elsewhere"})), ErrAudience},
		{"aud array without ours", rs.token(t, nil, f.claims(map[string]any{"aud": []string{"a", "b"}})), ErrAudience},
		{"no aud", rs.token(t, nil, f.claims(map[string]any{"aud": nil})), ErrAudience},
		// No leeway on exp, whatever the clock skew: good until exp and not after.
		{"expired a second ago", rs.token(t, nil, f.claims(map[string]any{"exp": f.now.Add(-time.Second).Unix()})), ErrExpired},
		{"expiring now", rs.token(t, nil, f.claims(map[string]any{"exp": f.now.Unix()})), ErrExpired},
		{"no exp", rs.token(t, nil, f.claims(map[string]any{"exp": nil})), ErrNoExpiry},
		{"exp not a number", rs.token(t, nil, f.claims(map[string]any{"exp": "tomorrow"})), ErrNoExpiry},
		{"nbf in the future", rs.token(t, nil, f.claims(map[string]any{"nbf": f.now.Add(time.Minute).Unix()})), ErrNotYetValid},
		{"iat in the future", rs.token(t, nil, f.claims(map[string]any{"iat": f.now.Add(time.Minute).Unix()})), ErrNotYetValid},
		{"typ of an ID token's cousin", rs.token(t, map[string]any{"typ": "dpop+jwt"}, f.claims(nil)), ErrType},
		{"payload not an object", rs.token(t, nil, nil), ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"garbage", "not-a-jwt", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.verify(t, c.tok)
			if !errors.Is(err, ErrTokenInvalid) || !errors.Is(err, c.reason) {
				t.Fatalf("err = %v, want a refusal for %v", err, c.reason)
			}
			if strings.Contains(err.Error(), c.tok) || strings.Contains(err.Error(), parts[2]) {
				t.Errorf("error %q holds the token", err)
			}
		})
	}
	accepted := []struct {
		name string
		tok  string
	}{
		{"good", good},
		{"nbf within the skew", rs.token(t, nil, f.claims(map[string]any{"nbf": f.now.Add(29 * time.Second).Unix()}))},
		{"aud array holding ours", rs.token(t, nil, f.claims(map[string]any{"aud": []string{"x", "urn:other"}}))},
		{"typ JWT", rs.token(t, map[string]any{"typ": "JWT"}, f.claims(nil))},
		{"typ application/at+jwt", rs.token(t, map[string]any{"typ": "application/at+jwt"}, f.claims(nil))},
		{"no typ", rs.token(t, map[string]any{"typ": nil}, f.claims(nil))},
		{"no kid", signer{"", "RS256", rs.key}.token(t, nil, f.claims(nil))},
		{"fractional exp", rs.token(t, nil, f.claims(map[string]any{"exp": float64(f.now.Add(time.Hour).Unix()) + 0.5}))},
	}
	for _, c := range accepted {
		t.Run(c.name, func(t *testing.T) {
			res, err := f.verify(t, c.tok)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if res.Subject != "device-1" || res.Source != verified.LocalJWT || res.Expiry.IsZero() {
				t.Errorf("subject %q, source %v, expiry %v", res.Subject, res.Source, res.Expiry)
			}
		})
	}
}

// TestOneReading refuses what two JSON parsers could read two ways (duplicate members, in the header
// or anywhere in the claims) and the crit header, of which this verifier implements nothing. Each
// token is accepted once its extra member is taken out.
func TestOneReading(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{Audiences: []string{"urn:mqtt"}}, rs)
	iss := strconv.Quote(f.idp.srv.URL)
	future, past := f.now.Add(time.Hour).Unix(), f.now.Add(-time.Hour).Unix()
	hdr := `{"alg":"RS256","typ":"at+jwt","kid":"k1"}`
	claims := fmt.Sprintf(`{"iss":%s,"sub":"device-1","aud":"urn:mqtt","exp":%d}`, iss, future)
	pastExp := fmt.Sprintf(`"exp":%d`, past)
	cases := []struct {
		name, header, claims string
		extra                string // the member taken out for the control
		reason               string
	}{
		{"exp future then past", hdr, strings.Replace(claims, "}", ","+pastExp+"}", 1), "," + pastExp, "payload: duplicate member"},
		{"exp past then future", hdr, strings.Replace(claims, `"exp"`, pastExp+`,"exp"`, 1), pastExp + ",", "payload: duplicate member"},
		{"exp escaped", hdr, strings.Replace(claims, `"exp"`, `"\u0065xp":1,"exp"`, 1), `"\u0065xp":1,`, "payload: duplicate member"},
		{"iss right then wrong", hdr, strings.Replace(claims, `"sub"`, `"iss":"https://evil.example","sub"`, 1), `"iss":"https://evil.example",`, "payload: duplicate member"},
		{"aud right then other", hdr, strings.Replace(claims, `"exp"`, `"aud":"urn:elsewhere","exp"`, 1), `"aud":"urn:elsewhere",`, "payload: duplicate member"},
		{"nested acl", hdr, strings.Replace(claims, "}", `,"acl":{"pub":["devices/1/#"],"pub":["#"]}}`, 1), `,"pub":["#"]`, "payload: duplicate member"},
		{"alg twice", `{"alg":"RS256","alg":"ES256","typ":"at+jwt","kid":"k1"}`, claims, `,"alg":"ES256"`, "header: duplicate member"},
		{"kid twice", `{"alg":"RS256","typ":"at+jwt","kid":"k1","kid":"k2"}`, claims, `,"kid":"k2"`, "header: duplicate member"},
		{"crit empty", `{"alg":"RS256","typ":"at+jwt","kid":"k1","crit":[]}`, claims, `,"crit":[]`, "crit not supported"},
		{"crit naming a claim", `{"alg":"RS256","kid":"k1","crit":["exp"],"exp":1}`, claims, `,"crit":["exp"]`, "crit not supported"},
		{"crit b64", `{"alg":"RS256","kid":"k1","crit":["b64"],"b64":true}`, claims, `,"crit":["b64"]`, "crit not supported"},
		{"crit null", `{"alg":"RS256","kid":"k1","crit":null}`, claims, `,"crit":null`, "crit not supported"},
		{"crit not a list", `{"alg":"RS256","kid":"k1","crit":"exp"}`, claims, `,"crit":"exp"`, "crit not supported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.verify(t, rs.raw(t, c.header, c.claims))
			if !errors.Is(err, ErrTokenInvalid) || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("err = %v, want ErrMalformed: %s", err, c.reason)
			}
			h, cl := strings.Replace(c.header, c.extra, "", 1), strings.Replace(c.claims, c.extra, "", 1)
			if h == c.header && cl == c.claims {
				t.Fatalf("%s is in neither the header nor the claims", c.extra)
			}
			if _, err := f.verify(t, rs.raw(t, h, cl)); err != nil {
				t.Fatalf("without %s: %v", c.extra, err)
			}
		})
	}
}

// hostileTokens are tokens built to make a refusal's text long, multi-line or quoting the library.
func hostileTokens(t testing.TB, s signer) []string {
	var obj strings.Builder
	obj.WriteString(`{`)
	for i := 0; obj.Len() < 47<<10; i++ {
		fmt.Fprintf(&obj, `"m%d":"%s",`, i, strings.Repeat("x", 100))
	}
	obj.WriteString(`"end":1}`)
	forged := "\n1999999999: New client connected from 6.6.6.6 as admin (p2, c1, k60, u'admin')."
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	nl := str(forged)
	random := make([]byte, 3000)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	claims := `{"iss":"https://idp.example","exp":99999999999}`
	huge := `"` + strings.Repeat(`\u2028\u0001é`+"\xff", 5<<10) + `"` // raw invalid UTF-8 too
	return []string{
		s.raw(t, `{"alg":"RS256","kid":`+obj.String()+`}`, claims),
		s.raw(t, `{"alg":"RS256","kid":"k1","jwk":{"kty":"EC","crv":`+nl+`,"x":"AA","y":"AA"}}`, claims),
		s.raw(t, `{"alg":"RS256","kid":"k1","x5c":[`+nl+`]}`, claims),
		s.raw(t, `{"alg":"RS256","kid":[`+nl+`]}`, claims),
		s.raw(t, `{"alg":`+nl+`}`, claims),
		s.raw(t, `{"alg":{"a":`+nl+`}}`, claims),
		s.raw(t, `{"alg":"RS256","typ":`+huge+`}`, claims),
		s.raw(t, `{"alg":"RS256","kid":`+huge+`}`, claims),
		s.raw(t, `{"alg":"RS256","kid":`+nl+`}`, claims),
		s.raw(t, `{"alg":"RS256","kid":"k1","pad":"`+strings.Repeat("A", 60<<10)+`"}`, claims),
		s.raw(t, `{"alg":"RS256","kid":"k1","x":`+strings.Repeat("[", 30<<10)+`}`, claims),
		s.raw(t, string(random[:1000]), string(random[1000:2000])),
		b64(random[:1000]) + "." + b64(random[1000:2000]) + "." + b64(random[2000:]),
		string(random),
		"a." + forged + ".c",
	}
}

// checkRefusalText fails unless err is a refusal whose text is short, printable and one line.
func checkRefusalText(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("err = %v, want a refusal", err)
	}
	msg := err.Error()
	if len(msg) > 200 {
		t.Errorf("refusal text of %d bytes: %.300q", len(msg), msg)
	}
	if !utf8.ValidString(msg) {
		t.Fatalf("refusal text is not UTF-8: %q", msg)
	}
	for _, r := range msg {
		if !strconv.IsPrint(r) {
			t.Fatalf("refusal text holds %U: %q", r, msg)
		}
	}
}

func TestRefusalTextIsBoundedAndPlain(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{}, rs)
	if _, err := f.verify(t, rs.token(t, nil, f.claims(nil))); err != nil {
		t.Fatal(err)
	}
	for i, tok := range hostileTokens(t, rs) {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			if _, ok, err := f.v.VerifyHeld(tok); ok {
				checkRefusalText(t, err)
			}
			f.clk.add(minRefetch) // an unknown kid is looked up, and then refused
			_, err := f.verify(t, tok)
			checkRefusalText(t, err)
		})
	}
}

func TestAlgorithmAllowList(t *testing.T) {
	es := newEC(t, "ec")
	f := setup(t, Config{Algorithms: []string{"RS256"}}, es)
	_, err := f.verify(t, es.token(t, nil, f.claims(nil)))
	if !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("ES256 with an RS256-only allow-list: %v", err)
	}
	for _, bad := range []string{"none", "HS256", "RS1"} {
		if _, err := New(Config{Issuer: "https://idp.example", Algorithms: []string{bad}}); err == nil {
			t.Errorf("New accepted algorithm %q", bad)
		}
	}
}

// Route keeps only this issuer's JWS, and says why it does not keep the others: the JWS ones by what
// they hold, quoted, so the log names the iss that sent a token to introspection.
func TestRouteKeepsOnlyThisIssuersJWS(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{}, rs)
	iss := f.idp.srv.URL
	for _, tc := range []struct {
		tok        string
		local, jws bool
		why        string
	}{
		{rs.token(t, nil, f.claims(nil)), true, true, "its iss is jwt_issuer"},
		{rs.token(t, nil, f.claims(map[string]any{"iss": iss + "/"})), false, true,
			`iss "` + iss + `/" is not jwt_issuer "` + iss + `"`},
		{rs.token(t, nil, f.claims(map[string]any{"iss": "https://evil\n1999999999: New client"})), false, true,
			`iss "https://evil\n1999999999: New client" is not jwt_issuer "` + iss + `"`},
		{rs.token(t, nil, f.claims(map[string]any{"iss": strings.Repeat("i", 5000)})), false, true,
			`iss "` + strings.Repeat("i", logtext.MaxValue) + `"… is not jwt_issuer`},
		{rs.token(t, nil, f.claims(map[string]any{"iss": nil})), false, true, "its payload holds no iss string"},
		{rs.token(t, nil, f.claims(map[string]any{"iss": 7})), false, true, "its payload holds no iss string"},
		{"opaque-token-abcdef", false, false, "not a JWS"},
		{"a.YWJj.c", false, true, "its payload holds no iss string"},
		{"a.b.c", false, true, "its payload is not base64url"},
		{b64json(t, map[string]any{}) + "." + b64json(t, f.claims(nil)) + ".x.y", false, false, "not a JWS"},
	} {
		r := f.v.Route(tc.tok)
		if r.Local() != tc.local || r.JWS() != tc.jws || !strings.Contains(r.String(), tc.why) {
			t.Errorf("Route(%.40q) = local %v, JWS %v, %q; want %v, %v, %q", tc.tok, r.Local(), r.JWS(), r, tc.local, tc.jws, tc.why)
		}
		if LooksLikeJWS(tc.tok) != tc.jws {
			t.Errorf("LooksLikeJWS(%.40q) = %v", tc.tok, !tc.jws)
		}
	}
}

// A refusal for iss or aud names the token's value next to the configured one, bounded and quoted.
func TestRefusalsNameTheClaims(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{Audiences: []string{"urn:mqtt", "urn:other"}}, rs)
	long := strings.Repeat("a", 300)
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   string
	}{
		{"aud string", map[string]any{"aud": "account"},
			`jwt: wrong audience: aud "account", want one of jwt_audience "urn:mqtt urn:other"`},
		{"aud array", map[string]any{"aud": []any{"account", "broker"}},
			`jwt: wrong audience: aud ["account" "broker"], want one of jwt_audience "urn:mqtt urn:other"`},
		{"aud array of other things", map[string]any{"aud": []any{1, map[string]any{"a": "b"}}},
			`jwt: wrong audience: aud ["1" "{\"a\":\"b\"}"], want one of`},
		{"aud array too long to list", map[string]any{"aud": []any{long, "b", "c"}},
			`jwt: wrong audience: aud ["` + long[:logtext.MaxValue] + `"… …], want one of`},
		{"aud array of many", map[string]any{"aud": []any{"a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "a11", "a12", "a13"}},
			`jwt: wrong audience: aud ["a1" "a2" "a3" "a4" "a5" "a6" "a7" "a8" "a9" "a10" "a11" "a12" …], want one of`},
		{"aud control characters", map[string]any{"aud": "x\r\nNew client connected"},
			`jwt: wrong audience: aud "x\r\nNew client connected", want`},
		{"aud of many long members", map[string]any{"aud": slices.Repeat([]any{long}, 100)},
			`jwt: wrong audience: aud ["` + long[:logtext.MaxValue] + `"… …], want one of`},
		{"aud of line separators", map[string]any{"aud": strings.Repeat("\u2028\x01é", 2000)},
			`jwt: wrong audience: aud "\u2028\x01é\u2028`},
		{"no aud", map[string]any{"aud": nil}, `jwt: wrong audience: no aud, want one of jwt_audience "urn:mqtt urn:other"`},
		{"iss", map[string]any{"iss": "https://evil\n1999999999: x", "aud": "urn:mqtt"},
			`jwt: wrong issuer: iss "https://evil\n1999999999: x" is not jwt_issuer "` + f.idp.srv.URL + `"`},
		{"aud a number", map[string]any{"aud": 7}, `jwt: wrong audience: aud is neither a string nor an array, want`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.verify(t, rs.token(t, nil, f.claims(tc.claims)))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to start with %s", err, tc.want)
			}
			checkRefusalText(t, err)
		})
	}
}

func TestKeyRotation(t *testing.T) {
	old, next := newRSA(t, "2026-01"), newEC(t, "2026-02")
	f := setup(t, Config{}, old)
	if _, err := f.verify(t, old.token(t, nil, f.claims(nil))); err != nil {
		t.Fatal(err)
	}
	f.idp.setKeys(old, next)
	f.clk.add(minRefetch) // a kid seen sooner after a fetch is refused: see TestForgedKidFloodIsRateLimited
	if _, err := f.verify(t, next.token(t, nil, f.claims(nil))); err != nil {
		t.Fatalf("token signed with a rotated-in key: %v", err)
	}
	if got := f.v.keys.fetches.Load(); got != 2 {
		t.Errorf("%d fetches, want 2 (first use, then the new kid)", got)
	}
}

func TestStartPrimesKeysInBackground(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{}, rs)
	f.v.Start()
	deadline := time.Now().Add(5 * time.Second)
	for f.v.keys.fetches.Load() == 0 || len(f.v.keys.current()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no keys 5 s after Start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, ok, err := f.v.VerifyHeld(rs.token(t, nil, f.claims(nil)))
	if !ok || err != nil {
		t.Fatalf("VerifyHeld after Start: ok=%v err=%v", ok, err)
	}
}

func TestVerifyHeldNeverFetches(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{}, rs)
	if _, ok, _ := f.v.VerifyHeld(rs.token(t, nil, f.claims(nil))); ok {
		t.Fatal("VerifyHeld answered with no keys held")
	}
	_, ok, err := f.v.VerifyHeld("garbage")
	if !ok || !errors.Is(err, ErrMalformed) {
		t.Fatalf("malformed token: ok=%v err=%v, want an answer without keys", ok, err)
	}
	if n := f.idp.jwksHits.Load(); n != 0 {
		t.Errorf("VerifyHeld fetched keys %d times", n)
	}
}

func TestKeysKeptWhileIdPDown(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{}, rs)
	if _, err := f.verify(t, rs.token(t, nil, f.claims(nil))); err != nil {
		t.Fatal(err)
	}
	f.idp.setDown(true)
	f.clk.add(time.Minute)
	// A forced refresh (the periodic one) fails; the held keys stay.
	if err := f.v.keys.refresh(context.Background(), true); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("refresh against a down IdP: %v", err)
	}
	f.now = f.clk.now()
	if _, err := f.verify(t, rs.token(t, nil, f.claims(nil))); err != nil {
		t.Fatalf("known key while the IdP is down: %v", err)
	}
	// An unknown kid while down is the IdP's failure, not the token's: it must not be cached as a refusal.
	f.clk.add(time.Minute)
	_, err := f.verify(t, newRSA(t, "k2").token(t, nil, f.claims(nil)))
	if !errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("unknown kid while the IdP is down: %v", err)
	}
}

func TestNoKeysAtAllIsUnavailable(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{}, rs)
	f.idp.setDown(true)
	_, err := f.verify(t, rs.token(t, nil, f.claims(nil)))
	if !errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("err = %v, want ErrKeysUnavailable only", err)
	}
}

func TestForgedKidFloodIsRateLimited(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{}, rs)
	if _, err := f.verify(t, rs.token(t, nil, f.claims(nil))); err != nil {
		t.Fatal(err)
	}
	forger := newRSA(t, "")
	var wg sync.WaitGroup
	var refused atomic.Int64
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := signer{fmt.Sprintf("forged-%d", i), "RS256", forger.key}.token(t, nil, f.claims(nil))
			// Rate limited: not looked up, so not the token's fault either (never cached as a refusal).
			if _, err := f.verify(t, tok); errors.Is(err, ErrKeysUnavailable) && !errors.Is(err, ErrTokenInvalid) {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if refused.Load() != 1000 {
		t.Errorf("%d of 1000 forged kids refused without a lookup", refused.Load())
	}
	// The first use fetched; the flood, in the same instant, may not fetch at all.
	if n := f.idp.jwksHits.Load(); n != 1 {
		t.Errorf("%d key set fetches for a first use and 1000 forged kids in the same instant, want 1", n)
	}
	// Once minRefetch has passed, a new kid may fetch again: once.
	f.clk.add(minRefetch)
	before := f.idp.jwksHits.Load()
	for i := range 100 {
		f.verify(t, signer{fmt.Sprintf("later-%d", i), "RS256", forger.key}.token(t, nil, f.claims(nil)))
	}
	if n := f.idp.jwksHits.Load() - before; n != 1 {
		t.Errorf("100 forged kids after the interval caused %d fetches, want 1", n)
	}
}

func TestUnknownKid(t *testing.T) {
	rs := newRSA(t, "k1")
	f := setup(t, Config{}, rs)
	if _, err := f.verify(t, rs.token(t, nil, f.claims(nil))); err != nil {
		t.Fatal(err)
	}
	f.clk.add(minRefetch)
	unknown := newRSA(t, "k9").token(t, nil, f.claims(nil))
	// Looked up in a fresh fetch and not there: the token's fault.
	if _, err := f.verify(t, unknown); !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("unknown kid after a fetch: %v", err)
	}
	if n := f.idp.jwksHits.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

func TestFetchInBackground(t *testing.T) {
	old, next := newRSA(t, "old"), newRSA(t, "next")
	f := setup(t, Config{FetchInBackground: true}, old)
	// No key held yet: the first token waits for the fetch.
	if _, err := f.verify(t, old.token(t, nil, f.claims(nil))); err != nil {
		t.Fatal(err)
	}
	f.idp.setKeys(old, next)
	f.clk.add(minRefetch)
	tok := next.token(t, nil, f.claims(nil))
	_, err := f.verify(t, tok)
	if !errors.Is(err, ErrKeysUnavailable) || errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("kid not held, keys held: %v, want ErrKeysUnavailable at once", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.v.keys.candidates("next", "RS256")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the background fetch did not bring the new key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := f.verify(t, tok); err != nil {
		t.Fatalf("after the background fetch: %v", err)
	}
}

func TestDiscovery(t *testing.T) {
	rs := newRSA(t, "k1")
	t.Run("RFC 8414 fallback", func(t *testing.T) {
		f := setup(t, Config{}, rs)
		f.idp.oidc = false
		if _, err := f.verify(t, rs.token(t, nil, f.claims(nil))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("jwks_endpoint skips discovery", func(t *testing.T) {
		p := newIdP(t, rs)
		v, err := New(Config{Issuer: "https://issuer.example", JWKSURL: p.srv.URL + "/jwks", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c := map[string]any{"iss": "https://issuer.example", "exp": time.Now().Add(time.Hour).Unix()}
		if _, err := v.Verify(context.Background(), rs.token(t, nil, c)); err != nil {
			t.Fatal(err)
		}
		if p.docHits.Load() != 0 {
			t.Error("discovery document fetched although jwks_endpoint is set")
		}
	})
	t.Run("issuer mismatch in the document", func(t *testing.T) {
		p := newIdP(t, rs)
		iss := p.srv.URL + "/tenant" // the document says p.srv.URL
		v, _ := New(Config{Issuer: iss, Timeout: time.Second})
		c := map[string]any{"iss": iss, "exp": time.Now().Add(time.Hour).Unix()}
		_, err := v.Verify(context.Background(), rs.token(t, nil, c))
		if !errors.Is(err, ErrKeysUnavailable) || !strings.Contains(err.Error(), "is not jwt_issuer") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestParseKeySetSkipsUnusableKeys(t *testing.T) {
	rs := newRSA(t, "sig")
	sig, _ := json.Marshal(rs.jwk())
	enc, _ := json.Marshal(jose.JSONWebKey{Key: rs.key.Public(), KeyID: "enc", Use: "enc"})
	body := fmt.Sprintf(`{"keys":[%s,%s,{"kty":"EC","crv":"secp256k1","kid":"k256","x":"AA","y":"AA"},{"kty":"oct","k":"c2VjcmV0"},{"kty":"RSA","kid":"hs","alg":"HS256","n":"AQAB","e":"AQAB"}]}`, sig, enc)
	keys, err := parseKeySet([]byte(body), DefaultAlgorithms)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KeyID != "sig" {
		t.Fatalf("kept %s, want only the signature key", kidList(keys))
	}
	if _, err := parseKeySet([]byte(`{"keys":[]}`), DefaultAlgorithms); err == nil {
		t.Error("empty key set accepted")
	}
	if _, err := parseKeySet([]byte(`<html>`), DefaultAlgorithms); err == nil {
		t.Error("HTML accepted as a key set")
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, s := range []signer{newRSA(b, "rsa"), newEC(b, "ec"), newEd(b, "ed")} {
		b.Run(s.alg, func(b *testing.B) {
			p := &idp{oidc: true}
			p.setKeys(s)
			p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
			defer p.srv.Close()
			v, err := New(Config{Issuer: p.srv.URL, Timeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			tok := s.token(b, nil, map[string]any{"iss": p.srv.URL, "sub": "d", "exp": time.Now().Add(time.Hour).Unix()})
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := v.VerifyHeld(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzVerify feeds arbitrary tokens to a verifier that holds a key: nothing may panic, nothing a fuzzer
// makes up can carry a valid signature, and every refusal's text is short, printable and one line.
func FuzzVerify(f *testing.F) {
	rs := newRSA(f, "k1")
	p := &idp{oidc: true}
	p.setKeys(rs)
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	defer p.srv.Close()
	v, err := New(Config{Issuer: p.srv.URL, Timeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	good := rs.token(f, nil, map[string]any{"iss": p.srv.URL, "exp": time.Now().Add(time.Hour).Unix()})
	if _, err := v.Verify(context.Background(), good); err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(good, ".")
	f.Add(good[:len(good)-2])
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(b64json(f, map[string]any{"alg": "none"}) + "." + parts[1] + ".")
	f.Add("a.b.c")
	for _, tok := range hostileTokens(f, rs) {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if strings.HasPrefix(tok, parts[0]+"."+parts[1]+".") {
			return // the signed input of the good token: other spellings of its signature may decode alike
		}
		_ = v.Route(tok).String()
		_, ok, err := v.VerifyHeld(tok)
		if ok && err == nil {
			t.Fatalf("accepted a made-up token %q", tok)
		}
		if ok {
			checkRefusalText(t, err)
		}
	})
}
