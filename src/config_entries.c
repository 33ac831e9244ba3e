/*
 * config_entries.c - the [databases] and [users] sections: one entry per
 * line, its value a key=value list read as PgBouncer reads a connection
 * string. Which keys exist and what they set is the tables below; the
 * last definition of a name wins, with a warning.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "config_load.h"

#define DEFAULT_SERVER_PORT 5432

enum param_type {
	PARAM_STR,       /* char * */
	PARAM_COUNT,     /* int >= 0 */
	PARAM_PORT,      /* int, 1..65535 */
	PARAM_POOL_MODE, /* enum pool_mode */
	PARAM_TIME_MS,   /* int64_t ms; seconds in the file, fractions too */
	PARAM_LATER,     /* PgBouncer's, not implemented yet: warned about */
};

/* A key of a [databases] connection string or of a [users] value. */
struct param {
	const char *name;    /* also the name of the field */
	enum param_type type;
	size_t offset;       /* in struct db_config or struct user_config */
};

#define DB_PARAM(key, kind) { #key, kind, offsetof(struct db_config, key) }
#define USER_PARAM(key, kind) { #key, kind, offsetof(struct user_config, key) }
#define LATER_PARAM(key) { #key, PARAM_LATER, 0 }

static const struct param db_params[] = {
	DB_PARAM(host, PARAM_STR),
	DB_PARAM(port, PARAM_PORT),
	DB_PARAM(dbname, PARAM_STR),
	DB_PARAM(user, PARAM_STR),
	DB_PARAM(password, PARAM_STR),
	DB_PARAM(pool_size, PARAM_COUNT),
	DB_PARAM(min_pool_size, PARAM_COUNT),
	DB_PARAM(reserve_pool, PARAM_COUNT),
	DB_PARAM(max_db_connections, PARAM_COUNT),
	DB_PARAM(pool_mode, PARAM_POOL_MODE),
	DB_PARAM(connect_query, PARAM_STR),
	DB_PARAM(application_name, PARAM_STR),
	DB_PARAM(client_encoding, PARAM_STR),
	DB_PARAM(datestyle, PARAM_STR),
	DB_PARAM(timezone, PARAM_STR),
	LATER_PARAM(auth_dbname),
	LATER_PARAM(auth_query),
	LATER_PARAM(auth_user),
	LATER_PARAM(load_balance_hosts),
	DB_PARAM(max_db_client_connections, PARAM_COUNT),
	DB_PARAM(query_wait_timeout, PARAM_TIME_MS),
	DB_PARAM(server_lifetime, PARAM_TIME_MS),
	DB_PARAM(idle_transaction_log_timeout, PARAM_TIME_MS),
	LATER_PARAM(target_session_attrs),
};

static const struct param user_params[] = {
	USER_PARAM(pool_mode, PARAM_POOL_MODE),
	USER_PARAM(max_user_connections, PARAM_COUNT),
	USER_PARAM(pool_size, PARAM_COUNT),
	USER_PARAM(reserve_pool_size, PARAM_COUNT),
	USER_PARAM(max_user_client_connections, PARAM_COUNT),
	USER_PARAM(query_timeout, PARAM_TIME_MS),
	USER_PARAM(query_wait_timeout, PARAM_TIME_MS),
	USER_PARAM(idle_transaction_timeout, PARAM_TIME_MS),
	USER_PARAM(transaction_timeout, PARAM_TIME_MS),
	USER_PARAM(client_idle_timeout, PARAM_TIME_MS),
	USER_PARAM(idle_transaction_log_timeout, PARAM_TIME_MS),
};

/* Whose key=value list is read, and how messages call it. */
struct param_list {
	const char *owner;          /* "database", "user" */
	const char *text;           /* "connection string", "settings" */
	const struct param *params;
	size_t n;
};

static const struct param_list db_param_list = {
	"database", "connection string", db_params, ARRAY_LEN(db_params),
};

