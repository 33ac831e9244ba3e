/*
 * conn.h - socket bytes for one client or server connection.
 *
 * A conn reads into the loop's shared chunk, so an idle connection holds no
 * buffer at all; bytes its owner could not use yet (a partial message, a
 * query waiting for a server) are copied into a small held buffer. Output
 * is gathered per processing pass and written with uv_try_write; only what
 * the kernel does not take at once is handed to uv_write, and while such a
 * write is pending the conn that produced the bytes stops reading
 * (back-pressure).
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <uv.h>

#include "list.h"

struct sluice;
struct config;
struct conn;
struct msgbuf;

struct conn_ops {
	/*
	 * Bytes arrived (held bytes first, then new ones, in one span). Returns
	 * how many were used; the rest is held and offered again with more.
	 * The owner may close the conn inside; the return value is then ignored.
	 */
	size_t (*on_data)(struct conn *conn, const uint8_t *data, size_t len);
	/* End of stream or a socket error (status < 0): the owner must close. */
	void (*on_eof)(struct conn *conn, int status);
	/* The handle is closed and no write is pending: the owner frees now. */
	void (*on_closed)(struct conn *conn);
	/* Writes the identity log lines start with ("C-7: db/user@addr:port");
	 * made when a line is written, so idle connections keep no copy. */
	void (*describe)(const struct conn *conn, char *buf, size_t len);
};

struct conn {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;                        /* the libuv handle; h.handle.data = conn */
	struct sluice *ctx;
	const struct conn_ops *ops;
	void *owner;                /* the struct client or struct server */
	uint8_t *held;              /* bytes read but not used yet, malloc'd */
	uint8_t *out;               /* output of this pass, malloc'd */
	struct conn *paused_peer;   /* reader we paused until our writes drain */
	struct conn *paused_by;     /* the conn whose writes paused us */
	struct list ready_node;     /* on ctx->ready when held bytes wait */
	uint32_t held_len;
	uint32_t held_cap;
	uint32_t need;              /* bytes the owner needs whole, 0: any */
	uint32_t out_len;
	uint32_t out_cap;
	uint32_t writes_pending;    /* uv_write requests not yet called back */
	uint32_t max_packet;        /* limit for a held message (max_packet_size) */
	int out_error;              /* out of memory or past CONN_MAX_OUT while
	                               queuing: output dropped, conn_flush
	                               returns this */
	bool want_read;             /* the owner wants bytes */
	bool answer_paused;         /* not reading until our own answers drain */
	bool reading;               /* uv_read_start is in effect */
	bool closing;               /* uv_close called or close after flush */
	bool close_after_flush;     /* close once writes_pending drops to 0 */
	bool is_unix;               /* unix socket: no address, no keepalive */
	bool console;               /* admin console: SUSPEND does not stop it */
};

/* Output one processing pass may queue on a conn. Forwarding queues at most
 * a read chunk or a message held whole; this much means a peer made sluice
 * amplify, and the conn is closed by its owner. Keeps the 32-bit lengths
 * from wrapping. */
#define CONN_MAX_OUT (64u * 1024 * 1024)

/* Sets up a conn around a handle that the caller has uv_*_init'ed. */
void conn_init(struct conn *conn, struct sluice *ctx, const struct conn_ops *ops,
               void *owner, bool is_unix);

/* The identity prefix for log lines, written into buf. */
void conn_describe(const struct conn *conn, char *buf, size_t len);

/* Turns reading on or off as the owner's state wants. Turning it on offers
 * held bytes again on the next loop tick. */
void conn_want_read(struct conn *conn, bool want);

/* Re-applies the reading rule after ctx->suspended changed. */
void conn_refresh_reading(struct conn *conn);

/*
 * True while the conn takes bytes: its owner wants them and no pending
 * write holds it back. An owner that answers several messages of one read
 * itself stops at the first false and leaves the rest held.
 */
bool conn_may_read(const struct conn *conn);

/*
 * Tells the owner how many bytes the message it waits for has in all, so
 * the held buffer can grow for it; 0 resets. Returns -1 if more than
 * max_packet would be needed.
 */
int conn_need(struct conn *conn, uint32_t len);

/* Appends bytes to this pass's output; conn_flush sends them. Out of
 * memory or past CONN_MAX_OUT, the output is dropped and the next
 * conn_flush fails (UV_ENOMEM, UV_ENOBUFS), so that the owner closes the
 * conn the normal way. */
void conn_queue(struct conn *conn, const void *data, size_t len);

/* Appends a built message buffer's bytes (not taking ownership). */
void conn_queue_msgbuf(struct conn *conn, const struct msgbuf *mb);

/*
 * Sends the queued output. If some stays pending in the kernel's stead,
 * producer (may be NULL) stops reading until it drains; producer == conn
 * for answers sluice wrote itself, so a peer that sends without reading
 * cannot make it buffer without bound. Returns 0 or a negative libuv
 * error (UV_EPIPE, UV_ECONNRESET, UV_ENOMEM...): the owner should then
 * close the conn through its own close path.
 */
int conn_flush(struct conn *conn, struct conn *producer);

/* Closes now; pending writes are dropped. Safe to call twice. */
void conn_close(struct conn *conn);

/* Stops reading, sends what is queued, then closes. */
void conn_close_after_flush(struct conn *conn);

/* Frees the spare output buffers (at exit). */
void conn_free_spares(struct sluice *ctx);

/* Runs on ctx->ready: offers held bytes to owners that want them. */
void conn_run_ready(struct sluice *ctx);

/* TCP_NODELAY, and keepalive with tcp_keepidle/intvl/cnt and
 * tcp_user_timeout as configured; nothing for unix sockets. */
void conn_set_tcp_options(struct conn *conn, const struct config *cfg);

/* A TCP peer's address in 28 bytes; its text is made when needed. */
union peer_addr {
	struct sockaddr sa;        /* sa_family AF_UNSPEC: unknown or unix */
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
};

/* The peer of a TCP conn (AF_UNSPEC if the kernel does not say). */
void conn_peer_addr(struct conn *conn, union peer_addr *out);

/* The host of an AF_INET/AF_INET6 address as text, and its port; "?" and
 * 0 for any other family. */
void sockaddr_text(const struct sockaddr *sa, char *buf, size_t len, int *port);

#endif
