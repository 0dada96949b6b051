/* Unit tests for the control protocol's requests (control_request_parse, control_request_format). */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "roundguard/control.h"
#include "unit.h"

/* Bytes with their length: the cases may hold NUL. */
#define B(s) s, sizeof(s) - 1

struct parse_case {
	const char *text;
	size_t len;
	/* NULL: accepted as command, backend, weight; else a piece of the reason. */
	const char *why;
	enum control_command command;
	const char *backend;
	int weight;
};

#define OK(t, c, b, w)	{ B(t), NULL, c, b, w }
#define NO(t, why)	{ B(t), why, 0, NULL, 0 }

static const struct parse_case parse_cases[] = {
	/* each command */
	OK("{\"command\":\"status\"}", CONTROL_STATUS, "", -1),
	OK("{\"command\":\"drain\",\"backend\":\"http://127.0.0.1:8001\"}", CONTROL_DRAIN,
	    "http://127.0.0.1:8001", -1),
	OK("{\"command\":\"maint\",\"backend\":\"127.0.0.1:8001\"}", CONTROL_MAINT,
	    "127.0.0.1:8001", -1),
	OK("{\"command\":\"ready\",\"backend\":\"https://api.internal:8443/prefix\"}",
	    CONTROL_READY, "https://api.internal:8443/prefix", -1),
	OK("{\"command\":\"weight\",\"backend\":\"[::1]:8001\",\"weight\":3}", CONTROL_WEIGHT,
	    "[::1]:8001", 3),
	/* the weight's bounds; -0 is 0 */
	OK("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":0}", CONTROL_WEIGHT, "h:1", 0),
	OK("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":256}", CONTROL_WEIGHT, "h:1", 256),
	OK("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":-0}", CONTROL_WEIGHT, "h:1", 0),
	/* any order, white space around and inside, escapes that make plain ASCII */
	OK("{\"weight\":7,\"backend\":\"h:1\",\"command\":\"weight\"}", CONTROL_WEIGHT, "h:1", 7),
	OK(" \r\n\t{ \"command\" :\n\"status\" }\n", CONTROL_STATUS, "", -1),
	OK("{\"command\":\"dr\\u0061in\",\"back\\u0065nd\":\"h\\u003a1\\/x\"}", CONTROL_DRAIN,
	    "h:1/x", -1),
	/* printable ASCII other than space is the backend's to match or not */
	OK("{\"command\":\"drain\",\"backend\":\"a\\\"b\\\\c~\"}", CONTROL_DRAIN, "a\"b\\c~", -1),

	/* the bytes */
	NO("", "empty request"),
	NO(" \n\t ", "empty request"),
	NO("{\"command\":\"status\"}\0", "NUL byte"),
	NO("{\"command\":\"st\0atus\"}", "NUL byte"),
	NO("{\"command\":\"drain\",\"backend\":\"\xff\"}", "not valid UTF-8"),
	NO("{\"command\":\"drain\",\"backend\":\"\xc0\xaf\"}", "not valid UTF-8"),
	NO("{\"command\":\"drain\",\"backend\":\"\xed\xa0\x80\"}", "not valid UTF-8"),
	NO("{\"command\":\"drain\",\"backend\":\"\xc3\"}", "not valid UTF-8"),
	/* the syntax: one object, strict JSON, nothing after it */
	NO("[]", "not a JSON object"),
	NO("\"status\"", "not a JSON object"),
	NO("null", "not a JSON object"),
	NO("5", "not a JSON object"),
	NO("{\"command\":\"status\"} x", "unexpected data after the JSON object"),
	NO("{\"command\":\"status\"}{}", "unexpected data after the JSON object"),
	NO("{\"command\":\"status\"}\n{\"command\":\"status\"}", "unexpected data after"),
	NO("{\"command\":\"status\"}]", "unexpected data after the JSON object"),
	NO("{\"command\":\"status\"", "does not end"),
	NO("{\"command\":\"sta", "does not end"),
	NO("{\"command\":\"status\",}", "not valid JSON"),
	NO("{\"command\" \"status\"}", "not valid JSON"),
	NO("{command:\"status\"}", "not valid JSON"),
	NO("{\"command\":\"status\"/* c */}", "not valid JSON"),
	NO("{'command':\"status\"}", "RFC 8259"),
	NO("{\"command\":'status'}", "not valid JSON"),
	NO("{\"command\":\"drain\",\"backend\":\"a\tb\"}", "RFC 8259"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":1.}", "RFC 8259"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":NaN}", "RFC 8259"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":007}", "not valid JSON"),
	NO("{\"command\":[[[[[[[[[[1]]]]]]]]]]}", "nesting too deep"),
	/* what json-c would let through silently */
	NO("{\"command\":\"status\",\"command\":\"status\"}", "more than once"),
	NO("{\"command\":\"status\",\"comm\\u0061nd\":\"drain\"}", "more than once"),
	NO("{\"command\\u0000x\":\"status\"}", "\\u0000"),
	NO("{\"command\":\"drain\",\"backend\":\"a\\u0000b\"}", "\\u0000"),

	/* keys */
	NO("{}", "command: missing"),
	NO("{\"command\":\"status\",\"x\":1}", "unknown key \"x\""),
	NO("{\"Command\":\"status\"}", "unknown key \"Command\""),
	NO("{\"command\":\"status\",\"\":1}", "unknown key \"\""),
	NO("{\"command\":\"status\",\"a\\nb\":1}", "unknown key \"a\\x0ab\""),
	NO("{\"command\":\"status\",\"caf\\u00e9\":1}", "unknown key \"caf\\xc3\\xa9\""),
	/* command */
	NO("{\"command\":1}", "command: expected a string, got int"),
	NO("{\"command\":null}", "command: expected a string, got null"),
	NO("{\"command\":{\"a\":1}}", "command: expected a string, got object"),
	NO("{\"command\":[\"status\"]}", "command: expected a string, got array"),
	NO("{\"command\":\"halt\"}", "command: unknown command \"halt\" (use status, drain"),
	NO("{\"command\":\"Status\"}", "command: unknown command \"Status\""),
	NO("{\"command\":\"\"}", "command: unknown command \"\""),
	/* backend */
	NO("{\"command\":\"status\",\"backend\":\"h:1\"}", "backend: not taken by status"),
	NO("{\"command\":\"drain\"}", "backend: missing (drain needs one)"),
	NO("{\"command\":\"weight\",\"weight\":1}", "backend: missing (weight needs one)"),
	NO("{\"command\":\"maint\",\"backend\":\"\"}", "backend: empty"),
	NO("{\"command\":\"ready\",\"backend\":7}", "backend: expected a string, got int"),
	NO("{\"command\":\"ready\",\"backend\":[\"h:1\"]}", "backend: expected a string, got array"),
	NO("{\"command\":\"drain\",\"backend\":\"a b\"}", "backend: \"a b\": not a URL or host:port"),
	NO("{\"command\":\"drain\",\"backend\":\"a\\tb\"}", "backend: \"a\\x09b\": not a URL"),
	NO("{\"command\":\"drain\",\"backend\":\"a\\u007fb\"}", "not a URL"),
	NO("{\"command\":\"drain\",\"backend\":\"caf\\u00e9:1\"}", "\"caf\\xc3\\xa9:1\": not a"),
	NO("{\"command\":\"drain\",\"backend\":\"\\ud800\"}", "not a URL"),
	/* weight */
	NO("{\"command\":\"drain\",\"backend\":\"h:1\",\"weight\":3}", "weight: not taken by drain"),
	NO("{\"command\":\"status\",\"weight\":3}", "weight: not taken by status"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\"}", "weight: missing"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":300}",
	    "weight: 300 is out of range (0-256)"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":257}",
	    "weight: 257 is out of range (0-256)"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":-1}",
	    "weight: -1 is out of range (0-256)"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":99999999999999999999}",
	    "weight: out of range (0-256)"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":-99999999999999999999}",
	    "weight: out of range (0-256)"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":4294967299}",
	    "weight: 4294967299 is out of range"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":1.5}",
	    "weight: 1.5 is not an integer"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":1e2}",
	    "weight: 1e2 is not an integer"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":3.0}",
	    "weight: 3.0 is not an integer"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":\"3\"}",
	    "weight: expected an integer, got string"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":true}",
	    "weight: expected an integer, got boolean"),
	NO("{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":null}",
	    "weight: expected an integer, got null"),
};

