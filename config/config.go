// Package config turns the broker's plugin_opt_* lines into a validated Config.
//
// The option names, defaults and meanings are those of the C plugin this one replaces, so its users can
// swap the shared object and keep their mosquitto.conf. Parsing is strict on purpose: an unknown option,
// a malformed value or a template with an unknown placeholder is an error naming the option, because a
// typo in a security setting must stop the broker rather than silently weaken it.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/jwt"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/template"
)

// Option is one plugin_opt_KEY VALUE line, as the broker hands it over.
type Option struct {
	Key, Value string
}

// Policy says what to answer when a check fails: refuse the client, or let the broker ask
// password_file or the next plugin.
type Policy int

const (
	Deny Policy = iota
	Defer
)

func (p Policy) String() string {
	if p == Defer {
		return "defer"
	}
	return "deny"
}

// DefaultTimeout bounds one call to the identity provider when no timeout option is given.
const DefaultTimeout = 5 * time.Second

// Config is the validated configuration of one plugin instance.
type Config struct {
	IntrospectionEndpoint string
	ClientID              string
	ClientSecret          string // from client_secret or the file named by client_secret_file
	ClientSecretFile      string
	AuthMethod            introspect.AuthMethod
	TLSVerification       bool
	CAFile                string
	Timeout               time.Duration

	UsernameValidation  bool
	ValidationTemplate  *template.Template // nil unless UsernameValidation
	ValidationError     Policy
	UsernameReplacement bool
	ReplacementTemplate *template.Template // nil unless UsernameReplacement
	ReplacementError    Policy

	TokenVerificationError Policy

	// DisconnectOnExpiry disconnects each admitted client when its token expires.
	DisconnectOnExpiry bool
	// EnhancedAuthMethods are the MQTT 5 Authentication Methods whose Authentication Data is an access
	// token (OAUTHBEARER: RFC 7628 framing around it); empty turns MQTT 5 enhanced authentication off.
	EnhancedAuthMethods []string

	CacheTTL         time.Duration // 0 turns the cache off
	CacheMaxEntries  int
	NegativeCacheTTL time.Duration // 0 keeps no refusals
	BreakerFailures  int           // 0 turns the circuit breaker off
	BreakerCooldown  time.Duration

	// ReintrospectionInterval: connected clients admitted by introspection have their token checked
	// again this often, and are disconnected when the IdP no longer vouches for it; 0 turns this off.
	ReintrospectionInterval time.Duration

	JWTVerification bool
	JWTIssuer       string
	JWKSEndpoint    string
	JWTAudiences    []string
	JWTAlgorithms   []string
	JWTClockSkew    time.Duration

	ACL        *acl.Policy // nil unless an acl_* option is set
	ACLNoMatch Policy      // what a check no rule applies to gets

	// MetricsListen is the ADDR:PORT where Prometheus metrics are served at /metrics; "" serves none.
	MetricsListen string
	// SysInterval is how often the same counters are published under $SYS; 0 publishes none. A
	// plugin cannot read the broker's own sys_interval, so it has its own, with the broker's default.
	SysInterval time.Duration
}

// UsernameFromToken reports whether an accepted client's username is bound to its token: replaced
// from the claims, or checked against a template that has placeholders. Only then may ACL rules use it.
func (c *Config) UsernameFromToken() bool {
	return c.UsernameReplacement || (c.UsernameValidation && c.ValidationTemplate != nil && c.ValidationTemplate.HasPlaceholders())
}

// Introspection reports whether tokens that are not JWTs of jwt_issuer go to an introspection endpoint.
func (c *Config) Introspection() bool { return c.IntrospectionEndpoint != "" }

// Defaults of the cache and the circuit breaker. The cache of valid tokens is off by default: a token
// revoked at the IdP is then refused at the next CONNECT, as the C plugin this replaces does.
const (
	DefaultCacheTTL         = 0
	DefaultCacheMaxEntries  = 100000
	DefaultNegativeCacheTTL = 10 * time.Second
	DefaultBreakerFailures  = 5
	DefaultBreakerCooldown  = 10 * time.Second
)

