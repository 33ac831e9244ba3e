/*
 * test_timeouts.c - every timeout sluice enforces: it fires with PgBouncer's
 * message and SQLSTATE, never before its setting and within a couple of
 * housekeeping ticks (50 ms each) after it, and leaves everyone else alone.
 *
 * Each timing check prints a "timing:" line (how late after its deadline
 * the timeout fired) so a run shows the accuracy, not only pass or fail.
 * Settings are fractions of a second so the suite stays fast.
 *
 * For cancel_wait_timeout and the late-cancel rule a small TCP relay stands
 * between sluice and PostgreSQL: it forwards everything but can hold a
 * CancelRequest back (forever, or for a while), which is how a server that
 * ignores a cancel, or a cancel stuck in the network, looks from sluice.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>

#include "harness.h"

TestSuite(timeouts, .fini = h_teardown, .timeout = 60);

/* A timeout may be seen this much before its setting (clock noise)... */
#define EARLY_MS 10.0
/* ... and fire at most this much after it: two ticks on a busy box. */
#define LATE_MS 150.0

#define CANCEL_REQUEST_CODE 80877102u

/* Asserts a timeout fired not before limit_s and not long after it;
 * prints how late it was. */
static void expect_fired(const char *what, double elapsed_s, double limit_s,
                         double late_ms)
{
	double ms = (elapsed_s - limit_s) * 1000;

	fprintf(stderr, "timing: %-28s limit %5.0f ms, fired %+5.0f ms after it\n",
	        what, limit_s * 1000, ms);
	cr_expect_geq(ms, -EARLY_MS, "%s fired %.0f ms before its %.0f ms",
	              what, -ms, limit_s * 1000);
	cr_expect_leq(ms, late_ms, "%s fired %.0f ms after its %.0f ms "
	              "(allowed: %.0f)", what, ms, limit_s * 1000, late_ms);
}

/* ---- what a libpq client was told ---- */

/* Errors and notices that reach a connection outside a query result: a
 * FATAL sent to an idle client arrives this way. */
struct told {
	struct h_error err;    /* the last ERROR or FATAL */
	double err_at;         /* h_now() when it came; 0: none */
	int notices;           /* NOTICEs and WARNINGs */
	char notice[512];      /* the last one's message */
	double notice_at;      /* h_now() when the first one came */
};

static void told_receiver(void *arg, const PGresult *res)
{
	struct told *t = arg;
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (sev && (strcmp(sev, "NOTICE") == 0 || strcmp(sev, "WARNING") == 0)) {
		if (t->notices++ == 0)
			t->notice_at = h_now();
		snprintf(t->notice, sizeof(t->notice), "%s", msg ? msg : "");
		return;
	}
	h_result_error(res, &t->err);
	t->err_at = h_now();
}

/* h_connect, with what sluice says outside results going to t. */
static PGconn *connect_told(const char *user, const char *extra, struct told *t)
{
	PGconn *conn = h_connect(user, extra);

	memset(t, 0, sizeof(*t));
	PQsetNoticeReceiver(conn, told_receiver, t);
	return conn;
}

/* Reads (and so parses) what comes on conn until sluice closes it or
 * timeout_ms pass. True if it was closed. */
static bool await_close(PGconn *conn, int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;

	while (h_now() < deadline) {
		struct pollfd p = { PQsocket(conn), POLLIN, 0 };
		bool ok;

		if (p.fd < 0)
			return true;
		poll(&p, 1, 20);
		ok = PQconsumeInput(conn);
		(void)PQisBusy(conn); /* parses: an ErrorResponse reaches the receiver */
		if (!ok || PQstatus(conn) == CONNECTION_BAD)
			return true;
	}
	return false;
}

/* The next result of a query on conn is an error; fills err, returns
 * h_now() when it came. */
static double expect_error_result(PGconn *conn, int timeout_ms, struct h_error *err)
{
	PGresult *res = h_result_within(conn, timeout_ms);
	double at = h_now();

	cr_assert(res, "no result within %d ms", timeout_ms);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "expected an error, got %s",
	             PQresStatus(PQresultStatus(res)));
	h_result_error(res, err);
	PQclear(res);
	while ((res = h_result_within(conn, 1000)) != NULL)
		PQclear(res);
	return at;
}

static void expect_error(const struct h_error *err, const char *severity,
                         const char *sqlstate, const char *message)
{
	cr_expect_str_eq(err->severity, severity, "severity %s (%s %s)", err->severity,
	                 err->sqlstate, err->message);
	cr_expect_str_eq(err->sqlstate, sqlstate, "SQLSTATE %s (%s)", err->sqlstate,
	                 err->message);
	cr_expect_str_eq(err->message, message);
}

/* Waits until superuser sql returns want; false after timeout_ms. */
static bool pg_wait_for(long want, int timeout_ms, const char *sql)
{
	double deadline = h_now() + timeout_ms / 1000.0;

	while (h_pg_int("%s", sql) != want) {
		if (h_now() > deadline)
			return false;
		h_sleep_ms(10);
	}
	return true;
}

/* ---- backends as PostgreSQL sees them ---- */

#define MAX_WATCHED 16

/* A backend of the pool, from its start to its end. */
struct backend {
	long pid;
	double started;        /* h_now() clock at backend_start */
	double gone;           /* first sample without it; 0: still there */
};

struct backends {
	struct backend b[MAX_WATCHED];
	int n;
};

/* One sample of pg_stat_activity for user: notes new backends and the
 * ones that went away. Returns how many there are. */
static int sample_backends(PGconn *pg, const char *user, struct backends *w)
{
	bool seen[MAX_WATCHED] = { false };
	double before = h_now(), now;
	char sql[256];
	PGresult *res;
	int rows;

	snprintf(sql, sizeof(sql), "SELECT pid, extract(epoch FROM clock_timestamp() - "
	         "backend_start) FROM pg_stat_activity WHERE usename = '%s' "
	         "AND backend_type = 'client backend'", user);
	res = PQexec(pg, sql);
	now = (before + h_now()) / 2;
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(pg));
	rows = PQntuples(res);
	for (int r = 0; r < rows; r++) {
		long pid = atol(PQgetvalue(res, r, 0));
		int i = 0;

		while (i < w->n && w->b[i].pid != pid)
			i++;
		if (i == w->n && w->n < MAX_WATCHED)
			w->b[w->n++] = (struct backend){ pid, now - atof(PQgetvalue(res, r, 1)), 0 };
		if (i < MAX_WATCHED)
			seen[i] = true;
	}
	PQclear(res);
	for (int i = 0; i < w->n; i++)
		if (!seen[i] && !w->b[i].gone)
			w->b[i].gone = now;
	return rows;
}

static struct backend *find_backend(struct backends *w, long pid)
{
	for (int i = 0; i < w->n; i++)
		if (w->b[i].pid == pid)
			return &w->b[i];
	return NULL;
}

