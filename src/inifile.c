/*
 * inifile.c - a pgbouncer.ini-style file, read as PgBouncer reads it.
 *
 * Owns the lexical rules, which are PgBouncer's: a comment is a line whose
 * first non-blank character is ; or #; a value runs to the end of its line
 * (no inline comments), trailing whitespace cut; whitespace before a key
 * is ignored; a key is made of [A-Za-z0-9_.*-] and followed by =;
 * "%include FILE" reads FILE in its place.
 *
 * The parser is inih, whose rules differ: it cuts lines at 200 bytes, takes
 * " ;" as the start of an inline comment and an indented line as more of
 * the previous value, knows no %include and gives no line numbers. So inih
 * never sees the file: our reader (the fgets of ini_parse_stream) reads it,
 * applies the rules above and hands inih canonical lines only, "[section]"
 * and "key=value" with the value %XX-escaped (whitespace, control bytes,
 * non-ASCII, ; # and %), leaving inih nothing to trim or cut, and split into
 * pieces that fit its buffer. The handler glues the pieces back. inih
 * handles a line before it reads the next, so the reader's position is the
 * file:line of the entry being handled. The runtime knobs of Debian's inih
 * (ini_allow_inline_comments, ini_max_line...) are left alone: they would
 * not give us the rest, and other builds of inih do not have them.
 */
#include "inifile.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_INCLUDE_DEPTH 10 /* nested %include levels, PgBouncer's limit */
#define MAX_KEY_LEN 128      /* keeps room for a value in inih's 200 bytes */
#define MAX_SECTION_LEN 49   /* inih keeps 50 bytes of a section name */
#define SPACES " \t\n\v\f\r"
#define KEY_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" \
                  "0123456789_.-*"

/* One open file of the %include stack. */
struct source {
	FILE *fp;
	char *path;               /* as given or as written after %include */
	unsigned line;            /* lines read so far */
};

/* What the reader and the handler share during one inifile_read(). */
struct reader {
	struct source src[MAX_INCLUDE_DEPTH + 1];
	int depth;                /* index of the file being read, -1: none */
	char *raw;                /* the physical line, any length */
	size_t raw_cap;
	const char *main_path;
	const char *file;         /* where the line being handled is */
	unsigned line;
	char key[MAX_KEY_LEN + 1]; /* the key being handed over */
	const char *pending;      /* what inih has not had of its value; in raw */
	bool more;                /* inih has a piece that is not the last */
	char *value;              /* the pieces, glued back by the handler */
	size_t value_len, value_cap;
	int (*fn)(void *arg, const struct ini_entry *entry, char *err,
	          size_t errlen);
	void *arg;
	char *err;                /* the caller's; the first error goes here */
	size_t errlen;
	bool failed;
};

