# shellcheck shell=bash
# contrib/lib.sh - shell helpers shared by contrib/test.sh and
# contrib/quickstart.sh. Source it; it defines functions and SLUICE_ROOT.
#
# Functions:
#   log MSG...                 a line on stderr, prefixed with the script name
#   die MSG...                 log and exit 1
#   install_deps               apt-get installs what the build and tests need,
#                              only if something is missing
#   pg_bindir                  prints the directory of initdb, pg_ctl, pgbench
#   as_postgres CMD...         runs CMD as the postgres user when we are root
#   free_port                  prints a TCP port free on 127.0.0.1
#   wait_port PORT SECONDS     waits until 127.0.0.1:PORT accepts connections
#   prepare_build DIR ARGS...  configures a build of the source tree in DIR
#                              (ARGS go to configure); sets BUILD_DIR to the
#                              directory to run make in

SLUICE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() {
	echo "$(basename "$0"): $*" >&2
}

die() {
	log "$@"
	exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

# The Debian packages of the build, the tests and the scripts (clang and
# its runtime libraries for the fuzz targets, contrib/fuzz.sh).
SLUICE_PACKAGES=(
	build-essential autoconf automake libtool pkg-config
	libuv1-dev libssl-dev libinih-dev libpq-dev libcriterion-dev
	python3-asyncpg python3-psycopg
	clang-14 libclang-rt-14-dev
)

pg_bindir() {
	local dir best="" best_version=0 version

	for dir in /usr/lib/postgresql/*/bin; do
		[ -x "$dir/initdb" ] || continue
		version=${dir#/usr/lib/postgresql/}
		version=${version%%/*}
		if [ "${version%%.*}" -gt "$best_version" ] 2>/dev/null; then
			best_version=${version%%.*}
			best=$dir
		fi
	done
	if [ -z "$best" ] && command -v initdb >/dev/null 2>&1; then
		best=$(dirname "$(command -v initdb)")
	fi
	if [ -z "$best" ] && command -v pg_config >/dev/null 2>&1; then
		best=$(pg_config --bindir)
	fi
	[ -n "$best" ] && [ -x "$best/initdb" ] || return 1
	echo "$best"
}

install_deps() {
	local missing=() p

	command -v dpkg >/dev/null 2>&1 ||
		die "not a Debian system: install ${SLUICE_PACKAGES[*]} and PostgreSQL by hand"
	for p in "${SLUICE_PACKAGES[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
	# The server (initdb, pg_ctl) and pgbench come with postgresql-NN.
	if ! pg_bindir >/dev/null || [ ! -x "$(pg_bindir)/pgbench" ]; then
		missing+=(postgresql)
		# Only our own scratch clusters are needed, not a system one.
		if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
			as_root mkdir -p /etc/postgresql-common
			echo "create_main_cluster = false" |
				as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
		fi
	fi
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}"
}

as_postgres() {
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || die "no 'postgres' user to run PostgreSQL as"
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
	local port tries=0

	while [ $tries -lt 100 ]; do
		port=$((20000 + RANDOM % 30000))
		if ! port_open "$port"; then
			echo "$port"
			return 0
		fi
		tries=$((tries + 1))
	done
	die "no free port found"
}

wait_port() {
	local port=$1 seconds=$2 i=0

	while [ $i -lt $((seconds * 10)) ]; do
		port_open "$port" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# Copies the source tree (what git tracks or would track) into $1.
copy_sources() {
	local dest=$1

	rm -rf "$dest"
	mkdir -p "$dest"
	if git -C "$SLUICE_ROOT" rev-parse --git-dir >/dev/null 2>&1; then
		git -C "$SLUICE_ROOT" ls-files -z -co --exclude-standard |
			tar -C "$SLUICE_ROOT" --null -T - -cf - | tar -C "$dest" -xf -
	else
		tar -C "$SLUICE_ROOT" --exclude='./build*' --exclude=./.git -cf - . |
			tar -C "$dest" -xf -
	fi
}

prepare_build() {
	local dir=$1 srcdir=$SLUICE_ROOT
	shift

	if [ ! -x "$SLUICE_ROOT/configure" ] ||
	   [ ! -f "$SLUICE_ROOT/build-aux/install-sh" ] ||
	   [ "$SLUICE_ROOT/configure.ac" -nt "$SLUICE_ROOT/configure" ] ||
	   [ "$SLUICE_ROOT/Makefile.am" -nt "$SLUICE_ROOT/Makefile.in" ]; then
		log "autoreconf -fi"
		(cd "$SLUICE_ROOT" && autoreconf -fi) || die "autoreconf failed"
	fi
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	# A tree configured in place cannot also be built elsewhere (automake
	# refuses): build a copy of it instead of touching the developer's build.
	if [ -f "$SLUICE_ROOT/config.status" ]; then
		log "$SLUICE_ROOT is configured in place; building a copy in $dir/source"
		copy_sources "$dir/source"
		(cd "$dir/source" && autoreconf -fi) || die "autoreconf failed"
		srcdir=$dir/source
		dir=$dir/source
	fi
	# shellcheck disable=SC2034 # for the scripts that source this
	BUILD_DIR=$dir
	# Configured before with the same flags: make reruns what it must.
	if [ -x "$dir/config.status" ] &&
	   [ "$("$dir/config.status" --config | tr -d "'")" = "$*" ]; then
		return 0
	fi
	log "configure $* (in $dir)"
	(cd "$dir" && "$srcdir/configure" -q "$@") || die "configure failed in $dir"
}
