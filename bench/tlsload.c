/*
 * tlsload: a TLS load generator for bench/run (see bench/README.md). libc + libssl only;
 * built with bench/loadlib.c, the helpers it shares with wsload.
 *
 * Full (-m full): each of N connection slots opens a new connection, does a
 * full TLS handshake (no session is ever offered), sends "GET PATH HTTP/1.1"
 * with "Connection: close", reads the whole response (Content-Length, or up to
 * the close) and starts the next connection, for -d seconds (or until -n
 * requests in all). One request is one handshake, so requests/s are
 * handshakes/s.
 *
 * Resume (-m resume): the same, but every slot first gets a session on one
 * connection of its own (before the window), and each later connection offers
 * the newest session the slot got (a TLS 1.3 ticket, or a TLS 1.2 ticket or
 * session ID). Each handshake counts as resumed or full (SSL_session_reused).
 *
 * Keep-alive (-m keepalive): every slot sets up one connection (handshake and
 * one GET, before the window), then sends GET after GET on it.
 *
 * The server certificate is not verified (unless -A), but one must be
 * presented. Prints requests/s, handshakes full and resumed, latency p50/p99/max
 * and the errors by kind; with -P, also the CPU time the given processes took
 * during the measured window (from /proc/PID/stat).
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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "loadlib.h"

#define HEAD_CAP	8192	/* a response head */
#define READ_CAP	16384	/* one TLS record's plaintext at most */

enum mode {
	M_FULL,		/* a new connection and a full handshake per request */
	M_RESUME,	/* a new connection per request, resuming the slot's session */
	M_KEEPALIVE,	/* requests one after the other on one connection per slot */
};
static const char *const mode_names[] = { "full", "resume", "keepalive" };

enum state {
	ST_IDLE,	/* no connection */
	ST_CONNECTING,	/* connect() in progress */
	ST_HANDSHAKE,	/* TLS handshake in progress */
	ST_WRITING,	/* sending the request */
	ST_READING,	/* reading the response */
	ST_PARKED,	/* keep-alive: set up, waiting for the window */
};

enum hs {
	HS_NONE,	/* no handshake to count (keep-alive after the first request) */
	HS_FULL,
	HS_RESUMED,
};

enum phase {
	PH_SETUP,	/* priming sessions (resume) or connections (keep-alive) */
	PH_LOAD,	/* the measured window */
	PH_DONE,
};

enum err {
	E_CONNECT,	/* socket/connect failed */
	E_HANDSHAKE,	/* the TLS handshake failed, or the connection closed during it */
	E_NOCERT,	/* no server certificate presented */
	E_RESPONSE,	/* not a response this reads (bad head, chunked, bytes past its end) */
	E_STATUS,	/* a status other than 2xx */
	E_CLOSED,	/* closed or reset before the whole response */
	E_TIMEOUT,	/* no whole response within -T seconds */
	E_N,
};
static const char *const err_names[E_N] = {
	"connect", "handshake", "nocert", "response", "status", "closed", "timeout",
};

struct conn {
	int fd;
	SSL *ssl;
	SSL_SESSION *sess;	/* -m resume: the newest session this slot got */
	struct thread *t;
	uint8_t state;
	uint8_t hs;		/* enum hs of the request under way */
	uint32_t events;	/* what epoll waits for on fd */
	int64_t start_ns;	/* connect() (full, resume) or the request's write (keep-alive) */
	int64_t retry_ns;	/* after a failure: not started again before this */
	bool head_done;
	bool until_close;	/* no Content-Length: the body ends with the connection */
	bool close_after;	/* the server will close after this response */
	size_t body_left;
	size_t in_len;
	char in[HEAD_CAP + 1];
};

