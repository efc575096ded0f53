#!/bin/sh
# On removal (not on upgrade) stop and disable the service. deb: "remove"/"upgrade"; rpm: 0 = removal.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now storeedge.service >/dev/null 2>&1 || true
	fi
	;;
esac
