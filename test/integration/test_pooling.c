/*
 * test_pooling.c - transaction pooling: many clients on few servers, what
 * one client can see of another, what must not leak from one client of a
 * server to the next, and clients that vanish in the middle of things.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "harness.h"

TestSuite(pooling, .fini = h_teardown, .timeout = 120);

#define MANY_CLIENTS 100
#define TX_PER_CLIENT 20
#define POOL_SIZE 4
#define RUN_DEADLINE_S 90.0

struct many {
	atomic_int committed;       /* transactions that went through */
	atomic_int failures;
	atomic_bool done;
	double deadline;
	pthread_mutex_t lock;
	char first_error[1024];     /* the first failure, for the report */
};

struct worker {
	struct many *run;
	int id;
};

static void record_failure(struct many *run, const char *what)
{
	pthread_mutex_lock(&run->lock);
	if (!run->first_error[0])
		snprintf(run->first_error, sizeof(run->first_error), "%s", what);
	pthread_mutex_unlock(&run->lock);
	atomic_fetch_add(&run->failures, 1);
}

/* One transaction: insert a row, see exactly our rows, commit. */
static bool one_transaction(PGconn *conn, int id, int n, char *err, size_t errlen)
{
	char sql[256];
	PGresult *res;
	bool ok;

	if (!h_try_exec(conn, "BEGIN", err, errlen))
		return false;
	snprintf(sql, sizeof(sql), "INSERT INTO many_t (client, n) VALUES (%d, %d)", id, n);
	if (!h_try_exec(conn, sql, err, errlen))
		return false;
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM many_t WHERE client = %d", id);
	res = PQexec(conn, sql);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK && atoi(PQgetvalue(res, 0, 0)) == n + 1;
	if (!ok)
		snprintf(err, errlen, "client %d saw %s rows after %d inserts: %s", id,
		         PQntuples(res) ? PQgetvalue(res, 0, 0) : "?", n + 1,
		         PQerrorMessage(conn));
	PQclear(res);
	return ok && h_try_exec(conn, "COMMIT", err, errlen);
}

static void *many_client(void *arg)
{
	struct worker *w = arg;
	char err[1024];
	PGconn *conn = h_try_connect(H_ALICE, NULL, err, sizeof(err));

	if (!conn) {
		record_failure(w->run, err);
		return NULL;
	}
	for (int n = 0; n < TX_PER_CLIENT && h_now() < w->run->deadline; n++) {
		if (!one_transaction(conn, w->id, n, err, sizeof(err))) {
			record_failure(w->run, err);
			break;
		}
		atomic_fetch_add(&w->run->committed, 1);
	}
	PQfinish(conn);
	return NULL;
}

/* Samples the pool's backends on PostgreSQL until the run is done. */
static void *backend_poller(void *arg)
{
	struct many *run = arg;
	long *max = calloc(1, sizeof(*max));
	char conninfo[256];
	PGconn *pg;

	snprintf(conninfo, sizeof(conninfo), "host=%s port=%d user=%s dbname=%s "
	         "sslmode=disable", h_pg_host(), h_pg_port(), H_SUPERUSER, H_DBNAME);
	pg = PQconnectdb(conninfo);
	while (!atomic_load(&run->done) && PQstatus(pg) == CONNECTION_OK) {
		PGresult *res = PQexec(pg,
			"SELECT count(*) FROM pg_stat_activity WHERE usename = '" H_ALICE "' "
			"AND datname = '" H_DBNAME "' AND backend_type = 'client backend' "
			"AND pid <> pg_backend_pid()");

		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    atol(PQgetvalue(res, 0, 0)) > *max)
			*max = atol(PQgetvalue(res, 0, 0));
		PQclear(res);
		h_sleep_ms(10);
	}
	PQfinish(pg);
	return max;
}

