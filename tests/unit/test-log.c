/* Unit tests for log.c: level/format parsing, line formatting, truncation and the writer. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "roundguard/log.h"
#include "unit.h"

/* 2026-11-27T05:52:28.123456789Z: the nanoseconds check that ms are truncated. */
static const struct timespec ts_fixed = { 1795758748, 123456789 };

#define TIME_FIXED "2026-11-27T05:52:28.123Z"
#define LEVELS_VALID "(valid: trace, debug, info, warn, error)"

/* One expected JSON member; str NULL means an integer. */
struct member {
	const char *key;
	const char *str;
	long num;
};

/* Fields used by the truncation sweeps: escapes, multi-byte UTF-8, a skipped NULL. */
static const char *const nasty_fields[] = {
	"backend", "127.0.0.1:8002",
	"reason", "a\\b \"c\" \x01\x7f \xc3\xa9",
	"empty", "",
	"skipped", NULL,
	"k\"ey", "v=1",
	"utf8", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 done",
};
#define NASTY_MSG "backend \"down\"\n\tnow \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
#define NASTY_NFIELDS (sizeof(nasty_fields) / sizeof(nasty_fields[0]) / 2)

static const struct member nasty_members[] = {
	{ "time", TIME_FIXED, 0 },
	{ "level", "warn", 0 },
	{ "msg", NASTY_MSG, 0 },
	{ "proc", "worker", 0 },
	{ "pid", NULL, 4242 },
	{ "backend", "127.0.0.1:8002", 0 },
	{ "reason", "a\\b \"c\" \x01\x7f \xc3\xa9", 0 },
	{ "empty", "", 0 },
	{ "k\"ey", "v=1", 0 },
	{ "utf8", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 done", 0 },
};
#define NASTY_NMEMBERS (sizeof(nasty_members) / sizeof(nasty_members[0]))

/* Every test starts from the defaults, also when CK_FORK=no runs them in one process. */
static void
reset_log(void)
{
	unsetenv("LOG_LEVEL");
	unsetenv("LOG_FORMAT");
	log_set_level(LOG_LEVEL_INFO);
	log_set_format(LOG_FORMAT_TEXT);
	log_set_proc(NULL);
}

static size_t
fmt(char *buf, size_t buflen, enum log_format format, bool color, enum log_level level,
    const char *msg, const char *const *fields, size_t nfields)
{
	return log_format_line(buf, buflen, format, color, &ts_fixed, level, "worker", 4242, msg,
	    fields, nfields);
}

/* Strict parse of one line: exactly one object, then the final newline, valid UTF-8. */
static struct json_object *
parse_line(const char *line)
{
	struct json_tokener *tok;
	struct json_object *obj, *loose;
	size_t len = strlen(line);

	ck_assert_uint_gt(len, 0);
	ck_assert_msg(line[len - 1] == '\n', "no newline at end of %s", line);
	ck_assert_msg(strchr(line, '\n') == line + len - 1, "newline inside %s", line);

	tok = json_tokener_new();
	ck_assert_ptr_nonnull(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, line, (int)(len - 1));
	ck_assert_msg(obj != NULL, "json-c: %s in %s",
	    json_tokener_error_desc(json_tokener_get_error(tok)), line);
	ck_assert_uint_eq(json_tokener_get_parse_end(tok), len - 1);
	json_tokener_free(tok);
	ck_assert(json_object_is_type(obj, json_type_object));

	/* The default, lenient parser callers are likely to use must agree. */
	loose = json_tokener_parse(line);
	ck_assert_ptr_nonnull(loose);
	ck_assert(json_object_equal(obj, loose));
	json_object_put(loose);
	return obj;
}

static const char *
json_str(struct json_object *obj, const char *key)
{
	struct json_object *v;

	ck_assert_msg(json_object_object_get_ex(obj, key, &v), "no key \"%s\"", key);
	ck_assert_msg(json_object_is_type(v, json_type_string), "\"%s\" not a string", key);
	return json_object_get_string(v);
}

/*
 * The object holds the first n expected members and no others; all but the
 * last are exact, and the last, if cut is allowed, may be a prefix of its value.
 */
static void
check_members(struct json_object *obj, const struct member *exp, size_t nexp, bool cut)
{
	struct json_object *v;
	size_t i, n = 0;

	while (n < nexp && json_object_object_get_ex(obj, exp[n].key, NULL))
		n++;
	if (!cut)
		ck_assert_uint_eq(n, nexp);
	ck_assert_uint_eq((size_t)json_object_object_length(obj), n);
	for (i = 0; i < n; i++) {
		ck_assert(json_object_object_get_ex(obj, exp[i].key, &v));
		if (exp[i].str == NULL) {
			ck_assert(json_object_is_type(v, json_type_int));
			ck_assert_int_eq(json_object_get_int64(v), exp[i].num);
		} else if (cut && i == n - 1) {
			const char *s = json_str(obj, exp[i].key);

			ck_assert_msg(strncmp(s, exp[i].str, strlen(s)) == 0 &&
			    strlen(s) <= strlen(exp[i].str), "\"%s\": \"%s\" is not a prefix",
			    exp[i].key, s);
		} else {
			ck_assert_str_eq(json_str(obj, exp[i].key), exp[i].str);
		}
	}
}

static bool
valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i;

	while (*p != '\0') {
		if (*p < 0x80)
			n = 0;
		else if ((*p & 0xe0) == 0xc0)
			n = 1;
		else if ((*p & 0xf0) == 0xe0)
			n = 2;
		else if ((*p & 0xf8) == 0xf0)
			n = 3;
		else
			return false;
		for (i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
		}
		p += n + 1;
	}
	return true;
}

