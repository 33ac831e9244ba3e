/*
 * server.c - server connections: connect, log in, serve a client, clean up.
 *
 * Transitions (all through set_state, which moves lists and logs):
 *
 *   CONNECTING --connected--> LOGIN --ReadyForQuery--> pool_release -> IDLE
 *   IDLE --server_assign--> INTERNAL (check / SET params) --> ACTIVE
 *   ACTIVE --ReadyForQuery 'I', nothing in flight (transaction mode)-->
 *        pool_release (maybe via INTERNAL reset) -> IDLE or ACTIVE again
 *   ACTIVE --client gone--> INTERNAL (ROLLBACK / reset) --> IDLE, or closed
 *
 * A server whose last ReadyForQuery said 'T' or 'E' never reaches IDLE: it
 * is rolled back first, or closed when that is not safe.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "prepared_sql.h"
#include "server.h"
#include "sluice.h"
#include "stats.h"

/* Largest message a server may send; only parsed ones are held whole. */
#define SERVER_MAX_MESSAGE 0x3fffffffu

static const struct conn_ops server_ops;

static const char *const state_names[] = {
	[SERVER_CONNECTING] = "connecting",
	[SERVER_LOGIN] = "login",
	[SERVER_IDLE] = "idle",
	[SERVER_INTERNAL] = "internal",
	[SERVER_ACTIVE] = "active",
	[SERVER_CANCELING] = "canceling",
};

static struct config *cfg_of(struct server *s)
{
	return s->pool->ctx->config;
}

static void set_state(struct server *s, enum server_state state)
{
	list_remove(&s->node);
	switch (state) {
	case SERVER_IDLE:
		list_append(&s->pool->idle, &s->node);
		break;
	case SERVER_CONNECTING:
	case SERVER_LOGIN:
	case SERVER_INTERNAL:
	case SERVER_ACTIVE:
	case SERVER_CANCELING:
		list_append(&s->pool->used, &s->node);
		break;
	}
	log_debug(&s->conn, "%s -> %s", state_names[s->state], state_names[state]);
	s->state = state;
}

static void send_now(struct server *s, struct msgbuf *mb)
{
	conn_queue_msgbuf(&s->conn, mb);
	msgbuf_free(mb);
	if (conn_flush(&s->conn, NULL) < 0)
		server_close(s, "write failed");
}

/* --- connecting ------------------------------------------------------- */

static void send_startup(struct server *s)
{
	const struct pool_target *t = &s->pool->target;
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, 0);
	msgbuf_put_u32(&mb, PG_PROTOCOL_3_0);
	msgbuf_put_str(&mb, "user");
	msgbuf_put_str(&mb, t->user);
	msgbuf_put_str(&mb, "database");
	msgbuf_put_str(&mb, t->dbname);
	if (t->application_name) {
		msgbuf_put_str(&mb, "application_name");
		msgbuf_put_str(&mb, t->application_name);
	}
	if (t->client_encoding) {
		msgbuf_put_str(&mb, "client_encoding");
		msgbuf_put_str(&mb, t->client_encoding);
	}
	if (t->datestyle) {
		msgbuf_put_str(&mb, "DateStyle");
		msgbuf_put_str(&mb, t->datestyle);
	}
	if (t->timezone) {
		msgbuf_put_str(&mb, "TimeZone");
		msgbuf_put_str(&mb, t->timezone);
	}
	msgbuf_put_u8(&mb, 0);
	msgbuf_end(&mb);
	send_now(s, &mb);
}

static void login_failed(struct server *s, const char *sqlstate, const char *msg)
{
	char esc[2048];

	/* PostgreSQL's message may quote the client's user or database. */
	log_warn(&s->conn, "server login failed: %s",
	         log_escape(msg, esc, sizeof(esc)));
	pool_server_failed(s->pool, sqlstate, msg);
	server_close(s, "login failed");
}

static void connect_failed(struct server *s, int status)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "could not connect to server: %s",
	         uv_strerror(status));
	login_failed(s, SQLSTATE_CONNECTION_FAILURE, msg);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct server *s = req->data;

	if (status == UV_ECANCELED)
		return;
	if (status < 0) {
		connect_failed(s, status);
		return;
	}
	conn_set_tcp_options(&s->conn, cfg_of(s));
	set_state(s, SERVER_LOGIN);
	send_startup(s);
	conn_want_read(&s->conn, true);
}

