/* A tunnel after a 101: opaque bytes both ways between a client and its backend connection. */
#ifndef ROUNDGUARD_TUNNEL_H
#define ROUNDGUARD_TUNNEL_H

#include <stdbool.h>

struct client;

/*
 * The backend answered the upgrade with 101 (its head parsed in c->up->in):
 * send the head to the client and turn both connections into one tunnel.
 * Bytes that came after either head go through. -1 when c is gone.
 */
int tunnel_start(struct client *c);

/* Readiness of either side of a tunnel (closing: the peer's close was reported). */
void tunnel_client_readable(struct client *c, bool closing);
void tunnel_backend_readable(struct client *c, bool closing);

/* Write what waits for the client / the backend; -1 when the tunnel ended. */
int tunnel_client_flush(struct client *c);
int tunnel_backend_flush(struct client *c);

#endif