START_TEST(parse_table)
{
	const struct parse_case *c = &parse_cases[_i];
	struct control_request r;
	char err[1024];
	int rc;

	memset(&r, 0x5a, sizeof(r));
	strcpy(err, "untouched");
	rc = control_request_parse(c->text, c->len, &r, err, sizeof(err));
	if (c->why == NULL) {
		ck_assert_msg(rc == 0, "case %d refused: %s", _i, err);
		ck_assert_int_eq(r.command, c->command);
		ck_assert_str_eq(r.backend, c->backend);
		ck_assert_int_eq(r.weight, c->weight);
	} else {
		ck_assert_msg(rc == -1, "case %d accepted", _i);
		ck_assert_msg(strstr(err, c->why) != NULL, "case %d: reason \"%s\" lacks \"%s\"", _i,
		    err, c->why);
		ck_assert_msg(strchr(err, '\n') == NULL, "case %d: reason on two lines", _i);
		ck_assert_uint_lt(strlen(err), CONTROL_REASON_MAX);
		/* A refusal leaves the caller's request as it was. */
		ck_assert_uint_eq(((unsigned char *)&r)[0], 0x5a);
		ck_assert_uint_eq((unsigned char)r.backend[0], 0x5a);
	}
}
END_TEST

/* A request of exactly len bytes: a valid one padded with white space. */
static char *
padded(size_t len)
{
	static const char req[] = "{\"command\":\"status\"}";
	char *s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	ck_assert_uint_ge(len, sizeof(req) - 1);
	memset(s, ' ', len);
	memcpy(s, req, sizeof(req) - 1);
	s[len] = '\0';
	return s;
}

