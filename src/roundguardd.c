/* roundguardd: the master process. Binds, forks workers and the checker, supervises, reloads. */
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "roundguard/admin.h"
#include "roundguard/checker.h"
#include "roundguard/config.h"
#include "roundguard/control.h"
#include "roundguard/control_server.h"
#include "roundguard/discover.h"
#include "roundguard/log.h"
#include "roundguard/memcache.h"
#include "roundguard/metrics.h"
#include "roundguard/net.h"
#include "roundguard/proc.h"
#include "roundguard/shm.h"
#include "roundguard/tls.h"
#include "roundguard/worker.h"

#if HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#define ERRBUF_SIZE	(64 * 1024)
#define CLI_BACKENDS_MAX CONFIG_BACKENDS_MAX
/* Longest wait for a new health checker's first pass before going on without it. */
#define READY_SLACK_NS	(2 * INT64_C(1000000000))

static const char usage_text[] =
    "usage: roundguardd [-c FILE] [-t] [--backend URL]... [--hosts URL]... [-p PORT]\n"
    "                   [-l ADDR] [-w N] [--state-file PATH] [-V] [-h]\n"
    "  -c, --config FILE   JSON configuration file\n"
    "  -t, --test          check the configuration, print \"configuration OK\" and exit\n"
    "  -b, --backend URL   a backend (http://host:port[/prefix]); repeatable; replaces\n"
    "                      the file's backends\n"
    "      --hosts URL     the same as --backend (the Go version's spelling)\n"
    "  -p, --port PORT     port to listen on (default 3000)\n"
    "  -l, --listen ADDR   address to listen on (default: all addresses)\n"
    "  -w, --workers N     worker processes, 1-256 or \"auto\" (default: one per CPU)\n"
    "      --state-file PATH\n"
    "                      keep drains and weights there across restarts (state_file)\n"
    "  -V, --version       print the version and exit\n"
    "  -h, --help          print this help and exit\n"
    "Environment: LOG_LEVEL, LOG_FORMAT, PROXY_CHECK_DURATION\n";

/* What the command line said; re-applied over the file at every reload. */
struct cli {
	const char *config_file;
	const char *state_file;
	bool test_only;
	const char *backends[CLI_BACKENDS_MAX];
	int nbackends;
	const char *listen;
	const char *port;
	const char *workers;
};

enum child_kind {
	CHILD_WORKER,
	CHILD_CHECKER,
};

struct generation;

struct child {
	struct generation *gen;
	enum child_kind kind;
	int index;
	pid_t pid;
	int64_t started_ns;
	int64_t delay_ns;
	struct event *respawn;
};

/*
 * Listening sockets: for each configured listener, one per worker (each its
 * own SO_REUSEPORT socket); shared by generations with the same listeners
 * and workers, so a reload keeps accepting on the same sockets.
 */
struct listeners {
	struct listen_addr *addrs;	/* nl, as in cfg->listeners */
	int nl;
	int n;				/* workers */
	int *fds;			/* nl * n: listener l's socket for worker w at l * n + w */
	bool has_metrics;
	struct listen_addr metrics_addr;
	int metrics_fd;		/* metrics.listen, shared by every worker; -1 if unset */
	int refs;
};

/* One configuration's set of children and its segment; a reload starts a new one. */
struct generation {
	LIST_ENTRY(generation) entry;
	unsigned id;
	struct config cfg;
	struct shm shm;
	struct listeners *ls;
	struct tls_generation *tls;	/* certificates read as root; the children inherit it at fork */
	struct child *workers;
	int nworkers;
	struct child checker;
	int ready_fd;
	struct event *ready_ev;
	bool ready;
	bool retiring;
	struct gen_totals *handed_over;	/* totals already carried into the next generation */
};

static struct {
	struct event_base *base;
	struct cli cli;
	struct proc_identity id;
	struct generation *cur;
	LIST_HEAD(, generation) gens;
	unsigned next_gen;
	int64_t started_ns;
	bool stopping;
	bool reloading;
	struct event *sig[5];
	struct event *stop_deadline;
} m;

static void __attribute__((noreturn))
usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "roundguardd: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'roundguardd --help' for more information.\n");
	exit(2);
}

static void
notify(const char *state)
{
#if HAVE_LIBSYSTEMD
	sd_notify(0, state);
#else
	(void)state;
#endif
}

static int
online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : (n > CONFIG_WORKERS_MAX ? CONFIG_WORKERS_MAX : (int)n);
}

/*
 * Apply the command line's listen flags to the first plain listener (config_plain_listen()):
 * -l may carry a port, -p overrides it.
 */
static int
apply_listen_flags(struct config *cfg, char *err, size_t errlen)
{
	struct listen_addr *plain = config_plain_listen(cfg), la;
	char msg[512];
	uint16_t port;

	if (m.cli.listen == NULL && m.cli.port == NULL)
		return 0;
	if (plain == NULL) {
		size_t used = strlen(err);

		snprintf(err + used, errlen - used, "%s: %s: every listener has \"tls\": "
		    "there is no plain listener for it to move\n", cfg->file,
		    m.cli.listen != NULL ? "--listen" : "--port");
		return 1;
	}
	la = *plain;
	if (m.cli.listen != NULL &&
	    parse_listen_flag(m.cli.listen, la.port, &la, msg, sizeof(msg)) == -1) {
		size_t used = strlen(err);

		snprintf(err + used, errlen - used, "--listen: %s\n", msg);
		return 1;
	}
	if (m.cli.port != NULL) {
		if (parse_port(m.cli.port, &port, msg, sizeof(msg)) == -1) {
			size_t used = strlen(err);

			snprintf(err + used, errlen - used, "--port: %s\n", msg);
			return 1;
		}
		la.port = port;
	}
	*plain = la;
	return 0;
}

