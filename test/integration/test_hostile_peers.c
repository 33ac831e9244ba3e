/*
 * test_hostile_peers.c - peers that vanish, flood or lie, against the
 * connection layer: clients and servers that go away while sluice writes
 * to them (SIGPIPE), console clients that pipeline without reading
 * (back-pressure), declared lengths with no bytes behind them, clients past
 * max_client_conn, per-database counters of pools that are gone, and
 * console commands queued behind a PAUSE that waits.
 *
 * Memory is read from /proc/<pid>/status of the sluice under test.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

TestSuite(hostile, .fini = h_teardown, .timeout = 120);

static const char *const console_params[] = { "database", "pgbouncer", NULL };

/* A field of /proc/<sluice>/status in kB (VmRSS, VmData). */
static long sluice_kb(const char *field)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)h_sluice_pid());
	f = fopen(path, "r");
	cr_assert(f, "cannot read %s", path);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, flen) == 0 && line[flen] == ':')
			kb = atol(line + flen + 1);
	fclose(f);
	cr_assert(kb >= 0, "no %s in %s", field, path);
	return kb;
}

/* Appends a Query message for sql to buf at *len. */
static void put_query(uint8_t *buf, size_t *len, const char *sql)
{
	size_t n = strlen(sql) + 1;

	buf[*len] = 'Q';
	h_put_be32(buf + *len + 1, (uint32_t)(4 + n));
	memcpy(buf + *len + 5, sql, n);
	*len += 5 + n;
}

/*
 * Starts sluice for a memory measurement: under AddressSanitizer, freed
 * blocks wait in a quarantine of 256 MB that RSS would count as growth.
 */
static void start_measured(void)
{
	const char *asan = getenv("ASAN_OPTIONS");
	char *saved = asan ? strdup(asan) : NULL;
	char opts[1024];

	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=1",
	         asan ? asan : "", asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	h_sluice_start(NULL, NULL);
	if (saved)
		setenv("ASAN_OPTIONS", saved, 1);
	else
		unsetenv("ASAN_OPTIONS");
	free(saved);
}

/* A new client gets in and is served: sluice lives and works. */
static void assert_serving(void)
{
	PGconn *conn;

	h_assert_alive();
	conn = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(conn, "SELECT 41 + 1"), 42);
	PQfinish(conn);
}

/* --- SIGPIPE: peers that are gone when sluice writes ------------------- */

Test(hostile, console_client_gone_before_its_answers)
{
	static const char *const pairs[] = { "SHOW STATS;", "SHOW FOO;" };

	h_require_sluice();
	h_sluice_start("stats_users = alice\n", NULL);
	/* A monitoring scrape that times out: two queries, then close. */
	for (int i = 0; i < 200 && h_sluice_alive(); i++) {
		int fd = h_raw_login(i % 4 < 2 ? H_ADMIN : H_ALICE, console_params);
		uint8_t buf[64];
		size_t len = 0;

		put_query(buf, &len, pairs[i % 2]);
		put_query(buf, &len, pairs[i % 2]);
		cr_assert(h_raw_send(fd, buf, len));
		close(fd);
	}
	assert_serving();
	h_finish();
}

