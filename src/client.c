/*
 * client.c - client connections: lifecycle and the query phase.
 *
 * Transitions:
 *
 *   STARTUP -> AUTH_* -> WELCOME (login.c) -> IDLE, or ADMIN for the console
 *   IDLE --first message--> WAITING (pool->waiting, or a server is being
 *        prepared) --client_linked--> ACTIVE
 *   ACTIVE --server released (transaction/statement mode)--> IDLE
 *   any --eof, error, Terminate--> closed; a linked server is cleaned by
 *        server_client_gone, never handed on dirty
 *
 * In ACTIVE, messages stream to the server as they arrive; only headers are
 * read, to count the ReadyForQuery each Query, FunctionCall and Sync owes
 * and to know whether an extended-protocol batch is open.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "login.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"
#include "stats.h"

static const struct conn_ops client_ops;

struct client *client_new(struct sluice *ctx, bool is_unix)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	conn_init(&c->conn, ctx, &client_ops, c, is_unix);
	if (is_unix)
		uv_pipe_init(ctx->loop, &c->conn.h.pipe, 0);
	else
		uv_tcp_init(ctx->loop, &c->conn.h.tcp);
	c->conn.h.handle.data = &c->conn;
	list_init(&c->node);
	list_init(&c->pool_node);
	return c;
}

static void free_client(struct client *c)
{
	free(c->user); /* database lives in the same block */
	free(c->admin_wait_db);
	params_free(&c->params);
	leak_free(c);
	prepared_client_free(c);
	if (c->scram)
		auth_scram_server_free(c->scram);
	free(c->scram);
	free(c);
}

void client_discard(struct client *c)
{
	conn_close(&c->conn);
}

bool client_logging_in(const struct client *c)
{
	switch (c->state) {
	case CLIENT_STARTUP:
	case CLIENT_AUTH_PASSWORD:
	case CLIENT_AUTH_SASL:
	case CLIENT_AUTH_SASL_FINAL:
	case CLIENT_WELCOME:
		return true;
	case CLIENT_IDLE:
	case CLIENT_WAITING:
	case CLIENT_ACTIVE:
	case CLIENT_ADMIN:
		return false;
	}
	return false;
}

void client_login_done(struct client *c)
{
	c->conn.ctx->login_count--;
}

void client_start(struct client *c)
{
	struct sluice *ctx = c->conn.ctx;
	uint8_t key[8];

	c->id = ++ctx->next_client_id;
	c->connect_time = uv_now(ctx->loop);
	list_append(&ctx->clients, &c->node);
	ctx->client_count++;
	ctx->login_count++;
	c->conn.max_packet = (uint32_t)ctx->config->max_packet_size;
	conn_set_tcp_options(&c->conn, ctx->config);
	conn_peer_addr(&c->conn, &c->peer);
	/* Refused at once, with PgBouncer's error: held until a startup
	 * packet or client_login_timeout, a flood would use up the fds. */
	if (ctx->client_count > ctx->config->max_client_conn) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "no more connections allowed (max_client_conn)");
		return;
	}
	auth_random_bytes(key, sizeof(key));
	memcpy(&c->cancel_pid, key, 4);
	memcpy(&c->cancel_key, key + 4, 4);
	c->state = CLIENT_STARTUP;
	conn_want_read(&c->conn, true);
}

/* --- query phase ------------------------------------------------------ */

/* A request that owes a ReadyForQuery: stamps the query and transaction
 * start when nothing else was in flight. */
static void request_sent(struct client *c)
{
	prepared_sync_sent(c->server);
	if (server_expect_ready(c->server) == 1) {
		uint64_t now = uv_now(c->conn.ctx->loop);

		c->query_start = now;
		if (!c->xact_start)
			c->xact_start = now;
	}
}

/* Notes what a message owes before it goes to the server. */
static void track_message(struct client *c, uint8_t type)
{
	if (c->leak)
		leak_client_spoke(c, uv_now(c->conn.ctx->loop));
	c->idle_xact_since = 0;
	switch (type) {
	case PG_MSG_QUERY:
	case PG_MSG_FUNCTION_CALL:
		request_sent(c);
		break;
	case PG_MSG_SYNC:
		request_sent(c);
		c->batch_open = false;
		break;
	case PG_MSG_PARSE:
	case PG_MSG_BIND:
	case PG_MSG_DESCRIBE:
	case PG_MSG_EXECUTE:
	case PG_MSG_CLOSE:
	case PG_MSG_FLUSH:
		c->batch_open = true;
		break;
	default:
		break; /* COPY data and the rest owe nothing */
	}
}