/*
 * Build the whole configuration: defaults < file < environment < flags, then
 * validation and name resolution. Returns the number of problems, listed in err.
 */
static int
build_config(struct config *cfg, char *err, size_t errlen)
{
	const char *errstr = NULL;
	int problems = 0;

	err[0] = '\0';
	config_defaults(cfg);
	if (m.cli.config_file != NULL)
		problems += config_load_file(cfg, m.cli.config_file, err, errlen);
	problems += config_apply_env(cfg, NULL, err, errlen);
	if (m.cli.nbackends > 0) {
		/* Flags win over the file: their list replaces the file's. */
		cfg->nbackends = 0;
		for (int i = 0; i < m.cli.nbackends; i++)
			problems += config_add_backend(cfg, m.cli.backends[i], "--backend", err,
			    errlen);
	}
	problems += apply_listen_flags(cfg, err, errlen);
	if (m.cli.workers != NULL) {
		if (strcasecmp(m.cli.workers, "auto") == 0) {
			cfg->workers = 0;
		} else {
			cfg->workers = (int)strtonum(m.cli.workers, 1, CONFIG_WORKERS_MAX, &errstr);
			if (errstr != NULL) {
				size_t used = strlen(err);

				snprintf(err + used, errlen - used,
				    "--workers: \"%s\": must be \"auto\" or a number from 1 to %d\n",
				    m.cli.workers, CONFIG_WORKERS_MAX);
				problems++;
			}
		}
	}
	if (m.cli.state_file != NULL) {
		/* The unit's StateDirectory, whatever the file says. */
		if (m.cli.state_file[0] != '/' || strlen(m.cli.state_file) >= CONFIG_PATH_MAX) {
			size_t used = strlen(err);

			snprintf(err + used, errlen - used,
			    "--state-file: \"%s\": must be an absolute path shorter than %d bytes\n",
			    m.cli.state_file, CONFIG_PATH_MAX);
			problems++;
		} else {
			strlcpy(cfg->control.state_file, m.cli.state_file,
			    sizeof(cfg->control.state_file));
		}
	}
	problems += config_validate(cfg, err, errlen);
	if (problems > 0)
		return problems;
	if (cfg->workers == 0)
		cfg->workers = online_cpus();
	for (size_t i = 0; i < cfg->nbackends; i++) {
		struct config_backend *be = &cfg->backends[i];
		char msg[512];

		/* A discovered name's slots get their addresses from the health checker. */
		if (be->discover != CONFIG_DISCOVER_NONE)
			continue;
		if (net_resolve(be->addr.host, be->addr.port, &be->sa, &be->salen, msg,
		    sizeof(msg)) == -1) {
			size_t used = strlen(err);

			snprintf(err + used, errlen - used, "%s: backends[%u]: %s\n",
			    cfg->file[0] != '\0' ? cfg->file : "command line", be->file_index, msg);
			problems++;
		}
	}
	return problems;
}

/* A backend whose certificate is not checked is worth a warning at every start and reload. */
static void
warn_unverified(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nbackends; i++) {
		/* Once per entry: the slots of a discovered name share its settings. */
		if (cfg->backends[i].discover != CONFIG_DISCOVER_NONE &&
		    cfg->backends[i].discover_first != i)
			continue;
		if (cfg->backends[i].addr.tls && !cfg->backends[i].tls.verify)
			log_warn("TLS certificate verification is off for this backend (tls.verify: false)",
			    "backend", cfg->backends[i].url, NULL);
	}
}

