/*
 * test_prepared.c - protocol-level named prepared statements through
 * transaction pooling (max_prepared_statements): clients prepare once and
 * execute on whichever server each transaction gets; pgbench -M prepared;
 * eviction down to max_prepared_statements per server; one server-side
 * statement per query text and parameter types; PostgreSQL's errors for
 * bad, unknown and duplicate statements; DEALLOCATE ALL and DISCARD ALL;
 * the exact messages a raw client sees when sluice prepares a statement
 * just in time or answers a Close; max_prepared_statements = 0; and real
 * drivers (test/drivers/run.sh: asyncpg, psycopg 3, node-postgres,
 * postgres.js).
 *
 * Direct (SLUICE_TEST_DIRECT=1) every test runs, without the checks of
 * what the servers hold and of which server answered.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

TestSuite(prepared, .fini = h_teardown, .timeout = 120);

#define TX_POOL_1 "pool_mode = transaction\ndefault_pool_size = 1\n"
#define TX_POOL_2 "pool_mode = transaction\ndefault_pool_size = 2\n"

/* sluice's statements on the server this query runs on. */
#define SERVER_STATEMENTS_SQL \
	"SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'sluice\\_%'"

#define INT4_OID 23
#define INT8_OID 20

/* ---- libpq with a deadline; thread-safe unless said otherwise ---- */

/*
 * The result of a command sent with PQsend*, read up to the NULL that ends
 * it; NULL if no answer came within H_QUERY_TIMEOUT_MS (or sending failed),
 * so that a stalled proxy fails a test instead of hanging it.
 */
static PGresult *await_result(PGconn *conn, int sent)
{
	PGresult *res, *extra;

	if (!sent)
		return NULL;
	res = h_result_within(conn, H_QUERY_TIMEOUT_MS);
	while ((extra = h_result_within(conn, H_QUERY_TIMEOUT_MS)))
		PQclear(extra);
	return res;
}

static PGresult *run_prepare(PGconn *conn, const char *name, const char *sql,
                             int nparams, const Oid *types)
{
	return await_result(conn, PQsendPrepare(conn, name, sql, nparams, types));
}

static PGresult *run_prepared(PGconn *conn, const char *name, int nparams,
                              const char *const *params)
{
	return await_result(conn, PQsendQueryPrepared(conn, name, nparams, params,
	                                              NULL, NULL, 0));
}

static PGresult *run_describe(PGconn *conn, const char *name)
{
	return await_result(conn, PQsendDescribePrepared(conn, name));
}

/* What a result says, for messages: its first value or its error. */
static const char *result_text(const PGresult *res)
{
	if (!res)
		return "no answer (or could not send)";
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
		return PQgetvalue(res, 0, 0);
	return PQresultErrorMessage(res);
}

/* Prepares sql as name (parameter types inferred); false with why. */
static bool prepare_ok(PGconn *conn, const char *name, const char *sql,
                       char *why, size_t whylen)
{
	PGresult *res = run_prepare(conn, name, sql, 0, NULL);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		snprintf(why, whylen, "prepare %s (%s): %s", name, sql, result_text(res));
	PQclear(res);
	return ok;
}

/* Executes name; false with why unless it returns one row starting want. */
static bool exec_ok(PGconn *conn, const char *name, int nparams,
                    const char *const *params, const char *want,
                    char *why, size_t whylen)
{
	PGresult *res = run_prepared(conn, name, nparams, params);
	bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	          strcmp(PQgetvalue(res, 0, 0), want) == 0;

	if (!ok)
		snprintf(why, whylen, "execute %s(%s): got %s %s, want %s", name,
		         nparams > 0 ? params[0] : "", PQresStatus(PQresultStatus(res)),
		         result_text(res), want);
	PQclear(res);
	return ok;
}

/* sluice's statements on the server a one-query transaction gets; -1 and
 * why on failure. */
static long server_statements_now(PGconn *conn, char *why, size_t whylen)
{
	PGresult *res = await_result(conn, PQsendQuery(conn, SERVER_STATEMENTS_SQL));
	long n = -1;

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		n = atol(PQgetvalue(res, 0, 0));
	else
		snprintf(why, whylen, "counting statements: %s", result_text(res));
	PQclear(res);
	return n;
}

/* ---- the same, asserting: only in the test's own thread ---- */

static void prepare(PGconn *conn, const char *name, const char *sql)
{
	char why[512];

	cr_assert(prepare_ok(conn, name, sql, why, sizeof(why)), "%s", why);
}

/* Prepares sql as name with one parameter of the type in types. */
static void prepare_typed(PGconn *conn, const char *name, const char *sql,
                          const Oid *types)
{
	PGresult *res = run_prepare(conn, name, sql, 1, types);

	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "prepare %s: %s",
	             name, result_text(res));
	PQclear(res);
}

/* Executes name with param (NULL: none); asserts it returns want. */
static void expect_value(PGconn *conn, const char *name, const char *param,
                         const char *want)
{
	const char *params[1] = { param };
	char why[512];

	cr_assert(exec_ok(conn, name, param ? 1 : 0, params, want, why, sizeof(why)),
	          "%s", why);
}

/* Asserts res (of what, for messages) failed with exactly sqlstate and
 * message; clears it. */
static void expect_error(PGresult *res, const char *what, const char *sqlstate,
                         const char *message)
{
	struct h_error err;

	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR,
	             "%s: expected %s %s, got %s: %s", what, sqlstate, message,
	             PQresStatus(PQresultStatus(res)), result_text(res));
	h_result_error(res, &err);
	cr_assert(strcmp(err.sqlstate, sqlstate) == 0 &&
	          strcmp(err.message, message) == 0,
	          "%s: expected %s %s, got %s %s", what, sqlstate, message,
	          err.sqlstate, err.message);
	PQclear(res);
}

/* Asserts conn still answers a plain query. */
static void expect_usable(PGconn *conn)
{
	cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
}

/* sluice's statements on the server a one-query transaction of conn gets. */
static long server_statements(PGconn *conn)
{
	return h_query_int(conn, "%s", SERVER_STATEMENTS_SQL);
}

/* ---- pinning servers: make the next transaction run where we want ---- */

/*
 * Two clients of a pool of two servers. Holding a transaction open, each
 * pins one server; releasing one leaves exactly that server for the next
 * transaction of any other client of the pool.
 */
struct pins {
	PGconn *conn[2];
	int pid[2];          /* the pool's two servers (backend pids) */
	int holds[2];        /* pid conn[i] holds in a transaction, 0: none */
};

static void pins_hold_both(struct pins *p)
{
	for (int i = 0; i < 2; i++) {
		if (p->holds[i])
			continue;
		h_exec(p->conn[i], "BEGIN");
		p->holds[i] = (int)h_query_int(p->conn[i], "SELECT pg_backend_pid()");
	}
}

static void pins_open(struct pins *p, const char *user)
{
	for (int i = 0; i < 2; i++) {
		p->conn[i] = h_connect(user, NULL);
		p->holds[i] = 0;
	}
	pins_hold_both(p);
	p->pid[0] = p->holds[0];
	p->pid[1] = p->holds[1];
	cr_assert_neq(p->pid[0], p->pid[1]);
}

/* Leaves server pid the only free one (direct: only keeps both busy). */
static void pins_free_only(struct pins *p, int pid)
{
	pins_hold_both(p);
	for (int i = 0; i < 2; i++) {
		if (p->holds[i] != pid)
			continue;
		h_exec(p->conn[i], "COMMIT");
		p->holds[i] = 0;
	}
}

/* The client holding server pid (pins_free_only() of the other one). */
static PGconn *pins_holder(struct pins *p, int pid)
{
	for (int i = 0; i < 2; i++)
		if (p->holds[i] == pid)
			return p->conn[i];
	cr_assert_fail("no client holds server %d", pid);
	return NULL;
}

static void pins_close(struct pins *p)
{
	for (int i = 0; i < 2; i++)
		PQfinish(p->conn[i]);
}

/* ---- busy clients: prepare five statements, execute them 50 times ---- */

#define BUSY_CLIENTS 12
#define BUSY_STMTS 5
#define BUSY_ROUNDS 50

struct busy {
	int id;              /* 1 .. BUSY_CLIENTS */
	bool transactions;   /* every third round inside BEGIN ... COMMIT */
	bool ok;
	char why[512];
};

/*
 * Statement i of client id, prepared as "s<i>" by every client: four texts
 * all clients share, then one of the client's own under the same name.
 */
static void busy_sql(int id, int i, char *sql, size_t len)
{
	static const char *const shared[BUSY_STMTS - 1] = {
		"SELECT $1::int + $2::int",
		"SELECT $1::int * $2::int",
		"SELECT $1::text || ':' || $2::text",
		"SELECT $1::int - $2::int",
	};

	if (i < BUSY_STMTS - 1)
		snprintf(sql, len, "%s", shared[i]);
	else
		snprintf(sql, len, "SELECT $1::int * 1000 + %d", id);
}

