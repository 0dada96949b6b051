/* The per-connection proxy state machine of a worker: client in, backend out, and back. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <llhttp.h>

#include "config.h"
#include "roundguard/balance.h"
#include "roundguard/deadline.h"
#include "roundguard/http.h"
#include "roundguard/log.h"
#include "roundguard/message.h"
#include "roundguard/metrics.h"
#include "roundguard/net.h"
#include "roundguard/pool.h"
#include "roundguard/proc.h"
#include "roundguard/proxy.h"
#include "roundguard/uri.h"

#define PROXY_READ_CHUNK	16384
#define PROXY_READS_MAX		4	/* per readiness, then other sockets get a turn */
#define PROXY_BUF_HIGH		(256 * 1024)	/* stop reading a side while this much waits */
#define PROXY_HOLD_MAX		(64 * 1024)	/* request body kept for an idempotent retry */
#define PROXY_TRIES_MAX		8
#define PROXY_SPARE_HEADS	64
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
};

struct client {
	LIST_ENTRY(client) entry;
	TAILQ_ENTRY(client) flush_entry;	/* on px.flushes while flush_pending */
	TAILQ_ENTRY(client) send_entry;		/* on px.sends while send_pending */
	bool flush_pending;
	bool send_pending;
	int fd;
	struct event rev;
	struct event wev;
	struct evbuffer *in;
	struct evbuffer *out;
	llhttp_t parser;
	struct message_parse req_pc;
	struct message_parse resp_pc;
	size_t fed;

	enum req_state req;
	enum resp_state resp;
	bool keep_alive;		/* the client allows another request */
	bool http10;
	bool head_method;
	bool idempotent;
	bool has_host;
	bool asterisk;			/* "OPTIONS *": no backend prefix */

	/* Kept to build the request again for another backend. */
	/*
	 * "METHOD target\0" (no backend prefix; the NUL ends the path for the
	 * access log), then the rewritten header block.
	 */
	struct evbuffer *req_head;
	size_t method_len;
	size_t line_len;		/* of "METHOD target" */
	struct evbuffer *held;		/* body bytes sent, while they fit; NULL until needed */
	/* Body bytes of an attempt that failed before sending any: for the next one. */
	struct evbuffer *replay;
	bool held_ok;
	bool retried_after_send;
	int tried[PROXY_TRIES_MAX];
	int ntried;

	struct upconn *up;
	size_t up_sent;			/* request bytes the kernel took on this attempt */
	size_t up_head_len;		/* of the head queued first in c->up->out */
	bool up_reused;
	bool up_paused;			/* not reading the backend: client not draining */
	enum http_conn_mode mode;

	/* For metrics and the access log, once per request. */
	int64_t started_ns;
	int status;			/* of the answer, 0 until there is one */
	int backend;			/* that served (or failed) it, -1 if none */
	uint64_t resp_bytes;		/* queued for the client */
	bool in_exchange;		/* a request is between head and recorded end */
	uint32_t served;		/* requests answered on this connection */
	int64_t head_started_ns;	/* first byte of the request head */
	int64_t body_started_ns;	/* end of the head */
	bool metrics_only;		/* accepted on metrics.listen */

	bool close_after;		/* close once out is flushed */
	bool reading;			/* client read event armed */
	bool writing;			/* client write event armed: out is blocked */
	/* Armed from accept to close; client_timeout counts from last_io_ns. */
	struct deadline timer;
	int64_t last_io_ns;		/* last byte read or written, or reading resumed */
	char ip[INET6_ADDRSTRLEN];
};

static struct {
	struct event_base *base;
	const struct config *cfg;
	struct shm *shm;
	struct pool *pool;
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
} px;

static int client_process(struct client *c);
static int client_flush(struct client *c);
static int up_flush(struct client *c);
static int start_attempt(struct client *c);
static int response_process(struct client *c);

/* Draining an empty evbuffer still runs its callbacks: skipped on the hot path. */
static void
buffer_clear(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);

	if (len > 0)
		evbuffer_drain(b, len);
}

static struct http_head *
head_get(void)
{
	struct http_head *h = px.nspare > 0 ? px.spare[--px.nspare] : malloc(sizeof(*h));

	if (h != NULL) {
		h->nfields = 0;
		h->method.len = h->target.len = h->reason.len = 0;
	}
	return h;
}

static void
head_put(struct http_head *h)
{
	if (h == NULL)
		return;
	if (px.nspare < PROXY_SPARE_HEADS)
		px.spare[px.nspare++] = h;
	else
		free(h);
}

/* ---- metrics and access log ---- */

/* Decimal digits of v at the end of buf (no printf on the per-request path). */
static const char *
format_u64(char *buf, size_t buflen, uint64_t v)
{
	char *p = buf + buflen - 1;

	*p = '\0';
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 && p > buf);
	return p;
}

/* Count the finished request once, in this worker's slot, and log it if asked to. */
static void
exchange_record(struct client *c)
{
	int64_t ns;

	if (!c->in_exchange)
		return;
	c->in_exchange = false;
	c->served++;
	ns = proc_now_ns() - c->started_ns;
	if (c->backend >= 0)
		metrics_record(shm_stats(px.shm, (uint32_t)px.worker, (uint32_t)c->backend),
		    c->parser.method, c->status, ns);
	atomic_fetch_add_explicit(&px.shm->workers[px.worker].requests, 1, memory_order_relaxed);
	if (px.cfg->log.access && log_enabled(LOG_LEVEL_INFO)) {
		char status[4], bytes[24], dur[32];
		const char *line, *path = "-";

		if (evbuffer_get_length(c->req_head) > c->line_len &&
		    (line = (const char *)evbuffer_pullup(c->req_head,
		    (ev_ssize_t)c->line_len + 1)) != NULL)
			path = line + c->method_len + 1;
		status[0] = (char)('0' + c->status / 100 % 10);
		status[1] = (char)('0' + c->status / 10 % 10);
		status[2] = (char)('0' + c->status % 10);
		status[3] = '\0';
		format_duration(dur, sizeof(dur), ns);
		log_access("client", c->ip,
		    "method", llhttp_method_name((llhttp_method_t)c->parser.method),
		    "path", path, "status", status,
		    "bytes", format_u64(bytes, sizeof(bytes), c->resp_bytes), "duration", dur,
		    "backend", c->backend >= 0 ? px.cfg->backends[c->backend].addr.hostport : "-",
		    "worker", px.worker_str, NULL);
	}
}

static void
exchange_begin(struct client *c)
{
	c->started_ns = px.now;
	c->status = 0;
	c->backend = -1;
	c->resp_bytes = 0;
	c->in_exchange = true;
}

static void
count_dropped(enum shm_counter k, uint32_t n)
{
	atomic_fetch_add_explicit(&px.shm->workers[px.worker].counters[k], n,
	    memory_order_relaxed);
}

/* Trailer fields the parser dropped (message.h), once each. */
static void
count_trailers(struct message_parse *pc)
{
	if (pc->trailers_dropped > 0) {
		count_dropped(SHM_DROPPED_TRAILER, pc->trailers_dropped);
		pc->trailers_dropped = 0;
	}
}

static void
record_upstream_error(uint32_t b, enum metrics_upstream_error e)
{
	metrics_record_upstream_error(shm_stats(px.shm, (uint32_t)px.worker, b), e);
}

