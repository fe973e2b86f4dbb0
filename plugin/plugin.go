// Command plugin is the Mosquitto plugin itself, built with -buildmode=c-shared into
// mosquitto-oauth2.so. It is the only package that uses cgo: plugin.c holds the entry points and
// trampolines, this file the Go side of them. Each export copies the event data it needs into Go
// values, asks the core (package auth), and maps the answer to a MOSQ_ERR code the broker accepts.
package main

/*
#include <stdint.h>
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"net"
	"runtime/cgo"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/doorbell"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
)

// tickNoMinimum is the next_ms every tick returns. Mosquitto 2.1 takes it as the least time before it
// may call the tick again; measured on 2.1.2, any value above 0 (even 1 ms, or asking for 1 ms only
// while answers are pending) held delayed answers back about 100 ms, because the interval a tick asked
// for before a check started still applied when the doorbell woke the loop. With 0 the tick runs at
// each wake-up, and an idle broker still sleeps (0.4% CPU measured). 2.0 ignores the field.
const tickNoMinimum = 0

// instance is the Go state of one plugin line, reached from C through a cgo.Handle kept in the
// broker's userdata. Nothing lives in package globals: the same .so may serve several listeners with
// different options.
type instance struct {
	engine *auth.Engine
	log    *logQueue
	// delay: checks that miss the cache run in the background and are completed in TICK (2.1).
	delay bool
	// accepted holds the answers of delayed checks between mosquitto_complete_basic_auth and the
	// CONNECT event it fires, keyed by client id, for the username and ACL session they carry; only the
	// broker thread touches it.
	accepted   map[string]auth.Decision
	completion []auth.Completion
	// sessions are the ACL sessions of the clients this instance admitted, by client pointer (a client
	// id can be taken over; the pointer is this connection's). Broker thread only. Empty without acl_*
	// options.
	sessions map[*C.struct_mosquitto]*auth.Session
	// kicks are clients to disconnect at the next tick: kicking from inside the CONNECT event would
	// pull the client out from under the broker while it is still setting it up.
	kicks []string
	// due makes the next tick call goTick; set whenever work for it is queued.
	due tickFlags
	// v21: the broker is Mosquitto 2.1 (it has delayed basic auth), whose DISCONNECT fires only for
	// sessions that end.
	v21 bool
	// byID is the connection each admitted client id has its session on; forgotten lists sessions to
	// drop once the broker is done with their connection's Will (see forget). Broker thread only.
	byID      map[string]*C.struct_mosquitto
	forgotten []forgotten
	// pending is the attempt number of each client id's delayed check; attempts counts them. A late
	// answer for a connection that left must not complete a new one with the same id. Broker thread only.
	pending  map[string]uint64
	attempts uint64
	// bell wakes the broker when a delayed answer is ready (see package doorbell). It is made on the
	// broker thread at the first delayed check, once a listener port is known, and read by goroutines.
	bell atomic.Pointer[doorbell.Bell]
}

// forgotten is a session to drop soon (see forget), unless its connection has another one by then.
type forgotten struct {
	client  *C.struct_mosquitto
	session *auth.Session
}

// ring wakes the broker to collect a delayed answer or a kick, once per tick however many there are;
// it may run on any goroutine.
func (inst *instance) ring() {
	if !inst.due.ring() {
		return
	}
	if b := inst.bell.Load(); b != nil {
		b.Ring()
	}
}

// ensureBell makes the doorbell on the first delayed check, for the listener this client came in on.
// Broker thread only.
func (inst *instance) ensureBell(client *C.struct_mosquitto) {
	if inst.bell.Load() != nil {
		return
	}
	port := int(C.oauth2_client_port(client))
	if port <= 0 {
		return
	}
	b, err := doorbell.New(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		inst.log.Log(auth.LevelWarning, "no doorbell, delayed answers wait for the broker's own tick: "+err.Error())
		return
	}
	b.Log = func(msg string) { inst.log.Log(auth.LevelWarning, msg) }
	inst.bell.Store(b)
}

//export goPluginInit
func goPluginInit(opts *C.struct_mosquitto_opt, count C.int, delayAvailable C.int, handle *C.uintptr_t, aclChecks *C.int, tickFlagsPtr *C.int) (rc C.int) {
	defer recoverTo(&rc, C.MOSQ_ERR_UNKNOWN, "plugin init")
	cfg, err := config.Parse(copyOptions(opts, count))
	if err != nil {
		logLine(auth.LevelError, "configuration error: "+err.Error())
		return C.MOSQ_ERR_INVAL
	}
	// Delayed checks need the broker's delayed basic auth (2.1) and no defer policy after
	// verification; otherwise checks run on the broker thread, on blocking sockets.
	delay := delayAvailable != 0 && auth.CanDelay(cfg)
	due := tickFlags{tickFlagsPtr}
	log := &logQueue{due: due}
	engine, err := auth.New(cfg, log, !delay)
	if err != nil {
		logLine(auth.LevelError, "configuration error: "+err.Error())
		return C.MOSQ_ERR_INVAL
	}
	inst := &instance{engine: engine, log: log, delay: delay, due: due, v21: delayAvailable != 0,
		accepted: make(map[string]auth.Decision), sessions: make(map[*C.struct_mosquitto]*auth.Session),
		byID: make(map[string]*C.struct_mosquitto), pending: make(map[string]uint64)}
	if engine.AuthorizesTopics() {
		*aclChecks = 1
	}
	mode := "delayed checks on cache misses"
	switch {
	case delayAvailable == 0:
		mode = "synchronous checks (this broker has no delayed basic auth)"
	case !delay:
		mode = "synchronous checks (a defer policy applies after verification, and a delayed check cannot defer)"
	default:
		engine.OnCompletion(inst.ring)
	}
	logLine(auth.LevelInfo, "loaded, "+mode+": "+cfg.Summary())
	*handle = C.uintptr_t(cgo.NewHandle(inst))
	return C.MOSQ_ERR_SUCCESS
}

//export goPluginCleanup
func goPluginCleanup(handle C.uintptr_t) {
	defer recoverTo(nil, 0, "plugin cleanup")
	h := cgo.Handle(handle)
	inst := h.Value().(*instance)
	inst.engine.Close()
	if b := inst.bell.Load(); b != nil {
		b.Close()
	}
	inst.log.flush()
	h.Delete()
}

//export goBasicAuth
func goBasicAuth(handle C.uintptr_t, client *C.struct_mosquitto, username, password *C.char) (rc C.int) {
	// A panic must refuse the client, never let it in and never return a code that drops it without a
	// CONNACK.
	defer recoverTo(&rc, C.MOSQ_ERR_AUTH, "basic auth")
	inst := cgo.Handle(handle).Value().(*instance)
	defer inst.log.flush()
	req := auth.Request{
		ClientID: goString(C.mosquitto_client_id(client)),
		Username: goString(username),
		Password: goString(password),
		Address:  goString(C.mosquitto_client_address(client)),
	}
	// This connection's previous answer, if any (Mosquitto's re-check on SIGHUP), no longer holds; and an
	// address freed by an earlier client must not lend its session to this one.
	inst.dropForgotten()
	inst.drop(client)
	if b := inst.bell.Load(); b != nil && b.Matches(req.ClientID, req.Password, req.Address) {
		return C.MOSQ_ERR_SUCCESS
	}
	d, known := inst.engine.FromMemory(req)
	if !known && inst.delay && inst.delayable(client, req) {
		if inst.engine.RenamesClients() {
			// Until the answer names the client, it must not act under the name it chose: ACL checks
			// that Mosquitto runs while completing the connection see an anonymous client instead.
			if err := setUsername(client, ""); err != nil {
				inst.log.Log(auth.LevelError, fmt.Sprintf("client %s: %v", logtext.Quote(req.ClientID), err))
				return C.MOSQ_ERR_AUTH
			}
		}
		inst.ensureBell(client)
		inst.attempts++
		req.Attempt = inst.attempts
		inst.pending[req.ClientID] = req.Attempt
		inst.engine.Start(req)
		return C.OAUTH2_ERR_AUTH_DELAYED
	}
	if !known {
		d = inst.engine.Verify(context.Background(), req)
	}
	return inst.answer(client, req.ClientID, d)
}

// delayable says whether this check may be delayed. Not when the client is already connected (the
// broker's re-check on SIGHUP expects an answer, and the client must keep its name), and not for a
// renamed client resuming a persistent session: the broker re-checks its queued messages before the
// CONNECT event that would give it its name, and would drop them.
// The same holds for a persistent client when ACL sessions are on: its queued messages would be checked
// before it has one.
func (inst *instance) delayable(client *C.struct_mosquitto, req auth.Request) bool {
	if req.ClientID == "" || C.oauth2_client_registered(client) != 0 {
		return false
	}
	return !(inst.engine.RenamesClients() || inst.engine.AuthorizesTopics()) || bool(C.mosquitto_client_clean_session(client))
}

// admit gives client its ACL session. An older connection with the same client id (a takeover, or a
// persistent session's connection that was never freed from our maps) loses its own, but not at once:
// on a takeover the broker sends the old connection's Will after this BASIC_AUTH.
func (inst *instance) admit(client *C.struct_mosquitto, s *auth.Session) {
	if old, ok := inst.byID[s.ClientID()]; ok && old != client {
		inst.forget(old)
	}
	inst.sessions[client] = s
	inst.byID[s.ClientID()] = client
}

// forget queues the session of client to be dropped after the broker is done with the connection's
// Will: at the next tick, or at the start of the next BASIC_AUTH or DISCONNECT (2.0.11 to 2.0.14 send
// no tick with per_listener_settings true), whichever comes first.
func (inst *instance) forget(client *C.struct_mosquitto) {
	if s, ok := inst.sessions[client]; ok {
		inst.forgotten = append(inst.forgotten, forgotten{client, s})
		inst.due.set()
	}
}

// dropForgotten drops the sessions forget queued, unless their connection got another one since.
func (inst *instance) dropForgotten() {
	for _, f := range inst.forgotten {
		if inst.sessions[f.client] == f.session {
			inst.drop(f.client)
		}
	}
	clear(inst.forgotten)
	inst.forgotten = inst.forgotten[:0]
}

// drop removes the session of client, if any.
func (inst *instance) drop(client *C.struct_mosquitto) {
	s, ok := inst.sessions[client]
	if !ok {
		return
	}
	delete(inst.sessions, client)
	if inst.byID[s.ClientID()] == client {
		delete(inst.byID, s.ClientID())
	}
}

// answer applies a decision to a client in BASIC_AUTH and maps it to the broker's code.
func (inst *instance) answer(client *C.struct_mosquitto, clientID string, d auth.Decision) C.int {
	if d.Rename && d.Result == auth.Allow {
		if err := setUsername(client, d.Username); err != nil {
			inst.log.Log(auth.LevelError, fmt.Sprintf("client %s: %v", logtext.Quote(clientID), err))
			return C.MOSQ_ERR_AUTH
		}
	}
	if d.Result == auth.Allow && d.Session != nil {
		inst.admit(client, d.Session)
	}
	switch d.Result {
	case auth.Allow:
		return C.MOSQ_ERR_SUCCESS
	case auth.Defer:
		return C.MOSQ_ERR_PLUGIN_DEFER
	}
	return C.MOSQ_ERR_AUTH
}

// goTick runs on the broker thread, on ticks after work was queued for it (the tick flags, see plugin.c):
// it drops forgotten sessions, completes delayed checks and kicks, and writes queued log lines. It returns next_ms for Mosquitto 2.1
// (see tickNoMinimum).
//
//export goTick
func goTick(handle C.uintptr_t) (next C.long) {
	next = tickNoMinimum
	defer recoverTo(nil, 0, "tick")
	inst := cgo.Handle(handle).Value().(*instance)
	defer inst.log.flush()
	inst.dropForgotten()
	if !inst.delay {
		return next
	}
	for _, id := range inst.kicks {
		kick(id)
	}
	inst.kicks = inst.kicks[:0]
	inst.completion = inst.engine.Completed(inst.completion[:0])
	// The reasons for these answers are already queued: write them before the CONNACKs go out, so the
	// log reads in the same order as on 2.0.
	inst.log.flush()
	for _, c := range inst.completion {
		inst.complete(c)
	}
	clear(inst.completion)
	return next
}

// complete hands one delayed answer to the broker; see completeOne. A panic refuses that client and
// leaves the other answers of the tick to be given.
func (inst *instance) complete(c auth.Completion) {
	defer func() {
		if r := recover(); r != nil {
			logLine(auth.LevelError, fmt.Sprintf("internal error completing client %s: %v", logtext.Quote(c.ClientID), r))
			id := C.CString(c.ClientID)
			defer C.free(unsafe.Pointer(id))
			C.oauth2_complete_basic_auth(id, C.MOSQ_ERR_AUTH)
		}
	}()
	inst.completeOne(c)
}

// completeOne hands one delayed answer to the broker. mosquitto_complete_basic_auth looks the client up
// by id, so a client that left meanwhile is simply not found, and an answer for an earlier connection
// with the same id is dropped (the later one's own answer follows). On success the broker fires the
// CONNECT event from inside the call, where goConnect applies the username and the ACL session.
func (inst *instance) completeOne(c auth.Completion) {
	if inst.pending[c.ClientID] != c.Attempt {
		return
	}
	delete(inst.pending, c.ClientID)
	rc := C.int(C.MOSQ_ERR_AUTH)
	if c.Decision.Result == auth.Allow {
		rc = C.MOSQ_ERR_SUCCESS
		if c.Decision.Rename || c.Decision.Session != nil {
			inst.accepted[c.ClientID] = c.Decision
			defer delete(inst.accepted, c.ClientID)
		}
	}
	id := C.CString(c.ClientID)
	defer C.free(unsafe.Pointer(id))
	C.oauth2_complete_basic_auth(id, rc)
}

// goConnect (Mosquitto 2.1) gives a client accepted by a delayed check the username its token renders
// and its ACL session. If the rename fails the client is kicked: it must not stay connected under a
// name it chose itself.
//
//export goConnect
func goConnect(handle C.uintptr_t, client *C.struct_mosquitto) {
	defer recoverTo(nil, 0, "connect")
	inst := cgo.Handle(handle).Value().(*instance)
	defer inst.log.flush()
	id := goString(C.mosquitto_client_id(client))
	d, ok := inst.accepted[id]
	if !ok {
		return
	}
	delete(inst.accepted, id)
	if d.Session != nil {
		inst.admit(client, d.Session)
	}
	if !d.Rename {
		return
	}
	if err := setUsername(client, d.Username); err != nil {
		inst.drop(client)
		inst.log.Log(auth.LevelError, fmt.Sprintf("client %s: %v; disconnecting it", logtext.Quote(id), err))
		inst.kicks = append(inst.kicks, id)
		inst.ring()
	}
}

// goACLCheck decides one ACL check from the client's session, in memory. It runs for every PUBLISH and
// every delivery, so it reads the client id and topic in place (from the broker, valid during the call)
// and allocates nothing. A session made for another client id is not used: an address can be reused by
// a client this plugin never saw. A panic denies, except for UNSUBSCRIBE, which must always succeed.
//
//export goACLCheck
func goACLCheck(handle C.uintptr_t, client *C.struct_mosquitto, clientID *C.char, idLen C.size_t, topic *C.char, topicLen C.size_t, access C.int, qos C.uint8_t, retain C.bool) (rc C.int) {
	failRC := C.int(C.MOSQ_ERR_ACL_DENIED)
	if access == C.MOSQ_ACL_UNSUBSCRIBE {
		failRC = C.MOSQ_ERR_SUCCESS
	}
	defer recoverTo(&rc, failRC, "ACL check")
	inst := cgo.Handle(handle).Value().(*instance)
	s := inst.sessions[client]
	if s != nil && s.ClientID() != unsafe.String((*byte)(unsafe.Pointer(clientID)), int(idLen)) {
		s = nil
	}
	t := unsafe.String((*byte)(unsafe.Pointer(topic)), int(topicLen))
	switch inst.engine.Authorize(s, acl.Access(access), t, byte(qos), bool(retain)) {
	case auth.Allow:
		return C.MOSQ_ERR_SUCCESS
	case auth.Defer:
		return C.MOSQ_ERR_PLUGIN_DEFER
	}
	return C.MOSQ_ERR_ACL_DENIED
}

// goDisconnect forgets the ACL session of a connection that ends for good, after this event: the broker
// sends the client's Will right after it, and the Will's check needs the session (see forget). Sessions
// forgotten earlier go now: their Wills are sent. Mosquitto 2.1 fires DISCONNECT only for sessions that
// end. 2.0 fires it for persistent sessions too (clean session off), whose session is kept there while
// the broker queues messages for the offline client (until the token's exp); it goes when the client id
// is admitted again. Checks compare the client id, so an address reused by a client this plugin did not
// admit never gets a session that was left behind.
//
//export goDisconnect
func goDisconnect(handle C.uintptr_t, client *C.struct_mosquitto) {
	defer recoverTo(nil, 0, "disconnect")
	inst := cgo.Handle(handle).Value().(*instance)
	inst.dropForgotten()
	if inst.v21 || bool(C.mosquitto_client_clean_session(client)) {
		inst.forget(client)
	}
}

// recoverTo turns a panic into a log line and, when rc is not nil, the fail-closed code failRC.
func recoverTo(rc *C.int, failRC C.int, where string) {
	if r := recover(); r != nil {
		logLine(auth.LevelError, fmt.Sprintf("internal error in %s: %v", where, r))
		if rc != nil {
			*rc = failRC
		}
	}
}

func copyOptions(opts *C.struct_mosquitto_opt, count C.int) []config.Option {
	if opts == nil || count <= 0 {
		return nil
	}
	out := make([]config.Option, 0, int(count))
	for _, o := range unsafe.Slice(opts, int(count)) {
		out = append(out, config.Option{Key: goString(o.key), Value: goString(o.value)})
	}
	return out
}

// goString copies a broker string, which may be NULL, into Go memory.
func goString(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}

func main() {}
