/*
 * timer.c - deadlines and periodic housekeeping.
 *
 * One libuv timer per loop ticks every TICK_MS, so each timeout fires
 * within TICK_MS of its deadline (PgBouncer checks every 333 ms). A tick
 * first decides, over every client and server, what is due, and then acts:
 * acting moves connections between lists, so the two are separate passes.
 * Deadlines count from uv_now() stamps the state machines keep.
 */
#include <stdio.h>
#include <stdlib.h>

#include "admin_control.h"
#include "cancel.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "control.h"
#include "leak.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"
#include "stats.h"
#include "timer.h"

#define TICK_MS 50
/* Actions per tick; more wait for the next tick, 50 ms later. */
#define MAX_DUE 512

enum due_action {
	DUE_CLIENT_FAIL,     /* FATAL with the setting's text, then close */
	DUE_WAIT_NOTICE,     /* query_wait_notify */
	DUE_QUERY_CANCEL,    /* query_timeout: cancel the running query */
	DUE_CANCEL_WAIT,     /* cancel_wait_timeout: close the server */
	DUE_SERVER_CLOSE,    /* server_idle_timeout, server_lifetime */
	DUE_SERVER_CONNECT,  /* server_connect_timeout */
};

struct due {
	enum due_action action;
	struct client *client;
	struct server *server;
	const char *setting;       /* the setting that fired */
	const char *message;       /* what the client is told */
	uint64_t limit_ms;         /* its value, for the log line */
	enum pool_timeout_kind kind;
	bool counted;              /* counts in pool->timeouts */
};

struct tick {
	struct sluice *ctx;
	uint64_t now;
	struct due due[MAX_DUE];
	size_t count;
};

static bool past(uint64_t now, uint64_t since, uint64_t limit_ms)
{
	return limit_ms > 0 && since > 0 && now - since >= limit_ms;
}

static void add(struct tick *t, struct due d)
{
	if (t->count < MAX_DUE)
		t->due[t->count++] = d;
}

static void fail_client(struct tick *t, struct client *c, const char *setting,
                        const char *message, uint64_t limit_ms,
                        enum pool_timeout_kind kind, bool counted)
{
	add(t, (struct due){ .action = DUE_CLIENT_FAIL, .client = c,
	                     .setting = setting, .message = message,
	                     .limit_ms = limit_ms, .kind = kind,
	                     .counted = counted });
}

static void check_waiting(struct tick *t, struct client *c)
{
	const struct pool_limits *l = &c->pool->limits;
	uint64_t notify = t->ctx->config->query_wait_notify;

	if (past(t->now, c->wait_start, l->query_wait_timeout))
		fail_client(t, c, "query_wait_timeout", "query_wait_timeout",
		            l->query_wait_timeout, TIMEOUT_QUERY_WAIT, true);
	else if (!c->wait_notified && past(t->now, c->wait_start, notify))
		add(t, (struct due){ .action = DUE_WAIT_NOTICE, .client = c });
}

static void check_active(struct tick *t, struct client *c)
{
	const struct pool_limits *l = &c->pool->limits;
	struct server *s = c->server;

	if (!s)
		return;
	if (c->query_timed_out && s->cancel_deadline && t->now >= s->cancel_deadline)
		add(t, (struct due){ .action = DUE_CANCEL_WAIT, .server = s });
	else if (!c->query_timed_out && past(t->now, c->query_start, l->query_timeout))
		add(t, (struct due){ .action = DUE_QUERY_CANCEL, .client = c,
		                     .server = s, .limit_ms = l->query_timeout });
	leak_check(c, t->now);
	if (past(t->now, c->idle_xact_since, l->idle_transaction_timeout))
		fail_client(t, c, "idle_transaction_timeout", "idle transaction timeout",
		            l->idle_transaction_timeout, TIMEOUT_IDLE_TRANSACTION, true);
	else if (past(t->now, c->xact_start, l->transaction_timeout))
		fail_client(t, c, "transaction_timeout", "transaction timeout",
		            l->transaction_timeout, TIMEOUT_TRANSACTION, true);
}

