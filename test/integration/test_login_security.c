/*
 * test_login_security.c - what a client can learn or do before it has
 * authenticated: probe user names (SCRAM salts, md5 or SCRAM challenge,
 * error texts), log in with an empty password, forge log lines through its
 * startup packet, take the console by letter case, repeat SSLRequest to
 * grow sluice's memory; and the passwords and SCRAM keys that must work.
 *
 * The SCRAM exchanges are made by hand over raw sockets, with OpenSSL, so
 * that the salt and iteration count sluice shows can be read and a proof
 * for any password (the empty one too, which libpq refuses to send) built.
 */
#define _GNU_SOURCE /* asprintf */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "harness.h"

TestSuite(login_security, .fini = h_teardown, .timeout = 120);

#define PG_AUTH_OK 0
#define PG_AUTH_CLEARTEXT 3
#define PG_AUTH_MD5 5
#define PG_AUTH_SASL 10
#define PG_AUTH_SASL_CONTINUE 11
#define PG_AUTH_SASL_FINAL 12
#define CLIENT_NONCE "probe0123456789abcdefXYZ"

/* Writes lines into auth.txt of the test directory; returns the setting. */
static void write_auth_file(const char *lines)
{
	free(h_write_file("auth.txt", lines));
}

#define AUTH_FILE_SETTING "auth_file = %DIR%/auth.txt\n"

/* A startup packet for user (database sluice_test) on a new socket. */
static int raw_startup(const char *user, const char *database)
{
	const char *params[] = { "user", user, "database", database, NULL };
	uint8_t packet[4096];
	size_t len = h_startup_packet(packet, sizeof(packet), 196608, params, true);
	int fd = h_raw_connect();

	cr_assert(len > 0);
	cr_assert(h_raw_send(fd, packet, len));
	return fd;
}

/* The next message must be an AuthenticationRequest; returns its code and
 * copies what follows the code into data (NUL terminated). */
static uint32_t read_auth(int fd, char *data, size_t cap)
{
	uint8_t body[2048];
	size_t len = 0;
	char type = 0;
	struct h_error err;

	cr_assert_eq(h_raw_read_msg(fd, 5000, &type, body, sizeof(body), &len), 1,
	             "no answer during authentication");
	if (type == 'E') {
		h_parse_error(body, len, &err);
		cr_assert_fail("error during authentication: %s %s", err.sqlstate,
		               err.message);
	}
	cr_assert_eq(type, 'R', "expected an AuthenticationRequest, got '%c'", type);
	cr_assert(len >= 4 && len - 4 < cap);
	memcpy(data, body + 4, len - 4);
	data[len - 4] = '\0';
	return h_get_be32(body);
}

/* --- 4: admin_users by letter case -------------------------------------- */

Test(login_security, admin_users_match_the_exact_name)
{
	struct h_error err;
	PGconn *admin;

	h_require_sluice();
	write_auth_file("\"" H_ALICE "\" \"" H_ALICE_PASSWORD "\"\n"
	                "\"" H_ADMIN "\" \"" H_ADMIN_PASSWORD "\"\n"
	                "\"ADMIN\" \"upper-secret\"\n"
	                "\"watcher\" \"watch-secret\"\n"
	                "\"WATCHER\" \"upper-watch\"\n");
	h_sluice_start(AUTH_FILE_SETTING "stats_users = watcher\n", NULL);
	cr_assert(h_connect_fails("ADMIN", "dbname=sluice password=upper-secret",
	                          &err), "ADMIN got the admin console");
	cr_assert_str_eq(err.message, "not allowed to connect to the admin console");
	cr_assert(h_connect_fails("WATCHER", "dbname=sluice password=upper-watch",
	                          &err), "WATCHER got the stats console");
	cr_assert_str_eq(err.message, "not allowed to connect to the admin console");
	/* The real names still get theirs. */
	admin = h_connect(H_ADMIN, "dbname=sluice");
	PQfinish(admin);
	admin = h_connect("watcher", "dbname=sluice password=watch-secret");
	PQfinish(admin);
	h_finish();
}

/* --- 7: log injection ------------------------------------------------- */

/*
 * A newline in the user, database, application_name or a parameter name
 * of a startup packet, or in a database name PostgreSQL then quotes in its
 * error, must not start a line of sluice's log: each is escaped as \n.
 */