Test(pooling, hundred_clients_through_four_servers)
{
	static struct many run;
	static struct worker workers[MANY_CLIENTS];
	pthread_t threads[MANY_CLIENTS], poller;
	long *max_backends;
	char settings[128];

	h_pg_exec("DROP TABLE IF EXISTS many_t");
	h_pg_exec("CREATE TABLE many_t (client int, n int)");
	snprintf(settings, sizeof(settings), "pool_mode = transaction\n"
	         "default_pool_size = %d\nmax_client_conn = 300\n", POOL_SIZE);
	h_sluice_start(settings, NULL);
	pthread_mutex_init(&run.lock, NULL);
	run.deadline = h_now() + RUN_DEADLINE_S;
	cr_assert(pthread_create(&poller, NULL, backend_poller, &run) == 0);
	for (int i = 0; i < MANY_CLIENTS; i++) {
		workers[i] = (struct worker){ &run, i };
		cr_assert(pthread_create(&threads[i], NULL, many_client, &workers[i]) == 0);
	}
	for (int i = 0; i < MANY_CLIENTS; i++)
		pthread_join(threads[i], NULL);
	atomic_store(&run.done, true);
	pthread_join(poller, (void **)&max_backends);

	cr_expect_eq(atomic_load(&run.failures), 0, "%d clients failed, first: %s",
	             atomic_load(&run.failures), run.first_error);
	cr_expect_eq(atomic_load(&run.committed), MANY_CLIENTS * TX_PER_CLIENT,
	             "%d of %d transactions committed", atomic_load(&run.committed),
	             MANY_CLIENTS * TX_PER_CLIENT);
	cr_assert_eq(h_pg_int("SELECT count(*) FROM many_t"), MANY_CLIENTS * TX_PER_CLIENT);
	cr_expect_gt(*max_backends, 0, "the poller never saw a server");
	if (!h_direct())
		cr_expect_leq(*max_backends, POOL_SIZE,
		              "%ld servers for the pool, default_pool_size = %d",
		              *max_backends, POOL_SIZE);
	free(max_backends);
	h_finish();
}

Test(pooling, servers_are_reused_between_clients)
{
	PGconn *a, *b;
	long pid_a, pid_b;

	h_require_sluice();
	h_sluice_start("default_pool_size = 1\n", NULL);
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_ALICE, NULL);
	pid_a = h_query_int(a, "SELECT pg_backend_pid()");
	pid_b = h_query_int(b, "SELECT pg_backend_pid()");
	cr_assert_eq(pid_a, pid_b, "two clients, one server: pids %ld and %ld",
	             pid_a, pid_b);
	cr_assert_eq(h_pg_backends(H_ALICE), 1);
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

Test(pooling, uncommitted_rows_are_seen_only_by_their_client)
{
	PGconn *a, *b;

	h_pg_exec("DROP TABLE IF EXISTS vis_t");
	h_pg_exec("CREATE TABLE vis_t (x int)");
	h_sluice_start("default_pool_size = 2\n", NULL);
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_BOB, NULL);
	h_exec(a, "BEGIN");
	h_exec(a, "INSERT INTO vis_t VALUES (1), (2)");
	cr_assert_eq(h_query_int(a, "SELECT count(*) FROM vis_t"), 2);
	cr_assert_eq(h_query_int(b, "SELECT count(*) FROM vis_t"), 0,
	             "another client sees uncommitted rows");
	cr_assert_eq(h_pg_int("SELECT count(*) FROM vis_t"), 0);
	h_exec(b, "INSERT INTO vis_t VALUES (10)");
	cr_assert_eq(h_query_int(a, "SELECT count(*) FROM vis_t"), 3);
	h_exec(a, "COMMIT");
	cr_assert_eq(h_query_int(b, "SELECT count(*) FROM vis_t"), 3);
	/* A rolled back transaction leaves nothing for anyone. */
	h_exec(b, "BEGIN");
	h_exec(b, "DELETE FROM vis_t");
	cr_assert_eq(h_query_int(a, "SELECT count(*) FROM vis_t"), 3);
	h_exec(b, "ROLLBACK");
	cr_assert_eq(h_query_int(b, "SELECT count(*) FROM vis_t"), 3);
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