static void
log_problems(const char *msg, const char *err)
{
	char line[1024];
	const char *p = err, *nl;

	while (*p != '\0') {
		nl = strchr(p, '\n');
		snprintf(line, sizeof(line), "%.*s", (int)(nl != NULL ? nl - p : (long)strlen(p)), p);
		if (line[0] != '\0')
			log_error(msg, "problem", line, NULL);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
}

/* ---- listeners ---- */

/* Close every socket of ls (the descriptors only: ls stays for its references). */
static void
listeners_close(struct listeners *ls)
{
	for (int i = 0; i < ls->nl * ls->n; i++) {
		if (ls->fds[i] != -1)
			close(ls->fds[i]);
		ls->fds[i] = -1;
	}
	if (ls->metrics_fd != -1)
		close(ls->metrics_fd);
	ls->metrics_fd = -1;
}

static void
listeners_unref(struct listeners *ls)
{
	if (ls == NULL || --ls->refs > 0)
		return;
	listeners_close(ls);
	free(ls->fds);
	free(ls->addrs);
	free(ls);
}

static bool
listeners_match(const struct listeners *ls, const struct config *cfg)
{
	if (ls->n != cfg->workers || ls->nl != (int)cfg->nlisteners ||
	    ls->has_metrics != cfg->metrics.listen_set || (ls->has_metrics &&
	    memcmp(&ls->metrics_addr, &cfg->metrics.listen, sizeof(ls->metrics_addr)) != 0))
		return false;
	for (int l = 0; l < ls->nl; l++)
		if (memcmp(&ls->addrs[l], &cfg->listeners[l].addr, sizeof(ls->addrs[l])) != 0)
			return false;
	return true;
}

/*
 * A copy of the running generation's socket for address la and worker w, or
 * -1. A reload that changes the set of listeners binds a new set, but an
 * address both configurations share keeps its sockets: a connection already
 * queued on the old socket must reach a new worker, not be reset when the
 * old generation closes its copy.
 */
static int
listeners_dup(const struct listeners *cur, const struct listen_addr *la, int w)
{
	if (cur == NULL || w >= cur->n)
		return -1;
	for (int l = 0; l < cur->nl; l++) {
		int fd = cur->fds[l * cur->n + w];

		if (fd != -1 && memcmp(&cur->addrs[l], la, sizeof(*la)) == 0)
			return fcntl(fd, F_DUPFD_CLOEXEC, 0);
	}
	return -1;
}

static struct listeners *
listeners_get(const struct config *cfg, char *err, size_t errlen)
{
	struct listeners *cur = m.cur != NULL ? m.cur->ls : NULL;
	struct listeners *ls;
	size_t total = cfg->nlisteners * (size_t)cfg->workers;

	if (cur != NULL && listeners_match(cur, cfg)) {
		cur->refs++;
		return cur;
	}
	if ((ls = calloc(1, sizeof(*ls))) == NULL ||
	    (ls->fds = malloc(total * sizeof(int))) == NULL ||
	    (ls->addrs = calloc(cfg->nlisteners, sizeof(*ls->addrs))) == NULL) {
		if (ls != NULL)
			free(ls->fds);
		free(ls);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < total; i++)
		ls->fds[i] = -1;
	ls->nl = (int)cfg->nlisteners;
	ls->n = cfg->workers;
	for (int l = 0; l < ls->nl; l++)
		ls->addrs[l] = cfg->listeners[l].addr;
	ls->refs = 1;
	ls->metrics_fd = -1;
	ls->has_metrics = cfg->metrics.listen_set;
	ls->metrics_addr = cfg->metrics.listen;
	if (ls->has_metrics && cur != NULL && cur->has_metrics && cur->metrics_fd != -1 &&
	    memcmp(&cur->metrics_addr, &ls->metrics_addr, sizeof(ls->metrics_addr)) == 0)
		ls->metrics_fd = fcntl(cur->metrics_fd, F_DUPFD_CLOEXEC, 0);
	if (ls->has_metrics && ls->metrics_fd == -1 &&
	    (ls->metrics_fd = net_listen(&cfg->metrics.listen, true, err, errlen)) == -1) {
		listeners_unref(ls);
		return NULL;
	}
	for (size_t i = 0; i < total; i++) {
		int l = (int)(i / (size_t)ls->n), w = (int)(i % (size_t)ls->n);

		if ((ls->fds[i] = listeners_dup(cur, &ls->addrs[l], w)) == -1 &&
		    (ls->fds[i] = net_listen(&ls->addrs[l], true, err, errlen)) == -1) {
			listeners_unref(ls);
			return NULL;
		}
	}
	return ls;
}

/* ---- children ---- */

/* In a child: close every listening socket, segment and ready pipe but the sockets it serves. */
static void
close_listeners_except(const struct generation *g, int keep)
{
	int keep_metrics = keep >= 0 ? g->ls->metrics_fd : -1;
	struct generation *o;

	LIST_FOREACH(o, &m.gens, entry) {
		if (o->ready_fd != -1)
			close(o->ready_fd);
		o->ready_fd = -1;
		/* Children need the mapping only, not a descriptor of the segment. */
		if (o->shm.fd > 0)
			close(o->shm.fd);
		o->shm.fd = -1;
		if (o->ls == NULL)
			continue;
		/* Generations may share one set of sockets: close each descriptor once. */
		for (int i = 0; i < o->ls->nl * o->ls->n; i++) {
			if (o->ls->fds[i] == -1 || (o->ls == g->ls && keep >= 0 && i % g->ls->n == keep))
				continue;
			close(o->ls->fds[i]);
			o->ls->fds[i] = -1;
		}
		if (o->ls->metrics_fd != -1 && o->ls->metrics_fd != keep_metrics) {
			close(o->ls->metrics_fd);
			o->ls->metrics_fd = -1;
		}
	}
}

/* Set before each fork: the parent a child must still have once PR_SET_PDEATHSIG is set. */
static pid_t master_pid;

/* The child side of a fork: detach from the master's loop, drop privileges, run. */
static void __attribute__((noreturn))
child_run(struct child *c, int ready_write_fd)
{
	struct generation *g = c->gen;
	int listen_fds[CONFIG_LISTENERS_MAX];
	int metrics_fd = c->kind == CHILD_WORKER ? g->ls->metrics_fd : -1;
	char err[256];

	/* Named first, so that a process list never shows a second "master". */
	if (c->kind == CHILD_WORKER)
		setproctitle("worker %d", c->index);
	else
		setproctitle("health checker");
	/*
	 * Children never outlive the master: a master gone before prctl() took
	 * leaves the child another parent (init, or a subreaper). Compared with
	 * the master's PID, not with 1: in a container the master may be PID 1.
	 */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master_pid)
		_exit(0);
	/*
	 * The epoll set and the signal pipe are shared with the master until
	 * event_reinit() gives the child its own; only then may it let go.
	 */
	event_reinit(m.base);
	for (size_t i = 0; i < sizeof(m.sig) / sizeof(m.sig[0]); i++)
		if (m.sig[i] != NULL)
			event_del(m.sig[i]);
	event_base_free(m.base);
	m.base = NULL;
	control_server_forget();	/* roundguardctl talks to the master alone */
	close_listeners_except(g, c->kind == CHILD_WORKER ? c->index : -1);
	if (proc_drop_privileges(&m.id, err, sizeof(err)) == -1) {
		log_error("cannot drop privileges", "error", err, NULL);
		exit(1);
	}
	if (c->kind == CHILD_CHECKER) {
		log_set_proc("checker");
		exit(checker_main(&g->cfg, &g->shm, g->tls, ready_write_fd));
	}
	log_set_proc("worker");
	for (int l = 0; l < g->ls->nl; l++)
		listen_fds[l] = g->ls->fds[l * g->ls->n + c->index];
	exit(worker_main(&g->cfg, &g->shm, g->tls, c->index, listen_fds, metrics_fd));
}