struct thread {
	pthread_t tid;
	int ep;
	enum phase phase;
	struct conn *conns;
	size_t nconns;
	bool idle_pending;	/* some slot failed and waits to be started again */
	uint64_t reqs;		/* whole responses inside the window */
	uint64_t max_reqs;
	uint64_t full, resumed;	/* handshakes of the connections of those requests */
	uint64_t primed;	/* slots set up before the window */
	uint64_t errs[E_N];
	struct load_hist hist;
	char info[160];		/* the TLS parameters of this thread's first handshake */
	char first_err[256];	/* what went wrong first */
	char buf[READ_CAP];
};

static struct {
	const char *host;
	int port;
	const char *path;
	const char *sni;
	const char *cafile;
	enum mode mode;
	int version;		/* 0: TLS 1.2 or 1.3, else TLS1_2_VERSION or TLS1_3_VERSION */
	size_t conns;
	double seconds;
	uint64_t max_reqs;
	int threads;
	double setup_timeout;
	double req_timeout;
	struct load_pids pids;
	bool quiet;
} opt = {
	.host = "127.0.0.1", .path = "/", .mode = M_FULL, .conns = 64, .seconds = 5,
	.threads = 1, .setup_timeout = 10, .req_timeout = 5,
};

const char *const load_prog = "tlsload";	/* load_die()'s prefix */

static struct sockaddr_in addr;
static SSL_CTX *ctx;
static char request[1024];
static size_t request_len;
static volatile sig_atomic_t stop_flag;
static pthread_barrier_t barrier;
static int64_t window_start_ns, window_end_ns;
static volatile int window_open;	/* set by the main thread after the first barrier */
static int threads_done;		/* threads whose load phase has ended (atomic) */

static void
usage(FILE *f)
{
	fputs("usage: tlsload -p PORT [-m full|resume|keepalive] [-h HOST] [-u PATH] [-s SNI]\n"
	    "               [-V 1.2|1.3] [-A CAFILE] [-c CONNS] [-d SECONDS] [-n REQUESTS]\n"
	    "               [-t THREADS] [-H SECONDS] [-T SECONDS] [-P PID,...] [-q]\n"
	    "  -p PORT        port on HOST (default 127.0.0.1)\n"
	    "  -m MODE        full: a new connection and a full handshake per request (default);\n"
	    "                 resume: a new connection per request resuming the slot's last session;\n"
	    "                 keepalive: one connection per slot, request after request\n"
	    "  -u PATH        request target (default /)\n"
	    "  -s NAME        server name (SNI) to send, also the Host header (default: none,\n"
	    "                 Host HOST:PORT)\n"
	    "  -V 1.2|1.3     only this TLS version (default: 1.2 or 1.3, as negotiated)\n"
	    "  -A CAFILE      verify the server certificate against CAFILE (and -s or HOST);\n"
	    "                 default: not verified, but one must be presented\n"
	    "  -c CONNS       connection slots, each with one request in flight (default 64)\n"
	    "  -d SECONDS     length of the measured window (default 5)\n"
	    "  -n REQUESTS    stop after this many requests in all (default: no limit)\n"
	    "  -t THREADS     threads, each with its share of the slots (default 1)\n"
	    "  -H SECONDS     time allowed for setting up (resume, keepalive; default 10)\n"
	    "  -T SECONDS     time allowed for one request, handshake included (default 5)\n"
	    "  -P PID,...     sample utime+stime of these processes over the window\n"
	    "  -q             only the TLSLOAD summary line\n", f);
}

