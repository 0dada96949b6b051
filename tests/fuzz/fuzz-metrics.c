/*
 * libFuzzer harness for the Prometheus renderer: a segment laid out in
 * calloc'd memory (as shm_create would, without shm_open), its counters
 * filled from the input, then metrics_render.
 *
 * Input: byte 0 backends in the segment (1-6), byte 1 workers (0-3), byte 2
 * backends in the configuration (one fewer, as many, or one more: the
 * renderer takes the smaller) and, in its bits 16 and 32, TLS on listeners
 * 0 and 1 of two, byte 3 the version's length; the version, then for each
 * configured backend a length byte and its label; then 8-byte records, each
 * one metrics_record / upstream error / raw counter value (of a slot, or
 * with bit 8 of a worker's TLS handshake counters) / live bit / health-check
 * totals / no-backend count / restarts. Listener and certificate names are
 * made from the version's bytes; two certificates of listener 0 share a
 * name, which the renderer must show once. Label bytes are mapped onto a
 * set with backslash, double quote and newline, which the renderer must
 * escape; labels stay distinct.
 *
 * Checked: metrics_render succeeds and ends in a newline; every line is a
 * HELP, a TYPE or a sample of the text format 0.0.4 with valid escapes; each
 * family is typed once, before its samples, which belong to it; no series
 * appears twice; histogram buckets never decrease, end with le="+Inf" and
 * equal _count; proxy_count agrees with the backends' up gauges.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <event2/buffer.h>

#include "roundguard/config.h"
#include "roundguard/metrics.h"
#include "roundguard/shm.h"
#include "roundguard/tls.h"

#include "fuzz.h"

static const char label_chars[] = "abcxyz019.-_:[]\\\"\n /{}=,#";

struct cursor {
	const uint8_t *p, *end;
};

static uint8_t
next(struct cursor *c)
{
	return c->p < c->end ? *c->p++ : 0;
}

/* ---- the exposition checker ---- */

/* Strings kept back to back in one buffer, found by offset (few allocations per input). */
struct strs {
	char *buf;
	size_t len, cap;
	size_t *off;
	size_t n, ncap;
};

static void
strs_add(struct strs *s, const char *p, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		s->cap = 2 * (s->len + n + 1) + 4096;
		if ((s->buf = realloc(s->buf, s->cap)) == NULL)
			abort();
	}
	if (s->n == s->ncap) {
		s->ncap = s->ncap ? 2 * s->ncap : 256;
		if ((s->off = realloc(s->off, s->ncap * sizeof(*s->off))) == NULL)
			abort();
	}
	memcpy(s->buf + s->len, p, n);
	s->buf[s->len + n] = '\0';
	s->off[s->n++] = s->len;
	s->len += n + 1;
}

static const char *
strs_get(const struct strs *s, size_t i)
{
	return s->buf + s->off[i];
}

static bool
strs_has(const struct strs *s, const char *p, size_t n)
{
	for (size_t i = 0; i < s->n; i++)
		if (strncmp(strs_get(s, i), p, n) == 0 && strs_get(s, i)[n] == '\0')
			return true;
	return false;
}

static void
strs_free(struct strs *s)
{
	free(s->buf);
	free(s->off);
}

static const char *sort_base;

static int
cmp_off(const void *a, const void *b)
{
	return strcmp(sort_base + *(const size_t *)a, sort_base + *(const size_t *)b);
}

static size_t
metric_name(const char *p, const char *end)
{
	size_t n = 0;

	while (p + n < end && (isalpha((unsigned char)p[n]) || p[n] == '_' || p[n] == ':' ||
	    (n > 0 && isdigit((unsigned char)p[n]))))
		n++;
	return n;
}

static bool
has_suffix(const char *name, size_t n, const char *family, const char *suffix)
{
	size_t fl = strlen(family), sl = strlen(suffix);

	return n == fl + sl && memcmp(name, family, fl) == 0 && memcmp(name + fl, suffix, sl) == 0;
}

struct checker {
	char family[128];
	char type[16];
	struct strs typed, series;
	/* The histogram series being read: key without le ("" none), last cumulative value. */
	char hist_key[1024];
	uint64_t hist_last;
	bool hist_inf;
	const struct config *cfg;	/* backend labels, in order, for roundguard_backend_up */
	uint64_t up_lines, up_ones, available, unavailable;
	bool seen_available, seen_unavailable;
};

