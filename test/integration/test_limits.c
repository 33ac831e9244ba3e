/*
 * test_limits.c - how many clients and servers sluice lets in: the client
 * caps (max_client_conn, max_db_client_connections,
 * max_user_client_connections), the server caps per pool (pool_size at
 * each level, min_pool_size, the reserve pool) and per database or user
 * (max_db_connections, max_user_connections), per-user overrides, and load:
 * two thousand busy clients on ten servers, ten thousand idle ones.
 *
 * Server counts are what PostgreSQL reports in pg_stat_activity, sampled
 * by a thread while the load runs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "harness.h"

TestSuite(limits, .fini = h_teardown, .timeout = 120);

/* ---- connection caps ---- */

static void expect_refused(const char *user, const char *extra, const char *sqlstate,
                           const char *message)
{
	struct h_error err;

	cr_assert(h_connect_fails(user, extra, &err), "%s (%s) got in past the limit",
	          user, extra ? extra : "");
	cr_expect_str_eq(err.severity, "FATAL", "%s %s", err.severity, err.message);
	cr_expect_str_eq(err.sqlstate, sqlstate, "%s %s", err.sqlstate, err.message);
	cr_expect_str_eq(err.message, message);
}

/* A connection that just closed may take sluice a moment to count out. */
static PGconn *connect_soon(const char *user, const char *extra)
{
	double deadline = h_now() + 2;
	char err[512];
	PGconn *conn;

	while (!(conn = h_try_connect(user, extra, err, sizeof(err))) && h_now() < deadline)
		h_sleep_ms(20);
	cr_assert(conn, "no slot came free: %s", err);
	return conn;
}

Test(limits, max_client_conn_refuses_the_next_client)
{
	PGconn *c[3], *again;

	h_require_sluice();
	h_sluice_start("max_client_conn = 3\n", NULL);
	for (int i = 0; i < 3; i++)
		c[i] = h_connect(i == 2 ? H_BOB : H_ALICE, NULL);
	expect_refused(H_ALICE, NULL, "08P01", "no more connections allowed (max_client_conn)");
	expect_refused(H_CAROL, NULL, "08P01", "no more connections allowed (max_client_conn)");
	/* The ones inside are unaffected; a slot that frees is reusable. */
	cr_assert_eq(h_query_int(c[0], "SELECT 1"), 1);
	PQfinish(c[1]);
	again = connect_soon(H_CAROL, NULL);
	cr_assert_eq(h_query_int(again, "SELECT 2"), 2);
	expect_refused(H_ALICE, NULL, "08P01", "no more connections allowed (max_client_conn)");
	PQfinish(again);
	PQfinish(c[0]);
	PQfinish(c[2]);
	h_finish();
}

#define DB_CAP_MSG "client connections exceeded (max_db_client_connections)"
#define USER_CAP_MSG "client connections exceeded (max_user_client_connections)"

Test(limits, max_db_client_connections_main_and_per_database)
{
	PGconn *a, *b, *other, *capped, *x;

	h_require_sluice();
	h_sluice_start("max_db_client_connections = 2\n",
	               "other = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME "\n"
	               "capped = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME
	               " max_db_client_connections=1");
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_BOB, NULL);
	/* Counted per database name, whoever the user. */
	expect_refused(H_CAROL, NULL, "08P01", DB_CAP_MSG);
	other = h_connect(H_CAROL, "dbname=other");
	/* The entry's own cap wins over the main section's. */
	capped = h_connect(H_ALICE, "dbname=capped");
	expect_refused(H_BOB, "dbname=capped", "08P01", DB_CAP_MSG);
	cr_assert_eq(h_query_int(capped, "SELECT 1"), 1);
	PQfinish(a);
	x = connect_soon(H_CAROL, NULL);
	cr_assert_eq(h_query_int(x, "SELECT 1"), 1);
	PQfinish(x);
	PQfinish(b);
	PQfinish(other);
	PQfinish(capped);
	h_finish();
}

Test(limits, max_user_client_connections_main_and_per_user)
{
	PGconn *a1, *a2, *b1, *c[3];

	h_require_sluice();
	h_sluice_start("max_user_client_connections = 2\n",
	               "other = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME "\n"
	               "[users]\n"
	               H_BOB " = max_user_client_connections=1\n"
	               H_CAROL " = max_user_client_connections=3");
	/* Counted per user, across databases. */
	a1 = h_connect(H_ALICE, NULL);
	a2 = h_connect(H_ALICE, "dbname=other");
	expect_refused(H_ALICE, NULL, "08P01", USER_CAP_MSG);
	expect_refused(H_ALICE, "dbname=other", "08P01", USER_CAP_MSG);
	/* A [users] entry's cap wins over the main section's, down or up. */
	b1 = h_connect(H_BOB, NULL);
	expect_refused(H_BOB, "dbname=other", "08P01", USER_CAP_MSG);
	for (int i = 0; i < 3; i++)
		c[i] = h_connect(H_CAROL, NULL);
	expect_refused(H_CAROL, NULL, "08P01", USER_CAP_MSG);
	PQfinish(b1);
	b1 = connect_soon(H_BOB, "dbname=other");
	cr_assert_eq(h_query_int(b1, "SELECT 1"), 1);
	for (int i = 0; i < 3; i++)
		PQfinish(c[i]);
	PQfinish(a1);
	PQfinish(a2);
	PQfinish(b1);
	h_finish();
}

