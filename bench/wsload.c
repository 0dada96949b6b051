/*
 * wsload: a WebSocket load generator for bench/run (see bench/README.md). libc only;
 * built with bench/loadlib.c, the helpers it shares with tlsload.
 *
 * Load (default): N connections each do the opening handshake (a fixed, valid
 * Sec-WebSocket-Key; the 101 and its Sec-WebSocket-Accept are checked), then
 * send one masked 16-byte text message and wait for its echo, again and again,
 * for -d seconds (or until -n messages in all). Every echo is compared byte for
 * byte with what was sent. Prints messages/s, latency p50/p99/max and the
 * errors by kind; with -P, also the CPU time the given processes took during
 * the measured window (from /proc/PID/stat), per message.
 *
 * Idle (-I): N connections do the handshake (or, with -g, one HTTP GET each),
 * then stay idle until SIGTERM/SIGINT or -d seconds; the number still open is
 * written to the -r file once they are all set up.
 *
 * usage: see usage() below. Exit status 0 when nothing failed, 1 on errors,
 * 2 on a bad option.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadlib.h"

/* RFC 6455 1.3's example key and the accept value it must produce. */
#define WS_KEY		"dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT	"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define MSG_LEN		16			/* payload of every message */
#define FRAME_LEN	(2 + 4 + MSG_LEN)	/* masked client frame: header, mask, payload */
#define IN_CAP		4096			/* a response head, or frames */
#define OUT_CAP		512

enum state {
	ST_CONNECTING,	/* connect() in progress */
	ST_HANDSHAKE,	/* request sent, reading the response head */
	ST_HTTP_BODY,	/* -g: reading the response body */
	ST_OPEN,	/* upgraded (or -g answered) */
	ST_CLOSING,	/* close frame sent, waiting for the server's end */
	ST_DEAD,
};

enum err {
	E_CONNECT,	/* socket/connect failed */
	E_HANDSHAKE,	/* not a valid 101 (or, with -g, not a 200), or closed during it */
	E_HS_TIMEOUT,	/* no handshake within -H seconds */
	E_MISMATCH,	/* an echo that differs from the message sent, or a protocol error */
	E_CLOSED,	/* the server closed or reset an open connection */
	E_TIMEOUT,	/* no echo within -T seconds */
	E_N,
};
static const char *const err_names[E_N] = {
	"connect", "handshake", "handshake-timeout", "mismatch", "closed", "timeout",
};

struct conn {
	int fd;
	uint8_t state;
	bool waiting;		/* a message is in flight */
	bool want_out;		/* EPOLLOUT registered */
	uint32_t id;
	uint64_t seq;
	uint32_t rng;
	int64_t sent_ns;
	size_t body_left;	/* -g: body bytes still to read */
	uint8_t expect[MSG_LEN];
	uint8_t msg[MSG_LEN];	/* the echo being reassembled (fragments) */
	size_t msg_len;
	int msg_op;		/* opcode of the message being reassembled, -1 when none */
	size_t in_len, out_len, out_off;
	uint8_t in[IN_CAP];
	uint8_t out[OUT_CAP];
};

struct thread {
	pthread_t tid;
	int index;
	int ep;
	struct conn *conns;
	size_t nconns;
	uint64_t msgs;		/* echoes received inside the window */
	uint64_t max_msgs;
	uint64_t errs[E_N];
	uint64_t upgraded;
	uint64_t setup_failed;	/* connections that died while being set up */
	uint64_t closed_clean;
	struct load_hist hist;
};

static struct {
	const char *host;
	int port;
	const char *path;
	const char *host_header;
	size_t conns;
	double seconds;
	uint64_t max_msgs;
	int threads;
	double hs_timeout;
	double msg_timeout;
	size_t concurrency;	/* handshakes in progress at once */
	bool idle;
	bool http;
	const char *ready_file;
	struct load_pids pids;
	bool quiet;
} opt = {
	.host = "127.0.0.1", .path = "/ws", .conns = 64, .seconds = 5, .threads = 1,
	.hs_timeout = 10, .msg_timeout = 5, .concurrency = 256,
};

const char *const load_prog = "wsload";	/* load_die()'s prefix */

