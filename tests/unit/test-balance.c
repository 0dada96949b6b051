/* Unit tests for round-robin selection over the live bitmap. */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "roundguard/balance.h"
#include "unit.h"

static void
set_bit(uint64_t *w, size_t i)
{
	w[i / 64] |= UINT64_C(1) << (i % 64);
}

START_TEST(none_live)
{
	uint64_t live[2] = { 0, 0 };

	ck_assert_int_eq(balance_pick(live, 100, 0), -1);
	ck_assert_int_eq(balance_pick(live, 100, 12345), -1);
	ck_assert_uint_eq(balance_count(live, 100), 0);
}
END_TEST

START_TEST(one_live)
{
	uint64_t live[1] = { 0 };

	set_bit(live, 2);
	for (uint64_t t = 0; t < 10; t++)
		ck_assert_int_eq(balance_pick(live, 3, t), 2);
}
END_TEST

START_TEST(all_live_strict_rotation)
{
	uint64_t live[1] = { 0x7 };
	int counts[3] = { 0 };

	for (uint64_t t = 0; t < 30; t++) {
		int b = balance_pick(live, 3, t);

		ck_assert_int_eq(b, (int)(t % 3));
		counts[b]++;
	}
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 10);
	ck_assert_int_eq(counts[2], 10);
}
END_TEST

START_TEST(sparse)
{
	uint64_t live[1] = { 0 };
	int expect[] = { 1, 4, 6 };

	set_bit(live, 1);
	set_bit(live, 4);
	set_bit(live, 6);
	for (uint64_t t = 0; t < 9; t++)
		ck_assert_int_eq(balance_pick(live, 8, t), expect[t % 3]);
}
END_TEST

START_TEST(bits_past_count_ignored)
{
	uint64_t live[1] = { UINT64_MAX };

	ck_assert_uint_eq(balance_count(live, 3), 3);
	for (uint64_t t = 0; t < 9; t++)
		ck_assert_int_lt(balance_pick(live, 3, t), 3);
}
END_TEST

START_TEST(across_words)
{
	uint64_t live[3] = { 0 };

	set_bit(live, 63);
	set_bit(live, 64);
	set_bit(live, 130);
	ck_assert_uint_eq(balance_count(live, 131), 3);
	ck_assert_int_eq(balance_pick(live, 131, 0), 63);
	ck_assert_int_eq(balance_pick(live, 131, 1), 64);
	ck_assert_int_eq(balance_pick(live, 131, 2), 130);
	ck_assert_int_eq(balance_pick(live, 131, 3), 63);
}
END_TEST

START_TEST(thousand_backends)
{
	uint64_t live[BALANCE_WORDS(1024)];
	int *counts = calloc(1024, sizeof(int));

	memset(live, 0xff, sizeof(live));
	for (uint64_t t = 0; t < 1024 * 5; t++)
		counts[balance_pick(live, 1024, t)]++;
	for (int i = 0; i < 1024; i++)
		ck_assert_int_eq(counts[i], 5);
	/* Every third one down: the rest share evenly. */
	memset(counts, 0, 1024 * sizeof(int));
	for (size_t i = 0; i < 1024; i += 3)
		live[i / 64] &= ~(UINT64_C(1) << (i % 64));
	ck_assert_uint_eq(balance_count(live, 1024), 1024 - 342);
	for (uint64_t t = 0; t < (1024 - 342) * 2; t++)
		counts[balance_pick(live, 1024, t)]++;
	for (int i = 0; i < 1024; i++)
		ck_assert_int_eq(counts[i], i % 3 == 0 ? 0 : 2);
	free(counts);
}
END_TEST

START_TEST(ticket_wrap)
{
	uint64_t live[1] = { 0x7 };

	/* UINT64_MAX % 3 == 0; the next ticket wraps to 0. */
	ck_assert_int_eq(balance_pick(live, 3, UINT64_MAX), 0);
	ck_assert_int_eq(balance_pick(live, 3, UINT64_MAX - 1), 2);
	ck_assert_int_eq(balance_pick(live, 3, 0), 0);
}
END_TEST

START_TEST(next_skips_tried_and_dead)
{
	uint64_t live[2] = { 0 }, tried[2] = { 0 };

	set_bit(live, 0);
	set_bit(live, 2);
	set_bit(live, 70);
	ck_assert_int_eq(balance_next(live, tried, 71, 0), 2);
	set_bit(tried, 2);
	ck_assert_int_eq(balance_next(live, tried, 71, 0), 70);
	set_bit(tried, 70);
	ck_assert_int_eq(balance_next(live, tried, 71, 0), 0);
	set_bit(tried, 0);
	ck_assert_int_eq(balance_next(live, tried, 71, 0), -1);
}
END_TEST

START_TEST(snapshot_copies)
{
	_Atomic uint64_t shared[2];
	uint64_t snap[2];

	atomic_init(&shared[0], 5);
	atomic_init(&shared[1], 9);
	balance_snapshot(snap, shared, 70);
	ck_assert_uint_eq(snap[0], 5);
	ck_assert_uint_eq(snap[1], 9);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("balance");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, none_live);
	tcase_add_test(tc, one_live);
	tcase_add_test(tc, all_live_strict_rotation);
	tcase_add_test(tc, sparse);
	tcase_add_test(tc, bits_past_count_ignored);
	tcase_add_test(tc, across_words);
	tcase_add_test(tc, thousand_backends);
	tcase_add_test(tc, ticket_wrap);
	tcase_add_test(tc, next_skips_tried_and_dead);
	tcase_add_test(tc, snapshot_copies);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
