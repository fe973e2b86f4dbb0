package sessions

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/cache"
)

// fakeCore answers each token with the decision scripted for it; a token with delayed set misses the
// memory check, so the machine delays it when it may. Re-checks are recorded in rechecks (the token
// of each, by ref) until the test answers them with answerRechecks; queueFull refuses them.
type fakeCore struct {
	decisions map[string]auth.Decision
	delayed   map[string]bool
	renames   bool
	acl       bool
	calls     int
	started   []auth.Request
	done      []auth.Completion
	rechecks  map[uint64]string
	queueFull bool
	rechecked []auth.Rechecked
}

func (f *fakeCore) FromMemory(req auth.Request) (auth.Decision, bool) {
	if f.delayed[req.Password] {
		return auth.Decision{}, false
	}
	f.calls++
	return f.decision(req.Password), true
}

func (f *fakeCore) Verify(_ context.Context, req auth.Request) auth.Decision {
	f.calls++
	return f.decision(req.Password)
}

func (f *fakeCore) decision(token string) auth.Decision {
	if d, ok := f.decisions[token]; ok {
		if d.Result == auth.Allow {
			d.Token = cache.KeyOf(token) // as the engine hands it over
		}
		return d
	}
	return auth.Decision{Result: auth.Deny}
}

func (f *fakeCore) Start(req auth.Request) { f.started = append(f.started, req) }
func (f *fakeCore) Completed(dst []auth.Completion) []auth.Completion {
	dst = append(dst, f.done...)
	f.done = nil
	return dst
}

// Authorize allows exactly the clients that hold rights: which rights is the engine's business.
func (f *fakeCore) Authorize(s *auth.Session, access acl.Access, _ string, _ byte, _ bool, _ time.Time) auth.Result {
	if s == nil {
		return auth.Defer
	}
	return auth.Allow
}

// ExtendedAuthToken knows one method, OAUTH2-JWT, whose data is the token; "garbage" is malformed.
func (f *fakeCore) ExtendedAuthToken(method string, data []byte) (string, bool, error) {
	if method != "OAUTH2-JWT" {
		return "", false, nil
	}
	if string(data) == "garbage" {
		return "", true, errors.New("malformed")
	}
	return string(data), true, nil
}
func (f *fakeCore) StartRecheck(ref uint64, token string) bool {
	if f.queueFull {
		return false
	}
	f.rechecks[ref] = token
	return true
}
func (f *fakeCore) Rechecked(dst []auth.Rechecked) []auth.Rechecked {
	dst = append(dst, f.rechecked...)
	f.rechecked = nil
	return dst
}

// answerRechecks answers every re-check in flight: the tokens in revoked are refused, tokens in
// failing get no verdict, the others are still active.
func (f *fakeCore) answerRechecks(revoked, failing map[string]bool) {
	for ref, tok := range f.rechecks {
		r := auth.Rechecked{Ref: ref}
		switch {
		case revoked[tok]:
			r.Revoked, r.Reason = true, "token rejected: inactive"
		case failing[tok]:
			r.Reason = "identity provider unavailable: circuit breaker open"
		}
		f.rechecked = append(f.rechecked, r)
	}
	clear(f.rechecks)
}

func (f *fakeCore) RenamesClients() bool   { return f.renames }
func (f *fakeCore) AuthorizesTopics() bool { return f.acl }

// fakeBroker records what the machine asks of Mosquitto. Complete fires CONNECT from inside, as 2.1
// does, for the client registered under that id.
type fakeBroker struct {
	m         *Machine
	names     map[Client]string
	kicks     []string
	completed []string
	connectAs map[string]Client
	failName  bool
}

func (b *fakeBroker) SetUsername(c Client, name string) error {
	if b.failName {
		return errors.New("no memory")
	}
	b.names[c] = name
	return nil
}
func (b *fakeBroker) Kick(id string) { b.kicks = append(b.kicks, id) }
func (b *fakeBroker) Complete(id string, allow bool) {
	verdict := "deny"
	if allow {
		verdict = "allow"
		if c, ok := b.connectAs[id]; ok {
			b.m.Connect(c, id)
		}
	}
	b.completed = append(b.completed, id+" "+verdict)
}
func (b *fakeBroker) FlushLog() {}

type logLines struct{ lines []string }

func (l *logLines) Log(_ auth.Level, msg string) { l.lines = append(l.lines, msg) }

// rig is one machine with its fakes and a clock the steps move.
type rig struct {
	t      *testing.T
	m      *Machine
	core   *fakeCore
	broker *fakeBroker
	log    *logLines
	now    time.Time
	conns  map[string]Client
}

var t0 = time.Unix(1_800_000_000, 0)

