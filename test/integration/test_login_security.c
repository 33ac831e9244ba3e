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
#include <arpa/inet.h>
#include <netinet/in.h>
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

/* What a SCRAM exchange showed, up to its server-first-message. */
struct scram_seen {
	int fd;
	char server_first[512];
	char salt[128];            /* base64, as sent */
	int iterations;
	char nonce[256];           /* client + server nonce */
};

/* The auth_file secret PostgreSQL keeps for role (a SCRAM verifier). */
static char *pg_secret(const char *role)
{
	PGconn *pg = h_connect_pg();
	const char *params[] = { role };
	PGresult *res = PQexecParams(pg, "SELECT rolpassword FROM pg_authid "
	                             "WHERE rolname = $1", 1, NULL, params, NULL,
	                             NULL, 0);
	char *secret;

	cr_assert_eq(PQntuples(res), 1, "no role %s", role);
	secret = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(pg);
	return secret;
}

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

/* Sends a PasswordMessage-shaped ('p') message holding data. */
static void send_p(int fd, const void *data, size_t len)
{
	uint8_t *msg = malloc(len + 5);

	msg[0] = 'p';
	h_put_be32(msg + 1, (uint32_t)len + 4);
	memcpy(msg + 5, data, len);
	cr_assert(h_raw_send(fd, msg, len + 5));
	free(msg);
}

/* Logs in as user over SCRAM up to the server-first-message. */
static void scram_first(const char *user, struct scram_seen *seen)
{
	static const char bare[] = "n=,r=" CLIENT_NONCE;
	char data[512];
	uint8_t init[128];
	size_t n = 0;
	char *s, *i;

	memset(seen, 0, sizeof(*seen));
	seen->fd = raw_startup(user, H_DBNAME);
	cr_assert_eq(read_auth(seen->fd, data, sizeof(data)), PG_AUTH_SASL,
	             "%s was not asked for SCRAM", user);
	memcpy(init, "SCRAM-SHA-256", 14);
	n = 14;
	h_put_be32(init + n, (uint32_t)strlen(bare) + 3);
	n += 4;
	memcpy(init + n, "n,,", 3);
	memcpy(init + n + 3, bare, strlen(bare));
	n += 3 + strlen(bare);
	send_p(seen->fd, init, n);
	cr_assert_eq(read_auth(seen->fd, seen->server_first,
	                       sizeof(seen->server_first)),
	             PG_AUTH_SASL_CONTINUE);
	s = strstr(seen->server_first, ",s=");
	i = strstr(seen->server_first, ",i=");
	cr_assert(strncmp(seen->server_first, "r=" CLIENT_NONCE, 2 + 24) == 0 &&
	          s && i && i > s, "bad server-first: %s", seen->server_first);
	snprintf(seen->nonce, sizeof(seen->nonce), "%.*s",
	         (int)(s - seen->server_first - 2), seen->server_first + 2);
	snprintf(seen->salt, sizeof(seen->salt), "%.*s", (int)(i - s - 3), s + 3);
	seen->iterations = atoi(i + 3);
}

/* The client proof for password: RFC 5802, straight from OpenSSL. */
static void scram_proof(const struct scram_seen *seen, const char *password,
                        const char *without_proof, char *proof_b64)
{
	uint8_t salt[128], salted[32], client_key[32], stored_key[32], sig[32];
	unsigned int len = 0;
	char auth_message[2048];
	int salt_len = EVP_DecodeBlock(salt, (const uint8_t *)seen->salt,
	                               (int)strlen(seen->salt));

	salt_len -= (int)(strlen(seen->salt) - strcspn(seen->salt, "="));
	cr_assert(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt,
	                            salt_len, seen->iterations, EVP_sha256(),
	                            32, salted) == 1);
	HMAC(EVP_sha256(), salted, 32, (const uint8_t *)"Client Key", 10,
	     client_key, &len);
	EVP_Digest(client_key, 32, stored_key, NULL, EVP_sha256(), NULL);
	snprintf(auth_message, sizeof(auth_message), "n=,r=" CLIENT_NONCE ",%s,%s",
	         seen->server_first, without_proof);
	HMAC(EVP_sha256(), stored_key, 32, (const uint8_t *)auth_message,
	     strlen(auth_message), sig, &len);
	for (int k = 0; k < 32; k++)
		sig[k] ^= client_key[k];
	EVP_EncodeBlock((uint8_t *)proof_b64, sig, 32);
}

/*
 * Sends the client-final-message with the proof for password; true if
 * sluice accepted it (AuthenticationOk), false with err filled if it
 * answered an ErrorResponse. Closes the socket.
 */