static struct sockaddr_in addr;
static char request[1024];
static size_t request_len;
static volatile sig_atomic_t stop_flag;
static pthread_barrier_t barrier;
static int64_t window_start_ns, window_end_ns;
static volatile int window_open;	/* set by the main thread after the first barrier */
static int threads_done;		/* threads whose message phase has ended (atomic) */

static void
usage(FILE *f)
{
	fputs("usage: wsload -p PORT [-h HOST] [-u PATH] [-c CONNS] [-d SECONDS] [-n MESSAGES]\n"
	    "              [-t THREADS] [-C CONCURRENT] [-H SECONDS] [-T SECONDS] [-P PID,...] [-q]\n"
	    "       wsload -I -p PORT [-g] [-c CONNS] [-d SECONDS] [-r READYFILE] ...\n"
	    "  -p PORT        port on HOST (default 127.0.0.1)\n"
	    "  -u PATH        request target (default /ws; with -g: the GET's target)\n"
	    "  -c CONNS       connections (default 64)\n"
	    "  -d SECONDS     length of the measured window (default 5); with -I, how long to hold\n"
	    "  -n MESSAGES    stop after this many echoes in all (default: no limit)\n"
	    "  -t THREADS     threads, each with its share of the connections (default 1)\n"
	    "  -C CONCURRENT  connections being set up at once (default 256)\n"
	    "  -H SECONDS     time allowed for all handshakes (default 10)\n"
	    "  -T SECONDS     time allowed for one echo (default 5)\n"
	    "  -P PID,...     sample utime+stime of these processes over the window\n"
	    "  -I             idle: set the connections up, then hold them without traffic\n"
	    "  -g             with -I: one HTTP/1.1 GET PATH each (expects 200) instead of a handshake\n"
	    "  -r FILE        with -I: write the number of connections open to FILE when set up\n"
	    "  -q             only the WSLOAD summary line\n", f);
}

static void
parse_args(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "p:h:u:c:d:n:t:C:H:T:P:Igr:q")) != -1) {
		switch (c) {
		case 'p': opt.port = (int)load_parse_num(optarg, "-p", 1, 65535); break;
		case 'h': opt.host = optarg; break;
		case 'u': opt.path = optarg; break;
		case 'c': opt.conns = (size_t)load_parse_num(optarg, "-c", 1, 1000000); break;
		case 'd': opt.seconds = load_parse_num(optarg, "-d", 0.1, 86400); break;
		case 'n': opt.max_msgs = (uint64_t)load_parse_num(optarg, "-n", 1, 1e15); break;
		case 't': opt.threads = (int)load_parse_num(optarg, "-t", 1, 64); break;
		case 'C': opt.concurrency = (size_t)load_parse_num(optarg, "-C", 1, 100000); break;
		case 'H': opt.hs_timeout = load_parse_num(optarg, "-H", 0.1, 3600); break;
		case 'T': opt.msg_timeout = load_parse_num(optarg, "-T", 0.01, 3600); break;
		case 'P': load_parse_pids(&opt.pids, optarg); break;
		case 'I': opt.idle = true; break;
		case 'g': opt.http = true; break;
		case 'r': opt.ready_file = optarg; break;
		case 'q': opt.quiet = true; break;
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc || opt.port == 0) {
		usage(stderr);
		exit(2);
	}
	if (opt.http && !opt.idle)
		load_die("-g needs -I");
	if (opt.idle)
		opt.threads = 1;
	if ((size_t)opt.threads > opt.conns)
		opt.threads = (int)opt.conns;
}

/* ---------------------------------------------------------------- connections */

static bool
in_setup(const struct conn *c)
{
	return c->state == ST_CONNECTING || c->state == ST_HANDSHAKE || c->state == ST_HTTP_BODY;
}

/* What a failed read or write is: a failed handshake, or a connection closed under us. */
static enum err
io_err(const struct conn *c)
{
	return in_setup(c) ? E_HANDSHAKE : E_CLOSED;
}

static void
conn_error(struct thread *t, struct conn *c, enum err e)
{
	t->errs[e]++;
	if (in_setup(c))
		t->setup_failed++;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = ST_DEAD;
	c->waiting = false;
}

static void
set_events(struct thread *t, struct conn *c, bool out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };

	if (out == c->want_out)
		return;
	c->want_out = out;
	epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int
