/*
 * userlist.c - the auth_file, in PgBouncer's userlist.txt format.
 *
 * Each line holds "user" "secret", both double-quoted, with "" inside the
 * quotes standing for one quote; anything after the secret is ignored, as
 * are blank lines and lines starting (after whitespace) with ; or #. The
 * secret is kept as written: plain text, "md5" + 32 hex digits, or a
 * "SCRAM-SHA-256$..." verifier; auth.c tells them apart.
 */
#include "userlist.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Unquotes the field that starts at *pp (which must be '"') into a new
 * string and moves *pp past its closing quote. Returns NULL with *why set
 * when the field is not there or not closed, or (why NULL) out of memory.
 */
static char *take_quoted(char **pp, const char **why)
{
	char *p = *pp, *out, *dst;

	*why = NULL;
	if (*p != '"') {
		*why = "not double-quoted";
		return NULL;
	}
	out = dst = malloc(strlen(p));
	if (!out)
		return NULL;
	for (p++; *p; p++) {
		if (*p == '"' && p[1] != '"')
			break;
		if (*p == '"')
			p++;            /* "" stands for one quote */
		*dst++ = *p;
	}
	if (*p != '"') {
		free(out);
		*why = "missing closing double quote";
		return NULL;
	}
	*dst = '\0';
	*pp = p + 1;
	return out;
}

static struct auth_entry *parse_entry(char *p, const char **why)
{
	struct auth_entry *e = calloc(1, sizeof(*e));

	*why = NULL;
	if (!e)
		return NULL;
	e->name = take_quoted(&p, why);
	if (!e->name) {
		if (*why && *p != '"')
			*why = "expected a double-quoted user name";
		goto fail;
	}
	if (e->name[0] == '\0') {
		*why = "empty user name";
		goto fail;
	}
	p += strspn(p, " \t");
	e->secret = take_quoted(&p, why);
	if (!e->secret) {
		if (*why && *p != '"')
			*why = "expected a double-quoted secret after the user "
			       "name";
		goto fail;
	}
	return e;
fail:
	userlist_free(e);
	return NULL;
}

/* Reads fp line by line; the first bad line stops it with err set. */
static int read_entries(FILE *fp, const char *path, struct auth_entry **out,
                        char *err, size_t errlen)
{
	struct auth_entry **tail = out;
	const char *why;
	char *line = NULL, *p;
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = 0;

	while (rc == 0 && getline(&line, &cap, fp) >= 0) {
		lineno++;
		p = line;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0' || *p == ';' || *p == '#')
			continue;
		*tail = parse_entry(p, &why);
		if (*tail) {
			tail = &(*tail)->next;
			continue;
		}
		snprintf(err, errlen, "%s:%u: %s", path, lineno,
		         why ? why : "out of memory");
		rc = -1;
	}
	if (rc == 0 && ferror(fp)) {
		snprintf(err, errlen, "%s: cannot read: %s", path,
		         strerror(errno));
		rc = -1;
	}
	free(line);
	return rc;
}

int userlist_load(const char *path, struct auth_entry **out, char *err,
                  size_t errlen)
{
	FILE *fp;
	int rc;

	*out = NULL;
	fp = fopen(path, "re");
	if (!fp) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
		         strerror(errno));
		return -1;
	}
	rc = read_entries(fp, path, out, err, errlen);
	fclose(fp);
	if (rc < 0) {
		userlist_free(*out);
		*out = NULL;
	}
	return rc;
}

void userlist_free(struct auth_entry *list)
{
	struct auth_entry *next;

	for (; list; list = next) {
		next = list->next;
		free(list->name);
		free(list->secret);
		free(list);
	}
}
