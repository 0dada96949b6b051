/*
 * The administrative state of backends (drain, maint, weights): what the
 * master alone writes into the segment on roundguardctl's requests, carries
 * into a new generation at a reload, and keeps in the state file across
 * restarts. See shm-t.h for who reads it.
 */
#ifndef ROUNDGUARD_ADMIN_H
#define ROUNDGUARD_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roundguard/config-t.h"
#include "roundguard/shm.h"

/* "ready", "drain", "maint"; admin_state_parse: 0, or -1 for another word. */
const char *admin_state_str(enum admin_state s);
int admin_state_parse(const char *s, enum admin_state *out);

/*
 * The backend a request names: its URL as configured, or host:port as status
 * shows it. Returns the index, -1 when none matches, -2 when host:port
 * matches more than one (backends with different prefixes): the URL then.
 */
int admin_find(const struct config *cfg, const char *name);

/*
 * A backend discovered through DNS by the address it has now (host:port, as
 * status shows it): its slot, and in *seq the slot's sequence for
 * admin_set_slot_state(). -1 when no slot holds that address.
 */
int admin_find_discovered(const struct shm *s, const struct config *cfg, const char *name,
    uint32_t *seq);

/*
 * Drain, maint or ready for the address slot b held at seq: the state lasts
 * while the slot holds that address (across reloads too), not in the state
 * file. admin_slot_stale(): b's drain or maint was for an address it no
 * longer holds, so the master puts it back to ready (admin_set_state()).
 */
enum admin_state admin_set_slot_state(struct shm *s, uint32_t b, uint32_t seq,
    enum admin_state st, int64_t now);
bool admin_slot_stale(const struct shm *s, const struct config *cfg, uint32_t b);

/* Set the state or the weight of backend b at now; enabled follows. Returns the old value. */
enum admin_state admin_set_state(struct shm *s, uint32_t b, enum admin_state st, int64_t now);
uint32_t admin_set_weight(struct shm *s, uint32_t b, uint32_t weight, int64_t now);

/* The master's side of a change: bump admin_seq; the value the checker's schedule must reach. */
uint64_t admin_changed(struct shm *s);

/* Apply cfg's weights to a fresh segment (before any child reads it). */
void admin_init(struct shm *s, const struct config *cfg);

/*
 * A reload: for every backend of to that from also has (the same URL), copy
 * its administrative state, runtime weight, health (live bit, last result,
 * counts, since when) and slow-start ramp, before the new generation's
 * children start. A backend only to has is marked as added (it ramps once
 * it is up, with slow_start). Returns how many were carried.
 */
size_t admin_carry(const struct config *fcfg, const struct shm *from,
    const struct config *tcfg, struct shm *to, int64_t now);

/*
 * The state file: {"version":1,"backends":[{"url":...,"admin":"drain","weight":3},...]}
 * for every backend not in its configured state. admin_save writes it whole
 * (a temporary file, fsync, rename); admin_load applies what it holds to the
 * backends that are still configured (others are ignored: the file follows
 * the configuration). -1 with err set on failure; a missing file is not one.
 */
int admin_save(const char *path, const struct config *cfg, const struct shm *s, char *err,
    size_t errlen);
int admin_load(const char *path, const struct config *cfg, struct shm *s, int64_t now,
    size_t *applied, char *err, size_t errlen);

/* A state file's text into (url, state, weight) entries through cb; pure, fuzzed. */
typedef void admin_entry_fn(void *arg, const char *url, enum admin_state st, int weight);
int admin_parse_state(const char *text, size_t len, admin_entry_fn *cb, void *arg, char *err,
    size_t errlen);

#endif
