/*
 * test_faults.c - faults injected into a real PostgreSQL and real clients:
 * PostgreSQL killed (immediate stop) with clients mid-transaction, mid-query
 * and mid-COPY, then restarted; a server that stalls mid-result (pg_sleep,
 * or a backend stopped with SIGSTOP); a server that refuses or stalls the
 * login; a client that vanishes mid-pipeline or mid-COPY.
 *
 * For every fault the same four promises are checked:
 *   - each client gets an error or its result within a bound, never a hang;
 *   - sluice keeps serving: it is alive and a new client runs a query;
 *   - no server is returned dirty: no backend of the test users is left
 *     'idle in transaction' (or still running the abandoned work);
 *   - the pool recovers within server_login_retry (1 s here) of the fault
 *     going away.
 * Each recovery prints a "recovery:" line with the time it took.
 */
#define _GNU_SOURCE
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

/* A backend or postmaster this test stopped with SIGSTOP; 0: none. */
static pid_t stopped_pid;

/* Resumes what a failed test left stopped, so PostgreSQL can still stop. */
static void faults_teardown(void)
{
	if (stopped_pid > 0)
		kill(stopped_pid, SIGCONT);
	stopped_pid = 0;
	h_teardown();
}

TestSuite(faults, .fini = faults_teardown, .timeout = 120);

/* server_login_retry of every test, and the slack a recovery may take on
 * top of it (a busy CI box, PostgreSQL's own start). */
#define LOGIN_RETRY_S 1
#define RECOVERY_SLACK_S 3.0
/* No client waits longer than this for its answer to a fault. */
#define ANSWER_MS 10000

#define BASE_SETTINGS \
	"server_login_retry = 1\n" \
	"query_wait_timeout = 5\n"

/* ---- what a client got ---- */

enum outcome {
	OUT_RESULT,  /* every result came, none failed */
	OUT_ERROR,   /* an error result, or the connection ended */
	OUT_HANG,    /* nothing within the bound */
};

static const char *outcome_name(enum outcome o)
{
	switch (o) {
	case OUT_RESULT:
		return "a result";
	case OUT_ERROR:
		return "an error";
	case OUT_HANG:
		return "nothing (hang)";
	}
	return "?";
}

/* Reads the answers to what conn sent, up to the end or timeout_ms. */
static enum outcome drain(PGconn *conn, int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;
	bool failed = false;
	PGresult *res;

	for (;;) {
		int left = (int)((deadline - h_now()) * 1000);

		if (left <= 0)
			return OUT_HANG;
		res = h_result_within(conn, left);
		if (!res)
			break;
		if (PQresultStatus(res) == PGRES_COPY_IN) {
			/* A COPY still open after its server died: end it. */
			PQclear(res);
			if (PQputCopyEnd(conn, NULL) < 0)
				return OUT_ERROR;
			continue;
		}
		failed |= PQresultStatus(res) == PGRES_FATAL_ERROR;
		PQclear(res);
	}
	if (PQisBusy(conn) && PQstatus(conn) == CONNECTION_OK)
		return OUT_HANG;
	return failed || PQstatus(conn) != CONNECTION_OK ? OUT_ERROR : OUT_RESULT;
}

/* Sends sql and reads its answer within ANSWER_MS. */
static enum outcome ask(PGconn *conn, const char *sql)
{
	if (!PQsendQuery(conn, sql))
		return OUT_ERROR;
	return drain(conn, ANSWER_MS);
}

/* Asserts what a client got; names the client in the message. */
static void expect_outcome(const char *who, enum outcome got, enum outcome want)
{
	cr_assert_eq(got, want, "%s got %s, expected %s", who, outcome_name(got),
	             outcome_name(want));
}

