#!/usr/bin/env bash
# Builds the Docker image from the Dockerfile and runs it as the README tells a user to, against test/idp:
# `make image-test`, and CI after the other tests.
#
#  1. An engine: the Docker daemon that `docker info` reaches, used as it is and left running; otherwise
#     Debian's docker.io (installed when missing) as a private dockerd with its own containerd, both with
#     every directory and socket in the work directory, no iptables rules, no IP forwarding or
#     masquerading and no bridge, so the host's firewall, sysctls and interfaces stay as they were; both
#     are stopped by PID at the end. Every build and container uses the host's network namespace.
#  2. The Dockerfile's base images: pulled, or, where that fails, local stand-ins: debian:bookworm-slim
#     from `debootstrap --variant=minbase` (slimmed as the official image is) with the mirrors of this
#     machine's apt sources, and golang:<version>-bookworm from that plus gcc and this machine's Go
#     toolchain. Both trust this machine's extra CAs (/usr/local/share/ca-certificates) and the Go one
#     carries its module proxy setting (`go env GOPROXY`), so downloads work where HTTPS is intercepted.
#  3. `docker build` of the Dockerfile as it is; its wall time and the image's size are printed.
#  4. test/idp over HTTPS on 127.0.0.1 with a throwaway CA, and the image run with `docker run`: the
#     config is mosquitto.conf.example with the endpoint, client id and a listener on 127.0.0.1 filled
#     in, client_secret_file reading a mounted secret and ca_file a mounted CA. Checked from the host: a
#     token-authenticated subscribe and publish, a garbage token refused with CONNACK 5 (and the same
#     client with the token accepted), the broker process running as uid and gid 1883, and neither the
#     token nor the secret in the broker's log.
#  5. The same through docker-compose.yml (`docker compose`, else Debian's docker-compose) in a copy of
#     the checkout with the files the compose file expects next to it: first a check that those files
#     leave the build fully cached (.dockerignore), then `up --build` with an override that sets
#     network_mode: host (and the copy's compose file without its ports:, which host networking refuses).
#
# Everything it writes lives in one work directory, removed at the end, on failure too. Outside it:
# packages it installs (docker.io, docker-compose, debootstrap, only when missing) and, with the
# private daemon, while it runs: the containers' parent cgroup and the shims' sockets in
# /run/containerd/s (both removed at the end).
#
# Environment: IMAGE_TEST_PULL_TIMEOUT seconds to try pulling each base image (default 60).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
export DEBIAN_FRONTEND=noninteractive
PULL_TIMEOUT=${IMAGE_TEST_PULL_TIMEOUT:-60}
IMAGE=mosquitto-oauth2:image-test
START=$SECONDS
# stop, in_use, make_pki, start_idp, idp_token
. "$ROOT/scripts/lib.sh"

say() { printf 'image-test: %s\n' "$*"; }
die() {
	printf 'image-test: %s\n' "$*" >&2
	exit 1
}

for tool in go node curl openssl mosquitto_pub mosquitto_sub awk; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required but not installed (make deps)"
done
[ -d test/idp/node_modules/oidc-provider ] || die "test/idp has no node_modules: run make deps"
[ "$(id -u)" -eq 0 ] || die "needs root: it installs packages and may start a Docker daemon"

# ------------------------------------------------------------------------------ clean-up on exit

WORK=""
IDP_PID=""
DOCKERD_PID=""
CONTAINERD_PID=""
CGROUP=""
RUN_CONTAINERD_NEW="" # set when /run/containerd was not there before this script's containerd
CONTAINERS=() # names of containers this script started
COMPOSE=()    # the compose command with its files, once the compose project is up
MADE_IMAGES=() # images this script tagged in a daemon it did not start
POLICY_RC_D="" # a policy-rc.d this script put in place for an install

# host_state: what the private daemon must leave as it found it: the firewall, the interfaces, their
# addresses and routes, and the sysctls (less the counters that move by themselves).
host_state() {
	if command -v iptables-save >/dev/null 2>&1; then
		echo "# iptables-save"
		iptables-save 2>&1 | grep -v '^#' || true
		echo "# ip6tables-save"
		ip6tables-save 2>&1 | grep -v '^#' || true
	fi
	if command -v nft >/dev/null 2>&1; then
		echo "# nft list ruleset"
		nft list ruleset 2>&1 || true
	fi
	echo "# ip link, addr, route"
	ip -o link show 2>&1 | sed 's/ link\/.*//' || true
	ip -o addr show 2>&1 || true
	ip route show 2>&1 || true
	echo "# sysctl"
	sysctl -a 2>/dev/null | sort |
		grep -vE '^(fs\.(dentry-state|file-nr|inode-nr|inode-state)|kernel\.ns_last_pid|kernel\.random\.[a-z_]+|fs\.quota\.[a-z_]+|net\.netfilter\.nf_conntrack_count) = ' || true
}