/* Closes fd with a reset (SO_LINGER 0), as a crashed client does. */
static void reset_close(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* Reads what the socket holds now, without waiting for more. */
static void drain(int fd)
{
	char buf[65536];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

Test(hostile, client_gone_during_a_large_result)
{
	h_require_sluice();
	h_sluice_start(NULL, NULL);
	for (int i = 0; i < 30 && h_sluice_alive(); i++) {
		int fd = h_raw_login(H_ALICE, NULL);
		uint8_t buf[256];
		size_t len = 0;
		char type;

		put_query(buf, &len, "SELECT repeat('x', 1000) "
		          "FROM generate_series(1, 200000)");
		cr_assert(h_raw_send(fd, buf, len));
		/* Take the start of the result, then go without reading on:
		 * with a reset, or with a plain close of a drained socket, so
		 * that sluice's next writes meet a socket that is gone. */
		cr_assert_eq(h_raw_read_msg(fd, 10000, &type, buf, sizeof(buf), &len), 1);
		if (i % 2) {
			reset_close(fd);
		} else {
			drain(fd);
			close(fd);
		}
		h_sleep_ms(100);
	}
	assert_serving();
	h_pg_wait_clean(10000);
	h_finish();
}

Test(hostile, server_gone_while_sluice_writes_to_it)
{
	static char chunk[65536];
	PGconn *conn;
	long pid;
	bool failed = false;

	h_require_sluice();
	h_pg_exec("DROP TABLE IF EXISTS hostile_sink");
	h_pg_exec("CREATE TABLE hostile_sink (t text)");
	h_pg_exec("GRANT ALL ON hostile_sink TO alice");
	h_sluice_start(NULL, NULL);
	conn = h_connect(H_ALICE, NULL);
	h_exec(conn, "BEGIN");
	pid = h_query_int(conn, "SELECT pg_backend_pid()");
	PQclear(PQexec(conn, "COPY hostile_sink FROM STDIN"));
	memset(chunk, 'y', sizeof(chunk));
	for (size_t i = 1023; i < sizeof(chunk); i += 1024)
		chunk[i] = '\n';
	/* Stream rows; the server is terminated while they still flow. */
	for (int i = 0; i < 4000 && !failed; i++) {
		if (i == 200)
			h_pg_exec("SELECT pg_terminate_backend(%ld)", pid);
		failed = PQputCopyData(conn, chunk, sizeof(chunk)) != 1;
	}
	if (!failed) {
		PGresult *res;

		PQputCopyEnd(conn, NULL);
		res = h_result_within(conn, 10000);
		cr_assert(res, "no answer after the server was terminated");
		cr_assert_neq(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
	}
	PQfinish(conn);
	assert_serving();
	h_pg_exec("DROP TABLE hostile_sink");
	h_finish();
}

/*
 * A server terminated while its result waits for a client that does not
 * read: sluice is not reading that server (back-pressure), so it learns
 * of the close only when it writes the client's next queries to it.
 */
Test(hostile, server_gone_while_its_result_is_held)
{
	uint8_t buf[256];
	size_t len = 0;
	long pid;
	char type;
	int fd;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	fd = h_raw_login(H_ALICE, NULL);
	put_query(buf, &len, "SELECT repeat('z', 1000) "
	          "FROM generate_series(1, 200000) AS held_result");
	cr_assert(h_raw_send(fd, buf, len));
	cr_assert_eq(h_raw_read_msg(fd, 10000, &type, buf, sizeof(buf), &len), 1);
	h_sleep_ms(300);
	pid = h_pg_int("SELECT pid FROM pg_stat_activity "
	               "WHERE query LIKE '%%AS held_result'");
	h_pg_exec("SELECT pg_terminate_backend(%ld)", pid);
	h_sleep_ms(300);
	for (int i = 0; i < 3; i++) {
		len = 0;
		put_query(buf, &len, "SELECT 1");
		h_raw_send(fd, buf, len);
		h_sleep_ms(100);
	}
	h_assert_alive();
	close(fd);
	assert_serving();
	h_finish();
}

/* --- back-pressure on answers sluice writes itself ---------------------- */

/*
 * Sends len bytes of buf without blocking for good: true if all went out,
 * false if the peer stopped taking them for stall_ms (it stopped reading).
 */
static bool send_until_stalled(int fd, const uint8_t *buf, size_t len,
                               int stall_ms)
{
	int flags = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	while (len > 0) {
		struct pollfd p = { fd, POLLOUT, 0 };
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		cr_assert(n < 0 && (errno == EAGAIN || errno == EINTR),
		          "send: %s", strerror(errno));
		if (poll(&p, 1, stall_ms) == 0)
			break;
	}
	fcntl(fd, F_SETFL, flags);
	return len == 0;
}

Test(hostile, console_pipeline_without_reading_is_bounded, .timeout = 180)
{
	enum { QUERIES = 60000 };
	size_t cap = QUERIES * 20, len = 0;
	uint8_t *buf = malloc(cap);
	long rss_before, rss_after;
	int fd;

	h_require_sluice();
	start_measured();
	fd = h_raw_login(H_ADMIN, console_params);
	rss_before = sluice_kb("VmRSS");
	for (int i = 0; i < QUERIES; i++)
		put_query(buf, &len, i % 2 ? "SHOW VERSION;" : "SHOW CONFIG;");
	send_until_stalled(fd, buf, len, 3000);
	/* What the kernel took is still being answered: watch for a while. */
	rss_after = rss_before;
	for (int i = 0; i < 40; i++) {
		long rss = sluice_kb("VmRSS");

		if (rss > rss_after)
			rss_after = rss;
		h_sleep_ms(100);
	}
	cr_expect_lt(rss_after - rss_before, 100 * 1024,
	             "RSS grew from %ld to %ld kB for a console that does not read",
	             rss_before, rss_after);
	/* Everyone else is served meanwhile. */
	assert_serving();
	close(fd);
	free(buf);
	assert_serving();
	h_finish();
}

/*
 * Close and Sync with no server are answered by sluice itself (prepared
 * statement support): a client that sends them without reading must not
 * make sluice hold the answers either.
 */
Test(hostile, local_answers_without_reading_are_bounded, .timeout = 180)
{
	enum { PAIRS = 80000, ROUNDS = 150 };
	static const uint8_t pair[13] = {
		'C', 0, 0, 0, 7, 'S', 'x', 0,    /* Close statement "x" */
		'S', 0, 0, 0, 4,                 /* Sync */
	};
	uint8_t *block = malloc(sizeof(pair) * PAIRS);
	long rss_before, rss_after;
	int fd;

	h_require_sluice();
	start_measured();
	for (int i = 0; i < PAIRS; i++)
		memcpy(block + i * sizeof(pair), pair, sizeof(pair));
	fd = h_raw_login(H_ALICE, NULL);
	rss_before = sluice_kb("VmRSS");
	/* About 150 MB of requests, 125 MB of answers never read. */
	for (int i = 0; i < ROUNDS; i++)
		if (!send_until_stalled(fd, block, sizeof(pair) * PAIRS, 2000))
			break;
	h_sleep_ms(1000);
	rss_after = sluice_kb("VmRSS");
	cr_expect_lt(rss_after - rss_before, 100 * 1024,
	             "RSS grew from %ld to %ld kB for a client that does not read",
	             rss_before, rss_after);
	assert_serving();
	close(fd);
	free(block);
	assert_serving();
	h_finish();
}

/* --- a declared length is not an allocation ---------------------------- */

Test(hostile, declared_length_without_bytes_costs_no_memory)
{
	int fds[4];
	long data_before, data_after;

	h_require_sluice();
	start_measured();
	data_before = sluice_kb("VmData");
	for (int i = 0; i < 4; i++) {
		/* A named Parse declared as 1 GB, of which 11 bytes come. */
		uint8_t msg[12] = { 'P' };

		fds[i] = h_raw_login(H_ALICE, NULL);
		h_put_be32(msg + 1, 1u << 30);
		memcpy(msg + 5, "s1\0SELE", 7);
		cr_assert(h_raw_send(fds[i], msg, sizeof(msg)));
	}
	/* More bytes trickle in after the header was seen. */
	h_sleep_ms(100);
	for (int i = 0; i < 4; i++)
		cr_assert(h_raw_send(fds[i], "CT 1", 4));
	h_sleep_ms(400);
	data_after = sluice_kb("VmData");
	cr_expect_lt(data_after - data_before, 100 * 1024,
	             "VmData grew from %ld to %ld kB for 4 x 16 bytes received",
	             data_before, data_after);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	assert_serving();
	h_finish();
}

/* --- out of memory while queuing output ----------------------------------- */

/* The fault-injection shim, built beside this test binary. */
static void shim_path(char *buf, size_t len)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	cr_assert(n > 0);
	self[n] = '\0';
	slash = strrchr(self, '/');
	*slash = '\0';
	snprintf(buf, len, "%s/failrealloc.so", self);
	cr_assert(access(buf, R_OK) == 0, "%s missing: make check builds it", buf);
}

/* The value of list name in SHOW LISTS. */
static long show_list(PGconn *console, const char *name)
{
	PGresult *res = PQexec(console, "SHOW LISTS");
	long v = -1;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), name) == 0)
			v = atol(PQgetvalue(res, i, 1));
	PQclear(res);
	return v;
}

