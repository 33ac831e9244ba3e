/*
 * test_config.c - sluice.ini read as PgBouncer reads it.
 *
 * Each test runs in its own process, in a fresh temporary directory where
 * it writes the files it loads ("t.ini"), so messages carry short paths.
 * Fixtures for %include and the samples live in TEST_DATA_DIR.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "userlist.h"

static char tmpdir[] = "/tmp/sluice-test-config-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
	cr_assert_eq(chdir(tmpdir), 0);
}

static int remove_cb(const char *path, const struct stat *st, int flag,
                     struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void teardown(void)
{
	nftw(tmpdir, remove_cb, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(config, .init = setup, .fini = teardown);

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	cr_assert_not_null(fp, "cannot write %s", path);
	fputs(text, fp);
	fclose(fp);
}

/* Loads path, which must be valid. */
static struct config *load_path(const char *path)
{
	struct config *cfg = NULL;
	char err[1024] = "";

	cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), 0,
	             "unexpected error: %s", err);
	cr_assert_not_null(cfg);
	return cfg;
}

/* Writes text to t.ini and loads it; it must be valid. */
static struct config *load_text(const char *text)
{
	write_file("t.ini", text);
	return load_path("t.ini");
}

/* Loading path must fail with exactly message. */
static void expect_path_error(const char *path, const char *message)
{
	struct config *cfg = NULL;
	char err[1024] = "";

	cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), -1,
	             "%s loaded, expected: %s", path, message);
	cr_assert_null(cfg);
	cr_assert_str_eq(err, message);
}

static void expect_error(const char *text, const char *message)
{
	write_file("t.ini", text);
	expect_path_error("t.ini", message);
}

static const char *warning(const struct config *cfg, int n)
{
	const struct config_warning *w = cfg->warnings;

	while (w && n-- > 0)
		w = w->next;
	return w ? w->text : NULL;
}

/*
 * Lexical rules
 */

Test(config, comments_only_at_line_start)
{
	struct config *cfg = load_text(
		"; a comment\n"
		"# another\n"
		"[sluice]\n"
		"   ; indented comment\n"
		"\t# tab, then comment\n"
		";listen_port = 1\n"
		"#listen_port = 2\n"
		"listen_port = 7000\n");

	cr_assert_eq(cfg->listen_port, 7000);
	cr_assert_null(cfg->warnings);
	config_free(cfg);
}

Test(config, semicolon_and_hash_inside_value_are_kept)
{
	struct config *cfg = load_text(
		"[sluice]\n"
		"server_reset_query = DISCARD ALL ; SELECT 1 # not a comment\n"
		"server_check_query = ;\n"
		"admin_users = alice ;bob\n");

	cr_assert_str_eq(cfg->server_reset_query,
	                 "DISCARD ALL ; SELECT 1 # not a comment");
	cr_assert_str_eq(cfg->server_check_query, ";");
	cr_assert_str_eq(cfg->admin_users, "alice ;bob");
	config_free(cfg);
}

Test(config, whitespace_before_key_and_around_equals_ignored)
{
	struct config *cfg = load_text(
		"  [sluice]\n"
		"    listen_port=7000\n"
		"\t\tlisten_backlog   =\t  64\n");

	cr_assert_eq(cfg->listen_port, 7000);
	cr_assert_eq(cfg->listen_backlog, 64);
	config_free(cfg);
}

Test(config, trailing_whitespace_trimmed)
{
	struct config *cfg = load_text(
		"[sluice]\r\n"
		"listen_addr = 127.0.0.1 \t \r\n"
		"server_reset_query = DISCARD ALL   \n"
		"logfile =   \n");

	cr_assert_str_eq(cfg->listen_addr, "127.0.0.1");
	cr_assert_str_eq(cfg->server_reset_query, "DISCARD ALL");
	cr_assert_null(cfg->logfile);
	config_free(cfg);
}

Test(config, indented_line_is_its_own_key_not_a_continuation)
{
	struct config *cfg = load_text(
		"[sluice]\n"
		"server_reset_query = DISCARD ALL\n"
		"    listen_port = 7000\n"
		"        pool_mode = transaction\n");

	cr_assert_str_eq(cfg->server_reset_query, "DISCARD ALL");
	cr_assert_eq(cfg->listen_port, 7000);
	cr_assert_eq(cfg->pool_mode, POOL_MODE_TRANSACTION);
	config_free(cfg);
}

Test(config, empty_value_clears_or_empties)
{
	struct config *cfg = load_text(
		"[sluice]\n"
		"server_reset_query =\n"
		"unix_socket_dir =\n"
		"listen_addr =\n");

	cr_assert_str_eq(cfg->server_reset_query, "");
	cr_assert_str_eq(cfg->unix_socket_dir, "");
	cr_assert_null(cfg->listen_addr);
	config_free(cfg);
}

Test(config, section_header_may_carry_a_comment)
{
	struct config *cfg = load_text(
		"[sluice] ; main\n"
		"listen_port = 7000\n"
		"[databases]   # the pools\n"
		"shop = host=db\n");

	cr_assert_eq(cfg->listen_port, 7000);
	cr_assert_not_null(config_find_db(cfg, "shop"));
	config_free(cfg);
}