cleanup() {
	trap - INT TERM EXIT
	set +e
	local c m
	stop "$IDP_PID"
	if [ ${#COMPOSE[@]} -gt 0 ]; then
		"${COMPOSE[@]}" down --timeout 5 >>"$WORK/compose.log" 2>&1 || say "compose down failed (log $WORK/compose.log)"
	fi
	for c in "${CONTAINERS[@]}"; do
		$DOCKER rm -f "$c" >/dev/null 2>&1 || true
	done
	for m in "${MADE_IMAGES[@]}"; do
		$DOCKER image rm "$m" >/dev/null 2>&1 || true
	done
	if [ -n "$DOCKERD_PID" ]; then
		stop "$DOCKERD_PID" 300
		stop "$CONTAINERD_PID" 100
		# The shims' socket directory, if containerd made it: nothing else left there.
		[ -n "$RUN_CONTAINERD_NEW" ] && rmdir /run/containerd/s /run/containerd 2>/dev/null
		for m in /sys/fs/cgroup/*/"$CGROUP" /sys/fs/cgroup/"$CGROUP"; do
			[ ! -d "$m" ] || rmdir "$m"
		done
		host_state >"$WORK/host.after"
		if diff "$WORK/host.before" "$WORK/host.after" >"$WORK/host.diff"; then
			say "host check: firewall, interfaces, routes and sysctls as before the private dockerd"
		else
			say "host check: WARNING, changed while the private dockerd ran (other work on this machine may explain it):"
			cat "$WORK/host.diff"
		fi
	fi
	[ -z "$POLICY_RC_D" ] || rm -f "$POLICY_RC_D"
	if [ -n "$WORK" ]; then
		# Whatever a killed daemon or debootstrap left mounted, deepest first; rm stays on this filesystem.
		awk -v d="$WORK" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
		rm -rf --one-file-system "$WORK"
	fi
}
trap 'rc=$?; cleanup; exit $rc' EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mosquitto-oauth2-image-test.XXXXXX")
WORK=$(cd "$WORK" && pwd -P)
export DOCKER_CONFIG="$WORK/docker-config"
say "work directory $WORK"

# .dockerignore is an allow-list: every package the plugin imports must be in the build context.
missing=()
for dir in $(GOCACHE="$WORK/gocache" go list -deps -f '{{if not .Standard}}{{.Dir}}{{end}}' ./plugin); do
	case "$dir" in "$ROOT"/*) ;; *) continue ;; esac
	dir=${dir#"$ROOT"/}
	grep -qxF "!${dir%%/*}" .dockerignore || missing+=("$dir")
done
[ ${#missing[@]} -eq 0 ] || die ".dockerignore leaves out ${missing[*]}, which the plugin imports: add a line \"!${missing[0]%%/*}\""

# ------------------------------------------------------------------------------------- packages

APT_UPDATED=0
apt_install() {
	if [ "$APT_UPDATED" = 0 ]; then
		apt-get update -q >"$WORK/apt.log" 2>&1 || {
			cat "$WORK/apt.log" >&2
			die "apt-get update failed"
		}
		APT_UPDATED=1
	fi
	say "installing $*"
	apt-get install -y -q --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1 || {
		tail -n 30 "$WORK/apt.log" >&2
		die "apt-get install $* failed"
	}
}

# apt_site SUITE: the mirror this machine's apt sources use for SUITE (e.g. bookworm-security).
apt_site() {
	# shellcheck disable=SC2016 # $(SITE) is apt's field, not the shell's
	apt-get indextargets --format '$(SITE)' "Release: $1" 'Identifier: Packages' 2>/dev/null | head -n 1
}

# ---------------------------------------------------------------------------------------- engine

DOCKER=docker
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
	say "using the running Docker daemon ($(docker info --format '{{.ServerVersion}}' 2>/dev/null)); it is left running"
else
	if ! command -v dockerd >/dev/null 2>&1 || ! command -v containerd >/dev/null 2>&1; then
		# The packages' init scripts must not start a system-wide daemon (with its iptables rules).
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			POLICY_RC_D=/usr/sbin/policy-rc.d
			printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC_D"
			chmod 755 "$POLICY_RC_D"
		fi
		apt_install docker.io
		[ -z "$POLICY_RC_D" ] || { rm -f "$POLICY_RC_D"; POLICY_RC_D=""; }
	fi
	# The client from the same package as the daemon.
	[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
	host_state >"$WORK/host.before"

	D="$WORK/docker"
	CGROUP="mosquitto-oauth2-image-test-$$" # the containers' parent cgroup, removed at the end
	mkdir -p "$D/data" "$D/exec" "$D/containerd/root" "$D/containerd/state" "$D/containerd/opt"
	cat >"$D/containerd.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$D/containerd.sock"
[ttrpc]
  address = "$D/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
EOF
	# Its key (the daemon's ID) goes here, not to /etc/docker.
	printf '{"deprecated-key-path": "%s"}\n' "$D/key.json" >"$D/daemon.json"
	[ -e /run/containerd ] || RUN_CONTAINERD_NEW=1
	containerd --config "$D/containerd.toml" --log-level warn >"$WORK/containerd.log" 2>&1 &
	CONTAINERD_PID=$!
	for i in $(seq 100); do
		[ -S "$D/containerd.sock" ] && break
		kill -0 "$CONTAINERD_PID" 2>/dev/null || { cat "$WORK/containerd.log" >&2; die "containerd exited during start-up"; }
		[ "$i" -lt 100 ] || die "containerd not up after 10 s (log $WORK/containerd.log)"
		sleep 0.1
	done
	dockerd --config-file "$D/daemon.json" --data-root "$D/data" --exec-root "$D/exec" \
		--pidfile "$D/dockerd.pid" --host "unix://$D/docker.sock" --containerd "$D/containerd.sock" \
		--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
		--cgroup-parent "/$CGROUP" \
		--userland-proxy=false --log-level warn >"$WORK/dockerd.log" 2>&1 &
	DOCKERD_PID=$!
	export DOCKER_HOST="unix://$D/docker.sock"
	for i in $(seq 300); do
		$DOCKER info >/dev/null 2>&1 && break
		kill -0 "$DOCKERD_PID" 2>/dev/null || { cat "$WORK/dockerd.log" >&2; die "dockerd exited during start-up"; }
		[ "$i" -lt 300 ] || die "dockerd not up after 30 s (log $WORK/dockerd.log)"
		sleep 0.1
	done
	say "private dockerd $($DOCKER info --format '{{.ServerVersion}}, storage {{.Driver}}') (pid $DOCKERD_PID)"
fi

# Compose: the plugin if the client has it, else Debian's docker-compose (1.29).
if $DOCKER compose version >/dev/null 2>&1; then
	COMPOSE_CMD=("$DOCKER" compose)
else
	command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
	COMPOSE_CMD=(docker-compose)
fi

# ----------------------------------------------------------------------------------- base images

# The host's extra CAs, for the stand-ins.
EXTRA_CAS=()
for f in /usr/local/share/ca-certificates/*.crt; do
	[ -f "$f" ] && EXTRA_CAS+=("$f")
done

# debian_standin REF SUITE: debootstrap SUITE (minbase) with this machine's mirrors and CAs, slimmed as
# the official -slim image is, with its apt sources in debian.sources like the official image.
debian_standin() {
	local ref=$1 suite=$2 rootfs="$WORK/rootfs" mirror security
	command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
	mirror=$(apt_site "$suite")
	[ -n "$mirror" ] || die "no apt source for $suite on this machine to make $ref from"
	security=$(apt_site "$suite-security")
	say "making $ref: debootstrap --variant=minbase $suite from this machine's mirror"
	debootstrap --variant=minbase --include=ca-certificates "$suite" "$rootfs" "$mirror" \
		>"$WORK/debootstrap.log" 2>&1 || {
		tail -n 30 "$WORK/debootstrap.log" >&2
		die "debootstrap failed"
	}
	if [ ${#EXTRA_CAS[@]} -gt 0 ]; then
		cp "${EXTRA_CAS[@]}" "$rootfs/usr/local/share/ca-certificates/"
	fi
	chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
	rm -f "$rootfs/etc/apt/sources.list"
	{
		printf '%s\n' 'Types: deb' "URIs: $mirror" "Suites: $suite $suite-updates" 'Components: main' \
			'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
		if [ -n "$security" ]; then
			printf '%s\n' '' 'Types: deb' "URIs: $security" "Suites: $suite-security" 'Components: main' \
				'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
		fi
	} >"$rootfs/etc/apt/sources.list.d/debian.sources"
	printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
		'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/linda/*' \
		'path-exclude /usr/share/lintian/overrides/*' 'path-exclude /usr/share/locale/*' \
		'path-include /usr/share/locale/locale.alias' 'path-exclude /usr/share/man/*' \
		>"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
	# apt as the official image has it: no package caches or downloaded .debs left in a layer, no
	# translations, no services started by packages.
	printf '%s\n' \
		'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
		'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
		'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
	printf '%s\n' 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
	printf '%s\n' 'Acquire::GzipIndexes "true";' 'Acquire::CompressionTypes::Order:: "gz";' \
		>"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
	printf '%s\n' 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
	chmod 755 "$rootfs/usr/sbin/policy-rc.d"
	find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
	rm -rf "$rootfs/usr/share/groff" "$rootfs/usr/share/info" "$rootfs/usr/share/linda" \
		"$rootfs/usr/share/lintian/overrides" "$rootfs/usr/share/man" "$rootfs"/var/lib/apt/lists/* \
		"$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
	tar -C "$rootfs" --numeric-owner -c . | $DOCKER import --change 'CMD ["bash"]' - "$ref" >/dev/null
	rm -rf --one-file-system "$rootfs"
}

# golang_standin REF VERSION BASE: BASE plus gcc and this machine's Go (which must be VERSION), its CAs and
# its module proxy setting.
golang_standin() {
	local ref=$1 version=$2 base=$3 ctx="$WORK/golang" goroot host_version
	goroot=$(go env GOROOT)
	host_version=$(go env GOVERSION)
	case "$host_version" in
	"go$version" | "go$version".*) ;;
	*) die "$ref cannot be pulled and this machine's Go is $host_version, not $version" ;;
	esac
	say "making $ref: $base, gcc and this machine's $host_version"
	mkdir -p "$ctx/certs"
	cp -al "$goroot" "$ctx/go" 2>/dev/null || cp -a "$goroot" "$ctx/go"
	if [ ${#EXTRA_CAS[@]} -gt 0 ]; then
		cp "${EXTRA_CAS[@]}" "$ctx/certs/"
	fi
	cat >"$ctx/Dockerfile" <<EOF
FROM $base
RUN set -eux; export DEBIAN_FRONTEND=noninteractive; apt-get update; \\
	apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev make pkg-config; \\
	rm -rf /var/lib/apt/lists/*
COPY certs/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ARG GOPROXY
ARG GOSUMDB
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:\$PATH GOTOOLCHAIN=local GOPROXY=\$GOPROXY GOSUMDB=\$GOSUMDB
COPY go /usr/local/go
WORKDIR /go
EOF
	$DOCKER build --network host -q --build-arg "GOPROXY=$(go env GOPROXY)" --build-arg "GOSUMDB=$(go env GOSUMDB)" \
		-t "$ref" "$ctx" >"$WORK/golang-standin.log" 2>&1 || {
		tail -n 30 "$WORK/golang-standin.log" >&2
		die "building $ref failed"
	}
	rm -rf --one-file-system "$ctx"
}

# The Dockerfile's bases, in order: golang:VERSION-SUITE for the build, debian:SUITE-slim at run time.
mapfile -t BASES < <(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' Dockerfile)
[ ${#BASES[@]} -eq 2 ] || die "expected two FROM lines in the Dockerfile, found ${#BASES[@]}"
GOLANG_REF=${BASES[0]}
DEBIAN_REF=${BASES[1]}
[[ "$GOLANG_REF" =~ ^golang:([0-9.]+)-([a-z]+)$ ]] || die "unexpected build base $GOLANG_REF"
GO_VERSION=${BASH_REMATCH[1]}
[[ "$DEBIAN_REF" =~ ^debian:([a-z]+)-slim$ ]] || die "unexpected runtime base $DEBIAN_REF"
SUITE=${BASH_REMATCH[1]}

T0=$SECONDS
# have REF: the image is there, or could be pulled.
have() {
	$DOCKER image inspect "$1" >/dev/null 2>&1 && return 0
	say "pulling $1"
	timeout "$PULL_TIMEOUT" $DOCKER pull -q "$1" >"$WORK/pull.log" 2>&1 && return 0
	say "cannot pull $1: $(tail -n 1 "$WORK/pull.log")"
	return 1
}
if ! have "$DEBIAN_REF"; then
	debian_standin "$DEBIAN_REF" "$SUITE"
	[ -n "$DOCKERD_PID" ] || MADE_IMAGES+=("$DEBIAN_REF")
fi
if ! have "$GOLANG_REF"; then
	golang_standin "$GOLANG_REF" "$GO_VERSION" "$DEBIAN_REF"
	[ -n "$DOCKERD_PID" ] || MADE_IMAGES+=("$GOLANG_REF")
fi
BASES_S=$((SECONDS - T0))

# ------------------------------------------------------------------------------------------ build

say "docker build -t $IMAGE ."
T0=$SECONDS
[ -n "$DOCKERD_PID" ] || MADE_IMAGES+=("$IMAGE")
$DOCKER build --network host -t "$IMAGE" . >"$WORK/build.log" 2>&1 || {
	tail -n 40 "$WORK/build.log" >&2
	die "docker build failed"
}
BUILD_S=$((SECONDS - T0))
SIZE=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
SIZE_MB=$(awk -v b="$SIZE" 'BEGIN { printf "%.1f", b / 1e6 }')
say "built $IMAGE in ${BUILD_S} s: $SIZE_MB MB ($SIZE bytes); $(grep -m1 -o 'mosquitto version [0-9.]*' "$WORK/build.log" || true)"

# ------------------------------------------------------------------------------- identity provider

free_port() {
	node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

P="$WORK/pki"
mkdir -p "$P"
make_pki "$P" "mosquitto-oauth2 image-test CA"

BROKER_SECRET=$(openssl rand -hex 16)
DEVICE_SECRET=$(openssl rand -hex 16)
DEVICE_USER=image-test
cat >"$WORK/clients.json" <<EOF
{"clients": [
  {"client_id": "broker", "client_secret": "$BROKER_SECRET"},
  {"client_id": "device", "client_secret": "$DEVICE_SECRET", "claims": {"sub": "device-sub", "username": "$DEVICE_USER"}}
]}
EOF

IDP_PORT=$(free_port)
ISSUER="https://127.0.0.1:$IDP_PORT"
start_idp "$P" "$IDP_PORT" "$WORK/clients.json"
say "test/idp on $ISSUER"

TOKEN=$(idp_token "$ISSUER" "$P/ca.pem" device "$DEVICE_SECRET") ||
	die "could not get a token from test/idp"

# ------------------------------------------------------------------------ what a user puts in place

# setup DIR PORT: DIR as docker-compose.yml expects it next to itself: mosquitto.conf (the example with the
# README's edits), client_secret.txt, certs/idp-ca.pem, data/ and log/, owned by the broker's uid.
setup() {
	local dir=$1 port=$2 conf="$1/mosquitto.conf" line
	mkdir -p "$dir/data" "$dir/log" "$dir/certs"
	cp "$P/ca.pem" "$dir/certs/idp-ca.pem"
	printf '%s\n' "$BROKER_SECRET" >"$dir/client_secret.txt"
	sed -e "s|^listener 1883\$|listener $port 127.0.0.1|" \
		-e "s|^plugin_opt_introspection_endpoint .*|plugin_opt_introspection_endpoint $ISSUER/token/introspection|" \
		-e 's|^plugin_opt_client_id .*|plugin_opt_client_id broker|' \
		-e 's|^plugin_opt_client_secret .*|#&|' \
		-e 's|^#\(plugin_opt_client_secret_file /run/secrets/client_secret\)$|\1|' \
		-e 's|^#plugin_opt_ca_file .*|plugin_opt_ca_file /mosquitto/certs/idp-ca.pem|' \
		mosquitto.conf.example >"$conf"
	for line in "listener $port 127.0.0.1" "plugin /usr/lib/mosquitto-oauth2/mosquitto-oauth2.so" \
		"plugin_opt_introspection_endpoint $ISSUER/token/introspection" "plugin_opt_client_id broker" \
		"plugin_opt_client_secret_file /run/secrets/client_secret" "plugin_opt_ca_file /mosquitto/certs/idp-ca.pem"; do
		[ "$(grep -cxF -- "$line" "$conf")" -eq 1 ] || die "mosquitto.conf.example changed: cannot set \"$line\""
	done
	! grep -qE '^plugin_opt_client_secret[[:space:]]' "$conf" || die "client_secret still set in $conf"
	chown -R 1883:1883 "$dir/data" "$dir/log" "$dir/client_secret.txt"
	chmod 0400 "$dir/client_secret.txt"
}

# check NAME PORT: the broker in container NAME, listening on 127.0.0.1:PORT, does what the README says.
check() {
	local name=$1 port=$2 pid i uid gid rc out sub_pid
	for i in $(seq 100); do
		in_use "$port" && break
		[ "$($DOCKER inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true ] ||
			{ $DOCKER logs "$name" >&2 || true; die "$name: the broker exited during start-up"; }
		[ "$i" -lt 100 ] || { $DOCKER logs "$name" >&2 || true; die "$name: not listening on 127.0.0.1:$port after 10 s"; }
		sleep 0.1
	done

	pid=$($DOCKER inspect -f '{{.State.Pid}}' "$name")
	uid=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")
	gid=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")
	[ "$(cat "/proc/$pid/comm")" = mosquitto ] || die "$name: pid $pid is $(cat "/proc/$pid/comm"), not mosquitto"
	if [ "$uid" != "1883 1883 1883 1883" ] || [ "$gid" != "1883 1883 1883 1883" ]; then
		die "$name: the broker runs as uid $uid, gid $gid, not 1883"
	fi
	say "$name: ok: the broker (host pid $pid) runs as uid and gid 1883"

	mosquitto_sub -V mqttv311 -h 127.0.0.1 -p "$port" -u "$DEVICE_USER" -P "$TOKEN" -t 'image-test/#' -v -C 1 -W 15 \
		>"$WORK/sub.out" 2>"$WORK/sub.err" &
	sub_pid=$!
	# The subscriber may not have subscribed yet when the first message goes out: publish until it got one.
	for i in $(seq 20); do
		mosquitto_pub -V mqttv311 -h 127.0.0.1 -p "$port" -u "$DEVICE_USER" -P "$TOKEN" -t image-test/hello -m hi \
			2>"$WORK/pub.err" || { cat "$WORK/pub.err" >&2; $DOCKER logs "$name" >&2; die "$name: the token was refused"; }
		sleep 0.5
		kill -0 "$sub_pid" 2>/dev/null || break
	done
	rc=0
	wait "$sub_pid" || rc=$?
	if [ "$rc" -ne 0 ] || [ "$(cat "$WORK/sub.out")" != "image-test/hello hi" ]; then
		cat "$WORK/sub.out" "$WORK/sub.err" >&2
		$DOCKER logs "$name" >&2
		die "$name: the subscriber got no message (exit $rc)"
	fi
	say "$name: ok: a token-authenticated subscriber receives a token-authenticated publish"

	# CONNACK 5 is "Connection Refused: not authorised" in MQTT 3.1.1; the same client with the token is
	# the control that the refusal is the token's.
	rc=0
	out=$(mosquitto_pub -V mqttv311 -h 127.0.0.1 -p "$port" -u "$DEVICE_USER" -P 'garbage-not-a-token' -t image-test/x -m x 2>&1) || rc=$?
	if [ "$rc" -eq 0 ] || [[ "$out" != *"not authorised"* ]]; then
		die "$name: a garbage token was not refused with CONNACK 5 (exit $rc: $out)"
	fi
	mosquitto_pub -V mqttv311 -h 127.0.0.1 -p "$port" -u "$DEVICE_USER" -P "$TOKEN" -t image-test/x -m x ||
		die "$name: the control with the token was refused"
	say "$name: ok: a garbage token is refused with CONNACK 5 (not authorised); the token is accepted"

	# The broker's secret came from the mounted file: the config has no other, and introspection worked.
	if $DOCKER logs "$name" 2>&1 | grep -qF -e "$TOKEN" -e "$BROKER_SECRET"; then
		die "$name: the broker log holds the token or the client secret"
	fi
	say "$name: ok: client_secret_file read from the mounted secret; no token or secret in the log"
}

# ------------------------------------------------------------------------------------- docker run

T0=$SECONDS
RUN="$WORK/run"
PORT=$(free_port)
setup "$RUN" "$PORT"
NAME="mosquitto-oauth2-image-test-$$"
CONTAINERS+=("$NAME")
say "docker run $IMAGE as $NAME on 127.0.0.1:$PORT"
$DOCKER run -d --name "$NAME" --network host --security-opt no-new-privileges:true \
	-v "$RUN/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" \
	-v "$RUN/client_secret.txt:/run/secrets/client_secret:ro" \
	-v "$RUN/certs:/mosquitto/certs:ro" \
	-v "$RUN/data:/mosquitto/data:rw" -v "$RUN/log:/mosquitto/log:rw" \
	"$IMAGE" >/dev/null
check "$NAME" "$PORT"
$DOCKER rm -f "$NAME" >/dev/null
RUN_S=$((SECONDS - T0))

# ---------------------------------------------------------------------------------------- compose

# A copy of the checkout with what the compose file expects next to it, as a user would have it.
T0=$SECONDS
CDIR="$WORK/src"
mkdir -p "$CDIR"
git ls-files -z --cached --others --exclude-standard | tar -C "$ROOT" --null -T - -c | tar -C "$CDIR" -x
PORT=$(free_port)
setup "$CDIR" "$PORT"

# Those files are outside the build context (.dockerignore): a build from here is the same build, every
# step from the cache, COPY . . included.
[ -n "$DOCKERD_PID" ] || MADE_IMAGES+=("$IMAGE-copy")
$DOCKER build --network host -t "$IMAGE-copy" "$CDIR" >"$WORK/build-copy.log" 2>&1 || {
	tail -n 40 "$WORK/build-copy.log" >&2
	die "docker build in the copy failed"
}
if [ "$($DOCKER image inspect -f '{{.Id}}' "$IMAGE-copy")" != "$($DOCKER image inspect -f '{{.Id}}' "$IMAGE")" ]; then
	grep -E '^Step|Using cache' "$WORK/build-copy.log" >&2
	die "files next to docker-compose.yml changed the build: .dockerignore lets them into the context"
fi
say "ok: with mosquitto.conf, client_secret.txt, certs/, data/ and log/ next to docker-compose.yml the build is all cached"

# Host networking, so that the broker reaches test/idp on 127.0.0.1 and every test stays on loopback.
# Published ports and host networking exclude each other (docker-compose refuses the pair), and an
# override can add to ports: but not take it away, so the copy's compose file loses its ports: block.
awk '/^    ports:/ { skip = 1; next } skip && /^      / { next } { skip = 0; print }' \
	"$ROOT/docker-compose.yml" >"$CDIR/docker-compose.yml"
! grep -q '^    ports:' "$CDIR/docker-compose.yml" || die "could not take ports: out of docker-compose.yml"
! diff "$ROOT/docker-compose.yml" "$CDIR/docker-compose.yml" | grep -q '^> ' || die "taking ports: out changed more"
CNAME="mosquitto-oauth2-image-test-compose-$$"
cat >"$CDIR/image-test.override.yml" <<EOF
services:
  mosquitto:
    image: "$IMAGE"
    build:
      network: "host"
    container_name: "$CNAME"
    network_mode: "host"
    restart: "no"
EOF
COMPOSE=("${COMPOSE_CMD[@]}" --project-name "image-test-$$" --project-directory "$CDIR"
	-f "$CDIR/docker-compose.yml" -f "$CDIR/image-test.override.yml")
say "${COMPOSE_CMD[*]} up --build -d ($("${COMPOSE_CMD[@]}" version --short 2>/dev/null || true)), on 127.0.0.1:$PORT"
"${COMPOSE[@]}" up --build -d >"$WORK/compose.log" 2>&1 || {
	cat "$WORK/compose.log" >&2
	die "compose up failed"
}
check "$CNAME" "$PORT"
"${COMPOSE[@]}" down --timeout 5 >>"$WORK/compose.log" 2>&1 || die "compose down failed"
COMPOSE=()
COMPOSE_S=$((SECONDS - T0))

say "passed: image $SIZE_MB MB; base images ${BASES_S} s, build ${BUILD_S} s, docker run ${RUN_S} s, compose ${COMPOSE_S} s; $((SECONDS - START)) s in all"
