/* Prometheus metrics: recording in the hot path, summing over workers, rendering text 0.0.4. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

#include <event2/buffer.h>
#include <llhttp.h>

#include "roundguard/admin.h"
#include "roundguard/discover.h"
#include "roundguard/metrics.h"
#include "roundguard/schedule.h"
#include "roundguard/tls.h"

_Static_assert(METRICS_LISTENERS_MAX >= CONFIG_LISTENERS_MAX,
    "every listener has a row of TLS handshake counters");

/* Upper bounds of request_duration_milliseconds, in ms and in ns. */
static const char *const go_le[METRICS_GO_BUCKETS] = {
	"10", "50", "200", "500", "800", "1200", "2000", "3500", "5000", "10000",
};
static const int64_t go_bound_ns[METRICS_GO_BUCKETS] = {
	10000000, 50000000, 200000000, 500000000, 800000000,
	1200000000, 2000000000, 3500000000, 5000000000, 10000000000,
};

/* Upper bounds of roundguard_request_duration_seconds, in s and in ns. */
static const char *const sec_le[METRICS_SEC_BUCKETS] = {
	"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
	"0.25", "0.5", "1", "2.5", "5", "7.5", "10",
};
static const int64_t sec_bound_ns[METRICS_SEC_BUCKETS] = {
	1000000, 2500000, 5000000, 10000000, 25000000, 50000000, 100000000,
	250000000, 500000000, 1000000000, 2500000000, 5000000000, 7500000000, 10000000000,
};

/* Labels of the codes slots: the exact codes in index order, then the classes. */
static const char *const code_labels[METRICS_CODES] = {
	"200", "201", "202", "204", "206",
	"301", "302", "303", "304", "307", "308",
	"400", "401", "403", "404", "405", "408", "409", "413", "414", "415", "422", "429",
	"431", "499",
	"500", "501", "502", "503", "504",
	"1xx", "2xx", "3xx", "4xx", "5xx",
};
#define CODE_CLASS_1XX	30	/* index of "1xx"; "5xx" is CODE_CLASS_1XX + 4 */

static const char *const method_labels[METRICS_METHODS] = {
	"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER",
};

static const char *const upstream_error_labels[METRICS_UPSTREAM_ERRORS] = {
	"connect_refused", "connect_timeout", "connect_failed", "reset", "timeout",
	"bad_response", "tls",
};

static const char *const tls_result_labels[METRICS_TLS_RESULTS] = {
	"ok", "resumed", "no_shared_cipher", "unsupported_version", "unknown_name", "plain_http",
	"timeout", "closed", "other",
};

static const char *const tls_version_labels[METRICS_TLS_VERSIONS] = {
	"TLSv1.2", "TLSv1.3", "unknown",
};

int
metrics_code_index(int status)
{
	switch (status) {
	case 200: return 0;
	case 201: return 1;
	case 202: return 2;
	case 204: return 3;
	case 206: return 4;
	case 301: return 5;
	case 302: return 6;
	case 303: return 7;
	case 304: return 8;
	case 307: return 9;
	case 308: return 10;
	case 400: return 11;
	case 401: return 12;
	case 403: return 13;
	case 404: return 14;
	case 405: return 15;
	case 408: return 16;
	case 409: return 17;
	case 413: return 18;
	case 414: return 19;
	case 415: return 20;
	case 422: return 21;
	case 429: return 22;
	case 431: return 23;
	case 499: return 24;
	case 500: return 25;
	case 501: return 26;
	case 502: return 27;
	case 503: return 28;
	case 504: return 29;
	default:
		break;
	}
	if (status < 100 || status > 599)
		return CODE_CLASS_1XX + 4;	/* nonsense from a backend counts as a server error */
	return CODE_CLASS_1XX + status / 100 - 1;
}

const char *
metrics_code_label(int index)
{
	if (index < 0 || index >= METRICS_CODES)
		return "5xx";
	return code_labels[index];
}

enum metrics_method
metrics_method_index(int llhttp_method)
{
	switch (llhttp_method) {
	case HTTP_GET: return METRICS_GET;
	case HTTP_POST: return METRICS_POST;
	case HTTP_PUT: return METRICS_PUT;
	case HTTP_DELETE: return METRICS_DELETE;
	case HTTP_PATCH: return METRICS_PATCH;
	case HTTP_HEAD: return METRICS_HEAD;
	case HTTP_OPTIONS: return METRICS_OPTIONS;
	default: return METRICS_OTHER;
	}
}

