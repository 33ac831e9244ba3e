#!/usr/bin/env bash
# contrib/test.sh - builds sluice and runs every test, twice: a plain build,
# then one with AddressSanitizer and UndefinedBehaviorSanitizer; then runs
# each libFuzzer target of test/fuzz/ for FUZZ_SECONDS (contrib/fuzz.sh).
#
# Installs missing Debian packages first (apt-get, as root or through sudo).
# Each build runs `make check`: unit tests, then integration tests against a
# scratch PostgreSQL that each test binary starts and stops itself. Works
# from any directory. Exits non-zero on the first failing build, after
# printing the logs of the failed tests. Then the bounded stress runs:
# contrib/flood.sh --ci against the plain build (about a minute) and
# contrib/soak.sh --ci against the sanitizer build (3 minutes).
#
# Environment:
#   SLUICE_BUILD_DIR      plain build directory (default: build)
#   SLUICE_SAN_BUILD_DIR  sanitizer build directory (default: build-san)
#   SLUICE_SKIP_SAN=1     only the plain build (and no soak run)
#   SLUICE_SKIP_FUZZ=1    no fuzzing
#   FUZZ_SECONDS          run time per fuzz target (default: 60)
#   SLUICE_SKIP_STRESS=1  no flood and soak runs
#   JOBS                  parallel compile jobs (default: 2)
set -euo pipefail

# shellcheck source=contrib/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_dir=${SLUICE_BUILD_DIR:-$SLUICE_ROOT/build}
san_dir=${SLUICE_SAN_BUILD_DIR:-$SLUICE_ROOT/build-san}
jobs=${JOBS:-2}
passed=0
failed=0

# Every PostgreSQL and sluice of the tests lives under this directory, so
# that the trap can find and stop whatever a crashed test left running.
SLUICE_TEST_TMPDIR=$(mktemp -d /tmp/sluice-ci.XXXXXX)
chmod 755 "$SLUICE_TEST_TMPDIR"
export SLUICE_TEST_TMPDIR

stop_leftovers() {
	local pidfile pid data

	for pidfile in "$SLUICE_TEST_TMPDIR"/*/*/sluice.pid; do
		[ -f "$pidfile" ] || continue
		pid=$(head -n1 "$pidfile" 2>/dev/null || true)
		if [ -n "$pid" ] && grep -qs sluice "/proc/$pid/cmdline"; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for data in "$SLUICE_TEST_TMPDIR"/*/pg/data; do
		[ -f "$data/postmaster.pid" ] || continue
		log "stopping a PostgreSQL left running in $data"
		as_postgres "$(pg_bindir)/pg_ctl" -D "$data" -m immediate -w stop \
			>/dev/null 2>&1 || true
	done
}

cleanup() {
	local rc=$?

	stop_leftovers
	if [ $rc -eq 0 ]; then
		rm -rf "$SLUICE_TEST_TMPDIR"
	else
		log "test files kept in $SLUICE_TEST_TMPDIR"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Adds up criterion's "Synthesis" lines of one build's test logs.
count_tests() {
	local dir=$1 line p f c

	while IFS= read -r line; do
		p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
		f=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$line")
		c=$(sed -n 's/.*Crashing: \([0-9]*\).*/\1/p' <<<"$line")
		passed=$((passed + ${p:-0}))
		failed=$((failed + ${f:-0} + ${c:-0}))
	done < <(cat "$dir"/test/unit/*.log "$dir"/test/integration/*.log 2>/dev/null |
	         grep 'Synthesis: Tested' || true)
}

# Builds in $1 with configure flags $2..., then runs make check.
build_and_check() {
	local name=$1 dir=$2
	shift 2

	log "== $name build"
	prepare_build "$dir" "$@"
	make -C "$BUILD_DIR" -j"$jobs" >"$BUILD_DIR/make.log" 2>&1 || {
		tail -n 60 "$BUILD_DIR/make.log"
		die "$name build failed (log: $BUILD_DIR/make.log)"
	}
	log "== $name build: make check"
	if ! make -C "$BUILD_DIR" -j1 check; then
		[ -f "$BUILD_DIR/test-suite.log" ] && cat "$BUILD_DIR/test-suite.log"
		count_tests "$BUILD_DIR"
		echo "sluice: $passed passed, $failed failed"
		die "$name build: tests failed"
	fi
	count_tests "$BUILD_DIR"
}

# The flood and soak runs, after the builds passed; each prints its figures.
stress_runs() {
	local plain=$1 san=$2 rc=0

	log "== flood test (plain build)"
	"$SLUICE_ROOT/contrib/flood.sh" --ci --build "$plain" || rc=1
	if [ -n "$san" ]; then
		log "== soak test, 3 minutes (sanitizer build)"
		"$SLUICE_ROOT/contrib/soak.sh" --ci --build "$san" || rc=1
	fi
	[ $rc -eq 0 ] || die "stress runs failed"
}

install_deps
pg_bindir >/dev/null || die "PostgreSQL server programs not found after install"

build_and_check plain "$build_dir"
plain_build=$BUILD_DIR
san_build=
if [ "${SLUICE_SKIP_SAN:-0}" != 1 ]; then
	export ASAN_OPTIONS=detect_leaks=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	build_and_check sanitizer "$san_dir" --enable-sanitizers
	san_build=$BUILD_DIR
fi
echo "sluice: $passed passed, $failed failed"
if [ "${SLUICE_SKIP_STRESS:-0}" != 1 ]; then
	stress_runs "$plain_build" "$san_build"
fi
if [ "${SLUICE_SKIP_FUZZ:-0}" != 1 ]; then
	log "== fuzzing, ${FUZZ_SECONDS:-60}s per target"
	FUZZ_SECONDS=${FUZZ_SECONDS:-60} "$SLUICE_ROOT/contrib/fuzz.sh" ||
		die "fuzzing found a defect"
fi
