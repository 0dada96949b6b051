/* Unit tests for roundguard-echo's pure parts: routing, JSON validation, the WebSocket handshake. */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <llhttp.h>

#include "roundguard/echo.h"
#include "unit.h"

static bool
valid_in_pieces(const char *s, size_t piece)
{
	struct echo_json ej;
	size_t len = strlen(s);
	bool ok;

	ck_assert_int_eq(echo_json_init(&ej), 0);
	for (size_t off = 0; off < len; off += piece)
		echo_json_feed(&ej, s + off, len - off < piece ? len - off : piece);
	ok = echo_json_finish(&ej);
	echo_json_free(&ej);
	return ok;
}

static bool
valid(const char *s)
{
	bool whole = valid_in_pieces(s, strlen(s) + 1);

	/* Byte by byte must agree with all at once. */
	ck_assert_int_eq(valid_in_pieces(s, 1), whole);
	ck_assert_int_eq(valid_in_pieces(s, 3), whole);
	return whole;
}

START_TEST(json_accepts_any_value)
{
	ck_assert(valid("{\"hello\":\"world\"}"));
	ck_assert(valid("[1,2,3]"));
	ck_assert(valid("123"));
	ck_assert(valid("-1.5e3"));
	ck_assert(valid("[0.25, 1E+2, -0.0e-1]"));
	ck_assert(valid("[0, -0, 0.5, 1e05, 10, 100.001]"));
	ck_assert(valid("\"str\""));
	ck_assert(valid("true"));
	ck_assert(valid("null"));
	ck_assert(valid("  {\"a\": [1, {\"b\": null}]}  \n"));
	ck_assert(valid("{\"u\":\"\\u00e9\\n\"}"));
	/* Single quotes inside strings, also after an escaped double quote. */
	ck_assert(valid("{\"it's\":\"a 'b'\"}"));
	ck_assert(valid("\"esc \\\" ' \""));
}
END_TEST

START_TEST(json_rejects_invalid)
{
	ck_assert(!valid(""));
	ck_assert(!valid("   "));
	ck_assert(!valid("{"));
	ck_assert(!valid("{\"a\":1,}"));
	ck_assert(!valid("{'a':1}"));
	ck_assert(!valid("{\"a\":'b'}"));
	ck_assert(!valid("1."));
	ck_assert(!valid("[1.]"));
	ck_assert(!valid("[1.e5]"));
	ck_assert(!valid(".5"));
	ck_assert(!valid("[Infinity]"));
	ck_assert(!valid("[NaN]"));
	/* Leading zeros, and a minus that json-c takes when it starts a new piece. */
	ck_assert(!valid("[00]"));
	ck_assert(!valid("-00"));
	ck_assert(!valid("[-01]"));
	ck_assert(!valid("{\"a\":00}"));
	ck_assert(!valid("[1-]"));
	ck_assert(!valid("2-3"));
	ck_assert(!valid("[1e]"));
	ck_assert(!valid("[1e+]"));
	ck_assert(!valid("-"));
	ck_assert(!valid("[+1]"));
	ck_assert(!valid("\"tab\tinside\""));
	ck_assert(!valid("\"ctrl \x01\""));
	ck_assert(!valid("[\"x\\\"\", 'y']"));
	ck_assert(!valid("{\"a\":1} x"));
	ck_assert(!valid("{\"a\":1}{\"b\":2}"));
	ck_assert(!valid("[1,2"));
	ck_assert(!valid("tru"));
	ck_assert(!valid("hello"));
	ck_assert(!valid("12 13"));
}
END_TEST

START_TEST(json_rejects_nul_byte)
{
	struct echo_json ej;

	ck_assert_int_eq(echo_json_init(&ej), 0);
	echo_json_feed(&ej, "{\"a\":1}\0junk", 12);
	ck_assert(!echo_json_finish(&ej));
	echo_json_free(&ej);
}
END_TEST

START_TEST(json_reset_reuses)
{
	struct echo_json ej;

	ck_assert_int_eq(echo_json_init(&ej), 0);
	echo_json_feed(&ej, "{bad", 4);
	ck_assert(!echo_json_finish(&ej));
	echo_json_reset(&ej);
	echo_json_feed(&ej, "[true]", 6);
	ck_assert(echo_json_finish(&ej));
	echo_json_reset(&ej);
	echo_json_feed(&ej, "7", 1);
	ck_assert(echo_json_finish(&ej));
	echo_json_free(&ej);
}
END_TEST

