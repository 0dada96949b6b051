/* Unit tests for checker.c: rise/fall hysteresis, result names, and a real checker process on loopback. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "roundguard/checker.h"
#include "roundguard/config.h"
#include "roundguard/log.h"
#include "roundguard/shm.h"
#include "unit.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define NS_MS INT64_C(1000000)

/* ---- check_state_apply ---- */

struct step {
	bool ok;
	bool changed;
	bool up;
	uint32_t successes;
	uint32_t failures;
};

static void
run_steps(struct check_state *st, uint32_t rise, uint32_t fall, const struct step *steps,
    size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool changed = check_state_apply(st, steps[i].ok, rise, fall);

		ck_assert_msg(changed == steps[i].changed, "step %zu: changed %d, want %d", i,
		    changed, steps[i].changed);
		ck_assert_msg(st->up == steps[i].up, "step %zu: up %d, want %d", i, st->up,
		    steps[i].up);
		ck_assert_msg(st->successes == steps[i].successes,
		    "step %zu: successes %u, want %u", i, st->successes, steps[i].successes);
		ck_assert_msg(st->failures == steps[i].failures,
		    "step %zu: failures %u, want %u", i, st->failures, steps[i].failures);
	}
}

START_TEST(hysteresis_1_1)
{
	/* The Go behaviour: out at the first failure, back at the first success. */
	static const struct step steps[] = {
		{ false, false, false, 0, 1 },
		{ true, true, true, 1, 0 },
		{ true, false, true, 2, 0 },
		{ false, true, false, 0, 1 },
		{ false, false, false, 0, 2 },
		{ true, true, true, 1, 0 },
	};
	struct check_state st = { 0 };

	run_steps(&st, 1, 1, steps, COUNT(steps));
}
END_TEST

START_TEST(hysteresis_2_3)
{
	static const struct step steps[] = {
		{ true, false, false, 1, 0 },
		{ true, true, true, 2, 0 },
		{ false, false, true, 0, 1 },
		{ false, false, true, 0, 2 },
		{ true, false, true, 1, 0 },	/* a success in between starts over */
		{ false, false, true, 0, 1 },
		{ false, false, true, 0, 2 },
		{ false, true, false, 0, 3 },
		{ false, false, false, 0, 4 },
		{ true, false, false, 1, 0 },
		{ false, false, false, 0, 1 },
		{ true, false, false, 1, 0 },
		{ true, true, true, 2, 0 },
	};
	struct check_state st = { 0 };

	run_steps(&st, 2, 3, steps, COUNT(steps));
}
END_TEST

START_TEST(hysteresis_repeated_successes)
{
	struct check_state st = { 0 };
	int transitions = 0;

	for (int i = 0; i < 100; i++)
		transitions += check_state_apply(&st, true, 3, 2);
	ck_assert_int_eq(transitions, 1);
	ck_assert(st.up);
	ck_assert_uint_eq(st.successes, 100);
	ck_assert_uint_eq(st.failures, 0);
}
END_TEST

START_TEST(hysteresis_alternating)
{
	struct check_state down = { 0 };
	struct check_state up = { .up = true, .successes = 5 };

	/* With rise and fall 2, flapping never moves a backend either way. */
	for (int i = 0; i < 50; i++) {
		ck_assert(!check_state_apply(&down, i % 2 == 0, 2, 2));
		ck_assert(!check_state_apply(&up, i % 2 == 1, 2, 2));
	}
	ck_assert(!down.up);
	ck_assert(up.up);
	ck_assert_uint_le(down.successes + down.failures, 1);
	ck_assert_uint_le(up.successes + up.failures, 1);

	/* With 1/1 every flip is a transition. */
	for (int i = 0; i < 10; i++)
		ck_assert(check_state_apply(&down, !down.up, 1, 1));
}
END_TEST