/* Quotes in a text line pair up, counting \" inside quotes as escaped. */
static bool
text_quotes_balanced(const char *s)
{
	bool in = false;

	for (; *s != '\0'; s++) {
		if (in && *s == '\\' && s[1] != '\0')
			s++;
		else if (*s == '"')
			in = !in;
	}
	return !in;
}

static size_t
count_substr(const char *s, const char *sub)
{
	size_t n = 0;

	while ((s = strstr(s, sub)) != NULL) {
		n++;
		s += strlen(sub);
	}
	return n;
}

/* Stderr redirected into a pipe, to see what log_msg() writes. */
struct capture {
	int saved;
	int rd;
};

static void
capture_start(struct capture *c)
{
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	c->saved = dup(STDERR_FILENO);
	ck_assert_int_ge(c->saved, 0);
	ck_assert_int_ge(dup2(p[1], STDERR_FILENO), 0);
	close(p[1]);
	c->rd = p[0];
}

/* Restores stderr, which closes the last write end, then reads everything. */
static size_t
capture_end(struct capture *c, char *buf, size_t buflen)
{
	size_t len = 0;
	ssize_t n;

	ck_assert_int_ge(dup2(c->saved, STDERR_FILENO), 0);
	close(c->saved);
	while (len + 1 < buflen && (n = read(c->rd, buf + len, buflen - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(c->rd);
	return len;
}

START_TEST(test_level_str)
{
	ck_assert_str_eq(log_level_str(LOG_LEVEL_TRACE), "TRACE");
	ck_assert_str_eq(log_level_str(LOG_LEVEL_DEBUG), "DEBUG");
	ck_assert_str_eq(log_level_str(LOG_LEVEL_INFO), "INFO");
	ck_assert_str_eq(log_level_str(LOG_LEVEL_WARN), "WARN");
	ck_assert_str_eq(log_level_str(LOG_LEVEL_ERROR), "ERROR");
	ck_assert_str_eq(log_format_str(LOG_FORMAT_TEXT), "text");
	ck_assert_str_eq(log_format_str(LOG_FORMAT_JSON), "json");
}
END_TEST

START_TEST(test_level_parse)
{
	static const struct {
		const char *s;
		enum log_level level;
	} good[] = {
		{ "trace", LOG_LEVEL_TRACE }, { "debug", LOG_LEVEL_DEBUG },
		{ "info", LOG_LEVEL_INFO }, { "warn", LOG_LEVEL_WARN },
		{ "error", LOG_LEVEL_ERROR }, { "warning", LOG_LEVEL_WARN },
		{ "fatal", LOG_LEVEL_ERROR }, { "panic", LOG_LEVEL_ERROR },
		{ "TRACE", LOG_LEVEL_TRACE }, { "Debug", LOG_LEVEL_DEBUG },
		{ "INFO", LOG_LEVEL_INFO }, { "WaRn", LOG_LEVEL_WARN },
		{ "WARNING", LOG_LEVEL_WARN }, { "Fatal", LOG_LEVEL_ERROR },
		{ "PANIC", LOG_LEVEL_ERROR }, { "ERROR", LOG_LEVEL_ERROR },
	};
	static const char *const bad[] = { "verbose", "", "inf", "warn ", " info", "err", "0" };
	enum log_level level;
	char err[256], expect[256];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		level = (enum log_level)99;
		ck_assert_msg(log_level_parse(good[i].s, &level, err, sizeof(err)) == 0,
		    "\"%s\" rejected", good[i].s);
		ck_assert_int_eq(level, good[i].level);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		level = LOG_LEVEL_DEBUG;
		ck_assert_int_eq(log_level_parse(bad[i], &level, err, sizeof(err)), -1);
		ck_assert_int_eq(level, LOG_LEVEL_DEBUG);
		snprintf(expect, sizeof(expect), "invalid log level \"%s\" " LEVELS_VALID, bad[i]);
		ck_assert_str_eq(err, expect);
	}
	ck_assert_int_eq(log_level_parse("verbose", &level, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "invalid log level \"verbose\" " LEVELS_VALID);

	/* Small or missing error buffers are cut or ignored, never overrun. */
	memset(err, 'X', sizeof(err));
	ck_assert_int_eq(log_level_parse("verbose", &level, err, 8), -1);
	ck_assert_str_eq(err, "invalid");
	ck_assert_int_eq(err[8], 'X');
	ck_assert_int_eq(log_level_parse("verbose", &level, NULL, 0), -1);
}
END_TEST

START_TEST(test_format_parse)
{
	enum log_format format;
	char err[128];

	ck_assert_int_eq(log_format_parse("text", &format, err, sizeof(err)), 0);
	ck_assert_int_eq(format, LOG_FORMAT_TEXT);
	ck_assert_int_eq(log_format_parse("json", &format, err, sizeof(err)), 0);
	ck_assert_int_eq(format, LOG_FORMAT_JSON);
	ck_assert_int_eq(log_format_parse("TEXT", &format, err, sizeof(err)), 0);
	ck_assert_int_eq(format, LOG_FORMAT_TEXT);
	ck_assert_int_eq(log_format_parse("Json", &format, err, sizeof(err)), 0);
	ck_assert_int_eq(format, LOG_FORMAT_JSON);

	ck_assert_int_eq(log_format_parse("xml", &format, err, sizeof(err)), -1);
	ck_assert_int_eq(format, LOG_FORMAT_JSON);
	ck_assert_str_eq(err, "invalid log format \"xml\" (valid: text, json)");
	ck_assert_int_eq(log_format_parse("", &format, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "invalid log format \"\" (valid: text, json)");
	ck_assert_int_eq(log_format_parse("jsonl", &format, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "invalid log format \"jsonl\" (valid: text, json)");
}
END_TEST

START_TEST(test_init_env)
{
	char err[256];

	/* Unset and empty both mean the defaults. */
	log_set_level(LOG_LEVEL_ERROR);
	log_set_format(LOG_FORMAT_JSON);
	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_INFO);
	ck_assert_int_eq(log_get_format(), LOG_FORMAT_TEXT);

	setenv("LOG_LEVEL", "", 1);
	setenv("LOG_FORMAT", "", 1);
	log_set_level(LOG_LEVEL_ERROR);
	log_set_format(LOG_FORMAT_JSON);
	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_INFO);
	ck_assert_int_eq(log_get_format(), LOG_FORMAT_TEXT);

	setenv("LOG_LEVEL", "Warning", 1);
	setenv("LOG_FORMAT", "JSON", 1);
	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_WARN);
	ck_assert_int_eq(log_get_format(), LOG_FORMAT_JSON);

	setenv("LOG_LEVEL", "trace", 1);
	unsetenv("LOG_FORMAT");
	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_TRACE);
	ck_assert_int_eq(log_get_format(), LOG_FORMAT_TEXT);

	/* A bad value names its variable and leaves the settings as they were. */
	log_set_level(LOG_LEVEL_DEBUG);
	log_set_format(LOG_FORMAT_TEXT);
	setenv("LOG_LEVEL", "verbose", 1);
	setenv("LOG_FORMAT", "json", 1);
	ck_assert_int_eq(log_init_env(err, sizeof(err)), -1);
	ck_assert_str_eq(err, "LOG_LEVEL: invalid log level \"verbose\" " LEVELS_VALID);
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_DEBUG);
	ck_assert_int_eq(log_get_format(), LOG_FORMAT_TEXT);

	setenv("LOG_LEVEL", "error", 1);
	setenv("LOG_FORMAT", "xml", 1);
	ck_assert_int_eq(log_init_env(err, sizeof(err)), -1);
	ck_assert_str_eq(err, "LOG_FORMAT: invalid log format \"xml\" (valid: text, json)");
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_DEBUG);
	ck_assert_int_eq(log_get_format(), LOG_FORMAT_TEXT);

	ck_assert_int_eq(log_init_env(err, 11), -1);
	ck_assert_str_eq(err, "LOG_FORMAT");
	ck_assert_int_eq(log_init_env(NULL, 0), -1);
}
END_TEST

