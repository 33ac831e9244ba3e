/*
 * admin.c - the admin console: PgBouncer's virtual database "pgbouncer"
 * (also "sluice"), spoken over the simple query protocol.
 *
 * Owns the console's side of the wire (welcome, one answer per Query,
 * errors that keep the session open), PgBouncer's command grammar, the
 * table of commands with who may run them (admin_users: everything;
 * stats_users: SHOW but FDS), the result-set writer, and the SHOW commands
 * with little to walk: HELP, VERSION, STATE, CONFIG, LISTS, MEM, LEAKS,
 * LEAK_STATS, the lists sluice does not keep (DNS, peers, FDS) and
 * PgBouncer's fake parameters. Pools, connections, databases and users are
 * shown by admin_show.c, the counters by stats.c.
 */
#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "admin.h"
#include "admin_show.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "admin_control.h"
#include "leak.h"
#include "prepared.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "sluice.h"
#include "stats.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* PgBouncer answers console errors with this SQLSTATE, whatever they are. */
#define ADMIN_SQLSTATE SQLSTATE_PROTOCOL_VIOLATION
/* PgBouncer's text when a stats_users login tries more than SHOW. */
#define ADMIN_NEEDED "admin access needed"
/* An admin_users command sluice does not have yet. */

/* The console pauses itself while its answers are pending: a client that
 * sends commands without reading cannot make sluice buffer the answers. */
static void send_and_ready(struct client *c, struct msgbuf *mb)
{
	codec_put_ready(mb, 'I');
	conn_queue_msgbuf(&c->conn, mb);
	msgbuf_free(mb);
	if (conn_flush(&c->conn, &c->conn) < 0)
		client_close(c, "write failed");
}

void admin_welcome(struct client *c)
{
	static const char *const params[][2] = {
		{ "server_version", SLUICE_VERSION "/sluice" },
		{ "server_encoding", "UTF8" },
		{ "client_encoding", "UTF8" },
		{ "DateStyle", "ISO, MDY" },
		{ "TimeZone", "UTC" },
		{ "standard_conforming_strings", "on" },
		{ "integer_datetimes", "on" },
		{ "application_name", "sluice" },
	};
	struct msgbuf mb;

	msgbuf_init(&mb);
	codec_put_auth(&mb, PG_AUTH_OK, NULL, 0);
	for (size_t i = 0; i < N_ELEMS(params); i++)
		codec_put_parameter_status(&mb, params[i][0], params[i][1]);
	codec_put_backend_key(&mb, c->cancel_pid, c->cancel_key);
	c->conn.console = true;
	client_login_done(c);
	c->state = CLIENT_ADMIN;
	send_and_ready(c, &mb);
	conn_want_read(&c->conn, true);
}

/* --- result sets ------------------------------------------------------ */

static const struct column_type {
	char letter;
	uint32_t oid;              /* pg_type OID clients dispatch on */
	int16_t len;               /* typlen, -1: variable */
} column_types[] = {
	{ 's', 25, -1 }, { 'T', 25, -1 }, { 'i', 23, 4 },
	{ 'q', 20, 8 }, { 'N', 1700, -1 }, { 'b', 17, -1 },
};

static const struct column_type *column_type(char letter)
{
	for (size_t i = 0; i < N_ELEMS(column_types); i++)
		if (column_types[i].letter == letter)
			return &column_types[i];
	assert(!"unknown column type letter");
	return &column_types[0];
}

