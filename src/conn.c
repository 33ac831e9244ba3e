/*
 * conn.c - socket bytes: reads into the shared chunk, held bytes, gathered
 * writes, back-pressure and close.
 *
 * Owns nothing of the protocol: its owner (client.c or server.c) gets spans
 * of bytes and says how many it used.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "codec.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "sluice.h"

/* What one uv_write carries: the request and the bytes it owns. */
struct write_req {
	uv_write_t req;
	uint8_t *bytes;            /* an output buffer, given back in write_cb */
	uint32_t cap;
	struct conn *conn;
};

/*
 * Output buffers: a pass usually queues a few hundred bytes and the kernel
 * takes them at once, so the buffer is free again in the same pass. Reusing
 * spare ones of one size keeps malloc and free off the per-message path,
 * while idle connections still hold no buffer.
 */
static uint8_t *take_out_buffer(struct sluice *ctx)
{
	if (ctx->out_spare_count > 0)
		return ctx->out_spares[--ctx->out_spare_count];
	return malloc(SLUICE_OUT_SPARE_SIZE);
}

static void give_back_out_buffer(struct sluice *ctx, uint8_t *buf, uint32_t cap)
{
	if (cap == SLUICE_OUT_SPARE_SIZE && ctx->out_spare_count < SLUICE_OUT_SPARES)
		ctx->out_spares[ctx->out_spare_count++] = buf;
	else
		free(buf);
}

void conn_free_spares(struct sluice *ctx)
{
	while (ctx->out_spare_count > 0)
		free(ctx->out_spares[--ctx->out_spare_count]);
}

void conn_init(struct conn *conn, struct sluice *ctx, const struct conn_ops *ops,
               void *owner, bool is_unix)
{
	memset(conn, 0, sizeof(*conn));
	conn->ctx = ctx;
	conn->ops = ops;
	conn->owner = owner;
	conn->is_unix = is_unix;
	conn->max_packet = UINT32_MAX;
	conn->h.handle.data = conn;
	list_init(&conn->ready_node);
}

void conn_describe(const struct conn *conn, char *buf, size_t len)
{
	conn->ops->describe(conn, buf, len);
}

static void ready_idle_cb(uv_idle_t *idle)
{
	conn_run_ready(idle->data);
}

static void schedule_ready(struct conn *conn)
{
	struct sluice *ctx = conn->ctx;

	if (!list_empty(&conn->ready_node))
		return;
	if (list_empty(&ctx->ready))
		uv_idle_start(&ctx->ready_idle, ready_idle_cb);
	list_append(&ctx->ready, &conn->ready_node);
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

bool conn_may_read(const struct conn *conn)
{
	return conn->want_read && !conn->paused_by && !conn->answer_paused &&
	       !conn->closing && (!conn->ctx->suspended || conn->console);
}

/* Reading is on exactly when the owner wants bytes and nothing holds it. */
static void update_reading(struct conn *conn)
{
	bool should = conn_may_read(conn);

	if (should && !conn->reading) {
		if (uv_read_start(&conn->h.stream, alloc_cb, read_cb) == 0)
			conn->reading = true;
		if (conn->held_len > 0)
			schedule_ready(conn);
	} else if (!should && conn->reading) {
		uv_read_stop(&conn->h.stream);
		conn->reading = false;
	}
}

void conn_refresh_reading(struct conn *conn)
{
	update_reading(conn);
}

void conn_want_read(struct conn *conn, bool want)
{
	conn->want_read = want;
	update_reading(conn);
	if (!want)
		list_remove(&conn->ready_node);
	else if (conn->reading && conn->held_len > 0)
		schedule_ready(conn); /* bytes held while the owner could not use them */
}

static int grow_held(struct conn *conn, size_t cap)
{
	uint8_t *grown;

	if (cap <= conn->held_cap)
		return 0;
	if (cap > (size_t)conn->max_packet + SLUICE_READ_CHUNK)
		return -1;
	grown = realloc(conn->held, cap);
	if (!grown)
		return -1;
	conn->held = grown;
	conn->held_cap = (uint32_t)cap;
	return 0;
}

int conn_need(struct conn *conn, uint32_t len)
{
	if (len > conn->max_packet)
		return -1;
	conn->need = len;
	return 0;
}

/*
 * What held may grow to for the next read of a message of conn->need
 * bytes: a declared length costs nothing until its bytes come, so held at
 * most doubles per read (and takes at least a read chunk more).
 */
static size_t next_held_cap(const struct conn *conn)
{
	size_t cap = (size_t)conn->held_len * 2;

	if (cap < (size_t)conn->held_len + SLUICE_READ_CHUNK)
		cap = (size_t)conn->held_len + SLUICE_READ_CHUNK;
	if (cap > conn->need)
		cap = conn->need;
	return cap;
}

/*
 * Reads go to the shared chunk unless the owner waits for a message longer
 * than what is held: then straight into held, grown stepwise towards the
 * message's size, so a big message is copied a few times at most.
 */
static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct conn *conn = handle->data;

	(void)suggested;
	if (conn->need <= conn->held_len) {
		*buf = uv_buf_init((char *)conn->ctx->read_chunk, SLUICE_READ_CHUNK);
		return;
	}
	if (grow_held(conn, next_held_cap(conn)) < 0) {
		*buf = uv_buf_init(NULL, 0); /* read_cb then gets UV_ENOBUFS */
		return;
	}
	*buf = uv_buf_init((char *)conn->held + conn->held_len,
	                   conn->held_cap - conn->held_len);
}