conn_start(struct thread *t, struct conn *c)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		conn_error(t, c, E_CONNECT);
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) == -1 && errno != EINPROGRESS) {
		conn_error(t, c, E_CONNECT);
		return -1;
	}
	c->state = ST_CONNECTING;
	c->want_out = true;
	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		conn_error(t, c, E_CONNECT);
		return -1;
	}
	return 0;
}

/* Queue bytes for c and write what the socket takes now. -1 when the connection died. */
static int
conn_send(struct thread *t, struct conn *c, const void *buf, size_t len)
{
	ssize_t n;

	if (c->out_len == c->out_off) {
		c->out_len = c->out_off = 0;
		do
			n = send(c->fd, buf, len, MSG_NOSIGNAL);
		while (n == -1 && errno == EINTR);
		if (n == (ssize_t)len)
			return 0;
		if (n == -1 && errno != EAGAIN) {
			conn_error(t, c, io_err(c));
			return -1;
		}
		if (n > 0) {
			buf = (const uint8_t *)buf + n;
			len -= (size_t)n;
		}
	}
	if (OUT_CAP - c->out_len < len) {
		conn_error(t, c, E_MISMATCH);	/* a server that reads nothing: give up on it */
		return -1;
	}
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
	set_events(t, c, true);
	return 0;
}

