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
	# An upgrade restarts a running service on the new binary, once the new binary accepts the
	# configuration the service runs with: its file, and the environment systemd gives the unit
	# (its EnvironmentFile= and Environment= lines, drop-ins included, as systemctl show has
	# them), as its user. A value a newer version refuses would stop the shop (status 78) until
	# mended, where the version running can go on meanwhile. Exit status 2 without a Go crash's
	# trace is a refused configuration; anything else (the check itself failing) restarts as
	# before. The package install succeeds either way: what is wrong is said here.
	if systemctl is-active --quiet storeedge.service; then
		set --
		envs=$(systemctl show --property=Environment --value storeedge.service 2>/dev/null) || envs=""
		# show quotes a value holding "$" or "`" as a shell would ("K=pa\$s"), an escape that
		# Environment= does not take: there both are plain characters.
		envs=$(printf '%s\n' "$envs" | sed -e 's/\\\$/$/g' -e 's/\\`/`/g')
		if [ -n "$envs" ]; then
			set -- "$@" "--property=Environment=$envs"
		fi
		# None is none (a drop-in's EnvironmentFile= may clear the list); the unit's own when
		# systemctl cannot say.
		files=$(systemctl show --property=EnvironmentFiles --value storeedge.service 2>/dev/null) ||
			files="/etc/storeedge/storeedge.env (ignore_errors=yes)"
		# One per line: "PATH (ignore_errors=yes)", where yes is the unit's "-" prefix.
		while IFS= read -r line; do
			case "$line" in
			"") ;;
			*" (ignore_errors=yes)") set -- "$@" "--property=EnvironmentFile=-${line% (ignore_errors=yes)}" ;;
			*) set -- "$@" "--property=EnvironmentFile=${line% (ignore_errors=no)}" ;;
			esac
		done <<-EOF
			$files
		EOF
		status=0
		problems=$(systemd-run --quiet --wait --pipe --collect "$@" --property=User=storeedge --property=Group=storeedge \
			/usr/bin/storeedge config --config /etc/storeedge/storeedge.yaml 2>&1 </dev/null >/dev/null) || status=$?
		if [ "$status" -eq 2 ] && ! printf '%s\n' "$problems" | grep -q -e '^panic: ' -e '^fatal error: '; then
			echo "storeedge: this version refuses the configuration, so the service was not restarted:" >&2
			printf '%s\n' "$problems" | head -n 30 >&2
			echo "storeedge: the version before goes on serving only until the service restarts (a reboot, a crash), which then fails; mend the configuration now (storeedge config --config /etc/storeedge/storeedge.yaml names each problem), then: systemctl restart storeedge" >&2
			exit 0
		fi
		if [ "$status" -ne 0 ]; then
			# The check itself failed (systemd-run could not take the unit's environment back as
			# systemctl show prints it, say): the restart goes on unchecked, and the install says so.
			echo "storeedge: the configuration could not be checked with this version before the restart (status $status):" >&2
			printf '%s\n' "$problems" | head -n 10 >&2
		fi
		if ! systemctl try-restart storeedge.service >/dev/null 2>&1; then
			echo "storeedge: the service did not start again on this version; see: systemctl status storeedge; journalctl -u storeedge" >&2
		fi
	fi
fi