START_TEST(routes)
{
	ck_assert_int_eq(echo_route_match("/reflect", 8), ECHO_ROUTE_REFLECT);
	ck_assert_int_eq(echo_route_match("/reflect?x=1", 12), ECHO_ROUTE_REFLECT);
	ck_assert_int_eq(echo_route_match("/live", 5), ECHO_ROUTE_LIVE);
	ck_assert_int_eq(echo_route_match("/live?probe", 11), ECHO_ROUTE_LIVE);
	ck_assert_int_eq(echo_route_match("/live/", 6), ECHO_ROUTE_NOT_FOUND);
	ck_assert_int_eq(echo_route_match("/reflectx", 9), ECHO_ROUTE_NOT_FOUND);
	ck_assert_int_eq(echo_route_match("/", 1), ECHO_ROUTE_NOT_FOUND);
	ck_assert_int_eq(echo_route_match("/ws", 3), ECHO_ROUTE_WS);
	ck_assert_int_eq(echo_route_match("/ws?greet=1", 11), ECHO_ROUTE_WS);
	ck_assert_int_eq(echo_route_match("/ws/", 4), ECHO_ROUTE_NOT_FOUND);
	ck_assert_int_eq(echo_route_match("/wss", 4), ECHO_ROUTE_NOT_FOUND);
	ck_assert_str_eq(echo_route_str(ECHO_ROUTE_LIVE), "live");
	ck_assert_str_eq(echo_route_str(ECHO_ROUTE_WS), "ws");
}
END_TEST

START_TEST(allowed_methods)
{
	ck_assert_ptr_null(echo_route_disallows(ECHO_ROUTE_REFLECT, HTTP_POST));
	ck_assert_str_eq(echo_route_disallows(ECHO_ROUTE_REFLECT, HTTP_GET), "POST");
	ck_assert_ptr_null(echo_route_disallows(ECHO_ROUTE_LIVE, HTTP_GET));
	ck_assert_ptr_null(echo_route_disallows(ECHO_ROUTE_LIVE, HTTP_HEAD));
	ck_assert_str_eq(echo_route_disallows(ECHO_ROUTE_LIVE, HTTP_POST), "GET, HEAD");
	ck_assert_str_eq(echo_route_disallows(ECHO_ROUTE_LIVE, HTTP_DELETE), "GET, HEAD");
	ck_assert_ptr_null(echo_route_disallows(ECHO_ROUTE_NOT_FOUND, HTTP_GET));
	ck_assert_ptr_null(echo_route_disallows(ECHO_ROUTE_WS, HTTP_GET));
	ck_assert_str_eq(echo_route_disallows(ECHO_ROUTE_WS, HTTP_HEAD), "GET");
	ck_assert_str_eq(echo_route_disallows(ECHO_ROUTE_WS, HTTP_POST), "GET");
}
END_TEST

static bool
flag(const char *target, const char *name)
{
	return echo_query_flag(target, strlen(target), name);
}

START_TEST(query_flags)
{
	ck_assert(flag("/ws?greet=1", "greet"));
	ck_assert(flag("/ws?a=b&greet=1", "greet"));
	ck_assert(flag("/ws?greet=1&close_after_101=1", "close_after_101"));
	ck_assert(flag("/ws?&&greet=1&", "greet"));
	ck_assert(!flag("/ws", "greet"));
	ck_assert(!flag("/ws?", "greet"));
	ck_assert(!flag("/ws?greet", "greet"));
	ck_assert(!flag("/ws?greet=", "greet"));
	ck_assert(!flag("/ws?greet=0", "greet"));
	ck_assert(!flag("/ws?greet=10", "greet"));
	ck_assert(!flag("/ws?xgreet=1", "greet"));
	ck_assert(!flag("/ws?greet=1x", "greet"));
	ck_assert(!flag("/greet=1", "greet"));
	/* The length bounds the target. */
	ck_assert(!echo_query_flag("/ws?greet=1", 10, "greet"));
}
END_TEST

static struct echo_ws_head
good_head(void)
{
	struct echo_ws_head h = {
		.http11 = true, .upgrade = true, .connection_upgrade = true, .host = true,
		.body = false, .version13 = true, .nversions = 1, .nkeys = 1,
		.key = "dGhlIHNhbXBsZSBub25jZQ==",
	};

	return h;
}

START_TEST(ws_handshake_checks)
{
	struct echo_ws_head h = good_head();
	const char *why = NULL;

	ck_assert_int_eq(echo_ws_refusal(&h, &why), 0);
#define REFUSED(change, status) do {						\
	h = good_head();							\
	change;									\
	why = NULL;								\
	ck_assert_int_eq(echo_ws_refusal(&h, &why), status);			\
	ck_assert_ptr_nonnull(why);						\
} while (0)
	REFUSED(h.upgrade = false, 400);
	REFUSED(h.connection_upgrade = false, 400);
	REFUSED(h.http11 = false, 400);
	REFUSED(h.host = false, 400);
	REFUSED(h.body = true, 400);
	REFUSED(h.nkeys = 0, 400);
	REFUSED(h.nkeys = 2, 400);
	REFUSED(h.key[0] = '\0', 400);
	REFUSED(h.key[21] = 'R', 400);
	REFUSED(h.nversions = 0, 400);
	REFUSED(h.nversions = 2, 400);
	REFUSED(h.version13 = false, 426);
	/* Without the upgrade headers, a wrong version is just a bad request. */
	REFUSED((h.version13 = false, h.upgrade = false), 400);
#undef REFUSED
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("echo");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, json_accepts_any_value);
	tcase_add_test(tc, json_rejects_invalid);
	tcase_add_test(tc, json_rejects_nul_byte);
	tcase_add_test(tc, json_reset_reuses);
	tcase_add_test(tc, routes);
	tcase_add_test(tc, allowed_methods);
	tcase_add_test(tc, query_flags);
	tcase_add_test(tc, ws_handshake_checks);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
