/*
 * fuzz_codec.c - the message codec on arbitrary byte streams, both sides.
 *
 * Input: one flags byte (bit 0: the stream comes from a server, else from
 * a client; bits 1-2: the length limit, one of login.c's, admin.c's, the
 * default max_packet_size and a tiny one), then messages back to back as
 * a socket delivers them. Each whole message is cut by codec_read_header and its
 * body read field by field with the codec_reader calls sluice's readers
 * make (client.c, server.c, prepared.c, leak.c), following the layout the
 * protocol documents for its type.
 *
 * Invariants: a header said OK has a length within 4..max_len and NEED_MORE
 * means fewer than 5 bytes; a reader never moves past its body, stops for
 * good once bad, and every string it hands back is NUL-terminated inside
 * the body; a message codec_put_* builds from what was parsed parses back
 * to the same fields, or is byte for byte the message it was parsed from
 * (authentication requests, password and SASLInitialResponse, DataRow,
 * ReadyForQuery, CommandComplete).
 */
#include "fuzz.h"

#include "codec.h"

static const uint32_t max_lens[4] = { 65536, 1u << 20, 0x7fffffffu, 8 };

/* The reader and the body it reads, so each step can be checked. */
struct body {
	struct codec_reader r;
	const uint8_t *p;
	size_t len;
};

static void check_reader(const struct body *b, size_t pos_before,
                         bool bad_before)
{
	FUZZ_ASSERT(b->r.pos <= b->r.len);
	FUZZ_ASSERT(b->r.len == b->len && b->r.p == b->p);
	if (bad_before)
		FUZZ_ASSERT(b->r.bad && b->r.pos == pos_before);
}

static const char *str(struct body *b)
{
	size_t pos = b->r.pos;
	bool bad = b->r.bad;
	const char *s = codec_get_str(&b->r);

	check_reader(b, pos, bad);
	FUZZ_ASSERT((s == NULL) == b->r.bad);
	if (s) {
		FUZZ_ASSERT(fuzz_str_within(s, b->p, b->len));
		FUZZ_ASSERT(b->r.pos == pos + strlen(s) + 1);
	}
	return s;
}

static const uint8_t *bytes(struct body *b, size_t n)
{
	size_t pos = b->r.pos;
	bool bad = b->r.bad;
	const uint8_t *p = codec_get_bytes(&b->r, n);

	check_reader(b, pos, bad);
	FUZZ_ASSERT((p == NULL) == b->r.bad);
	if (p)
		FUZZ_ASSERT(p == b->p + pos && b->r.pos == pos + n);
	return p;
}

static uint32_t u32(struct body *b)
{
	size_t pos = b->r.pos;
	bool bad = b->r.bad;
	uint32_t v = codec_get_u32(&b->r);

	check_reader(b, pos, bad);
	return v;
}

static uint16_t u16(struct body *b)
{
	size_t pos = b->r.pos;
	bool bad = b->r.bad;
	uint16_t v = codec_get_u16(&b->r);

	check_reader(b, pos, bad);
	return v;
}

static uint8_t u8(struct body *b)
{
	size_t pos = b->r.pos;
	bool bad = b->r.bad;
	uint8_t v = codec_get_u8(&b->r);

	check_reader(b, pos, bad);
	return v;
}

/* Reads the one message mb holds, checking its header against mb. */
static const uint8_t *built_body(const struct msgbuf *mb, uint8_t type,
                                 size_t *len)
{
	struct pg_header h;

	FUZZ_ASSERT(!mb->failed);
	FUZZ_ASSERT(codec_read_header(mb->data, mb->len, 0x7fffffffu, &h) ==
	            CODEC_OK);
	FUZZ_ASSERT(h.type == type && (size_t)h.len + 1 == mb->len);
	*len = h.len - 4;
	return mb->data + PG_HEADER_LEN;
}

/* A message rebuilt from what was parsed of b must be b itself; frees mb. */
static void check_same(struct msgbuf *mb, uint8_t type, const struct body *b)
{
	const uint8_t *body;
	size_t len;

	body = built_body(mb, type, &len);
	FUZZ_ASSERT(len == b->len && (len == 0 || memcmp(body, b->p, len) == 0));
	msgbuf_free(mb);
}

/* --- values in a Bind or FunctionCall: formats, then length-prefixed --- */

static void read_formats(struct body *b)
{
	uint16_t n = u16(b);

	for (uint16_t i = 0; i < n && !b->r.bad; i++)
		u16(b);
}

static void read_values(struct body *b)
{
	uint16_t n = u16(b);

	for (uint16_t i = 0; i < n && !b->r.bad; i++) {
		uint32_t len = u32(b);

		if (len != 0xffffffffu)  /* -1: NULL, no bytes */
			bytes(b, len);
	}
}

/* --- frontend --------------------------------------------------------- */

static void round_trip_query(const char *sql)
{
	struct msgbuf mb;
	struct body b;

	msgbuf_init(&mb);
	codec_put_query(&mb, sql);
	b.p = built_body(&mb, PG_MSG_QUERY, &b.len);
	codec_reader_init(&b.r, b.p, b.len);
	FUZZ_ASSERT(strcmp(str(&b), sql) == 0 && b.r.pos == b.len);
	msgbuf_free(&mb);
}

