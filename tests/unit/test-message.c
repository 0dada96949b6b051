/*
 * Unit tests for llhttp over evbuffers (src/message.c): chunked bodies framed
 * again (canonical chunks or plain data), trailers dropped, a bare LF in the
 * trailer section refused, limits, and parsing that stops at the end of the
 * message. Every message is cut into pieces of every size and fed as
 * src/proxy.c feeds it (client_process(), request_head(), forward_body(),
 * response_process()).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/buffer.h>
#include <llhttp.h>

#include "roundguard/message.h"
#include "unit.h"

#define REQ_HEAD "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
#define RESP_HEAD "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
#define NEXT_REQ "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"

/* How a message is fed. */
struct feed {
	bool response;
	bool dechunk;		/* body_to gets plain data (else canonical chunks) */
	bool refs;		/* each piece its own evbuffer chain (several iovecs per feed) */
	size_t piece;		/* bytes per piece (recv()) */
	size_t batch;		/* pieces added between two feeds (1: after each) */
	uint64_t body_max, extra_max;
};

/* What came of it. */
struct result {
	llhttp_errno_t e;	/* the error, or HPE_OK */
	bool failed;
	bool head_done, msg_done;
	int error_status;
	const char *error_reason;
	uint32_t trailers;
	char *out;		/* what would go on after the head: body_to, or the plain body */
	size_t out_len;
	char *left;		/* what stays in the input buffer */
	size_t left_len;
};

static char *
take(struct evbuffer *b, size_t *len)
{
	char *s;

	*len = evbuffer_get_length(b);
	s = malloc(*len + 1);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(evbuffer_remove(b, s, *len), (int)*len);
	s[*len] = '\0';
	return s;
}

struct state {
	const struct feed *f;
	llhttp_t parser;
	struct message_parse pc;
	struct evbuffer *in, *out;
	size_t fed;
	bool body_started;
};

/* One read's worth: feed what is buffered, as the proxy would. */
static void
step(struct state *st, struct result *r)
{
	llhttp_errno_t e;

	for (;;) {
		e = message_feed(&st->parser, &st->pc, st->in, &st->fed);
		if (e != HPE_OK && e != HPE_PAUSED) {
			r->failed = true;
			r->e = e;
			return;
		}
		ck_assert_uint_le(st->fed, evbuffer_get_length(st->in));
		if (!st->pc.head_done)
			return;
		if (!st->body_started) {
			/* request_head(): the head is copied out and dropped, the parser resumed. */
			ck_assert_int_eq(e, HPE_PAUSED);
			evbuffer_drain(st->in, st->fed);
			st->fed = 0;
			llhttp_resume(&st->parser);
			st->pc.body_to = (st->parser.flags & F_CHUNKED) ? st->out : NULL;
			st->pc.rechunk = !st->f->dechunk;
			st->body_started = true;
			continue;	/* body bytes may be there already, or no body at all */
		}
		/* forward_body(): a chunked body went to body_to, any other is moved. */
		if (st->pc.body_to != NULL)
			evbuffer_drain(st->in, st->fed);
		else
			evbuffer_remove_buffer(st->in, st->out, st->fed);
		st->fed = 0;
		return;
	}
}

static void
run(const char *msg, size_t len, const struct feed *f, struct result *r)
{
	static struct http_head head;
	llhttp_settings_t settings;
	struct state st;
	size_t n, pieces = 0;

	memset(r, 0, sizeof(*r));
	memset(&st, 0, sizeof(st));
	st.f = f;
	st.in = evbuffer_new();
	st.out = evbuffer_new();
	ck_assert(st.in != NULL && st.out != NULL);
	message_settings(&settings, f->response);
	llhttp_init(&st.parser, f->response ? HTTP_RESPONSE : HTTP_REQUEST, &settings);
	message_reset(&st.parser, &st.pc, &head);
	st.pc.body_max = f->body_max;
	st.pc.extra_max = f->extra_max;

	for (size_t off = 0; off < len; off += n) {
		n = len - off < f->piece ? len - off : f->piece;
		if (f->refs)
			ck_assert_int_eq(evbuffer_add_reference(st.in, msg + off, n, NULL, NULL), 0);
		else
			ck_assert_int_eq(evbuffer_add(st.in, msg + off, n), 0);
		pieces++;
		/* Past the end of the message (or an error) nothing is parsed any more. */
		if (r->failed || st.pc.msg_done)
			continue;
		if (pieces % (f->batch ? f->batch : 1) == 0 || off + n == len)
			step(&st, r);
	}
	r->head_done = st.pc.head_done;
	r->msg_done = st.pc.msg_done;
	r->error_status = st.pc.error_status;
	r->error_reason = st.pc.error_reason;
	r->trailers = st.pc.trailers_dropped;
	r->out = take(st.out, &r->out_len);
	r->left = take(st.in, &r->left_len);
	evbuffer_free(st.in);
	evbuffer_free(st.out);
}

