#!/bin/sh
# The data (/var/lib/storeedge), the configuration and the user are kept: a reinstall finds the
# shop as it was. To remove them: rm -r /var/lib/storeedge /etc/storeedge; userdel storeedge.
set -e
# A removal from another root (an image being built): this machine's services are not its.
if [ -n "${DPKG_ROOT:-}" ]; then
	exit 0
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