static void
parse_args(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "p:m:h:u:s:V:A:c:d:n:t:H:T:P:q")) != -1) {
		switch (c) {
		case 'p': opt.port = (int)load_parse_num(optarg, "-p", 1, 65535); break;
		case 'm':
			if (strcmp(optarg, "full") == 0)
				opt.mode = M_FULL;
			else if (strcmp(optarg, "resume") == 0)
				opt.mode = M_RESUME;
			else if (strcmp(optarg, "keepalive") == 0)
				opt.mode = M_KEEPALIVE;
			else
				load_die("-m: full, resume or keepalive, not %s", optarg);
			break;
		case 'h': opt.host = optarg; break;
		case 'u': opt.path = optarg; break;
		case 's': opt.sni = optarg; break;
		case 'V':
			if (strcmp(optarg, "1.2") == 0)
				opt.version = TLS1_2_VERSION;
			else if (strcmp(optarg, "1.3") == 0)
				opt.version = TLS1_3_VERSION;
			else
				load_die("-V: 1.2 or 1.3, not %s", optarg);
			break;
		case 'A': opt.cafile = optarg; break;
		case 'c': opt.conns = (size_t)load_parse_num(optarg, "-c", 1, 100000); break;
		case 'd': opt.seconds = load_parse_num(optarg, "-d", 0.1, 86400); break;
		case 'n': opt.max_reqs = (uint64_t)load_parse_num(optarg, "-n", 1, 1e15); break;
		case 't': opt.threads = (int)load_parse_num(optarg, "-t", 1, 64); break;
		case 'H': opt.setup_timeout = load_parse_num(optarg, "-H", 0.1, 3600); break;
		case 'T': opt.req_timeout = load_parse_num(optarg, "-T", 0.01, 3600); break;
		case 'P': load_parse_pids(&opt.pids, optarg); break;
		case 'q': opt.quiet = true; break;
		default: usage(stderr); exit(2);
		}
	}
	if (optind != argc || opt.port == 0) {
		usage(stderr);
		exit(2);
	}
	if ((size_t)opt.threads > opt.conns)
		opt.threads = (int)opt.conns;
}

/* ---------------------------------------------------------------- connections */

static bool
in_flight(const struct conn *c)
{
	return c->state != ST_IDLE && c->state != ST_PARKED;
}

static void
set_events(struct thread *t, struct conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return;
	c->events = events;
	epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* End c's connection; with clean, send close_notify first (a session of a connection
 * freed without it is no longer resumable in OpenSSL). */
static void
conn_close(struct conn *c, bool clean)
{
	if (c->ssl) {
		if (clean) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);
		}
		ERR_clear_error();
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = ST_IDLE;
	c->events = 0;
}

/* Count error e on c, note the first one, and end the connection (the slot starts again
 * 10 ms later: a refused connect does not make a busy loop). */
static void
conn_fail(struct thread *t, struct conn *c, enum err e, const char *why)
{
	t->errs[e]++;
	if (!t->first_err[0]) {
		unsigned long code = ERR_peek_last_error();
		char ssl_err[160] = "";

		if (code)
			ERR_error_string_n(code, ssl_err, sizeof(ssl_err));
		snprintf(t->first_err, sizeof(t->first_err), "%s: %s%s%s", err_names[e], why,
		    ssl_err[0] ? ": " : "", ssl_err);
	}
	conn_close(c, false);
	c->retry_ns = load_now_ns() + 10000000;
	t->idle_pending = true;
}

static void
conn_start(struct thread *t, struct conn *c, int64_t now)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		conn_fail(t, c, E_CONNECT, strerror(errno));
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) == -1 && errno != EINPROGRESS) {
		conn_fail(t, c, E_CONNECT, strerror(errno));
		return;
	}
	c->state = ST_CONNECTING;
	c->start_ns = now;
	c->hs = HS_NONE;
	c->events = EPOLLOUT;
	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1)
		conn_fail(t, c, E_CONNECT, strerror(errno));
}

/* The TCP connection is up: start the TLS client on it. -1 when that failed. */
static int
tls_begin(struct thread *t, struct conn *c)
{
	if (!(c->ssl = SSL_new(ctx)) || !SSL_set_fd(c->ssl, c->fd)) {
		conn_fail(t, c, E_HANDSHAKE, "SSL_new failed");
		return -1;
	}
	SSL_set_connect_state(c->ssl);
	SSL_set_app_data(c->ssl, c);
	if (opt.sni && !SSL_set_tlsext_host_name(c->ssl, opt.sni)) {
		conn_fail(t, c, E_HANDSHAKE, "SSL_set_tlsext_host_name failed");
		return -1;
	}
	if (opt.cafile && !(opt.sni ? SSL_set1_host(c->ssl, opt.sni) :
	    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), opt.host))) {
		conn_fail(t, c, E_HANDSHAKE, "setting the name to verify failed");
		return -1;
	}
	if (opt.mode == M_RESUME && c->sess && !SSL_set_session(c->ssl, c->sess)) {
		conn_fail(t, c, E_HANDSHAKE, "SSL_set_session failed");
		return -1;
	}
	c->state = ST_HANDSHAKE;
	return 0;
}

