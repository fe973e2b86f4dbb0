// Package introspect asks an identity provider whether an OAuth 2.0 access
// token is active, using OAuth 2.0 Token Introspection (RFC 7662).
//
// Introspection lets the broker accept opaque tokens it cannot verify itself
// and notice revocation. Mosquitto calls the plugin from its only thread (on
// 2.0 synchronously), so every call here is bounded: one deadline covers
// connecting, the TLS handshake, the headers and the body; the body size is
// capped; redirects are not followed; and nothing the identity provider sends
// can panic or stall the caller beyond Config.Timeout.
//
// Errors are split in two so that callers can cache verdicts on a token
// (ErrTokenInvalid) but never cache a failure to obtain one (ErrIdPUnavailable).
// Error strings never contain the token, the client secret or the
// Authorization header, so they are safe to log.
package introspect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/strictjson"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
	"github.com/tidwall/gjson"
)

// ErrTokenInvalid is a verdict on the token: the identity provider answered
// and the token must be refused (inactive, expired, not yet valid, malformed
// exp or nbf). Callers may cache it.
var ErrTokenInvalid = verified.ErrInvalid

// ErrIdPUnavailable means no verdict was obtained: transport error, timeout,
// 5xx or 429 status, unexpected content type, oversized or malformed
// response. Callers must not cache it.
var ErrIdPUnavailable = verified.Class("introspection failed", verified.ErrUnavailable)

// ErrRequestRefused comes with ErrTokenInvalid when the identity provider refused the request for this
// token with a 4xx instead of answering it: enough to refuse a CONNECT, but no proof that a token it
// once vouched for was revoked, since a proxy in front of it can answer the same way.
var ErrRequestRefused = errors.New("the identity provider refused the token")

// ErrMisconfigured means the identity provider refused the broker's own
// request, whatever the token: its client credentials (401, 403, or a 400
// whose error is invalid_client or unauthorized_client), or the endpoint
// (404, 405, a redirect). Errors built with it also wrap ErrIdPUnavailable, since no verdict
// was obtained, but it says nothing about the identity provider's health, so
// a circuit breaker should not count it.
var ErrMisconfigured = errors.New("the identity provider refused the broker's request")

// DefaultMaxBodyBytes caps the introspection response when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

const (
	// maxIdleConns keeps enough warm connections for bursts of concurrent
	// introspections (Mosquitto 2.1 deferred auth) to the single endpoint.
	maxIdleConns = 64
	// idleConnTimeout drops a kept connection unused this long, on either transport: the IdP or
	// something between may have forgotten it without a word.
	idleConnTimeout = 90 * time.Second
	// drainLimit is how much of an unread body is discarded so the
	// connection can be reused; beyond it the connection is closed instead.
	drainLimit = 64 << 10
	// maxUnix (9999-12-31T23:59:59Z) clamps exp and nbf so that absurd
	// values stay representable as a time.Time.
	maxUnix = 253402300799
)

// AuthMethod is how the broker authenticates itself to the introspection
// endpoint (RFC 7662 §2.1 requires some client authentication).
type AuthMethod int

const (
	// ClientSecretBasic sends HTTP Basic credentials, id and secret each
	// form-url-encoded first as RFC 6749 §2.3.1 requires.
	ClientSecretBasic AuthMethod = iota
	// ClientSecretPost sends client_id and client_secret in the form body.
	ClientSecretPost
)

// ParseAuthMethod parses the OAuth client authentication method names
// "client_secret_basic" and "client_secret_post".
func ParseAuthMethod(s string) (AuthMethod, error) {
	switch s {
	case "client_secret_basic":
		return ClientSecretBasic, nil
	case "client_secret_post":
		return ClientSecretPost, nil
	}
	return 0, fmt.Errorf("introspect: unknown auth method %q (want client_secret_basic or client_secret_post)", s)
}