/* What statement i of client id returns for x and y. */
static void busy_want(int id, int i, int x, int y, char *out, size_t len)
{
	switch (i) {
	case 0:
		snprintf(out, len, "%d", x + y);
		break;
	case 1:
		snprintf(out, len, "%d", x * y);
		break;
	case 2:
		snprintf(out, len, "%d:%d", x, y);
		break;
	case 3:
		snprintf(out, len, "%d", x - y);
		break;
	default:
		snprintf(out, len, "%d", x * 1000 + id);
		break;
	}
}

static bool busy_exec(PGconn *conn, struct busy *b, int round, int i)
{
	int x = b->id * 100 + round, y = round % 7 + 1;
	char xs[16], ys[16], name[16], want[64];
	const char *params[2] = { xs, ys };

	snprintf(xs, sizeof(xs), "%d", x);
	snprintf(ys, sizeof(ys), "%d", y);
	snprintf(name, sizeof(name), "s%d", i);
	busy_want(b->id, i, x, y, want, sizeof(want));
	return exec_ok(conn, name, i < BUSY_STMTS - 1 ? 2 : 1, params, want,
	               b->why, sizeof(b->why));
}

/* Describe on whatever server: the parameter and column counts. */
static bool busy_describe(PGconn *conn, struct busy *b, const char *name,
                          int nparams)
{
	PGresult *res = run_describe(conn, name);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK &&
	          PQnparams(res) == nparams && PQnfields(res) == 1;

	if (!ok)
		snprintf(b->why, sizeof(b->why), "describe %s: %s, %d parameters",
		         name, result_text(res), PQnparams(res));
	PQclear(res);
	return ok;
}

static bool busy_round(PGconn *conn, struct busy *b, int round)
{
	bool in_tx = b->transactions && round % 3 == 0;

	if (in_tx && !h_try_exec(conn, "BEGIN", b->why, sizeof(b->why)))
		return false;
	for (int i = 0; i < BUSY_STMTS; i++)
		if (!busy_exec(conn, b, round, i))
			return false;
	if (round % 10 == 0 && (!busy_describe(conn, b, "s0", 2) ||
	                        !busy_describe(conn, b, "s4", 1)))
		return false;
	return !in_tx || h_try_exec(conn, "COMMIT", b->why, sizeof(b->why));
}

static void *busy_client(void *arg)
{
	struct busy *b = arg;
	PGconn *conn = h_try_connect(H_ALICE, NULL, b->why, sizeof(b->why));
	char sql[128], name[16];

	if (!conn)
		return NULL;
	b->ok = true;
	for (int i = 0; i < BUSY_STMTS && b->ok; i++) {
		busy_sql(b->id, i, sql, sizeof(sql));
		snprintf(name, sizeof(name), "s%d", i);
		b->ok = prepare_ok(conn, name, sql, b->why, sizeof(b->why));
	}
	for (int round = 0; round < BUSY_ROUNDS && b->ok; round++)
		b->ok = busy_round(conn, b, round);
	PQfinish(conn);
	return NULL;
}

static void run_busy_clients(int count, bool transactions)
{
	struct busy clients[BUSY_CLIENTS];
	pthread_t threads[BUSY_CLIENTS];

	for (int i = 0; i < count; i++) {
		clients[i] = (struct busy){ .id = i + 1, .transactions = transactions };
		cr_assert(pthread_create(&threads[i], NULL, busy_client, &clients[i]) == 0);
	}
	for (int i = 0; i < count; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < count; i++)
		cr_expect(clients[i].ok, "client %d: %s", clients[i].id, clients[i].why);
}

Test(prepared, twelve_clients_reuse_statements_across_two_servers)
{
	PGconn *conn;

	h_sluice_start(TX_POOL_2, NULL);
	run_busy_clients(BUSY_CLIENTS, true);
	if (h_direct()) {
		h_finish();
		return;
	}
	/* Four shared texts and twelve own ones: one server name each. */
	conn = h_connect(H_ALICE, NULL);
	for (int i = 0; i < 4; i++) {
		long n = server_statements(conn);

		cr_expect(n >= 1 && n <= 4 + BUSY_CLIENTS,
		          "%ld sluice statements on a server, expected 1 .. %d",
		          n, 4 + BUSY_CLIENTS);
	}
	PQfinish(conn);
	h_finish();
}

Test(prepared, statement_mode)
{
	h_sluice_start("pool_mode = statement\ndefault_pool_size = 2\n", NULL);
	run_busy_clients(6, false);
	h_finish();
}

/* ---- pgbench -M prepared ---- */

static struct h_output pgbench_out;

static int pgbench(const char *const *args, int timeout_ms)
{
	return h_pgbench(args, timeout_ms, &pgbench_out);
}

static long report_number(const char *label)
{
	return h_report_number(&pgbench_out, label);
}

static long stats_column(PGresult *res, int row, const char *name)
{
	int col = PQfnumber(res, name);

	cr_assert_geq(col, 0, "no column %s", name);
	return atol(PQgetvalue(res, row, col));
}

/* The SHOW STATS row of the test database. */
static int test_db_row(PGresult *res)
{
	for (int row = 0; row < PQntuples(res); row++)
		if (strcmp(PQgetvalue(res, row, 0), H_DBNAME) == 0)
			return row;
	cr_assert_fail("SHOW STATS has no row for %s", H_DBNAME);
	return -1;
}

/* After the pgbench run of xacts transactions: 32 clients each Parsed the
 * script's 7 statements once; 7 distinct statements; each of the 4
 * servers holds at most 7; a Bind per statement run. PgBouncer's SHOW
 * STATS columns count the same. */
static void prepared_stats_agree(long xacts)
{
	PGconn *admin = h_connect(H_ADMIN, "dbname=sluice");
	PGresult *res = PQexec(admin, "SHOW PREPARED_STATS"), *stats;
	long server_parses;
	int row;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
	cr_assert_eq(PQntuples(res), 1, "one pool, %d rows", PQntuples(res));
	cr_expect_eq(stats_column(res, 0, "client_parses"), 32 * 7);
	cr_expect_eq(stats_column(res, 0, "distinct_statements"), 7);
	cr_expect_leq(stats_column(res, 0, "server_statements"), 4 * 7);
	server_parses = stats_column(res, 0, "server_parses");
	cr_expect_geq(server_parses, 7);
	stats = PQexec(admin, "SHOW STATS");
	cr_assert_eq(PQresultStatus(stats), PGRES_TUPLES_OK, "%s", PQerrorMessage(admin));
	row = test_db_row(stats);
	cr_expect_eq(stats_column(stats, row, "total_client_parse_count"), 32 * 7);
	cr_expect_eq(stats_column(stats, row, "total_server_parse_count"),
	             server_parses);
	cr_expect_eq(stats_column(stats, row, "total_bind_count"), 7 * xacts);
	PQclear(stats);
	PQclear(res);
	PQfinish(admin);
}

Test(prepared, pgbench_prepared_32_clients_4_servers)
{
	static const char *const init[] = { "-i", "-s", "1", "-q", NULL };
	static const char *const run[] = { "-M", "prepared", "-c", "32", "-j", "2",
	                                   "-T", "10", "-n", NULL };
	PGconn *conn;
	long xacts;
	int status;

	setenv("PGPASSWORD", H_ALICE_PASSWORD, 1);
	setenv("PGCONNECT_TIMEOUT", "10", 1);
	h_sluice_start("pool_mode = transaction\ndefault_pool_size = 4\n", NULL);
	status = pgbench(init, 60000);
	cr_assert_eq(status, 0, "pgbench -i exited with %d:\n%s\n%s", status,
	             pgbench_out.out, pgbench_out.err);

	status = pgbench(run, 70000);
	cr_assert_eq(status, 0, "pgbench exited with %d:\n%s\n%s", status,
	             pgbench_out.out, pgbench_out.err);
	xacts = report_number("number of transactions actually processed: ");
	cr_assert_gt(xacts, 0, "no transactions:\n%s", pgbench_out.out);
	cr_assert_eq(report_number("number of failed transactions: "), 0,
	             "failed transactions:\n%s\n%s", pgbench_out.out, pgbench_out.err);
	if (!h_direct()) {
		/* 32 clients, one script of 7 statements: 7 per server at most. */
		conn = h_connect(H_ALICE, NULL);
		for (int i = 0; i < 4; i++) {
			long n = server_statements(conn);

			cr_expect(n >= 1 && n <= 7, "%ld sluice statements on a server", n);
		}
		PQfinish(conn);
		prepared_stats_agree(xacts);
	}
	h_finish();
}

/* ---- eviction ---- */

#define EVICT_MAX 3
#define EVICT_STMTS 10
#define EVICT_CLIENTS 6
#define EVICT_ROUNDS 20

/* Counts sluice's statements on whatever server each sample gets. */
struct sampler {
	atomic_bool done;
	long max;            /* most seen on a server in one sample */
	long samples;
	char why[512];       /* "" unless a sample failed */
};

static void *sample_servers(void *arg)
{
	struct sampler *s = arg;
	PGconn *conn = h_try_connect(H_ALICE, NULL, s->why, sizeof(s->why));

	while (conn && !atomic_load(&s->done)) {
		long n = server_statements_now(conn, s->why, sizeof(s->why));

		if (n < 0)
			break;
		s->samples++;
		if (n > s->max)
			s->max = n;
		h_sleep_ms(2);
	}
	PQfinish(conn);
	return NULL;
}