static int
child_spawn(struct child *c, int ready_write_fd)
{
	/* SIGUSR1 too: the checker takes it (an administrative change) once its loop runs. */
	static const int stop_sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 };
	sigset_t all, old, stops;
	pid_t pid;

	/*
	 * Until the child has its own handlers, a SIGTERM sent to it would run the
	 * master's inherited libevent handler, which writes into the signal pipe
	 * the two still share: the master would see it and the child never would.
	 * So signals stay blocked across fork; the child resets the handlers and
	 * keeps the stop signals blocked (pending) until its loop can take them.
	 */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	fflush(NULL);
	master_pid = getpid();
	pid = fork();
	if (pid == 0) {
		sigemptyset(&stops);
		for (size_t i = 0; i < sizeof(stop_sigs) / sizeof(stop_sigs[0]); i++) {
			signal(stop_sigs[i], SIG_DFL);
			sigaddset(&stops, stop_sigs[i]);
		}
		signal(SIGCHLD, SIG_DFL);
		sigprocmask(SIG_SETMASK, &stops, NULL);
		child_run(c, ready_write_fd);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (pid == -1) {
		log_error("fork failed", "error", strerror(errno), NULL);
		return -1;
	}
	c->pid = pid;
	c->started_ns = proc_now_ns();
	return 0;
}

static void
respawn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;

	if (m.stopping || c->gen->retiring)
		return;
	child_spawn(c, -1);
}

static struct child *
find_child(pid_t pid)
{
	struct generation *g;

	LIST_FOREACH(g, &m.gens, entry) {
		if (g->checker.pid == pid)
			return &g->checker;
		for (int i = 0; i < g->nworkers; i++)
			if (g->workers[i].pid == pid)
				return &g->workers[i];
	}
	return NULL;
}

static int
live_children(const struct generation *g)
{
	int n = g->checker.pid > 0;

	for (int i = 0; i < g->nworkers; i++)
		n += g->workers[i].pid > 0;
	return n;
}

/* The index of backend b of one configuration in another, or -1. */
static int
same_backend(const struct config *from, size_t b, const struct config *to)
{
	const struct backend_url *u = &from->backends[b].addr;

	/* Slots of discovered names are resolved anew by each generation: nothing carries. */
	if (from->backends[b].discover != CONFIG_DISCOVER_NONE)
		return -1;
	for (size_t i = 0; i < to->nbackends; i++) {
		const struct backend_url *v = &to->backends[i].addr;

		if (to->backends[i].discover != CONFIG_DISCOVER_NONE)
			continue;
		if (u->port == v->port && strcasecmp(u->host, v->host) == 0 &&
		    strcmp(u->prefix, v->prefix) == 0)
			return (int)i;
	}
	return -1;
}

/*
 * A discovered backend (slot b of from) in to: the slot of the same name
 * that holds the same address now, or -1. Its counters then go on from
 * where they were; the master's adds to that slot's carried row are atomic,
 * like the checker's restart of a slot (which happens only to another
 * address).
 */
static int
same_slot(const struct generation *from, size_t b, const struct generation *to)
{
	const struct config_backend *fb = &from->cfg.backends[b];
	struct net_addr a, c;
	uint32_t seq;

	if (shm_slot_state(&from->shm, (uint32_t)b) == SHM_SLOT_FREE ||
	    !shm_slot_read(&from->shm, (uint32_t)b, &a, &seq))
		return -1;
	for (size_t i = 0; i < to->cfg.nbackends; i++) {
		const struct config_backend *tb = &to->cfg.backends[i];

		if (tb->discover != fb->discover || strcmp(tb->url, fb->url) != 0 ||
		    shm_slot_state(&to->shm, (uint32_t)i) == SHM_SLOT_FREE ||
		    !shm_slot_read(&to->shm, (uint32_t)i, &c, &seq) || !discover_same(&a, &c))
			continue;
		return (int)i;
	}
	return -1;
}

/* The listener of to with the name of from's listener l (the metrics' listener label), or -1. */
static int
same_listener(const struct config *from, size_t l, const struct config *to)
{
	for (size_t i = 0; i < to->nlisteners && i < METRICS_LISTENERS_MAX; i++)
		if (strcmp(from->listeners[l].name, to->listeners[i].name) == 0)
			return (int)i;
	return -1;
}

/* A generation's counters summed over all its rows, as of one moment. */
struct gen_totals {
	struct metrics_slot *slots;	/* one per backend */
	uint64_t *checks_ok;
	uint64_t *checks_failed;
	uint64_t counters[SHM_COUNTERS];
	struct metrics_tls tls[METRICS_LISTENERS_MAX];	/* per listener index */
	uint64_t restarts;
};

static void
totals_free(struct gen_totals *t)
{
	if (t == NULL)
		return;
	free(t->slots);
	free(t->checks_ok);
	free(t->checks_failed);
	free(t);
}

static struct gen_totals *
totals_take(const struct generation *g)
{
	size_t nb = g->cfg.nbackends;
	struct gen_totals *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	/* Slots are 64-byte aligned (they hold _Atomic counters laid out for the segment). */
	t->slots = aligned_alloc(SHM_CACHELINE, nb * sizeof(struct metrics_slot));
	t->checks_ok = calloc(nb, sizeof(uint64_t));
	t->checks_failed = calloc(nb, sizeof(uint64_t));
	if (t->slots == NULL || t->checks_ok == NULL || t->checks_failed == NULL) {
		totals_free(t);
		return NULL;
	}
	memset(t->slots, 0, nb * sizeof(struct metrics_slot));
	for (size_t b = 0; b < nb; b++) {
		for (uint32_t w = 0; w <= (uint32_t)g->nworkers; w++)
			metrics_slot_add(&t->slots[b], shm_stats(&g->shm, w, (uint32_t)b));
		t->checks_ok[b] = atomic_load_explicit(&g->shm.backends[b].checks_ok,
		    memory_order_relaxed);
		t->checks_failed[b] = atomic_load_explicit(&g->shm.backends[b].checks_failed,
		    memory_order_relaxed);
	}
	for (int w = 0; w <= g->nworkers; w++) {
		for (int k = 0; k < SHM_COUNTERS; k++)
			t->counters[k] += atomic_load_explicit(&g->shm.workers[w].counters[k],
			    memory_order_relaxed);
		for (int l = 0; l < METRICS_LISTENERS_MAX; l++)
			metrics_tls_add_delta(&t->tls[l], &g->shm.workers[w].tls[l], NULL);
	}
	t->restarts = atomic_load_explicit(&g->shm.hdr->worker_restarts, memory_order_relaxed);
	return t;
}

