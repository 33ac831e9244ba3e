/*
 * admin_control.h - the console's control commands (admin_users only).
 */
#ifndef SLUICE_ADMIN_CONTROL_H
#define SLUICE_ADMIN_CONTROL_H

#include <stdbool.h>

struct client;
struct msgbuf;
struct sluice;

/* True if word names a control command. */
bool admin_is_control(const char *word);

/*
 * Runs control command word with arg (may be ""); SET passes its key in
 * arg and value in value. The answer (CommandComplete or ERROR) goes into
 * mb; returns true instead when the answer must wait (PAUSE, WAIT_CLOSE):
 * admin_control_tick() sends it, with its ReadyForQuery, once done.
 */
bool admin_control(struct client *client, const char *word, const char *arg,
                   const char *value, struct msgbuf *mb);

/* Housekeeping: answers console clients whose wait is over. */
void admin_control_tick(struct sluice *ctx);

#endif
