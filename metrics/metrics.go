// Package metrics shows what one plugin instance counts (auth.Stats and sessions.Stats) in two ways:
// to Prometheus, at /metrics on the address of metrics_listen, and as retained messages under
// $SYS/broker/plugin/oauth2/, the broker's own convention (see SysTree). Both read the same snapshot
// through one table, so a name and its topic cannot drift apart.
//
// The counting itself is done by the core with atomics; this package only reads them, when scraped or
// when a publication is due, so metrics cost the broker thread nothing per CONNECT or ACL check. Each
// instance has its own registry and listener: the .so may be loaded once per listener with different
// options, and one instance's metrics must never show another's.
//
// Labels come from fixed vocabularies (results, reason classes, sources, outcomes, states): never a
// token, a username, a client id or anything else a client or the IdP sent.
package metrics

import (
	"strconv"
	"time"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/sessions"
)

// Snapshot is what one plugin instance counted, read at At.
type Snapshot struct {
	Engine   auth.Stats
	Sessions sessions.Stats
	At       time.Time
}

type kind uint8

const (
	counter kind = iota
	gauge
	histogram
	// state is a gauge per state, 1 for the current one and 0 for the others; in $SYS it is one topic
	// whose payload is the current state's name.
	state
)

// metric is one name, as Prometheus and $SYS show it.
type metric struct {
	name   string // after "mosquitto_oauth2_"
	help   string
	kind   kind
	labels []string
	// topic is where it goes under the instance's $SYS prefix; each label's value adds a level.
	topic string
}

// namePrefix starts every metric's name.
const namePrefix = "mosquitto_oauth2_"

var (
	decisions = &metric{"decisions_total", "CONNECT decisions (and MQTT 5 re-authentications, and Mosquitto 2.1 HTTP API requests) by result and reason class.",
		counter, []string{"result", "reason"}, "decisions"}
	verifications = &metric{"verifications_total", "Verdicts on tokens by source: a cache hit, a local JWT check, an introspection answer.",
		counter, []string{"source"}, "verifications"}
	cacheMisses = &metric{"cache_misses_total", "CONNECT decisions on a token the cache did not hold.",
		counter, nil, "cache/misses"}
	cacheEntries = &metric{"cache_entries", "Verdicts the cache holds, refusals included.",
		gauge, nil, "cache/entries"}
	idpRequests = &metric{"idp_request_duration_seconds", "Requests to the identity provider (introspection, JWK set fetches) by outcome, and how long they took.",
		histogram, []string{"request", "outcome"}, "idp"}
	breakerState = &metric{"circuit_breaker_state", "The introspection circuit breaker's state: 1 for the current one.",
		state, []string{"state"}, "circuit_breaker/state"}
	breakerTransitions = &metric{"circuit_breaker_transitions_total", "Changes of the circuit breaker's state, by the state entered.",
		counter, []string{"to"}, "circuit_breaker/transitions"}
	jwksAge = &metric{"jwks_age_seconds", "Seconds since the issuer's JWK set held now was fetched.",
		gauge, nil, "jwks/age"}
	sessionCount = &metric{"sessions", "Admitted clients the plugin holds a lease for: online, and offline persistent sessions until their token's exp.",
		gauge, nil, "sessions"}
	leaseEvents = &metric{"lease_events_total", "Lease events by kind: ended at the token's exp, revoked at the IdP (re-introspection), renewed by MQTT 5 re-authentication.",
		counter, []string{"kind"}, "lease_events"}
	delayedQueued = &metric{"delayed_checks_queued", "Delayed checks (Mosquitto 2.1) waiting for a worker to ask the identity provider.",
		gauge, nil, "delayed_checks/queued"}

	all = []*metric{decisions, verifications, cacheMisses, cacheEntries, idpRequests, breakerState, breakerTransitions,
		jwksAge, sessionCount, leaseEvents, delayedQueued}
)

// sample is one series of one snapshot.
type sample struct {
	metric *metric
	labels []string
	value  float64
	idp    *auth.IdPRequests // histogram only
}

// samples lists the series of s. Series with fixed label values are always there; decisions and IdP
// requests only for the label pairs that occurred (as a CounterVec shows them), since most pairs of
// result and reason never do.
func samples(s Snapshot) []sample {
	e := s.Engine
	out := make([]sample, 0, 24+len(e.Decisions)+len(e.IdP))
	add := func(m *metric, v float64, labels ...string) {
		out = append(out, sample{metric: m, labels: labels, value: v})
	}
	for _, d := range e.Decisions {
		add(decisions, float64(d.N), d.Result.String(), d.Reason.String())
	}
	add(verifications, float64(e.CacheHits), "cache")
	add(verifications, float64(e.JWTVerdicts), "jwt")
	add(verifications, float64(e.IntrospectionVerdicts), "introspection")
	add(cacheMisses, float64(e.CacheMisses))
	add(cacheEntries, float64(e.CacheEntries))
	for i := range e.IdP {
		r := &e.IdP[i]
		out = append(out, sample{metric: idpRequests, labels: []string{r.Request.String(), r.Outcome.String()}, idp: r})
	}
	if e.HasBreaker {
		for st := range auth.BreakerState(len(e.BreakerTransitions)) {
			v := 0.0
			if st == e.Breaker {
				v = 1
			}
			add(breakerState, v, st.String())
		}
		for st, n := range e.BreakerTransitions {
			add(breakerTransitions, float64(n), auth.BreakerState(st).String())
		}
	}
	if !e.KeysFetched.IsZero() {
		add(jwksAge, s.At.Sub(e.KeysFetched).Seconds())
	}
	add(sessionCount, float64(s.Sessions.Sessions))
	add(leaseEvents, float64(s.Sessions.Expired), "expired")
	add(leaseEvents, float64(s.Sessions.Revoked), "revoked")
	add(leaseEvents, float64(s.Sessions.Reauthenticated), "reauthenticated")
	add(delayedQueued, float64(e.DelayedQueued))
	return out
}

// topicValue is one $SYS message: a topic under the instance's prefix, and its payload.
type topicValue struct {
	topic, payload string
}

// sys turns samples into $SYS messages: whole numbers as the broker writes its own, seconds of IdP
// time with three decimals, and a state as its name.
func sys(samples []sample) []topicValue {
	out := make([]topicValue, 0, len(samples)+len(samples)/2)
	for _, s := range samples {
		m := s.metric
		topic := m.topic
		switch m.kind {
		case state:
			if s.value == 1 {
				out = append(out, topicValue{topic, s.labels[0]})
			}
			continue
		}
		for _, l := range s.labels {
			topic += "/" + l
		}
		if m.kind == histogram {
			out = append(out,
				topicValue{topic + "/requests", strconv.FormatUint(s.idp.Counts[len(s.idp.Counts)-1], 10)},
				topicValue{topic + "/seconds", strconv.FormatFloat(s.idp.Sum.Seconds(), 'f', 3, 64)})
			continue
		}
		out = append(out, topicValue{topic, strconv.FormatInt(int64(s.value), 10)})
	}
	return out
}