static const struct param_list user_param_list = {
	"user", "settings", user_params, ARRAY_LEN(user_params),
};

/* Unquotes the value after an opening ' in place; '' is one quote.
 * Returns the position after the closing quote, NULL if there is none. */
static char *unquote(char *p)
{
	char *dst = p;

	for (;;) {
		if (*p == '\0')
			return NULL;
		if (p[0] == '\'' && p[1] != '\'')
			break;
		if (p[0] == '\'')
			p++;
		*dst++ = *p++;
	}
	*dst = '\0';
	return p + 1;
}

/*
 * Cuts the next key=value off *pp, as PgBouncer reads a connection string:
 * a value is bare up to whitespace, or single-quoted; it may not be empty.
 * Returns 1 with key and value set, 0 at the end, -1 on a syntax error.
 */
static int next_pair(char **pp, char **key, char **value)
{
	char *p = *pp + strspn(*pp, CONFIG_SPACES);
	char *end;

	if (*p == '\0')
		return 0;
	*key = p;
	end = p + strcspn(p, "=" CONFIG_SPACES);
	p = end + strspn(end, CONFIG_SPACES);
	if (*p != '=' || end == *key)
		return -1;
	*end = '\0';
	p += 1 + strspn(p + 1, CONFIG_SPACES);
	if (*p == '\'') {
		*value = p + 1;
		p = unquote(p + 1);
		if (!p || (*p && !strchr(CONFIG_SPACES, *p)))
			return -1;
	} else {
		*value = p;
		p += strcspn(p, CONFIG_SPACES);
	}
	if (*p)
		*p++ = '\0';
	*pp = p;
	return **value ? 1 : -1;
}

static int parse_time_param(const char *value, int64_t *out)
{
	uint64_t ms;
	int rc = cfg_parse_time_ms(value, &ms);

	if (rc == 0)
		*out = (int64_t)ms;
	return rc;
}

/* Sets one field of obj (a db_config or user_config) from its text. */
static int set_param(void *obj, const struct param *param, const char *value)
{
	void *field = (char *)obj + param->offset;
	char *copy;

	switch (param->type) {
	case PARAM_STR:
		if (!(copy = strdup(value)))
			return -ENOMEM;
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	case PARAM_COUNT:
		return cfg_parse_int(value, 0, INT_MAX, field);
	case PARAM_PORT:
		return cfg_parse_int(value, 1, 65535, field);
	case PARAM_POOL_MODE:
		return cfg_parse_pool_mode(value, field);
	case PARAM_TIME_MS:
		return parse_time_param(value, field);
	case PARAM_LATER:
		return 0;
	}
	return -EINVAL;
}

/* Applies each key=value of text (cut up in place) to obj, the entry
 * called name of list->owner. */
static int parse_params(struct load_state *st, const struct param_list *list,
                        const char *name, void *obj, char *text)
{
	const struct param *param;
	char *key, *value;
	int rc;

	while ((rc = next_pair(&text, &key, &value)) > 0) {
		param = NULL;
		for (size_t i = 0; i < list->n && !param; i++)
			if (strcmp(list->params[i].name, key) == 0)
				param = &list->params[i];
		if (!param)
			return load_fail(st, "%s %s: unknown parameter: %s",
			                 list->owner, name, key);
		if (param->type == PARAM_LATER &&
		    load_warn(st, "%s %s: parameter %s is not supported by sluice "
		              "yet, ignored", list->owner, name, key) < 0)
			return -1;
		rc = set_param(obj, param, value);
		if (rc == -ENOMEM)
			return load_fail(st, "out of memory");
		if (rc < 0)
			return load_fail(st, "%s %s: invalid value for %s: %s",
			                 list->owner, name, key, value);
	}
	if (rc < 0)
		return load_fail(st, "%s %s: syntax error in %s", list->owner, name,
		                 list->text);
	return 0;
}

