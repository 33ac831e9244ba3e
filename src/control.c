/*
 * control.c - reload, pause, resume, suspend, reconnect, disable, kill and
 * shutdown of a running sluice.
 *
 * A reload builds a whole new config first and swaps it in only if all of
 * it is valid (PgBouncer applies a broken file partly); settings that cannot
 * change at run time keep their value with a warning instead of being
 * ignored silently. Pools then take the new settings; a pool whose server
 * target changed gets a new generation, and servers of an older generation
 * close as they are released, never mid-transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "client.h"
#include "config.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"
#include "timer.h"

static bool pool_matches(const struct pool *pool, const char *db)
{
	return !db || strcmp(pool->db_name, db) == 0;
}

/* Adds name to (present) or removes it from a comma separated list. */
static void name_list_set(char **list, const char *name, bool present)
{
	size_t len = *list ? strlen(*list) : 0;
	char *next;

	if (config_list_contains(*list, name) == present)
		return;
	if (present) {
		next = malloc(len + strlen(name) + 2);
		if (!next)
			return;
		sprintf(next, "%s%s%s", len ? *list : "", len ? "," : "", name);
	} else {
		next = strdup("");
		for (char *save = NULL, *item = strtok_r(*list, ",", &save);
		     next && item; item = strtok_r(NULL, ",", &save)) {
			char *grown;

			if (strcmp(item, name) == 0 ||
			    !(grown = realloc(next, strlen(next) + strlen(item) + 2)))
				continue;
			next = grown;
			if (*next)
				strcat(next, ",");
			strcat(next, item);
		}
	}
	free(*list);
	*list = next;
}

/* Closes the idle servers of pool; the used ones close when released. */
static void close_idle_servers(struct pool *pool, const char *why)
{
	while (!list_empty(&pool->idle))
		server_close(LIST_ENTRY(pool->idle.next, struct server, node), why);
}

/* --- reload and SET --------------------------------------------------- */

static void warn_start_only(void *arg, const char *name)
{
	(void)arg;
	log_warn(NULL, "reload: %s cannot be changed while running, "
	         "keeping the running value (restart to change it)", name);
}

static void apply_config(struct sluice *ctx)
{
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next)
		pool_apply_config(LIST_ENTRY(l, struct pool, node));
}

int control_reload(struct sluice *ctx, char *err, size_t errlen)
{
	struct config *old = ctx->config;
	struct config *next;

	if (config_load(old->config_file, &next, err, errlen) < 0) {
		log_error(NULL, "reload failed, running configuration unchanged: %s", err);
		return -1;
	}
	if (config_keep_start_only(next, old, warn_start_only, NULL) < 0) {
		config_free(next);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (const struct config_warning *w = next->warnings; w; w = w->next)
		log_warn(NULL, "%s", w->text);
	ctx->config = next;
	if (log_configure(next->logfile, next->syslog, next->syslog_ident,
	                  next->syslog_facility, next->verbose + ctx->cli_verbose,
	                  ctx->cli_quiet) < 0)
		log_error(NULL, "reload: cannot open logfile %s", next->logfile);
	apply_config(ctx);
	config_free(old);
	log_info(NULL, "configuration reloaded from %s", next->config_file);
	return 0;
}

int control_set(struct sluice *ctx, const char *key, const char *value,
                char *err, size_t errlen)
{
	char key_esc[LOG_ESCAPED_NAME], value_esc[4 * LOG_ESCAPED_NAME];

	if (config_set(ctx->config, key, value, err, errlen) < 0)
		return -1;
	apply_config(ctx);
	log_info(NULL, "SET %s = %s", log_escape(key, key_esc, sizeof(key_esc)),
	         log_escape(value, value_esc, sizeof(value_esc)));
	return 0;
}

/* --- pause, resume, suspend ------------------------------------------- */

void control_pause(struct sluice *ctx, const char *db)
{
	char esc[LOG_ESCAPED_NAME];

	/* The database is paused, not just its pools: new ones wait too. */
	if (!db)
		ctx->paused = true;
	else
		name_list_set(&ctx->paused_dbs, db, true);
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (pool_matches(pool, db))
			close_idle_servers(pool, "PAUSE");
	}
	log_info(NULL, "PAUSE %s", db ? log_escape(db, esc, sizeof(esc)) : "(all)");
}

static void refresh_reading(struct sluice *ctx)
{
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next)
		conn_refresh_reading(&LIST_ENTRY(l, struct client, node)->conn);
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		for (struct list *s = pool->idle.next; s != &pool->idle; s = s->next)
			conn_refresh_reading(&LIST_ENTRY(s, struct server, node)->conn);
		for (struct list *s = pool->used.next; s != &pool->used; s = s->next)
			conn_refresh_reading(&LIST_ENTRY(s, struct server, node)->conn);
	}
}

void control_resume(struct sluice *ctx, const char *db)
{
	char esc[LOG_ESCAPED_NAME];

	if (!db) {
		ctx->paused = false;
		free(ctx->paused_dbs);
		ctx->paused_dbs = NULL;
		if (ctx->suspended) {
			ctx->suspended = false;
			refresh_reading(ctx);
		}
	} else {
		name_list_set(&ctx->paused_dbs, db, false);
	}
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (pool_matches(pool, db))
			pool_launch_needed(pool);
	}
	log_info(NULL, "RESUME %s", db ? log_escape(db, esc, sizeof(esc)) : "(all)");
}

bool control_pause_done(struct sluice *ctx, const char *db)
{
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (pool_matches(pool, db) && pool->server_count > 0)
			return false;
	}
	return true;
}

