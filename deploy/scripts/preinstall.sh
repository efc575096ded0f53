#!/bin/sh
# The system user and group the service runs as (before the files they own are unpacked).
set -e
# An install into another root (an image being built, the package test): the user belongs to the
# system that will run it, not to this one.
if [ -n "${DPKG_ROOT:-}" ]; then
	exit 0
fi
if ! getent group storeedge >/dev/null 2>&1; then
	groupadd --system storeedge
fi
if ! getent passwd storeedge >/dev/null 2>&1; then
	useradd --system --gid storeedge --home-dir /var/lib/storeedge --no-create-home \
		--shell /usr/sbin/nologin --comment "storeedge in-store edge server" storeedge
fi
