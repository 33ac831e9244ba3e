/*
 * test_leaks.c - the leak detector: a client idle inside a transaction past
 * idle_transaction_log_timeout gets one WARNING leak_start line naming it,
 * its server and the last statement it ran, and one leak_end line when the
 * episode ends; SHOW LEAKS and SHOW LEAK_STATS list the episodes going on.
 *
 * The log lines are parsed back field by field (statements are escaped
 * onto one line), and compared with what the client itself saw: its local
 * port, the backend pid it got from pg_backend_pid(), its statement.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

TestSuite(leaks, .fini = h_teardown, .timeout = 60);

/* Measurement noise below a setting, and the lateness allowed above it. */
#define EARLY_S 0.010
#define LATE_S 0.150

/* ---- the log lines, parsed ---- */

/* One leak_start or leak_end line. Fields absent from it stay empty. */
struct leak_line {
	long offset;               /* where it starts in sluice.log */
	char level[16];            /* WARNING, LOG */
	char client[32];           /* C-<id> */
	char user[64];
	char database[64];
	char application_name[256];
	char client_addr[64];
	long client_port;
	char server[128];
	long backend_pid;
	double idle_s;
	double xact_age_s;
	char state[4];
	char last_statement[8192];
	char truncated[8];
	char ended_by[64];
	bool valid;                /* every quoted value unescaped cleanly */
};

/* Unescapes a quoted value starting after its opening '"'; returns the
 * position after the closing '"', or NULL if the escaping is broken. */
static const char *unquote(const char *p, char *out, size_t cap)
{
	size_t n = 0;

	for (; *p && *p != '"' && *p != '\n'; p++) {
		char ch = *p;

		if (ch == '\\') {
			switch (*++p) {
			case '"': ch = '"'; break;
			case '\\': ch = '\\'; break;
			case 'n': ch = '\n'; break;
			case 'r': ch = '\r'; break;
			case 't': ch = '\t'; break;
			case 'x': {
				unsigned v;

				if (sscanf(p + 1, "%2x", &v) != 1)
					return NULL;
				ch = (char)v;
				p += 2;
				break;
			}
			default:
				return NULL;
			}
		}
		if (n + 1 < cap)
			out[n++] = ch;
	}
	out[n] = '\0';
	return *p == '"' ? p + 1 : NULL;
}

static void set_field(struct leak_line *l, const char *key, const char *value)
{
	static const struct { const char *key; size_t off, size; } strs[] = {
#define STR(f) { #f, offsetof(struct leak_line, f), sizeof(((struct leak_line *)0)->f) }
		STR(client), STR(user), STR(database), STR(application_name),
		STR(client_addr), STR(server), STR(state), STR(last_statement),
		STR(truncated), STR(ended_by),
#undef STR
	};

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strcmp(key, strs[i].key) == 0)
			snprintf((char *)l + strs[i].off, strs[i].size, "%s", value);
	if (strcmp(key, "client_port") == 0)
		l->client_port = atol(value);
	else if (strcmp(key, "backend_pid") == 0)
		l->backend_pid = atol(value);
	else if (strcmp(key, "idle_s") == 0)
		l->idle_s = atof(value);
	else if (strcmp(key, "xact_age_s") == 0)
		l->xact_age_s = atof(value);
}

/* Parses "key=value key=\"quoted\" ..." from p up to the end of the line. */
static void parse_fields(const char *p, struct leak_line *l)
{
	static char value[4096];

	l->valid = true;
	while (*p && *p != '\n') {
		char key[32];
		size_t k = 0;

		while (*p == ' ')
			p++;
		while (*p && *p != '=' && *p != ' ' && *p != '\n' && k + 1 < sizeof(key))
			key[k++] = *p++;
		key[k] = '\0';
		if (*p != '=') {
			l->valid = false;
			return;
		}
		p++;
		if (*p == '"') {
			p = unquote(p + 1, value, sizeof(value));
			if (!p) {
				l->valid = false;
				return;
			}
		} else {
			size_t n = strcspn(p, " \n");

			snprintf(value, sizeof(value), "%.*s", (int)n, p);
			p += n;
		}
		set_field(l, key, value);
	}
}

