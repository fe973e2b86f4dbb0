package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Token prefixes the fake IdP treats specially, so the stall rows can make one client slow without
// slowing the publisher and subscriber that measure the stall.
const (
	// slowPrefix tokens are answered only after slowDelay, every time.
	slowPrefix = "slow-"
	// slowLaterPrefix tokens are answered at once the first time and after slowDelay from then on: a
	// plugin that caches the first verdict never sees the slow answers.
	slowLaterPrefix = "slowlater-"
	slowDelay       = 2 * time.Second
)

// Credentials the broker's plugin sends; the IdP checks them so a misconfigured row fails visibly
// instead of measuring a fast path of refusals.
const (
	idpClientID     = "bench"
	idpClientSecret = "bench-secret"
)

// fakeIdP is an in-process RFC 7662 introspection endpoint over plain HTTP on 127.0.0.1. Running it
// in-process keeps the IdP's cost constant and tiny, so the rows measure the broker and the plugin.
type fakeIdP struct {
	URL      string     // the introspection endpoint
	JWT      *jwtIssuer // signs the JWT rows' tokens; its issuer is this server's root URL
	srv      *http.Server
	requests atomic.Int64
	delayNs  atomic.Int64 // added to every answer

	mu   sync.Mutex
	seen map[string]bool // slowLaterPrefix tokens already answered once
	// answered, while not nil, records when the answer for each token was written (see Record).
	answered map[string]time.Time
}

// startIdP listens on a free 127.0.0.1 port and serves /introspect, and discovery and the JWT key set,
// until Close.
func startIdP() (*fakeIdP, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fake IdP listen: %w", err)
	}
	root := "http://" + l.Addr().String()
	jwt, err := newJWTIssuer(root)
	if err != nil {
		l.Close()
		return nil, err
	}
	i := &fakeIdP{URL: root + "/introspect", JWT: jwt, seen: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /introspect", i.introspect)
	jwt.register(mux, func() { i.requests.Add(1) })
	i.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := i.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("fake IdP stopped: %v\n", err)
		}
	}()
	return i, nil
}

// Close stops the server, cutting any answer still sleeping.
func (i *fakeIdP) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = i.srv.Shutdown(ctx)
	_ = i.srv.Close()
}

// SetDelay makes every later answer wait d first (the 5 ms row).
func (i *fakeIdP) SetDelay(d time.Duration) { i.delayNs.Store(int64(d)) }

// Record starts recording, per token, when each answer has been written to the plugin's connection,
// and forgets what an earlier Record kept.
func (i *fakeIdP) Record() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.answered = map[string]time.Time{}
}

// Answered stops recording and returns the times recorded since Record.
func (i *fakeIdP) Answered() map[string]time.Time {
	i.mu.Lock()
	defer i.mu.Unlock()
	a := i.answered
	i.answered = nil
	return a
}

// Requests returns how many requests (introspection, discovery, key set) have arrived so far.
func (i *fakeIdP) Requests() int64 { return i.requests.Load() }

// introspect answers every correctly authenticated request with an active token valid for an hour,
// after the configured delay and any per-token slowness.
func (i *fakeIdP) introspect(w http.ResponseWriter, r *http.Request) {
	i.requests.Add(1)
	if id, secret, ok := r.BasicAuth(); !ok || id != idpClientID || secret != idpClientSecret {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	token := r.PostFormValue("token")
	wait := time.Duration(i.delayNs.Load()) + i.tokenDelay(token)
	if wait > 0 {
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
	}
	// With its length declared and flushed, the answer is complete on the wire when Flush returns: the
	// moment the wake-up latency counts from.
	body := fmt.Sprintf(`{"active":true,"sub":"x","username":%q,"tenant":%q,"exp":%d}`, msgPubUser, msgTenant, time.Now().Add(time.Hour).Unix())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = io.WriteString(w, body)
	http.NewResponseController(w).Flush()
	written := time.Now()
	i.mu.Lock()
	if i.answered != nil {
		i.answered[token] = written
	}
	i.mu.Unlock()
}

// tokenDelay is the extra wait for the stall rows' special tokens.
func (i *fakeIdP) tokenDelay(token string) time.Duration {
	switch {
	case strings.HasPrefix(token, slowPrefix):
		return slowDelay
	case strings.HasPrefix(token, slowLaterPrefix):
		i.mu.Lock()
		defer i.mu.Unlock()
		if i.seen[token] {
			return slowDelay
		}
		i.seen[token] = true
	}
	return 0
}
