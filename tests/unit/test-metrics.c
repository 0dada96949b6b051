/* Unit tests for metric recording, summing over workers and the text exposition. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/buffer.h>
#include <llhttp.h>

#include "roundguard/config.h"
#include "roundguard/metrics.h"
#include "roundguard/shm.h"
#include "roundguard/tls.h"
#include "unit.h"

#define MS	INT64_C(1000000)

/* A segment in ordinary memory, a configuration built by hand and certificates' expiries. */
struct fixture {
	void *base;
	struct shm shm;
	struct config cfg;
	const struct tls_cert_expiry *certs;
	size_t ncerts;
};

static void
fixture_init(struct fixture *f, uint32_t nworkers, const char *const *hostports, size_t n)
{
	size_t size = shm_layout_size((uint32_t)n, nworkers);

	/* Slots are aligned to 64 bytes (UBSan checks it); the layout size is a multiple of 64. */
	f->base = aligned_alloc(64, size);
	ck_assert_ptr_nonnull(f->base);
	memset(f->base, 0, size);
	shm_layout_init(f->base, size, (uint32_t)n, nworkers);
	ck_assert_int_eq(shm_attach(&f->shm, f->base, size), 0);

	config_defaults(&f->cfg);
	f->cfg.backends = calloc(n > 0 ? n : 1, sizeof(*f->cfg.backends));
	ck_assert_ptr_nonnull(f->cfg.backends);
	f->cfg.nbackends = n;
	for (size_t i = 0; i < n; i++)
		snprintf(f->cfg.backends[i].addr.hostport, sizeof(f->cfg.backends[i].addr.hostport),
		    "%s", hostports[i]);
	f->certs = NULL;
	f->ncerts = 0;
}

/* Listeners named names[i], TLS where tls[i] is. */
static void
fixture_listeners(struct fixture *f, const char *const *names, const bool *tls, size_t n)
{
	f->cfg.listeners = calloc(n, sizeof(*f->cfg.listeners));
	ck_assert_ptr_nonnull(f->cfg.listeners);
	f->cfg.nlisteners = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(f->cfg.listeners[i].name, sizeof(f->cfg.listeners[i].name), "%s", names[i]);
		f->cfg.listeners[i].tls_set = tls[i];
	}
}

/* Add n handshakes to worker w's counters, as n calls of metrics_record_tls_handshake(). */
static void
handshakes(struct fixture *f, uint32_t w, int listener, enum metrics_tls_version v,
    enum metrics_tls_result r, int n)
{
	for (int i = 0; i < n; i++)
		metrics_record_tls_handshake(&f->shm.workers[w], listener, v, r);
}

static void
fixture_free(struct fixture *f)
{
	config_free(&f->cfg);
	free(f->base);
}

