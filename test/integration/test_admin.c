/*
 * test_admin.c - the admin console as PgBouncer tools see it: every SHOW
 * command's columns (names, order and types as PgBouncer 1.25), values that
 * match the state the test made, who may run what, the errors that keep the
 * session open, and the counters of SHOW STATS.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness.h"

TestSuite(admin, .fini = h_teardown, .timeout = 120);

/* What PgBouncer says for a command a stats_users login may not run. */
#define ADMIN_NEEDED "admin access needed"
#define SETTLE_S 15.0

static PGconn *console(const char *user)
{
	return h_connect(user, "dbname=pgbouncer");
}

/* Runs a SHOW; asserts it returns a result set. Caller clears. */
static PGresult *show(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);

	cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql,
	             PQresultErrorMessage(res));
	return res;
}

/* The value of column name in row; asserts the column exists. */
static const char *value(const PGresult *res, int row, const char *name)
{
	int col = PQfnumber(res, name);

	cr_assert(col >= 0, "no column %s", name);
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static long number(const PGresult *res, int row, const char *name)
{
	const char *v = value(res, row, name);

	cr_assert(v, "%s is NULL", name);
	return atol(v);
}

/* The first row whose column name has value want (and, if given, whose
 * column name2 has want2); -1 if none. */
static int find_row2(const PGresult *res, const char *name, const char *want,
                     const char *name2, const char *want2)
{
	for (int i = 0; i < PQntuples(res); i++) {
		const char *v = value(res, i, name);
		const char *v2 = name2 ? value(res, i, name2) : NULL;

		if (v && strcmp(v, want) == 0 &&
		    (!name2 || (v2 && strcmp(v2, want2) == 0)))
			return i;
	}
	return -1;
}

static int find_row(const PGresult *res, const char *name, const char *want)
{
	return find_row2(res, name, want, NULL, NULL);
}

/* The local port of a libpq connection: what SHOW CLIENTS calls port. */
static int local_port(PGconn *conn)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	cr_assert(getsockname(PQsocket(conn), (struct sockaddr *)&sa, &len) == 0);
	return ntohs(sa.sin_port);
}

/* Runs sql, asserts it fails with ERROR 08P01 message; the session lives. */
static void console_fails(PGconn *conn, const char *sql, const char *sqlstate,
                          const char *message)
{
	PGresult *res = PQexec(conn, sql);
	struct h_error err;

	cr_assert_eq(PQresultStatus(res), PGRES_FATAL_ERROR, "%s succeeded", sql);
	h_result_error(res, &err);
	PQclear(res);
	cr_assert_str_eq(err.severity, "ERROR", "%s: %s", sql, err.message);
	cr_assert_str_eq(err.sqlstate, sqlstate, "%s: %s %s", sql, err.sqlstate,
	                 err.message);
	cr_assert_str_eq(err.message, message, "%s", sql);
	cr_assert_eq(PQstatus(conn), CONNECTION_OK, "%s closed the session", sql);
}

/* --- columns ---------------------------------------------------------- */

/* PgBouncer 1.25's columns: its type letter per column and the names. */
struct show_spec {
	const char *sql;
	const char *types;         /* s text, T time as text, i int4, q int8,
	                              N numeric, b bytea */
	const char *columns;       /* comma separated, in order */
};

#define SOCKET_COLUMNS "type,user,database,replication,state,addr,port," \
	"local_addr,local_port,connect_time,request_time,wait,wait_us," \
	"close_needed,ptr,link,remote_pid,tls,application_name," \
	"prepared_statements,id"
#define SOCKET_TYPES "ssssssisiTTiiississii"
#define PARTIAL_STATS "database,server_assignment_count,xact_count," \
	"query_count,bytes_received,bytes_sent,xact_time,query_time,wait_time,"

