/* The master's control socket (see include/roundguard/control_server.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <json-c/json.h>

#include "config.h"
#include "roundguard/admin.h"
#include "roundguard/checker.h"
#include "roundguard/control.h"
#include "roundguard/control_server.h"
#include "roundguard/discover.h"
#include "roundguard/log.h"
#include "roundguard/metrics.h"
#include "roundguard/proc.h"
#include "roundguard/schedule.h"

#define NS_PER_SEC	INT64_C(1000000000)
/* A request must arrive whole within this; roundguardctl sends it at once. */
#define READ_TIMEOUT_S	5
/* How long a change waits for the checker's schedule before the answer says so. */
#define PUBLISH_WAIT_NS	(5 * NS_PER_SEC)
#define POLL_US		2000
/* requests_per_s is over the last RATE_SAMPLES seconds (sampled once a second). */
#define RATE_SAMPLES	10

struct ctl_conn {
	LIST_ENTRY(ctl_conn) entry;
	struct bufferevent *bev;
	struct event *poll;		/* waiting for the checker to publish */
	struct shm *wait_shm;
	uint64_t wait_seq;
	int64_t wait_until_ns;
	uid_t uid;
	char message[CONTROL_BACKEND_MAX + 128];
};

static struct {
	struct event_base *base;
	struct event *accept_ev;
	struct event *rate_ev;
	struct event *sweep_ev;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	control_view_fn *view;
	LIST_HEAD(, ctl_conn) conns;
	/* Request totals per backend, once a second, of the generation below. */
	struct shm *rate_shm;
	uint64_t *samples;		/* RATE_SAMPLES rows of nbackends */
	int64_t sample_ns[RATE_SAMPLES];
	unsigned nsamples, next;
} srv = { .fd = -1 };

/* ---- numbers for status ---- */

static uint64_t
backend_requests(const struct shm *s, uint32_t b)
{
	uint64_t n = 0;

	for (uint32_t w = 0; w <= s->hdr->nworkers; w++) {
		const struct metrics_slot *m = shm_stats(s, w, b);

		for (int k = 0; k <= METRICS_SEC_BUCKETS; k++)
			n += atomic_load_explicit(&m->sec_hist[k], memory_order_relaxed);
	}
	return n;
}

static int64_t
backend_active(const struct shm *s, uint32_t b)
{
	int64_t n = metrics_in_flight(s, b);

	return n > 0 ? n : 0;
}

static void
rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control_view v;
	uint32_t n;

	if (srv.view(&v, NULL) == -1)
		return;
	n = v.shm->hdr->nbackends;
	if (v.shm != srv.rate_shm) {
		/* A new generation: its backends are other rows; start over. */
		free(srv.samples);
		srv.samples = calloc((size_t)RATE_SAMPLES * (n > 0 ? n : 1), sizeof(uint64_t));
		srv.rate_shm = srv.samples != NULL ? v.shm : NULL;
		srv.nsamples = srv.next = 0;
		if (srv.samples == NULL)
			return;
	}
	for (uint32_t b = 0; b < n; b++)
		srv.samples[(size_t)srv.next * n + b] = backend_requests(v.shm, b);
	srv.sample_ns[srv.next] = proc_now_ns();
	srv.next = (srv.next + 1) % RATE_SAMPLES;
	if (srv.nsamples < RATE_SAMPLES)
		srv.nsamples++;
}

/* Requests per second of backend b over the samples kept (now against the oldest). */
static double
backend_rate(const struct shm *s, uint32_t b, int64_t now)
{
	unsigned oldest;
	int64_t dt;
	uint64_t cur, then;

	if (s != srv.rate_shm || srv.nsamples == 0)
		return 0;
	oldest = srv.nsamples < RATE_SAMPLES ? 0 : srv.next;
	dt = now - srv.sample_ns[oldest];
	if (dt < NS_PER_SEC / 2)
		return 0;
	cur = backend_requests(s, b);
	then = srv.samples[(size_t)oldest * s->hdr->nbackends + b];
	/* A discovered backend's slot that now holds another address started again from 0. */
	if (cur < then)
		return 0;
	return (double)(cur - then) * NS_PER_SEC / (double)dt;
}

/* ---- answers ---- */

static void conn_free(struct ctl_conn *c);

static void
write_done_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_free(c);
}

/* The client went away while its answer was being written. */
static void
write_event_cb(struct bufferevent *bev, short what, void *arg)
{
	conn_free(arg);
}