void config_db_free(struct db_config *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < ARRAY_LEN(db_params); i++)
		if (db_params[i].type == PARAM_STR)
			free(*(char **)((char *)db + db_params[i].offset));
	free(db->name);
	free(db->file);
	free(db);
}

static struct db_config *db_new(const char *name, const struct ini_entry *e)
{
	struct db_config *db = calloc(1, sizeof(*db));

	if (!db)
		return NULL;
	db->name = strdup(name);
	db->file = strdup(e->file);
	if (!db->name || !db->file) {
		config_db_free(db);
		return NULL;
	}
	db->line = e->line;
	db->port = DEFAULT_SERVER_PORT;
	db->pool_size = db->min_pool_size = db->reserve_pool = -1;
	db->max_db_connections = -1;
	db->max_db_client_connections = -1;
	db->query_wait_timeout = db->server_lifetime = -1;
	db->idle_transaction_log_timeout = -1;
	db->pool_mode = POOL_MODE_INHERIT;
	return db;
}

/* Appends db; one of the same name is replaced where it was, as in
 * PgBouncer where the last definition wins. */
static int add_database(struct load_state *st, struct db_config *db)
{
	struct db_config **link = &st->cfg->databases;
	struct db_config *old;
	int rc;

	while (*link && strcmp((*link)->name, db->name) != 0)
		link = &(*link)->next;
	old = *link;
	db->next = old ? old->next : NULL;
	*link = db;
	if (!old)
		return 0;
	rc = load_warn(st, "database %s defined again, replacing the one at %s:%u",
	               db->name, old->file, old->line);
	config_db_free(old);
	return rc;
}

int config_database_entry(struct load_state *st, const char *name,
                          const char *value)
{
	struct db_config *db;
	char *text;
	int rc;

	/* login.c takes both names for the admin console */
	if (strcmp(name, "pgbouncer") == 0 || strcmp(name, "sluice") == 0)
		return load_fail(st, "database name \"%s\" is reserved for the admin "
		                 "console", name);
	db = db_new(name, st->entry);
	text = strdup(value);
	if (!db || !text) {
		config_db_free(db);
		free(text);
		return load_fail(st, "out of memory");
	}
	rc = parse_params(st, &db_param_list, name, db, text);
	free(text);
	if (rc < 0) {
		config_db_free(db);
		return -1;
	}
	return add_database(st, db);
}

void config_user_free(struct user_config *user)
{
	if (user)
		free(user->name);
	free(user);
}

static int add_user(struct load_state *st, struct user_config *user)
{
	struct user_config **link = &st->cfg->users;
	struct user_config *old;

	while (*link && strcmp((*link)->name, user->name) != 0)
		link = &(*link)->next;
	old = *link;
	user->next = old ? old->next : NULL;
	*link = user;
	if (!old)
		return 0;
	config_user_free(old);
	return load_warn(st, "user %s defined again, replacing the earlier entry",
	                 user->name);
}

int config_user_entry(struct load_state *st, const char *name,
                      const char *value)
{
	struct user_config *user = calloc(1, sizeof(*user));
	char *text = strdup(value);
	int rc = -1;

	if (user)
		user->name = strdup(name);
	if (!user || !user->name || !text) {
		load_fail(st, "out of memory");
		goto fail;
	}
	user->pool_mode = POOL_MODE_INHERIT;
	user->max_user_connections = -1;
	user->pool_size = user->reserve_pool_size = -1;
	user->max_user_client_connections = -1;
	user->query_timeout = user->query_wait_timeout = -1;
	user->idle_transaction_timeout = user->transaction_timeout = -1;
	user->client_idle_timeout = user->idle_transaction_log_timeout = -1;
	rc = parse_params(st, &user_param_list, name, user, text);
	if (rc < 0)
		goto fail;
	free(text);
	return add_user(st, user);
fail:
	config_user_free(user);
	free(text);
	return rc;
}