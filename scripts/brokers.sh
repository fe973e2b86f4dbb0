#!/usr/bin/env bash
# Prepares a Mosquitto broker of a given version for the end-to-end tests and prints, on stdout, the
# absolute path of an executable that behaves like `mosquitto` (-c CONF, -h, foreground, host paths).
# Progress goes to stderr. Everything is cached under build/brokers/, so a second call is instant.
#
#   scripts/brokers.sh 2.0.11   Debian bookworm's broker, installed with apt-get: /usr/sbin/mosquitto
#   scripts/brokers.sh 2.0.21   bookworm-backports' broker (2.0.x), extracted next to the system one
#   scripts/brokers.sh 2.1.2    Debian sid's broker (2.1.x) in a debootstrap root, run through sid's
#                               own dynamic loader without chroot, so host paths keep working
#   scripts/brokers.sh all      prepares all three and prints nothing
#
# Aliases: bookworm = 2.0.11, backports = 2.0.21, sid = 2.1.2. The 2.0.21 and 2.1.2 brokers come from
# moving suites: whatever 2.0.x (backports) or 2.1.x (sid) is current is accepted, with a note on
# stderr when it is not the requested version. Needs root (apt-get, debootstrap) on first preparation.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

cd "$(dirname "$0")/.."
BROKERS=$PWD/build/brokers
MULTIARCH=$(uname -m)-linux-gnu

say() { echo "brokers: $*" >&2; }
die() { echo "brokers: error: $*" >&2; exit 1; }

usage() {
	echo "usage: $0 2.0.11|2.0.21|2.1.2|all   (aliases: bookworm, backports, sid)" >&2
	exit 2
}

need_root() {
	[ "$(id -u)" -eq 0 ] || die "preparing mosquitto $1 needs root (apt-get/debootstrap); run as root once"
}

# Runs a command with its output on stderr; on failure shows the tail of it and stops.
run() {
	local log
	log=$(mktemp)
	if ! "$@" >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		rm -f "$log"
		die "failed: $*"
	fi
	rm -f "$log"
}

# The version a broker reports in the first line of `-h` ("mosquitto version 2.0.11").
broker_version() {
	local out
	out=$("$@" -h 2>&1 || true)
	printf '%s\n' "$out" | sed -n 's/^mosquitto version \([0-9][0-9.]*\).*/\1/p' | head -n 1
}

# Checks that the wrapper runs and reports a version in the expected series; warns when the suite
# has moved on from the requested version.
check_version() { # wrapper requested series
	local got
	got=$(broker_version "$1")
	[ -n "$got" ] || die "$1 -h printed no version; output: $("$1" -h 2>&1 | head -n 5 || true)"
	case "$got" in
	"$3".*) ;;
	*) die "$1 reports mosquitto $got, expected $3.x" ;;
	esac
	[ "$got" = "$2" ] || say "note: requested $2, the suite now has $got (accepted)"
	say "mosquitto $got ready: $1"
}

codename() {
	local c=""
	[ -r /etc/os-release ] && c=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	echo "${c:-bookworm}"
}

# The machine's own Debian mirror: the first URI of the apt source serving the release itself
# (deb822 .sources first, then one-line sources.list files).
debian_mirror() {
	local c=$1 f uri=""
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		uri=$(awk -v c="$c" '
			function flush() { if (is && uri != "" && !done) { print uri; done = 1 } is = 0; uri = "" }
			/^[ \t]*$/ { flush(); next }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == c) is = 1 }
			END { flush() }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		uri=$(awk -v c="$c" '
			$1 == "deb" { i = 2; if ($i ~ /^\[/) while ($i !~ /\]$/) i++; if ($i ~ /^\[/ || $i ~ /\]$/) i++
				if ($(i + 1) == c) { print $i; exit } }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return; }
	done
	die "no apt source for Debian $c found in /etc/apt/sources.list{,.d/}"
}

# The Signed-By of the release's deb822 stanza, or Debian's archive keyring.
debian_keyring() {
	local c=$1 k=""
	k=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v c="$c" '
		function flush() { if (is && key != "" && !done) { print key; done = 1 } is = 0; key = "" }
		/^[ \t]*$/ { flush(); next }
		tolower($1) == "signed-by:" && NF == 2 { key = $2 }
		tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == c) is = 1 }
		END { flush() }')
	echo "${k:-/usr/share/keyrings/debian-archive-keyring.gpg}"
}

apt_updated=""
apt_update() {
	[ -n "$apt_updated" ] && return
	say "apt-get update"
	run apt-get update -q
	apt_updated=1
}

ensure_tool() { # command package
	command -v "$1" >/dev/null 2>&1 && return
	need_root "$2"
	apt_update
	say "installing $2"
	run apt-get install -y -q --no-install-recommends "$2"
}

