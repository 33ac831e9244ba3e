# shellcheck shell=bash
# contrib/stress_lib.sh - shared by contrib/flood.sh and contrib/soak.sh: a
# scratch PostgreSQL, one sluice in front of it, its RSS, and cleanup of
# everything started. Source it after contrib/lib.sh.
#
# Functions:
#   stress_setup NAME            makes $WORK (under $SLUICE_TEST_TMPDIR when
#                                contrib/test.sh runs us, so its trap finds
#                                leftovers) and arms the cleanup trap
#   stress_bg PID                stops PID at cleanup if still running
#   stress_pg_start              initdb and start PostgreSQL in $WORK/pg on
#                                $PGPORT; role and database "stress", with
#                                pgbench tables (scale 1)
#   stress_sluice_start BIN NOFILE SETTINGS
#                                writes $WORK/sluice/sluice.ini ([sluice]
#                                settings appended to the common ones) and
#                                starts BIN with an open-file limit of NOFILE;
#                                sets SLUICE_PID and PORT
#   stress_sluice_alive          true while sluice runs
#   stress_sluice_stop SECONDS   SIGTERM, waits; sets SLUICE_EXIT to the exit
#                                status ("timeout" if it had to be killed)
#   rss_kib PID                  VmRSS of PID in KiB (0 if gone)
#   rss_sampler FILE SECONDS MAX_S
#                                appends "epoch kib" to FILE every SECONDS
#                                while sluice runs, for at most MAX_S; run it
#                                in the background
#   psql_sluice SQL              runs SQL through sluice as "stress"
#
# Environment: KEEP=1 keeps $WORK even when everything passed.

STRESS_USER=stress
STRESS_PASSWORD=stress-secret
STRESS_DB=stress
STRESS_BG=()
STRESS_FAILED=0

stress_bg() {
	STRESS_BG+=("$1")
}

