/*
 * fuzz_scram.c - SCRAM-SHA-256 messages, both sides, and SCRAM verifiers.
 *
 * Input: a mode byte, then two messages split at the first NUL (the first
 * cannot hold one anyway: a SCRAM message with a NUL is refused whole).
 * Mode 0 plays sluice checking a client: the first message is the
 * client-first-message, the second the client-final-message, against the
 * RFC 7677 verifier (user "user", password "pencil") with the RFC's server
 * nonce, so the published exchange is a valid input. Mode 1 plays sluice
 * logging in to a server: the first message is the server-first-message
 * answered with the RFC's ClientKey and ServerKey, the second the
 * server-final-message. Mode 2 reads the first message as a stored secret
 * (auth_file, db password) and starts an exchange with it. No mode derives
 * keys from a password: PBKDF2's 4096 rounds would cost a millisecond a run.
 *
 * Invariants: a server-first sluice sends is r=<client nonce + ours>,
 * s=<the verifier's salt>,i=<its iterations>; a client-final accepted
 * leaves the ClientKey whose hash is the StoredKey and a v= of 44
 * base64 characters; one attempt per exchange; a client-final sluice makes
 * is c=biws,r=<the server's nonce>,p=<44 characters>; a secret classified
 * SCRAM starts an exchange, an md5 one cannot.
 */
#include "fuzz.h"

#include <openssl/evp.h>

#include "auth.h"

#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_PART "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_VERIFIER "SCRAM-SHA-256$4096:" RFC_SALT \
	"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

/* The RFC exchange's ClientKey and ServerKey (see test/unit/test_auth.c). */
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

