/*
 * auth.c - md5 and SCRAM-SHA-256 exchanges over OpenSSL's libcrypto.
 *
 * Owns the arithmetic and the parsing of the SASL messages for both sides:
 * sluice checking an application (struct scram_server) and sluice logging
 * in to PostgreSQL (struct scram_client). No sockets, no logging, no other
 * sluice module: every input is untrusted bytes and every failure is -1.
 *
 * SASLprep: PostgreSQL applies SASLprep (RFC 4013) to a password before
 * hashing it. For ASCII passwords that is the identity, so we skip it and use
 * every password as raw bytes. For a non-ASCII password this is what
 * PostgreSQL does when SASLprep fails (invalid UTF-8, prohibited code
 * points); a password SASLprep would normalize will not match a verifier
 * PostgreSQL made from it.
 */
#include "auth.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define SCRAM_PREFIX "SCRAM-SHA-256$"
#define SCRAM_ITERATIONS 4096    /* PostgreSQL's default */
#define SCRAM_NONCE_RAW_LEN 18   /* random bytes per nonce, as libpq */

/* A verifier split into its parts; salt points into the secret string. */
struct scram_verifier {
	int iterations;
	const char *salt_b64;  /* not NUL terminated at salt_len */
	size_t salt_len;       /* characters of base64 */
	uint8_t stored_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
};

/* The useful parts of a server-first-message, pointing into buf. */
struct server_first {
	char *buf;             /* owned NUL-terminated copy, split in place */
	const char *nonce;     /* client nonce + server nonce */
	uint8_t *salt;         /* owned, decoded */
	size_t salt_len;
	int iterations;
};

/* --- strings and base64 --- */

__attribute__((format(printf, 1, 2)))
static char *str_printf(const char *fmt, ...)
{
	va_list ap;
	char *out;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0)
		return NULL;
	out = malloc((size_t)len + 1);
	if (out == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(out, (size_t)len + 1, fmt, ap);
	va_end(ap);
	return out;
}

/*
 * A NUL-terminated copy of a message from the wire, or NULL if it holds a
 * NUL (no SCRAM attribute may) or is too long to print with "%.*s".
 */
static char *copy_message(const char *msg, size_t len)
{
	char *copy;

	if (msg == NULL || len > INT_MAX || memchr(msg, '\0', len) != NULL)
		return NULL;
	copy = malloc(len + 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, msg, len);
	copy[len] = '\0';
	return copy;
}

/* malloc'd padded base64 of buf, or NULL. */
static char *b64_encode(const uint8_t *buf, size_t len)
{
	char *out;

	if (len > INT_MAX / 2)
		return NULL;
	out = malloc((len + 2) / 3 * 4 + 1);
	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, buf, (int)len);
	return out;
}

static bool b64_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
}

/*
 * Checks text is padded base64 (whole quads, alphabet only, '=' only at the
 * end) and returns how many '=' end it, or -1. EVP_DecodeBlock would skip
 * whitespace and count padding as zero bytes, so we validate first and let
 * callers subtract the padding. Unused low bits of the last character are
 * ignored, as most decoders do.
 */
static int b64_padding(const char *text, size_t len)
{
	size_t pad = 0;

	if (len == 0 || len % 4 != 0 || len > INT_MAX)
		return -1;
	while (pad < 2 && text[len - 1 - pad] == '=')
		pad++;
	for (size_t i = 0; i < len - pad; i++) {
		if (!b64_char(text[i]))
			return -1;
	}
	return (int)pad;
}

/* Decodes text into out (3 * len / 4 bytes of room); length or -1. */
static int b64_decode(const char *text, size_t len, uint8_t *out)
{
	int pad = b64_padding(text, len);
	int n;

	if (pad < 0)
		return -1;
	n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
	return n < 0 ? -1 : n - pad;
}

/* Decodes exactly one 32-byte key; 0 or -1. */
static int b64_decode_key(const char *text, size_t len,
                          uint8_t key[AUTH_SCRAM_KEY_LEN])
{
	uint8_t buf[AUTH_SCRAM_KEY_LEN + 1]; /* 44 characters give 33 bytes */
	int n;

	if (len != 44)
		return -1;
	n = b64_decode(text, len, buf);
	if (n == AUTH_SCRAM_KEY_LEN)
		memcpy(key, buf, AUTH_SCRAM_KEY_LEN);
	OPENSSL_cleanse(buf, sizeof(buf));
	return n == AUTH_SCRAM_KEY_LEN ? 0 : -1;
}

