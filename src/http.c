/* HTTP helpers shared by the proxy and the echo daemon: reason phrases and JSON error responses. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

#include "roundguard/http.h"
#include "roundguard/uri.h"

/* A string literal and its length, for evbuffer_add. */
#define LIT(s) (s), (sizeof(s) - 1)

const char *
http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 426: return "Upgrade Required";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default:  return "Unknown";
	}
}

const char *
http_error_description(int status)
{
	switch (status) {
	case 400: return "The request could not be parsed as HTTP";
	case 404: return "The requested resource does not exist";
	case 405: return "The method is not allowed for the requested resource";
	case 408: return "The request was not received in time";
	case 413: return "The request body is larger than the configured limit";
	case 414: return "The request target is longer than the configured limit";
	case 417: return "Only the 100-continue expectation is supported";
	case 431: return "The request headers are larger than the configured limit";
	case 501: return "The request uses a feature that is not implemented";
	case 502: return "The upstream server failed to answer the request";
	case 503: return "There's no instance of application that can process this request";
	case 504: return "The upstream server did not answer in time";
	default:  return http_reason(status);
	}
}

/* Append s to buf[*off] as JSON string content, counting what does not fit. */
static void
json_escape_into(char *buf, size_t buflen, size_t *off, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char tmp[8];
		size_t n;

		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			n = 2;
		} else if (c < 0x20) {
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", c);
		} else {
			tmp[0] = (char)c;
			n = 1;
		}
		for (size_t i = 0; i < n; i++, (*off)++)
			if (*off + 1 < buflen)
				buf[*off] = tmp[i];
	}
}

static void
raw_into(char *buf, size_t buflen, size_t *off, const char *s)
{
	for (; *s != '\0'; s++, (*off)++)
		if (*off + 1 < buflen)
			buf[*off] = *s;
}

size_t
http_error_body(char *buf, size_t buflen, int status, const char *title,
    const char *description)
{
	size_t off = 0;

	if (title == NULL)
		title = http_reason(status);
	if (description == NULL)
		description = http_error_description(status);
	raw_into(buf, buflen, &off, "{\"title\":\"");
	json_escape_into(buf, buflen, &off, title);
	raw_into(buf, buflen, &off, "\",\"description\":\"");
	json_escape_into(buf, buflen, &off, description);
	raw_into(buf, buflen, &off, "\"}");
	if (buflen > 0)
		buf[off < buflen ? off : buflen - 1] = '\0';
	return off;
}

int
http_error_response(struct evbuffer *out, int status, const char *title,
    const char *description, const char *extra_headers, bool keep_alive, bool head_only)
{
	char body[1024];
	size_t blen = http_error_body(body, sizeof(body), status, title, description);

	if (blen >= sizeof(body))
		blen = sizeof(body) - 1;
	if (evbuffer_add_printf(out,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: %zu\r\n"
	    "%s"
	    "%s"
	    "\r\n",
	    status, http_reason(status), blen,
	    keep_alive ? "" : "Connection: close\r\n",
	    extra_headers != NULL ? extra_headers : "") < 0)
		return -1;
	if (!head_only && evbuffer_add(out, body, blen) != 0)
		return -1;
	return 0;
}

const char *
http_date_now(void)
{
	static char date[40];
	static time_t cached = -1;
	time_t now = time(NULL);

	if (now != cached) {
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		cached = now;
	}
	return date;
}

void
http_span_extend(struct http_span *s, uint32_t off, uint32_t len)
{
	if (s->len == 0)
		s->off = off;
	s->len = off + len - s->off;
}

bool
http_name_is(const char *name, size_t len, const char *lower)
{
	size_t i;

	/* Header names are tokens: ASCII, where | 0x20 lowers letters and keeps '-'. */
	for (i = 0; i < len; i++) {
		if (lower[i] == '\0' || ((unsigned char)name[i] | 0x20) != (unsigned char)lower[i])
			return false;
	}
	return lower[i] == '\0';
}

/*
 * The next token of a comma-separated list value[*i..vlen), without the
 * white space around it; false when there is none left.
 */
