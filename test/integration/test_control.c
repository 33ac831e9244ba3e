/*
 * test_control.c - controlling a running sluice: reload (SIGHUP and RELOAD),
 * SET, PAUSE/RESUME (and SIGUSR1/SIGUSR2), SUSPEND, KILL, KILL_CLIENT,
 * RECONNECT, WAIT_CLOSE, DISABLE/ENABLE, SHUTDOWN and SIGINT, as clients
 * and the admin console see them.
 *
 * Each test writes its own sluice.ini (so that a reload can rewrite it) and
 * starts sluice on it. Waits are bounded: "does not happen" is checked over
 * BLOCKED_MS, "happens" within SETTLE_MS.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "harness.h"

TestSuite(control, .fini = h_teardown, .timeout = 60);

/* A second PostgreSQL database, for a [databases] entry to move to. */
#define DB2 "sluice_ctl2"
/* How long something that must not happen is given to happen anyway. */
#define BLOCKED_MS 500
/* How long something that must happen may take. */
#define SETTLE_MS 5000
#define ADMIN_NEEDED "admin access needed"

/* The sluice this test started on its own ini. */
static struct {
	int port;              /* listen_port it was started with */
	char *ini;             /* path of its sluice.ini */
} run;

/* ---- the ini file ---- */

/*
 * The ini: [databases] with sluice_test and then databases (lines, may be
 * NULL), [sluice] with what every test needs on port and then settings.
 * Caller frees.
 */
static char *ini_text(int port, const char *settings, const char *databases)
{
	const char *dir = h_test_dir();
	char *text = NULL;

	cr_assert(asprintf(&text,
		"; written by test_control.c\n"
		"[databases]\n"
		"sluice_test = host=127.0.0.1 port=%d dbname=sluice_test\n"
		"%s"
		"\n[sluice]\n"
		"listen_addr = 127.0.0.1\n"
		"listen_port = %d\n"
		"unix_socket_dir = %s\n"
		"auth_type = md5\n"
		"auth_file = %s/userlist.txt\n"
		"admin_users = " H_ADMIN "\n"
		"logfile = %s/sluice.log\n"
		"pidfile = %s/sluice.pid\n"
		"pool_mode = transaction\n"
		"max_client_conn = 200\n"
		"server_login_retry = 1\n"
		"%s",
		h_pg_port(), databases ? databases : "", port, dir, dir, dir, dir,
		settings ? settings : "") > 0);
	return text;
}

/* Rewrites sluice.ini; returns the line number of needle in it (0: none). */
static int write_ini(int port, const char *settings, const char *databases,
                     const char *needle)
{
	char *text = ini_text(port, settings, databases);
	char *at = needle ? strstr(text, needle) : NULL;
	char *path = h_write_file("sluice.ini", text);
	int line = 1;

	for (char *p = text; at && p < at; p++)
		line += *p == '\n';
	free(run.ini);
	run.ini = path;
	free(text);
	return at ? line : 0;
}

/* Writes the userlist and the ini, starts sluice on them. */
static void start(const char *settings, const char *databases)
{
	char *users = h_write_file("userlist.txt",
		"\"" H_ALICE "\" \"" H_ALICE_PASSWORD "\"\n"
		"\"" H_BOB "\" \"" H_BOB_PASSWORD "\"\n"
		"\"" H_CAROL "\" \"" H_CAROL_PASSWORD "\"\n"
		"\"" H_ADMIN "\" \"" H_ADMIN_PASSWORD "\"\n");

	free(users);
	run.port = h_free_port();
	write_ini(run.port, settings, databases, NULL);
	h_sluice_start_file(run.ini, run.port);
}

/* The [databases] line of an entry named name for PostgreSQL database db. */
static char *db_line(const char *name, const char *db)
{
	char *line = NULL;

	cr_assert(asprintf(&line, "%s = host=127.0.0.1 port=%d dbname=%s\n",
	                   name, h_pg_port(), db) > 0);
	return line;
}

/* Creates DB2 in PostgreSQL once per run of the binary. */
static void ensure_db2(void)
{
	if (h_pg_int("SELECT count(*) FROM pg_database WHERE datname = '" DB2 "'"))
		return;
	h_pg_exec("CREATE DATABASE " DB2 " OWNER " H_ALICE);
}

/* ---- the log ---- */

static int log_count(const char *needle)
{
	char *log = h_sluice_log();
	int n = 0;

	for (char *p = log; (p = strstr(p, needle)) != NULL; p++)
		n++;
	free(log);
	return n;
}

/* Waits until needle appears more often than before in the log. */
static void log_wait_more(const char *needle, int before)
{
	for (double end = h_now() + SETTLE_MS / 1000.0; h_now() < end; h_sleep_ms(20))
		if (log_count(needle) > before)
			return;
	h_assert_alive();
	cr_assert_fail("the log did not say \"%s\" within %d ms", needle, SETTLE_MS);
}

/* True if one log line contains both a and b. */
static bool log_line_has(const char *a, const char *b)
{
	char *log = h_sluice_log();
	bool found = false;

	for (char *line = log; line && *line && !found;) {
		char *end = strchr(line, '\n');

		if (end)
			*end = '\0';
		found = strstr(line, a) && strstr(line, b);
		line = end ? end + 1 : NULL;
	}
	free(log);
	return found;
}

/* SIGHUP, then waits for the outcome: "configuration reloaded" or
 * "reload failed". */
static void sighup(const char *outcome)
{
	int before = log_count(outcome);

	cr_assert(kill(h_sluice_pid(), SIGHUP) == 0);
	log_wait_more(outcome, before);
}

/* ---- clients ---- */

static PGconn *console(const char *user)
{
	return h_connect(user, "dbname=sluice");
}

static void send_async(PGconn *conn, const char *sql)
{
	cr_assert(PQsendQuery(conn, sql), "%s: %s", sql, PQerrorMessage(conn));
}