static void
result_free(struct result *r)
{
	free(r->out);
	free(r->left);
}

/* Printable form of bytes for failure messages (static buffer). */
static const char *
show(const char *s, size_t len)
{
	static char buf[4][2048];
	static int k;
	char *b = buf[k++ % 4], *p = b;

	for (size_t i = 0; i < len && p < b + sizeof(buf[0]) - 5; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r') {
			*p++ = '\\';
			*p++ = 'r';
		} else if (c == '\n') {
			*p++ = '\\';
			*p++ = 'n';
		} else if (c < 0x20 || c >= 0x7f) {
			p += sprintf(p, "\\x%02x", c);
		} else {
			*p++ = (char)c;
		}
	}
	*p = '\0';
	return b;
}

/* Every way of feeding: piece sizes 1..len, one chain or a chain per piece, batched or not. */
typedef void check_fn(const struct feed *f, const struct result *r, const void *arg);

static void
every_feed(const char *msg, size_t len, const struct feed *base, check_fn *check,
    const void *arg)
{
	static const size_t batches[] = { 1, 3, 1000 };

	for (size_t piece = 1; piece <= len; piece++) {
		for (int refs = 0; refs < 2; refs++) {
			for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
				struct feed f = *base;
				struct result r;

				f.piece = piece;
				f.refs = refs;
				f.batch = batches[b];
				run(msg, len, &f, &r);
				check(&f, &r, arg);
				result_free(&r);
			}
		}
	}
}

static char *
cat(const char *a, const char *b, size_t blen, const char *c, size_t *len)
{
	size_t alen = strlen(a), clen = strlen(c);
	char *s = malloc(alen + blen + clen + 1);

	ck_assert_ptr_nonnull(s);
	memcpy(s, a, alen);
	memcpy(s + alen, b, blen);
	memcpy(s + alen + blen, c, clen);
	s[alen + blen + clen] = '\0';
	*len = alen + blen + clen;
	return s;
}

/* --- Accepted bodies ---------------------------------------------------------------------- */

struct body_case {
	const char *name;
	const char *body;
	const char *canonical;	/* rechunk */
	const char *plain;	/* de-chunked */
	uint32_t trailers;
	/* Lengths, where a NUL is part of the bytes (0: strlen). */
	size_t body_len, canonical_len, plain_len;
};

static char chunk_1f[] = "1\r\nx\r\n1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n";
static char chunk_100[6 + 256 + 7 + 1];
static char chunk_100_canonical[5 + 256 + 7 + 1];
static char chunk_100_plain[257];

