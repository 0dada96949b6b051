/* Per-worker keep-alive pools of backend connections: LIFO per backend, bounded. */
#ifndef ROUNDGUARD_POOL_H
#define ROUNDGUARD_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event_struct.h>
#include <llhttp.h>

#include "roundguard/deadline.h"
#include "roundguard/message.h"

struct event_base;
struct evbuffer;
struct http_head;
struct ssl_st;

/* One connection to a backend, either lent to a client or idle in the pool. */
struct upconn {
	TAILQ_ENTRY(upconn) idle;	/* in the pool while idle */
	int fd;
	uint32_t backend;
	uint32_t slot_seq;		/* a discovered backend's slot_seq when connected */
	struct ssl_st *ssl;		/* to an https backend; NULL for plain HTTP */
	struct event rev;
	struct event wev;
	struct deadline timer;		/* connect, send, answer and idle timeouts */
	int64_t last_io_ns;		/* start of the current wait: the timeouts count from it */
	struct evbuffer *in;		/* response bytes not yet passed on */
	struct evbuffer *out;		/* request bytes not yet written */
	llhttp_t parser;
	struct message_parse pc;	/* the answer being parsed (head spans, body, limits) */
	size_t fed;			/* bytes of in already given to llhttp */
	void *owner;			/* the client using it, NULL when idle */
	struct pool *pool;
	uint32_t requests;		/* served on this connection */
	bool connecting;
	bool writing;		/* wev armed: connecting, or the backend is not taking more */
	bool pooled;		/* idle in the pool */
	bool proxy_sent;	/* send_proxy: the PROXY header is out */
};

struct pool;

/*
 * What a busy connection's read or write readiness (what: libevent's EV_*
 * flags), or its timer (what 0), is handed to.
 */
typedef void (*pool_io_cb)(struct upconn *u, short what);

/*
 * A pool for nbackends backends keeping at most max_idle idle connections
 * each. Busy connections' events go to on_read/on_write, their timer to
 * on_timer (which decides whether a timeout is due: see deadline.h). An idle
 * connection's timer closes it after POOL_IDLE_SEC.
 */
struct pool *pool_new(struct event_base *base, uint32_t nbackends, int max_idle,
    pool_io_cb on_read, pool_io_cb on_write, pool_io_cb on_timer);
void pool_free(struct pool *p);

/* A fresh connection object (not connected yet), or NULL. */
struct upconn *upconn_new(struct pool *p, uint32_t backend);

/*
 * Register u's events once its socket exists. They stay registered for the
 * connection's life, busy or idle: switching callbacks would cost an
 * epoll_ctl call each time a connection goes to or comes from the pool.
 * They are edge-triggered (EV_ET), and reading also reports the backend's
 * close (EV_CLOSED): see read_socket() in proxy.c.
 */
void upconn_track(struct upconn *u);
void upconn_free(struct upconn *u);

/*
 * The most recently used idle connection to backend, taken out of the pool;
 * NULL when there is none. Connections the backend closed meanwhile were
 * already dropped when their close was seen.
 */
struct upconn *pool_get(struct pool *p, uint32_t backend);

/*
 * Give back a connection whose exchange ended cleanly at now_ns, with its read
 * event registered; closed if the pool is full or a byte is left in either
 * direction.
 */
void pool_put(struct pool *p, struct upconn *u, int64_t now_ns);

/* Idle connections across all backends. */
uint32_t pool_idle_count(const struct pool *p);

/* Close every idle connection to backend (a discovered slot that now names another address). */
void pool_drop_backend(struct pool *p, uint32_t backend);

#endif
