/*
 * sluice.h - the one context per event loop. Everything hangs off it; there
 * are no globals, so that more loops (one per core) can come later.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "list.h"

struct config;
struct conn;
struct listener;
struct stats;
struct prep_registry;

#define SLUICE_VERSION PACKAGE_VERSION
/* Bytes read from a socket at once; one shared buffer per loop. */
#define SLUICE_READ_CHUNK 65536
/* Output buffers of this size are reused instead of freed (conn.c). */
#define SLUICE_OUT_SPARE_SIZE 4096
#define SLUICE_OUT_SPARES 64

struct sluice {
	uv_loop_t *loop;
	struct config *config;     /* current settings, owned */
	struct list pools;         /* struct pool, by (database, user) */
	struct list clients;       /* every struct client */
	struct list cancels;       /* cancel requests on their way to servers */
	struct listener *listeners;/* owned chain */
	int client_count;          /* against max_client_conn */
	int login_count;           /* clients still logging in */
	int admin_waits;           /* console answers waiting (PAUSE...) */
	uint64_t next_client_id;   /* C-<n> in logs and SHOW CLIENTS */
	uint64_t next_server_id;   /* S-<n> */
	uint8_t *read_chunk;       /* shared read buffer, SLUICE_READ_CHUNK bytes */
	uint8_t *out_spares[SLUICE_OUT_SPARES]; /* free output buffers */
	int out_spare_count;
	struct list ready;         /* conns with held bytes to process next tick */
	uv_idle_t ready_idle;      /* runs ctx->ready while it is not empty */
	uv_signal_t sigterm;
	uv_signal_t sigint;
	uv_signal_t sighup;
	uv_timer_t housekeeping;   /* periodic checks (server_check_delay...) */
	int exit_code;             /* what main returns */
	bool shutting_down;        /* no new servers, no new clients */
	uint64_t last_leak_stats;  /* uv_now() of the last pinned-servers line */
	bool paused;               /* PAUSE without a database */
	bool suspended;            /* SUSPEND: no socket is read */
	char *disabled_dbs;        /* DISABLE'd names, comma separated */
	char *paused_dbs;          /* PAUSE'd or KILL'ed names, likewise */
	int shutdown_mode;         /* enum shutdown_mode: a shutdown waiting */
	int cli_verbose;           /* -v count, kept for log_configure on reload */
	bool cli_quiet;            /* -q */
	struct stats *stats;       /* counters per database, owned by stats.c */
	struct prep_registry *prepared; /* distinct prepared statements */
	uv_signal_t sigusr1;
	uv_signal_t sigusr2;
	uint8_t mock_key[32];      /* auth_mock_digest's key: random, per process */
	bool has_mock_key;         /* mock_key made (at the first login) */
};

#endif
