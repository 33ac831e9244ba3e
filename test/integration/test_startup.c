/*
 * test_startup.c - starting sluice: a real pgbouncer.ini (comments, a very
 * long line, %include, settings sluice only warns about), bad config files
 * (file:line in the message, non-zero exit), the command line (-V, --help,
 * bad flags) and daemon mode (-d with and without a pidfile).
 */
#define _GNU_SOURCE /* asprintf */
#include <criterion/criterion.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(startup, .fini = h_teardown, .timeout = 60);

static struct h_output out;

/* Runs sluice with up to three args (NULL ends them); returns its status. */
static int run_sluice(const char *a1, const char *a2, const char *a3)
{
	const char *argv[] = { h_sluice_bin(), a1, a2, a3, NULL };

	return h_run(argv, 10000, &out);
}

static void write_userlist(void)
{
	free(h_write_file("userlist.txt",
		";; user list, PgBouncer format\n"
		"\"" H_ALICE "\" \"" H_ALICE_PASSWORD "\"\n"
		"\"" H_BOB "\" \"" H_BOB_PASSWORD "\"\n"
		"\"" H_ADMIN "\" \"" H_ADMIN_PASSWORD "\"\n"));
}

/* Copies data/name into the test directory, placeholders filled in. */
static char *install_data(const char *name, int port)
{
	char *text = h_read_data(name), *expanded = h_expand(text, port);
	char *path = h_write_file(name, expanded);

	free(text);
	free(expanded);
	return path;
}

Test(startup, realistic_pgbouncer_ini)
{
	int port = h_free_port();
	char *path, *log;
	PGconn *conn;
	char value[64];

	h_require_sluice();
	/* data/pgbouncer.ini: comments, a 4,000-byte line, [users], %include,
	 * PgBouncer-only settings. */
	free(install_data("userlist.txt", port));
	free(install_data("extra.ini", port));
	path = install_data("pgbouncer.ini", port);
	h_sluice_start_file(path, port);

	conn = h_connect(H_ALICE, NULL);
	cr_assert_eq(h_query_int(conn, "SELECT 1"), 1);
	PQfinish(conn);
	conn = h_connect(H_ALICE, "dbname=long_db");
	h_query_str(conn, value, sizeof(value), "SELECT current_database()");
	cr_assert_str_eq(value, H_DBNAME);
	PQfinish(conn);
	conn = h_connect(H_BOB, "dbname=included_db");
	h_query_str(conn, value, sizeof(value), "SELECT current_user");
	cr_assert_str_eq(value, H_BOB);
	PQfinish(conn);
	log = h_sluice_log();
	cr_assert(strstr(log, "dns_max_ttl"), "no warning about dns_max_ttl:\n%s", log);
	cr_assert(!strstr(log, "max_prepared_statements is not supported"),
	          "max_prepared_statements is implemented, yet warned about");
	free(log);
	free(path);
	h_finish();
}

/* A bad file: sluice exits non-zero naming file:line. */
static void bad_config(const char *body_line, int line_no, const char *word)
{
	char *text = NULL, *path, where[PATH_MAX + 32];
	int status;

	/* Line 1: comment, 2: [sluice], 3: listen_port, 4: the bad line. */
	cr_assert(asprintf(&text, "; a bad config\n[sluice]\nlisten_port = %d\n%s\n"
	                   "[databases]\nsluice_test = host=127.0.0.1 dbname=x\n",
	                   h_free_port(), body_line) > 0);
	path = h_write_file("bad.ini", text);
	status = run_sluice(path, NULL, NULL);
	cr_assert(status > 0 && status < 128, "%s: exit status %d\n%s%s", body_line,
	          status, out.out, out.err);
	snprintf(where, sizeof(where), "%s:%d", path, line_no);
	cr_assert(strstr(out.err, where), "%s: stderr does not say %s:\n%s",
	          body_line, where, out.err);
	cr_assert(strstr(out.err, word), "%s: stderr does not name %s:\n%s",
	          body_line, word, out.err);
	free(text);
	free(path);
}

Test(startup, bad_config_files)
{
	h_require_sluice();
	bad_config("no_such_setting = 1", 4, "no_such_setting");
	bad_config("listen_port = not-a-number", 4, "listen_port");
	bad_config("pool_mode = sometimes", 4, "pool_mode");
	bad_config("default_pool_size = -3", 4, "default_pool_size");
	bad_config("auth_type = telepathy", 4, "auth_type");
}

Test(startup, missing_include_and_missing_file)
{
	char *path;
	int status;

	h_require_sluice();
	path = h_write_file("inc.ini", "[sluice]\n%include /nonexistent/sluice-x.ini\n");
	status = run_sluice(path, NULL, NULL);
	cr_assert(status > 0 && status < 128, "exit status %d", status);
	cr_assert(strstr(out.err, "sluice-x.ini"), "stderr:\n%s", out.err);
	free(path);
	status = run_sluice("/nonexistent/sluice.ini", NULL, NULL);
	cr_assert(status > 0 && status < 128, "exit status %d", status);
	cr_assert(strstr(out.err, "/nonexistent/sluice.ini"), "stderr:\n%s", out.err);
}