// Config configures a Client.
type Config struct {
	// Endpoint is the http or https URL of the introspection endpoint. It
	// must not carry credentials; use ClientID and ClientSecret.
	Endpoint     string
	ClientID     string
	ClientSecret string
	AuthMethod   AuthMethod
	// Timeout bounds a whole introspection, including reading the body.
	// It is required because the broker thread waits for the answer.
	Timeout time.Duration
	// TLSVerify false disables certificate verification; only the
	// operator's explicit choice, e.g. for a lab identity provider.
	TLSVerify bool
	// RootCAs verifies the endpoint's certificate; nil means system roots.
	RootCAs *x509.CertPool
	// MaxBodyBytes caps the response size; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Leeway tolerates clock skew with the identity provider when checking
	// exp and nbf; 0 means exact comparison.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
	// BlockingIO makes requests on blocking sockets, for callers that run on a thread which must not
	// be parked: Mosquitto 2.0's broker thread. Without it, they go through Go's network poller. Either
	// way each request runs in the calling goroutine on package blockinghttp's HTTP/1.1 transport,
	// except when a proxy is configured for the endpoint or on systems other than Linux: there
	// net/http carries them (see directTransport).
	BlockingIO bool
}

// Client introspects tokens against one endpoint. It is safe for concurrent
// use and reuses connections, so create one and share it.
//
// Its secret and trusted CAs can be replaced while requests run (SetSecret,
// SetRootCAs): each request reads them once, when it starts, so it is made
// wholly with the old values or wholly with the new.
type Client struct {
	http      atomic.Pointer[carrier]
	creds     atomic.Pointer[credentials]
	endpoint  string
	clientID  string
	method    AuthMethod
	tlsVerify bool
	blocking  bool // see Config.BlockingIO
	proxied   bool // a proxy is configured for the endpoint: requests go through net/http
	timeout   time.Duration
	maxBody   int64
	leeway    time.Duration
	now       func() time.Time
}

// credentials are the forms the client id and secret are sent in, and those to redact from errors.
type credentials struct {
	authHeader string   // Authorization value for ClientSecretBasic, else ""
	formSuffix string   // form fields following token=...
	secrets    []string // forms of the client credentials to redact from errors
}

// New validates cfg and returns a Client. Its errors describe the
// configuration and wrap neither ErrTokenInvalid nor ErrIdPUnavailable.
//
// Requests honour HTTPS_PROXY, HTTP_PROXY and NO_PROXY, as operators of
// hosts that reach the identity provider through a proxy expect.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Endpoint)
	switch {
	case err != nil:
		return nil, fmt.Errorf("introspect: invalid endpoint: %w", err)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("introspect: endpoint scheme must be https or http, got %q", u.Scheme)
	case u.Host == "":
		return nil, errors.New("introspect: endpoint has no host")
	case u.User != nil:
		return nil, errors.New("introspect: endpoint must not contain credentials; set the client id and secret instead")
	case cfg.ClientID == "":
		return nil, errors.New("introspect: client id is required")
	case cfg.ClientSecret == "":
		return nil, errors.New("introspect: client secret is required")
	case cfg.Timeout <= 0:
		return nil, errors.New("introspect: timeout must be positive")
	case cfg.MaxBodyBytes < 0:
		return nil, errors.New("introspect: max body bytes must not be negative")
	case cfg.Leeway < 0:
		return nil, errors.New("introspect: leeway must not be negative")
	case cfg.AuthMethod != ClientSecretBasic && cfg.AuthMethod != ClientSecretPost:
		return nil, fmt.Errorf("introspect: unknown auth method %d", cfg.AuthMethod)
	}

	c := &Client{
		endpoint:  u.String(),
		clientID:  cfg.ClientID,
		method:    cfg.AuthMethod,
		tlsVerify: cfg.TLSVerify,
		blocking:  cfg.BlockingIO,
		proxied:   proxied(u),
		timeout:   cfg.Timeout,
		maxBody:   cfg.MaxBodyBytes,
		leeway:    cfg.Leeway,
		now:       cfg.Now,
	}
	if c.maxBody == 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.creds.Store(c.credentialsFor(cfg.ClientSecret))
	c.http.Store(c.newHTTP(cfg.RootCAs))
	return c, nil
}

// credentialsFor encodes the client id and secret for the configured method.
func (c *Client) credentialsFor(secret string) *credentials {
	cr := &credentials{formSuffix: "&token_type_hint=access_token"}
	switch c.method {
	case ClientSecretBasic:
		// Not req.SetBasicAuth: RFC 6749 §2.3.1 wants both parts
		// form-url-encoded first, so a ':' in the id stays unambiguous.
		creds := url.QueryEscape(c.clientID) + ":" + url.QueryEscape(secret)
		encoded := base64.StdEncoding.EncodeToString([]byte(creds))
		cr.authHeader = "Basic " + encoded
		cr.secrets = append(cr.secrets, encoded)
	case ClientSecretPost:
		cr.formSuffix += "&client_id=" + url.QueryEscape(c.clientID) +
			"&client_secret=" + url.QueryEscape(secret)
	}
	cr.secrets = append(cr.secrets, secretForms(secret)...)
	return cr
}

