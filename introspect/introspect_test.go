package introspect

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

const (
	testToken  = "tok-3xT7.Zq_9~abc/def+=="
	testID     = "broker:client id%1"
	testSecret = "s3cr:et %20 pass+word"
)

var testNow = time.Unix(1_700_000_000, 0)

// The whole suite runs once per transport: `make unit` passes -blocking for the second run.
var blockingIO = flag.Bool("blocking", false, "run the tests on the blocking transport (Config.BlockingIO)")

func testConfig(endpoint string) Config {
	return Config{
		Endpoint:     endpoint,
		ClientID:     testID,
		ClientSecret: testSecret,
		Timeout:      2 * time.Second,
		TLSVerify:    true,
		Now:          func() time.Time { return testNow },
		BlockingIO:   *blockingIO,
	}
}

func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// jsonReply answers every request with status and body as application/json.
func jsonReply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// hugeReply writes a 10 MB JSON string, with or without Content-Length.
func hugeReply(withLength bool) http.HandlerFunc {
	const size = 10 << 20
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if withLength {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		chunk := []byte(`{"active":true,"pad":"` + strings.Repeat("a", 64<<10-22))
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			chunk = []byte(strings.Repeat("a", 64<<10))
		}
	}
}

// stall waits until the client goes away, after optionally sending headers
// and the start of a body. It reads the request first: only then does
// net/http notice a closed connection and cancel r.Context().
func stall(sendHeaders bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if sendHeaders {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"active":`))
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
}

// checkRequest asserts what RFC 7662 §2.1 and RFC 6749 §2.3.1 require of the
// request, including the form-url-encoding of id and secret in Basic auth.
func checkRequest(t *testing.T, r *http.Request, method AuthMethod) {
	t.Helper()
	if r.Method != http.MethodPost {
		t.Errorf("method = %s", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", ct)
	}
	if a := r.Header.Get("Accept"); a != "application/json" {
		t.Errorf("Accept = %q", a)
	}
	if err := r.ParseForm(); err != nil {
		t.Errorf("ParseForm: %v", err)
	}
	if got := r.PostForm.Get("token"); got != testToken {
		t.Errorf("token = %q", got)
	}
	if got := r.PostForm.Get("token_type_hint"); got != "access_token" {
		t.Errorf("token_type_hint = %q", got)
	}
	auth := r.Header.Get("Authorization")
	switch method {
	case ClientSecretBasic:
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
		if err != nil || !strings.HasPrefix(auth, "Basic ") {
			t.Fatalf("Authorization = %q", auth)
		}
		const want = "broker%3Aclient+id%251:s3cr%3Aet+%2520+pass%2Bword"
		if string(raw) != want {
			t.Errorf("basic credentials = %q, want %q", raw, want)
		}
		if r.PostForm.Has("client_id") || r.PostForm.Has("client_secret") {
			t.Errorf("credentials in form with client_secret_basic")
		}
	case ClientSecretPost:
		if auth != "" {
			t.Errorf("Authorization = %q with client_secret_post", auth)
		}
		if r.PostForm.Get("client_id") != testID || r.PostForm.Get("client_secret") != testSecret {
			t.Errorf("form credentials = %q / %q", r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"))
		}
	}
}

// checkErr asserts that err wraps want (and not the other sentinel) and
// mentions reason; want nil asserts success. For every failure it also
// asserts that the error leaks neither the token nor the client
// credentials, in any encoding they were sent in, so every failure case in
// this file is a leak test.
func checkErr(t *testing.T, err, want error, reason string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got success, want %v: %s", want, reason)
	}
	if errors.Is(err, ErrTokenInvalid) == errors.Is(err, ErrIdPUnavailable) {
		t.Errorf("error %q must wrap exactly one of ErrTokenInvalid, ErrIdPUnavailable", err)
	}
	if errors.Is(err, ErrMisconfigured) && !errors.Is(err, ErrIdPUnavailable) {
		t.Errorf("error %q: ErrMisconfigured must come with ErrIdPUnavailable", err)
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error %q holds a line break", err)
	}
	if !errors.Is(err, want) || !strings.Contains(err.Error(), reason) {
		t.Errorf("error = %q, want %v containing %q", err, want, reason)
	}
	msg := err.Error()
	for _, s := range []string{testToken, url.QueryEscape(testToken), testSecret,
		url.QueryEscape(testSecret), "Basic ", "Authorization",
		base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(testID) + ":" + url.QueryEscape(testSecret)))} {
		if strings.Contains(msg, s) {
			t.Errorf("error %q leaks %q", msg, s)
		}
	}
}

func TestIntrospect(t *testing.T) {
	const exp = 1_700_000_060
	active := fmt.Sprintf(`{"active":true,"sub":"alice","exp":%d}`, exp)
	cases := []struct {
		name    string
		method  AuthMethod
		handler http.HandlerFunc
		want    error
		reason  string
		wantExp time.Time
	}{
		{name: "active basic", handler: jsonReply(200, active), wantExp: time.Unix(exp, 0)},
		{name: "active post", method: ClientSecretPost, handler: jsonReply(200, active), wantExp: time.Unix(exp, 0)},
		{name: "exp missing", handler: jsonReply(200, `{"active":true,"sub":"alice"}`)},
		{name: "json with charset", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = w.Write([]byte(active))
		}, wantExp: time.Unix(exp, 0)},
		{name: "inactive", handler: jsonReply(200, `{"active":false}`), want: ErrTokenInvalid, reason: "inactive"},
		{name: "expired", handler: jsonReply(200, `{"active":true,"exp":1699999999}`), want: ErrTokenInvalid, reason: "expired"},
		{name: "nbf future", handler: jsonReply(200, `{"active":true,"nbf":1700000100}`), want: ErrTokenInvalid, reason: "not yet valid"},
		{name: "exp not a number", handler: jsonReply(200, `{"active":true,"exp":"soon"}`), want: ErrTokenInvalid, reason: "malformed exp"},
		{name: "active string", handler: jsonReply(200, `{"active":"true"}`), want: ErrIdPUnavailable, reason: `"active" missing or not a boolean`},
		{name: "active number", handler: jsonReply(200, `{"active":1}`), want: ErrIdPUnavailable, reason: `"active" missing`},
		{name: "active missing", handler: jsonReply(200, `{"sub":"alice"}`), want: ErrIdPUnavailable, reason: `"active" missing`},
		{name: "active duplicated", handler: jsonReply(200, `{"active":true,"active":false}`), want: ErrIdPUnavailable, reason: "duplicate member"},
		{name: "top-level array", handler: jsonReply(200, `[{"active":true}]`), want: ErrIdPUnavailable, reason: "not a JSON object"},
		{name: "malformed JSON", handler: jsonReply(200, `{"active":true`), want: ErrIdPUnavailable, reason: "malformed JSON"},
		{name: "empty body", handler: jsonReply(200, ``), want: ErrIdPUnavailable, reason: "malformed JSON"},
		{name: "status 500", handler: jsonReply(500, `{"active":true}`), want: ErrIdPUnavailable, reason: "status 500"},
		{name: "status 503", handler: jsonReply(503, ``), want: ErrIdPUnavailable, reason: "status 503"},
		{name: "status 429", handler: jsonReply(429, `{"error":"slow_down"}`), want: ErrIdPUnavailable, reason: "status 429"},
		{name: "status 408", handler: jsonReply(408, ``), want: ErrIdPUnavailable, reason: "status 408"},
		// The broker's own request is refused, whatever the token: misconfigured, not the token's fault.
		{name: "status 401", handler: jsonReply(401, `{"error":"invalid_client"}`), want: ErrMisconfigured, reason: "status 401, check client_id"},
		{name: "status 403", handler: jsonReply(403, ``), want: ErrMisconfigured, reason: "status 403"},
		{name: "status 404", handler: jsonReply(404, `not here`), want: ErrMisconfigured, reason: "status 404, check introspection_endpoint"},
		{name: "400 invalid_client", handler: jsonReply(400, `{"error":"invalid_client"}`), want: ErrMisconfigured, reason: "invalid_client (status 400)"},
		// A 4xx that answers this token's request refuses the token: anyone can send one such token.
		{name: "400 unsupported_token_type", handler: jsonReply(400, `{"error":"unsupported_token_type","error_description":"x\ny"}`),
			want: ErrTokenInvalid, reason: "refused the token: unsupported_token_type (status 400)"},
		{name: "400 unknown error", handler: jsonReply(400, `{"error":"made\nup"}`), want: ErrTokenInvalid, reason: "refused the token (status 400)"},
		{name: "413", handler: jsonReply(413, `<html>too large</html>`), want: ErrTokenInvalid, reason: "refused the token (status 413)"},
		{name: "html", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(active))
		}, want: ErrIdPUnavailable, reason: "content type is not application/json"},
		{name: "10 MB chunked", handler: hugeReply(false), want: ErrIdPUnavailable, reason: "response exceeds 1048576 bytes"},
		{name: "10 MB with length", handler: hugeReply(true), want: ErrIdPUnavailable, reason: "response exceeds 1048576 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				checkRequest(t, r, tc.method)
				tc.handler(w, r)
			}))
			defer srv.Close()
			cfg := testConfig(srv.URL)
			cfg.AuthMethod = tc.method
			c := newTestClient(t, cfg)

			start := time.Now()
			res, err := c.Verify(context.Background(), testToken)
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
			checkErr(t, err, tc.want, tc.reason)
			if tc.want != nil {
				return
			}
			if sub := gjson.GetBytes(res.Claims, "sub").Str; sub != "alice" {
				t.Errorf("claims = %s", res.Claims)
			}
			if res.Subject != "alice" || res.Source != verified.Introspection {
				t.Errorf("subject %q, source %v", res.Subject, res.Source)
			}
			if !res.Expiry.Equal(tc.wantExp) {
				t.Errorf("Expiry = %v, want %v", res.Expiry, tc.wantExp)
			}
		})
	}
}

func TestEmptyTokenIsRejectedWithoutRequest(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, err := newTestClient(t, testConfig(srv.URL)).Verify(context.Background(), "")
	checkErr(t, err, ErrTokenInvalid, "empty token")
	if hits.Load() != 0 {
		t.Error("empty token was sent to the IdP")
	}
}

// A redirect is not followed, and the error says where it led (with the token and the secret taken
// out, quoted and bounded), since that is how an operator learns the endpoint moved.
func TestRedirectNotFollowed(t *testing.T) {
	var targetHits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetHits.Add(1)
		jsonReply(200, `{"active":true}`)(w, r)
	}))
	defer target.Close()
	long := target.URL + "/" + strings.Repeat("p", 200)
	for _, tc := range []struct {
		status   int
		location string // "" sends none
		reason   string
	}{
		{http.StatusFound, target.URL + "/admin/oauth2/introspect",
			`redirect (status 302) to "` + target.URL + `/admin/oauth2/introspect" not followed, check introspection_endpoint`},
		{http.StatusTemporaryRedirect, target.URL + "/?token=" + testToken,
			`redirect (status 307) to "` + target.URL + `/?token=[redacted]" not followed`},
		{http.StatusTemporaryRedirect, target.URL + "/?s=" + url.QueryEscape(testSecret), `/?s=[redacted]" not followed`},
		{http.StatusPermanentRedirect, long, `redirect (status 308) to "` + long[:logtext.MaxValue] + `"… not followed`},
		{http.StatusTemporaryRedirect, "", "redirect (status 307, no Location) not followed, check introspection_endpoint"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.location != "" {
					w.Header().Set("Location", tc.location)
				}
				w.WriteHeader(tc.status)
			}))
			defer srv.Close()
			_, err := newTestClient(t, testConfig(srv.URL)).Verify(context.Background(), testToken)
			checkErr(t, err, ErrMisconfigured, tc.reason)
			if n := targetHits.Load(); n != 0 {
				t.Errorf("redirect target hit %d times", n)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	cases := []struct {
		name    string
		handler http.HandlerFunc
		reason  string
	}{
		{"slow headers", stall(false), "timeout after 300ms"},
		{"stalled body", stall(true), "timeout after 300ms"},
		// The verdict is known at once; draining the body is cut at the deadline.
		{"stalled 500 body", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500); stall(true)(w, r) }, "status 500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			cfg := testConfig(srv.URL)
			cfg.Timeout = timeout
			c := newTestClient(t, cfg)

			start := time.Now()
			_, err := c.Verify(context.Background(), testToken)
			elapsed := time.Since(start)
			checkErr(t, err, ErrIdPUnavailable, tc.reason)
			if elapsed > timeout+time.Second {
				t.Errorf("returned after %v, timeout %v", elapsed, timeout)
			}
		})
	}
}