static int connect_tcp(struct server *s)
{
	return uv_tcp_connect(&s->connect_req, &s->conn.h.tcp,
	                      (const struct sockaddr *)&s->addr, connect_cb);
}

/* A host name resolved (on libuv's thread pool); s is NULL in req->data
 * if the server was closed meanwhile. The first address is used. */
static void resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct server *s = req->data;
	char msg[512];

	free(req);
	if (s && (status < 0 || !res)) {
		s->resolving = NULL;
		snprintf(msg, sizeof(msg), "could not resolve server host \"%s\": %s",
		         s->pool->target.host, uv_strerror(status));
		login_failed(s, SQLSTATE_CONNECTION_FAILURE, msg);
	} else if (s) {
		s->resolving = NULL;
		memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
		if ((status = connect_tcp(s)) < 0)
			connect_failed(s, status);
	}
	uv_freeaddrinfo(res);
}

/*
 * Numeric addresses are used as they are; a host name is resolved without
 * blocking the loop (a slow DNS server stalls only this pool's new
 * connections, which server_connect_timeout bounds).
 */
static int resolve_and_connect(struct server *s)
{
	const struct pool_target *t = &s->pool->target;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	uv_getaddrinfo_t *req;
	char port[16];
	int rc;

	if (uv_ip4_addr(t->host, t->port, (struct sockaddr_in *)&s->addr) == 0 ||
	    uv_ip6_addr(t->host, t->port, (struct sockaddr_in6 *)&s->addr) == 0)
		return connect_tcp(s);
	req = malloc(sizeof(*req));
	if (!req)
		return UV_ENOMEM;
	req->data = s;
	snprintf(port, sizeof(port), "%d", t->port);
	rc = uv_getaddrinfo(s->pool->ctx->loop, req, resolved_cb, t->host, port,
	                    &hints);
	if (rc < 0) {
		free(req);
		return rc;
	}
	s->resolving = req;
	return 0;
}

static int start_connect(struct server *s)
{
	const struct pool_target *t = &s->pool->target;
	uv_loop_t *loop = s->pool->ctx->loop;
	char path[256];

	s->connect_req.data = s;
	if (s->conn.is_unix) {
		snprintf(path, sizeof(path), "%s/.s.PGSQL.%d",
		         t->host ? t->host : "/var/run/postgresql", t->port);
		uv_pipe_init(loop, &s->conn.h.pipe, 0);
		uv_pipe_connect(&s->connect_req, &s->conn.h.pipe, path, connect_cb);
		return 0;
	}
	uv_tcp_init(loop, &s->conn.h.tcp);
	return resolve_and_connect(s);
}

/* Up to a tenth less than server_lifetime, at random, so that servers
 * opened together are not all recycled together. */
static uint64_t spread_lifetime(uint64_t lifetime)
{
	uint32_t r = 0;

	if (lifetime == 0)
		return 0;
	auth_random_bytes((uint8_t *)&r, sizeof(r));
	return lifetime - (uint64_t)((double)r / UINT32_MAX * (double)lifetime / 10);
}

int server_launch(struct pool *pool)
{
	struct server *s = calloc(1, sizeof(*s));
	const struct pool_target *t = &pool->target;
	bool is_unix = !t->host || t->host[0] == '/';
	int rc;

	if (!s)
		return -1;
	s->pool = pool;
	s->id = ++pool->ctx->next_server_id;
	s->status = 'I';
	s->connect_time = uv_now(pool->ctx->loop);
	s->generation = pool->generation;
	s->lifetime = spread_lifetime(pool->limits.server_lifetime);
	conn_init(&s->conn, pool->ctx, &server_ops, s, is_unix);
	s->conn.h.handle.data = &s->conn;
	list_init(&s->node);
	list_append(&pool->used, &s->node);
	pool->server_count++;
	pool->server_structs++;
	rc = start_connect(s);
	s->conn.h.handle.data = &s->conn;
	if (rc < 0) {
		connect_failed(s, rc);
		return -1;
	}
	log_debug(&s->conn, "new server connection");
	return 0;
}