static bool
next_token(const char *value, size_t vlen, size_t *i, const char **tok, size_t *tlen)
{
	size_t start, end;

	while (*i < vlen && (value[*i] == ' ' || value[*i] == '\t' || value[*i] == ','))
		(*i)++;
	if (*i >= vlen)
		return false;
	start = *i;
	while (*i < vlen && value[*i] != ',')
		(*i)++;
	end = *i;
	while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
		end--;
	*tok = value + start;
	*tlen = end - start;
	return true;
}

/*
 * The kind of a header name; *hop when the name alone makes it hop-by-hop
 * (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade,
 * Proxy-Authorization, Proxy-Authenticate). One switch on the length: most names are compared with nothing, the rest with one or
 * two candidates.
 */
static uint8_t
name_kind(const char *name, size_t len, bool *hop)
{
	*hop = false;
	switch (len) {
	case 2:
		*hop = http_name_is(name, len, "te");
		break;
	case 4:
		if (http_name_is(name, len, "host"))
			return HTTP_FIELD_HOST;
		break;
	case 7:
		if (http_name_is(name, len, "upgrade")) {
			*hop = true;
			return HTTP_FIELD_UPGRADE;
		}
		*hop = http_name_is(name, len, "trailer");
		break;
	case 10:
		if (http_name_is(name, len, "connection")) {
			*hop = true;
			return HTTP_FIELD_CONNECTION;
		}
		*hop = http_name_is(name, len, "keep-alive");
		break;
	case 14:
		if (http_name_is(name, len, "content-length"))
			return HTTP_FIELD_CONTENT_LENGTH;
		break;
	case 15:
		if (http_name_is(name, len, "x-forwarded-for"))
			return HTTP_FIELD_X_FORWARDED_FOR;
		break;
	case 16:
		if (http_name_is(name, len, "x-forwarded-host"))
			return HTTP_FIELD_X_FORWARDED_HOST;
		*hop = http_name_is(name, len, "proxy-connection");
		break;
	case 17:
		if (http_name_is(name, len, "transfer-encoding"))
			return HTTP_FIELD_TRANSFER_ENCODING;
		if (http_name_is(name, len, "x-forwarded-proto"))
			return HTTP_FIELD_X_FORWARDED_PROTO;
		break;
	case 18:
		*hop = http_name_is(name, len, "proxy-authenticate");
		break;
	case 19:
		*hop = http_name_is(name, len, "proxy-authorization");
		break;
	default:
		break;
	}
	return HTTP_FIELD_OTHER;
}

bool
http_token_listed(const char *value, size_t vlen, const char *name, size_t len)
{
	const char *tok;
	size_t i = 0, tlen;

	while (next_token(value, vlen, &i, &tok, &tlen))
		if (tlen == len && strncasecmp(tok, name, len) == 0)
			return true;
	return false;
}

/* Whether a Connection header of the (classified) head lists name. */
static bool
connection_lists(const char *base, const struct http_head *h, const char *name, size_t len)
{
	for (uint16_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];

		if (f->kind == HTTP_FIELD_CONNECTION &&
		    http_token_listed(base + f->value.off, f->value.len, name, len))
			return true;
	}
	return false;
}

bool
http_tokens_within(const char *list, size_t len, const char *set, size_t setlen)
{
	const char *tok;
	size_t i = 0, tlen;
	bool any = false;

	while (next_token(list, len, &i, &tok, &tlen)) {
		if (!http_token_listed(set, setlen, tok, tlen))
			return false;
		any = true;
	}
	return any;
}

bool
http_upgrade_requested(const char *base, const struct http_head *h, const char **value,
    size_t *len)
{
	const struct http_field *up = NULL;
	bool listed = false;

	for (uint16_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];

		if (f->kind == HTTP_FIELD_CONNECTION)
			listed = listed || http_token_listed(base + f->value.off, f->value.len,
			    "upgrade", 7);
		else if (f->kind == HTTP_FIELD_UPGRADE) {
			if (up != NULL)
				return false;	/* two Upgrade headers: which one? */
			up = f;
		}
	}
	if (!listed || up == NULL || up->value.len == 0)
		return false;
	*value = base + up->value.off;
	*len = up->value.len;
	return true;
}