static bool scram_final(struct scram_seen *seen, const char *password,
                        struct h_error *err)
{
	char without_proof[512], final[640], proof[64];
	uint8_t body[2048];
	size_t len = 0;
	char type = 0;
	int ok = -1;

	snprintf(without_proof, sizeof(without_proof), "c=biws,r=%s", seen->nonce);
	scram_proof(seen, password, without_proof, proof);
	snprintf(final, sizeof(final), "%s,p=%s", without_proof, proof);
	send_p(seen->fd, final, strlen(final));
	while (ok < 0) {
		cr_assert_eq(h_raw_read_msg(seen->fd, 5000, &type, body,
		                            sizeof(body), &len), 1,
		             "no answer to the client-final-message");
		if (type == 'E') {
			h_parse_error(body, len, err);
			ok = 0;
		} else if (type == 'R' && len >= 4 && h_get_be32(body) == PG_AUTH_OK) {
			ok = 1;
		} else {
			cr_assert(type == 'R' && len >= 4 &&
			          h_get_be32(body) == PG_AUTH_SASL_FINAL,
			          "unexpected '%c' after the client-final", type);
		}
	}
	close(seen->fd);
	return ok == 1;
}

/* The error a failed password gives every user alike. */
static void assert_password_error(const struct h_error *err, const char *user)
{
	char message[128];

	snprintf(message, sizeof(message),
	         "password authentication failed for user \"%s\"", user);
	cr_assert_str_eq(err->severity, "FATAL");
	cr_assert_str_eq(err->sqlstate, "28P01", "%s: %s %s", user, err->sqlstate,
	                 err->message);
	cr_assert_str_eq(err->message, message);
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

/* --- 6: user enumeration ---------------------------------------------- */

/*
 * alice has a SCRAM verifier, bob a plain password, mallory is unknown and
 * eve has an empty password: each is shown the same salt on every try, of
 * the same length, with 4096 iterations, and a wrong proof gets the same
 * error. Before, mallory got a fresh salt (and a PBKDF2) each time.
 */
Test(login_security, scram_answers_unknown_users_like_known_ones)
{
	const char *users[] = { H_ALICE, H_BOB, "mallory", "eve" };
	char salts[4][128];
	char *verifier = pg_secret(H_ALICE);
	char *lines = NULL;
	struct scram_seen seen;
	struct h_error err;

	h_require_sluice();
	cr_assert(asprintf(&lines, "\"" H_ALICE "\" \"%s\"\n\"" H_BOB "\" \""
	                   H_BOB_PASSWORD "\"\n\"eve\" \"\"\n", verifier) > 0);
	write_auth_file(lines);
	h_sluice_start(AUTH_FILE_SETTING "auth_type = scram-sha-256\n", NULL);
	for (int u = 0; u < 4; u++) {
		scram_first(users[u], &seen);
		close(seen.fd);
		snprintf(salts[u], sizeof(salts[u]), "%s", seen.salt);
		cr_assert_eq(seen.iterations, 4096, "%s: i=%d", users[u],
		             seen.iterations);
		cr_assert_eq(strlen(seen.salt), 24, "%s: salt %s", users[u], seen.salt);
		scram_first(users[u], &seen);
		cr_assert_str_eq(seen.salt, salts[u], "%s: the salt changed", users[u]);
		cr_assert_not(scram_final(&seen, "wrong", &err), "%s in", users[u]);
		assert_password_error(&err, users[u]);
	}
	cr_assert_str_neq(salts[2], salts[1], "two names, one salt");
	cr_assert_str_neq(salts[2], salts[3], "two names, one salt");
	/* The right password still works, after all that. */
	scram_first(H_BOB, &seen);
	cr_assert(scram_final(&seen, H_BOB_PASSWORD, &err), "%s", err.message);
	scram_first(H_ALICE, &seen);
	cr_assert(scram_final(&seen, H_ALICE_PASSWORD, &err), "%s", err.message);
	free(lines);
	free(verifier);
	h_finish();
}

/* The challenge md5 mode sends a user, read off a raw login. */
static uint32_t md5_mode_challenge(const char *user)
{
	char data[512];
	int fd = raw_startup(user, H_DBNAME);
	uint32_t code = read_auth(fd, data, sizeof(data));

	close(fd);
	return code;
}

/*
 * md5 mode asks a SCRAM verifier's user for SCRAM, others for md5. With
 * only verifiers in the auth_file an unknown user must be asked for SCRAM
 * too (before, it got md5: a sure sign); with only plain passwords, md5.
 */
Test(login_security, md5_mode_asks_unknown_users_what_known_ones_get)
{
	char *verifier = pg_secret(H_ALICE);
	char *lines = NULL;

	h_require_sluice();
	cr_assert(asprintf(&lines, "\"" H_ALICE "\" \"%s\"\n", verifier) > 0);
	write_auth_file(lines);
	h_sluice_start(AUTH_FILE_SETTING "auth_type = md5\n", NULL);
	cr_assert_eq(md5_mode_challenge(H_ALICE), PG_AUTH_SASL);
	cr_assert_eq(md5_mode_challenge("mallory"), PG_AUTH_SASL);
	cr_assert_eq(md5_mode_challenge("trudy"), PG_AUTH_SASL);
	h_finish();

	write_auth_file("\"" H_BOB "\" \"" H_BOB_PASSWORD "\"\n");
	h_sluice_start(AUTH_FILE_SETTING "auth_type = md5\n", NULL);
	cr_assert_eq(md5_mode_challenge(H_BOB), PG_AUTH_MD5);
	cr_assert_eq(md5_mode_challenge("mallory"), PG_AUTH_MD5);
	h_finish();
	free(lines);
	free(verifier);
}

/* A mixed auth_file: an unknown name gets either, but always the same, and
 * over many names both occur (as they do among the known users). */
Test(login_security, md5_mode_answer_is_stable_per_unknown_name)
{
	char *verifier = pg_secret(H_ALICE);
	char *lines = NULL;
	int sasl = 0;

	h_require_sluice();
	cr_assert(asprintf(&lines, "\"" H_ALICE "\" \"%s\"\n\"" H_BOB "\" \""
	                   H_BOB_PASSWORD "\"\n", verifier) > 0);
	write_auth_file(lines);
	h_sluice_start(AUTH_FILE_SETTING "auth_type = md5\n", NULL);
	for (int i = 0; i < 24; i++) {
		char name[32];
		uint32_t first;

		snprintf(name, sizeof(name), "probe%d", i);
		first = md5_mode_challenge(name);
		cr_assert(first == PG_AUTH_MD5 || first == PG_AUTH_SASL);
		cr_assert_eq(md5_mode_challenge(name), first, "%s changed", name);
		sasl += first == PG_AUTH_SASL;
	}
	/* Each way has odds of 2^-24 to fail by chance. */
	cr_assert(sasl > 0 && sasl < 24, "%d of 24 names asked for SCRAM", sasl);
	free(lines);
	free(verifier);
	h_finish();
}

/* --- 10: empty passwords ---------------------------------------------- */

/* md5(a || b) in hex. */
static void md5_hex(const char *a, const void *b, size_t b_len, char out[33])
{
	uint8_t digest[16];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	EVP_DigestUpdate(ctx, a, strlen(a));
	EVP_DigestUpdate(ctx, b, b_len);
	EVP_DigestFinal_ex(ctx, digest, NULL);
	EVP_MD_CTX_free(ctx);
	for (int i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", digest[i]);
}

/* Answers the password request of mode for user with the empty password;
 * asserts the login is refused with the usual error. */
static void empty_password_refused(const char *user)
{
	char data[512], inner[33], response[40] = "md5";
	struct scram_seen seen;
	struct h_error err;
	int fd = raw_startup(user, H_DBNAME);
	uint32_t code = read_auth(fd, data, sizeof(data));

	if (code == PG_AUTH_SASL) {
		close(fd);
		scram_first(user, &seen);
		cr_assert_not(scram_final(&seen, "", &err), "SCRAM with \"\" got in");
		return assert_password_error(&err, user);
	}
	if (code == PG_AUTH_CLEARTEXT) {
		send_p(fd, "", 1);
	} else {
		cr_assert_eq(code, PG_AUTH_MD5);
		md5_hex("", user, strlen(user), inner);
		md5_hex(inner, data, 4, response + 3);
		send_p(fd, response, strlen(response) + 1);
	}
	cr_assert(h_raw_expect_error(fd, 5000, &err), "\"\" got in");
	close(fd);
	assert_password_error(&err, user);
}

/*
 * "sluice_super" "" in the auth_file: PostgreSQL trusts that role, so a
 * client that got past sluice with the empty password would be in.
 */
Test(login_security, empty_password_never_authenticates)
{
	const char *modes[] = { "plain", "md5", "scram-sha-256" };
	char settings[256];

	h_require_sluice();
	write_auth_file("\"" H_SUPERUSER "\" \"\"\n"
	                "\"" H_CAROL "\" \"" H_CAROL_PASSWORD "\"\n");
	for (size_t m = 0; m < 3; m++) {
		snprintf(settings, sizeof(settings), "%sauth_type = %s\n",
		         AUTH_FILE_SETTING, modes[m]);
		h_sluice_start(settings, NULL);
		empty_password_refused(H_SUPERUSER);
		PQfinish(h_connect(H_CAROL, NULL));
		h_finish();
	}
}

/* --- 10: the SCRAM keys a pool logs in with ----------------------------- */

/* role with a SCRAM password, made fresh for this test (others keep
 * alice's password as the harness set it). */
static void make_role(const char *role, const char *password)
{
	h_pg_exec("DROP ROLE IF EXISTS %s", role);
	h_pg_exec("SET password_encryption = 'scram-sha-256'");
	h_pg_exec("CREATE ROLE %s LOGIN PASSWORD '%s'", role, password);
}

/* A libpq login with any length of password (the harness's conninfo
 * buffer is shorter than the longest password). */
static PGconn *connect_with(const char *user, const char *dbname,
                            const char *password)
{
	char port[16];
	const char *keys[] = { "host", "port", "user", "dbname", "password",
	                       "sslmode", "gssencmode", "connect_timeout", NULL };
	const char *values[] = { "127.0.0.1", port, user, dbname, password,
	                         "disable", "disable", "10", NULL };

	snprintf(port, sizeof(port), "%d", h_port());
	return PQconnectdbParams(keys, values, 0);
}

/* Logs in and asks who we are on PostgreSQL; "" if the login failed, with
 * libpq's message in err. */
static void whoami(const char *user, const char *dbname, const char *password,
                   char *who, size_t len, char *err, size_t errlen)
{
	PGconn *conn = connect_with(user, dbname, password);
	PGresult *res;

	who[0] = '\0';
	snprintf(err, errlen, "%s", PQerrorMessage(conn));
	if (PQstatus(conn) == CONNECTION_OK) {
		res = PQexec(conn, "SELECT current_user");
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
			snprintf(who, len, "%s", PQgetvalue(res, 0, 0));
		else
			snprintf(err, errlen, "%s", PQerrorMessage(conn));
		PQclear(res);
	}
	PQfinish(conn);
}

/*
 * A forced user= entry shares one pool among users; the ClientKey it logs
 * in with must be its login user's, from a client of that user, not the
 * first client's. Before, bob's key was stored for the alice pool and its
 * server login failed.
 */
Test(login_security, forced_user_pool_logs_in_with_its_own_users_key)
{
	char *verifier;
	char *lines = NULL;
	char who[64], err[512];

	h_require_sluice();
	make_role("dora", "dora-secret");
	verifier = pg_secret("dora");
	cr_assert(asprintf(&lines, "\"dora\" \"%s\"\n\"" H_BOB "\" \""
	                   H_BOB_PASSWORD "\"\n", verifier) > 0);
	write_auth_file(lines);
	h_sluice_start(AUTH_FILE_SETTING "auth_type = scram-sha-256\n",
	               "forced = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME
	               " user=dora\n");
	/* dora logs in once: her key is known from then on. */
	whoami("dora", H_DBNAME, "dora-secret", who, sizeof(who), err, sizeof(err));
	cr_assert_str_eq(who, "dora", "%s", err);
	/* bob, on the entry that logs in as dora, in a pool of its own. */
	whoami(H_BOB, "forced", H_BOB_PASSWORD, who, sizeof(who), err, sizeof(err));
	cr_assert_str_eq(who, "dora", "%s", err);
	free(lines);
	free(verifier);
	h_finish();
}

/*
 * The password changes (PostgreSQL and the auth_file's verifier, then a
 * reload): the next client proves the new key and the pool logs in with
 * it. Before, the first client's key stayed for good and every new server
 * login failed.
 */
Test(login_security, pool_takes_the_new_key_after_a_password_change)
{
	char *verifier;
	char *lines = NULL;
	char who[64], err[512];

	h_require_sluice();
	make_role("dora", "dora-secret");
	verifier = pg_secret("dora");
	cr_assert(asprintf(&lines, "\"dora\" \"%s\"\n\"" H_ADMIN "\" \""
	                   H_ADMIN_PASSWORD "\"\n", verifier) > 0);
	write_auth_file(lines);
	h_sluice_start(AUTH_FILE_SETTING "auth_type = scram-sha-256\n"
	               "query_wait_timeout = 5\n", NULL);
	whoami("dora", H_DBNAME, "dora-secret", who, sizeof(who), err, sizeof(err));
	cr_assert_str_eq(who, "dora", "%s", err);

	h_pg_exec("SET password_encryption = 'scram-sha-256'");
	h_pg_exec("ALTER ROLE dora PASSWORD 'dora-new'");
	free(verifier);
	free(lines);
	verifier = pg_secret("dora");
	cr_assert(asprintf(&lines, "\"dora\" \"%s\"\n\"" H_ADMIN "\" \""
	                   H_ADMIN_PASSWORD "\"\n", verifier) > 0);
	write_auth_file(lines);
	kill(h_sluice_pid(), SIGHUP);
	cr_assert(h_log_wait("configuration reloaded", 5000));
	/* The reload closed the pool's idle servers: a new login is needed. */
	whoami("dora", H_DBNAME, "dora-new", who, sizeof(who), err, sizeof(err));
	cr_assert_str_eq(who, "dora", "%s", err);
	free(lines);
	free(verifier);
	h_finish();
}

/* --- 11: long passwords ----------------------------------------------- */

/*
 * PgBouncer takes passwords up to 2,047 bytes; so must sluice, from the
 * auth_file and from clients, in each auth_type, and logging in to
 * PostgreSQL with it (plain password, and SCRAM pass-through with the
 * verifier PostgreSQL made).
 */
Test(login_security, password_of_2047_bytes)
{
	const char *modes[] = { "plain", "md5", "scram-sha-256" };
	char *password = malloc(2048);
	char *verifier, *lines = NULL;
	char settings[256], who[64], err[512];

	h_require_sluice();
	for (int i = 0; i < 2047; i++)
		password[i] = (char)('a' + i % 26);
	password[2047] = '\0';
	make_role("longpw", password);
	verifier = pg_secret("longpw");
	for (int secret = 0; secret < 2; secret++) {
		free(lines);
		cr_assert(asprintf(&lines, "\"longpw\" \"%s\"\n",
		                   secret ? verifier : password) > 0);
		write_auth_file(lines);
		for (size_t m = secret ? 2 : 0; m < 3; m++) {
			snprintf(settings, sizeof(settings), "%sauth_type = %s\n",
			         AUTH_FILE_SETTING, modes[m]);
			h_sluice_start(settings, NULL);
			whoami("longpw", H_DBNAME, password, who, sizeof(who), err,
			       sizeof(err));
			cr_assert_str_eq(who, "longpw", "%s, %s: %s", modes[m],
			                 secret ? "verifier" : "plain", err);
			password[100] = '!';
			whoami("longpw", H_DBNAME, password, who, sizeof(who), err,
			       sizeof(err));
			password[100] = 'a' + 100 % 26;
			cr_assert_str_eq(who, "", "a wrong long password got in");
			h_finish();
		}
	}
	free(lines);
	free(verifier);
	free(password);
}

/* --- 7: log injection ------------------------------------------------- */

/*
 * A newline in the user, database, application_name or a parameter name
 * of a startup packet, in a database name PostgreSQL then quotes in its
 * error, or in an application_name sluice then sets on a server (a debug
 * line), must not start a line of sluice's log: each is escaped as \n.
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
	PGconn *conn;
	char *log;
	int fd;

	h_require_sluice();
	h_sluice_start("log_connections = 1\nlog_pooler_errors = 1\n"
	               "log_disconnections = 1\nverbose = 1\n",
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
	/* Logged in: application_name goes into sluice's SET on the server,
	 * which debug lines show. */
	conn = h_connect(H_ALICE, "application_name='app\nFORGED set'");
	cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
	PQfinish(conn);
	cr_assert(h_log_wait("app\\nFORGED set", 5000), "not logged");
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

/* A client socket with a small receive buffer, as a peer that does not
 * read would offer: what sluice writes then piles up on its side. */
static int small_window_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int size = 4096;

	cr_assert(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	sa.sin_port = htons(h_port());
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	return fd;
}

#define SSL_REQUEST 80877103u
#define GSSENC_REQUEST 80877104u

/*
 * 458,752 SSLRequests (3.5 MiB, the repro) in one write from a
 * peer that does not read: one 'N', then 08P01 and the close, and RSS stays
 * put. Before, every request got its 'N' (the issue saw RSS reach 427 MiB;
 * here the answers were refused by no rule, RSS grew by about 2 MiB).
 */
Test(login_security, repeated_ssl_request_is_refused)
{
	size_t count = 458752; /* 3.5 MiB, the repro */
	uint8_t *flood = malloc(count * 8);
	struct h_error err;
	long before, after;
	int fd;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	before = rss_kb(h_sluice_pid());
	for (size_t i = 0; i < count; i++)
		put_request(flood + 8 * i, SSL_REQUEST);
	fd = small_window_connect();
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