/* ---- a relay to PostgreSQL that can hold cancel requests back ---- */

enum relay_cancels {
	RELAY_FORWARD,    /* pass them on like everything else */
	RELAY_SWALLOW,    /* keep the connection open, never deliver */
	RELAY_DELAY,      /* deliver after delay_ms */
};

#define RELAY_MAX_CONNS 64

struct relay {
	int listen_fd;
	int port;                  /* where sluice connects */
	int pg_port;               /* where the relay connects */
	enum relay_cancels cancels;
	int delay_ms;
	atomic_bool stop;
	atomic_int cancels_seen;
	atomic_llong delivered_us; /* h_now() in µs when a cancel went on */
	pthread_t acceptor;
	pthread_mutex_t lock;
	pthread_t conns[RELAY_MAX_CONNS];
	int nconns;
};

struct relay_conn {
	struct relay *relay;
	int fd;                    /* from sluice */
};

/* Reads len bytes unless the relay stops or the peer goes. */
static bool relay_read(struct relay *r, int fd, uint8_t *buf, size_t len)
{
	while (len > 0 && !atomic_load(&r->stop)) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 50) <= 0)
			continue;
		n = read(fd, buf, len);
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return len == 0;
}

static int relay_connect_pg(struct relay *r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_port = htons((uint16_t)r->pg_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Copies bytes both ways until a side closes or the relay stops. */
static void relay_pipe(struct relay *r, int a, int b)
{
	struct pollfd p[2] = { { a, POLLIN, 0 }, { b, POLLIN, 0 } };
	char buf[16384];

	while (!atomic_load(&r->stop)) {
		if (poll(p, 2, 50) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			ssize_t n;

			if (!p[i].revents)
				continue;
			n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0 || !h_raw_send(p[1 - i].fd, buf, (size_t)n))
				return;
		}
	}
}

/* Holds a connection until sluice closes it or the relay stops. */
static void relay_hold(struct relay *r, int fd)
{
	uint8_t buf[64];

	while (!atomic_load(&r->stop)) {
		struct pollfd p = { fd, POLLIN, 0 };

		if (poll(&p, 1, 50) > 0 && read(fd, buf, sizeof(buf)) <= 0)
			return;
	}
}

static bool is_cancel(const uint8_t *first8)
{
	uint32_t len = (uint32_t)first8[0] << 24 | first8[1] << 16 | first8[2] << 8 | first8[3];
	uint32_t code = (uint32_t)first8[4] << 24 | first8[5] << 16 | first8[6] << 8 | first8[7];

	return len == 16 && code == CANCEL_REQUEST_CODE;
}

static void *relay_conn_main(void *arg)
{
	struct relay_conn *rc = arg;
	struct relay *r = rc->relay;
	uint8_t packet[16];
	size_t have = 8;
	int pg = -1;

	if (!relay_read(r, rc->fd, packet, 8))
		goto out;
	if (is_cancel(packet)) {
		atomic_fetch_add(&r->cancels_seen, 1);
		if (!relay_read(r, rc->fd, packet + 8, 8))
			goto out;
		have = 16;
		if (r->cancels == RELAY_SWALLOW) {
			relay_hold(r, rc->fd);
			goto out;
		}
		if (r->cancels == RELAY_DELAY)
			for (int ms = 0; ms < r->delay_ms && !atomic_load(&r->stop); ms += 10)
				h_sleep_ms(10);
	}
	pg = relay_connect_pg(r);
	if (pg < 0 || !h_raw_send(pg, packet, have))
		goto out;
	if (have == 16)
		atomic_store(&r->delivered_us, (long long)(h_now() * 1e6));
	relay_pipe(r, rc->fd, pg);
out:
	if (pg >= 0)
		close(pg);
	close(rc->fd);
	free(rc);
	return NULL;
}

static void *relay_accept_main(void *arg)
{
	struct relay *r = arg;

	while (!atomic_load(&r->stop)) {
		struct pollfd p = { r->listen_fd, POLLIN, 0 };
		struct relay_conn *rc;
		int fd;

		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept(r->listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		rc = malloc(sizeof(*rc));
		if (!rc) {
			close(fd);
			continue;
		}
		rc->relay = r;
		rc->fd = fd;
		pthread_mutex_lock(&r->lock);
		if (r->nconns == RELAY_MAX_CONNS ||
		    pthread_create(&r->conns[r->nconns], NULL, relay_conn_main, rc) != 0) {
			close(fd);
			free(rc);
		} else {
			r->nconns++;
		}
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

static void relay_start(struct relay *r, enum relay_cancels cancels, int delay_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	memset(r, 0, sizeof(*r));
	r->cancels = cancels;
	r->delay_ms = delay_ms;
	r->pg_port = h_pg_port();
	pthread_mutex_init(&r->lock, NULL);
	r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(listen(r->listen_fd, 16) == 0);
	cr_assert(getsockname(r->listen_fd, (struct sockaddr *)&sa, &len) == 0);
	r->port = ntohs(sa.sin_port);
	cr_assert(pthread_create(&r->acceptor, NULL, relay_accept_main, r) == 0);
}

static void relay_stop(struct relay *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->acceptor, NULL);
	/* Only the acceptor adds to conns[], and it is gone: nconns is final. */
	for (int i = 0; i < r->nconns; i++)
		pthread_join(r->conns[i], NULL);
	close(r->listen_fd);
}

/* ---- query_wait_timeout ---- */

Test(timeouts, query_wait_timeout_fails_each_waiter_after_its_own_wait)
{
	PGconn *holder, *b, *c, *next;
	struct h_error err;
	double tb, tc, at;

	h_require_sluice();
	h_sluice_start("default_pool_size = 1\nquery_wait_timeout = 0.5\n", NULL);
	holder = h_connect(H_ALICE, NULL);
	b = h_connect(H_ALICE, NULL);
	c = h_connect(H_ALICE, NULL);
	h_exec(holder, "BEGIN");
	h_exec(holder, "SELECT 1");
	tb = h_now();
	cr_assert(PQsendQuery(b, "SELECT 2"));
	h_sleep_ms(200);
	tc = h_now();
	cr_assert(PQsendQuery(c, "SELECT 3"));

	at = expect_error_result(b, 3000, &err);
	expect_error(&err, "FATAL", "08P01", "query_wait_timeout");
	expect_fired("query_wait_timeout", at - tb, 0.5, LATE_MS);
	at = expect_error_result(c, 3000, &err);
	expect_error(&err, "FATAL", "08P01", "query_wait_timeout");
	expect_fired("query_wait_timeout (second)", at - tc, 0.5, LATE_MS);
	cr_assert_eq(PQstatus(b), CONNECTION_BAD, "the waiter was not disconnected");
	cr_assert_eq(PQstatus(c), CONNECTION_BAD, "the waiter was not disconnected");

	/* The holder was never waiting: untouched; and the pool goes on. */
	cr_assert_eq(h_query_int(holder, "SELECT 4"), 4);
	h_exec(holder, "COMMIT");
	next = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(next, "SELECT 5"), 5);
	PQfinish(next);
	PQfinish(holder);
	PQfinish(b);
	PQfinish(c);
	h_finish();
}

Test(timeouts, waiting_clients_are_served_in_arrival_order)
{
	enum { WAITERS = 5 };
	PGconn *holder, *w[WAITERS], *pg;
	PGresult *res;

	h_require_sluice();
	h_pg_exec("DROP TABLE IF EXISTS fifo_t");
	h_pg_exec("CREATE TABLE fifo_t (seq serial, who int)");
	h_sluice_start("default_pool_size = 1\nquery_wait_timeout = 10\n", NULL);
	holder = h_connect(H_ALICE, NULL);
	for (int i = 0; i < WAITERS; i++)
		w[i] = h_connect(H_ALICE, NULL);
	h_exec(holder, "BEGIN");
	h_exec(holder, "SELECT 1");
	for (int i = 0; i < WAITERS; i++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "INSERT INTO fifo_t (who) VALUES (%d)", i);
		cr_assert(PQsendQuery(w[i], sql));
		h_sleep_ms(30);
	}
	h_exec(holder, "COMMIT");
	for (int i = 0; i < WAITERS; i++) {
		res = h_result_within(w[i], 10000);
		cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "waiter %d: %s", i,
		             PQresultErrorMessage(res));
		PQclear(res);
		while ((res = h_result_within(w[i], 1000)) != NULL)
			PQclear(res);
	}
	pg = h_connect_pg();
	res = PQexec(pg, "SELECT string_agg(who::text, ',' ORDER BY seq) FROM fifo_t");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "0,1,2,3,4",
	                 "waiters were served out of order");
	PQclear(res);
	PQfinish(pg);
	for (int i = 0; i < WAITERS; i++)
		PQfinish(w[i]);
	PQfinish(holder);
	h_finish();
}

