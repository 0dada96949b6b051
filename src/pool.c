/* Per-worker keep-alive pools of backend connections: LIFO per backend, bounded. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "roundguard/pool.h"
#include "roundguard/proc.h"
#include "roundguard/transport.h"

/* An idle connection unused this long is closed (backends close theirs too). */
#define POOL_IDLE_NS (INT64_C(60) * 1000000000)
/*
 * Connections come back in bursts (many answers in one loop turn) and are
 * taken again in the next: closing everything past max_idle at once meant a
 * connect per request under high concurrency. Past max_idle they are kept up
 * to this many times the bound and trimmed back, oldest first, after a while.
 */
#define POOL_BURST_FACTOR 4
#define POOL_TRIM_MS 1000

struct pool {
	struct event_base *base;
	pool_io_cb on_read;
	pool_io_cb on_write;
	pool_io_cb on_timer;
	uint32_t nbackends;
	int max_idle;
	uint32_t total;
	struct event *trim_ev;
	struct deadlines *timers;	/* every connection's (see deadline.h) */
	struct {
		TAILQ_HEAD(upconn_list, upconn) conns;	/* most recently used first */
		int n;
	} *idle;
};

static void upconn_timer_cb(struct deadline *d);

/* Close the idle connections past max_idle, least recently used first. */
static void
pool_trim_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;

	for (uint32_t b = 0; b < p->nbackends; b++) {
		while (p->idle[b].n > p->max_idle) {
			struct upconn *u = TAILQ_LAST(&p->idle[b].conns, upconn_list);

			TAILQ_REMOVE(&p->idle[b].conns, u, idle);
			p->idle[b].n--;
			p->total--;
			upconn_free(u);
		}
	}
}

struct pool *
pool_new(struct event_base *base, uint32_t nbackends, int max_idle, pool_io_cb on_read,
    pool_io_cb on_write, pool_io_cb on_timer)
{
	struct pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->idle = calloc(nbackends, sizeof(*p->idle));
	if (p->idle == NULL) {
		free(p);
		return NULL;
	}
	p->base = base;
	p->on_read = on_read;
	p->on_write = on_write;
	p->on_timer = on_timer;
	p->nbackends = nbackends;
	p->max_idle = max_idle;
	p->trim_ev = evtimer_new(base, pool_trim_cb, p);
	p->timers = deadlines_new(base, upconn_timer_cb);
	if (p->trim_ev == NULL || p->timers == NULL) {
		if (p->trim_ev != NULL)
			event_free(p->trim_ev);
		deadlines_free(p->timers);
		free(p->idle);
		free(p);
		return NULL;
	}
	for (uint32_t i = 0; i < nbackends; i++)
		TAILQ_INIT(&p->idle[i].conns);
	return p;
}

void
pool_free(struct pool *p)
{
	struct upconn *u;

	if (p == NULL)
		return;
	for (uint32_t i = 0; i < p->nbackends; i++) {
		while ((u = TAILQ_FIRST(&p->idle[i].conns)) != NULL) {
			TAILQ_REMOVE(&p->idle[i].conns, u, idle);
			upconn_free(u);
		}
	}
	event_free(p->trim_ev);
	deadlines_free(p->timers);
	free(p->idle);
	free(p);
}

struct upconn *
upconn_new(struct pool *p, uint32_t backend)
{
	struct upconn *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NULL;
	u->pool = p;
	u->fd = -1;
	deadline_init(&u->timer, p->timers);
	u->backend = backend;
	u->in = evbuffer_new();
	u->out = evbuffer_new();
	if (u->in == NULL || u->out == NULL) {
		upconn_free(u);
		return NULL;
	}
	return u;
}

