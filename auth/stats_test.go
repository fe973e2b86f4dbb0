package auth

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/jwt"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

// Every way the verifiers fail maps to one class, for decisions and for IdP requests alike.
func TestFailureClasses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		reason  Reason  // of a decision without a verdict (the error is not the token's fault)
		outcome Outcome // of the request
	}{
		{"answered", nil, ReasonIdPUnavailable, OutcomeOK},
		{"inactive", errInactive, ReasonIdPUnavailable, OutcomeTokenRefused},
		{"4xx for the token", fmt.Errorf("%w: %w (status 400)", introspect.ErrTokenInvalid, introspect.ErrRequestRefused), ReasonIdPUnavailable, OutcomeTokenRefused},
		{"bad JWT signature", fmt.Errorf("%w: bad signature", jwt.ErrTokenInvalid), ReasonIdPUnavailable, OutcomeTokenRefused},
		{"connection refused", errDown, ReasonIdPUnavailable, OutcomeIdPUnavailable},
		{"keys unavailable", fmt.Errorf("%w: discovery failed", jwt.ErrKeysUnavailable), ReasonIdPUnavailable, OutcomeIdPUnavailable},
		{"misconfigured", errMisconf, ReasonMisconfigured, OutcomeMisconfigured},
		{"breaker open", errBreakerOpen, ReasonBreakerOpen, OutcomeIdPUnavailable},
		{"unclassified", fmt.Errorf("verification did not finish"), ReasonIdPUnavailable, OutcomeIdPUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err != nil {
				if got := noVerdict(tc.err); got != tc.reason {
					t.Errorf("reason %v, want %v", got, tc.reason)
				}
			}
			if got := outcomeOf(tc.err); got != tc.outcome {
				t.Errorf("outcome %v, want %v", got, tc.outcome)
			}
		})
	}
}

// decisionsOf renders counted decisions as "result/reason=n" in order.
func decisionsOf(s Stats) string {
	var b []string
	for _, d := range s.Decisions {
		b = append(b, fmt.Sprintf("%v/%v=%d", d.Result, d.Reason, d.N))
	}
	return strings.Join(b, " ")
}

// idpOf renders counted IdP requests as "request/outcome=n" in order.
func idpOf(s Stats) string {
	var b []string
	for _, r := range s.IdP {
		b = append(b, fmt.Sprintf("%v/%v=%d", r.Request, r.Outcome, r.Counts[len(r.Counts)-1]))
	}
	return strings.Join(b, " ")
}

// Each decision is counted once, with its class, and as a cache hit or miss when the cache was asked.
func TestStatsCountDecisions(t *testing.T) {
	long := strings.Repeat("a", MaxTokenBytes+1)
	for _, tc := range []struct {
		name      string
		opts      []string // key, value, ...
		idpErr    error
		tokens    []string
		decisions string
		hits      uint64
		misses    uint64
		verdicts  uint64 // by introspection
		idp       string
	}{
		{"refused unread", []string{"username_validation", "true", "username_validation_template", "oauth2-token"}, nil,
			[]string{"", long}, "defer/username_validation=2", 0, 0, 0, ""},
		{"no token, too long, not printable", nil, nil, []string{"", long, "t\x01k"},
			"deny/no_token=1 deny/malformed=2", 0, 1, 0, ""},
		{"valid, then from the cache", []string{"cache_ttl", "60"}, nil, []string{token, token, token},
			"allow/valid=3", 2, 1, 1, "introspection/ok=1"},
		{"without the cache every CONNECT asks", nil, nil, []string{token, token},
			"allow/valid=2", 0, 2, 2, "introspection/ok=2"},
		{"refused, then from the negative cache", nil, errInactive, []string{token, token},
			"deny/token_refused=2", 1, 1, 1, "introspection/token_refused=1"},
		{"IdP down, then the breaker open", []string{"circuit_breaker_failures", "2"}, errDown, []string{"a", "b", "c"},
			"deny/idp_unavailable=2 deny/breaker_open=1", 0, 3, 0, "introspection/idp_unavailable=2"},
		{"misconfigured, deferred", []string{"token_verification_error", "defer"}, errMisconf, []string{token},
			"defer/misconfigured=1", 0, 1, 0, "introspection/misconfigured=1"},
		{"a replacement that cannot be rendered", []string{"username_replacement", "true", "username_replacement_template", "%%claim:nope%%"},
			nil, []string{token}, "deny/username_replacement=1", 0, 1, 1, "introspection/ok=1"},
		{"a rendered username that does not match", []string{"username_validation", "true", "username_validation_template", "%%oidc-username%%",
			"username_validation_error", "deny"}, nil, []string{token}, "deny/username_validation=1", 0, 1, 1, "introspection/ok=1"},
		{"a malformed ACL claim", []string{"acl_claim", "email"}, nil, []string{token}, "deny/acl_claim=1", 0, 1, 1, "introspection/ok=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []config.Option
			for i := 0; i+1 < len(tc.opts); i += 2 {
				opts = append(opts, opt(tc.opts[i], tc.opts[i+1]))
			}
			idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims)}, err: tc.idpErr}
			e, _ := newTestEngine(t, idp, &testClock{t: time.Unix(1_000_000, 0)}, opts...)
			for _, tok := range tc.tokens {
				e.Authenticate(context.Background(), Request{ClientID: "c", Username: "bob", Password: tok})
			}
			s := e.Stats()
			if got := decisionsOf(s); got != tc.decisions {
				t.Errorf("decisions %q, want %q", got, tc.decisions)
			}
			if s.CacheHits != tc.hits || s.CacheMisses != tc.misses {
				t.Errorf("cache hits %d misses %d, want %d and %d", s.CacheHits, s.CacheMisses, tc.hits, tc.misses)
			}
			if s.IntrospectionVerdicts != tc.verdicts || s.JWTVerdicts != 0 {
				t.Errorf("verdicts: introspection %d jwt %d, want %d and 0", s.IntrospectionVerdicts, s.JWTVerdicts, tc.verdicts)
			}
			if got := idpOf(s); got != tc.idp {
				t.Errorf("IdP requests %q, want %q", got, tc.idp)
			}
		})
	}
}