/* Reads what is left of the answer, so that conn can take a new query. */
static void drain(PGconn *conn)
{
	PGresult *res;

	while ((res = h_result_within(conn, SETTLE_MS)) != NULL)
		PQclear(res);
}

/* Asserts no answer to what conn sent comes within BLOCKED_MS. */
static void expect_blocked(PGconn *conn, const char *what)
{
	PGresult *res = h_result_within(conn, BLOCKED_MS);

	cr_assert_null(res, "%s was answered (%s) while it should wait", what,
	               res ? PQresStatus(PQresultStatus(res)) : "");
}

/* The answer to what conn sent, within SETTLE_MS: one row, one number. */
static long result_int(PGconn *conn, const char *what)
{
	PGresult *res = h_result_within(conn, SETTLE_MS);
	long v;

	cr_assert_not_null(res, "%s: no answer within %d ms", what, SETTLE_MS);
	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", what,
	             PQresultErrorMessage(res));
	v = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	drain(conn);
	return v;
}

/* The command tag of what conn sent, within SETTLE_MS; asserts success. */
static void result_ok(PGconn *conn, const char *what, const char *tag)
{
	PGresult *res = h_result_within(conn, SETTLE_MS);

	cr_assert_not_null(res, "%s: no answer within %d ms", what, SETTLE_MS);
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s: %s", what,
	             PQresultErrorMessage(res));
	cr_assert_str_eq(PQcmdStatus(res), tag, "%s", what);
	PQclear(res);
	drain(conn);
}

/* Runs a console command; asserts its tag. */
static void command(PGconn *conn, const char *sql, const char *tag)
{
	send_async(conn, sql);
	result_ok(conn, sql, tag);
}

/* Runs a console command expecting an ERROR; returns its message. */
static void command_fails(PGconn *conn, const char *sql, struct h_error *err)
{
	PGresult *res;

	send_async(conn, sql);
	res = h_result_within(conn, SETTLE_MS);
	cr_assert_not_null(res, "%s: no answer", sql);
	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "%s succeeded", sql);
	h_result_error(res, err);
	PQclear(res);
	drain(conn);
	cr_assert_str_eq(err->severity, "ERROR", "%s: %s", sql, err->message);
	cr_assert_eq(PQstatus(conn), CONNECTION_OK, "%s closed the console", sql);
}

/* A login in progress, driven by login_poll(). */
struct login {
	PGconn *conn;
	PostgresPollingStatusType st;   /* what PQconnectPoll said last */
};

/* Starts a login as user to db without waiting for it. */
static void login_start(struct login *l, const char *user, const char *db)
{
	char conninfo[512];

	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d dbname=%s user=%s password=%s "
	         "connect_timeout=10 sslmode=disable gssencmode=disable",
	         run.port, db, user, h_password_of(user));
	l->conn = PQconnectStart(conninfo);
	l->st = PGRES_POLLING_WRITING;
	cr_assert(l->conn && PQstatus(l->conn) != CONNECTION_BAD,
	          "PQconnectStart: %s", l->conn ? PQerrorMessage(l->conn) : "");
}

/* Drives a login for up to timeout_ms; true once it succeeded. */
static bool login_poll(struct login *l, int timeout_ms)
{
	double end = h_now() + timeout_ms / 1000.0;

	while (h_now() < end && l->st != PGRES_POLLING_OK &&
	       l->st != PGRES_POLLING_FAILED) {
		struct pollfd p = { PQsocket(l->conn), POLLIN, 0 };

		if (l->st == PGRES_POLLING_WRITING)
			p.events = POLLOUT;
		if (poll(&p, 1, 20) > 0)
			l->st = PQconnectPoll(l->conn);
	}
	cr_assert_neq(l->st, PGRES_POLLING_FAILED, "login failed: %s",
	              PQerrorMessage(l->conn));
	return l->st == PGRES_POLLING_OK;
}

/* The local port of a libpq connection: SHOW CLIENTS' port. */
static int local_port(PGconn *conn)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	cr_assert(getsockname(PQsocket(conn), (struct sockaddr *)&sa, &len) == 0);
	return ntohs(sa.sin_port);
}

/* ---- SHOW ---- */

/*
 * Copies column col of the SHOW row whose column keycol is key into out;
 * asserts the row exists.
 */
static void show_value(PGconn *admin, const char *sql, const char *keycol,
                       const char *key, const char *col, char *out,
                       size_t outlen)
{
	PGresult *res = PQexec(admin, sql);
	int kc, vc;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql,
	             PQresultErrorMessage(res));
	kc = PQfnumber(res, keycol);
	vc = PQfnumber(res, col);
	cr_assert(kc >= 0 && vc >= 0, "%s: no column %s or %s", sql, keycol, col);
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, kc), key) == 0) {
			snprintf(out, outlen, "%s", PQgetvalue(res, i, vc));
			PQclear(res);
			return;
		}
	PQclear(res);
	cr_assert_fail("%s: no row with %s = %s", sql, keycol, key);
}

static int count_rows(PGconn *admin, const char *sql)
{
	PGresult *res = PQexec(admin, sql);
	int n;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql,
	             PQresultErrorMessage(res));
	n = PQntuples(res);
	PQclear(res);
	return n;
}

static void expect_config(PGconn *admin, const char *key, const char *want)
{
	char v[256];

	show_value(admin, "SHOW CONFIG", "key", key, "value", v, sizeof(v));
	cr_assert_str_eq(v, want, "SHOW CONFIG %s", key);
}

static void expect_db(PGconn *admin, const char *name, const char *col,
                      const char *want)
{
	char v[256];

	show_value(admin, "SHOW DATABASES", "name", name, col, v, sizeof(v));
	cr_assert_str_eq(v, want, "SHOW DATABASES %s.%s", name, col);
}

static void expect_state(PGconn *admin, const char *key, const char *want)
{
	char v[64];

	show_value(admin, "SHOW STATE", "key", key, "value", v, sizeof(v));
	cr_assert_str_eq(v, want, "SHOW STATE %s", key);
}