const char *
metrics_method_label(enum metrics_method m)
{
	if ((unsigned)m >= METRICS_METHODS)
		return "OTHER";
	return method_labels[m];
}

const char *
metrics_upstream_error_str(enum metrics_upstream_error e)
{
	if ((unsigned)e >= METRICS_UPSTREAM_ERRORS)
		return "unknown";
	return upstream_error_labels[e];
}

const char *
metrics_tls_result_str(enum metrics_tls_result r)
{
	if ((unsigned)r >= METRICS_TLS_RESULTS)
		return "other";
	return tls_result_labels[r];
}

const char *
metrics_tls_version_str(enum metrics_tls_version v)
{
	if ((unsigned)v >= METRICS_TLS_VERSIONS)
		return "unknown";
	return tls_version_labels[v];
}

enum metrics_tls_version
metrics_tls_version(int wire_version, enum metrics_tls_result r)
{
	/* Refused at the version check or before any TLS: OpenSSL holds the client's word. */
	if (r == METRICS_TLS_UNSUPPORTED_VERSION || r == METRICS_TLS_PLAIN_HTTP)
		return METRICS_TLS_VUNKNOWN;
	switch (wire_version) {
	case CONFIG_TLS_1_2: return METRICS_TLS_V1_2;
	case CONFIG_TLS_1_3: return METRICS_TLS_V1_3;
	default: return METRICS_TLS_VUNKNOWN;
	}
}

