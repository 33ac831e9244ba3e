/*
 * codec.c - PostgreSQL v3 protocol messages: pure functions, no I/O.
 *
 * Owns the byte layout of every message sluice reads or builds. All integers
 * on the wire are big-endian.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static uint32_t read_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

enum codec_result codec_read_header(const uint8_t *bytes, size_t avail,
                                    uint32_t max_len, struct pg_header *h)
{
	if (avail < PG_HEADER_LEN)
		return CODEC_NEED_MORE;
	h->type = bytes[0];
	h->len = read_u32(bytes + 1);
	if (h->len < 4 || h->len > max_len)
		return CODEC_INVALID;
	return CODEC_OK;
}

enum codec_result codec_read_startup(const uint8_t *bytes, size_t avail,
                                     uint32_t *len, uint32_t *code)
{
	if (avail < 4)
		return CODEC_NEED_MORE;
	*len = read_u32(bytes);
	if (*len < 8 || *len > PG_MAX_STARTUP_LEN)
		return CODEC_INVALID;
	if (avail < 8)
		return CODEC_NEED_MORE;
	*code = read_u32(bytes + 4);
	return CODEC_OK;
}

void codec_reader_init(struct codec_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->pos = 0;
	r->bad = false;
}

const uint8_t *codec_get_bytes(struct codec_reader *r, size_t n)
{
	const uint8_t *at;

	if (r->bad || r->len - r->pos < n) {
		r->bad = true;
		return NULL;
	}
	at = r->p + r->pos;
	r->pos += n;
	return at;
}

uint8_t codec_get_u8(struct codec_reader *r)
{
	const uint8_t *p = codec_get_bytes(r, 1);

	return p ? p[0] : 0;
}

uint16_t codec_get_u16(struct codec_reader *r)
{
	const uint8_t *p = codec_get_bytes(r, 2);

	return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

uint32_t codec_get_u32(struct codec_reader *r)
{
	const uint8_t *p = codec_get_bytes(r, 4);

	return p ? read_u32(p) : 0;
}

const char *codec_get_str(struct codec_reader *r)
{
	const uint8_t *start;
	const uint8_t *nul;

	if (r->bad)
		return NULL;
	start = r->p + r->pos;
	nul = memchr(start, 0, r->len - r->pos);
	if (!nul) {
		r->bad = true;
		return NULL;
	}
	r->pos += (size_t)(nul - start) + 1;
	return (const char *)start;
}

int codec_startup_params(const uint8_t *body, size_t len,
                         int (*fn)(void *arg, const char *key, const char *value),
                         void *arg)
{
	struct codec_reader r;

	codec_reader_init(&r, body, len);
	for (;;) {
		const char *key = codec_get_str(&r);
		const char *value;
		int rc;

		if (!key)
			return CODEC_INVALID;
		if (*key == '\0')
			return r.pos == len ? CODEC_OK : CODEC_INVALID;
		value = codec_get_str(&r);
		if (!value)
			return CODEC_INVALID;
		rc = fn(arg, key, value);
		if (rc != 0)
			return rc;
	}
}

enum codec_result codec_parse_error(const uint8_t *body, size_t len,
                                    struct pg_error_fields *out)
{
	struct codec_reader r;

	out->severity = "";
	out->sqlstate = "";
	out->message = "";
	codec_reader_init(&r, body, len);
	for (;;) {
		uint8_t field = codec_get_u8(&r);
		const char *value;

		if (r.bad)
			return CODEC_INVALID;
		if (field == 0)
			return CODEC_OK;
		value = codec_get_str(&r);
		if (!value)
			return CODEC_INVALID;
		if (field == 'S')
			out->severity = value;
		else if (field == 'C')
			out->sqlstate = value;
		else if (field == 'M')
			out->message = value;
	}
}

void msgbuf_init(struct msgbuf *mb)
{
	memset(mb, 0, sizeof(*mb));
}

void msgbuf_free(struct msgbuf *mb)
{
	free(mb->data);
	msgbuf_init(mb);
}

static bool msgbuf_reserve(struct msgbuf *mb, size_t n)
{
	size_t cap;
	uint8_t *grown;

	if (mb->failed)
		return false;
	if (mb->cap - mb->len >= n)
		return true;
	cap = mb->cap ? mb->cap : 256;
	while (cap - mb->len < n)
		cap *= 2;
	grown = realloc(mb->data, cap);
	if (!grown) {
		mb->failed = true;
		return false;
	}
	mb->data = grown;
	mb->cap = cap;
	return true;
}

void msgbuf_put_bytes(struct msgbuf *mb, const void *p, size_t n)
{
	if (n == 0 || !msgbuf_reserve(mb, n))
		return;
	memcpy(mb->data + mb->len, p, n);
	mb->len += n;
}

void msgbuf_put_u8(struct msgbuf *mb, uint8_t v)
{
	msgbuf_put_bytes(mb, &v, 1);
}

void msgbuf_put_u16(struct msgbuf *mb, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	msgbuf_put_bytes(mb, b, sizeof(b));
}

void msgbuf_put_u32(struct msgbuf *mb, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
	                 (uint8_t)(v >> 8), (uint8_t)v };

	msgbuf_put_bytes(mb, b, sizeof(b));
}

void msgbuf_put_str(struct msgbuf *mb, const char *s)
{
	msgbuf_put_bytes(mb, s, strlen(s) + 1);
}

void msgbuf_begin(struct msgbuf *mb, uint8_t type)
{
	if (type != 0)
		msgbuf_put_u8(mb, type);
	mb->msg_start = mb->len;
	msgbuf_put_u32(mb, 0); /* length, filled in by msgbuf_end */
}