/* A 4,000-byte [databases] line, whose value has spaces, ; # and % at
 * every offset, so each piece boundary of inih's 200-byte lines falls on
 * one of them somewhere. */
Test(config, databases_line_of_4000_bytes_parsed_whole)
{
	static const char head[] = "big = host=127.0.0.1 connect_query='SELECT ''";
	static const char tail[] = "''' application_name=end";
	static const char pattern[] = "a b;c#d%20e  ;;##f%g";
	char line[4001], text[4100], expected[4000];
	size_t fill = 4000 - strlen(head) - strlen(tail);
	struct config *cfg;
	const struct db_config *db;

	strcpy(line, head);
	for (size_t i = 0; i < fill; i++)
		line[strlen(head) + i] = pattern[i % (sizeof(pattern) - 1)];
	strcpy(line + strlen(head) + fill, tail);
	cr_assert_eq(strlen(line), 4000);
	snprintf(text, sizeof(text), "[sluice]\n[databases]\n%s\n", line);
	snprintf(expected, sizeof(expected), "SELECT '%.*s'", (int)fill,
	         line + strlen(head));

	cfg = load_text(text);
	db = config_find_db(cfg, "big");
	cr_assert_not_null(db);
	cr_assert_str_eq(db->connect_query, expected);
	cr_assert_str_eq(db->application_name, "end");
	cr_assert_str_eq(db->host, "127.0.0.1");
	cr_assert_eq(db->line, 3);
	config_free(cfg);
}

Test(config, long_main_setting_value_parsed_whole)
{
	char text[3200], query[3001];
	struct config *cfg;

	for (size_t i = 0; i < 3000; i++)
		query[i] = "SELECT 1 ; "[i % 11];
	query[2999] = 'x';
	query[3000] = '\0';
	snprintf(text, sizeof(text), "[sluice]\nserver_reset_query = %s\n"
	         "listen_port = 7000\n", query);
	cfg = load_text(text);
	cr_assert_str_eq(cfg->server_reset_query, query);
	cr_assert_eq(cfg->listen_port, 7000);
	config_free(cfg);
}

Test(config, later_value_of_a_key_wins)
{
	struct config *cfg = load_text(
		"[sluice]\nlisten_port = 7000\nlisten_port = 7001\n");

	cr_assert_eq(cfg->listen_port, 7001);
	config_free(cfg);
}

/*
 * %include
 */

Test(config, include_nested_and_relative_to_current_directory)
{
	struct config *cfg;
	const struct db_config *db;

	cr_assert_eq(chdir(TEST_DATA_DIR), 0);
	cfg = load_path("include/main.ini");
	cr_assert_eq(cfg->listen_port, 7001);
	cr_assert_eq(cfg->pool_mode, POOL_MODE_TRANSACTION);
	cr_assert_eq(cfg->default_pool_size, 7);
	cr_assert_eq(cfg->auth_type, AUTH_TRUST);
	db = config_find_db(cfg, "shop");
	cr_assert_not_null(db);
	cr_assert_str_eq(db->dbname, "shop_prod");
	cr_assert_str_eq(db->file, "include/conf.d/dbs.ini");
	cr_assert_eq(db->line, 1);
	db = config_find_db(cfg, "after");
	cr_assert_not_null(db, "reading goes on after an %%include");
	cr_assert_str_eq(db->file, "include/main.ini");
	cr_assert_eq(db->line, 10);
	config_free(cfg);
}

Test(config, error_in_included_file_names_that_file)
{
	cr_assert_eq(chdir(TEST_DATA_DIR), 0);
	expect_path_error("include/bad.ini",
	                  "include/conf.d/typo.ini:2: unknown setting: "
	                  "listen_prot");
}

Test(config, include_depth_limit)
{
	cr_assert_eq(chdir(TEST_DATA_DIR), 0);
	expect_path_error("include/loop.ini",
	                  "include/loop.ini:2: %include nested too deeply "
	                  "(max 10 levels)");
}

/* Ten nested levels are fine, the eleventh is not. */
Test(config, include_ten_levels_deep)
{
	char name[32], text[64];
	struct config *cfg;

	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "f%d.ini", i);
		snprintf(text, sizeof(text), "%s%%include f%d.ini\n",
		         i == 0 ? "[sluice]\n" : "", i + 1);
		write_file(name, text);
	}
	write_file("f10.ini", "listen_port = 7010\n");
	cfg = load_path("f0.ini");
	cr_assert_eq(cfg->listen_port, 7010);
	config_free(cfg);

	write_file("f10.ini", "%include f11.ini\n");
	write_file("f11.ini", "listen_port = 7011\n");
	expect_path_error("f0.ini", "f10.ini:1: %include nested too deeply "
	                  "(max 10 levels)");
}

Test(config, include_missing_file)
{
	expect_error("[sluice]\n%include nope.ini\n",
	             "t.ini:2: cannot open nope.ini: No such file or directory");
}

Test(config, include_a_directory)
{
	cr_assert_eq(mkdir("dir.d", 0700), 0);
	expect_error("[sluice]\n\n%include dir.d\n",
	             "t.ini:3: cannot open dir.d: Is a directory");
}