static inline void
bump(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Index of the first bound that d is not above, or n (+Inf). */
static inline int
bucket(const int64_t *bound_ns, int n, int64_t d)
{
	int i = 0;

	while (i < n && d > bound_ns[i])
		i++;
	return i;
}

void
metrics_record(struct metrics_slot *s, int llhttp_method, int status, int64_t duration_ns)
{
	int code = metrics_code_index(status);
	enum metrics_method m = metrics_method_index(llhttp_method);
	/* Whatever the code label counts as a 5xx (nonsense included) is a failure. */
	enum metrics_outcome o = status >= 500 || status < 100 ? METRICS_FAIL : METRICS_SUCCESS;
	uint64_t us;

	if (duration_ns < 0)
		duration_ns = 0;
	us = (uint64_t)duration_ns / 1000;
	bump(&s->codes[code], 1);
	bump(&s->go_hist[m][o][bucket(go_bound_ns, METRICS_GO_BUCKETS, duration_ns)], 1);
	bump(&s->go_sum_us[m][o], us);
	bump(&s->sec_hist[bucket(sec_bound_ns, METRICS_SEC_BUCKETS, duration_ns)], 1);
	bump(&s->sec_sum_us, us);
}

void
metrics_slot_tunnels_gone(struct metrics_slot *s)
{
	atomic_store_explicit(&s->tunnels[1], atomic_load_explicit(&s->tunnels[0],
	    memory_order_relaxed), memory_order_relaxed);
	atomic_store_explicit(&s->active[1], atomic_load_explicit(&s->active[0],
	    memory_order_relaxed), memory_order_relaxed);
}

void
metrics_record_upstream_error(struct metrics_slot *s, enum metrics_upstream_error e)
{
	if ((unsigned)e < METRICS_UPSTREAM_ERRORS)
		bump(&s->upstream_errors[e], 1);
}

void
metrics_record_tls_handshake(struct shm_worker *w, int listener, enum metrics_tls_version v,
    enum metrics_tls_result r)
{
	if (listener >= 0 && listener < METRICS_LISTENERS_MAX &&
	    (unsigned)v < METRICS_TLS_VERSIONS && (unsigned)r < METRICS_TLS_RESULTS)
		bump(&w->tls[listener].handshakes[v][r], 1);
}

static inline uint64_t
load(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* dst[i] += src[i] for n counters. */
/* dst[i] += now[i] - then[i] (then NULL: 0). */
static inline uint32_t
load32(const _Atomic uint32_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void
add_n(_Atomic uint64_t *dst, const _Atomic uint64_t *now, const _Atomic uint64_t *then, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bump(&dst[i], load(&now[i]) - (then != NULL ? load(&then[i]) : 0));
}

#define THEN(field) (then != NULL ? (then)->field : NULL)

void
metrics_slot_add_delta(struct metrics_slot *dst, const struct metrics_slot *now,
    const struct metrics_slot *then)
{
	add_n(dst->codes, now->codes, THEN(codes), METRICS_CODES);
	for (int m = 0; m < METRICS_METHODS; m++) {
		for (int o = 0; o < METRICS_OUTCOMES; o++)
			add_n(dst->go_hist[m][o], now->go_hist[m][o], THEN(go_hist[m][o]),
			    METRICS_GO_BUCKETS + 1);
		add_n(dst->go_sum_us[m], now->go_sum_us[m], THEN(go_sum_us[m]), METRICS_OUTCOMES);
	}
	add_n(dst->sec_hist, now->sec_hist, THEN(sec_hist), METRICS_SEC_BUCKETS + 1);
	add_n(&dst->sec_sum_us, &now->sec_sum_us, then != NULL ? &then->sec_sum_us : NULL, 1);
	add_n(dst->upstream_errors, now->upstream_errors, THEN(upstream_errors),
	    METRICS_UPSTREAM_ERRORS);
	add_n(dst->tunnels, now->tunnels, THEN(tunnels), 2);
	add_n(dst->active, now->active, THEN(active), 2);
}

void
metrics_tls_add_delta(struct metrics_tls *dst, const struct metrics_tls *now,
    const struct metrics_tls *then)
{
	for (int v = 0; v < METRICS_TLS_VERSIONS; v++)
		add_n(dst->handshakes[v], now->handshakes[v], THEN(handshakes[v]),
		    METRICS_TLS_RESULTS);
	add_n(dst->proxy_headers, now->proxy_headers, THEN(proxy_headers), METRICS_PP_RESULTS);
}

void
metrics_slot_add(struct metrics_slot *dst, const struct metrics_slot *src)
{
	metrics_slot_add_delta(dst, src, NULL);
}

/* One backend's counters summed over every row of the segment, as plain numbers. */
struct metrics_sum {
	uint64_t codes[METRICS_CODES];
	uint64_t go_hist[METRICS_METHODS][METRICS_OUTCOMES][METRICS_GO_BUCKETS + 1];
	uint64_t go_sum_us[METRICS_METHODS][METRICS_OUTCOMES];
	uint64_t sec_hist[METRICS_SEC_BUCKETS + 1];
	uint64_t sec_sum_us;
	uint64_t upstream_errors[METRICS_UPSTREAM_ERRORS];
	uint64_t tunnels[2];
	uint64_t active[2];
};

static void
sum_n(uint64_t *dst, const _Atomic uint64_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] += load(&src[i]);
}

static void
sum_slot(struct metrics_sum *d, const struct metrics_slot *s)
{
	sum_n(d->codes, s->codes, METRICS_CODES);
	for (int m = 0; m < METRICS_METHODS; m++) {
		for (int o = 0; o < METRICS_OUTCOMES; o++)
			sum_n(d->go_hist[m][o], s->go_hist[m][o], METRICS_GO_BUCKETS + 1);
		sum_n(d->go_sum_us[m], s->go_sum_us[m], METRICS_OUTCOMES);
	}
	sum_n(d->sec_hist, s->sec_hist, METRICS_SEC_BUCKETS + 1);
	sum_n(&d->sec_sum_us, &s->sec_sum_us, 1);
	sum_n(d->upstream_errors, s->upstream_errors, METRICS_UPSTREAM_ERRORS);
	sum_n(d->tunnels, s->tunnels, 2);
	sum_n(d->active, s->active, 2);
}

int
metrics_escape_label(struct evbuffer *out, const char *s)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *esc;

		switch (*s) {
		case '\\': esc = "\\\\"; break;
		case '"': esc = "\\\""; break;
		case '\n': esc = "\\n"; break;
		default: continue;
		}
		if (evbuffer_add(out, run, (size_t)(s - run)) == -1 || evbuffer_add(out, esc, 2) == -1)
			return -1;
		run = s + 1;
	}
	return evbuffer_add(out, run, (size_t)(s - run));
}