/* Send obj (consumed) and close once it is out. */
static void
answer(struct ctl_conn *c, struct json_object *obj)
{
	const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);

	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, write_done_cb, write_event_cb, c);
	if (bufferevent_write(c->bev, text, strlen(text)) == -1 ||
	    bufferevent_write(c->bev, "\n", 1) == -1) {
		json_object_put(obj);
		conn_free(c);
		return;
	}
	json_object_put(obj);
	bufferevent_enable(c->bev, EV_WRITE);
}

static void
answer_error(struct ctl_conn *c, const char *code, const char *error)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(error));
	json_object_object_add(o, "code", json_object_new_string(code));
	answer(c, o);
}

static void
answer_ok(struct ctl_conn *c, const char *message)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "message", json_object_new_string(message));
	answer(c, o);
}

/* What status calls a backend's state: maint and drain first, then its health. */
static const char *
shown_state(const struct shm *s, uint32_t b)
{
	const struct shm_backend *sb = &s->backends[b];

	switch (atomic_load(&sb->admin)) {
	case ADMIN_MAINT:
		return "maint";
	case ADMIN_DRAIN:
		return "drain";
	default:
		break;
	}
	if (atomic_load(&sb->weight) == 0)
		return "drain";
	return shm_is_live(s, b) ? "up" : "down";
}

static void
answer_status(struct ctl_conn *c, const struct control_view *v)
{
	struct json_object *o = json_object_new_object(), *list = json_object_new_array();
	int64_t now = proc_now_ns();
	char reason[64];

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "version", json_object_new_string(ROUNDGUARD_VERSION));
	json_object_object_add(o, "generation", json_object_new_int((int)v->generation));
	json_object_object_add(o, "workers", json_object_new_int(v->workers));
	json_object_object_add(o, "uptime_s", json_object_new_double(
	    (double)(now - v->shm->hdr->started_ns) / NS_PER_SEC));
	for (uint32_t b = 0; b < (uint32_t)v->cfg->nbackends; b++) {
		const struct shm_backend *sb = &v->shm->backends[b];
		struct json_object *e = json_object_new_object();
		enum admin_state st = (enum admin_state)atomic_load(&sb->admin);
		enum check_result res = (enum check_result)atomic_load(&sb->last_result);
		uint32_t status = atomic_load(&sb->last_status);
		int64_t since = st != ADMIN_READY ? atomic_load(&sb->admin_changed_ns) :
		    atomic_load(&sb->changed_ns);
		const struct config_backend *be = &v->cfg->backends[b];
		bool found = be->discover != CONFIG_DISCOVER_NONE;
		char name[sizeof(be->addr.hostport)];

		/* Slots of discovered names are listed while they hold a backend. */
		if (!metrics_backend_name(v->shm, v->cfg, b, name, sizeof(name))) {
			json_object_put(e);
			continue;
		}
		if (since <= 0)
			since = v->shm->hdr->started_ns;
		if (st == ADMIN_MAINT)
			snprintf(reason, sizeof(reason), "not checked (maint)");
		else if (res == CHECK_STATUS || (res == CHECK_OK && status != 0))
			snprintf(reason, sizeof(reason), "status %u", status);
		else
			snprintf(reason, sizeof(reason), "%s", check_result_str(res));
		json_object_object_add(e, "url", json_object_new_string(v->cfg->backends[b].url));
		json_object_object_add(e, "name", json_object_new_string(name));
		if (found)
			json_object_object_add(e, "discovered_from", json_object_new_string(
			    be->discover == CONFIG_DISCOVER_SRV ? be->srv : be->addr.host));
		json_object_object_add(e, "state", json_object_new_string(shown_state(v->shm, b)));
		json_object_object_add(e, "admin", json_object_new_string(admin_state_str(st)));
		json_object_object_add(e, "check", json_object_new_string(
		    st == ADMIN_MAINT ? "not checked" : res == CHECK_OK ? "ok" : check_result_str(res)));
		json_object_object_add(e, "reason", json_object_new_string(reason));
		json_object_object_add(e, "since_s", json_object_new_double(
		    (double)(now - since) / NS_PER_SEC));
		json_object_object_add(e, "weight", json_object_new_int((int)atomic_load(
		    found ? &sb->slot_weight : &sb->weight)));
		json_object_object_add(e, "effective_weight", json_object_new_double(
		    (double)atomic_load(&sb->effective) / SCHEDULE_RAMP_STEPS));
		json_object_object_add(e, "active_connections",
		    json_object_new_int64(backend_active(v->shm, b)));
		json_object_object_add(e, "requests_per_s", json_object_new_double(
		    backend_rate(v->shm, b, now)));
		json_object_array_add(list, e);
	}
	json_object_object_add(o, "backends", list);
	answer(c, o);
}