START_TEST(size_limit)
{
	struct control_request r;
	char err[256];
	char *s;

	s = padded(CONTROL_REQUEST_MAX);
	ck_assert_int_eq(control_request_parse(s, CONTROL_REQUEST_MAX, &r, err, sizeof(err)), 0);
	free(s);
	s = padded(CONTROL_REQUEST_MAX + 1);
	ck_assert_int_eq(control_request_parse(s, CONTROL_REQUEST_MAX + 1, &r, err, sizeof(err)),
	    -1);
	ck_assert_str_eq(err, "request too large: 4097 bytes (at most 4096)");
	free(s);
}
END_TEST

/* {"command":"drain","backend":"<n times ch>"} */
static char *
drain_request(size_t n, char ch)
{
	char *s = malloc(n + 64);
	size_t len;

	ck_assert_ptr_nonnull(s);
	strcpy(s, "{\"command\":\"drain\",\"backend\":\"");
	len = strlen(s);
	memset(s + len, ch, n);
	strcpy(s + len + n, "\"}");
	return s;
}

START_TEST(backend_length)
{
	struct control_request r;
	char err[256];
	char *s;

	s = drain_request(CONTROL_BACKEND_MAX, 'a');
	ck_assert_int_eq(control_request_parse(s, strlen(s), &r, err, sizeof(err)), 0);
	ck_assert_uint_eq(strlen(r.backend), CONTROL_BACKEND_MAX);
	free(s);
	s = drain_request(CONTROL_BACKEND_MAX + 1, 'a');
	ck_assert_int_eq(control_request_parse(s, strlen(s), &r, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "backend: too long: 1296 bytes (at most 1295)");
	free(s);
}
END_TEST

START_TEST(reason_buffer)
{
	struct control_request r;
	char err[8];
	static const char req[] = "{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":300}";

	/* A short buffer gets a cut, terminated reason; none at all is allowed. */
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(control_request_parse(B(req), &r, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "weight:");
	ck_assert_int_eq(control_request_parse(B(req), &r, NULL, 0), -1);
	ck_assert_int_eq(control_request_parse(NULL, 0, &r, NULL, 0), -1);
}
END_TEST

START_TEST(long_values_shown_cut)
{
	struct control_request r;
	char err[1024];
	char *s = malloc(4096);
	size_t len;

	/* A 2000-byte unknown key is shown by its first bytes only. */
	ck_assert_ptr_nonnull(s);
	strcpy(s, "{\"command\":\"status\",\"");
	len = strlen(s);
	memset(s + len, 'k', 2000);
	strcpy(s + len + 2000, "\":1}");
	ck_assert_int_eq(control_request_parse(s, strlen(s), &r, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "unknown key \"kkkk"));
	ck_assert_ptr_nonnull(strstr(err, "kkk...\" (use command, backend, weight)"));
	ck_assert_uint_lt(strlen(err), 200);

	/* The longest reasons, every byte shown escaped, fit in CONTROL_REASON_MAX. */
	strcpy(s, "{\"command\":\"");
	for (int i = 0; i < 300; i++)
		strcat(s, "\\u0001");
	strcat(s, "\"}");
	ck_assert_int_eq(control_request_parse(s, strlen(s), &r, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "command: unknown command \"\\x01\\x01"));
	ck_assert_ptr_nonnull(strstr(err, "\\x01...\" (use status, drain, maint, ready or weight)"));
	ck_assert_uint_lt(strlen(err), CONTROL_REASON_MAX);
	strcpy(s, "{\"command\":\"drain\",\"backend\":\"");
	for (int i = 0; i < 300; i++)
		strcat(s, "\\u001b");
	strcat(s, "\"}");
	ck_assert_int_eq(control_request_parse(s, strlen(s), &r, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "\\x1b...\": not a URL or host:port"));
	ck_assert_uint_lt(strlen(err), CONTROL_REASON_MAX);
	free(s);
}
END_TEST

/* ---- format ---- */

static struct control_request
request(enum control_command c, const char *backend, int weight)
{
	struct control_request r;

	memset(&r, 0, sizeof(r));
	r.command = c;
	strcpy(r.backend, backend);
	r.weight = weight;
	return r;
}

START_TEST(format_each_command)
{
	static const struct {
		enum control_command c;
		const char *backend;
		int weight;
		const char *want;
	} cases[] = {
		/* fields a command does not take are left out */
		{ CONTROL_STATUS, "ignored", 5, "{\"command\":\"status\"}" },
		{ CONTROL_DRAIN, "h:1", 5, "{\"command\":\"drain\",\"backend\":\"h:1\"}" },
		{ CONTROL_MAINT, "http://a/p", -1, "{\"command\":\"maint\",\"backend\":\"http://a/p\"}" },
		{ CONTROL_READY, "h:1", -1, "{\"command\":\"ready\",\"backend\":\"h:1\"}" },
		{ CONTROL_WEIGHT, "h:1", 0, "{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":0}" },
		{ CONTROL_WEIGHT, "h:1", 256,
		    "{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":256}" },
		/* as they are: the parser refuses what is wrong */
		{ CONTROL_WEIGHT, "h:1", -7, "{\"command\":\"weight\",\"backend\":\"h:1\",\"weight\":-7}" },
		{ CONTROL_DRAIN, "a\"b\\c\n\x01", -1,
		    "{\"command\":\"drain\",\"backend\":\"a\\\"b\\\\c\\u000a\\u0001\"}" },
	};
	char buf[CONTROL_REQUEST_MAX];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct control_request r = request(cases[i].c, cases[i].backend, cases[i].weight);
		int n = control_request_format(&r, buf, sizeof(buf));

		ck_assert_str_eq(buf, cases[i].want);
		ck_assert_int_eq(n, (int)strlen(cases[i].want));
	}
}
END_TEST