func TestCallerContextCanceled(t *testing.T) {
	srv := httptest.NewServer(stall(false))
	defer srv.Close()
	c := newTestClient(t, testConfig(srv.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Verify(ctx, testToken)
	checkErr(t, err, ErrIdPUnavailable, "context deadline exceeded")
	if d := time.Since(start); d > time.Second {
		t.Errorf("returned after %v", d)
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = newTestClient(t, testConfig("http://"+addr)).Verify(context.Background(), testToken)
	checkErr(t, err, ErrIdPUnavailable, "connection refused")
}

// TestEchoingServerDoesNotLeak has a server answer with a status line that
// echoes the token or the credentials, which net/http quotes in its error.
func TestEchoingServerDoesNotLeak(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(testID) + ":" + url.QueryEscape(testSecret)))
	for _, echo := range []string{testToken, url.QueryEscape(testSecret), basic} {
		_, err := newTestClient(t, testConfig(echoingServer(t, echo))).Verify(context.Background(), testToken)
		checkErr(t, err, ErrIdPUnavailable, "malformed HTTP version")
	}
}

// echoingServer answers one request with a malformed status line that starts with echo, which
// net/http quotes in its error, and returns its URL.
func echoingServer(t *testing.T, echo string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Read(make([]byte, 4096))
		_, _ = conn.Write([]byte(echo + " 200 OK\r\n\r\n"))
	}()
	return "http://" + ln.Addr().String()
}

