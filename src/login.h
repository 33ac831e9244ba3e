/*
 * login.h - a client's way in: startup packet, SSL/GSSENC refusal, cancel
 * requests, authentication against auth_file, and the welcome messages.
 */
#ifndef SLUICE_LOGIN_H
#define SLUICE_LOGIN_H

#include <stddef.h>
#include <stdint.h>

struct client;

/* Handles bytes while the client is in a login state (CLIENT_STARTUP,
 * CLIENT_AUTH_*); returns bytes used. May fail or close the client. */
size_t login_data(struct client *client, const uint8_t *data, size_t len);

#endif
