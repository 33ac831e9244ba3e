/*
 * test_codec.c - protocol readers and builders against hand-written bytes.
 *
 * Every expected message is spelled out byte by byte from the PostgreSQL
 * protocol documentation (Message Formats): type byte, big-endian int32
 * length that counts itself but not the type, then the body. Text fields
 * are written as split string literals so no escape runs into the next
 * character; each literal's length is checked along with its content.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "codec.h"

/* --- helpers --- */

/* Asserts mb holds exactly want_len bytes equal to want, and did not fail. */
static void assert_msgbuf(const struct msgbuf *mb, const void *want,
                          size_t want_len)
{
	const uint8_t *w = want;

	cr_assert_not(mb->failed, "msgbuf failed");
	cr_assert_eq(mb->len, want_len, "length %zu, want %zu", mb->len,
	             want_len);
	for (size_t i = 0; i < want_len; i++)
		cr_assert_eq(mb->data[i], w[i], "byte %zu is 0x%02x, want 0x%02x",
		             i, mb->data[i], w[i]);
}

/* The pairs codec_startup_params handed to record_param. */
struct params_seen {
	const char *keys[8];
	const char *values[8];
	size_t count;
	size_t stop_at;     /* record_param returns 7 on this call (1-based) */
};

static int record_param(void *arg, const char *key, const char *value)
{
	struct params_seen *seen = arg;

	cr_assert_lt(seen->count, 8);
	seen->keys[seen->count] = key;
	seen->values[seen->count] = value;
	seen->count++;
	return seen->count == seen->stop_at ? 7 : 0;
}

static int walk_params(const char *body, size_t len, struct params_seen *seen)
{
	return codec_startup_params((const uint8_t *)body, len, record_param,
	                            seen);
}

static enum codec_result parse_error(const char *body, size_t len,
                                     struct pg_error_fields *out)
{
	return codec_parse_error((const uint8_t *)body, len, out);
}

/* --- codec_read_header --- */

Test(codec_read_header, needs_more_below_five_bytes)
{
	const uint8_t bytes[] = { 'Q', 0, 0, 0, 8 };
	struct pg_header h;

	for (size_t avail = 0; avail < PG_HEADER_LEN; avail++)
		cr_assert_eq(codec_read_header(bytes, avail, 1000, &h),
		             CODEC_NEED_MORE, "avail %zu", avail);
}

Test(codec_read_header, rejects_length_below_four)
{
	const uint8_t three[] = { 'Q', 0, 0, 0, 3 };
	const uint8_t zero[] = { 'Q', 0, 0, 0, 0 };
	struct pg_header h;

	cr_assert_eq(codec_read_header(three, sizeof(three), 1000, &h),
	             CODEC_INVALID);
	cr_assert_eq(codec_read_header(zero, sizeof(zero), 1000, &h),
	             CODEC_INVALID);
}

Test(codec_read_header, rejects_length_above_max_len)
{
	const uint8_t over[] = { 'Q', 0, 0, 0x03, 0xe9 };        /* 1001 */
	const uint8_t huge[] = { 'Q', 0xff, 0xff, 0xff, 0xff };
	struct pg_header h;

	cr_assert_eq(codec_read_header(over, sizeof(over), 1000, &h),
	             CODEC_INVALID);
	cr_assert_eq(codec_read_header(huge, sizeof(huge), 1000, &h),
	             CODEC_INVALID);
}

Test(codec_read_header, accepts_length_four_and_max_len)
{
	const uint8_t four[] = { 'S', 0, 0, 0, 4 };
	const uint8_t max[] = { 'Q', 0, 0, 0x03, 0xe8 };         /* 1000 */
	struct pg_header h;

	cr_assert_eq(codec_read_header(four, sizeof(four), 1000, &h), CODEC_OK);
	cr_assert_eq(h.type, 'S');
	cr_assert_eq(h.len, 4);
	cr_assert_eq(codec_read_header(max, sizeof(max), 1000, &h), CODEC_OK);
	cr_assert_eq(h.type, 'Q');
	cr_assert_eq(h.len, 1000);
}

Test(codec_read_header, reads_big_endian_length_ignoring_body)
{
	/* The body bytes after the header must not matter. */
	const uint8_t bytes[] = { 'D', 0x01, 0x02, 0x03, 0x04, 0xaa, 0xbb };
	struct pg_header h;

	cr_assert_eq(codec_read_header(bytes, sizeof(bytes), UINT32_MAX, &h),
	             CODEC_OK);
	cr_assert_eq(h.type, 'D');
	cr_assert_eq(h.len, 0x01020304u);
}

