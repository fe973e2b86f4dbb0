package grant

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestClientCredentials(t *testing.T) {
	cases := []struct {
		name    string
		replies []reply
		closed  bool // the IdP is not listening
		want    error
		wantErr string
		trans   bool
	}{
		{name: "ok", replies: []reply{tokenReply(testAccess, "", 300)}},
		{name: "invalid_client", replies: []reply{errorReply(http.StatusUnauthorized, "invalid_client")}, want: ErrInvalidClient},
		{name: "invalid_scope", replies: []reply{errorReply(http.StatusBadRequest, "invalid_scope")}, wantErr: `refused the request: "invalid_scope" "refused"`},
		{name: "unavailable", replies: []reply{{http.StatusServiceUnavailable, "down"}}, wantErr: "/token answered HTTP 503", trans: true},
		{name: "too many requests", replies: []reply{{http.StatusTooManyRequests, map[string]any{}}}, wantErr: "answered HTTP 429", trans: true},
		{name: "error in a 200", replies: []reply{errorReply(http.StatusOK, "server_error")}, wantErr: `"server_error"`},
		{name: "no access token", replies: []reply{{http.StatusOK, map[string]any{"token_type": "Bearer"}}}, wantErr: "missing access_token"},
		{name: "unreachable", closed: true, wantErr: "cannot reach the identity provider at http://127.0.0.1:", trans: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idp := newFakeIdP(t, map[string][]reply{grantClientCredentials: tc.replies})
			cfg := Config{
				Endpoints: idp.endpoints(), ClientID: "svc", ClientSecret: testSecret,
				Scopes: []string{"mqtt"}, Audience: "mqtt-broker", Resource: "urn:broker",
			}
			if tc.closed {
				cfg.TokenURL = closedURL(t) + "/token"
			}
			tok, err := cfg.ClientCredentials(context.Background()).Token()
			if tc.want == nil && tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tok.AccessToken != testAccess || time.Until(tok.Expiry) < 290*time.Second {
					t.Errorf("token %q expiring %v", tok.AccessToken, tok.Expiry)
				}
				f := idp.forms[grantClientCredentials][0]
				for k, v := range map[string]string{"basic_id": "svc", "basic_secret": testSecret, "scope": "mqtt", "audience": "mqtt-broker", "resource": "urn:broker"} {
					if f.Get(k) != v {
						t.Errorf("request %s = %q, want %q", k, f.Get(k), v)
					}
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %q, want it to contain %q", err, tc.wantErr)
			}
			if IsTransient(err) != tc.trans {
				t.Errorf("IsTransient(%v) = %v", err, !tc.trans)
			}
			assertNoSecrets(t, "error", err.Error())
		})
	}
}

func TestClientCredentialsCache(t *testing.T) {
	cases := []struct {
		name      string
		expiresIn int
		margin    time.Duration
		requests  int // token requests for two sources in a row
	}{
		{name: "valid token reused", expiresIn: 300, margin: time.Minute, requests: 1},
		{name: "token within the margin renewed", expiresIn: 30, margin: time.Minute, requests: 2},
		{name: "default margin of 10 s", expiresIn: 5, requests: 2},
		{name: "no expires_in: never expires", expiresIn: 0, requests: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idp := newFakeIdP(t, map[string][]reply{grantClientCredentials: {tokenReply(testAccess, "", tc.expiresIn)}})
			cfg := Config{
				Endpoints: idp.endpoints(), ClientID: "svc", ClientSecret: testSecret, Margin: tc.margin,
				Cache: NewCache(filepath.Join(t.TempDir(), "tokens.json")),
			}
			for range 2 {
				tok, err := cfg.ClientCredentials(context.Background()).Token()
				if err != nil {
					t.Fatal(err)
				}
				if tok.AccessToken != testAccess || (tc.expiresIn == 0) != tok.Expiry.IsZero() {
					t.Errorf("token %q expiring %v", tok.AccessToken, tok.Expiry)
				}
			}
			if n := idp.count(grantClientCredentials); n != tc.requests {
				t.Errorf("%d token requests, want %d", n, tc.requests)
			}
		})
	}
}

func TestClientCredentialsCacheError(t *testing.T) {
	idp := newFakeIdP(t, nil)
	path := filepath.Join(t.TempDir(), "tokens.json")
	cfg := Config{Endpoints: idp.endpoints(), ClientID: "svc", ClientSecret: testSecret, Cache: NewCache(path)}
	if err := cfg.Cache.save("k", &oauth2.Token{AccessToken: testAccess}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := cfg.ClientCredentials(context.Background()).Token()
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v", err)
	}
	if idp.count(grantClientCredentials) != 0 {
		t.Error("a token was asked for despite the unreadable cache")
	}
}

func TestNoTokenURL(t *testing.T) {
	cfg := Config{ClientID: "svc", Prompt: io.Discard}
	for name, source := range map[string]func(*Config, context.Context) oauth2.TokenSource{
		"client credentials": (*Config).ClientCredentials,
		"device":             (*Config).Device,
	} {
		if _, err := source(&cfg, context.Background()).Token(); err == nil || !strings.Contains(err.Error(), "no token endpoint") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
