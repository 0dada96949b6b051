/* Lazily re-armed timers: moving a deadline later is a store, not an event_add(). */
#include "roundguard/deadline.h"

void
deadline_assign(struct deadline *d, struct event_base *base, event_callback_fn cb, void *arg)
{
	evtimer_assign(&d->ev, base, cb, arg);
	d->at_ns = 0;
}

void
deadline_ensure(struct deadline *d, int64_t at_ns, int64_t now_ns)
{
	struct timeval tv;
	int64_t in = at_ns - now_ns;

	/* Armed to fire earlier: the owner looks again then and re-arms for the rest. */
	if (d->at_ns != 0 && d->at_ns <= at_ns)
		return;
	if (in < 0)
		in = 0;
	/* Rounded up: firing a little late is a timeout; a little early, a wasted wake-up. */
	in += 999;
	tv.tv_sec = (time_t)(in / 1000000000);
	tv.tv_usec = (suseconds_t)(in % 1000000000 / 1000);
	if (evtimer_add(&d->ev, &tv) == 0)
		d->at_ns = at_ns;
}

void
deadline_fired(struct deadline *d)
{
	d->at_ns = 0;
}

void
deadline_cancel(struct deadline *d)
{
	evtimer_del(&d->ev);
	d->at_ns = 0;
}