Test(pooling, transaction_state_does_not_leak_to_next_client)
{
	PGconn *a, *b;
	char value[64];
	long pid_a;

	h_sluice_start("default_pool_size = 1\n", NULL);
	a = h_connect(H_ALICE, NULL);
	h_exec(a, "BEGIN");
	h_exec(a, "SET LOCAL statement_timeout = '4321ms'");
	h_exec(a, "SET LOCAL search_path = pg_catalog");
	h_exec(a, "CREATE TEMP TABLE leak_tmp (x int) ON COMMIT DROP");
	h_exec(a, "INSERT INTO leak_tmp VALUES (1)");
	cr_assert_eq(h_query_int(a, "SELECT pg_advisory_xact_lock(4242)::text = '' "
	                         "AND pg_try_advisory_xact_lock(4343)::int = 1"), 0);
	h_query_str(a, value, sizeof(value), "SHOW statement_timeout");
	cr_assert_str_eq(value, "4321ms");
	cr_assert_eq(h_pg_int("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), 2);
	pid_a = h_query_int(a, "SELECT pg_backend_pid()");
	h_exec(a, "COMMIT");

	b = h_connect(H_ALICE, NULL);
	if (!h_direct())
		cr_assert_eq(h_query_int(b, "SELECT pg_backend_pid()"), pid_a,
		             "default_pool_size = 1 but the next client got another server");
	h_query_str(b, value, sizeof(value), "SHOW statement_timeout");
	cr_assert_str_eq(value, "0", "SET LOCAL leaked: statement_timeout = %s", value);
	h_query_str(b, value, sizeof(value), "SHOW search_path");
	cr_assert_str_eq(value, "\"$user\", public",
	                 "SET LOCAL leaked: search_path = %s", value);
	cr_assert_eq(h_query_int(b, "SELECT count(*) FROM pg_class "
	                         "WHERE relname = 'leak_tmp'"), 0, "temp table leaked");
	cr_assert_eq(h_pg_int("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), 0,
	             "advisory xact lock leaked");
	cr_assert_eq(h_query_int(b, "SELECT pg_try_advisory_xact_lock(4242)::int"), 1);
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

/* ---- clients killed in the middle of a transaction ---- */

enum victim_state {
	VICTIM_IN_TRANSACTION,  /* BEGIN, a lock taken, then silence */
	VICTIM_FAILED,          /* the transaction hit an error (locks freed) */
	VICTIM_MID_QUERY,       /* a query still running */
};

/* The doomed client, in a child process: never returns. */
static void victim(enum victim_state state, int ready_fd, int port)
{
	char conninfo[256], err[512];
	PGconn *conn;

	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=%s "
	         "user=%s password=%s sslmode=disable gssencmode=disable",
	         port, H_DBNAME, H_ALICE, H_ALICE_PASSWORD);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK ||
	    !h_try_exec(conn, "BEGIN", err, sizeof(err)) ||
	    !h_try_exec(conn, "LOCK TABLE kill_t IN ACCESS EXCLUSIVE MODE", err, sizeof(err)))
		_exit(2);
	if (state == VICTIM_FAILED && h_try_exec(conn, "SELECT 1 / 0", err, sizeof(err)))
		_exit(3);
	if (state == VICTIM_MID_QUERY && !PQsendQuery(conn, "SELECT pg_sleep(3)"))
		_exit(4);
	if (write(ready_fd, "R", 1) != 1)
		_exit(5);
	pause();
	_exit(0);
}

/* Waits (bounded) until sql, run as superuser, returns want. */
static bool pg_wait_for(long want, int timeout_ms, const char *sql)
{
	double deadline = h_now() + timeout_ms / 1000.0;

	while (h_pg_int("%s", sql) != want) {
		if (h_now() > deadline)
			return false;
		h_sleep_ms(50);
	}
	return true;
}

#define KILL_T_LOCKS "SELECT count(*) FROM pg_locks l JOIN pg_class c " \
	"ON c.oid = l.relation WHERE c.relname = 'kill_t' AND l.granted"

static void kill_mid_transaction(enum victim_state state)
{
	int pipefd[2], status;
	char ready = 0;
	pid_t pid;
	PGconn *next;
	struct pollfd p;

	h_pg_exec("DROP TABLE IF EXISTS kill_t");
	h_pg_exec("CREATE TABLE kill_t (x int)");
	h_sluice_start("default_pool_size = 1\n", NULL);
	cr_assert(pipe(pipefd) == 0);
	fflush(NULL);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0)
		victim(state, pipefd[1], h_port());
	p = (struct pollfd){ pipefd[0], POLLIN, 0 };
	cr_assert(poll(&p, 1, 10000) == 1 && read(pipefd[0], &ready, 1) == 1,
	          "the victim client did not get its lock");
	if (state == VICTIM_MID_QUERY)
		cr_assert(pg_wait_for(1, 5000, "SELECT count(*) FROM pg_stat_activity "
		                      "WHERE query = 'SELECT pg_sleep(3)' AND state = 'active'"),
		          "the victim's query never started");
	/* An error releases the locks at once; the aborted transaction stays. */
	if (state == VICTIM_FAILED)
		cr_assert(pg_wait_for(1, 5000, "SELECT count(*) FROM pg_stat_activity "
		                      "WHERE state = 'idle in transaction (aborted)'"),
		          "the victim's transaction is not in the failed state");
	else
		cr_assert_eq(h_pg_int(KILL_T_LOCKS), 1, "the victim holds no lock");
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(pipefd[0]);
	close(pipefd[1]);

	/* The lock goes away with the transaction, and no backend idles in it. */
	cr_assert(pg_wait_for(0, 10000, KILL_T_LOCKS),
	          "the dead client's lock is still held after 10 s");
	cr_assert(pg_wait_for(0, 10000, "SELECT count(*) FROM pg_stat_activity "
	                      "WHERE state LIKE 'idle in transaction%'"),
	          "a backend is still idle in transaction after 10 s");
	/* The next client of the pool's only server works normally. */
	next = h_connect(H_ALICE, NULL);
	cr_assert_eq(PQtransactionStatus(next), PQTRANS_IDLE);
	h_exec(next, "BEGIN");
	h_exec(next, "LOCK TABLE kill_t IN ACCESS EXCLUSIVE MODE NOWAIT");
	h_exec(next, "INSERT INTO kill_t VALUES (1)");
	h_exec(next, "COMMIT");
	cr_assert_eq(h_query_int(next, "SELECT count(*) FROM kill_t"), 1);
	PQfinish(next);
	h_finish();
}

Test(pooling, client_killed_in_open_transaction)
{
	kill_mid_transaction(VICTIM_IN_TRANSACTION);
}

Test(pooling, client_killed_in_failed_transaction)
{
	kill_mid_transaction(VICTIM_FAILED);
}

Test(pooling, client_killed_mid_query)
{
	kill_mid_transaction(VICTIM_MID_QUERY);
}

Test(pooling, client_vanishing_while_waiting_for_a_server)
{
	PGconn *holder, *waiter, *next;

	h_require_sluice();
	h_sluice_start("default_pool_size = 1\n", NULL);
	holder = h_connect(H_ALICE, NULL);
	h_exec(holder, "BEGIN");
	h_exec(holder, "SELECT 1");
	/* The only server is taken: this one queues, then goes away. */
	waiter = h_connect(H_ALICE, NULL);
	cr_assert(PQsendQuery(waiter, "SELECT 42"));
	h_sleep_ms(300);
	cr_assert(PQconsumeInput(waiter), "%s", PQerrorMessage(waiter));
	cr_assert(PQisBusy(waiter),
	          "a client got a server while default_pool_size = 1 was in use");
	PQfinish(waiter);
	/* Noticed while still queued, not only when the server comes free. */
	cr_assert(h_log_wait("closing because: client close request", 2000),
	          "the queued client's Terminate was not noticed while queued");
	cr_assert_eq(PQtransactionStatus(holder), PQTRANS_INTRANS);
	h_exec(holder, "COMMIT");
	next = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(next, "SELECT 7"), 7);
	PQfinish(next);
	PQfinish(holder);
	h_finish();
}