/* --- codec_read_startup --- */

Test(codec_read_startup, needs_more_below_four_bytes)
{
	const uint8_t bytes[] = { 0, 0, 0, 8, 0, 3, 0, 0 };
	uint32_t len = 0, code = 0;

	for (size_t avail = 0; avail < 4; avail++)
		cr_assert_eq(codec_read_startup(bytes, avail, &len, &code),
		             CODEC_NEED_MORE, "avail %zu", avail);
}

Test(codec_read_startup, needs_more_until_code_arrives)
{
	const uint8_t bytes[] = { 0, 0, 0, 8, 0, 3, 0, 0 };
	uint32_t len = 0, code = 0;

	for (size_t avail = 4; avail < 8; avail++)
		cr_assert_eq(codec_read_startup(bytes, avail, &len, &code),
		             CODEC_NEED_MORE, "avail %zu", avail);
}

Test(codec_read_startup, accepts_lengths_8_to_10000)
{
	const uint8_t min[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	const uint8_t max[] = { 0, 0, 0x27, 0x10, 0, 3, 0, 0 };  /* 10000 */
	uint32_t len = 0, code = 0;

	cr_assert_eq(codec_read_startup(min, sizeof(min), &len, &code), CODEC_OK);
	cr_assert_eq(len, 8);
	cr_assert_eq(code, PG_SSL_REQUEST);
	cr_assert_eq(codec_read_startup(max, sizeof(max), &len, &code), CODEC_OK);
	cr_assert_eq(len, PG_MAX_STARTUP_LEN);
	cr_assert_eq(code, PG_PROTOCOL_3_0);
}

Test(codec_read_startup, rejects_length_below_8)
{
	const uint8_t seven[] = { 0, 0, 0, 7, 0, 3, 0, 0 };
	const uint8_t zero[] = { 0, 0, 0, 0, 0, 3, 0, 0 };
	uint32_t len = 0, code = 0;

	cr_assert_eq(codec_read_startup(seven, sizeof(seven), &len, &code),
	             CODEC_INVALID);
	cr_assert_eq(codec_read_startup(zero, sizeof(zero), &len, &code),
	             CODEC_INVALID);
}

Test(codec_read_startup, rejects_length_above_10000)
{
	const uint8_t over[] = { 0, 0, 0x27, 0x11, 0, 3, 0, 0 };  /* 10001 */
	const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0 };
	uint32_t len = 0, code = 0;

	cr_assert_eq(codec_read_startup(over, sizeof(over), &len, &code),
	             CODEC_INVALID);
	cr_assert_eq(codec_read_startup(huge, sizeof(huge), &len, &code),
	             CODEC_INVALID);
}

Test(codec_read_startup, rejects_bad_length_before_code_arrives)
{
	/* A garbage length is refused as soon as it is readable. */
	const uint8_t bytes[] = { 0x47, 0x45, 0x54, 0x20 };       /* "GET " */
	uint32_t len = 0, code = 0;

	cr_assert_eq(codec_read_startup(bytes, sizeof(bytes), &len, &code),
	             CODEC_INVALID);
}

/* --- codec_reader --- */

Test(codec_reader, reads_each_type_in_order)
{
	const uint8_t body[] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
	                         'h', 'i', 0, 0xaa, 0xbb };
	struct codec_reader r;
	const uint8_t *raw;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_eq(codec_get_u8(&r), 0x01);
	cr_assert_eq(codec_get_u16(&r), 0x0203);
	cr_assert_eq(codec_get_u32(&r), 0x04050607u);
	cr_assert_str_eq(codec_get_str(&r), "hi");
	raw = codec_get_bytes(&r, 2);
	cr_assert_eq(raw, body + 10);
	cr_assert_not(r.bad);
	cr_assert_eq(r.pos, sizeof(body));
}

Test(codec_reader, high_bits_are_not_sign_extended)
{
	const uint8_t body[] = { 0xff, 0xfe, 0xff, 0xff, 0xff, 0xfd, 0x80 };
	struct codec_reader r;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_eq(codec_get_u16(&r), 0xfffeu);
	cr_assert_eq(codec_get_u32(&r), 0xfffffffdu);
	cr_assert_eq(codec_get_u8(&r), 0x80);
	cr_assert_not(r.bad);
}