/* --- login ------------------------------------------------------------ */

static const char *login_secret(struct server *s)
{
	return s->pool->target.password;
}

static void answer_cleartext(struct server *s)
{
	const char *secret = login_secret(s);
	struct msgbuf mb;

	if (!secret || auth_secret_kind(secret) != AUTH_SECRET_PLAIN)
		return login_failed(s, SQLSTATE_INVALID_PASSWORD,
		                    "server asked for a cleartext password, but no plain-text password is configured");
	msgbuf_init(&mb);
	codec_put_password(&mb, secret, strlen(secret) + 1);
	send_now(s, &mb);
}

static void answer_md5(struct server *s, struct codec_reader *r)
{
	const char *secret = login_secret(s);
	const uint8_t *salt = codec_get_bytes(r, 4);
	char response[AUTH_MD5_LEN + 1];
	struct msgbuf mb;

	if (!salt)
		return login_failed(s, SQLSTATE_PROTOCOL_VIOLATION, "bad md5 request");
	if (!secret || auth_secret_kind(secret) == AUTH_SECRET_SCRAM)
		return login_failed(s, SQLSTATE_INVALID_PASSWORD,
		                    "server asked for md5, but no plain-text or md5 password is configured");
	auth_md5_response(secret, s->pool->target.user, salt, response);
	msgbuf_init(&mb);
	codec_put_password(&mb, response, strlen(response) + 1);
	send_now(s, &mb);
}

static void answer_sasl(struct server *s, struct codec_reader *r)
{
	bool offered = false;
	char *first = NULL;
	struct msgbuf mb;

	for (const char *mech; (mech = codec_get_str(r)) && *mech;)
		if (strcmp(mech, "SCRAM-SHA-256") == 0)
			offered = true;
	if (!offered)
		return login_failed(s, SQLSTATE_PROTOCOL_VIOLATION,
		                    "server offers no SASL mechanism sluice supports");
	if (auth_scram_client_first(&s->scram, &first) < 0)
		return login_failed(s, SQLSTATE_INTERNAL_ERROR, "SCRAM setup failed");
	msgbuf_init(&mb);
	codec_put_sasl_initial(&mb, "SCRAM-SHA-256", first, strlen(first));
	free(first);
	send_now(s, &mb);
}

static void answer_sasl_continue(struct server *s, const uint8_t *data, size_t len)
{
	const char *secret = login_secret(s);
	struct pool *pool = s->pool;
	char *final = NULL;
	struct msgbuf mb;
	int rc = -1;

	if (secret && auth_secret_kind(secret) == AUTH_SECRET_PLAIN)
		rc = auth_scram_client_final(&s->scram, secret, (const char *)data,
		                             len, &final);
	else if (secret && pool->has_scram_client_key)
		rc = auth_scram_client_final_keys(&s->scram, pool->scram_client_key,
		                                  pool->scram_server_key,
		                                  (const char *)data, len, &final);
	if (rc < 0)
		return login_failed(s, SQLSTATE_INVALID_PASSWORD,
		                    "SCRAM login to server failed: no usable password");
	msgbuf_init(&mb);
	codec_put_password(&mb, final, strlen(final));
	free(final);
	send_now(s, &mb);
}

static void handle_auth(struct server *s, const uint8_t *body, size_t len)
{
	struct codec_reader r;
	uint32_t code;

	codec_reader_init(&r, body, len);
	code = codec_get_u32(&r);
	switch (code) {
	case PG_AUTH_OK:
		return;
	case PG_AUTH_CLEARTEXT:
		return answer_cleartext(s);
	case PG_AUTH_MD5:
		return answer_md5(s, &r);
	case PG_AUTH_SASL:
		return answer_sasl(s, &r);
	case PG_AUTH_SASL_CONTINUE:
		return answer_sasl_continue(s, body + 4, len - 4);
	case PG_AUTH_SASL_FINAL:
		if (auth_scram_client_verify(&s->scram, (const char *)body + 4, len - 4) < 0)
			login_failed(s, SQLSTATE_PROTOCOL_VIOLATION,
			             "server's SCRAM signature is wrong");
		return;
	default:
		login_failed(s, SQLSTATE_FEATURE_NOT_SUPPORTED,
		             "server asked for an authentication method sluice does not support");
	}
}

