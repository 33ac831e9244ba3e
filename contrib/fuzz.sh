#!/usr/bin/env bash
# contrib/fuzz.sh - builds the libFuzzer targets of test/fuzz/ with clang
# (AddressSanitizer and UndefinedBehaviorSanitizer) and runs each for a
# bounded time, starting from its seed corpus in test/fuzz/corpus/<target>/.
#
# The targets link the modules of src/ (all but main.c) compiled here with
# clang and the fuzzer's coverage instrumentation; the autotools build is
# not involved, so any configured or unconfigured tree works. Prints, per
# target, the executions, executions per second and libFuzzer's final
# coverage figures (cov: edges, ft: features). Exits non-zero if a target
# crashes, leaks, times out or fails to build; the input that did it is
# kept in $SLUICE_FUZZ_DIR/crashes/ and named in the output (replay it with
# "$SLUICE_FUZZ_DIR/<target> <file>").
#
# Usage: contrib/fuzz.sh [TARGET...]    (default: every test/fuzz/fuzz_*.c)
#
# Environment:
#   FUZZ_SECONDS     run time per target (default: 60); 0 only builds
#   SLUICE_FUZZ_DIR  objects, binaries, grown corpora, crashes
#                    (default: build-fuzz)
#   FUZZ_CC          the compiler (default: clang-14, else clang)
#   JOBS             parallel compile jobs (default: 2)
set -euo pipefail

# shellcheck source=contrib/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds=${FUZZ_SECONDS:-60}
out=${SLUICE_FUZZ_DIR:-$SLUICE_ROOT/build-fuzz}
jobs=${JOBS:-2}
cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
	cc=clang
	command -v clang-14 >/dev/null 2>&1 && cc=clang-14
fi
command -v "$cc" >/dev/null 2>&1 ||
	die "$cc not found: install clang-14 and libclang-rt-14-dev"
[[ $seconds =~ ^[0-9]+$ ]] || die "FUZZ_SECONDS must be a number of seconds"

version=$(sed -n 's/^AC_INIT(\[sluice\], \[\([^]]*\)\].*/\1/p' \
	"$SLUICE_ROOT/configure.ac")
deps=(libuv libssl libcrypto inih)
read -ra dep_cflags < <(pkg-config --cflags "${deps[@]}")
read -ra libs < <(pkg-config --libs "${deps[@]}")
cflags=(-g -O1 -std=gnu11 -fno-omit-frame-pointer
	'-fsanitize=address,undefined' -fno-sanitize-recover=all
	-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
	"-I$SLUICE_ROOT/src" "-DPACKAGE_VERSION=\"$version\""
	'-DSYSCONFDIR="/etc"' "${dep_cflags[@]}")

# Compiles src/*.c (not main.c) into $out/libsluice-fuzz.a, $jobs at a
# time; the linker takes from it only what a target uses.
build_library() {
	local objdir=$out/obj src running=0

	mkdir -p "$objdir"
	rm -f "$objdir"/*.o "$out/libsluice-fuzz.a"
	for src in "$SLUICE_ROOT"/src/*.c; do
		[ "$(basename "$src")" = main.c ] && continue
		"$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link -c "$src" \
			-o "$objdir/$(basename "$src" .c).o" &
		running=$((running + 1))
		if [ $running -ge "$jobs" ]; then
			wait -n || die "compiling src/ with $cc failed"
			running=$((running - 1))
		fi
	done
	for ((; running > 0; running--)); do
		wait -n || die "compiling src/ with $cc failed"
	done
	ar rcs "$out/libsluice-fuzz.a" "$objdir"/*.o
}

build_target() {
	local name=$1

	"$cc" "${cflags[@]}" -fsanitize=fuzzer -I"$SLUICE_ROOT/test/fuzz" \
		"$SLUICE_ROOT/test/fuzz/$name.c" "$out/libsluice-fuzz.a" \
		"${libs[@]}" -o "$out/$name" || die "building $name failed"
}

# Runs one target; prints its line of the summary; 1 if it failed.
run_target() {
	local name=$1 corpus=$out/corpus/$1 seeds=$SLUICE_ROOT/test/fuzz/corpus/$1
	local log=$out/$1.log done_line execs rate cov ft rc=0

	mkdir -p "$corpus" "$out/crashes"
	[ -d "$seeds" ] || die "no seed corpus $seeds"
	# New inputs go to the first directory; the seeds stay as they are.
	"$out/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$out/crashes/$name-" \
		"$corpus" "$seeds" >"$log" 2>&1 || rc=$?
	done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1 || true)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
	if [ $rc -ne 0 ]; then
		printf '%-16s FAILED (exit %d), log %s\n' "$name" "$rc" "$log"
		grep -E 'invariant broken|^==[0-9]+==ERROR|^SUMMARY|runtime error' "$log" | head -n 5
		grep -E 'Test unit written to|artifact_prefix' "$log" || true
		return 1
	fi
	printf '%-16s %10s execs %8s exec/s   cov: %-6s ft: %s\n' \
		"$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}"
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in "$SLUICE_ROOT"/test/fuzz/fuzz_*.c; do
		targets+=("$(basename "$f" .c)")
	done
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
log "building ${targets[*]} with $cc in $out"
build_library
for t in "${targets[@]}"; do
	build_target "$t"
done
[ "$seconds" -eq 0 ] && exit 0

log "running each target for ${seconds}s"
failed=0
for t in "${targets[@]}"; do
	run_target "$t" || failed=$((failed + 1))
done
[ $failed -eq 0 ] || die "$failed fuzz target(s) failed; inputs in $out/crashes"