void msgbuf_end(struct msgbuf *mb)
{
	uint32_t len;
	uint8_t *p;

	if (mb->failed)
		return;
	len = (uint32_t)(mb->len - mb->msg_start);
	p = mb->data + mb->msg_start;
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
}

static void put_error_like(struct msgbuf *mb, uint8_t type, const char *severity,
                           const char *sqlstate, const char *message)
{
	msgbuf_begin(mb, type);
	msgbuf_put_u8(mb, 'S');
	msgbuf_put_str(mb, severity);
	msgbuf_put_u8(mb, 'V');   /* non-localized severity, as PostgreSQL 9.6+ */
	msgbuf_put_str(mb, severity);
	msgbuf_put_u8(mb, 'C');
	msgbuf_put_str(mb, sqlstate);
	msgbuf_put_u8(mb, 'M');
	msgbuf_put_str(mb, message);
	msgbuf_put_u8(mb, 0);
	msgbuf_end(mb);
}

void codec_put_error(struct msgbuf *mb, const char *severity,
                     const char *sqlstate, const char *message)
{
	put_error_like(mb, PG_MSG_ERROR, severity, sqlstate, message);
}

void codec_put_notice(struct msgbuf *mb, const char *message)
{
	put_error_like(mb, PG_MSG_NOTICE, "NOTICE", "00000", message);
}

void codec_put_auth(struct msgbuf *mb, uint32_t code, const void *data, size_t len)
{
	msgbuf_begin(mb, PG_MSG_AUTH);
	msgbuf_put_u32(mb, code);
	msgbuf_put_bytes(mb, data, len);
	msgbuf_end(mb);
}

void codec_put_parameter_status(struct msgbuf *mb, const char *name, const char *value)
{
	msgbuf_begin(mb, PG_MSG_PARAMETER_STATUS);
	msgbuf_put_str(mb, name);
	msgbuf_put_str(mb, value);
	msgbuf_end(mb);
}

void codec_put_backend_key(struct msgbuf *mb, uint32_t pid, uint32_t key)
{
	msgbuf_begin(mb, PG_MSG_BACKEND_KEY_DATA);
	msgbuf_put_u32(mb, pid);
	msgbuf_put_u32(mb, key);
	msgbuf_end(mb);
}

void codec_put_ready(struct msgbuf *mb, char status)
{
	msgbuf_begin(mb, PG_MSG_READY_FOR_QUERY);
	msgbuf_put_u8(mb, (uint8_t)status);
	msgbuf_end(mb);
}

void codec_put_query(struct msgbuf *mb, const char *sql)
{
	msgbuf_begin(mb, PG_MSG_QUERY);
	msgbuf_put_str(mb, sql);
	msgbuf_end(mb);
}

void codec_put_password(struct msgbuf *mb, const void *data, size_t len)
{
	msgbuf_begin(mb, PG_MSG_PASSWORD);
	msgbuf_put_bytes(mb, data, len);
	msgbuf_end(mb);
}

void codec_put_sasl_initial(struct msgbuf *mb, const char *mechanism,
                            const char *data, size_t len)
{
	msgbuf_begin(mb, PG_MSG_PASSWORD);
	msgbuf_put_str(mb, mechanism);
	msgbuf_put_u32(mb, (uint32_t)len);
	msgbuf_put_bytes(mb, data, len);
	msgbuf_end(mb);
}

void codec_put_cancel(struct msgbuf *mb, uint32_t pid, uint32_t key)
{
	msgbuf_begin(mb, 0);
	msgbuf_put_u32(mb, PG_CANCEL_REQUEST);
	msgbuf_put_u32(mb, pid);
	msgbuf_put_u32(mb, key);
	msgbuf_end(mb);
}

void codec_put_row_description(struct msgbuf *mb, const char *const *names,
                               size_t count)
{
	msgbuf_begin(mb, PG_MSG_ROW_DESCRIPTION);
	msgbuf_put_u16(mb, (uint16_t)count);
	for (size_t i = 0; i < count; i++) {
		msgbuf_put_str(mb, names[i]);
		msgbuf_put_u32(mb, 0);       /* table oid */
		msgbuf_put_u16(mb, 0);       /* column number */
		msgbuf_put_u32(mb, 25);      /* type oid: text */
		msgbuf_put_u16(mb, 0xffff);  /* type size: variable (-1) */
		msgbuf_put_u32(mb, 0xffffffff); /* type modifier: -1 */
		msgbuf_put_u16(mb, 0);       /* format: text */
	}
	msgbuf_end(mb);
}

void codec_put_data_row(struct msgbuf *mb, const char *const *values, size_t count)
{
	msgbuf_begin(mb, PG_MSG_DATA_ROW);
	msgbuf_put_u16(mb, (uint16_t)count);
	for (size_t i = 0; i < count; i++) {
		if (!values[i]) {
			msgbuf_put_u32(mb, 0xffffffff);
			continue;
		}
		msgbuf_put_u32(mb, (uint32_t)strlen(values[i]));
		msgbuf_put_bytes(mb, values[i], strlen(values[i]));
	}
	msgbuf_end(mb);
}

void codec_put_command_complete(struct msgbuf *mb, const char *tag)
{
	msgbuf_begin(mb, PG_MSG_COMMAND_COMPLETE);
	msgbuf_put_str(mb, tag);
	msgbuf_end(mb);
}
