/*
 * fuzz_startup.c - startup-phase packets: StartupMessage, SSLRequest,
 * GSSENCRequest, CancelRequest, as a client sends them before it logs in.
 *
 * Input: the bytes a new client sends, read as login.c reads them: packets
 * cut by codec_read_startup; SSLRequest and GSSENCRequest are refused and
 * reading goes on; a CancelRequest (16 bytes) is read and ends the
 * connection; a StartupMessage (protocol 3.x) is walked with
 * codec_startup_params and its pairs kept as login.c keeps them (user,
 * database, tracked parameters into a struct params, ignored names
 * skipped, anything else refused) against a config like a real one.
 *
 * Invariants: an OK packet header has a length of 8..10000, NEED_MORE comes
 * only before the length or the code has arrived; every key and value the
 * walk hands over is NUL-terminated inside the packet, keys are not empty,
 * and the walk says OK only for a list that ends with its terminator at the
 * packet's last byte; a tracked value reads back from the params as set;
 * the SET statements params_sync_sql makes of them (what server.c sends
 * before the client's query) read, as PostgreSQL's lexer reads them with
 * standard_conforming_strings on and off (a client can set it), as one
 * "SET name = literal;" per parameter whose literal is the value exactly;
 * a CancelRequest rebuilt with codec_put_cancel reads back the same.
 */
#include "fuzz.h"

#include "codec.h"
#include "config.h"
#include "params.h"

static struct config *cfg;

/* What the walk over one StartupMessage collected. */
struct walk {
	const uint8_t *body;
	size_t len;
	const char *user;
	const char *database;
	struct params params;
	unsigned pairs;
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char ini[] =
		"[databases]\n* = host=127.0.0.1\n"
		"[sluice]\nauth_type = trust\n"
		"ignore_startup_parameters = extra_float_digits, options\n"
		"track_extra_parameters = IntervalStyle, search_path\n";
	char path[128], err[256];

