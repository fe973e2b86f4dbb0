package auth

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

// What clients without credentials send must never open the circuit breaker: the IdP's refusals of
// their tokens (400 unsupported_token_type, 413) are answers. A valid device keeps getting in.
func TestJunkNeverOpensTheBreaker(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	refused := fmt.Errorf("%w: the identity provider refused the token: unsupported_token_type (status 400)", introspect.ErrTokenInvalid)
	idp := &scriptedIdP{err: refused, errFor: map[string]error{}}
	e, log := newTestEngine(t, idp, clk, opt("circuit_breaker_failures", "3"))
	for i := range 100 {
		if d := e.Authenticate(context.Background(), Request{ClientID: "junk", Password: fmt.Sprintf("eyJ%d.e30.x", i)}); d.Result != Deny {
			t.Fatalf("junk %d: %v", i, d.Result)
		}
	}
	idp.setErr(nil)
	idp.res = verified.Token{Claims: []byte(aliceClaims)}
	if d := e.Authenticate(context.Background(), Request{ClientID: "device", Password: "valid"}); d.Result != Allow {
		t.Errorf("valid token after the junk: %v", d.Result)
	}
	for _, l := range log.lines {
		if strings.Contains(l, "circuit breaker") {
			t.Errorf("logged %q", l)
		}
	}
}

// A refusal of the broker's own credentials is logged loudly once, not at every CONNECT, and does not
// open the breaker: "breaker open" would hide the cause. An answer from the IdP re-arms the line.
func TestMisconfiguredIdPLoggedOnce(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	misconf := fmt.Errorf("%w: %w: status 401, check client_id and client_secret", introspect.ErrIdPUnavailable, introspect.ErrMisconfigured)
	idp := &scriptedIdP{err: misconf, res: verified.Token{Claims: []byte(aliceClaims)}}
	e, log := newTestEngine(t, idp, clk, opt("circuit_breaker_failures", "2"))
	count := func() (loud, breaker int) {
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, l := range log.lines {
			if strings.HasPrefix(l, "the identity provider refuses the broker's own requests") {
				loud++
			}
			if strings.Contains(l, "circuit breaker") {
				breaker++
			}
		}
		return
	}
	for i := range 10 {
		if d := e.Authenticate(context.Background(), Request{Password: fmt.Sprint("t", i)}); d.Result != Deny {
			t.Fatalf("misconfigured: %v", d.Result)
		}
	}
	if calls := idp.calls.Load(); calls != 10 {
		t.Errorf("%d of 10 checks asked the IdP: the breaker opened", calls)
	}
	if loud, br := count(); loud != 1 || br != 0 {
		t.Errorf("logged the misconfiguration %d times and the breaker %d times, want 1 and 0", loud, br)
	}
	idp.setErr(nil)
	e.Authenticate(context.Background(), Request{Password: "fixed"})
	idp.setErr(misconf)
	e.Authenticate(context.Background(), Request{Password: "broken again"})
	if loud, _ := count(); loud != 2 {
		t.Errorf("after an answer and a new refusal: logged %d times, want 2", loud)
	}
}

// A password that cannot be an access token is refused without asking the IdP or hashing it whole.
func TestTokenShapeRefusedLocally(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims)}}
	e, log := newTestEngine(t, idp, clk)
	for name, tok := range map[string]string{
		"over the bound": strings.Repeat("a", MaxTokenBytes+1),
		"newline":        "abc\ndef",
		"NUL":            "abc\x00def",
		"UTF-8":          "tökén",
		"DEL":            "abc\x7f",
	} {
		if d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: tok}); d.Result != Deny {
			t.Errorf("%s: %v", name, d.Result)
		}
	}
	if n := idp.calls.Load(); n != 0 {
		t.Errorf("%d malformed tokens reached the IdP", n)
	}
	for _, l := range log.lines {
		if !strings.Contains(l, "malformed") {
			t.Errorf("log line %q does not say malformed", l)
		}
	}
	// Control: the longest token allowed, printable, is asked about.
	if d := e.Authenticate(context.Background(), Request{ClientID: "c", Password: strings.Repeat("~", MaxTokenBytes)}); d.Result != Allow {
		t.Errorf("a token of exactly %d printable bytes: %v", MaxTokenBytes, d.Result)
	}
}

// A negative-cache entry costs a fixed small size however long the refusal's reason: 10 000 refusals
// whose error quotes 47 KB each cost at most 512 bytes each, and they are reclaimed after negative_cache_ttl without
// a lookup.
func TestNegativeEntriesStaySmall(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	hostile := fmt.Errorf("%w: %s", introspect.ErrTokenInvalid, strings.Repeat(`{"kid":`, 47<<10/7))
	idp := &scriptedIdP{err: hostile}
	e, log := newTestEngine(t, idp, clk, opt("negative_cache_ttl", "10"))
	const n = 10_000
	before := heap()
	for i := range n {
		e.Authenticate(context.Background(), Request{ClientID: "junk", Password: fmt.Sprintf("junk-%08d", i)})
	}
	if got := e.v.cache.Len(); got != n {
		t.Fatalf("%d entries cached, want %d", got, n)
	}
	log.lines, log.levels = nil, nil // the refusals' log lines are the broker's, not the cache's
	used := heap() - before
	t.Logf("%d refusals cached: %d bytes each", n, used/n)
	if used/n > 512 {
		t.Errorf("a refusal's entry costs %d bytes, over 512", used/n)
	}
	clk.advance(11 * time.Second)
	for _, done := e.v.cache.Sweep(sweepRound); !done; _, done = e.v.cache.Sweep(sweepRound) {
	}
	if got := e.v.cache.Len(); got != 0 {
		t.Errorf("%d expired refusals left after a sweep", got)
	}
	runtime.KeepAlive(e)
	if !errors.Is(hostile, introspect.ErrTokenInvalid) {
		t.Fatal("test error is not a refusal")
	}
}

// A session costs a small, fixed amount beside its grants: 10 000 sessions with two rules and a topics
// claim (three grants each) fit in 10 MiB, about 1 KiB each. What a client sends adds nothing: its
// client id is bounded by the broker, and its grants are the operator's rules and the IdP's claims.
func TestSessionMemory(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(deviceClaims)}}
	e, _ := newTestEngine(t, idp, clk, opt("acl_rule", "allow all users/%u/#"), opt("acl_rule", "allow subscribe broadcast/#"),
		opt("acl_topics_claim", "topics"), opt("username_validation", "true"), opt("username_validation_template", "%%oidc-username%%"))
	const n = 10_000
	// The cache entry is counted elsewhere (TestCacheMemory): one token for all sessions here.
	e.Authenticate(context.Background(), Request{ClientID: "warm", Username: "alice", Password: token})
	sessions := make([]*Session, n)
	before := heap()
	for i := range sessions {
		sessions[i] = sessionFor(t, e, Request{ClientID: fmt.Sprintf("device-%06d", i), Username: "alice", Password: token})
	}
	used := heap() - before
	t.Logf("%d sessions: %d bytes each", n, used/n)
	if used/n > 1024 {
		t.Errorf("a session costs %d bytes, over 1024", used/n)
	}
	runtime.KeepAlive(sessions)
}