/* Resume mode: keep the newest session (TLS 1.3 tickets arrive after the handshake). */
static int
new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct conn *c = SSL_get_app_data(ssl);

	if (!c)
		return 0;
	if (c->sess)
		SSL_SESSION_free(c->sess);
	c->sess = sess;
	return 1;	/* the reference is ours now */
}

/* After an SSL call returned r <= 0: wait for the socket if that is all it needs (true),
 * else false. */
static bool
ssl_wait(struct thread *t, struct conn *c, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		set_events(t, c, EPOLLIN);
		return true;
	case SSL_ERROR_WANT_WRITE:
		set_events(t, c, EPOLLOUT);
		return true;
	default:
		return false;
	}
}

/* The handshake is complete: check the certificate, note how it went. -1 when c failed. */
static int
handshake_done(struct thread *t, struct conn *c)
{
	X509 *cert = SSL_get0_peer_certificate(c->ssl);

	if (!cert) {
		conn_fail(t, c, E_NOCERT, "no server certificate");
		return -1;
	}
	c->hs = SSL_session_reused(c->ssl) ? HS_RESUMED : HS_FULL;
	if (!t->info[0]) {
		EVP_PKEY *key = X509_get0_pubkey(cert);
		int group = SSL_get_negotiated_group(c->ssl);
		const char *gname = group > 0 ? OBJ_nid2sn(group & ~TLSEXT_nid_unknown) : NULL;

		snprintf(t->info, sizeof(t->info), "tls=%s cipher=%s group=%s cert=%s-%d",
		    SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
		    gname && !(group & TLSEXT_nid_unknown) ? gname : "-",
		    key ? EVP_PKEY_get0_type_name(key) : "-", key ? EVP_PKEY_get_bits(key) : 0);
	}
	return 0;
}

/* The response head is complete in c->in (head_len bytes): check it. -1 when c failed. */
static int
head_done(struct thread *t, struct conn *c, size_t head_len)
{
	char *line, *eol;
	int status;
	bool cl = false, http10 = strncmp(c->in, "HTTP/1.0 ", 9) == 0;

	c->in[head_len] = 0;
	if ((strncmp(c->in, "HTTP/1.1 ", 9) != 0 && !http10) ||
	    sscanf(c->in + 9, "%3d", &status) != 1) {
		conn_fail(t, c, E_RESPONSE, "not an HTTP/1.x status line");
		return -1;
	}
	if (status < 200 || status > 299) {
		conn_fail(t, c, E_STATUS, "not a 2xx status");
		return -1;
	}
	c->close_after = http10 || opt.mode != M_KEEPALIVE;
	c->body_left = 0;
	for (line = strstr(c->in, "\r\n") + 2; (eol = strstr(line, "\r\n")) && eol != line;
	    line = eol + 2) {
		*eol = 0;
		if (strncasecmp(line, "Content-Length:", 15) == 0) {
			c->body_left = strtoul(line + 15, NULL, 10);
			cl = true;
		} else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
			conn_fail(t, c, E_RESPONSE, "Transfer-Encoding is not read here");
			return -1;
		} else if (strncasecmp(line, "Connection:", 11) == 0) {
			if (strcasestr(line + 11, "close"))
				c->close_after = true;
			else if (http10 && strcasestr(line + 11, "keep-alive"))
				c->close_after = opt.mode != M_KEEPALIVE;
		}
	}
	c->until_close = !cl && status != 204;
	if (c->until_close)
		c->close_after = true;
	c->head_done = true;
	return 0;
}

