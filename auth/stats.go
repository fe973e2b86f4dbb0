package auth

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/introspect"
)

// Reason is why the engine decided as it did, in a small fixed vocabulary for metrics. The log line
// says the rest; a Reason never carries anything a client or the IdP sent.
type Reason uint8

const (
	ReasonValid               Reason = iota // the token is valid: the only reason to allow
	ReasonNoToken                           // an empty password
	ReasonMalformed                         // not an access token: too long, or a byte outside printable ASCII
	ReasonTokenRefused                      // the IdP or the local JWT check refused the token
	ReasonIdPUnavailable                    // no verdict: the IdP failed, or its keys could not be fetched
	ReasonBreakerOpen                       // no verdict: the circuit breaker is open
	ReasonMisconfigured                     // no verdict: the IdP refuses the broker's own credentials or endpoint
	ReasonOverloaded                        // no verdict: too many checks already wait for the IdP
	ReasonUsernameValidation                // username_validation_template refused the username
	ReasonUsernameReplacement               // username_replacement_template could not make a username
	ReasonACLClaim                          // the token's ACL claim is malformed
	ReasonInternalError                     // the check panicked
	numReasons
)

var reasonNames = [numReasons]string{"valid", "no_token", "malformed", "token_refused", "idp_unavailable",
	"breaker_open", "misconfigured", "overloaded", "username_validation", "username_replacement", "acl_claim",
	"internal_error"}

func (r Reason) String() string { return reasonNames[r] }

// noVerdict classifies an error that gave no verdict on the token.
func noVerdict(err error) Reason {
	switch {
	case errors.Is(err, errBreakerOpen):
		return ReasonBreakerOpen
	case errors.Is(err, introspect.ErrMisconfigured):
		return ReasonMisconfigured
	}
	return ReasonIdPUnavailable
}

// lookup is how far a decision got with the cache: refused before the cache was asked, answered by
// it, or not held by it. unanswered is FromMemory's "the IdP must be asked", which is not a decision.
type lookup uint8

const (
	unread lookup = iota
	hit
	missed
	unanswered
)

// IdPRequest is a kind of request to the identity provider.
type IdPRequest uint8

const (
	RequestIntrospection IdPRequest = iota // RFC 7662 introspection, of a connecting client's token or a re-check
	RequestKeySet                          // a fetch of the issuer's JWK set (with discovery the first time)
	numRequests
)

var requestNames = [numRequests]string{"introspection", "jwks"}

func (r IdPRequest) String() string { return requestNames[r] }

// Outcome is how a request to the identity provider ended, in the classes introspect and jwt already
// sort their errors into.
type Outcome uint8

const (
	OutcomeOK             Outcome = iota // an answer: the token's claims, or the keys
	OutcomeTokenRefused                  // an answer refusing the token: inactive, expired, or a 4xx for it
	OutcomeIdPUnavailable                // a timeout, a refused connection, a 5xx, garbage
	OutcomeMisconfigured                 // the broker's own credentials or endpoint refused
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "token_refused", "idp_unavailable", "misconfigured"}

func (o Outcome) String() string { return outcomeNames[o] }

// outcomeOf classifies a verifier's answer.
func outcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, introspect.ErrMisconfigured):
		return OutcomeMisconfigured
	case invalid(err):
		return OutcomeTokenRefused
	}
	return OutcomeIdPUnavailable
}

// IdPBuckets are the upper bounds of the request duration histogram: Prometheus's default buckets,
// which span a local IdP's milliseconds to the longest timeout worth having on Mosquitto 2.0.
var IdPBuckets = [...]time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second}

