/*
 * flood.c - a connection flood against a PostgreSQL pooler, for
 * contrib/flood.sh.
 *
 * Opens SLOW slow-login clients first (each sends the first 12 bytes of a
 * startup packet, then nothing), then makes ATTEMPTS connection attempts,
 * at most PARALLEL unanswered at a time. An attempt sends a whole startup
 * packet and waits for the first answer: an authentication request ('R'),
 * an ErrorResponse (its SQLSTATE is counted), a close, or nothing within
 * ANSWER_S seconds (no_answer). With -k, every SILENT_EVERY-th attempt from
 * the SILENT_AFTER-th on sends nothing at all and waits to be refused or
 * closed: what a pooler past max_client_conn must do promptly. Every socket
 * is held open until the last attempt has been answered (so the pooler
 * sees them all at once, past max_client_conn and its file descriptor
 * limit), HOLD_S seconds more, and then closed.
 *
 *   flood -p PORT [-n ATTEMPTS] [-s SLOW] [-P PARALLEL] [-r RATE]
 *         [-a ANSWER_S] [-H HOLD_S] [-t MAX_S] [-k SILENT_EVERY
 *         [-K SILENT_AFTER]]
 *
 * RATE caps the attempts started per second (a flood from a network, not
 * from a loop on the same CPUs). Defaults: 15000 attempts, 1000 slow, 256
 * parallel, no rate limit, 10 s to answer, 2 s
 * held, 120 s at most. Talks only to 127.0.0.1 (user and database "flood",
 * or $FLOOD_USER and $FLOOD_DB). Every loop is bounded: the run stops after
 * MAX_S whatever happens. The result is one line on stdout, e.g.
 *
 *   attempts=15000 silent=3250 auth=996 error=10754 closed=3250 refused=0
 *   no_answer=0 slow=1000 slow_closed=0 slow_failed=0 seconds=4.1 53300=10754
 *
 * It raises its own open-file limit to the hard limit: one socket each.
 * No libpq: raw sockets and epoll, one thread.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_STATES 16      /* distinct SQLSTATEs counted */

enum slot_state {
	SLOT_CONNECTING,   /* connect() in progress */
	SLOT_WAITING,      /* startup packet sent, no answer yet */
	SLOT_SILENT,       /* connected, sends nothing; waits for a close */
	SLOT_DONE,         /* answered (or given up); held open */
	SLOT_SLOW,         /* slow-login client, held open */
};

struct slot {
	int fd;
	enum slot_state state;
	double started;    /* when connect() was called */
	bool silent;       /* never sends its startup packet */
};

/* Outcome counters, printed at the end. */
static struct {
	long attempts, silent, auth, error, closed, refused, no_answer;
	long slow, slow_closed, slow_failed;
	char states[MAX_STATES][6];
	long state_count[MAX_STATES];
	int nstates;
} count;

static struct sockaddr_in target;
static int ep;                     /* the epoll set */
static long silent_open;           /* silent attempts not yet answered */
static uint8_t startup[256];
static size_t startup_len;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* StartupMessage 3.0 for user and database. */
static void build_startup(const char *user, const char *db)
{
	size_t len = 8;

	len += (size_t)sprintf((char *)startup + len, "user") + 1;
	len += (size_t)sprintf((char *)startup + len, "%s", user) + 1;
	len += (size_t)sprintf((char *)startup + len, "database") + 1;
	len += (size_t)sprintf((char *)startup + len, "%s", db) + 1;
	startup[len++] = 0;
	put_be32(startup, (uint32_t)len);
	put_be32(startup + 4, 196608);
	startup_len = len;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A non-blocking connect to the target; -1 (counted) if it fails at once. */
static int start_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0 &&
	    errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

static void count_state(const char *sqlstate)
{
	for (int i = 0; i < count.nstates; i++)
		if (strcmp(count.states[i], sqlstate) == 0) {
			count.state_count[i]++;
			return;
		}
	if (count.nstates < MAX_STATES) {
		snprintf(count.states[count.nstates], 6, "%s", sqlstate);
		count.state_count[count.nstates++] = 1;
	}
}

/* The SQLSTATE of the ErrorResponse at the start of buf, or "?????". */
static void error_state(const uint8_t *buf, size_t n, char *out)
{
	size_t i = 5;

	snprintf(out, 6, "?????");
	while (i < n && buf[i] != 0) {
		char field = (char)buf[i++];
		const char *value = (const char *)buf + i;
		size_t len = strnlen(value, n - i);

		if (i + len >= n)
			return;
		if (field == 'C') {
			snprintf(out, 6, "%s", value);
			return;
		}
		i += len + 1;
	}
}

/* Reads the first answer of an attempt; true once it is decided. */
static bool read_answer(struct slot *s)
{
	uint8_t buf[1024];
	char state[6];
	ssize_t n = recv(s->fd, buf, sizeof(buf), 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	if (n <= 0)
		count.closed++;
	else if (buf[0] == 'R')
		count.auth++;
	else if (buf[0] == 'E') {
		count.error++;
		error_state(buf, (size_t)n, state);
		count_state(state);
	} else
		count.closed++; /* anything else: not a pooler's answer */
	return true;
}

/* The connect of s completed (or failed): send the startup packet. */
static bool connected(struct slot *s)
{
	int err = 0;
	socklen_t len = sizeof(err);

	getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err != 0) {
		count.refused++;
		return true;
	}
	if (s->silent) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP,
		                          .data.ptr = s };

		s->state = SLOT_SILENT;
		silent_open++;
		epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
		return false;
	}
	if (send(s->fd, startup, startup_len, MSG_NOSIGNAL) != (ssize_t)startup_len) {
		count.closed++;
		return true;
	}
	s->state = SLOT_WAITING;
	return false;
}

