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
};

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;

	deadline_fired(&p->d);
	p->fired++;
	p->fired_at = proc_now_ns();
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
	struct probe p = { .fired = 0 };
	int64_t start = proc_now_ns();

	deadline_assign(&p.d, b, probe_cb, &p);
	deadline_ensure(&p.d, start + first_ms * MS, start);
	if (second_ms != 0)
		deadline_ensure(&p.d, start + second_ms * MS, start);
	*armed_ms = (p.d.at_ns - start) / MS;
	event_base_dispatch(b);
	ck_assert_int_eq(p.d.at_ns, 0);
	*fired = p.fired;
	*after_ms = (p.fired_at - start) / MS;
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
	struct probe p = { .fired = 0 };
	int64_t now = proc_now_ns();

	deadline_assign(&p.d, b, probe_cb, &p);
	deadline_ensure(&p.d, now - 1000 * MS, now);
	event_base_dispatch(b);
	ck_assert_int_eq(p.fired, 1);
	ck_assert(p.fired_at - now < 1000 * MS);
	event_base_free(b);
}
END_TEST

START_TEST(cancel_disarms)
{
	struct event_base *b = new_base();
	struct probe p = { .fired = 0 };
	int64_t now = proc_now_ns();

	deadline_assign(&p.d, b, probe_cb, &p);
	deadline_ensure(&p.d, now + 20 * MS, now);
	deadline_cancel(&p.d);
	ck_assert_int_eq(p.d.at_ns, 0);
	event_base_dispatch(b);		/* nothing pending: returns at once */
	ck_assert_int_eq(p.fired, 0);
	/* And it can be armed again. */
	deadline_ensure(&p.d, now + 20 * MS, now);
	event_base_dispatch(b);
	ck_assert_int_eq(p.fired, 1);
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
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