START_TEST(test_format_time)
{
	struct timespec ts;
	char buf[32];

	log_format_time(buf, sizeof(buf), &ts_fixed);
	ck_assert_str_eq(buf, TIME_FIXED);

	ts.tv_sec = 0;
	ts.tv_nsec = 999999999;
	log_format_time(buf, sizeof(buf), &ts);
	ck_assert_str_eq(buf, "1970-01-01T00:00:00.999Z");

	ts.tv_sec = 951782400; /* leap day */
	ts.tv_nsec = 7000000;
	log_format_time(buf, 25, &ts);
	ck_assert_str_eq(buf, "2000-02-29T00:00:00.007Z");

	memset(buf, 'X', sizeof(buf));
	log_format_time(buf, 11, &ts_fixed);
	ck_assert_str_eq(buf, "2026-11-27");
	ck_assert_int_eq(buf[11], 'X');
}
END_TEST

START_TEST(test_text_design_example)
{
	static const char *const fields[] = {
		"backend", "127.0.0.1:8002",
		"reason", "connect refused",
		"was_up", "4m12s",
	};
	static const char expect[] = TIME_FIXED " WARN backend down backend=127.0.0.1:8002"
	    " reason=\"connect refused\" was_up=4m12s\n";
	char buf[256];

	ck_assert_uint_eq(fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_WARN,
	    "backend down", fields, 3), strlen(expect));
	ck_assert_str_eq(buf, expect);

	/* Each level by name, no fields, no padding. */
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_TRACE, "m", NULL, 0);
	ck_assert_str_eq(buf, TIME_FIXED " TRACE m\n");
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_DEBUG, "m", NULL, 0);
	ck_assert_str_eq(buf, TIME_FIXED " DEBUG m\n");
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_INFO, "m", NULL, 0);
	ck_assert_str_eq(buf, TIME_FIXED " INFO m\n");
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_ERROR, "m", NULL, 0);
	ck_assert_str_eq(buf, TIME_FIXED " ERROR m\n");
}
END_TEST

START_TEST(test_text_quoting)
{
	static const struct {
		const char *value;
		const char *shown;
	} cases[] = {
		{ "plain", "k=plain" },
		{ "127.0.0.1:8002", "k=127.0.0.1:8002" },
		{ "", "k=\"\"" },
		{ "a b", "k=\"a b\"" },
		{ "a\"b", "k=\"a\\\"b\"" },
		{ "a=b", "k=\"a=b\"" },
		{ "back\\slash", "k=back\\slash" },
		{ "back\\ slash", "k=\"back\\\\ slash\"" },
		{ "x\ny", "k=\"x\\ny\"" },
		{ "\r\t", "k=\"\\r\\t\"" },
		{ "\x01", "k=\"\\x01\"" },
		{ "\x7f", "k=\"\\x7f\"" },
		{ "\x1b[31mred", "k=\"\\x1b[31mred\"" },
		{ "h\xc3\xa9llo", "k=h\xc3\xa9llo" },
	};
	const char *fields[2];
	char buf[256], expect[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fields[0] = "k";
		fields[1] = cases[i].value;
		snprintf(expect, sizeof(expect), TIME_FIXED " INFO m %s\n", cases[i].shown);
		ck_assert_uint_eq(fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_INFO, "m",
		    fields, 1), strlen(expect));
		ck_assert_str_eq(buf, expect);
	}

	/* NULL values and NULL keys are left out. */
	{
		static const char *const some[] = { "a", NULL, "b", "2", NULL, "x", "c", "3" };

		fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_INFO, "m", some, 4);
		ck_assert_str_eq(buf, TIME_FIXED " INFO m b=2 c=3\n");
	}

	/* Keys are never quoted, so what would end them early is escaped. */
	{
		static const char *const odd[] = { "a b=\"c\"\n", "v" };

		fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_INFO, "m", odd, 1);
		ck_assert_str_eq(buf, TIME_FIXED " INFO m a\\x20b\\x3d\\x22c\\x22\\n=v\n");
	}
}
END_TEST