Test(codec_reader, u8_overrun_sets_bad)
{
	struct codec_reader r;

	codec_reader_init(&r, (const uint8_t *)"", 0);
	cr_assert_eq(codec_get_u8(&r), 0);
	cr_assert(r.bad);
}

Test(codec_reader, u16_overrun_sets_bad)
{
	const uint8_t body[] = { 0x12 };
	struct codec_reader r;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_eq(codec_get_u16(&r), 0);
	cr_assert(r.bad);
}

Test(codec_reader, u32_overrun_sets_bad)
{
	const uint8_t body[] = { 0x12, 0x34, 0x56 };
	struct codec_reader r;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_eq(codec_get_u32(&r), 0);
	cr_assert(r.bad);
}

Test(codec_reader, bytes_overrun_sets_bad)
{
	const uint8_t body[] = { 1, 2, 3 };
	struct codec_reader r;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_not_null(codec_get_bytes(&r, 2));
	cr_assert_null(codec_get_bytes(&r, 2));
	cr_assert(r.bad);
}

Test(codec_reader, bad_is_sticky)
{
	/* After an overrun nothing more is read, even bytes that would fit. */
	const uint8_t body[] = { 'a', 0, 0x12 };
	struct codec_reader r;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_null(codec_get_bytes(&r, 4));
	cr_assert(r.bad);
	cr_assert_eq(codec_get_u8(&r), 0);
	cr_assert_null(codec_get_str(&r));
	cr_assert_null(codec_get_bytes(&r, 1));
	cr_assert(r.bad);
}

Test(codec_reader, unterminated_string_sets_bad)
{
	const uint8_t body[] = { 'a', 'b', 'c' };
	struct codec_reader r;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_null(codec_get_str(&r));
	cr_assert(r.bad);
}

Test(codec_reader, string_at_end_of_body_sets_bad)
{
	const uint8_t body[] = { 'a', 0 };
	struct codec_reader r;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_str_eq(codec_get_str(&r), "a");
	cr_assert_not(r.bad);
	cr_assert_null(codec_get_str(&r));
	cr_assert(r.bad);
}

Test(codec_reader, empty_string_advances_one_byte)
{
	const uint8_t body[] = { 0, 'x', 0 };
	struct codec_reader r;

	codec_reader_init(&r, body, sizeof(body));
	cr_assert_str_eq(codec_get_str(&r), "");
	cr_assert_eq(r.pos, 1);
	cr_assert_str_eq(codec_get_str(&r), "x");
	cr_assert_eq(r.pos, 3);
	cr_assert_not(r.bad);
}

/* --- codec_startup_params --- */

Test(codec_startup_params, walks_pairs_in_order)
{
	static const char body[] = "user\0alice\0" "database\0shop\0"
	                           "application_name\0\0" "\0";
	struct params_seen seen = { .count = 0 };

	cr_assert_eq(walk_params(body, sizeof(body) - 1, &seen), CODEC_OK);
	cr_assert_eq(seen.count, 3);
	cr_assert_str_eq(seen.keys[0], "user");
	cr_assert_str_eq(seen.values[0], "alice");
	cr_assert_str_eq(seen.keys[1], "database");
	cr_assert_str_eq(seen.values[1], "shop");
	cr_assert_str_eq(seen.keys[2], "application_name");
	cr_assert_str_eq(seen.values[2], "");
}

Test(codec_startup_params, empty_list_is_ok)
{
	struct params_seen seen = { .count = 0 };

	cr_assert_eq(walk_params("", 1, &seen), CODEC_OK);
	cr_assert_eq(seen.count, 0);
}

Test(codec_startup_params, empty_body_is_invalid)
{
	struct params_seen seen = { .count = 0 };

	cr_assert_eq(walk_params("", 0, &seen), CODEC_INVALID);
	cr_assert_eq(seen.count, 0);
}

Test(codec_startup_params, missing_terminator_is_invalid)
{
	static const char body[] = "user\0alice\0";
	struct params_seen seen = { .count = 0 };

	cr_assert_eq(walk_params(body, sizeof(body) - 1, &seen), CODEC_INVALID);
}

Test(codec_startup_params, unterminated_value_is_invalid)
{
	static const char body[] = "user\0alice";
	struct params_seen seen = { .count = 0 };

	cr_assert_eq(walk_params(body, sizeof(body) - 1, &seen), CODEC_INVALID);
	cr_assert_eq(seen.count, 0);
}

Test(codec_startup_params, unterminated_key_is_invalid)
{
	static const char body[] = "user\0alice\0" "datab";
	struct params_seen seen = { .count = 0 };

	cr_assert_eq(walk_params(body, sizeof(body) - 1, &seen), CODEC_INVALID);
}

