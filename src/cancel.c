/*
 * cancel.c - CancelRequests on their way to PostgreSQL.
 *
 * Owns the short-lived connections that carry them (on ctx->cancels) and
 * tells server.c when the last one for a server is done.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cancel.h"
#include "codec.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"

/*
 * A short-lived connection that carries one CancelRequest. PostgreSQL closes
 * it once the cancel is delivered; until then the server it is for is not
 * handed to another client (SERVER_CANCELING), so a late cancel can only
 * hit the query it was meant for.
 */
struct cancel_conn {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	uv_connect_t connect_req;
	uv_write_t write_req;
	struct msgbuf packet;
	struct server *server;    /* NULL once that server is closed */
	struct list node;         /* on ctx->cancels */
	char discard[64];         /* read buffer: PostgreSQL sends nothing */
};

static void cancel_closed_cb(uv_handle_t *handle)
{
	struct cancel_conn *cc = handle->data;
	struct server *s = cc->server;

	list_remove(&cc->node);
	msgbuf_free(&cc->packet);
	free(cc);
	if (s)
		server_cancel_finished(s);
}

static void cancel_close(struct cancel_conn *cc)
{
	if (!uv_is_closing(&cc->h.handle))
		uv_close(&cc->h.handle, cancel_closed_cb);
}

static void cancel_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct cancel_conn *cc = handle->data;

	(void)suggested;
	*buf = uv_buf_init(cc->discard, sizeof(cc->discard));
}

static void cancel_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	if (nread < 0)
		cancel_close(stream->data);
}

static void cancel_written_cb(uv_write_t *req, int status)
{
	struct cancel_conn *cc = req->data;

	if (status < 0 ||
	    uv_read_start(&cc->h.stream, cancel_alloc_cb, cancel_read_cb) < 0)
		cancel_close(cc);
}

static void cancel_connected_cb(uv_connect_t *req, int status)
{
	struct cancel_conn *cc = req->data;
	uv_buf_t buf = uv_buf_init((char *)cc->packet.data, (unsigned)cc->packet.len);

	if (status < 0 ||
	    uv_write(&cc->write_req, &cc->h.stream, &buf, 1, cancel_written_cb) < 0)
		cancel_close(cc);
}

static int cancel_connect(struct server *s, struct cancel_conn *cc)
{
	const struct pool_target *t = &s->pool->target;
	uv_loop_t *loop = s->pool->ctx->loop;
	char path[256];

	if (s->conn.is_unix) {
		snprintf(path, sizeof(path), "%s/.s.PGSQL.%d",
		         t->host ? t->host : "/var/run/postgresql", t->port);
		uv_pipe_init(loop, &cc->h.pipe, 0);
		cc->h.handle.data = cc;
		uv_pipe_connect(&cc->connect_req, &cc->h.pipe, path, cancel_connected_cb);
		return 0;
	}
	uv_tcp_init(loop, &cc->h.tcp);
	cc->h.handle.data = cc;
	return uv_tcp_connect(&cc->connect_req, &cc->h.tcp,
	                      (const struct sockaddr *)&s->addr, cancel_connected_cb);
}

void cancel_send(struct server *s)
{
	struct cancel_conn *cc = calloc(1, sizeof(*cc));

	if (!cc)
		return;
	cc->connect_req.data = cc;
	cc->write_req.data = cc;
	cc->server = s;
	list_append(&s->pool->ctx->cancels, &cc->node);
	s->cancels_in_flight++;
	msgbuf_init(&cc->packet);
	codec_put_cancel(&cc->packet, s->backend_pid, s->backend_key);
	log_debug(&s->conn, "forwarding cancel request");
	if (cancel_connect(s, cc) < 0)
		cancel_close(cc);
}

void cancel_forget_server(struct server *s)
{
	struct list *head = &s->pool->ctx->cancels;

	for (struct list *l = head->next; l != head; l = l->next) {
		struct cancel_conn *cc = LIST_ENTRY(l, struct cancel_conn, node);

		if (cc->server == s)
			cc->server = NULL;
	}
}

void cancel_close_all(struct sluice *ctx)
{
	for (struct list *l = ctx->cancels.next; l != &ctx->cancels; l = l->next)
		cancel_close(LIST_ENTRY(l, struct cancel_conn, node));
}