START_TEST(test_text_msg)
{
	static const char *const fields[] = { "k", "v" };
	char buf[256];

	/* The message is raw apart from control bytes, which could forge lines. */
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_INFO,
	    "two\nlines \"q\" a=b \\ \x01\r\t", NULL, 0);
	ck_assert_str_eq(buf, TIME_FIXED " INFO two\\nlines \"q\" a=b \\ \\x01\\r\\t\n");

	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_INFO, "", fields, 1);
	ck_assert_str_eq(buf, TIME_FIXED " INFO k=v\n");
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, LOG_LEVEL_INFO, NULL, fields, 1);
	ck_assert_str_eq(buf, TIME_FIXED " INFO k=v\n");
}
END_TEST

START_TEST(test_text_color)
{
	static const struct {
		enum log_level level;
		const char *shown;
	} cases[] = {
		{ LOG_LEVEL_TRACE, "\033[90mTRACE\033[0m" },
		{ LOG_LEVEL_DEBUG, "\033[90mDEBUG\033[0m" },
		{ LOG_LEVEL_INFO, "\033[32mINFO\033[0m" },
		{ LOG_LEVEL_WARN, "\033[33mWARN\033[0m" },
		{ LOG_LEVEL_ERROR, "\033[31mERROR\033[0m" },
	};
	static const char *const fields[] = { "k", "v w" };
	char buf[256], expect[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(expect, sizeof(expect), TIME_FIXED " %s hello k=\"v w\"\n", cases[i].shown);
		ck_assert_uint_eq(fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, true, cases[i].level, "hello",
		    fields, 1), strlen(expect));
		ck_assert_str_eq(buf, expect);

		fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, false, cases[i].level, "hello", fields, 1);
		ck_assert_ptr_null(strchr(buf, '\033'));
		fmt(buf, sizeof(buf), LOG_FORMAT_JSON, true, cases[i].level, "hello", fields, 1);
		ck_assert_ptr_null(strchr(buf, '\033'));
	}
}
END_TEST

START_TEST(test_json_exact)
{
	static const char *const fields[] = { "backend", "127.0.0.1:8002", "was_up", "4m12s" };
	static const char expect[] = "{\"time\":\"" TIME_FIXED "\",\"level\":\"warn\","
	    "\"msg\":\"backend down\",\"proc\":\"worker\",\"pid\":4242,"
	    "\"backend\":\"127.0.0.1:8002\",\"was_up\":\"4m12s\"}\n";
	char buf[512];

	ck_assert_uint_eq(fmt(buf, sizeof(buf), LOG_FORMAT_JSON, false, LOG_LEVEL_WARN,
	    "backend down", fields, 2), strlen(expect));
	ck_assert_str_eq(buf, expect);

	/* Every escape JSON has, \u00XX for the rest, UTF-8 and bytes >= 0x80 as they are. */
	{
		static const char *const odd[] = {
			"we\"ird\nkey", "v",
			"bin", "\xff\xfe",
		};

		fmt(buf, sizeof(buf), LOG_FORMAT_JSON, false, LOG_LEVEL_ERROR,
		    "a\"b\\c\n\r\t\b\f\x01\x1f\x7f \xc3\xa9", odd, 2);
		ck_assert_str_eq(buf, "{\"time\":\"" TIME_FIXED "\",\"level\":\"error\","
		    "\"msg\":\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f \xc3\xa9\","
		    "\"proc\":\"worker\",\"pid\":4242,\"we\\\"ird\\nkey\":\"v\","
		    "\"bin\":\"\xff\xfe\"}\n");
	}

	/* A NULL proc is the program's name. */
	log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, false, &ts_fixed, LOG_LEVEL_INFO, NULL,
	    1, "m", NULL, 0);
	ck_assert_str_eq(buf, "{\"time\":\"" TIME_FIXED "\",\"level\":\"info\",\"msg\":\"m\","
	    "\"proc\":\"roundguard\",\"pid\":1}\n");
}
END_TEST

START_TEST(test_json_roundtrip)
{
	static const char *const values[] = {
		"plain",
		"",
		"with \"quotes\" and 'single'",
		"line one\nline two\r\n",
		"tab\there",
		"ctl \x01\x02\x1f\x7f end",
		"back\\slash \\\\ \\n literal",
		"json {\"x\":[1,2]} inside",
		"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
		"</script>",
	};
	const char *fields[2 * (sizeof(values) / sizeof(values[0]))];
	char keys[sizeof(values) / sizeof(values[0])][16];
	struct json_object *obj, *v;
	char buf[2048];
	size_t i, n = sizeof(values) / sizeof(values[0]);

	for (i = 0; i < n; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
		fields[2 * i] = keys[i];
		fields[2 * i + 1] = values[i];
	}
	ck_assert_uint_lt(fmt(buf, sizeof(buf), LOG_FORMAT_JSON, false, LOG_LEVEL_DEBUG,
	    "msg \"with\"\n\t\\ \x01", fields, n), sizeof(buf));
	obj = parse_line(buf);
	ck_assert_str_eq(json_str(obj, "time"), TIME_FIXED);
	ck_assert_str_eq(json_str(obj, "level"), "debug");
	ck_assert_str_eq(json_str(obj, "msg"), "msg \"with\"\n\t\\ \x01");
	ck_assert_str_eq(json_str(obj, "proc"), "worker");
	ck_assert(json_object_object_get_ex(obj, "pid", &v));
	ck_assert_int_eq(json_object_get_int(v), 4242);
	for (i = 0; i < n; i++)
		ck_assert_str_eq(json_str(obj, keys[i]), values[i]);
	ck_assert_int_eq(json_object_object_length(obj), 5 + (int)n);
	json_object_put(obj);

	/* The sweep fixture, untruncated. */
	fmt(buf, sizeof(buf), LOG_FORMAT_JSON, false, LOG_LEVEL_WARN, NASTY_MSG, nasty_fields,
	    NASTY_NFIELDS);
	obj = parse_line(buf);
	check_members(obj, nasty_members, NASTY_NMEMBERS, false);
	json_object_put(obj);
}
END_TEST

