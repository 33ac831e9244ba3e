/*
 * admin_show.c - the SHOW commands of the admin console that walk the live
 * state: POOLS, CLIENTS, SERVERS, SOCKETS, ACTIVE_SOCKETS, DATABASES, USERS.
 *
 * Each walks ctx->pools, ctx->clients and each pool's server lists and
 * answers with PgBouncer 1.25's columns, in its order and with its column
 * types, so that tools written for PgBouncer read sluice the same way. Rows
 * come in PgBouncer's order: pools by (database, user), within a pool by
 * state. The console itself shows as PgBouncer's "pgbouncer" database,
 * pool and user. Nothing here changes any state.
 */
#define _GNU_SOURCE /* struct ucred: the pid of a unix socket peer */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "admin_show.h"
#include "client.h"
#include "config.h"
#include "control.h"
#include "control.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"
#include "stats.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* --- times ------------------------------------------------------------ */

/*
 * The wall-clock time (us) of a uv_now() stamp of ctx's loop: the loop
 * clock is monotonic, the console shows dates.
 */
static uint64_t wall_us_of(struct sluice *ctx, uint64_t loop_ms)
{
	uv_timeval64_t tv;
	uint64_t now_us, age_us;

	uv_gettimeofday(&tv);
	now_us = (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec;
	age_us = (uv_now(ctx->loop) - loop_ms) * 1000;
	return age_us < now_us ? now_us - age_us : 0;
}

/* How long c has waited for a server so far, in us (0: not waiting). */
static uint64_t client_wait_us(const struct client *c)
{
	if (!c->wait_start)
		return 0;
	return (uv_now(c->conn.ctx->loop) - c->wait_start) * 1000;
}

/* uv_now() of c's latest request: the query in flight or queued, else the
 * start of its transaction, else when it last went idle (the end of its
 * last transaction), else its login. */
static uint64_t client_request_ms(const struct client *c)
{
	if (c->query_start)
		return c->query_start;
	if (c->wait_start)
		return c->wait_start;
	if (c->xact_start)
		return c->xact_start;
	return c->idle_since ? c->idle_since : c->connect_time;
}

/* --- pools and what state each connection counts as ------------------- */

/* One row of SHOW POOLS; the rows give every per-pool listing its order. */
struct pool_row {
	const char *db;
	const char *user;
	struct pool *pool;         /* NULL: the console's own pool */
};

struct pool_rows {
	struct pool_row *rows;
	size_t count;
};

static int compare_pool_rows(const void *a, const void *b)
{
	const struct pool_row *x = a, *y = b;
	int cmp = strcmp(x->db, y->db);

	return cmp ? cmp : strcmp(x->user, y->user);
}

/* ctx's pools and the console's, sorted as PgBouncer's pool list. 0 or -1. */
static int pool_rows_get(struct sluice *ctx, struct pool_rows *out)
{
	size_t n = list_count(&ctx->pools) + 1;

	out->rows = calloc(n, sizeof(*out->rows));
	if (!out->rows)
		return -1;
	out->count = 0;
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);

		out->rows[out->count++] = (struct pool_row){ pool->db_name,
		                                             pool->user_name, pool };
	}
	out->rows[out->count++] = (struct pool_row){ STATS_ADMIN_DB,
	                                             STATS_ADMIN_DB, NULL };
	qsort(out->rows, out->count, sizeof(*out->rows), compare_pool_rows);
	return 0;
}

/* PgBouncer's lists, which SHOW POOLS counts and the sockets show. */
enum kind {
	KIND_CL_ACTIVE,            /* linked, or idle between transactions */
	KIND_CL_WAITING,           /* queued for a server or its parameters */
	KIND_CL_LOGIN,             /* startup and authentication */
	KIND_SV_ACTIVE,            /* linked to a client */
	KIND_SV_IDLE,
	KIND_SV_USED,              /* idle past server_check_delay */
	KIND_SV_TESTED,            /* running the check or reset query */
	KIND_SV_LOGIN,             /* connecting, logging in */
	KIND_SV_BEING_CANCELED,    /* waiting for a cancel to finish */
	KINDS,
};

