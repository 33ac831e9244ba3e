/*
 * harness.c - the integration test harness (see harness.h).
 *
 * Owns the test binary's main(): it starts one PostgreSQL for the whole
 * binary, hands its coordinates to the test processes through the
 * environment, runs the tests one at a time, stops PostgreSQL and, when a
 * test failed, prints the tail of that test's sluice log. Inside a test
 * process it owns the sluice child and a cached superuser connection.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>

#define SLUICE_START_TIMEOUT_MS 10000
#define SLUICE_STOP_TIMEOUT_MS 10000
#define PG_TIMEOUT_MS 60000
#define MAX_FAILED 64

/* The sluice this test process started. */
static struct {
	pid_t pid;                 /* 0: none */
	int port;                  /* its listen_port */
	char ini[PATH_MAX];
	char log[PATH_MAX];        /* its logfile */
	char out[PATH_MAX];        /* its stdout and stderr */
} sluice;

static char test_dir[PATH_MAX]; /* this test's directory, "" until used */
static pid_t strays[8];         /* processes to kill at teardown */
static int stray_count;
static PGconn *pg_admin;        /* cached superuser connection */

/* Runner (parent) process state. */
static char run_dir[PATH_MAX];  /* holds pg/ and one directory per test */
static char pg_data[PATH_MAX];  /* data directory of our PostgreSQL */
static bool pg_started;         /* we started it, so we stop it */
static char *failed[MAX_FAILED];/* directories of tests that failed */
static int failed_count;

/* ---- small utilities ---- */

double h_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void h_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* snprintf for paths: too long a path is a setup error, not a truncation. */
static void fmt_path(char *dst, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fmt_path(char *dst, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(dst, cap, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap) {
		fprintf(stderr, "harness: path too long: %s\n", dst);
		abort();
	}
}

static bool env_true(const char *name)
{
	const char *v = getenv(name);

	return v && *v && strcmp(v, "0") != 0;
}

bool h_direct(void)
{
	return env_true("SLUICE_TEST_DIRECT");
}

void h_require_sluice(void)
{
	if (h_direct())
		cr_skip_test("tests sluice itself (SLUICE_TEST_DIRECT=1)");
}

const char *h_pg_host(void)
{
	const char *host = getenv("SLUICE_TEST_PGHOST");

	return host && *host ? host : "127.0.0.1";
}

int h_pg_port(void)
{
	const char *port = getenv("SLUICE_TEST_PGPORT");

	cr_assert(port && atoi(port) > 0,
	          "SLUICE_TEST_PGPORT is not set: run the test binary itself");
	return atoi(port);
}

static const char *pg_superuser(void)
{
	const char *user = getenv("SLUICE_TEST_PGUSER");

	return user && *user ? user : H_SUPERUSER;
}

int h_port(void)
{
	if (h_direct())
		return h_pg_port();
	cr_assert(sluice.port > 0, "sluice was not started in this test");
	return sluice.port;
}

const char *h_password_of(const char *user)
{
	if (strcmp(user, H_ALICE) == 0)
		return H_ALICE_PASSWORD;
	if (strcmp(user, H_BOB) == 0)
		return H_BOB_PASSWORD;
	if (strcmp(user, H_CAROL) == 0)
		return H_CAROL_PASSWORD;
	if (strcmp(user, H_ADMIN) == 0)
		return H_ADMIN_PASSWORD;
	return NULL;
}

/* Reads a whole file; NULL if it cannot. Caller frees. */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f)
		return NULL;
	do {
		if (cap - len < 4096) {
			char *grown = realloc(buf, cap + 65536);

			if (!grown) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = grown;
			cap += 65536;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	buf[len] = '\0';
	fclose(f);
	return buf;
}

static void write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");

	cr_assert(f, "cannot write %s: %s", path, strerror(errno));
	fputs(content, f);
	cr_assert(fclose(f) == 0, "cannot write %s", path);
}

/* Prints the last lines of path to stderr, headed by its name. */
static void print_tail(const char *path, int lines)
{
	char *text = read_file(path);
	char *start;
	int seen = 0;

	if (!text || !*text) {
		free(text);
		return;
	}
	start = text + strlen(text);
	while (start > text && seen <= lines)
		if (*--start == '\n')
			seen++;
	if (seen > lines)
		start++;
	fprintf(stderr, "---- last lines of %s ----\n%s", path, start);
	if (text[strlen(text) - 1] != '\n')
		fputc('\n', stderr);
	free(text);
}

/*
 * The directory of a test: <run dir>/<start of the test name>-<hash>. Short,
 * because sluice's unix socket lives in it and a socket path may not be
 * longer than 107 bytes (sun_path).
 */
static void test_dir_name(char *buf, size_t len, const char *base,
                          const char *suite, const char *test)
{
	uint32_t hash = 2166136261u; /* FNV-1a of "suite.test" */

	for (const char *p = suite; *p; p++)
		hash = (hash ^ (uint8_t)*p) * 16777619u;
	hash = (hash ^ '.') * 16777619u;
	for (const char *p = test; *p; p++)
		hash = (hash ^ (uint8_t)*p) * 16777619u;
	snprintf(buf, len, "%s/%.24s-%08x", base, test, (unsigned)hash);
}

const char *h_test_dir(void)
{
	const char *base = getenv("SLUICE_TEST_RUNDIR");

	if (test_dir[0])
		return test_dir;
	cr_assert(base && *base, "SLUICE_TEST_RUNDIR is not set");
	test_dir_name(test_dir, sizeof(test_dir), base,
	              criterion_current_suite->name, criterion_current_test->name);
	cr_assert(mkdir(test_dir, 0755) == 0 || errno == EEXIST,
	          "mkdir %s: %s", test_dir, strerror(errno));
	return test_dir;
}

char *h_write_file(const char *name, const char *content)
{
	char *path = NULL;

	cr_assert(asprintf(&path, "%s/%s", h_test_dir(), name) > 0);
	write_file(path, content);
	return path;
}

int h_free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	cr_assert(fd >= 0, "socket: %s", strerror(errno));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	          "bind: %s", strerror(errno));
	cr_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* ---- running programs ---- */

static void append_output(char *dst, size_t cap, const char *src, size_t n)
{
	size_t len = strlen(dst);

	if (n > cap - 1 - len)
		n = cap - 1 - len;
	memcpy(dst + len, src, n);
	dst[len + n] = '\0';
}

/* Reads what is there from fd into dst; false at EOF or error. */
static bool drain_fd(int fd, char *dst, size_t cap)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));

	if (n > 0 && dst)
		append_output(dst, cap, buf, (size_t)n);
	return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
}

static int wait_status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

