/*
 * log.c - log lines to stderr, a logfile and syslog.
 *
 * The log is one per process, shared by every loop, so its state is the one
 * file-level static in sluice: where lines go and from which level.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"

static struct {
	FILE *file;            /* logfile, or NULL */
	bool to_stderr;
	bool to_syslog;
	enum log_level max_level;
} logger = { NULL, true, false, LOG_LEVEL_INFO };

static const char *const level_names[] = {
	[LOG_LEVEL_FATAL] = "FATAL",
	[LOG_LEVEL_ERROR] = "ERROR",
	[LOG_LEVEL_WARN] = "WARNING",
	[LOG_LEVEL_INFO] = "LOG",
	[LOG_LEVEL_DEBUG] = "DEBUG",
	[LOG_LEVEL_NOISE] = "NOISE",
};

static const int syslog_priorities[] = {
	[LOG_LEVEL_FATAL] = LOG_CRIT,
	[LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_WARN] = LOG_WARNING,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
	[LOG_LEVEL_NOISE] = LOG_DEBUG,
};

static int facility_code(const char *name)
{
	static const struct { const char *name; int code; } facilities[] = {
		{ "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV },
		{ "daemon", LOG_DAEMON }, { "user", LOG_USER },
		{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
		{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
		{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};

	for (size_t i = 0; name && i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcmp(facilities[i].name, name) == 0)
			return facilities[i].code;
	return LOG_DAEMON;
}

int log_configure(const char *logfile, bool use_syslog, const char *ident,
                  const char *facility, int verbose, bool quiet)
{
	if (logger.file)
		fclose(logger.file);
	logger.file = NULL;
	if (logfile && *logfile) {
		logger.file = fopen(logfile, "a");
		if (!logger.file)
			return -1;
		setvbuf(logger.file, NULL, _IOLBF, 0);
	}
	logger.to_stderr = !quiet;
	logger.max_level = LOG_LEVEL_INFO + (verbose > 2 ? 2 : verbose);
	if (logger.to_syslog)
		closelog();
	logger.to_syslog = use_syslog;
	if (use_syslog)
		openlog(ident ? ident : "sluice", LOG_PID, facility_code(facility));
	return 0;
}

void log_detach_stderr(void)
{
	logger.to_stderr = false;
}

bool log_enabled(enum log_level level)
{
	return level <= logger.max_level;
}

static size_t format_time(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;
	size_t n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	n += snprintf(buf + n, len - n, ".%03d UTC", (int)(tv.tv_usec / 1000));
	return n;
}

const char *log_escape(const char *text, char *out, size_t outlen)
{
	size_t n = 0;

	if (outlen == 0)
		return "";
	/* n + 5 < outlen: room for the longest escape, \xNN, and the NUL. */
	for (const unsigned char *p = (const unsigned char *)text; *p && n + 5 < outlen; p++) {
		if (*p == '"' || *p == '\\') {
			out[n++] = '\\';
			out[n++] = (char)*p;
		} else if (*p == '\n') {
			n += (size_t)snprintf(out + n, outlen - n, "\\n");
		} else if (*p == '\r') {
			n += (size_t)snprintf(out + n, outlen - n, "\\r");
		} else if (*p == '\t') {
			n += (size_t)snprintf(out + n, outlen - n, "\\t");
		} else if (*p < 0x20 || *p == 0x7f) {
			n += (size_t)snprintf(out + n, outlen - n, "\\x%02x", *p);
		} else {
			out[n++] = (char)*p;
		}
	}
	out[n] = '\0';
	return out;
}

/* The message in buf, or in a malloc'd copy (*heap) when it is longer:
 * a leak line with a long statement must stay whole. */
static const char *format_message(char *buf, size_t len, char **heap,
                                  const char *ident, const char *fmt, va_list ap)
{
	size_t n = ident && *ident ? (size_t)snprintf(buf, len, "%s ", ident) : 0;
	va_list again;
	int need;

	va_copy(again, ap);
	need = vsnprintf(buf + n, len - n, fmt, ap);
	if (need >= 0 && (size_t)need >= len - n &&
	    (*heap = malloc(n + (size_t)need + 1)) != NULL) {
		memcpy(*heap, buf, n);
		vsnprintf(*heap + n, (size_t)need + 1, fmt, again);
	}
	va_end(again);
	return *heap ? *heap : buf;
}

void log_write(enum log_level level, const struct conn *conn, const char *fmt, ...)
{
	char buf[2048];
	char stamp[64];
	char ident[LOG_ESCAPED_NAME * 2 + 128] = ""; /* C-n: db/user@addr */
	char *heap = NULL;
	const char *msg;
	va_list ap;

	if (!log_enabled(level))
		return;
	if (conn)
		conn_describe(conn, ident, sizeof(ident));
	va_start(ap, fmt);
	msg = format_message(buf, sizeof(buf), &heap, ident, fmt, ap);
	va_end(ap);

	format_time(stamp, sizeof(stamp));
	if (logger.to_stderr)
		fprintf(stderr, "%s [%d] %s %s\n", stamp, (int)getpid(),
		        level_names[level], msg);
	if (logger.file)
		fprintf(logger.file, "%s [%d] %s %s\n", stamp, (int)getpid(),
		        level_names[level], msg);
	if (logger.to_syslog)
		syslog(syslog_priorities[level], "%s %s", level_names[level], msg);
	free(heap);
}
