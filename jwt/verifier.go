// Package jwt verifies JWT access tokens (RFC 9068) locally, against the public keys their issuer
// publishes, so that a fleet reconnecting after an outage costs the identity provider nothing and keeps
// working while it is down.
//
// A token is accepted only after all of: its header and claims are JSON with no member name twice in
// one object (see strictjson), its header has no crit, its alg is in the allow-list (never "none",
// never an HMAC algorithm: the keys here are public), its typ is at+jwt, JWT or absent, its signature
// verifies with one of the issuer's keys (chosen by kid), iss is the configured issuer, aud holds a
// configured audience when audiences are configured, exp is present and not past (no leeway), and nbf
// and iat are not in the future (with a configurable clock skew). Nothing is accepted by parsing alone.
//
// A refusal's text is one of the reasons in errors.go and a detail this package writes itself: never a
// library's error text, and a value from the token only quoted as printable ASCII and cut short.
package jwt

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/strictjson"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
	"github.com/tidwall/gjson"
)

// DefaultAlgorithms is the allow-list when none is configured: every asymmetric JWS algorithm.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

// DefaultClockSkew is how far the issuer's clock may run ahead of the broker's on nbf and iat.
const DefaultClockSkew = 30 * time.Second

// Config describes one trusted issuer.
type Config struct {
	// Issuer is the exact iss the tokens carry, and where discovery starts when JWKSURL is empty.
	Issuer string
	// JWKSURL is the issuer's key set; empty means find it by discovery.
	JWKSURL string
	// Audiences, when not empty, must share a value with the token's aud.
	Audiences []string
	// Algorithms is the allow-list of JWS algorithms; empty means DefaultAlgorithms. Only asymmetric
	// algorithms are accepted.
	Algorithms []string
	// ClockSkew is the leeway on nbf and iat; exp has none.
	ClockSkew time.Duration
	// Timeout bounds one discovery or key set request.
	Timeout time.Duration
	// TLS configures the connections to the issuer (trusted CAs, verification); nil means the system's
	// roots, verified.
	TLS *tls.Config
	// Log receives key fetch outcomes; warning is set for failures. It may be called from any goroutine.
	Log func(warning bool, msg string)
	// Fetched, when set, is told of each key set fetch that ended: how long it took, and its error
	// (nil when the keys held now came from it). It may be called from any goroutine.
	Fetched func(took time.Duration, err error)
	// FetchInBackground is for callers on a thread that must not wait, such as Mosquitto 2.0's broker
	// thread: a token naming a key not held starts a key fetch and is answered at once with
	// ErrKeysUnavailable (the client's next attempt finds the key), unless no key is held at all yet.
	// Otherwise a forged kid now and then could hold that thread for a whole fetch each time.
	FetchInBackground bool
	// Now is the clock for exp, nbf and iat; nil means time.Now. A caller that caches verified tokens
	// passes its own, so that the cache and the checks agree on the time.
	Now func() time.Time
}

// Verifier checks tokens of one issuer. It is safe for concurrent use.
type Verifier struct {
	issuer    string
	audiences []string
	algs      []jose.SignatureAlgorithm
	skew      time.Duration
	now       func() time.Time
	keys      *keySet
	stop      context.CancelFunc
	// background: see Config.FetchInBackground.
	background bool
}

// New validates cfg and returns a Verifier. It does no I/O: call Start to fetch the keys.
func New(cfg Config) (*Verifier, error) {
	if err := checkURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if cfg.JWKSURL != "" {
		if err := checkURL(cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("key set URL: %w", err)
		}
	}
	names := cfg.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	algs := make([]jose.SignatureAlgorithm, len(names))
	for i, a := range names {
		if !slices.Contains(DefaultAlgorithms, a) {
			return nil, fmt.Errorf("algorithm %q is not one of %s", a, strings.Join(DefaultAlgorithms, " "))
		}
		algs[i] = jose.SignatureAlgorithm(a)
	}
	if cfg.ClockSkew < 0 {
		return nil, errors.New("negative clock skew")
	}
	now, log := cfg.Now, cfg.Log
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = func(bool, string) {}
	}
	v := &Verifier{
		issuer:     cfg.Issuer,
		audiences:  cfg.Audiences,
		algs:       algs,
		skew:       cfg.ClockSkew,
		now:        now,
		background: cfg.FetchInBackground,
		keys: &keySet{
			issuer:  cfg.Issuer,
			jwksURL: cfg.JWKSURL,
			algs:    names,
			timeout: cfg.Timeout,
			now:     now,
			log:     log,
			fetched: cfg.Fetched,
		},
		stop: func() {},
	}
	v.keys.client.Store(v.keys.newClient(cfg.TLS))
	return v, nil
}

