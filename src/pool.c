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
#include "codec.h"
#include "control.h"
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

void pool_free(struct pool *pool)
{
	list_remove(&pool->node);
	free(pool->db_name);
	free(pool->user_name);
	free(pool->login_error);
	free_target(&pool->target);
	params_free(&pool->welcome_params);
	params_free(&pool->defaults);
	free(pool);
}

static enum pool_mode effective_mode(const struct config *cfg,
                                     const struct db_config *db,
                                     const struct user_config *uc)
{
	if (uc && uc->pool_mode != POOL_MODE_INHERIT)
		return uc->pool_mode;
	if (db->pool_mode != POOL_MODE_INHERIT)
		return db->pool_mode;
	return cfg->pool_mode;
}

/* The first of user, db that is set (>= 0), else the global value. */
static uint64_t pick_ms(int64_t user, int64_t db, uint64_t global)
{
	if (user >= 0)
		return (uint64_t)user;
	return db >= 0 ? (uint64_t)db : global;
}

static int pick_int(int user, int db, int global)
{
	if (user >= 0)
		return user;
	return db >= 0 ? db : global;
}

static void compute_limits(struct pool_limits *l, const struct config *cfg,
                           const struct db_config *db,
                           const struct user_config *uc)
{
	static const struct user_config none = {
		.pool_size = -1, .reserve_pool_size = -1,
		.max_user_connections = -1, .query_timeout = -1,
		.query_wait_timeout = -1, .idle_transaction_timeout = -1,
		.transaction_timeout = -1, .client_idle_timeout = -1,
		.idle_transaction_log_timeout = -1,
	};

	if (!uc)
		uc = &none;
	l->pool_size = pick_int(uc->pool_size, db->pool_size, cfg->default_pool_size);
	l->min_pool_size = pick_int(-1, db->min_pool_size, cfg->min_pool_size);
	l->reserve_pool = pick_int(uc->reserve_pool_size, db->reserve_pool,
	                           cfg->reserve_pool_size);
	l->max_db_connections = pick_int(-1, db->max_db_connections,
	                                 cfg->max_db_connections);
	l->max_user_connections = pick_int(uc->max_user_connections, -1,
	                                   cfg->max_user_connections);
	l->query_timeout = pick_ms(uc->query_timeout, -1, cfg->query_timeout);
	l->query_wait_timeout = pick_ms(uc->query_wait_timeout,
	                                db->query_wait_timeout,
	                                cfg->query_wait_timeout);
	l->idle_transaction_timeout = pick_ms(uc->idle_transaction_timeout, -1,
	                                      cfg->idle_transaction_timeout);
	l->transaction_timeout = pick_ms(uc->transaction_timeout, -1,
	                                 cfg->transaction_timeout);
	l->client_idle_timeout = pick_ms(uc->client_idle_timeout, -1,
	                                 cfg->client_idle_timeout);
	l->server_lifetime = pick_ms(-1, db->server_lifetime, cfg->server_lifetime);
	l->idle_transaction_log_timeout = pick_ms(uc->idle_transaction_log_timeout,
	                                          db->idle_transaction_log_timeout,
	                                          cfg->idle_transaction_log_timeout);
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
	/* The [users] entry of the login user: the same one a reload reads. */
	pool->pool_mode = effective_mode(cfg, db, config_find_user(cfg, login_user));
	compute_limits(&pool->limits, cfg, db, config_find_user(cfg, login_user));
	pool->autodb = strcmp(db->name, "*") == 0;
	pool->last_active = uv_now(ctx->loop);
	if (!pool->db_name || !pool->user_name ||
	    fill_target(&pool->target, cfg, db, db_name, login_user, client_secret) < 0) {
		pool_free(pool);
		return NULL;
	}
	log_info(NULL, "new pool %s/%s: %s mode, pool_size %d", db_name, login_user,
	         config_pool_mode_name(pool->pool_mode), pool->limits.pool_size);
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

bool pool_is_paused(const struct pool *pool)
{
	return control_is_paused(pool->ctx, pool->db_name);
}

bool pool_login_backoff(const struct pool *pool)
{
	uint64_t retry = pool->ctx->config->server_login_retry;

	return pool->login_failed_at &&
	       uv_now(pool->ctx->loop) - pool->login_failed_at < retry;
}

/* Servers of every pool that shares pool's database or user budget. */
static int budget_used(struct pool *pool, bool same_db)
{
	struct sluice *ctx = pool->ctx;
	int n = 0;

	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *p = LIST_ENTRY(l, struct pool, node);

		if (same_db ? strcmp(p->db_name, pool->db_name) == 0
		            : strcmp(p->user_name, pool->user_name) == 0)
			n += p->server_count;
	}
	return n;
}