static void record_parameter(struct server *s, const uint8_t *body, size_t len)
{
	struct codec_reader r;
	const char *name;
	const char *value;

	codec_reader_init(&r, body, len);
	name = codec_get_str(&r);
	value = codec_get_str(&r);
	if (!name || !value)
		return;
	params_set(&s->params, name, value);
	/* While a client is linked (or being synced), what the server now
	 * reports is what that client has set; a client keeps only values
	 * that differ from the pool's defaults. */
	if (s->client && params_is_tracked(cfg_of(s), name))
		client_param_reported(s->client, name, value);
}

static void server_error_fields(const uint8_t *body, size_t len,
                                struct pg_error_fields *err)
{
	if (codec_parse_error(body, len, err) != CODEC_OK) {
		err->sqlstate = SQLSTATE_PROTOCOL_VIOLATION;
		err->message = "malformed error from server";
	}
}

static void run_internal(struct server *s, const char *sql, enum server_next next);
static void cleanup(struct server *s);


static void login_done(struct server *s)
{
	const char *connect_query = s->pool->target.connect_query;

	if (log_enabled(LOG_LEVEL_INFO) && cfg_of(s)->log_connections)
		log_info(&s->conn, "new connection to server");
	pool_server_ready(s->pool, s);
	if (connect_query && *connect_query)
		run_internal(s, connect_query, SERVER_NEXT_RELEASE);
	else
		cleanup(s);
}

static void login_message(struct server *s, uint8_t type, const uint8_t *body,
                          size_t len)
{
	struct pg_error_fields err;
	struct codec_reader r;

	switch (type) {
	case PG_MSG_AUTH:
		return handle_auth(s, body, len);
	case PG_MSG_PARAMETER_STATUS:
		return record_parameter(s, body, len);
	case PG_MSG_BACKEND_KEY_DATA:
		codec_reader_init(&r, body, len);
		s->backend_pid = codec_get_u32(&r);
		s->backend_key = codec_get_u32(&r);
		return;
	case PG_MSG_ERROR:
		server_error_fields(body, len, &err);
		return login_failed(s, err.sqlstate, err.message);
	case PG_MSG_READY_FOR_QUERY:
		s->status = len > 0 ? (char)body[0] : 'I';
		return login_done(s);
	case PG_MSG_NOTICE:
		return;
	default:
		login_failed(s, SQLSTATE_PROTOCOL_VIOLATION,
		             "unexpected message from server during login");
	}
}

/* --- internal queries ------------------------------------------------- */

/* The query quotes values clients set (application_name...): escaped,
 * whole, and only when debug lines are written. */
static void log_internal(struct server *s, const char *sql)
{
	size_t room = 4 * strlen(sql) + 6; /* log_escape's worst case */
	char *esc;

	if (!log_enabled(LOG_LEVEL_DEBUG))
		return;
	esc = malloc(room);
	if (esc)
		log_debug(&s->conn, "internal query: %s", log_escape(sql, esc, room));
	free(esc);
}

static void run_internal(struct server *s, const char *sql, enum server_next next)
{
	struct msgbuf mb;

	set_state(s, SERVER_INTERNAL);
	s->next = next;
	s->internal_failed = false;
	s->expected_ready = 1;
	log_internal(s, sql);
	msgbuf_init(&mb);
	codec_put_query(&mb, sql);
	send_now(s, &mb);
}

static void adopt_server_values(struct server *s, struct client *c)
{
	const struct param *next;

	/* Setting a value replaces its node: step on before that. */
	for (const struct param *p = c->params.head; p; p = next) {
		const char *theirs = params_get(&s->params, p->name);

		next = p->next;
		if (theirs && strcmp(theirs, p->value) != 0)
			client_param_reported(c, p->name, theirs);
	}
}

static void link_client(struct server *s)
{
	set_state(s, SERVER_ACTIVE);
	s->expected_ready = 0;
	s->forward_left = 0;
	client_linked(s->client);
}