/* Render into a NUL-terminated string the caller frees. */
static char *
render(const struct fixture *f, const char *version)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(metrics_render(b, &f->shm, &f->cfg, f->certs, f->ncerts, version), 0);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(evbuffer_remove(b, s, len), (int)len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

/* Whether text holds line as a whole line. */
static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

#define ck_line(text, line) \
	ck_assert_msg(has_line((text), (line)), "missing line: %s", (line))
#define ck_no(text, sub) \
	ck_assert_msg(strstr((text), (sub)) == NULL, "unexpected: %s", (sub))

/* The standard scene: three backends (one with a quote and a backslash), two workers. */
static const char *const scene_hosts[] = { "10.0.0.1:8001", "we\"ird\\host:80", "[::1]:8003" };
/* Its listeners: a plain one and two TLS ones (one name needing escapes), and their certificates. */
static const char *const scene_listeners[] = { "plain", "https", "in\"ternal" };
static const bool scene_tls[] = { false, true, true };
static const struct tls_cert_expiry scene_certs[] = {
	{ "https", "a.test", 1767225600 },
	{ "https", "*.b.test", 1800000000 },
	{ "https", "a.test", 1760000000 },	/* RSA beside ECDSA: one series, the earlier */
	{ "in\"ternal", "", 1700000000 },	/* a certificate without a name */
};

static void
scene(struct fixture *f)
{
	struct shm *s;

	fixture_init(f, 2, scene_hosts, 3);
	s = &f->shm;
	/* Backend 0, over both workers and the carried totals. */
	metrics_record(shm_stats(s, 0, 0), HTTP_GET, 200, 5 * MS);
	metrics_record(shm_stats(s, 0, 0), HTTP_GET, 200, 30 * MS);
	metrics_record(shm_stats(s, 1, 0), HTTP_GET, 200, 5 * MS);
	metrics_record(shm_stats(s, 1, 0), HTTP_POST, 503, 1500 * MS);
	metrics_record(shm_stats(s, 2, 0), HTTP_GET, 404, 12000 * MS);
	metrics_record_upstream_error(shm_stats(s, 0, 0), METRICS_ERR_CONNECT_REFUSED);
	metrics_record_upstream_error(shm_stats(s, 0, 0), METRICS_ERR_CONNECT_REFUSED);
	metrics_record_upstream_error(shm_stats(s, 2, 0), METRICS_ERR_TIMEOUT);
	/* Backend 1: classes and the other methods. */
	metrics_record(shm_stats(s, 1, 1), HTTP_HEAD, 418, 1 * MS);
	metrics_record(shm_stats(s, 1, 1), HTTP_DELETE, 599, 2 * MS);
	metrics_record(shm_stats(s, 0, 1), HTTP_PROPFIND, 207, 3 * MS);
	metrics_record(shm_stats(s, 0, 1), HTTP_OPTIONS, 101, 0);
	/* Backend 2 served nothing. */
	shm_set_live(s, 0, true);
	shm_set_live(s, 2, true);
	atomic_store(&s->backends[0].checks_ok, 10);
	atomic_store(&s->backends[0].checks_failed, 1);
	atomic_store(&s->backends[1].checks_failed, 7);
	atomic_store(&s->backends[2].checks_ok, 3);
	atomic_store(&s->workers[0].counters[SHM_NO_BACKEND], 2);
	atomic_store(&s->workers[1].counters[SHM_NO_BACKEND], 3);
	atomic_store(&s->workers[2].counters[SHM_NO_BACKEND], 4);
	atomic_store(&s->hdr->worker_restarts, 5);
	/* TLS handshakes over both workers and the carried row; listener 0 is plain. */
	fixture_listeners(f, scene_listeners, scene_tls, 3);
	handshakes(f, 0, 1, METRICS_TLS_V1_3, METRICS_TLS_OK, 3);
	handshakes(f, 1, 1, METRICS_TLS_V1_3, METRICS_TLS_OK, 4);
	handshakes(f, 2, 1, METRICS_TLS_V1_3, METRICS_TLS_OK, 10);
	handshakes(f, 0, 1, METRICS_TLS_V1_3, METRICS_TLS_RESUMED, 2);
	handshakes(f, 1, 1, METRICS_TLS_V1_2, METRICS_TLS_OK, 1);
	handshakes(f, 1, 1, METRICS_TLS_VUNKNOWN, METRICS_TLS_UNSUPPORTED_VERSION, 5);
	handshakes(f, 0, 2, METRICS_TLS_VUNKNOWN, METRICS_TLS_PLAIN_HTTP, 1);
	handshakes(f, 1, 2, METRICS_TLS_V1_2, METRICS_TLS_NO_SHARED_CIPHER, 6);
	handshakes(f, 0, 0, METRICS_TLS_V1_3, METRICS_TLS_OK, 99);	/* never rendered */
	f->certs = scene_certs;
	f->ncerts = sizeof(scene_certs) / sizeof(scene_certs[0]);
}

START_TEST(code_index_exact_and_classes)
{
	static const int exact[] = {
		200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405,
		408, 409, 413, 414, 415, 422, 429, 431, 499, 500, 501, 502, 503, 504,
	};
	static const struct { int status; const char *label; } classes[] = {
		{ 100, "1xx" }, { 101, "1xx" }, { 199, "1xx" }, { 203, "2xx" }, { 299, "2xx" },
		{ 300, "3xx" }, { 399, "3xx" }, { 402, "4xx" }, { 418, "4xx" }, { 498, "4xx" },
		{ 505, "5xx" }, { 599, "5xx" }, { 600, "5xx" }, { 99, "5xx" }, { 0, "5xx" },
		{ -1, "5xx" }, { 1000, "5xx" },
	};
	char buf[8];
	int seen[METRICS_CODES] = { 0 };

	ck_assert_int_eq((int)(sizeof(exact) / sizeof(exact[0])), 30);
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
		int idx = metrics_code_index(exact[i]);

		ck_assert_int_ge(idx, 0);
		ck_assert_int_lt(idx, 30);
		snprintf(buf, sizeof(buf), "%d", exact[i]);
		ck_assert_str_eq(metrics_code_label(idx), buf);
		ck_assert_int_eq(seen[idx]++, 0);
	}
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		int idx = metrics_code_index(classes[i].status);

		ck_assert_int_ge(idx, 30);
		ck_assert_int_lt(idx, METRICS_CODES);
		ck_assert_str_eq(metrics_code_label(idx), classes[i].label);
	}
	ck_assert_str_eq(metrics_code_label(30), "1xx");
	ck_assert_str_eq(metrics_code_label(34), "5xx");
}
END_TEST

START_TEST(method_index_and_labels)
{
	ck_assert_int_eq(metrics_method_index(HTTP_GET), METRICS_GET);
	ck_assert_int_eq(metrics_method_index(HTTP_POST), METRICS_POST);
	ck_assert_int_eq(metrics_method_index(HTTP_PUT), METRICS_PUT);
	ck_assert_int_eq(metrics_method_index(HTTP_DELETE), METRICS_DELETE);
	ck_assert_int_eq(metrics_method_index(HTTP_PATCH), METRICS_PATCH);
	ck_assert_int_eq(metrics_method_index(HTTP_HEAD), METRICS_HEAD);
	ck_assert_int_eq(metrics_method_index(HTTP_OPTIONS), METRICS_OPTIONS);
	ck_assert_int_eq(metrics_method_index(HTTP_CONNECT), METRICS_OTHER);
	ck_assert_int_eq(metrics_method_index(HTTP_TRACE), METRICS_OTHER);
	ck_assert_int_eq(metrics_method_index(HTTP_PROPFIND), METRICS_OTHER);
	ck_assert_int_eq(metrics_method_index(-1), METRICS_OTHER);
	ck_assert_int_eq(metrics_method_index(9999), METRICS_OTHER);
	ck_assert_str_eq(metrics_method_label(METRICS_GET), "GET");
	ck_assert_str_eq(metrics_method_label(METRICS_POST), "POST");
	ck_assert_str_eq(metrics_method_label(METRICS_PUT), "PUT");
	ck_assert_str_eq(metrics_method_label(METRICS_DELETE), "DELETE");
	ck_assert_str_eq(metrics_method_label(METRICS_PATCH), "PATCH");
	ck_assert_str_eq(metrics_method_label(METRICS_HEAD), "HEAD");
	ck_assert_str_eq(metrics_method_label(METRICS_OPTIONS), "OPTIONS");
	ck_assert_str_eq(metrics_method_label(METRICS_OTHER), "OTHER");
}
END_TEST