// DefaultSysInterval is Mosquitto's own default sys_interval.
const DefaultSysInterval = 10 * time.Second

// OptionError is a problem with one option; its message starts with the option's name as written in
// mosquitto.conf so the operator knows which line to fix.
type OptionError struct {
	Key string
	Err error
}

func (e *OptionError) Error() string { return "plugin_opt_" + e.Key + ": " + e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

// options lists every option this plugin knows, with its help text. The order is the order of Summary.
var options = []struct{ key, help string }{
	{"introspection_endpoint", "URL of the RFC 7662 introspection endpoint (required unless jwt_verification is true)"},
	{"client_id", "client id used to authenticate to the introspection endpoint (required with introspection_endpoint)"},
	{"client_secret", "client secret for the introspection endpoint (this or client_secret_file is required with introspection_endpoint)"},
	{"client_secret_file", "file holding the client secret, e.g. a Docker or Kubernetes secret; re-read on SIGHUP"},
	{"introspection_auth_method", "client_secret_basic (default) or client_secret_post"},
	{"tls_verification", "verify the identity provider's TLS certificate: true (default) or false"},
	{"ca_file", "PEM bundle of CA certificates to trust for the identity provider, re-read on SIGHUP (default: system roots)"},
	{"timeout", "seconds to wait for the identity provider, fractions allowed (default 5)"},
	{"username_validation", "check the MQTT username against username_validation_template: true or false (default false)"},
	{"username_validation_template", "template the MQTT username must equal"},
	{"username_validation_error", "deny or defer (default defer) when the username does not match"},
	{"username_replacement", "replace the MQTT username with username_replacement_template: true or false (default false)"},
	{"username_replacement_template", "template rendered into the new MQTT username"},
	{"username_replacement_error", "deny or defer (default deny) when the replacement cannot be rendered"},
	{"token_verification_error", "deny or defer (default deny) when the token is not valid"},
	{"disconnect_on_expiry", "disconnect each client when its token expires: true (default) or false"},
	{"enhanced_auth_method", "space-separated MQTT 5 Authentication Methods whose Authentication Data is the access token, e.g. OAUTH2-JWT; OAUTHBEARER takes RFC 7628 framing (default: none)"},
	{"cache_ttl", "seconds a verified token is remembered across connections, never past its exp; a token revoked at the IdP keeps working that long; 0 turns the cache off (default 0)"},
	{"cache_max_entries", "most tokens remembered; the least recently used go first (default 100000)"},
	{"negative_cache_ttl", "seconds a refused token is remembered; 0 turns this off (default 10)"},
	{"circuit_breaker_failures", "IdP failures in a row that open the circuit breaker; 0 turns it off (default 5)"},
	{"circuit_breaker_cooldown", "seconds the open breaker answers without asking the IdP before it probes again (default 10)"},
	{"reintrospection_interval", "seconds between checks of a connected client's opaque token at the IdP; a revoked token disconnects its client, an IdP failure never does; 0 turns this off (default 0)"},
	{"jwt_verification", "verify JWT access tokens of jwt_issuer locally with its published keys: true or false (default false)"},
	{"jwt_issuer", "the exact iss of the JWTs to verify locally; their keys are found by discovery from it (required with jwt_verification)"},
	{"jwks_endpoint", "URL of the issuer's JWK set, instead of discovery (default: jwks_uri of the discovery document)"},
	{"jwt_audience", "space-separated audiences; the token's aud must hold one (default: aud not checked)"},
	{"jwt_algorithms", "space-separated JWS algorithms allowed (default RS256 RS384 RS512 ES256 ES384 ES512 PS256 PS384 PS512 EdDSA)"},
	{"jwt_clock_skew", "seconds of leeway on nbf and iat, not exp (default 30)"},
	{"acl_rule", "allow|deny publish|subscribe|all TOPIC [when CLAIM[=VALUE]]; repeatable (default: none)"},
	{"acl_topics_claim", "claim (path) listing topic filters the client may publish and subscribe to (default: none)"},
	{"acl_claim", "claim (path) holding an ACL in EMQX's format (default: none)"},
	{"acl_no_match", "deny or defer (default deny) when no ACL rule applies"},
	{"metrics_listen", "ADDR:PORT to serve Prometheus metrics at /metrics, e.g. 127.0.0.1:9883 (default: none)"},
	{"sys_interval", "seconds between publications of the plugin's counters under $SYS/broker/plugin/oauth2/; 0 turns them off (default 10, like Mosquitto's)"},
}

// repeatable options may be given more than once; their values are kept in order.
var repeatable = map[string]bool{"acl_rule": true}

// Keys returns the names of every known option, in documentation order, with their help text.
func Keys() [][2]string {
	out := make([][2]string, len(options))
	for i, o := range options {
		out[i] = [2]string{o.key, o.help}
	}
	return out
}

func known(key string) bool {
	for _, o := range options {
		if o.key == key {
			return true
		}
	}
	return false
}

// Parse validates the options of one plugin instance and reads client_secret_file if one is named.
func Parse(opts []Option) (*Config, error) {
	values := make(map[string]string, len(opts))
	lists := make(map[string][]string)
	for _, o := range opts {
		if !known(o.Key) {
			return nil, &OptionError{o.Key, errors.New("unknown option")}
		}
		if repeatable[o.Key] {
			lists[o.Key] = append(lists[o.Key], strings.TrimSpace(o.Value))
			continue
		}
		if _, dup := values[o.Key]; dup {
			return nil, &OptionError{o.Key, errors.New("given more than once")}
		}
		values[o.Key] = strings.TrimSpace(o.Value)
	}
	p := parser{values: values, lists: lists}
	c := &Config{
		IntrospectionEndpoint:  p.str("introspection_endpoint"),
		ClientID:               p.str("client_id"),
		ClientSecret:           p.str("client_secret"),
		ClientSecretFile:       p.str("client_secret_file"),
		TLSVerification:        p.boolean("tls_verification", true),
		CAFile:                 p.str("ca_file"),
		Timeout:                p.seconds("timeout", DefaultTimeout, false, maxTimeout),
		UsernameValidation:     p.boolean("username_validation", false),
		ValidationError:        p.policy("username_validation_error", Defer),
		UsernameReplacement:    p.boolean("username_replacement", false),
		ReplacementError:       p.policy("username_replacement_error", Deny),
		TokenVerificationError: p.policy("token_verification_error", Deny),
		DisconnectOnExpiry:     p.boolean("disconnect_on_expiry", true),
		EnhancedAuthMethods:    p.methods("enhanced_auth_method"),
		CacheTTL:               p.seconds("cache_ttl", DefaultCacheTTL, true, 24*time.Hour),
		CacheMaxEntries:        p.count("cache_max_entries", DefaultCacheMaxEntries, 10000000),
		NegativeCacheTTL:       p.seconds("negative_cache_ttl", DefaultNegativeCacheTTL, true, time.Hour),
		BreakerFailures:        p.count("circuit_breaker_failures", DefaultBreakerFailures, 1000),
		BreakerCooldown:        p.seconds("circuit_breaker_cooldown", DefaultBreakerCooldown, false, time.Hour),
		MetricsListen:          p.listenAddress("metrics_listen"),
		SysInterval:            time.Duration(p.count("sys_interval", int(DefaultSysInterval/time.Second), 65535)) * time.Second,
	}
	p.reintrospection(c)
	c.AuthMethod = p.authMethod("introspection_auth_method")
	c.ValidationTemplate = p.template("username_validation_template", c.UsernameValidation, "username_validation")
	c.ReplacementTemplate = p.template("username_replacement_template", c.UsernameReplacement, "username_replacement")
	c.ACLNoMatch = p.policy("acl_no_match", Deny)
	p.acl(c)
	p.jwt(c)
	if c.Introspection() || !c.JWTVerification {
		p.require("introspection_endpoint")
		p.require("client_id")
		p.secret(c)
	} else {
		for _, k := range []string{"client_id", "client_secret", "client_secret_file", "introspection_auth_method"} {
			if _, ok := values[k]; ok {
				p.fail(k, "set but introspection_endpoint is not")
			}
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	return c, nil
}

// parser reads typed values out of the option map and keeps the first error, so Parse reads as a list
// of fields rather than a ladder of if-err checks.
type parser struct {
	values map[string]string
	lists  map[string][]string // repeatable options
	err    error
}

func (p *parser) fail(key string, format string, args ...any) {
	if p.err == nil {
		p.err = &OptionError{key, fmt.Errorf(format, args...)}
	}
}

func (p *parser) str(key string) string { return p.values[key] }

func (p *parser) require(key string) {
	if p.values[key] == "" {
		p.fail(key, "required")
	}
}

func (p *parser) boolean(key string, def bool) bool {
	v, ok := p.values[key]
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	}
	p.fail(key, "%q is not true or false", v)
	return def
}

func (p *parser) policy(key string, def Policy) Policy {
	v, ok := p.values[key]
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "deny":
		return Deny
	case "defer":
		return Defer
	}
	p.fail(key, "%q is not deny or defer", v)
	return def
}

// maxTimeout keeps a typo such as "timeout 500" from letting one slow identity provider hold the
// broker thread for minutes.
const maxTimeout = 60 * time.Second

// seconds reads a number of seconds, fractions allowed, at most max and above zero unless zero is
// allowed (zero then turns a feature off).
func (p *parser) seconds(key string, def time.Duration, zero bool, max time.Duration) time.Duration {
	v, ok := p.values[key]
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != f { // f != f: NaN
		p.fail(key, "%q is not a number of seconds", v)
		return def
	}
	if f < 0 || (f == 0 && !zero) || f > max.Seconds() {
		low := "above 0"
		if zero {
			low = "0"
		}
		p.fail(key, "%v is not between %s and %v", v, low, max.Seconds())
		return def
	}
	return time.Duration(f * float64(time.Second))
}

// count reads a whole number between 0 and max.
func (p *parser) count(key string, def, max int) int {
	v, ok := p.values[key]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max {
		p.fail(key, "%q is not a whole number between 0 and %d", v, max)
		return def
	}
	return n
}

func (p *parser) authMethod(key string) introspect.AuthMethod {
	v, ok := p.values[key]
	if !ok {
		return introspect.ClientSecretBasic
	}
	m, err := introspect.ParseAuthMethod(v)
	if err != nil {
		p.fail(key, "%q is not client_secret_basic or client_secret_post", v)
	}
	return m
}

// template parses the template option key, which is required when the boolean option enabledBy is true.
// A template given while its feature is off is refused: the operator meant something that would not
// happen.
func (p *parser) template(key string, enabled bool, enabledBy string) *template.Template {
	v, ok := p.values[key]
	switch {
	case !enabled && ok:
		p.fail(key, "set but %s is false", enabledBy)
		return nil
	case !enabled:
		return nil
	case v == "":
		p.fail(key, "required when %s is true", enabledBy)
		return nil
	}
	t, err := template.Parse(v)
	if err != nil {
		p.fail(key, "%v", err)
		return nil
	}
	return t
}

// methods reads a list of MQTT 5 Authentication Method names: UTF-8 strings in MQTT, kept here to
// printable ASCII without spaces, as every method name in use is.
func (p *parser) methods(key string) []string {
	names := strings.Fields(p.str(key))
	for _, n := range names {
		for i := 0; i < len(n); i++ {
			if n[i] <= ' ' || n[i] > '~' {
				p.fail(key, "%q is not a method name of printable ASCII", n)
				return nil
			}
		}
	}
	if len(names) == 0 {
		if _, set := p.values[key]; set {
			p.fail(key, "empty")
		}
		return nil
	}
	return names
}

// jwt reads the options of local JWT verification. They are refused while jwt_verification is off:
// whoever set them expected tokens to be checked that way.
func (p *parser) jwt(c *Config) {
	c.JWTVerification = p.boolean("jwt_verification", false)
	keys := []string{"jwt_issuer", "jwks_endpoint", "jwt_audience", "jwt_algorithms", "jwt_clock_skew"}
	if !c.JWTVerification {
		for _, k := range keys {
			if _, ok := p.values[k]; ok {
				p.fail(k, "set but jwt_verification is false")
			}
		}
		return
	}
	c.JWTIssuer = p.str("jwt_issuer")
	p.require("jwt_issuer")
	p.url("jwt_issuer")
	c.JWKSEndpoint = p.str("jwks_endpoint")
	p.url("jwks_endpoint")
	c.JWTAudiences = strings.Fields(p.str("jwt_audience"))
	c.JWTAlgorithms = jwt.DefaultAlgorithms
	if v, ok := p.values["jwt_algorithms"]; ok {
		c.JWTAlgorithms = strings.Fields(v)
		if len(c.JWTAlgorithms) == 0 {
			p.fail("jwt_algorithms", "empty")
		}
		for _, a := range c.JWTAlgorithms {
			if !slices.Contains(jwt.DefaultAlgorithms, a) {
				p.fail("jwt_algorithms", "%q is not one of %s (symmetric algorithms and none are never allowed)",
					a, strings.Join(jwt.DefaultAlgorithms, " "))
			}
		}
	}
	c.JWTClockSkew = p.seconds("jwt_clock_skew", jwt.DefaultClockSkew, true, 5*time.Minute)
}

// acl parses the ACL options into a policy. The error of a bad rule names the option and quotes the
// rule, so the operator finds the line.
func (p *parser) acl(c *Config) {
	o := acl.Options{Rules: p.lists["acl_rule"], TopicsClaim: p.str("acl_topics_claim"), ACLClaim: p.str("acl_claim")}
	for _, r := range o.Rules {
		if r == "" {
			p.fail("acl_rule", "empty")
			return
		}
	}
	if len(o.Rules) == 0 && o.TopicsClaim == "" && o.ACLClaim == "" {
		if _, ok := p.values["acl_no_match"]; ok {
			p.fail("acl_no_match", "set but no acl_rule, acl_topics_claim or acl_claim is")
		}
		return
	}
	for key, path := range map[string]string{"acl_topics_claim": o.TopicsClaim, "acl_claim": o.ACLClaim} {
		if err := template.ValidatePath(path); path != "" && err != nil {
			p.fail(key, "%v", err)
		}
	}
	pol, err := acl.NewPolicy(o) // the paths are valid now: an error is about a rule
	if err != nil {
		p.fail("acl_rule", "%v", err)
		return
	}
	if pol.UsesUsername() && !c.UsernameFromToken() {
		p.fail("acl_rule", "%%u would be the username the client chose: set username_replacement, or "+
			"username_validation with a template that has placeholders, so that it comes from the token")
		return
	}
	c.ACL = pol
}

// MinReintrospectionInterval keeps a typo such as "0.01" from turning every connected client into
// a hundred requests a second to the IdP.
const MinReintrospectionInterval = time.Second

// reintrospection reads reintrospection_interval. It needs an introspection endpoint: JWTs verified
// locally are only held to their exp, which the lease already does.
func (p *parser) reintrospection(c *Config) {
	c.ReintrospectionInterval = p.seconds("reintrospection_interval", 0, true, 24*time.Hour)
	switch {
	case c.ReintrospectionInterval > 0 && c.ReintrospectionInterval < MinReintrospectionInterval:
		p.fail("reintrospection_interval", "%v is below %v (0 turns it off)", p.values["reintrospection_interval"], MinReintrospectionInterval.Seconds())
	case c.ReintrospectionInterval > 0 && !c.Introspection():
		p.fail("reintrospection_interval", "set but introspection_endpoint is not")
	}
}

// listenAddress reads an optional HOST:PORT to listen on. The host is required: metrics tell whoever
// reads them how the broker's clients fare, so serving them on every interface must be said, as
// 0.0.0.0 or [::].
func (p *parser) listenAddress(key string) string {
	v, ok := p.values[key]
	if !ok {
		return ""
	}
	host, port, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(port)
	if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		p.fail(key, "%q is not ADDR:PORT, e.g. 127.0.0.1:9883 (0.0.0.0:9883 for every interface)", v)
		return ""
	}
	return v
}