/* Bytes of a message the leak detector wants to see first; 0: none. */
static size_t leak_wanted(const struct client *c, size_t whole)
{
	size_t prefix = leak_wanted_prefix(c);

	if (!prefix)
		return 0;
	return whole < PG_HEADER_LEN + prefix ? whole : PG_HEADER_LEN + prefix;
}

static bool names_a_statement(uint8_t type)
{
	return type == PG_MSG_QUERY || type == PG_MSG_PARSE || type == PG_MSG_BIND ||
	       type == PG_MSG_EXECUTE || type == PG_MSG_CLOSE;
}

/* Starts passing one message to the server; returns bytes used, 0 when the
 * leak detector needs more of its start first. */
static size_t forward_message(struct client *c, const uint8_t *data, size_t len,
                              const struct pg_header *h)
{
	size_t whole = (size_t)h->len + 1;
	size_t n = len < whole ? len : whole;
	size_t wanted = names_a_statement(h->type) ? leak_wanted(c, whole) : 0;
	size_t replaced = 0;

	if (wanted < prepared_wanted(c, h->type, whole))
		wanted = prepared_wanted(c, h->type, whole);
	if (n < wanted) {
		conn_need(&c->conn, (uint32_t)wanted);
		return 0;
	}
	if (prepared_active(c) && prepared_must_wait(c, data, n)) {
		conn_want_read(&c->conn, false); /* until the server answers */
		return 0;
	}
	if (wanted && leak_wanted_prefix(c))
		leak_observe(c, h->type, data + PG_HEADER_LEN, n - PG_HEADER_LEN,
		             whole - PG_HEADER_LEN);
	if (prepared_active(c))
		replaced = prepared_forward(c, data, n, whole);
	if (c->conn.closing)
		return n; /* failed: past a bound, or sluice's names */
	track_message(c, h->type);
	conn_queue(&c->server->conn, data + replaced, n - replaced);
	c->forward_left = (uint32_t)(whole - n);
	return n;
}

/* The first message of a transaction: get a server. True if linked now. */
static bool begin_transaction(struct client *c)
{
	c->local_batch = false;
	c->state = CLIENT_WAITING;
	pool_acquire(c->pool, c);
	return c->state == CLIENT_ACTIVE;
}

static size_t query_data(struct client *c, const uint8_t *data, size_t len)
{
	uint32_t max_len = c->conn.max_packet;
	size_t pos = 0;
	struct pg_header h;

	while (pos < len && !c->conn.closing && c->state != CLIENT_WAITING) {
		size_t n = len - pos;
		enum codec_result rc;

		if (c->forward_left > 0) {
			if (n > c->forward_left)
				n = c->forward_left;
			conn_queue(&c->server->conn, data + pos, n);
			c->forward_left -= (uint32_t)n;
			pos += n;
			continue;
		}
		rc = codec_read_header(data + pos, n, max_len, &h);
		if (rc == CODEC_NEED_MORE)
			break;
		if (rc == CODEC_INVALID) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			            "invalid message length (max_packet_size)");
			return len;
		}
		if (h.type == PG_MSG_TERMINATE) {
			client_close(c, "client close request");
			return len;
		}
		if (c->state == CLIENT_IDLE && prepared_active(c)) {
			size_t whole = (size_t)h.len + 1;

			if (n < whole && prepared_wanted(c, h.type, whole) == whole) {
				conn_need(&c->conn, (uint32_t)whole);
				break;
			}
			if (n >= whole && (n = prepared_local(c, data + pos, whole)) > 0) {
				pos += n;
				continue;
			}
			n = len - pos;
		}
		if (c->state == CLIENT_IDLE && !begin_transaction(c))
			break;
		n = forward_message(c, data + pos, n, &h);
		if (n == 0)
			break;
		pos += n;
	}
	if (pos > 0)
		stats_bytes(c->pool, pos, 0);
	if (c->state == CLIENT_ACTIVE && c->server &&
	    conn_flush(&c->server->conn, &c->conn) < 0)
		server_close(c->server, "write failed");
	/* Answers sluice gave itself: unread, they pause this client (and a
	 * failed queue, with nothing left to send, still fails here). */
	if (!c->conn.closing && conn_flush(&c->conn, &c->conn) < 0)
		client_close(c, "write failed");
	return pos;
}