static const struct show_spec specs[] = {
	{ "SHOW DATABASES", "ssissiiiissiiiiii",
	  "name,host,port,database,force_user,pool_size,min_pool_size,"
	  "reserve_pool_size,server_lifetime,pool_mode,load_balance_hosts,"
	  "max_connections,current_connections,max_client_connections,"
	  "current_client_connections,paused,disabled" },
	{ "SHOW POOLS", "ssiiiiiiiiiiiiiss",
	  "database,user,cl_active,cl_waiting,cl_active_cancel_req,"
	  "cl_waiting_cancel_req,sv_active,sv_active_cancel,sv_being_canceled,"
	  "sv_idle,sv_used,sv_tested,sv_login,maxwait,maxwait_us,pool_mode,"
	  "load_balance_hosts" },
	{ "SHOW CLIENTS", SOCKET_TYPES, SOCKET_COLUMNS },
	{ "SHOW SERVERS", SOCKET_TYPES, SOCKET_COLUMNS },
	{ "SHOW SOCKETS", SOCKET_TYPES "iiiiiii", SOCKET_COLUMNS ",recv_pos,"
	  "pkt_pos,pkt_remain,send_pos,send_remain,pkt_avail,send_avail" },
	{ "SHOW ACTIVE_SOCKETS", SOCKET_TYPES "iiiiiii", SOCKET_COLUMNS
	  ",recv_pos,pkt_pos,pkt_remain,send_pos,send_remain,pkt_avail,"
	  "send_avail" },
	{ "SHOW STATS", "sNNNNNNNNNNNNNNNNNNNNNN",
	  "database,total_server_assignment_count,total_xact_count,"
	  "total_query_count,total_received,total_sent,total_xact_time,"
	  "total_query_time,total_wait_time,total_client_parse_count,"
	  "total_server_parse_count,total_bind_count,"
	  "avg_server_assignment_count,avg_xact_count,avg_query_count,avg_recv,"
	  "avg_sent,avg_xact_time,avg_query_time,avg_wait_time,"
	  "avg_client_parse_count,avg_server_parse_count,avg_bind_count" },
	{ "SHOW STATS_TOTALS", "sNNNNNNNNNNN", PARTIAL_STATS
	  "client_parse_count,server_parse_count,bind_count" },
	{ "SHOW STATS_AVERAGES", "sNNNNNNNNNNN", PARTIAL_STATS
	  "avg_client_parse_count,avg_server_parse_count,avg_bind_count" },
	{ "SHOW TOTALS", "sN", "name,value" },
	{ "SHOW LISTS", "si", "list,items" },
	{ "SHOW USERS", "ssssiiii",
	  "name,pool_size,reserve_pool_size,pool_mode,max_user_connections,"
	  "current_connections,max_user_client_connections,"
	  "current_client_connections" },
	{ "SHOW CONFIG", "ssss", "key,value,default,changeable" },
	{ "SHOW MEM", "siiii", "name,size,used,free,memtotal" },
	{ "SHOW FDS", "issssiqisssssbb",
	  "fd,task,user,database,addr,port,cancel,link,client_encoding,"
	  "std_strings,datestyle,timezone,password,scram_client_key,"
	  "scram_server_key" },
	{ "SHOW DNS_HOSTS", "sqs", "hostname,ttl,addrs" },
	{ "SHOW DNS_ZONES", "sqi", "zonename,serial,count" },
	{ "SHOW STATE", "ss", "key,value" },
	{ "SHOW VERSION", "s", "version" },
	{ "SHOW PEERS", "isii", "peer_id,host,port,pool_size" },
	{ "SHOW PEER_POOLS", "iiiii",
	  "peer_id,cl_active_cancel_req,cl_waiting_cancel_req,sv_active_cancel,"
	  "sv_login" },
};

static Oid type_oid(char letter)
{
	switch (letter) {
	case 's': case 'T': return 25;
	case 'i': return 23;
	case 'q': return 20;
	case 'N': return 1700;
	case 'b': return 17;
	}
	cr_assert_fail("bad type letter %c", letter);
	return 0;
}