/* Names in SHOW CLIENTS/SERVERS and in SHOW SOCKETS (NULL: not listed). */
static const char *const kind_names[KINDS][2] = {
	[KIND_CL_ACTIVE] = { "active", "cl_active" },
	[KIND_CL_WAITING] = { "waiting", "cl_waiting" },
	[KIND_CL_LOGIN] = { "login", "cl_login" },
	[KIND_SV_ACTIVE] = { "active", "sv_active" },
	[KIND_SV_IDLE] = { "idle", "sv_idle" },
	[KIND_SV_USED] = { "used", "sv_used" },
	[KIND_SV_TESTED] = { "tested", "sv_tested" },
	[KIND_SV_LOGIN] = { "new", "sv_login" },
	[KIND_SV_BEING_CANCELED] = { "being_canceled", NULL },
};

static enum kind server_kind(const struct server *s)
{
	const struct config *cfg = s->pool->ctx->config;
	uint64_t idle_ms = uv_now(s->pool->ctx->loop) - s->last_used;

	switch (s->state) {
	case SERVER_CONNECTING:
	case SERVER_LOGIN:
		return KIND_SV_LOGIN;
	case SERVER_IDLE:
		if (cfg->server_check_query && *cfg->server_check_query &&
		    idle_ms >= cfg->server_check_delay)
			return KIND_SV_USED;
		return KIND_SV_IDLE;
	case SERVER_INTERNAL:
		/* Parameter sync runs linked, as in PgBouncer; a check before
		 * linking is a test the client waits for. */
		if (s->client && s->next != SERVER_NEXT_ASSIGN)
			return KIND_SV_ACTIVE;
		return KIND_SV_TESTED;
	case SERVER_ACTIVE:
		return KIND_SV_ACTIVE;
	case SERVER_CANCELING:
		return KIND_SV_BEING_CANCELED;
	}
	return KIND_SV_LOGIN;
}

static enum kind client_kind(const struct client *c)
{
	switch (c->state) {
	case CLIENT_STARTUP:
	case CLIENT_AUTH_PASSWORD:
	case CLIENT_AUTH_SASL:
	case CLIENT_AUTH_SASL_FINAL:
		return KIND_CL_LOGIN;
	case CLIENT_WELCOME:
		return KIND_CL_WAITING;
	case CLIENT_WAITING:
		if (c->server && server_kind(c->server) == KIND_SV_ACTIVE)
			return KIND_CL_ACTIVE;
		return KIND_CL_WAITING;
	case CLIENT_IDLE:
	case CLIENT_ACTIVE:
	case CLIENT_ADMIN:
		return KIND_CL_ACTIVE;
	}
	return KIND_CL_LOGIN;
}

/* True if c belongs to row's pool (the console's: its own clients). */
static bool in_pool_row(const struct client *c, const struct pool_row *row)
{
	if (!row->pool)
		return c->state == CLIENT_ADMIN;
	return c->pool == row->pool && client_kind(c) != KIND_CL_LOGIN;
}

/* Clients and servers of row's pool per kind, and the longest current
 * wait of a client in us; O(clients). */
static uint64_t count_pool(struct sluice *ctx, const struct pool_row *row,
                           int counts[KINDS])
{
	uint64_t max_wait = 0;

	memset(counts, 0, KINDS * sizeof(counts[0]));
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		const struct client *c = LIST_ENTRY(l, struct client, node);

		if (!in_pool_row(c, row))
			continue;
		counts[client_kind(c)]++;
		if (client_wait_us(c) > max_wait)
			max_wait = client_wait_us(c);
	}
	if (!row->pool)
		return max_wait;
	for (struct list *l = row->pool->idle.next; l != &row->pool->idle; l = l->next)
		counts[server_kind(LIST_ENTRY(l, struct server, node))]++;
	for (struct list *l = row->pool->used.next; l != &row->pool->used; l = l->next)
		counts[server_kind(LIST_ENTRY(l, struct server, node))]++;
	return max_wait;
}