void admin_result_begin(struct admin_result *r, struct msgbuf *mb,
                        const char *types, const char *const *names,
                        size_t nnames)
{
	r->mb = mb;
	r->types = types;
	r->ncols = strlen(types);
	r->col = r->ncols;
	assert(nnames == r->ncols);
	msgbuf_begin(mb, PG_MSG_ROW_DESCRIPTION);
	msgbuf_put_u16(mb, (uint16_t)r->ncols);
	for (size_t i = 0; i < r->ncols; i++) {
		const struct column_type *t = column_type(types[i]);

		msgbuf_put_str(mb, names[i]);
		msgbuf_put_u32(mb, 0);          /* not a table column */
		msgbuf_put_u16(mb, 0);
		msgbuf_put_u32(mb, t->oid);
		msgbuf_put_u16(mb, (uint16_t)t->len);
		msgbuf_put_u32(mb, UINT32_MAX); /* typmod -1 */
		msgbuf_put_u16(mb, 0);          /* text format */
	}
	msgbuf_end(mb);
}

void admin_result_end(struct admin_result *r)
{
	codec_put_command_complete(r->mb, "SHOW");
}

void admin_row_begin(struct admin_result *r)
{
	assert(r->col == r->ncols);
	msgbuf_begin(r->mb, PG_MSG_DATA_ROW);
	msgbuf_put_u16(r->mb, (uint16_t)r->ncols);
	r->col = 0;
}

void admin_row_end(struct admin_result *r)
{
	assert(r->col == r->ncols);
	msgbuf_end(r->mb);
}

void admin_put_text(struct admin_result *r, const char *s)
{
	assert(r->col < r->ncols);
	r->col++;
	if (!s) {
		msgbuf_put_u32(r->mb, UINT32_MAX);
		return;
	}
	msgbuf_put_u32(r->mb, (uint32_t)strlen(s));
	msgbuf_put_bytes(r->mb, s, strlen(s));
}

void admin_put_int(struct admin_result *r, long long v)
{
	char buf[24];

	assert(r->col < r->ncols && strchr("iqN", r->types[r->col]));
	snprintf(buf, sizeof(buf), "%lld", v);
	admin_put_text(r, buf);
}

void admin_put_uint(struct admin_result *r, uint64_t v)
{
	char buf[24];

	assert(r->col < r->ncols && strchr("qN", r->types[r->col]));
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
	admin_put_text(r, buf);
}

/* As PgBouncer writes times: local, to the second, with the zone. */
void admin_put_time(struct admin_result *r, uint64_t wall_us)
{
	time_t t = (time_t)(wall_us / 1000000);
	struct tm tm;
	char buf[64];

	localtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %Z", &tm);
	admin_put_text(r, buf);
}

/* A row of two text columns. */
static void put_pair(struct admin_result *r, const char *key, const char *value)
{
	admin_row_begin(r);
	admin_put_text(r, key);
	admin_put_text(r, value);
	admin_row_end(r);
}

/* --- SHOW commands answered from the settings -------------------------- */

static int show_help(struct sluice *ctx, struct msgbuf *mb)
{
	(void)ctx;
	/* PgBouncer's NOTICE, with sluice's own SHOW LEAKS added. */
	msgbuf_begin(mb, PG_MSG_NOTICE);
	msgbuf_put_u8(mb, 'S');
	msgbuf_put_str(mb, "NOTICE");
	msgbuf_put_u8(mb, 'C');
	msgbuf_put_str(mb, "00000");
	msgbuf_put_u8(mb, 'M');
	msgbuf_put_str(mb, "Console usage");
	msgbuf_put_u8(mb, 'D');
	msgbuf_put_str(mb, "\n\tSHOW HELP|CONFIG|DATABASES"
	               "|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
	               "\tSHOW PEERS|PEER_POOLS\n"
	               "\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n"
	               "\tSHOW DNS_HOSTS|DNS_ZONES\n"
	               "\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
	               "\tSHOW LEAKS|LEAK_STATS\n"
	               "\tSET key = arg\n\tRELOAD\n\tPAUSE [<db>]\n"
	               "\tRESUME [<db>]\n\tDISABLE <db>\n\tENABLE <db>\n"
	               "\tRECONNECT [<db>]\n\tKILL [<db>]\n"
	               "\tKILL_CLIENT <client_id>\n\tSUSPEND\n\tSHUTDOWN\n"
	               "\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n"
	               "\tWAIT_CLOSE [<db>]");
	msgbuf_put_u8(mb, 0);
	msgbuf_end(mb);
	codec_put_command_complete(mb, "SHOW");
	return 0;
}

