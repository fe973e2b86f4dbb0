// Package verified is the vocabulary the verifiers share: a verified Token, and the two ways a check can
// fail, by the token's fault or by the identity provider's. Introspection (package introspect) and
// local JWT verification (package jwt) both speak it, so the core layers its cache, request sharing and
// circuit breaker around one Verifier without knowing which one answered.
package verified

import (
	"context"
	"errors"
	"time"
)

// Source says which check vouched for a token.
type Source int

const (
	// Introspection: the identity provider answered active (RFC 7662). It can be asked again, and
	// will then see a revocation.
	Introspection Source = iota + 1
	// LocalJWT: the signature verified with the issuer's published key. Only its exp ends it.
	LocalJWT
)

// Token is a token a verifier accepted.
type Token struct {
	// Claims is the introspection answer or the JWT payload: a JSON object without duplicate members.
	Claims []byte
	// Subject is its sub, "" when it has none or it is not a string.
	Subject string
	// Expiry is its exp; zero when it has none.
	Expiry time.Time
	Source Source
}

// ErrInvalid is wrapped by every refusal of the token itself (inactive, expired, bad signature,
// malformed...): the verdict may be remembered, and it says nothing against the identity provider.
var ErrInvalid = errors.New("token rejected")

// ErrUnavailable is wrapped by every failure to reach a verdict (the identity provider down, slow,
// misconfigured or answering garbage; keys not fetched): it is never remembered, and the token may be
// fine.
var ErrUnavailable = errors.New("no verdict")

// Verifier checks a token. Its errors wrap exactly one of ErrInvalid and ErrUnavailable, and never
// contain the token.
type Verifier interface {
	Verify(ctx context.Context, token string) (Token, error)
}

// Class returns a sentinel error whose text is text and that wraps class (ErrInvalid or ErrUnavailable),
// for a verifier's own named errors, so that callers can test for either.
func Class(text string, class error) error { return &classError{text, class} }

type classError struct {
	text  string
	class error
}

func (e *classError) Error() string { return e.text }
func (e *classError) Unwrap() error { return e.class }
