/*
 * Discovered backends, the health checker's side: each name is looked up
 * with c-ares on the checker's event loop, again at its TTL (within
 * resolve.min_interval and max_interval); its answer fills the name's slots
 * in the segment. An address that appears takes a free slot and is probed
 * before it gets traffic; one that disappears is drained (out of the
 * schedule; its exchanges finish) and its slot freed. A failed lookup keeps
 * the last good answer for resolve.hold.
 */
#include <arpa/inet.h>
#include <ares.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "roundguard/config.h"
#include "roundguard/discover.h"
#include "roundguard/log.h"
#include "roundguard/metrics.h"
#include "roundguard/proc.h"
#include "roundguard/shm.h"

#define NS_PER_SEC	INT64_C(1000000000)
#define SOCKETS_MAX	16	/* c-ares sockets at once: one per resolver and protocol */
#define REAP_NS		(NS_PER_SEC / 4)	/* how often draining slots are looked at */

/* One discovered name and the lookup under way. */
struct name {
	uint32_t first, max;		/* its slots in cfg->backends */
	const struct config_backend *entry;
	const char *host;		/* the URL's host, or the SRV name */
	bool srv;
	struct event *timer;		/* the next lookup */
	int pending;			/* queries in flight */
	/* The lookup being assembled. */
	struct discover_target targets[DISCOVER_TARGETS_MAX];
	size_t ntargets;
	enum dns_result result;		/* combined over its queries */
	uint32_t ttl;
	bool first_done;		/* has had a first lookup */
	/* Since the last good answer. */
	bool have_answer;
	int64_t last_ok_ns;
	enum dns_result last_logged;	/* logged once per change of state */
	size_t last_cut;
	/* Queries of this lookup that failed on the way (not a clean NXDOMAIN or NODATA). */
	bool failed_v4, failed_v6;	/* "discover": "dns": its A, its AAAA query */
	/* "discover": "dns": when the A (0) and AAAA (1) query last came back without failing. */
	int64_t family_ok_ns[2];
	bool family_dropped[2];		/* a family's kept addresses expired (logged once) */
	enum dns_result target_failed;	/* "srv": a target's query; DNS_OK if none */
	/* The answer applied last: what the slots should hold (some may wait for a free one). */
	struct discover_target want[DISCOVER_TARGETS_MAX];
	size_t nwant;
	bool waiting;			/* some of want had no free slot (logged once) */
	bool clash_logged;		/* an address another backend has (logged once) */
};

/* One query's context: the name it serves and, for an SRV target, its port and weight. */
struct query {
	struct name *n;
	uint16_t qtype;
	uint16_t port;
	uint32_t weight;
	char qname[DNS_NAME_MAX];
};

static struct {
	struct event_base *base;
	struct config *cfg;
	struct shm *shm;
	struct discover_hooks hooks;
	ares_channel channel;
	bool channel_ok;
	struct event *ares_timer;
	struct event *reap_timer;
	struct { ares_socket_t fd; struct event *ev; } socks[SOCKETS_MAX];
	struct name *names;
	size_t nnames;
	int64_t *drain_since;		/* per backend: when its slot began draining */
	bool *overdue_logged;		/* per backend: drained past shutdown_timeout, logged */
	bool settled_told;
} d;

/* ---- c-ares on the event loop ---- */

static void ares_rearm(void);

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	ares_process_fd(d.channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	ares_rearm();
}

/* c-ares opens, closes and wants to write sockets: follow with events. */
static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	int free_at = -1;

	for (int i = 0; i < SOCKETS_MAX; i++) {
		if (d.socks[i].ev == NULL) {
			if (free_at < 0)
				free_at = i;
			continue;
		}
		if (d.socks[i].fd != fd)
			continue;
		event_free(d.socks[i].ev);
		d.socks[i].ev = NULL;
		free_at = i;
		break;
	}
	if (!readable && !writable)
		return;
	if (free_at < 0) {
		log_error("DNS: too many resolver sockets at once", NULL);
		return;
	}
	d.socks[free_at].fd = fd;
	d.socks[free_at].ev = event_new(d.base, fd, (short)(EV_PERSIST | (readable ? EV_READ : 0) |
	    (writable ? EV_WRITE : 0)), sock_cb, NULL);
	if (d.socks[free_at].ev == NULL || event_add(d.socks[free_at].ev, NULL) == -1)
		log_error("DNS: cannot watch a resolver socket", NULL);
}

