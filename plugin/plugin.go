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
	"runtime/cgo"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
	"github.com/mosquitto-oauth2/mosquitto-oauth2/config"
)

// instance is the Go state of one plugin line, reached from C through a cgo.Handle kept in the
// broker's userdata. Nothing lives in package globals: the same .so may serve several listeners with
// different options.
type instance struct {
	engine *auth.Engine
}

//export goPluginInit
func goPluginInit(opts *C.struct_mosquitto_opt, count C.int, handle *C.uintptr_t) (rc C.int) {
	defer recoverTo(&rc, C.MOSQ_ERR_UNKNOWN, "plugin init")
	cfg, err := config.Parse(copyOptions(opts, count))
	if err != nil {
		logLine(auth.LevelError, "configuration error: "+err.Error())
		return C.MOSQ_ERR_INVAL
	}
	engine, err := auth.New(cfg, brokerLog{})
	if err != nil {
		logLine(auth.LevelError, "configuration error: "+err.Error())
		return C.MOSQ_ERR_INVAL
	}
	logLine(auth.LevelInfo, "loaded: "+cfg.Summary())
	*handle = C.uintptr_t(cgo.NewHandle(&instance{engine: engine}))
	return C.MOSQ_ERR_SUCCESS
}

//export goPluginCleanup
func goPluginCleanup(handle C.uintptr_t) {
	defer recoverTo(nil, 0, "plugin cleanup")
	cgo.Handle(handle).Delete()
}

//export goBasicAuth
func goBasicAuth(handle C.uintptr_t, client *C.struct_mosquitto, username, password *C.char) (rc C.int) {
	// A panic must refuse the client, never let it in and never return a code that drops it without a
	// CONNACK.
	defer recoverTo(&rc, C.MOSQ_ERR_AUTH, "basic auth")
	inst := cgo.Handle(handle).Value().(*instance)
	req := auth.Request{
		ClientID: goString(C.mosquitto_client_id(client)),
		Username: goString(username),
		Password: goString(password),
		Address:  goString(C.mosquitto_client_address(client)),
	}
	d := inst.engine.Authenticate(context.Background(), req)
	if d.Rename && d.Result == auth.Allow {
		if err := setUsername(client, d.Username); err != nil {
			logLine(auth.LevelError, fmt.Sprintf("client %q: %v", req.ClientID, err))
			return C.MOSQ_ERR_AUTH
		}
	}
	switch d.Result {
	case auth.Allow:
		return C.MOSQ_ERR_SUCCESS
	case auth.Defer:
		return C.MOSQ_ERR_PLUGIN_DEFER
	}
	return C.MOSQ_ERR_AUTH
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
