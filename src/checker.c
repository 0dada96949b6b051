/* The health checker process: probes all backends concurrently each interval, publishes the live bits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "roundguard/checker.h"
#include "roundguard/discover.h"
#include "roundguard/log.h"
#include "roundguard/parse.h"
#include "roundguard/proc.h"
#include "roundguard/proxyproto.h"
#include "roundguard/schedule.h"
#include "roundguard/tls.h"
#include "roundguard/transport.h"

#define NS_PER_SEC		INT64_C(1000000000)
/* One recv(2) into a stack buffer of this size; the probe itself keeps no buffer. */
#define CHECK_READ_CHUNK	4096
/* A response head that has not ended within this many bytes is a bad response. */
#define CHECK_HEAD_MAX		(4 * CHECK_READ_CHUNK)
/* Descriptors kept free for everything else when the checker raises its limit. */
#define CHECK_SPARE_FDS		32

#define CHECK_REQUEST_FMT \
	"GET %s HTTP/1.1\r\n" \
	"Host: %s\r\n" \
	"User-Agent: roundguard-health-check\r\n" \
	"Connection: close\r\n" \
	"\r\n"
/* Large enough for the longest path and host:port the config types can hold. */
#define CHECK_REQUEST_MAX \
	(CONFIG_PATH_MAX + sizeof(((struct backend_url *)0)->hostport) + sizeof(CHECK_REQUEST_FMT))

enum probe_phase {
	PROBE_IDLE,
	PROBE_CONNECTING,
	PROBE_HANDSHAKING,	/* https backends: TLS before the request */
	PROBE_SENDING,
	PROBE_READING,
};

/* One backend: the probe in flight (if any) and the hysteresis kept across rounds. */
struct probe {
	uint32_t index;			/* in cfg->backends and the shm arrays */
	const char *hostport;
	enum probe_phase phase;
	int fd;
	SSL *ssl;			/* an https backend's, while probing */
	struct event io;		/* write while connecting and sending, then read */
	struct event timer;		/* health.timeout from the start of the probe */
	llhttp_t parser;
	size_t sent;			/* request bytes written so far */
	size_t head_bytes;		/* response bytes read so far */
	int status;			/* final status once the head is complete */
	int error;			/* errno behind a connect or socket failure, 0 if none */
	const char *detail;		/* llhttp's reason for a bad response, OpenSSL's for TLS */
	int64_t started_ns;

	struct check_state st;
	enum admin_state admin;		/* as last seen in the segment */
	bool checked;			/* false until the first probe has decided */
	bool admin_ready_pending;	/* made ready from maint: ramps when its check passes */
	int64_t since_ns;		/* start of the current state, for was_up/was_down */
};

static struct {
	const struct config *cfg;
	struct shm *shm;
	struct tls_generation *tls;
	struct event_base *base;
	struct event *round_ev;
	struct event *sigterm, *sigint;
	struct event *sigusr1;		/* the master changed an administrative state or weight */
	struct event *ramp_ev;		/* republish while a slow start ramps */
	uint16_t *sched;		/* the schedule being built (sched_cap entries) */
	uint32_t *weights;		/* per backend, in tenths */
	int64_t *scratch;		/* schedule_build()'s, 2 per backend */
	struct probe *probes;
	uint32_t nprobes;
	uint32_t running;		/* probes started and not yet done */
	bool starting;			/* inside round_start(): it finishes the round itself */
	bool first_pass_done;
	int ready_fd;
	int64_t started_ns;
	struct timeval timeout_tv;
	llhttp_settings_t settings;
} checker;

static void probe_done(struct probe *p, enum check_result result, int status);

const char *
check_result_str(enum check_result r)
{
	switch (r) {
	case CHECK_OK: return "ok";
	case CHECK_CONNECT_REFUSED: return "connect refused";
	case CHECK_CONNECT_FAILED: return "connect failed";
	case CHECK_TIMEOUT: return "timeout";
	case CHECK_RESET: return "connection reset";
	case CHECK_BAD_RESPONSE: return "bad response";
	case CHECK_STATUS: return "unexpected status";
	case CHECK_RESOLVE: return "resolve failed";
	case CHECK_TLS: return "TLS handshake failed";
	case CHECK_NONE: return "not checked";
	}
	return "unknown";
}

/*
 * Consecutive counts keep running across a transition (an up backend after
 * rise successes has successes >= rise); they saturate instead of wrapping.
 */