START_TEST(upstream_error_names)
{
	ck_assert_str_eq(metrics_upstream_error_str(METRICS_ERR_CONNECT_REFUSED), "connect_refused");
	ck_assert_str_eq(metrics_upstream_error_str(METRICS_ERR_CONNECT_TIMEOUT), "connect_timeout");
	ck_assert_str_eq(metrics_upstream_error_str(METRICS_ERR_CONNECT_FAILED), "connect_failed");
	ck_assert_str_eq(metrics_upstream_error_str(METRICS_ERR_RESET), "reset");
	ck_assert_str_eq(metrics_upstream_error_str(METRICS_ERR_TIMEOUT), "timeout");
	ck_assert_str_eq(metrics_upstream_error_str(METRICS_ERR_BAD_RESPONSE), "bad_response");
}
END_TEST

START_TEST(tls_names_and_versions)
{
	static const char *const results[] = {
		"ok", "resumed", "no_shared_cipher", "unsupported_version", "unknown_name",
		"plain_http", "timeout", "closed", "other",
	};

	ck_assert_int_eq((int)(sizeof(results) / sizeof(results[0])), METRICS_TLS_RESULTS);
	for (int r = 0; r < METRICS_TLS_RESULTS; r++)
		ck_assert_str_eq(metrics_tls_result_str((enum metrics_tls_result)r), results[r]);
	ck_assert_str_eq(metrics_tls_result_str(METRICS_TLS_RESULTS), "other");
	ck_assert_str_eq(metrics_tls_version_str(METRICS_TLS_V1_2), "TLSv1.2");
	ck_assert_str_eq(metrics_tls_version_str(METRICS_TLS_V1_3), "TLSv1.3");
	ck_assert_str_eq(metrics_tls_version_str(METRICS_TLS_VUNKNOWN), "unknown");
	ck_assert_str_eq(metrics_tls_version_str(METRICS_TLS_VERSIONS), "unknown");

	/* The version agreed on, for successes and for failures after the agreement. */
	ck_assert_int_eq(metrics_tls_version(0x0303, METRICS_TLS_OK), METRICS_TLS_V1_2);
	ck_assert_int_eq(metrics_tls_version(0x0304, METRICS_TLS_RESUMED), METRICS_TLS_V1_3);
	ck_assert_int_eq(metrics_tls_version(0x0304, METRICS_TLS_UNKNOWN_NAME), METRICS_TLS_V1_3);
	ck_assert_int_eq(metrics_tls_version(0x0303, METRICS_TLS_NO_SHARED_CIPHER), METRICS_TLS_V1_2);
	ck_assert_int_eq(metrics_tls_version(0x0304, METRICS_TLS_TIMEOUT), METRICS_TLS_V1_3);
	/* None agreed (transport_version() says 0), or another number than TLS 1.2 and 1.3. */
	ck_assert_int_eq(metrics_tls_version(0, METRICS_TLS_TIMEOUT), METRICS_TLS_VUNKNOWN);
	ck_assert_int_eq(metrics_tls_version(0, METRICS_TLS_OTHER), METRICS_TLS_VUNKNOWN);
	ck_assert_int_eq(metrics_tls_version(0x0302, METRICS_TLS_CLOSED), METRICS_TLS_VUNKNOWN);
	ck_assert_int_eq(metrics_tls_version(0x0301, METRICS_TLS_OTHER), METRICS_TLS_VUNKNOWN);
	ck_assert_int_eq(metrics_tls_version(0x10000, METRICS_TLS_OTHER), METRICS_TLS_VUNKNOWN);
	/* Refused at the version check or before TLS: never a version, whatever OpenSSL holds. */
	ck_assert_int_eq(metrics_tls_version(0x0303, METRICS_TLS_UNSUPPORTED_VERSION),
	    METRICS_TLS_VUNKNOWN);
	ck_assert_int_eq(metrics_tls_version(0x0304, METRICS_TLS_PLAIN_HTTP), METRICS_TLS_VUNKNOWN);
}
END_TEST

