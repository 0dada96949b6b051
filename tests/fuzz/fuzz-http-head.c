/*
 * libFuzzer harness for header filtering: a request or response head parsed
 * by llhttp with the proxy's own span-recording callbacks (src/message.c),
 * refused where src/proxy.c refuses it (http_request_refusal(), then
 * uri_target_check()), then rebuilt for the other side as request_head()
 * there does (an absolute-form target's authority replaces Host, names with
 * "_" are dropped, the request line is the origin-form target behind the
 * backend's prefix) with http_put_request_line + http_write_request_fields
 * (to a backend), or with http_write_response_head (to a client).
 *
 * Input: two selector bytes, then the head.
 * - byte 0: bit 0 response (else request), bit 1 HTTP/1.0 client (response:
 *   keep-alive mode and de-chunking), bit 2 no Host fallback, bit 3 a
 *   backend path prefix, bit 4 client wants the connection closed, bit 5
 *   names with "_" go on (proxy.underscores_in_headers);
 * - byte 1: how the bytes are cut into pieces, as recv() would (llhttp then
 *   hands the callbacks spans in several pieces).
 *
 * Checked on what is emitted: CRLF-terminated lines only (no bare CR or LF,
 * no NUL, no other control byte but HTAB), one blank line at the very end, a
 * well-formed start line (HTTP/1.x requests only, a three-digit status), a
 * non-empty token name on every header line, no hop-by-hop header (the static
 * list, or a name listed in a Connection header of the head) unless
 * Roundguard added it itself, exactly one X-Forwarded-For/-Proto, no
 * Transfer-Encoding when de-chunking, and for requests what the issue's
 * smuggling rules ask (see FUZZ_HTTP_SMUGGLING), a Host that passes
 * uri_host_check() (an absolute-form target's authority when there is one),
 * no name with "_" unless allowed, and a request target that passes
 * uri_target_check() again in origin-form (or is "*" for OPTIONS).
 *
 * llhttp must be built as the daemon builds it (LLHTTP_STRICT_MODE=1, see
 * meson.build here).
 */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <llhttp.h>

#include "roundguard/http.h"
#include "roundguard/message.h"
#include "roundguard/uri.h"

#include "fuzz.h"

/*
 * Request heads that llhttp accepts and the proxy forwards must also not
 * carry what issue 7 says is rejected with 400: both Content-Length and
 * Transfer-Encoding, several Content-Length, a Transfer-Encoding other than
 * exactly "chunked", a bare LF. Set to 0 to check the filtering alone.
 */
#ifndef FUZZ_HTTP_SMUGGLING
#define FUZZ_HTTP_SMUGGLING 1
#endif

#define CLIENT_IP "192.0.2.7"
#define FALLBACK_HOST "fallback.example:8080"
#define BACKEND "127.0.0.1:9001"
#define PREFIX "/api/v1"

/* ---- the checks ---- */

static bool
tchar(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool
name_is(const char *name, size_t len, const char *lower)
{
	return strlen(lower) == len && strncasecmp(name, lower, len) == 0;
}

static bool
static_hop(const char *name, size_t len)
{
	static const char *const hop[] = {
		"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
		"proxy-authorization", "proxy-authenticate",
	};

	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		if (name_is(name, len, hop[i]))
			return true;
	return false;
}

/* Whether name is one of the comma-separated tokens of some Connection header in the head. */
static bool
connection_listed(const char *base, const struct http_head *h, const char *name, size_t len)
{
	for (uint16_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];
		const char *v = base + f->value.off, *end = v + f->value.len;

		if (!name_is(base + f->name.off, f->name.len, "connection"))
			continue;
		while (v < end) {
			const char *s, *e;

			while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
				v++;
			s = v;
			while (v < end && *v != ',')
				v++;
			e = v;
			while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if ((size_t)(e - s) == len && strncasecmp(s, name, len) == 0)
				return true;
		}
	}
	return false;
}

static size_t
count_fields(const char *base, const struct http_head *h, const char *lower)
{
	size_t n = 0;

	for (uint16_t i = 0; i < h->nfields; i++)
		n += name_is(base + h->fields[i].name.off, h->fields[i].name.len, lower);
	return n;
}

struct emitted {
	const char *buf;
	size_t len;
	const char *line;	/* the start line */
	size_t line_len;
};

