/*
 * config.c - sluice.ini (pgbouncer.ini) and its auth_file -> struct config.
 *
 * Owns the meaning of the file: the settings table (one row per key of the
 * main section: type, field, default), which drives parsing, defaults and
 * SHOW CONFIG; which PgBouncer keys are only warned about; loading and
 * lookups. The [databases] and [users] entries are config_entries.c's, the
 * text of one value config_values.c's; how the file is read (comments,
 * %include, long lines, inih) is inifile.c's; the auth_file userlist.c's.
 */
#include "config.h"
#include "config_load.h"
#include "inifile.h"
#include "userlist.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	{ SETTING(max_client_prepared_statements, SETTING_INT, "10000"),
	  .min = 1, .max = INT_MAX },
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

/*
 * Messages
 */

int load_fail(struct load_state *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, st->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int load_warn(struct load_state *st, const char *fmt, ...)
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
		return load_fail(st, "out of memory");
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
		return cfg_parse_int(value, s->min, s->max, field);
	case SETTING_OCTAL:
		return cfg_parse_octal(value, field);
	case SETTING_BOOL:
		return cfg_parse_bool(value, field);
	case SETTING_STR:
	case SETTING_STR_OPT:
		return set_string(s, value, field);
	case SETTING_TIME_MS:
		return cfg_parse_time_ms(value, field);
	case SETTING_POOL_MODE:
		return cfg_parse_pool_mode(value, field);
	case SETTING_AUTH_TYPE:
		return cfg_parse_auth_type(value, field);
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

static const struct setting *find_setting(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(settings); i++)
		if (strcmp(settings[i].name, name) == 0)
			return &settings[i];
	return NULL;
}

static int main_setting(struct load_state *st, const char *key,
                        const char *value)
{
	const struct setting *s = find_setting(key);
	int rc;

	if (!s && in_list(key, pgbouncer_only_settings,
	                  ARRAY_LEN(pgbouncer_only_settings)))
		return load_warn(st, "setting %s is not supported by sluice yet, "
		                 "ignored", key);
	if (!s)
		return load_fail(st, "unknown setting: %s", key);
	rc = parse_setting(st->cfg, s, value);
	if (rc == -ENOTSUP)
		return load_fail(st, "%s %s is not supported by sluice yet", key,
		                 value);
	if (rc == -ENOMEM)
		return load_fail(st, "out of memory");
	if (rc < 0)
		return load_fail(st, "invalid value for %s: %s", key, value);
	return 0;
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
		return load_warn(st, "section [peers] is not supported by sluice yet, "
		                 "its entries are ignored");
	return load_fail(st, "unknown section [%s]", section);
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
		return load_fail(st, "%s = ... before any [section]", e->key);
	if (is_main_section(e->section))
		return main_setting(st, e->key, e->value);
	if (strcmp(e->section, "databases") == 0)
		return config_database_entry(st, e->key, e->value);
	if (strcmp(e->section, "users") == 0)
		return config_user_entry(st, e->key, e->value);
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
		config_db_free(db);
	}
	for (user = cfg->users; user; user = next_user) {
		next_user = user->next;
		config_user_free(user);
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

static bool list_contains(const char *list, const char *name, bool exact)
{
	size_t len = strlen(name), n;
	const char *p = list;

	if (!p || len == 0)
		return false;
	while (*p) {
		p += strspn(p, "," CONFIG_SPACES);
		n = strcspn(p, "," CONFIG_SPACES);
		if (n == len && (exact ? strncmp(p, name, n)
		                       : strncasecmp(p, name, n)) == 0)
			return true;
		p += n;
	}
	return false;
}

bool config_list_contains(const char *list, const char *name)
{
	return list_contains(list, name, false);
}

bool config_list_contains_exact(const char *list, const char *name)
{
	return list_contains(list, name, true);
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
