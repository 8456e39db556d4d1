# make soak: the full load-with-faults run of docs/reliability.md — 10,000
# messages through a private Postfix, 120 concurrent SMTP sessions, DNS
# faults and a milter restart, every message accounted for. It needs root
# and the integration packages (make test-deps); it takes about 10 minutes.
# `make test` runs the scaled-down TestSoakCI (500 messages) instead.
SOAK_TIMEOUT ?= 45m

.PHONY: soak

soak:
	BACKSCATTER_REQUIRE_INTEGRATION=1 $(GO) test -tags soak -count=1 -timeout $(SOAK_TIMEOUT) \
	  -run '^TestSoak$$' -v ./cmd/backscatter-milter
