/*
 * control.h - what operators do to a running sluice: reload, pause, resume,
 * suspend, reconnect, disable, kill, shutdown. The admin console and the
 * signal handlers both call these.
 */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sluice;

enum shutdown_mode {
	SHUTDOWN_NONE,
	SHUTDOWN_WAIT_FOR_SERVERS, /* SIGINT: transactions finish, then exit */
	SHUTDOWN_WAIT_FOR_CLIENTS, /* SIGTERM: clients leave, then exit */
};

/*
 * Re-reads the ini file (with includes) and auth_file into a new config;
 * swaps it in only if all of it is valid. Settings that cannot change at
 * run time keep their value, each with a warning. 0, or -1 with
 * "file:line: message" in err and nothing changed.
 */
int control_reload(struct sluice *ctx, char *err, size_t errlen);

/* SET key = value: 0, or -1 with the reason in err. */
int control_set(struct sluice *ctx, const char *key, const char *value,
                char *err, size_t errlen);

/* PAUSE [db] (db NULL: all): no new transactions reach a server; servers
 * close as their transactions end. RESUME [db] undoes PAUSE and SUSPEND. */
void control_pause(struct sluice *ctx, const char *db);
void control_resume(struct sluice *ctx, const char *db);
/* True once every server of the paused pools is closed. */
bool control_pause_done(struct sluice *ctx, const char *db);

/* SUSPEND: stops reading every socket until RESUME. */
void control_suspend(struct sluice *ctx);

/* RECONNECT [db]: servers are replaced as they are released. */
void control_reconnect(struct sluice *ctx, const char *db);
/* WAIT_CLOSE [db]: true once no server of an older generation is left. */
bool control_wait_close_done(struct sluice *ctx, const char *db);

/* DISABLE / ENABLE db: new clients of db are refused / accepted. */
void control_disable(struct sluice *ctx, const char *db, bool disable);
bool control_is_disabled(const struct sluice *ctx, const char *db);
/* True while PAUSE (of db, or of everything) or KILL db holds it. */
bool control_is_paused(const struct sluice *ctx, const char *db);

/* KILL db: drops its clients and servers, and pauses it. Returns count. */
int control_kill(struct sluice *ctx, const char *db);
/* KILL_CLIENT id: drops one client; -1 if there is none. */
int control_kill_client(struct sluice *ctx, uint64_t id);

/* Starts a shutdown: NONE means now. Exits when its condition holds. */
void control_shutdown(struct sluice *ctx, enum shutdown_mode mode, const char *why);

/* Housekeeping: finishes a waiting shutdown. */
void control_tick(struct sluice *ctx);

#endif
