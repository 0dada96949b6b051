/* The backend side of an exchange: pick, connect, send (and send again), relay the answer. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <llhttp.h>

#include "config.h"
#include "roundguard/balance.h"
#include "roundguard/client.h"
#include "roundguard/discover.h"
#include "roundguard/http.h"
#include "roundguard/log.h"
#include "roundguard/message.h"
#include "roundguard/metrics.h"
#include "roundguard/net.h"
#include "roundguard/pool.h"
#include "roundguard/proc.h"
#include "roundguard/proxyproto.h"
#include "roundguard/tls.h"
#include "roundguard/transport.h"
#include "roundguard/tunnel.h"

void
record_upstream_error(uint32_t b, enum metrics_upstream_error e)
{
	metrics_record_upstream_error(shm_stats(px.shm, (uint32_t)px.worker, b), e);
}

void
upstream_release(struct client *c, bool reusable)
{
	struct upconn *u = c->up;

	if (u == NULL)
		return;
	c->up = NULL;
	head_put(u->pc.head);
	u->pc.head = NULL;
	u->requests++;
	/*
	 * A connection that began with a PROXY header names one client: it never
	 * serves another one, so it is not pooled (see send_proxy in README).
	 */
	/* Nor to a slot that now names another address than the one this connection reached. */
	if (reusable && !px.cfg->backends[u->backend].send_proxy &&
	    u->slot_seq == px.slot_seen[u->backend])
		pool_put(px.pool, u, px.now);
	else
		upconn_free(u);
}

/*
 * A whole request waits for the end of the loop turn like an answer does
 * (client_flush_later()); a body still streaming in goes out at once.
 */
int
upstream_flush_soon(struct client *c)
{
	if (c->req != REQ_DONE)
		return upstream_flush(c);
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

	if (old & bit) {
		pid_t checker = atomic_load_explicit(&px.shm->hdr->checker_pid, memory_order_relaxed);

		log_warn("backend unreachable, out of rotation until it passes a check",
		    "backend", px.cfg->backends[b].addr.hostport, "reason", reason, NULL);
		/* The checker publishes a schedule without it: its share goes to all the others. */
		if (checker > 0)
			kill(checker, SIGUSR1);
	}
}

/*
 * A discovered backend's address as the checker last wrote it: this worker's
 * copy (its own configuration, made at fork) follows, and idle connections
 * to an address the slot no longer holds are closed. False if the slot has
 * no backend now.
 */
static bool
slot_sync(uint32_t b)
{
	struct config_backend *be = (struct config_backend *)(uintptr_t)&px.cfg->backends[b];
	int rc = discover_sync(be, px.shm, b, &px.slot_seen[b]);

	if (rc == 1)
		pool_drop_backend(px.pool, b);
	return rc >= 0;
}

static int
pick(struct client *c)
{
	uint64_t usable[BALANCE_WORDS(CONFIG_BACKENDS_MAX)];
	uint64_t tried[BALANCE_WORDS(CONFIG_BACKENDS_MAX)];
	size_t n = px.cfg->nbackends;

	if (c->rq->ntried == 0)
		return shm_pick(px.shm,
		    atomic_fetch_add_explicit(&px.shm->hdr->rr, 1, memory_order_relaxed));
	if (c->rq->ntried == PROXY_TRIES_MAX)
		return -1;
	shm_usable(px.shm, usable);
	memset(tried, 0, BALANCE_WORDS(n) * sizeof(uint64_t));
	for (int i = 0; i < c->rq->ntried; i++)
		tried[c->rq->tried[i] / 64] |= UINT64_C(1) << (c->rq->tried[i] % 64);
	return balance_next(usable, tried, n, c->rq->tried[c->rq->ntried - 1]);
}

/* Is any backend live and taking traffic (else the answer is 503)? */
static bool
any_live(void)
{
	uint64_t usable[BALANCE_WORDS(CONFIG_BACKENDS_MAX)];

	shm_usable(px.shm, usable);
	return balance_count(usable, px.cfg->nbackends) > 0;
}

/*
 * Queue the request line (with this backend's prefix), the header block, and
 * every body byte an earlier attempt took: those of one that failed before
 * sending any (replay), or the held copy when one is retried after sending.
 */