static void exec_child(const char *const argv[], int out_fd, int err_fd)
{
	int null_fd = open("/dev/null", O_RDONLY);

	setpgid(0, 0);
	/* The runner ignores SIGPIPE; a child must not inherit that, or a
	 * sluice that forgets to ignore it would survive only in tests. */
	signal(SIGPIPE, SIG_DFL);
	dup2(null_fd, 0);
	dup2(out_fd, 1);
	dup2(err_fd, 2);
	execvp(argv[0], (char *const *)argv);
	fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* One captured output stream of h_run(). */
struct stream {
	int fd;         /* our end of the pipe */
	bool open;      /* no EOF yet */
	char *buf;      /* NULL: discard */
	size_t cap;
};

static void stream_read(struct stream *s)
{
	if (s->open)
		s->open = drain_fd(s->fd, s->buf, s->cap);
}

/* After the child exited: what is in the pipe already, without waiting. */
static void stream_finish(struct stream *s)
{
	struct pollfd p = { s->fd, POLLIN, 0 };

	while (s->open && poll(&p, 1, 0) > 0)
		s->open = drain_fd(s->fd, s->buf, s->cap);
	close(s->fd);
}

int h_run(const char *const argv[], int timeout_ms, struct h_output *out)
{
	int outp[2], errp[2], status = 0;
	double deadline = h_now() + timeout_ms / 1000.0;
	struct stream so, se;
	pid_t pid;

	if (out)
		out->out[0] = out->err[0] = '\0';
	if (pipe(outp) < 0 || pipe(errp) < 0)
		return -1;
	pid = fork();
	if (pid == 0)
		exec_child(argv, outp[1], errp[1]);
	close(outp[1]);
	close(errp[1]);
	so = (struct stream){ outp[0], true, out ? out->out : NULL, sizeof(out->out) };
	se = (struct stream){ errp[0], true, out ? out->err : NULL, sizeof(out->err) };
	fcntl(so.fd, F_SETFL, O_NONBLOCK);
	fcntl(se.fd, F_SETFL, O_NONBLOCK);
	for (;;) {
		struct pollfd p[2] = { { so.fd, POLLIN, 0 }, { se.fd, POLLIN, 0 } };

		poll(p, 2, 20);
		if (p[0].revents)
			stream_read(&so);
		if (p[1].revents)
			stream_read(&se);
		/* A daemon child may keep the pipes open: stop at the exit. */
		if (waitpid(pid, &status, WNOHANG) == pid) {
			status = wait_status_code(status);
			break;
		}
		if (h_now() > deadline) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			status = -1;
			break;
		}
	}
	stream_finish(&so);
	stream_finish(&se);
	return status;
}

const char *h_pg_program(const char *name, char *buf, size_t buflen)
{
	const char *dir = getenv("SLUICE_TEST_PGBIN");
	glob_t g;

	if (dir && *dir) {
		snprintf(buf, buflen, "%s/%s", dir, name);
		return buf;
	}
	snprintf(buf, buflen, "%s", name);
	/* Debian keeps the server programs out of PATH; take the newest. */
	if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0) {
		char *best = g.gl_pathv[0];

		for (size_t i = 1; i < g.gl_pathc; i++)
			if (atoi(g.gl_pathv[i] + 20) > atoi(best + 20))
				best = g.gl_pathv[i];
		snprintf(buf, buflen, "%.*s%s", (int)(strrchr(best, '/') + 1 - best),
		         best, name);
		globfree(&g);
	}
	return buf;
}

const char *h_sluice_bin(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("SLUICE_BIN");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env)
		return env;
	if (path[0])
		return path;
	/* The build tree: test/integration/test_x -> src/sluice */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	cr_assert(n > 0, "cannot find the test binary: set SLUICE_BIN");
	self[n] = '\0';
	*strrchr(self, '/') = '\0';
	fmt_path(path, sizeof(path), "%s/../../src/sluice", self);
	return path;
}

/* ---- sluice ---- */

/* The [sluice] settings every test starts from; NULL: set per test. */
static const char *const default_settings[][2] = {
	{ "listen_addr", "127.0.0.1" },
	{ "listen_port", NULL },
	{ "unix_socket_dir", NULL },
	{ "auth_type", "md5" },
	{ "auth_file", NULL },
	{ "admin_users", H_ADMIN },
	{ "logfile", NULL },
	{ "pidfile", NULL },
	{ "pool_mode", "transaction" },
	{ "default_pool_size", "4" },
	{ "max_client_conn", "200" },
	{ "server_login_retry", "1" },
};
#define N_DEFAULTS (sizeof(default_settings) / sizeof(default_settings[0]))

/* One "key = value" line of a settings string, trimmed. */
struct setting {
	char key[64];
	char value[4096];
};

static bool parse_setting(const char *line, size_t len, struct setting *s)
{
	const char *eq = memchr(line, '=', len);
	const char *k = line, *kend, *v, *vend = line + len;

	if (!eq)
		return false;
	while (k < eq && (*k == ' ' || *k == '\t'))
		k++;
	kend = eq;
	while (kend > k && (kend[-1] == ' ' || kend[-1] == '\t'))
		kend--;
	v = eq + 1;
	while (v < vend && (*v == ' ' || *v == '\t'))
		v++;
	while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t' || vend[-1] == '\r'))
		vend--;
	if (kend == k || (size_t)(kend - k) >= sizeof(s->key) ||
	    (size_t)(vend - v) >= sizeof(s->value))
		return false;
	snprintf(s->key, sizeof(s->key), "%.*s", (int)(kend - k), k);
	snprintf(s->value, sizeof(s->value), "%.*s", (int)(vend - v), v);
	return true;
}

/* The value of key in the test's settings string, or NULL. */
static const char *find_setting(const char *settings, const char *key,
                                struct setting *s)
{
	const char *line = settings;

	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);

		if (parse_setting(line, len, s) && strcasecmp(s->key, key) == 0)
			return s->value;
		line = end ? end + 1 : NULL;
	}
	return NULL;
}

static bool is_default_key(const char *key)
{
	for (size_t i = 0; i < N_DEFAULTS; i++)
		if (strcasecmp(default_settings[i][0], key) == 0)
			return true;
	return false;
}

char *h_expand(const char *text, int port)
{
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);

	cr_assert(m, "open_memstream: %s", strerror(errno));
	while (text && *text) {
		if (strncmp(text, "%PGPORT%", 8) == 0) {
			fprintf(m, "%d", h_pg_port());
			text += 8;
		} else if (strncmp(text, "%PORT%", 6) == 0) {
			fprintf(m, "%d", port);
			text += 6;
		} else if (strncmp(text, "%DIR%", 5) == 0) {
			fputs(h_test_dir(), m);
			text += 5;
		} else {
			fputc(*text++, m);
		}
	}
	cr_assert(fclose(m) == 0 && out, "out of memory");
	return out;
}

char *h_read_data(const char *name)
{
	const char *srcdir = getenv("SLUICE_SRCDIR");
	const char *slash = strrchr(__FILE__, '/');
	int dirlen = slash ? (int)(slash + 1 - __FILE__) : 0;
	char path[PATH_MAX];
	char *text;

	if (srcdir && *srcdir)
		fmt_path(path, sizeof(path), "%s/test/integration/data/%s",
		         srcdir, name);
	else /* run by hand in the build tree: next to this file's source */
		fmt_path(path, sizeof(path), "%.*sdata/%s", dirlen, __FILE__, name);
	text = read_file(path);
	cr_assert(text, "cannot read %s (set SLUICE_SRCDIR to the source tree)", path);
	return text;
}