/* Labels "{a=\"v\",...}" at p; returns their length; le's value goes to *le. */
static size_t
check_labels(const char *p, const char *end, const char **le, size_t *le_len, const char *line)
{
	const char *s = p;

	*le = NULL;
	if (p >= end || *p != '{')
		return 0;
	p++;
	while (p < end && *p != '}') {
		const char *name = p, *value;
		size_t nlen = 0;

		while (p < end && (isalpha((unsigned char)*p) || *p == '_' ||
		    (nlen > 0 && isdigit((unsigned char)*p)))) {
			p++;
			nlen++;
		}
		FUZZ_CHECK(nlen > 0 && p + 1 < end && p[0] == '=' && p[1] == '"',
		    "bad label in \"%s\"", line);
		p += 2;
		value = p;
		while (p < end && *p != '"') {
			if (*p == '\\') {
				FUZZ_CHECK(p + 1 < end && (p[1] == '\\' || p[1] == '"' || p[1] == 'n'),
				    "bad escape in label value of \"%s\"", line);
				p++;
			}
			p++;
		}
		FUZZ_CHECK(p < end, "unterminated label value in \"%s\"", line);
		if (nlen == 2 && memcmp(name, "le", 2) == 0) {
			*le = value;
			*le_len = (size_t)(p - value);
		}
		p++;
		if (p < end && *p == ',')
			p++;
	}
	FUZZ_CHECK(p < end && *p == '}', "unterminated labels in \"%s\"", line);
	return (size_t)(p + 1 - s);
}

/* The series key without the le label (for buckets, _sum and _count of one histogram). */
static void
key_without_le(char *k, size_t klen, const char *family, const char *labels, size_t llen)
{
	const char *p = labels, *end = labels + llen;
	size_t w;

	w = strlen(family);
	FUZZ_CHECK(w + llen + 2 < klen, "labels too long");
	memcpy(k, family, w);
	k[w++] = '|';
	if (p < end && *p == '{')
		p++;
	while (p < end && *p != '}') {
		/* One label: name="value" with escapes, then an optional comma. */
		const char *s = p;
		bool quoted = false;

		while (p < end && (quoted || (*p != ',' && *p != '}'))) {
			if (quoted && *p == '\\')
				p++;
			else if (*p == '"')
				quoted = !quoted;
			p++;
		}
		if (strncmp(s, "le=", 3) != 0) {
			memcpy(k + w, s, (size_t)(p - s));
			w += (size_t)(p - s);
			k[w++] = ',';
		}
		if (p < end && *p == ',')
			p++;
	}
	k[w] = '\0';
}

static uint64_t
int_value(const char *v, size_t n, const char *line)
{
	uint64_t x = 0;

	FUZZ_CHECK(n > 0, "empty value in \"%s\"", line);
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(isdigit((unsigned char)v[i]), "not an integer value in \"%s\"", line);
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	return x;
}

/* The backend="..." label of labels, unescaped, is want. */
static void
check_backend_label(const char *labels, size_t llen, const char *want, const char *line)
{
	const char *p = memmem(labels, llen, "backend=\"", 9), *end = labels + llen;
	size_t n = 0;

	FUZZ_CHECK(p != NULL, "no backend label in \"%s\"", line);
	for (p += 9; p < end && *p != '"'; p++, n++) {
		char ch = *p;

		if (ch == '\\') {
			p++;
			ch = *p == 'n' ? '\n' : *p;
		}
		FUZZ_CHECK(want[n] == ch, "backend label in \"%s\" is not \"%s\" escaped", line,
		    want);
	}
	FUZZ_CHECK(want[n] == '\0', "backend label in \"%s\" is not \"%s\" escaped", line, want);
}