/* Escape s as a label value into dst (truncated to fit, always terminated). */
static void
escape_into(char *dst, size_t dstlen, const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++) {
		char c = *s == '\n' ? 'n' : *s;
		bool esc = *s == '\\' || *s == '"' || *s == '\n';

		if (n + 1 + esc >= dstlen)
			break;
		if (esc)
			dst[n++] = '\\';
		dst[n++] = c;
	}
	dst[n] = '\0';
}

/* The families rendered per backend, each collected in its own buffer during the one pass. */
enum family {
	FAM_GO_DURATION,
	FAM_UP,
	FAM_REQUESTS,
	FAM_DURATION,
	FAM_UPSTREAM_ERRORS,
	FAM_HEALTH_CHECKS,
	FAM_TUNNELS_ACTIVE,
	FAM_TUNNELS,
	FAM_ADMIN_STATE,
	FAM_WEIGHT,
	FAM_ACTIVE,
	FAM_COUNT,
};

static const char *const family_head[FAM_COUNT] = {
	[FAM_GO_DURATION] =
	    "# HELP request_duration_milliseconds Time from request to answer in milliseconds, "
	    "by method, target and outcome (name and buckets of the Go version).\n"
	    "# TYPE request_duration_milliseconds histogram\n",
	[FAM_UP] =
	    "# HELP roundguard_backend_up Whether the backend is live (1) or not (0).\n"
	    "# TYPE roundguard_backend_up gauge\n",
	[FAM_REQUESTS] =
	    "# HELP roundguard_requests_total Requests answered, by backend and status code.\n"
	    "# TYPE roundguard_requests_total counter\n",
	[FAM_DURATION] =
	    "# HELP roundguard_request_duration_seconds Time from request to answer, by backend.\n"
	    "# TYPE roundguard_request_duration_seconds histogram\n",
	[FAM_UPSTREAM_ERRORS] =
	    "# HELP roundguard_upstream_errors_total Failed exchanges with a backend, by reason.\n"
	    "# TYPE roundguard_upstream_errors_total counter\n",
	[FAM_HEALTH_CHECKS] =
	    "# HELP roundguard_health_checks_total Health-check probes, by backend and result.\n"
	    "# TYPE roundguard_health_checks_total counter\n",
	[FAM_TUNNELS_ACTIVE] =
	    "# HELP roundguard_tunnels_active Tunnels open after a 101 (WebSocket and other "
	    "upgrades), by backend.\n"
	    "# TYPE roundguard_tunnels_active gauge\n",
	[FAM_TUNNELS] =
	    "# HELP roundguard_tunnels_total Tunnels opened after a 101, by backend.\n"
	    "# TYPE roundguard_tunnels_total counter\n",
	[FAM_ADMIN_STATE] =
	    "# HELP roundguard_backend_admin_state What roundguardctl made of the backend: 1 for "
	    "its state (ready, drain, maint), 0 for the others.\n"
	    "# TYPE roundguard_backend_admin_state gauge\n",
	[FAM_WEIGHT] =
	    "# HELP roundguard_backend_weight The backend's effective weight in the round robin "
	    "(slow start applied; 0 while down, drained or in maintenance).\n"
	    "# TYPE roundguard_backend_weight gauge\n",
	[FAM_ACTIVE] =
	    "# HELP roundguard_backend_active_connections Requests and tunnels in progress with "
	    "the backend.\n"
	    "# TYPE roundguard_backend_active_connections gauge\n",
};

/* evbuffer_add_printf that remembers a failure in *ok instead of returning it. */
static void __attribute__((format(printf, 3, 4)))
put(struct evbuffer *b, bool *ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(b, fmt, ap) < 0)
		*ok = false;
	va_end(ap);
}

/* Cumulative buckets, _sum and _count of one Go-compatible series (count > 0). */
static void
render_go_series(struct evbuffer *b, bool *ok, const char *target, enum metrics_method m,
    enum metrics_outcome o, const uint64_t *hist, uint64_t sum_us, uint64_t count)
{
	const char *method = method_labels[m];
	const char *status = o == METRICS_FAIL ? "fail" : "success";
	uint64_t cum = 0;