static int show_version(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = { "version" };
	struct admin_result r;

	(void)ctx;
	admin_result_begin(&r, mb, "s", cols, N_ELEMS(cols));
	admin_row_begin(&r);
	admin_put_text(&r, "sluice " SLUICE_VERSION);
	admin_row_end(&r);
	admin_result_end(&r);
	return 0;
}

static int show_state(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = { "key", "value" };
	bool active = !ctx->paused && !ctx->suspended;
	struct admin_result r;

	admin_result_begin(&r, mb, "ss", cols, N_ELEMS(cols));
	put_pair(&r, "active", active ? "yes" : "no");
	put_pair(&r, "paused", ctx->paused ? "yes" : "no");
	put_pair(&r, "suspended", ctx->suspended ? "yes" : "no");
	admin_result_end(&r);
	return 0;
}

static void config_row(void *arg, const char *name, const char *value,
                       const char *default_value, bool reloadable)
{
	struct admin_result *r = arg;

	admin_row_begin(r);
	admin_put_text(r, name);
	admin_put_text(r, value);
	admin_put_text(r, default_value);
	admin_put_text(r, reloadable ? "yes" : "no");
	admin_row_end(r);
}

static int show_config(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = { "key", "value", "default", "changeable" };
	struct admin_result r;

	admin_result_begin(&r, mb, "ssss", cols, N_ELEMS(cols));
	config_foreach_setting(ctx->config, config_row, &r);
	admin_result_end(&r);
	return 0;
}

/*
 * What sluice does not keep gets PgBouncer's columns and no rows: host
 * names are resolved when a server connects, without a cache; there is no
 * [peers] section; and no socket is handed over (no online restart), so
 * FDS has nothing to list.
 */
static const struct empty_show {
	const char *word;
	const char *types;
	const char *const names[16];
} empty_shows[] = {
	{ "DNS_HOSTS", "sqs", { "hostname", "ttl", "addrs" } },
	{ "DNS_ZONES", "sqi", { "zonename", "serial", "count" } },
	{ "FDS", "issssiqisssssbb", {
		"fd", "task", "user", "database", "addr", "port", "cancel",
		"link", "client_encoding", "std_strings", "datestyle",
		"timezone", "password", "scram_client_key", "scram_server_key" } },
	{ "PEERS", "isii", { "peer_id", "host", "port", "pool_size" } },
	{ "PEER_POOLS", "iiiii", {
		"peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req",
		"sv_active_cancel", "sv_login" } },
};

static void show_empty(const char *word, struct msgbuf *mb)
{
	for (size_t i = 0; i < N_ELEMS(empty_shows); i++) {
		const struct empty_show *e = &empty_shows[i];
		struct admin_result r;

		if (strcmp(word, e->word) != 0)
			continue;
		admin_result_begin(&r, mb, e->types, e->names, strlen(e->types));
		admin_result_end(&r);
	}
}

/* sluice's own: the leak detector's offenders and counts (leak.c). */
static int show_leaks(struct sluice *ctx, struct msgbuf *mb)
{
	leak_show_leaks(ctx, mb);
	return 0;
}

static int show_prepared_stats(struct sluice *ctx, struct msgbuf *mb)
{
	prepared_show_stats(ctx, mb);
	return 0;
}

static int show_leak_stats(struct sluice *ctx, struct msgbuf *mb)
{
	leak_show_stats(ctx, mb);
	return 0;
}

/* PgBouncer's answers for parameters that drivers ask the console about. */
static const char *const fake_params[][2] = {
	{ "client_encoding", "UTF-8" },
	{ "default_transaction_isolation", "read committed" },
	{ "standard_conforming_strings", "on" },
	{ "datestyle", "ISO" },
	{ "timezone", "GMT" },
	{ "extra_float_digits", "2" },
};