static void check_client(struct tick *t, struct client *c)
{
	uint64_t login_timeout = t->ctx->config->client_login_timeout;

	switch (c->state) {
	case CLIENT_STARTUP:
	case CLIENT_AUTH_PASSWORD:
	case CLIENT_AUTH_SASL:
	case CLIENT_AUTH_SASL_FINAL:
	case CLIENT_WELCOME:
		if (past(t->now, c->connect_time, login_timeout))
			fail_client(t, c, "client_login_timeout", "client_login_timeout",
			            login_timeout, TIMEOUT_CLIENT_IDLE, false);
		return;
	case CLIENT_WAITING:
		return check_waiting(t, c);
	case CLIENT_IDLE:
		if (past(t->now, c->idle_since, c->pool->limits.client_idle_timeout))
			fail_client(t, c, "client_idle_timeout", "client_idle_timeout",
			            c->pool->limits.client_idle_timeout,
			            TIMEOUT_CLIENT_IDLE, true);
		return;
	case CLIENT_ACTIVE:
		return check_active(t, c);
	case CLIENT_ADMIN:
		return;
	}
}

static void close_server(struct tick *t, struct server *s, const char *setting,
                         uint64_t limit_ms, enum pool_timeout_kind kind)
{
	add(t, (struct due){ .action = DUE_SERVER_CLOSE, .server = s,
	                     .setting = setting, .limit_ms = limit_ms,
	                     .kind = kind, .counted = true });
}

static void check_pool_servers(struct tick *t, struct pool *pool)
{
	const struct config *cfg = t->ctx->config;
	int closable = pool->server_count - pool->limits.min_pool_size;

	for (struct list *l = pool->idle.next; l != &pool->idle; l = l->next) {
		struct server *s = LIST_ENTRY(l, struct server, node);

		if (s->lifetime && t->now - s->connect_time >= s->lifetime) {
			close_server(t, s, "server_lifetime", s->lifetime,
			             TIMEOUT_SERVER_LIFETIME);
		} else if (closable > 0 &&
		           past(t->now, s->last_used, cfg->server_idle_timeout)) {
			close_server(t, s, "server_idle_timeout",
			             cfg->server_idle_timeout, TIMEOUT_SERVER_IDLE);
			closable--; /* min_pool_size stays warm */
		}
	}
	for (struct list *l = pool->used.next; l != &pool->used; l = l->next) {
		struct server *s = LIST_ENTRY(l, struct server, node);

		if ((s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN) &&
		    past(t->now, s->connect_time, cfg->server_connect_timeout))
			add(t, (struct due){ .action = DUE_SERVER_CONNECT, .server = s });
		else if (s->state == SERVER_CANCELING && cfg->cancel_wait_timeout &&
		         t->now >= s->cancel_deadline)
			close_server(t, s, "cancel_wait_timeout", cfg->cancel_wait_timeout,
			             TIMEOUT_CANCEL_WAIT);
	}
}

/* An earlier action of the same tick may have closed or moved it. */
static bool still_due(const struct due *d)
{
	if (d->client && (d->client->conn.closing ||
	                  (d->action == DUE_WAIT_NOTICE &&
	                   d->client->state != CLIENT_WAITING)))
		return false;
	if (d->server && d->server->conn.closing)
		return false;
	return !(d->client && d->server && d->client->server != d->server);
}

static void act_on(struct tick *t, struct due *d)
{
	struct pool *pool = d->client ? d->client->pool : d->server->pool;
	struct msgbuf mb;

	if (!still_due(d))
		return;
	if (d->counted)
		pool->timeouts[d->kind]++;
	switch (d->action) {
	case DUE_CLIENT_FAIL:
		log_warn(&d->client->conn, "%s (%llu ms) reached", d->setting,
		         (unsigned long long)d->limit_ms);
		if (d->kind == TIMEOUT_IDLE_TRANSACTION)
			leak_client_gone(d->client, "idle_transaction_timeout");
		if (d->kind == TIMEOUT_QUERY_WAIT && pool->login_error)
			client_fail(d->client, SQLSTATE_PROTOCOL_VIOLATION,
			            "query_wait_timeout; server login has been failing: %s",
			            pool->login_error);
		else
			client_fail(d->client, SQLSTATE_PROTOCOL_VIOLATION, "%s",
			            d->message);
		return;
	case DUE_WAIT_NOTICE:
		d->client->wait_notified = true;
		msgbuf_init(&mb);
		codec_put_notice(&mb, "no server connection available yet, client is "
		                 "queued (query_wait_notify)");
		conn_queue_msgbuf(&d->client->conn, &mb);
		msgbuf_free(&mb);
		if (conn_flush(&d->client->conn, NULL) < 0)
			client_close(d->client, "write failed");
		return;
	case DUE_QUERY_CANCEL:
		pool->timeouts[TIMEOUT_QUERY]++;
		log_warn(&d->client->conn, "query_timeout (%llu ms) reached: canceling query",
		         (unsigned long long)d->limit_ms);
		d->client->query_timed_out = true;
		d->server->cancel_deadline = t->now + t->ctx->config->cancel_wait_timeout;
		if (!t->ctx->config->cancel_wait_timeout)
			d->server->cancel_deadline = 0;
		cancel_send(d->server);
		return;
	case DUE_CANCEL_WAIT:
		return server_cancel_timed_out(d->server);
	case DUE_SERVER_CLOSE:
		log_info(&d->server->conn, "%s (%llu ms) reached", d->setting,
		         (unsigned long long)d->limit_ms);
		return server_close(d->server, d->setting);
	case DUE_SERVER_CONNECT:
		return server_connect_timed_out(d->server);
	}
}

