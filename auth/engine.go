// Package auth is the plugin's core: options in, decisions out.
//
// It knows nothing of cgo or of the broker's C types. The plugin package copies a CONNECT's fields into
// a Request, asks Authenticate, and maps the Decision to a Mosquitto return code. Everything here can be
// tested with go test and no broker.
package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/cache"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/jwt"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/template"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
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
	Attempt  uint64 // set by the caller of Start; handed back in the Completion
}

// Decision is the engine's answer. When Rename is set the broker must give the client Username before
// it runs any ACL check, so acl_file %u patterns see the new name. Session is set for an accepted client
// when the plugin authorizes topics (acl_* options): the plugin keeps it for the client's ACL checks.
// Expiry is when an accepted client's token expires (zero when it has no exp): its lease ends then.
// Subject is its token's sub: a re-authentication must bring a token of the same one. Introspected is
// set for an accepted client whose token the IdP vouched for by introspection (not a JWT verified
// locally): only such a token can be checked again (StartRecheck). Token is the hash of the token an
// accepted client was admitted with, already computed for the cache, so that its session recognises
// Mosquitto's re-check without hashing the token again on the broker thread.
type Decision struct {
	Result       Result
	Rename       bool
	Username     string
	Session      *Session
	Expiry       time.Time
	Subject      string
	Introspected bool
	Token        cache.Key
	reason       Reason // for metrics; the log line says why in words
}

// Engine decides CONNECTs for one plugin instance. It is safe for concurrent use.
type Engine struct {
	cfg *config.Config
	log Logger
	v   *verifier
	// client is the introspection client, whose secret and CAs Reload replaces; nil without
	// introspection_endpoint.
	client *introspect.Client
	async
	rechecks rechecks
	stats    *counters
	breaker  *breaker // nil without introspection
}

// New builds the engine for cfg, with its own introspection client and JWT verifier as configured. It
// waits for no network I/O: the JWT verifier fetches the issuer's keys in the background, and the first
// introspection request happens on the first CONNECT. blockingIO is for an engine whose checks run on
// Mosquitto 2.0's broker thread (see introspect.Config.BlockingIO). What cfg allows but an operator
// probably did not mean, such as a plain-http endpoint, is logged at warning level.
func New(cfg *config.Config, log Logger, blockingIO bool) (*Engine, error) {
	for _, w := range cfg.Warnings() {
		log.Log(LevelWarning, w)
	}
	var roots *x509.CertPool
	if cfg.CAFile != "" {
		pool, _, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, &config.OptionError{Key: "ca_file", Err: err}
		}
		roots = pool
	}
	var client *introspect.Client
	var intro verified.Verifier
	if cfg.Introspection() {
		var err error
		if client, err = newIntrospector(cfg, roots, blockingIO); err != nil {
			return nil, err
		}
		intro = client
	}
	stats := new(counters)
	var jv *jwt.Verifier
	if cfg.JWTVerification {
		var err error
		if jv, err = newJWTVerifier(cfg, roots, log, time.Now, blockingIO, stats); err != nil {
			return nil, err
		}
		jv.Start()
	}
	e := newEngine(cfg, intro, jv, log, time.Now, stats)
	e.client = client
	return e, nil
}

func newIntrospector(cfg *config.Config, roots *x509.CertPool, blockingIO bool) (*introspect.Client, error) {
	icfg := introspect.Config{
		Endpoint:     cfg.IntrospectionEndpoint,
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		AuthMethod:   cfg.AuthMethod,
		Timeout:      cfg.Timeout,
		TLSVerify:    cfg.TLSVerification,
		BlockingIO:   blockingIO,
		RootCAs:      roots,
	}
	client, err := introspect.New(icfg)
	if err != nil {
		return nil, &config.OptionError{Key: "introspection_endpoint", Err: err}
	}
	return client, nil
}

