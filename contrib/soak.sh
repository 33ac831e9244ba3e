#!/usr/bin/env bash
# contrib/soak.sh - a long mixed run against the sanitizer build of sluice,
# with leak checking, watching its memory.
#
# A scratch PostgreSQL and a sluice built with --enable-sanitizers (ASan,
# UBSan; ASAN_OPTIONS=detect_leaks=1 and log_path, so every report is a
# file) with idle_transaction_timeout = 2 s and query_timeout = 3 s. For
# --minutes (default 30), all at once:
#
#   - pgbench: tpcb-like (simple protocol), select-only (extended) and
#     select-only (prepared), at fixed rates;
#   - leakers: BEGIN, a query, then idle in transaction past
#     idle_transaction_timeout (sluice closes them);
#   - cancelers: pg_sleep canceled by psql on SIGINT (a CancelRequest);
#   - timeouts: pg_sleep past query_timeout;
#   - vanishers: psql killed (SIGKILL) mid-query and mid-transaction.
#
# sluice's VmRSS is sampled every few seconds. At the end:
#
#   - no growth trend: after a warm-up (the first sixth of the run, and at
#     least 90 s: ASan's own memory settles), the mean RSS of the last
#     third is within --max-growth (20) percent of the first third's;
#   - zero sanitizer reports (and none at exit: LeakSanitizer runs then);
#   - sluice exits 0 on SIGTERM;
#   - no backend is left idle in transaction;
#   - sluice still serves a new client, and every kind of client did run.
#
# Prints the figures; exits non-zero if a check failed. Every loop is
# bounded in time. Run as root (PostgreSQL runs as postgres).
#
# usage: contrib/soak.sh [--build DIR] [--minutes N] [--ci] [--max-growth P]
#   --build DIR   a sanitizer build tree (default: $SLUICE_SAN_BUILD_DIR,
#                 else build-san)
#   --ci          3 minutes, RSS sampled every 2 s
# Environment: KEEP=1 keeps the work directory.
set -euo pipefail
export LC_ALL=C

# shellcheck source=contrib/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=contrib/stress_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/stress_lib.sh"

build=${SLUICE_SAN_BUILD_DIR:-$SLUICE_ROOT/build-san}
minutes=30
sample_s=5
max_growth=20
warmup_s=90         # at least; else the first sixth of the run

while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift ;;
	--minutes) minutes=$2; shift ;;
	--ci) minutes=3; sample_s=2 ;;
	--max-growth) max_growth=$2; shift ;;
	-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
	shift
done
case $minutes in ''|*[!0-9]*) die "--minutes takes a whole number" ;; esac
[ "$minutes" -ge 1 ] || die "--minutes must be at least 1"
build=$(cd "$build" && pwd)
sluice_bin=$build/src/sluice
[ -x "$sluice_bin" ] || die "no $sluice_bin: build it first"
grep -q -- '-fsanitize=address' "$build/Makefile" 2>/dev/null ||
	log "warning: $build does not look like a sanitizer build"
duration=$((minutes * 60))
pgbin=$(pg_bindir) || die "PostgreSQL programs not found"

fail() {
	log "FAIL: $*"
	STRESS_FAILED=1
}

stress_setup sluice-soak
# Every report goes to a file of its own; a small quarantine so that ASan's
# own memory settles during the warm-up instead of looking like a leak.
export ASAN_OPTIONS="detect_leaks=1:log_path=$WORK/sanitizer:quarantine_size_mb=4"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$WORK/sanitizer"
stress_pg_start
# pgbench and psql are not built with sanitizers; keep their environment clean.
client_env=(env -u ASAN_OPTIONS -u UBSAN_OPTIONS PGPASSWORD="$STRESS_PASSWORD"
	PGCONNECT_TIMEOUT=10)
stress_sluice_start "$sluice_bin" 4096 "max_client_conn = 500
default_pool_size = 10
idle_transaction_timeout = 2
query_timeout = 3
client_login_timeout = 10
stats_period = 60"
log "PostgreSQL on $PGPORT, sluice on $PORT (pid $SLUICE_PID), $minutes min, work in $WORK"

end=$((SECONDS + duration))
conn=(-h 127.0.0.1 -p "$PORT" -U "$STRESS_USER")