static int
conn_flush(struct thread *t, struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 0;
		if (n <= 0) {
			conn_error(t, c, io_err(c));
			return -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	set_events(t, c, false);
	return 0;
}

static uint32_t
xorshift(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* A masked client frame (RFC 6455 5.2) of opcode op; returns its length. */
static size_t
make_frame(struct conn *c, uint8_t *f, int op, const uint8_t *payload, size_t len)
{
	uint32_t m = xorshift(&c->rng);
	uint8_t mask[4] = { (uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16), (uint8_t)(m >> 24) };

	f[0] = (uint8_t)(0x80 | op);
	f[1] = (uint8_t)(0x80 | len);	/* len < 126 here */
	memcpy(f + 2, mask, 4);
	for (size_t i = 0; i < len; i++)
		f[6 + i] = payload[i] ^ mask[i & 3];
	return 6 + len;
}

static int
send_message(struct thread *t, struct conn *c, int64_t now)
{
	uint8_t frame[FRAME_LEN];
	char text[MSG_LEN + 1];

	/* 16 ASCII bytes, different for every message: connection id and sequence number. */
	snprintf(text, sizeof(text), "%05x-%010llx", c->id & 0xfffff,
	    (unsigned long long)(c->seq & 0xffffffffffULL));
	c->seq++;
	memcpy(c->expect, text, MSG_LEN);
	make_frame(c, frame, 0x1, c->expect, MSG_LEN);
	c->waiting = true;
	c->msg_len = 0;
	c->msg_op = -1;
	c->sent_ns = now;
	return conn_send(t, c, frame, FRAME_LEN);
}

/* A whole data message arrived. */
static int
message_done(struct thread *t, struct conn *c, int64_t now)
{
	if (!c->waiting || c->msg_op != 0x1 || c->msg_len != MSG_LEN ||
	    memcmp(c->msg, c->expect, MSG_LEN) != 0) {
		conn_error(t, c, E_MISMATCH);
		return -1;
	}
	c->waiting = false;
	if (!window_open || now >= window_end_ns || (t->max_msgs && t->msgs >= t->max_msgs))
		return 0;	/* outside the window or over -n: neither counted nor followed */
	t->msgs++;
	load_hist_record(&t->hist, now - c->sent_ns);
	if (t->max_msgs && t->msgs >= t->max_msgs)
		return 0;
	return send_message(t, c, now);
}

/* Parse the frames in c->in. -1 when the connection died. */
static int
parse_frames(struct thread *t, struct conn *c, int64_t now)
{
	size_t off = 0;

	while (c->in_len - off >= 2) {
		const uint8_t *f = c->in + off;
		int op = f[0] & 0x0f;
		bool fin = f[0] & 0x80;
		uint64_t len = f[1] & 0x7f;
		size_t hl = 2;

		if ((f[0] & 0x70) || (f[1] & 0x80)) {	/* RSV bits (no extension), or masked */
			conn_error(t, c, E_MISMATCH);
			return -1;
		}
		if (len == 126) {
			if (c->in_len - off < 4)
				break;
			len = (uint64_t)f[2] << 8 | f[3];
			hl = 4;
		} else if (len == 127) {
			if (c->in_len - off < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | f[2 + i];
			hl = 10;
		}
		if (len > IN_CAP - 10) {	/* far more than an echo of 16 bytes */
			conn_error(t, c, E_MISMATCH);
			return -1;
		}
		if (c->in_len - off < hl + len)
			break;
		const uint8_t *p = f + hl;

		switch (op) {
		case 0x0:	/* continuation */
		case 0x1:	/* text */
		case 0x2:	/* binary */
			if (c->state == ST_CLOSING)
				break;	/* an echo that crossed our close frame: not checked */
			if ((op == 0) == (c->msg_op == -1) || c->msg_len + len > MSG_LEN) {
				conn_error(t, c, E_MISMATCH);
				return -1;
			}
			if (op)
				c->msg_op = op;
			memcpy(c->msg + c->msg_len, p, len);
			c->msg_len += len;
			if (fin && message_done(t, c, now) == -1)
				return -1;
			break;
		case 0x8:	/* close */
			if (c->state == ST_CLOSING) {
				t->closed_clean++;
				close(c->fd);
				c->fd = -1;
				c->state = ST_DEAD;
			} else {
				conn_error(t, c, E_CLOSED);
			}
			return -1;
		case 0x9: {	/* ping: pong with the same payload */
			uint8_t pong[6 + 125];

			if (len > 125 || !fin) {
				conn_error(t, c, E_MISMATCH);
				return -1;
			}
			if (conn_send(t, c, pong, make_frame(c, pong, 0xA, p, len)) == -1)
				return -1;
			break;
		}
		case 0xA:	/* pong */
			break;
		default:
			conn_error(t, c, E_MISMATCH);
			return -1;
		}
		off += hl + len;
	}
	if (off) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	return 0;
}

/* Is there a header NAME whose value contains TOKEN (case-insensitive)? NAME NULL: any value. */
static bool
head_has(const char *head, const char *name, const char *token)
{
	size_t nl = strlen(name);
	const char *p = strstr(head, "\r\n");

	while (p && p[2] != '\r') {
		const char *line = p + 2, *eol = strstr(line, "\r\n");

		if (!eol)
			break;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;
			size_t tl;

			if (!token)
				return true;
			tl = strlen(token);
			for (; v + tl <= eol; v++)
				if (strncasecmp(v, token, tl) == 0)
					return true;
		}
		p = eol;
	}
	return false;
}

/* The exact value of header NAME is VALUE (surrounding white space aside). */
static bool
head_value_is(const char *head, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	const char *p = strstr(head, "\r\n");

	while (p && p[2] != '\r') {
		const char *line = p + 2, *eol = strstr(line, "\r\n");

		if (!eol)
			break;
		if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1, *e = eol;

			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			return (size_t)(e - v) == vl && memcmp(v, value, vl) == 0;
		}
		p = eol;
	}
	return false;
}

/* The response head is complete in c->in: check it. -1 when the connection died. */
static int
handshake_done(struct thread *t, struct conn *c, size_t head_len)
{
	char head[IN_CAP + 1];

	memcpy(head, c->in, head_len);
	head[head_len] = 0;
	if (opt.http) {
		const char *cl;

		if (strncmp(head, "HTTP/1.1 200 ", 13) != 0 || head_has(head, "Connection", "close")) {
			conn_error(t, c, E_HANDSHAKE);
			return -1;
		}
		c->body_left = 0;
		for (cl = strstr(head, "\r\n"); cl && cl[2] != '\r'; cl = strstr(cl + 2, "\r\n"))
			if (strncasecmp(cl + 2, "Content-Length:", 15) == 0)
				c->body_left = strtoul(cl + 17, NULL, 10);
		if (head_has(head, "Transfer-Encoding", NULL)) {
			conn_error(t, c, E_HANDSHAKE);	/* not expected from GET /live */
			return -1;
		}
	} else if (strncmp(head, "HTTP/1.1 101 ", 13) != 0 ||
	    !head_has(head, "Upgrade", "websocket") || !head_has(head, "Connection", "upgrade") ||
	    !head_value_is(head, "Sec-WebSocket-Accept", WS_ACCEPT) ||
	    head_has(head, "Sec-WebSocket-Extensions", NULL)) {
		conn_error(t, c, E_HANDSHAKE);
		return -1;
	}
	memmove(c->in, c->in + head_len, c->in_len - head_len);
	c->in_len -= head_len;
	if (opt.http) {
		size_t k = c->in_len < c->body_left ? c->in_len : c->body_left;

		c->body_left -= k;
		memmove(c->in, c->in + k, c->in_len - k);
		c->in_len -= k;
		if (c->in_len) {	/* bytes after the answer: not an echo of anything */
			conn_error(t, c, E_HANDSHAKE);
			return -1;
		}
		c->state = c->body_left ? ST_HTTP_BODY : ST_OPEN;
	} else {
		c->state = ST_OPEN;
	}
	if (c->state == ST_OPEN)
		t->upgraded++;
	return 0;
}

/* One epoll event on c. */
static void
conn_event(struct thread *t, struct conn *c, uint32_t ev, int64_t now)
{
	if (c->state == ST_DEAD)
		return;
	if (c->state == ST_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err) {
			conn_error(t, c, E_CONNECT);
			return;
		}
		c->state = ST_HANDSHAKE;
		c->want_out = true;	/* registered for EPOLLOUT only: make set_events() switch */
		set_events(t, c, false);
		conn_send(t, c, request, request_len);
		return;
	}
	if ((ev & EPOLLOUT) && conn_flush(t, c) == -1)
		return;
	if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		return;
	for (;;) {
		size_t space = IN_CAP - c->in_len;
		ssize_t n;

		if (space == 0) {
			conn_error(t, c, c->state == ST_HANDSHAKE ? E_HANDSHAKE : E_MISMATCH);
			return;
		}
		n = recv(c->fd, c->in + c->in_len, space, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			if (c->state == ST_CLOSING) {	/* the end after our close frame */
				t->closed_clean++;
				close(c->fd);
				c->fd = -1;
				c->state = ST_DEAD;
			} else {
				conn_error(t, c, io_err(c));
			}
			return;
		}
		c->in_len += (size_t)n;
		if (c->state == ST_HANDSHAKE) {
			uint8_t *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);

			if (!e) {
				if ((size_t)n < space)
					return;
				continue;
			}
			if (handshake_done(t, c, (size_t)(e + 4 - c->in)) == -1)
				return;
			if (c->state == ST_OPEN && !opt.http && !window_open && c->in_len) {
				conn_error(t, c, E_MISMATCH);	/* a frame before we sent any */
				return;
			}
		}
		if (c->state == ST_HTTP_BODY) {
			size_t k = c->in_len < c->body_left ? c->in_len : c->body_left;

			c->body_left -= k;
			memmove(c->in, c->in + k, c->in_len - k);
			c->in_len -= k;
			if (c->body_left == 0) {
				c->state = ST_OPEN;
				t->upgraded++;
			}
			if (c->in_len) {
				conn_error(t, c, E_HANDSHAKE);
				return;
			}
			if ((size_t)n < space)
				return;
			continue;
		}
		if (c->state == ST_OPEN && opt.http && c->in_len) {
			conn_error(t, c, E_CLOSED);	/* an idle keep-alive connection got bytes */
			return;
		}
		if ((c->state == ST_OPEN || c->state == ST_CLOSING) && !opt.http &&
		    parse_frames(t, c, now) == -1)
			return;
		if ((size_t)n < space)
			return;	/* a short read: the socket is empty (level-triggered anyway) */
	}
}