/*
 * Counters never go backwards. When a new generation takes over, the old
 * one's totals (for the backends that remain, and the instance-wide ones) go
 * into the new one's carried slot at once; when the old one has drained, what
 * it counted meanwhile follows: carry(now) and then carry(final - now).
 */
static void
totals_carry(const struct generation *from, const struct gen_totals *now,
    const struct gen_totals *then, struct generation *to)
{
	uint32_t carried = (uint32_t)to->nworkers;

	for (size_t b = 0; b < from->cfg.nbackends; b++) {
		int nb = from->cfg.backends[b].discover != CONFIG_DISCOVER_NONE ?
		    same_slot(from, b, to) : same_backend(&from->cfg, b, &to->cfg);

		if (nb < 0)
			continue;
		metrics_slot_add_delta(shm_stats(&to->shm, carried, (uint32_t)nb), &now->slots[b],
		    then != NULL ? &then->slots[b] : NULL);
		atomic_fetch_add_explicit(&to->shm.backends[nb].checks_ok,
		    now->checks_ok[b] - (then != NULL ? then->checks_ok[b] : 0),
		    memory_order_relaxed);
		atomic_fetch_add_explicit(&to->shm.backends[nb].checks_failed,
		    now->checks_failed[b] - (then != NULL ? then->checks_failed[b] : 0),
		    memory_order_relaxed);
	}
	for (int k = 0; k < SHM_COUNTERS; k++)
		atomic_fetch_add_explicit(&to->shm.workers[carried].counters[k],
		    now->counters[k] - (then != NULL ? then->counters[k] : 0),
		    memory_order_relaxed);
	/* Handshakes follow their listener's name: the order of the listeners may change. */
	for (size_t l = 0; l < from->cfg.nlisteners && l < METRICS_LISTENERS_MAX; l++) {
		int nl = same_listener(&from->cfg, l, &to->cfg);

		if (nl >= 0)
			metrics_tls_add_delta(&to->shm.workers[carried].tls[nl], &now->tls[l],
			    then != NULL ? &then->tls[l] : NULL);
	}
	atomic_fetch_add_explicit(&to->shm.hdr->worker_restarts,
	    now->restarts - (then != NULL ? then->restarts : 0), memory_order_relaxed);
}

static void
generation_free(struct generation *g)
{
	LIST_REMOVE(g, entry);
	if (g->ready_ev != NULL)
		event_free(g->ready_ev);
	if (g->ready_fd != -1)
		close(g->ready_fd);
	if (g->checker.respawn != NULL)
		event_free(g->checker.respawn);
	for (int i = 0; i < g->nworkers; i++)
		if (g->workers[i].respawn != NULL)
			event_free(g->workers[i].respawn);
	free(g->workers);
	if (m.cur != NULL && m.cur != g && !m.stopping) {
		struct gen_totals *final = totals_take(g);

		if (final != NULL)
			totals_carry(g, final, g->handed_over, m.cur);
		totals_free(final);
	}
	totals_free(g->handed_over);
	shm_destroy(&g->shm);
	listeners_unref(g->ls);
	tls_generation_free(g->tls);
	config_free(&g->cfg);
	if (m.cur == g)
		m.cur = NULL;
	free(g);
}

static void
signal_generation(struct generation *g, int sig)
{
	if (g->checker.pid > 0)
		kill(g->checker.pid, sig);
	for (int i = 0; i < g->nworkers; i++)
		if (g->workers[i].pid > 0)
			kill(g->workers[i].pid, sig);
}

static void
view_of(struct generation *g, struct control_view *v)
{
	v->cfg = &g->cfg;
	v->shm = &g->shm;
	v->checker = g->checker.pid;
	v->generation = g->id;
	v->workers = g->nworkers;
}

/* roundguardctl's view: the serving generation, and one a reload is starting. */
static int
control_view(struct control_view *v, struct control_view *pending)
{
	struct generation *g;

	if (m.stopping || m.cur == NULL)
		return -1;
	view_of(m.cur, v);
	if (pending == NULL)
		return 0;
	memset(pending, 0, sizeof(*pending));
	LIST_FOREACH(g, &m.gens, entry) {
		if (g != m.cur && !g->retiring && !g->ready)
			view_of(g, pending);
	}
	return 0;
}

/* control.group's ID, or (gid_t)-1 for none (the master's group): -1 for an unknown name. */
static int
control_gid(const struct config *cfg, gid_t *gid, char *err, size_t errlen)
{
	struct group *gr;

	*gid = (gid_t)-1;
	if (cfg->control.group[0] == '\0')
		return 0;
	if ((gr = getgrnam(cfg->control.group)) == NULL) {
		snprintf(err, errlen, "control.group: no group \"%s\"", cfg->control.group);
		return -1;
	}
	*gid = gr->gr_gid;
	return 0;
}