static bool evict_round(PGconn *conn, struct busy *b, int round)
{
	bool in_tx = round % 4 == 0;
	char x[16], want[16], name[16];
	const char *params[1] = { x };

	if (in_tx && !h_try_exec(conn, "BEGIN", b->why, sizeof(b->why)))
		return false;
	snprintf(x, sizeof(x), "%d", b->id * 100 + round);
	/* Each client starts the cycle elsewhere: the servers' LRU churns. */
	for (int j = 0; j < EVICT_STMTS; j++) {
		int i = (j + b->id) % EVICT_STMTS;

		snprintf(name, sizeof(name), "e%d", i);
		snprintf(want, sizeof(want), "%d", b->id * 100 + round + i);
		if (!exec_ok(conn, name, 1, params, want, b->why, sizeof(b->why)))
			return false;
	}
	return !in_tx || h_try_exec(conn, "COMMIT", b->why, sizeof(b->why));
}

static void *evict_client(void *arg)
{
	struct busy *b = arg;
	PGconn *conn = h_try_connect(H_ALICE, NULL, b->why, sizeof(b->why));
	char sql[64], name[16];

	if (!conn)
		return NULL;
	b->ok = true;
	for (int i = 0; i < EVICT_STMTS && b->ok; i++) {
		snprintf(sql, sizeof(sql), "SELECT $1::int + %d", i);
		snprintf(name, sizeof(name), "e%d", i);
		b->ok = prepare_ok(conn, name, sql, b->why, sizeof(b->why));
	}
	for (int round = 0; round < EVICT_ROUNDS && b->ok; round++)
		b->ok = evict_round(conn, b, round);
	PQfinish(conn);
	return NULL;
}

/* Five statements bound in one Sync, more than a server may keep. */
static void pipeline_of_five(void)
{
	PGconn *conn = h_connect(H_ALICE, NULL);
	const char *params[1] = { "1000" };
	char name[16], sql[64], want[16];
	PGresult *res;

	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		snprintf(sql, sizeof(sql), "SELECT $1::int + %d", i);
		prepare(conn, name, sql);
	}
	cr_assert(PQenterPipelineMode(conn));
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		cr_assert(PQsendQueryPrepared(conn, name, 1, params, NULL, NULL, 0));
	}
	cr_assert(PQpipelineSync(conn));
	for (int i = 0; i < 5; i++) {
		res = h_result_within(conn, H_QUERY_TIMEOUT_MS);
		snprintf(want, sizeof(want), "%d", 1000 + i);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "p%d: %s", i,
		             result_text(res));
		cr_assert_str_eq(PQgetvalue(res, 0, 0), want);
		PQclear(res);
		cr_assert_null(h_result_within(conn, H_QUERY_TIMEOUT_MS));
	}
	res = h_result_within(conn, H_QUERY_TIMEOUT_MS);
	cr_assert_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC);
	PQclear(res);
	cr_assert(PQexitPipelineMode(conn));
	PQfinish(conn);
}

Test(prepared, eviction_keeps_at_most_max_per_server)
{
	struct busy clients[EVICT_CLIENTS];
	pthread_t threads[EVICT_CLIENTS], sampler_thread;
	static struct sampler s;

	h_sluice_start(TX_POOL_2 "max_prepared_statements = 3\n", NULL);
	cr_assert(pthread_create(&sampler_thread, NULL, sample_servers, &s) == 0);
	for (int i = 0; i < EVICT_CLIENTS; i++) {
		clients[i] = (struct busy){ .id = i + 1 };
		cr_assert(pthread_create(&threads[i], NULL, evict_client, &clients[i]) == 0);
	}
	for (int i = 0; i < EVICT_CLIENTS; i++)
		pthread_join(threads[i], NULL);
	atomic_store(&s.done, true);
	pthread_join(sampler_thread, NULL);
	for (int i = 0; i < EVICT_CLIENTS; i++)
		cr_expect(clients[i].ok, "client %d: %s", clients[i].id, clients[i].why);
	cr_expect_str_empty(s.why);
	cr_expect_gt(s.samples, 10, "only %ld samples", s.samples);
	if (!h_direct()) {
		cr_expect_leq(s.max, EVICT_MAX, "a server held %ld of sluice's "
		              "statements, max_prepared_statements = %d", s.max, EVICT_MAX);
		cr_expect_gt(s.max, 0, "no sample saw a statement of sluice's");
	}
	pipeline_of_five();
	h_finish();
}

#define MANY_MAX 20
#define MANY_STMTS 1000

Test(prepared, thousand_statements_from_one_client)
{
	PGconn *conn, *check;
	char name[16], sql[64], want[16];

	h_sluice_start(TX_POOL_2 "max_prepared_statements = 20\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	check = h_connect(H_ALICE, NULL);
	for (int i = 0; i < MANY_STMTS; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		snprintf(sql, sizeof(sql), "SELECT $1::int + %d", i);
		snprintf(want, sizeof(want), "%d", 5 + i);
		prepare(conn, name, sql);
		expect_value(conn, name, "5", want);
		if (i % 100 == 99 && !h_direct())
			cr_assert_leq(server_statements(check), MANY_MAX);
	}
	/* The client still has them all; servers prepare them again. */
	for (int i = MANY_STMTS - 1; i >= 0; i -= 37) {
		snprintf(name, sizeof(name), "d%d", i);
		snprintf(want, sizeof(want), "%d", 7 + i);
		expect_value(conn, name, "7", want);
	}
	if (!h_direct())
		cr_assert_leq(server_statements(check), MANY_MAX);
	PQfinish(check);
	PQfinish(conn);
	h_finish();
}

Test(prepared, one_server_statement_per_text_and_parameter_types)
{
	static const Oid int4[1] = { INT4_OID }, int8[1] = { INT8_OID };
	const char *sql = "SELECT $1::int8 * 3";
	PGconn *conns[4];
	char name[16];

	h_sluice_start(TX_POOL_1, NULL);
	for (int i = 0; i < 4; i++) {
		conns[i] = h_connect(H_ALICE, NULL);
		/* The same text under each client's own name ... */
		snprintf(name, sizeof(name), "mine_%d", i);
		prepare(conns[i], name, sql);
		/* ... and with declared types, which make other statements. */
		prepare_typed(conns[i], "typed4", sql, int4);
		prepare_typed(conns[i], "typed8", sql, int8);
		expect_value(conns[i], name, "14", "42");
		expect_value(conns[i], "typed4", "14", "42");
		expect_value(conns[i], "typed8", "14", "42");
	}
	if (!h_direct())
		cr_assert_eq(server_statements(conns[0]), 3);
	for (int i = 0; i < 4; i++)
		PQfinish(conns[i]);
	h_finish();
}

/* ---- what a raw client sees ---- */

/* Frontend messages built for a raw socket (the buffer grows; a test's
 * process ends with it). */
struct wire {
	uint8_t *buf;
	size_t len;
	size_t cap;
	size_t start;        /* of the message being built */
};

static void wire_bytes(struct wire *w, const void *bytes, size_t n)
{
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;

		while (cap < w->len + n)
			cap *= 2;
		w->buf = realloc(w->buf, cap);
		cr_assert_not_null(w->buf, "raw batch: out of memory");
		w->cap = cap;
	}
	memcpy(w->buf + w->len, bytes, n);
	w->len += n;
}

static void wire_free(struct wire *w)
{
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

static void wire_u16(struct wire *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	wire_bytes(w, b, 2);
}

static void wire_u32(struct wire *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	                 (uint8_t)(v >> 8), (uint8_t)v };

	wire_bytes(w, b, 4);
}

static void wire_str(struct wire *w, const char *s)
{
	wire_bytes(w, s, strlen(s) + 1);
}

static void wire_begin(struct wire *w, char type)
{
	w->start = w->len;
	wire_bytes(w, &type, 1);
	wire_u32(w, 0);
}

/* Fills in the length of the message wire_begin() started. */
static void wire_end(struct wire *w)
{
	uint32_t len = (uint32_t)(w->len - w->start - 1);
	uint8_t *p = w->buf + w->start + 1;

	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
}

static void wire_parse(struct wire *w, const char *name, const char *sql)
{
	wire_begin(w, 'P');
	wire_str(w, name);
	wire_str(w, sql);
	wire_u16(w, 0);
	wire_end(w);
}

/* Bind of the unnamed portal with one text parameter (NULL: none). */
static void wire_bind(struct wire *w, const char *name, const char *param)
{
	wire_begin(w, 'B');
	wire_str(w, "");
	wire_str(w, name);
	wire_u16(w, 0);
	wire_u16(w, param ? 1 : 0);
	if (param) {
		wire_u32(w, (uint32_t)strlen(param));
		wire_bytes(w, param, strlen(param));
	}
	wire_u16(w, 0);
	wire_end(w);
}

static void wire_execute(struct wire *w)
{
	wire_begin(w, 'E');
	wire_str(w, "");
	wire_u32(w, 0);
	wire_end(w);
}

