#!/usr/bin/env bash
# package.sh builds storeedge for linux/amd64, linux/arm64 and windows/amd64 (reproducible:
# -trimpath, no build ids; the version stamped into main.version), the .deb and .rpm packages
# with nfpm (pinned, installed into bin/), the Windows zip, and the container image for both
# Linux platforms (an OCI archive, tools/mkimage, carrying this machine's CA certificates from
# $CA_FILE), into dist/ (or $DIST).
#
# Usage: scripts/package.sh [VERSION]     VERSION defaults to `git describe`.
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM_VERSION=v2.45.2
VERSION=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
DIST=${DIST:-$PWD/dist}
BIN=$PWD/bin

# A tag as Go modules write it (v1.2.3) names version 1.2.3, in every file name alike.
if [[ $VERSION =~ ^v[0-9] ]]; then
	VERSION=${VERSION#v}
fi
# Package versions must start with a digit. A build after a tag or beside it (1.2.3-5-gabc1234,
# 1.2.3-dirty) carries that as build metadata, which sorts after 1.2.3, not as a pre-release.
PKG_VERSION=$VERSION
if [[ $VERSION =~ ^([0-9][^-]*)(-([0-9]+)-g([0-9a-f]+))?(-dirty)?$ && -n ${BASH_REMATCH[2]}${BASH_REMATCH[5]} ]]; then
	meta=${BASH_REMATCH[3]:+${BASH_REMATCH[3]}.g${BASH_REMATCH[4]}}
	meta=${meta}${BASH_REMATCH[5]:+${meta:+.}dirty}
	PKG_VERSION="${BASH_REMATCH[1]}+$meta"
fi
if [[ ! $PKG_VERSION =~ ^[0-9] ]]; then
	PKG_VERSION="0.0.0+${VERSION//[^A-Za-z0-9.]/.}"
fi

if ! grep -q "nfpm/v2[[:space:]]*$NFPM_VERSION" <<<"$(go version -m "$BIN/nfpm" 2>/dev/null)"; then
	GOBIN=$BIN go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
fi

rm -rf "$DIST"
mkdir -p "$DIST"
# Files keep one date, so that the archives of one commit are the same wherever they are built
# (the container image: given the same CA certificates, which it carries).
EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH=$EPOCH

build() { # GOOS GOARCH OUT
	CGO_ENABLED=0 GOOS=$1 GOARCH=$2 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= -X main.version=$VERSION" -o "$3" ./cmd/storeedge
	touch -d "@$EPOCH" "$3"
}

for arch in amd64 arm64; do
	out="$DIST/linux_$arch/storeedge"
	build linux "$arch" "$out"
	conf="$DIST/nfpm-$arch.yaml"
	sed -e "s|\${PKG_ARCH}|$arch|; s|\${PKG_VERSION}|$PKG_VERSION|; s|\${PKG_BINARY}|$out|" deploy/nfpm.yaml >"$conf"
	for packager in deb rpm; do
		"$BIN/nfpm" package --config "$conf" --packager "$packager" --target "$DIST/" >/dev/null
	done
	rm "$conf"
done

win="$DIST/windows_amd64"
build windows amd64 "$win/storeedge.exe"
for f in docs/install.md deploy/windows/README.txt; do
	cp "$f" "$win/"
	touch -d "@$EPOCH" "$win/$(basename "$f")"
done
# The Windows example names the Windows data folder: /var/lib/storeedge is not an absolute path
# there, and a copy of the Linux example would be refused as it is.
export WIN_DATA_DIR='C:\ProgramData\storeedge'
awk '
	$0 == "data_dir: \"/var/lib/storeedge\"" { q = sprintf("%c", 39); print "data_dir: " q ENVIRON["WIN_DATA_DIR"] q; next }
	$0 == "# Windows default: " ENVIRON["WIN_DATA_DIR"] { print "# Linux default: /var/lib/storeedge"; next }
	{ print }
' deploy/storeedge.example.yaml >"$win/storeedge.example.yaml"
if ! grep -qFx "data_dir: '$WIN_DATA_DIR'" "$win/storeedge.example.yaml"; then
	echo "package: the Windows example does not set data_dir to $WIN_DATA_DIR" >&2
	exit 1
fi
touch -d "@$EPOCH" "$win/storeedge.example.yaml"
go run ./tools/mkzip "$DIST/storeedge_${VERSION}_windows_amd64.zip" \
	storeedge/storeedge.exe="$win/storeedge.exe" \
	storeedge/storeedge.example.yaml="$win/storeedge.example.yaml" \
	storeedge/install.md="$win/install.md" \
	storeedge/README.txt="$win/README.txt"

# The container image: docs/install.md#container.
CA_FILE=${CA_FILE:-/etc/ssl/certs/ca-certificates.crt}
if [[ ! -s $CA_FILE ]]; then
	echo "package: $CA_FILE, the CA certificates the image carries, is missing (Debian: apt-get install ca-certificates; or set CA_FILE)" >&2
	exit 1
fi
go run ./tools/mkimage -version "$VERSION" -epoch "$EPOCH" -ca "$CA_FILE" \
	-config deploy/storeedge.example.yaml -out "$DIST/storeedge_${VERSION}_oci.tar" \
	linux/amd64="$DIST/linux_amd64/storeedge" linux/arm64="$DIST/linux_arm64/storeedge"

ls -1 "$DIST" | grep -E '\.(deb|rpm|zip|tar)$'
