# Mosquitto with the mosquitto-oauth2 plugin.
#
#   docker build -t mosquitto-oauth2 .          (or: docker compose up --build, see docker-compose.yml)
#
# The image has no mosquitto.conf of its own: mount one at /mosquitto/config/mosquitto.conf, starting from
# /mosquitto/config/mosquitto.conf.example (the same file as mosquitto.conf.example in the repository).
# The plugin is at /usr/lib/mosquitto-oauth2/mosquitto-oauth2.so. The broker runs as the user mosquitto,
# uid and gid 1883 (as in the eclipse-mosquitto image), which must be able to write the data and log
# directories and read the config and any secret files mounted into the container.
#
# Debian, not Alpine: the plugin is a Go c-shared library that the broker dlopen()s. Go's c-shared
# runtime is built and tested against glibc; under musl it has a history of start-up failures (it
# expects argc/argv/environ from the dynamic loader, golang/go#13492), and a .so linked against glibc
# does not load on musl at all. Build and runtime stages share one Debian release (bookworm) so the
# glibc the plugin was linked against is the one it runs with.

# ---------------------------------------------------------------------------------------------- build
FROM golang:1.26-bookworm AS build

# Mosquitto's plugin headers (mosquitto_broker.h, mosquitto_plugin.h, mosquitto.h); gcc comes with the image.
RUN set -eux; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update; \
	apt-get install -y --no-install-recommends make mosquitto-dev libmosquitto-dev; \
	rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# The plugin's own target of `make build` (the device-side command is not part of the image, and its
# sources are not in the build context).
RUN make build/mosquitto-oauth2.so

# -------------------------------------------------------------------------------------------- runtime
FROM debian:bookworm-slim

# Mosquitto 2.0.x from bookworm-backports (newer than bookworm's 2.0.11). The backports source uses the
# same mirror as the image's own apt sources, read from its debian.sources. The mosquitto user is
# created first with a fixed uid/gid of 1883; the package's postinst keeps an existing user.
RUN set -eux; \
	export DEBIAN_FRONTEND=noninteractive; \
	groupadd --system --gid 1883 mosquitto; \
	useradd --system --uid 1883 --gid mosquitto --no-create-home --home-dir /var/lib/mosquitto \
		--shell /usr/sbin/nologin mosquitto; \
	mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources | head -n 1)"; \
	test -n "$mirror"; \
	printf '%s\n' 'Types: deb' "URIs: $mirror" 'Suites: bookworm-backports' 'Components: main' \
		'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
		>/etc/apt/sources.list.d/bookworm-backports.sources; \
	apt-get update; \
	apt-get install -y --no-install-recommends ca-certificates; \
	apt-get install -y --no-install-recommends -t bookworm-backports mosquitto; \
	rm -rf /var/lib/apt/lists/*; \
	mosquitto -h | head -n 1; \
	mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log; \
	chown -R mosquitto:mosquitto /mosquitto

COPY --from=build /src/build/mosquitto-oauth2.so /usr/lib/mosquitto-oauth2/mosquitto-oauth2.so
COPY mosquitto.conf.example /mosquitto/config/mosquitto.conf.example

EXPOSE 1883
USER mosquitto
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
