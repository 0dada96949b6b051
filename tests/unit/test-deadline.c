/* Unit tests for lazily re-armed deadlines, on a real event_base. */
#include <stdlib.h>

#include <check.h>
#include <event2/event.h>

#include "roundguard/deadline.h"
#include "roundguard/proc.h"
#include "unit.h"

#define MS (INT64_C(1000000))

struct probe {
	struct deadline d;
	int fired;
	int64_t fired_at;
	int order;		/* place among the probes fired (1 = first) */
	int64_t rearm_ms;	/* fire: arm again this much later, while rearms > 0 */
	int rearms;
};

static int fired_total;

static void
probe_cb(struct deadline *d)
{
	struct probe *p = deadline_owner(d, struct probe, d);

	ck_assert_int_eq(d->at_ns, 0);		/* handed over disarmed */
	p->fired++;
	p->fired_at = proc_now_ns();
	p->order = ++fired_total;
	if (p->rearms > 0) {
		p->rearms--;
		deadline_ensure(d, p->fired_at + p->rearm_ms * MS, p->fired_at);
	}
}

static struct event_base *
new_base(void)
{
	struct event_base *b = event_base_new();

	ck_assert_ptr_nonnull(b);
	return b;
}

/*
 * Arm a deadline at start + first_ms, then ask for start + second_ms (0: not
 * at all), run the loop until it is idle: what was armed after the two
 * calls, how often it fired and after how long.
 */
static void
run_two(int64_t first_ms, int64_t second_ms, int64_t *armed_ms, int *fired, int64_t *after_ms)
{
	struct event_base *b = new_base();
	struct deadlines *set = deadlines_new(b, probe_cb);
	struct probe p = { .fired = 0 };
	int64_t start = proc_now_ns();

	deadline_init(&p.d, set);
	deadline_ensure(&p.d, start + first_ms * MS, start);
	if (second_ms != 0)
		deadline_ensure(&p.d, start + second_ms * MS, start);
	*armed_ms = (p.d.at_ns - start) / MS;
	event_base_dispatch(b);
	ck_assert_int_eq(p.d.at_ns, 0);
	*fired = p.fired;
	*after_ms = (p.fired_at - start) / MS;
	ck_assert_uint_eq(deadlines_count(set), 0);
	deadlines_free(set);
	event_base_free(b);
}

START_TEST(fires_at_the_deadline)
{
	int64_t armed, after;
	int fired;

	run_two(50, 0, &armed, &fired, &after);
	ck_assert_int_eq(armed, 50);
	ck_assert_int_eq(fired, 1);
	/* Never early by more than the coarse clock's tick; never much late. */
	ck_assert_msg(after >= 45 && after < 500, "fired after %lld ms", (long long)after);
}
END_TEST

START_TEST(later_deadline_keeps_the_earlier_timer)
{
	int64_t armed, after;
	int fired;

	/* Moving the deadline later costs nothing: it still fires at the first one. */
	run_two(40, 10000, &armed, &fired, &after);
	ck_assert_int_eq(armed, 40);
	ck_assert_int_eq(fired, 1);
	ck_assert_msg(after < 5000, "the later deadline was armed");
}
END_TEST

START_TEST(earlier_deadline_rearms)
{
	int64_t armed, after;
	int fired;

	run_two(10000, 30, &armed, &fired, &after);
	ck_assert_int_eq(armed, 30);
	ck_assert_int_eq(fired, 1);
	ck_assert_msg(after < 5000, "still armed for the later deadline");
}
END_TEST

START_TEST(past_deadline_fires_at_once)
{
	struct event_base *b = new_base();
	struct deadlines *set = deadlines_new(b, probe_cb);
	struct probe p = { .fired = 0 };
	int64_t now = proc_now_ns();

	deadline_init(&p.d, set);
	deadline_ensure(&p.d, now - 1000 * MS, now);
	event_base_dispatch(b);
	ck_assert_int_eq(p.fired, 1);
	ck_assert(p.fired_at - now < 1000 * MS);
	deadlines_free(set);
	event_base_free(b);
}
END_TEST