/* Reads a COPY TO STDOUT until it ends; OUT_ERROR if it ended badly. */
static enum outcome drain_copy_out(PGconn *conn, int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;
	char *row;
	int n;

	while (h_now() < deadline) {
		struct pollfd p = { PQsocket(conn), POLLIN, 0 };

		if (PQsocket(conn) < 0)
			return OUT_ERROR;
		n = PQgetCopyData(conn, &row, 1);
		if (n > 0) {
			PQfreemem(row);
			continue;
		}
		if (n < 0)
			return drain(conn, (int)((deadline - h_now()) * 1000) + 1);
		poll(&p, 1, 100);
		if (!PQconsumeInput(conn))
			return OUT_ERROR;
	}
	return OUT_HANG;
}

/* Appends a simple Query message. */
static size_t put_query(uint8_t *buf, const char *sql)
{
	size_t n = strlen(sql) + 1;

	buf[0] = 'Q';
	h_put_be32(buf + 1, (uint32_t)(4 + n));
	memcpy(buf + 5, sql, n);
	return 5 + n;
}

/* ---- what PostgreSQL and sluice look like afterwards ---- */

#define TEST_USERS "('" H_ALICE "', '" H_BOB "', '" H_CAROL "')"

/* Asserts that within timeout_ms no backend of the test users is idle in
 * a transaction, or still running a statement matching like (if any). */
static void expect_no_dirty_server(const char *like, int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;
	long dirty, busy;

	for (;;) {
		dirty = h_pg_int("SELECT count(*) FROM pg_stat_activity "
		                 "WHERE usename IN " TEST_USERS
		                 " AND state LIKE 'idle in transaction%%'");
		busy = like ? h_pg_int("SELECT count(*) FROM pg_stat_activity "
		                       "WHERE usename IN " TEST_USERS " AND state = "
		                       "'active' AND query LIKE '%s'", like) : 0;
		if ((dirty == 0 && busy == 0) || h_now() > deadline)
			break;
		h_sleep_ms(50);
	}
	cr_assert_eq(dirty, 0, "%ld backends left idle in transaction", dirty);
	cr_assert_eq(busy, 0, "%ld backends still run %s", busy, like);
}

/* Seconds until a new client of user runs a query, -1 past timeout_s. */
static double time_to_serve(const char *user, double timeout_s)
{
	double t0 = h_now();

	while (h_now() - t0 < timeout_s) {
		PGconn *conn = h_try_connect(user, "connect_timeout=5", NULL, 0);
		bool ok = conn && h_try_exec(conn, "SELECT 1", NULL, 0);

		PQfinish(conn);
		if (ok)
			return h_now() - t0;
		h_assert_alive();
		h_sleep_ms(100);
	}
	return -1;
}

/* Asserts user is served again within server_login_retry plus slack. */
static void expect_recovery(const char *what, const char *user)
{
	double took = time_to_serve(user, 30);

	fprintf(stderr, "recovery: %-34s %.2f s (server_login_retry %d s)\n",
	        what, took, LOGIN_RETRY_S);
	cr_assert_geq(took, 0, "%s: %s not served within 30 s", what, user);
	cr_assert_leq(took, LOGIN_RETRY_S + RECOVERY_SLACK_S,
	              "%s: %s served only after %.2f s", what, user, took);
}

/* Waits until a backend runs a statement matching like and has reached
 * wait_event (NULL: any); returns its pid. */
static pid_t wait_backend(const char *like, const char *wait_event)
{
	double deadline = h_now() + 10;
	long pid;

	for (;;) {
		pid = h_pg_int("SELECT coalesce(max(pid), 0) FROM pg_stat_activity "
		               "WHERE usename IN " TEST_USERS " AND state = 'active' "
		               "AND query LIKE '%s' AND ('%s' = '' OR wait_event = '%s')",
		               like, wait_event ? wait_event : "",
		               wait_event ? wait_event : "");
		if (pid > 0)
			return (pid_t)pid;
		cr_assert_lt(h_now(), deadline, "no backend ran %s", like);
		h_sleep_ms(20);
	}
}

static void make_table(void)
{
	h_pg_exec("DROP TABLE IF EXISTS fault_rows");
	h_pg_exec("CREATE TABLE fault_rows (n int, pad text)");
	h_pg_exec("GRANT ALL ON fault_rows TO PUBLIC");
}

