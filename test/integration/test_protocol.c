/*
 * test_protocol.c - the wire protocol through transaction pooling: libpq
 * pipeline mode with several Syncs in flight, COPY in both directions
 * (simple and extended protocol) with messages far larger than pkt_buf,
 * large queries, parameters and results.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(protocol, .fini = h_teardown, .timeout = 120);

/* Small buffers so that every big message has to stream through. */
#define SMALL_BUFFERS "pkt_buf = 1024\n"

/* Reads the next result of a pipeline; false with a reason on mismatch. */
static bool next_result(PGconn *conn, ExecStatusType want, const char *value,
                        char *why, size_t whylen)
{
	PGresult *res = PQgetResult(conn);
	ExecStatusType got = PQresultStatus(res);
	bool ok = res && got == want;

	if (ok && value)
		ok = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), value) == 0;
	if (!ok)
		snprintf(why, whylen, "got %s (%s), expected %s %s",
		         res ? PQresStatus(got) : "no result",
		         res && PQntuples(res) ? PQgetvalue(res, 0, 0) :
		         PQerrorMessage(conn), PQresStatus(want), value ? value : "");
	PQclear(res);
	/* Every result but a sync point is followed by NULL. */
	if (ok && want != PGRES_PIPELINE_SYNC) {
		res = PQgetResult(conn);
		if (res) {
			snprintf(why, whylen, "no NULL after %s", PQresStatus(want));
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

static void send_params(PGconn *conn, const char *sql, const char *param)
{
	const char *params[1] = { param };

	cr_assert(PQsendQueryParams(conn, sql, param ? 1 : 0, NULL,
	                            param ? params : NULL, NULL, NULL, 0),
	          "%s: %s", sql, PQerrorMessage(conn));
}

static void expect(PGconn *conn, ExecStatusType want, const char *value)
{
	char why[512];

	cr_assert(next_result(conn, want, value, why, sizeof(why)), "%s", why);
}

Test(protocol, pipeline_with_several_syncs_in_flight)
{
	PGconn *conn;

	h_pg_exec("DROP TABLE IF EXISTS pipe_t");
	h_pg_exec("CREATE TABLE pipe_t (x int)");
	h_sluice_start("default_pool_size = 1\n" SMALL_BUFFERS, NULL);
	conn = h_connect(H_ALICE, NULL);
	cr_assert(PQenterPipelineMode(conn));

	/* 1: plain results */
	send_params(conn, "SELECT $1::int", "1");
	send_params(conn, "SELECT $1::int * 2", "21");
	cr_assert(PQpipelineSync(conn));
	/* 2: an error aborts the rest of its segment only */
	send_params(conn, "SELECT 1 / 0", NULL);
	send_params(conn, "SELECT 2", NULL);
	cr_assert(PQpipelineSync(conn));
	/* 3 and 4: a transaction that spans two Syncs */
	send_params(conn, "BEGIN", NULL);
	send_params(conn, "INSERT INTO pipe_t VALUES (1), (2)", NULL);
	send_params(conn, "SELECT count(*) FROM pipe_t", NULL);
	cr_assert(PQpipelineSync(conn));
	send_params(conn, "INSERT INTO pipe_t VALUES (3)", NULL);
	send_params(conn, "COMMIT", NULL);
	cr_assert(PQpipelineSync(conn));
	/* 5: after the commit */
	send_params(conn, "SELECT sum(x) FROM pipe_t", NULL);
	cr_assert(PQpipelineSync(conn));

	expect(conn, PGRES_TUPLES_OK, "1");
	expect(conn, PGRES_TUPLES_OK, "42");
	expect(conn, PGRES_PIPELINE_SYNC, NULL);
	expect(conn, PGRES_FATAL_ERROR, NULL);
	expect(conn, PGRES_PIPELINE_ABORTED, NULL);
	expect(conn, PGRES_PIPELINE_SYNC, NULL);
	expect(conn, PGRES_COMMAND_OK, NULL);
	expect(conn, PGRES_COMMAND_OK, NULL);
	expect(conn, PGRES_TUPLES_OK, "2");
	expect(conn, PGRES_PIPELINE_SYNC, NULL);
	expect(conn, PGRES_COMMAND_OK, NULL);
	expect(conn, PGRES_COMMAND_OK, NULL);
	expect(conn, PGRES_PIPELINE_SYNC, NULL);
	expect(conn, PGRES_TUPLES_OK, "6");
	expect(conn, PGRES_PIPELINE_SYNC, NULL);

	cr_assert(PQexitPipelineMode(conn), "%s", PQerrorMessage(conn));
	cr_assert_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
	cr_assert_eq(h_query_int(conn, "SELECT count(*) FROM pipe_t"), 3);
	PQfinish(conn);
	h_finish();
}

#define PIPE_CLIENTS 3
#define PIPE_SEGMENTS 50

struct pipe_client {
	int id;
	bool ok;
	char why[512];
};

/* Sends PIPE_SEGMENTS syncs before reading a single result. */
static void *pipeline_client(void *arg)
{
	struct pipe_client *pc = arg;
	PGconn *conn = h_try_connect(H_ALICE, NULL, pc->why, sizeof(pc->why));
	char param[32], want[32];
	const char *params[1] = { param };

	if (!conn || !PQenterPipelineMode(conn))
		return NULL;
	for (int i = 0; i < PIPE_SEGMENTS; i++) {
		snprintf(param, sizeof(param), "%d", pc->id * 1000 + i);
		PQsendQueryParams(conn, "SELECT $1::int, pg_backend_pid()", 1, NULL,
		                  params, NULL, NULL, 0);
		PQpipelineSync(conn);
	}
	pc->ok = true;
	for (int i = 0; i < PIPE_SEGMENTS && pc->ok; i++) {
		snprintf(want, sizeof(want), "%d", pc->id * 1000 + i);
		pc->ok = next_result(conn, PGRES_TUPLES_OK, want, pc->why,
		                     sizeof(pc->why)) &&
		         next_result(conn, PGRES_PIPELINE_SYNC, NULL, pc->why,
		                     sizeof(pc->why));
	}
	if (pc->ok && !PQexitPipelineMode(conn)) {
		snprintf(pc->why, sizeof(pc->why), "exit: %s", PQerrorMessage(conn));
		pc->ok = false;
	}
	PQfinish(conn);
	return NULL;
}

Test(protocol, concurrent_pipelines_share_one_server)
{
	struct pipe_client clients[PIPE_CLIENTS];
	pthread_t threads[PIPE_CLIENTS];

	h_sluice_start("default_pool_size = 1\n" SMALL_BUFFERS, NULL);
	for (int i = 0; i < PIPE_CLIENTS; i++) {
		clients[i] = (struct pipe_client){ .id = i + 1 };
		cr_assert(pthread_create(&threads[i], NULL, pipeline_client,
		                         &clients[i]) == 0);
	}
	for (int i = 0; i < PIPE_CLIENTS; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < PIPE_CLIENTS; i++)
		cr_expect(clients[i].ok, "client %d: %s", clients[i].id, clients[i].why);
	h_finish();
}

/* ---- COPY ---- */

/* Deterministic COPY text: rows of assorted sizes plus a 1 MB one. */
static char *copy_data(size_t target, size_t *len, int *rows)
{
	char *buf = malloc(target + 2 * 1024 * 1024);
	uint32_t seed = 12345;
	size_t n = 0;
	int id = 0;

	cr_assert(buf);
	while (n < target) {
		size_t width = id == 7 ? 1024 * 1024 : (seed >> 8) % 3000;

		n += (size_t)sprintf(buf + n, "%d\t", ++id);
		for (size_t i = 0; i < width; i++) {
			seed = seed * 1103515245 + 12345;
			/* printable, no backslash: COPY text keeps it byte for byte */
			buf[n++] = (char)(' ' + (seed >> 16) % 60);
		}
		buf[n++] = '\n';
	}
	*len = n;
	*rows = id;
	return buf;
}

static PGresult *run(PGconn *conn, const char *sql, bool extended)
{
	if (extended)
		return PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
	return PQexec(conn, sql);
}

static void copy_in(PGconn *conn, const char *data, size_t len, int rows, bool extended)
{
	PGresult *res = run(conn, "COPY copy_t (id, payload) FROM STDIN", extended);
	char tuples[32];

	cr_assert_eq(PQresultStatus(res), PGRES_COPY_IN, "COPY FROM: %s",
	             PQerrorMessage(conn));
	PQclear(res);
	for (size_t off = 0; off < len; off += 65536) {
		size_t n = len - off < 65536 ? len - off : 65536;

		cr_assert_eq(PQputCopyData(conn, data + off, (int)n), 1, "%s",
		             PQerrorMessage(conn));
	}
	cr_assert_eq(PQputCopyEnd(conn, NULL), 1, "%s", PQerrorMessage(conn));
	res = PQgetResult(conn);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "COPY FROM: %s",
	             PQerrorMessage(conn));
	snprintf(tuples, sizeof(tuples), "%d", rows);
	cr_assert_str_eq(PQcmdTuples(res), tuples);
	PQclear(res);
	cr_assert_null(PQgetResult(conn));
}

static char *copy_out(PGconn *conn, size_t cap, size_t *len, bool extended)
{
	PGresult *res = run(conn, "COPY (SELECT id, payload FROM copy_t ORDER BY id) "
	                    "TO STDOUT", extended);
	char *out = malloc(cap), *row;
	int n;

	cr_assert(out);
	cr_assert_eq(PQresultStatus(res), PGRES_COPY_OUT, "COPY TO: %s",
	             PQerrorMessage(conn));
	PQclear(res);
	*len = 0;
	while ((n = PQgetCopyData(conn, &row, 0)) > 0) {
		cr_assert_leq(*len + (size_t)n, cap, "COPY TO returned too much");
		memcpy(out + *len, row, (size_t)n);
		*len += (size_t)n;
		PQfreemem(row);
	}
	cr_assert_eq(n, -1, "COPY TO: %s", PQerrorMessage(conn));
	res = PQgetResult(conn);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "COPY TO: %s",
	             PQerrorMessage(conn));
	PQclear(res);
	cr_assert_null(PQgetResult(conn));
	return out;
}