// histogram counts durations into IdPBuckets, and one more bucket for longer ones.
type histogram struct {
	counts [len(IdPBuckets) + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(IdPBuckets) && d > IdPBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// BreakerState is the circuit breaker's state.
type BreakerState uint8

const (
	BreakerClosed   BreakerState = iota // requests go to the IdP
	BreakerOpen                         // new tokens are refused at once, for circuit_breaker_cooldown
	BreakerHalfOpen                     // one probe is out to the IdP
	numBreakerStates
)

var breakerNames = [numBreakerStates]string{"closed", "open", "half_open"}

func (s BreakerState) String() string { return breakerNames[s] }

// counters are what one engine counts for metrics. They are atomics, so that the broker thread pays an
// atomic add where it counts, and a scrape on another goroutine reads them without a lock.
type counters struct {
	// decisions by how far they got with the cache, result and reason: one add per decision, from
	// which the cache's hits and misses are summed.
	decisions [unanswered][Defer + 1][numReasons]atomic.Uint64
	// verdicts reached by a local JWT check and by introspection.
	jwtVerdicts, introspectionVerdicts atomic.Uint64
	idp                                [numRequests][numOutcomes]histogram
	breakerTransitions                 [numBreakerStates]atomic.Uint64 // by the state entered
	keysFetched                        atomic.Int64                    // unix nanoseconds of the last key set fetched; 0: none
}

// checkedJWT counts a local JWT check that reached a verdict: valid, or refused as invalid. A key not
// found or a fetch that failed is no verdict.
func (c *counters) checkedJWT(err error) {
	if err == nil || invalid(err) {
		c.jwtVerdicts.Add(1)
	}
}

func (c *counters) decided(l lookup, d Decision) {
	c.decisions[l][d.Result][d.reason].Add(1)
}

// keySetFetched records a key set fetch that took took and ended with err.
func (c *counters) keySetFetched(took time.Duration, err error) {
	if err == nil {
		c.keysFetched.Store(time.Now().UnixNano())
	}
	c.idp[RequestKeySet][outcomeOf(err)].observe(took)
}

// Stats is what an engine counted since it started. Each value is read on its own: a decision made
// while they are read may show in one and not yet in another.
type Stats struct {
	// Decisions are the engine's answers to CONNECTs (and MQTT 5 re-authentications, and 2.1's HTTP
	// API requests), by result and reason; only the pairs that occurred.
	Decisions []DecisionCount
	// CacheHits are decisions on a verdict the cache held; CacheMisses are decisions on a token it did
	// not hold. Decisions refused before the cache is asked (no token, too long, a username that fails
	// a template without placeholders) are neither.
	CacheHits, CacheMisses uint64
	// CacheEntries is the number of verdicts the cache holds, refusals included.
	CacheEntries int
	// JWTVerdicts and IntrospectionVerdicts are verdicts reached by a local JWT check and by an
	// introspection answer. A request several clients share is one verdict.
	JWTVerdicts, IntrospectionVerdicts uint64
	// IdP are the requests to the identity provider that ended, by kind and outcome; only those that
	// occurred.
	IdP []IdPRequests
	// Breaker is the circuit breaker's state; HasBreaker is false without introspection, which is
	// the only thing behind it.
	HasBreaker         bool
	Breaker            BreakerState
	BreakerTransitions [numBreakerStates]uint64 // by the state entered
	// KeysFetched is when the issuer's key set held now was fetched; zero before the first fetch, and
	// without jwt_verification.
	KeysFetched time.Time
	// DelayedQueued is the number of delayed checks (Mosquitto 2.1) waiting for a worker.
	DelayedQueued int
}

// DecisionCount is how many decisions had one result and reason.
type DecisionCount struct {
	Result Result
	Reason Reason
	N      uint64
}

// IdPRequests are the requests of one kind and outcome: how many took at most each of IdPBuckets
// (Counts[i]; the last is every one), and how long they took together.
type IdPRequests struct {
	Request IdPRequest
	Outcome Outcome
	Counts  [len(IdPBuckets) + 1]uint64
	Sum     time.Duration
}

// Stats reads what the engine counted. It may be called from any goroutine.
func (e *Engine) Stats() Stats {
	c := e.stats
	s := Stats{
		CacheEntries:          e.v.cache.Len(),
		JWTVerdicts:           c.jwtVerdicts.Load(),
		IntrospectionVerdicts: c.introspectionVerdicts.Load(),
		DelayedQueued:         len(e.async.jobs),
	}
	for r := range Defer + 1 {
		for reason := range numReasons {
			var n uint64
			for l := range unanswered {
				v := c.decisions[l][r][reason].Load()
				n += v
				switch l {
				case hit:
					s.CacheHits += v
				case missed:
					s.CacheMisses += v
				}
			}
			if n > 0 {
				s.Decisions = append(s.Decisions, DecisionCount{Result: r, Reason: reason, N: n})
			}
		}
	}
	for req := range numRequests {
		for o := range numOutcomes {
			h := &c.idp[req][o]
			r := IdPRequests{Request: req, Outcome: o, Sum: time.Duration(h.sum.Load())}
			var n uint64
			for i := range h.counts {
				n += h.counts[i].Load()
				r.Counts[i] = n
			}
			if n > 0 {
				s.IdP = append(s.IdP, r)
			}
		}
	}
	if b := e.breaker; b != nil {
		s.HasBreaker, s.Breaker = true, b.current()
		for st := range numBreakerStates {
			s.BreakerTransitions[st] = c.breakerTransitions[st].Load()
		}
	}
	if t := c.keysFetched.Load(); t != 0 {
		s.KeysFetched = time.Unix(0, t)
	}
	return s
}