/* The control socket, once at start (a reload keeps it; a new path needs a restart). */
static int
control_start(const struct config *cfg, char *err, size_t errlen)
{
	char path[CONFIG_PATH_MAX];
	gid_t gid;
	bool is_default;

	snprintf(path, sizeof(path), "%s", cfg->control.socket);
	if (path[0] == '\0')
		return 0;	/* "socket": null */
	if (control_gid(cfg, &gid, err, errlen) == -1)
		return -1;
	is_default = strcmp(path, CONTROL_SOCKET_DEFAULT) == 0;
	if (is_default && geteuid() == 0)
		(void)mkdir("/run/roundguardd", 0755);	/* outside systemd's RuntimeDirectory */
	if (control_server_start(m.base, path, gid, control_view, err, errlen) == -1) {
		/* Only a socket of its own the file asked for is worth failing the start. */
		if (!is_default)
			return -1;
		/* A user's roundguardd cannot have the default one: not worth a warning. */
		if (geteuid() == 0)
			log_warn("no control socket", "error", err, NULL);
		else
			log_debug("no control socket", "error", err, NULL);
		return 0;
	}
	log_info("control socket", "path", path, NULL);
	return 0;
}

static void
maybe_finish(void)
{
	if (m.stopping && LIST_EMPTY(&m.gens))
		event_base_loopbreak(m.base);
}

static void
child_exited(struct child *c, int status)
{
	struct generation *g = c->gen;
	const char *what = c->kind == CHILD_WORKER ? "worker" : "health checker";
	int64_t lived = proc_now_ns() - c->started_ns;
	char desc[128], idx[16], delay[32];
	struct timeval tv;

	c->pid = 0;
	proc_describe_exit(status, desc, sizeof(desc));
	/* Killed with tunnels or requests open, it never counted them closed; nobody owns its slot now. */
	if (c->kind == CHILD_WORKER)
		for (uint32_t b = 0; b < (uint32_t)g->cfg.nbackends; b++)
			metrics_slot_tunnels_gone(shm_stats(&g->shm, (uint32_t)c->index, b));
	else if (g->shm.hdr != NULL)
		atomic_store(&g->shm.hdr->checker_pid, 0);	/* its PID may be another's soon */
	if (m.stopping || g->retiring) {
		log_debug("child exited", "child", what, "status", desc, NULL);
		if (live_children(g) == 0) {
			generation_free(g);
			maybe_finish();
		}
		return;
	}
	c->delay_ns = proc_respawn_delay(c->delay_ns, lived);
	format_duration(delay, sizeof(delay), c->delay_ns);
	snprintf(idx, sizeof(idx), "%d", c->index);
	log_error("child died, starting it again", "child", what,
	    "index", c->kind == CHILD_WORKER ? idx : NULL, "status", desc, "after", delay, NULL);
	if (c->kind == CHILD_WORKER)
		atomic_fetch_add_explicit(&g->shm.hdr->worker_restarts, 1, memory_order_relaxed);
	if (c->respawn == NULL)
		c->respawn = evtimer_new(m.base, respawn_cb, c);
	tv = proc_timeval(c->delay_ns);
	evtimer_add(c->respawn, &tv);
}

static void
sigchld_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child *c;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if ((c = find_child(pid)) != NULL)
			child_exited(c, status);
	}
}

/* ---- generations ---- */

static void
retire_others(struct generation *keep)
{
	struct generation *g, *next;

	for (g = LIST_FIRST(&m.gens); g != NULL; g = next) {
		next = LIST_NEXT(g, entry);
		if (g == keep || g->retiring)
			continue;
		/* Hand the counters over now, so that no scrape sees them drop meanwhile. */
		if ((g->handed_over = totals_take(g)) != NULL)
			totals_carry(g, g->handed_over, NULL, keep);
		g->retiring = true;
		signal_generation(g, SIGTERM);
		if (live_children(g) == 0)
			generation_free(g);
	}
}

static void
generation_start_workers(struct generation *g)
{
	char workers[16], backends[16];

	for (int i = 0; i < g->nworkers; i++)
		child_spawn(&g->workers[i], -1);
	g->ready = true;
	m.cur = g;
	retire_others(g);
	snprintf(workers, sizeof(workers), "%d", g->nworkers);
	snprintf(backends, sizeof(backends), "%zu", g->cfg.nbackends);
	if (m.reloading) {
		m.reloading = false;
		log_info("reloaded", "workers", workers, "backends", backends, "shm", g->shm.name,
		    NULL);
	} else {
		char addr[PARSE_HOST_MAX + 16];

		snprintf(addr, sizeof(addr), g->cfg.listen.is_ipv6 ? "[%s]:%u" : "%s:%u",
		    g->cfg.listen.host[0] != '\0' ? g->cfg.listen.host : "*", g->cfg.listen.port);
		log_info("ready", "address", addr, "workers", workers, "backends", backends,
		    "shm", g->shm.name, NULL);
	}
	notify("READY=1");
}

/* The checker's first pass is done (or it never reported): start serving. */
static void
ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct generation *g = arg;

	if (what & EV_TIMEOUT)
		log_warn("health checker did not finish its first pass in time; starting anyway",
		    NULL);
	event_del(g->ready_ev);
	close(g->ready_fd);
	g->ready_fd = -1;
	if (!m.stopping && !g->retiring)
		generation_start_workers(g);
}

/*
 * Before the children: the file's weights; then what the running generation
 * knew (administrative state, weights, health) or, at the start, what the
 * state file kept.
 */
