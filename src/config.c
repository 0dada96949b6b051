/* Configuration: built-in defaults, a JSON file, the environment and flags merged into struct config, then cross-checked. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "roundguard/config.h"
#include "roundguard/config-json.h"
#include "roundguard/control.h"

#define NS_MS INT64_C(1000000)
#define NS_S INT64_C(1000000000)

/* A real configuration is a few KiB (4096 backends fit in well under 1 MiB); anything bigger is a mistake. */
#define FILE_MAX (16 * 1024 * 1024)
#define FILE_CHUNK 4096

#define NAME_FLAGS "command line"
#define DEFAULT_SOURCE "--backend"

static void
problems_init(struct problems *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	if (err == NULL || errlen == 0)
		return;
	p->err = err;
	p->errlen = errlen;
	/* No terminator in the buffer means the caller did not start it as "": start it now. */
	p->len = strnlen(err, errlen);
	if (p->len == errlen) {
		p->len = 0;
		err[0] = '\0';
	}
	p->full = p->len >= 4 && strcmp(err + p->len - 3, "...") == 0 && p->len == errlen - 1;
}

/* Append one line; control bytes become '?' so that every problem stays on one line. */
void
config_problem(struct problems *p, const char *fmt, ...)
{
	char line[LINE_MAX_LEN];
	size_t room, i;
	va_list ap;
	int n;

	p->count++;
	if (p->err == NULL || p->full)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (i = 0; line[i] != '\0'; i++) {
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	}
	room = p->errlen - p->len;
	n = snprintf(p->err + p->len, room, "%s%s", p->len > 0 ? "\n" : "", line);
	if (n >= 0 && (size_t)n < room) {
		p->len += (size_t)n;
		return;
	}
	/* Cut: keep what fits and say that something was lost. */
	p->full = true;
	p->len = p->errlen - 1;
	if (p->errlen >= 4)
		memcpy(p->err + p->errlen - 4, "...", 3);
}

/* Quote s for a message like parse.c does: escaped, at most SHOW_MAX bytes shown. */
const char *
config_quote(char buf[static QUOTE_MAX], const char *s)
{
	size_t w = 0, i;

	buf[w++] = '"';
	for (i = 0; s[i] != '\0' && i < SHOW_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			buf[w++] = '\\';
			buf[w++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			snprintf(buf + w, 5, "\\x%02x", ch);
			w += 4;
		} else {
			buf[w++] = (char)ch;
		}
	}
	if (s[i] != '\0') {
		memcpy(buf + w, "...", 3);
		w += 3;
	}
	buf[w++] = '"';
	buf[w] = '\0';
	return buf;
}

/*
 * parse_* messages start with the quoted input ("\"5x\": unknown unit ...");
 * insert "not a duration: " after it unless the reason already names what
 * was expected ("empty duration", "not a duration (...)").
 */
static void
reword(char *why, size_t whylen, const char *s, const char *what)
{
	char q[QUOTE_MAX], tmp[WHY_MAX];
	size_t ql;

	config_quote(q, s);
	ql = strlen(q);
	if (strncmp(why, q, ql) != 0 || strncmp(why + ql, ": ", 2) != 0)
		return;
	if (strstr(why + ql, what) != NULL)
		return;
	snprintf(tmp, sizeof(tmp), "%s: not a %s: %s", q, what, why + ql + 2);
	strlcpy(why, tmp, whylen);
}

/* A duration as every setting here needs it: Go syntax and longer than zero. */
static int
duration_value(const char *s, int64_t *ns, char *why, size_t whylen)
{
	char q[QUOTE_MAX];
	int64_t v;

	if (parse_duration(s, &v, why, whylen) == -1) {
		reword(why, whylen, s, "duration");
		return -1;
	}
	if (v <= 0) {
		snprintf(why, whylen, "%s: must be longer than 0", config_quote(q, s));
		return -1;
	}
	*ns = v;
	return 0;
}

/* Check a URL and store it, with the text as written for messages and logs. */
static int
backend_set(struct config_backend *b, const char *url, char *why, size_t whylen)
{
	char q[QUOTE_MAX];

	/* Every field starts from its default: the list around b is not zeroed. */
	memset(b, 0, sizeof(*b));
	if (strlen(url) >= sizeof(b->url)) {
		snprintf(why, whylen, "%s: URL too long (at most %zu bytes)", config_quote(q, url),
		    sizeof(b->url) - 1);
		return -1;
	}
	if (parse_backend_url(url, &b->addr, why, whylen) == -1)
		return -1;
	strlcpy(b->url, url, sizeof(b->url));
	b->weight = 1;
	/* An https:// string verifies with the system's CAs and sends the URL's host as SNI. */
	b->tls.verify = true;
	return 0;
}

