#!/usr/bin/env bash
# Installs what building and testing need, and only what is missing: Mosquitto (broker, clients and
# plugin headers) from the distribution's packages, and the test identity provider's npm packages from
# test/idp/package-lock.json. Without root it prints the apt-get command instead of running it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
[ -f /usr/include/mosquitto_plugin.h ] || missing+=(mosquitto-dev)
[ -f /usr/include/mosquitto.h ] || missing+=(libmosquitto-dev)
command -v curl >/dev/null 2>&1 || missing+=(curl) # the HTTP API test

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "deps: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		apt-get install -y -q --no-install-recommends "${missing[@]}"
	else
		echo "deps: missing ${missing[*]}; run as root:" >&2
		echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
		exit 1
	fi
fi

for tool in go node npm; do
	command -v "$tool" >/dev/null 2>&1 || { echo "deps: $tool is required but not installed" >&2; exit 1; }
done

# npm ci only when nothing is installed yet or the lock file changed since.
if [ ! -f test/idp/node_modules/.package-lock.json ] ||
	[ test/idp/package-lock.json -nt test/idp/node_modules/.package-lock.json ]; then
	echo "deps: npm ci in test/idp"
	(cd test/idp && npm ci --no-audit --no-fund --loglevel=error)
fi
