# mosquitto-oauth2. `make help` lists the targets.

GO        ?= go
BUILD     := build
SO        := $(BUILD)/mosquitto-oauth2.so
MOSQUITTO ?= $(shell command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto)
GOSRC     := $(shell find . -name '*.go' -not -path './test/idp/*') plugin/plugin.c plugin/shim.h go.mod go.sum
UNIT_PKGS := ./auth/... ./config/... ./introspect/... ./template/...
FUZZTIME  ?= 10s

.PHONY: help build test unit e2e fuzz lint demo deps clean

help:
	@echo "make build   build $(SO)"
	@echo "make test    install what is missing, then run lint, unit and end-to-end tests"
	@echo "make unit    unit tests with -race"
	@echo "make e2e     end-to-end tests: the built .so in a real Mosquitto against test/idp"
	@echo "make fuzz    run each fuzz target for FUZZTIME ($(FUZZTIME))"
	@echo "make demo    start test/idp and a broker with the plugin, print a ready mosquitto_pub/sub pair"
	@echo "make deps    install what is missing (apt-get, npm ci)"
	@echo "make clean   remove $(BUILD)/"

build: $(SO)

# -trimpath keeps build paths out of the binary; the broker's symbols stay undefined and resolve at load.
$(SO): $(GOSRC)
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=c-shared -o $@ ./plugin
	@rm -f $(BUILD)/mosquitto-oauth2.h

deps:
	@scripts/deps.sh

test: deps
	$(MAKE) lint unit e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

e2e: $(SO)
	MOSQUITTO=$(MOSQUITTO) PLUGIN_SO=$(abspath $(SO)) $(GO) test -count=1 -tags e2e -timeout 20m ./test/

fuzz:
	@for pkg in $(UNIT_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

demo: deps $(SO)
	@scripts/demo.sh

clean:
	rm -rf $(BUILD)