static void copy_roundtrip(bool extended)
{
	size_t len, got_len;
	int rows;
	char *data = copy_data(10 * 1024 * 1024, &len, &rows);
	char *got;
	PGconn *conn;

	h_pg_exec("DROP TABLE IF EXISTS copy_t");
	h_pg_exec("CREATE TABLE copy_t (id int PRIMARY KEY, payload text)");
	h_sluice_start("default_pool_size = 2\n" SMALL_BUFFERS, NULL);
	conn = h_connect(H_ALICE, NULL);
	copy_in(conn, data, len, rows, extended);
	got = copy_out(conn, len + 1, &got_len, extended);
	cr_assert_eq(got_len, len, "COPY TO gave %zu bytes, COPY FROM sent %zu",
	             got_len, len);
	cr_assert(memcmp(got, data, len) == 0, "COPY TO differs from COPY FROM");
	/* The connection is still in sync afterwards. */
	cr_assert_eq(h_query_int(conn, "SELECT count(*) FROM copy_t"), rows);
	cr_assert_eq(h_query_int(conn, "SELECT max(length(payload)) FROM copy_t"),
	             1024 * 1024);
	free(got);
	free(data);
	PQfinish(conn);
	h_finish();
}

Test(protocol, copy_roundtrip_10mb_simple)
{
	copy_roundtrip(false);
}

