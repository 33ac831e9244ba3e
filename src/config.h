/*
 * config.h - the settings of one sluice.ini (pgbouncer.ini) and its auth_file.
 *
 * A struct config is built whole by config_load() and never modified after;
 * a reload builds a new one and swaps it in only if all of it is valid.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pool_mode {
	POOL_MODE_INHERIT = -1, /* per-db/per-user: not set, use the outer one */
	POOL_MODE_SESSION = 0,
	POOL_MODE_TRANSACTION,
	POOL_MODE_STATEMENT,
};

enum auth_type {
	AUTH_TRUST,  /* no password; user must be in auth_file */
	AUTH_ANY,    /* no password; user name ignored for server login */
	AUTH_PLAIN,  /* cleartext password request */
	AUTH_MD5,    /* md5 salted request, SCRAM if the secret is a verifier */
	AUTH_SCRAM,  /* scram-sha-256 */
};

/* One [databases] entry. Integers are -1 when not given in the entry. */
struct db_config {
	char *name;             /* key in [databases]; "*" is the fallback */
	char *host;             /* NULL: unix socket in /var/run/postgresql;
	                           a leading '/' names a socket directory */
	int port;               /* default 5432 */
	char *dbname;           /* NULL: same as name (or client's, for "*") */
	char *user;             /* forced server login user, NULL: client's */
	char *password;         /* for user; NULL: from auth_file */
	int pool_size;          /* -1: default_pool_size */
	int min_pool_size;      /* -1: min_pool_size */
	int reserve_pool;       /* -1: reserve_pool_size */
	int max_db_connections; /* -1: max_db_connections */
	enum pool_mode pool_mode;
	char *connect_query;    /* run once on each new server connection */
	char *application_name; /* sent in the server startup packet */
	char *client_encoding;  /* startup values for the server, NULL: none */
	char *datestyle;
	char *timezone;
	/* per-database overrides; -1 (or CONFIG_UNSET) when not given */
	int64_t query_wait_timeout;   /* ms */
	int64_t server_lifetime;      /* ms */
	int64_t idle_transaction_log_timeout; /* ms */
	int max_db_client_connections;
	unsigned line;          /* where it was defined, for messages */
	char *file;
	struct db_config *next;
};

/* One [users] entry. */
struct user_config {
	char *name;
	enum pool_mode pool_mode;  /* POOL_MODE_INHERIT when not given */
	int max_user_connections;  /* -1 when not given */
	/* per-user overrides, PgBouncer 1.24+; -1 when not given */
	int pool_size;
	int reserve_pool_size;
	int max_user_client_connections;
	int64_t query_timeout;            /* ms */
	int64_t query_wait_timeout;       /* ms */
	int64_t idle_transaction_timeout; /* ms */
	int64_t transaction_timeout;      /* ms */
	int64_t client_idle_timeout;      /* ms */
	int64_t idle_transaction_log_timeout; /* ms */
	struct user_config *next;
};

/* One auth_file line: "user" "secret". */
struct auth_entry {
	char *name;
	char *secret;             /* plain text, "md5<32 hex>" or "SCRAM-SHA-256$..." */
	struct auth_entry *next;
};

/* A warning found while loading (a known but unimplemented key, ...). */
struct config_warning {
	char *text;               /* "file:line: message" */
	struct config_warning *next;
};

/*
 * Every setting, named as its ini key. Times are in milliseconds (the ini
 * gives seconds, fractions allowed); 0 disables a timeout.
 */
struct config {
	char *config_file;        /* absolute path of the main ini file */

	/* listening */
	char *listen_addr;        /* comma separated, "*" = all; NULL: none */
	int listen_port;          /* 6432 */
	int listen_backlog;       /* 128 */
	char *unix_socket_dir;    /* "/tmp"; empty string: no unix socket */
	int unix_socket_mode;     /* 0777 */

	/* authentication */
	enum auth_type auth_type; /* md5 */
	char *auth_file;          /* NULL: none */
	char *admin_users;        /* comma separated, NULL: none */
	char *stats_users;

	/* pooling */
	enum pool_mode pool_mode; /* session */
	int default_pool_size;    /* 20 */
	int min_pool_size;        /* 0 */
	int reserve_pool_size;    /* 0 */
	uint64_t reserve_pool_timeout; /* ms, 5000 */
	int max_client_conn;      /* 100 */
	int max_db_connections;   /* 0 = unlimited */
	int max_user_connections; /* 0 = unlimited */
	char *server_reset_query; /* "DISCARD ALL"; empty: none */
	bool server_reset_query_always; /* also in transaction mode */
	char *server_check_query; /* "select 1"; empty: no check */
	uint64_t server_check_delay; /* ms, 30000 */
	char *ignore_startup_parameters; /* comma separated */
	char *track_extra_parameters;    /* comma separated, "IntervalStyle" */
	bool application_name_add_host;