bool
check_state_apply(struct check_state *st, bool ok, uint32_t rise, uint32_t fall)
{
	if (ok) {
		st->failures = 0;
		if (st->successes < UINT32_MAX)
			st->successes++;
		if (!st->up && st->successes >= rise) {
			st->up = true;
			return true;
		}
	} else {
		st->successes = 0;
		if (st->failures < UINT32_MAX)
			st->failures++;
		if (st->up && st->failures >= fall) {
			st->up = false;
			return true;
		}
	}
	return false;
}

static uint32_t
threshold(int v)
{
	return v < 1 ? 1 : (uint32_t)v;
}

/* The log reason for a failed probe: the result's name, or "status 500". */
static const char *
probe_reason(char *buf, size_t buflen, enum check_result result, int status)
{
	if (result != CHECK_STATUS)
		return check_result_str(result);
	snprintf(buf, buflen, "status %d", status);
	return buf;
}

/* Stop the probe's events and close its socket; safe on an idle probe. */
static void
probe_close(struct probe *p)
{
	event_del(&p->io);
	event_del(&p->timer);
	if (p->ssl != NULL) {
		/* close_notify: the next probe resumes this session. */
		transport_close_notify(p->ssl);
		SSL_free(p->ssl);
		p->ssl = NULL;
	}
	if (p->fd != -1) {
		close(p->fd);
		p->fd = -1;
	}
	p->phase = PROBE_IDLE;
}

/* Probe-by-probe outcome: successes at trace, failures at debug. */
static void
probe_log_result(const struct probe *p, enum check_result result, int status, int64_t now)
{
	enum log_level level = result == CHECK_OK ? LOG_LEVEL_TRACE : LOG_LEVEL_DEBUG;
	char st[16], dur[32];
	const char *err = NULL;

	if (!log_enabled(level))
		return;
	snprintf(st, sizeof(st), "%d", status);
	format_duration(dur, sizeof(dur), now - p->started_ns);
	if (p->error != 0)
		err = strerror(p->error);
	else if (result == CHECK_BAD_RESPONSE || result == CHECK_TLS)
		err = p->detail;
	log_msg(level, "health check", "backend", p->hostport, "result", check_result_str(result),
	    "status", status != 0 ? st : NULL, "error", err, "duration", dur, NULL);
}

/* How long a state lasted, as people read it: "4m12s", "12.345s", "250ms". */
static void
format_state_duration(char *buf, size_t buflen, int64_t ns)
{
	int64_t unit = ns >= 60 * NS_PER_SEC ? NS_PER_SEC : NS_PER_SEC / 1000;

	format_duration(buf, buflen, (ns + unit / 2) / unit * unit);
}

/* Log a transition once; first is the first decision after start-up. */
static void
probe_log_transition(const struct probe *p, enum check_result result, int status, int64_t now,
    bool first)
{
	char reason[32], dur[32];
	const char *err = NULL;

	format_state_duration(dur, sizeof(dur), now - p->since_ns);
	if (p->st.up) {
		if (first)
			log_debug("backend up", "backend", p->hostport, NULL);
		else
			log_info("backend up", "backend", p->hostport, "was_down", dur, NULL);
		return;
	}
	if (result == CHECK_CONNECT_FAILED && p->error != 0)
		err = strerror(p->error);
	else if (result == CHECK_TLS)
		err = p->detail;	/* "certificate has expired", "hostname mismatch", ... */
	log_warn("backend down", "backend", p->hostport,
	    "reason", probe_reason(reason, sizeof(reason), result, status),
	    "was_up", first ? NULL : dur, "error", err, NULL);
}

/* The first complete round: tell the master, which reports ready after it. */
static void
round_done(void)
{
	char buf[16];
	ssize_t n;

	atomic_fetch_add_explicit(&checker.shm->hdr->check_passes, 1, memory_order_relaxed);
	/* Ready once discovered names have answered (or failed) and their backends were checked. */
	if (checker.first_pass_done || !discover_settled() || checker.running > 0)
		return;
	checker.first_pass_done = true;
	if (log_enabled(LOG_LEVEL_DEBUG)) {
		snprintf(buf, sizeof(buf), "%u", shm_live_count(checker.shm));
		log_debug("first health-check pass done", "live", buf, NULL);
	}
	if (checker.ready_fd != -1) {
		do
			n = write(checker.ready_fd, "", 1);
		while (n == -1 && errno == EINTR);
		close(checker.ready_fd);
		checker.ready_fd = -1;
	}
}