START_TEST(record_tls_bounds)
{
	static const char *const hosts[] = { "a:1" };
	struct fixture f;
	struct shm_worker *w;

	fixture_init(&f, 1, hosts, 1);
	w = &f.shm.workers[0];
	metrics_record_tls_handshake(w, 0, METRICS_TLS_V1_3, METRICS_TLS_OK);
	metrics_record_tls_handshake(w, METRICS_LISTENERS_MAX - 1, METRICS_TLS_VUNKNOWN,
	    METRICS_TLS_OTHER);
	/* Out of range: metrics.listen (-1), past the rows, a bad version or result. */
	metrics_record_tls_handshake(w, -1, METRICS_TLS_V1_3, METRICS_TLS_OK);
	metrics_record_tls_handshake(w, METRICS_LISTENERS_MAX, METRICS_TLS_V1_3, METRICS_TLS_OK);
	metrics_record_tls_handshake(w, 0, METRICS_TLS_VERSIONS, METRICS_TLS_OK);
	metrics_record_tls_handshake(w, 0, METRICS_TLS_V1_3, METRICS_TLS_RESULTS);
	ck_assert_uint_eq(w->tls[0].handshakes[METRICS_TLS_V1_3][METRICS_TLS_OK], 1);
	ck_assert_uint_eq(w->tls[METRICS_LISTENERS_MAX - 1].handshakes[METRICS_TLS_VUNKNOWN]
	    [METRICS_TLS_OTHER], 1);
	/* Nothing else moved: the worker's other counters and the next worker's row. */
	{
		const _Atomic uint64_t *p = (const _Atomic uint64_t *)(const void *)w->tls;
		uint64_t total = 0;

		for (size_t i = 0; i < sizeof(w->tls) / (sizeof(uint64_t)); i++)
			total += p[i];
		ck_assert_uint_eq(total, 2);
	}
	ck_assert_uint_eq(w->requests, 0);
	ck_assert_uint_eq(f.shm.workers[1].tls[0].handshakes[METRICS_TLS_V1_3][METRICS_TLS_OK], 0);
	fixture_free(&f);
}
END_TEST

START_TEST(tls_add_delta)
{
	struct metrics_tls a, now, then;
	_Atomic uint64_t *pa = (_Atomic uint64_t *)(void *)&a;
	_Atomic uint64_t *pn = (_Atomic uint64_t *)(void *)&now;
	_Atomic uint64_t *pt = (_Atomic uint64_t *)(void *)&then;
	size_t n = sizeof(a) / sizeof(uint64_t);

	/* Every counter of the struct, PROXY headers too, is carried. */
	ck_assert_uint_eq(n, (size_t)METRICS_TLS_VERSIONS * METRICS_TLS_RESULTS + METRICS_PP_RESULTS);
	for (size_t i = 0; i < n; i++) {
		pa[i] = 1000 * i;
		pn[i] = 10 * i + 7;
		pt[i] = 3 * i;
	}
	metrics_tls_add_delta(&a, &now, &then);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(pa[i], 1000 * i + 7 * i + 7);
	metrics_tls_add_delta(&a, &now, NULL);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(pa[i], 1000 * i + 7 * i + 7 + 10 * i + 7);
}
END_TEST

START_TEST(record_bucket_bounds)
{
	struct metrics_slot *s = aligned_alloc(64, sizeof(*s));

	ck_assert_ptr_nonnull(s);
	memset(s, 0, sizeof(*s));
	/* A bound belongs to its own bucket (le = less or equal). */
	metrics_record(s, HTTP_GET, 200, 10 * MS);
	metrics_record(s, HTTP_GET, 200, 10 * MS + 1);
	metrics_record(s, HTTP_GET, 200, 10000 * MS);
	metrics_record(s, HTTP_GET, 200, 10000 * MS + 1);
	metrics_record(s, HTTP_GET, 200, -5);	/* a clock step: counted as 0 */
	ck_assert_uint_eq(s->go_hist[METRICS_GET][METRICS_SUCCESS][0], 2);
	ck_assert_uint_eq(s->go_hist[METRICS_GET][METRICS_SUCCESS][1], 1);
	ck_assert_uint_eq(s->go_hist[METRICS_GET][METRICS_SUCCESS][9], 1);
	ck_assert_uint_eq(s->go_hist[METRICS_GET][METRICS_SUCCESS][10], 1);
	ck_assert_uint_eq(s->sec_hist[0], 1);		/* the 0 */
	ck_assert_uint_eq(s->sec_hist[3], 1);		/* 10ms <= 0.01 */
	ck_assert_uint_eq(s->sec_hist[4], 1);		/* 10ms + 1ns <= 0.025 */
	ck_assert_uint_eq(s->sec_hist[13], 1);		/* 10s <= 10 */
	ck_assert_uint_eq(s->sec_hist[14], 1);		/* +Inf */
	ck_assert_uint_eq(s->go_sum_us[METRICS_GET][METRICS_SUCCESS], 20020000);
	ck_assert_uint_eq(s->sec_sum_us, 20020000);
	ck_assert_uint_eq(s->codes[metrics_code_index(200)], 5);

	metrics_record(s, HTTP_PATCH, 500, 1 * MS);
	metrics_record(s, HTTP_PATCH, 499, 1 * MS);
	metrics_record(s, HTTP_PATCH, 0, 1 * MS);	/* no status is a failure like a 5xx */
	ck_assert_uint_eq(s->go_hist[METRICS_PATCH][METRICS_FAIL][0], 2);
	ck_assert_uint_eq(s->go_hist[METRICS_PATCH][METRICS_SUCCESS][0], 1);
	ck_assert_uint_eq(s->go_sum_us[METRICS_PATCH][METRICS_FAIL], 2000);
	ck_assert_uint_eq(s->sec_hist[0], 4);
	ck_assert_uint_eq(s->codes[metrics_code_index(500)], 1);
	ck_assert_uint_eq(s->codes[metrics_code_index(499)], 1);
	ck_assert_uint_eq(s->codes[metrics_code_index(0)], 1);

	metrics_record_upstream_error(s, METRICS_ERR_RESET);
	metrics_record_upstream_error(s, METRICS_ERR_RESET);
	metrics_record_upstream_error(s, METRICS_UPSTREAM_ERRORS);	/* ignored */
	ck_assert_uint_eq(s->upstream_errors[METRICS_ERR_RESET], 2);
	free(s);
}
END_TEST