/* --- SHOW POOLS ------------------------------------------------------- */

static void put_pool_row(struct admin_result *r, struct sluice *ctx,
                         const struct pool_row *row)
{
	int n[KINDS];
	uint64_t wait_us = count_pool(ctx, row, n);

	admin_row_begin(r);
	admin_put_text(r, row->db);
	admin_put_text(r, row->user);
	admin_put_int(r, n[KIND_CL_ACTIVE]);
	admin_put_int(r, n[KIND_CL_WAITING]);
	admin_put_int(r, 0);                   /* cl_active_cancel_req */
	admin_put_int(r, 0);                   /* cl_waiting_cancel_req */
	admin_put_int(r, n[KIND_SV_ACTIVE]);
	admin_put_int(r, 0);                   /* sv_active_cancel */
	admin_put_int(r, n[KIND_SV_BEING_CANCELED]);
	admin_put_int(r, n[KIND_SV_IDLE]);
	admin_put_int(r, n[KIND_SV_USED]);
	admin_put_int(r, n[KIND_SV_TESTED]);
	admin_put_int(r, n[KIND_SV_LOGIN]);
	admin_put_int(r, (long long)(wait_us / 1000000));
	admin_put_int(r, (long long)(wait_us % 1000000));
	admin_put_text(r, row->pool ? config_pool_mode_name(row->pool->pool_mode)
	                            : "statement");
	admin_put_text(r, NULL);               /* load_balance_hosts: one host */
	admin_row_end(r);
}

int admin_show_pools(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = {
		"database", "user", "cl_active", "cl_waiting",
		"cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
		"sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used",
		"sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode",
		"load_balance_hosts",
	};
	struct pool_rows rows;
	struct admin_result r;

	if (pool_rows_get(ctx, &rows) < 0)
		return -1;
	admin_result_begin(&r, mb, "ssiiiiiiiiiiiiiss", cols, N_ELEMS(cols));
	for (size_t i = 0; i < rows.count; i++)
		put_pool_row(&r, ctx, &rows.rows[i]);
	admin_result_end(&r);
	free(rows.rows);
	return 0;
}

/* --- SHOW CLIENTS, SERVERS, SOCKETS, ACTIVE_SOCKETS -------------------- */

/* What a socket row says about one connection. */
struct sock {
	const char *type;          /* "C" or "S" */
	const char *user;
	const char *database;
	const char *state;
	const struct conn *conn;
	char addr[64];
	int port;
	char local_addr[64];
	int local_port;
	uint64_t connect_us;       /* wall clock */
	uint64_t request_us;
	uint64_t wait_us;
	const void *ptr;
	const void *link;          /* the linked peer, NULL if none */
	int remote_pid;
	const char *application_name;
	uint64_t id;
	uint32_t pkt_remain;       /* body bytes of a message passing through */
};

static const char *const socket_cols[] = {
	"type", "user", "database", "replication", "state", "addr", "port",
	"local_addr", "local_port", "connect_time", "request_time", "wait",
	"wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
	"application_name", "prepared_statements", "id",
	/* SHOW SOCKETS adds these */
	"recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain",
	"pkt_avail", "send_avail",
};
#define SOCKET_TYPES "ssssssisiTTiiississii"
#define SOCKET_DEBUG_TYPES SOCKET_TYPES "iiiiiii"

/* The local end of a TCP connection ("" and 0 before it connects). */
static void local_address(struct sock *sk, struct conn *conn)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (uv_tcp_getsockname(&conn->h.tcp, (struct sockaddr *)&ss, &len) == 0)
		sockaddr_text((struct sockaddr *)&ss, sk->local_addr,
		              sizeof(sk->local_addr), &sk->local_port);
}

/* The pid of a unix socket peer, 0 if the kernel does not say. */
static int unix_peer_pid(const struct conn *conn)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno(&conn->h.handle, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
		return 0;
	return (int)cred.pid;
}