Test(protocol, copy_roundtrip_10mb_extended)
{
	copy_roundtrip(true);
}

Test(protocol, copy_fail_leaves_connection_usable)
{
	PGconn *conn;
	PGresult *res;

	h_pg_exec("DROP TABLE IF EXISTS copy_t");
	h_pg_exec("CREATE TABLE copy_t (id int PRIMARY KEY, payload text)");
	h_sluice_start("default_pool_size = 1\n" SMALL_BUFFERS, NULL);
	conn = h_connect(H_ALICE, NULL);
	res = PQexec(conn, "COPY copy_t FROM STDIN");
	cr_assert_eq(PQresultStatus(res), PGRES_COPY_IN);
	PQclear(res);
	cr_assert_eq(PQputCopyData(conn, "1\tone\n", 6), 1);
	cr_assert_eq(PQputCopyEnd(conn, "client gave up"), 1);
	res = PQgetResult(conn);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	cr_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "57014");
	PQclear(res);
	cr_assert_null(PQgetResult(conn));
	/* A bad row fails on the server side, too. */
	res = PQexec(conn, "COPY copy_t FROM STDIN");
	PQclear(res);
	cr_assert_eq(PQputCopyData(conn, "not-a-number\tx\n", 15), 1);
	cr_assert_eq(PQputCopyEnd(conn, NULL), 1);
	res = PQgetResult(conn);
	cr_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22P02");
	PQclear(res);
	cr_assert_null(PQgetResult(conn));
	cr_assert_eq(h_query_int(conn, "SELECT count(*) FROM copy_t"), 0);
	PQfinish(conn);
	h_finish();
}

