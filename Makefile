# The targets the README documents. CI (.ci/run) runs `make test` on a
# fresh clone, which must need nothing but Go, make, node and npm.

GO ?= go

.PHONY: demo test build vet fmt-check race raw bench bench-quick

# The one-command demo (integration/demo): Caddy with Caddyfile.example in
# front of three stub connectors; packets routed by prefix, then one
# connector killed. Starts and stops everything itself, on loopback.
demo:
	$(GO) run ./integration/demo

build:
	$(GO) build -o caddy ./cmd/caddy

# Everything CI checks: vet, formatting, the race-enabled test suite, and a
# build of the Caddy binary.
test: vet fmt-check race raw build

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The end-to-end tests run real ilp-plugin-http peers under node, from the
# npm packages pinned in integration/js/package-lock.json. npm ci writes
# node_modules/.package-lock.json, so the packages are installed again only
# when they are missing or the lock file changed. (Defined before the rule
# that needs it: make expands a prerequisite as it reads the rule.)
JS_DEPS = integration/js/node_modules/.package-lock.json

# One package at a time (-p 1): the end-to-end tests bound latency,
# goroutines and memory on a 2-core machine, and another package's tests
# running beside them would starve them.
race: $(JS_DEPS) redis-server haproxy
	$(GO) test -race -count=1 -p 1 -timeout 30m ./...

# The sockets' raw system calls (internal/rawio) are made only without
# the race detector, which draws its edges in the usual calls: the
# packages that make them are tested once more without it.
raw:
	$(GO) test -count=1 ./internal/rawio ./internal/conncheck ./frontdoor/h1 ./frontdoor/h2 ./handler/proxy ./async

# The tests of the shared store run real redis-server and redis-sentinel
# processes on loopback (internal/redistest), and the tests of several
# edges put HAProxy in front of them, all from Debian's packages,
# installed here if missing.
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL = $(SUDO) apt-get update -q && \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends
.PHONY: redis-server haproxy
redis-server:
	@command -v redis-server >/dev/null && command -v redis-sentinel >/dev/null && command -v redis-cli >/dev/null || \
		{ $(APT_INSTALL) redis-server redis-sentinel redis-tools; }
haproxy:
	@command -v haproxy >/dev/null || { $(APT_INSTALL) haproxy; }

$(JS_DEPS): integration/js/package-lock.json integration/js/package.json
	cd integration/js && npm ci --no-audit --no-fund

# The benchmark harness (integration/bench): caddy-ilp against nginx,
# HAProxy and plain Caddy. Installs nginx, HAProxy and h2load from Debian
# packages if missing. The full run takes about 20 minutes and writes
# integration/bench/results.md; bench-quick (seconds) is what CI runs.
bench:
	$(GO) run ./integration/bench

bench-quick:
	$(GO) run ./integration/bench -quick
