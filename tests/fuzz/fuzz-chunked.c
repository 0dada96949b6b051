/*
 * libFuzzer harness for chunked bodies framed again by the parser callbacks
 * (src/message.c): arbitrary bytes as the body after a fixed chunked head,
 * fed through message_feed() over an evbuffer in pieces, as src/proxy.c
 * feeds them (request_head(), forward_body(), response_process()).
 *
 * Input: two selector bytes, then the body.
 * - byte 0: bit 0 a response (else a request); bit 1 every piece its own
 *   evbuffer chain (several iovecs per feed); bits 2-3 pieces added between
 *   two feeds (1, 2, 5, 16); bit 4 extensions and trailers held to 64 bytes;
 *   bit 5 the body held to 128 bytes;
 * - byte 1: how the bytes are cut into pieces, as recv() would (0: one piece).
 *
 * Each input is parsed three times: re-chunked in those pieces, de-chunked in
 * the same pieces, re-chunked in one piece. Checked: all three accept, refuse
 * or wait for more alike, and when they accept, the same bytes end the
 * message (what follows stays unparsed) and the same trailers are dropped;
 * the re-chunked output is canonical (every chunk "<size>\r\n<data>\r\n" with
 * the size in lower-case hex without leading zeros or extensions, a single
 * "0\r\n\r\n" at the very end) and does not depend on the pieces; parsed again
 * by llhttp as a chunked body it gives the de-chunked output, which is the
 * body a plain reading of the input's framing gives; the input's size lines
 * end in CRLF, and its trailer section has no bare LF. A refusal says why
 * (413 only with a body limit, 431 only with a limit on extensions and
 * trailers).
 *
 * llhttp must be built as the daemon builds it (LLHTTP_STRICT_MODE=1, see
 * meson.build here).
 */
#include <stdbool.h>
#include <string.h>

#include <event2/buffer.h>
#include <llhttp.h>

#include "roundguard/message.h"

#include "fuzz.h"

#define REQ_HEAD "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
#define RESP_HEAD "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
#define EXTRA_MAX 64
#define BODY_MAX 128

enum outcome { INCOMPLETE, ACCEPTED, REFUSED };

static const char *const outcome_name[] = { "incomplete", "accepted", "refused" };

struct run {
	enum outcome outcome;
	llhttp_errno_t e;
	int status;
	const char *reason;
	size_t consumed;	/* body bytes up to the end of the message */
	uint32_t trailers;
	struct evbuffer *out;
};

struct cut {
	bool response;
	bool refs;
	unsigned batch;
	uint8_t pieces;		/* 0: one piece */
	uint64_t extra_max, body_max;
};

static void
run_free(struct run *r)
{
	evbuffer_free(r->out);
}

/* The stream (head and body) in pieces; the head is dropped when complete, as the proxy does. */
static void
parse(const char *stream, size_t len, size_t head_len, const struct cut *c, bool rechunk,
    struct run *r)
{
	static struct http_head head;
	llhttp_settings_t settings;
	struct message_parse pc;
	struct evbuffer *in = evbuffer_new();
	llhttp_t parser;
	size_t off = 0, fed = 0, n, pieces = 0, added = 0, dropped = 0;
	bool body = false;
	uint32_t x = 0x2545f491u ^ c->pieces;

	memset(r, 0, sizeof(*r));
	r->out = evbuffer_new();
	if (in == NULL || r->out == NULL)
		abort();
	message_settings(&settings, c->response);
	llhttp_init(&parser, c->response ? HTTP_RESPONSE : HTTP_REQUEST, &settings);
	message_reset(&parser, &pc, &head);
	pc.extra_max = c->extra_max;
	pc.body_max = c->body_max;

