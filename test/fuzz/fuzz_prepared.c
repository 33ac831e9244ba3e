/*
 * fuzz_prepared.c - the prepared-statement layer (prepared.c) driven by
 * arbitrary sequences of client messages and server answers.
 *
 * One client of a transaction-mode pool (max_prepared_statements = 3) and
 * two servers. The client's messages go through prepared.c as client.c
 * passes them: prepared_local while it has no server, else a server is
 * linked, then prepared_must_wait, prepared_forward and the bytes left
 * queued to the server; a message that must wait stays until an answer
 * wakes the client. Each server's bytes are read by a small model of
 * PostgreSQL (named statements, the unnamed portal, errors that skip to
 * Sync, DEALLOCATE ALL, DISCARD ALL, BEGIN/COMMIT), whose answers go
 * through prepared_wants_response/prepared_response and prepared_ready as
 * server.c passes them; the server is released at a ReadyForQuery as in
 * transaction mode. Everything is freed after each input.
 *
 * Input: one byte per operation, low nibble first: 0-1 Parse (high nibble
 * and bit 0: name and text), 2 Bind, 3 Describe, 4 Close (high nibble:
 * name, bit 2 the portal instead), 5 Execute, 6-7 Sync, 8 Flush, 9 Query
 * (text); 10-11 the linked server (else the one the high nibble names)
 * answers one message, 12 the same with an error, 13 all it has; 14 the
 * high nibble picks the server linked next; 15 every server answers all.
 *
 * Invariants: no sanitizer report (use after free, leaks); the client
 * gets, in order, one answer per message it sent (an error skipping to
 * the Sync, as PostgreSQL), so no answer to sluice's own Parse or Close;
 * no error shows the client sluice's names; a server holds at most
 * max_prepared_statements statements, in sluice's count and in the
 * model's; once the servers have answered everything, the client waits
 * for nothing; with the client and servers gone, no statement is left in
 * the registry (SHOW PREPARED_STATS).
 *
 * Known defects of prepared.c are exempted where their comments say, so
 * that CI stays green; FUZZ_PREPARED_STRICT=1 checks them too, and
 * FUZZ_PREPARED_TRACE=1 prints each message, to read a crash.
 */
#include "fuzz.h"

#include <stdarg.h>
#include <sys/socket.h>
#include <uv.h>

#include "client.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "server.h"
#include "sluice.h"

#define MAX_PREPARED 3
#define NSERVERS 2
/* Bytes on their way, ample for MAX_OPS operations of at most a few
 * hundred bytes each. */
#define BUF_SIZE (1 << 18)
#define MAX_OPS 512
/* A backend's statements: a Parse operation sends at most two Parses;
 * room for all, since known defects leave statements behind. */
#define MAX_PG_STMTS (2 * MAX_OPS + 1)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = { "", "a", "b", "c" };
static const char *const texts[] = {
	"SELECT 1", "SELECT 2", "SELEC 3", "DEALLOCATE ALL", "DISCARD ALL",
	"BEGIN", "COMMIT", "SELECT 1",
};

/* What the client waits for, per message it sent. */
enum want {
	W_PARSE, W_BIND, W_DESC_S, W_DESC_S_ROW, W_DESC_P, W_CLOSE, W_EXEC,
	W_SYNC, W_QUERY, W_QUERY_READY,
};

/* The model of one PostgreSQL backend. */
struct fake_pg {
	struct server *s;
	uint8_t in[BUF_SIZE];      /* bytes sluice sent, not yet read */
	size_t in_len;
	char stmt_name[MAX_PG_STMTS][64];
	char stmt_text[MAX_PG_STMTS][64];
	bool stmt_used[MAX_PG_STMTS];
	bool portal;               /* the unnamed portal exists */
	char portal_text[64];
	bool skipping;             /* an extended message failed: until Sync */
	bool fail_next;            /* the next message fails (XX000) */
	int closes_skipped;        /* Closes of sluice's names it skipped */
	char status;               /* 'I', 'T' or 'E' */
};