static void
ares_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	ares_process_fd(d.channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	ares_rearm();
}

/* c-ares's own timeouts and retries run off one timer. */
static void
ares_rearm(void)
{
	struct timeval tv, *t;

	if (!d.channel_ok)
		return;
	t = ares_timeout(d.channel, NULL, &tv);
	if (t == NULL)
		evtimer_del(d.ares_timer);
	else
		evtimer_add(d.ares_timer, t);
}

/* ---- slots ---- */

static uint32_t
slot_weight(const struct name *n, const struct discover_target *t)
{
	return n->srv ? t->weight : n->entry->weight;
}

/* Counters of a slot that now names another backend start again from zero. */
static void
slot_counters_restart(uint32_t b)
{
	static const struct metrics_slot zero;
	uint32_t nw = d.shm->hdr->nworkers;
	struct metrics_slot *carried = shm_stats(d.shm, nw, b);
	struct shm_backend *sb = &d.shm->backends[b];

	/*
	 * The last row (carried totals) becomes minus the workers' rows: every
	 * sum is zero from here on. Workers write those rows only for exchanges
	 * of this slot, and a slot is freed only when it has none left. The
	 * master adds to the last row only for a slot that holds the same
	 * address in both generations of a reload, never one restarted here.
	 */
	metrics_slot_add_delta(carried, &zero, carried);
	for (uint32_t w = 0; w < nw; w++)
		metrics_slot_add_delta(carried, &zero, shm_stats(d.shm, w, b));
	atomic_store_explicit(&sb->checks_ok, 0, memory_order_relaxed);
	atomic_store_explicit(&sb->checks_failed, 0, memory_order_relaxed);
}

static void
slot_name(uint32_t b, char *buf, size_t len)
{
	struct net_addr a;
	uint32_t seq;

	if (shm_slot_read(d.shm, b, &a, &seq))
		discover_format(&a, buf, len);
	else
		snprintf(buf, len, "?");
}

static void
slot_drain(const struct name *n, uint32_t b, const char *why)
{
	char shown[PARSE_HOST_MAX + 8];

	shm_slot_set_state(d.shm, b, SHM_SLOT_DRAINING);
	shm_set_live(d.shm, b, false);
	d.drain_since[b] = proc_now_ns();
	d.overdue_logged[b] = false;
	slot_name(b, shown, sizeof(shown));
	log_info("discovered backend removed, draining", "name", n->host, "backend", shown,
	    "reason", why, NULL);
	d.hooks.removed(b);
	if (!evtimer_pending(d.reap_timer, NULL)) {
		struct timeval tv = proc_timeval(REAP_NS);

		evtimer_add(d.reap_timer, &tv);
	}
}

/* The checker's own copy of the slot's address, for its probes and logs. */
static void
slot_claim(struct name *n, uint32_t b, const struct discover_target *t)
{
	struct config_backend *be = &d.cfg->backends[b];
	struct net_addr old;
	uint32_t seq;

	if (!shm_slot_read(d.shm, b, &old, &seq) || !discover_same(&old, &t->a))
		slot_counters_restart(b);
	/*
	 * Always a new sequence, even for the address the slot held before: the
	 * name dropped it, so a drain or maint set for it is stale
	 * (admin_slot_stale()) whether or not the master's sweep saw the gap.
	 */
	shm_slot_write(d.shm, b, &t->a);
	atomic_store_explicit(&d.shm->backends[b].slot_weight, slot_weight(n, t),
	    memory_order_relaxed);
	discover_set_backend(be, &t->a);
	shm_slot_set_state(d.shm, b, SHM_SLOT_ACTIVE);
	log_info("discovered backend added, checking it", "name", n->host, "backend",
	    be->addr.hostport, NULL);
	d.hooks.added(b);
}

