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
 * The first live backend after index from (wrapping around) that is not in
 * tried; -1 when every live one was tried. For retries after a failure.
 */
int balance_next(const uint64_t *live, const uint64_t *tried, size_t nbackends, int from);

/* Copy the shared bitmap with acquire loads into snap (BALANCE_WORDS(n) words). */
void balance_snapshot(uint64_t *snap, const _Atomic uint64_t *live, size_t nbackends);

/* Number of set bits among the first nbackends. */
size_t balance_count(const uint64_t *live, size_t nbackends);

#endif
