/* Unit tests for proc.c: respawn backoff, exit descriptions, identity resolution, privilege drop, clock. */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "roundguard/proc.h"
#include "unit.h"

#define NS_MS INT64_C(1000000)
#define NS_S INT64_C(1000000000)

/* --- proc_respawn_delay ------------------------------------------------------------------ */

START_TEST(respawn_healthy_child_no_delay)
{
	ck_assert_int_eq(proc_respawn_delay(0, NS_S), 0);
	ck_assert_int_eq(proc_respawn_delay(0, 10 * NS_S), 0);
	/* A long life resets any backoff built up before. */
	ck_assert_int_eq(proc_respawn_delay(5 * NS_S, NS_S), 0);
	ck_assert_int_eq(proc_respawn_delay(800 * NS_MS, 3600 * NS_S), 0);
}
END_TEST

START_TEST(respawn_backoff_doubles_and_caps)
{
	static const int64_t want[] = {
		100 * NS_MS, 200 * NS_MS, 400 * NS_MS, 800 * NS_MS, 1600 * NS_MS, 3200 * NS_MS,
		5 * NS_S, 5 * NS_S, 5 * NS_S,
	};
	int64_t d = 0;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		d = proc_respawn_delay(d, 10 * NS_MS);
		ck_assert_msg(d == want[i], "step %zu: %lld ns, want %lld", i, (long long)d,
		    (long long)want[i]);
	}
	/* Healthy again: back to none, and the next early death starts over at 100 ms. */
	d = proc_respawn_delay(d, 2 * NS_S);
	ck_assert_int_eq(d, 0);
	ck_assert_int_eq(proc_respawn_delay(d, 0), 100 * NS_MS);
}
END_TEST

START_TEST(respawn_young_boundaries)
{
	/* Just under a second is still dying young. */
	ck_assert_int_eq(proc_respawn_delay(0, NS_S - 1), 100 * NS_MS);
	ck_assert_int_eq(proc_respawn_delay(0, 0), 100 * NS_MS);
	/* Anything under the minimum goes to the minimum. */
	ck_assert_int_eq(proc_respawn_delay(1, 0), 100 * NS_MS);
	ck_assert_int_eq(proc_respawn_delay(50 * NS_MS, 0), 100 * NS_MS);
	/* Never above 5 s, whatever it was given. */
	ck_assert_int_eq(proc_respawn_delay(4 * NS_S, 0), 5 * NS_S);
	ck_assert_int_eq(proc_respawn_delay(2500 * NS_MS + 1, 0), 5 * NS_S);
	ck_assert_int_eq(proc_respawn_delay(2500 * NS_MS, 0), 5 * NS_S);
	ck_assert_int_eq(proc_respawn_delay(2 * NS_S, 0), 4 * NS_S);
}
END_TEST

/* --- proc_describe_exit ------------------------------------------------------------------ */

/* Fork a child that exits with code, reap it, return its wait status. */
static int
status_of_exit(int code)
{
	int status = 0;
	pid_t pid = fork();

	ck_assert_int_ne(pid, -1);
	if (pid == 0)
		_exit(code);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

/* Fork a child that waits to be killed by sig, kill it, reap it, return its wait status. */
static int
status_of_signal(int sig)
{
	int status = 0, ready[2];
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };

		/* No core file, so no ", core dumped" and nothing left behind. */
		setrlimit(RLIMIT_CORE, &no_core);
		/*
		 * Check's SIGTERM/SIGINT handlers are inherited through the fork, and
		 * they signal the whole test's process group: back to the default
		 * before the parent may send anything.
		 */
		signal(sig, SIG_DFL);
		if (write(ready[1], "r", 1) != 1)
			_exit(99);
		for (;;)
			pause();
	}
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	ck_assert_int_eq(kill(pid, sig), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

START_TEST(describe_exit_status)
{
	char buf[128];

	proc_describe_exit(status_of_exit(3), buf, sizeof(buf));
	ck_assert_str_eq(buf, "exited with status 3");
	proc_describe_exit(status_of_exit(0), buf, sizeof(buf));
	ck_assert_str_eq(buf, "exited with status 0");
	proc_describe_exit(status_of_exit(255), buf, sizeof(buf));
	ck_assert_str_eq(buf, "exited with status 255");
}
END_TEST

START_TEST(describe_exit_signal)
{
	char buf[128];

	proc_describe_exit(status_of_signal(SIGKILL), buf, sizeof(buf));
	ck_assert_str_eq(buf, "killed by signal 9 (Killed)");
	proc_describe_exit(status_of_signal(SIGTERM), buf, sizeof(buf));
	ck_assert_str_eq(buf, "killed by signal 15 (Terminated)");
}
END_TEST

START_TEST(describe_exit_stopped)
{
	char buf[128];
	int status = 0, dead = 0;
	pid_t pid = fork();

	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		for (;;)
			pause();
	}
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(pid, &status, WUNTRACED), pid);
	ck_assert(WIFSTOPPED(status));
	proc_describe_exit(status, buf, sizeof(buf));
	kill(pid, SIGKILL);
	waitpid(pid, &dead, 0);
	ck_assert_msg(strncmp(buf, "stopped", 7) == 0, "got \"%s\"", buf);
}
END_TEST