/* Find the slot of n holding address a in one of the states wanted; UINT32_MAX if none. */
static uint32_t
slot_find(const struct name *n, const struct net_addr *a, bool active, bool draining)
{
	for (uint32_t b = n->first; b < n->first + n->max; b++) {
		enum shm_slot st = shm_slot_state(d.shm, b);
		struct net_addr cur;
		uint32_t seq;

		if (!((active && st == SHM_SLOT_ACTIVE) || (draining && st == SHM_SLOT_DRAINING)))
			continue;
		if (shm_slot_read(d.shm, b, &cur, &seq) && discover_same(&cur, a))
			return b;
	}
	return UINT32_MAX;
}

/* A free slot, preferably the one that last held a (its counters then carry on). */
static uint32_t
slot_free(const struct name *n, const struct net_addr *a)
{
	uint32_t any = UINT32_MAX;

	for (uint32_t b = n->first; b < n->first + n->max; b++) {
		struct net_addr cur;
		uint32_t seq;

		if (shm_slot_state(d.shm, b) != SHM_SLOT_FREE)
			continue;
		if (shm_slot_read(d.shm, b, &cur, &seq) && discover_same(&cur, a))
			return b;
		if (any == UINT32_MAX)
			any = b;
	}
	return any;
}

/* Is a (or its address and port) another backend's: a listed one, or another name's slot? */
static bool
held_elsewhere(const struct name *n, const struct net_addr *a)
{
	for (uint32_t b = 0; b < d.cfg->nbackends; b++) {
		const struct config_backend *be = &d.cfg->backends[b];
		struct net_addr cur;
		uint32_t seq;

		if (b >= n->first && b < n->first + n->max)
			continue;
		if (be->discover == CONFIG_DISCOVER_NONE) {
			if (be->salen == 0)
				continue;
			net_addr_set(&cur, (const struct sockaddr *)&be->sa);
			if (discover_same(&cur, a))
				return true;
			continue;
		}
		if (shm_slot_state(d.shm, b) != SHM_SLOT_FREE && shm_slot_read(d.shm, b, &cur, &seq) &&
		    discover_same(&cur, a))
			return true;
	}
	return false;
}

/*
 * Make n's slots hold exactly its want[]: drain those no longer in it, then
 * claim a slot for each new address. Addresses with no free slot yet (the
 * others still draining) are claimed when a drain ends (reap_cb()).
 */
static void
apply(struct name *n)
{
	const struct discover_target *t = n->want;
	size_t count = n->nwant;
	bool weights_changed = false, waiting = false, clash = false;

	for (uint32_t b = n->first; b < n->first + n->max; b++) {
		struct net_addr cur;
		uint32_t seq;
		bool keep = false;

		if (shm_slot_state(d.shm, b) != SHM_SLOT_ACTIVE || !shm_slot_read(d.shm, b, &cur, &seq))
			continue;
		for (size_t i = 0; i < count && !keep; i++)
			keep = discover_same(&cur, &t[i].a);
		if (!keep)
			slot_drain(n, b, count == 0 ? "no answer kept" : "no longer in the answer");
	}
	for (size_t i = 0; i < count; i++) {
		uint32_t b = slot_find(n, &t[i].a, true, false);
		char shown[PARSE_HOST_MAX + 8];

		if (b != UINT32_MAX) {
			_Atomic uint32_t *w = &d.shm->backends[b].slot_weight;

			if (atomic_load_explicit(w, memory_order_relaxed) != slot_weight(n, &t[i])) {
				atomic_store_explicit(w, slot_weight(n, &t[i]), memory_order_relaxed);
				weights_changed = true;
			}
			continue;
		}
		discover_format(&t[i].a, shown, sizeof(shown));
		/* Two series with one label would be refused by Prometheus, and one server counted twice. */
		if (held_elsewhere(n, &t[i].a)) {
			if (!n->clash_logged)
				log_warn("discovered address is another backend's already; left out",
				    "name", n->host, "backend", shown, NULL);
			clash = true;
			continue;
		}
		/* Back before its drain ended: active again, and checked again first. */
		if ((b = slot_find(n, &t[i].a, false, true)) == UINT32_MAX &&
		    (b = slot_free(n, &t[i].a)) == UINT32_MAX) {
			if (!n->waiting)
				log_warn("discovered backend waits for a slot (others still draining)",
				    "name", n->host, "backend", shown, NULL);
			waiting = true;
			continue;
		}
		slot_claim(n, b, &t[i]);
	}
	n->waiting = waiting;
	n->clash_logged = clash;
	if (weights_changed)
		d.hooks.removed(UINT32_MAX);	/* republish with the new weights */
}

