package jwt

import (
	"errors"
	"fmt"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

// ErrTokenInvalid is wrapped by every refusal of the token itself: the caller may remember it (negative
// cache) and must not blame the identity provider for it. Each refusal also wraps one of the reasons
// below, so callers and tests can tell why with errors.Is.
var ErrTokenInvalid = verified.ErrInvalid

// ErrKeysUnavailable means the token could not be checked because the issuer's keys could not be
// fetched: the identity provider is down, slow or answering garbage. It is not the token's fault and
// must never be cached as a refusal.
var ErrKeysUnavailable = verified.Class("jwt: signing keys unavailable", verified.ErrUnavailable)

// Reasons for refusing a token. A refusal's text is "jwt: ", the reason, and at most a short detail
// this package writes itself, never a library's error text or the token: it ends up in broker logs and
// in the negative cache. Of the token, only kid, alg, typ, iss and aud may appear, the values that
// caused a refusal, each through logtext.Quote so that the detail stays bounded and printable; nothing
// else of the claims, which may be personal data.
var (
	ErrMalformed    = errors.New("malformed JWS")
	ErrAlgorithm    = errors.New("algorithm not allowed")
	ErrType         = errors.New("typ is not at+jwt or JWT")
	ErrUnknownKey   = errors.New("unknown signing key")
	ErrBadSignature = errors.New("bad signature")
	ErrIssuer       = errors.New("wrong issuer")
	ErrAudience     = errors.New("wrong audience")
	ErrNoExpiry     = errors.New("no exp claim")
	ErrExpired      = errors.New("expired")
	ErrNotYetValid  = errors.New("not valid yet")
)

// refusal is a token refused for reason, with a detail safe to log.
type refusal struct {
	reason error
	detail string
}

func (r *refusal) Error() string {
	if r.detail == "" {
		return "jwt: " + r.reason.Error()
	}
	return "jwt: " + r.reason.Error() + ": " + r.detail
}

func (r *refusal) Unwrap() []error { return []error{ErrTokenInvalid, r.reason} }

func refuse(reason error, format string, args ...any) error {
	return &refusal{reason: reason, detail: fmt.Sprintf(format, args...)}
}
