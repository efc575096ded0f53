#!/usr/bin/env bash
# bench.sh runs storeedge's benchmarks (cmd/bench, bench/), each figure next to a baseline
# measured in the same run; docs/PERFORMANCE.md has the figures of this machine and what they mean.
#
# Usage: scripts/bench.sh [sync|http|startup|status|all|media|media-serve|media-fetch|soak|
#                          profile-sync|profile-http|help] [flags]     (default: all)
#
#   sync     first sync of 1,000,000 products: the daemon vs a plain single-goroutine loader
#   startup  exec to first product answer, cloud down: the daemon vs a trivial Go HTTP server
#   http     wrk on product and barcode lookups: the daemon vs a bare net/http handler
#   status   GET /api/v1/status one at a time during a first sync and idle: p50/p99 vs a bare
#            handler answering as many bytes
#   all      sync, startup and http, sharing one database (sync builds it, the others reuse it)
#   media-serve  wrk on 1 MiB and 20 MiB media files: the daemon vs nginx (sendfile)
#   media-fetch  prefetch of ~2 GB from Azurite: the daemon vs rclone copy; RSS growth; the
#                bandwidth cap's accuracy
#   media        both
#   soak         10 minutes of 500 devices, 50 orders/s and a catalog change every second:
#                RSS, goroutines and open files flat after the warm-up, no error, no order lost,
#                push queues empty at the end (-duration, -devices, -orders-per-second,
#                -catalog-every)
#
#   profile-sync, profile-http  CPU profiles of the daemon's code in one process (docs/PERFORMANCE.md)
#
# Flags go to the bench tool; bin/bench sync -h lists them (scripts/bench.sh sync -h does too, after
# installing and building what the benchmarks need). The usual ones:
#   -products N      catalog size (default 1000000)
#   -page-sizes L    cloud.page_size values for the daemon sync, e.g. 1000,5000,10000
#   -data-dir DIR    database kept by sync and reused by startup and http (default bin/bench-work/data)
#   -duration D      wrk -d of each measured http run (default 15s)
#
# It installs wrk if missing (scripts/install-test-deps.sh), builds storeedge, cloudsim, the
# bench tool and its baseline server into bin/, and keeps everything on 127.0.0.1. Profiles of
# the daemon's code: bin/bench profile-sync and bin/bench profile-http (see docs/PERFORMANCE.md).
set -euo pipefail
cd "$(dirname "$0")/.."

what=all
if [[ $# -gt 0 && $1 != -* ]]; then
	what=$1
	shift
fi
case $what in
sync | http | startup | all | status) ;;
soak)
	mkdir -p bin
	go build -o bin/storeedge ./cmd/storeedge
	go build -o bin/cloudsim ./cmd/cloudsim
	go build -o bin/bench ./cmd/bench
	echo "bench.sh: bin/bench soak -bin bin $*"
	exec bin/bench soak -bin bin "$@"
	;;
media | media-serve | media-fetch)
	scripts/install-test-deps.sh
	mkdir -p bin
	go build -o bin/storeedge ./cmd/storeedge
	go build -o bin/cloudsim ./cmd/cloudsim
	go build -o bin/bench ./cmd/bench
	echo "bench.sh: bin/bench $what -bin bin $*"
	exec bin/bench "$what" -bin bin "$@"
	;;
profile-sync | profile-http) ;;
help)
	sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "bench.sh: unknown benchmark \"$what\"; want sync, http, startup, status, all, media, media-serve, media-fetch, soak, profile-sync or profile-http (bench.sh help)" >&2
	exit 2
	;;
esac

scripts/install-test-deps.sh

mkdir -p bin
echo "bench.sh: go build -o bin/ ./cmd/storeedge ./cmd/cloudsim ./cmd/bench ./bench/fixedserver"
go build -o bin/storeedge ./cmd/storeedge
go build -o bin/cloudsim ./cmd/cloudsim
go build -o bin/bench ./cmd/bench
go build -o bin/fixedserver ./bench/fixedserver

case $what in
profile-*)
	echo "bench.sh: bin/bench $what $*"
	exec bin/bench "$what" "$@"
	;;
esac
echo "bench.sh: bin/bench $what -bin bin $*"
exec bin/bench "$what" -bin bin "$@"