static struct sluice ctx;
static struct config *config;
static struct pool pool;
static struct fake_pg pgs[NSERVERS];
static struct client *client;
static uint8_t inbox[BUF_SIZE];    /* the client's messages not taken yet */
static size_t inbox_len;
static uint8_t wants[BUF_SIZE];    /* enum want, oldest first */
static int8_t want_names[BUF_SIZE]; /* a Parse's or Close's name, -1: none */
static bool known[4];              /* names[i] prepared, as the client saw */
static size_t wants_head, wants_len;
static bool client_skipping;       /* got an error, waits for its Sync */
static bool strict;                /* FUZZ_PREPARED_STRICT: known defects too */
static bool tracing;               /* FUZZ_PREPARED_TRACE */
static bool batch_sent;            /* extended messages since a Sync */
static int parses_failed;          /* Parses of sluice's names not done */
static char failed_names[8][48];   /* the first of those, by name */
static bool names_dropped;         /* a DEALLOCATE ALL or DISCARD ALL ran */
static unsigned next_server;
static char log_path[128];

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void trace(const char *fmt, ...)
{
	va_list ap;

	if (!tracing)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static size_t client_on_data(struct conn *conn, const uint8_t *data, size_t len)
{
	(void)conn;
	(void)data;
	return len;
}

static void client_on_eof(struct conn *conn, int status)
{
	(void)conn;
	(void)status;
}

static void client_on_closed(struct conn *conn)
{
	struct client *c = conn->owner;

	prepared_client_free(c);
	free(c);
}

static void describe(const struct conn *conn, char *buf, size_t len)
{
	snprintf(buf, len, "%s", conn->owner == client ? "C-fuzz" : "S-fuzz");
}

static const struct conn_ops client_ops = {
	client_on_data, client_on_eof, client_on_closed, describe,
};
static const struct conn_ops server_ops = {
	client_on_data, client_on_eof, NULL, describe,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char ini[] =
		"[databases]\n[sluice]\npool_mode = transaction\n"
		"max_prepared_statements = 3\n";
	char path[128], err[512];

	(void)argc;
	(void)argv;
	strict = getenv("FUZZ_PREPARED_STRICT") != NULL;
	tracing = getenv("FUZZ_PREPARED_TRACE") != NULL;
	fuzz_scratch_init();
	fuzz_scratch_write("sluice.ini", (const uint8_t *)ini, strlen(ini),
	                   path, sizeof(path));
	if (config_load(path, &config, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	FUZZ_ASSERT(config->max_prepared_statements == MAX_PREPARED);
	fuzz_scratch_write("sluice.log", NULL, 0, log_path, sizeof(log_path));
	FUZZ_ASSERT(log_configure(log_path, false, "sluice", "daemon", 0,
	                          true) == 0);
	ctx.loop = uv_default_loop();
	ctx.config = config;
	list_init(&ctx.pools);
	list_init(&ctx.clients);
	list_init(&ctx.cancels);
	list_init(&ctx.ready);
	pool.ctx = &ctx;
	pool.db_name = "db";
	pool.user_name = "alice";
	pool.pool_mode = POOL_MODE_TRANSACTION;
	list_init(&pool.idle);
	list_init(&pool.used);
	list_init(&pool.waiting);
	list_init(&pool.welcome);
	list_append(&ctx.pools, &pool.node);
	return 0;
}

/* --- the client's expectations ----------------------------------------- */

static void want_push(enum want w, int name)
{
	FUZZ_ASSERT(wants_len < BUF_SIZE);
	want_names[(wants_head + wants_len) % BUF_SIZE] = (int8_t)name;
	wants[(wants_head + wants_len++) % BUF_SIZE] = (uint8_t)w;
}

static int want_front(void)
{
	return wants_len ? wants[wants_head] : -1;
}

static void want_pop(void)
{
	FUZZ_ASSERT(wants_len > 0);
	wants_head = (wants_head + 1) % BUF_SIZE;
	wants_len--;
}

/* A name the client prepared (and did not close or drop) exists.
 * Known defects, checked only when strict: a duplicate Parse pipelined
 * behind DEALLOCATE ALL or DISCARD ALL is answered but its name lost;
 * when a statement's Parse failed for two client names, recent[] gives
 * the error of a Bind of the second the first's name; a failed Parse
 * forgets, at its ReadyForQuery, the name a later Parse of the same name
 * and text (pipelined behind it) made. */
static void check_not_lost(const struct pg_error_fields *err)
{
	char text[64];

	if (strcmp(err->sqlstate, "26000") != 0 ||
	    (!strict && (names_dropped || failed_names[0][0])))
		return;
	for (int i = 1; i < 4; i++) {
		snprintf(text, sizeof(text), "prepared statement \"%s\" does "
		         "not exist", names[i]);
		FUZZ_ASSERT(!known[i] || strcmp(err->message, text) != 0);
	}
}

/* An error: a Query's ends it, an extended message's skips to Sync. */
static void client_got_error(const uint8_t *msg, size_t len)
{
	struct pg_error_fields err;

	FUZZ_ASSERT(!client_skipping);
	FUZZ_ASSERT(codec_parse_error(msg + PG_HEADER_LEN, len - PG_HEADER_LEN,
	                              &err) == CODEC_OK);
	trace("client <- E %s %s\n", err.sqlstate, err.message);
	/* Known defects, checked only when strict: the ReadyForQuery of an
	 * earlier batch drops the rename of a pipelined duplicate Parse, and
	 * a skipped Close leaves a statement sluice prepares again (their
	 * 42P05 names sluice's statement); a Bind or Describe pipelined
	 * behind DEALLOCATE ALL or DISCARD ALL, or behind more than 4 failed
	 * Parses (recent[4]), gets a 26000 naming it. */
	FUZZ_ASSERT(strstr(err.message, "sluice_") == NULL ||
	            (!strict && (strcmp(err.sqlstate, "42P05") == 0 ||
	                         names_dropped || parses_failed > 4)));
	check_not_lost(&err);
	FUZZ_ASSERT(want_front() >= 0 && want_front() != W_SYNC &&
	            want_front() != W_QUERY_READY &&
	            want_front() != W_DESC_S_ROW);
	if (want_front() == W_QUERY) {
		wants[wants_head] = W_QUERY_READY;
		return;
	}
	client_skipping = true;
}

/* A Close the failed batch skipped: in PostgreSQL the name stays. Known
 * defect, checked only when strict: sluice forgot it when the Close went
 * out, and so does the model unless strict. */
static void forget_skipped_close(void)
{
	if (!strict && want_front() == W_CLOSE && want_names[wants_head] >= 0)
		known[want_names[wants_head]] = false;
}

/* A ReadyForQuery: the Sync's or the Query's, past what an error skipped. */
static void client_got_ready(void)
{
	if (!client_skipping) {
		FUZZ_ASSERT(want_front() == W_SYNC || want_front() == W_QUERY_READY);
		want_pop();
		return;
	}
	while (want_front() != W_SYNC) {
		FUZZ_ASSERT(want_front() >= 0);
		forget_skipped_close();
		want_pop();
	}
	want_pop();
	client_skipping = false;
}

/* One answer sluice sent the client, checked against what it waits for. */
static void client_got(const uint8_t *msg, size_t len)
{
	int w = want_front();

	trace("client <- %c (waits for %d, %zu answers)\n", msg[0], w, wants_len);

	if (msg[0] == PG_MSG_ERROR)
		return client_got_error(msg, len);
	if (msg[0] == PG_MSG_READY_FOR_QUERY)
		return client_got_ready();
	FUZZ_ASSERT(!client_skipping);
	switch (msg[0]) {
	case '1':
		FUZZ_ASSERT(w == W_PARSE);
		known[want_names[wants_head]] = true;
		break;
	case '2':
		FUZZ_ASSERT(w == W_BIND);
		break;
	case '3':
		FUZZ_ASSERT(w == W_CLOSE);
		if (want_names[wants_head] >= 0)
			known[want_names[wants_head]] = false;
		break;
	case 't':
		FUZZ_ASSERT(w == W_DESC_S);
		wants[wants_head] = W_DESC_S_ROW;
		return;
	case 'n':
		FUZZ_ASSERT(w == W_DESC_S_ROW || w == W_DESC_P);
		break;
	case PG_MSG_COMMAND_COMPLETE:
		FUZZ_ASSERT(w == W_EXEC || w == W_QUERY);
		if (strncmp((const char *)msg + PG_HEADER_LEN, "DEALLOCATE ALL",
		            len - PG_HEADER_LEN) == 0 ||
		    strncmp((const char *)msg + PG_HEADER_LEN, "DISCARD ALL",
		            len - PG_HEADER_LEN) == 0)
			memset(known, 0, sizeof(known));
		if (w == W_QUERY) {
			wants[wants_head] = W_QUERY_READY;
			return;
		}
		break;
	default:
		FUZZ_ASSERT(!"unexpected message to the client");
	}
	want_pop();
}

/* Reads what sluice queued to the client (whole messages only). */
static void client_read(void)
{
	struct conn *conn = &client->conn;
	size_t pos = 0;

	FUZZ_ASSERT(!conn->closing && !conn->out_error);
	while (pos < conn->out_len) {
		struct pg_header h;

		FUZZ_ASSERT(codec_read_header(conn->out + pos, conn->out_len - pos,
		                              1 << 20, &h) == CODEC_OK);
		FUZZ_ASSERT(conn->out_len - pos >= (size_t)h.len + 1);
		client_got(conn->out + pos, (size_t)h.len + 1);
		pos += (size_t)h.len + 1;
	}
	conn->out_len = 0;
}

/* --- the client's messages, as client.c passes them --------------------- */

/* client.c's track_message for the messages sent here: what a forwarded
 * message owes. */
static void track_message(struct client *c, uint8_t type)
{
	if (type == PG_MSG_QUERY || type == PG_MSG_SYNC) {
		prepared_sync_sent(c->server);
		server_expect_ready(c->server);
	}
	if (type != PG_MSG_QUERY)
		c->batch_open = type != PG_MSG_SYNC;
}

/* Links a server (the pool's choice: the input's). */
static void link_server(struct client *c)
{
	struct server *s = pgs[next_server % NSERVERS].s;

	FUZZ_ASSERT(s->client == NULL);
	s->client = c;
	c->server = s;
	c->local_batch = false;
}

/* One whole message of the client; false if it must wait for an answer. */
static bool deliver(struct client *c, const uint8_t *msg, size_t whole)
{
	size_t replaced;

	FUZZ_ASSERT(prepared_active(c));
	FUZZ_ASSERT(prepared_wanted(c, msg[0], whole) <= whole);
	if (!c->server) {
		if (prepared_local(c, msg, whole) == whole)
			return true;
		link_server(c);
	}
	if (prepared_must_wait(c, msg, whole)) {
		conn_want_read(&c->conn, false);
		return false;
	}
	trace("client -> %c to S%d\n", msg[0], c->server == pgs[0].s ? 0 : 1);
	replaced = prepared_forward(c, msg, whole, whole);
	FUZZ_ASSERT(!c->conn.closing);
	FUZZ_ASSERT(replaced <= whole);
	track_message(c, msg[0]);
	conn_queue(&c->server->conn, msg + replaced, whole - replaced);
	return true;
}

/* Takes the client's messages until one must wait. */
static void client_pump(void)
{
	size_t pos = 0;

	while (pos < inbox_len) {
		uint32_t len;
		size_t whole;

		memcpy(&len, inbox + pos + 1, 4);
		whole = (size_t)ntohl(len) + 1;
		if (!deliver(client, inbox + pos, whole))
			break;
		pos += whole;
	}
	memmove(inbox, inbox + pos, inbox_len - pos);
	inbox_len -= pos;
	client_read();
	for (size_t i = 0; i < NSERVERS; i++) {
		struct conn *conn = &pgs[i].s->conn;

		FUZZ_ASSERT(!conn->out_error);
		FUZZ_ASSERT(pgs[i].in_len + conn->out_len <= BUF_SIZE);
		if (conn->out_len)
			memcpy(pgs[i].in + pgs[i].in_len, conn->out, conn->out_len);
		pgs[i].in_len += conn->out_len;
		conn->out_len = 0;
		FUZZ_ASSERT(pgs[i].s->prep.count <= MAX_PREPARED);
	}
}

/* The client sends a message (mb); it expects want (or nothing: -1). */
static void client_sends(struct msgbuf *mb, int want, int name)
{
	uint8_t mb_type;

	FUZZ_ASSERT(!mb->failed && inbox_len + mb->len <= BUF_SIZE);
	mb_type = mb->data[0];
	memcpy(inbox + inbox_len, mb->data, mb->len);
	inbox_len += mb->len;
	msgbuf_free(mb);
	if (want >= 0)
		want_push((enum want)want, name);
	batch_sent = mb_type != PG_MSG_SYNC && mb_type != PG_MSG_QUERY;
	client_pump();
}

static void send_parse(uint8_t arg)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, PG_MSG_PARSE);
	msgbuf_put_str(&mb, names[arg & 3]);
	msgbuf_put_str(&mb, texts[(arg >> 2) & 7]);
	/* the last text is the first with an int4 parameter */
	msgbuf_put_u16(&mb, ((arg >> 2) & 7) == 7);
	if (((arg >> 2) & 7) == 7)
		msgbuf_put_u32(&mb, 23);
	msgbuf_end(&mb);
	client_sends(&mb, W_PARSE, arg & 3);
}

static void send_bind(uint8_t arg)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, PG_MSG_BIND);
	msgbuf_put_str(&mb, "");
	msgbuf_put_str(&mb, names[arg & 3]);
	msgbuf_put_u16(&mb, 0);
	msgbuf_put_u16(&mb, 0);
	msgbuf_put_u16(&mb, 0);
	msgbuf_end(&mb);
	client_sends(&mb, W_BIND, -1);
}