static void write_ini(FILE *f, const char *settings_in, const char *databases_in)
{
	const char *dir = h_test_dir();
	char *settings = h_expand(settings_in, sluice.port);
	char *databases = h_expand(databases_in, sluice.port);
	struct setting s;

	fprintf(f, "; written by the integration test harness for %s::%s\n\n"
	        "[databases]\n%s = host=%s port=%d dbname=%s\n%s\n\n[sluice]\n",
	        criterion_current_suite->name, criterion_current_test->name,
	        H_DBNAME, h_pg_host(), h_pg_port(), H_DBNAME, databases);
	for (size_t i = 0; i < N_DEFAULTS; i++) {
		const char *key = default_settings[i][0];
		const char *value = find_setting(settings, key, &s);

		if (value)
			fprintf(f, "%s = %s\n", key, value);
		else if (strcmp(key, "listen_port") == 0)
			fprintf(f, "%s = %d\n", key, sluice.port);
		else if (strcmp(key, "unix_socket_dir") == 0)
			fprintf(f, "%s = %s\n", key, dir);
		else if (strcmp(key, "auth_file") == 0)
			fprintf(f, "%s = %s/userlist.txt\n", key, dir);
		else if (strcmp(key, "logfile") == 0)
			fprintf(f, "%s = %s\n", key, sluice.log);
		else if (strcmp(key, "pidfile") == 0)
			fprintf(f, "%s = %s/sluice.pid\n", key, dir);
		else
			fprintf(f, "%s = %s\n", key, default_settings[i][1]);
	}
	for (const char *line = settings; line && *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);

		if (parse_setting(line, len, &s) && !is_default_key(s.key))
			fprintf(f, "%s = %s\n", s.key, s.value);
		line = end ? end + 1 : NULL;
	}
	free(settings);
	free(databases);
}

static void write_userlist(void)
{
	char *path = h_write_file("userlist.txt",
		"\"" H_ALICE "\" \"" H_ALICE_PASSWORD "\"\n"
		"\"" H_BOB "\" \"" H_BOB_PASSWORD "\"\n"
		"\"" H_CAROL "\" \"" H_CAROL_PASSWORD "\"\n"
		"\"" H_ADMIN "\" \"" H_ADMIN_PASSWORD "\"\n");

	free(path);
}