/* Offers the held bytes to the owner and keeps what it leaves. */
static void process_held(struct conn *conn)
{
	size_t used = conn->ops->on_data(conn, conn->held, conn->held_len);

	if (conn->closing)
		return;
	conn->held_len -= (uint32_t)used;
	if (conn->held_len > 0) {
		memmove(conn->held, conn->held + used, conn->held_len);
		return;
	}
	free(conn->held);
	conn->held = NULL;
	conn->held_cap = 0;
	conn->need = 0; /* whatever it was waiting for has been used */
}

/* Offers bytes from the shared chunk; what is left is copied to held. */
static void process_chunk(struct conn *conn, const uint8_t *data, size_t len)
{
	size_t used;

	if (conn->held_len > 0) {
		/* the owner sees one span: held bytes, then these */
		if (grow_held(conn, (size_t)conn->held_len + len) < 0) {
			conn->ops->on_eof(conn, UV_ENOBUFS);
			return;
		}
		memcpy(conn->held + conn->held_len, data, len);
		conn->held_len += (uint32_t)len;
		process_held(conn);
		return;
	}
	used = conn->ops->on_data(conn, data, len);

	if (conn->closing)
		return;
	if (used == len) {
		conn->need = 0;
		return;
	}
	if (grow_held(conn, len - used) < 0) {
		conn->ops->on_eof(conn, UV_ENOBUFS);
		return;
	}
	memcpy(conn->held, data + used, len - used);
	conn->held_len = (uint32_t)(len - used);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *conn = stream->data;

	if (nread == 0)
		return;
	if (nread < 0) {
		conn->ops->on_eof(conn, (int)nread);
		return;
	}
	if ((uint8_t *)buf->base == conn->ctx->read_chunk) {
		process_chunk(conn, (const uint8_t *)buf->base, (size_t)nread);
		return;
	}
	conn->held_len += (uint32_t)nread;
	process_held(conn);
}

void conn_run_ready(struct sluice *ctx)
{
	struct list batch;

	/* Only the conns ready now: one that re-queues itself waits a tick. */
	list_init(&batch);
	if (!list_empty(&ctx->ready)) {
		batch.next = ctx->ready.next;
		batch.prev = ctx->ready.prev;
		batch.next->prev = &batch;
		batch.prev->next = &batch;
		list_init(&ctx->ready);
	}
	for (struct list *l; (l = list_pop(&batch)) != NULL;) {
		struct conn *conn = LIST_ENTRY(l, struct conn, ready_node);

		if (conn_may_read(conn) && conn->held_len > 0)
			process_held(conn);
	}
	if (list_empty(&ctx->ready))
		uv_idle_stop(&ctx->ready_idle);
}

static void drop_output(struct conn *conn)
{
	if (conn->out)
		give_back_out_buffer(conn->ctx, conn->out, conn->out_cap);
	conn->out = NULL;
	conn->out_len = 0;
	conn->out_cap = 0;
}

/*
 * Out of memory, or past CONN_MAX_OUT: what this pass queued is lost, so
 * the stream is broken. The conn is not closed here, behind its owner's
 * back (it would stay on pool and client lists); the owner's next
 * conn_flush fails with error instead.
 */
static void queue_failed(struct conn *conn, int error)
{
	conn->out_error = error;
	drop_output(conn);
}

void conn_queue(struct conn *conn, const void *data, size_t len)
{
	size_t cap;
	uint8_t *grown;

	if (len == 0 || conn->closing || conn->out_error)
		return;
	if (len > CONN_MAX_OUT - conn->out_len) {
		log_warn(conn, "over %u MiB of output in one pass: closing",
		         CONN_MAX_OUT >> 20);
		queue_failed(conn, UV_ENOBUFS);
		return;
	}
	if (conn->out_cap == 0) {
		conn->out = take_out_buffer(conn->ctx);
		if (!conn->out) {
			queue_failed(conn, UV_ENOMEM);
			return;
		}
		conn->out_cap = SLUICE_OUT_SPARE_SIZE;
	}
	cap = conn->out_cap;
	while (cap - conn->out_len < len)
		cap *= 2;
	if (cap != conn->out_cap) {
		grown = realloc(conn->out, cap);
		if (!grown) {
			queue_failed(conn, UV_ENOMEM);
			return;
		}
		conn->out = grown;
		conn->out_cap = (uint32_t)cap;
	}
	memcpy(conn->out + conn->out_len, data, len);
	conn->out_len += (uint32_t)len;
}

void conn_queue_msgbuf(struct conn *conn, const struct msgbuf *mb)
{
	if (mb->failed) {
		queue_failed(conn, UV_ENOMEM);
		return;
	}
	conn_queue(conn, mb->data, mb->len);
}