Test(codec_startup_params, missing_value_is_invalid)
{
	static const char body[] = "user\0";
	struct params_seen seen = { .count = 0 };

	cr_assert_eq(walk_params(body, sizeof(body) - 1, &seen), CODEC_INVALID);
	cr_assert_eq(seen.count, 0);
}

Test(codec_startup_params, bytes_after_terminator_are_invalid)
{
	static const char body[] = "user\0alice\0" "\0" "x";
	static const char two_nuls[] = "\0";
	struct params_seen seen = { .count = 0 };

	cr_assert_eq(walk_params(body, sizeof(body) - 1, &seen), CODEC_INVALID);
	cr_assert_eq(walk_params(two_nuls, sizeof(two_nuls), &seen),
	             CODEC_INVALID);
}

Test(codec_startup_params, callback_nonzero_stops_the_walk)
{
	static const char body[] = "user\0alice\0" "database\0shop\0"
	                           "options\0-c x=1\0" "\0";
	struct params_seen seen = { .count = 0, .stop_at = 2 };

	cr_assert_eq(walk_params(body, sizeof(body) - 1, &seen), 7);
	cr_assert_eq(seen.count, 2);
	cr_assert_str_eq(seen.keys[1], "database");
}

/* --- codec_parse_error --- */

Test(codec_parse_error, picks_s_c_and_m)
{
	/* S is the localized severity; V (non-localized) must not replace it. */
	static const char body[] = "SERREUR\0" "VERROR\0" "C42601\0"
	                           "Msyntax error\0" "P5\0" "\0";
	struct pg_error_fields f;

	cr_assert_eq(parse_error(body, sizeof(body) - 1, &f), CODEC_OK);
	cr_assert_str_eq(f.severity, "ERREUR");
	cr_assert_str_eq(f.sqlstate, "42601");
	cr_assert_str_eq(f.message, "syntax error");
}

Test(codec_parse_error, absent_fields_are_empty)
{
	static const char body[] = "Mno severity\0" "\0";
	struct pg_error_fields f = { "junk", "junk", "junk" };

	cr_assert_eq(parse_error(body, sizeof(body) - 1, &f), CODEC_OK);
	cr_assert_str_eq(f.severity, "");
	cr_assert_str_eq(f.sqlstate, "");
	cr_assert_str_eq(f.message, "no severity");
}

Test(codec_parse_error, terminator_alone_is_ok)
{
	struct pg_error_fields f = { "junk", "junk", "junk" };

	cr_assert_eq(parse_error("", 1, &f), CODEC_OK);
	cr_assert_str_eq(f.severity, "");
	cr_assert_str_eq(f.sqlstate, "");
	cr_assert_str_eq(f.message, "");
}

Test(codec_parse_error, empty_body_is_invalid)
{
	struct pg_error_fields f;

	cr_assert_eq(parse_error("", 0, &f), CODEC_INVALID);
}

Test(codec_parse_error, unterminated_value_is_invalid)
{
	static const char body[] = "SERROR\0" "Mtrunc";
	struct pg_error_fields f;

	cr_assert_eq(parse_error(body, sizeof(body) - 1, &f), CODEC_INVALID);
}

Test(codec_parse_error, missing_final_terminator_is_invalid)
{
	static const char body[] = "SERROR\0" "C08P01\0";
	struct pg_error_fields f;

	cr_assert_eq(parse_error(body, sizeof(body) - 1, &f), CODEC_INVALID);
}

Test(codec_parse_error, reads_what_codec_put_error_builds)
{
	struct msgbuf mb;
	struct pg_error_fields f;

	msgbuf_init(&mb);
	codec_put_error(&mb, "FATAL", SQLSTATE_INVALID_PASSWORD,
	                "password authentication failed for user \"bob\"");
	cr_assert_not(mb.failed);
	cr_assert_eq(codec_parse_error(mb.data + PG_HEADER_LEN,
	                               mb.len - PG_HEADER_LEN, &f), CODEC_OK);
	cr_assert_str_eq(f.severity, "FATAL");
	cr_assert_str_eq(f.sqlstate, "28P01");
	cr_assert_str_eq(f.message,
	                 "password authentication failed for user \"bob\"");
	msgbuf_free(&mb);
}

/* --- builders --- */