void
upconn_free(struct upconn *u)
{
	if (u->fd != -1) {
		event_del(&u->rev);
		event_del(&u->wev);
		deadline_cancel(&u->timer);
		if (u->ssl != NULL) {
			/* A close_notify keeps the session resumable for the next connection. */
			transport_close_notify(u->ssl);
			SSL_free(u->ssl);
		}
		close(u->fd);
	} else if (u->ssl != NULL) {
		SSL_free(u->ssl);
	}
	if (u->in != NULL)
		evbuffer_free(u->in);
	if (u->out != NULL)
		evbuffer_free(u->out);
	free(u);
}

static void
pool_drop(struct pool *p, struct upconn *u)
{
	TAILQ_REMOVE(&p->idle[u->backend].conns, u, idle);
	p->idle[u->backend].n--;
	p->total--;
	upconn_free(u);
}

/*
 * Readiness of an idle connection means the backend closed it (or sent
 * junk), unless it is TLS bookkeeping with no data (TLS 1.3 session
 * tickets come after the answer): OpenSSL takes those.
 */
static void
upconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn *u = arg;

	if (!u->pooled)
		u->pool->on_read(u, what);
	else if (u->ssl == NULL || !transport_idle_ok(u->ssl))
		pool_drop(u->pool, u);
}

static void
upconn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn *u = arg;

	if (!u->pooled)
		u->pool->on_write(u, what);
}

static void
upconn_timer_cb(struct deadline *d)
{
	struct upconn *u = deadline_owner(d, struct upconn, timer);
	int64_t now;

	if (!u->pooled) {
		u->pool->on_timer(u, 0);
		return;
	}
	now = proc_now_ns();
	if (now - u->last_io_ns >= POOL_IDLE_NS)
		pool_drop(u->pool, u);
	else
		deadline_ensure(&u->timer, u->last_io_ns + POOL_IDLE_NS, now);
}

void
upconn_track(struct upconn *u)
{
	event_assign(&u->rev, u->pool->base, u->fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET,
	    upconn_read_cb, u);
	event_assign(&u->wev, u->pool->base, u->fd, EV_WRITE | EV_PERSIST | EV_ET, upconn_write_cb,
	    u);
}

struct upconn *
pool_get(struct pool *p, uint32_t backend)
{
	struct upconn *u = TAILQ_FIRST(&p->idle[backend].conns);

	if (u == NULL)
		return NULL;
	TAILQ_REMOVE(&p->idle[backend].conns, u, idle);
	p->idle[backend].n--;
	p->total--;
	u->pooled = false;
	return u;
}

void
pool_put(struct pool *p, struct upconn *u, int64_t now_ns)
{
	/*
	 * Bytes left in either direction (a request not all sent, or more from
	 * the backend than the answer) would be mixed into the next exchange.
	 */
	if (p->idle[u->backend].n >= p->max_idle * POOL_BURST_FACTOR || u->fd == -1 ||
	    evbuffer_get_length(u->in) > 0 || evbuffer_get_length(u->out) > 0) {
		upconn_free(u);
		return;
	}
	if (u->writing) {
		u->writing = false;
		event_del(&u->wev);
	}
	u->fed = 0;
	u->owner = NULL;
	u->pooled = true;
	/* Still registered for reading: a close by the backend drops it from the pool. */
	u->last_io_ns = now_ns;
	deadline_ensure(&u->timer, now_ns + POOL_IDLE_NS, now_ns);
	TAILQ_INSERT_HEAD(&p->idle[u->backend].conns, u, idle);
	p->idle[u->backend].n++;
	p->total++;
	if (p->idle[u->backend].n > p->max_idle && !evtimer_pending(p->trim_ev, NULL)) {
		struct timeval tv = { POOL_TRIM_MS / 1000, POOL_TRIM_MS % 1000 * 1000 };

		evtimer_add(p->trim_ev, &tv);
	}
}

uint32_t
pool_idle_count(const struct pool *p)
{
	return p->total;
}

void
pool_drop_backend(struct pool *p, uint32_t backend)
{
	struct upconn *u;

	while ((u = TAILQ_FIRST(&p->idle[backend].conns)) != NULL)
		pool_drop(p, u);
}