START_TEST(slot_add_every_counter)
{
	struct metrics_slot *a = aligned_alloc(64, sizeof(*a));
	struct metrics_slot *b = aligned_alloc(64, sizeof(*b));
	_Atomic uint64_t *pa, *pb;
	size_t n = offsetof(struct metrics_slot, upstream_errors) / sizeof(uint64_t) +
	    METRICS_UPSTREAM_ERRORS;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	/* Give every counter of both slots a distinct value, through the raw words. */
	pa = (_Atomic uint64_t *)(void *)a;
	pb = (_Atomic uint64_t *)(void *)b;
	for (size_t i = 0; i < n; i++) {
		pa[i] = i * 1000;
		pb[i] = i + 1;
	}
	metrics_slot_add(a, b);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(pa[i], i * 1000 + i + 1);
		ck_assert_uint_eq(pb[i], i + 1);
	}
	ck_assert_uint_eq(a->sec_sum_us, b->sec_sum_us + (b->sec_sum_us - 1) * 1000);
	free(a);
	free(b);
}
END_TEST

/* Tunnels: opened minus closed over every worker; a dead worker's count as closed. */
START_TEST(render_tunnels_and_dead_worker)
{
	struct fixture f;
	char *t;

	scene(&f);
	atomic_store(&shm_stats(&f.shm, 0, 0)->tunnels[0], 5);
	atomic_store(&shm_stats(&f.shm, 0, 0)->tunnels[1], 2);
	atomic_store(&shm_stats(&f.shm, 1, 0)->tunnels[0], 4);
	atomic_store(&shm_stats(&f.shm, 1, 0)->tunnels[1], 4);
	t = render(&f, "1");
	ck_line(t, "# TYPE roundguard_tunnels_active gauge");
	ck_line(t, "roundguard_tunnels_active{backend=\"10.0.0.1:8001\"} 3");
	ck_line(t, "roundguard_tunnels_total{backend=\"10.0.0.1:8001\"} 9");
	ck_line(t, "roundguard_tunnels_active{backend=\"[::1]:8003\"} 0");
	free(t);
	/* Worker 0 killed with its 3 tunnels open: the kernel closed them. */
	metrics_slot_tunnels_gone(shm_stats(&f.shm, 0, 0));
	t = render(&f, "1");
	ck_line(t, "roundguard_tunnels_active{backend=\"10.0.0.1:8001\"} 0");
	ck_line(t, "roundguard_tunnels_total{backend=\"10.0.0.1:8001\"} 9");
	free(t);
	fixture_free(&f);
}
END_TEST