/* The two messages of an input; second may hold NULs. */
struct input {
	const char *first;
	size_t first_len;
	const char *second;
	size_t second_len;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The client nonce in a client-first sluice accepted: after ",r=". */
static size_t client_nonce_len(const char *client_first_bare)
{
	const char *r = strstr(client_first_bare, ",r=");
	const char *end;

	FUZZ_ASSERT(r != NULL);
	end = strchr(r + 3, ',');
	return end ? (size_t)(end - r - 3) : strlen(r + 3);
}

static void check_server_first(const struct scram_server *s,
                               const char *server_first)
{
	size_t cn = client_nonce_len(s->client_first_bare);
	size_t size = strlen(s->nonce) + strlen(s->salt_b64) + 32;
	char *want = malloc(size);

	FUZZ_ASSERT(want != NULL);
	FUZZ_ASSERT(strlen(s->nonce) == cn + strlen(RFC_SERVER_PART));
	FUZZ_ASSERT(strcmp(s->nonce + cn, RFC_SERVER_PART) == 0);
	snprintf(want, size, "r=%s,s=%s,i=%d", s->nonce, s->salt_b64,
	         s->iterations);
	FUZZ_ASSERT(strcmp(server_first, want) == 0);
	free(want);
}

static void check_accepted(const struct scram_server *s, const char *final)
{
	uint8_t hashed[AUTH_SCRAM_KEY_LEN];

	FUZZ_ASSERT(s->has_client_key);
	FUZZ_ASSERT(EVP_Digest(s->client_key, AUTH_SCRAM_KEY_LEN, hashed,
	                       NULL, EVP_sha256(), NULL) == 1);
	FUZZ_ASSERT(memcmp(hashed, s->stored_key, AUTH_SCRAM_KEY_LEN) == 0);
	FUZZ_ASSERT(strncmp(final, "v=", 2) == 0 && strlen(final) == 46);
}

/* The one call that starts a server-side exchange, with the RFC's server
 * nonce so the published client-final is valid. */
/* The salt sluice would show an unknown user (a mock exchange); a real
 * verifier's own salt replaces it. */
static const uint8_t mock_salt[AUTH_SCRAM_SALT_LEN] = {
	0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
	0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81,
};

static int start_exchange(struct scram_server *s, const char *secret,
                          const char *client_first, size_t len, char **out)
{
	return auth_scram_server_first_with_nonce(s, secret, mock_salt,
	                                          client_first, len,
	                                          RFC_SERVER_PART, out);
}

/* sluice as the server: the client's first and final messages. */
static void server_side(const struct input *in)
{
	struct scram_server s = { 0 };
	char *first = NULL, *final = NULL;
	int rc;

	rc = start_exchange(&s, RFC_VERIFIER, in->first, in->first_len, &first);
	FUZZ_ASSERT((rc == 0) == (first != NULL));
	if (rc == 0) {
		check_server_first(&s, first);
		rc = auth_scram_server_final(&s, in->second, in->second_len,
		                             &final);
		FUZZ_ASSERT((rc == 0) == (final != NULL));
		FUZZ_ASSERT(rc == 0 || !s.has_client_key);
		if (rc == 0)
			check_accepted(&s, final);
		free(final);
		/* one attempt: the same message again fails */
		FUZZ_ASSERT(auth_scram_server_final(&s, in->second,
		                                    in->second_len, &final) < 0);
		FUZZ_ASSERT(final == NULL);
	}
	free(first);
	auth_scram_server_free(&s);
}

/* sluice as the client: the server's first and final messages. */
static void client_side(const struct input *in)
{
	struct scram_client c = { 0 };
	char *first = NULL, *final = NULL;
	const char *nonce_end;
	int rc;

	FUZZ_ASSERT(auth_scram_client_first_with_nonce(&c, "user",
	                                               RFC_CLIENT_NONCE,
	                                               &first) == 0);
	rc = auth_scram_client_final_keys(&c, rfc_client_key, rfc_server_key,
	                                  in->first, in->first_len, &final);
	FUZZ_ASSERT((rc == 0) == (final != NULL));
	if (rc == 0) {
		/* c=biws,r=<the server's nonce, which extends ours>,p=<proof> */
		FUZZ_ASSERT(strncmp(final, "c=biws,r=" RFC_CLIENT_NONCE, 29) == 0);
		nonce_end = strstr(final, ",p=");
		FUZZ_ASSERT(nonce_end && strlen(nonce_end) == 3 + 44);
		FUZZ_ASSERT(strncmp(in->first, final + 7,
		                    (size_t)(nonce_end - final - 7)) == 0);
	}
	rc = auth_scram_client_verify(&c, in->second, in->second_len);
	FUZZ_ASSERT(rc < 0 || (final && in->second_len == 46 &&
	                       strncmp(in->second, "v=", 2) == 0));
	free(first);
	free(final);
	auth_scram_client_free(&c);
}

/* A stored secret (NUL-terminated at the split) starting an exchange. */
static void secret(const struct input *in)
{
	struct scram_server s = { 0 };
	enum auth_secret_kind kind = auth_secret_kind(in->first);
	char *first = NULL;
	int rc;

	if (kind == AUTH_SECRET_PLAIN)
		return;  /* would run PBKDF2 */
	rc = start_exchange(&s, in->first, RFC_CLIENT_FIRST,
	                    strlen(RFC_CLIENT_FIRST), &first);
	if (kind == AUTH_SECRET_MD5) {
		FUZZ_ASSERT(rc < 0 && first == NULL);
	} else {
		FUZZ_ASSERT(rc == 0);
		check_server_first(&s, first);
		/* the salt sent is the verifier's, as written */
		FUZZ_ASSERT(strstr(in->first, s.salt_b64) != NULL);
	}
	free(first);
	auth_scram_server_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in;
	const uint8_t *nul;
	char *copy;

	if (size < 1)
		return 0;
	/* A NUL-terminated copy, so that the first message is a C string
	 * and the second ends where the input does (ASan sees overreads). */
	copy = malloc(size);
	FUZZ_ASSERT(copy != NULL);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	nul = memchr(copy, 0, size);
	in.first = copy;
	in.first_len = (size_t)((const char *)nul - copy);
	in.second = copy + in.first_len + (in.first_len < size - 1 ? 1 : 0);
	in.second_len = size - 1 - (size_t)(in.second - copy);
	switch (data[0] % 3) {
	case 0:
		server_side(&in);
		break;
	case 1:
		client_side(&in);
		break;
	default:
		secret(&in);
		break;
	}
	free(copy);
	return 0;
}