Test(startup, version_and_help)
{
	regex_t re;

	h_require_sluice();
	cr_assert_eq(run_sluice("-V", NULL, NULL), 0, "-V: %s", out.err);
	cr_assert(regcomp(&re, "^sluice [0-9]+\\.[0-9]+", REG_EXTENDED) == 0);
	cr_assert(regexec(&re, out.out, 0, NULL, 0) == 0, "-V printed: %s", out.out);
	regfree(&re);
	cr_assert_eq(run_sluice("--version", NULL, NULL), 0);
	cr_assert(strstr(out.out, "sluice"), "--version printed: %s", out.out);

	cr_assert_eq(run_sluice("--help", NULL, NULL), 0, "--help: %s", out.err);
	cr_assert(strstr(out.out, "Usage"), "--help printed: %s", out.out);
	cr_assert(strstr(out.out, "--daemon"), "--help does not list --daemon");
	cr_assert_eq(run_sluice("-h", NULL, NULL), 0);
	cr_assert(strstr(out.out, "Usage"));
}

Test(startup, bad_flags_print_usage_and_exit_2)
{
	h_require_sluice();
	cr_assert_eq(run_sluice("--bogus", NULL, NULL), 2, "--bogus");
	cr_assert(strstr(out.err, "Usage"), "--bogus: %s", out.err);
	cr_assert_eq(run_sluice("-Z", "x.ini", NULL), 2, "-Z");
	cr_assert(strstr(out.err, "Usage"));
	cr_assert_eq(run_sluice(NULL, NULL, NULL), 2, "no config file");
	cr_assert(strstr(out.err, "Usage"));
	cr_assert_eq(run_sluice("a.ini", "b.ini", NULL), 2, "two config files");
}

/* A minimal valid config; pidfile may be NULL. */
static char *small_config(int port, bool with_pidfile)
{
	char *text = NULL, *path;
	const char *dir = h_test_dir();

	write_userlist();
	cr_assert(asprintf(&text,
		"[databases]\n"
		"sluice_test = host=127.0.0.1 port=%d dbname=" H_DBNAME "\n"
		"[sluice]\n"
		"listen_addr = 127.0.0.1\n"
		"listen_port = %d\n"
		"unix_socket_dir = %s\n"
		"auth_type = md5\n"
		"auth_file = %s/userlist.txt\n"
		"logfile = %s/sluice.log\n"
		"%s%s%s",
		h_pg_port(), port, dir, dir, dir,
		with_pidfile ? "pidfile = " : "", with_pidfile ? dir : "",
		with_pidfile ? "/sluice.pid\n" : "") > 0);
	path = h_write_file("daemon.ini", text);
	free(text);
	return path;
}

Test(startup, daemon_needs_a_pidfile)
{
	char *path;
	int status;

	h_require_sluice();
	path = small_config(h_free_port(), false);
	status = run_sluice("-d", path, NULL);
	cr_assert(status > 0 && status < 128, "-d without pidfile: exit %d", status);
	cr_assert(strstr(out.err, "pidfile"), "-d without pidfile: %s", out.err);
	free(path);
}

/* True while pid runs (a zombie counts as gone). */
static bool running(pid_t pid)
{
	char path[64], stat[256] = "";
	FILE *f;
	char *state;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(stat, sizeof(stat), f))
		stat[0] = '\0';
	fclose(f);
	state = strrchr(stat, ')');
	return state && state[1] == ' ' && state[2] != 'Z' && state[2] != 'X';
}

Test(startup, daemon_writes_pidfile_and_serves)
{
	int port = h_free_port();
	char *path = small_config(port, true), *pidpath = NULL;
	char conninfo[64];
	double deadline;
	PGconn *conn = NULL;
	pid_t pid = 0;
	int status;

	h_require_sluice();
	cr_assert(asprintf(&pidpath, "%s/sluice.pid", h_test_dir()) > 0);
	status = run_sluice("-d", path, NULL);
	cr_assert_eq(status, 0, "-d: exit %d\n%s", status, out.err);
	/* The daemon writes its pid and starts serving. */
	for (deadline = h_now() + 10; h_now() < deadline && pid <= 0; h_sleep_ms(50)) {
		FILE *f = fopen(pidpath, "r");

		if (f) {
			if (fscanf(f, "%d", &pid) != 1)
				pid = 0;
			fclose(f);
		}
	}
	cr_assert_gt(pid, 0, "no pid in %s", pidpath);
	h_kill_at_teardown(pid);
	cr_assert(running(pid), "pid %d from the pidfile is not running", (int)pid);
	snprintf(conninfo, sizeof(conninfo), "port=%d", port);
	for (deadline = h_now() + 10; !conn && h_now() < deadline;)
		if (!(conn = h_try_connect(H_ALICE, conninfo, NULL, 0)))
			h_sleep_ms(50);
	cr_assert(conn, "the daemon does not accept clients on port %d", port);
	cr_assert_eq(h_query_int(conn, "SELECT 5"), 5);
	PQfinish(conn);
	/* SIGTERM stops it and removes the pidfile. */
	cr_assert(kill(pid, SIGTERM) == 0);
	for (deadline = h_now() + 10; running(pid) && h_now() < deadline;)
		h_sleep_ms(20);
	cr_assert(!running(pid), "the daemon ignored SIGTERM");
	cr_assert(access(pidpath, F_OK) != 0, "the pidfile is still there");
	free(pidpath);
	free(path);
}