/* ---- changes ---- */

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_conn *c = arg;
	struct control_view v;
	struct timeval tv = { 0, POLL_US };

	if (srv.view(&v, NULL) == -1 || v.shm != c->wait_shm) {
		/* A reload began meanwhile: it carried the change into the new generation. */
		answer_ok(c, c->message);
		return;
	}
	if (atomic_load_explicit(&v.shm->hdr->sched_admin_seq, memory_order_acquire) >=
	    c->wait_seq) {
		answer_ok(c, c->message);
		return;
	}
	if (proc_now_ns() >= c->wait_until_ns) {
		char why[sizeof(c->message) + 160];

		snprintf(why, sizeof(why), "%s; but the health checker has not published it within "
		    "5s: workers may still pick by the old schedule", c->message);
		answer_error(c, "timeout", why);
		return;
	}
	evtimer_add(c->poll, &tv);
}

/*
 * Carry out r on backend b of s: the new and the old value as text, and
 * which of the two a request changes ("state" or "weight"). With slot_seq,
 * b is a discovered backend's slot and the state is for the address it held
 * at that sequence (admin_set_slot_state()).
 */
static const char *
apply(struct shm *s, uint32_t b, const uint32_t *slot_seq, const struct control_request *r,
    int64_t now, char was[16], char now_s[16])
{
	enum admin_state st;

	if (r->command == CONTROL_WEIGHT) {
		snprintf(was, 16, "%u", admin_set_weight(s, b, (uint32_t)r->weight, now));
		snprintf(now_s, 16, "%d", r->weight);
		return "weight";
	}
	st = r->command == CONTROL_DRAIN ? ADMIN_DRAIN :
	    r->command == CONTROL_MAINT ? ADMIN_MAINT : ADMIN_READY;
	snprintf(was, 16, "%s", admin_state_str(slot_seq != NULL ?
	    admin_set_slot_state(s, b, *slot_seq, st, now) : admin_set_state(s, b, st, now)));
	snprintf(now_s, 16, "%s", admin_state_str(st));
	return "state";
}

/* Tell v's checker that the administrative state changed: the admin_seq its schedule must reach. */
static uint64_t
notify_checker(const struct control_view *v)
{
	uint64_t seq = admin_changed(v->shm);

	if (v->checker > 0)
		kill(v->checker, SIGUSR1);
	return seq;
}

/* The same change in a generation a reload is starting, if it has the backend too. */
static void
change_pending(const struct control_request *r, const struct control_view *p, int64_t now)
{
	char was[16], now_s[16];
	uint32_t seq;
	int b;

	if (p->shm == NULL)
		return;
	if ((b = admin_find(p->cfg, r->backend)) >= 0)
		apply(p->shm, (uint32_t)b, NULL, r, now, was, now_s);
	else if (r->command != CONTROL_WEIGHT &&
	    (b = admin_find_discovered(p->shm, p->cfg, r->backend, &seq)) >= 0)
		apply(p->shm, (uint32_t)b, &seq, r, now, was, now_s);
	else
		return;
	notify_checker(p);
}

/* Does name (host:port) name a backend discovered through DNS right now? */
static bool
discovered(const struct control_view *v, const char *name)
{
	char shown[sizeof(v->cfg->backends[0].addr.hostport)];

	for (uint32_t b = 0; b < (uint32_t)v->cfg->nbackends; b++) {
		const struct config_backend *be = &v->cfg->backends[b];

		if (be->discover == CONFIG_DISCOVER_NONE)
			continue;
		/* The entry's URL (or SRV name) too: it names all of them. */
		if (strcmp(be->url, name) == 0 || strcasecmp(be->srv, name) == 0 ||
		    (metrics_backend_name(v->shm, v->cfg, b, shown, sizeof(shown)) &&
		    strcasecmp(shown, name) == 0))
			return true;
	}
	return false;
}

