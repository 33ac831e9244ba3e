/*
 * test_pgbench.c - PostgreSQL's own benchmark through sluice: 50 clients
 * on 10 servers in transaction mode for 10 seconds, with no failed
 * transaction and never more servers than the pool allows.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "harness.h"

TestSuite(pgbench, .fini = h_teardown, .timeout = 120);

#define POOL_SIZE 10

static struct h_output out;

static int pgbench(const char *const *args, int timeout_ms)
{
	return h_pgbench(args, timeout_ms, &out);
}

static long report_number(const char *label)
{
	return h_report_number(&out, label);
}

struct poll_state {
	atomic_bool done;
	long max;            /* most servers of alice seen at once */
};

static void *poll_backends(void *arg)
{
	struct poll_state *ps = arg;
	char conninfo[256];
	PGconn *pg;

	snprintf(conninfo, sizeof(conninfo), "host=%s port=%d user=%s dbname=%s "
	         "sslmode=disable", h_pg_host(), h_pg_port(), H_SUPERUSER, H_DBNAME);
	pg = PQconnectdb(conninfo);
	while (!atomic_load(&ps->done) && PQstatus(pg) == CONNECTION_OK) {
		PGresult *res = PQexec(pg,
			"SELECT count(*) FROM pg_stat_activity WHERE usename = '" H_ALICE "' "
			"AND datname = '" H_DBNAME "' AND backend_type = 'client backend'");

		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    atol(PQgetvalue(res, 0, 0)) > ps->max)
			ps->max = atol(PQgetvalue(res, 0, 0));
		PQclear(res);
		h_sleep_ms(50);
	}
	PQfinish(pg);
	return NULL;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	/* 50 clients need 50 sockets; runuser and friends leave 1024. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A timed run: exit 0, transactions done, none failed. */
static void timed_run(const char *const *args, int seconds)
{
	int status = pgbench(args, (seconds + 60) * 1000);

	cr_assert_eq(status, 0, "pgbench exited with %d:\n%s\n%s", status,
	             out.out, out.err);
	cr_assert_gt(report_number("number of transactions actually processed: "), 0,
	             "no transactions:\n%s", out.out);
	/* PostgreSQL 15's pgbench counts failures; older ones stop at the first. */
	if (strstr(out.out, "number of failed transactions: "))
		cr_assert_eq(report_number("number of failed transactions: "), 0,
		             "failed transactions:\n%s\n%s", out.out, out.err);
}

Test(pgbench, fifty_clients_ten_servers_transaction_mode)
{
	static const char *const init[] = { "-i", "-s", "2", "-q", NULL };
	static const char *const simple[] = { "-c", "50", "-j", "2", "-T", "10",
	                                      "-n", NULL };
	static const char *const extended[] = { "-c", "20", "-j", "2", "-T", "3",
	                                        "-n", "-M", "extended", NULL };
	static struct poll_state ps;
	pthread_t poller;
	char settings[128];
	int status;

	raise_fd_limit();
	setenv("PGPASSWORD", H_ALICE_PASSWORD, 1);
	setenv("PGCONNECT_TIMEOUT", "10", 1);
	snprintf(settings, sizeof(settings), "pool_mode = transaction\n"
	         "default_pool_size = %d\nmax_client_conn = 200\n", POOL_SIZE);
	h_sluice_start(settings, NULL);

	/* Initialization through sluice: DDL, COPY, VACUUM. */
	status = pgbench(init, 120000);
	cr_assert_eq(status, 0, "pgbench -i exited with %d:\n%s\n%s", status,
	             out.out, out.err);
	cr_assert_eq(h_pg_int("SELECT count(*) FROM pgbench_accounts"), 200000);

	cr_assert(pthread_create(&poller, NULL, poll_backends, &ps) == 0);
	timed_run(simple, 10);
	timed_run(extended, 3);
	atomic_store(&ps.done, true);
	pthread_join(poller, NULL);
	cr_expect_gt(ps.max, 0, "the poller never saw a server");
	if (!h_direct())
		cr_expect_leq(ps.max, POOL_SIZE, "%ld servers, default_pool_size = %d",
		              ps.max, POOL_SIZE);
	h_finish();
}
