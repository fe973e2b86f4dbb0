// Package auth is the plugin's core: options in, decisions out.
//
// It knows nothing of cgo or of the broker's C types. The plugin package copies a CONNECT's fields into
// a Request, asks Authenticate, and maps the Decision to a Mosquitto return code. Everything here can be
// tested with go test and no broker.
package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/template"
)

// Result is the answer to a CONNECT.
type Result int

const (
	// Allow accepts the client (MOSQ_ERR_SUCCESS).
	Allow Result = iota
	// Deny refuses it: CONNACK 5 for MQTT 3.1.1, 0x87 for MQTT 5 (MOSQ_ERR_AUTH).
	Deny
	// Defer lets password_file or the next plugin decide (MOSQ_ERR_PLUGIN_DEFER).
	Defer
)

func (r Result) String() string {
	switch r {
	case Allow:
		return "allow"
	case Defer:
		return "defer"
	}
	return "deny"
}

// Request holds the CONNECT fields the engine needs, copied out of the broker's memory.
type Request struct {
	ClientID string
	Username string // "" when the client sent none (the broker turns an empty username into none)
	Password string // the access token
	Address  string // for log lines only
}

// Decision is the engine's answer. When Rename is set the broker must give the client Username before
// it runs any ACL check, so acl_file %u patterns see the new name.
type Decision struct {
	Result   Result
	Rename   bool
	Username string
}

// Verifier checks an access token and returns its claims. introspect.Client is the one in use; tests
// substitute their own.
type Verifier interface {
	Introspect(ctx context.Context, token string) (introspect.Result, error)
}

// Engine decides CONNECTs for one plugin instance. It is safe for concurrent use.
type Engine struct {
	cfg      *config.Config
	verifier Verifier
	log      Logger
}

// New builds the engine for cfg, with its own introspection client. It does no network I/O: the first
// request to the identity provider happens on the first CONNECT.
func New(cfg *config.Config, log Logger) (*Engine, error) {
	icfg := introspect.Config{
		Endpoint:     cfg.IntrospectionEndpoint,
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		AuthMethod:   cfg.AuthMethod,
		Timeout:      cfg.Timeout,
		TLSVerify:    cfg.TLSVerification,
	}
	if cfg.CAFile != "" {
		pool, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, &config.OptionError{Key: "ca_file", Err: err}
		}
		icfg.RootCAs = pool
	}
	client, err := introspect.New(icfg)
	if err != nil {
		return nil, &config.OptionError{Key: "introspection_endpoint", Err: err}
	}
	return newEngine(cfg, client, log), nil
}

func newEngine(cfg *config.Config, v Verifier, log Logger) *Engine {
	return &Engine{cfg: cfg, verifier: v, log: log}
}

// loadCAFile reads a PEM bundle. Only these CAs are trusted for the identity provider, not the system's
// as well: an operator who names a CA means that one.
func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// Authenticate decides one CONNECT. It runs on the broker thread, so it must stay within the configured
// timeout; ctx may shorten it further.
//
// The order is the C plugin's: a username template without placeholders is checked before the token is
// sent anywhere (so a password_file user is deferred without a call to the identity provider), then the
// token is verified, then the templates that need claims are rendered.
func (e *Engine) Authenticate(ctx context.Context, req Request) Decision {
	c := e.cfg
	val := c.ValidationTemplate
	if c.UsernameValidation && !val.HasPlaceholders() && req.Username != val.String() {
		// With defer this is how password_file users pass by on every CONNECT: not worth a notice.
		level := LevelNotice
		if c.ValidationError == config.Defer {
			level = LevelDebug
		}
		return e.refuseAt(level, req, c.ValidationError, "username does not match username_validation_template")
	}
	if req.Password == "" {
		return e.refuse(req, c.TokenVerificationError, "no token in the password field")
	}
	res, err := e.verifier.Introspect(ctx, req.Password)
	if err != nil {
		level := LevelNotice
		if errors.Is(err, introspect.ErrIdPUnavailable) {
			level = LevelWarning
		}
		return e.refuseAt(level, req, c.TokenVerificationError, "token verification failed: "+err.Error())
	}
	if c.UsernameValidation && val.HasPlaceholders() {
		want, err := val.Render(res.Claims)
		if err != nil {
			return e.refuse(req, c.ValidationError, "username_validation_template: "+err.Error())
		}
		if req.Username != want {
			return e.refuse(req, c.ValidationError, "username does not match username_validation_template")
		}
	}
	d := Decision{Result: Allow}
	if c.UsernameReplacement {
		name, err := renderName(c.ReplacementTemplate, res.Claims)
		if err != nil {
			return e.refuse(req, c.ReplacementError, "username_replacement_template: "+err.Error())
		}
		d.Rename, d.Username = true, name
	}
	if d.Rename {
		e.log.Log(LevelInfo, fmt.Sprintf("client %q from %s authenticated by token, username set to %q", req.ClientID, req.Address, d.Username))
	} else {
		e.log.Log(LevelInfo, fmt.Sprintf("client %q from %s authenticated by token", req.ClientID, req.Address))
	}
	return d
}

// renderName renders a template into a username and refuses names that would be unsafe in topic
// patterns (see CheckName).
func renderName(t *template.Template, claims []byte) (string, error) {
	name, err := t.Render(claims)
	if err != nil {
		return "", err
	}
	if err := CheckName(name); err != nil {
		return "", fmt.Errorf("rendered username refused: %w", err)
	}
	return name, nil
}

func (e *Engine) refuse(req Request, p config.Policy, reason string) Decision {
	return e.refuseAt(LevelNotice, req, p, reason)
}

// refuseAt applies policy p and logs why. The reason never holds the token: the verifier's errors are
// built not to carry it, and templates report placeholder names, not claim values.
func (e *Engine) refuseAt(level Level, req Request, p config.Policy, reason string) Decision {
	r := Deny
	if p == config.Defer {
		r = Defer
	}
	e.log.Log(level, fmt.Sprintf("client %q from %s: %s (%s)", req.ClientID, req.Address, reason, r))
	return Decision{Result: r}
}
