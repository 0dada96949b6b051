/* Lazily re-armed timers for connections whose deadline moves on every read and write. */
#ifndef ROUNDGUARD_DEADLINE_H
#define ROUNDGUARD_DEADLINE_H

#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

/*
 * A timeout that restarts on every read, as an event's own timeout does,
 * costs an event_add() per read: about 360 instructions, four times per
 * proxied request. A deadline instead keeps its timer where it is and lets
 * the owner store the time of its last activity; when the timer fires, the
 * owner compares that time with its limit and either acts or asks to be
 * woken again at the real deadline (nginx's lazy timer updates work alike).
 * Only moving a deadline earlier than the armed time costs an event_add().
 */
struct deadline {
	struct event ev;
	int64_t at_ns;		/* when ev fires (monotonic); 0 when not armed */
};

void deadline_assign(struct deadline *d, struct event_base *base, event_callback_fn cb,
    void *arg);

/* Fire no later than at_ns; now_ns is the current time (proc_now_ns()). */
void deadline_ensure(struct deadline *d, int64_t at_ns, int64_t now_ns);

/* Call first thing in the callback: the timer is no longer armed. */
void deadline_fired(struct deadline *d);

void deadline_cancel(struct deadline *d);

#endif
