package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/logtext"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/sessions"
)

// tickFlags points at the instance's tick flags in C memory (see struct instance in plugin.c). A nil
// tickFlags does nothing.
type tickFlags struct{ p *C.int }

// set makes the next tick call goTick.
func (f tickFlags) set() {
	if f.p != nil {
		atomic.OrInt32((*int32)(unsafe.Pointer(f.p)), C.OAUTH2_TICK_WORK)
	}
}

// ring makes the next tick call goTick and says whether the broker thread must be woken: only for the
// first answer since the last tick, since one wake-up collects them all. Every tick clears the flags,
// so the next answer after it wakes the thread again.
func (f tickFlags) ring() bool {
	if f.p == nil {
		return false
	}
	old := atomic.OrInt32((*int32)(unsafe.Pointer(f.p)), C.OAUTH2_TICK_WORK|C.OAUTH2_TICK_RUNG)
	return old&C.OAUTH2_TICK_RUNG == 0
}

// ticked says whether a tick has run since the last ring.
func (f tickFlags) ticked() bool {
	return atomic.LoadInt32((*int32)(unsafe.Pointer(f.p)))&C.OAUTH2_TICK_RUNG == 0
}

var brokerLevels = [...]C.int{
	auth.LevelDebug:   C.MOSQ_LOG_DEBUG,
	auth.LevelInfo:    C.MOSQ_LOG_INFO,
	auth.LevelNotice:  C.MOSQ_LOG_NOTICE,
	auth.LevelWarning: C.MOSQ_LOG_WARNING,
	auth.LevelError:   C.MOSQ_LOG_ERR,
}

// logLine writes through the broker's log so log_dest and log_type apply. Broker thread only. Values a
// client or the IdP chose are quoted where the line is made; logtext.Line is the last guard, so no
// line of ours can ever become two.
func logLine(level auth.Level, msg string) {
	cs := C.CString(logtext.Line(msg))
	defer C.free(unsafe.Pointer(cs))
	C.oauth2_log(brokerLevels[level], cs)
}

// brokerCalls is the session machine's Broker: the broker's functions, called on the broker thread.
type brokerCalls struct{ inst *instance }

// SetUsername gives the client its new name ("" makes it anonymous). The broker copies the string and
// re-reads its acl_file entries for the client, so %u patterns see the new name from the first ACL check
// on.
func (brokerCalls) SetUsername(c sessions.Client, name string) error {
	var cs *C.char
	if name != "" {
		cs = C.CString(name)
		defer C.free(unsafe.Pointer(cs))
	}
	if rc := C.mosquitto_set_username((*C.struct_mosquitto)(c), cs); rc != C.MOSQ_ERR_SUCCESS {
		return fmt.Errorf("mosquitto_set_username failed with code %d", int(rc))
	}
	return nil
}

// Kick disconnects a client by id, without its Will: a client whose lease ended has no authority left
// to publish one.
func (brokerCalls) Kick(clientID string) {
	cs := C.CString(clientID)
	defer C.free(unsafe.Pointer(cs))
	C.mosquitto_kick_client_by_clientid(cs, false)
}

// Complete answers a delayed check (2.1).
func (brokerCalls) Complete(clientID string, allow bool) {
	rc := C.int(C.MOSQ_ERR_AUTH)
	if allow {
		rc = C.MOSQ_ERR_SUCCESS
	}
	cs := C.CString(clientID)
	defer C.free(unsafe.Pointer(cs))
	C.oauth2_complete_basic_auth(cs, rc)
}

func (b brokerCalls) FlushLog() { b.inst.log.Flush(logLine) }
