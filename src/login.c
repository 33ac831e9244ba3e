/*
 * login.c - a client's way in.
 *
 * Owns the startup packet (SSLRequest and GSSENCRequest are answered 'N';
 * CancelRequest is routed), the startup parameters, authentication against
 * auth_file by auth_type, and the welcome a pool's parameters make. Errors
 * are PgBouncer's texts; the database is looked up only after a successful
 * authentication so names cannot be probed, and an unknown user is answered
 * as a known one would be (mock SCRAM salt, same challenge, same error), so
 * user names cannot be probed either.
 */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "auth.h"
#include "cancel.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "control.h"
#include "log.h"
#include "login.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"

#define SASL_FAILED "SASL authentication failed"

static struct config *cfg_of(struct client *c)
{
	return c->conn.ctx->config;
}

static void send_msgbuf(struct client *c, struct msgbuf *mb)
{
	conn_queue_msgbuf(&c->conn, mb);
	msgbuf_free(mb);
	if (conn_flush(&c->conn, &c->conn) < 0)
		client_close(c, "write failed");
}

static void send_auth_request(struct client *c, uint32_t code, const void *data,
                              size_t len)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_auth(&mb, code, data, len);
	send_msgbuf(c, &mb);
}

/* --- after authentication --------------------------------------------- */

static bool is_admin_db(struct client *c)
{
	const struct db_config *db = config_find_db(cfg_of(c), c->database);

	if (strcmp(c->database, "sluice") != 0 && strcmp(c->database, "pgbouncer") != 0)
		return false;
	/* A real [databases] entry of that name wins over the console. */
	return !db || strcmp(db->name, "*") == 0;
}

static void admin_login(struct client *c)
{
	struct config *cfg = cfg_of(c);

	/* Names match exactly, as in the auth_file: "ADMIN" is not "admin". */
	c->is_admin_user = cfg->auth_type == AUTH_ANY ||
	                   config_list_contains_exact(cfg->admin_users, c->user);
	if (!c->is_admin_user &&
	    !config_list_contains_exact(cfg->stats_users, c->user)) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "not allowed to connect to the admin console");
		return;
	}
	admin_welcome(c);
}

/* Logged-in clients of the same database (same_db) or user; O(clients),
 * paid only when a cap is set. */
static int count_clients(struct client *c, bool same_db)
{
	struct list *clients = &c->conn.ctx->clients;
	int n = 0;

	for (struct list *l = clients->next; l != clients; l = l->next) {
		struct client *o = LIST_ENTRY(l, struct client, node);

		if (o->pool && strcmp(same_db ? o->database : o->user,
		                      same_db ? c->database : c->user) == 0)
			n++;
	}
	return n;
}

/* max_db_client_connections / max_user_client_connections, as PgBouncer
 * 1.24: the per-entry value wins over the main section's. */
static bool over_client_caps(struct client *c, const struct db_config *db)
{
	const struct config *cfg = cfg_of(c);
	const struct user_config *uc = config_find_user(cfg, c->user);
	int db_cap = db->max_db_client_connections >= 0 ?
	             db->max_db_client_connections : cfg->max_db_client_connections;
	int user_cap = uc && uc->max_user_client_connections >= 0 ?
	               uc->max_user_client_connections :
	               cfg->max_user_client_connections;

	if (db_cap > 0 && count_clients(c, true) >= db_cap) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "client connections exceeded (max_db_client_connections)");
		return true;
	}
	if (user_cap > 0 && count_clients(c, false) >= user_cap) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "client connections exceeded (max_user_client_connections)");
		return true;
	}
	return false;
}

static void set_scram_keys(struct pool *pool, const uint8_t *client_key,
                           const uint8_t *server_key)
{
	memcpy(pool->scram_client_key, client_key, sizeof(pool->scram_client_key));
	memcpy(pool->scram_server_key, server_key, sizeof(pool->scram_server_key));
	pool->has_scram_client_key = true;
}

/*
 * SCRAM pass-through: a pool whose login user's auth_file secret is a
 * verifier logs in to PostgreSQL with the ClientKey a client of that user
 * proved. The keys belong to the user, as in PgBouncer, not to the first
 * client of a pool: only a client of the login user itself gives them (a
 * forced user= pool is shared by other users, whose keys are not its keys),
 * every pool of that user takes them, and a new pool starts from them. The
 * latest proof replaces the keys held: it always matches the auth_file's
 * current verifier, so after a password change (and RELOAD) no pool keeps
 * logging in with the old key. O(pools), at login only.
 */
