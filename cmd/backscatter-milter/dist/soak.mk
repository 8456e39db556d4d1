# make soak: the full load-with-faults run of docs/reliability.md — 10,000
# messages through a private Postfix, 120 concurrent SMTP sessions, DNS
# faults, a damaged sent log and a milter restart, every message accounted
# for; then the memory bound with 5,000 stalled MTA connections. It needs root
# and the integration packages (make test-deps); it takes about 10 minutes.
# `make test` runs the scaled-down TestSoakCI (500 messages) instead.
SOAK_TIMEOUT ?= 45m

.PHONY: soak

soak:
	BACKSCATTER_REQUIRE_INTEGRATION=1 $(GO) test -tags soak -count=1 -timeout $(SOAK_TIMEOUT) \
	  -run '^TestSoak$$' -v ./cmd/backscatter-milter
	# Peak RSS with 5,000 connections stalled inside 1 MiB packets (docs/security.md, "Memory").
	$(GO) test -tags soak -count=1 -run '^TestMemoryStalledConnectionsSoak$$' -v ./milter
