/*
 * Backends discovered through DNS. The pure part (discover_set.c): turning
 * answers into a bounded, ordered set of addresses. The health checker's
 * part (discover.c): c-ares lookups on its event loop at each name's TTL,
 * and the slots of the segment they fill and drain.
 */
#ifndef ROUNDGUARD_DISCOVER_H
#define ROUNDGUARD_DISCOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roundguard/dns_answer.h"
#include "roundguard/net.h"

struct config;
struct config_backend;
struct event_base;
struct shm;

/* One address a name resolves to, with its port and weight (1-256). */
struct discover_target {
	struct net_addr a;
	uint32_t weight;
};

/* Targets gathered for one lookup: at most this many before the cut to max_backends. */
#define DISCOVER_TARGETS_MAX	(2 * DNS_ANSWER_MAX)

/* "1.2.3.4:80" or "[::1]:80": the name of a discovered backend. */
void discover_format(const struct net_addr *a, char *buf, size_t buflen);

/*
 * Append the A and AAAA records of ans (answers, or the additional section's
 * records owned by owner when owner is not NULL) to t[*n], up to cap, with
 * port and weight.
 */
void discover_add_addresses(struct discover_target *t, size_t *n, size_t cap,
    const struct dns_answer *ans, const char *owner, uint16_t port, uint32_t weight);

/* The lowest priority among ans's SRV records (those are the ones used, RFC 2782). */
uint16_t discover_srv_priority(const struct dns_answer *ans);

/*
 * Order t by address and port, merge duplicates (the larger weight wins),
 * and keep the first max: the same answer always gives the same set.
 * srv_weights scales SRV weights (0-65535) into 1-256, keeping their ratios
 * as far as that range allows. Returns the count; *cut gets how many the
 * limit left out.
 */
size_t discover_settle(struct discover_target *t, size_t n, size_t max, bool srv_weights,
    size_t *cut);

/* The order discover_settle() leaves targets in: family, address, port. */
int discover_target_cmp(const struct discover_target *a, const struct discover_target *b);

/*
 * A slot's address into a process's own copy of its backend: where to
 * connect (sa, salen) and the name shown for it (addr.hostport). The
 * checker, when it gives a slot an address or adopts one, and a worker, when
 * it sees the slot changed (discover_sync()).
 */
void discover_set_backend(struct config_backend *be, const struct net_addr *a);

/* Same address and port? */
bool discover_same(const struct net_addr *a, const struct net_addr *b);

/*
 * The health checker's side. hooks: a slot became active (probe it now) or
 * began draining (out of the schedule).
 */
struct discover_hooks {
	void (*added)(uint32_t slot);
	void (*removed)(uint32_t slot);
	void (*settled)(void);		/* every name has had its first lookup */
};

/* Start the lookups of every discovered name in cfg (none: nothing to do, returns 0). */
int discover_start(struct event_base *base, struct config *cfg, struct shm *shm,
    const struct discover_hooks *hooks);
/* Has every name had its first lookup (or are there none)? */
bool discover_settled(void);
void discover_stop(void);

/*
 * A worker's copy of a slot's address: when the segment's differs from what
 * be holds (seen), copy it into be->sa and be->addr.hostport. Returns 1 if
 * it changed (pooled connections to the old address must go), 0 if not, -1
 * if the slot has no usable address now.
 */
int discover_sync(struct config_backend *be, const struct shm *shm, uint32_t slot,
    uint32_t *seen);

#endif