/* All of SHOW CONFIG as "key=value;" text; caller frees. */
static char *config_dump(PGconn *admin)
{
	PGresult *res = PQexec(admin, "SHOW CONFIG");
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	cr_assert_gt(PQntuples(res), 10);
	for (int i = 0; i < PQntuples(res); i++)
		fprintf(m, "%s=%s;", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
	fclose(m);
	PQclear(res);
	return out;
}

/* ---- PostgreSQL ---- */

/* Waits until backend pid is gone from PostgreSQL. */
static void expect_backend_gone(long pid, const char *what)
{
	for (double end = h_now() + SETTLE_MS / 1000.0; h_now() < end; h_sleep_ms(20))
		if (h_pg_int("SELECT count(*) FROM pg_stat_activity WHERE pid = %ld",
		             pid) == 0)
			return;
	cr_assert_fail("%s: backend %ld still there after %d ms", what, pid,
	               SETTLE_MS);
}

static long backends_on(const char *db)
{
	return h_pg_int("SELECT count(*) FROM pg_stat_activity WHERE datname = "
	                "'%s' AND usename IN ('" H_ALICE "', '" H_BOB "')", db);
}

static void expect_no_backends(const char *db, const char *what)
{
	for (double end = h_now() + SETTLE_MS / 1000.0; h_now() < end; h_sleep_ms(20))
		if (backends_on(db) == 0)
			return;
	cr_assert_fail("%s: %ld backends left on %s", what, backends_on(db), db);
}

/* ---- exit ---- */

/*
 * Waits up to timeout_ms for sluice to exit on its own; returns its exit
 * code (128 + signal), -1 if it still runs. Looks without reaping, then
 * lets the harness reap it so that it knows sluice is gone.
 */
static int wait_exit(int timeout_ms)
{
	pid_t pid = h_sluice_pid();
	double end = h_now() + timeout_ms / 1000.0;

	cr_assert_gt(pid, 0);
	do {
		siginfo_t info;

		memset(&info, 0, sizeof(info));
		if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    info.si_pid == pid) {
			cr_assert(!h_sluice_alive());
			return info.si_code == CLD_EXITED ? info.si_status
			                                  : 128 + info.si_status;
		}
		h_sleep_ms(20);
	} while (h_now() < end);
	return -1;
}

/* ---- reload ---- */

/*
 * A reload that changes default_pool_size, query_wait_timeout and where
 * the entry "moving" points: running values change, a client connected
 * before keeps working and reaches the new database in its next
 * transaction, a transaction open across the reload keeps its server and
 * commits, and that server closes once released.
 */
static void reload_applies(bool by_console)
{
	char *before = db_line("moving", H_DBNAME), *after = db_line("moving", DB2);
	PGconn *idle, *in_tx, *admin;
	char db[64];
	long tx_pid;

	h_require_sluice();
	ensure_db2();
	h_pg_exec("CREATE TABLE IF NOT EXISTS ctl_reload (v int)");
	h_pg_exec("GRANT ALL ON ctl_reload TO PUBLIC");
	start("default_pool_size = 2\nquery_wait_timeout = 120\n", before);
	admin = console(H_ADMIN);
	idle = h_connect(H_ALICE, "dbname=moving");
	in_tx = h_connect(H_ALICE, "dbname=moving");
	h_query_str(idle, db, sizeof(db), "SELECT current_database()");
	cr_assert_str_eq(db, H_DBNAME);
	h_exec(in_tx, "BEGIN");
	tx_pid = h_query_int(in_tx, "SELECT pg_backend_pid()");
	h_exec(in_tx, "INSERT INTO ctl_reload VALUES (%d)", by_console);

	write_ini(run.port, "default_pool_size = 5\nquery_wait_timeout = 9\n",
	          after, NULL);
	if (by_console)
		command(admin, "RELOAD", "RELOAD");
	else
		sighup("configuration reloaded");

	expect_config(admin, "default_pool_size", "5");
	expect_config(admin, "query_wait_timeout", "9");
	expect_db(admin, "moving", "database", DB2);
	expect_db(admin, "moving", "pool_size", "5");
	expect_db(admin, H_DBNAME, "database", H_DBNAME);
	/* The open transaction keeps its server and its database. */
	h_query_str(in_tx, db, sizeof(db), "SELECT current_database()");
	cr_assert_str_eq(db, H_DBNAME, "the reload moved an open transaction");
	cr_assert_eq(h_query_int(in_tx, "SELECT pg_backend_pid()"), tx_pid);
	/* The client from before the reload gets the new database. */
	h_query_str(idle, db, sizeof(db), "SELECT current_database()");
	cr_assert_str_eq(db, DB2, "a new transaction still reaches the old dbname");
	/* The old target's server is "from before the reload". */
	send_async(admin, "WAIT_CLOSE");
	expect_blocked(admin, "WAIT_CLOSE with a server of the old target");
	h_exec(in_tx, "COMMIT");
	result_ok(admin, "WAIT_CLOSE after COMMIT", "WAIT_CLOSE");
	cr_assert_eq(h_pg_int("SELECT count(*) FROM ctl_reload WHERE v = %d",
	                      by_console), 1, "the transaction did not commit");
	expect_backend_gone(tx_pid, "server of the old target, once released");
	h_query_str(in_tx, db, sizeof(db), "SELECT current_database()");
	cr_assert_str_eq(db, DB2);
	h_pg_exec("DELETE FROM ctl_reload WHERE v = %d", by_console);
	PQfinish(idle);
	PQfinish(in_tx);
	PQfinish(admin);
	free(before);
	free(after);
	h_finish();
}

Test(control, sighup_reloads_settings_and_database_target)
{
	reload_applies(false);
}

Test(control, console_reload_applies_settings_and_database_target)
{
	reload_applies(true);
}