static void keep_scram_keys(struct client *c, struct pool *pool)
{
	struct list *pools = &c->conn.ctx->pools;
	bool proved = c->scram && c->scram->has_client_key &&
	              strcmp(c->user, pool->user_name) == 0;

	for (struct list *l = pools->next; l != pools; l = l->next) {
		struct pool *p = LIST_ENTRY(l, struct pool, node);

		if (strcmp(p->user_name, pool->user_name) != 0)
			continue;
		if (proved)
			set_scram_keys(p, c->scram->client_key, c->scram->server_key);
		else if (!pool->has_scram_client_key && p->has_scram_client_key)
			set_scram_keys(pool, p->scram_client_key, p->scram_server_key);
	}
}

static void authenticated(struct client *c)
{
	struct config *cfg = cfg_of(c);
	const struct db_config *db;
	struct pool *pool;

	if (is_admin_db(c))
		return admin_login(c);
	db = config_find_db(cfg, c->database);
	if (!db) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "no such database: %s",
		            c->database);
		return;
	}
	if (control_is_disabled(c->conn.ctx, c->database)) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "database \"%s\" is disabled", c->database);
		return;
	}
	if (over_client_caps(c, db))
		return;
	pool = pool_get(c->conn.ctx, c->database, c->user, db,
	                config_find_secret(cfg, c->user));
	if (!pool) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return;
	}
	keep_scram_keys(c, pool);
	c->pool = pool;
	pool->client_count++;
	pool->last_active = uv_now(c->conn.ctx->loop);
	c->state = CLIENT_WELCOME;
	pool_wait_welcome(pool, c);
}

void client_welcome(struct client *c)
{
	struct params *welcome = &c->pool->welcome_params;
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_auth(&mb, PG_AUTH_OK, NULL, 0);
	for (struct param *p = welcome->head; p; p = p->next) {
		const char *mine = params_get(&c->params, p->name);

		codec_put_parameter_status(&mb, p->name, mine ? mine : p->value);
	}
	codec_put_backend_key(&mb, c->cancel_pid, c->cancel_key);
	codec_put_ready(&mb, 'I');
	client_login_done(c);
	c->state = CLIENT_IDLE;
	c->idle_since = uv_now(c->conn.ctx->loop);
	send_msgbuf(c, &mb);
	if (!c->conn.closing)
		conn_want_read(&c->conn, true);
}

/* --- authentication --------------------------------------------------- */

/* The auth_file secret of the client's user; NULL for an unknown user and
 * for an empty password, which PgBouncer and PostgreSQL never accept. */
static const char *user_secret(struct client *c)
{
	const char *secret = config_find_secret(cfg_of(c), c->user);

	return secret && *secret ? secret : NULL;
}

/* The per-process key of the mock answers, made at first use; NULL if
 * libcrypto has no random bytes. */
static const uint8_t *mock_key(struct client *c)
{
	struct sluice *ctx = c->conn.ctx;

	if (!ctx->has_mock_key &&
	    auth_random_bytes(ctx->mock_key, sizeof(ctx->mock_key)) == 0)
		ctx->has_mock_key = true;
	return ctx->has_mock_key ? ctx->mock_key : NULL;
}

/* PostgreSQL's answer to any failed password or SCRAM proof: the same for a
 * wrong password, an unknown user and an empty auth_file password. */
static void auth_failed(struct client *c)
{
	client_fail(c, SQLSTATE_INVALID_PASSWORD,
	            "password authentication failed for user \"%s\"", c->user);
}

/*
 * md5 mode asks a user whose secret is a SCRAM verifier for SCRAM (md5
 * cannot check it) and any other user for md5. An unknown user gets SCRAM
 * with the share of verifiers in the auth_file, picked by the mock key so
 * that a name always gets the same answer: no answer says a name is
 * unknown. O(auth_file), as the secret lookup already is.
 */