/*
 * Draining slots whose exchanges are done are free again; then names whose
 * new addresses waited for a slot get them. A slot still busy after
 * proxy.shutdown_timeout stays draining (its counters and idle connections
 * belong to the old address until the last exchange ends), logged once.
 */
static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = proc_now_ns(), limit = d.cfg->proxy.shutdown_timeout_ns;
	bool more = false;

	for (uint32_t b = 0; b < d.cfg->nbackends; b++) {
		char shown[PARSE_HOST_MAX + 8];

		if (shm_slot_state(d.shm, b) != SHM_SLOT_DRAINING)
			continue;
		if (metrics_in_flight(d.shm, b) <= 0) {
			shm_slot_set_state(d.shm, b, SHM_SLOT_FREE);
			continue;
		}
		more = true;
		if (now - d.drain_since[b] >= limit && !d.overdue_logged[b]) {
			d.overdue_logged[b] = true;
			slot_name(b, shown, sizeof(shown));
			log_warn("removed backend still has exchanges after proxy.shutdown_timeout; its "
			    "slot stays taken until they end", "backend", shown, NULL);
		}
	}
	for (size_t i = 0; i < d.nnames; i++)
		if (d.names[i].waiting)
			apply(&d.names[i]);
	if (more) {
		struct timeval tv = proc_timeval(REAP_NS);

		evtimer_add(d.reap_timer, &tv);
	}
}

/* ---- lookups ---- */

static void lookup_start(struct name *n);

static void
schedule_next(struct name *n, int64_t ns)
{
	struct timeval tv = proc_timeval(ns);

	evtimer_add(n->timer, &tv);
}

static void
count_result(const struct name *n, enum dns_result r)
{
	atomic_fetch_add_explicit(&d.shm->backends[n->first].dns_lookups[r], 1,
	    memory_order_relaxed);
}

static void
check_settled(void)
{
	if (d.settled_told || !discover_settled())
		return;
	d.settled_told = true;
	if (d.hooks.settled != NULL)
		d.hooks.settled();
}

/*
 * Has family f (0: A, 1: AAAA) of n gone without an answer for resolve.hold?
 * Logged once per outage when it has addresses to drop (held).
 */
static bool
family_expired(struct name *n, int f, bool held, int64_t now)
{
	static const char *const qtype[2] = { "A", "AAAA" };
	bool expired = now - n->family_ok_ns[f] >= d.cfg->resolve.hold_ns;

	if (expired && held && !n->family_dropped[f])
		log_warn("DNS queries of one address family failed for longer than resolve.hold; "
		    "dropping its addresses", "name", n->host, "type", qtype[f], NULL);
	n->family_dropped[f] = expired;
	return expired;
}

/* Which families the last answer applied has addresses of. */
static void
families_held(const struct name *n, bool held[2])
{
	held[0] = held[1] = false;
	for (size_t i = 0; i < n->nwant; i++)
		held[n->want[i].a.family == AF_INET6] = true;
}

/*
 * "discover": "dns" with one family's query failing on the way (the other
 * answered): that family's addresses of the last answer stay in the new one,
 * for resolve.hold after its last good query, as the whole answer does when
 * every query fails. Past it they are dropped (logged once per outage), so a
 * resolver that keeps failing AAAA while A answers does not keep old IPv6
 * addresses forever.
 */
static void
keep_failed_families(struct name *n, int64_t now)
{
	bool failed[2] = { n->failed_v4, n->failed_v6 }, held[2];

	families_held(n, held);
	for (int f = 0; f < 2; f++)
		failed[f] = failed[f] && !family_expired(n, f, held[f], now);
	for (size_t i = 0; i < n->nwant && n->ntargets < DISCOVER_TARGETS_MAX; i++)
		if ((n->want[i].a.family == AF_INET && failed[0]) ||
		    (n->want[i].a.family == AF_INET6 && failed[1]))
			n->targets[n->ntargets++] = n->want[i];
}

/*
 * Every query failed, within the name's hold: a family whose own queries have
 * failed for longer than resolve.hold (it failed alone before the other did)
 * still goes at its time. True if want changed.
 */