/* A broken file: SIGHUP logs file:line, RELOAD answers it, nothing changes. */
static void broken_reload(PGconn *admin, const char *settings,
                          const char *databases, const char *needle,
                          const char *reason)
{
	char *running = config_dump(admin), *now, where[1200];
	struct h_error err;
	int line = write_ini(run.port, settings, databases, needle);

	cr_assert_gt(line, 0);
	snprintf(where, sizeof(where), "%s:%d:", run.ini, line);
	sighup("reload failed");
	cr_assert(log_line_has("reload failed", where),
	          "no log line names %s", where);
	now = config_dump(admin);
	cr_assert_str_eq(now, running, "SIGHUP of a broken file changed settings");
	free(now);

	command_fails(admin, "RELOAD", &err);
	cr_assert_str_eq(err.sqlstate, "08P01");
	cr_assert(strstr(err.message, where), "RELOAD: \"%s\" does not name %s",
	          err.message, where);
	cr_assert(strstr(err.message, reason), "RELOAD: \"%s\"", err.message);
	now = config_dump(admin);
	cr_assert_str_eq(now, running, "RELOAD of a broken file changed settings");
	expect_db(admin, "moving", "database", H_DBNAME);
	free(now);
	free(running);
}

/* Valid changes (settings, a database's target) before or after the error
 * must not apply either. */
Test(control, broken_file_changes_nothing)
{
	char *before = db_line("moving", H_DBNAME), *after = db_line("moving", DB2);
	PGconn *admin, *alice;
	char db[64];

	h_require_sluice();
	ensure_db2();
	start("default_pool_size = 2\nquery_wait_timeout = 120\n", before);
	admin = console(H_ADMIN);
	alice = h_connect(H_ALICE, "dbname=moving");
	h_query_str(alice, db, sizeof(db), "SELECT current_database()");
	cr_assert_str_eq(db, H_DBNAME);
	broken_reload(admin, "default_pool_size = 6\nquery_wait_timeout = 8\n"
	              "no_such_setting = 1\n", after, "no_such_setting",
	              "unknown setting");
	broken_reload(admin, "query_wait_timeout = 8\n"
	              "default_pool_size = lots\n", after,
	              "default_pool_size = lots",
	              "invalid value for default_pool_size");
	expect_config(admin, "default_pool_size", "2");
	expect_config(admin, "query_wait_timeout", "120");
	h_query_str(alice, db, sizeof(db), "SELECT current_database()");
	cr_assert_str_eq(db, H_DBNAME, "a broken reload moved the database");
	PQfinish(alice);
	PQfinish(admin);
	free(before);
	free(after);
	h_finish();
}

Test(control, start_only_setting_is_kept_with_a_warning)
{
	int other = h_free_port();
	char port[16], name[64];
	PGconn *admin, *alice;

	h_require_sluice();
	start("query_wait_timeout = 120\n", NULL);
	admin = console(H_ADMIN);
	write_ini(other, "query_wait_timeout = 11\n", NULL, NULL);
	sighup("configuration reloaded");
	cr_assert(log_line_has("WARNING", "listen_port"),
	          "no warning names listen_port");
	snprintf(port, sizeof(port), "%d", run.port);
	expect_config(admin, "listen_port", port);
	expect_config(admin, "query_wait_timeout", "11");
	show_value(admin, "SHOW CONFIG", "key", "listen_port", "changeable", name,
	           sizeof(name));
	cr_assert_str_eq(name, "no");
	/* RELOAD says the same: it succeeds, the rest applies. */
	write_ini(other, "query_wait_timeout = 12\n", NULL, NULL);
	command(admin, "RELOAD", "RELOAD");
	expect_config(admin, "query_wait_timeout", "12");
	expect_config(admin, "listen_port", port);
	/* The old port still serves, the new one is not listened on. */
	alice = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(alice, "SELECT 4"), 4);
	snprintf(name, sizeof(name), "port=%d", other);
	cr_assert_null(h_try_connect(H_ALICE, name, NULL, 0),
	               "sluice listens on the port of the reloaded file");
	PQfinish(alice);
	PQfinish(admin);
	h_finish();
}

/* ---- SET ---- */

Test(control, set_on_the_console)
{
	PGconn *admin;
	struct h_error err;
	char port[16];

	h_require_sluice();
	start(NULL, NULL);
	admin = console(H_ADMIN);
	command(admin, "SET query_wait_timeout = 7", "SET");
	expect_config(admin, "query_wait_timeout", "7");
	command(admin, "SET default_pool_size TO '3'", "SET");
	expect_config(admin, "default_pool_size", "3");
	expect_db(admin, H_DBNAME, "pool_size", "3");

	command_fails(admin, "SET listen_port = 1", &err);
	cr_assert_str_eq(err.sqlstate, "08P01");
	cr_assert_str_eq(err.message, "listen_port cannot be changed at run time");
	command_fails(admin, "SET no_such = 1", &err);
	cr_assert(strstr(err.message, "no_such"), "%s", err.message);
	command_fails(admin, "SET default_pool_size = lots", &err);
	cr_assert_str_eq(err.message, "invalid value for default_pool_size: lots");
	expect_config(admin, "default_pool_size", "3");
	snprintf(port, sizeof(port), "%d", run.port);
	expect_config(admin, "listen_port", port);
	PQfinish(admin);
	h_finish();
}

/* ---- PAUSE and RESUME ---- */

/* Asserts conn was disconnected by sluice: its next query fails. */
static void expect_dropped(PGconn *conn, const char *what)
{
	char err[1024];

	cr_assert(!h_try_exec(conn, "SELECT 1", err, sizeof(err)),
	          "%s: the client still works", what);
	cr_assert_eq(PQstatus(conn), CONNECTION_BAD, "%s: %s", what, err);
}

/*
 * While paused: an idle client's query waits, no server is open, a login
 * to a pool never used before waits; RESUME lets them all through.
 */
