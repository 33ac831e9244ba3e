/*
 * codec.h - PostgreSQL v3 protocol messages: pure functions on byte spans.
 *
 * Readers take const spans and keep no pointers; builders append to a
 * struct msgbuf, which remembers an allocation failure so callers check once.
 */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum codec_result {
	CODEC_OK,
	CODEC_NEED_MORE,
	CODEC_INVALID,
};

/* Startup-phase codes (the int32 after the length). */
#define PG_PROTOCOL_3_0 196608u        /* 3 << 16 */
#define PG_CANCEL_REQUEST 80877102u
#define PG_SSL_REQUEST 80877103u
#define PG_GSSENC_REQUEST 80877104u
#define PG_MAX_STARTUP_LEN 10000u      /* as PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define PG_HEADER_LEN 5u               /* type byte + int32 length */

/* Frontend messages. */
#define PG_MSG_BIND 'B'
#define PG_MSG_CLOSE 'C'
#define PG_MSG_COPY_DATA 'd'
#define PG_MSG_COPY_DONE 'c'
#define PG_MSG_COPY_FAIL 'f'
#define PG_MSG_DESCRIBE 'D'
#define PG_MSG_EXECUTE 'E'
#define PG_MSG_FLUSH 'H'
#define PG_MSG_FUNCTION_CALL 'F'
#define PG_MSG_PARSE 'P'
#define PG_MSG_PASSWORD 'p'
#define PG_MSG_QUERY 'Q'
#define PG_MSG_SYNC 'S'
#define PG_MSG_TERMINATE 'X'

/* Backend messages. */
#define PG_MSG_AUTH 'R'
#define PG_MSG_BACKEND_KEY_DATA 'K'
#define PG_MSG_COMMAND_COMPLETE 'C'
#define PG_MSG_DATA_ROW 'D'
#define PG_MSG_EMPTY_QUERY 'I'
#define PG_MSG_ERROR 'E'
#define PG_MSG_NOTICE 'N'
#define PG_MSG_NOTIFICATION 'A'
#define PG_MSG_PARAMETER_STATUS 'S'
#define PG_MSG_READY_FOR_QUERY 'Z'
#define PG_MSG_ROW_DESCRIPTION 'T'

/* Authentication request codes. */
#define PG_AUTH_OK 0
#define PG_AUTH_CLEARTEXT 3
#define PG_AUTH_MD5 5
#define PG_AUTH_SASL 10
#define PG_AUTH_SASL_CONTINUE 11
#define PG_AUTH_SASL_FINAL 12

/* SQLSTATEs sluice sends. */
#define SQLSTATE_PROTOCOL_VIOLATION "08P01"
#define SQLSTATE_CONNECTION_FAILURE "08006"
#define SQLSTATE_QUERY_CANCELED "57014"
#define SQLSTATE_FEATURE_NOT_SUPPORTED "0A000"
#define SQLSTATE_INVALID_PASSWORD "28P01"
#define SQLSTATE_SYNTAX_ERROR "42601"
#define SQLSTATE_INTERNAL_ERROR "XX000"
#define SQLSTATE_OUT_OF_MEMORY "53200"

/* A regular message header. len counts itself but not the type byte. */
struct pg_header {
	uint8_t type;
	uint32_t len;
};

/*
 * Reads a regular header from bytes. CODEC_NEED_MORE below 5 bytes,
 * CODEC_INVALID when the length field is below 4 or above max_len.
 */
enum codec_result codec_read_header(const uint8_t *bytes, size_t avail,
                                    uint32_t max_len, struct pg_header *h);

/* Reads a startup-phase packet header: int32 length, int32 code. The length
 * must be 8..PG_MAX_STARTUP_LEN. */
enum codec_result codec_read_startup(const uint8_t *bytes, size_t avail,
                                     uint32_t *len, uint32_t *code);

/* A cursor over one message body; 'bad' turns true on any overrun. */
struct codec_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
	bool bad;
};

void codec_reader_init(struct codec_reader *r, const uint8_t *p, size_t len);
uint8_t codec_get_u8(struct codec_reader *r);
uint16_t codec_get_u16(struct codec_reader *r);
uint32_t codec_get_u32(struct codec_reader *r);
/* A NUL-terminated string inside the body; NULL (and bad) if unterminated. */
const char *codec_get_str(struct codec_reader *r);
/* n raw bytes; NULL (and bad) if fewer remain. */
const uint8_t *codec_get_bytes(struct codec_reader *r, size_t n);

/*
 * Walks the key/value pairs of a StartupMessage body (after length and
 * protocol code): calls fn for each pair until the terminating empty key.
 * CODEC_INVALID if the list is unterminated or a value is missing;
 * a non-zero return from fn stops the walk and is returned (as an int).
 */
int codec_startup_params(const uint8_t *body, size_t len,
                         int (*fn)(void *arg, const char *key, const char *value),
                         void *arg);

/*
 * Pulls severity, SQLSTATE and message out of an ErrorResponse or
 * NoticeResponse body. Pointers point into body; absent fields are "".
 */
struct pg_error_fields {
	const char *severity;
	const char *sqlstate;
	const char *message;
};
enum codec_result codec_parse_error(const uint8_t *body, size_t len,
                                    struct pg_error_fields *out);

/* A growable output buffer of whole messages. */
struct msgbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t msg_start;   /* where the message being built begins */
	bool failed;        /* an allocation failed; the content is garbage */
};

void msgbuf_init(struct msgbuf *mb);
/* Frees the bytes; the msgbuf can be reused after msgbuf_init. */
void msgbuf_free(struct msgbuf *mb);
/* Starts a message of the given type; type 0 starts a startup-phase packet
 * (no type byte). Ends with msgbuf_end, which fills in the length. */
void msgbuf_begin(struct msgbuf *mb, uint8_t type);
void msgbuf_end(struct msgbuf *mb);
void msgbuf_put_u8(struct msgbuf *mb, uint8_t v);
void msgbuf_put_u16(struct msgbuf *mb, uint16_t v);
void msgbuf_put_u32(struct msgbuf *mb, uint32_t v);
void msgbuf_put_bytes(struct msgbuf *mb, const void *p, size_t n);
/* The string and its NUL terminator. */
void msgbuf_put_str(struct msgbuf *mb, const char *s);

/* Whole messages, ready to send. */
void codec_put_error(struct msgbuf *mb, const char *severity,
                     const char *sqlstate, const char *message);
void codec_put_notice(struct msgbuf *mb, const char *message);
void codec_put_auth(struct msgbuf *mb, uint32_t code, const void *data, size_t len);
void codec_put_parameter_status(struct msgbuf *mb, const char *name, const char *value);
void codec_put_backend_key(struct msgbuf *mb, uint32_t pid, uint32_t key);
void codec_put_ready(struct msgbuf *mb, char status);
void codec_put_query(struct msgbuf *mb, const char *sql);
void codec_put_password(struct msgbuf *mb, const void *data, size_t len);
void codec_put_sasl_initial(struct msgbuf *mb, const char *mechanism,
                            const char *data, size_t len);
void codec_put_cancel(struct msgbuf *mb, uint32_t pid, uint32_t key);
void codec_put_row_description(struct msgbuf *mb, const char *const *names,
                               size_t count);
/* A DataRow of text values; a NULL value is SQL NULL. */
void codec_put_data_row(struct msgbuf *mb, const char *const *values, size_t count);
void codec_put_command_complete(struct msgbuf *mb, const char *tag);

#endif