static bool md5_mode_wants_sasl(struct client *c, const char *secret)
{
	uint8_t digest[AUTH_SCRAM_KEY_LEN];
	const uint8_t *key = mock_key(c);
	uint32_t scram = 0, total = 0, pick;

	if (secret)
		return auth_secret_kind(secret) == AUTH_SECRET_SCRAM;
	for (const struct auth_entry *e = cfg_of(c)->auth_entries; e; e = e->next) {
		total++;
		/* The prefix only: parsing every verifier would cost more. */
		if (strncmp(e->secret, "SCRAM-SHA-256$", 14) == 0)
			scram++;
	}
	if (scram == 0 || !key ||
	    auth_mock_digest(key, "kind", c->user, digest) < 0)
		return false;
	pick = (uint32_t)digest[0] << 24 | (uint32_t)digest[1] << 16 |
	       (uint32_t)digest[2] << 8 | digest[3];
	return pick % total < scram;
}

static void start_sasl(struct client *c)
{
	static const char mechanisms[] = "SCRAM-SHA-256\0";

	c->state = CLIENT_AUTH_SASL;
	send_auth_request(c, PG_AUTH_SASL, mechanisms, sizeof(mechanisms));
}

static void start_auth(struct client *c)
{
	struct config *cfg = cfg_of(c);
	const char *secret = user_secret(c);

	switch (cfg->auth_type) {
	case AUTH_ANY:
		return authenticated(c);
	case AUTH_TRUST:
		if (!config_find_secret(cfg, c->user)) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			            "\"trust\" authentication failed");
			return;
		}
		return authenticated(c);
	case AUTH_PLAIN:
		c->state = CLIENT_AUTH_PASSWORD;
		return send_auth_request(c, PG_AUTH_CLEARTEXT, NULL, 0);
	case AUTH_MD5:
		if (md5_mode_wants_sasl(c, secret))
			return start_sasl(c);
		if (auth_random_bytes(c->md5_salt, sizeof(c->md5_salt)) < 0) {
			client_fail(c, SQLSTATE_INTERNAL_ERROR, "no random bytes");
			return;
		}
		c->state = CLIENT_AUTH_PASSWORD;
		return send_auth_request(c, PG_AUTH_MD5, c->md5_salt, 4);
	case AUTH_SCRAM:
		return start_sasl(c);
	}
}

static bool cleartext_matches(const char *secret, const char *user,
                              const char *password)
{
	char md5[AUTH_MD5_LEN + 1];
	size_t len = strlen(password);

	switch (auth_secret_kind(secret)) {
	case AUTH_SECRET_PLAIN:
		return strlen(secret) == len && CRYPTO_memcmp(secret, password, len) == 0;
	case AUTH_SECRET_MD5:
		auth_md5_secret(password, user, md5);
		return CRYPTO_memcmp(md5, secret, AUTH_MD5_LEN) == 0;
	case AUTH_SECRET_SCRAM:
		return false; /* a verifier cannot check a cleartext password here */
	}
	return false;
}

static void password_message(struct client *c, const uint8_t *body, size_t len)
{
	const char *secret = user_secret(c);
	const char *password = len > 0 && body[len - 1] == 0 ? (const char *)body : NULL;
	bool ok;

	if (!password || !secret)
		ok = false;
	else if (cfg_of(c)->auth_type == AUTH_PLAIN)
		ok = cleartext_matches(secret, c->user, password);
	else
		ok = auth_md5_check(secret, c->user, c->md5_salt, password);
	if (!ok)
		return auth_failed(c);
	authenticated(c);
}

/* The secret a SCRAM exchange runs against: NULL, a mock exchange, when
 * there is none or it is md5, which cannot make SCRAM keys. */
static const char *sasl_secret(struct client *c)
{
	const char *secret = user_secret(c);

	return secret && auth_secret_kind(secret) != AUTH_SECRET_MD5 ? secret : NULL;
}

