/*
 * harness.h - integration tests: a real PostgreSQL, sluice as a child
 * process, libpq and raw-socket clients.
 *
 * Each test binary starts one PostgreSQL (initdb into a temporary directory,
 * a free port, as the postgres user when run as root) before its first test
 * and stops it after the last; criterion runs each test in a process of its
 * own, which finds that PostgreSQL through SLUICE_TEST_PG* environment
 * variables. A test starts its own sluice with h_sluice_start(); the suite's
 * .fini (h_teardown) stops it and fails the test if sluice crashed or did not
 * exit cleanly.
 *
 * Environment:
 *   SLUICE_BIN          the proxy binary (make check sets it)
 *   SLUICE_TEST_DIRECT  =1: clients talk to PostgreSQL directly, no sluice;
 *                       tests of sluice-only behaviour are skipped
 *   SLUICE_TEST_PGPORT  reuse a running PostgreSQL on this port
 *   SLUICE_TEST_PGHOST  ... on this host (default 127.0.0.1)
 *   SLUICE_TEST_PGUSER  ... with this trusted superuser (default sluice_super)
 *   SLUICE_TEST_KEEP    =1: keep the temporary directory and the PostgreSQL
 *                       the harness started, and print how to reuse it
 *   SLUICE_TEST_TMPDIR  where temporary directories go (default /tmp)
 *   SLUICE_TEST_PGBIN   directory of initdb and pg_ctl (default: the newest
 *                       /usr/lib/postgresql/NN/bin, else $PATH)
 *
 * Helpers whose name says nothing else assert (cr_assert) and so must only
 * be called from the test's own thread; the h_try_* ones never assert and
 * are safe in other threads and forked children.
 */
#ifndef SLUICE_HARNESS_H
#define SLUICE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include <libpq-fe.h>

/* What the harness creates in PostgreSQL. */
#define H_DBNAME "sluice_test"        /* owned by alice, usable by all */
#define H_SUPERUSER "sluice_super"    /* trust, for setup and checks */
#define H_ALICE "alice"               /* password stored as SCRAM */
#define H_ALICE_PASSWORD "alice-secret"
#define H_BOB "bob"                   /* password stored as md5 */
#define H_BOB_PASSWORD "bob-secret"
#define H_CAROL "carol"               /* pg_hba method "password" */
#define H_CAROL_PASSWORD "carol-secret"
#define H_ADMIN "admin"               /* sluice admin_users, not a role */
#define H_ADMIN_PASSWORD "admin-secret"

/* An ErrorResponse, from libpq or from raw bytes. */
struct h_error {
	char severity[16];     /* non-localized when sent ('V'), else 'S' */
	char sqlstate[6];
	char message[512];
};

/* Output of a program run by h_run(). */
struct h_output {
	char out[16384];       /* stdout, cut to fit, NUL terminated */
	char err[16384];       /* stderr, likewise */
};

/* ---- mode and coordinates ---- */

/* True when SLUICE_TEST_DIRECT=1: clients go straight to PostgreSQL. */
bool h_direct(void);

/* Skips the current test when running direct (it tests sluice itself). */
void h_require_sluice(void);

/* The test PostgreSQL's host and port. */
const char *h_pg_host(void);
int h_pg_port(void);

/* The port clients connect to: sluice's, or PostgreSQL's when direct. */
int h_port(void);

/* This test's own directory (created on first use); files go there. */
const char *h_test_dir(void);

/* The password the harness gave user, or NULL for an unknown user. */
const char *h_password_of(const char *user);

/* ---- sluice ---- */

/*
 * Writes sluice.ini and userlist.txt into h_test_dir() and starts sluice.
 * settings: "key = value" lines for the [sluice] section, replacing the
 * harness defaults with the same key (pool_mode = transaction,
 * default_pool_size = 4, auth_type = md5, ...); databases: lines added to
 * [databases] after "sluice_test = host=... dbname=sluice_test". Either may
 * be NULL. Both go through h_expand() (%PGPORT%, %PORT%: sluice's, %DIR%).
 * Waits until sluice accepts connections. Direct: does nothing.
 */
void h_sluice_start(const char *settings, const char *databases);

/* Starts sluice on a config file the test wrote, listening on port. */
void h_sluice_start_file(const char *ini_path, int port);

/*
 * Stops sluice (SIGTERM, then SIGKILL after 10 s); asserts it exited with
 * status 0, which a sanitizer report at exit or a crash turns non-zero.
 */
void h_sluice_stop(void);

/*
 * Ends a test: asserts sluice is still running, then stops it and asserts
 * it exited cleanly (status 0, no sanitizer report). Every test ends with it.
 */
void h_finish(void);

/* True while the sluice this test started runs (always true when direct). */
bool h_sluice_alive(void);

/* Asserts sluice is still running; shows its log tail if not. */
void h_assert_alive(void);

/* sluice's process id, 0 if none. */
pid_t h_sluice_pid(void);

/* A copy of sluice's log file (logfile and stderr); caller frees. */
char *h_sluice_log(void);

/* Waits up to timeout_ms for needle to appear in sluice's log. */
bool h_log_wait(const char *needle, int timeout_ms);

/* Kills pid (a daemon the test started) at teardown, if still there. */
void h_kill_at_teardown(pid_t pid);

/* The .fini of every integration suite: stops sluice, closes helpers. */
void h_teardown(void);

/*
 * text with %PGPORT% (PostgreSQL's port), %PORT% (port) and %DIR%
 * (h_test_dir()) replaced; caller frees.
 */
char *h_expand(const char *text, int port);

