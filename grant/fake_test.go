package grant

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The texts no error or prompt may contain.
const (
	testSecret     = "SECRET-client-9f8e7d"
	testAccess     = "ACCESS-token-1a2b3c"
	testRefresh    = "REFRESH-token-4d5e6f"
	testDeviceCode = "DEVICECODE-7a8b9c"
)

// reply is one scripted answer of the fake identity provider.
type reply struct {
	status int
	body   any
}

func tokenReply(access, refresh string, expiresIn int) reply {
	body := map[string]any{"access_token": access, "token_type": "Bearer"}
	if refresh != "" {
		body["refresh_token"] = refresh
	}
	if expiresIn > 0 {
		body["expires_in"] = expiresIn
	}
	return reply{http.StatusOK, body}
}

// errorReply is an OAuth error answer. Its description quotes the secret, as a careless server's
// might, for the errors whose text must not show the description; the others get a plain one.
func errorReply(status int, code string) reply {
	desc := "refused " + testSecret
	switch code {
	case "invalid_client", "invalid_grant", "access_denied", "expired_token":
	default:
		desc = "refused"
	}
	return reply{status, map[string]any{"error": code, "error_description": desc}}
}

// fakeIdP is an authorization server whose token endpoint answers each grant type from a script: the
// answers in order, the last one again and again.
type fakeIdP struct {
	*httptest.Server
	t *testing.T

	mu          sync.Mutex
	script      map[string][]reply // by grant_type; "device_auth" for the device authorization endpoint
	calls       map[string]int
	forms       map[string][]url.Values
	polls       []time.Time
	deviceAuths []time.Time
}

const grantRefresh = "refresh_token"

func newFakeIdP(t *testing.T, script map[string][]reply) *fakeIdP {
	f := &fakeIdP{t: t, script: script, calls: map[string]int{}, forms: map[string][]url.Values{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeIdP) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("fake IdP: %v", err)
	}
	var kind string
	switch r.URL.Path {
	case "/device":
		kind = "device_auth"
	case "/token":
		kind = r.PostForm.Get("grant_type")
	default:
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.calls[kind]++
	form := r.PostForm
	if id, secret, ok := r.BasicAuth(); ok {
		form = url.Values{"basic_id": {id}, "basic_secret": {secret}}
		for k, v := range r.PostForm {
			form[k] = v
		}
	}
	f.forms[kind] = append(f.forms[kind], form)
	switch kind {
	case grantDevice:
		f.polls = append(f.polls, time.Now())
	case "device_auth":
		f.deviceAuths = append(f.deviceAuths, time.Now())
	}
	replies := f.script[kind]
	if len(replies) == 0 {
		f.mu.Unlock()
		f.t.Errorf("fake IdP: unexpected %s request", kind)
		http.Error(w, "unexpected", http.StatusBadRequest)
		return
	}
	rep := replies[0]
	if len(replies) > 1 {
		f.script[kind] = replies[1:]
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	json.NewEncoder(w).Encode(rep.body)
}

func (f *fakeIdP) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[kind]
}

func (f *fakeIdP) endpoints() Endpoints {
	return Endpoints{Issuer: f.URL, TokenURL: f.URL + "/token", DeviceAuthURL: f.URL + "/device"}
}

// deviceAuthReply is a device authorization answer polled every interval seconds for expiresIn.
func deviceAuthReply(interval, expiresIn int) reply {
	return reply{http.StatusOK, map[string]any{
		"device_code":               testDeviceCode,
		"user_code":                 "WDJB-MJHT",
		"verification_uri":          "https://idp.example/device",
		"verification_uri_complete": "https://idp.example/device?user_code=WDJB-MJHT",
		"interval":                  interval,
		"expires_in":                expiresIn,
	}}
}

// assertNoSecrets fails when s contains the client secret or any token of the fake.
func assertNoSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{testSecret, testAccess, testRefresh, testDeviceCode, "REFRESH-", "ACCESS-"} {
		if strings.Contains(s, secret) {
			t.Errorf("%s contains %q: %s", what, secret, s)
		}
	}
}

// closedURL is the URL of a server that is no longer listening.
func closedURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}