/* ---- PostgreSQL killed and restarted ---- */

/* Clients in each state a crash can catch: see pg_killed_then_restarted. */
struct victims {
	PGconn *xact;      /* idle inside a transaction */
	PGconn *copy_in;   /* in the middle of COPY FROM STDIN */
	PGconn *copy_out;  /* in the middle of COPY TO STDOUT, not reading */
	PGconn *busy;      /* waiting for a long query */
	PGconn *idle;      /* between transactions, no server */
};

static void start_copy_in(PGconn *conn)
{
	PGresult *res;
	char row[64];

	cr_assert(PQsendQuery(conn, "COPY fault_rows (n) FROM STDIN"));
	res = h_result_within(conn, ANSWER_MS);
	cr_assert(res && PQresultStatus(res) == PGRES_COPY_IN, "COPY IN: %s",
	          PQerrorMessage(conn));
	PQclear(res);
	for (int i = 0; i < 1000; i++) {
		snprintf(row, sizeof(row), "%d\n", i);
		cr_assert_eq(PQputCopyData(conn, row, (int)strlen(row)), 1);
	}
	cr_assert_eq(PQflush(conn), 0);
}

static void make_victims(struct victims *v)
{
	v->xact = h_connect(H_ALICE, NULL);
	h_exec(v->xact, "BEGIN");
	h_exec(v->xact, "INSERT INTO fault_rows VALUES (1, 'never committed')");
	v->copy_in = h_connect(H_ALICE, NULL);
	start_copy_in(v->copy_in);
	v->copy_out = h_connect(H_ALICE, NULL);
	cr_assert(PQsendQuery(v->copy_out, "COPY (SELECT g, repeat('x', 500) "
	                      "FROM generate_series(1, 10000000) g) TO STDOUT"));
	v->busy = h_connect(H_ALICE, NULL);
	cr_assert(PQsendQuery(v->busy, "SELECT pg_sleep(60) AS fault_busy"));
	v->idle = h_connect(H_ALICE, NULL);
	h_exec(v->idle, "SELECT 1");
	wait_backend("%fault_busy%", "PgSleep");
	wait_backend("COPY (SELECT g%", NULL);
}

/* After the crash: each linked client learns it, within the bound. */
static void expect_victims_told(struct victims *v)
{
	expect_outcome("the client in a transaction",
	               ask(v->xact, "INSERT INTO fault_rows VALUES (2, 'after')"),
	               OUT_ERROR);
	expect_outcome("the client in COPY FROM STDIN",
	               PQputCopyEnd(v->copy_in, NULL) < 0 ? OUT_ERROR :
	               drain(v->copy_in, ANSWER_MS), OUT_ERROR);
	expect_outcome("the client in COPY TO STDOUT",
	               drain_copy_out(v->copy_out, ANSWER_MS), OUT_ERROR);
	expect_outcome("the client waiting for pg_sleep",
	               drain(v->busy, ANSWER_MS), OUT_ERROR);
}

static void finish_victims(struct victims *v)
{
	PQfinish(v->xact);
	PQfinish(v->copy_in);
	PQfinish(v->copy_out);
	PQfinish(v->busy);
	PQfinish(v->idle);
}

Test(faults, pg_killed_then_restarted)
{
	struct victims v;
	PGconn *during;
	enum outcome got;
	double t0;

	h_require_sluice();
	h_pg_require_restartable();
	make_table();
	/* synchronous_commit is off: make the table survive the crash. */
	h_pg_exec("CHECKPOINT");
	/* Room for every victim and one more. */
	h_sluice_start(BASE_SETTINGS "default_pool_size = 8\n", NULL);
	make_victims(&v);

	h_pg_kill();
	expect_victims_told(&v);
	h_assert_alive();

	/* While PostgreSQL is down: an error within query_wait_timeout
	 * (or at once, from the cached login error), never a hang. */
	t0 = h_now();
	during = h_try_connect(H_ALICE, NULL, NULL, 0);
	got = during ? ask(during, "SELECT 1") : OUT_ERROR;
	PQfinish(during);
	expect_outcome("a client while PostgreSQL is down", got, OUT_ERROR);
	cr_assert_lt(h_now() - t0, 5 + RECOVERY_SLACK_S, "the error took %.1f s",
	             h_now() - t0);

	h_pg_restart();
	expect_recovery("PostgreSQL restarted", H_ALICE);
	/* The client that was between transactions lost nothing: its next
	 * query gets a new server. */
	expect_outcome("the idle client", ask(v.idle, "SELECT 1"), OUT_RESULT);
	expect_no_dirty_server(NULL, 5000);
	cr_assert_eq(h_pg_int("SELECT count(*) FROM fault_rows"), 0,
	             "rows of unfinished transactions survived the crash");
	finish_victims(&v);
	h_finish();
}