/* ---- connections ---- */

static void
client_close(struct client *c)
{
	if (c->in_exchange) {
		/* Cut off mid-way: what nginx logs as 499 when the client left first. */
		if (c->status == 0)
			c->status = 499;
		exchange_record(c);
	}
	if (c->up != NULL)
		upconn_free(c->up);
	if (c->flush_pending)
		TAILQ_REMOVE(&px.flushes, c, flush_entry);
	if (c->send_pending)
		TAILQ_REMOVE(&px.sends, c, send_entry);
	event_del(&c->rev);
	event_del(&c->wev);
	deadline_cancel(&c->timer);
	close(c->fd);
	head_put(c->req_pc.head);
	head_put(c->resp_pc.head);
	evbuffer_free(c->in);
	evbuffer_free(c->out);
	evbuffer_free(c->req_head);
	if (c->held != NULL)
		evbuffer_free(c->held);
	if (c->replay != NULL)
		evbuffer_free(c->replay);
	LIST_REMOVE(c, entry);
	free(c);
	px.nclients--;
	if (px.draining && px.nclients == 0 && px.drained != NULL)
		px.drained();
}

static void
client_set_reading(struct client *c, bool on)
{
	if (on == c->reading)
		return;
	c->reading = on;
	if (on) {
		/* The client's time to send starts now, not when reading stopped. */
		c->last_io_ns = px.now;
		event_add(&c->rev, NULL);
		/*
		 * Edge-triggered: what arrived while reading was off may have
		 * brought no edge since (or the stop and restart cancelled out in
		 * libevent's changelist), so look now.
		 */
		event_active(&c->rev, EV_READ, 0);
	} else {
		event_del(&c->rev);
	}
}

static void
up_release(struct client *c, bool reusable)
{
	struct upconn *u = c->up;

	if (u == NULL)
		return;
	c->up = NULL;
	head_put(c->resp_pc.head);
	c->resp_pc.head = NULL;
	u->requests++;
	if (reusable)
		pool_put(px.pool, u, px.now);
	else
		upconn_free(u);
}

static int exchange_done(struct client *c);

static int client_error_full(struct client *c, int status, const char *title,
    const char *description, const char *extra);

/* Answer with an error made here; the connection closes unless the request was whole. */
static int
client_error(struct client *c, int status, const char *title, const char *description)
{
	return client_error_full(c, status, title, description, NULL);
}

static int
client_error_allow(struct client *c, int status, const char *allow)
{
	char extra[64];

	snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
	return client_error_full(c, status, NULL, NULL, extra);
}

static int
client_error_full(struct client *c, int status, const char *title, const char *description,
    const char *extra)
{
	bool keep = c->keep_alive && c->req == REQ_DONE && !px.draining;
	size_t before;

	up_release(c, false);
	if (c->resp != RESP_NONE) {
		/* Part of a response went out already: all that is left is to cut it off. */
		client_close(c);
		return -1;
	}
	before = evbuffer_get_length(c->out);
	http_error_response(c->out, status, title, description, extra, keep, c->head_method);
	c->resp_bytes += evbuffer_get_length(c->out) - before;
	c->status = status;
	exchange_record(c);
	c->resp = RESP_DONE;
	c->mode = keep ? HTTP_CONN_KEEP : HTTP_CONN_CLOSE;
	if (!keep)
		c->close_after = true;
	return exchange_done(c);
}

/*
 * Answers complete in this loop turn are written when it ends
 * (proxy_end_turn()): the client's socket wakes its reader once for a burst
 * of them, rather than once for each.
 */
static void
client_flush_later(struct client *c)
{
	if (c->flush_pending || evbuffer_get_length(c->out) == 0)
		return;
	c->flush_pending = true;
	TAILQ_INSERT_TAIL(&px.flushes, c, flush_entry);
}

/* The exchange is over on both sides: reuse or close, then take the next request. */
static int
exchange_done(struct client *c)
{
	if (c->close_after || c->mode == HTTP_CONN_CLOSE || px.draining) {
		c->close_after = true;
		return client_flush(c);
	}
	head_put(c->req_pc.head);
	c->req_pc.head = NULL;
	c->req = REQ_HEAD;
	c->resp = RESP_NONE;
	c->ntried = 0;
	c->retried_after_send = false;
	/* Emptied evbuffers free their chains: an idle connection keeps no request. */
	if (c->held != NULL)
		buffer_clear(c->held);
	if (c->replay != NULL)
		buffer_clear(c->replay);
	buffer_clear(c->req_head);
	client_flush_later(c);
	client_set_reading(c, true);
	/* A pipelined request may already wait in c->in. */
	if (evbuffer_get_length(c->in) > 0)
		return client_process(c);
	return 0;
}

/*
 * A whole request waits for the end of the loop turn like an answer does
 * (client_flush_later()); a body still streaming in goes out at once.
 */
static int
up_flush_soon(struct client *c)
{
	if (c->req != REQ_DONE)
		return up_flush(c);
	if (!c->send_pending) {
		c->send_pending = true;
		TAILQ_INSERT_TAIL(&px.sends, c, send_entry);
	}
	return 0;
}

/* ---- picking a backend and connecting ---- */

static void
passive_down(uint32_t b, const char *reason)
{
	uint64_t bit = UINT64_C(1) << (b % 64);
	uint64_t old = atomic_fetch_and_explicit(&px.shm->live[b / 64], ~bit,
	    memory_order_acq_rel);

	if (old & bit)
		log_warn("backend unreachable, out of rotation until it passes a check",
		    "backend", px.cfg->backends[b].addr.hostport, "reason", reason, NULL);
}

static int
pick(struct client *c)
{
	uint64_t live[BALANCE_WORDS(CONFIG_BACKENDS_MAX)];
	uint64_t tried[BALANCE_WORDS(CONFIG_BACKENDS_MAX)];
	size_t n = px.cfg->nbackends;

	balance_snapshot(live, px.shm->live, n);
	if (c->ntried == 0)
		return balance_pick(live, n,
		    atomic_fetch_add_explicit(&px.shm->hdr->rr, 1, memory_order_relaxed));
	if (c->ntried == PROXY_TRIES_MAX)
		return -1;
	memset(tried, 0, BALANCE_WORDS(n) * sizeof(uint64_t));
	for (int i = 0; i < c->ntried; i++)
		tried[c->tried[i] / 64] |= UINT64_C(1) << (c->tried[i] % 64);
	return balance_next(live, tried, n, c->tried[c->ntried - 1]);
}

static bool
any_live(void)
{
	return shm_live_count(px.shm) > 0;
}

static void up_read_cb(struct upconn *u, short what);
static void up_write_cb(struct upconn *u, short what);

/*
 * Queue the request line (with this backend's prefix), the header block, and
 * every body byte an earlier attempt took: those of one that failed before
 * sending any (replay), or the held copy when one is retried after sending.
 */