Test(timeouts, query_wait_timeout_per_database_entry)
{
	PGconn *holder, *short_wait, *long_wait;
	PGresult *res;
	struct h_error err;
	double t0, at;

	h_require_sluice();
	h_sluice_start("default_pool_size = 1\nquery_wait_timeout = 5\n",
	               "quick = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME
	               " pool_size=1 query_wait_timeout=0.4");
	/* Each database entry is a pool of its own: hold both servers. */
	holder = h_connect(H_ALICE, "dbname=quick");
	h_exec(holder, "BEGIN");
	h_exec(holder, "SELECT 1");
	long_wait = h_connect(H_BOB, NULL);
	h_exec(long_wait, "BEGIN");
	h_exec(long_wait, "SELECT 1");
	short_wait = h_connect(H_ALICE, "dbname=quick");
	t0 = h_now();
	cr_assert(PQsendQuery(short_wait, "SELECT 2"));
	at = expect_error_result(short_wait, 3000, &err);
	expect_error(&err, "FATAL", "08P01", "query_wait_timeout");
	expect_fired("query_wait_timeout (database)", at - t0, 0.4, LATE_MS);
	/* The main section's value still applies elsewhere. */
	PQfinish(short_wait);
	short_wait = h_connect(H_BOB, NULL);
	cr_assert(PQsendQuery(short_wait, "SELECT 3"));
	cr_assert_null(h_result_within(short_wait, 800), "the other pool's waiter "
	               "got an answer with its only server held");
	h_exec(long_wait, "COMMIT");
	res = h_result_within(short_wait, 3000);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(h_result_within(short_wait, 1000));
	h_exec(holder, "COMMIT");
	PQfinish(short_wait);
	PQfinish(long_wait);
	PQfinish(holder);
	h_finish();
}

/* A role only this file uses, so that making its logins fail cannot break
 * the harness's roles for later tests. */
#define DAVE "dave"
#define DAVE_PASSWORD "dave-secret"

static void create_dave(void)
{
	h_pg_exec("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '"
	          DAVE "') THEN CREATE ROLE " DAVE "; END IF; END$$");
	h_pg_exec("ALTER ROLE " DAVE " LOGIN PASSWORD '" DAVE_PASSWORD "'");
}

Test(timeouts, query_wait_timeout_names_the_failing_server_login)
{
	PGconn *client;
	struct h_error err;
	double t0, at;

	h_require_sluice();
	create_dave();
	h_sluice_start("default_pool_size = 1\nquery_wait_timeout = 0.8\n"
	               "server_login_retry = 0.2\n",
	               "davedb = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME
	               " user=" DAVE " password=" DAVE_PASSWORD);
	client = h_connect(H_ALICE, "dbname=davedb");
	cr_assert_eq(h_query_int(client, "SELECT 1"), 1);
	/* The pool's server goes away and no new one can log in. */
	h_pg_exec("ALTER ROLE " DAVE " NOLOGIN");
	h_pg_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	          "WHERE usename = '" DAVE "'");
	cr_assert(pg_wait_for(0, 5000, "SELECT count(*) FROM pg_stat_activity "
	                      "WHERE usename = '" DAVE "'"));
	h_sleep_ms(200);
	t0 = h_now();
	cr_assert(PQsendQuery(client, "SELECT 2"));
	at = expect_error_result(client, 5000, &err);
	h_pg_exec("ALTER ROLE " DAVE " LOGIN");
	expect_error(&err, "FATAL", "08P01", "query_wait_timeout; server login has "
	             "been failing: role \"" DAVE "\" is not permitted to log in");
	expect_fired("query_wait_timeout (login failing)", at - t0, 0.8, LATE_MS);
	PQfinish(client);
	h_finish();
}

/* ---- query_timeout and cancel_wait_timeout ---- */

#define ACTIVE_SLEEPS "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' " \
	"AND query LIKE 'SELECT pg_sleep(%'"

Test(timeouts, query_timeout_cancels_and_keeps_the_connection)
{
	PGconn *conn;
	struct h_error err;
	double t0, at;

	h_require_sluice();
	h_sluice_start("default_pool_size = 2\nquery_timeout = 0.5\n", NULL);
	conn = h_connect(H_ALICE, NULL);

	t0 = h_now();
	cr_assert(PQsendQuery(conn, "SELECT pg_sleep(3)"));
	at = expect_error_result(conn, 5000, &err);
	expect_error(&err, "ERROR", "57014",
	             "query timeout: canceling statement after query_timeout (500 ms)");
	expect_fired("query_timeout", at - t0, 0.5, LATE_MS);
	cr_assert_eq(PQstatus(conn), CONNECTION_OK, "query_timeout closed the client");
	cr_assert_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
	cr_assert(pg_wait_for(0, 2000, ACTIVE_SLEEPS), "the query still runs on PostgreSQL");
	cr_assert_eq(h_query_int(conn, "SELECT 7"), 7);

	/* Inside a transaction: the transaction fails, as with a cancel. */
	h_exec(conn, "BEGIN");
	t0 = h_now();
	cr_assert(PQsendQuery(conn, "SELECT pg_sleep(3)"));
	at = expect_error_result(conn, 5000, &err);
	cr_expect_str_eq(err.sqlstate, "57014");
	cr_expect_eq(strncmp(err.message, "query timeout", 13), 0, "%s", err.message);
	expect_fired("query_timeout (in transaction)", at - t0, 0.5, LATE_MS);
	cr_assert_eq(PQtransactionStatus(conn), PQTRANS_INERROR);
	h_exec(conn, "ROLLBACK");

	/* A query shorter than the limit is not touched. */
	cr_assert_eq(h_query_int(conn, "SELECT 8 FROM pg_sleep(0.3)"), 8);
	PQfinish(conn);
	h_finish();
}