/* Handshakes of this thread's connections, at most its share of -C at once. */
static void
setup_phase(struct thread *t)
{
	struct epoll_event evs[512];
	size_t next = 0, per = opt.concurrency / (size_t)opt.threads;
	int64_t deadline = load_now_ns() + (int64_t)(opt.hs_timeout * 1e9);

	if (per == 0)
		per = 1;
	for (;;) {
		/* Start more connections up to the cap of those being set up. */
		while (next < t->nconns && next - t->upgraded - t->setup_failed < per) {
			t->conns[next].state = ST_CONNECTING;	/* a failure counts as one in set-up */
			conn_start(t, &t->conns[next++]);
		}
		if (next - t->upgraded - t->setup_failed == 0 && next == t->nconns)
			return;
		if (stop_flag || load_now_ns() >= deadline)
			break;
		int n = epoll_wait(t->ep, evs, 512, 50);
		int64_t now = load_now_ns();

		for (int i = 0; i < n; i++)
			conn_event(t, evs[i].data.ptr, evs[i].events, now);
	}
	for (size_t i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (in_setup(c))
			conn_error(t, c, E_HS_TIMEOUT);
		else if (i >= next)
			t->errs[E_HS_TIMEOUT]++;	/* never started */
	}
}

static void
message_phase(struct thread *t)
{
	struct epoll_event evs[512];
	int64_t now = load_now_ns(), last_scan = now, tmo = (int64_t)(opt.msg_timeout * 1e9);

	size_t open_n = 0;

	for (size_t i = 0; i < t->nconns; i++)
		if (t->conns[i].state == ST_OPEN && send_message(t, &t->conns[i], now) == 0)
			open_n++;
	while (!stop_flag && open_n > 0) {
		int wait_ms = (int)((window_end_ns - now) / 1000000) + 1;

		if (wait_ms > 100)
			wait_ms = 100;
		int n = epoll_wait(t->ep, evs, 512, wait_ms);

		now = load_now_ns();
		if (now >= window_end_ns)
			break;
		for (int i = 0; i < n; i++)
			conn_event(t, evs[i].data.ptr, evs[i].events, now);
		if (t->max_msgs && t->msgs >= t->max_msgs)
			break;
		if (now - last_scan > 100000000) {
			last_scan = now;
			open_n = 0;
			for (size_t i = 0; i < t->nconns; i++) {
				struct conn *c = &t->conns[i];

				if (c->state == ST_OPEN && c->waiting && now - c->sent_ns > tmo)
					conn_error(t, c, E_TIMEOUT);
				open_n += c->state == ST_OPEN;
			}
		}
	}
}

