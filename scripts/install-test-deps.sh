#!/usr/bin/env bash
# install-test-deps.sh installs the real external programs the test suite
# drives (proxies, load generator, network tools). It is idempotent: it checks
# what is already there and only calls apt-get when something is missing.
#
# Usage: scripts/install-test-deps.sh
#
# Tests find these programs through tools/testenv.Require, which skips
# locally and fails under CI=true when one is missing.
#
# Structure: one function per group of dependencies, each appending what it
# did to SUMMARY; main calls them in order. New groups (Azurite/Node, ...) go
# in as another ensure_* function plus one line in main.
set -euo pipefail

SUMMARY=()

# SUDO is empty when we are root already.
SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-test-deps: not root and sudo is missing" >&2
		exit 1
	fi
	SUDO="sudo"
fi

# have_bin reports whether an executable is reachable, also in the sbin
# directories that a non-root PATH often lacks (danted lives in /usr/sbin).
have_bin() {
	command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/usr/bin/$1" || -x "/sbin/$1" ]]
}

# have_pkg reports whether a Debian package is installed. (Not "dpkg -s | grep -q": grep stops
# at the first match, dpkg dies of SIGPIPE on a long description, and pipefail calls the
# package missing.)
have_pkg() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Services: the Debian packages for tinyproxy and dante-server ship init
# scripts / systemd units whose postinst starts them (a system tinyproxy on
# 127.0.0.1:8888, a danted on the stock config). The tests never use those:
# tools/testenv starts its own instances on free ports with configs in a
# temp dir. We still do not want a stray daemon holding ports or failing noisily
# on a box without systemd, so we install under a policy-rc.d that answers 101
# ("action forbidden"), which both invoke-rc.d and deb-systemd-invoke honour.
# It is only ours for the duration of the install: if the machine already has a
# policy-rc.d (Docker images ship one) we leave it alone, and we remove the one
# we created on exit, so later installs on this machine behave normally. On a
# systemd host the units of the packages this script installed are disabled as
# well (disable_new_services), or they would start at the next boot: nginx on
# port 80, storeedge's front door, a Prometheus, an avahi-daemon, the proxies.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
block_service_starts() {
	if [[ -e "$POLICY_RC" ]]; then
		return
	fi
	printf '#!/bin/sh\n# temporary, from storeedge scripts/install-test-deps.sh\nexit 101\n' |
		$SUDO tee "$POLICY_RC" >/dev/null
	$SUDO chmod 0755 "$POLICY_RC"
	POLICY_RC_OURS=1
}
unblock_service_starts() {
	if [[ "$POLICY_RC_OURS" -eq 1 ]]; then
		$SUDO rm -f "$POLICY_RC"
		POLICY_RC_OURS=0
	fi
}
# NODE_TMP is where a Node.js is being fetched (ensure_node), removed on the way out too.
NODE_TMP=""
trap '[[ -z "$NODE_TMP" ]] || rm -rf "$NODE_TMP"; disable_new_services; unblock_service_starts' EXIT