static int
queue_request(struct client *c, uint32_t b)
{
	const struct backend_url *addr = &px.cfg->backends[b].addr;
	size_t total = evbuffer_get_length(c->rq->req_head);
	const char *head = (const char *)evbuffer_pullup(c->rq->req_head, -1);
	size_t plen = c->asterisk ? 0 : strlen(addr->prefix);
	size_t hlen = c->has_host ? 0 : strlen(addr->hostport);
	size_t target_len = c->rq->line_len - c->rq->method_len - 1;
	size_t fields_len = total - c->rq->line_len - 1;
	struct evbuffer_iovec v;
	char *p;

	/* One reserved region, not an evbuffer_add() per piece. */
	if (head == NULL || total <= c->rq->line_len ||
	    evbuffer_reserve_space(c->up->out, (ev_ssize_t)(HTTP_REQUEST_LINE_SIZE(c->rq->method_len,
	    plen, target_len) + hlen + 8 + fields_len), &v, 1) < 1)
		return -1;
	p = v.iov_base;
	p += http_put_request_line(p, head, c->rq->method_len, addr->prefix, plen,
	    head + c->rq->method_len + 1, target_len);
	if (!c->has_host) {
		memcpy(p, "Host: ", 6);
		memcpy(p + 6, addr->hostport, hlen);
		memcpy(p + 6 + hlen, "\r\n", 2);
		p += hlen + 8;
	}
	memcpy(p, head + c->rq->line_len + 1, fields_len);
	p += fields_len;
	v.iov_len = (size_t)(p - (char *)v.iov_base);
	if (evbuffer_commit_space(c->up->out, &v, 1) != 0)
		return -1;
	c->rq->up_head_len = v.iov_len;
	/* The replay, when there is one, already holds the held bytes behind the head. */
	if (c->rq->replay != NULL && evbuffer_get_length(c->rq->replay) > 0)
		return evbuffer_add_buffer(c->up->out, c->rq->replay);
	if (c->rq->retried_after_send && c->rq->held != NULL && evbuffer_get_length(c->rq->held) > 0 &&
	    evbuffer_add(c->up->out, evbuffer_pullup(c->rq->held, -1),
	    evbuffer_get_length(c->rq->held)) != 0)
		return -1;
	return 0;
}

/*
 * send_proxy: the PROXY v2 header for c (its address, the one it reached us
 * on), the first bytes on the new connection, before any TLS. A fresh socket
 * takes 52 bytes at once; anything else is a failure to connect.
 */
