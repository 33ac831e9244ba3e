/*
 * test_auth.c - md5 and SCRAM-SHA-256 against published and independently
 * computed vectors, round trips, and malformed messages.
 *
 * Where a value is not from a published source, the comment says how it was
 * computed outside sluice (coreutils md5sum, Python's hashlib, PostgreSQL).
 */
#include <criterion/criterion.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"

/* RFC 7677 section 3: user "user", password "pencil". */
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_PART "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE RFC_CLIENT_NONCE RFC_SERVER_PART
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_CLIENT_FINAL "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/*
 * The verifier PostgreSQL would store for "pencil" with the RFC's salt and
 * 4096 iterations, computed with Python's hashlib:
 *   sp = pbkdf2_hmac("sha256", b"pencil", b64decode(RFC_SALT), 4096)
 *   ck = hmac(sp, "Client Key"); sk = hmac(sp, "Server Key")
 *   "SCRAM-SHA-256$4096:" + RFC_SALT + "$" + b64(sha256(ck)) + ":" + b64(sk)
 */
#define RFC_KEYS \
	"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define RFC_VERIFIER "SCRAM-SHA-256$4096:" RFC_SALT RFC_KEYS

/* ck and sk from the same Python computation, in hex. */
static const uint8_t rfc_client_key[AUTH_SCRAM_KEY_LEN] = {
	0xa6, 0x0f, 0xc9, 0x23, 0xd6, 0x7e, 0x86, 0x44, 0xa9, 0x2d, 0x16,
	0xb9, 0x6e, 0xda, 0x5e, 0xf4, 0x65, 0x6b, 0x0c, 0x72, 0x5c, 0x48,
	0x43, 0x74, 0xbe, 0x25, 0x53, 0x55, 0x76, 0x99, 0x6e, 0x8b,
};
static const uint8_t rfc_server_key[AUTH_SCRAM_KEY_LEN] = {
	0xc1, 0xf3, 0xcb, 0xc1, 0xc1, 0x3a, 0x9d, 0x35, 0xa1, 0x4c, 0x09,
	0x90, 0xee, 0xd9, 0x76, 0x29, 0xea, 0x22, 0x58, 0x63, 0xe5, 0x66,
	0xa4, 0x31, 0x4a, 0xb9, 0x9f, 0x3f, 0x00, 0xe5, 0xd9, 0xd5,
};

/*
 * From PostgreSQL 15.18: CREATE ROLE x PASSWORD 'secret' with
 * password_encryption = 'scram-sha-256', then SELECT rolpassword FROM
 * pg_authid (scratch instance, since removed).
 */
#define PG15_VERIFIER \
	"SCRAM-SHA-256$4096:ArXmZauWunOxmWYagSDbhQ==" \
	"$J2s7WUjnZgwGc/cFuF+nao1kZ9rTL0RdZ9rZ4dlcBIM=" \
	":2WQ5KfrAgJRFOJ06GOtR2CGr/pKlKJ8Xm2VcdE2yKTU="

/*
 * printf 'foobar' | md5sum -> 3858f62230ac3c915f300c664312c63f; PostgreSQL
 * 15 stored the same for CREATE ROLE bar PASSWORD 'foo' (md5 encryption).
 */
#define MD5_FOO_BAR "md53858f62230ac3c915f300c664312c63f"

/* Python: "md5" + md5(b"3858f6...c63f" + bytes([1, 2, 3, 4])).hexdigest() */
#define MD5_FOO_BAR_SALTED "md56e4f0b50f7277feb74acbf2a7734c9cb"

static const uint8_t md5_salt[4] = { 1, 2, 3, 4 };

/* RFC_SALT decoded: the salt a plain or absent secret is given. */
static const uint8_t TEST_SALT[AUTH_SCRAM_SALT_LEN] = {
	0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
	0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81,
};

/* --- helpers --- */

/* Runs the server side up to server-first; asserts it succeeded. */
static void server_start(struct scram_server *s, const char *secret,
                         const char *client_first)
{
	char *server_first = NULL;

	cr_assert_eq(auth_scram_server_first(s, secret, TEST_SALT, client_first,
	                                     strlen(client_first),
	                                     &server_first), 0);
	free(server_first);
}

/* A client-final for s from the RFC exchange shape, to poke at the server
 * with edited messages; returns auth_scram_server_final's result. */