/* ---- load: clients in threads, backends sampled in another ---- */

#define MAX_SAMPLES 20000

/* Samples how many backends match a condition, until stopped. */
struct poller {
	char where[256];           /* SQL condition on pg_stat_activity */
	atomic_bool stop;
	long max;
	int n;                     /* samples taken */
	double at[MAX_SAMPLES];    /* h_now() of each */
	int count[MAX_SAMPLES];
	pthread_t thread;
};

static void *poller_main(void *arg)
{
	struct poller *p = arg;
	char conninfo[256], sql[512];
	PGconn *pg;

	snprintf(conninfo, sizeof(conninfo), "host=%s port=%d user=%s dbname=%s "
	         "sslmode=disable", h_pg_host(), h_pg_port(), H_SUPERUSER, H_DBNAME);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_stat_activity WHERE "
	         "backend_type = 'client backend' AND pid <> pg_backend_pid() AND (%s)",
	         p->where);
	pg = PQconnectdb(conninfo);
	while (!atomic_load(&p->stop) && PQstatus(pg) == CONNECTION_OK) {
		PGresult *res = PQexec(pg, sql);

		if (PQresultStatus(res) == PGRES_TUPLES_OK && p->n < MAX_SAMPLES) {
			long v = atol(PQgetvalue(res, 0, 0));

			p->at[p->n] = h_now();
			p->count[p->n++] = (int)v;
			if (v > p->max)
				p->max = v;
		}
		PQclear(res);
		h_sleep_ms(5);
	}
	PQfinish(pg);
	return NULL;
}

/* Starts sampling; where is a condition such as "usename = 'alice'". */
static struct poller *poller_start(const char *where)
{
	struct poller *p = calloc(1, sizeof(*p));

	cr_assert(p);
	snprintf(p->where, sizeof(p->where), "%s", where);
	cr_assert(pthread_create(&p->thread, NULL, poller_main, p) == 0);
	return p;
}

static void poller_stop(struct poller *p)
{
	atomic_store(&p->stop, true);
	pthread_join(p->thread, NULL);
}

/* A group of clients of one user and database running transactions. */
struct load {
	const char *user;
	const char *extra;         /* conninfo, e.g. "dbname=x"; NULL: none */
	const char *sql;           /* run inside each transaction */
	int clients;
	int transactions;          /* per client */
	atomic_int committed;
	atomic_int failures;
	pthread_mutex_t lock;
	char first_error[512];
	pthread_t threads[64];
};

static void load_failed(struct load *l, const char *what)
{
	pthread_mutex_lock(&l->lock);
	if (!l->first_error[0])
		snprintf(l->first_error, sizeof(l->first_error), "%s", what);
	pthread_mutex_unlock(&l->lock);
	atomic_fetch_add(&l->failures, 1);
}

static void *load_client(void *arg)
{
	struct load *l = arg;
	char err[512];
	PGconn *conn = h_try_connect(l->user, l->extra, err, sizeof(err));

	if (!conn) {
		load_failed(l, err);
		return NULL;
	}
	for (int i = 0; i < l->transactions; i++) {
		if (!h_try_exec(conn, "BEGIN", err, sizeof(err)) ||
		    !h_try_exec(conn, l->sql, err, sizeof(err)) ||
		    !h_try_exec(conn, "COMMIT", err, sizeof(err))) {
			load_failed(l, err);
			break;
		}
		atomic_fetch_add(&l->committed, 1);
	}
	PQfinish(conn);
	return NULL;
}

static void load_start(struct load *l)
{
	cr_assert(l->clients <= 64);
	pthread_mutex_init(&l->lock, NULL);
	for (int i = 0; i < l->clients; i++)
		cr_assert(pthread_create(&l->threads[i], NULL, load_client, l) == 0);
}