/* Describe or Close (type) of statement name. */
static void wire_statement(struct wire *w, char type, const char *name)
{
	wire_begin(w, type);
	wire_bytes(w, "S", 1);
	wire_str(w, name);
	wire_end(w);
}

static void wire_query(struct wire *w, const char *sql)
{
	wire_begin(w, 'Q');
	wire_str(w, sql);
	wire_end(w);
}

static void wire_sync(struct wire *w)
{
	wire_begin(w, 'S');
	wire_end(w);
}

/* What came back up to ReadyForQuery. */
struct reply {
	char types[32];          /* message types in order, e.g. "12DCZ" */
	char value[2][64];       /* first two columns of the first DataRow */
	struct h_error err;      /* the first ErrorResponse */
};

static void reply_values(const uint8_t *body, size_t len, struct reply *r)
{
	size_t off = 2;

	for (int c = 0; c < 2 && off + 4 <= len; c++) {
		uint32_t n = h_get_be32(body + off);

		off += 4;
		if (n == UINT32_MAX) {
			snprintf(r->value[c], sizeof(r->value[c]), "NULL");
			continue;
		}
		cr_assert_leq(off + n, len, "bad DataRow");
		snprintf(r->value[c], sizeof(r->value[c]), "%.*s", (int)n, body + off);
		off += n;
	}
}

/* Sends the batch in w (and empties it), reads the reply into r. */
static void exchange(int fd, struct wire *w, struct reply *r)
{
	static uint8_t body[65536];
	size_t len, n = 0;
	char type;

	cr_assert(h_raw_send(fd, w->buf, w->len), "sending a raw batch failed");
	w->len = 0;
	memset(r, 0, sizeof(*r));
	do {
		cr_assert_eq(h_raw_read_msg(fd, H_QUERY_TIMEOUT_MS, &type, body,
		                            sizeof(body), &len), 1,
		             "no ReadyForQuery after \"%s\"", r->types);
		/* Notices and parameter changes may come at any time. */
		if (type == 'N' || type == 'S')
			continue;
		cr_assert_lt(n, sizeof(r->types) - 1, "too many messages: %s", r->types);
		if (type == 'D' && !strchr(r->types, 'D'))
			reply_values(body, len, r);
		if (type == 'E' && !strchr(r->types, 'E'))
			h_parse_error(body, len, &r->err);
		r->types[n++] = type;
	} while (type != 'Z');
}

/* Asserts the reply's message types, and that it ran on server pid. */
static void expect_reply(const struct reply *r, const char *types, int pid)
{
	cr_assert_str_eq(r->types, types, "messages %s, expected %s (error: %s %s)",
	                 r->types, types, r->err.sqlstate, r->err.message);
	if (pid && !h_direct())
		cr_assert_eq(atoi(r->value[1]), pid, "ran on server %s, expected %d",
		             r->value[1], pid);
}

static void expect_reply_error(const struct reply *r, const char *sqlstate,
                               const char *message)
{
	expect_reply(r, "EZ", 0);
	cr_assert(strcmp(r->err.sqlstate, sqlstate) == 0 &&
	          strcmp(r->err.message, message) == 0,
	          "expected %s %s, got %s %s", sqlstate, message,
	          r->err.sqlstate, r->err.message);
}

Test(prepared, raw_client_gets_postgresql_messages_from_any_server)
{
	struct wire w = { .len = 0 };
	struct reply r;
	struct pins p;
	int fd;

	h_sluice_start(TX_POOL_2, NULL);
	pins_open(&p, H_CAROL);
	fd = h_raw_login(H_CAROL, NULL);

	/* Prepared and run on the first server. */
	pins_free_only(&p, p.pid[0]);
	wire_parse(&w, "s1", "SELECT $1::int * 2, pg_backend_pid()");
	wire_bind(&w, "s1", "21");
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "12DCZ", p.pid[0]);
	cr_assert_str_eq(r.value[0], "42");

	/* The second server never saw it: no ParseComplete of sluice's own. */
	pins_free_only(&p, p.pid[1]);
	wire_bind(&w, "s1", "5");
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "2DCZ", p.pid[1]);
	cr_assert_str_eq(r.value[0], "10");

	/* Describe where the statement is not prepared yet. */
	wire_parse(&w, "s2", "SELECT $1::text AS greeting");
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "1Z", 0);
	pins_free_only(&p, p.pid[0]);
	wire_statement(&w, 'D', "s2");
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "tTZ", 0);

	/* Close is the client's: the servers keep what they prepared. */
	wire_statement(&w, 'C', "s1");
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "3Z", 0);
	if (!h_direct())
		cr_assert_eq(server_statements(pins_holder(&p, p.pid[1])), 2);
	wire_bind(&w, "s1", "5");
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "26000", "prepared statement \"s1\" does not exist");
	/* The name is free again, for another text. */
	wire_parse(&w, "s1", "SELECT $1::int + 1000");
	wire_bind(&w, "s1", "5");
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "12DCZ", 0);
	cr_assert_str_eq(r.value[0], "1005");

	/* A Parse that fails leaves nothing behind. */
	wire_parse(&w, "bad", "SELEC 1");
	wire_bind(&w, "bad", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "42601", "syntax error at or near \"SELEC\"");
	wire_bind(&w, "bad", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "26000", "prepared statement \"bad\" does not exist");

	/* The unnamed statement is untouched. */
	wire_parse(&w, "", "SELECT 7");
	wire_bind(&w, "", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "12DCZ", 0);
	cr_assert_str_eq(r.value[0], "7");

	close(fd);
	wire_free(&w);
	pins_close(&p);
	h_finish();
}

/* ---- pipelines ---- */

#define PIPE_CLIENTS 4
#define PIPE_SEGMENTS 30

/*
 * The next result of a pipeline: status want and, for rows, first value
 * value; for an error, SQLSTATE value and primary message message (NULL:
 * any). False with why on a mismatch.
 */
static bool pipe_next(PGconn *conn, ExecStatusType want, const char *value,
                      const char *message, char *why, size_t whylen)
{
	PGresult *res = h_result_within(conn, H_QUERY_TIMEOUT_MS);
	const char *got = "", *got_message = NULL;
	bool ok = res && PQresultStatus(res) == want;

	if (ok && want == PGRES_TUPLES_OK)
		got = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "no row";
	if (ok && want == PGRES_FATAL_ERROR) {
		got = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		got_message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	}
	ok = ok && (!value || (got && strcmp(got, value) == 0)) &&
	     (!message || (got_message && strcmp(got_message, message) == 0));
	if (!ok)
		snprintf(why, whylen, "got %s (%s), expected %s %s %s",
		         PQresStatus(PQresultStatus(res)), result_text(res),
		         PQresStatus(want), value ? value : "", message ? message : "");
	PQclear(res);
	/* Every result but a sync point is followed by NULL. */
	if (ok && want != PGRES_PIPELINE_SYNC &&
	    (res = h_result_within(conn, H_QUERY_TIMEOUT_MS))) {
		snprintf(why, whylen, "no NULL after %s", PQresStatus(want));
		PQclear(res);
		ok = false;
	}
	return ok;
}

static void pipeline_send(PGconn *conn, int id)
{
	char param[16];
	const char *params[1] = { param };

	snprintf(param, sizeof(param), "%d", id);
	/* 0: prepare, a Parse that fails, a Bind PostgreSQL then skips */
	PQsendPrepare(conn, "p", "SELECT $1::int * 3", 0, NULL);
	PQsendPrepare(conn, "bad", "SELEC 1", 0, NULL);
	PQsendQueryPrepared(conn, "p", 1, params, NULL, NULL, 0);
	PQpipelineSync(conn);
	/* 1: the failed statement does not exist */
	PQsendQueryPrepared(conn, "bad", 0, NULL, NULL, NULL, 0);
	PQpipelineSync(conn);
	/* 2..: "p" on whatever server each Sync gets */
	for (int i = 2; i < PIPE_SEGMENTS; i++) {
		snprintf(param, sizeof(param), "%d", id * 1000 + i);
		PQsendQueryPrepared(conn, "p", 1, params, NULL, NULL, 0);
		PQpipelineSync(conn);
	}
}

static bool pipeline_read(PGconn *conn, struct busy *b)
{
	const size_t n = sizeof(b->why);
	char want[16];
	bool ok = pipe_next(conn, PGRES_COMMAND_OK, NULL, NULL, b->why, n) &&
	          pipe_next(conn, PGRES_FATAL_ERROR, "42601",
	                    "syntax error at or near \"SELEC\"", b->why, n) &&
	          pipe_next(conn, PGRES_PIPELINE_ABORTED, NULL, NULL, b->why, n) &&
	          pipe_next(conn, PGRES_PIPELINE_SYNC, NULL, NULL, b->why, n) &&
	          pipe_next(conn, PGRES_FATAL_ERROR, "26000",
	                    "prepared statement \"bad\" does not exist", b->why, n) &&
	          pipe_next(conn, PGRES_PIPELINE_SYNC, NULL, NULL, b->why, n);

	for (int i = 2; i < PIPE_SEGMENTS && ok; i++) {
		snprintf(want, sizeof(want), "%d", (b->id * 1000 + i) * 3);
		ok = pipe_next(conn, PGRES_TUPLES_OK, want, NULL, b->why, n) &&
		     pipe_next(conn, PGRES_PIPELINE_SYNC, NULL, NULL, b->why, n);
	}
	return ok;
}