static bool within_budgets(struct pool *pool)
{
	int max_db = pool->limits.max_db_connections;
	int max_user = pool->limits.max_user_connections;

	return (max_db <= 0 || budget_used(pool, true) < max_db) &&
	       (max_user <= 0 || budget_used(pool, false) < max_user);
}

/* Closes the longest-idle server of another pool on the same budget, so a
 * pool with waiting clients is not starved by idle servers elsewhere. */
static bool evict_idle_elsewhere(struct pool *pool)
{
	struct sluice *ctx = pool->ctx;
	struct server *victim = NULL;

	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *p = LIST_ENTRY(l, struct pool, node);
		struct server *oldest;

		if (p == pool || list_empty(&p->idle) ||
		    (strcmp(p->db_name, pool->db_name) != 0 &&
		     strcmp(p->user_name, pool->user_name) != 0))
			continue;
		oldest = LIST_ENTRY(p->idle.next, struct server, node);
		if (!victim || oldest->last_used < victim->last_used)
			victim = oldest;
	}
	if (victim)
		server_close(victim, "evicted for a pool with waiting clients "
		             "(max_db_connections/max_user_connections)");
	return victim != NULL;
}

/* How many servers the pool may have now: pool_size, plus reserve_pool once
 * the oldest waiting client has waited reserve_pool_timeout. */
static int allowed_servers(struct pool *pool)
{
	struct sluice *ctx = pool->ctx;
	int allowed = pool->limits.pool_size;

	if (!list_empty(&pool->waiting)) {
		struct client *first = LIST_ENTRY(pool->waiting.next, struct client,
		                                  pool_node);

		if (uv_now(ctx->loop) - first->wait_start >=
		    ctx->config->reserve_pool_timeout)
			allowed += pool->limits.reserve_pool;
	}
	return allowed;
}

void pool_launch_needed(struct pool *pool)
{
	int connecting = 0;
	int wanted;

	/* The common case under load: every server is open and busy. */
	if (pool->server_count >= allowed_servers(pool) ||
	    pool->ctx->shutting_down || pool_is_paused(pool) ||
	    pool_login_backoff(pool))
		return;
	for (struct list *l = pool->used.next; l != &pool->used; l = l->next) {
		struct server *s = LIST_ENTRY(l, struct server, node);

		connecting += s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN;
	}
	/* Servers already logging in will serve the first waiters. */
	wanted = (int)list_count(&pool->waiting) - connecting;
	if (!list_empty(&pool->welcome) && pool->server_count == 0)
		wanted = 1;
	if (wanted < pool->limits.min_pool_size - pool->server_count)
		wanted = pool->limits.min_pool_size - pool->server_count;
	while (wanted-- > 0 && pool->server_count < allowed_servers(pool)) {
		/* Evicting may hand the freed slot to another starved pool
		 * (pool_server_gone): look again. */
		if (!within_budgets(pool) &&
		    (!evict_idle_elsewhere(pool) || !within_budgets(pool)))
			return;
		if (server_launch(pool) < 0)
			return;
	}
}

void pool_wait_welcome(struct pool *pool, struct client *client)
{
	if (pool->has_welcome) {
		client_welcome(client);
		return;
	}
	if (pool_login_backoff(pool) && pool->login_error) {
		client_fail(client, SQLSTATE_CONNECTION_FAILURE,
		            "server login has been failing, cached error: %s "
		            "(server_login_retry)", pool->login_error);
		return;
	}
	client->wait_start = uv_now(pool->ctx->loop);
	list_append(&pool->welcome, &client->pool_node);
	if (!has_login_in_progress(pool))
		pool_launch_needed(pool);
}

void pool_acquire(struct pool *pool, struct client *client)
{
	/* Most recently used first: its caches are warm, and the others can
	 * reach server_idle_timeout. */
	if (!list_empty(&pool->idle) && !pool_is_paused(pool)) {
		struct list *last = pool->idle.prev;

		list_remove(last);
		server_assign(LIST_ENTRY(last, struct server, node), client);
		return;
	}
	client->wait_start = uv_now(pool->ctx->loop);
	list_append(&pool->waiting, &client->pool_node);
	pool->wait_count++;
	pool_launch_needed(pool);
}

void pool_cancel_wait(struct pool *pool, struct client *client)
{
	(void)pool;
	list_remove(&client->pool_node);
}

/* The first client of pool that needs a server: its first queued query,
 * or, while the pool has no server at all, its first login (the welcome
 * needs one). NULL if none waits. */
static struct client *first_needing_server(struct pool *pool)
{
	if (!list_empty(&pool->waiting))
		return LIST_ENTRY(pool->waiting.next, struct client, pool_node);
	if (!list_empty(&pool->welcome) && pool->server_count == 0)
		return LIST_ENTRY(pool->welcome.next, struct client, pool_node);
	return NULL;
}