/* "/live": a request target we put on the wire as it is, so nothing that would need escaping. */
static const char *
path_problem(const char *s)
{
	const unsigned char *p;

	if (*s == '\0')
		return "must not be empty";
	if (*s != '/')
		return "must start with \"/\"";
	_Static_assert(CONFIG_PATH_MAX == 1024, "update the message below");
	if (strlen(s) >= CONFIG_PATH_MAX)
		return "too long (at most 1023 bytes)";
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '#')
			return "spaces, control characters, '#' and non-ASCII bytes are not allowed "
			    "(percent-encode them)";
	}
	return NULL;
}

/* Hosts compare case-insensitively (DNS); IPv6 literals by address, so "::1" equals "0::1". */
static bool
backend_same_server(const struct backend_url *a, const struct backend_url *b)
{
	if (a->port != b->port || a->is_ipv6 != b->is_ipv6)
		return false;
	if (a->is_ipv6) {
		unsigned char x[16], y[16];

		if (inet_pton(AF_INET6, a->host, x) == 1 && inet_pton(AF_INET6, b->host, y) == 1)
			return memcmp(x, y, sizeof(x)) == 0;
	}
	return strcasecmp(a->host, b->host) == 0;
}

static bool
backend_same(const struct backend_url *a, const struct backend_url *b)
{
	return strcmp(a->prefix, b->prefix) == 0 && backend_same_server(a, b);
}

void
config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen.port = 3000;
	cfg->workers = 0;
	strlcpy(cfg->health.path, "/live", sizeof(cfg->health.path));
	cfg->health.interval_ns = 5 * NS_S;
	cfg->health.timeout_ns = 2 * NS_S;
	cfg->health.rise = 1;
	cfg->health.fall = 1;
	cfg->health.expect_status = 200;
	cfg->proxy.connect_timeout_ns = 2 * NS_S;
	cfg->proxy.timeout_ns = 60 * NS_S;
	cfg->proxy.client_timeout_ns = 60 * NS_S;
	cfg->proxy.shutdown_timeout_ns = 10 * NS_S;
	cfg->proxy.tunnel_timeout_ns = 3600 * NS_S;
	cfg->proxy.max_body_size = UINT64_C(16) << 20;
	cfg->proxy.max_header_size = UINT64_C(16) << 10;
	cfg->proxy.keepalive = 64;
	cfg->proxy.retry_unsent = true;
	cfg->proxy.retry_idempotent = true;
	strlcpy(cfg->metrics.path, "/metrics", sizeof(cfg->metrics.path));
	cfg->log.level = LOG_LEVEL_INFO;
	cfg->log.format = LOG_FORMAT_TEXT;
	cfg->log.access = true;
	strlcpy(cfg->control.socket, CONTROL_SOCKET_DEFAULT, sizeof(cfg->control.socket));
	config_resolve_defaults(&cfg->resolve);
}

/* ---- the JSON walk ---- */

/* "NAME: key.path: reason", or "NAME: reason" at the top level. */
void
config_jproblem(struct json_ctx *c, const char *fmt, ...)
{
	char why[WHY_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (c->pathlen == 0)
		config_problem(c->pr, "%s: %s", c->name, why);
	else
		config_problem(c->pr, "%s: %s: %s", c->name, c->path, why);
}

/* Append ".key" (escaped, shortened) to the key path; returns the length to restore. */
size_t
config_path_push_key(struct json_ctx *c, const char *key)
{
	size_t old = c->pathlen, w = old, i;
	size_t cap = sizeof(c->path) - 8;	/* room for "...", "\"\"" and the NUL */

	if (w > 0 && w < cap)
		c->path[w++] = '.';
	if (*key == '\0' && w + 2 < cap) {
		memcpy(c->path + w, "\"\"", 2);
		w += 2;
	}
	for (i = 0; key[i] != '\0' && i < SHOW_MAX && w + 4 < cap; i++) {
		unsigned char ch = (unsigned char)key[i];

		if (ch < 0x20 || ch == 0x7f) {
			snprintf(c->path + w, 5, "\\x%02x", ch);
			w += 4;
		} else {
			c->path[w++] = (char)ch;
		}
	}
	if (key[i] != '\0') {
		memcpy(c->path + w, "...", 3);
		w += 3;
	}
	c->path[w] = '\0';
	c->pathlen = w;
	return old;
}

size_t
config_path_push_index(struct json_ctx *c, size_t i)
{
	size_t old = c->pathlen;
	int n = snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", i);

	if (n > 0)
		c->pathlen = old + (size_t)n < sizeof(c->path) ? old + (size_t)n : sizeof(c->path) - 1;
	return old;
}

void
config_path_pop(struct json_ctx *c, size_t old)
{
	c->pathlen = old;
	c->path[old] = '\0';
}

static void *
field_ptr(struct json_ctx *c, const struct field *f)
{
	return (char *)c->base + f->off;
}

/* How a value's type reads in "expected ..., got ..."; JSON null is a NULL object in json-c. */
static const char *
kind(struct json_object *v, char *buf, size_t buflen)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "boolean";
	case json_type_double:
		snprintf(buf, buflen, "number %.*s", SHOW_MAX,
		    json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
		return buf;
	case json_type_int:
		return "integer";
	case json_type_object:
		return "object";
	case json_type_array:
		return "array";
	case json_type_string:
		return "string";
	}
	return "unknown value";
}