Test(timeouts, query_timeout_spares_clients_idle_in_transaction)
{
	PGconn *conn;
	char *log;

	h_require_sluice();
	h_sluice_start("default_pool_size = 1\nquery_timeout = 0.3\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	h_exec(conn, "BEGIN");
	h_exec(conn, "SELECT 1");
	h_sleep_ms(1000);
	cr_assert_eq(h_query_int(conn, "SELECT 2"), 2);
	h_sleep_ms(500);
	h_exec(conn, "COMMIT");
	log = h_sluice_log();
	cr_expect_null(strstr(log, "query_timeout ("), "query_timeout fired:\n%s", log);
	free(log);
	PQfinish(conn);
	h_finish();
}

Test(timeouts, cancel_wait_timeout_closes_a_server_that_ignores_the_cancel)
{
	static struct relay relay;
	char dbs[256];
	PGconn *conn, *next;
	struct h_error err;
	double t0, at;
	long pid, next_pid;

	h_require_sluice();
	relay_start(&relay, RELAY_SWALLOW, 0);
	snprintf(dbs, sizeof(dbs), "relaydb = host=127.0.0.1 port=%d dbname=%s",
	         relay.port, H_DBNAME);
	h_sluice_start("default_pool_size = 1\nquery_timeout = 0.3\n"
	               "cancel_wait_timeout = 0.5\n", dbs);
	conn = h_connect(H_ALICE, "dbname=relaydb");
	pid = h_query_int(conn, "SELECT pg_backend_pid()");

	t0 = h_now();
	cr_assert(PQsendQuery(conn, "SELECT pg_sleep(4)"));
	at = expect_error_result(conn, 5000, &err);
	expect_error(&err, "FATAL", "08P01", "query timeout");
	/* Two deadlines in a row, each up to two ticks late. */
	expect_fired("query_timeout+cancel_wait", at - t0, 0.8, 2 * LATE_MS);
	cr_assert_eq(atomic_load(&relay.cancels_seen), 1, "sluice sent %d cancels",
	             atomic_load(&relay.cancels_seen));
	/* The cancel never arrived: the query still runs on that backend. */
	cr_assert_eq(h_pg_int("SELECT count(*) FROM pg_stat_activity WHERE pid = %ld "
	                      "AND state = 'active'", pid), 1);

	/* The pool opens a new server for the next client. */
	next = h_connect(H_ALICE, "dbname=relaydb");
	next_pid = h_query_int(next, "SELECT pg_backend_pid()");
	cr_assert_neq(next_pid, pid, "the closed server was reused");
	h_pg_exec("SELECT pg_terminate_backend(%ld)", pid);
	PQfinish(next);
	PQfinish(conn);
	/* The swallowed cancel connection ends here, before the shutdown
	 * (see sluice_exits_with_a_cancel_still_in_flight). */
	relay_stop(&relay);
	h_finish();
}

Test(timeouts, a_stuck_cancel_does_not_keep_its_server_forever)
{
	static struct relay relay;
	char dbs[256];
	PGconn *a, *b;
	PGresult *res;
	double released, served;

	h_require_sluice();
	relay_start(&relay, RELAY_SWALLOW, 0);
	snprintf(dbs, sizeof(dbs), "relaydb = host=127.0.0.1 port=%d dbname=%s",
	         relay.port, H_DBNAME);
	h_sluice_start("default_pool_size = 1\nquery_timeout = 0.3\n"
	               "cancel_wait_timeout = 0.5\nquery_wait_timeout = 2\n", dbs);
	a = h_connect(H_ALICE, "dbname=relaydb");
	b = h_connect(H_ALICE, "dbname=relaydb");
	/* a's query ends by itself after its cancel went out; the cancel never
	 * lands, so its server is held back (not reused)... */
	cr_assert_eq(h_query_int(a, "SELECT 1 FROM pg_sleep(0.5)"), 1);
	released = h_now();
	cr_assert_eq(atomic_load(&relay.cancels_seen), 1);
	/* ... but not for ever: cancel_wait_timeout bounds the wait, then the
	 * server is closed and the pool can open another. */
	cr_assert(PQsendQuery(b, "SELECT 2"));
	res = h_result_within(b, 6000);
	served = h_now();
	cr_assert(res, "no answer");
	cr_expect_eq(PQresultStatus(res), PGRES_TUPLES_OK, "the waiting client got: %s "
	             "(the held server never came back)", PQresultErrorMessage(res));
	PQclear(res);
	while ((res = h_result_within(b, 1000)) != NULL)
		PQclear(res);
	fprintf(stderr, "timing: stuck cancel: next client served %.0f ms after the "
	        "release (cancel_wait_timeout 500 ms, 300 ms of it spent before)\n",
	        (served - released) * 1000);
	/* At most the whole cancel_wait_timeout, late, plus a server login. */
	cr_expect_leq(served - released, 0.5 + LATE_MS / 1000 + 0.1,
	              "the server was held %.3f s for a cancel that never landed",
	              served - released);
	PQfinish(a);
	PQfinish(b);
	relay_stop(&relay);
	h_finish();
}

Test(timeouts, sluice_exits_with_a_cancel_still_in_flight)
{
	static struct relay relay;
	char dbs[256];
	PGconn *conn;
	struct h_error err;

	h_require_sluice();
	relay_start(&relay, RELAY_SWALLOW, 0);
	snprintf(dbs, sizeof(dbs), "relaydb = host=127.0.0.1 port=%d dbname=%s",
	         relay.port, H_DBNAME);
	h_sluice_start("default_pool_size = 1\nquery_timeout = 0.2\n"
	               "cancel_wait_timeout = 0.2\n", dbs);
	conn = h_connect(H_ALICE, "dbname=relaydb");
	cr_assert(PQsendQuery(conn, "SELECT pg_sleep(2)"));
	expect_error_result(conn, 5000, &err);
	expect_error(&err, "FATAL", "08P01", "query timeout");
	PQfinish(conn);
	/* Every client is gone; the cancel connection is still open (the
	 * relay holds it). SIGTERM must still end sluice. */
	h_finish();
	relay_stop(&relay);
	h_pg_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	          "WHERE query = 'SELECT pg_sleep(2)'");
}

