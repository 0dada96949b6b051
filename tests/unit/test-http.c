/* Unit tests for the shared HTTP helpers: reason phrases, JSON error responses, header rewriting. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/buffer.h>
#include <json-c/json.h>

#include "roundguard/http.h"
#include "unit.h"

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

/* --- Header rewriting ------------------------------------------------------------------- */

#define CLIENT_IP "192.0.2.7"

/* The request head from the brief: every kind of header the rewriter cares about. */
static const char full_request[] =
    "GET /x?q=1 HTTP/1.1\r\n"
    "Host: a.example\r\n"
    "Connection: keep-alive, X-Secret\r\n"
    "X-Secret: 1\r\n"
    "Keep-Alive: timeout=5\r\n"
    "TE: trailers\r\n"
    "Upgrade: h2c\r\n"
    "Proxy-Authorization: Basic x\r\n"
    "X-Forwarded-For: 10.0.0.1\r\n"
    "X-Forwarded-Proto: https\r\n"
    "Accept: */*\r\n"
    "\r\n";

static void
set_span(struct http_span *s, const char *buf, const char *start, const char *end)
{
	s->off = (uint32_t)(start - buf);
	s->len = (uint32_t)(end - start);
}

/*
 * Fill h from a hand-written head in buf: the start line (request or response), then
 * "Name: value\r\n" lines up to the blank line. Values lose surrounding blanks. A tiny
 * stand-in for llhttp: only as much as these tests need.
 */