	for (int i = 0; i <= METRICS_GO_BUCKETS; i++) {
		cum += hist[i];
		put(b, ok, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"%s\","
		    "target=\"%s\",status=\"%s\",le=\"%s\"} %" PRIu64 "\n",
		    method, target, status, i < METRICS_GO_BUCKETS ? go_le[i] : "+Inf", cum);
	}
	put(b, ok, "request_duration_milliseconds_sum{scope=\"proxy\",method=\"%s\","
	    "target=\"%s\",status=\"%s\"} %" PRIu64 ".%03" PRIu64 "\n",
	    method, target, status, sum_us / 1000, sum_us % 1000);
	put(b, ok, "request_duration_milliseconds_count{scope=\"proxy\",method=\"%s\","
	    "target=\"%s\",status=\"%s\"} %" PRIu64 "\n", method, target, status, count);
}

/* Every per-backend family's lines for backend i, into the family buffers. */
static void
render_backend(struct evbuffer **fam, bool *ok, const struct shm *shm, uint32_t i,
    const char *label, bool up)
{
	struct metrics_sum sum;
	const struct shm_backend *sb = &shm->backends[i];
	uint64_t cum = 0;

	memset(&sum, 0, sizeof(sum));
	for (uint32_t w = 0; w <= shm->hdr->nworkers; w++)
		sum_slot(&sum, shm_stats(shm, w, i));

	for (int m = 0; m < METRICS_METHODS; m++) {
		for (int o = 0; o < METRICS_OUTCOMES; o++) {
			uint64_t count = 0;

			for (int k = 0; k <= METRICS_GO_BUCKETS; k++)
				count += sum.go_hist[m][o][k];
			if (count > 0)
				render_go_series(fam[FAM_GO_DURATION], ok, label,
				    (enum metrics_method)m, (enum metrics_outcome)o,
				    sum.go_hist[m][o], sum.go_sum_us[m][o], count);
		}
	}

	put(fam[FAM_UP], ok, "roundguard_backend_up{backend=\"%s\"} %d\n", label, up ? 1 : 0);

	for (int c = 0; c < METRICS_CODES; c++)
		if (sum.codes[c] > 0)
			put(fam[FAM_REQUESTS], ok,
			    "roundguard_requests_total{backend=\"%s\",code=\"%s\"} %" PRIu64 "\n",
			    label, code_labels[c], sum.codes[c]);

	for (int k = 0; k <= METRICS_SEC_BUCKETS; k++) {
		cum += sum.sec_hist[k];
		put(fam[FAM_DURATION], ok, "roundguard_request_duration_seconds_bucket{backend=\"%s\","
		    "le=\"%s\"} %" PRIu64 "\n",
		    label, k < METRICS_SEC_BUCKETS ? sec_le[k] : "+Inf", cum);
	}
	put(fam[FAM_DURATION], ok, "roundguard_request_duration_seconds_sum{backend=\"%s\"} "
	    "%" PRIu64 ".%06" PRIu64 "\n", label, sum.sec_sum_us / 1000000, sum.sec_sum_us % 1000000);
	put(fam[FAM_DURATION], ok, "roundguard_request_duration_seconds_count{backend=\"%s\"} "
	    "%" PRIu64 "\n", label, cum);

	for (int e = 0; e < METRICS_UPSTREAM_ERRORS; e++)
		if (sum.upstream_errors[e] > 0)
			put(fam[FAM_UPSTREAM_ERRORS], ok, "roundguard_upstream_errors_total{backend=\"%s\","
			    "reason=\"%s\"} %" PRIu64 "\n",
			    label, upstream_error_labels[e], sum.upstream_errors[e]);

	put(fam[FAM_HEALTH_CHECKS], ok, "roundguard_health_checks_total{backend=\"%s\","
	    "result=\"success\"} %" PRIu64 "\n", label, load(&sb->checks_ok));
	put(fam[FAM_HEALTH_CHECKS], ok, "roundguard_health_checks_total{backend=\"%s\","
	    "result=\"failure\"} %" PRIu64 "\n", label, load(&sb->checks_failed));
	/* Opened and closed are read one after the other while workers count: never below 0. */
	put(fam[FAM_TUNNELS_ACTIVE], ok, "roundguard_tunnels_active{backend=\"%s\"} %" PRIu64 "\n",
	    label, sum.tunnels[0] > sum.tunnels[1] ? sum.tunnels[0] - sum.tunnels[1] : 0);
	put(fam[FAM_TUNNELS], ok, "roundguard_tunnels_total{backend=\"%s\"} %" PRIu64 "\n",
	    label, sum.tunnels[0]);
	for (unsigned a = 0; a < ADMIN_STATES; a++)
		put(fam[FAM_ADMIN_STATE], ok, "roundguard_backend_admin_state{backend=\"%s\","
		    "state=\"%s\"} %d\n", label, admin_state_str((enum admin_state)a),
		    load32(&sb->admin) == a);
	{
		uint32_t tenths = load32(&sb->effective);

		put(fam[FAM_WEIGHT], ok, "roundguard_backend_weight{backend=\"%s\"} %u.%u\n", label,
		    tenths / SCHEDULE_RAMP_STEPS, tenths % SCHEDULE_RAMP_STEPS);
	}
	put(fam[FAM_ACTIVE], ok, "roundguard_backend_active_connections{backend=\"%s\"} %" PRIu64
	    "\n", label, sum.active[0] > sum.active[1] ? sum.active[0] - sum.active[1] : 0);
}