static void *pipeline_client(void *arg)
{
	struct busy *b = arg;
	PGconn *conn = h_try_connect(H_ALICE, NULL, b->why, sizeof(b->why));

	if (!conn || !PQenterPipelineMode(conn)) {
		PQfinish(conn);
		return NULL;
	}
	pipeline_send(conn, b->id);
	b->ok = pipeline_read(conn, b);
	if (b->ok && !PQexitPipelineMode(conn)) {
		snprintf(b->why, sizeof(b->why), "exit: %s", PQerrorMessage(conn));
		b->ok = false;
	}
	PQfinish(conn);
	return NULL;
}

Test(prepared, pipelines_prepare_and_execute_across_syncs)
{
	struct busy clients[PIPE_CLIENTS];
	pthread_t threads[PIPE_CLIENTS];

	h_sluice_start(TX_POOL_2, NULL);
	for (int i = 0; i < PIPE_CLIENTS; i++) {
		clients[i] = (struct busy){ .id = i + 1 };
		cr_assert(pthread_create(&threads[i], NULL, pipeline_client,
		                         &clients[i]) == 0);
	}
	for (int i = 0; i < PIPE_CLIENTS; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < PIPE_CLIENTS; i++)
		cr_expect(clients[i].ok, "client %d: %s", clients[i].id, clients[i].why);
	h_finish();
}

/* ---- errors ---- */

Test(prepared, errors_keep_postgresql_text)
{
	const char *params[1] = { "1" };
	PGconn *conn;

	h_sluice_start(TX_POOL_2, NULL);
	conn = h_connect(H_ALICE, NULL);

	/* A syntax error is PostgreSQL's, and caches nothing. */
	expect_error(run_prepare(conn, "bad", "SELEC 1", 0, NULL), "Parse bad",
	             "42601",
	             "syntax error at or near \"SELEC\"");
	expect_usable(conn);
	expect_error(run_prepared(conn, "bad", 0, NULL),
	             "Bind bad after its Parse failed", "26000",
	             "prepared statement \"bad\" does not exist");
	prepare(conn, "bad", "SELECT 7");
	expect_value(conn, "bad", NULL, "7");

	/* Names the client never prepared. */
	expect_error(run_prepared(conn, "never", 1, params), "Bind never",
	             "26000", "prepared statement \"never\" does not exist");
	expect_usable(conn);
	expect_error(run_describe(conn, "never"), "Describe never", "26000",
	             "prepared statement \"never\" does not exist");
	expect_usable(conn);

	/* A name prepared twice, with the same text or another. */
	prepare(conn, "dup", "SELECT $1::int + 1");
	expect_error(run_prepare(conn, "dup", "SELECT $1::int + 1", 0, NULL),
	             "Parse dup again, same text", "42P05",
	             "prepared statement \"dup\" already exists");
	expect_usable(conn);
	expect_error(run_prepare(conn, "dup", "SELECT $1::int + 2", 0, NULL),
	             "Parse dup again, other text", "42P05",
	             "prepared statement \"dup\" already exists");
	expect_usable(conn);
	expect_value(conn, "dup", "1", "2");

	/* Inside a transaction the error aborts it, as on PostgreSQL. */
	h_exec(conn, "BEGIN");
	expect_error(run_prepared(conn, "never", 1, params),
	             "Bind never in a transaction", "26000",
	             "prepared statement \"never\" does not exist");
	cr_assert_eq(PQtransactionStatus(conn), PQTRANS_INERROR);
	h_exec(conn, "ROLLBACK");
	expect_value(conn, "dup", "41", "42");
	expect_usable(conn);
	PQfinish(conn);
	h_finish();
}

Test(prepared, dropped_table_fails_alike_on_every_server)
{
	const char *gone = "relation \"prep_gone\" does not exist";
	struct pins p;
	PGconn *conn;

	h_pg_exec("DROP TABLE IF EXISTS prep_gone");
	h_sluice_start(TX_POOL_2, NULL);
	pins_open(&p, H_ALICE);
	conn = h_connect(H_ALICE, NULL);
	pins_free_only(&p, p.pid[0]);
	h_exec(conn, "CREATE TABLE prep_gone (x int)");
	h_exec(conn, "INSERT INTO prep_gone VALUES (42)");
	prepare(conn, "g", "SELECT x FROM prep_gone");
	expect_value(conn, "g", NULL, "42");
	h_exec(conn, "DROP TABLE prep_gone");

	/* Where it is prepared PostgreSQL plans it again, and fails. */
	expect_error(run_prepared(conn, "g", 0, NULL), "where prepared", "42P01",
	             gone);
	/* Where it is not, preparing it fails the same way. */
	pins_free_only(&p, p.pid[1]);
	expect_error(run_prepared(conn, "g", 0, NULL), "where not prepared",
	             "42P01", gone);
	expect_usable(conn);

	/* Once the table is back, both servers run it. */
	h_exec(conn, "CREATE TABLE prep_gone (x int)");
	h_exec(conn, "INSERT INTO prep_gone VALUES (7)");
	expect_value(conn, "g", NULL, "7");
	pins_free_only(&p, p.pid[0]);
	expect_value(conn, "g", NULL, "7");
	h_exec(conn, "DROP TABLE prep_gone");
	PQfinish(conn);
	pins_close(&p);
	h_finish();
}

/* ---- DEALLOCATE ALL, DISCARD ALL ---- */

/* Runs sql, which forgets conn's statements (through the extended protocol
 * if extended), then checks they are gone and the names can be prepared
 * again, as "SELECT <round>"; other's statement "a1" still works. */
static void expect_forgotten(PGconn *conn, PGconn *other, const char *sql,
                             bool extended, int round)
{
	char what[64], text[64], want[16];

	snprintf(what, sizeof(what), "after %s%s", sql,
	         extended ? " (extended protocol)" : "");
	if (extended) {
		int sent = PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
		PGresult *res = await_result(conn, sent);

		cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s: %s", sql,
		             result_text(res));
		PQclear(res);
	} else {
		h_exec(conn, "%s", sql);
	}
	expect_error(run_prepared(conn, "a1", 0, NULL), what, "26000",
	             "prepared statement \"a1\" does not exist");
	expect_error(run_describe(conn, "a2"), what, "26000",
	             "prepared statement \"a2\" does not exist");
	/* The other client's statements are its own; the server may have lost
	 * them, sluice prepares them again. */
	expect_value(other, "a1", NULL, "100");
	snprintf(text, sizeof(text), "SELECT %d", round);
	snprintf(want, sizeof(want), "%d", round);
	prepare(conn, "a1", text);
	prepare(conn, "a2", "SELECT 2");
	expect_value(conn, "a1", NULL, want);
	expect_value(conn, "a2", NULL, "2");
}

/* Two clients of a pool of one server, each with a statement "a1". */
static void two_clients_one_server(PGconn **a, PGconn **b)
{
	/* One server: what a does to it, b's statements go through too. */
	h_sluice_start(TX_POOL_1, NULL);
	*a = h_connect(H_ALICE, NULL);
	*b = h_connect(H_ALICE, NULL);
	prepare(*a, "a1", "SELECT 1");
	prepare(*a, "a2", "SELECT 2");
	prepare(*b, "a1", "SELECT 100");
	expect_value(*a, "a1", NULL, "1");
	expect_value(*b, "a1", NULL, "100");
}