/*
 * A client waiting for a server (or, just logged in, for its pool's server
 * parameters) stays readable: stopping and restarting the read would cost
 * two epoll_ctl calls per queued transaction, and a client that hangs up is
 * noticed at once. What it sends meanwhile is held, up to one read chunk
 * (or max_packet_size, if smaller: held bytes may not grow past it by more
 * than a read); then reading stops until a server is linked.
 */
static void hold_while_waiting(struct client *c, size_t held)
{
	if (held >= SLUICE_READ_CHUNK || held >= c->conn.max_packet)
		conn_want_read(&c->conn, false);
}

static size_t data_for_state(struct client *c, const uint8_t *data,
                             size_t len)
{
	switch (c->state) {
	case CLIENT_STARTUP:
	case CLIENT_AUTH_PASSWORD:
	case CLIENT_AUTH_SASL:
	case CLIENT_AUTH_SASL_FINAL:
		return login_data(c, data, len);
	case CLIENT_WELCOME:
	case CLIENT_WAITING:
		return 0;
	case CLIENT_IDLE:
	case CLIENT_ACTIVE:
		return query_data(c, data, len);
	case CLIENT_ADMIN:
		return admin_data(c, data, len);
	}
	return 0;
}

/*
 * Bytes that arrived behind the message that changed the state (a query
 * sent along with the password, say) go to the new state at once: nothing
 * else would offer them again before the client sends more.
 */
static size_t on_data(struct conn *conn, const uint8_t *data, size_t len)
{
	struct client *c = conn->owner;
	enum client_state before;
	size_t pos = 0;

	do {
		before = c->state;
		pos += data_for_state(c, data + pos, len - pos);
	} while (pos < len && !conn->closing && c->state != before);
	if (!conn->closing &&
	    (c->state == CLIENT_WAITING || c->state == CLIENT_WELCOME))
		hold_while_waiting(c, len - pos);
	return pos;
}

/* Microseconds since a uv_now() stamp; 0 for no stamp. */
static uint64_t us_since(const struct client *c, uint64_t stamp)
{
	return stamp ? (uv_now(c->conn.ctx->loop) - stamp) * 1000 : 0;
}

void client_linked(struct client *c)
{
	stats_assign(c->pool, us_since(c, c->wait_start));
	c->state = CLIENT_ACTIVE;
	c->wait_start = 0;
	c->wait_notified = false;
	conn_want_read(&c->conn, true);
}

void client_unlinked(struct client *c)
{
	c->state = CLIENT_IDLE;
	c->batch_open = false;
	c->xact_start = c->query_start = c->idle_xact_since = 0;
	c->query_timed_out = false;
	c->idle_since = uv_now(c->conn.ctx->loop);
	conn_want_read(&c->conn, true);
}

void client_ready(struct client *c, char status, bool done)
{
	if (!done)
		return;
	leak_ready(c, status);
	stats_query_done(c->pool, us_since(c, c->query_start));
	c->query_start = 0;
	c->query_timed_out = false;
	if (status == 'I') {
		stats_xact_done(c->pool, us_since(c, c->xact_start));
		c->xact_start = 0;
	} else {
		c->idle_xact_since = uv_now(c->conn.ctx->loop);
	}
}

void client_send(struct client *c, const void *data, size_t len)
{
	conn_queue(&c->conn, data, len);
}

/* --- leaving ---------------------------------------------------------- */

/* Lets go of the pool and the server, whatever the state. */
static void detach(struct client *c)
{
	struct server *s = c->server;

	leak_client_gone(c, "disconnect");
	switch (c->state) {
	case CLIENT_WAITING:
		if (s)
			server_client_gone(s, false, false);
		else
			pool_cancel_wait(c->pool, c);
		break;
	case CLIENT_ACTIVE:
		if (s)
			server_client_gone(s, c->forward_left > 0, c->batch_open);
		break;
	case CLIENT_WELCOME:
		list_remove(&c->pool_node);
		break;
	case CLIENT_STARTUP:
	case CLIENT_AUTH_PASSWORD:
	case CLIENT_AUTH_SASL:
	case CLIENT_AUTH_SASL_FINAL:
	case CLIENT_IDLE:
		break;
	case CLIENT_ADMIN:
		if (c->admin_wait != ADMIN_WAIT_NONE)
			c->conn.ctx->admin_waits--;
		break;
	}
	c->server = NULL;
	if (c->pool && c->state != CLIENT_STARTUP) {
		c->pool->client_count--;
		c->pool->last_active = uv_now(c->conn.ctx->loop);
	}
	if (!list_empty(&c->node)) {
		list_remove(&c->node);
		c->conn.ctx->client_count--;
		if (client_logging_in(c))
			client_login_done(c);
	}
}

