/*
 * client.h - one application connection to sluice.
 */
#ifndef SLUICE_CLIENT_H
#define SLUICE_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "conn.h"
#include "leak.h"
#include "prepared.h"
#include "list.h"
#include "params.h"

struct sluice;
struct pool;

/* What a console client's answer waits for (PAUSE, WAIT_CLOSE). */
enum admin_wait {
	ADMIN_WAIT_NONE,
	ADMIN_WAIT_PAUSE,
	ADMIN_WAIT_CLOSE,
};
struct server;

enum client_state {
	CLIENT_STARTUP,        /* reading the startup packet */
	CLIENT_AUTH_PASSWORD,  /* asked for a cleartext or md5 password */
	CLIENT_AUTH_SASL,      /* asked for SASLInitialResponse */
	CLIENT_AUTH_SASL_FINAL,/* sent SASLContinue, wants SASLResponse */
	CLIENT_WELCOME,        /* authenticated; on pool->welcome */
	CLIENT_IDLE,           /* no server, reading the next message */
	CLIENT_WAITING,        /* has a query; on pool->waiting or being assigned */
	CLIENT_ACTIVE,         /* linked to a server until released */
	CLIENT_ADMIN,          /* logged in to the admin console */
};

/* Fields are grouped by size so the struct has no holes: every idle
 * client costs its size (see doc/benchmark.md, idle connections). */
struct client {
	struct conn conn;          /* conn.ctx is the sluice context */
	struct list node;          /* on ctx->clients */
	struct list pool_node;     /* on pool->waiting or pool->welcome */
	struct pool *pool;
	struct server *server;     /* linked or being prepared */
	uint64_t id;               /* C-<n> */
	char *user;                /* from the startup packet; NULL before it */
	char *database;            /* points into the block of user */
	struct params params;      /* tracked parameters as the client set them */
	struct scram_server *scram; /* during a SCRAM exchange only */
	struct leak_state *leak;   /* last statement and episode; NULL: none yet */
	struct prep_client *prep;  /* its named statements, NULL: none */
	char *admin_wait_db;       /* console: PAUSE/WAIT_CLOSE of this db, NULL: all */
	uint64_t connect_time;     /* uv_now() at accept */
	/* Deadlines count from these uv_now() stamps; 0 means "not now". */
	uint64_t wait_start;       /* queued for a server (query_wait_timeout) */
	uint64_t idle_since;       /* unlinked and idle (client_idle_timeout) */
	uint64_t xact_start;       /* first request of the open transaction */
	uint64_t query_start;      /* oldest request still unanswered */
	uint64_t idle_xact_since;  /* ReadyForQuery 'T'/'E', nothing sent since */
	enum client_state state;
	enum admin_wait admin_wait; /* console: an answer that waits */
	uint32_t cancel_pid;       /* BackendKeyData sluice gave the client */
	uint32_t cancel_key;
	uint32_t forward_left;     /* body bytes of a message passing through */
	uint8_t md5_salt[4];
	union peer_addr peer;      /* its address (AF_UNSPEC on the unix socket) */
	bool is_admin_user;        /* in admin_users (else stats_users only) */
	bool ssl_requested;        /* SSLRequest answered: a second is refused */
	bool gssenc_requested;     /* GSSENCRequest answered, likewise */
	bool batch_open;           /* extended messages sent since the last Sync */
	bool wait_notified;        /* query_wait_notify sent for this wait */
	bool query_timed_out;      /* query_timeout fired, cancel sent */
	bool local_batch;          /* sluice answered this batch so far itself */
};

/* True while the client logs in (startup, auth, waiting for the welcome). */
bool client_logging_in(const struct client *client);

/* The login is over (welcome sent, or the console entered). */
void client_login_done(struct client *client);

/* A new client on ctx with its handle initialised (tcp or unix) so the
 * listener can accept into it; NULL on allocation failure. */
struct client *client_new(struct sluice *ctx, bool is_unix);

/* The listener accepted into client: count it and start reading; past
 * max_client_conn it gets the error and is closed at once. */
void client_start(struct client *client);

/* Frees a client whose accept failed (handle initialised, not started). */
void client_discard(struct client *client);

/* The pool has server parameters: finish the login (AuthenticationOk,
 * ParameterStatus, BackendKeyData, ReadyForQuery). */
void client_welcome(struct client *client);

/* The server is ready for the client's messages. */
void client_linked(struct client *client);

/* The linked server sent ReadyForQuery with status; done when nothing
 * else is in flight. Keeps the query and transaction clocks. */
void client_ready(struct client *client, char status, bool done);

/* The server is released (transaction mode) or gone: back to idle. */
void client_unlinked(struct client *client);

/* Sends FATAL sqlstate + message, logs, closes. Returns 0 so callers can
 * return its result. */
int client_fail(struct client *client, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sends bytes from the server (or sluice) to the client, in order. */
void client_send(struct client *client, const void *data, size_t len);

/* Closes without a message (peer gone). Safe twice. */
void client_close(struct client *client, const char *reason);

/* A tracked parameter as the client sees it: its own value, else the
 * pool's default; NULL if neither. */
const char *client_param(const struct client *client, const char *name);

/* The linked server reported name = value (tracked): the client's view. */
void client_param_reported(struct client *client, const char *name,
                           const char *value);

/* The client's host as text ("unix" on the unix socket) and its port. */
void client_host_port(const struct client *client, char *host, size_t len,
                      int *port);

/* Finds the client a CancelRequest's key names, or NULL. */
struct client *client_find_by_cancel_key(struct sluice *ctx, uint32_t pid,
                                         uint32_t key);

#endif