/* Describe or Close of a statement ('S', name) or of the unnamed portal. */
static void send_target(uint8_t type, uint8_t arg)
{
	bool statement = (arg & 4) == 0;
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, type);
	msgbuf_put_u8(&mb, statement ? 'S' : 'P');
	msgbuf_put_str(&mb, statement ? names[arg & 3] : "");
	msgbuf_end(&mb);
	if (type == PG_MSG_CLOSE)
		client_sends(&mb, W_CLOSE, statement ? arg & 3 : -1);
	else
		client_sends(&mb, statement ? W_DESC_S : W_DESC_P, -1);
}

static void send_simple(uint8_t type, int want)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, type);
	if (type == PG_MSG_EXECUTE) {
		msgbuf_put_str(&mb, "");
		msgbuf_put_u32(&mb, 0);
	}
	msgbuf_end(&mb);
	client_sends(&mb, want, -1);
}

/* Known defect, driven only when strict: a Query inside an extended batch
 * that fails is skipped by PostgreSQL, and the pending answers of what
 * the batch sent after it are never dropped; later answers are then
 * matched to the wrong requests. So, as libpq, a Sync ends an open batch
 * before a Query. */
static void send_query(uint8_t arg)
{
	struct msgbuf mb;

	if (batch_sent && !strict)
		send_simple(PG_MSG_SYNC, W_SYNC);
	msgbuf_init(&mb);
	codec_put_query(&mb, texts[arg & 7]);
	client_sends(&mb, W_QUERY, -1);
}