void control_suspend(struct sluice *ctx)
{
	ctx->suspended = true;
	refresh_reading(ctx);
	log_info(NULL, "SUSPEND");
}

/* --- reconnect, disable, kill ----------------------------------------- */

void control_reconnect(struct sluice *ctx, const char *db)
{
	char esc[LOG_ESCAPED_NAME];

	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (!pool_matches(pool, db))
			continue;
		pool->generation++;
		close_idle_servers(pool, "RECONNECT");
	}
	log_info(NULL, "RECONNECT %s", db ? log_escape(db, esc, sizeof(esc)) : "(all)");
}

bool control_wait_close_done(struct sluice *ctx, const char *db)
{
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (!pool_matches(pool, db))
			continue;
		for (struct list *s = pool->used.next; s != &pool->used; s = s->next)
			if (LIST_ENTRY(s, struct server, node)->generation != pool->generation)
				return false;
	}
	return true;
}

bool control_is_disabled(const struct sluice *ctx, const char *db)
{
	return config_list_contains(ctx->disabled_dbs, db);
}

void control_disable(struct sluice *ctx, const char *db, bool disable)
{
	name_list_set(&ctx->disabled_dbs, db, disable);
	char esc[LOG_ESCAPED_NAME];

	log_info(NULL, "%s %s", disable ? "DISABLE" : "ENABLE",
	         log_escape(db, esc, sizeof(esc)));
}

bool control_is_paused(const struct sluice *ctx, const char *db)
{
	return ctx->paused || config_list_contains(ctx->paused_dbs, db);
}

int control_kill(struct sluice *ctx, const char *db)
{
	int killed = 0;
	char esc[LOG_ESCAPED_NAME];

	name_list_set(&ctx->paused_dbs, db, true);
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		struct client *c = LIST_ENTRY(l, struct client, node);

		if (c->pool && !c->conn.closing && strcmp(c->database, db) == 0) {
			client_fail(c, "08P01", "database killed by admin (KILL %s)", db);
			killed++;
			l = &ctx->clients; /* the list changed: start over */
		}
	}
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (!pool_matches(pool, db))
			continue;
		close_idle_servers(pool, "KILL");
		while (!list_empty(&pool->used))
			server_close(LIST_ENTRY(pool->used.next, struct server, node),
			             "KILL");
	}
	log_info(NULL, "KILL %s: %d clients", log_escape(db, esc, sizeof(esc)),
	         killed);
	return killed;
}

int control_kill_client(struct sluice *ctx, uint64_t id)
{
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		struct client *c = LIST_ENTRY(l, struct client, node);

		if (c->id == id && !c->conn.closing) {
			client_fail(c, "08P01", "client killed by admin (KILL_CLIENT)");
			return 0;
		}
	}
	return -1;
}

/* --- shutdown --------------------------------------------------------- */

static void close_all_servers(struct sluice *ctx)
{
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		close_idle_servers(pool, "shutdown");
		while (!list_empty(&pool->used))
			server_close(LIST_ENTRY(pool->used.next, struct server, node),
			             "shutdown");
	}
}

static void shutdown_now(struct sluice *ctx, const char *why)
{
	uv_handle_t *signals[] = {
		(uv_handle_t *)&ctx->sigterm, (uv_handle_t *)&ctx->sigint,
		(uv_handle_t *)&ctx->sighup, (uv_handle_t *)&ctx->sigusr1,
		(uv_handle_t *)&ctx->sigusr2,
	};

	if (ctx->shutting_down)
		return;
	log_info(NULL, "%s, shutting down", why);
	ctx->shutting_down = true;
	listener_stop_all(ctx);
	while (!list_empty(&ctx->clients))
		client_close(LIST_ENTRY(ctx->clients.next, struct client, node), "shutdown");
	close_all_servers(ctx);
	cancel_close_all(ctx);
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (uv_is_active(signals[i]) && !uv_is_closing(signals[i]))
			uv_close(signals[i], NULL);
	uv_close((uv_handle_t *)&ctx->ready_idle, NULL);
	timer_stop(ctx);
}

void control_shutdown(struct sluice *ctx, enum shutdown_mode mode, const char *why)
{
	/* A second signal during a waiting shutdown means now, as PgBouncer. */
	if (mode == SHUTDOWN_NONE || ctx->shutdown_mode != SHUTDOWN_NONE)
		return shutdown_now(ctx, why);
	log_info(NULL, "%s: no new connections; exiting once %s", why,
	         mode == SHUTDOWN_WAIT_FOR_SERVERS ? "transactions in progress finish"
	                                           : "every client has left");
	listener_stop_all(ctx);
	ctx->shutdown_mode = mode;
	if (mode == SHUTDOWN_WAIT_FOR_SERVERS)
		control_pause(ctx, NULL);
	control_tick(ctx);
}

static bool only_admins_left(struct sluice *ctx)
{
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next)
		if (LIST_ENTRY(l, struct client, node)->state != CLIENT_ADMIN)
			return false;
	return true;
}

void control_tick(struct sluice *ctx)
{
	switch ((enum shutdown_mode)ctx->shutdown_mode) {
	case SHUTDOWN_NONE:
		return;
	case SHUTDOWN_WAIT_FOR_SERVERS:
		if (control_pause_done(ctx, NULL))
			shutdown_now(ctx, "transactions finished");
		return;
	case SHUTDOWN_WAIT_FOR_CLIENTS:
		if (only_admins_left(ctx))
			shutdown_now(ctx, "clients gone");
		return;
	}
}
