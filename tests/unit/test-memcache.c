/* Unit tests for the free-list cache in front of malloc (libevent's allocations). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "roundguard/memcache.h"
#include "unit.h"

static void
setup(void)
{
	memcache_trim();
}

START_TEST(sizes_round_up_to_their_class)
{
	/* 16-byte steps up to 512, then powers of two. */
	static const struct { size_t ask, get; } cases[] = {
		{ 0, 16 }, { 1, 16 }, { 16, 16 }, { 17, 32 }, { 136, 144 }, { 511, 512 },
		{ 512, 512 }, { 513, 1024 }, { 1000, 1024 }, { 1024, 1024 }, { 1025, 2048 },
		{ 16384 + 56, 32768 }, { 32768, 32768 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *p = memcache_malloc(cases[i].ask);

		ck_assert_ptr_nonnull(p);
		ck_assert_msg(memcache_block_size(p) == cases[i].get, "%zu: %zu", cases[i].ask,
		    memcache_block_size(p));
		ck_assert_uint_eq((uintptr_t)p % 16, 0);
		memset(p, 0xa5, cases[i].get);	/* the whole block is usable */
		memcache_free(p);
	}
}
END_TEST

START_TEST(freed_block_is_reused_last_in_first_out)
{
	char *a = memcache_malloc(1000), *b = memcache_malloc(1000), *c;

	ck_assert_uint_eq(memcache_cached_bytes(), 0);
	memcache_free(a);
	memcache_free(b);
	ck_assert_uint_eq(memcache_cached_bytes(), 2048);
	ck_assert_ptr_eq(memcache_malloc(1024), b);
	ck_assert_ptr_eq(memcache_malloc(513), a);
	ck_assert_uint_eq(memcache_cached_bytes(), 0);
	/* Another class does not take them. */
	memcache_free(a);
	c = memcache_malloc(2000);
	ck_assert_ptr_ne(c, a);
	memcache_free(b);
	memcache_free(c);
}
END_TEST

START_TEST(large_blocks_are_not_cached)
{
	char *p = memcache_malloc(40000);

	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(memcache_block_size(p), 40000);
	memset(p, 1, 40000);
	memcache_free(p);
	ck_assert_uint_eq(memcache_cached_bytes(), 0);
}
END_TEST

START_TEST(cache_is_bounded_per_class)
{
	enum { N = 200 };
	static char *small[N], *chain[N], *large[N];

	for (int i = 0; i < N; i++) {
		small[i] = memcache_malloc(100);
		chain[i] = memcache_malloc(1024);
		large[i] = memcache_malloc(16384);
	}
	for (int i = 0; i < N; i++) {
		memcache_free(small[i]);
		memcache_free(chain[i]);
		memcache_free(large[i]);
	}
	/* 32 small blocks stay, and 128 KiB of each chain size; the rest went back to malloc. */
	ck_assert_uint_eq(memcache_cached_bytes(), 32 * 112 + 128 * 1024 + 8 * 16384);
	memcache_trim();
	ck_assert_uint_eq(memcache_cached_bytes(), 0);
}
END_TEST

START_TEST(realloc_keeps_contents)
{
	char *p = memcache_realloc(NULL, 20);

	ck_assert_ptr_nonnull(p);
	memcpy(p, "0123456789abcdefghij", 20);
	/* Within the block: the same block. */
	ck_assert_ptr_eq(memcache_realloc(p, 32), p);
	p = memcache_realloc(p, 5000);
	ck_assert_uint_eq(memcache_block_size(p), 8192);
	ck_assert(memcmp(p, "0123456789abcdefghij", 20) == 0);
	p = memcache_realloc(p, 100000);
	ck_assert_uint_eq(memcache_block_size(p), 100000);
	ck_assert(memcmp(p, "0123456789abcdefghij", 20) == 0);
	ck_assert_ptr_null(memcache_realloc(p, 0));
	memcache_free(NULL);
}
END_TEST

START_TEST(evbuffers_run_on_it)
{
	struct evbuffer *b;
	char out[5000];

	/* What libevent does with it: the blocks of drained chains come back for reuse. */
	b = evbuffer_new();
	ck_assert_ptr_nonnull(b);
	for (int round = 0; round < 3; round++) {
		memset(out, 'a' + round, sizeof(out));
		ck_assert_int_eq(evbuffer_add(b, out, sizeof(out)), 0);
		ck_assert_int_eq(evbuffer_add_printf(b, "%d", round), 1);
		ck_assert_int_eq(evbuffer_remove(b, out, sizeof(out)), (int)sizeof(out));
		ck_assert_int_eq(out[0], 'a' + round);
		ck_assert_int_eq(evbuffer_drain(b, 1), 0);
		ck_assert_uint_eq(evbuffer_get_length(b), 0);
		ck_assert_uint_gt(memcache_cached_bytes(), 0);
	}
	evbuffer_free(b);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("memcache");
	TCase *tc = tcase_create("core");

	/* Straight to the cache's functions, whatever the build (install is off under ASan). */
	event_set_mem_functions(memcache_malloc, memcache_realloc, memcache_free);
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, sizes_round_up_to_their_class);
	tcase_add_test(tc, freed_block_is_reused_last_in_first_out);
	tcase_add_test(tc, large_blocks_are_not_cached);
	tcase_add_test(tc, cache_is_bounded_per_class);
	tcase_add_test(tc, realloc_keeps_contents);
	tcase_add_test(tc, evbuffers_run_on_it);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
