/*
 * fuzz_ini.c - the ini reader (inifile.c) and the config built from it.
 *
 * Input: the content of a sluice.ini, written to a scratch file. It is
 * read twice: by inifile_read with a handler that checks each entry, then
 * by config_load, which gives each [sluice]/[pgbouncer] key, [databases]
 * and [users] entry to its parser (config.c, config_values.c,
 * config_entries.c). A key named "stop" makes the handler refuse it, to
 * run the error path.
 *
 * Invariants: entries come in file order with line numbers within the
 * file; a key is made of [A-Za-z0-9_.*-]; key and value are exactly the
 * text of their line as PgBouncer reads it (the value after '=' and any
 * spaces or tabs, up to the end of the line less trailing blanks), so the
 * escaping and splitting of values on their way through inih undo
 * themselves; a header has neither key nor value; an error names the
 * file and, for a refused entry, its line and the handler's message; a
 * config that loads has a main section's values in range and every
 * [databases] entry named, with a valid port.
 */
#include "fuzz.h"

#include "config.h"
#include "inifile.h"

#define KEY_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" \
                  "0123456789_.-*"
#define BLANKS " \t\n\v\f\r"

/* What the handler knows of the file being read. */
struct check {
	const char *path;
	const uint8_t *data;
	size_t size;
	unsigned lines;       /* physical lines in the file */
	unsigned last_line;   /* of the previous entry in this file */
	unsigned stop_line;   /* where a "stop" key was refused, 0: none */
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_scratch_init();
	return 0;
}

/* Line n (1-based) of the file as a C string would see it: up to its
 * newline or its first NUL; *len set. */
static const char *line_of(const struct check *c, unsigned n, size_t *len)
{
	const uint8_t *p = c->data, *end = c->data + c->size, *nl;

	for (; n > 1; n--) {
		nl = memchr(p, '\n', (size_t)(end - p));
		FUZZ_ASSERT(nl != NULL);
		p = nl + 1;
	}
	nl = memchr(p, '\n', (size_t)(end - p));
	*len = strnlen((const char *)p, (size_t)((nl ? nl : end) - p));
	return (const char *)p;
}

/* The key and value must be exactly what the line says, as PgBouncer
 * reads it: blanks, key, blanks, '=', spaces and tabs, the value up to the
 * end of the line less its trailing blanks. */
static void check_text(const struct check *c, const struct ini_entry *e)
{
	size_t len, klen, vlen;
	const char *p = line_of(c, e->line, &len), *end = p + len;

	while (p < end && strchr(BLANKS, *p))
		p++;
	klen = strspn(p, KEY_CHARS);
	FUZZ_ASSERT(klen == strlen(e->key) && memcmp(p, e->key, klen) == 0);
	p += klen;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	FUZZ_ASSERT(p < end && *p == '=');
	for (p++; p < end && (*p == ' ' || *p == '\t'); p++)
		;
	vlen = (size_t)(end - p);
	while (vlen > 0 && strchr(BLANKS, p[vlen - 1]))
		vlen--;
	FUZZ_ASSERT(vlen == strlen(e->value) && memcmp(p, e->value, vlen) == 0);
}

static int handler(void *arg, const struct ini_entry *e, char *err,
                   size_t errlen)
{
	struct check *c = arg;

	FUZZ_ASSERT(e->file != NULL && e->line >= 1);
	if (strcmp(e->file, c->path) == 0) {  /* not a %include'd file */
		FUZZ_ASSERT(e->line <= c->lines && e->line >= c->last_line);
		c->last_line = e->line;
	}
	if (!e->key) {
		FUZZ_ASSERT(e->section != NULL && e->value == NULL);
		return 0;
	}
	FUZZ_ASSERT(*e->key && e->key[strspn(e->key, KEY_CHARS)] == '\0');
	FUZZ_ASSERT(e->value != NULL);
	if (*e->value) {
		FUZZ_ASSERT(e->value[0] != ' ' && e->value[0] != '\t');
		FUZZ_ASSERT(!strchr(BLANKS, e->value[strlen(e->value) - 1]));
	}
	if (strcmp(e->file, c->path) == 0)
		check_text(c, e);
	if (strcmp(e->key, "stop") == 0 && strcmp(e->file, c->path) == 0) {
		c->stop_line = e->line;
		snprintf(err, errlen, "stopped");
		return -1;
	}
	return 0;
}

static void check_error(const struct check *c, const char *err)
{
	char want[160];

	FUZZ_ASSERT(err[0] != '\0');
	if (c->stop_line) {
		snprintf(want, sizeof(want), "%s:%u: stopped", c->path,
		         c->stop_line);
		FUZZ_ASSERT(strcmp(err, want) == 0);
	}
}

static void check_config(const struct config *cfg)
{
	FUZZ_ASSERT(cfg->max_client_conn >= 1);
	FUZZ_ASSERT(cfg->listen_port >= 1 && cfg->listen_port <= 65535);
	FUZZ_ASSERT(cfg->pkt_buf >= 1024 && cfg->max_packet_size >= 1024);
	for (const struct db_config *db = cfg->databases; db; db = db->next)
		FUZZ_ASSERT(db->name != NULL && db->name[0] != '\0' &&
		            db->port >= 1 && db->port <= 65535);
	for (const struct user_config *u = cfg->users; u; u = u->next)
		FUZZ_ASSERT(u->name != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[128], err[512];
	struct check c = { .data = data, .size = size, .lines = 1 };
	struct config *cfg = NULL;

	c.path = fuzz_scratch_write("sluice.ini", data, size, path,
	                            sizeof(path));
	for (size_t i = 0; i + 1 < size; i++)
		c.lines += data[i] == '\n';
	if (inifile_read(path, handler, &c, err, sizeof(err)) < 0)
		check_error(&c, err);
	else
		FUZZ_ASSERT(err[0] == '\0' && c.stop_line == 0);
	if (config_load(path, &cfg, err, sizeof(err)) == 0) {
		check_config(cfg);
		config_free(cfg);
	} else {
		FUZZ_ASSERT(cfg == NULL && err[0] != '\0');
	}
	return 0;
}