static int
queue_request(struct client *c, uint32_t b)
{
	const struct backend_url *addr = &px.cfg->backends[b].addr;
	size_t total = evbuffer_get_length(c->req_head);
	const char *head = (const char *)evbuffer_pullup(c->req_head, -1);
	size_t plen = c->asterisk ? 0 : strlen(addr->prefix);
	size_t hlen = c->has_host ? 0 : strlen(addr->hostport);
	size_t target_len = c->line_len - c->method_len - 1;
	size_t fields_len = total - c->line_len - 1;
	struct evbuffer_iovec v;
	char *p;

	/* One reserved region, not an evbuffer_add() per piece. */
	if (head == NULL || total <= c->line_len ||
	    evbuffer_reserve_space(c->up->out, (ev_ssize_t)(HTTP_REQUEST_LINE_SIZE(c->method_len,
	    plen, target_len) + hlen + 8 + fields_len), &v, 1) < 1)
		return -1;
	p = v.iov_base;
	p += http_put_request_line(p, head, c->method_len, addr->prefix, plen,
	    head + c->method_len + 1, target_len);
	if (!c->has_host) {
		memcpy(p, "Host: ", 6);
		memcpy(p + 6, addr->hostport, hlen);
		memcpy(p + 6 + hlen, "\r\n", 2);
		p += hlen + 8;
	}
	memcpy(p, head + c->line_len + 1, fields_len);
	p += fields_len;
	v.iov_len = (size_t)(p - (char *)v.iov_base);
	if (evbuffer_commit_space(c->up->out, &v, 1) != 0)
		return -1;
	c->up_head_len = v.iov_len;
	/* The replay, when there is one, already holds the held bytes behind the head. */
	if (c->replay != NULL && evbuffer_get_length(c->replay) > 0)
		return evbuffer_add_buffer(c->up->out, c->replay);
	if (c->retried_after_send && c->held != NULL && evbuffer_get_length(c->held) > 0 &&
	    evbuffer_add(c->up->out, evbuffer_pullup(c->held, -1),
	    evbuffer_get_length(c->held)) != 0)
		return -1;
	return 0;
}

static int
connect_backend(struct upconn *u)
{
	const struct config_backend *be = &px.cfg->backends[u->backend];

	u->fd = socket(be->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd == -1)
		return -2;	/* our own shortage (descriptors), not the backend's fault */
	net_nodelay(u->fd);
	upconn_track(u);
	if (connect(u->fd, (const struct sockaddr *)&be->sa, be->salen) == 0) {
		u->connecting = false;
		return 0;
	}
	if (errno == EINPROGRESS) {
		u->connecting = true;
		return 0;
	}
	return -1;
}

/* No (more) backend to try: 503 when none is live, 502 when the live ones failed. */
static int
no_backend(struct client *c)
{
	if (c->ntried == 0 || !any_live()) {
		atomic_fetch_add_explicit(&px.shm->workers[px.worker].counters[SHM_NO_BACKEND], 1,
		    memory_order_relaxed);
		c->backend = -1;
		return client_error(c, 503, NO_UPSTREAM_TITLE, NULL);
	}
	return client_error(c, 502, NULL, NULL);
}

/* Start the wait for the backend: proxy.timeout (or connect_timeout) from now. */
static void
up_wait(struct upconn *u, int64_t limit)
{
	u->last_io_ns = px.now;
	deadline_ensure(&u->timer, px.now + limit, px.now);
}

/*
 * Read the backend. proxy.timeout counts from the moment the whole request is
 * with the backend: while a client is still uploading, the backend is
 * waiting on us.
 */
static void
up_arm_timeout(struct client *c)
{
	if (!c->up_paused && !event_pending(&c->up->rev, EV_READ, NULL))
		event_add(&c->up->rev, NULL);
	if (c->req == REQ_DONE)
		up_wait(c->up, px.cfg->proxy.timeout_ns);
}

/*
 * Write the queued request: body bytes already received join the head first,
 * so that a small POST leaves in one writev, not two.
 */
static int
send_request(struct client *c)
{
	if (c->req == REQ_BODY)
		return client_process(c);	/* forwards the body, then flushes */
	return up_flush_soon(c);
}

static int
start_attempt(struct client *c)
{
	struct upconn *u;
	int b, rc;

	for (;;) {
		if ((b = pick(c)) < 0)
			return no_backend(c);
		c->tried[c->ntried++] = b;
		c->backend = b;
		c->up_reused = true;
		if ((u = pool_get(px.pool, (uint32_t)b)) != NULL)
			break;
		c->up_reused = false;
		if ((u = upconn_new(px.pool, (uint32_t)b)) == NULL)
			return client_error(c, 500, NULL, NULL);
		if ((rc = connect_backend(u)) == 0)
			break;
		if (rc == -2) {
			log_error("cannot open a backend connection", "error", strerror(errno), NULL);
			upconn_free(u);
			return client_error(c, 503, NULL,
			    "The proxy is out of resources (file descriptors) for a backend connection");
		}
		record_upstream_error((uint32_t)b, errno == ECONNREFUSED ?
		    METRICS_ERR_CONNECT_REFUSED : METRICS_ERR_CONNECT_FAILED);
		passive_down((uint32_t)b, strerror(errno));
		upconn_free(u);
		if (!px.cfg->proxy.retry_unsent)
			return no_backend(c);
	}
	c->up = u;
	c->up_sent = 0;
	c->up_paused = false;
	u->owner = c;
	u->fed = 0;
	c->resp_pc.head = head_get();
	if (c->resp_pc.head == NULL)
		return client_error(c, 500, NULL, NULL);
	/* A pooled connection's parser only needs the reset message_reset() does. */
	if (!c->up_reused)
		llhttp_init(&u->parser, HTTP_RESPONSE, &px.resp_settings);
	message_reset(&u->parser, &c->resp_pc, c->resp_pc.head);
	if (queue_request(c, (uint32_t)b) == -1)
		return client_error(c, 500, NULL, NULL);
	if (u->connecting) {
		u->writing = true;
		event_add(&u->wev, NULL);
		up_wait(u, px.cfg->proxy.connect_timeout_ns);
		return 0;
	}
	up_arm_timeout(c);
	return send_request(c);
}

/* Keep the body bytes queued behind the head of c->up, which sent nothing, for the next attempt. */
static int
replay_take(struct client *c)
{
	struct evbuffer *out = c->up->out;

	if (evbuffer_get_length(out) <= c->up_head_len)
		return 0;
	if (c->replay == NULL && (c->replay = evbuffer_new()) == NULL)
		return -1;
	evbuffer_drain(out, c->up_head_len);
	return evbuffer_add_buffer(c->replay, out);
}

/*
 * The attempt on c->up failed before any response byte reached the client.
 * Retry where the rules allow it, else answer 502/503/504.
 */