// Which certificates are trusted, at New and after SetRootCAs: a CA set in its place is trusted from the
// next request on, and one taken out is not, on the connection kept from before either.
func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(jsonReply(200, `{"active":true}`))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	other := x509.NewCertPool() // trusts nothing the server has
	cases := []struct {
		name     string
		modify   func(*Config)
		want     error
		set      *x509.CertPool // given to SetRootCAs after the first request, when not nil
		wantThen error
	}{
		{"untrusted cert", func(*Config) {}, ErrIdPUnavailable, nil, nil},
		{"trusted via RootCAs", func(c *Config) { c.RootCAs = pool }, nil, nil, nil},
		{"verification disabled", func(c *Config) { c.TLSVerify = false }, nil, nil, nil},
		{"a CA set is trusted", func(c *Config) { c.RootCAs = other }, ErrIdPUnavailable, pool, nil},
		{"a CA taken out is not", func(c *Config) { c.RootCAs = pool }, nil, other, ErrIdPUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(srv.URL)
			tc.modify(&cfg)
			c := newTestClient(t, cfg)
			_, err := c.Verify(context.Background(), testToken)
			checkErr(t, err, tc.want, "certificate")
			if tc.set != nil {
				c.SetRootCAs(tc.set)
				_, err = c.Verify(context.Background(), testToken)
				checkErr(t, err, tc.wantThen, "certificate")
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(jsonReply(200, `{"active":true}`))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := newTestClient(t, testConfig(srv.URL))
	for range 20 {
		if _, err := c.Verify(context.Background(), testToken); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("opened %d connections, want 1", n)
	}
}

func TestConcurrent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.PostFormValue("token")
		sub, _ := json.Marshal(tok)
		jsonReply(200, fmt.Sprintf(`{"active":%t,"sub":%s}`, !strings.HasSuffix(tok, "7"), sub))(w, r)
	}))
	defer srv.Close()
	c := newTestClient(t, testConfig(srv.URL))
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			tok := fmt.Sprintf("token-%d", i)
			res, err := c.Verify(context.Background(), tok)
			if strings.HasSuffix(tok, "7") {
				if !errors.Is(err, ErrTokenInvalid) {
					t.Errorf("%s: err = %v, want ErrTokenInvalid", tok, err)
				}
				return
			}
			if err != nil || gjson.GetBytes(res.Claims, "sub").Str != tok {
				t.Errorf("%s: claims %s, err %v", tok, res.Claims, err)
			}
		})
	}
	wg.Wait()
}