Test(hostile, out_of_memory_while_queuing_closes_through_the_owner)
{
	const char *asan = getenv("ASAN_OPTIONS");
	char shim[4200], asan_opts[1024];
	uint8_t buf[256];
	size_t len = 0;
	PGconn *console;
	int fd;

	h_require_sluice();
	shim_path(shim, sizeof(shim));
	/* Growing a client's output to 64 KiB fails: the result below. */
	snprintf(asan_opts, sizeof(asan_opts), "%s%sverify_asan_link_order=0",
	         asan ? asan : "", asan ? ":" : "");
	setenv("ASAN_OPTIONS", asan_opts, 1);
	setenv("LD_PRELOAD", shim, 1);
	setenv("SLUICE_FAILREALLOC_SIZE", "65536", 1);
	h_sluice_start(NULL, NULL);
	unsetenv("LD_PRELOAD");
	unsetenv("SLUICE_FAILREALLOC_SIZE");
	fd = h_raw_login(H_ALICE, NULL);
	put_query(buf, &len, "SELECT repeat('x', 1000) FROM generate_series(1, 20000)");
	cr_assert(h_raw_send(fd, buf, len));
	/* Unread, the result stops its server; resumed, a whole read chunk
	 * (64 KiB) of it is queued for the client in one pass. */
	h_sleep_ms(1000);
	cr_assert(h_raw_closed(fd, 10000), "the client was not closed");
	close(fd);
	cr_expect(h_log_wait("closing because: write failed", 5000),
	          "no log line for the client closed on a failed write");
	/* Closed through its owner: off the lists, and the server with it. */
	console = h_connect(H_ADMIN, "dbname=pgbouncer");
	cr_expect_eq(show_list(console, "used_clients"), 1);
	PQfinish(console);
	assert_serving();
	h_finish();
}

