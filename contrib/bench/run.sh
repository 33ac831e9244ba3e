#!/usr/bin/env bash
# contrib/bench/run.sh - benchmark sluice against PgBouncer and direct PostgreSQL.
#
# One command, run as root from anywhere:
#
#   contrib/bench/run.sh            # full: 18 workloads x 3 targets, 5 rounds, 10 s runs
#   contrib/bench/run.sh --short    # quick check: select-only, 64 clients, simple; 3 rounds, 5 s
#   contrib/bench/run.sh --idle     # also the idle-connection test (slow)
#
# See doc/benchmark.md for what it measures, how, and the options.

set -uo pipefail
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

# ---------------------------------------------------------------- options
ROUNDS=5
DURATION=10
SHORT=0
IDLE=0
MAIN=1
SLUICE_BIN=${SLUICE:-}
BUILD_REV=""
RESULTS=""
IDLE_COUNTS="1000 10000"
SCALE=10
POOL_SIZE=20
WARMUP=1.0          # seconds excluded at the start of each run for CPU/tx
ROUNDS_SET=0
DURATION_SET=0
CLIENTS_LIST="8 64 256"
MODES_LIST="simple extended prepared"
SCRIPTS_LIST="select-only tpcb-like"
MAX_MINUTES=""
PERF=0
FLOOR=0

usage() {
	cat <<EOF
usage: $0 [OPTION]...

  --short            one workload (select-only, simple, 64 clients), 3 rounds of 5 s
  --idle             also run the idle-connection test (1,000 and 10,000 idle clients)
  --idle-only        only the idle-connection test
  --idle-counts "N.."  idle client counts (default: "$IDLE_COUNTS")
  --rounds N         rounds (default 5; 3 with --short)
  --duration S       seconds per pgbench run (default 10; 5 with --short)
  --clients "N.."    client counts (default: "$CLIENTS_LIST")
  --modes "M.."      pgbench query modes (default: "$MODES_LIST"; PgBouncer
                     before 1.21 is skipped for prepared)
  --scripts "S.."    pgbench builtin scripts (default: "$SCRIPTS_LIST")
  --sluice PATH      use this sluice binary instead of building one from $SRC_DIR
  --rev REV          build sluice from commit REV (git archive) instead of the working tree
  --results DIR      results directory (default /tmp/sluice-bench-YYYYmmdd-HHMMSS)
  --floor            add a fourth target: contrib/bench/floor_proxy.c, a bare
                     forwarder (no pooling, nothing parsed), the floor of any
                     proxy's CPU per transaction on this machine
  --perf             also count each pooler's system calls and context switches
                     per transaction (perf stat; installs linux-perf if missing)
  --max-minutes M    stop everything after M minutes (default: estimated time x 2 + 15)
  -h, --help         this help
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--short) SHORT=1 ;;
	--idle) IDLE=1 ;;
	--idle-only) IDLE=1; MAIN=0 ;;
	--idle-counts) IDLE_COUNTS=$2; shift ;;
	--rounds) ROUNDS=$2; ROUNDS_SET=1; shift ;;
	--duration) DURATION=$2; DURATION_SET=1; shift ;;
	--clients) CLIENTS_LIST=$2; shift ;;
	--modes) MODES_LIST=$2; shift ;;
	--scripts) SCRIPTS_LIST=$2; shift ;;
	--sluice) SLUICE_BIN=$2; shift ;;
	--rev) BUILD_REV=$2; shift ;;
	--results) RESULTS=$2; shift ;;
	--max-minutes) MAX_MINUTES=$2; shift ;;
	--perf) PERF=1 ;;
	--floor) FLOOR=1 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "run.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
if [ "$SHORT" = 1 ]; then
	CLIENTS_LIST="64"; MODES_LIST="simple"; SCRIPTS_LIST="select-only"
	[ "$ROUNDS_SET" = 1 ] || ROUNDS=3
	[ "$DURATION_SET" = 1 ] || DURATION=5
fi
case "$ROUNDS$DURATION" in *[!0-9]*) echo "run.sh: --rounds and --duration take integers" >&2; exit 2 ;; esac
[ "$DURATION" -ge 3 ] || { echo "run.sh: --duration must be at least 3" >&2; exit 2; }

