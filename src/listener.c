/*
 * listener.c - TCP and unix listeners, accept, and the max_client_conn count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "sluice.h"

struct listener {
	union {
		uv_handle_t handle;
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	struct sluice *ctx;
	bool is_unix;
	char name[300];          /* "addr:port" or the socket path */
	struct listener *next;
};

static void accept_cb(uv_stream_t *stream, int status)
{
	struct listener *l = stream->data;
	struct client *c;

	if (status < 0) {
		log_warn(NULL, "accept on %s failed: %s", l->name, uv_strerror(status));
		return;
	}
	c = client_new(l->ctx, l->is_unix);
	if (!c)
		return;
	if (uv_accept(stream, &c->conn.h.stream) < 0) {
		client_discard(c);
		return;
	}
	client_start(c);
}

static struct listener *add_listener(struct sluice *ctx, bool is_unix,
                                     const char *name)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->ctx = ctx;
	l->is_unix = is_unix;
	snprintf(l->name, sizeof(l->name), "%s", name);
	if (is_unix)
		uv_pipe_init(ctx->loop, &l->h.pipe, 0);
	else
		uv_tcp_init(ctx->loop, &l->h.tcp);
	l->h.handle.data = l;
	l->next = ctx->listeners;
	ctx->listeners = l;
	return l;
}

static int listen_tcp(struct sluice *ctx, const char *addr, int port)
{
	struct sockaddr_storage ss;
	char name[300];
	unsigned flags = 0;
	struct listener *l;
	int rc;

	if (uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss) != 0) {
		if (uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss) != 0) {
			log_error(NULL, "listen_addr: invalid address %s", addr);
			return -1;
		}
		flags = UV_TCP_IPV6ONLY;
	}
	snprintf(name, sizeof(name), "%s:%d", addr, port);
	l = add_listener(ctx, false, name);
	if (!l)
		return -1;
	rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, flags);
	if (rc == 0)
		rc = uv_listen(&l->h.stream, ctx->config->listen_backlog, accept_cb);
	if (rc < 0) {
		log_error(NULL, "cannot listen on %s: %s", name, uv_strerror(rc));
		return -1;
	}
	log_info(NULL, "listening on %s", name);
	return 0;
}

/* "*" means every IPv4 and IPv6 address, as in PgBouncer. */
static int listen_addr_list(struct sluice *ctx)
{
	const struct config *cfg = ctx->config;
	char *list;
	char *save = NULL;
	int rc = 0;

	if (!cfg->listen_addr || !*cfg->listen_addr)
		return 0;
	list = strdup(cfg->listen_addr);
	if (!list)
		return -1;
	for (char *a = strtok_r(list, ", \t", &save); a && rc == 0;
	     a = strtok_r(NULL, ", \t", &save)) {
		if (strcmp(a, "*") == 0) {
			rc = listen_tcp(ctx, "0.0.0.0", cfg->listen_port);
			if (rc == 0)
				rc = listen_tcp(ctx, "::", cfg->listen_port);
		} else {
			rc = listen_tcp(ctx, a, cfg->listen_port);
		}
	}
	free(list);
	return rc;
}

static int listen_unix(struct sluice *ctx)
{
	const struct config *cfg = ctx->config;
	char path[300];
	struct listener *l;
	int rc;

	if (!cfg->unix_socket_dir || !*cfg->unix_socket_dir)
		return 0;
	snprintf(path, sizeof(path), "%s/.s.PGSQL.%d", cfg->unix_socket_dir,
	         cfg->listen_port);
	/* libuv would cut a longer path silently and bind somewhere else. */
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		log_error(NULL, "unix_socket_dir is too long: %s must fit in %zu bytes",
		          path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return -1;
	}
	/* A socket file left by a crashed run would make bind fail. */
	unlink(path);
	l = add_listener(ctx, true, path);
	if (!l)
		return -1;
	rc = uv_pipe_bind(&l->h.pipe, path);
	if (rc == 0)
		rc = uv_listen(&l->h.stream, cfg->listen_backlog, accept_cb);
	if (rc < 0) {
		log_error(NULL, "cannot listen on %s: %s", path, uv_strerror(rc));
		return -1;
	}
	chmod(path, (mode_t)cfg->unix_socket_mode);
	log_info(NULL, "listening on unix:%s", path);
	return 0;
}

int listener_start_all(struct sluice *ctx)
{
	if (listen_addr_list(ctx) < 0 || listen_unix(ctx) < 0)
		return -1;
	if (!ctx->listeners) {
		log_error(NULL, "nothing to listen on: set listen_addr or unix_socket_dir");
		return -1;
	}
	return 0;
}

static void listener_closed_cb(uv_handle_t *handle)
{
	free(handle->data);
}

void listener_stop_all(struct sluice *ctx)
{
	while (ctx->listeners) {
		struct listener *l = ctx->listeners;

		ctx->listeners = l->next;
		if (l->is_unix)
			unlink(l->name);
		uv_close(&l->h.handle, listener_closed_cb);
	}
}