Test(codec_put, error)
{
	/* 4 + (1+6) + (1+6) + (1+6) + (1+4) + 1 = 31 */
	static const char want[] = "E" "\0\0\0\x1f" "SERROR\0" "VERROR\0"
	                           "C08P01\0" "Mbad\0" "\0";
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_error(&mb, "ERROR", SQLSTATE_PROTOCOL_VIOLATION, "bad");
	assert_msgbuf(&mb, want, sizeof(want) - 1);
	msgbuf_free(&mb);
}

Test(codec_put, notice)
{
	/* 4 + (1+7) + (1+7) + (1+6) + (1+3) + 1 = 32 */
	static const char want[] = "N" "\0\0\0\x20" "SNOTICE\0" "VNOTICE\0"
	                           "C00000\0" "Mhi\0" "\0";
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_notice(&mb, "hi");
	assert_msgbuf(&mb, want, sizeof(want) - 1);
	msgbuf_free(&mb);
}

Test(codec_put, auth_ok_without_data)
{
	const uint8_t want[] = { 'R', 0, 0, 0, 8, 0, 0, 0, 0 };
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_auth(&mb, PG_AUTH_OK, NULL, 0);
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
}

Test(codec_put, auth_md5_with_salt)
{
	const uint8_t salt[] = { 0x01, 0x02, 0xfe, 0xff };
	const uint8_t want[] = { 'R', 0, 0, 0, 12, 0, 0, 0, 5,
	                         0x01, 0x02, 0xfe, 0xff };
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_auth(&mb, PG_AUTH_MD5, salt, sizeof(salt));
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
}

Test(codec_put, parameter_status)
{
	/* 4 + 16 + 5 = 25 */
	static const char want[] = "S" "\0\0\0\x19" "client_encoding\0" "UTF8\0";
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_parameter_status(&mb, "client_encoding", "UTF8");
	assert_msgbuf(&mb, want, sizeof(want) - 1);
	msgbuf_free(&mb);
}

Test(codec_put, backend_key)
{
	const uint8_t want[] = { 'K', 0, 0, 0, 12, 0x01, 0x02, 0x03, 0x04,
	                         0xde, 0xad, 0xbe, 0xef };
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_backend_key(&mb, 0x01020304u, 0xdeadbeefu);
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
}

Test(codec_put, ready)
{
	const uint8_t want[] = { 'Z', 0, 0, 0, 5, 'T' };
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_ready(&mb, 'T');
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
}

Test(codec_put, query)
{
	static const char want[] = "Q" "\0\0\0\x0d" "SELECT 1\0";
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_query(&mb, "SELECT 1");
	assert_msgbuf(&mb, want, sizeof(want) - 1);
	msgbuf_free(&mb);
}

Test(codec_put, password)
{
	static const char want[] = "p" "\0\0\0\x0b" "secret\0";
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_password(&mb, "secret", 7);
	assert_msgbuf(&mb, want, sizeof(want) - 1);
	msgbuf_free(&mb);
}

Test(codec_put, sasl_initial)
{
	/* 4 + 14 + 4 + 11 = 33; the data length is an int32, no NUL after */
	static const char want[] = "p" "\0\0\0\x21" "SCRAM-SHA-256\0"
	                           "\0\0\0\x0b" "n,,n=,r=abc";
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_sasl_initial(&mb, "SCRAM-SHA-256", "n,,n=,r=abc", 11);
	assert_msgbuf(&mb, want, sizeof(want) - 1);
	msgbuf_free(&mb);
}

Test(codec_put, cancel_is_a_startup_packet)
{
	/* No type byte; 80877102 = 0x04d2162e (1234 << 16 | 5678). */
	const uint8_t want[] = { 0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e,
	                         0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d };
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_cancel(&mb, 0x01020304u, 0x0a0b0c0du);
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
}

Test(codec_put, row_description)
{
	/* 4 + 2 + (2 + 18) + (3 + 18) = 47; per field: name, table oid 0,
	 * column 0, type oid 25 (text), size -1, modifier -1, format 0 */
	const char *const names[] = { "a", "bc" };
	const uint8_t want[] = {
		'T', 0, 0, 0, 47, 0, 2,
		'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
		'b', 'c', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
	};
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_row_description(&mb, names, 2);
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
}

Test(codec_put, row_description_without_columns)
{
	const uint8_t want[] = { 'T', 0, 0, 0, 6, 0, 0 };
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_row_description(&mb, NULL, 0);
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
}