	/* limits and buffers */
	int max_packet_size;      /* 2147483647 */
	int pkt_buf;              /* 4096 */

	/* tcp */
	bool tcp_keepalive;       /* true */
	int tcp_keepcnt;          /* 0 = OS default */
	int tcp_keepidle;         /* seconds, 0 = OS default */
	int tcp_keepintvl;        /* seconds, 0 = OS default */
	int tcp_user_timeout;     /* ms, 0 = OS default */

	/* timeouts (ms, 0 = off); parsed now, enforced by later issues */
	uint64_t server_lifetime;          /* 3600000 */
	uint64_t server_idle_timeout;      /* 600000 */
	uint64_t server_connect_timeout;   /* 15000 */
	uint64_t server_login_retry;       /* 15000 */
	uint64_t query_timeout;            /* 0 */
	uint64_t query_wait_timeout;       /* 120000 */
	uint64_t cancel_wait_timeout;      /* 10000 */
	uint64_t client_idle_timeout;      /* 0 */
	uint64_t client_login_timeout;     /* 60000 */
	uint64_t idle_transaction_timeout; /* 0 */
	uint64_t transaction_timeout;      /* 0 */
	uint64_t autodb_idle_timeout;      /* 3600000 */
	uint64_t query_wait_notify;        /* 5000 */
	int max_db_client_connections;     /* 0 = unlimited */
	int max_user_client_connections;   /* 0 = unlimited */
	int max_prepared_statements;       /* per server, 200; 0 = off */
	int max_client_prepared_statements; /* names per client, 10000 */

	/* leak detector */
	uint64_t idle_transaction_log_timeout; /* ms, 0 = off */
	int idle_transaction_log_statement_length; /* bytes, 256 */

	/* logging */
	char *logfile;            /* NULL: stderr only */
	char *pidfile;            /* NULL: none */
	bool syslog;
	char *syslog_ident;       /* "pgbouncer" in PgBouncer; "sluice" here */
	char *syslog_facility;    /* "daemon" */
	bool log_connections;     /* true */
	bool log_disconnections;  /* true */
	bool log_pooler_errors;   /* true */
	bool log_stats;           /* true */
	uint64_t stats_period;    /* ms, 60000 */
	int verbose;              /* 0 */

	struct db_config *databases;     /* in file order */
	struct user_config *users;
	struct auth_entry *auth_entries; /* from auth_file */
	struct config_warning *warnings; /* in file order */
};

/*
 * Reads path (and its %includes, and auth_file) into a new config.
 * Returns 0 and sets *out (caller frees with config_free), or -1 with
 * "file:line: message" (or "file: message") written into err.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* Frees cfg and everything it owns; NULL is fine. */
void config_free(struct config *cfg);

/* The [databases] entry for name, falling back to "*"; NULL if neither. */
const struct db_config *config_find_db(const struct config *cfg, const char *name);

/* The [users] entry for name, or NULL. */
const struct user_config *config_find_user(const struct config *cfg, const char *name);

/* The auth_file secret for user, or NULL. Points into cfg. */
const char *config_find_secret(const struct config *cfg, const char *user);

/* True if name is in the comma separated list (case insensitive, spaces
 * around items ignored); used for admin_users, ignore_startup_parameters... */
bool config_list_contains(const char *list, const char *name);

/* The same with names compared exactly, as user names are (admin_users,
 * stats_users: PgBouncer and the auth_file are case sensitive). */
bool config_list_contains_exact(const char *list, const char *name);

/*
 * For a reload: every setting that cannot change at run time and differs
 * between next and running is reported to warn_fn and set back to the
 * running value in next. 0, or -1 on allocation failure.
 */
int config_keep_start_only(struct config *next, const struct config *running,
                           void (*warn_fn)(void *arg, const char *name),
                           void *arg);

/* SET key = value on the console: the file's validation; settings that
 * cannot change at run time are refused. 0, or -1 with a message in err. */
int config_set(struct config *cfg, const char *key, const char *value,
               char *err, size_t errlen);

/* ini-style names of the enums, for messages and SHOW CONFIG. */
const char *config_pool_mode_name(enum pool_mode mode);
const char *config_auth_type_name(enum auth_type type);

/*
 * Calls fn once per main-section setting, in alphabetical order (as
 * PgBouncer's SHOW CONFIG), for the admin console. value and default_value
 * are written as the ini would write them ("" when not set) and are valid
 * only during the call; reloadable is false for settings that take effect
 * at start only (listen_*, unix_socket_*, pidfile, pkt_buf...).
 */
void config_foreach_setting(const struct config *cfg,
                            void (*fn)(void *arg, const char *name,
                                       const char *value,
                                       const char *default_value,
                                       bool reloadable),
                            void *arg);

#endif
