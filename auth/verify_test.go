package auth

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/cache"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

// scriptedIdP answers every token with the same result, counting calls; block, when set, holds each
// call until it is closed.
type scriptedIdP struct {
	calls  atomic.Int64
	res    verified.Token
	err    error
	block  chan struct{}
	mu     sync.Mutex
	errFor map[string]error
}

func (s *scriptedIdP) Verify(ctx context.Context, tok string) (verified.Token, error) {
	s.calls.Add(1)
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return verified.Token{}, fmt.Errorf("%w: %v", introspect.ErrIdPUnavailable, ctx.Err())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.errFor[tok]; err != nil {
		return verified.Token{}, err
	}
	res := s.res
	res.Source = verified.Introspection // as introspect.Client says of its answers
	return res, s.err
}

func (s *scriptedIdP) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var (
	errDown     = fmt.Errorf("%w: connection refused", introspect.ErrIdPUnavailable)
	errInactive = fmt.Errorf("%w: inactive", introspect.ErrTokenInvalid)
	errMisconf  = fmt.Errorf("%w: %w: status 401", introspect.ErrIdPUnavailable, introspect.ErrMisconfigured)
)

func newTestEngine(t testing.TB, idp verified.Verifier, clk *testClock, opts ...config.Option) (*Engine, *logRecorder) {
	t.Helper()
	cfg, err := config.Parse(append([]config.Option{
		{Key: "introspection_endpoint", Value: "https://idp.example/introspect"},
		{Key: "client_id", Value: "broker"},
		{Key: "client_secret", Value: "broker-secret"},
	}, opts...))
	if err != nil {
		t.Fatal(err)
	}
	log := &logRecorder{}
	return newEngine(cfg, idp, nil, log, clk.now, new(counters)), log
}

func TestCacheServesRepeats(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims), Expiry: clk.t.Add(time.Hour)}}
	e, _ := newTestEngine(t, idp, clk, opt("cache_ttl", "300"), opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-email%%"))
	req := Request{ClientID: "c", Password: token}
	for i := 0; i < 5; i++ {
		d := e.Authenticate(context.Background(), req)
		if d.Result != Allow || d.Username != "alice@example.com" {
			t.Fatalf("connect %d: %+v", i, d)
		}
	}
	if n := idp.calls.Load(); n != 1 {
		t.Errorf("the IdP was asked %d times for one token", n)
	}
	// cache_ttl (300 s) bounds the entry.
	clk.advance(301 * time.Second)
	e.Authenticate(context.Background(), req)
	if n := idp.calls.Load(); n != 2 {
		t.Errorf("after cache_ttl the IdP was asked %d times in all, want 2", n)
	}
}

func TestCacheEndsAtTokenExpiry(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims), Expiry: clk.t.Add(30 * time.Second)}}
	e, _ := newTestEngine(t, idp, clk, opt("cache_ttl", "300"))
	req := Request{Password: token}
	e.Authenticate(context.Background(), req)
	clk.advance(29 * time.Second)
	if _, hit := e.FromMemory(req); !hit {
		t.Error("no hit before exp")
	}
	clk.advance(time.Second)
	if _, hit := e.FromMemory(req); hit {
		t.Error("a cached entry outlived the token's exp")
	}
}

func TestNegativeCache(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{err: errInactive}
	e, _ := newTestEngine(t, idp, clk)
	req := Request{Password: "revoked"}
	for i := 0; i < 3; i++ {
		if d := e.Authenticate(context.Background(), req); d.Result != Deny {
			t.Fatalf("inactive token: %v", d.Result)
		}
	}
	if n := idp.calls.Load(); n != 1 {
		t.Errorf("refusal not cached: %d calls", n)
	}
	clk.advance(10 * time.Second) // negative_cache_ttl
	e.Authenticate(context.Background(), req)
	if n := idp.calls.Load(); n != 2 {
		t.Errorf("refusal outlived negative_cache_ttl: %d calls", n)
	}

	off, _ := newTestEngine(t, idp, clk, opt("negative_cache_ttl", "0"))
	off.Authenticate(context.Background(), req)
	off.Authenticate(context.Background(), req)
	if n := idp.calls.Load(); n != 4 {
		t.Errorf("negative_cache_ttl 0 still cached: %d calls", n)
	}
}

func TestIdPErrorsAreNotCached(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{err: errDown}
	e, _ := newTestEngine(t, idp, clk, opt("circuit_breaker_failures", "0"))
	req := Request{Password: token}
	if d := e.Authenticate(context.Background(), req); d.Result != Deny {
		t.Fatalf("IdP down: %v", d.Result)
	}
	idp.setErr(nil)
	idp.res = verified.Token{Claims: []byte(aliceClaims)}
	if d := e.Authenticate(context.Background(), req); d.Result != Allow {
		t.Errorf("after the IdP came back: %v", d.Result)
	}
}

