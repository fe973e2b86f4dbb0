// The broker-facing side of the plugin: the three entry points Mosquitto looks up, the callback
// trampolines that hand event data to Go, a wrapper for the broker's variadic log function, the lookup
// of Mosquitto 2.1's delayed-auth call, and the SA_ONSTACK repair of the broker's signal handlers.
// Logic lives in Go; this file only translates, and remembers Go's ACL answers (see the memo below).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#include "shim.h"
#include "_cgo_export.h"

// One instance per plugin line (and per listener with per_listener_settings true). It is the userdata the
// broker hands back to every callback, so no state is shared between instances.
struct instance {
	mosquitto_plugin_id_t *id;
	void *go; // the Go instance, pinned (see goPluginInit)
	int connect_registered;
	int offline_registered;
	int acl_registered;
	int ext_auth_registered;
	// tick_flags is set by Go (atomically, see plugin/broker.go): OAUTH2_TICK_WORK when the next tick has
	// work (log lines, delayed answers, kicks, sessions to forget), OAUTH2_TICK_RUNG when the broker
	// thread was woken for it since the last tick. Every tick clears both; only a tick with work enters
	// Go. Under load the broker ticks once per turn of its loop, and a cgo call each time cost more than
	// the ACL checks.
	// It is allocated on its own and never freed: goroutines still running at cleanup may set it.
	int *tick_flags;
	// The memo of Go's ACL answers (see below); NULL without ACL checks. Broker thread only.
	struct memo_slot *memo;
	uint64_t memo_gen;
};

// Mosquitto 2.1's delayed-auth calls, resolved once at the first init: the same .so serves 2.0, which
// lacks them, and 2.1.
static void (*complete_basic_auth)(const char *, int);
static struct mosquitto *(*client_by_id)(const char *);
static int complete_basic_auth_resolved;

void oauth2_log(int level, const char *msg)
{
	mosquitto_log_printf(level, "oauth2: %s", msg);
}

int oauth2_delay_available(void)
{
	if (!complete_basic_auth_resolved) {
		complete_basic_auth = (void (*)(const char *, int))dlsym(RTLD_DEFAULT, "mosquitto_complete_basic_auth");
		client_by_id = (struct mosquitto * (*)(const char *)) dlsym(RTLD_DEFAULT, "mosquitto_client");
		complete_basic_auth_resolved = 1;
	}
	return complete_basic_auth != NULL && client_by_id != NULL;
}

int oauth2_client_registered(struct mosquitto *client)
{
	const char *id = mosquitto_client_id(client);
	return id != NULL && client_by_id != NULL && client_by_id(id) == client;
}

// completing is non-zero while Go answers a delayed check: the broker fires that client's CONNECT from
// inside mosquitto_complete_basic_auth (see on_connect). Broker thread only.
static int completing;

void oauth2_complete_basic_auth(const char *client_id, int result)
{
	completing++;
	complete_basic_auth(client_id, result);
	completing--;
}

// The broker thread: the one that loads the plugin, runs the event loop and makes every callback but
// those of Mosquitto 2.1's HTTP API, which runs on libmicrohttpd's own thread. Set at the first init.
static pthread_t broker_thread;
static pid_t broker_tid;
static int broker_thread_known;

static int on_broker_thread(void)
{
	return pthread_equal(pthread_self(), broker_thread);
}

static void on_wake_signal(int sig)
{
	(void)sig;
}

