package grant

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// deviceConfig is a public device client of idp whose prompt goes to the returned buffer.
func deviceConfig(t *testing.T, idp *fakeIdP) (*Config, *bytes.Buffer) {
	var prompt bytes.Buffer
	return &Config{
		Endpoints: idp.endpoints(), ClientID: "dev", Scopes: []string{"mqtt", "offline_access"}, Audience: "mqtt-broker",
		Cache: NewCache(filepath.Join(t.TempDir(), "tokens.json")), Prompt: &prompt,
	}, &prompt
}

func TestDevicePolling(t *testing.T) {
	t.Parallel()
	pending := errorReply(http.StatusBadRequest, "authorization_pending")
	ok := tokenReply(testAccess, testRefresh, 3600)
	cases := []struct {
		name      string
		expiresIn int
		polls     []reply
		want      error
		wantErr   string
		// minGaps[i] and maxGaps[i] bound the time before poll i, the first counted from the device
		// authorization.
		minGaps, maxGaps []time.Duration
	}{
		{name: "pending then approved", polls: []reply{pending, pending, ok},
			minGaps: []time.Duration{900 * time.Millisecond, 900 * time.Millisecond, 900 * time.Millisecond},
			maxGaps: []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{name: "slow_down adds 5 s", polls: []reply{errorReply(http.StatusBadRequest, "slow_down"), ok},
			minGaps: []time.Duration{900 * time.Millisecond, 5900 * time.Millisecond}},
		{name: "server error retried less often", polls: []reply{{http.StatusServiceUnavailable, "down"}, ok},
			minGaps: []time.Duration{900 * time.Millisecond, 1900 * time.Millisecond}},
		{name: "access_denied", polls: []reply{pending, errorReply(http.StatusBadRequest, "access_denied")}, want: ErrAccessDenied},
		{name: "expired_token", polls: []reply{errorReply(http.StatusBadRequest, "expired_token")}, want: ErrCodeExpired},
		{name: "expires_in runs out while pending", expiresIn: 2, polls: []reply{pending}, want: ErrCodeExpired,
			maxGaps: []time.Duration{2 * time.Second}},
		{name: "other error ends the wait", polls: []reply{errorReply(http.StatusBadRequest, "invalid_request")}, wantErr: `"invalid_request"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			expiresIn := tc.expiresIn
			if expiresIn == 0 {
				expiresIn = 600
			}
			idp := newFakeIdP(t, map[string][]reply{"device_auth": {deviceAuthReply(1, expiresIn)}, grantDevice: tc.polls})
			cfg, prompt := deviceConfig(t, idp)
			start := time.Now()
			tok, err := cfg.Device(context.Background()).Token()
			took := time.Since(start)
			assertNoSecrets(t, "prompt", prompt.String())
			switch {
			case tc.want == nil && tc.wantErr == "":
				if err != nil {
					t.Fatal(err)
				}
				if tok.AccessToken != testAccess || tok.RefreshToken != testRefresh {
					t.Errorf("got token %q, refresh %q", tok.AccessToken, tok.RefreshToken)
				}
			case err == nil:
				t.Fatal("no error")
			default:
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("err = %v, want %v", err, tc.want)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %q, want it to contain %q", err, tc.wantErr)
				}
				assertNoSecrets(t, "error", err.Error())
			}
			if tc.expiresIn != 0 && took > time.Duration(tc.expiresIn)*time.Second+time.Second {
				t.Errorf("took %v for a code that expires in %d s", took, tc.expiresIn)
			}
			idp.mu.Lock()
			defer idp.mu.Unlock()
			prev := idp.deviceAuths[0]
			for i, at := range idp.polls {
				gap := at.Sub(prev)
				if i < len(tc.minGaps) && gap < tc.minGaps[i] {
					t.Errorf("poll %d after %v, want at least %v", i, gap, tc.minGaps[i])
				}
				if i < len(tc.maxGaps) && gap > tc.maxGaps[i] {
					t.Errorf("poll %d after %v, want at most %v", i, gap, tc.maxGaps[i])
				}
				prev = at
			}
			// The public client's id goes in the body, once per poll: no Basic header, no second try.
			for _, f := range idp.forms[grantDevice] {
				if f.Get("client_id") != "dev" || f.Get("device_code") != testDeviceCode || f.Get("basic_id") != "" {
					t.Errorf("poll form %v", f)
				}
			}
			if f := idp.forms["device_auth"][0]; f.Get("scope") != "mqtt offline_access" || f.Get("audience") != "mqtt-broker" {
				t.Errorf("device authorization form %v", f)
			}
		})
	}
}

func TestDeviceCancelled(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, map[string][]reply{
		"device_auth": {deviceAuthReply(1, 600)},
		grantDevice:   {errorReply(http.StatusBadRequest, "authorization_pending")},
	})
	cfg, _ := deviceConfig(t, idp)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := cfg.Device(ctx).Token()
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrCodeExpired) {
		t.Errorf("err = %v, want the caller's deadline, not an expired code", err)
	}
}

func TestShowPrompt(t *testing.T) {
	cases := []struct {
		name   string
		da     oauth2.DeviceAuthResponse
		want   []string
		absent []string
	}{
		{name: "with complete URI",
			da: oauth2.DeviceAuthResponse{DeviceCode: testDeviceCode, UserCode: "WDJB-MJHT", VerificationURI: "https://idp.example/device",
				VerificationURIComplete: "https://idp.example/device?user_code=WDJB-MJHT", Expiry: time.Now().Add(600 * time.Second)},
			want: []string{"To sign in, open https://idp.example/device and enter code WDJB-MJHT\n",
				"or scan this code to open https://idp.example/device?user_code=WDJB-MJHT:\n", "█", "▄", "waiting for approval (expires in 600 s)\n"}},
		{name: "without complete URI or expiry",
			da:     oauth2.DeviceAuthResponse{DeviceCode: testDeviceCode, UserCode: "WDJB-MJHT", VerificationURI: "https://idp.example/device"},
			want:   []string{"enter code WDJB-MJHT\n", "waiting for approval\n"},
			absent: []string{"█", "scan"}},
		{name: "complete URI too long for a QR code",
			da:     oauth2.DeviceAuthResponse{UserCode: "C", VerificationURI: "https://i/", VerificationURIComplete: "https://i/" + strings.Repeat("x", 3000)},
			want:   []string{"or open \"https://i/xxx"},
			absent: []string{"█"}},
		{name: "terminal escapes quoted",
			da:     oauth2.DeviceAuthResponse{UserCode: "AB\x1b[2J\u202e", VerificationURI: "https://i/\r\nfake line"},
			want:   []string{`open "https://i/\r\nfake line" and enter code "AB\x1b[2J\u202e"`},
			absent: []string{"\x1b", "\u202e", "\r"}},
	}
	for _, tc := range cases {
		var b bytes.Buffer
		if err := showPrompt(&b, &tc.da); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: prompt lacks %q:\n%s", tc.name, w, out)
			}
		}
		for _, a := range tc.absent {
			if strings.Contains(out, a) {
				t.Errorf("%s: prompt has %q:\n%s", tc.name, a, out)
			}
		}
		assertNoSecrets(t, tc.name, out)
	}
}

// TestPromptQRBlock checks the QR code's shape: a square of half blocks, quiet zone included, with no
// character but the four of ToSmallString.
func TestPromptQRBlock(t *testing.T) {
	var b bytes.Buffer
	da := oauth2.DeviceAuthResponse{UserCode: "WDJB-MJHT", VerificationURI: "https://idp.example/device",
		VerificationURIComplete: "https://idp.example/device?user_code=WDJB-MJHT"}
	if err := showPrompt(&b, &da); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(b.String(), "\n") {
		if regexp.MustCompile(`^[ █▀▄]+$`).MatchString(l) {
			rows = append(rows, l)
		}
	}
	if len(rows) == 0 {
		t.Fatalf("no QR code in:\n%s", b.String())
	}
	width := len([]rune(rows[0]))
	// A version 2 or 3 code with its 4-module quiet zone: 33 or 37 modules, in half as many rows.
	if width < 29 || (width+1)/2 != len(rows) {
		t.Errorf("QR code of %d rows of %d modules", len(rows), width)
	}
	if rows[0] != strings.Repeat("█", width) {
		t.Errorf("the first row is not quiet zone: %q", rows[0])
	}
}

func TestDeviceSources(t *testing.T) {
	t.Parallel()
	signIn := map[string][]reply{"device_auth": {deviceAuthReply(1, 600)}, grantDevice: {tokenReply("ACCESS-new", "REFRESH-new", 3600)}}
	cases := []struct {
		name     string
		cached   *oauth2.Token // in the cache before
		refresh  []reply
		noPrompt bool
		signIns  int // device authorizations wanted
		want     error
		wantErr  string
		trans    bool
		access   string // the access token wanted
	}{
		{name: "valid cached token", cached: &oauth2.Token{AccessToken: testAccess, Expiry: time.Now().Add(time.Hour), RefreshToken: testRefresh}, access: testAccess},
		{name: "valid cached token, no prompt", noPrompt: true, cached: &oauth2.Token{AccessToken: testAccess, Expiry: time.Now().Add(time.Hour)}, access: testAccess},
		{name: "refresh before the device flow", cached: &oauth2.Token{AccessToken: testAccess, Expiry: time.Now().Add(-time.Minute), RefreshToken: testRefresh},
			refresh: []reply{tokenReply("ACCESS-refreshed", "REFRESH-rotated", 3600)}, access: "ACCESS-refreshed"},
		{name: "refresh token alone", noPrompt: true, cached: &oauth2.Token{RefreshToken: testRefresh},
			refresh: []reply{tokenReply("ACCESS-refreshed", "", 3600)}, access: "ACCESS-refreshed"},
		{name: "refresh refused, sign in again", cached: &oauth2.Token{RefreshToken: testRefresh},
			refresh: []reply{errorReply(http.StatusBadRequest, "invalid_grant")}, signIns: 1, access: "ACCESS-new"},
		{name: "refresh refused, no prompt", noPrompt: true, cached: &oauth2.Token{RefreshToken: testRefresh},
			refresh: []reply{errorReply(http.StatusBadRequest, "invalid_grant")}, want: ErrRefreshRefused},
		{name: "refresh fails transiently", cached: &oauth2.Token{RefreshToken: testRefresh},
			refresh: []reply{{http.StatusBadGateway, "bad gateway"}}, wantErr: "refreshing the token: the identity provider at", trans: true},
		{name: "refresh client refused", cached: &oauth2.Token{RefreshToken: testRefresh},
			refresh: []reply{errorReply(http.StatusUnauthorized, "invalid_client")}, want: ErrInvalidClient},
		{name: "nothing cached", signIns: 1, access: "ACCESS-new"},
		{name: "nothing cached, no prompt", noPrompt: true, want: ErrSignInRequired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			script := map[string][]reply{grantRefresh: tc.refresh}
			if tc.signIns > 0 {
				script["device_auth"], script[grantDevice] = signIn["device_auth"], signIn[grantDevice]
			}
			idp := newFakeIdP(t, script)
			cfg, prompt := deviceConfig(t, idp)
			if tc.noPrompt {
				cfg.Prompt = nil
			}
			key := cacheKey(cfg, grantDevice)
			if tc.cached != nil {
				if err := cfg.Cache.save(key, tc.cached); err != nil {
					t.Fatal(err)
				}
			}
			tok, err := cfg.Device(context.Background()).Token()
			if n := idp.count("device_auth"); n != tc.signIns {
				t.Errorf("%d device authorizations, want %d", n, tc.signIns)
			}
			assertNoSecrets(t, "prompt", prompt.String())
			if tc.want != nil || tc.wantErr != "" {
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
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != tc.access {
				t.Errorf("access token %q, want %q", tok.AccessToken, tc.access)
			}
			for _, f := range idp.forms[grantRefresh] {
				if f.Get("refresh_token") != testRefresh || f.Get("client_id") != "dev" {
					t.Errorf("refresh form %v", f)
				}
			}
			// The cache now holds what the source handed out, and the refresh token to use next.
			stored, err := cfg.Cache.load(key)
			if err != nil {
				t.Fatal(err)
			}
			if stored.AccessToken != tok.AccessToken || stored.RefreshToken != tok.RefreshToken || stored.RefreshToken == "" && tc.cached != nil && tc.cached.RefreshToken != "" {
				t.Errorf("cache holds %q/%q, source gave %q/%q", stored.AccessToken, stored.RefreshToken, tok.AccessToken, tok.RefreshToken)
			}
		})
	}
}

// TestDeviceLaterRefresh checks that once signed in, the source renews by refresh, with the refresh
// token the last answer brought, and never asks the user again.
func TestDeviceLaterRefresh(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, map[string][]reply{
		"device_auth": {deviceAuthReply(1, 600)},
		grantDevice:   {tokenReply("ACCESS-1", "REFRESH-1", 5)},
		grantRefresh:  {tokenReply("ACCESS-2", "REFRESH-2", 5), tokenReply("ACCESS-3", "", 5)},
	})
	cfg, _ := deviceConfig(t, idp)
	cfg.Margin = time.Minute // every token is already within the margin: each call renews
	src := cfg.Device(context.Background())
	for _, want := range []string{"ACCESS-1", "ACCESS-2", "ACCESS-3"} {
		tok, err := src.Token()
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != want {
			t.Errorf("got %q, want %q", tok.AccessToken, want)
		}
	}
	if n := idp.count("device_auth"); n != 1 {
		t.Errorf("%d device authorizations, want 1", n)
	}
	var used []string
	for _, f := range idp.forms[grantRefresh] {
		used = append(used, f.Get("refresh_token"))
	}
	if strings.Join(used, ",") != "REFRESH-1,REFRESH-2" {
		t.Errorf("refresh tokens used: %v", used)
	}
	// An answer without a refresh token keeps the last one, in the source and in the cache.
	stored, err := cfg.Cache.load(cacheKey(cfg, grantDevice))
	if err != nil || stored.AccessToken != "ACCESS-3" || stored.RefreshToken != "REFRESH-2" {
		t.Errorf("cache holds %+v, %v", stored, err)
	}
}

func TestDeviceConfidentialClient(t *testing.T) {
	t.Parallel()
	idp := newFakeIdP(t, map[string][]reply{
		"device_auth": {deviceAuthReply(1, 600)},
		grantDevice:   {errorReply(http.StatusBadRequest, "authorization_pending"), tokenReply(testAccess, "", 60)},
	})
	cfg, _ := deviceConfig(t, idp)
	cfg.ClientSecret = testSecret
	if _, err := cfg.Device(context.Background()).Token(); err != nil {
		t.Fatal(err)
	}
	// One request per poll, by HTTP Basic: x/oauth2 left to detect would send a second each time.
	if n := idp.count(grantDevice); n != 2 {
		t.Errorf("%d token requests for 2 polls", n)
	}
	for _, f := range idp.forms[grantDevice] {
		if f.Get("basic_secret") != testSecret || f.Get("client_secret") != "" {
			t.Errorf("poll form %v", f)
		}
	}
}

func TestDeviceSignInFails(t *testing.T) {
	cases := []struct {
		name    string
		mod     func(*Config)
		auth    []reply
		want    error
		wantErr string
		trans   bool
	}{
		{name: "no device endpoint", mod: func(c *Config) { c.DeviceAuthURL = "" }, wantErr: "no device authorization endpoint"},
		{name: "unknown client", auth: []reply{errorReply(http.StatusUnauthorized, "invalid_client")}, want: ErrInvalidClient},
		{name: "device endpoint down", auth: []reply{{http.StatusServiceUnavailable, "x"}}, wantErr: "starting the device sign-in: the identity provider at", trans: true},
		{name: "unreachable", mod: func(c *Config) { c.DeviceAuthURL = closedURL(t) + "/device" }, wantErr: "starting the device sign-in: cannot reach the identity provider at http://127.0.0.1:", trans: true},
		{name: "answer without user code", auth: []reply{{http.StatusOK, map[string]any{"device_code": testDeviceCode, "verification_uri": "https://i/"}}}, wantErr: "lacks"},
		{name: "prompt cannot be written", mod: func(c *Config) { c.Prompt = failingWriter{} }, auth: []reply{deviceAuthReply(1, 600)}, wantErr: "showing the sign-in instructions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idp := newFakeIdP(t, map[string][]reply{"device_auth": tc.auth})
			cfg, _ := deviceConfig(t, idp)
			if tc.mod != nil {
				tc.mod(cfg)
			}
			_, err := cfg.Device(context.Background()).Token()
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %v %q", err, tc.want, tc.wantErr)
			}
			if IsTransient(err) != tc.trans {
				t.Errorf("IsTransient = %v", !tc.trans)
			}
			assertNoSecrets(t, "error", err.Error())
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }
