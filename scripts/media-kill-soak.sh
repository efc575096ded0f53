#!/usr/bin/env bash
# media-kill-soak.sh runs the media SIGKILL campaign bigger than the test suite's: the storeedge
# binary killed again and again during a prefetch from Azurite, then every file checked (see
# TestMediaKilledDuringPrefetch in cmd/storeedge/media_e2e_test.go). The suite runs 10 kills
# over 2,000 blobs (380 MB) in about a minute; this runs, by default, 40 kills over 10,500 blobs
# (about 2.1 GB, ten large videos), which takes several minutes.
#
# Usage: scripts/media-kill-soak.sh [KILLS [PRODUCTS]]    (4 products per media item)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
export STOREEDGE_MEDIA_KILLS=${1:-40}
export STOREEDGE_MEDIA_KILL_PRODUCTS=${2:-42000}
echo "media-kill-soak: $STOREEDGE_MEDIA_KILLS kills, $STOREEDGE_MEDIA_KILL_PRODUCTS products"
exec env CI=true go test -count=1 -timeout 60m -v -run 'TestMediaKilledDuringPrefetch$' ./cmd/storeedge/