/* As a password, rebuilt whole; as a SASLInitialResponse, rebuilt when it
 * reads exactly (mechanism, length, data). */
static void password_body(struct body *b)
{
	struct msgbuf mb;
	const char *mechanism = str(b);
	uint32_t len = u32(b);
	const uint8_t *data = bytes(b, len);

	msgbuf_init(&mb);
	codec_put_password(&mb, b->p, b->len);
	check_same(&mb, PG_MSG_PASSWORD, b);
	if (!mechanism || !data || b->r.pos != b->len)
		return;
	msgbuf_init(&mb);
	codec_put_sasl_initial(&mb, mechanism, (const char *)data, len);
	check_same(&mb, PG_MSG_PASSWORD, b);
}

static void frontend_body(uint8_t type, struct body *b)
{
	const char *s;

	switch (type) {
	case PG_MSG_QUERY:
		if ((s = str(b)) != NULL)
			round_trip_query(s);
		break;
	case PG_MSG_PARSE:
		str(b);
		str(b);
		for (uint16_t n = u16(b); n > 0 && !b->r.bad; n--)
			u32(b);
		break;
	case PG_MSG_BIND:
		str(b);
		str(b);
		read_formats(b);
		read_values(b);
		read_formats(b);
		break;
	case PG_MSG_FUNCTION_CALL:
		u32(b);
		read_formats(b);
		read_values(b);
		u16(b);
		break;
	case PG_MSG_CLOSE:
	case PG_MSG_DESCRIBE:
		u8(b);
		str(b);
		break;
	case PG_MSG_EXECUTE:
		str(b);
		u32(b);
		break;
	case PG_MSG_PASSWORD:
		password_body(b);
		break;
	case PG_MSG_COPY_FAIL:
		str(b);
		break;
	default:
		bytes(b, b->len);
		break;
	}
}

/* --- backend ---------------------------------------------------------- */

static void round_trip_error(uint8_t type, const struct pg_error_fields *e)
{
	struct pg_error_fields back;
	struct msgbuf mb;
	const uint8_t *body;
	size_t len;

	msgbuf_init(&mb);
	if (type == PG_MSG_ERROR)
		codec_put_error(&mb, e->severity, e->sqlstate, e->message);
	else
		codec_put_notice(&mb, e->message);
	body = built_body(&mb, type, &len);
	FUZZ_ASSERT(codec_parse_error(body, len, &back) == CODEC_OK);
	FUZZ_ASSERT(strcmp(back.message, e->message) == 0);
	if (type == PG_MSG_ERROR)
		FUZZ_ASSERT(strcmp(back.severity, e->severity) == 0 &&
		            strcmp(back.sqlstate, e->sqlstate) == 0);
	msgbuf_free(&mb);
}

/* An absent field is a "" of the codec's own; a present one is in body. */
static bool field_ok(const char *s, const struct body *b)
{
	return s[0] == '\0' || fuzz_str_within(s, b->p, b->len);
}

static void error_body(uint8_t type, struct body *b)
{
	struct pg_error_fields e;

	if (codec_parse_error(b->p, b->len, &e) != CODEC_OK)
		return;
	FUZZ_ASSERT(field_ok(e.severity, b) && field_ok(e.sqlstate, b) &&
	            field_ok(e.message, b));
	round_trip_error(type, &e);
}

static void round_trip_parameter(const char *name, const char *value)
{
	struct msgbuf mb;
	struct body b;

	msgbuf_init(&mb);
	codec_put_parameter_status(&mb, name, value);
	b.p = built_body(&mb, PG_MSG_PARAMETER_STATUS, &b.len);
	codec_reader_init(&b.r, b.p, b.len);
	FUZZ_ASSERT(strcmp(str(&b), name) == 0);
	FUZZ_ASSERT(strcmp(str(&b), value) == 0 && b.r.pos == b.len);
	msgbuf_free(&mb);
}

static void round_trip_key(uint32_t pid, uint32_t key)
{
	struct msgbuf mb;
	struct body b;

	msgbuf_init(&mb);
	codec_put_backend_key(&mb, pid, key);
	b.p = built_body(&mb, PG_MSG_BACKEND_KEY_DATA, &b.len);
	codec_reader_init(&b.r, b.p, b.len);
	FUZZ_ASSERT(u32(&b) == pid && u32(&b) == key && b.r.pos == b.len);
	msgbuf_free(&mb);
}

static void auth_body(struct body *b)
{
	uint32_t code = u32(b);
	struct msgbuf mb;

	if (!b->r.bad) {
		msgbuf_init(&mb);
		codec_put_auth(&mb, code, b->p + 4, b->len - 4);
		check_same(&mb, PG_MSG_AUTH, b);
	}
	switch (code) {
	case PG_AUTH_MD5:
		bytes(b, 4);
		break;
	case PG_AUTH_SASL:  /* mechanism names up to an empty one */
		for (const char *m = str(b); m && *m; m = str(b))
			;
		break;
	default:
		bytes(b, b->len - b->r.pos);
		break;
	}
}