static void client_addresses(struct sock *sk, struct client *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (c->conn.is_unix) {
		/* As PgBouncer: "unix", and the port the socket is named by. */
		snprintf(sk->addr, sizeof(sk->addr), "unix");
		snprintf(sk->local_addr, sizeof(sk->local_addr), "unix");
		sk->port = sk->local_port = c->conn.ctx->config->listen_port;
		sk->remote_pid = unix_peer_pid(&c->conn);
		return;
	}
	if (uv_tcp_getpeername(&c->conn.h.tcp, (struct sockaddr *)&ss, &len) == 0)
		sockaddr_text((struct sockaddr *)&ss, sk->addr, sizeof(sk->addr),
		              &sk->port);
	local_address(sk, &c->conn);
}

static void server_addresses(struct sock *sk, struct server *s)
{
	if (s->conn.is_unix) {
		snprintf(sk->addr, sizeof(sk->addr), "unix");
		snprintf(sk->local_addr, sizeof(sk->local_addr), "unix");
		sk->port = sk->local_port = s->pool->target.port;
		return;
	}
	sockaddr_text((struct sockaddr *)&s->addr, sk->addr, sizeof(sk->addr),
	              &sk->port);
	if (s->state != SERVER_CONNECTING)
		local_address(sk, &s->conn);
}

static const char *app_name(const struct client *c)
{
	const char *name = client_param(c, "application_name");

	return name ? name : "";
}

static void client_sock(struct sock *sk, struct client *c, const char *state)
{
	memset(sk, 0, sizeof(*sk));
	sk->type = "C";
	sk->user = c->user ? c->user : "(nouser)";
	if (c->state == CLIENT_ADMIN)
		sk->database = STATS_ADMIN_DB;
	else
		sk->database = c->pool ? c->pool->db_name : "(nodb)";
	sk->state = state;
	sk->conn = &c->conn;
	client_addresses(sk, c);
	sk->connect_us = wall_us_of(c->conn.ctx, c->connect_time);
	sk->request_us = wall_us_of(c->conn.ctx, client_request_ms(c));
	sk->wait_us = client_wait_us(c);
	sk->ptr = c;
	sk->link = client_kind(c) == KIND_CL_ACTIVE ? c->server : NULL;
	sk->application_name = app_name(c);
	sk->id = c->id;
	sk->pkt_remain = c->forward_left;
}

static void server_sock(struct sock *sk, struct server *s, const char *state)
{
	struct sluice *ctx = s->pool->ctx;
	uint64_t connect_ms = s->connect_time;

	memset(sk, 0, sizeof(*sk));
	sk->type = "S";
	sk->user = s->pool->target.user;
	sk->database = s->pool->db_name;
	sk->state = state;
	sk->conn = &s->conn;
	server_addresses(sk, s);
	sk->connect_us = wall_us_of(ctx, connect_ms);
	sk->request_us = wall_us_of(ctx, s->last_used ? s->last_used : connect_ms);
	sk->ptr = s;
	sk->link = server_kind(s) == KIND_SV_ACTIVE ? s->client : NULL;
	/* PostgreSQL's BackendKeyData pid is the backend's process id. */
	sk->remote_pid = (int)s->backend_pid;
	sk->application_name = s->client ? app_name(s->client) : "";
	sk->id = s->id;
	sk->pkt_remain = s->forward_left;
}

/* SHOW SOCKETS' low-level columns, in terms of a sluice conn: held bytes
 * are what was read but not used yet, out what waits to be written. */
static void put_debug_columns(struct admin_result *r, const struct sock *sk)
{
	admin_put_int(r, sk->conn->held_len);    /* recv_pos */
	admin_put_int(r, 0);                     /* pkt_pos */
	admin_put_int(r, sk->pkt_remain);
	admin_put_int(r, 0);                     /* send_pos */
	admin_put_int(r, 0);                     /* send_remain */
	admin_put_int(r, sk->conn->held_len);    /* pkt_avail */
	admin_put_int(r, sk->conn->out_len);     /* send_avail */
}

