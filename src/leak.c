/*
 * leak.c - the leak detector.
 *
 * A client is idle in a transaction when its last ReadyForQuery said 'T' or
 * 'E' and it has sent nothing since. Past idle_transaction_log_timeout, one
 * WARNING line per episode names the client, the server it pins and the last
 * statement it ran (its Query, or the Parse behind the portal it executed);
 * one INFO line says how the episode ended. Lines are key=value so log tools
 * can parse them; statements are escaped onto one line and cut to
 * idle_transaction_log_statement_length bytes on a UTF-8 boundary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "codec.h"
#include "config.h"
#include "leak.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"

/* Names remembered per client; older ones are forgotten first. */
#define MAX_NAMES 64
/* A Parse body is name + query: room for a long name before the text. */
#define NAME_ROOM 256

static const struct config *cfg_of(const struct client *c)
{
	return c->conn.ctx->config;
}

static bool enabled(const struct client *c)
{
	return c->pool && c->pool->limits.idle_transaction_log_timeout > 0;
}

/* The client's detector state, made when first needed: clients of pools
 * without the detector, and idle ones, carry only the pointer. NULL when
 * out of memory (the detector then just misses this client). */
static struct leak_state *state_of(struct client *c)
{
	if (!c->leak)
		c->leak = calloc(1, sizeof(*c->leak));
	return c->leak;
}

/* Nonzero while a logged episode is open. */
static uint64_t episode_since(const struct client *c)
{
	return c->leak ? c->leak->episode_since : 0;
}

static const char *last_statement(const struct client *c)
{
	return c->leak && c->leak->last_statement ? c->leak->last_statement : "";
}

size_t leak_wanted_prefix(const struct client *c)
{
	if (!enabled(c))
		return 0;
	return (size_t)cfg_of(c)->idle_transaction_log_statement_length + NAME_ROOM;
}

/* --- statement texts -------------------------------------------------- */

/* Length of text cut to at most max bytes, never inside a UTF-8 sequence. */
static size_t utf8_cut(const char *text, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)text[max] & 0xC0) == 0x80)
		max--;
	return max;
}

/* A copy of the string at p (at most avail bytes, maybe unterminated),
 * cut to the configured length; *cut tells if anything was left out. */
static char *copy_text(const struct client *c, const uint8_t *p, size_t avail,
                       bool message_cut, bool *cut)
{
	size_t limit = (size_t)cfg_of(c)->idle_transaction_log_statement_length;
	size_t len = strnlen((const char *)p, avail);
	size_t keep = utf8_cut((const char *)p, len, limit);
	char *text = malloc(keep + 1);

	if (!text)
		return NULL;
	memcpy(text, p, keep);
	text[keep] = '\0';
	*cut = keep < len || (len == avail && message_cut);
	return text;
}

static void free_texts(struct leak_text **head)
{
	while (*head) {
		struct leak_text *t = *head;

		*head = t->next;
		free(t->name);
		free(t->text);
		free(t);
	}
}

static void forget(struct leak_text **head, const char *name)
{
	for (struct leak_text **link = head; *link; link = &(*link)->next) {
		struct leak_text *t = *link;

		if (strcmp(t->name, name) == 0) {
			*link = t->next;
			free(t->name);
			free(t->text);
			free(t);
			return;
		}
	}
}

static const struct leak_text *lookup(const struct leak_text *head,
                                      const char *name)
{
	for (; head; head = head->next)
		if (strcmp(head->name, name) == 0)
			return head;
	return NULL;
}

/* Remembers name -> text (copied), newest first, at most MAX_NAMES. */
static void remember(struct leak_text **head, const char *name, const char *text,
                     bool cut)
{
	struct leak_text *t;
	size_t n = 0;

	forget(head, name);
	t = calloc(1, sizeof(*t));
	if (!t)
		return;
	t->name = strdup(name);
	t->text = strdup(text ? text : "");
	if (!t->name || !t->text) {
		free(t->name);
		free(t->text);
		free(t);
		return;
	}
	t->cut = cut;
	t->next = *head;
	*head = t;
	for (struct leak_text **link = head; *link; link = &(*link)->next)
		if (++n == MAX_NAMES) {
			free_texts(&(*link)->next);
			break;
		}
}