static void assert_columns(PGconn *conn, const struct show_spec *spec)
{
	PGresult *res = show(conn, spec->sql);
	char names[1024], *save = NULL;
	int i = 0;

	cr_assert_eq(PQnfields(res), (int)strlen(spec->types), "%s: %d columns",
	             spec->sql, PQnfields(res));
	snprintf(names, sizeof(names), "%s", spec->columns);
	for (char *n = strtok_r(names, ",", &save); n;
	     n = strtok_r(NULL, ",", &save), i++) {
		cr_assert_str_eq(PQfname(res, i), n, "%s: column %d", spec->sql, i);
		cr_assert_eq(PQftype(res, i), type_oid(spec->types[i]),
		             "%s: column %s has type %u", spec->sql, n,
		             PQftype(res, i));
	}
	cr_assert_eq(i, PQnfields(res), "%s", spec->sql);
	PQclear(res);
}

Test(admin, every_show_has_pgbouncer_columns)
{
	PGconn *alice, *admin;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	alice = h_connect(H_ALICE, NULL);
	h_exec(alice, "SELECT 1"); /* a pool, a server: rows to describe */
	admin = console(H_ADMIN);
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		assert_columns(admin, &specs[i]);
	/* The grammar is PgBouncer's: any case, a ';', SELECT as SHOW. */
	PQclear(show(admin, "show pools;"));
	PQclear(show(admin, "  Show   Version ; "));
	PQclear(show(admin, "SELECT version"));
	/* sluice's own, from the leak detector. */
	PQclear(show(admin, "SHOW LEAKS"));
	PQclear(show(admin, "SHOW LEAK_STATS"));
	PQfinish(admin);
	PQfinish(alice);
	h_finish();
}

/* --- values ------------------------------------------------------------ */

/* SHOW POOLS' row for db/user, waiting up to SETTLE_S for cond. */
static PGresult *pools_when(PGconn *admin, const char *db, const char *user,
                            const char *col, long want, int *row)
{
	double deadline = h_now() + SETTLE_S;

	for (;;) {
		PGresult *res = show(admin, "SHOW POOLS");

		*row = find_row2(res, "database", db, "user", user);
		if ((*row >= 0 && number(res, *row, col) == want) || h_now() > deadline)
			return res;
		PQclear(res);
		h_sleep_ms(50);
	}
}

static void send_async(PGconn *conn, const char *sql)
{
	cr_assert(PQsendQuery(conn, sql), "%s: %s", sql, PQerrorMessage(conn));
}

/* Waits for the answer of an async query, whatever it is. */
static void drain(PGconn *conn)
{
	PGresult *res;

	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
}

static void assert_pool(const PGresult *res, int row, long active, long waiting,
                        long sv_active, long sv_idle)
{
	cr_assert(row >= 0, "no pool row");
	cr_assert_eq(number(res, row, "cl_active"), active, "cl_active %ld",
	             number(res, row, "cl_active"));
	cr_assert_eq(number(res, row, "cl_waiting"), waiting, "cl_waiting %ld",
	             number(res, row, "cl_waiting"));
	cr_assert_eq(number(res, row, "sv_active"), sv_active, "sv_active %ld",
	             number(res, row, "sv_active"));
	cr_assert_eq(number(res, row, "sv_idle"), sv_idle, "sv_idle %ld",
	             number(res, row, "sv_idle"));
	cr_assert_eq(number(res, row, "sv_used"), 0);
	cr_assert_eq(number(res, row, "sv_tested"), 0);
	cr_assert_eq(number(res, row, "sv_login"), 0);
}

/* The SHOW CLIENTS row of a libpq connection, found by its port. */
static int client_row(const PGresult *res, PGconn *conn)
{
	char port[16];

	snprintf(port, sizeof(port), "%d", local_port(conn));
	return find_row(res, "port", port);
}