# NEW_UNITS are the systemd units the packages this run installed brought, their dependencies'
# included (nginx-light's unit is nginx-common's): names no unit had before, in any of systemd's
# folders (a unit of the same name the machine's admin wrote in /etc stays as it is). They are
# disabled at the end, or on the way out of a run that failed.
NEW_UNITS=()
unit_files() {
	ls -1 /etc/systemd/system /run/systemd/system /usr/local/lib/systemd/system /lib/systemd/system /usr/lib/systemd/system 2>/dev/null |
		grep -E '^[^@/]+\.(service|socket)$' | sort -u || true
}
disable_new_services() {
	if [[ ${#NEW_UNITS[@]} -eq 0 || ! -d /run/systemd/system ]]; then
		return
	fi
	if $SUDO systemctl disable --quiet "${NEW_UNITS[@]}" >/dev/null 2>&1; then
		SUMMARY+=("services: disabled ${NEW_UNITS[*]}")
	else
		echo "install-test-deps: could not disable ${NEW_UNITS[*]}: they may start at the next boot (systemctl disable them)" >&2
	fi
	NEW_UNITS=()
}

APT_UPDATED=0
apt_install() {
	block_service_starts
	# A machine just booted is often still running its own apt (unattended upgrades): wait for
	# its lock rather than fail.
	if [[ "$APT_UPDATED" -eq 0 ]]; then
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
		APT_UPDATED=1
	fi
	# apt and debconf chatter goes to a log shown only on failure, so a
	# successful run prints the one summary line.
	local log before unit ok=1
	before=$(unit_files)
	log=$(mktemp)
	if ! $SUDO env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
		ok=0
	fi
	# What a failed install unpacked is disabled too (on the way out).
	while IFS= read -r unit; do
		if [[ -n "$unit" ]]; then
			NEW_UNITS+=("$unit")
		fi
	done < <(comm -13 <(printf '%s\n' "$before") <(unit_files))
	if [[ "$ok" -eq 0 ]]; then
		cat "$log" >&2
		rm -f "$log"
		echo "install-test-deps: apt-get install $* failed" >&2
		exit 1
	fi
	rm -f "$log"
}

# ensure_debian installs each "binary:package" pair whose binary is missing.
# label names the group in the summary.
ensure_debian() {
	local label=$1
	shift
	local missing=() pair bin pkg
	for pair in "$@"; do
		bin=${pair%%:*}
		pkg=${pair#*:}
		if ! have_bin "$bin" || ! have_pkg "$pkg"; then
			missing+=("$pkg")
		fi
	done
	if [[ ${#missing[@]} -eq 0 ]]; then
		SUMMARY+=("$label: present")
		return
	fi
	apt_install "${missing[@]}"
	for pair in "$@"; do
		bin=${pair%%:*}
		pkg=${pair#*:}
		if ! have_bin "$bin"; then
			echo "install-test-deps: $label: the package $pkg installed, but there is no $bin to run" >&2
			exit 1
		fi
	done
	SUMMARY+=("$label: installed ${missing[*]}")
}

# Outbound proxies used by internal/wan and everything that dials the WAN.
ensure_proxies() {
	ensure_debian proxies \
		tinyproxy:tinyproxy \
		danted:dante-server \
		microsocks:microsocks
}

# Load generator for the benchmarks.
ensure_bench() {
	ensure_debian bench wrk:wrk
}

# ip(8) for network namespaces (discovery, mDNS, broadcast tests).
ensure_net() {
	ensure_debian net ip:iproute2
}

# mDNS: a real, independent peer for the discovery tests (discovery/netns_test.go):
# avahi-daemon and avahi-browse, run on a private D-Bus (dbus-daemon) inside a
# network namespace the test makes. The packaged services stay stopped (see
# block_service_starts); the tests start their own instances.
ensure_mdns() {
	ensure_debian mdns \
		avahi-daemon:avahi-daemon \
		avahi-browse:avahi-utils \
		dbus-daemon:dbus-daemon
}

# node_suits reports whether the node at $1 suits the pinned tools (Azurite 3.35, @redocly/cli
# 2.77): Node.js 20.19+ or 22.12+.
node_suits() {
	"$1" -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 22 || (a === 22 && b >= 12) || (a === 20 && b >= 19) ? 0 : 1)' >/dev/null 2>&1
}

# NODE_VERSION is the Node.js taken from the npm registry (its node-linux-<arch> package, the
# official build) when the machine's own is missing or too old: Debian 12's nodejs is 18.
NODE_VERSION=20.20.2
NODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/nodejs"

# node and npm come from Debian only when missing: the machine's Node.js may be
# another build whose nodejs package bundles npm, which Debian's npm would
# conflict with, so binaries are checked, not packages. When the machine's node
# is too old, Node.js $NODE_VERSION goes into tools/nodejs (tools/testenv and the
# benchmarks take it from there first), and comes first on PATH for the rest of
# this script (npm runs on it).
NODE_CHECKED=0
ensure_node() {
	if [[ "$NODE_CHECKED" -eq 1 ]]; then
		return
	fi
	if ! have_bin node && ! have_bin npm; then
		apt_install nodejs npm
		SUMMARY+=("node: installed nodejs npm")
	elif ! have_bin npm; then
		apt_install npm
		SUMMARY+=("node: installed npm")
	fi
	if [[ -x "$NODE_DIR/bin/node" ]] && node_suits "$NODE_DIR/bin/node"; then
		export PATH="$NODE_DIR/bin:$PATH"
		SUMMARY+=("node: tools/nodejs $("$NODE_DIR/bin/node" --version)")
	elif [[ -e "$NODE_DIR" ]] && node_suits node; then
		# One that does not run here (a checkout copied from another architecture): the
		# machine's own suits, and the tools would take the other first.
		rm -rf "$NODE_DIR"
		SUMMARY+=("node: removed tools/nodejs, which does not run here; the machine's $(node --version) suits")
	elif ! node_suits node; then
		local arch
		case "$(uname -m)" in
		x86_64) arch=x64 ;;
		aarch64 | arm64) arch=arm64 ;;
		*)
			echo "install-test-deps: Node.js $(node --version 2>/dev/null) does not suit the test tools (20.19+ or 22.12+), and there is no build for $(uname -m) to fetch" >&2
			exit 1
			;;
		esac
		NODE_TMP=$(mktemp -d)
		# npm checks the package against the registry's integrity hash; its cache stays in tmp.
		if ! (cd "$NODE_TMP" && npm pack --silent --cache "$NODE_TMP/cache" "node-linux-$arch@$NODE_VERSION" >/dev/null 2>&1) ||
			! tar -xzf "$NODE_TMP/node-linux-$arch-$NODE_VERSION.tgz" -C "$NODE_TMP" package/bin/node; then
			rm -rf "$NODE_TMP"
			echo "install-test-deps: Node.js $(node --version 2>/dev/null) does not suit the test tools (20.19+ or 22.12+), and fetching node-linux-$arch@$NODE_VERSION from the npm registry failed" >&2
			exit 1
		fi
		mkdir -p "$NODE_DIR/bin"
		mv "$NODE_TMP/package/bin/node" "$NODE_DIR/bin/node.part"
		mv "$NODE_DIR/bin/node.part" "$NODE_DIR/bin/node"
		rm -rf "$NODE_TMP"
		NODE_TMP=""
		if ! node_suits "$NODE_DIR/bin/node"; then
			echo "install-test-deps: the Node.js fetched into tools/nodejs does not run here" >&2
			exit 1
		fi
		export PATH="$NODE_DIR/bin:$PATH"
		SUMMARY+=("node: fetched Node.js $NODE_VERSION into tools/nodejs")
	fi
	NODE_CHECKED=1
}

# cgo, for go test -race: a C compiler (Debian installs the C library's headers with it).
ensure_cgo() {
	ensure_debian cgo gcc:gcc
}

# npm_ci_tool installs the npm packages of tools/<name>, pinned in its
# package-lock.json. `npm ci` runs unless node_modules holds the stamp of a
# finished install of this very lock file (its SHA-256): an install cut short
# leaves no stamp, and is done again.
npm_ci_tool() {
	local name=$1 root dir sum
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	dir="$root/tools/$name"
	sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
	if [[ "$(cat "$dir/node_modules/.installed-lock" 2>/dev/null)" == "$sum" ]]; then
		SUMMARY+=("$name: present")
		return
	fi
	local log
	log=$(mktemp)
	if ! npm ci --prefix "$dir" --no-audit --no-fund >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		echo "install-test-deps: npm ci --prefix tools/$name failed" >&2
		exit 1
	fi
	rm -f "$log"
	echo "$sum" >"$dir/node_modules/.installed-lock"
	SUMMARY+=("$name: installed tools/$name")
}

# The Service Bus test peer tools/sbpeer, on the npm packages rhea and ws.
ensure_node_tools() {
	ensure_node
	npm_ci_tool sbpeer
}

# The independent OpenAPI linter, Redocly CLI (server/openapi_test.go).
ensure_openapi_lint() {
	ensure_node
	npm_ci_tool openapi-lint
}

# nftables and curl (the firewall rules test applies storeedge firewall's
# output in a network namespace and reaches the server from another), rpm
# (the package test installs the .rpm into a scratch root), and skopeo, umoci
# and runc (the container image test reads the image with skopeo, unpacks it
# with umoci and runs it with runc, the OCI runtime Docker and Podman use), and
# the CA certificates the image carries.
ensure_packaging() {
	ensure_debian packaging \
		nft:nftables \
		curl:curl \
		rpm:rpm \
		skopeo:skopeo \
		umoci:umoci \
		runc:runc \
		update-ca-certificates:ca-certificates
}

# Azure Blob storage for the media tests and benchmarks: Azurite, Microsoft's emulator, from
# npm into tools/azurite (tools/testenv.AzuriteDir), pinned with its dependencies in
# tools/azurite/package-lock.json: 3.36 and later need Node 21+.
ensure_azurite() {
	ensure_node
	npm_ci_tool azurite
}

# Baselines of the media benchmarks: nginx (sendfile) for serving, rclone (Azure Blob backend)
# for fetching. nginx's packaged service stays stopped (see block_service_starts); the bench
# runs its own on a free port.
ensure_media_bench() {
	ensure_debian media-bench \
		nginx:nginx-light \
		rclone:rclone \
		curl:curl
}

# A real SMTP server for the e-mail alerts (ops/alerts): Debian's aiosmtpd,
# run by tools/smtpd/smtpd.py with Debian's /usr/bin/python3 (the python3 on
# PATH may be another build without Debian's modules). Checked by import, so a
# half-removed package is installed again.
ensure_smtpd() {
	if have_pkg python3-aiosmtpd && /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
		SUMMARY+=("smtpd: present")
		return
	fi
	apt_install python3-aiosmtpd
	SUMMARY+=("smtpd: installed python3-aiosmtpd")
}

# OpenSSL's command line, an implementation of the support channel's signatures
# independent of Go's (ops/support checks the worked example of
# docs/remote-support.md with it).
ensure_openssl() {
	ensure_debian openssl openssl:openssl
}

# Headless Chromium for the status page's browser tests (server/page_browser_test.go).
ensure_browser() {
	ensure_debian browser chromium:chromium
}

# A real Prometheus for the metrics end-to-end test (cmd/storeedge/metrics_e2e_test.go): the
# test runs its own server from a temp dir and lints the exposition with promtool, which the
# package brings. The packaged service stays stopped (see block_service_starts).
ensure_prometheus() {
	ensure_debian prometheus \
		prometheus:prometheus \
		promtool:prometheus
}

# A host name other than "localhost" that resolves to loopback only, for the tests that send a
# loopback target through a proxy taken from the environment (internal/wan): Go's
# environment-proxy rules never proxy "localhost" or a loopback address. The machine's own name
# usually serves; where it does not (it resolves to a LAN address, or not at all), this name
# is added to /etc/hosts.
LOOPBACK_NAME=storeedge-loopback.test
ensure_loopback_name() {
	if getent hosts "$LOOPBACK_NAME" >/dev/null 2>&1; then
		SUMMARY+=("loopback name: present")
		return
	fi
	if ! printf '\n127.0.0.1\t%s\n' "$LOOPBACK_NAME" | $SUDO tee -a /etc/hosts >/dev/null; then
		echo "install-test-deps: cannot add $LOOPBACK_NAME to /etc/hosts" >&2
		exit 1
	fi
	SUMMARY+=("loopback name: added $LOOPBACK_NAME to /etc/hosts")
}

main() {
	ensure_cgo
	ensure_loopback_name
	ensure_proxies
	ensure_bench
	ensure_net
	ensure_mdns
	ensure_node_tools
	ensure_openapi_lint
	ensure_azurite
	ensure_packaging
	ensure_media_bench
	ensure_smtpd
	ensure_openssl
	ensure_browser
	ensure_prometheus
	disable_new_services
	local line
	line=$(printf '%s; ' "${SUMMARY[@]}")
	echo "install-test-deps: ${line%; }"
}

main "$@"