Test(timeouts, a_late_cancel_holds_its_server_back)
{
	static struct relay relay;
	char dbs[256];
	PGconn *a, *b;
	double tb, first_done = 0, delivered;
	long pid_a;
	int queries = 0;

	h_require_sluice();
	relay_start(&relay, RELAY_DELAY, 1000);
	snprintf(dbs, sizeof(dbs), "relaydb = host=127.0.0.1 port=%d dbname=%s",
	         relay.port, H_DBNAME);
	h_sluice_start("default_pool_size = 1\nquery_timeout = 0.4\n"
	               "cancel_wait_timeout = 5\n", dbs);
	a = h_connect(H_ALICE, "dbname=relaydb");
	b = h_connect(H_ALICE, "dbname=relaydb");
	pid_a = h_query_int(a, "SELECT pg_backend_pid()");

	/* a's query outlives query_timeout but ends before its cancel lands. */
	cr_assert_eq(h_query_int(a, "SELECT 1 FROM pg_sleep(0.6)"), 1);
	cr_assert_eq(atomic_load(&relay.cancels_seen), 1);
	cr_assert_eq(atomic_load(&relay.delivered_us), 0, "the relay was too quick");

	/*
	 * b keeps a query running (each shorter than query_timeout) from now
	 * until well after the cancel lands. Had sluice handed b the server
	 * (the only one) before the cancel was delivered, the cancel would stop
	 * one of them.
	 */
	tb = h_now();
	while (h_now() < tb + 3) {
		PGresult *res;

		cr_assert(PQsendQuery(b, "SELECT pg_backend_pid() FROM pg_sleep(0.2)"));
		res = h_result_within(b, 10000);
		cr_assert(res);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK,
		             "a late cancel hit another client's query: %s",
		             PQresultErrorMessage(res));
		cr_assert_eq(atol(PQgetvalue(res, 0, 0)), pid_a);
		PQclear(res);
		cr_assert_null(h_result_within(b, 1000));
		if (!first_done)
			first_done = h_now();
		queries++;
		delivered = atomic_load(&relay.delivered_us) / 1e6;
		if (delivered > 0 && h_now() > delivered + 0.5)
			break;
	}
	delivered = atomic_load(&relay.delivered_us) / 1e6;
	cr_assert_gt(delivered, 0, "the relay never delivered the cancel");
	fprintf(stderr, "timing: b waited %.0f ms for the late cancel to land, "
	        "then ran %d queries\n", (delivered - tb) * 1000, queries);
	cr_expect_geq(first_done - delivered, 0.2 - EARLY_MS / 1000,
	              "b's first query ran before the cancel was delivered");
	PQfinish(a);
	PQfinish(b);
	h_finish();
	relay_stop(&relay);
}

/* ---- idle_transaction_timeout and transaction_timeout ---- */

Test(timeouts, idle_transaction_timeout_rolls_back_and_reuses_the_server)
{
	PGconn *a, *e, *idle, *next;
	struct told ta, te;
	long pid_a;
	double t0;

	h_require_sluice();
	h_pg_exec("DROP TABLE IF EXISTS itx_t");
	h_pg_exec("CREATE TABLE itx_t (x int)");
	h_sluice_start("default_pool_size = 1\nidle_transaction_timeout = 0.5\n", NULL);
	idle = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(idle, "SELECT 1"), 1);
	a = connect_told(H_ALICE, NULL, &ta);
	h_exec(a, "BEGIN");
	pid_a = h_query_int(a, "SELECT pg_backend_pid()");
	h_exec(a, "INSERT INTO itx_t VALUES (1)");
	t0 = h_now();
	cr_assert(await_close(a, 3000), "the client idle in transaction stayed");
	cr_assert_gt(ta.err_at, 0, "closed without an error message");
	expect_error(&ta.err, "FATAL", "08P01", "idle transaction timeout");
	expect_fired("idle_transaction_timeout", ta.err_at - t0, 0.5, LATE_MS);

	/* Rolled back, and the server (the only one) serves the next client. */
	cr_assert_eq(h_pg_int("SELECT count(*) FROM itx_t"), 0, "the insert survived");
	next = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(next, "SELECT pg_backend_pid()"), pid_a,
	             "the server was closed instead of rolled back");
	cr_assert_eq(h_query_int(next, "SELECT count(*) FROM itx_t"), 0);

	/* A failed transaction is a transaction too. */
	e = connect_told(H_ALICE, NULL, &te);
	h_exec(e, "BEGIN");
	h_exec_fails(e, "22012", "SELECT 1 / 0");
	t0 = h_now();
	cr_assert(await_close(e, 3000), "the client idle in a failed transaction stayed");
	expect_error(&te.err, "FATAL", "08P01", "idle transaction timeout");
	expect_fired("idle_transaction_timeout (E)", te.err_at - t0, 0.5, LATE_MS);

	/* Idle outside a transaction for over two limits: untouched. */
	cr_assert_eq(PQstatus(idle), CONNECTION_OK);
	cr_assert_eq(h_query_int(idle, "SELECT 2"), 2);
	PQfinish(idle);
	PQfinish(next);
	PQfinish(a);
	PQfinish(e);
	h_finish();
}

Test(timeouts, transaction_timeout_ends_long_transactions)
{
	PGconn *busy, *idle_in, *autocommit;
	struct told ti;
	struct h_error err;
	double t0, at;

	h_require_sluice();
	h_sluice_start("default_pool_size = 3\ntransaction_timeout = 0.6\n", NULL);
	busy = h_connect(H_ALICE, NULL);
	idle_in = connect_told(H_ALICE, NULL, &ti);
	autocommit = h_connect(H_ALICE, NULL);

	/* Running a query does not matter: the transaction is too old. */
	t0 = h_now();
	h_exec(busy, "BEGIN");
	cr_assert(PQsendQuery(busy, "SELECT pg_sleep(2)"));
	at = expect_error_result(busy, 5000, &err);
	expect_error(&err, "FATAL", "08P01", "transaction timeout");
	expect_fired("transaction_timeout (busy)", at - t0, 0.6, LATE_MS);

	/* Idle in it, likewise (idle_transaction_timeout is off). */
	t0 = h_now();
	h_exec(idle_in, "BEGIN");
	h_exec(idle_in, "SELECT 1");
	cr_assert(await_close(idle_in, 3000));
	expect_error(&ti.err, "FATAL", "08P01", "transaction timeout");
	expect_fired("transaction_timeout (idle)", ti.err_at - t0, 0.6, LATE_MS);

	/* Many short transactions over a longer time: never. */
	for (int i = 0; i < 6; i++)
		cr_assert_eq(h_query_int(autocommit, "SELECT %d FROM pg_sleep(0.2)", i), i);
	PQfinish(busy);
	PQfinish(idle_in);
	PQfinish(autocommit);
	h_finish();
}

