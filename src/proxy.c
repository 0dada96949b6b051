/* The client side of a worker's proxy: accept, read and check requests, answer, drain. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
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
#include "roundguard/client.h"
#include "roundguard/deadline.h"
#include "roundguard/http.h"
#include "roundguard/log.h"
#include "roundguard/message.h"
#include "roundguard/metrics.h"
#include "roundguard/net.h"
#include "roundguard/pool.h"
#include "roundguard/proc.h"
#include "roundguard/proxy.h"
#include "roundguard/proxyproto.h"
#include "roundguard/tls.h"
#include "roundguard/transport.h"
#include "roundguard/tunnel.h"
#include "roundguard/uri.h"

struct proxy_state px;

struct http_head *
head_get(void)
{
	struct http_head *h = px.nspare > 0 ? px.spare[--px.nspare] : malloc(sizeof(*h));

	if (h != NULL) {
		h->nfields = 0;
		h->method.len = h->target.len = h->reason.len = 0;
	}
	return h;
}

void
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
void
exchange_record(struct client *c)
{
	bool tunnel = c->resp == RESP_TUNNEL;
	int64_t ns;

	if (!c->in_exchange)
		return;
	c->in_exchange = false;
	c->served++;
	ns = proc_now_ns() - c->rq->started_ns;
	if (c->rq->backend >= 0) {
		struct metrics_slot *s = shm_stats(px.shm, (uint32_t)px.worker, (uint32_t)c->rq->backend);

		/* A tunnel's answer time is until its 101; the log line has its whole life. */
		metrics_record(s, c->method, c->rq->status,
		    tunnel ? c->rq->tun_started_ns - c->rq->started_ns : ns);
		if (tunnel)
			atomic_fetch_add_explicit(&s->tunnels[1], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->active[1], 1, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&px.shm->workers[px.worker].requests, 1, memory_order_relaxed);
	if (px.cfg->log.access && log_enabled(LOG_LEVEL_INFO)) {
		char status[4], bytes[24], up[24], dur[32], ip[NET_ADDR_STRLEN];
		const char *line, *path = "-";

		if (evbuffer_get_length(c->rq->req_head) > c->rq->line_len &&
		    (line = (const char *)evbuffer_pullup(c->rq->req_head,
		    (ev_ssize_t)c->rq->line_len + 1)) != NULL)
			path = line + c->rq->method_len + 1;
		status[0] = (char)('0' + c->rq->status / 100 % 10);
		status[1] = (char)('0' + c->rq->status / 10 % 10);
		status[2] = (char)('0' + c->rq->status % 10);
		status[3] = '\0';
		format_duration(dur, sizeof(dur), ns);
		log_access("client", client_ip(c, ip),
		    "method", llhttp_method_name((llhttp_method_t)c->method),
		    "path", path, "status", status,
		    "bytes", format_u64(bytes, sizeof(bytes), c->rq->resp_bytes), "duration", dur,
		    "backend", c->rq->backend >= 0 ? px.cfg->backends[c->rq->backend].addr.hostport : "-",
		    "worker", px.worker_str,
		    /* Only a tunnel's line says what went the other way. */
		    tunnel ? "bytes_up" : NULL, format_u64(up, sizeof(up), c->rq->tun_up_bytes), NULL);
	}
}

static void
exchange_begin(struct client *c)
{
	c->rq->started_ns = px.now;
	c->rq->status = 0;
	c->upgrade = false;
	c->rq->backend = -1;
	c->rq->resp_bytes = 0;
	c->in_exchange = true;
}

static void
count_dropped(enum shm_counter k, uint32_t n)
{
	atomic_fetch_add_explicit(&px.shm->workers[px.worker].counters[k], n,
	    memory_order_relaxed);
}

/* Trailer fields the parser dropped (message.h), once each. */
void
count_trailers(struct message_parse *pc)
{
	if (pc->trailers_dropped > 0) {
		count_dropped(SHM_DROPPED_TRAILER, pc->trailers_dropped);
		pc->trailers_dropped = 0;
	}
}

/*
 * Count c's TLS handshake once (roundguard_tls_handshakes_total): when it is
 * done, failed or timed out, or when the worker closes c before any of that
 * (a drain, the exit), which counts as other. The HTTP side starts after it.
 */
static void
handshake_count(struct client *c, enum metrics_tls_result r)
{
	if (!c->handshaking)
		return;
	c->handshaking = false;
	metrics_record_tls_handshake(&px.shm->workers[px.worker], c->listener,
	    metrics_tls_version(transport_version(c->ssl), r), r);
}

/* roundguard_proxy_protocol_headers_total, once per connection that had to send one. */
static void
proxy_header_count(struct client *c, enum metrics_pp_result r)
{
	c->awaiting_proxy = false;
	atomic_fetch_add_explicit(&px.shm->workers[px.worker].tls[c->listener].proxy_headers[r], 1,
	    memory_order_relaxed);
}

/* ---- connections ---- */

struct evbuffer *
buf_get(void)
{
	return px.nspare_bufs > 0 ? px.spare_bufs[--px.nspare_bufs] : evbuffer_new();
}

void
buf_put(struct evbuffer *b)
{
	if (b == NULL)
		return;
	/* Only an empty one is kept: it holds no chain, only its own small struct. */
	if (evbuffer_get_length(b) == 0 && px.nspare_bufs < PROXY_SPARE_BUFS)
		px.spare_bufs[px.nspare_bufs++] = b;
	else
		evbuffer_free(b);
}

