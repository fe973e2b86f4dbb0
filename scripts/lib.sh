# shellcheck shell=bash
# Shell functions that scripts/demo.sh and scripts/image-test.sh share: stopping a process, a throwaway
# CA, and test/idp over HTTPS on 127.0.0.1. Sourced, not run: the caller sets -euo pipefail and defines
# die MESSAGE.

# stop PID [TENTHS]: SIGTERM, then SIGKILL if PID is still there after TENTHS tenths of a second (50).
stop() {
	local pid=$1 tenths=${2:-50} i
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq "$tenths"); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# in_use PORT: something accepts connections on 127.0.0.1:PORT.
in_use() {
	timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# make_pki DIR NAME: a CA named NAME (DIR/ca.pem) and a certificate for 127.0.0.1 and localhost signed by
# it (DIR/server.pem, DIR/server.key), valid two days. openssl's output goes to DIR/openssl.log.
make_pki() {
	local dir=$1 name=$2
	(
		cd "$dir"
		openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout ca.key -out ca.pem -days 2 -subj "/CN=$name" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout server.key -out server.csr -subj "/CN=127.0.0.1"
		printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
			"extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
			-days 2 -extfile server.ext -out server.pem
		chmod 600 ca.key server.key
	) >"$dir/openssl.log" 2>&1 || {
		cat "$dir/openssl.log" >&2
		die "openssl failed"
	}
}

# start_idp DIR PORT CLIENTS: test/idp on https://127.0.0.1:PORT with make_pki DIR's certificate and the
# clients file CLIENTS; its stdout and stderr go to DIR/idp.out and DIR/idp.log. Sets IDP_PID and
# returns once the IdP says it is ready.
start_idp() {
	local dir=$1 port=$2 clients=$3 _
	(
		cd "$(dirname "${BASH_SOURCE[0]}")/../test/idp" || exit 1
		IDP_PORT=$port IDP_HOST=127.0.0.1 IDP_TLS_CERT="$dir/server.pem" IDP_TLS_KEY="$dir/server.key" \
			IDP_CLIENTS="$clients" exec node server.js
	) >"$dir/idp.out" 2>"$dir/idp.log" &
	IDP_PID=$!
	for _ in $(seq 300); do
		grep -q '^IDP READY' "$dir/idp.out" && return 0
		kill -0 "$IDP_PID" 2>/dev/null || {
			cat "$dir/idp.log" >&2
			die "test/idp exited during start-up"
		}
		sleep 0.1
	done
	die "test/idp not ready after 30 s (log: $dir/idp.log)"
}

# idp_token ISSUER CA CLIENT SECRET: prints an access token of CLIENT (client_credentials grant).
idp_token() {
	curl -fsS --cacert "$2" -u "$3:$4" -d grant_type=client_credentials "$1/token" |
		node -e 'let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
			const t = JSON.parse(s).access_token; if (!t) process.exit(1); process.stdout.write(t); })'
}