// noDowngrade follows an issuer's redirects as net/http does (at most 10, all within the timeout), but
// never from https to plain http, where anyone on the path could swap the keys.
func noDowngrade(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect from https to plain http refused: Location %s", req.URL.Redacted())
	}
	return nil
}

func checkURL(s string) error {
	switch {
	case s == "":
		return errors.New("required")
	case !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://"):
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// Start fetches the keys in the background and keeps them fresh until Close. It returns at once: the
// broker's start-up never waits for the identity provider.
func (v *Verifier) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	v.stop = cancel
	go v.keys.run(ctx)
}

// Close stops the background refresh.
func (v *Verifier) Close() { v.stop() }

// SetTLS makes the next key fetches connect with tlsConfig (see Config.TLS), for CAs an operator has
// replaced. A fetch under way finishes on its connection; kept connections are closed as they fall
// idle, so none verified against the old CAs is used again.
func (v *Verifier) SetTLS(tlsConfig *tls.Config) {
	v.keys.client.Swap(v.keys.newClient(tlsConfig)).CloseIdleConnections()
}

// Refetch fetches the issuer's keys now, in the background, for an operator's reload: it is not held
// to minRefetch, which bounds what tokens can cause, and joins a fetch already under way.
func (v *Verifier) Refetch() { _, _ = v.keys.start(true) }

// Route says where a token is checked: here, when it is a JWS whose iss is this verifier's issuer,
// else by introspection. It keeps why not here, so the caller can say so without reading the token
// again. It checks nothing else: what it reads is not verified.
type Route struct {
	kind   routeKind
	iss    string // the token's iss, when it is another issuer's
	issuer string // this verifier's
}

type routeKind uint8

const (
	routeNotJWS     routeKind = iota // not three dot-separated parts: an opaque token
	routeBadPayload                  // the payload is not base64url
	routeNoIssuer                    // the payload holds no iss string
	routeOtherIssuer
	routeLocal
)

// Local reports whether the token is this verifier's to check.
func (r Route) Local() bool { return r.kind == routeLocal }

// JWS reports whether the token has the shape of a JWS (three dot-separated parts), whoever issued it.
func (r Route) JWS() bool { return r.kind != routeNotJWS }

// String says why the token is not this verifier's, quoting what the token holds.
func (r Route) String() string {
	switch r.kind {
	case routeNotJWS:
		return "not a JWS"
	case routeBadPayload:
		return "its payload is not base64url"
	case routeNoIssuer:
		return "its payload holds no iss string"
	case routeOtherIssuer:
		return issuerMismatch(r.iss, r.issuer)
	}
	return "its iss is jwt_issuer"
}

// issuerMismatch names a token's iss next to the one expected, each quoted and bounded.
func issuerMismatch(iss, issuer string) string {
	return "iss " + logtext.Quote(iss) + " is not jwt_issuer " + logtext.Quote(issuer)
}

// LooksLikeJWS reports whether token has the shape of a JWS, for a caller without a verifier. It reads
// nothing but the dots.
func LooksLikeJWS(token string) bool {
	_, _, ok := split(token)
	return ok
}

// Route decodes the token's payload and reads its iss, nothing more: it decides whether the token is
// verified here or handed to introspection.
func (v *Verifier) Route(token string) Route {
	_, payload, ok := split(token)
	if !ok {
		return Route{kind: routeNotJWS}
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Route{kind: routeBadPayload}
	}
	switch iss := gjson.GetBytes(body, "iss"); {
	case iss.Type != gjson.String:
		return Route{kind: routeNoIssuer}
	case iss.Str != v.issuer:
		return Route{kind: routeOtherIssuer, iss: iss.Str, issuer: v.issuer}
	}
	return Route{kind: routeLocal}
}

// Verify checks token and returns its claims. When the token names a key not held yet, it fetches the
// key set (or joins a running fetch), within ctx and at most once per few seconds. An error wraps
// ErrTokenInvalid and a reason when the token is refused, and ErrKeysUnavailable when it could not be
// checked.
func (v *Verifier) Verify(ctx context.Context, token string) (verified.Token, error) {
	return v.verify(ctx, token)
}

// VerifyHeld checks token with the keys held now and no I/O. ok is false when the token names a key not
// held: the caller should then call Verify off the broker thread.
func (v *Verifier) VerifyHeld(token string) (res verified.Token, ok bool, err error) {
	res, err = v.verify(nil, token)
	if errors.Is(err, errNeedFetch) {
		return verified.Token{}, false, nil
	}
	return res, true, err
}

// errNeedFetch stops a verification without I/O (nil ctx) where it would have fetched keys.
var errNeedFetch = errors.New("jwt: key set fetch needed")

// verify does the work of Verify; a nil ctx means no I/O.
func (v *Verifier) verify(ctx context.Context, token string) (verified.Token, error) {
	header, _, ok := split(token)
	if !ok {
		return verified.Token{}, refuse(ErrMalformed, "not three base64url parts")
	}
	h, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return verified.Token{}, refuse(ErrMalformed, "header is not base64url")
	}
	// Before anything reads the header: go-jose reads it with encoding/json (the last duplicate wins),
	// alg and typ below are read with gjson (the first wins).
	if err := strictjson.Check(h); err != nil {
		return verified.Token{}, refuse(ErrMalformed, "header: %v", err)
	}
	hdr := gjson.ParseBytes(h)
	if !hdr.IsObject() {
		return verified.Token{}, refuse(ErrMalformed, "header is not a JSON object")
	}
	alg := hdr.Get("alg").String()
	if !slices.Contains(v.algs, jose.SignatureAlgorithm(alg)) {
		return verified.Token{}, refuse(ErrAlgorithm, "%s", logtext.Quote(alg))
	}
	if typ := hdr.Get("typ"); typ.Exists() && !goodType(typ.String()) {
		return verified.Token{}, refuse(ErrType, "%s", logtext.Quote(typ.String()))
	}
	// This verifier implements no JWS extension, so RFC 7515 §4.1.11 makes any crit a refusal, and an
	// empty list is malformed anyway. go-jose v4 checks crit only in Verify, and lets through an absent
	// or null crit, [] and ["b64"] (RFC 7797 unencoded payloads, which it implements).
	if hdr.Get("crit").Exists() {
		return verified.Token{}, refuse(ErrMalformed, "crit not supported")
	}
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil {
		// go-jose's error quotes the offending header value (a kid that is a 47 KB object, a jwk whose
		// crv holds a newline): not a text to log or to cache.
		return verified.Token{}, refuse(ErrMalformed, "header parameter, payload or signature unreadable")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := v.keys.candidates(kid, alg)
	if len(keys) == 0 {
		if ctx == nil {
			return verified.Token{}, errNeedFetch
		}
		if keys, err = v.fetchFor(ctx, kid, alg); err != nil {
			return verified.Token{}, err
		}
	}
	var payload []byte
	for i := range keys {
		if payload, err = jws.Verify(&keys[i]); err == nil {
			break
		}
	}
	if err != nil {
		return verified.Token{}, refuse(ErrBadSignature, "kid %s", logtext.Quote(kid))
	}
	return v.checkClaims(payload)
}

// fetchFor gets the keys for kid after a fetch. A kid still unknown after a fetch that succeeded is the
// token's fault (ErrUnknownKey, which callers may remember); one that could not be looked up (the fetch
// failed, was rate limited, or runs in the background) is not, and gives ErrKeysUnavailable: a token
// signed with a key rotated in seconds ago must not stay refused.
func (v *Verifier) fetchFor(ctx context.Context, kid, alg string) ([]jose.JSONWebKey, error) {
	var err error
	if v.background && len(v.keys.current()) > 0 {
		if _, err = v.keys.start(false); err == nil {
			err = errors.New("fetching the key set in the background")
		}
	} else {
		err = v.keys.refresh(ctx, false)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: kid %s not held: %v", ErrKeysUnavailable, logtext.Quote(kid), err)
	}
	if keys := v.keys.candidates(kid, alg); len(keys) > 0 {
		return keys, nil
	}
	return nil, refuse(ErrUnknownKey, "kid %s", logtext.Quote(kid))
}

// checkClaims applies the RFC 9068 §4 checks that follow a good signature.
func (v *Verifier) checkClaims(payload []byte) (verified.Token, error) {
	// Claims reach the templates and ACLs too, read by gjson (the first duplicate wins): a claims set
	// with two exp, iss or aud, or two members of a nested ACL object, must say one thing.
	if err := strictjson.Check(payload); err != nil {
		return verified.Token{}, refuse(ErrMalformed, "payload: %v", err)
	}
	if !gjson.ParseBytes(payload).IsObject() {
		return verified.Token{}, refuse(ErrMalformed, "payload is not a JSON object")
	}
	c := gjson.GetManyBytes(payload, "iss", "exp", "nbf", "iat", "aud")
	iss, exp, nbf, iat, aud := c[0], c[1], c[2], c[3], c[4]
	if iss.Type != gjson.String || iss.Str != v.issuer {
		return verified.Token{}, refuse(ErrIssuer, "%s", issuerMismatch(iss.String(), v.issuer))
	}
	now := v.now()
	if exp.Type != gjson.Number {
		return verified.Token{}, refuse(ErrNoExpiry, "")
	}
	// No leeway on exp: a token is good until its exp and not after, for admission, the cache and the
	// lease alike. The clock skew only spares tokens minted a moment ahead of this clock (nbf, iat).
	expiry := numericDate(exp.Num)
	if !now.Before(expiry) {
		return verified.Token{}, refuse(ErrExpired, "exp %s", expiry.UTC().Format(time.RFC3339))
	}
	for _, c := range []struct {
		claim gjson.Result
		name  string
	}{{nbf, "nbf"}, {iat, "iat"}} {
		if !c.claim.Exists() {
			continue
		}
		if c.claim.Type != gjson.Number {
			return verified.Token{}, refuse(ErrMalformed, "%s is not a number", c.name)
		}
		if t := numericDate(c.claim.Num); t.After(now.Add(v.skew)) {
			return verified.Token{}, refuse(ErrNotYetValid, "%s %s", c.name, t.UTC().Format(time.RFC3339))
		}
	}
	if len(v.audiences) > 0 && !v.audienceOK(aud) {
		return verified.Token{}, refuse(ErrAudience, "%s, want one of jwt_audience %s",
			audienceText(aud), logtext.Quote(strings.Join(v.audiences, " ")))
	}
	res := verified.Token{Claims: payload, Expiry: expiry, Source: verified.LocalJWT}
	if sub := gjson.GetBytes(payload, "sub"); sub.Type == gjson.String {
		res.Subject = sub.Str
	}
	return res, nil
}

// audienceOK reports whether aud (a string or an array of strings) holds a configured audience.
func (v *Verifier) audienceOK(aud gjson.Result) bool {
	if aud.Type == gjson.String {
		return slices.Contains(v.audiences, aud.Str)
	}
	found := false
	if aud.IsArray() {
		aud.ForEach(func(_, a gjson.Result) bool {
			found = a.Type == gjson.String && slices.Contains(v.audiences, a.Str)
			return !found
		})
	}
	return found
}

// audienceText describes a token's aud for a refusal in a bounded number of bytes: a string quoted,
// an array as its members quoted, as many as fit in about logtext.MaxValue bytes.
func audienceText(aud gjson.Result) string {
	switch {
	case !aud.Exists() || aud.Type == gjson.Null:
		return "no aud"
	case aud.Type == gjson.String:
		return "aud " + logtext.Quote(aud.Str)
	case !aud.IsArray():
		return "aud is neither a string nor an array"
	}
	var b strings.Builder
	b.WriteString("aud [")
	n := 0
	aud.ForEach(func(_, a gjson.Result) bool {
		q := logtext.Quote(a.String())
		if n > 0 && b.Len()+len(q) > len("aud [")+logtext.MaxValue {
			b.WriteString(" …")
			return false
		}
		if n > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(q)
		n++
		return true
	})
	b.WriteByte(']')
	return b.String()
}

// goodType accepts the typ values RFC 9068 §2.1 and common issuers use: "at+jwt" (or its media type
// form) and "JWT", case-insensitively as media types are.
func goodType(typ string) bool {
	switch strings.ToLower(typ) {
	case "at+jwt", "application/at+jwt", "jwt":
		return true
	}
	return false
}

// split returns the header and payload parts of a compact JWS.
func split(token string) (header, payload string, ok bool) {
	header, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	return header, payload, ok1 && ok2 && header != "" && payload != "" && sig != "" && !strings.Contains(sig, ".")
}

// numericDate converts an RFC 7519 NumericDate, which may have a fraction, to a time.
func numericDate(f float64) time.Time {
	if f > math.MaxInt64/2 || f < math.MinInt64/2 {
		f = math.Copysign(math.MaxInt64/2, f)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}