START_TEST(hysteresis_counters)
{
	struct check_state st = { .up = true, .successes = UINT32_MAX - 1 };

	check_state_apply(&st, true, 1, 1);
	check_state_apply(&st, true, 1, 1);
	ck_assert_uint_eq(st.successes, UINT32_MAX);	/* saturates */
	ck_assert_uint_eq(st.failures, 0);

	st = (struct check_state){ .up = false, .failures = UINT32_MAX };
	ck_assert(!check_state_apply(&st, false, 1, 1));
	ck_assert_uint_eq(st.failures, UINT32_MAX);
	ck_assert(check_state_apply(&st, true, 1, 1));
	ck_assert_uint_eq(st.failures, 0);
	ck_assert_uint_eq(st.successes, 1);

	/* Thresholds of 0 behave as 1: a failure never brings a backend up. */
	st = (struct check_state){ 0 };
	ck_assert(!check_state_apply(&st, false, 0, 0));
	ck_assert(!st.up);
	ck_assert(check_state_apply(&st, true, 0, 0));
	ck_assert(check_state_apply(&st, false, 0, 0));
}
END_TEST

/* ---- check_result_str ---- */

START_TEST(result_names)
{
	static const struct {
		enum check_result r;
		const char *name;
	} cases[] = {
		{ CHECK_OK, "ok" },
		{ CHECK_CONNECT_REFUSED, "connect refused" },
		{ CHECK_CONNECT_FAILED, "connect failed" },
		{ CHECK_TIMEOUT, "timeout" },
		{ CHECK_RESET, "connection reset" },
		{ CHECK_BAD_RESPONSE, "bad response" },
		{ CHECK_STATUS, "unexpected status" },
		{ CHECK_RESOLVE, "resolve failed" },
		{ CHECK_NONE, "not checked" },
	};

	for (size_t i = 0; i < COUNT(cases); i++)
		ck_assert_str_eq(check_result_str(cases[i].r), cases[i].name);
	ck_assert_ptr_nonnull(check_result_str((enum check_result)99));
}
END_TEST

/* ---- checker_main in a child process, against loopback servers ---- */

enum srv_mode {
	SRV_OK,		/* 200 for exactly the expected request, 400 otherwise */
	SRV_FLIP,	/* 500, or 200 while *flip is set */
	SRV_GARBAGE,	/* not HTTP */
	SRV_CLOSE,	/* accept and close at once */
	SRV_LONG,	/* a response head that never ends */
};

enum {
	B_OK,
	B_REFUSED,
	B_FLIP,
	B_SILENT,	/* listening, never accepting: the probe times out */
	B_GARBAGE,
	B_CLOSE,
	B_LONG,
	B_UNRESOLVED,
	NB,
};

struct srv {
	int fd;
	uint16_t port;
	enum srv_mode mode;
};

static int
listen_backlog(uint16_t *port, int backlog)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, backlog), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static int
listen_loopback(uint16_t *port)
{
	return listen_backlog(port, 64);
}

/* A port with nothing listening: bound once, then released. */
static uint16_t
free_port(void)
{
	uint16_t port;

	close(listen_loopback(&port));
	return port;
}

static void
srv_answer(int fd, enum srv_mode mode, uint16_t port, const _Atomic int *flip)
{
	char want[256], req[4096];
	struct timeval tv = { 1, 0 };
	static const char long_start[] = "HTTP/1.1 200 OK\r\nX-Long: ";
	static char long_head[20000];
	const char *resp;
	size_t len = 0;
	ssize_t n;

	if (mode == SRV_CLOSE)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (len < sizeof(req) - 1) {
		n = recv(fd, req + len, sizeof(req) - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL)
			break;
	}
	req[len] = '\0';
	snprintf(want, sizeof(want), "GET /live HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
	    "User-Agent: roundguard-health-check\r\nConnection: close\r\n\r\n", port);
	if (mode == SRV_LONG) {
		memset(long_head, 'a', sizeof(long_head) - 1);
		memcpy(long_head, long_start, strlen(long_start));
		resp = long_head;
	} else if (mode == SRV_GARBAGE)
		resp = "garbage\r\n\r\n";
	else if (strcmp(req, want) != 0)
		resp = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
	else if (mode == SRV_OK || (mode == SRV_FLIP && atomic_load(flip)))
		resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	else
		resp = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
	(void)!send(fd, resp, strlen(resp), MSG_NOSIGNAL);
}