/* Waits for the clients; asserts every transaction went through. */
static void load_finish(struct load *l)
{
	for (int i = 0; i < l->clients; i++)
		pthread_join(l->threads[i], NULL);
	cr_expect_eq(atomic_load(&l->failures), 0, "%s: %d clients failed, first: %s",
	             l->user, atomic_load(&l->failures), l->first_error);
	cr_expect_eq(atomic_load(&l->committed), l->clients * l->transactions,
	             "%s: %d of %d transactions committed", l->user,
	             atomic_load(&l->committed), l->clients * l->transactions);
}

#define BACKENDS_OF(user) "usename = '" user "' AND datname = '" H_DBNAME "'"

Test(limits, pool_size_default_per_database_and_per_user)
{
	static struct load alice = {
		.user = H_ALICE, .extra = NULL, .sql = "SELECT pg_sleep(0.05)",
		.clients = 8, .transactions = 5,
	};
	static struct load bob = {
		.user = H_BOB, .extra = NULL, .sql = "SELECT pg_sleep(0.05)",
		.clients = 8, .transactions = 5,
	};
	static struct load carol = {
		.user = H_CAROL, .extra = "dbname=small", .sql = "SELECT pg_sleep(0.05)",
		.clients = 8, .transactions = 5,
	};
	struct poller *pa, *pb, *pc;

	h_require_sluice();
	h_sluice_start("default_pool_size = 3\n",
	               "small = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME " pool_size=1\n"
	               "[users]\n" H_ALICE " = pool_size=2");
	pa = poller_start(BACKENDS_OF(H_ALICE));
	pb = poller_start(BACKENDS_OF(H_BOB));
	pc = poller_start(BACKENDS_OF(H_CAROL));
	load_start(&alice);
	load_start(&bob);
	load_start(&carol);
	load_finish(&alice);
	load_finish(&bob);
	load_finish(&carol);
	poller_stop(pa);
	poller_stop(pb);
	poller_stop(pc);
	fprintf(stderr, "limits: most backends seen: alice %ld (pool_size=2 in [users]), "
	        "bob %ld (default_pool_size=3), carol %ld (pool_size=1 in [databases])\n",
	        pa->max, pb->max, pc->max);
	cr_expect_eq(pa->max, 2, "alice: %ld servers, [users] pool_size=2", pa->max);
	cr_expect_eq(pb->max, 3, "bob: %ld servers, default_pool_size=3", pb->max);
	cr_expect_eq(pc->max, 1, "carol: %ld servers, database pool_size=1", pc->max);
	free(pa);
	free(pb);
	free(pc);
	h_finish();
}

#define ALICE_BACKENDS "SELECT count(*) FROM pg_stat_activity WHERE " BACKENDS_OF(H_ALICE)

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

Test(limits, min_pool_size_keeps_servers_warm)
{
	PGconn *conn;
	double t0;

	h_require_sluice();
	h_sluice_start("default_pool_size = 5\nmin_pool_size = 3\n"
	               "server_idle_timeout = 0.2\n", NULL);
	t0 = h_now();
	conn = h_connect(H_ALICE, NULL);
	cr_assert(pg_wait_for(3, 2000, ALICE_BACKENDS), "min_pool_size = 3 not reached");
	fprintf(stderr, "limits: min_pool_size = 3 reached %.0f ms after the first login\n",
	        (h_now() - t0) * 1000);
	/* Kept through several server_idle_timeouts. */
	for (int i = 0; i < 10; i++) {
		h_sleep_ms(100);
		cr_assert_eq(h_pg_int(ALICE_BACKENDS), 3, "min_pool_size not kept");
	}
	/* And replaced when one goes. */
	h_pg_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
	          BACKENDS_OF(H_ALICE) " LIMIT 1");
	t0 = h_now();
	h_sleep_ms(50);
	cr_assert(pg_wait_for(3, 2000, ALICE_BACKENDS), "the lost server was not replaced");
	fprintf(stderr, "limits: a lost min_pool_size server replaced within %.0f ms\n",
	        (h_now() - t0) * 1000);
	cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
	/* Never more than min_pool_size while idle. */
	h_sleep_ms(300);
	cr_assert_eq(h_pg_int(ALICE_BACKENDS), 3);
	PQfinish(conn);
	h_finish();
}

