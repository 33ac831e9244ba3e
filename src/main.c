/*
 * main.c - argv, config, daemon, signals; builds the context, runs the loop.
 *
 * Command line as PgBouncer's so service files written for it keep working:
 * sluice [-d] [-q] [-v...] [-u USER] CONFIG.ini, -V, -h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "conn.h"
#include "control.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "server.h"
#include "sluice.h"
#include "stats.h"
#include "timer.h"

struct options {
	bool daemon;
	bool quiet;
	int verbose;
	const char *user;
	const char *config_path;
};

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
	        "%s is a PostgreSQL connection pooler.\n\n"
	        "Usage:\n"
	        "  %s [OPTION]... CONFIG_FILE\n\n"
	        "Options:\n"
	        "  -d, --daemon         run in background (as a daemon)\n"
	        "  -q, --quiet          run quietly\n"
	        "  -v, --verbose        increase verbosity\n"
	        "  -u, --user=USERNAME  assume identity of USERNAME\n"
	        "  -V, --version        show version, then exit\n"
	        "  -h, --help           show this help, then exit\n",
	        prog, prog);
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
		{ "daemon", no_argument, NULL, 'd' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "user", required_argument, NULL, 'u' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "dqvu:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': opt->daemon = true; break;
		case 'q': opt->quiet = true; break;
		case 'v': opt->verbose++; break;
		case 'u': opt->user = optarg; break;
		case 'V': printf("sluice %s\n", SLUICE_VERSION); return 0;
		case 'h': usage(stdout, argv[0]); return 0;
		default: usage(stderr, argv[0]); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr, argv[0]);
		return 2;
	}
	opt->config_path = argv[optind];
	return -1;
}

static void raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	/* runuser and friends reset the soft limit; take what the hard allows. */
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	log_info(NULL, "kernel file descriptor limit: %llu (hard: %llu); "
	         "max_client_conn: %d, max expected fd use: %d",
	         (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
	         cfg->max_client_conn,
	         cfg->max_client_conn + cfg->default_pool_size + 20);
}

static int daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	log_detach_stderr();
	return 0;
}

static int write_pidfile(const char *path)
{
	FILE *f;

	if (!path || !*path)
		return 0;
	f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "%d\n", (int)getpid());
	return fclose(f);
}

static int change_user(const char *user)
{
	struct passwd *pw = getpwnam(user);

	if (!pw) {
		log_fatal(NULL, "could not find user '%s'", user);
		return -1;
	}
	if (setgid(pw->pw_gid) != 0 || initgroups(user, pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		log_fatal(NULL, "could not change to user '%s': %s", user, strerror(errno));
		return -1;
	}
	return 0;
}

/* --- the loop --------------------------------------------------------- */

static void signal_cb(uv_signal_t *handle, int signum)
{
	struct sluice *ctx = handle->data;
	char err[512];

	switch (signum) {
	case SIGHUP:
		log_info(NULL, "got SIGHUP, reloading configuration");
		control_reload(ctx, err, sizeof(err));
		return;
	case SIGUSR1:
		return control_pause(ctx, NULL);
	case SIGUSR2:
		return control_resume(ctx, NULL);
	case SIGINT:
		return control_shutdown(ctx, SHUTDOWN_WAIT_FOR_SERVERS, "got SIGINT");
	default:
		return control_shutdown(ctx, SHUTDOWN_WAIT_FOR_CLIENTS, "got SIGTERM");
	}
}

static void watch_signal(struct sluice *ctx, uv_signal_t *sig, int signum)
{
	uv_signal_init(ctx->loop, sig);
	sig->data = ctx;
	uv_signal_start(sig, signal_cb, signum);
}

static int run(struct sluice *ctx)
{
	int rc;

	uv_idle_init(ctx->loop, &ctx->ready_idle);
	ctx->ready_idle.data = ctx; /* started by conn.c when bytes wait */
	watch_signal(ctx, &ctx->sigterm, SIGTERM);
	watch_signal(ctx, &ctx->sigint, SIGINT);
	watch_signal(ctx, &ctx->sighup, SIGHUP);
	watch_signal(ctx, &ctx->sigusr1, SIGUSR1);
	watch_signal(ctx, &ctx->sigusr2, SIGUSR2);
	timer_start(ctx);
	if (listener_start_all(ctx) < 0) {
		control_shutdown(ctx, SHUTDOWN_NONE, "cannot listen");
		uv_run(ctx->loop, UV_RUN_DEFAULT);
		return 1;
	}
	uv_run(ctx->loop, UV_RUN_DEFAULT);
	pool_free_all(ctx);
	prepared_registry_free(ctx);
	stats_free(ctx);
	rc = uv_loop_close(ctx->loop);
	if (rc != 0)
		log_warn(NULL, "event loop closed with handles left: %s", uv_strerror(rc));
	return ctx->exit_code;
}

static int log_config(const struct config *cfg, const struct options *opt)
{
	if (log_configure(cfg->logfile, cfg->syslog, cfg->syslog_ident,
	                  cfg->syslog_facility, cfg->verbose + opt->verbose,
	                  opt->quiet) < 0) {
		fprintf(stderr, "cannot open logfile %s: %s\n", cfg->logfile,
		        strerror(errno));
		return -1;
	}
	for (const struct config_warning *w = cfg->warnings; w; w = w->next)
		log_warn(NULL, "%s", w->text);
	return 0;
}

int main(int argc, char **argv)
{
	struct options opt = { 0 };
	struct sluice ctx = { 0 };
	char err[1024];
	int rc = parse_args(argc, argv, &opt);

	if (rc >= 0)
		return rc;
	if (config_load(opt.config_path, &ctx.config, err, sizeof(err)) < 0) {
		fprintf(stderr, "FATAL %s\n", err);
		return 1;
	}
	if (opt.daemon && (!ctx.config->pidfile || !*ctx.config->pidfile)) {
		fprintf(stderr, "FATAL in daemon mode a pidfile must be set in the configuration\n");
		config_free(ctx.config);
		return 1;
	}
	if (log_config(ctx.config, &opt) < 0 || (opt.daemon && daemonize() < 0) ||
	    (opt.user && change_user(opt.user) < 0)) {
		config_free(ctx.config);
		return 1;
	}
	if (write_pidfile(ctx.config->pidfile) < 0)
		log_warn(NULL, "cannot write pidfile %s: %s", ctx.config->pidfile,
		         strerror(errno));
	raise_fd_limit(ctx.config);
	/* A write to a peer that has gone must fail with EPIPE on that
	 * connection, not kill the process: libuv leaves SIGPIPE as it is. */
	signal(SIGPIPE, SIG_IGN);
	log_info(NULL, "sluice %s starting (pid %d)", SLUICE_VERSION, (int)getpid());

	ctx.loop = uv_default_loop();
	ctx.cli_verbose = opt.verbose;
	ctx.cli_quiet = opt.quiet;
	ctx.read_chunk = malloc(SLUICE_READ_CHUNK);
	list_init(&ctx.pools);
	list_init(&ctx.clients);
	list_init(&ctx.cancels);
	list_init(&ctx.ready);
	rc = ctx.read_chunk ? run(&ctx) : 1;
	if (ctx.config->pidfile && *ctx.config->pidfile)
		unlink(ctx.config->pidfile);
	free(ctx.read_chunk);
	conn_free_spares(&ctx);
	free(ctx.disabled_dbs);
	free(ctx.paused_dbs);
	config_free(ctx.config);
	return rc;
}
