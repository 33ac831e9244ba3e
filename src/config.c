/*
 * config.c - sluice.ini (pgbouncer.ini) and its auth_file -> struct config.
 *
 * Owns the meaning of the file: the settings table (one row per key of the
 * main section: type, field, default), which drives parsing, defaults and
 * SHOW CONFIG; the [databases] and [users] entries; which PgBouncer keys
 * are only warned about. How the file is read (comments, %include, long
 * lines, inih) is inifile.c's; the auth_file is userlist.c's.
 */
#include "config.h"
#include "inifile.h"
#include "userlist.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_SERVER_PORT 5432
#define SPACES " \t\n\v\f\r"
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum setting_type {
	SETTING_INT,       /* int, decimal within [min, max] */
	SETTING_OCTAL,     /* int, octal file mode */
	SETTING_BOOL,      /* 0/1, yes/no, on/off, true/false */
	SETTING_STR,       /* char *; "" is kept */
	SETTING_STR_OPT,   /* char *; "" means not set (NULL) */
	SETTING_TIME_MS,   /* uint64_t ms; the ini gives seconds, "0.5" too */
	SETTING_POOL_MODE, /* enum pool_mode */
	SETTING_AUTH_TYPE, /* enum auth_type */
};

struct setting {
	const char *name;          /* the ini key, also the field's name */
	enum setting_type type;
	size_t offset;             /* of the field in struct config */
	const char *default_value; /* as the ini writes it; NULL: not set */
	int min, max;              /* SETTING_INT: accepted range */
	bool at_start_only;        /* a reload does not change it */
	bool (*valid)(const char *value); /* further check of a string */
};

static bool valid_addr_list(const char *value);
static bool valid_facility(const char *value);

/* A row of the table: the key is the name of the struct config field. */
#define SETTING(key, kind, def) .name = #key, .type = kind, \
	.offset = offsetof(struct config, key), .default_value = def

/* Alphabetical, as SHOW CONFIG lists them. Defaults are PgBouncer 1.25's
 * but for syslog_ident and server_check_query (see doc/config.md). */