/* Handles one event; returns true when the attempt is decided. */
static bool on_event(struct slot *s, uint32_t events)
{
	switch (s->state) {
	case SLOT_CONNECTING:
		return connected(s);
	case SLOT_WAITING:
		return read_answer(s);
	case SLOT_SILENT:
		return events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) ?
		       read_answer(s) : false;
	case SLOT_DONE:
		return false;
	case SLOT_SLOW:
		/* Anything from the pooler (an error, a close) ends the wait. */
		if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP | EPOLLIN)) {
			count.slow_closed++;
			s->state = SLOT_DONE;
			epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
		}
		return false;
	}
	return false;
}

/* A blocking connect that gives up after 2 s (SO_SNDTIMEO bounds it). */
static int connect_bounded(void)
{
	struct timeval limit = { 2, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
	if (connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Opens one slow-login client before deadline: a startup packet cut after
 * 12 bytes. */
static struct slot *open_slow(double deadline)
{
	struct slot *s = calloc(1, sizeof(*s));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	struct timespec pause = { 0, 1000000 };
	int fd = -1;

	while (s && fd < 0 && now() < deadline) {
		fd = connect_bounded();
		if (fd < 0)
			nanosleep(&pause, NULL);
	}
	if (!s || fd < 0 || send(fd, startup, 12, MSG_NOSIGNAL) != 12) {
		count.slow_failed++;
		if (fd >= 0)
			close(fd);
		free(s);
		return NULL;
	}
	s->fd = fd;
	s->state = SLOT_SLOW;
	ev.data.ptr = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	count.slow++;
	return s;
}

/* Starts one attempt; NULL (counted as refused) if it failed at once. */
static struct slot *open_attempt(bool silent)
{
	struct slot *s = calloc(1, sizeof(*s));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP };

	count.attempts++;
	count.silent += silent;
	if (!s || (s->fd = start_connect()) < 0) {
		count.refused++;
		free(s);
		return NULL;
	}
	s->state = SLOT_CONNECTING;
	s->silent = silent;
	s->started = now();
	ev.data.ptr = s;
	epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
	return s;
}

/* True while s counts against PARALLEL: not connected or not answered. */
static bool is_pending(const struct slot *s)
{
	return s->state == SLOT_CONNECTING || s->state == SLOT_WAITING;
}

/* Marks s answered: it stays open but is no longer watched (a reset
 * would otherwise be reported again on every wait). */
static void settle(struct slot *s)
{
	silent_open -= s->state == SLOT_SILENT;
	s->state = SLOT_DONE;
	epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
}

/* Gives up on attempts unanswered for answer_s; returns how many of them
 * counted against PARALLEL. */
static long expire(struct slot **all, long n, double answer_s)
{
	double t = now();
	long expired = 0;

	for (long i = 0; i < n; i++) {
		struct slot *s = all[i];

		if (s && (is_pending(s) || s->state == SLOT_SILENT) &&
		    t - s->started > answer_s) {
			count.no_answer++;
			expired += is_pending(s);
			settle(s);
		}
	}
	return expired;
}

/* One epoll event; returns 1 if s stopped counting against PARALLEL. */
static long handle(struct slot *s, uint32_t events)
{
	bool was_pending = is_pending(s);

	if (on_event(s, events))
		settle(s);
	return was_pending && !is_pending(s);
}

static void print_result(double seconds)
{
	printf("attempts=%ld silent=%ld auth=%ld error=%ld closed=%ld refused=%ld "
	       "no_answer=%ld slow=%ld slow_closed=%ld slow_failed=%ld "
	       "seconds=%.1f", count.attempts, count.silent, count.auth, count.error,
	       count.closed, count.refused, count.no_answer, count.slow,
	       count.slow_closed, count.slow_failed, seconds);
	for (int i = 0; i < count.nstates; i++)
		printf(" %s=%ld", count.states[i], count.state_count[i]);
	printf("\n");
}

/* Command-line settings; see the usage text. */
struct options {
	int port;
	long attempts, slow, parallel, silent_every, silent_after;
	double rate;       /* attempts started per second at most; 0: no limit */
	double answer_s, hold_s, max_s;
};

static int usage(const char *argv0)
{
	fprintf(stderr, "usage: %s -p PORT [-n ATTEMPTS] [-s SLOW] [-P PARALLEL] "
	        "[-r RATE] [-a ANSWER_S] [-H HOLD_S] [-t MAX_S] [-k SILENT_EVERY "
	        "[-K SILENT_AFTER]]\n", argv0);
	return 2;
}

static bool parse_options(int argc, char **argv, struct options *o)
{
	int opt;

	*o = (struct options){ .attempts = 15000, .slow = 1000, .parallel = 256,
	                       .answer_s = 10, .hold_s = 2, .max_s = 120 };
	while ((opt = getopt(argc, argv, "p:n:s:P:r:a:H:t:k:K:")) != -1) {
		switch (opt) {
		case 'p': o->port = atoi(optarg); break;
		case 'n': o->attempts = atol(optarg); break;
		case 's': o->slow = atol(optarg); break;
		case 'P': o->parallel = atol(optarg); break;
		case 'r': o->rate = atof(optarg); break;
		case 'a': o->answer_s = atof(optarg); break;
		case 'H': o->hold_s = atof(optarg); break;
		case 't': o->max_s = atof(optarg); break;
		case 'k': o->silent_every = atol(optarg); break;
		case 'K': o->silent_after = atol(optarg); break;
		default: return false;
		}
	}
	return o->port > 0 && o->port < 65536 && o->attempts >= 0 &&
	       o->slow >= 0 && o->parallel >= 1 && o->silent_every >= 0 &&
	       o->rate >= 0 &&
	       o->attempts + o->slow <= 1000000 && o->max_s > 0;
}

/* True if one more attempt may start now: PARALLEL and RATE allow it. */
static bool may_start(const struct options *o, long pending, double since)
{
	if (pending >= o->parallel || count.attempts >= o->attempts)
		return false;
	return o->rate <= 0 || count.attempts < (now() - since) * o->rate + 1;
}

/* Attempt i sends nothing at all: every silent_every-th past silent_after. */
static bool is_silent(const struct options *o, long i)
{
	return o->silent_every > 0 && i >= o->silent_after &&
	       i % o->silent_every == 0;
}

int main(int argc, char **argv)
{
	struct options o;
	long pending = 0, n = 0;
	double t0, t_attempts, held_until = 0, expired_at = 0;
	struct epoll_event events[512];
	struct slot **all;

	if (!parse_options(argc, argv, &o))
		return usage(argv[0]);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)o.port);
	target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	build_startup(getenv("FLOOD_USER") ? getenv("FLOOD_USER") : "flood",
	              getenv("FLOOD_DB") ? getenv("FLOOD_DB") : "flood");
	all = calloc((size_t)(o.attempts + o.slow), sizeof(*all));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!all || ep < 0)
		return 1;
	t0 = now();
	for (long i = 0; i < o.slow && now() - t0 < o.max_s; i++)
		all[n++] = open_slow(t0 + o.max_s);
	t_attempts = now();
	while (now() - t0 < o.max_s) {
		int ready;

		while (may_start(&o, pending, t_attempts)) {
			all[n] = open_attempt(is_silent(&o, count.attempts));
			pending += all[n++] != NULL;
		}
		if (pending == 0 && silent_open == 0 && count.attempts >= o.attempts) {
			if (held_until == 0)
				held_until = now() + o.hold_s;
			if (now() >= held_until)
				break;
		}
		ready = epoll_wait(ep, events, 512, o.rate > 0 ? 5 : 50);
		for (int i = 0; i < ready; i++)
			pending -= handle(events[i].data.ptr, events[i].events);
		/* O(n): ten times a second is plenty. */
		if (now() - expired_at > 0.1) {
			pending -= expire(all, n, o.answer_s);
			expired_at = now();
		}
	}
	print_result(now() - t0);
	fflush(stdout);
	for (long i = 0; i < n; i++)
		if (all[i]) {
			close(all[i]->fd);
			free(all[i]);
		}
	free(all);
	close(ep);
	return 0;
}
