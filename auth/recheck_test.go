package auth

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
)

// A re-check asks the IdP every time, whatever the cache holds, and only a refusal of the token is a
// verdict against it: an IdP that fails, refuses the broker, or sits behind an open breaker kicks nobody.
func TestRecheck(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opts        []config.Option
		before      []error // the IdP's answers to re-checks before the one tested
		answer      error
		wantRevoked bool
		wantReason  string // a part of it; "" wants none
		wantCalls   int64  // IdP requests made by the re-checks
	}{
		{"active", nil, nil, nil, false, "", 1},
		{"inactive", nil, nil, errInactive, true, "inactive", 1},
		{"IdP down", nil, nil, errDown, false, "connection refused", 1},
		{"broker misconfigured", nil, nil, errMisconf, false, "status 401", 1},
		// A proxy answering 4xx for the IdP refuses a CONNECT but is no proof of revocation.
		{"a 4xx instead of an answer", nil, nil, fmt.Errorf("%w: %w (status 400)", introspect.ErrTokenInvalid, introspect.ErrRequestRefused), false, "status 400", 1},
		{"breaker open", []config.Option{opt("circuit_breaker_failures", "2")}, []error{errDown, errDown}, errInactive, false, "circuit breaker open", 2},
		{"breaker off", []config.Option{opt("circuit_breaker_failures", "0")}, []error{errDown, errDown}, errInactive, true, "inactive", 3},
		{"the cache is bypassed", []config.Option{opt("cache_ttl", "300")}, nil, errInactive, true, "inactive", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &testClock{t: time.Unix(1_000_000, 0)}
			idp := &scriptedIdP{}
			e, _ := newTestEngine(t, idp, clk, tc.opts...)
			if d := e.Authenticate(context.Background(), Request{ClientID: "dev", Password: token}); d.Result != Allow || !d.Introspected {
				t.Fatalf("admission: %+v", d)
			}
			connects := idp.calls.Load()
			for _, err := range tc.before {
				idp.setErr(err)
				e.askAgain(context.Background(), token)
			}
			idp.setErr(tc.answer)
			revoked, reason := e.askAgain(context.Background(), token)
			if revoked != tc.wantRevoked || (tc.wantReason == "") != (reason == "") || !strings.Contains(reason, tc.wantReason) {
				t.Errorf("Recheck = %v, %q; want %v, %q", revoked, reason, tc.wantRevoked, tc.wantReason)
			}
			if n := idp.calls.Load() - connects; n != tc.wantCalls {
				t.Errorf("%d IdP requests, want %d", n, tc.wantCalls)
			}
			if strings.Contains(reason, token) {
				t.Error("the reason holds the token")
			}
		})
	}
}

// A refusal seen by a re-check replaces the token's cache entry, so the client it disconnects cannot
// come back with the same token from the cache; without a negative cache the entry just goes.
func TestRecheckRefusalReplacesCacheEntry(t *testing.T) {
	for _, negTTL := range []string{"10", "0"} {
		t.Run("negative_cache_ttl "+negTTL, func(t *testing.T) {
			clk := &testClock{t: time.Unix(1_000_000, 0)}
			idp := &scriptedIdP{}
			e, _ := newTestEngine(t, idp, clk, opt("cache_ttl", "300"), opt("negative_cache_ttl", negTTL))
			req := Request{ClientID: "dev", Password: token}
			e.Authenticate(context.Background(), req)
			if _, known := e.FromMemory(req); !known {
				t.Fatal("the admission was not cached")
			}
			idp.setErr(errInactive)
			if revoked, _ := e.askAgain(context.Background(), token); !revoked {
				t.Fatal("not revoked")
			}
			d, known := e.FromMemory(req)
			if known && d.Result == Allow {
				t.Error("the cache still admits the revoked token")
			}
			if known != (negTTL != "0") {
				t.Errorf("known from memory: %v", known)
			}
		})
	}
}

// Re-checks run in the background on a few workers, never more at once, and each outcome comes back
// under its ref with a wake-up; a full queue refuses more without blocking.
func TestStartRecheck(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{block: make(chan struct{}), errFor: map[string]error{"revoked": errInactive}}
	e, _ := newTestEngine(t, idp, clk)
	t.Cleanup(e.Close)
	var wakes atomic.Int64
	e.OnCompletion(func() { wakes.Add(1) })
	const n = 20
	for i := range n {
		tok := "active"
		if i%2 == 1 {
			tok = "revoked"
		}
		if !e.StartRecheck(uint64(i), tok) {
			t.Fatalf("re-check %d refused", i)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for idp.calls.Load() < maxRecheckers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if c := idp.calls.Load(); c != maxRecheckers {
		t.Errorf("%d requests in flight at once, want %d", c, maxRecheckers)
	}
	close(idp.block)
	var got []Rechecked
	for len(got) < n && time.Now().Before(deadline) {
		got = e.Rechecked(got)
		time.Sleep(time.Millisecond)
	}
	if len(got) != n || wakes.Load() != n {
		t.Fatalf("%d outcomes, %d wake-ups, want %d", len(got), wakes.Load(), n)
	}
	for _, r := range got {
		if r.Revoked != (r.Ref%2 == 1) {
			t.Errorf("ref %d: %+v", r.Ref, r)
		}
	}
}

func TestStartRecheckQueueFull(t *testing.T) {
	clk := &testClock{t: time.Unix(1_000_000, 0)}
	idp := &scriptedIdP{block: make(chan struct{})}
	e, _ := newTestEngine(t, idp, clk)
	t.Cleanup(e.Close)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(idp.block) }) })
	started := 0
	for e.StartRecheck(uint64(started), token) {
		started++
		if started > maxRecheckers+maxRecheckQueue {
			t.Fatal("the queue takes more than its bound")
		}
	}
	if started < maxRecheckQueue {
		t.Errorf("refused after %d re-checks", started)
	}
}