/* True if v has type t; otherwise one "expected <what>, got <kind>" problem. */
bool
config_expect(struct json_ctx *c, struct json_object *v, enum json_type t, const char *what)
{
	char buf[SHOW_MAX + 16];

	if (v != NULL && json_object_is_type(v, t))
		return true;
	config_jproblem(c, "expected %s, got %s", what, kind(v, buf, sizeof(buf)));
	return false;
}

/* A string value without NUL bytes (JSON allows "\u0000", C strings do not). */
const char *
config_get_string(struct json_ctx *c, struct json_object *v, const char *what)
{
	const char *s;
	char q[QUOTE_MAX];

	if (!config_expect(c, v, json_type_string, what))
		return NULL;
	s = json_object_get_string(v);
	if ((size_t)json_object_get_string_len(v) != strlen(s)) {
		config_jproblem(c, "%s: NUL bytes are not allowed", config_quote(q, s));
		return NULL;
	}
	return s;
}

void
config_set_object(struct json_ctx *c, struct json_object *obj, const struct field *table)
{
	const struct field *f;

	if (!config_expect(c, obj, json_type_object, "an object"))
		return;
	json_object_object_foreach(obj, key, val) {
		size_t old = config_path_push_key(c, key);

		for (f = table; f->key != NULL && strcmp(f->key, key) != 0; f++)
			;
		if (f->key == NULL)
			config_jproblem(c, "unknown key");
		else
			f->fn(c, val, f);
		config_path_pop(c, old);
	}
}

static void
set_section(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	config_set_object(c, v, f->sub);
}

static bool
get_duration(struct json_ctx *c, struct json_object *v, int64_t *ns)
{
	char why[WHY_MAX];
	const char *s = config_get_string(c, v, "a duration string like \"5s\"");

	if (s == NULL)
		return false;
	if (duration_value(s, ns, why, sizeof(why)) == -1) {
		config_jproblem(c, "%s", why);
		return false;
	}
	return true;
}

void
config_set_duration(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	int64_t ns;

	if (get_duration(c, v, &ns))
		*(int64_t *)field_ptr(c, f) = ns;
}

/* slow_start: a duration, or "0s" or null for none (the default). */
static void
set_slow_start(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	char why[WHY_MAX];
	const char *s;
	int64_t ns;

	if (v == NULL) {
		*(int64_t *)field_ptr(c, f) = 0;
		return;
	}
	if ((s = config_get_string(c, v, "a duration string like \"30s\", or null")) == NULL)
		return;
	if (parse_duration(s, &ns, why, sizeof(why)) == 0 && ns == 0) {
		*(int64_t *)field_ptr(c, f) = 0;
		return;
	}
	config_set_duration(c, v, f);
}

/* The check timeout must end up below the interval when the user chose it; see config_validate(). */
static void
set_check_timeout(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	int64_t ns;

	if (!get_duration(c, v, &ns))
		return;
	c->cfg->health.timeout_ns = ns;
	c->cfg->health.timeout_set = true;
}

static bool
get_int(struct json_ctx *c, struct json_object *v, const struct field *f, int64_t *out)
{
	int64_t n;

	if (!config_expect(c, v, json_type_int, "an integer"))
		return false;
	n = json_object_get_int64(v);
	if (n < f->min || n > f->max) {
		/* Show the value as written: json-c clamps huge numbers, and the clamped one reads the same. */
		config_jproblem(c, "%.*s: out of range (use %" PRId64 "-%" PRId64 ")", SHOW_MAX,
		    json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), f->min, f->max);
		return false;
	}
	*out = n;
	return true;
}

void
config_set_int(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	int64_t n;

	if (get_int(c, v, f, &n))
		*(int *)field_ptr(c, f) = (int)n;
}

void
config_set_u32(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	int64_t n;

	if (get_int(c, v, f, &n))
		*(uint32_t *)field_ptr(c, f) = (uint32_t)n;
}

/* "auto" or 1..256; 0 stands for "auto" inside struct config. */
static void
set_workers(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	char q[QUOTE_MAX];
	const char *s;

	if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		if (json_object_get_string_len(v) == 4 && strcasecmp(s, "auto") == 0)
			c->cfg->workers = 0;
		else
			config_jproblem(c, "%s: expected \"auto\" or an integer (1-%d)",
			    config_quote(q, s), CONFIG_WORKERS_MAX);
		return;
	}
	if (v != NULL && json_object_is_type(v, json_type_int)) {
		config_set_int(c, v, f);
		return;
	}
	config_expect(c, v, json_type_int, "\"auto\" or an integer");
}