static const char *const *fake_param(const char *name)
{
	for (size_t i = 0; i < N_ELEMS(fake_params); i++)
		if (strcasecmp(name, fake_params[i][0]) == 0)
			return fake_params[i];
	return NULL;
}

static void show_fake_param(const char *const *param, struct msgbuf *mb)
{
	struct admin_result r;

	admin_result_begin(&r, mb, "s", param, 1);
	admin_row_begin(&r);
	admin_put_text(&r, param[1]);
	admin_row_end(&r);
	admin_result_end(&r);
}

/* --- SHOW LISTS, MEM -------------------------------------------------- */

/* A row of a name and an int4. */
static void put_named_int(struct admin_result *r, const char *name, long long v)
{
	admin_row_begin(r);
	admin_put_text(r, name);
	admin_put_int(r, v);
	admin_row_end(r);
}

struct object_counts {
	int pools;                 /* with the console's */
	int clients;
	int login_clients;
	int servers;
};

static void count_objects(struct sluice *ctx, struct object_counts *n)
{
	n->pools = 1 + (int)list_count(&ctx->pools);
	n->clients = n->login_clients = n->servers = 0;
	for (struct list *l = ctx->clients.next; l != &ctx->clients; l = l->next) {
		const struct client *c = LIST_ENTRY(l, struct client, node);

		n->clients++;
		if (!c->pool && c->state != CLIENT_ADMIN)
			n->login_clients++;
	}
	for (struct list *l = ctx->pools.next; l != &ctx->pools; l = l->next)
		n->servers += LIST_ENTRY(l, struct pool, node)->server_count;
}

/* Rows, not columns, as PgBouncer. sluice keeps no free lists and no DNS
 * cache: those are 0. */
static int show_lists(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = { "list", "items" };
	long ndbs = admin_count_databases(ctx), nusers = admin_count_users(ctx);
	struct object_counts n;
	struct admin_result r;

	if (ndbs < 0 || nusers < 0)
		return -1;
	count_objects(ctx, &n);
	admin_result_begin(&r, mb, "si", cols, N_ELEMS(cols));
	put_named_int(&r, "databases", ndbs);
	put_named_int(&r, "users", nusers);
	put_named_int(&r, "peers", 0);
	put_named_int(&r, "pools", n.pools);
	put_named_int(&r, "peer_pools", 0);
	put_named_int(&r, "free_clients", 0);
	put_named_int(&r, "used_clients", n.clients);
	put_named_int(&r, "login_clients", n.login_clients);
	put_named_int(&r, "free_servers", 0);
	put_named_int(&r, "used_servers", n.servers);
	put_named_int(&r, "dns_names", 0);
	put_named_int(&r, "dns_zones", 0);
	put_named_int(&r, "dns_queries", 0);
	put_named_int(&r, "dns_pending", 0);
	admin_result_end(&r);
	return 0;
}

static void put_mem_row(struct admin_result *r, const char *name, size_t size,
                        int used)
{
	admin_row_begin(r);
	admin_put_text(r, name);
	admin_put_int(r, (long long)size);
	admin_put_int(r, used);
	admin_put_int(r, 0);              /* free: no free lists */
	admin_put_int(r, (long long)size * used);
	admin_row_end(r);
}

/* PgBouncer lists its slab caches; sluice's objects come from malloc, so
 * these rows say how many of each are alive and their fixed size. */
static int show_mem(struct sluice *ctx, struct msgbuf *mb)
{
	static const char *const cols[] = {
		"name", "size", "used", "free", "memtotal",
	};
	struct object_counts n;
	struct admin_result r;

	count_objects(ctx, &n);
	admin_result_begin(&r, mb, "siiii", cols, N_ELEMS(cols));
	put_mem_row(&r, "pool_cache", sizeof(struct pool), n.pools - 1);
	put_mem_row(&r, "server_cache", sizeof(struct server), n.servers);
	put_mem_row(&r, "client_cache", sizeof(struct client), n.clients);
	admin_result_end(&r);
	return 0;
}