	while (off < len && r->outcome == INCOMPLETE) {
		n = len - off;
		if (c->pieces != 0) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			if (n > 1 + x % 97)
				n = 1 + x % 97;
		}
		if (c->refs) {
			if (evbuffer_add_reference(in, stream + off, n, NULL, NULL) != 0)
				abort();
		} else if (evbuffer_add(in, stream + off, n) != 0) {
			abort();
		}
		off += n;
		added += n;
		if (++pieces % c->batch != 0 && off < len)
			continue;
		for (;;) {
			llhttp_errno_t e = message_feed(&parser, &pc, in, &fed);

			FUZZ_CHECK(fed <= evbuffer_get_length(in), "fed %zu of %zu", fed,
			    evbuffer_get_length(in));
			if (e != HPE_OK && e != HPE_PAUSED) {
				r->outcome = REFUSED;
				r->e = e;
				break;
			}
			if (!pc.head_done)
				break;
			if (!body) {
				/* request_head(): the head is whole (it is the fixed one). */
				FUZZ_CHECK(e == HPE_PAUSED && fed == head_len,
				    "head ends at %zu, not %zu (%s)", fed, head_len,
				    llhttp_errno_name(e));
				FUZZ_CHECK(parser.flags & F_CHUNKED, "chunked head not chunked");
				evbuffer_drain(in, fed);
				dropped = fed;
				fed = 0;
				llhttp_resume(&parser);
				pc.body_to = r->out;
				pc.rechunk = rechunk;
				body = true;
				continue;
			}
			/* forward_body(): the parsed bytes leave the input buffer. */
			evbuffer_drain(in, fed);
			dropped += fed;
			fed = 0;
			if (pc.msg_done) {
				FUZZ_CHECK(e == HPE_PAUSED, "message done with %s", llhttp_errno_name(e));
				r->outcome = ACCEPTED;
			}
			break;
		}
	}
	r->status = pc.error_status;
	r->reason = pc.error_reason;
	r->trailers = pc.trailers_dropped;
	if (r->outcome == ACCEPTED) {
		size_t left = evbuffer_get_length(in);

		/* What follows the message stays in the buffer as it came, unparsed. */
		FUZZ_CHECK(added - dropped == left && (left == 0 ||
		    memcmp(evbuffer_pullup(in, -1), stream + dropped, left) == 0),
		    "the %zu bytes after the message are not left as they came", left);
		r->consumed = dropped - head_len;
	}
	evbuffer_free(in);
}

/* ---- the canonical form ---- */

static bool
hexval(unsigned char c, unsigned *v)
{
	if (c >= '0' && c <= '9')
		*v = c - '0';
	else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		*v = (c | 0x20) - 'a' + 10;
	else
		return false;
	return true;
}

/* Walk canonical chunks in out; the body they carry goes to body. */
static void
check_canonical(const unsigned char *o, size_t n, struct evbuffer *body)
{
	size_t i = 0;

	for (;;) {
		uint64_t size = 0;
		size_t start = i;
		unsigned v;

		FUZZ_CHECK(i < n, "re-chunked output ends without a last chunk");
		while (i < n && o[i] != '\r') {
			FUZZ_CHECK(hexval(o[i], &v) && !(o[i] >= 'A' && o[i] <= 'F'),
			    "size line byte 0x%02x at %zu of the re-chunked output", o[i], i);
			FUZZ_CHECK(i - start < 16, "size line longer than 16 digits");
			size = size << 4 | v;
			i++;
		}
		FUZZ_CHECK(i > start, "empty size line at %zu of the re-chunked output", start);
		FUZZ_CHECK(o[start] != '0' || i - start == 1,
		    "size with a leading zero at %zu of the re-chunked output", start);
		FUZZ_CHECK(i + 1 < n && o[i + 1] == '\n', "size line without CRLF at %zu", i);
		i += 2;
		if (size == 0) {
			FUZZ_CHECK(n - i == 2 && o[i] == '\r' && o[i + 1] == '\n',
			    "%zu bytes after the last chunk's size line, not CRLF", n - i);
			return;
		}
		FUZZ_CHECK(size <= n - i && n - i - size >= 2, "chunk of %llu bytes overruns the "
		    "re-chunked output", (unsigned long long)size);
		evbuffer_add(body, o + i, size);
		i += size;
		FUZZ_CHECK(o[i] == '\r' && o[i + 1] == '\n', "chunk data not followed by CRLF at %zu",
		    i);
		i += 2;
	}
}

/* ---- the re-chunked output parsed again, by llhttp alone ---- */

static int
collect_body(llhttp_t *p, const char *at, size_t len)
{
	evbuffer_add(p->data, at, len);
	return 0;
}