bool
http_is_hop_by_hop(const char *base, const struct http_head *h, const char *name, size_t len)
{
	bool hop;

	(void)name_kind(name, len, &hop);
	return hop || connection_lists(base, h, name, len);
}

/* Whether a Connection value lists a token other than keep-alive (already hop-by-hop). */
static bool
lists_names(const char *value, size_t vlen)
{
	const char *tok;
	size_t i = 0, tlen;

	/* What nearly every backend sends, without taking it apart. */
	if (vlen == 10 && strncasecmp(value, "keep-alive", 10) == 0)
		return false;
	while (next_token(value, vlen, &i, &tok, &tlen))
		if (tlen != 10 || strncasecmp(tok, "keep-alive", 10) != 0)
			return true;
	return false;
}

void
http_head_classify(const char *base, struct http_head *h)
{
	bool listing = false;
	uint32_t size = 0;

	for (uint16_t i = 0; i < h->nfields; i++) {
		struct http_field *f = &h->fields[i];
		const char *v = base + f->value.off;

		/*
		 * Trailing white space is not part of a field value (RFC 9110 5.5),
		 * but llhttp leaves it in the span: "chunked " must go on as
		 * "chunked", not as something a backend may read otherwise.
		 */
		while (f->value.len > 0 && (v[f->value.len - 1] == ' ' || v[f->value.len - 1] == '\t'))
			f->value.len--;
		f->kind = name_kind(base + f->name.off, f->name.len, &f->hop);
		size += f->name.len + f->value.len + 4;
		if (f->kind == HTTP_FIELD_CONNECTION)
			listing = listing || lists_names(base + f->value.off, f->value.len);
	}
	h->fields_size = size;
	/* "Connection: keep-alive", what most heads carry, names nothing more to drop. */
	if (!listing)
		return;
	for (uint16_t i = 0; i < h->nfields; i++) {
		struct http_field *f = &h->fields[i];

		if (!f->hop)
			f->hop = connection_lists(base, h, base + f->name.off, f->name.len);
	}
}

size_t
http_put_request_line(char *dst, const char *method, size_t method_len, const char *prefix,
    size_t prefix_len, const char *target, size_t target_len)
{
	char *p = dst;

	memcpy(p, method, method_len);
	p += method_len;
	*p++ = ' ';
	memcpy(p, prefix, prefix_len);
	p += prefix_len;
	memcpy(p, target, target_len);
	p += target_len;
	memcpy(p, " HTTP/1.1\r\n", 11);
	return (size_t)(p + 11 - dst);
}

int
http_write_request_line(struct evbuffer *out, const char *base, const struct http_head *h,
    const char *prefix)
{
	size_t plen = strlen(prefix);
	size_t len = HTTP_REQUEST_LINE_SIZE(h->method.len, plen, h->target.len);
	struct evbuffer_iovec v;

	if (evbuffer_reserve_space(out, (ev_ssize_t)len, &v, 1) < 1)
		return -1;
	v.iov_len = http_put_request_line(v.iov_base, base + h->method.off, h->method.len, prefix,
	    plen, base + h->target.off, h->target.len);
	return evbuffer_commit_space(out, &v, 1);
}

/*
 * A head is written into one region reserved in the evbuffer for its largest
 * possible size, then committed: one allocation at most, instead of four
 * evbuffer_add() calls per header line.
 */
struct head_writer {
	struct evbuffer *out;
	struct evbuffer_iovec v;
	char *p;
	char *end;
};

static int
writer_open(struct head_writer *w, struct evbuffer *out, size_t size_max)
{
	w->out = out;
	if (evbuffer_reserve_space(out, (ev_ssize_t)size_max, &w->v, 1) < 1 ||
	    w->v.iov_len < size_max)
		return -1;
	w->p = w->v.iov_base;
	w->end = w->p + size_max;
	return 0;
}

static void
put(struct head_writer *w, const void *s, size_t n)
{
	/* Past the reserved worst case is a sizing bug: writer_close() refuses the head. */
	if (w->p == NULL || (size_t)(w->end - w->p) < n) {
		w->p = NULL;
		return;
	}
	memcpy(w->p, s, n);
	w->p += n;
}