static void put_socket_row(struct admin_result *r, const struct sock *sk, bool debug)
{
	char ptr[32], link[32] = "";

	snprintf(ptr, sizeof(ptr), "%p", sk->ptr);
	if (sk->link)
		snprintf(link, sizeof(link), "%p", sk->link);
	admin_row_begin(r);
	admin_put_text(r, sk->type);
	admin_put_text(r, sk->user);
	admin_put_text(r, sk->database);
	admin_put_text(r, "none");               /* replication: not supported */
	admin_put_text(r, sk->state);
	admin_put_text(r, sk->addr);
	admin_put_int(r, sk->port);
	admin_put_text(r, sk->local_addr);
	admin_put_int(r, sk->local_port);
	admin_put_time(r, sk->connect_us);
	admin_put_time(r, sk->request_us);
	admin_put_int(r, (long long)(sk->wait_us / 1000000));
	admin_put_int(r, (long long)(sk->wait_us % 1000000));
	admin_put_int(r, 0);                     /* close_needed */
	admin_put_text(r, ptr);
	admin_put_text(r, link);
	admin_put_int(r, sk->remote_pid);
	admin_put_text(r, "");                   /* tls: no TLS yet */
	admin_put_text(r, sk->application_name);
	admin_put_int(r, 0);                     /* prepared_statements: untracked */
	admin_put_int(r, (long long)sk->id);
	if (debug)
		put_debug_columns(r, sk);
	admin_row_end(r);
}

/* How a socket listing walks: which columns, which sockets. */
struct walk {
	struct admin_result *r;
	bool debug;                /* SOCKETS: the low-level columns, cl_* names */
	bool busy_only;            /* ACTIVE_SOCKETS: only with bytes buffered */
};

static bool busy(const struct conn *conn)
{
	return conn->held_len > 0 || conn->out_len > 0 || conn->writes_pending > 0;
}

/* Clients of kind, of row's pool (every pool when row is NULL). */
static void walk_clients(const struct walk *w, struct sluice *ctx,
                         const struct pool_row *row, enum kind kind)
{
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		struct client *c = LIST_ENTRY(l, struct client, node);
		const char *state = kind_names[kind][w->debug];
		struct sock sk;

		if ((row && !in_pool_row(c, row)) || client_kind(c) != kind ||
		    (w->busy_only && !busy(&c->conn)))
			continue;
		client_sock(&sk, c, state);
		/* PgBouncer's "active" client without a server is "idle". */
		if (!w->debug && kind == KIND_CL_ACTIVE && !sk.link)
			sk.state = "idle";
		put_socket_row(w->r, &sk, w->debug);
	}
}

static void walk_server_list(const struct walk *w, struct list *head,
                             enum kind kind)
{
	for (struct list *l = head->next; l != head; l = l->next) {
		struct server *s = LIST_ENTRY(l, struct server, node);
		struct sock sk;

		if (server_kind(s) != kind || (w->busy_only && !busy(&s->conn)))
			continue;
		server_sock(&sk, s, kind_names[kind][w->debug]);
		put_socket_row(w->r, &sk, w->debug);
	}
}

static void walk_kinds(const struct walk *w, struct sluice *ctx,
                       const struct pool_row *row, const enum kind *kinds,
                       size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (kinds[i] <= KIND_CL_LOGIN) {
			walk_clients(w, ctx, row, kinds[i]);
		} else if (row->pool) {
			walk_server_list(w, &row->pool->idle, kinds[i]);
			walk_server_list(w, &row->pool->used, kinds[i]);
		}
	}
}

/* Per pool, the sockets of kinds in that order; with debug, then the
 * clients still logging in (PgBouncer's login list). */
