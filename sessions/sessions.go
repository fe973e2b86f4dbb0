// Package sessions keeps what the plugin knows of the clients it admitted, from CONNECT until they leave:
// their leases (a token is good until its exp, and the client is disconnected then), their topic rights,
// the delayed checks in flight on Mosquitto 2.1, and what each broker event means for them.
//
// It is the plugin's state machine. The plugin package turns each broker callback into one call here
// (BasicAuth, Connect, Disconnect, ACLCheck, Tick) and carries out what the machine asks of its Broker:
// set a username, kick a client, complete a delayed check. Everything here runs on the broker thread,
// so the machine takes no lock; the only other goroutine is its wake-up timer, which touches nothing
// but the Wake function it was given. Work that needs the network (delayed checks, re-checks of
// connected clients' tokens) runs on the engine's workers, and the machine collects the outcomes at Tick.
package sessions

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/cache"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
)

// Client is the broker's handle for one connection (its struct mosquitto pointer). It is opaque here:
// two events are about the same connection exactly when their Clients are equal, and the broker may
// reuse the address for a later connection once the first is gone.
type Client unsafe.Pointer

// Broker is what the machine asks of Mosquitto. The plugin implements it with the broker's functions;
// they may only be called on the broker thread, which is where the machine calls them.
type Broker interface {
	// SetUsername gives the client a new username ("" makes it anonymous) before any ACL check.
	SetUsername(c Client, name string) error
	// Kick disconnects the client with this id, without its Will.
	Kick(clientID string)
	// Complete answers a delayed check (Mosquitto 2.1); on allow the broker fires CONNECT from inside it.
	Complete(clientID string, allow bool)
	// FlushLog writes the log lines queued so far, so that a refusal's reason precedes its CONNACK.
	FlushLog()
}

// Core is the engine that turns tokens into decisions; *auth.Engine is the one in use.
type Core interface {
	FromMemory(req auth.Request) (auth.Decision, bool)
	Verify(ctx context.Context, req auth.Request) auth.Decision
	Start(req auth.Request)
	Completed(dst []auth.Completion) []auth.Completion
	Authorize(s *auth.Session, access acl.Access, topic string, qos byte, retain bool, now time.Time) auth.Result
	RenamesClients() bool
	AuthorizesTopics() bool
	ExtendedAuthToken(method string, data []byte) (token string, known bool, err error)
	// StartRecheck asks the IdP again about a connected client's token in the background; false when
	// it cannot take more now. Rechecked collects the outcomes, under the ref they were started with.
	StartRecheck(ref uint64, token string) bool
	Rechecked(dst []auth.Rechecked) []auth.Rechecked
}