/* Take n bytes of the response. 1 when it is complete, 0 when more is needed, -1 when c
 * failed. */
static int
response_bytes(struct thread *t, struct conn *c, const char *p, size_t n)
{
	if (!c->head_done) {
		size_t k = HEAD_CAP - c->in_len < n ? HEAD_CAP - c->in_len : n;
		char *end;

		memcpy(c->in + c->in_len, p, k);
		c->in_len += k;
		if (!(end = memmem(c->in, c->in_len, "\r\n\r\n", 4))) {
			if (c->in_len == HEAD_CAP) {
				conn_fail(t, c, E_RESPONSE, "response head too long");
				return -1;
			}
			return 0;
		}
		size_t head_len = (size_t)(end + 4 - c->in), old = c->in_len - k;

		if (head_done(t, c, head_len) == -1)
			return -1;
		p += head_len - old;	/* the body bytes of this read */
		n -= head_len - old;
	}
	if (c->until_close)
		return 0;
	if (n > c->body_left && opt.mode == M_KEEPALIVE && !c->close_after) {
		conn_fail(t, c, E_RESPONSE, "bytes after the response");
		return -1;
	}
	c->body_left -= n < c->body_left ? n : c->body_left;
	return c->body_left == 0;
}

static bool
may_start(const struct thread *t, int64_t now)
{
	return t->phase == PH_LOAD && !stop_flag && now < window_end_ns &&
	    !(t->max_reqs && t->reqs >= t->max_reqs);
}

/* A whole response arrived: count it inside the window, then the slot's next step. */
static void
response_done(struct thread *t, struct conn *c, int64_t now)
{
	if (t->phase == PH_SETUP) {
		t->primed++;
		if (opt.mode == M_KEEPALIVE && !c->close_after) {
			c->state = ST_PARKED;
			set_events(t, c, EPOLLIN);	/* to notice a close before the window */
		} else {
			conn_close(c, true);
		}
		return;
	}
	if (may_start(t, now)) {
		t->reqs++;
		load_hist_record(&t->hist, now - c->start_ns);
		t->full += c->hs == HS_FULL;
		t->resumed += c->hs == HS_RESUMED;
	}
	c->hs = HS_NONE;
	if (opt.mode == M_KEEPALIVE && !c->close_after && may_start(t, now)) {
		c->state = ST_WRITING;
		c->start_ns = now;
		return;
	}
	conn_close(c, true);
	if (may_start(t, now))
		conn_start(t, c, now);
}

/* Run c's state machine until it waits for its socket. */
static void
conn_drive(struct thread *t, struct conn *c, int64_t now)
{
	for (;;) {
		int r, k;

		ERR_clear_error();
		switch (c->state) {
		case ST_HANDSHAKE:
			r = SSL_do_handshake(c->ssl);
			if (r != 1) {
				if (!ssl_wait(t, c, r))
					conn_fail(t, c, E_HANDSHAKE, "handshake failed");
				return;
			}
			if (handshake_done(t, c) == -1)
				return;
			c->state = ST_WRITING;
			break;
		case ST_WRITING:
			r = SSL_write(c->ssl, request, (int)request_len);
			if (r <= 0) {
				if (!ssl_wait(t, c, r))
					conn_fail(t, c, E_CLOSED, "writing the request failed");
				return;
			}
			c->state = ST_READING;
			c->head_done = false;
			c->in_len = 0;
			break;
		case ST_READING:
			r = SSL_read(c->ssl, t->buf, sizeof(t->buf));
			if (r <= 0) {
				if (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN && c->head_done &&
				    c->until_close) {
					response_done(t, c, now);
					break;
				}
				if (!ssl_wait(t, c, r))
					conn_fail(t, c, E_CLOSED, "closed before the whole response");
				return;
			}
			if ((k = response_bytes(t, c, t->buf, (size_t)r)) == -1)
				return;
			if (k == 1)
				response_done(t, c, now);
			break;
		default:
			return;
		}
	}
}