void
config_set_bool(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	if (config_expect(c, v, json_type_boolean, "a boolean"))
		*(bool *)field_ptr(c, f) = json_object_get_boolean(v);
}

/* "1KiB" as the shortest exact binary unit, for range messages. */
static void
format_size(char *buf, size_t buflen, uint64_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	size_t u = 0;

	while (n >= 1024 && n % 1024 == 0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		n /= 1024;
		u++;
	}
	snprintf(buf, buflen, "%" PRIu64 "%s", n, u == 0 ? "" : units[u]);
}

/* A size string ("16MiB") or a plain number of bytes, within the field's range. */
static void
set_size(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	char why[WHY_MAX], q[QUOTE_MAX], lo[32], hi[32];
	const char *s;
	uint64_t n;

	if (v != NULL && json_object_is_type(v, json_type_int)) {
		if (json_object_get_int64(v) < 0) {
			config_jproblem(c, "%" PRId64 ": must not be negative", json_object_get_int64(v));
			return;
		}
		n = json_object_get_uint64(v);
		snprintf(q, sizeof(q), "%" PRIu64, n);
	} else {
		if ((s = config_get_string(c, v, "a size like \"16MiB\" or a number of bytes")) == NULL)
			return;
		if (parse_size(s, &n, why, sizeof(why)) == -1) {
			reword(why, sizeof(why), s, "size");
			config_jproblem(c, "%s", why);
			return;
		}
		config_quote(q, s);
	}
	if (n < (uint64_t)f->min || n > (uint64_t)f->max) {
		format_size(lo, sizeof(lo), (uint64_t)f->min);
		format_size(hi, sizeof(hi), (uint64_t)f->max);
		config_jproblem(c, "%s: out of range (use %s-%s)", q, lo, hi);
		return;
	}
	*(uint64_t *)field_ptr(c, f) = n;
}

static void
set_path(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	char q[QUOTE_MAX];
	const char *s, *why;

	if ((s = config_get_string(c, v, "a string")) == NULL)
		return;
	if ((why = path_problem(s)) != NULL) {
		config_jproblem(c, "%s: %s", config_quote(q, s), why);
		return;
	}
	strlcpy(field_ptr(c, f), s, CONFIG_PATH_MAX);
}

/* A user or group name, or null for "keep the current one"; the master looks it up. */
static void
set_name(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	char q[QUOTE_MAX];
	const char *s, *p;

	if (v == NULL) {
		*(char *)field_ptr(c, f) = '\0';
		return;
	}
	if ((s = config_get_string(c, v, "a name or null")) == NULL)
		return;
	for (p = s; *p != '\0' && (unsigned char)*p > 0x20 && *p != 0x7f && *p != ':'; p++)
		;
	if (*s == '\0')
		config_jproblem(c, "\"\": must not be empty (use null to keep the current one)");
	else if (*p != '\0')
		config_jproblem(c, "%s: spaces, control characters and ':' are not allowed",
		    config_quote(q, s));
	else if (strlen(s) >= CONFIG_NAME_MAX)
		config_jproblem(c, "%s: too long (at most %d bytes)", config_quote(q, s),
		    CONFIG_NAME_MAX - 1);
	else
		strlcpy(field_ptr(c, f), s, CONFIG_NAME_MAX);
}

bool
config_get_listen(struct json_ctx *c, struct json_object *v, struct listen_addr *out, const char *what)
{
	char why[WHY_MAX];
	const char *s = config_get_string(c, v, what);

	if (s == NULL)
		return false;
	if (parse_listen_addr(s, out, why, sizeof(why)) == -1) {
		config_jproblem(c, "%s", why);
		return false;
	}
	return true;
}

static void
set_listen(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	if (config_get_listen(c, v, field_ptr(c, f), "an address like \"0.0.0.0:3000\""))
		c->cfg->listen_set = true;	/* with "listeners" too, it is an error */
}

/* null serves the metrics on the proxy port; an address opens a listener of its own. */
static void
set_metrics_listen(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	if (v == NULL) {
		c->cfg->metrics.listen_set = false;
		memset(&c->cfg->metrics.listen, 0, sizeof(c->cfg->metrics.listen));
		return;
	}
	if (config_get_listen(c, v, &c->cfg->metrics.listen, "an address like \"127.0.0.1:9100\" or null"))
		c->cfg->metrics.listen_set = true;
}

static void
set_log_level(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	char why[WHY_MAX];
	const char *s = config_get_string(c, v, "a string");

	if (s != NULL && log_level_parse(s, &c->cfg->log.level, why, sizeof(why)) == -1)
		config_jproblem(c, "%s", why);
}

static void
set_log_format(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	char why[WHY_MAX];
	const char *s = config_get_string(c, v, "a string");

	if (s != NULL && log_format_parse(s, &c->cfg->log.format, why, sizeof(why)) == -1)
		config_jproblem(c, "%s", why);
}

