/* A worker process: an event loop accepting on its own SO_REUSEPORT socket and proxying. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "roundguard/log.h"
#include "roundguard/proc.h"
#include "roundguard/proxy.h"
#include "roundguard/worker.h"

/* Accepts per wake-up, so that one busy listener cannot starve the connections. */
#define WORKER_ACCEPT_BATCH	64
/* Pause after running out of descriptors, so the loop does not spin on EMFILE. */
#define WORKER_EMFILE_PAUSE_MS	100
/* While out of descriptors, say so at most this often (it retries every 100 ms). */
#define WORKER_WARN_EVERY_NS	(10 * INT64_C(1000000000))
/* Access-log lines wait at most this long in the buffer. */
#define WORKER_LOG_FLUSH_MS	100

static struct {
	struct event_base *base;
	const struct config *cfg;
	int index;
	int nlisten;
	int listen_fds[CONFIG_LISTENERS_MAX];
	int metrics_fd;
	struct event accept_ev[CONFIG_LISTENERS_MAX];
	struct event metrics_ev;
	struct event *flush_ev;
	struct event *resume_ev;
	struct event *sigterm, *sigint, *deadline;
	bool stopping;
	int64_t warned_ns;
} wk;

static void
accepting(bool on)
{
	for (int l = 0; l < wk.nlisten; l++) {
		if (wk.listen_fds[l] == -1)
			continue;
		if (on)
			event_add(&wk.accept_ev[l], NULL);
		else
			event_del(&wk.accept_ev[l]);
	}
	if (wk.metrics_fd != -1) {
		if (on)
			event_add(&wk.metrics_ev, NULL);
		else
			event_del(&wk.metrics_ev);
	}
}

/*
 * Accept up to a batch from listener (PROXY_METRICS_LISTENER: metrics.listen);
 * true when the batch was full (more may be queued).
 */
static bool
accept_batch(evutil_socket_t lfd, int listener)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd;

	for (int i = 0; i < WORKER_ACCEPT_BATCH; i++) {
		sslen = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd != -1) {
			proxy_accept(fd, (struct sockaddr *)&ss, listener);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			struct timeval tv = { 0, WORKER_EMFILE_PAUSE_MS * 1000 };

			/* Leave the connection queued: it is served once descriptors free up. */
			if (proc_now_ns() - wk.warned_ns > WORKER_WARN_EVERY_NS) {
				log_warn("cannot accept, pausing", "error", strerror(errno), NULL);
				wk.warned_ns = proc_now_ns();
			}
			accepting(false);
			evtimer_add(wk.resume_ev, &tv);
		} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
			log_warn("accept failed", "error", strerror(errno), NULL);
		}
		return false;
	}
	return true;
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	accept_batch(lfd, (int)(intptr_t)arg);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	if (wk.stopping)
		return;
	accepting(true);
}

static void
drained(void)
{
	event_base_loopbreak(wk.base);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	char open[16];

	snprintf(open, sizeof(open), "%u", proxy_client_count());
	log_warn("shutdown timeout reached, closing remaining connections", "open", open, NULL);
	event_base_loopbreak(wk.base);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct timeval tv = {
		(time_t)(wk.cfg->proxy.shutdown_timeout_ns / 1000000000),
		(suseconds_t)(wk.cfg->proxy.shutdown_timeout_ns % 1000000000 / 1000),
	};

	if (wk.stopping)
		return;
	wk.stopping = true;
	/*
	 * Take what the kernel already queued on this socket, then let go of it:
	 * closing a listener resets the connections still in its queue. The
	 * master keeps the socket itself for a worker of the next generation.
	 */
	for (int l = 0; l < wk.nlisten; l++) {
		if (wk.listen_fds[l] == -1)
			continue;
		while (accept_batch(wk.listen_fds[l], l))
			;
		event_del(&wk.accept_ev[l]);
		close(wk.listen_fds[l]);
		wk.listen_fds[l] = -1;
	}
	if (wk.metrics_fd != -1) {
		event_del(&wk.metrics_ev);
		close(wk.metrics_fd);
		wk.metrics_fd = -1;
	}
	wk.deadline = evtimer_new(wk.base, deadline_cb, NULL);
	if (wk.deadline != NULL)
		evtimer_add(wk.deadline, &tv);
	proxy_drain(drained);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	log_flush();
}

int
worker_main(const struct config *cfg, struct shm *shm, struct tls_generation *tls, int index,
    const int *listen_fds, int metrics_fd)
{
	struct timeval flush_tv = { 0, WORKER_LOG_FLUSH_MS * 1000 };
	sigset_t none;
	struct event_config *ec;
	int rc = 1;

	memset(&wk, 0, sizeof(wk));
	wk.cfg = cfg;
	wk.index = index;
	wk.nlisten = (int)cfg->nlisteners;
	for (int l = 0; l < wk.nlisten; l++)
		wk.listen_fds[l] = listen_fds[l];
	wk.metrics_fd = metrics_fd;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if ((ec = event_config_new()) == NULL)
		return 1;
	event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	wk.base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (wk.base == NULL) {
		log_error("cannot create the event loop", NULL);
		return 1;
	}
	if (proxy_init(wk.base, cfg, shm, tls, index) == -1) {
		log_error("cannot set up the proxy", NULL);
		goto out;
	}
	atomic_store_explicit(&shm->workers[index].pid, (int32_t)getpid(), memory_order_relaxed);
	for (int l = 0; l < wk.nlisten; l++)
		event_assign(&wk.accept_ev[l], wk.base, wk.listen_fds[l], EV_READ | EV_PERSIST,
		    accept_cb, (void *)(intptr_t)l);
	if (metrics_fd != -1)
		event_assign(&wk.metrics_ev, wk.base, metrics_fd, EV_READ | EV_PERSIST, accept_cb,
		    (void *)(intptr_t)PROXY_METRICS_LISTENER);
	accepting(true);
	wk.flush_ev = event_new(wk.base, -1, EV_PERSIST, flush_cb, NULL);
	if (cfg->log.access)
		event_add(wk.flush_ev, &flush_tv);
	wk.resume_ev = evtimer_new(wk.base, resume_cb, NULL);
	wk.sigterm = evsignal_new(wk.base, SIGTERM, stop_cb, NULL);
	wk.sigint = evsignal_new(wk.base, SIGINT, stop_cb, NULL);
	event_add(wk.sigterm, NULL);
	event_add(wk.sigint, NULL);
	/* The master forks with stop signals blocked; the handlers are in place now. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	/* One turn at a time: what the turn queued for clients goes out after it. */
	while (!event_base_got_break(wk.base) &&
	    event_base_loop(wk.base, EVLOOP_ONCE) == 0)
		proxy_end_turn();
	rc = 0;

	proxy_free();
	log_flush();
	for (int l = 0; l < wk.nlisten; l++) {
		if (wk.listen_fds[l] != -1) {
			event_del(&wk.accept_ev[l]);
			close(wk.listen_fds[l]);
		}
	}
	if (wk.metrics_fd != -1) {
		event_del(&wk.metrics_ev);
		close(wk.metrics_fd);
	}
	event_free(wk.flush_ev);
	if (wk.deadline != NULL)
		event_free(wk.deadline);
	event_free(wk.resume_ev);
	event_free(wk.sigterm);
	event_free(wk.sigint);
out:
	event_base_free(wk.base);
	return rc;
}