START_TEST(test_return_value)
{
	static const char *const fields[] = { "k", "v" };
	char buf[256];
	size_t full;

	full = fmt(buf, sizeof(buf), LOG_FORMAT_JSON, false, LOG_LEVEL_INFO, "m", fields, 1);
	ck_assert_uint_eq(full, strlen(buf));
	ck_assert_uint_eq(log_format_line(NULL, 0, LOG_FORMAT_JSON, false, &ts_fixed,
	    LOG_LEVEL_INFO, "worker", 4242, "m", fields, 1), full);
	ck_assert_uint_eq(fmt(buf, 10, LOG_FORMAT_JSON, false, LOG_LEVEL_INFO, "m", fields, 1), full);

	full = fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, true, LOG_LEVEL_INFO, "m", fields, 1);
	ck_assert_uint_eq(full, strlen(buf));
	ck_assert_uint_eq(fmt(NULL, 0, LOG_FORMAT_TEXT, true, LOG_LEVEL_INFO, "m", fields, 1), full);
	ck_assert_uint_eq(fmt(buf, 3, LOG_FORMAT_TEXT, true, LOG_LEVEL_INFO, "m", fields, 1), full);
}
END_TEST

/* Every buffer size from 0 up: a cut JSON line is one object holding a prefix of the fields. */
START_TEST(test_json_truncation_sweep)
{
	char full[1024], buf[1024];
	struct json_object *obj;
	size_t need, buflen, len;

	need = fmt(full, sizeof(full), LOG_FORMAT_JSON, false, LOG_LEVEL_WARN, NASTY_MSG,
	    nasty_fields, NASTY_NFIELDS);
	ck_assert_uint_eq(need, strlen(full));
	ck_assert_uint_lt(need + 2, sizeof(buf));

	for (buflen = 0; buflen <= need + 2; buflen++) {
		memset(buf, 'Z', sizeof(buf));
		ck_assert_uint_eq(fmt(buf, buflen, LOG_FORMAT_JSON, false, LOG_LEVEL_WARN, NASTY_MSG,
		    nasty_fields, NASTY_NFIELDS), need);
		ck_assert_msg(buf[buflen] == 'Z', "wrote past %zu bytes", buflen);
		if (buflen == 0)
			continue;
		len = strlen(buf);
		ck_assert_uint_lt(len, buflen);
		if (buflen > need) {
			ck_assert_str_eq(buf, full);
			continue;
		}
		ck_assert_str_ne(buf, full);
		if (buflen == 1) {
			ck_assert_str_eq(buf, "");
		} else if (buflen < 4) {
			ck_assert_str_eq(buf, "\n");
		} else {
			obj = parse_line(buf);
			check_members(obj, nasty_members, NASTY_NMEMBERS, true);
			json_object_put(obj);
		}
	}
}
END_TEST

/* The same for text: a prefix of the full line, quotes closed, colour never left on. */
START_TEST(test_text_truncation_sweep)
{
	char full[1024], buf[1024], body[1024];
	size_t need, buflen, len, esc, fields_at;
	int color;

	for (color = 0; color <= 1; color++) {
		need = fmt(full, sizeof(full), LOG_FORMAT_TEXT, color, LOG_LEVEL_WARN, NASTY_MSG,
		    nasty_fields, NASTY_NFIELDS);
		ck_assert_uint_eq(need, strlen(full));
		/* Quotes in the message are its own text; the fields' quotes are syntax. */
		ck_assert_ptr_nonnull(strstr(full, " backend="));
		fields_at = (size_t)(strstr(full, " backend=") - full);
		ck_assert(text_quotes_balanced(full + fields_at));
		ck_assert_ptr_nonnull(strstr(full, " k\\x22ey=\"v=1\" "));
		for (buflen = 0; buflen <= need + 2; buflen++) {
			memset(buf, 'Z', sizeof(buf));
			ck_assert_uint_eq(fmt(buf, buflen, LOG_FORMAT_TEXT, color, LOG_LEVEL_WARN,
			    NASTY_MSG, nasty_fields, NASTY_NFIELDS), need);
			ck_assert_msg(buf[buflen] == 'Z', "wrote past %zu bytes", buflen);
			if (buflen == 0)
				continue;
			len = strlen(buf);
			ck_assert_uint_lt(len, buflen);
			if (buflen > need) {
				ck_assert_str_eq(buf, full);
				continue;
			}
			if (buflen == 1) {
				ck_assert_str_eq(buf, "");
				continue;
			}
			ck_assert_uint_gt(len, 0);
			ck_assert_msg(buf[len - 1] == '\n' && strchr(buf, '\n') == buf + len - 1,
			    "bad line end at %zu: %s", buflen, buf);
			ck_assert(valid_utf8(buf));
			ck_assert_msg(len <= fields_at || text_quotes_balanced(buf + fields_at),
			    "open quote at %zu: %s", buflen, buf);
			esc = count_substr(buf, "\033[");
			ck_assert_msg(esc == 0 || (esc == 2 && strstr(buf, "\033[0m") != NULL),
			    "colour left open at %zu", buflen);

			/* Apart from a closing quote it is the start of the full line. */
			memcpy(body, buf, len - 1);
			body[len - 1] = '\0';
			if (strncmp(body, full, len - 1) != 0) {
				ck_assert_int_eq(body[len - 2], '"');
				ck_assert_msg(strncmp(body, full, len - 2) == 0,
				    "not a prefix at %zu: %s", buflen, buf);
			}
		}
	}
}
END_TEST