START_TEST(format_buffer_size)
{
	struct control_request r = request(CONTROL_DRAIN, "h:1", -1);
	static const char want[] = "{\"command\":\"drain\",\"backend\":\"h:1\"}";
	char buf[sizeof(want) + 8];

	/* Room for the NUL is needed; a bad command formats as nothing. */
	ck_assert_int_eq(control_request_format(&r, buf, sizeof(want)), (int)sizeof(want) - 1);
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(control_request_format(&r, buf, sizeof(want) - 1), -1);
	ck_assert_int_eq(control_request_format(&r, buf, 1), -1);
	ck_assert_int_eq(control_request_format(&r, buf, 0), -1);
	r.command = (enum control_command)99;
	ck_assert_int_eq(control_request_format(&r, buf, sizeof(buf)), -1);
}
END_TEST

/* What format writes, parse reads back as the same request. */
static void
round_trip(const struct control_request *r)
{
	struct control_request back;
	char buf[CONTROL_REQUEST_MAX + 1], err[256];
	int n = control_request_format(r, buf, sizeof(buf));

	ck_assert_int_gt(n, 0);
	ck_assert_int_le(n, CONTROL_REQUEST_MAX);
	ck_assert_msg(control_request_parse(buf, (size_t)n, &back, err, sizeof(err)) == 0,
	    "%s refused: %s", buf, err);
	ck_assert_int_eq(back.command, r->command);
	ck_assert_str_eq(back.backend, r->backend);
	ck_assert_int_eq(back.weight, r->weight);
}