static int server_final_str(struct scram_server *s, const char *msg)
{
	char *server_final = NULL;
	int rc = auth_scram_server_final(s, msg, strlen(msg), &server_final);

	if (rc != 0)
		cr_assert_null(server_final);
	free(server_final);
	return rc;
}

/* RFC server state after its server-first, ready for a client-final. */
static void rfc_server(struct scram_server *s)
{
	char *server_first = NULL;

	cr_assert_eq(auth_scram_server_first_with_nonce(
		s, RFC_VERIFIER, TEST_SALT, RFC_CLIENT_FIRST,
		strlen(RFC_CLIENT_FIRST), RFC_SERVER_PART, &server_first), 0);
	cr_assert_str_eq(server_first, RFC_SERVER_FIRST);
	free(server_first);
}

/* RFC client state after its client-first; returns client_final's result
 * for the given server-first and password. */
static int rfc_client_final(struct scram_client *c, const char *server_first,
                            const char *password)
{
	char *first = NULL, *final = NULL;
	int rc;

	cr_assert_eq(auth_scram_client_first_with_nonce(c, "user",
	                                                RFC_CLIENT_NONCE,
	                                                &first), 0);
	free(first);
	rc = auth_scram_client_final(c, password, server_first,
	                             strlen(server_first), &final);
	if (rc != 0)
		cr_assert_null(final);
	free(final);
	return rc;
}

/*
 * A whole exchange with random nonces: the client logs in with password
 * against a server holding secret. Returns 0 only if both sides accept.
 */
static int round_trip(const char *secret, const char *password)
{
	struct scram_server s = { 0 };
	struct scram_client c = { 0 };
	char *first = NULL, *server_first = NULL, *final = NULL, *sfinal = NULL;
	int rc = -1;

	cr_assert_eq(auth_scram_client_first(&c, &first), 0);
	cr_assert_eq(auth_scram_server_first(&s, secret, TEST_SALT, first,
	                                     strlen(first), &server_first), 0);
	cr_assert_eq(auth_scram_client_final(&c, password, server_first,
	                                     strlen(server_first), &final), 0);
	if (auth_scram_server_final(&s, final, strlen(final), &sfinal) == 0)
		rc = auth_scram_client_verify(&c, sfinal, strlen(sfinal));
	free(first);
	free(server_first);
	free(final);
	free(sfinal);
	auth_scram_server_free(&s);
	auth_scram_client_free(&c);
	return rc;
}

/*
 * "<without_proof>,p=<proof>" with a proof made straight with OpenSSL from
 * the RFC ClientKey: valid for whatever without_proof says, so a server
 * check other than the proof's must be what rejects it. Caller frees.
 */
static char *rfc_client_final_for(const char *without_proof)
{
	char auth_message[512], proof_b64[45], *out;
	uint8_t stored_key[32], proof[32];
	unsigned int len = 0;

	snprintf(auth_message, sizeof(auth_message), "%s,%s,%s",
	         RFC_CLIENT_FIRST + 3, RFC_SERVER_FIRST, without_proof);
	cr_assert_eq(EVP_Digest(rfc_client_key, 32, stored_key, NULL,
	                        EVP_sha256(), NULL), 1);
	cr_assert_not_null(HMAC(EVP_sha256(), stored_key, 32,
	                        (const unsigned char *)auth_message,
	                        strlen(auth_message), proof, &len));
	for (int i = 0; i < 32; i++)
		proof[i] ^= rfc_client_key[i];
	EVP_EncodeBlock((unsigned char *)proof_b64, proof, 32);
	out = malloc(strlen(without_proof) + 4 + sizeof(proof_b64));
	cr_assert_not_null(out);
	sprintf(out, "%s,p=%s", without_proof, proof_b64);
	return out;
}

/* --- md5 --- */

Test(md5, secret_matches_md5sum_and_postgres)
{
	char out[AUTH_MD5_LEN + 1];

	auth_md5_secret("foo", "bar", out);
	cr_assert_str_eq(out, MD5_FOO_BAR);
}

