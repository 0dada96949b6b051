/* Unit tests for config.c: defaults, the JSON schema and its messages, environment, flags, validation, copies. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "roundguard/config.h"
#include "unit.h"

#define NS_MS INT64_C(1000000)
#define NS_S INT64_C(1000000000)

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Big enough for every message these tests provoke, 4096 backends' worth excepted. */
#define ERR_LEN 8192

/* Name given to config_parse_json(), so every message starts with "t.json: ". */
#define NAME "t.json"

static char err[ERR_LEN];

/* Merge json into cfg as it is, with a fresh err. */
static int
merge(struct config *cfg, const char *json)
{
	err[0] = '\0';
	return config_parse_json(cfg, NAME, json, strlen(json), err, sizeof(err));
}

/* Parse json over the defaults. */
static int
parse(struct config *cfg, const char *json)
{
	config_defaults(cfg);
	return merge(cfg, json);
}

/* Whether line is one whole line of text. */
static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = text; (p = strstr(p, line)) != NULL; p++) {
		if ((p == text || p[-1] == '\n') && (p[n] == '\0' || p[n] == '\n'))
			return true;
	}
	return false;
}

static const char *
data_dir(void)
{
	const char *d = getenv("ROUNDGUARD_TEST_DATA");

	return d != NULL && *d != '\0' ? d : "tests/data";
}

static char *
data_path(char *buf, size_t buflen, const char *file)
{
	snprintf(buf, buflen, "%s/%s", data_dir(), file);
	return buf;
}

/* ---- defaults ---- */

START_TEST(defaults)
{
	struct config cfg;

	memset(&cfg, 0xa5, sizeof(cfg));
	config_defaults(&cfg);
	ck_assert_str_eq(cfg.file, "");
	ck_assert_str_eq(cfg.listen.host, "");
	ck_assert_uint_eq(cfg.listen.port, 3000);
	ck_assert_int_eq(cfg.workers, 0);
	ck_assert_ptr_null(cfg.backends);
	ck_assert_uint_eq(cfg.nbackends, 0);
	ck_assert_str_eq(cfg.health.path, "/live");
	ck_assert_int_eq(cfg.health.interval_ns, 5 * NS_S);
	ck_assert_int_eq(cfg.health.timeout_ns, 2 * NS_S);
	ck_assert(!cfg.health.timeout_set);
	ck_assert_int_eq(cfg.health.rise, 1);
	ck_assert_int_eq(cfg.health.fall, 1);
	ck_assert_int_eq(cfg.health.expect_status, 200);
	ck_assert_int_eq(cfg.proxy.connect_timeout_ns, 2 * NS_S);
	ck_assert_int_eq(cfg.proxy.timeout_ns, 60 * NS_S);
	ck_assert_int_eq(cfg.proxy.client_timeout_ns, 60 * NS_S);
	ck_assert_int_eq(cfg.proxy.shutdown_timeout_ns, 10 * NS_S);
	ck_assert_int_eq(cfg.proxy.tunnel_timeout_ns, 3600 * NS_S);
	ck_assert_uint_eq(cfg.proxy.max_body_size, 16 * 1024 * 1024);
	ck_assert_uint_eq(cfg.proxy.max_header_size, 16 * 1024);
	ck_assert_int_eq(cfg.proxy.keepalive, 64);
	ck_assert(cfg.proxy.retry_unsent);
	ck_assert(cfg.proxy.retry_idempotent);
	ck_assert(!cfg.proxy.underscores_in_headers);
	ck_assert(!cfg.proxy.allow_trace);
	ck_assert_str_eq(cfg.metrics.path, "/metrics");
	ck_assert(!cfg.metrics.listen_set);
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_INFO);
	ck_assert_int_eq(cfg.log.format, LOG_FORMAT_TEXT);
	ck_assert(cfg.log.access);
	ck_assert_str_eq(cfg.user, "");
	ck_assert_str_eq(cfg.group, "");
}
END_TEST

START_TEST(empty_object_keeps_defaults)
{
	struct config cfg, def;

	ck_assert_int_eq(parse(&cfg, "{}"), 0);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(cfg.file, NAME);
	config_defaults(&def);
	strcpy(def.file, NAME);
	ck_assert(memcmp(&cfg, &def, sizeof(cfg)) == 0);
}
END_TEST

/* ---- a full valid document ---- */

static const char full_doc[] =
    "// a full document\n"
    "{\n"
    "  /* block\n     comment */\n"
    "  \"listen\": \"[::1]:8080\",\n"
    "  \"workers\": 8, // trailing comment\n"
    "  \"backends\": [\"http://10.0.0.1:9001\", \"http://Backend.Example/api/\"],\n"
    "  \"health_check\": { \"path\": \"/healthz?full=1\", \"interval\": \"1m30s\",\n"
    "      \"timeout\": \"500ms\", \"rise\": 3, \"fall\": 100, \"expect_status\": 204 },\n"
    "  \"proxy\": { \"connect_timeout\": \"250ms\", \"timeout\": \"2m\", \"client_timeout\": \"5s\",\n"
    "      \"shutdown_timeout\": \"1h\", \"max_body_size\": 0, \"max_header_size\": \"1MiB\",\n"
    "      \"keepalive\": 100000, \"retry_unsent\": false, \"retry_idempotent\": false },\n"
    "  \"metrics\": { \"path\": \"/m\", \"listen\": \"127.0.0.1:9100\" },\n"
    "  \"log\": { \"level\": \"WARNING\", \"format\": \"json\", \"access\": false },\n"
    "  \"user\": \"www-data\", \"group\": \"www-data\"\n"
    "}\n"
    "/* the end */\n";

START_TEST(full_document)
{
	struct config cfg;

	ck_assert_msg(parse(&cfg, full_doc) == 0, "%s", err);
	ck_assert_str_eq(err, "");
	ck_assert_str_eq(cfg.listen.host, "::1");
	ck_assert(cfg.listen.is_ipv6);
	ck_assert_uint_eq(cfg.listen.port, 8080);
	ck_assert_int_eq(cfg.workers, 8);
	ck_assert_uint_eq(cfg.nbackends, 2);
	ck_assert_str_eq(cfg.backends[0].url, "http://10.0.0.1:9001");
	ck_assert_str_eq(cfg.backends[0].addr.hostport, "10.0.0.1:9001");
	ck_assert_str_eq(cfg.backends[1].url, "http://Backend.Example/api/");
	ck_assert_str_eq(cfg.backends[1].addr.prefix, "/api");
	ck_assert_uint_eq(cfg.backends[1].addr.port, 80);
	ck_assert_str_eq(cfg.health.path, "/healthz?full=1");
	ck_assert_int_eq(cfg.health.interval_ns, 90 * NS_S);
	ck_assert_int_eq(cfg.health.timeout_ns, 500 * NS_MS);
	ck_assert(cfg.health.timeout_set);
	ck_assert_int_eq(cfg.health.rise, 3);
	ck_assert_int_eq(cfg.health.fall, 100);
	ck_assert_int_eq(cfg.health.expect_status, 204);
	ck_assert_int_eq(cfg.proxy.connect_timeout_ns, 250 * NS_MS);
	ck_assert_int_eq(cfg.proxy.timeout_ns, 120 * NS_S);
	ck_assert_int_eq(cfg.proxy.client_timeout_ns, 5 * NS_S);
	ck_assert_int_eq(cfg.proxy.shutdown_timeout_ns, 3600 * NS_S);
	ck_assert_uint_eq(cfg.proxy.max_body_size, 0);
	ck_assert_uint_eq(cfg.proxy.max_header_size, 1024 * 1024);
	ck_assert_int_eq(cfg.proxy.keepalive, 100000);
	ck_assert(!cfg.proxy.retry_unsent);
	ck_assert(!cfg.proxy.retry_idempotent);
	ck_assert_str_eq(cfg.metrics.path, "/m");
	ck_assert(cfg.metrics.listen_set);
	ck_assert_str_eq(cfg.metrics.listen.host, "127.0.0.1");
	ck_assert_uint_eq(cfg.metrics.listen.port, 9100);
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_WARN);
	ck_assert_int_eq(cfg.log.format, LOG_FORMAT_JSON);
	ck_assert(!cfg.log.access);
	ck_assert_str_eq(cfg.user, "www-data");
	ck_assert_str_eq(cfg.group, "www-data");
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	config_free(&cfg);
}
END_TEST

/* Weights, slow start, the state file and the control socket, and their defaults. */
START_TEST(live_operation_keys)
{
	struct config cfg;

	ck_assert_msg(parse(&cfg, "{}") == 0, "%s", err);
	ck_assert_str_eq(cfg.control.socket, "/run/roundguardd/control.sock");
	ck_assert_str_eq(cfg.control.state_file, "");
	ck_assert_int_eq(cfg.control.slow_start_ns, 0);
	config_free(&cfg);
	ck_assert_msg(parse(&cfg, "{\"backends\": [{\"url\": \"http://a:1\", \"weight\": 3},"
	    " \"http://b:2\", {\"url\": \"http://c:3\", \"weight\": 0},"
	    " {\"url\": \"http://d:4\"}], \"slow_start\": \"1m30s\","
	    " \"state_file\": \"/var/lib/roundguardd/state.json\","
	    " \"control\": {\"socket\": null, \"group\": \"adm\"}}") == 0, "%s", err);
	ck_assert_uint_eq(cfg.nbackends, 4);
	ck_assert_uint_eq(cfg.backends[0].weight, 3);
	ck_assert_uint_eq(cfg.backends[1].weight, 1);
	ck_assert_uint_eq(cfg.backends[2].weight, 0);
	ck_assert_uint_eq(cfg.backends[3].weight, 1);
	ck_assert_int_eq(cfg.control.slow_start_ns, 90 * NS_S);
	ck_assert_str_eq(cfg.control.state_file, "/var/lib/roundguardd/state.json");
	ck_assert_str_eq(cfg.control.socket, "");
	ck_assert_str_eq(cfg.control.group, "adm");
	config_free(&cfg);
	ck_assert_msg(parse(&cfg, "{\"slow_start\": \"0s\", \"control\": {\"socket\": \"/tmp/x.sock\"}}")
	    == 0, "%s", err);
	ck_assert_int_eq(cfg.control.slow_start_ns, 0);
	ck_assert_str_eq(cfg.control.socket, "/tmp/x.sock");
	config_free(&cfg);
	ck_assert_msg(parse(&cfg, "{\"slow_start\": null}") == 0, "%s", err);
	ck_assert_int_eq(cfg.control.slow_start_ns, 0);
	config_free(&cfg);
}
END_TEST