static void
change(struct ctl_conn *c, const struct control_request *r, const struct control_view *v,
    const struct control_view *pending)
{
	int b = admin_find(v->cfg, r->backend);
	int64_t now = proc_now_ns();
	const char *name, *what;
	char uid[16], was[16], now_s[16], err[512], shown[sizeof(v->cfg->backends[0].addr.hostport)];
	char why[CONTROL_BACKEND_MAX + 200];
	uint32_t slot_seq = 0;
	int slot = b == -1 ? admin_find_discovered(v->shm, v->cfg, r->backend, &slot_seq) : -1;

	if (slot >= 0 && r->command == CONTROL_WEIGHT) {
		snprintf(why, sizeof(why), "\"%s\" was discovered through DNS: its weight follows its "
		    "SRV record (or its entry's weight); drain, maint and ready apply", r->backend);
		answer_error(c, "bad_request", why);
		return;
	}
	if (slot >= 0) {
		/* One address of a name: its state lasts while the name resolves to it. */
		b = slot;
		if (!metrics_backend_name(v->shm, v->cfg, (uint32_t)b, shown, sizeof(shown)))
			strlcpy(shown, r->backend, sizeof(shown));
		name = shown;
		what = apply(v->shm, (uint32_t)b, &slot_seq, r, now, was, now_s);
	} else if (b == -1 || b == -2) {
		snprintf(why, sizeof(why), b == -1 ? "unknown backend \"%s\" (see roundguardctl status)" :
		    "\"%s\" names more than one backend: give its URL", r->backend);
		if (b == -1 && discovered(v, r->backend))
			snprintf(why, sizeof(why), r->command == CONTROL_WEIGHT ?
			    "\"%s\" names backends discovered through DNS: their weights follow its "
			    "SRV records (or the entry's weight), not roundguardctl" :
			    "\"%s\" names backends discovered through DNS: they follow its records; "
			    "give one address as status shows it (host:port)", r->backend);
		answer_error(c, "unknown_backend", why);
		return;
	} else {
		name = v->cfg->backends[b].addr.hostport;
		what = apply(v->shm, (uint32_t)b, NULL, r, now, was, now_s);
	}
	snprintf(uid, sizeof(uid), "%u", (unsigned)c->uid);
	if (strcmp(was, now_s) == 0) {
		snprintf(c->message, sizeof(c->message), "%s: %s %s (unchanged)", name, what, now_s);
	} else {
		snprintf(c->message, sizeof(c->message), "%s: %s %s (was %s)", name, what, now_s, was);
		log_info(r->command == CONTROL_WEIGHT ? "backend weight changed" :
		    "backend state changed", "backend", name, what, now_s, "was", was, "uid", uid,
		    NULL);
	}
	if (v->cfg->control.state_file[0] != '\0' &&
	    admin_save(v->cfg->control.state_file, v->cfg, v->shm, err, sizeof(err)) == -1)
		log_error("cannot write the state file", "error", err, NULL);
	change_pending(r, pending, now);
	c->wait_shm = v->shm;
	c->wait_seq = notify_checker(v);
	c->wait_until_ns = now + PUBLISH_WAIT_NS;
	poll_cb(-1, 0, c);
}

/*
 * A drain or maint set on a discovered backend holds for its address: once
 * the slot holds another address, or none (the name dropped it), it is ready
 * again, so the address a slot gets next is checked and picked as usual.
 */
static void
sweep_view(const struct control_view *v, int64_t now, bool logged)
{
	char shown[sizeof(v->cfg->backends[0].addr.hostport)];
	bool changed = false;
	struct net_addr a;
	uint32_t seq;

	for (uint32_t b = 0; b < (uint32_t)v->cfg->nbackends && b < v->shm->hdr->nbackends; b++) {
		const struct config_backend *be = &v->cfg->backends[b];
		const char *was;

		if (!admin_slot_stale(v->shm, v->cfg, b))
			continue;
		/* The address it was for, while the slot (draining, free) still names it. */
		if (shm_slot_read(v->shm, b, &a, &seq) &&
		    seq == atomic_load(&v->shm->backends[b].admin_slot_seq))
			discover_format(&a, shown, sizeof(shown));
		else
			strlcpy(shown, "(the slot's previous address)", sizeof(shown));
		was = admin_state_str(admin_set_state(v->shm, b, ADMIN_READY, now));
		if (logged)
			log_info("discovered backend's address left; its state is ready again",
			    "name", be->discover == CONFIG_DISCOVER_SRV ? be->srv : be->addr.host,
			    "backend", shown, "was", was, NULL);
		changed = true;
	}
	if (changed)
		notify_checker(v);
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control_view v, pending;
	int64_t now = proc_now_ns();

	(void)fd, (void)what, (void)arg;
	if (srv.view(&v, &pending) == -1)
		return;
	sweep_view(&v, now, true);
	if (pending.shm != NULL)
		sweep_view(&pending, now, false);	/* the same addresses: logged once */
}

/* ---- connections ---- */

static void
conn_free(struct ctl_conn *c)
{
	LIST_REMOVE(c, entry);
	if (c->poll != NULL)
		event_free(c->poll);
	bufferevent_free(c->bev);
	free(c);
}