static void
check_sample(struct checker *c, const char *line, size_t len)
{
	const char *end = line + len, *le = NULL, *v, *labels;
	size_t n = metric_name(line, end), llen, le_len = 0, vlen;
	bool hist = strcmp(c->type, "histogram") == 0;

	FUZZ_CHECK(n > 0, "line is neither a comment nor a sample: \"%s\"", line);
	FUZZ_CHECK(c->family[0] != '\0', "sample before any TYPE: \"%s\"", line);
	labels = line + n;
	llen = check_labels(labels, end, &le, &le_len, line);
	v = labels + llen;
	FUZZ_CHECK(v < end && *v == ' ', "no space before the value in \"%s\"", line);
	v++;
	vlen = (size_t)(end - v);
	/* Integers, or a sum with a fraction. */
	{
		size_t dots = 0;

		FUZZ_CHECK(vlen > 0, "no value in \"%s\"", line);
		for (size_t i = 0; i < vlen; i++) {
			FUZZ_CHECK(isdigit((unsigned char)v[i]) || (v[i] == '.' && i > 0 && i + 1 < vlen),
			    "bad value in \"%s\"", line);
			dots += v[i] == '.';
		}
		FUZZ_CHECK(dots <= 1, "bad value in \"%s\"", line);
	}

	/* Each series once: sorted and compared at the end. */
	strs_add(&c->series, line, (size_t)(v - 1 - line));

	if (!hist) {
		FUZZ_CHECK(n == strlen(c->family) && memcmp(line, c->family, n) == 0,
		    "sample \"%s\" in family %s", line, c->family);
		FUZZ_CHECK(le == NULL, "le label outside a histogram: \"%s\"", line);
	} else if (has_suffix(line, n, c->family, "_bucket")) {
		char key[sizeof(c->hist_key)];
		uint64_t x = int_value(v, vlen, line);

		key_without_le(key, sizeof(key), c->family, labels, llen);
		FUZZ_CHECK(le != NULL, "bucket without le: \"%s\"", line);
		if (c->hist_key[0] != '\0' && strcmp(c->hist_key, key) == 0) {
			FUZZ_CHECK(!c->hist_inf, "bucket after le=\"+Inf\": \"%s\"", line);
			FUZZ_CHECK(x >= c->hist_last, "bucket decreases from %" PRIu64 ": \"%s\"",
			    c->hist_last, line);
		} else {
			FUZZ_CHECK(c->hist_key[0] == '\0' || c->hist_inf,
			    "histogram %s ends without le=\"+Inf\"", c->hist_key);
			memcpy(c->hist_key, key, sizeof(key));
		}
		c->hist_last = x;
		c->hist_inf = le_len == 4 && memcmp(le, "+Inf", 4) == 0;
	} else if (has_suffix(line, n, c->family, "_count")) {
		/* Right after the buckets (and _sum) of its series, as the renderer writes them. */
		char key[sizeof(c->hist_key)];

		key_without_le(key, sizeof(key), c->family, labels, llen);
		FUZZ_CHECK(c->hist_key[0] != '\0' && c->hist_inf && strcmp(key, c->hist_key) == 0,
		    "_count without the buckets of its series before it: \"%s\"", line);
		FUZZ_CHECK(int_value(v, vlen, line) == c->hist_last,
		    "_count differs from the +Inf bucket %" PRIu64 ": \"%s\"", c->hist_last, line);
	} else {
		FUZZ_CHECK(has_suffix(line, n, c->family, "_sum"), "sample \"%s\" in histogram %s",
		    line, c->family);
	}

	if (strcmp(c->family, "roundguard_backend_up") == 0) {
		uint64_t x = int_value(v, vlen, line);

		FUZZ_CHECK(x <= 1, "backend_up %" PRIu64, x);
		FUZZ_CHECK(c->up_lines < c->cfg->nbackends, "more up lines than backends");
		check_backend_label(labels, llen, c->cfg->backends[c->up_lines].addr.hostport, line);
		c->up_lines++;
		c->up_ones += x;
	} else if (strcmp(c->family, "proxy_count") == 0) {
		if (strstr(line, "\"available\"") != NULL) {
			c->available = int_value(v, vlen, line);
			c->seen_available = true;
		} else {
			c->unavailable = int_value(v, vlen, line);
			c->seen_unavailable = true;
		}
	}
}

static void
check_line(struct checker *c, const char *line, size_t len)
{
	if (len > 0 && line[0] == '#') {
		const char *p = line + 2, *end = line + len;
		size_t n;

		FUZZ_CHECK(len > 7 && (strncmp(line, "# HELP ", 7) == 0 ||
		    strncmp(line, "# TYPE ", 7) == 0), "bad comment line \"%s\"", line);
		p = line + 7;
		n = metric_name(p, end);
		FUZZ_CHECK(n > 0 && n < sizeof(c->family) && p + n < end && p[n] == ' ',
		    "bad metric name in \"%s\"", line);
		if (line[2] == 'H') {
			for (const char *q = p + n + 1; q < end; q++) {
				if (*q != '\\')
					continue;
				FUZZ_CHECK(q + 1 < end && (q[1] == '\\' || q[1] == 'n'),
				    "bad escape in \"%s\"", line);
				q++;
			}
			return;
		}
		FUZZ_CHECK(!strs_has(&c->typed, p, n), "family typed twice: \"%s\"", line);
		strs_add(&c->typed, p, n);
		FUZZ_CHECK(c->hist_key[0] == '\0' || c->hist_inf, "histogram %s ends without +Inf",
		    c->hist_key);
		c->hist_key[0] = '\0';
		memcpy(c->family, p, n);
		c->family[n] = '\0';
		snprintf(c->type, sizeof(c->type), "%.*s", (int)(end - p - n - 1), p + n + 1);
		FUZZ_CHECK(strcmp(c->type, "counter") == 0 || strcmp(c->type, "gauge") == 0 ||
		    strcmp(c->type, "histogram") == 0, "type \"%s\"", c->type);
		return;
	}
	check_sample(c, line, len);
}