/*
 * Turn live bits, administrative states and weights (slow start applied)
 * into a schedule, and publish it: after every change of any of them, and
 * while a ramp goes on. Backends a worker took out (passive) stay in it:
 * the pick skips them until the next probe decides.
 */
static void
publish(void)
{
	struct shm *shm = checker.shm;
	uint64_t seq = atomic_load_explicit(&shm->hdr->admin_seq, memory_order_acquire);
	int64_t now = proc_now_ns(), slow = checker.cfg->control.slow_start_ns;
	bool ramping = false;
	size_t len;

	for (uint32_t i = 0; i < checker.nprobes; i++) {
		struct shm_backend *sb = &shm->backends[i];
		int64_t since = atomic_load_explicit(&sb->ramp_since_ns, memory_order_relaxed);
		uint32_t w = 0;

		/* The live bit, not the checker's own view: a worker may have cleared it. */
		if (shm_is_live(shm, i) && checker.probes[i].admin == ADMIN_READY) {
			/* A discovered backend's weight is its SRV record's (or its entry's). */
			w = atomic_load_explicit(checker.cfg->backends[i].discover != CONFIG_DISCOVER_NONE ?
			    &sb->slot_weight : &sb->weight, memory_order_relaxed);
			if (since > 0 && w > 0 && now - since < slow) {
				w = schedule_ramp(w, since, now, slow);
				ramping = true;
			} else {
				w *= SCHEDULE_RAMP_STEPS;
				if (since > 0)
					atomic_store_explicit(&sb->ramp_since_ns, 0, memory_order_relaxed);
			}
		}
		checker.weights[i] = w;
		atomic_store_explicit(&sb->effective, w, memory_order_relaxed);
	}
	len = schedule_build(checker.weights, checker.nprobes, checker.sched, shm->hdr->sched_cap,
	    checker.scratch);
	shm_publish_schedule(shm, checker.sched, (uint32_t)len, seq);
	if (ramping && !evtimer_pending(checker.ramp_ev, NULL)) {
		/* Fifty steps over the ramp, between 100 ms and 1 s apart. */
		int64_t step = slow / 50;
		struct timeval tv;

		step = step < 100000000 ? 100000000 : step > 1000000000 ? 1000000000 : step;
		tv = proc_timeval(step);
		evtimer_add(checker.ramp_ev, &tv);
	}
}

static void
ramp_cb(evutil_socket_t fd, short what, void *arg)
{
	publish();
}

/* A slow start begins (when configured): a backend came up, was added, or was made ready. */
static void
ramp_start(struct probe *p, int64_t now)
{
	if (checker.cfg->control.slow_start_ns > 0)
		atomic_store_explicit(&checker.shm->backends[p->index].ramp_since_ns, now,
		    memory_order_relaxed);
}

/* Is the backend to be checked: not a free or draining slot of a discovered name? */
static bool
probe_wanted(const struct probe *p)
{
	enum shm_slot st = shm_slot_state(checker.shm, p->index);

	return st == SHM_SLOT_STATIC || st == SHM_SLOT_ACTIVE;
}

/*
 * Every probe path ends here, exactly once: close the socket, apply the
 * outcome, publish it, log a transition, and finish the round after its last
 * probe.
 */
