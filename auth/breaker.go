package auth

import (
	"fmt"
	"sync"
	"time"
)

// breaker stops asking an identity provider that keeps failing. On Mosquitto 2.0 every check holds the
// broker thread for up to the timeout, so a dead IdP would otherwise cost every new client that long.
// After `threshold` failures in a row it opens: checks fail at once for `cooldown`. Then one check is
// let through as a probe; its success closes the breaker, its failure opens it again. Cached tokens are
// answered before the breaker is consulted, so they keep working while it is open.
type breaker struct {
	threshold int // 0: never open
	cooldown  time.Duration
	now       func() time.Time
	log       Logger
	stats     *counters

	mu       sync.Mutex
	failures int
	state    BreakerState
	openedAt time.Time
}

// enter moves the breaker to state st. Its lock is held.
func (b *breaker) enter(st BreakerState) {
	b.state, b.openedAt = st, b.now()
	b.stats.breakerTransitions[st].Add(1)
}

// current is the breaker's state now.
func (b *breaker) current() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// allow says whether a request may go to the IdP now.
func (b *breaker) allow() bool {
	if b.threshold == 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerOpen:
		if b.now().Sub(b.openedAt) < b.cooldown {
			return false
		}
		b.enter(BreakerHalfOpen)
		b.log.Log(LevelNotice, "circuit breaker half-open: probing the identity provider")
		return true
	case BreakerHalfOpen:
		// A probe that never reported (its caller gave up) must not keep the breaker shut for good.
		if b.now().Sub(b.openedAt) < b.cooldown {
			return false
		}
		b.openedAt = b.now()
		return true
	}
	return true
}

// report records the outcome of a request that allow let through. ok means the IdP answered (a
// refusal of the token is an answer).
func (b *breaker) report(ok bool) {
	if b.threshold == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		if b.state != BreakerClosed {
			b.log.Log(LevelNotice, "circuit breaker closed: the identity provider answers again")
			b.enter(BreakerClosed)
		}
		b.failures = 0
		return
	}
	b.failures++
	switch {
	case b.state == BreakerHalfOpen:
		b.enter(BreakerOpen)
		b.log.Log(LevelWarning, fmt.Sprintf("circuit breaker open again: the probe failed; next probe in %v", b.cooldown))
	case b.state == BreakerClosed && b.failures >= b.threshold:
		b.enter(BreakerOpen)
		b.log.Log(LevelWarning, fmt.Sprintf("circuit breaker open after %d identity provider failures in a row: "+
			"new tokens get token_verification_error for %v", b.failures, b.cooldown))
	}
}
