/*
 * The master's control socket: roundguardctl's requests (control.h), one per
 * connection, carried out on the current generation's segment. The master is
 * the only writer of the administrative state; a change is answered once the
 * health checker has published a schedule that includes it.
 */
#ifndef ROUNDGUARD_CONTROL_SERVER_H
#define ROUNDGUARD_CONTROL_SERVER_H

#include <stddef.h>
#include <sys/types.h>

#include <event2/event.h>

#include "roundguard/config-t.h"
#include "roundguard/shm.h"

/* What the master runs now; from a callback, since a reload changes it. */
struct control_view {
	const struct config *cfg;
	struct shm *shm;
	pid_t checker;		/* 0 while it is being respawned */
	unsigned generation;
	int workers;
};

/*
 * Fill v with the generation that serves: 0, or -1 when there is none
 * (starting, stopping). pending (may be NULL) gets one a reload is starting
 * (its shm NULL when none): a change goes into both, since the new one
 * already copied the old one's state.
 */
typedef int control_view_fn(struct control_view *v, struct control_view *pending);

/*
 * Listen on path (mode 0660, group gid unless (gid_t)-1; a stale socket
 * left by a dead master is replaced, a live one is not). -1 with err set.
 */
int control_server_start(struct event_base *base, const char *path, gid_t gid,
    control_view_fn *view, char *err, size_t errlen);

/* Stop listening, drop connections in progress and remove the socket file. */
void control_server_stop(void);

/*
 * In a child after fork: close the socket and connections inherited from the
 * master (the socket file stays; the master's event loop is not the child's).
 */
void control_server_forget(void);

#endif
