/*
 * auth.h - md5 and SCRAM-SHA-256 computations, both sides, over OpenSSL.
 *
 * Pure functions and small state structs: no sockets, no logging. client.c
 * drives the server side of an exchange (sluice checks an application's
 * password), server.c the client side (sluice logs in to PostgreSQL).
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_MD5_LEN 35 /* "md5" + 32 hex digits, without the NUL */
#define AUTH_SCRAM_KEY_LEN 32 /* SHA-256 output: ClientKey, ServerKey, ... */
#define AUTH_SCRAM_SALT_LEN 16 /* bytes, as PostgreSQL makes them */
#define AUTH_MOCK_KEY_LEN 32  /* the per-process secret of auth_mock_digest */

/*
 * Iteration counts accepted in a verifier or a server-first-message. PBKDF2
 * runs on the event loop: 1,000,000 costs about 0.2 s per login, so a larger
 * count is treated as hostile or a mistake (PostgreSQL's default is 4096).
 */
#define AUTH_SCRAM_MAX_ITERATIONS 1000000

enum auth_secret_kind {
	AUTH_SECRET_PLAIN,
	AUTH_SECRET_MD5,    /* "md5" + hex(md5(password || user)) */
	AUTH_SECRET_SCRAM,  /* "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>" */
};

/*
 * Which form a stored secret (auth_file or db password) has, decided as
 * PostgreSQL does: "md5" + 32 lowercase hex is md5, a well-formed verifier is
 * SCRAM, anything else (a malformed verifier too) is a plain password.
 */
enum auth_secret_kind auth_secret_kind(const char *secret);

/* out = "md5" + hex(md5(password || user)), NUL terminated. */
void auth_md5_secret(const char *password, const char *user,
                     char out[AUTH_MD5_LEN + 1]);

/*
 * The response to AuthenticationMD5Password(salt):
 * "md5" + hex(md5(hex-part-of(md5_secret) || salt)). secret may be plain
 * (it is hashed with user first) or already "md5...". 0, or -1 (and out is
 * "") if secret is a SCRAM verifier, which cannot answer an md5 challenge.
 */
int auth_md5_response(const char *secret, const char *user,
                      const uint8_t salt[4], char out[AUTH_MD5_LEN + 1]);

/* True if response is the right answer for salt given the stored secret
 * (plain or md5; false for a SCRAM verifier). Constant-time comparison. */
bool auth_md5_check(const char *secret, const char *user,
                    const uint8_t salt[4], const char *response);

/*
 * HMAC-SHA-256(key, purpose ":" user) into out; 0 or -1. key is a random
 * per-process secret, so the digest is stable for a name but cannot be
 * guessed: PostgreSQL's scram_mock_salt idea. It answers an unknown user
 * as a known one would be answered (the SCRAM salt, purpose "salt"; which
 * challenge md5 mode sends, "kind") without telling the two apart.
 */
int auth_mock_digest(const uint8_t key[AUTH_MOCK_KEY_LEN], const char *purpose,
                     const char *user, uint8_t out[AUTH_SCRAM_KEY_LEN]);

/* Fills buf with len cryptographically random bytes; 0 or -1. */
int auth_random_bytes(uint8_t *buf, size_t len);

/* --- SCRAM-SHA-256, server side (sluice verifies a client) --- */

struct scram_server {
	uint8_t stored_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
	char *salt_b64;           /* owned */
	int iterations;
	char *client_first_bare;  /* owned, for the AuthMessage */
	char *server_first;       /* owned; freed once the final is checked */
	char *nonce;              /* client nonce + server nonce, owned */
	char cbind_flag;          /* 'n' or 'y': the gs2 header c= must repeat */
	/* ClientKey recovered from a valid proof, for PgBouncer-style SCRAM
	 * pass-through: with server_key it logs in via
	 * auth_scram_client_final_keys() without knowing the password. */
	uint8_t client_key[AUTH_SCRAM_KEY_LEN];
	bool has_client_key;      /* set only by a successful server_final */
	bool mock;                /* no secret: every proof fails */
};