[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (it installs packages and starts services as postgres)" >&2; exit 2; }

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=${RESULTS:-/tmp/sluice-bench-$STAMP}
mkdir -p "$RESULTS" || exit 1
RESULTS=$(cd "$RESULTS" && pwd)
MAINLOG="$RESULTS/run.log"
: >"$MAINLOG"

say() { printf '%s\n' "$*" | tee -a "$MAINLOG" >&2; }
die() { say "run.sh: ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
WORK=""
PG_STARTED=0
declare -A BG=()        # pid -> description, processes this script started

bg_add() { BG[$1]=$2; }
bg_del() { unset "BG[$1]"; }

stop_pid() {            # stop_pid PID [SECONDS]: TERM, wait, then KILL
	local pid=$1 secs=${2:-10} i
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; bg_del "$pid"; return 0; }
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	bg_del "$pid"
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	set +e
	for pid in "${!BG[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	sleep 0.3
	for pid in "${!BG[@]}"; do
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ "$PG_STARTED" = 1 ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate -w -t 30 stop >/dev/null 2>&1
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		# keep the logs of the poolers and PostgreSQL next to the results
		mkdir -p "$RESULTS/logs"
		cp "$WORK"/*.log "$RESULTS/logs/" 2>/dev/null
		rm -rf "$WORK"
	fi
	[ "$rc" = 0 ] || echo "run.sh: exiting with status $rc; logs in $RESULTS" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'say "run.sh: interrupted"; exit 130' INT
trap 'say "run.sh: terminated (time limit or signal)"; exit 143' TERM

WORK=$(mktemp -d /tmp/sluice-bench-work.XXXXXX) || exit 1
chmod 755 "$WORK"

# ---------------------------------------------------------------- packages
APT_UPDATED=0
apt_install() {
	[ "$APT_UPDATED" = 1 ] || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$MAINLOG" 2>&1; APT_UPDATED=1; }
	say "installing: $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$MAINLOG" 2>&1 || die "apt-get install $* failed (see $MAINLOG)"
}

[ -x "$PGBIN/postgres" ] && [ -x "$PGBIN/pgbench" ] || {
	apt_install postgresql-15 postgresql-client-15
	# Debian starts a cluster on install; we use our own
	command -v pg_ctlcluster >/dev/null && pg_ctlcluster 15 main stop >/dev/null 2>&1
}
if ! command -v pgbouncer >/dev/null; then
	apt_install pgbouncer
	# Debian's package may start a service on 6432: stop and disable it
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
		systemctl disable --now pgbouncer >/dev/null 2>&1
	fi
	[ -x /etc/init.d/pgbouncer ] && /etc/init.d/pgbouncer stop >/dev/null 2>&1
	command -v update-rc.d >/dev/null && update-rc.d pgbouncer disable >/dev/null 2>&1
fi
PGBOUNCER_BIN=$(command -v pgbouncer)
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then
	apt_install linux-perf
fi
# Prepared statements in transaction mode came with PgBouncer 1.21
# (max_prepared_statements); older ones cannot run -M prepared at all.
PGB_VERSION=$("$PGBOUNCER_BIN" --version 2>&1 | sed -n 's/.*PgBouncer \([0-9]*\.[0-9]*\).*/\1/p' | head -1)
PGB_PREPARED=0
case "$PGB_VERSION" in
1.[0-9]|1.1[0-9]|1.20|"") ;;
*) PGB_PREPARED=1 ;;
esac
for tool in python3 prlimit setpriv runuser timeout; do
	command -v "$tool" >/dev/null || case $tool in
		python3) apt_install python3 ;;
		*) apt_install util-linux coreutils ;;
	esac
done
if [ "$IDLE" = 1 ] || [ "$FLOOR" = 1 ] || [ -z "$SLUICE_BIN" ]; then
	for tool in gcc pkg-config make; do
		command -v "$tool" >/dev/null || apt_install gcc make pkg-config
	done
	pkg-config --exists libpq 2>/dev/null || apt_install libpq-dev
	[ "$FLOOR" = 0 ] || pkg-config --exists libuv 2>/dev/null || apt_install libuv1-dev
fi

# ---------------------------------------------------------------- sluice binary
BUILD_SRC=$SRC_DIR
if [ -z "$SLUICE_BIN" ] && [ -n "$BUILD_REV" ]; then
	# a clean copy of a commit, so that work in progress in the checkout does not matter
	say "exporting $BUILD_REV from $SRC_DIR to $WORK/src"
	mkdir -p "$WORK/src"
	git -C "$SRC_DIR" archive "$BUILD_REV" | tar -x -C "$WORK/src" || die "git archive $BUILD_REV failed"
	BUILD_SRC=$WORK/src