static bool
drop_expired_families(struct name *n, int64_t now)
{
	bool held[2], gone[2];
	size_t k = 0;

	families_held(n, held);
	for (int f = 0; f < 2; f++)
		gone[f] = held[f] && family_expired(n, f, true, now);
	if (!gone[0] && !gone[1])
		return false;
	for (size_t i = 0; i < n->nwant; i++)
		if (!gone[n->want[i].a.family == AF_INET6])
			n->want[k++] = n->want[i];
	n->nwant = k;
	return true;
}

/* Every query of n's lookup is back: apply the answer, or keep the last one. */
static void
lookup_done(struct name *n)
{
	const struct config_resolve *r = &d.cfg->resolve;
	int64_t now = proc_now_ns(), next;
	char count[16], cut[16];
	size_t ncut = 0, k;

	/*
	 * A query that failed on the way must not drain what it would have
	 * answered. "discover": "dns": the last answer's addresses of that family
	 * stay. "srv": a target that could not be resolved fails the lookup as a
	 * whole (the last answer stays, for resolve.hold), but not the first one.
	 */
	if (!n->srv && n->result == DNS_OK && n->have_answer && (n->failed_v4 || n->failed_v6))
		keep_failed_families(n, now);
	if (n->srv && n->result == DNS_OK && n->target_failed != DNS_OK &&
	    (n->have_answer || n->ntargets == 0))
		n->result = n->target_failed;
	else if (n->result == DNS_OK && n->ntargets == 0)
		n->result = DNS_NODATA;		/* SRV records whose targets have no address */
	count_result(n, n->result);
	if (n->result == DNS_OK) {
		k = discover_settle(n->targets, n->ntargets, n->max, n->srv, &ncut);
		if (ncut != n->last_cut && ncut > 0) {
			snprintf(count, sizeof(count), "%zu", k + ncut);
			snprintf(cut, sizeof(cut), "%u", n->max);
			log_warn("discovered name has more addresses than max_backends; using the first",
			    "name", n->host, "addresses", count, "max_backends", cut, NULL);
		}
		n->last_cut = ncut;
		if (n->last_logged != DNS_OK && n->first_done)
			log_info("DNS lookup answers again", "name", n->host, NULL);
		n->last_logged = DNS_OK;
		n->have_answer = true;
		n->last_ok_ns = now;
		memcpy(n->want, n->targets, k * sizeof(n->want[0]));
		n->nwant = k;
		apply(n);
		next = (int64_t)n->ttl * NS_PER_SEC;
		next = next < r->min_interval_ns ? r->min_interval_ns :
		    next > r->max_interval_ns ? r->max_interval_ns : next;
	} else {
		bool expired = n->have_answer && now - n->last_ok_ns >= r->hold_ns;

		if (n->last_logged != n->result) {
			log_warn(n->have_answer ? "DNS lookup failed, keeping the last answer" :
			    "DNS lookup failed", "name", n->host, "result", dns_result_str(n->result),
			    NULL);
			n->last_logged = n->result;
		}
		if (expired) {
			log_warn("DNS lookups failed for longer than resolve.hold; dropping the last "
			    "answer", "name", n->host, NULL);
			n->have_answer = false;
			n->nwant = 0;
			apply(n);
		} else if (!n->srv && n->have_answer && drop_expired_families(n, now)) {
			apply(n);
		}
		next = r->min_interval_ns;
	}
	n->first_done = true;
	schedule_next(n, next);
	check_settled();
}

/* The combined result of a name's queries: any answer wins, then a real failure over NODATA. */
static void
merge_result(struct name *n, enum dns_result r)
{
	if (n->result == DNS_OK || r == DNS_OK)
		n->result = DNS_OK;
	else if (n->result == DNS_RESULTS || n->result == DNS_NODATA)
		n->result = r;
}

/* A failure that says nothing about the name (unlike NXDOMAIN and NODATA). */
static bool
transient(enum dns_result r)
{
	return r != DNS_OK && r != DNS_NXDOMAIN && r != DNS_NODATA;
}