stress_cleanup() {
	local rc=$? pid

	trap - EXIT
	set +e
	for pid in "${STRESS_BG[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	if [ -n "${SLUICE_PID:-}" ] && kill -0 "$SLUICE_PID" 2>/dev/null; then
		kill -KILL "$SLUICE_PID" 2>/dev/null
	fi
	sleep 0.2
	for pid in "${STRESS_BG[@]}"; do
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	if [ -f "$WORK/pg/data/postmaster.pid" ]; then
		as_postgres "$(pg_bindir)/pg_ctl" -D "$WORK/pg/data" -m immediate \
			-w -t 30 stop >/dev/null 2>&1
	fi
	[ $rc -eq 0 ] && [ "$STRESS_FAILED" -eq 0 ] || rc=1
	if [ $rc -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
		rm -rf "$WORK"
	else
		log "files kept in $WORK"
	fi
	exit $rc
}

stress_setup() {
	local base=${SLUICE_TEST_TMPDIR:-/tmp}

	WORK=$(mktemp -d "$base/$1.XXXXXX") || die "mktemp failed"
	chmod 755 "$WORK"
	mkdir -p "$WORK/sluice"
	trap stress_cleanup EXIT
	trap 'exit 130' INT TERM
}

stress_pg_start() {
	local bin attempt

	bin=$(pg_bindir) || die "PostgreSQL server programs not found"
	mkdir -p "$WORK/pg"
	[ "$(id -u)" -ne 0 ] || chown postgres: "$WORK/pg"
	as_postgres "$bin/initdb" -D "$WORK/pg/data" -U postgres --auth=trust \
		--no-sync -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 ||
		die "initdb failed (log: $WORK/initdb.log)"
	cat >>"$WORK/pg/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/pg'
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
EOF
	# A free port may be taken before PostgreSQL binds it: try again.
	for attempt in 1 2 3 4; do
		PGPORT=$(free_port)
		as_postgres "$bin/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/postgresql.log" \
			-o "-p $PGPORT" -w -t 60 start >/dev/null && break
		[ "$attempt" -lt 4 ] ||
			die "PostgreSQL did not start (log: $WORK/pg/postgresql.log)"
	done
	as_postgres "$bin/psql" -X -q -h "$WORK/pg" -p "$PGPORT" -U postgres \
		-d postgres -v ON_ERROR_STOP=1 \
		-c "CREATE ROLE $STRESS_USER LOGIN PASSWORD '$STRESS_PASSWORD'" \
		-c "CREATE DATABASE $STRESS_DB OWNER $STRESS_USER" >/dev/null ||
		die "cannot create the stress role and database"
	PGPASSWORD=$STRESS_PASSWORD "$bin/pgbench" -i -q -s 1 -h 127.0.0.1 \
		-p "$PGPORT" -U "$STRESS_USER" "$STRESS_DB" >"$WORK/pgbench-init.log" 2>&1 ||
		die "pgbench -i failed (log: $WORK/pgbench-init.log)"
}

stress_sluice_start() {
	local bin=$1 nofile=$2 settings=$3 attempt

	# A free port may be taken before sluice binds it: try again.
	for attempt in 1 2 3 4; do
		sluice_start_once "$bin" "$nofile" "$settings" && return 0
		grep -q "already in use" "$WORK/sluice/sluice.out" ||
			die "sluice did not start (see $WORK/sluice)"
	done
	die "sluice found no free port (see $WORK/sluice)"
}

sluice_start_once() {
	local bin=$1 nofile=$2 settings=$3 dir=$WORK/sluice i

	PORT=$(free_port)
	printf '"%s" "%s"\n' "$STRESS_USER" "$STRESS_PASSWORD" >"$dir/userlist.txt"
	cat >"$dir/sluice.ini" <<EOF
[databases]
$STRESS_DB = host=127.0.0.1 port=$PGPORT dbname=$STRESS_DB

[sluice]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir = $dir
auth_type = md5
auth_file = $dir/userlist.txt
logfile = $dir/sluice.log
pidfile = $dir/sluice.pid
pool_mode = transaction
$settings
EOF
	prlimit --nofile="$nofile:$nofile" -- "$bin" "$dir/sluice.ini" \
		>"$dir/sluice.out" 2>&1 &
	SLUICE_PID=$!
	for ((i = 0; i < 200; i++)); do
		kill -0 "$SLUICE_PID" 2>/dev/null || break
		port_open "$PORT" && return 0
		sleep 0.1
	done
	kill -KILL "$SLUICE_PID" 2>/dev/null
	wait "$SLUICE_PID" 2>/dev/null
	SLUICE_PID=
	return 1
}

stress_sluice_alive() {
	kill -0 "$SLUICE_PID" 2>/dev/null
}

stress_sluice_stop() {
	local secs=$1 i

	kill -TERM "$SLUICE_PID" 2>/dev/null
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$SLUICE_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$SLUICE_PID" 2>/dev/null; then
		kill -KILL "$SLUICE_PID"
		wait "$SLUICE_PID" 2>/dev/null
		SLUICE_EXIT=timeout
		return
	fi
	# shellcheck disable=SC2034 # read by the scripts that source this
	{ SLUICE_EXIT=0; wait "$SLUICE_PID" || SLUICE_EXIT=$?; }
	SLUICE_PID=
}

rss_kib() {
	awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' \
		"/proc/$1/status" 2>/dev/null || echo 0
}

rss_sampler() {
	local file=$1 every=$2 max_s=$3 end

	end=$((SECONDS + max_s))
	while [ $SECONDS -lt $end ] && kill -0 "$SLUICE_PID" 2>/dev/null; do
		echo "$(date +%s.%N) $(rss_kib "$SLUICE_PID")" >>"$file"
		sleep "$every"
	done
}

psql_sluice() {
	PGPASSWORD=$STRESS_PASSWORD PGCONNECT_TIMEOUT=10 "$(pg_bindir)/psql" -X -q \
		-At -h 127.0.0.1 -p "$PORT" -U "$STRESS_USER" -d "$STRESS_DB" -c "$1"
}
