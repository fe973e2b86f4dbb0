// Declarations shared by plugin.c and the Go files' cgo preambles.
#ifndef MOSQUITTO_OAUTH2_SHIM_H
#define MOSQUITTO_OAUTH2_SHIM_H

#include <stdbool.h>
#include <signal.h>
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

// The signal that wakes the broker thread from its wait (see oauth2_wake). SIGWINCH: Mosquitto does not
// use it, the Go runtime leaves it alone in a shared library, and its default action is to ignore it,
// so a stray one can never end the broker.
#define OAUTH2_WAKE_SIGNAL SIGWINCH
#define OAUTH2_WAKE_OK 0
#define OAUTH2_WAKE_NO_THREAD 1
#define OAUTH2_WAKE_BLOCKED 2
#define OAUTH2_WAKE_TAKEN 3

// oauth2_wake_init installs the wake signal's handler, a no-op, once for the process, and says whether
// the broker thread can be woken (OAUTH2_WAKE_OK) or why not: the signal is blocked on that thread, or
// has a handler of someone else's.
int oauth2_wake_init(void);

// oauth2_wake sends the wake signal to the broker thread, from any thread: a wait in epoll_wait returns
// at once (EINTR, which Mosquitto's loop takes in its stride) and the loop runs the tick.
void oauth2_wake(void);

// oauth2_log logs one line through the broker. mosquitto_log_printf is variadic, which cgo cannot call,
// and msg must never be used as a format string.
void oauth2_log(int level, const char *msg);

// oauth2_delay_available says whether the broker has mosquitto_complete_basic_auth and mosquitto_client
// (Mosquitto 2.1).
int oauth2_delay_available(void);

// oauth2_client_registered says whether client is already in the broker's table of connected clients:
// its BASIC_AUTH is then Mosquitto's re-check on SIGHUP, not a new connection. Needs 2.1.
int oauth2_client_registered(struct mosquitto *client);


// oauth2_complete_basic_auth answers a delayed check; call only when oauth2_delay_available.
void oauth2_complete_basic_auth(const char *client_id, int result);

#endif