# pgbench through sluice for the whole run; rates keep the 2-core box usable.
run_pgbench() {
	local name=$1
	shift
	"${client_env[@]}" "$pgbin/pgbench" "${conn[@]}" -n -T "$duration" "$@" \
		"$STRESS_DB" >"$WORK/pgbench-$name.out" 2>"$WORK/pgbench-$name.err" &
	stress_bg $!
	pgbench_pids+=($!)
}

psql_run() {
	"${client_env[@]}" "$pgbin/psql" -X -q -At "${conn[@]}" -d "$STRESS_DB" "$@"
}

# One line per episode into $WORK/<kind>.log: how it ended.
leaker() {
	while [ $SECONDS -lt "$end" ]; do
		{ echo "BEGIN; SELECT count(*) FROM pgbench_branches;"; sleep 3; } |
			psql_run >/dev/null 2>&1 || true
		echo "leak done" >>"$WORK/leak.log"
	done
}

canceler() {
	local out

	while [ $SECONDS -lt "$end" ]; do
		out=$(timeout -s INT 1 "${client_env[@]}" "$pgbin/psql" -X -q -At \
			"${conn[@]}" -d "$STRESS_DB" -c "SELECT pg_sleep(2)" 2>&1 || true)
		case $out in
		*"canceling statement due to user request"*) echo canceled ;;
		*) echo "other: ${out//$'\n'/ }" ;;
		esac >>"$WORK/cancel.log"
	done
}

timeouter() {
	local out

	while [ $SECONDS -lt "$end" ]; do
		out=$(psql_run -c "SELECT pg_sleep(5)" 2>&1 || true)
		case $out in
		*query_timeout*) echo "timed out" ;;
		*) echo "other: ${out//$'\n'/ }" ;;
		esac >>"$WORK/timeout.log"
	done
}

vanisher() {
	while [ $SECONDS -lt "$end" ]; do
		timeout -s KILL 0.5 "${client_env[@]}" "$pgbin/psql" -X -q \
			"${conn[@]}" -d "$STRESS_DB" -c "SELECT pg_sleep(2)" \
			>/dev/null 2>&1 || true
		{ echo "BEGIN; UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1;"
		  sleep 1; } | timeout -s KILL 0.5 "${client_env[@]}" "$pgbin/psql" \
			-X -q "${conn[@]}" -d "$STRESS_DB" >/dev/null 2>&1 || true
		echo "vanished" >>"$WORK/vanish.log"
	done
}

pgbench_pids=()
run_pgbench tpcb -c 4 -j 1 -R 100 -M simple --max-tries=10
run_pgbench select-ext -c 4 -j 1 -R 200 -S -M extended
run_pgbench select-prep -c 2 -j 1 -R 100 -S -M prepared
for worker in leaker canceler timeouter vanisher; do
	# Its stderr: bash's notes on the clients it killed on purpose.
	"$worker" 2>>"$WORK/workers.err" &
	stress_bg $!
done
rss_sampler "$WORK/rss.log" "$sample_s" $((duration + 30)) &
stress_bg $!

# Bounded wait for the run: pgbench ends at -T; the workers at $end.
while [ $SECONDS -lt $((end + 60)) ]; do
	alive=0
	for pid in "${pgbench_pids[@]}"; do
		kill -0 "$pid" 2>/dev/null && alive=1
	done
	[ $alive -eq 0 ] && [ $SECONDS -ge "$end" ] && break
	stress_sluice_alive || break
	sleep 1
done
sleep 6 # the last leakers and vanishers end

