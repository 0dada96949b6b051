/* HTTP helpers shared by the proxy and the echo daemon: reason phrases and JSON error responses. */
#ifndef ROUNDGUARD_HTTP_H
#define ROUNDGUARD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* More header lines than this in one head is answered with 431. */
#define HTTP_FIELDS_MAX 128

/* A piece of a message head, as an offset into the buffer that holds the head. */
struct http_span {
	uint32_t off;
	uint32_t len;
};

/* What a header is to the proxy, by name (http_head_classify). */
enum http_field_kind {
	HTTP_FIELD_OTHER,
	HTTP_FIELD_HOST,
	HTTP_FIELD_CONNECTION,
	HTTP_FIELD_TRANSFER_ENCODING,
	HTTP_FIELD_X_FORWARDED_FOR,
	HTTP_FIELD_X_FORWARDED_PROTO,
	HTTP_FIELD_X_FORWARDED_HOST,
	HTTP_FIELD_UPGRADE,
	HTTP_FIELD_CONTENT_LENGTH,
};

struct http_field {
	struct http_span name;
	struct http_span value;
	uint8_t kind;		/* enum http_field_kind */
	bool hop;		/* hop-by-hop: never forwarded */
};

/* A parsed request or response head; the bytes stay where llhttp found them. */
struct http_head {
	struct http_span method;	/* requests */
	struct http_span target;	/* requests */
	struct http_span reason;	/* responses */
	int status;			/* responses */
	uint8_t major, minor;
	uint16_t nfields;
	uint32_t fields_size;		/* of all fields as "name: value\r\n" lines */
	struct http_field fields[HTTP_FIELDS_MAX];
};

/* Grow span s by a piece found at off (llhttp hands over pieces as they arrive). */
void http_span_extend(struct http_span *s, uint32_t off, uint32_t len);

/*
 * Set every field's kind and hop flag, and fields_size, in one pass over the
 * head's names (base holds the head); values lose trailing white space. The functions below that take a parsed
 * head need this done first: the proxy looks at each name once, not once
 * per question it asks of it.
 */
void http_head_classify(const char *base, struct http_head *h);

/*
 * Whether a header is hop-by-hop and so never forwarded: Connection,
 * Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Proxy-Authorization,
 * Proxy-Authenticate, or any name listed in a Connection header of the head
 * (which must be classified).
 */
bool http_is_hop_by_hop(const char *base, const struct http_head *h, const char *name,
    size_t len);

/* Case-insensitive name comparison with a NUL-terminated lower-case name. */
bool http_name_is(const char *name, size_t len, const char *lower);

/*
 * What llhttp (strict) lets through but a proxy must not pass on, because a
 * backend could read the head differently (RFC 9112 2.2, 3.2, 5.2, 6.1):
 * Transfer-Encoding other than one exact "chunked", an empty header name,
 * two Hosts, an HTTP/1.1 request without Host, a Host that is not exactly
 * host[:port] (uri_host_check()), a bare LF, obs-fold. base and
 * len hold the whole head. NULL when the head is fine, else the reason for
 * the 400 body; *has_host says whether a Host header was there. h must be
 * classified.
 */
const char *http_request_refusal(const char *base, size_t len, const struct http_head *h,
    bool http10, bool *has_host);

/*
 * Mark every field whose name holds "_" as not forwarded (as hop-by-hop ones
 * are): CGI, WSGI and PHP-FPM map "-" and "_" to the same variable, so
 * "Content_Length" could be read as framing (nginx drops them too). Returns
 * how many were marked.
 */
uint32_t http_drop_underscore_fields(const char *base, struct http_head *h);

/* A reason phrase is HTAB, SP, VCHAR and obs-text only (RFC 9112 4). */
bool http_reason_valid(const char *reason, size_t len);