fi
if [ -z "$SLUICE_BIN" ]; then
	say "building sluice from $BUILD_SRC (out of tree, in $WORK/build)"
	if [ ! -x "$BUILD_SRC/configure" ]; then
		command -v autoreconf >/dev/null || apt_install autoconf automake
		(cd "$BUILD_SRC" && autoreconf -fi) >>"$MAINLOG" 2>&1 || die "autoreconf failed (see $MAINLOG)"
	fi
	mkdir -p "$WORK/build"
	(cd "$WORK/build" && "$BUILD_SRC/configure" -q && make -j"$(nproc)" src/sluice) >>"$MAINLOG" 2>&1 \
		|| die "building sluice failed (see $MAINLOG; --rev HEAD builds the last commit instead of the working tree)"
	SLUICE_BIN="$WORK/build/src/sluice"
	SLUICE_CFLAGS=$(sed -n 's/^CFLAGS = //p' "$WORK/build/Makefile")
else
	SLUICE_BIN=$(cd "$(dirname "$SLUICE_BIN")" && pwd)/$(basename "$SLUICE_BIN")
	[ -x "$SLUICE_BIN" ] || die "not executable: $SLUICE_BIN"
	SLUICE_CFLAGS="(prebuilt: $SLUICE_BIN)"
fi
# the poolers run as postgres: give them a copy they can execute
cp "$SLUICE_BIN" "$WORK/sluice" && chmod 755 "$WORK/sluice"
TARGETS="direct pgbouncer sluice"
if [ "$FLOOR" = 1 ]; then
	gcc -O2 -o "$WORK/floor_proxy" "$SCRIPT_DIR/floor_proxy.c" $(pkg-config --cflags --libs libuv) >>"$MAINLOG" 2>&1 \
		|| die "compiling floor_proxy.c failed (see $MAINLOG)"
	chmod 755 "$WORK/floor_proxy"
	TARGETS="$TARGETS floor"
fi

# ---------------------------------------------------------------- time bound
NWORK=0
for _s in $SCRIPTS_LIST; do for _m in $MODES_LIST; do for _c in $CLIENTS_LIST; do NWORK=$((NWORK + 1)); done; done; done
EST_MAIN=0
NTARGETS=$(wc -w <<<"$TARGETS")
[ "$MAIN" = 1 ] && EST_MAIN=$((NWORK * NTARGETS * ROUNDS * (DURATION + 4)))
NIDLE=0
for _n in $IDLE_COUNTS; do NIDLE=$((NIDLE + 1)); done
EST_IDLE=0
[ "$IDLE" = 1 ] && EST_IDLE=$((NIDLE * 2 * 45))
EST=$((EST_MAIN + EST_IDLE + 60))
[ -n "$MAX_MINUTES" ] || MAX_MINUTES=$((EST * 2 / 60 + 15))
(
	trap 'kill "$s" 2>/dev/null; exit 0' TERM
	sleep $((MAX_MINUTES * 60)) & s=$!
	wait "$s"
	echo "run.sh: time limit of $MAX_MINUTES minutes reached, stopping" >&2
	kill -TERM $$
) &
bg_add $! watchdog

# ---------------------------------------------------------------- ports
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PG_PORT=$(free_port)
PGB_PORT=$(free_port)
SL_PORT=$(free_port)
FL_PORT=$(free_port)
while [ "$PGB_PORT" = "$PG_PORT" ]; do PGB_PORT=$(free_port); done
while [ "$SL_PORT" = "$PG_PORT" ] || [ "$SL_PORT" = "$PGB_PORT" ]; do SL_PORT=$(free_port); done
while [ "$FL_PORT" = "$PG_PORT" ] || [ "$FL_PORT" = "$PGB_PORT" ] || [ "$FL_PORT" = "$SL_PORT" ]; do FL_PORT=$(free_port); done

BENCH_PW="bench-$(head -c 9 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
export PGPASSWORD="$BENCH_PW" PGSSLMODE=disable PGGSSENCMODE=disable PGUSER=bench PGDATABASE=bench PGHOST=127.0.0.1
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NOFILE" -gt 65536 ] && NOFILE=65536

