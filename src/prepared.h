/*
 * prepared.h - protocol-level named prepared statements in transaction and
 * statement mode (max_prepared_statements), as PgBouncer 1.21.
 */
#ifndef SLUICE_PREPARED_H
#define SLUICE_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct msgbuf;
struct server;
struct sluice;
struct prep_stmt;
struct prep_client;

/* A response of the server that must be changed on its way to the client,
 * in the order the requests went out. */
struct prep_pending {
	uint8_t kind;              /* PG_MSG_PARSE or PG_MSG_CLOSE sent */
	bool swallow;              /* sluice's own: the client must not see it */
	struct prep_stmt *stmt;    /* a Parse of sluice's name, else NULL; a
	                              reference: it lives until the answer */
	char *client_name;         /* the client's Parse: its name, forgotten
	                              if the server never accepts it */
	uint64_t parse_id;         /* which Parse of the server this is */
	uint64_t sync_seq;         /* Syncs sent before it */
};

/* What a server has prepared, and the answers still to come. */
struct prep_server {
	struct prep_entry *lru;    /* most recently used first */
	struct prep_entry *lru_tail;
	uint32_t count;            /* entries, <= max_prepared_statements */
	struct prep_pending *pending; /* a ring of pending answers */
	uint32_t pending_head;
	uint32_t pending_len;
	uint32_t pending_cap;
	uint64_t syncs_sent;       /* ReadyForQuery owed, ever */
	uint64_t syncs_answered;   /* ReadyForQuery received, ever */
	uint64_t parses_sent;      /* Parses of sluice's names, ever */
	bool stalled;              /* the client waits for an earlier batch's
	                              answer before its next message */
	bool uncounted;            /* a Query went inside an extended batch: if
	                              the batch fails PostgreSQL skips it without
	                              a ReadyForQuery, so waiting could hang */
	char rename_from[48];      /* a duplicate Parse: its error names ... */
	char *rename_to;           /* ... this client name instead */
	/* The last client Parses that failed: a Bind of one pipelined behind
	 * it gets PostgreSQL's "does not exist" with the client's name. */
	struct {
		char server_name[48];
		char name[64];
	} recent[4];
	uint32_t recent_next;
};

/* True when the client's pool rewrites named statements. */
bool prepared_active(const struct client *client);

/* Bytes of a message of type (whole bytes in all) the client side needs
 * before prepared_forward can handle it; 0 when it does not look. */
size_t prepared_wanted(const struct client *client, uint8_t type, size_t whole);

/*
 * The client sends a message (avail bytes of it at msg, whole in all) to
 * its linked server. Returns how many of its bytes sluice replaced with
 * its own (already queued to the server): the caller forwards the rest
 * unchanged. 0: forward it all unchanged. The client may be failed inside
 * (a statement past the bounds, a Query that touches sluice's names): the
 * caller checks client->conn.closing.
 */
size_t prepared_forward(struct client *client, const uint8_t *msg, size_t avail,
                        size_t whole);

/*
 * A whole message from a client that has no server (CLIENT_IDLE): a named
 * Parse of a statement a server has accepted before, a Close of a
 * statement, and the Flush/Sync that end such a batch are answered here.
 * Returns the bytes used (whole), or 0 when a server is needed.
 */
size_t prepared_local(struct client *client, const uint8_t *msg, size_t whole);

/*
 * Before prepared_forward: true if the message (avail bytes, at least
 * prepared_wanted) must wait until the server has answered an earlier
 * batch (a Bind or Describe of a statement sluice prepared there, or a
 * duplicate Parse of a name whose Parse is not confirmed yet).
 * The caller stops reading the client; sluice reads it again when the
 * answer comes.
 */
bool prepared_must_wait(struct client *client, const uint8_t *msg, size_t avail);

/* The client sent a Sync, Query or FunctionCall (a ReadyForQuery owed). */
void prepared_sync_sent(struct server *server);

/* True if a server message of type must be seen whole by
 * prepared_response. */
bool prepared_wants_response(const struct server *server, uint8_t type);

/* A whole server message; true if it was swallowed or replaced (then the
 * caller must not forward it). */
bool prepared_response(struct server *server, const uint8_t *msg, size_t len);

/* ReadyForQuery from the linked server: a batch is over. */
void prepared_ready(struct server *server);

/* The server's statements are gone (its reset query is DISCARD ALL or
 * DEALLOCATE ALL, with no client and nothing in flight). */
void prepared_server_clear(struct server *server);


/* SHOW PREPARED_STATS (sluice's own): per pool, named Parses from
 * clients, Parses sent to servers, and statements prepared on servers. */
void prepared_show_stats(struct sluice *ctx, struct msgbuf *mb);

void prepared_server_free(struct server *server);
void prepared_client_free(struct client *client);
void prepared_registry_free(struct sluice *ctx);

#endif
