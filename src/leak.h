/*
 * leak.h - the leak detector: clients idle inside a transaction, named with
 * the last statement they ran.
 */
#ifndef SLUICE_LEAK_H
#define SLUICE_LEAK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct msgbuf;
struct sluice;

/* A prepared statement or portal and the query text behind it (cut). */
struct leak_text {
	char *name;
	char *text;
	bool cut;                  /* text is shorter than the statement */
	struct leak_text *next;
};

/* What the detector keeps per client. */
struct leak_state {
	char *last_statement;      /* text of the last Query/Execute, cut */
	bool last_truncated;       /* the text was cut */
	struct leak_text *statements; /* Parse name -> text, newest first */
	struct leak_text *portals;    /* Bind portal -> statement text */
	uint64_t episode_since;    /* idle_xact_since of a logged episode, 0: none */
	uint64_t resumed_idle_ms;  /* idle time when the client spoke again */
	bool resumed;              /* sent something; the end waits for RFQ */
};

/* Bytes of a Query/Parse/Bind/Execute/Close body the detector wants to see
 * before the message streams on (its prefix is enough). */
size_t leak_wanted_prefix(const struct client *client);

/* The client sends a message of type with body (maybe only a prefix of
 * it, body_len bytes of full_len). Records statement texts. */
void leak_observe(struct client *client, uint8_t type, const uint8_t *body,
                  size_t body_len, size_t full_len);

/* The client sent something while an episode was logged. */
void leak_client_spoke(struct client *client, uint64_t now);

/* ReadyForQuery with nothing in flight: ends a resumed episode. */
void leak_ready(struct client *client, char status);

/* The client goes away (why: "disconnect", "idle_transaction_timeout"). */
void leak_client_gone(struct client *client, const char *why);

/* Housekeeping: logs a client past idle_transaction_log_timeout. */
void leak_check(struct client *client, uint64_t now);

/* Housekeeping: the per-pool pinned-servers line every stats_period. */
void leak_stats_tick(struct sluice *ctx, uint64_t now);

/* Admin console rows. */
void leak_show_leaks(struct sluice *ctx, struct msgbuf *mb);
void leak_show_stats(struct sluice *ctx, struct msgbuf *mb);

/* Frees the client's detector state. */
void leak_free(struct client *client);

#endif