/* Pools made from "*" go away after autodb_idle_timeout without clients. */
static void check_autodb(struct tick *t, struct pool *pool)
{
	uint64_t limit = t->ctx->config->autodb_idle_timeout;
	char db_esc[LOG_ESCAPED_NAME], user_esc[LOG_ESCAPED_NAME];

	if (!pool->autodb || pool->client_count > 0 || !list_empty(&pool->used) ||
	    !past(t->now, pool->last_active, limit))
		return;
	while (!list_empty(&pool->idle))
		server_close(LIST_ENTRY(pool->idle.next, struct server, node),
		             "autodb_idle_timeout");
	/* Closing servers still read their pool: freed on a later tick. */
	if (pool->server_structs > 0)
		return;
	log_info(NULL, "pool %s/%s: autodb_idle_timeout reached, removed",
	         log_escape(pool->db_name, db_esc, sizeof(db_esc)),
	         log_escape(pool->user_name, user_esc, sizeof(user_esc)));
	pool_free(pool);
}

/* Pool-level work that needs no deadline of a single connection. */
static void tend_pools(struct tick *t)
{
	struct sluice *ctx = t->ctx;
	struct list *l = ctx->pools.next;

	while (l != &ctx->pools) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		l = l->next; /* check_autodb may free this pool */
		if (!list_empty(&pool->waiting) ||
		    pool->server_count < pool->limits.min_pool_size)
			pool_launch_needed(pool);
		check_autodb(t, pool);
	}
}

/* True when an idle client (no server) can have a deadline: then every
 * client is looked at; otherwise only those reachable from the pools. */
static bool idle_clients_have_deadlines(const struct sluice *ctx)
{
	if (ctx->login_count > 0 || ctx->config->client_idle_timeout > 0)
		return true;
	for (const struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next)
		if (LIST_ENTRY(l, const struct pool, node)->limits.client_idle_timeout)
			return true;
	return false;
}

/* The clients a pool knows of: queued, and linked to its servers. O(busy),
 * so that thousands of idle clients cost nothing per tick. */
static void check_pool_clients(struct tick *t, struct pool *pool)
{
	for (struct list *l = pool->waiting.next; l != &pool->waiting; l = l->next)
		check_client(t, LIST_ENTRY(l, struct client, pool_node));
	for (struct list *l = pool->used.next; l != &pool->used; l = l->next) {
		struct server *s = LIST_ENTRY(l, struct server, node);

		if (s->client)
			check_client(t, s->client);
	}
}

static void tick_cb(uv_timer_t *timer)
{
	struct tick *t = timer->data;
	struct sluice *ctx = t->ctx;
	bool scan_all = idle_clients_have_deadlines(ctx);

	t->now = uv_now(ctx->loop);
	t->count = 0;
	for (struct list *l = ctx->clients.next; scan_all && l != &ctx->clients; l = l->next)
		check_client(t, LIST_ENTRY(l, struct client, node));
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (!scan_all)
			check_pool_clients(t, pool);
		check_pool_servers(t, pool);
	}
	for (size_t i = 0; i < t->count; i++)
		act_on(t, &t->due[i]);
	tend_pools(t);
	leak_stats_tick(ctx, t->now);
	stats_tick(ctx);
	control_tick(ctx);
	admin_control_tick(ctx);
}

void timer_start(struct sluice *ctx)
{
	struct tick *t = calloc(1, sizeof(*t));

	if (!t)
		return;
	t->ctx = ctx;
	uv_timer_init(ctx->loop, &ctx->housekeeping);
	ctx->housekeeping.data = t;
	uv_timer_start(&ctx->housekeeping, tick_cb, TICK_MS, TICK_MS);
}

static void timer_closed_cb(uv_handle_t *handle)
{
	free(handle->data);
}

void timer_stop(struct sluice *ctx)
{
	if (ctx->housekeeping.data)
		uv_close((uv_handle_t *)&ctx->housekeeping, timer_closed_cb);
}