/* Bytes of "METHOD <prefix><target> HTTP/1.1\r\n". */
#define HTTP_REQUEST_LINE_SIZE(method_len, prefix_len, target_len) \
	((method_len) + 1 + (prefix_len) + (target_len) + 11)

/*
 * Request line for the backend, "METHOD <prefix><target> HTTP/1.1\r\n", into
 * dst (HTTP_REQUEST_LINE_SIZE() bytes); returns that size.
 */
size_t http_put_request_line(char *dst, const char *method, size_t method_len,
    const char *prefix, size_t prefix_len, const char *target, size_t target_len);

/* The same line for the head h, appended to out. */
int http_write_request_line(struct evbuffer *out, const char *base, const struct http_head *h,
    const char *prefix);

/*
 * The request's header block for the backend, blank line included: the
 * client's headers minus hop-by-hop ones (and others marked hop, such as
 * names with "_" or a Host replaced by an absolute-form target's authority),
 * Host kept (or set to fallback_host when no Host is left and it is not NULL),
 * X-Forwarded-For with client_ip appended to any the client sent,
 * X-Forwarded-Proto set ("https" when the client came over TLS), and
 * X-Forwarded-Host set to the Host that goes on.
 */
int http_write_request_fields(struct evbuffer *out, const char *base, const struct http_head *h,
    const char *client_ip, const char *fallback_host, bool tls);

enum http_conn_mode {
	HTTP_CONN_KEEP,		/* HTTP/1.1 client: persistent by default, nothing to say */
	HTTP_CONN_KEEP_10,	/* HTTP/1.0 client that asked for keep-alive */
	HTTP_CONN_CLOSE,	/* this answer ends the connection */
	HTTP_CONN_UPGRADE,	/* a 101: "Connection: upgrade" and the head's own Upgrade */
};

/*
 * Whether the (classified) head asks for a protocol upgrade: a Connection
 * header lists "upgrade" and there is exactly one non-empty Upgrade header,
 * whose value goes to *value and *len.
 */
bool http_upgrade_requested(const char *base, const struct http_head *h, const char **value,
    size_t *len);

/* Whether the comma-separated list value names token (case-insensitive). */
bool http_token_listed(const char *value, size_t vlen, const char *token, size_t tlen);

/* Whether list names at least one token and each of them is listed in set. */
bool http_tokens_within(const char *list, size_t len, const char *set, size_t setlen);

/*
 * The response head for the client: status line, the backend's headers minus
 * hop-by-hop ones (and minus Transfer-Encoding when dechunk), X-Backend-Server,
 * the Connection header mode asks for, blank line.
 */
int http_write_response_head(struct evbuffer *out, const char *base, const struct http_head *h,
    const char *backend, enum http_conn_mode mode, bool dechunk);

/* Reason phrase for a status code ("Not Found"); "Unknown" for codes it does not know. */
const char *http_reason(int status);

/* Default human description used in error bodies for a status Roundguard makes itself. */
const char *http_error_description(int status);

/*
 * The {"title":...,"description":...} body every error made by Roundguard
 * carries, with both strings JSON-escaped. title NULL means the reason phrase,
 * description NULL the default description. Returns the length it needs (like
 * snprintf); the output is NUL-terminated when buflen > 0.
 */
size_t http_error_body(char *buf, size_t buflen, int status, const char *title,
    const char *description);

/*
 * Append a complete HTTP/1.1 error response to out: status line, JSON
 * Content-Type, Content-Length, "Connection: close" unless keep_alive, the
 * extra header lines (each ending in "\r\n", may be NULL) and the JSON body.
 * head_only leaves the body out (for HEAD requests) but keeps its length.
 * Returns 0, or -1 when out could not grow.
 */
int http_error_response(struct evbuffer *out, int status, const char *title,
    const char *description, const char *extra_headers, bool keep_alive, bool head_only);

/* Cached "Date: ..." value (IMF-fixdate) for the current second. */
const char *http_date_now(void);

#endif