START_TEST(format_parse_round_trip)
{
	struct control_request r;

	r = request(CONTROL_STATUS, "", -1);
	round_trip(&r);
	for (int w = 0; w <= CONTROL_WEIGHT_MAX; w++) {
		r = request(CONTROL_WEIGHT, "https://api.internal:8443/prefix", w);
		round_trip(&r);
	}
	r = request(CONTROL_DRAIN, "[::1]:80", -1);
	round_trip(&r);
	r = request(CONTROL_MAINT, "a\"b\\c", -1);
	round_trip(&r);
	r = request(CONTROL_READY, "x", -1);
	round_trip(&r);
	/* The longest backend, every byte escaped: still within CONTROL_REQUEST_MAX. */
	r = request(CONTROL_WEIGHT, "", 256);
	memset(r.backend, '"', CONTROL_BACKEND_MAX);
	r.backend[CONTROL_BACKEND_MAX] = '\0';
	round_trip(&r);
	memset(r.backend, '\\', CONTROL_BACKEND_MAX);
	round_trip(&r);
}
END_TEST

START_TEST(command_names)
{
	static const char *const names[] = { "status", "drain", "maint", "ready", "weight" };
	enum control_command c;

	for (int i = 0; i < 5; i++) {
		ck_assert_str_eq(control_command_name((enum control_command)i), names[i]);
		ck_assert_int_eq(control_command_from_name(names[i], &c), 0);
		ck_assert_int_eq(c, i);
	}
	ck_assert_str_eq(control_command_name((enum control_command)5), "unknown");
	ck_assert_str_eq(control_command_name((enum control_command)-1), "unknown");
	ck_assert_int_eq(control_command_from_name("", &c), -1);
	ck_assert_int_eq(control_command_from_name("unknown", &c), -1);
	ck_assert_int_eq(control_command_from_name("DRAIN", &c), -1);
	ck_assert_int_eq(control_command_from_name("drain ", &c), -1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, parse_table, 0,
	    (int)(sizeof(parse_cases) / sizeof(parse_cases[0])));
	tcase_add_test(tc, size_limit);
	tcase_add_test(tc, backend_length);
	tcase_add_test(tc, reason_buffer);
	tcase_add_test(tc, long_values_shown_cut);
	tcase_add_test(tc, format_each_command);
	tcase_add_test(tc, format_buffer_size);
	tcase_add_test(tc, format_parse_round_trip);
	tcase_add_test(tc, command_names);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