static enum dns_result
from_ares(int status)
{
	switch (status) {
	case ARES_SUCCESS: return DNS_OK;
	case ARES_ENODATA: return DNS_NODATA;
	case ARES_ENOTFOUND: return DNS_NXDOMAIN;
	case ARES_ESERVFAIL: return DNS_SERVFAIL;
	case ARES_EREFUSED: return DNS_REFUSED;
	case ARES_ETIMEOUT: return DNS_TIMEOUT;
	case ARES_EBADRESP: case ARES_EFORMERR: return DNS_MALFORMED;
	default: return DNS_ERROR;
	}
}

static void query_send(struct name *n, const char *qname, uint16_t qtype, uint16_t port,
    uint32_t weight);

static void
query_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct query *q = arg;
	struct name *n = q->n;
	struct dns_answer *ans = NULL;
	enum dns_result r = from_ares(status);

	if (status == ARES_EDESTRUCTION) {	/* the channel is going away: touch nothing */
		free(q);
		return;
	}
	if (r == DNS_ERROR)
		log_debug("DNS query failed", "name", q->qname, "error", ares_strerror(status), NULL);
	/*
	 * Each callback its own answer: the SRV branch below sends more queries,
	 * and a query that fails at once calls back from inside ares_query().
	 */
	if (status == ARES_SUCCESS && abuf != NULL && alen > 0) {
		if ((ans = malloc(sizeof(*ans))) == NULL) {
			r = DNS_ERROR;
		} else {
			dns_answer_parse(abuf, (size_t)alen, q->qname, q->qtype, ans);
			r = ans->result;
		}
	} else if (r == DNS_OK) {
		r = DNS_MALFORMED;	/* success without an answer to read */
	}
	if (r == DNS_OK && ans->dropped > 0)
		log_warn("DNS answer has more records than are read; the rest is left out", "name",
		    q->qname, NULL);
	if (r == DNS_OK) {
		if (q->qtype == DNS_TYPE_SRV) {
			uint16_t prio = discover_srv_priority(ans);

			/* Each target of the best priority: its addresses from the additional section, or asked. */
			for (size_t i = 0; i < ans->n; i++) {
				const struct dns_record *s = &ans->rr[i];
				size_t before = n->ntargets;

				if (s->priority != prio || s->name[0] == '\0' || s->port == 0)
					continue;
				discover_add_addresses(n->targets, &n->ntargets, DISCOVER_TARGETS_MAX, ans,
				    s->name, s->port, s->weight);
				if (n->ntargets == before) {
					query_send(n, s->name, DNS_TYPE_A, s->port, s->weight);
					query_send(n, s->name, DNS_TYPE_AAAA, s->port, s->weight);
				}
			}
		} else {
			discover_add_addresses(n->targets, &n->ntargets, DISCOVER_TARGETS_MAX, ans,
			    NULL, q->port, q->weight);
		}
		if (ans->min_ttl < n->ttl)
			n->ttl = ans->min_ttl;
	}
	/* An SRV lookup's result is the SRV query's; its targets' failures are noted apart. */
	if (q->qtype == DNS_TYPE_SRV || !n->srv)
		merge_result(n, r);
	if (!transient(r) && !n->srv && (q->qtype == DNS_TYPE_A || q->qtype == DNS_TYPE_AAAA)) {
		n->family_ok_ns[q->qtype == DNS_TYPE_AAAA] = proc_now_ns();
		n->family_dropped[q->qtype == DNS_TYPE_AAAA] = false;
	}
	if (transient(r)) {
		if (n->srv && q->qtype != DNS_TYPE_SRV)
			n->target_failed = r;
		else if (q->qtype == DNS_TYPE_A)
			n->failed_v4 = true;
		else if (q->qtype == DNS_TYPE_AAAA)
			n->failed_v6 = true;
	}
	free(ans);
	free(q);
	if (--n->pending == 0)
		lookup_done(n);
}

static void
query_send(struct name *n, const char *qname, uint16_t qtype, uint16_t port, uint32_t weight)
{
	struct query *q = calloc(1, sizeof(*q));

	if (q == NULL) {
		merge_result(n, DNS_ERROR);
		return;
	}
	q->n = n;
	q->qtype = qtype;
	q->port = port;
	q->weight = weight;
	strlcpy(q->qname, qname, sizeof(q->qname));
	n->pending++;
	/* ares_query, not ares_search: the name is used as written, as HAProxy's resolvers do. */
	ares_query(d.channel, q->qname, 1 /* C_IN */, qtype, query_cb, q);
	ares_rearm();
}