int oauth2_wake_init(void)
{
	if (!broker_thread_known) {
		return OAUTH2_WAKE_NO_THREAD;
	}
	sigset_t blocked;
	if (pthread_sigmask(SIG_BLOCK, NULL, &blocked) == 0 && sigismember(&blocked, OAUTH2_WAKE_SIGNAL) == 1) {
		return OAUTH2_WAKE_BLOCKED;
	}
	struct sigaction old;
	if (sigaction(OAUTH2_WAKE_SIGNAL, NULL, &old) != 0) {
		return OAUTH2_WAKE_TAKEN;
	}
	if (old.sa_handler == on_wake_signal) {
		return OAUTH2_WAKE_OK; // a second instance: one handler serves them all
	}
	if (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) {
		return OAUTH2_WAKE_TAKEN;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake_signal;
	// SA_RESTART keeps the signal from failing the broker's other system calls; epoll_wait returns
	// EINTR whatever the flags, which is the point. SA_ONSTACK is what the Go runtime requires of a
	// handler that may run while Go code is on the thread.
	sa.sa_flags = SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	return sigaction(OAUTH2_WAKE_SIGNAL, &sa, NULL) == 0 ? OAUTH2_WAKE_OK : OAUTH2_WAKE_TAKEN;
}

void oauth2_wake(void)
{
	syscall(SYS_tgkill, getpid(), broker_tid, OAUTH2_WAKE_SIGNAL);
}

// The memo of ACL answers. Every message costs (1 + subscribers) ACL checks, and the C-to-Go call of
// each cost more than the decision (measured: ~118 ns of crossing and ~146 ns of the Go runtime's
// sysmon woken by the crossings, for a 46 ns grants match). So C remembers Go's answers: the decision
// is Go's, the memo only repeats it.
//
// Layout: a direct-mapped table of MEMO_SLOTS slots, indexed by a hash (FNV-1a) of the whole key:
// client pointer, access, qos, retain and the topic's bytes. A slot holds the key, the answer, the
// generation it was made at, and until_ns, the wall-clock time (CLOCK_REALTIME ns) from which it no
// longer holds. A colliding key overwrites the slot. Topics longer than MEMO_TOPIC_MAX are never
// remembered. The table is allocated at init when ACL checks are registered, freed at cleanup, and
// touched only on the broker thread (goroutines never see it; other threads' checks go to Go).
//
// Why a remembered answer is Go's answer (the whole safety argument):
// - Go's answer depends on the client's session in the session machine (rights, client id, exp) and on
//   the time. Sessions change only inside the machine's events, which all run on the broker thread from
//   the trampolines below: BASIC_AUTH, EXT_AUTH_START, CONNECT, DISCONNECT, CLIENT_OFFLINE, and a TICK
//   that enters Go (its work drops forgotten and expired sessions, kicks, completes delayed checks).
//   Goroutines only queue work for the tick; a session's rights never change once made.
// - memo_bump() increments the instance's generation before Go handles any of these events, and again
//   after (an ACL check the broker makes from inside the event, nested, is not remembered past it).
//   It is done here, in the trampolines, so no Go path can forget it. A slot is used only at the
//   current generation: every answer made before an event is dropped at once, in O(1).
// - Within a generation only time changes Go's answer, and Go says exactly until when (until_ns): the
//   token's exp for an answer made before it (Authorize denies from exp on), never otherwise.
// - A client pointer the broker frees and reuses for a new connection comes with a DISCONNECT and/or a
//   BASIC_AUTH first: a bump.
// - UNSUBSCRIBE and topic == NULL keep their fixed answers; Go panics give until 0, never remembered.
#define MEMO_SLOTS 4096 // a power of two
#define MEMO_TOPIC_MAX 96
struct memo_slot {
	const struct mosquitto *client;
	int64_t until_ns; // INT64_MAX: until the next event
	uint64_t gen;     // 0: empty (generations start at 1)
	int8_t rc;
	uint8_t access, qos, retain, topic_len;
	char topic[MEMO_TOPIC_MAX];
};

static void memo_bump(struct instance *inst)
{
	inst->memo_gen++;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	if (!on_broker_thread()) {
		return goForeignBasicAuth(inst->go, (uintptr_t)pthread_self(), ed->client, ed->username, ed->password);
	}
	memo_bump(inst);
	// What Go needs of the client is read here: a call from Go back into C costs a crossing each.
	struct mosquitto *client = ed->client;
	int rc = goBasicAuth(inst->go, client, (char *)mosquitto_client_id(client), ed->username, ed->password,
		(char *)mosquitto_client_address(client), oauth2_client_registered(client),
		mosquitto_client_clean_session(client));
	memo_bump(inst);
	return rc;
}

// EXT_AUTH_START fires for an MQTT 5 CONNECT with an Authentication Method, and again for a
// re-authentication (AUTH 0x19). The token is the whole Authentication Data: one step, no CONTINUE.
static int on_ext_auth_start(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_extended_auth *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	memo_bump(inst);
	int rc = goExtAuthStart(inst->go, ed->client, (char *)ed->auth_method, (void *)ed->data_in, ed->data_in_len);
	memo_bump(inst);
	return rc;
}

// wall_ns is the time of an ACL check, against which the token's exp is enforced exactly. It is one
// vDSO read; time.Now in Go makes two (wall and monotonic clocks), twice the cost on every message.
static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	if (ed->topic == NULL) {
		return ed->access == MOSQ_ACL_UNSUBSCRIBE ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	if (!on_broker_thread()) {
		return goForeignACLCheck(inst->go, (uintptr_t)pthread_self(), ed->client, (char *)ed->topic,
			strlen(ed->topic), ed->access);
	}
	// One pass hashes the topic and measures it, up to what a slot holds.
	uint64_t h = 14695981039346656037ULL;
	size_t len = 0;
	for (; len <= MEMO_TOPIC_MAX && ed->topic[len] != '\0'; len++) {
		h = (h ^ (unsigned char)ed->topic[len]) * 1099511628211ULL;
	}
	struct memo_slot *slot = NULL;
	int64_t now;
	if (inst->memo != NULL && len <= MEMO_TOPIC_MAX) {
		uint64_t k = (uint64_t)(uintptr_t)ed->client ^ ((uint64_t)ed->access << 8) ^ ((uint64_t)ed->qos << 12) ^
			((uint64_t)ed->retain << 14);
		h = (h ^ k) * 1099511628211ULL;
		slot = &inst->memo[(h ^ (h >> 32)) & (MEMO_SLOTS - 1)];
		if (slot->gen == inst->memo_gen && slot->client == ed->client && slot->access == ed->access &&
			slot->qos == ed->qos && slot->retain == ed->retain && slot->topic_len == len &&
			memcmp(slot->topic, ed->topic, len) == 0) {
			if (slot->until_ns == INT64_MAX) {
				return slot->rc;
			}
			now = wall_ns();
			if (now < slot->until_ns) {
				return slot->rc;
			}
		} else {
			now = wall_ns();
		}
	} else {
		now = wall_ns();
		len += strlen(ed->topic + len);
	}
	// The length is taken here so that Go can read the topic in place, without a copy per message.
	const char *id = mosquitto_client_id(ed->client);
	int64_t until = 0;
	int rc = goACLCheck(inst->go, ed->client, (char *)id, id != NULL ? strlen(id) : 0, (char *)ed->topic,
		len, ed->access, ed->qos, ed->retain, now, &until);
	if (slot != NULL && now < until) {
		slot->client = ed->client;
		slot->until_ns = until;
		slot->gen = inst->memo_gen;
		slot->rc = (int8_t)rc;
		slot->access = (uint8_t)ed->access;
		slot->qos = ed->qos;
		slot->retain = ed->retain;
		slot->topic_len = (uint8_t)len;
		memcpy(slot->topic, ed->topic, len);
	}
	return rc;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	memo_bump(inst);
	goDisconnect(inst->go, ed->client, 0, mosquitto_client_clean_session(ed->client));
	memo_bump(inst);
	return MOSQ_ERR_SUCCESS;
}

static int on_client_offline(int event, void *event_data, void *userdata)
{
	struct oauth2_evt_client_offline *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	memo_bump(inst);
	goDisconnect(inst->go, ed->client, 1, mosquitto_client_clean_session(ed->client));
	memo_bump(inst);
	return MOSQ_ERR_SUCCESS;
}

// CONNECT fires for every client, but Go needs it only for a client accepted by a delayed check (see
// sessions.Machine.Connect), whose CONNECT the broker fires from inside the answer Go gives. Any other
// is passed over here: a C-to-Go call, with the Go runtime's sysmon woken by it, cost a cached reconnect
// about as much as its whole check.
static int on_connect(int event, void *event_data, void *userdata)
{
	struct oauth2_evt_connect *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	if (!completing) {
		return MOSQ_ERR_SUCCESS;
	}
	memo_bump(inst);
	goConnect(inst->go, ed->client);
	memo_bump(inst);
	return MOSQ_ERR_SUCCESS;
}

// RELOAD fires on SIGHUP, on the broker thread, before the broker re-checks every client. The answer
// is not Go's to choose: 2.1 exits on any code but SUCCESS (DEFER included), while 2.0 stops walking
// the RELOAD callbacks (and the older plugins' security_init) at the first code that is not DEFER, so
// there DEFER lets the other plugins reload too.
static int on_reload(int event, void *event_data, void *userdata)
{
	struct instance *inst = userdata;
	(void)event;
	(void)event_data;
	goReload(inst->go);
	return complete_basic_auth != NULL ? MOSQ_ERR_SUCCESS : MOSQ_ERR_PLUGIN_DEFER;
}

// Mosquitto installs its handlers with signal() after plugin init, so they lack SA_ONSTACK. In 2.0 the
// broker thread blocks these signals while it waits in epoll, so they usually land on a Go thread, where
// a handler without SA_ONSTACK may run on a goroutine stack. Re-installing them with SA_ONSTACK on the
// first tick (after the broker set them) is what the Go runtime documents as required.
static void add_sa_onstack(void)
{
	int sigs[] = {SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGRTMIN};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction sa;
		if (sigaction(sigs[i], NULL, &sa) != 0) {
			continue;
		}
		if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_ONSTACK)) {
			continue;
		}
		sa.sa_flags |= SA_ONSTACK;
		sigaction(sigs[i], &sa, NULL);
	}
}