Test(config, include_without_file_name)
{
	expect_error("[sluice]\n%include   \n",
	             "t.ini:2: %include without a file name");
}

/*
 * Sections
 */

Test(config, pgbouncer_section_is_an_alias)
{
	struct config *cfg = load_text("[pgbouncer]\nlisten_port = 7000\n");

	cr_assert_eq(cfg->listen_port, 7000);
	config_free(cfg);
}

Test(config, peers_section_warned_and_ignored)
{
	struct config *cfg = load_text(
		"[sluice]\n"
		"[peers]\n"
		"1 = host=/tmp/pgbouncer1\n"
		"[databases]\n"
		"shop = host=db\n");

	cr_assert_str_eq(warning(cfg, 0), "t.ini:2: section [peers] is not "
	                 "supported by sluice yet, its entries are ignored");
	cr_assert_null(warning(cfg, 1));
	cr_assert_not_null(config_find_db(cfg, "shop"));
	config_free(cfg);
}

Test(config, real_pgbouncer_ini_loads_with_warnings)
{
	struct config *cfg;
	const struct db_config *db;

	cr_assert_eq(chdir(TEST_DATA_DIR), 0);
	cfg = load_path("pgbouncer.ini");
	cr_assert_str_eq(warning(cfg, 0), "pgbouncer.ini:7: database *: "
	                 "parameter auth_user is not supported by sluice yet, "
	                 "ignored");
	cr_assert_str_eq(warning(cfg, 1), "pgbouncer.ini:26: setting "
	                 "client_tls_sslmode is not supported by sluice yet, "
	                 "ignored");
	cr_assert_str_eq(warning(cfg, 2), "pgbouncer.ini:27: setting "
	                 "server_tls_sslmode is not supported by sluice yet, "
	                 "ignored");
	/* max_prepared_statements (line 28) is implemented: no warning. */
	cr_assert_null(warning(cfg, 3));
	cr_assert_eq(cfg->max_prepared_statements, 100);
	cr_assert_eq(cfg->auth_type, AUTH_SCRAM);
	cr_assert_str_eq(cfg->listen_addr, "*");
	cr_assert_eq(cfg->max_client_conn, 500);
	cr_assert(config_list_contains(cfg->stats_users, "monitor"));
	db = config_find_db(cfg, "reports");
	cr_assert_str_eq(db->password, "s3cr'et");
	cr_assert_str_eq(db->connect_query,
	                 "SET search_path = 'reports', public");
	cr_assert_str_eq(config_find_secret(cfg, "alice"), "second line wins");
	config_free(cfg);
}

/* etc/sluice.ini must stay valid, run from the source tree as it says. */
Test(config, sample_config_loads)
{
	struct config *cfg;

	cr_assert_eq(chdir(TEST_DATA_DIR "/../../.."), 0);
	cfg = load_path("etc/sluice.ini");
	cr_assert_null(cfg->warnings, "%s", warning(cfg, 0));
	cr_assert_str_eq(config_find_db(cfg, "anything")->host, "127.0.0.1");
	cr_assert_eq(cfg->listen_port, 6432);
	cr_assert_str_eq(config_find_secret(cfg, "postgres"), "postgres");
	config_free(cfg);
}

/* The way the sample suggests to override it: include, then set again. */
Test(config, sample_config_overridden_by_an_including_file)
{
	char path[256];
	struct config *cfg;

	snprintf(path, sizeof(path), "%s/t.ini", tmpdir);
	write_file(path, "%include etc/sluice.ini\n"
	           "[databases]\n* = host=127.0.0.1 port=55432\n"
	           "[sluice]\nlisten_port = 6433\n");
	cr_assert_eq(chdir(TEST_DATA_DIR "/../../.."), 0);
	cfg = load_path(path);
	cr_assert_eq(config_find_db(cfg, "postgres")->port, 55432);
	cr_assert_eq(cfg->listen_port, 6433);
	cr_assert_eq(cfg->auth_type, AUTH_SCRAM);
	config_free(cfg);
}

/*
 * Bad files: each gives its file:line and names the problem
 */

Test(config, missing_main_file)
{
	expect_path_error("missing.ini",
	                  "missing.ini: cannot open: No such file or directory");
}

Test(config, invalid_value_fixture_names_file_and_line)
{
	expect_path_error(TEST_DATA_DIR "/bad_port.ini", TEST_DATA_DIR
	                  "/bad_port.ini:12: invalid value for listen_port: abc");
}

Test(config, unknown_section)
{
	expect_error("[sluice]\n\n[database]\nshop = host=db\n",
	             "t.ini:3: unknown section [database]");
}

Test(config, unknown_section_even_if_empty)
{
	expect_error("[sluice]\n[extra]\n", "t.ini:2: unknown section [extra]");
}

Test(config, unknown_setting)
{
	expect_error("[sluice]\nlisten_port = 6432\nlisten_prot = 6433\n",
	             "t.ini:3: unknown setting: listen_prot");
}

Test(config, line_without_equals)
{
	expect_error("[sluice]\nlisten_port 6432\n",
	             "t.ini:2: syntax error: expected key = value");
}

