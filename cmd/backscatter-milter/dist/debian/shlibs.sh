#!/bin/sh
# shlibs.sh BINARY: print the Depends entries for the shared libraries
# BINARY links (libc6 (>= 2.34), say), computed by dpkg-shlibdeps the way a
# Debian source build does. dpkg-shlibdeps wants a debian/control, so it runs
# in a scratch directory that has one. Without dpkg-dev: an unversioned libc6.
set -eu

bin=$(realpath "$1")
if ! command -v dpkg-shlibdeps >/dev/null; then
	echo "shlibs.sh: dpkg-shlibdeps not found (apt-get install dpkg-dev): Depends names libc6 without a version" >&2
	echo libc6
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/debian"
printf 'Source: backscatter-milter\n\nPackage: backscatter-milter\nArchitecture: any\n' > "$tmp/debian/control"
out=$(cd "$tmp" && dpkg-shlibdeps -O -e "$bin" 2>/dev/null)
deps=${out#shlibs:Depends=}
[ -n "$deps" ] && [ "$deps" != "$out" ] || { echo "shlibs.sh: dpkg-shlibdeps printed nothing usable: $out" >&2; exit 1; }
echo "$deps"