static int
attempt_failed(struct client *c, const char *reason, enum metrics_upstream_error kind)
{
	uint32_t b = c->up->backend;
	bool connect_failed = kind == METRICS_ERR_CONNECT_REFUSED ||
	    kind == METRICS_ERR_CONNECT_TIMEOUT || kind == METRICS_ERR_CONNECT_FAILED;
	bool timed_out = kind == METRICS_ERR_TIMEOUT;
	bool unsent = connect_failed || c->up_sent == 0;

	record_upstream_error(b, kind);

	/* A refused connect is logged once, by passive_down(), when it takes the backend out. */
	if (connect_failed)
		passive_down(b, reason);
	else
		log_warn("upstream failed", "backend", px.cfg->backends[b].addr.hostport,
		    "reason", reason, "reused", c->up_reused ? "yes" : "no", NULL);
	if (c->resp != RESP_NONE) {
		client_close(c);
		return -1;
	}
	if (timed_out)
		return client_error(c, 504, NULL, NULL);
	if (unsent && px.cfg->proxy.retry_unsent) {
		/*
		 * Nothing reached the backend, so c->up->out still holds the head
		 * and, behind it, every body byte taken from the client so far
		 * (a pooled connection takes the body as soon as the request is
		 * queued): they go to the next backend, which would otherwise wait
		 * for a body that never comes.
		 */
		if (replay_take(c) == -1)
			return client_error(c, 502, NULL, NULL);
		up_release(c, false);
		return start_attempt(c);
	}
	up_release(c, false);
	if (!unsent && px.cfg->proxy.retry_idempotent && c->idempotent && c->held_ok &&
	    !c->retried_after_send) {
		c->retried_after_send = true;
		return start_attempt(c);
	}
	return client_error(c, 502, NULL, NULL);
}

static int
up_flush(struct client *c)
{
	struct upconn *u = c->up;
	size_t left = evbuffer_get_length(u->out);
	int n;

	while (left > 0) {
		n = evbuffer_write(u->out, u->fd);
		if (n > 0) {
			c->up_sent += (size_t)n;
			left -= (size_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			/* proxy.timeout for the backend to take more, from the last progress. */
			if (!u->writing) {
				u->writing = true;
				event_add(&u->wev, NULL);
			}
			up_wait(u, px.cfg->proxy.timeout_ns);
			if (left > PROXY_BUF_HIGH)
				client_set_reading(c, false);
			return 0;
		}
		return attempt_failed(c, n == 0 ? "connection closed" : strerror(errno),
		    METRICS_ERR_RESET);
	}
	if (u->writing) {
		u->writing = false;
		event_del(&u->wev);
	}
	if (c->req == REQ_BODY)
		client_set_reading(c, true);
	return 0;
}

static void
up_write_cb(struct upconn *u, short what)
{
	struct client *c = u->owner;
	int fd = u->fd;
	int err = 0;
	socklen_t len = sizeof(err);

	px.now = proc_now_ns();
	if (u->connecting) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err != 0) {
			attempt_failed(c, strerror(err), err == ECONNREFUSED ?
			    METRICS_ERR_CONNECT_REFUSED : METRICS_ERR_CONNECT_FAILED);
			return;
		}
		u->connecting = false;
		u->writing = false;
		event_del(&u->wev);
		up_arm_timeout(c);
	}
	send_request(c);
}

/* ---- the response ---- */

static int
response_head(struct client *c)
{
	struct upconn *u = c->up;
	struct http_head *h = c->resp_pc.head;
	const char *base;
	int status = u->parser.status_code;
	bool chunked = (u->parser.flags & F_CHUNKED) != 0;
	bool dechunk = false;
	size_t before;

	h->status = status;
	base = (const char *)evbuffer_pullup(u->in, (ev_ssize_t)u->fed);
	http_head_classify(base, h);
	/* llhttp takes "HTTP/1.1 2 OK" and control bytes in the reason: neither goes on. */
	if (status < 100 || status > 999 || !http_reason_valid(base + h->reason.off, h->reason.len))
		return attempt_failed(c, "invalid status line", METRICS_ERR_BAD_RESPONSE);
	if (status >= 100 && status < 200) {
		/* Interim answers (100 Continue) go to HTTP/1.1 clients; the final one follows. */
		if (status == 101) {
			log_warn("backend switched protocols, which is not supported", "backend",
			    px.cfg->backends[u->backend].addr.hostport, NULL);
			return attempt_failed(c, "101 Switching Protocols", METRICS_ERR_BAD_RESPONSE);
		}
		if (!c->http10)
			evbuffer_add_printf(c->out, "HTTP/1.1 %d %.*s\r\n\r\n", status,
			    (int)h->reason.len, base + h->reason.off);
		evbuffer_drain(u->in, u->fed);
		u->fed = 0;
		message_reset(&u->parser, &c->resp_pc, h);
		return client_flush(c);
	}
	c->mode = c->keep_alive && !px.draining ?
	    (c->http10 ? HTTP_CONN_KEEP_10 : HTTP_CONN_KEEP) : HTTP_CONN_CLOSE;
	if (!c->head_method && llhttp_message_needs_eof(&u->parser))
		c->mode = HTTP_CONN_CLOSE;	/* the body ends with the connection */
	if (c->http10 && chunked && !c->head_method) {
		dechunk = true;			/* HTTP/1.0 clients do not know chunked */
		c->mode = HTTP_CONN_CLOSE;
	}
	before = evbuffer_get_length(c->out);
	if (http_write_response_head(c->out, base, h, px.cfg->backends[u->backend].addr.hostport,
	    c->mode, dechunk) == -1)
		return client_error(c, 500, NULL, NULL);
	c->resp_bytes += evbuffer_get_length(c->out) - before;
	c->status = status;
	evbuffer_drain(u->in, u->fed);
	u->fed = 0;
	c->resp = RESP_BODY;
	/* A chunked answer is framed again (or de-chunked), never passed on as framed. */
	c->resp_pc.body_to = chunked ? c->out : NULL;
	c->resp_pc.rechunk = !dechunk;
	if (c->head_method) {
		/* No body follows an answer to HEAD, whatever its headers say. */
		c->resp_pc.msg_done = true;
		return 0;
	}
	llhttp_resume(&u->parser);
	return 0;
}

/* The response is complete: give the backend connection back if it can serve again. */
static int
response_done(struct client *c)
{
	struct upconn *u = c->up;
	/*
	 * Not while reading it is paused (the client was slow to take the
	 * answer): what the backend did meanwhile went unseen, and with
	 * edge-triggered events it would stay unseen in the pool.
	 */
	bool reusable = llhttp_should_keep_alive(&u->parser) && c->req == REQ_DONE &&
	    !c->up_paused;

	c->resp = RESP_DONE;
	if (c->req != REQ_DONE)
		c->close_after = true;	/* the rest of the request body cannot be resynchronised */
	exchange_record(c);
	up_release(c, reusable);
	return exchange_done(c);
}

static int
response_process(struct client *c)
{
	struct upconn *u;
	llhttp_errno_t e;
	size_t before;

	while ((u = c->up) != NULL) {
		if (!c->resp_pc.head_done) {
			e = message_feed(&u->parser, &c->resp_pc, u->in, &u->fed);
			if (!c->resp_pc.head_done) {
				if (e != HPE_OK && e != HPE_PAUSED)
					return attempt_failed(c, "invalid response",
					    METRICS_ERR_BAD_RESPONSE);
				if (u->fed > px.cfg->proxy.max_header_size)
					return attempt_failed(c, "response head too large",
					    METRICS_ERR_BAD_RESPONSE);
				return 0;
			}
			/* Then again: an interim answer, a retry, or the body. */
			if (response_head(c) == -1)
				return -1;
			continue;
		}
		/* A chunked body reaches c->out through the parser's callbacks. */
		before = c->resp_pc.body_to != NULL ? evbuffer_get_length(c->out) : 0;
		if (!c->resp_pc.msg_done) {
			e = message_feed(&u->parser, &c->resp_pc, u->in, &u->fed);
			if (e != HPE_OK && e != HPE_PAUSED) {
				log_warn("invalid response body", "backend",
				    px.cfg->backends[u->backend].addr.hostport,
				    "error", c->resp_pc.error_reason != NULL ?
				    c->resp_pc.error_reason : llhttp_errno_name(e), NULL);
				client_close(c);
				return -1;
			}
		}
		count_trailers(&c->resp_pc);
		if (c->resp_pc.body_to != NULL) {
			evbuffer_drain(u->in, u->fed);
			c->resp_bytes += evbuffer_get_length(c->out) - before;
		} else {
			evbuffer_remove_buffer(u->in, c->out, u->fed);
			c->resp_bytes += u->fed;
		}
		u->fed = 0;
		if (!c->resp_pc.msg_done)
			return client_flush(c);
		return response_done(c);
	}
	return 0;
}