static void
check_exposition(const char *text, size_t len, uint32_t nbackends, const struct config *cfg)
{
	struct checker c;
	const char *p = text, *end = text + len;

	memset(&c, 0, sizeof(c));
	c.cfg = cfg;
	FUZZ_CHECK(len > 0 && text[len - 1] == '\n', "exposition does not end in a newline");
	FUZZ_CHECK(memchr(text, '\0', len) == NULL, "NUL byte in the exposition");
	while (p < end) {
		static char line[8192];
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)(eol - p);

		FUZZ_CHECK(n > 0, "empty line in the exposition");
		FUZZ_CHECK(n < sizeof(line), "line of %zu bytes in the exposition", n);
		memcpy(line, p, n);
		line[n] = '\0';
		check_line(&c, line, n);
		p = eol + 1;
	}
	FUZZ_CHECK(c.hist_key[0] == '\0' || c.hist_inf, "last histogram ends without +Inf");

	sort_base = c.series.buf;
	qsort(c.series.off, c.series.n, sizeof(*c.series.off), cmp_off);
	for (size_t i = 1; i < c.series.n; i++)
		FUZZ_CHECK(strcmp(strs_get(&c.series, i - 1), strs_get(&c.series, i)) != 0,
		    "series twice: %s", strs_get(&c.series, i));
	FUZZ_CHECK(c.seen_available && c.seen_unavailable, "proxy_count lines missing");
	FUZZ_CHECK(c.up_lines == nbackends && c.available + c.unavailable == nbackends &&
	    c.available == c.up_ones, "%" PRIu64 " up lines (%" PRIu64 " up), proxy_count %"
	    PRIu64 "+%" PRIu64 ", %" PRIu32 " backends", c.up_lines, c.up_ones, c.available,
	    c.unavailable, nbackends);
	strs_free(&c.typed);
	strs_free(&c.series);
}

/* ---- filling the segment ---- */

#define SLOT_COUNTERS ((offsetof(struct metrics_slot, upstream_errors) + \
	sizeof(((struct metrics_slot *)0)->upstream_errors)) / sizeof(uint64_t))
#define TLS_COUNTERS (sizeof(((struct shm_worker *)0)->tls) / (sizeof(uint64_t)))