// A delayed check (Mosquitto 2.1) is one decision and one cache miss, although its worker asks the
// cache again; a check refused because the queue is full is counted too.
func TestStatsCountDelayedChecks(t *testing.T) {
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims)}}
	e, _ := newTestEngine(t, idp, &testClock{t: time.Unix(1_000_000, 0)})
	req := Request{ClientID: "c", Password: token}
	if _, ok := e.FromMemory(req); ok {
		t.Fatal("answered from memory")
	}
	e.Start(req)
	var done []Completion
	for deadline := time.Now().Add(5 * time.Second); len(done) == 0 && time.Now().Before(deadline); {
		done = e.Completed(done)
		time.Sleep(time.Millisecond)
	}
	s := e.Stats()
	if got := decisionsOf(s); got != "allow/valid=1" || s.CacheMisses != 1 {
		t.Errorf("decisions %q, misses %d", got, s.CacheMisses)
	}
}

// The breaker's state and each change of it are counted; without introspection there is no breaker.
func TestStatsBreaker(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{err: errDown, res: verified.Token{Claims: []byte(aliceClaims)}}
	e, _ := newTestEngine(t, idp, clk, opt("circuit_breaker_failures", "1"), opt("circuit_breaker_cooldown", "10"))
	states := func() string {
		s := e.Stats()
		return fmt.Sprintf("%v %v", s.Breaker, s.BreakerTransitions)
	}
	if got := states(); got != "closed [0 0 0]" || !e.Stats().HasBreaker {
		t.Fatalf("at start: %s", got)
	}
	e.Authenticate(context.Background(), Request{Password: "a"})
	if got := states(); got != "open [0 1 0]" {
		t.Errorf("after a failure: %s", got)
	}
	clk.advance(10 * time.Second)
	idp.setErr(nil)
	e.Authenticate(context.Background(), Request{Password: "b"})
	if got := states(); got != "closed [1 1 1]" {
		t.Errorf("after a probe that succeeded: %s", got)
	}

	iss := newJWTIssuer(t)
	if s := mustJWTEngine(t, iss).Stats(); s.HasBreaker {
		t.Error("a breaker without introspection")
	}
}

func mustJWTEngine(t *testing.T, iss *jwtIssuer) *Engine {
	e, _ := jwtEngine(t, iss, nil, &testClock{t: time.Now()})
	return e
}

// Local JWT checks count their verdicts and their key set fetches, and when the keys were fetched.
func TestStatsJWT(t *testing.T) {
	iss := newJWTIssuer(t)
	e := mustJWTEngine(t, iss)
	if !e.Stats().KeysFetched.IsZero() {
		t.Fatal("keys fetched before any fetch")
	}
	before := time.Now()
	tok := iss.token(t, time.Now().Add(time.Hour), "")
	for range 2 {
		if d := e.Authenticate(context.Background(), Request{Password: tok}); d.Result != Allow {
			t.Fatalf("valid JWT: %v", d.Result)
		}
	}
	e.Authenticate(context.Background(), Request{Password: iss.token(t, time.Now().Add(-time.Hour), "")})
	s := e.Stats()
	if s.JWTVerdicts != 3 || s.IntrospectionVerdicts != 0 {
		t.Errorf("verdicts: jwt %d introspection %d, want 3 and 0", s.JWTVerdicts, s.IntrospectionVerdicts)
	}
	if got := decisionsOf(s); got != "allow/valid=2 deny/token_refused=1" {
		t.Errorf("decisions %q", got)
	}
	if got := idpOf(s); got != "jwks/ok=1" {
		t.Errorf("IdP requests %q", got)
	}
	if s.KeysFetched.Before(before) || s.KeysFetched.After(time.Now()) {
		t.Errorf("keys fetched at %v", s.KeysFetched)
	}
}
