/*
 * test_bad_input.c - raw bytes that are not the protocol: each bad
 * connection gets a FATAL ErrorResponse with SQLSTATE 08P01 (protocol
 * violation) and is closed; sluice keeps serving everyone else.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

TestSuite(bad_input, .fini = h_teardown, .timeout = 60);

#define PROTOCOL_3 196608u   /* 3.0 */

static const char *const good_params[] = {
	"user", H_CAROL, "database", H_DBNAME, NULL,
};

/* A normal client still gets served. */
static void others_still_served(void)
{
	PGconn *conn;

	h_assert_alive();
	conn = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(conn, "SELECT 6 * 7"), 42);
	PQfinish(conn);
}

/*
 * The connection got an 08P01 error and was closed. PostgreSQL itself
 * (direct mode) closes some of these silently, so there only the close
 * is required.
 */
static void expect_protocol_error(int fd, const char *what)
{
	struct h_error err;
	bool got = h_raw_expect_error(fd, 5000, &err);

	if (got || !h_direct()) {
		cr_assert(got, "%s: no ErrorResponse", what);
		cr_assert_str_eq(err.sqlstate, "08P01", "%s: %s %s %s", what,
		                 err.severity, err.sqlstate, err.message);
		cr_assert_str_eq(err.severity, "FATAL", "%s: %s %s", what,
		                 err.severity, err.message);
	}
	cr_assert(h_raw_closed(fd, 5000), "%s: the connection stayed open", what);
	close(fd);
}

/* Sends bytes as a fresh connection's first words; expects the error. */
static void bad_start(const void *bytes, size_t len, const char *what)
{
	int fd = h_raw_connect();

	cr_assert(h_raw_send(fd, bytes, len), "%s: send failed", what);
	expect_protocol_error(fd, what);
	others_still_served();
}

Test(bad_input, startup_length_below_header)
{
	uint8_t p[8];

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	h_put_be32(p, 4);
	h_put_be32(p + 4, PROTOCOL_3);
	bad_start(p, sizeof(p), "length 4");
	h_put_be32(p, 0);
	bad_start(p, sizeof(p), "length 0");
	h_finish();
}

Test(bad_input, startup_length_over_max_packet_size)
{
	uint8_t p[64] = { 0 };

	h_require_sluice();
	h_sluice_start("max_packet_size = 65536\n", NULL);
	h_put_be32(p, 100000);
	h_put_be32(p + 4, PROTOCOL_3);
	bad_start(p, sizeof(p), "startup length 100000");
	h_put_be32(p, 0x7ffffff0);
	bad_start(p, sizeof(p), "startup length 0x7ffffff0");
	h_put_be32(p, 0xfffffff0);
	bad_start(p, sizeof(p), "startup length 0xfffffff0");
	h_finish();
}

Test(bad_input, unknown_protocol_version)
{
	uint8_t p[128];
	size_t len;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	len = h_startup_packet(p, sizeof(p), 4u << 16, good_params, true);
	bad_start(p, len, "protocol 4.0");
	len = h_startup_packet(p, sizeof(p), 2u << 16, good_params, true);
	bad_start(p, len, "protocol 2.0");
	len = h_startup_packet(p, sizeof(p), 1234u << 16 | 5678, good_params, true);
	bad_start(p, len, "protocol 1234.5678");
	h_finish();
}

Test(bad_input, startup_packet_without_terminator)
{
	uint8_t p[128];
	size_t len;

	h_require_sluice();
	h_sluice_start("auth_type = plain\n", NULL);
	len = h_startup_packet(p, sizeof(p), PROTOCOL_3, good_params, false);
	bad_start(p, len, "no final zero byte");
	h_finish();
}

