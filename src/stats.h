/*
 * stats.h - the counters behind SHOW STATS: per database, as PgBouncer
 * keeps them, with averages over the last stats_period.
 *
 * The core reports each finished query, transaction and server assignment
 * and the bytes it passes; housekeeping calls stats_tick(), which once per
 * stats_period closes the period the averages cover and writes PgBouncer's
 * "stats: ..." log line when log_stats is on.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdint.h>

struct msgbuf;
struct pool;
struct sluice;

/* The name the console's own commands are counted under, as PgBouncer's. */
#define STATS_ADMIN_DB "pgbouncer"

/* A transaction of pool's database ended (ReadyForQuery 'I'); it lasted
 * xact_us from its first request. */
void stats_xact_done(struct pool *pool, uint64_t xact_us);

/* A query ended (ReadyForQuery with nothing else in flight); query_us from
 * its request. */
void stats_query_done(struct pool *pool, uint64_t query_us);

/* A server was linked to a client that waited wait_us for it (0 if one was
 * idle). */
void stats_assign(struct pool *pool, uint64_t wait_us);

/* Bytes passed: received from a client, sent to a client. */
void stats_bytes(struct pool *pool, uint64_t received, uint64_t sent);

/* What the prepared-statement support did, counted as PgBouncer counts
 * it: a client's named Parse, a Parse sent to a server, a client's Bind
 * of a named statement. */
enum stats_prepared_event {
	STATS_CLIENT_PARSE,
	STATS_SERVER_PARSE,
	STATS_BIND,
};

void stats_prepared(struct pool *pool, enum stats_prepared_event event);

/* The console ran a command: counted as one transaction and one query of
 * STATS_ADMIN_DB, as PgBouncer counts its own. */
void stats_admin_command(struct sluice *ctx, uint64_t received, uint64_t sent);

/* Housekeeping, as often as it likes: once stats_period has passed since
 * the last time, closes the period for the averages and logs the
 * "stats: ..." line if log_stats is on. */
void stats_tick(struct sluice *ctx);

/*
 * SHOW STATS, STATS_TOTALS, STATS_AVERAGES (a row per database that has a
 * pool, in name order, and STATS_ADMIN_DB) and TOTALS (all summed, those
 * of freed pools included). Each appends a whole result
 * set to mb; returns 0, or -1 when out of memory.
 */
int stats_show(struct sluice *ctx, struct msgbuf *mb);
int stats_show_totals(struct sluice *ctx, struct msgbuf *mb);
int stats_show_averages(struct sluice *ctx, struct msgbuf *mb);
int stats_show_sum(struct sluice *ctx, struct msgbuf *mb);

/* pool is being freed: its database's row goes with the last of its
 * pools (its counts stay in the totals). */
void stats_pool_gone(struct pool *pool);

/* Frees the counters (at exit). */
void stats_free(struct sluice *ctx);

#endif