Test(login_security, startup_strings_cannot_forge_log_lines)
{
	const char *forged[] = { "user", "evil\nFORGED user", "database",
	                         "db\nFORGED database", "application_name",
	                         "app\nFORGED application_name", NULL };
	const char *bad_name[] = { "user", H_ALICE, "database", H_DBNAME,
	                           "x\nFORGED parameter", "1", NULL };
	uint8_t packet[512];
	size_t len;
	char data[512];
	struct h_error err;
	char *log;
	int fd;

	h_require_sluice();
	h_sluice_start("log_connections = 1\nlog_pooler_errors = 1\n"
	               "log_disconnections = 1\n",
	               "* = host=127.0.0.1 port=%PGPORT%\n");
	len = h_startup_packet(packet, sizeof(packet), 196608, forged, true);
	fd = h_raw_connect();
	cr_assert(h_raw_send(fd, packet, len));
	read_auth(fd, data, sizeof(data));
	close(fd);
	len = h_startup_packet(packet, sizeof(packet), 196608, bad_name, true);
	fd = h_raw_connect();
	cr_assert(h_raw_send(fd, packet, len));
	cr_assert(h_raw_expect_error(fd, 5000, &err));
	close(fd);
	/* Past authentication: an autodb pool and PostgreSQL's error. */
	cr_assert(h_connect_fails(H_ALICE, "dbname='nosuch\nFORGED autodb'", &err));
	cr_assert(h_log_wait("user=evil\\nFORGED user", 5000), "not logged");
	cr_assert(h_log_wait("x\\nFORGED parameter", 5000), "not logged");
	cr_assert(h_log_wait("nosuch\\nFORGED autodb", 5000), "not logged");
	log = h_sluice_log();
	cr_assert_null(strstr(log, "\nFORGED"), "a forged line:\n%s", log);
	free(log);
	h_finish();
}

/* --- 3: SSLRequest and GSSENCRequest, once each ------------------------ */

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	cr_assert(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kb = atol(line + 6);
	fclose(f);
	return kb;
}

/* One byte within 5 s, or -1. */
static int read_byte(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint8_t b;

	if (poll(&p, 1, 5000) != 1 || recv(fd, &b, 1, 0) != 1)
		return -1;
	return b;
}

static void put_request(uint8_t *p, uint32_t code)
{
	h_put_be32(p, 8);
	h_put_be32(p + 4, code);
}

#define SSL_REQUEST 80877103u
#define GSSENC_REQUEST 80877104u

/*
 * 32,768 SSLRequests in one write, never reading: one 'N', then 08P01 and
 * the close. Before, each got its 'N' queued in a buffer of its own and
 * the process grew by hundreds of MiB.
 */
Test(login_security, repeated_ssl_request_is_refused)
{
	size_t count = 32768;
	uint8_t *flood = malloc(count * 8);
	struct h_error err;
	long before, after;
	int fd;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	before = rss_kb(h_sluice_pid());
	for (size_t i = 0; i < count; i++)
		put_request(flood + 8 * i, SSL_REQUEST);
	fd = h_raw_connect();
	h_raw_send(fd, flood, count * 8); /* sluice may close before the end */
	h_sleep_ms(500);
	after = rss_kb(h_sluice_pid());
	cr_assert_lt(after - before, 16384, "RSS grew from %ld to %ld kB",
	             before, after);
	cr_assert_eq(read_byte(fd), 'N');
	cr_assert(h_raw_expect_error(fd, 5000, &err), "no ErrorResponse");
	cr_assert_str_eq(err.sqlstate, "08P01");
	cr_assert_str_eq(err.message, "duplicate SSLRequest");
	cr_assert(h_raw_closed(fd, 5000));
	close(fd);
	PQfinish(h_connect(H_ALICE, NULL));
	free(flood);
	h_finish();
}

/* One of each is fine, in either order, and the login goes on; a second
 * GSSENCRequest is refused like a second SSLRequest. */
Test(login_security, one_ssl_and_one_gssenc_request_are_answered)
{
	const char *params[] = { "user", H_CAROL, "database", H_DBNAME, NULL };
	uint8_t req[16], packet[512];
	size_t len = h_startup_packet(packet, sizeof(packet), 196608, params, true);
	struct h_error err;
	char data[512];
	int fd;

	h_require_sluice();
	h_sluice_start("auth_type = plain\n", NULL);
	fd = h_raw_connect();
	put_request(req, GSSENC_REQUEST);
	cr_assert(h_raw_send(fd, req, 8));
	cr_assert_eq(read_byte(fd), 'N');
	put_request(req, SSL_REQUEST);
	cr_assert(h_raw_send(fd, req, 8));
	cr_assert_eq(read_byte(fd), 'N');
	cr_assert(h_raw_send(fd, packet, len));
	cr_assert_eq(read_auth(fd, data, sizeof(data)), PG_AUTH_CLEARTEXT);
	close(fd);

	fd = h_raw_connect();
	put_request(req, GSSENC_REQUEST);
	put_request(req + 8, GSSENC_REQUEST);
	cr_assert(h_raw_send(fd, req, 16));
	cr_assert_eq(read_byte(fd), 'N');
	cr_assert(h_raw_expect_error(fd, 5000, &err), "no ErrorResponse");
	cr_assert_str_eq(err.message, "duplicate GSSENCRequest");
	close(fd);
	PQfinish(h_connect(H_CAROL, NULL));
	h_finish();
}