/* --- the server's answers, as server.c passes them ---------------------- */

/* server.c's may_release and release_from_client, transaction mode. */
static void maybe_release(struct server *s)
{
	struct client *c = s->client;

	if (s->expected_ready > 0 || c->batch_open || s->status != 'I')
		return;
	s->client = NULL;
	c->server = NULL;
}

/* One whole message from the server (server.c's active_message). */
static void server_says(struct server *s, const uint8_t *msg, size_t len)
{
	FUZZ_ASSERT(s->client == client);
	if (prepared_wants_response(s, msg[0]) &&
	    prepared_response(s, msg, len))
		return;
	if (msg[0] != PG_MSG_READY_FOR_QUERY) {
		client_send(s->client, msg, len);
		return;
	}
	FUZZ_ASSERT(s->expected_ready > 0);
	s->expected_ready--;
	prepared_ready(s);
	s->status = (char)msg[PG_HEADER_LEN];
	client_send(s->client, msg, len);
	maybe_release(s);
}

static void pg_answer(struct fake_pg *pg, struct msgbuf *mb)
{
	FUZZ_ASSERT(!mb->failed);
	server_says(pg->s, mb->data, mb->len);
	msgbuf_free(mb);
}

static void pg_reply(struct fake_pg *pg, uint8_t type, const char *tag)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	msgbuf_begin(&mb, type);
	if (tag)
		msgbuf_put_str(&mb, tag);
	if (type == 't')
		msgbuf_put_u16(&mb, 0);
	if (type == PG_MSG_READY_FOR_QUERY)
		msgbuf_put_u8(&mb, (uint8_t)pg->status);
	msgbuf_end(&mb);
	pg_answer(pg, &mb);
}

