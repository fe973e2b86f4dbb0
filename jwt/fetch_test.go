package jwt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// A key set fetch is bounded by Timeout as a whole, however the IdP spreads its answer: 2.0's broker
// thread may wait for the first one. And a connection the IdP closed while idle does not fail the next.
func TestKeyFetchAgainstServerBehaviours(t *testing.T) {
	const (
		timeout = 300 * time.Millisecond
		gap     = 50 * time.Millisecond // the key set is hundreds of bytes: far beyond timeout
	)
	keySet := func() string {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{newRSA(t, "k1").jwk()}})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}()
	cases := []struct {
		name    string
		handler func(done <-chan struct{}) http.HandlerFunc
		idle    time.Duration // the server's IdleTimeout; the second fetch waits twice as long
		ok      bool
	}{
		{name: "headers trickled", handler: func(done <-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				io.Copy(conn, &slowReader{fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(keySet), keySet), gap, done})
			}
		}},
		{name: "body trickled", handler: func(done <-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				io.Copy(flushingWriter{w}, &slowReader{keySet, gap, done})
			}
		}},
		{name: "idle connection closed after 100 ms", idle: 100 * time.Millisecond, ok: true,
			handler: func(<-chan struct{}) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, keySet) }
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			srv := httptest.NewUnstartedServer(tc.handler(done))
			srv.Config.IdleTimeout = tc.idle
			srv.Start()
			t.Cleanup(func() { close(done); srv.Close() })
			v, err := New(Config{Issuer: "https://issuer.example", JWKSURL: srv.URL + "/jwks", Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(v.Close)
			for i := range map[bool]int{false: 1, true: 2}[tc.ok] {
				time.Sleep(time.Duration(i) * 2 * tc.idle)
				start := time.Now()
				err := v.keys.refresh(context.Background(), true)
				if d := time.Since(start); d > timeout+time.Second {
					t.Errorf("fetch %d took %v with timeout %v", i+1, d, timeout)
				}
				if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrKeysUnavailable) {
					t.Errorf("fetch %d: %v", i+1, err)
				}
			}
		})
	}
}

// slowReader yields s one byte per gap, and ends early when done is closed.
type slowReader struct {
	s    string
	gap  time.Duration
	done <-chan struct{}
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	select {
	case <-time.After(r.gap):
	case <-r.done:
		return 0, io.EOF
	}
	n := copy(p[:1], r.s)
	r.s = r.s[n:]
	return n, nil
}

// flushingWriter sends each write to the client at once.
type flushingWriter struct{ http.ResponseWriter }

func (w flushingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.ResponseWriter.(http.Flusher).Flush()
	return n, err
}

// Key fetches follow an issuer's redirects, but never from https to plain http.
func TestRedirectsNeverDowngrade(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{
		{"https://idp.example/jwks", "https://cdn.example/jwks", true},
		{"http://idp.example/jwks", "http://cdn.example/jwks", true},
		{"http://idp.example/jwks", "https://idp.example/jwks", true},
		{"https://idp.example/jwks", "http://idp.example/jwks", false},
	} {
		err := noDowngrade(req(tc.to), []*http.Request{req(tc.from)})
		if (err == nil) != tc.ok {
			t.Errorf("%s -> %s: %v", tc.from, tc.to, err)
		}
		if err != nil && !strings.Contains(err.Error(), "Location "+tc.to) {
			t.Errorf("%s -> %s: %q does not name where the redirect led", tc.from, tc.to, err)
		}
	}
	many := make([]*http.Request, 10)
	for i := range many {
		many[i] = req("https://idp.example/jwks")
	}
	if noDowngrade(req("https://idp.example/jwks"), many) == nil {
		t.Error("an eleventh redirect was followed")
	}
}

// Refetch brings keys the issuer rotated in, at once and without a token asking for them; a failed one
// keeps the keys held.
func TestRefetch(t *testing.T) {
	old, next := newRSA(t, "old"), newRSA(t, "next")
	f := setup(t, Config{}, old)
	if _, err := f.verify(t, old.token(t, nil, f.claims(nil))); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		down  bool
		keys  []signer
		holds string // a kid held afterwards
	}{
		{"rotated", false, []signer{next}, "next"},
		{"IdP down", true, []signer{old}, "next"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.idp.setKeys(tc.keys...)
			f.idp.setDown(tc.down)
			before := f.v.keys.fetches.Load()
			f.v.Refetch() // well within minRefetch of the last fetch
			waitFor(t, func() bool { return f.v.keys.fetches.Load() > before && !fetching(f.v.keys) })
			if len(f.v.keys.candidates(tc.holds, "RS256")) == 0 {
				t.Errorf("kid %q not held after the refetch", tc.holds)
			}
		})
	}
}

// SetTLS decides which certificates the next fetches trust, a kept connection included.
func TestSetTLS(t *testing.T) {
	p := &idp{oidc: true}
	p.setKeys(newRSA(t, "k1"))
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	trusted := x509.NewCertPool()
	trusted.AddCert(p.srv.Certificate())
	other := &tls.Config{RootCAs: x509.NewCertPool()} // trusts nothing the server has
	good := &tls.Config{RootCAs: trusted}
	cases := []struct {
		name          string
		before, after *tls.Config
		okBefore      bool
	}{
		{"a CA added is trusted", other, good, false},
		{"a CA removed is not, kept connection or not", good, other, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(Config{Issuer: p.srv.URL, JWKSURL: p.srv.URL + "/jwks", Timeout: 2 * time.Second, TLS: tc.before})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(v.Close)
			if err := v.keys.refresh(context.Background(), true); (err == nil) != tc.okBefore {
				t.Fatalf("before: %v", err)
			}
			v.SetTLS(tc.after)
			if err := v.keys.refresh(context.Background(), true); (err == nil) == tc.okBefore {
				t.Fatalf("after: %v", err)
			}
		})
	}
}

// fetching says whether a fetch is under way.
func fetching(s *keySet) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight != nil
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