Test(bad_input, malformed_startup_packets)
{
	static const char *const key_only[] = { "user", NULL };
	static const char *const no_user[] = { "database", H_DBNAME, NULL };
	uint8_t p[128];
	size_t len;

	h_require_sluice();
	h_sluice_start("auth_type = plain\n", NULL);
	/* A string cut in the middle: the length covers "user\0car". */
	len = h_startup_packet(p, sizeof(p), PROTOCOL_3, good_params, true);
	h_put_be32(p, 8 + 8);
	bad_start(p, 16, "string cut by the length");
	/* A key without its value. */
	len = h_startup_packet(p, sizeof(p), PROTOCOL_3, key_only, true);
	bad_start(p, len, "key without value");
	/* Well formed but no user: PgBouncer's "no username supplied". */
	len = h_startup_packet(p, sizeof(p), PROTOCOL_3, no_user, true);
	{
		struct h_error err;
		int fd = h_raw_connect();

		cr_assert(h_raw_send(fd, p, len));
		cr_assert(h_raw_expect_error(fd, 5000, &err));
		cr_assert_str_eq(err.message, "no username supplied");
		close(fd);
	}
	others_still_served();
	h_finish();
}

Test(bad_input, garbage_instead_of_startup)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: sluice\r\n\r\n";
	uint8_t noise[4096];
	uint32_t seed = 7;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	bad_start(http, sizeof(http) - 1, "an HTTP request");
	for (size_t i = 0; i < sizeof(noise); i++) {
		seed = seed * 1103515245 + 12345;
		noise[i] = (uint8_t)(seed >> 16);
	}
	/* Length 0x00123456 with a nonsense version: rejected on sight. */
	noise[0] = 0;
	noise[1] = 0x12;
	bad_start(noise, sizeof(noise), "random bytes");
	h_finish();
}

Test(bad_input, truncated_startup_then_silence_or_close)
{
	uint8_t p[128];
	size_t len;
	int fd;

	h_sluice_start(NULL, NULL);
	len = h_startup_packet(p, sizeof(p), PROTOCOL_3, good_params, true);
	/* Half a packet, then the client stops writing. */
	fd = h_raw_connect();
	cr_assert(h_raw_send(fd, p, len / 2));
	shutdown(fd, SHUT_WR);
	cr_assert(h_raw_closed(fd, 5000), "half a startup packet, EOF: still open");
	close(fd);
	/* Three bytes of a header, then gone; and a connection that says nothing. */
	fd = h_raw_connect();
	cr_assert(h_raw_send(fd, p, 3));
	close(fd);
	fd = h_raw_connect();
	close(fd);
	others_still_served();
	h_finish();
}

/* Logs in over a raw socket as carol (cleartext password). */
static int logged_in(void)
{
	return h_raw_login(H_CAROL, NULL);
}

Test(bad_input, bad_message_length_after_login)
{
	uint8_t msg[64] = { 'Q' };
	int fd;

	h_sluice_start("auth_type = plain\n", NULL);
	fd = logged_in();
	h_put_be32(msg + 1, 3);
	cr_assert(h_raw_send(fd, msg, 5 + 8));
	expect_protocol_error(fd, "Query with length 3");
	others_still_served();

	fd = logged_in();
	h_put_be32(msg + 1, 0xfffffff0);
	cr_assert(h_raw_send(fd, msg, sizeof(msg)));
	expect_protocol_error(fd, "Query with length 0xfffffff0");
	others_still_served();

	fd = logged_in();
	h_put_be32(msg + 1, 0x7ffffff0);
	cr_assert(h_raw_send(fd, msg, sizeof(msg)));
	expect_protocol_error(fd, "Query with length 0x7ffffff0");
	others_still_served();
	h_finish();
}

Test(bad_input, message_over_max_packet_size_after_login)
{
	uint8_t msg[64] = { 'Q' };
	int fd;

	h_require_sluice();
	h_sluice_start("auth_type = plain\nmax_packet_size = 65536\n", NULL);
	fd = logged_in();
	h_put_be32(msg + 1, 100000);
	cr_assert(h_raw_send(fd, msg, sizeof(msg)));
	expect_protocol_error(fd, "Query of 100000 bytes, max_packet_size 65536");
	others_still_served();
	h_finish();
}

Test(bad_input, unknown_message_type_after_login)
{
	uint8_t msg[5] = { 'z', 0, 0, 0, 4 };
	int fd;

	h_sluice_start("auth_type = plain\n", NULL);
	fd = logged_in();
	cr_assert(h_raw_send(fd, msg, sizeof(msg)));
	expect_protocol_error(fd, "message type 'z'");
	others_still_served();
	h_finish();
}

