/*
 * pool.h - server connections pooled per (database, user).
 */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "list.h"
#include "params.h"

struct sluice;
struct client;
struct server;
struct pg_error_fields;

/* Where and how the pool's servers log in, copied from the config. */
struct pool_target {
	char *host;               /* NULL: default unix dir; '/': unix dir */
	int port;
	char *dbname;             /* server database */
	char *user;               /* server login user */
	char *password;           /* plain, md5 or SCRAM secret; NULL: none */
	char *connect_query;
	char *application_name;
	char *client_encoding;
	char *datestyle;
	char *timezone;
};

/* The settings that govern a pool and its clients, resolved from the
 * [users] entry, then the [databases] entry, then the main section. */
struct pool_limits {
	int pool_size;
	int min_pool_size;
	int reserve_pool;
	int max_db_connections;       /* 0: unlimited */
	int max_user_connections;     /* 0: unlimited */
	uint64_t query_timeout;       /* ms, 0: off (as every one below) */
	uint64_t query_wait_timeout;
	uint64_t idle_transaction_timeout;
	uint64_t transaction_timeout;
	uint64_t client_idle_timeout;
	uint64_t server_lifetime;
	uint64_t idle_transaction_log_timeout;
};

/* What a timeout firing is counted as, per pool. */
enum pool_timeout_kind {
	TIMEOUT_QUERY_WAIT,
	TIMEOUT_QUERY,
	TIMEOUT_CANCEL_WAIT,
	TIMEOUT_IDLE_TRANSACTION,
	TIMEOUT_TRANSACTION,
	TIMEOUT_CLIENT_IDLE,
	TIMEOUT_SERVER_IDLE,
	TIMEOUT_SERVER_LIFETIME,
	TIMEOUT_SERVER_CONNECT,
	TIMEOUT_KINDS,
};

struct stats_db;

struct pool {
	struct list node;          /* on ctx->pools */
	struct sluice *ctx;
	char *db_name;             /* the name clients ask for */
	char *user_name;           /* the client user */
	struct stats_db *stats_db; /* its database's row in stats.c, found once */
	struct pool_target target;
	enum pool_mode pool_mode;
	struct pool_limits limits;
	bool autodb;               /* made from the "*" entry */
	uint32_t generation;       /* bumped by RECONNECT and changed targets */
	int client_count;          /* logged-in clients of this pool */
	uint64_t last_active;      /* uv_now() when a client last left or came */
	uint64_t login_failed_at;  /* uv_now() of the last failed login, 0: none */
	uint64_t timeouts[TIMEOUT_KINDS]; /* firings, for the admin console */
	uint64_t leak_episodes;    /* idle-in-transaction episodes logged */
	uint64_t client_parses;    /* named Parse messages from clients */
	uint64_t server_parses;    /* Parse messages sluice sent to servers */
	uint64_t prep_id;          /* its key in prepared.c's registry, 0: none */
	struct list idle;          /* struct server, SERVER_IDLE, oldest first */
	struct list used;          /* servers linked, busy inside, or logging in */
	struct list waiting;       /* struct client, CLIENT_WAITING, FIFO */
	struct list welcome;       /* clients in login waiting for params */
	int server_count;          /* every server of the pool, any state */
	int server_structs;        /* servers not freed yet, closing ones too:
	                              their close reads the pool, so it lives */
	struct params welcome_params; /* what the first server reported */
	struct params defaults;    /* the tracked ones of welcome_params */
	bool has_welcome;
	uint8_t scram_client_key[32]; /* from a client's SCRAM proof, for */
	uint8_t scram_server_key[32]; /* logging in with a SCRAM secret */
	bool has_scram_client_key;
	char *login_error;         /* last server login error, NULL: none */
	uint64_t xact_count;       /* transactions done (releases) */
	uint64_t query_count;      /* ReadyForQuery seen */
	uint64_t wait_count;       /* clients that had to queue */
};

/*
 * The pool for (db_name, user_name), created from db on first use.
 * client_secret is the auth_file secret of the client's user, used when the
 * database entry names no user/password. NULL on allocation failure.
 */
struct pool *pool_get(struct sluice *ctx, const char *db_name,
                      const char *user_name, const struct db_config *db,
                      const char *client_secret);

/* A logged-in client waits for the pool's server parameters; it gets
 * client_welcome() (or client_fail) once a server has logged in. */
void pool_wait_welcome(struct pool *pool, struct client *client);

/* Opens servers the pool needs now: for waiting clients within pool_size
 * (reserve_pool after reserve_pool_timeout) and the db/user budgets, and up
 * to min_pool_size; never within server_login_retry of a failed login. */
void pool_launch_needed(struct pool *pool);

/* True while a failed login keeps new ones off (server_login_retry). */
bool pool_login_backoff(const struct pool *pool);

/* A client has a query: gives it a server now or queues it (FIFO). */
void pool_acquire(struct pool *pool, struct client *client);

/* The client stops waiting (it disconnected). */
void pool_cancel_wait(struct pool *pool, struct client *client);

/* A clean server (ReadyForQuery 'I', nothing in flight, no client) goes
 * to the first waiting client or to the idle list. */
void pool_release(struct pool *pool, struct server *server);

/* A server finished logging in; params are its ParameterStatus values. */
void pool_server_ready(struct pool *pool, struct server *server);

/* A server failed to log in (or its connect failed): err says why. */
void pool_server_failed(struct pool *pool, const char *sqlstate,
                        const char *message);

/* The server is gone (closed): drop it from the pool's lists and counts. */
void pool_server_gone(struct pool *pool, struct server *server);

/* The config changed (reload, SET): takes the new limits and mode; a new
 * server target starts a new generation. */
void pool_apply_config(struct pool *pool);

/* True when PAUSE (of the pool, or of everything) holds it. */
bool pool_is_paused(const struct pool *pool);

/* Frees a pool that has no clients and no servers, closing ones included
 * (autodb_idle_timeout). */
void pool_free(struct pool *pool);

/* Frees every pool (at exit; their servers are closed already). */
void pool_free_all(struct sluice *ctx);

#endif