static void sasl_initial(struct client *c, const uint8_t *body, size_t len)
{
	const char *secret = sasl_secret(c);
	const uint8_t *key = mock_key(c);
	uint8_t salt[AUTH_SCRAM_KEY_LEN]; /* the first AUTH_SCRAM_SALT_LEN used */
	struct codec_reader r;
	const char *mechanism;
	uint32_t data_len;
	const uint8_t *data;
	char *server_first = NULL;

	/* Whatever the secret, the salt a plain password or a mock exchange
	 * shows is the same for a name each time, as a verifier's is. */
	if (!key || auth_mock_digest(key, "salt", c->user, salt) < 0) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "no random bytes");
		return;
	}
	codec_reader_init(&r, body, len);
	mechanism = codec_get_str(&r);
	data_len = codec_get_u32(&r);
	data = codec_get_bytes(&r, data_len);
	if (!c->scram)
		c->scram = calloc(1, sizeof(*c->scram));
	if (!c->scram || !mechanism || !data ||
	    strcmp(mechanism, "SCRAM-SHA-256") != 0 ||
	    auth_scram_server_first(c->scram, secret, salt, (const char *)data,
	                            data_len, &server_first) < 0) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, SASL_FAILED);
		return;
	}
	c->state = CLIENT_AUTH_SASL_FINAL;
	send_auth_request(c, PG_AUTH_SASL_CONTINUE, server_first, strlen(server_first));
	free(server_first);
}

static void sasl_final(struct client *c, const uint8_t *body, size_t len)
{
	char *server_final = NULL;

	/* A mock exchange fails here, as a wrong proof does. */
	if (auth_scram_server_final(c->scram, (const char *)body, len,
	                            &server_final) < 0) {
		free(server_final);
		return auth_failed(c);
	}
	send_auth_request(c, PG_AUTH_SASL_FINAL, server_final, strlen(server_final));
	free(server_final);
	if (c->conn.closing)
		return;
	authenticated(c);
	/* The exchange is over; an idle client should not carry its state
	 * (authenticated() has copied the keys it needs to the pool). */
	auth_scram_server_free(c->scram);
	free(c->scram);
	c->scram = NULL;
}

/* --- startup packet --------------------------------------------------- */

struct startup_walk {
	struct client *client;
	const char *user;    /* inside the packet */
	const char *database;
	char bad[64];        /* the first unsupported parameter */
};

static int take_param(void *arg, const char *key, const char *value)
{
	struct startup_walk *w = arg;
	struct client *c = w->client;
	struct config *cfg = cfg_of(c);

	if (strcmp(key, "user") == 0) {
		w->user = value;
	} else if (strcmp(key, "database") == 0) {
		w->database = value;
	} else if (params_is_tracked(cfg, key)) {
		params_set(&c->params, key, value);
	} else if (!config_list_contains(cfg->ignore_startup_parameters, key)) {
		snprintf(w->bad, sizeof(w->bad), "%s", key);
		return 1;
	}
	return 0;
}

static void add_host_to_app_name(struct client *c)
{
	const char *app = params_get(&c->params, "application_name");
	char buf[256];
	char host[64];
	int port;

	if (!cfg_of(c)->application_name_add_host)
		return;
	client_host_port(c, host, sizeof(host), &port);
	snprintf(buf, sizeof(buf), "%s - %s:%d", app ? app : "", host, port);
	params_set(&c->params, "application_name", buf);
}

/* user and database in one allocation: one malloc header per client less. */
static int keep_names(struct client *c, const char *user, const char *database)
{
	size_t user_size = strlen(user) + 1;
	size_t db_size = strlen(database) + 1;
	char *block = malloc(user_size + db_size);

	if (!block)
		return -1;
	memcpy(block, user, user_size);
	memcpy(block + user_size, database, db_size);
	free(c->user);
	c->user = block;
	c->database = block + user_size;
	return 0;
}

static void startup_message(struct client *c, const uint8_t *body, size_t len)
{
	struct startup_walk w = { .client = c };
	int rc = codec_startup_params(body, len, take_param, &w);
	char db_esc[LOG_ESCAPED_NAME], user_esc[LOG_ESCAPED_NAME];

	/* Kept before any refusal, so the log line names who was refused. */
	if (!w.database || !*w.database)
		w.database = w.user;
	if (w.user && *w.user && keep_names(c, w.user, w.database) < 0) {
		client_fail(c, SQLSTATE_OUT_OF_MEMORY, "out of memory");
		return;
	}
	if (rc == 1) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "unsupported startup parameter: %s", w.bad);
		return;
	}
	if (rc != CODEC_OK) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed startup packet");
		return;
	}
	if (!c->user) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "no username supplied");
		return;
	}
	add_host_to_app_name(c);
	if (cfg_of(c)->log_connections)
		log_info(&c->conn, "login attempt: db=%s user=%s tls=no",
		         log_escape(c->database, db_esc, sizeof(db_esc)),
		         log_escape(c->user, user_esc, sizeof(user_esc)));
	start_auth(c);
}