/* Checks, then syncs parameters, then links: each step may need a query. */
static void prepare_for_client(struct server *s, bool check)
{
	struct config *cfg = cfg_of(s);
	uint64_t now = uv_now(s->pool->ctx->loop);
	struct msgbuf sql;

	if (check && cfg->server_check_query && *cfg->server_check_query &&
	    now - s->last_used >= cfg->server_check_delay)
		return run_internal(s, cfg->server_check_query, SERVER_NEXT_ASSIGN);
	msgbuf_init(&sql);
	if (params_sync_sql(&s->client->params, &s->pool->defaults, &s->params,
	                    &sql) > 0) {
		msgbuf_put_u8(&sql, 0);
		if (!sql.failed)
			run_internal(s, (const char *)sql.data, SERVER_NEXT_LINK);
		else
			server_close(s, "out of memory");
		msgbuf_free(&sql);
		return;
	}
	msgbuf_free(&sql);
	link_client(s);
}

void server_assign(struct server *s, struct client *client)
{
	s->client = client;
	client->server = s;
	set_state(s, SERVER_INTERNAL);
	prepare_for_client(s, true);
}

/* Gets a server without a client back to clean idle: roll back, reset. */
static void cleanup(struct server *s)
{
	const char *reset = cfg_of(s)->server_reset_query;

	if (s->status != 'I')
		return run_internal(s, "ROLLBACK", SERVER_NEXT_RELEASE);
	if (s->needs_reset && reset && *reset) {
		s->needs_reset = false;
		if (prepared_drops_all(reset, strlen(reset)))
			prepared_server_clear(s);
		return run_internal(s, reset, SERVER_NEXT_RELEASE);
	}
	s->needs_reset = false;
	s->expected_ready = 0;
	if (s->cancels_in_flight > 0) {
		/* A late cancel must not hit the next client's query; one that
		 * never completes costs the server after cancel_wait_timeout. */
		set_state(s, SERVER_CANCELING);
		s->cancel_deadline = uv_now(s->pool->ctx->loop) +
		                     cfg_of(s)->cancel_wait_timeout;
		return;
	}
	s->last_used = uv_now(s->pool->ctx->loop);
	if (s->lifetime && s->last_used - s->connect_time >= s->lifetime) {
		s->pool->timeouts[TIMEOUT_SERVER_LIFETIME]++;
		server_close(s, "server_lifetime");
		return;
	}
	pool_release(s->pool, s);
}

void server_set_idle(struct server *s)
{
	set_state(s, SERVER_IDLE);
}

static void internal_done(struct server *s)
{
	struct client *client = s->client;

	if (s->internal_failed && client && s->next == SERVER_NEXT_LINK) {
		s->client = NULL;
		client->server = NULL;
		server_close(s, "parameter sync failed");
		client_fail(client, SQLSTATE_PROTOCOL_VIOLATION,
		            "could not set client parameters on the server");
		return;
	}
	if (s->internal_failed) {
		/* A failing check or reset: this server is not to be trusted;
		 * its client (if any) queues again for another. */
		s->client = NULL;
		if (client)
			client->server = NULL;
		server_close(s, "internal query failed");
		if (client)
			pool_acquire(client->pool, client);
		return;
	}
	if (!client || s->next == SERVER_NEXT_RELEASE)
		return cleanup(s);
	s->last_used = uv_now(s->pool->ctx->loop);
	if (s->next == SERVER_NEXT_LINK) {
		/* One SET round: the server's spelling is now the client's, even
		 * where it reported nothing (a value SET to what it was). */
		adopt_server_values(s, client);
		return link_client(s);
	}
	prepare_for_client(s, false);
}

static void internal_message(struct server *s, uint8_t type, const uint8_t *body,
                             size_t len)
{
	struct pg_error_fields err;
	char esc[16], esc2[2048];

	switch (type) {
	case PG_MSG_READY_FOR_QUERY:
		s->status = len > 0 ? (char)body[0] : 'E';
		s->expected_ready = 0;
		return internal_done(s);
	case PG_MSG_ERROR:
		server_error_fields(body, len, &err);
		log_warn(&s->conn, "internal query failed: %s %s",
		         log_escape(err.sqlstate, esc, sizeof(esc)),
		         log_escape(err.message, esc2, sizeof(esc2)));
		s->internal_failed = true;
		return;
	case PG_MSG_PARAMETER_STATUS:
		return record_parameter(s, body, len);
	default:
		return; /* rows, tags and notices of our own queries */
	}
}

