# End-to-end benchmarks against real MTAs on loopback, included by the
# top-level Makefile (include cmd/backscatter-milter/dist/bench.mk). They
# need root and the packages of `make test-deps`; each writes its table into
# docs/performance.md between its markers. Numbers are ratios from one
# alternating run: run them on a quiet machine and say what else ran.
#
#   make bench-e2e                      Postfix throughput: no milter, do-nothing milter, backscatter-milter
#   make bench-e2e BENCH_ROUNDS=5 BENCH_MESSAGES=2000
#   make bench-latency                  one transaction's latency through Sendmail and Postfix:
#                                       TCP with and without quick ACK, unix socket, no milter
#   make bench-sendmail                 the Sendmail half of bench-latency
#   make bench-e2e BENCH_NOTE="a fuzz run on both cores"   (no single quotes in the note)
#   make bench-e2e BENCH_PROFILE=/tmp/cpu.pprof   CPU profile of backscatter-milter over the run
#                                       (go tool pprof -top /tmp/cpu.pprof)
#   make bench-e2e BENCH_COMPARE_BIN=/tmp/before BENCH_COMPARE_NAME="before (main)"
#                                       another build as configuration (d): before/after in one run
#   make bench-e2e BENCH_BODY_KB=200    ordinary mail of 200 KB instead of 5 KB
#   make bench-e2e BENCH_BATCHES=5      configurations take turns every MESSAGES/5 messages (a busy machine)

BENCH_ROUNDS       ?= 3
BENCH_MESSAGES     ?= 1000
BENCH_SESSIONS     ?= 20
BENCH_LAT_MESSAGES ?= 30
BENCH_NOTE         ?=
BENCH_PROFILE      ?=
BENCH_COMPARE_BIN  ?=
BENCH_COMPARE_NAME ?=
BENCH_BODY_KB      ?= 5
BENCH_BATCHES      ?= 1
BENCH_DOC          ?= $(CURDIR)/docs/performance.md
BENCH_E2E_PKG      := ./cmd/backscatter-milter/internal/benche2e/
BENCH_E2E_ENV       = BACKSCATTER_BENCH_E2E=1 BACKSCATTER_REQUIRE_INTEGRATION=1 \
                      BACKSCATTER_BENCH_NOTE='$(BENCH_NOTE)' BACKSCATTER_BENCH_DOC=$(BENCH_DOC)

.PHONY: bench-e2e bench-latency bench-sendmail

bench-e2e:
	$(BENCH_E2E_ENV) BACKSCATTER_BENCH_ROUNDS=$(BENCH_ROUNDS) BACKSCATTER_BENCH_MESSAGES=$(BENCH_MESSAGES) \
	BACKSCATTER_BENCH_SESSIONS=$(BENCH_SESSIONS) BACKSCATTER_BENCH_PROFILE=$(BENCH_PROFILE) \
	BACKSCATTER_BENCH_COMPARE_BIN=$(BENCH_COMPARE_BIN) BACKSCATTER_BENCH_COMPARE_NAME='$(BENCH_COMPARE_NAME)' \
	BACKSCATTER_BENCH_BODY_KB=$(BENCH_BODY_KB) BACKSCATTER_BENCH_BATCHES=$(BENCH_BATCHES) \
	  $(GO) test -tags benche2e -count=1 -v -timeout 60m -run '^TestPostfixThroughput$$' $(BENCH_E2E_PKG)

bench-latency:
	$(BENCH_E2E_ENV) BACKSCATTER_BENCH_LATENCY_MESSAGES=$(BENCH_LAT_MESSAGES) \
	BACKSCATTER_BENCH_COMPARE_BIN=$(BENCH_COMPARE_BIN) BACKSCATTER_BENCH_COMPARE_NAME='$(BENCH_COMPARE_NAME)' \
	  $(GO) test -tags benche2e -count=1 -v -timeout 30m -run '^Test(Sendmail|Postfix)Latency$$' $(BENCH_E2E_PKG)

bench-sendmail:
	$(BENCH_E2E_ENV) BACKSCATTER_BENCH_LATENCY_MESSAGES=$(BENCH_LAT_MESSAGES) \
	BACKSCATTER_BENCH_COMPARE_BIN=$(BENCH_COMPARE_BIN) BACKSCATTER_BENCH_COMPARE_NAME='$(BENCH_COMPARE_NAME)' \
	  $(GO) test -tags benche2e -count=1 -v -timeout 30m -run '^TestSendmailLatency$$' $(BENCH_E2E_PKG)
