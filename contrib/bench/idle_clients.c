/*
 * idle_clients - open N PostgreSQL connections with libpq and hold them idle.
 *
 * Used by contrib/bench/run.sh --idle to measure what idle clients cost a
 * pooler. Connections are opened without blocking, at most PARALLEL logins at
 * a time (so that the listen backlog does not overflow), and then held open,
 * doing nothing, until SIGTERM or SIGINT.
 *
 *   idle_clients CONNINFO N [PARALLEL [TIMEOUT_SECONDS]]
 *
 * When every connection has either logged in or failed, one line goes to
 * stdout:
 *
 *   ready ok=N failed=F seconds=S
 *
 * and the first few error messages go to stderr. The process raises its own
 * open-file limit to the hard limit, since each connection is one socket.
 *
 * Build: gcc -O2 -o idle_clients idle_clients.c $(pkg-config --cflags --libs libpq)
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

enum state { ST_NEW, ST_CONNECTING, ST_OK, ST_FAILED };

struct slot {
	PGconn *conn;
	enum state state;
	PostgresPollingStatusType want;
};

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void) sig;
	stop = 1;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const char *conninfo;
	long n, parallel = 64, timeout = 600;
	long started = 0, ok = 0, failed = 0, errors_shown = 0;
	struct slot *slots;
	struct pollfd *pfd;
	long *active, nactive = 0;
	struct rlimit rl;
	struct sigaction sa;
	double t0;

	if (argc < 3) {
		fprintf(stderr, "usage: %s CONNINFO N [PARALLEL [TIMEOUT_SECONDS]]\n", argv[0]);
		return 2;
	}
	conninfo = argv[1];
	n = strtol(argv[2], NULL, 10);
	if (argc > 3)
		parallel = strtol(argv[3], NULL, 10);
	if (argc > 4)
		timeout = strtol(argv[4], NULL, 10);
	if (n < 1 || parallel < 1 || timeout < 1) {
		fprintf(stderr, "idle_clients: bad arguments\n");
		return 2;
	}

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if ((rlim_t) n + 16 > rl.rlim_cur)
			fprintf(stderr, "idle_clients: warning: open-file limit %ld is below %ld connections\n",
					(long) rl.rlim_cur, n);
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	slots = calloc(n, sizeof *slots);
	pfd = calloc(parallel + 1, sizeof *pfd);
	active = calloc(parallel + 1, sizeof *active);
	if (!slots || !pfd || !active) {
		fprintf(stderr, "idle_clients: out of memory\n");
		return 1;
	}

	t0 = now();
	/* Connect phase: keep up to `parallel` logins in flight. */
	while (ok + failed < n && !stop) {
		int np = 0, r;
		long i, kept;

		while (nactive < parallel && started < n) {
			struct slot *s = &slots[started];

			s->conn = PQconnectStart(conninfo);
			if (s->conn == NULL || PQstatus(s->conn) == CONNECTION_BAD) {
				s->state = ST_FAILED;
				failed++;
				if (errors_shown++ < 5)
					fprintf(stderr, "idle_clients: %s", s->conn ? PQerrorMessage(s->conn) : "out of memory\n");
			} else {
				s->state = ST_CONNECTING;
				s->want = PGRES_POLLING_WRITING;
				active[nactive++] = started;
			}
			started++;
		}
		if (nactive == 0)
			continue;
		for (i = 0; i < nactive; i++) {
			struct slot *s = &slots[active[i]];

			pfd[np].fd = PQsocket(s->conn);
			pfd[np].events = s->want == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			pfd[np].revents = 0;
			np++;
		}
		if (now() - t0 > timeout) {
			fprintf(stderr, "idle_clients: timed out after %ld s with %d logins pending\n", timeout, np);
			break;
		}
		r = poll(pfd, np, 1000);
		if (r < 0 && errno != EINTR) {
			perror("idle_clients: poll");
			break;
		}
		kept = 0;
		for (i = 0; i < nactive; i++) {
			struct slot *s = &slots[active[i]];
			PostgresPollingStatusType st;

			if (pfd[i].revents != 0) {
				st = PQconnectPoll(s->conn);
				if (st == PGRES_POLLING_OK) {
					s->state = ST_OK;
					ok++;
				} else if (st == PGRES_POLLING_FAILED) {
					s->state = ST_FAILED;
					failed++;
					if (errors_shown++ < 5)
						fprintf(stderr, "idle_clients: %s", PQerrorMessage(s->conn));
				} else
					s->want = st;
			}
			if (s->state == ST_CONNECTING)
				active[kept++] = active[i];
		}
		nactive = kept;
	}

	printf("ready ok=%ld failed=%ld seconds=%.1f\n", ok, failed, now() - t0);
	fflush(stdout);

	/* Hold the connections, doing nothing, until SIGTERM or SIGINT. */
	{
		sigset_t block, old;

		sigemptyset(&block);
		sigaddset(&block, SIGTERM);
		sigaddset(&block, SIGINT);
		sigprocmask(SIG_BLOCK, &block, &old);
		while (!stop)
			sigsuspend(&old);
		sigprocmask(SIG_SETMASK, &old, NULL);
	}

	for (long i = 0; i < n; i++)
		if (slots[i].conn)
			PQfinish(slots[i].conn);
	return failed ? 1 : 0;
}