func newRig(t *testing.T, opt Options) *rig {
	r := &rig{t: t, now: t0, log: &logLines{}, conns: map[string]Client{},
		core: &fakeCore{decisions: map[string]auth.Decision{}, delayed: map[string]bool{}, rechecks: map[uint64]string{}}}
	r.broker = &fakeBroker{names: map[Client]string{}, connectAs: map[string]Client{}}
	opt.Now = func() time.Time { return r.now }
	opt.Log = r.log
	r.m = New(r.core, r.broker, opt)
	r.broker.m = r.m
	t.Cleanup(r.m.Close)
	return r
}

// conn returns the Client for a connection name: a distinct pointer per name, the same one each time.
func (r *rig) conn(name string) Client {
	if c, ok := r.conns[name]; ok {
		return c
	}
	c := Client(unsafe.Pointer(new(byte)))
	r.conns[name] = c
	return c
}

// token scripts the answer for a token: valid until exp (zero: no exp), with rights, of subject "sub".
func (r *rig) token(tok string, ttl time.Duration, rename string) {
	d := auth.Decision{Result: auth.Allow, Session: &auth.Session{}, Rename: rename != "", Username: rename, Subject: "sub"}
	if ttl > 0 {
		d.Expiry = r.now.Add(ttl)
	}
	r.core.decisions[tok] = d
}

func (r *rig) auth(conn, id, tok string, clean bool) Answer {
	return r.m.BasicAuth(Conn{Client: r.conn(conn), CleanSession: clean}, auth.Request{ClientID: id, Password: tok})
}

func (r *rig) ext(conn, id, data string) Answer {
	return r.m.ExtendedAuth(Conn{Client: r.conn(conn), CleanSession: true}, "OAUTH2-JWT", []byte(data), auth.Request{ClientID: id})
}

func (r *rig) rights(conn, id string) bool {
	res, until := r.m.ACLCheck(r.conn(conn), id, acl.Write, "t", 0, false, r.now)
	// The fake's rights have no exp, and no rights (Defer) hold until the next event: either way the
	// answer holds for ever as far as time goes.
	if !until.IsZero() {
		r.t.Errorf("ACL answer for %s/%s holds until %v, want for ever", conn, id, until)
	}
	return res == auth.Allow
}

func (r *rig) tick(d time.Duration) {
	r.now = r.now.Add(d)
	r.m.Tick()
}