Test(control, pause_holds_queries_and_logins_until_resume)
{
	char *db2 = db_line("fresh", DB2);
	PGconn *admin, *alice;
	struct login fresh;

	h_require_sluice();
	ensure_db2();
	start(NULL, db2);
	admin = console(H_ADMIN);
	alice = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(alice, "SELECT 1"), 1);
	command(admin, "PAUSE", "PAUSE");
	/* PAUSE answered: its servers are closed. */
	cr_assert_eq(count_rows(admin, "SHOW SERVERS"), 0,
	             "PAUSE answered with servers left");
	expect_no_backends(H_DBNAME, "after PAUSE");
	expect_state(admin, "paused", "yes");

	send_async(alice, "SELECT 2");
	login_start(&fresh, H_BOB, "fresh");
	expect_blocked(alice, "a query while paused");
	cr_assert(!login_poll(&fresh, BLOCKED_MS),
	          "a login to a new pool completed while paused");
	cr_assert_eq(backends_on(H_DBNAME), 0, "a server was opened while paused");
	cr_assert_eq(backends_on(DB2), 0, "a server was opened while paused");

	command(admin, "RESUME", "RESUME");
	cr_assert_eq(result_int(alice, "SELECT 2 after RESUME"), 2);
	cr_assert(login_poll(&fresh, SETTLE_MS), "the paused login did not finish");
	cr_assert_eq(h_query_int(fresh.conn, "SELECT 3"), 3);
	expect_state(admin, "paused", "no");
	PQfinish(fresh.conn);
	PQfinish(alice);
	PQfinish(admin);
	free(db2);
	h_finish();
}

/* PAUSE answers once the open transaction ends; the transaction goes on. */
Test(control, pause_answers_after_open_transaction_commits)
{
	PGconn *admin, *in_tx, *other;

	h_require_sluice();
	h_pg_exec("CREATE TABLE IF NOT EXISTS ctl_pause (v int)");
	h_pg_exec("GRANT ALL ON ctl_pause TO PUBLIC");
	h_pg_exec("DELETE FROM ctl_pause");
	start(NULL, NULL);
	admin = console(H_ADMIN);
	in_tx = h_connect(H_ALICE, NULL);
	other = h_connect(H_BOB, NULL);
	h_exec(in_tx, "BEGIN");
	h_exec(in_tx, "INSERT INTO ctl_pause VALUES (1)");

	send_async(admin, "PAUSE");
	expect_blocked(admin, "PAUSE with a transaction open");
	/* The transaction in progress runs its next statements... */
	h_exec(in_tx, "INSERT INTO ctl_pause VALUES (2)");
	/* ...while a new one waits. */
	send_async(other, "SELECT 7");
	expect_blocked(other, "a new transaction while PAUSE waits");
	h_exec(in_tx, "COMMIT");
	result_ok(admin, "PAUSE after COMMIT", "PAUSE");
	cr_assert_eq(h_pg_int("SELECT count(*) FROM ctl_pause"), 2);
	expect_no_backends(H_DBNAME, "after PAUSE answered");
	expect_blocked(other, "a query while paused");

	command(admin, "RESUME", "RESUME");
	cr_assert_eq(result_int(other, "SELECT 7 after RESUME"), 7);
	cr_assert_eq(h_query_int(in_tx, "SELECT count(*) FROM ctl_pause"), 2);
	PQfinish(in_tx);
	PQfinish(other);
	PQfinish(admin);
	h_finish();
}

/* PAUSE db: that database waits, the others go on. */
Test(control, pause_one_database)
{
	char *db2 = db_line("other", DB2);
	PGconn *admin, *paused, *running;

	h_require_sluice();
	ensure_db2();
	start(NULL, db2);
	admin = console(H_ADMIN);
	paused = h_connect(H_ALICE, NULL);
	running = h_connect(H_ALICE, "dbname=other");
	cr_assert_eq(h_query_int(paused, "SELECT 1"), 1);
	cr_assert_eq(h_query_int(running, "SELECT 1"), 1);
	command(admin, "PAUSE " H_DBNAME, "PAUSE");
	expect_db(admin, H_DBNAME, "paused", "1");
	expect_db(admin, "other", "paused", "0");
	expect_no_backends(H_DBNAME, "after PAUSE " H_DBNAME);
	send_async(paused, "SELECT 2");
	expect_blocked(paused, "a query to the paused database");
	cr_assert_eq(h_query_int(running, "SELECT 3"), 3,
	             "PAUSE of one database held another");
	command(admin, "RESUME " H_DBNAME, "RESUME");
	cr_assert_eq(result_int(paused, "SELECT 2 after RESUME"), 2);
	expect_db(admin, H_DBNAME, "paused", "0");
	PQfinish(paused);
	PQfinish(running);
	PQfinish(admin);
	free(db2);
	h_finish();
}

/*
 * Starts a login as user to db (PostgreSQL database pgdb) while db is
 * paused; asserts that neither the login nor a first query gets through
 * within BLOCKED_MS and that no server of user is opened there (the login
 * may complete if the pool knows the server's parameters). Returns whether
 * the login completed.
 */
static bool expect_held(struct login *l, const char *user, const char *db,
                        const char *pgdb, const char *what)
{
	bool in;

	login_start(l, user, db);
	in = login_poll(l, BLOCKED_MS);
	if (in) {
		send_async(l->conn, "SELECT 11");
		expect_blocked(l->conn, what);
	}
	cr_assert_eq(h_pg_int("SELECT count(*) FROM pg_stat_activity WHERE "
	                      "usename = '%s' AND datname = '%s'", user, pgdb), 0,
	             "%s: a server was opened for %s", what, user);
	return in;
}

/* After RESUME: the held login (and its query) goes through. */
static void expect_released(struct login *l, bool logged_in, const char *what)
{
	if (logged_in) {
		cr_assert_eq(result_int(l->conn, what), 11);
		return;
	}
	cr_assert(login_poll(l, SETTLE_MS), "%s: login stuck after RESUME", what);
	cr_assert_eq(h_query_int(l->conn, "SELECT 11"), 11);
}