#define QUEUED_QUERIES 400
#define QUEUED_PARAM_LEN 1000

/* Sends and reads what it can without blocking until every result of the
 * pipeline is in; false after the deadline. */
static bool read_queued_results(PGconn *conn, int *got, double deadline)
{
	while (*got < QUEUED_QUERIES && h_now() < deadline) {
		struct pollfd p = { PQsocket(conn), POLLIN, 0 };
		PGresult *res;

		if (PQflush(conn) == 1)
			p.events |= POLLOUT;
		poll(&p, 1, 100);
		cr_assert(PQconsumeInput(conn), "%s", PQerrorMessage(conn));
		while (*got < QUEUED_QUERIES && !PQisBusy(conn) &&
		       (res = PQgetResult(conn)) != NULL) {
			cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "query %d: %s",
			             *got, PQresultErrorMessage(res));
			cr_assert_eq(atoi(PQgetvalue(res, 0, 0)), QUEUED_PARAM_LEN + *got,
			             "query %d answered out of order", *got);
			PQclear(res);
			cr_assert_null(PQgetResult(conn));
			(*got)++;
		}
	}
	return *got == QUEUED_QUERIES;
}

/* About 430 KiB of queries arrive while the client waits: more than
 * sluice holds for a waiting client (64 KiB, or max_packet_size when
 * smaller), so it must stop reading and start again without losing or
 * reordering a byte. */