static void set_last(struct client *c, char *text, bool cut)
{
	struct leak_state *st = state_of(c);

	if (!text || !st) {
		free(text);
		return;
	}
	free(st->last_statement);
	st->last_statement = text;
	st->last_truncated = cut;
}

static void observe_parse(struct client *c, struct codec_reader *r, bool message_cut)
{
	const char *name = codec_get_str(r);
	bool cut = false;
	char *text;

	if (!name)
		return;
	text = copy_text(c, r->p + r->pos, r->len - r->pos, message_cut, &cut);
	if (text && state_of(c))
		remember(&c->leak->statements, name, text, cut);
	free(text);
}

static void observe_bind(struct client *c, struct codec_reader *r)
{
	const char *portal = codec_get_str(r);
	const char *name = codec_get_str(r);
	const struct leak_text *statement;

	if (!portal || !name || !state_of(c))
		return;
	statement = lookup(c->leak->statements, name);
	remember(&c->leak->portals, portal, statement ? statement->text : NULL,
	         statement && statement->cut);
}

static void observe_execute(struct client *c, struct codec_reader *r)
{
	const char *name = codec_get_str(r);
	const struct leak_text *portal =
		name && c->leak ? lookup(c->leak->portals, name) : NULL;

	if (portal)
		set_last(c, strdup(portal->text), portal->cut);
}

static void observe_close(struct client *c, struct codec_reader *r)
{
	uint8_t what = codec_get_u8(r);
	const char *name = codec_get_str(r);

	if (name && c->leak)
		forget(what == 'S' ? &c->leak->statements : &c->leak->portals, name);
}

void leak_observe(struct client *c, uint8_t type, const uint8_t *body,
                  size_t body_len, size_t full_len)
{
	bool message_cut = body_len < full_len;
	struct codec_reader r;
	bool cut = false;
	char *text;

	codec_reader_init(&r, body, body_len);
	switch (type) {
	case PG_MSG_QUERY:
		text = copy_text(c, body, body_len, message_cut, &cut);
		set_last(c, text, cut);
		return;
	case PG_MSG_PARSE:
		return observe_parse(c, &r, message_cut);
	case PG_MSG_BIND:
		return observe_bind(c, &r);
	case PG_MSG_EXECUTE:
		return observe_execute(c, &r);
	case PG_MSG_CLOSE:
		return observe_close(c, &r);
	default:
		return;
	}
}

void leak_free(struct client *c)
{
	if (!c->leak)
		return;
	free(c->leak->last_statement);
	free_texts(&c->leak->statements);
	free_texts(&c->leak->portals);
	free(c->leak);
	c->leak = NULL;
}

/* --- episodes --------------------------------------------------------- */

static void log_start(struct client *c, uint64_t now)
{
	const struct server *s = c->server;
	const char *app = client_param(c, "application_name");
	size_t room = (size_t)cfg_of(c)->idle_transaction_log_statement_length * 4 + 1;
	char *stmt = malloc(room);
	char app_esc[256];
	char user_esc[LOG_ESCAPED_NAME];
	char db_esc[LOG_ESCAPED_NAME];
	char host[64];
	int port;

	if (!stmt)
		return;
	log_escape(last_statement(c), stmt, room);
	log_escape(app ? app : "", app_esc, sizeof(app_esc));
	client_host_port(c, host, sizeof(host), &port);
	log_warn(&c->conn, "leak_start client=C-%llu user=%s database=%s "
	         "application_name=\"%s\" client_addr=%s client_port=%d "
	         "server=%s:%d backend_pid=%u idle_s=%.3f xact_age_s=%.3f "
	         "state=%c last_statement=\"%s\" truncated=%s",
	         (unsigned long long)c->id,
	         log_escape(c->user, user_esc, sizeof(user_esc)),
	         log_escape(c->database, db_esc, sizeof(db_esc)), app_esc, host,
	         port, s->pool->target.host ? s->pool->target.host : "unix",
	         s->pool->target.port, s->backend_pid,
	         (double)(now - c->idle_xact_since) / 1000.0,
	         (double)(now - c->xact_start) / 1000.0, s->status,
	         stmt, c->leak && c->leak->last_truncated ? "yes" : "no");
	free(stmt);
}