/* One epoll event on c. */
static void
conn_event(struct thread *t, struct conn *c, int64_t now)
{
	if (c->state == ST_PARKED) {	/* the server closed it (or sent something) */
		conn_close(c, false);
		return;
	}
	if (c->state == ST_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err) {
			conn_fail(t, c, E_CONNECT, strerror(err ? err : errno));
			return;
		}
		if (tls_begin(t, c) == -1)
			return;
	}
	conn_drive(t, c, now);
}

/* Fail the requests older than -T, restart the slots that failed. */
static void
housekeeping(struct thread *t, int64_t now, bool scan_timeouts)
{
	int64_t tmo = (int64_t)(opt.req_timeout * 1e9);

	if (scan_timeouts)
		for (size_t i = 0; i < t->nconns; i++) {
			struct conn *c = &t->conns[i];

			if (in_flight(c) && now - c->start_ns > tmo)
				conn_fail(t, c, E_TIMEOUT, "no whole response within -T");
		}
	if (!t->idle_pending || !may_start(t, now))
		return;
	t->idle_pending = false;
	for (size_t i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->state != ST_IDLE)
			continue;
		if (now < c->retry_ns)
			t->idle_pending = true;
		else
			conn_start(t, c, now);
	}
}

/* Resume: one connection per slot for its first session. Keep-alive: one connection
 * per slot, one request on it. Within -H seconds. */
static void
setup_phase(struct thread *t)
{
	struct epoll_event evs[512];
	int64_t now = load_now_ns(), last = now;
	int64_t deadline = now + (int64_t)(opt.setup_timeout * 1e9);

	t->phase = PH_SETUP;
	if (opt.mode == M_FULL)
		return;
	for (size_t i = 0; i < t->nconns; i++)
		conn_start(t, &t->conns[i], now);
	for (;;) {
		size_t busy = 0;

		for (size_t i = 0; i < t->nconns; i++)
			busy += in_flight(&t->conns[i]);
		if (busy == 0 || stop_flag)
			break;
		if (now >= deadline) {
			for (size_t i = 0; i < t->nconns; i++)
				if (in_flight(&t->conns[i]))
					conn_fail(t, &t->conns[i], E_TIMEOUT, "not set up within -H");
			break;
		}
		int n = epoll_wait(t->ep, evs, 512, 50);

		now = load_now_ns();
		for (int i = 0; i < n; i++)
			conn_event(t, evs[i].data.ptr, now);
		if (now - last > 100000000) {
			last = now;
			housekeeping(t, now, true);
		}
	}
}

static void
load_phase(struct thread *t)
{
	struct epoll_event evs[512];
	int64_t now = load_now_ns(), last = now;

	t->phase = PH_LOAD;
	for (size_t i = 0; i < t->nconns; i++) {
		struct conn *c = &t->conns[i];

		if (c->state == ST_PARKED) {
			c->state = ST_WRITING;
			c->start_ns = now;
			conn_drive(t, c, now);
		} else if (c->state == ST_IDLE) {
			conn_start(t, c, now);
		}
	}
	while (!stop_flag) {
		int wait_ms = (int)((window_end_ns - now) / 1000000) + 1;

		if (t->max_reqs && t->reqs >= t->max_reqs)
			break;
		if (wait_ms > 100)
			wait_ms = 100;
		if (t->idle_pending && wait_ms > 10)
			wait_ms = 10;	/* slots that failed start again soon, without spinning */
		int n = epoll_wait(t->ep, evs, 512, wait_ms);

		now = load_now_ns();
		if (now >= window_end_ns)
			break;
		for (int i = 0; i < n; i++)
			conn_event(t, evs[i].data.ptr, now);
		bool scan = now - last > 100000000;

		if (scan)
			last = now;
		housekeeping(t, now, scan);
	}
	t->phase = PH_DONE;
	for (size_t i = 0; i < t->nconns; i++)	/* requests still under way: not counted */
		conn_close(&t->conns[i], false);
}

