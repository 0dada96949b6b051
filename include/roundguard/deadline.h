/* Lazily re-armed timers for connections whose deadline moves on every read and write. */
#ifndef ROUNDGUARD_DEADLINE_H
#define ROUNDGUARD_DEADLINE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct deadlines;

/*
 * A timeout that restarts on every read, as an event's own timeout does,
 * costs an event_add() per read: about 360 instructions, four times per
 * proxied request. A deadline instead keeps its place where it is and lets
 * the owner store the time of its last activity; when it fires, the owner
 * compares that time with its limit and either acts or asks to be woken
 * again at the real deadline (nginx's lazy timer updates work alike). Only
 * moving a deadline earlier than the armed time costs anything (a heap
 * sift).
 *
 * Deadlines live in a per-worker set (struct deadlines): a binary min-heap
 * behind one libevent timer. A libevent event per connection would be 136
 * bytes of every idle connection; a deadline is 24, plus 8 in the heap while
 * armed.
 */
struct deadline {
	int64_t at_ns;		/* when it fires (monotonic); 0 when not armed */
	struct deadlines *set;
	uint32_t pos;		/* 1-based place in the set's heap; 0 when not armed */
};

/*
 * A set whose deadlines are handed to fire(d) when due. fire gets the
 * deadline already disarmed (it may arm it again, or free its owner).
 */
struct deadlines *deadlines_new(struct event_base *base, void (*fire)(struct deadline *d));
void deadlines_free(struct deadlines *s);

/* A deadline of set s, not armed. */
void deadline_init(struct deadline *d, struct deadlines *s);

/* Fire no later than at_ns; now_ns is the current time (proc_now_ns()). */
void deadline_ensure(struct deadline *d, int64_t at_ns, int64_t now_ns);

void deadline_cancel(struct deadline *d);

/* Armed deadlines in s (for tests and leak checks). */
size_t deadlines_count(const struct deadlines *s);

/* The struct holding member m at address p (for fire callbacks). */
#define deadline_owner(p, type, m) ((type *)(void *)((char *)(p) - offsetof(type, m)))

#endif