/* One entry of "backends", a URL or an object (config_tls.c); true if it was stored in b. */
static bool
get_backend(struct json_ctx *c, struct json_object *v, struct config_backend *b)
{
	char why[WHY_MAX];
	const char *s;

	if (v != NULL && json_object_is_type(v, json_type_object))
		return config_tls_get_backend(c, v, b);
	if ((s = config_get_string(c, v, "a URL string or an object")) == NULL)
		return false;
	if (backend_set(b, s, why, sizeof(why)) == -1) {
		config_jproblem(c, "%s", why);
		return false;
	}
	return true;
}

/* The file's list replaces the current one; entries that fail are reported and left out. */
static void
set_backends(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_backend *list = NULL;
	size_t n, i, kept = 0, old;

	if (!config_expect(c, v, json_type_array, "an array of URL strings or objects"))
		return;
	n = json_object_array_length(v);
	if (n > CONFIG_BACKENDS_MAX) {
		config_jproblem(c, "%zu backends: too many (at most %d)", n, CONFIG_BACKENDS_MAX);
		return;
	}
	if (n > 0 && (list = reallocarray(NULL, n, sizeof(*list))) == NULL) {
		config_jproblem(c, "out of memory for %zu backends", n);
		return;
	}
	for (i = 0; i < n; i++) {
		old = config_path_push_index(c, i);
		if (get_backend(c, json_object_array_get_idx(v, i), &list[kept]))
			kept++;
		config_path_pop(c, old);
	}
	free(c->cfg->backends);
	c->cfg->backends = list;
	c->cfg->nbackends = kept;
}

#define OFF(member) offsetof(struct config, member)

