package auth

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

const token = "tok-0123456789abcdef"

// fakeIdP answers introspection from a map of token to claims; a token it does not know is inactive.
type fakeIdP struct {
	claims map[string]string
	err    error // when set, every call fails with it (the IdP is down)
	calls  int
}

func (f *fakeIdP) Verify(_ context.Context, tok string) (verified.Token, error) {
	f.calls++
	if f.err != nil {
		return verified.Token{}, f.err
	}
	c, ok := f.claims[tok]
	if !ok {
		return verified.Token{}, fmt.Errorf("%w: inactive", introspect.ErrTokenInvalid)
	}
	return verified.Token{Claims: []byte(c), Source: verified.Introspection}, nil
}

type logRecorder struct {
	mu     sync.Mutex
	lines  []string
	levels []Level // of each line
}

func (l *logRecorder) Log(level Level, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, msg)
	l.levels = append(l.levels, level)
}

// find returns the first line holding s, and its level.
func (l *logRecorder) find(s string) (string, Level, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, line := range l.lines {
		if strings.Contains(line, s) {
			return line, l.levels[i], true
		}
	}
	return "", 0, false
}

const aliceClaims = `{"active":true,"sub":"alice-sub","username":"alice","email":"alice@example.com",
	"urn:zitadel:iam:org:project:roles":{"operators":{"1":"org"},"viewers":{}},"evil":"alice/evil","wild":"#"}`

func engineFor(t *testing.T, idp *fakeIdP, extra ...config.Option) (*Engine, *logRecorder) {
	t.Helper()
	opts := append([]config.Option{
		{Key: "introspection_endpoint", Value: "https://idp.example/introspect"},
		{Key: "client_id", Value: "broker"},
		{Key: "client_secret", Value: "broker-secret"},
	}, extra...)
	cfg, err := config.Parse(opts)
	if err != nil {
		t.Fatal(err)
	}
	log := &logRecorder{}
	return newEngine(cfg, idp, nil, log, time.Now, new(counters)), log
}

func opt(k, v string) config.Option { return config.Option{Key: k, Value: v} }

