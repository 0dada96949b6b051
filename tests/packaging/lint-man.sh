#!/usr/bin/env bash
# Every manual page through "mandoc -Tlint -Wwarning": no warning, no error.
# usage: lint-man.sh PAGE...
set -u

if ! command -v mandoc >/dev/null 2>&1; then
	echo "SKIP: mandoc is not installed (Debian: apt-get install mandoc, or scripts/deps test)"
	exit 77
fi

status=0
for page in "$@"; do
	# mandoc's notes about a stale mandoc.db concern the system's pages, not this one.
	out=$(mandoc -Tlint -Wwarning "$page" 2>&1)
	rc=$?
	out=$(printf '%s\n' "$out" | grep -v -e 'outdated mandoc.db' -e '^$')
	if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
		echo "FAIL: $page (mandoc exit $rc)"
		[ -n "$out" ] && echo "$out"
		status=1
	else
		echo "ok: $page"
	fi
done
exit $status