/* --- serving a client ------------------------------------------------- */

uint32_t server_expect_ready(struct server *s)
{
	return ++s->expected_ready;
}

static bool may_release(struct server *s)
{
	struct client *c = s->client;

	if (s->expected_ready > 0 || c->batch_open || c->forward_left > 0)
		return false;
	switch (s->pool->pool_mode) {
	case POOL_MODE_SESSION:
	case POOL_MODE_INHERIT:
		return false;
	case POOL_MODE_TRANSACTION:
		return s->status == 'I';
	case POOL_MODE_STATEMENT:
		return true;
	}
	return false;
}

static void release_from_client(struct server *s)
{
	struct client *c = s->client;

	s->client = NULL;
	c->server = NULL;
	s->pool->xact_count++;
	s->needs_reset = cfg_of(s)->server_reset_query_always;
	client_unlinked(c);
	cleanup(s);
}

/* ReadyForQuery while linked: forward it, then maybe give the server back. */
static void active_ready(struct server *s, const uint8_t *msg, size_t len)
{
	struct client *c = s->client;

	if (s->expected_ready == 0) {
		server_close(s, "unexpected ReadyForQuery from server");
		return;
	}
	s->expected_ready--;
	prepared_ready(s);
	s->status = len > PG_HEADER_LEN ? (char)msg[PG_HEADER_LEN] : 'E';
	s->pool->query_count++;
	if (s->pool->pool_mode == POOL_MODE_STATEMENT && s->status != 'I' &&
	    s->expected_ready == 0) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "transaction blocks not allowed in statement pooling mode");
		return;
	}
	client_send(c, msg, len);
	client_ready(c, s->status, s->expected_ready == 0);
	if (may_release(s)) {
		if (conn_flush(&c->conn, &s->conn) < 0)
			return client_close(c, "write failed");
		release_from_client(s);
	}
}

/* The error that ends a query sluice canceled for query_timeout: the
 * client learns why, in PostgreSQL's own form (ERROR 57014, connection
 * still usable). Any other error passes unchanged. */
static void timed_out_error(struct server *s, const uint8_t *msg, size_t len)
{
	struct pg_error_fields err;
	char text[160];
	struct msgbuf mb;

	if (codec_parse_error(msg + PG_HEADER_LEN, len - PG_HEADER_LEN, &err) != CODEC_OK ||
	    strcmp(err.sqlstate, SQLSTATE_QUERY_CANCELED) != 0) {
		client_send(s->client, msg, len);
		return;
	}
	snprintf(text, sizeof(text),
	         "query timeout: canceling statement after query_timeout (%llu ms)",
	         (unsigned long long)s->pool->limits.query_timeout);
	msgbuf_init(&mb);
	codec_put_error(&mb, "ERROR", SQLSTATE_QUERY_CANCELED, text);
	if (!mb.failed)
		client_send(s->client, mb.data, mb.len);
	msgbuf_free(&mb);
}

/* Handles one whole message or starts passing one through; returns bytes
 * used, 0 when more bytes are needed. */
static size_t active_message(struct server *s, const uint8_t *data, size_t len)
{
	struct pg_header h;
	size_t whole;
	size_t n;

	if (codec_read_header(data, len, SERVER_MAX_MESSAGE, &h) != CODEC_OK)
		return 0;
	whole = (size_t)h.len + 1;
	if (h.type == PG_MSG_READY_FOR_QUERY || h.type == PG_MSG_PARAMETER_STATUS ||
	    (h.type == PG_MSG_ERROR && s->client->query_timed_out) ||
	    prepared_wants_response(s, h.type)) {
		if (len < whole) {
			conn_need(&s->conn, (uint32_t)whole);
			return 0;
		}
		if (prepared_wants_response(s, h.type) &&
		    prepared_response(s, data, whole))
			return whole; /* sluice's own answer, or rewritten */
		if (h.type == PG_MSG_READY_FOR_QUERY)
			active_ready(s, data, whole);
		else if (h.type == PG_MSG_ERROR && s->client->query_timed_out)
			timed_out_error(s, data, whole);
		else if (h.type == PG_MSG_PARAMETER_STATUS)
			record_parameter(s, data + PG_HEADER_LEN, whole - PG_HEADER_LEN);
		if (h.type != PG_MSG_READY_FOR_QUERY &&
		    !(h.type == PG_MSG_ERROR && s->client->query_timed_out))
			client_send(s->client, data, whole);
		return whole;
	}
	n = len < whole ? len : whole;
	client_send(s->client, data, n);
	s->forward_left = (uint32_t)(whole - n);
	return n;
}