/*
 * PAUSE db pauses the database (PgBouncer's db->db_paused), not only the
 * pools it has: a user with no pool there yet waits too, and so does a
 * database with no pool at all.
 */
Test(control, pause_db_holds_every_user_of_it)
{
	char *db2 = db_line("other", DB2);
	PGconn *admin, *alice;
	struct login bob, carol;
	bool bob_in, carol_in;

	h_require_sluice();
	ensure_db2();
	start(NULL, db2);
	admin = console(H_ADMIN);
	alice = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(alice, "SELECT 1"), 1);
	command(admin, "PAUSE " H_DBNAME, "PAUSE");
	expect_db(admin, H_DBNAME, "paused", "1");
	bob_in = expect_held(&bob, H_BOB, H_DBNAME, H_DBNAME,
	                     "a new user of a paused database");
	command(admin, "PAUSE other", "PAUSE");
	carol_in = expect_held(&carol, H_CAROL, "other", DB2,
	                       "a paused database that had no pool");
	expect_db(admin, "other", "paused", "1");
	command(admin, "RESUME " H_DBNAME, "RESUME");
	command(admin, "RESUME other", "RESUME");
	expect_released(&bob, bob_in, "bob after RESUME");
	expect_released(&carol, carol_in, "carol after RESUME");
	PQfinish(bob.conn);
	PQfinish(carol.conn);
	PQfinish(alice);
	PQfinish(admin);
	free(db2);
	h_finish();
}

/* KILL db: "new client connections to a killed database will wait until
 * RESUME" (PgBouncer), whatever their user. */
Test(control, kill_db_holds_new_clients_of_every_user)
{
	PGconn *admin, *alice;
	struct login bob;
	bool bob_in;

	h_require_sluice();
	start(NULL, NULL);
	admin = console(H_ADMIN);
	alice = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(alice, "SELECT 1"), 1);
	command(admin, "KILL " H_DBNAME, "KILL");
	expect_dropped(alice, "client of the killed database");
	bob_in = expect_held(&bob, H_BOB, H_DBNAME, H_DBNAME,
	                     "a new user of a killed database");
	command(admin, "RESUME " H_DBNAME, "RESUME");
	expect_released(&bob, bob_in, "bob after RESUME");
	PQfinish(bob.conn);
	PQfinish(alice);
	PQfinish(admin);
	h_finish();
}

Test(control, sigusr1_pauses_sigusr2_resumes)
{
	PGconn *admin, *alice;
	double end;

	h_require_sluice();
	start(NULL, NULL);
	admin = console(H_ADMIN);
	alice = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(alice, "SELECT 1"), 1);
	cr_assert(kill(h_sluice_pid(), SIGUSR1) == 0);
	cr_assert(h_log_wait("PAUSE (all)", SETTLE_MS), "SIGUSR1 was not logged");
	expect_state(admin, "paused", "yes");
	expect_no_backends(H_DBNAME, "after SIGUSR1");
	send_async(alice, "SELECT 5");
	expect_blocked(alice, "a query after SIGUSR1");
	cr_assert(kill(h_sluice_pid(), SIGUSR2) == 0);
	cr_assert_eq(result_int(alice, "SELECT 5 after SIGUSR2"), 5);
	for (end = h_now() + 2; h_now() < end && log_count("RESUME (all)") == 0;)
		h_sleep_ms(20);
	expect_state(admin, "paused", "no");
	PQfinish(alice);
	PQfinish(admin);
	h_finish();
}

/* ---- SUSPEND ---- */

Test(control, suspend_holds_clients_but_not_the_console)
{
	PGconn *admin, *alice;
	struct login late;

	h_require_sluice();
	start(NULL, NULL);
	admin = console(H_ADMIN);
	alice = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(alice, "SELECT 1"), 1);
	command(admin, "SUSPEND", "SUSPEND");
	send_async(alice, "SELECT 42");
	login_start(&late, H_BOB, H_DBNAME);
	expect_blocked(alice, "a query during SUSPEND");
	cr_assert(!login_poll(&late, BLOCKED_MS), "a login completed in SUSPEND");
	/* The console is read and answered. */
	expect_state(admin, "suspended", "yes");
	expect_config(admin, "pool_mode", "transaction");
	command(admin, "RESUME", "RESUME");
	cr_assert_eq(result_int(alice, "SELECT 42 after RESUME"), 42);
	cr_assert(login_poll(&late, SETTLE_MS), "a login from SUSPEND is stuck");
	cr_assert_eq(h_query_int(late.conn, "SELECT 43"), 43);
	PQfinish(late.conn);
	expect_state(admin, "suspended", "no");
	PQfinish(alice);
	PQfinish(admin);
	h_finish();
}

/* ---- KILL, KILL_CLIENT, DISABLE ---- */

Test(control, kill_db_drops_only_that_database)
{
	char *db2 = db_line("other", DB2);
	PGconn *admin, *victim, *bystander, *later;
	struct login again;
	bool logged_in;

	h_require_sluice();
	ensure_db2();
	start(NULL, db2);
	admin = console(H_ADMIN);
	victim = h_connect(H_ALICE, NULL);
	bystander = h_connect(H_ALICE, "dbname=other");
	cr_assert_eq(h_query_int(victim, "SELECT 1"), 1);
	cr_assert_eq(h_query_int(bystander, "SELECT 1"), 1);

	command(admin, "KILL " H_DBNAME, "KILL");
	expect_dropped(victim, "client of the killed database");
	cr_assert_eq(h_query_int(bystander, "SELECT 2"), 2,
	             "KILL dropped a client of another database");
	expect_no_backends(H_DBNAME, "after KILL");
	expect_db(admin, H_DBNAME, "paused", "1");
	expect_db(admin, "other", "paused", "0");

	/* Paused by the KILL: a new client waits for RESUME. */
	logged_in = expect_held(&again, H_ALICE, H_DBNAME, H_DBNAME,
	                        "a client of a killed database");
	command(admin, "RESUME " H_DBNAME, "RESUME");
	expect_released(&again, logged_in, "a client held by KILL");
	later = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(later, "SELECT 4"), 4);
	expect_db(admin, H_DBNAME, "paused", "0");
	PQfinish(again.conn);
	PQfinish(later);
	PQfinish(victim);
	PQfinish(bystander);
	PQfinish(admin);
	free(db2);
	h_finish();
}