START_TEST(test_truncation_small)
{
	static const char *const fields[] = { "backend", "127.0.0.1:8002", "reason", "x y" };
	static const size_t sizes[] = { 4, 5, 10, 40, 64, 100 };
	char msg[300], buf[128];
	struct json_object *obj;
	size_t i;

	memset(msg, 'm', sizeof(msg) - 1);
	msg[sizeof(msg) - 1] = '\0';
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		fmt(buf, sizes[i], LOG_FORMAT_JSON, false, LOG_LEVEL_INFO, msg, fields, 2);
		ck_assert_uint_lt(strlen(buf), sizes[i]);
		obj = parse_line(buf);
		if (sizes[i] >= 64) {
			/* Room for the fixed members: only the message is cut. */
			ck_assert_str_eq(json_str(obj, "time"), TIME_FIXED);
			ck_assert_str_eq(json_str(obj, "level"), "info");
			ck_assert_uint_gt(strlen(json_str(obj, "msg")), 0);
			ck_assert(strspn(json_str(obj, "msg"), "m") == strlen(json_str(obj, "msg")));
			ck_assert(!json_object_object_get_ex(obj, "pid", NULL));
		}
		json_object_put(obj);

		fmt(buf, sizes[i], LOG_FORMAT_TEXT, true, LOG_LEVEL_INFO, msg, fields, 2);
		ck_assert_uint_lt(strlen(buf), sizes[i]);
		ck_assert_int_eq(buf[strlen(buf) - 1], '\n');
	}
	/* Cut lines use the whole buffer: 39 bytes and the NUL. */
	fmt(buf, 40, LOG_FORMAT_TEXT, false, LOG_LEVEL_INFO, msg, fields, 2);
	ck_assert_str_eq(buf, TIME_FIXED " INFO mmmmmmmm\n");
	fmt(buf, 64, LOG_FORMAT_JSON, false, LOG_LEVEL_INFO, msg, fields, 2);
	ck_assert_str_eq(buf, "{\"time\":\"" TIME_FIXED "\",\"level\":\"info\",\"msg\":\"mmm\"}\n");
	fmt(buf, 4, LOG_FORMAT_JSON, false, LOG_LEVEL_INFO, msg, fields, 2);
	ck_assert_str_eq(buf, "{}\n");
	fmt(buf, 3, LOG_FORMAT_JSON, false, LOG_LEVEL_INFO, msg, fields, 2);
	ck_assert_str_eq(buf, "\n");
}
END_TEST

START_TEST(test_enabled)
{
	log_set_level(LOG_LEVEL_WARN);
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_WARN);
	ck_assert(!log_enabled(LOG_LEVEL_TRACE));
	ck_assert(!log_enabled(LOG_LEVEL_DEBUG));
	ck_assert(!log_enabled(LOG_LEVEL_INFO));
	ck_assert(log_enabled(LOG_LEVEL_WARN));
	ck_assert(log_enabled(LOG_LEVEL_ERROR));

	log_set_level(LOG_LEVEL_TRACE);
	ck_assert(log_enabled(LOG_LEVEL_TRACE));
	log_set_level(LOG_LEVEL_ERROR);
	ck_assert(!log_enabled(LOG_LEVEL_WARN));
	ck_assert(log_enabled(LOG_LEVEL_ERROR));
}
END_TEST

START_TEST(test_msg_json)
{
	struct capture c;
	struct json_object *obj, *v;
	struct tm tm;
	char out[4096];
	const char *rest;
	time_t now = time(NULL), then;

	log_set_format(LOG_FORMAT_JSON);
	log_set_proc("checker");
	capture_start(&c);
	log_warn("backend down", "backend", "127.0.0.1:8002", "reason", "connect \"refused\"\n",
	    "optional", (const char *)NULL, "was_up", "4m12s", (const char *)NULL);
	capture_end(&c, out, sizeof(out));

	obj = parse_line(out);
	ck_assert_str_eq(json_str(obj, "level"), "warn");
	ck_assert_str_eq(json_str(obj, "msg"), "backend down");
	ck_assert_str_eq(json_str(obj, "proc"), "checker");
	ck_assert(json_object_object_get_ex(obj, "pid", &v));
	ck_assert_int_eq(json_object_get_int64(v), getpid());
	ck_assert_str_eq(json_str(obj, "backend"), "127.0.0.1:8002");
	ck_assert_str_eq(json_str(obj, "reason"), "connect \"refused\"\n");
	ck_assert_str_eq(json_str(obj, "was_up"), "4m12s");
	ck_assert(!json_object_object_get_ex(obj, "optional", NULL));
	ck_assert_int_eq(json_object_object_length(obj), 8);

	/* The time is now, in the documented shape. */
	ck_assert_uint_eq(strlen(json_str(obj, "time")), 24);
	memset(&tm, 0, sizeof(tm));
	rest = strptime(json_str(obj, "time"), "%Y-%m-%dT%H:%M:%S", &tm);
	ck_assert_ptr_nonnull(rest);
	ck_assert_int_eq(rest[0], '.');
	ck_assert_uint_eq(strspn(rest + 1, "0123456789"), 3);
	ck_assert_str_eq(rest + 4, "Z");
	then = timegm(&tm);
	ck_assert_int_le(labs((long)(then - now)), 5);
	json_object_put(obj);
}
END_TEST

