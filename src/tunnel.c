/*
 * A tunnel after a 101 (WebSocket and other upgrades): bytes both ways, read
 * only while the other side's output is below a high-water mark, half-closes
 * passed on, one idle timer (proxy.tunnel_timeout) for both directions. The
 * shape of nginx's ngx_http_upstream_process_upgraded(); the HTTP state
 * machine stays out of it.
 */
#include <errno.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "roundguard/client.h"
#include "roundguard/http.h"
#include "roundguard/log.h"
#include "roundguard/net.h"
#include "roundguard/pool.h"
#include "roundguard/shm.h"
#include "roundguard/transport.h"
#include "roundguard/tunnel.h"

/* Stop reading one side while this much waits to be written to the other. */
#define TUNNEL_HIGH	(64 * 1024)

/* Both directions closed and flushed, or one side broke: the tunnel is over. */
static int
tunnel_end(struct client *c)
{
	client_close(c);
	return -1;
}

static bool
tunnel_done(const struct client *c)
{
	return c->tun_client_eof && c->tun_backend_eof && evbuffer_get_length(c->out) == 0 &&
	    evbuffer_get_length(c->up->out) == 0;
}

/*
 * Write buf to fd until it is empty or the socket is full (then wev waits
 * for room). Once empty after the source's end of file, the end is passed on
 * with shutdown(SHUT_WR). -1 on a write error.
 */
static int
pump_write(int fd, struct ssl_st *ssl, struct evbuffer *buf, struct event *wev, bool *writing,
    bool src_eof, bool *shut, int64_t *last_io)
{
	int n;

	while (evbuffer_get_length(buf) > 0) {
		n = ssl != NULL ? transport_write(fd, ssl, buf) : net_write(fd, buf);
		if (n > 0) {
			*last_io = px.now;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			/* The client's event is always registered (wev NULL); a backend's is added. */
			if (!*writing && wev != NULL)
				event_add(wev, NULL);
			*writing = true;
			return 0;
		}
		return -1;
	}
	if (*writing && wev != NULL)
		event_del(wev);
	*writing = false;
	if (src_eof && !*shut) {
		*shut = true;
		/* Over TLS the end is a close_notify first; the peer may still send. */
		transport_close_notify(ssl);
		shutdown(fd, SHUT_WR);
	}
	return 0;
}

int
tunnel_client_flush(struct client *c)
{
	if (pump_write(c->fd, c->ssl, c->out, NULL, &c->writing, c->tun_backend_eof, &c->tun_client_shut,
	    &c->last_io_ns) == -1)
		return tunnel_end(c);
	/* Room again: the backend may be read again. */
	if (!c->tun_backend_eof && evbuffer_get_length(c->out) < TUNNEL_HIGH)
		upstream_set_reading(c, true);
	if (tunnel_done(c))
		return tunnel_end(c);
	return 0;
}

int
tunnel_backend_flush(struct client *c)
{
	struct upconn *u = c->up;

	if (pump_write(u->fd, u->ssl, u->out, &u->wev, &u->writing, c->tun_client_eof, &c->tun_backend_shut,
	    &c->last_io_ns) == -1)
		return tunnel_end(c);
	if (!c->tun_client_eof && evbuffer_get_length(u->out) < TUNNEL_HIGH)
		client_set_reading(c, true);
	if (tunnel_done(c))
		return tunnel_end(c);
	return 0;
}

/*
 * Read fd (while the other side's output dst is below the high-water mark)
 * and pass the bytes on to the socket to: between plain sockets straight
 * while dst is empty, else behind what dst holds (net_relay()); with TLS on
 * either side through dst. 1 while the side stays open, 0 at its end of
 * file, -1 on an error.
 */
static int
pump_read(int fd, struct ssl_st *ssl, int to, struct ssl_st *to_ssl, struct evbuffer *dst,
    bool closing, struct event *rev, uint64_t *count)
{
	size_t got, before = evbuffer_get_length(dst);
	bool more, got_data;
	int rc;

	if (ssl == NULL && to_ssl == NULL) {
		rc = net_relay(fd, to, dst, closing, &more, &got);
	} else {
		rc = transport_read(fd, ssl, dst, closing, &more, &got_data);
		got = evbuffer_get_length(dst) - before;
	}

	if (got > 0) {
		*count += got;
		/*
		 * Edge-triggered: come back for the rest (or the end behind the
		 * bytes), still reading to the end of file when the peer closed:
		 * the backend's EV_CLOSED edge is not reported twice.
		 */
		if (more || rc != 1)
			event_active(rev, closing ? EV_READ | EV_CLOSED : EV_READ, 0);
		return 1;
	}
	return rc;
}