static void log_close(struct client *c, const char *reason)
{
	uint64_t age_ms = uv_now(c->conn.ctx->loop) - c->connect_time;
	char esc[2048];

	/* A reason may quote what the client sent (client_fail's message). */
	if (c->conn.ctx->config->log_disconnections)
		log_info(&c->conn, "closing because: %s (age=%llus)",
		         log_escape(reason, esc, sizeof(esc)),
		         (unsigned long long)(age_ms / 1000));
}

void client_close(struct client *c, const char *reason)
{
	if (c->conn.closing)
		return;
	log_close(c, reason);
	detach(c);
	conn_close(&c->conn);
}

int client_fail(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char message[512];
	char esc[2048];
	struct msgbuf mb;
	va_list ap;

	if (c->conn.closing)
		return 0;
	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	if (c->conn.ctx->config->log_pooler_errors)
		log_warn(&c->conn, "pooler error: %s",
		         log_escape(message, esc, sizeof(esc)));
	msgbuf_init(&mb);
	codec_put_error(&mb, "FATAL", sqlstate, message);
	conn_queue_msgbuf(&c->conn, &mb);
	msgbuf_free(&mb);
	log_close(c, message);
	detach(c);
	conn_close_after_flush(&c->conn);
	return 0;
}

/* A queued client's Terminate waits in its held bytes, behind the query
 * it queued with: true if one is there at a message boundary. */
static bool held_terminate(const struct conn *conn)
{
	size_t pos = 0;
	struct pg_header h;

	if (conn->held_len == 0)
		return false;
	while (codec_read_header(conn->held + pos, conn->held_len - pos,
	                         conn->max_packet, &h) == CODEC_OK) {
		if (h.type == PG_MSG_TERMINATE)
			return true;
		pos += (size_t)h.len + 1;
		if (pos >= conn->held_len)
			break;
	}
	return false;
}

static void on_eof(struct conn *conn, int status)
{
	struct client *c = conn->owner;

	if (status == UV_EOF && c->state == CLIENT_WAITING && held_terminate(conn))
		client_close(c, "client close request");
	else
		client_close(c, status == UV_EOF ? "client unexpected eof"
		                                 : uv_strerror(status));
}

static void on_closed(struct conn *conn)
{
	free_client(conn->owner);
}

void client_host_port(const struct client *c, char *host, size_t len, int *port)
{
	if (c->conn.is_unix) {
		snprintf(host, len, "unix");
		*port = c->conn.ctx->config->listen_port;
		return;
	}
	sockaddr_text(&c->peer.sa, host, len, port);
}

/* PgBouncer's form: C-<id>: db/user@addr:port. */
static void describe(const struct conn *conn, char *buf, size_t len)
{
	const struct client *c = conn->owner;
	char db[LOG_ESCAPED_NAME], user[LOG_ESCAPED_NAME];
	char host[64];
	int port;

	client_host_port(c, host, sizeof(host), &port);
	snprintf(buf, len, "C-%llu: %s/%s@%s:%d", (unsigned long long)c->id,
	         c->database ? log_escape(c->database, db, sizeof(db)) : "(nodb)",
	         c->user ? log_escape(c->user, user, sizeof(user)) : "(nouser)",
	         host, port);
}

static const struct conn_ops client_ops = {
	.on_data = on_data,
	.on_eof = on_eof,
	.on_closed = on_closed,
	.describe = describe,
};

const char *client_param(const struct client *c, const char *name)
{
	const char *mine = params_get(&c->params, name);

	if (mine || !c->pool)
		return mine;
	return params_get(&c->pool->defaults, name);
}

void client_param_reported(struct client *c, const char *name, const char *value)
{
	const char *fallback = c->pool ? params_get(&c->pool->defaults, name) : NULL;

	/* Back to the default: no need to keep a copy. */
	if (!params_get(&c->params, name) && fallback && strcmp(fallback, value) == 0)
		return;
	params_set(&c->params, name, value);
}

struct client *client_find_by_cancel_key(struct sluice *ctx, uint32_t pid,
                                         uint32_t key)
{
	/* O(n), n <= max_client_conn; cancels are rare. */
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		struct client *c = LIST_ENTRY(l, struct client, node);

		if (c->cancel_pid == pid && c->cancel_key == key &&
		    c->state != CLIENT_STARTUP)
			return c;
	}
	return NULL;
}