/* Send a close frame on every open connection and wait (1 s at most) for the servers' ends. */
static void
close_phase(struct thread *t)
{
	struct epoll_event evs[512];
	uint8_t frame[8];
	const uint8_t code[2] = { 0x03, 0xe8 };	/* 1000, normal closure */
	int64_t deadline = load_now_ns() + 1000000000;
	size_t left = 0;

	for (size_t i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->state != ST_OPEN)
			continue;
		c->state = ST_CLOSING;
		if (conn_send(t, c, frame, make_frame(c, frame, 0x8, code, 2)) == 0)
			left++;
	}
	while (left && load_now_ns() < deadline) {
		int n = epoll_wait(t->ep, evs, 512, 50);

		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (c->state != ST_CLOSING)
				continue;
			conn_event(t, c, evs[i].events, 0);
			if (c->state != ST_CLOSING)
				left--;
		}
	}
	for (size_t i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
	}
}

static void *
thread_main(void *arg)
{
	struct thread *t = arg;

	setup_phase(t);
	pthread_barrier_wait(&barrier);	/* every thread has set up its connections */
	pthread_barrier_wait(&barrier);	/* the main thread has opened the window */
	message_phase(t);
	__atomic_add_fetch(&threads_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ---------------------------------------------------------------- idle mode */

static void
write_ready(size_t n)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", opt.ready_file);
	if (!(f = fopen(tmp, "w")) || fprintf(f, "%zu\n", n) < 0 || fclose(f) != 0 ||
	    rename(tmp, opt.ready_file) != 0)
		fprintf(stderr, "wsload: %s: %s\n", opt.ready_file, strerror(errno));
}

static size_t
count_open(struct thread *t)
{
	size_t n = 0;

	for (size_t i = 0; i < t->nconns; i++)
		n += t->conns[i].state == ST_OPEN;
	return n;
}

static int
idle_main(struct thread *t)
{
	struct epoll_event evs[512];
	int64_t start = load_now_ns(), end, settle;
	size_t open_n;
	uint64_t errs = 0;

	setup_phase(t);
	/* A server that closes them at once (a limit reached) shows within moments. */
	settle = load_now_ns() + 300000000;
	while (!stop_flag && load_now_ns() < settle) {
		int n = epoll_wait(t->ep, evs, 512, 50);

		for (int i = 0; i < n; i++)
			conn_event(t, evs[i].data.ptr, evs[i].events, load_now_ns());
	}
	open_n = count_open(t);
	if (opt.ready_file)
		write_ready(open_n);
	end = start + (int64_t)(opt.seconds * 1e9);
	while (!stop_flag && load_now_ns() < end) {
		int n = epoll_wait(t->ep, evs, 512, 200);

		for (int i = 0; i < n; i++)
			conn_event(t, evs[i].data.ptr, evs[i].events, load_now_ns());
	}
	for (int e = 0; e < E_N; e++)
		errs += t->errs[e];
	printf("WSLOAD mode=idle-%s conns=%zu open=%zu still_open=%zu errors=%llu",
	    opt.http ? "http" : "ws", opt.conns, open_n, count_open(t), (unsigned long long)errs);
	for (int e = 0; e < E_N; e++)
		printf(" %s=%llu", err_names[e], (unsigned long long)t->errs[e]);
	printf("\n");
	fflush(stdout);
	return errs ? 1 : 0;
}

/* ---------------------------------------------------------------- main */

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

int
main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct rlimit rl;
	struct thread *ts;
	struct conn *conns;
	uint64_t msgs = 0, errs[E_N] = { 0 }, upgraded = 0, clean = 0, nerr = 0;
	struct load_hist hist;
	int64_t cpu0 = 0, cpu1 = 0;
	double secs;

	parse_args(argc, argv);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Bounded whatever happens: set-up, the window, closing, and a margin. */
	alarm((unsigned)(opt.hs_timeout + opt.seconds + 1 + 30));

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < opt.conns + 32) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= opt.conns + 32 ?
		    opt.conns + 32 : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < opt.conns + 32)
		load_die("%zu connections need %zu descriptors, the limit is %llu: "
		    "use several processes", opt.conns, opt.conns + 32, (unsigned long long)rl.rlim_cur);

	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1)
		load_die("-h: not an IPv4 address: %s", opt.host);
	if (opt.http)
		request_len = (size_t)snprintf(request, sizeof(request),
		    "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", opt.path, opt.host, opt.port);
	else
		request_len = (size_t)snprintf(request, sizeof(request),
		    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
		    opt.path, opt.host, opt.port);
	if (request_len >= sizeof(request))
		load_die("-u: too long");

	conns = calloc(opt.conns, sizeof(*conns));
	ts = calloc((size_t)opt.threads, sizeof(*ts));
	if (!conns || !ts)
		load_die("out of memory");
	for (size_t i = 0; i < opt.conns; i++) {
		conns[i].fd = -1;
		conns[i].state = ST_DEAD;
		conns[i].id = (uint32_t)i;
		conns[i].rng = (uint32_t)(i * 2654435761u) | 1;
		conns[i].msg_op = -1;
	}
	/* Contiguous shares: thread k gets connections [k*N/T, (k+1)*N/T). */
	for (int k = 0; k < opt.threads; k++) {
		size_t a = opt.conns * (size_t)k / (size_t)opt.threads;
		size_t b = opt.conns * (size_t)(k + 1) / (size_t)opt.threads;

		ts[k].index = k;
		ts[k].conns = conns + a;
		ts[k].nconns = b - a;
		ts[k].ep = epoll_create1(EPOLL_CLOEXEC);
		if (ts[k].ep == -1 || load_hist_init(&ts[k].hist) == -1)
			load_die("epoll_create1/calloc: %s", strerror(errno));
		if (opt.max_msgs)
			ts[k].max_msgs = (opt.max_msgs + (uint64_t)k) / (uint64_t)opt.threads;
		if (opt.max_msgs && ts[k].max_msgs == 0)
			ts[k].max_msgs = 1;
	}
	if (opt.idle)
		return idle_main(&ts[0]);

	pthread_barrier_init(&barrier, NULL, (unsigned)opt.threads + 1);
	for (int k = 0; k < opt.threads; k++)
		if (pthread_create(&ts[k].tid, NULL, thread_main, &ts[k]) != 0)
			load_die("pthread_create failed");
	pthread_barrier_wait(&barrier);	/* all set up */
	cpu0 = load_proc_cpu_us(&opt.pids);
	window_start_ns = load_now_ns();
	window_end_ns = window_start_ns + (int64_t)(opt.seconds * 1e9);
	window_open = 1;
	pthread_barrier_wait(&barrier);	/* go */
	/* Sample the CPU time at the window's end (or when every thread stopped early). */
	for (;;) {
		int64_t left = window_end_ns - load_now_ns();
		struct timespec ts_sleep = { 0, left < 2000000 ? (long)left : 2000000 };

		if (left <= 0 || stop_flag ||
		    __atomic_load_n(&threads_done, __ATOMIC_ACQUIRE) == opt.threads)
			break;
		nanosleep(&ts_sleep, NULL);
	}
	cpu1 = load_proc_cpu_us(&opt.pids);
	int64_t stopped = load_now_ns();

	secs = (double)((stopped < window_end_ns ? stopped : window_end_ns) - window_start_ns) / 1e9;
	for (int k = 0; k < opt.threads; k++)
		pthread_join(ts[k].tid, NULL);
	for (int k = 0; k < opt.threads; k++) {
		/* Each thread's last echoes may end the window a little before the others. */
		close_phase(&ts[k]);
	}
	if (load_hist_init(&hist) == -1)
		load_die("out of memory");
	for (int k = 0; k < opt.threads; k++) {
		msgs += ts[k].msgs;
		upgraded += ts[k].upgraded;
		clean += ts[k].closed_clean;
		for (int e = 0; e < E_N; e++)
			errs[e] += ts[k].errs[e];
		load_hist_merge(&hist, &ts[k].hist);
	}
	for (int e = 0; e < E_N; e++)
		nerr += errs[e];

	uint64_t p50 = load_hist_percentile(&hist, msgs, 0.50);
	uint64_t p99 = load_hist_percentile(&hist, msgs, 0.99);
	double rate = secs > 0 ? (double)msgs / secs : 0;
	char a[32], b[32], c[32];

	if (!opt.quiet) {
		load_fmt_us(a, sizeof(a), p50);
		load_fmt_us(b, sizeof(b), p99);
		load_fmt_us(c, sizeof(c), hist.max_us);
		printf("wsload: ws://%s:%d%s, %zu connections (%llu upgraded), %d thread(s), "
		    "%d-byte text messages, %.2fs window\n", opt.host, opt.port, opt.path, opt.conns,
		    (unsigned long long)upgraded, opt.threads, MSG_LEN, secs);
		printf("  messages %llu, %.1f/s; latency p50 %s, p99 %s, max %s\n",
		    (unsigned long long)msgs, rate, a, b, c);
		printf("  errors %llu:", (unsigned long long)nerr);
		for (int e = 0; e < E_N; e++)
			printf(" %s %llu%s", err_names[e], (unsigned long long)errs[e],
			    e + 1 < E_N ? "," : "");
		printf("; closed cleanly %llu\n", (unsigned long long)clean);
		if (opt.pids.n)
			printf("  CPU of the %d given processes in the window: %.3fs, %.2f us/message\n",
			    opt.pids.n, (double)(cpu1 - cpu0) / 1e6,
			    msgs ? (double)(cpu1 - cpu0) / (double)msgs : 0.0);
	}
	printf("WSLOAD conns=%zu upgraded=%llu seconds=%.3f messages=%llu rate=%.1f p50_us=%llu "
	    "p99_us=%llu max_us=%llu errors=%llu", opt.conns, (unsigned long long)upgraded, secs,
	    (unsigned long long)msgs, rate, (unsigned long long)p50, (unsigned long long)p99,
	    (unsigned long long)hist.max_us, (unsigned long long)nerr);
	for (int e = 0; e < E_N; e++)
		printf(" %s=%llu", err_names[e], (unsigned long long)errs[e]);
	printf(" closed_clean=%llu cpu_us=%lld\n", (unsigned long long)clean,
	    opt.pids.n ? (long long)(cpu1 - cpu0) : -1LL);
	fflush(stdout);
	return nerr ? 1 : 0;
}