/*
 * A read into an empty evbuffer goes through this buffer and is copied in:
 * evbuffer_reserve_space() of PROXY_READ_CHUNK on an empty evbuffer is a
 * 16 KiB malloc (and free once drained) per read, while a copied small
 * request or answer gets a chain from malloc's per-thread cache. Reads into
 * a buffer that already holds data (a body streaming in) go straight in.
 */
static char read_scratch[PROXY_READ_CHUNK];

static int
read_into(int fd, struct evbuffer *buf, ssize_t *got)
{
	struct evbuffer_iovec v;

	if (evbuffer_get_length(buf) == 0) {
		*got = recv(fd, read_scratch, sizeof(read_scratch), 0);
		if (*got > 0)
			return evbuffer_add(buf, read_scratch, (size_t)*got) == 0 ? 1 : -1;
		return *got == 0 ? 0 : (errno == EAGAIN || errno == EINTR ? 1 : -1);
	}
	if (evbuffer_reserve_space(buf, PROXY_READ_CHUNK, &v, 1) < 1)
		return -1;
	*got = recv(fd, v.iov_base, v.iov_len, 0);
	if (*got <= 0) {
		v.iov_len = 0;
		evbuffer_commit_space(buf, &v, 1);
		return *got == 0 ? 0 : (errno == EAGAIN || errno == EINTR ? 1 : -1);
	}
	v.iov_len = (size_t)*got;
	evbuffer_commit_space(buf, &v, 1);
	return 1;
}

/*
 * The backend connection's timer: a connect, a blocked send or the answer
 * may have taken too long (see deadline.h: it may also just be early).
 */
static void
up_timer_cb(struct upconn *u, short what)
{
	struct client *c = u->owner;
	int64_t limit;

	px.now = proc_now_ns();
	if (u->connecting)
		limit = px.cfg->proxy.connect_timeout_ns;
	else if (u->writing || (c->req == REQ_DONE && !c->up_paused))
		limit = px.cfg->proxy.timeout_ns;
	else
		return;		/* waiting on the client: no backend timeout runs */
	if (px.now - u->last_io_ns < limit) {
		deadline_ensure(&u->timer, u->last_io_ns + limit, px.now);
		return;
	}
	if (u->connecting)
		attempt_failed(c, "connect timeout", METRICS_ERR_CONNECT_TIMEOUT);
	else if (u->writing)
		attempt_failed(c, "send timeout", METRICS_ERR_TIMEOUT);
	else if (c->resp == RESP_NONE)
		attempt_failed(c, "timeout", METRICS_ERR_TIMEOUT);
	else
		client_close(c);
}

/*
 * Read what the socket holds. Events are edge-triggered (as nginx's are: no
 * re-check of every reported socket in the next epoll_wait), so the caller
 * must come back on its own when *more says the reads stopped at
 * PROXY_READS_MAX full buffers; and when the peer closed (closing: EV_CLOSED,
 * EPOLLRDHUP) the reads go on to the end of file, which no further edge would
 * report. 1 when the socket is drained (*got_data: bytes came), 0 at the end
 * of file, -1 on an error (errno).
 */
static int
read_socket(int fd, struct evbuffer *buf, bool closing, bool *more, bool *got_data)
{
	ssize_t got;
	int rc;

	*more = false;
	*got_data = false;
	for (int i = 0; i < PROXY_READS_MAX; i++) {
		if ((rc = read_into(fd, buf, &got)) != 1)
			return rc;
		if (got <= 0)
			return 1;
		*got_data = true;
		if (got < PROXY_READ_CHUNK && !closing)
			return 1;
	}
	*more = true;
	return 1;
}

static void
up_read_cb(struct upconn *u, short what)
{
	struct client *c = u->owner;
	bool more, got_data;
	int rc;

	px.now = proc_now_ns();
	rc = read_socket(u->fd, u->in, (what & EV_CLOSED) != 0, &more, &got_data);
	if (got_data) {
		/*
		 * The rest, or the end of file or error behind the bytes, is for
		 * another turn of this callback, after these bytes are dealt with.
		 * Should u be freed or pooled meanwhile, libevent drops the
		 * activation with the event, or the pool drops the connection.
		 */
		if (more || rc != 1)
			event_active(&u->rev, EV_READ, 0);
		u->last_io_ns = px.now;
		response_process(c);
		return;
	}
	if (rc == 0 || rc == -1) {
		const char *why = rc == 0 ? "connection closed" : strerror(errno);

		if (c->resp == RESP_BODY && rc == 0 && llhttp_message_needs_eof(&u->parser)) {
			/* A close-delimited body just ended. */
			llhttp_finish(&u->parser);
			c->resp_pc.msg_done = true;
			exchange_record(c);
			up_release(c, false);
			c->resp = RESP_DONE;
			c->close_after = true;
			client_flush(c);
			return;
		}
		if (c->resp == RESP_NONE && evbuffer_get_length(u->in) == 0) {
			attempt_failed(c, why, METRICS_ERR_RESET);
			return;
		}
		if (c->resp == RESP_NONE) {
			client_error(c, 502, NULL, NULL);
			return;
		}
		client_close(c);
		return;
	}
}

/* ---- the request ---- */

static bool
method_idempotent(int m)
{
	return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_TRACE ||
	    m == HTTP_PUT || m == HTTP_DELETE;
}

/* Whether a request target names path, whatever its query string. */
static bool
target_is(const char *target, size_t len, const char *path)
{
	const char *q = memchr(target, '?', len);
	size_t plen = strlen(path);

	if (q != NULL)
		len = (size_t)(q - target);
	return len == plen && memcmp(target, path, plen) == 0;
}

/* Answer GET <metrics.path> here, from the shared counters of all workers. */
static int
serve_metrics(struct client *c, const char *target, size_t len)
{
	struct evbuffer *body;
	size_t before = evbuffer_get_length(c->out);
	int method = c->parser.method;

	if (!target_is(target, len, px.cfg->metrics.path))
		return client_error(c, 404, NULL, NULL);
	if (method != HTTP_GET && method != HTTP_HEAD) {
		c->keep_alive = c->keep_alive && c->req == REQ_DONE;
		return client_error_allow(c, 405, "GET, HEAD");
	}
	if ((body = evbuffer_new()) == NULL ||
	    metrics_render(body, px.shm, px.cfg, ROUNDGUARD_VERSION) == -1) {
		if (body != NULL)
			evbuffer_free(body);
		return client_error(c, 500, NULL, NULL);
	}
	c->mode = c->keep_alive && c->req == REQ_DONE && !px.draining ?
	    (c->http10 ? HTTP_CONN_KEEP_10 : HTTP_CONN_KEEP) : HTTP_CONN_CLOSE;
	evbuffer_add_printf(c->out, "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
	    "Content-Length: %zu\r\n%s\r\n", evbuffer_get_length(body),
	    c->mode == HTTP_CONN_CLOSE ? "Connection: close\r\n" :
	    c->mode == HTTP_CONN_KEEP_10 ? "Connection: keep-alive\r\n" : "");
	if (method == HTTP_GET)
		evbuffer_add_buffer(c->out, body);
	evbuffer_free(body);
	c->resp_bytes += evbuffer_get_length(c->out) - before;
	c->status = 200;
	exchange_record(c);
	c->resp = RESP_DONE;
	if (c->req != REQ_DONE)
		c->close_after = true;
	return exchange_done(c);
}

