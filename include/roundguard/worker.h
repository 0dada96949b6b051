/* A worker process: an event loop accepting on its own SO_REUSEPORT socket and proxying. */
#ifndef ROUNDGUARD_WORKER_H
#define ROUNDGUARD_WORKER_H

#include "roundguard/config-t.h"
#include "roundguard/shm.h"

struct tls_generation;

/*
 * Serve listen_fds (one per cfg->listeners entry; TLS ones with tls's
 * contexts) and metrics_fd (the metrics.listen socket, unless -1) as worker
 * index until SIGTERM/SIGINT, then stop accepting, finish the exchanges in
 * flight (at most proxy.shutdown_timeout) and return 0. Returns 1 when the
 * event loop or the proxy cannot be set up.
 */
int worker_main(const struct config *cfg, struct shm *shm, struct tls_generation *tls, int index,
    const int *listen_fds, int metrics_fd);

#endif