/* Another pool on the same db/user budget whose first client has waited
 * longest for a server; with blocked, only one that cannot open a server
 * of its own now. NULL if none. */
static struct pool *starved_pool(struct pool *pool, bool blocked)
{
	struct sluice *ctx = pool->ctx;
	struct pool *best = NULL;
	uint64_t best_since = 0;

	if (pool->limits.max_db_connections <= 0 &&
	    pool->limits.max_user_connections <= 0)
		return NULL;
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *p = LIST_ENTRY(l, struct pool, node);
		struct client *first;

		if (p == pool || (blocked && within_budgets(p)) ||
		    (strcmp(p->db_name, pool->db_name) != 0 &&
		     strcmp(p->user_name, pool->user_name) != 0))
			continue;
		first = first_needing_server(p);
		if (first && (!best || first->wait_start < best_since)) {
			best = p;
			best_since = first->wait_start;
		}
	}
	return best;
}

void pool_release(struct pool *pool, struct server *server)
{
	struct list *first;

	if (pool_is_paused(pool) || server->generation != pool->generation) {
		server_close(server, pool_is_paused(pool) ? "PAUSE" : "RECONNECT");
		return;
	}
	first = list_pop(&pool->waiting);
	if (first) {
		server_assign(server, LIST_ENTRY(first, struct client, pool_node));
		return;
	}
	if (starved_pool(pool, true)) {
		/* Hand the budget over (pool_server_gone launches for it):
		 * arrival order across pools that share it. */
		server_close(server, "released for a pool with waiting clients");
		return;
	}
	server_set_idle(server);
}

void pool_server_ready(struct pool *pool, struct server *server)
{
	struct list *l;

	free(pool->login_error);
	pool->login_error = NULL;
	pool->login_failed_at = 0;
	if (!pool->has_welcome) {
		if (params_copy(&pool->welcome_params, &server->params) < 0 ||
		    params_copy_tracked(&pool->defaults, &server->params,
		                        pool->ctx->config) < 0)
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
	pool->login_failed_at = uv_now(pool->ctx->loop);
	/* Clients logging in get the server's own error, as PgBouncer 1.24;
	 * queued clients wait (query_wait_timeout) for the retry. */
	while ((l = list_pop(&pool->welcome)) != NULL)
		client_fail(LIST_ENTRY(l, struct client, pool_node), sqlstate, "%s",
		            message);
}

void pool_server_gone(struct pool *pool, struct server *server)
{
	struct pool *starved;

	list_remove(&server->node);
	pool->server_count--;
	pool_launch_needed(pool);
	/* What pool left of a shared budget goes to the pool that has waited
	 * longest for it. */
	starved = starved_pool(pool, false);
	if (starved)
		pool_launch_needed(starved);
}

static bool same_string(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_target(const struct pool_target *a, const struct pool_target *b)
{
	return same_string(a->host, b->host) && a->port == b->port &&
	       same_string(a->dbname, b->dbname) && same_string(a->user, b->user) &&
	       same_string(a->password, b->password) &&
	       same_string(a->connect_query, b->connect_query) &&
	       same_string(a->application_name, b->application_name) &&
	       same_string(a->client_encoding, b->client_encoding) &&
	       same_string(a->datestyle, b->datestyle) &&
	       same_string(a->timezone, b->timezone);
}

void pool_apply_config(struct pool *pool)
{
	const struct config *cfg = pool->ctx->config;
	const struct db_config *db = config_find_db(cfg, pool->db_name);
	const struct user_config *uc = config_find_user(cfg, pool->user_name);
	struct pool_target target = { 0 };

	if (!db)
		return; /* removed: takes no new clients (login finds no entry) */
	pool->pool_mode = effective_mode(cfg, db, uc);
	compute_limits(&pool->limits, cfg, db, uc);
	if (fill_target(&target, cfg, db, pool->db_name, pool->user_name,
	                config_find_secret(cfg, pool->user_name)) < 0 ||
	    same_target(&target, &pool->target)) {
		free_target(&target);
		return;
	}
	free_target(&pool->target);
	pool->target = target;
	pool->generation++;
	log_info(NULL, "pool %s/%s: server target changed, reconnecting",
	         pool->db_name, pool->user_name);
	while (!list_empty(&pool->idle))
		server_close(LIST_ENTRY(pool->idle.next, struct server, node),
		             "configuration changed");
}

void pool_free_all(struct sluice *ctx)
{
	while (!list_empty(&ctx->pools))
		pool_free(LIST_ENTRY(ctx->pools.next, struct pool, node));
}
