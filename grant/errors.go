package grant

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
)

// The errors the command turns into one message each. Their texts are fixed and quote nothing the
// identity provider sent, so they may be printed as they are.
var (
	// ErrInvalidClient: the token or device authorization endpoint answered invalid_client, which
	// means a wrong client id or secret (RFC 6749 §5.2).
	ErrInvalidClient = errors.New("the identity provider refused the client credentials (invalid_client)")
	// ErrRefreshRefused: the cached refresh token expired or was revoked, and there is no Prompt to
	// sign in on again.
	ErrRefreshRefused = errors.New("the refresh token was refused (invalid_grant); sign in again with: mqtt-oauth2 token")
	// ErrSignInRequired: a device client has no usable cached token and no Prompt to sign in on.
	ErrSignInRequired = errors.New("not signed in; sign in with: mqtt-oauth2 token")
	// ErrAccessDenied: the user refused the device sign-in (RFC 8628 §3.5 access_denied).
	ErrAccessDenied = errors.New("the sign-in was denied")
	// ErrCodeExpired: the device code expired before the user approved it, by the server's
	// expired_token or by its expires_in running out while the command polled.
	ErrCodeExpired = errors.New("the code expired before it was approved; run again")
)

// UnreachableError is a request to the identity provider that got no HTTP answer: no route, refused
// connection, timeout, TLS failure.
type UnreachableError struct {
	URL string // the endpoint, without query or user info
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the identity provider at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// ProviderError is an answer from the identity provider that is an error and has no sentinel of its
// own: an HTTP status outside 2xx, or an OAuth error code such as invalid_scope.
type ProviderError struct {
	URL         string // the endpoint, without query or user info
	StatusCode  int
	Code        string // the OAuth "error" member; empty when the body had none
	Description string // the OAuth "error_description" member
}

// Error quotes the code and description through logtext: they come from the server, and the command
// prints them on a terminal.
func (e *ProviderError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("the identity provider at %s answered HTTP %d", e.URL, e.StatusCode)
	}
	s := fmt.Sprintf("the identity provider at %s refused the request: %s", e.URL, logtext.Quote(e.Code))
	if e.Description != "" {
		s += " " + logtext.QuoteN(e.Description, 200)
	}
	return s
}

// IsTransient reports whether err may go away by itself, so that a long-running caller should retry
// with backoff rather than give up: the identity provider could not be reached, or answered 5xx or
// 429. A certificate that does not verify is not transient: waiting does not fix a wrong CA.
func IsTransient(err error) bool {
	var ue *UnreachableError
	if errors.As(err, &ue) {
		var ce *tls.CertificateVerificationError
		return !errors.As(err, &ce)
	}
	var pe *ProviderError
	if errors.As(err, &pe) {
		return pe.StatusCode >= 500 || pe.StatusCode == http.StatusTooManyRequests
	}
	return false
}

// classify turns an error of x/oauth2 or net/http into one of this package's. It never keeps
// RetrieveError's own text, which quotes the response body. ctx is the context of the request: once
// it is done, its error is the cause, whatever the transport says.
func classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch re.ErrorCode {
		case "invalid_client":
			return ErrInvalidClient
		case "access_denied":
			return ErrAccessDenied
		case "expired_token":
			return ErrCodeExpired
		}
		pe := &ProviderError{Code: re.ErrorCode, Description: re.ErrorDescription}
		if re.Response != nil {
			pe.StatusCode = re.Response.StatusCode
			if re.Response.Request != nil {
				pe.URL = endpoint(re.Response.Request.URL)
			}
		}
		return pe
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		u, perr := url.Parse(ue.URL)
		if perr != nil {
			return &UnreachableError{URL: "(unparsable URL)", Err: ue.Err}
		}
		return &UnreachableError{URL: endpoint(u), Err: ue.Err}
	}
	return err
}

// endpoint is u without user info, query or fragment, for error texts: a misconfigured URL may carry
// a password or a token there.
func endpoint(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