static void
probe_done(struct probe *p, enum check_result result, int status)
{
	struct shm_backend *sb = &checker.shm->backends[p->index];
	bool ok = result == CHECK_OK;
	bool first = !p->checked;
	bool changed, was_live;
	int64_t now = proc_now_ns();

	probe_close(p);
	if (p->admin == ADMIN_MAINT || !probe_wanted(p)) {
		/* Put in maintenance while it ran: its outcome is nobody's business. */
		shm_set_live(checker.shm, p->index, false);
		if (--checker.running == 0 && !checker.starting)
			round_done();
		return;
	}
	if (first) {
		/*
		 * The first probe decides at once, whatever rise says: the master
		 * reports ready after the first pass, and a backend that answers
		 * then must take traffic from the start. Later results go through
		 * the rise/fall hysteresis.
		 */
		p->checked = true;
		p->st.up = ok;
		p->st.successes = ok ? 1 : 0;
		p->st.failures = ok ? 0 : 1;
		changed = true;
	} else {
		changed = check_state_apply(&p->st, ok, threshold(checker.cfg->health.rise),
		    threshold(checker.cfg->health.fall));
	}

	atomic_fetch_add_explicit(ok ? &sb->checks_ok : &sb->checks_failed, 1,
	    memory_order_relaxed);
	atomic_store_explicit(&sb->last_result, (uint32_t)result, memory_order_relaxed);
	atomic_store_explicit(&sb->last_status, status > 0 ? (uint32_t)status : 0,
	    memory_order_relaxed);
	atomic_store_explicit(&sb->successes, p->st.successes, memory_order_relaxed);
	atomic_store_explicit(&sb->failures, p->st.failures, memory_order_relaxed);

	probe_log_result(p, result, status, now);
	if (changed) {
		probe_log_transition(p, result, status, now, first);
		/* A backend down from the start has been down since the checker started. */
		if (p->st.up || !first)
			p->since_ns = now;
		atomic_store_explicit(&sb->changed_ns, p->since_ns, memory_order_relaxed);
		/*
		 * Up again, or up for the first time after a reload added it (-1):
		 * a slow start. Not at the very start, when all come up at once.
		 */
		if (p->st.up && (!first || atomic_load_explicit(&sb->ramp_since_ns,
		    memory_order_relaxed) == -1 || p->admin_ready_pending))
			ramp_start(p, now);
		p->admin_ready_pending = false;
	}
	/*
	 * Every time, not only on transitions: a worker may have cleared the bit
	 * after a failed connect, and only the checker sets it again. Last, so
	 * that a reader who sees the bit (acquire) sees the state above.
	 */
	was_live = shm_is_live(checker.shm, p->index);
	shm_set_live(checker.shm, p->index, p->st.up);
	/* Also when a worker had taken it out and this probe puts it back. */
	if (changed || was_live != p->st.up)
		publish();

	if (--checker.running == 0 && !checker.starting)
		round_done();
}

static enum check_result
connect_result(int error)
{
	return error == ECONNREFUSED ? CHECK_CONNECT_REFUSED : CHECK_CONNECT_FAILED;
}

/* Switch the io event to other events (it must not be pending while reassigned). */
static int
probe_watch(struct probe *p, short what, event_callback_fn cb)
{
	event_del(&p->io);
	event_assign(&p->io, checker.base, p->fd, what | EV_PERSIST, cb, p);
	return event_add(&p->io, NULL);
}

static int
on_headers_complete(llhttp_t *parser)
{
	struct probe *p = parser->data;
	int status = llhttp_get_status_code(parser);

	/* Interim answers (100, 103) come before the real one; 101 is final. */
	if (status >= 100 && status < 200 && status != 101)
		return 0;
	p->status = status;
	/* The body does not matter: stop here, llhttp_execute() returns HPE_PAUSED. */
	return HPE_PAUSED;
}

static ssize_t probe_tls_read(struct probe *p, char *buf, size_t len);

/* Read and parse until the response head is complete; every exit but EAGAIN ends the probe. */
static void
probe_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	char buf[CHECK_READ_CHUNK];
	llhttp_errno_t e;
	ssize_t n;

	for (;;) {
		if (p->ssl != NULL) {
			n = probe_tls_read(p, buf, sizeof(buf));
			if (n == -2)
				return;		/* wait for more */
		} else {
			n = recv(fd, buf, sizeof(buf), 0);
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n == -1) {
			p->error = errno;
			probe_done(p, CHECK_RESET, 0);
			return;
		}
		if (n == 0) {
			/* Closed before the head was complete (Connection: close is ours). */
			probe_done(p, CHECK_RESET, 0);
			return;
		}
		p->head_bytes += (size_t)n;
		e = llhttp_execute(&p->parser, buf, (size_t)n);
		if (e == HPE_PAUSED) {
			probe_done(p, p->status == checker.cfg->health.expect_status ?
			    CHECK_OK : CHECK_STATUS, p->status);
			return;
		}
		if (e != HPE_OK) {
			p->detail = llhttp_get_error_reason(&p->parser);
			probe_done(p, CHECK_BAD_RESPONSE, 0);
			return;
		}
		if (p->head_bytes >= CHECK_HEAD_MAX) {
			p->detail = "response head too long";
			probe_done(p, CHECK_BAD_RESPONSE, 0);
			return;
		}
	}
}

static void probe_write_cb(evutil_socket_t fd, short what, void *arg);

/*
 * The probe's Host: the backend's host:port as its URL names it. A name followed
 * through DNS ("discover": "dns") is asked for by that name on every address it
 * resolves to, as the virtual host behind it expects, not by the address the
 * slot holds now; SRV targets and static backends by what addr.hostport says.
 */
