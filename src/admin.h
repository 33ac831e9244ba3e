/*
 * admin.h - the admin console: the virtual database "sluice" (alias
 * "pgbouncer"), spoken over the wire protocol so psql is its client.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stddef.h>
#include <stdint.h>

struct client;

/* Finishes an admin login: AuthenticationOk, parameters, ReadyForQuery. */
void admin_welcome(struct client *client);

/* Handles bytes from an admin client; returns bytes used. */
size_t admin_data(struct client *client, const uint8_t *data, size_t len);

#endif