static void spawn_sluice(void)
{
	pid_t parent = getpid();
	int out_fd = open(sluice.out, O_WRONLY | O_CREAT | O_APPEND, 0644);
	const char *argv[] = { h_sluice_bin(), sluice.ini, NULL };

	cr_assert(access(argv[0], X_OK) == 0,
	          "sluice binary %s is missing: build it or set SLUICE_BIN", argv[0]);
	cr_assert(out_fd >= 0, "cannot open %s", sluice.out);
	fflush(NULL);
	sluice.pid = fork();
	cr_assert(sluice.pid >= 0, "fork: %s", strerror(errno));
	if (sluice.pid == 0) {
		/* Dies with the test process, even when criterion kills it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		exec_child(argv, out_fd, out_fd);
	}
	close(out_fd);
}

/*
 * True once something listens on port. Read from /proc/net/tcp rather than
 * by connecting, so that sluice sees no extra client (max_client_conn tests
 * count them).
 */
static bool port_listening(int port)
{
	static const char *const tables[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	char line[512], local[64];
	unsigned state;
	bool found = false;

	for (size_t i = 0; i < 2 && !found; i++) {
		FILE *f = fopen(tables[i], "r");

		while (f && !found && fgets(line, sizeof(line), f)) {
			char *colon;

			if (sscanf(line, "%*s %63s %*s %x", local, &state) != 2)
				continue;
			colon = strrchr(local, ':');
			found = colon && state == 0x0A &&
			        strtol(colon + 1, NULL, 16) == port;
		}
		if (f)
			fclose(f);
	}
	return found;
}

/* Waits for sluice to listen. False if it exited (status in *status). */
static bool wait_listening(int *status)
{
	double deadline = h_now() + SLUICE_START_TIMEOUT_MS / 1000.0;

	while (h_now() < deadline) {
		if (waitpid(sluice.pid, status, WNOHANG) == sluice.pid) {
			sluice.pid = 0;
			return false;
		}
		if (port_listening(sluice.port))
			return true;
		h_sleep_ms(20);
	}
	print_tail(sluice.out, 40);
	cr_assert_fail("sluice did not accept connections on port %d within %d ms",
	               sluice.port, SLUICE_START_TIMEOUT_MS);
	return false;
}

static void set_paths(void)
{
	const char *dir = h_test_dir();

	snprintf(sluice.log, sizeof(sluice.log), "%s/sluice.log", dir);
	snprintf(sluice.out, sizeof(sluice.out), "%s/sluice.out", dir);
}

static bool log_says_port_taken(void)
{
	char *text = read_file(sluice.out);
	bool taken = text && strstr(text, "in use");

	free(text);
	return taken;
}

void h_sluice_start(const char *settings, const char *databases)
{
	struct setting s;
	int status = 0;

	if (h_direct()) {
		h_pg_wait_clean(5000);
		return;
	}
	cr_assert(sluice.pid == 0, "sluice is already running in this test");
	set_paths();
	write_userlist();
	snprintf(sluice.ini, sizeof(sluice.ini), "%s/sluice.ini", h_test_dir());
	h_pg_wait_clean(5000);
	/* The free port may be taken before sluice binds it: try again. */
	for (int attempt = 0; attempt < 3; attempt++) {
		FILE *f;
		const char *port = find_setting(settings, "listen_port", &s);

		sluice.port = port ? atoi(port) : h_free_port();
		f = fopen(sluice.ini, "w");
		cr_assert(f, "cannot write %s", sluice.ini);
		write_ini(f, settings, databases);
		fclose(f);
		spawn_sluice();
		if (wait_listening(&status))
			return;
		if (!log_says_port_taken())
			break;
	}
	print_tail(sluice.out, 40);
	cr_assert_fail("sluice exited at startup (status %d)", wait_status_code(status));
}

void h_sluice_start_file(const char *ini_path, int port)
{
	int status = 0;

	if (h_direct())
		return;
	cr_assert(sluice.pid == 0, "sluice is already running in this test");
	set_paths();
	snprintf(sluice.ini, sizeof(sluice.ini), "%s", ini_path);
	sluice.port = port;
	h_pg_wait_clean(5000);
	spawn_sluice();
	if (wait_listening(&status))
		return;
	print_tail(sluice.out, 40);
	cr_assert_fail("sluice exited at startup (status %d)", wait_status_code(status));
}

pid_t h_sluice_pid(void)
{
	return sluice.pid;
}

bool h_sluice_alive(void)
{
	int status;

	if (h_direct())
		return true;
	if (sluice.pid == 0)
		return false;
	if (waitpid(sluice.pid, &status, WNOHANG) == sluice.pid) {
		fprintf(stderr, "harness: sluice (pid %d) exited with status %d\n",
		        (int)sluice.pid, wait_status_code(status));
		sluice.pid = 0;
		return false;
	}
	return true;
}

void h_assert_alive(void)
{
	if (h_sluice_alive())
		return;
	print_tail(sluice.out, 40);
	cr_assert_fail("sluice is not running any more (crashed?)");
}

/* Stops sluice; returns its exit code (128 + signal), -1 if it hung. */
static int stop_sluice(int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;
	pid_t pid = sluice.pid;
	int status;

	sluice.pid = 0;
	kill(pid, SIGTERM);
	while (h_now() < deadline) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return wait_status_code(status);
		h_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

void h_sluice_stop(void)
{
	int code;

	if (h_direct())
		return;
	h_assert_alive();
	code = stop_sluice(SLUICE_STOP_TIMEOUT_MS);
	if (code == 0)
		return;
	print_tail(sluice.out, 60);
	if (code < 0)
		cr_assert_fail("sluice did not exit within %d ms of SIGTERM",
		               SLUICE_STOP_TIMEOUT_MS);
	cr_assert_fail("sluice exited with status %d on SIGTERM "
	               "(a sanitizer report is above, if any)", code);
}

void h_finish(void)
{
	h_assert_alive();
	h_sluice_stop();
}

/* True if pid still runs the sluice binary (not reused by another). */
static bool is_sluice_process(pid_t pid)
{
	char path[64], cmd[PATH_MAX] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(cmd, sizeof(cmd), f))
		cmd[0] = '\0';
	fclose(f);
	return strstr(cmd, "sluice") != NULL;
}

void h_kill_at_teardown(pid_t pid)
{
	if (stray_count < (int)(sizeof(strays) / sizeof(strays[0])))
		strays[stray_count++] = pid;
}

void h_teardown(void)
{
	if (sluice.pid)
		stop_sluice(3000);
	while (stray_count > 0) {
		pid_t pid = strays[--stray_count];

		if (is_sluice_process(pid))
			kill(pid, SIGKILL);
	}
	if (pg_admin) {
		PQfinish(pg_admin);
		pg_admin = NULL;
	}
}

char *h_sluice_log(void)
{
	char *log, *out, *both = NULL;

	if (h_direct() || !sluice.log[0])
		return strdup("");
	log = read_file(sluice.log);
	out = read_file(sluice.out);
	cr_assert(asprintf(&both, "%s%s", log ? log : "", out ? out : "") >= 0);
	free(log);
	free(out);
	return both;
}

bool h_log_wait(const char *needle, int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;

	do {
		char *text = h_sluice_log();
		bool found = strstr(text, needle) != NULL;

		free(text);
		if (found)
			return true;
		h_sleep_ms(20);
	} while (h_now() < deadline);
	return false;
}

/* ---- libpq clients ---- */

static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Port for clients, without asserting (threads call this). */
static int client_port(void)
{
	const char *port = getenv("SLUICE_TEST_PGPORT");

	if (h_direct())
		return port ? atoi(port) : 0;
	return sluice.port;
}

/* Appends " key='value'" with conninfo quoting. */
static void conninfo_add(char *buf, size_t cap, const char *key, const char *value)
{
	size_t len = strlen(buf);

	len += snprintf(buf + len, len < cap ? cap - len : 0, " %s='", key);
	for (; *value && len + 3 < cap; value++) {
		if (*value == '\'' || *value == '\\')
			buf[len++] = '\\';
		buf[len++] = *value;
	}
	if (len + 2 <= cap) {
		buf[len++] = '\'';
		buf[len] = '\0';
	}
}

static void build_conninfo(char *buf, size_t cap, const char *user, const char *extra)
{
	const char *password = user ? h_password_of(user) : NULL;

	snprintf(buf, cap, "host=127.0.0.1 port=%d dbname=%s connect_timeout=10 "
	         "sslmode=disable gssencmode=disable", client_port(), H_DBNAME);
	if (user)
		conninfo_add(buf, cap, "user", user);
	if (password)
		conninfo_add(buf, cap, "password", password);
	if (extra && strlen(buf) + strlen(extra) + 2 < cap) {
		strcat(buf, " ");
		strcat(buf, extra);
	}
}

PGconn *h_try_connect(const char *user, const char *extra, char *err, size_t errlen)
{
	char conninfo[2048];
	PGconn *conn;

	build_conninfo(conninfo, sizeof(conninfo), user, extra);
	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		if (err)
			snprintf(err, errlen, "%s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, ignore_notice, NULL);
	return conn;
}

PGconn *h_connect(const char *user, const char *extra)
{
	char err[1024];
	PGconn *conn = h_try_connect(user, extra, err, sizeof(err));

	if (!conn && !h_direct())
		h_assert_alive();
	cr_assert(conn, "connect as %s (%s) failed: %s", user,
	          extra ? extra : "", err);
	return conn;
}

/* Parses libpq's verbose "FATAL:  08P01: message" text. */
static void parse_libpq_error(const char *text, struct h_error *err)
{
	static const char *const levels[] = { "FATAL:  ", "ERROR:  ", "PANIC:  " };
	const char *p = NULL, *end;

	memset(err, 0, sizeof(*err));
	for (size_t i = 0; i < 3 && !p; i++) {
		p = strstr(text, levels[i]);
		if (p)
			snprintf(err->severity, sizeof(err->severity), "%.5s", levels[i]);
	}
	if (!p) {
		snprintf(err->message, sizeof(err->message), "%s", text);
		return;
	}
	p += 8;
	if (strlen(p) > 7 && p[5] == ':' && p[6] == ' ') {
		snprintf(err->sqlstate, sizeof(err->sqlstate), "%.5s", p);
		p += 7;
	}
	end = strchr(p, '\n');
	snprintf(err->message, sizeof(err->message), "%.*s",
	         (int)(end ? end - p : (long)strlen(p)), p);
}

bool h_connect_fails(const char *user, const char *extra, struct h_error *err)
{
	char conninfo[2048];
	double deadline = h_now() + 20;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	PGconn *conn;

	build_conninfo(conninfo, sizeof(conninfo), user, extra);
	conn = PQconnectStart(conninfo);
	cr_assert(conn, "out of memory");
	/* Verbose errors carry the SQLSTATE, even at connection time. */
	PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
	while (PQstatus(conn) != CONNECTION_BAD && h_now() < deadline) {
		struct pollfd p = { PQsocket(conn), POLLIN, 0 };

		if (st == PGRES_POLLING_WRITING)
			p.events = POLLOUT;
		poll(&p, 1, 1000);
		st = PQconnectPoll(conn);
		if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED)
			break;
	}
	if (st == PGRES_POLLING_OK) {
		PQfinish(conn);
		return false;
	}
	parse_libpq_error(PQerrorMessage(conn), err);
	PQfinish(conn);
	return true;
}

PGconn *h_connect_pg(void)
{
	char conninfo[512];
	PGconn *conn;

	snprintf(conninfo, sizeof(conninfo),
	         "host=%s port=%d user=%s dbname=%s connect_timeout=10 "
	         "sslmode=disable gssencmode=disable",
	         h_pg_host(), h_pg_port(), pg_superuser(), H_DBNAME);
	conn = PQconnectdb(conninfo);
	cr_assert(PQstatus(conn) == CONNECTION_OK, "superuser connection: %s",
	          PQerrorMessage(conn));
	PQsetNoticeProcessor(conn, ignore_notice, NULL);
	return conn;
}

void h_result_error(const PGresult *res, struct h_error *err)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	snprintf(err->severity, sizeof(err->severity), "%s", sev ? sev : "");
	snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", state ? state : "");
	snprintf(err->message, sizeof(err->message), "%s",
	         msg ? msg : PQresultErrorMessage(res));
}

static bool result_ok(const PGresult *res)
{
	return PQresultStatus(res) == PGRES_COMMAND_OK ||
	       PQresultStatus(res) == PGRES_TUPLES_OK;
}

PGresult *h_result_within(PGconn *conn, int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;

	while (PQisBusy(conn)) {
		struct pollfd p = { PQsocket(conn), POLLIN, 0 };
		int wait_ms = (int)((deadline - h_now()) * 1000);

		if (wait_ms <= 0 || PQsocket(conn) < 0)
			return NULL;
		poll(&p, 1, wait_ms);
		if (!PQconsumeInput(conn))
			break;
	}
	return PQgetResult(conn);
}

/*
 * PQexec with a deadline: a proxy that stalls fails the test with the
 * statement named, instead of hanging until criterion's timeout. Returns
 * the first failed result or else the last one; NULL (with *timed_out)
 * if the answer did not come in time.
 */
static PGresult *exec_bounded(PGconn *conn, const char *sql, bool *timed_out)
{
	PGresult *res, *keep = NULL;

	*timed_out = false;
	if (!PQsendQuery(conn, sql))
		return PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
	while ((res = h_result_within(conn, H_QUERY_TIMEOUT_MS))) {
		ExecStatusType st = PQresultStatus(res);

		if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR) {
			PQclear(res);
			continue;
		}
		PQclear(keep);
		keep = res;
		/* COPY cannot be finished here; leave it to the caller. */
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
			return keep;
	}
	if (PQisBusy(conn)) {
		*timed_out = true;
		PQclear(keep);
		return NULL;
	}
	return keep ? keep : PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

static PGresult *vexec(PGconn *conn, const char *fmt, va_list ap, char **sql)
	__attribute__((format(printf, 2, 0)));

static PGresult *vexec(PGconn *conn, const char *fmt, va_list ap, char **sql)
{
	bool timed_out;
	PGresult *res;

	cr_assert(vasprintf(sql, fmt, ap) >= 0);
	res = exec_bounded(conn, *sql, &timed_out);
	if (timed_out && !h_direct())
		h_assert_alive();
	cr_assert(!timed_out, "no answer within %d ms to: %.200s",
	          H_QUERY_TIMEOUT_MS, *sql);
	return res;
}

void h_exec(PGconn *conn, const char *fmt, ...)
{
	va_list ap;
	char *sql;
	PGresult *res;

	va_start(ap, fmt);
	res = vexec(conn, fmt, ap, &sql);
	va_end(ap);
	cr_assert(result_ok(res), "%s: %s", sql, PQerrorMessage(conn));
	PQclear(res);
	free(sql);
}

void h_exec_fails(PGconn *conn, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;
	char *sql;
	PGresult *res;
	struct h_error err;

	va_start(ap, fmt);
	res = vexec(conn, fmt, ap, &sql);
	va_end(ap);
	cr_assert(!result_ok(res), "%s: succeeded, expected SQLSTATE %s", sql, sqlstate);
	h_result_error(res, &err);
	cr_assert_str_eq(err.sqlstate, sqlstate, "%s: SQLSTATE %s (%s), expected %s",
	                 sql, err.sqlstate, err.message, sqlstate);
	PQclear(res);
	free(sql);
}

/* Runs a one-row query; returns the result (caller clears). */
static PGresult *vquery_one(PGconn *conn, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static PGresult *vquery_one(PGconn *conn, const char *fmt, va_list ap)
{
	char *sql;
	PGresult *res = vexec(conn, fmt, ap, &sql);

	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	          PQerrorMessage(conn));
	cr_assert(PQntuples(res) == 1, "%s: %d rows, expected 1", sql, PQntuples(res));
	cr_assert(!PQgetisnull(res, 0, 0), "%s: NULL", sql);
	free(sql);
	return res;
}

long h_query_int(PGconn *conn, const char *fmt, ...)
{
	va_list ap;
	PGresult *res;
	long value;

	va_start(ap, fmt);
	res = vquery_one(conn, fmt, ap);
	va_end(ap);
	value = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return value;
}

void h_query_str(PGconn *conn, char *out, size_t outlen, const char *fmt, ...)
{
	va_list ap;
	PGresult *res;

	va_start(ap, fmt);
	res = vquery_one(conn, fmt, ap);
	va_end(ap);
	snprintf(out, outlen, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
}

bool h_try_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	bool timed_out;
	PGresult *res = exec_bounded(conn, sql, &timed_out);
	bool ok = result_ok(res);

	if (timed_out && err)
		snprintf(err, errlen, "%s: no answer within %d ms", sql,
		         H_QUERY_TIMEOUT_MS);
	else if (!ok && err)
		snprintf(err, errlen, "%s: %s", sql, PQerrorMessage(conn));
	PQclear(res);
	return ok;
}

static PGconn *admin(void)
{
	if (pg_admin && PQstatus(pg_admin) != CONNECTION_OK) {
		PQfinish(pg_admin);
		pg_admin = NULL;
	}
	if (!pg_admin)
		pg_admin = h_connect_pg();
	return pg_admin;
}

void h_pg_exec(const char *fmt, ...)
{
	va_list ap;
	char *sql;
	PGresult *res;

	va_start(ap, fmt);
	res = vexec(admin(), fmt, ap, &sql);
	va_end(ap);
	cr_assert(result_ok(res), "%s: %s", sql, PQerrorMessage(admin()));
	PQclear(res);
	free(sql);
}

long h_pg_int(const char *fmt, ...)
{
	va_list ap;
	PGresult *res;
	long value;

	va_start(ap, fmt);
	res = vquery_one(admin(), fmt, ap);
	va_end(ap);
	value = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return value;
}

long h_pg_backends(const char *user)
{
	return h_pg_int("SELECT count(*) FROM pg_stat_activity "
	                "WHERE usename = '%s' AND datname = '%s' "
	                "AND backend_type = 'client backend' "
	                "AND pid <> pg_backend_pid()", user, H_DBNAME);
}

void h_pg_wait_clean(int timeout_ms)
{
	static const char *const count_sql =
		"SELECT count(*) FROM pg_stat_activity WHERE usename IN "
		"('" H_ALICE "', '" H_BOB "', '" H_CAROL "')";
	double deadline = h_now() + timeout_ms / 1000.0;

	while (h_pg_int("%s", count_sql) > 0) {
		if (h_now() > deadline) {
			fprintf(stderr, "harness: terminating backends left over "
			        "from an earlier test\n");
			h_pg_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
			          "WHERE usename IN ('" H_ALICE "', '" H_BOB "', '"
			          H_CAROL "')");
			deadline = h_now() + 5;
			while (h_pg_int("%s", count_sql) > 0 && h_now() < deadline)
				h_sleep_ms(20);
			return;
		}
		h_sleep_ms(20);
	}
}

/* ---- raw sockets ---- */

int h_raw_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(fd >= 0, "socket: %s", strerror(errno));
	sa.sin_port = htons(h_port());
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	          "connect to port %d: %s", h_port(), strerror(errno));
	return fd;
}