/* The servers' process: one at a time is plenty for a few probes per round. */
static void
srv_loop(const struct srv *srv, size_t n, const _Atomic int *flip)
{
	struct pollfd pfd[8];
	int fd;

	for (size_t i = 0; i < n; i++)
		pfd[i] = (struct pollfd){ .fd = srv[i].fd, .events = POLLIN };
	for (;;) {
		if (poll(pfd, n, -1) <= 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			fd = accept(srv[i].fd, NULL, NULL);
			if (fd == -1)
				continue;
			srv_answer(fd, srv[i].mode, srv[i].port, flip);
			close(fd);
		}
	}
}

/* Fork a child that dies with the test process, whatever happens to it. */
static pid_t
fork_child(void)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	return pid;
}

static void
set_backend(struct config_backend *b, uint16_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&b->sa;

	snprintf(b->addr.host, sizeof(b->addr.host), "127.0.0.1");
	b->addr.port = port;
	snprintf(b->addr.hostport, sizeof(b->addr.hostport), "127.0.0.1:%u", port);
	snprintf(b->url, sizeof(b->url), "http://%s", b->addr.hostport);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	b->salen = sizeof(*sin);
}

/* The built-in defaults, with the health settings a test needs and room for nbackends. */
static void
test_config(struct config *cfg, size_t nbackends, int64_t interval_ns, int64_t timeout_ns)
{
	config_defaults(cfg);
	ck_assert_str_eq(cfg->health.path, "/live");
	ck_assert_int_eq(cfg->health.expect_status, 200);
	cfg->health.interval_ns = interval_ns;
	cfg->health.timeout_ns = timeout_ns;
	cfg->health.timeout_set = true;
	cfg->health.rise = 1;
	cfg->health.fall = 1;
	cfg->nbackends = nbackends;
	cfg->backends = calloc(nbackends, sizeof(*cfg->backends));
	ck_assert_ptr_nonnull(cfg->backends);
}

/* The checker's side of the fork: its log goes to logfd, its exit status is checker_main's. */
static void
run_checker(struct config *cfg, struct shm *shm, int ready_fd, int logfd)
{
	int rc;

	if (logfd != -1)
		dup2(logfd, STDERR_FILENO);
	log_set_format(LOG_FORMAT_TEXT);
	log_set_level(LOG_LEVEL_INFO);
	rc = checker_main(cfg, shm, NULL, ready_fd);
	shm_unmap(shm);
	free(cfg->backends);
	exit(rc);	/* exit(), not _exit(): LeakSanitizer checks the checker here */
}

/* 1 byte, 0 for EOF, -1 for nothing within ms. */
static int
wait_ready(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&pfd, 1, ms) != 1)
		return -1;
	return (int)read(fd, &c, 1);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Poll until backend i's live bit is want; false after ms. */
static bool
wait_live(const struct shm *shm, uint32_t i, bool want, int ms)
{
	for (int t = 0; t < ms; t += 10) {
		if (shm_is_live(shm, i) == want)
			return true;
		sleep_ms(10);
	}
	return shm_is_live(shm, i) == want;
}

static uint64_t
passes(const struct shm *shm)
{
	return atomic_load(&shm->hdr->check_passes);
}

static bool
wait_passes(const struct shm *shm, uint64_t want, int ms)
{
	for (int t = 0; t < ms && passes(shm) < want; t += 10)
		sleep_ms(10);
	return passes(shm) >= want;
}

static void
stop_checker(pid_t pid)
{
	int status;

	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status), "checker did not exit (signal %d)",
	    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}

static char *
read_log(int fd)
{
	static char buf[65536];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	return buf;
}

