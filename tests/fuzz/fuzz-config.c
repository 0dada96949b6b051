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
 *   its own (two series with the same labels break a Prometheus scrape).
 */
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
		    strcmp(again.prefix, b->addr.prefix) == 0,
		    "stored backend \"%s\" parses to something else", b->url);
#if FUZZ_CONFIG_UNIQUE_LABELS
		/* metrics_render labels every backend's series with its hostport alone. */
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(cfg->backends[j].addr.hostport, b->addr.hostport) != 0,
			    "backends[%zu] \"%s\" and backends[%zu] \"%s\" are both accepted but share "
			    "the metrics label backend=\"%s\"", j, cfg->backends[j].url, i, b->url,
			    b->addr.hostport);
#endif
	}

	FUZZ_CHECK(config_copy(&copy, cfg) == 0, "config_copy failed");
	FUZZ_CHECK(config_same_backends(&copy, cfg) && config_same_backends(cfg, &copy),
	    "a copy has other backends");
	FUZZ_CHECK(copy.nbackends == cfg->nbackends && copy.backends != cfg->backends &&
	    memcmp(copy.backends, cfg->backends, cfg->nbackends * sizeof(*cfg->backends)) == 0,
	    "config_copy did not copy the backends");
	config_free(&copy);
	FUZZ_CHECK(copy.backends == NULL && copy.nbackends == 0, "config_free left backends");
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