bool h_raw_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

void h_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

uint32_t h_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t h_startup_packet(uint8_t *buf, size_t cap, uint32_t version,
                        const char *const *params, bool terminator)
{
	size_t len = 8;

	for (size_t i = 0; params && params[i]; i++) {
		size_t n = strlen(params[i]) + 1;

		if (len + n > cap)
			return 0;
		memcpy(buf + len, params[i], n);
		len += n;
	}
	if (terminator) {
		if (len + 1 > cap)
			return 0;
		buf[len++] = '\0';
	}
	h_put_be32(buf, (uint32_t)len);
	h_put_be32(buf + 4, version);
	return len;
}

/* Reads exactly len bytes: 1, 0 on EOF/reset, -1 on timeout. */
static int read_full(int fd, uint8_t *buf, size_t len, double deadline)
{
	while (len > 0) {
		struct pollfd p = { fd, POLLIN, 0 };
		int wait_ms = (int)((deadline - h_now()) * 1000);
		ssize_t n;

		if (wait_ms <= 0 || poll(&p, 1, wait_ms) == 0)
			return -1;
		n = read(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		buf += n;
		len -= (size_t)n;
	}
	return 1;
}

int h_raw_read_msg(int fd, int timeout_ms, char *type,
                   uint8_t *body, size_t cap, size_t *len)
{
	double deadline = h_now() + timeout_ms / 1000.0;
	uint8_t header[5];
	uint32_t msglen;
	int rc = read_full(fd, header, 5, deadline);

	if (rc <= 0)
		return rc;
	msglen = h_get_be32(header + 1);
	if (msglen < 4 || msglen - 4 > cap)
		return -1;
	*type = (char)header[0];
	*len = msglen - 4;
	return read_full(fd, body, *len, deadline);
}

bool h_parse_error(const uint8_t *body, size_t len, struct h_error *err)
{
	size_t i = 0;
	bool have_v = false;

	memset(err, 0, sizeof(*err));
	while (i < len && body[i] != 0) {
		char field = (char)body[i++];
		const char *value = (const char *)body + i;
		size_t n = strnlen(value, len - i);

		if (i + n >= len)
			return false;
		if (field == 'V' || (field == 'S' && !have_v))
			snprintf(err->severity, sizeof(err->severity), "%s", value);
		have_v |= field == 'V';
		if (field == 'C')
			snprintf(err->sqlstate, sizeof(err->sqlstate), "%s", value);
		if (field == 'M')
			snprintf(err->message, sizeof(err->message), "%s", value);
		i += n + 1;
	}
	return err->sqlstate[0] != '\0';
}

bool h_raw_expect_error(int fd, int timeout_ms, struct h_error *err)
{
	static uint8_t body[65536];
	double deadline = h_now() + timeout_ms / 1000.0;
	size_t len;
	char type;

	while (h_now() < deadline) {
		int rc = h_raw_read_msg(fd, (int)((deadline - h_now()) * 1000) + 1,
		                        &type, body, sizeof(body), &len);

		if (rc <= 0)
			return false;
		if (type == 'E')
			return h_parse_error(body, len, err);
	}
	return false;
}

bool h_raw_closed(int fd, int timeout_ms)
{
	double deadline = h_now() + timeout_ms / 1000.0;
	char buf[4096];

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		int wait_ms = (int)((deadline - h_now()) * 1000);
		ssize_t n;

		if (wait_ms <= 0 || poll(&p, 1, wait_ms) == 0)
			return false;
		n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			return true;
	}
}