void
tunnel_client_readable(struct client *c, bool closing)
{
	int rc = pump_read(c->fd, c->ssl, c->up->fd, c->up->ssl, c->up->out, closing, &c->ev,
	    &c->rq->tun_up_bytes);

	if (rc == -1) {
		tunnel_end(c);
		return;
	}
	c->last_io_ns = px.now;
	if (rc == 0) {
		c->tun_client_eof = true;
		client_set_reading(c, false);
	} else if (evbuffer_get_length(c->up->out) >= TUNNEL_HIGH) {
		client_set_reading(c, false);	/* back-pressure: the backend is slow */
	}
	tunnel_backend_flush(c);
}

void
tunnel_backend_readable(struct client *c, bool closing)
{
	uint64_t n = 0;
	int rc = pump_read(c->up->fd, c->up->ssl, c->fd, c->ssl, c->out, closing, &c->up->rev, &n);

	c->rq->resp_bytes += n;
	if (rc == -1) {
		tunnel_end(c);
		return;
	}
	c->last_io_ns = px.now;
	if (rc == 0) {
		c->tun_backend_eof = true;
		upstream_set_reading(c, false);
	} else if (evbuffer_get_length(c->out) >= TUNNEL_HIGH) {
		upstream_set_reading(c, false);	/* back-pressure: the client is slow */
	}
	tunnel_client_flush(c);
}

/*
 * A tunnel reads each side straight into the other's output: it keeps no
 * parsed heads, no input buffers, no retry copies, and of the request only
 * "METHOD target" for its access-log line and the counters in c->rq (an
 * idle tunnel costs its structs).
 */
static void
tunnel_trim(struct client *c)
{
	struct client_request *rq = c->rq;
	struct evbuffer *line = buf_get();

	head_put(rq->pc.head);
	rq->pc.head = NULL;
	head_put(c->up->pc.head);
	c->up->pc.head = NULL;
	buf_put(c->in);
	c->in = NULL;
	evbuffer_free(c->up->in);
	c->up->in = NULL;
	buf_put(rq->held);
	rq->held = NULL;
	buf_put(rq->replay);
	rq->replay = NULL;
	if (line != NULL && evbuffer_remove_buffer(rq->req_head, line, rq->line_len + 1) ==
	    (int)rq->line_len + 1) {
		buf_put(rq->req_head);	/* not empty: freed */
		rq->req_head = line;
	} else {
		buf_put(line);
	}
}

int
tunnel_start(struct client *c)
{
	char ip[NET_ADDR_STRLEN];
	struct upconn *u = c->up;
	const struct http_head *h = c->up->pc.head;
	const char *base = (const char *)evbuffer_pullup(u->in, (ev_ssize_t)u->fed);
	size_t before = evbuffer_get_length(c->out);

	if (http_write_response_head(c->out, base, h, px.cfg->backends[u->backend].addr.hostport,
	    HTTP_CONN_UPGRADE, false) == -1)
		return client_error(c, 500, NULL, NULL);
	evbuffer_drain(u->in, u->fed);
	u->fed = 0;
	/* What either side sent behind its head belongs to the new protocol already. */
	evbuffer_add_buffer(c->out, u->in);
	c->rq->resp_bytes += evbuffer_get_length(c->out) - before;
	c->rq->tun_up_bytes += evbuffer_get_length(c->in);
	evbuffer_add_buffer(u->out, c->in);
	c->rq->status = 101;
	c->resp = RESP_TUNNEL;
	tunnel_trim(c);
	c->rq->tun_started_ns = px.now;
	c->last_io_ns = px.now;
	atomic_fetch_add_explicit(&shm_stats(px.shm, (uint32_t)px.worker, u->backend)->tunnels[0], 1,
	    memory_order_relaxed);
	log_debug("tunnel open", "client", client_ip(c, ip), "backend",
	    px.cfg->backends[u->backend].addr.hostport, NULL);
	/* Only the client's timer runs now, as the tunnel's idle timer. */
	deadline_cancel(&u->timer);
	deadline_ensure(&c->timer, px.now + px.cfg->proxy.tunnel_timeout_ns, px.now);
	client_set_reading(c, true);
	upstream_set_reading(c, true);
	if (tunnel_client_flush(c) == -1)
		return -1;
	return tunnel_backend_flush(c);
}
