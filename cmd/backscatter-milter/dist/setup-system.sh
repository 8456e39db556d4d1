#!/bin/sh
# Creates what backscatter-milter needs on this machine; safe to run again.
# Run by the Debian package's postinst (as /usr/share/backscatter-milter/
# setup-system.sh) and by `make install`, with the tmpfiles.d file as $1.
#
#   - the system user and group backscatter-milter (no login, no home);
#   - the postfix user in that group, so that Postfix's smtpd and cleanup
#     may open the milter's socket (mode 0660);
#   - the directories of the tmpfiles.d file: the socket directory inside
#     Postfix's queue directory, the state directory (0700) and the log
#     directory;
#   - /etc/backscatter-milter readable by the group only.
set -eu

tmpfiles=${1:?usage: setup-system.sh TMPFILES.CONF}
user=backscatter-milter
conf=/etc/backscatter-milter

if ! getent group "$user" >/dev/null; then
	groupadd --system "$user"
fi
if ! getent passwd "$user" >/dev/null; then
	useradd --system --gid "$user" --home-dir /var/lib/backscatter-milter --no-create-home \
		--shell /usr/sbin/nologin --comment "backscatter-milter" "$user"
fi
if getent passwd postfix >/dev/null && ! id -nG postfix | tr ' ' '\n' | grep -qx "$user"; then
	usermod -a -G "$user" postfix
	echo "backscatter-milter: added the postfix user to the $user group (postfix reload to apply)"
fi

if command -v systemd-tmpfiles >/dev/null; then
	systemd-tmpfiles --create "$tmpfiles"
else
	# Without systemd-tmpfiles: the same lines, read by hand ("d" only).
	grep '^d ' "$tmpfiles" | while read -r _ path mode owner group _; do
		install -d -m "$mode" -o "$owner" -g "$group" "$path"
	done
fi

# The configuration may hold a Redis password and names the BATV keys:
# root writes it, the service reads it.
if [ -d "$conf" ]; then
	chgrp "$user" "$conf"
	chmod 0750 "$conf"
	if [ -f "$conf/config.yaml" ]; then
		chgrp "$user" "$conf/config.yaml"
		chmod g+r,o-rwx "$conf/config.yaml"
	fi
fi