static void
lookup_start(struct name *n)
{
	if (n->pending > 0)
		return;
	n->ntargets = 0;
	n->result = DNS_RESULTS;	/* none yet */
	n->failed_v4 = n->failed_v6 = false;
	n->target_failed = DNS_OK;
	n->ttl = UINT32_MAX;
	n->pending++;		/* held while the queries go out: one may fail at once */
	if (n->srv) {
		query_send(n, n->host, DNS_TYPE_SRV, 0, 0);
	} else {
		query_send(n, n->host, DNS_TYPE_A, n->entry->addr.port, n->entry->weight);
		query_send(n, n->host, DNS_TYPE_AAAA, n->entry->addr.port, n->entry->weight);
	}
	if (--n->pending == 0)
		lookup_done(n);
}

static void
lookup_cb(evutil_socket_t fd, short what, void *arg)
{
	lookup_start(arg);
}

/* ---- start and stop ---- */

static int
channel_init(void)
{
	const struct config_resolve *r = &d.cfg->resolve;
	struct ares_options opts;
	struct ares_addr_port_node nodes[CONFIG_RESOLVERS_MAX];
	int64_t per_try = r->timeout_ns / 3;
	int rc;

	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		log_error("DNS: cannot initialise c-ares", "error", ares_strerror(rc), NULL);
		return -1;
	}
	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = sock_state_cb;
	/* Two tries, the second waiting twice as long (c-ares doubles): about resolve.timeout in all. */
	opts.timeout = (int)(per_try / 1000000 > 0 ? per_try / 1000000 : 1);
	opts.tries = 2;
	/*
	 * Without NOCHECKRESP, c-ares 1.18 turns a resolver's SERVFAIL or REFUSED
	 * into "could not contact DNS servers": take the response code as the
	 * lookup's result instead (the next lookup comes min_interval later).
	 */
	opts.flags = ARES_FLAG_NOCHECKRESP;
	if ((rc = ares_init_options(&d.channel, &opts, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
	    ARES_OPT_TRIES | ARES_OPT_FLAGS)) != ARES_SUCCESS) {
		log_error("DNS: cannot start the resolver", "error", ares_strerror(rc), NULL);
		ares_library_cleanup();
		return -1;
	}
	d.channel_ok = true;
	if (r->nresolvers == 0)
		return 0;		/* /etc/resolv.conf, as c-ares read it */
	memset(nodes, 0, sizeof(nodes));
	for (size_t i = 0; i < r->nresolvers; i++) {
		nodes[i].next = i + 1 < r->nresolvers ? &nodes[i + 1] : NULL;
		nodes[i].family = r->resolvers[i].family;
		memcpy(r->resolvers[i].family == AF_INET ? (void *)&nodes[i].addr.addr4 :
		    (void *)&nodes[i].addr.addr6, r->resolvers[i].bytes,
		    r->resolvers[i].family == AF_INET ? 4 : 16);
		nodes[i].udp_port = nodes[i].tcp_port = r->resolvers[i].port;
	}
	if ((rc = ares_set_servers_ports(d.channel, nodes)) != ARES_SUCCESS) {
		log_error("DNS: cannot set the resolvers", "error", ares_strerror(rc), NULL);
		return -1;
	}
	return 0;
}

/*
 * Slots that already hold a backend: a checker started again after it died,
 * or one the master gave the last generation's answer to at a reload. They
 * are the name's answer until its first lookup says otherwise (as if held
 * after a failure), and draining ones are watched until they are done.
 */
