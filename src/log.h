/*
 * log.h - log lines as PgBouncer writes them:
 *   2026-11-23 15:30:00.123 UTC [4242] LOG C-7: shop/alice@127.0.0.1:51234 login attempt: ...
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdbool.h>
#include <stddef.h>

struct conn;

enum log_level {
	LOG_LEVEL_FATAL,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_NOISE,
};

/*
 * Sets where lines go: stderr (unless quiet), logfile when not NULL, syslog
 * when use_syslog. verbose raises the level past INFO (1: DEBUG, 2: NOISE).
 * Returns 0, or -1 with errno when logfile cannot be opened.
 */
int log_configure(const char *logfile, bool use_syslog, const char *ident,
                  const char *facility, int verbose, bool quiet);

/* Stops writing to stderr (after daemonizing). */
void log_detach_stderr(void);

/* True if lines at level are written; lets callers skip costly formatting. */
bool log_enabled(enum log_level level);

/* Room for one escaped name (a PostgreSQL name is at most 63 bytes, each
 * escaped in at most 4). */
#define LOG_ESCAPED_NAME 256

/*
 * text as it may go into a log line: '"' and '\' escaped, control bytes
 * as \n, \r, \t or \xNN, so that no client-supplied string can end the
 * line or fake another; cut to fit outlen bytes with the NUL. Writes out and
 * returns it, so a call can be an argument of log_*(). Every string a
 * client or server chose goes through it before it is logged.
 */
const char *log_escape(const char *text, char *out, size_t outlen);

/* Writes one line; conn (or NULL) gives the "C-n: db/user@addr:port" prefix. */
void log_write(enum log_level level, const struct conn *conn, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_fatal(conn, ...) log_write(LOG_LEVEL_FATAL, conn, __VA_ARGS__)
#define log_error(conn, ...) log_write(LOG_LEVEL_ERROR, conn, __VA_ARGS__)
#define log_warn(conn, ...) log_write(LOG_LEVEL_WARN, conn, __VA_ARGS__)
#define log_info(conn, ...) log_write(LOG_LEVEL_INFO, conn, __VA_ARGS__)
#define log_debug(conn, ...) log_write(LOG_LEVEL_DEBUG, conn, __VA_ARGS__)

#endif
