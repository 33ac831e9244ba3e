/*
 * fuzz_login.c - a client's way in, through the real code: conn.c's reads,
 * login.c's startup packet (SSLRequest, GSSENCRequest, CancelRequest,
 * StartupMessage), its authentication by auth_type, and client.c's close.
 *
 * Input: a flags byte choosing auth_type (md5, scram-sha-256, plain,
 * trust), then the bytes a new client sends, delivered over a socketpair
 * to a struct client made as the listener makes one, followed by EOF. The
 * loop runs until the client is gone. The auth_file knows alice (plain
 * "secret"), bob (md5 of "secret"), carol (the RFC 7677 verifier) and dave
 * (empty); [databases] is empty, so a login that succeeds ends with "no
 * such database" and no server is ever started.
 *
 * Invariants: the loop ends (no busy loop on held bytes); every client is
 * freed and the context's client and login counts return to zero; what
 * sluice sent is single 'N' bytes (answers to SSL/GSSENC requests), then
 * whole messages: authentication requests, and at most one ErrorResponse,
 * last; every line of the log (debug level, in a scratch file) is a line
 * log.c wrote, whatever the client put in its names and parameters.
 */
#include "fuzz.h"

#include <errno.h>
#include <sys/socket.h>
#include <uv.h>

#include "client.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "sluice.h"

static const char *const auth_types[] = { "md5", "scram-sha-256", "plain",
                                          "trust" };
static struct config *configs[4];
static struct sluice ctx;
static char log_path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The configs, one per auth_type, sharing one auth_file. */
static void load_configs(void)
{
	static const char users[] =
		"\"alice\" \"secret\"\n"
		"\"bob\" \"md521f3163f8f86fa10bdefbfbd502a8f06\"\n"
		"\"carol\" \"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
		"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\"\n"
		"\"dave\" \"\"\n";
	char users_path[128], path[128], ini[512], err[512];

	fuzz_scratch_write("userlist.txt", (const uint8_t *)users,
	                   strlen(users), users_path, sizeof(users_path));
	for (size_t i = 0; i < 4; i++) {
		snprintf(ini, sizeof(ini),
		         "[databases]\n[sluice]\nauth_type = %s\n"
		         "auth_file = %s\n"
		         "ignore_startup_parameters = extra_float_digits\n",
		         auth_types[i], users_path);
		fuzz_scratch_write("sluice.ini", (const uint8_t *)ini,
		                   strlen(ini), path, sizeof(path));
		if (config_load(path, &configs[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			abort();
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_scratch_init();
	load_configs();
	fuzz_scratch_write("sluice.log", NULL, 0, log_path, sizeof(log_path));
	FUZZ_ASSERT(log_configure(log_path, false, "sluice", "daemon", 1,
	                          true) == 0);
	ctx.loop = uv_default_loop();
	ctx.read_chunk = malloc(SLUICE_READ_CHUNK);
	FUZZ_ASSERT(ctx.read_chunk != NULL);
	list_init(&ctx.pools);
	list_init(&ctx.clients);
	list_init(&ctx.cancels);
	list_init(&ctx.ready);
	uv_idle_init(ctx.loop, &ctx.ready_idle);
	ctx.ready_idle.data = &ctx;
	return 0;
}

/* Sends data to fd as sluice reads it; stops early if sluice closes its
 * end or stops reading for good. */
static void send_all(int fd, const uint8_t *data, size_t len)
{
	size_t sent = 0;
	int stalled = 0;

	while (sent < len && stalled < 100) {
		ssize_t n = send(fd, data + sent, len - sent,
		                 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno != EAGAIN)
			return;  /* closed */
		stalled = n > 0 ? 0 : stalled + 1;
		sent += n > 0 ? (size_t)n : 0;
		uv_run(ctx.loop, UV_RUN_NOWAIT);
	}
}

/* Everything sluice wrote, until it closed its end. */
static uint8_t *receive_all(int fd, size_t *len)
{
	size_t cap = 4096;
	uint8_t *buf = malloc(cap);
	ssize_t n;

	FUZZ_ASSERT(buf != NULL);
	*len = 0;
	while ((n = recv(fd, buf + *len, cap - *len, MSG_DONTWAIT)) > 0) {
		*len += (size_t)n;
		if (*len == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			FUZZ_ASSERT(buf != NULL);
		}
	}
	return buf;
}

/* "2026-12-03 18:01:13.123 UTC [<our pid>] ": how log.c starts a line. */
static bool is_log_line(const char *line, size_t len)
{
	char pid[32];
	int n = snprintf(pid, sizeof(pid), " UTC [%d] ", (int)getpid());

	return len > 23 + (size_t)n && line[4] == '-' && line[7] == '-' &&
	       line[10] == ' ' && line[13] == ':' && line[16] == ':' &&
	       line[19] == '.' && memcmp(line + 23, pid, (size_t)n) == 0;
}

/* Checks each line logged during this input, then empties the log. */
static void check_log(void)
{
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	fflush(NULL);
	fp = fopen(log_path, "r");
	FUZZ_ASSERT(fp != NULL);
	while ((len = getline(&line, &cap, fp)) > 0)
		FUZZ_ASSERT(is_log_line(line, (size_t)len));
	free(line);
	fclose(fp);
	FUZZ_ASSERT(truncate(log_path, 0) == 0);
}

/* 'N' answers, then whole messages: requests, at most one error, last. */
static void check_output(const uint8_t *out, size_t len)
{
	size_t pos = 0;
	bool error_seen = false;

	while (pos < len && out[pos] == 'N')  /* no message starts so */
		pos++;
	while (pos < len) {
		struct pg_header h;

		FUZZ_ASSERT(!error_seen);
		FUZZ_ASSERT(codec_read_header(out + pos, len - pos, 1 << 20, &h) ==
		            CODEC_OK);
		FUZZ_ASSERT(len - pos >= (size_t)h.len + 1);
		FUZZ_ASSERT(h.type == PG_MSG_AUTH || h.type == PG_MSG_ERROR);
		error_seen = h.type == PG_MSG_ERROR;
		pos += (size_t)h.len + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client *c;
	int fds[2];
	size_t out_len;
	uint8_t *out;

	if (size < 1)
		return 0;
	ctx.config = configs[data[0] % 4];
	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) ==
	            0);
	c = client_new(&ctx, true);
	FUZZ_ASSERT(c != NULL);
	FUZZ_ASSERT(uv_pipe_open(&c->conn.h.pipe, fds[0]) == 0);
	client_start(c);
	send_all(fds[1], data + 1, size - 1);
	shutdown(fds[1], SHUT_WR);
	while (!list_empty(&ctx.clients) && uv_run(ctx.loop, UV_RUN_ONCE))
		;
	/* A client that stopped reading (it waits for nothing we run). */
	if (!list_empty(&ctx.clients))
		client_close(LIST_ENTRY(ctx.clients.next, struct client, node),
		             "fuzz input done");
	uv_run(ctx.loop, UV_RUN_DEFAULT);
	FUZZ_ASSERT(list_empty(&ctx.clients));
	FUZZ_ASSERT(ctx.client_count == 0 && ctx.login_count == 0);
	out = receive_all(fds[1], &out_len);
	check_output(out, out_len);
	check_log();
	free(out);
	close(fds[1]);
	return 0;
}