static void assert_clients(PGconn *admin, PGconn **cl, long holder_pid)
{
	PGresult *clients = show(admin, "SHOW CLIENTS");
	PGresult *servers = show(admin, "SHOW SERVERS");
	int holder = client_row(clients, cl[0]), idle = client_row(clients, cl[5]);
	int waiting = client_row(clients, cl[3]), me = client_row(clients, admin);
	char pid[16];
	int sv;

	cr_assert(holder >= 0 && idle >= 0 && waiting >= 0 && me >= 0);
	cr_assert_str_eq(value(clients, holder, "state"), "active");
	cr_assert_str_eq(value(clients, holder, "user"), H_ALICE);
	cr_assert_str_eq(value(clients, holder, "database"), H_DBNAME);
	cr_assert_str_eq(value(clients, holder, "addr"), "127.0.0.1");
	cr_assert_eq(number(clients, holder, "local_port"), h_port());
	cr_assert_str_eq(value(clients, idle, "state"), "idle");
	cr_assert_str_eq(value(clients, idle, "link"), "");
	cr_assert_str_eq(value(clients, waiting, "state"), "waiting");
	cr_assert(number(clients, waiting, "wait") * 1000000 +
	          number(clients, waiting, "wait_us") > 0);
	cr_assert_str_eq(value(clients, me, "database"), "pgbouncer");
	cr_assert_str_eq(value(clients, me, "user"), H_ADMIN);
	/* The backend pg_backend_pid() named is the holder's server. */
	snprintf(pid, sizeof(pid), "%ld", holder_pid);
	sv = find_row(servers, "remote_pid", pid);
	cr_assert(sv >= 0, "no server with remote_pid %s", pid);
	cr_assert_str_eq(value(servers, sv, "state"), "active");
	cr_assert_str_eq(value(servers, sv, "type"), "S");
	cr_assert_str_eq(value(servers, sv, "link"), value(clients, holder, "ptr"));
	cr_assert_str_eq(value(clients, holder, "link"), value(servers, sv, "ptr"));
	cr_assert_eq(number(servers, sv, "port"), h_pg_port());
	cr_assert_eq(PQntuples(servers), 3);
	PQclear(clients);
	PQclear(servers);
}

Test(admin, pools_clients_and_servers_show_the_real_state)
{
	PGconn *cl[7], *admin;
	PGresult *res;
	long pid;
	int row;

	h_require_sluice();
	h_sluice_start("default_pool_size = 3\n", NULL);
	admin = console(H_ADMIN);
	for (int i = 0; i < 7; i++)
		cl[i] = h_connect(H_ALICE, NULL);
	/* 0 holds a transaction, 1 and 2 a long query: the pool of 3 is
	 * full, so 3 and 4 wait; 5 and 6 sit idle. */
	h_exec(cl[0], "BEGIN");
	pid = h_query_int(cl[0], "SELECT pg_backend_pid()");
	send_async(cl[1], "SELECT pg_sleep(60)");
	send_async(cl[2], "SELECT pg_sleep(60)");
	res = pools_when(admin, H_DBNAME, H_ALICE, "sv_active", 3, &row);
	PQclear(res);
	send_async(cl[3], "SELECT 1");
	send_async(cl[4], "SELECT 1");
	res = pools_when(admin, H_DBNAME, H_ALICE, "cl_waiting", 2, &row);
	assert_pool(res, row, 5, 2, 3, 0);
	cr_assert_str_eq(value(res, row, "pool_mode"), "transaction");
	row = find_row2(res, "database", "pgbouncer", "user", "pgbouncer");
	cr_assert(row >= 0, "no row for the console's own pool");
	cr_assert_eq(number(res, row, "cl_active"), 1);
	cr_assert_str_eq(value(res, row, "pool_mode"), "statement");
	PQclear(res);
	h_sleep_ms(300);
	res = pools_when(admin, H_DBNAME, H_ALICE, "cl_waiting", 2, &row);
	cr_assert(number(res, row, "maxwait") * 1000000 +
	          number(res, row, "maxwait_us") >= 200000, "maxwait too small");
	PQclear(res);
	assert_clients(admin, cl, pid);

	/* Everyone done: three servers back to idle. */
	h_exec(cl[0], "COMMIT");
	for (int i = 1; i <= 2; i++) {
		PGcancel *cancel = PQgetCancel(cl[i]);
		char err[256];

		PQcancel(cancel, err, sizeof(err));
		PQfreeCancel(cancel);
	}
	for (int i = 1; i <= 4; i++)
		drain(cl[i]);
	res = pools_when(admin, H_DBNAME, H_ALICE, "sv_idle", 3, &row);
	assert_pool(res, row, 7, 0, 0, 3);
	PQclear(res);
	for (int i = 0; i < 7; i++)
		PQfinish(cl[i]);
	PQfinish(admin);
	h_finish();
}