static char *read_log(void)
{
	char path[1024];
	FILE *f;
	char *text;
	long len;

	/* sluice.log only: h_sluice_log() also has stderr, every line twice. */
	snprintf(path, sizeof(path), "%s/sluice.log", h_test_dir());
	f = fopen(path, "r");
	cr_assert(f, "no %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = calloc(1, (size_t)len + 1);
	cr_assert(text);
	cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	return text;
}

#define MAX_LINES 64

/* Every kind ("leak_start", "leak_end") line of the log; returns how many. */
static int leak_lines(const char *kind, struct leak_line *out, int max)
{
	char *text = read_log();
	char marker[32];
	int n = 0;

	snprintf(marker, sizeof(marker), " %s ", kind);
	for (char *line = text; *line && n < max;) {
		char *end = strchr(line, '\n');
		char *at;

		if (!end)
			break; /* a line being written */
		*end = '\0';
		at = strstr(line, marker);
		if (at) {
			struct leak_line *l = &out[n++];
			const char *lv = strstr(line, "] ");

			memset(l, 0, sizeof(*l));
			l->offset = line - text;
			if (lv)
				sscanf(lv + 2, "%15s", l->level);
			*end = '\n';
			parse_fields(at + strlen(marker), l);
		}
		*end = '\n';
		line = end + 1;
	}
	free(text);
	return n;
}

/* The leak_start lines of the client on local port; returns how many. */
static int starts_of(long port, struct leak_line *out, int max)
{
	static struct leak_line all[MAX_LINES];
	int n = leak_lines("leak_start", all, MAX_LINES), k = 0;

	for (int i = 0; i < n && k < max; i++)
		if (all[i].client_port == port)
			out[k++] = all[i];
	return k;
}

/* The leak_end lines of client id ("C-<n>"). */
static int ends_of(const char *client, struct leak_line *out, int max)
{
	static struct leak_line all[MAX_LINES];
	int n = leak_lines("leak_end", all, MAX_LINES), k = 0;

	for (int i = 0; i < n && k < max; i++)
		if (strcmp(all[i].client, client) == 0)
			out[k++] = all[i];
	return k;
}

/* Waits until the client on port has count leak_start lines; the last. */
static struct leak_line wait_start(long port, int count, int timeout_ms)
{
	static struct leak_line got[MAX_LINES];
	double deadline = h_now() + timeout_ms / 1000.0;
	int n;

	while ((n = starts_of(port, got, MAX_LINES)) < count && h_now() < deadline)
		h_sleep_ms(10);
	cr_assert_geq(n, count, "%d leak_start lines for the client on port %ld, "
	              "expected %d", n, port, count);
	return got[count - 1];
}

static struct leak_line wait_end(const char *client, int timeout_ms)
{
	static struct leak_line got[MAX_LINES];
	double deadline = h_now() + timeout_ms / 1000.0;
	int n;

	while ((n = ends_of(client, got, MAX_LINES)) < 1 && h_now() < deadline)
		h_sleep_ms(10);
	cr_assert_eq(n, 1, "%d leak_end lines for %s", n, client);
	return got[0];
}

static long local_port(PGconn *conn)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	cr_assert(getsockname(PQsocket(conn), (struct sockaddr *)&sa, &len) == 0);
	return ntohs(sa.sin_port);
}

/* Asserts idle_s says the episode was logged in time; prints how late. */
static void expect_logged_in_time(const struct leak_line *l, double limit_s)
{
	fprintf(stderr, "timing: idle_transaction_log_timeout %4.0f ms: logged at "
	        "idle_s=%.3f (%+.0f ms)\n", limit_s * 1000, l->idle_s,
	        (l->idle_s - limit_s) * 1000);
	cr_expect_geq(l->idle_s, limit_s - EARLY_S, "logged early: idle_s=%.3f", l->idle_s);
	cr_expect_leq(l->idle_s, limit_s + LATE_S, "logged late: idle_s=%.3f", l->idle_s);
	cr_expect_geq(l->xact_age_s, l->idle_s, "xact_age_s %.3f < idle_s %.3f",
	              l->xact_age_s, l->idle_s);
}

/* ---- the admin console ---- */

static PGconn *admin(void)
{
	return h_connect(H_ADMIN, "dbname=sluice");
}

static PGresult *show(PGconn *console, const char *what, const char *const *cols,
                      int ncols)
{
	PGresult *res = PQexec(console, what);

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", what,
	             PQerrorMessage(console));
	cr_assert_eq(PQnfields(res), ncols, "%s: %d columns", what, PQnfields(res));
	for (int i = 0; i < ncols; i++)
		cr_assert_str_eq(PQfname(res, i), cols[i], "%s: column %d", what, i);
	return res;
}

static const char *const leaks_cols[] = {
	"id", "user", "database", "application_name", "addr", "port", "idle_s",
	"xact_age_s", "state", "server", "backend_pid", "last_statement",
};
#define LEAKS_NCOLS 12

static const char *const stats_cols[] = {
	"database", "user", "idle_in_transaction", "pinned_servers",
	"episodes_total", "longest_idle_s",
};
#define STATS_NCOLS 6

static PGresult *show_leaks(PGconn *console)
{
	return show(console, "SHOW LEAKS", leaks_cols, LEAKS_NCOLS);
}

/* SHOW LEAK_STATS's row for db/user; NULL if none. Caller frees. */
static char **leak_stats_row(PGconn *console, const char *db, const char *user)
{
	PGresult *res = show(console, "SHOW LEAK_STATS", stats_cols, STATS_NCOLS);
	char **row = NULL;

	for (int r = 0; r < PQntuples(res) && !row; r++) {
		if (strcmp(PQgetvalue(res, r, 0), db) != 0 ||
		    strcmp(PQgetvalue(res, r, 1), user) != 0)
			continue;
		row = calloc(STATS_NCOLS, sizeof(*row));
		for (int c = 0; c < STATS_NCOLS; c++)
			row[c] = strdup(PQgetvalue(res, r, c));
	}
	PQclear(res);
	return row;
}