// The four configurations of the C plugin's README, plus the edges around them.
func TestAuthenticate(t *testing.T) {
	validateToken := []config.Option{opt("username_validation", "true"), opt("username_validation_template", "oauth2-token")}
	tests := []struct {
		name      string
		opts      []config.Option
		idpDown   bool
		req       Request
		want      Result
		wantName  string // when the decision renames the client
		idpCalled bool
	}{
		{"plain token", nil, false, Request{Password: token}, Allow, "", true},
		{"unknown token", nil, false, Request{Password: "garbage"}, Deny, "", true},
		{"unknown token deferred", []config.Option{opt("token_verification_error", "defer")}, false, Request{Password: "garbage"}, Defer, "", true},
		{"empty password", nil, false, Request{Username: "alice"}, Deny, "", false},
		{"empty password deferred", []config.Option{opt("token_verification_error", "defer")}, false, Request{}, Defer, "", false},
		{"idp down", nil, true, Request{Password: token}, Deny, "", true},
		{"idp down deferred", []config.Option{opt("token_verification_error", "defer")}, true, Request{Password: token}, Defer, "", true},

		// Use case 1: only clients named oauth2-token are checked by token; others go to password_file
		// without any call to the IdP.
		{"uc1 token user", validateToken, false, Request{Username: "oauth2-token", Password: token}, Allow, "", true},
		{"uc1 other user", validateToken, false, Request{Username: "bob", Password: "bobpw"}, Defer, "", false},
		{"uc1 no user", validateToken, false, Request{Password: token}, Defer, "", false},

		// Use case 2: the username must equal user-<username claim>.
		{"uc2 match", []config.Option{opt("username_validation", "true"), opt("username_validation_template", "user-%%oidc-username%%"), opt("username_validation_error", "deny")},
			false, Request{Username: "user-alice", Password: token}, Allow, "", true},
		{"uc2 mismatch", []config.Option{opt("username_validation", "true"), opt("username_validation_template", "user-%%oidc-username%%"), opt("username_validation_error", "deny")},
			false, Request{Username: "user-bob", Password: token}, Deny, "", true},
		{"uc2 missing claim", []config.Option{opt("username_validation", "true"), opt("username_validation_template", "user-%%claim:nope%%"), opt("username_validation_error", "deny")},
			false, Request{Username: "user-%%claim:nope%%", Password: token}, Deny, "", true},

		// Use case 3: validate then rename to the email claim.
		{"uc3 rename", append(validateToken, opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-email%%")),
			false, Request{Username: "oauth2-token", Password: token}, Allow, "alice@example.com", true},
		{"uc3 other user", append(validateToken, opt("username_replacement", "true"), opt("username_replacement_template", "%%oidc-email%%")),
			false, Request{Username: "bob", Password: "pw"}, Defer, "", false},

		// Use case 4: group-<first ZITADEL role>.
		{"uc4 zitadel", []config.Option{opt("username_replacement", "true"), opt("username_replacement_template", "group-%%zitadel-role%%")},
			false, Request{Password: token}, Allow, "group-operators", true},

		// Replacement failures follow username_replacement_error.
		{"rename missing claim", []config.Option{opt("username_replacement", "true"), opt("username_replacement_template", "%%claim:tenant%%")},
			false, Request{Password: token}, Deny, "", true},
		{"rename missing claim deferred", []config.Option{opt("username_replacement", "true"), opt("username_replacement_template", "%%claim:tenant%%"), opt("username_replacement_error", "defer")},
			false, Request{Password: token}, Defer, "", true},
		{"rename to slash", []config.Option{opt("username_replacement", "true"), opt("username_replacement_template", "%%claim:evil%%")},
			false, Request{Password: token}, Deny, "", true},
		{"rename to wildcard", []config.Option{opt("username_replacement", "true"), opt("username_replacement_template", "u%%claim:wild%%")},
			false, Request{Password: token}, Deny, "", true},
		{"rename to dollar", []config.Option{opt("username_replacement", "true"), opt("username_replacement_template", "$%%oidc-username%%")},
			false, Request{Password: token}, Deny, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := &fakeIdP{claims: map[string]string{token: aliceClaims}}
			if tt.idpDown {
				idp.err = fmt.Errorf("%w: connection refused", introspect.ErrIdPUnavailable)
			}
			e, log := engineFor(t, idp, tt.opts...)
			tt.req.ClientID = "dev-1"
			d := e.Authenticate(context.Background(), tt.req)
			if d.Result != tt.want {
				t.Errorf("result %v, want %v (log %q)", d.Result, tt.want, log.lines)
			}
			if d.Rename != (tt.wantName != "") || d.Username != tt.wantName {
				t.Errorf("rename %v %q, want %q", d.Rename, d.Username, tt.wantName)
			}
			if (idp.calls > 0) != tt.idpCalled {
				t.Errorf("IdP called %d times, want called=%v", idp.calls, tt.idpCalled)
			}
			if tt.want != Allow && len(log.lines) == 0 {
				t.Error("refusal was not logged")
			}
			for _, l := range log.lines {
				if strings.Contains(l, token) || strings.Contains(l, "broker-secret") || strings.Contains(l, "bobpw") {
					t.Errorf("log line leaks a secret: %q", l)
				}
			}
		})
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"alice@example.com", true},
		{"group-operators", true},
		{"ünïcödé", true},
		{"a$b", true},
		{"", false},
		{"alice/evil", false},
		{"a+b", false},
		{"#", false},
		{"$SYS", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"a\u0085b", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		if err := CheckName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// New logs the configuration's warnings, such as a plain-http endpoint, before any client connects.
func TestNewLogsWarnings(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		warns    bool
	}{
		{"http://hydra:4445/admin/oauth2/introspect", true},
		{"http://127.0.0.1:4445/admin/oauth2/introspect", false},
		{"https://hydra:4445/admin/oauth2/introspect", false},
	} {
		cfg, err := config.Parse([]config.Option{opt("introspection_endpoint", tc.endpoint), opt("client_id", "broker"), opt("client_secret", "s")})
		if err != nil {
			t.Fatal(err)
		}
		log := &logRecorder{}
		e, err := New(cfg, log, false)
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
		line, level, found := log.find("is plain http")
		if found != tc.warns || (found && (level != LevelWarning || !strings.Contains(line, tc.endpoint))) {
			t.Errorf("%s: warning %v %q at level %d", tc.endpoint, found, line, level)
		}
	}
}