static void assert_databases_and_users(PGconn *admin)
{
	PGresult *res = show(admin, "SHOW DATABASES");
	int row = find_row(res, "name", H_DBNAME);

	cr_assert(row >= 0);
	cr_assert_eq(number(res, row, "port"), h_pg_port());
	cr_assert_str_eq(value(res, row, "database"), H_DBNAME);
	cr_assert_null(value(res, row, "force_user"));
	cr_assert_eq(number(res, row, "pool_size"), 4);
	cr_assert_eq(number(res, row, "current_connections"), 1);
	cr_assert_eq(number(res, row, "current_client_connections"), 1);
	row = find_row(res, "name", "pgbouncer");
	cr_assert(row >= 0);
	cr_assert_eq(number(res, row, "port"), h_port());
	cr_assert_str_eq(value(res, row, "force_user"), "pgbouncer");
	cr_assert_eq(number(res, row, "current_client_connections"), 1);
	cr_assert_eq(PQntuples(res), 2);
	PQclear(res);
	res = show(admin, "SHOW USERS");
	cr_assert_eq(PQntuples(res), 5, "admin, alice, bob, carol, pgbouncer");
	row = find_row(res, "name", H_ALICE);
	cr_assert(row >= 0);
	cr_assert_eq(number(res, row, "current_connections"), 1);
	cr_assert_eq(number(res, row, "current_client_connections"), 1);
	cr_assert_str_eq(value(res, row, "pool_size"), "");
	PQclear(res);
}

static void assert_lists_config_mem(PGconn *admin)
{
	PGresult *res = show(admin, "SHOW LISTS");
	char port[16];
	int row;

	cr_assert_eq(number(res, find_row(res, "list", "databases"), "items"), 2);
	cr_assert_eq(number(res, find_row(res, "list", "users"), "items"), 5);
	cr_assert_eq(number(res, find_row(res, "list", "pools"), "items"), 2);
	cr_assert_eq(number(res, find_row(res, "list", "used_clients"), "items"), 2);
	cr_assert_eq(number(res, find_row(res, "list", "used_servers"), "items"), 1);
	PQclear(res);
	res = show(admin, "SHOW CONFIG");
	snprintf(port, sizeof(port), "%d", h_port());
	row = find_row(res, "key", "listen_port");
	cr_assert(row >= 0);
	cr_assert_str_eq(value(res, row, "value"), port);
	row = find_row(res, "key", "default_pool_size");
	cr_assert_str_eq(value(res, row, "value"), "4");
	PQclear(res);
	res = show(admin, "SHOW MEM");
	cr_assert_eq(number(res, find_row(res, "name", "client_cache"), "used"), 2);
	PQclear(res);
	res = show(admin, "SHOW STATE");
	cr_assert_str_eq(value(res, find_row(res, "key", "active"), "value"), "yes");
	PQclear(res);
	res = show(admin, "SHOW VERSION");
	cr_assert(strncmp(value(res, 0, "version"), "sluice ", 7) == 0);
	PQclear(res);
}

Test(admin, databases_users_lists_config)
{
	PGconn *alice, *admin;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	alice = h_connect(H_ALICE, NULL);
	h_exec(alice, "SELECT 1");
	/* The console answers to "sluice" too. */
	admin = h_connect(H_ADMIN, "dbname=sluice");
	assert_databases_and_users(admin);
	assert_lists_config_mem(admin);
	PQfinish(admin);
	PQfinish(alice);
	h_finish();
}