static void free_row(char **row)
{
	for (int c = 0; row && c < STATS_NCOLS; c++)
		free(row[c]);
	free(row);
}

/* ---- the basic episode ---- */

#define UPDATE_SQL "UPDATE leak_t SET v = v + 1 WHERE id = 1"

static void make_leak_table(void)
{
	h_pg_exec("DROP TABLE IF EXISTS leak_t");
	h_pg_exec("CREATE TABLE leak_t (id int PRIMARY KEY, v int)");
	h_pg_exec("INSERT INTO leak_t VALUES (1, 0), (2, 0)");
}

Test(leaks, an_abandoned_transaction_is_logged_once_with_every_field)
{
	PGconn *conn, *console;
	PGresult *res;
	struct leak_line start, end, all[MAX_LINES];
	long pid, port;
	char server[64], **stats;

	h_require_sluice();
	make_leak_table();
	h_sluice_start("default_pool_size = 2\nidle_transaction_log_timeout = 0.3\n", NULL);
	conn = h_connect(H_ALICE, "application_name=leaky_app");
	port = local_port(conn);
	h_exec(conn, "BEGIN");
	pid = h_query_int(conn, "SELECT pg_backend_pid()");
	h_exec(conn, UPDATE_SQL);
	start = wait_start(port, 1, 2000);
	h_sleep_ms(500); /* well past the limit again: still one line */
	cr_assert_eq(starts_of(port, all, MAX_LINES), 1, "more than one line per episode");
	cr_assert_eq(leak_lines("leak_start", all, MAX_LINES), 1);

	cr_assert(start.valid, "the line does not parse");
	cr_expect_str_eq(start.level, "WARNING");
	cr_expect_eq(strncmp(start.client, "C-", 2), 0, "client=%s", start.client);
	cr_expect_str_eq(start.user, H_ALICE);
	cr_expect_str_eq(start.database, H_DBNAME);
	cr_expect_str_eq(start.application_name, "leaky_app");
	cr_expect_str_eq(start.client_addr, "127.0.0.1");
	cr_expect_eq(start.client_port, port);
	snprintf(server, sizeof(server), "%s:%d", h_pg_host(), h_pg_port());
	cr_expect_str_eq(start.server, server);
	cr_expect_eq(start.backend_pid, pid, "backend_pid=%ld, the client saw %ld",
	             start.backend_pid, pid);
	cr_expect_str_eq(start.state, "T");
	cr_expect_str_eq(start.last_statement, UPDATE_SQL);
	cr_expect_str_eq(start.truncated, "no");
	expect_logged_in_time(&start, 0.3);

	/* The console shows the same episode. */
	console = admin();
	res = show_leaks(console);
	cr_assert_eq(PQntuples(res), 1);
	cr_expect_str_eq(PQgetvalue(res, 0, 0), start.client);
	cr_expect_str_eq(PQgetvalue(res, 0, 1), H_ALICE);
	cr_expect_str_eq(PQgetvalue(res, 0, 2), H_DBNAME);
	cr_expect_str_eq(PQgetvalue(res, 0, 3), "leaky_app");
	cr_expect_str_eq(PQgetvalue(res, 0, 4), "127.0.0.1");
	cr_expect_eq(atol(PQgetvalue(res, 0, 5)), port);
	cr_expect_geq(atof(PQgetvalue(res, 0, 6)), 0.8 - EARLY_S, "idle_s %s",
	              PQgetvalue(res, 0, 6));
	cr_expect_geq(atof(PQgetvalue(res, 0, 7)), atof(PQgetvalue(res, 0, 6)));
	cr_expect_str_eq(PQgetvalue(res, 0, 8), "T");
	cr_expect_str_eq(PQgetvalue(res, 0, 9), server);
	cr_expect_eq(atol(PQgetvalue(res, 0, 10)), pid);
	cr_expect_str_eq(PQgetvalue(res, 0, 11), UPDATE_SQL);
	PQclear(res);
	stats = leak_stats_row(console, H_DBNAME, H_ALICE);
	cr_assert(stats, "SHOW LEAK_STATS has no row for the pool");
	cr_expect_str_eq(stats[2], "1", "idle_in_transaction");
	cr_expect_str_eq(stats[3], "1", "pinned_servers");
	cr_expect_str_eq(stats[4], "1", "episodes_total");
	cr_expect_geq(atof(stats[5]), 0.8 - EARLY_S, "longest_idle_s %s", stats[5]);
	free_row(stats);

	/* The client was only slow: it commits, and the episode ends. */
	h_exec(conn, "COMMIT");
	cr_assert_eq(h_pg_int("SELECT v FROM leak_t WHERE id = 1"), 1);
	end = wait_end(start.client, 2000);
	cr_assert(end.valid);
	cr_expect_str_eq(end.level, "LOG");
	cr_expect_str_eq(end.ended_by, "commit_or_rollback");
	cr_expect_geq(end.idle_s, start.idle_s + 0.5 - EARLY_S, "idle_s=%.3f", end.idle_s);
	cr_expect_lt(end.idle_s, start.idle_s + 2);
	res = show_leaks(console);
	cr_expect_eq(PQntuples(res), 0, "the episode is still listed");
	PQclear(res);
	stats = leak_stats_row(console, H_DBNAME, H_ALICE);
	cr_assert(stats);
	cr_expect_str_eq(stats[2], "0");
	cr_expect_str_eq(stats[3], "0");
	cr_expect_str_eq(stats[4], "1");
	free_row(stats);
	PQfinish(console);
	PQfinish(conn);
	h_finish();
}