# ---------------------------------------------------------------- PostgreSQL
say "== scratch PostgreSQL ($("$PGBIN/postgres" --version)) on 127.0.0.1:$PG_PORT, data in $WORK/pg"
say "   settings: fsync=off, synchronous_commit=off, full_page_writes=off, max_connections=400, shared_buffers=256MB"
say "   (NOT durable: numbers are for comparing proxies, not for sizing a real server)"
chown postgres: "$WORK"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -U postgres -E UTF8 --no-sync \
	--auth-local=peer --auth-host=scram-sha-256 >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$WORK/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = 400
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
password_encryption = 'scram-sha-256'
log_min_messages = warning
EOF
cat >"$WORK/pg/pg_hba.conf" <<EOF
local all postgres peer
host  all all 127.0.0.1/32 scram-sha-256
EOF
runuser -u postgres -- prlimit --nofile="$NOFILE" "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/postgresql.log" -w -t 60 start >/dev/null 2>&1 \
	|| { tail -20 "$WORK/postgresql.log" >&2; die "PostgreSQL did not start"; }
PG_STARTED=1
runuser -u postgres -- "$PGBIN/psql" -X -q -h "$WORK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >>"$MAINLOG" 2>&1 <<EOF || die "creating the bench role failed"
SET password_encryption = 'scram-sha-256';
CREATE ROLE bench LOGIN PASSWORD '$BENCH_PW';
CREATE DATABASE bench OWNER bench;
EOF
say "   role bench with a SCRAM-SHA-256 password; pgbench -i -s $SCALE"
timeout 900 "$PGBIN/pgbench" -i -q -s "$SCALE" -p "$PG_PORT" >>"$MAINLOG" 2>&1 || die "pgbench -i failed (see $MAINLOG)"

# ---------------------------------------------------------------- poolers
printf '"bench" "%s"\n' "$BENCH_PW" >"$WORK/userlist.txt"
chown postgres: "$WORK/userlist.txt"
chmod 600 "$WORK/userlist.txt"

write_pooler_conf() {   # NAME PORT SECTION
	cat >"$WORK/$1.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench

[$3]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 15000
log_connections = 0
log_disconnections = 0
EOF
	chown postgres: "$WORK/$1.ini"
}
write_pooler_conf pgbouncer "$PGB_PORT" pgbouncer
[ "$PGB_PREPARED" = 1 ] && echo "max_prepared_statements = 200" >>"$WORK/pgbouncer.ini"
write_pooler_conf sluice "$SL_PORT" sluice

POOLER_PID=""
# start_pooler NAME: starts it as postgres with a raised fd limit, sets POOLER_PID
start_pooler() {
	local name=$1 port bin i
	local -a args
	case $name in
	pgbouncer) port=$PGB_PORT; bin=$PGBOUNCER_BIN; args=("$WORK/$name.ini") ;;
	sluice) port=$SL_PORT; bin=$WORK/sluice; args=("$WORK/$name.ini") ;;
	floor) port=$FL_PORT; bin=$WORK/floor_proxy; args=("$FL_PORT" "$PG_PORT") ;;
	esac
	echo "---- start $(date +%T)" >>"$WORK/$name.log"
	(cd "$WORK" && exec prlimit --nofile="$NOFILE:$NOFILE" \
		setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin" "${args[@]}") \
		>>"$WORK/$name.log" 2>&1 </dev/null &
	POOLER_PID=$!
	bg_add "$POOLER_PID" "$name"
	for ((i = 0; i < 150; i++)); do
		if ! kill -0 "$POOLER_PID" 2>/dev/null; then
			wait "$POOLER_PID"; local rc=$?
			bg_del "$POOLER_PID"
			say "run.sh: $name exited at start (status $rc); its log:"
			tail -20 "$WORK/$name.log" | tee -a "$MAINLOG" >&2
			POOLER_PID=""
			return 1
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	say "run.sh: $name is not listening on 127.0.0.1:$port after 15 s"
	stop_pid "$POOLER_PID" 5
	POOLER_PID=""
	return 1
}

stop_pooler() {
	[ -n "$POOLER_PID" ] || return 0
	stop_pid "$POOLER_PID" 10
	POOLER_PID=""
}

proc_kb() {             # proc_kb PID FIELD  (VmRSS, VmHWM) -> kB
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null
}

