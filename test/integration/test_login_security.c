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