void leak_check(struct client *c, uint64_t now)
{
	uint64_t limit = enabled(c) ? c->pool->limits.idle_transaction_log_timeout : 0;

	if (!limit || !c->idle_xact_since || episode_since(c) ||
	    now - c->idle_xact_since < limit || !c->server || !state_of(c))
		return;
	c->leak->episode_since = c->idle_xact_since;
	c->leak->resumed = false;
	c->pool->leak_episodes++;
	log_start(c, now);
}

static void log_end(struct client *c, const char *ended_by, uint64_t idle_ms)
{
	log_info(&c->conn, "leak_end client=C-%llu ended_by=%s idle_s=%.3f",
	         (unsigned long long)c->id, ended_by, (double)idle_ms / 1000.0);
	c->leak->episode_since = 0;
	c->leak->resumed = false;
}

void leak_client_spoke(struct client *c, uint64_t now)
{
	if (!episode_since(c) || c->leak->resumed)
		return;
	c->leak->resumed = true;
	c->leak->resumed_idle_ms = now - c->leak->episode_since;
}

void leak_ready(struct client *c, char status)
{
	if (!episode_since(c) || !c->leak->resumed)
		return;
	log_end(c, status == 'I' ? "commit_or_rollback" : "new_statement",
	        c->leak->resumed_idle_ms);
}

void leak_client_gone(struct client *c, const char *why)
{
	uint64_t now = uv_now(c->conn.ctx->loop);

	if (!episode_since(c))
		return;
	log_end(c, why, c->leak->resumed ? c->leak->resumed_idle_ms
	                                 : now - c->leak->episode_since);
}

/* --- reporting -------------------------------------------------------- */

static bool in_episode(const struct client *c)
{
	return episode_since(c) && !c->leak->resumed && c->server;
}

static int by_idle_desc(const void *a, const void *b)
{
	const struct client *ca = *(const struct client *const *)a;
	const struct client *cb = *(const struct client *const *)b;

	/* The earlier idle start is the longer idle. */
	return (ca->idle_xact_since > cb->idle_xact_since) -
	       (ca->idle_xact_since < cb->idle_xact_since);
}

static void leak_row(struct msgbuf *mb, const struct client *c, uint64_t now)
{
	const struct server *s = c->server;
	const char *app = client_param(c, "application_name");
	char id[32], idle[32], age[32], state[2], server[300], pid[16], host[64];
	char port[16];
	int port_number;

	snprintf(id, sizeof(id), "C-%llu", (unsigned long long)c->id);
	snprintf(idle, sizeof(idle), "%.3f", (double)(now - c->idle_xact_since) / 1000.0);
	snprintf(age, sizeof(age), "%.3f", (double)(now - c->xact_start) / 1000.0);
	snprintf(state, sizeof(state), "%c", s->status);
	snprintf(server, sizeof(server), "%s:%d",
	         s->pool->target.host ? s->pool->target.host : "unix",
	         s->pool->target.port);
	snprintf(pid, sizeof(pid), "%u", s->backend_pid);
	client_host_port(c, host, sizeof(host), &port_number);
	snprintf(port, sizeof(port), "%d", port_number);
	const char *vals[] = {
		id, c->user, c->database, app ? app : "", host, port, idle, age,
		state, server, pid,
		last_statement(c),
	};
	codec_put_data_row(mb, vals, sizeof(vals) / sizeof(vals[0]));
}

