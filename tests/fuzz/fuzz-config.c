/*
 * libFuzzer harness for the configuration file: config_parse_json on the
 * whole input (not NUL-terminated, as a file read into memory would not
 * need to be), then config_validate, as roundguardd does at start-up and
 * on reload.
 *
 * Checked beyond "no crash, no leak":
 * - the problem list has one line per problem counted, no control bytes, and
 *   a small buffer gets the same text cut short with "..." at the end;
 * - a configuration that validates keeps every promise config.h makes
 *   (ranges, a check timeout below the interval, backends that parse as
 *   stored), copies faithfully, and gives every backend a metrics label of
 *   its own (two series with the same labels break a Prometheus scrape);
 * - its listeners (1-16 of them, the short form included) have unique
 *   names, addresses that can all be bound, TLS settings in range, no TLS
 *   on a redirect listener, and "listen" is the first plain one.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "roundguard/config.h"
#include "roundguard/parse.h"

#include "fuzz.h"

/* Set to 0 to skip the check that no two backends share a metrics label. */
#ifndef FUZZ_CONFIG_UNIQUE_LABELS
#define FUZZ_CONFIG_UNIQUE_LABELS 1
#endif

#define BIG_ERR (1 << 16)

/* Parse then validate, appending both lists of problems to err as roundguardd does. */
static int
load(struct config *cfg, const uint8_t *data, size_t size, char *err, size_t errlen,
    int *parse_problems)
{
	int n;

	config_defaults(cfg);
	if (errlen > 0)
		err[0] = '\0';
	n = config_parse_json(cfg, "fuzz.json", (const char *)data, size, err, errlen);
	FUZZ_CHECK(n >= 0, "config_parse_json returned %d", n);
	*parse_problems = n;
	n += config_validate(cfg, err, errlen);
	return n;
}

static void
check_problem_text(const char *err, size_t errlen, int count)
{
	size_t len, lines = 1;
	const char *nul = memchr(err, '\0', errlen);

	FUZZ_CHECK(nul != NULL, "problem list not terminated");
	len = (size_t)(nul - err);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)err[i];

		FUZZ_CHECK(c == '\n' || (c >= 0x20 && c != 0x7f),
		    "control byte 0x%02x at %zu in the problem list", c, i);
		lines += c == '\n';
	}
	if (count == 0) {
		FUZZ_CHECK(len == 0, "no problem counted but the list says \"%s\"", err);
		return;
	}
	FUZZ_CHECK(len > 0, "%d problems counted, none written", count);
	if (len >= 3 && strcmp(err + len - 3, "...") == 0 && len == errlen - 1)
		return;		/* cut short: fewer lines than problems */
	FUZZ_CHECK(lines == (size_t)count, "%d problems counted, %zu lines written:\n%s", count,
	    lines, err);
	for (const char *l = err; l != NULL; l = strchr(l, '\n'), l = l != NULL ? l + 1 : NULL)
		FUZZ_CHECK(strncmp(l, "fuzz.json: ", 11) == 0,
		    "problem line does not start with the file name:\n%s", err);
}

/* The same problems into a buffer of errlen bytes: the full text, cut with "...". */
static void
check_cut(const char *full, const char *cut, size_t errlen)
{
	size_t flen = strlen(full);

	FUZZ_CHECK(memchr(cut, '\0', errlen) != NULL, "cut problem list not terminated");
	if (flen < errlen) {
		FUZZ_CHECK(strcmp(full, cut) == 0, "same problems, other text:\n%s\n--- vs ---\n%s",
		    full, cut);
		return;
	}
	FUZZ_CHECK(strlen(cut) == errlen - 1, "cut list has %zu bytes, buffer %zu", strlen(cut),
	    errlen);
	if (errlen >= 4) {
		FUZZ_CHECK(strncmp(full, cut, errlen - 4) == 0 &&
		    strcmp(cut + errlen - 4, "...") == 0,
		    "cut list is not the full one cut with \"...\":\n%s\n--- vs ---\n%s", full, cut);
	} else {
		FUZZ_CHECK(strncmp(full, cut, errlen - 1) == 0, "cut list differs");
	}
}

static bool
path_ok(const char *p, size_t size)
{
	return memchr(p, '\0', size) != NULL && p[0] == '/';
}

static bool
terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

static bool
listen_overlap(const struct listen_addr *a, const struct listen_addr *b)
{
	bool any_a = a->host[0] == '\0' || strcmp(a->host, "0.0.0.0") == 0 || strcmp(a->host, "::") == 0;
	bool any_b = b->host[0] == '\0' || strcmp(b->host, "0.0.0.0") == 0 || strcmp(b->host, "::") == 0;

	return a->port == b->port && (any_a || any_b || strcasecmp(a->host, b->host) == 0);
}

