package grant

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/skip2/go-qrcode"
	"golang.org/x/oauth2"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
)

// Device returns a TokenSource for a device client: the cached access token while it is valid for at
// least Margin, then the cached refresh token, and only when there is none, or the server refuses it
// (invalid_grant), the device authorization grant, whose instructions go to c.Prompt. Later tokens
// come from the refresh token the last one brought. ctx carries every request the source makes, and
// cancelling it ends a sign-in that is waiting for approval.
func (c *Config) Device(ctx context.Context) oauth2.TokenSource {
	key, tok, err := c.cached(grantDevice)
	if err != nil {
		return failed(err)
	}
	s := &deviceSource{
		prompt: c.Prompt,
		ctx:    c.context(ctx),
		conf: &oauth2.Config{
			ClientID:     c.ClientID,
			ClientSecret: c.ClientSecret,
			Scopes:       c.Scopes,
			Endpoint: oauth2.Endpoint{
				TokenURL:      c.TokenURL,
				DeviceAuthURL: c.DeviceAuthURL,
				AuthStyle:     authStyle(c.ClientSecret),
			},
		},
	}
	for k, v := range c.params() {
		s.opts = append(s.opts, oauth2.SetAuthURLParam(k, v[0]))
	}
	if tok != nil {
		s.refresh = tok.RefreshToken
	}
	return c.reuse(key, tok, s)
}

// authStyle is how a device client authenticates. Left to detect, x/oauth2 retries every failed
// token request the other way, and while the user has not approved every poll fails
// (authorization_pending): each poll would be two requests. A public client sends its id in the
// body, as RFC 8628 §3.4 shows; a confidential one uses HTTP Basic, which RFC 6749 §2.3.1 says every
// server must accept.
func authStyle(secret string) oauth2.AuthStyle {
	if secret == "" {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// deviceSource gets tokens by refresh, else by a device sign-in. It is only ever called by the reuse
// source around it, under that source's lock.
type deviceSource struct {
	prompt  io.Writer
	ctx     context.Context
	conf    *oauth2.Config
	opts    []oauth2.AuthCodeOption
	refresh string // the refresh token to use next; empty when there is none
}

func (s *deviceSource) Token() (*oauth2.Token, error) {
	if s.refresh != "" {
		tok, err := s.conf.TokenSource(s.ctx, &oauth2.Token{RefreshToken: s.refresh}).Token()
		if err == nil {
			// x/oauth2 keeps the old refresh token when the answer brings no new one.
			s.refresh = tok.RefreshToken
			return tok, nil
		}
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			return nil, fmt.Errorf("refreshing the token: %w", classify(s.ctx, err))
		}
		if s.prompt == nil {
			return nil, ErrRefreshRefused
		}
		s.refresh = ""
	}
	if s.prompt == nil {
		return nil, ErrSignInRequired
	}
	tok, err := s.signIn()
	if err != nil {
		return nil, err
	}
	s.refresh = tok.RefreshToken
	return tok, nil
}

// signIn runs the device authorization grant: ask for a code, show it, poll until approved.
func (s *deviceSource) signIn() (*oauth2.Token, error) {
	if s.conf.Endpoint.DeviceAuthURL == "" {
		return nil, errors.New("the identity provider has no device authorization endpoint: discover it from the issuer or set DeviceAuthURL")
	}
	da, err := s.conf.DeviceAuth(s.ctx, s.opts...)
	if err != nil {
		return nil, fmt.Errorf("starting the device sign-in: %w", classify(s.ctx, err))
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return nil, errors.New("the device authorization answer lacks a device_code, user_code or verification_uri")
	}
	if err := showPrompt(s.prompt, da); err != nil {
		return nil, fmt.Errorf("showing the sign-in instructions: %w", err)
	}
	// x/oauth2 polls every da.Interval seconds (5 when the server sent none), waits 5 s more after
	// each slow_down, and ends at da.Expiry with the context's error. Any other failure ends its loop,
	// so a 5xx or a dropped connection is retried here, less often each time as RFC 8628 §3.5 asks,
	// for as long as the code lives.
	for {
		tok, err := s.conf.DeviceAccessToken(s.ctx, da, s.opts...)
		if err == nil {
			return tok, nil
		}
		if s.ctx.Err() == nil && !da.Expiry.IsZero() && !time.Now().Before(da.Expiry) {
			return nil, ErrCodeExpired
		}
		err = classify(s.ctx, err)
		if !IsTransient(err) || da.Expiry.IsZero() {
			return nil, fmt.Errorf("waiting for the device sign-in: %w", err)
		}
		if da.Interval <= 0 {
			da.Interval = 5
		}
		da.Interval *= 2
	}
}

// showPrompt writes the sign-in instructions: the URI and code, a QR code of the URI that includes
// the code when the server sent one, and how long the code lives. The device code is never shown: it
// is what the command trades for tokens.
func showPrompt(w io.Writer, da *oauth2.DeviceAuthResponse) error {
	var b strings.Builder
	fmt.Fprintf(&b, "To sign in, open %s and enter code %s\n", shown(da.VerificationURI), shown(da.UserCode))
	if da.VerificationURIComplete != "" {
		// The QR code is drawn for a terminal with light text on a dark background: ToSmallString(false)
		// draws the light modules, quiet zone included, as the text colour. A URI too long for a QR
		// code is only given as text.
		if q, err := qrcode.New(da.VerificationURIComplete, qrcode.Low); err == nil {
			fmt.Fprintf(&b, "or scan this code to open %s:\n%s", shown(da.VerificationURIComplete), q.ToSmallString(false))
		} else {
			fmt.Fprintf(&b, "or open %s\n", shown(da.VerificationURIComplete))
		}
	}
	if da.Expiry.IsZero() {
		b.WriteString("waiting for approval\n")
	} else {
		fmt.Fprintf(&b, "waiting for approval (expires in %d s)\n", int(time.Until(da.Expiry).Round(time.Second).Seconds()))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shown is s as the prompt shows it: as it is when it is plain printable text, else quoted with its
// control characters escaped, so that a server cannot write terminal escapes to the user's screen.
func shown(s string) string {
	if len(s) > 512 || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) || r == utf8.RuneError }) {
		return logtext.QuoteN(s, 512)
	}
	return s
}