static void
scan_head(const char *buf, struct http_head *h, bool response)
{
	const char *p = buf, *eol, *sp1, *sp2;

	memset(h, 0, sizeof(*h));
	eol = strstr(p, "\r\n");
	ck_assert_ptr_nonnull(eol);
	sp1 = memchr(p, ' ', (size_t)(eol - p));
	ck_assert_ptr_nonnull(sp1);
	if (response) {
		/* "HTTP/1.x NNN reason" (reason may be empty, the space too). */
		ck_assert(strncmp(p, "HTTP/1.", 7) == 0);
		h->major = 1;
		h->minor = (uint8_t)(p[7] - '0');
		h->status = atoi(sp1 + 1);
		sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
		if (sp2 != NULL)
			set_span(&h->reason, buf, sp2 + 1, eol);
		else
			set_span(&h->reason, buf, eol, eol);
	} else {
		/* "METHOD target HTTP/1.x" */
		sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
		ck_assert_ptr_nonnull(sp2);
		set_span(&h->method, buf, p, sp1);
		set_span(&h->target, buf, sp1 + 1, sp2);
		ck_assert(strncmp(sp2 + 1, "HTTP/1.", 7) == 0);
		h->major = 1;
		h->minor = (uint8_t)(sp2[8] - '0');
	}
	for (p = eol + 2; strncmp(p, "\r\n", 2) != 0; p = eol + 2) {
		const char *colon, *vs, *ve;
		struct http_field *f;

		eol = strstr(p, "\r\n");
		ck_assert_ptr_nonnull(eol);
		colon = memchr(p, ':', (size_t)(eol - p));
		ck_assert_ptr_nonnull(colon);
		ck_assert_uint_lt(h->nfields, HTTP_FIELDS_MAX);
		f = &h->fields[h->nfields++];
		set_span(&f->name, buf, p, colon);
		for (vs = colon + 1; vs < eol && (*vs == ' ' || *vs == '\t'); vs++)
			;
		for (ve = eol; ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
			;
		set_span(&f->value, buf, vs, ve);
	}
	http_head_classify(buf, h);
}

/* Rewritten request header block for the request head in buf. */
static char *
request_fields(const char *buf, const char *client_ip, const char *fallback_host)
{
	static struct http_head h;
	struct evbuffer *b = evbuffer_new();
	char *s;

	scan_head(buf, &h, false);
	ck_assert_int_eq(http_write_request_fields(b, buf, &h, client_ip, fallback_host, false), 0);
	s = drain(b);
	evbuffer_free(b);
	return s;
}

/* Rewritten response head for the response head in buf. */
static char *
response_head(const char *buf, const char *backend, enum http_conn_mode mode, bool dechunk)
{
	static struct http_head h;
	struct evbuffer *b = evbuffer_new();
	char *s;

	scan_head(buf, &h, true);
	ck_assert_int_eq(http_write_response_head(b, buf, &h, backend, mode, dechunk), 0);
	s = drain(b);
	evbuffer_free(b);
	return s;
}

/* Whether name (any case) is hop-by-hop in the request head in buf. */
static bool
hop(const char *buf, const char *name)
{
	static struct http_head h;

	scan_head(buf, &h, false);
	return http_is_hop_by_hop(buf, &h, name, strlen(name));
}

START_TEST(scan_head_helper)
{
	static struct http_head h;
	const char *b = full_request;

	/* The helper itself: spans point at the right bytes. */
	scan_head(b, &h, false);
	ck_assert_uint_eq(h.nfields, 10);
	ck_assert_int_eq((int)h.method.len, 3);
	ck_assert(strncmp(b + h.method.off, "GET", 3) == 0);
	ck_assert_int_eq((int)h.target.len, 6);
	ck_assert(strncmp(b + h.target.off, "/x?q=1", 6) == 0);
	ck_assert_int_eq(h.minor, 1);
	ck_assert(strncmp(b + h.fields[2].name.off, "X-Secret", h.fields[2].name.len) == 0);
	ck_assert(strncmp(b + h.fields[1].value.off, "keep-alive, X-Secret",
	    h.fields[1].value.len) == 0);
	ck_assert_uint_eq(h.fields[9].value.len, 3);
}
END_TEST

START_TEST(span_extend_pieces)
{
	struct http_span s = { 0, 0 };

	/* First piece sets the offset. */
	http_span_extend(&s, 10, 3);
	ck_assert_uint_eq(s.off, 10);
	ck_assert_uint_eq(s.len, 3);
	/* Following pieces, adjacent, grow it. */
	http_span_extend(&s, 13, 4);
	ck_assert_uint_eq(s.off, 10);
	ck_assert_uint_eq(s.len, 7);
	http_span_extend(&s, 17, 1);
	ck_assert_uint_eq(s.off, 10);
	ck_assert_uint_eq(s.len, 8);
	/* An empty piece changes nothing. */
	http_span_extend(&s, 18, 0);
	ck_assert_uint_eq(s.off, 10);
	ck_assert_uint_eq(s.len, 8);
}
END_TEST

START_TEST(span_extend_from_zero)
{
	struct http_span s = { 0, 0 };

	/* A span at offset 0 of the buffer. */
	http_span_extend(&s, 0, 5);
	ck_assert_uint_eq(s.off, 0);
	ck_assert_uint_eq(s.len, 5);
	http_span_extend(&s, 5, 2);
	ck_assert_uint_eq(s.off, 0);
	ck_assert_uint_eq(s.len, 7);

	/* A stale offset in an empty span is replaced by the first piece's. */
	s.off = 99;
	s.len = 0;
	http_span_extend(&s, 40, 2);
	ck_assert_uint_eq(s.off, 40);
	ck_assert_uint_eq(s.len, 2);
}
END_TEST

START_TEST(name_is_cases)
{
	ck_assert(http_name_is("Host", 4, "host"));
	ck_assert(http_name_is("HOST", 4, "host"));
	ck_assert(http_name_is("hOsT", 4, "host"));
	ck_assert(http_name_is("X-Forwarded-For", 15, "x-forwarded-for"));
	/* len, not the NUL, bounds the name. */
	ck_assert(http_name_is("Hostname", 4, "host"));
	ck_assert(!http_name_is("Hos", 3, "host"));
	ck_assert(!http_name_is("Hosts", 5, "host"));
	ck_assert(!http_name_is("Hast", 4, "host"));
	ck_assert(!http_name_is("X-A", 3, "x-b"));
	ck_assert(http_name_is("", 0, ""));
	ck_assert(!http_name_is("", 0, "host"));
	ck_assert(!http_name_is("a", 1, ""));
}
END_TEST

START_TEST(hop_by_hop_static)
{
	static const char *const names[] = {
		"Connection", "connection", "CONNECTION", "Keep-Alive", "keep-alive",
		"Proxy-Connection", "proxy-connection", "TE", "te", "Te", "Trailer", "trailer",
		"Upgrade", "UPGRADE", "Proxy-Authorization", "proxy-authorization",
		"Proxy-Authenticate", "PROXY-AUTHENTICATE",
	};
	static const char *const end_to_end[] = {
		"Host", "Accept", "Transfer-Encoding", "Content-Length", "Trailers", "T",
		"TEE", "Upgrade-Insecure-Requests", "Proxy-Authorizatio", "Keep-Alives",
		"X-Secret", "Authorization", "",
	};
	const char *b = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		ck_assert_msg(hop(b, names[i]), "%s should be hop-by-hop", names[i]);
	for (size_t i = 0; i < sizeof(end_to_end) / sizeof(end_to_end[0]); i++)
		ck_assert_msg(!hop(b, end_to_end[i]), "%s should be end-to-end", end_to_end[i]);
}
END_TEST

START_TEST(hop_by_hop_connection_listed)
{
	const char *b = "GET / HTTP/1.1\r\nConnection: close ,  X-A,x-b\r\nX-A: 1\r\n\r\n";
	const char *tabs = "GET / HTTP/1.1\r\nconnection:\tX-T\t,,, ,X-U\r\n\r\n";
	const char *two = "GET / HTTP/1.1\r\nConnection: X-One\r\nAccept: */*\r\n"
	    "CONNECTION: x-two\r\n\r\n";

	ck_assert(hop(b, "X-A"));
	ck_assert(hop(b, "x-a"));
	ck_assert(hop(b, "X-B"));
	ck_assert(hop(b, "x-b"));
	ck_assert(hop(b, "close"));
	ck_assert(!hop(b, "X-C"));
	ck_assert(!hop(b, "X-"));
	ck_assert(!hop(b, "X-AB"));
	ck_assert(!hop(b, "Host"));
	ck_assert(!hop(b, "clos"));

	ck_assert(hop(tabs, "x-t"));
	ck_assert(hop(tabs, "X-U"));
	ck_assert(!hop(tabs, "X-V"));

	ck_assert(hop(two, "X-One"));
	ck_assert(hop(two, "X-Two"));
	ck_assert(!hop(two, "Accept"));

	/* Without a Connection header nothing extra is hop-by-hop. */
	ck_assert(!hop("GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", "X-A"));
	/* A listed name must match a whole token. */
	ck_assert(!hop("GET / HTTP/1.1\r\nConnection: X-Secret-Long\r\n\r\n", "X-Secret"));
	ck_assert(!hop("GET / HTTP/1.1\r\nConnection: X-Sec\r\n\r\n", "X-Secret"));
}
END_TEST

static char *
request_line(const char *buf, const char *prefix)
{
	static struct http_head h;
	struct evbuffer *b = evbuffer_new();
	char *s;

	scan_head(buf, &h, false);
	ck_assert_int_eq(http_write_request_line(b, buf, &h, prefix), 0);
	s = drain(b);
	evbuffer_free(b);
	return s;
}

START_TEST(request_line_prefix)
{
	char *s;

	s = request_line(full_request, "");
	ck_assert_str_eq(s, "GET /x?q=1 HTTP/1.1\r\n");
	free(s);
	s = request_line(full_request, "/api");
	ck_assert_str_eq(s, "GET /api/x?q=1 HTTP/1.1\r\n");
	free(s);
	/* HTTP/1.0 clients are forwarded as HTTP/1.1; the method goes as sent. */
	s = request_line("DELETE /items/7 HTTP/1.0\r\nHost: h\r\n\r\n", "/v2");
	ck_assert_str_eq(s, "DELETE /v2/items/7 HTTP/1.1\r\n");
	free(s);
	s = request_line("OPTIONS * HTTP/1.1\r\n\r\n", "");
	ck_assert_str_eq(s, "OPTIONS * HTTP/1.1\r\n");
	free(s);
}
END_TEST

START_TEST(request_fields_full)
{
	char *s = request_fields(full_request, CLIENT_IP, "fallback.example");

	ck_assert_str_eq(s,
	    "Host: a.example\r\n"
	    "Accept: */*\r\n"
	    "X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: a.example\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(request_fields_all_hop_by_hop_dropped)
{
	const char *b =
	    "POST /p HTTP/1.1\r\n"
	    "connection: close ,  X-A,x-b\r\n"
	    "Host: h.example:8080\r\n"
	    "X-A: 1\r\n"
	    "x-B: 2\r\n"
	    "X-C: 3\r\n"
	    "Keep-Alive: timeout=5\r\n"
	    "Proxy-Connection: keep-alive\r\n"
	    "te: trailers\r\n"
	    "Trailer: X-Checksum\r\n"
	    "UPGRADE: websocket\r\n"
	    "Proxy-Authorization: Basic eA==\r\n"
	    "Proxy-Authenticate: Basic\r\n"
	    "Content-Length: 5\r\n"
	    "\r\n";
	char *s = request_fields(b, CLIENT_IP, NULL);

	ck_assert_str_eq(s,
	    "Host: h.example:8080\r\n"
	    "X-C: 3\r\n"
	    "Content-Length: 5\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: h.example:8080\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(request_fields_order_preserved)
{
	const char *b =
	    "GET / HTTP/1.1\r\n"
	    "User-Agent: t/1\r\n"
	    "X-Forwarded-For: 1.1.1.1\r\n"
	    "Accept: */*\r\n"
	    "Host: h\r\n"
	    "X-Forwarded-Proto: https\r\n"
	    "Cookie: a=1\r\n"
	    "X-Forwarded-Host: evil.example\r\n"
	    "Cookie: b=2\r\n"
	    "Accept-Encoding: gzip\r\n"
	    "\r\n";
	char *s = request_fields(b, CLIENT_IP, "fallback.example");

	ck_assert_str_eq(s,
	    "User-Agent: t/1\r\n"
	    "Accept: */*\r\n"
	    "Host: h\r\n"
	    "Cookie: a=1\r\n"
	    "Cookie: b=2\r\n"
	    "Accept-Encoding: gzip\r\n"
	    "X-Forwarded-For: 1.1.1.1, 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: h\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(request_fields_xff_absent)
{
	char *s = request_fields("GET / HTTP/1.1\r\nHost: h\r\n\r\n", "2001:db8::1", NULL);

	ck_assert_str_eq(s,
	    "Host: h\r\n"
	    "X-Forwarded-For: 2001:db8::1\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: h\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(request_fields_xff_multiple)
{
	const char *b =
	    "GET / HTTP/1.1\r\n"
	    "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n"
	    "Host: h\r\n"
	    "x-forwarded-for: 10.0.0.3\r\n"
	    "Accept: */*\r\n"
	    "X-FORWARDED-FOR: 10.0.0.4\r\n"
	    "\r\n";
	char *s = request_fields(b, CLIENT_IP, NULL);

	ck_assert_str_eq(s,
	    "Host: h\r\n"
	    "Accept: */*\r\n"
	    "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4, 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: h\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(request_fields_host_fallback)
{
	const char *nohost = "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n";
	char *s;

	/* No Host left: the fallback goes on, and X-Forwarded-Host says so. */
	s = request_fields(nohost, CLIENT_IP, "backend.internal:9000");
	ck_assert_str_eq(s,
	    "Accept: */*\r\n"
	    "Host: backend.internal:9000\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: backend.internal:9000\r\n"
	    "\r\n");
	free(s);

	/* No Host and no fallback: none at all. */
	s = request_fields(nohost, CLIENT_IP, NULL);
	ck_assert_str_eq(s,
	    "Accept: */*\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "\r\n");
	free(s);

	/* The client's Host (any case) wins over the fallback. */
	s = request_fields("GET / HTTP/1.1\r\nhost: Client.Example\r\n\r\n", CLIENT_IP,
	    "backend.internal:9000");
	ck_assert_str_eq(s,
	    "host: Client.Example\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: Client.Example\r\n"
	    "\r\n");
	free(s);

	/* No headers at all. */
	s = request_fields("GET / HTTP/1.0\r\n\r\n", CLIENT_IP, NULL);
	ck_assert_str_eq(s,
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(request_fields_appends)
{
	static struct http_head h;
	const char *b = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
	struct evbuffer *out = evbuffer_new();
	char *s;

	/* Output goes after what the buffer already holds (the request line). */
	scan_head(b, &h, false);
	ck_assert_int_eq(http_write_request_line(out, b, &h, "/p"), 0);
	ck_assert_int_eq(http_write_request_fields(out, b, &h, CLIENT_IP, NULL, false), 0);
	s = drain(out);
	ck_assert_str_eq(s,
	    "GET /p/ HTTP/1.1\r\n"
	    "Host: h\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: h\r\n"
	    "\r\n");
	free(s);
	evbuffer_free(out);
}
END_TEST

static const char backend_response[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Connection: keep-alive, X-Internal\r\n"
    "X-Internal: secret\r\n"
    "Keep-Alive: timeout=5, max=100\r\n"
    "Transfer-Encoding: chunked\r\n"
    "Trailer: X-Checksum\r\n"
    "Upgrade: h2c\r\n"
    "Proxy-Authenticate: Basic\r\n"
    "Proxy-Connection: keep-alive\r\n"
    "Set-Cookie: a=1\r\n"
    "Set-Cookie: b=2\r\n"
    "\r\n";

START_TEST(response_head_keep)
{
	char *s = response_head(backend_response, "10.1.0.5:8080", HTTP_CONN_KEEP, false);

	ck_assert_str_eq(s,
	    "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/plain\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "Set-Cookie: a=1\r\n"
	    "Set-Cookie: b=2\r\n"
	    "X-Backend-Server: 10.1.0.5:8080\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(response_head_keep_10)
{
	char *s = response_head(backend_response, "b1", HTTP_CONN_KEEP_10, false);

	ck_assert_str_eq(s,
	    "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/plain\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "Set-Cookie: a=1\r\n"
	    "Set-Cookie: b=2\r\n"
	    "X-Backend-Server: b1\r\n"
	    "Connection: keep-alive\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(response_head_close_dechunk)
{
	char *s = response_head(backend_response, "b1", HTTP_CONN_CLOSE, true);

	ck_assert_str_eq(s,
	    "HTTP/1.1 200 OK\r\n"
	    "Content-Type: text/plain\r\n"
	    "Set-Cookie: a=1\r\n"
	    "Set-Cookie: b=2\r\n"
	    "X-Backend-Server: b1\r\n"
	    "Connection: close\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(response_head_dechunk_any_case)
{
	const char *b = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nETag: \"x\"\r\n\r\n";
	char *s;

	s = response_head(b, "b1", HTTP_CONN_KEEP, true);
	ck_assert_str_eq(s, "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nX-Backend-Server: b1\r\n\r\n");
	free(s);
	s = response_head(b, "b1", HTTP_CONN_KEEP, false);
	ck_assert_str_eq(s, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nETag: \"x\"\r\n"
	    "X-Backend-Server: b1\r\n\r\n");
	free(s);
}
END_TEST

START_TEST(response_head_reasons)
{
	char *s;

	/* The reason goes as the backend gave it, not http_reason()'s. */
	s = response_head("HTTP/1.1 404 Nope, Not Here\r\nContent-Length: 0\r\n\r\n", "b1",
	    HTTP_CONN_KEEP, false);
	ck_assert_str_eq(s, "HTTP/1.1 404 Nope, Not Here\r\nContent-Length: 0\r\n"
	    "X-Backend-Server: b1\r\n\r\n");
	free(s);

	/* Empty reason (with its space, and without). */
	s = response_head("HTTP/1.1 204 \r\n\r\n", "b1", HTTP_CONN_KEEP, false);
	ck_assert_str_eq(s, "HTTP/1.1 204 \r\nX-Backend-Server: b1\r\n\r\n");
	free(s);
	s = response_head("HTTP/1.1 204\r\n\r\n", "b1", HTTP_CONN_CLOSE, false);
	ck_assert_str_eq(s, "HTTP/1.1 204 \r\nX-Backend-Server: b1\r\nConnection: close\r\n\r\n");
	free(s);

	/* An HTTP/1.0 backend is answered for as HTTP/1.1; unknown codes go as they are. */
	s = response_head("HTTP/1.0 299 Custom\r\nConnection: close\r\nX-A: 1\r\n\r\n", "b1",
	    HTTP_CONN_CLOSE, false);
	ck_assert_str_eq(s, "HTTP/1.1 299 Custom\r\nX-A: 1\r\nX-Backend-Server: b1\r\n"
	    "Connection: close\r\n\r\n");
	free(s);
}
END_TEST

START_TEST(response_head_connection_listed)
{
	const char *b =
	    "HTTP/1.1 200 OK\r\n"
	    "X-A: 1\r\n"
	    "CONNECTION: close ,  X-A,x-b\r\n"
	    "X-B: 2\r\n"
	    "X-C: 3\r\n"
	    "Content-Length: 2\r\n"
	    "\r\n";
	char *s = response_head(b, "b1", HTTP_CONN_KEEP, false);

	ck_assert_str_eq(s,
	    "HTTP/1.1 200 OK\r\n"
	    "X-C: 3\r\n"
	    "Content-Length: 2\r\n"
	    "X-Backend-Server: b1\r\n"
	    "\r\n");
	free(s);
}
END_TEST

START_TEST(error_response_503_exact)
{
	static const char body[] = "{\"title\":\"No healthy upstream\",\"description\":"
	    "\"There's no instance of application that can process this request\"}";
	struct evbuffer *b = evbuffer_new();
	char want[512], *s;

	ck_assert_int_eq(http_error_response(b, 503, "No healthy upstream", NULL, NULL, false,
	    false), 0);
	s = drain(b);
	snprintf(want, sizeof(want),
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "Connection: close\r\n"
	    "\r\n"
	    "%s", strlen(body), body);
	ck_assert_str_eq(s, want);
	ck_assert_uint_eq(strlen(body), 112);
	free(s);

	/* Keep-alive with an extra header: no Connection line, extras before the blank line. */
	ck_assert_int_eq(http_error_response(b, 503, "No healthy upstream", NULL,
	    "Retry-After: 1\r\n", true, false), 0);
	s = drain(b);
	snprintf(want, sizeof(want),
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "Retry-After: 1\r\n"
	    "\r\n"
	    "%s", strlen(body), body);
	ck_assert_str_eq(s, want);
	free(s);
	evbuffer_free(b);
}
END_TEST

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

START_TEST(classify_kinds_and_size)
{
	static struct http_head h;
	const char *b = "GET / HTTP/1.1\r\n"
	    "HOST: a\r\n"
	    "x-forwarded-for: 1.2.3.4\r\n"
	    "X-Forwarded-Proto: https\r\n"
	    "X-Forwarded-Host: b\r\n"
	    "Transfer-Encoding: chunked\r\n"
	    "Connection: keep-alive\r\n"
	    "Keep-Alive: timeout=5\r\n"
	    "Hosts: c\r\n"
	    "\r\n";
	static const struct { uint8_t kind; bool hop; } want[] = {
		{ HTTP_FIELD_HOST, false },
		{ HTTP_FIELD_X_FORWARDED_FOR, false },
		{ HTTP_FIELD_X_FORWARDED_PROTO, false },
		{ HTTP_FIELD_X_FORWARDED_HOST, false },
		{ HTTP_FIELD_TRANSFER_ENCODING, false },
		{ HTTP_FIELD_CONNECTION, true },
		{ HTTP_FIELD_OTHER, true },
		{ HTTP_FIELD_OTHER, false },
	};
	uint32_t size = 0;

	scan_head(b, &h, false);
	ck_assert_uint_eq(h.nfields, sizeof(want) / sizeof(want[0]));
	for (uint16_t i = 0; i < h.nfields; i++) {
		ck_assert_msg(h.fields[i].kind == want[i].kind, "field %u kind %u", i,
		    h.fields[i].kind);
		ck_assert_msg(h.fields[i].hop == want[i].hop, "field %u hop", i);
		size += h.fields[i].name.len + h.fields[i].value.len + 4;
	}
	ck_assert_uint_eq(h.fields_size, size);
}
END_TEST

START_TEST(classify_connection_listing)
{
	static struct http_head h;

	/* keep-alive alone names nothing else: a header called "Close" stays. */
	scan_head("HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nClose: 1\r\nX-A: 2\r\n\r\n",
	    &h, true);
	ck_assert(h.fields[0].hop && !h.fields[1].hop && !h.fields[2].hop);
	/* "close" is a token like any other: a field of that name is hop-by-hop. */
	scan_head("HTTP/1.1 200 OK\r\nConnection: close\r\nClose: 1\r\nX-A: 2\r\n\r\n",
	    &h, true);
	ck_assert(h.fields[0].hop && h.fields[1].hop && !h.fields[2].hop);
	/* Listed in a second Connection line, any case, among white space. */
	scan_head("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
	    "connection: ,  x-a ,\r\nX-A: 2\r\nX-AB: 3\r\n\r\n", &h, false);
	ck_assert(!h.fields[0].hop && h.fields[1].hop && h.fields[2].hop);
	ck_assert(h.fields[3].hop && !h.fields[4].hop);
	/* A listed Host is still counted as a Host by the refusal rules. */
	scan_head("GET / HTTP/1.1\r\nHost: h\r\nConnection: Host\r\n\r\n", &h, false);
	ck_assert(h.fields[0].hop);
	ck_assert_uint_eq(h.fields[0].kind, HTTP_FIELD_HOST);
}
END_TEST

START_TEST(classify_trims_trailing_white_space)
{
	static struct http_head h;
	/* As llhttp leaves them: the value spans run to the CR. */
	const char *b = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked \t\r\nX-A:   \r\n\r\n";
	const char *te = strstr(b, "chunked");
	const char *xa = strstr(b, "X-A:") + 4;
	struct evbuffer *out = evbuffer_new();
	bool has_host;
	char *s;

	memset(&h, 0, sizeof(h));
	h.nfields = 2;
	set_span(&h.fields[0].name, b, strstr(b, "Transfer"), te - 2);
	set_span(&h.fields[0].value, b, te, strstr(te, "\r"));
	set_span(&h.fields[1].name, b, xa - 4, xa - 1);
	set_span(&h.fields[1].value, b, xa, strstr(xa, "\r"));
	http_head_classify(b, &h);
	ck_assert_uint_eq(h.fields[0].value.len, 7);
	ck_assert_uint_eq(h.fields[1].value.len, 0);
	ck_assert_uint_eq(h.fields_size, (17 + 7 + 4) + (3 + 0 + 4));
	ck_assert_ptr_null(http_request_refusal(b, strlen(b), &h, true, &has_host));
	ck_assert_int_eq(http_write_request_fields(out, b, &h, CLIENT_IP, "fb", false), 0);
	s = drain(out);
	ck_assert_msg(strstr(s, "Transfer-Encoding: chunked\r\nX-A: \r\n") != NULL, "%s", s);
	free(s);
	evbuffer_free(out);
}
END_TEST

/* --- Names with "_" and Host values ------------------------------------------------------ */

START_TEST(underscore_fields_dropped)
{
	static struct http_head h;
	const char *b =
	    "POST /p HTTP/1.1\r\n"
	    "Host: h\r\n"
	    "Content_Length: 5\r\n"
	    "X-A: a_b\r\n"
	    "x_forwarded_for: 10.0.0.1\r\n"
	    "_: 1\r\n"
	    "Transfer_Encoding: chunked\r\n"
	    "X-B_: 2\r\n"
	    "Content-Length: 5\r\n"
	    "\r\n";
	struct evbuffer *out = evbuffer_new();
	char *s;

	scan_head(b, &h, false);
	ck_assert_uint_eq(http_drop_underscore_fields(b, &h), 5);
	ck_assert(!h.fields[0].hop);
	ck_assert(h.fields[1].hop);
	ck_assert(!h.fields[2].hop);	/* "_" in a value is nothing */
	ck_assert(h.fields[3].hop);
	ck_assert(h.fields[4].hop);
	ck_assert(h.fields[5].hop);
	ck_assert(h.fields[6].hop);
	ck_assert(!h.fields[7].hop);
	/* Marked once: a second pass finds nothing more. */
	ck_assert_uint_eq(http_drop_underscore_fields(b, &h), 0);
	ck_assert_int_eq(http_write_request_fields(out, b, &h, CLIENT_IP, NULL, false), 0);
	s = drain(out);
	ck_assert_str_eq(s,
	    "Host: h\r\n"
	    "X-A: a_b\r\n"
	    "Content-Length: 5\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: h\r\n"
	    "\r\n");
	free(s);
	evbuffer_free(out);
}
END_TEST

START_TEST(underscore_fields_none_or_hop)
{
	static struct http_head h;
	/* Hop-by-hop already (listed in Connection): not counted again. */
	const char *b = "GET / HTTP/1.1\r\nHost: h\r\nConnection: X_Y\r\nX_Y: 1\r\nX-Z: 2\r\n\r\n";

	scan_head(b, &h, false);
	ck_assert(h.fields[2].hop);
	ck_assert_uint_eq(http_drop_underscore_fields(b, &h), 0);
	ck_assert(!h.fields[0].hop && h.fields[1].hop && !h.fields[3].hop);
	/* Nothing to drop, and no fields at all. */
	scan_head("GET / HTTP/1.1\r\nHost: h\r\nX-Y: a_b\r\n\r\n", &h, false);
	ck_assert_uint_eq(http_drop_underscore_fields("GET / HTTP/1.1\r\nHost: h\r\nX-Y: a_b\r\n\r\n",
	    &h), 0);
	scan_head("GET / HTTP/1.0\r\n\r\n", &h, false);
	ck_assert_uint_eq(http_drop_underscore_fields("GET / HTTP/1.0\r\n\r\n", &h), 0);
}
END_TEST

/* http_request_refusal() for a head with one "Host: <value>" line (HTTP/1.1, or 1.0). */
static const char *
host_refusal(const char *value, bool http10)
{
	static struct http_head h;
	static char buf[512];
	bool has_host = false;
	const char *why;

	snprintf(buf, sizeof(buf), "GET / HTTP/1.%d\r\nAccept: */*\r\nHost:%s%s\r\n\r\n",
	    http10 ? 0 : 1, value[0] != '\0' ? " " : "", value);
	scan_head(buf, &h, false);
	why = http_request_refusal(buf, strlen(buf), &h, http10, &has_host);
	ck_assert(has_host);
	return why;
}

START_TEST(host_values_refused)
{
	static const char *const bad[] = {
		"", "a, b", "a,b", "user@h", "u:p@h:80", "h:80/p", "h/", "h?x", "h#f", "h:",
		"h:65536", "h:123456", ":80", "[::1", "[::1]x", "[fe80::1%25eth0]", "[v1.x]",
		"a b", "h\\p", "h\x7f", "h\xc3\xa9", "h\"",
	};
	static const char *const good[] = {
		"h", "a.example", "a.example:8080", "h:65535", "h:0", "[::1]", "[::1]:80",
		"192.0.2.1:80", "a%41", "h \t",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = host_refusal(bad[i], false);

		ck_assert_msg(why != NULL, "Host \"%s\" accepted", bad[i]);
		ck_assert_msg(strstr(why, "Host") != NULL, "Host \"%s\": %s", bad[i], why);
		/* HTTP/1.0 may leave Host out, but one it sends is checked the same. */
		ck_assert_msg(host_refusal(bad[i], true) != NULL, "Host \"%s\" accepted (1.0)", bad[i]);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(host_refusal(good[i], false) == NULL, "Host \"%s\" refused: %s", good[i],
		    host_refusal(good[i], false));
		ck_assert_msg(host_refusal(good[i], true) == NULL, "Host \"%s\" refused (1.0)", good[i]);
	}
	/* The reasons say what is wrong. */
	ck_assert_ptr_nonnull(strstr(host_refusal("", false), "empty"));
	ck_assert_ptr_nonnull(strstr(host_refusal("a, b", false), "list"));
	ck_assert_ptr_nonnull(strstr(host_refusal("user@h", false), "user information"));
	ck_assert_ptr_nonnull(strstr(host_refusal("h:80/p", false), "path"));
	ck_assert_ptr_nonnull(strstr(host_refusal("h:", false), "port"));
}
END_TEST

START_TEST(host_refusal_other_rules_first)
{
	static struct http_head h;
	bool has_host;
	const char *why;
	const char *two = "GET / HTTP/1.1\r\nHost: a\r\nHost: user@b\r\n\r\n";
	const char *listed = "GET / HTTP/1.1\r\nHost: a, b\r\nConnection: Host\r\n\r\n";
	const char *none = "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n";

	/* Two Hosts: that, whatever their values. */
	scan_head(two, &h, false);
	why = http_request_refusal(two, strlen(two), &h, false, &has_host);
	ck_assert_ptr_nonnull(why);
	ck_assert_ptr_nonnull(strstr(why, "more than one Host"));
	/* A Host listed in Connection is still checked. */
	scan_head(listed, &h, false);
	why = http_request_refusal(listed, strlen(listed), &h, false, &has_host);
	ck_assert_ptr_nonnull(why);
	ck_assert_ptr_nonnull(strstr(why, "list"));
	/* HTTP/1.0 without Host: nothing to check. */
	scan_head(none, &h, false);
	ck_assert_ptr_null(http_request_refusal(none, strlen(none), &h, true, &has_host));
	ck_assert(!has_host);
}
END_TEST

START_TEST(request_fields_host_replaced)
{
	static struct http_head h;
	const char *b = "GET http://auth.example:81/x HTTP/1.1\r\nHost: other.example\r\n"
	    "X-Forwarded-Host: evil.example\r\nAccept: */*\r\n\r\n";
	struct evbuffer *out = evbuffer_new();
	char *s;

	/*
	 * An absolute-form target's authority wins over Host (request_head() in
	 * src/proxy.c marks the client's Host hop): Host and X-Forwarded-Host both
	 * come from the fallback.
	 */
	scan_head(b, &h, false);
	h.fields[0].hop = true;
	ck_assert_int_eq(http_write_request_fields(out, b, &h, CLIENT_IP, "auth.example:81", false), 0);
	s = drain(out);
	ck_assert_str_eq(s,
	    "Accept: */*\r\n"
	    "Host: auth.example:81\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "X-Forwarded-Host: auth.example:81\r\n"
	    "\r\n");
	free(s);
	/* With no fallback, neither goes on. */
	ck_assert_int_eq(http_write_request_fields(out, b, &h, CLIENT_IP, NULL, false), 0);
	s = drain(out);
	ck_assert_str_eq(s,
	    "Accept: */*\r\n"
	    "X-Forwarded-For: 192.0.2.7\r\n"
	    "X-Forwarded-Proto: http\r\n"
	    "\r\n");
	free(s);
	evbuffer_free(out);
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

	tcase_add_test(tc, reason_phrases);
	tcase_add_test(tc, error_body_defaults);
	tcase_add_test(tc, error_body_go_compatible_503);
	tcase_add_test(tc, error_body_escapes);
	tcase_add_test(tc, error_body_truncates_safely);
	tcase_add_test(tc, error_response_close);
	tcase_add_test(tc, error_response_keepalive_head);
	tcase_add_test(tc, date_format);
	tcase_add_test(tc, classify_kinds_and_size);
	tcase_add_test(tc, classify_connection_listing);
	tcase_add_test(tc, classify_trims_trailing_white_space);
	tcase_add_test(tc, scan_head_helper);
	tcase_add_test(tc, span_extend_pieces);
	tcase_add_test(tc, span_extend_from_zero);
	tcase_add_test(tc, name_is_cases);
	tcase_add_test(tc, hop_by_hop_static);
	tcase_add_test(tc, hop_by_hop_connection_listed);
	tcase_add_test(tc, request_line_prefix);
	tcase_add_test(tc, request_fields_full);
	tcase_add_test(tc, request_fields_all_hop_by_hop_dropped);
	tcase_add_test(tc, request_fields_order_preserved);
	tcase_add_test(tc, request_fields_xff_absent);
	tcase_add_test(tc, request_fields_xff_multiple);
	tcase_add_test(tc, request_fields_host_fallback);
	tcase_add_test(tc, request_fields_appends);
	tcase_add_test(tc, response_head_keep);
	tcase_add_test(tc, response_head_keep_10);
	tcase_add_test(tc, response_head_close_dechunk);
	tcase_add_test(tc, response_head_dechunk_any_case);
	tcase_add_test(tc, response_head_reasons);
	tcase_add_test(tc, response_head_connection_listed);
	tcase_add_test(tc, error_response_503_exact);
	tcase_add_test(tc, underscore_fields_dropped);
	tcase_add_test(tc, underscore_fields_none_or_hop);
	tcase_add_test(tc, host_values_refused);
	tcase_add_test(tc, host_refusal_other_rules_first);
	tcase_add_test(tc, request_fields_host_replaced);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