// newJWTVerifier builds the verifier of jwt_issuer's tokens. Key fetches trust what introspection
// trusts: ca_file and tls_verification apply to both. onBrokerThread is set when checks run on
// Mosquitto 2.0's broker thread, which then never waits for a key fetch while it holds keys. Each
// key set fetch is counted in stats.
func newJWTVerifier(cfg *config.Config, roots *x509.CertPool, log Logger, now func() time.Time, onBrokerThread bool, stats *counters) (*jwt.Verifier, error) {
	jv, err := jwt.New(jwt.Config{
		Issuer:            cfg.JWTIssuer,
		JWKSURL:           cfg.JWKSEndpoint,
		Audiences:         cfg.JWTAudiences,
		Algorithms:        cfg.JWTAlgorithms,
		ClockSkew:         cfg.JWTClockSkew,
		Timeout:           cfg.Timeout,
		Now:               now,
		FetchInBackground: onBrokerThread,
		TLS:               keyFetchTLS(cfg, roots),
		Log: func(warning bool, msg string) {
			level := LevelInfo
			if warning {
				level = LevelWarning
			}
			log.Log(level, msg)
		},
		Fetched: stats.keySetFetched,
	})
	if err != nil {
		return nil, &config.OptionError{Key: "jwt_verification", Err: err} // the options were checked: unexpected
	}
	return jv, nil
}

// keyFetchTLS is the TLS configuration of key fetches, which trust the CAs introspection trusts.
func keyFetchTLS(cfg *config.Config, roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, InsecureSkipVerify: !cfg.TLSVerification, MinVersion: tls.VersionTLS12}
}

func newEngine(cfg *config.Config, intro verified.Verifier, jv *jwt.Verifier, log Logger, now func() time.Time, stats *counters) *Engine {
	e := &Engine{cfg: cfg, log: log, stats: stats}
	entries := cfg.CacheMaxEntries
	if cfg.CacheTTL == 0 && cfg.NegativeCacheTTL == 0 {
		entries = 0
	}
	if intro != nil {
		e.breaker = &breaker{threshold: cfg.BreakerFailures, cooldown: cfg.BreakerCooldown, now: now, log: log, stats: stats}
		intro = &guarded{next: intro, log: log, breaker: e.breaker, stats: stats}
	}
	e.v = &verifier{
		source:   router{jwt: jv, intro: intro, log: log, stats: stats},
		stats:    stats,
		intro:    intro,
		jwt:      jv,
		cache:    cache.New[verdict](entries, now),
		ttl:      cfg.CacheTTL,
		negTTL:   cfg.NegativeCacheTTL,
		now:      now,
		render:   e.render,
		inflight: make(map[cache.Key]*call),
	}
	e.async.init(cfg.Timeout)
	e.rechecks.jobs = make(chan recheckJob, maxRecheckQueue)
	if entries > 0 {
		go e.v.sweep(e.async.ctx)
	}
	return e
}

// loadCAFile reads a PEM bundle and says how many certificates it holds. Only these CAs are trusted for
// the identity provider, not the system's as well: an operator who names a CA means that one. As with
// x509.CertPool.AppendCertsFromPEM, blocks that are not certificates, or do not parse, are skipped.
func loadCAFile(path string) (*x509.CertPool, int, error) {
	rest, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	pool := x509.NewCertPool()
	n := 0
	for len(rest) > 0 {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
			continue
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			pool.AddCert(cert)
			n++
		}
	}
	if n == 0 {
		return nil, 0, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, n, nil
}

// Authenticate decides one CONNECT. On Mosquitto 2.0 it runs on the broker thread, so it stays within
// the configured timeout; ctx may shorten it further.
//
// The order is the C plugin's: a username template without placeholders is checked before the token is
// sent anywhere (so a password_file user is deferred without a call to the identity provider), then the
// token is verified, then the templates that need claims are applied.
func (e *Engine) Authenticate(ctx context.Context, req Request) Decision {
	if d, ok := e.FromMemory(req); ok {
		return d
	}
	return e.Verify(ctx, req)
}