/* ---- the extended protocol ---- */

#define PARAM_SQL "UPDATE leak_t SET v = $1 WHERE id = 1"
#define NAMED_SQL "UPDATE leak_t SET v = v + $1 WHERE id = 2"

static void exec_params(PGconn *conn, const char *sql, const char *value)
{
	const char *values[] = { value };
	PGresult *res = PQexecParams(conn, sql, 1, NULL, values, NULL, NULL, 0);

	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(conn));
	PQclear(res);
}

static void exec_prepared(PGconn *conn, const char *name, const char *value)
{
	const char *values[] = { value };
	PGresult *res = PQexecPrepared(conn, name, 1, values, NULL, NULL, 0);

	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(conn));
	PQclear(res);
}

static void prepare(PGconn *conn, const char *name, const char *sql)
{
	PGresult *res = PQprepare(conn, name, sql, 1, NULL);

	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(conn));
	PQclear(res);
}

/* The last statement logged for conn's episode, after it commits. */
static void expect_logged_statement(PGconn *conn, const char *sql)
{
	struct leak_line start = wait_start(local_port(conn), 1, 2000);

	cr_assert(start.valid);
	cr_expect_str_eq(start.last_statement, sql);
	cr_expect_str_eq(start.state, "T");
	h_exec(conn, "COMMIT");
	cr_expect_str_eq(wait_end(start.client, 2000).ended_by, "commit_or_rollback");
}

