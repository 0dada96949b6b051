/* Child processes: fork with a title and privileges dropped, describe exits, respawn backoff. */
#ifndef ROUNDGUARD_PROC_H
#define ROUNDGUARD_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>

/* Who the children run as; resolved once by the master. */
struct proc_identity {
	bool drop;		/* a user (and maybe a group) was configured */
	uid_t uid;
	gid_t gid;
	char user[64];
};

/*
 * Resolve the configured user and group ("" = not set). A user that does not
 * exist is an error: the children must never keep running as root by
 * mistake. Without a group, the user's primary group is used.
 */
int proc_resolve_identity(const char *user, const char *group, struct proc_identity *id,
    char *err, size_t errlen);

/* In a child: setgroups, setgid, setuid to id; -1 with err on failure. */
int proc_drop_privileges(const struct proc_identity *id, char *err, size_t errlen);

/* "exited with status 1", "killed by signal 9 (Killed)". */
void proc_describe_exit(int status, char *buf, size_t buflen);

/*
 * Delay before starting a dead child again: none when it had lived for a
 * second or more, else 100 ms doubling up to 5 s while it keeps dying young.
 */
int64_t proc_respawn_delay(int64_t prev_delay_ns, int64_t lived_ns);

/* Send libevent's own warnings through our logger (with proc and pid) instead of raw stderr. */
void proc_route_libevent_logs(void);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t proc_now_ns(void);

/* ns nanoseconds as a struct timeval (for evtimer_add() and socket timeouts); microseconds cut. */
struct timeval proc_timeval(int64_t ns);

#endif