static void *
thread_main(void *arg)
{
	struct thread *t = arg;

	setup_phase(t);
	pthread_barrier_wait(&barrier);	/* every thread has set up its slots */
	pthread_barrier_wait(&barrier);	/* the main thread has opened the window */
	load_phase(t);
	__atomic_add_fetch(&threads_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* ---------------------------------------------------------------- main */

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void
ctx_init(void)
{
	if (!(ctx = SSL_CTX_new(TLS_client_method())))
		load_die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, opt.version ? opt.version : TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, opt.version ? opt.version : TLS1_3_VERSION);
	/* A server that closes without close_notify after a body without Content-Length. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	if (opt.cafile) {
		if (!SSL_CTX_load_verify_locations(ctx, opt.cafile, NULL))
			load_die("-A: cannot load %s", opt.cafile);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (opt.mode == M_RESUME) {
		/* Sessions are kept per slot by new_session(), not in OpenSSL's cache. */
		SSL_CTX_set_session_cache_mode(ctx,
		    SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	}
}

int
main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct rlimit rl;
	struct thread *ts;
	struct conn *conns;
	uint64_t reqs = 0, full = 0, resumed = 0, primed = 0, errs[E_N] = { 0 }, nerr = 0;
	struct load_hist hist;
	int64_t cpu0 = 0, cpu1 = 0;
	static const char no_info[] = "tls=- cipher=- group=- cert=-";
	const char *info = no_info, *first_err = NULL;
	double secs;

	parse_args(argc, argv);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* Bounded whatever happens: set-up, the window, and a margin. */
	alarm((unsigned)(opt.setup_timeout + opt.seconds + 1 + 30));

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < opt.conns + 32) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= opt.conns + 32 ?
		    opt.conns + 32 : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1)
		load_die("-h: not an IPv4 address: %s", opt.host);
	if (opt.sni)
		request_len = (size_t)snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\n"
		    "Host: %s:%d\r\n%s\r\n", opt.path, opt.sni, opt.port,
		    opt.mode == M_KEEPALIVE ? "" : "Connection: close\r\n");
	else
		request_len = (size_t)snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\n"
		    "Host: %s:%d\r\n%s\r\n", opt.path, opt.host, opt.port,
		    opt.mode == M_KEEPALIVE ? "" : "Connection: close\r\n");
	if (request_len >= sizeof(request))
		load_die("-u or -s: too long");
	ctx_init();

	conns = calloc(opt.conns, sizeof(*conns));
	ts = calloc((size_t)opt.threads, sizeof(*ts));
	if (!conns || !ts)
		load_die("out of memory");
	/* Contiguous shares: thread k gets slots [k*N/T, (k+1)*N/T). */
	for (int k = 0; k < opt.threads; k++) {
		size_t a = opt.conns * (size_t)k / (size_t)opt.threads;
		size_t b = opt.conns * (size_t)(k + 1) / (size_t)opt.threads;

		ts[k].conns = conns + a;
		ts[k].nconns = b - a;
		for (size_t i = a; i < b; i++) {
			conns[i].fd = -1;
			conns[i].t = &ts[k];
		}
		ts[k].ep = epoll_create1(EPOLL_CLOEXEC);
		if (ts[k].ep == -1 || load_hist_init(&ts[k].hist) == -1)
			load_die("epoll_create1/calloc: %s", strerror(errno));
		if (opt.max_reqs)
			ts[k].max_reqs = (opt.max_reqs + (uint64_t)k) / (uint64_t)opt.threads;
		if (opt.max_reqs && ts[k].max_reqs == 0)
			ts[k].max_reqs = 1;
	}

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
	if (load_hist_init(&hist) == -1)
		load_die("out of memory");
	for (int k = 0; k < opt.threads; k++) {
		reqs += ts[k].reqs;
		full += ts[k].full;
		resumed += ts[k].resumed;
		primed += ts[k].primed;
		for (int e = 0; e < E_N; e++)
			errs[e] += ts[k].errs[e];
		load_hist_merge(&hist, &ts[k].hist);
		if (ts[k].info[0] && info == no_info)
			info = ts[k].info;
		if (ts[k].first_err[0] && !first_err)
			first_err = ts[k].first_err;
	}
	for (int e = 0; e < E_N; e++)
		nerr += errs[e];

	uint64_t p50 = load_hist_percentile(&hist, reqs, 0.50);
	uint64_t p99 = load_hist_percentile(&hist, reqs, 0.99);
	double rate = secs > 0 ? (double)reqs / secs : 0;
	double hs_rate = secs > 0 ? (double)(full + resumed) / secs : 0;
	double resumption = full + resumed ? (double)resumed / (double)(full + resumed) : 0;
	char a[32], b[32], c[32];

	if (!opt.quiet) {
		load_fmt_us(a, sizeof(a), p50);
		load_fmt_us(b, sizeof(b), p99);
		load_fmt_us(c, sizeof(c), hist.max_us);
		printf("tlsload: https://%s:%d%s%s%s, -m %s, %zu connections, %d thread(s), %.2fs window\n",
		    opt.host, opt.port, opt.path, opt.sni ? " SNI " : "", opt.sni ? opt.sni : "",
		    mode_names[opt.mode], opt.conns, opt.threads, secs);
		printf("  %s; certificate %s\n", info, opt.cafile ? "verified" : "not verified");
		printf("  requests %llu, %.1f/s; latency p50 %s, p99 %s, max %s\n",
		    (unsigned long long)reqs, rate, a, b, c);
		printf("  handshakes %llu, %.1f/s: full %llu, resumed %llu (resumption %.1f%%)%s\n",
		    (unsigned long long)(full + resumed), hs_rate, (unsigned long long)full,
		    (unsigned long long)resumed, resumption * 100,
		    opt.mode == M_FULL ? "" : opt.mode == M_RESUME ?
		    "; sessions primed before the window" : "; connections set up before the window");
		printf("  errors %llu:", (unsigned long long)nerr);
		for (int e = 0; e < E_N; e++)
			printf(" %s %llu%s", err_names[e], (unsigned long long)errs[e],
			    e + 1 < E_N ? "," : "\n");
		if (opt.pids.n)
			printf("  CPU of the %d given processes in the window: %.3fs, %.2f us/request\n",
			    opt.pids.n, (double)(cpu1 - cpu0) / 1e6,
			    reqs ? (double)(cpu1 - cpu0) / (double)reqs : 0.0);
	}
	if (first_err)
		fprintf(stderr, "tlsload: first error: %s\n", first_err);
	printf("TLSLOAD mode=%s conns=%zu threads=%d seconds=%.3f requests=%llu rate=%.1f "
	    "handshakes=%llu hs_rate=%.1f full=%llu resumed=%llu resumption=%.4f primed=%llu "
	    "p50_us=%llu p99_us=%llu max_us=%llu errors=%llu", mode_names[opt.mode], opt.conns,
	    opt.threads, secs, (unsigned long long)reqs, rate, (unsigned long long)(full + resumed),
	    hs_rate, (unsigned long long)full, (unsigned long long)resumed, resumption,
	    (unsigned long long)primed, (unsigned long long)p50, (unsigned long long)p99,
	    (unsigned long long)hist.max_us, (unsigned long long)nerr);
	for (int e = 0; e < E_N; e++)
		printf(" %s=%llu", err_names[e], (unsigned long long)errs[e]);
	printf(" %s cpu_us=%lld\n", info, opt.pids.n ? (long long)(cpu1 - cpu0) : -1LL);
	fflush(stdout);
	return nerr ? 1 : 0;
}