START_TEST(render_scene)
{
	struct fixture f;
	char *t;

	scene(&f);
	t = render(&f, "1.2.3-test");

	ck_line(t, "# TYPE proxy_count gauge");
	ck_line(t, "proxy_count{availability=\"available\"} 2");
	ck_line(t, "proxy_count{availability=\"unavailable\"} 1");

	/* Go-compatible histogram: summed over rows 0, 1 and the carried row 2. */
	ck_line(t, "# TYPE request_duration_milliseconds histogram");
	ck_line(t, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"GET\","
	    "target=\"10.0.0.1:8001\",status=\"success\",le=\"10\"} 2");
	ck_line(t, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"GET\","
	    "target=\"10.0.0.1:8001\",status=\"success\",le=\"50\"} 3");
	ck_line(t, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"GET\","
	    "target=\"10.0.0.1:8001\",status=\"success\",le=\"10000\"} 3");
	ck_line(t, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"GET\","
	    "target=\"10.0.0.1:8001\",status=\"success\",le=\"+Inf\"} 4");
	ck_line(t, "request_duration_milliseconds_sum{scope=\"proxy\",method=\"GET\","
	    "target=\"10.0.0.1:8001\",status=\"success\"} 12040.000");
	ck_line(t, "request_duration_milliseconds_count{scope=\"proxy\",method=\"GET\","
	    "target=\"10.0.0.1:8001\",status=\"success\"} 4");
	ck_line(t, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"POST\","
	    "target=\"10.0.0.1:8001\",status=\"fail\",le=\"1200\"} 0");
	ck_line(t, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"POST\","
	    "target=\"10.0.0.1:8001\",status=\"fail\",le=\"2000\"} 1");
	ck_line(t, "request_duration_milliseconds_sum{scope=\"proxy\",method=\"POST\","
	    "target=\"10.0.0.1:8001\",status=\"fail\"} 1500.000");
	ck_line(t, "request_duration_milliseconds_count{scope=\"proxy\",method=\"POST\","
	    "target=\"10.0.0.1:8001\",status=\"fail\"} 1");
	/* Only combinations that happened. */
	ck_no(t, "method=\"GET\",target=\"10.0.0.1:8001\",status=\"fail\"");
	ck_no(t, "method=\"POST\",target=\"10.0.0.1:8001\",status=\"success\"");
	ck_no(t, "method=\"PUT\"");
	ck_no(t, "target=\"[::1]:8003\"");
	/* Methods and outcomes of backend 1, with its label escaped. */
	ck_line(t, "request_duration_milliseconds_count{scope=\"proxy\",method=\"HEAD\","
	    "target=\"we\\\"ird\\\\host:80\",status=\"success\"} 1");
	ck_line(t, "request_duration_milliseconds_count{scope=\"proxy\",method=\"DELETE\","
	    "target=\"we\\\"ird\\\\host:80\",status=\"fail\"} 1");
	ck_line(t, "request_duration_milliseconds_count{scope=\"proxy\",method=\"OTHER\","
	    "target=\"we\\\"ird\\\\host:80\",status=\"success\"} 1");
	ck_line(t, "request_duration_milliseconds_sum{scope=\"proxy\",method=\"OPTIONS\","
	    "target=\"we\\\"ird\\\\host:80\",status=\"success\"} 0.000");
	ck_line(t, "request_duration_milliseconds_sum{scope=\"proxy\",method=\"OTHER\","
	    "target=\"we\\\"ird\\\\host:80\",status=\"success\"} 3.000");

	ck_line(t, "# TYPE roundguard_backend_up gauge");
	ck_line(t, "roundguard_backend_up{backend=\"10.0.0.1:8001\"} 1");
	ck_line(t, "roundguard_backend_up{backend=\"we\\\"ird\\\\host:80\"} 0");
	ck_line(t, "roundguard_backend_up{backend=\"[::1]:8003\"} 1");

	ck_line(t, "# TYPE roundguard_requests_total counter");
	ck_line(t, "roundguard_requests_total{backend=\"10.0.0.1:8001\",code=\"200\"} 3");
	ck_line(t, "roundguard_requests_total{backend=\"10.0.0.1:8001\",code=\"404\"} 1");
	ck_line(t, "roundguard_requests_total{backend=\"10.0.0.1:8001\",code=\"503\"} 1");
	ck_line(t, "roundguard_requests_total{backend=\"we\\\"ird\\\\host:80\",code=\"1xx\"} 1");
	ck_line(t, "roundguard_requests_total{backend=\"we\\\"ird\\\\host:80\",code=\"2xx\"} 1");
	ck_line(t, "roundguard_requests_total{backend=\"we\\\"ird\\\\host:80\",code=\"4xx\"} 1");
	ck_line(t, "roundguard_requests_total{backend=\"we\\\"ird\\\\host:80\",code=\"5xx\"} 1");
	ck_no(t, "roundguard_requests_total{backend=\"10.0.0.1:8001\",code=\"201\"}");
	ck_no(t, "roundguard_requests_total{backend=\"[::1]:8003\"");

	ck_line(t, "# TYPE roundguard_request_duration_seconds histogram");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"10.0.0.1:8001\","
	    "le=\"0.0025\"} 0");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"10.0.0.1:8001\","
	    "le=\"0.005\"} 2");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"10.0.0.1:8001\","
	    "le=\"0.05\"} 3");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"10.0.0.1:8001\","
	    "le=\"2.5\"} 4");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"10.0.0.1:8001\","
	    "le=\"10\"} 4");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"10.0.0.1:8001\","
	    "le=\"+Inf\"} 5");
	ck_line(t, "roundguard_request_duration_seconds_sum{backend=\"10.0.0.1:8001\"} 13.540000");
	ck_line(t, "roundguard_request_duration_seconds_count{backend=\"10.0.0.1:8001\"} 5");
	/* A backend that served nothing still has its (zero) histogram. */
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"[::1]:8003\","
	    "le=\"0.001\"} 0");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"[::1]:8003\","
	    "le=\"+Inf\"} 0");
	ck_line(t, "roundguard_request_duration_seconds_sum{backend=\"[::1]:8003\"} 0.000000");
	ck_line(t, "roundguard_request_duration_seconds_count{backend=\"[::1]:8003\"} 0");
	ck_line(t, "roundguard_request_duration_seconds_count{backend=\"we\\\"ird\\\\host:80\"} 4");
	ck_line(t, "roundguard_request_duration_seconds_sum{backend=\"we\\\"ird\\\\host:80\"} "
	    "0.006000");

	ck_line(t, "# TYPE roundguard_upstream_errors_total counter");
	ck_line(t, "roundguard_upstream_errors_total{backend=\"10.0.0.1:8001\","
	    "reason=\"connect_refused\"} 2");
	ck_line(t, "roundguard_upstream_errors_total{backend=\"10.0.0.1:8001\",reason=\"timeout\"} 1");
	ck_no(t, "reason=\"reset\"");
	ck_no(t, "roundguard_upstream_errors_total{backend=\"[::1]:8003\"");

	ck_line(t, "# TYPE roundguard_health_checks_total counter");
	ck_line(t, "roundguard_health_checks_total{backend=\"10.0.0.1:8001\",result=\"success\"} 10");
	ck_line(t, "roundguard_health_checks_total{backend=\"10.0.0.1:8001\",result=\"failure\"} 1");
	ck_line(t, "roundguard_health_checks_total{backend=\"we\\\"ird\\\\host:80\","
	    "result=\"success\"} 0");
	ck_line(t, "roundguard_health_checks_total{backend=\"we\\\"ird\\\\host:80\","
	    "result=\"failure\"} 7");
	ck_line(t, "roundguard_health_checks_total{backend=\"[::1]:8003\",result=\"success\"} 3");

	ck_line(t, "# TYPE roundguard_no_backend_total counter");
	ck_line(t, "roundguard_no_backend_total 9");
	ck_line(t, "# TYPE roundguard_workers gauge");
	ck_line(t, "roundguard_workers 2");
	ck_line(t, "# TYPE roundguard_worker_restarts_total counter");
	ck_line(t, "roundguard_worker_restarts_total 5");
	ck_line(t, "# TYPE roundguard_build_info gauge");
	ck_line(t, "roundguard_build_info{version=\"1.2.3-test\"} 1");

	/* Handshakes: summed over both workers and the carried row, TLS listeners only. */
	ck_line(t, "# TYPE roundguard_tls_handshakes_total counter");
	ck_line(t, "roundguard_tls_handshakes_total{listener=\"https\",version=\"TLSv1.3\","
	    "result=\"ok\"} 17");
	ck_line(t, "roundguard_tls_handshakes_total{listener=\"https\",version=\"TLSv1.3\","
	    "result=\"resumed\"} 2");
	ck_line(t, "roundguard_tls_handshakes_total{listener=\"https\",version=\"TLSv1.2\","
	    "result=\"ok\"} 1");
	ck_line(t, "roundguard_tls_handshakes_total{listener=\"https\",version=\"unknown\","
	    "result=\"unsupported_version\"} 5");
	ck_line(t, "roundguard_tls_handshakes_total{listener=\"in\\\"ternal\",version=\"unknown\","
	    "result=\"plain_http\"} 1");
	ck_line(t, "roundguard_tls_handshakes_total{listener=\"in\\\"ternal\",version=\"TLSv1.2\","
	    "result=\"no_shared_cipher\"} 6");
	ck_no(t, "listener=\"plain\"");
	ck_no(t, "result=\"timeout\"");
	ck_no(t, "version=\"TLSv1.2\",result=\"resumed\"");

	/* Expiry: one series per listener and name, the earlier of two certificates for a.test. */
	ck_line(t, "# TYPE roundguard_tls_certificate_expiry_timestamp_seconds gauge");
	ck_line(t, "roundguard_tls_certificate_expiry_timestamp_seconds{listener=\"https\","
	    "name=\"a.test\"} 1760000000");
	ck_line(t, "roundguard_tls_certificate_expiry_timestamp_seconds{listener=\"https\","
	    "name=\"*.b.test\"} 1800000000");
	ck_line(t, "roundguard_tls_certificate_expiry_timestamp_seconds{listener=\"in\\\"ternal\","
	    "name=\"\"} 1700000000");
	ck_no(t, "1767225600");
	free(t);
	fixture_free(&f);
}
END_TEST