Test(protocol, large_query_params_and_results)
{
	size_t big = 512 * 1024;
	char *text = malloc(big + 64), *sql = malloc(big + 64);
	const char *params[1] = { text };
	PGconn *conn;
	PGresult *res;

	cr_assert(text && sql);
	for (size_t i = 0; i < big; i++)
		text[i] = (char)('a' + i % 26);
	text[big] = '\0';
	h_sluice_start("default_pool_size = 1\n" SMALL_BUFFERS, NULL);
	conn = h_connect(H_ALICE, NULL);

	/* A Query message hundreds of times pkt_buf. */
	snprintf(sql, big + 64, "SELECT length('%s')", text);
	cr_assert_eq(h_query_int(conn, "%s", sql), (long)big);
	/* A Bind parameter as big, echoed back in a big DataRow. */
	res = PQexecParams(conn, "SELECT $1::text, length($1)", 1, NULL, params,
	                   NULL, NULL, 0);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
	cr_assert(strcmp(PQgetvalue(res, 0, 0), text) == 0, "parameter came back changed");
	cr_assert_eq(atol(PQgetvalue(res, 0, 1)), (long)big);
	PQclear(res);
	/* Many rows: thousands of messages per read. */
	res = PQexec(conn, "SELECT i, repeat('x', i % 100) "
	             "FROM generate_series(1, 200000) i");
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
	cr_assert_eq(PQntuples(res), 200000);
	cr_assert_str_eq(PQgetvalue(res, 199999, 0), "200000");
	PQclear(res);
	/* Binary results through the extended protocol. */
	res = PQexecParams(conn, "SELECT 258::int4", 0, NULL, NULL, NULL, NULL, 1);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	cr_assert_eq(PQgetlength(res, 0, 0), 4);
	cr_assert(memcmp(PQgetvalue(res, 0, 0), "\0\0\1\2", 4) == 0);
	PQclear(res);
	free(text);
	free(sql);
	PQfinish(conn);
	h_finish();
}

Test(protocol, prepare_and_execute_in_one_transaction)
{
	PGconn *conn;
	PGresult *res;
	const char *params[1] = { "20" };

	/* With max_prepared_statements off, named statements live on one
	 * server: use them inside a transaction (and SQL DEALLOCATE sees them,
	 * which it does not when sluice renames them). */
	h_sluice_start("default_pool_size = 1\nmax_prepared_statements = 0\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	h_exec(conn, "BEGIN");
	res = PQprepare(conn, "double_it", "SELECT $1::int * 2", 1, NULL);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(conn));
	PQclear(res);
	for (int i = 0; i < 3; i++) {
		res = PQexecPrepared(conn, "double_it", 1, params, NULL, NULL, 0);
		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
		cr_assert_str_eq(PQgetvalue(res, 0, 0), "40");
		PQclear(res);
	}
	res = PQdescribePrepared(conn, "double_it");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	cr_assert_eq(PQnparams(res), 1);
	PQclear(res);
	h_exec(conn, "DEALLOCATE double_it");
	h_exec(conn, "COMMIT");
	/* Unnamed statements work across transactions. */
	for (int i = 0; i < 5; i++) {
		res = PQexecParams(conn, "SELECT $1::int + 1", 1, NULL, params, NULL, NULL, 0);
		cr_assert_str_eq(PQgetvalue(res, 0, 0), "21");
		PQclear(res);
	}
	PQfinish(conn);
	h_finish();
}