START_TEST(describe_exit_truncates)
{
	char buf[8];

	memset(buf, 'x', sizeof(buf));
	proc_describe_exit(status_of_exit(3), buf, sizeof(buf));
	ck_assert_str_eq(buf, "exited ");
}
END_TEST

/* --- proc_resolve_identity --------------------------------------------------------------- */

START_TEST(identity_none)
{
	struct proc_identity id;
	char err[256] = "untouched";

	memset(&id, 0xa5, sizeof(id));
	ck_assert_int_eq(proc_resolve_identity("", "", &id, err, sizeof(err)), 0);
	ck_assert(!id.drop);
	ck_assert_str_eq(id.user, "");
	ck_assert_str_eq(err, "untouched");
}
END_TEST

START_TEST(identity_root_user)
{
	struct proc_identity id;
	char err[256] = "";

	ck_assert_int_eq(proc_resolve_identity("root", "", &id, err, sizeof(err)), 0);
	ck_assert(id.drop);
	ck_assert_uint_eq(id.uid, 0);
	ck_assert_uint_eq(id.gid, 0);	/* root's primary group */
	ck_assert_str_eq(id.user, "root");
}
END_TEST

START_TEST(identity_user_primary_group)
{
	struct proc_identity id;
	struct passwd *pw = getpwnam("nobody");
	uid_t want_uid;
	gid_t want_gid;
	char err[256] = "";

	if (pw == NULL)
		return;		/* no "nobody" on this system */
	want_uid = pw->pw_uid;
	want_gid = pw->pw_gid;
	ck_assert_int_eq(proc_resolve_identity("nobody", "", &id, err, sizeof(err)), 0);
	ck_assert(id.drop);
	ck_assert_uint_eq(id.uid, want_uid);
	ck_assert_uint_eq(id.gid, want_gid);
	ck_assert_str_eq(id.user, "nobody");

	/* An explicit group overrides the primary one. */
	ck_assert_int_eq(proc_resolve_identity("nobody", "root", &id, err, sizeof(err)), 0);
	ck_assert(id.drop);
	ck_assert_uint_eq(id.uid, want_uid);
	ck_assert_uint_eq(id.gid, 0);
}
END_TEST

START_TEST(identity_group_only)
{
	struct proc_identity id;
	char err[256] = "";

	ck_assert_int_eq(proc_resolve_identity("", "root", &id, err, sizeof(err)), 0);
	ck_assert(id.drop);
	ck_assert_uint_eq(id.uid, getuid());
	ck_assert_uint_eq(id.gid, 0);
	ck_assert_str_eq(id.user, "");
}
END_TEST

START_TEST(identity_no_such_user)
{
	struct proc_identity id;
	char err[256] = "";

	ck_assert_int_eq(proc_resolve_identity("no-such-user-rg", "", &id, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "no such user") != NULL, "err: %s", err);
	ck_assert_msg(strstr(err, "no-such-user-rg") != NULL, "err: %s", err);
	/* Whatever the group, a missing user is an error. */
	err[0] = '\0';
	ck_assert_int_eq(proc_resolve_identity("no-such-user-rg", "root", &id, err, sizeof(err)),
	    -1);
	ck_assert_msg(strstr(err, "no such user") != NULL, "err: %s", err);
	ck_assert(!id.drop);
}
END_TEST

START_TEST(identity_no_such_group)
{
	struct proc_identity id;
	char err[256] = "";

	ck_assert_int_eq(proc_resolve_identity("root", "no-such-group-rg", &id, err, sizeof(err)),
	    -1);
	ck_assert_msg(strstr(err, "no such group") != NULL, "err: %s", err);
	ck_assert_msg(strstr(err, "no-such-group-rg") != NULL, "err: %s", err);
	ck_assert(!id.drop);

	err[0] = '\0';
	ck_assert_int_eq(proc_resolve_identity("", "no-such-group-rg", &id, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "no such group") != NULL, "err: %s", err);
	ck_assert(!id.drop);
}
END_TEST

START_TEST(identity_error_truncates)
{
	struct proc_identity id;
	char err[8];

	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(proc_resolve_identity("no-such-user-rg", "", &id, err, sizeof(err)), -1);
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
}
END_TEST

/* --- proc_drop_privileges ---------------------------------------------------------------- */