START_TEST(small_values)
{
	struct config cfg;

	ck_assert_msg(parse(&cfg, "{\"workers\": \"AUTO\", \"proxy\": {\"max_body_size\": \"512\","
	    " \"max_header_size\": 1024}, \"user\": null, \"group\": null,"
	    " \"metrics\": {\"listen\": null}, \"listen\": \"4000\"}") == 0, "%s", err);
	ck_assert_int_eq(cfg.workers, 0);
	ck_assert_uint_eq(cfg.proxy.max_body_size, 512);
	ck_assert_uint_eq(cfg.proxy.max_header_size, 1024);
	ck_assert_uint_eq(cfg.listen.port, 4000);
	ck_assert(!cfg.metrics.listen_set);
	ck_assert_str_eq(cfg.user, "");

	/* null takes back a value set earlier in the same merge chain. */
	ck_assert_int_eq(merge(&cfg, "{\"user\": \"a\", \"metrics\": {\"listen\": \":9\"}}"), 0);
	ck_assert_str_eq(cfg.user, "a");
	ck_assert(cfg.metrics.listen_set);
	ck_assert_int_eq(merge(&cfg, "{\"user\": null, \"metrics\": {\"listen\": null}}"), 0);
	ck_assert_str_eq(cfg.user, "");
	ck_assert(!cfg.metrics.listen_set);
}
END_TEST

/* ---- one bad value: the exact message ---- */

struct bad_doc {
	const char *json;
	const char *want;	/* the whole of err */
};

static const struct bad_doc bad_docs[] = {
	/* top level */
	{ "[]", NAME ": expected a JSON object at the top level, got array" },
	{ "42", NAME ": expected a JSON object at the top level, got integer" },
	{ "null", NAME ": expected a JSON object at the top level, got null" },
	{ "{\"listen\": 3000}",
	  NAME ": listen: expected an address like \"0.0.0.0:3000\", got integer" },
	{ "{\"listen\": \"localhost\"}",
	  NAME ": listen: \"localhost\": missing port (expected \"host:port\", \":port\" or \"port\")" },
	{ "{\"listen\": \"1.2.3.4:99999\"}",
	  NAME ": listen: \"1.2.3.4:99999\": port \"99999\" out of range (use 1-65535)" },
	{ "{\"workers\": true}", NAME ": workers: expected \"auto\" or an integer, got boolean" },
	{ "{\"workers\": 1.5}", NAME ": workers: expected \"auto\" or an integer, got number 1.5" },
	{ "{\"workers\": \"many\"}", NAME ": workers: \"many\": expected \"auto\" or an integer (1-256)" },
	{ "{\"workers\": 0}", NAME ": workers: 0: out of range (use 1-256)" },
	{ "{\"workers\": 257}", NAME ": workers: 257: out of range (use 1-256)" },
	{ "{\"workers\": -1}", NAME ": workers: -1: out of range (use 1-256)" },
	{ "{\"backends\": \"http://a\"}",
	  NAME ": backends: expected an array of URL strings or objects, got string" },
	{ "{\"backends\": {}}", NAME ": backends: expected an array of URL strings or objects, got object" },
	{ "{\"backends\": [\"http://a:1\", 2]}", NAME ": backends[1]: expected a URL string or an object, got integer" },
	{ "{\"backends\": [null]}", NAME ": backends[0]: expected a URL string or an object, got null" },
	{ "{\"backends\": [\"http://a:1\", \"http://b:2\", \"htp://x\"]}",
	  NAME ": backends[2]: \"htp://x\": unsupported scheme \"htp\" (use http or https)" },
	{ "{\"backends\": [\"http://a:1?x\"]}",
	  NAME ": backends[0]: \"http://a:1?x\": query strings are not allowed in a backend URL" },
	/* live operation (issue 15) */
	{ "{\"slow_start\": \"-1s\"}", NAME ": slow_start: \"-1s\": negative durations are not allowed" },
	{ "{\"slow_start\": 30}",
	  NAME ": slow_start: expected a duration string like \"30s\", or null, got integer" },
	{ "{\"state_file\": \"state.json\"}", NAME ": state_file: \"state.json\": not an absolute path" },
	{ "{\"state_file\": true}", NAME ": state_file: expected a file path or null, got boolean" },
	{ "{\"control\": {\"socket\": \"c.sock\"}}",
	  NAME ": control.socket: \"c.sock\": not an absolute path" },
	{ "{\"control\": {\"sock\": \"/c.sock\"}}", NAME ": control.sock: unknown key" },
	{ "{\"control\": \"/c.sock\"}", NAME ": control: expected an object, got string" },
	{ "{\"backends\": [{\"url\": \"http://a:1\", \"weight\": -1}]}",
	  NAME ": backends[0].weight: -1: out of range (use 0-256)" },
	/* health_check */
	{ "{\"health_check\": []}", NAME ": health_check: expected an object, got array" },
	{ "{\"health_check\": null}", NAME ": health_check: expected an object, got null" },
	{ "{\"health_check\": {\"path\": 5}}",
	  NAME ": health_check.path: expected a string, got integer" },
	{ "{\"health_check\": {\"path\": \"live\"}}",
	  NAME ": health_check.path: \"live\": must start with \"/\"" },
	{ "{\"health_check\": {\"path\": \"\"}}",
	  NAME ": health_check.path: \"\": must not be empty" },
	{ "{\"health_check\": {\"path\": \"/a b\"}}",
	  NAME ": health_check.path: \"/a b\": spaces, control characters, '#' and non-ASCII bytes "
	  "are not allowed (percent-encode them)" },
	{ "{\"health_check\": {\"interval\": 5}}",
	  NAME ": health_check.interval: expected a duration string like \"5s\", got integer" },
	{ "{\"health_check\": {\"interval\": \"5x\"}}",
	  NAME ": health_check.interval: \"5x\": not a duration: unknown unit \"x\" "
	  "(use ns, us, ms, s, m, h)" },
	{ "{\"health_check\": {\"interval\": \"5\"}}",
	  NAME ": health_check.interval: \"5\": not a duration: missing unit (use ns, us, ms, s, m, h)" },
	{ "{\"health_check\": {\"interval\": \"abc\"}}",
	  NAME ": health_check.interval: \"abc\": not a duration "
	  "(expected numbers with units, e.g. \"500ms\", \"5s\", \"1m30s\")" },
	{ "{\"health_check\": {\"interval\": \"0s\"}}",
	  NAME ": health_check.interval: \"0s\": must be longer than 0" },
	{ "{\"health_check\": {\"interval\": \"0\"}}",
	  NAME ": health_check.interval: \"0\": must be longer than 0" },
	{ "{\"health_check\": {\"interval\": \"-1s\"}}",
	  NAME ": health_check.interval: \"-1s\": negative durations are not allowed" },
	{ "{\"health_check\": {\"interval\": \"\"}}",
	  NAME ": health_check.interval: \"\": empty duration "
	  "(expected e.g. \"500ms\", \"5s\", \"1m30s\")" },
	{ "{\"health_check\": {\"timeout\": null}}",
	  NAME ": health_check.timeout: expected a duration string like \"5s\", got null" },
	{ "{\"health_check\": {\"timeout\": \"2 s\"}}",
	  NAME ": health_check.timeout: \"2 s\": not a duration: "
	  "no space is allowed between a number and its unit" },
	{ "{\"health_check\": {\"rise\": 0}}", NAME ": health_check.rise: 0: out of range (use 1-100)" },
	{ "{\"health_check\": {\"rise\": \"1\"}}",
	  NAME ": health_check.rise: expected an integer, got string" },
	{ "{\"health_check\": {\"fall\": 101}}", NAME ": health_check.fall: 101: out of range (use 1-100)" },
	{ "{\"health_check\": {\"fall\": 2.0}}",
	  NAME ": health_check.fall: expected an integer, got number 2.0" },
	{ "{\"health_check\": {\"expect_status\": 99}}",
	  NAME ": health_check.expect_status: 99: out of range (use 100-599)" },
	{ "{\"health_check\": {\"expect_status\": 600}}",
	  NAME ": health_check.expect_status: 600: out of range (use 100-599)" },
	{ "{\"health_check\": {\"expect_status\": true}}",
	  NAME ": health_check.expect_status: expected an integer, got boolean" },
	{ "{\"health_check\": {\"rise\": 99999999999999999999}}",
	  NAME ": health_check.rise: 18446744073709551615: out of range (use 1-100)" },
	/* proxy */
	{ "{\"proxy\": \"fast\"}", NAME ": proxy: expected an object, got string" },
	{ "{\"proxy\": {\"connect_timeout\": \"1x\"}}",
	  NAME ": proxy.connect_timeout: \"1x\": not a duration: unknown unit \"x\" "
	  "(use ns, us, ms, s, m, h)" },
	{ "{\"proxy\": {\"timeout\": 60}}",
	  NAME ": proxy.timeout: expected a duration string like \"5s\", got integer" },
	{ "{\"proxy\": {\"client_timeout\": \"0ms\"}}",
	  NAME ": proxy.client_timeout: \"0ms\": must be longer than 0" },
	{ "{\"proxy\": {\"shutdown_timeout\": false}}",
	  NAME ": proxy.shutdown_timeout: expected a duration string like \"5s\", got boolean" },
	{ "{\"proxy\": {\"shutdown_timeout\": \"3000000h\"}}",
	  NAME ": proxy.shutdown_timeout: \"3000000h\": duration too large "
	  "(at most 2562047h47m16.854775807s)" },
	{ "{\"proxy\": {\"max_body_size\": -1}}", NAME ": proxy.max_body_size: -1: must not be negative" },
	{ "{\"proxy\": {\"max_body_size\": \"16M\"}}",
	  NAME ": proxy.max_body_size: \"16M\": not a size: ambiguous unit \"M\" (use MiB or MB)" },
	{ "{\"proxy\": {\"max_body_size\": \"1.5MiB\"}}",
	  NAME ": proxy.max_body_size: \"1.5MiB\": not a size: "
	  "fractions are not allowed (use a smaller unit)" },
	{ "{\"proxy\": {\"max_body_size\": \"lots\"}}",
	  NAME ": proxy.max_body_size: \"lots\": not a size "
	  "(expected e.g. \"512\", \"64KiB\", \"16MiB\")" },
	{ "{\"proxy\": {\"max_body_size\": true}}",
	  NAME ": proxy.max_body_size: expected a size like \"16MiB\" or a number of bytes, got boolean" },
	{ "{\"proxy\": {\"max_header_size\": \"512\"}}",
	  NAME ": proxy.max_header_size: \"512\": out of range (use 1KiB-1MiB)" },
	{ "{\"proxy\": {\"max_header_size\": 2097152}}",
	  NAME ": proxy.max_header_size: 2097152: out of range (use 1KiB-1MiB)" },
	{ "{\"proxy\": {\"max_header_size\": \"2MiB\"}}",
	  NAME ": proxy.max_header_size: \"2MiB\": out of range (use 1KiB-1MiB)" },
	{ "{\"proxy\": {\"keepalive\": -1}}", NAME ": proxy.keepalive: -1: out of range (use 0-100000)" },
	{ "{\"proxy\": {\"keepalive\": 100001}}",
	  NAME ": proxy.keepalive: 100001: out of range (use 0-100000)" },
	{ "{\"proxy\": {\"keepalive\": \"64\"}}",
	  NAME ": proxy.keepalive: expected an integer, got string" },
	{ "{\"proxy\": {\"retry_unsent\": \"yes\"}}",
	  NAME ": proxy.retry_unsent: expected a boolean, got string" },
	{ "{\"proxy\": {\"retry_idempotent\": 1}}",
	  NAME ": proxy.retry_idempotent: expected a boolean, got integer" },
	{ "{\"proxy\": {\"underscores_in_headers\": \"yes\"}}",
	  NAME ": proxy.underscores_in_headers: expected a boolean, got string" },
	{ "{\"proxy\": {\"allow_trace\": null}}",
	  NAME ": proxy.allow_trace: expected a boolean, got null" },
	/* metrics */
	{ "{\"metrics\": 1}", NAME ": metrics: expected an object, got integer" },
	{ "{\"metrics\": {\"path\": \"metrics\"}}",
	  NAME ": metrics.path: \"metrics\": must start with \"/\"" },
	{ "{\"metrics\": {\"path\": \"/m#x\"}}",
	  NAME ": metrics.path: \"/m#x\": spaces, control characters, '#' and non-ASCII bytes "
	  "are not allowed (percent-encode them)" },
	{ "{\"metrics\": {\"listen\": 9100}}",
	  NAME ": metrics.listen: expected an address like \"127.0.0.1:9100\" or null, got integer" },
	{ "{\"metrics\": {\"listen\": \"::1:9100\"}}",
	  NAME ": metrics.listen: \"::1:9100\": IPv6 addresses must be in brackets (e.g. \"[::1]:3000\")" },
	/* log */
	{ "{\"log\": []}", NAME ": log: expected an object, got array" },
	{ "{\"log\": {\"level\": \"loud\"}}",
	  NAME ": log.level: invalid log level \"loud\" (valid: trace, debug, info, warn, error)" },
	{ "{\"log\": {\"level\": 3}}", NAME ": log.level: expected a string, got integer" },
	{ "{\"log\": {\"format\": \"xml\"}}",
	  NAME ": log.format: invalid log format \"xml\" (valid: text, json)" },
	{ "{\"log\": {\"format\": null}}", NAME ": log.format: expected a string, got null" },
	{ "{\"log\": {\"access\": \"true\"}}", NAME ": log.access: expected a boolean, got string" },
	/* user, group */
	{ "{\"user\": 0}", NAME ": user: expected a name or null, got integer" },
	{ "{\"user\": \"\"}", NAME ": user: \"\": must not be empty (use null to keep the current one)" },
	{ "{\"group\": \"a b\"}",
	  NAME ": group: \"a b\": spaces, control characters and ':' are not allowed" },
	{ "{\"group\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
	  NAME ": group: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": "
	  "too long (at most 63 bytes)" },
	/* strings with NUL bytes and keys with control characters */
	{ "{\"user\": \"ro\\u0000ot\"}", NAME ": user: \"ro\": NUL bytes are not allowed" },
	{ "{\"a\\nb\": 1}", NAME ": a\\x0ab: unknown key" },
	{ "{\"\": 1}", NAME ": \"\": unknown key" },
};

