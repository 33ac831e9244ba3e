#!/usr/bin/env bash
# test/drivers/run.sh - real client drivers against sluice: asyncpg and
# psycopg 3 (Python), node-postgres and postgres.js (Node). Each uses
# protocol-level named prepared statements the way it does by default,
# from 12 connections at once, and checks every value it gets back.
# test/integration/test_prepared.c runs it against a sluice in transaction
# mode with a pool of 2; it works against any PostgreSQL as well.
#
# Usage: run.sh [--host H] [--port P] [--user U] [--password W]
#               [--dbname D] [DRIVER...]
# DRIVER: asyncpg, psycopg, node-pg, postgres-js (default: all four).
# Unset options come from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
# (defaults 127.0.0.1, 6432, postgres, none, the user).
#
# Installs what is missing, non-interactively: python3-asyncpg and
# python3-psycopg (for /usr/bin/python3), nodejs and npm with apt-get (as
# root or through sudo -n); pg and postgres with npm into
# test/drivers/node_modules (versions in package.json).
#
# Exit status: 0 every driver passed; 1 a driver failed (its lines say
# which query and why); 77 none failed but some could not be installed (no
# network, no root): the SKIP lines say which; 2 bad usage.
#
# Environment: PYTHON (default /usr/bin/python3, the interpreter Debian's
# packages are for), DRIVER_TIMEOUT (seconds per driver, default 180).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-/usr/bin/python3}
driver_timeout=${DRIVER_TIMEOUT:-180}
install_log=$(mktemp /tmp/sluice-drivers.XXXXXX)
trap 'rm -f "$install_log"' EXIT
failed=()
skipped=()
node_failure=""   # why Node or its packages could not be installed

usage() {
	sed -n 's/^# \{0,1\}//; 9,13p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-6432}
export PGUSER=${PGUSER:-postgres} PGPASSWORD=${PGPASSWORD:-}
drivers=()
while [ $# -gt 0 ]; do
	case $1 in
	--host) PGHOST=${2:?}; shift ;;
	--port) PGPORT=${2:?}; shift ;;
	--user) PGUSER=${2:?}; shift ;;
	--password) PGPASSWORD=${2?}; shift ;;
	--dbname) PGDATABASE=${2:?}; shift ;;
	asyncpg | psycopg | node-pg | postgres-js) drivers+=("$1") ;;
	*) usage ;;
	esac
	shift
done
export PGDATABASE=${PGDATABASE:-$PGUSER}
# No __pycache__ in the source tree.
export PYTHONDONTWRITEBYTECODE=1
[ ${#drivers[@]} -gt 0 ] || drivers=(asyncpg psycopg node-pg postgres-js)

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		echo "run.sh: not root and no passwordless sudo for: $*" >>"$install_log"
		return 1
	fi
}

# apt-get install; an apt-get update first only if the install fails.
apt_install() {
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q
	           -o Dpkg::Use-Pty=0)

	command -v apt-get >/dev/null 2>&1 || {
		echo "run.sh: no apt-get to install $*" >>"$install_log"
		return 1
	}
	echo "run.sh: installing $*" >&2
	: >"$install_log"
	as_root "${apt[@]}" install --no-install-recommends "$@" \
		>>"$install_log" 2>&1 && return 0
	as_root "${apt[@]}" update >>"$install_log" 2>&1 &&
		as_root "${apt[@]}" install --no-install-recommends "$@" \
			>>"$install_log" 2>&1
}

# Prints why the last install failed (the last lines of its log).
install_failure() {
	grep -v '^[[:space:]]*$' "$install_log" | tail -n 2 | tr '\n' ' '
}

python_module() {
	"$python" -c "import $1" >/dev/null 2>&1 ||
		{ apt_install "$2" && "$python" -c "import $1" >/dev/null 2>&1; }
}

# Node and the npm packages; tried once, for both Node drivers.
node_modules_ready() {
	[ -f "$here/node_modules/pg/package.json" ] &&
		[ -f "$here/node_modules/postgres/package.json" ] && return 0
	[ -z "$node_failure" ] || return 1
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		apt_install nodejs npm || {
			node_failure=$(install_failure)
			return 1
		}
	fi
	echo "run.sh: npm install (pg, postgres) in $here" >&2
	: >"$install_log"
	(cd "$here" && npm install --no-package-lock --no-audit --no-fund \
		--loglevel=error) >>"$install_log" 2>&1 && return 0
	node_failure=$(install_failure)
	return 1
}

# Runs one driver's test: name, then the command.
run_driver() {
	local name=$1
	shift

	timeout "$driver_timeout" "$@"
	case $? in
	0) ;;
	124) echo "FAIL $name: still running after ${driver_timeout}s"
	     failed+=("$name") ;;
	*) failed+=("$name") ;;
	esac
}

for d in "${drivers[@]}"; do
	case $d in
	asyncpg | psycopg)
		if python_module "$d" "python3-$d"; then
			run_driver "$d" "$python" "$here/${d}_test.py"
		else
			skipped+=("$d: cannot install python3-$d for $python: $(install_failure)")
		fi
		;;
	node-pg | postgres-js)
		if node_modules_ready; then
			run_driver "$d" node "$here/${d//-/_}_test.js"
		else
			skipped+=("$d: cannot install node and the npm packages: $node_failure")
		fi
		;;
	esac
done

for s in "${skipped[@]}"; do
	echo "SKIP $s"
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "drivers failed: ${failed[*]}"
	exit 1
fi
[ ${#skipped[@]} -eq 0 ] || exit 77
exit 0