/* --- max_client_conn at accept ------------------------------------------ */

#define MAX_CLIENT_MSG "no more connections allowed (max_client_conn)"

Test(hostile, clients_past_max_client_conn_are_refused_at_once)
{
	PGconn *in[3];
	int fds[20];

	h_require_sluice();
	h_sluice_start("max_client_conn = 3\n", NULL);
	for (int i = 0; i < 3; i++)
		in[i] = h_connect(H_ALICE, NULL);
	/* They send nothing: no startup packet, no login timeout needed. */
	for (int i = 0; i < 20; i++)
		fds[i] = h_raw_connect();
	for (int i = 0; i < 20; i++) {
		struct h_error err;

		cr_assert(h_raw_expect_error(fds[i], 2000, &err),
		          "connection %d past max_client_conn got no error", i);
		cr_expect_str_eq(err.sqlstate, "08P01");
		cr_expect_str_eq(err.message, MAX_CLIENT_MSG);
		cr_assert(h_raw_closed(fds[i], 2000), "connection %d held open", i);
		close(fds[i]);
	}
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(h_query_int(in[i], "SELECT %d", i), i);
		PQfinish(in[i]);
	}
	h_finish();
}

/* --- counters of databases that are gone ---------------------------------- */

/* The row of SHOW STATS for db, -1 if none; *xacts gets its
 * total_xact_count. */
static int stats_row(PGconn *console, const char *db, long *xacts)
{
	PGresult *res = PQexec(console, "SHOW STATS");
	int found = -1;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	for (int i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, 0), db) == 0) {
			found = i;
			*xacts = atol(PQgetvalue(res, i, PQfnumber(res, "total_xact_count")));
		}
	}
	PQclear(res);
	return found;
}