/*
 * Starts an exchange from the client-first-message (the SASLInitialResponse
 * data). secret is plain (salt and 4096 iterations make its keys, one
 * PBKDF2), a SCRAM verifier (its own salt), or NULL for a mock exchange
 * (salt and 4096 iterations are shown, no key is derived, the proof
 * fails); an md5 secret cannot do SCRAM and fails. salt: AUTH_SCRAM_SALT_LEN
 * bytes, used unless secret is a verifier; give the same salt for the same
 * user (auth_mock_digest) so that nothing tells the three cases apart.
 * On 0, *server_first is a malloc'd NUL-terminated server-first-message
 * for AuthenticationSASLContinue; the caller frees it. -1 on malformed
 * input or unusable secret; the state then needs only auth_scram_server_free.
 */
int auth_scram_server_first(struct scram_server *s, const char *secret,
                            const uint8_t salt[AUTH_SCRAM_SALT_LEN],
                            const char *client_first, size_t len,
                            char **server_first);

/*
 * For tests only: auth_scram_server_first() with a fixed server nonce part
 * (printable ASCII, no ',') instead of a random one, to replay published
 * exchanges.
 */
int auth_scram_server_first_with_nonce(struct scram_server *s,
                                       const char *secret,
                                       const uint8_t salt[AUTH_SCRAM_SALT_LEN],
                                       const char *client_first, size_t len,
                                       const char *server_nonce,
                                       char **server_first);

/*
 * Checks the client-final-message. On 0 (proof valid), *server_final is a
 * malloc'd "v=..." for AuthenticationSASLFinal and s->client_key is set.
 * -1: wrong password or bad message. One attempt per exchange: a second
 * call fails.
 */
int auth_scram_server_final(struct scram_server *s, const char *client_final,
                            size_t len, char **server_final);

/* Frees what s owns; safe on a zeroed or half-used struct, and twice. */
void auth_scram_server_free(struct scram_server *s);

/* --- SCRAM-SHA-256, client side (sluice logs in to PostgreSQL) --- */

struct scram_client {
	char *client_nonce;        /* owned */
	char *client_first_bare;   /* owned */
	char *server_first;        /* owned */
	uint8_t server_key[AUTH_SCRAM_KEY_LEN]; /* to check the server-final */
	char *auth_message;        /* owned; set once the client-final is made */
};

/*
 * Makes the client-first-message ("n,,n=,r=<nonce>"); *out is malloc'd,
 * caller frees. 0 or -1.
 */
int auth_scram_client_first(struct scram_client *c, char **out);

/*
 * For tests only: the client-first-message with a fixed nonce (printable
 * ASCII, no ',') and user name (NULL or "" for libpq's "n=,"; no ',' or
 * '='), to replay published exchanges such as RFC 7677's.
 */
int auth_scram_client_first_with_nonce(struct scram_client *c,
                                       const char *user, const char *nonce,
                                       char **out);

/*
 * From the server-first-message and the password (plain text; an md5 secret
 * or a SCRAM verifier cannot log in, -1), makes the client-final-message in
 * *out (malloc'd). -1 on a malformed message, a nonce that does not extend
 * ours or an iteration count outside 1..AUTH_SCRAM_MAX_ITERATIONS.
 */
int auth_scram_client_final(struct scram_client *c, const char *password,
                            const char *server_first, size_t len, char **out);

/*
 * As auth_scram_client_final(), but logs in with the ClientKey and ServerKey
 * instead of a password: how PgBouncer logs in with a SCRAM secret from
 * userlist.txt or from a client's pass-through proof. Works only if the
 * server's salt and iteration count are those the keys were made with;
 * otherwise the server rejects the proof. The keys are copied.
 */
int auth_scram_client_final_keys(struct scram_client *c,
                                 const uint8_t client_key[AUTH_SCRAM_KEY_LEN],
                                 const uint8_t server_key[AUTH_SCRAM_KEY_LEN],
                                 const char *server_first, size_t len,
                                 char **out);

/* Checks the server-final-message ("v=..."): 0 if the server proved it
 * knows the password, -1 otherwise. */
int auth_scram_client_verify(struct scram_client *c, const char *server_final,
                             size_t len);

/* Frees what c owns; safe on a zeroed struct, and twice. */
void auth_scram_client_free(struct scram_client *c);

#endif