// url checks that an optional option holds an absolute http(s) URL.
func (p *parser) url(key string) {
	v := p.values[key]
	if v == "" {
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.fail(key, "%q is not an http(s) URL", v)
	}
}

// secret resolves the client secret from client_secret or client_secret_file, exactly one of which must
// be given.
func (p *parser) secret(c *Config) {
	switch {
	case c.ClientSecret != "" && c.ClientSecretFile != "":
		p.fail("client_secret_file", "give client_secret or client_secret_file, not both")
	case c.ClientSecretFile != "":
		secret, err := ReadSecretFile(c.ClientSecretFile)
		if err != nil {
			p.fail("client_secret_file", "%v", err)
			return
		}
		c.ClientSecret = secret
	case c.ClientSecret == "":
		p.fail("client_secret", "required (or client_secret_file)")
	}
}

// ReadSecretFile reads a client_secret_file, at start-up and on reload. The trailing newline is
// dropped: secrets written with echo or a text editor have one. An empty secret is an error. Errors name
// the file, never its content.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	secret := strings.TrimRight(string(b), "\r\n")
	if secret == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return secret, nil
}

// Summary is the one-line account of the effective configuration logged at start-up. The client secret
// is never part of it.
func (c *Config) Summary() string {
	var b strings.Builder
	if c.JWTVerification {
		fmt.Fprintf(&b, "jwt_issuer=%s", c.JWTIssuer)
		if c.JWKSEndpoint != "" {
			fmt.Fprintf(&b, " jwks_endpoint=%s", c.JWKSEndpoint)
		}
		if len(c.JWTAudiences) > 0 {
			fmt.Fprintf(&b, " jwt_audience=%q", strings.Join(c.JWTAudiences, " "))
		}
		fmt.Fprintf(&b, " jwt_algorithms=%q jwt_clock_skew=%gs ", strings.Join(c.JWTAlgorithms, " "), c.JWTClockSkew.Seconds())
	}
	if c.Introspection() {
		fmt.Fprintf(&b, "introspection_endpoint=%s client_id=%s client_secret=", c.IntrospectionEndpoint, c.ClientID)
		if c.ClientSecretFile != "" {
			fmt.Fprintf(&b, "(from %s)", c.ClientSecretFile)
		} else {
			b.WriteString("(set)")
		}
		method := "client_secret_basic"
		if c.AuthMethod == introspect.ClientSecretPost {
			method = "client_secret_post"
		}
		fmt.Fprintf(&b, " introspection_auth_method=%s ", method)
	} else {
		b.WriteString("introspection=off ")
	}
	if c.usesHTTPS() {
		fmt.Fprintf(&b, "tls_verification=%t ", c.TLSVerification)
		if c.CAFile != "" {
			fmt.Fprintf(&b, "ca_file=%s ", c.CAFile)
		}
	}
	fmt.Fprintf(&b, "timeout=%gs", c.Timeout.Seconds())
	if c.UsernameValidation {
		fmt.Fprintf(&b, " username_validation=%q on_error=%s", c.ValidationTemplate, c.ValidationError)
	}
	if c.UsernameReplacement {
		fmt.Fprintf(&b, " username_replacement=%q on_error=%s", c.ReplacementTemplate, c.ReplacementError)
	}
	fmt.Fprintf(&b, " token_verification_error=%s disconnect_on_expiry=%t", c.TokenVerificationError, c.DisconnectOnExpiry)
	if len(c.EnhancedAuthMethods) > 0 {
		fmt.Fprintf(&b, " enhanced_auth_method=%q", strings.Join(c.EnhancedAuthMethods, " "))
	}
	if c.ACL != nil {
		fmt.Fprintf(&b, " acl=(%s) acl_no_match=%s", c.ACL, c.ACLNoMatch)
	}
	fmt.Fprintf(&b, " cache_ttl=%gs cache_max_entries=%d negative_cache_ttl=%gs circuit_breaker_failures=%d circuit_breaker_cooldown=%gs",
		c.CacheTTL.Seconds(), c.CacheMaxEntries, c.NegativeCacheTTL.Seconds(), c.BreakerFailures, c.BreakerCooldown.Seconds())
	if c.Introspection() {
		fmt.Fprintf(&b, " reintrospection_interval=%gs", c.ReintrospectionInterval.Seconds())
	}
	if c.MetricsListen != "" {
		fmt.Fprintf(&b, " metrics_listen=%s", c.MetricsListen)
	}
	fmt.Fprintf(&b, " sys_interval=%gs", c.SysInterval.Seconds())
	return b.String()
}