Test(config, key_with_other_characters)
{
	expect_error("[sluice]\n[databases]\nmy db = host=x\n",
	             "t.ini:3: syntax error: expected key = value");
}

Test(config, key_length_limit)
{
	char text[512], key[130];
	struct config *cfg;

	memset(key, 'k', 128);
	key[128] = '\0';
	snprintf(text, sizeof(text), "[sluice]\n[databases]\n%s = host=x\n", key);
	cfg = load_text(text);
	cr_assert_not_null(config_find_db(cfg, key));
	config_free(cfg);

	snprintf(text, sizeof(text), "[sluice]\n[databases]\n%sk = host=x\n",
	         key);
	expect_error(text, "t.ini:3: key longer than 128 bytes");
}

Test(config, section_without_closing_bracket)
{
	expect_error("[sluice\nlisten_port = 1\n",
	             "t.ini:1: syntax error: missing ] after section name");
}

Test(config, text_after_section_header)
{
	expect_error("[sluice] listen_port = 1\n",
	             "t.ini:1: syntax error: text after [sluice]");
}

Test(config, setting_before_any_section)
{
	expect_error("\nlisten_port = 1\n[sluice]\n",
	             "t.ini:2: listen_port = ... before any [section]");
}

Test(config, no_main_section)
{
	expect_error("[databases]\nshop = host=db\n",
	             "t.ini: no [sluice] (or [pgbouncer]) section");
}

Test(config, invalid_values)
{
	static const char *const cases[][2] = {
		{ "listen_port = 70000", "invalid value for listen_port: 70000" },
		{ "listen_port = -1", "invalid value for listen_port: -1" },
		{ "listen_port = 0x10", "invalid value for listen_port: 0x10" },
		{ "max_client_conn = 0", "invalid value for max_client_conn: 0" },
		{ "tcp_keepalive = maybe", "invalid value for tcp_keepalive: maybe" },
		{ "query_timeout = 1s", "invalid value for query_timeout: 1s" },
		{ "query_timeout = -1", "invalid value for query_timeout: -1" },
		{ "query_timeout = 1e3", "invalid value for query_timeout: 1e3" },
		{ "query_timeout = .", "invalid value for query_timeout: ." },
		{ "pool_mode = sessions", "invalid value for pool_mode: sessions" },
		{ "auth_type = crypt", "invalid value for auth_type: crypt" },
		{ "unix_socket_mode = 0789",
		  "invalid value for unix_socket_mode: 0789" },
		{ "listen_addr = 127.0.0.1,",
		  "invalid value for listen_addr: 127.0.0.1," },
		{ "listen_addr = 127.0.0.1 ::1",
		  "invalid value for listen_addr: 127.0.0.1 ::1" },
		{ "syslog_facility = local9",
		  "invalid value for syslog_facility: local9" },
		{ "pkt_buf = 100", "invalid value for pkt_buf: 100" },
	};
	char text[256], message[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[sluice]\n%s\n", cases[i][0]);
		snprintf(message, sizeof(message), "t.ini:2: %s", cases[i][1]);
		expect_error(text, message);
	}
}

Test(config, auth_types_of_pgbouncer_not_supported_yet)
{
	static const char *const types[] = { "hba", "cert", "pam", "ldap" };
	char text[64], message[128];

	for (size_t i = 0; i < 4; i++) {
		snprintf(text, sizeof(text), "[sluice]\nauth_type = %s\n",
		         types[i]);
		snprintf(message, sizeof(message), "t.ini:2: auth_type %s is not "
		         "supported by sluice yet", types[i]);
		expect_error(text, message);
	}
}

Test(config, database_unknown_parameter)
{
	expect_error("[sluice]\n[databases]\nshop = host=db sslmode=require\n",
	             "t.ini:3: database shop: unknown parameter: sslmode");
}

Test(config, database_bad_connection_strings)
{
	static const char *const cases[][2] = {
		{ "host=db port=abc", "invalid value for port: abc" },
		{ "port=0", "invalid value for port: 0" },
		{ "pool_size=-1", "invalid value for pool_size: -1" },
		{ "pool_mode=tx", "invalid value for pool_mode: tx" },
		{ "connect_query='SELECT 1", "syntax error in connection string" },
		{ "host=", "syntax error in connection string" },
		{ "host=''", "syntax error in connection string" },
		{ "host", "syntax error in connection string" },
		{ "=db", "syntax error in connection string" },
		{ "application_name='a'b", "syntax error in connection string" },
	};
	char text[256], message[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "[sluice]\n[databases]\nshop = %s\n",
		         cases[i][0]);
		snprintf(message, sizeof(message), "t.ini:3: database shop: %s",
		         cases[i][1]);
		expect_error(text, message);
	}
}

Test(config, reserved_database_name)
{
	expect_error("[sluice]\n[databases]\npgbouncer = host=db\n",
	             "t.ini:3: database name \"pgbouncer\" is reserved for the "
	             "admin console");
	expect_error("[sluice]\n[databases]\nsluice = host=db\n",
	             "t.ini:3: database name \"sluice\" is reserved for the "
	             "admin console");
}