/* An error; in an extended message it skips to Sync, as PostgreSQL. */
static void pg_error(struct fake_pg *pg, const char *code, const char *fmt,
                     const char *arg, bool extended)
{
	char text[128];
	struct msgbuf mb;

	snprintf(text, sizeof(text), fmt, arg);
	msgbuf_init(&mb);
	codec_put_error(&mb, "ERROR", code, text);
	pg_answer(pg, &mb);
	if (pg->status == 'T')
		pg->status = 'E';
	pg->skipping = extended;
}

static int pg_find(const struct fake_pg *pg, const char *name)
{
	for (int i = 0; i < MAX_PG_STMTS; i++)
		if (pg->stmt_used[i] && strcmp(pg->stmt_name[i], name) == 0)
			return i;
	return -1;
}

/* Named statements (the unnamed one apart): at most sluice's bound.
 * Known defects, checked only when strict: sluice forgets a statement
 * whose Close a failed batch skipped, and the backend keeps it (one more
 * each); a duplicate Parse pipelined behind DEALLOCATE ALL or DISCARD ALL
 * prepares sluice's name unknown to sluice. */
static void pg_check_count(const struct fake_pg *pg)
{
	int named = 0;

	for (int i = 0; i < MAX_PG_STMTS; i++)
		named += pg->stmt_used[i] && pg->stmt_name[i][0];
	FUZZ_ASSERT(named <= MAX_PREPARED + (strict ? 0 : pg->closes_skipped) ||
	            (!strict && names_dropped));
}