/* --- who may do what ---------------------------------------------------- */

Test(admin, stats_users_show_but_do_not_control)
{
	PGconn *bob, *admin;

	h_require_sluice();
	h_sluice_start("stats_users = " H_BOB "\n", NULL);
	bob = console(H_BOB);
	PQclear(show(bob, "SHOW POOLS"));
	PQclear(show(bob, "SHOW STATS"));
	console_fails(bob, "PAUSE", "08P01", ADMIN_NEEDED);
	console_fails(bob, "RELOAD", "08P01", ADMIN_NEEDED);
	console_fails(bob, "KILL_CLIENT 1", "08P01", ADMIN_NEEDED);
	console_fails(bob, "SHOW FDS", "08P01", ADMIN_NEEDED);
	console_fails(bob, "SET default_pool_size = 5", "08P01", ADMIN_NEEDED);
	PQclear(show(bob, "SHOW VERSION"));
	admin = console(H_ADMIN);
	PQclear(show(admin, "SHOW FDS"));
	PQfinish(admin);
	PQfinish(bob);
	h_finish();
}

Test(admin, users_in_neither_list_cannot_log_in)
{
	struct h_error err;

	h_require_sluice();
	h_sluice_start("stats_users = " H_BOB "\n", NULL);
	cr_assert(h_connect_fails(H_ALICE, "dbname=pgbouncer", &err));
	cr_assert_str_eq(err.severity, "FATAL");
	cr_assert_str_eq(err.sqlstate, "08P01");
	cr_assert_str_eq(err.message, "not allowed to connect to the admin console");
	h_finish();
}

Test(admin, bad_commands_get_an_error_and_the_session_stays)
{
	PGconn *admin;
	PGresult *res;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	admin = console(H_ADMIN);
	console_fails(admin, "FOO", "08P01", "invalid command 'FOO', use SHOW HELP;");
	console_fails(admin, "SHOW NOTHING", "08P01",
	              "invalid command 'SHOW NOTHING', use SHOW HELP;");
	console_fails(admin, "SHOW POOLS EXTRA", "08P01",
	              "invalid command 'SHOW POOLS EXTRA', use SHOW HELP;");
	console_fails(admin, "SHOW POOLS; SHOW STATS", "08P01",
	              "invalid command 'SHOW POOLS; SHOW STATS', use SHOW HELP;");
	/* Parameters drivers ask about get PgBouncer's fixed answers. */
	res = show(admin, "SHOW client_encoding");
	cr_assert_str_eq(PQfname(res, 0), "client_encoding");
	cr_assert_str_eq(PQgetvalue(res, 0, 0), "UTF-8");
	PQclear(res);
	res = PQexec(admin, "SET datestyle = 'ISO'");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	cr_assert_str_eq(PQcmdStatus(res), "SET");
	PQclear(res);
	PQclear(show(admin, "SHOW POOLS"));
	PQfinish(admin);
	h_finish();
}

static void keep_notice(void *arg, const PGresult *res)
{
	const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);

	snprintf(arg, 1024, "%s|%s", message ? message : "", detail ? detail : "");
}

/* PgBouncer's NOTICE: message, then the detail listing the commands. */
#define HELP_START "Console usage|\n\tSHOW HELP|CONFIG|DATABASES|POOLS|"

Test(admin, help_is_a_notice)
{
	char notice[1024] = "";
	PGconn *admin;
	PGresult *res;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	admin = console(H_ADMIN);
	PQsetNoticeReceiver(admin, keep_notice, notice);
	res = PQexec(admin, "SHOW HELP");
	cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	cr_assert(strncmp(notice, HELP_START, strlen(HELP_START)) == 0, "%s", notice);
	PQfinish(admin);
	h_finish();
}

/* --- counters ----------------------------------------------------------- */

