/*
 * cancel.h - forwarding CancelRequests to the server a client is linked to.
 */
#ifndef SLUICE_CANCEL_H
#define SLUICE_CANCEL_H

struct server;

/* Sends a CancelRequest for server's current query over a new connection.
 * The server counts it in cancels_in_flight until PostgreSQL closes that
 * connection; then server_cancel_finished(server) runs. */
void cancel_send(struct server *server);

/* The server is closing: its cancels finish without telling it. */
void cancel_forget_server(struct server *server);

#endif