// secretOf returns the client secret a request carries, by either method.
func secretOf(r *http.Request) string {
	if _, secret, ok := r.BasicAuth(); ok {
		s, _ := url.QueryUnescape(secret)
		return s
	}
	return r.PostFormValue("client_secret")
}

// A request made after SetSecret carries the new secret, by either method; an empty secret is refused
// and the one in use kept. An error echoing the new secret does not leak it.
func TestSetSecret(t *testing.T) {
	const newSecret = "n3w:secret %21+rotated"
	cases := []struct {
		name   string
		method AuthMethod
		set    string
		want   string // the secret the IdP sees afterwards
		err    bool
	}{
		{"basic", ClientSecretBasic, newSecret, newSecret, false},
		{"post", ClientSecretPost, newSecret, newSecret, false},
		{"empty keeps the old", ClientSecretBasic, "", testSecret, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want atomic.Value
			want.Store(testSecret)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := secretOf(r); got != want.Load().(string) {
					jsonReply(401, `{"error":"invalid_client"}`)(w, r)
					return
				}
				jsonReply(200, `{"active":true}`)(w, r)
			}))
			defer srv.Close()
			cfg := testConfig(srv.URL)
			cfg.AuthMethod = tc.method
			c := newTestClient(t, cfg)
			if _, err := c.Verify(context.Background(), testToken); err != nil {
				t.Fatalf("before: %v", err)
			}
			want.Store(tc.want)
			if err := c.SetSecret(tc.set); (err != nil) != tc.err {
				t.Fatalf("SetSecret: %v, want error %t", err, tc.err)
			}
			if _, err := c.Verify(context.Background(), testToken); err != nil {
				t.Fatalf("after: %v", err)
			}
			want.Store("neither")
			_, err := c.Verify(context.Background(), testToken)
			checkErr(t, err, ErrMisconfigured, "check client_id and client_secret") // the negative control
		})
	}
	t.Run("redacted", func(t *testing.T) {
		c := newTestClient(t, testConfig(echoingServer(t, url.QueryEscape(newSecret))))
		if err := c.SetSecret(newSecret); err != nil {
			t.Fatal(err)
		}
		_, err := c.Verify(context.Background(), testToken)
		if err == nil || strings.Contains(err.Error(), url.QueryEscape(newSecret)) || !strings.Contains(err.Error(), "[redacted]") {
			t.Errorf("error = %v, want the new secret redacted", err)
		}
	})
}