/* Records the first error as "file:line: message"; returns -1. */
__attribute__((format(printf, 2, 3)))
static int fail_at(struct reader *rd, const char *fmt, ...)
{
	bool first = !rd->failed;
	size_t n;
	va_list ap;

	rd->failed = true;
	if (!first || rd->errlen == 0)
		return -1;
	snprintf(rd->err, rd->errlen, "%s:%u: ", rd->file, rd->line);
	n = strlen(rd->err);
	va_start(ap, fmt);
	vsnprintf(rd->err + n, rd->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Gives an entry to the caller's fn, which writes its message, if any,
 * after the "file:line: " we put in err first. */
static int call_fn(struct reader *rd, const char *section, const char *key,
                   const char *value)
{
	struct ini_entry e = { rd->file, rd->line, section, key, value };
	char scratch[1];
	char *msg = scratch;
	size_t msglen = sizeof(scratch);
	int n;

	n = snprintf(rd->err, rd->errlen, "%s:%u: ", rd->file, rd->line);
	if (n >= 0 && (size_t)n + 1 < rd->errlen) {
		msg = rd->err + n;
		msglen = rd->errlen - (size_t)n;
	}
	msg[0] = '\0';
	if (rd->fn(rd->arg, &e, msg, msglen) == 0)
		return 0;
	rd->failed = true;
	return -1;
}

/* Opens path for reading; 0 or an errno (a directory is EISDIR). */
static int open_file(const char *path, FILE **out)
{
	struct stat st;
	FILE *fp = fopen(path, "re");

	if (!fp)
		return errno;
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(fp);
		return EISDIR;
	}
	*out = fp;
	return 0;
}

static int push_source(struct reader *rd, FILE *fp, const char *path)
{
	char *copy = strdup(path);

	if (!copy) {
		fclose(fp);
		return fail_at(rd, "out of memory");
	}
	rd->depth++;
	rd->src[rd->depth] = (struct source){ fp, copy, 0 };
	return 0;
}

static void pop_source(struct reader *rd)
{
	struct source *s = &rd->src[rd->depth--];

	fclose(s->fp);
	free(s->path);
	rd->file = rd->depth >= 0 ? rd->src[rd->depth].path : rd->main_path;
	rd->line = rd->depth >= 0 ? rd->src[rd->depth].line : 0;
}

/* Reads the next physical line into raw, leaving files that are done;
 * false at the end of the main file or on a read error. */
static bool read_line(struct reader *rd)
{
	struct source *s;

	while (rd->depth >= 0) {
		s = &rd->src[rd->depth];
		if (getline(&rd->raw, &rd->raw_cap, s->fp) >= 0) {
			rd->file = s->path;
			rd->line = ++s->line;
			return true;
		}
		if (ferror(s->fp)) {
			rd->failed = true;
			snprintf(rd->err, rd->errlen, "%s: cannot read: %s",
			         s->path, strerror(errno));
			return false;
		}
		pop_source(rd);
	}
	return false;
}

static void trim_end(char *p)
{
	size_t n = strlen(p);

	while (n > 0 && strchr(SPACES, p[n - 1]))
		p[--n] = '\0';
}

static bool is_include(const char *p)
{
	return strncmp(p, "%include", 8) == 0 &&
	       (p[8] == '\0' || strchr(SPACES, p[8]));
}

/* "%include FILE": reading goes on in FILE, then after this line. */
static int include(struct reader *rd, char *p)
{
	FILE *fp;
	int e;

	p += strspn(p, SPACES);
	trim_end(p);
	if (*p == '\0')
		return fail_at(rd, "%%include without a file name");
	if (rd->depth >= MAX_INCLUDE_DEPTH)
		return fail_at(rd, "%%include nested too deeply (max %d levels)",
		               MAX_INCLUDE_DEPTH);
	e = open_file(p, &fp);
	if (e)
		return fail_at(rd, "cannot open %s: %s", p, strerror(e));
	return push_source(rd, fp, p);
}

static bool needs_escape(unsigned char c)
{
	return c <= ' ' || c >= 0x7f || c == '%' || c == ';' || c == '#';
}

/* Writes "key=" and as much of the pending value as fits into buf. */
static char *emit_piece(struct reader *rd, char *buf, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t klen = strlen(rd->key);
	size_t n = klen + 1, need;
	unsigned char c;

	if (size < klen + 6) {  /* key, =, one escape, newline, NUL */
		fail_at(rd, "key too long for the parser's line buffer");
		return NULL;
	}
	memcpy(buf, rd->key, klen);
	buf[klen] = '=';
	while ((c = (unsigned char)*rd->pending) != '\0') {
		need = needs_escape(c) ? 3 : 1;
		if (n + need > size - 2)
			break;
		if (need == 3) {
			buf[n++] = '%';
			buf[n++] = hex[c >> 4];
			buf[n++] = hex[c & 15];
		} else {
			buf[n++] = (char)c;
		}
		rd->pending++;
	}
	buf[n++] = '\n';
	buf[n] = '\0';
	rd->more = *rd->pending != '\0';
	return buf;
}

/* "[name]", optionally followed by a comment. */
static char *lex_section(struct reader *rd, char *p, char *buf, size_t size)
{
	char *name = p + 1;
	char *end = strchr(name, ']');
	char *rest;

	if (!end) {
		fail_at(rd, "syntax error: missing ] after section name");
		return NULL;
	}
	*end = '\0';
	rest = end + 1 + strspn(end + 1, SPACES);
	if (*rest && *rest != ';' && *rest != '#') {
		fail_at(rd, "syntax error: text after [%s]", name);
		return NULL;
	}
	if (call_fn(rd, name, NULL, NULL) < 0)
		return NULL;
	/* only names the caller knows get here: these checks are for inih */
	if (strlen(name) > MAX_SECTION_LEN || strlen(name) + 4 > size ||
	    name[strspn(name, KEY_CHARS)] != '\0') {
		fail_at(rd, "invalid section name [%s]", name);
		return NULL;
	}
	snprintf(buf, size, "[%s]\n", name);
	return buf;
}

/* "key = value": remembers both and hands inih the first piece. */
static char *lex_setting(struct reader *rd, char *p, char *buf, size_t size)
{
	size_t klen = strspn(p, KEY_CHARS);
	char *v = p + klen;

	v += strspn(v, " \t");
	if (klen == 0 || *v != '=') {
		fail_at(rd, "syntax error: expected key = value");
		return NULL;
	}
	if (klen > MAX_KEY_LEN) {
		fail_at(rd, "key longer than %d bytes", MAX_KEY_LEN);
		return NULL;
	}
	memcpy(rd->key, p, klen);
	rd->key[klen] = '\0';
	v++;
	v += strspn(v, " \t");
	trim_end(v);
	rd->pending = v;
	return emit_piece(rd, buf, size);
}

/* inih's reader: the next canonical line into buf, NULL at the end. */
static char *reader_cb(char *buf, int size, void *stream)
{
	struct reader *rd = stream;
	char *p;

	if (rd->failed || size <= 0)
		return NULL;
	if (rd->more)
		return emit_piece(rd, buf, (size_t)size);
	while (read_line(rd)) {
		p = rd->raw + strspn(rd->raw, SPACES);
		if (*p == '\0' || *p == ';' || *p == '#')
			continue;
		if (is_include(p)) {
			if (include(rd, p + 8) < 0)
				return NULL;
			continue;
		}
		if (*p == '[')
			return lex_section(rd, p, buf, (size_t)size);
		return lex_setting(rd, p, buf, (size_t)size);
	}
	return NULL;
}

static unsigned hex_value(char c)
{
	return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* Unescapes piece onto the end of value. */
static int append_piece(struct reader *rd, const char *piece)
{
	size_t need = rd->value_len + strlen(piece) + 1;
	char *v;

	if (need > rd->value_cap) {
		v = realloc(rd->value, need * 2);
		if (!v)
			return -1;
		rd->value = v;
		rd->value_cap = need * 2;
	}
	v = rd->value + rd->value_len;
	for (; *piece; piece++) {
		if (piece[0] == '%' && piece[1] && piece[2]) {
			*v++ = (char)(hex_value(piece[1]) << 4 |
			              hex_value(piece[2]));
			piece += 2;
		} else {
			*v++ = *piece;
		}
	}
	*v = '\0';
	rd->value_len = (size_t)(v - rd->value);
	return 0;
}

/* inih's handler: collects the pieces, then gives the entry to fn. */
static int handler_cb(void *user, const char *section, const char *name,
                      const char *value)
{
	struct reader *rd = user;
	int rc;

	if (rd->failed)
		return 0;
	if (append_piece(rd, value) < 0) {
		fail_at(rd, "out of memory");
		return 0;
	}
	if (rd->more)
		return 1;
	rc = call_fn(rd, section[0] ? section : NULL, name, rd->value);
	rd->value_len = 0;
	return rc == 0;
}

int inifile_read(const char *path,
                 int (*fn)(void *arg, const struct ini_entry *entry,
                           char *err, size_t errlen),
                 void *arg, char *err, size_t errlen)
{
	struct reader rd = {
		.depth = -1, .main_path = path, .file = path,
		.fn = fn, .arg = arg, .err = err, .errlen = errlen,
	};
	FILE *fp;
	int e, rc;

	e = open_file(path, &fp);
	if (e) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -1;
	}
	if (push_source(&rd, fp, path) < 0)
		return -1;
	rc = ini_parse_stream(reader_cb, &rd, handler_cb, &rd);
	if (rc != 0 && !rd.failed)  /* inih choked on a line of ours: a bug */
		fail_at(&rd, "%s", rc == -2 ? "out of memory" : "cannot parse");
	while (rd.depth >= 0)
		pop_source(&rd);
	free(rd.raw);
	free(rd.value);
	if (rd.failed)
		return -1;
	if (errlen > 0)
		err[0] = '\0';
	return 0;
}