// Options are the machine's settings for one plugin instance.
type Options struct {
	// Delay: checks that miss the cache run in the background and are completed in Tick (Mosquitto 2.1).
	Delay bool
	// DisconnectOnExpiry kicks each admitted client when its token expires (disconnect_on_expiry).
	DisconnectOnExpiry bool
	// Reintrospect is how often the token of an online client admitted by introspection is checked
	// again (reintrospection_interval); a refusal kicks the client. 0: never.
	Reintrospect time.Duration
	// Wake is called from the machine's timer goroutine when a lease falls due, so that the plugin makes
	// the broker call Tick soon.
	Wake func()
	Log  auth.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Answer is the machine's answer to a BASIC_AUTH.
type Answer int

const (
	Allow Answer = iota
	Deny
	Defer
	// Delayed: the check runs in the background; Tick completes it (Mosquitto 2.1).
	Delayed
)

// Conn is what the broker tells of a connection at BASIC_AUTH.
type Conn struct {
	Client Client
	// Registered: the client is already in the broker's table of connected clients (known on 2.1 only),
	// so this BASIC_AUTH is Mosquitto's re-check on SIGHUP.
	Registered bool
	// CleanSession: the session ends with the connection (MQTT 3.1.1 clean session, MQTT 5 clean start).
	CleanSession bool
}

// session is one admitted connection.
type session struct {
	client   Client
	clientID string
	token    cache.Key     // the token it was admitted with: a re-check with the same token is answered here
	rights   *auth.Session // its topic rights; nil without acl_* options
	online   bool          // false once the broker reported it disconnected
	lease    slot          // at its token's exp (zero when the token has none), in Machine.leases
	recheck  *recheck      // nil unless its token is re-introspected
	// For a client admitted by MQTT 5 enhanced authentication, what a re-authentication must match:
	// the token's subject and the username the client got, and the username its CONNECT carried, which
	// the templates are applied to again.
	subject, username, connectUsername string
	// extended: admitted by enhanced authentication, with no password for the SIGHUP re-check to bring.
	extended bool
}

// recheck is what an online session whose token is re-introspected keeps: the token itself, the only
// place the machine holds one (only with Options.Reintrospect, only for introspected tokens, and only
// while the client is online), the ref its re-checks are started with, and when the next one is due.
type recheck struct {
	token string
	ref   uint64
	slot  // in Machine.rechecks; not in it while a re-check is in flight
}

// admission is what a delayed check that succeeded hands to the CONNECT event it fires.
type admission struct {
	decision auth.Decision
	secret   string // the token itself, kept only with Options.Reintrospect
}

// kick is a connection to disconnect by its client id, unless another connection holds the id by then.
type kick struct {
	client   Client
	clientID string
}

// pending is a delayed check in flight.
type pending struct {
	attempt uint64
	secret  string // the token itself, kept only with Options.Reintrospect
}

// Machine is the state of one plugin instance's clients. Broker thread only.
type Machine struct {
	core   Core
	broker Broker
	opt    Options
	now    func() time.Time

	// sessions are the admitted connections, byID the connection each admitted client id is on.
	sessions map[Client]*session
	byID     map[string]Client
	// forgotten are sessions to drop once the broker is done with their connection's Will (see forget).
	forgotten []*session
	// leases orders the sessions with an expiry by it, earliest first: at its exp an online client is
	// kicked (DisconnectOnExpiry), an offline one's rights are dropped.
	leases queue
	// rechecks orders the sessions whose token is re-introspected by their next re-check; checking
	// holds those whose re-check is in flight, by ref (see reintrospect).
	rechecks  queue
	checking  map[uint64]*session
	refs      uint64
	rechecked []auth.Rechecked
	timer     *time.Timer
	armed     time.Time // when the timer fires; zero when it is stopped
	// kicks are clients to disconnect at the next Tick: kicking from inside an event would pull the
	// client out from under the broker while it is still setting it up.
	kicks []kick
	// pending is each client id's delayed check; attempts counts them, so that a late answer for a
	// connection that left cannot complete a new one with the same id. accepted holds the answer of a
	// delayed check between Complete and the CONNECT event it fires.
	pending    map[string]pending
	attempts   uint64
	accepted   map[string]admission
	completion []auth.Completion
	stats      counters
}

// counters are what the machine counts for metrics: written on the broker thread, read by a scrape
// on another goroutine.
type counters struct {
	sessions                          atomic.Int64
	expired, revoked, reauthenticated atomic.Uint64
}

// Stats is what a machine counted since it started.
type Stats struct {
	// Sessions are the admitted clients the machine holds: online, and offline persistent sessions
	// until their token's exp.
	Sessions int
	// Expired are leases that ended at their token's exp (the client kicked, or its rights dropped),
	// or were found ended at the broker's re-check on SIGHUP; Revoked are clients kicked because a
	// re-check found their token refused at the IdP; Reauthenticated are leases an MQTT 5
	// re-authentication renewed.
	Expired, Revoked, Reauthenticated uint64
}

// Stats reads what the machine counted. Unlike its other methods, it may be called from any goroutine.
func (m *Machine) Stats() Stats {
	return Stats{Sessions: int(m.stats.sessions.Load()), Expired: m.stats.expired.Load(),
		Revoked: m.stats.revoked.Load(), Reauthenticated: m.stats.reauthenticated.Load()}
}

// New makes the machine for one plugin instance.
func New(core Core, b Broker, opt Options) *Machine {
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	return &Machine{core: core, broker: b, opt: opt, now: now,
		sessions: make(map[Client]*session), byID: make(map[string]Client),
		leases:   queue{slot: func(s *session) *slot { return &s.lease }},
		rechecks: queue{slot: func(s *session) *slot { return &s.recheck.slot }},
		checking: make(map[uint64]*session),
		pending:  make(map[string]pending), accepted: make(map[string]admission)}
}

// Close stops the wake-up timer.
func (m *Machine) Close() {
	if m.timer != nil {
		m.timer.Stop()
	}
}

// BasicAuth decides a CONNECT's username and password (BASIC_AUTH). A connection that already holds a
// session with this token is Mosquitto's re-check on SIGHUP, of connected clients and offline
// persistent sessions alike: its lease answers, without the IdP or the cache, so a reload costs no
// request however many clients there are. A client admitted by enhanced authentication sent no
// password, and is answered by its lease too.
func (m *Machine) BasicAuth(conn Conn, req auth.Request) Answer {
	m.dropForgotten()
	defer m.arm()
	c := conn.Client
	if s := m.sessions[c]; s != nil && s.clientID == req.ClientID && (s.extended || s.token == cache.KeyOf(req.Password)) {
		if s.expired(m.now()) {
			m.stats.expired.Add(1)
			m.logLease(s, "token expired; refused at the broker's re-check")
			m.drop(c)
			return Deny
		}
		return Allow
	}
	// This connection's previous answer, if any, no longer holds; an address freed by an earlier
	// client must not lend its session to this one; and a kick queued for an earlier connection with
	// this client id must not hit this one.
	m.drop(c)
	m.cancelKicks(req.ClientID)
	d, known := m.core.FromMemory(req)
	if !known && m.opt.Delay && m.delayable(conn, req) {
		if m.core.RenamesClients() {
			// Until the answer names the client, it must not act under the name it chose: ACL checks
			// that Mosquitto runs while completing the connection see an anonymous client instead.
			if err := m.broker.SetUsername(c, ""); err != nil {
				m.logClient(auth.LevelError, req.ClientID, err.Error())
				return Deny
			}
		}
		m.attempts++
		req.Attempt = m.attempts
		m.pending[req.ClientID] = pending{attempt: req.Attempt, secret: m.keepable(req.Password)}
		m.core.Start(req)
		return Delayed
	}
	if !known {
		d = m.core.Verify(context.Background(), req)
	}
	a, _ := m.answer(c, req, d)
	return a
}

// check decides req on the broker thread: from memory when it can, else by asking the IdP within the
// configured timeout.
func (m *Machine) check(req auth.Request) auth.Decision {
	if d, ok := m.core.FromMemory(req); ok {
		return d
	}
	return m.core.Verify(context.Background(), req)
}

// answer carries out a decision taken on the broker thread: an accepted client gets its username and
// is admitted, and its session is returned.
func (m *Machine) answer(c Client, req auth.Request, d auth.Decision) (Answer, *session) {
	switch d.Result {
	case auth.Allow:
		if d.Rename {
			if err := m.broker.SetUsername(c, d.Username); err != nil {
				m.logClient(auth.LevelError, req.ClientID, err.Error())
				return Deny, nil
			}
		}
		return Allow, m.admit(c, req.ClientID, req.Password, d)
	case auth.Defer:
		return Defer, nil
	}
	return Deny, nil
}

// ExtendedAuth decides an MQTT 5 CONNECT whose Authentication Method is one the operator enabled
// (EXT_AUTH_START), exactly as a password token, and a re-authentication (AUTH 0x19, which fires the
// same event on a connected client): a fresh token of the same subject and username replaces the
// session's lease and rights; any other token ends the connection. Extended auth cannot be delayed, so
// a token missing from memory is verified here, on the broker thread, within the configured timeout.
// A method not enabled answers Defer, which the broker turns into "bad authentication method".
func (m *Machine) ExtendedAuth(conn Conn, method string, data []byte, req auth.Request) Answer {
	m.dropForgotten()
	defer m.arm()
	c := conn.Client
	token, known, err := m.core.ExtendedAuthToken(method, data)
	if !known {
		return Defer
	}
	s := m.sessions[c]
	reauth := s != nil && s.online && s.clientID == req.ClientID
	if err != nil {
		if reauth {
			m.endReauth(s, err.Error())
		} else {
			m.logClient(auth.LevelNotice, req.ClientID, "enhanced authentication refused: "+err.Error())
		}
		return Deny
	}
	req.Password = token
	if reauth {
		return m.reauthenticate(s, req)
	}
	m.drop(c)
	m.cancelKicks(req.ClientID)
	d := m.check(req)
	a, s := m.answer(c, req, d)
	if s != nil {
		s.extended = true
		s.subject, s.username, s.connectUsername = d.Subject, d.Username, req.Username
	}
	return a
}

// cancelKicks forgets the kicks queued for client id: a new connection is authenticating with it, and a
// kick by id would disconnect that one instead of the connection it was meant for, which has gone.
func (m *Machine) cancelKicks(clientID string) {
	m.kicks = slices.DeleteFunc(m.kicks, func(k kick) bool { return k.clientID == clientID })
}

// reauthenticate checks a connected client's new token as its CONNECT was checked, and keeps the
// session only for a token of the same subject that renders the same username.
func (m *Machine) reauthenticate(s *session, req auth.Request) Answer {
	req.Username = s.connectUsername
	d := m.check(req)
	switch {
	case d.Result != auth.Allow:
		m.endReauth(s, "the new token is not valid")
		return Deny
	case d.Subject == "" || d.Subject != s.subject || d.Username != s.username:
		// Without a sub there is no telling whose token it is: it cannot renew anyone's session.
		m.endReauth(s, "the new token is another subject's, or has none")
		return Deny
	}
	s.token, s.rights = d.Token, d.Session
	m.leases.set(s, d.Expiry)
	// The old token's re-check, in flight or due, must not speak for the new one.
	m.stopRecheck(s)
	m.startRechecks(s, req.Password, d)
	m.stats.reauthenticated.Add(1)
	m.logLease(s, "re-authenticated")
	return Allow
}

// endReauth ends a connection whose re-authentication failed. Its rights go at once; the broker
// disconnects it (2.0.11 answers with a CONNACK on the live connection instead, so it is also kicked).
func (m *Machine) endReauth(s *session, why string) {
	m.logClient(auth.LevelNotice, s.clientID, "re-authentication refused: "+why+"; disconnecting")
	m.drop(s.client)
	m.kicks = append(m.kicks, kick{s.client, s.clientID})
	if m.opt.Wake != nil {
		m.opt.Wake()
	}
}

// delayable says whether this check may be delayed. Not when the client is already connected (the
// broker's re-check on SIGHUP expects an answer, and the client must keep its name), and not for a
// renamed client resuming a persistent session: the broker re-checks its queued messages before the
// CONNECT event that would give it its name, and would drop them. The same holds for a persistent
// client when ACL sessions are on: its queued messages would be checked before it has rights.
func (m *Machine) delayable(conn Conn, req auth.Request) bool {
	if req.ClientID == "" || conn.Registered {
		return false
	}
	return !(m.core.RenamesClients() || m.core.AuthorizesTopics()) || conn.CleanSession
}

// keepable is the token a check must keep for the session it may admit: the token itself with
// Options.Reintrospect, else nothing.
func (m *Machine) keepable(token string) string {
	if m.opt.Reintrospect > 0 {
		return token
	}
	return ""
}

// admit gives c its session and returns it. An older connection with the same client id (a takeover, or a persistent
// session's connection that was never freed) loses its own, but not at once: on a takeover the broker
// sends the old connection's Will after this BASIC_AUTH. secret is the token itself, kept only if it is
// to be re-checked (see startRechecks).
func (m *Machine) admit(c Client, clientID string, secret string, d auth.Decision) *session {
	if old, ok := m.byID[clientID]; ok && old != c {
		m.forget(old)
	}
	s := &session{client: c, clientID: clientID, token: d.Token, rights: d.Session, online: true,
		lease: slot{index: -1}}
	m.sessions[c] = s
	m.stats.sessions.Store(int64(len(m.sessions)))
	m.byID[clientID] = c
	m.leases.set(s, d.Expiry)
	m.startRechecks(s, secret, d)
	return s
}

// startRechecks makes s re-checked with Options.Reintrospect when its token was admitted by
// introspection: first at a random time within one interval, so that a fleet that connects at once
// (after a broker restart) is not re-checked at once.
func (m *Machine) startRechecks(s *session, secret string, d auth.Decision) {
	every := m.opt.Reintrospect
	if every <= 0 || !d.Introspected || secret == "" {
		return
	}
	m.refs++
	s.recheck = &recheck{token: secret, ref: m.refs, slot: slot{index: -1}}
	m.rechecks.set(s, m.now().Add(every-rand.N(every)))
}

// Connect (Mosquitto 2.1's CONNECT event, fired from inside Complete) gives a client accepted by a
// delayed check its username and session. If the rename fails the client is kicked: it must not stay
// connected under a name it chose itself. Any other CONNECT changes nothing, so the plugin passes on
// only those fired from inside Complete.
func (m *Machine) Connect(c Client, clientID string) {
	a, ok := m.accepted[clientID]
	if !ok {
		return
	}
	delete(m.accepted, clientID)
	defer m.arm()
	if a.decision.Rename {
		if err := m.broker.SetUsername(c, a.decision.Username); err != nil {
			m.logClient(auth.LevelError, clientID, err.Error()+"; disconnecting it")
			m.kicks = append(m.kicks, kick{c, clientID})
			if m.opt.Wake != nil {
				m.opt.Wake()
			}
			return
		}
	}
	m.admit(c, clientID, a.secret, a.decision)
}

// Disconnect handles a connection that goes offline: DISCONNECT, and Mosquitto 2.1's CLIENT_OFFLINE for
// persistent sessions. An offline client is not kicked. When its session ends with the connection, its
// rights go after this event, since the broker sends the client's Will right after it and the Will's
// check needs them (see forget). A persistent session keeps its rights while the broker queues
// messages for the offline client, until the token's exp or until the client id is admitted again.
func (m *Machine) Disconnect(c Client, sessionEnds bool) {
	m.dropForgotten()
	s := m.sessions[c]
	if s == nil {
		return
	}
	s.online = false
	m.stopRecheck(s)
	switch {
	case !sessionEnds && s.lease.at.IsZero():
		// A persistent session outlives its connection, but a lease without an end would keep it here
		// for good: the broker tells nobody when the session finally expires.
		m.forget(c)
	case sessionEnds && s.rights == nil:
		m.drop(c) // no rights for its Will's check to need: no reason to wait for a tick
	case sessionEnds:
		m.forget(c)
	}
}

// ACLCheck decides one ACL check made at now from the client's rights, in memory, without allocating.
// A session made for another client id is not used: an address can be reused by a client this plugin
// never saw.
//
// until is when the answer stops holding (zero: never, as far as time goes): the token's exp for an
// answer made before it (see auth.Session.Holds). It holds only until the machine's next event
// (BasicAuth, ExtendedAuth, Connect, Disconnect, Tick), the only calls that change sessions; the
// plugin's memo of answers is invalidated at each.
func (m *Machine) ACLCheck(c Client, clientID string, access acl.Access, topic string, qos byte, retain bool, now time.Time) (r auth.Result, until time.Time) {
	var rights *auth.Session
	if s := m.sessions[c]; s != nil && s.clientID == clientID {
		rights = s.rights
	}
	return m.core.Authorize(rights, access, topic, qos, retain, now), rights.Holds(now)
}

// Tick does what is due on the broker thread: it drops forgotten sessions, kicks clients whose lease
// ended or whose token the IdP refused on a re-check, starts due re-checks, and completes delayed checks.
func (m *Machine) Tick() {
	m.dropForgotten()
	m.armed = time.Time{} // the timer fired, or will be set again below: arm must not skip it
	now := m.now()
	for s := m.leases.due(now); s != nil; s = m.leases.due(now) {
		m.stats.expired.Add(1)
		switch {
		case !s.online:
			m.drop(s.client) // its rights ended with the token; nobody is queueing for it any more
		case m.opt.DisconnectOnExpiry && m.byID[s.clientID] == s.client:
			m.logLease(s, "token expired; disconnecting")
			m.kicks = append(m.kicks, kick{s.client, s.clientID})
		}
	}
	if m.opt.Reintrospect > 0 {
		m.reintrospect(now)
	}
	for _, k := range m.kicks {
		if other, ok := m.byID[k.clientID]; !ok || other == k.client {
			m.broker.Kick(k.clientID)
		}
	}
	clear(m.kicks)
	m.kicks = m.kicks[:0]
	if m.opt.Delay {
		m.completion = m.core.Completed(m.completion[:0])
		// The reasons for these answers are already queued: write them before the CONNACKs go out.
		m.broker.FlushLog()
		for _, c := range m.completion {
			m.complete(c)
		}
		clear(m.completion)
	}
	m.arm()
}

// complete hands one delayed answer to the broker. Mosquitto looks the client up by id, so a client that
// left meanwhile is simply not found, and an answer for an earlier connection with the same id is
// dropped (the later one's own answer follows). A panic refuses that client and leaves the other
// answers of the tick to be given.
func (m *Machine) complete(c auth.Completion) {
	p, ok := m.pending[c.ClientID]
	if !ok || p.attempt != c.Attempt {
		return
	}
	delete(m.pending, c.ClientID)
	defer func() {
		if r := recover(); r != nil {
			delete(m.accepted, c.ClientID)
			m.logClient(auth.LevelError, c.ClientID, fmt.Sprintf("internal error completing the check: %v", r))
			m.broker.Complete(c.ClientID, false)
		}
	}()
	allow := c.Decision.Result == auth.Allow
	if allow {
		m.accepted[c.ClientID] = admission{decision: c.Decision, secret: p.secret}
		defer delete(m.accepted, c.ClientID)
	}
	m.broker.Complete(c.ClientID, allow)
}

// reintrospect acts on the re-checks that came back and starts those that are due. Only a refusal by
// the IdP kicks: a re-check that got no verdict (IdP down, breaker open) is tried again at the next
// interval. An outcome for a session that went offline, was taken over, re-admitted or
// re-authenticated meanwhile is ignored (stopRecheck forgot its ref), and so is one that is no longer
// the client id's connection. A token past its exp is not re-checked: its lease has decided (kicked,
// or kept with disconnect_on_expiry false, which a refusal of the expired token must not overrule).
func (m *Machine) reintrospect(now time.Time) {
	m.rechecked = m.core.Rechecked(m.rechecked[:0])
	for _, r := range m.rechecked {
		s, ok := m.checking[r.Ref]
		if !ok {
			continue
		}
		delete(m.checking, r.Ref)
		switch {
		case !m.recheckable(s, now):
			m.stopRecheck(s)
		case r.Revoked:
			m.stats.revoked.Add(1)
			m.logClient(auth.LevelNotice, s.clientID, "token no longer valid at the identity provider ("+r.Reason+"); disconnecting")
			m.kicks = append(m.kicks, kick{s.client, s.clientID})
			m.stopRecheck(s)
		default:
			// Each session keeps its place in the interval, so the checks stay spread and a fleet costs
			// the IdP one request per client per interval, however late the answers come.
			next := s.recheck.at.Add(m.opt.Reintrospect)
			if !next.After(now) {
				next = now.Add(m.opt.Reintrospect)
			}
			m.rechecks.set(s, next)
		}
	}
	clear(m.rechecked)
	for s := m.rechecks.due(now); s != nil; s = m.rechecks.due(now) {
		switch {
		case !m.recheckable(s, now):
			m.stopRecheck(s)
		case m.core.StartRecheck(s.recheck.ref, s.recheck.token):
			m.checking[s.recheck.ref] = s
		default: // the engine's queue is full: the IdP is slow; try this one an interval later
			m.rechecks.set(s, now.Add(m.opt.Reintrospect))
		}
	}
}

// recheckable says whether s is still an online client id's connection with a token before its exp.
func (m *Machine) recheckable(s *session, now time.Time) bool {
	return s.online && m.byID[s.clientID] == s.client && !s.expired(now)
}

// stopRecheck ends the re-checks of s, if any, and lets go of its token.
func (m *Machine) stopRecheck(s *session) {
	if s.recheck == nil {
		return
	}
	m.rechecks.set(s, time.Time{})
	delete(m.checking, s.recheck.ref)
	s.recheck = nil
}

// forget queues the session of c to be dropped after the broker is done with the connection's Will: at
// the next tick, or at the start of the next BASIC_AUTH or DISCONNECT (2.0.11 to 2.0.14 send no tick with
// per_listener_settings true), whichever comes first.
func (m *Machine) forget(c Client) {
	if s, ok := m.sessions[c]; ok {
		m.forgotten = append(m.forgotten, s)
		if m.opt.Wake != nil {
			m.opt.Wake()
		}
	}
}

// dropForgotten drops the sessions forget queued, unless their connection got another one since.
func (m *Machine) dropForgotten() {
	for _, s := range m.forgotten {
		if m.sessions[s.client] == s {
			m.drop(s.client)
		}
	}
	clear(m.forgotten)
	m.forgotten = m.forgotten[:0]
}

// drop removes the session of c, if any, with its lease.
func (m *Machine) drop(c Client) {
	s, ok := m.sessions[c]
	if !ok {
		return
	}
	delete(m.sessions, c)
	m.stats.sessions.Store(int64(len(m.sessions)))
	if m.byID[s.clientID] == c {
		delete(m.byID, s.clientID)
	}
	m.leases.set(s, time.Time{})
	m.stopRecheck(s)
}

// arm sets the wake-up timer for the earliest lease or re-check. One timer serves every client: the
// heaps say what falls due next, and Tick pops all that are due.
func (m *Machine) arm() {
	next := m.leases.next()
	if r := m.rechecks.next(); !r.IsZero() && (next.IsZero() || r.Before(next)) {
		next = r
	}
	if next.Equal(m.armed) || m.opt.Wake == nil {
		return
	}
	m.armed = next
	if next.IsZero() {
		if m.timer != nil {
			m.timer.Stop()
		}
		return
	}
	d := next.Sub(m.now())
	if m.timer == nil {
		m.timer = time.AfterFunc(d, m.opt.Wake)
		return
	}
	m.timer.Reset(d)
}

func (s *session) expired(now time.Time) bool { return !s.lease.at.IsZero() && !now.Before(s.lease.at) }

// logLease writes one notice line for a lease event.
func (m *Machine) logLease(s *session, what string) {
	m.logClient(auth.LevelNotice, s.clientID, what+" (exp "+s.lease.at.UTC().Format(time.RFC3339)+")")
}

func (m *Machine) logClient(level auth.Level, clientID, msg string) {
	m.opt.Log.Log(level, "client "+logtext.Quote(clientID)+": "+msg)
}

// slot is a session's place in a queue: when it falls due, and its index there (-1 when not in it).
type slot struct {
	at    time.Time
	index int
}

// queue orders sessions by one of their slots, earliest first (container/heap). slot says which.
type queue struct {
	items []*session
	slot  func(*session) *slot
}

// set makes s fall due at at: it enters the queue, moves in it, or leaves it when at is zero.
func (q *queue) set(s *session, at time.Time) {
	sl := q.slot(s)
	sl.at = at
	switch {
	case sl.index >= 0 && !at.IsZero():
		heap.Fix(q, sl.index)
	case sl.index >= 0:
		heap.Remove(q, sl.index)
	case !at.IsZero():
		heap.Push(q, s)
	}
}

// due pops the earliest session if it is due at now, else returns nil.
func (q *queue) due(now time.Time) *session {
	if len(q.items) == 0 || now.Before(q.slot(q.items[0]).at) {
		return nil
	}
	return heap.Pop(q).(*session)
}

// next is when the earliest session falls due; zero when there is none.
func (q *queue) next() time.Time {
	if len(q.items) == 0 {
		return time.Time{}
	}
	return q.slot(q.items[0]).at
}

func (q *queue) Len() int           { return len(q.items) }
func (q *queue) Less(i, j int) bool { return q.slot(q.items[i]).at.Before(q.slot(q.items[j]).at) }
func (q *queue) Swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.slot(q.items[i]).index, q.slot(q.items[j]).index = i, j
}
func (q *queue) Push(x any) {
	s := x.(*session)
	q.slot(s).index = len(q.items)
	q.items = append(q.items, s)
}
func (q *queue) Pop() any {
	old := q.items
	s := old[len(old)-1]
	old[len(old)-1] = nil
	q.slot(s).index = -1
	q.items = old[:len(old)-1]
	return s
}