/* Bytes, line endings and the final blank line; returns the start line. */
static void
check_framing(struct emitted *e)
{
	const char *b = e->buf;
	size_t n = e->len;

	FUZZ_CHECK(n >= 4 && memcmp(b + n - 4, "\r\n\r\n", 4) == 0,
	    "emitted head does not end with a blank line: \"%.*s\"", (int)n, b);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)b[i];

		if (c == '\r') {
			FUZZ_CHECK(i + 1 < n && b[i + 1] == '\n', "bare CR at %zu of \"%.*s\"", i,
			    (int)n, b);
			FUZZ_CHECK(i + 4 == n || i + 2 >= n || b[i + 2] != '\r',
			    "blank line before the end, at %zu of \"%.*s\"", i, (int)n, b);
		} else if (c == '\n') {
			FUZZ_CHECK(i > 0 && b[i - 1] == '\r', "bare LF at %zu of \"%.*s\"", i, (int)n, b);
		} else {
			FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f),
			    "control byte 0x%02x at %zu of \"%.*s\"", c, i, (int)n, b);
		}
	}
	e->line = b;
	e->line_len = (size_t)((const char *)memchr(b, '\r', n) - b);
}

/* Every header line after the start line, by name; calls fn for each. */
typedef void line_fn(void *arg, const char *name, size_t nlen, const char *value, size_t vlen);

static void
each_field(const struct emitted *e, line_fn *fn, void *arg)
{
	const char *p = e->line + e->line_len + 2, *end = e->buf + e->len - 2;

	while (p < end) {
		const char *eol = memchr(p, '\r', (size_t)(end - p) + 1);
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		size_t nlen;

		FUZZ_CHECK(colon != NULL && colon > p, "header line without a name: \"%.*s\"",
		    (int)(eol - p), p);
		nlen = (size_t)(colon - p);
		for (size_t i = 0; i < nlen; i++)
			FUZZ_CHECK(tchar((unsigned char)p[i]), "byte 0x%02x in header name \"%.*s\"",
			    (unsigned char)p[i], (int)nlen, p);
		FUZZ_CHECK(colon + 1 < eol ? colon[1] == ' ' : true, "no space after ':' in \"%.*s\"",
		    (int)(eol - p), p);
		fn(arg, p, nlen, colon + 1 < eol ? colon + 2 : eol,
		    colon + 1 < eol ? (size_t)(eol - colon - 2) : 0);
		p = eol + 2;
	}
}

struct field_check {
	const char *base;
	const struct http_head *h;
	bool response;
	bool dechunk;
	const char *fallback;	/* the Host Roundguard may add, or NULL */
	bool underscores;	/* names with "_" may go on */
	/* Counts of what Roundguard adds itself, and what smuggling checks look at. */
	size_t xff, xfp, xfh, host, connection, backend_server, cl, te;
	const char *host_value, *xfh_value, *te_value;
	size_t host_len, xfh_len, te_len;
};

static void
field_cb(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct field_check *fc = arg;
	bool ours = false;

	if (name_is(name, nlen, "x-forwarded-for")) {
		fc->xff++;
		ours = !fc->response;
	} else if (name_is(name, nlen, "x-forwarded-proto")) {
		fc->xfp++;
		ours = !fc->response;
		if (!fc->response)
			FUZZ_CHECK(vlen == 4 && memcmp(value, "http", 4) == 0,
			    "X-Forwarded-Proto: %.*s", (int)vlen, value);
	} else if (name_is(name, nlen, "x-forwarded-host")) {
		fc->xfh++;
		fc->xfh_value = value;
		fc->xfh_len = vlen;
		ours = !fc->response;
	} else if (name_is(name, nlen, "host")) {
		fc->host++;
		fc->host_value = value;
		fc->host_len = vlen;
		/*
		 * The fallback when no client Host goes on (none, one listed in
		 * Connection, or one an absolute-form target's authority replaces).
		 */
		ours = fc->fallback != NULL && vlen == strlen(fc->fallback) &&
		    memcmp(value, fc->fallback, vlen) == 0;
	} else if (name_is(name, nlen, "x-backend-server")) {
		fc->backend_server++;
		ours = fc->response;
	} else if (name_is(name, nlen, "connection")) {
		fc->connection++;
		ours = fc->response;
	} else if (name_is(name, nlen, "content-length")) {
		fc->cl++;
	} else if (name_is(name, nlen, "transfer-encoding")) {
		fc->te++;
		fc->te_value = value;
		fc->te_len = vlen;
		FUZZ_CHECK(!fc->dechunk, "Transfer-Encoding kept while de-chunking");
	}
	if (ours)
		return;
	FUZZ_CHECK(fc->underscores || fc->response || memchr(name, '_', nlen) == NULL,
	    "header \"%.*s\" with \"_\" forwarded", (int)nlen, name);
	FUZZ_CHECK(!static_hop(name, nlen), "hop-by-hop header \"%.*s\" forwarded", (int)nlen, name);
	FUZZ_CHECK(!connection_listed(fc->base, fc->h, name, nlen),
	    "header \"%.*s\" listed in Connection forwarded", (int)nlen, name);
}

