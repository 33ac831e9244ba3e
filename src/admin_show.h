/*
 * admin_show.h - between the console (admin.c) and the SHOW commands that
 * live elsewhere: the views of pools and connections (admin_show.c) and of
 * the counters (stats.c). admin.c provides the result-set writer they share.
 */
#ifndef SLUICE_ADMIN_SHOW_H
#define SLUICE_ADMIN_SHOW_H

#include <stddef.h>
#include <stdint.h>

struct msgbuf;
struct sluice;

/* A result set being written into a msgbuf. */
struct admin_result {
	struct msgbuf *mb;
	const char *types;         /* one letter per column, see below */
	size_t ncols;
	size_t col;                /* next column of the open row */
};

/*
 * Starts a result set: writes its RowDescription. types has PgBouncer's
 * letter per column, which gives the type clients see: s text, i int4,
 * q int8, N numeric, T a time (sent as text), b bytea. names has one entry
 * per letter.
 */
void admin_result_begin(struct admin_result *r, struct msgbuf *mb,
                        const char *types, const char *const *names,
                        size_t nnames);

/* A DataRow: begin, one put per column in order, end. */
void admin_row_begin(struct admin_result *r);
void admin_put_text(struct admin_result *r, const char *s); /* NULL: SQL NULL */
void admin_put_int(struct admin_result *r, long long v);     /* i, q, N */
void admin_put_uint(struct admin_result *r, uint64_t v);     /* q, N */
void admin_put_time(struct admin_result *r, uint64_t wall_us); /* T */
void admin_row_end(struct admin_result *r);

/* Ends the result set with CommandComplete "SHOW". */
void admin_result_end(struct admin_result *r);

/*
 * SHOW commands over live pools and connections. Each appends a whole
 * result set to mb and returns 0, or -1 when out of memory (mb may then
 * hold part of one: the caller discards it).
 */
int admin_show_pools(struct sluice *ctx, struct msgbuf *mb);
int admin_show_clients(struct sluice *ctx, struct msgbuf *mb);
int admin_show_servers(struct sluice *ctx, struct msgbuf *mb);
int admin_show_sockets(struct sluice *ctx, struct msgbuf *mb);
int admin_show_active_sockets(struct sluice *ctx, struct msgbuf *mb);
int admin_show_databases(struct sluice *ctx, struct msgbuf *mb);
int admin_show_users(struct sluice *ctx, struct msgbuf *mb);

/* How many rows SHOW DATABASES and SHOW USERS have; -1 when out of
 * memory. For SHOW LISTS. */
long admin_count_databases(struct sluice *ctx);
long admin_count_users(struct sluice *ctx);

#endif
