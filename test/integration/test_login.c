/*
 * test_login.c - logging in through sluice: every client auth_type against
 * every server-side method (alice is SCRAM, bob md5, carol cleartext on
 * PostgreSQL), and the errors PgBouncer users know, word for word: bad
 * passwords, unknown users and databases, unsupported startup parameters,
 * max_client_conn.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

TestSuite(login, .fini = h_teardown, .timeout = 60);

/* PgBouncer's texts (src/client.c, src/objects.c); all FATAL 08P01 but a
 * failed password or SCRAM proof, which is PostgreSQL's FATAL 28P01
 * (password_fails). */
#define TRUST_FAILED "\"trust\" authentication failed"
#define PROTOCOL_VIOLATION "08P01"

static void login_ok(const char *user, const char *extra)
{
	PGconn *conn = h_connect(user, extra);
	char who[64];

	h_query_str(conn, who, sizeof(who), "SELECT current_user");
	cr_assert_str_eq(who, user);
	cr_assert_eq(h_query_int(conn, "SELECT 40 + 2"), 42);
	PQfinish(conn);
}

/* The login fails; through sluice, with exactly this FATAL error. */
static void login_fails(const char *user, const char *extra, const char *message)
{
	struct h_error err;

	cr_assert(h_connect_fails(user, extra, &err), "%s (%s) logged in", user,
	          extra ? extra : "");
	if (h_direct())
		return;
	cr_assert_str_eq(err.severity, "FATAL", "%s: %s %s %s", user, err.severity,
	                 err.sqlstate, err.message);
	cr_assert_str_eq(err.sqlstate, PROTOCOL_VIOLATION, "%s: %s %s", user,
	                 err.sqlstate, err.message);
	cr_assert_str_eq(err.message, message, "%s: got \"%s\"", user, err.message);
}

/* A wrong password, a wrong SCRAM proof or an unknown user: PostgreSQL's
 * error, the same for each, so that none tells which users exist. */
static void password_fails(const char *user, const char *extra)
{
	char message[128];
	struct h_error err;

	cr_assert(h_connect_fails(user, extra, &err), "%s (%s) logged in", user,
	          extra ? extra : "");
	if (h_direct())
		return;
	snprintf(message, sizeof(message),
	         "password authentication failed for user \"%s\"", user);
	cr_assert_str_eq(err.severity, "FATAL", "%s: %s", user, err.severity);
	cr_assert_str_eq(err.sqlstate, "28P01", "%s: %s %s", user, err.sqlstate,
	                 err.message);
	cr_assert_str_eq(err.message, message, "%s: got \"%s\"", user,
	                 err.message);
}

static void all_users_log_in(const char *auth_type)
{
	char settings[64];

	snprintf(settings, sizeof(settings), "auth_type = %s\n", auth_type);
	h_sluice_start(settings, NULL);
	/* Server side: SCRAM for alice, md5 for bob, cleartext for carol. */
	login_ok(H_ALICE, NULL);
	login_ok(H_BOB, NULL);
	login_ok(H_CAROL, NULL);
	/* Twice, so that the second login finds a pooled server. */
	login_ok(H_ALICE, NULL);
	login_ok(H_BOB, NULL);
	login_ok(H_CAROL, NULL);
	h_finish();
}

Test(login, all_users_with_auth_type_md5)
{
	all_users_log_in("md5");
}

Test(login, all_users_with_auth_type_scram)
{
	all_users_log_in("scram-sha-256");
}

Test(login, all_users_with_auth_type_plain)
{
	all_users_log_in("plain");
}

Test(login, all_users_with_auth_type_trust)
{
	h_require_sluice();
	h_sluice_start("auth_type = trust\n", NULL);
	login_ok(H_ALICE, "password=nothing-asked");
	login_ok(H_BOB, "password=nothing-asked");
	login_ok(H_CAROL, "password=nothing-asked");
	h_finish();
}

Test(login, wrong_password_md5)
{
	h_sluice_start("auth_type = md5\n", NULL);
	password_fails(H_ALICE, "password=wrong");
	password_fails(H_BOB, "password=wrong");
	password_fails("mallory", "password=wrong");
	login_ok(H_ALICE, NULL);
	/* PgBouncer's log lines, which log watchers look for. */
	if (!h_direct()) {
		cr_assert(h_log_wait("login attempt: db=" H_DBNAME " user=mallory", 2000));
		cr_assert(h_log_wait("closing because: password authentication "
		                     "failed for user \\\"mallory\\\"", 2000));
	}
	h_finish();
}

Test(login, wrong_password_scram)
{
	h_sluice_start("auth_type = scram-sha-256\n", NULL);
	password_fails(H_ALICE, "password=wrong");
	password_fails(H_BOB, "password=wrong");
	password_fails("mallory", "password=wrong");
	login_ok(H_BOB, NULL);
	h_finish();
}

Test(login, wrong_password_plain)
{
	h_sluice_start("auth_type = plain\n", NULL);
	password_fails(H_CAROL, "password=wrong");
	password_fails("mallory", "password=wrong");
	login_ok(H_CAROL, NULL);
	h_finish();
}

Test(login, unknown_user_with_trust)
{
	h_require_sluice();
	h_sluice_start("auth_type = trust\n", NULL);
	login_fails("mallory", NULL, TRUST_FAILED);
	login_ok(H_ALICE, NULL);
	h_finish();
}

