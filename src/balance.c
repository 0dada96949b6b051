/* Round-robin selection over the live bitmap. Pure: no I/O, no allocation. */
#include "roundguard/balance.h"

/* Mask of the valid bits of word w for n backends. */
static uint64_t
word_mask(size_t w, size_t nbackends)
{
	size_t bits = nbackends - w * 64;

	return bits >= 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
}

size_t
balance_count(const uint64_t *live, size_t nbackends)
{
	size_t n = 0;

	for (size_t w = 0; w < BALANCE_WORDS(nbackends); w++)
		n += (size_t)__builtin_popcountll(live[w] & word_mask(w, nbackends));
	return n;
}

/* Index of the k-th (0-based) set bit of x; x has more than k bits set. */
static int
nth_bit(uint64_t x, unsigned k)
{
	while (k-- > 0)
		x &= x - 1;
	return __builtin_ctzll(x);
}

int
balance_pick(const uint64_t *live, size_t nbackends, uint64_t ticket)
{
	size_t n = balance_count(live, nbackends);
	uint64_t k;

	if (n == 0)
		return -1;
	k = ticket % n;
	for (size_t w = 0; w < BALANCE_WORDS(nbackends); w++) {
		uint64_t bits = live[w] & word_mask(w, nbackends);
		unsigned c = (unsigned)__builtin_popcountll(bits);

		if (k < c)
			return (int)(w * 64) + nth_bit(bits, (unsigned)k);
		k -= c;
	}
	return -1;
}

int
balance_pick_schedule(const _Atomic uint16_t *entries, uint32_t len, const uint64_t *usable,
    size_t nbackends, uint64_t ticket)
{
	uint32_t i, scan = len < BALANCE_SCAN ? len : BALANCE_SCAN;

	if (len == 0)
		return balance_pick(usable, nbackends, ticket);
	i = (uint32_t)(ticket % len);
	for (uint32_t k = 0; k < scan; k++) {
		/* Relaxed: the checker only rewrites the buffer no one was sent to. */
		uint32_t b = atomic_load_explicit(&entries[i], memory_order_relaxed);

		if (b < nbackends && (usable[b / 64] >> (b % 64) & 1))
			return (int)b;
		if (++i == len)
			i = 0;
	}
	return balance_pick(usable, nbackends, ticket);
}

int
balance_next(const uint64_t *live, const uint64_t *tried, size_t nbackends, int from)
{
	for (size_t i = 1; i <= nbackends; i++) {
		size_t b = ((size_t)from + i) % nbackends;
		uint64_t bit = UINT64_C(1) << (b % 64);

		if ((live[b / 64] & bit) && !(tried[b / 64] & bit))
			return (int)b;
	}
	return -1;
}

void
balance_snapshot(uint64_t *snap, const _Atomic uint64_t *live, size_t nbackends)
{
	for (size_t w = 0; w < BALANCE_WORDS(nbackends); w++)
		snap[w] = atomic_load_explicit(&live[w], memory_order_acquire);
}
