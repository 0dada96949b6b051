/* Unit tests for the shared HTTP helpers: reason phrases and JSON error responses. */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/buffer.h>
#include <json-c/json.h>

#include "roundguard/http.h"

START_TEST(reason_phrases)
{
	ck_assert_str_eq(http_reason(200), "OK");
	ck_assert_str_eq(http_reason(404), "Not Found");
	ck_assert_str_eq(http_reason(413), "Payload Too Large");
	ck_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
	ck_assert_str_eq(http_reason(504), "Gateway Timeout");
	ck_assert_str_eq(http_reason(299), "Unknown");
}
END_TEST

START_TEST(error_body_defaults)
{
	char buf[256];
	size_t n = http_error_body(buf, sizeof(buf), 404, NULL, NULL);

	ck_assert_str_eq(buf, "{\"title\":\"Not Found\",\"description\":"
	    "\"The requested resource does not exist\"}");
	ck_assert_uint_eq(n, strlen(buf));
}
END_TEST

START_TEST(error_body_go_compatible_503)
{
	char buf[256];

	http_error_body(buf, sizeof(buf), 503, "No healthy upstream", NULL);
	ck_assert_str_eq(buf, "{\"title\":\"No healthy upstream\",\"description\":"
	    "\"There's no instance of application that can process this request\"}");
}
END_TEST

START_TEST(error_body_escapes)
{
	char buf[256];
	struct json_object *obj, *v;

	http_error_body(buf, sizeof(buf), 400, "a \"quoted\" \\ title", "line1\nline2\x01");
	obj = json_tokener_parse(buf);
	ck_assert_ptr_nonnull(obj);
	ck_assert(json_object_object_get_ex(obj, "title", &v));
	ck_assert_str_eq(json_object_get_string(v), "a \"quoted\" \\ title");
	ck_assert(json_object_object_get_ex(obj, "description", &v));
	ck_assert_str_eq(json_object_get_string(v), "line1\nline2\x01");
	json_object_put(obj);
}
END_TEST

START_TEST(error_body_truncates_safely)
{
	char buf[16];
	size_t n = http_error_body(buf, sizeof(buf), 404, NULL, NULL);

	ck_assert_uint_gt(n, sizeof(buf));
	ck_assert_uint_eq(strlen(buf), sizeof(buf) - 1);
}
END_TEST

static char *
drain(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);

	evbuffer_remove(b, s, len);
	s[len] = '\0';
	return s;
}

START_TEST(error_response_close)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	ck_assert_int_eq(http_error_response(b, 405, NULL, NULL, "Allow: POST\r\n", false, false), 0);
	s = drain(b);
	ck_assert_ptr_nonnull(strstr(s, "HTTP/1.1 405 Method Not Allowed\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nContent-Type: application/json\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nConnection: close\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\nAllow: POST\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "\r\n\r\n{\"title\":\"Method Not Allowed\""));
	free(s);
	evbuffer_free(b);
}
END_TEST

START_TEST(error_response_keepalive_head)
{
	struct evbuffer *b = evbuffer_new();
	char body[256], want[64], *s;
	size_t blen = http_error_body(body, sizeof(body), 404, NULL, NULL);

	ck_assert_int_eq(http_error_response(b, 404, NULL, NULL, NULL, true, true), 0);
	s = drain(b);
	ck_assert_ptr_null(strstr(s, "Connection: close"));
	snprintf(want, sizeof(want), "Content-Length: %zu\r\n", blen);
	ck_assert_ptr_nonnull(strstr(s, want));
	/* HEAD: the head ends the message. */
	ck_assert_str_eq(s + strlen(s) - 4, "\r\n\r\n");
	free(s);
	evbuffer_free(b);
}
END_TEST

START_TEST(date_format)
{
	const char *d = http_date_now();

	ck_assert_uint_eq(strlen(d), 29);
	ck_assert_str_eq(d + 25, " GMT");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, reason_phrases);
	tcase_add_test(tc, error_body_defaults);
	tcase_add_test(tc, error_body_go_compatible_503);
	tcase_add_test(tc, error_body_escapes);
	tcase_add_test(tc, error_body_truncates_safely);
	tcase_add_test(tc, error_response_close);
	tcase_add_test(tc, error_response_keepalive_head);
	tcase_add_test(tc, date_format);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