static const char *const pp_result_labels[METRICS_PP_RESULTS] = {
	"v1", "v2", "local", "missing", "invalid", "timeout", "refused",
};

/* roundguard_proxy_protocol_headers_total: each proxy_protocol listener's, summed over rows. */
static void
render_proxy_headers(struct evbuffer *out, bool *ok, const struct shm *shm,
    const struct config *cfg)
{
	char label[2 * sizeof(cfg->listeners[0].name) + 1];
	bool any = false;

	for (size_t l = 0; l < cfg->nlisteners; l++)
		any |= cfg->listeners[l].proxy_protocol;
	if (!any)
		return;
	put(out, ok, "# HELP roundguard_proxy_protocol_headers_total Connections to listeners with "
	    "proxy_protocol, by listener and what their PROXY header was (v1, v2, local) or why "
	    "they were closed.\n"
	    "# TYPE roundguard_proxy_protocol_headers_total counter\n");
	for (size_t l = 0; l < cfg->nlisteners && l < METRICS_LISTENERS_MAX; l++) {
		uint64_t sum[METRICS_PP_RESULTS] = { 0 };

		if (!cfg->listeners[l].proxy_protocol)
			continue;
		for (uint32_t w = 0; w <= shm->hdr->nworkers; w++)
			sum_n(sum, shm->workers[w].tls[l].proxy_headers, METRICS_PP_RESULTS);
		escape_into(label, sizeof(label), cfg->listeners[l].name);
		for (int r = 0; r < METRICS_PP_RESULTS; r++)
			put(out, ok, "roundguard_proxy_protocol_headers_total{listener=\"%s\","
			    "result=\"%s\"} %" PRIu64 "\n", label, pp_result_labels[r], sum[r]);
	}
}

/* roundguard_dns_lookups_total: each discovered name's lookups by result (the checker's). */
static void
render_dns_lookups(struct evbuffer *out, bool *ok, const struct shm *shm,
    const struct config *cfg)
{
	char label[2 * PARSE_HOST_MAX + 1];
	bool head = false;

	for (size_t i = 0; i < cfg->nbackends && i < shm->hdr->nbackends; i++) {
		const struct config_backend *be = &cfg->backends[i];

		if (be->discover == CONFIG_DISCOVER_NONE || be->discover_first != i)
			continue;
		if (!head)
			put(out, ok, "# HELP roundguard_dns_lookups_total Lookups of discovered names, "
			    "by name and result.\n"
			    "# TYPE roundguard_dns_lookups_total counter\n");
		head = true;
		escape_into(label, sizeof(label), be->discover == CONFIG_DISCOVER_SRV ? be->srv :
		    be->addr.host);
		for (int r = 0; r < DNS_RESULTS; r++)
			put(out, ok, "roundguard_dns_lookups_total{name=\"%s\",result=\"%s\"} %" PRIu64
			    "\n", label, dns_result_str((enum dns_result)r),
			    load(&shm->backends[i].dns_lookups[r]));
	}
}