// Verify decides req by verifying its token, for a caller that has just found FromMemory could not:
// it spares the broker thread a second cache lookup and JWT parse of the same token (not the hash, about a
// microsecond per KiB of token, which Verify computes again).
func (e *Engine) Verify(ctx context.Context, req Request) Decision {
	d := e.verify(ctx, req)
	e.stats.decided(missed, d)
	return d
}

func (e *Engine) verify(ctx context.Context, req Request) Decision {
	if _, ok := ctx.Deadline(); !ok {
		// Bounds callers that join a request already in flight; background checks bring their own.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.Timeout)
		defer cancel()
	}
	k := cache.KeyOf(req.Password)
	vd, err := e.v.verify(ctx, k, req.Password)
	if err != nil {
		return e.refuseAt(LevelWarning, req, e.cfg.TokenVerificationError, noVerdict(err), "token verification failed: "+err.Error())
	}
	return e.decide(req, k, vd)
}

// FromMemory decides req without any I/O when it can: a username that fails a placeholder-free
// validation template, a missing token, a token in the cache, or a JWT of jwt_issuer signed with a key
// already held (a signature check costs tens of microseconds, less than handing the check to another
// goroutine). ok is false when the IdP must be asked. This is the whole cost of a reconnect with a known
// token, and of Mosquitto's re-check of every client on SIGHUP.
func (e *Engine) FromMemory(req Request) (Decision, bool) {
	d, l := e.fromMemory(req)
	if l == unanswered {
		return Decision{}, false
	}
	e.stats.decided(l, d)
	return d, true
}

func (e *Engine) fromMemory(req Request) (Decision, lookup) {
	c := e.cfg
	val := c.ValidationTemplate
	if c.UsernameValidation && !val.HasPlaceholders() && req.Username != val.String() {
		// With defer this is how password_file users pass by on every CONNECT: not worth a notice.
		level := LevelNotice
		if c.ValidationError == config.Defer {
			level = LevelDebug
		}
		return e.refuseAt(level, req, c.ValidationError, ReasonUsernameValidation, "username does not match username_validation_template"), unread
	}
	if req.Password == "" {
		return e.refuse(req, c.TokenVerificationError, ReasonNoToken, "no token in the password field"), unread
	}
	if len(req.Password) > MaxTokenBytes {
		return e.refuse(req, c.TokenVerificationError, ReasonMalformed, fmt.Sprintf("token verification failed: malformed: over %d bytes", MaxTokenBytes)), unread
	}
	k := cache.KeyOf(req.Password)
	if vd, ok := e.v.cached(k); ok {
		return e.decide(req, k, vd), hit
	}
	if !accessTokenShape(req.Password) {
		return e.refuse(req, c.TokenVerificationError, ReasonMalformed, "token verification failed: malformed: a byte outside printable ASCII"), missed
	}
	if vd, ok := e.v.held(k, req.Password); ok {
		return e.decide(req, k, vd), missed
	}
	return Decision{}, unanswered
}

// MaxTokenBytes is the longest password the plugin treats as a token. Real access tokens stay far below
// it (a JWT with a few hundred group claims is about 8 KiB, and bearer tokens travel in HTTP headers
// that servers cap at 8 to 16 KiB); a longer one is refused without a hash, a parse or a request, so a
// client cannot make each refusal cost more, and a delayed check never holds more than this.
const MaxTokenBytes = 16 << 10

// accessTokenShape reports whether tok can be an access token at all: RFC 6749 Appendix A.12 allows
// only printable ASCII (VSCHAR, 0x20 to 0x7E). Anything else is refused without asking the IdP, which
// would refuse it anyway; it costs a pass over the token, only on a cache miss.
func accessTokenShape(tok string) bool {
	for i := 0; i < len(tok); i++ {
		if tok[i] < 0x20 || tok[i] > 0x7e {
			return false
		}
	}
	return true
}

