package renew

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Renewal describes one token handed to the session before the old one expired.
type Renewal struct {
	Due         time.Time // when the renewal was scheduled: the old token's exp minus the margin
	Done        time.Time // when the session carried the new token
	Exp         time.Time // the new token's expiry
	Reconnected bool      // the new token came with a new connection rather than in-session
}

// Loop presents a fresh token to a session before the current one expires, and again before that one
// expires, for as long as it runs. It holds no connection: Present does the presenting.
type Loop struct {
	// Tokens gives the tokens. Each call at a renewal time must return a token that outlives the
	// current one; wrap caching sources with oauth2.ReuseTokenSourceWithExpiry(nil, src, Margin).
	Tokens oauth2.TokenSource
	// Margin is how long before a token's exp the next one is presented. A token whose whole lifetime
	// is shorter than twice the margin is renewed halfway through instead, so that short-lived
	// tokens do not send the loop to the IdP without pause.
	Margin time.Duration
	// Present hands a fresh token to the session and returns once the session carries it, telling
	// whether that took a new connection. An error is retried with backoff.
	// A session that reconnected calls Use with the token its new connection carries.
	Present func(ctx context.Context, tok *oauth2.Token) (reconnected bool, err error)
	// Fatal tells which errors from Tokens end the loop (a refused client secret, say) rather than
	// being retried with backoff (an unreachable IdP). Nil: every error is retried.
	Fatal func(error) bool
	// Logf reports retried failures, once per distinct message in a row. Nil: silent.
	Logf func(format string, args ...any)
	// OnRenew, if set, is called after each renewal.
	OnRenew func(Renewal)

	mu       sync.Mutex
	obtained time.Time
	exp      time.Time
	changed  chan struct{}
}

// Backoff bounds for failed renewals.
const (
	firstRetry = time.Second
	lastRetry  = 30 * time.Second
)

// Use records the token the session carries now, when it got one outside the loop (a CONNECT), and
// reschedules the next renewal from it.
func (l *Loop) Use(tok *oauth2.Token) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.obtained, l.exp = time.Now(), tok.Expiry
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// next returns the current renewal time (zero: none scheduled) and a channel closed when Use changes it.
func (l *Loop) next() (time.Time, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return renewAt(l.obtained, l.exp, l.Margin), l.changed
}

// renewAt is when a token obtained at obtained and expiring at exp is renewed; zero for a token
// without expiry.
func renewAt(obtained, exp time.Time, margin time.Duration) time.Time {
	if exp.IsZero() {
		return time.Time{}
	}
	at := exp.Add(-margin)
	if half := obtained.Add(exp.Sub(obtained) / 2); at.Before(half) {
		at = half
	}
	return at
}

// Run renews until ctx ends (returning nil) or Tokens fails with an error Fatal accepts.
func (l *Loop) Run(ctx context.Context) error {
	retry := firstRetry
	lastMsg := ""
	for {
		due, changed := l.next()
		if !sleepUntil(ctx, due, changed) {
			return nil
		}
		if isClosed(changed) {
			continue // a new connection brought a new token: a new renewal time
		}
		err := l.renew(ctx, due)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			retry, lastMsg = firstRetry, ""
			continue
		}
		var te tokenError
		if errors.As(err, &te) && l.Fatal != nil && l.Fatal(te.error) {
			return fmt.Errorf("renewing the token: %w", te.error)
		}
		if text := err.Error(); text != lastMsg && l.Logf != nil {
			l.Logf("renewing the token: %v (retrying, at most %s apart)", err, lastRetry)
			lastMsg = text
		}
		if !sleepUntil(ctx, time.Now().Add(retry), changed) {
			return nil
		}
		retry = min(2*retry, lastRetry)
	}
}

// tokenError is a failure to get a token, as opposed to one to present it.
type tokenError struct{ error }

func (e tokenError) Unwrap() error { return e.error }

// renew gets a token and presents it.
func (l *Loop) renew(ctx context.Context, due time.Time) error {
	tok, err := l.Tokens.Token()
	if err != nil {
		return tokenError{err}
	}
	l.mu.Lock()
	stale := !tok.Expiry.After(l.exp)
	l.mu.Unlock()
	if stale {
		return errStale
	}
	reconnected, err := l.Present(ctx, tok)
	if err != nil {
		return err
	}
	if !reconnected {
		l.Use(tok) // a new connection has called Use with the token it carries
	}
	if l.OnRenew != nil {
		l.mu.Lock()
		exp := l.exp
		l.mu.Unlock()
		l.OnRenew(Renewal{Due: due, Done: time.Now(), Exp: exp, Reconnected: reconnected})
	}
	return nil
}

// errStale is a renewal that got the current token back: the source cached it past the renewal time.
var errStale = errors.New("the token source returned the current token again: wrap it with oauth2.ReuseTokenSourceWithExpiry and the margin")

// sleepUntil waits for t (for ever when zero) or for changed to close, and reports false when ctx
// ended first.
func sleepUntil(ctx context.Context, t time.Time, changed <-chan struct{}) bool {
	var fire <-chan time.Time
	if !t.IsZero() {
		timer := time.NewTimer(time.Until(t))
		defer timer.Stop()
		fire = timer.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-fire:
	case <-changed:
	}
	return true
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