Test(limits, reserve_pool_opens_after_reserve_pool_timeout)
{
	static struct load alice = {
		.user = H_ALICE, .extra = NULL, .sql = "SELECT pg_sleep(1.5)",
		.clients = 6, .transactions = 1,
	};
	struct poller *p;
	PGconn *warm;
	double t0, first_over = 0, last_at_two = 0;

	h_require_sluice();
	h_sluice_start("default_pool_size = 2\nreserve_pool_size = 2\n"
	               "reserve_pool_timeout = 0.5\nquery_wait_timeout = 20\n", NULL);
	/* Both regular servers up front, so the clock below is the wait. */
	warm = h_connect(H_ALICE, NULL);
	h_exec(warm, "BEGIN");
	cr_assert_eq(h_query_int(warm, "SELECT 1"), 1);
	{
		PGconn *second = h_connect(H_ALICE, NULL);

		cr_assert_eq(h_query_int(second, "SELECT 2"), 2);
		PQfinish(second);
	}
	h_exec(warm, "COMMIT");
	PQfinish(warm);
	cr_assert(pg_wait_for(2, 2000, ALICE_BACKENDS));
	p = poller_start(BACKENDS_OF(H_ALICE));
	h_sleep_ms(50);
	t0 = h_now();
	load_start(&alice);
	load_finish(&alice);
	poller_stop(p);
	for (int i = 0; i < p->n; i++) {
		if (p->count[i] > 2 && !first_over)
			first_over = p->at[i];
		if (p->count[i] <= 2 && p->at[i] > t0 && !first_over)
			last_at_two = p->at[i];
	}
	cr_assert(first_over, "the reserve pool never opened (most backends: %ld)", p->max);
	fprintf(stderr, "timing: reserve_pool_timeout 500 ms: extra servers seen %.0f ms "
	        "after the clients started (a sample at 2 servers %.0f ms in); most: %ld\n",
	        (first_over - t0) * 1000, (last_at_two - t0) * 1000, p->max);
	cr_expect_geq(first_over - t0, 0.5 - 0.01, "the reserve opened %.0f ms early",
	              (0.5 - (first_over - t0)) * 1000);
	/* A tick late at most, plus the server's login. */
	cr_expect_leq(first_over - t0, 0.5 + 0.25, "the reserve opened late");
	cr_expect_eq(p->max, 4, "%ld servers: pool_size 2 + reserve_pool_size 2", p->max);
	free(p);
	h_finish();
}

#define TWO_USERS "datname = '" H_DBNAME "' AND usename IN ('" H_ALICE "', '" H_BOB "')"

Test(limits, max_db_connections_is_shared_and_starves_no_pool)
{
	static struct load alice = {
		.user = H_ALICE, .extra = NULL, .sql = "SELECT pg_sleep(0.05)",
		.clients = 10, .transactions = 3,
	};
	static struct load bob = {
		.user = H_BOB, .extra = NULL, .sql = "SELECT pg_sleep(0.05)",
		.clients = 10, .transactions = 3,
	};
	struct poller *p;

	h_require_sluice();
	h_sluice_start("default_pool_size = 3\nmax_db_connections = 3\n"
	               "query_wait_timeout = 30\n", NULL);
	p = poller_start(TWO_USERS);
	load_start(&alice);
	load_start(&bob);
	load_finish(&alice);
	load_finish(&bob);
	poller_stop(p);
	fprintf(stderr, "limits: max_db_connections = 3: most backends of alice+bob %ld\n",
	        p->max);
	cr_expect_leq(p->max, 3, "%ld servers on the database, max_db_connections = 3",
	              p->max);
	cr_expect_geq(p->max, 2);
	free(p);
	h_finish();
}

/*
 * More pools on one max_db_connections budget than the budget has servers:
 * a pool with no server yet needs one for its clients' login (the welcome)
 * and must get the next one freed, not only pools with queued queries.
 * From PgBouncer's test_limits (five users on max_db_connections = 4).
 */
Test(limits, max_db_connections_serves_pools_still_logging_in)
{
	static struct load loads[] = {
		{ .user = H_ALICE, .sql = "SELECT pg_sleep(0.3)", .clients = 4,
		  .transactions = 2 },
		{ .user = H_BOB, .sql = "SELECT pg_sleep(0.3)", .clients = 3,
		  .transactions = 2 },
		{ .user = H_CAROL, .sql = "SELECT pg_sleep(0.3)", .clients = 3,
		  .transactions = 2 },
	};
	double t0;

	h_require_sluice();
	h_sluice_start("default_pool_size = 2\nmax_db_connections = 2\n"
	               "query_wait_timeout = 20\nclient_login_timeout = 20\n",
	               NULL);
	t0 = h_now();
	for (size_t i = 0; i < 3; i++)
		load_start(&loads[i]);
	for (size_t i = 0; i < 3; i++)
		load_finish(&loads[i]);
	/* 20 transactions of 0.3 s on 2 servers: 3 s of work. */
	fprintf(stderr, "limits: 3 pools on max_db_connections = 2 served in %.1f s\n",
	        h_now() - t0);
	cr_expect_lt(h_now() - t0, 10.0, "a pool waited for a server it never got");
	h_finish();
}

#define SECOND_DB "sluice_test2"

