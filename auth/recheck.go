package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/cache"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/verified"
)

// askAgain asks the introspection endpoint again about the token of a connected client that was
// admitted by introspection (reintrospection_interval). revoked is set only on a definitive answer: the
// IdP says the token is inactive, expired or refused. An IdP that fails, is misconfigured or sits
// behind an open circuit breaker gives no verdict: revoked is false and reason says why, since an
// outage of the IdP must not disconnect a fleet. reason is "" while the token is still active, and
// never holds the token.
//
// The cache of verified tokens is not read, since the point is to see a revocation, nor refreshed.
// A refusal replaces the token's entry, if any, so that a client disconnected for it cannot come back
// with the same token from the cache: it is remembered for negative_cache_ttl like any refusal.
// Requests in flight for the same token are not shared: their answer may predate the revocation.
func (e *Engine) askAgain(ctx context.Context, token string) (revoked bool, reason string) {
	if e.v.intro == nil {
		return false, "no introspection_endpoint"
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.Timeout)
		defer cancel()
	}
	_, err := e.v.intro.Verify(ctx, token)
	switch {
	case err == nil:
		return false, ""
	case invalid(err) && !errors.Is(err, introspect.ErrRequestRefused):
		e.v.refused(cache.KeyOf(token), err)
		return true, boundedReason(err)
	}
	// Also a 4xx instead of an answer: a proxy or firewall in front of the IdP must not kick a fleet.
	return false, boundedReason(err)
}

// refused records that the IdP refused the token of k, replacing what the cache held of it.
func (v *verifier) refused(k cache.Key, err error) {
	if v.negTTL > 0 {
		v.record(k, verified.Token{}, err)
		return
	}
	v.cache.Delete(k)
}

// maxRecheckers is how many re-checks of connected clients talk to the IdP at once. They have workers
// of their own, apart from the delayed checks' (maxInFlight), so that re-checking a fleet never keeps a
// connecting client waiting for a worker. At 20 ms per request, 8 workers serve 400 requests a second:
// 10 000 clients with reintrospection_interval 60 need about 167. maxRecheckQueue bounds the checks
// waiting for them; a queue that is full refuses new ones (StartRecheck returns false) and the caller
// tries again an interval later. A queued check holds its token string, which its session holds anyway.
const (
	maxRecheckers   = 8
	maxRecheckQueue = 4096
)

// Rechecked is the outcome of a background re-check (StartRecheck), to be collected on the broker
// thread. Ref is the caller's, handed back as it was given.
type Rechecked struct {
	Ref     uint64
	Revoked bool
	Reason  string
}

// rechecks runs re-checks off the broker thread and queues their outcomes until it collects them.
type rechecks struct {
	jobs    chan recheckJob
	workers sync.Once
	done    outbox[Rechecked]
}

type recheckJob struct {
	ref   uint64
	token string
}

// StartRecheck re-checks token in the background (see askAgain) and queues the outcome for Rechecked,
// under ref, within the configured timeout; the wake-up set with OnCompletion is called then. It never
// blocks: it returns false, and queues nothing, when maxRecheckQueue checks already wait.
func (e *Engine) StartRecheck(ref uint64, token string) bool {
	r := &e.rechecks
	r.workers.Do(func() {
		for range maxRecheckers {
			go e.recheckWork()
		}
	})
	select {
	case r.jobs <- recheckJob{ref: ref, token: token}:
		return true
	default:
		return false
	}
}

func (e *Engine) recheckWork() {
	for {
		select {
		case <-e.async.ctx.Done():
			return
		case j := <-e.rechecks.jobs:
			e.recheck(j)
		}
	}
}

// recheck runs one job and queues its outcome, whatever happens: a panic gives no verdict.
func (e *Engine) recheck(j recheckJob) {
	out := Rechecked{Ref: j.ref}
	defer func() {
		if r := recover(); r != nil {
			out = Rechecked{Ref: j.ref, Reason: "internal error"}
			e.log.Log(LevelError, fmt.Sprintf("internal error re-checking a token: %v", r))
		}
		e.rechecks.done.put(out)
		if n := e.async.notify; n != nil {
			n()
		}
	}()
	out.Revoked, out.Reason = e.askAgain(e.async.ctx, j.token)
}

// Rechecked moves the outcomes of finished re-checks into dst and returns it. Broker thread, at each tick.
func (e *Engine) Rechecked(dst []Rechecked) []Rechecked { return e.rechecks.done.drain(dst) }