static size_t active_data(struct server *s, const uint8_t *data, size_t len)
{
	size_t pos = 0;

	while (pos < len && s->state == SERVER_ACTIVE && !s->conn.closing) {
		struct client *c = s->client;
		size_t n;

		if (s->forward_left > 0) {
			n = len - pos < s->forward_left ? len - pos : s->forward_left;
			client_send(c, data + pos, n);
			s->forward_left -= (uint32_t)n;
		} else {
			n = active_message(s, data + pos, len - pos);
			if (n == 0)
				break;
		}
		pos += n;
	}
	stats_bytes(s->pool, 0, pos);
	/* One write per read: a release above has flushed its client already. */
	if (s->state == SERVER_ACTIVE && s->client &&
	    conn_flush(&s->client->conn, &s->conn) < 0)
		client_close(s->client, "write failed");
	return pos;
}

/* --- reading ---------------------------------------------------------- */

static void idle_message(struct server *s, uint8_t type, const uint8_t *body,
                         size_t len)
{
	struct pg_error_fields err;
	char esc[2048];

	switch (type) {
	case PG_MSG_PARAMETER_STATUS:
		return record_parameter(s, body, len);
	case PG_MSG_NOTICE:
	case PG_MSG_NOTIFICATION:
		return;
	case PG_MSG_ERROR:
		server_error_fields(body, len, &err);
		log_warn(&s->conn, "idle server sent error: %s",
		         log_escape(err.message, esc, sizeof(esc)));
		return server_close(s, "error from idle server");
	default:
		server_close(s, "unexpected message from idle server");
	}
}

/* Dispatches whole messages in the states that parse everything. */
static size_t whole_messages(struct server *s, const uint8_t *data, size_t len)
{
	enum server_state state = s->state;
	size_t pos = 0;
	struct pg_header h;

	while (s->state == state && !s->conn.closing && state != SERVER_ACTIVE) {
		enum codec_result rc = codec_read_header(data + pos, len - pos,
		                                         SERVER_MAX_MESSAGE, &h);
		const uint8_t *body = data + pos + PG_HEADER_LEN;

		if (rc == CODEC_INVALID) {
			server_close(s, "invalid message length from server");
			return len;
		}
		if (rc == CODEC_NEED_MORE)
			break;
		if (len - pos < (size_t)h.len + 1) {
			conn_need(&s->conn, h.len + 1);
			break;
		}
		conn_need(&s->conn, 0);
		pos += (size_t)h.len + 1;
		if (state == SERVER_LOGIN)
			login_message(s, h.type, body, h.len - 4);
		else if (state == SERVER_INTERNAL)
			internal_message(s, h.type, body, h.len - 4);
		else
			idle_message(s, h.type, body, h.len - 4);
	}
	return pos;
}

static size_t on_data(struct conn *conn, const uint8_t *data, size_t len)
{
	struct server *s = conn->owner;
	size_t pos = 0;

	while (pos < len && !conn->closing) {
		size_t n = 0;

		switch (s->state) {
		case SERVER_CONNECTING:
			return pos;
		case SERVER_LOGIN:
		case SERVER_IDLE:
		case SERVER_INTERNAL:
		case SERVER_CANCELING:
			n = whole_messages(s, data + pos, len - pos);
			break;
		case SERVER_ACTIVE:
			n = active_data(s, data + pos, len - pos);
			break;
		}
		if (n == 0)
			break;
		pos += n;
	}
	return pos;
}