/* The id SHOW CLIENTS gives the client conn. */
static long client_id(PGconn *admin, PGconn *conn)
{
	char port[16], id[32];

	snprintf(port, sizeof(port), "%d", local_port(conn));
	show_value(admin, "SHOW CLIENTS", "port", port, "id", id, sizeof(id));
	return atol(id);
}

/*
 * KILL_CLIENT drops that client only. One server for alice: a killed
 * client's open transaction must not reach the next client of the server.
 */
Test(control, kill_client_drops_exactly_that_client)
{
	PGconn *admin, *self, *a, *b, *c;
	struct h_error err;
	char sql[64];

	h_require_sluice();
	h_pg_exec("CREATE TABLE IF NOT EXISTS ctl_kill (v int)");
	h_pg_exec("GRANT ALL ON ctl_kill TO PUBLIC");
	h_pg_exec("DELETE FROM ctl_kill");
	start("default_pool_size = 1\n", NULL);
	admin = console(H_ADMIN);
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_ALICE, NULL);
	c = h_connect(H_BOB, NULL);
	cr_assert_eq(h_query_int(a, "SELECT 1"), 1);
	h_exec(b, "BEGIN");
	h_exec(b, "INSERT INTO ctl_kill VALUES (1)");
	snprintf(sql, sizeof(sql), "KILL_CLIENT %ld", client_id(admin, b));
	command(admin, sql, "KILL_CLIENT");
	expect_dropped(b, "the killed client");
	cr_assert_eq(h_query_int(a, "SELECT count(*) FROM ctl_kill"), 0,
	             "the killed client's transaction reached another client");
	cr_assert_eq(PQtransactionStatus(a), PQTRANS_IDLE);
	cr_assert_eq(h_pg_int("SELECT count(*) FROM ctl_kill"), 0);
	cr_assert_eq(h_query_int(c, "SELECT 1"), 1);
	/* As log lines name it, C-<id>: a quoted word in the grammar. */
	snprintf(sql, sizeof(sql), "KILL_CLIENT \"C-%ld\"", client_id(admin, c));
	command(admin, sql, "KILL_CLIENT");
	expect_dropped(c, "the client killed by C-id");
	cr_assert_eq(h_query_int(a, "SELECT 2"), 2);
	command_fails(admin, "KILL_CLIENT 999999", &err);
	cr_assert_str_eq(err.message, "no such client");
	/* A console may drop itself; the others go on. */
	self = console(H_ADMIN);
	snprintf(sql, sizeof(sql), "KILL_CLIENT %ld", client_id(admin, self));
	PQclear(PQexec(self, sql));
	cr_assert_eq(PQstatus(self), CONNECTION_BAD, "KILL_CLIENT of itself");
	expect_state(admin, "paused", "no");
	cr_assert_eq(h_query_int(a, "SELECT 3"), 3);
	PQfinish(self);
	PQfinish(a);
	PQfinish(b);
	PQfinish(c);
	PQfinish(admin);
	h_finish();
}

Test(control, disable_refuses_new_clients_enable_lets_them_in)
{
	PGconn *admin, *before, *after;
	struct h_error err;

	h_require_sluice();
	start(NULL, NULL);
	admin = console(H_ADMIN);
	before = h_connect(H_ALICE, NULL);
	command(admin, "DISABLE " H_DBNAME, "DISABLE");
	expect_db(admin, H_DBNAME, "disabled", "1");
	cr_assert(h_connect_fails(H_BOB, NULL, &err), "DISABLE let a client in");
	cr_assert_str_eq(err.severity, "FATAL");
	cr_assert_str_eq(err.sqlstate, "08P01");
	cr_assert_str_eq(err.message, "database \"" H_DBNAME "\" is disabled");
	/* A client already in keeps working. */
	cr_assert_eq(h_query_int(before, "SELECT 1"), 1);
	command(admin, "ENABLE " H_DBNAME, "ENABLE");
	expect_db(admin, H_DBNAME, "disabled", "0");
	after = h_connect(H_BOB, NULL);
	cr_assert_eq(h_query_int(after, "SELECT 2"), 2);
	PQfinish(after);
	PQfinish(before);
	PQfinish(admin);
	h_finish();
}

/* ---- RECONNECT and WAIT_CLOSE ---- */

/* True if a server with remote_pid pid is in SHOW SERVERS. */
static bool server_listed(PGconn *admin, long pid)
{
	PGresult *res = PQexec(admin, "SHOW SERVERS");
	int col = PQfnumber(res, "remote_pid");
	bool found = false;

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	cr_assert_geq(col, 0);
	for (int i = 0; i < PQntuples(res); i++)
		found |= atol(PQgetvalue(res, i, col)) == pid;
	PQclear(res);
	return found;
}

