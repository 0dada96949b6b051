/* Round-robin selection over the live bitmap. Pure: no I/O, no allocation. */
#ifndef ROUNDGUARD_BALANCE_H
#define ROUNDGUARD_BALANCE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BALANCE_WORDS(n) (((n) + 63) / 64)

/*
 * Pick the (ticket mod live)-th live backend from a snapshot of the bitmap
 * (nwords words, bits past nbackends ignored). Returns its index, or -1 when
 * none is live.
 */
int balance_pick(const uint64_t *live, size_t nbackends, uint64_t ticket);

/*
 * Pick from a published schedule (include/roundguard/schedule.h): entry
 * (ticket mod len), or the next entry whose backend is set in usable (live
 * and taking traffic) when that one's is not: the checker republishes
 * without it soon, and its share goes meanwhile to the next in the
 * sequence. After BALANCE_SCAN unusable entries, or with an empty schedule
 * (a set that changed since it was published), balance_pick() over usable.
 */
#define BALANCE_SCAN 16
int balance_pick_schedule(const _Atomic uint16_t *entries, uint32_t len, const uint64_t *usable,
    size_t nbackends, uint64_t ticket);

/*
 * The first live backend after index from (wrapping around) that is not in
 * tried; -1 when every live one was tried. For retries after a failure.
 */
int balance_next(const uint64_t *live, const uint64_t *tried, size_t nbackends, int from);

/* Copy the shared bitmap with acquire loads into snap (BALANCE_WORDS(n) words). */
void balance_snapshot(uint64_t *snap, const _Atomic uint64_t *live, size_t nbackends);

/* Number of set bits among the first nbackends. */
size_t balance_count(const uint64_t *live, size_t nbackends);

#endif