Test(limits, max_user_connections_is_shared_across_databases)
{
	static struct load on_a = {
		.user = H_ALICE, .extra = "dbname=db_a", .sql = "SELECT pg_sleep(0.05)",
		.clients = 8, .transactions = 3,
	};
	static struct load on_b = {
		.user = H_ALICE, .extra = "dbname=db_b", .sql = "SELECT pg_sleep(0.05)",
		.clients = 8, .transactions = 3,
	};
	struct poller *p;

	h_require_sluice();
	if (h_pg_int("SELECT count(*) FROM pg_database WHERE datname = '" SECOND_DB "'") == 0)
		h_pg_exec("CREATE DATABASE " SECOND_DB " OWNER " H_ALICE);
	h_sluice_start("default_pool_size = 3\nmax_user_connections = 3\n"
	               "query_wait_timeout = 30\n",
	               "db_a = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME "\n"
	               "db_b = host=127.0.0.1 port=%PGPORT% dbname=" SECOND_DB);
	p = poller_start("usename = '" H_ALICE "'");
	load_start(&on_a);
	load_start(&on_b);
	load_finish(&on_a);
	load_finish(&on_b);
	poller_stop(p);
	fprintf(stderr, "limits: max_user_connections = 3: most backends of alice on "
	        "two databases %ld\n", p->max);
	cr_expect_leq(p->max, 3, "%ld servers for alice, max_user_connections = 3", p->max);
	cr_expect_geq(p->max, 2);
	free(p);
	h_finish();
}

Test(limits, per_user_overrides_apply_to_their_user_only)
{
	PGconn *a, *b;
	PGresult *res;
	struct h_error err;
	double t0;

	h_require_sluice();
	h_sluice_start("default_pool_size = 2\n",
	               "[users]\n" H_ALICE " = query_timeout=0.3 idle_transaction_timeout=0.5");
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_BOB, NULL);
	/* query_timeout */
	t0 = h_now();
	cr_assert(PQsendQuery(a, "SELECT pg_sleep(1)"));
	res = h_result_within(a, 5000);
	cr_assert(res);
	h_result_error(res, &err);
	PQclear(res);
	cr_assert_null(h_result_within(a, 1000));
	cr_expect_str_eq(err.sqlstate, "57014", "%s", err.message);
	cr_expect_str_eq(err.message, "query timeout: canceling statement after "
	                 "query_timeout (300 ms)");
	cr_expect_lt(h_now() - t0, 0.3 + 0.2);
	cr_assert_eq(h_query_int(b, "SELECT 1 FROM pg_sleep(1)"), 1,
	             "bob's query was canceled by alice's query_timeout");
	/* idle_transaction_timeout */
	h_exec(a, "BEGIN");
	h_exec(b, "BEGIN");
	h_exec(a, "SELECT 1");
	h_exec(b, "SELECT 1");
	h_sleep_ms(1000);
	res = PQexec(a, "SELECT 2");
	cr_assert_neq(PQresultStatus(res), PGRES_TUPLES_OK, "alice idled in a "
	              "transaction past her idle_transaction_timeout");
	PQclear(res);
	cr_assert_eq(PQstatus(a), CONNECTION_BAD);
	cr_assert_eq(h_query_int(b, "SELECT 2"), 2);
	h_exec(b, "COMMIT");
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

/* ---- many clients ---- */

