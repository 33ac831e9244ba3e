/*
 * test_session.c - session pooling: a client keeps its server, and its
 * settings, for its whole connection; the next client of that server gets
 * it back clean (server_reset_query = DISCARD ALL).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

TestSuite(session, .fini = h_teardown, .timeout = 60);

#define SESSION_SETTINGS \
	"pool_mode = session\n" \
	"default_pool_size = 1\n" \
	"server_reset_query = DISCARD ALL\n"

Test(session, set_lasts_for_the_session_and_is_reset_for_the_next)
{
	PGconn *a, *b;
	char value[64];
	long pid_a;

	h_sluice_start(SESSION_SETTINGS, NULL);
	a = h_connect(H_ALICE, NULL);
	h_exec(a, "SET work_mem = '1234kB'");
	h_exec(a, "SET application_name = 'first-client'");
	pid_a = h_query_int(a, "SELECT pg_backend_pid()");
	/* Statements and transactions later, the setting is still there. */
	for (int i = 0; i < 5; i++) {
		h_exec(a, "BEGIN");
		h_exec(a, "SELECT %d", i);
		h_exec(a, "COMMIT");
		h_query_str(a, value, sizeof(value), "SHOW work_mem");
		cr_assert_str_eq(value, "1234kB", "statement %d: work_mem = %s", i, value);
		cr_assert_eq(h_query_int(a, "SELECT pg_backend_pid()"), pid_a,
		             "session mode moved the client to another server");
	}
	PQfinish(a);

	b = h_connect(H_ALICE, NULL);
	if (!h_direct())
		cr_assert_eq(h_query_int(b, "SELECT pg_backend_pid()"), pid_a,
		             "default_pool_size = 1 but the next client got another server");
	h_query_str(b, value, sizeof(value), "SHOW work_mem");
	cr_assert_str_eq(value, "4MB", "the next client sees work_mem = %s", value);
	h_query_str(b, value, sizeof(value),
	            "SELECT coalesce(current_setting('application_name'), '')");
	cr_assert_neq(strcmp(value, "first-client"), 0,
	              "the next client inherited application_name");
	PQfinish(b);
	h_finish();
}

Test(session, temp_tables_and_prepared_statements_are_reset)
{
	PGconn *a, *b;
	PGresult *res;

	h_sluice_start(SESSION_SETTINGS, NULL);
	a = h_connect(H_ALICE, NULL);
	h_exec(a, "CREATE TEMP TABLE sess_tmp (x int)");
	h_exec(a, "INSERT INTO sess_tmp VALUES (1), (2)");
	h_exec(a, "PREPARE sess_stmt AS SELECT count(*) FROM sess_tmp");
	h_exec(a, "LISTEN sess_channel");
	cr_assert_eq(h_query_int(a, "EXECUTE sess_stmt"), 2);
	cr_assert_eq(h_pg_int("SELECT count(*) FROM pg_class WHERE relname = 'sess_tmp'"), 1);
	PQfinish(a);

	b = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(b, "SELECT count(*) FROM pg_class "
	                         "WHERE relname = 'sess_tmp'"), 0,
	             "the previous client's temp table survived");
	/* The name is free again: the old one was deallocated. */
	h_exec(b, "PREPARE sess_stmt AS SELECT 7");
	cr_assert_eq(h_query_int(b, "EXECUTE sess_stmt"), 7);
	res = PQexec(b, "SELECT count(*) FROM pg_listening_channels()");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "0", "LISTEN survived the reset");
	PQclear(res);
	PQfinish(b);
	h_finish();
}

Test(session, next_client_waits_for_the_server)
{
	PGconn *a, *b;
	PGresult *res;
	double t0;

	h_require_sluice();
	h_sluice_start(SESSION_SETTINGS, NULL);
	a = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(a, "SELECT 1"), 1);
	/* The only server belongs to a for as long as a is connected. */
	b = h_connect(H_ALICE, NULL);
	cr_assert(PQsendQuery(b, "SELECT 2"));
	h_sleep_ms(500);
	cr_assert(PQconsumeInput(b), "%s", PQerrorMessage(b));
	cr_assert(PQisBusy(b), "a second client got the only server of a session pool");
	cr_assert_eq(h_pg_backends(H_ALICE), 1);
	t0 = h_now();
	PQfinish(a);
	res = h_result_within(b, 10000);
	cr_assert(res, "the waiting client got no server within 10 s after "
	          "the first one left");
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(b));
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "2");
	cr_assert_lt(h_now() - t0, 5.0, "the waiting client was served %.1f s late",
	             h_now() - t0);
	PQclear(res);
	cr_assert_null(PQgetResult(b));
	PQfinish(b);
	h_finish();
}

Test(session, session_and_transaction_pools_side_by_side)
{
	PGconn *s1, *t1, *t2;

	/* A database of its own may override the pool mode. */
	h_require_sluice();
	h_sluice_start("pool_mode = transaction\ndefault_pool_size = 1\n",
	               "sess_db = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME
	               " pool_mode=session");
	s1 = h_connect(H_ALICE, "dbname=sess_db");
	h_exec(s1, "SET work_mem = '2222kB'");
	t1 = h_connect(H_ALICE, NULL);
	t2 = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(t1, "SELECT pg_backend_pid()"),
	             h_query_int(t2, "SELECT pg_backend_pid()"));
	cr_assert_eq(h_query_int(s1, "SELECT (current_setting('work_mem') = '2222kB')::int"),
	             1, "a session pool lost its SET");
	PQfinish(s1);
	PQfinish(t1);
	PQfinish(t2);
	h_finish();
}
