#!/usr/bin/env bash
# contrib/quickstart.sh - sluice in front of a scratch PostgreSQL, in one go.
#
#   contrib/quickstart.sh        install what is missing, build, start a
#                                PostgreSQL and sluice (with etc/sluice.ini),
#                                run a short pgbench through sluice, show the
#                                pools and how to connect
#   contrib/quickstart.sh stop   stop both and remove the scratch directory
#
# Everything lives in /tmp/sluice-quickstart (SLUICE_QUICKSTART_DIR); its
# "state" file says what runs where. Run as root (or with sudo): PostgreSQL
# then runs as the postgres user.
set -euo pipefail

# shellcheck source=contrib/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dir=${SLUICE_QUICKSTART_DIR:-/tmp/sluice-quickstart}
state=$dir/state
# The role etc/userlist.txt lets in; also admin_users in etc/sluice.ini.
role=postgres
password=postgres
database=postgres

stop() {
	if [ ! -f "$state" ]; then
		log "nothing to stop ($state not found)"
		return 0
	fi
	# shellcheck source=/dev/null
	. "$state"
	if [ -f "$SLUICE_PIDFILE" ]; then
		pid=$(cat "$SLUICE_PIDFILE")
		if grep -qs sluice "/proc/$pid/cmdline"; then
			log "stopping sluice (pid $pid)"
			kill -TERM "$pid"
			for _ in $(seq 50); do
				grep -qs sluice "/proc/$pid/cmdline" || break
				sleep 0.1
			done
		fi
	fi
	if [ -f "$PGDATA/postmaster.pid" ]; then
		log "stopping PostgreSQL ($PGDATA)"
		as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || true
	fi
	rm -rf "$dir"
	log "stopped; $dir removed"
}

build() {
	prepare_build "${SLUICE_BUILD_DIR:-$SLUICE_ROOT/build}"
	log "building (log: $BUILD_DIR/make.log)"
	make -C "$BUILD_DIR" -j"${JOBS:-2}" src/sluice >"$BUILD_DIR/make.log" 2>&1 || {
		tail -n 40 "$BUILD_DIR/make.log"
		die "build failed"
	}
	SLUICE_BIN=$BUILD_DIR/src/sluice
}

start_postgres() {
	PGDATA=$dir/pg/data
	PGPORT=$(free_port)
	mkdir -p "$dir/pg"
	[ "$(id -u)" -ne 0 ] || chown postgres: "$dir/pg"
	log "initdb $PGDATA"
	as_postgres "$PGBIN/initdb" -D "$PGDATA" -U "$role" --auth-local=trust \
		--auth-host=scram-sha-256 -E UTF8 --locale=C -N >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log"; die "initdb failed"; }
	log "starting PostgreSQL on 127.0.0.1:$PGPORT"
	as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$dir/pg/postgresql.log" -w \
		-o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $dir/pg" start >/dev/null ||
		{ tail -n 20 "$dir/pg/postgresql.log"; die "PostgreSQL did not start"; }
	as_postgres "$PGBIN/psql" -q -h "$dir/pg" -p "$PGPORT" -U "$role" -d postgres \
		-c "ALTER ROLE $role PASSWORD '$password'" >/dev/null
}

# A config that includes etc/sluice.ini and changes only what must differ.
write_config() {
	SLUICE_PORT=$(free_port)
	cat >"$dir/sluice.ini" <<EOF
;; written by contrib/quickstart.sh: etc/sluice.ini, then what differs here
%include $SLUICE_ROOT/etc/sluice.ini

[databases]
* = host=127.0.0.1 port=$PGPORT

[sluice]
listen_port = $SLUICE_PORT
unix_socket_dir = $dir
auth_file = $SLUICE_ROOT/etc/userlist.txt
logfile = $dir/sluice.log
pidfile = $SLUICE_PIDFILE
EOF
}

start_sluice() {
	log "starting sluice on 127.0.0.1:$SLUICE_PORT"
	# -q: warnings (etc/sluice.ini's "*" entry replaced) go to the log only.
	(cd "$SLUICE_ROOT" && "$SLUICE_BIN" -d -q "$dir/sluice.ini") ||
		die "sluice did not start: see $dir/sluice.log"
	wait_port "$SLUICE_PORT" 10 ||
		{ tail -n 20 "$dir/sluice.log"; die "sluice does not listen on $SLUICE_PORT"; }
}

save_state() {
	cat >"$state" <<EOF
# contrib/quickstart.sh: what runs where
PGBIN=$PGBIN
PGDATA=$PGDATA
PGPORT=$PGPORT
SLUICE_BIN=$SLUICE_BIN
SLUICE_PORT=$SLUICE_PORT
SLUICE_PIDFILE=$SLUICE_PIDFILE
EOF
}

run_pgbench() {
	export PGPASSWORD=$password
	log "pgbench -i through sluice"
	"$PGBIN/pgbench" -h 127.0.0.1 -p "$SLUICE_PORT" -U "$role" -i -s 1 -q \
		"$database" >"$dir/pgbench-init.log" 2>&1 ||
		{ cat "$dir/pgbench-init.log"; die "pgbench -i failed"; }
	log "pgbench -c 10 -T 5 through sluice"
	"$PGBIN/pgbench" -h 127.0.0.1 -p "$SLUICE_PORT" -U "$role" -c 10 -j 2 -T 5 -n \
		"$database" 2>&1 | tee "$dir/pgbench.log" | grep -E \
		'^(number of|latency average|tps|pgbench)' || die "pgbench failed"
}

show_pools() {
	echo
	echo "SHOW POOLS (admin console):"
	if ! PGPASSWORD=$password psql -h 127.0.0.1 -p "$SLUICE_PORT" -U "$role" \
		-d sluice -c 'SHOW POOLS' 2>"$dir/show-pools.err"; then
		echo "(the admin console did not answer: $(head -n1 "$dir/show-pools.err"))"
		echo "pool lines of $dir/sluice.log:"
		grep -i pool "$dir/sluice.log" | tail -n 10 || true
	fi
}

on_failure() {
	if [ "$1" -ne 0 ]; then
		log "failed; cleaning up"
		stop
	fi
	exit "$1"
}

start() {
	if [ -f "$state" ]; then
		die "already running (see $state); stop it first: $0 stop"
	fi
	install_deps
	PGBIN=$(pg_bindir) || die "PostgreSQL server programs not found"
	build
	rm -rf "$dir"
	mkdir -p "$dir"
	chmod 755 "$dir"
	SLUICE_PORT=""
	SLUICE_PIDFILE=$dir/sluice.pid
	# Whatever fails from here on, leave nothing running.
	trap 'on_failure $?' EXIT
	start_postgres
	save_state
	write_config
	save_state
	start_sluice
	run_pgbench
	trap - EXIT
	show_pools
	cat <<EOF

sluice listens on 127.0.0.1:$SLUICE_PORT, in front of PostgreSQL on 127.0.0.1:$PGPORT.
Connect through it:
  PGPASSWORD=$password psql -h 127.0.0.1 -p $SLUICE_PORT -U $role $database
Admin console:
  PGPASSWORD=$password psql -h 127.0.0.1 -p $SLUICE_PORT -U $role sluice -c 'SHOW POOLS'
Logs: $dir/sluice.log, $dir/pg/postgresql.log
Stop both and remove $dir:
  $0 stop
EOF
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
