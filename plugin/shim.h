// Declarations shared by plugin.c and the Go files' cgo preambles.
#ifndef MOSQUITTO_OAUTH2_SHIM_H
#define MOSQUITTO_OAUTH2_SHIM_H

#include <stdbool.h>
#include <stddef.h>
// 2.0.11's mosquitto_plugin.h uses mosquitto_plugin_id_t without including mosquitto_broker.h.
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>

// oauth2_log logs one line through the broker. mosquitto_log_printf is variadic, which cgo cannot call,
// and msg must never be used as a format string.
void oauth2_log(int level, const char *msg);

#endif