/* roundguard_tls_handshakes_total: each TLS listener's counters summed over every row. */
static void
render_tls_handshakes(struct evbuffer *out, bool *ok, const struct shm *shm,
    const struct config *cfg)
{
	char label[2 * sizeof(cfg->listeners[0].name) + 1];

	put(out, ok, "# HELP roundguard_tls_handshakes_total TLS handshakes on the listeners, "
	    "by listener, protocol version and result (ok, resumed, or why it failed).\n"
	    "# TYPE roundguard_tls_handshakes_total counter\n");
	for (size_t l = 0; l < cfg->nlisteners && l < METRICS_LISTENERS_MAX; l++) {
		uint64_t sum[METRICS_TLS_VERSIONS][METRICS_TLS_RESULTS];

		if (!cfg->listeners[l].tls_set)
			continue;
		memset(sum, 0, sizeof(sum));
		for (uint32_t w = 0; w <= shm->hdr->nworkers; w++)
			for (int v = 0; v < METRICS_TLS_VERSIONS; v++)
				sum_n(sum[v], shm->workers[w].tls[l].handshakes[v],
				    METRICS_TLS_RESULTS);
		escape_into(label, sizeof(label), cfg->listeners[l].name);
		for (int v = 0; v < METRICS_TLS_VERSIONS; v++)
			for (int r = 0; r < METRICS_TLS_RESULTS; r++)
				if (sum[v][r] > 0)
					put(out, ok, "roundguard_tls_handshakes_total{listener=\"%s\","
					    "version=\"%s\",result=\"%s\"} %" PRIu64 "\n", label,
					    tls_version_labels[v], tls_result_labels[r], sum[v][r]);
	}
}

static inline const char *
or_empty(const char *s)
{
	return s != NULL ? s : "";
}

/* Whether two certificates make the same series (listener and name). */
static bool
same_cert_labels(const struct tls_cert_expiry *a, const struct tls_cert_expiry *b)
{
	return strcmp(or_empty(a->listener), or_empty(b->listener)) == 0 &&
	    strcmp(or_empty(a->name), or_empty(b->name)) == 0;
}

/*
 * roundguard_tls_certificate_expiry_timestamp_seconds, one series per
 * listener and name in the order given. Certificates that share both (RSA
 * beside ECDSA for one name) are one series: the earliest notAfter, which
 * is the one an expiry alert is about.
 */
static void
render_cert_expiry(struct evbuffer *out, bool *ok, const struct tls_cert_expiry *certs,
    size_t ncerts)
{
	char listener[2 * CONFIG_NAME_MAX + 1], name[2 * 256 + 1];

	put(out, ok, "# HELP roundguard_tls_certificate_expiry_timestamp_seconds When each "
	    "certificate of the TLS listeners expires (notAfter), in seconds since the Unix epoch, "
	    "by listener and the certificate's first name.\n"
	    "# TYPE roundguard_tls_certificate_expiry_timestamp_seconds gauge\n");
	for (size_t i = 0; certs != NULL && i < ncerts; i++) {
		int64_t t = certs[i].not_after;
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = same_cert_labels(&certs[j], &certs[i]);
		if (seen)
			continue;
		for (size_t j = i + 1; j < ncerts; j++)
			if (same_cert_labels(&certs[j], &certs[i]) && certs[j].not_after < t)
				t = certs[j].not_after;
		escape_into(listener, sizeof(listener), or_empty(certs[i].listener));
		escape_into(name, sizeof(name), or_empty(certs[i].name));
		put(out, ok, "roundguard_tls_certificate_expiry_timestamp_seconds{listener=\"%s\","
		    "name=\"%s\"} %" PRId64 "\n", listener, name, t);
	}
}

int64_t
metrics_in_flight(const struct shm *shm, uint32_t b)
{
	uint64_t begun = 0, ended = 0;

	for (uint32_t w = 0; w <= shm->hdr->nworkers; w++) {
		const struct metrics_slot *s = shm_stats(shm, w, b);

		begun += load(&s->active[0]);
		ended += load(&s->active[1]);
	}
	return (int64_t)(begun - ended);
}

bool
metrics_backend_name(const struct shm *shm, const struct config *cfg, uint32_t b, char *buf,
    size_t buflen)
{
	struct net_addr a;
	uint32_t seq;

	if (cfg->backends[b].discover == CONFIG_DISCOVER_NONE) {
		strlcpy(buf, cfg->backends[b].addr.hostport, buflen);
		return true;
	}
	if (shm_slot_state(shm, b) != SHM_SLOT_ACTIVE || !shm_slot_read(shm, b, &a, &seq))
		return false;
	discover_format(&a, buf, buflen);
	return true;
}