static int
send_proxy_header(struct upconn *u, const struct client *c)
{
	struct sockaddr_storage src, dst;
	socklen_t dlen = sizeof(dst);
	uint8_t hdr[PROXYPROTO_V2_BUILD_MAX];
	size_t n;

	if (!px.cfg->backends[u->backend].send_proxy || u->proxy_sent)
		return 0;
	u->proxy_sent = true;
	if (net_addr_sockaddr(&c->addr, &src) == 0 ||
	    getsockname(c->fd, (struct sockaddr *)&dst, &dlen) == -1)
		n = proxyproto_build_v2(hdr, sizeof(hdr), NULL, NULL);	/* LOCAL */
	else
		n = proxyproto_build_v2(hdr, sizeof(hdr), (struct sockaddr *)&src,
		    (struct sockaddr *)&dst);
	if (send(u->fd, hdr, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n) {
		if (errno == 0 || errno == EAGAIN)
			errno = EPIPE;
		return -1;
	}
	return 0;
}

static int
connect_backend(struct upconn *u, const struct client *c)
{
	const struct config_backend *be = &px.cfg->backends[u->backend];

	u->fd = socket(be->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd == -1)
		return -2;	/* our own shortage (descriptors), not the backend's fault */
	net_nodelay(u->fd);
	upconn_track(u);
	if (connect(u->fd, (const struct sockaddr *)&be->sa, be->salen) == 0) {
		u->connecting = false;
		return send_proxy_header(u, c);
	}
	if (errno == EINPROGRESS) {
		u->connecting = true;
		return 0;
	}
	return -1;
}

/*
 * The exchange's backend is now b (-1: none): roundguard_backend_active_connections
 * counts it for b, no longer for the one an earlier try had.
 */
static void
set_backend(struct client *c, int b)
{
	if (c->rq->backend >= 0)
		atomic_fetch_add_explicit(&shm_stats(px.shm, (uint32_t)px.worker,
		    (uint32_t)c->rq->backend)->active[1], 1, memory_order_relaxed);
	if (b >= 0)
		atomic_fetch_add_explicit(&shm_stats(px.shm, (uint32_t)px.worker,
		    (uint32_t)b)->active[0], 1, memory_order_relaxed);
	c->rq->backend = b;
}

/* No (more) backend to try: 503 when none is live, 502 when the live ones failed. */
static int
no_backend(struct client *c)
{
	if (c->rq->ntried == 0 || !any_live()) {
		atomic_fetch_add_explicit(&px.shm->workers[px.worker].counters[SHM_NO_BACKEND], 1,
		    memory_order_relaxed);
		set_backend(c, -1);
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

void
upstream_set_reading(struct client *c, bool on)
{
	if (on == !c->up_paused)
		return;
	c->up_paused = !on;
	if (!on) {
		event_del(&c->up->rev);
		return;
	}
	event_add(&c->up->rev, NULL);
	event_active(&c->up->rev, EV_READ, 0);	/* edge-triggered: see client_set_reading() */
	/* An answer's proxy.timeout counts from now; a tunnel's idle timer is the client's. */
	if (c->resp != RESP_TUNNEL)
		up_wait(c->up, px.cfg->proxy.timeout_ns);
}

/*
 * Read the backend. proxy.timeout counts from the moment the whole request is
 * with the backend: while a client is still uploading, the backend is
 * waiting on us.
 */
void
upstream_arm_timeout(struct client *c)
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
	return upstream_flush_soon(c);
}

int
upstream_start(struct client *c)
{
	struct upconn *u;
	int b, rc;

	for (;;) {
		if ((b = pick(c)) < 0)
			return no_backend(c);
		c->rq->tried[c->rq->ntried++] = b;
		/* Counted in flight first: the checker frees a draining slot only with none. */
		set_backend(c, b);
		if (px.cfg->backends[b].discover != CONFIG_DISCOVER_NONE && !slot_sync((uint32_t)b))
			continue;	/* emptied since the pick: the next one */
		c->up_reused = true;
		if ((u = pool_get(px.pool, (uint32_t)b)) != NULL)
			break;
		c->up_reused = false;
		if ((u = upconn_new(px.pool, (uint32_t)b)) == NULL)
			return client_error(c, 500, NULL, NULL);
		u->slot_seq = px.slot_seen[b];
		if ((rc = connect_backend(u, c)) == 0) {
			/* An https backend's handshake starts once the socket is writable. */
			if (px.cfg->backends[b].addr.tls)
				u->connecting = true;
			break;
		}
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
	c->rq->up_sent = 0;
	c->up_paused = false;
	u->owner = c;
	u->fed = 0;
	c->up->pc.head = head_get();
	if (c->up->pc.head == NULL)
		return client_error(c, 500, NULL, NULL);
	/* A pooled connection's parser only needs the reset message_reset() does. */
	if (!c->up_reused)
		llhttp_init(&u->parser, HTTP_RESPONSE, &px.resp_settings);
	message_reset(&u->parser, &c->up->pc, c->up->pc.head);
	if (queue_request(c, (uint32_t)b) == -1)
		return client_error(c, 500, NULL, NULL);
	if (u->connecting) {
		u->writing = true;
		event_add(&u->wev, NULL);
		up_wait(u, px.cfg->proxy.connect_timeout_ns);
		return 0;
	}
	upstream_arm_timeout(c);
	return send_request(c);
}

/* Keep the body bytes queued behind the head of c->up, which sent nothing, for the next attempt. */
static int
replay_take(struct client *c)
{
	struct evbuffer *out = c->up->out;

	if (evbuffer_get_length(out) <= c->rq->up_head_len)
		return 0;
	if (c->rq->replay == NULL && (c->rq->replay = evbuffer_new()) == NULL)
		return -1;
	evbuffer_drain(out, c->rq->up_head_len);
	return evbuffer_add_buffer(c->rq->replay, out);
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
	bool unsent = connect_failed || c->rq->up_sent == 0;

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
		upstream_release(c, false);
		return upstream_start(c);
	}
	upstream_release(c, false);
	if (!unsent && px.cfg->proxy.retry_idempotent && c->idempotent && c->rq->held_ok &&
	    !c->rq->retried_after_send) {
		c->rq->retried_after_send = true;
		return upstream_start(c);
	}
	return client_error(c, 502, NULL, NULL);
}

int
upstream_flush(struct client *c)
{
	struct upconn *u = c->up;
	size_t left = evbuffer_get_length(u->out);
	int n;

	if (c->resp == RESP_TUNNEL)
		return tunnel_backend_flush(c);
	while (left > 0) {
		n = transport_write(u->fd, u->ssl, u->out);
		if (n > 0) {
			c->rq->up_sent += (size_t)n;
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

/*
 * One step of an https backend's handshake (on either readiness): 1 done,
 * 0 going on, -1 failed (the attempt is over: the client was answered or
 * the request went to the next backend).
 */
static int
upstream_tls_step(struct client *c)
{
	struct upconn *u = c->up;
	const char *why = "handshake failed";
	char err[256];
	int rc;

	if (u->ssl == NULL) {
		if ((u->ssl = tls_client_new(px.tls, u->backend, err, sizeof(err))) == NULL ||
		    SSL_set_fd(u->ssl, u->fd) != 1) {
			log_error("cannot start TLS to a backend", "backend",
			    px.cfg->backends[u->backend].addr.hostport, "error", err, NULL);
			attempt_failed(c, "TLS set-up failed", METRICS_ERR_TLS);
			return -1;
		}
		/* The handshake reads too: both directions report until it is done. */
		event_add(&u->rev, NULL);
	}
	rc = transport_handshake(u->ssl, &why, NULL);
	if (rc == 1)
		return 1;
	if (rc < 0) {
		char reason[160];

		/* A certificate that does not verify says why (expired, unknown CA, wrong name). */
		if (SSL_get_verify_result(u->ssl) != X509_V_OK)
			why = X509_verify_cert_error_string(SSL_get_verify_result(u->ssl));
		snprintf(reason, sizeof(reason), "TLS: %s", why);
		attempt_failed(c, reason, METRICS_ERR_TLS);
		return -1;
	}
	return 0;
}

/*
 * The backend connection is up (the TCP connect, and for an https backend
 * the TLS handshake, connect_timeout covering both, as nginx's
 * proxy_connect_timeout does): send what waits. -1 when the attempt failed.
 */
static int
upstream_connected(struct client *c)
{
	struct upconn *u = c->up;

	if (send_proxy_header(u, c) == -1) {
		attempt_failed(c, strerror(errno), METRICS_ERR_CONNECT_FAILED);
		return -1;
	}
	if (px.cfg->backends[u->backend].addr.tls) {
		int rc = upstream_tls_step(c);

		if (rc != 1)
			return rc;
	}
	u->connecting = false;
	u->writing = false;
	event_del(&u->wev);
	upstream_arm_timeout(c);
	return 1;
}

void
upstream_write_cb(struct upconn *u, short what)
{
	struct client *c = u->owner;
	int fd = u->fd;
	int err = 0;
	socklen_t len = sizeof(err);

	px.now = proc_now_ns();
	if (u->connecting) {
		if (u->ssl == NULL) {
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
				err = errno;
			if (err != 0) {
				attempt_failed(c, strerror(err), err == ECONNREFUSED ?
				    METRICS_ERR_CONNECT_REFUSED : METRICS_ERR_CONNECT_FAILED);
				return;
			}
		}
		if (upstream_connected(c) != 1)
			return;
	}
	if (c->resp == RESP_TUNNEL)
		tunnel_backend_flush(c);
	else
		send_request(c);
}

/* ---- the response ---- */

/*
 * Whether a 101 switches to what the client asked for: the request was an
 * upgrade, and every protocol the answer's one Upgrade header names was in
 * the request's Upgrade list.
 */
static bool
upgrade_matches(const struct client *c, const char *base, const struct http_head *h)
{
	const char *asked, *value = NULL;
	size_t len = 0;

	if (!c->upgrade)
		return false;
	for (uint16_t i = 0; i < h->nfields; i++) {
		if (h->fields[i].kind != HTTP_FIELD_UPGRADE)
			continue;
		if (value != NULL)
			return false;
		value = base + h->fields[i].value.off;
		len = h->fields[i].value.len;
	}
	asked = (const char *)evbuffer_pullup(c->rq->req_head, -1) + c->rq->upgrade_off;
	return value != NULL && http_tokens_within(value, len, asked, c->rq->upgrade_len);
}

static int
response_head(struct client *c)
{
	struct upconn *u = c->up;
	struct http_head *h = c->up->pc.head;
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
			if (upgrade_matches(c, base, h))
				return tunnel_start(c);
			log_warn("backend switched protocols unasked or to another one", "backend",
			    px.cfg->backends[u->backend].addr.hostport, NULL);
			return attempt_failed(c, "101 Switching Protocols", METRICS_ERR_BAD_RESPONSE);
		}
		if (!c->http10)
			evbuffer_add_printf(c->out, "HTTP/1.1 %d %.*s\r\n\r\n", status,
			    (int)h->reason.len, base + h->reason.off);
		evbuffer_drain(u->in, u->fed);
		u->fed = 0;
		message_reset(&u->parser, &c->up->pc, h);
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
	c->rq->resp_bytes += evbuffer_get_length(c->out) - before;
	c->rq->status = status;
	evbuffer_drain(u->in, u->fed);
	u->fed = 0;
	c->resp = RESP_BODY;
	/* A chunked answer is framed again (or de-chunked), never passed on as framed. */
	c->up->pc.body_to = chunked ? c->out : NULL;
	c->up->pc.rechunk = !dechunk;
	if (c->head_method) {
		/* No body follows an answer to HEAD, whatever its headers say. */
		c->up->pc.msg_done = true;
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
	upstream_release(c, reusable);
	return exchange_done(c);
}

int
upstream_process(struct client *c)
{
	struct upconn *u;
	llhttp_errno_t e;
	size_t before;

	/* A tunnel (after a 101) is tunnel.c's, not the HTTP parser's. */
	while ((u = c->up) != NULL && c->resp != RESP_TUNNEL) {
		if (!c->up->pc.head_done) {
			e = message_feed(&u->parser, &c->up->pc, u->in, &u->fed);
			if (!c->up->pc.head_done) {
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
		before = c->up->pc.body_to != NULL ? evbuffer_get_length(c->out) : 0;
		if (!c->up->pc.msg_done) {
			e = message_feed(&u->parser, &c->up->pc, u->in, &u->fed);
			if (e != HPE_OK && e != HPE_PAUSED) {
				log_warn("invalid response body", "backend",
				    px.cfg->backends[u->backend].addr.hostport,
				    "error", c->up->pc.error_reason != NULL ?
				    c->up->pc.error_reason : llhttp_errno_name(e), NULL);
				client_close(c);
				return -1;
			}
		}
		count_trailers(&c->up->pc);
		if (c->up->pc.body_to != NULL) {
			evbuffer_drain(u->in, u->fed);
			c->rq->resp_bytes += evbuffer_get_length(c->out) - before;
		} else {
			evbuffer_remove_buffer(u->in, c->out, u->fed);
			c->rq->resp_bytes += u->fed;
		}
		u->fed = 0;
		if (!c->up->pc.msg_done)
			return client_flush(c);
		return response_done(c);
	}
	return 0;
}

/*
 * The backend connection's timer: a connect, a blocked send or the answer
 * may have taken too long (see deadline.h: it may also just be early).
 */
void
upstream_timer_cb(struct upconn *u, short what)
{
	struct client *c = u->owner;
	int64_t limit;

	px.now = proc_now_ns();
	if (c->resp == RESP_TUNNEL)
		return;		/* the client's timer watches a tunnel */
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

void
upstream_read_cb(struct upconn *u, short what)
{
	struct client *c = u->owner;
	bool more, got_data;
	int rc;

	px.now = proc_now_ns();
	if (u->connecting) {
		/* Only an https backend's handshake reads before the connection is up. */
		if (u->ssl != NULL && upstream_connected(c) == 1)
			send_request(c);
		return;
	}
	if (c->resp == RESP_TUNNEL) {
		tunnel_backend_readable(c, (what & EV_CLOSED) != 0);
		return;
	}
	rc = transport_read(u->fd, u->ssl, u->in, (what & EV_CLOSED) != 0, &more, &got_data);
	if (got_data) {
		/*
		 * The rest, or the end of file or error behind the bytes, is for
		 * another turn of this callback, after these bytes are dealt with.
		 * Should u be freed or pooled meanwhile, libevent drops the
		 * activation with the event, or the pool drops the connection.
		 * A reported close is passed on: its edge does not come again,
		 * and only a read told of it goes on to the end of file.
		 */
		if (more || rc != 1)
			event_active(&u->rev, what & EV_CLOSED ? EV_READ | EV_CLOSED : EV_READ, 0);
		u->last_io_ns = px.now;
		upstream_process(c);
		return;
	}
	if (rc == 0 || rc == -1) {
		const char *why = rc == 0 ? "connection closed" : strerror(errno);

		if (c->resp == RESP_BODY && rc == 0 && llhttp_message_needs_eof(&u->parser)) {
			/* A close-delimited body just ended. */
			llhttp_finish(&u->parser);
			c->up->pc.msg_done = true;
			exchange_record(c);
			upstream_release(c, false);
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