func TestCacheOff(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims)}}
	e, _ := newTestEngine(t, idp, clk, opt("cache_ttl", "0"))
	e.Authenticate(context.Background(), Request{Password: token})
	e.Authenticate(context.Background(), Request{Password: token})
	if n := idp.calls.Load(); n != 2 {
		t.Errorf("cache_ttl 0 still cached: %d calls", n)
	}
}

func TestConcurrentChecksShareOneRequest(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims)}, block: make(chan struct{})}
	e, _ := newTestEngine(t, idp, clk)
	var wg sync.WaitGroup
	results := make(chan Result, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- e.Authenticate(context.Background(), Request{Password: token}).Result
		}()
	}
	for idp.calls.Load() == 0 {
		runtime.Gosched()
	}
	time.Sleep(50 * time.Millisecond) // let the others join the call in flight
	close(idp.block)
	wg.Wait()
	close(results)
	for r := range results {
		if r != Allow {
			t.Errorf("result %v", r)
		}
	}
	if n := idp.calls.Load(); n != 1 {
		t.Errorf("20 concurrent checks of one token made %d IdP requests", n)
	}
}

func TestCircuitBreaker(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims)}}
	e, log := newTestEngine(t, idp, clk, opt("cache_ttl", "300"), opt("circuit_breaker_failures", "3"), opt("circuit_breaker_cooldown", "10"))
	// A token cached while the IdP was up keeps working while the breaker is open.
	e.Authenticate(context.Background(), Request{Password: "cached"})
	idp.setErr(errDown)
	for i := 0; i < 3; i++ {
		e.Authenticate(context.Background(), Request{Password: fmt.Sprint("t", i)})
	}
	before := idp.calls.Load()
	for i := 0; i < 5; i++ {
		if d := e.Authenticate(context.Background(), Request{Password: fmt.Sprint("u", i)}); d.Result != Deny {
			t.Fatalf("open breaker: %v", d.Result)
		}
	}
	if idp.calls.Load() != before {
		t.Error("the open breaker still asked the IdP")
	}
	if d := e.Authenticate(context.Background(), Request{Password: "cached"}); d.Result != Allow {
		t.Errorf("cached token while open: %v", d.Result)
	}
	// After the cool-down one probe goes out; it fails, so the breaker opens again.
	clk.advance(10 * time.Second)
	e.Authenticate(context.Background(), Request{Password: "p1"})
	if idp.calls.Load() != before+1 {
		t.Errorf("no single probe after the cool-down (%d calls)", idp.calls.Load()-before)
	}
	e.Authenticate(context.Background(), Request{Password: "p2"})
	if idp.calls.Load() != before+1 {
		t.Error("the breaker let a request through right after a failed probe")
	}
	// The IdP is back: the next probe closes the breaker.
	idp.setErr(nil)
	clk.advance(10 * time.Second)
	if d := e.Authenticate(context.Background(), Request{Password: "p3"}); d.Result != Allow {
		t.Errorf("probe with the IdP back: %v", d.Result)
	}
	if d := e.Authenticate(context.Background(), Request{Password: "p4"}); d.Result != Allow {
		t.Errorf("after closing: %v", d.Result)
	}
	var changes []string
	for _, l := range log.lines {
		if strings.HasPrefix(l, "circuit breaker") {
			changes = append(changes, strings.Fields(l)[2])
		}
	}
	if want := "open half-open: open half-open: closed:"; strings.Join(changes, " ") != want {
		t.Errorf("state changes logged: %q, want %q", changes, want)
	}
}

func TestStartCompletes(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(aliceClaims)}, errFor: map[string]error{"bad": errInactive}}
	e, _ := newTestEngine(t, idp, clk, opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-username%%"))
	if !CanDelay(e.cfg) {
		t.Fatal("CanDelay false with deny policies")
	}
	e.Start(Request{ClientID: "good", Password: token})
	e.Start(Request{ClientID: "bad", Password: "bad"})
	var got []Completion
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		got = e.Completed(got)
		time.Sleep(time.Millisecond)
	}
	if len(got) != 2 {
		t.Fatalf("completions %+v", got)
	}
	for _, c := range got {
		want := Completion{ClientID: "good", Decision: Decision{Result: Allow, Rename: true, Username: "alice", Introspected: true, Token: cache.KeyOf(token)}}
		if c.ClientID == "bad" {
			want = Completion{ClientID: "bad", Decision: Decision{Result: Deny, reason: ReasonTokenRefused}}
		}
		if c != want {
			t.Errorf("completion %+v, want %+v", c, want)
		}
	}
	time.Sleep(10 * time.Millisecond)
	if more := e.Completed(nil); len(more) != 0 {
		t.Errorf("answers left after collecting both: %+v", more)
	}
}

