#!/bin/sh
# On removal (not on upgrade) stop and disable the service. deb: "remove"/"upgrade"; rpm: 0 = removal.
set -e
# A removal from another root (an image being built): this machine's services are not its.
if [ -n "${DPKG_ROOT:-}" ]; then
	exit 0
fi
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now storeedge.service >/dev/null 2>&1 || true
	fi
	;;
esac