static void pg_clear(struct fake_pg *pg, bool unnamed_too)
{
	for (int i = 0; i < MAX_PG_STMTS; i++)
		if (pg->stmt_name[i][0] || unnamed_too)
			pg->stmt_used[i] = false;
}

/* Runs a statement's text; true if it succeeded. */
static bool pg_run(struct fake_pg *pg, const char *sql, bool extended)
{
	const char *tag = sql;

	if (pg->fail_next) {
		pg_error(pg, "XX000", "%s failed", "statement", extended);
		return false;
	}
	if (strcmp(sql, "COMMIT") == 0) {
		tag = pg->status == 'E' ? "ROLLBACK" : "COMMIT";
		pg->status = 'I';
	} else if (pg->status == 'E') {
		pg_error(pg, "25P02", "current transaction is aborted%s", "",
		         extended);
		return false;
	} else if (strcmp(sql, "SELEC 3") == 0) {
		pg_error(pg, "42601", "syntax error at or near \"%s\"", "SELEC",
		         extended);
		return false;
	} else if (strcmp(sql, "BEGIN") == 0) {
		pg->status = 'T';
	} else if (strcmp(sql, "DEALLOCATE ALL") == 0) {
		pg_clear(pg, false);
		names_dropped = true;
	} else if (strcmp(sql, "DISCARD ALL") == 0) {
		if (pg->status == 'T') {
			pg_error(pg, "25001", "%s cannot run inside a transaction "
			         "block", "DISCARD ALL", extended);
			return false;
		}
		pg_clear(pg, true);
		pg->portal = false;
		names_dropped = true;
	} else {
		tag = "SELECT 1";
	}
	pg_reply(pg, PG_MSG_COMMAND_COMPLETE, tag);
	return true;
}

static void pg_parse(struct fake_pg *pg, struct codec_reader *r)
{
	const char *name = codec_get_str(r), *sql = codec_get_str(r);
	int i;

	FUZZ_ASSERT(name && sql);
	parses_failed++;  /* until it succeeds */
	if (pg->fail_next)
		return pg_error(pg, "XX000", "%s failed", "Parse", true);
	if (strcmp(sql, "SELEC 3") == 0)
		return pg_error(pg, "42601", "syntax error at or near \"%s\"",
		                "SELEC", true);
	if (*name && pg_find(pg, name) >= 0)
		return pg_error(pg, "42P05", "prepared statement \"%s\" already "
		                "exists", name, true);
	if ((i = pg_find(pg, name)) < 0)
		for (i = 0; pg->stmt_used[i]; i++)
			FUZZ_ASSERT(i + 1 < MAX_PG_STMTS);  /* see MAX_PG_STMTS */
	FUZZ_ASSERT(strlen(name) < 64 && strlen(sql) < 64);
	strcpy(pg->stmt_name[i], name);
	strcpy(pg->stmt_text[i], sql);
	pg->stmt_used[i] = true;
	pg_check_count(pg);
	parses_failed--;
	pg_reply(pg, '1', NULL);
}

static void pg_bind(struct fake_pg *pg, struct codec_reader *r)
{
	const char *portal = codec_get_str(r), *name = codec_get_str(r);
	int i;

	FUZZ_ASSERT(portal && name);
	if (pg->fail_next)
		return pg_error(pg, "XX000", "%s failed", "Bind", true);
	if ((i = pg_find(pg, name)) < 0)
		return pg_error(pg, "26000", "prepared statement \"%s\" does not "
		                "exist", name, true);
	snprintf(pg->portal_text, sizeof(pg->portal_text), "%s",
	         pg->stmt_text[i]);
	pg->portal = true;
	pg_reply(pg, '2', NULL);
}

static void pg_describe_or_close(struct fake_pg *pg, uint8_t type,
                                 struct codec_reader *r)
{
	uint8_t what = codec_get_u8(r);
	const char *name = codec_get_str(r);
	int i;

	FUZZ_ASSERT(name && (what == 'S' || what == 'P'));
	i = what == 'S' ? pg_find(pg, name) : -1;
	if (type == PG_MSG_CLOSE) {
		if (i >= 0)
			pg->stmt_used[i] = false;
		if (what == 'P')
			pg->portal = false;
		return pg_reply(pg, '3', NULL);
	}
	if (what == 'S' && i < 0)
		return pg_error(pg, "26000", "prepared statement \"%s\" does not "
		                "exist", name, true);
	if (what == 'P' && !pg->portal)
		return pg_error(pg, "34000", "portal \"%s\" does not exist", "",
		                true);
	if (what == 'S')
		pg_reply(pg, 't', NULL);
	pg_reply(pg, 'n', NULL);
}