func TestLifecycle(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
		run  func(r *rig)
	}{
		{"expiry kicks once, and the kicked client's session goes at its DISCONNECT", Options{DisconnectOnExpiry: true}, func(r *rig) {
			r.token("tok", time.Minute, "")
			if a := r.auth("a", "dev", "tok", true); a != Allow {
				r.t.Fatalf("connect: %v", a)
			}
			r.tick(59 * time.Second)
			if len(r.broker.kicks) != 0 {
				r.t.Errorf("kicked before exp: %v", r.broker.kicks)
			}
			r.tick(time.Second)
			if strings.Join(r.broker.kicks, ",") != "dev" {
				r.t.Errorf("kicks at exp: %v", r.broker.kicks)
			}
			r.m.Disconnect(r.conn("a"), true) // what the kick fires
			r.tick(time.Second)
			if len(r.broker.kicks) != 1 || len(r.m.sessions) != 0 || len(r.m.leases.items) != 0 {
				r.t.Errorf("after the kick: kicks %v, %d sessions, %d leases", r.broker.kicks, len(r.m.sessions), len(r.m.leases.items))
			}
			if n := len(r.log.lines); n != 1 || !strings.Contains(r.log.lines[0], `client "dev": token expired; disconnecting`) {
				r.t.Errorf("log: %q", r.log.lines)
			}
		}},
		// plugin.c passes on only the CONNECT events fired from inside Complete, and relies on this.
		{"a CONNECT outside Complete changes nothing", Options{Delay: true}, func(r *rig) {
			r.core.renames = true
			r.core.delayed["tok"] = true
			r.token("sync", time.Minute, "bob")
			r.auth("a", "dev", "tok", true)
			r.auth("b", "other", "sync", true)
			r.m.Connect(r.conn("a"), "dev")
			r.m.Connect(r.conn("b"), "other")
			if len(r.m.sessions) != 1 || r.broker.names[r.conn("a")] != "" || r.broker.names[r.conn("b")] != "bob" || r.rights("a", "dev") {
				r.t.Errorf("%d sessions, names %v", len(r.m.sessions), r.broker.names)
			}
		}},
		{"disconnect_on_expiry false kicks nobody", Options{}, func(r *rig) {
			r.token("tok", time.Minute, "")
			r.auth("a", "dev", "tok", true)
			r.tick(time.Hour)
			if len(r.broker.kicks) != 0 || len(r.log.lines) != 0 {
				r.t.Errorf("kicks %v, log %q", r.broker.kicks, r.log.lines)
			}
		}},
		{"a token without exp has no lease", Options{DisconnectOnExpiry: true}, func(r *rig) {
			r.token("tok", 0, "")
			r.auth("a", "dev", "tok", true)
			r.tick(24 * time.Hour)
			if len(r.broker.kicks) != 0 || len(r.m.leases.items) != 0 {
				r.t.Errorf("kicks %v, leases %d", r.broker.kicks, len(r.m.leases.items))
			}
		}},
		{"re-check on SIGHUP is answered by the lease, and refused once it ended", Options{}, func(r *rig) {
			r.token("tok", time.Minute, "renamed")
			r.auth("a", "dev", "tok", true)
			calls := r.core.calls
			if a := r.auth("a", "dev", "tok", true); a != Allow || r.core.calls != calls {
				r.t.Errorf("re-check: %v, %d core calls", a, r.core.calls-calls)
			}
			r.now = r.now.Add(time.Minute)
			if a := r.auth("a", "dev", "tok", true); a != Deny {
				r.t.Errorf("re-check after exp: %v", a)
			}
			if r.rights("a", "dev") {
				r.t.Error("rights kept after a refused re-check")
			}
		}},
		{"a reused client pointer is a new client", Options{}, func(r *rig) {
			r.token("tok", time.Minute, "")
			r.auth("a", "dev", "tok", true)
			r.m.Disconnect(r.conn("a"), true)
			r.tick(0)
			calls := r.core.calls
			if a := r.auth("a", "other", "tok", true); a != Allow || r.core.calls != calls+1 {
				r.t.Errorf("new client at a reused address: %v, %d core calls", a, r.core.calls-calls)
			}
			if a := r.auth("a", "other", "forged", true); a != Deny || r.rights("a", "other") {
				r.t.Errorf("another token at the same address: %v", a)
			}
		}},
		{"the Will of a vanishing client is checked with its rights, which go at the next tick", Options{}, func(r *rig) {
			r.token("tok", time.Minute, "")
			r.auth("a", "dev", "tok", true)
			r.m.Disconnect(r.conn("a"), true)
			if !r.rights("a", "dev") {
				r.t.Error("the Will's check found no rights")
			}
			r.tick(0)
			if r.rights("a", "dev") {
				r.t.Error("rights kept after the Will")
			}
		}},
		{"a session without rights goes at its DISCONNECT, without waiting for a tick", Options{DisconnectOnExpiry: true}, func(r *rig) {
			r.core.decisions["tok"] = auth.Decision{Result: auth.Allow, Expiry: r.now.Add(time.Minute)}
			r.auth("a", "dev", "tok", true)
			r.m.Disconnect(r.conn("a"), true)
			if len(r.m.sessions) != 0 || len(r.m.leases.items) != 0 || len(r.m.forgotten) != 0 {
				r.t.Errorf("%d sessions, %d leases, %d forgotten", len(r.m.sessions), len(r.m.leases.items), len(r.m.forgotten))
			}
		}},
		{"a takeover: the old connection's Will keeps its rights until the next tick", Options{DisconnectOnExpiry: true}, func(r *rig) {
			r.token("old", time.Minute, "")
			r.token("new", time.Hour, "")
			r.auth("a", "dev", "old", true)
			r.auth("b", "dev", "new", true)
			if !r.rights("a", "dev") || !r.rights("b", "dev") {
				r.t.Error("rights during the takeover")
			}
			r.tick(time.Minute) // the old lease's exp passes too: the new connection is not kicked
			if r.rights("a", "dev") || !r.rights("b", "dev") || len(r.broker.kicks) != 0 {
				r.t.Errorf("after the takeover: kicks %v", r.broker.kicks)
			}
		}},
		{"a persistent session keeps its rights offline until exp, and is not kicked", Options{DisconnectOnExpiry: true}, func(r *rig) {
			r.token("tok", time.Minute, "")
			r.auth("a", "dev", "tok", false)
			r.m.Disconnect(r.conn("a"), false)
			r.tick(30 * time.Second)
			if !r.rights("a", "dev") {
				r.t.Error("an offline persistent session lost its rights before exp")
			}
			r.tick(30 * time.Second)
			if r.rights("a", "dev") || len(r.broker.kicks) != 0 || len(r.m.sessions) != 0 {
				r.t.Errorf("at exp: kicks %v, %d sessions", r.broker.kicks, len(r.m.sessions))
			}
		}},
		{"a delayed check is completed, and CONNECT gives the client its name and lease", Options{Delay: true, DisconnectOnExpiry: true}, func(r *rig) {
			r.core.renames = true
			r.core.delayed["tok"] = true
			if a := r.auth("a", "dev", "tok", true); a != Delayed || r.broker.names[r.conn("a")] != "" {
				r.t.Fatalf("delayed: %v, name %q", a, r.broker.names[r.conn("a")])
			}
			req := r.core.started[0]
			r.broker.connectAs["dev"] = r.conn("a")
			d := auth.Decision{Result: auth.Allow, Rename: true, Username: "alice", Session: &auth.Session{}, Expiry: r.now.Add(time.Minute)}
			r.core.done = []auth.Completion{{ClientID: "dev", Attempt: req.Attempt, Decision: d}}
			r.tick(0)
			if strings.Join(r.broker.completed, ",") != "dev allow" || r.broker.names[r.conn("a")] != "alice" || !r.rights("a", "dev") {
				r.t.Errorf("completed %v, name %q", r.broker.completed, r.broker.names[r.conn("a")])
			}
			r.tick(time.Minute)
			if strings.Join(r.broker.kicks, ",") != "dev" {
				r.t.Errorf("kicks at exp: %v", r.broker.kicks)
			}
		}},
		{"a late answer for a connection that left does not complete the next one", Options{Delay: true}, func(r *rig) {
			r.core.delayed["t1"], r.core.delayed["t2"] = true, true
			r.auth("a", "dev", "t1", true)
			r.auth("b", "dev", "t2", true)
			first, second := r.core.started[0], r.core.started[1]
			r.core.done = []auth.Completion{{ClientID: "dev", Attempt: first.Attempt, Decision: auth.Decision{Result: auth.Allow}}}
			r.tick(0)
			if len(r.broker.completed) != 0 {
				r.t.Errorf("the first attempt's answer completed: %v", r.broker.completed)
			}
			r.core.done = []auth.Completion{{ClientID: "dev", Attempt: second.Attempt, Decision: auth.Decision{Result: auth.Deny}}}
			r.tick(0)
			if strings.Join(r.broker.completed, ",") != "dev deny" {
				r.t.Errorf("completed %v", r.broker.completed)
			}
		}},
		{"a delayed client whose rename fails is kicked", Options{Delay: true}, func(r *rig) {
			r.core.delayed["tok"] = true
			r.auth("a", "dev", "tok", true)
			r.broker.connectAs["dev"] = r.conn("a")
			r.broker.failName = true
			d := auth.Decision{Result: auth.Allow, Rename: true, Username: "alice", Session: &auth.Session{}}
			r.core.done = []auth.Completion{{ClientID: "dev", Attempt: r.core.started[0].Attempt, Decision: d}}
			r.tick(0)
			r.tick(0)
			if strings.Join(r.broker.kicks, ",") != "dev" || r.rights("a", "dev") {
				r.t.Errorf("kicks %v", r.broker.kicks)
			}
		}},
		{"enhanced auth: a known method is checked like a password, an unknown one deferred", Options{}, func(r *rig) {
			r.token("tok", time.Minute, "")
			if a := r.ext("a", "dev", "tok"); a != Allow || !r.rights("a", "dev") {
				r.t.Errorf("OAUTH2-JWT with a valid token: %v", a)
			}
			if a := r.m.ExtendedAuth(Conn{Client: r.conn("b")}, "SCRAM-SHA-1", []byte("tok"), auth.Request{ClientID: "b"}); a != Defer {
				r.t.Errorf("unknown method: %v", a)
			}
			if a := r.ext("c", "c", "garbage"); a != Deny || r.rights("c", "c") {
				r.t.Errorf("malformed data: %v", a)
			}
			if a := r.ext("d", "d", "forged"); a != Deny {
				r.t.Errorf("invalid token: %v", a)
			}
		}},
		{"re-authentication with a fresh token of the same subject extends the lease", Options{DisconnectOnExpiry: true}, func(r *rig) {
			r.token("first", time.Minute, "alice")
			r.ext("a", "dev", "first")
			r.now = r.now.Add(50 * time.Second)
			r.token("second", time.Hour, "alice")
			if a := r.ext("a", "dev", "second"); a != Allow {
				r.t.Fatalf("re-auth: %v", a)
			}
			r.tick(time.Minute) // past the first token's exp
			if len(r.broker.kicks) != 0 || !r.rights("a", "dev") {
				r.t.Errorf("kicked at the first token's exp after a re-auth: %v", r.broker.kicks)
			}
			r.tick(time.Hour)
			if strings.Join(r.broker.kicks, ",") != "dev" {
				r.t.Errorf("kicks at the second token's exp: %v", r.broker.kicks)
			}
			if !strings.Contains(strings.Join(r.log.lines, "\n"), `client "dev": re-authenticated`) {
				r.t.Errorf("log: %q", r.log.lines)
			}
		}},
		{"re-authentication with another subject's, an invalid or a malformed token ends the connection", Options{}, func(r *rig) {
			for i, data := range []string{"foreign", "forged", "garbage", "renamed"} {
				conn := string(rune('a' + i))
				r.token("tok", time.Minute, "alice")
				r.token("renamed", time.Minute, "mallory")
				d := r.core.decisions["tok"]
				d.Subject = "someone else"
				r.core.decisions["foreign"] = d
				r.ext(conn, "dev-"+conn, "tok")
				if a := r.ext(conn, "dev-"+conn, data); a != Deny || r.rights(conn, "dev-"+conn) {
					r.t.Errorf("re-auth with %s: %v", data, a)
				}
			}
			r.tick(0)
			if strings.Join(r.broker.kicks, ",") != "dev-a,dev-b,dev-c,dev-d" {
				r.t.Errorf("kicks: %v", r.broker.kicks)
			}
		}},
		{"SIGHUP's re-check of an enhanced-auth client, which sent no password, is answered by its lease", Options{}, func(r *rig) {
			r.token("tok", time.Minute, "")
			r.ext("a", "dev", "tok")
			calls := r.core.calls
			if a := r.auth("a", "dev", "", true); a != Allow || r.core.calls != calls {
				r.t.Errorf("re-check without a password: %v, %d core calls", a, r.core.calls-calls)
			}
			r.now = r.now.Add(time.Minute)
			if a := r.auth("a", "dev", "", true); a != Deny {
				r.t.Errorf("re-check after exp: %v", a)
			}
		}},
		{"SIGHUP's re-check of an offline persistent session is answered by its lease", Options{}, func(r *rig) {
			r.token("tok", time.Minute, "")
			r.auth("a", "dev", "tok", false)
			r.m.Disconnect(r.conn("a"), false)
			calls := r.core.calls
			if a := r.auth("a", "dev", "tok", false); a != Allow || r.core.calls != calls || !r.rights("a", "dev") {
				r.t.Errorf("re-check of an offline session: %v, %d core calls", a, r.core.calls-calls)
			}
		}},
		{"an offline persistent session whose token has no exp goes at the next tick", Options{}, func(r *rig) {
			r.token("tok", 0, "")
			r.auth("a", "dev", "tok", false)
			r.m.Disconnect(r.conn("a"), false)
			r.tick(0)
			if len(r.m.sessions) != 0 {
				r.t.Errorf("%d sessions kept", len(r.m.sessions))
			}
		}},
		{"a kick queued for a connection that went does not hit the next one with its id", Options{}, func(r *rig) {
			r.token("tok", time.Minute, "")
			r.ext("a", "dev", "tok")
			r.ext("a", "dev", "garbage") // re-auth refused: a kick is queued for "dev"
			r.m.Disconnect(r.conn("a"), true)
			r.auth("b", "dev", "tok", true) // the device is back on a new connection before the tick
			r.tick(0)
			if len(r.broker.kicks) != 0 || !r.rights("b", "dev") {
				r.t.Errorf("kicks %v", r.broker.kicks)
			}
		}},
		{"re-authentication needs a subject", Options{}, func(r *rig) {
			r.core.decisions["nosub"] = auth.Decision{Result: auth.Allow, Session: &auth.Session{}}
			r.ext("a", "dev", "nosub")
			if a := r.ext("a", "dev", "nosub"); a != Deny {
				r.t.Errorf("re-auth with tokens without sub: %v", a)
			}
		}},
		{"SIGHUP's re-check of a connected client is never delayed", Options{Delay: true}, func(r *rig) {
			r.core.delayed["tok"] = true
			a := r.m.BasicAuth(Conn{Client: r.conn("a"), Registered: true, CleanSession: true}, auth.Request{ClientID: "dev", Password: "tok"})
			if a == Delayed {
				r.t.Error("a registered client's check was delayed")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(newRig(t, tc.opt)) })
	}
}