static void queued_client_pipelines(const char *settings)
{
	static char param[QUEUED_PARAM_LEN + 1];
	PGconn *holder, *waiter;
	PGresult *res;
	double deadline;
	int got = 0;

	h_sluice_start(settings, NULL);
	memset(param, 'x', QUEUED_PARAM_LEN);
	holder = h_connect(H_ALICE, NULL);
	h_exec(holder, "BEGIN");
	h_exec(holder, "SELECT 1");
	waiter = h_connect(H_ALICE, NULL);
	cr_assert_eq(PQsetnonblocking(waiter, 1), 0);
	cr_assert(PQenterPipelineMode(waiter));
	for (int i = 0; i < QUEUED_QUERIES; i++) {
		char sql[64];
		const char *params[1] = { param };

		snprintf(sql, sizeof(sql), "SELECT length($1::text) + %d", i);
		cr_assert(PQsendQueryParams(waiter, sql, 1, NULL, params, NULL, NULL, 0),
		          "%s", PQerrorMessage(waiter));
	}
	cr_assert(PQpipelineSync(waiter));
	deadline = h_now() + 2.0;
	while (PQflush(waiter) == 1 && h_now() < deadline)
		h_sleep_ms(20);
	cr_assert(!read_queued_results(waiter, &got, h_now() + 0.3),
	          "a query was answered while the only server was taken");
	h_assert_alive();
	h_exec(holder, "COMMIT");
	cr_assert(read_queued_results(waiter, &got, h_now() + 30.0),
	          "only %d of %d queued queries were answered", got, QUEUED_QUERIES);
	cr_assert_eq(PQsetnonblocking(waiter, 0), 0);
	res = PQgetResult(waiter);
	cr_assert_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC);
	PQclear(res);
	cr_assert_eq(PQtransactionStatus(waiter), PQTRANS_IDLE);
	PQfinish(waiter);
	PQfinish(holder);
	h_finish();
}

Test(pooling, a_queued_client_keeps_everything_it_pipelines)
{
	queued_client_pipelines("default_pool_size = 1\n");
}

Test(pooling, a_queued_client_pipelining_past_a_small_max_packet_size)
{
	queued_client_pipelines("default_pool_size = 1\nmax_packet_size = 2048\n");
}

/*
 * Host names in [databases] are resolved without blocking the loop: a name
 * from /etc/hosts connects, a name that does not resolve fails the login
 * with the resolver's reason (or, with a slow resolver,
 * server_connect_timeout), and other pools are served all along.
 */
Test(pooling, server_host_names_are_resolved)
{
	struct h_error err;
	PGconn *byname, *other;

	h_require_sluice();
	h_sluice_start("server_connect_timeout = 3\nserver_login_retry = 5\n",
	               "byname = host=localhost port=%PGPORT% dbname=" H_DBNAME "\n"
	               "nowhere = host=sluice-no-such-host.invalid port=%PGPORT% "
	               "dbname=" H_DBNAME);
	other = h_connect(H_BOB, NULL);
	byname = h_connect(H_ALICE, "dbname=byname");
	cr_assert_eq(h_query_int(byname, "SELECT 41 + 1"), 42);
	cr_assert(h_connect_fails(H_CAROL, "dbname=nowhere", &err), "connected?");
	cr_expect_str_eq(err.sqlstate, "08006");
	cr_expect(strstr(err.message, "could not resolve server host "
	                              "\"sluice-no-such-host.invalid\"") ||
	          strstr(err.message, "server_connect_timeout"),
	          "unexpected error: %s", err.message);
	cr_assert_eq(h_query_int(other, "SELECT 7"), 7);
	cr_assert_eq(h_query_int(byname, "SELECT 8"), 8);
	PQfinish(byname);
	PQfinish(other);
	h_assert_alive();
	h_finish();
}