Test(config, users_bad_entries)
{
	expect_error("[sluice]\n[users]\nbob = pool_size=5 pool=x\n",
	             "t.ini:3: user bob: unknown parameter: pool");
	expect_error("[sluice]\n[users]\nbob = max_user_connections=x\n",
	             "t.ini:3: user bob: invalid value for max_user_connections: x");
	expect_error("[sluice]\n[users]\nbob = pool_mode\n",
	             "t.ini:3: user bob: syntax error in settings");
}

Test(config, missing_auth_file)
{
	expect_error("[sluice]\nauth_file = nope.txt\n",
	             "nope.txt: cannot open: No such file or directory");
}

Test(config, bad_auth_file)
{
	write_file("users.txt", "; users\n\"alice\" \"x\"\nbob \"y\"\n");
	expect_error("[sluice]\nauth_file = users.txt\n",
	             "users.txt:3: expected a double-quoted user name");
}

/*
 * Warnings
 */

Test(config, pgbouncer_settings_not_implemented_warn_with_file_line)
{
	struct config *cfg = load_text(
		"[sluice]\n"
		"listen_port = 7000\n"
		"client_tls_sslmode = require\n"
		"auth_query = SELECT 1\n"
		"so_reuseport = 1\n");

	cr_assert_str_eq(warning(cfg, 0), "t.ini:3: setting client_tls_sslmode "
	                 "is not supported by sluice yet, ignored");
	cr_assert_str_eq(warning(cfg, 1), "t.ini:4: setting auth_query is not "
	                 "supported by sluice yet, ignored");
	cr_assert_str_eq(warning(cfg, 2), "t.ini:5: setting so_reuseport is "
	                 "not supported by sluice yet, ignored");
	cr_assert_null(warning(cfg, 3));
	cr_assert_eq(cfg->listen_port, 7000);
	config_free(cfg);
}

Test(config, redefined_database_replaced_with_warning)
{
	struct config *cfg = load_text(
		"[sluice]\n[databases]\n"
		"shop = host=old\n"
		"other = host=o\n"
		"shop = host=new\n");

	cr_assert_str_eq(warning(cfg, 0), "t.ini:5: database shop defined "
	                 "again, replacing the one at t.ini:3");
	cr_assert_str_eq(config_find_db(cfg, "shop")->host, "new");
	cr_assert_str_eq(cfg->databases->name, "shop");
	cr_assert_str_eq(cfg->databases->next->name, "other");
	cr_assert_null(cfg->databases->next->next);
	config_free(cfg);
}

/*
 * [databases] and [users]
 */

Test(config, connection_string_all_fields_quotes_and_escapes)
{
	struct config *cfg = load_text(
		"[sluice]\n[databases]\n"
		"shop = host=db.example port=5433 dbname=shop_prod user=app "
		"password='it''s  secret' pool_size=30 min_pool_size=2 "
		"reserve_pool=3 max_db_connections=40 pool_mode=statement "
		"connect_query='SELECT ''x''' application_name='my app' "
		"client_encoding=UTF8 datestyle='ISO, MDY' timezone=UTC\n");
	const struct db_config *db = config_find_db(cfg, "shop");

	cr_assert_not_null(db);
	cr_assert_str_eq(db->host, "db.example");
	cr_assert_eq(db->port, 5433);
	cr_assert_str_eq(db->dbname, "shop_prod");
	cr_assert_str_eq(db->user, "app");
	cr_assert_str_eq(db->password, "it's  secret");
	cr_assert_eq(db->pool_size, 30);
	cr_assert_eq(db->min_pool_size, 2);
	cr_assert_eq(db->reserve_pool, 3);
	cr_assert_eq(db->max_db_connections, 40);
	cr_assert_eq(db->pool_mode, POOL_MODE_STATEMENT);
	cr_assert_str_eq(db->connect_query, "SELECT 'x'");
	cr_assert_str_eq(db->application_name, "my app");
	cr_assert_str_eq(db->client_encoding, "UTF8");
	cr_assert_str_eq(db->datestyle, "ISO, MDY");
	cr_assert_str_eq(db->timezone, "UTC");
	cr_assert_str_eq(db->file, "t.ini");
	cr_assert_eq(db->line, 3);
	config_free(cfg);
}

Test(config, connection_string_defaults_and_socket_dir)
{
	struct config *cfg = load_text(
		"[sluice]\n[databases]\n"
		"local = host=/var/run/postgresql\n"
		"bare =\n");
	const struct db_config *db = config_find_db(cfg, "local");

	cr_assert_str_eq(db->host, "/var/run/postgresql");
	cr_assert_eq(db->port, 5432);
	cr_assert_null(db->dbname);
	cr_assert_null(db->user);
	cr_assert_null(db->password);
	cr_assert_eq(db->pool_size, -1);
	cr_assert_eq(db->min_pool_size, -1);
	cr_assert_eq(db->reserve_pool, -1);
	cr_assert_eq(db->max_db_connections, -1);
	cr_assert_eq(db->pool_mode, POOL_MODE_INHERIT);
	cr_assert_null(db->connect_query);
	db = config_find_db(cfg, "bare");
	cr_assert_null(db->host);
	config_free(cfg);
}