Test(md5, response_from_plain_and_md5_secret)
{
	char out[AUTH_MD5_LEN + 1];

	cr_assert_eq(auth_md5_response("foo", "bar", md5_salt, out), 0);
	cr_assert_str_eq(out, MD5_FOO_BAR_SALTED);
	cr_assert_eq(auth_md5_response(MD5_FOO_BAR, "bar", md5_salt, out), 0);
	cr_assert_str_eq(out, MD5_FOO_BAR_SALTED);
}

Test(md5, scram_secret_cannot_answer)
{
	char out[AUTH_MD5_LEN + 1];

	cr_assert_eq(auth_md5_response(RFC_VERIFIER, "user", md5_salt, out), -1);
	cr_assert_str_eq(out, "");
	cr_assert_not(auth_md5_check(RFC_VERIFIER, "user", md5_salt, ""));
}

Test(md5, check_accepts_right_answer)
{
	cr_assert(auth_md5_check("foo", "bar", md5_salt, MD5_FOO_BAR_SALTED));
	cr_assert(auth_md5_check(MD5_FOO_BAR, "bar", md5_salt,
	                         MD5_FOO_BAR_SALTED));
}

Test(md5, check_rejects_wrong_answers)
{
	const uint8_t other_salt[4] = { 1, 2, 3, 5 };
	char wrong[AUTH_MD5_LEN + 1];

	auth_md5_response("fob", "bar", md5_salt, wrong);
	cr_assert_not(auth_md5_check("foo", "bar", md5_salt, wrong));
	cr_assert_not(auth_md5_check("foo", "baz", md5_salt,
	                             MD5_FOO_BAR_SALTED));
	cr_assert_not(auth_md5_check("foo", "bar", other_salt,
	                             MD5_FOO_BAR_SALTED));
	/* The stored secret itself is not an answer (pass-the-hash). */
	cr_assert_not(auth_md5_check("foo", "bar", md5_salt, MD5_FOO_BAR));
	cr_assert_not(auth_md5_check("foo", "bar", md5_salt,
	                             MD5_FOO_BAR_SALTED "0"));
	cr_assert_not(auth_md5_check("foo", "bar", md5_salt, ""));
	cr_assert_not(auth_md5_check("foo", "bar", md5_salt, NULL));
}

/* --- secret kinds --- */

Test(secret, kinds_as_postgres_decides)
{
	cr_assert_eq(auth_secret_kind("foo"), AUTH_SECRET_PLAIN);
	cr_assert_eq(auth_secret_kind(""), AUTH_SECRET_PLAIN);
	cr_assert_eq(auth_secret_kind(MD5_FOO_BAR), AUTH_SECRET_MD5);
	/* PostgreSQL takes only lowercase hex as md5. */
	cr_assert_eq(auth_secret_kind("md53858F62230AC3C915F300C664312C63F"),
	             AUTH_SECRET_PLAIN);
	cr_assert_eq(auth_secret_kind(MD5_FOO_BAR "0"), AUTH_SECRET_PLAIN);
	cr_assert_eq(auth_secret_kind(RFC_VERIFIER), AUTH_SECRET_SCRAM);
	cr_assert_eq(auth_secret_kind(PG15_VERIFIER), AUTH_SECRET_SCRAM);
}