Test(leaks, extended_protocol_unnamed_statement)
{
	PGconn *conn;

	h_require_sluice();
	make_leak_table();
	h_sluice_start("idle_transaction_log_timeout = 0.3\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	h_exec(conn, "BEGIN");
	exec_params(conn, PARAM_SQL, "5");
	expect_logged_statement(conn, PARAM_SQL);
	PQfinish(conn);
	h_finish();
}

Test(leaks, extended_protocol_named_statement_in_session_mode)
{
	PGconn *conn;

	h_require_sluice();
	make_leak_table();
	h_sluice_start("pool_mode = session\nidle_transaction_log_timeout = 0.3\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	/* Prepared outside the transaction; another statement in between. */
	prepare(conn, "bump", NAMED_SQL);
	h_exec(conn, "BEGIN");
	exec_params(conn, PARAM_SQL, "7");
	exec_prepared(conn, "bump", "2");
	expect_logged_statement(conn, NAMED_SQL);
	PQfinish(conn);
	h_finish();
}

Test(leaks, extended_protocol_named_statement_prepared_in_the_transaction)
{
	PGconn *conn;

	h_require_sluice();
	make_leak_table();
	h_sluice_start("pool_mode = transaction\nidle_transaction_log_timeout = 0.3\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	h_exec(conn, "BEGIN");
	prepare(conn, "bump_in_xact", NAMED_SQL);
	h_exec(conn, "SELECT 1");
	exec_prepared(conn, "bump_in_xact", "3");
	expect_logged_statement(conn, NAMED_SQL);
	PQfinish(conn);
	h_finish();
}

/* ---- how episodes end ---- */

Test(leaks, failed_transaction_is_reported_with_state_e)
{
	PGconn *conn;
	struct leak_line start, end;

	h_require_sluice();
	h_sluice_start("idle_transaction_log_timeout = 0.3\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	h_exec(conn, "BEGIN");
	h_exec_fails(conn, "22012", "SELECT 1 / 0");
	start = wait_start(local_port(conn), 1, 2000);
	cr_expect_str_eq(start.state, "E");
	cr_expect_str_eq(start.last_statement, "SELECT 1 / 0");
	expect_logged_in_time(&start, 0.3);
	h_exec(conn, "ROLLBACK");
	end = wait_end(start.client, 2000);
	cr_expect_str_eq(end.ended_by, "commit_or_rollback");
	PQfinish(conn);
	h_finish();
}

Test(leaks, episodes_end_by_new_statement_disconnect_or_timeout)
{
	PGconn *a, *b;
	struct leak_line start, second, end;
	long port_a, port_b;
	double t_spoke;

	h_require_sluice();
	make_leak_table();
	h_sluice_start("default_pool_size = 2\nidle_transaction_log_timeout = 0.3\n"
	               "idle_transaction_timeout = 1\n", NULL);
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_ALICE, NULL);
	port_a = local_port(a);
	port_b = local_port(b);
	h_exec(b, "BEGIN");
	h_exec(b, "UPDATE leak_t SET v = 0 WHERE id = 2");
	h_exec(a, "BEGIN");
	h_exec(a, "SELECT 'first'");

	/* a speaks again inside the transaction: that episode ends... */
	start = wait_start(port_a, 1, 2000);
	h_sleep_ms(100);
	t_spoke = start.idle_s + 0.1;
	h_exec(a, "SELECT 'second'");
	end = wait_end(start.client, 2000);
	cr_expect_str_eq(end.ended_by, "new_statement");
	cr_expect_geq(end.idle_s, t_spoke - EARLY_S, "idle_s=%.3f", end.idle_s);
	/* ... and a new one starts when it idles again: one more line. */
	second = wait_start(port_a, 2, 2000);
	cr_expect_str_eq(second.last_statement, "SELECT 'second'");
	cr_expect_str_eq(second.client, start.client);
	expect_logged_in_time(&second, 0.3);
	/* The client goes away in the middle of it. */
	PQfinish(a);
	{
		static struct leak_line ends[MAX_LINES];
		double deadline = h_now() + 2;

		while (ends_of(start.client, ends, MAX_LINES) < 2 && h_now() < deadline)
			h_sleep_ms(10);
		cr_assert_eq(ends_of(start.client, ends, MAX_LINES), 2);
		cr_expect_str_eq(ends[1].ended_by, "disconnect");
	}

	/* b is ended by idle_transaction_timeout, which the line says. */
	start = wait_start(port_b, 1, 2000);
	end = wait_end(start.client, 3000);
	cr_expect_str_eq(end.ended_by, "idle_transaction_timeout");
	cr_expect_geq(end.idle_s, 1.0 - EARLY_S, "idle_s=%.3f", end.idle_s);
	cr_expect_leq(end.idle_s, 1.0 + LATE_S, "idle_s=%.3f", end.idle_s);
	PQfinish(b);
	h_finish();
}

/* ---- what is not a leak ---- */

Test(leaks, busy_idle_and_short_transactions_are_not_reported)
{
	PGconn *active, *active_in_xact, *idle, *quick;
	struct leak_line all[MAX_LINES];
	PGresult *res;

	h_require_sluice();
	h_sluice_start("default_pool_size = 4\nidle_transaction_log_timeout = 0.3\n", NULL);
	active = h_connect(H_ALICE, NULL);
	active_in_xact = h_connect(H_ALICE, NULL);
	idle = h_connect(H_ALICE, NULL);
	quick = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(idle, "SELECT 1"), 1);
	/* A long query: active, not idle. Also inside a transaction. */
	cr_assert(PQsendQuery(active, "SELECT pg_sleep(1)"));
	h_exec(active_in_xact, "BEGIN");
	cr_assert(PQsendQuery(active_in_xact, "SELECT pg_sleep(1)"));
	/* Idle in transaction, each time less than the limit. */
	for (int i = 0; i < 5; i++) {
		h_exec(quick, "BEGIN");
		h_exec(quick, "SELECT %d", i);
		h_sleep_ms(200);
		h_exec(quick, "COMMIT");
	}
	res = h_result_within(active, 5000);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	cr_assert_null(h_result_within(active, 1000));
	res = h_result_within(active_in_xact, 5000);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	PQclear(res);
	cr_assert_null(h_result_within(active_in_xact, 1000));
	h_exec(active_in_xact, "COMMIT");
	h_sleep_ms(400);
	cr_expect_eq(leak_lines("leak_start", all, MAX_LINES), 0,
	             "reported: %s (%s)", all[0].client, all[0].last_statement);
	PQfinish(active);
	PQfinish(active_in_xact);
	PQfinish(idle);
	PQfinish(quick);
	h_finish();
}

/* ---- statement text: length and escaping ---- */

static bool valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2
		        : (*p & 0xF8) == 0xF0 ? 3 : -1;

		if (n < 0)
			return false;
		p++;
		for (int i = 0; i < n; i++, p++)
			if ((*p & 0xC0) != 0x80)
				return false;
	}
	return true;
}

/* "SELECT '" + forty euro signs (3 bytes each) + tail: 64 bytes falls
 * inside the 19th sign, so 62 bytes are kept. */
static void euro_statement(char *out, size_t cap, const char *tail)
{
	snprintf(out, cap, "SELECT '");
	for (int i = 0; i < 40; i++)
		strncat(out, "\xe2\x82\xac", cap - strlen(out) - 1);
	strncat(out, tail, cap - strlen(out) - 1);
}

static void expect_cut(PGconn *conn, const char *sql, const char *what)
{
	struct leak_line start = wait_start(local_port(conn), 1, 2000);

	cr_assert(start.valid);
	cr_expect_str_eq(start.truncated, "yes", "%s: cut to %zu bytes but truncated=%s",
	                 what, strlen(start.last_statement), start.truncated);
	cr_expect_eq(strlen(start.last_statement), 62, "%s: %zu bytes kept", what,
	             strlen(start.last_statement));
	cr_expect_eq(strncmp(start.last_statement, sql, 62), 0, "%s", what);
	cr_expect(valid_utf8(start.last_statement), "%s: cut inside a character", what);
}