static const char *
probe_host(const struct config_backend *be, char *buf, size_t len)
{
	if (be->discover != CONFIG_DISCOVER_DNS)
		return be->addr.hostport;
	snprintf(buf, len, "%s:%u", be->addr.host, (unsigned)be->addr.port);
	return buf;
}

/* Write what is left of the request; rebuilt each time, it is the same bytes. */
static void
probe_send(struct probe *p)
{
	char req[CHECK_REQUEST_MAX], host[sizeof(((struct backend_url *)0)->hostport)];
	int len;
	ssize_t n;

	len = snprintf(req, sizeof(req), CHECK_REQUEST_FMT, checker.cfg->health.path,
	    probe_host(&checker.cfg->backends[p->index], host, sizeof(host)));
	if (len < 0 || (size_t)len >= sizeof(req))
		len = (int)sizeof(req) - 1;	/* cannot happen: sized from the types */
	while (p->sent < (size_t)len) {
		if (p->ssl != NULL) {
			size_t w;

			if (SSL_write_ex(p->ssl, req + p->sent, (size_t)len - p->sent, &w) == 1) {
				p->sent += w;
				continue;
			}
			switch (SSL_get_error(p->ssl, 0)) {
			case SSL_ERROR_WANT_WRITE:
			case SSL_ERROR_WANT_READ:
				/*
				 * OpenSSL may need to read first (a key update, a
				 * renegotiation refusal): wait for the direction it
				 * names, and come back here either way.
				 */
				if (probe_watch(p, SSL_want_write(p->ssl) ? EV_WRITE : EV_READ,
				    probe_write_cb) == 0)
					return;
				p->error = errno;
				probe_done(p, CHECK_CONNECT_FAILED, 0);
				return;
			default:
				break;
			}
			ERR_clear_error();
			probe_done(p, CHECK_RESET, 0);
			return;
		}
		n = send(p->fd, req + p->sent, (size_t)len - p->sent, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;		/* still watching for writable */
		if (n == -1) {
			p->error = errno;
			probe_done(p, CHECK_RESET, 0);
			return;
		}
		p->sent += (size_t)n;
	}
	p->phase = PROBE_READING;
	if (probe_watch(p, EV_READ, probe_read_cb) == -1) {
		p->error = errno;
		probe_done(p, CHECK_CONNECT_FAILED, 0);
	}
}

/*
 * The events are level-triggered here: wait only for the direction OpenSSL
 * wants, or a writable socket would spin the loop.
 */
static void probe_tls_cb(evutil_socket_t fd, short what, void *arg);

static void
probe_tls_step(struct probe *p)
{
	const char *why = "handshake failed";
	int rc = transport_handshake(p->ssl, &why, NULL);

	if (rc == 1) {
		p->phase = PROBE_SENDING;
		if (probe_watch(p, EV_WRITE, probe_write_cb) == -1) {
			p->error = errno;
			probe_done(p, CHECK_CONNECT_FAILED, 0);
		}
		return;
	}
	if (rc < 0) {
		if (SSL_get_verify_result(p->ssl) != X509_V_OK)
			why = X509_verify_cert_error_string(SSL_get_verify_result(p->ssl));
		p->detail = why;
		probe_done(p, CHECK_TLS, 0);
		return;
	}
	if (probe_watch(p, SSL_want_write(p->ssl) ? EV_WRITE : EV_READ, probe_tls_cb) == -1) {
		p->error = errno;
		probe_done(p, CHECK_CONNECT_FAILED, 0);
	}
}

static void
probe_tls_cb(evutil_socket_t fd, short what, void *arg)
{
	probe_tls_step(arg);
}

/* Connected to an https backend: its TLS handshake (SNI, certificate check, resumption). */
static void
probe_tls_start(struct probe *p)
{
	char err[256];

	if ((p->ssl = tls_client_new(checker.tls, p->index, err, sizeof(err))) == NULL ||
	    SSL_set_fd(p->ssl, p->fd) != 1) {
		log_error("health checker: cannot start TLS", "backend", p->hostport, "error", err,
		    NULL);
		p->detail = "TLS set-up failed";
		probe_done(p, CHECK_TLS, 0);
		return;
	}
	p->phase = PROBE_HANDSHAKING;
	probe_tls_step(p);
}

/* SSL_read for probe_read_cb: bytes, 0 at the end, -1 on an error, -2 to wait. */
static ssize_t
probe_tls_read(struct probe *p, char *buf, size_t len)
{
	size_t got;

	if (SSL_read_ex(p->ssl, buf, len, &got) == 1)
		return (ssize_t)got;
	switch (SSL_get_error(p->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -2;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

/* Writable: first the outcome of the connect, then room for the request. */
static void
probe_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	socklen_t len = sizeof(int);
	int error = 0;

	if (p->phase == PROBE_CONNECTING) {
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == -1)
			error = errno;
		if (error != 0) {
			p->error = error;
			probe_done(p, connect_result(error), 0);
			return;
		}
		/* A backend that takes PROXY headers wants one first: LOCAL, the checker's own. */
		if (checker.cfg->backends[p->index].send_proxy) {
			uint8_t hdr[PROXYPROTO_V2_BUILD_MAX];
			size_t n = proxyproto_build_v2(hdr, sizeof(hdr), NULL, NULL);

			if (send(fd, hdr, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n) {
				p->error = errno;
				probe_done(p, CHECK_RESET, 0);
				return;
			}
		}
		if (checker.cfg->backends[p->index].addr.tls) {
			probe_tls_start(p);
			return;
		}
		p->phase = PROBE_SENDING;
	}
	probe_send(p);
}

static void
probe_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	probe_done(arg, CHECK_TIMEOUT, 0);
}

/* Start one probe: a non-blocking connect, then the rest from the event loop. */
static void
probe_start(struct probe *p)
{
	const struct config_backend *b = &checker.cfg->backends[p->index];

	checker.running++;
	p->phase = PROBE_CONNECTING;
	p->started_ns = proc_now_ns();
	p->sent = 0;
	p->head_bytes = 0;
	p->status = 0;
	p->error = 0;
	p->detail = NULL;
	llhttp_init(&p->parser, HTTP_RESPONSE, &checker.settings);
	p->parser.data = p;

	if (b->salen == 0) {
		probe_done(p, CHECK_RESOLVE, 0);
		return;
	}
	p->fd = socket(b->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd == -1) {
		p->error = errno;
		probe_done(p, CHECK_CONNECT_FAILED, 0);
		return;
	}
	if (connect(p->fd, (const struct sockaddr *)&b->sa, b->salen) == -1 &&
	    errno != EINPROGRESS) {
		p->error = errno;
		probe_done(p, connect_result(p->error), 0);
		return;
	}
	if (event_add(&p->timer, &checker.timeout_tv) == -1 ||
	    probe_watch(p, EV_WRITE, probe_write_cb) == -1) {
		p->error = errno;
		probe_done(p, CHECK_CONNECT_FAILED, 0);
	}
}

/* A round: probe every backend at once; the last probe to finish completes it. */
static void
round_start(void)
{
	struct probe *p;

	checker.starting = true;
	for (uint32_t i = 0; i < checker.nprobes; i++) {
		p = &checker.probes[i];
		/*
		 * timeout < interval makes this rare, but a straggler is skipped
		 * rather than restarted; its round then ends with this one.
		 */
		if (p->admin == ADMIN_MAINT || !probe_wanted(p))
			continue;	/* not checked: roundguardctl maint, or a slot without a backend */
		if (p->phase != PROBE_IDLE) {
			log_debug("previous health check still running, skipped",
			    "backend", p->hostport, NULL);
			continue;
		}
		probe_start(p);
	}
	checker.starting = false;
	if (checker.running == 0)
		round_done();
}

static void
round_cb(evutil_socket_t fd, short what, void *arg)
{
	round_start();
}

/*
 * The master changed what an operator says of backends, or a worker took a
 * backend out after a failed connect (SIGUSR1): follow each change, then
 * publish a schedule that includes them all; the master waits for it
 * (sched_admin_seq) before it answers.
 */
static void
admin_cb(evutil_socket_t sig, short what, void *arg)
{
	int64_t now = proc_now_ns();

	for (uint32_t i = 0; i < checker.nprobes; i++) {
		struct probe *p = &checker.probes[i];
		enum admin_state st = (enum admin_state)atomic_load_explicit(
		    &checker.shm->backends[i].admin, memory_order_acquire);

		if (st == p->admin)
			continue;
		if (st == ADMIN_MAINT) {
			/* Out of rotation and unchecked: it must pass a check when it is back. */
			shm_set_live(checker.shm, i, false);
			p->st.up = false;
			p->checked = false;
		} else if (p->admin == ADMIN_MAINT) {
			/* Back from maintenance: checked now; the first probe decides. */
			p->admin = st;
			p->admin_ready_pending = st == ADMIN_READY;
			if (p->phase == PROBE_IDLE) {
				checker.starting = true;
				probe_start(p);
				checker.starting = false;
			}
		} else if (st == ADMIN_READY && p->st.up) {
			ramp_start(p, now);
		}
		p->admin = st;
	}
	publish();
}

/* A discovered backend took slot b: checked at once, from a clean slate, before any traffic. */
static void
slot_added(uint32_t b)
{
	struct probe *p = &checker.probes[b];
	struct shm_backend *sb = &checker.shm->backends[b];
	int64_t now = proc_now_ns();

	memset(&p->st, 0, sizeof(p->st));
	p->checked = false;
	p->admin_ready_pending = false;
	p->since_ns = now;
	atomic_store_explicit(&sb->last_result, CHECK_NONE, memory_order_relaxed);
	atomic_store_explicit(&sb->last_status, 0, memory_order_relaxed);
	atomic_store_explicit(&sb->successes, 0, memory_order_relaxed);
	atomic_store_explicit(&sb->failures, 0, memory_order_relaxed);
	atomic_store_explicit(&sb->changed_ns, now, memory_order_relaxed);
	/* Its first success ramps it up like a backend a reload added (slow start). */
	atomic_store_explicit(&sb->ramp_since_ns, -1, memory_order_relaxed);
	/* A probe still out went to the slot's old address: its answer must not count. */
	if (p->phase != PROBE_IDLE) {
		probe_close(p);
		checker.running--;
	}
	checker.starting = true;
	probe_start(p);
	checker.starting = false;
}

/* A slot began draining (UINT32_MAX: only weights changed): a schedule without it. */
static void
slot_removed(uint32_t b)
{
	if (b != UINT32_MAX)
		checker.probes[b].st.up = false;
	publish();
}

/* Every discovered name has had its first lookup: the first pass may be complete now. */
static void
discovery_settled(void)
{
	if (checker.running == 0)
		round_done();
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	log_debug("health checker stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
	    NULL);
	event_base_loopbreak(checker.base);
}

/* One socket per backend at once: raise the soft fd limit for that if the hard one allows. */
static void
raise_fd_limit(uint32_t nbackends)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)nbackends + CHECK_SPARE_FDS, old;
	char limit[24], n[24];

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= want)
		return;
	old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		rl.rlim_cur = old;
	if (rl.rlim_cur < want) {
		snprintf(limit, sizeof(limit), "%llu", (unsigned long long)rl.rlim_cur);
		snprintf(n, sizeof(n), "%u", nbackends);
		log_warn("file descriptor limit too low for one probe per backend",
		    "limit", limit, "backends", n, NULL);
	}
}