START_TEST(drop_disabled_is_noop)
{
	struct proc_identity id;
	char err[256] = "untouched";
	uid_t uid = getuid(), euid = geteuid();
	gid_t gid = getgid();

	ck_assert_int_eq(proc_resolve_identity("", "", &id, err, sizeof(err)), 0);
	ck_assert_int_eq(proc_drop_privileges(&id, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "untouched");
	ck_assert_uint_eq(getuid(), uid);
	ck_assert_uint_eq(geteuid(), euid);
	ck_assert_uint_eq(getgid(), gid);

	/* drop false wins over whatever else the struct holds. */
	memset(&id, 0, sizeof(id));
	id.uid = 65534;
	id.gid = 65534;
	ck_assert_int_eq(proc_drop_privileges(&id, err, sizeof(err)), 0);
	ck_assert_uint_eq(getuid(), uid);
	ck_assert_uint_eq(geteuid(), euid);
}
END_TEST

/*
 * In a forked child (root only): drop to nobody, check the ids, the groups, that root
 * cannot be regained, and that a second drop back to root fails with a message.
 * Exit codes name the check that failed.
 */
static int
drop_child(uid_t want_uid, gid_t want_gid)
{
	struct proc_identity id, back;
	char err[256] = "";
	gid_t groups[8];
	int n;

	if (proc_resolve_identity("nobody", "", &id, err, sizeof(err)) != 0)
		return 10;
	if (proc_drop_privileges(&id, err, sizeof(err)) != 0)
		return 11;
	if (getuid() != want_uid || geteuid() != want_uid)
		return 12;
	if (getgid() != want_gid || getegid() != want_gid)
		return 13;
	n = getgroups(8, groups);
	if (n != 1 || groups[0] != want_gid)
		return 14;
	if (setuid(0) != -1 || seteuid(0) != -1)
		return 15;
	/* No way back through proc_drop_privileges either. */
	if (proc_resolve_identity("root", "", &back, err, sizeof(err)) != 0)
		return 16;
	err[0] = '\0';
	if (proc_drop_privileges(&back, err, sizeof(err)) != -1)
		return 17;
	if (strstr(err, "failed") == NULL)
		return 18;
	if (getuid() != want_uid)
		return 19;
	return 0;
}

START_TEST(drop_to_nobody_in_child)
{
	struct passwd *pw;
	uid_t want_uid;
	gid_t want_gid;
	int status = 0;
	pid_t pid;

	if (geteuid() != 0 || (pw = getpwnam("nobody")) == NULL)
		return;		/* needs root and a "nobody" user */
	want_uid = pw->pw_uid;
	want_gid = pw->pw_gid;
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0)
		_exit(drop_child(want_uid, want_gid));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_msg(WEXITSTATUS(status) == 0, "child check %d failed", WEXITSTATUS(status));
	/* The test process itself is untouched. */
	ck_assert_uint_eq(geteuid(), 0);
}
END_TEST

/* --- proc_now_ns ------------------------------------------------------------------------- */

START_TEST(now_monotonic)
{
	struct timespec ts, nap = { 0, 20 * 1000000 };
	int64_t a, b, c, ref;

	a = proc_now_ns();
	ck_assert_int_gt(a, 0);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ref = (int64_t)ts.tv_sec * NS_S + ts.tv_nsec;
	b = proc_now_ns();
	/* Same clock as CLOCK_MONOTONIC, in nanoseconds. */
	ck_assert_int_le(a, ref);
	ck_assert_int_le(ref, b);
	for (int i = 0; i < 1000; i++) {
		c = proc_now_ns();
		ck_assert_int_ge(c, b);
		b = c;
	}
	while (nanosleep(&nap, &nap) == -1 && errno == EINTR)
		;
	c = proc_now_ns();
	ck_assert_int_ge(c - a, 20 * NS_MS);
	ck_assert_int_lt(c - a, 10 * NS_S);
}
END_TEST

/* --- proc_timeval ------------------------------------------------------------------------ */

START_TEST(timeval_of_ns)
{
	struct timeval tv = proc_timeval(1500 * NS_MS + 999);

	ck_assert_int_eq(tv.tv_sec, 1);
	ck_assert_int_eq(tv.tv_usec, 500000);	/* the nanoseconds below a microsecond cut */
	tv = proc_timeval(999);
	ck_assert_int_eq(tv.tv_sec, 0);
	ck_assert_int_eq(tv.tv_usec, 0);
	tv = proc_timeval(3600 * NS_S);
	ck_assert_int_eq(tv.tv_sec, 3600);
	ck_assert_int_eq(tv.tv_usec, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("proc");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, respawn_healthy_child_no_delay);
	tcase_add_test(tc, respawn_backoff_doubles_and_caps);
	tcase_add_test(tc, respawn_young_boundaries);
	tcase_add_test(tc, describe_exit_status);
	tcase_add_test(tc, describe_exit_signal);
	tcase_add_test(tc, describe_exit_stopped);
	tcase_add_test(tc, describe_exit_truncates);
	tcase_add_test(tc, identity_none);
	tcase_add_test(tc, identity_root_user);
	tcase_add_test(tc, identity_user_primary_group);
	tcase_add_test(tc, identity_group_only);
	tcase_add_test(tc, identity_no_such_user);
	tcase_add_test(tc, identity_no_such_group);
	tcase_add_test(tc, identity_error_truncates);
	tcase_add_test(tc, drop_disabled_is_noop);
	tcase_add_test(tc, drop_to_nobody_in_child);
	tcase_add_test(tc, now_monotonic);
	tcase_add_test(tc, timeval_of_ns);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
