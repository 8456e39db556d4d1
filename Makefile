# backscatter-milter — build, run and test.
#
#   make run     start the milter with its embedded default configuration
#   make test    install what the tests need (as root), then unit + integration tests
#   make check   gofmt, go vet, staticcheck, gocyclo, cross-builds (CROSS_GOOS)
#   make fuzz    run every fuzz target for FUZZTIME each
#   make bench   Go microbenchmarks
#   make deb     the Debian package (bin/backscatter-milter_VERSION_ARCH.deb)

GO        ?= go
BIN       := bin/backscatter-milter
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 30s
STATICCHECK_VERSION ?= v0.8.2
GOCYCLO_VERSION ?= v0.6.0
# Systems the milter must build on besides Linux (TCP_QUICKACK is Linux-only:
# milter/quickack_*.go); `make check` builds and vets for each.
CROSS_GOOS ?= freebsd openbsd darwin
# `make run` keeps its state (the sent log) in the work tree, so it runs
# without root; everything else comes from the embedded defaults.
RUN_STATE ?= $(CURDIR)/.run

.PHONY: all build run test test-unit test-deps check fuzz bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/backscatter-milter

# The package default listens on a unix socket only the MTA's group can
# use; `make run` listens on loopback TCP so that it runs without root and
# a Postfix on this host reaches it as inet:127.0.0.1:8899.
RUN_LISTEN ?= inet:127.0.0.1:8899

run: build
	@mkdir -p $(RUN_STATE)
	@echo "make run: milter on $(RUN_LISTEN) (loopback TCP, for trying it out: every local user can reach it;"
	@echo "          the installed default is a unix socket, see docs/security.md), sent log in $(RUN_STATE)"
	BACKSCATTER_SENT_LOG_PATH=$(RUN_STATE)/sent.db ./$(BIN) serve --listen $(RUN_LISTEN) --log-format console

# test-deps installs Postfix, Sendmail (private root), rbldnsd, redis-server,
# swaks and m4 with apt-get. It needs root; as another user it says so.
test-deps:
	@if [ "$$(id -u)" = 0 ]; then bash .ci/install-test-deps; \
	else echo "make test-deps: run as root to install the integration-test packages (sudo make test-deps)"; fi

# Integration tests are required here: a missing MTA fails the run instead
# of skipping it (BACKSCATTER_REQUIRE_INTEGRATION=1).
test: test-deps
	BACKSCATTER_REQUIRE_INTEGRATION=1 $(GO) test -count=1 -timeout 20m ./...

# Unit tests only: integration tests skip when their servers are missing.
test-unit:
	$(GO) test -count=1 -short ./...

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags soak,benche2e ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags soak,benche2e ./...
	@set -e; for os in $(CROSS_GOOS); do echo "GOOS=$$os go build + vet"; \
	  GOOS=$$os $(GO) build ./... && GOOS=$$os $(GO) vet -tags soak,benche2e ./...; done
	@# No product function above cyclomatic complexity 30 (tests excluded).
	$(GO) run github.com/fzipp/gocyclo/cmd/gocyclo@$(GOCYCLO_VERSION) -over 30 -ignore '_test\.go$$' .

# Every Fuzz target in every package, FUZZTIME each (make fuzz FUZZTIME=10m).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $$pkg; \
	  done; done

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

clean:
	rm -rf bin $(RUN_STATE)

# make install: what make build built, the systemd unit, the config, docs (PREFIX, DESTDIR, ...).
include cmd/backscatter-milter/dist/install.mk

# make deb: the Debian package (dpkg-deb); make man: the man pages (go-md2man).
include cmd/backscatter-milter/dist/deb.mk

# make soak: 10,000 messages through Postfix under DNS faults and a milter restart.
include cmd/backscatter-milter/dist/soak.mk

# make bench-e2e / bench-latency / bench-sendmail: real-MTA throughput and latency (docs/performance.md).
include cmd/backscatter-milter/dist/bench.mk