START_TEST(render_empty_families_keep_help)
{
	static const char *const hosts[] = { "127.0.0.1:8001" };
	struct fixture f;
	char *t;

	fixture_init(&f, 1, hosts, 1);
	t = render(&f, "0.1.0");
	ck_line(t, "# HELP request_duration_milliseconds Time from request to answer in "
	    "milliseconds, by method, target and outcome (name and buckets of the Go version).");
	ck_line(t, "# TYPE request_duration_milliseconds histogram");
	ck_no(t, "request_duration_milliseconds_");
	ck_line(t, "# TYPE roundguard_requests_total counter");
	ck_no(t, "roundguard_requests_total{");
	ck_line(t, "# TYPE roundguard_upstream_errors_total counter");
	ck_no(t, "roundguard_upstream_errors_total{");
	ck_line(t, "proxy_count{availability=\"available\"} 0");
	ck_line(t, "proxy_count{availability=\"unavailable\"} 1");
	ck_line(t, "roundguard_backend_up{backend=\"127.0.0.1:8001\"} 0");
	ck_line(t, "roundguard_request_duration_seconds_count{backend=\"127.0.0.1:8001\"} 0");
	ck_line(t, "roundguard_no_backend_total 0");
	ck_line(t, "roundguard_workers 1");
	ck_line(t, "roundguard_worker_restarts_total 0");
	/* No TLS listener: the families are there, empty. */
	ck_line(t, "# TYPE roundguard_tls_handshakes_total counter");
	ck_no(t, "roundguard_tls_handshakes_total{");
	ck_line(t, "# TYPE roundguard_tls_certificate_expiry_timestamp_seconds gauge");
	ck_no(t, "roundguard_tls_certificate_expiry_timestamp_seconds{");
	free(t);
	fixture_free(&f);
}
END_TEST

START_TEST(render_carried_row_only)
{
	static const char *const hosts[] = { "a:1", "b:2" };
	struct fixture f;
	char *t;

	fixture_init(&f, 3, hosts, 2);
	/* Row 3 of a 3-worker segment holds the totals of an earlier generation. */
	metrics_record(shm_stats(&f.shm, 3, 1), HTTP_PUT, 201, 700 * MS);
	atomic_store(&f.shm.workers[3].counters[SHM_NO_BACKEND], 11);
	t = render(&f, "x");
	ck_line(t, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"PUT\","
	    "target=\"b:2\",status=\"success\",le=\"500\"} 0");
	ck_line(t, "request_duration_milliseconds_bucket{scope=\"proxy\",method=\"PUT\","
	    "target=\"b:2\",status=\"success\",le=\"800\"} 1");
	ck_line(t, "roundguard_requests_total{backend=\"b:2\",code=\"201\"} 1");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"b:2\",le=\"0.5\"} 0");
	ck_line(t, "roundguard_request_duration_seconds_bucket{backend=\"b:2\",le=\"1\"} 1");
	ck_line(t, "roundguard_no_backend_total 11");
	ck_line(t, "roundguard_workers 3");
	ck_no(t, "target=\"a:1\"");
	free(t);
	fixture_free(&f);
}
END_TEST