/* RowDescription; the names, rebuilt, must read back the same. */
static void row_description_body(struct body *b)
{
	const char *names[16];
	uint16_t n = u16(b);
	size_t kept = 0;
	struct msgbuf mb;
	struct body back;

	for (uint16_t i = 0; i < n && !b->r.bad; i++) {
		const char *name = str(b);

		bytes(b, 18);  /* table, column, type, size, modifier, format */
		if (name && kept < 16)
			names[kept++] = name;
	}
	if (b->r.bad)
		return;
	msgbuf_init(&mb);
	codec_put_row_description(&mb, names, kept);
	back.p = built_body(&mb, PG_MSG_ROW_DESCRIPTION, &back.len);
	codec_reader_init(&back.r, back.p, back.len);
	FUZZ_ASSERT(u16(&back) == kept);
	for (size_t i = 0; i < kept; i++) {
		FUZZ_ASSERT(strcmp(str(&back), names[i]) == 0);
		FUZZ_ASSERT(bytes(&back, 18) != NULL);
	}
	FUZZ_ASSERT(back.r.pos == back.len);
	msgbuf_free(&mb);
}

/* A DataRow of text values without NULs is what codec_put_data_row
 * builds from them. */
static void data_row_body(struct body *b)
{
	char *values[16];
	uint16_t n = u16(b);
	size_t kept = 0;
	bool text = n <= 16;
	struct msgbuf mb;

	for (uint16_t i = 0; i < n && !b->r.bad; i++) {
		uint32_t len = u32(b);
		const uint8_t *v = len == 0xffffffffu ? NULL : bytes(b, len);

		if (!text || (v && memchr(v, 0, len)))
			text = false;
		else
			values[kept++] = v ? strndup((const char *)v, len) : NULL;
	}
	if (text && !b->r.bad && b->r.pos == b->len) {
		msgbuf_init(&mb);
		codec_put_data_row(&mb, (const char *const *)values, kept);
		check_same(&mb, PG_MSG_DATA_ROW, b);
	}
	while (kept > 0)
		free(values[--kept]);
}

static void ready_body(struct body *b)
{
	uint8_t status = u8(b);
	struct msgbuf mb;

	if (b->r.bad || b->len != 1)
		return;
	msgbuf_init(&mb);
	codec_put_ready(&mb, (char)status);
	check_same(&mb, PG_MSG_READY_FOR_QUERY, b);
}

static void command_complete_body(struct body *b)
{
	const char *tag = str(b);
	struct msgbuf mb;

	if (!tag || b->r.pos != b->len)
		return;
	msgbuf_init(&mb);
	codec_put_command_complete(&mb, tag);
	check_same(&mb, PG_MSG_COMMAND_COMPLETE, b);
}

static void backend_body(uint8_t type, struct body *b)
{
	const char *name, *value;
	uint32_t pid;

	switch (type) {
	case PG_MSG_AUTH:
		return auth_body(b);
	case PG_MSG_PARAMETER_STATUS:
		name = str(b);
		value = str(b);
		if (name && value)
			round_trip_parameter(name, value);
		return;
	case PG_MSG_BACKEND_KEY_DATA:
		pid = u32(b);
		if (!b->r.bad)
			round_trip_key(pid, u32(b));
		return;
	case PG_MSG_ERROR:
	case PG_MSG_NOTICE:
		return error_body(type, b);
	case PG_MSG_ROW_DESCRIPTION:
		return row_description_body(b);
	case PG_MSG_DATA_ROW:
		return data_row_body(b);
	case PG_MSG_NOTIFICATION:
		u32(b);
		str(b);
		str(b);
		return;
	case PG_MSG_READY_FOR_QUERY:
		return ready_body(b);
	case PG_MSG_COMMAND_COMPLETE:
		return command_complete_body(b);
	default:
		str(b);
		return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t max_len;
	bool backend;
	size_t pos = 1;

	if (size < 1)
		return 0;
	backend = data[0] & 1;
	max_len = max_lens[(data[0] >> 1) & 3];
	while (pos < size) {
		struct pg_header h;
		enum codec_result rc = codec_read_header(data + pos, size - pos,
		                                         max_len, &h);
		struct body b;

		FUZZ_ASSERT((rc == CODEC_NEED_MORE) == (size - pos < 5));
		if (rc != CODEC_OK)
			break;
		FUZZ_ASSERT(h.len >= 4 && h.len <= max_len &&
		            h.type == data[pos]);
		if (size - pos < (size_t)h.len + 1)
			break;  /* the rest of it has not arrived */
		b.p = data + pos + PG_HEADER_LEN;
		b.len = h.len - 4;
		codec_reader_init(&b.r, b.p, b.len);
		if (backend)
			backend_body(h.type, &b);
		else
			frontend_body(h.type, &b);
		pos += (size_t)h.len + 1;
	}
	return 0;
}