static void
adopt(struct name *n)
{
	int64_t now = proc_now_ns();

	for (uint32_t b = n->first; b < n->first + n->max; b++) {
		struct config_backend *be = &d.cfg->backends[b];
		enum shm_slot st = shm_slot_state(d.shm, b);
		struct net_addr a;
		uint32_t seq;

		if (st == SHM_SLOT_FREE || !shm_slot_read(d.shm, b, &a, &seq))
			continue;
		discover_set_backend(be, &a);
		if (st == SHM_SLOT_DRAINING) {
			struct timeval tv = proc_timeval(REAP_NS);

			d.drain_since[b] = now;
			evtimer_add(d.reap_timer, &tv);
			continue;
		}
		if (n->nwant < DISCOVER_TARGETS_MAX) {
			n->want[n->nwant].a = a;
			n->want[n->nwant].weight = atomic_load_explicit(&d.shm->backends[b].slot_weight,
			    memory_order_relaxed);
			n->nwant++;
		}
		n->have_answer = true;
		n->last_ok_ns = now;
		n->family_ok_ns[0] = n->family_ok_ns[1] = now;
	}
}

int
discover_start(struct event_base *base, struct config *cfg, struct shm *shm,
    const struct discover_hooks *hooks)
{
	size_t count = 0;

	memset(&d, 0, sizeof(d));
	d.base = base;
	d.cfg = cfg;
	d.shm = shm;
	d.hooks = *hooks;
	for (size_t i = 0; i < cfg->nbackends; i++)
		count += cfg->backends[i].discover != CONFIG_DISCOVER_NONE &&
		    cfg->backends[i].discover_first == i;
	if (count == 0)
		return 0;
	if ((d.names = calloc(count, sizeof(*d.names))) == NULL ||
	    (d.drain_since = calloc(cfg->nbackends, sizeof(*d.drain_since))) == NULL ||
	    (d.overdue_logged = calloc(cfg->nbackends, sizeof(*d.overdue_logged))) == NULL ||
	    (d.ares_timer = evtimer_new(base, ares_timer_cb, NULL)) == NULL ||
	    (d.reap_timer = evtimer_new(base, reap_cb, NULL)) == NULL) {
		log_error("DNS: out of memory", NULL);
		return -1;
	}
	if (channel_init() == -1)
		return -1;
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *be = &cfg->backends[i];
		struct name *n;

		if (be->discover == CONFIG_DISCOVER_NONE || be->discover_first != i)
			continue;
		n = &d.names[d.nnames++];
		n->first = (uint32_t)i;
		n->max = be->discover_max;
		n->entry = be;
		n->srv = be->discover == CONFIG_DISCOVER_SRV;
		n->host = n->srv ? be->srv : be->addr.host;
		n->last_logged = DNS_OK;
		if ((n->timer = evtimer_new(base, lookup_cb, n)) == NULL) {
			log_error("DNS: out of memory", NULL);
			return -1;
		}
	}
	/*
	 * Slots held already are the checker's at once (its first round probes
	 * them); the lookups start from the loop, after that round began, so a
	 * lookup that fails at once cannot make the first pass look complete.
	 */
	for (size_t i = 0; i < d.nnames; i++) {
		adopt(&d.names[i]);
		schedule_next(&d.names[i], 0);
	}
	return 0;
}

bool
discover_settled(void)
{
	for (size_t i = 0; i < d.nnames; i++)
		if (!d.names[i].first_done)
			return false;
	return true;
}

void
discover_stop(void)
{
	/* Queries still out call back with ARES_EDESTRUCTION and free their context. */
	if (d.channel_ok) {
		ares_destroy(d.channel);
		ares_library_cleanup();
	}
	for (int i = 0; i < SOCKETS_MAX; i++)
		if (d.socks[i].ev != NULL)
			event_free(d.socks[i].ev);
	for (size_t i = 0; i < d.nnames; i++)
		if (d.names[i].timer != NULL)
			event_free(d.names[i].timer);
	if (d.ares_timer != NULL)
		event_free(d.ares_timer);
	if (d.reap_timer != NULL)
		event_free(d.reap_timer);
	free(d.names);
	free(d.drain_since);
	free(d.overdue_logged);
	memset(&d, 0, sizeof(d));
}

/* ---- the workers' side ---- */

int
discover_sync(struct config_backend *be, const struct shm *shm, uint32_t slot, uint32_t *seen)
{
	struct net_addr a;
	uint32_t seq;

	if (shm_slot_state(shm, slot) != SHM_SLOT_ACTIVE || !shm_slot_read(shm, slot, &a, &seq))
		return -1;
	if (seq == *seen && be->salen > 0)
		return 0;
	discover_set_backend(be, &a);
	*seen = seq;
	return 1;
}