/* --- small parsers --- */

/* "4096" -> 4096; only digits, 1..AUTH_SCRAM_MAX_ITERATIONS. */
static int parse_iterations(const char *text, size_t len, int *out)
{
	long value = 0;

	if (len == 0 || len > 9)  /* 9 digits cannot overflow a long */
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		value = value * 10 + (text[i] - '0');
	}
	if (value < 1 || value > AUTH_SCRAM_MAX_ITERATIONS)
		return -1;
	*out = (int)value;
	return 0;
}

/* RFC 5802: a nonce is printable ASCII other than ','. */
static bool nonce_valid(const char *nonce)
{
	if (nonce == NULL || *nonce == '\0')
		return false;
	for (; *nonce != '\0'; nonce++) {
		if (*nonce < 0x21 || *nonce > 0x7e || *nonce == ',')
			return false;
	}
	return true;
}

/*
 * Splits the attribute "<name>=value" off the front of *cursor, a mutable
 * string, and returns its value; name 0 accepts any letter (extensions).
 * *cursor then points past the ',' or is NULL at the end. NULL if the
 * front is not that attribute.
 */
static char *next_attr(char **cursor, char name)
{
	char *attr = *cursor;
	char *comma;

	if (attr == NULL || attr[0] == '\0' || attr[1] != '=')
		return NULL;
	if (name != 0 ? attr[0] != name :
	    !((attr[0] >= 'a' && attr[0] <= 'z') ||
	      (attr[0] >= 'A' && attr[0] <= 'Z')))
		return NULL;
	comma = strchr(attr, ',');
	if (comma != NULL)
		*comma = '\0';
	*cursor = comma != NULL ? comma + 1 : NULL;
	return attr + 2;
}

/* --- hashes --- */

static int sha256(const uint8_t *in, size_t len,
                  uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	return EVP_Digest(in, len, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

static int hmac_sha256(const uint8_t *key, size_t key_len, const char *msg,
                       uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	unsigned int out_len = 0;

	if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg,
	         strlen(msg), out, &out_len) == NULL)
		return -1;
	return out_len == AUTH_SCRAM_KEY_LEN ? 0 : -1;
}

/* ClientKey and ServerKey from a password: Hi() is PBKDF2-HMAC-SHA-256. */
static int keys_from_password(const char *password, const uint8_t *salt,
                              size_t salt_len, int iterations,
                              uint8_t client_key[AUTH_SCRAM_KEY_LEN],
                              uint8_t server_key[AUTH_SCRAM_KEY_LEN])
{
	uint8_t salted[AUTH_SCRAM_KEY_LEN];
	int rc = -1;

	if (strlen(password) > INT_MAX || salt_len > INT_MAX)
		return -1;
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt,
	                      (int)salt_len, iterations, EVP_sha256(),
	                      AUTH_SCRAM_KEY_LEN, salted) == 1 &&
	    hmac_sha256(salted, sizeof(salted), "Client Key", client_key) == 0 &&
	    hmac_sha256(salted, sizeof(salted), "Server Key", server_key) == 0)
		rc = 0;
	OPENSSL_cleanse(salted, sizeof(salted));
	return rc;
}

int auth_mock_digest(const uint8_t key[AUTH_MOCK_KEY_LEN], const char *purpose,
                     const char *user, uint8_t out[AUTH_SCRAM_KEY_LEN])
{
	char *msg = str_printf("%s:%s", purpose, user);
	int rc;

	if (msg == NULL)
		return -1;
	rc = hmac_sha256(key, AUTH_MOCK_KEY_LEN, msg, out);
	free(msg);
	return rc;
}

int auth_random_bytes(uint8_t *buf, size_t len)
{
	if (len > INT_MAX)
		return -1;
	return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

/* A fresh nonce: 18 random bytes in base64, 24 characters, malloc'd. */
static char *make_nonce(void)
{
	uint8_t raw[SCRAM_NONCE_RAW_LEN];

	if (auth_random_bytes(raw, sizeof(raw)) < 0)
		return NULL;
	return b64_encode(raw, sizeof(raw));
}

/* --- md5 --- */

/* out = hex(md5(a || b)); 0 or -1 (no MD5 in a FIPS-only libcrypto). */
static int md5_hex(const void *a, size_t a_len, const void *b, size_t b_len,
                   char out[33])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[16];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, a, a_len) == 1 &&
	     EVP_DigestUpdate(ctx, b, b_len) == 1 &&
	     EVP_DigestFinal_ex(ctx, digest, NULL) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0xf];
	}
	out[32] = '\0';
	return 0;
}