/* ---- a server that stalls mid-result ---- */

/* 499 rows of 300 bytes (sent: more than PostgreSQL's 8 KiB buffer), then
 * a sleep inside the result, then the rest. */
#define STALL_QUERY(seconds) \
	"SELECT g, repeat('x', 300), CASE WHEN g = 500 THEN pg_sleep(" \
	#seconds ") END AS fault_stall FROM generate_series(1, 1000) g"

/* Sends STALL_QUERY in single-row mode; counts rows until the end. */
static enum outcome rows_then_end(PGconn *conn, int timeout_ms, int *rows,
                                  char *sqlstate)
{
	double deadline = h_now() + timeout_ms / 1000.0;
	enum outcome got = OUT_RESULT;
	PGresult *res;

	*rows = 0;
	sqlstate[0] = '\0';
	while ((res = h_result_within(conn, (int)((deadline - h_now()) * 1000)))) {
		if (PQresultStatus(res) == PGRES_SINGLE_TUPLE)
			(*rows)++;
		if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			snprintf(sqlstate, 6, "%s", state ? state : "");
			fprintf(stderr, "error: %s", PQresultErrorMessage(res));
			got = OUT_ERROR;
		}
		PQclear(res);
		if (h_now() > deadline)
			break;
	}
	if (PQisBusy(conn) && PQstatus(conn) == CONNECTION_OK)
		return OUT_HANG;
	return PQstatus(conn) != CONNECTION_OK ? OUT_ERROR : got;
}

