#!/bin/sh
# Ownership of the state directory, then systemd learns of the unit. The service is not started:
# the store key must be set first (see /usr/share/doc/storeedge/install.md).
set -e
# An install into another root (an image being built, the package test): its user, folders and
# services belong to the system that will run it, not to this one (as in preinstall.sh).
if [ -n "${DPKG_ROOT:-}" ]; then
	exit 0
fi
mkdir -p /var/lib/storeedge
chown storeedge:storeedge /var/lib/storeedge
chmod 0750 /var/lib/storeedge
if [ -f /etc/storeedge/storeedge.yaml ]; then
	chown root:storeedge /etc/storeedge/storeedge.yaml
	chmod 0640 /etc/storeedge/storeedge.yaml
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# An upgrade restarts a running service on the new binary.
	systemctl try-restart storeedge.service >/dev/null 2>&1 || true
fi