static int
count_lines(const char *log, const char *needle)
{
	int n = 0;

	for (const char *p = log; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void
assert_logged(const char *log, const char *fmt, uint16_t port, int times)
{
	char needle[256];

	snprintf(needle, sizeof(needle), fmt, port);
	ck_assert_msg(count_lines(log, needle) == times, "\"%s\" logged %d times, want %d\n%s",
	    needle, count_lines(log, needle), times, log);
}

START_TEST(checker_probes)
{
	struct srv srv[5];
	struct config cfg;
	struct shm shm;
	_Atomic int *flip;
	uint16_t port[NB];
	char name[64], err[256], *log;
	int silent_fd, pipefd[2], logfd;
	pid_t srv_pid, pid;
	uint64_t ok0, base;

	flip = mmap(NULL, sizeof(*flip), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	ck_assert_ptr_ne(flip, MAP_FAILED);
	atomic_store(flip, 0);

	srv[0] = (struct srv){ .mode = SRV_OK };
	srv[1] = (struct srv){ .mode = SRV_FLIP };
	srv[2] = (struct srv){ .mode = SRV_GARBAGE };
	srv[3] = (struct srv){ .mode = SRV_CLOSE };
	srv[4] = (struct srv){ .mode = SRV_LONG };
	for (size_t i = 0; i < COUNT(srv); i++)
		srv[i].fd = listen_loopback(&srv[i].port);
	port[B_OK] = srv[0].port;
	port[B_FLIP] = srv[1].port;
	port[B_GARBAGE] = srv[2].port;
	port[B_CLOSE] = srv[3].port;
	port[B_LONG] = srv[4].port;
	port[B_REFUSED] = free_port();
	silent_fd = listen_loopback(&port[B_SILENT]);
	port[B_UNRESOLVED] = 80;

	if ((srv_pid = fork_child()) == 0) {
		srv_loop(srv, COUNT(srv), flip);
		_exit(0);
	}
	for (size_t i = 0; i < COUNT(srv); i++)
		close(srv[i].fd);

	test_config(&cfg, NB, 200 * NS_MS, 100 * NS_MS);
	/* rise 2: the first probe decides anyway, later recoveries need two in a row. */
	cfg.health.rise = 2;
	for (int i = 0; i < NB; i++)
		set_backend(&cfg.backends[i], port[i]);
	cfg.backends[B_UNRESOLVED].salen = 0;
	snprintf(cfg.backends[B_UNRESOLVED].addr.hostport,
	    sizeof(cfg.backends[B_UNRESOLVED].addr.hostport), "unresolved.invalid:80");

	snprintf(name, sizeof(name), "/rgtest.%ld", (long)getpid());
	ck_assert_msg(shm_create(&shm, name, NB, 1, err, sizeof(err)) == 0, "%s", err);
	logfd = fileno(tmpfile());
	ck_assert_int_ne(logfd, -1);
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);

	if ((pid = fork_child()) == 0) {
		close(pipefd[0]);
		run_checker(&cfg, &shm, pipefd[1], logfd);
	}
	close(pipefd[1]);
	ck_assert_int_eq(wait_ready(pipefd[0], 5000), 1);
	close(pipefd[0]);

	/* The first pass decided everything, rise 2 notwithstanding. */
	ck_assert_uint_ge(passes(&shm), 1);
	ck_assert(shm_is_live(&shm, B_OK));
	for (int i = B_OK + 1; i < NB; i++)
		ck_assert_msg(!shm_is_live(&shm, (uint32_t)i), "backend %d live", i);
	ck_assert_uint_eq(shm_live_count(&shm), 1);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_OK].up), 1);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_OK].last_result), CHECK_OK);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_OK].last_status), 200);
	ck_assert_uint_ge(atomic_load(&shm.backends[B_OK].checks_ok), 1);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_OK].checks_failed), 0);
	ck_assert_int_gt(atomic_load(&shm.backends[B_OK].changed_ns), 0);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_REFUSED].last_result),
	    CHECK_CONNECT_REFUSED);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_REFUSED].last_status), 0);
	ck_assert_uint_ge(atomic_load(&shm.backends[B_REFUSED].checks_failed), 1);
	ck_assert_uint_ge(atomic_load(&shm.backends[B_REFUSED].failures), 1);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_REFUSED].successes), 0);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_FLIP].last_result), CHECK_STATUS);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_FLIP].last_status), 500);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_SILENT].last_result), CHECK_TIMEOUT);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_GARBAGE].last_result), CHECK_BAD_RESPONSE);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_CLOSE].last_result), CHECK_RESET);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_LONG].last_result), CHECK_BAD_RESPONSE);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_UNRESOLVED].last_result), CHECK_RESOLVE);

	/* Rounds keep coming, every interval. */
	base = passes(&shm);
	ok0 = atomic_load(&shm.backends[B_OK].checks_ok);
	ck_assert(wait_passes(&shm, base + 2, 2000));
	ck_assert_uint_gt(atomic_load(&shm.backends[B_OK].checks_ok), ok0);

	/* A worker clears a bit (passive detection): the next probe sets it again. */
	shm_set_live(&shm, B_OK, false);
	ck_assert(wait_live(&shm, B_OK, true, 2000));

	/* Recovery needs rise (2) successes in a row, then is logged once. */
	atomic_store(flip, 1);
	ck_assert(wait_live(&shm, B_FLIP, true, 3000));
	ck_assert_uint_ge(atomic_load(&shm.backends[B_FLIP].successes), 2);
	ck_assert_uint_eq(atomic_load(&shm.backends[B_FLIP].last_status), 200);
	/* fall 1: out again at the first 500. */
	atomic_store(flip, 0);
	ck_assert(wait_live(&shm, B_FLIP, false, 3000));
	ck_assert_uint_eq(atomic_load(&shm.backends[B_FLIP].last_result), CHECK_STATUS);

	stop_checker(pid);
	kill(srv_pid, SIGKILL);
	waitpid(srv_pid, NULL, 0);
	close(silent_fd);

	log = read_log(logfd);
	/* Initial state: down ones at warn with a reason and no was_up, up ones not at info. */
	assert_logged(log, "WARN backend down backend=127.0.0.1:%u reason=\"connect refused\"\n",
	    port[B_REFUSED], 1);
	assert_logged(log, "WARN backend down backend=127.0.0.1:%u reason=\"status 500\"\n",
	    port[B_FLIP], 1);
	assert_logged(log, "WARN backend down backend=127.0.0.1:%u reason=timeout\n",
	    port[B_SILENT], 1);
	assert_logged(log, "WARN backend down backend=127.0.0.1:%u reason=\"bad response\"\n",
	    port[B_GARBAGE], 1);
	assert_logged(log, "WARN backend down backend=127.0.0.1:%u reason=\"connection reset\"\n",
	    port[B_CLOSE], 1);
	assert_logged(log, "WARN backend down backend=127.0.0.1:%u reason=\"bad response\"\n",
	    port[B_LONG], 1);
	ck_assert_msg(strstr(log, "WARN backend down backend=unresolved.invalid:80 "
	    "reason=\"resolve failed\"\n") != NULL, "%s", log);
	assert_logged(log, "backend up backend=127.0.0.1:%u", port[B_OK], 0);
	/* The flip: each transition once, with how long the old state lasted. */
	assert_logged(log, "INFO backend up backend=127.0.0.1:%u was_down=", port[B_FLIP], 1);
	assert_logged(log, "WARN backend down backend=127.0.0.1:%u reason=\"status 500\" was_up=",
	    port[B_FLIP], 1);
	/* Every backend but B_OK once at start-up, then B_FLIP once more. */
	ck_assert_int_eq(count_lines(log, "backend down"), (NB - 1) + 1);
	ck_assert_int_eq(count_lines(log, "backend up"), 1);

	shm_destroy(&shm);
	free(cfg.backends);
	munmap(flip, sizeof(*flip));
}
END_TEST