static void raise_fd_limit(void)
{
	struct rlimit rl;

	cr_assert(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = rl.rlim_max;
	cr_assert(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

static long fd_limit(void)
{
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	return (long)rl.rlim_cur;
}

#define BUSY_CLIENTS 2000
#define BUSY_POOL 10
#define BUSY_CONNECTING 200     /* logins in flight at once */

enum busy_step {
	BUSY_UNSTARTED,
	BUSY_CONNECT,       /* PQconnectPoll until ready */
	BUSY_READY,         /* logged in, waiting for the others */
	BUSY_BEGIN,         /* each sends its statement, waits for the end */
	BUSY_INSERT,
	BUSY_COMMIT,
	BUSY_DONE,
	BUSY_FAILED,
};

struct busy {
	PGconn *conn;
	enum busy_step step;
	PostgresPollingStatusType polling;
	bool step_failed;           /* an error result in this step */
};

static char busy_error[512];

static void busy_fail(struct busy *b, const char *what)
{
	if (!busy_error[0])
		snprintf(busy_error, sizeof(busy_error), "%s: %s", what,
		         b->conn ? PQerrorMessage(b->conn) : "out of memory");
	b->step = BUSY_FAILED;
}

static void busy_send(struct busy *b, int id)
{
	char sql[128];

	switch (b->step) {
	case BUSY_BEGIN:
		snprintf(sql, sizeof(sql), "BEGIN");
		break;
	case BUSY_INSERT:
		snprintf(sql, sizeof(sql), "INSERT INTO busy_t VALUES (%d, pg_backend_pid())", id);
		break;
	case BUSY_COMMIT:
		snprintf(sql, sizeof(sql), "COMMIT");
		break;
	case BUSY_UNSTARTED:
	case BUSY_CONNECT:
	case BUSY_READY:
	case BUSY_DONE:
	case BUSY_FAILED:
		return;
	}
	if (!PQsendQuery(b->conn, sql))
		busy_fail(b, sql);
}

/* Reads what came; on the end of a statement's results starts the next. */
static void busy_read(struct busy *b, int id)
{
	PGresult *res;

	if (!PQconsumeInput(b->conn))
		return busy_fail(b, "read");
	while (!PQisBusy(b->conn)) {
		res = PQgetResult(b->conn);
		if (!res) {
			if (b->step_failed)
				return busy_fail(b, "statement");
			b->step++;
			return busy_send(b, id);
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			if (!busy_error[0])
				snprintf(busy_error, sizeof(busy_error), "client %d: %s", id,
				         PQresultErrorMessage(res));
			b->step_failed = true;
		}
		PQclear(res);
	}
}

static void busy_connect_step(struct busy *b)
{
	b->polling = PQconnectPoll(b->conn);
	if (b->polling == PGRES_POLLING_OK) {
		b->step = BUSY_READY;
		PQsetnonblocking(b->conn, 1);
	} else if (b->polling == PGRES_POLLING_FAILED) {
		busy_fail(b, "connect");
	}
}

/* Counts clients in step; fills p with the ones to poll (all steps that
 * wait for the network). */
static int busy_pollfds(struct busy *c, int n, struct pollfd *p, int *idx,
                        int *connecting)
{
	int np = 0;

	*connecting = 0;
	for (int i = 0; i < n; i++) {
		short events = POLLIN;

		if (c[i].step == BUSY_CONNECT) {
			(*connecting)++;
			events = c[i].polling == PGRES_POLLING_WRITING ? POLLOUT : POLLIN;
		} else if (c[i].step < BUSY_BEGIN || c[i].step > BUSY_COMMIT) {
			continue;
		}
		if (c[i].step != BUSY_CONNECT && PQflush(c[i].conn) == 1)
			events |= POLLOUT;
		p[np] = (struct pollfd){ PQsocket(c[i].conn), events, 0 };
		idx[np++] = i;
	}
	return np;
}

static int count_step(const struct busy *c, int n, enum busy_step step)
{
	int k = 0;

	for (int i = 0; i < n; i++)
		k += c[i].step == step;
	return k;
}

/* Runs the network until no client is in [from, to] or the deadline. */
static void busy_run(struct busy *c, int n, enum busy_step from, enum busy_step to,
                     double deadline, char *conninfo, int *started)
{
	static struct pollfd p[BUSY_CLIENTS];
	static int idx[BUSY_CLIENTS];

	while (h_now() < deadline) {
		int connecting, np, busy = 0;

		np = busy_pollfds(c, n, p, idx, &connecting);
		/* New logins, a few at a time (the listen backlog). */
		while (started && *started < n && connecting < BUSY_CONNECTING) {
			struct busy *b = &c[(*started)++];

			b->conn = PQconnectStart(conninfo);
			b->step = BUSY_CONNECT;
			b->polling = PGRES_POLLING_WRITING;
			if (!b->conn || PQstatus(b->conn) == CONNECTION_BAD)
				busy_fail(b, "connect start");
			connecting++;
		}
		for (int i = 0; i < n; i++)
			busy += c[i].step >= from && c[i].step <= to;
		if (busy == 0 && (!started || *started == n))
			return;
		if (np == 0 || poll(p, (nfds_t)np, 100) <= 0)
			continue;
		for (int k = 0; k < np; k++) {
			struct busy *b = &c[idx[k]];

			if (!p[k].revents)
				continue;
			if (b->step == BUSY_CONNECT)
				busy_connect_step(b);
			else
				busy_read(b, idx[k]);
		}
	}
}

Test(limits, two_thousand_clients_on_ten_servers, .timeout = 150)
{
	static struct busy c[BUSY_CLIENTS];
	struct poller *p;
	char conninfo[512], settings[256];
	int started = 0, connected, done;
	double t0, t_connected, t_done;

	h_require_sluice();
	raise_fd_limit();
	cr_assert_gt(fd_limit(), BUSY_CLIENTS + 100, "fd limit %ld", fd_limit());
	h_pg_exec("DROP TABLE IF EXISTS busy_t");
	h_pg_exec("CREATE TABLE busy_t (client int, backend int)");
	snprintf(settings, sizeof(settings), "max_client_conn = %d\ndefault_pool_size = %d\n"
	         "listen_backlog = 4096\nquery_wait_timeout = 120\nlog_connections = 0\n"
	         "log_disconnections = 0\n", BUSY_CLIENTS + 50, BUSY_POOL);
	h_sluice_start(settings, NULL);
	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=%s user=%s "
	         "password=%s sslmode=disable gssencmode=disable connect_timeout=60",
	         h_port(), H_DBNAME, H_ALICE, H_ALICE_PASSWORD);
	p = poller_start(BACKENDS_OF(H_ALICE));

	/* All log in and stay; then all start their transaction at once. */
	t0 = h_now();
	busy_run(c, BUSY_CLIENTS, BUSY_CONNECT, BUSY_CONNECT, t0 + 60, conninfo, &started);
	t_connected = h_now();
	connected = count_step(c, BUSY_CLIENTS, BUSY_READY);
	cr_assert_eq(connected, BUSY_CLIENTS, "%d of %d clients logged in; first error: %s",
	             connected, BUSY_CLIENTS, busy_error);
	for (int i = 0; i < BUSY_CLIENTS; i++) {
		c[i].step = BUSY_BEGIN;
		busy_send(&c[i], i);
	}
	busy_run(c, BUSY_CLIENTS, BUSY_BEGIN, BUSY_COMMIT, h_now() + 60, conninfo, NULL);
	t_done = h_now();
	poller_stop(p);
	done = count_step(c, BUSY_CLIENTS, BUSY_DONE);
	fprintf(stderr, "limits: %d clients logged in in %.1f s, %d transactions done in "
	        "%.1f s on at most %ld servers\n", connected, t_connected - t0, done,
	        t_done - t_connected, p->max);
	cr_expect_eq(done, BUSY_CLIENTS, "%d of %d transactions committed; first error: %s",
	             done, BUSY_CLIENTS, busy_error);
	cr_expect_eq(h_pg_int("SELECT count(*) FROM busy_t"), BUSY_CLIENTS);
	cr_expect_leq(p->max, BUSY_POOL, "%ld servers, default_pool_size = %d", p->max,
	              BUSY_POOL);
	cr_expect_leq(h_pg_int("SELECT count(DISTINCT backend) FROM busy_t"), BUSY_POOL);
	for (int i = 0; i < BUSY_CLIENTS; i++)
		PQfinish(c[i].conn);
	free(p);
	h_finish();
}

/* ---- ten thousand idle clients, raw sockets ---- */

#define IDLE_CLIENTS 10000
#define IDLE_CONNECTING 256

enum idle_step {
	IDLE_NONE,
	IDLE_CONNECT,       /* non-blocking connect in progress */
	IDLE_LOGIN,         /* startup sent, reading until ReadyForQuery */
	IDLE_READY,
	IDLE_FAILED,
};

struct idle {
	int fd;
	enum idle_step step;
	uint16_t len;               /* bytes in buf */
	uint8_t buf[512];           /* the start of a message being read */
};

static int idle_failures;

static void idle_fail(struct idle *c)
{
	close(c->fd);
	c->fd = -1;
	c->step = IDLE_FAILED;
	idle_failures++;
}

static void idle_start(struct idle *c, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };

	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0) {
		c->step = IDLE_FAILED;
		idle_failures++;
		return;
	}
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->step = IDLE_CONNECT;
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		idle_fail(c);
}