/*
 * Keep "METHOD target\0" at the start of req_head, for another attempt and
 * the log: the target as it goes on, in origin-form ("/" in front of an
 * absolute-form target's path when it has none).
 */
static int
request_line_keep(struct client *c, const char *method, size_t method_len, bool slash,
    const char *target, size_t target_len)
{
	struct evbuffer_iovec v;
	char *p;

	c->method_len = method_len;
	c->line_len = method_len + 1 + slash + target_len;
	if (evbuffer_reserve_space(c->req_head, (ev_ssize_t)c->line_len + 1, &v, 1) < 1)
		return -1;
	p = v.iov_base;
	memcpy(p, method, method_len);
	p[method_len] = ' ';
	p[method_len + 1] = '/';
	memcpy(p + method_len + 1 + slash, target, target_len);
	p[c->line_len] = '\0';
	v.iov_len = c->line_len + 1;
	return evbuffer_commit_space(c->req_head, &v, 1);
}

/* Refuse with 400 and close: a request the proxy must not pass on. */
static int
request_refuse(struct client *c, const char *why)
{
	c->keep_alive = false;
	log_debug("request refused", "client", c->ip, "reason", why, NULL);
	return client_error(c, 400, NULL, why);
}

/*
 * The head is whole: check it, rewrite it into req_head for the backend and
 * start the first attempt (or answer here: metrics, errors).
 */
