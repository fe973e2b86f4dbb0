#!/usr/bin/env bash
# Local demo of mosquitto-oauth2, run by `make demo` (after deps and build) from the repository root.
#
# It starts the test identity provider (test/idp) over HTTPS with a throwaway CA, and a Mosquitto broker
# with build/mosquitto-oauth2.so whose configuration is derived from mosquitto.conf.example. Then, with
# the device-side command build/mqtt-oauth2, it gets an access token for the device client
# "demo-device" (client credentials) and prints a mosquitto_sub/mosquitto_pub pair that authenticates
# with it; signs in the device "demo-sensor" by the device authorization grant (its QR code shown,
# approved through test/idp's test route, as a person would in a browser); and starts an mqtt-oauth2
# sub session for it whose 20-second tokens are renewed in-session (MQTT 5 re-authentication).
# Everything listens on 127.0.0.1 only and lives in one temporary directory, removed on exit. Ctrl-C
# stops everything.
#
# Environment:
#   MOSQUITTO          broker binary (default: mosquitto on PATH, else /usr/sbin/mosquitto)
#   DEMO_IDP_PORT      port for the IdP (default 9443 if free, else any free port)
#   DEMO_BROKER_PORT   port for the broker (default 1883 if free, else any free port)
#   DEMO_SMOKE=1       do not wait for Ctrl-C: check that a token-authenticated subscriber receives a
#                      message (and that a wrong username and a bogus token are refused), that the
#                      mqtt-oauth2 session outlives two token renewals (6-second tokens), then exit
#                      0 on success, non-zero on failure. CI runs this.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
SO="$ROOT/build/mosquitto-oauth2.so"
CMD="$ROOT/build/mqtt-oauth2"
EXAMPLE="$ROOT/mosquitto.conf.example"
IDP_DIR="$ROOT/test/idp"
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)}
SMOKE=${DEMO_SMOKE:-0}
# stop, in_use, make_pki, start_idp
. "$ROOT/scripts/lib.sh"

say() { printf 'demo: %s\n' "$*"; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}

# ------------------------------------------------------------------------------------------ checks

[ -f "$SO" ] || die "$SO is missing: run make build (or make demo)"
[ -x "$CMD" ] || die "$CMD is missing: run make build (or make demo)"
[ -f "$EXAMPLE" ] || die "$EXAMPLE is missing"
[ -x "$MOSQUITTO" ] || command -v "$MOSQUITTO" >/dev/null 2>&1 || die "no mosquitto broker ($MOSQUITTO): run make deps"
for tool in node openssl curl mosquitto_sub mosquitto_pub awk; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not installed (make deps)"
done
[ -d "$IDP_DIR/node_modules/oidc-provider" ] || die "test/idp has no node_modules: run make deps"

# -------------------------------------------------------------------------------- clean-up on exit

DIR=""
IDP_PID=""
BROKER_PID=""
SUB_PID=""
SESSION_PID=""
SIGNIN_PID=""

cleanup() {
	trap - INT TERM EXIT
	stop "$SUB_PID"
	stop "$SESSION_PID"
	stop "$SIGNIN_PID"
	stop "$BROKER_PID"
	stop "$IDP_PID"
	[ -z "$DIR" ] || rm -rf "$DIR"
}
trap 'rc=$?; cleanup; exit $rc' EXIT
trap 'echo; say "stopping"; cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

DIR=$(mktemp -d "${TMPDIR:-/tmp}/mosquitto-oauth2-demo.XXXXXX")
DIR=$(cd "$DIR" && pwd -P)

# ------------------------------------------------------------------------------------------- ports

