#!/bin/sh
# The system user and group the service runs as (before the files they own are unpacked).
set -e
if ! getent group storeedge >/dev/null 2>&1; then
	groupadd --system storeedge
fi
if ! getent passwd storeedge >/dev/null 2>&1; then
	useradd --system --gid storeedge --home-dir /var/lib/storeedge --no-create-home \
		--shell /usr/sbin/nologin --comment "storeedge in-store edge server" storeedge
fi