static const struct setting settings[] = {
	{ SETTING(admin_users, SETTING_STR_OPT, NULL) },
	{ SETTING(application_name_add_host, SETTING_BOOL, "0") },
	{ SETTING(auth_file, SETTING_STR_OPT, NULL) },
	{ SETTING(auth_type, SETTING_AUTH_TYPE, "md5") },
	{ SETTING(autodb_idle_timeout, SETTING_TIME_MS, "3600") },
	{ SETTING(cancel_wait_timeout, SETTING_TIME_MS, "10") },
	{ SETTING(client_idle_timeout, SETTING_TIME_MS, "0") },
	{ SETTING(client_login_timeout, SETTING_TIME_MS, "60") },
	{ SETTING(default_pool_size, SETTING_INT, "20"), .max = INT_MAX },
	{ SETTING(idle_transaction_log_statement_length, SETTING_INT, "256"),
	  .min = 16, .max = 1048576 },
	{ SETTING(idle_transaction_log_timeout, SETTING_TIME_MS, "0") },
	{ SETTING(idle_transaction_timeout, SETTING_TIME_MS, "0") },
	{ SETTING(ignore_startup_parameters, SETTING_STR, "") },
	{ SETTING(listen_addr, SETTING_STR_OPT, NULL),
	  .at_start_only = true, .valid = valid_addr_list },
	{ SETTING(listen_backlog, SETTING_INT, "128"),
	  .min = 1, .max = INT_MAX, .at_start_only = true },
	{ SETTING(listen_port, SETTING_INT, "6432"),
	  .min = 1, .max = 65535, .at_start_only = true },
	{ SETTING(log_connections, SETTING_BOOL, "1") },
	{ SETTING(log_disconnections, SETTING_BOOL, "1") },
	{ SETTING(log_pooler_errors, SETTING_BOOL, "1") },
	{ SETTING(log_stats, SETTING_BOOL, "1") },
	{ SETTING(logfile, SETTING_STR_OPT, NULL) },
	{ SETTING(max_client_conn, SETTING_INT, "100"), .min = 1, .max = INT_MAX },
	{ SETTING(max_db_client_connections, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(max_db_connections, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(max_packet_size, SETTING_INT, "2147483647"),
	  .min = 1024, .max = INT_MAX },
	{ SETTING(max_prepared_statements, SETTING_INT, "200"), .max = INT_MAX },
	{ SETTING(max_user_client_connections, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(max_user_connections, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(min_pool_size, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(pidfile, SETTING_STR_OPT, NULL), .at_start_only = true },
	{ SETTING(pkt_buf, SETTING_INT, "4096"),
	  .min = 1024, .max = INT_MAX, .at_start_only = true },
	{ SETTING(pool_mode, SETTING_POOL_MODE, "session") },
	{ SETTING(query_timeout, SETTING_TIME_MS, "0") },
	{ SETTING(query_wait_notify, SETTING_TIME_MS, "5") },
	{ SETTING(query_wait_timeout, SETTING_TIME_MS, "120") },
	{ SETTING(reserve_pool_size, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(reserve_pool_timeout, SETTING_TIME_MS, "5") },
	{ SETTING(server_check_delay, SETTING_TIME_MS, "30") },
	{ SETTING(server_check_query, SETTING_STR, "select 1") },
	{ SETTING(server_connect_timeout, SETTING_TIME_MS, "15") },
	{ SETTING(server_idle_timeout, SETTING_TIME_MS, "600") },
	{ SETTING(server_lifetime, SETTING_TIME_MS, "3600") },
	{ SETTING(server_login_retry, SETTING_TIME_MS, "15") },
	{ SETTING(server_reset_query, SETTING_STR, "DISCARD ALL") },
	{ SETTING(server_reset_query_always, SETTING_BOOL, "0") },
	{ SETTING(stats_period, SETTING_TIME_MS, "60") },
	{ SETTING(stats_users, SETTING_STR_OPT, NULL) },
	{ SETTING(syslog, SETTING_BOOL, "0") },
	{ SETTING(syslog_facility, SETTING_STR, "daemon"),
	  .valid = valid_facility },
	{ SETTING(syslog_ident, SETTING_STR, "sluice") },
	{ SETTING(tcp_keepalive, SETTING_BOOL, "1") },
	{ SETTING(tcp_keepcnt, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(tcp_keepidle, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(tcp_keepintvl, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(tcp_user_timeout, SETTING_INT, "0"), .max = INT_MAX },
	{ SETTING(track_extra_parameters, SETTING_STR, "IntervalStyle"),
	  .at_start_only = true },
	{ SETTING(transaction_timeout, SETTING_TIME_MS, "0") },
	{ SETTING(unix_socket_dir, SETTING_STR, "/tmp"), .at_start_only = true },
	{ SETTING(unix_socket_mode, SETTING_OCTAL, "0777"),
	  .at_start_only = true },
	{ SETTING(verbose, SETTING_INT, "0"), .max = INT_MAX },
};

/* Main-section keys PgBouncer 1.25 knows and sluice does not implement yet:
 * a warning, not an error, so that a real pgbouncer.ini still starts. */
static const char *const pgbouncer_only_settings[] = {
	"auth_dbname", "auth_hba_file", "auth_ident_file", "auth_ldap_options",
	"auth_query", "auth_user",
	"client_tls13_ciphers", "client_tls_ca_file", "client_tls_cert_file",
	"client_tls_ciphers", "client_tls_dheparams", "client_tls_ecdhcurve",
	"client_tls_key_file", "client_tls_protocols", "client_tls_sslmode",
	"conffile", "disable_pqexec", "dns_max_ttl", "dns_nxdomain_ttl",
	"dns_zone_check_period", "job_name",
	"peer_id",
	"resolv_conf", "sbuf_loopcnt", "scram_iterations",
	"server_fast_close", "server_round_robin", "server_tls13_ciphers",
	"server_tls_ca_file", "server_tls_cert_file", "server_tls_ciphers",
	"server_tls_key_file", "server_tls_protocols", "server_tls_sslmode",
	"service_name", "so_reuseport", "suspend_timeout", "tcp_defer_accept",
	"tcp_socket_buffer", "unix_socket_group", "user",
};

enum param_type {
	PARAM_STR,       /* char * */
	PARAM_COUNT,     /* int >= 0 */
	PARAM_PORT,      /* int, 1..65535 */
	PARAM_POOL_MODE, /* enum pool_mode */
	PARAM_TIME_MS,   /* int64_t ms; seconds in the file, fractions too */
	PARAM_LATER,     /* PgBouncer's, not implemented yet: warned about */
};

/* A key of a [databases] connection string or of a [users] value. */
struct param {
	const char *name;    /* also the name of the field */
	enum param_type type;
	size_t offset;       /* in struct db_config or struct user_config */
};

#define DB_PARAM(key, kind) { #key, kind, offsetof(struct db_config, key) }
#define USER_PARAM(key, kind) { #key, kind, offsetof(struct user_config, key) }
#define LATER_PARAM(key) { #key, PARAM_LATER, 0 }

static const struct param db_params[] = {
	DB_PARAM(host, PARAM_STR),
	DB_PARAM(port, PARAM_PORT),
	DB_PARAM(dbname, PARAM_STR),
	DB_PARAM(user, PARAM_STR),
	DB_PARAM(password, PARAM_STR),
	DB_PARAM(pool_size, PARAM_COUNT),
	DB_PARAM(min_pool_size, PARAM_COUNT),
	DB_PARAM(reserve_pool, PARAM_COUNT),
	DB_PARAM(max_db_connections, PARAM_COUNT),
	DB_PARAM(pool_mode, PARAM_POOL_MODE),
	DB_PARAM(connect_query, PARAM_STR),
	DB_PARAM(application_name, PARAM_STR),
	DB_PARAM(client_encoding, PARAM_STR),
	DB_PARAM(datestyle, PARAM_STR),
	DB_PARAM(timezone, PARAM_STR),
	LATER_PARAM(auth_dbname),
	LATER_PARAM(auth_query),
	LATER_PARAM(auth_user),
	LATER_PARAM(load_balance_hosts),
	DB_PARAM(max_db_client_connections, PARAM_COUNT),
	DB_PARAM(query_wait_timeout, PARAM_TIME_MS),
	DB_PARAM(server_lifetime, PARAM_TIME_MS),
	DB_PARAM(idle_transaction_log_timeout, PARAM_TIME_MS),
	LATER_PARAM(target_session_attrs),
};

static const struct param user_params[] = {
	USER_PARAM(pool_mode, PARAM_POOL_MODE),
	USER_PARAM(max_user_connections, PARAM_COUNT),
	USER_PARAM(pool_size, PARAM_COUNT),
	USER_PARAM(reserve_pool_size, PARAM_COUNT),
	USER_PARAM(max_user_client_connections, PARAM_COUNT),
	USER_PARAM(query_timeout, PARAM_TIME_MS),
	USER_PARAM(query_wait_timeout, PARAM_TIME_MS),
	USER_PARAM(idle_transaction_timeout, PARAM_TIME_MS),
	USER_PARAM(transaction_timeout, PARAM_TIME_MS),
	USER_PARAM(client_idle_timeout, PARAM_TIME_MS),
	USER_PARAM(idle_transaction_log_timeout, PARAM_TIME_MS),
};

/* Whose key=value list is read, and how messages call it. */
struct param_list {
	const char *owner;          /* "database", "user" */
	const char *text;           /* "connection string", "settings" */
	const struct param *params;
	size_t n;
};

static const struct param_list db_param_list = {
	"database", "connection string", db_params, ARRAY_LEN(db_params),
};

static const struct param_list user_param_list = {
	"user", "settings", user_params, ARRAY_LEN(user_params),
};

/* What the entry callback keeps during one config_load(). */
struct load_state {
	struct config *cfg;
	bool main_seen;                   /* [sluice] or [pgbouncer] was read */
	struct config_warning **warn_tail;
	const struct ini_entry *entry;    /* the one being handled */
	char *err;                        /* where its error message goes */
	size_t errlen;
};

/*
 * Messages
 */

/* Writes the error of the entry being handled (inifile.c adds file:line). */
__attribute__((format(printf, 2, 3)))
static int fail(struct load_state *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, st->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Adds "file:line: message" for the entry being handled to the warnings. */
__attribute__((format(printf, 2, 3)))
static int warn(struct load_state *st, const char *fmt, ...)
{
	struct config_warning *w = calloc(1, sizeof(*w));
	int prefix, len;
	va_list ap;

	prefix = snprintf(NULL, 0, "%s:%u: ", st->entry->file, st->entry->line);
	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (w)
		w->text = malloc((size_t)prefix + (size_t)len + 1);
	if (!w || !w->text) {
		free(w);
		return fail(st, "out of memory");
	}
	sprintf(w->text, "%s:%u: ", st->entry->file, st->entry->line);
	va_start(ap, fmt);
	vsprintf(w->text + prefix, fmt, ap);
	va_end(ap);
	*st->warn_tail = w;
	st->warn_tail = &w->next;
	return 0;
}

/*
 * Values
 */

/* "127.0.0.1, ::1" or "*": comma separated, no empty item, no blank inside
 * one; host names are resolved by the listener, not here. */
static bool valid_addr_list(const char *value)
{
	const char *p = value;
	size_t n;

	for (;;) {
		p += strspn(p, " \t");
		n = strcspn(p, ", \t");
		if (n == 0)
			return false;
		p += n;
		p += strspn(p, " \t");
		if (*p == '\0')
			return true;
		if (*p++ != ',')
			return false;
	}
}

static bool valid_facility(const char *value)
{
	static const char *const names[] = {
		"auth", "authpriv", "daemon", "user", "local0", "local1",
		"local2", "local3", "local4", "local5", "local6", "local7",
	};

	/* as log.c matches them: case matters */
	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (strcmp(value, names[i]) == 0)
			return true;
	return false;
}

/* Decimal digits only (no sign, no 0x, no octal surprise), in range. */
static int parse_int(const char *value, int min, int max, int *out)
{
	char *end;
	long v;

	if (value[0] < '0' || value[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(value, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int parse_octal(const char *value, int *out)
{
	long v;

	if (!value[0] || value[strspn(value, "01234567")] != '\0')
		return -EINVAL;
	v = strtol(value, NULL, 8);
	if (v > 07777)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = { "1", "yes", "on", "true" };
	static const char *const no[] = { "0", "no", "off", "false" };

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Seconds with an optional fraction ("5", "0.5", ".25") to ms, rounded to
 * the nearest ms but never to 0 from a nonzero value. No sign, no
 * exponent, no locale: the same file means the same everywhere. */
static int parse_time_ms(const char *value, uint64_t *out)
{
	size_t int_len = strspn(value, "0123456789");
	const char *frac = value + int_len;
	size_t frac_len = 0;
	uint64_t ms = 0;
	unsigned scale = 100;

	if (*frac == '.')
		frac_len = strspn(++frac, "0123456789");
	if (frac[frac_len] != '\0' || int_len + frac_len == 0 || int_len > 12)
		return -EINVAL;
	for (size_t i = 0; i < int_len; i++)
		ms = ms * 10 + (uint64_t)(value[i] - '0');
	ms *= 1000;
	for (size_t i = 0; i < frac_len && i < 3; i++, scale /= 10)
		ms += (uint64_t)(frac[i] - '0') * scale;
	if (frac_len > 3 && frac[3] >= '5')
		ms++;
	if (ms == 0 && strspn(frac, "0") < frac_len)
		ms = 1;
	*out = ms;
	return 0;
}

static int parse_pool_mode(const char *value, enum pool_mode *out)
{
	static const enum pool_mode modes[] = {
		POOL_MODE_SESSION, POOL_MODE_TRANSACTION, POOL_MODE_STATEMENT,
	};

	for (size_t i = 0; i < ARRAY_LEN(modes); i++) {
		if (strcasecmp(value, config_pool_mode_name(modes[i])) == 0) {
			*out = modes[i];
			return 0;
		}
	}
	return -EINVAL;
}

/* -ENOTSUP for PgBouncer's types that sluice does not have yet. */
static int parse_auth_type(const char *value, enum auth_type *out)
{
	static const enum auth_type types[] = {
		AUTH_TRUST, AUTH_ANY, AUTH_PLAIN, AUTH_MD5, AUTH_SCRAM,
	};
	static const char *const later[] = { "hba", "cert", "pam", "ldap" };

	for (size_t i = 0; i < ARRAY_LEN(types); i++) {
		if (strcasecmp(value, config_auth_type_name(types[i])) == 0) {
			*out = types[i];
			return 0;
		}
	}
	for (size_t i = 0; i < ARRAY_LEN(later); i++)
		if (strcasecmp(value, later[i]) == 0)
			return -ENOTSUP;
	return -EINVAL;
}

static int set_string(const struct setting *s, const char *value, char **out)
{
	bool keep = value[0] || s->type == SETTING_STR;
	char *copy = NULL;

	/* an optional string may be emptied without passing the check */
	if (keep && s->valid && !s->valid(value))
		return -EINVAL;
	if (keep && !(copy = strdup(value)))
		return -ENOMEM;
	free(*out);
	*out = copy;
	return 0;
}

/* Sets s in cfg from its ini text: 0, -EINVAL, -ENOTSUP or -ENOMEM. */
static int parse_setting(struct config *cfg, const struct setting *s,
                         const char *value)
{
	void *field = (char *)cfg + s->offset;

	switch (s->type) {
	case SETTING_INT:
		return parse_int(value, s->min, s->max, field);
	case SETTING_OCTAL:
		return parse_octal(value, field);
	case SETTING_BOOL:
		return parse_bool(value, field);
	case SETTING_STR:
	case SETTING_STR_OPT:
		return set_string(s, value, field);
	case SETTING_TIME_MS:
		return parse_time_ms(value, field);
	case SETTING_POOL_MODE:
		return parse_pool_mode(value, field);
	case SETTING_AUTH_TYPE:
		return parse_auth_type(value, field);
	}
	return -EINVAL;
}

/* 1500 -> "1.5", 60000 -> "60": seconds, as the ini writes them. */
static void format_ms(uint64_t ms, char *buf, size_t len)
{
	size_t n;

	snprintf(buf, len, "%llu.%03u", (unsigned long long)(ms / 1000),
	         (unsigned)(ms % 1000));
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '.')
		buf[n - 1] = '\0';
}

/* The value of s in cfg as the ini would write it: the string itself, or
 * its text in buf. */
static const char *format_setting(const struct config *cfg,
                                  const struct setting *s,
                                  char *buf, size_t len)
{
	const void *field = (const char *)cfg + s->offset;
	const char *str = NULL;

	switch (s->type) {
	case SETTING_INT:
		snprintf(buf, len, "%d", *(const int *)field);
		return buf;
	case SETTING_OCTAL:
		snprintf(buf, len, "0%o", (unsigned)*(const int *)field);
		return buf;
	case SETTING_BOOL:
		return *(const bool *)field ? "1" : "0";
	case SETTING_STR:
	case SETTING_STR_OPT:
		str = *(char *const *)field;
		return str ? str : "";
	case SETTING_TIME_MS:
		format_ms(*(const uint64_t *)field, buf, len);
		return buf;
	case SETTING_POOL_MODE:
		return config_pool_mode_name(*(const enum pool_mode *)field);
	case SETTING_AUTH_TYPE:
		return config_auth_type_name(*(const enum auth_type *)field);
	}
	return "";
}

static bool in_list(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

/*
 * The main section
 */

static bool is_main_section(const char *section)
{
	return strcmp(section, "sluice") == 0 ||
	       strcmp(section, "pgbouncer") == 0;
}

static int main_setting(struct load_state *st, const char *key,
                        const char *value)
{
	const struct setting *s = NULL;
	int rc;

	for (size_t i = 0; i < ARRAY_LEN(settings) && !s; i++)
		if (strcmp(settings[i].name, key) == 0)
			s = &settings[i];
	if (!s && in_list(key, pgbouncer_only_settings,
	                  ARRAY_LEN(pgbouncer_only_settings)))
		return warn(st, "setting %s is not supported by sluice yet, "
		            "ignored", key);
	if (!s)
		return fail(st, "unknown setting: %s", key);
	rc = parse_setting(st->cfg, s, value);
	if (rc == -ENOTSUP)
		return fail(st, "%s %s is not supported by sluice yet", key,
		            value);
	if (rc == -ENOMEM)
		return fail(st, "out of memory");
	if (rc < 0)
		return fail(st, "invalid value for %s: %s", key, value);
	return 0;
}

/*
 * [databases] and [users]: key=value lists, libpq style
 */

/* Unquotes the value after an opening ' in place; '' is one quote.
 * Returns the position after the closing quote, NULL if there is none. */
static char *unquote(char *p)
{
	char *dst = p;

	for (;;) {
		if (*p == '\0')
			return NULL;
		if (p[0] == '\'' && p[1] != '\'')
			break;
		if (p[0] == '\'')
			p++;
		*dst++ = *p++;
	}
	*dst = '\0';
	return p + 1;
}

/*
 * Cuts the next key=value off *pp, as PgBouncer reads a connection string:
 * a value is bare up to whitespace, or single-quoted; it may not be empty.
 * Returns 1 with key and value set, 0 at the end, -1 on a syntax error.
 */
static int next_pair(char **pp, char **key, char **value)
{
	char *p = *pp + strspn(*pp, SPACES);
	char *end;

	if (*p == '\0')
		return 0;
	*key = p;
	end = p + strcspn(p, "=" SPACES);
	p = end + strspn(end, SPACES);
	if (*p != '=' || end == *key)
		return -1;
	*end = '\0';
	p += 1 + strspn(p + 1, SPACES);
	if (*p == '\'') {
		*value = p + 1;
		p = unquote(p + 1);
		if (!p || (*p && !strchr(SPACES, *p)))
			return -1;
	} else {
		*value = p;
		p += strcspn(p, SPACES);
	}
	if (*p)
		*p++ = '\0';
	*pp = p;
	return **value ? 1 : -1;
}

static int parse_time_param(const char *value, int64_t *out)
{
	uint64_t ms;
	int rc = parse_time_ms(value, &ms);

	if (rc == 0)
		*out = (int64_t)ms;
	return rc;
}

/* Sets one field of obj (a db_config or user_config) from its text. */
static int set_param(void *obj, const struct param *param, const char *value)
{
	void *field = (char *)obj + param->offset;
	char *copy;

	switch (param->type) {
	case PARAM_STR:
		if (!(copy = strdup(value)))
			return -ENOMEM;
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	case PARAM_COUNT:
		return parse_int(value, 0, INT_MAX, field);
	case PARAM_PORT:
		return parse_int(value, 1, 65535, field);
	case PARAM_POOL_MODE:
		return parse_pool_mode(value, field);
	case PARAM_TIME_MS:
		return parse_time_param(value, field);
	case PARAM_LATER:
		return 0;
	}
	return -EINVAL;
}

/* Applies each key=value of text (cut up in place) to obj, the entry
 * called name of list->owner. */
static int parse_params(struct load_state *st, const struct param_list *list,
                        const char *name, void *obj, char *text)
{
	const struct param *param;
	char *key, *value;
	int rc;

	while ((rc = next_pair(&text, &key, &value)) > 0) {
		param = NULL;
		for (size_t i = 0; i < list->n && !param; i++)
			if (strcmp(list->params[i].name, key) == 0)
				param = &list->params[i];
		if (!param)
			return fail(st, "%s %s: unknown parameter: %s",
			            list->owner, name, key);
		if (param->type == PARAM_LATER &&
		    warn(st, "%s %s: parameter %s is not supported by sluice "
		         "yet, ignored", list->owner, name, key) < 0)
			return -1;
		rc = set_param(obj, param, value);
		if (rc == -ENOMEM)
			return fail(st, "out of memory");
		if (rc < 0)
			return fail(st, "%s %s: invalid value for %s: %s",
			            list->owner, name, key, value);
	}
	if (rc < 0)
		return fail(st, "%s %s: syntax error in %s", list->owner, name,
		            list->text);
	return 0;
}

static void db_free(struct db_config *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < ARRAY_LEN(db_params); i++)
		if (db_params[i].type == PARAM_STR)
			free(*(char **)((char *)db + db_params[i].offset));
	free(db->name);
	free(db->file);
	free(db);
}

static struct db_config *db_new(const char *name, const struct ini_entry *e)
{
	struct db_config *db = calloc(1, sizeof(*db));

	if (!db)
		return NULL;
	db->name = strdup(name);
	db->file = strdup(e->file);
	if (!db->name || !db->file) {
		db_free(db);
		return NULL;
	}
	db->line = e->line;
	db->port = DEFAULT_SERVER_PORT;
	db->pool_size = db->min_pool_size = db->reserve_pool = -1;
	db->max_db_connections = -1;
	db->max_db_client_connections = -1;
	db->query_wait_timeout = db->server_lifetime = -1;
	db->idle_transaction_log_timeout = -1;
	db->pool_mode = POOL_MODE_INHERIT;
	return db;
}

/* Appends db; one of the same name is replaced where it was, as in
 * PgBouncer where the last definition wins. */
static int add_database(struct load_state *st, struct db_config *db)
{
	struct db_config **link = &st->cfg->databases;
	struct db_config *old;
	int rc;

	while (*link && strcmp((*link)->name, db->name) != 0)
		link = &(*link)->next;
	old = *link;
	db->next = old ? old->next : NULL;
	*link = db;
	if (!old)
		return 0;
	rc = warn(st, "database %s defined again, replacing the one at %s:%u",
	          db->name, old->file, old->line);
	db_free(old);
	return rc;
}

static int database_entry(struct load_state *st, const char *name,
                          const char *value)
{
	struct db_config *db;
	char *text;
	int rc;

	/* login.c takes both names for the admin console */
	if (strcmp(name, "pgbouncer") == 0 || strcmp(name, "sluice") == 0)
		return fail(st, "database name \"%s\" is reserved for the admin "
		            "console", name);
	db = db_new(name, st->entry);
	text = strdup(value);
	if (!db || !text) {
		db_free(db);
		free(text);
		return fail(st, "out of memory");
	}
	rc = parse_params(st, &db_param_list, name, db, text);
	free(text);
	if (rc < 0) {
		db_free(db);
		return -1;
	}
	return add_database(st, db);
}

static void user_free(struct user_config *user)
{
	if (user)
		free(user->name);
	free(user);
}

static int add_user(struct load_state *st, struct user_config *user)
{
	struct user_config **link = &st->cfg->users;
	struct user_config *old;

	while (*link && strcmp((*link)->name, user->name) != 0)
		link = &(*link)->next;
	old = *link;
	user->next = old ? old->next : NULL;
	*link = user;
	if (!old)
		return 0;
	user_free(old);
	return warn(st, "user %s defined again, replacing the earlier entry",
	            user->name);
}

static int user_entry(struct load_state *st, const char *name,
                      const char *value)
{
	struct user_config *user = calloc(1, sizeof(*user));
	char *text = strdup(value);
	int rc = -1;

	if (user)
		user->name = strdup(name);
	if (!user || !user->name || !text) {
		fail(st, "out of memory");
		goto fail;
	}
	user->pool_mode = POOL_MODE_INHERIT;
	user->max_user_connections = -1;
	user->pool_size = user->reserve_pool_size = -1;
	user->max_user_client_connections = -1;
	user->query_timeout = user->query_wait_timeout = -1;
	user->idle_transaction_timeout = user->transaction_timeout = -1;
	user->client_idle_timeout = user->idle_transaction_log_timeout = -1;
	rc = parse_params(st, &user_param_list, name, user, text);
	if (rc < 0)
		goto fail;
	free(text);
	return add_user(st, user);
fail:
	user_free(user);
	free(text);
	return rc;
}

/*
 * Loading
 */

static int section_header(struct load_state *st, const char *section)
{
	if (is_main_section(section)) {
		st->main_seen = true;
		return 0;
	}
	if (strcmp(section, "databases") == 0 || strcmp(section, "users") == 0)
		return 0;
	if (strcmp(section, "peers") == 0)
		return warn(st, "section [peers] is not supported by sluice yet, "
		            "its entries are ignored");
	return fail(st, "unknown section [%s]", section);
}

/* inifile.c's callback: one section header or one key = value. */
static int entry_cb(void *arg, const struct ini_entry *e, char *err,
                    size_t errlen)
{
	struct load_state *st = arg;

	st->entry = e;
	st->err = err;
	st->errlen = errlen;
	if (!e->key)
		return section_header(st, e->section);
	if (!e->section)
		return fail(st, "%s = ... before any [section]", e->key);
	if (is_main_section(e->section))
		return main_setting(st, e->key, e->value);
	if (strcmp(e->section, "databases") == 0)
		return database_entry(st, e->key, e->value);
	if (strcmp(e->section, "users") == 0)
		return user_entry(st, e->key, e->value);
	return 0; /* [peers] */
}

static struct config *config_new(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	for (size_t i = 0; cfg && i < ARRAY_LEN(settings); i++) {
		if (settings[i].default_value &&
		    parse_setting(cfg, &settings[i], settings[i].default_value)) {
			config_free(cfg);
			return NULL;
		}
	}
	return cfg;
}

/* After the ini: where it is, and the auth_file it names. */
static int finish(struct config *cfg, const char *path, char *err,
                  size_t errlen)
{
	cfg->config_file = realpath(path, NULL);
	if (!cfg->config_file)
		cfg->config_file = strdup(path);
	if (!cfg->config_file) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if (!cfg->auth_file)
		return 0;
	return userlist_load(cfg->auth_file, &cfg->auth_entries, err, errlen);
}

int config_load(const char *path, struct config **out, char *err,
                size_t errlen)
{
	struct load_state st = { .cfg = config_new() };
	int rc;

	*out = NULL;
	if (!st.cfg) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	st.warn_tail = &st.cfg->warnings;
	rc = inifile_read(path, entry_cb, &st, err, errlen);
	if (rc == 0 && !st.main_seen) {
		snprintf(err, errlen, "%s: no [sluice] (or [pgbouncer]) section",
		         path);
		rc = -1;
	}
	if (rc == 0)
		rc = finish(st.cfg, path, err, errlen);
	if (rc < 0) {
		config_free(st.cfg);
		return -1;
	}
	*out = st.cfg;
	return 0;
}

void config_free(struct config *cfg)
{
	struct db_config *db, *next_db;
	struct user_config *user, *next_user;
	struct config_warning *w, *next_w;

	if (!cfg)
		return;
	for (size_t i = 0; i < ARRAY_LEN(settings); i++)
		if (settings[i].type == SETTING_STR ||
		    settings[i].type == SETTING_STR_OPT)
			free(*(char **)((char *)cfg + settings[i].offset));
	for (db = cfg->databases; db; db = next_db) {
		next_db = db->next;
		db_free(db);
	}
	for (user = cfg->users; user; user = next_user) {
		next_user = user->next;
		user_free(user);
	}
	for (w = cfg->warnings; w; w = next_w) {
		next_w = w->next;
		free(w->text);
		free(w);
	}
	userlist_free(cfg->auth_entries);
	free(cfg->config_file);
	free(cfg);
}

/*
 * Lookups
 */

const struct db_config *config_find_db(const struct config *cfg,
                                       const char *name)
{
	const struct db_config *fallback = NULL;

	for (const struct db_config *db = cfg->databases; db; db = db->next) {
		if (strcmp(db->name, name) == 0)
			return db;
		if (strcmp(db->name, "*") == 0)
			fallback = db;
	}
	return fallback;
}

const struct user_config *config_find_user(const struct config *cfg,
                                           const char *name)
{
	for (const struct user_config *u = cfg->users; u; u = u->next)
		if (strcmp(u->name, name) == 0)
			return u;
	return NULL;
}

/* The last line for user wins, as in PgBouncer. O(n): auth_files are
 * read at login only. */
const char *config_find_secret(const struct config *cfg, const char *user)
{
	const char *secret = NULL;

	for (const struct auth_entry *e = cfg->auth_entries; e; e = e->next)
		if (strcmp(e->name, user) == 0)
			secret = e->secret;
	return secret;
}

bool config_list_contains(const char *list, const char *name)
{
	size_t len = strlen(name), n;
	const char *p = list;

	if (!p || len == 0)
		return false;
	while (*p) {
		p += strspn(p, "," SPACES);
		n = strcspn(p, "," SPACES);
		if (n == len && strncasecmp(p, name, n) == 0)
			return true;
		p += n;
	}
	return false;
}

const char *config_pool_mode_name(enum pool_mode mode)
{
	switch (mode) {
	case POOL_MODE_INHERIT:
		return "inherit";
	case POOL_MODE_SESSION:
		return "session";
	case POOL_MODE_TRANSACTION:
		return "transaction";
	case POOL_MODE_STATEMENT:
		return "statement";
	}
	return "unknown";
}

const char *config_auth_type_name(enum auth_type type)
{
	switch (type) {
	case AUTH_TRUST:
		return "trust";
	case AUTH_ANY:
		return "any";
	case AUTH_PLAIN:
		return "plain";
	case AUTH_MD5:
		return "md5";
	case AUTH_SCRAM:
		return "scram-sha-256";
	}
	return "unknown";
}

void config_foreach_setting(const struct config *cfg,
                            void (*fn)(void *arg, const char *name,
                                       const char *value,
                                       const char *default_value,
                                       bool reloadable),
                            void *arg)
{
	const struct setting *s;
	char buf[64];

	for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
		s = &settings[i];
		fn(arg, s->name, format_setting(cfg, s, buf, sizeof(buf)),
		   s->default_value ? s->default_value : "", !s->at_start_only);
	}
}

/*
 * Run-time changes
 */

static const struct setting *find_setting(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(settings); i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

/* Copies one setting's value from src into dst (strings duplicated). */
static int copy_setting(struct config *dst, const struct config *src,
                        const struct setting *s)
{
	char buf[64];

	return parse_setting(dst, s, format_setting(src, s, buf, sizeof(buf)));
}

int config_keep_start_only(struct config *next, const struct config *running,
                           void (*warn_fn)(void *arg, const char *name),
                           void *arg)
{
	char a[64], b[64];

	for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
		const struct setting *s = &settings[i];

		if (!s->at_start_only ||
		    strcmp(format_setting(next, s, a, sizeof(a)),
		           format_setting(running, s, b, sizeof(b))) == 0)
			continue;
		warn_fn(arg, s->name);
		if (copy_setting(next, running, s) < 0)
			return -1;
	}
	return 0;
}

int config_set(struct config *cfg, const char *key, const char *value,
               char *err, size_t errlen)
{
	const struct setting *s = find_setting(key);
	int rc;

	if (!s) {
		snprintf(err, errlen, "unknown setting: %s", key);
		return -1;
	}
	if (s->at_start_only) {
		snprintf(err, errlen, "%s cannot be changed at run time", key);
		return -1;
	}
	rc = parse_setting(cfg, s, value);
	if (rc < 0)
		snprintf(err, errlen, rc == -ENOMEM ? "out of memory"
		                                    : "invalid value for %s: %s",
		         key, value);
	return rc < 0 ? -1 : 0;
}