static void
generation_admin_state(struct generation *g)
{
	char err[512], n[24];
	size_t applied;
	int64_t now = proc_now_ns();

	g->shm.hdr->started_ns = m.started_ns;
	admin_init(&g->shm, &g->cfg);
	if (m.cur != NULL) {
		snprintf(n, sizeof(n), "%zu", admin_carry(&m.cur->cfg, &m.cur->shm, &g->cfg,
		    &g->shm, now));
		log_debug("state carried into the new generation", "backends", n, NULL);
		return;
	}
	if (g->cfg.control.state_file[0] == '\0')
		return;
	if (admin_load(g->cfg.control.state_file, &g->cfg, &g->shm, now, &applied, err,
	    sizeof(err)) == -1) {
		log_error("state file not read; every backend starts ready", "error", err, NULL);
		return;
	}
	if (applied > 0) {
		snprintf(n, sizeof(n), "%zu", applied);
		log_info("administrative state restored", "file", g->cfg.control.state_file,
		    "backends", n, NULL);
	}
}

/*
 * The generation's segment, /roundguardd.<pid>[.<generation>]. Nothing opens
 * it by name again (children inherit the mapping), so a segment of that name
 * left behind (a master killed with SIGKILL whose PID came back, or one of
 * another PID namespace sharing /dev/shm) is left alone and a suffix taken.
 */
static int
generation_shm(struct generation *g, char *name, size_t len, char *err, size_t errlen)
{
	int n;

	for (int k = 0; k < 8; k++) {
		n = g->id == 0 ? snprintf(name, len, "/roundguardd.%d", (int)getpid()) :
		    snprintf(name, len, "/roundguardd.%d.%u", (int)getpid(), g->id);
		if (k > 0 && n > 0 && (size_t)n < len)
			snprintf(name + n, len - (size_t)n, "~%d", k);
		if (shm_create(&g->shm, name, (uint32_t)g->cfg.nbackends, (uint32_t)g->cfg.workers,
		    err, errlen) == 0) {
			if (k > 0)
				log_warn("a shared-memory segment of this master's name exists (left "
				    "behind by a process that had this PID, or another PID namespace's); "
				    "using another name", "shm", name, NULL);
			return 0;
		}
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

static struct generation *
generation_new(struct config *cfg, char *err, size_t errlen)
{
	struct generation *g = calloc(1, sizeof(*g));
	char name[64];
	int pipefd[2];
	int64_t wait_ns;
	struct timeval tv;

	if (g == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	g->id = m.next_gen++;
	g->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));	/* the generation owns it now */
	g->ready_fd = -1;
	LIST_INSERT_HEAD(&m.gens, g, entry);
	if (generation_shm(g, name, sizeof(name), err, errlen) == -1)
		goto fail;
	if (m.id.drop && geteuid() == 0 &&
	    shm_chown(&g->shm, m.id.uid, m.id.gid, err, errlen) == -1)
		goto fail;
	generation_admin_state(g);
	if ((g->ls = listeners_get(&g->cfg, err, errlen)) == NULL)
		goto fail;
	/* Before any child: as root (certificate keys may be readable by root only), and inherited. */
	if (tls_generation_new(&g->cfg, &g->tls, err, errlen) > 0)
		goto fail;
	g->nworkers = g->cfg.workers;
	if ((g->workers = calloc((size_t)g->nworkers, sizeof(*g->workers))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int i = 0; i < g->nworkers; i++) {
		g->workers[i].gen = g;
		g->workers[i].kind = CHILD_WORKER;
		g->workers[i].index = i;
	}
	g->checker.gen = g;
	g->checker.kind = CHILD_CHECKER;
	if (pipe2(pipefd, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe failed: %s", strerror(errno));
		goto fail;
	}
	g->ready_fd = pipefd[0];
	if (child_spawn(&g->checker, pipefd[1]) == -1) {
		close(pipefd[1]);
		snprintf(err, errlen, "cannot start the health checker");
		goto fail;
	}
	close(pipefd[1]);
	/* EOF or the byte both mean "go": a checker that died is respawned anyway. */
	wait_ns = g->cfg.health.timeout_ns + READY_SLACK_NS;
	/* A first pass with discovered names waits for their lookups too (each resolver in turn). */
	for (size_t i = 0; i < g->cfg.nbackends; i++) {
		if (g->cfg.backends[i].discover != CONFIG_DISCOVER_NONE) {
			wait_ns += g->cfg.resolve.timeout_ns * (int64_t)(g->cfg.resolve.nresolvers > 1 ?
			    g->cfg.resolve.nresolvers : 1);
			break;
		}
	}
	tv = proc_timeval(wait_ns);
	g->ready_ev = event_new(m.base, g->ready_fd, EV_READ, ready_cb, g);
	event_add(g->ready_ev, &tv);
	return g;
fail:
	g->retiring = true;
	signal_generation(g, SIGTERM);
	if (live_children(g) == 0)
		generation_free(g);
	return NULL;
}

static void
reload(void)
{
	struct config cfg;
	char *err = malloc(ERRBUF_SIZE);

	if (err == NULL)
		return;
	if (m.reloading) {
		log_warn("a reload is already under way; ignoring SIGHUP", NULL);
		free(err);
		return;
	}
	log_info("reloading", "config", m.cli.config_file, NULL);
	notify("RELOADING=1");
	if (build_config(&cfg, err, ERRBUF_SIZE) > 0) {
		log_problems("reload failed, keeping the running configuration", err);
		config_free(&cfg);
		notify("READY=1");
		free(err);
		return;
	}
	log_set_level(cfg.log.level);
	log_set_format(cfg.log.format);
	warn_unverified(&cfg);
	m.reloading = true;
	if (generation_new(&cfg, err, ERRBUF_SIZE) == NULL) {
		m.reloading = false;
		log_problems("reload failed, keeping the running configuration", err);
		config_free(&cfg);
		notify("READY=1");
	}
	free(err);
}

static void
stop_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct generation *g;

	log_warn("children did not stop in time, killing them", NULL);
	LIST_FOREACH(g, &m.gens, entry)
		signal_generation(g, SIGKILL);
}

static void
stop(int sig)
{
	struct generation *g, *next;
	int64_t grace = m.cur != NULL ? m.cur->cfg.proxy.shutdown_timeout_ns : 10000000000;
	struct timeval tv;

	if (m.stopping)
		return;
	m.stopping = true;
	notify("STOPPING=1");
	log_info("shutting down", "signal", sig == SIGINT ? "SIGINT" :
	    sig == SIGQUIT ? "SIGQUIT" : "SIGTERM", NULL);
	for (g = LIST_FIRST(&m.gens); g != NULL; g = next) {
		next = LIST_NEXT(g, entry);
		/* The master's copies go first: once the workers close theirs, connects are refused. */
		if (g->ls != NULL)
			listeners_close(g->ls);
		signal_generation(g, SIGTERM);
		if (live_children(g) == 0)
			generation_free(g);
	}
	grace += 2000000000;
	tv = proc_timeval(grace);
	m.stop_deadline = evtimer_new(m.base, stop_deadline_cb, NULL);
	evtimer_add(m.stop_deadline, &tv);
	maybe_finish();
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGCHLD:
		sigchld_cb(sig, what, arg);
		break;
	case SIGHUP:
		if (!m.stopping)
			reload();
		break;
	default:
		stop((int)sig);
	}
}

/* ---- main ---- */

static void
parse_cli(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "backend", required_argument, NULL, 'b' },
		{ "hosts", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'p' },
		{ "listen", required_argument, NULL, 'l' },
		{ "workers", required_argument, NULL, 'w' },
		{ "state-file", required_argument, NULL, 'S' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:tb:p:l:w:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			m.cli.config_file = optarg;
			break;
		case 't':
			m.cli.test_only = true;
			break;
		case 'b':
			if (m.cli.nbackends == CLI_BACKENDS_MAX)
				usage_error("too many backends (at most %s)", "4096");
			m.cli.backends[m.cli.nbackends++] = optarg;
			break;
		case 'p':
			m.cli.port = optarg;
			break;
		case 'l':
			m.cli.listen = optarg;
			break;
		case 'w':
			m.cli.workers = optarg;
			break;
		case 'S':
			m.cli.state_file = optarg;
			break;
		case 'V':
			printf("roundguardd %s\n", ROUNDGUARD_VERSION);
			exit(0);
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case ':':
			usage_error("option %s needs a value", argv[optind - 1]);
		default:
			usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument \"%s\"", argv[optind]);
}