Test(leaks, a_long_statement_is_cut_on_a_character_boundary)
{
	char simple[256], extended[256], exact[80];
	PGconn *cut, *cut_ext, *fits, *console;
	struct leak_line start;
	PGresult *res;

	h_require_sluice();
	euro_statement(simple, sizeof(simple), "' AS euros");
	euro_statement(extended, sizeof(extended), "' || $1::text AS euros");
	/* Exactly 64 bytes: kept whole. */
	snprintf(exact, sizeof(exact), "SELECT '%055d'", 0);
	cr_assert_eq(strlen(exact), 64);
	h_sluice_start("idle_transaction_log_timeout = 0.3\n"
	               "idle_transaction_log_statement_length = 64\n", NULL);
	cut = h_connect(H_ALICE, NULL);
	cut_ext = h_connect(H_ALICE, NULL);
	fits = h_connect(H_ALICE, NULL);
	h_exec(cut, "BEGIN");
	h_exec(cut, "%s", simple);
	h_exec(cut_ext, "BEGIN");
	{
		const char *values[] = { "x" };
		PGresult *r = PQexecParams(cut_ext, extended, 1, NULL, values, NULL, NULL, 0);

		cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(cut_ext));
		PQclear(r);
	}
	h_exec(fits, "BEGIN");
	h_exec(fits, "%s", exact);

	expect_cut(cut, simple, "simple query");
	expect_cut(cut_ext, extended, "extended protocol");
	console = admin();
	res = show_leaks(console);
	for (int r = 0; r < PQntuples(res); r++)
		if (atol(PQgetvalue(res, r, 5)) == local_port(cut))
			cr_expect_eq(strncmp(PQgetvalue(res, r, 11), simple, 62), 0);
	PQclear(res);
	PQfinish(console);

	start = wait_start(local_port(fits), 1, 2000);
	cr_expect_str_eq(start.truncated, "no");
	cr_expect_str_eq(start.last_statement, exact);
	h_exec(cut, "ROLLBACK");
	h_exec(cut_ext, "ROLLBACK");
	h_exec(fits, "ROLLBACK");
	PQfinish(cut);
	PQfinish(cut_ext);
	PQfinish(fits);
	h_finish();
}

Test(leaks, a_long_limit_still_gives_whole_lines)
{
	static char sql[3200];
	PGconn *conn;
	struct leak_line start;
	size_t n;

	h_require_sluice();
	/* 3000 bytes of statement, within a limit of 4096: logged whole. */
	n = (size_t)snprintf(sql, sizeof(sql), "SELECT '");
	for (; n < 2990; n++)
		sql[n] = "abcdefghij"[n % 10];
	snprintf(sql + n, sizeof(sql) - n, "' AS long");
	h_sluice_start("idle_transaction_log_timeout = 0.3\n"
	               "idle_transaction_log_statement_length = 4096\n", NULL);
	conn = h_connect(H_ALICE, NULL);
	h_exec(conn, "BEGIN");
	h_exec(conn, "%s", sql);
	start = wait_start(local_port(conn), 1, 2000);
	cr_expect(start.valid, "the line does not parse (cut short?)");
	cr_expect_str_eq(start.truncated, "no", "the line has no truncated=no at its "
	                 "end: cut short");
	cr_expect(strcmp(start.last_statement, sql) == 0, "%zu of %zu bytes of the "
	          "statement logged", strlen(start.last_statement), strlen(sql));
	h_exec(conn, "ROLLBACK");
	PQfinish(conn);
	h_finish();
}

/* Quotes, backslashes, a tab, CR and LF, control bytes in a comment and
 * characters of two, three and four bytes. */
#define NASTY_SQL "SELECT 'it''s \"quoted\"' AS q,\n\t'back\\slash \\\\ two' AS b, " \
	"E'tab\\there' AS t, 'na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80' AS u " \
	"/* ctl \x01\x1f\x7f */ -- cr\r\n, 1 AS one"

Test(leaks, escaping_keeps_one_line_that_parses_back)
{
	PGconn *conn, *console;
	struct leak_line start;
	PGresult *res;
	char *log, *line, *eol;

	h_require_sluice();
	h_sluice_start("idle_transaction_log_timeout = 0.3\n", NULL);
	conn = h_connect(H_ALICE, "application_name='leaky \"app\" \\\\ 1'");
	h_exec(conn, "BEGIN");
	h_exec(conn, "%s", NASTY_SQL);
	start = wait_start(local_port(conn), 1, 2000);
	cr_assert(start.valid, "the line does not unescape");
	cr_expect_str_eq(start.last_statement, NASTY_SQL);
	cr_expect_str_eq(start.application_name, "leaky \"app\" \\ 1");
	cr_expect_str_eq(start.truncated, "no");
	cr_expect_str_eq(start.state, "T");

	/* One line, with the fields after the statement on it. */
	log = read_log();
	line = strstr(log, " leak_start ");
	cr_assert(line);
	eol = strchr(line, '\n');
	cr_assert(eol);
	*eol = '\0';
	cr_expect(strstr(line, " truncated=no"), "the line is broken: %s", line);
	for (const char *p = line; *p; p++)
		cr_assert(*p != '\r' && *p != '\t' && (unsigned char)*p >= 0x20 &&
		          *p != 0x7f, "a raw control byte 0x%02x in the line",
		          (unsigned char)*p);
	cr_expect(valid_utf8(line));
	free(log);

	/* The console gives the statement as it was, unescaped. */
	console = admin();
	res = show_leaks(console);
	cr_assert_eq(PQntuples(res), 1);
	cr_expect_str_eq(PQgetvalue(res, 0, 11), NASTY_SQL);
	PQclear(res);
	PQfinish(console);
	h_exec(conn, "COMMIT");
	PQfinish(conn);
	h_finish();
}