// carrier is the transport requests go through, replaced whole when the trusted CAs change. Requests
// go to it directly, not through an http.Client: a redirect could carry the token elsewhere and costs
// another round trip, and the endpoint is configured, so a 3xx is a failure (see statusError), and
// none is followed. An http.Client would also copy every request's headers in case one were.
type carrier struct {
	rt interface {
		http.RoundTripper
		CloseIdleConnections()
	}
}

// newHTTP builds the transport that trusts roots (nil: the system's).
func (c *Client) newHTTP(roots *x509.CertPool) *carrier {
	transport := &http.Transport{
		Proxy:       http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
		// A custom TLSClientConfig disables HTTP/2 unless forced.
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           maxIdleConns,
		MaxIdleConnsPerHost:    maxIdleConns,
		IdleConnTimeout:        idleConnTimeout,
		TLSHandshakeTimeout:    c.timeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    roots,
			// Operator's explicit choice; see Config.TLSVerify.
			InsecureSkipVerify: !c.tlsVerify, //nolint:gosec
		},
	}
	if c.proxied {
		return &carrier{transport}
	}
	return &carrier{directTransport(transport, c.blocking)}
}

// SetSecret makes the next requests authenticate with secret, for a client secret rotated at the
// identity provider. Requests already under way finish with the old one.
func (c *Client) SetSecret(secret string) error {
	if secret == "" {
		return errors.New("introspect: client secret is required")
	}
	c.creds.Store(c.credentialsFor(secret))
	return nil
}

// SetRootCAs makes the next connections trust roots (nil: the system's) instead of the CAs in use.
// Requests under way finish on their connections; kept connections are closed as they fall idle, so
// none verified against the old CAs is used again.
func (c *Client) SetRootCAs(roots *x509.CertPool) {
	c.http.Swap(c.newHTTP(roots)).rt.CloseIdleConnections()
}

// proxied says whether the environment sends requests for u through a proxy.
func proxied(u *url.URL) bool {
	p, err := http.ProxyFromEnvironment(&http.Request{URL: u})
	return err != nil || p != nil
}

// maxResponseHeaderBytes caps the headers of an introspection response.
const maxResponseHeaderBytes = 64 << 10

// CloseIdleConnections closes kept-alive connections, e.g. on plugin cleanup.
func (c *Client) CloseIdleConnections() { c.http.Load().rt.CloseIdleConnections() }

// Verify asks the identity provider about token. It returns within
// Config.Timeout or ctx's deadline, whichever is earlier. The answer's claims
// are the introspection response. The error wraps ErrTokenInvalid or
// ErrIdPUnavailable and never contains the token.
func (c *Client) Verify(ctx context.Context, token string) (verified.Token, error) {
	if token == "" {
		return verified.Token{}, fmt.Errorf("%w: empty token", ErrTokenInvalid)
	}
	// A context that ends within the timeout already bounds the request (Mosquitto 2.1's delayed
	// checks bring one): a second one would cost a timer and a registration with the first per check.
	reqCtx := ctx
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > c.timeout {
		var cancel context.CancelFunc
		reqCtx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}

	cr := c.creds.Load()
	form := "token=" + url.QueryEscape(token) + cr.formSuffix
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.endpoint, strings.NewReader(form))
	if err != nil {
		return verified.Token{}, fmt.Errorf("%w: building request: %v", ErrIdPUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if cr.authHeader != "" {
		req.Header.Set("Authorization", cr.authHeader)
	}
	// Asking about a token twice is harmless. Marked so (the nil value is not sent), net/http sends the
	// request again when a kept connection turns out closed after it was written, as it would a GET.
	req.Header["Idempotency-Key"] = nil

	resp, err := c.http.Load().rt.RoundTrip(req)
	if err != nil {
		return verified.Token{}, c.transportError(ctx, reqCtx, err, cr, token)
	}
	defer drainAndClose(resp.Body)

	body, err := c.readBody(ctx, reqCtx, resp, cr, token)
	if err != nil {
		return verified.Token{}, err
	}
	return parseResponse(body, c.now(), c.leeway)
}

// readBody checks status and content type and reads at most maxBody bytes.
func (c *Client) readBody(ctx, reqCtx context.Context, resp *http.Response, cr *credentials, token string) ([]byte, error) {
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, cr.redact(resp.Header.Get("Location"), token))
	}
	// RFC 7662 §2.2 mandates application/json; anything else is likely an
	// error page. The value is not quoted: the server chose it.
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("%w: content type is not application/json", ErrIdPUnavailable)
	}
	if resp.ContentLength > c.maxBody {
		return nil, fmt.Errorf("%w: response exceeds %d bytes", ErrIdPUnavailable, c.maxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, c.transportError(ctx, reqCtx, err, cr, token)
	}
	if int64(len(body)) > c.maxBody {
		return nil, fmt.Errorf("%w: response exceeds %d bytes", ErrIdPUnavailable, c.maxBody)
	}
	return body, nil
}

