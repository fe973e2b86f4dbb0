// Package grant gets OAuth 2.0 access tokens for the device-side command mqtt-oauth2: by the client
// credentials grant for a confidential client, and by the device authorization grant (RFC 8628) and
// refresh tokens for a device a person signs in on. Every flow is golang.org/x/oauth2's; this package
// adds discovery, a token cache on disk, and errors that say what went wrong without quoting a token,
// a secret or a response body.
//
// The token sources returned here are x/oauth2 reuse sources: they hand out their token until Margin
// before its expiry, then get a new one. A token whose server sent no expires_in has a zero Expiry,
// which x/oauth2 treats as never expiring; such a token is used until the server refuses it.
package grant

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Config says which authorization server to ask, as which client, for what.
type Config struct {
	Endpoints // by Discover, or by hand

	ClientID string
	// ClientSecret empty means a public client, which can only use the device grant.
	ClientSecret string
	Scopes       []string
	// Audience and Resource are sent as the "audience" (Auth0 and others) and "resource" (RFC 8707)
	// parameters when set: the token and device authorization requests carry them, the refresh
	// requests do not (x/oauth2 sends none there), so a refreshed token has the audience the first
	// one was granted.
	Audience, Resource string

	// HTTPClient makes every request to the authorization server (a CA of its own, a timeout); nil
	// means http.DefaultClient.
	HTTPClient *http.Client
	// Cache keeps tokens between runs; nil keeps none.
	Cache *Cache
	// Prompt is where the device sign-in instructions and QR code go. nil means the command runs
	// without a person: a device source then fails with ErrSignInRequired or ErrRefreshRefused
	// rather than start a sign-in nobody sees.
	Prompt io.Writer
	// Margin is how long before its expiry a token, cached or new, counts as expired and is renewed.
	// Zero means x/oauth2's default, 10 s. The sources apply it to the cached token too, which is why
	// it is set here: wrapping a returned source in oauth2.ReuseTokenSourceWithExpiry(nil, src, m)
	// changes the margin for later tokens, but not for the token the source already holds.
	Margin time.Duration
}

// The grants, as they appear in cache keys.
const (
	grantClientCredentials = "client_credentials"
	grantDevice            = "urn:ietf:params:oauth:grant-type:device_code"
)

// ClientCredentials returns a TokenSource for the client credentials grant (RFC 6749 §4.4): a cached
// token while it is valid for at least Margin, then a new one from the token endpoint. ctx carries
// every request the source makes, now and later.
func (c *Config) ClientCredentials(ctx context.Context) oauth2.TokenSource {
	key, tok, err := c.cached(grantClientCredentials)
	if err != nil {
		return failed(err)
	}
	ctx = c.context(ctx)
	cc := &clientcredentials.Config{
		ClientID:       c.ClientID,
		ClientSecret:   c.ClientSecret,
		TokenURL:       c.TokenURL,
		Scopes:         c.Scopes,
		EndpointParams: c.params(),
	}
	return c.reuse(key, tok, tokenFunc(func() (*oauth2.Token, error) {
		tok, err := cc.Token(ctx)
		if err != nil {
			return nil, classify(ctx, err)
		}
		return tok, nil
	}))
}

// tokenFunc makes a function a TokenSource.
type tokenFunc func() (*oauth2.Token, error)

func (f tokenFunc) Token() (*oauth2.Token, error) { return f() }

// failed is a source that fails with err: the x/oauth2 shape has no error at construction, so a
// configuration or cache error comes out of the first Token call, as x/oauth2's own do.
func failed(err error) oauth2.TokenSource {
	return tokenFunc(func() (*oauth2.Token, error) { return nil, err })
}

// context is ctx with c.HTTPClient where x/oauth2 looks for it.
func (c *Config) context(ctx context.Context) context.Context {
	if c.HTTPClient == nil {
		return ctx
	}
	return context.WithValue(ctx, oauth2.HTTPClient, c.HTTPClient)
}

// params are the audience and resource parameters, as set.
func (c *Config) params() url.Values {
	v := url.Values{}
	if c.Audience != "" {
		v.Set("audience", c.Audience)
	}
	if c.Resource != "" {
		v.Set("resource", c.Resource)
	}
	return v
}

// cached returns the cache key of this configuration and grant, and the token stored under it: nil
// when there is none or no cache. It fails without a token endpoint, which every grant needs.
func (c *Config) cached(grant string) (string, *oauth2.Token, error) {
	if c.TokenURL == "" {
		return "", nil, errors.New("no token endpoint: discover it from the issuer or set TokenURL")
	}
	if c.Cache == nil {
		return "", nil, nil
	}
	key := cacheKey(c, grant)
	tok, err := c.Cache.load(key)
	return key, tok, err
}

// reuse wraps src so that each new token is written to the cache, then in a reuse source that starts
// with tok and renews Margin before expiry. The reuse source is x/oauth2's own, so that wrapping it
// again in ReuseTokenSource does not stack a second one. A token that cannot be saved is an error, not
// a warning: the cache was asked for, and a device that silently stops caching would ask its user to
// sign in on every run.
func (c *Config) reuse(key string, tok *oauth2.Token, src oauth2.TokenSource) oauth2.TokenSource {
	if c.Cache != nil {
		inner := src
		src = tokenFunc(func() (*oauth2.Token, error) {
			t, err := inner.Token()
			if err != nil {
				return nil, err
			}
			if err := c.Cache.save(key, t); err != nil {
				return nil, err
			}
			return t, nil
		})
	}
	return oauth2.ReuseTokenSourceWithExpiry(tok, src, c.Margin)
}
