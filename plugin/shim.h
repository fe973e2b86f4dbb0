// Declarations shared by plugin.c and the Go files' cgo preambles.
#ifndef MOSQUITTO_OAUTH2_SHIM_H
#define MOSQUITTO_OAUTH2_SHIM_H

#include <stdbool.h>
#include <stddef.h>
// 2.0.11's mosquitto_plugin.h uses mosquitto_plugin_id_t without including mosquitto_broker.h.
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>

// Mosquitto 2.1 additions, declared here because the plugin builds against the 2.0 headers and finds
// them at load time (see oauth2_delay_available).
#define OAUTH2_ERR_AUTH_DELAYED (-5)
#define OAUTH2_EVT_CONNECT 11
struct oauth2_evt_connect {
	void *future;
	struct mosquitto *client;
	void *future2[4];
};

#define OAUTH2_EVT_CLIENT_OFFLINE 28
struct oauth2_evt_client_offline {
	void *future;
	struct mosquitto *client;
	int reason;
	void *future2[4];
};

// Bits of an instance's tick flags (see struct instance in plugin.c).
#define OAUTH2_TICK_WORK 1
#define OAUTH2_TICK_RUNG 2

// oauth2_log logs one line through the broker. mosquitto_log_printf is variadic, which cgo cannot call,
// and msg must never be used as a format string.
void oauth2_log(int level, const char *msg);

// oauth2_delay_available says whether the broker has mosquitto_complete_basic_auth, mosquitto_client
// and mosquitto_client_port (Mosquitto 2.1).
int oauth2_delay_available(void);

// oauth2_client_registered says whether client is already in the broker's table of connected clients:
// its BASIC_AUTH is then Mosquitto's re-check on SIGHUP, not a new connection. Needs 2.1.
int oauth2_client_registered(struct mosquitto *client);

// oauth2_client_port is the port of the listener the client came in on (2.1), 0 if unknown.
int oauth2_client_port(struct mosquitto *client);

// oauth2_complete_basic_auth answers a delayed check; call only when oauth2_delay_available.
void oauth2_complete_basic_auth(const char *client_id, int result);

#endif
