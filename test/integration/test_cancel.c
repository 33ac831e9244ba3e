/*
 * test_cancel.c - cancel requests through sluice: PQcancel stops the query
 * of its own client, quickly, touches nobody else's, and leaves the
 * connection usable.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

TestSuite(cancel, .fini = h_teardown, .timeout = 60);

#define SLEEP_QUERY "SELECT pg_sleep(30)"

/* Waits until n backends run SLEEP_QUERY (so the cancel has a target). */
static void wait_sleeping(long n)
{
	double deadline = h_now() + 10;

	while (h_pg_int("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
	                "AND query = '" SLEEP_QUERY "'") != n) {
		cr_assert_lt(h_now(), deadline, "%ld queries never started", n);
		h_sleep_ms(20);
	}
}

static void send_cancel(PGconn *conn)
{
	PGcancel *cancel = PQgetCancel(conn);
	char err[256];

	cr_assert(cancel);
	cr_assert(PQcancel(cancel, err, sizeof(err)), "PQcancel: %s", err);
	PQfreeCancel(cancel);
}

/* The query was canceled: 57014, then the end of its results. */
static void expect_canceled(PGconn *conn, int timeout_ms)
{
	PGresult *res = h_result_within(conn, timeout_ms);

	cr_assert(res, "no answer within %d ms of the cancel", timeout_ms);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "got %s",
	             PQresStatus(PQresultStatus(res)));
	cr_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "57014",
	                 "%s", PQresultErrorMessage(res));
	PQclear(res);
	cr_assert_null(PQgetResult(conn));
}

static void cancel_stops_query(const char *settings)
{
	PGconn *conn;
	double t0;

	h_sluice_start(settings, NULL);
	conn = h_connect(H_ALICE, NULL);
	cr_assert(PQsendQuery(conn, SLEEP_QUERY));
	wait_sleeping(1);
	t0 = h_now();
	send_cancel(conn);
	expect_canceled(conn, 5000);
	cr_assert_lt(h_now() - t0, 1.0, "the cancel took %.2f s", h_now() - t0);
	/* The connection goes on. */
	cr_assert_eq(h_query_int(conn, "SELECT 11"), 11);
	h_exec(conn, "BEGIN");
	cr_assert(PQsendQuery(conn, SLEEP_QUERY));
	wait_sleeping(1);
	send_cancel(conn);
	expect_canceled(conn, 5000);
	cr_assert_eq(PQtransactionStatus(conn), PQTRANS_INERROR);
	h_exec(conn, "ROLLBACK");
	cr_assert_eq(h_query_int(conn, "SELECT 12"), 12);
	PQfinish(conn);
	h_finish();
}

Test(cancel, cancel_stops_query_in_transaction_mode)
{
	cancel_stops_query("pool_mode = transaction\ndefault_pool_size = 2\n");
}

Test(cancel, cancel_stops_query_in_session_mode)
{
	cancel_stops_query("pool_mode = session\ndefault_pool_size = 2\n");
}

Test(cancel, cancel_reaches_only_its_own_client)
{
	PGconn *a, *b;
	PGresult *res;

	h_sluice_start("pool_mode = transaction\ndefault_pool_size = 2\n", NULL);
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_ALICE, NULL);
	cr_assert(PQsendQuery(a, SLEEP_QUERY));
	cr_assert(PQsendQuery(b, SLEEP_QUERY));
	wait_sleeping(2);
	send_cancel(a);
	expect_canceled(a, 5000);
	/* b's query is still running. */
	cr_assert_null(h_result_within(b, 500), "b's query ended with a's cancel");
	cr_assert_eq(h_pg_int("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
	                      "AND query = '" SLEEP_QUERY "'"), 1);
	cr_assert_eq(h_query_int(a, "SELECT 21"), 21);
	send_cancel(b);
	expect_canceled(b, 5000);
	res = PQexec(b, "SELECT 22");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "22");
	PQclear(res);
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

Test(cancel, cancel_of_an_idle_client_is_harmless)
{
	PGconn *a, *b;

	h_sluice_start("pool_mode = transaction\ndefault_pool_size = 1\n", NULL);
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_ALICE, NULL);
	/* a holds the only server in a transaction; b's key points nowhere. */
	h_exec(a, "BEGIN");
	cr_assert(PQsendQuery(a, "SELECT pg_sleep(0.5), 31"));
	send_cancel(b);
	send_cancel(b);
	{
		PGresult *res = h_result_within(a, 5000);

		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK,
		             "another client's cancel hit this query: %s",
		             PQresultErrorMessage(res));
		PQclear(res);
		cr_assert_null(PQgetResult(a));
	}
	h_exec(a, "COMMIT");
	cr_assert_eq(h_query_int(b, "SELECT 32"), 32);
	PQfinish(a);
	PQfinish(b);
	h_finish();
}

Test(cancel, bogus_cancel_request_is_ignored)
{
	static const unsigned char cancel[16] = {
		0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, /* 80877102 */
		0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
	};
	PGconn *conn;
	int fd;

	h_sluice_start(NULL, NULL);
	conn = h_connect(H_ALICE, NULL);
	cr_assert(PQsendQuery(conn, "SELECT pg_sleep(0.5), 41"));
	fd = h_raw_connect();
	cr_assert(h_raw_send(fd, cancel, sizeof(cancel)));
	cr_assert(h_raw_closed(fd, 5000), "the cancel connection stayed open");
	close(fd);
	{
		PGresult *res = h_result_within(conn, 5000);

		cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s",
		             PQresultErrorMessage(res));
		PQclear(res);
		cr_assert_null(PQgetResult(conn));
	}
	PQfinish(conn);
	h_finish();
}