// maxErrorBody is how much of a 400 answer is read for its OAuth error code.
const maxErrorBody = 4 << 10

// statusError classifies an answer other than 200 by whose fault it is, so that only the identity
// provider's own failures count against it (RFC 7662 §2.3, RFC 6749 §5.2):
//   - 5xx, 429 and 408: the identity provider is failing or shedding load (ErrIdPUnavailable);
//   - 401, 403, or a 400 whose error is invalid_client or unauthorized_client: the broker's client
//     credentials are refused; 404, 405 and redirects: the endpoint is wrong (ErrMisconfigured);
//   - any other 4xx answers this request, and the only thing in it a client chose is the token: a
//     string the IdP cannot parse (oidc-provider's 400 unsupported_token_type for a forged JWT), or
//     a body over its size limit (413). That is a refusal of the token (ErrTokenInvalid); counting it
//     as an outage would let anyone without credentials open the circuit breaker.
//
// Only the status, a known error code and a redirect's location (quoted and bounded, the token and
// the secret taken out) are reported: the body is the server's text. The location is how an operator
// learns the endpoint moved, such as Ory Hydra's admin endpoints under /admin.
func statusError(resp *http.Response, location string) error {
	code := resp.StatusCode
	switch {
	case code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		return fmt.Errorf("%w: status %d", ErrIdPUnavailable, code)
	case code >= 300 && code < 400 && location != "":
		return fmt.Errorf("%w: %w: redirect (status %d) to %s not followed, check introspection_endpoint",
			ErrIdPUnavailable, ErrMisconfigured, code, logtext.Quote(location))
	case code >= 300 && code < 400:
		return fmt.Errorf("%w: %w: redirect (status %d, no Location) not followed, check introspection_endpoint",
			ErrIdPUnavailable, ErrMisconfigured, code)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%w: %w: status %d, check client_id and client_secret", ErrIdPUnavailable, ErrMisconfigured, code)
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		return fmt.Errorf("%w: %w: status %d, check introspection_endpoint", ErrIdPUnavailable, ErrMisconfigured, code)
	case code >= 400 && code < 500:
		oauthErr := oauthError(resp.Body)
		if oauthErr == "invalid_client" || oauthErr == "unauthorized_client" {
			return fmt.Errorf("%w: %w: %s (status %d), check client_id and client_secret", ErrIdPUnavailable, ErrMisconfigured, oauthErr, code)
		}
		if oauthErr != "" {
			return fmt.Errorf("%w: %w: %s (status %d)", ErrTokenInvalid, ErrRequestRefused, oauthErr, code)
		}
		return fmt.Errorf("%w: %w (status %d)", ErrTokenInvalid, ErrRequestRefused, code)
	}
	return fmt.Errorf("%w: status %d", ErrIdPUnavailable, code) // 1xx, 2xx other than 200
}

// oauthError returns the error member of an OAuth error answer when it is one of the codes RFC 6749
// §5.2 and RFC 7009 define, else "". Other values are the server's text and are not repeated.
func oauthError(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
	e := gjson.GetBytes(b, "error")
	switch e.Str {
	case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
		"unsupported_grant_type", "invalid_scope", "unsupported_token_type", "invalid_token":
		return e.Str
	}
	return ""
}

