/*
 * server.h - one connection from sluice to PostgreSQL.
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "conn.h"
#include "list.h"
#include "params.h"
#include "prepared.h"

struct client;
struct pool;

enum server_state {
	SERVER_CONNECTING, /* socket connect in progress; on pool->used */
	SERVER_LOGIN,      /* startup sent, authenticating; on pool->used */
	SERVER_IDLE,       /* logged in, clean, no client; on pool->idle */
	SERVER_INTERNAL,   /* running sluice's own query; on pool->used */
	SERVER_ACTIVE,     /* linked to a client; on pool->used */
	SERVER_CANCELING,  /* no client; a cancel request for it is still on
	                      its way, so it is not reused yet; on pool->used */
};

/* What follows when an internal query is answered. */
enum server_next {
	SERVER_NEXT_RELEASE, /* back to the pool (reset, rollback, connect_query) */
	SERVER_NEXT_ASSIGN,  /* go on preparing for server->client (after check) */
	SERVER_NEXT_LINK,    /* link to server->client (after parameter sync) */
};

struct server {
	struct conn conn;
	struct list node;          /* on one of pool's server lists */
	struct pool *pool;
	enum server_state state;
	enum server_next next;     /* SERVER_INTERNAL: what comes after */
	uint64_t id;               /* S-<n> */
	struct client *client;     /* linked, or being prepared for */
	uint32_t backend_pid;      /* from BackendKeyData, for cancels */
	uint32_t backend_key;
	struct params params;      /* reported by ParameterStatus */
	char status;               /* last ReadyForQuery: 'I', 'T' or 'E' */
	uint32_t expected_ready;   /* ReadyForQuery still owed to the client */
	uint32_t forward_left;     /* body bytes of a message passing through */
	bool internal_failed;      /* the internal query got an ErrorResponse */
	uint64_t last_used;        /* uv_now() when last released */
	struct scram_client scram; /* SCRAM login state */
	bool needs_reset;          /* run server_reset_query before reuse */
	uint64_t connect_time;     /* uv_now() at launch */
	uint32_t generation;       /* pool->generation at launch */
	uint64_t lifetime;         /* server_lifetime, spread per server; 0: off */
	int cancels_in_flight;     /* cancel connections not yet closed */
	uint64_t cancel_deadline;  /* cancel_wait_timeout after query_timeout */
	struct prep_server prep;   /* its prepared statements, pending answers */
	uv_getaddrinfo_t *resolving; /* SERVER_CONNECTING to a host name */
	uv_connect_t connect_req;  /* SERVER_CONNECTING */
	struct sockaddr_storage addr; /* where it connected, for cancels */
};

/* Opens a new server connection for pool (it joins pool->used). 0 or -1. */
int server_launch(struct pool *pool);

/*
 * Prepares an idle server for client: runs server_check_query if the server
 * idled past server_check_delay, syncs tracked parameters, then links
 * (client_linked). The server must be off the pool's lists' idle state.
 */
void server_assign(struct server *server, struct client *client);

/* Puts a clean server on its pool's idle list. */
void server_set_idle(struct server *server);

/* The client forwarded a message that owes a ReadyForQuery; returns how
 * many are owed now. */
uint32_t server_expect_ready(struct server *server);

/* The linked client went away: clean up the server (release, roll back or
 * close, never return it dirty). */
void server_client_gone(struct server *server, bool client_mid_message,
                        bool batch_open);

/* The last cancel request for server is done: reuse it if it waits. */
void server_cancel_finished(struct server *server);

/* Closes the server; the pool forgets it. Safe twice. */
void server_close(struct server *server, const char *reason);

/* A login that took longer than server_connect_timeout: fails it. */
void server_connect_timed_out(struct server *server);

/* The linked client's query ran past query_timeout and its cancel past
 * cancel_wait_timeout: closes the server, the client gets FATAL. */
void server_cancel_timed_out(struct server *server);

#endif