/* --- commands --------------------------------------------------------- */

struct show_command {
	const char *word;
	/* NULL: one of empty_shows */
	int (*run)(struct sluice *ctx, struct msgbuf *mb);
	bool admin_only;           /* PgBouncer keeps SHOW FDS from stats_users */
};

static const struct show_command shows[] = {
	{ "ACTIVE_SOCKETS", admin_show_active_sockets, false },
	{ "CLIENTS", admin_show_clients, false },
	{ "CONFIG", show_config, false },
	{ "DATABASES", admin_show_databases, false },
	{ "DNS_HOSTS", NULL, false },
	{ "DNS_ZONES", NULL, false },
	{ "FDS", NULL, true },
	{ "HELP", show_help, false },
	{ "LEAKS", show_leaks, false },
	{ "LEAK_STATS", show_leak_stats, false },
	{ "LISTS", show_lists, false },
	{ "MEM", show_mem, false },
	{ "PEERS", NULL, false },
	{ "PEER_POOLS", NULL, false },
	{ "POOLS", admin_show_pools, false },
	{ "PREPARED_STATS", show_prepared_stats, false },
	{ "SERVERS", admin_show_servers, false },
	{ "SOCKETS", admin_show_sockets, false },
	{ "STATE", show_state, false },
	{ "STATS", stats_show, false },
	{ "STATS_AVERAGES", stats_show_averages, false },
	{ "STATS_TOTALS", stats_show_totals, false },
	{ "TOTALS", stats_show_sum, false },
	{ "USERS", admin_show_users, false },
	{ "VERSION", show_version, false },
};

/*
 * A console command as PgBouncer's grammar reads it:
 *   word [word] [;]              SHOW POOLS, PAUSE mydb, RELOAD
 *   SET key (= | TO) value [;]   value a word or a 'string'
 * A word is [0-9A-Za-z_]+ or a "quoted" name ("" stands for one "). The
 * buffer sizes are PgBouncer's: longer is "bad arguments".
 */
struct command {
	const char *sql;           /* the query, for error messages */
	char word[16];
	char arg[64];
	char value[256];
};

enum parse_result {
	PARSE_OK,
	PARSE_INVALID,             /* not the grammar: "invalid command" */
	PARSE_BAD_ARGS,            /* too long or empty: "bad arguments" */
};

struct scanner {
	const char *p;
	bool too_long;
};

static bool skip_space(struct scanner *s)
{
	const char *start = s->p;

	while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')
		s->p++;
	return s->p > start;
}

static void scan_char(struct scanner *s, char ch, char *buf, size_t len, size_t *n)
{
	if (*n + 1 < len)
		buf[(*n)++] = ch;
	else
		s->too_long = true;
}

/* A bare word, or a token in quote characters (doubled inside), into buf. */
static bool scan_token(struct scanner *s, char quote, char *buf, size_t len)
{
	const char *p = s->p;
	size_t n = 0;

	if (*p == quote) {
		for (p++; *p && !(*p == quote && p[1] != quote); p++) {
			if (*p == quote)
				p++;
			scan_char(s, *p, buf, len, &n);
		}
		if (*p++ != quote)
			return false;
	} else {
		for (; isalnum((unsigned char)*p) || *p == '_'; p++)
			scan_char(s, *p, buf, len, &n);
		if (p == s->p)
			return false;
	}
	buf[n] = '\0';
	s->p = p;
	return true;
}

/* An optional ';', then nothing but white space. */
static bool scan_end(struct scanner *s)
{
	skip_space(s);
	if (*s->p == ';') {
		s->p++;
		skip_space(s);
	}
	return *s->p == '\0';
}

