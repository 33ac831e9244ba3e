/*
 * params.h - server parameters a client can set at startup (client_encoding,
 * DateStyle, TimeZone, ...) as remembered for a client, a server or a pool.
 */
#ifndef SLUICE_PARAMS_H
#define SLUICE_PARAMS_H

#include <stdbool.h>

struct config;
struct msgbuf;

struct param {
	char *name;            /* as first seen; compared case-insensitively */
	char *value;
	struct param *next;
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
 * server match client, for every tracked parameter of client. Returns how
 * many parameters differ (0: nothing appended).
 */
int params_sync_sql(const struct config *cfg, const struct params *client,
                    const struct params *server, struct msgbuf *sql);

#endif