void auth_md5_secret(const char *password, const char *user,
                     char out[AUTH_MD5_LEN + 1])
{
	memcpy(out, "md5", 3);
	/* An empty result never matches a response: failure is safe. */
	if (md5_hex(password, strlen(password), user, strlen(user), out + 3) < 0)
		out[0] = '\0';
}

int auth_md5_response(const char *secret, const char *user,
                      const uint8_t salt[4], char out[AUTH_MD5_LEN + 1])
{
	char hashed[AUTH_MD5_LEN + 1];
	const char *md5_secret = secret;
	int rc;

	out[0] = '\0';
	switch (auth_secret_kind(secret)) {
	case AUTH_SECRET_SCRAM:
		return -1;
	case AUTH_SECRET_PLAIN:
		auth_md5_secret(secret, user, hashed);
		if (hashed[0] == '\0')
			return -1;
		md5_secret = hashed;
		break;
	case AUTH_SECRET_MD5:
		break;
	}
	memcpy(out, "md5", 3);
	rc = md5_hex(md5_secret + 3, 32, salt, 4, out + 3);
	if (rc < 0)
		out[0] = '\0';
	OPENSSL_cleanse(hashed, sizeof(hashed));
	return rc;
}

bool auth_md5_check(const char *secret, const char *user,
                    const uint8_t salt[4], const char *response)
{
	char expected[AUTH_MD5_LEN + 1];
	bool match;

	/* The length is no secret: every right answer has the same one. */
	if (response == NULL || strlen(response) != AUTH_MD5_LEN)
		return false;
	if (auth_md5_response(secret, user, salt, expected) < 0)
		return false;
	match = CRYPTO_memcmp(expected, response, AUTH_MD5_LEN) == 0;
	OPENSSL_cleanse(expected, sizeof(expected));
	return match;
}

/* --- secrets --- */

/* "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>" -> v; 0 or -1. */
static int parse_verifier(const char *secret, struct scram_verifier *v)
{
	const char *iter, *colon, *dollar, *keys, *colon2;

	if (strncmp(secret, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) != 0)
		return -1;
	iter = secret + strlen(SCRAM_PREFIX);
	colon = strchr(iter, ':');
	if (colon == NULL ||
	    parse_iterations(iter, (size_t)(colon - iter), &v->iterations) < 0)
		return -1;
	v->salt_b64 = colon + 1;
	dollar = strchr(v->salt_b64, '$');
	if (dollar == NULL)
		return -1;
	v->salt_len = (size_t)(dollar - v->salt_b64);
	if (b64_padding(v->salt_b64, v->salt_len) < 0)
		return -1;
	keys = dollar + 1;
	colon2 = strchr(keys, ':');
	if (colon2 == NULL ||
	    b64_decode_key(keys, (size_t)(colon2 - keys), v->stored_key) < 0 ||
	    b64_decode_key(colon2 + 1, strlen(colon2 + 1), v->server_key) < 0)
		return -1;
	return 0;
}

enum auth_secret_kind auth_secret_kind(const char *secret)
{
	struct scram_verifier v;
	bool scram;

	if (strncmp(secret, "md5", 3) == 0 && strlen(secret) == AUTH_MD5_LEN &&
	    strspn(secret + 3, "0123456789abcdef") == AUTH_MD5_LEN - 3)
		return AUTH_SECRET_MD5;
	scram = parse_verifier(secret, &v) == 0;
	OPENSSL_cleanse(&v, sizeof(v));
	return scram ? AUTH_SECRET_SCRAM : AUTH_SECRET_PLAIN;
}

/* A plain password as a verifier with the caller's salt and the default
 * iterations. */