# --- 2.0.11: the distribution's broker ------------------------------------------------------------

prepare_system() {
	if [ ! -x /usr/sbin/mosquitto ]; then
		need_root 2.0.11
		apt_update
		say "installing mosquitto from $(codename)"
		run apt-get install -y -q --no-install-recommends mosquitto
	fi
	[ -x /usr/sbin/mosquitto ] || die "/usr/sbin/mosquitto missing after apt-get install mosquitto"
	if [ ! -f "$BROKERS/2.0.11/.ready" ]; then
		check_version /usr/sbin/mosquitto 2.0.11 2.0
		mkdir -p "$BROKERS/2.0.11"
		touch "$BROKERS/2.0.11/.ready"
	fi
	WRAPPER=/usr/sbin/mosquitto
}

# --- 2.0.21: bookworm-backports, extracted beside the system broker -------------------------------

# Prints "name op version" for each dependency of name=version that is a shared library, taking the
# first of alternatives.
lib_deps() {
	apt-cache show "$1=$2" 2>/dev/null | awk '
		/^$/ { exit }
		/^(Pre-)?Depends:/ { sub(/^[^:]*:[ \t]*/, ""); n = split($0, d, /,[ \t]*/)
			for (i = 1; i <= n; i++) { sub(/[ \t]*\|.*/, "", d[i]); name = d[i]; sub(/[ \t(].*/, "", name)
				sub(/:any$/, "", name); op = ""; v = ""
				if (match(d[i], /\(.*\)/)) { split(substr(d[i], RSTART + 1, RLENGTH - 2), p, /[ \t]+/); op = p[1]; v = p[2] }
				if (name ~ /^lib/) print name, (op == "" ? "-" : op), (v == "" ? "-" : v) } }'
}

satisfies() { # version op wanted
	[ "$2" = "-" ] && return 0
	dpkg --compare-versions "$1" "$2" "$3"
}

# The newest available version of a package satisfying op wanted, preferring apt's candidate.
pick_version() { # name op wanted
	local cand v
	cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
	if [ -n "$cand" ] && [ "$cand" != "(none)" ] && satisfies "$cand" "$2" "$3"; then
		echo "$cand"
		return
	fi
	for v in $(apt-cache madison "$1" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }'); do
		satisfies "$v" "$2" "$3" && { echo "$v"; return; }
	done
	return 1
}

prepare_backports() {
	local dir=$BROKERS/2.0.21 c mirror version part
	[ -f "$dir/.ready" ] && [ -x "$dir/mosquitto" ] && { WRAPPER=$dir/mosquitto; return; }
	need_root 2.0.21
	c=$(codename)
	if ! grep -qs -- "$c-backports" /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources; then
		mirror=$(debian_mirror "$c")
		say "adding $c-backports ($mirror) as /etc/apt/sources.list.d/backports.sources"
		printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: %s\n' \
			"$mirror" "$c" "$(debian_keyring "$c")" >/etc/apt/sources.list.d/backports.sources
		apt_updated=""
	fi
	version=$(apt-cache show "mosquitto/$c-backports" 2>/dev/null | awk '/^Version:/ { print $2; exit }' || true)
	if [ -z "$version" ]; then
		apt_update
		version=$(apt-cache show "mosquitto/$c-backports" 2>/dev/null | awk '/^Version:/ { print $2; exit }' || true)
	fi
	[ -n "$version" ] || die "mosquitto is not available from $c-backports"

	part=$dir.partial
	rm -rf "$part"
	mkdir -p "$part/debs" "$part/root"
	# mosquitto itself, plus each library it needs (recursively) that the host lacks or has too old.
	local -a queue=("mosquitto=$version") got=()
	local item seen ver name op want inst
	while [ ${#queue[@]} -gt 0 ]; do
		item=${queue[0]}
		queue=("${queue[@]:1}")
		for seen in "${got[@]}"; do [ "$seen" = "$item" ] && continue 2; done
		got+=("$item")
		while read -r name op want; do
			inst=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$name" 2>/dev/null || true)
			if [ "${inst:0:2}" = "ii" ] && satisfies "${inst##* }" "$op" "$want"; then
				continue
			fi
			ver=$(pick_version "$name" "$op" "$want") || die "no version of $name satisfies $op $want"
			queue+=("$name=$ver")
		done < <(lib_deps "${item%%=*}" "${item#*=}")
	done
	say "downloading ${got[*]}"
	(cd "$part/debs" && run apt-get download -q -o APT::Sandbox::User=root "${got[@]}")
	local deb
	for deb in "$part"/debs/*.deb; do
		run dpkg -x "$deb" "$part/root"
	done
	[ -x "$part/root/usr/sbin/mosquitto" ] || die "no usr/sbin/mosquitto in the backports package"
	local missing
	missing=$(LD_LIBRARY_PATH=$part/root/usr/lib/$MULTIARCH ldd "$part/root/usr/sbin/mosquitto" | grep 'not found' || true)
	[ -z "$missing" ] || die "backports mosquitto has unresolved libraries: $missing"
	rm -rf "$dir"
	mv "$part" "$dir"
	cat >"$dir/mosquitto" <<EOF
#!/bin/sh
# Generated by scripts/brokers.sh: mosquitto $version from $c-backports, extracted under root/.
here=\$(cd -P "\$(dirname "\$0")" && pwd)
LD_LIBRARY_PATH="\$here/root/usr/lib/$MULTIARCH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "\$here/root/usr/sbin/mosquitto" "\$@"
EOF
	chmod +x "$dir/mosquitto"
	check_version "$dir/mosquitto" 2.0.21 2.0
	touch "$dir/.ready"
	WRAPPER=$dir/mosquitto
}

# --- 2.1.2: Debian sid in a debootstrap root, run through sid's loader ----------------------------

prepare_sid() {
	local dir=$BROKERS/2.1.2 part ld lib start
	[ -f "$dir/.ready" ] && [ -x "$dir/mosquitto" ] && { WRAPPER=$dir/mosquitto; return; }
	need_root 2.1.2
	ensure_tool debootstrap debootstrap
	part=$dir.partial
	rm -rf "$part"
	mkdir -p "$part"
	start=$SECONDS
	say "debootstrap --variant=minbase --include=mosquitto sid (about a minute; log: $part/debootstrap.log)"
	# ${SID_MIRROR:-} empty: debootstrap's default mirror.
	if ! debootstrap --variant=minbase --include=mosquitto sid "$part/root" ${SID_MIRROR:-} \
		>"$part/debootstrap.log" 2>&1; then
		tail -n 30 "$part/debootstrap.log" >&2
		[ -f "$part/root/debootstrap/debootstrap.log" ] && tail -n 30 "$part/root/debootstrap/debootstrap.log" >&2
		die "debootstrap of sid failed (log kept in $part)"
	fi
	say "debootstrap done in $((SECONDS - start))s"
	# Only the broker and its libraries are used: drop the package caches, docs and locales.
	rm -rf "$part"/root/var/cache/apt/archives/*.deb "$part"/root/var/cache/apt/*.bin \
		"$part"/root/var/lib/apt/lists/* "$part"/root/usr/share/doc "$part"/root/usr/share/man \
		"$part"/root/usr/share/locale "$part"/root/usr/share/info
	[ -x "$part/root/usr/sbin/mosquitto" ] || die "no usr/sbin/mosquitto in the sid root"
	lib=usr/lib/$MULTIARCH
	ld=$(cd "$part/root/$lib" && ls ld-linux*.so.* 2>/dev/null | head -n 1)
	[ -n "$ld" ] || die "no dynamic loader in $part/root/$lib"
	rm -rf "$dir"
	mv "$part" "$dir"
	# No chroot: sid's own loader runs sid's broker against sid's libraries only (--inhibit-cache
	# keeps the host's ld.so.cache out), while file paths (config, plugin, logs) stay the host's.
	cat >"$dir/mosquitto" <<EOF
#!/bin/sh
# Generated by scripts/brokers.sh: Debian sid's mosquitto from root/, run by sid's loader, no chroot.
here=\$(cd -P "\$(dirname "\$0")" && pwd)
exec "\$here/root/$lib/$ld" --inhibit-cache --library-path "\$here/root/$lib" "\$here/root/usr/sbin/mosquitto" "\$@"
EOF
	chmod +x "$dir/mosquitto"
	check_version "$dir/mosquitto" 2.1.2 2.1
	touch "$dir/.ready"
	WRAPPER=$dir/mosquitto
}

prepare() {
	case "$1" in
	2.0.11 | bookworm) prepare_system ;;
	2.0.21 | backports) prepare_backports ;;
	2.1.2 | sid) prepare_sid ;;
	*) usage ;;
	esac
}

[ $# -eq 1 ] || usage
case "$1" in 2.0.11 | bookworm | 2.0.21 | backports | 2.1.2 | sid | all) ;; *) usage ;; esac

mkdir -p "$BROKERS"
# One preparation at a time (parallel make jobs, several checkouts sharing nothing but apt).
exec 9>"$BROKERS/.lock"
command -v flock >/dev/null 2>&1 && flock 9

WRAPPER=""
if [ "$1" = all ]; then
	for v in 2.0.11 2.0.21 2.1.2; do
		prepare "$v"
	done
else
	prepare "$1"
	echo "$WRAPPER"
fi