#define BEHIND_QUERIES 200
#define BEHIND_QUERY_LEN 1000

/* Appends a Query message "SELECT <i>" padded with a comment to
 * BEHIND_QUERY_LEN bytes of text; returns its length. */
static size_t put_padded_query(uint8_t *out, int i)
{
	char sql[BEHIND_QUERY_LEN + 1];
	int n = snprintf(sql, sizeof(sql), "SELECT %d /* ", i);

	memset(sql + n, 'x', BEHIND_QUERY_LEN - n - 3);
	memcpy(sql + BEHIND_QUERY_LEN - 3, " */", 4);
	out[0] = 'Q';
	h_put_be32(out + 1, 4 + BEHIND_QUERY_LEN + 1);
	memcpy(out + 5, sql, BEHIND_QUERY_LEN + 1);
	return 5 + BEHIND_QUERY_LEN + 1;
}

/* Reads up to and including the next ReadyForQuery; the value of the one
 * DataRow in between, or -1 if there was none. */
static long read_through_ready(int fd, uint8_t *buf, size_t cap)
{
	long value = -1;
	size_t len;
	char type;

	for (;;) {
		cr_assert_eq(h_raw_read_msg(fd, 10000, &type, buf, cap - 1, &len), 1,
		             "connection closed or timed out");
		cr_assert_neq(type, 'E', "an ErrorResponse came back");
		if (type == 'Z')
			return value;
		if (type == 'D' && len > 6) {
			buf[len] = '\0';
			value = atol((const char *)buf + 6); /* count, length, text */
		}
	}
}

/*
 * A client that sends its first queries along with its password: sluice
 * must answer them all, in order, whether its pool is new (the client
 * waits while the first server logs in, so what it sent is held, more than
 * max_packet_size of it) or already has servers (it goes straight on).
 */
static void queries_behind_the_password(bool warm_pool)
{
	static const char *const params[] = { "user", H_ALICE,
	                                      "database", H_DBNAME, NULL };
	size_t cap = 6 + 256 + BEHIND_QUERIES * (6 + BEHIND_QUERY_LEN);
	uint8_t *buf = malloc(cap), reply[512];
	const char *password = h_password_of(H_ALICE);
	size_t len, n = strlen(password) + 1;
	char type;
	int fd;

	cr_assert(buf);
	h_sluice_start("auth_type = plain\nmax_packet_size = 2048\n", NULL);
	if (warm_pool)
		PQfinish(h_connect(H_ALICE, NULL));
	fd = h_raw_connect();
	len = h_startup_packet(buf, cap, 196608, params, true);
	cr_assert(h_raw_send(fd, buf, len));
	cr_assert_eq(h_raw_read_msg(fd, 10000, &type, reply, sizeof(reply), &len), 1);
	cr_assert(type == 'R' && len == 4 && h_get_be32(reply) == 3,
	          "expected a cleartext password request");
	buf[0] = 'p';
	h_put_be32(buf + 1, (uint32_t)(4 + n));
	memcpy(buf + 5, password, n);
	len = 5 + n;
	for (int i = 0; i < BEHIND_QUERIES; i++)
		len += put_padded_query(buf + len, i);
	cr_assert(h_raw_send(fd, buf, len), "sluice closed the connection");
	cr_assert_eq(read_through_ready(fd, reply, sizeof(reply)), -1);
	for (int i = 0; i < BEHIND_QUERIES; i++)
		cr_assert_eq(read_through_ready(fd, reply, sizeof(reply)), i,
		             "query %d answered wrongly or out of order", i);
	close(fd);
	free(buf);
	h_assert_alive();
	h_finish();
}

Test(protocol, queries_sent_with_the_password_to_a_new_pool)
{
	h_require_sluice();
	queries_behind_the_password(false);
}

Test(protocol, queries_sent_with_the_password_to_a_pool_with_servers)
{
	h_require_sluice();
	queries_behind_the_password(true);
}