Test(config, connection_string_pgbouncer_params_warned)
{
	struct config *cfg = load_text(
		"[sluice]\n[databases]\n"
		"shop = host=db auth_user=pgb load_balance_hosts=disable\n");

	cr_assert_str_eq(warning(cfg, 0), "t.ini:3: database shop: parameter "
	                 "auth_user is not supported by sluice yet, ignored");
	cr_assert_str_eq(warning(cfg, 1), "t.ini:3: database shop: parameter "
	                 "load_balance_hosts is not supported by sluice yet, "
	                 "ignored");
	cr_assert_str_eq(config_find_db(cfg, "shop")->host, "db");
	config_free(cfg);
}

Test(config, users_section)
{
	struct config *cfg = load_text(
		"[sluice]\n[users]\n"
		"batch = pool_mode=transaction max_user_connections=5\n"
		"web = max_user_connections=50\n"
		"plain =\n");
	const struct user_config *u = config_find_user(cfg, "batch");

	cr_assert_eq(u->pool_mode, POOL_MODE_TRANSACTION);
	cr_assert_eq(u->max_user_connections, 5);
	u = config_find_user(cfg, "web");
	cr_assert_eq(u->pool_mode, POOL_MODE_INHERIT);
	cr_assert_eq(u->max_user_connections, 50);
	u = config_find_user(cfg, "plain");
	cr_assert_eq(u->max_user_connections, -1);
	cr_assert_null(config_find_user(cfg, "nobody"));
	config_free(cfg);
}

Test(config, find_db_falls_back_to_star)
{
	struct config *cfg = load_text(
		"[sluice]\n[databases]\n"
		"* = host=fallback\n"
		"shop = host=db\n");

	cr_assert_str_eq(config_find_db(cfg, "shop")->host, "db");
	cr_assert_str_eq(config_find_db(cfg, "other")->host, "fallback");
	cr_assert_str_eq(config_find_db(cfg, "*")->host, "fallback");
	config_free(cfg);

	cfg = load_text("[sluice]\n[databases]\nshop = host=db\n");
	cr_assert_null(config_find_db(cfg, "other"));
	config_free(cfg);
}

/*
 * Values
 */

Test(config, defaults)
{
	struct config *cfg = load_text("[sluice]\n");

	cr_assert_null(cfg->listen_addr);
	cr_assert_eq(cfg->listen_port, 6432);
	cr_assert_eq(cfg->listen_backlog, 128);
	cr_assert_str_eq(cfg->unix_socket_dir, "/tmp");
	cr_assert_eq(cfg->unix_socket_mode, 0777);
	cr_assert_eq(cfg->auth_type, AUTH_MD5);
	cr_assert_null(cfg->auth_file);
	cr_assert_null(cfg->admin_users);
	cr_assert_null(cfg->stats_users);
	cr_assert_eq(cfg->pool_mode, POOL_MODE_SESSION);
	cr_assert_eq(cfg->default_pool_size, 20);
	cr_assert_eq(cfg->min_pool_size, 0);
	cr_assert_eq(cfg->reserve_pool_size, 0);
	cr_assert_eq(cfg->reserve_pool_timeout, 5000);
	cr_assert_eq(cfg->max_client_conn, 100);
	cr_assert_eq(cfg->max_db_connections, 0);
	cr_assert_eq(cfg->max_user_connections, 0);
	cr_assert_str_eq(cfg->server_reset_query, "DISCARD ALL");
	cr_assert_eq(cfg->server_reset_query_always, false);
	cr_assert_str_eq(cfg->server_check_query, "select 1");
	cr_assert_eq(cfg->server_check_delay, 30000);
	cr_assert_str_eq(cfg->ignore_startup_parameters, "");
	cr_assert_str_eq(cfg->track_extra_parameters, "IntervalStyle");
	cr_assert_eq(cfg->application_name_add_host, false);
	cr_assert_eq(cfg->max_packet_size, 2147483647);
	cr_assert_eq(cfg->pkt_buf, 4096);
	cr_assert_eq(cfg->tcp_keepalive, true);
	cr_assert_eq(cfg->tcp_keepcnt, 0);
	cr_assert_eq(cfg->tcp_keepidle, 0);
	cr_assert_eq(cfg->tcp_keepintvl, 0);
	cr_assert_eq(cfg->tcp_user_timeout, 0);
	cr_assert_eq(cfg->server_lifetime, 3600000);
	cr_assert_eq(cfg->server_idle_timeout, 600000);
	cr_assert_eq(cfg->server_connect_timeout, 15000);
	cr_assert_eq(cfg->server_login_retry, 15000);
	cr_assert_eq(cfg->query_timeout, 0);
	cr_assert_eq(cfg->query_wait_timeout, 120000);
	cr_assert_eq(cfg->cancel_wait_timeout, 10000);
	cr_assert_eq(cfg->client_idle_timeout, 0);
	cr_assert_eq(cfg->client_login_timeout, 60000);
	cr_assert_eq(cfg->idle_transaction_timeout, 0);
	cr_assert_eq(cfg->transaction_timeout, 0);
	cr_assert_null(cfg->logfile);
	cr_assert_null(cfg->pidfile);
	cr_assert_eq(cfg->syslog, false);
	cr_assert_str_eq(cfg->syslog_ident, "sluice");
	cr_assert_str_eq(cfg->syslog_facility, "daemon");
	cr_assert_eq(cfg->log_connections, true);
	cr_assert_eq(cfg->log_disconnections, true);
	cr_assert_eq(cfg->log_pooler_errors, true);
	cr_assert_eq(cfg->log_stats, true);
	cr_assert_eq(cfg->stats_period, 60000);
	cr_assert_eq(cfg->verbose, 0);
	cr_assert_null(cfg->databases);
	cr_assert_null(cfg->users);
	cr_assert_null(cfg->auth_entries);
	cr_assert_null(cfg->warnings);
	cr_assert_eq(cfg->config_file[0], '/');
	config_free(cfg);
}