static void unpause_peer(struct conn *conn)
{
	struct conn *peer = conn->paused_peer;

	if (!peer)
		return;
	conn->paused_peer = NULL;
	peer->paused_by = NULL;
	update_reading(peer);
}

static void pause_producer(struct conn *conn, struct conn *producer)
{
	if (producer == conn) {
		conn->answer_paused = true; /* until write_cb drains us */
		update_reading(conn);
		return;
	}
	if (!producer || producer->closing)
		return;
	if (conn->paused_peer && conn->paused_peer != producer)
		unpause_peer(conn);
	if (producer->paused_by && producer->paused_by != conn)
		return;
	conn->paused_peer = producer;
	producer->paused_by = conn;
	update_reading(producer);
}

static void write_cb(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct conn *conn = w->conn;

	give_back_out_buffer(conn->ctx, w->bytes, w->cap);
	free(w);
	conn->writes_pending--;
	if (status < 0 && status != UV_ECANCELED && !conn->closing)
		conn->ops->on_eof(conn, status);
	if (conn->writes_pending > 0)
		return;
	unpause_peer(conn);
	if (conn->answer_paused) {
		conn->answer_paused = false;
		update_reading(conn);
	}
	if (conn->close_after_flush)
		conn_close(conn);
}

int conn_flush(struct conn *conn, struct conn *producer)
{
	uv_buf_t buf = uv_buf_init((char *)conn->out, conn->out_len);
	struct write_req *w;
	int sent = 0;
	int rc;

	if (conn->out_error)
		return conn->out_error;
	if (conn->out_len == 0 || uv_is_closing(&conn->h.handle))
		return 0;
	if (conn->writes_pending == 0) {
		sent = uv_try_write(&conn->h.stream, &buf, 1);
		if (sent == (int)conn->out_len) {
			drop_output(conn);
			return 0;
		}
		if (sent < 0 && sent != UV_EAGAIN)
			return sent;
		if (sent < 0)
			sent = 0;
	}
	w = malloc(sizeof(*w));
	if (!w)
		return UV_ENOMEM;
	w->bytes = conn->out;
	w->cap = conn->out_cap;
	w->conn = conn;
	buf = uv_buf_init((char *)conn->out + sent, conn->out_len - (uint32_t)sent);
	rc = uv_write(&w->req, &conn->h.stream, &buf, 1, write_cb);
	if (rc < 0) {
		free(w);
		return rc;
	}
	conn->out = NULL;
	conn->out_len = 0;
	conn->out_cap = 0;
	conn->writes_pending++;
	pause_producer(conn, producer);
	return 0;
}

static void close_cb(uv_handle_t *handle)
{
	struct conn *conn = handle->data;

	conn->ops->on_closed(conn);
}

void conn_close(struct conn *conn)
{
	if (uv_is_closing(&conn->h.handle))
		return;
	conn->closing = true;
	conn->close_after_flush = false;
	conn->want_read = false;
	unpause_peer(conn);
	if (conn->paused_by) {
		conn->paused_by->paused_peer = NULL;
		conn->paused_by = NULL;
	}
	list_remove(&conn->ready_node);
	if (conn->reading)
		uv_read_stop(&conn->h.stream);
	conn->reading = false;
	free(conn->held);
	conn->held = NULL;
	conn->held_len = conn->held_cap = 0;
	drop_output(conn);
	uv_close(&conn->h.handle, close_cb);
}

void conn_close_after_flush(struct conn *conn)
{
	if (conn->closing)
		return;
	conn_want_read(conn, false);
	if (conn_flush(conn, NULL) < 0 || conn->writes_pending == 0) {
		conn_close(conn);
		return;
	}
	conn->closing = true;
	conn->close_after_flush = true;
}

void conn_peer_addr(struct conn *conn, union peer_addr *out)
{
	int len = sizeof(*out);

	memset(out, 0, sizeof(*out));
	if (conn->is_unix || uv_tcp_getpeername(&conn->h.tcp, &out->sa, &len) != 0)
		out->sa.sa_family = AF_UNSPEC;
}

void sockaddr_text(const struct sockaddr *sa, char *buf, size_t len, int *port)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;

		uv_ip6_name(a, buf, len);
		*port = ntohs(a->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;

		uv_ip4_name(a, buf, len);
		*port = ntohs(a->sin_port);
	} else {
		snprintf(buf, len, "?");
		*port = 0;
	}
}

/* setsockopt on the connection's fd; failures only cost the tuning. */
static void set_int_option(uv_os_fd_t fd, int level, int name, int value)
{
	if (value > 0)
		setsockopt(fd, level, name, &value, sizeof(value));
}

void conn_set_tcp_options(struct conn *conn, const struct config *cfg)
{
	uv_os_fd_t fd;

	if (conn->is_unix)
		return;
	uv_tcp_nodelay(&conn->h.tcp, 1);
	if (!cfg->tcp_keepalive || uv_fileno(&conn->h.handle, &fd) != 0)
		return;
	set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, cfg->tcp_keepidle);
	set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, cfg->tcp_keepintvl);
	set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, cfg->tcp_keepcnt);
	set_int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, cfg->tcp_user_timeout);
}