/* The contents of test/integration/data/name (found through SLUICE_SRCDIR,
 * which make check sets); caller frees. */
char *h_read_data(const char *name);

/* Writes content to h_test_dir()/name; returns the path, caller frees. */
char *h_write_file(const char *name, const char *content);

/* ---- libpq clients ---- */

/*
 * Connects as user to h_port(), database sluice_test, with the harness's
 * password for user. extra: more conninfo ("dbname=x application_name=y"),
 * later keys win; NULL for none. Asserts the connection works.
 */
PGconn *h_connect(const char *user, const char *extra);

/* Same, never asserts: NULL with the reason in err (may be NULL). */
PGconn *h_try_connect(const char *user, const char *extra,
                      char *err, size_t errlen);

/*
 * Connects expecting failure; fills err with the error's severity,
 * SQLSTATE and message. Returns false (and closes) if it connected.
 */
bool h_connect_fails(const char *user, const char *extra, struct h_error *err);

/* A superuser connection straight to PostgreSQL, database sluice_test. */
PGconn *h_connect_pg(void);

/*
 * The query helpers below wait at most this long for an answer, so that a
 * stalled proxy fails the test with the statement named.
 */
#define H_QUERY_TIMEOUT_MS 30000

/* Waits up to timeout_ms for conn's next result; NULL if none came. */
PGresult *h_result_within(PGconn *conn, int timeout_ms);

/* Runs sql; asserts it succeeds. */
void h_exec(PGconn *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Runs sql; asserts it fails with sqlstate. */
void h_exec_fails(PGconn *conn, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Runs sql; asserts one row and returns its first column as a number. */
long h_query_int(PGconn *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Runs sql; asserts one row; copies its first column into out. */
void h_query_str(PGconn *conn, char *out, size_t outlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Runs sql, never asserts; returns false with the reason in err. */
bool h_try_exec(PGconn *conn, const char *sql, char *err, size_t errlen);

/* Fills err from a failed result. */
void h_result_error(const PGresult *res, struct h_error *err);

/* Runs sql as superuser directly on PostgreSQL (a cached connection). */
void h_pg_exec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long h_pg_int(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Client backends of user on sluice_test right now. */
long h_pg_backends(const char *user);

/*
 * Waits until no backend of alice, bob or carol is left on PostgreSQL
 * (terminating them after timeout_ms). Tests start from a clean server.
 */
void h_pg_wait_clean(int timeout_ms);

/*
 * Stops the test PostgreSQL at once (pg_ctl -m immediate: every backend
 * dies without a goodbye, as in a crash) and starts it again on the same
 * port and data directory. Only for the PostgreSQL the harness started:
 * h_pg_require_restartable() skips the test otherwise. Both assert.
 */
void h_pg_require_restartable(void);
void h_pg_kill(void);
void h_pg_restart(void);

/* ---- raw sockets ---- */

/* Big-endian 32-bit integers, as the protocol spells them. */
void h_put_be32(uint8_t *p, uint32_t v);
uint32_t h_get_be32(const uint8_t *p);

/* A TCP connection to h_port(); asserts it connects. */
int h_raw_connect(void);

/* Sends all of buf; false if the peer is gone. */
bool h_raw_send(int fd, const void *buf, size_t len);

/*
 * Builds a startup packet: length, version, then the NULL-terminated
 * key/value list params, then the final zero byte if terminator.
 * Returns its length (0 if it does not fit in cap).
 */
size_t h_startup_packet(uint8_t *buf, size_t cap, uint32_t version,
                        const char *const *params, bool terminator);

/*
 * Reads one backend message within timeout_ms. Returns 1 and fills *type,
 * body (up to cap bytes) and *len; 0 on EOF or reset; -1 on timeout or a
 * message that does not fit.
 */
int h_raw_read_msg(int fd, int timeout_ms, char *type,
                   uint8_t *body, size_t cap, size_t *len);

/* Parses an ErrorResponse body into err. */
bool h_parse_error(const uint8_t *body, size_t len, struct h_error *err);

/* Reads messages until an ErrorResponse (true) or EOF/timeout (false). */
bool h_raw_expect_error(int fd, int timeout_ms, struct h_error *err);

/* True if the peer closes within timeout_ms (pending bytes are skipped). */
bool h_raw_closed(int fd, int timeout_ms);

/*
 * Logs in over a raw socket (trust or cleartext password) as user with the
 * harness's password and extra startup params (NULL-terminated key/value
 * list, may be NULL); asserts it reaches ReadyForQuery and returns the fd.
 */
int h_raw_login(const char *user, const char *const *params);

/* ---- processes and time ---- */

/* The sluice binary: $SLUICE_BIN, else src/sluice of the build tree. */
const char *h_sluice_bin(void);

/* Path of a PostgreSQL program (initdb, pg_ctl, pgbench, ...). */
const char *h_pg_program(const char *name, char *buf, size_t buflen);

/*
 * Runs argv[0] (searched in PATH) with argv, no stdin, capturing output
 * into out (may be NULL). Returns the exit status, 128 + signal if killed,
 * or -1 if it ran past timeout_ms (it is then killed).
 */
int h_run(const char *const argv[], int timeout_ms, struct h_output *out);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int h_free_port(void);

/* Monotonic seconds. */
double h_now(void);

void h_sleep_ms(int ms);

/* Runs pgbench against h_port() as alice with args (NULL-terminated),
 * database H_DBNAME; its output goes to out. Returns h_run's status. */
int h_pgbench(const char *const *args, int timeout_ms, struct h_output *out);

/* The number after label in a pgbench report, or -1 if it is not there. */
long h_report_number(const struct h_output *out, const char *label);

#endif