/* Free whatever checker_main() set up; safe at any stage. */
static void
checker_cleanup(void)
{
	discover_stop();
	if (checker.probes != NULL) {
		for (uint32_t i = 0; i < checker.nprobes; i++)
			probe_close(&checker.probes[i]);
		free(checker.probes);
	}
	if (checker.round_ev != NULL)
		event_free(checker.round_ev);
	if (checker.sigterm != NULL)
		event_free(checker.sigterm);
	if (checker.sigint != NULL)
		event_free(checker.sigint);
	if (checker.sigusr1 != NULL)
		event_free(checker.sigusr1);
	if (checker.ramp_ev != NULL)
		event_free(checker.ramp_ev);
	free(checker.sched);
	free(checker.weights);
	free(checker.scratch);
	if (checker.base != NULL)
		event_base_free(checker.base);
	if (checker.ready_fd != -1)
		close(checker.ready_fd);
	memset(&checker, 0, sizeof(checker));
	checker.ready_fd = -1;
}

int
checker_main(const struct config *cfg, struct shm *shm, struct tls_generation *tls, int ready_fd)
{
	struct event_config *ecfg;
	struct timeval interval;
	sigset_t unblock;
	struct probe *p;
	int rc = 1;

	memset(&checker, 0, sizeof(checker));
	checker.cfg = cfg;
	checker.shm = shm;
	checker.tls = tls;
	checker.ready_fd = ready_fd;
	checker.nprobes = (uint32_t)cfg->nbackends;
	checker.started_ns = proc_now_ns();
	log_set_proc("checker");

	if (cfg->health.interval_ns <= 0 || cfg->nbackends > shm->hdr->nbackends) {
		log_error("health checker: bad configuration", NULL);
		goto out;
	}
	/* Never longer than the interval, so a probe always ends before the next round. */
	checker.timeout_tv = proc_timeval(cfg->health.timeout_ns > 0 &&
	    cfg->health.timeout_ns < cfg->health.interval_ns ?
	    cfg->health.timeout_ns : cfg->health.interval_ns);
	interval = proc_timeval(cfg->health.interval_ns);

	llhttp_settings_init(&checker.settings);
	checker.settings.on_headers_complete = on_headers_complete;

	/* The master replaces the checker on reload, so SIGHUP means nothing here. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(checker.nprobes);

	if ((ecfg = event_config_new()) == NULL)
		goto nomem;
	event_config_set_flag(ecfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	checker.base = event_base_new_with_config(ecfg);
	event_config_free(ecfg);
	if (checker.base == NULL) {
		log_error("health checker: cannot create the event loop", NULL);
		goto out;
	}
	checker.probes = calloc(checker.nprobes > 0 ? checker.nprobes : 1, sizeof(*checker.probes));
	if (checker.probes == NULL)
		goto nomem;
	for (uint32_t i = 0; i < checker.nprobes; i++) {
		p = &checker.probes[i];
		p->index = i;
		p->hostport = cfg->backends[i].addr.hostport;
		p->fd = -1;
		p->since_ns = checker.started_ns;
		/* Assigned once so that event_del() is always safe on them. */
		event_assign(&p->io, checker.base, -1, 0, probe_write_cb, p);
		evtimer_assign(&p->timer, checker.base, probe_timeout_cb, p);
	}
	checker.round_ev = event_new(checker.base, -1, EV_PERSIST, round_cb, NULL);
	checker.sigterm = evsignal_new(checker.base, SIGTERM, stop_cb, NULL);
	checker.sigint = evsignal_new(checker.base, SIGINT, stop_cb, NULL);
	checker.sigusr1 = evsignal_new(checker.base, SIGUSR1, admin_cb, NULL);
	checker.ramp_ev = evtimer_new(checker.base, ramp_cb, NULL);
	checker.sched = calloc(shm->hdr->sched_cap, sizeof(*checker.sched));
	checker.weights = calloc(checker.nprobes + 1, sizeof(*checker.weights));
	checker.scratch = calloc(2 * (size_t)checker.nprobes + 1, sizeof(*checker.scratch));
	if (checker.round_ev == NULL || checker.sigterm == NULL || checker.sigint == NULL ||
	    checker.sigusr1 == NULL || checker.ramp_ev == NULL || checker.sched == NULL ||
	    checker.weights == NULL || checker.scratch == NULL)
		goto nomem;
	if (event_add(checker.sigterm, NULL) == -1 || event_add(checker.sigint, NULL) == -1 ||
	    event_add(checker.sigusr1, NULL) == -1 ||
	    event_add(checker.round_ev, &interval) == -1) {
		log_error("health checker: cannot start the event loop", NULL);
		goto out;
	}
	/* Handlers are in place: a mask inherited from the master must not hide them. */
	sigemptyset(&unblock);
	sigaddset(&unblock, SIGTERM);
	sigaddset(&unblock, SIGINT);
	sigaddset(&unblock, SIGUSR1);
	sigprocmask(SIG_UNBLOCK, &unblock, NULL);

	/*
	 * What the segment holds before the first probe (a reload carries the
	 * old generation's health and administrative state): the starting
	 * point, published at once.
	 */
	for (uint32_t i = 0; i < checker.nprobes; i++) {
		struct probe *pr = &checker.probes[i];
		struct shm_backend *sb = &shm->backends[i];

		pr->admin = (enum admin_state)atomic_load(&sb->admin);
		pr->st.up = shm_is_live(shm, i);
		if (atomic_load(&sb->last_result) != CHECK_NONE && pr->admin != ADMIN_MAINT) {
			pr->checked = true;
			pr->st.successes = atomic_load(&sb->successes);
			pr->st.failures = atomic_load(&sb->failures);
			pr->since_ns = atomic_load(&sb->changed_ns);
		}
	}
	publish();
	atomic_store(&shm->hdr->checker_pid, (int32_t)getpid());
	{
		static const struct discover_hooks hooks = { slot_added, slot_removed,
		    discovery_settled };

		/* The child's own copy of the configuration: discovery writes its slots' addresses. */
		if (discover_start(checker.base, (struct config *)(uintptr_t)cfg, shm, &hooks) == -1)
			goto out;
	}
	round_start();
	if (event_base_dispatch(checker.base) == -1) {
		log_error("health checker: event loop failed", NULL);
		goto out;
	}
	rc = 0;
	goto out;
nomem:
	log_error("health checker: out of memory", NULL);
out:
	checker_cleanup();
	return rc;
}