static void
check_listeners(const struct config *cfg)
{
	const struct config_listener *plain = NULL;

	FUZZ_CHECK(cfg->nlisteners >= 1 && cfg->nlisteners <= CONFIG_LISTENERS_MAX &&
	    cfg->listeners != NULL, "%zu listeners", cfg->nlisteners);
	FUZZ_CHECK(!(cfg->listen_set && cfg->listeners_set), "listen and listeners both accepted");
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		const struct config_tls_server *t = &l->tls;

		FUZZ_CHECK(terminated(l->name, sizeof(l->name)) && l->name[0] != '\0',
		    "listeners[%zu] has no name", i);
		FUZZ_CHECK(l->addr.port >= 1, "listeners[%zu] port 0", i);
		FUZZ_CHECK(!(l->tls_set && l->redirect_https), "listeners[%zu]: TLS and a redirect", i);
		FUZZ_CHECK(l->redirect_port >= 1, "listeners[%zu]: redirect_port 0", i);
		for (size_t j = 0; j < i; j++) {
			FUZZ_CHECK(strcmp(l->name, cfg->listeners[j].name) != 0,
			    "listeners[%zu] and [%zu] are both \"%s\"", j, i, l->name);
			FUZZ_CHECK(!listen_overlap(&l->addr, &cfg->listeners[j].addr),
			    "listeners[%zu] and [%zu] both take port %u", j, i, l->addr.port);
		}
		if (cfg->metrics.listen_set && cfg->listeners_set)
			FUZZ_CHECK(!listen_overlap(&cfg->metrics.listen, &l->addr),
			    "metrics.listen overlaps listeners[%zu]", i);
		if (plain == NULL && !l->tls_set)
			plain = l;
		if (!l->tls_set)
			continue;
		FUZZ_CHECK(t->ncerts >= 1 && t->ncerts <= CONFIG_CERTS_MAX, "listeners[%zu]: %zu certificates",
		    i, t->ncerts);
		for (size_t k = 0; k < t->ncerts; k++)
			FUZZ_CHECK(terminated(t->certs[k].cert, sizeof(t->certs[k].cert)) &&
			    terminated(t->certs[k].key, sizeof(t->certs[k].key)) &&
			    t->certs[k].cert[0] != '\0' && t->certs[k].key[0] != '\0',
			    "listeners[%zu].tls.certificates[%zu] empty", i, k);
		FUZZ_CHECK(t->min_version == CONFIG_TLS_1_2 || t->min_version == CONFIG_TLS_1_3,
		    "listeners[%zu]: min_version %#x", i, t->min_version);
		FUZZ_CHECK(terminated(t->ciphers, sizeof(t->ciphers)) && t->ciphers[0] != '\0' &&
		    terminated(t->ciphersuites, sizeof(t->ciphersuites)), "listeners[%zu]: ciphers", i);
		FUZZ_CHECK(t->handshake_timeout_ns > 0, "listeners[%zu]: handshake_timeout %" PRId64, i,
		    t->handshake_timeout_ns);
	}
	if (plain == NULL)
		plain = &cfg->listeners[0];
	FUZZ_CHECK(memcmp(&cfg->listen, &plain->addr, sizeof(cfg->listen)) == 0,
	    "listen is not the first plain listener's address");
}