static int server_keys_from_password(struct scram_server *s,
                                     const char *password,
                                     const uint8_t salt[AUTH_SCRAM_SALT_LEN])
{
	uint8_t client_key[AUTH_SCRAM_KEY_LEN];
	int rc = -1;

	s->iterations = SCRAM_ITERATIONS;
	if (keys_from_password(password, salt, AUTH_SCRAM_SALT_LEN,
	                       s->iterations, client_key, s->server_key) < 0 ||
	    sha256(client_key, sizeof(client_key), s->stored_key) < 0)
		goto out;
	s->salt_b64 = b64_encode(salt, AUTH_SCRAM_SALT_LEN);
	rc = s->salt_b64 != NULL ? 0 : -1;
out:
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return rc;
}

/* A mock exchange: the salt and iterations a real verifier would show, no
 * keys (they stay zero) and no key derivation; the proof check fails. */
static int server_mock(struct scram_server *s,
                       const uint8_t salt[AUTH_SCRAM_SALT_LEN])
{
	s->mock = true;
	s->iterations = SCRAM_ITERATIONS;
	s->salt_b64 = b64_encode(salt, AUTH_SCRAM_SALT_LEN);
	return s->salt_b64 != NULL ? 0 : -1;
}

/* Fills the keys, salt and iterations of s from a plain or SCRAM secret,
 * or makes it a mock exchange when secret is NULL. */
static int server_load_secret(struct scram_server *s, const char *secret,
                              const uint8_t salt[AUTH_SCRAM_SALT_LEN])
{
	struct scram_verifier v;

	if (secret == NULL)
		return server_mock(s, salt);
	switch (auth_secret_kind(secret)) {
	case AUTH_SECRET_MD5:
		return -1;  /* md5(password || user) cannot make SCRAM keys */
	case AUTH_SECRET_PLAIN:
		return server_keys_from_password(s, secret, salt);
	case AUTH_SECRET_SCRAM:
		break;
	}
	if (parse_verifier(secret, &v) < 0)
		return -1;
	s->iterations = v.iterations;
	memcpy(s->stored_key, v.stored_key, sizeof(s->stored_key));
	memcpy(s->server_key, v.server_key, sizeof(s->server_key));
	s->salt_b64 = strndup(v.salt_b64, v.salt_len);
	OPENSSL_cleanse(&v, sizeof(v));
	return s->salt_b64 != NULL ? 0 : -1;
}

/* --- SCRAM, server side --- */

/*
 * gs2-header "n,," or "y,," then client-first-message-bare:
 * "n=<user>,r=<nonce>[,ext...]". Sets s->cbind_flag and
 * s->client_first_bare; *nonce points into msg, which is split in place.
 */
