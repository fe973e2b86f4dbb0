package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/mosquitto-oauth2/mosquitto-oauth2/auth"
)

// brokerLog is the core's Logger, writing through the broker's log so log_dest and log_type apply.
// The broker's functions may only be called on its own thread; every caller in this plugin runs inside
// a broker callback.
type brokerLog struct{}

func (brokerLog) Log(level auth.Level, msg string) { logLine(level, msg) }

var brokerLevels = [...]C.int{
	auth.LevelDebug:   C.MOSQ_LOG_DEBUG,
	auth.LevelInfo:    C.MOSQ_LOG_INFO,
	auth.LevelNotice:  C.MOSQ_LOG_NOTICE,
	auth.LevelWarning: C.MOSQ_LOG_WARNING,
	auth.LevelError:   C.MOSQ_LOG_ERR,
}

func logLine(level auth.Level, msg string) {
	cs := C.CString(msg)
	defer C.free(unsafe.Pointer(cs))
	C.oauth2_log(brokerLevels[level], cs)
}

// setUsername gives the client its new name. The broker copies the string and re-reads its acl_file
// entries for the client, so %u patterns see the new name from the first ACL check on.
func setUsername(client *C.struct_mosquitto, name string) error {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	if rc := C.mosquitto_set_username(client, cs); rc != C.MOSQ_ERR_SUCCESS {
		return fmt.Errorf("mosquitto_set_username failed with code %d", int(rc))
	}
	return nil
}