Test(config, time_settings_in_seconds_with_fractions)
{
	struct config *cfg = load_text(
		"[sluice]\n"
		"query_timeout = 0.5\n"
		"query_wait_timeout = 1.25\n"
		"client_idle_timeout = .75\n"
		"server_lifetime = 5.\n"
		"server_idle_timeout = 0.0004\n"
		"server_connect_timeout = 0.0015\n"
		"cancel_wait_timeout = 0\n"
		"idle_transaction_timeout = 0.000\n"
		"transaction_timeout = 86400\n");

	cr_assert_eq(cfg->query_timeout, 500);
	cr_assert_eq(cfg->query_wait_timeout, 1250);
	cr_assert_eq(cfg->client_idle_timeout, 750);
	cr_assert_eq(cfg->server_lifetime, 5000);
	cr_assert_eq(cfg->server_idle_timeout, 1, "a nonzero time is never 0");
	cr_assert_eq(cfg->server_connect_timeout, 2);
	cr_assert_eq(cfg->cancel_wait_timeout, 0);
	cr_assert_eq(cfg->idle_transaction_timeout, 0);
	cr_assert_eq(cfg->transaction_timeout, 86400000);
	config_free(cfg);
}

Test(config, booleans_as_pgbouncer)
{
	struct config *cfg = load_text(
		"[sluice]\n"
		"syslog = yes\n"
		"tcp_keepalive = off\n"
		"log_stats = FALSE\n"
		"log_connections = 0\n"
		"server_reset_query_always = on\n"
		"application_name_add_host = True\n");

	cr_assert(cfg->syslog);
	cr_assert_not(cfg->tcp_keepalive);
	cr_assert_not(cfg->log_stats);
	cr_assert_not(cfg->log_connections);
	cr_assert(cfg->server_reset_query_always);
	cr_assert(cfg->application_name_add_host);
	config_free(cfg);
}

Test(config, modes_octal_and_addresses)
{
	struct config *cfg = load_text(
		"[sluice]\n"
		"pool_mode = Transaction\n"
		"auth_type = scram-sha-256\n"
		"unix_socket_mode = 0660\n"
		"listen_addr = 127.0.0.1, ::1,fe80::1%eth0\n");

	cr_assert_eq(cfg->pool_mode, POOL_MODE_TRANSACTION);
	cr_assert_eq(cfg->auth_type, AUTH_SCRAM);
	cr_assert_eq(cfg->unix_socket_mode, 0660);
	cr_assert_str_eq(cfg->listen_addr, "127.0.0.1, ::1,fe80::1%eth0");
	config_free(cfg);

	cfg = load_text("[sluice]\nlisten_addr = *\nauth_type = any\n");
	cr_assert_str_eq(cfg->listen_addr, "*");
	cr_assert_eq(cfg->auth_type, AUTH_ANY);
	config_free(cfg);
}

/*
 * auth_file
 */

Test(config, userlist_escapes_secrets_and_comments)
{
	struct config *cfg;
	const struct auth_entry *e;

	cr_assert_eq(chdir(TEST_DATA_DIR), 0);
	cfg = load_path("pgbouncer.ini");
	e = cfg->auth_entries;
	cr_assert_str_eq(e->name, "alice");
	cr_assert_str_eq(e->secret, "plain secret");
	e = e->next;
	cr_assert_str_eq(e->name, "bob");
	cr_assert_str_eq(e->secret, "md5d2c7b1e2f3a4b5c6d7e8f9a0b1c2d3e4");
	e = e->next;
	cr_assert_str_eq(e->secret, "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$"
	                 "c3RvcmVka2V5:c2VydmVya2V5");
	e = e->next;
	cr_assert_str_eq(e->name, "quote\"d");
	cr_assert_str_eq(e->secret, "pa\"ss");
	e = e->next;
	cr_assert_str_eq(e->name, "dave");
	cr_assert_str_eq(e->secret, "");
	e = e->next;
	cr_assert_str_eq(e->name, "alice");
	cr_assert_null(e->next);
	cr_assert_str_eq(config_find_secret(cfg, "quote\"d"), "pa\"ss");
	cr_assert_str_eq(config_find_secret(cfg, "alice"), "second line wins");
	cr_assert_null(config_find_secret(cfg, "nobody"));
	config_free(cfg);
}