static void on_eof(struct conn *conn, int status)
{
	struct server *s = conn->owner;

	if (s->state == SERVER_LOGIN || s->state == SERVER_CONNECTING)
		pool_server_failed(s->pool, SQLSTATE_CONNECTION_FAILURE,
		                   "server closed the connection during login");
	server_close(s, status == UV_EOF ? "server disconnected" : uv_strerror(status));
}

static void on_closed(struct conn *conn)
{
	struct server *s = conn->owner;

	params_free(&s->params);
	prepared_server_free(s);
	auth_scram_client_free(&s->scram);
	s->pool->server_structs--;
	free(s);
}

/* PgBouncer's form: S-<id>: db/user@host:port. */
static void describe(const struct conn *conn, char *buf, size_t len)
{
	const struct server *s = conn->owner;
	const struct pool_target *t = &s->pool->target;
	char db[LOG_ESCAPED_NAME], user[LOG_ESCAPED_NAME];

	/* Both names may come from a client (autodb, the login user). */
	snprintf(buf, len, "S-%llu: %s/%s@%s:%d", (unsigned long long)s->id,
	         log_escape(s->pool->db_name, db, sizeof(db)),
	         log_escape(t->user, user, sizeof(user)),
	         t->host ? t->host : "unix", t->port);
}

static const struct conn_ops server_ops = {
	.on_data = on_data,
	.on_eof = on_eof,
	.on_closed = on_closed,
	.describe = describe,
};

void server_client_gone(struct server *s, bool client_mid_message, bool batch_open)
{
	s->client = NULL;
	if (s->state != SERVER_ACTIVE)
		return; /* INTERNAL: internal_done sees no client and cleans up */
	if (client_mid_message || batch_open || s->expected_ready > 0 ||
	    s->forward_left > 0) {
		server_close(s, "client disconnected with a request in flight");
		return;
	}
	s->pool->xact_count++;
	s->needs_reset = s->pool->pool_mode == POOL_MODE_SESSION ||
	                 cfg_of(s)->server_reset_query_always;
	cleanup(s);
}

/* Ends the client of a server that goes away. In the middle of a message
 * passed through to it, an ErrorResponse would be read as the rest of that
 * message (a corrupt stream): the client is then only closed. */
static void fail_linked_client(struct server *s, struct client *c,
                               const char *message)
{
	if (s->forward_left > 0)
		client_close(c, message);
	else
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "%s", message);
}

void server_close(struct server *s, const char *reason)
{
	struct client *client = s->client;
	char esc[2048];

	if (s->conn.closing)
		return;
	if (cfg_of(s)->log_disconnections)
		log_info(&s->conn, "closing because: %s",
		         log_escape(reason, esc, sizeof(esc)));
	if (s->resolving) {
		s->resolving->data = NULL; /* resolved_cb frees it */
		uv_cancel((uv_req_t *)s->resolving);
		s->resolving = NULL;
	}
	cancel_forget_server(s);
	s->cancels_in_flight = 0;
	s->client = NULL;
	if (client) {
		client->server = NULL;
		fail_linked_client(s, client, "server conn crashed?");
	}
	pool_server_gone(s->pool, s);
	conn_close(&s->conn);
}

void server_cancel_finished(struct server *s)
{
	if (--s->cancels_in_flight > 0 || s->state != SERVER_CANCELING)
		return;
	set_state(s, SERVER_INTERNAL);
	cleanup(s);
}

void server_connect_timed_out(struct server *s)
{
	s->pool->timeouts[TIMEOUT_SERVER_CONNECT]++;
	log_warn(&s->conn, "server_connect_timeout (%llu ms) reached while connecting",
	         (unsigned long long)cfg_of(s)->server_connect_timeout);
	login_failed(s, SQLSTATE_CONNECTION_FAILURE,
	             "server_connect_timeout reached while connecting to the server");
}

void server_cancel_timed_out(struct server *s)
{
	struct client *c = s->client;

	s->pool->timeouts[TIMEOUT_CANCEL_WAIT]++;
	log_warn(&s->conn, "cancel_wait_timeout (%llu ms) reached: closing server",
	         (unsigned long long)cfg_of(s)->cancel_wait_timeout);
	if (c) {
		s->client = NULL;
		c->server = NULL;
		fail_linked_client(s, c, "query timeout");
	}
	server_close(s, "cancel_wait_timeout");
}
