/*
 * stats.c - counters and averages, per database.
 *
 * Owns a table of databases sorted by name, each with the running totals
 * and two snapshots taken at the last two stats_tick() calls; averages are
 * computed from the totals and the older snapshot, as PgBouncer does.
 * Databases are keyed by name, not by pool: the pools of one database
 * (one per user) share a row. A row goes with the last of its pools, as a
 * dropped autodb database's does in PgBouncer, so names clients make up do
 * not grow the table forever; what it counted stays in TOTALS and the
 * "stats:" line. Also writes the result sets of SHOW STATS, STATS_TOTALS,
 * STATS_AVERAGES and TOTALS, as PgBouncer's stats.c does.
 *
 * The table hangs off the loop's context (ctx->stats), made on first use.
 * Never touches a socket.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin_show.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "sluice.h"
#include "stats.h"

#define USEC_PER_SEC 1000000u

/* What is counted for one database. Times are in microseconds. */
struct stats_counters {
	uint64_t server_assignment_count; /* servers linked to a client */
	uint64_t xact_count;       /* transactions finished */
	uint64_t query_count;      /* queries (requests owing ReadyForQuery) */
	uint64_t received;         /* bytes from clients */
	uint64_t sent;             /* bytes to clients */
	uint64_t xact_time;        /* us spent in transactions */
	uint64_t query_time;       /* us spent in queries */
	uint64_t wait_time;        /* us clients waited for a server */
	uint64_t client_parse_count; /* named Parse messages from clients */
	uint64_t server_parse_count; /* Parse messages sluice sent to servers */
	uint64_t bind_count;       /* Binds of statements sluice tracks */
};

/* One database's counters. */
struct stats_db {
	char *name;
	size_t pools;                /* pools pointing here; freed at 0 */
	struct stats_counters cur;   /* totals since start */
	struct stats_counters newer; /* cur at the last tick */
	struct stats_counters older; /* cur at the tick before */
};

struct stats {
	struct stats_db **dbs;     /* sorted by name */
	size_t count;
	size_t cap;
	struct stats_db gone;      /* what freed rows counted, nameless */
	uint64_t newer_stamp;      /* us (uv_hrtime) of the last tick */
	uint64_t older_stamp;      /* us of the tick before */
};

static uint64_t now_us(void)
{
	return uv_hrtime() / 1000;
}

