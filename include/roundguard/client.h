/*
 * A client connection of a worker and the worker's proxy state: what the two
 * halves of the exchange state machine share. proxy.c is the client side
 * (accept, read and check the request, answer, drain); upstream.c the backend
 * side (pick, connect, send, retry, relay the answer).
 */
#ifndef ROUNDGUARD_CLIENT_H
#define ROUNDGUARD_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event_struct.h>
#include <llhttp.h>

#include "roundguard/config-t.h"
#include "roundguard/deadline.h"
#include "roundguard/http.h"
#include "roundguard/message.h"
#include "roundguard/metrics-t.h"
#include "roundguard/net.h"
#include "roundguard/shm.h"

struct pool;
struct upconn;
struct ssl_st;
struct tls_generation;

#define PROXY_BUF_HIGH		(256 * 1024)	/* stop reading a side while this much waits */
#define PROXY_HOLD_MAX		(64 * 1024)	/* request body kept for an idempotent retry */
#define PROXY_TRIES_MAX		8
#define PROXY_SPARE_HEADS	64
#define PROXY_SPARE_BUFS	256	/* empty evbuffers kept for the next busy connection */
#define PROXY_SPARE_RQ		64
/* A request body slower than this (bytes per second) runs into client_timeout. */
#define PROXY_BODY_MIN_RATE	500
/* On drain, how long a just-accepted connection may take to send its request. */
#define PROXY_DRAIN_GRACE_MS	1000

#define NO_UPSTREAM_TITLE	"No healthy upstream"

enum req_state {
	REQ_HEAD,	/* reading a request head */
	REQ_BODY,	/* forwarding its body (possibly empty) */
	REQ_DONE,	/* the whole request went to the backend */
};

enum resp_state {
	RESP_NONE,	/* nothing sent to the client yet for this request */
	RESP_BODY,	/* head sent, streaming the body */
	RESP_DONE,
	RESP_TUNNEL,	/* 101 sent: bytes both ways until both sides are done (tunnel.c) */
};

/* What reading a request takes: lent from the worker's spares to busy connections only. */
/*
 * What a connection needs only while a request is read or served (and for
 * a tunnel's life): lent from the worker's spares when bytes arrive, given
 * back when the connection goes idle, so an idle keep-alive connection
 * costs its struct client alone. Everything from `fed` on is zeroed at each
 * lending (rq_take_exchange()).
 */
struct client_request {
	llhttp_t parser;
	struct message_parse pc;

	size_t fed;			/* bytes of c->in given to the parser */
	/* Kept to build the request again for another backend. */
	/*
	 * "METHOD target\0" (no backend prefix; the NUL ends the path for the
	 * access log), then the rewritten header block.
	 */
	struct evbuffer *req_head;
	size_t method_len;
	size_t line_len;		/* of "METHOD target" */
	uint32_t upgrade_off;		/* the Upgrade value asked for, in req_head */
	uint16_t upgrade_len;
	bool held_ok;
	bool retried_after_send;
	struct evbuffer *held;		/* body bytes sent, while they fit; NULL until needed */
	/* Body bytes of an attempt that failed before sending any: for the next one. */
	struct evbuffer *replay;
	int tried[PROXY_TRIES_MAX];
	int ntried;

	int status;			/* of the answer, 0 until there is one */
	size_t up_sent;			/* request bytes the kernel took on this attempt */
	size_t up_head_len;		/* of the head queued first in c->up->out */

	/* For metrics and the access log, once per request. */
	int64_t started_ns;
	int64_t head_started_ns;	/* first byte of the request head */
	int64_t body_started_ns;	/* end of the head */
	int backend;			/* that served (or failed) it, -1 if none */
	uint64_t resp_bytes;		/* queued for the client */
	uint64_t tun_up_bytes;		/* a tunnel's client-to-backend bytes, for the access log */
	int64_t tun_started_ns;
};

/*
 * A client connection. Idle between keep-alive requests it holds this and
 * nothing else (no buffers, no parser, no request state): 10,000 idle
 * connections cost a worker about 0.6 KiB each, as nginx's do.
 */
struct client {
	LIST_ENTRY(client) entry;
	TAILQ_ENTRY(client) flush_entry;	/* on px.flushes while flush_pending */
	TAILQ_ENTRY(client) send_entry;		/* on px.sends while send_pending */
	bool flush_pending;
	bool send_pending;
	int fd;
	/*
	 * Read and write readiness, edge-triggered, registered once for the
	 * connection's life (as nginx's are): stopping reading or writing is a
	 * flag (reading, writing), not an epoll_ctl, and one event is 128 bytes
	 * less per connection than two.
	 */
	struct event ev;
	/* in, out and rq: all NULL while the connection is idle (client_bufs_take()). */
	struct evbuffer *in;
	struct evbuffer *out;
	struct client_request *rq;	/* while a request is read or served; NULL when idle */
	struct upconn *up;
	struct ssl_st *ssl;		/* on a TLS listener; NULL for plain HTTP */

