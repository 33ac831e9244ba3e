/*
 * fuzz_password.c - password messages and the md5 arithmetic behind them.
 *
 * Input: the stored secret, the user name and the body of a password
 * message ('p'), split at the first two NULs; a salt from the first four
 * bytes of the secret. As login.c does, a body counts as a password only
 * if it ends with its NUL, and is checked with auth_md5_check; a secret is
 * whatever an auth_file line may hold (plain, md5, SCRAM verifier, or
 * anything malformed).
 *
 * Invariants: a secret is md5 exactly when it is "md5" and 32 lowercase
 * hex digits; an answer is accepted only if it is what auth_md5_response
 * computes, and what it computes is always accepted (plain and md5
 * secrets) or never made (SCRAM); a plain password and its md5 secret give
 * the same answer; auth_md5_secret always makes an md5 secret.
 */
#include "fuzz.h"

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_md5_form(const char *s)
{
	return strlen(s) == AUTH_MD5_LEN && strncmp(s, "md5", 3) == 0 &&
	       strspn(s + 3, "0123456789abcdef") == AUTH_MD5_LEN - 3;
}

/* The part up to the next NUL (or the end); *pos moves past it. */
static char *take(const uint8_t *data, size_t size, size_t *pos)
{
	const uint8_t *start = data + *pos;
	const uint8_t *nul = memchr(start, 0, size - *pos);
	size_t len = nul ? (size_t)(nul - start) : size - *pos;
	char *out = malloc(len + 1);

	FUZZ_ASSERT(out != NULL);
	memcpy(out, start, len);
	out[len] = '\0';
	*pos += len + (nul ? 1 : 0);
	return out;
}

static void check_secret(const char *secret, const char *user,
                         const uint8_t salt[4], const char *password)
{
	enum auth_secret_kind kind = auth_secret_kind(secret);
	char answer[AUTH_MD5_LEN + 1];
	bool accepted = password && auth_md5_check(secret, user, salt,
	                                            password);

	FUZZ_ASSERT((kind == AUTH_SECRET_MD5) == is_md5_form(secret));
	if (kind == AUTH_SECRET_SCRAM) {
		FUZZ_ASSERT(!accepted);
		FUZZ_ASSERT(auth_md5_response(secret, user, salt, answer) < 0);
		FUZZ_ASSERT(answer[0] == '\0');
		return;
	}
	FUZZ_ASSERT(auth_md5_response(secret, user, salt, answer) == 0);
	FUZZ_ASSERT(is_md5_form(answer));
	FUZZ_ASSERT(auth_md5_check(secret, user, salt, answer));
	if (accepted)
		FUZZ_ASSERT(strcmp(password, answer) == 0);
}

/* A plain password and the md5 secret made from it answer alike. */
static void check_plain(const char *password, const char *user,
                        const uint8_t salt[4])
{
	char md5[AUTH_MD5_LEN + 1];
	char from_plain[AUTH_MD5_LEN + 1], from_md5[AUTH_MD5_LEN + 1];

	auth_md5_secret(password, user, md5);
	FUZZ_ASSERT(is_md5_form(md5));
	FUZZ_ASSERT(auth_secret_kind(md5) == AUTH_SECRET_MD5);
	if (auth_secret_kind(password) != AUTH_SECRET_PLAIN)
		return;
	FUZZ_ASSERT(auth_md5_response(password, user, salt, from_plain) == 0);
	FUZZ_ASSERT(auth_md5_response(md5, user, salt, from_md5) == 0);
	FUZZ_ASSERT(strcmp(from_plain, from_md5) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t salt[4] = { 0 };
	size_t pos = 0;
	char *secret = take(data, size, &pos);
	char *user = take(data, size, &pos);
	const uint8_t *body = data + pos;
	size_t body_len = size - pos;
	/* login.c: the message body is the password and its NUL */
	const char *password = body_len > 0 && body[body_len - 1] == 0 ?
	                       (const char *)body : NULL;

	memcpy(salt, secret, strlen(secret) < 4 ? strlen(secret) : 4);
	check_secret(secret, user, salt, password);
	if (password)
		check_plain(password, user, salt);
	free(secret);
	free(user);
	return 0;
}