static int on_tick(int event, void *event_data, void *userdata)
{
	static int signals_fixed;
	struct mosquitto_evt_tick *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	if (!signals_fixed) {
		add_sa_onstack();
		signals_fixed = 1;
	}
	// 2.1 reads this field as next_ms, the least time before the next tick (see tickNoMinimum in
	// plugin.go); 2.0 ignores it.
	ed->next_ns = 0;
	if (__atomic_exchange_n(inst->tick_flags, 0, __ATOMIC_ACQ_REL) & OAUTH2_TICK_WORK) {
		memo_bump(inst);
		ed->next_ns = goTick(inst->go);
		memo_bump(inst);
	}
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) {
			return 5;
		}
	}
	return -1;
}

static void unregister_all(struct instance *inst)
{
	mosquitto_callback_unregister(inst->id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(inst->id, MOSQ_EVT_TICK, on_tick, NULL);
	mosquitto_callback_unregister(inst->id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(inst->id, MOSQ_EVT_RELOAD, on_reload, NULL);
	if (inst->connect_registered) {
		mosquitto_callback_unregister(inst->id, OAUTH2_EVT_CONNECT, on_connect, NULL);
	}
	if (inst->offline_registered) {
		mosquitto_callback_unregister(inst->id, OAUTH2_EVT_CLIENT_OFFLINE, on_client_offline, NULL);
	}
	if (inst->acl_registered) {
		mosquitto_callback_unregister(inst->id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	}
	if (inst->ext_auth_registered) {
		mosquitto_callback_unregister(inst->id, MOSQ_EVT_EXT_AUTH_START, on_ext_auth_start, NULL);
	}
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *opts, int opt_count)
{
	if (!broker_thread_known) {
		broker_thread = pthread_self();
		broker_tid = (pid_t)syscall(SYS_gettid);
		broker_thread_known = 1;
	}
	struct instance *inst = calloc(1, sizeof(*inst));
	if (inst == NULL) {
		return MOSQ_ERR_NOMEM;
	}
	inst->id = identifier;
	inst->tick_flags = calloc(1, sizeof(*inst->tick_flags));
	if (inst->tick_flags == NULL) {
		free(inst);
		return MOSQ_ERR_NOMEM;
	}
	int delay = oauth2_delay_available();
	int acl = 0;
	int ext_auth = 0;
	int rc = goPluginInit(opts, opt_count, delay, &inst->go, &acl, &ext_auth, inst->tick_flags);
	if (rc != MOSQ_ERR_SUCCESS) {
		free(inst);
		return rc;
	}
	// The broker refuses the same function twice for one event and listener, so a second plugin line for
	// the same listener fails here.
	rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, inst);
	if (rc == MOSQ_ERR_SUCCESS) {
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, inst);
	}
	if (rc == MOSQ_ERR_SUCCESS) {
		// Every admitted client's lease ends when it leaves.
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, inst);
	}
	if (rc == MOSQ_ERR_SUCCESS) {
		// SIGHUP re-reads client_secret_file and ca_file (see goReload).
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_RELOAD, on_reload, NULL, inst);
	}
	if (rc == MOSQ_ERR_SUCCESS && delay) {
		// 2.1 only: where a delayed check renames the client (see goConnect), and where a persistent
		// session goes offline without a DISCONNECT.
		rc = mosquitto_callback_register(identifier, OAUTH2_EVT_CONNECT, on_connect, NULL, inst);
		inst->connect_registered = rc == MOSQ_ERR_SUCCESS;
		if (rc == MOSQ_ERR_SUCCESS) {
			rc = mosquitto_callback_register(identifier, OAUTH2_EVT_CLIENT_OFFLINE, on_client_offline, NULL, inst);
			inst->offline_registered = rc == MOSQ_ERR_SUCCESS;
		}
	}
	if (rc == MOSQ_ERR_SUCCESS && acl) {
		// Only with acl_* options: users of acl_file or dynamic security pay nothing per message.
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, inst);
		inst->acl_registered = rc == MOSQ_ERR_SUCCESS;
		// Without memory for the memo, every check goes to Go.
		inst->memo = calloc(MEMO_SLOTS, sizeof(*inst->memo));
		inst->memo_gen = 1;
	}
	if (rc == MOSQ_ERR_SUCCESS && ext_auth) {
		// Only with enhanced_auth_method: otherwise the broker answers every method "not supported".
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_EXT_AUTH_START, on_ext_auth_start, NULL, inst);
		inst->ext_auth_registered = rc == MOSQ_ERR_SUCCESS;
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		oauth2_log(MOSQ_LOG_ERR, "could not register callbacks (is the plugin loaded twice for the same listener?)");
		unregister_all(inst);
		goPluginCleanup(inst->go);
		free(inst->memo);
		free(inst);
		return rc;
	}
	*userdata = inst;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	struct instance *inst = userdata;
	(void)opts;
	(void)opt_count;
	if (inst == NULL) {
		return MOSQ_ERR_SUCCESS;
	}
	unregister_all(inst);
	goPluginCleanup(inst->go);
	free(inst->memo);
	free(inst);
	return MOSQ_ERR_SUCCESS;
}