// endpoint is a URL the plugin fetches from, and the option that names it.
type endpoint struct {
	Option, URL string
}

// endpoints lists the URLs the plugin fetches from: the introspection endpoint, the JWK set, and the
// issuer when the JWK set is found by discovery from it (otherwise jwt_issuer is only compared).
func (c *Config) endpoints() []endpoint {
	var out []endpoint
	if c.Introspection() {
		out = append(out, endpoint{"introspection_endpoint", c.IntrospectionEndpoint})
	}
	switch {
	case c.JWKSEndpoint != "":
		out = append(out, endpoint{"jwks_endpoint", c.JWKSEndpoint})
	case c.JWTVerification:
		out = append(out, endpoint{"jwt_issuer", c.JWTIssuer})
	}
	return out
}

// usesHTTPS reports whether an endpoint is https, where tls_verification and ca_file apply.
func (c *Config) usesHTTPS() bool {
	for _, e := range c.endpoints() {
		if strings.HasPrefix(strings.ToLower(e.URL), "https://") {
			return true
		}
	}
	return false
}

// Warnings says what the configuration allows but an operator probably did not mean, one line each,
// for the start-up log: an endpoint in plain http to a host other than loopback (what crosses the
// network there can be read and changed on the way), and TLS options with no https endpoint to apply to.
func (c *Config) Warnings() []string {
	var out []string
	for _, e := range c.endpoints() {
		if !plainHTTPOffHost(e.URL) {
			continue
		}
		switch e.Option {
		case "introspection_endpoint":
			out = append(out, fmt.Sprintf("%s %s is plain http to a host other than loopback: every token and the "+
				"broker's client secret cross the network readable, and its answers can be forged on the way; use https",
				e.Option, e.URL))
		case "jwks_endpoint":
			out = append(out, fmt.Sprintf("%s %s is plain http to a host other than loopback: anyone on the way can "+
				"replace the signing keys and mint tokens the broker accepts; use https", e.Option, e.URL))
		default:
			out = append(out, fmt.Sprintf("%s %s is plain http to a host other than loopback, and the signing keys "+
				"are found by discovery from it: anyone on the way can replace them and mint tokens the broker "+
				"accepts; use https, or set jwks_endpoint to an https URL", e.Option, e.URL))
		}
	}
	if !c.usesHTTPS() && (c.CAFile != "" || !c.TLSVerification) {
		out = append(out, "ca_file and tls_verification apply to https endpoints, and none is configured: they have no effect")
	}
	return out
}

// plainHTTPOffHost reports whether u is a plain http URL to a host other than this one. Host names are
// not resolved: only "localhost", names under ".localhost" (RFC 6761) and loopback addresses count as
// this host.
func plainHTTPOffHost(u string) bool {
	p, err := url.Parse(u)
	if err != nil || !strings.EqualFold(p.Scheme, "http") {
		return false
	}
	host := strings.ToLower(strings.TrimSuffix(p.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback()
}