/* SHOW TOTALS' total_xact_count. */
static long total_xacts(PGconn *console)
{
	PGresult *res = PQexec(console, "SHOW TOTALS");
	long v = -1;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), "total_xact_count") == 0)
			v = atol(PQgetvalue(res, i, 1));
	PQclear(res);
	return v;
}

Test(hostile, stats_of_a_removed_autodb_pool_are_freed)
{
	PGconn *console, *conn;
	long xacts = 0, totals_before, totals_after;

	h_require_sluice();
	if (h_pg_int("SELECT count(*) FROM pg_database WHERE datname = 'hostile_auto'") == 0)
		h_pg_exec("CREATE DATABASE hostile_auto");
	h_sluice_start("autodb_idle_timeout = 1\n",
	               "* = host=127.0.0.1 port=%PGPORT%\n");
	console = h_connect(H_ADMIN, "dbname=pgbouncer");
	conn = h_connect(H_ALICE, "dbname=hostile_auto");
	cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
	cr_assert_eq(h_query_int(conn, "SELECT 2"), 2);
	PQfinish(conn);
	cr_assert(stats_row(console, "hostile_auto", &xacts) >= 0);
	cr_assert_geq(xacts, 2);
	totals_before = total_xacts(console);
	cr_assert(h_log_wait("autodb_idle_timeout reached, removed", 10000));
	/* The row goes with its pool; what it counted stays in the totals. */
	cr_expect_eq(stats_row(console, "hostile_auto", &xacts), -1,
	             "SHOW STATS still lists the removed autodb database");
	totals_after = total_xacts(console);
	cr_expect_geq(totals_after, totals_before, "totals went from %ld to %ld",
	              totals_before, totals_after);
	PQfinish(console);
	h_finish();
}

/* --- console commands behind one that waits ------------------------------ */

/* The next message's type within timeout_ms, 0 on EOF, -1 on timeout;
 * body into buf. */
static int next_type(int fd, int timeout_ms, uint8_t *buf, size_t cap, size_t *len)
{
	char type;
	int rc = h_raw_read_msg(fd, timeout_ms, &type, buf, cap, len);

	return rc == 1 ? type : rc;
}

Test(hostile, console_commands_behind_a_waiting_pause_keep_their_order)
{
	PGconn *busy;
	uint8_t buf[4096];
	size_t len = 0;
	int fd, type;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	busy = h_connect(H_ALICE, NULL);
	h_exec(busy, "BEGIN");
	h_exec(busy, "SELECT 1");
	fd = h_raw_login(H_ADMIN, console_params);
	put_query(buf, &len, "PAUSE sluice_test;");
	put_query(buf, &len, "SHOW VERSION;");
	cr_assert(h_raw_send(fd, buf, len));
	/* PAUSE waits for the open transaction: nothing may answer before it. */
	type = next_type(fd, 700, buf, sizeof(buf), &len);
	cr_assert_eq(type, -1, "got '%c' while PAUSE was still waiting", type);
	h_exec(busy, "COMMIT");
	cr_assert_eq(next_type(fd, 5000, buf, sizeof(buf), &len), 'C');
	cr_assert_str_eq((char *)buf, "PAUSE");
	cr_assert_eq(next_type(fd, 5000, buf, sizeof(buf), &len), 'Z');
	cr_assert_eq(next_type(fd, 5000, buf, sizeof(buf), &len), 'T');
	cr_assert_eq(next_type(fd, 5000, buf, sizeof(buf), &len), 'D');
	cr_assert_eq(next_type(fd, 5000, buf, sizeof(buf), &len), 'C');
	cr_assert_eq(next_type(fd, 5000, buf, sizeof(buf), &len), 'Z');
	len = 0;
	put_query(buf, &len, "RESUME;");
	cr_assert(h_raw_send(fd, buf, len));
	cr_assert_eq(next_type(fd, 5000, buf, sizeof(buf), &len), 'C');
	close(fd);
	PQfinish(busy);
	assert_serving();
	h_finish();
}