START_TEST(bad_value)
{
	const struct bad_doc *c = &bad_docs[_i];
	struct config cfg;
	int n = parse(&cfg, c->json);

	ck_assert_msg(n == 1, "%s: %d problems: %s", c->json, n, err);
	ck_assert_msg(strcmp(err, c->want) == 0, "%s:\n got: %s\nwant: %s", c->json, err, c->want);
	config_free(&cfg);
}
END_TEST

/* A bad value leaves the field alone. */
START_TEST(bad_value_keeps_field)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{\"health_check\": {\"interval\": \"5x\", \"timeout\": \"1y\"},"
	    " \"proxy\": {\"max_header_size\": \"4MiB\"}, \"workers\": 999, \"log\": {\"level\": \"x\"}}"), 5);
	ck_assert_int_eq(cfg.health.interval_ns, 5 * NS_S);
	ck_assert_int_eq(cfg.health.timeout_ns, 2 * NS_S);
	ck_assert(!cfg.health.timeout_set);
	ck_assert_uint_eq(cfg.proxy.max_header_size, 16 * 1024);
	ck_assert_int_eq(cfg.workers, 0);
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_INFO);
}
END_TEST

START_TEST(long_value_is_shortened)
{
	char json[512], want[512];
	struct config cfg;

	snprintf(json, sizeof(json), "{\"health_check\": {\"interval\": \"%0100dx\"}}", 5);
	ck_assert_int_eq(parse(&cfg, json), 1);
	snprintf(want, sizeof(want), NAME ": health_check.interval: \"%064d...\": ", 0);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
	ck_assert_ptr_null(strchr(err, '\n'));
}
END_TEST

/* ---- many problems at once ---- */

START_TEST(all_problems_reported)
{
	static const char doc[] =
	    "{\n"
	    "  \"listen\": \"nowhere\",\n"
	    "  \"workers\": 0,\n"
	    "  \"backends\": [\"http://a:1\", \"ftp://b\", \"http://c:3\", \"http://d:0\"],\n"
	    "  \"health_check\": { \"interval\": \"5x\", \"rise\": 0, \"timeout\": \"1s\" },\n"
	    "  \"proxy\": { \"retry_unsent\": \"yes\", \"keepalive\": 64 },\n"
	    "  \"log\": { \"level\": \"loud\" },\n"
	    "  \"user\": 5\n"
	    "}\n";
	static const char *const want[] = {
		NAME ": listen: \"nowhere\": missing port (expected \"host:port\", \":port\" or \"port\")",
		NAME ": workers: 0: out of range (use 1-256)",
		NAME ": backends[1]: \"ftp://b\": unsupported scheme \"ftp\" (use http or https)",
		NAME ": backends[3]: \"http://d:0\": port \"0\" out of range (use 1-65535)",
		NAME ": health_check.interval: \"5x\": not a duration: unknown unit \"x\" "
		    "(use ns, us, ms, s, m, h)",
		NAME ": health_check.rise: 0: out of range (use 1-100)",
		NAME ": proxy.retry_unsent: expected a boolean, got string",
		NAME ": log.level: invalid log level \"loud\" (valid: trace, debug, info, warn, error)",
		NAME ": user: expected a name or null, got integer",
	};
	struct config cfg;
	const char *p = err;
	size_t i;

	ck_assert_int_eq(parse(&cfg, doc), (int)COUNT(want));
	/* One line each, in document order. */
	for (i = 0; i < COUNT(want); i++) {
		size_t n = strlen(want[i]);

		ck_assert_msg(strncmp(p, want[i], n) == 0, "line %zu:\n got: %.*s\nwant: %s", i,
		    (int)strcspn(p, "\n"), p, want[i]);
		p += n;
		ck_assert(*p == (i + 1 < COUNT(want) ? '\n' : '\0'));
		p += *p == '\n';
	}
	/* The good entries and values are still taken. */
	ck_assert_uint_eq(cfg.nbackends, 2);
	ck_assert_str_eq(cfg.backends[1].addr.host, "c");
	ck_assert_int_eq(cfg.health.timeout_ns, NS_S);
	config_free(&cfg);
}
END_TEST

START_TEST(unknown_keys)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{\"health_chek\": {\"interval\": \"5x\"}, \"backends\": [],"
	    " \"proxy\": {\"timeout\": \"1s\", \"tiemout\": \"1s\"}, \"log\": {\"lvl\": 1},"
	    " \"metrics\": {\"listen\": null, \"port\": 9}}"), 4);
	ck_assert(has_line(err, NAME ": health_chek: unknown key"));
	ck_assert(has_line(err, NAME ": proxy.tiemout: unknown key"));
	ck_assert(has_line(err, NAME ": log.lvl: unknown key"));
	ck_assert(has_line(err, NAME ": metrics.port: unknown key"));
	/* The value under an unknown key is not looked at. */
	ck_assert_ptr_null(strstr(err, "5x"));
	ck_assert_int_eq(cfg.proxy.timeout_ns, NS_S);
}
END_TEST

/* ---- JSON syntax ---- */

struct syntax_case {
	const char *json;
	const char *want;
};

static const struct syntax_case syntax_cases[] = {
	{ "{\n  \"listen\": \":1\"\n  \"workers\": 2\n}\n",
	  NAME ": line 3: JSON syntax error: object value separator ',' expected" },
	{ "{\n\"a\":\n tru}", NAME ": line 3: JSON syntax error: boolean expected" },
	{ "{\"backends\": [\n\"http://a:1\",\n", NAME ": line 3: JSON syntax error: unexpected end of data" },
	{ "", NAME ": line 1: JSON syntax error: unexpected end of data" },
	{ "  // nothing but a comment\n", NAME ": line 2: JSON syntax error: unexpected end of data" },
	{ "{}\n\n{}", NAME ": line 3: JSON syntax error: unexpected data after the end of the document" },
	{ "{} x", NAME ": line 1: JSON syntax error: unexpected data after the end of the document" },
	{ "{\n/* open comment\n", NAME ": line 3: JSON syntax error: unexpected end of data" },
	{ "{\"user\": \"a", NAME ": line 1: JSON syntax error: unexpected end of data" },
};

