# mosquitto-oauth2. `make help` lists the targets.

GO        ?= go
BUILD     := build
SO        := $(BUILD)/mosquitto-oauth2.so
CMD       := $(BUILD)/mqtt-oauth2
# BROKER picks the Mosquitto the end-to-end tests and the benchmark run against; scripts/brokers.sh
# prepares it (2.0.21 from bookworm-backports, 2.1.2 in a Debian sid root). MOSQUITTO overrides it with
# a binary of your own.
BROKER    ?= 2.0.11
BROKERS   ?= 2.0.11 2.0.21 2.1.2
BENCH_BROKERS ?= 2.0.11 2.1.2
MOSQUITTO ?=
GOSRC     := $(shell find . -path ./build -prune -o -path ./test/idp -prune -o -name '*.go' -print) plugin/plugin.c plugin/shim.h go.mod go.sum
UNIT_PKGS := ./acl/... ./auth/... ./bench/... ./blockinghttp/... ./cache/... ./cmd/... ./config/... ./grant/... ./introspect/... ./jwt/... ./logtext/... ./metrics/... ./renew/... ./sessions/... ./strictjson/... ./template/... ./verified/... ./wake/... ./wellknown/... ./yield/...
FUZZTIME  ?= 10s

.PHONY: help build test unit e2e e2e-all bench fuzz lint demo image-test deps clean

help:
	@echo "make build   build $(SO) and the device-side command $(CMD)"
	@echo "make test    install what is missing, then run lint, unit and end-to-end tests"
	@echo "make unit    unit tests with -race"
	@echo "make e2e     end-to-end tests: the built .so in a real Mosquitto (BROKER=$(BROKER)) against test/idp"
	@echo "make e2e-all the end-to-end tests against every supported broker ($(BROKERS))"
	@echo "make bench   connect (plain, TLS), message-ACL, wake-up and stall figures against $(BENCH_BROKERS), as ratios to the broker without the plugin (about 5½ min)"
	@echo "make fuzz    run each fuzz target for FUZZTIME ($(FUZZTIME))"
	@echo "make demo    start test/idp and a broker with the plugin, print a ready mosquitto_pub/sub pair"
	@echo "make image-test build the Docker image and test it with docker run and docker-compose.yml against test/idp"
	@echo "make deps    install what is missing (apt-get, npm ci)"
	@echo "make clean   remove $(BUILD)/"

build: $(SO) $(CMD)

$(CMD): $(GOSRC)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o $@ ./cmd/mqtt-oauth2

# -trimpath keeps build paths out of the binary; the broker's symbols stay undefined and resolve at load.
$(SO): $(GOSRC)
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=c-shared -o $@ ./plugin
	@rm -f $(BUILD)/mosquitto-oauth2.h

deps:
	@scripts/deps.sh

test: deps
	$(MAKE) lint unit e2e-all

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

# The second run repeats introspect's suite with every client on blockinghttp, as on the broker thread.
unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)
	$(GO) test -race -count=1 ./introspect/ -args -blocking

# The broker is resolved inside the recipe so that a failed preparation stops make.
e2e: $(SO) $(CMD)
	@m="$(MOSQUITTO)"; [ -n "$$m" ] || m=$$(scripts/brokers.sh $(BROKER)) || exit 1; \
		echo "e2e against $$($$m -h 2>/dev/null | head -1)"; \
		MOSQUITTO=$$m PLUGIN_SO=$(abspath $(SO)) MQTT_OAUTH2=$(abspath $(CMD)) $(GO) test -count=1 -tags e2e -timeout 20m ./test/

e2e-all: $(SO) $(CMD)
	@for b in $(BROKERS); do $(MAKE) --no-print-directory e2e BROKER=$$b || exit 1; done

bench: $(SO)
	@for b in $(BENCH_BROKERS); do \
		m=$$(scripts/brokers.sh $$b) || exit 1; \
		$(GO) run ./bench -mosquitto $$m -plugin $(abspath $(SO)) -label=$$b || exit 1; \
	done

# Minimizing is capped: FuzzVerify's seeds are 60 KiB hostile tokens, and shrinking each new input
# found from them would otherwise take the whole FUZZTIME.
fuzz:
	@for pkg in $(UNIT_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg || exit 1; \
		done; \
	done

demo: deps $(SO) $(CMD)
	@scripts/demo.sh

# Needs root: it may install docker.io and start a private dockerd (see the script's header).
image-test: deps
	@scripts/image-test.sh

clean:
	rm -rf $(BUILD)