static void idle_connected(struct idle *c)
{
	static const char *const params[] = { "user", H_ALICE, "database", H_DBNAME, NULL };
	uint8_t packet[128];
	size_t len = h_startup_packet(packet, sizeof(packet), 196608, params, true);
	int err = 0;
	socklen_t elen = sizeof(err);

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
	if (err || send(c->fd, packet, len, MSG_NOSIGNAL) != (ssize_t)len)
		return idle_fail(c);
	c->step = IDLE_LOGIN;
}

static bool idle_send_password(struct idle *c)
{
	uint8_t msg[64];
	size_t n = strlen(H_ALICE_PASSWORD) + 1;

	msg[0] = 'p';
	msg[1] = 0;
	msg[2] = 0;
	msg[3] = 0;
	msg[4] = (uint8_t)(4 + n);
	memcpy(msg + 5, H_ALICE_PASSWORD, n);
	return send(c->fd, msg, 5 + n, MSG_NOSIGNAL) == (ssize_t)(5 + n);
}

/* Reads login messages: answers the cleartext request, stops at 'Z'. */
static void idle_read(struct idle *c)
{
	ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);

	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0)
		return idle_fail(c);
	c->len += (uint16_t)n;
	while (c->len >= 5) {
		uint32_t mlen = (uint32_t)c->buf[1] << 24 | c->buf[2] << 16 |
		                c->buf[3] << 8 | c->buf[4];
		uint8_t type = c->buf[0];

		if (mlen < 4 || mlen + 1 > sizeof(c->buf))
			return idle_fail(c);
		if (c->len < mlen + 1)
			return;
		if (type == 'E')
			return idle_fail(c);
		if (type == 'R' && mlen >= 8 && c->buf[8] == 3 && !idle_send_password(c))
			return idle_fail(c);
		if (type == 'Z') {
			c->step = IDLE_READY;
			return;
		}
		memmove(c->buf, c->buf + mlen + 1, c->len - (mlen + 1));
		c->len -= (uint16_t)(mlen + 1);
	}
}