static void cancel_message(struct client *c, const uint8_t *body, size_t len)
{
	struct codec_reader r;
	struct client *target;
	uint32_t pid;
	uint32_t key;

	codec_reader_init(&r, body, len);
	pid = codec_get_u32(&r);
	key = codec_get_u32(&r);
	target = client_find_by_cancel_key(c->conn.ctx, pid, key);
	/* Only the server linked to that client right now, else nothing. */
	if (target && target->server && target->server->state == SERVER_ACTIVE)
		cancel_send(target->server);
	client_close(c, "cancel request");
}

/*
 * SSLRequest and GSSENCRequest are answered 'N' (TLS comes in a later
 * release), each at most once per connection as PostgreSQL allows: a client
 * repeating them could otherwise make sluice queue answers without end.
 */
static void encryption_request(struct client *c, uint32_t code)
{
	bool *done = code == PG_SSL_REQUEST ? &c->ssl_requested
	                                    : &c->gssenc_requested;

	if (*done) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "duplicate %s",
		            code == PG_SSL_REQUEST ? "SSLRequest" : "GSSENCRequest");
		return;
	}
	*done = true;
	conn_queue(&c->conn, "N", 1);
	if (conn_flush(&c->conn, &c->conn) < 0)
		client_close(c, "write failed");
}

/* One startup-phase packet whole in data; returns bytes used or 0. */
static size_t startup_packet(struct client *c, const uint8_t *data, size_t len)
{
	uint32_t plen;
	uint32_t code;
	enum codec_result rc = codec_read_startup(data, len, &plen, &code);

	if (rc == CODEC_INVALID) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "bad startup packet length");
		return len;
	}
	if (rc == CODEC_NEED_MORE || len < plen) {
		conn_need(&c->conn, rc == CODEC_OK ? plen : 8);
		return 0;
	}
	conn_need(&c->conn, 0);
	if (code == PG_SSL_REQUEST || code == PG_GSSENC_REQUEST) {
		encryption_request(c, code);
	} else if (code == PG_CANCEL_REQUEST && plen != 16) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "invalid length of cancel request");
	} else if (code == PG_CANCEL_REQUEST) {
		cancel_message(c, data + 8, plen - 8);
	} else if (code >> 16 == 3) {
		startup_message(c, data + 8, plen - 8);
	} else {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "unsupported protocol version %u.%u", code >> 16,
		            code & 0xffff);
	}
	return plen;
}

/* One authentication message ('p') whole in data; returns bytes used or 0. */
static size_t auth_packet(struct client *c, const uint8_t *data, size_t len)
{
	struct pg_header h;
	enum codec_result rc = codec_read_header(data, len, 65536, &h);
	const uint8_t *body = data + PG_HEADER_LEN;

	if (rc == CODEC_INVALID || (rc == CODEC_OK && h.type != PG_MSG_PASSWORD)) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "expected a password message during authentication");
		return len;
	}
	if (rc == CODEC_NEED_MORE || len < (size_t)h.len + 1) {
		conn_need(&c->conn, rc == CODEC_OK ? h.len + 1 : 0);
		return 0;
	}
	conn_need(&c->conn, 0);
	if (c->state == CLIENT_AUTH_PASSWORD)
		password_message(c, body, h.len - 4);
	else if (c->state == CLIENT_AUTH_SASL)
		sasl_initial(c, body, h.len - 4);
	else
		sasl_final(c, body, h.len - 4);
	return (size_t)h.len + 1;
}

size_t login_data(struct client *c, const uint8_t *data, size_t len)
{
	size_t pos = 0;

	while (pos < len && !c->conn.closing) {
		size_t n;

		if (c->state == CLIENT_STARTUP)
			n = startup_packet(c, data + pos, len - pos);
		else if (c->state == CLIENT_AUTH_PASSWORD || c->state == CLIENT_AUTH_SASL ||
		         c->state == CLIENT_AUTH_SASL_FINAL)
			n = auth_packet(c, data + pos, len - pos);
		else
			break;
		if (n == 0)
			break;
		pos += n;
	}
	return pos;
}
