/* The per-connection proxy state machine of a worker: client in, backend out, and back. */
#ifndef ROUNDGUARD_PROXY_H
#define ROUNDGUARD_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "roundguard/config-t.h"
#include "roundguard/shm.h"

struct event_base;

struct tls_generation;

/* proxy_accept()'s listener for metrics.listen (then only the metrics path is answered). */
#define PROXY_METRICS_LISTENER (-1)

/*
 * Set up the proxy for this worker process: its event loop, the merged
 * configuration, the shared segment, the generation's TLS contexts (NULL
 * when nothing is TLS) and its worker index. 0 or -1.
 */
int proxy_init(struct event_base *base, const struct config *cfg, struct shm *shm,
    struct tls_generation *tls, int worker);

/*
 * Take over an accepted, non-blocking client socket that came in on
 * cfg->listeners[listener] (a TLS one starts with its handshake), or on
 * metrics.listen (PROXY_METRICS_LISTENER).
 */
void proxy_accept(int fd, const struct sockaddr *sa, int listener);

/*
 * Stop taking new requests: idle connections close now, busy ones after
 * their current exchange. done() is called once no client is left.
 */
void proxy_drain(void (*done)(void));

/* Connections still open. */
uint32_t proxy_client_count(void);

/* Write what the last loop turn queued for clients; call after each turn. */
void proxy_end_turn(void);

/* Close everything and free the proxy's state (at exit). */
void proxy_free(void);

#endif