START_TEST(cancel_disarms)
{
	struct event_base *b = new_base();
	struct deadlines *set = deadlines_new(b, probe_cb);
	struct probe p = { .fired = 0 };
	int64_t now = proc_now_ns();

	deadline_init(&p.d, set);
	deadline_ensure(&p.d, now + 20 * MS, now);
	deadline_cancel(&p.d);
	ck_assert_int_eq(p.d.at_ns, 0);
	event_base_dispatch(b);		/* the set's timer may fire once, for nothing */
	ck_assert_int_eq(p.fired, 0);
	/* And it can be armed again. */
	deadline_ensure(&p.d, now + 20 * MS, now);
	event_base_dispatch(b);
	ck_assert_int_eq(p.fired, 1);
	deadlines_free(set);
	event_base_free(b);
}
END_TEST

/* many_fire_in_order's deadline i: moving a deadline later changes nothing. */
static int64_t
expected_at(int i, int n)
{
	int64_t first = (1 + (i * 37) % n) * MS, moved = (int64_t)(n - i) * MS / 4;

	return i % 7 == 3 && moved < first ? moved : first;
}

/* Many deadlines of one set, armed out of order: each fires once, in deadline order. */
START_TEST(many_fire_in_order)
{
	enum { N = 200 };
	struct event_base *b = new_base();
	struct deadlines *set = deadlines_new(b, probe_cb);
	static struct probe p[N];
	int64_t now = proc_now_ns();

	fired_total = 0;
	for (int i = 0; i < N; i++) {
		p[i] = (struct probe){ .fired = 0 };
		deadline_init(&p[i].d, set);
		/* 1..N ms, scattered: i * 37 mod N is a permutation since gcd(37, 200) = 1. */
		deadline_ensure(&p[i].d, now + (1 + (i * 37) % N) * MS, now);
	}
	/* Every tenth cancelled; every seventh asked for (N - i) / 4 ms, earlier for some. */
	for (int i = 0; i < N; i += 10)
		deadline_cancel(&p[i].d);
	for (int i = 3; i < N; i += 7)
		if (i % 10 != 0)
			deadline_ensure(&p[i].d, now + (int64_t)(N - i) * MS / 4, now);
	ck_assert_uint_eq(deadlines_count(set), N - N / 10);
	event_base_dispatch(b);
	ck_assert_uint_eq(deadlines_count(set), 0);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(p[i].fired, i % 10 == 0 ? 0 : 1);
	/* Fired order follows the deadlines (ties in any order). */
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < N; j++) {
			int64_t ai = expected_at(i, N), aj = expected_at(j, N);

			if (p[i].fired == 0 || p[j].fired == 0 || ai >= aj)
				continue;
			ck_assert_msg(p[i].order < p[j].order, "%d (at %lld) fired after %d (at %lld)",
			    i, (long long)ai, j, (long long)aj);
		}
	}
	deadlines_free(set);
	event_base_free(b);
}
END_TEST

/* A deadline armed again from its own callback fires again, later. */
START_TEST(rearmed_from_the_callback)
{
	struct event_base *b = new_base();
	struct deadlines *set = deadlines_new(b, probe_cb);
	struct probe p = { .rearm_ms = 15, .rearms = 2 };
	int64_t now = proc_now_ns();

	deadline_init(&p.d, set);
	deadline_ensure(&p.d, now + 10 * MS, now);
	event_base_dispatch(b);
	ck_assert_int_eq(p.fired, 3);
	ck_assert_msg(p.fired_at - now >= 35 * MS, "fired at %lld ms",
	    (long long)((p.fired_at - now) / MS));
	deadlines_free(set);
	event_base_free(b);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("deadline");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, fires_at_the_deadline);
	tcase_add_test(tc, later_deadline_keeps_the_earlier_timer);
	tcase_add_test(tc, earlier_deadline_rearms);
	tcase_add_test(tc, past_deadline_fires_at_once);
	tcase_add_test(tc, cancel_disarms);
	tcase_add_test(tc, many_fire_in_order);
	tcase_add_test(tc, rearmed_from_the_callback);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