Test(prepared, deallocate_all_and_discard_all_forget_a_clients_statements)
{
	PGconn *a, *b;

	two_clients_one_server(&a, &b);
	expect_forgotten(a, b, "DEALLOCATE ALL", false, 3);
	expect_forgotten(a, b, "DISCARD ALL", false, 4);
	expect_forgotten(a, b, "deallocate  all;", false, 5);
	h_exec(a, "BEGIN");
	expect_value(a, "a1", NULL, "5");
	h_exec(a, "DEALLOCATE ALL");
	h_exec(a, "COMMIT");
	expect_error(run_prepared(a, "a1", 0, NULL),
	             "after DEALLOCATE ALL in a transaction", "26000",
	             "prepared statement \"a1\" does not exist");
	expect_usable(a);
	expect_value(b, "a1", NULL, "100");
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

Test(prepared, deallocate_all_through_the_extended_protocol)
{
	PGconn *a, *b;

	two_clients_one_server(&a, &b);
	expect_forgotten(a, b, "DEALLOCATE ALL", true, 3);
	expect_forgotten(a, b, "DISCARD ALL", true, 4);
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

/* ---- max_prepared_statements = 0 and session mode ---- */

/* Executes "mine" (x * 5) ten times, in and out of transactions. */
static void run_mine(PGconn *conn, const char *name)
{
	char x[16], want[16];

	for (int i = 0; i < 10; i++) {
		snprintf(x, sizeof(x), "%d", i);
		snprintf(want, sizeof(want), "%d", i * 5);
		if (i % 3 == 0)
			h_exec(conn, "BEGIN");
		expect_value(conn, name, x, want);
		if (i % 3 == 0)
			h_exec(conn, "COMMIT");
	}
}

/* The names on the server conn's next transaction gets, comma-separated. */
static void server_names(PGconn *conn, char *out, size_t len)
{
	h_query_str(conn, out, len, "SELECT coalesce(string_agg(name, ',' ORDER BY "
	            "name), '') FROM pg_prepared_statements");
}

Test(prepared, off_session_mode_passes_names_untouched)
{
	PGconn *conn;
	char names[256];

	h_sluice_start("pool_mode = session\ndefault_pool_size = 2\n"
	               "max_prepared_statements = 0\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	prepare(conn, "mine", "SELECT $1::int * 5");
	run_mine(conn, "mine");
	server_names(conn, names, sizeof(names));
	cr_assert_str_eq(names, "mine");
	PQfinish(conn);
	h_finish();
}

Test(prepared, off_transaction_mode_one_server_passes_names_untouched)
{
	PGconn *a, *b;
	char names[256];

	h_sluice_start(TX_POOL_1 "max_prepared_statements = 0\n", NULL);
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_ALICE, NULL);
	prepare(a, "mine_a", "SELECT $1::int * 5");
	prepare(b, "mine_b", "SELECT $1::int * 5");
	run_mine(a, "mine_a");
	run_mine(b, "mine_b");
	server_names(a, names, sizeof(names));
	/* One server holds both clients' statements under their own names. */
	cr_assert_str_eq(names, h_direct() ? "mine_a" : "mine_a,mine_b");
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

Test(prepared, session_mode_with_the_default)
{
	PGconn *conn;

	h_sluice_start("pool_mode = session\ndefault_pool_size = 2\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	prepare(conn, "mine", "SELECT $1::int * 5");
	run_mine(conn, "mine");
	expect_error(run_prepare(conn, "mine", "SELECT 1", 0, NULL), "Parse mine",
	             "42P05",
	             "prepared statement \"mine\" already exists");
	expect_error(run_prepared(conn, "never", 0, NULL), "Bind never", "26000",
	             "prepared statement \"never\" does not exist");
	h_exec(conn, "DEALLOCATE ALL");
	expect_error(run_prepared(conn, "mine", 0, NULL), "DEALLOCATE ALL",
	             "26000",
	             "prepared statement \"mine\" does not exist");
	prepare(conn, "mine", "SELECT $1::int * 5");
	run_mine(conn, "mine");
	PQfinish(conn);
	h_finish();
}

/* ---- real drivers ---- */

/* test/drivers/run.sh of the source tree. */
static void drivers_script(char *path, size_t len)
{
	const char *srcdir = getenv("SLUICE_SRCDIR");
	const char *slash = strrchr(__FILE__, '/');
	int dirlen = slash ? (int)(slash + 1 - __FILE__) : 0;

	if (srcdir && *srcdir)
		snprintf(path, len, "%s/test/drivers/run.sh", srcdir);
	else /* run by hand: beside this file's directory */
		snprintf(path, len, "%.*s../drivers/run.sh", dirlen, __FILE__);
	cr_assert(access(path, R_OK) == 0,
	          "cannot read %s (set SLUICE_SRCDIR to the source tree)", path);
}

Test(prepared, drivers_asyncpg_psycopg_node_pg_postgres_js, .timeout = 600)
{
	static struct h_output out;
	char script[PATH_MAX], port[16];
	const char *argv[] = { "bash", script, "--host", "127.0.0.1", "--port", port,
	                       "--user", H_ALICE, "--password", H_ALICE_PASSWORD,
	                       "--dbname", H_DBNAME, NULL };
	int status;

	drivers_script(script, sizeof(script));
	h_sluice_start(TX_POOL_2, NULL);
	snprintf(port, sizeof(port), "%d", h_port());
	/* A driver takes seconds; installing the first time may take minutes. */
	setenv("DRIVER_TIMEOUT", "90", 1);
	status = h_run(argv, 540000, &out);
	if (status == 77) {
		h_finish();
		cr_skip_test("drivers not installed:\n%s", out.out);
	}
	/* The drivers' own lines first, then whether sluice stopped cleanly. */
	cr_expect_eq(status, 0, "test/drivers/run.sh exited with %d:\n%s\n%s",
	             status, out.out, out.err);
	cr_log_info("%s", out.out);
	h_finish();
}

/* ---- hostile input (issue 12): each repro is one write of raw bytes ---- */

#define ALLOWED_GROWTH_KB (64 * 1024)

/* sluice's peak resident memory so far (VmHWM), in KiB. */
static long sluice_peak_kb(void)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)h_sluice_pid());
	f = fopen(path, "r");
	cr_assert_not_null(f, "cannot read %s", path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* "SELECT <value> /" "* padding *" "/", len bytes long. */
static char *padded_sql(const char *value, size_t len)
{
	char *sql = malloc(len + 1);
	int n = snprintf(sql, len + 1, "SELECT %s /*", value);

	memset(sql + n, 'x', len - (size_t)n - 2);
	memcpy(sql + len - 2, "*/", 3);
	return sql;
}

/* A new client of the pool still gets answers. */
static void expect_new_client_works(void)
{
	PGconn *conn = h_connect(H_ALICE, NULL);

	prepare(conn, "fresh", "SELECT 41 + 1");
	expect_value(conn, "fresh", NULL, "42");
	PQfinish(conn);
}

/* Reads until ReadyForQuery: the number of messages of type want before it,
 * asserting no other type but those in also came. */
static int count_until_ready(int fd, char want, const char *also)
{
	static uint8_t body[65536];
	int count = 0;
	size_t len;
	char type;

	for (;;) {
		cr_assert_eq(h_raw_read_msg(fd, H_QUERY_TIMEOUT_MS, &type, body,
		                            sizeof(body), &len), 1,
		             "no ReadyForQuery after %d '%c'", count, want);
		if (type == 'Z')
			return count;
		if (type == want)
			count++;
		else
			cr_assert(strchr(also, type), "unexpected message '%c'", type);
	}
}

static void expect_deallocated_in_one_write(const char *sql)
{
	struct wire w = { .len = 0 };
	struct reply r;
	int fd = h_raw_login(H_CAROL, NULL);

	wire_parse(&w, "s1", "SELECT 1");
	wire_query(&w, sql);
	exchange(fd, &w, &r);
	expect_reply(&r, "1CZ", 0);
	/* The server dropped it, as PostgreSQL says: so does sluice. */
	wire_bind(&w, "s1", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "26000", "prepared statement \"s1\" does not exist");
	wire_parse(&w, "s1", "SELECT 2");
	wire_bind(&w, "s1", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "12DCZ", 0);
	cr_assert_str_eq(r.value[0], "2");
	close(fd);
	wire_free(&w);
}

Test(prepared, parse_then_deallocate_all_in_one_write)
{
	h_sluice_start(TX_POOL_1, NULL);
	expect_deallocated_in_one_write("DEALLOCATE ALL");
	expect_deallocated_in_one_write("discard all;");
	expect_new_client_works();
	h_finish();
}

Test(prepared, failed_parses_then_close_in_one_write)
{
	struct wire w = { .len = 0 };
	struct reply r;
	int fd;

	h_sluice_start(TX_POOL_1, NULL);
	fd = h_raw_login(H_CAROL, NULL);
	wire_parse(&w, "a", "SELEC");
	wire_parse(&w, "b", "SELEC");
	wire_statement(&w, 'C', "b");
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "42601", "syntax error at or near \"SELEC\"");
	/* Neither name was taken. */
	wire_parse(&w, "a", "SELECT 3");
	wire_parse(&w, "b", "SELECT 4");
	wire_bind(&w, "b", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "112DCZ", 0);
	cr_assert_str_eq(r.value[0], "4");
	close(fd);
	wire_free(&w);
	expect_new_client_works();
	h_finish();
}

Test(prepared, unnamed_parse_of_deallocate_all_that_never_runs)
{
	struct wire w = { .len = 0 };
	struct reply r;
	int fd;

	h_sluice_start(TX_POOL_1, NULL);
	fd = h_raw_login(H_CAROL, NULL);
	wire_parse(&w, "kept", "SELECT 5");
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "1Z", 0);
	wire_bind(&w, "nosuch", NULL);
	wire_parse(&w, "s1", "SELECT 1");
	wire_parse(&w, "", "DEALLOCATE ALL");
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "26000", "prepared statement \"nosuch\" does not exist");
	/* Nothing ran: "kept" is still there, "s1" never was. */
	wire_bind(&w, "kept", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "2DCZ", 0);
	cr_assert_str_eq(r.value[0], "5");
	wire_bind(&w, "s1", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "26000", "prepared statement \"s1\" does not exist");
	close(fd);
	wire_free(&w);
	expect_new_client_works();
	h_finish();
}

/* A name reused in the next batch, after its first Parse was skipped:
 * the server must not get the new text under the first one's name. */
