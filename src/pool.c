/* Per-worker keep-alive pools of backend connections: LIFO per backend, bounded. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "roundguard/pool.h"

/* An idle connection unused this long is closed (backends close theirs too). */
#define POOL_IDLE_SEC 60

struct pool {
	struct event_base *base;
	uint32_t nbackends;
	int max_idle;
	uint32_t total;
	struct {
		LIST_HEAD(, upconn) conns;
		int n;
	} *idle;
};

struct pool *
pool_new(struct event_base *base, uint32_t nbackends, int max_idle)
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
	p->nbackends = nbackends;
	p->max_idle = max_idle;
	for (uint32_t i = 0; i < nbackends; i++)
		LIST_INIT(&p->idle[i].conns);
	return p;
}

void
pool_free(struct pool *p)
{
	struct upconn *u;

	if (p == NULL)
		return;
	for (uint32_t i = 0; i < p->nbackends; i++) {
		while ((u = LIST_FIRST(&p->idle[i].conns)) != NULL) {
			LIST_REMOVE(u, idle);
			upconn_free(u);
		}
	}
	free(p->idle);
	free(p);
}

struct upconn *
upconn_new(uint32_t backend)
{
	struct upconn *u = calloc(1, sizeof(*u));

	if (u == NULL)
		return NULL;
	u->fd = -1;
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
		close(u->fd);
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
	LIST_REMOVE(u, idle);
	p->idle[u->backend].n--;
	p->total--;
	upconn_free(u);
}

/* An idle connection became readable: the backend closed it (or sent junk). */
static void
pool_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upconn *u = arg;
	struct pool *p = u->owner;

	pool_drop(p, u);
}

struct upconn *
pool_get(struct pool *p, uint32_t backend)
{
	struct upconn *u = LIST_FIRST(&p->idle[backend].conns);

	if (u == NULL)
		return NULL;
	LIST_REMOVE(u, idle);
	p->idle[backend].n--;
	p->total--;
	event_del(&u->rev);
	u->owner = NULL;
	return u;
}

void
pool_put(struct pool *p, struct upconn *u)
{
	struct timeval tv = { POOL_IDLE_SEC, 0 };

	if (p->idle[u->backend].n >= p->max_idle || u->fd == -1) {
		upconn_free(u);
		return;
	}
	event_del(&u->rev);
	event_del(&u->wev);
	evbuffer_drain(u->in, evbuffer_get_length(u->in));
	evbuffer_drain(u->out, evbuffer_get_length(u->out));
	u->fed = 0;
	u->owner = p;
	event_assign(&u->rev, p->base, u->fd, EV_READ, pool_idle_cb, u);
	event_add(&u->rev, &tv);
	LIST_INSERT_HEAD(&p->idle[u->backend].conns, u, idle);
	p->idle[u->backend].n++;
	p->total++;
}

uint32_t
pool_idle_count(const struct pool *p)
{
	return p->total;
}
