/*
 * admin.c - the admin console: a table of commands, one function each.
 *
 * This is the minimal console the foundation needs (SHOW POOLS, SHOW
 * VERSION, SHOW HELP); the admin issue extends the table. Results are text
 * columns, errors are ErrorResponses, and the session stays open after one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "leak.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"

struct admin_command {
	const char *words;   /* upper case, single spaces */
	void (*run)(struct client *c, struct msgbuf *mb);
};

static void send_and_ready(struct client *c, struct msgbuf *mb)
{
	codec_put_ready(mb, 'I');
	conn_queue_msgbuf(&c->conn, mb);
	msgbuf_free(mb);
	if (conn_flush(&c->conn, NULL) < 0)
		client_close(c, "write failed");
}

void admin_welcome(struct client *c)
{
	static const char *const params[][2] = {
		{ "server_version", SLUICE_VERSION "/sluice" },
		{ "server_encoding", "UTF8" },
		{ "client_encoding", "UTF8" },
		{ "DateStyle", "ISO, MDY" },
		{ "TimeZone", "UTC" },
		{ "standard_conforming_strings", "on" },
		{ "integer_datetimes", "on" },
		{ "application_name", "sluice" },
	};
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_auth(&mb, PG_AUTH_OK, NULL, 0);
	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
		codec_put_parameter_status(&mb, params[i][0], params[i][1]);
	codec_put_backend_key(&mb, c->cancel_pid, c->cancel_key);
	c->state = CLIENT_ADMIN;
	send_and_ready(c, &mb);
	conn_want_read(&c->conn, true);
}

static void count_servers(const struct pool *pool, int *active, int *idle,
                          int *used, int *login)
{
	*active = *used = *login = 0;
	*idle = (int)list_count(&pool->idle);
	for (const struct list *l = pool->used.next; l != &pool->used; l = l->next) {
		const struct server *s = LIST_ENTRY(l, const struct server, node);

		if (s->state == SERVER_ACTIVE)
			(*active)++;
		else if (s->state == SERVER_INTERNAL)
			(*used)++;
		else
			(*login)++;
	}
}

static int count_active_clients(struct sluice *ctx, const struct pool *pool)
{
	int n = 0;

	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		const struct client *c = LIST_ENTRY(l, const struct client, node);

		if (c->pool == pool && (c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE))
			n++;
	}
	return n;
}

/* SHOW POOLS: PgBouncer 1.25's columns, in its order. */
static void show_pools(struct client *c, struct msgbuf *mb)
{
	static const char *const cols[] = {
		"database", "user", "cl_active", "cl_waiting",
		"cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
		"sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used",
		"sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode",
		"load_balance_hosts",
	};
	size_t rows = 0;
	char tag[32];

	codec_put_row_description(mb, cols, sizeof(cols) / sizeof(cols[0]));
	for (struct list *l = c->ctx->pools.next; l != &c->ctx->pools; l = l->next) {
		struct pool *pool = LIST_ENTRY(l, struct pool, node);
		char num[7][16];
		int active, idle, used, login;

		count_servers(pool, &active, &idle, &used, &login);
		snprintf(num[0], 16, "%d", count_active_clients(c->ctx, pool));
		snprintf(num[1], 16, "%zu", list_count(&pool->waiting));
		snprintf(num[2], 16, "%d", active);
		snprintf(num[3], 16, "%d", idle);
		snprintf(num[4], 16, "%d", used);
		snprintf(num[5], 16, "%d", login);
		const char *vals[] = {
			pool->db_name, pool->user_name, num[0], num[1], "0", "0",
			num[2], "0", "0", num[3], num[4], "0", num[5], "0", "0",
			config_pool_mode_name(pool->pool_mode), NULL,
		};
		codec_put_data_row(mb, vals, sizeof(vals) / sizeof(vals[0]));
		rows++;
	}
	snprintf(tag, sizeof(tag), "SHOW");
	codec_put_command_complete(mb, tag);
	(void)rows;
}

static void show_version(struct client *c, struct msgbuf *mb)
{
	static const char *const cols[] = { "version" };
	const char *vals[] = { "sluice " SLUICE_VERSION };

	(void)c;
	codec_put_row_description(mb, cols, 1);
	codec_put_data_row(mb, vals, 1);
	codec_put_command_complete(mb, "SHOW");
}

static void show_help(struct client *c, struct msgbuf *mb)
{
	(void)c;
	codec_put_notice(mb, "Console usage\n\tSHOW HELP|POOLS|VERSION");
	codec_put_command_complete(mb, "SHOW");
}

static void show_leaks(struct client *c, struct msgbuf *mb)
{
	leak_show_leaks(c->ctx, mb);
}

static void show_leak_stats(struct client *c, struct msgbuf *mb)
{
	leak_show_stats(c->ctx, mb);
}

static const struct admin_command commands[] = {
	{ "SHOW POOLS", show_pools },
	{ "SHOW VERSION", show_version },
	{ "SHOW HELP", show_help },
	{ "SHOW LEAKS", show_leaks },
	{ "SHOW LEAK_STATS", show_leak_stats },
};

/* Upper-cases sql into buf with single spaces and no trailing ';'. */
static void normalize(const char *sql, char *buf, size_t len)
{
	size_t n = 0;
	bool space = false;

	for (const char *p = sql; *p && n + 1 < len; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ';') {
			space = n > 0;
			continue;
		}
		if (space && n + 2 < len)
			buf[n++] = ' ';
		space = false;
		buf[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	}
	buf[n] = '\0';
}

static void run_query(struct client *c, const char *sql)
{
	char words[256];
	struct msgbuf mb;

	normalize(sql, words, sizeof(words));
	msgbuf_init(&mb);
	if (words[0] == '\0') {
		msgbuf_begin(&mb, PG_MSG_EMPTY_QUERY);
		msgbuf_end(&mb);
		return send_and_ready(c, &mb);
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(words, commands[i].words) == 0) {
			commands[i].run(c, &mb);
			return send_and_ready(c, &mb);
		}
	}
	codec_put_error(&mb, "ERROR", SQLSTATE_SYNTAX_ERROR, "invalid command");
	send_and_ready(c, &mb);
}

size_t admin_data(struct client *c, const uint8_t *data, size_t len)
{
	size_t pos = 0;
	struct pg_header h;

	while (pos < len && !c->conn.closing) {
		enum codec_result rc = codec_read_header(data + pos, len - pos, 1 << 20, &h);
		const uint8_t *body = data + pos + PG_HEADER_LEN;
		struct msgbuf mb;

		if (rc == CODEC_INVALID) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid message length");
			return len;
		}
		if (rc == CODEC_NEED_MORE || len - pos < (size_t)h.len + 1) {
			conn_need(&c->conn, rc == CODEC_OK ? h.len + 1 : 0);
			break;
		}
		conn_need(&c->conn, 0);
		pos += (size_t)h.len + 1;
		if (h.type == PG_MSG_TERMINATE) {
			client_close(c, "client close request");
			return len;
		}
		if (h.type == PG_MSG_QUERY && h.len > 4 && body[h.len - 5] == 0) {
			run_query(c, (const char *)body);
			continue;
		}
		if (h.type != PG_MSG_SYNC)
			continue; /* extended protocol: answered at Sync */
		msgbuf_init(&mb);
		codec_put_error(&mb, "ERROR", SQLSTATE_FEATURE_NOT_SUPPORTED,
		                "the admin console supports the simple query protocol only");
		send_and_ready(c, &mb);
	}
	return pos;
}