	enum req_state req;
	enum resp_state resp;
	enum http_conn_mode mode;
	uint32_t served;		/* requests answered on this connection */
	bool keep_alive;		/* the client allows another request */
	bool http10;
	bool head_method;
	bool idempotent;
	uint8_t method;			/* llhttp's, kept past the request's parser (tunnels) */
	bool has_host;
	bool asterisk;			/* "OPTIONS *": no backend prefix */
	bool upgrade;			/* asks to switch protocols: a 101 makes a tunnel */
	bool up_reused;
	bool up_paused;			/* not reading the backend: client not draining */
	bool in_exchange;		/* a request is between head and recorded end */
	bool metrics_only;		/* accepted on metrics.listen */
	int8_t listener;		/* index in cfg->listeners; -1 for metrics.listen */
	bool handshaking;		/* TLS handshake not done: no byte of HTTP yet */
	bool awaiting_proxy;		/* proxy_protocol listener: the PROXY header comes first */
	bool peer_closed;		/* EV_CLOSED seen: read on to the end of file */
	bool close_after;		/* close once out is flushed */
	bool reading;			/* client read event armed */
	bool writing;			/* client write event armed: out is blocked */
	/* The tunnel after a 101 (tunnel.c). */
	bool tun_client_eof;		/* the client sent its last byte */
	bool tun_backend_eof;
	bool tun_client_shut;		/* its end was passed on: shutdown(SHUT_WR) */
	bool tun_backend_shut;

	/* Armed from accept to close; client_timeout counts from last_io_ns. */
	struct deadline timer;
	int64_t last_io_ns;		/* last byte read or written, or reading resumed */
	struct net_addr addr;		/* the client's, for logs (net_addr_format()) */
};

/* The worker's proxy state, one per process (defined in proxy.c). */
struct proxy_state {
	struct event_base *base;
	const struct config *cfg;
	struct shm *shm;
	struct pool *pool;
	uint32_t *slot_seen;		/* per backend: the slot_seq its address was copied at */
	struct tls_generation *tls;	/* the generation's TLS contexts, or NULL */
	struct deadlines *client_timers;	/* every client connection's timer */
	int worker;
	char worker_str[12];		/* for the access log */
	/* proc_now_ns() at the start of the current callback. */
	int64_t now;
	LIST_HEAD(, client) clients;
	TAILQ_HEAD(, client) flushes;	/* answers written at the end of the loop turn */
	TAILQ_HEAD(, client) sends;	/* whole requests written at the end of the loop turn */
	uint32_t nclients;
	bool draining;
	void (*drained)(void);
	struct event *drain_ev;
	llhttp_settings_t req_settings;
	llhttp_settings_t resp_settings;
	struct http_head *spare[PROXY_SPARE_HEADS];
	int nspare;
	struct evbuffer *spare_bufs[PROXY_SPARE_BUFS];
	int nspare_bufs;
	struct client_request *spare_rq[PROXY_SPARE_RQ];
	int nspare_rq;
};

extern struct proxy_state px;

/* The client's IP as text, in buf (char buf[NET_ADDR_STRLEN]). */
static inline const char *
client_ip(const struct client *c, char *buf)
{
	return net_addr_format(&c->addr, buf, NET_ADDR_STRLEN);
}

/* Draining an empty evbuffer still runs its callbacks: skipped on the hot path. */
static inline void
buffer_clear(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);

	if (len > 0)
		evbuffer_drain(b, len);
}

/* ---- proxy.c: the client side ---- */

/* A parsed-head holder from the worker's spares. */
struct http_head *head_get(void);
void head_put(struct http_head *h);

/*
 * Empty evbuffers from the worker's spares, and back: an idle connection
 * holds none (client_bufs_take() when bytes arrive, given back once idle).
 */
struct evbuffer *buf_get(void);
void buf_put(struct evbuffer *b);

/* Count the finished request once, in this worker's slot, and log it if asked to. */
void exchange_record(struct client *c);

/* The exchange is over on both sides: reuse or close, then take the next request. */
int exchange_done(struct client *c);

/* Trailer fields the parser dropped (message.h), counted once each. */
void count_trailers(struct message_parse *pc);

void client_close(struct client *c);

/* Give back c's request state (a tunnel has no more requests to read). */
void client_rq_give(struct client *c);
void client_set_reading(struct client *c, bool on);

/*
 * Answer with an error made here (description NULL: the default one); the
 * connection closes unless the request was whole. -1 when c is gone.
 */
int client_error(struct client *c, int status, const char *title, const char *description);

/* Parse what c->in holds and act on it: head, body bytes for the backend. */
int client_process(struct client *c);

/* Write c->out; -1 when c was closed. */
int client_flush(struct client *c);

/* ---- upstream.c: the backend side ---- */

/* Pick a backend and send the request there (or answer 502/503). */
int upstream_start(struct client *c);

/* Write what waits in c->up->out; on a failure, retry or answer. */
int upstream_flush(struct client *c);

/* upstream_flush() now, or at the end of the turn for a whole request. */
int upstream_flush_soon(struct client *c);

/* Read the backend: arm the read event, and proxy.timeout once the request is whole. */
void upstream_arm_timeout(struct client *c);

/*
 * Stop reading the backend while the client does not take what it sends
 * (c->up_paused), or read it again (an answer's proxy.timeout counting anew).
 */
void upstream_set_reading(struct client *c, bool on);

/* Relay what the backend sent: interim answers, the head, the body. */
int upstream_process(struct client *c);

/* Let go of c->up: back to the pool when reusable, else closed. */
void upstream_release(struct client *c, bool reusable);

void record_upstream_error(uint32_t b, enum metrics_upstream_error e);

/* A busy backend connection's events (pool.h). */
void upstream_read_cb(struct upconn *u, short what);
void upstream_write_cb(struct upconn *u, short what);
void upstream_timer_cb(struct upconn *u, short what);

#endif