START_TEST(syntax_error)
{
	const struct syntax_case *c = &syntax_cases[_i];
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, c->json), 1);
	ck_assert_msg(strcmp(err, c->want) == 0, "%s:\n got: %s\nwant: %s", c->json, err, c->want);
}
END_TEST

START_TEST(comments_allowed)
{
	struct config cfg;

	ck_assert_msg(parse(&cfg, "// line\n{ /* a */ \"workers\": /* b */ 3 // c\n, \"log\": /*\n*/ "
	    "{\"level\": \"debug\"} } // end\n/* end */") == 0, "%s", err);
	ck_assert_int_eq(cfg.workers, 3);
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_DEBUG);
}
END_TEST

/* len bounds the text: what follows is never read. */
START_TEST(length_is_respected)
{
	static const char text[] = "{\"workers\": 2}garbage";
	struct config cfg;

	config_defaults(&cfg);
	err[0] = '\0';
	ck_assert_int_eq(config_parse_json(&cfg, NAME, text, 14, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.workers, 2);
	ck_assert_int_eq(config_parse_json(&cfg, NAME, text, 13, err, sizeof(err)), 1);
	ck_assert_str_eq(err, NAME ": line 1: JSON syntax error: unexpected end of data");
}
END_TEST

/* ---- the error buffer ---- */

START_TEST(err_never_overflows)
{
	static const char doc[] = "{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4, \"e\": 5}";
	char buf[48 + 8];
	struct config cfg;
	size_t len;

	for (len = 0; len <= 48; len++) {
		memset(buf, 'Z', sizeof(buf));
		if (len > 0)
			buf[0] = '\0';
		config_defaults(&cfg);
		ck_assert_int_eq(config_parse_json(&cfg, NAME, doc, strlen(doc), len > 0 ? buf : NULL,
		    len), 5);
		ck_assert_msg(memcmp(buf + len, "ZZZZZZZZ", 8) == 0, "overflow at %zu", len);
		if (len == 0)
			continue;
		ck_assert_uint_lt(strlen(buf), len);
		if (len >= 4)
			ck_assert_msg(strlen(buf) >= 3 && strcmp(buf + strlen(buf) - 3, "...") == 0,
			    "len %zu: %s", len, buf);
	}
	/* Enough room: all five lines, no "...". */
	config_defaults(&cfg);
	err[0] = '\0';
	ck_assert_int_eq(config_parse_json(&cfg, NAME, doc, strlen(doc), err, sizeof(err)), 5);
	ck_assert_str_eq(err, NAME ": a: unknown key\n" NAME ": b: unknown key\n" NAME ": c: unknown key\n"
	    NAME ": d: unknown key\n" NAME ": e: unknown key");
}
END_TEST

/* Calls append, so one buffer can collect the file's, the environment's and validation's problems. */
START_TEST(err_appends)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{\"x\": 1}"), 1);
	ck_assert_int_eq(config_add_backend(&cfg, "ftp://a", "--hosts", err, sizeof(err)), 1);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, NAME ": x: unknown key\n"
	    "--hosts: \"ftp://a\": unsupported scheme \"ftp\" (use http or https)\n"
	    NAME ": backends: at least one backend is needed (set \"backends\" or pass --backend URL)");
	config_free(&cfg);
}
END_TEST

/* ---- environment ---- */

static const char *fake_env[8][2];

static const char *
fake_getenv(const char *name)
{
	size_t i;

	for (i = 0; i < COUNT(fake_env) && fake_env[i][0] != NULL; i++) {
		if (strcmp(fake_env[i][0], name) == 0)
			return fake_env[i][1];
	}
	return NULL;
}

static void
set_env(const char *l, const char *f, const char *d)
{
	memset(fake_env, 0, sizeof(fake_env));
	fake_env[0][0] = "LOG_LEVEL";
	fake_env[0][1] = l;
	fake_env[1][0] = "LOG_FORMAT";
	fake_env[1][1] = f;
	fake_env[2][0] = "PROXY_CHECK_DURATION";
	fake_env[2][1] = d;
}

START_TEST(env_overrides)
{
	struct config cfg;

	config_defaults(&cfg);
	set_env("debug", "JSON", "1m");
	err[0] = '\0';
	ck_assert_int_eq(config_apply_env(&cfg, fake_getenv, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_DEBUG);
	ck_assert_int_eq(cfg.log.format, LOG_FORMAT_JSON);
	ck_assert_int_eq(cfg.health.interval_ns, 60 * NS_S);
	ck_assert(!cfg.health.timeout_set);
}
END_TEST

START_TEST(env_unset_or_empty)
{
	struct config cfg, def;

	config_defaults(&cfg);
	config_defaults(&def);
	set_env(NULL, "", "");
	ck_assert_int_eq(config_apply_env(&cfg, fake_getenv, err, sizeof(err)), 0);
	ck_assert(memcmp(&cfg, &def, sizeof(cfg)) == 0);
}
END_TEST

START_TEST(env_bad_values)
{
	struct config cfg;

	config_defaults(&cfg);
	set_env("loud", "xml", "abc");
	err[0] = '\0';
	ck_assert_int_eq(config_apply_env(&cfg, fake_getenv, err, sizeof(err)), 3);
	ck_assert_str_eq(err,
	    "LOG_LEVEL: invalid log level \"loud\" (valid: trace, debug, info, warn, error)\n"
	    "LOG_FORMAT: invalid log format \"xml\" (valid: text, json)\n"
	    "PROXY_CHECK_DURATION: \"abc\": not a duration "
	    "(expected numbers with units, e.g. \"500ms\", \"5s\", \"1m30s\")");
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_INFO);
	ck_assert_int_eq(cfg.log.format, LOG_FORMAT_TEXT);
	ck_assert_int_eq(cfg.health.interval_ns, 5 * NS_S);

	set_env(NULL, NULL, "0s");
	err[0] = '\0';
	ck_assert_int_eq(config_apply_env(&cfg, fake_getenv, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "PROXY_CHECK_DURATION: \"0s\": must be longer than 0");
	set_env(NULL, NULL, "10");
	err[0] = '\0';
	ck_assert_int_eq(config_apply_env(&cfg, fake_getenv, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "PROXY_CHECK_DURATION: \"10\": not a duration: missing unit "
	    "(use ns, us, ms, s, m, h)");
}
END_TEST

/* NULL reads the real environment. */
START_TEST(env_real_getenv)
{
	struct config cfg;

	config_defaults(&cfg);
	setenv("LOG_LEVEL", "error", 1);
	unsetenv("LOG_FORMAT");
	setenv("PROXY_CHECK_DURATION", "250ms", 1);
	ck_assert_int_eq(config_apply_env(&cfg, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_ERROR);
	ck_assert_int_eq(cfg.health.interval_ns, 250 * NS_MS);
	unsetenv("LOG_LEVEL");
	unsetenv("PROXY_CHECK_DURATION");
}
END_TEST

/* Defaults < file < environment < flags. */
START_TEST(precedence)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{\"log\": {\"level\": \"warn\", \"format\": \"json\"},"
	    " \"health_check\": {\"interval\": \"10s\"},"
	    " \"backends\": [\"http://a:1\", \"http://b:2\"]}"), 0);
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_WARN);
	ck_assert_int_eq(cfg.health.interval_ns, 10 * NS_S);
	set_env("debug", "", "1s");
	ck_assert_int_eq(config_apply_env(&cfg, fake_getenv, err, sizeof(err)), 0);
	ck_assert_int_eq(config_add_backend(&cfg, "http://c:3", "--backend", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_DEBUG);
	ck_assert_int_eq(cfg.log.format, LOG_FORMAT_JSON);	/* empty LOG_FORMAT: file wins */
	ck_assert_int_eq(cfg.health.interval_ns, NS_S);
	ck_assert_int_eq(cfg.health.timeout_ns, 500 * NS_MS);	/* default shrunk to fit */
	ck_assert_uint_eq(cfg.nbackends, 3);
	ck_assert_str_eq(cfg.backends[0].addr.hostport, "a:1");
	ck_assert_str_eq(cfg.backends[2].addr.hostport, "c:3");
	config_free(&cfg);
}
END_TEST

/* A later document's "backends" replaces the list; its other keys merge. */
START_TEST(backends_replaced)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{\"backends\": [\"http://a:1\", \"http://b:2\"], \"workers\": 2}"), 0);
	ck_assert_int_eq(merge(&cfg, "{\"backends\": [\"http://c:3\"]}"), 0);
	ck_assert_uint_eq(cfg.nbackends, 1);
	ck_assert_str_eq(cfg.backends[0].addr.host, "c");
	ck_assert_int_eq(cfg.workers, 2);
	ck_assert_int_eq(merge(&cfg, "{\"backends\": []}"), 0);
	ck_assert_uint_eq(cfg.nbackends, 0);
	config_free(&cfg);
}
END_TEST

/* ---- flags ---- */

START_TEST(add_backend)
{
	struct config cfg;

	config_defaults(&cfg);
	err[0] = '\0';
	ck_assert_int_eq(config_add_backend(&cfg, "http://127.0.0.1:8001", "--backend", err,
	    sizeof(err)), 0);
	ck_assert_int_eq(config_add_backend(&cfg, "ftp://x", "--backend", err, sizeof(err)), 1);
	ck_assert_str_eq(err, "--backend: \"ftp://x\": unsupported scheme \"ftp\" (use http or https)");
	err[0] = '\0';
	ck_assert_int_eq(config_add_backend(&cfg, "", "--hosts", err, sizeof(err)), 1);
	ck_assert_str_eq(err, "--hosts: \"\": empty backend URL (expected \"http://host[:port][/prefix]\")");
	err[0] = '\0';
	ck_assert_int_eq(config_add_backend(&cfg, "http://[::1]:8002/x", NULL, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.nbackends, 2);
	ck_assert_str_eq(cfg.backends[0].url, "http://127.0.0.1:8001");
	ck_assert_str_eq(cfg.backends[1].addr.hostport, "[::1]:8002");
	ck_assert_str_eq(cfg.backends[1].addr.prefix, "/x");
	config_free(&cfg);
}
END_TEST

/* ---- validation ---- */

START_TEST(validate_no_backends)
{
	struct config cfg;

	config_defaults(&cfg);
	err[0] = '\0';
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "command line: backends: at least one backend is needed "
	    "(set \"backends\" or pass --backend URL)");
	/* Validation completes the listeners (an allocation) even when it finds problems. */
	config_free(&cfg);
	ck_assert_int_eq(parse(&cfg, "{\"backends\": []}"), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, NAME ": backends: at least one backend is needed "
	    "(set \"backends\" or pass --backend URL)");
	config_free(&cfg);
}
END_TEST

