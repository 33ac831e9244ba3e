/*
 * listener.h - TCP and unix listening sockets; accept and hand to client.c.
 */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

struct sluice;

/* Opens every listen_addr on listen_port and the unix socket in
 * unix_socket_dir. Returns 0, or -1 after logging what failed. */
int listener_start_all(struct sluice *ctx);

/* Closes every listener (and removes the unix socket file). */
void listener_stop_all(struct sluice *ctx);

#endif