// Requests run while the secret and the CAs are replaced: each is made with one set or the other.
func TestSwapsWhileRequestsRun(t *testing.T) {
	secrets := map[string]bool{testSecret: true, "second": true}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !secrets[secretOf(r)] {
			jsonReply(401, ``)(w, r)
			return
		}
		jsonReply(200, `{"active":true}`)(w, r)
	}))
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	cfg := testConfig(srv.URL)
	cfg.RootCAs = pool
	c := newTestClient(t, cfg)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := c.Verify(context.Background(), testToken); err != nil {
					t.Errorf("worker %d: %v", i, err)
					return
				}
			}
		})
	}
	for i := range 20 {
		_ = c.SetSecret([]string{testSecret, "second"}[i%2])
		c.SetRootCAs(pool)
	}
	wg.Wait()
}

func TestNewValidation(t *testing.T) {
	cases := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"empty endpoint", func(c *Config) { c.Endpoint = "" }, "scheme"},
		{"bad URL", func(c *Config) { c.Endpoint = "https://[::1" }, "invalid endpoint"},
		{"ftp scheme", func(c *Config) { c.Endpoint = "ftp://idp.example/introspect" }, "scheme"},
		{"no host", func(c *Config) { c.Endpoint = "https:///introspect" }, "no host"},
		{"userinfo", func(c *Config) { c.Endpoint = "https://u:p@idp.example/" }, "credentials"},
		{"no client id", func(c *Config) { c.ClientID = "" }, "client id"},
		{"no client secret", func(c *Config) { c.ClientSecret = "" }, "client secret"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"negative max body", func(c *Config) { c.MaxBodyBytes = -1 }, "max body"},
		{"negative leeway", func(c *Config) { c.Leeway = -time.Second }, "leeway"},
		{"unknown auth method", func(c *Config) { c.AuthMethod = 7 }, "auth method"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("https://idp.example/introspect")
			tc.modify(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestParseAuthMethod(t *testing.T) {
	for s, want := range map[string]AuthMethod{"client_secret_basic": ClientSecretBasic, "client_secret_post": ClientSecretPost} {
		if got, err := ParseAuthMethod(s); err != nil || got != want {
			t.Errorf("ParseAuthMethod(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "basic", "private_key_jwt", "CLIENT_SECRET_BASIC"} {
		if _, err := ParseAuthMethod(s); err == nil {
			t.Errorf("ParseAuthMethod(%q) succeeded", s)
		}
	}
}

func TestParseResponse(t *testing.T) {
	now := testNow
	cases := []struct {
		body    string
		leeway  time.Duration
		want    error
		reason  string
		wantExp time.Time
	}{
		{body: ` {"active":true} `},
		{body: `{"\u0061ctive":true}`},
		{body: `{"x":{"active":true}}`, want: ErrIdPUnavailable, reason: `"active" missing`},
		{body: `{"active":null}`, want: ErrIdPUnavailable, reason: `"active" missing`},
		{body: `{"active":true,"exp":1700000001}`, wantExp: now.Add(time.Second)},
		{body: `{"active":true,"exp":1700000000.5}`, wantExp: now.Add(500 * time.Millisecond)},
		{body: `{"active":true,"exp":1700000000}`, want: ErrTokenInvalid, reason: "expired"},
		{body: `{"active":true,"exp":1700000000}`, leeway: time.Second, wantExp: now},
		{body: `{"active":true,"exp":1699999995}`, leeway: 5 * time.Second, want: ErrTokenInvalid, reason: "expired"},
		{body: `{"active":true,"exp":-1e400}`, want: ErrTokenInvalid, reason: "expired"},
		{body: `{"active":true,"exp":1e400}`, wantExp: time.Unix(maxUnix, 0)},
		{body: `{"active":true,"exp":null}`, want: ErrTokenInvalid, reason: "malformed exp"},
		{body: `{"active":true,"exp":1,"exp":1800000000}`, want: ErrIdPUnavailable, reason: "duplicate member"},
		{body: `{"active":true,"sub":"alice","sub":"admin"}`, want: ErrIdPUnavailable, reason: "duplicate member"},
		{body: `{"active":true,"s\u0075b":"alice","sub":"admin"}`, want: ErrIdPUnavailable, reason: "duplicate member"},
		{body: `{"active":true,"acl":{"pub":["a/#"],"pub":["#"]}}`, want: ErrIdPUnavailable, reason: "duplicate member"},
		{body: `{"active":true,"sub":"alice","acl":{"pub":["a/#"],"sub":["#"]}}`},
		{body: `{"active":true,"x":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`, want: ErrIdPUnavailable, reason: "nested deeper"},
		{body: `{"active":true,"nbf":1700000000}`},
		{body: `{"active":true,"nbf":1700000005}`, leeway: 5 * time.Second},
		{body: `{"active":true,"nbf":1700000006}`, leeway: 5 * time.Second, want: ErrTokenInvalid, reason: "not yet valid"},
		{body: `{"active":true,"nbf":"now"}`, want: ErrTokenInvalid, reason: "malformed nbf"},
		{body: `{"active":false,"exp":"x"}`, want: ErrTokenInvalid, reason: "inactive"},
		{body: `"active"`, want: ErrIdPUnavailable, reason: "not a JSON object"},
		{body: `{"active":true}{}`, want: ErrIdPUnavailable, reason: "malformed JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			res, err := parseResponse([]byte(tc.body), now, tc.leeway)
			checkErr(t, err, tc.want, tc.reason)
			if err == nil && (!res.Expiry.Equal(tc.wantExp) || string(res.Claims) != tc.body) {
				t.Errorf("got %s expiry %v, want expiry %v", res.Claims, res.Expiry, tc.wantExp)
			}
		})
	}
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{`{"active":true}`, `{"active":false}`, `{"active":true,"exp":1700000001,"nbf":1}`,
		`{"active":"true"}`, `[true]`, `{"active":true,"active":true}`, `{"\u0061ctive":true,"x":[1,{"a":null}]}`, ``, `{`,
		`{"active":true,"sub":"alice","sub":"admin"}`, `{"active":true,"acl":{"pub":["a/#"],"p\u0075b":["#"]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := parseResponse(body, testNow, time.Second)
		if err != nil {
			if errors.Is(err, ErrTokenInvalid) == errors.Is(err, ErrIdPUnavailable) {
				t.Fatalf("error %q wraps neither or both sentinels", err)
			}
			return
		}
		var claims map[string]any
		if err := json.Unmarshal(res.Claims, &claims); err != nil {
			t.Fatalf("accepted %q, not a JSON object: %v", body, err)
		}
		if claims["active"] != true {
			t.Fatalf("accepted %q with active = %v", body, claims["active"])
		}
	})
}

func BenchmarkIntrospect(b *testing.B) {
	srv := httptest.NewServer(jsonReply(200, `{"active":true,"sub":"alice","client_id":"dev-42","scope":"mqtt:pub mqtt:sub","exp":1700003600}`))
	defer srv.Close()
	c := newTestClient(b, testConfig(srv.URL))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(ctx, testToken); err != nil {
			b.Fatal(err)
		}
	}
}
