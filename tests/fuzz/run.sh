#!/usr/bin/env bash
# Run the libFuzzer harnesses for a bounded time each; any crash, leak, failed
# check or hang fails the run.
#
# usage: tests/fuzz/run.sh <build-dir> [seconds-per-harness] [harness...]
#
# Harnesses: config parse echo-json http-head metrics uri chunked ws control
# (all when none is named), built as <build-dir>/tests/fuzz/fuzz-<harness>
# (meson setup -Dfuzz=enabled with CC=clang). Seconds default to 20 each;
# ROUNDGUARD_FUZZ_SECONDS overrides the default and the argument (meson test
# passes one). Each harness starts from a copy of tests/fuzz/corpus/<harness>/
# in a temporary directory, so the source tree is never written to; crashing
# inputs are kept in <build-dir>/tests/fuzz/artifacts/<harness>/, shown in hex.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
all=(config parse echo-json http-head metrics uri chunked ws control)

if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi
build=$(cd "$1" && pwd)
shift
seconds=20
if [ $# -gt 0 ]; then
	seconds=$1
	shift
fi
seconds=${ROUNDGUARD_FUZZ_SECONDS:-$seconds}
case $seconds in
'' | *[!0-9]*) echo "run.sh: seconds must be a whole number, not \"$seconds\"" >&2; exit 2 ;;
esac
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=("${all[@]}")

# Leaks are bugs too; UBSan findings stop the run (the harnesses are also built
# with -fno-sanitize-recover). Options already set by the caller come first
# and win where they overlap, except these.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1"

work=$(mktemp -d "${TMPDIR:-/tmp}/roundguard-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

hexdump_input() {
	if command -v xxd >/dev/null; then
		xxd -g 1 "$1" | head -n 64
	else
		od -A x -t x1z -v "$1" | head -n 64
	fi
}

status=0
for h in "${harnesses[@]}"; do
	bin=$build/tests/fuzz/fuzz-$h
	seeds=$here/corpus/$h
	if [ ! -x "$bin" ]; then
		echo "run.sh: $bin not built (meson setup -Dfuzz=enabled with CC=clang)" >&2
		status=1
		continue
	fi
	corpus=$work/$h
	artifacts=$build/tests/fuzz/artifacts/$h
	mkdir -p "$corpus" "$artifacts"
	[ -d "$seeds" ] && cp -R "$seeds/." "$corpus/"
	args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
	      -artifact_prefix="$artifacts/")
	[ -f "$here/$h.dict" ] && args+=(-dict="$here/$h.dict")

	echo "== fuzz-$h: ${seconds}s from $(find "$corpus" -type f | wc -l) seed inputs"
	log=$work/$h.log
	rc=0
	# The seed inputs first, each on its own: a known crash is reported as such.
	timeout --kill-after=10 $((seconds + 120)) "$bin" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?
	grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
	if [ $rc -ne 0 ]; then
		status=1
		echo "!! fuzz-$h failed (exit $rc):"
		grep -aE 'check failed|ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error|SUMMARY' "$log" | head -n 20 || true
		# Only the inputs of this run, not crashes kept from earlier runs.
		for f in $(sed -n "s|.*Test unit written to \(.*\)|\1|p" "$log"); do
			[ -f "$f" ] || continue
			echo "-- input $f ($(wc -c <"$f") bytes); reproduce with: $bin $f"
			hexdump_input "$f"
		done
		echo "-- last lines of the log:"
		tail -n 40 "$log"
	fi
done
exit $status
