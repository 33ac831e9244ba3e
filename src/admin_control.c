/*
 * admin_control.c - PAUSE, RESUME, SUSPEND, RECONNECT, WAIT_CLOSE, DISABLE,
 * ENABLE, KILL, KILL_CLIENT, RELOAD, SHUTDOWN and SET on the console.
 *
 * Each calls control.c and answers with PgBouncer's command tag. PAUSE and
 * WAIT_CLOSE answer only when their work is done, as in PgBouncer: the
 * console client stops reading until then.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin_control.h"
#include "client.h"
#include "codec.h"
#include "control.h"
#include "log.h"
#include "sluice.h"

/* An empty argument means "every database". */
static const char *db_or_all(const char *arg)
{
	return arg && *arg ? arg : NULL;
}

static void error(struct msgbuf *mb, const char *message)
{
	codec_put_error(mb, "ERROR", SQLSTATE_PROTOCOL_VIOLATION, message);
}

static bool wait_for(struct client *c, enum admin_wait what, const char *arg)
{
	c->admin_wait = what;
	c->conn.ctx->admin_waits++;
	free(c->admin_wait_db);
	c->admin_wait_db = *arg ? strdup(arg) : NULL;
	conn_want_read(&c->conn, false);
	return true;
}

static bool wait_done(struct client *c)
{
	const char *db = db_or_all(c->admin_wait_db);

	switch (c->admin_wait) {
	case ADMIN_WAIT_NONE:
		return false;
	case ADMIN_WAIT_PAUSE:
		return control_pause_done(c->conn.ctx, db);
	case ADMIN_WAIT_CLOSE:
		return control_wait_close_done(c->conn.ctx, db);
	}
	return false;
}

/* Sends the answer of a PAUSE or WAIT_CLOSE whose work is done; the
 * commands the client sent behind it are read again. */
static void answer_wait(struct client *c)
{
	struct msgbuf mb;

	c->conn.ctx->admin_waits--;
	msgbuf_init(&mb);
	codec_put_command_complete(&mb, c->admin_wait == ADMIN_WAIT_PAUSE ?
	                                "PAUSE" : "WAIT_CLOSE");
	codec_put_ready(&mb, 'I');
	c->admin_wait = ADMIN_WAIT_NONE;
	conn_queue_msgbuf(&c->conn, &mb);
	msgbuf_free(&mb);
	if (conn_flush(&c->conn, &c->conn) < 0)
		client_close(c, "write failed");
	else
		conn_want_read(&c->conn, true);
}

void admin_control_tick(struct sluice *ctx)
{
	struct list *next;

	/* next is taken first: answer_wait may close (and unlist) c */
	for (struct list *l = ctx->clients.next; ctx->admin_waits > 0 &&
	     l != &ctx->clients; l = next) {
		struct client *c = LIST_ENTRY(l, struct client, node);

		next = l->next;
		if (c->state == CLIENT_ADMIN && wait_done(c))
			answer_wait(c);
	}
}

static bool kill_client(struct client *c, const char *arg, struct msgbuf *mb)
{
	const char *digits = strncasecmp(arg, "C-", 2) == 0 ? arg + 2 : arg;
	char *end;
	unsigned long long id = strtoull(digits, &end, 10);

	if (!*digits || *end || control_kill_client(c->conn.ctx, id) < 0)
		error(mb, "no such client");
	else
		codec_put_command_complete(mb, "KILL_CLIENT");
	return false;
}

static bool reload(struct client *c, struct msgbuf *mb)
{
	char err[512];

	if (control_reload(c->conn.ctx, err, sizeof(err)) < 0)
		error(mb, err);
	else
		codec_put_command_complete(mb, "RELOAD");
	return false;
}