Test(control, reconnect_replaces_servers_and_wait_close_waits)
{
	PGconn *admin, *idle, *in_tx;
	long idle_pid, tx_pid, pid;

	h_require_sluice();
	start(NULL, NULL);
	admin = console(H_ADMIN);
	idle = h_connect(H_ALICE, NULL);
	in_tx = h_connect(H_ALICE, NULL);
	/* in_tx holds its server, so idle gets another one. */
	h_exec(in_tx, "BEGIN");
	tx_pid = h_query_int(in_tx, "SELECT pg_backend_pid()");
	idle_pid = h_query_int(idle, "SELECT pg_backend_pid()");
	cr_assert_neq(idle_pid, tx_pid);
	cr_assert(server_listed(admin, idle_pid));
	cr_assert(server_listed(admin, tx_pid));

	command(admin, "RECONNECT", "RECONNECT");
	pid = h_query_int(idle, "SELECT pg_backend_pid()");
	cr_assert_neq(pid, idle_pid, "RECONNECT kept the idle server");
	cr_assert_neq(pid, tx_pid);
	expect_backend_gone(idle_pid, "idle server after RECONNECT");
	/* The transaction in flight keeps its server. */
	cr_assert_eq(h_query_int(in_tx, "SELECT pg_backend_pid()"), tx_pid);

	send_async(admin, "WAIT_CLOSE");
	expect_blocked(admin, "WAIT_CLOSE with an old server in a transaction");
	h_exec(in_tx, "COMMIT");
	result_ok(admin, "WAIT_CLOSE after COMMIT", "WAIT_CLOSE");
	cr_assert(!server_listed(admin, tx_pid));
	cr_assert(!server_listed(admin, idle_pid));
	expect_backend_gone(tx_pid, "old server after its COMMIT");
	pid = h_query_int(in_tx, "SELECT pg_backend_pid()");
	cr_assert_neq(pid, tx_pid);
	cr_assert_neq(pid, idle_pid);
	/* Nothing old left: answers at once. */
	command(admin, "WAIT_CLOSE " H_DBNAME, "WAIT_CLOSE");
	PQfinish(idle);
	PQfinish(in_tx);
	PQfinish(admin);
	h_finish();
}

/* ---- shutdown ---- */

Test(control, shutdown_exits_cleanly)
{
	PGconn *admin, *alice;
	PGresult *res;

	h_require_sluice();
	start(NULL, NULL);
	admin = console(H_ADMIN);
	alice = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(alice, "SELECT 1"), 1);
	send_async(admin, "SHUTDOWN");
	while ((res = h_result_within(admin, SETTLE_MS)) != NULL)
		PQclear(res);
	cr_assert_eq(wait_exit(SETTLE_MS), 0, "SHUTDOWN: exit status");
	expect_dropped(alice, "a client after SHUTDOWN");
	PQfinish(alice);
	PQfinish(admin);
}

Test(control, sigint_lets_the_transaction_commit_then_exits)
{
	PGconn *in_tx;
	struct h_error err;

	h_require_sluice();
	h_pg_exec("CREATE TABLE IF NOT EXISTS ctl_sigint (v int)");
	h_pg_exec("GRANT ALL ON ctl_sigint TO PUBLIC");
	h_pg_exec("DELETE FROM ctl_sigint");
	start(NULL, NULL);
	in_tx = h_connect(H_ALICE, NULL);
	h_exec(in_tx, "BEGIN");
	h_exec(in_tx, "INSERT INTO ctl_sigint VALUES (1)");
	cr_assert(kill(h_sluice_pid(), SIGINT) == 0);
	cr_assert(h_log_wait("got SIGINT", SETTLE_MS), "SIGINT was not logged");
	cr_assert(h_connect_fails(H_BOB, NULL, &err),
	          "a new client got in during the SIGINT wait");
	h_sleep_ms(BLOCKED_MS);
	h_assert_alive();
	h_exec(in_tx, "INSERT INTO ctl_sigint VALUES (2)");
	h_exec(in_tx, "COMMIT");
	cr_assert_eq(wait_exit(SETTLE_MS), 0, "SIGINT: exit status");
	cr_assert_eq(h_pg_int("SELECT count(*) FROM ctl_sigint"), 2,
	             "the transaction did not commit");
	PQfinish(in_tx);
}

Test(control, shutdown_wait_for_clients_exits_after_the_last)
{
	PGconn *admin, *a, *b;
	struct h_error err;

	h_require_sluice();
	start(NULL, NULL);
	admin = console(H_ADMIN);
	a = h_connect(H_ALICE, NULL);
	b = h_connect(H_BOB, NULL);
	command(admin, "SHUTDOWN WAIT_FOR_CLIENTS", "SHUTDOWN");
	cr_assert(h_connect_fails(H_CAROL, NULL, &err),
	          "a new client got in during SHUTDOWN WAIT_FOR_CLIENTS");
	/* The clients in keep working until they leave. */
	cr_assert_eq(h_query_int(a, "SELECT 1"), 1);
	PQfinish(a);
	cr_assert_eq(h_query_int(b, "SELECT 2"), 2);
	cr_assert_eq(wait_exit(BLOCKED_MS), -1, "exited with a client left");
	PQfinish(b);
	cr_assert_eq(wait_exit(SETTLE_MS), 0, "WAIT_FOR_CLIENTS: exit status");
	PQfinish(admin);
}

/* ---- who may ---- */

Test(control, stats_user_cannot_control_others_cannot_connect)
{
	PGconn *stats, *alice;
	struct h_error err;

	h_require_sluice();
	start("stats_users = " H_BOB "\n", NULL);
	stats = console(H_BOB);
	alice = h_connect(H_ALICE, NULL);
	command_fails(stats, "PAUSE", &err);
	cr_assert_str_eq(err.sqlstate, "08P01");
	cr_assert_str_eq(err.message, ADMIN_NEEDED);
	command_fails(stats, "SHUTDOWN", &err);
	cr_assert_str_eq(err.message, ADMIN_NEEDED);
	command_fails(stats, "KILL " H_DBNAME, &err);
	cr_assert_str_eq(err.message, ADMIN_NEEDED);
	expect_state(stats, "paused", "no");
	cr_assert_eq(h_query_int(alice, "SELECT 1"), 1);
	cr_assert(h_connect_fails(H_CAROL, "dbname=sluice", &err),
	          "a user in neither list reached the console");
	cr_assert_str_eq(err.severity, "FATAL");
	cr_assert_str_eq(err.message, "not allowed to connect to the admin console");
	PQfinish(alice);
	PQfinish(stats);
	h_finish();
}