static int
request_head(struct client *c)
{
	struct http_head *h = c->req_pc.head;
	const char *base = (const char *)evbuffer_pullup(c->in, (ev_ssize_t)c->fed);
	const char *line, *why, *target;
	char authority[300];	/* uri_host_check(): at most 255 + ":" + 5 digits */
	struct uri_target ut;
	int method = c->parser.method;
	uint32_t dropped;

	/* llhttp reads any one-digit version (LENIENT_VERSION): HTTP/1.x above 1.1 is 1.1. */
	c->http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
	c->keep_alive = llhttp_should_keep_alive(&c->parser);
	c->head_method = method == HTTP_HEAD;
	c->idempotent = method_idempotent(method);
	c->held_ok = true;
	c->mode = HTTP_CONN_KEEP;
	c->req = REQ_BODY;
	h->major = c->parser.http_major;
	h->minor = c->http10 ? 0 : 1;
	c->body_started_ns = px.now;
	exchange_begin(c);
	buffer_clear(c->req_head);
	/* The target as received, for the access log, until it is checked. */
	c->asterisk = false;
	if (request_line_keep(c, base + h->method.off, h->method.len, false,
	    base + h->target.off, h->target.len) == -1)
		return client_error(c, 500, NULL, NULL);
	if (method == HTTP_CONNECT) {
		c->keep_alive = false;
		return client_error(c, 501, NULL, "CONNECT tunnels are not supported");
	}
	if ((c->parser.flags & F_CONTENT_LENGTH) &&
	    c->parser.content_length > px.cfg->proxy.max_body_size) {
		c->keep_alive = false;
		return client_error(c, 413, NULL, NULL);
	}
	if (c->parser.http_major != 1) {
		c->keep_alive = false;
		return client_error(c, c->parser.http_major > 1 ? 505 : 400, NULL,
		    c->parser.http_major > 1 ? "Only HTTP/1.0 and HTTP/1.1 are spoken here" :
		    "The request line has no HTTP version");
	}
	http_head_classify(base, h);
	if ((why = http_request_refusal(base, c->fed, h, c->http10, &c->has_host)) != NULL ||
	    (why = uri_target_check(base + h->target.off, h->target.len, method == HTTP_OPTIONS,
	    &ut)) != NULL)
		return request_refuse(c, why);
	target = base + h->target.off;
	if (ut.form == URI_ABSOLUTE) {
		/*
		 * RFC 9112 3.2.2: the target's authority wins over Host. The
		 * backend gets origin-form and that authority as Host (and
		 * X-Forwarded-Host), as nginx does: one authority, not two.
		 */
		for (uint16_t i = 0; i < h->nfields; i++)
			if (h->fields[i].kind == HTTP_FIELD_HOST)
				h->fields[i].hop = true;
		memcpy(authority, target + ut.authority_off, ut.authority_len);
		authority[ut.authority_len] = '\0';
		c->has_host = true;
		buffer_clear(c->req_head);
		if (request_line_keep(c, base + h->method.off, h->method.len, ut.need_slash,
		    target + ut.path_off, ut.path_len) == -1)
			return client_error(c, 500, NULL, NULL);
	}
	c->asterisk = ut.form == URI_ASTERISK;
	if (!px.cfg->proxy.underscores_in_headers &&
	    (dropped = http_drop_underscore_fields(base, h)) > 0)
		count_dropped(SHM_DROPPED_UNDERSCORE, dropped);
	if (http_write_request_fields(c->req_head, base, h, c->ip,
	    ut.form == URI_ABSOLUTE ? authority : NULL) == -1)
		return client_error(c, 500, NULL, NULL);
	/* The head is copied out: from here on only req_head holds it. */
	evbuffer_drain(c->in, c->fed);
	c->fed = 0;
	llhttp_resume(&c->parser);
	if (!(c->parser.flags & F_CHUNKED) && c->parser.content_length == 0) {
		/* No body: let llhttp finish the message now (it reads no byte for that). */
		message_feed(&c->parser, &c->req_pc, c->in, &c->fed);
		if (c->req_pc.msg_done)
			c->req = REQ_DONE;
	}
	line = (const char *)evbuffer_pullup(c->req_head, (ev_ssize_t)c->line_len);
	if (c->metrics_only || (!px.cfg->metrics.listen_set &&
	    target_is(line + c->method_len + 1, c->line_len - c->method_len - 1,
	    px.cfg->metrics.path)))
		return serve_metrics(c, line + c->method_len + 1, c->line_len - c->method_len - 1);
	if (method == HTTP_TRACE && !px.cfg->proxy.allow_trace) {
		/* Cross-site tracing: TRACE echoes cookies and credentials back (proxy.allow_trace). */
		c->keep_alive = c->keep_alive && c->req == REQ_DONE;
		return client_error_allow(c, 405, "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
	}
	return start_attempt(c);
}

/*
 * Keep a copy of the body bytes just queued for the backend (c->up->out from
 * offset from on), for a retry after sending, while they fit.
 */
static void
hold_body(struct client *c, size_t from)
{
	struct evbuffer *out = c->up->out;
	size_t n = evbuffer_get_length(out) - from;
	struct evbuffer_iovec v[8];
	struct evbuffer_ptr pos;
	int k;

	if (n == 0 || !c->held_ok)
		return;
	/* Only idempotent requests with a body need the buffer: most connections never do. */
	if (!c->idempotent || !px.cfg->proxy.retry_idempotent ||
	    (c->held == NULL && (c->held = evbuffer_new()) == NULL) ||
	    evbuffer_get_length(c->held) + n > PROXY_HOLD_MAX) {
		c->held_ok = false;
		if (c->held != NULL)
			buffer_clear(c->held);
		return;
	}
	evbuffer_ptr_set(out, &pos, from, EVBUFFER_PTR_SET);
	k = evbuffer_peek(out, (ev_ssize_t)n, &pos, v, 8);
	for (int i = 0; i < k && i < 8; i++)
		evbuffer_add(c->held, v[i].iov_base, v[i].iov_len);
	if (k > 8)
		c->held_ok = false;
}

/*
 * Parse what the client sent of the body and queue it for the backend:
 * a Content-Length body as received, a chunked one framed again by the
 * parser (message.h), never with the client's chunk framing.
 */
static llhttp_errno_t
forward_body(struct client *c)
{
	struct evbuffer *out = c->up->out;
	size_t before = evbuffer_get_length(out);
	llhttp_errno_t e;

	c->req_pc.body_to = (c->parser.flags & F_CHUNKED) ? out : NULL;
	c->req_pc.rechunk = true;
	e = message_feed(&c->parser, &c->req_pc, c->in, &c->fed);
	if (e != HPE_OK && e != HPE_PAUSED)
		return e;
	count_trailers(&c->req_pc);
	if (c->req_pc.body_to != NULL)
		evbuffer_drain(c->in, c->fed);
	else
		evbuffer_remove_buffer(c->in, out, c->fed);
	c->fed = 0;
	hold_body(c, before);
	return e;
}

static int
client_process(struct client *c)
{
	llhttp_errno_t e;

	if (c->req == REQ_HEAD) {
		if (c->req_pc.head == NULL) {
			if ((c->req_pc.head = head_get()) == NULL)
				return client_error(c, 500, NULL, NULL);
			c->head_started_ns = px.now;
			message_reset(&c->parser, &c->req_pc, c->req_pc.head);
			c->req_pc.body_max = px.cfg->proxy.max_body_size;
			c->req_pc.extra_max = px.cfg->proxy.max_header_size;
			c->fed = 0;
		}
		e = message_feed(&c->parser, &c->req_pc, c->in, &c->fed);
		if (!c->req_pc.head_done) {
			if (e != HPE_OK && e != HPE_PAUSED) {
				c->keep_alive = false;
				log_debug("bad request", "client", c->ip, "error", llhttp_errno_name(e),
				    "reason", llhttp_get_error_reason(&c->parser), NULL);
				return client_error(c, c->req_pc.error_status != 0 ?
				    c->req_pc.error_status : 400, NULL, NULL);
			}
			if (c->fed > px.cfg->proxy.max_header_size) {
				c->keep_alive = false;
				return client_error(c, 431, NULL, NULL);
			}
			return 0;
		}
		if (c->fed > px.cfg->proxy.max_header_size) {
			c->keep_alive = false;
			return client_error(c, 431, NULL, NULL);
		}
		return request_head(c);
	}
	if (c->req != REQ_BODY || c->up == NULL || c->up->connecting)
		return 0;
	e = forward_body(c);
	if (e != HPE_OK && e != HPE_PAUSED) {
		c->keep_alive = false;
		return client_error(c, c->req_pc.error_status != 0 ? c->req_pc.error_status : 400,
		    NULL, c->req_pc.error_reason);
	}
	if (c->req_pc.msg_done) {
		c->req = REQ_DONE;
		up_arm_timeout(c);
	}
	return up_flush_soon(c);
}

static int
client_flush(struct client *c)
{
	size_t left = evbuffer_get_length(c->out);
	int n;

	while (left > 0) {
		n = evbuffer_write(c->out, c->fd);
		if (n > 0) {
			c->last_io_ns = px.now;
			left -= (size_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if (!c->writing) {
				c->writing = true;
				event_add(&c->wev, NULL);
			}
			if (c->up != NULL && !c->up_paused && left > PROXY_BUF_HIGH) {
				c->up_paused = true;
				event_del(&c->up->rev);
			}
			return 0;
		}
		client_close(c);
		return -1;
	}
	if (c->writing) {
		c->writing = false;
		event_del(&c->wev);
	}
	if (c->up != NULL && c->up_paused) {
		c->up_paused = false;
		event_add(&c->up->rev, NULL);
		event_active(&c->up->rev, EV_READ, 0);	/* edge-triggered: see client_set_reading() */
		up_wait(c->up, px.cfg->proxy.timeout_ns);
	}
	if (c->close_after && c->up == NULL) {
		client_close(c);
		return -1;
	}
	return 0;
}

static void
client_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	px.now = proc_now_ns();
	if (client_flush(c) == -1)
		return;
	if (c->up != NULL && evbuffer_get_length(c->up->in) > 0)
		response_process(c);
}

/*
 * client_timeout is a deadline for the whole head, however it trickles in
 * (slowloris), and for the body too, extended by a second for every
 * PROXY_BODY_MIN_RATE bytes received (Apache mod_reqtimeout's MinRate), so a
 * large upload at a sane rate is never cut while a trickle is.
 */
static bool
request_overdue(const struct client *c)
{
	int64_t limit = px.cfg->proxy.client_timeout_ns;

	if (c->resp != RESP_NONE)
		return false;
	if (c->req == REQ_HEAD && c->req_pc.head != NULL)
		return px.now - c->head_started_ns > limit;
	if (c->req == REQ_BODY)
		return px.now - c->body_started_ns >
		    limit + (int64_t)(c->req_pc.body_len * 1000000000 / PROXY_BODY_MIN_RATE);
	return false;
}

/*
 * client_timeout: no byte taken by a blocked client for that long closes the
 * connection; no byte sent while it is read closes an idle one and answers a
 * partial request with 408. The timer fires at least once per client_timeout
 * for the connection's whole life (see deadline.h).
 */
static void
client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	int64_t limit = px.cfg->proxy.client_timeout_ns;
	bool partial;

	px.now = proc_now_ns();
	deadline_fired(&c->timer);
	if (px.now - c->last_io_ns < limit) {
		deadline_ensure(&c->timer, c->last_io_ns + limit, px.now);
		return;
	}
	if (c->writing) {
		client_close(c);
		return;
	}
	/* Waiting for the backend is proxy.timeout's business, not the client's. */
	if (!c->reading || c->req == REQ_DONE) {
		deadline_ensure(&c->timer, px.now + limit, px.now);
		return;
	}
	partial = c->req == REQ_BODY || (c->req == REQ_HEAD && evbuffer_get_length(c->in) > 0);
	if (partial && c->resp == RESP_NONE) {
		c->keep_alive = false;
		/* Still open while the 408 goes out: the timer keeps watching. */
		if (client_error(c, 408, NULL, NULL) == 0)
			deadline_ensure(&c->timer, px.now + limit, px.now);
	} else {
		client_close(c);
	}
}

