/*
 * params.c - the tracked startup parameters of clients, servers and pools.
 *
 * Owns the rule for which names are kept in step and the SQL that does it.
 * Values are compared as strings: after the first SET a server reports the
 * canonical spelling, which is stored for both sides, so equal settings
 * compare equal from then on.
 */
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

static struct param *find(const struct params *ps, const char *name)
{
	for (struct param *p = ps->head; p; p = p->next)
		if (strcasecmp(p->name, name) == 0)
			return p;
	return NULL;
}

int params_set(struct params *ps, const char *name, const char *value)
{
	struct param *p = find(ps, name);
	char *copy = strdup(value);

	if (!copy)
		return -1;
	if (p) {
		free(p->value);
		p->value = copy;
		return 0;
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->name = strdup(name))) {
		free(p);
		free(copy);
		return -1;
	}
	p->value = copy;
	p->next = ps->head;
	ps->head = p;
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
		free(p->name);
		free(p->value);
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

/* Appends value as a single-quoted SQL literal. */
static void put_literal(struct msgbuf *sql, const char *value)
{
	msgbuf_put_u8(sql, '\'');
	for (const char *c = value; *c; c++) {
		if (*c == '\'')
			msgbuf_put_u8(sql, '\'');
		msgbuf_put_u8(sql, (uint8_t)*c);
	}
	msgbuf_put_u8(sql, '\'');
}

int params_sync_sql(const struct config *cfg, const struct params *client,
                    const struct params *server, struct msgbuf *sql)
{
	int differ = 0;

	for (const struct param *p = client->head; p; p = p->next) {
		const char *current = params_get(server, p->name);

		if (!params_is_tracked(cfg, p->name))
			continue;
		if (current && strcmp(current, p->value) == 0)
			continue;
		msgbuf_put_bytes(sql, "SET ", 4);
		msgbuf_put_bytes(sql, p->name, strlen(p->name));
		msgbuf_put_bytes(sql, " = ", 3);
		put_literal(sql, p->value);
		msgbuf_put_bytes(sql, ";", 1);
		differ++;
	}
	return differ;
}
