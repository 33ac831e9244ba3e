/*
 * cancel.h - forwarding CancelRequests to the server a client is linked to.
 */
#ifndef SLUICE_CANCEL_H
#define SLUICE_CANCEL_H

struct server;
struct sluice;

/* Sends a CancelRequest for server's current query over a new connection.
 * The server counts it in cancels_in_flight until PostgreSQL closes that
 * connection; then server_cancel_finished(server) runs. */
void cancel_send(struct server *server);

/* Shutdown: closes every cancel connection still open. */
void cancel_close_all(struct sluice *ctx);

/* The server is closing: its cancels finish without telling it. */
void cancel_forget_server(struct server *server);

#endif