/* Index of name in the table, or where it would go (*found false). */
static size_t search(const struct stats *st, const char *name, bool *found)
{
	size_t lo = 0, hi = st->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(st->dbs[mid]->name, name);

		if (cmp == 0) {
			*found = true;
			return mid;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* The entry for name, made on first use; NULL when out of memory. */
static struct stats_db *find_or_add(struct stats *st, const char *name)
{
	bool found;
	size_t at = search(st, name, &found);
	struct stats_db *db;

	if (found)
		return st->dbs[at];
	if (st->count == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 16;
		struct stats_db **dbs = realloc(st->dbs, cap * sizeof(*dbs));

		if (!dbs)
			return NULL;
		st->dbs = dbs;
		st->cap = cap;
	}
	db = calloc(1, sizeof(*db));
	if (!db || !(db->name = strdup(name))) {
		free(db);
		return NULL;
	}
	memmove(st->dbs + at + 1, st->dbs + at, (st->count - at) * sizeof(*st->dbs));
	st->dbs[at] = db;
	st->count++;
	return db;
}

/* The table for ctx, made on first use; NULL when out of memory (counting
 * then stops, the proxy goes on). */
static struct stats *stats_of(struct sluice *ctx)
{
	struct stats *st = ctx->stats;

	if (st)
		return st;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	/* As PgBouncer at start: the first averages cover at least 1 s. */
	st->newer_stamp = now_us();
	st->older_stamp = st->newer_stamp - USEC_PER_SEC;
	ctx->stats = st;
	/* The console's row exists from the start, as PgBouncer's pool does. */
	find_or_add(st, STATS_ADMIN_DB);
	return st;
}

/* A row lives while a pool points to it, so a pool finds its row once
 * and keeps it until stats_pool_gone. */
static struct stats_counters *counters_of(struct pool *pool)
{
	struct stats *st;

	if (!pool->stats_db && (st = stats_of(pool->ctx)) != NULL) {
		pool->stats_db = find_or_add(st, pool->db_name);
		if (pool->stats_db)
			pool->stats_db->pools++;
	}
	return pool->stats_db ? &pool->stats_db->cur : NULL;
}

static void add(struct stats_counters *to, const struct stats_counters *c);

/* Folds a row into st->gone, takes it out of the table and frees it. */
static void remove_row(struct stats *st, struct stats_db *db)
{
	bool found;
	size_t at = search(st, db->name, &found);

	add(&st->gone.cur, &db->cur);
	add(&st->gone.newer, &db->newer);
	add(&st->gone.older, &db->older);
	memmove(st->dbs + at, st->dbs + at + 1,
	        (st->count - at - 1) * sizeof(*st->dbs));
	st->count--;
	free(db->name);
	free(db);
}

void stats_pool_gone(struct pool *pool)
{
	struct stats_db *db = pool->stats_db;

	pool->stats_db = NULL;
	if (db && --db->pools == 0 && strcmp(db->name, STATS_ADMIN_DB) != 0)
		remove_row(pool->ctx->stats, db);
}

void stats_xact_done(struct pool *pool, uint64_t xact_us)
{
	struct stats_counters *c = counters_of(pool);

	if (!c)
		return;
	c->xact_count++;
	c->xact_time += xact_us;
}

void stats_query_done(struct pool *pool, uint64_t query_us)
{
	struct stats_counters *c = counters_of(pool);

	if (!c)
		return;
	c->query_count++;
	c->query_time += query_us;
}

void stats_assign(struct pool *pool, uint64_t wait_us)
{
	struct stats_counters *c = counters_of(pool);

	if (!c)
		return;
	c->server_assignment_count++;
	c->wait_time += wait_us;
}

void stats_bytes(struct pool *pool, uint64_t received, uint64_t sent)
{
	struct stats_counters *c = counters_of(pool);

	if (!c)
		return;
	c->received += received;
	c->sent += sent;
}

void stats_prepared(struct pool *pool, enum stats_prepared_event event)
{
	struct stats_counters *c = counters_of(pool);

	if (!c)
		return;
	switch (event) {
	case STATS_CLIENT_PARSE:
		c->client_parse_count++;
		break;
	case STATS_SERVER_PARSE:
		c->server_parse_count++;
		break;
	case STATS_BIND:
		c->bind_count++;
		break;
	}
}

void stats_admin_command(struct sluice *ctx, uint64_t received, uint64_t sent)
{
	struct stats *st = stats_of(ctx);
	struct stats_db *db = st ? find_or_add(st, STATS_ADMIN_DB) : NULL;

	if (!db)
		return;
	db->cur.xact_count++;
	db->cur.query_count++;
	db->cur.received += received;
	db->cur.sent += sent;
}

static void add(struct stats_counters *to, const struct stats_counters *c)
{
	to->server_assignment_count += c->server_assignment_count;
	to->xact_count += c->xact_count;
	to->query_count += c->query_count;
	to->received += c->received;
	to->sent += c->sent;
	to->xact_time += c->xact_time;
	to->query_time += c->query_time;
	to->wait_time += c->wait_time;
	to->client_parse_count += c->client_parse_count;
	to->server_parse_count += c->server_parse_count;
	to->bind_count += c->bind_count;
}

/* Per second over dur_us of what cur counts more than old. */
static uint64_t rate(uint64_t cur, uint64_t old, uint64_t dur_us)
{
	return USEC_PER_SEC * (cur - old) / dur_us;
}

/* PgBouncer's calc_average: rates per second over dur_us, times per event. */
static void average(struct stats_counters *avg, const struct stats_counters *cur,
                    const struct stats_counters *old, uint64_t dur_us)
{
	uint64_t assigns = cur->server_assignment_count -
	                   old->server_assignment_count;
	uint64_t xacts = cur->xact_count - old->xact_count;
	uint64_t queries = cur->query_count - old->query_count;

	memset(avg, 0, sizeof(*avg));
	if (dur_us == 0)
		return;
	avg->server_assignment_count = rate(assigns, 0, dur_us);
	avg->xact_count = rate(xacts, 0, dur_us);
	avg->query_count = rate(queries, 0, dur_us);
	avg->received = rate(cur->received, old->received, dur_us);
	avg->sent = rate(cur->sent, old->sent, dur_us);
	avg->client_parse_count = rate(cur->client_parse_count,
	                               old->client_parse_count, dur_us);
	avg->server_parse_count = rate(cur->server_parse_count,
	                               old->server_parse_count, dur_us);
	avg->bind_count = rate(cur->bind_count, old->bind_count, dur_us);
	if (xacts > 0)
		avg->xact_time = (cur->xact_time - old->xact_time) / xacts;
	if (queries > 0)
		avg->query_time = (cur->query_time - old->query_time) / queries;
	if (assigns > 0)
		avg->wait_time = (cur->wait_time - old->wait_time) / assigns;
}

/* Totals and their older snapshot over every row, freed ones included. */
static void sum_rows(const struct stats *st, struct stats_counters *cur,
                     struct stats_counters *old)
{
	*cur = st->gone.cur;
	*old = st->gone.older;
	for (size_t i = 0; i < st->count; i++) {
		add(cur, &st->dbs[i]->cur);
		add(old, &st->dbs[i]->older);
	}
}

static void log_period(const struct stats *st, uint64_t now)
{
	struct stats_counters cur, old, avg;

	sum_rows(st, &cur, &old);
	average(&avg, &cur, &old, now - st->older_stamp);
	/* PgBouncer's line */
	log_info(NULL, "stats: %" PRIu64 " xacts/s, %" PRIu64 " queries/s, "
	         "%" PRIu64 " client parses/s, %" PRIu64 " server parses/s, "
	         "%" PRIu64 " binds/s, in %" PRIu64 " B/s, out %" PRIu64 " B/s, "
	         "xact %" PRIu64 " us, query %" PRIu64 " us, wait %" PRIu64 " us",
	         avg.xact_count, avg.query_count, avg.client_parse_count,
	         avg.server_parse_count, avg.bind_count, avg.received, avg.sent,
	         avg.xact_time, avg.query_time, avg.wait_time);
}

void stats_tick(struct sluice *ctx)
{
	struct stats *st = stats_of(ctx);
	uint64_t now = now_us();

	/* Called from housekeeping, more often than stats_period. */
	if (!st || now - st->newer_stamp < ctx->config->stats_period * 1000)
		return;
	st->older_stamp = st->newer_stamp;
	st->newer_stamp = now;
	st->gone.older = st->gone.newer;
	st->gone.newer = st->gone.cur;
	for (size_t i = 0; i < st->count; i++) {
		st->dbs[i]->older = st->dbs[i]->newer;
		st->dbs[i]->newer = st->dbs[i]->cur;
	}
	if (ctx->config->log_stats)
		log_period(st, now);
}

/* --- SHOW ------------------------------------------------------------- */

/* PgBouncer's counters in its column order. */
#define N_COUNTERS 11

static void counter_values(const struct stats_counters *c, uint64_t v[N_COUNTERS])
{
	const uint64_t values[N_COUNTERS] = {
		c->server_assignment_count, c->xact_count, c->query_count,
		c->received, c->sent, c->xact_time, c->query_time, c->wait_time,
		c->client_parse_count, c->server_parse_count, c->bind_count,
	};

	memcpy(v, values, sizeof(values));
}

static void put_counters(struct admin_result *r, const struct stats_counters *c)
{
	uint64_t v[N_COUNTERS];

	counter_values(c, v);
	for (size_t i = 0; i < N_COUNTERS; i++)
		admin_put_uint(r, v[i]);
}

enum view {
	VIEW_STATS,                /* totals and averages */
	VIEW_TOTALS,
	VIEW_AVERAGES,
};

static void begin_view(struct admin_result *r, struct msgbuf *mb, enum view view)
{
	static const char *const stats_cols[] = {
		"database", "total_server_assignment_count", "total_xact_count",
		"total_query_count", "total_received", "total_sent",
		"total_xact_time", "total_query_time", "total_wait_time",
		"total_client_parse_count", "total_server_parse_count",
		"total_bind_count", "avg_server_assignment_count",
		"avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
		"avg_xact_time", "avg_query_time", "avg_wait_time",
		"avg_client_parse_count", "avg_server_parse_count",
		"avg_bind_count",
	};
	/* STATS_TOTALS and STATS_AVERAGES share names, but for PgBouncer's
	 * avg_ prefix on the prepared-statement averages. */
	static const char *const part_cols[2][1 + N_COUNTERS] = {
		{ "database", "server_assignment_count", "xact_count",
		  "query_count", "bytes_received", "bytes_sent", "xact_time",
		  "query_time", "wait_time", "client_parse_count",
		  "server_parse_count", "bind_count" },
		{ "database", "server_assignment_count", "xact_count",
		  "query_count", "bytes_received", "bytes_sent", "xact_time",
		  "query_time", "wait_time", "avg_client_parse_count",
		  "avg_server_parse_count", "avg_bind_count" },
	};

	if (view == VIEW_STATS)
		admin_result_begin(r, mb, "sNNNNNNNNNNNNNNNNNNNNNN", stats_cols,
		                   1 + 2 * N_COUNTERS);
	else
		admin_result_begin(r, mb, "sNNNNNNNNNNN",
		                   part_cols[view == VIEW_AVERAGES], 1 + N_COUNTERS);
}

static int show_view(struct sluice *ctx, struct msgbuf *mb, enum view view)
{
	struct stats *st = stats_of(ctx);
	struct admin_result r;
	uint64_t dur;

	if (!st)
		return -1;
	/* A pool without traffic yet still has its row, as in PgBouncer. */
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next)
		if (!counters_of(LIST_ENTRY(l, struct pool, node)))
			return -1;
	begin_view(&r, mb, view);
	dur = now_us() - st->older_stamp;
	for (size_t i = 0; i < st->count; i++) {
		const struct stats_db *db = st->dbs[i];
		struct stats_counters avg;

		average(&avg, &db->cur, &db->older, dur);
		admin_row_begin(&r);
		admin_put_text(&r, db->name);
		if (view != VIEW_AVERAGES)
			put_counters(&r, &db->cur);
		if (view != VIEW_TOTALS)
			put_counters(&r, &avg);
		admin_row_end(&r);
	}
	admin_result_end(&r);
	return 0;
}

int stats_show(struct sluice *ctx, struct msgbuf *mb)
{
	return show_view(ctx, mb, VIEW_STATS);
}

int stats_show_totals(struct sluice *ctx, struct msgbuf *mb)
{
	return show_view(ctx, mb, VIEW_TOTALS);
}

int stats_show_averages(struct sluice *ctx, struct msgbuf *mb)
{
	return show_view(ctx, mb, VIEW_AVERAGES);
}

static void put_sum_rows(struct admin_result *r, const char *prefix,
                         const struct stats_counters *c)
{
	/* PgBouncer names these rows after its struct fields. */
	static const char *const names[N_COUNTERS] = {
		"server_assignment_count", "xact_count", "query_count",
		"client_bytes", "server_bytes", "xact_time", "query_time",
		"wait_time", "ps_client_parse_count", "ps_server_parse_count",
		"ps_bind_count",
	};
	uint64_t v[N_COUNTERS];
	char name[64];

	counter_values(c, v);
	for (size_t i = 0; i < N_COUNTERS; i++) {
		snprintf(name, sizeof(name), "%s%s", prefix, names[i]);
		admin_row_begin(r);
		admin_put_text(r, name);
		admin_put_uint(r, v[i]);
		admin_row_end(r);
	}
}

int stats_show_sum(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = { "name", "value" };
	struct stats *st = stats_of(ctx);
	struct stats_counters cur, old, avg;
	struct admin_result r;

	if (!st)
		return -1;
	sum_rows(st, &cur, &old);
	average(&avg, &cur, &old, now_us() - st->older_stamp);
	admin_result_begin(&r, mb, "sN", cols, 2);
	put_sum_rows(&r, "total_", &cur);
	put_sum_rows(&r, "avg_", &avg);
	admin_result_end(&r);
	return 0;
}

void stats_free(struct sluice *ctx)
{
	struct stats *st = ctx->stats;

	if (!st)
		return;
	for (size_t i = 0; i < st->count; i++) {
		free(st->dbs[i]->name);
		free(st->dbs[i]);
	}
	free(st->dbs);
	free(st);
	ctx->stats = NULL;
}