static enum parse_result parse_plain(const char *sql, struct command *cmd)
{
	struct scanner s = { sql, false };

	skip_space(&s);
	if (!scan_token(&s, '"', cmd->word, sizeof(cmd->word)))
		return PARSE_INVALID;
	cmd->arg[0] = '\0';
	if (skip_space(&s) && *s.p != ';' && *s.p != '\0' &&
	    !scan_token(&s, '"', cmd->arg, sizeof(cmd->arg)))
		return PARSE_INVALID;
	if (!scan_end(&s))
		return PARSE_INVALID;
	return s.too_long ? PARSE_BAD_ARGS : PARSE_OK;
}

static enum parse_result parse_set(const char *sql, struct command *cmd)
{
	struct scanner s = { sql, false };
	char quote;

	skip_space(&s);
	if (strncasecmp(s.p, "set", 3) != 0)
		return PARSE_INVALID;
	s.p += 3;
	if (!skip_space(&s) || !scan_token(&s, '"', cmd->arg, sizeof(cmd->arg)))
		return PARSE_INVALID;
	skip_space(&s);
	if (*s.p == '=')
		s.p++;
	else if (strncasecmp(s.p, "to", 2) == 0)
		s.p += 2;
	else
		return PARSE_INVALID;
	skip_space(&s);
	quote = *s.p == '\'' ? '\'' : '"';
	if (!scan_token(&s, quote, cmd->value, sizeof(cmd->value)) || !scan_end(&s))
		return PARSE_INVALID;
	return s.too_long || !cmd->arg[0] ? PARSE_BAD_ARGS : PARSE_OK;
}