static int show_sockets_of(struct sluice *ctx, struct msgbuf *mb,
                           const enum kind *kinds, size_t n,
                           const struct walk *how)
{
	struct walk w = *how;
	struct pool_rows rows;
	struct admin_result r;

	if (pool_rows_get(ctx, &rows) < 0)
		return -1;
	w.r = &r;
	if (w.debug)
		admin_result_begin(&r, mb, SOCKET_DEBUG_TYPES, socket_cols,
		                   N_ELEMS(socket_cols));
	else
		admin_result_begin(&r, mb, SOCKET_TYPES, socket_cols,
		                   N_ELEMS(socket_cols) - 7);
	for (size_t i = 0; i < rows.count; i++)
		walk_kinds(&w, ctx, &rows.rows[i], kinds, n);
	if (w.debug)
		walk_clients(&w, ctx, NULL, KIND_CL_LOGIN);
	admin_result_end(&r);
	free(rows.rows);
	return 0;
}

int admin_show_clients(struct sluice *ctx, struct msgbuf *mb)
{
	static const enum kind kinds[] = { KIND_CL_ACTIVE, KIND_CL_WAITING };
	const struct walk how = { NULL, false, false };

	return show_sockets_of(ctx, mb, kinds, N_ELEMS(kinds), &how);
}

int admin_show_servers(struct sluice *ctx, struct msgbuf *mb)
{
	static const enum kind kinds[] = {
		KIND_SV_ACTIVE, KIND_SV_IDLE, KIND_SV_USED, KIND_SV_TESTED,
		KIND_SV_LOGIN, KIND_SV_BEING_CANCELED,
	};
	const struct walk how = { NULL, false, false };

	return show_sockets_of(ctx, mb, kinds, N_ELEMS(kinds), &how);
}

static const enum kind socket_kinds[] = {
	KIND_CL_ACTIVE, KIND_CL_WAITING, KIND_SV_ACTIVE, KIND_SV_IDLE,
	KIND_SV_USED, KIND_SV_TESTED, KIND_SV_LOGIN,
};

int admin_show_sockets(struct sluice *ctx, struct msgbuf *mb)
{
	const struct walk how = { NULL, true, false };

	return show_sockets_of(ctx, mb, socket_kinds, N_ELEMS(socket_kinds), &how);
}

int admin_show_active_sockets(struct sluice *ctx, struct msgbuf *mb)
{
	const struct walk how = { NULL, true, true };

	return show_sockets_of(ctx, mb, socket_kinds, N_ELEMS(socket_kinds), &how);
}

/* --- SHOW DATABASES --------------------------------------------------- */

/* A row of SHOW DATABASES. */
struct db_row {
	const char *name;
	const struct db_config *db;  /* &console_db: the console */
};

/* PgBouncer's console database: a fixed pool of 2 in statement mode for
 * the forced user "pgbouncer", at sluice's own port; the rest unset. */
static const struct db_config console_db = {
	.name = STATS_ADMIN_DB,
	.dbname = STATS_ADMIN_DB,
	.user = STATS_ADMIN_DB,
	.pool_size = 2,
	.min_pool_size = -1,
	.reserve_pool = -1,
	.max_db_connections = -1,
	.pool_mode = POOL_MODE_STATEMENT,
	.server_lifetime = -1,
	.max_db_client_connections = -1,
};

static int compare_db_rows(const void *a, const void *b)
{
	return strcmp(((const struct db_row *)a)->name,
	              ((const struct db_row *)b)->name);
}

/* The [databases] entries but "*", the databases "*" stood in for (as
 * PgBouncer's autodb), and the console, by name. Caller frees *out. */
static int db_rows_get(struct sluice *ctx, struct db_row **out, size_t *count)
{
	const struct config *cfg = ctx->config;
	size_t n = list_count(&ctx->pools) + 1, k = 0;
	struct db_row *rows;

	for (const struct db_config *db = cfg->databases; db; db = db->next)
		n++;
	rows = calloc(n, sizeof(*rows));
	if (!rows)
		return -1;
	rows[k++] = (struct db_row){ STATS_ADMIN_DB, &console_db };
	for (const struct db_config *db = cfg->databases; db; db = db->next)
		if (strcmp(db->name, "*") != 0)
			rows[k++] = (struct db_row){ db->name, db };
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		const char *name = LIST_ENTRY(l, struct pool, node)->db_name;
		const struct db_config *db = config_find_db(cfg, name);

		if (db && strcmp(db->name, "*") == 0)
			rows[k++] = (struct db_row){ name, db };
	}
	qsort(rows, k, sizeof(*rows), compare_db_rows);
	*count = 0;
	for (size_t i = 0; i < k; i++) /* a database of several pools: once */
		if (*count == 0 || strcmp(rows[*count - 1].name, rows[i].name) != 0)
			rows[(*count)++] = rows[i];
	*out = rows;
	return 0;
}

