/* Unit tests for lazily re-armed deadlines, on a real event_base. */
#include <stdlib.h>

#include <check.h>
#include <event2/event.h>

#include "roundguard/deadline.h"
#include "roundguard/proc.h"

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

START_TEST(fires_at_the_deadline)
{
	struct event_base *b = new_base();
	struct probe p = { .fired = 0 };
	int64_t start = proc_now_ns();

	deadline_assign(&p.d, b, probe_cb, &p);
	deadline_ensure(&p.d, start + 50 * MS, start);
	ck_assert(p.d.at_ns == start + 50 * MS);
	event_base_dispatch(b);
	ck_assert_int_eq(p.fired, 1);
	ck_assert_int_eq(p.d.at_ns, 0);
	/* Never early by more than the coarse clock's tick; never much late. */
	ck_assert_msg(p.fired_at - start >= 45 * MS && p.fired_at - start < 500 * MS,
	    "fired after %lld ms", (long long)((p.fired_at - start) / MS));
	event_base_free(b);
}
END_TEST

START_TEST(later_deadline_keeps_the_earlier_timer)
{
	struct event_base *b = new_base();
	struct probe p = { .fired = 0 };
	int64_t start = proc_now_ns();

	deadline_assign(&p.d, b, probe_cb, &p);
	deadline_ensure(&p.d, start + 40 * MS, start);
	/* Moving the deadline later costs nothing: it still fires at the first one. */
	deadline_ensure(&p.d, start + 10000 * MS, start);
	ck_assert(p.d.at_ns == start + 40 * MS);
	event_base_dispatch(b);
	ck_assert_int_eq(p.fired, 1);
	ck_assert_msg(p.fired_at - start < 5000 * MS, "the later deadline was armed");
	event_base_free(b);
}
END_TEST

START_TEST(earlier_deadline_rearms)
{
	struct event_base *b = new_base();
	struct probe p = { .fired = 0 };
	int64_t start = proc_now_ns();

	deadline_assign(&p.d, b, probe_cb, &p);
	deadline_ensure(&p.d, start + 10000 * MS, start);
	deadline_ensure(&p.d, start + 30 * MS, start);
	ck_assert(p.d.at_ns == start + 30 * MS);
	event_base_dispatch(b);
	ck_assert_int_eq(p.fired, 1);
	ck_assert_msg(p.fired_at - start < 5000 * MS, "still armed for the later deadline");
	event_base_free(b);
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
	SRunner *sr;
	int failed;

	tcase_add_test(tc, fires_at_the_deadline);
	tcase_add_test(tc, later_deadline_keeps_the_earlier_timer);
	tcase_add_test(tc, earlier_deadline_rearms);
	tcase_add_test(tc, past_deadline_fires_at_once);
	tcase_add_test(tc, cancel_disarms);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