/* Answers an md5 request; false if the salt has a zero byte (retry). */
static bool send_md5_password(int fd, const char *user, const char *password,
                              const uint8_t *salt)
{
	char salt_str[5], *inner, *outer;
	uint8_t msg[64];
	bool ok;

	memcpy(salt_str, salt, 4);
	salt_str[4] = '\0';
	if (strlen(salt_str) != 4)
		return false;
	/* md5(md5(password || user) || salt), libpq's helper does both. */
	inner = PQencryptPassword(password, user);
	outer = PQencryptPassword(inner + 3, salt_str);
	msg[0] = 'p';
	h_put_be32(msg + 1, 4 + 35 + 1);
	memcpy(msg + 5, outer, 36);
	ok = h_raw_send(fd, msg, 5 + 36);
	PQfreemem(inner);
	PQfreemem(outer);
	return ok;
}

static bool send_password(int fd, const char *password)
{
	uint8_t msg[256];
	size_t n = strlen(password) + 1;

	msg[0] = 'p';
	h_put_be32(msg + 1, (uint32_t)(4 + n));
	memcpy(msg + 5, password, n);
	return h_raw_send(fd, msg, 5 + n);
}

/* One login attempt: the fd at ReadyForQuery, -2 to retry, else asserts. */
static int raw_login_once(const char *user, const char *const *params)
{
	const char *all[64] = { "user", user, "database", H_DBNAME };
	static uint8_t buf[65536];
	const char *password = h_password_of(user);
	size_t n = 4, len;
	int fd = h_raw_connect();
	struct h_error err;
	char type;

	for (size_t i = 0; params && params[i] && n < 62; i++)
		all[n++] = params[i];
	all[n] = NULL;
	len = h_startup_packet(buf, sizeof(buf), 196608, all, true);
	cr_assert(h_raw_send(fd, buf, len), "sending the startup packet failed");
	for (;;) {
		cr_assert(h_raw_read_msg(fd, 10000, &type, buf, sizeof(buf), &len) == 1,
		          "login as %s: connection closed or timed out", user);
		if (type == 'Z')
			return fd;
		if (type == 'E') {
			h_parse_error(buf, len, &err);
			cr_assert_fail("login as %s failed: %s %s %s", user,
			               err.severity, err.sqlstate, err.message);
		}
		if (type != 'R' || len < 4)
			continue;
		switch (h_get_be32(buf)) {
		case 0:
			break;
		case 3:
			cr_assert(send_password(fd, password), "sending the password");
			break;
		case 5:
			if (send_md5_password(fd, user, password, buf + 4))
				break;
			close(fd);
			return -2;
		default:
			cr_assert_fail("h_raw_login: authentication request %u is "
			               "not supported (use trust, plain or md5)",
			               h_get_be32(buf));
		}
	}
}