/* How request_head() in src/proxy.c sends the request on. */
struct sent_request {
	const struct uri_target *ut;
	const char *fallback;	/* Host when no client Host goes on */
	bool prefix;
	bool underscores;
	bool options;
};

static void
check_request(const char *base, const struct http_head *h, const struct sent_request *sr,
    const char *head_bytes, size_t head_len)
{
	struct evbuffer *out = evbuffer_new();
	const struct uri_target *ut = sr->ut;
	const char *prefix = sr->prefix && ut->form != URI_ASTERISK ? PREFIX : "";
	const char *target = base + h->target.off + ut->path_off;
	struct uri_target again;
	struct field_check fc;
	struct emitted e;
	size_t tlen, plen = strlen(prefix);
	char pre[sizeof(PREFIX) + 1], *line;

	if (out == NULL)
		abort();
	/* request_line_keep() and queue_request(): [prefix]["/"]path-and-query. */
	memcpy(pre, prefix, plen);
	if (ut->need_slash)
		pre[plen++] = '/';
	line = malloc(HTTP_REQUEST_LINE_SIZE(h->method.len, plen, ut->path_len));
	if (line == NULL)
		abort();
	tlen = http_put_request_line(line, base + h->method.off, h->method.len, pre, plen, target,
	    ut->path_len);
	FUZZ_CHECK(evbuffer_add(out, line, tlen) == 0, "evbuffer_add");
	free(line);
	FUZZ_CHECK(http_write_request_fields(out, base, h, CLIENT_IP, sr->fallback, false) == 0,
	    "http_write_request_fields failed");
	e.len = evbuffer_get_length(out);
	e.buf = (const char *)evbuffer_pullup(out, -1);
	check_framing(&e);

	/* METHOD SP [prefix]target SP HTTP/1.1 */
	FUZZ_CHECK(e.line_len > h->method.len + 10 && h->method.len > 0 &&
	    memcmp(e.line, base + h->method.off, h->method.len) == 0 &&
	    e.line[h->method.len] == ' ' &&
	    memcmp(e.line + e.line_len - 9, " HTTP/1.1", 9) == 0,
	    "request line \"%.*s\"", (int)e.line_len, e.line);
	for (size_t i = 0; i < h->method.len; i++)
		FUZZ_CHECK(tchar((unsigned char)e.line[i]), "method \"%.*s\"", (int)h->method.len,
		    e.line);
	tlen = e.line_len - h->method.len - 10;
	FUZZ_CHECK(tlen > 0, "empty request target in \"%.*s\"", (int)e.line_len, e.line);
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)e.line[h->method.len + 1 + i];

		FUZZ_CHECK(c > 0x20 && c != 0x7f, "byte 0x%02x in request target \"%.*s\"", c,
		    (int)e.line_len, e.line);
	}
	/* What the backend gets is a target the proxy itself would take, in origin-form. */
	FUZZ_CHECK(uri_target_check(e.line + h->method.len + 1, tlen, sr->options, &again) ==
	    NULL && again.form == (ut->form == URI_ASTERISK ? URI_ASTERISK : URI_ORIGIN),
	    "request target sent on: \"%.*s\"", (int)e.line_len, e.line);

	memset(&fc, 0, sizeof(fc));
	fc.base = base;
	fc.h = h;
	fc.fallback = sr->fallback;
	fc.underscores = sr->underscores;
	each_field(&e, field_cb, &fc);
	FUZZ_CHECK(fc.xff == 1 && fc.xfp == 1, "%zu X-Forwarded-For, %zu X-Forwarded-Proto",
	    fc.xff, fc.xfp);
	FUZZ_CHECK(fc.host <= 1 && fc.xfh <= 1, "%zu Host, %zu X-Forwarded-Host", fc.host, fc.xfh);
	FUZZ_CHECK(fc.xfh == 0 || (fc.host == 1 && fc.xfh_len == fc.host_len &&
	    memcmp(fc.xfh_value, fc.host_value, fc.host_len) == 0),
	    "X-Forwarded-Host differs from Host");
	FUZZ_CHECK(sr->fallback == NULL || fc.host == 1, "no Host line despite a fallback");
	FUZZ_CHECK(fc.host == 0 || uri_host_check(fc.host_value, fc.host_len) == NULL,
	    "Host \"%.*s\" forwarded", (int)fc.host_len, fc.host_value);
	if (ut->form == URI_ABSOLUTE)
		FUZZ_CHECK(fc.host == 1 && fc.host_len == ut->authority_len &&
		    memcmp(fc.host_value, base + h->target.off + ut->authority_off, fc.host_len) == 0,
		    "Host is not the absolute-form target's authority");