/* ---- client timeouts ---- */

Test(timeouts, client_idle_timeout_closes_idle_clients_only)
{
	PGconn *idle, *chatty, *in_xact;
	struct told t;
	double t0, next_chat;
	bool closed = false;
	int chats = 0;

	h_require_sluice();
	h_sluice_start("default_pool_size = 2\nclient_idle_timeout = 0.5\n", NULL);
	in_xact = h_connect(H_ALICE, NULL);
	h_exec(in_xact, "BEGIN");
	h_exec(in_xact, "SELECT 1");
	chatty = h_connect(H_ALICE, NULL);
	idle = connect_told(H_ALICE, NULL, &t);
	t0 = h_now();
	next_chat = t0 + 0.2;
	/* Watch the idle one while the chatty one speaks every 200 ms. */
	while (h_now() < t0 + 1.2) {
		if (!closed)
			closed = await_close(idle, 10);
		else
			h_sleep_ms(10);
		if (h_now() >= next_chat) {
			cr_assert_eq(h_query_int(chatty, "SELECT %d", chats), chats);
			chats++;
			next_chat += 0.2;
		}
	}
	cr_assert(closed, "the idle client stayed");
	expect_error(&t.err, "FATAL", "08P01", "client_idle_timeout");
	expect_fired("client_idle_timeout", t.err_at - t0, 0.5, LATE_MS);
	cr_assert_eq(PQstatus(chatty), CONNECTION_OK);

	/* A client with a server linked (in a transaction) is not idle. */
	cr_assert_eq(h_query_int(in_xact, "SELECT 2"), 2);
	h_exec(in_xact, "COMMIT");
	PQfinish(in_xact);
	PQfinish(chatty);
	PQfinish(idle);
	h_finish();
}

Test(timeouts, client_login_timeout_closes_half_logged_in_clients)
{
	const char *params[] = { "user", H_ALICE, "database", H_DBNAME, NULL };
	uint8_t packet[256];
	size_t len = h_startup_packet(packet, sizeof(packet), 196608, params, true);
	struct h_error err;
	PGconn *conn;
	double t0;
	int half, stalled;
	char type;
	uint8_t body[64];
	size_t blen;

	h_require_sluice();
	h_sluice_start("client_login_timeout = 0.5\n", NULL);
	/* Half a startup packet, then nothing. */
	t0 = h_now();
	half = h_raw_connect();
	cr_assert(h_raw_send(half, packet, len / 2));
	/* A whole one, then no answer to the password request. */
	stalled = h_raw_connect();
	cr_assert(h_raw_send(stalled, packet, len));
	cr_assert_eq(h_raw_read_msg(stalled, 2000, &type, body, sizeof(body), &blen), 1);
	cr_assert_eq(type, 'R', "expected an authentication request, got '%c'", type);

	cr_assert(h_raw_expect_error(half, 3000, &err), "no error for the half packet");
	expect_error(&err, "FATAL", "08P01", "client_login_timeout");
	expect_fired("client_login_timeout", h_now() - t0, 0.5, LATE_MS);
	cr_assert(h_raw_closed(half, 1000), "the connection stayed open");
	cr_assert(h_raw_expect_error(stalled, 3000, &err), "no error for the stalled login");
	expect_error(&err, "FATAL", "08P01", "client_login_timeout");
	cr_assert(h_raw_closed(stalled, 1000), "the connection stayed open");
	close(half);
	close(stalled);

	conn = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
	PQfinish(conn);
	h_finish();
}

/* ---- server timeouts ---- */

#define ALICE_BACKENDS "SELECT count(*) FROM pg_stat_activity WHERE usename = '" \
	H_ALICE "' AND backend_type = 'client backend'"

Test(timeouts, server_idle_timeout_closes_idle_servers_above_min_pool_size)
{
	enum { N = 3 };
	PGconn *c[N], *pg;
	struct backends w = { .n = 0 };
	long pid[N];
	double committed[N], end;
	int closed = 0;

	h_require_sluice();
	h_sluice_start("default_pool_size = 4\nmin_pool_size = 1\n"
	               "server_idle_timeout = 0.5\n", NULL);
	pg = h_connect_pg();
	for (int i = 0; i < N; i++) {
		c[i] = h_connect(H_ALICE, NULL);
		h_exec(c[i], "BEGIN");
		pid[i] = h_query_int(c[i], "SELECT pg_backend_pid()");
	}
	sample_backends(pg, H_ALICE, &w);
	cr_assert_eq(w.n, N, "%d backends for %d clients in transactions", w.n, N);
	for (int i = 0; i < N; i++) {
		h_exec(c[i], "COMMIT");
		committed[i] = h_now();
		h_sleep_ms(100);
	}
	end = h_now() + 1.5;
	while (h_now() < end) {
		sample_backends(pg, H_ALICE, &w);
		h_sleep_ms(5);
	}
	for (int i = 0; i < N; i++) {
		struct backend *b = find_backend(&w, pid[i]);

		if (!b || !b->gone)
			continue;
		closed++;
		expect_fired("server_idle_timeout", b->gone - committed[i], 0.5, LATE_MS);
	}
	cr_assert_eq(closed, N - 1, "%d of %d idle servers closed; min_pool_size = 1",
	             closed, N);
	cr_assert_eq(h_pg_int(ALICE_BACKENDS), 1, "min_pool_size = 1 not kept");
	cr_assert_eq(h_query_int(c[0], "SELECT 1"), 1);
	for (int i = 0; i < N; i++)
		PQfinish(c[i]);
	PQfinish(pg);
	h_finish();
}

Test(timeouts, server_lifetime_is_spread_and_applies_to_idle_servers)
{
	enum { N = 6 };
	PGconn *c[N], *pg;
	struct backends w = { .n = 0 };
	long pid[N];
	double lo = 1e9, hi = 0, end;

	h_require_sluice();
	h_sluice_start("default_pool_size = 8\nserver_lifetime = 2\n", NULL);
	pg = h_connect_pg();
	for (int i = 0; i < N; i++) {
		c[i] = h_connect(H_ALICE, NULL);
		h_exec(c[i], "BEGIN");
		pid[i] = h_query_int(c[i], "SELECT pg_backend_pid()");
	}
	sample_backends(pg, H_ALICE, &w);
	for (int i = 0; i < N; i++)
		h_exec(c[i], "COMMIT");
	end = h_now() + 3;
	while (h_now() < end) {
		sample_backends(pg, H_ALICE, &w);
		h_sleep_ms(5);
	}
	for (int i = 0; i < N; i++) {
		struct backend *b = find_backend(&w, pid[i]);
		double life;

		cr_assert(b && b->gone, "backend %ld outlived server_lifetime", pid[i]);
		life = b->gone - b->started;
		/* Each server lives between 0.9 and 1.0 of the setting. */
		cr_expect_geq(life, 1.8 - EARLY_MS / 1000, "a server lived %.3f s", life);
		cr_expect_leq(life, 2.0 + LATE_MS / 1000, "a server lived %.3f s", life);
		lo = life < lo ? life : lo;
		hi = life > hi ? life : hi;
	}
	fprintf(stderr, "timing: server_lifetime 2000 ms: servers lived %.0f..%.0f ms "
	        "(allowed %.0f..%.0f)\n", lo * 1000, hi * 1000, 1800 - EARLY_MS,
	        2000 + LATE_MS);
	for (int i = 0; i < N; i++)
		PQfinish(c[i]);
	PQfinish(pg);
	h_finish();
}