static int parse_client_first(struct scram_server *s, char *msg, char **nonce)
{
	char *cursor;

	/* 'p' asks for channel binding we do not offer (no -PLUS); an authzid
	 * ("n,a=...,") PostgreSQL does not support either. */
	if ((msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',' || msg[2] != ',')
		return -1;
	s->cbind_flag = msg[0];
	cursor = msg + 3;
	s->client_first_bare = strdup(cursor);
	if (s->client_first_bare == NULL)
		return -1;
	/* PostgreSQL ignores the user name here (it came in the startup
	 * packet), so any value is accepted; 'm' fails as unsupported. */
	if (next_attr(&cursor, 'n') == NULL)
		return -1;
	*nonce = next_attr(&cursor, 'r');
	if (!nonce_valid(*nonce))
		return -1;
	while (cursor != NULL) {
		if (next_attr(&cursor, 0) == NULL)
			return -1;
	}
	return 0;
}

int auth_scram_server_first_with_nonce(struct scram_server *s,
                                       const char *secret,
                                       const uint8_t salt[AUTH_SCRAM_SALT_LEN],
                                       const char *client_first, size_t len,
                                       const char *server_nonce,
                                       char **server_first)
{
	char *msg = NULL;
	char *client_nonce;

	*server_first = NULL;
	/* A used state would leak what it holds; a bad nonce cannot be sent. */
	if (s->client_first_bare != NULL || s->salt_b64 != NULL ||
	    s->nonce != NULL || !nonce_valid(server_nonce))
		return -1;
	msg = copy_message(client_first, len);
	if (msg == NULL || parse_client_first(s, msg, &client_nonce) < 0 ||
	    server_load_secret(s, secret, salt) < 0)
		goto fail;
	s->nonce = str_printf("%s%s", client_nonce, server_nonce);
	if (s->nonce == NULL)
		goto fail;
	s->server_first = str_printf("r=%s,s=%s,i=%d", s->nonce, s->salt_b64,
	                             s->iterations);
	if (s->server_first == NULL)
		goto fail;
	*server_first = strdup(s->server_first);
	if (*server_first == NULL)
		goto fail;
	free(msg);
	return 0;
fail:
	free(msg);
	return -1;
}

int auth_scram_server_first(struct scram_server *s, const char *secret,
                            const uint8_t salt[AUTH_SCRAM_SALT_LEN],
                            const char *client_first, size_t len,
                            char **server_first)
{
	char *server_nonce = make_nonce();
	int rc;

	*server_first = NULL;
	if (server_nonce == NULL)
		return -1;
	rc = auth_scram_server_first_with_nonce(s, secret, salt, client_first,
	                                        len, server_nonce, server_first);
	free(server_nonce);
	return rc;
}

/* c= must be base64 of exactly the gs2 header the client-first used. */
static int check_channel_binding(const struct scram_server *s,
                                 const char *c_b64)
{
	const char expected[3] = { s->cbind_flag, ',', ',' };
	uint8_t decoded[sizeof(expected) + 1];
	size_t len = strlen(c_b64);

	if (len != 4 || b64_decode(c_b64, len, decoded) != sizeof(expected))
		return -1;
	return memcmp(decoded, expected, sizeof(expected)) == 0 ? 0 : -1;
}

/*
 * "c=<gs2 b64>,r=<nonce>[,ext...],p=<proof>", the proof last. msg is split
 * in place; *without_proof_len is where ",p=" starts in the original.
 */
static int parse_client_final(const struct scram_server *s, char *msg,
                              size_t *without_proof_len,
                              uint8_t proof[AUTH_SCRAM_KEY_LEN])
{
	char *cursor = msg;
	char *channel = next_attr(&cursor, 'c');
	char *nonce = next_attr(&cursor, 'r');
	char *attr = cursor;
	char *value;

	if (channel == NULL || check_channel_binding(s, channel) < 0 ||
	    nonce == NULL || strcmp(nonce, s->nonce) != 0)
		return -1;
	while (attr != NULL && attr[0] != 'p') {
		if (next_attr(&cursor, 0) == NULL)
			return -1;
		attr = cursor;
	}
	value = next_attr(&cursor, 'p');
	if (value == NULL || cursor != NULL)
		return -1;
	*without_proof_len = (size_t)(attr - 1 - msg);
	return b64_decode_key(value, strlen(value), proof);
}

/* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must be
 * StoredKey. On success the ClientKey is kept for pass-through. */
static int verify_proof(struct scram_server *s, const char *auth_message,
                        const uint8_t proof[AUTH_SCRAM_KEY_LEN])
{
	uint8_t signature[AUTH_SCRAM_KEY_LEN];
	uint8_t client_key[AUTH_SCRAM_KEY_LEN];
	uint8_t stored_key[AUTH_SCRAM_KEY_LEN];
	int rc = -1;

	if (s->mock ||
	    hmac_sha256(s->stored_key, sizeof(s->stored_key), auth_message,
	                signature) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(client_key); i++)
		client_key[i] = proof[i] ^ signature[i];
	if (sha256(client_key, sizeof(client_key), stored_key) == 0 &&
	    CRYPTO_memcmp(stored_key, s->stored_key, sizeof(stored_key)) == 0) {
		memcpy(s->client_key, client_key, sizeof(client_key));
		s->has_client_key = true;
		rc = 0;
	}
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return rc;
}

/* "v=" + base64(HMAC(ServerKey, AuthMessage)), malloc'd, or NULL. */
static char *make_server_final(const uint8_t server_key[AUTH_SCRAM_KEY_LEN],
                               const char *auth_message)
{
	uint8_t signature[AUTH_SCRAM_KEY_LEN];
	char *b64, *out;

	if (hmac_sha256(server_key, AUTH_SCRAM_KEY_LEN, auth_message,
	                signature) < 0)
		return NULL;
	b64 = b64_encode(signature, sizeof(signature));
	out = b64 != NULL ? str_printf("v=%s", b64) : NULL;
	free(b64);
	return out;
}

int auth_scram_server_final(struct scram_server *s, const char *client_final,
                            size_t len, char **server_final)
{
	uint8_t proof[AUTH_SCRAM_KEY_LEN];
	size_t without_proof_len;
	char *msg, *auth_message = NULL;
	int rc = -1;

	*server_final = NULL;
	if (s->server_first == NULL)
		return -1;  /* no server-first yet, or the one attempt is spent */
	msg = copy_message(client_final, len);
	if (msg == NULL ||
	    parse_client_final(s, msg, &without_proof_len, proof) < 0)
		goto out;
	auth_message = str_printf("%s,%s,%.*s", s->client_first_bare,
	                          s->server_first, (int)without_proof_len,
	                          client_final);
	if (auth_message == NULL || verify_proof(s, auth_message, proof) < 0)
		goto out;
	*server_final = make_server_final(s->server_key, auth_message);
	rc = *server_final != NULL ? 0 : -1;
out:
	free(msg);
	free(auth_message);
	free(s->server_first);  /* one attempt: a retry finds no state */
	s->server_first = NULL;
	return rc;
}

void auth_scram_server_free(struct scram_server *s)
{
	free(s->salt_b64);
	free(s->client_first_bare);
	free(s->server_first);
	free(s->nonce);
	/* Zeroing makes a second call harmless and drops the keys. */
	OPENSSL_cleanse(s, sizeof(*s));
}

/* --- SCRAM, client side --- */

int auth_scram_client_first_with_nonce(struct scram_client *c,
                                       const char *user, const char *nonce,
                                       char **out)
{
	*out = NULL;
	if (user == NULL)
		user = "";
	/* We send no user name in real use, so we need not escape ',' '='. */
	if (c->client_nonce != NULL || !nonce_valid(nonce) ||
	    strpbrk(user, ",=") != NULL)
		return -1;
	c->client_nonce = strdup(nonce);
	if (c->client_nonce == NULL)
		return -1;
	c->client_first_bare = str_printf("n=%s,r=%s", user, nonce);
	if (c->client_first_bare == NULL)
		return -1;
	*out = str_printf("n,,%s", c->client_first_bare);
	return *out != NULL ? 0 : -1;
}

int auth_scram_client_first(struct scram_client *c, char **out)
{
	char *nonce = make_nonce();
	int rc;

	*out = NULL;
	if (nonce == NULL)
		return -1;
	/* libpq sends "n=," too: PostgreSQL takes the user from startup. */
	rc = auth_scram_client_first_with_nonce(c, NULL, nonce, out);
	free(nonce);
	return rc;
}

static void server_first_free(struct server_first *sf)
{
	free(sf->buf);
	free(sf->salt);
}

/* "r=<nonce>,s=<salt>,i=<iterations>" into sf; the nonce must extend ours. */
static int parse_server_first(const struct scram_client *c,
                              struct server_first *sf)
{
	char *cursor = sf->buf;
	char *salt, *iterations;
	size_t ours = strlen(c->client_nonce);
	int salt_len;

	sf->nonce = next_attr(&cursor, 'r');
	if (!nonce_valid(sf->nonce) || strlen(sf->nonce) <= ours ||
	    memcmp(sf->nonce, c->client_nonce, ours) != 0)
		return -1;
	salt = next_attr(&cursor, 's');
	iterations = next_attr(&cursor, 'i');
	/* Like libpq, no extensions: they would have to be understood. */
	if (salt == NULL || iterations == NULL || cursor != NULL ||
	    parse_iterations(iterations, strlen(iterations),
	                     &sf->iterations) < 0)
		return -1;
	sf->salt = malloc(strlen(salt) / 4 * 3 + 1);
	if (sf->salt == NULL)
		return -1;
	salt_len = b64_decode(salt, strlen(salt), sf->salt);
	if (salt_len <= 0)
		return -1;
	sf->salt_len = (size_t)salt_len;
	return 0;
}

/* Checks the state and parses the server-first-message, keeping a copy. */
static int read_server_first(struct scram_client *c, const char *msg,
                             size_t len, struct server_first *sf)
{
	memset(sf, 0, sizeof(*sf));
	if (c->client_first_bare == NULL || c->server_first != NULL)
		return -1;  /* no client-first yet, or a second server-first */
	sf->buf = copy_message(msg, len);
	if (sf->buf == NULL)
		return -1;
	c->server_first = strdup(sf->buf);  /* before the split in place */
	if (c->server_first == NULL)
		return -1;
	return parse_server_first(c, sf);
}

/*
 * "c=biws,r=<nonce>,p=<proof>" from the keys. Only on success are the
 * AuthMessage and ServerKey recorded for auth_scram_client_verify(), so a
 * failed call cannot leave a state that verifies a zero-key signature.
 */
static int make_client_final(struct scram_client *c,
                             const uint8_t client_key[AUTH_SCRAM_KEY_LEN],
                             const uint8_t server_key[AUTH_SCRAM_KEY_LEN],
                             const char *nonce, char **out)
{
	uint8_t stored_key[AUTH_SCRAM_KEY_LEN];
	uint8_t proof[AUTH_SCRAM_KEY_LEN];
	char *without_proof = str_printf("c=biws,r=%s", nonce);
	char *auth_message = NULL, *proof_b64 = NULL;

	*out = NULL;
	if (without_proof == NULL)
		return -1;
	auth_message = str_printf("%s,%s,%s", c->client_first_bare,
	                          c->server_first, without_proof);
	if (auth_message == NULL ||
	    sha256(client_key, AUTH_SCRAM_KEY_LEN, stored_key) < 0 ||
	    hmac_sha256(stored_key, sizeof(stored_key), auth_message,
	                proof) < 0)
		goto out;
	for (size_t i = 0; i < sizeof(proof); i++)
		proof[i] ^= client_key[i];
	proof_b64 = b64_encode(proof, sizeof(proof));
	*out = proof_b64 != NULL ?
	       str_printf("%s,p=%s", without_proof, proof_b64) : NULL;
	if (*out != NULL) {
		memcpy(c->server_key, server_key, sizeof(c->server_key));
		c->auth_message = auth_message;
		auth_message = NULL;
	}
out:
	OPENSSL_cleanse(stored_key, sizeof(stored_key));
	free(without_proof);
	free(auth_message);
	free(proof_b64);
	return *out != NULL ? 0 : -1;
}

int auth_scram_client_final_keys(struct scram_client *c,
                                 const uint8_t client_key[AUTH_SCRAM_KEY_LEN],
                                 const uint8_t server_key[AUTH_SCRAM_KEY_LEN],
                                 const char *server_first, size_t len,
                                 char **out)
{
	struct server_first sf;
	int rc = -1;

	*out = NULL;
	if (read_server_first(c, server_first, len, &sf) == 0)
		rc = make_client_final(c, client_key, server_key, sf.nonce, out);
	server_first_free(&sf);
	return rc;
}

int auth_scram_client_final(struct scram_client *c, const char *password,
                            const char *server_first, size_t len, char **out)
{
	struct server_first sf;
	uint8_t client_key[AUTH_SCRAM_KEY_LEN];
	uint8_t server_key[AUTH_SCRAM_KEY_LEN];
	int rc = -1;

	*out = NULL;
	/* A stored secret is not the password it was made from. */
	if (auth_secret_kind(password) != AUTH_SECRET_PLAIN)
		return -1;
	if (read_server_first(c, server_first, len, &sf) == 0 &&
	    keys_from_password(password, sf.salt, sf.salt_len, sf.iterations,
	                       client_key, server_key) == 0)
		rc = make_client_final(c, client_key, server_key, sf.nonce, out);
	server_first_free(&sf);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	return rc;
}

int auth_scram_client_verify(struct scram_client *c, const char *server_final,
                             size_t len)
{
	uint8_t expected[AUTH_SCRAM_KEY_LEN];
	uint8_t received[AUTH_SCRAM_KEY_LEN];
	char *msg, *cursor, *value;
	int rc = -1;

	if (c->auth_message == NULL)
		return -1;  /* no client-final sent */
	msg = copy_message(server_final, len);
	cursor = msg;
	/* "e=<error>" is a refusal: next_attr(.., 'v') rejects it. */
	value = msg != NULL ? next_attr(&cursor, 'v') : NULL;
	if (value != NULL && cursor == NULL &&
	    b64_decode_key(value, strlen(value), received) == 0 &&
	    hmac_sha256(c->server_key, sizeof(c->server_key), c->auth_message,
	                expected) == 0 &&
	    CRYPTO_memcmp(expected, received, sizeof(expected)) == 0)
		rc = 0;
	free(msg);
	return rc;
}

void auth_scram_client_free(struct scram_client *c)
{
	free(c->client_nonce);
	free(c->client_first_bare);
	free(c->server_first);
	free(c->auth_message);
	OPENSSL_cleanse(c, sizeof(*c));
}
