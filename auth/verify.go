package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/cache"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
)

// verdict is what the engine remembers about a token: whether it is valid and, when it is, the
// usernames its claims render to. Rendering once at verification time means a cache hit needs neither
// the claims nor a JSON parse, and an entry stays small (100 000 of them fit in a few tens of MiB).
type verdict struct {
	valid     bool
	reason    string // why the token was refused
	validName string // username_validation_template rendered, when it has placeholders
	validErr  string // why it could not be rendered
	newName   string // username_replacement_template rendered
	renameErr string // why it could not be rendered or was refused
}

// errBreakerOpen is answered without asking the IdP while the circuit breaker is open.
var errBreakerOpen = fmt.Errorf("%w: circuit breaker open after repeated failures", introspect.ErrIdPUnavailable)

// call is one verification in flight; concurrent checks of the same token wait for it instead of
// asking the IdP again.
type call struct {
	done chan struct{}
	v    verdict
	err  error
}

// verifier wraps the token check with the cache, request sharing and the circuit breaker.
type verifier struct {
	check    Verifier
	cache    *cache.Cache[verdict]
	ttl      time.Duration
	negTTL   time.Duration
	breaker  *breaker
	now      func() time.Time
	render   func(claims []byte) verdict
	mu       sync.Mutex
	inflight map[cache.Key]*call
}

// cached answers from memory only.
func (v *verifier) cached(k cache.Key) (verdict, bool) { return v.cache.Get(k) }

// verify returns the verdict on token, asking the IdP at most once however many callers want the same
// token at the same time. An error means the IdP gave no verdict (down, slow, broken, breaker open);
// such errors are never cached.
func (v *verifier) verify(ctx context.Context, k cache.Key, token string) (verdict, error) {
	v.mu.Lock()
	if c, ok := v.inflight[k]; ok {
		v.mu.Unlock()
		select {
		case <-c.done:
			return c.v, c.err
		case <-ctx.Done():
			return verdict{}, fmt.Errorf("%w: %v", introspect.ErrIdPUnavailable, ctx.Err())
		}
	}
	c := &call{done: make(chan struct{}), err: errors.New("verification did not finish")}
	v.inflight[k] = c
	v.mu.Unlock()
	// Deferred so that a panic below still releases the callers waiting for this call.
	defer func() {
		v.mu.Lock()
		delete(v.inflight, k)
		v.mu.Unlock()
		close(c.done)
	}()
	c.v, c.err = v.ask(ctx, k, token)
	return c.v, c.err
}

func (v *verifier) ask(ctx context.Context, k cache.Key, token string) (verdict, error) {
	if !v.breaker.allow() {
		return verdict{}, errBreakerOpen
	}
	res, err := v.check.Introspect(ctx, token)
	// A refusal is an answer: the IdP is healthy.
	v.breaker.report(err == nil || errors.Is(err, introspect.ErrTokenInvalid))
	now := v.now()
	if err != nil {
		if !errors.Is(err, introspect.ErrTokenInvalid) {
			return verdict{}, err
		}
		vd := verdict{reason: err.Error()}
		if v.negTTL > 0 {
			v.cache.Put(k, vd, now.Add(v.negTTL))
		}
		return vd, nil
	}
	vd := v.render(res.Claims)
	vd.valid = true
	if v.ttl > 0 {
		until := now.Add(v.ttl)
		if !res.Expiry.IsZero() && res.Expiry.Before(until) {
			until = res.Expiry
		}
		v.cache.Put(k, vd, until)
	}
	return vd, nil
}