/* Like PostgreSQL, a malformed verifier is taken as a plain password. */
Test(secret, malformed_verifiers_are_plain)
{
	static const char *const bad[] = {
		"SCRAM-SHA-256$0:" RFC_SALT RFC_KEYS,
		"SCRAM-SHA-256$99999999999:" RFC_SALT RFC_KEYS,
		"SCRAM-SHA-256$-4096:" RFC_SALT RFC_KEYS,
		"SCRAM-SHA-256$4096:" RFC_KEYS,                  /* no salt */
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=" RFC_KEYS,
		"SCRAM-SHA-256$4096:" RFC_SALT
		"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4q="    /* 31 bytes */
		":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:" RFC_SALT
		"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=", /* no ServerKey */
		"SCRAM-SHA-256$4096:" RFC_SALT RFC_KEYS " ",
		"SCRAM-SHA-1$4096:" RFC_SALT RFC_KEYS,
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(auth_secret_kind(bad[i]), AUTH_SECRET_PLAIN,
		             "%s", bad[i]);
}

/* --- SCRAM: RFC 7677 section 3 --- */

Test(scram_rfc7677, client_side)
{
	struct scram_client c = { 0 };
	char *first = NULL, *final = NULL;

	cr_assert_eq(auth_scram_client_first_with_nonce(&c, "user",
	                                                RFC_CLIENT_NONCE,
	                                                &first), 0);
	cr_assert_str_eq(first, RFC_CLIENT_FIRST);
	cr_assert_eq(auth_scram_client_final(&c, "pencil", RFC_SERVER_FIRST,
	                                     strlen(RFC_SERVER_FIRST),
	                                     &final), 0);
	cr_assert_str_eq(final, RFC_CLIENT_FINAL);
	cr_assert_eq(auth_scram_client_verify(&c, RFC_SERVER_FINAL,
	                                      strlen(RFC_SERVER_FINAL)), 0);
	free(first);
	free(final);
	auth_scram_client_free(&c);
	auth_scram_client_free(&c);  /* twice is safe */
}

Test(scram_rfc7677, server_side)
{
	struct scram_server s = { 0 };
	char *server_final = NULL;

	rfc_server(&s);
	cr_assert_eq(auth_scram_server_final(&s, RFC_CLIENT_FINAL,
	                                     strlen(RFC_CLIENT_FINAL),
	                                     &server_final), 0);
	cr_assert_str_eq(server_final, RFC_SERVER_FINAL);
	free(server_final);
	auth_scram_server_free(&s);
	auth_scram_server_free(&s);
}

/* The ClientKey kept for pass-through is HMAC(SaltedPassword, "Client
 * Key"), computed here straight with OpenSSL and checked against Python. */
Test(scram_rfc7677, server_keeps_client_key)
{
	struct scram_server s = { 0 };
	uint8_t salt[16], salted[32], client_key[32];
	unsigned int len = 0;

	cr_assert_eq(EVP_DecodeBlock(salt, (const unsigned char *)RFC_SALT,
	                             24), 18);  /* 16 bytes + 2 of padding */
	cr_assert_eq(PKCS5_PBKDF2_HMAC("pencil", 6, salt, 16, 4096,
	                               EVP_sha256(), 32, salted), 1);
	cr_assert_not_null(HMAC(EVP_sha256(), salted, 32,
	                        (const unsigned char *)"Client Key", 10,
	                        client_key, &len));
	cr_assert_eq(memcmp(client_key, rfc_client_key, 32), 0);

	rfc_server(&s);
	cr_assert_not(s.has_client_key);
	cr_assert_eq(server_final_str(&s, RFC_CLIENT_FINAL), 0);
	cr_assert(s.has_client_key);
	cr_assert_eq(memcmp(s.client_key, client_key, 32), 0);
	cr_assert_eq(memcmp(s.server_key, rfc_server_key, 32), 0);
	auth_scram_server_free(&s);
}

Test(scram_rfc7677, client_logs_in_with_keys)
{
	struct scram_client c = { 0 };
	char *first = NULL, *final = NULL;

	cr_assert_eq(auth_scram_client_first_with_nonce(&c, "user",
	                                                RFC_CLIENT_NONCE,
	                                                &first), 0);
	cr_assert_eq(auth_scram_client_final_keys(&c, rfc_client_key,
	                                          rfc_server_key,
	                                          RFC_SERVER_FIRST,
	                                          strlen(RFC_SERVER_FIRST),
	                                          &final), 0);
	cr_assert_str_eq(final, RFC_CLIENT_FINAL);
	cr_assert_eq(auth_scram_client_verify(&c, RFC_SERVER_FINAL,
	                                      strlen(RFC_SERVER_FINAL)), 0);
	free(first);
	free(final);
	auth_scram_client_free(&c);
}

Test(scram_rfc7677, wrong_password_fails_both_sides)
{
	struct scram_server s = { 0 };
	struct scram_client c = { 0 };
	const char *wrong_final =
		"c=biws,r=" RFC_NONCE
		",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=";

	/* A client with the wrong password makes a different proof... */
	cr_assert_eq(rfc_client_final(&c, RFC_SERVER_FIRST, "pencil2"), 0);
	/* ...and rejects the real server's signature. */
	cr_assert_eq(auth_scram_client_verify(&c, RFC_SERVER_FINAL,
	                                      strlen(RFC_SERVER_FINAL)), -1);
	rfc_server(&s);
	cr_assert_eq(server_final_str(&s, wrong_final), -1);
	cr_assert_not(s.has_client_key);
	/* One attempt per exchange: the right proof now fails too. */
	cr_assert_eq(server_final_str(&s, RFC_CLIENT_FINAL), -1);
	auth_scram_client_free(&c);
	auth_scram_server_free(&s);
}

/* --- SCRAM: round trips with random nonces --- */

Test(scram_round_trip, plain_secret)
{
	cr_assert_eq(round_trip("correct horse", "correct horse"), 0);
	cr_assert_eq(round_trip("correct horse", "correct horsE"), -1);
	cr_assert_eq(round_trip("", ""), 0);
}

Test(scram_round_trip, postgres15_verifier)
{
	cr_assert_eq(round_trip(PG15_VERIFIER, "secret"), 0);
	cr_assert_eq(round_trip(PG15_VERIFIER, "Secret"), -1);
	cr_assert_eq(round_trip(PG15_VERIFIER, ""), -1);
}

Test(scram_round_trip, rfc_verifier)
{
	cr_assert_eq(round_trip(RFC_VERIFIER, "pencil"), 0);
	cr_assert_eq(round_trip(RFC_VERIFIER, "pencil "), -1);
}

/* Non-ASCII passwords are raw bytes (no SASLprep) on both sides. */
Test(scram_round_trip, non_ascii_password)
{
	cr_assert_eq(round_trip("p\xc3\xa4ssw\xc3\xb6rd", "p\xc3\xa4ssw\xc3\xb6rd"),
	             0);
	cr_assert_eq(round_trip("p\xc3\xa4ssw\xc3\xb6rd", "passwort"), -1);
}

Test(scram_round_trip, nonces_are_fresh)
{
	struct scram_client a = { 0 }, b = { 0 };
	char *first_a = NULL, *first_b = NULL;

	cr_assert_eq(auth_scram_client_first(&a, &first_a), 0);
	cr_assert_eq(auth_scram_client_first(&b, &first_b), 0);
	cr_assert_eq(strncmp(first_a, "n,,n=,r=", 8), 0);
	cr_assert_eq(strlen(first_a), 8 + 24);
	cr_assert_str_neq(first_a, first_b);
	free(first_a);
	free(first_b);
	auth_scram_client_free(&a);
	auth_scram_client_free(&b);
}

/*
 * PgBouncer-style pass-through: sluice verifies an application against a
 * verifier, then logs in to a server holding the same verifier with the
 * recovered ClientKey, never knowing the password.
 */
Test(scram_round_trip, pass_through_with_recovered_client_key)
{
	struct scram_server app = { 0 }, postgres = { 0 };
	struct scram_client app_client = { 0 }, sluice = { 0 };
	char *first = NULL, *server_first = NULL, *final = NULL, *sfinal = NULL;

	cr_assert_eq(auth_scram_client_first(&app_client, &first), 0);
	server_start(&app, PG15_VERIFIER, first);
	free(first);
	cr_assert_eq(auth_scram_client_final(&app_client, "secret",
	                                     app.server_first,
	                                     strlen(app.server_first),
	                                     &final), 0);
	cr_assert_eq(server_final_str(&app, final), 0);
	free(final);
	cr_assert(app.has_client_key);

	cr_assert_eq(auth_scram_client_first(&sluice, &first), 0);
	cr_assert_eq(auth_scram_server_first(&postgres, PG15_VERIFIER, TEST_SALT, first,
	                                     strlen(first), &server_first), 0);
	cr_assert_eq(auth_scram_client_final_keys(&sluice, app.client_key,
	                                          app.server_key, server_first,
	                                          strlen(server_first),
	                                          &final), 0);
	cr_assert_eq(auth_scram_server_final(&postgres, final, strlen(final),
	                                     &sfinal), 0);
	cr_assert_eq(auth_scram_client_verify(&sluice, sfinal,
	                                      strlen(sfinal)), 0);
	free(first);
	free(server_first);
	free(final);
	free(sfinal);
	auth_scram_server_free(&app);
	auth_scram_server_free(&postgres);
	auth_scram_client_free(&app_client);
	auth_scram_client_free(&sluice);
}

/* --- SCRAM: malformed input, server side --- */

Test(scram_malformed, client_first)
{
	static const char *const bad[] = {
		"",
		"n,,",
		"n,,n=user",                        /* missing r= */
		"n,,r=" RFC_CLIENT_NONCE,           /* missing n= */
		"n,,n=user,r=",                     /* empty nonce */
		"n,,n=user,r=" RFC_CLIENT_NONCE ",",  /* trailing comma */
		"n,,n=user,r=" RFC_CLIENT_NONCE ",1=x", /* not an attribute */
		"n,,n=user,r=abc\x7f",              /* not printable */
		"n,,m=ext,n=user,r=" RFC_CLIENT_NONCE, /* mandatory extension */
		"p=tls-server-end-point,,n=,r=" RFC_CLIENT_NONCE,
		"n,a=alice,n=,r=" RFC_CLIENT_NONCE,  /* authzid */
		"x,,n=,r=" RFC_CLIENT_NONCE,
		"n,n=,r=" RFC_CLIENT_NONCE,
		"n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct scram_server s = { 0 };
		char *out = NULL;

		cr_assert_eq(auth_scram_server_first(&s, "pencil", TEST_SALT, bad[i],
		                                     strlen(bad[i]), &out), -1,
		             "accepted %s", bad[i]);
		cr_assert_null(out);
		auth_scram_server_free(&s);
	}
}

Test(scram_malformed, client_first_with_nul_byte)
{
	struct scram_server s = { 0 };
	const char msg[] = "n,,n=user,r=abc\0def";
	char *out = NULL;

	cr_assert_eq(auth_scram_server_first(&s, "pencil", TEST_SALT, msg, sizeof(msg) - 1,
	                                     &out), -1);
	auth_scram_server_free(&s);
}

Test(scram_malformed, accepts_y_flag_and_extensions)
{
	struct scram_server s = { 0 };
	char *out = NULL;

	server_start(&s, "pencil", "y,,n=anyone,r=abc,x=ext");
	auth_scram_server_free(&s);
	/* An md5 secret cannot make SCRAM keys. */
	cr_assert_eq(auth_scram_server_first(&s, MD5_FOO_BAR, TEST_SALT, RFC_CLIENT_FIRST,
	                                     strlen(RFC_CLIENT_FIRST), &out), -1);
	auth_scram_server_free(&s);
}

Test(scram_malformed, client_final)
{
	static const char *const bad[] = {
		"",
		"c=biws,r=" RFC_NONCE,                         /* no proof */
		"r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=eSws,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=cCws,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=biw,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=bi!s,r=" RFC_NONCE ",p=" RFC_PROOF,
		"c=biws,r=" RFC_CLIENT_NONCE ",p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE "x,p=" RFC_PROOF,
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And=Q=",
		/* 31 bytes */
		"c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndV==",
		"c=biws,r=" RFC_NONCE ",p= HzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",x=1",
		"c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",",
		"c=biws,r=" RFC_NONCE ",px=" RFC_PROOF,
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct scram_server s = { 0 };

		rfc_server(&s);
		cr_assert_eq(server_final_str(&s, bad[i]), -1, "accepted %s",
		             bad[i]);
		cr_assert_not(s.has_client_key);
		auth_scram_server_free(&s);
	}
}

/* r= must be exactly the nonce sent, even with a proof valid for it. */
Test(scram_malformed, client_final_nonce_must_match)
{
	static const char *const without_proof[] = {
		"c=biws,r=" RFC_NONCE "x",
		"c=biws,r=" RFC_CLIENT_NONCE,
		"c=biws,r=",
	};
	char *msg = rfc_client_final_for("c=biws,r=" RFC_NONCE);

	cr_assert_str_eq(msg, RFC_CLIENT_FINAL);  /* the helper is right */
	free(msg);
	for (size_t i = 0; i < 3; i++) {
		struct scram_server s = { 0 };

		msg = rfc_client_final_for(without_proof[i]);
		rfc_server(&s);
		cr_assert_eq(server_final_str(&s, msg), -1, "accepted %s", msg);
		free(msg);
		auth_scram_server_free(&s);
	}
}

/* c= must repeat the gs2 header actually sent: "y,," is "eSws". */
Test(scram_malformed, channel_binding_flag_must_match)
{
	struct scram_server s = { 0 };
	struct scram_client c = { 0 };
	char *first = NULL, *final = NULL;
	char *y_first;

	cr_assert_eq(auth_scram_client_first(&c, &first), 0);
	y_first = strdup(first);
	y_first[0] = 'y';
	server_start(&s, "pencil", y_first);
	cr_assert_eq(auth_scram_client_final(&c, "pencil", s.server_first,
	                                     strlen(s.server_first), &final),
	             0);
	/* Our client says c=biws ("n,,") but the header was "y,,". */
	cr_assert_eq(strncmp(final, "c=biws,", 7), 0);
	cr_assert_eq(server_final_str(&s, final), -1);
	free(first);
	free(y_first);
	free(final);
	auth_scram_server_free(&s);
	auth_scram_client_free(&c);
}

Test(scram_malformed, out_of_order_calls)
{
	struct scram_server s = { 0 };
	struct scram_client c = { 0 };
	char *out = NULL;

	cr_assert_eq(server_final_str(&s, RFC_CLIENT_FINAL), -1);
	cr_assert_eq(auth_scram_client_verify(&c, RFC_SERVER_FINAL,
	                                      strlen(RFC_SERVER_FINAL)), -1);
	cr_assert_eq(auth_scram_client_final(&c, "pencil", RFC_SERVER_FIRST,
	                                     strlen(RFC_SERVER_FIRST), &out), -1);
	rfc_server(&s);
	cr_assert_eq(auth_scram_server_first(&s, "pencil", TEST_SALT, RFC_CLIENT_FIRST,
	                                     strlen(RFC_CLIENT_FIRST), &out), -1);
	cr_assert_null(out);
	auth_scram_server_free(&s);
	auth_scram_client_free(&c);
}

/* --- SCRAM: malformed input, client side --- */

Test(scram_malformed, server_first)
{
	static const char *const bad[] = {
		"",
		"s=" RFC_SALT ",i=4096",                         /* missing r= */
		"r=" RFC_NONCE ",i=4096",                        /* missing s= */
		"r=" RFC_NONCE ",s=" RFC_SALT,                   /* missing i= */
		"r=" RFC_CLIENT_NONCE ",s=" RFC_SALT ",i=4096",  /* not extended */
		"r=rOprNGfwEbeRWgbNEkqX" RFC_SERVER_PART ",s=" RFC_SALT ",i=4096",
		"r=x" RFC_NONCE ",s=" RFC_SALT ",i=4096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",
		"r=" RFC_NONCE ",s=W22ZaJ0SNY7soEsUEjb6g!==,i=4096",
		"r=" RFC_NONCE ",s=====,i=4096",
		"r=" RFC_NONCE ",s=,i=4096",
		"r=" RFC_NONCE ",s=" RFC_SALT ",i=0",
		"r=" RFC_NONCE ",s=" RFC_SALT ",i=-1",
		"r=" RFC_NONCE ",s=" RFC_SALT ",i=",
		"r=" RFC_NONCE ",s=" RFC_SALT ",i=4096x",
		"r=" RFC_NONCE ",s=" RFC_SALT ",i=1000001",
		"r=" RFC_NONCE ",s=" RFC_SALT ",i=99999999999999999999",
		"r=" RFC_NONCE ",s=" RFC_SALT ",i=4096,x=ext",
		"r=" RFC_NONCE ",s=" RFC_SALT ",i=4096,",
		"m=ext,r=" RFC_NONCE ",s=" RFC_SALT ",i=4096",
		"e=other-error",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct scram_client c = { 0 };

		cr_assert_eq(rfc_client_final(&c, bad[i], "pencil"), -1,
		             "accepted %s", bad[i]);
		auth_scram_client_free(&c);
	}
}

Test(scram_malformed, stored_secret_is_not_a_password)
{
	struct scram_client c = { 0 };

	cr_assert_eq(rfc_client_final(&c, RFC_SERVER_FIRST, RFC_VERIFIER), -1);
	auth_scram_client_free(&c);
	cr_assert_eq(rfc_client_final(&c, RFC_SERVER_FIRST, MD5_FOO_BAR), -1);
	auth_scram_client_free(&c);
}

Test(scram_malformed, server_final)
{
	static const char *const bad[] = {
		"",
		"v=",
		"e=invalid-proof",
		/* One data bit off; "G5=" would only flip a padding bit, which
		 * decodes to the same bytes. */
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G8=",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=1",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,",
		"x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	};
	struct scram_client c = { 0 };

	cr_assert_eq(rfc_client_final(&c, RFC_SERVER_FIRST, "pencil"), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(auth_scram_client_verify(&c, bad[i], strlen(bad[i])),
		             -1, "accepted %s", bad[i]);
	cr_assert_eq(auth_scram_client_verify(&c, RFC_SERVER_FINAL,
	                                      strlen(RFC_SERVER_FINAL)), 0);
	auth_scram_client_free(&c);
}

Test(scram_malformed, test_entry_points_check_their_input)
{
	struct scram_client c = { 0 };
	struct scram_server s = { 0 };
	char *out = NULL;

	cr_assert_eq(auth_scram_client_first_with_nonce(&c, "a,b", "abc", &out),
	             -1);
	cr_assert_eq(auth_scram_client_first_with_nonce(&c, NULL, "a,c", &out),
	             -1);
	cr_assert_eq(auth_scram_client_first_with_nonce(&c, NULL, "", &out), -1);
	cr_assert_eq(auth_scram_server_first_with_nonce(
		&s, "pencil", TEST_SALT, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
		"bad nonce", &out), -1);
	cr_assert_null(out);
	auth_scram_client_free(&c);
	auth_scram_server_free(&s);
}

/* --- SCRAM: mock exchanges and the salt of a plain password --- */

/* A plain password shows the salt it is given: with the RFC's salt, the
 * RFC's exchange, byte for byte. */
Test(scram_mock, plain_password_uses_the_given_salt)
{
	struct scram_server s = { 0 };
	char *server_first = NULL, *server_final = NULL;

	cr_assert_eq(auth_scram_server_first_with_nonce(
		&s, "pencil", TEST_SALT, RFC_CLIENT_FIRST,
		strlen(RFC_CLIENT_FIRST), RFC_SERVER_PART, &server_first), 0);
	cr_assert_str_eq(server_first, RFC_SERVER_FIRST);
	cr_assert_eq(auth_scram_server_final(&s, RFC_CLIENT_FINAL,
	                                     strlen(RFC_CLIENT_FINAL),
	                                     &server_final), 0);
	cr_assert_str_eq(server_final, RFC_SERVER_FINAL);
	free(server_first);
	free(server_final);
	auth_scram_server_free(&s);
}

/* No secret: the server-first a verifier with that salt would give, and
 * then even the right proof fails. */
Test(scram_mock, looks_like_a_verifier_and_always_fails)
{
	struct scram_server s = { 0 };
	char *server_first = NULL, *server_final = NULL;

	cr_assert_eq(auth_scram_server_first_with_nonce(
		&s, NULL, TEST_SALT, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST),
		RFC_SERVER_PART, &server_first), 0);
	cr_assert_str_eq(server_first, RFC_SERVER_FIRST);
	cr_assert_eq(auth_scram_server_final(&s, RFC_CLIENT_FINAL,
	                                     strlen(RFC_CLIENT_FINAL),
	                                     &server_final), -1);
	cr_assert_null(server_final);
	cr_assert_not(s.has_client_key);
	free(server_first);
	auth_scram_server_free(&s);
}

/* HMAC-SHA-256(key, "purpose:user"), checked against OpenSSL directly:
 * stable for a name, different for another name, purpose or key. */
Test(scram_mock, digest_is_keyed_per_name_and_purpose)
{
	uint8_t key[AUTH_MOCK_KEY_LEN] = { 7 };
	uint8_t a[AUTH_SCRAM_KEY_LEN], b[AUTH_SCRAM_KEY_LEN];
	uint8_t expected[AUTH_SCRAM_KEY_LEN];
	unsigned int len = 0;

	HMAC(EVP_sha256(), key, sizeof(key), (const uint8_t *)"salt:alice", 10,
	     expected, &len);
	cr_assert_eq(auth_mock_digest(key, "salt", "alice", a), 0);
	cr_assert_eq(memcmp(a, expected, sizeof(a)), 0);
	cr_assert_eq(auth_mock_digest(key, "salt", "alice", b), 0);
	cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
	cr_assert_eq(auth_mock_digest(key, "salt", "alicE", b), 0);
	cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
	cr_assert_eq(auth_mock_digest(key, "kind", "alice", b), 0);
	cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
	key[1] = 1;
	cr_assert_eq(auth_mock_digest(key, "salt", "alice", b), 0);
	cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
}