int
main(int argc, char **argv, char **envp)
{
	static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT };
	struct config cfg;
	struct event_config *ec;
	/* Every problem of a configuration, listed at once: too big for the stack. */
	static char err[ERRBUF_SIZE];
	char msg[512];

	memcache_install();
	setproctitle_init(argc, argv, envp);
	parse_cli(argc, argv);
	if (log_init_env(msg, sizeof(msg)) == -1) {
		fprintf(stderr, "roundguardd: %s\n", msg);
		return 1;
	}
	log_set_proc("master");
	proc_route_libevent_logs();
	if (build_config(&cfg, err, ERRBUF_SIZE) > 0 ||
	    proc_resolve_identity(cfg.user, cfg.group, &m.id, err, ERRBUF_SIZE) == -1) {
		fputs(err, stderr);
		if (err[0] != '\0' && err[strlen(err) - 1] != '\n')
			fputc('\n', stderr);
		config_free(&cfg);
		return 1;
	}
	if (m.cli.test_only) {
		struct tls_generation *tls;
		gid_t gid;

		/* The certificates and keys too, as the master loads them at start. */
		warn_unverified(&cfg);
		if (control_gid(&cfg, &gid, err, ERRBUF_SIZE) == -1) {
			fprintf(stderr, "%s: %s\n", cfg.file[0] != '\0' ? cfg.file : "roundguardd", err);
			config_free(&cfg);
			return 1;
		}
		if (tls_generation_new(&cfg, &tls, err, ERRBUF_SIZE) > 0) {
			fprintf(stderr, "%s\n", err);
			config_free(&cfg);
			return 1;
		}
		tls_generation_free(tls);
		printf("configuration OK\n");
		config_free(&cfg);
		return 0;
	}
	log_set_level(cfg.log.level);
	log_set_format(cfg.log.format);
	warn_unverified(&cfg);
	if (m.id.drop && geteuid() != 0)
		log_warn("not running as root: user/group cannot be changed", NULL);

	signal(SIGPIPE, SIG_IGN);
	LIST_INIT(&m.gens);
	if ((ec = event_config_new()) == NULL)
		return 1;
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
	m.base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (m.base == NULL) {
		log_error("cannot create the event loop", NULL);
		return 1;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		m.sig[i] = evsignal_new(m.base, sigs[i], signal_cb, NULL);
		event_add(m.sig[i], NULL);
	}
	setproctitle("master");
	m.started_ns = proc_now_ns();
	if (control_start(&cfg, err, ERRBUF_SIZE) == -1) {
		log_problems("cannot start", err);
		config_free(&cfg);
		return 1;
	}
	if (generation_new(&cfg, err, ERRBUF_SIZE) == NULL) {
		log_problems("cannot start", err);
		config_free(&cfg);
		/* Wait for any child that did start, so nothing is left behind. */
		while (waitpid(-1, NULL, 0) > 0)
			;
		while (!LIST_EMPTY(&m.gens))
			generation_free(LIST_FIRST(&m.gens));
		return 1;
	}

	event_base_dispatch(m.base);

	control_server_stop();
	while (!LIST_EMPTY(&m.gens))
		generation_free(LIST_FIRST(&m.gens));
	if (m.stop_deadline != NULL)
		event_free(m.stop_deadline);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		event_free(m.sig[i]);
	event_base_free(m.base);
	log_info("stopped", NULL);
	return 0;
}
