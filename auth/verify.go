package auth

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/cache"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/jwt"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

// verdict is what the engine remembers about a token: whether it is valid and, when it is, the
// usernames its claims render to. Rendering once at verification time means a cache hit needs no JSON
// parse, and without ACL options an entry stays small (100 000 of them fit in a few tens of MiB). ACL
// options keep the claims as well, since each CONNECT renders its grants from them: then an entry
// costs about the size of the token's claims more.
type verdict struct {
	valid     bool
	reason    string    // why the token was refused
	validName string    // username_validation_template rendered, when it has placeholders
	validErr  string    // why it could not be rendered
	newName   string    // username_replacement_template rendered
	renameErr string    // why it could not be rendered or was refused
	claims    []byte    // the token's claims, kept only for ACL rules
	expiry    time.Time // the token's exp; zero when it has none
	subject   string    // the token's sub, kept only with enhanced_auth_method
	// introspected: the IdP vouched for the token by introspection, so it can ask again later
	// (reintrospection_interval); a JWT verified locally is only held to its exp.
	introspected bool
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

// verifier is the cache and request sharing around one verified.Verifier, source: a router that sends
// a JWT of jwt_issuer to the local check and anything else to introspection behind the circuit
// breaker. Neither layer knows which check answered, nor the checks that they are cached.
type verifier struct {
	source verified.Verifier
	intro  verified.Verifier // introspection behind the breaker, for re-checks; nil without introspection_endpoint
	jwt    *jwt.Verifier     // for checks with the keys held, without I/O; nil unless jwt_verification
	cache  *cache.Cache[verdict]
	ttl    time.Duration
	negTTL time.Duration
	now    func() time.Time
	render func(verified.Token) verdict
	stats  *counters

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
	res, err := v.source.Verify(ctx, token)
	return v.record(k, res, err)
}

// router checks a token where it belongs: a JWT of the configured issuer locally, anything else by
// introspection. Only introspection sits behind the circuit breaker: local checks keep working while it
// is open, and their success says nothing about the introspection endpoint.
//
// A JWT it sends to introspection is logged with the reason: at info level when jwt_verification is
// on, since the operator then expects JWTs to be checked here and an iss that differs from jwt_issuer
// by a trailing slash, or a v1 and a v2 issuer (Entra ID), is the common cause; at debug level when it
// is off. When introspection refuses such a JWT, or there is none, the refusal carries the reason too.
// This costs nothing more than routing: the token's payload is decoded once for the route, which says
// why.
type router struct {
	jwt   *jwt.Verifier     // nil unless jwt_verification
	intro verified.Verifier // nil without introspection_endpoint
	log   Logger
	stats *counters
}

func (r router) Verify(ctx context.Context, token string) (verified.Token, error) {
	why, level := "", LevelInfo // why a JWT is not verified here; "" for any other token
	if r.jwt != nil {
		route := r.jwt.Route(token)
		if route.Local() {
			res, err := r.jwt.Verify(ctx, token)
			r.stats.checkedJWT(err)
			return res, err
		}
		if r.intro == nil {
			return verified.Token{}, fmt.Errorf("%w: %s, and no introspection_endpoint is set", introspect.ErrTokenInvalid, route)
		}
		if route.JWS() {
			why = route.String()
		}
	} else if jwt.LooksLikeJWS(token) {
		why, level = "jwt_verification is false", LevelDebug
	}
	if why != "" {
		r.log.Log(level, "a JWT goes to introspection, not local verification: "+why)
	}
	res, err := r.intro.Verify(ctx, token)
	if r.jwt != nil && why != "" && invalid(err) {
		err = fmt.Errorf("%w (a JWT sent to introspection: %s)", err, why)
	}
	return res, err
}

// guarded is a verifier behind the circuit breaker: it answers at once while the breaker is open, and
// tells the breaker and the request counts how each request went.
type guarded struct {
	next    verified.Verifier
	breaker *breaker
	log     Logger
	stats   *counters
	// misconfigured is set once the IdP refused the broker's credentials or endpoint, so that this is
	// logged loudly once, not at every CONNECT; an answer from the IdP clears it.
	misconfigured atomic.Bool
}

func (g *guarded) Verify(ctx context.Context, token string) (verified.Token, error) {
	if !g.breaker.allow() {
		return verified.Token{}, errBreakerOpen
	}
	start := time.Now()
	res, err := g.next.Verify(ctx, token)
	outcome := outcomeOf(err)
	g.stats.idp[RequestIntrospection][outcome].observe(time.Since(start))
	switch outcome {
	case OutcomeMisconfigured:
		// Not the IdP's health: the breaker would only hide the cause behind "breaker open".
		if g.misconfigured.CompareAndSwap(false, true) {
			g.log.Log(LevelError, "the identity provider refuses the broker's own requests ("+err.Error()+
				"): every token that needs introspection is refused until this is fixed")
		}
	case OutcomeOK, OutcomeTokenRefused:
		// A refusal is an answer: the IdP is healthy.
		g.stats.introspectionVerdicts.Add(1)
		g.breaker.report(true)
		g.misconfigured.Store(false)
	default:
		g.breaker.report(false)
	}
	return res, err
}

// held verifies a JWT of the configured issuer with the keys held now, without I/O, and records the
// verdict. ok is false for any other token and for a JWT whose key must be fetched first.
func (v *verifier) held(k cache.Key, token string) (vd verdict, ok bool) {
	if v.jwt == nil || !v.jwt.Route(token).Local() {
		return verdict{}, false
	}
	r, ok, err := v.jwt.VerifyHeld(token)
	if !ok {
		return verdict{}, false
	}
	v.stats.checkedJWT(err)
	vd, err = v.record(k, r, err)
	return vd, err == nil
}

// sweepEvery is how often the cache is swept of expired entries, and sweepRound how many entries one
// round examines under the lock (tens of microseconds): a broker thread waiting for the cache waits at
// most one round. A full pass over 100 000 entries costs about a millisecond of CPU.
const (
	sweepEvery = 5 * time.Second
	sweepRound = 4096
	freeAfter  = 4096 // entries swept that make it worth returning memory to the system (about 2 MiB)
)

// sweep reclaims expired cache entries until ctx ends, so that the refusals of a junk flood go after
// negative_cache_ttl even if nobody sends those tokens again.
func (v *verifier) sweep(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	swept := 0 // entries removed since memory was last given back
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for {
				n, done := v.cache.Sweep(sweepRound)
				swept += n
				if done {
					break
				}
				runtime.Gosched()
			}
			if swept >= freeAfter {
				// A flood's refusals went: give their memory back to the system now rather than over
				// the next minutes, so that the broker's RSS falls back as well as the Go heap.
				swept = 0
				debug.FreeOSMemory()
			}
		}
	}
}