// One timer serves every lease: it is armed for the earliest exp and wakes the plugin then.
func TestWakeAtEarliestLease(t *testing.T) {
	woken := make(chan struct{}, 1)
	r := newRig(t, Options{DisconnectOnExpiry: true, Wake: func() { woken <- struct{}{} }})
	r.now = time.Now()
	r.token("late", time.Hour, "")
	r.token("soon", 50*time.Millisecond, "")
	r.auth("a", "a", "late", true)
	r.auth("b", "b", "soon", true)
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up for the lease that ends first")
	}
	if !r.m.armed.Equal(r.now.Add(50 * time.Millisecond)) {
		t.Errorf("timer armed for %v", r.m.armed.Sub(r.now))
	}
}

// opaque scripts a token the engine admits by introspection, valid for ttl.
func (r *rig) opaque(tok string, ttl time.Duration) {
	r.token(tok, ttl, "")
	d := r.core.decisions[tok]
	d.Introspected = true
	r.core.decisions[tok] = d
}

// recheckedTokens lists the tokens whose re-check is in flight, sorted.
func (r *rig) recheckedTokens() string {
	var toks []string
	for _, tok := range r.core.rechecks {
		toks = append(toks, tok)
	}
	slices.Sort(toks)
	return strings.Join(toks, ",")
}