static struct client_request *
rq_get(void)
{
	struct client_request *rq;

	if (px.nspare_rq > 0)
		return px.spare_rq[--px.nspare_rq];
	if ((rq = malloc(sizeof(*rq))) == NULL)
		return NULL;
	llhttp_init(&rq->parser, HTTP_REQUEST, &px.req_settings);
	/*
	 * Any one-digit version parses (llhttp has no setter for this flag):
	 * request_head() serves HTTP/1.x above 1.1 as 1.1 (RFC 9110 2.5), as
	 * nginx and HAProxy do, and answers HTTP/2 and above with 505.
	 * message_reset() keeps it: llhttp_reset() leaves lenient flags alone.
	 */
	rq->parser.lenient_flags |= LENIENT_VERSION;
	rq->pc.head = NULL;
	return rq;
}

/* Give back a connection's request state: its parsed head and buffers first. */
void
client_rq_give(struct client *c)
{
	struct client_request *rq = c->rq;

	if (rq == NULL)
		return;
	head_put(rq->pc.head);
	rq->pc.head = NULL;
	buf_put(rq->req_head);
	buf_put(rq->held);
	buf_put(rq->replay);
	if (px.nspare_rq < PROXY_SPARE_RQ)
		px.spare_rq[px.nspare_rq++] = rq;
	else
		free(rq);
	c->rq = NULL;
}

/* The buffers and request state of a connection that has bytes to deal with; -1 without memory. */
static int
client_bufs_take(struct client *c)
{
	struct client_request *rq;

	if (c->in != NULL)
		return 0;
	c->in = buf_get();
	c->out = buf_get();
	if ((c->rq = rq = rq_get()) == NULL)
		return -1;
	/* What a previous connection left in a spare is not this one's. */
	memset(&rq->fed, 0, sizeof(*rq) - offsetof(struct client_request, fed));
	rq->backend = -1;
	rq->req_head = buf_get();
	return c->in != NULL && c->out != NULL && rq->req_head != NULL ? 0 : -1;
}

static void
client_bufs_give(struct client *c)
{
	buf_put(c->in);
	c->in = NULL;
	buf_put(c->out);
	c->out = NULL;
	client_rq_give(c);
}

/*
 * Between requests with nothing received, pending or to send, a keep-alive
 * connection gives its buffers back (10,000 idle connections cost a worker
 * their structs, not 50,000 evbuffers).
 */
static void
client_rest(struct client *c)
{
	if (c->in == NULL || c->req != REQ_HEAD || c->rq == NULL || c->rq->pc.head != NULL ||
	    c->up != NULL ||
	    c->in_exchange || c->flush_pending || c->send_pending ||
	    evbuffer_get_length(c->in) > 0 || evbuffer_get_length(c->out) > 0)
		return;
	client_bufs_give(c);
}

void
client_close(struct client *c)
{
	handshake_count(c, METRICS_TLS_OTHER);
	if (c->in_exchange) {
		/* Cut off mid-way: what nginx logs as 499 when the client left first. */
		if (c->rq->status == 0)
			c->rq->status = 499;
		exchange_record(c);
	}
	if (c->up != NULL) {
		head_put(c->up->pc.head);
		upconn_free(c->up);
	}
	if (c->flush_pending)
		TAILQ_REMOVE(&px.flushes, c, flush_entry);
	if (c->send_pending)
		TAILQ_REMOVE(&px.sends, c, send_entry);
	event_del(&c->ev);
	deadline_cancel(&c->timer);
	if (c->ssl != NULL) {
		transport_close_notify(c->ssl);
		SSL_free(c->ssl);
	}
	close(c->fd);
	client_bufs_give(c);
	LIST_REMOVE(c, entry);
	free(c);
	px.nclients--;
	if (px.draining && px.nclients == 0 && px.drained != NULL)
		px.drained();
}

void
client_set_reading(struct client *c, bool on)
{
	if (on == c->reading)
		return;
	c->reading = on;
	if (on) {
		/* The client's time to send starts now, not when reading stopped. */
		c->last_io_ns = px.now;
		/* Edge-triggered: the edges that came while reading was off were ignored: look now. */
		event_active(&c->ev, EV_READ, 0);
	}
}

static int client_error_full(struct client *c, int status, const char *title,
    const char *description, const char *extra);
static int redirect_https(struct client *c, const char *host, const char *target,
    size_t target_len);
static void redirect_host(const char *base, const struct http_head *h, const char *authority,
    char *host);

/* The longest Location a redirect_https listener writes (a target is at most 8 KiB). */
#define REDIRECT_MAX (PARSE_HOST_MAX + 8192 + 32)

/* Answer with an error made here; the connection closes unless the request was whole. */
int
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

	upstream_release(c, false);
	if (c->resp != RESP_NONE) {
		/* Part of a response went out already: all that is left is to cut it off. */
		client_close(c);
		return -1;
	}
	before = evbuffer_get_length(c->out);
	http_error_response(c->out, status, title, description, extra, keep, c->head_method);
	c->rq->resp_bytes += evbuffer_get_length(c->out) - before;
	c->rq->status = status;
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
	if (c->flush_pending || c->out == NULL || evbuffer_get_length(c->out) == 0)
		return;
	c->flush_pending = true;
	TAILQ_INSERT_TAIL(&px.flushes, c, flush_entry);
}