// invalid reports whether err refuses the token itself, as opposed to the IdP failing to answer.
func invalid(err error) bool {
	return errors.Is(err, verified.ErrInvalid)
}

// record turns a check's outcome into a verdict and caches it: a valid token until the earlier of its
// exp and cache_ttl, a refusal for negative_cache_ttl, an IdP failure never.
func (v *verifier) record(k cache.Key, res verified.Token, err error) (verdict, error) {
	now := v.now()
	if err != nil {
		if !invalid(err) {
			return verdict{}, err
		}
		if v.negTTL > 0 {
			v.cache.Put(k, verdict{reason: boundedReason(err)}, now.Add(v.negTTL))
		}
		// The refusal logged now may name more than the one kept (the token's iss next to jwt_issuer,
		// say): only the cache is open to a flood, and a log line has a bound of its own.
		return verdict{reason: cutReason(err.Error(), logtext.MaxLine)}, nil
	}
	vd := v.render(res)
	vd.introspected = res.Source == verified.Introspection
	vd.valid, vd.expiry = true, res.Expiry
	if v.ttl > 0 {
		until := now.Add(v.ttl)
		if !res.Expiry.IsZero() && res.Expiry.Before(until) {
			until = res.Expiry
		}
		v.cache.Put(k, vd, until)
	}
	return vd, nil
}

// maxReason bounds the refusal reason a negative-cache entry keeps. The verifiers build their reasons
// from a fixed vocabulary plus a short detail; this cut keeps a refused token's entry small even if a
// reason ever quotes more than it should, since an attacker can fill the cache with refusals.
const maxReason = 160

func boundedReason(err error) string { return cutReason(err.Error(), maxReason) }

// cutReason cuts r to at most max bytes, and says so.
func cutReason(r string, max int) string {
	if len(r) <= max {
		return r
	}
	return strings.ToValidUTF8(r[:max], "") + "…"
}