START_TEST(validate_duplicates)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{\"backends\": [\"http://a:1\", \"http://b:1\", \"http://a:2\","
	    " \"http://A:1/\", \"http://a:1/p\", \"http://[::1]:5\", \"http://[0::1]:5\", \"http://a:80\","
	    " \"http://a\", \"http://a:1/p/\"]}"), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 5);
	ck_assert_str_eq(err,
	    NAME ": backends[3]: \"http://A:1/\": duplicate of backends[0]\n"
	    NAME ": backends[4]: \"http://a:1/p\": same host and port as backends[0] "
	    "(backends are told apart by host:port)\n"
	    NAME ": backends[6]: \"http://[0::1]:5\": duplicate of backends[5]\n"
	    NAME ": backends[8]: \"http://a\": duplicate of backends[7]\n"
	    NAME ": backends[9]: \"http://a:1/p/\": same host and port as backends[0] "
	    "(backends are told apart by host:port)");
	config_free(&cfg);
}
END_TEST

START_TEST(validate_workers)
{
	static const struct {
		int workers;
		int problems;
	} cases[] = { { 0, 0 }, { 1, 0 }, { 256, 0 }, { 257, 1 }, { -1, 1 } };
	struct config cfg;
	size_t i;

	for (i = 0; i < COUNT(cases); i++) {
		config_defaults(&cfg);
		ck_assert_int_eq(config_add_backend(&cfg, "http://a:1", NULL, err, sizeof(err)), 0);
		cfg.workers = cases[i].workers;
		err[0] = '\0';
		ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), cases[i].problems);
		config_free(&cfg);
	}
	ck_assert_str_eq(err, "command line: workers: -1: out of range (use 1-256, or \"auto\")");
}
END_TEST

START_TEST(validate_timeout_explicit)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{\"backends\": [\"http://a:1\"],"
	    " \"health_check\": {\"interval\": \"2s\", \"timeout\": \"3s\"}}"), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, NAME ": health_check.timeout: 3s must be shorter than "
	    "health_check.interval 2s");
	ck_assert_int_eq(cfg.health.timeout_ns, 3 * NS_S);
	config_free(&cfg);

	/* Equal is not shorter. */
	ck_assert_int_eq(parse(&cfg, "{\"backends\": [\"http://a:1\"],"
	    " \"health_check\": {\"interval\": \"1500ms\", \"timeout\": \"1.5s\"}}"), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, NAME ": health_check.timeout: 1.5s must be shorter than "
	    "health_check.interval 1.5s");
	config_free(&cfg);

	/* Shorter is fine, and left alone. */
	ck_assert_int_eq(parse(&cfg, "{\"backends\": [\"http://a:1\"],"
	    " \"health_check\": {\"interval\": \"1s\", \"timeout\": \"999ms\"}}"), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg.health.timeout_ns, 999 * NS_MS);
	config_free(&cfg);

	/* PROXY_CHECK_DURATION under an explicit timeout is a conflict too. */
	ck_assert_int_eq(parse(&cfg, "{\"backends\": [\"http://a:1\"],"
	    " \"health_check\": {\"timeout\": \"2s\"}}"), 0);
	set_env(NULL, NULL, "1s");
	ck_assert_int_eq(config_apply_env(&cfg, fake_getenv, err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, NAME ": health_check.timeout: 2s must be shorter than "
	    "health_check.interval 1s");
	config_free(&cfg);
}
END_TEST

START_TEST(validate_timeout_default_shrinks)
{
	static const struct {
		int64_t interval, timeout;
	} cases[] = {
		{ 5 * NS_S, 2 * NS_S },
		{ 3 * NS_S, 2 * NS_S },
		{ 2 * NS_S, NS_S },
		{ NS_S, 500 * NS_MS },
		{ 3, 1 },
	};
	struct config cfg;
	size_t i;

	for (i = 0; i < COUNT(cases); i++) {
		config_defaults(&cfg);
		ck_assert_int_eq(config_add_backend(&cfg, "http://a:1", NULL, err, sizeof(err)), 0);
		cfg.health.interval_ns = cases[i].interval;
		err[0] = '\0';
		ck_assert_msg(config_validate(&cfg, err, sizeof(err)) == 0, "%s", err);
		ck_assert_int_eq(cfg.health.timeout_ns, cases[i].timeout);
		ck_assert(!cfg.health.timeout_set);
		config_free(&cfg);
	}
	/* 1ns leaves no room for any timeout. */
	config_defaults(&cfg);
	ck_assert_int_eq(config_add_backend(&cfg, "http://a:1", NULL, err, sizeof(err)), 0);
	cfg.health.interval_ns = 1;
	err[0] = '\0';
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "command line: health_check.interval: 1ns is too short to leave room "
	    "for a timeout");
	config_free(&cfg);
}
END_TEST

START_TEST(validate_metrics)
{
	static const struct {
		const char *listen, *metrics;
		const char *want;	/* NULL: no problem */
	} cases[] = {
		{ "0.0.0.0:3000", "0.0.0.0:3000",
		  NAME ": metrics.listen: 0.0.0.0:3000 conflicts with listen 0.0.0.0:3000 "
		  "(use another port, or null to serve /metrics on the proxy port)" },
		{ ":3000", "127.0.0.1:3000",
		  NAME ": metrics.listen: 127.0.0.1:3000 conflicts with listen *:3000 "
		  "(use another port, or null to serve /metrics on the proxy port)" },
		{ "[::1]:3000", "[::]:3000",
		  NAME ": metrics.listen: [::]:3000 conflicts with listen [::1]:3000 "
		  "(use another port, or null to serve /metrics on the proxy port)" },
		{ "Localhost:3000", "localhost:3000",
		  NAME ": metrics.listen: localhost:3000 conflicts with listen Localhost:3000 "
		  "(use another port, or null to serve /metrics on the proxy port)" },
		{ "0.0.0.0:3000", "0.0.0.0:9100", NULL },
		{ "127.0.0.1:3000", "127.0.0.2:3000", NULL },
	};
	char json[256];
	struct config cfg;
	size_t i;

	for (i = 0; i < COUNT(cases); i++) {
		snprintf(json, sizeof(json), "{\"backends\": [\"http://a:1\"], \"listen\": \"%s\","
		    " \"metrics\": {\"listen\": \"%s\"}}", cases[i].listen, cases[i].metrics);
		ck_assert_msg(parse(&cfg, json) == 0, "%s", err);
		ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), cases[i].want != NULL);
		ck_assert_str_eq(err, cases[i].want != NULL ? cases[i].want : "");
		config_free(&cfg);
	}
}
END_TEST

START_TEST(validate_paths)
{
	struct config cfg;

	config_defaults(&cfg);
	ck_assert_int_eq(config_add_backend(&cfg, "http://a:1", NULL, err, sizeof(err)), 0);
	cfg.metrics.path[0] = '\0';
	err[0] = '\0';
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "command line: metrics.path: must not be empty");
	config_free(&cfg);
}
END_TEST

/* ---- copies ---- */