/* ---- where the limit comes from ---- */

Test(leaks, limits_per_user_and_per_database)
{
	struct {
		const char *user, *extra, *sql;
		double limit;          /* 0: never reported */
		const char *database;
		PGconn *conn;
	} c[] = {
		{ H_ALICE, NULL, "SELECT 'alice main'", 1.0, H_DBNAME, NULL },
		{ H_ALICE, "dbname=leakdb", "SELECT 'alice leakdb'", 0.3, "leakdb", NULL },
		{ H_BOB, "dbname=leakdb", "SELECT 'bob leakdb'", 0.5, "leakdb", NULL },
		{ H_CAROL, NULL, "SELECT 'carol main'", 0, H_DBNAME, NULL },
	};
	int n = sizeof(c) / sizeof(c[0]);
	struct leak_line got[MAX_LINES];

	h_require_sluice();
	h_sluice_start("idle_transaction_log_timeout = 1\n",
	               "leakdb = host=127.0.0.1 port=%PGPORT% dbname=" H_DBNAME
	               " idle_transaction_log_timeout=0.3\n"
	               "[users]\n"
	               H_BOB " = idle_transaction_log_timeout=0.5\n"
	               H_CAROL " = idle_transaction_log_timeout=0");
	for (int i = 0; i < n; i++) {
		c[i].conn = h_connect(c[i].user, c[i].extra);
		h_exec(c[i].conn, "BEGIN");
		h_exec(c[i].conn, "%s", c[i].sql);
	}
	h_sleep_ms(1400);
	for (int i = 0; i < n; i++) {
		int k = starts_of(local_port(c[i].conn), got, MAX_LINES);

		if (c[i].limit == 0) {
			cr_expect_eq(k, 0, "%s reported with the limit off", c[i].sql);
			continue;
		}
		cr_expect_eq(k, 1, "%s: %d lines", c[i].sql, k);
		if (k != 1)
			continue;
		cr_expect_str_eq(got[0].last_statement, c[i].sql);
		cr_expect_str_eq(got[0].user, c[i].user);
		cr_expect_str_eq(got[0].database, c[i].database);
		fprintf(stderr, "%s: ", c[i].sql);
		expect_logged_in_time(&got[0], c[i].limit);
	}
	for (int i = 0; i < n; i++) {
		h_exec(c[i].conn, "COMMIT");
		PQfinish(c[i].conn);
	}
	h_finish();
}

/* ---- the drill: a leaky application exhausts the pool ---- */

#define DRILL_POOL 4
#define DRILL_NORMAL 20

struct drill {
	atomic_bool stop;
	atomic_int committed;
	atomic_int failed;         /* normal clients that got an error */
	pthread_mutex_t lock;
	char first_error[512];
	double first_error_at;
};

static void *normal_client(void *arg)
{
	struct drill *d = arg;
	char err[512];
	PGconn *conn = h_try_connect(H_ALICE, "application_name=normal_app", err,
	                             sizeof(err));

	while (conn && !atomic_load(&d->stop)) {
		if (!h_try_exec(conn, "BEGIN", err, sizeof(err)) ||
		    !h_try_exec(conn, "INSERT INTO drill_t (who) VALUES ('normal')",
		                err, sizeof(err)) ||
		    !h_try_exec(conn, "COMMIT", err, sizeof(err)))
			break;
		atomic_fetch_add(&d->committed, 1);
		h_sleep_ms(20);
	}
	if (!atomic_load(&d->stop)) {
		pthread_mutex_lock(&d->lock);
		if (!d->first_error[0]) {
			snprintf(d->first_error, sizeof(d->first_error), "%s",
			         conn ? err : "connect failed");
			d->first_error_at = h_now();
		}
		pthread_mutex_unlock(&d->lock);
		atomic_fetch_add(&d->failed, 1);
	}
	PQfinish(conn);
	return NULL;
}

/* Offset in sluice.log of the first line containing needle; -1: none. */
static long log_offset(const char *needle)
{
	char *log = read_log();
	char *at = strstr(log, needle);
	long off = at ? at - log : -1;

	free(log);
	return off;
}