void leak_show_leaks(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = {
		"id", "user", "database", "application_name", "addr", "port",
		"idle_s", "xact_age_s", "state", "server", "backend_pid",
		"last_statement",
	};
	uint64_t now = uv_now(ctx->loop);
	size_t n = 0, cap = 0;
	struct client **rows = NULL;

	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		struct client *c = LIST_ENTRY(l, struct client, node);

		if (!in_episode(c))
			continue;
		if (n == cap) {
			struct client **grown = realloc(rows, (cap = cap ? cap * 2 : 16) *
			                                     sizeof(*rows));
			if (!grown)
				break;
			rows = grown;
		}
		rows[n++] = c;
	}
	if (n > 0)
		qsort(rows, n, sizeof(*rows), by_idle_desc);
	codec_put_row_description(mb, cols, sizeof(cols) / sizeof(cols[0]));
	for (size_t i = 0; i < n; i++)
		leak_row(mb, rows[i], now);
	free(rows);
	codec_put_command_complete(mb, "SHOW");
}

/* Per pool: clients idle in transaction now (past the limit, and all),
 * the servers they pin, and the longest idle. */
struct pool_leaks {
	int logged;             /* in a logged episode */
	int pinned;             /* linked servers whose client is idle in xact */
	int linked;             /* linked servers */
	uint64_t longest_ms;
};

static void count_pool(struct sluice *ctx, const struct pool *pool,
                       uint64_t now, struct pool_leaks *pl)
{
	memset(pl, 0, sizeof(*pl));
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		const struct client *c = LIST_ENTRY(l, const struct client, node);

		if (c->pool != pool || !c->server || c->state != CLIENT_ACTIVE)
			continue;
		pl->linked++;
		if (!c->idle_xact_since)
			continue;
		pl->pinned++;
		pl->logged += in_episode(c);
		if (now - c->idle_xact_since > pl->longest_ms)
			pl->longest_ms = now - c->idle_xact_since;
	}
}

void leak_show_stats(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = {
		"database", "user", "idle_in_transaction", "pinned_servers",
		"episodes_total", "longest_idle_s",
	};
	uint64_t now = uv_now(ctx->loop);

	codec_put_row_description(mb, cols, sizeof(cols) / sizeof(cols[0]));
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		const struct pool *pool = LIST_ENTRY(l, const struct pool, node);
		struct pool_leaks pl;
		char logged[16], pinned[16], total[24], longest[32];

		count_pool(ctx, pool, now, &pl);
		snprintf(logged, sizeof(logged), "%d", pl.logged);
		snprintf(pinned, sizeof(pinned), "%d", pl.pinned);
		snprintf(total, sizeof(total), "%llu",
		         (unsigned long long)pool->leak_episodes);
		snprintf(longest, sizeof(longest), "%.3f", (double)pl.longest_ms / 1000.0);
		const char *vals[] = {
			pool->db_name, pool->user_name, logged, pinned, total, longest,
		};
		codec_put_data_row(mb, vals, sizeof(vals) / sizeof(vals[0]));
	}
	codec_put_command_complete(mb, "SHOW");
}

void leak_stats_tick(struct sluice *ctx, uint64_t now)
{
	const struct config *cfg = ctx->config;

	if (!cfg->log_stats || !cfg->stats_period ||
	    now - ctx->last_leak_stats < cfg->stats_period)
		return;
	ctx->last_leak_stats = now;
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next) {
		const struct pool *pool = LIST_ENTRY(l, const struct pool, node);
		char db_esc[LOG_ESCAPED_NAME], user_esc[LOG_ESCAPED_NAME];
		struct pool_leaks pl;

		count_pool(ctx, pool, now, &pl);
		if (pl.linked == 0 && list_empty(&pool->waiting))
			continue;
		log_info(NULL, "pool %s/%s: servers linked=%d pinned_by_idle_in_transaction=%d "
		         "waiting_clients=%zu longest_idle_in_transaction_s=%.3f",
		         log_escape(pool->db_name, db_esc, sizeof(db_esc)),
		         log_escape(pool->user_name, user_esc, sizeof(user_esc)),
		         pl.linked, pl.pinned,
		         list_count(&pool->waiting), (double)pl.longest_ms / 1000.0);
	}
}