Test(timeouts, server_lifetime_never_ends_a_transaction)
{
	PGconn *conn, *pg;
	struct backends w = { .n = 0 };
	struct backend *b;
	long pid;
	double committed, end;

	h_require_sluice();
	h_sluice_start("default_pool_size = 1\nserver_lifetime = 0.5\n", NULL);
	pg = h_connect_pg();
	conn = h_connect(H_ALICE, NULL);
	h_exec(conn, "BEGIN");
	pid = h_query_int(conn, "SELECT pg_backend_pid()");
	h_exec(conn, "CREATE TEMP TABLE life_t (x int) ON COMMIT DROP");
	h_sleep_ms(1200);
	cr_assert_eq(h_query_int(conn, "SELECT pg_backend_pid()"), pid);
	h_exec(conn, "INSERT INTO life_t VALUES (1)");
	h_exec(conn, "COMMIT");
	committed = h_now();
	end = committed + 0.5;
	while (h_now() < end) {
		sample_backends(pg, H_ALICE, &w);
		h_sleep_ms(5);
	}
	b = find_backend(&w, pid);
	cr_assert(!b || b->gone, "the server outlived server_lifetime after its release");
	if (b)
		fprintf(stderr, "timing: server_lifetime: closed %.0f ms after the release\n",
		        (b->gone - committed) * 1000);
	cr_assert_neq(h_query_int(conn, "SELECT pg_backend_pid()"), pid);
	PQfinish(conn);
	PQfinish(pg);
	h_finish();
}

Test(timeouts, server_connect_timeout_fails_the_login)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int hole = socket(AF_INET, SOCK_STREAM, 0);
	char dbs[256];
	struct h_error err;
	PGconn *conn;
	double t0, t1;

	h_require_sluice();
	/* Listens (so the kernel completes the connect), never answers. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(hole, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(listen(hole, 16) == 0);
	cr_assert(getsockname(hole, (struct sockaddr *)&sa, &len) == 0);
	snprintf(dbs, sizeof(dbs), "blackhole = host=127.0.0.1 port=%d dbname=x",
	         ntohs(sa.sin_port));
	h_sluice_start("server_connect_timeout = 0.5\nserver_login_retry = 5\n", dbs);
	t0 = h_now();
	cr_assert(h_connect_fails(H_ALICE, "dbname=blackhole", &err), "connected?");
	t1 = h_now();
	expect_error(&err, "FATAL", "08006",
	             "server_connect_timeout reached while connecting to the server");
	expect_fired("server_connect_timeout", t1 - t0, 0.5, LATE_MS);
	/* Within server_login_retry the next login fails at once. */
	t0 = h_now();
	cr_assert(h_connect_fails(H_ALICE, "dbname=blackhole", &err), "connected?");
	cr_expect_lt(h_now() - t0, 0.2, "the cached failure took %.3f s", h_now() - t0);
	expect_error(&err, "FATAL", "08006", "server login has been failing, cached "
	             "error: server_connect_timeout reached while connecting to the "
	             "server (server_login_retry)");
	/* Other databases do not care. */
	conn = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
	PQfinish(conn);
	h_finish();
	close(hole);
}

#define RETRY_DB "sluice_retry_db"

Test(timeouts, server_login_retry_caches_the_error_then_tries_again)
{
	struct h_error err;
	PGconn *conn = NULL;
	double failed, created, ok_at = 0;
	int cached = 0;

	h_require_sluice();
	h_pg_exec("DROP DATABASE IF EXISTS " RETRY_DB " WITH (FORCE)");
	h_sluice_start("server_login_retry = 1\n",
	               "retrydb = host=127.0.0.1 port=%PGPORT% dbname=" RETRY_DB);
	/* The first login gets PostgreSQL's own error. */
	cr_assert(h_connect_fails(H_ALICE, "dbname=retrydb", &err), "connected?");
	failed = h_now();
	expect_error(&err, "FATAL", "3D000", "database \"" RETRY_DB "\" does not exist");
	/* The next ones, in the window, fail at once with it cached. */
	cr_assert(h_connect_fails(H_ALICE, "dbname=retrydb", &err), "connected?");
	cr_expect_lt(h_now() - failed, 0.2);
	expect_error(&err, "FATAL", "08006", "server login has been failing, cached "
	             "error: database \"" RETRY_DB "\" does not exist (server_login_retry)");

	/* Fix the cause: the first login after the window works. */
	h_pg_exec("CREATE DATABASE " RETRY_DB);
	created = h_now();
	while (!conn && h_now() < failed + 5) {
		char e[512];

		conn = h_try_connect(H_ALICE, "dbname=retrydb", e, sizeof(e));
		if (conn) {
			ok_at = h_now();
			break;
		}
		cr_assert(strstr(e, "(server_login_retry)"), "a fresh attempt in the "
		          "window, or a new error: %s", e);
		cached++;
		h_sleep_ms(20);
	}
	cr_assert(conn, "no login within 5 s of the failure");
	fprintf(stderr, "timing: server_login_retry 1000 ms: database ready after "
	        "%.0f ms, login worked after %.0f ms (%d cached failures on the way)\n",
	        (created - failed) * 1000, (ok_at - failed) * 1000, cached);
	cr_expect_geq(ok_at - failed, 1.0 - EARLY_MS / 1000,
	              "a new login was tried %.3f s after the failure", ok_at - failed);
	if (created - failed < 0.9)
		expect_fired("server_login_retry", ok_at - failed, 1.0, LATE_MS + 100);
	cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
	PQfinish(conn);
	h_finish();
	h_pg_exec("DROP DATABASE IF EXISTS " RETRY_DB " WITH (FORCE)");
}