/* Replaces what mb holds with an ERROR; the session goes on. */
static void console_error(struct client *c, struct msgbuf *mb, const char *sqlstate,
                          const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void console_error(struct client *c, struct msgbuf *mb, const char *sqlstate,
                          const char *fmt, ...)
{
	char message[512];
	char esc[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	log_warn(&c->conn, "console: %s", log_escape(message, esc, sizeof(esc)));
	msgbuf_free(mb);
	msgbuf_init(mb);
	codec_put_error(mb, "ERROR", sqlstate, message);
}

static void invalid_command(struct client *c, const struct command *cmd,
                            struct msgbuf *mb)
{
	console_error(c, mb, ADMIN_SQLSTATE, "invalid command '%s', use SHOW HELP;",
	              cmd->sql);
}

/* SHOW (and SELECT, as PgBouncer) of anything: anyone who got in. */
static void run_show(struct client *c, const struct command *cmd,
                     struct msgbuf *mb)
{
	const char *const *param = fake_param(cmd->arg);

	if (param)
		return show_fake_param(param, mb);
	for (size_t i = 0; i < N_ELEMS(shows); i++) {
		if (strcasecmp(cmd->arg, shows[i].word) != 0)
			continue;
		if (shows[i].admin_only && !c->is_admin_user)
			return console_error(c, mb, ADMIN_SQLSTATE, ADMIN_NEEDED);
		if (!shows[i].run)
			show_empty(shows[i].word, mb);
		else if (shows[i].run(c->conn.ctx, mb) < 0)
			console_error(c, mb, ADMIN_SQLSTATE, "out of memory");
		return;
	}
	invalid_command(c, cmd, mb);
}

/* SET of a parameter drivers set is ignored, as in PgBouncer; SET of a
 * setting changes it at run time (admin_users). True if the answer waits. */
static bool run_set(struct client *c, const struct command *cmd,
                    struct msgbuf *mb)
{
	if (fake_param(cmd->arg)) {
		codec_put_notice(mb, "SET ignored");
		codec_put_command_complete(mb, "SET");
		return false;
	}
	if (!c->is_admin_user) {
		console_error(c, mb, ADMIN_SQLSTATE, ADMIN_NEEDED);
		return false;
	}
	return admin_control(c, "SET", cmd->arg, cmd->value, mb);
}

/* True if the answer waits (admin_control_tick sends it). */
static bool run_command(struct client *c, const struct command *cmd,
                        struct msgbuf *mb)
{
	if (strcasecmp(cmd->word, "SHOW") == 0 || strcasecmp(cmd->word, "SELECT") == 0) {
		run_show(c, cmd, mb);
		return false;
	}
	if (!admin_is_control(cmd->word)) {
		invalid_command(c, cmd, mb);
		return false;
	}
	/* stats_users may only look, as in PgBouncer. */
	if (!c->is_admin_user) {
		console_error(c, mb, ADMIN_SQLSTATE, ADMIN_NEEDED);
		return false;
	}
	return admin_control(c, cmd->word, cmd->arg, cmd->value, mb);
}

static bool execute(struct client *c, const char *sql, struct msgbuf *mb)
{
	struct command cmd = { .sql = sql };
	enum parse_result rc = parse_plain(sql, &cmd);

	if (rc == PARSE_OK)
		return run_command(c, &cmd, mb);
	if (rc == PARSE_INVALID) {
		rc = parse_set(sql, &cmd);
		if (rc == PARSE_OK)
			return run_set(c, &cmd, mb);
	}
	if (rc == PARSE_BAD_ARGS)
		console_error(c, mb, ADMIN_SQLSTATE, "bad arguments");
	else
		invalid_command(c, &cmd, mb);
	return false;
}

/* Answers one Query of received bytes. */
static void run_query(struct client *c, const char *sql, size_t received)
{
	struct msgbuf mb;

	msgbuf_init(&mb);
	if (sql[strspn(sql, " \t\n\r;")] == '\0') {
		msgbuf_begin(&mb, PG_MSG_EMPTY_QUERY);
		msgbuf_end(&mb);
	} else if (execute(c, sql, &mb)) {
		msgbuf_free(&mb);
		return; /* answered later, when the wait is over */
	}
	if (mb.failed) {
		msgbuf_free(&mb);
		msgbuf_init(&mb);
		codec_put_error(&mb, "ERROR", ADMIN_SQLSTATE, "out of memory");
	}
	/* The answer and the ReadyForQuery (6 bytes) that follows it. */
	stats_admin_command(c->conn.ctx, received, mb.len + 6);
	send_and_ready(c, &mb);
}

size_t admin_data(struct client *c, const uint8_t *data, size_t len)
{
	size_t pos = 0;
	struct pg_header h;

	/* Commands behind one whose answer waits (PAUSE), or behind answers
	 * the client has not read, stay held until it is their turn. */
	while (pos < len && conn_may_read(&c->conn)) {
		enum codec_result rc = codec_read_header(data + pos, len - pos, 1 << 20, &h);
		const uint8_t *body = data + pos + PG_HEADER_LEN;
		struct msgbuf mb;

		if (rc == CODEC_INVALID) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid message length");
			return len;
		}
		if (rc == CODEC_NEED_MORE || len - pos < (size_t)h.len + 1) {
			conn_need(&c->conn, rc == CODEC_OK ? h.len + 1 : 0);
			break;
		}
		conn_need(&c->conn, 0);
		pos += (size_t)h.len + 1;
		if (h.type == PG_MSG_TERMINATE) {
			client_close(c, "client close request");
			return len;
		}
		if (h.type == PG_MSG_QUERY && h.len > 4 && body[h.len - 5] == 0) {
			run_query(c, (const char *)body, (size_t)h.len + 1);
			continue;
		}
		if (h.type != PG_MSG_SYNC)
			continue; /* extended protocol: answered at Sync */
		msgbuf_init(&mb);
		codec_put_error(&mb, "ERROR", SQLSTATE_FEATURE_NOT_SUPPORTED,
		                "the admin console supports the simple query protocol only");
		send_and_ready(c, &mb);
	}
	return pos;
}
