/*
 * params.h - server parameters a client can set at startup (client_encoding,
 * DateStyle, TimeZone, ...) as remembered for a client, a server or a pool.
 */
#ifndef SLUICE_PARAMS_H
#define SLUICE_PARAMS_H

#include <stdbool.h>

struct config;
struct msgbuf;

/* One allocation per pair: the idle clients of a big pool hold many. */
struct param {
	struct param *next;
	const char *value;     /* points into text, after the name */
	char name[];           /* "name\0value\0"; name compared case-insensitively */
};

/* A small list: there are a handful of tracked names. */
struct params {
	struct param *head;
};

/* Sets name to value (copied); 0 or -1 on allocation failure. */
int params_set(struct params *ps, const char *name, const char *value);
/* The value, or NULL. */
const char *params_get(const struct params *ps, const char *name);
void params_free(struct params *ps);
/* Copies every pair of from into to (overwriting); 0 or -1. */
int params_copy(struct params *to, const struct params *from);

/*
 * True for a startup parameter sluice keeps in step between a client and
 * its servers: the fixed set PgBouncer tracks plus track_extra_parameters.
 */
bool params_is_tracked(const struct config *cfg, const char *name);

/*
 * Appends to sql the SET commands that make a server whose parameters are
 * server match a client: for each tracked parameter, the client's own value
 * (client holds only what it set) or else the pool's default (defaults
 * holds the tracked ones of the welcome). Returns
 * how many parameters differ (0: nothing appended).
 */
int params_sync_sql(const struct params *client, const struct params *defaults,
                    const struct params *server, struct msgbuf *sql);

/* Copies the tracked pairs of from into to; 0 or -1. */
int params_copy_tracked(struct params *to, const struct params *from,
                        const struct config *cfg);

#endif