#if FUZZ_HTTP_SMUGGLING
	FUZZ_CHECK(fc.cl <= 1, "%zu Content-Length headers forwarded", fc.cl);
	FUZZ_CHECK(fc.cl == 0 || fc.te == 0, "both Content-Length and Transfer-Encoding forwarded");
	FUZZ_CHECK(fc.te <= 1, "%zu Transfer-Encoding headers forwarded", fc.te);
	FUZZ_CHECK(fc.te == 0 || (fc.te_len == 7 && strncasecmp(fc.te_value, "chunked", 7) == 0),
	    "Transfer-Encoding \"%.*s\" forwarded (only exactly \"chunked\" is allowed)",
	    (int)fc.te_len, fc.te_value);
	for (size_t i = 0; i < head_len; i++)
		FUZZ_CHECK(head_bytes[i] != '\n' || (i > 0 && head_bytes[i - 1] == '\r'),
		    "request head with a bare LF at %zu accepted", i);
#else
	(void)head_bytes;
	(void)head_len;
#endif
	evbuffer_free(out);
}

static void
check_response(const char *base, const struct http_head *h, enum http_conn_mode mode,
    bool dechunk)
{
	struct evbuffer *out = evbuffer_new();
	struct field_check fc;
	struct emitted e;
	char status[16];

	if (out == NULL)
		abort();
	FUZZ_CHECK(http_write_response_head(out, base, h, BACKEND, mode, dechunk) == 0,
	    "http_write_response_head failed");
	e.len = evbuffer_get_length(out);
	e.buf = (const char *)evbuffer_pullup(out, -1);
	check_framing(&e);

	/* llhttp takes "HTTP/1.1 2 OK" and "HTTP/1.1 \r\n" (status 0): not a status to pass on. */
	FUZZ_CHECK(h->status >= 100 && h->status <= 999,
	    "status %d from the backend forwarded as \"%.*s\"", h->status, (int)e.line_len,
	    e.line);
	snprintf(status, sizeof(status), "HTTP/1.1 %03d ", h->status);
	FUZZ_CHECK(e.line_len >= 13 && memcmp(e.line, status, 13) == 0,
	    "status line \"%.*s\" for status %d", (int)e.line_len, e.line, h->status);

	memset(&fc, 0, sizeof(fc));
	fc.base = base;
	fc.h = h;
	fc.response = true;
	fc.dechunk = dechunk;
	each_field(&e, field_cb, &fc);
	FUZZ_CHECK(fc.backend_server == 1 + count_fields(base, h, "x-backend-server"),
	    "X-Backend-Server lines: %zu", fc.backend_server);
	FUZZ_CHECK(fc.connection == (mode == HTTP_CONN_KEEP ? 0u : 1u),
	    "%zu Connection lines in mode %d", fc.connection, (int)mode);
	evbuffer_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_head head;
	char authority[300];	/* as request_head() in src/proxy.c has it */
	struct sent_request sr;
	struct uri_target ut;
	llhttp_settings_t settings;
	struct message_parse pc;
	llhttp_t parser;
	llhttp_errno_t e = HPE_OK;
	const char *buf;
	size_t len, off = 0;
	bool response, http10;
	uint32_t x;

	if (size < 2)
		return 0;
	response = data[0] & 1;
	http10 = data[0] & 2;
	x = 0x2545f491u ^ data[1];
	buf = (const char *)data + 2;
	len = size - 2;

	/* The proxy's own callbacks (src/message.c), fed as message_feed() feeds them. */
	message_settings(&settings, response);
	llhttp_init(&parser, response ? HTTP_RESPONSE : HTTP_REQUEST, &settings);
	memset(&head, 0, sizeof(head));
	message_reset(&parser, &pc, &head);

	/* In pieces, as feed() in src/proxy.c gives them: spans are offsets from the start. */
	while (off < len && !pc.head_done) {
		size_t n = len - off;

		if (data[1] != 0) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			if (n > 1 + x % 97)
				n = 1 + x % 97;
		}
		pc.ptr = buf + off;
		pc.off = off;
		e = llhttp_execute(&parser, buf + off, n);
		if (e == HPE_PAUSED) {
			off += (size_t)(llhttp_get_error_pos(&parser) - (buf + off));
			break;
		}
		if (e != HPE_OK)
			return 0;		/* 400 or 431 in the proxy */
		off += n;
	}
	if (!pc.head_done)
		return 0;			/* incomplete: the proxy waits for more */

	/* The spans point inside the head and are consistent. */
	FUZZ_CHECK(head.nfields <= HTTP_FIELDS_MAX, "%u fields", (unsigned)head.nfields);
	for (uint16_t i = 0; i < head.nfields; i++) {
		const struct http_field *f = &head.fields[i];

		FUZZ_CHECK(f->name.len > 0, "header line %u with an empty name (\": %.*s\") accepted",
		    (unsigned)i, (int)f->value.len, buf + f->value.off);
		FUZZ_CHECK((size_t)f->name.off + f->name.len <= off &&
		    (size_t)f->value.off + f->value.len <= off, "field %u spans out of the head",
		    (unsigned)i);
	}

	/* As request_head() and response_head() in src/proxy.c do before anything else. */
	http_head_classify(buf, &head);
	if (response) {
		enum http_conn_mode mode;
		bool dechunk = false;

		head.status = parser.status_code;
		if (head.status >= 100 && head.status < 200)
			return 0;	/* interim answers are not filtered, 101 is refused */
		/* What response_head() in src/proxy.c turns into a 502. */
		if (head.status < 100 || head.status > 999 ||
		    !http_reason_valid(buf + head.reason.off, head.reason.len))
			return 0;
		mode = (data[0] & 16) ? HTTP_CONN_CLOSE : http10 ? HTTP_CONN_KEEP_10 : HTTP_CONN_KEEP;
		if (llhttp_message_needs_eof(&parser))
			mode = HTTP_CONN_CLOSE;
		if (http10 && (parser.flags & F_CHUNKED)) {
			dechunk = true;
			mode = HTTP_CONN_CLOSE;
		}
		check_response(buf, &head, mode, dechunk);
	} else {
		/* What request_head() in src/proxy.c turns away before filtering. */
		if (parser.method == HTTP_CONNECT || count_fields(buf, &head, "host") > 1)
			return 0;
		if (parser.http_major != 1)
			return 0;	/* 400 or 505 */
		{
			bool has_host;

			if (http_request_refusal(buf, off, &head, parser.http_major == 1 &&
			    parser.http_minor == 0, &has_host) != NULL)
				return 0;
		}
		head.major = parser.http_major;
		head.minor = parser.http_minor;
		if (uri_target_check(buf + head.target.off, head.target.len,
		    parser.method == HTTP_OPTIONS, &ut) != NULL)
			return 0;
		sr.ut = &ut;
		sr.prefix = data[0] & 8;
		sr.underscores = data[0] & 32;
		sr.options = parser.method == HTTP_OPTIONS;
		sr.fallback = (data[0] & 4) ? NULL : FALLBACK_HOST;
		if (ut.form == URI_ABSOLUTE) {
			/* The authority wins over Host, and goes on as Host. */
			for (uint16_t i = 0; i < head.nfields; i++)
				if (head.fields[i].kind == HTTP_FIELD_HOST)
					head.fields[i].hop = true;
			FUZZ_CHECK(ut.authority_len < sizeof(authority), "authority of %zu bytes",
			    ut.authority_len);
			memcpy(authority, buf + head.target.off + ut.authority_off, ut.authority_len);
			authority[ut.authority_len] = '\0';
			sr.fallback = authority;
		}
		if (!sr.underscores)
			http_drop_underscore_fields(buf, &head);
		{
			/*
			 * llhttp runs some checks (a Transfer-Encoding without chunked
			 * last, for one) only on resume after on_headers_complete. The
			 * proxy resumes and feeds the body, or 0 bytes, before anything
			 * leaves for the backend (send_request() goes through
			 * client_process()), and answers 400: nothing is forwarded then.
			 */
			llhttp_t after = parser;

			llhttp_resume(&after);
			e = llhttp_execute(&after, buf + off, 0);
			if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE)
				return 0;
		}
		check_request(buf, &head, &sr, buf, off);
	}
	return 0;
}