int h_raw_login(const char *user, const char *const *params)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		int fd = raw_login_once(user, params);

		if (fd >= 0)
			return fd;
	}
	cr_assert_fail("h_raw_login: no usable md5 salt in 10 attempts");
	return -1;
}

/* ---- PostgreSQL, in the runner process ---- */

/* argv prefix that runs a program as the postgres user when we are root. */
static int pg_argv(const char **argv, const char *program)
{
	static char path[PATH_MAX];
	int n = 0;

	if (geteuid() == 0) {
		argv[n++] = "runuser";
		argv[n++] = "-u";
		argv[n++] = "postgres";
		argv[n++] = "--";
	}
	argv[n++] = h_pg_program(program, path, sizeof(path));
	return n;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("harness: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(99); /* "hard error" for automake's test driver */
}

static void run_or_die(const char *const argv[], const char *what)
{
	static struct h_output out;
	int status = h_run(argv, PG_TIMEOUT_MS, &out);

	if (status != 0)
		die("%s failed (status %d):\n%s%s", what, status, out.out, out.err);
}

static void pg_write_config(const char *sockdir)
{
	char path[PATH_MAX + 32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/postgresql.conf", pg_data);
	f = fopen(path, "a");
	if (!f)
		die("cannot append to %s: %s", path, strerror(errno));
	fprintf(f, "\n# integration test harness\n"
	        "listen_addresses = '127.0.0.1'\n"
	        "unix_socket_directories = '%s'\n"
	        "max_connections = 200\n"
	        "fsync = off\n"
	        "synchronous_commit = off\n"
	        "full_page_writes = off\n"
	        "shared_buffers = 32MB\n"
	        "password_encryption = 'scram-sha-256'\n"
	        "log_line_prefix = '%%m [%%p] %%u@%%d '\n"
	        "log_connections = on\n"
	        "log_disconnections = on\n", sockdir);
	fclose(f);
	snprintf(path, sizeof(path), "%s/pg_hba.conf", pg_data);
	f = fopen(path, "w");
	if (!f)
		die("cannot write %s: %s", path, strerror(errno));
	fprintf(f, "local all all trust\n"
	        "host all " H_SUPERUSER " 127.0.0.1/32 trust\n"
	        "host all " H_ALICE " 127.0.0.1/32 scram-sha-256\n"
	        "host all " H_BOB " 127.0.0.1/32 md5\n"
	        "host all " H_CAROL " 127.0.0.1/32 password\n"
	        "host all all 127.0.0.1/32 scram-sha-256\n");
	fclose(f);
}

static void pg_sql_or_die(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		die("setup query failed: %s\n%s", sql, PQerrorMessage(conn));
	PQclear(res);
}

static PGconn *pg_connect_or_die(const char *host, int port, const char *db)
{
	char conninfo[512];
	PGconn *conn;

	snprintf(conninfo, sizeof(conninfo),
	         "host=%s port=%d user=%s dbname=%s connect_timeout=10 "
	         "sslmode=disable gssencmode=disable",
	         host, port, pg_superuser(), db);
	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
		die("cannot connect to PostgreSQL (%s): %s", conninfo,
		    PQerrorMessage(conn));
	return conn;
}

/* Creates (or resets) the roles and the test database; idempotent. */
static void pg_setup_roles(const char *host, int port)
{
	static const char *const roles[][3] = {
		{ H_ALICE, H_ALICE_PASSWORD, "scram-sha-256" },
		{ H_BOB, H_BOB_PASSWORD, "md5" },
		{ H_CAROL, H_CAROL_PASSWORD, "scram-sha-256" },
	};
	PGconn *conn = pg_connect_or_die(host, port, "postgres");
	char sql[512];
	PGresult *res;

	PQsetNoticeProcessor(conn, NULL, NULL);
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		snprintf(sql, sizeof(sql), "SET password_encryption = '%s'", roles[i][2]);
		pg_sql_or_die(conn, sql);
		snprintf(sql, sizeof(sql), "SELECT 1 FROM pg_roles WHERE rolname = '%s'",
		         roles[i][0]);
		res = PQexec(conn, sql);
		snprintf(sql, sizeof(sql), "%s ROLE %s LOGIN PASSWORD '%s'",
		         PQntuples(res) ? "ALTER" : "CREATE", roles[i][0], roles[i][1]);
		PQclear(res);
		pg_sql_or_die(conn, sql);
	}
	res = PQexec(conn, "SELECT 1 FROM pg_database WHERE datname = '" H_DBNAME "'");
	if (PQntuples(res) == 0)
		pg_sql_or_die(conn, "CREATE DATABASE " H_DBNAME " OWNER " H_ALICE);
	PQclear(res);
	PQfinish(conn);

	conn = pg_connect_or_die(host, port, H_DBNAME);
	PQsetNoticeProcessor(conn, NULL, NULL);
	pg_sql_or_die(conn, "GRANT ALL ON SCHEMA public TO PUBLIC");
	pg_sql_or_die(conn, "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
	              "GRANT ALL ON TABLES TO PUBLIC");
	pg_sql_or_die(conn, "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
	              "GRANT ALL ON SEQUENCES TO PUBLIC");
	PQfinish(conn);
}

static void make_dir_for_postgres(const char *path)
{
	if (mkdir(path, 0755) < 0)
		die("mkdir %s: %s", path, strerror(errno));
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");

		if (!pw)
			die("running as root needs a 'postgres' user to run PostgreSQL");
		if (chown(path, pw->pw_uid, pw->pw_gid) < 0)
			die("chown %s: %s", path, strerror(errno));
	}
}

static bool pg_ctl_start(int port, const char *log)
{
	const char *argv[16];
	char opts[64];
	int n = pg_argv(argv, "pg_ctl");
	struct h_output *out = calloc(1, sizeof(*out));
	int status;

	snprintf(opts, sizeof(opts), "-p %d", port);
	argv[n++] = "-D";
	argv[n++] = pg_data;
	argv[n++] = "-l";
	argv[n++] = log;
	argv[n++] = "-o";
	argv[n++] = opts;
	argv[n++] = "-w";
	argv[n++] = "-t";
	argv[n++] = "60";
	argv[n++] = "start";
	argv[n] = NULL;
	status = h_run(argv, PG_TIMEOUT_MS + 5000, out);
	free(out);
	return status == 0;
}