sampler() {             # sampler PID: "epoch utime+stime" every 0.2 s
	local pid=$1 line
	local -a f
	while read -r line <"/proc/$pid/stat"; do
		line=${line##*) }   # fields after "(comm) "; utime, stime are 12th, 13th
		read -ra f <<<"$line"
		echo "$EPOCHREALTIME $((f[11] + f[12]))"
		sleep 0.2
	done 2>/dev/null
}

CLK_TCK=$(getconf CLK_TCK)

# run_pgbench OUTDIR PORT CLIENTS THREADS DURATION MODE SCRIPT [PROXYPID]
# leaves OUTDIR/{out,err,cpu}.txt and OUTDIR/tx.* (per-transaction logs), sets PGB_RC
run_pgbench() {
	local out=$1 port=$2 c=$3 j=$4 t=$5 mode=$6 script=$7 ppid=${8:-} spid="" pid perfpid=""
	rm -rf "$out"; mkdir -p "$out"
	if [ -n "$ppid" ]; then
		sampler "$ppid" >"$out/cpu.txt" &
		spid=$!
		bg_add "$spid" sampler
		if [ "$PERF" = 1 ]; then
			perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$ppid" -o "$out/perf.txt" &
			perfpid=$!
			bg_add "$perfpid" perf
		fi
	fi
	timeout -k 5 $((t + 120)) "$PGBIN/pgbench" -n -p "$port" -c "$c" -j "$j" -T "$t" -M "$mode" -b "$script" \
		--log --log-prefix="$out/tx" >"$out/out.txt" 2>"$out/err.txt" &
	pid=$!
	bg_add "$pid" pgbench
	wait "$pid"; PGB_RC=$?
	bg_del "$pid"
	[ -n "$spid" ] && stop_pid "$spid" 2
	if [ -n "$perfpid" ]; then      # perf stat writes its counts on SIGINT
		kill -INT "$perfpid" 2>/dev/null
		wait "$perfpid" 2>/dev/null
		bg_del "$perfpid"
	fi
	return 0
}

# analyse OUTDIR -> prints "tps lat_avg_ms p99_ms tx failed cpu_us_per_tx window_tx"
analyse() {
	local out=$1 tps lat tx failed first last t1 t2 c1 c2 wtx p99 n cpu
	tps=$(awk '/^tps = / { print $3; exit }' "$out/out.txt")
	lat=$(awk '/^latency average = / { print $4; exit }' "$out/out.txt")
	tx=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$out/out.txt")
	failed=$(awk '/^number of failed transactions/ { print $5; exit }' "$out/out.txt")
	# latencies (col 3, us) of successful transactions, and first/last completion time
	read -r first last n < <(cat "$out"/tx.* 2>/dev/null | awk -v lf="$out/lat.txt" '
		$3 ~ /^[0-9]+$/ { t = $5 * 1000000 + $6; print $3 > lf
			if (!n || t < mn) mn = t; if (!n || t > mx) mx = t; n++ }
		END { printf "%.0f %.0f %.0f\n", mn, mx, n }')
	p99="NA"
	if [ "${n:-0}" -gt 0 ]; then
		p99=$(sort -n -S 64M "$out/lat.txt" | awk -v n="$n" 'BEGIN { k = int(n * 0.99); if (k < n * 0.99) k++; if (k < 1) k = 1 } NR == k { printf "%.3f", $1 / 1000; exit }')
	fi
	cpu="NA"; wtx="NA"
	if [ -s "$out/cpu.txt" ] && [ "${n:-0}" -gt 0 ]; then
		# window: from the first sample >= first completion + WARMUP to the last sample <= last completion - 0.2 s
		read -r t1 c1 t2 c2 < <(awk -v lo="$first" -v hi="$last" -v w="$WARMUP" '
			{ t = $1 * 1000000 } t >= lo + w * 1000000 && !a { a = 1; t1 = t; c1 = $2 }
			t <= hi - 200000 { t2 = t; c2 = $2 }
			END { if (a && t2 > t1) printf "%.0f %.0f %.0f %.0f\n", t1, c1, t2, c2; else print "0 0 0 0" }' "$out/cpu.txt")
		if [ "$t2" -gt "$t1" ]; then
			wtx=$(cat "$out"/tx.* | awk -v a="$t1" -v b="$t2" '$3 ~ /^[0-9]+$/ { t = $5 * 1000000 + $6; if (t > a && t <= b) k++ } END { printf "%.0f\n", k }')
			if [ "$wtx" -gt 0 ]; then
				cpu=$(awk -v d=$((c2 - c1)) -v k="$wtx" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d * 1000000 / hz / k }')
			fi
		fi
	fi
	# cross-check: CPU over the whole sampled run (logins and ramp-up included) / all transactions
	cpuall="NA"
	if [ -s "$out/cpu.txt" ] && [ "${n:-0}" -gt 0 ]; then
		cpuall=$(awk -v k="$n" -v hz="$CLK_TCK" 'NR == 1 { a = $2 } { b = $2 } END { printf "%.2f", (b - a) * 1000000 / hz / k }' "$out/cpu.txt")
	fi
	# perf stat counts over the whole run (logins included) / all transactions
	sys="NA"; csw="NA"
	if [ -s "$out/perf.txt" ] && [ "${n:-0}" -gt 0 ]; then
		sys=$(awk -F, -v k="$n" '$3 ~ /sys_enter/ && $1 ~ /^[0-9]+$/ { printf "%.2f", $1 / k }' "$out/perf.txt")
		csw=$(awk -F, -v k="$n" '$3 ~ /context-switches/ && $1 ~ /^[0-9]+$/ { printf "%.3f", $1 / k }' "$out/perf.txt")
	fi
	echo "${tps:-NA} ${lat:-NA} $p99 ${tx:-NA} ${failed:-NA} $cpu $wtx $cpuall ${sys:-NA} ${csw:-NA}"
}

first_error() {         # first_error OUTDIR: one line for the CSV
	grep -m1 -iE 'error|fatal|abort|could not|failed|timeout' "$1/err.txt" 2>/dev/null | tr -d '\r"' | tr ',' ';' | cut -c1-300
}

# ---------------------------------------------------------------- header
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
SLUICE_VERSION=$("$WORK/sluice" --version 2>&1 | head -1)
if [ -n "$BUILD_REV" ]; then
	GIT_REV=$(git -C "$SRC_DIR" rev-parse --short "$BUILD_REV" 2>/dev/null || echo "$BUILD_REV")
else
	GIT_REV=$(git -C "$SRC_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
	[ -z "$(git -C "$SRC_DIR" status --porcelain -- src 2>/dev/null)" ] || GIT_REV="$GIT_REV+uncommitted-src-changes"
fi
[[ "$SLUICE_CFLAGS" == "(prebuilt"* ]] && GIT_REV="unknown, prebuilt binary"
{
	echo "date=$(date -Is)"
	echo "host=$(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
	echo "kernel=$(uname -r)"
	echo "postgresql=$("$PGBIN/postgres" --version)"
	echo "pgbench=$("$PGBIN/pgbench" --version)"
	echo "pgbouncer=$("$PGBOUNCER_BIN" --version 2>&1 | head -1)"
	echo "sluice=$SLUICE_VERSION (git $GIT_REV, CFLAGS $SLUICE_CFLAGS)"
	echo "rounds=$ROUNDS"
	echo "duration=$DURATION"
	echo "scale=$SCALE"
	echo "pool_size=$POOL_SIZE"
	echo "warmup=$WARMUP"
	echo "loadavg_start=$LOAD0"
} >"$RESULTS/meta.txt"

RAW="$RESULTS/raw.csv"
echo "round,script,mode,clients,target,tps,lat_avg_ms,lat_p99_ms,transactions,failed,proxy_cpu_us_per_tx,cpu_window_tx,proxy_cpu_us_per_tx_whole_run,proxy_syscalls_per_tx,proxy_cswitches_per_tx,proxy_peak_rss_kb,status,error" >"$RAW"

# ---------------------------------------------------------------- main benchmark
if [ "$MAIN" = 1 ]; then
	say "== main benchmark: $NWORK workload(s) x 3 targets x $ROUNDS rounds, pgbench -T $DURATION -j 2"
	say "   targets: direct PostgreSQL :$PG_PORT, PgBouncer :$PGB_PORT, sluice :$SL_PORT (transaction mode, pool size $POOL_SIZE, scram-sha-256)"
	[ "$FLOOR" = 1 ] && say "   and floor_proxy :$FL_PORT (a bare forwarder: one server connection per client, no pooling)"
	say "   estimated time: $((EST_MAIN / 60)) min; time limit $MAX_MINUTES min; results in $RESULTS"
	runno=0
	total=$((NWORK * NTARGETS * ROUNDS))
	for ((round = 1; round <= ROUNDS; round++)); do
		for script in $SCRIPTS_LIST; do
			for mode in $MODES_LIST; do
				for clients in $CLIENTS_LIST; do
					for target in $TARGETS; do
						runno=$((runno + 1))
						if [ "$target" = pgbouncer ] && [ "$mode" = prepared ] && [ "$PGB_PREPARED" = 0 ]; then
							err="PgBouncer $PGB_VERSION has no prepared statements in transaction mode (1.21+)"
							echo "$round,$script,$mode,$clients,$target,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,skipped,\"$err\"" >>"$RAW"
							continue
						fi
						out="$WORK/run"
						status=ok; err=""; hwm=NA; ppid=""
						case $target in
						direct) port=$PG_PORT ;;
						pgbouncer) port=$PGB_PORT ;;
						sluice) port=$SL_PORT ;;
						floor) port=$FL_PORT ;;
						esac
						if [ "$target" != direct ]; then
							if ! start_pooler "$target"; then
								status=start-failed
								err=$(tail -3 "$WORK/$target.log" | tr '\n,"' '  ;' | cut -c1-300)
								echo "$round,$script,$mode,$clients,$target,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,$status,\"$err\"" >>"$RAW"
								say "[$runno/$total] round $round $script $mode c=$clients $target: FAILED TO START"
								continue
							fi
							ppid=$POOLER_PID
						fi
						run_pgbench "$out" "$port" "$clients" 2 "$DURATION" "$mode" "$script" "$ppid"
						if [ -n "$ppid" ]; then
							hwm=$(proc_kb "$ppid" VmHWM)
							if ! kill -0 "$ppid" 2>/dev/null; then
								status=proxy-died
								err="$target exited during the run: $(tail -3 "$WORK/$target.log" | tr '\n,"' '  ;' | cut -c1-250)"
							fi
							stop_pooler
						fi
						read -r tps lat p99 tx failed cpu wtx cpuall sys csw < <(analyse "$out")
						if [ "$PGB_RC" != 0 ] || [ "$failed" != 0 ]; then
							[ "$status" = ok ] && status="pgbench-rc-$PGB_RC"
							[ -n "$err" ] || err=$(first_error "$out")
						fi
						# keep pgbench's summary for reference
						{ echo "### round $round $script $mode c=$clients $target (rc $PGB_RC)"; cat "$out/out.txt" "$out/err.txt"; } >>"$RESULTS/pgbench-output.txt"
						echo "$round,$script,$mode,$clients,$target,$tps,$lat,$p99,$tx,$failed,$cpu,$wtx,$cpuall,$sys,$csw,${hwm:-NA},$status,\"$err\"" >>"$RAW"
						say "$(printf '[%d/%d] round %d %-11s %-8s c=%-3s %-9s tps=%-9s lat=%-7s p99=%-7s cpu/tx=%-6s rss=%-6s %s' \
							"$runno" "$total" "$round" "$script" "$mode" "$clients" "$target" "$tps" "$lat" "$p99" "$cpu" "${hwm:-NA}" "$status${err:+: $err}")"
						rm -rf "$out"
					done
				done
			done
		done
	done
