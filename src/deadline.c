/*
 * Lazily re-armed timers: moving a deadline later is a store; the set is a
 * binary min-heap of deadlines behind one libevent timer armed for the top.
 */
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

#include "roundguard/deadline.h"
#include "roundguard/proc.h"

#define HEAP_MIN_CAP 64

struct deadlines {
	struct event *timer;
	void (*fire)(struct deadline *d);
	struct deadline **heap;		/* heap[0] is the earliest */
	uint32_t n;
	uint32_t cap;
	int64_t armed_ns;		/* what timer is armed for; 0 when not armed */
};

static void set_timer_cb(evutil_socket_t fd, short what, void *arg);

struct deadlines *
deadlines_new(struct event_base *base, void (*fire)(struct deadline *d))
{
	struct deadlines *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->fire = fire;
	if ((s->timer = evtimer_new(base, set_timer_cb, s)) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

void
deadlines_free(struct deadlines *s)
{
	if (s == NULL)
		return;
	/* Owners freed later must not touch a freed set: they see themselves disarmed. */
	for (uint32_t i = 0; i < s->n; i++) {
		s->heap[i]->pos = 0;
		s->heap[i]->at_ns = 0;
	}
	event_free(s->timer);
	free(s->heap);
	free(s);
}

void
deadline_init(struct deadline *d, struct deadlines *s)
{
	d->at_ns = 0;
	d->set = s;
	d->pos = 0;
}

size_t
deadlines_count(const struct deadlines *s)
{
	return s->n;
}

static void
place(struct deadlines *s, uint32_t i, struct deadline *d)
{
	s->heap[i] = d;
	d->pos = i + 1;
}

static void
sift_up(struct deadlines *s, uint32_t i)
{
	struct deadline *d = s->heap[i];

	while (i > 0) {
		uint32_t parent = (i - 1) / 2;

		if (s->heap[parent]->at_ns <= d->at_ns)
			break;
		place(s, i, s->heap[parent]);
		i = parent;
	}
	place(s, i, d);
}

static void
sift_down(struct deadlines *s, uint32_t i)
{
	struct deadline *d = s->heap[i];

	for (;;) {
		uint32_t child = 2 * i + 1;

		if (child >= s->n)
			break;
		if (child + 1 < s->n && s->heap[child + 1]->at_ns < s->heap[child]->at_ns)
			child++;
		if (d->at_ns <= s->heap[child]->at_ns)
			break;
		place(s, i, s->heap[child]);
		i = child;
	}
	place(s, i, d);
}

/* Arm the libevent timer for the earliest deadline if it is not armed for it or earlier. */
static void
arm(struct deadlines *s, int64_t now_ns)
{
	struct timeval tv;
	int64_t at, in;

	if (s->n == 0)
		return;		/* a timer armed for nothing fires once and finds nothing */
	at = s->heap[0]->at_ns;
	if (s->armed_ns != 0 && s->armed_ns <= at)
		return;
	in = at - now_ns;
	if (in < 0)
		in = 0;
	/* Rounded up: firing a little late is a timeout; a little early, a wasted wake-up. */
	in += 999;
	tv = proc_timeval(in);
	if (evtimer_add(s->timer, &tv) == 0)
		s->armed_ns = at;
}

static void
remove_at(struct deadlines *s, uint32_t i)
{
	struct deadline *last = s->heap[--s->n];

	if (i < s->n) {
		place(s, i, last);
		if (i > 0 && s->heap[(i - 1) / 2]->at_ns > last->at_ns)
			sift_up(s, i);
		else
			sift_down(s, i);
	}
}

void
deadline_ensure(struct deadline *d, int64_t at_ns, int64_t now_ns)
{
	struct deadlines *s = d->set;

	/* Armed to fire earlier: the owner looks again then and re-arms for the rest. */
	if (d->pos != 0 && d->at_ns <= at_ns)
		return;
	if (at_ns <= 0)
		at_ns = 1;	/* 0 means "not armed" */
	d->at_ns = at_ns;
	if (d->pos != 0) {
		sift_up(s, d->pos - 1);
	} else {
		if (s->n == s->cap) {
			uint32_t cap = s->cap == 0 ? HEAP_MIN_CAP : s->cap * 2;
			struct deadline **h = realloc(s->heap, cap * sizeof(*h));

			if (h == NULL) {
				d->at_ns = 0;
				return;	/* out of memory: the owner's other limits still apply */
			}
			s->heap = h;
			s->cap = cap;
		}
		s->heap[s->n] = d;
		s->n++;
		sift_up(s, s->n - 1);
	}
	arm(s, now_ns);
}

void
deadline_cancel(struct deadline *d)
{
	if (d->pos == 0)
		return;
	remove_at(d->set, d->pos - 1);
	d->pos = 0;
	d->at_ns = 0;
	/* The timer stays armed: firing early for nothing is cheaper than an event_del(). */
}

static void
set_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deadlines *s = arg;
	int64_t now = proc_now_ns();
	/* Deadlines armed again by fire() for now or earlier wait for the next turn. */
	uint32_t budget = s->n;

	s->armed_ns = 0;
	while (s->n > 0 && budget-- > 0 && s->heap[0]->at_ns <= now) {
		struct deadline *d = s->heap[0];

		remove_at(s, 0);
		d->pos = 0;
		d->at_ns = 0;
		s->fire(d);
	}
	arm(s, proc_now_ns());
}