Test(codec_put, data_row_with_null_and_empty)
{
	/* 4 + 2 + (4+1) + 4 + 4 = 19; NULL is length -1 with no bytes,
	 * the empty string is length 0 */
	const char *const values[] = { "x", NULL, "" };
	const uint8_t want[] = {
		'D', 0, 0, 0, 19, 0, 3,
		0, 0, 0, 1, 'x',
		0xff, 0xff, 0xff, 0xff,
		0, 0, 0, 0,
	};
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_data_row(&mb, values, 3);
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
}

Test(codec_put, command_complete)
{
	static const char want[] = "C" "\0\0\0\x0d" "SELECT 3\0";
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_command_complete(&mb, "SELECT 3");
	assert_msgbuf(&mb, want, sizeof(want) - 1);
	msgbuf_free(&mb);
}

Test(codec_put, messages_append_with_own_lengths)
{
	/* Each length counts only its own message, not what came before. */
	static const char want[] = "C" "\0\0\0\x0d" "SELECT 3\0"
	                           "Z" "\0\0\0\x05" "I"
	                           "\0\0\0\x10" "\x04\xd2\x16\x2e"
	                           "\0\0\0\x07" "\0\0\0\x09";
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_command_complete(&mb, "SELECT 3");
	codec_put_ready(&mb, 'I');
	codec_put_cancel(&mb, 7, 9);
	assert_msgbuf(&mb, want, sizeof(want) - 1);
	msgbuf_free(&mb);
}

/* --- msgbuf --- */

Test(msgbuf, growth_past_256_keeps_content)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	for (size_t i = 0; i < 1000; i++)
		msgbuf_put_u8(&mb, (uint8_t)(i * 7));
	cr_assert_not(mb.failed);
	cr_assert_eq(mb.len, 1000);
	cr_assert_geq(mb.cap, 1000);
	for (size_t i = 0; i < 1000; i++)
		cr_assert_eq(mb.data[i], (uint8_t)(i * 7), "byte %zu", i);
	msgbuf_free(&mb);
}

Test(msgbuf, long_message_length_spans_bytes)
{
	/* 4 + 300 + 1 = 305 = 0x0131, straddling the first 256-byte block */
	char sql[301];
	struct msgbuf mb;

	memset(sql, 'a', 300);
	sql[300] = '\0';
	msgbuf_init(&mb);
	codec_put_ready(&mb, 'I');
	codec_put_query(&mb, sql);
	cr_assert_not(mb.failed);
	cr_assert_eq(mb.len, 6 + 306);
	cr_assert_eq(memcmp(mb.data, "Z\0\0\0\x05I", 6), 0);
	cr_assert_eq(memcmp(mb.data + 6, "Q\0\0\x01\x31", 5), 0);
	cr_assert_eq(memcmp(mb.data + 11, sql, 301), 0);
	msgbuf_free(&mb);
}

Test(msgbuf, one_put_larger_than_twice_the_capacity)
{
	uint8_t block[2000];
	struct msgbuf mb;

	for (size_t i = 0; i < sizeof(block); i++)
		block[i] = (uint8_t)(i ^ (i >> 8));
	msgbuf_init(&mb);
	msgbuf_put_u16(&mb, 0xabcd);
	msgbuf_put_bytes(&mb, block, sizeof(block));
	cr_assert_not(mb.failed);
	cr_assert_eq(mb.len, 2 + sizeof(block));
	cr_assert_eq(mb.data[0], 0xab);
	cr_assert_eq(mb.data[1], 0xcd);
	cr_assert_eq(memcmp(mb.data + 2, block, sizeof(block)), 0);
	msgbuf_free(&mb);
}

Test(msgbuf, free_then_reuse)
{
	const uint8_t want[] = { 'Z', 0, 0, 0, 5, 'E' };
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_query(&mb, "SELECT 1");
	msgbuf_free(&mb);
	cr_assert_null(mb.data);
	cr_assert_eq(mb.len, 0);
	cr_assert_eq(mb.cap, 0);
	cr_assert_not(mb.failed);

	codec_put_ready(&mb, 'E');
	assert_msgbuf(&mb, want, sizeof(want));
	msgbuf_free(&mb);
	msgbuf_free(&mb);   /* a second free is harmless */
	cr_assert_null(mb.data);
}

Test(msgbuf, failed_buffer_ignores_writes)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	mb.failed = true;
	codec_put_query(&mb, "SELECT 1");
	cr_assert(mb.failed);
	cr_assert_eq(mb.len, 0);
	cr_assert_null(mb.data);
	msgbuf_free(&mb);
	cr_assert_not(mb.failed);
}
