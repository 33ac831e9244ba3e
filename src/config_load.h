/*
 * config_load.h - what config.c, config_values.c and config_entries.c
 * share while one file is loaded. Not for the rest of sluice: config.h is
 * the interface.
 */
#ifndef SLUICE_CONFIG_LOAD_H
#define SLUICE_CONFIG_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "inifile.h"

#define CONFIG_SPACES " \t\n\v\f\r"
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* What the entry callback keeps during one config_load(). */
struct load_state {
	struct config *cfg;
	bool main_seen;                   /* [sluice] or [pgbouncer] was read */
	struct config_warning **warn_tail;
	const struct ini_entry *entry;    /* the one being handled */
	char *err;                        /* where its error message goes */
	size_t errlen;
};

/* Writes the error of the entry being handled (inifile.c adds file:line);
 * returns -1. */
__attribute__((format(printf, 2, 3)))
int load_fail(struct load_state *st, const char *fmt, ...);

/* Adds "file:line: message" for the entry being handled to the warnings;
 * 0, or -1 (and the error set) when out of memory. */
__attribute__((format(printf, 2, 3)))
int load_warn(struct load_state *st, const char *fmt, ...);

/* config_values.c: one value's text to its field; 0, -EINVAL, or -ENOTSUP
 * (an auth_type PgBouncer has and sluice has not). */
int cfg_parse_int(const char *value, int min, int max, int *out);
int cfg_parse_octal(const char *value, int *out);
int cfg_parse_bool(const char *value, bool *out);
int cfg_parse_time_ms(const char *value, uint64_t *out);
int cfg_parse_pool_mode(const char *value, enum pool_mode *out);
int cfg_parse_auth_type(const char *value, enum auth_type *out);

/* config_entries.c: one line of [databases] or [users]: name = value. */
int config_database_entry(struct load_state *st, const char *name,
                          const char *value);
int config_user_entry(struct load_state *st, const char *name,
                      const char *value);
void config_db_free(struct db_config *db);
void config_user_free(struct user_config *user);

#endif