Test(config, userlist_errors)
{
	static const char *const cases[][2] = {
		{ "alice \"x\"\n", "u.txt:1: expected a double-quoted user name" },
		{ "\"alice\n", "u.txt:1: missing closing double quote" },
		{ "\"alice\" secret\n", "u.txt:1: expected a double-quoted secret "
		  "after the user name" },
		{ "\"alice\"\n", "u.txt:1: expected a double-quoted secret "
		  "after the user name" },
		{ "\"alice\" \"x\n", "u.txt:1: missing closing double quote" },
		{ "\"\" \"x\"\n", "u.txt:1: empty user name" },
		{ "; ok\n\n\"a\" \"b\"\n\"b\" c\n", "u.txt:4: expected a "
		  "double-quoted secret after the user name" },
	};
	struct auth_entry *list = NULL;
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file("u.txt", cases[i][0]);
		cr_assert_eq(userlist_load("u.txt", &list, err, sizeof(err)), -1);
		cr_assert_null(list);
		cr_assert_str_eq(err, cases[i][1]);
	}
}

Test(config, userlist_empty_file)
{
	struct auth_entry *list = NULL;
	char err[256];

	write_file("u.txt", "; nobody yet\n");
	cr_assert_eq(userlist_load("u.txt", &list, err, sizeof(err)), 0);
	cr_assert_null(list);
	userlist_free(list);
}

/*
 * Helpers for other modules
 */

Test(config, list_contains)
{
	cr_assert(config_list_contains("alice, bob ,carol", "BOB"));
	cr_assert(config_list_contains("alice bob", "bob"));
	cr_assert(config_list_contains("alice", "alice"));
	cr_assert_not(config_list_contains("alice, bob", "bo"));
	cr_assert_not(config_list_contains("alice, bob", "alice, bob"));
	cr_assert_not(config_list_contains("", "alice"));
	cr_assert_not(config_list_contains(NULL, "alice"));
	cr_assert_not(config_list_contains("alice,,", ""));
}

Test(config, enum_names)
{
	cr_assert_str_eq(config_pool_mode_name(POOL_MODE_SESSION), "session");
	cr_assert_str_eq(config_pool_mode_name(POOL_MODE_TRANSACTION),
	                 "transaction");
	cr_assert_str_eq(config_pool_mode_name(POOL_MODE_STATEMENT), "statement");
	cr_assert_str_eq(config_pool_mode_name(POOL_MODE_INHERIT), "inherit");
	cr_assert_str_eq(config_auth_type_name(AUTH_TRUST), "trust");
	cr_assert_str_eq(config_auth_type_name(AUTH_ANY), "any");
	cr_assert_str_eq(config_auth_type_name(AUTH_PLAIN), "plain");
	cr_assert_str_eq(config_auth_type_name(AUTH_MD5), "md5");
	cr_assert_str_eq(config_auth_type_name(AUTH_SCRAM), "scram-sha-256");
}

struct seen {
	int count;
	char last[64];        /* names must come sorted */
	bool sorted;
	bool port_reloadable;
	char timeout[32], timeout_default[32], mode[32], ident[32], addr[32];
};

static void seen_cb(void *arg, const char *name, const char *value,
                    const char *default_value, bool reloadable)
{
	struct seen *s = arg;

	if (strcmp(name, s->last) <= 0)
		s->sorted = false;
	snprintf(s->last, sizeof(s->last), "%s", name);
	s->count++;
	if (strcmp(name, "listen_port") == 0)
		s->port_reloadable = reloadable;
	if (strcmp(name, "query_wait_timeout") == 0) {
		snprintf(s->timeout, sizeof(s->timeout), "%s", value);
		snprintf(s->timeout_default, sizeof(s->timeout_default), "%s",
		         default_value);
	}
	if (strcmp(name, "unix_socket_mode") == 0)
		snprintf(s->mode, sizeof(s->mode), "%s", value);
	if (strcmp(name, "syslog_ident") == 0)
		snprintf(s->ident, sizeof(s->ident), "%s", value);
	if (strcmp(name, "listen_addr") == 0)
		snprintf(s->addr, sizeof(s->addr), "%s|%s", value, default_value);
}

Test(config, foreach_setting_lists_the_table)
{
	struct config *cfg = load_text(
		"[sluice]\nquery_wait_timeout = 1.5\nunix_socket_mode = 600\n");
	struct seen s = { .sorted = true, .port_reloadable = true };

	config_foreach_setting(cfg, seen_cb, &s);
	cr_assert_eq(s.count, 61, "%d rows: one per setting", s.count);
	cr_assert(s.sorted);
	cr_assert_not(s.port_reloadable);
	cr_assert_str_eq(s.timeout, "1.5");
	cr_assert_str_eq(s.timeout_default, "120");
	cr_assert_str_eq(s.mode, "0600");
	cr_assert_str_eq(s.ident, "sluice");
	cr_assert_str_eq(s.addr, "|");
	config_free(cfg);
}

Test(config, free_null)
{
	config_free(NULL);
	userlist_free(NULL);
}