Test(prepared, name_reused_after_a_skipped_parse)
{
	struct wire w = { .len = 0 };
	struct reply r;
	PGconn *other;
	int fd;

	h_sluice_start(TX_POOL_1, NULL);
	fd = h_raw_login(H_CAROL, NULL);
	wire_bind(&w, "nosuch", NULL);
	wire_parse(&w, "d", "SELECT 1");
	wire_sync(&w);
	wire_parse(&w, "d", "SELECT 666");
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "26000", "prepared statement \"nosuch\" does not exist");
	cr_assert_eq(count_until_ready(fd, '1', ""), 1);
	wire_bind(&w, "d", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "2DCZ", 0);
	cr_assert_str_eq(r.value[0], "666");
	/* Another client's "SELECT 1" on the same server is what it says. */
	other = h_connect(H_CAROL, NULL);
	prepare(other, "e", "SELECT 1");
	expect_value(other, "e", NULL, "1");
	PQfinish(other);
	close(fd);
	wire_free(&w);
	h_finish();
}

/* A Query inside an extended batch that fails is skipped by PostgreSQL,
 * with no ReadyForQuery: waiting for an earlier batch must not hang. */
Test(prepared, query_inside_a_failed_batch_does_not_hang)
{
	struct wire w = { .len = 0 };
	struct reply r;
	int fd;

	h_sluice_start(TX_POOL_1, NULL);
	fd = h_raw_login(H_CAROL, NULL);
	wire_bind(&w, "nosuch", NULL);
	wire_query(&w, "SELECT 1");
	wire_parse(&w, "d", "SELECT 1");
	wire_sync(&w);
	wire_parse(&w, "d", "SELECT 2");
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "26000", "prepared statement \"nosuch\" does not exist");
	/* What comes before it is not exact: sluice's count of answers is
	 * off for this client (see doc/prepared.md); it must come. */
	count_until_ready(fd, '1', "E3");
	wire_query(&w, "SELECT 3");
	exchange(fd, &w, &r);
	expect_reply(&r, "TDCZ", 0);
	cr_assert_str_eq(r.value[0], "3");
	close(fd);
	wire_free(&w);
	expect_new_client_works();
	h_finish();
}

#define LRU_MAX 20

Test(prepared, eviction_behind_unanswered_parses)
{
	struct wire w = { .len = 0 };
	char name[16], sql[32];
	struct reply r;
	int fd;

	h_sluice_start(TX_POOL_1 "max_prepared_statements = 20\n", NULL);
	fd = h_raw_login(H_CAROL, NULL);
	/* A statement only the server holds, its Parse unanswered, then more
	 * than fit on the server: it is evicted to make room. */
	wire_parse(&w, "gone", "SELECT 'gone'");
	wire_statement(&w, 'C', "gone");
	for (int i = 0; i < LRU_MAX + 5; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		wire_parse(&w, name, sql);
	}
	wire_bind(&w, "p0", NULL);
	wire_execute(&w);
	wire_sync(&w);
	cr_assert(h_raw_send(fd, w.buf, w.len));
	w.len = 0;
	cr_assert_eq(count_until_ready(fd, '1', "23DC"), LRU_MAX + 6);
	/* Every one still runs, but the one closed. */
	for (int i = 0; i < LRU_MAX + 5; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		snprintf(sql, sizeof(sql), "%d", i);
		wire_bind(&w, name, NULL);
		wire_execute(&w);
		wire_sync(&w);
		exchange(fd, &w, &r);
		expect_reply(&r, "2DCZ", 0);
		cr_assert_str_eq(r.value[0], sql);
	}
	wire_bind(&w, "gone", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply_error(&r, "26000", "prepared statement \"gone\" does not exist");
	close(fd);
	wire_free(&w);
	expect_new_client_works();
	h_finish();
}

#define BIG_TEXT (900 * 1024)
#define BIND_SYNCS 615

/*
 * The amplification: a big statement evicted from the server, then
 * many Bind+Sync of it in one write. sluice prepares it once and makes the
 * later Binds wait for the answer, instead of sending the text again with
 * each batch (615 x 900 KiB).
 */
Test(prepared, bind_sync_flood_does_not_amplify_a_big_statement)
{
	struct wire w = { .len = 0 };
	struct reply r;
	char *big = padded_sql("7", BIG_TEXT);
	char name[16];
	long before;
	int fd;

	h_sluice_start(TX_POOL_1 "max_prepared_statements = 5\n", NULL);
	fd = h_raw_login(H_CAROL, NULL);
	wire_parse(&w, "big", big);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "1Z", 0);
	for (int i = 0; i < 6; i++) {
		char sql[32];

		snprintf(name, sizeof(name), "e%d", i);
		snprintf(sql, sizeof(sql), "SELECT %d", i);
		wire_parse(&w, name, sql);
	}
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "111111Z", 0);
	before = sluice_peak_kb();
	for (int i = 0; i < BIND_SYNCS; i++) {
		wire_bind(&w, "big", NULL);
		wire_sync(&w);
	}
	cr_assert(h_raw_send(fd, w.buf, w.len));
	w.len = 0;
	for (int i = 0; i < BIND_SYNCS; i++)
		cr_assert_eq(count_until_ready(fd, '2', ""), 1, "batch %d", i);
	cr_assert_lt(sluice_peak_kb() - before, ALLOWED_GROWTH_KB,
	             "peak RSS grew from %ld to %ld kB", before, sluice_peak_kb());
	wire_bind(&w, "big", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "2DCZ", 0);
	cr_assert_str_eq(r.value[0], "7");
	close(fd);
	wire_free(&w);
	free(big);
	expect_new_client_works();
	h_finish();
}

/*
 * Two big statements taking turns on a server that holds one, all in one
 * batch: each Bind prepares the other again. What one pass may queue is
 * bounded: the server connection is closed, with an error to the client.
 */
Test(prepared, output_of_one_pass_is_bounded)
{
	struct wire w = { .len = 0 };
	char *a = padded_sql("1", BIG_TEXT), *b = padded_sql("2", BIG_TEXT);
	struct h_error err;
	struct reply r;
	long before;
	int fd;

	h_require_sluice();
	h_sluice_start(TX_POOL_1 "max_prepared_statements = 1\n", NULL);
	fd = h_raw_login(H_CAROL, NULL);
	wire_parse(&w, "a", a);
	wire_parse(&w, "b", b);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "11Z", 0);
	before = sluice_peak_kb();
	/* 360 MiB of Parses, unbounded */
	for (int i = 0; i < 400; i++)
		wire_bind(&w, i % 2 ? "b" : "a", NULL);
	wire_sync(&w);
	cr_assert(h_raw_send(fd, w.buf, w.len));
	cr_assert(h_raw_expect_error(fd, H_QUERY_TIMEOUT_MS, &err));
	cr_assert_str_eq(err.sqlstate, "08P01");
	cr_assert(h_log_wait("over 64 MiB of output in one pass", 5000));
	/* 64 MiB grown by doubling, and ASan's quarantine of the smaller */
	cr_assert_lt(sluice_peak_kb() - before, 5 * ALLOWED_GROWTH_KB,
	             "peak RSS grew from %ld to %ld kB", before, sluice_peak_kb());
	close(fd);
	wire_free(&w);
	free(a);
	free(b);
	expect_new_client_works();
	h_finish();
}

Test(prepared, autodb_pool_freed_after_its_servers_close)
{
	PGconn *conn;

	h_require_sluice();
	h_sluice_start(TX_POOL_1 "autodb_idle_timeout = 0.3\n",
	               "* = host=127.0.0.1 port=%PGPORT%");
	conn = h_connect(H_ALICE, "dbname=postgres");
	prepare(conn, "s1", "SELECT 1");
	expect_value(conn, "s1", NULL, "1");
	PQfinish(conn);
	cr_assert(h_log_wait("autodb_idle_timeout reached, removed", 5000));
	h_sleep_ms(300);
	conn = h_connect(H_ALICE, "dbname=postgres");
	prepare(conn, "s1", "SELECT 2");
	expect_value(conn, "s1", NULL, "2");
	PQfinish(conn);
	h_finish();
}

/* ---- one client against another's statements ---- */

/* The name sluice gave conn's statement, from the server itself. */
static void server_name_of(PGconn *conn, const char *name, char *out, size_t len)
{
	h_exec(conn, "BEGIN");
	expect_value(conn, name, NULL, "1");
	h_query_str(conn, out, len, "SELECT name FROM pg_prepared_statements");
	h_exec(conn, "COMMIT");
}

static bool random_form(const char *name)
{
	size_t n = strlen(name);

	if (n < 25 || strncmp(name, "sluice_", 7) != 0 || name[23] != '_')
		return false;
	for (size_t i = 7; i < 23; i++)
		if (!strchr("0123456789abcdef", name[i]))
			return false;
	return strspn(name + 24, "0123456789") == n - 24;
}

Test(prepared, server_names_are_random_per_process)
{
	char first[64], second[64];
	PGconn *conn;

	h_require_sluice();
	h_sluice_start(TX_POOL_1, NULL);
	conn = h_connect(H_ALICE, NULL);
	prepare(conn, "s1", "SELECT 1");
	server_name_of(conn, "s1", first, sizeof(first));
	PQfinish(conn);
	h_sluice_stop();
	h_pg_wait_clean(5000);
	h_sluice_start(TX_POOL_1, NULL);
	conn = h_connect(H_ALICE, NULL);
	prepare(conn, "s1", "SELECT 1");
	server_name_of(conn, "s1", second, sizeof(second));
	PQfinish(conn);
	cr_assert(random_form(first) && random_form(second),
	          "names %s and %s are not sluice_<16 hex>_<n>", first, second);
	cr_assert(strncmp(first, second, 23) != 0, "same prefix twice: %s", first);
	h_finish();
}