static int
pause_at_end(llhttp_t *p)
{
	(void)p;
	return HPE_PAUSED;
}

static void
reparse(const unsigned char *o, size_t n, struct evbuffer *body)
{
	llhttp_settings_t s;
	llhttp_t p;
	llhttp_errno_t e;
	struct evbuffer *all = evbuffer_new();
	const char *b;

	if (all == NULL)
		abort();
	evbuffer_add(all, REQ_HEAD, strlen(REQ_HEAD));
	evbuffer_add(all, o, n);
	b = (const char *)evbuffer_pullup(all, -1);
	llhttp_settings_init(&s);
	s.on_body = collect_body;
	s.on_message_complete = pause_at_end;
	llhttp_init(&p, HTTP_REQUEST, &s);
	p.data = body;
	e = llhttp_execute(&p, b, evbuffer_get_length(all));
	FUZZ_CHECK(e == HPE_PAUSED, "llhttp reading the re-chunked output: %s (%s)",
	    llhttp_errno_name(e), llhttp_get_error_reason(&p));
	FUZZ_CHECK(llhttp_get_error_pos(&p) == b + evbuffer_get_length(all),
	    "llhttp ends the re-chunked message %td bytes before its end",
	    b + evbuffer_get_length(all) - llhttp_get_error_pos(&p));
	evbuffer_free(all);
}

/* ---- a plain reading of the input's framing ---- */

/* The body the input's chunks carry and where its trailer section starts. */
static void
walk_input(const unsigned char *in, size_t n, struct evbuffer *body, size_t *trailer_off)
{
	size_t i = 0;

	for (;;) {
		uint64_t size = 0;
		unsigned v;
		const unsigned char *lf;

		while (i < n && hexval(in[i], &v)) {
			FUZZ_CHECK(size >> 60 == 0, "chunk size over 64 bits accepted");
			size = size << 4 | v;
			i++;
		}
		lf = memchr(in + i, '\n', n - i);
		FUZZ_CHECK(lf != NULL, "accepted input ends in a size line");
		FUZZ_CHECK(lf > in && lf[-1] == '\r', "size line ending in a bare LF accepted");
		for (const unsigned char *p = in + i; p < lf - 1; p++)
			FUZZ_CHECK(*p != '\r', "CR inside a size line accepted");
		i = (size_t)(lf - in) + 1;
		if (size == 0)
			break;
		FUZZ_CHECK(size <= n - i && n - i - size >= 2, "accepted chunk of %llu bytes overruns "
		    "the message", (unsigned long long)size);
		evbuffer_add(body, in + i, size);
		i += size;
		FUZZ_CHECK(in[i] == '\r' && in[i + 1] == '\n', "chunk data without CRLF accepted");
		i += 2;
	}
	*trailer_off = i;
}