/* Server connections and logged-in clients of row's database (the
 * console's: its own clients). */
static void count_database(struct sluice *ctx, const struct db_row *row,
                           int *servers, int *clients)
{
	bool console = row->db == &console_db;

	*servers = *clients = 0;
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		const struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (!console && strcmp(pool->db_name, row->name) == 0)
			*servers += pool->server_count;
	}
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		const struct client *c = LIST_ENTRY(l, struct client, node);

		if (console ? c->state == CLIENT_ADMIN
		            : c->pool && strcmp(c->pool->db_name, row->name) == 0)
			(*clients)++;
	}
}

/* PAUSE db or KILL db holds it (a PAUSE of everything shows in STATE). */
static bool database_paused(struct sluice *ctx, const char *name)
{
	return !ctx->paused && control_is_paused(ctx, name);
}

/* -1 (not given) falls back to the main section's value. */
static int or_default(int value, int main_value)
{
	return value >= 0 ? value : main_value;
}

static void put_database_row(struct admin_result *r, struct sluice *ctx,
                             const struct db_row *row)
{
	const struct config *cfg = ctx->config;
	const struct db_config *db = row->db;
	bool console = db == &console_db;
	int64_t lifetime = db->server_lifetime > 0 ? db->server_lifetime
	                                           : (int64_t)cfg->server_lifetime;
	int servers, clients;

	count_database(ctx, row, &servers, &clients);
	admin_row_begin(r);
	admin_put_text(r, row->name);
	admin_put_text(r, db->host);
	admin_put_int(r, console ? cfg->listen_port : db->port > 0 ? db->port : 5432);
	admin_put_text(r, db->dbname ? db->dbname : row->name);
	admin_put_text(r, db->user);
	admin_put_int(r, or_default(db->pool_size, cfg->default_pool_size));
	admin_put_int(r, or_default(db->min_pool_size, cfg->min_pool_size));
	admin_put_int(r, or_default(db->reserve_pool, cfg->reserve_pool_size));
	admin_put_int(r, lifetime / 1000);
	admin_put_text(r, db->pool_mode == POOL_MODE_INHERIT
	                  ? NULL : config_pool_mode_name(db->pool_mode));
	admin_put_text(r, NULL);          /* load_balance_hosts: one host */
	admin_put_int(r, db->max_db_connections > 0 ? db->max_db_connections
	                                            : cfg->max_db_connections);
	admin_put_int(r, servers);
	admin_put_int(r, db->max_db_client_connections > 0
	                 ? db->max_db_client_connections
	                 : cfg->max_db_client_connections);
	admin_put_int(r, clients);
	admin_put_int(r, !console && database_paused(ctx, row->name));
	admin_put_int(r, !console && control_is_disabled(ctx, row->name));
	admin_row_end(r);
}

int admin_show_databases(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = {
		"name", "host", "port", "database", "force_user", "pool_size",
		"min_pool_size", "reserve_pool_size", "server_lifetime",
		"pool_mode", "load_balance_hosts", "max_connections",
		"current_connections", "max_client_connections",
		"current_client_connections", "paused", "disabled",
	};
	struct admin_result r;
	struct db_row *rows;
	size_t n;

	if (db_rows_get(ctx, &rows, &n) < 0)
		return -1;
	admin_result_begin(&r, mb, "ssissiiiissiiiiii", cols, N_ELEMS(cols));
	for (size_t i = 0; i < n; i++)
		put_database_row(&r, ctx, &rows[i]);
	admin_result_end(&r);
	free(rows);
	return 0;
}