static void
put_field(struct head_writer *w, const char *base, const struct http_field *f)
{
	char *p = w->p;

	/* Two copies and four stores, not four copies: this runs for every header line. */
	if (p == NULL || (size_t)(w->end - p) < (size_t)f->name.len + f->value.len + 4) {
		w->p = NULL;
		return;
	}
	memcpy(p, base + f->name.off, f->name.len);
	p += f->name.len;
	*p++ = ':';
	*p++ = ' ';
	memcpy(p, base + f->value.off, f->value.len);
	p += f->value.len;
	*p++ = '\r';
	*p++ = '\n';
	w->p = p;
}

static int
writer_close(struct head_writer *w)
{
	int rc = w->p != NULL ? 0 : -1;

	w->v.iov_len = w->p != NULL ? (size_t)(w->p - (char *)w->v.iov_base) : 0;
	if (evbuffer_commit_space(w->out, &w->v, 1) != 0)
		rc = -1;
	return rc;
}

/* Room for what the writers add besides the head's own fields. */
#define HEAD_EXTRA 128

int
http_write_request_fields(struct evbuffer *out, const char *base, const struct http_head *h,
    const char *client_ip, const char *fallback_host, bool tls)
{
	const struct http_field *host = NULL;
	struct head_writer w;
	size_t ip_len = strlen(client_ip);
	size_t fb_len = fallback_host != NULL ? strlen(fallback_host) : 0;
	size_t host_len = 0;
	bool xff = false;

	for (uint16_t i = 0; i < h->nfields; i++) {
		if (h->fields[i].kind == HTTP_FIELD_HOST && !h->fields[i].hop) {
			host = &h->fields[i];
			host_len = host->value.len;
			break;
		}
	}
	/* The fields go out at most as they came, plus the forwarding headers. */
	if (writer_open(&w, out, h->fields_size + host_len + ip_len + 2 * fb_len + HEAD_EXTRA) == -1)
		return -1;
	for (uint16_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];

		if (f->hop)
			continue;
		switch (f->kind) {
		case HTTP_FIELD_X_FORWARDED_FOR:
			xff = true;	/* joined into one line below, with the client appended */
			continue;
		case HTTP_FIELD_X_FORWARDED_PROTO:
		case HTTP_FIELD_X_FORWARDED_HOST:
			continue;
		default:
			put_field(&w, base, f);
		}
	}
	if (host == NULL && fallback_host != NULL) {
		put(&w, LIT("Host: "));
		put(&w, fallback_host, fb_len);
		put(&w, "\r\n", 2);
	}
	put(&w, LIT("X-Forwarded-For: "));
	for (uint16_t i = 0; xff && i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];

		if (f->kind != HTTP_FIELD_X_FORWARDED_FOR || f->hop || f->value.len == 0)
			continue;
		put(&w, base + f->value.off, f->value.len);
		put(&w, ", ", 2);
	}
	put(&w, client_ip, ip_len);
	if (tls)
		put(&w, LIT("\r\nX-Forwarded-Proto: https\r\n"));
	else
		put(&w, LIT("\r\nX-Forwarded-Proto: http\r\n"));
	/* The Host that goes on, which was checked (http_request_refusal(), uri_host_check()). */
	if (host != NULL) {
		put(&w, LIT("X-Forwarded-Host: "));
		put(&w, base + host->value.off, host->value.len);
		put(&w, "\r\n", 2);
	} else if (fallback_host != NULL) {
		put(&w, LIT("X-Forwarded-Host: "));
		put(&w, fallback_host, fb_len);
		put(&w, "\r\n", 2);
	}
	put(&w, "\r\n", 2);
	return writer_close(&w);
}