Test(timeouts, server_login_retry_after_a_wrong_password)
{
	struct h_error err;

	h_require_sluice();
	create_dave();
	h_sluice_start("server_login_retry = 5\n",
	               "davebad = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME
	               " user=" DAVE " password=wrong");
	cr_assert(h_connect_fails(H_ALICE, "dbname=davebad", &err), "connected?");
	expect_error(&err, "FATAL", "28P01",
	             "password authentication failed for user \"" DAVE "\"");
	cr_assert(h_connect_fails(H_BOB, "dbname=davebad", &err), "connected?");
	expect_error(&err, "FATAL", "08006", "server login has been failing, cached "
	             "error: password authentication failed for user \"" DAVE "\" "
	             "(server_login_retry)");
	h_finish();
}

/* ---- query_wait_notify ---- */

Test(timeouts, query_wait_notify_tells_a_queued_client_once)
{
	PGconn *holder, *waiter;
	struct told t;
	PGresult *res;
	double t0;

	h_require_sluice();
	h_sluice_start("default_pool_size = 1\nquery_wait_notify = 0.3\n"
	               "query_wait_timeout = 10\n", NULL);
	holder = h_connect(H_ALICE, NULL);
	waiter = connect_told(H_ALICE, NULL, &t);
	h_exec(holder, "BEGIN");
	h_exec(holder, "SELECT 1");
	t0 = h_now();
	cr_assert(PQsendQuery(waiter, "SELECT 42"));
	cr_assert_null(h_result_within(waiter, 1000), "served while the pool was busy");
	h_exec(holder, "COMMIT");
	res = h_result_within(waiter, 5000);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "42");
	PQclear(res);
	cr_assert_null(h_result_within(waiter, 1000));
	cr_assert_eq(t.notices, 1, "%d notices in one wait", t.notices);
	cr_assert_str_eq(t.notice, "no server connection available yet, client is "
	                 "queued (query_wait_notify)");
	expect_fired("query_wait_notify", t.notice_at - t0, 0.3, LATE_MS);
	PQfinish(waiter);
	PQfinish(holder);
	h_finish();
}

/* ---- autodb_idle_timeout ---- */

/* Rows of SHOW POOLS for database db. */
static int pool_rows(PGconn *admin, const char *db)
{
	PGresult *res = PQexec(admin, "SHOW POOLS");
	int n = 0;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
	for (int r = 0; r < PQntuples(res); r++)
		n += strcmp(PQgetvalue(res, r, PQfnumber(res, "database")), db) == 0;
	PQclear(res);
	return n;
}

Test(timeouts, autodb_idle_timeout_drops_unused_automatic_pools)
{
	PGconn *auto_client, *fixed, *admin;
	double t0, gone = 0;

	h_require_sluice();
	h_sluice_start("autodb_idle_timeout = 0.5\n", "* = host=127.0.0.1 port=%PGPORT%");
	admin = h_connect(H_ADMIN, "dbname=sluice");
	auto_client = h_connect(H_ALICE, "dbname=postgres");
	fixed = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(auto_client, "SELECT 1"), 1);
	cr_assert_eq(h_query_int(fixed, "SELECT 1"), 1);
	cr_assert_eq(pool_rows(admin, "postgres"), 1);
	/* A pool with a client is kept however long it idles. */
	h_sleep_ms(800);
	cr_assert_eq(pool_rows(admin, "postgres"), 1, "removed with a client");

	PQfinish(auto_client);
	PQfinish(fixed);
	t0 = h_now();
	while (h_now() < t0 + 2 && !gone) {
		if (pool_rows(admin, "postgres") == 0)
			gone = h_now();
		h_sleep_ms(5);
	}
	cr_assert(gone, "the automatic pool stayed");
	expect_fired("autodb_idle_timeout", gone - t0, 0.5, LATE_MS);
	cr_assert(pg_wait_for(0, 2000, "SELECT count(*) FROM pg_stat_activity WHERE "
	                      "datname = 'postgres' AND usename = '" H_ALICE "'"),
	          "the pool's server is still there");
	/* A pool of a [databases] entry is not automatic: kept. */
	cr_assert_eq(pool_rows(admin, H_DBNAME), 1);
	PQfinish(admin);
	/* And the database is still reachable: the pool comes back. */
	auto_client = h_connect(H_ALICE, "dbname=postgres");
	cr_assert_eq(h_query_int(auto_client, "SELECT 2"), 2);
	PQfinish(auto_client);
	h_finish();
}

/* ---- reload ---- */

/* Appends lines to the [sluice] section (the last one the harness
 * writes) and reloads with SIGHUP; waits for the reload to be logged. */
static void reload_with(const char *lines)
{
	char path[1024];
	FILE *f;
	char *log = h_sluice_log();
	char *p = log;
	int before = 0;

	while ((p = strstr(p, "configuration reloaded")) != NULL) {
		before++;
		p++;
	}
	free(log);
	snprintf(path, sizeof(path), "%s/sluice.ini", h_test_dir());
	f = fopen(path, "a");
	cr_assert(f);
	fputs(lines, f);
	fclose(f);
	cr_assert(kill(h_sluice_pid(), SIGHUP) == 0);
	for (double deadline = h_now() + 5; h_now() < deadline; h_sleep_ms(20)) {
		int after = 0;

		log = h_sluice_log();
		for (p = log; (p = strstr(p, "configuration reloaded")) != NULL; p++)
			after++;
		free(log);
		/* sluice.log and sluice.out both have the line. */
		if (after > before)
			return;
	}
	cr_assert_fail("the reload was not logged");
}

Test(timeouts, reload_changes_the_timeouts_of_running_pools)
{
	PGconn *conn, *idle_in;
	struct h_error err;
	struct told t;
	double t0, at;

	h_require_sluice();
	h_sluice_start("default_pool_size = 2\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	idle_in = connect_told(H_ALICE, NULL, &t);
	/* The pool exists and has run queries under the old settings. */
	cr_assert_eq(h_query_int(conn, "SELECT 1 FROM pg_sleep(0.4)"), 1);
	reload_with("query_timeout = 0.3\nidle_transaction_timeout = 0.5\n");

	t0 = h_now();
	cr_assert(PQsendQuery(conn, "SELECT pg_sleep(2)"));
	at = expect_error_result(conn, 5000, &err);
	expect_error(&err, "ERROR", "57014",
	             "query timeout: canceling statement after query_timeout (300 ms)");
	expect_fired("query_timeout (after reload)", at - t0, 0.3, LATE_MS);

	h_exec(idle_in, "BEGIN");
	h_exec(idle_in, "SELECT 1");
	t0 = h_now();
	cr_assert(await_close(idle_in, 3000), "idle_transaction_timeout did not apply");
	expect_error(&t.err, "FATAL", "08P01", "idle transaction timeout");
	expect_fired("idle_transaction_timeout (reload)", t.err_at - t0, 0.5, LATE_MS);

	/* And back off again. */
	reload_with("query_timeout = 0\n");
	cr_assert_eq(h_query_int(conn, "SELECT 2 FROM pg_sleep(0.5)"), 2);
	PQfinish(conn);
	PQfinish(idle_in);
	h_finish();
}