Test(bad_input, half_a_message_then_close_after_login)
{
	uint8_t msg[64] = { 'Q' };
	int fd;

	h_sluice_start("auth_type = plain\n", NULL);
	fd = logged_in();
	h_put_be32(msg + 1, 40);
	memcpy(msg + 5, "SELECT pg_sleep(", 16);
	cr_assert(h_raw_send(fd, msg, 5 + 16));
	close(fd);
	fd = logged_in();
	cr_assert(h_raw_send(fd, msg, 3));
	close(fd);
	others_still_served();
	h_finish();
}

#define FLOODERS 40

Test(bad_input, many_bad_clients_at_once)
{
	int fds[FLOODERS];
	uint8_t noise[16384];
	uint32_t seed = 99;

	h_sluice_start(NULL, NULL);
	for (size_t i = 0; i < sizeof(noise); i++) {
		seed = seed * 1103515245 + 12345;
		noise[i] = (uint8_t)(seed >> 16);
	}
	for (int i = 0; i < FLOODERS; i++) {
		fds[i] = h_raw_connect();
		/* Every one starts differently: some lengths pass the first check. */
		noise[0] = 0;
		noise[1] = 0;
		noise[2] = (uint8_t)i;
		noise[3] = 8;
		h_raw_send(fds[i], noise, sizeof(noise));
	}
	others_still_served();
	for (int i = 0; i < FLOODERS; i++) {
		cr_assert(h_raw_closed(fds[i], 10000), "flooder %d was not closed", i);
		close(fds[i]);
	}
	others_still_served();
	h_finish();
}

/* One simple Query over a raw socket, read to ReadyForQuery: the first
 * column of the first row into value; false on an ErrorResponse. */
static bool raw_query(int fd, const char *sql, char *value, size_t cap)
{
	static uint8_t buf[65536];
	size_t n = strlen(sql) + 1, len;
	bool ok = true;
	char type;

	buf[0] = 'Q';
	h_put_be32(buf + 1, (uint32_t)(4 + n));
	memcpy(buf + 5, sql, n);
	cr_assert(h_raw_send(fd, buf, 5 + n));
	value[0] = '\0';
	for (;;) {
		cr_assert(h_raw_read_msg(fd, 10000, &type, buf, sizeof(buf), &len) == 1,
		          "no answer to %s", sql);
		if (type == 'E')
			ok = false;
		if (type == 'D' && !value[0] && len >= 6 && h_get_be32(buf + 2) < cap) {
			memcpy(value, buf + 6, h_get_be32(buf + 2));
			value[h_get_be32(buf + 2)] = '\0';
		}
		if (type == 'Z')
			return ok;
	}
}

/*
 * A tracked parameter's value is sent to a shared server inside SQL: with
 * standard_conforming_strings off on that server, a backslash must not end
 * the literal early and run the rest of application_name as SQL.
 */
Test(bad_input, parameter_values_cannot_inject_sql)
{
	static const char payload[] =
		"x\\'; CREATE TABLE injected_by_app_name(); --";
	const char *setup[] = { "standard_conforming_strings", "off",
	                        "application_name", "plain", NULL };
	const char *attack[] = { "standard_conforming_strings", "off",
	                         "application_name", payload, NULL };
	char value[256];
	int first, second;

	h_require_sluice();
	h_pg_exec("DROP TABLE IF EXISTS injected_by_app_name");
	h_sluice_start("auth_type = plain\ndefault_pool_size = 1\n", NULL);
	/* The one server gets standard_conforming_strings = off ... */
	first = h_raw_login(H_CAROL, setup);
	cr_assert(raw_query(first, "SELECT 1", value, sizeof(value)));
	/* ... and the next client's application_name is set on it. */
	second = h_raw_login(H_CAROL, attack);
	cr_assert(raw_query(second, "SHOW application_name", value, sizeof(value)));
	cr_expect_str_eq(value, payload);
	cr_assert(raw_query(second, "SHOW standard_conforming_strings", value,
	                    sizeof(value)));
	cr_expect_str_eq(value, "off");
	cr_assert_eq(h_pg_int("SELECT count(*) FROM pg_class "
	                      "WHERE relname = 'injected_by_app_name'"), 0,
	             "application_name ran SQL on the server");
	close(first);
	close(second);
	others_still_served();
	h_finish();
}
