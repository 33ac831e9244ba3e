/*
 * floor_proxy.c - the cheapest TCP proxy libuv allows, to measure the floor
 * of any proxy's CPU per transaction on a machine.
 *
 *   gcc -O2 -o floor_proxy floor_proxy.c $(pkg-config --cflags --libs libuv)
 *   ./floor_proxy LISTEN_PORT UPSTREAM_PORT     # both on 127.0.0.1
 *
 * One upstream connection per client, bytes copied as they come: one read
 * and one write per message, nothing parsed, no pooling, no back-pressure.
 * Not a pooler and
 * not for production: it exists so that contrib/bench numbers can be read
 * against "what the kernel alone costs" (see doc/benchmark.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static uv_loop_t *loop;
static struct sockaddr_in upstream;
static char chunk[65536];

struct side {
	uv_tcp_t tcp;
	struct side *peer;
	struct pair *pair;
};

struct pair {
	struct side client;
	struct side server;
	uv_connect_t connect;
	int closed;
};

struct pending {
	uv_write_t req;
	char bytes[];
};

static void closed_cb(uv_handle_t *h)
{
	struct side *s = h->data;

	if (++s->pair->closed == 2)
		free(s->pair);
}

static void close_pair(struct pair *p)
{
	if (!uv_is_closing((uv_handle_t *)&p->client.tcp))
		uv_close((uv_handle_t *)&p->client.tcp, closed_cb);
	if (!uv_is_closing((uv_handle_t *)&p->server.tcp))
		uv_close((uv_handle_t *)&p->server.tcp, closed_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(chunk, sizeof(chunk));
}

static void write_cb(uv_write_t *req, int status)
{
	struct side *to = req->data;

	free(req);
	if (status < 0)
		close_pair(to->pair);
}

/* Writes now; what the kernel does not take is copied and queued. */
static void forward(struct side *to, const char *data, size_t len)
{
	uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
	int sent = uv_try_write((uv_stream_t *)&to->tcp, &buf, 1);
	struct pending *w;

	if (sent == (int)len)
		return;
	if (sent < 0 && sent != UV_EAGAIN) {
		close_pair(to->pair);
		return;
	}
	if (sent < 0)
		sent = 0;
	w = malloc(sizeof(*w) + len - (size_t)sent);
	if (!w) {
		close_pair(to->pair);
		return;
	}
	memcpy(w->bytes, data + sent, len - (size_t)sent);
	w->req.data = to;
	buf = uv_buf_init(w->bytes, (unsigned)(len - (size_t)sent));
	if (uv_write(&w->req, (uv_stream_t *)&to->tcp, &buf, 1, write_cb) < 0) {
		free(w);
		close_pair(to->pair);
	}
}

static void read_cb(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
	struct side *from = stream->data;

	if (n < 0) {
		close_pair(from->pair);
		return;
	}
	if (n > 0)
		forward(from->peer, buf->base, (size_t)n);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct pair *p = req->data;

	if (status < 0) {
		close_pair(p);
		return;
	}
	uv_tcp_nodelay(&p->server.tcp, 1);
	uv_read_start((uv_stream_t *)&p->client.tcp, alloc_cb, read_cb);
	uv_read_start((uv_stream_t *)&p->server.tcp, alloc_cb, read_cb);
}

static void init_side(struct pair *p, struct side *s, struct side *peer)
{
	uv_tcp_init(loop, &s->tcp);
	s->tcp.data = s;
	s->peer = peer;
	s->pair = p;
}

static void accept_cb(uv_stream_t *listener, int status)
{
	struct pair *p;

	if (status < 0 || !(p = calloc(1, sizeof(*p))))
		return;
	init_side(p, &p->client, &p->server);
	init_side(p, &p->server, &p->client);
	if (uv_accept(listener, (uv_stream_t *)&p->client.tcp) < 0) {
		close_pair(p);
		return;
	}
	uv_tcp_nodelay(&p->client.tcp, 1);
	p->connect.data = p;
	if (uv_tcp_connect(&p->connect, &p->server.tcp,
	                   (const struct sockaddr *)&upstream, connect_cb) < 0)
		close_pair(p);
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr;
	uv_tcp_t listener;

	if (argc != 3) {
		fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
		return 2;
	}
	loop = uv_default_loop();
	uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
	uv_ip4_addr("127.0.0.1", atoi(argv[2]), &upstream);
	uv_tcp_init(loop, &listener);
	if (uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0) < 0 ||
	    uv_listen((uv_stream_t *)&listener, 1024, accept_cb) < 0) {
		fprintf(stderr, "floor_proxy: cannot listen on 127.0.0.1:%s\n", argv[1]);
		return 1;
	}
	return uv_run(loop, UV_RUN_DEFAULT);
}
