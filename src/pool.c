/*
 * pool.c - server connections pooled per (database, login user).
 *
 * Owns the idle and used server lists, the FIFO of waiting clients, the
 * clients waiting for the pool's first server parameters, and the rule for
 * when a new server is opened. Never touches a socket.
 */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void free_target(struct pool_target *t)
{
	free(t->host);
	free(t->dbname);
	free(t->user);
	free(t->password);
	free(t->connect_query);
	free(t->application_name);
	free(t->client_encoding);
	free(t->datestyle);
	free(t->timezone);
}

static void free_pool(struct pool *pool)
{
	list_remove(&pool->node);
	free(pool->db_name);
	free(pool->user_name);
	free(pool->login_error);
	free_target(&pool->target);
	params_free(&pool->welcome_params);
	free(pool);
}

static enum pool_mode effective_mode(const struct config *cfg,
                                     const struct db_config *db,
                                     const char *user)
{
	const struct user_config *uc = config_find_user(cfg, user);

	if (uc && uc->pool_mode != POOL_MODE_INHERIT)
		return uc->pool_mode;
	if (db->pool_mode != POOL_MODE_INHERIT)
		return db->pool_mode;
	return cfg->pool_mode;
}

static int fill_target(struct pool_target *t, const struct config *cfg,
                       const struct db_config *db, const char *db_name,
                       const char *login_user, const char *client_secret)
{
	const char *password = db->password;

	if (!password)
		password = db->user ? config_find_secret(cfg, login_user) : client_secret;
	t->host = dup_or_null(db->host);
	t->port = db->port > 0 ? db->port : 5432;
	t->dbname = strdup(db->dbname ? db->dbname : db_name);
	t->user = strdup(login_user);
	t->password = dup_or_null(password);
	t->connect_query = dup_or_null(db->connect_query);
	t->application_name = dup_or_null(db->application_name);
	t->client_encoding = dup_or_null(db->client_encoding);
	t->datestyle = dup_or_null(db->datestyle);
	t->timezone = dup_or_null(db->timezone);
	return t->dbname && t->user ? 0 : -1;
}

static struct pool *find_pool(struct sluice *ctx, const char *db_name,
                              const char *user_name)
{
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (strcmp(pool->db_name, db_name) == 0 &&
		    strcmp(pool->user_name, user_name) == 0)
			return pool;
	}
	return NULL;
}

struct pool *pool_get(struct sluice *ctx, const char *db_name,
                      const char *user_name, const struct db_config *db,
                      const char *client_secret)
{
	const struct config *cfg = ctx->config;
	/* A database entry with its own user shares one pool among clients. */
	const char *login_user = db->user ? db->user : user_name;
	struct pool *pool = find_pool(ctx, db_name, login_user);

	if (pool)
		return pool;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->ctx = ctx;
	list_init(&pool->idle);
	list_init(&pool->used);
	list_init(&pool->waiting);
	list_init(&pool->welcome);
	list_append(&ctx->pools, &pool->node);
	pool->db_name = strdup(db_name);
	pool->user_name = strdup(login_user);
	pool->pool_mode = effective_mode(cfg, db, user_name);
	pool->pool_size = db->pool_size >= 0 ? db->pool_size : cfg->default_pool_size;
	if (!pool->db_name || !pool->user_name ||
	    fill_target(&pool->target, cfg, db, db_name, login_user, client_secret) < 0) {
		free_pool(pool);
		return NULL;
	}
	log_info(NULL, "new pool %s/%s: %s mode, pool_size %d", db_name, login_user,
	         config_pool_mode_name(pool->pool_mode), pool->pool_size);
	return pool;
}

static bool has_login_in_progress(struct pool *pool)
{
	for (struct list *l = pool->used.next; l != &pool->used; l = l->next) {
		struct server *s = LIST_ENTRY(l, struct server, node);

		if (s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN)
			return true;
	}
	return false;
}

void pool_wait_welcome(struct pool *pool, struct client *client)
{
	if (pool->has_welcome) {
		client_welcome(client);
		return;
	}
	list_append(&pool->welcome, &client->pool_node);
	if (!has_login_in_progress(pool))
		server_launch(pool);
}

void pool_acquire(struct pool *pool, struct client *client)
{
	/* Most recently used first: its caches are warm, and the others can
	 * reach server_idle_timeout. */
	if (!list_empty(&pool->idle)) {
		struct list *last = pool->idle.prev;

		list_remove(last);
		server_assign(LIST_ENTRY(last, struct server, node), client);
		return;
	}
	list_append(&pool->waiting, &client->pool_node);
	pool->wait_count++;
	if (pool->server_count < pool->pool_size)
		server_launch(pool);
}

void pool_cancel_wait(struct pool *pool, struct client *client)
{
	(void)pool;
	list_remove(&client->pool_node);
}

void pool_release(struct pool *pool, struct server *server)
{
	struct list *first = list_pop(&pool->waiting);

	if (first) {
		server_assign(server, LIST_ENTRY(first, struct client, pool_node));
		return;
	}
	server_set_idle(server);
}

void pool_server_ready(struct pool *pool, struct server *server)
{
	struct list *l;

	free(pool->login_error);
	pool->login_error = NULL;
	if (!pool->has_welcome) {
		if (params_copy(&pool->welcome_params, &server->params) < 0)
			return;
		pool->has_welcome = true;
	}
	while ((l = list_pop(&pool->welcome)) != NULL)
		client_welcome(LIST_ENTRY(l, struct client, pool_node));
}

void pool_server_failed(struct pool *pool, const char *sqlstate,
                        const char *message)
{
	struct list *l;

	free(pool->login_error);
	pool->login_error = strdup(message);
	while ((l = list_pop(&pool->welcome)) != NULL)
		client_fail(LIST_ENTRY(l, struct client, pool_node), sqlstate, "%s",
		            message);
	/* With no other server to wait for, queued clients would hang. */
	if (pool->server_count > 1)
		return;
	while ((l = list_pop(&pool->waiting)) != NULL)
		client_fail(LIST_ENTRY(l, struct client, pool_node), sqlstate, "%s",
		            message);
}

void pool_server_gone(struct pool *pool, struct server *server)
{
	list_remove(&server->node);
	pool->server_count--;
	if (!list_empty(&pool->waiting) && pool->server_count < pool->pool_size)
		server_launch(pool);
}

void pool_free_all(struct sluice *ctx)
{
	while (!list_empty(&ctx->pools))
		free_pool(LIST_ENTRY(ctx->pools.next, struct pool, node));
}
