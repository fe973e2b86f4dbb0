package auth

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
)

// maxInFlight is the number of workers that talk to the IdP for delayed checks: the IdP is never hit
// by an unbounded burst. They live as long as the engine, so a check costs no new goroutine and no
// stack growth (the HTTP client's stack is deep). More waiting clients queue, within their own
// deadline, up to maxQueued; beyond that a check is refused at once.
//
// maxQueuedBytes bounds the client-sent bytes (token, client id, username) that queued checks hold,
// whatever their count: 16384 clients with honest 1 KiB tokens fit four times over, and a flood of
// long client ids and usernames (up to 64 KiB each in MQTT) cannot make the queue grow past it.
const (
	maxInFlight    = 64
	maxQueued      = 1 << 14
	maxQueuedBytes = 64 << 20
)

// job is a delayed check waiting for a worker.
type job struct {
	req      Request
	deadline time.Time
}

// Completion is the answer to a delayed check, to be handed to the broker on its own thread.
type Completion struct {
	ClientID string
	Attempt  uint64 // the Request's, so the plugin can tell it from a later connection with the same id
	Decision Decision
}

// async runs checks off the broker thread (Mosquitto 2.1's delayed basic auth) and queues their
// answers until the broker thread collects them.
type async struct {
	timeout time.Duration
	jobs    chan job
	workers sync.Once
	ctx     context.Context
	stop    context.CancelFunc
	// queuedBytes is what the queued jobs hold of their clients' input (see queuedSize).
	queuedBytes atomic.Int64

	done outbox[Completion]
	// notify, when set, is called after each answer is queued, from the goroutine that produced it.
	notify func()
}

// outbox holds what goroutines produced for the broker thread until it collects it at a tick.
type outbox[T any] struct {
	mu    sync.Mutex
	items []T
}

func (o *outbox[T]) put(v T) {
	o.mu.Lock()
	o.items = append(o.items, v)
	o.mu.Unlock()
}

// drain moves what was put into dst and returns it.
func (o *outbox[T]) drain(dst []T) []T {
	o.mu.Lock()
	defer o.mu.Unlock()
	dst = append(dst, o.items...)
	clear(o.items)
	o.items = o.items[:0]
	return dst
}

// OnCompletion sets a function called (from a goroutine) each time a background check or re-check has
// queued its answer, so the plugin can wake the broker to collect it. Set it before the first Start or
// StartRecheck.
func (e *Engine) OnCompletion(f func()) { e.async.notify = f }

func (a *async) init(timeout time.Duration) {
	a.timeout = timeout
	a.jobs = make(chan job, maxQueued)
	a.ctx, a.stop = context.WithCancel(context.Background())
}

// CanDelay says whether every answer a check can reach after asking the IdP is allow or deny. A
// delayed check can only be completed with success or failure: a defer to password_file or the next
// plugin is no longer possible once the broker has been told to wait, so with a defer policy after
// verification the check must stay synchronous.
func CanDelay(c *config.Config) bool {
	return c.TokenVerificationError == config.Deny &&
		(!c.UsernameValidation || !c.ValidationTemplate.HasPlaceholders() || c.ValidationError == config.Deny) &&
		(!c.UsernameReplacement || c.ReplacementError == config.Deny)
}

// Mode says how checks run, for the start-up line: delayed when the broker offers delayed basic auth
// (Mosquitto 2.1) and CanDelay allows it, else synchronously, and why.
func Mode(delayAvailable, delay bool) string {
	switch {
	case !delayAvailable:
		return "synchronous checks (this broker has no delayed basic auth)"
	case !delay:
		return "synchronous checks (a defer policy applies after verification, and a delayed check cannot defer)"
	}
	return "delayed checks on cache misses"
}

// Start checks req in the background. Its answer appears in Completed within the configured timeout
// (a deny if the IdP did not answer in time).
func (e *Engine) Start(req Request) {
	a := &e.async
	a.workers.Do(func() {
		for range maxInFlight {
			go e.work()
		}
	})
	size := queuedSize(req)
	if a.queuedBytes.Add(size) <= maxQueuedBytes {
		select {
		case a.jobs <- job{req: req, deadline: time.Now().Add(a.timeout)}:
			return
		default:
		}
	}
	a.queuedBytes.Add(-size)
	d := e.refuseAt(LevelWarning, req, config.Deny, ReasonOverloaded, "token verification failed: too many checks waiting for the identity provider")
	e.stats.decided(missed, d)
	a.finish(req, d)
}

// queuedSize is what a queued check holds of its client's input.
func queuedSize(req Request) int64 {
	return int64(len(req.Password) + len(req.ClientID) + len(req.Username) + len(req.Address))
}

// work runs queued checks until Close. Checks still queued then are not answered: the broker is
// shutting down.
func (e *Engine) work() {
	a := &e.async
	for {
		select {
		case <-a.ctx.Done():
			return
		case j := <-a.jobs:
			a.queuedBytes.Add(-queuedSize(j.req))
			e.run(j)
		}
	}
}

// run does one delayed check and hands its answer over, whatever happens.
func (e *Engine) run(j job) {
	a := &e.async
	d := Decision{Result: Deny}
	defer func() {
		// A panic here would end the broker process: refuse the client instead, and still hand the
		// answer over so the broker does not wait for it.
		if r := recover(); r != nil {
			d = Decision{Result: Deny, reason: ReasonInternalError}
			e.stats.decided(missed, d)
			e.log.Log(LevelError, fmt.Sprintf("internal error checking client %s: %v", logtext.Quote(j.req.ClientID), r))
		}
		a.finish(j.req, d)
	}()
	ctx, cancel := context.WithDeadline(a.ctx, j.deadline)
	defer cancel()
	if ctx.Err() != nil {
		d = e.refuseAt(LevelWarning, j.req, config.Deny, ReasonOverloaded, "token verification failed: no free slot to ask the identity provider in time")
		e.stats.decided(missed, d)
		return
	}
	d = e.Authenticate(ctx, j.req)
}

// finish queues the answer to req and wakes the plugin.
func (a *async) finish(req Request, d Decision) {
	a.done.put(Completion{ClientID: req.ClientID, Attempt: req.Attempt, Decision: d})
	if a.notify != nil {
		a.notify()
	}
}

// Completed moves the finished checks into dst and returns it. The broker thread calls it on every tick.
func (e *Engine) Completed(dst []Completion) []Completion { return e.async.done.drain(dst) }

// Close cancels checks in flight (their clients get a deny if anyone still collects them) and stops the
// JWT key refresh.
func (e *Engine) Close() {
	e.async.stop()
	if e.v.jwt != nil {
		e.v.jwt.Close()
	}
}

// RenamesClients says whether accepted clients get a username from username_replacement_template.
func (e *Engine) RenamesClients() bool { return e.cfg.UsernameReplacement }
