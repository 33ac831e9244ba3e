/*
 * params.c - the tracked startup parameters of clients, servers and pools.
 *
 * Owns the rule for which names are kept in step and the SQL that does it.
 * Values are compared as strings: after the first SET a server reports the
 * canonical spelling, which is stored for both sides, so equal settings
 * compare equal from then on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "config.h"
#include "params.h"

/* Names PgBouncer always tracks; track_extra_parameters adds more. */
static const char *const tracked_names[] = {
	"client_encoding", "DateStyle", "TimeZone",
	"standard_conforming_strings", "application_name",
};

/* Case-insensitive name match; the first letter rules most names out
 * cheaply (this runs for every parameter at every server assignment). */
static bool same_name(const char *a, const char *b)
{
	return ((a[0] ^ b[0]) & ~0x20) == 0 && strcasecmp(a, b) == 0;
}

static struct param *find(const struct params *ps, const char *name)
{
	for (struct param *p = ps->head; p; p = p->next)
		if (same_name(p->name, name))
			return p;
	return NULL;
}

int params_set(struct params *ps, const char *name, const char *value)
{
	size_t name_len = strlen(name);
	size_t value_len = strlen(value);
	struct param **link = &ps->head;
	struct param *p;

	while (*link && !same_name((*link)->name, name))
		link = &(*link)->next;
	if (*link && strcmp((*link)->value, value) == 0)
		return 0;
	p = malloc(sizeof(*p) + name_len + value_len + 2);
	if (!p)
		return -1;
	memcpy(p->name, name, name_len + 1);
	memcpy(p->name + name_len + 1, value, value_len + 1);
	p->value = p->name + name_len + 1;
	/* Replace in place so the list keeps its order. */
	p->next = *link ? (*link)->next : NULL;
	free(*link);
	*link = p;
	return 0;
}

const char *params_get(const struct params *ps, const char *name)
{
	const struct param *p = find(ps, name);

	return p ? p->value : NULL;
}

void params_free(struct params *ps)
{
	while (ps->head) {
		struct param *p = ps->head;

		ps->head = p->next;
		free(p);
	}
}

int params_copy(struct params *to, const struct params *from)
{
	for (const struct param *p = from->head; p; p = p->next)
		if (params_set(to, p->name, p->value) < 0)
			return -1;
	return 0;
}

bool params_is_tracked(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < sizeof(tracked_names) / sizeof(tracked_names[0]); i++)
		if (strcasecmp(tracked_names[i], name) == 0)
			return true;
	return config_list_contains(cfg->track_extra_parameters, name);
}

/*
 * Appends value as a dollar-quoted SQL literal, $sN$value$sN$: nothing
 * inside it is special, whatever the server's standard_conforming_strings
 * or client encoding ('$' is never part of a multibyte character), so a
 * client's value cannot end it early. The tag is one the value does not
 * contain, even as its last bytes followed by the closing tag.
 */
static void put_literal(struct msgbuf *sql, const char *value)
{
	char tag[16];
	unsigned n = 0;
	int len;

	do
		len = snprintf(tag, sizeof(tag), "$s%u", n++);
	while (strstr(value, tag));
	tag[len++] = '$';
	msgbuf_put_bytes(sql, tag, (size_t)len);
	msgbuf_put_bytes(sql, value, strlen(value));
	msgbuf_put_bytes(sql, tag, (size_t)len);
}

/* Appends "SET name = 'value';" when the server's value differs. */
static int sync_one(const char *name, const char *wanted,
                    const struct params *server, struct msgbuf *sql)
{
	const char *current = params_get(server, name);

	if (current && strcmp(current, wanted) == 0)
		return 0;
	msgbuf_put_bytes(sql, "SET ", 4);
	msgbuf_put_bytes(sql, name, strlen(name));
	msgbuf_put_bytes(sql, " = ", 3);
	put_literal(sql, wanted);
	msgbuf_put_bytes(sql, ";", 1);
	return 1;
}

int params_sync_sql(const struct params *client, const struct params *defaults,
                    const struct params *server, struct msgbuf *sql)
{
	int differ = 0;

	for (const struct param *p = client->head; p; p = p->next)
		differ += sync_one(p->name, p->value, server, sql);
	for (const struct param *p = defaults->head; p; p = p->next)
		if (!params_get(client, p->name))
			differ += sync_one(p->name, p->value, server, sql);
	return differ;
}

int params_copy_tracked(struct params *to, const struct params *from,
                        const struct config *cfg)
{
	for (const struct param *p = from->head; p; p = p->next)
		if (params_is_tracked(cfg, p->name) && params_set(to, p->name, p->value) < 0)
			return -1;
	return 0;
}