START_TEST(checker_stops_mid_probe)
{
	struct pollfd pfd;
	struct config cfg;
	struct shm shm;
	char name[64], err[256];
	int silent_fd, pipefd[2];
	uint16_t port;
	pid_t pid;

	/* A backend that never answers, probed with a long timeout. */
	silent_fd = listen_loopback(&port);
	test_config(&cfg, 1, 10000 * NS_MS, 5000 * NS_MS);
	set_backend(&cfg.backends[0], port);
	snprintf(name, sizeof(name), "/rgtest.%ld.stop", (long)getpid());
	ck_assert_msg(shm_create(&shm, name, 1, 1, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);

	if ((pid = fork_child()) == 0) {
		close(pipefd[0]);
		close(silent_fd);
		run_checker(&cfg, &shm, pipefd[1], open("/dev/null", O_WRONLY));
	}
	close(pipefd[1]);
	/* A queued connection means the probe is under way, so the signals are handled. */
	pfd = (struct pollfd){ .fd = silent_fd, .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);

	stop_checker(pid);
	/* Stopped before its first pass: never ready, and the pipe is closed. */
	ck_assert_int_eq(wait_ready(pipefd[0], 1000), 0);
	ck_assert_uint_eq(passes(&shm), 0);
	ck_assert_uint_eq(atomic_load(&shm.backends[0].last_result), CHECK_NONE);

	close(pipefd[0]);
	close(silent_fd);
	shm_destroy(&shm);
	free(cfg.backends);
}
END_TEST

START_TEST(checker_scales)
{
	enum { N = 1100 };
	static const uint32_t ok[] = { 0, 63, 64, N - 1 };
	struct srv srv = { .mode = SRV_OK };
	struct config cfg;
	struct shm shm;
	struct rlimit rl;
	char name[64], err[256];
	int silent_fd, pipefd[2];
	uint16_t silent_port;
	pid_t srv_pid, pid;
	uint32_t live = 0;

	srv.fd = listen_loopback(&srv.port);
	if ((srv_pid = fork_child()) == 0) {
		srv_loop(&srv, 1, NULL);
		_exit(0);
	}
	close(srv.fd);
	/* Everything else hangs until the timeout: all N sockets are open at once. */
	silent_fd = listen_backlog(&silent_port, 4096);

	test_config(&cfg, N, 500 * NS_MS, 200 * NS_MS);
	for (uint32_t i = 0; i < N; i++)
		set_backend(&cfg.backends[i], silent_port);
	for (size_t i = 0; i < COUNT(ok); i++)
		set_backend(&cfg.backends[ok[i]], srv.port);
	snprintf(name, sizeof(name), "/rgtest.%ld.scale", (long)getpid());
	ck_assert_msg(shm_create(&shm, name, N, 1, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);

	if ((pid = fork_child()) == 0) {
		close(pipefd[0]);
		/* A low soft limit, as under systemd: the checker must raise it itself. */
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max >= 2 * N) {
			rl.rlim_cur = 256;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		run_checker(&cfg, &shm, pipefd[1], open("/dev/null", O_WRONLY));
	}
	close(pipefd[1]);
	ck_assert_int_eq(wait_ready(pipefd[0], 10000), 1);
	close(pipefd[0]);

	for (size_t i = 0; i < COUNT(ok); i++) {
		ck_assert_msg(shm_is_live(&shm, ok[i]), "backend %u not live", ok[i]);
		ck_assert_uint_eq(atomic_load(&shm.backends[ok[i]].last_result), CHECK_OK);
	}
	for (uint32_t i = 0; i < N; i++)
		live += shm_is_live(&shm, i);
	ck_assert_uint_eq(live, COUNT(ok));
	ck_assert_uint_eq(shm_live_count(&shm), COUNT(ok));
	ck_assert_uint_eq(atomic_load(&shm.backends[1].last_result), CHECK_TIMEOUT);
	ck_assert_uint_eq(atomic_load(&shm.backends[N - 2].last_result), CHECK_TIMEOUT);

	stop_checker(pid);
	kill(srv_pid, SIGKILL);
	waitpid(srv_pid, NULL, 0);
	close(silent_fd);
	shm_destroy(&shm);
	free(cfg.backends);
}
END_TEST

START_TEST(checker_rejects_bad_config)
{
	struct config cfg;
	struct shm shm;
	char name[64], err[256];
	int status;
	pid_t pid;

	test_config(&cfg, 1, 0, 0);
	set_backend(&cfg.backends[0], 1);
	snprintf(name, sizeof(name), "/rgtest.%ld.bad", (long)getpid());
	ck_assert_msg(shm_create(&shm, name, 1, 1, err, sizeof(err)) == 0, "%s", err);
	if ((pid = fork_child()) == 0)
		run_checker(&cfg, &shm, -1, open("/dev/null", O_WRONLY));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 1);
	shm_destroy(&shm);
	free(cfg.backends);
}
END_TEST

static Suite *
checker_suite(void)
{
	Suite *s = suite_create("checker");
	TCase *tc;

	tc = tcase_create("hysteresis");
	tcase_add_test(tc, hysteresis_1_1);
	tcase_add_test(tc, hysteresis_2_3);
	tcase_add_test(tc, hysteresis_repeated_successes);
	tcase_add_test(tc, hysteresis_alternating);
	tcase_add_test(tc, hysteresis_counters);
	suite_add_tcase(s, tc);

	tc = tcase_create("result");
	tcase_add_test(tc, result_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("process");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, checker_probes);
	tcase_add_test(tc, checker_stops_mid_probe);
	tcase_add_test(tc, checker_scales);
	tcase_add_test(tc, checker_rejects_bad_config);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return unit_run(checker_suite(), CK_NORMAL);
}