Test(login, unknown_database_is_told_only_after_auth)
{
	struct h_error err;

	h_sluice_start("auth_type = md5\n", NULL);
	/* A wrong password learns nothing about which databases exist. */
	password_fails(H_ALICE, "dbname=nosuch_db password=wrong");
	password_fails("mallory", "dbname=nosuch_db password=wrong");
	cr_assert(h_connect_fails(H_ALICE, "dbname=nosuch_db", &err));
	if (h_direct())
		cr_assert_str_eq(err.sqlstate, "3D000");
	else
		login_fails(H_ALICE, "dbname=nosuch_db", "no such database: nosuch_db");
	h_finish();
}

static const char *const foo_params[] = { "foo_param", "1", NULL };

Test(login, unsupported_startup_parameter)
{
	const char *params[] = { "user", H_CAROL, "database", H_DBNAME,
	                         "foo_param", "1", NULL };
	uint8_t packet[512];
	size_t len = h_startup_packet(packet, sizeof(packet), 196608, params, true);
	struct h_error err;
	int fd;

	h_require_sluice();
	h_sluice_start("auth_type = plain\n", NULL);
	fd = h_raw_connect();
	cr_assert(h_raw_send(fd, packet, len));
	cr_assert(h_raw_expect_error(fd, 5000, &err), "no ErrorResponse");
	cr_assert_str_eq(err.severity, "FATAL");
	cr_assert_str_eq(err.sqlstate, PROTOCOL_VIOLATION);
	cr_assert_str_eq(err.message, "unsupported startup parameter: foo_param");
	cr_assert(h_raw_closed(fd, 5000), "the connection stayed open");
	close(fd);
	login_ok(H_CAROL, NULL);
	h_finish();
}

Test(login, ignored_startup_parameter)
{
	static const uint8_t query[] = { 'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E',
	                                 'C', 'T', ' ', '1', 0 };
	uint8_t body[1024];
	size_t len;
	char type = 0;
	int fd;

	h_require_sluice();
	h_sluice_start("auth_type = plain\n"
	               "ignore_startup_parameters = extra_float_digits, foo_param\n", NULL);
	fd = h_raw_login(H_CAROL, foo_params);
	cr_assert(h_raw_send(fd, query, sizeof(query)));
	while (type != 'Z')
		cr_assert_eq(h_raw_read_msg(fd, 5000, &type, body, sizeof(body), &len), 1,
		             "no answer to a query after an ignored startup parameter");
	close(fd);
	login_ok(H_CAROL, NULL);
	h_finish();
}

Test(login, max_client_conn_reached)
{
	PGconn *conns[3];
	PGconn *again;

	h_require_sluice();
	h_sluice_start("max_client_conn = 3\n", NULL);
	for (int i = 0; i < 3; i++)
		conns[i] = h_connect(H_ALICE, NULL);
	login_fails(H_ALICE, NULL, "no more connections allowed (max_client_conn)");
	login_fails(H_BOB, NULL, "no more connections allowed (max_client_conn)");
	cr_assert(h_log_wait("closing because: no more connections allowed "
	                     "(max_client_conn)", 2000), "no log line");
	/* One leaves, one more may come. */
	PQfinish(conns[0]);
	again = NULL;
	for (double deadline = h_now() + 5; !again && h_now() < deadline;)
		if (!(again = h_try_connect(H_ALICE, NULL, NULL, 0)))
			h_sleep_ms(50);
	cr_assert(again, "no room after a client left (max_client_conn = 3)");
	cr_assert_eq(h_query_int(again, "SELECT 1"), 1);
	PQfinish(again);
	PQfinish(conns[1]);
	PQfinish(conns[2]);
	h_finish();
}

Test(login, ssl_request_is_declined_and_login_goes_on)
{
	h_sluice_start(NULL, NULL);
	login_ok(H_ALICE, "sslmode=prefer");
	login_ok(H_BOB, "sslmode=allow");
	h_finish();
}

Test(login, startup_parameters_follow_each_client)
{
	PGconn *a, *b;
	char value[64];

	h_sluice_start("default_pool_size = 1\n", NULL);
	a = h_connect(H_ALICE, "client_encoding=LATIN1 application_name=app-a");
	b = h_connect(H_ALICE, "client_encoding=UTF8 application_name=app-b");
	/* One server, two clients: each must see its own values every time. */
	for (int i = 0; i < 3; i++) {
		h_query_str(a, value, sizeof(value), "SHOW client_encoding");
		cr_assert_str_eq(value, "LATIN1");
		h_query_str(b, value, sizeof(value), "SHOW client_encoding");
		cr_assert_str_eq(value, "UTF8");
		h_query_str(a, value, sizeof(value), "SHOW application_name");
		cr_assert_str_eq(value, "app-a");
		h_query_str(b, value, sizeof(value), "SHOW application_name");
		cr_assert_str_eq(value, "app-b");
	}
	cr_assert_str_eq(PQparameterStatus(a, "client_encoding"), "LATIN1");
	cr_assert_str_eq(PQparameterStatus(b, "client_encoding"), "UTF8");
	PQfinish(a);
	PQfinish(b);
	h_finish();
}