/* sql (a Query, or through Parse if extended) touching a sluice name is
 * refused, and the connection closed. */
static void expect_refused(const char *before, const char *name,
                           const char *after, bool extended)
{
	PGconn *conn = h_connect(H_ALICE, NULL);
	char sql[256];
	PGresult *res;
	struct h_error err;

	snprintf(sql, sizeof(sql), "%s%s%s", before, name, after);
	/* The first result is the FATAL error itself, fields and all. */
	cr_assert(extended ? PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL,
	                                       NULL, 0)
	                   : PQsendQuery(conn, sql));
	res = h_result_within(conn, H_QUERY_TIMEOUT_MS);
	cr_assert_not_null(res, "%s: no answer", sql);
	h_result_error(res, &err);
	cr_assert_str_eq(err.sqlstate, "42501", "%s: %s %s", sql, err.sqlstate,
	                 err.message);
	cr_assert(strstr(err.message, "reserved"), "%s: %s", sql, err.message);
	PQclear(res);
	PQfinish(conn);
}

Test(prepared, sql_may_not_touch_sluice_names)
{
	char name[64];
	PGconn *victim;

	h_require_sluice();
	h_sluice_start(TX_POOL_1, NULL);
	victim = h_connect(H_ALICE, NULL);
	prepare(victim, "s1", "SELECT 1");
	server_name_of(victim, "s1", name, sizeof(name));
	expect_refused("DEALLOCATE ", name, "", false);
	expect_refused("deallocate prepare \"", name, "\"", false);
	expect_refused("SELECT 1; DEALLOCATE /* x */ ", name, "", false);
	expect_refused("DO $$ BEGIN EXECUTE 'DEALLOCATE ", name, "'; END $$", false);
	expect_refused("PREPARE ", name, " AS SELECT 666", false);
	expect_refused("EXECUTE ", name, "", true);
	/* Reading the names is fine. */
	cr_assert_eq(h_query_int(victim, "%s", SERVER_STATEMENTS_SQL), 1);
	expect_value(victim, "s1", NULL, "1");
	PQfinish(victim);
	h_finish();
}

/* A statement dropped behind sluice's back by dynamic SQL costs one error,
 * then sluice prepares it again. */
Test(prepared, statement_dropped_behind_sluices_back_is_prepared_again)
{
	PGconn *victim, *other;
	char name[64];

	h_require_sluice();
	h_sluice_start(TX_POOL_1, NULL);
	victim = h_connect(H_ALICE, NULL);
	other = h_connect(H_ALICE, NULL);
	prepare(victim, "s1", "SELECT 1");
	server_name_of(victim, "s1", name, sizeof(name));
	h_exec(other, "DO $$ BEGIN EXECUTE 'DEALLOC' || 'ATE %s'; END $$", name);
	expect_error(run_prepared(victim, "s1", 0, NULL), "after a drop", "26000",
	             "prepared statement \"s1\" does not exist");
	expect_value(victim, "s1", NULL, "1");
	cr_assert(h_log_wait("dropped on the server behind sluice's back", 2000));
	PQfinish(victim);
	PQfinish(other);
	h_finish();
}

/* A Parse answered without a server only for a statement a server of the
 * same pool accepted: another pool (here another database) learns nothing. */
Test(prepared, local_answers_stay_within_a_pool)
{
	PGconn *owner, *prober;
	PGresult *res;

	h_require_sluice();
	h_pg_exec("CREATE TABLE IF NOT EXISTS only_here (x int)");
	h_sluice_start(TX_POOL_1,
	               "elsewhere = host=127.0.0.1 port=%PGPORT% dbname=postgres");
	owner = h_connect(H_ALICE, NULL);
	prepare(owner, "q", "SELECT count(*) FROM only_here");
	expect_value(owner, "q", NULL, "0");
	prober = h_connect(H_ALICE, "dbname=elsewhere");
	res = run_prepare(prober, "q", "SELECT count(*) FROM only_here", 0, NULL);
	expect_error(res, "prepare in another database", "42P01",
	             "relation \"only_here\" does not exist");
	PQfinish(owner);
	PQfinish(prober);
	h_finish();
}

/* ---- bounds on what a client makes sluice hold ---- */

Test(prepared, a_client_may_have_ten_thousand_names)
{
	struct wire w = { .len = 0 };
	struct h_error err;
	char name[16];
	int fd;

	h_require_sluice();
	h_sluice_start(TX_POOL_1, NULL);
	fd = h_raw_login(H_CAROL, NULL);
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		wire_parse(&w, name, "SELECT 1");
	}
	wire_sync(&w);
	cr_assert(h_raw_send(fd, w.buf, w.len));
	w.len = 0;
	cr_assert_eq(count_until_ready(fd, '1', ""), 10000);
	wire_parse(&w, "one_more", "SELECT 1");
	wire_sync(&w);
	cr_assert(h_raw_send(fd, w.buf, w.len));
	cr_assert(h_raw_expect_error(fd, H_QUERY_TIMEOUT_MS, &err));
	cr_assert_str_eq(err.sqlstate, "53400", "%s", err.message);
	cr_assert(h_raw_closed(fd, 5000));
	close(fd);
	wire_free(&w);
	expect_new_client_works();
	h_finish();
}

Test(prepared, max_client_prepared_statements_sets_the_bound)
{
	struct wire w = { .len = 0 };
	struct h_error err;
	char name[16];
	int fd;

	h_require_sluice();
	h_sluice_start(TX_POOL_1 "max_client_prepared_statements = 50\n", NULL);
	fd = h_raw_login(H_CAROL, NULL);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		wire_parse(&w, name, "SELECT 1");
	}
	wire_sync(&w);
	cr_assert(h_raw_send(fd, w.buf, w.len));
	w.len = 0;
	cr_assert_eq(count_until_ready(fd, '1', ""), 50);
	wire_parse(&w, "one_more", "SELECT 1");
	wire_sync(&w);
	cr_assert(h_raw_send(fd, w.buf, w.len));
	cr_assert(h_raw_expect_error(fd, H_QUERY_TIMEOUT_MS, &err));
	cr_assert_str_eq(err.sqlstate, "53400", "%s", err.message);
	cr_assert(strstr(err.message, "max_client_prepared_statements"), "%s",
	          err.message);
	close(fd);
	wire_free(&w);
	expect_new_client_works();
	h_finish();
}

struct sender {
	int fd;
	const struct wire *w;
};

static void *send_wire(void *arg)
{
	const struct sender *s = arg;

	h_raw_send(s->fd, s->w->buf, s->w->len); /* sluice may close first */
	return NULL;
}

/* Sends w (while reading: sluice may refuse it before it is all sent),
 * expects a FATAL sqlstate and the connection closed. */
static void expect_fatal(struct wire *w, const char *sqlstate)
{
	struct h_error err;
	int fd = h_raw_login(H_CAROL, NULL);
	struct sender s = { fd, w };
	pthread_t thread;

	cr_assert_eq(pthread_create(&thread, NULL, send_wire, &s), 0);
	cr_assert(h_raw_expect_error(fd, H_QUERY_TIMEOUT_MS, &err));
	cr_assert(h_raw_closed(fd, 5000));
	shutdown(fd, SHUT_RDWR);
	pthread_join(thread, NULL);
	w->len = 0;
	cr_assert_str_eq(err.sqlstate, sqlstate, "%s", err.message);
	close(fd);
}

Test(prepared, held_messages_and_texts_are_bounded)
{
	struct wire w = { .len = 0 };
	char *huge = padded_sql("8", 1100 * 1024);
	char name[16];
	struct reply r;
	int fd;

	h_require_sluice();
	h_sluice_start(TX_POOL_1, NULL);
	/* A named Parse over 1 MiB. */
	wire_parse(&w, "huge", huge);
	wire_sync(&w);
	expect_fatal(&w, "54000");
	/* A Describe naming a statement over 1 MiB long. */
	wire_statement(&w, 'D', huge);
	wire_sync(&w);
	expect_fatal(&w, "54000");
	/* Statements whose texts make more than 16 MiB. */
	for (int i = 0; i < 20; i++) {
		char *text;

		snprintf(name, sizeof(name), "%d", i);
		text = padded_sql(name, BIG_TEXT);
		wire_parse(&w, name, text);
		free(text);
	}
	wire_sync(&w);
	expect_fatal(&w, "53400");
	/* The unnamed statement is the server's: it passes, however long. */
	fd = h_raw_login(H_CAROL, NULL);
	wire_parse(&w, "", huge);
	wire_bind(&w, "", NULL);
	wire_execute(&w);
	wire_sync(&w);
	exchange(fd, &w, &r);
	expect_reply(&r, "12DCZ", 0);
	cr_assert_str_eq(r.value[0], "8");
	close(fd);
	wire_free(&w);
	free(huge);
	expect_new_client_works();
	h_finish();
}