static void
apply_record(struct shm *s, uint32_t nb, uint32_t nw, const uint8_t r[8])
{
	struct metrics_slot *slot = shm_stats(s, r[1] % (nw + 1), r[2] % nb);
	uint64_t v = (uint64_t)r[4] << 24 | (uint64_t)r[5] << 16 | (uint64_t)r[6] << 8 | r[7];

	switch (r[0] % 8) {
	case 0: {
		int status = (int)(((unsigned)r[4] << 8 | r[5]) % 1000);
		int64_t ns = (int64_t)((uint32_t)r[6] << 16 | (uint32_t)r[7] << 8 | r[3]) *
		    (r[0] & 8 ? 1000 : 1);

		if (r[0] & 16)
			ns = -ns;
		metrics_record(slot, r[3] % 48, status, ns);
		break;
	}
	case 1:
		metrics_record_upstream_error(slot, (enum metrics_upstream_error)(r[3] % 8));
		break;
	case 2:
		if (r[0] & 8)
			atomic_fetch_add_explicit(&((_Atomic uint64_t *)s->workers[r[1] % (nw + 1)].tls)[
			    ((unsigned)r[3] << 8 | r[4]) % TLS_COUNTERS],
			    (uint64_t)r[5] << 16 | (uint64_t)r[6] << 8 | r[7], memory_order_relaxed);
		else
			atomic_fetch_add_explicit(&((_Atomic uint64_t *)slot)[((unsigned)r[3] << 8 | r[4]) %
			    SLOT_COUNTERS], (uint64_t)r[5] << 16 | (uint64_t)r[6] << 8 | r[7],
			    memory_order_relaxed);
		break;
	case 3:
		shm_set_live(s, r[2] % nb, r[3] & 1);
		break;
	case 4:
		atomic_fetch_add_explicit(&s->backends[r[2] % nb].checks_ok, v, memory_order_relaxed);
		break;
	case 5:
		atomic_fetch_add_explicit(&s->backends[r[2] % nb].checks_failed, v,
		    memory_order_relaxed);
		break;
	case 6:
		atomic_fetch_add_explicit(&s->workers[r[1] % (nw + 1)].counters[SHM_NO_BACKEND], v,
		    memory_order_relaxed);
		break;
	case 7:
		atomic_fetch_add_explicit(&s->hdr->worker_restarts, v, memory_order_relaxed);
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = { data, data + size };
	struct tls_cert_expiry certs[4];
	size_t ncerts;
	uint32_t nb, nw, ncfg;
	char version[32];
	struct config cfg;
	struct shm s;
	struct evbuffer *out;
	size_t seg_size, vlen;
	void *base;
	uint8_t sel;

	if (size < 4)
		return 0;
	nb = 1 + next(&c) % 6;
	nw = next(&c) % 4;
	sel = next(&c);
	ncfg = nb - (sel % 3 == 1) + (sel % 3 == 2);
	vlen = next(&c) % 16;
	for (size_t i = 0; i < vlen; i++)
		version[i] = label_chars[next(&c) % (sizeof(label_chars) - 1)];
	version[vlen] = '\0';

	config_defaults(&cfg);
	cfg.nbackends = ncfg;
	cfg.backends = calloc(ncfg + 1, sizeof(*cfg.backends));
	if (cfg.backends == NULL)
		abort();
	for (uint32_t i = 0; i < ncfg; i++) {
		char *hp = cfg.backends[i].addr.hostport;
		size_t n = (size_t)snprintf(hp, sizeof(cfg.backends[i].addr.hostport), "b%u.",
		    (unsigned)i), len = next(&c) % 24;

		for (size_t k = 0; k < len; k++)
			hp[n++] = label_chars[next(&c) % (sizeof(label_chars) - 1)];
		hp[n] = '\0';
	}

	/* Two listeners, TLS as sel says; certificates of listener 0 share a name. */
	cfg.nlisteners = 2;
	cfg.listeners = calloc(2, sizeof(*cfg.listeners));
	if (cfg.listeners == NULL)
		abort();
	for (size_t l = 0; l < 2; l++) {
		snprintf(cfg.listeners[l].name, sizeof(cfg.listeners[l].name), "l%zu.%s", l, version);
		cfg.listeners[l].tls_set = (sel & (16 << l)) != 0;
	}
	certs[0] = (struct tls_cert_expiry){ cfg.listeners[0].name, version, (int64_t)nb << 40 };
	certs[1] = (struct tls_cert_expiry){ cfg.listeners[0].name, "", (int64_t)nw };
	certs[2] = (struct tls_cert_expiry){ cfg.listeners[0].name, version, (int64_t)sel };
	certs[3] = (struct tls_cert_expiry){ cfg.listeners[1].name, version, 0 };
	ncerts = (size_t)((sel & 16 ? 3 : 0) + (sel & 32 ? 1 : 0));

	seg_size = shm_layout_size(nb, nw);
	base = aligned_alloc(SHM_CACHELINE, (seg_size + SHM_CACHELINE - 1) / SHM_CACHELINE *
	    SHM_CACHELINE);
	if (base == NULL)
		abort();
	memset(base, 0, seg_size);
	shm_layout_init(base, seg_size, nb, nw);
	memset(&s, 0, sizeof(s));
	FUZZ_CHECK(shm_attach(&s, base, seg_size) == 0, "shm_attach failed");

	while ((size_t)(c.end - c.p) >= 8) {
		apply_record(&s, nb, nw, c.p);
		c.p += 8;
	}

	out = evbuffer_new();
	if (out == NULL)
		abort();
	FUZZ_CHECK(metrics_render(out, &s, &cfg, sel & 16 ? certs : certs + 3, ncerts,
	    vlen > 0 || (sel & 8) ? version : NULL) == 0, "metrics_render failed");
	check_exposition((const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out),
	    nb < ncfg ? nb : ncfg, &cfg);
	evbuffer_free(out);
	free(base);
	config_free(&cfg);
	return 0;
}
