// The broker-facing side of the plugin: the three entry points Mosquitto looks up, the callback
// trampolines that hand event data to Go, a wrapper for the broker's variadic log function, the lookup
// of Mosquitto 2.1's delayed-auth call, and the SA_ONSTACK repair of the broker's signal handlers.
// Logic lives in Go; this file only translates.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"
#include "_cgo_export.h"

// One instance per plugin line (and per listener with per_listener_settings true). It is the userdata the
// broker hands back to every callback, so no state is shared between instances.
struct instance {
	mosquitto_plugin_id_t *id;
	uintptr_t handle; // cgo.Handle of the Go instance
	int connect_registered;
	int offline_registered;
	int acl_registered;
	int ext_auth_registered;
	// tick_flags is set by Go (atomically, see plugin/broker.go): OAUTH2_TICK_WORK when the next tick has
	// work (log lines, delayed answers, kicks, sessions to forget), OAUTH2_TICK_RUNG when the broker
	// thread was woken for it since the last tick. Every tick clears both; only a tick with work enters Go. Under load the
	// broker ticks once per turn of its loop, and a cgo call each time cost more than the ACL checks.
	// It is allocated on its own and never freed: goroutines still running at cleanup may set it.
	int *tick_flags;
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

void oauth2_complete_basic_auth(const char *client_id, int result)
{
	complete_basic_auth(client_id, result);
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

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	if (!on_broker_thread()) {
		return goForeignBasicAuth(inst->handle, (uintptr_t)pthread_self(), ed->client, ed->username, ed->password);
	}
	return goBasicAuth(inst->handle, ed->client, ed->username, ed->password);
}

// EXT_AUTH_START fires for an MQTT 5 CONNECT with an Authentication Method, and again for a
// re-authentication (AUTH 0x19). The token is the whole Authentication Data: one step, no CONTINUE.
static int on_ext_auth_start(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_extended_auth *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	return goExtAuthStart(inst->handle, ed->client, (char *)ed->auth_method, (void *)ed->data_in, ed->data_in_len);
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	if (ed->topic == NULL) {
		return ed->access == MOSQ_ACL_UNSUBSCRIBE ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
	// The length is taken here so that Go can read the topic in place, without a copy per message.
	const char *id = mosquitto_client_id(ed->client);
	if (!on_broker_thread()) {
		return goForeignACLCheck(inst->handle, (uintptr_t)pthread_self(), ed->client, (char *)ed->topic,
			strlen(ed->topic), ed->access);
	}
	return goACLCheck(inst->handle, ed->client, (char *)id, id != NULL ? strlen(id) : 0, (char *)ed->topic,
		strlen(ed->topic), ed->access, ed->qos, ed->retain);
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	goDisconnect(inst->handle, ed->client, 0);
	return MOSQ_ERR_SUCCESS;
}

static int on_client_offline(int event, void *event_data, void *userdata)
{
	struct oauth2_evt_client_offline *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	goDisconnect(inst->handle, ed->client, 1);
	return MOSQ_ERR_SUCCESS;
}

static int on_connect(int event, void *event_data, void *userdata)
{
	struct oauth2_evt_connect *ed = event_data;
	struct instance *inst = userdata;
	(void)event;
	goConnect(inst->handle, ed->client);
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
	goReload(inst->handle);
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
		ed->next_ns = goTick(inst->handle);
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
	int rc = goPluginInit(opts, opt_count, delay, &inst->handle, &acl, &ext_auth, inst->tick_flags);
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
	}
	if (rc == MOSQ_ERR_SUCCESS && ext_auth) {
		// Only with enhanced_auth_method: otherwise the broker answers every method "not supported".
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_EXT_AUTH_START, on_ext_auth_start, NULL, inst);
		inst->ext_auth_registered = rc == MOSQ_ERR_SUCCESS;
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		oauth2_log(MOSQ_LOG_ERR, "could not register callbacks (is the plugin loaded twice for the same listener?)");
		unregister_all(inst);
		goPluginCleanup(inst->handle);
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
	goPluginCleanup(inst->handle);
	free(inst);
	return MOSQ_ERR_SUCCESS;
}