/* SHOW STATS' row of db; zeros if it has none yet. */
static long stat_of(PGconn *admin, const char *db, const char *col)
{
	PGresult *res = show(admin, "SHOW STATS");
	int row = find_row(res, "database", db);
	long v = row >= 0 ? number(res, row, col) : 0;

	PQclear(res);
	return v;
}

static void run_transactions(void)
{
	PGconn *alice = h_connect(H_ALICE, NULL);

	for (int i = 0; i < 4; i++)
		h_exec(alice, "SELECT 1");
	h_exec(alice, "BEGIN");
	h_exec(alice, "SELECT pg_sleep(0.05)");
	h_exec(alice, "COMMIT");
	PQfinish(alice);
}

Test(admin, stats_count_transactions_queries_and_time)
{
	PGconn *admin;
	PGresult *res;
	long xacts, queries, assigns, console_queries;
	int row;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	admin = console(H_ADMIN);
	xacts = stat_of(admin, H_DBNAME, "total_xact_count");
	queries = stat_of(admin, H_DBNAME, "total_query_count");
	assigns = stat_of(admin, H_DBNAME, "total_server_assignment_count");
	run_transactions();
	console_queries = stat_of(admin, "pgbouncer", "total_query_count");
	res = show(admin, "SHOW STATS");
	row = find_row(res, "database", H_DBNAME);
	cr_assert(row >= 0);
	/* 4 autocommit statements + one 3-statement transaction. */
	cr_assert_eq(number(res, row, "total_xact_count") - xacts, 5);
	cr_assert_eq(number(res, row, "total_query_count") - queries, 7);
	cr_assert_eq(number(res, row, "total_server_assignment_count") - assigns, 5);
	cr_assert(number(res, row, "total_received") > 0);
	cr_assert(number(res, row, "total_sent") > 0);
	cr_assert(number(res, row, "total_query_time") >= 40000);
	cr_assert(number(res, row, "total_xact_time") >= 40000);
	cr_assert(number(res, row, "avg_xact_count") > 0);
	cr_assert(number(res, row, "avg_query_time") > 0);
	/* The console's own commands count under "pgbouncer", each once it
	 * has been answered. */
	row = find_row(res, "database", "pgbouncer");
	cr_assert_eq(number(res, row, "total_query_count"), console_queries + 1);
	PQclear(res);
	PQfinish(admin);
	h_finish();
}

Test(admin, totals_add_up_the_databases)
{
	PGconn *admin;
	PGresult *stats, *totals;
	long sum = 0;
	int row;

	h_require_sluice();
	h_sluice_start(NULL, NULL);
	run_transactions();
	admin = console(H_ADMIN);
	stats = show(admin, "SHOW STATS");
	totals = show(admin, "SHOW TOTALS");
	for (int i = 0; i < PQntuples(stats); i++)
		sum += number(stats, i, "total_query_count");
	/* SHOW STATS itself was counted once answered. */
	cr_assert_eq(number(totals, find_row(totals, "name", "total_query_count"),
	                    "value"), sum + 1);
	cr_assert(find_row(totals, "name", "avg_wait_time") >= 0);
	PQclear(stats);
	PQclear(totals);
	stats = show(admin, "SHOW STATS_TOTALS");
	row = find_row(stats, "database", H_DBNAME);
	cr_assert(row >= 0 && number(stats, row, "xact_count") >= 5);
	PQclear(stats);
	PQfinish(admin);
	h_finish();
}

Test(admin, stats_line_every_stats_period)
{
	char *log;

	h_require_sluice();
	h_sluice_start("stats_period = 1\nlog_stats = 1\n", NULL);
	run_transactions();
	cr_assert(h_log_wait("stats: ", 5000), "no stats line within 5 s");
	log = h_sluice_log();
	cr_assert(strstr(log, " xacts/s, ") && strstr(log, " queries/s, ") &&
	          strstr(log, " B/s, out ") && strstr(log, " us, wait "),
	          "unexpected stats line");
	free(log);
	h_finish();
}