func TestReintrospection(t *testing.T) {
	every := time.Minute
	on := Options{Reintrospect: every, DisconnectOnExpiry: true}
	for _, tc := range []struct {
		name string
		opt  Options
		run  func(r *rig)
	}{
		{"a revoked token kicks its client once, with one line that names the client, never the token", on, func(r *rig) {
			r.opaque("tok-a", time.Hour)
			r.opaque("tok-b", time.Hour)
			r.auth("a", "dev-a", "tok-a", true)
			r.auth("b", "dev-b", "tok-b", true)
			r.tick(every)
			if got := r.recheckedTokens(); got != "tok-a,tok-b" {
				r.t.Fatalf("re-checks after one interval: %q", got)
			}
			r.core.answerRechecks(map[string]bool{"tok-a": true}, nil)
			r.tick(0)
			if strings.Join(r.broker.kicks, ",") != "dev-a" {
				r.t.Errorf("kicks %v", r.broker.kicks)
			}
			if len(r.log.lines) != 1 || r.log.lines[0] != `client "dev-a": token no longer valid at the identity provider (token rejected: inactive); disconnecting` {
				r.t.Errorf("log %q", r.log.lines)
			}
			r.m.Disconnect(r.conn("a"), true) // what the kick fires
			r.tick(every)
			if got := r.recheckedTokens(); got != "tok-b" || len(r.broker.kicks) != 1 {
				r.t.Errorf("next interval: re-checks %q, kicks %v", got, r.broker.kicks)
			}
		}},
		{"an IdP failure kicks nobody, and the next interval asks again", on, func(r *rig) {
			r.opaque("tok", time.Hour)
			r.auth("a", "dev", "tok", true)
			for range 3 {
				r.tick(every)
				if r.recheckedTokens() != "tok" {
					r.t.Fatalf("no re-check in this interval")
				}
				r.core.answerRechecks(nil, map[string]bool{"tok": true})
				r.tick(0)
			}
			if len(r.broker.kicks) != 0 || len(r.log.lines) != 0 || !r.rights("a", "dev") {
				r.t.Errorf("kicks %v, log %q", r.broker.kicks, r.log.lines)
			}
		}},
		{"a JWT verified locally is not re-checked", on, func(r *rig) {
			r.token("jwt", time.Hour, "")
			r.auth("a", "dev", "jwt", true)
			r.tick(every)
			r.tick(every)
			if len(r.core.rechecks) != 0 || r.m.sessions[r.conn("a")].recheck != nil {
				r.t.Errorf("re-checks %q", r.recheckedTokens())
			}
		}},
		{"off by default, and then no session keeps its token", Options{DisconnectOnExpiry: true}, func(r *rig) {
			r.opaque("tok", time.Hour)
			r.auth("a", "dev", "tok", true)
			r.tick(every)
			if len(r.core.rechecks) != 0 || r.m.sessions[r.conn("a")].recheck != nil {
				r.t.Errorf("re-checks %q", r.recheckedTokens())
			}
		}},
		{"an answer for a client that left, or was taken over, is ignored", on, func(r *rig) {
			r.opaque("old", time.Hour)
			r.opaque("new", time.Hour)
			r.opaque("gone", time.Hour)
			r.auth("a", "dev", "old", true)
			r.auth("c", "left", "gone", true)
			r.tick(every)
			r.auth("b", "dev", "new", true) // a takeover: kicking "dev" now would kick the new connection
			r.m.Disconnect(r.conn("c"), true)
			r.tick(0)
			r.auth("c", "left", "new", true) // the address is reused for the same client id
			r.core.answerRechecks(map[string]bool{"old": true, "gone": true}, nil)
			r.tick(0)
			if len(r.broker.kicks) != 0 || len(r.log.lines) != 0 || len(r.m.checking) != 0 {
				r.t.Errorf("kicks %v, log %q, %d in flight", r.broker.kicks, r.log.lines, len(r.m.checking))
			}
		}},
		{"a re-authentication re-checks the new token, and the old one's answer is ignored", on, func(r *rig) {
			r.opaque("first", time.Hour)
			r.opaque("second", time.Hour)
			r.ext("a", "dev", "first")
			r.tick(every)
			if r.recheckedTokens() != "first" {
				r.t.Fatalf("re-checks %q", r.recheckedTokens())
			}
			if a := r.ext("a", "dev", "second"); a != Allow {
				r.t.Fatalf("re-auth: %v", a)
			}
			r.core.answerRechecks(map[string]bool{"first": true}, nil) // the old token expired or was revoked
			r.tick(0)
			r.tick(every)
			if len(r.broker.kicks) != 0 || r.recheckedTokens() != "second" {
				r.t.Errorf("kicks %v, re-checks %q", r.broker.kicks, r.recheckedTokens())
			}
		}},
		{"an offline persistent session is not re-checked and lets go of its token", on, func(r *rig) {
			r.opaque("tok", time.Hour)
			r.auth("a", "dev", "tok", false)
			r.m.Disconnect(r.conn("a"), false)
			r.tick(every)
			if len(r.core.rechecks) != 0 || r.m.sessions[r.conn("a")].recheck != nil || !r.rights("a", "dev") {
				r.t.Errorf("re-checks %q", r.recheckedTokens())
			}
		}},
		{"a token past its exp is left to its lease (disconnect_on_expiry false)", Options{Reintrospect: every}, func(r *rig) {
			r.opaque("tok", 30*time.Second)
			r.auth("a", "dev", "tok", true)
			r.tick(every)
			if len(r.core.rechecks) != 0 || len(r.broker.kicks) != 0 || r.m.rechecks.Len() != 0 {
				r.t.Errorf("re-checks %q, kicks %v", r.recheckedTokens(), r.broker.kicks)
			}
		}},
		{"a full queue is tried again at the next interval", on, func(r *rig) {
			r.opaque("tok", time.Hour)
			r.auth("a", "dev", "tok", true)
			r.core.queueFull = true
			r.tick(every)
			r.core.queueFull = false
			if len(r.core.rechecks) != 0 || r.m.rechecks.Len() != 1 {
				r.t.Fatalf("re-checks %q", r.recheckedTokens())
			}
			r.tick(every)
			if r.recheckedTokens() != "tok" {
				r.t.Errorf("not re-checked after a full queue")
			}
		}},
		{"a client admitted by a delayed check is re-checked too", Options{Reintrospect: every, Delay: true}, func(r *rig) {
			r.core.delayed["tok"] = true
			r.auth("a", "dev", "tok", true)
			r.broker.connectAs["dev"] = r.conn("a")
			d := auth.Decision{Result: auth.Allow, Introspected: true, Expiry: r.now.Add(time.Hour)}
			r.core.done = []auth.Completion{{ClientID: "dev", Attempt: r.core.started[0].Attempt, Decision: d}}
			r.tick(0)
			r.tick(every)
			if r.recheckedTokens() != "tok" {
				r.t.Errorf("re-checks %q", r.recheckedTokens())
			}
		}},
		{"the wake-up timer is armed for the first re-check", Options{Reintrospect: every, Wake: func() {}}, func(r *rig) {
			r.opaque("tok", time.Hour)
			r.auth("a", "dev", "tok", true)
			at := r.m.sessions[r.conn("a")].recheck.at
			if !r.m.armed.Equal(at) || at.After(r.now.Add(every)) || !at.After(r.now) {
				r.t.Errorf("armed %v, re-check %v after admission", r.m.armed.Sub(r.now), at.Sub(r.now))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(newRig(t, tc.opt)) })
	}
}

// A fleet that connects at once is re-checked spread over the interval, and costs the IdP one request
// per client per interval: 10 000 clients with reintrospection_interval 60 make 10 000 requests a
// minute, about 167 a second, however late the answers come (here, one tick after each check).
func TestReintrospectionLoad(t *testing.T) {
	const n = 10_000
	every := time.Minute
	r := newRig(t, Options{Reintrospect: every})
	for i := range n {
		tok := fmt.Sprintf("tok-%05d", i)
		r.opaque(tok, 24*time.Hour)
		r.auth(tok, tok, tok, true)
	}
	perSecond := make([]int, 0, 180)
	for range 180 {
		r.tick(time.Second)
		perSecond = append(perSecond, len(r.core.rechecks))
		r.core.answerRechecks(nil, nil)
	}
	for minute := range 3 {
		sum, peak := 0, 0
		for _, c := range perSecond[minute*60 : minute*60+60] {
			sum += c
			peak = max(peak, c)
		}
		t.Logf("minute %d: %d re-checks, at most %d in one second", minute+1, sum, peak)
		if minute > 0 && sum != n {
			t.Errorf("minute %d: %d re-checks, want %d", minute+1, sum, n)
		}
		if peak > 2*n/60 {
			t.Errorf("minute %d: %d re-checks in one second: not spread", minute+1, peak)
		}
	}
}

// What the machine keeps per admitted client, its lease included, beside the client's rights (counted
// by auth's TestSessionMemory): 100 000 sessions fit in 32 MiB.
func TestMemoryPerSession(t *testing.T) {
	const n = 100_000
	each := sessionBytes(t, Options{DisconnectOnExpiry: true}, n, 43)
	t.Logf("%d sessions with leases: %.1f MiB, %d bytes each", n, float64(each*n)/(1<<20), each)
	if each*n > 32<<20 {
		t.Errorf("%d sessions take %.1f MiB, over 32 MiB", n, float64(each*n)/(1<<20))
	}
}

// With reintrospection_interval an introspected client's session also holds its token (43 bytes for
// oidc-provider's opaque tokens; at most auth.MaxTokenBytes) and its place among the re-checks.
func TestMemoryPerSessionReintrospected(t *testing.T) {
	for _, tc := range []struct {
		size  int
		limit uint64
	}{{43, 450}, {1024, 1450}} {
		each := sessionBytes(t, Options{DisconnectOnExpiry: true, Reintrospect: time.Minute}, 10_000, tc.size)
		t.Logf("%d-byte tokens: %d bytes per session", tc.size, each)
		if each > tc.limit {
			t.Errorf("%d-byte tokens: %d bytes per session, over %d", tc.size, each, tc.limit)
		}
	}
}

// sessionBytes admits n introspected clients, each with a token of its own of size bytes, copied for
// each CONNECT as the plugin copies it out of the broker, and returns the heap each session takes.
func sessionBytes(t *testing.T, opt Options, n, size int) uint64 {
	r := newRig(t, opt)
	ids, toks := make([]string, n), make([]string, n)
	conns := make([]Client, n)
	for i := range n {
		ids[i] = fmt.Sprintf("device-%06d", i)
		toks[i] = fmt.Sprintf("%0*d", size, i)
		r.opaque(toks[i], time.Hour)
		conns[i] = Client(unsafe.Pointer(new([16]byte)))
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i, id := range ids {
		req := auth.Request{ClientID: id, Password: strings.Clone(toks[i])}
		if a := r.m.BasicAuth(Conn{Client: conns[i], CleanSession: true}, req); a != Allow {
			t.Fatal(a)
		}
	}
	used := heap() - before
	runtime.KeepAlive(conns)
	runtime.KeepAlive(r)
	return used / uint64(n)
}

// What the machine counts for metrics follows its sessions and each kind of lease event.
func TestStats(t *testing.T) {
	every := time.Minute
	for _, tc := range []struct {
		name string
		opt  Options
		run  func(r *rig)
		want Stats
	}{
		{"admitted and gone", Options{}, func(r *rig) {
			r.token("tok", time.Hour, "")
			r.auth("a", "dev-a", "tok", true)
			r.auth("b", "dev-b", "tok", true)
			r.auth("c", "dev-c", "forged", true)
			r.m.Disconnect(r.conn("a"), true)
			r.tick(0)
		}, Stats{Sessions: 1}},
		{"expired: kicked online, dropped offline, refused at a re-check", Options{DisconnectOnExpiry: true}, func(r *rig) {
			r.token("tok", time.Minute, "")
			r.auth("a", "dev-a", "tok", true)
			r.auth("b", "dev-b", "tok", false)
			r.m.Disconnect(r.conn("b"), false)
			r.auth("c", "dev-c", "tok", true)
			r.now = r.now.Add(time.Minute)
			r.auth("c", "dev-c", "tok", true) // the broker's re-check on SIGHUP, before the tick
			r.tick(0)
		}, Stats{Sessions: 1, Expired: 3}},
		{"revoked at a re-check", Options{Reintrospect: every}, func(r *rig) {
			r.opaque("tok", time.Hour)
			r.auth("a", "dev", "tok", true)
			r.tick(every)
			r.core.answerRechecks(map[string]bool{"tok": true}, nil)
			r.tick(0)
		}, Stats{Sessions: 1, Revoked: 1}},
		{"reauthenticated", Options{}, func(r *rig) {
			r.token("first", time.Hour, "")
			r.token("second", time.Hour, "")
			r.ext("a", "dev", "first")
			r.ext("a", "dev", "second")
		}, Stats{Sessions: 1, Reauthenticated: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opt)
			tc.run(r)
			if got := r.m.Stats(); got != tc.want {
				t.Errorf("stats %+v, want %+v", got, tc.want)
			}
		})
	}
}
