/* The health checker: probes every backend concurrently each interval, publishes the live bitmap. */
#ifndef ROUNDGUARD_CHECKER_H
#define ROUNDGUARD_CHECKER_H

#include <stdbool.h>
#include <stdint.h>

#include "roundguard/config-t.h"
#include "roundguard/shm.h"

/* "connect refused", "timeout", "status 500", ... for logs and metrics labels. */
const char *check_result_str(enum check_result r);

/* Rise/fall hysteresis of one backend, as the checker keeps it. Pure. */
struct check_state {
	bool up;
	uint32_t successes;	/* consecutive */
	uint32_t failures;	/* consecutive */
};

/*
 * Apply one probe outcome. A down backend comes up after rise consecutive
 * successes, an up one goes down after fall consecutive failures. Returns
 * true when up changed.
 */
bool check_state_apply(struct check_state *st, bool ok, uint32_t rise, uint32_t fall);

/*
 * The checker process's main: probe cfg's backends (addresses already
 * resolved in cfg->backends[i].sa) every health.interval, write the live bits
 * and per-backend state into shm, log each transition once. After the first
 * complete round it writes one byte to ready_fd and closes it (ready_fd -1:
 * none). Returns 0 on SIGTERM/SIGINT, 1 if the event loop cannot start.
 */
struct tls_generation;

int checker_main(const struct config *cfg, struct shm *shm, struct tls_generation *tls,
    int ready_fd);

#endif
