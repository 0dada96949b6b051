#!/usr/bin/env bash
# valgrind --leak-check=full over a start / serve / reload / serve / SIGTERM cycle of
# roundguardd (master, checkers and workers of two generations): no definite leak and
# no memory error in any process. Skipped without valgrind and in sanitizer builds.
set -euo pipefail

rgd=${ROUNDGUARD_D:?}
echo_bin=${ROUNDGUARD_ECHO:?}
if ! command -v valgrind >/dev/null; then
	echo "SKIP: valgrind is not installed"
	exit 77
fi
if [ "${ROUNDGUARD_SANITIZE:-none}" != none ]; then
	echo "SKIP: valgrind cannot run a sanitizer build"
	exit 77
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_url() {
	for _ in $(seq 100); do
		curl -fs -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "FAIL: nothing answers at $1" >&2
	return 1
}

b1=$(free_port); b2=$(free_port); port=$(free_port)
"$echo_bin" -l 127.0.0.1 -p "$b1" 2>/dev/null & pids+=($!)
"$echo_bin" -l 127.0.0.1 -p "$b2" 2>/dev/null & pids+=($!)
wait_url "http://127.0.0.1:$b1/live"
wait_url "http://127.0.0.1:$b2/live"

LOG_LEVEL=warn valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
	--trace-children=yes --log-file="$tmp/vg.%p.log" \
	"$rgd" -l 127.0.0.1 -p "$port" -w 2 \
	--backend "http://127.0.0.1:$b1" --backend "http://127.0.0.1:$b2" 2>"$tmp/rgd.log" &
vg=$!
wait_url "http://127.0.0.1:$port/live"
for _ in $(seq 20); do
	curl -fs -o /dev/null -X POST "http://127.0.0.1:$port/reflect" -d '{"a":1}'
	curl -fs -o /dev/null "http://127.0.0.1:$port/metrics"
done
kill -HUP "$vg"
sleep 3
for _ in $(seq 20); do curl -fs -o /dev/null "http://127.0.0.1:$port/live"; done
kill -TERM "$vg"
status=0
wait "$vg" || status=$?

logs=("$tmp"/vg.*.log)
echo "valgrind logs: ${#logs[@]} processes"
grep -h "definitely lost\|ERROR SUMMARY" "${logs[@]}" || true
if [ "$status" -ne 0 ]; then
	echo "FAIL: roundguardd under valgrind exited $status" >&2
	cat "$tmp/rgd.log" >&2
	exit 1
fi
if [ "${#logs[@]}" -lt 7 ]; then
	echo "FAIL: expected master + 2 checkers + 4 workers under valgrind, got ${#logs[@]}" >&2
	exit 1
fi
bad=$(grep -L "ERROR SUMMARY: 0 errors" "${logs[@]}" || true)
if [ -n "$bad" ]; then
	echo "FAIL: valgrind found errors or definite leaks:" >&2
	cat $bad >&2
	exit 1
fi
echo "OK: no definite leak, no memory error in ${#logs[@]} processes"