static void pg_start(void)
{
	char pg_dir[PATH_MAX], log[PATH_MAX + 16], portbuf[16];
	const char *argv[16];
	int n, port = 0;

	fmt_path(pg_dir, sizeof(pg_dir), "%s/pg", run_dir);
	make_dir_for_postgres(pg_dir);
	fmt_path(pg_data, sizeof(pg_data), "%s/data", pg_dir);
	n = pg_argv(argv, "initdb");
	argv[n++] = "-D";
	argv[n++] = pg_data;
	argv[n++] = "-U";
	argv[n++] = H_SUPERUSER;
	argv[n++] = "--auth=trust";
	argv[n++] = "--no-sync";
	argv[n++] = "--encoding=UTF8";
	argv[n++] = "--locale=C";
	argv[n] = NULL;
	run_or_die(argv, "initdb");
	pg_write_config(pg_dir);
	snprintf(log, sizeof(log), "%s/postgresql.log", pg_dir);
	/* The free port may be taken before postgres binds it: try again. */
	for (int attempt = 0; attempt < 5 && !pg_started; attempt++) {
		port = h_free_port();
		pg_started = pg_ctl_start(port, log);
	}
	if (!pg_started) {
		print_tail(log, 30);
		die("PostgreSQL did not start");
	}
	snprintf(portbuf, sizeof(portbuf), "%d", port);
	setenv("SLUICE_TEST_PGHOST", "127.0.0.1", 1);
	setenv("SLUICE_TEST_PGPORT", portbuf, 1);
	setenv("SLUICE_TEST_PGUSER", H_SUPERUSER, 1);
	setenv("SLUICE_TEST_PGDATA", pg_data, 1);
}

/* pg_ctl stop -m immediate: every backend dies at once, as in a crash.
 * Returns pg_ctl's exit status. */
static int pg_stop_immediate(void)
{
	const char *argv[16];
	int n = pg_argv(argv, "pg_ctl");

	argv[n++] = "-D";
	argv[n++] = pg_data;
	argv[n++] = "-m";
	argv[n++] = "immediate";
	argv[n++] = "-w";
	argv[n++] = "stop";
	argv[n] = NULL;
	return h_run(argv, PG_TIMEOUT_MS, NULL);
}

static void pg_stop(void)
{
	if (!pg_started)
		return;
	pg_started = false;
	if (pg_stop_immediate() != 0)
		fprintf(stderr, "harness: pg_ctl stop failed for %s\n", pg_data);
}

/* ---- PostgreSQL restarts, in a test process ---- */

void h_pg_require_restartable(void)
{
	const char *data = getenv("SLUICE_TEST_PGDATA");

	if (!data || !*data)
		cr_skip_test("restarts PostgreSQL: only the one the harness starts");
	/* The runner's copy of the path, in this test process. */
	snprintf(pg_data, sizeof(pg_data), "%s", data);
}

/* The cached superuser connection died with its server. */
static void forget_pg_admin(void)
{
	if (pg_admin) {
		PQfinish(pg_admin);
		pg_admin = NULL;
	}
}

void h_pg_kill(void)
{
	int status;

	h_pg_require_restartable();
	forget_pg_admin();
	status = pg_stop_immediate();
	cr_assert(status == 0, "pg_ctl stop -m immediate failed (status %d)", status);
}

void h_pg_restart(void)
{
	char log[PATH_MAX + 32];

	h_pg_require_restartable();
	forget_pg_admin();
	/* Next to the data directory, where pg_start() put it. */
	snprintf(log, sizeof(log), "%s/../postgresql.log", pg_data);
	cr_assert(pg_ctl_start(h_pg_port(), log),
	          "PostgreSQL did not start again on port %d", h_pg_port());
}

/* Stops our PostgreSQL when the runner is interrupted. */
static void runner_signal(int sig)
{
	pg_stop();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void remove_tree(const char *path)
{
	const char *argv[] = { "rm", "-rf", path, NULL };

	h_run(argv, 60000, NULL);
}

ReportHook(POST_TEST)(struct criterion_test_stats *stats)
{
	char dir[PATH_MAX];

	if (stats->test_status != CR_STATUS_FAILED || failed_count >= MAX_FAILED)
		return;
	test_dir_name(dir, sizeof(dir), run_dir, stats->test->category,
	              stats->test->name);
	failed[failed_count] = strdup(dir);
	if (failed[failed_count])
		failed_count++;
}

static void report_failures(void)
{
	char path[PATH_MAX + 32];

	for (int i = 0; i < failed_count; i++) {
		snprintf(path, sizeof(path), "%s/sluice.log", failed[i]);
		print_tail(path, 40);
		snprintf(path, sizeof(path), "%s/sluice.out", failed[i]);
		print_tail(path, 40);
		free(failed[i]);
	}
}

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	const char *tmp = getenv("SLUICE_TEST_TMPDIR");
	bool reuse = getenv("SLUICE_TEST_PGPORT") && *getenv("SLUICE_TEST_PGPORT");
	bool keep = env_true("SLUICE_TEST_KEEP");
	int result = 0;

	/* Tests count backends on the shared server: one test at a time. */
	criterion_options.jobs = 1;
	if (!criterion_handle_args(argc, argv, true)) {
		criterion_finalize(tests);
		return 0;
	}
	snprintf(run_dir, sizeof(run_dir), "%s/sluice-test-XXXXXX",
	         tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(run_dir))
		die("mkdtemp %s: %s", run_dir, strerror(errno));
	chmod(run_dir, 0755);
	setenv("SLUICE_TEST_RUNDIR", run_dir, 1);
	signal(SIGINT, runner_signal);
	signal(SIGTERM, runner_signal);
	signal(SIGHUP, runner_signal);
	signal(SIGPIPE, SIG_IGN);
	if (!reuse)
		pg_start();
	pg_setup_roles(h_pg_host(), atoi(getenv("SLUICE_TEST_PGPORT")));

	result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);

	report_failures();
	if (keep && pg_started) {
		fprintf(stderr, "harness: PostgreSQL left running; reuse it with\n"
		        "  export SLUICE_TEST_PGHOST=%s SLUICE_TEST_PGPORT=%s\n"
		        "stop it with\n  %spg_ctl -D %s stop\n",
		        h_pg_host(), getenv("SLUICE_TEST_PGPORT"),
		        geteuid() == 0 ? "runuser -u postgres -- " : "", pg_data);
		pg_started = false;
	}
	pg_stop();
	if (keep || result)
		fprintf(stderr, "harness: files kept in %s\n", run_dir);
	else
		remove_tree(run_dir);
	return result;
}

int h_pgbench(const char *const *args, int timeout_ms, struct h_output *out)
{
	char program[PATH_MAX], port[16];
	const char *argv[32];
	int n = 0;

	argv[n++] = h_pg_program("pgbench", program, sizeof(program));
	argv[n++] = "-h";
	argv[n++] = "127.0.0.1";
	argv[n++] = "-p";
	snprintf(port, sizeof(port), "%d", h_port());
	argv[n++] = port;
	argv[n++] = "-U";
	argv[n++] = H_ALICE;
	for (size_t i = 0; args[i] && n < 30; i++)
		argv[n++] = args[i];
	argv[n++] = H_DBNAME;
	argv[n] = NULL;
	return h_run(argv, timeout_ms, out);
}

long h_report_number(const struct h_output *out, const char *label)
{
	const char *p = strstr(out->out, label);

	return p ? strtol(p + strlen(label), NULL, 10) : -1;
}