static void
request(struct ctl_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in);
	struct control_request r;
	struct control_view v, pending;
	char err[CONTROL_REASON_MAX];
	const char *text;

	bufferevent_disable(c->bev, EV_READ);
	if (len > CONTROL_REQUEST_MAX) {
		answer_error(c, "bad_request", "request larger than 4096 bytes");
		return;
	}
	text = (const char *)evbuffer_pullup(in, -1);
	if (control_request_parse(text != NULL ? text : "", len, &r, err, sizeof(err)) == -1) {
		/* The parser names the key first: a weight's own code lets scripts tell. */
		answer_error(c, strncmp(err, "weight: ", 8) == 0 ? "bad_weight" : "bad_request", err);
		return;
	}
	if (srv.view(&v, &pending) == -1) {
		answer_error(c, "internal", "no configuration is running (starting or stopping)");
		return;
	}
	if (r.command == CONTROL_STATUS)
		answer_status(c, &v);
	else
		change(c, &r, &v, &pending);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;

	/* More than a request can be: answer now rather than read on. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > CONTROL_REQUEST_MAX)
		request(c);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ctl_conn *c = arg;

	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING)) {
		request(c);	/* the client's shutdown(SHUT_WR): the request is whole */
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
		answer_error(c, "bad_request", "no whole request within 5s (end it with shutdown)");
		return;
	}
	conn_free(c);
}

static void
accept_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct timeval tv = { READ_TIMEOUT_S, 0 };
	struct ctl_conn *c;
	int cfd;

	while ((cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
		if ((c = calloc(1, sizeof(*c))) == NULL ||
		    (c->bev = bufferevent_socket_new(srv.base, cfd, BEV_OPT_CLOSE_ON_FREE)) == NULL ||
		    (c->poll = evtimer_new(srv.base, poll_cb, c)) == NULL) {
			if (c != NULL && c->bev != NULL)
				bufferevent_free(c->bev);
			else
				close(cfd);
			free(c);
			continue;
		}
		/* Who asked: logged with every change. */
		c->uid = getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 ?
		    cred.uid : (uid_t)-1;
		LIST_INSERT_HEAD(&srv.conns, c, entry);
		bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		bufferevent_enable(c->bev, EV_READ);
	}
}

int
control_server_start(struct event_base *base, const char *path, gid_t gid,
    control_view_fn *view, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval sec = { 1, 0 }, sweep = { 0, 250 * 1000 };
	int fd, probe;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "control.socket: %s: path too long (at most %zu bytes)", path,
		    sizeof(sa.sun_path) - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* A socket file that still answers belongs to a running master: leave it alone. */
	if ((probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) != -1) {
		int live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;

		close(probe);
		if (live) {
			snprintf(err, errlen, "control.socket: %s: another roundguardd is listening there",
			    path);
			return -1;
		}
	}
	unlink(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		snprintf(err, errlen, "control.socket: %s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	/* The file's mode is the access control: owner and group read-write, nobody else. */
	if (chmod(path, 0660) == -1 || (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) == -1) ||
	    listen(fd, 16) == -1) {
		snprintf(err, errlen, "control.socket: %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	srv.base = base;
	srv.fd = fd;
	srv.view = view;
	snprintf(srv.path, sizeof(srv.path), "%s", path);
	LIST_INIT(&srv.conns);
	srv.accept_ev = event_new(base, fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	srv.rate_ev = event_new(base, -1, EV_PERSIST, rate_cb, NULL);
	srv.sweep_ev = event_new(base, -1, EV_PERSIST, sweep_cb, NULL);
	if (srv.accept_ev == NULL || srv.rate_ev == NULL || srv.sweep_ev == NULL ||
	    event_add(srv.accept_ev, NULL) == -1 || event_add(srv.rate_ev, &sec) == -1 ||
	    event_add(srv.sweep_ev, &sweep) == -1) {
		snprintf(err, errlen, "control.socket: %s: cannot watch it", path);
		control_server_stop();
		return -1;
	}
	return 0;
}

void
control_server_forget(void)
{
	struct ctl_conn *c;

	LIST_FOREACH(c, &srv.conns, entry)
		close(bufferevent_getfd(c->bev));
	if (srv.fd != -1)
		close(srv.fd);
	srv.fd = -1;
}

void
control_server_stop(void)
{
	while (!LIST_EMPTY(&srv.conns))
		conn_free(LIST_FIRST(&srv.conns));
	if (srv.accept_ev != NULL)
		event_free(srv.accept_ev);
	if (srv.rate_ev != NULL)
		event_free(srv.rate_ev);
	if (srv.sweep_ev != NULL)
		event_free(srv.sweep_ev);
	if (srv.fd != -1) {
		close(srv.fd);
		unlink(srv.path);
	}
	free(srv.samples);
	memset(&srv, 0, sizeof(srv));
	srv.fd = -1;
}