Test(faults, server_sleeps_mid_result)
{
	PGconn *conn;
	char sqlstate[6];
	int rows;
	double t0;
	enum outcome got;

	h_require_sluice();
	h_sluice_start(BASE_SETTINGS "query_timeout = 1\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	t0 = h_now();
	cr_assert(PQsendQuery(conn, STALL_QUERY(5)));
	cr_assert(PQsetSingleRowMode(conn));
	got = rows_then_end(conn, ANSWER_MS, &rows, sqlstate);
	fprintf(stderr, "stall: %d rows, then %s %s after %.2f s\n", rows,
	        outcome_name(got), sqlstate, h_now() - t0);
	expect_outcome("the stalled client", got, OUT_ERROR);
	cr_assert_gt(rows, 0, "no row came before the stall");
	cr_assert_lt(rows, 1000);
	cr_assert_str_eq(sqlstate, "57014");
	cr_assert_lt(h_now() - t0, 4.0, "query_timeout fired after %.1f s",
	             h_now() - t0);
	/* Canceled, not closed: the same client goes on. */
	cr_assert_eq(h_query_int(conn, "SELECT 7"), 7);
	expect_no_dirty_server("%fault_stall%", 5000);
	PQfinish(conn);
	expect_recovery("after a stalled result", H_ALICE);
	h_finish();
}

Test(faults, server_stopped_mid_result)
{
	PGconn *conn;
	char sqlstate[6];
	int rows;
	double t0;
	enum outcome got;

	h_require_sluice();
	h_sluice_start(BASE_SETTINGS "query_timeout = 2\n"
	               "cancel_wait_timeout = 1\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	t0 = h_now();
	cr_assert(PQsendQuery(conn, STALL_QUERY(1)));
	cr_assert(PQsetSingleRowMode(conn));
	/* Stopped in its sleep: rows sent, a cancel will not be seen. */
	stopped_pid = wait_backend("%fault_stall%", "PgSleep");
	cr_assert_eq(kill(stopped_pid, SIGSTOP), 0, "SIGSTOP: %s", strerror(errno));
	got = rows_then_end(conn, ANSWER_MS, &rows, sqlstate);
	fprintf(stderr, "stopped: %d rows, then %s %s after %.2f s\n", rows,
	        outcome_name(got), sqlstate, h_now() - t0);
	expect_outcome("the client of a stopped server", got, OUT_ERROR);
	cr_assert_gt(rows, 0, "no row came before the stall");
	/* query_timeout, then cancel_wait_timeout closes the server. */
	cr_assert_lt(h_now() - t0, 2 + 1 + 2.0, "answered after %.1f s",
	             h_now() - t0);
	h_assert_alive();
	expect_recovery("while a server is stopped", H_ALICE);
	kill(stopped_pid, SIGCONT);
	stopped_pid = 0;
	/* Its socket closed by sluice, the backend ends once resumed. */
	expect_no_dirty_server("%fault_stall%", 5000);
	PQfinish(conn);
	h_finish();
}

/* Reads until EOF (true) or timeout_ms (false); *len: bytes read. */
static bool raw_read_to_eof(int fd, uint8_t *buf, size_t cap, size_t *len,
                            int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;

	*len = 0;
	while (h_now() < deadline) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(fd, buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (*len += (size_t)n) == cap)
			return n <= 0 || *len == cap;
	}
	return false;
}

/*
 * The server stops in the middle of a DataRow it was passing to the client
 * and cancel_wait_timeout closes it: the client's stream must stay well
 * formed. An ErrorResponse there would be read as the rest of the DataRow,
 * so the client is only closed (it sees the connection end).
 */
Test(faults, server_stopped_mid_message_no_error_inside_it)
{
	static uint8_t buf[1 << 20];
	uint8_t query[512];
	size_t len, pos = 0;
	int fd;

	h_require_sluice();
	h_sluice_start(BASE_SETTINGS "query_timeout = 1\n"
	               "cancel_wait_timeout = 1\n", NULL);
	fd = h_raw_login(H_ALICE, NULL);
	cr_assert(h_raw_send(fd, query, put_query(query, STALL_QUERY(1))));
	stopped_pid = wait_backend("%fault_stall%", "PgSleep");
	cr_assert_eq(kill(stopped_pid, SIGSTOP), 0, "SIGSTOP: %s", strerror(errno));
	cr_assert(raw_read_to_eof(fd, buf, sizeof(buf), &len, ANSWER_MS),
	          "the client was not closed within %d ms", ANSWER_MS);
	kill(stopped_pid, SIGCONT);
	stopped_pid = 0;
	close(fd);
	while (pos + 5 <= len && pos + 1 + h_get_be32(buf + pos + 1) <= len) {
		cr_assert(buf[pos] == 'T' || buf[pos] == 'D' || buf[pos] == 'E',
		          "message type 0x%02x at byte %zu", buf[pos], pos);
		pos += 1 + h_get_be32(buf + pos + 1);
	}
	fprintf(stderr, "stopped mid-message: %zu bytes, %zu of them in whole "
	        "messages\n", len, pos);
	cr_assert(!memmem(buf + pos, len - pos, "query timeout", 13),
	          "an ErrorResponse was sent inside a cut-off DataRow");
	h_assert_alive();
	expect_recovery("after a server stopped mid-message", H_ALICE);
	expect_no_dirty_server("%fault_stall%", 5000);
	h_finish();
}

/* ---- a server that refuses or stalls the login ---- */

Test(faults, server_closes_during_login)
{
	struct h_error err;
	double t0;

	h_require_sluice();
	/* PostgreSQL authenticates bob, then ends the login with FATAL
	 * 53300 and closes: every login fails the same way until lifted. */
	h_pg_exec("ALTER ROLE " H_BOB " CONNECTION LIMIT 0");
	h_sluice_start(BASE_SETTINGS, NULL);
	for (int i = 0; i < 3; i++) {
		t0 = h_now();
		cr_assert(h_connect_fails(H_BOB, NULL, &err),
		          "bob logged in although PostgreSQL refuses him");
		fprintf(stderr, "login refused: %s %s %s after %.2f s\n",
		        err.severity, err.sqlstate, err.message, h_now() - t0);
		cr_assert_lt(h_now() - t0, 5 + RECOVERY_SLACK_S,
		             "the refusal took %.1f s", h_now() - t0);
	}
	/* Other pools are not affected. */
	cr_assert_geq(time_to_serve(H_ALICE, 5), 0);
	h_pg_exec("ALTER ROLE " H_BOB " CONNECTION LIMIT -1");
	expect_recovery("login allowed again", H_BOB);
	expect_no_dirty_server(NULL, 5000);
	h_finish();
}

Test(faults, server_stalls_during_login)
{
	char path[4096], line[64] = "";
	FILE *f;
	double t0;
	enum outcome got;
	PGconn *conn;

	h_require_sluice();
	h_pg_require_restartable();
	/* The postmaster's pid: the first line of postmaster.pid. */
	snprintf(path, sizeof(path), "%s/postmaster.pid",
	         getenv("SLUICE_TEST_PGDATA"));
	f = fopen(path, "r");
	cr_assert(f && fgets(line, sizeof(line), f), "cannot read %s", path);
	fclose(f);
	h_sluice_start(BASE_SETTINGS "server_connect_timeout = 1\n", NULL);
	/* A stopped postmaster: the TCP handshake completes (the kernel
	 * queues it) but no backend ever answers the startup packet. */
	stopped_pid = (pid_t)atol(line);
	cr_assert_gt(stopped_pid, 1);
	cr_assert_eq(kill(stopped_pid, SIGSTOP), 0, "SIGSTOP: %s", strerror(errno));
	t0 = h_now();
	conn = h_try_connect(H_ALICE, NULL, NULL, 0);
	got = conn ? ask(conn, "SELECT 1") : OUT_ERROR;
	PQfinish(conn);
	fprintf(stderr, "stalled login: %s after %.2f s\n", outcome_name(got),
	        h_now() - t0);
	expect_outcome("a client while the server stalls its login", got,
	               OUT_ERROR);
	cr_assert_lt(h_now() - t0, 5 + RECOVERY_SLACK_S, "the error took %.1f s",
	             h_now() - t0);
	kill(stopped_pid, SIGCONT);
	stopped_pid = 0;
	expect_recovery("postmaster resumed", H_ALICE);
	expect_no_dirty_server(NULL, 5000);
	h_finish();
}

/* ---- a client that vanishes ---- */

/* Appends Parse(unnamed) + Bind + Execute, no Sync. */
static size_t put_extended(uint8_t *buf, const char *sql)
{
	size_t n = strlen(sql) + 1, len = 0;

	buf[len] = 'P';
	h_put_be32(buf + len + 1, (uint32_t)(4 + 1 + n + 2));
	buf[len + 5] = '\0';
	memcpy(buf + len + 6, sql, n);
	memset(buf + len + 6 + n, 0, 2);
	len += 1 + 4 + 1 + n + 2;
	buf[len] = 'B';
	h_put_be32(buf + len + 1, 4 + 1 + 1 + 2 + 2 + 2);
	memset(buf + len + 5, 0, 8);
	len += 1 + 4 + 8;
	buf[len] = 'E';
	h_put_be32(buf + len + 1, 4 + 1 + 4);
	memset(buf + len + 5, 0, 5);
	return len + 1 + 4 + 5;
}

/* Sends as much of buf as goes within timeout_ms without blocking on a
 * peer that stopped reading (sluice's back-pressure); returns bytes sent. */
static size_t send_for(int fd, const uint8_t *buf, size_t len, int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;
	size_t sent = 0;

	while (sent < len && h_now() < deadline) {
		struct pollfd p = { fd, POLLOUT, 0 };
		ssize_t n;

		if (poll(&p, 1, 50) <= 0)
			continue;
		n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	return sent;
}

/* Closes with a reset (SO_LINGER 0) when abort, else with a FIN. */
static void vanish(int fd, bool abort)
{
	struct linger lg = { 1, 0 };

	if (abort)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* A pipeline of big answers, in a transaction, abandoned unread. */
static void vanish_mid_pipeline(bool extended, bool abort)
{
	static uint8_t buf[4 << 20];
	const char *sql = "SELECT repeat('x', 1000) AS fault_pipe "
	                  "FROM generate_series(1, 20)";
	size_t len = put_query(buf, "BEGIN");
	int fd = h_raw_login(H_ALICE, NULL);
	size_t sent;

	len += put_query(buf + len, "INSERT INTO fault_rows VALUES (3, 'x')");
	while (len + 256 < sizeof(buf))
		len += extended ? put_extended(buf + len, sql) : put_query(buf + len, sql);
	sent = send_for(fd, buf, len, 2000);
	fprintf(stderr, "pipeline (%s, %s): %zu of %zu bytes sent, then gone\n",
	        extended ? "extended, no Sync" : "simple",
	        abort ? "reset" : "close", sent, len);
	cr_assert_gt(sent, 4096);
	vanish(fd, abort);
}

Test(faults, client_vanishes_mid_pipeline)
{
	h_require_sluice();
	make_table();
	h_sluice_start(BASE_SETTINGS, NULL);
	for (int i = 0; i < 4; i++) {
		vanish_mid_pipeline(i & 1, i & 2);
		h_assert_alive();
		cr_assert_geq(time_to_serve(H_ALICE, 5), 0);
		expect_no_dirty_server("%fault_pipe%", 10000);
	}
	cr_assert_eq(h_pg_int("SELECT count(*) FROM fault_rows"), 0,
	             "an abandoned transaction was committed");
	/* The pool is whole again: pool_size clients at once are served. */
	for (int i = 0; i < 4; i++) {
		PGconn *conn = h_connect(H_ALICE, NULL);

		h_exec(conn, "BEGIN");
		cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
		h_exec(conn, "COMMIT");
		PQfinish(conn);
	}
	h_finish();
}

/* Reads backend messages until one of type want; false on EOF/timeout. */
static bool raw_wait_for(int fd, char want)
{
	static uint8_t body[65536];
	size_t len;
	char type;

	do {
		if (h_raw_read_msg(fd, ANSWER_MS, &type, body, sizeof(body), &len) != 1)
			return false;
	} while (type != want);
	return true;
}

Test(faults, client_vanishes_mid_copy)
{
	static uint8_t buf[1 << 16];
	const char row[] = "42\tgone mid-copy\n";

	h_require_sluice();
	make_table();
	h_sluice_start(BASE_SETTINGS, NULL);
	for (int i = 0; i < 2; i++) {
		int fd = h_raw_login(H_ALICE, NULL);
		size_t len = put_query(buf, "COPY fault_rows FROM STDIN");

		cr_assert(h_raw_send(fd, buf, len));
		cr_assert(raw_wait_for(fd, 'G'), "no CopyInResponse");
		len = 0;
		while (len + 5 + sizeof(row) < sizeof(buf)) {
			buf[len] = 'd';
			h_put_be32(buf + len + 1, (uint32_t)(4 + sizeof(row) - 1));
			memcpy(buf + len + 5, row, sizeof(row) - 1);
			len += 5 + sizeof(row) - 1;
		}
		cr_assert(h_raw_send(fd, buf, len));
		vanish(fd, i == 1);
		h_assert_alive();
		expect_no_dirty_server("COPY fault_rows%", 10000);
	}
	cr_assert_eq(h_pg_int("SELECT count(*) FROM fault_rows"), 0,
	             "an abandoned COPY was committed");
	expect_recovery("after abandoned COPYs", H_ALICE);
	h_finish();
}