Test(limits, ten_thousand_idle_clients_and_one_more, .timeout = 150)
{
	static struct idle c[IDLE_CLIENTS];
	static struct pollfd p[IDLE_CLIENTS];
	static int idx[IDLE_CLIENTS];
	int started = 0, ready = 0, port, still_open = 0;
	char settings[256];
	PGconn *one_more;
	double t0, t_ready, t_more;

	h_require_sluice();
	raise_fd_limit();
	cr_assert_gt(fd_limit(), IDLE_CLIENTS + 100, "fd limit %ld", fd_limit());
	snprintf(settings, sizeof(settings), "max_client_conn = 11000\nauth_type = plain\n"
	         "listen_backlog = 4096\nlog_connections = 0\nlog_disconnections = 0\n");
	h_sluice_start(settings, NULL);
	port = h_port();
	t0 = h_now();
	while (ready + idle_failures < IDLE_CLIENTS && h_now() < t0 + 90) {
		int np = 0, in_flight = 0;

		for (int i = 0; i < started; i++) {
			if (c[i].step != IDLE_CONNECT && c[i].step != IDLE_LOGIN)
				continue;
			in_flight++;
			p[np] = (struct pollfd){ c[i].fd,
			                         c[i].step == IDLE_CONNECT ? POLLOUT : POLLIN, 0 };
			idx[np++] = i;
		}
		for (; started < IDLE_CLIENTS && in_flight < IDLE_CONNECTING; in_flight++)
			idle_start(&c[started++], port);
		if (np == 0 || poll(p, (nfds_t)np, 100) <= 0)
			continue;
		for (int k = 0; k < np; k++) {
			struct idle *ic = &c[idx[k]];

			if (!p[k].revents)
				continue;
			if (ic->step == IDLE_CONNECT)
				idle_connected(ic);
			else
				idle_read(ic);
			ready += ic->step == IDLE_READY;
		}
	}
	t_ready = h_now();
	fprintf(stderr, "limits: %d idle clients logged in in %.1f s (%d failed)\n",
	        ready, t_ready - t0, idle_failures);
	cr_assert_eq(ready, IDLE_CLIENTS, "%d of %d clients logged in, %d failed", ready,
	             IDLE_CLIENTS, idle_failures);

	/* sluice counts them too. */
	{
		PGconn *console = h_connect(H_ADMIN, "dbname=sluice");
		PGresult *res = PQexec(console, "SHOW POOLS");
		long active = -1;

		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s",
		             PQerrorMessage(console));
		for (int r = 0; r < PQntuples(res); r++)
			if (strcmp(PQgetvalue(res, r, PQfnumber(res, "database")), H_DBNAME) == 0)
				active = atol(PQgetvalue(res, r, PQfnumber(res, "cl_active")));
		PQclear(res);
		PQfinish(console);
		cr_expect_eq(active, IDLE_CLIENTS, "SHOW POOLS: cl_active = %ld", active);
		t_ready = h_now();
	}

	/* One more still gets served, promptly. */
	one_more = h_connect(H_BOB, NULL);
	cr_assert_eq(h_query_int(one_more, "SELECT 42"), 42);
	t_more = h_now();
	fprintf(stderr, "limits: client %d logged in and served in %.0f ms\n",
	        IDLE_CLIENTS + 1, (t_more - t_ready) * 1000);
	cr_expect_lt(t_more - t_ready, 2.0);
	PQfinish(one_more);

	/* Nobody was dropped meanwhile. */
	for (int i = 0; i < IDLE_CLIENTS; i++) {
		struct pollfd one = { c[i].fd, POLLIN, 0 };

		still_open += poll(&one, 1, 0) == 0;
	}
	cr_expect_eq(still_open, IDLE_CLIENTS, "%d idle clients were closed",
	             IDLE_CLIENTS - still_open);
	for (int i = 0; i < IDLE_CLIENTS; i++)
		close(c[i].fd);
	h_finish();
}
