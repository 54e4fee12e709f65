#!/bin/sh
# etcd as the benchmarks run it: spec/support/etcd.ts starts it (free ports, temporary data dir, health check),
# and this wrapper puts back etcd's production timings over the test suite's fast-election flags (a repeated
# flag overrides the earlier one), enables the v2 API that etcd-lock 1.1.0 needs, and leaves fsync on.
exec "${BENCH_ETCD_BIN:-etcd}" "$@" --heartbeat-interval 100 --election-timeout 1000 --enable-v2=true