# pick_port PREFERRED [AVOID]: PREFERRED if free, else a free port the kernel hands out, never AVOID.
pick_port() {
	local want=$1 avoid=${2:-} p i
	if [ "$want" != "$avoid" ] && ! in_use "$want"; then
		echo "$want"
		return
	fi
	for i in $(seq 20); do
		if command -v python3 >/dev/null 2>&1; then
			p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		else
			p=$((20000 + RANDOM % 40000))
		fi
		if [ "$p" != "$avoid" ] && ! in_use "$p"; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

IDP_PORT=$(pick_port "${DEMO_IDP_PORT:-9443}")
BROKER_PORT=$(pick_port "${DEMO_BROKER_PORT:-1883}" "$IDP_PORT")
ISSUER="https://127.0.0.1:$IDP_PORT"

# ---------------------------------------------------------------------- throwaway CA and server cert

say "working directory $DIR"
make_pki "$DIR" "mosquitto-oauth2 demo CA"
CA="$DIR/ca.pem"

# ------------------------------------------------------------------------------- identity provider

BROKER_CLIENT=broker
BROKER_SECRET=$(openssl rand -hex 16)
DEVICE_CLIENT=demo-device
DEVICE_SECRET=$(openssl rand -hex 16)
DEVICE_USER=demo
# A second device whose tokens live only SHORT_TTL seconds, to watch a lease end.
SHORT_CLIENT=demo-short
SHORT_SECRET=$(openssl rand -hex 16)
SHORT_TTL=30
[ "$SMOKE" = 1 ] && SHORT_TTL=3
# A device a person signs in by the device authorization grant (a public client: no secret), whose
# tokens live SENSOR_TTL seconds: the mqtt-oauth2 session renews them SENSOR_MARGIN seconds before.
SENSOR_CLIENT=demo-sensor
SENSOR_TTL=20
SENSOR_MARGIN=5
if [ "$SMOKE" = 1 ]; then
	SENSOR_TTL=6
	SENSOR_MARGIN=2
fi

(
	umask 077
	cat >"$DIR/clients.json" <<EOF
{
  "scopes": ["mqtt"],
  "clients": [
    {"client_id": "$BROKER_CLIENT", "client_secret": "$BROKER_SECRET"},
    {"client_id": "$DEVICE_CLIENT", "client_secret": "$DEVICE_SECRET",
     "claims": {"sub": "demo-sub", "username": "$DEVICE_USER", "email": "demo@example.com"}},
    {"client_id": "$SHORT_CLIENT", "client_secret": "$SHORT_SECRET", "access_token_ttl": $SHORT_TTL,
     "claims": {"sub": "demo-short-sub", "username": "$DEVICE_USER", "email": "demo@example.com"}},
    {"client_id": "$SENSOR_CLIENT", "token_endpoint_auth_method": "none",
     "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
     "access_token_ttl": $SENSOR_TTL, "device_poll_interval": 1,
     "claims": {"sub": "demo-sensor-sub", "username": "$DEVICE_USER", "email": "sensor@example.com"}}
  ]
}
EOF
)

say "starting test/idp on $ISSUER"
# The test routes approve a device sign-in without a browser (never on a reachable IdP).
export IDP_TEST_ROUTES=1
start_idp "$DIR" "$IDP_PORT" "$DIR/clients.json"

# ------------------------------------------------------------------------------ broker configuration

# The broker's configuration is mosquitto.conf.example with these lines replaced. The first line setting
# a key, commented out ("#key ...") or not, becomes the replacement; further uncommented lines with that
# key are commented out; a key the example does not mention is appended. An empty replacement comments
# the key out. Uncommented plugin_opt_ lines not listed here are commented out too, so the plugin gets
# exactly the options below whatever the example enables.
OVERRIDES="$DIR/overrides.tsv"
{
	printf '%s\t%s\n' \
		listener "listener $BROKER_PORT 127.0.0.1" \
		log_dest "log_dest stderr" \
		persistence "persistence false" \
		persistence_location "" \
		password_file "" \
		acl_file "" \
		plugin "plugin $SO" \
		plugin_opt_introspection_endpoint "plugin_opt_introspection_endpoint $ISSUER/token/introspection" \
		plugin_opt_client_id "plugin_opt_client_id $BROKER_CLIENT" \
		plugin_opt_client_secret "plugin_opt_client_secret $BROKER_SECRET" \
		plugin_opt_client_secret_file "" \
		plugin_opt_ca_file "plugin_opt_ca_file $CA" \
		plugin_opt_username_validation "plugin_opt_username_validation true" \
		plugin_opt_username_validation_template "plugin_opt_username_validation_template %%oidc-username%%" \
		plugin_opt_username_validation_error "plugin_opt_username_validation_error deny" \
		plugin_opt_enhanced_auth_method "plugin_opt_enhanced_auth_method OAUTH2-JWT"
	# Started as root, Mosquitto would switch to the mosquitto user, which cannot read this directory.
	if [ "$(id -u)" -eq 0 ]; then
		printf '%s\t%s\n' user "user root"
	fi
} >"$OVERRIDES"

CONF="$DIR/mosquitto.conf"
awk -v overrides="$OVERRIDES" '
BEGIN {
	while ((getline line < overrides) > 0) {
		tab = index(line, "\t")
		key = substr(line, 1, tab - 1)
		repl[key] = substr(line, tab + 1)
		order[++n] = key
	}
	close(overrides)
}
{
	key = ""
	if (match($0, /^#?[A-Za-z_]+([ \t]|$)/)) {
		key = $0
		sub(/^#/, "", key)
		sub(/[ \t].*$/, "", key)
	}
	commented = substr($0, 1, 1) == "#"
	if (key != "" && key in repl) {
		if (!(key in done)) {
			done[key] = 1
			if (repl[key] != "") print repl[key]
			else if (commented) print
			else print "#" $0
			next
		}
		if (!commented) { print "#" $0; next }
	} else if (key ~ /^plugin_opt_/ && !commented) {
		print "#" $0
		next
	}
	print
}
END {
	for (i = 1; i <= n; i++)
		if (!(order[i] in done) && repl[order[i]] != "") print repl[order[i]]
}' "$EXAMPLE" >"$CONF"

# Check the result: every replacement line exactly once, every emptied key never active, and the plugin
# line before its options.
while IFS=$'\t' read -r key line; do
	if [ -n "$line" ]; then
		[ "$(grep -cxF -- "$line" "$CONF")" -eq 1 ] || die "deriving $CONF: \"$line\" not there exactly once"
	fi
	[ "$(grep -cE "^${key}([[:space:]]|\$)" "$CONF")" -le 1 ] || die "deriving $CONF: $key set more than once"
	if [ -z "$line" ] && grep -qE "^${key}([[:space:]]|\$)" "$CONF"; then
		die "deriving $CONF: $key should be commented out"
	fi
done <"$OVERRIDES"
plugin_line=$(grep -nE '^plugin[[:space:]]' "$CONF" | head -1 | cut -d: -f1)
first_opt=$(grep -nE '^plugin_opt_' "$CONF" | head -1 | cut -d: -f1)
[ -n "$plugin_line" ] && [ -n "$first_opt" ] && [ "$plugin_line" -lt "$first_opt" ] ||
	die "deriving $CONF: the plugin line must come before the plugin_opt_ lines"
chmod 600 "$CONF"

# ---------------------------------------------------------------------------------------- broker

LOG="$DIR/mosquitto.log"
say "starting $MOSQUITTO on 127.0.0.1:$BROKER_PORT"
"$MOSQUITTO" -c "$CONF" >"$LOG" 2>&1 &
BROKER_PID=$!

for i in $(seq 100); do
	kill -0 "$BROKER_PID" 2>/dev/null || {
		cat "$LOG" >&2
		die "mosquitto exited during start-up (config: $CONF)"
	}
	in_use "$BROKER_PORT" && break
	[ "$i" -lt 100 ] || die "mosquitto not listening after 10 s (log: $LOG)"
	sleep 0.1
done

# ----------------------------------------------------------------------------------------- token

(
	umask 077
	printf '%s\n' "$DEVICE_SECRET" >"$DIR/demo-device.secret"
	printf '%s\n' "$SHORT_SECRET" >"$DIR/demo-short.secret"
)
# The command's token cache and config live in the demo's directory, not the user's.
export XDG_CACHE_HOME="$DIR/cache" XDG_CONFIG_HOME="$DIR/config"
TOKEN_CMD="$CMD token --issuer $ISSUER --ca-file $CA --client-id $DEVICE_CLIENT --client-secret-file $DIR/demo-device.secret"
token() { # [client]
	local client=${1:-$DEVICE_CLIENT}
	"$CMD" token --issuer "$ISSUER" --ca-file "$CA" --client-id "$client" --client-secret-file "$DIR/$client.secret" --no-cache
}
TOKEN=$(token) || die "could not get a token for $DEVICE_CLIENT (IdP log: $DIR/idp.log)"
SHORT=$(token "$SHORT_CLIENT") || die "could not get a token for $SHORT_CLIENT (IdP log: $DIR/idp.log)"

SUB=(mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -u "$DEVICE_USER" -P "$TOKEN" -t 'demo/#' -v)
PUB=(mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -u "$DEVICE_USER" -P "$TOKEN" -t demo/hello -m hi)

cat <<EOF

Identity provider: $ISSUER (test/idp; log $DIR/idp.log)
Broker:            127.0.0.1:$BROKER_PORT (log $LOG, config $CONF)

The device "$DEVICE_CLIENT" got an access token (valid 1 h); its claims say username "$DEVICE_USER", and
the broker checks the MQTT username against them (username_validation_template %%oidc-username%%).

In one terminal:
  mosquitto_sub -h 127.0.0.1 -p $BROKER_PORT -u $DEVICE_USER -P '$TOKEN' -t 'demo/#' -v
In another:
  mosquitto_pub -h 127.0.0.1 -p $BROKER_PORT -u $DEVICE_USER -P '$TOKEN' -t demo/hello -m hi

Another token, by the device-side command (client credentials grant):
  XDG_CACHE_HOME=$DIR/cache $TOKEN_CMD

A token is a lease. This one, of "$SHORT_CLIENT", expires $SHORT_TTL s after it was issued; the broker then
disconnects the client and logs "token expired; disconnecting" (tail -f $LOG):
  mosquitto_sub -h 127.0.0.1 -p $BROKER_PORT -u $DEVICE_USER -P '$SHORT' -t 'demo/#' -v

EOF

# ------------------------------------------------------------ device sign-in, and a renewed session

SENSOR=(--issuer "$ISSUER" --ca-file "$CA" --client-id "$SENSOR_CLIENT" --scope "openid offline_access")
say "device sign-in of \"$SENSOR_CLIENT\" (RFC 8628): mqtt-oauth2 token ${SENSOR[*]}"
"$CMD" token "${SENSOR[@]}" >"$DIR/sensor.token" 2>"$DIR/sensor.prompt" &
SIGNIN_PID=$!
for i in $(seq 200); do
	grep -q 'waiting for approval' "$DIR/sensor.prompt" && break
	kill -0 "$SIGNIN_PID" 2>/dev/null || die "the device sign-in failed: $(cat "$DIR/sensor.prompt")"
	[ "$i" -lt 200 ] || die "no device sign-in prompt after 20 s: $(cat "$DIR/sensor.prompt")"
	sleep 0.1
done
echo
cat "$DIR/sensor.prompt"
CODE=$(grep -oE 'enter code [A-Z]{4}-[A-Z]{4}' "$DIR/sensor.prompt" | awk '{print $3}')
[ -n "$CODE" ] || die "no user code in the prompt"
sleep 1
say "approving $CODE through test/idp's test route (a person would open the URL or scan the QR code)"
curl -fsS --cacert "$CA" -d "user_code=$CODE" "$ISSUER/test/device/approve" >/dev/null ||
	die "the test route did not approve $CODE (IdP log: $DIR/idp.log)"
wait "$SIGNIN_PID" || die "the device sign-in failed: $(cat "$DIR/sensor.prompt")"
SIGNIN_PID=""
[ -s "$DIR/sensor.token" ] || die "the device sign-in printed no token"
say "signed in: the access and refresh tokens are in $XDG_CACHE_HOME/mqtt-oauth2/tokens.json (mode 0600)"

# A session on the cached tokens: every SENSOR_TTL - SENSOR_MARGIN seconds it gets a new access token
# by the refresh token and hands it to the broker in an MQTT 5 AUTH packet, on the same connection.
SESSION=("$CMD" sub "${SENSOR[@]}" --broker "mqtt://127.0.0.1:$BROKER_PORT" --username "$DEVICE_USER"
	--margin "${SENSOR_MARGIN}s" -d -v -t 'demo/#')
say "a session whose ${SENSOR_TTL}-second tokens are renewed in-session: mqtt-oauth2 sub ${SESSION[*]:2}"
if [ "$SMOKE" = 1 ]; then
	"${SESSION[@]}" >"$DIR/session.out" 2>"$DIR/session.log" &
else
	"${SESSION[@]}" > >(sed -u 's/^/[session] /') 2>&1 &
fi
SESSION_PID=$!

if [ "$SMOKE" != 1 ]; then
	cat <<EOF

The session prints a line at each renewal (every $((SENSOR_TTL - SENSOR_MARGIN)) s) and each message on demo/#. Publish to it:
  $CMD pub --issuer $ISSUER --ca-file $CA --client-id $DEVICE_CLIENT --client-secret-file $DIR/demo-device.secret --broker mqtt://127.0.0.1:$BROKER_PORT --username $DEVICE_USER -t demo/hello -m hi

EOF
fi

# -------------------------------------------------------------------------------------- smoke test

if [ "$SMOKE" = 1 ]; then
	say "smoke test"
	"${SUB[@]}" -C 1 -W 10 >"$DIR/sub.out" 2>"$DIR/sub.err" &
	SUB_PID=$!
	# The subscriber may not have subscribed yet when the first message goes out: publish until it got one.
	for i in $(seq 20); do
		"${PUB[@]}" 2>"$DIR/pub.err" || {
			cat "$DIR/pub.err" "$LOG" >&2
			die "FAIL: mosquitto_pub with the token was refused"
		}
		sleep 0.5
		kill -0 "$SUB_PID" 2>/dev/null || break
	done
	rc=0
	wait "$SUB_PID" || rc=$?
	SUB_PID=""
	if [ "$rc" -ne 0 ] || [ "$(cat "$DIR/sub.out")" != "demo/hello hi" ]; then
		cat "$DIR/sub.out" "$DIR/sub.err" "$LOG" >&2
		die "FAIL: the subscriber did not receive demo/hello hi (exit $rc)"
	fi
	say "ok: subscriber received \"demo/hello hi\""
	if mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -u someone-else -P "$TOKEN" -t demo/x -m x 2>/dev/null; then
		die "FAIL: a username that does not match the token was accepted"
	fi
	say "ok: a username that does not match the token is refused"
	if mosquitto_pub -h 127.0.0.1 -p "$BROKER_PORT" -u "$DEVICE_USER" -P not-a-token -t demo/x -m x 2>/dev/null; then
		die "FAIL: a bogus token was accepted"
	fi
	say "ok: a bogus token is refused"
	if grep -qF -e "$TOKEN" -e "$BROKER_SECRET" "$LOG"; then
		die "FAIL: the broker log contains the token or the broker's client secret"
	fi
	say "ok: no token or secret in the broker log"
	# A fresh short token: the one printed above may have expired during the steps before.
	SHORT=$(token "$SHORT_CLIENT") || die "could not get a token for $SHORT_CLIENT"
	mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -u "$DEVICE_USER" -P "$SHORT" -t 'demo/#' -W 20 >/dev/null 2>&1 &
	SUB_PID=$!
	for i in $(seq 100); do
		grep -q 'token expired; disconnecting' "$LOG" && break
		[ "$i" -lt 100 ] || {
			cat "$LOG" >&2
			die "FAIL: the client whose token expired was not disconnected within 10 s"
		}
		sleep 0.1
	done
	kill "$SUB_PID" 2>/dev/null || true
	wait "$SUB_PID" 2>/dev/null || true
	SUB_PID=""
	say "ok: a client is disconnected when its token expires"
	for i in $(seq 300); do
		[ "$(grep -c 'token renewed: re-authenticated in-session' "$DIR/session.log")" -ge 2 ] && break
		kill -0 "$SESSION_PID" 2>/dev/null && [ "$i" -lt 300 ] || {
			cat "$DIR/session.log" "$LOG" >&2
			die "FAIL: the mqtt-oauth2 session did not renew its token twice in-session within 30 s"
		}
		sleep 0.1
	done
	"$CMD" pub --issuer "$ISSUER" --ca-file "$CA" --client-id "$DEVICE_CLIENT" \
		--client-secret-file "$DIR/demo-device.secret" --broker "mqtt://127.0.0.1:$BROKER_PORT" \
		--username "$DEVICE_USER" -t demo/after-renewals -m still-here || die "FAIL: mqtt-oauth2 pub failed"
	for i in $(seq 50); do
		grep -qx 'demo/after-renewals still-here' "$DIR/session.out" && break
		[ "$i" -lt 50 ] || {
			cat "$DIR/session.out" "$DIR/session.log" >&2
			die "FAIL: the session did not receive a message after two renewals"
		}
		sleep 0.1
	done
	say "ok: the mqtt-oauth2 session outlived two token renewals and still receives messages"
	if grep -qF -f <(cat "$DIR/sensor.token" "$DIR/demo-device.secret") "$DIR/session.log" "$LOG"; then
		die "FAIL: a token or secret appears in the session's or the broker's log"
	fi
	say "ok: no token or secret in the session's log"
	say "smoke test passed"
	exit 0
fi

# ------------------------------------------------------------------------------------ foreground

say "running; Ctrl-C stops the broker and the IdP and removes $DIR"
# wait returns when either server exits, or at once when a signal arrives (the traps then clean up).
wait -n "$IDP_PID" "$BROKER_PID" || true
kill -0 "$BROKER_PID" 2>/dev/null || {
	tail -n 20 "$LOG" >&2
	die "mosquitto exited"
}
tail -n 20 "$DIR/idp.log" >&2
die "test/idp exited"