static const struct field health_fields[] = {
	{ "path", set_path, OFF(health.path), 0, 0, NULL },
	{ "interval", config_set_duration, OFF(health.interval_ns), 0, 0, NULL },
	{ "timeout", set_check_timeout, OFF(health.timeout_ns), 0, 0, NULL },
	{ "rise", config_set_int, OFF(health.rise), 1, 100, NULL },
	{ "fall", config_set_int, OFF(health.fall), 1, 100, NULL },
	{ "expect_status", config_set_int, OFF(health.expect_status), 100, 599, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

static const struct field proxy_fields[] = {
	{ "connect_timeout", config_set_duration, OFF(proxy.connect_timeout_ns), 0, 0, NULL },
	{ "timeout", config_set_duration, OFF(proxy.timeout_ns), 0, 0, NULL },
	{ "client_timeout", config_set_duration, OFF(proxy.client_timeout_ns), 0, 0, NULL },
	{ "shutdown_timeout", config_set_duration, OFF(proxy.shutdown_timeout_ns), 0, 0, NULL },
	{ "tunnel_timeout", config_set_duration, OFF(proxy.tunnel_timeout_ns), 0, 0, NULL },
	{ "max_body_size", set_size, OFF(proxy.max_body_size), 0, INT64_MAX, NULL },
	{ "max_header_size", set_size, OFF(proxy.max_header_size), 1024, 1024 * 1024, NULL },
	{ "keepalive", config_set_int, OFF(proxy.keepalive), 0, 100000, NULL },
	{ "retry_unsent", config_set_bool, OFF(proxy.retry_unsent), 0, 0, NULL },
	{ "retry_idempotent", config_set_bool, OFF(proxy.retry_idempotent), 0, 0, NULL },
	{ "underscores_in_headers", config_set_bool, OFF(proxy.underscores_in_headers), 0, 0, NULL },
	{ "allow_trace", config_set_bool, OFF(proxy.allow_trace), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

static const struct field metrics_fields[] = {
	{ "path", set_path, OFF(metrics.path), 0, 0, NULL },
	{ "listen", set_metrics_listen, OFF(metrics.listen), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

/* A file path for the control socket or the state file; null: none. */
static void
set_file(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	char q[QUOTE_MAX];
	const char *s;

	if (v == NULL) {
		*(char *)field_ptr(c, f) = '\0';
		return;
	}
	if ((s = config_get_string(c, v, "a file path or null")) == NULL)
		return;
	if (s[0] != '/')
		config_jproblem(c, "%s: not an absolute path", config_quote(q, s));
	else if (strlen(s) >= CONFIG_PATH_MAX)
		config_jproblem(c, "%s: path too long (at most %d bytes)", config_quote(q, s),
		    CONFIG_PATH_MAX - 1);
	else
		strlcpy(field_ptr(c, f), s, CONFIG_PATH_MAX);
}

static const struct field log_fields[] = {
	{ "level", set_log_level, OFF(log.level), 0, 0, NULL },
	{ "format", set_log_format, OFF(log.format), 0, 0, NULL },
	{ "access", config_set_bool, OFF(log.access), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

static const struct field control_fields[] = {
	{ "socket", set_file, OFF(control.socket), 0, 0, NULL },
	{ "group", set_name, OFF(control.group), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

static const struct field top_fields[] = {
	{ "listen", set_listen, OFF(listen), 0, 0, NULL },
	{ "listeners", config_tls_set_listeners, OFF(listeners), 0, 0, NULL },
	{ "workers", set_workers, OFF(workers), 1, CONFIG_WORKERS_MAX, NULL },
	{ "backends", set_backends, OFF(backends), 0, 0, NULL },
	{ "health_check", set_section, 0, 0, 0, health_fields },
	{ "proxy", set_section, 0, 0, 0, proxy_fields },
	{ "metrics", set_section, 0, 0, 0, metrics_fields },
	{ "log", set_section, 0, 0, 0, log_fields },
	{ "control", set_section, 0, 0, 0, control_fields },
	{ "state_file", set_file, OFF(control.state_file), 0, 0, NULL },
	{ "slow_start", set_slow_start, OFF(control.slow_start_ns), 0, 0, NULL },
	{ "resolve", set_section, 0, 0, 0, config_resolve_fields },
	{ "user", set_name, OFF(user), 0, 0, NULL },
	{ "group", set_name, OFF(group), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

#undef OFF

/* Line number (from 1) of byte offset off, for syntax errors. */
static size_t
line_of(const char *text, size_t off)
{
	size_t line = 1, i;

	for (i = 0; i < off; i++) {
		if (text[i] == '\n')
			line++;
	}
	return line;
}

/*
 * Parse the whole text with json-c, comments allowed (its default, non-strict
 * mode also takes trailing commas and single quotes). -1 after one problem;
 * 0 with *rootp NULL for a document that is just null.
 */
static int
json_parse_text(const char *name, const char *text, size_t len, struct problems *pr,
    struct json_object **rootp)
{
	struct json_tokener *tok;
	struct json_object *root;
	enum json_tokener_error e;
	size_t end;

	if (len > INT32_MAX - 1) {
		config_problem(pr, "%s: document too large", name);
		return -1;
	}
	if ((tok = json_tokener_new()) == NULL) {
		config_problem(pr, "%s: out of memory", name);
		return -1;
	}
	root = json_tokener_parse_ex(tok, text, (int)len);
	e = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	if (root == NULL && e == json_tokener_continue) {
		/* Out of input: a NUL ends a bare top-level number; anything else is cut short. */
		root = json_tokener_parse_ex(tok, "", 1);
		e = json_tokener_get_error(tok);
		end = len;
	}
	json_tokener_free(tok);
	if (e != json_tokener_success) {
		config_problem(pr, "%s: line %zu: JSON syntax error: %s", name, line_of(text, end),
		    json_tokener_error_desc(e));
		return -1;
	}
	if (end < len) {
		config_problem(pr, "%s: line %zu: JSON syntax error: unexpected data after the end of "
		    "the document", name, line_of(text, end));
		json_object_put(root);
		return -1;
	}
	*rootp = root;
	return 0;
}

int
config_parse_json(struct config *cfg, const char *name, const char *text, size_t len,
    char *err, size_t errlen)
{
	struct problems pr;
	struct json_ctx c;
	struct json_object *root;

	problems_init(&pr, err, errlen);
	if (name == NULL)
		name = "config";
	if (text == NULL)
		text = "";
	strlcpy(cfg->file, name, sizeof(cfg->file));
	if (json_parse_text(name, text, len, &pr, &root) == -1)
		return pr.count;

	memset(&c, 0, sizeof(c));
	c.cfg = cfg;
	c.base = cfg;
	c.pr = &pr;
	c.name = name;
	if (root == NULL || !json_object_is_type(root, json_type_object))
		config_expect(&c, root, json_type_object, "a JSON object at the top level");
	else
		config_set_object(&c, root, top_fields);
	json_object_put(root);
	return pr.count;
}

/* Read all of path into a NUL-terminated buffer the caller frees; -1 after one problem. */
static int
read_file(const char *path, char **textp, size_t *lenp, struct problems *pr)
{
	struct stat st;
	char *text = NULL, *bigger;
	size_t len = 0, cap = FILE_CHUNK;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		config_problem(pr, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		config_problem(pr, "%s: is a directory, not a file", path);
		goto fail;
	}
	for (;;) {
		if (len + 1 >= cap || text == NULL) {
			if (text != NULL)
				cap *= 2;
			if ((bigger = realloc(text, cap)) == NULL) {
				config_problem(pr, "%s: out of memory", path);
				goto fail;
			}
			text = bigger;
		}
		n = read(fd, text + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			config_problem(pr, "%s: cannot read: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > FILE_MAX) {
			config_problem(pr, "%s: file too large (over 16MiB)", path);
			goto fail;
		}
	}
	close(fd);
	text[len] = '\0';
	*textp = text;
	*lenp = len;
	return 0;

fail:
	free(text);
	close(fd);
	return -1;
}

int
config_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
	struct problems pr;
	char *text;
	size_t len;
	int n;

	problems_init(&pr, err, errlen);
	if (path == NULL || *path == '\0') {
		config_problem(&pr, "configuration file: no file name given");
		return pr.count;
	}
	if (strlen(path) >= sizeof(cfg->file)) {
		config_problem(&pr, "%.64s...: file name too long (at most %zu bytes)", path,
		    sizeof(cfg->file) - 1);
		return pr.count;
	}
	if (read_file(path, &text, &len, &pr) == -1)
		return pr.count;
	n = config_parse_json(cfg, path, text, len, err, errlen);
	free(text);
	return n;
}

/* ---- environment ---- */

static void
env_log_level(struct config *cfg, const char *var, const char *s, struct problems *pr)
{
	char why[WHY_MAX];

	if (log_level_parse(s, &cfg->log.level, why, sizeof(why)) == -1)
		config_problem(pr, "%s: %s", var, why);
}

static void
env_log_format(struct config *cfg, const char *var, const char *s, struct problems *pr)
{
	char why[WHY_MAX];

	if (log_format_parse(s, &cfg->log.format, why, sizeof(why)) == -1)
		config_problem(pr, "%s: %s", var, why);
}

/* The Go version's name for the check interval; the timeout follows in config_validate(). */
static void
env_check_interval(struct config *cfg, const char *var, const char *s, struct problems *pr)
{
	char why[WHY_MAX];

	if (duration_value(s, &cfg->health.interval_ns, why, sizeof(why)) == -1)
		config_problem(pr, "%s: %s", var, why);
}

static const struct {
	const char *var;
	void (*fn)(struct config *, const char *, const char *, struct problems *);
} env_vars[] = {
	{ "LOG_LEVEL", env_log_level },
	{ "LOG_FORMAT", env_log_format },
	{ "PROXY_CHECK_DURATION", env_check_interval },
};

/* getenv(3) returns char *; the hook takes const char * so that tests can pass string tables. */
static const char *
real_getenv(const char *name)
{
	return getenv(name);
}

int
config_apply_env(struct config *cfg, const char *(*getenv_fn)(const char *name),
    char *err, size_t errlen)
{
	struct problems pr;
	const char *s;
	size_t i;

	problems_init(&pr, err, errlen);
	if (getenv_fn == NULL)
		getenv_fn = real_getenv;
	for (i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++) {
		/* Set but empty counts as unset, as in the Go version. */
		s = getenv_fn(env_vars[i].var);
		if (s != NULL && *s != '\0')
			env_vars[i].fn(cfg, env_vars[i].var, s, &pr);
	}
	return pr.count;
}

/* ---- flags ---- */

int
config_add_backend(struct config *cfg, const char *url, const char *source,
    char *err, size_t errlen)
{
	struct problems pr;
	struct config_backend b, *list;
	char why[WHY_MAX];

	problems_init(&pr, err, errlen);
	if (source == NULL)
		source = DEFAULT_SOURCE;
	if (url == NULL)
		url = "";
	if (backend_set(&b, url, why, sizeof(why)) == -1) {
		config_problem(&pr, "%s: %s", source, why);
		return pr.count;
	}
	if (cfg->nbackends >= CONFIG_BACKENDS_MAX) {
		config_problem(&pr, "%s: too many backends (at most %d)", source, CONFIG_BACKENDS_MAX);
		return pr.count;
	}
	list = reallocarray(cfg->backends, cfg->nbackends + 1, sizeof(*list));
	if (list == NULL) {
		config_problem(&pr, "%s: out of memory", source);
		return pr.count;
	}
	list[cfg->nbackends++] = b;
	cfg->backends = list;
	return pr.count;
}

/* ---- cross-field checks ---- */

static void
validate_backends(const struct config *cfg, const char *name, struct problems *pr)
{
	char q[QUOTE_MAX];
	size_t i, j;

	if (cfg->nbackends == 0) {
		config_problem(pr, "%s: backends: at least one backend is needed "
		    "(set \"backends\" or pass --backend URL)", name);
		return;
	}
	/* Quadratic, but only at start-up and reload, and cheap per pair (ports first). */
	for (i = 1; i < cfg->nbackends; i++) {
		for (j = 0; j < i; j++) {
			if (backend_same(&cfg->backends[i].addr, &cfg->backends[j].addr)) {
				config_problem(pr, "%s: backends[%zu]: %s: duplicate of backends[%zu]", name,
				    i, config_quote(q, cfg->backends[i].url), j);
				break;
			}
			/* Metrics labels and X-Backend-Server name a backend by host:port. */
			if (backend_same_server(&cfg->backends[i].addr, &cfg->backends[j].addr)) {
				config_problem(pr, "%s: backends[%zu]: %s: same host and port as "
				    "backends[%zu] (backends are told apart by host:port)", name, i,
				    config_quote(q, cfg->backends[i].url), j);
				break;
			}
		}
	}
}

/*
 * The check timeout must be shorter than the interval, or probes would
 * overlap. A timeout the user chose is an error if it is not; the default
 * one (2s) is shrunk to half the interval instead, so that a short interval
 * alone (PROXY_CHECK_DURATION=1s, as with the Go version) just works.
 */
static void
validate_check_timeout(struct config *cfg, const char *name, struct problems *pr)
{
	struct config_health *h = &cfg->health;
	char t[32], i[32];

	if (h->interval_ns <= 0) {
		config_problem(pr, "%s: health_check.interval: must be longer than 0", name);
		return;
	}
	if (h->timeout_set) {
		if (h->timeout_ns > 0 && h->timeout_ns < h->interval_ns)
			return;
		format_duration(t, sizeof(t), h->timeout_ns);
		format_duration(i, sizeof(i), h->interval_ns);
		config_problem(pr, "%s: health_check.timeout: %s must be shorter than "
		    "health_check.interval %s", name, t, i);
		return;
	}
	if (h->timeout_ns > 0 && h->timeout_ns < h->interval_ns)
		return;
	h->timeout_ns = h->interval_ns / 2;
	if (h->timeout_ns == 0) {
		format_duration(i, sizeof(i), h->interval_ns);
		config_problem(pr, "%s: health_check.interval: %s is too short to leave room for a "
		    "timeout", name, i);
	}
}

bool
config_listen_wildcard(const struct listen_addr *a)
{
	return a->host[0] == '\0' || strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0;
}

void
config_format_listen(char *buf, size_t buflen, const struct listen_addr *a)
{
	if (a->host[0] == '\0')
		snprintf(buf, buflen, "*:%u", (unsigned)a->port);
	else
		snprintf(buf, buflen, a->is_ipv6 ? "[%s]:%u" : "%s:%u", a->host, (unsigned)a->port);
}

/* A separate metrics listener must not take the proxy's port: with SO_REUSEPORT it would even share it. */
static void
validate_metrics(const struct config *cfg, const char *name, struct problems *pr)
{
	const struct listen_addr *m = &cfg->metrics.listen, *l = &cfg->listen;
	char a[PARSE_HOST_MAX + 16], b[PARSE_HOST_MAX + 16];
	const char *why;

	if ((why = path_problem(cfg->metrics.path)) != NULL)
		config_problem(pr, "%s: metrics.path: %s", name, why);
	if ((why = path_problem(cfg->health.path)) != NULL)
		config_problem(pr, "%s: health_check.path: %s", name, why);
	/* With "listeners", config_tls_validate() checks it against each of them. */
	if (!cfg->metrics.listen_set || m->port != l->port || cfg->listeners_set)
		return;
	if (config_listen_wildcard(m) || config_listen_wildcard(l) || strcasecmp(m->host, l->host) == 0) {
		config_format_listen(a, sizeof(a), m);
		config_format_listen(b, sizeof(b), l);
		config_problem(pr, "%s: metrics.listen: %s conflicts with listen %s "
		    "(use another port, or null to serve %s on the proxy port)", name, a, b,
		    cfg->metrics.path);
	}
}

int
config_validate(struct config *cfg, char *err, size_t errlen)
{
	const char *name = cfg->file[0] != '\0' ? cfg->file : NAME_FLAGS;
	struct problems pr;

	problems_init(&pr, err, errlen);
	validate_backends(cfg, name, &pr);
	if (cfg->workers < 0 || cfg->workers > CONFIG_WORKERS_MAX)
		config_problem(&pr, "%s: workers: %d: out of range (use 1-%d, or \"auto\")", name,
		    cfg->workers, CONFIG_WORKERS_MAX);
	validate_check_timeout(cfg, name, &pr);
	config_tls_validate(cfg, name, &pr);
	validate_metrics(cfg, name, &pr);
	if (pr.count == 0)
		config_discover_expand(cfg, name, &pr);
	return pr.count;
}

/* ---- copies ---- */

int
config_copy(struct config *dst, const struct config *src)
{
	struct config_backend *list = NULL;
	struct config_listener *ls = NULL;

	if (src->nbackends > 0) {
		list = reallocarray(NULL, src->nbackends, sizeof(*list));
		if (list == NULL)
			return -1;
		memcpy(list, src->backends, src->nbackends * sizeof(*list));
	}
	if (src->nlisteners > 0) {
		if ((ls = reallocarray(NULL, src->nlisteners, sizeof(*ls))) == NULL) {
			free(list);
			return -1;
		}
		memcpy(ls, src->listeners, src->nlisteners * sizeof(*ls));
	}
	*dst = *src;
	dst->backends = list;
	dst->listeners = ls;
	return 0;
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->backends);
	free(cfg->listeners);
	memset(cfg, 0, sizeof(*cfg));
}

bool
config_same_backends(const struct config *a, const struct config *b)
{
	size_t i;

	if (a->nbackends != b->nbackends)
		return false;
	for (i = 0; i < a->nbackends; i++) {
		if (!backend_same(&a->backends[i].addr, &b->backends[i].addr))
			return false;
	}
	return true;
}
