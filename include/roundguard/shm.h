/* Creating, mapping and reading the shared-memory segment (see shm-t.h). */
#ifndef ROUNDGUARD_SHM_H
#define ROUNDGUARD_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "roundguard/shm-t.h"

/* A process's view of one segment; pointers are valid in every child after fork. */
struct shm {
	struct shm_header *hdr;
	_Atomic uint64_t *live;
	struct shm_backend *backends;
	struct shm_worker *workers;	/* nworkers + 1: the last one is carried totals */
	struct metrics_slot *stats;	/* (nworkers + 1) * nbackends */
	_Atomic uint64_t *enabled;	/* may take new requests: master's */
	_Atomic uint16_t *sched[2];	/* the two pick-schedule buffers */
	size_t size;
	int fd;			/* kept for shm_chown(); -1 once unmapped */
	char name[64];		/* "/roundguardd.<pid>" or "/roundguardd.<pid>.<gen>" */
};

/* Entries of each pick-schedule buffer for this many backends. */
uint32_t shm_sched_cap(uint32_t nbackends);

/* Bytes needed for a segment with these dimensions. */
size_t shm_layout_size(uint32_t nbackends, uint32_t nworkers);

/*
 * Lay out a region that is already zero (a fresh segment, calloc): header and
 * offsets filled in, every backend down. It writes only what it must, so the
 * pages of unused counters are never touched.
 */
void shm_layout_init(void *base, size_t size, uint32_t nbackends, uint32_t nworkers);

/* Point s at an initialised region (checks magic and version). */
int shm_attach(struct shm *s, void *base, size_t size);

/*
 * shm_open(name, O_CREAT|O_EXCL, 0600), size, map shared and initialise. On
 * failure err names the call ("shm_open(\"/roundguardd.42\") failed: ...").
 */
int shm_create(struct shm *s, const char *name, uint32_t nbackends, uint32_t nworkers,
    char *err, size_t errlen);

/* Give the segment to the user the children run as (it stays mode 0600). */
int shm_chown(struct shm *s, uid_t uid, gid_t gid, char *err, size_t errlen);

/* Unmap; the master also unlinks the name (shm_destroy). */
void shm_unmap(struct shm *s);
void shm_destroy(struct shm *s);

/* The counters of worker w (nworkers = carried totals) for backend b. */
static inline struct metrics_slot *
shm_stats(const struct shm *s, uint32_t w, uint32_t b)
{
	return &s->stats[(size_t)w * s->hdr->nbackends + b];
}

/* Live-bit helpers: the checker sets and clears, workers may clear (passive). */
void shm_set_live(struct shm *s, uint32_t backend, bool up);
bool shm_is_live(const struct shm *s, uint32_t backend);
uint32_t shm_live_count(const struct shm *s);

/* The master's bit: may the backend take new requests (ready, weight above 0)? */
void shm_set_enabled(struct shm *s, uint32_t backend, bool on);

/* live AND enabled, one bit per backend, into snap (BALANCE_WORDS(nbackends) words). */
void shm_usable(const struct shm *s, uint64_t *snap);

/* The checker: entries into the buffer not in use, then switch to it (one store). */
void shm_publish_schedule(struct shm *s, const uint16_t *entries, uint32_t len,
    uint64_t admin_seq);

/* A worker's pick for ticket: the backend's index, or -1 when none is usable. */
int shm_pick(const struct shm *s, uint64_t ticket);

/* Slots of discovered names (enum shm_slot): the checker writes, everybody reads. */
struct net_addr;
enum shm_slot shm_slot_state(const struct shm *s, uint32_t backend);
void shm_slot_set_state(struct shm *s, uint32_t backend, enum shm_slot st);
void shm_slot_write(struct shm *s, uint32_t backend, const struct net_addr *a);
/*
 * The slot's address and its sequence number into a and *seq; false while
 * the checker is changing it (odd, or changed during the read).
 */
bool shm_slot_read(const struct shm *s, uint32_t backend, struct net_addr *a, uint32_t *seq);

#endif