	(void)argc;
	(void)argv;
	fuzz_scratch_init();
	fuzz_scratch_write("startup.ini", (const uint8_t *)ini, strlen(ini),
	                   path, sizeof(path));
	if (config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	return 0;
}

/* As login.c's take_param: 1 stops the walk on an unsupported name. */
static int take_param(void *arg, const char *key, const char *value)
{
	struct walk *w = arg;

	FUZZ_ASSERT(fuzz_str_within(key, w->body, w->len));
	FUZZ_ASSERT(fuzz_str_within(value, w->body, w->len));
	FUZZ_ASSERT(*key != '\0' && value == key + strlen(key) + 1);
	w->pairs++;
	if (strcmp(key, "user") == 0) {
		w->user = value;
	} else if (strcmp(key, "database") == 0) {
		w->database = value;
	} else if (params_is_tracked(cfg, key)) {
		FUZZ_ASSERT(params_set(&w->params, key, value) == 0);
		FUZZ_ASSERT(strcmp(params_get(&w->params, key), value) == 0);
	} else if (!config_list_contains(cfg->ignore_startup_parameters, key)) {
		return 1;
	}
	return 0;
}

/* A 'string', E'string' or $tag$string$tag$ at *pp, as PostgreSQL lexes
 * it, into out (as long as the input); *pp moves past it. False if it is
 * none of these, is not closed or holds an escape other than \\ and \'
 * (which would not give back the value). */
static bool lex_literal(const char **pp, bool backslashes, char *out)
{
	const char *p = *pp, *end;
	size_t tag_len;

	if (*p == '$') {
		tag_len = 1 + strspn(p + 1, "abcdefghijklmnopqrstuvwxyz"
		                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
		if (p[tag_len] != '$' || (p[1] >= '0' && p[1] <= '9'))
			return false;
		tag_len++;
		end = strstr(p + tag_len, "$");
		while (end && strncmp(end, p, tag_len) != 0)
			end = strstr(end + 1, "$");
		if (!end)
			return false;
		memcpy(out, p + tag_len, (size_t)(end - p - (ptrdiff_t)tag_len));
		out[end - p - (ptrdiff_t)tag_len] = '\0';
		*pp = end + tag_len;
		return true;
	}
	if (*p == 'E' || *p == 'e') {
		backslashes = true;
		p++;
	}
	if (*p++ != '\'')
		return false;
	for (;; p++) {
		if (*p == '\0')
			return false;
		if (*p == '\'' && p[1] != '\'')
			break;
		if (*p == '\'')
			p++;
		else if (*p == '\\' && backslashes && (p[1] == '\\' || p[1] == '\''))
			p++;
		else if (*p == '\\' && backslashes)
			return false;
		*out++ = *p;
	}
	*out = '\0';
	*pp = p + 1;
	return true;
}

/* params_sync_sql's text against the params it was made from. */
static void check_sync_sql(const struct params *wanted)
{
	struct params none = { NULL };
	struct msgbuf mb;
	char *sql, *value;
	int differ, statements;

	msgbuf_init(&mb);
	differ = params_sync_sql(wanted, &none, &none, &mb);
	msgbuf_put_u8(&mb, 0);
	FUZZ_ASSERT(!mb.failed);
	sql = (char *)mb.data;
	value = malloc(mb.len);
	FUZZ_ASSERT(value != NULL);
	for (int scs = 0; scs < 2; scs++) {
		const char *p = sql;
		const struct param *param = wanted->head;

		for (statements = 0; *p; statements++, param = param->next) {
			FUZZ_ASSERT(param != NULL && strncmp(p, "SET ", 4) == 0);
			p += 4;
			FUZZ_ASSERT(strncmp(p, param->name, strlen(param->name)) == 0);
			p += strlen(param->name);
			FUZZ_ASSERT(strncmp(p, " = ", 3) == 0);
			p += 3;
			FUZZ_ASSERT(lex_literal(&p, scs == 0, value));
			FUZZ_ASSERT(strcmp(value, param->value) == 0);
			FUZZ_ASSERT(*p++ == ';');
		}
		FUZZ_ASSERT(statements == differ);
	}
	free(value);
	msgbuf_free(&mb);
}

static void startup_message(const uint8_t *body, size_t len)
{
	struct walk w = { .body = body, .len = len };
	int rc = codec_startup_params(body, len, take_param, &w);

	FUZZ_ASSERT(rc == CODEC_OK || rc == CODEC_INVALID || rc == 1);
	if (rc == CODEC_OK) {
		/* the terminator is the last byte, after the last value */
		FUZZ_ASSERT(len >= 1 && body[len - 1] == 0);
		FUZZ_ASSERT(len == 1 || (len >= 2 && body[len - 2] == 0));
	}
	/* the '*' entry takes any database name */
	if (rc == CODEC_OK && w.database && *w.database)
		FUZZ_ASSERT(config_find_db(cfg, w.database) != NULL);
	check_sync_sql(&w.params);
	params_free(&w.params);
}

static void cancel_request(const uint8_t *body, size_t len)
{
	struct codec_reader r;
	struct msgbuf mb;
	uint32_t pid, key, back_len, back_code;

	codec_reader_init(&r, body, len);
	pid = codec_get_u32(&r);
	key = codec_get_u32(&r);
	FUZZ_ASSERT(!r.bad && r.pos == len);
	msgbuf_init(&mb);
	codec_put_cancel(&mb, pid, key);
	FUZZ_ASSERT(!mb.failed && mb.len == 16);
	FUZZ_ASSERT(codec_read_startup(mb.data, mb.len, &back_len, &back_code) ==
	            CODEC_OK);
	FUZZ_ASSERT(back_len == 16 && back_code == PG_CANCEL_REQUEST);
	codec_reader_init(&r, mb.data + 8, 8);
	FUZZ_ASSERT(codec_get_u32(&r) == pid && codec_get_u32(&r) == key);
	msgbuf_free(&mb);
}

/* One packet whole at data; false when the connection would end. */
static bool packet(const uint8_t *data, uint32_t len, uint32_t code)
{
	if (code == PG_SSL_REQUEST || code == PG_GSSENC_REQUEST)
		return true;  /* answered 'N'; the client goes on in clear */
	if (code == PG_CANCEL_REQUEST && len == 16)
		cancel_request(data + 8, len - 8);
	else if (code >> 16 == 3)
		startup_message(data + 8, len - 8);
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		size_t avail = size - pos;
		uint32_t len = 0, code = 0;
		enum codec_result rc = codec_read_startup(data + pos, avail, &len,
		                                          &code);

		FUZZ_ASSERT(rc != CODEC_NEED_MORE || avail < 8);
		if (rc != CODEC_OK)
			break;
		FUZZ_ASSERT(len >= 8 && len <= PG_MAX_STARTUP_LEN && avail >= 8);
		if (avail < len || !packet(data + pos, len, code))
			break;
		pos += len;
	}
	return 0;
}