static void pg_sync(struct fake_pg *pg)
{
	pg->skipping = false;
	if (pg->status == 'I')
		pg->portal = false;  /* the implicit transaction ends */
	pg_reply(pg, PG_MSG_READY_FOR_QUERY, NULL);
}

/* A Parse of name failed or was skipped: noted (the first 8 names). */
static void note_failed_parse(const char *name)
{
	size_t i;

	for (i = 0; i < 8 && failed_names[i][0]; i++)
		if (strcmp(failed_names[i], name) == 0)
			return;
	if (i < 8)
		snprintf(failed_names[i], sizeof(failed_names[i]), "%s", name);
}

/* The backend reads one message sluice sent; false if there is none. */
static bool pg_step(struct fake_pg *pg)
{
	struct codec_reader r;
	struct pg_header h;
	size_t whole;
	int failed_before;
	int i;

	if (pg->in_len == 0)
		return false;
	FUZZ_ASSERT(codec_read_header(pg->in, pg->in_len, 1 << 20, &h) ==
	            CODEC_OK);
	whole = (size_t)h.len + 1;
	FUZZ_ASSERT(pg->in_len >= whole);
	codec_reader_init(&r, pg->in + PG_HEADER_LEN, whole - PG_HEADER_LEN);
	trace("  S%d reads %c %s%s\n", pg == pgs ? 0 : 1, h.type,
	      h.type == PG_MSG_BIND || h.type == PG_MSG_CLOSE ||
	      h.type == PG_MSG_DESCRIBE ?
	      (const char *)pg->in + PG_HEADER_LEN + 1 :
	      h.type == PG_MSG_SYNC || h.type == PG_MSG_FLUSH ||
	      h.type == PG_MSG_EXECUTE ? "" :
	      (const char *)pg->in + PG_HEADER_LEN,
	      pg->skipping ? " (skipped)" : "");
	if (pg->skipping && h.type == PG_MSG_CLOSE &&
	    memcmp(pg->in + PG_HEADER_LEN + 1, "sluice_", 7) == 0)
		pg->closes_skipped++;
	failed_before = parses_failed;
	if (pg->skipping && h.type == PG_MSG_PARSE)
		parses_failed++;
	if (!pg->skipping || h.type == PG_MSG_SYNC) {
		switch (h.type) {
		case PG_MSG_PARSE:
			pg_parse(pg, &r);
			break;
		case PG_MSG_BIND:
			pg_bind(pg, &r);
			break;
		case PG_MSG_DESCRIBE:
		case PG_MSG_CLOSE:
			pg_describe_or_close(pg, h.type, &r);
			break;
		case PG_MSG_EXECUTE:
			if (!pg->portal)
				pg_error(pg, "34000", "portal \"%s\" does not exist",
				         "", true);
			else
				pg_run(pg, pg->portal_text, true);
			break;
		case PG_MSG_SYNC:
			pg_sync(pg);
			break;
		case PG_MSG_QUERY:
			/* a Query drops the unnamed statement and portal */
			if ((i = pg_find(pg, "")) >= 0)
				pg->stmt_used[i] = false;
			pg->portal = false;
			pg_run(pg, (const char *)pg->in + PG_HEADER_LEN, false);
			pg_reply(pg, PG_MSG_READY_FOR_QUERY, NULL);
			break;
		case PG_MSG_FLUSH:
			break;
		default:
			FUZZ_ASSERT(!"unexpected message to the server");
		}
	}
	if (h.type == PG_MSG_PARSE && parses_failed > failed_before)
		note_failed_parse((const char *)pg->in + PG_HEADER_LEN);
	pg->fail_next = false;
	memmove(pg->in, pg->in + whole, pg->in_len - whole);
	pg->in_len -= whole;
	return true;
}

/* --- one input ------------------------------------------------------------ */

static void setup(void)
{
	int fds[2];

	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) ==
	            0);
	client = calloc(1, sizeof(*client));
	FUZZ_ASSERT(client != NULL);
	conn_init(&client->conn, &ctx, &client_ops, client, true);
	uv_pipe_init(ctx.loop, &client->conn.h.pipe, 0);
	client->conn.h.handle.data = &client->conn;
	FUZZ_ASSERT(uv_pipe_open(&client->conn.h.pipe, fds[0]) == 0);
	close(fds[1]);
	client->pool = &pool;
	client->state = CLIENT_ACTIVE;
	pool.prep_id = 0;
	for (size_t i = 0; i < NSERVERS; i++) {
		struct server *s = calloc(1, sizeof(*s));

		FUZZ_ASSERT(s != NULL);
		memset(&pgs[i], 0, sizeof(pgs[i]));
		conn_init(&s->conn, &ctx, &server_ops, s, true);
		s->pool = &pool;
		s->status = 'I';
		pgs[i].s = s;
		pgs[i].status = 'I';
	}
	inbox_len = 0;
	wants_head = wants_len = 0;
	client_skipping = false;
	memset(known, 0, sizeof(known));
	names_dropped = false;
	parses_failed = 0;
	memset(failed_names, 0, sizeof(failed_names));
	batch_sent = false;
	next_server = 0;
}