// render applies the templates that need claims, once per verified token, and keeps the claims when
// ACL rules will need them at each CONNECT.
func (e *Engine) render(tok verified.Token) verdict {
	var vd verdict
	c := e.cfg
	claims := tok.Claims
	if c.ACL != nil {
		vd.claims = bytes.Clone(claims)
	}
	if len(c.EnhancedAuthMethods) > 0 {
		vd.subject = tok.Subject // kept only where a re-authentication may compare it
	}
	if c.UsernameValidation && c.ValidationTemplate.HasPlaceholders() {
		// The name a client passes validation with is the name it keeps, and acl_file's %u sees it: the
		// same rule as a replacement name.
		name, err := renderName(c.ValidationTemplate, claims)
		if err != nil {
			vd.validErr = err.Error()
		}
		vd.validName = name
	}
	if c.UsernameReplacement {
		name, err := renderName(c.ReplacementTemplate, claims)
		if err != nil {
			vd.renameErr = err.Error()
		}
		vd.newName = name
	}
	return vd
}

// decide turns a verdict into the answer for this client.
func (e *Engine) decide(req Request, k cache.Key, vd verdict) Decision {
	c := e.cfg
	if !vd.valid {
		return e.refuse(req, c.TokenVerificationError, ReasonTokenRefused, "token verification failed: "+vd.reason)
	}
	if c.UsernameValidation && c.ValidationTemplate.HasPlaceholders() {
		if vd.validErr != "" {
			return e.refuse(req, c.ValidationError, ReasonUsernameValidation, "username_validation_template: "+vd.validErr)
		}
		if req.Username != vd.validName {
			return e.refuse(req, c.ValidationError, ReasonUsernameValidation, "username does not match username_validation_template")
		}
	}
	// No log line for an accepted client: the broker logs every connection itself, with the new
	// username, and a reconnect with a cached token should cost no formatting.
	d := Decision{Result: Allow, Expiry: vd.expiry, Subject: vd.subject, Introspected: vd.introspected, Token: k}
	if c.UsernameReplacement {
		if vd.renameErr != "" {
			return e.refuse(req, c.ReplacementError, ReasonUsernameReplacement, "username_replacement_template: "+vd.renameErr)
		}
		d.Rename, d.Username = true, vd.newName
	}
	if c.ACL != nil {
		// A username the client chose, not bound to the token, fills no placeholder: ${username} in an
		// ACL claim must not let a client name someone else's tree.
		name := ""
		switch {
		case d.Rename:
			name = d.Username
		case c.UsernameFromToken():
			name = req.Username
		}
		grants, err := c.ACL.Compile(vd.claims, name, req.ClientID)
		if err != nil {
			return e.refuse(req, c.TokenVerificationError, ReasonACLClaim, err.Error())
		}
		d.Session = &Session{grants: grants, expiry: vd.expiry}
	}
	return d
}

// renderName renders a template into a username and refuses names that would be unsafe in topic
// patterns (see CheckName). Every name made from claims goes through it.
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

func (e *Engine) refuse(req Request, p config.Policy, class Reason, reason string) Decision {
	return e.refuseAt(LevelNotice, req, p, class, reason)
}

// refuseAt applies policy p and logs why; class is the reason's class in metrics. The reason never
// holds the token: the verifier's errors are built not to carry it, and templates report placeholder
// names, not claim values. The client id is the client's own text, so it is quoted; the plugin escapes
// the whole line again before the broker gets it.
func (e *Engine) refuseAt(level Level, req Request, p config.Policy, class Reason, reason string) Decision {
	r := Deny
	if p == config.Defer {
		r = Defer
	}
	who := "client " + logtext.Quote(req.ClientID)
	if req.Address != "" { // a client the broker made up (2.1's HTTP API) has none
		who += " from " + req.Address
	}
	e.log.Log(level, fmt.Sprintf("%s: %s (%s)", who, reason, r))
	return Decision{Result: r, reason: class}
}