Test(leaks, drill_a_leaky_application_is_named_before_others_time_out)
{
	static struct drill d;
	pthread_t normal[DRILL_NORMAL];
	PGconn *leaky[DRILL_POOL], *console;
	struct leak_line start[DRILL_POOL];
	PGresult *res;
	char sql[128], settings[256], **stats;
	long first_timeout, stats_line;
	double deadline;
	int committed_before;

	h_require_sluice();
	h_pg_exec("DROP TABLE IF EXISTS drill_t");
	h_pg_exec("CREATE TABLE drill_t (id serial, who text)");
	snprintf(settings, sizeof(settings), "default_pool_size = %d\n"
	         "idle_transaction_log_timeout = 0.3\nquery_wait_timeout = 2\n"
	         "log_stats = 1\nstats_period = 0.5\n", DRILL_POOL);
	h_sluice_start(settings, NULL);
	pthread_mutex_init(&d.lock, NULL);
	for (int i = 0; i < DRILL_NORMAL; i++)
		cr_assert(pthread_create(&normal[i], NULL, normal_client, &d) == 0);
	h_sleep_ms(300);
	committed_before = atomic_load(&d.committed);
	cr_assert_gt(committed_before, 0, "the normal clients do not get through");

	/* The leaky application abandons one transaction after another. */
	for (int i = 0; i < DRILL_POOL; i++) {
		leaky[i] = h_connect(H_ALICE, "application_name=leaky_app");
		h_exec(leaky[i], "BEGIN");
		snprintf(sql, sizeof(sql), "INSERT INTO drill_t (who) VALUES ('leak-%d')", i);
		h_exec(leaky[i], "%s", sql);
		h_sleep_ms(400);
	}
	/* Every server is pinned now. */
	for (int i = 0; i < DRILL_POOL; i++) {
		start[i] = wait_start(local_port(leaky[i]), 1, 1000);
		snprintf(sql, sizeof(sql), "INSERT INTO drill_t (who) VALUES ('leak-%d')", i);
		cr_expect_str_eq(start[i].last_statement, sql);
		cr_expect_str_eq(start[i].application_name, "leaky_app");
		expect_logged_in_time(&start[i], 0.3);
	}

	console = admin();
	res = show_leaks(console);
	cr_expect_eq(PQntuples(res), DRILL_POOL, "SHOW LEAKS: %d rows", PQntuples(res));
	for (int r = 0; r < PQntuples(res) && r < DRILL_POOL; r++) {
		/* Longest idle first: the oldest leak first. */
		snprintf(sql, sizeof(sql), "INSERT INTO drill_t (who) VALUES ('leak-%d')", r);
		cr_expect_str_eq(PQgetvalue(res, r, 11), sql, "row %d", r);
		cr_expect_str_eq(PQgetvalue(res, r, 0), start[r].client);
		cr_expect_str_eq(PQgetvalue(res, r, 3), "leaky_app");
		if (r > 0)
			cr_expect_geq(atof(PQgetvalue(res, r - 1, 6)),
			              atof(PQgetvalue(res, r, 6)), "not longest idle first");
	}
	PQclear(res);
	stats = leak_stats_row(console, H_DBNAME, H_ALICE);
	cr_assert(stats);
	cr_expect_eq(atoi(stats[2]), DRILL_POOL, "idle_in_transaction %s", stats[2]);
	cr_expect_eq(atoi(stats[3]), DRILL_POOL, "pinned_servers %s", stats[3]);
	cr_expect_eq(atoi(stats[4]), DRILL_POOL, "episodes_total %s", stats[4]);
	/* The first leak has idled through the three after it. */
	cr_expect_geq(atof(stats[5]), 1.2, "longest_idle_s %s", stats[5]);
	free_row(stats);
	PQfinish(console);

	/* The normal clients now queue, and time out. */
	deadline = h_now() + 5;
	while (!atomic_load(&d.failed) && h_now() < deadline)
		h_sleep_ms(20);
	cr_assert_gt(atomic_load(&d.failed), 0, "nobody timed out with the pool pinned");
	cr_expect(strstr(d.first_error, "query_wait_timeout"), "%s", d.first_error);
	cr_assert(h_log_wait("pooler error: query_wait_timeout", 2000));
	first_timeout = log_offset("pooler error: query_wait_timeout");
	for (int i = 0; i < DRILL_POOL; i++)
		cr_expect_lt(start[i].offset, first_timeout, "leak %d was logged after the "
		             "first query_wait_timeout", i);
	stats_line = log_offset("pool " H_DBNAME "/" H_ALICE ": servers linked=4 "
	                        "pinned_by_idle_in_transaction=4 waiting_clients=");
	cr_expect_geq(stats_line, 0, "no stats_period line with the 4 pinned servers");

	atomic_store(&d.stop, true);
	for (int i = 0; i < DRILL_NORMAL; i++)
		pthread_join(normal[i], NULL);
	for (int i = 0; i < DRILL_POOL; i++)
		PQfinish(leaky[i]);
	for (int i = 0; i < DRILL_POOL; i++)
		cr_expect_str_eq(wait_end(start[i].client, 2000).ended_by, "disconnect");
	cr_expect_eq(h_pg_int("SELECT count(*) FROM drill_t WHERE who LIKE 'leak-%%'"), 0);
	h_finish();
}