START_TEST(test_msg_text)
{
	static const char line1[] = " ERROR no backend host=\"a b\"\n", line2[] = " INFO second\n";
	struct capture c;
	char out[4096];
	size_t len;

	capture_start(&c);
	/* Colour follows stderr, which is now a pipe. */
	log_set_format(LOG_FORMAT_TEXT);
	log_error("no backend", "host", "a b", (const char *)NULL);
	log_info("second", (const char *)NULL);
	len = capture_end(&c, out, sizeof(out));

	ck_assert_ptr_null(strchr(out, '\033'));
	ck_assert_uint_eq(len, 24 + strlen(line1) + 24 + strlen(line2));
	ck_assert_int_eq(strncmp(out + 24, line1, strlen(line1)), 0);
	ck_assert_str_eq(out + 24 + strlen(line1) + 24, line2);
}
END_TEST

START_TEST(test_msg_level_filter)
{
	struct capture c;
	char out[4096];

	log_set_format(LOG_FORMAT_JSON);
	log_set_level(LOG_LEVEL_WARN);
	capture_start(&c);
	log_trace("t", (const char *)NULL);
	log_debug("d", (const char *)NULL);
	log_info("i", (const char *)NULL);
	log_msg(LOG_LEVEL_INFO, "i2", "k", "v", (const char *)NULL);
	ck_assert_uint_eq(capture_end(&c, out, sizeof(out)), 0);

	capture_start(&c);
	log_warn("w", (const char *)NULL);
	log_error("e", (const char *)NULL);
	capture_end(&c, out, sizeof(out));
	ck_assert_uint_eq(count_substr(out, "\n"), 2);
	ck_assert_ptr_nonnull(strstr(out, "\"level\":\"warn\",\"msg\":\"w\""));
	ck_assert_ptr_nonnull(strstr(out, "\"level\":\"error\",\"msg\":\"e\""));
}
END_TEST

START_TEST(test_msg_errno)
{
	struct capture c;
	char out[4096];
	int saved;

	capture_start(&c);
	errno = ECONNREFUSED;
	log_error("connect failed", "backend", "h:1", (const char *)NULL);
	ck_assert_int_eq(errno, ECONNREFUSED);
	errno = 0;
	log_error("no error", (const char *)NULL);
	ck_assert_int_eq(errno, 0);
	capture_end(&c, out, sizeof(out));
	ck_assert_uint_eq(count_substr(out, "\n"), 2);

	/* A failing write is ignored and does not leak its errno (EBADF) either. */
	saved = dup(STDERR_FILENO);
	close(STDERR_FILENO);
	errno = ETIMEDOUT;
	log_error("nowhere to go", (const char *)NULL);
	ck_assert_int_eq(errno, ETIMEDOUT);
	dup2(saved, STDERR_FILENO);
	close(saved);
}
END_TEST

START_TEST(test_msg_many_fields)
{
	struct capture c;
	struct json_object *obj;
	char out[8192], key[16];
	int i;

	log_set_format(LOG_FORMAT_JSON);
	capture_start(&c);
	log_info("many",
	    "f0", "0", "f1", "1", "f2", "2", "f3", "3", "f4", "4", "f5", "5", "f6", "6",
	    "f7", "7", "f8", "8", "f9", "9", "f10", "10", "f11", "11", "f12", "12",
	    "f13", "13", "f14", "14", "f15", "15", "f16", "16", "f17", "17", "f18", "18",
	    "f19", "19", "f20", "20", "f21", "21", "f22", "22", "f23", "23", "f24", "24",
	    "f25", "25", "f26", "26", "f27", "27", "f28", "28", "f29", "29", "f30", "30",
	    "f31", "31", "f32", "32", "f33", "33", "f34", "34", "f35", "35", "f36", "36",
	    "f37", "37", "f38", "38", "f39", "39", (const char *)NULL);
	capture_end(&c, out, sizeof(out));

	/* The first 32 pairs are kept, the rest dropped rather than overflowing. */
	obj = parse_line(out);
	for (i = 0; i < 32; i++) {
		snprintf(key, sizeof(key), "f%d", i);
		snprintf(out, sizeof(out), "%d", i);
		ck_assert_str_eq(json_str(obj, key), out);
	}
	ck_assert(!json_object_object_get_ex(obj, "f32", NULL));
	ck_assert_int_eq(json_object_object_length(obj), 5 + 32);
	json_object_put(obj);
}
END_TEST

START_TEST(test_msg_long_line)
{
	static char msg[20000], out[40000];
	struct capture c;
	struct json_object *obj;
	size_t len;
	int format;

	memset(msg, 'x', sizeof(msg) - 1);
	msg[100] = '"';
	msg[200] = '\n';
	for (format = LOG_FORMAT_TEXT; format <= LOG_FORMAT_JSON; format++) {
		capture_start(&c);
		log_set_format((enum log_format)format);
		log_error(msg, "after", "lost", (const char *)NULL);
		len = capture_end(&c, out, sizeof(out));

		/* Cut to the writer's 8 KiB buffer, still one whole line. */
		ck_assert_uint_gt(len, 4096);
		ck_assert_uint_lt(len, 8192);
		ck_assert_ptr_eq(strchr(out, '\n'), out + len - 1);
		ck_assert_ptr_null(strstr(out, "lost"));
		if (format == LOG_FORMAT_JSON) {
			obj = parse_line(out);
			ck_assert_int_eq(strncmp(json_str(obj, "msg"), msg,
			    strlen(json_str(obj, "msg"))), 0);
			json_object_put(obj);
		}
	}
}
END_TEST

