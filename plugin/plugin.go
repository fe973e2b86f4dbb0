// Command plugin is the Mosquitto plugin itself, built with -buildmode=c-shared into
// mosquitto-oauth2.so. It is the only package that uses cgo: plugin.c holds the entry points and
// trampolines, this file the Go side of them. Each export copies the event data it needs into Go
// values and hands it to the instance's session machine (package sessions), which decides with the core
// (package auth) and asks for broker calls through the Broker this package implements (broker.go).
package main

/*
// The broker's functions resolve when Mosquitto loads the plugin. Only `go build ./...`, which links
// every main package as a program, needs telling that they are not missing.
#cgo LDFLAGS: -Wl,--unresolved-symbols=ignore-all
#include <stdint.h>
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"runtime/cgo"
	"time"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/acl"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/sessions"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/wake"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/yield"
)

// tickNoMinimum is the next_ms every tick returns. Mosquitto 2.1 takes it as the least time before it
// may call the tick again; measured on 2.1.2, any value above 0 (even 1 ms, or asking for 1 ms only
// while answers are pending) held delayed answers back about 100 ms, because the interval a tick asked
// for before a check started still applied when the loop was woken for its answer. With 0 the tick runs
// at each wake-up, and an idle broker still sleeps (0.4% CPU measured). 2.0 ignores the field.
const tickNoMinimum = 0

// instance is the Go state of one plugin line. Nothing lives in package globals: the same .so may
// serve several listeners with different options. C reaches it through a pointer in the broker's
// userdata (struct instance in plugin.c), which every callback hands back: following it costs
// nothing, where looking up a cgo.Handle is a sync.Map load on every message. The pointer is pinned,
// which is what lets C memory hold it, and the garbage collector, which does not see C memory, is
// kept from freeing the instance by its handle (see goPluginInit and goPluginCleanup).
type instance struct {
	self    cgo.Handle     // keeps the instance reachable while C holds its pointer
	pin     runtime.Pinner // lets C hold its pointer
	engine  *auth.Engine
	machine *sessions.Machine
	log     *auth.LogQueue
	due     tickFlags // makes the next tick call goTick; set whenever work for it is queued
	v21     bool      // Mosquitto 2.1: DISCONNECT fires only for sessions that end
	delay   bool      // checks that miss the cache are delayed (2.1)
	// alarm wakes the broker thread when a delayed answer, a lease's end or a re-check's outcome is
	// ready (see package wake); nil on 2.0, whose loop turns every 100 ms anyway, and where the broker
	// thread cannot be woken.
	alarm *wake.Alarm
	// foreign answers the checks the broker makes on its other threads (2.1's HTTP API).
	foreign *sessions.Foreign
	metrics instanceMetrics
	pacer   yield.Pacer // the broker thread's passes through the Go scheduler (see yieldIfDue)
}

// ring makes the next tick do its work and wakes the broker thread for it, once per tick however many
// things are due; it may run on any goroutine.
func (inst *instance) ring() {
	if inst.due.ring() && inst.alarm != nil {
		inst.alarm.Ring()
	}
}

// startAlarm makes the alarm that wakes Mosquitto 2.1's broker thread, or says plainly why there is none
// and what that costs.
func (inst *instance) startAlarm() {
	why := ""
	switch C.oauth2_wake_init() {
	case C.OAUTH2_WAKE_OK:
		inst.alarm = wake.New(func() { C.oauth2_wake() }, inst.due.ticked)
		return
	case C.OAUTH2_WAKE_BLOCKED:
		why = "SIGWINCH is blocked on the broker's thread: start mosquitto with it unblocked"
	case C.OAUTH2_WAKE_TAKEN:
		why = "SIGWINCH has a handler already (another plugin's?): it is the signal this plugin wakes the broker with"
	default:
		why = "the broker's thread is not known"
	}
	logLine(auth.LevelWarning, "cannot wake the broker: "+why+"; delayed answers, expiry kicks and "+
		"re-check outcomes wait for the broker's own wake-ups (up to 100 ms with websockets built in, "+
		"longer without)")
}

//export goPluginInit
func goPluginInit(opts *C.struct_mosquitto_opt, count C.int, delayAvailable C.int, goInst *unsafe.Pointer, aclChecks, extAuth *C.int, tickFlagsPtr *C.int) (rc C.int) {
	defer recoverTo(&rc, C.MOSQ_ERR_UNKNOWN, "plugin init")
	cfg, err := config.Parse(copyOptions(opts, count))
	if err != nil {
		logLine(auth.LevelError, "configuration error: "+err.Error())
		return C.MOSQ_ERR_INVAL
	}
	// Delayed checks need the broker's delayed basic auth (2.1) and no defer policy after
	// verification; otherwise checks run on the broker thread, on blocking sockets.
	v21 := delayAvailable != 0
	delay := v21 && auth.CanDelay(cfg)
	due := tickFlags{tickFlagsPtr}
	log := &auth.LogQueue{Queued: due.set}
	engine, err := auth.New(cfg, log, !delay)
	if err != nil {
		logLine(auth.LevelError, "configuration error: "+err.Error())
		return C.MOSQ_ERR_INVAL
	}
	inst := &instance{engine: engine, log: log, due: due, v21: v21, delay: delay,
		foreign: sessions.NewForeign(engine)}
	if v21 {
		inst.startAlarm()
	}
	inst.machine = sessions.New(engine, brokerCalls{inst}, sessions.Options{
		Delay: delay, DisconnectOnExpiry: cfg.DisconnectOnExpiry, Reintrospect: cfg.ReintrospectionInterval,
		Wake: inst.ring, Log: log})
	// Delayed answers (2.1) and re-checks of connected clients (2.0 and 2.1) are collected at a tick.
	engine.OnCompletion(inst.ring)
	if engine.AuthorizesTopics() {
		*aclChecks = 1
	}
	if len(cfg.EnhancedAuthMethods) > 0 {
		*extAuth = 1
	}
	if err := inst.startMetrics(cfg); err != nil {
		logLine(auth.LevelError, "configuration error: "+err.Error())
		inst.stop()
		return C.MOSQ_ERR_INVAL
	}
	logLine(auth.LevelInfo, "loaded, "+auth.Mode(v21, delay)+": "+cfg.Summary())
	inst.self = cgo.NewHandle(inst)
	inst.pin.Pin(inst)
	*goInst = unsafe.Pointer(inst)
	return C.MOSQ_ERR_SUCCESS
}

//export goPluginCleanup
func goPluginCleanup(goInst unsafe.Pointer) {
	defer recoverTo(nil, 0, "plugin cleanup")
	inst := (*instance)(goInst)
	inst.stop()
	inst.log.Flush(logLine)
	inst.pin.Unpin()
	inst.self.Delete()
}

// stop ends the instance's goroutines, timers and listeners: at cleanup, and when start-up fails after
// they were started.
func (inst *instance) stop() {
	inst.stopMetrics()
	inst.machine.Close()
	inst.engine.Close()
	if inst.alarm != nil {
		inst.alarm.Close()
	}
}

// goBasicAuth decides a CONNECT's username and password on the broker thread. plugin.c reads the
// client's id, address, clean session and whether the broker already lists it (2.1), since each call
// from here into C would be a crossing of its own on every CONNECT.
//
//export goBasicAuth
func goBasicAuth(goInst unsafe.Pointer, client *C.struct_mosquitto, clientID, username, password, address *C.char, registered C.int, clean C.bool) (rc C.int) {
	// A panic must refuse the client, never let it in and never return a code that drops it without a
	// CONNACK.
	defer recoverTo(&rc, C.MOSQ_ERR_AUTH, "basic auth")
	inst := (*instance)(goInst)
	defer inst.log.Flush(logLine)
	inst.yieldIfDue()
	req := auth.Request{
		ClientID: goString(clientID),
		Username: goString(username),
		Password: goString(password),
		Address:  goString(address),
	}
	conn := sessions.Conn{
		Client:       sessions.Client(unsafe.Pointer(client)),
		Registered:   inst.v21 && registered != 0,
		CleanSession: bool(clean),
	}
	return authRC(inst.machine.BasicAuth(conn, req))
}

// goForeignBasicAuth decides a BASIC_AUTH made on a thread other than the broker's, for a client the broker
// made up (Mosquitto 2.1's HTTP API): at once, on the calling thread, without a session. thread
// identifies the calling thread. Its log lines wait for the next tick, since only the broker thread may
// log.
//
//export goForeignBasicAuth
func goForeignBasicAuth(goInst unsafe.Pointer, thread C.uintptr_t, client *C.struct_mosquitto, username, password *C.char) (rc C.int) {
	inst := (*instance)(goInst)
	defer recoverQueued(&rc, C.MOSQ_ERR_AUTH, "HTTP API basic auth", inst.log)
	req := auth.Request{
		ClientID: goString(C.mosquitto_client_id(client)),
		Username: goString(username),
		Password: goString(password),
		Address:  goString(C.mosquitto_client_address(client)),
	}
	return authRC(inst.foreign.BasicAuth(uintptr(thread), sessions.Client(unsafe.Pointer(client)), req))
}

// goForeignACLCheck decides an ACL check made on a thread other than the broker's (2.1's HTTP API asks
// read access to the URL path).
//
//export goForeignACLCheck
func goForeignACLCheck(goInst unsafe.Pointer, thread C.uintptr_t, client *C.struct_mosquitto, topic *C.char, topicLen C.size_t, access C.int) (rc C.int) {
	inst := (*instance)(goInst)
	defer recoverQueued(&rc, C.MOSQ_ERR_ACL_DENIED, "HTTP API ACL check", inst.log)
	t := C.GoStringN(topic, C.int(topicLen))
	return aclRC(inst.foreign.ACLCheck(uintptr(thread), sessions.Client(unsafe.Pointer(client)), acl.Access(access), t))
}

// authRC maps the machine's answer to the codes BASIC_AUTH and EXT_AUTH_START may return: any other
// code would drop the client without a CONNACK.
func authRC(a sessions.Answer) C.int {
	switch a {
	case sessions.Allow:
		return C.MOSQ_ERR_SUCCESS
	case sessions.Defer:
		return C.MOSQ_ERR_PLUGIN_DEFER
	case sessions.Delayed:
		return C.OAUTH2_ERR_AUTH_DELAYED
	}
	return C.MOSQ_ERR_AUTH
}

// goExtAuthStart decides an MQTT 5 CONNECT with an Authentication Method, or a re-authentication.
// A method the plugin does not take is deferred: the broker answers "bad authentication method".
//
//export goExtAuthStart
func goExtAuthStart(goInst unsafe.Pointer, client *C.struct_mosquitto, method *C.char, data unsafe.Pointer, dataLen C.uint16_t) (rc C.int) {
	defer recoverTo(&rc, C.MOSQ_ERR_AUTH, "extended auth")
	inst := (*instance)(goInst)
	defer inst.log.Flush(logLine)
	req := auth.Request{
		ClientID: goString(C.mosquitto_client_id(client)),
		Username: goString(C.mosquitto_client_username(client)),
		Address:  goString(C.mosquitto_client_address(client)),
	}
	conn := sessions.Conn{Client: sessions.Client(unsafe.Pointer(client)), CleanSession: bool(C.mosquitto_client_clean_session(client))}
	return authRC(inst.machine.ExtendedAuth(conn, goString(method), C.GoBytes(data, C.int(dataLen)), req))
}

// goTick runs on the broker thread, on ticks after work was queued for it (the tick flags, see
// plugin.c). It returns next_ms for Mosquitto 2.1 (see tickNoMinimum).
//
//export goTick
func goTick(goInst unsafe.Pointer) (next C.long) {
	next = tickNoMinimum
	defer recoverTo(nil, 0, "tick")
	inst := (*instance)(goInst)
	defer inst.log.Flush(logLine)
	inst.machine.Tick()
	inst.publishSys()
	return next
}

// goReload handles RELOAD (SIGHUP) on the broker thread: the engine re-reads client_secret_file and
// ca_file and starts a key fetch (see auth.Engine.Reload). Sessions are kept; the broker's re-check of
// every client, which follows, is answered by their leases. The code returned to the broker is
// plugin.c's.
//
//export goReload
func goReload(goInst unsafe.Pointer) {
	defer recoverTo(nil, 0, "reload")
	inst := (*instance)(goInst)
	defer inst.log.Flush(logLine)
	inst.engine.Reload()
}

// goConnect (Mosquitto 2.1's CONNECT event) gives a client accepted by a delayed check its username and
// session.
//
//export goConnect
func goConnect(goInst unsafe.Pointer, client *C.struct_mosquitto) {
	defer recoverTo(nil, 0, "connect")
	inst := (*instance)(goInst)
	defer inst.log.Flush(logLine)
	inst.machine.Connect(sessions.Client(unsafe.Pointer(client)), goString(C.mosquitto_client_id(client)))
}

// goACLCheck decides one ACL check. It runs for every PUBLISH and every delivery, so it reads the client
// id and topic in place (from the broker, valid during the call), takes the time of the check from C
// (nanoseconds since the Unix epoch, see wall_ns) and allocates nothing. A panic denies, except for
// UNSUBSCRIBE, which must always succeed.
//
// until receives when the answer stops holding, in ns since the Unix epoch: the token's exp for an answer
// made before it, math.MaxInt64 (never, as far as time goes) otherwise (see sessions.Machine.ACLCheck).
// It is written only once the answer is made: after a panic it keeps the caller's value, and plugin.c
// passes 0, which holds for no time.
//
//export goACLCheck
func goACLCheck(goInst unsafe.Pointer, client *C.struct_mosquitto, clientID *C.char, idLen C.size_t, topic *C.char, topicLen C.size_t, access C.int, qos C.uint8_t, retain C.bool, now C.int64_t, until *C.int64_t) (rc C.int) {
	failRC := C.int(C.MOSQ_ERR_ACL_DENIED)
	if access == C.MOSQ_ACL_UNSUBSCRIBE {
		failRC = C.MOSQ_ERR_SUCCESS
	}
	defer recoverTo(&rc, failRC, "ACL check")
	inst := (*instance)(goInst)
	id := unsafe.String((*byte)(unsafe.Pointer(clientID)), int(idLen))
	t := unsafe.String((*byte)(unsafe.Pointer(topic)), int(topicLen))
	r, holds := inst.machine.ACLCheck(sessions.Client(unsafe.Pointer(client)), id, acl.Access(access), t, byte(qos), bool(retain), time.Unix(0, int64(now)))
	*until = math.MaxInt64
	if !holds.IsZero() && holds.Before(maxWall) { // an exp past 2262 does not fit: it is never reached
		*until = C.int64_t(holds.UnixNano())
	}
	return aclRC(r)
}

// maxWall is the last time goACLCheck's until can express.
var maxWall = time.Unix(0, math.MaxInt64)

// aclRC maps a result to the codes ACL_CHECK may return: any other code disconnects a publisher.
func aclRC(r auth.Result) C.int {
	switch r {
	case auth.Allow:
		return C.MOSQ_ERR_SUCCESS
	case auth.Defer:
		return C.MOSQ_ERR_PLUGIN_DEFER
	}
	return C.MOSQ_ERR_ACL_DENIED
}

// goDisconnect handles DISCONNECT, and Mosquitto 2.1's CLIENT_OFFLINE (offline set) for persistent
// sessions. 2.1 fires DISCONNECT only for sessions that end; 2.0 fires it for every connection, and its
// session ends with it when clean session is on (clean, read by plugin.c).
//
//export goDisconnect
func goDisconnect(goInst unsafe.Pointer, client *C.struct_mosquitto, offline C.int, clean C.bool) {
	defer recoverTo(nil, 0, "disconnect")
	inst := (*instance)(goInst)
	defer inst.log.Flush(logLine)
	inst.yieldIfDue()
	ends := offline == 0 && (inst.v21 || bool(clean))
	inst.machine.Disconnect(sessions.Client(unsafe.Pointer(client)), ends)
}

// yieldIfDue passes the broker thread through the Go scheduler when pacer says so (see package
// yield), on the callbacks every connection makes. Broker thread only.
func (inst *instance) yieldIfDue() {
	if inst.pacer.Due(time.Now()) {
		runtime.Gosched()
	}
}

// recoverTo turns a panic into a log line and, when rc is not nil, the fail-closed code failRC. Broker
// thread only.
func recoverTo(rc *C.int, failRC C.int, where string) {
	if r := recover(); r != nil {
		logLine(auth.LevelError, failed(where, r))
		if rc != nil {
			*rc = failRC
		}
	}
}

// recoverQueued is recoverTo for the broker's other threads: the line waits in q for the next tick.
func recoverQueued(rc *C.int, failRC C.int, where string, q *auth.LogQueue) {
	if r := recover(); r != nil {
		q.Log(auth.LevelError, failed(where, r))
		*rc = failRC
	}
}

func failed(where string, r any) string { return fmt.Sprintf("internal error in %s: %v", where, r) }

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
