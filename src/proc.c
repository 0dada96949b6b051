/* Child processes: fork with a title and privileges dropped, describe exits, respawn backoff. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "roundguard/log.h"
#include "roundguard/proc.h"

#define RESPAWN_MIN_NS		(100 * INT64_C(1000000))
#define RESPAWN_MAX_NS		(5 * INT64_C(1000000000))
#define RESPAWN_HEALTHY_NS	INT64_C(1000000000)

int
proc_resolve_identity(const char *user, const char *group, struct proc_identity *id,
    char *err, size_t errlen)
{
	struct passwd *pw;
	struct group *gr;

	memset(id, 0, sizeof(*id));
	if (user[0] == '\0' && group[0] == '\0')
		return 0;
	id->uid = getuid();
	id->gid = getgid();
	if (user[0] != '\0') {
		errno = 0;
		if ((pw = getpwnam(user)) == NULL) {
			snprintf(err, errlen, "user: \"%s\": no such user%s%s", user,
			    errno != 0 ? ": " : "", errno != 0 ? strerror(errno) : "");
			return -1;
		}
		id->uid = pw->pw_uid;
		id->gid = pw->pw_gid;
		snprintf(id->user, sizeof(id->user), "%s", user);
	}
	if (group[0] != '\0') {
		errno = 0;
		if ((gr = getgrnam(group)) == NULL) {
			snprintf(err, errlen, "group: \"%s\": no such group%s%s", group,
			    errno != 0 ? ": " : "", errno != 0 ? strerror(errno) : "");
			return -1;
		}
		id->gid = gr->gr_gid;
	}
	id->drop = true;
	return 0;
}

int
proc_drop_privileges(const struct proc_identity *id, char *err, size_t errlen)
{
	if (!id->drop)
		return 0;
	if (geteuid() == 0 && setgroups(1, &id->gid) == -1) {
		snprintf(err, errlen, "setgroups(%u) failed: %s", (unsigned)id->gid, strerror(errno));
		return -1;
	}
	if (setgid(id->gid) == -1) {
		snprintf(err, errlen, "setgid(%u) failed: %s", (unsigned)id->gid, strerror(errno));
		return -1;
	}
	if (setuid(id->uid) == -1) {
		snprintf(err, errlen, "setuid(%u) failed: %s", (unsigned)id->uid, strerror(errno));
		return -1;
	}
	/* Make sure there is no way back (setuid must not have been a no-op). */
	if (id->uid != 0 && setuid(0) != -1) {
		snprintf(err, errlen, "could regain root after dropping privileges");
		return -1;
	}
	return 0;
}

void
proc_describe_exit(int status, char *buf, size_t buflen)
{
	if (WIFEXITED(status))
		snprintf(buf, buflen, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, buflen, "killed by signal %d (%s)%s", WTERMSIG(status),
		    strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, buflen, "stopped with status 0x%x", (unsigned)status);
}

int64_t
proc_respawn_delay(int64_t prev_delay_ns, int64_t lived_ns)
{
	int64_t next;

	if (lived_ns >= RESPAWN_HEALTHY_NS)
		return 0;
	next = prev_delay_ns < RESPAWN_MIN_NS ? RESPAWN_MIN_NS : prev_delay_ns * 2;
	return next > RESPAWN_MAX_NS ? RESPAWN_MAX_NS : next;
}

int64_t
proc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timeval
proc_timeval(int64_t ns)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ns / 1000000000);
	tv.tv_usec = (suseconds_t)(ns % 1000000000 / 1000);
	return tv;
}

static void
libevent_log(int severity, const char *msg)
{
	enum log_level level = severity == EVENT_LOG_DEBUG ? LOG_LEVEL_DEBUG :
	    severity == EVENT_LOG_MSG ? LOG_LEVEL_INFO :
	    severity == EVENT_LOG_WARN ? LOG_LEVEL_WARN : LOG_LEVEL_ERROR;

	log_msg(level, "libevent", "message", msg, NULL);
}

void
proc_route_libevent_logs(void)
{
	event_set_log_callback(libevent_log);
}