static bool shutdown_cmd(struct client *c, const char *arg, struct msgbuf *mb)
{
	enum shutdown_mode mode = SHUTDOWN_NONE;

	if (strcasecmp(arg, "WAIT_FOR_SERVERS") == 0)
		mode = SHUTDOWN_WAIT_FOR_SERVERS;
	else if (strcasecmp(arg, "WAIT_FOR_CLIENTS") == 0)
		mode = SHUTDOWN_WAIT_FOR_CLIENTS;
	else if (*arg) {
		error(mb, "SHUTDOWN takes WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS");
		return false;
	}
	/* Immediate: the console closes with everything else, as PgBouncer. */
	if (mode != SHUTDOWN_NONE)
		codec_put_command_complete(mb, "SHUTDOWN");
	control_shutdown(c->conn.ctx, mode, "SHUTDOWN on the console");
	return false;
}

static bool set_cmd(struct client *c, const char *key, const char *value,
                    struct msgbuf *mb)
{
	char err[256];

	if (control_set(c->conn.ctx, key, value, err, sizeof(err)) < 0)
		error(mb, err);
	else
		codec_put_command_complete(mb, "SET");
	return false;
}

/* Commands that need a database name. */
static bool with_db(struct client *c, const char *word, const char *arg,
                    struct msgbuf *mb)
{
	if (!*arg) {
		error(mb, "a database name is needed");
		return false;
	}
	if (strcasecmp(word, "DISABLE") == 0)
		control_disable(c->conn.ctx, arg, true);
	else if (strcasecmp(word, "ENABLE") == 0)
		control_disable(c->conn.ctx, arg, false);
	else
		control_kill(c->conn.ctx, arg);
	codec_put_command_complete(mb, word);
	return false;
}

static const char *const control_words[] = {
	"DISABLE", "ENABLE", "KILL", "KILL_CLIENT", "PAUSE", "RECONNECT",
	"RELOAD", "RESUME", "SET", "SHUTDOWN", "SUSPEND", "WAIT_CLOSE",
};

bool admin_is_control(const char *word)
{
	for (size_t i = 0; i < sizeof(control_words) / sizeof(control_words[0]); i++)
		if (strcasecmp(word, control_words[i]) == 0)
			return true;
	return false;
}

bool admin_control(struct client *c, const char *word, const char *arg,
                   const char *value, struct msgbuf *mb)
{
	const char *db = db_or_all(arg);
	char word_esc[LOG_ESCAPED_NAME], arg_esc[LOG_ESCAPED_NAME];

	log_info(&c->conn, "console: %s %s",
	         log_escape(word, word_esc, sizeof(word_esc)),
	         log_escape(arg, arg_esc, sizeof(arg_esc)));
	if (strcasecmp(word, "PAUSE") == 0) {
		control_pause(c->conn.ctx, db);
		if (!control_pause_done(c->conn.ctx, db))
			return wait_for(c, ADMIN_WAIT_PAUSE, arg);
	} else if (strcasecmp(word, "WAIT_CLOSE") == 0) {
		if (!control_wait_close_done(c->conn.ctx, db))
			return wait_for(c, ADMIN_WAIT_CLOSE, arg);
	} else if (strcasecmp(word, "RESUME") == 0) {
		control_resume(c->conn.ctx, db);
	} else if (strcasecmp(word, "SUSPEND") == 0) {
		control_suspend(c->conn.ctx);
	} else if (strcasecmp(word, "RECONNECT") == 0) {
		control_reconnect(c->conn.ctx, db);
	} else if (strcasecmp(word, "KILL_CLIENT") == 0) {
		return kill_client(c, arg, mb);
	} else if (strcasecmp(word, "RELOAD") == 0) {
		return reload(c, mb);
	} else if (strcasecmp(word, "SHUTDOWN") == 0) {
		return shutdown_cmd(c, arg, mb);
	} else if (strcasecmp(word, "SET") == 0) {
		return set_cmd(c, arg, value, mb);
	} else {
		return with_db(c, word, arg, mb);
	}
	codec_put_command_complete(mb, word);
	return false;
}