func TestStartTimesOut(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{block: make(chan struct{})} // never answers
	defer close(idp.block)
	e, _ := newTestEngine(t, idp, clk, opt("timeout", "0.1"))
	start := time.Now()
	e.Start(Request{ClientID: "slow", Password: token})
	var got []Completion
	for len(got) == 0 && time.Since(start) < 5*time.Second {
		got = e.Completed(got)
		time.Sleep(time.Millisecond)
	}
	if len(got) != 1 || got[0].Decision.Result != Deny {
		t.Fatalf("completions %+v", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("answer after %v with a 0.1 s timeout", d)
	}
}

func TestCanDelay(t *testing.T) {
	tests := []struct {
		opts []config.Option
		want bool
	}{
		{nil, true},
		{[]config.Option{opt("token_verification_error", "defer")}, false},
		// A placeholder-free validation decides before any IdP call, so its defer is fine.
		{[]config.Option{opt("username_validation", "true"), opt("username_validation_template", "oauth2-token")}, true},
		{[]config.Option{opt("username_validation", "true"), opt("username_validation_template", "u-%%oidc-sub%%")}, false},
		{[]config.Option{opt("username_validation", "true"), opt("username_validation_template", "u-%%oidc-sub%%"), opt("username_validation_error", "deny")}, true},
		{[]config.Option{opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-sub%%"), opt("username_replacement_error", "defer")}, false},
	}
	for i, tt := range tests {
		e, _ := newTestEngine(t, &scriptedIdP{}, &testClock{}, tt.opts...)
		if got := CanDelay(e.cfg); got != tt.want {
			t.Errorf("case %d: CanDelay %v, want %v", i, got, tt.want)
		}
	}
}

// realisticClaims is an introspection answer of the size Keycloak or ZITADEL send (about 900 bytes).
const realisticClaims = `{"active":true,"scope":"openid profile email mqtt","client_id":"device-fleet","username":"device-0042",
"email":"device-0042@fleet.example.com","sub":"7c6f2d8e-4b1a-4e4f-9d3c-2a1b0c9d8e7f","token_type":"Bearer","exp":4102444800,
"iat":1700000000,"nbf":1700000000,"iss":"https://idp.example.com/realms/fleet","aud":["mqtt-broker","account"],
"realm_access":{"roles":["device","offline_access","uma_authorization"]},"resource_access":{"account":{"roles":["manage-account","view-profile"]}},
"urn:zitadel:iam:org:project:roles":{"fleet-devices":{"123456789":"fleet.example.com"}},"preferred_username":"device-0042",
"name":"Device 0042","given_name":"Device","family_name":"0042","email_verified":true,"sid":"a1b2c3d4-e5f6-7a8b-9c0d-e1f2a3b4c5d6",
"acr":"1","azp":"device-fleet","session_state":"a1b2c3d4-e5f6-7a8b-9c0d-e1f2a3b4c5d6","jti":"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}`

// heap is the Go heap in use after a collection, for the tests that state a memory bound.
func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// 100 000 cached tokens must fit in 64 MiB of Go heap.
func TestCacheMemory(t *testing.T) {
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(realisticClaims)}}
	e, _ := newTestEngine(t, idp, &testClock{t: time.Unix(1_000_000, 0)}, opt("cache_ttl", "300"),
		opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-email%%"))
	before := heap()
	for i := 0; i < 100_000; i++ {
		if d := e.Authenticate(context.Background(), Request{Password: fmt.Sprintf("token-%08d-padding-to-a-realistic-opaque-length", i)}); d.Result != Allow {
			t.Fatal(d)
		}
	}
	if n := e.v.cache.Len(); n != 100_000 {
		t.Fatalf("%d entries cached", n)
	}
	used := heap() - before
	t.Logf("100000 cached tokens: %.1f MiB of heap (%d bytes each)", float64(used)/(1<<20), used/100_000)
	if used > 64<<20 {
		t.Errorf("100000 cached tokens take %.1f MiB, over 64 MiB", float64(used)/(1<<20))
	}
	runtime.KeepAlive(e)
}

// BenchmarkCacheHit is the cost of a reconnect with a known token, renamed by template.
func BenchmarkCacheHit(b *testing.B) {
	idp := &scriptedIdP{res: verified.Token{Claims: []byte(realisticClaims)}}
	e, _ := newTestEngine(b, idp, &testClock{t: time.Unix(1_000_000, 0)}, opt("cache_ttl", "300"),
		opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-email%%"))
	req := Request{ClientID: "device-0042", Username: "device-0042", Password: "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.a-token-of-typical-length-0123456789abcdef0123456789"}
	e.Authenticate(context.Background(), req)
	b.ReportAllocs()
	for b.Loop() {
		if d, hit := e.FromMemory(req); !hit || d.Result != Allow {
			b.Fatal("miss")
		}
	}
}