// transportError turns a net/http error into a short ErrIdPUnavailable. The
// *url.Error wrapper is dropped: the endpoint is known to the operator. The
// request body is never part of net/http errors, but some quote what the
// server sent (a malformed status line, HTTP/2 GOAWAY debug data), so the
// token and the secret are redacted in case a server echoed them.
func (c *Client) transportError(ctx, reqCtx context.Context, err error, cr *credentials, token string) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %v", ErrIdPUnavailable, ctx.Err())
	case reqCtx.Err() != nil || isTimeout(err):
		// The blocking transport notices a deadline itself, maybe before the context's timer has
		// fired, so whose deadline it was is read from the deadlines.
		if d, ok := ctx.Deadline(); ok {
			if rd, _ := reqCtx.Deadline(); !d.After(rd) {
				return fmt.Errorf("%w: %v", ErrIdPUnavailable, context.DeadlineExceeded)
			}
		}
		return fmt.Errorf("%w: timeout after %s", ErrIdPUnavailable, c.timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: connection refused", ErrIdPUnavailable)
	}
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%w: %s", ErrIdPUnavailable, cr.redact(err.Error(), token))
}

// redact takes the token and the client secret the request was sent with, in each form they may be
// written in, out of msg: a text the identity provider influenced, which might echo them.
func (cr *credentials) redact(msg, token string) string {
	for _, s := range append(secretForms(token), cr.secrets...) {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}

// isTimeout says whether err is a network timeout (net/http's, or the blocking transport's).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// secretForms returns s as it may appear in error text: raw, form-encoded
// as sent, and escaped as by %q.
func secretForms(s string) []string {
	q := strconv.Quote(s)
	return []string{s, url.QueryEscape(s), q[1 : len(q)-1]}
}

// drainAndClose discards a little of what is left of body so that the
// connection can be kept alive, then closes it.
func drainAndClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, drainLimit)
	_ = body.Close()
}

// parseResponse validates an introspection response body (RFC 7662 §2.2).
//
// Only "active": true accepts a token. A response that is not strict JSON
// (see strictjson: duplicate member names anywhere, deep nesting), or whose
// "active" is missing or not a JSON boolean, says nothing reliable about the
// token, so it is ErrIdPUnavailable: parsers disagree on which duplicate wins,
// and templates may read Claims with another one than this. A present exp or
// nbf that is not a number is a refusal (ErrTokenInvalid): the identity
// provider did answer, and accepting a token whose lifetime cannot be read
// would be unsafe.
func parseResponse(body []byte, now time.Time, leeway time.Duration) (verified.Token, error) {
	if err := strictjson.Check(body); err != nil {
		return verified.Token{}, fmt.Errorf("%w: %v", ErrIdPUnavailable, err)
	}
	obj := gjson.ParseBytes(body)
	if !obj.IsObject() {
		return verified.Token{}, fmt.Errorf("%w: response is not a JSON object", ErrIdPUnavailable)
	}
	var active, exp, nbf gjson.Result
	obj.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "active":
			active = v
		case "exp":
			exp = v
		case "nbf":
			nbf = v
		}
		return true
	})

	switch {
	case active.Type == gjson.False:
		return verified.Token{}, fmt.Errorf("%w: inactive", ErrTokenInvalid)
	case active.Type != gjson.True:
		return verified.Token{}, fmt.Errorf("%w: malformed response: \"active\" missing or not a boolean", ErrIdPUnavailable)
	}

	res := verified.Token{Claims: body, Source: verified.Introspection}
	if sub := obj.Get("sub"); sub.Type == gjson.String {
		res.Subject = sub.Str
	}
	if exp.Exists() {
		if exp.Type != gjson.Number {
			return verified.Token{}, fmt.Errorf("%w: malformed exp", ErrTokenInvalid)
		}
		res.Expiry = unixTime(exp.Num)
		if !now.Add(-leeway).Before(res.Expiry) {
			return verified.Token{}, fmt.Errorf("%w: expired", ErrTokenInvalid)
		}
	}
	if nbf.Exists() {
		if nbf.Type != gjson.Number {
			return verified.Token{}, fmt.Errorf("%w: malformed nbf", ErrTokenInvalid)
		}
		if unixTime(nbf.Num).After(now.Add(leeway)) {
			return verified.Token{}, fmt.Errorf("%w: not yet valid", ErrTokenInvalid)
		}
	}
	return res, nil
}

// unixTime converts JSON NumericDate seconds, clamped to [0, maxUnix].
func unixTime(sec float64) time.Time {
	whole, frac := math.Modf(min(max(sec, 0), maxUnix))
	return time.Unix(int64(whole), int64(frac*1e9))
}