int
http_write_response_head(struct evbuffer *out, const char *base, const struct http_head *h,
    const char *backend, enum http_conn_mode mode, bool dechunk)
{
	char line[16] = "HTTP/1.1 000 ";
	struct head_writer w;
	size_t backend_len = strlen(backend);

	if (writer_open(&w, out, h->reason.len + h->fields_size + backend_len + HEAD_EXTRA) == -1)
		return -1;
	/* A status is three digits (llhttp guarantees it); no printf on the hot path. */
	line[9] = (char)('0' + h->status / 100 % 10);
	line[10] = (char)('0' + h->status / 10 % 10);
	line[11] = (char)('0' + h->status % 10);
	put(&w, line, 13);
	put(&w, base + h->reason.off, h->reason.len);
	put(&w, "\r\n", 2);
	for (uint16_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];

		if (f->hop || (dechunk && f->kind == HTTP_FIELD_TRANSFER_ENCODING))
			continue;
		put_field(&w, base, f);
	}
	put(&w, LIT("X-Backend-Server: "));
	put(&w, backend, backend_len);
	if (mode == HTTP_CONN_UPGRADE) {
		/* The protocol switched to, as the backend named it (it was checked). */
		for (uint16_t i = 0; i < h->nfields; i++) {
			if (h->fields[i].kind == HTTP_FIELD_UPGRADE) {
				put(&w, LIT("\r\nUpgrade: "));
				put(&w, base + h->fields[i].value.off, h->fields[i].value.len);
				break;
			}
		}
		put(&w, LIT("\r\nConnection: upgrade\r\n\r\n"));
	} else if (mode == HTTP_CONN_CLOSE)
		put(&w, LIT("\r\nConnection: close\r\n\r\n"));
	else if (mode == HTTP_CONN_KEEP_10)
		put(&w, LIT("\r\nConnection: keep-alive\r\n\r\n"));
	else
		put(&w, LIT("\r\n\r\n"));
	return writer_close(&w);
}

const char *
http_request_refusal(const char *base, size_t len, const struct http_head *h, bool http10,
    bool *has_host)
{
	const char *lf;
	int hosts = 0, tes = 0;

	for (uint16_t i = 0; i < h->nfields; i++) {
		const struct http_field *f = &h->fields[i];
		const char *v = base + f->value.off;
		size_t vlen = f->value.len;

		if (f->name.len == 0)
			return "A header line has no name";
		if (f->kind == HTTP_FIELD_HOST)
			hosts++;
		if (f->kind != HTTP_FIELD_TRANSFER_ENCODING)
			continue;
		/* Only exactly "chunked", once: any other coding is framed differently elsewhere. */
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (++tes > 1 || vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
			return "Transfer-Encoding other than a single \"chunked\" is not supported";
	}
	*has_host = hosts > 0;
	if (hosts > 1)
		return "The request has more than one Host header";
	if (hosts == 0 && !http10)
		return "An HTTP/1.1 request needs a Host header";
	/*
	 * Every line must end in CRLF (a bare LF is a line end to some parsers
	 * only) and none may start with white space (obs-fold, which llhttp joins
	 * silently when the folded value's first line is empty).
	 */
	for (lf = memchr(base, '\n', len); lf != NULL;
	    lf = memchr(lf + 1, '\n', len - (size_t)(lf + 1 - base))) {
		if (lf == base || lf[-1] != '\r')
			return "A line of the request head ends in a bare LF";
		if (lf + 1 < base + len && (lf[1] == ' ' || lf[1] == '\t'))
			return "Folded header lines (obs-fold) are not accepted";
	}
	/* Exactly uri-host [":" port]: the backend and X-Forwarded-Host get nothing else. */
	for (uint16_t i = 0; hosts == 1 && i < h->nfields; i++)
		if (h->fields[i].kind == HTTP_FIELD_HOST)
			return uri_host_check(base + h->fields[i].value.off, h->fields[i].value.len);
	return NULL;
}

uint32_t
http_drop_underscore_fields(const char *base, struct http_head *h)
{
	uint32_t n = 0;

	for (uint16_t i = 0; i < h->nfields; i++) {
		struct http_field *f = &h->fields[i];

		if (!f->hop && memchr(base + f->name.off, '_', f->name.len) != NULL) {
			f->hop = true;
			n++;
		}
	}
	return n;
}

bool
http_reason_valid(const char *reason, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)reason[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return false;
	}
	return true;
}