fi

# ---------------------------------------------------------------- idle connections
IDLECSV="$RESULTS/idle.csv"
if [ "$IDLE" = 1 ]; then
	say "== idle-connection test: $IDLE_COUNTS idle clients per pooler; active client: pgbench -c 1 -T 5 -S"
	gcc -O2 -o "$WORK/idle_clients" "$SCRIPT_DIR/idle_clients.c" $(pkg-config --cflags --libs libpq) >>"$MAINLOG" 2>&1 \
		|| die "compiling idle_clients.c failed (see $MAINLOG)"
	echo "pooler,idle_clients,connected,failed,connect_seconds,rss_before_kb,rss_idle_kb,rss_per_idle_client_bytes,peak_rss_kb,idle_cpu_pct,lat_avg_ms_without,lat_p99_ms_without,lat_avg_ms_with,lat_p99_ms_with,status,error" >"$IDLECSV"
	for n in $IDLE_COUNTS; do
		for target in pgbouncer sluice; do
			status=ok; err=""
			port=$PGB_PORT; [ "$target" = sluice ] && port=$SL_PORT
			if ! start_pooler "$target"; then
				echo "$target,$n,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,NA,start-failed,\"$(tail -3 "$WORK/$target.log" | tr '\n,"' '  ;')\"" >>"$IDLECSV"
				continue
			fi
			ppid=$POOLER_PID
			# active client without idle clients (this also opens the first server connection)
			run_pgbench "$WORK/idle0" "$port" 1 1 5 simple select-only
			read -r _ lat0 p990 _ < <(analyse "$WORK/idle0")
			[ "$PGB_RC" = 0 ] || { status=pgbench-rc-$PGB_RC; err=$(first_error "$WORK/idle0"); }
			sleep 1
			rss0=$(proc_kb "$ppid" VmRSS)
			timeout -k 5 900 "$WORK/idle_clients" "host=127.0.0.1 port=$port user=bench dbname=bench password=$BENCH_PW sslmode=disable gssencmode=disable connect_timeout=60" \
				"$n" 64 600 >"$WORK/idle.out" 2>"$WORK/idle.err" &
			ipid=$!
			bg_add "$ipid" idle_clients
			ok=NA; fl=NA; secs=NA
			for ((i = 0; i < 6200; i++)); do
				grep -q '^ready' "$WORK/idle.out" 2>/dev/null && break
				kill -0 "$ipid" 2>/dev/null || break
				sleep 0.1
			done
			if grep -q '^ready' "$WORK/idle.out"; then
				read -r ok fl secs < <(sed -n 's/^ready ok=\([0-9]*\) failed=\([0-9]*\) seconds=\([0-9.]*\).*/\1 \2 \3/p' "$WORK/idle.out")
			fi
			if [ "$fl" != 0 ]; then
				status=idle-connect-failed
				err=$(head -c 300 "$WORK/idle.err" | tr '\n,"' '  ;')
			fi
			# pooler CPU while it only holds the idle clients, over 3 s
			c0=$(sampler "$ppid" | head -1 | cut -d' ' -f2)
			sleep 3
			c1=$(sampler "$ppid" | head -1 | cut -d' ' -f2)
			idlecpu=NA
			[ -n "$c0" ] && [ -n "$c1" ] && idlecpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", d * 100 / hz / 3 }')
			rss1=$(proc_kb "$ppid" VmRSS)
			run_pgbench "$WORK/idle1" "$port" 1 1 5 simple select-only
			read -r _ lat1 p991 _ < <(analyse "$WORK/idle1")
			if [ "$PGB_RC" != 0 ]; then
				[ "$status" = ok ] && status=pgbench-rc-$PGB_RC
				[ -n "$err" ] || err=$(first_error "$WORK/idle1")
			fi
			hwm=$(proc_kb "$ppid" VmHWM)
			kill -0 "$ppid" 2>/dev/null || { status=proxy-died; err="$(tail -3 "$WORK/$target.log" | tr '\n,"' '  ;')"; }
			stop_pid "$ipid" 30
			stop_pooler
			per=NA
			if [ -n "${rss0:-}" ] && [ -n "${rss1:-}" ] && [ "${ok:-NA}" != NA ] && [ "$ok" -gt 0 ]; then
				per=$(( (rss1 - rss0) * 1024 / ok ))
			fi
			echo "$target,$n,$ok,$fl,$secs,${rss0:-NA},${rss1:-NA},$per,${hwm:-NA},$idlecpu,$lat0,$p990,$lat1,$p991,$status,\"$err\"" >>"$IDLECSV"
			say "$(printf 'idle %-5s %-9s connected=%s failed=%s in %ss  rss %s -> %s kB (%s B/client)  idle CPU %s%%  active latency avg/p99 ms: %s/%s without, %s/%s with  %s' \
				"$n" "$target" "$ok" "$fl" "$secs" "${rss0:-NA}" "${rss1:-NA}" "$per" "$idlecpu" "$lat0" "$p990" "$lat1" "$p991" "$status${err:+: $err}")"
		done
	done
fi

echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/meta.txt"

# ---------------------------------------------------------------- report
python3 "$SCRIPT_DIR/summarize.py" "$RESULTS" >"$RESULTS/results.md" || die "summarize.py failed"
cat "$RESULTS/results.md"
say ""
say "results: $RESULTS/results.md, summary.csv, raw.csv$([ "$IDLE" = 1 ] && echo ", idle.csv"); logs in $RESULTS/logs"