# ---- checks ----
stress_sluice_alive || fail "sluice is not running any more"
[ "$(psql_sluice 'SELECT 42' 2>&1)" = 42 ] || fail "a new client cannot run a query"
dirty=$(as_postgres "$pgbin/psql" -X -At -h "$WORK/pg" -p "$PGPORT" -U postgres \
	-d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE usename = \
'$STRESS_USER' AND state LIKE 'idle in transaction%'")
[ "$dirty" = 0 ] || fail "$dirty backends left idle in transaction"

tps_total=0
for name in tpcb select-ext select-prep; do
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench-$name.out" | head -1)
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' \
		"$WORK/pgbench-$name.out")
	[ -n "$tps" ] || fail "pgbench $name did not finish: $(tail -n 3 "$WORK/pgbench-$name.err")"
	grep -q aborted "$WORK/pgbench-$name.err" &&
		fail "pgbench $name: clients aborted: $(grep -m2 aborted "$WORK/pgbench-$name.err")"
	[ "${failed:-0}" = 0 ] || fail "pgbench $name: $failed failed transactions"
	echo "pgbench $name: ${tps:-?} tps, ${failed:-?} failed"
	tps_total=$(awk -v a="$tps_total" -v b="${tps:-0}" 'BEGIN { print a + b }')
done >"$WORK/pgbench-summary.txt"
count_lines() {
	local n
	n=$(grep -c "$2" "$WORK/$1.log" 2>/dev/null) || true
	echo "${n:-0}"
}
leaks=$(count_lines leak 'leak done')
canceled=$(count_lines cancel '^canceled')
timed_out=$(count_lines timeout '^timed out')
vanished=$(count_lines vanish vanished)
[ "$leaks" -gt 0 ] || fail "no leaker ran"
[ "$canceled" -gt 0 ] || fail "no cancel worked: $(head -n 2 "$WORK/cancel.log")"
[ "$timed_out" -gt 0 ] || fail "no query_timeout fired: $(head -n 2 "$WORK/timeout.log")"
[ "$vanished" -gt 0 ] || fail "no client vanished"
closed_idle=$(grep -c "idle_transaction_timeout" "$WORK/sluice/sluice.log" || true)

# RSS trend: drop the warm-up, compare the thirds of the rest. Under ASan
# RSS climbs for about 100 s (the quarantine and the allocator's caches
# filling: measured flat in the plain build) before it levels off.
read -r samples first_mean last_mean growth < <(awk -v warm="$warmup_s" \
	-v every="$sample_s" '
	{ t[NR] = $1; v[NR] = $2 }
	END {
		skip = int(NR / 6)
		if (skip < warm / every) skip = int(warm / every)
		n = NR - skip; third = int(n / 3)
		if (third < 1) { print NR, 0, 0, 0; exit }
		for (i = skip + 1; i <= skip + third; i++) a += v[i]
		for (i = NR - third + 1; i <= NR; i++) b += v[i]
		a /= third; b /= third
		printf "%d %.0f %.0f %.1f\n", NR, a, b, (a > 0 ? (b - a) * 100 / a : 0)
	}' "$WORK/rss.log")
rss_min=$(awk 'NR == 1 || $2 < m { m = $2 } END { print m + 0 }' "$WORK/rss.log")
rss_max=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$WORK/rss.log")
[ "$samples" -ge 6 ] || fail "only $samples RSS samples"
awk -v g="$growth" -v m="$max_growth" 'BEGIN { exit !(g <= m) }' ||
	fail "RSS grew ${growth}% from the first to the last third (limit ${max_growth}%)"

stress_sluice_stop 30
[ "$SLUICE_EXIT" = 0 ] || fail "sluice exited with status $SLUICE_EXIT on SIGTERM"
reports=$(find "$WORK" -maxdepth 1 -name 'sanitizer.*' | wc -l)
if [ "$reports" -ne 0 ]; then
	fail "$reports sanitizer reports: $(find "$WORK" -maxdepth 1 -name 'sanitizer.*' | head -3)"
	head -n 30 "$(find "$WORK" -maxdepth 1 -name 'sanitizer.*' | head -1)" >&2
fi
grep -qE "ERROR: AddressSanitizer|runtime error:|LeakSanitizer" \
	"$WORK/sluice/sluice.out" && fail "sanitizer output in $WORK/sluice/sluice.out"

# ---- figures ----
cat "$WORK/pgbench-summary.txt"
cat <<EOF
soak: $minutes min against $sluice_bin
clients: $leaks leaked transactions ($closed_idle closed by idle_transaction_timeout), $canceled canceled queries, $timed_out query_timeouts, $vanished vanish rounds (2 clients each); pgbench $tps_total tps in all
sluice RSS: $samples samples every ${sample_s} s, min $rss_min KiB, max $rss_max KiB; after the warm-up first third $first_mean KiB, last third $last_mean KiB: ${growth}% (limit ${max_growth}%)
sanitizer reports: $reports; exit on SIGTERM: $SLUICE_EXIT
EOF
if [ "$STRESS_FAILED" -ne 0 ]; then
	log "soak test FAILED"
	exit 1
fi
log "soak test passed"