static bool
same(struct evbuffer *a, struct evbuffer *b)
{
	size_t n = evbuffer_get_length(a);

	return n == evbuffer_get_length(b) &&
	    (n == 0 || memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1), n) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned batches[] = { 1, 2, 5, 16 };
	struct cut c, whole;
	struct run re, de, one;
	struct evbuffer *canon_body, *reparsed, *walked;
	const char *head;
	char *stream;
	size_t head_len, len, trailer_off, lines = 0;
	const unsigned char *body, *o, *t;

	if (size < 2)
		return 0;
	memset(&c, 0, sizeof(c));
	c.response = data[0] & 1;
	c.refs = data[0] & 2;
	c.batch = batches[(data[0] >> 2) & 3];
	c.extra_max = (data[0] & 16) ? EXTRA_MAX : 0;
	c.body_max = (data[0] & 32) ? BODY_MAX : 0;
	c.pieces = data[1];
	whole = c;
	whole.refs = false;
	whole.batch = 1;
	whole.pieces = 0;

	head = c.response ? RESP_HEAD : REQ_HEAD;
	head_len = strlen(head);
	len = head_len + size - 2;
	stream = malloc(len);
	if (stream == NULL)
		abort();
	memcpy(stream, head, head_len);
	memcpy(stream + head_len, data + 2, size - 2);
	body = (const unsigned char *)stream + head_len;

	parse(stream, len, head_len, &c, true, &re);
	parse(stream, len, head_len, &c, false, &de);
	parse(stream, len, head_len, &whole, true, &one);

	FUZZ_CHECK(re.outcome == de.outcome && re.outcome == one.outcome,
	    "re-chunked %s (%s), de-chunked %s (%s), in one piece %s (%s)",
	    outcome_name[re.outcome], llhttp_errno_name(re.e), outcome_name[de.outcome],
	    llhttp_errno_name(de.e), outcome_name[one.outcome], llhttp_errno_name(one.e));

	if (re.outcome == REFUSED) {
		const struct run *runs[] = { &re, &de, &one };

		for (int i = 0; i < 3; i++) {
			const struct run *r = runs[i];

			FUZZ_CHECK(r->status == 0 || r->status == 400 || r->status == 413 ||
			    r->status == 431, "error status %d", r->status);
			FUZZ_CHECK(r->status != 413 || c.body_max != 0, "413 without a body limit");
			FUZZ_CHECK(r->status != 431 || c.extra_max != 0, "431 without an extra limit");
			FUZZ_CHECK(r->status != 400 || (r->e == HPE_USER && r->reason != NULL),
			    "400 without a reason (%s)", llhttp_errno_name(r->e));
		}
	}
	if (re.outcome != ACCEPTED)
		goto done;

	FUZZ_CHECK(re.consumed == de.consumed && re.consumed == one.consumed,
	    "message ends at %zu re-chunked, %zu de-chunked, %zu in one piece", re.consumed,
	    de.consumed, one.consumed);
	FUZZ_CHECK(re.trailers == de.trailers && re.trailers == one.trailers,
	    "trailers dropped: %u, %u, %u", re.trailers, de.trailers, one.trailers);
	FUZZ_CHECK(same(re.out, one.out), "re-chunked output depends on the pieces");

	canon_body = evbuffer_new();
	reparsed = evbuffer_new();
	walked = evbuffer_new();
	if (canon_body == NULL || reparsed == NULL || walked == NULL)
		abort();
	o = evbuffer_pullup(re.out, -1);
	check_canonical(o, evbuffer_get_length(re.out), canon_body);
	reparse(o, evbuffer_get_length(re.out), reparsed);
	FUZZ_CHECK(same(canon_body, reparsed), "llhttp reads another body from the re-chunked "
	    "output (%zu bytes, not %zu)", evbuffer_get_length(reparsed),
	    evbuffer_get_length(canon_body));
	FUZZ_CHECK(same(canon_body, de.out), "de-chunked body (%zu bytes) differs from the "
	    "re-chunked one (%zu bytes)", evbuffer_get_length(de.out),
	    evbuffer_get_length(canon_body));
	FUZZ_CHECK(c.body_max == 0 || evbuffer_get_length(canon_body) <= c.body_max,
	    "body of %zu bytes over the limit accepted", evbuffer_get_length(canon_body));

	/* The input itself, read plainly up to where the parser ended the message. */
	walk_input(body, re.consumed, walked, &trailer_off);
	FUZZ_CHECK(same(walked, canon_body), "the input's chunks carry %zu bytes, the output %zu",
	    evbuffer_get_length(walked), evbuffer_get_length(canon_body));
	t = body + trailer_off;
	for (size_t i = 0; i < re.consumed - trailer_off; i++) {
		FUZZ_CHECK(t[i] != '\n' || (i > 0 && t[i - 1] == '\r'),
		    "trailer section with a bare LF at %zu accepted", i);
		lines += t[i] == '\n';
	}
	FUZZ_CHECK(re.consumed - trailer_off >= 2 && body[re.consumed - 2] == '\r' &&
	    body[re.consumed - 1] == '\n', "message does not end in CRLF");
	FUZZ_CHECK((re.consumed - trailer_off == 2) == (re.trailers == 0) && re.trailers < lines,
	    "%u trailers dropped from %zu trailer lines", re.trailers, lines - 1);

	evbuffer_free(canon_body);
	evbuffer_free(reparsed);
	evbuffer_free(walked);
done:
	run_free(&re);
	run_free(&de);
	run_free(&one);
	free(stream);
	return 0;
}