START_TEST(escape_label_values)
{
	struct evbuffer *b = evbuffer_new();
	char out[64];
	size_t n;

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(metrics_escape_label(b, "a\\b\"c\nd"), 0);
	ck_assert_int_eq(metrics_escape_label(b, ""), 0);
	ck_assert_int_eq(metrics_escape_label(b, "|plain:80|\\"), 0);
	n = evbuffer_get_length(b);
	ck_assert_uint_lt(n, sizeof(out));
	evbuffer_remove(b, out, n);
	out[n] = '\0';
	ck_assert_str_eq(out, "a\\\\b\\\"c\\nd|plain:80|\\\\");
	evbuffer_free(b);
}
END_TEST

START_TEST(render_escapes_version_and_newline)
{
	static const char *const hosts[] = { "line\nbreak:80" };
	struct fixture f;
	char *t;

	fixture_init(&f, 1, hosts, 1);
	t = render(&f, "v\"2\\beta");
	ck_line(t, "roundguard_build_info{version=\"v\\\"2\\\\beta\"} 1");
	ck_line(t, "roundguard_backend_up{backend=\"line\\nbreak:80\"} 0");
	free(t);
	fixture_free(&f);
}
END_TEST

/* The family a sample belongs to: histogram suffixes stripped when name is a histogram. */
static void
family_of(const char *name, size_t len, const char *histos, char *fam, size_t famlen)
{
	static const char *const sfx[] = { "_bucket", "_sum", "_count" };

	snprintf(fam, famlen, "%.*s", (int)len, name);
	for (size_t i = 0; i < 3; i++) {
		size_t sl = strlen(sfx[i]), fl = strlen(fam);
		char key[160];

		if (fl > sl && strcmp(fam + fl - sl, sfx[i]) == 0) {
			snprintf(key, sizeof(key), "|%.*s|", (int)(fl - sl), fam);
			if (strstr(histos, key) != NULL)
				fam[fl - sl] = '\0';
			return;
		}
	}
}

START_TEST(render_format_lines)
{
	struct fixture f;
	regex_t sample, comment;
	char *t, *line, *save = NULL;
	char histos[1024] = "|", done[4096] = "|", current[128] = "";
	size_t len;

	scene(&f);
	t = render(&f, "1.2.3");
	len = strlen(t);
	ck_assert_uint_gt(len, 0);
	ck_assert_int_eq(t[len - 1], '\n');
	ck_assert_ptr_null(strstr(t, "\n\n"));
	ck_assert_int_eq(regcomp(&sample, "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
	    "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
	    "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})? "
	    "-?[0-9]+(\\.[0-9]+)?$", REG_EXTENDED), 0);
	ck_assert_int_eq(regcomp(&comment, "^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* [^\n]+|"
	    "TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))$", REG_EXTENDED), 0);
	for (line = strtok_r(t, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		regmatch_t m[3];
		char fam[128], key[160];

		if (line[0] == '#') {
			ck_assert_msg(regexec(&comment, line, 3, m, 0) == 0, "bad comment: %s", line);
			if (strncmp(line, "# TYPE ", 7) == 0 && strstr(line, " histogram") != NULL)
				snprintf(histos + strlen(histos), sizeof(histos) - strlen(histos),
				    "%.*s|", (int)(m[2].rm_eo - m[2].rm_so), line + m[2].rm_so);
			continue;
		}
		ck_assert_msg(regexec(&sample, line, 2, m, 0) == 0, "bad sample: %s", line);
		family_of(line, (size_t)m[1].rm_eo, histos, fam, sizeof(fam));
		/* Every family's samples come together, right after its HELP and TYPE. */
		if (strcmp(fam, current) != 0) {
			snprintf(key, sizeof(key), "|%s|", fam);
			ck_assert_msg(strstr(done, key) == NULL, "family split: %s", fam);
			snprintf(done + strlen(done), sizeof(done) - strlen(done), "%s|", fam);
			snprintf(current, sizeof(current), "%s", fam);
		}
	}
	regfree(&sample);
	regfree(&comment);
	free(t);
	fixture_free(&f);
}
END_TEST

/*
 * ROUNDGUARD_RENDER_SAMPLE: print the scene's exposition for
 * tests/integration/test_promtool.sh. A silent test, since ck_assert needs a runner.
 */
START_TEST(render_sample)
{
	struct fixture f;
	char *t;

	scene(&f);
	t = render(&f, "0.1.0");
	ck_assert_int_ge(fputs(t, stdout), 0);
	ck_assert_int_eq(fflush(stdout), 0);
	free(t);
	fixture_free(&f);
}
END_TEST

int
main(void)
{
	Suite *s;
	TCase *tc;

	s = suite_create("metrics");
	tc = tcase_create("core");
	if (getenv("ROUNDGUARD_RENDER_SAMPLE") != NULL) {
		tcase_add_test(tc, render_sample);
		suite_add_tcase(s, tc);
		return unit_run(s, CK_SILENT);
	}
	tcase_add_test(tc, code_index_exact_and_classes);
	tcase_add_test(tc, method_index_and_labels);
	tcase_add_test(tc, upstream_error_names);
	tcase_add_test(tc, tls_names_and_versions);
	tcase_add_test(tc, record_tls_bounds);
	tcase_add_test(tc, tls_add_delta);
	tcase_add_test(tc, record_bucket_bounds);
	tcase_add_test(tc, slot_add_every_counter);
	tcase_add_test(tc, render_scene);
	tcase_add_test(tc, render_empty_families_keep_help);
	tcase_add_test(tc, render_carried_row_only);
	tcase_add_test(tc, escape_label_values);
	tcase_add_test(tc, render_escapes_version_and_newline);
	tcase_add_test(tc, render_format_lines);
	tcase_add_test(tc, render_tunnels_and_dead_worker);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