static void
check_valid(struct config *cfg)
{
	struct config copy;

	FUZZ_CHECK(cfg->nbackends >= 1 && cfg->nbackends <= CONFIG_BACKENDS_MAX,
	    "%zu backends", cfg->nbackends);
	FUZZ_CHECK(cfg->workers >= 0 && cfg->workers <= CONFIG_WORKERS_MAX, "workers %d",
	    cfg->workers);
	FUZZ_CHECK(cfg->listen.port >= 1, "listen port 0");
	FUZZ_CHECK(cfg->health.interval_ns > 0, "interval %" PRId64, cfg->health.interval_ns);
	FUZZ_CHECK(cfg->health.timeout_ns > 0 && cfg->health.timeout_ns < cfg->health.interval_ns,
	    "check timeout %" PRId64 ", interval %" PRId64, cfg->health.timeout_ns,
	    cfg->health.interval_ns);
	FUZZ_CHECK(cfg->health.rise >= 1 && cfg->health.rise <= 100, "rise %d", cfg->health.rise);
	FUZZ_CHECK(cfg->health.fall >= 1 && cfg->health.fall <= 100, "fall %d", cfg->health.fall);
	FUZZ_CHECK(cfg->health.expect_status >= 100 && cfg->health.expect_status <= 599,
	    "expect_status %d", cfg->health.expect_status);
	FUZZ_CHECK(cfg->proxy.connect_timeout_ns > 0 && cfg->proxy.timeout_ns > 0 &&
	    cfg->proxy.client_timeout_ns > 0 && cfg->proxy.shutdown_timeout_ns > 0,
	    "a proxy timeout is not positive");
	FUZZ_CHECK(cfg->proxy.max_header_size >= 1024 && cfg->proxy.max_header_size <= 1024 * 1024,
	    "max_header_size %" PRIu64, cfg->proxy.max_header_size);
	FUZZ_CHECK(cfg->proxy.max_body_size <= INT64_MAX, "max_body_size %" PRIu64,
	    cfg->proxy.max_body_size);
	FUZZ_CHECK(cfg->proxy.keepalive >= 0 && cfg->proxy.keepalive <= 100000, "keepalive %d",
	    cfg->proxy.keepalive);
	FUZZ_CHECK(path_ok(cfg->health.path, sizeof(cfg->health.path)), "health_check.path");
	FUZZ_CHECK(path_ok(cfg->metrics.path, sizeof(cfg->metrics.path)), "metrics.path");
	FUZZ_CHECK(!cfg->metrics.listen_set || cfg->metrics.listen.port >= 1, "metrics port 0");
	FUZZ_CHECK(cfg->log.level >= LOG_LEVEL_TRACE && cfg->log.level <= LOG_LEVEL_ERROR,
	    "log level %d", (int)cfg->log.level);
	FUZZ_CHECK(cfg->log.format == LOG_FORMAT_TEXT || cfg->log.format == LOG_FORMAT_JSON,
	    "log format %d", (int)cfg->log.format);
	FUZZ_CHECK(memchr(cfg->user, '\0', sizeof(cfg->user)) != NULL &&
	    memchr(cfg->group, '\0', sizeof(cfg->group)) != NULL, "user or group unterminated");
	for (const char *p = cfg->user; *p != '\0'; p++)
		FUZZ_CHECK((unsigned char)*p > 0x20 && *p != 0x7f && *p != ':', "user \"%s\"",
		    cfg->user);

	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *b = &cfg->backends[i];
		struct backend_url again;
		char why[256];

		FUZZ_CHECK(memchr(b->url, '\0', sizeof(b->url)) != NULL, "backend URL unterminated");
		FUZZ_CHECK(parse_backend_url(b->url, &again, why, sizeof(why)) == 0,
		    "stored backend \"%s\" does not parse: %s", b->url, why);
		FUZZ_CHECK(strcmp(again.hostport, b->addr.hostport) == 0 &&
		    strcmp(again.prefix, b->addr.prefix) == 0 && again.tls == b->addr.tls,
		    "stored backend \"%s\" parses to something else", b->url);
		FUZZ_CHECK(terminated(b->tls.ca_file, sizeof(b->tls.ca_file)) &&
		    terminated(b->tls.server_name, sizeof(b->tls.server_name)),
		    "backend \"%s\": TLS strings unterminated", b->url);
		if (b->tls.server_name[0] != '\0') {
			unsigned char ip[16];

			FUZZ_CHECK(inet_pton(AF_INET, b->tls.server_name, ip) != 1 &&
			    inet_pton(AF_INET6, b->tls.server_name, ip) != 1,
			    "backend \"%s\": an address as server_name", b->url);
		}
		if (!b->addr.tls)
			FUZZ_CHECK(b->tls.verify && b->tls.ca_file[0] == '\0' && b->tls.server_name[0] == '\0',
			    "http backend \"%s\" with TLS settings", b->url);
#if FUZZ_CONFIG_UNIQUE_LABELS
		/* metrics_render labels every backend's series with its hostport alone. */
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(cfg->backends[j].addr.hostport, b->addr.hostport) != 0,
			    "backends[%zu] \"%s\" and backends[%zu] \"%s\" are both accepted but share "
			    "the metrics label backend=\"%s\"", j, cfg->backends[j].url, i, b->url,
			    b->addr.hostport);
#endif
	}

	check_listeners(cfg);

	FUZZ_CHECK(config_copy(&copy, cfg) == 0, "config_copy failed");
	FUZZ_CHECK(copy.nlisteners == cfg->nlisteners && copy.listeners != cfg->listeners &&
	    memcmp(copy.listeners, cfg->listeners, cfg->nlisteners * sizeof(*cfg->listeners)) == 0,
	    "config_copy did not copy the listeners");
	FUZZ_CHECK(config_same_backends(&copy, cfg) && config_same_backends(cfg, &copy),
	    "a copy has other backends");
	FUZZ_CHECK(copy.nbackends == cfg->nbackends && copy.backends != cfg->backends &&
	    memcmp(copy.backends, cfg->backends, cfg->nbackends * sizeof(*cfg->backends)) == 0,
	    "config_copy did not copy the backends");
	config_free(&copy);
	FUZZ_CHECK(copy.backends == NULL && copy.nbackends == 0 && copy.listeners == NULL &&
	    copy.nlisteners == 0, "config_free left backends or listeners");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char big[BIG_ERR];
	struct config cfg, cfg2;
	size_t small_len = 1 + size % 173;
	char *small = malloc(small_len);
	int n, n2, parse_n, parse_n2;

	if (small == NULL)
		abort();
	n = load(&cfg, data, size, big, sizeof(big), &parse_n);
	check_problem_text(big, sizeof(big), n);
	if (n == 0)
		check_valid(&cfg);

	/* Same input, a small buffer: same count, same text cut short. */
	n2 = load(&cfg2, data, size, small, small_len, &parse_n2);
	FUZZ_CHECK(n2 == n && parse_n2 == parse_n, "%d problems with a big buffer, %d with %zu bytes",
	    n, n2, small_len);
	check_cut(big, small, small_len);
	FUZZ_CHECK(config_same_backends(&cfg, &cfg2), "same input, other backends");

	config_free(&cfg);
	config_free(&cfg2);
	free(small);
	return 0;
}