int
metrics_render(struct evbuffer *out, const struct shm *shm, const struct config *cfg,
    const struct tls_cert_expiry *certs, size_t ncerts, const char *version)
{
	struct evbuffer *fam[FAM_COUNT] = { NULL };
	char label[2 * sizeof(cfg->backends[0].addr.hostport) + 1];
	uint32_t n = shm->hdr->nbackends, live = 0, shown;
	uint64_t sum[SHM_COUNTERS] = { 0 };
	bool ok = true;

	if (cfg->nbackends < n)
		n = (uint32_t)cfg->nbackends;
	shown = n;
	for (int f = 0; f < FAM_COUNT; f++) {
		if ((fam[f] = evbuffer_new()) == NULL) {
			ok = false;
			goto done;
		}
		if (evbuffer_add(fam[f], family_head[f], strlen(family_head[f])) == -1)
			ok = false;
	}

	/* One pass over the backends; each live bit is read once, for both families using it. */
	for (uint32_t i = 0; i < n; i++) {
		bool up = shm_is_live(shm, i);
		char name[sizeof(cfg->backends[0].addr.hostport)];

		/* A discovered name's slot has series only while it holds a backend. */
		if (!metrics_backend_name(shm, cfg, i, name, sizeof(name))) {
			shown--;
			continue;
		}
		live += up;
		escape_into(label, sizeof(label), name);
		render_backend(fam, &ok, shm, i, label, up);
	}

	put(out, &ok, "# HELP proxy_count Number of backends by availability "
	    "(name of the Go version).\n"
	    "# TYPE proxy_count gauge\n"
	    "proxy_count{availability=\"available\"} %" PRIu32 "\n"
	    "proxy_count{availability=\"unavailable\"} %" PRIu32 "\n", live, shown - live);
	for (int f = 0; f < FAM_COUNT; f++)
		if (evbuffer_add_buffer(out, fam[f]) == -1)
			ok = false;

	for (uint32_t w = 0; w <= shm->hdr->nworkers; w++)
		for (int k = 0; k < SHM_COUNTERS; k++)
			sum[k] += atomic_load_explicit(&shm->workers[w].counters[k],
			    memory_order_relaxed);
	put(out, &ok, "# HELP roundguard_no_backend_total Requests answered 503 because no backend "
	    "was live.\n"
	    "# TYPE roundguard_no_backend_total counter\n"
	    "roundguard_no_backend_total %" PRIu64 "\n", sum[SHM_NO_BACKEND]);
	put(out, &ok, "# HELP roundguard_header_fields_dropped_total Header fields not forwarded: "
	    "request header names with an underscore, trailer fields of requests and answers.\n"
	    "# TYPE roundguard_header_fields_dropped_total counter\n"
	    "roundguard_header_fields_dropped_total{reason=\"underscore\"} %" PRIu64 "\n"
	    "roundguard_header_fields_dropped_total{reason=\"trailer\"} %" PRIu64 "\n",
	    sum[SHM_DROPPED_UNDERSCORE], sum[SHM_DROPPED_TRAILER]);
	render_tls_handshakes(out, &ok, shm, cfg);
	render_proxy_headers(out, &ok, shm, cfg);
	render_dns_lookups(out, &ok, shm, cfg);
	render_cert_expiry(out, &ok, certs, ncerts);
	put(out, &ok, "# HELP roundguard_workers Number of worker processes.\n"
	    "# TYPE roundguard_workers gauge\n"
	    "roundguard_workers %" PRIu32 "\n", shm->hdr->nworkers);
	put(out, &ok, "# HELP roundguard_worker_restarts_total Worker processes restarted after "
	    "they died.\n"
	    "# TYPE roundguard_worker_restarts_total counter\n"
	    "roundguard_worker_restarts_total %" PRIu64 "\n",
	    atomic_load_explicit(&shm->hdr->worker_restarts, memory_order_relaxed));
	put(out, &ok, "# HELP roundguard_build_info Version of roundguard; the value is always 1.\n"
	    "# TYPE roundguard_build_info gauge\n"
	    "roundguard_build_info{version=\"");
	if (metrics_escape_label(out, version != NULL ? version : "") == -1)
		ok = false;
	put(out, &ok, "\"} 1\n");
done:
	for (int f = 0; f < FAM_COUNT; f++)
		if (fam[f] != NULL)
			evbuffer_free(fam[f]);
	return ok ? 0 : -1;
}