/* The exchange is over on both sides: reuse or close, then take the next request. */
int
exchange_done(struct client *c)
{
	if (c->close_after || c->mode == HTTP_CONN_CLOSE || px.draining) {
		c->close_after = true;
		return client_flush(c);
	}
	head_put(c->rq->pc.head);
	c->rq->pc.head = NULL;
	c->req = REQ_HEAD;
	c->resp = RESP_NONE;
	c->rq->ntried = 0;
	c->rq->retried_after_send = false;
	/* Emptied evbuffers free their chains: an idle connection keeps no request. */
	if (c->rq->held != NULL)
		buffer_clear(c->rq->held);
	if (c->rq->replay != NULL)
		buffer_clear(c->rq->replay);
	buffer_clear(c->rq->req_head);
	client_flush_later(c);
	client_set_reading(c, true);
	/* A pipelined request may already wait in c->in. */
	if (evbuffer_get_length(c->in) > 0)
		return client_process(c);
	client_rest(c);
	return 0;
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
	struct tls_cert_expiry certs[CONFIG_LISTENERS_MAX * CONFIG_CERTS_MAX];
	size_t ncerts;
	struct evbuffer *body;
	size_t before = evbuffer_get_length(c->out);
	int method = c->rq->parser.method;

	if (!target_is(target, len, px.cfg->metrics.path))
		return client_error(c, 404, NULL, NULL);
	if (method != HTTP_GET && method != HTTP_HEAD) {
		c->keep_alive = c->keep_alive && c->req == REQ_DONE;
		return client_error_allow(c, 405, "GET, HEAD");
	}
	/* The generation's certificates, as loaded by the master: the ones this worker serves. */
	ncerts = tls_cert_expiry(px.tls, certs, sizeof(certs) / sizeof(certs[0]));
	if (ncerts > sizeof(certs) / sizeof(certs[0]))
		ncerts = sizeof(certs) / sizeof(certs[0]);
	if ((body = evbuffer_new()) == NULL ||
	    metrics_render(body, px.shm, px.cfg, certs, ncerts, ROUNDGUARD_VERSION) == -1) {
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
	c->rq->resp_bytes += evbuffer_get_length(c->out) - before;
	c->rq->status = 200;
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

	c->rq->method_len = method_len;
	c->rq->line_len = method_len + 1 + slash + target_len;
	if (evbuffer_reserve_space(c->rq->req_head, (ev_ssize_t)c->rq->line_len + 1, &v, 1) < 1)
		return -1;
	p = v.iov_base;
	memcpy(p, method, method_len);
	p[method_len] = ' ';
	p[method_len + 1] = '/';
	memcpy(p + method_len + 1 + slash, target, target_len);
	p[c->rq->line_len] = '\0';
	v.iov_len = c->rq->line_len + 1;
	return evbuffer_commit_space(c->rq->req_head, &v, 1);
}

/*
 * An upgrade (WebSocket and the like) goes on with "Connection: upgrade" and
 * its Upgrade header, written into req_head ahead of the other fields; for
 * every other request both stay hop-by-hop. Not upgraded, but forwarded as
 * plain requests without them: HTTP/1.0 ones (RFC 9110 7.8: a server ignores
 * Upgrade there), ones with a body (once switched, the wire cannot say where
 * the body ended), and "h2c" (request smuggling past the proxy's checks
 * through a cleartext HTTP/2 upgrade is a known attack). An upgrade is sent
 * once: never retried after it went out.
 */
static int
request_upgrade(struct client *c, const char *base, const struct http_head *h)
{
	char ip[NET_ADDR_STRLEN];
	static const char lead[] = "Connection: upgrade\r\nUpgrade: ";
	const char *value;
	size_t len;

	c->upgrade = false;
	if (!http_upgrade_requested(base, h, &value, &len))
		return 0;
	if (c->http10 || (c->rq->parser.flags & F_CHUNKED) || c->rq->parser.content_length > 0 ||
	    http_token_listed(value, len, "h2c", 3) || len > UINT16_MAX) {
		log_debug("upgrade not passed on", "client", client_ip(c, ip), "upgrade", "(see README)", NULL);
		return 0;
	}
	c->upgrade = true;
	c->idempotent = false;
	c->rq->upgrade_off = (uint32_t)(evbuffer_get_length(c->rq->req_head) + sizeof(lead) - 1);
	c->rq->upgrade_len = (uint16_t)len;
	if (evbuffer_add(c->rq->req_head, lead, sizeof(lead) - 1) != 0 ||
	    evbuffer_add(c->rq->req_head, value, len) != 0 || evbuffer_add(c->rq->req_head, "\r\n", 2) != 0)
		return -1;
	return 0;
}

/*
 * A Content-Length with leading zeros goes on as the number llhttp read
 * ("010" is 10 here, and 8 to a parser that takes it for octal), written into
 * req_head ahead of the other fields; the usual form goes on as it came.
 */
static int
content_length_keep(struct client *c, const char *base, struct http_head *h)
{
	char line[48];
	int n;

	if (!(c->rq->parser.flags & F_CONTENT_LENGTH))
		return 0;
	for (uint16_t i = 0; i < h->nfields; i++) {
		struct http_field *f = &h->fields[i];

		if (f->kind != HTTP_FIELD_CONTENT_LENGTH || f->value.len < 2 ||
		    base[f->value.off] != '0')
			continue;
		f->hop = true;
		n = snprintf(line, sizeof(line), "Content-Length: %" PRIu64 "\r\n",
		    (uint64_t)c->rq->parser.content_length);
		return evbuffer_add(c->rq->req_head, line, (size_t)n);
	}
	return 0;
}

/* Refuse with 400 and close: a request the proxy must not pass on. */
static int
request_refuse(struct client *c, const char *why)
{
	char ip[NET_ADDR_STRLEN];
	c->keep_alive = false;
	log_debug("request refused", "client", client_ip(c, ip), "reason", why, NULL);
	return client_error(c, 400, NULL, why);
}

/*
 * The head is whole: check it, rewrite it into req_head for the backend and
 * start the first attempt (or answer here: metrics, errors).
 */
static int
request_head(struct client *c)
{
	char ip[NET_ADDR_STRLEN];
	struct http_head *h = c->rq->pc.head;
	const char *base = (const char *)evbuffer_pullup(c->in, (ev_ssize_t)c->rq->fed);
	const char *line, *why, *target;
	/* An absolute-form target's, else empty; uri_host_check(): at most 255 + ":" + 5 digits. */
	char authority[300] = "", redirect_to[PARSE_HOST_MAX + 1];
	bool redirect;
	struct uri_target ut;
	int method = c->rq->parser.method;
	uint32_t dropped;

	c->method = (uint8_t)method;

	/* llhttp reads any one-digit version (LENIENT_VERSION): HTTP/1.x above 1.1 is 1.1. */
	c->http10 = c->rq->parser.http_major == 1 && c->rq->parser.http_minor == 0;
	c->keep_alive = llhttp_should_keep_alive(&c->rq->parser);
	c->head_method = method == HTTP_HEAD;
	c->idempotent = method_idempotent(method);
	c->rq->held_ok = true;
	c->mode = HTTP_CONN_KEEP;
	c->req = REQ_BODY;
	h->major = c->rq->parser.http_major;
	h->minor = c->http10 ? 0 : 1;
	c->rq->body_started_ns = px.now;
	exchange_begin(c);
	buffer_clear(c->rq->req_head);
	/* The target as received, for the access log, until it is checked. */
	c->asterisk = false;
	if (request_line_keep(c, base + h->method.off, h->method.len, false,
	    base + h->target.off, h->target.len) == -1)
		return client_error(c, 500, NULL, NULL);
	if (method == HTTP_CONNECT) {
		c->keep_alive = false;
		return client_error(c, 501, NULL, "CONNECT tunnels are not supported");
	}
	if ((c->rq->parser.flags & F_CONTENT_LENGTH) &&
	    c->rq->parser.content_length > px.cfg->proxy.max_body_size) {
		c->keep_alive = false;
		return client_error(c, 413, NULL, NULL);
	}
	if (c->rq->parser.http_major != 1) {
		c->keep_alive = false;
		return client_error(c, c->rq->parser.http_major > 1 ? 505 : 400, NULL,
		    c->rq->parser.http_major > 1 ? "Only HTTP/1.0 and HTTP/1.1 are spoken here" :
		    "The request line has no HTTP version");
	}
	http_head_classify(base, h);
	if ((why = http_request_refusal(base, c->rq->fed, h, c->http10, &c->has_host)) != NULL ||
	    (why = uri_target_check(base + h->target.off, h->target.len, method == HTTP_OPTIONS,
	    &ut)) != NULL)
		return request_refuse(c, why);
	/*
	 * RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty
	 * framing (an HTTP/1.0 hop may not know chunked): serve it, then close.
	 */
	if (c->http10 && (c->rq->parser.flags & F_TRANSFER_ENCODING))
		c->keep_alive = false;
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
		buffer_clear(c->rq->req_head);
		/* RFC 9112 3.2.4: OPTIONS to an authority without a path asks about the server. */
		if (method == HTTP_OPTIONS && ut.path_len == 0)
			ut.form = URI_ASTERISK;
		if (request_line_keep(c, base + h->method.off, h->method.len,
		    ut.form == URI_ABSOLUTE && ut.need_slash,
		    ut.form == URI_ASTERISK ? "*" : target + ut.path_off,
		    ut.form == URI_ASTERISK ? 1 : ut.path_len) == -1)
			return client_error(c, 500, NULL, NULL);
	}
	c->asterisk = ut.form == URI_ASTERISK;
	/* Lines written ahead of the fields: after the request line is final. */
	if (content_length_keep(c, base, h) == -1 || request_upgrade(c, base, h) == -1)
		return client_error(c, 500, NULL, NULL);
	if (!px.cfg->proxy.underscores_in_headers &&
	    (dropped = http_drop_underscore_fields(base, h)) > 0)
		count_dropped(SHM_DROPPED_UNDERSCORE, dropped);
	if (http_write_request_fields(c->rq->req_head, base, h, client_ip(c, ip),
	    authority[0] != '\0' ? authority : NULL, c->ssl != NULL) == -1)
		return client_error(c, 500, NULL, NULL);
	if ((redirect = c->listener >= 0 && px.cfg->listeners[c->listener].redirect_https))
		redirect_host(base, h, authority, redirect_to);
	/* The head is copied out: from here on only req_head holds it. */
	evbuffer_drain(c->in, c->rq->fed);
	c->rq->fed = 0;
	llhttp_resume(&c->rq->parser);
	if (!(c->rq->parser.flags & F_CHUNKED) && c->rq->parser.content_length == 0) {
		/* No body: let llhttp finish the message now (it reads no byte for that). */
		message_feed(&c->rq->parser, &c->rq->pc, c->in, &c->rq->fed);
		if (c->rq->pc.msg_done)
			c->req = REQ_DONE;
	}
	line = (const char *)evbuffer_pullup(c->rq->req_head, (ev_ssize_t)c->rq->line_len);
	if (redirect)
		return redirect_https(c, redirect_to, line + c->rq->method_len + 1,
		    c->rq->line_len - c->rq->method_len - 1);
	if (c->metrics_only || (!px.cfg->metrics.listen_set &&
	    target_is(line + c->rq->method_len + 1, c->rq->line_len - c->rq->method_len - 1,
	    px.cfg->metrics.path)))
		return serve_metrics(c, line + c->rq->method_len + 1, c->rq->line_len - c->rq->method_len - 1);
	if (method == HTTP_TRACE && !px.cfg->proxy.allow_trace) {
		/* Cross-site tracing: TRACE echoes cookies and credentials back (proxy.allow_trace). */
		c->keep_alive = c->keep_alive && c->req == REQ_DONE;
		return client_error_allow(c, 405, "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
	}
	return upstream_start(c);
}

/*
 * A redirect_https listener answers every request with 308 to the same
 * host and target on https:// (308 keeps the method and body, unlike 301),
 * as nginx's "return 308 https://$host$request_uri" does. The host is the
 * checked Host (or the absolute-form target's authority) without its port,
 * copied into host (PARSE_HOST_MAX + 1) while the head is still in c->in;
 * "" when the request has none.
 */
static void
redirect_host(const char *base, const struct http_head *h, const char *authority, char *host)
{
	const char *v = authority[0] != '\0' ? authority : NULL;
	size_t len = v != NULL ? strlen(v) : 0, i;

	for (uint16_t f = 0; v == NULL && f < h->nfields; f++) {
		if (h->fields[f].kind == HTTP_FIELD_HOST && !h->fields[f].hop) {
			v = base + h->fields[f].value.off;
			len = h->fields[f].value.len;
		}
	}
	/* Drop the port: after the last ':' unless that is inside an IPv6 literal. */
	for (i = len; i > 0 && v[i - 1] != ':' && v[i - 1] != ']'; i--)
		;
	if (i > 0 && v[i - 1] == ':')
		len = i - 1;
	if (len > PARSE_HOST_MAX)
		len = 0;	/* checked already (uri_host_check()); never cut one */
	memcpy(host, v != NULL ? v : "", len);
	host[len] = '\0';
}

/* The 308 itself, redirect_port added unless it is 443; the target is the rewritten one. */
static int
redirect_https(struct client *c, const char *host, const char *target, size_t target_len)
{
	const struct config_listener *l = &px.cfg->listeners[c->listener];
	char port[8] = "", extra[REDIRECT_MAX + 16];
	char location[REDIRECT_MAX];

	if (host[0] == '\0')
		return request_refuse(c, "A redirect to https needs the request's Host");
	if (l->redirect_port != 443)
		snprintf(port, sizeof(port), ":%u", l->redirect_port);
	if ((size_t)snprintf(location, sizeof(location), "https://%s%s%.*s", host, port,
	    (int)target_len, target) >= sizeof(location))
		return client_error(c, 414, NULL, NULL);
	snprintf(extra, sizeof(extra), "Location: %s\r\n", location);
	return client_error_full(c, 308, NULL, "This address is served over https://: see Location",
	    extra);
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

	if (n == 0 || !c->rq->held_ok)
		return;
	/* Only idempotent requests with a body need the buffer: most connections never do. */
	if (!c->idempotent || !px.cfg->proxy.retry_idempotent ||
	    (c->rq->held == NULL && (c->rq->held = evbuffer_new()) == NULL) ||
	    evbuffer_get_length(c->rq->held) + n > PROXY_HOLD_MAX) {
		c->rq->held_ok = false;
		if (c->rq->held != NULL)
			buffer_clear(c->rq->held);
		return;
	}
	evbuffer_ptr_set(out, &pos, from, EVBUFFER_PTR_SET);
	k = evbuffer_peek(out, (ev_ssize_t)n, &pos, v, 8);
	for (int i = 0; i < k && i < 8; i++)
		evbuffer_add(c->rq->held, v[i].iov_base, v[i].iov_len);
	if (k > 8)
		c->rq->held_ok = false;
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

	c->rq->pc.body_to = (c->rq->parser.flags & F_CHUNKED) ? out : NULL;
	c->rq->pc.rechunk = true;
	e = message_feed(&c->rq->parser, &c->rq->pc, c->in, &c->rq->fed);
	if (e != HPE_OK && e != HPE_PAUSED)
		return e;
	count_trailers(&c->rq->pc);
	if (c->rq->pc.body_to != NULL)
		evbuffer_drain(c->in, c->rq->fed);
	else
		evbuffer_remove_buffer(c->in, out, c->rq->fed);
	c->rq->fed = 0;
	hold_body(c, before);
	return e;
}

int
client_process(struct client *c)
{
	char ip[NET_ADDR_STRLEN];
	llhttp_errno_t e;

	if (c->req == REQ_HEAD) {
		if (c->rq->pc.head == NULL) {
			if ((c->rq->pc.head = head_get()) == NULL)
				return client_error(c, 500, NULL, NULL);
			c->rq->head_started_ns = px.now;
			message_reset(&c->rq->parser, &c->rq->pc, c->rq->pc.head);
			c->rq->pc.body_max = px.cfg->proxy.max_body_size;
			c->rq->pc.extra_max = px.cfg->proxy.max_header_size;
			c->rq->fed = 0;
		}
		e = message_feed(&c->rq->parser, &c->rq->pc, c->in, &c->rq->fed);
		if (!c->rq->pc.head_done) {
			if (e != HPE_OK && e != HPE_PAUSED) {
				c->keep_alive = false;
				log_debug("bad request", "client", client_ip(c, ip), "error", llhttp_errno_name(e),
				    "reason", llhttp_get_error_reason(&c->rq->parser), NULL);
				return client_error(c, c->rq->pc.error_status != 0 ?
				    c->rq->pc.error_status : 400, NULL, NULL);
			}
			if (c->rq->fed > px.cfg->proxy.max_header_size) {
				c->keep_alive = false;
				return client_error(c, 431, NULL, NULL);
			}
			return 0;
		}
		if (c->rq->fed > px.cfg->proxy.max_header_size) {
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
		return client_error(c, c->rq->pc.error_status != 0 ? c->rq->pc.error_status : 400,
		    NULL, c->rq->pc.error_reason);
	}
	if (c->rq->pc.msg_done) {
		c->req = REQ_DONE;
		upstream_arm_timeout(c);
	}
	return upstream_flush_soon(c);
}

int
client_flush(struct client *c)
{
	size_t left;
	int n;

	if (c->resp == RESP_TUNNEL)
		return tunnel_client_flush(c);
	if (c->out == NULL)
		return 0;	/* idle: nothing to write */
	left = evbuffer_get_length(c->out);
	while (left > 0) {
		n = transport_write(c->fd, c->ssl, c->out);
		if (n > 0) {
			c->last_io_ns = px.now;
			left -= (size_t)n;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			c->writing = true;	/* the next write edge says there is room */
			if (c->up != NULL && left > PROXY_BUF_HIGH)
				upstream_set_reading(c, false);
			return 0;
		}
		client_close(c);
		return -1;
	}
	c->writing = false;
	if (c->up != NULL)
		upstream_set_reading(c, true);
	if (c->close_after && c->up == NULL) {
		client_close(c);
		return -1;
	}
	client_rest(c);
	return 0;
}

/* The socket takes more after a full one: -1 when c is gone. */
static int
client_write_ready(struct client *c)
{
	if (client_flush(c) == -1)	/* a tunnel's too (client_flush() passes it on) */
		return -1;
	if (c->resp != RESP_TUNNEL && c->up != NULL && evbuffer_get_length(c->up->in) > 0)
		return upstream_process(c);
	return 0;
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
	if (c->req == REQ_HEAD && c->rq != NULL && c->rq->pc.head != NULL)
		return px.now - c->rq->head_started_ns > limit;
	if (c->req == REQ_BODY)
		return px.now - c->rq->body_started_ns >
		    limit + (int64_t)(c->rq->pc.body_len * 1000000000 / PROXY_BODY_MIN_RATE);
	return false;
}

/*
 * client_timeout: no byte taken by a blocked client for that long closes the
 * connection; no byte sent while it is read closes an idle one and answers a
 * partial request with 408. The timer fires at least once per client_timeout
 * for the connection's whole life (see deadline.h).
 */
/* Are bytes waiting to be read on fd (not taken off it)? */
static bool
bytes_waiting(int fd)
{
	char b;

	return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

static void
client_timer_cb(struct deadline *d)
{
	struct client *c = deadline_owner(d, struct client, timer);
	int64_t limit = px.cfg->proxy.client_timeout_ns;
	bool partial;

	px.now = proc_now_ns();
	if (c->awaiting_proxy) {
		/* The PROXY header: proxy.client_timeout from the accept, however it trickles. */
		if (px.now - c->last_io_ns < limit) {
			deadline_ensure(&c->timer, c->last_io_ns + limit, px.now);
			return;
		}
		proxy_header_count(c, METRICS_PP_TIMEOUT);
		client_close(c);
		return;
	}
	if (c->handshaking) {
		/* tls.handshake_timeout counts from the accept, however the bytes trickle. */
		limit = px.cfg->listeners[c->listener].tls.handshake_timeout_ns;
		if (px.now - c->last_io_ns < limit) {
			deadline_ensure(&c->timer, c->last_io_ns + limit, px.now);
			return;
		}
		handshake_count(c, METRICS_TLS_TIMEOUT);
		client_close(c);
		return;
	}
	if (c->resp == RESP_TUNNEL) {
		/* proxy.tunnel_timeout: idle both ways (last_io_ns moves with either). */
		limit = px.cfg->proxy.tunnel_timeout_ns;
		if (px.now - c->last_io_ns < limit)
			deadline_ensure(&c->timer, c->last_io_ns + limit, px.now);
		else
			client_close(c);
		return;
	}
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
	partial = c->req == REQ_BODY ||
	    (c->req == REQ_HEAD && c->in != NULL && evbuffer_get_length(c->in) > 0);
	if (partial && c->resp == RESP_NONE) {
		c->keep_alive = false;
		/* Still open while the 408 goes out: the timer keeps watching. */
		if (client_error(c, 408, NULL, NULL) == 0)
			deadline_ensure(&c->timer, px.now + limit, px.now);
	} else if (c->ssl == NULL && c->resp == RESP_NONE && bytes_waiting(c->fd)) {
		/*
		 * Nothing read yet, but a request is on the socket: a busy loop ran
		 * this timer before that read event. Read it, rather than drop it.
		 */
		deadline_ensure(&c->timer, px.now + limit, px.now);
	} else {
		client_close(c);
	}
}

/* Bytes (or the end) from the client, while reading is on. */
static void
client_read_ready(struct client *c)
{
	bool eof, more, got_data;
	int rc;

	if (c->resp == RESP_TUNNEL) {
		tunnel_client_readable(c, c->peer_closed);
		return;
	}
	if (client_bufs_take(c) == -1) {
		log_error("out of memory for a connection's buffers", NULL);
		client_close(c);
		return;
	}
	rc = transport_read(c->fd, c->ssl, c->in, c->peer_closed, &more, &got_data);
	if (rc == -1) {
		client_close(c);
		return;
	}
	eof = rc == 0;
	/* Come back for the rest: dropped with the event if c closes, ignored if it stops reading. */
	if (more)
		event_active(&c->ev, EV_READ, 0);
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
		if (c->resp == RESP_NONE && (c->req == REQ_BODY ||
		    (c->in != NULL && evbuffer_get_length(c->in) > 0))) {
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

/*
 * One step of a TLS client's handshake, on any readiness (OpenSSL may want
 * either direction): 1 when done (then the HTTP side starts as on a plain
 * connection, reading what came behind the handshake), 0 while it goes on,
 * -1 when it failed and c is gone.
 */
static int
client_handshake(struct client *c)
{
	enum metrics_tls_result result = METRICS_TLS_OTHER;
	const char *why = NULL;
	char ip[NET_ADDR_STRLEN];
	int rc = transport_handshake(c->ssl, &why, &result);

	if (rc == 0)
		return 0;
	handshake_count(c, result);
	if (rc == -2) {
		/* As nginx does: say so in plain HTTP, best effort (the socket is fresh and empty). */
		struct evbuffer *plain = evbuffer_new();
		char junk[4096];

		if (plain != NULL && http_error_response(plain, 400, NULL,
		    "This port speaks HTTPS (TLS): send the request over TLS", NULL, false,
		    false) == 0)
			(void)!evbuffer_write(plain, c->fd);
		if (plain != NULL)
			evbuffer_free(plain);
		/* Unread bytes at close() would make it a reset that can destroy the answer. */
		for (int i = 0; i < 4 && recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
			;
		shutdown(c->fd, SHUT_WR);
	}
	if (rc < 0) {
		log_debug("TLS handshake failed", "client", client_ip(c, ip), "listener",
		    px.cfg->listeners[c->listener].name, "result", metrics_tls_result_str(result),
		    "reason", why, NULL);
		client_close(c);
		return -1;
	}
	c->last_io_ns = px.now;
	return 1;
}

/*
 * The PROXY header ahead of everything on a proxy_protocol listener: looked
 * at in place (MSG_PEEK) until it is whole, then taken off the socket, so the
 * bytes behind it (a ClientHello, a request) stay for whoever reads next.
 * 1 when done (c's address is now the client's the header names), 0 while
 * more is to come, -1 when c was closed: no valid header.
 */
static int
client_proxy_header(struct client *c)
{
	uint8_t buf[PROXYPROTO_MAX];
	struct proxyproto_header h;
	const char *why = "closed before a whole header";
	char ip[NET_ADDR_STRLEN];
	enum metrics_pp_result r = METRICS_PP_INVALID;
	ssize_t n;
	int rc = -1;

	do
		n = recv(c->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	while (n == -1 && errno == EINTR);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) && !c->peer_closed)
		return 0;
	if (n == 0)
		r = METRICS_PP_MISSING;		/* a bare connect and close: no header at all */
	if (n > 0 && (rc = proxyproto_parse(buf, (size_t)n, &h, &why)) == 0) {
		/* An edge comes with more bytes; none will once the client closed. */
		if (!c->peer_closed)
			return 0;
		why = "closed before a whole header";
		rc = -1;
	}
	if (rc < 0) {
		if (rc == -1 && n > 0 && strcmp(why, "no PROXY header") == 0)
			r = METRICS_PP_MISSING;
		log_debug("connection without a valid PROXY header closed", "client",
		    client_ip(c, ip), "listener", px.cfg->listeners[c->listener].name, "reason", why,
		    NULL);
		proxy_header_count(c, r);
		client_close(c);
		return -1;
	}
	/* Taken off the socket: it is there, whole, as the peek saw it. */
	if (recv(c->fd, buf, (size_t)rc, MSG_DONTWAIT) != rc) {
		proxy_header_count(c, METRICS_PP_INVALID);
		client_close(c);
		return -1;
	}
	if (h.kind == PROXYPROTO_PROXY)
		net_addr_set(&c->addr, (const struct sockaddr *)&h.src);
	proxy_header_count(c, h.kind == PROXYPROTO_LOCAL ? METRICS_PP_LOCAL :
	    h.version == 1 ? METRICS_PP_V1 : METRICS_PP_V2);
	/* The TLS handshake or the request head has its own time from here. */
	c->last_io_ns = px.now;
	deadline_ensure(&c->timer, px.now + (c->handshaking ?
	    px.cfg->listeners[c->listener].tls.handshake_timeout_ns :
	    px.cfg->proxy.client_timeout_ns), px.now);
	return 1;
}

/*
 * The client's one event. An edge for a direction that is off (reading
 * paused, nothing blocked to write) is ignored: turning the direction on
 * looks again (client_set_reading()), or the next write that finds the
 * socket full waits for the next edge.
 */
static void
client_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	px.now = proc_now_ns();
	if (what & EV_CLOSED)
		c->peer_closed = true;	/* no later edge would say so */
	if (c->awaiting_proxy) {
		if (client_proxy_header(c) != 1)
			return;
		what |= EV_READ;	/* what came behind the header */
	}
	if (c->handshaking) {
		if (client_handshake(c) != 1)
			return;
		/* The edge that finished the handshake may have brought the request too. */
		what |= EV_READ;
	}
	if ((what & EV_WRITE) && c->writing && client_write_ready(c) == -1)
		return;
	if ((what & (EV_READ | EV_CLOSED)) && c->reading)
		client_read_ready(c);
}

/* ---- public ---- */

int
proxy_init(struct event_base *base, const struct config *cfg, struct shm *shm,
    struct tls_generation *tls, int worker)
{
	memset(&px, 0, sizeof(px));
	px.base = base;
	px.cfg = cfg;
	px.shm = shm;
	px.tls = tls;
	px.worker = worker;
	snprintf(px.worker_str, sizeof(px.worker_str), "%d", worker);
	LIST_INIT(&px.clients);
	TAILQ_INIT(&px.flushes);
	TAILQ_INIT(&px.sends);
	px.pool = pool_new(base, (uint32_t)cfg->nbackends, cfg->proxy.keepalive, upstream_read_cb,
	    upstream_write_cb, upstream_timer_cb);
	px.client_timers = deadlines_new(base, client_timer_cb);
	px.slot_seen = calloc(cfg->nbackends > 0 ? cfg->nbackends : 1, sizeof(*px.slot_seen));
	if (px.pool == NULL || px.client_timers == NULL || px.slot_seen == NULL) {
		pool_free(px.pool);
		deadlines_free(px.client_timers);
		free(px.slot_seen);
		px.slot_seen = NULL;
		return -1;
	}

	message_settings(&px.req_settings, false);
	message_settings(&px.resp_settings, true);
	return 0;
}

void
proxy_accept(int fd, const struct sockaddr *sa, int listener)
{
	struct client *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		log_error("out of memory for a new connection", NULL);
		close(fd);
		return;
	}
	c->fd = fd;
	c->listener = (int8_t)listener;
	c->metrics_only = listener == PROXY_METRICS_LISTENER;
	if (listener >= 0 && px.cfg->listeners[listener].proxy_protocol) {
		const struct config_listener *l = &px.cfg->listeners[listener];

		/* Only the L4 layer may say who the client is. */
		if (l->nproxy_from > 0 && !proxyproto_cidr_match(l->proxy_from, l->nproxy_from, sa)) {
			proxy_header_count(c, METRICS_PP_REFUSED);
			free(c);
			close(fd);
			return;
		}
		c->awaiting_proxy = true;
	}
	if (listener >= 0 && px.tls != NULL && tls_server_ctx(px.tls, (size_t)listener) != NULL) {
		if ((c->ssl = tls_server_new(px.tls, (size_t)listener)) == NULL ||
		    SSL_set_fd(c->ssl, fd) != 1) {
			log_error("out of memory for a TLS connection", NULL);
			/* A connection to the listener all the same: every one is counted. */
			metrics_record_tls_handshake(&px.shm->workers[px.worker], listener,
			    METRICS_TLS_VUNKNOWN, METRICS_TLS_OTHER);
			SSL_free(c->ssl);
			free(c);
			close(fd);
			return;
		}
		c->handshaking = true;
	}
	net_nodelay(fd);
	net_addr_set(&c->addr, sa);
	/* Edge-triggered both ways, with the client's close reported: see net_read(). */
	event_assign(&c->ev, px.base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_PERSIST | EV_ET,
	    client_io_cb, c);
	deadline_init(&c->timer, px.client_timers);
	px.now = proc_now_ns();
	c->last_io_ns = px.now;
	deadline_ensure(&c->timer, px.now + (c->handshaking && !c->awaiting_proxy ?
	    px.cfg->listeners[listener].tls.handshake_timeout_ns : px.cfg->proxy.client_timeout_ns),
	    px.now);
	LIST_INSERT_HEAD(&px.clients, c, entry);
	px.nclients++;
	atomic_fetch_add_explicit(&px.shm->workers[px.worker].connections, 1,
	    memory_order_relaxed);
	/* Registering looks at the socket: a request already there is reported at once. */
	c->reading = true;
	event_add(&c->ev, NULL);
}

/* Whether c waits for a request with nothing received, nothing pending and nothing to send. */
static bool
client_idle(const struct client *c)
{
	return c->req == REQ_HEAD && c->up == NULL &&
	    (c->in == NULL || (evbuffer_get_length(c->in) == 0 && evbuffer_get_length(c->out) == 0));
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
			upstream_flush(c);
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
	free(px.slot_seen);
	px.slot_seen = NULL;
	deadlines_free(px.client_timers);
	px.client_timers = NULL;
	while (px.nspare > 0)
		free(px.spare[--px.nspare]);
	while (px.nspare_bufs > 0)
		evbuffer_free(px.spare_bufs[--px.nspare_bufs]);
	while (px.nspare_rq > 0)
		free(px.spare_rq[--px.nspare_rq]);
}