/* --- SHOW USERS ------------------------------------------------------- */

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The auth_file users, the [users] entries, the users pools log in as and
 * PgBouncer's own "pgbouncer", by name, once each. Caller frees *out. */
static int user_names_get(struct sluice *ctx, const char ***out, size_t *count)
{
	const struct config *cfg = ctx->config;
	size_t n = list_count(&ctx->pools) + 1, k = 0;
	const char **names;

	for (const struct auth_entry *a = cfg->auth_entries; a; a = a->next)
		n++;
	for (const struct user_config *u = cfg->users; u; u = u->next)
		n++;
	names = calloc(n, sizeof(*names));
	if (!names)
		return -1;
	names[k++] = STATS_ADMIN_DB;
	for (const struct auth_entry *a = cfg->auth_entries; a; a = a->next)
		names[k++] = a->name;
	for (const struct user_config *u = cfg->users; u; u = u->next)
		names[k++] = u->name;
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next)
		names[k++] = LIST_ENTRY(l, struct pool, node)->user_name;
	qsort(names, k, sizeof(*names), compare_names);
	*count = 0;
	for (size_t i = 0; i < k; i++)
		if (*count == 0 || strcmp(names[*count - 1], names[i]) != 0)
			names[(*count)++] = names[i];
	*out = names;
	return 0;
}

/* A [users] size override as PgBouncer writes it: right-aligned in 9
 * characters, "" when not set. */
static void put_user_size(struct admin_result *r, int size)
{
	char buf[16] = "";

	if (size >= 0)
		snprintf(buf, sizeof(buf), "%9d", size);
	admin_put_text(r, buf);
}

static void put_user_row(struct admin_result *r, struct sluice *ctx,
                         const char *name)
{
	const struct user_config *uc = config_find_user(ctx->config, name);
	int servers = 0, clients = 0;

	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		const struct pool *pool = LIST_ENTRY(l, struct pool, node);

		if (strcmp(pool->user_name, name) == 0)
			servers += pool->server_count;
	}
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		const struct client *c = LIST_ENTRY(l, struct client, node);

		if ((c->pool || c->state == CLIENT_ADMIN) && c->user &&
		    strcmp(c->user, name) == 0)
			clients++;
	}
	admin_row_begin(r);
	admin_put_text(r, name);
	put_user_size(r, uc ? uc->pool_size : -1);
	put_user_size(r, uc ? uc->reserve_pool_size : -1);
	admin_put_text(r, uc && uc->pool_mode != POOL_MODE_INHERIT
	                  ? config_pool_mode_name(uc->pool_mode) : NULL);
	admin_put_int(r, uc && uc->max_user_connections > 0
	                 ? uc->max_user_connections
	                 : ctx->config->max_user_connections);
	admin_put_int(r, servers);
	admin_put_int(r, uc && uc->max_user_client_connections > 0
	                 ? uc->max_user_client_connections
	                 : ctx->config->max_user_client_connections);
	admin_put_int(r, clients);
	admin_row_end(r);
}

int admin_show_users(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = {
		"name", "pool_size", "reserve_pool_size", "pool_mode",
		"max_user_connections", "current_connections",
		"max_user_client_connections", "current_client_connections",
	};
	struct admin_result r;
	const char **names;
	size_t n;

	if (user_names_get(ctx, &names, &n) < 0)
		return -1;
	admin_result_begin(&r, mb, "ssssiiii", cols, N_ELEMS(cols));
	for (size_t i = 0; i < n; i++)
		put_user_row(&r, ctx, names[i]);
	admin_result_end(&r);
	free(names);
	return 0;
}

long admin_count_databases(struct sluice *ctx)
{
	struct db_row *rows;
	size_t n;

	if (db_rows_get(ctx, &rows, &n) < 0)
		return -1;
	free(rows);
	return (long)n;
}

long admin_count_users(struct sluice *ctx)
{
	const char **names;
	size_t n;

	if (user_names_get(ctx, &names, &n) < 0)
		return -1;
	free(names);
	return (long)n;
}