static struct body_case body_cases[] = {
	{ "one chunk", "5\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "hello", 0, 0, 0, 0 },
	{ "empty body", "0\r\n\r\n", "0\r\n\r\n", "", 0, 0, 0, 0 },
	{ "leading zeros, upper case, extensions",
	  "000A;q=\"a b\";flag;name=value\r\n0123456789\r\n0000;last=1\r\n\r\n",
	  "a\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0, 0, 0, 0 },
	{ "several chunks", "1\r\nx\r\n2\r\nyz\r\n3;e\r\n\r\n\r\r\n0\r\n\r\n",
	  "1\r\nx\r\n2\r\nyz\r\n3\r\n\r\n\r\r\n0\r\n\r\n", "xyz\r\n\r", 0, 0, 0, 0 },
	{ "two hex digits", chunk_1f,
	  "1\r\nx\r\n1f\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n",
	  "x0123456789abcdef0123456789abcde", 0, 0, 0, 0 },
	{ "three hex digits", chunk_100, chunk_100_canonical, chunk_100_plain, 0, 0, 0, 0 },
	{ "trailers dropped",
	  "3\r\nabc\r\n0\r\nX-A: 1\r\nx-b:\r\nX-C: 3 \r\nContent-Length: 99\r\n\r\n",
	  "3\r\nabc\r\n0\r\n\r\n", "abc", 4, 0, 0, 0 },
	{ "trailer after extension", "0;e=1\r\nX-T: 1\r\n\r\n", "0\r\n\r\n", "", 1, 0, 0, 0 },
	{ "trailer with no name dropped", "0\r\n: 1\r\n\r\n", "0\r\n\r\n", "", 1, 0, 0, 0 },
	{ "folded trailer dropped", "0\r\nX-T: 1\r\n  more\r\n\r\n", "0\r\n\r\n", "", 1, 0, 0, 0 },
	{ "binary data", "4\r\n\0\r\n\n\r\n0\r\n\r\n", "4\r\n\0\r\n\n\r\n0\r\n\r\n",
	  "\0\r\n\n", 0, 14, 14, 4 },
};

struct expect {
	const char *out;
	size_t out_len;
	const char *left;
	size_t left_len;
	uint32_t trailers;
	const char *name;
};

static void
check_accepted(const struct feed *f, const struct result *r, const void *arg)
{
	const struct expect *x = arg;

	ck_assert_msg(!r->failed && r->msg_done, "%s (piece %zu refs %d batch %zu): %s%s, status %d",
	    x->name, f->piece, f->refs, f->batch, r->failed ? "failed " : "not done ",
	    llhttp_errno_name(r->e), r->error_status);
	ck_assert_int_eq(r->error_status, 0);
	ck_assert_msg(r->out_len == x->out_len && memcmp(r->out, x->out, x->out_len) == 0,
	    "%s (piece %zu refs %d batch %zu): \"%s\", not \"%s\"", x->name, f->piece, f->refs,
	    f->batch, show(r->out, r->out_len), show(x->out, x->out_len));
	ck_assert_msg(r->left_len == x->left_len && memcmp(r->left, x->left, x->left_len) == 0,
	    "%s (piece %zu refs %d batch %zu): left \"%s\", not \"%s\"", x->name, f->piece, f->refs,
	    f->batch, show(r->left, r->left_len), show(x->left, x->left_len));
	ck_assert_msg(r->trailers == x->trailers, "%s (piece %zu): %u trailers dropped, not %u",
	    x->name, f->piece, r->trailers, x->trailers);
}

static void
setup_cases(void)
{
	char *p;

	/* 0x100 bytes in one chunk, the size written "0100" by the peer. */
	memcpy(chunk_100, "0100\r\n", 6);
	for (int i = 0; i < 256; i++)
		chunk_100[6 + i] = chunk_100_plain[i] = (char)('a' + i % 26);
	memcpy(chunk_100 + 262, "\r\n0\r\n\r\n", 8);
	p = chunk_100_canonical;
	memcpy(p, "100\r\n", 5);
	memcpy(p + 5, chunk_100_plain, 256);
	memcpy(p + 261, "\r\n0\r\n\r\n", 8);
	for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
		struct body_case *c = &body_cases[i];

		if (c->body_len == 0)
			c->body_len = strlen(c->body);
		if (c->canonical_len == 0)
			c->canonical_len = strlen(c->canonical);
		if (c->plain_len == 0)
			c->plain_len = strlen(c->plain);
	}
}

START_TEST(rechunk_canonical)
{
	const struct body_case *c = &body_cases[_i];
	struct feed f = { .response = false };
	struct expect x = { .name = c->name, .trailers = c->trailers };
	size_t len;
	char *msg;

	setup_cases();
	x.out = c->canonical;
	x.out_len = c->canonical_len;
	x.left = "";
	/* Request bodies (forward_body()), then response bodies (response_process()). */
	msg = cat(REQ_HEAD, c->body, c->body_len, "", &len);
	every_feed(msg, len, &f, check_accepted, &x);
	free(msg);
	f.response = true;
	msg = cat(RESP_HEAD, c->body, c->body_len, "", &len);
	every_feed(msg, len, &f, check_accepted, &x);
	free(msg);
}
END_TEST

START_TEST(dechunk_plain)
{
	const struct body_case *c = &body_cases[_i];
	struct feed f = { .response = true, .dechunk = true };
	struct expect x = { .name = c->name, .trailers = c->trailers };
	size_t len;
	char *msg;

	setup_cases();
	x.out = c->plain;
	x.out_len = c->plain_len;
	x.left = "";
	msg = cat(RESP_HEAD, c->body, c->body_len, "", &len);
	every_feed(msg, len, &f, check_accepted, &x);
	free(msg);
}
END_TEST

START_TEST(pipelined_left_unparsed)
{
	const struct body_case *c = &body_cases[_i];
	static const char *const next[] = {
		NEXT_REQ, ("\r\n" NEXT_REQ), "garbage that is no request", "0\r\n\n", "\n",
	};
	struct feed f = { .response = false };
	struct expect x = { .name = c->name, .trailers = c->trailers };
	size_t len;
	char *msg;

	setup_cases();
	/* Whatever follows the body stays in the buffer, byte for byte, however it arrived. */
	for (size_t i = 0; i < sizeof(next) / sizeof(next[0]); i++) {
		x.out = c->canonical;
		x.out_len = c->canonical_len;
		x.left = next[i];
		x.left_len = strlen(next[i]);
		msg = cat(REQ_HEAD, c->body, c->body_len, next[i], &len);
		every_feed(msg, len, &f, check_accepted, &x);
		free(msg);
	}
}
END_TEST

/* --- Refused bodies ----------------------------------------------------------------------- */

static void
check_bare_lf(const struct feed *f, const struct result *r, const void *arg)
{
	const char *name = arg;

	ck_assert_msg(r->failed && r->e == HPE_USER, "%s (piece %zu refs %d batch %zu): %s, done %d",
	    name, f->piece, f->refs, f->batch, llhttp_errno_name(r->e), r->msg_done);
	ck_assert_int_eq(r->error_status, 400);
	ck_assert_ptr_nonnull(r->error_reason);
	ck_assert_ptr_nonnull(strstr(r->error_reason, "bare LF"));
}

static const char *const bare_lf_trailers[] = {
	"0\r\n\n",
	"0\r\nX-T: 1\r\n\n",
	"5\r\nhello\r\n0\r\nA: 1\r\nB: 2\r\n\n",
	"0;ext=1\r\n\n",
	("0\r\n\n" NEXT_REQ),
	"0\r\nX-T: 1\r\n\n\r\n",
};

START_TEST(trailer_bare_lf_refused)
{
	const char *body = bare_lf_trailers[_i];
	struct feed f = { .response = false };
	size_t len;
	char *msg;

	/* Both framings, both directions: the CR and the LF in any two pieces. */
	msg = cat(REQ_HEAD, body, strlen(body), "", &len);
	every_feed(msg, len, &f, check_bare_lf, body);
	f.dechunk = true;
	every_feed(msg, len, &f, check_bare_lf, body);
	free(msg);
	f.response = true;
	msg = cat(RESP_HEAD, body, strlen(body), "", &len);
	every_feed(msg, len, &f, check_bare_lf, body);
	free(msg);
}
END_TEST

static void
check_parse_error(const struct feed *f, const struct result *r, const void *arg)
{
	const char *name = arg;

	ck_assert_msg(r->failed && r->e != HPE_OK && r->e != HPE_PAUSED &&
	    r->e != HPE_PAUSED_UPGRADE, "%s (piece %zu refs %d batch %zu): accepted (done %d)",
	    name, f->piece, f->refs, f->batch, r->msg_done);
	ck_assert(!r->msg_done || r->e == HPE_USER);
}

/* What strict llhttp refuses itself: the framing never gets as far as the trailers. */
static const char *const bad_chunked[] = {
	"5\nhello\r\n0\r\n\r\n",
	"5\r\nhello\n0\r\n\r\n",
	"5\r\nhello0\r\n\r\n",
	"5 \r\nhello\r\n0\r\n\r\n",
	" 5\r\nhello\r\n0\r\n\r\n",
	"-5\r\nhello\r\n0\r\n\r\n",
	"0x5\r\nhello\r\n0\r\n\r\n",
	"g\r\n",
	"\r\n0\r\n\r\n",
	"5;a=b\n\r\nhello\r\n0\r\n\r\n",
	"10000000000000000\r\n",
	"0\r\nX-T: 1\n\r\n",
	"0\r\n\r\r\n",
	"0\r\nX T: 1\r\n\r\n",
};

START_TEST(chunked_parse_errors)
{
	const char *body = bad_chunked[_i];
	struct feed f = { .response = false };
	size_t len;
	char *msg = cat(REQ_HEAD, body, strlen(body), "", &len);

	every_feed(msg, len, &f, check_parse_error, body);
	free(msg);
}
END_TEST

/* --- Limits ------------------------------------------------------------------------------- */

static void
check_status(const struct feed *f, const struct result *r, const void *arg)
{
	const int *status = arg;

	if (*status == 0) {
		ck_assert_msg(!r->failed && r->msg_done, "piece %zu: %s status %d", f->piece,
		    llhttp_errno_name(r->e), r->error_status);
		return;
	}
	ck_assert_msg(r->failed && r->error_status == *status, "piece %zu: %s status %d, not %d",
	    f->piece, llhttp_errno_name(r->e), r->error_status, *status);
}

START_TEST(body_limit)
{
	static const char body[] = "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
	struct feed f = { .response = false };
	size_t len;
	char *msg = cat(REQ_HEAD, body, strlen(body), "", &len);
	int ok = 0, too_large = 413;

	f.body_max = 6;
	every_feed(msg, len, &f, check_status, &ok);
	f.body_max = 5;
	every_feed(msg, len, &f, check_status, &too_large);
	f.body_max = 1;
	every_feed(msg, len, &f, check_status, &too_large);
	free(msg);
}
END_TEST

/* A chunk whose announced size alone passes the limit is refused at its size line, before any byte of it. */
START_TEST(body_limit_announced_chunk)
{
	static const char body[] = "3\r\nabc\r\n20000\r\nddddd";
	struct feed f = { .response = false };
	size_t len;
	char *msg = cat(REQ_HEAD, body, strlen(body), "", &len);
	int too_large = 413;

	f.body_max = 0x10000;
	every_feed(msg, len, &f, check_status, &too_large);
	free(msg);
}
END_TEST

START_TEST(extra_limit)
{
	/* Extension names and values and trailer names and values: 2 + 2 + 3 + 1 bytes. */
	static const char body[] = "1;ab=cd\r\nx\r\n0\r\nX-T: 1\r\n\r\n";
	struct feed f = { .response = false };
	size_t len;
	char *msg = cat(REQ_HEAD, body, strlen(body), "", &len);
	int ok = 0, too_large = 431;

	f.extra_max = 8;
	every_feed(msg, len, &f, check_status, &ok);
	f.extra_max = 7;
	every_feed(msg, len, &f, check_status, &too_large);
	f.extra_max = 3;
	every_feed(msg, len, &f, check_status, &too_large);
	f.extra_max = 0;
	every_feed(msg, len, &f, check_status, &ok);
	free(msg);
}
END_TEST

/* --- message_feed() itself -------------------------------------------------------------- */

struct direct {
	llhttp_settings_t settings;
	llhttp_t parser;
	struct message_parse pc;
	struct http_head head;
	struct evbuffer *in, *out;
	size_t fed;
};

static struct direct *
direct_new(bool response)
{
	struct direct *d = calloc(1, sizeof(*d));

	ck_assert_ptr_nonnull(d);
	d->in = evbuffer_new();
	d->out = evbuffer_new();
	message_settings(&d->settings, response);
	llhttp_init(&d->parser, response ? HTTP_RESPONSE : HTTP_REQUEST, &d->settings);
	message_reset(&d->parser, &d->pc, &d->head);
	return d;
}

static void
direct_free(struct direct *d)
{
	evbuffer_free(d->in);
	evbuffer_free(d->out);
	free(d);
}

static llhttp_errno_t
direct_feed(struct direct *d, const char *s)
{
	evbuffer_add(d->in, s, strlen(s));
	return message_feed(&d->parser, &d->pc, d->in, &d->fed);
}

/* The head is complete: as request_head() does, drop it and go on with the body. */
static void
direct_body(struct direct *d, bool rechunk)
{
	ck_assert(d->pc.head_done);
	evbuffer_drain(d->in, d->fed);
	d->fed = 0;
	llhttp_resume(&d->parser);
	d->pc.body_to = d->out;
	d->pc.rechunk = rechunk;
}

static bool
out_is(struct direct *d, const char *want)
{
	size_t len = evbuffer_get_length(d->out);

	return len == strlen(want) && memcmp(evbuffer_pullup(d->out, -1), want, len) == 0;
}

START_TEST(pause_at_trailer_is_internal)
{
	struct direct *d = direct_new(false);

	ck_assert_int_eq(direct_feed(d, REQ_HEAD), HPE_PAUSED);
	direct_body(d, true);
	/* The last chunk's size line: paused and resumed inside message_feed(). */
	ck_assert_int_eq(direct_feed(d, "5\r\nhello\r\n0\r\n"), HPE_OK);
	ck_assert_uint_eq(d->fed, evbuffer_get_length(d->in));
	ck_assert(d->pc.in_trailer);
	ck_assert(!d->pc.trailer_start);
	ck_assert(!d->pc.msg_done);
	ck_assert_int_eq(llhttp_get_errno(&d->parser), HPE_OK);
	ck_assert(out_is(d, "5\r\nhello\r\n"));
	/* A trailer line ending in CR in one read, its LF in the next: fine. */
	ck_assert_int_eq(direct_feed(d, "X-T: 1\r"), HPE_OK);
	ck_assert_int_eq(direct_feed(d, "\n\r"), HPE_OK);
	ck_assert(!d->pc.msg_done);
	ck_assert_int_eq(direct_feed(d, "\n" NEXT_REQ), HPE_PAUSED);
	ck_assert(d->pc.msg_done);
	ck_assert_uint_eq(d->pc.trailers_dropped, 1);
	ck_assert(out_is(d, "5\r\nhello\r\n0\r\n\r\n"));
	/* fed stops at the end of the message: the next request is left alone. */
	ck_assert_uint_eq(evbuffer_get_length(d->in) - d->fed, strlen(NEXT_REQ));
	/* And so do further calls. */
	ck_assert_int_eq(message_feed(&d->parser, &d->pc, d->in, &d->fed), HPE_PAUSED);
	ck_assert_uint_eq(evbuffer_get_length(d->in) - d->fed, strlen(NEXT_REQ));
	direct_free(d);
}
END_TEST

START_TEST(trailer_cr_then_bare_lf_across_reads)
{
	struct direct *d = direct_new(true);

	ck_assert_int_eq(direct_feed(d, RESP_HEAD), HPE_PAUSED);
	direct_body(d, false);
	ck_assert_int_eq(direct_feed(d, "0\r\n"), HPE_OK);
	ck_assert_int_eq(direct_feed(d, "X: 1\r"), HPE_OK);
	ck_assert_int_eq(direct_feed(d, "\n"), HPE_OK);
	/* The blank line's LF without its CR. */
	ck_assert_int_eq(direct_feed(d, "\n"), HPE_USER);
	ck_assert_int_eq(d->pc.error_status, 400);
	direct_free(d);
}
END_TEST

START_TEST(next_message_after_reset)
{
	struct direct *d = direct_new(false);
	size_t rest;

	/* Two chunked requests in one read; the second ends in a bare LF, the first not. */
	ck_assert_int_eq(direct_feed(d, REQ_HEAD "0\r\nX: 1\r\n\r\n" REQ_HEAD "0\r\n\n"),
	    HPE_PAUSED);
	direct_body(d, true);
	ck_assert_int_eq(message_feed(&d->parser, &d->pc, d->in, &d->fed), HPE_PAUSED);
	ck_assert(d->pc.msg_done);
	ck_assert(out_is(d, "0\r\n\r\n"));
	rest = evbuffer_get_length(d->in) - d->fed;
	ck_assert_uint_eq(rest, strlen(REQ_HEAD "0\r\n\n"));
	/* The proxy's next request: message_reset() on the same parser. */
	evbuffer_drain(d->in, d->fed);
	d->fed = 0;
	evbuffer_drain(d->out, evbuffer_get_length(d->out));
	message_reset(&d->parser, &d->pc, &d->head);
	ck_assert(!d->pc.in_trailer && !d->pc.trailer_cr && d->pc.trailers_dropped == 0);
	ck_assert_int_eq(message_feed(&d->parser, &d->pc, d->in, &d->fed), HPE_PAUSED);
	ck_assert(d->pc.head_done && !d->pc.msg_done);
	ck_assert_uint_eq(d->head.nfields, 2);
	direct_body(d, true);
	ck_assert_int_eq(message_feed(&d->parser, &d->pc, d->in, &d->fed), HPE_USER);
	ck_assert_int_eq(d->pc.error_status, 400);
	direct_free(d);
}
END_TEST

START_TEST(content_length_stops_at_end)
{
	static const char msg[] = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
	    NEXT_REQ;
	struct expect x = { .name = "content-length", .out = "hello", .out_len = 5,
	    .left = NEXT_REQ, .left_len = strlen(NEXT_REQ) };
	struct feed f = { .response = false };

	/* Not chunked: nothing goes through body_to, the body is moved as it came. */
	every_feed(msg, sizeof(msg) - 1, &f, check_accepted, &x);
}
END_TEST

START_TEST(bodiless_completes)
{
	static const char msg[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n" NEXT_REQ;
	struct expect x = { .name = "bodiless", .out = "", .left = NEXT_REQ,
	    .left_len = strlen(NEXT_REQ) };
	struct feed f = { .response = false };
	struct direct *d;

	every_feed(msg, sizeof(msg) - 1, &f, check_accepted, &x);

	/* Nothing after the head at all: a feed of no bytes completes the message. */
	d = direct_new(false);
	ck_assert_int_eq(direct_feed(d, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"), HPE_PAUSED);
	ck_assert(d->pc.head_done && !d->pc.msg_done);
	evbuffer_drain(d->in, d->fed);
	d->fed = 0;
	llhttp_resume(&d->parser);
	ck_assert_int_eq(message_feed(&d->parser, &d->pc, d->in, &d->fed), HPE_PAUSED);
	ck_assert(d->pc.msg_done);
	ck_assert_uint_eq(d->fed, 0);
	direct_free(d);
}
END_TEST

START_TEST(head_spans_across_pieces)
{
	static const char msg[] = REQ_HEAD "0\r\n\r\n";
	struct direct *d = direct_new(false);
	const char *base;

	/* One byte per read: the spans still cover the whole method, target and fields. */
	for (size_t i = 0; i < strlen(REQ_HEAD); i++) {
		char b[2] = { msg[i], '\0' };

		direct_feed(d, b);
	}
	ck_assert(d->pc.head_done);
	base = (const char *)evbuffer_pullup(d->in, -1);
	ck_assert_uint_eq(d->head.method.len, 4);
	ck_assert(memcmp(base + d->head.method.off, "POST", 4) == 0);
	ck_assert_uint_eq(d->head.target.len, 2);
	ck_assert(memcmp(base + d->head.target.off, "/p", 2) == 0);
	ck_assert_uint_eq(d->head.nfields, 2);
	ck_assert_uint_eq(d->head.fields[1].name.len, 17);
	ck_assert(memcmp(base + d->head.fields[1].name.off, "Transfer-Encoding", 17) == 0);
	ck_assert(memcmp(base + d->head.fields[1].value.off, "chunked", 7) == 0);
	direct_free(d);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("message");
	TCase *tc = tcase_create("core");
	int nbody = (int)(sizeof(body_cases) / sizeof(body_cases[0]));

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, rechunk_canonical, 0, nbody);
	tcase_add_loop_test(tc, dechunk_plain, 0, nbody);
	tcase_add_loop_test(tc, pipelined_left_unparsed, 0, nbody);
	tcase_add_loop_test(tc, trailer_bare_lf_refused, 0,
	    (int)(sizeof(bare_lf_trailers) / sizeof(bare_lf_trailers[0])));
	tcase_add_loop_test(tc, chunked_parse_errors, 0,
	    (int)(sizeof(bad_chunked) / sizeof(bad_chunked[0])));
	tcase_add_test(tc, body_limit);
	tcase_add_test(tc, body_limit_announced_chunk);
	tcase_add_test(tc, extra_limit);
	tcase_add_test(tc, pause_at_trailer_is_internal);
	tcase_add_test(tc, trailer_cr_then_bare_lf_across_reads);
	tcase_add_test(tc, next_message_after_reset);
	tcase_add_test(tc, content_length_stops_at_end);
	tcase_add_test(tc, bodiless_completes);
	tcase_add_test(tc, head_spans_across_pieces);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