static void
client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	bool eof, more, got_data;
	int rc;

	px.now = proc_now_ns();
	rc = read_socket(fd, c->in, (what & EV_CLOSED) != 0, &more, &got_data);
	if (rc == -1) {
		client_close(c);
		return;
	}
	eof = rc == 0;
	/* Come back for the rest; dropped with the event if c closes or stops reading. */
	if (more)
		event_active(&c->rev, EV_READ, 0);
	if (got_data)
		c->last_io_ns = px.now;
	if (request_overdue(c)) {
		c->keep_alive = false;
		client_error(c, 408, NULL, NULL);
		return;
	}
	/*
	 * Reading stays on while a request is served (switching it off and on
	 * costs two epoll_ctl calls per request); what comes early waits in c->in,
	 * up to a bound.
	 */
	if (evbuffer_get_length(c->in) > PROXY_BUF_HIGH)
		client_set_reading(c, false);
	if (got_data && client_process(c) == -1)
		return;
	if (!eof)
		return;
	if (c->req != REQ_DONE) {
		/*
		 * The client stopped sending mid-request. If it only half-closed it
		 * can still read why the request failed; if it is gone, the write fails.
		 */
		if (c->resp == RESP_NONE && (c->req == REQ_BODY || evbuffer_get_length(c->in) > 0)) {
			c->keep_alive = false;
			client_error(c, 400, NULL, "The connection ended before the request did");
		} else {
			client_close(c);
		}
		return;
	}
	/* Half-closed after a whole request: answer it, then close. */
	c->close_after = true;
	client_set_reading(c, false);
}

/* ---- public ---- */

int
proxy_init(struct event_base *base, const struct config *cfg, struct shm *shm, int worker)
{
	memset(&px, 0, sizeof(px));
	px.base = base;
	px.cfg = cfg;
	px.shm = shm;
	px.worker = worker;
	snprintf(px.worker_str, sizeof(px.worker_str), "%d", worker);
	LIST_INIT(&px.clients);
	TAILQ_INIT(&px.flushes);
	TAILQ_INIT(&px.sends);
	px.pool = pool_new(base, (uint32_t)cfg->nbackends, cfg->proxy.keepalive, up_read_cb,
	    up_write_cb, up_timer_cb);
	if (px.pool == NULL)
		return -1;

	message_settings(&px.req_settings, false);
	message_settings(&px.resp_settings, true);
	return 0;
}

void
proxy_accept(int fd, const struct sockaddr *sa, bool metrics_only)
{
	struct client *c = calloc(1, sizeof(*c));

	if (c == NULL || (c->in = evbuffer_new()) == NULL || (c->out = evbuffer_new()) == NULL ||
	    (c->req_head = evbuffer_new()) == NULL) {
		log_error("out of memory for a new connection", NULL);
		if (c != NULL) {
			struct evbuffer *bufs[] = { c->in, c->out, c->req_head };

			for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
				if (bufs[i] != NULL)
					evbuffer_free(bufs[i]);
			free(c);
		}
		close(fd);
		return;
	}
	c->fd = fd;
	c->metrics_only = metrics_only;
	net_nodelay(fd);
	net_format_ip(c->ip, sizeof(c->ip), sa);
	llhttp_init(&c->parser, HTTP_REQUEST, &px.req_settings);
	/*
	 * Any one-digit version parses (llhttp has no setter for this flag):
	 * request_head() serves HTTP/1.x above 1.1 as 1.1 (RFC 9110 2.5), as
	 * nginx and HAProxy do, and answers HTTP/2 and above with 505.
	 */
	c->parser.lenient_flags |= LENIENT_VERSION;
	c->parser.data = &c->req_pc;
	/* Edge-triggered, with the client's close reported: see read_socket(). */
	event_assign(&c->rev, px.base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET,
	    client_read_cb, c);
	event_assign(&c->wev, px.base, fd, EV_WRITE | EV_PERSIST | EV_ET, client_write_cb, c);
	deadline_assign(&c->timer, px.base, client_timer_cb, c);
	px.now = proc_now_ns();
	c->last_io_ns = px.now;
	deadline_ensure(&c->timer, px.now + px.cfg->proxy.client_timeout_ns, px.now);
	LIST_INSERT_HEAD(&px.clients, c, entry);
	px.nclients++;
	atomic_fetch_add_explicit(&px.shm->workers[px.worker].connections, 1,
	    memory_order_relaxed);
	/* Registering looks at the socket: a request already there is reported at once. */
	c->reading = true;
	event_add(&c->rev, NULL);
}

/* Whether c waits for a request with nothing received, nothing pending and nothing to send. */
static bool
client_idle(const struct client *c)
{
	return c->req == REQ_HEAD && evbuffer_get_length(c->in) == 0 && c->up == NULL &&
	    evbuffer_get_length(c->out) == 0;
}

/* The grace for fresh connections is over: close whoever is still idle. */
static void
drain_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c, *next;

	for (c = LIST_FIRST(&px.clients); c != NULL; c = next) {
		next = LIST_NEXT(c, entry);
		if (client_idle(c))
			client_close(c);
	}
}

void
proxy_drain(void (*done)(void))
{
	struct timeval grace = { PROXY_DRAIN_GRACE_MS / 1000, PROXY_DRAIN_GRACE_MS % 1000 * 1000 };
	struct client *c;
	bool wait_some = false;

	/*
	 * Answers of this turn waiting for its end were made as keep-alive ones:
	 * they go out now, before close_after below could close their connections
	 * right behind them, unannounced, while the clients send the next request
	 * (the faults suite's reload scenario caught one such reset).
	 */
	proxy_end_turn();
	px.draining = true;
	px.drained = done;
	/*
	 * Closing an idle keep-alive connection races with a request the client
	 * may be sending on it that very moment, and a just-accepted one may not
	 * have sent its request yet. So nothing is closed now: every connection
	 * answers what comes next with "Connection: close", and those still idle
	 * when the grace is over are closed then.
	 */
	LIST_FOREACH(c, &px.clients, entry) {
		c->close_after = true;
		wait_some = wait_some || client_idle(c);
	}
	if (wait_some) {
		px.drain_ev = evtimer_new(px.base, drain_idle_cb, NULL);
		if (px.drain_ev != NULL)
			evtimer_add(px.drain_ev, &grace);
	}
	if (px.nclients == 0 && done != NULL)
		done();
}

void
proxy_end_turn(void)
{
	struct client *c;

	while ((c = TAILQ_FIRST(&px.sends)) != NULL) {
		TAILQ_REMOVE(&px.sends, c, send_entry);
		c->send_pending = false;
		if (c->up != NULL && !c->up->connecting)
			up_flush(c);
	}
	while ((c = TAILQ_FIRST(&px.flushes)) != NULL) {
		TAILQ_REMOVE(&px.flushes, c, flush_entry);
		c->flush_pending = false;
		client_flush(c);
	}
}

uint32_t
proxy_client_count(void)
{
	return px.nclients;
}

void
proxy_free(void)
{
	struct client *c;

	px.drained = NULL;
	while ((c = LIST_FIRST(&px.clients)) != NULL)
		client_close(c);
	if (px.drain_ev != NULL)
		event_free(px.drain_ev);
	pool_free(px.pool);
	px.pool = NULL;
	while (px.nspare > 0)
		free(px.spare[--px.nspare]);
}