/* Processes fork after logging has started: each line carries the writer's own pid. */
START_TEST(test_msg_pid_after_fork)
{
	struct capture c;
	struct json_object *obj, *v;
	char out[4096];
	pid_t child;
	int status;

	log_set_format(LOG_FORMAT_JSON);
	capture_start(&c);
	log_info("parent", (const char *)NULL);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		log_info("child", (const char *)NULL);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	capture_end(&c, out, sizeof(out));

	ck_assert_ptr_nonnull(strchr(out, '\n'));
	*strchr(out, '\n') = '\0';
	obj = json_tokener_parse(out);
	ck_assert_ptr_nonnull(obj);
	ck_assert_str_eq(json_str(obj, "msg"), "parent");
	ck_assert(json_object_object_get_ex(obj, "pid", &v));
	ck_assert_int_eq(json_object_get_int64(v), getpid());
	json_object_put(obj);

	obj = parse_line(out + strlen(out) + 1);
	ck_assert_str_eq(json_str(obj, "msg"), "child");
	ck_assert(json_object_object_get_ex(obj, "pid", &v));
	ck_assert_int_eq(json_object_get_int64(v), child);
	json_object_put(obj);
}
END_TEST

/* Read what arrived on the pty master within a short wait. */
static void
pty_read(int fd, char *buf, size_t buflen)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	size_t len = 0;
	ssize_t n;

	while (len + 1 < buflen && poll(&pfd, 1, len == 0 ? 2000 : 100) == 1) {
		n = read(fd, buf + len, buflen - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
}

/* Colour comes from isatty(stderr) and NO_COLOR, and only for text. */
START_TEST(test_color_tty)
{
	struct termios t;
	struct capture c;
	char out[4096], err[256];
	int master, slave, saved;

	capture_start(&c);
	unsetenv("NO_COLOR");
	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	log_warn("to a pipe", (const char *)NULL);
	capture_end(&c, out, sizeof(out));
	ck_assert_ptr_nonnull(strstr(out, " WARN to a pipe\n"));
	ck_assert_ptr_null(strchr(out, '\033'));

	master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master == -1 || grantpt(master) == -1 || unlockpt(master) == -1) {
		printf("test_color_tty: no pseudo-terminal (%s), terminal part skipped\n",
		    strerror(errno));
		return;
	}
	slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	ck_assert_int_ge(slave, 0);
	ck_assert_int_eq(tcgetattr(slave, &t), 0);
	cfmakeraw(&t);
	ck_assert_int_eq(tcsetattr(slave, TCSANOW, &t), 0);
	saved = dup(STDERR_FILENO);
	ck_assert_int_ge(dup2(slave, STDERR_FILENO), 0);

	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	log_warn("colourful", (const char *)NULL);
	pty_read(master, out, sizeof(out));
	ck_assert_ptr_nonnull(strstr(out, " \033[33mWARN\033[0m colourful\n"));

	setenv("NO_COLOR", "1", 1);
	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	log_warn("plain", (const char *)NULL);
	pty_read(master, out, sizeof(out));
	ck_assert_ptr_nonnull(strstr(out, " WARN plain\n"));
	ck_assert_ptr_null(strchr(out, '\033'));

	/* An empty NO_COLOR does not count (no-color.org). */
	setenv("NO_COLOR", "", 1);
	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	log_error("red", (const char *)NULL);
	pty_read(master, out, sizeof(out));
	ck_assert_ptr_nonnull(strstr(out, " \033[31mERROR\033[0m red\n"));

	setenv("LOG_FORMAT", "json", 1);
	ck_assert_int_eq(log_init_env(err, sizeof(err)), 0);
	log_error("json", (const char *)NULL);
	pty_read(master, out, sizeof(out));
	ck_assert_ptr_nonnull(strstr(out, "\"msg\":\"json\""));
	ck_assert_ptr_null(strchr(out, '\033'));

	dup2(saved, STDERR_FILENO);
	close(saved);
	close(slave);
	close(master);
	unsetenv("NO_COLOR");
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_checked_fixture(tc, reset_log, NULL);
	tcase_add_test(tc, test_level_str);
	tcase_add_test(tc, test_level_parse);
	tcase_add_test(tc, test_format_parse);
	tcase_add_test(tc, test_init_env);
	suite_add_tcase(s, tc);

	tc = tcase_create("format");
	tcase_add_checked_fixture(tc, reset_log, NULL);
	tcase_add_test(tc, test_format_time);
	tcase_add_test(tc, test_text_design_example);
	tcase_add_test(tc, test_text_quoting);
	tcase_add_test(tc, test_text_msg);
	tcase_add_test(tc, test_text_color);
	tcase_add_test(tc, test_json_exact);
	tcase_add_test(tc, test_json_roundtrip);
	tcase_add_test(tc, test_return_value);
	suite_add_tcase(s, tc);

	tc = tcase_create("truncation");
	tcase_add_checked_fixture(tc, reset_log, NULL);
	tcase_add_test(tc, test_json_truncation_sweep);
	tcase_add_test(tc, test_text_truncation_sweep);
	tcase_add_test(tc, test_truncation_small);
	suite_add_tcase(s, tc);

	tc = tcase_create("write");
	tcase_add_checked_fixture(tc, reset_log, NULL);
	tcase_add_test(tc, test_enabled);
	tcase_add_test(tc, test_msg_json);
	tcase_add_test(tc, test_msg_text);
	tcase_add_test(tc, test_msg_level_filter);
	tcase_add_test(tc, test_msg_errno);
	tcase_add_test(tc, test_msg_many_fields);
	tcase_add_test(tc, test_msg_long_line);
	tcase_add_test(tc, test_msg_pid_after_fork);
	tcase_add_test(tc, test_color_tty);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run(log_suite(), CK_NORMAL);
}
