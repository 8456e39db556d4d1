#!/bin/sh
# copyright.sh BINARY: print the package's copyright file
# (/usr/share/doc/backscatter-milter/copyright) for a built binary.
#
# A Go binary carries every module it links, and most of those licenses
# (BSD, MIT) require their notice in binary distributions. The list is read
# from the binary itself (go version -m), so it is always the set really
# linked, and each module's license text from the module cache the build
# used. A module without a license file stops the build: shipping it without
# its notice would be wrong. GO names the go command (default: go).
set -eu

bin=$1
go=${GO:-go}
modcache=$("$go" env GOMODCACHE)
goroot=$("$go" env GOROOT)

# Module paths are stored case-encoded in the cache: "A" becomes "!a".
escape() { printf '%s' "$1" | sed 's/[A-Z]/!&/g' | tr 'A-Z' 'a-z'; }

license_files() {
	find "$1" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'LICENCE*' -o -iname 'COPYING*' -o -iname 'NOTICE*' \) | sort
}

cat <<'HEAD'
backscatter-milter
Source: https://github.com/backscatter-milter/backscatter-milter

Copyright: 2026 the backscatter-milter authors

The program's own source has no license file yet: until upstream publishes
one, no license beyond the use of this package is granted for it.

/usr/sbin/backscatter-milter is a Go program: the Go standard library and the
Go modules below are linked into it, each under its own license, whose text
follows.
HEAD

printf '\n== Go standard library %s ==\n\n' "$("$go" env GOVERSION)"
cat "$goroot/LICENSE"

"$go" version -m "$bin" | awk '$1 == "dep" { print $2, $3 } $1 == "=>" { print "replaced", $2, $3 }' |
while read -r path version; do
	if [ "$path" = replaced ]; then
		echo "copyright.sh: $bin uses a replaced module ($version): not supported" >&2
		exit 1
	fi
	dir="$modcache/$(escape "$path")@$(escape "$version")"
	files=$(license_files "$dir")
	if [ -z "$files" ]; then
		echo "copyright.sh: no license file for $path $version in $dir" >&2
		exit 1
	fi
	for f in $files; do
		printf '\n== %s %s: %s ==\n\n' "$path" "$version" "$(basename "$f")"
		# Debian ships the Apache License's text once, in common-licenses
		# (Policy 12.5); its NOTICE files are still reproduced in full.
		if head -n 5 "$f" | grep -q 'Apache License' && head -n 5 "$f" | grep -q 'Version 2\.0, January 2004'; then
			echo 'Apache License, Version 2.0: /usr/share/common-licenses/Apache-2.0'
		else
			cat "$f"
		fi
	done
done