START_TEST(copy_free_same)
{
	struct config a, b, c;

	ck_assert_int_eq(parse(&a, "{\"backends\": [\"http://a:1\", \"http://b:2/x\"], \"workers\": 3}"), 0);
	ck_assert_int_eq(config_copy(&b, &a), 0);
	ck_assert_ptr_nonnull(b.backends);
	ck_assert_ptr_ne(b.backends, a.backends);
	ck_assert_uint_eq(b.nbackends, 2);
	ck_assert_str_eq(b.backends[1].url, "http://b:2/x");
	ck_assert_int_eq(b.workers, 3);
	ck_assert(config_same_backends(&a, &b));

	/* The copy owns its array. */
	config_free(&a);
	ck_assert_ptr_null(a.backends);
	ck_assert_uint_eq(a.nbackends, 0);
	ck_assert_str_eq(a.file, "");
	ck_assert_str_eq(b.backends[0].addr.host, "a");
	config_free(&a);	/* twice is harmless */

	/* Same URLs spelled differently are the same list; order and prefix count. */
	config_defaults(&c);
	ck_assert_int_eq(config_add_backend(&c, "HTTP://A:1/", NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(config_add_backend(&c, "http://b:2/x/", NULL, err, sizeof(err)), 0);
	ck_assert(config_same_backends(&b, &c));
	c.backends[1].addr.prefix[0] = '\0';
	ck_assert(!config_same_backends(&b, &c));
	config_free(&c);
	config_defaults(&c);
	ck_assert_int_eq(config_add_backend(&c, "http://b:2/x", NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(config_add_backend(&c, "http://a:1", NULL, err, sizeof(err)), 0);
	ck_assert(!config_same_backends(&b, &c));
	ck_assert_int_eq(config_add_backend(&c, "http://a:1", NULL, err, sizeof(err)), 0);
	ck_assert(!config_same_backends(&b, &c));
	config_free(&c);
	config_free(&b);

	/* Empty lists: copies stay NULL and compare equal. */
	config_defaults(&a);
	ck_assert_int_eq(config_copy(&b, &a), 0);
	ck_assert_ptr_null(b.backends);
	ck_assert(config_same_backends(&a, &b));
	config_free(&b);
}
END_TEST

/* ---- many backends ---- */

static char *
backends_doc(size_t n)
{
	size_t cap = 64 + n * 40, len, i;
	char *doc = malloc(cap);

	ck_assert_ptr_nonnull(doc);
	len = (size_t)snprintf(doc, cap, "{\"backends\": [");
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(doc + len, cap - len, "%s\"http://10.0.%zu.%zu:%zu\"",
		    i > 0 ? ", " : "", i / 256, i % 256, 1000 + i);
	snprintf(doc + len, cap - len, "]}");
	return doc;
}

START_TEST(many_backends)
{
	struct config cfg, copy;
	char *doc = backends_doc(CONFIG_BACKENDS_MAX);

	ck_assert_msg(parse(&cfg, doc) == 0, "%s", err);
	ck_assert_uint_eq(cfg.nbackends, CONFIG_BACKENDS_MAX);
	ck_assert_str_eq(cfg.backends[1024].addr.hostport, "10.0.4.0:2024");
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(config_add_backend(&cfg, "http://x:1", NULL, err, sizeof(err)), 1);
	ck_assert_str_eq(err, "--backend: too many backends (at most 4096)");
	ck_assert_int_eq(config_copy(&copy, &cfg), 0);
	ck_assert(config_same_backends(&cfg, &copy));
	config_free(&copy);
	config_free(&cfg);
	free(doc);

	doc = backends_doc(CONFIG_BACKENDS_MAX + 1);
	ck_assert_int_eq(parse(&cfg, doc), 1);
	ck_assert_str_eq(err, NAME ": backends: 4097 backends: too many (at most 4096)");
	ck_assert_uint_eq(cfg.nbackends, 0);
	free(doc);
}
END_TEST

/* ---- files ---- */

static int
load(struct config *cfg, const char *file, char *path, size_t pathlen)
{
	data_path(path, pathlen, file);
	config_defaults(cfg);
	err[0] = '\0';
	return config_load_file(cfg, path, err, sizeof(err));
}

START_TEST(file_good_full)
{
	char path[1024];
	struct config cfg;

	ck_assert_msg(load(&cfg, "good-full.json", path, sizeof(path)) == 0, "%s", err);
	ck_assert_str_eq(cfg.file, path);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.listen.host, "127.0.0.1");
	ck_assert_uint_eq(cfg.listen.port, 8080);
	ck_assert_int_eq(cfg.workers, 4);
	ck_assert_uint_eq(cfg.nbackends, 3);
	ck_assert_str_eq(cfg.backends[1].addr.hostport, "[::1]:9002");
	ck_assert_str_eq(cfg.backends[1].addr.prefix, "/api");
	ck_assert_str_eq(cfg.health.path, "/healthz");
	ck_assert_int_eq(cfg.health.interval_ns, 10 * NS_S);
	ck_assert_int_eq(cfg.health.timeout_ns, 1500 * NS_MS);
	ck_assert_int_eq(cfg.health.rise, 2);
	ck_assert_int_eq(cfg.health.fall, 3);
	ck_assert_int_eq(cfg.health.expect_status, 204);
	ck_assert_int_eq(cfg.proxy.connect_timeout_ns, NS_S);
	ck_assert_int_eq(cfg.proxy.timeout_ns, 30 * NS_S);
	ck_assert_int_eq(cfg.proxy.client_timeout_ns, 15 * NS_S);
	ck_assert_int_eq(cfg.proxy.shutdown_timeout_ns, 90 * NS_S);
	ck_assert_int_eq(cfg.proxy.tunnel_timeout_ns, 120 * NS_S);
	ck_assert_uint_eq(cfg.proxy.max_body_size, 1024 * 1024);
	ck_assert_uint_eq(cfg.proxy.max_header_size, 32768);
	ck_assert_int_eq(cfg.proxy.keepalive, 0);
	ck_assert(!cfg.proxy.retry_unsent);
	ck_assert(!cfg.proxy.retry_idempotent);
	ck_assert(cfg.proxy.underscores_in_headers);
	ck_assert(cfg.proxy.allow_trace);
	ck_assert_str_eq(cfg.metrics.path, "/_metrics");
	ck_assert(cfg.metrics.listen_set);
	ck_assert_uint_eq(cfg.metrics.listen.port, 9100);
	ck_assert_int_eq(cfg.log.level, LOG_LEVEL_DEBUG);
	ck_assert_int_eq(cfg.log.format, LOG_FORMAT_JSON);
	ck_assert(!cfg.log.access);
	ck_assert_str_eq(cfg.user, "nobody");
	ck_assert_str_eq(cfg.group, "nogroup");
	config_free(&cfg);
}
END_TEST

START_TEST(file_good_minimal)
{
	char path[1024];
	struct config cfg, def;

	ck_assert_msg(load(&cfg, "good-minimal.json", path, sizeof(path)) == 0, "%s", err);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.nbackends, 1);
	ck_assert_str_eq(cfg.backends[0].addr.hostport, "127.0.0.1:8001");
	/* Everything else is at its default. */
	config_defaults(&def);
	strcpy(def.file, path);
	def.backends = cfg.backends;
	def.nbackends = cfg.nbackends;
	/* The short form: "listen" as listeners[0], the only one. */
	ck_assert_uint_eq(cfg.nlisteners, 1);
	ck_assert_str_eq(cfg.listeners[0].name, "http-3000");
	ck_assert(!cfg.listeners[0].tls_set);
	def.listeners = cfg.listeners;
	def.nlisteners = cfg.nlisteners;
	ck_assert(memcmp(&cfg, &def, sizeof(cfg)) == 0);
	config_free(&cfg);
}
END_TEST

/* The shipped example sets every key to its default. */
START_TEST(file_example)
{
	char path[1024];
	struct config cfg, def;

	ck_assert_msg(load(&cfg, "../../examples/roundguardd.json", path, sizeof(path)) == 0, "%s", err);
	ck_assert_msg(config_validate(&cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg.nbackends, 3);
	ck_assert_str_eq(cfg.backends[0].addr.hostport, "127.0.0.1:8001");
	ck_assert_str_eq(cfg.backends[1].addr.hostport, "127.0.0.1:8002");
	ck_assert_str_eq(cfg.backends[2].addr.hostport, "127.0.0.1:8003");
	/* ":3000": every address, as the built-in default. */
	ck_assert_str_eq(cfg.listen.host, "");
	ck_assert_uint_eq(cfg.listen.port, 3000);
	config_defaults(&def);
	strcpy(def.file, path);
	def.backends = cfg.backends;
	def.nbackends = cfg.nbackends;
	def.listen = cfg.listen;
	def.listen_set = cfg.listen_set;
	ck_assert_uint_eq(cfg.nlisteners, 1);
	def.listeners = cfg.listeners;
	def.nlisteners = cfg.nlisteners;
	/* The example leaves health_check.timeout out so that it shrinks with the interval. */
	ck_assert(!cfg.health.timeout_set);
	ck_assert(memcmp(&cfg, &def, sizeof(cfg)) == 0);
	config_free(&cfg);
}
END_TEST

struct bad_file {
	const char *file;
	int parse_problems;
	int validate_problems;	/* checked only when parsing succeeded */
	const char *want;	/* the message after "<path>: " */
};

static const struct bad_file bad_files[] = {
	{ "bad-unknown-key.json", 2, 0, "health_chek: unknown key" },
	{ "bad-duration.json", 1, 0,
	  "health_check.interval: \"5x\": not a duration: unknown unit \"x\" (use ns, us, ms, s, m, h)" },
	{ "bad-type.json", 1, 0, "proxy.retry_unsent: expected a boolean, got string" },
	{ "bad-backend-url.json", 1, 0,
	  "backends[2]: \"htp://x\": unsupported scheme \"htp\" (use http or https)" },
	{ "bad-syntax.json", 1, 0, "line 4: JSON syntax error: object value separator ',' expected" },
	{ "bad-no-backends.json", 0, 1,
	  "backends: at least one backend is needed (set \"backends\" or pass --backend URL)" },
	{ "bad-duplicate-backend.json", 0, 1,
	  "backends[3]: \"http://127.0.0.1:8001/\": duplicate of backends[0]" },
	{ "bad-timeout-interval.json", 0, 1,
	  "health_check.timeout: 3s must be shorter than health_check.interval 2s" },
};

START_TEST(file_bad)
{
	const struct bad_file *c = &bad_files[_i];
	char path[1024], want[2048];
	struct config cfg;
	int n = load(&cfg, c->file, path, sizeof(path));

	ck_assert_msg(n == c->parse_problems, "%s: %d problems: %s", c->file, n, err);
	if (n == 0) {
		n = config_validate(&cfg, err, sizeof(err));
		ck_assert_msg(n == c->validate_problems, "%s: %d problems: %s", c->file, n, err);
	}
	snprintf(want, sizeof(want), "%s: %s", path, c->want);
	ck_assert_msg(has_line(err, want), "%s:\n got: %s\nwant: %s", c->file, err, want);
	config_free(&cfg);
}
END_TEST

START_TEST(file_unreadable)
{
	char path[1024], want[2048];
	struct config cfg;

	ck_assert_int_eq(load(&cfg, "no-such-file.json", path, sizeof(path)), 1);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	ck_assert_str_eq(err, want);

	ck_assert_int_eq(load(&cfg, ".", path, sizeof(path)), 1);
	snprintf(want, sizeof(want), "%s: is a directory, not a file", path);
	ck_assert_str_eq(err, want);
}
END_TEST

/* ---- discovered backends ("discover", "srv", "resolve") ---- */

/* Parse and validate json; both must find nothing. */
static void
parse_valid(struct config *cfg, const char *json)
{
	ck_assert_msg(parse(cfg, json) == 0, "%s: %s", json, err);
	err[0] = '\0';
	ck_assert_msg(config_validate(cfg, err, sizeof(err)) == 0, "%s: %s", json, err);
}

/* Slots first .. first + n - 1 are copies of one discovered entry. */
static void
assert_slots(const struct config *cfg, size_t first, size_t n, uint8_t discover, const char *url)
{
	for (size_t i = first; i < first + n; i++) {
		const struct config_backend *b = &cfg->backends[i];

		ck_assert_msg(b->discover == discover, "backends[%zu]: discover %u", i, b->discover);
		ck_assert_uint_eq(b->discover_max, n);
		ck_assert_uint_eq(b->discover_first, first);
		ck_assert_str_eq(b->url, url);
		ck_assert_int_eq(b->salen, 0);
	}
}

START_TEST(discover_resolve_defaults)
{
	struct config cfg;

	config_defaults(&cfg);
	ck_assert_uint_eq(cfg.resolve.nresolvers, 0);
	ck_assert_int_eq(cfg.resolve.min_interval_ns, NS_S);
	ck_assert_int_eq(cfg.resolve.max_interval_ns, 300 * NS_S);
	ck_assert_int_eq(cfg.resolve.timeout_ns, 2 * NS_S);
	ck_assert_int_eq(cfg.resolve.hold_ns, 3600 * NS_S);
}
END_TEST

START_TEST(discover_dns_slots)
{
	struct config cfg;

	parse_valid(&cfg, "{\"backends\": [{\"url\": \"http://api.test:8080\", \"discover\": \"dns\","
	    " \"max_backends\": 3}]}");
	ck_assert_uint_eq(cfg.nbackends, 3);
	assert_slots(&cfg, 0, 3, CONFIG_DISCOVER_DNS, "http://api.test:8080");
	for (size_t i = 0; i < 3; i++) {
		ck_assert_str_eq(cfg.backends[i].addr.host, "api.test");
		ck_assert_uint_eq(cfg.backends[i].addr.port, 8080);
		ck_assert_uint_eq(cfg.backends[i].weight, 1);
	}
	config_free(&cfg);

	/* Without max_backends: 16 slots. */
	parse_valid(&cfg, "{\"backends\": [{\"url\": \"https://api.test\", \"discover\": \"dns\"}]}");
	ck_assert_uint_eq(cfg.nbackends, 16);
	assert_slots(&cfg, 0, 16, CONFIG_DISCOVER_DNS, "https://api.test");
	ck_assert(cfg.backends[15].addr.tls);
	ck_assert_uint_eq(cfg.backends[15].addr.port, 443);
	config_free(&cfg);

	/* One slot, the bounds of max_backends. */
	parse_valid(&cfg, "{\"backends\": [{\"url\": \"http://api.test\", \"discover\": \"dns\","
	    " \"max_backends\": 1}, {\"url\": \"http://other.test\", \"discover\": \"dns\","
	    " \"max_backends\": 256}]}");
	ck_assert_uint_eq(cfg.nbackends, 257);
	assert_slots(&cfg, 0, 1, CONFIG_DISCOVER_DNS, "http://api.test");
	assert_slots(&cfg, 1, 256, CONFIG_DISCOVER_DNS, "http://other.test");
	config_free(&cfg);
}
END_TEST

/* Static backends around a discovered name keep their order; slot indexes follow. */
START_TEST(discover_slots_in_order)
{
	struct config cfg, copy;

	/* The keys in another order than usual, too. */
	parse_valid(&cfg, "{\"backends\": [\"http://a:1\", {\"max_backends\": 3, \"discover\": \"dns\","
	    " \"url\": \"http://api.test:8080\", \"weight\": 5}, \"http://b:2\","
	    " {\"srv\": \"_http._tcp.api.test\", \"max_backends\": 2}, {\"url\": \"http://c:3\"}]}");
	ck_assert_uint_eq(cfg.nbackends, 8);
	ck_assert_str_eq(cfg.backends[0].url, "http://a:1");
	ck_assert_uint_eq(cfg.backends[0].discover, CONFIG_DISCOVER_NONE);
	ck_assert_uint_eq(cfg.backends[0].discover_first, 0);
	assert_slots(&cfg, 1, 3, CONFIG_DISCOVER_DNS, "http://api.test:8080");
	ck_assert_uint_eq(cfg.backends[3].weight, 5);
	ck_assert_str_eq(cfg.backends[4].url, "http://b:2");
	ck_assert_uint_eq(cfg.backends[4].discover, CONFIG_DISCOVER_NONE);
	ck_assert_uint_eq(cfg.backends[4].discover_first, 4);
	assert_slots(&cfg, 5, 2, CONFIG_DISCOVER_SRV, "http+srv://_http._tcp.api.test");
	ck_assert_str_eq(cfg.backends[7].url, "http://c:3");
	ck_assert_uint_eq(cfg.backends[7].discover, CONFIG_DISCOVER_NONE);
	ck_assert_uint_eq(cfg.backends[7].discover_first, 7);

	/* A copy has the slots too. */
	ck_assert_int_eq(config_copy(&copy, &cfg), 0);
	ck_assert_uint_eq(copy.nbackends, 8);
	assert_slots(&copy, 1, 3, CONFIG_DISCOVER_DNS, "http://api.test:8080");
	assert_slots(&copy, 5, 2, CONFIG_DISCOVER_SRV, "http+srv://_http._tcp.api.test");
	config_free(&copy);
	config_free(&cfg);

	/* No discovered name: the list stays as it is. */
	parse_valid(&cfg, "{\"backends\": [\"http://a:1\", \"http://b:2\"]}");
	ck_assert_uint_eq(cfg.nbackends, 2);
	ck_assert_uint_eq(cfg.backends[1].discover, CONFIG_DISCOVER_NONE);
	config_free(&cfg);
}
END_TEST

START_TEST(discover_srv)
{
	struct config cfg;

	parse_valid(&cfg, "{\"backends\": [{\"srv\": \"_http._tcp.api.test\", \"scheme\": \"http\"}]}");
	ck_assert_uint_eq(cfg.nbackends, 16);
	assert_slots(&cfg, 0, 16, CONFIG_DISCOVER_SRV, "http+srv://_http._tcp.api.test");
	ck_assert_str_eq(cfg.backends[0].srv, "_http._tcp.api.test");
	ck_assert_str_eq(cfg.backends[0].addr.host, "_http._tcp.api.test");
	ck_assert(!cfg.backends[0].addr.tls);
	config_free(&cfg);

	/* "scheme" defaults to http; a trailing dot is a name too. */
	parse_valid(&cfg, "{\"backends\": [{\"srv\": \"_http._tcp.api.test.\", \"max_backends\": 1}]}");
	ck_assert_uint_eq(cfg.nbackends, 1);
	ck_assert(!cfg.backends[0].addr.tls);
	ck_assert_uint_eq(cfg.backends[0].discover, CONFIG_DISCOVER_SRV);
	config_free(&cfg);

	/* https: with the name the certificates carry. */
	parse_valid(&cfg, "{\"backends\": [{\"srv\": \"_https._tcp.api.test\", \"scheme\": \"https\","
	    " \"tls\": {\"server_name\": \"api.test\"}, \"max_backends\": 2}]}");
	ck_assert_uint_eq(cfg.nbackends, 2);
	assert_slots(&cfg, 0, 2, CONFIG_DISCOVER_SRV, "https+srv://_https._tcp.api.test");
	ck_assert(cfg.backends[1].addr.tls);
	ck_assert_str_eq(cfg.backends[1].tls.server_name, "api.test");
	config_free(&cfg);
}
END_TEST

START_TEST(discover_resolve_section)
{
	struct config cfg;

	parse_valid(&cfg, "{\"backends\": [{\"url\": \"http://api.test\", \"discover\": \"dns\"}],"
	    " \"resolve\": {\"resolvers\": [\"127.0.0.1:53\", \"[::1]:5353\"], \"min_interval\": \"2s\","
	    " \"max_interval\": \"1m\", \"timeout\": \"500ms\", \"hold\": \"10m\"}}");
	ck_assert_uint_eq(cfg.resolve.nresolvers, 2);
	ck_assert_uint_eq(cfg.resolve.resolvers[0].family, AF_INET);
	ck_assert_uint_eq(cfg.resolve.resolvers[0].port, 53);
	ck_assert_uint_eq(cfg.resolve.resolvers[0].bytes[0], 127);
	ck_assert_uint_eq(cfg.resolve.resolvers[0].bytes[3], 1);
	ck_assert_uint_eq(cfg.resolve.resolvers[1].family, AF_INET6);
	ck_assert_uint_eq(cfg.resolve.resolvers[1].port, 5353);
	ck_assert_uint_eq(cfg.resolve.resolvers[1].bytes[15], 1);
	ck_assert_int_eq(cfg.resolve.min_interval_ns, 2 * NS_S);
	ck_assert_int_eq(cfg.resolve.max_interval_ns, 60 * NS_S);
	ck_assert_int_eq(cfg.resolve.timeout_ns, 500 * NS_MS);
	ck_assert_int_eq(cfg.resolve.hold_ns, 600 * NS_S);
	config_free(&cfg);

	/* max_interval equal to min_interval is fine; an empty list means /etc/resolv.conf. */
	parse_valid(&cfg, "{\"backends\": [\"http://a:1\"], \"resolve\": {\"resolvers\": [],"
	    " \"min_interval\": \"5s\", \"max_interval\": \"5s\"}}");
	ck_assert_uint_eq(cfg.resolve.nresolvers, 0);
	config_free(&cfg);
}
END_TEST

struct discover_bad {
	const char *json;
	bool at_validate;	/* found by config_validate(), not while parsing */
	const char *want;	/* the whole of err */
};

#define BE(obj) "{\"backends\": [" obj "]}"
#define RESOLVE(obj) "{\"backends\": [\"http://a:1\"], \"resolve\": " obj "}"

static const struct discover_bad discover_bad_docs[] = {
	{ BE("{\"url\": \"http://10.0.0.1:8080\", \"discover\": \"dns\"}"), false,
	  NAME ": backends[0]: discover: 10.0.0.1 is an address, not a name to look up" },
	{ BE("\"http://a:1\", {\"url\": \"https://[2001:db8::1]\", \"discover\": \"dns\"}"), false,
	  NAME ": backends[1]: discover: 2001:db8::1 is an address, not a name to look up" },
	{ BE("{\"url\": \"http://api.test\", \"discover\": \"srv\"}"), false,
	  NAME ": backends[0].discover: \"srv\": expected \"dns\" (for SRV records, give \"srv\" "
	  "instead of \"url\")" },
	{ BE("{\"url\": \"http://api.test\", \"discover\": true}"), false,
	  NAME ": backends[0].discover: expected \"dns\", got boolean" },
	{ BE("{\"url\": \"http://api.test\", \"srv\": \"_http._tcp.api.test\"}"), false,
	  NAME ": backends[0]: \"srv\" names the service: give it without \"url\" and \"discover\"" },
	{ BE("{\"srv\": \"_http._tcp.api.test\", \"url\": \"http://api.test\"}"), false,
	  NAME ": backends[0]: \"srv\" names the service: give it without \"url\" and \"discover\"" },
	{ BE("{\"discover\": \"dns\", \"srv\": \"_http._tcp.api.test\"}"), false,
	  NAME ": backends[0]: \"srv\" names the service: give it without \"url\" and \"discover\"" },
	/* The same keys in the other order (found: accepted, as an entry without a URL). */
	{ BE("{\"srv\": \"_http._tcp.api.test\", \"discover\": \"dns\"}"), false,
	  NAME ": backends[0]: \"srv\" names the service: give it without \"url\" and \"discover\"" },
	{ BE("{\"url\": \"http://api.test\", \"scheme\": \"http\"}"), false,
	  NAME ": backends[0]: scheme: only for \"srv\" entries (a URL has its own)" },
	{ BE("{\"url\": \"http://api.test\", \"discover\": \"dns\", \"scheme\": \"https\"}"), false,
	  NAME ": backends[0]: scheme: only for \"srv\" entries (a URL has its own)" },
	{ BE("{\"srv\": \"_http._tcp.api.test\", \"scheme\": \"ftp\"}"), false,
	  NAME ": backends[0].scheme: \"ftp\": expected \"http\" or \"https\"" },
	{ BE("{\"url\": \"http://api.test\", \"discover\": \"dns\", \"max_backends\": 0}"), false,
	  NAME ": backends[0].max_backends: 0: out of range (use 1-256)" },
	{ BE("{\"url\": \"http://api.test\", \"discover\": \"dns\", \"max_backends\": 257}"), false,
	  NAME ": backends[0].max_backends: 257: out of range (use 1-256)" },
	{ BE("{\"srv\": \"_http._tcp.api.test\", \"max_backends\": -1}"), false,
	  NAME ": backends[0].max_backends: -1: out of range (use 1-256)" },
	{ BE("{\"url\": \"http://api.test\", \"discover\": \"dns\", \"max_backends\": \"3\"}"), false,
	  NAME ": backends[0].max_backends: expected an integer, got string" },
	{ BE("{\"url\": \"http://api.test\", \"max_backends\": 3}"), false,
	  NAME ": backends[0]: max_backends: only for discovered names (\"discover\" or \"srv\")" },
	{ BE("{\"srv\": \"_https._tcp.api.test\", \"scheme\": \"https\"}"), false,
	  NAME ": backends[0]: tls.server_name: required for an https \"srv\" entry (the name its "
	  "backends' certificates carry)" },
	{ BE("{\"srv\": \"_http._tcp.api.test\", \"tls\": {\"verify\": false}}"), false,
	  NAME ": backends[0].tls: only for https:// backends" },
	{ BE("{\"srv\": \"not a name\"}"), false, NAME ": backends[0].srv: \"not a name\": not a DNS name" },
	{ BE("{\"srv\": \"a..b\"}"), false, NAME ": backends[0].srv: \"a..b\": not a DNS name" },
	{ BE("{\"srv\": \"\"}"), false, NAME ": backends[0].srv: \"\": not a DNS name" },
	{ BE("{\"srv\": \".\"}"), false, NAME ": backends[0].srv: \".\": not a DNS name" },
	{ BE("{\"srv\": 5}"), false,
	  NAME ": backends[0].srv: expected an SRV name like \"_http._tcp.api.example\", got integer" },
	/* Two entries for the same name. */
	{ BE("{\"srv\": \"_http._tcp.api.test\"}, {\"srv\": \"_http._tcp.api.test\"}"), true,
	  NAME ": backends[1]: \"http+srv://_http._tcp.api.test\": duplicate of backends[0]" },
	{ BE("{\"url\": \"http://api.test:8080\", \"discover\": \"dns\"}, \"http://api.test:8080\""), true,
	  NAME ": backends[1]: \"http://api.test:8080\": duplicate of backends[0]" },
	/* resolve */
	{ RESOLVE("{\"resolvers\": [\"dns.example:53\"]}"), false,
	  NAME ": resolve.resolvers[0]: \"dns.example:53\": not an IP address and port" },
	{ RESOLVE("{\"resolvers\": [\"127.0.0.1:53\", \"127.0.0.1\"]}"), false,
	  NAME ": resolve.resolvers[1]: \"127.0.0.1\": not a port number (use 1-65535)" },
	{ RESOLVE("{\"resolvers\": [\"[::1]\"]}"), false,
	  NAME ": resolve.resolvers[0]: \"[::1]\": missing port (e.g. \"[::1]:3000\")" },
	{ RESOLVE("{\"resolvers\": [\":53\"]}"), false,
	  NAME ": resolve.resolvers[0]: \":53\": not an IP address and port" },
	{ RESOLVE("{\"resolvers\": [\"127.0.0.1:0\"]}"), false,
	  NAME ": resolve.resolvers[0]: \"127.0.0.1:0\": port \"0\" out of range (use 1-65535)" },
	{ RESOLVE("{\"resolvers\": [53]}"), false,
	  NAME ": resolve.resolvers[0]: expected an \"address:port\" string, got integer" },
	{ RESOLVE("{\"resolvers\": \"127.0.0.1:53\"}"), false,
	  NAME ": resolve.resolvers: expected an array of \"address:port\" strings or null, got string" },
	{ RESOLVE("{\"resolvers\": [\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\", \"127.0.0.1:4\","
	  " \"127.0.0.1:5\", \"127.0.0.1:6\", \"127.0.0.1:7\", \"127.0.0.1:8\", \"127.0.0.1:9\"]}"), false,
	  NAME ": resolve.resolvers: 9 resolvers: too many (at most 8)" },
	{ RESOLVE("{\"nameservers\": []}"), false, NAME ": resolve.nameservers: unknown key" },
	{ RESOLVE("{\"timeout\": \"0s\"}"), false, NAME ": resolve.timeout: \"0s\": must be longer than 0" },
	{ RESOLVE("{\"min_interval\": \"10s\", \"max_interval\": \"5s\"}"), true,
	  NAME ": resolve.max_interval: must be at least resolve.min_interval (and both above 0)" },
	{ RESOLVE("{\"min_interval\": \"10m\"}"), true,
	  NAME ": resolve.max_interval: must be at least resolve.min_interval (and both above 0)" },
};

START_TEST(discover_bad)
{
	const struct discover_bad *c = &discover_bad_docs[_i];
	struct config cfg;
	int n = parse(&cfg, c->json);

	if (c->at_validate) {
		ck_assert_msg(n == 0, "%s: %d problems: %s", c->json, n, err);
		err[0] = '\0';
		n = config_validate(&cfg, err, sizeof(err));
	}
	ck_assert_msg(n == 1, "%s: %d problems: %s", c->json, n, err);
	ck_assert_msg(strcmp(err, c->want) == 0, "%s:\n got: %s\nwant: %s", c->json, err, c->want);
	config_free(&cfg);
}
END_TEST

/* Every name's slots count toward the 4096 backends. */
START_TEST(discover_too_many_slots)
{
	char json[4096];
	struct config cfg;
	size_t o;

	o = (size_t)snprintf(json, sizeof(json), "{\"backends\": [");
	for (int i = 0; i < 17; i++)
		o += (size_t)snprintf(json + o, sizeof(json) - o, "%s{\"url\": \"http://n%d.test\","
		    " \"discover\": \"dns\", \"max_backends\": 256}", i > 0 ? ", " : "", i);
	snprintf(json + o, sizeof(json) - o, "]}");
	ck_assert_int_eq(parse(&cfg, json), 0);
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 1);
	ck_assert_str_eq(err, NAME ": backends: 4352 with every discovered name's max_backends: "
	    "too many (at most 4096)");
	config_free(&cfg);

	/* 16 of them fit exactly. */
	o = (size_t)snprintf(json, sizeof(json), "{\"backends\": [");
	for (int i = 0; i < 16; i++)
		o += (size_t)snprintf(json + o, sizeof(json) - o, "%s{\"url\": \"http://n%d.test\","
		    " \"discover\": \"dns\", \"max_backends\": 256}", i > 0 ? ", " : "", i);
	snprintf(json + o, sizeof(json) - o, "]}");
	parse_valid(&cfg, json);
	ck_assert_uint_eq(cfg.nbackends, 4096);
	assert_slots(&cfg, 3840, 256, CONFIG_DISCOVER_DNS, "http://n15.test");
	config_free(&cfg);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("Configuration");
	TCase *tc;

	tc = tcase_create("defaults");
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, empty_object_keeps_defaults);
	suite_add_tcase(s, tc);

	tc = tcase_create("json");
	tcase_add_test(tc, full_document);
	tcase_add_test(tc, live_operation_keys);
	tcase_add_test(tc, small_values);
	tcase_add_loop_test(tc, bad_value, 0, COUNT(bad_docs));
	tcase_add_test(tc, bad_value_keeps_field);
	tcase_add_test(tc, long_value_is_shortened);
	tcase_add_test(tc, all_problems_reported);
	tcase_add_test(tc, unknown_keys);
	tcase_add_loop_test(tc, syntax_error, 0, COUNT(syntax_cases));
	tcase_add_test(tc, comments_allowed);
	tcase_add_test(tc, length_is_respected);
	tcase_add_test(tc, backends_replaced);
	suite_add_tcase(s, tc);

	tc = tcase_create("messages");
	tcase_add_test(tc, err_never_overflows);
	tcase_add_test(tc, err_appends);
	suite_add_tcase(s, tc);

	tc = tcase_create("environment");
	tcase_add_test(tc, env_overrides);
	tcase_add_test(tc, env_unset_or_empty);
	tcase_add_test(tc, env_bad_values);
	tcase_add_test(tc, env_real_getenv);
	tcase_add_test(tc, precedence);
	suite_add_tcase(s, tc);

	tc = tcase_create("flags");
	tcase_add_test(tc, add_backend);
	suite_add_tcase(s, tc);

	tc = tcase_create("validate");
	tcase_add_test(tc, validate_no_backends);
	tcase_add_test(tc, validate_duplicates);
	tcase_add_test(tc, validate_workers);
	tcase_add_test(tc, validate_timeout_explicit);
	tcase_add_test(tc, validate_timeout_default_shrinks);
	tcase_add_test(tc, validate_metrics);
	tcase_add_test(tc, validate_paths);
	suite_add_tcase(s, tc);

	tc = tcase_create("copies");
	tcase_add_test(tc, copy_free_same);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	tcase_add_test(tc, many_backends);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("discovery");
	tcase_add_test(tc, discover_resolve_defaults);
	tcase_add_test(tc, discover_dns_slots);
	tcase_add_test(tc, discover_slots_in_order);
	tcase_add_test(tc, discover_srv);
	tcase_add_test(tc, discover_resolve_section);
	tcase_add_loop_test(tc, discover_bad, 0, COUNT(discover_bad_docs));
	tcase_add_test(tc, discover_too_many_slots);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_test(tc, file_good_full);
	tcase_add_test(tc, file_good_minimal);
	tcase_add_test(tc, file_example);
	tcase_add_loop_test(tc, file_bad, 0, COUNT(bad_files));
	tcase_add_test(tc, file_unreadable);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return unit_run(config_suite(), CK_NORMAL);
}