/* The registry's distinct_statements, from SHOW PREPARED_STATS. */
static void check_registry_empty(void)
{
	struct msgbuf mb;
	size_t pos = 0;
	uint32_t len;

	msgbuf_init(&mb);
	prepared_show_stats(&ctx, &mb);
	FUZZ_ASSERT(!mb.failed);
	while (pos < mb.len && mb.data[pos] != PG_MSG_DATA_ROW) {
		memcpy(&len, mb.data + pos + 1, 4);
		pos += (size_t)ntohl(len) + 1;
	}
	FUZZ_ASSERT(pos + 5 <= mb.len);
	/* the last column of the one pool's row: length 1, "0" */
	memcpy(&len, mb.data + pos + 1, 4);
	len = ntohl(len);
	FUZZ_ASSERT(pos + len < mb.len && mb.data[pos + len] == '0' &&
	            mb.data[pos + len - 1] == 1);
	msgbuf_free(&mb);
}

/* sluice logs no answer it could not match ("unexpected ParseComplete");
 * empties the log for the next input. */
static void check_log(void)
{
	char line[512];
	FILE *fp;

	fflush(NULL);
	fp = fopen(log_path, "r");
	FUZZ_ASSERT(fp != NULL);
	while (fgets(line, sizeof(line), fp))
		FUZZ_ASSERT(strstr(line, "unexpected") == NULL);
	fclose(fp);
	FUZZ_ASSERT(truncate(log_path, 0) == 0);
}

static void teardown(void)
{
	conn_close(&client->conn);
	uv_run(ctx.loop, UV_RUN_DEFAULT);
	client = NULL;
	for (size_t i = 0; i < NSERVERS; i++) {
		struct server *s = pgs[i].s;

		prepared_server_free(s);
		free(s->conn.out);
		free(s);
		pgs[i].s = NULL;
	}
	check_registry_empty();
	prepared_registry_free(&ctx);
	check_log();
	FUZZ_ASSERT(uv_loop_alive(ctx.loop) == 0);
}

/* The servers answer everything they have; the client then waits for
 * nothing. */
static void drain(void)
{
	bool progress = true;

	while (progress) {
		progress = false;
		for (size_t i = 0; i < NSERVERS; i++) {
			while (pg_step(&pgs[i])) {
				progress = true;
				client_pump();
			}
		}
	}
	FUZZ_ASSERT(inbox_len == 0);
	FUZZ_ASSERT(wants_len == 0 || client_skipping);
}

static void run_op(uint8_t op)
{
	uint8_t arg = op >> 4;
	struct fake_pg *pg = NULL;

	if (client->server)
		pg = client->server == pgs[0].s ? &pgs[0] : &pgs[1];
	switch (op & 15) {
	case 0:
	case 1:
		send_parse((uint8_t)(arg | (op & 1) << 4));
		break;
	case 2:
		send_bind(arg);
		break;
	case 3:
		send_target(PG_MSG_DESCRIBE, arg);
		break;
	case 4:
		send_target(PG_MSG_CLOSE, arg);
		break;
	case 5:
		send_simple(PG_MSG_EXECUTE, W_EXEC);
		break;
	case 6:
	case 7:
		send_simple(PG_MSG_SYNC, W_SYNC);
		break;
	case 8:
		send_simple(PG_MSG_FLUSH, -1);
		break;
	case 9:
		send_query(arg);
		break;
	case 10:
	case 11:
	case 12:
		/* the linked server (else the one arg names) answers one */
		pg = pg ? pg : &pgs[arg & 1];
		pg->fail_next = (op & 15) == 12;
		if (pg_step(pg))
			client_pump();
		break;
	case 13:
		pg = pg ? pg : &pgs[arg & 1];
		while (pg_step(pg))
			client_pump();
		break;
	case 14:
		next_server = arg;
		break;
	default:
		drain();
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_OPS)
		return 0;
	setup();
	for (size_t i = 0; i < size; i++)
		run_op(data[i]);
	drain();
	teardown();
	return 0;
}
