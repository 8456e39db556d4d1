// Package benche2e holds the end-to-end benchmarks of backscatter-milter
// against real MTAs on loopback: throughput through Postfix compared with
// no milter and with a do-nothing milter, and one transaction's latency
// through Sendmail over TCP and unix sockets. They are tests built only
// with -tags benche2e and run only with BACKSCATTER_BENCH_E2E=1 (make
// bench-e2e, make bench-latency, make bench-sendmail), and they write
// their tables into docs/performance.md; the package has no other code.
package benche2e
