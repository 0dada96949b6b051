/* roundguard-echo's request handling: a small llhttp server that reflects JSON. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <json-c/json_tokener.h>
#include <json-c/json_object.h>
#include <llhttp.h>

#include "roundguard/echo.h"
#include "roundguard/http.h"
#include "roundguard/log.h"
#include "roundguard/net.h"
#include "roundguard/parse.h"
#include "roundguard/ws.h"

#define ECHO_READ_CHUNK		16384
#define ECHO_TARGET_MAX		8192
#define ECHO_HEAD_MAX		(64 * 1024)
#define ECHO_OUT_HIGH		(1024 * 1024)	/* stop reading while this much is unsent */
#define ECHO_TIMEOUT_SEC	60
/* As roundguardd's proxy.tunnel_timeout: an idle echo must not end a tunnel test first. */
#define ECHO_WS_IDLE_SEC	3600
#define ECHO_LINGER_SEC		2
#define ECHO_SHUTDOWN_MSEC	900
#define ECHO_JSON_DEPTH		512

const char *
echo_route_str(enum echo_route route)
{
	switch (route) {
	case ECHO_ROUTE_REFLECT: return "reflect";
	case ECHO_ROUTE_LIVE: return "live";
	case ECHO_ROUTE_WS: return "ws";
	default: return "not found";
	}
}

enum echo_route
echo_route_match(const char *target, size_t len)
{
	const char *q = memchr(target, '?', len);

	if (q != NULL)
		len = (size_t)(q - target);
	if (len == 8 && memcmp(target, "/reflect", 8) == 0)
		return ECHO_ROUTE_REFLECT;
	if (len == 5 && memcmp(target, "/live", 5) == 0)
		return ECHO_ROUTE_LIVE;
	if (len == 3 && memcmp(target, "/ws", 3) == 0)
		return ECHO_ROUTE_WS;
	return ECHO_ROUTE_NOT_FOUND;
}

const char *
echo_route_disallows(enum echo_route route, int method)
{
	switch (route) {
	case ECHO_ROUTE_REFLECT:
		return method == HTTP_POST ? NULL : "POST";
	case ECHO_ROUTE_LIVE:
		return method == HTTP_GET || method == HTTP_HEAD ? NULL : "GET, HEAD";
	case ECHO_ROUTE_WS:
		return method == HTTP_GET ? NULL : "GET";
	default:
		return NULL;
	}
}

bool
echo_query_flag(const char *target, size_t len, const char *name)
{
	const char *p = memchr(target, '?', len), *end = target + len;
	size_t nlen = strlen(name);

	if (p == NULL)
		return false;
	for (p++; p < end; ) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp != NULL ? amp : end;

		if ((size_t)(e - p) == nlen + 2 && memcmp(p, name, nlen) == 0 &&
		    p[nlen] == '=' && p[nlen + 1] == '1')
			return true;
		p = e + 1;
	}
	return false;
}

int
echo_ws_refusal(const struct echo_ws_head *h, const char **why)
{
	if (!h->upgrade || !h->connection_upgrade) {
		*why = "A WebSocket handshake needs Upgrade: websocket and Connection: upgrade";
		return 400;
	}
	if (!h->http11) {
		*why = "A WebSocket handshake needs HTTP/1.1";
		return 400;
	}
	if (h->nversions != 1) {
		*why = "A WebSocket handshake needs one Sec-WebSocket-Version header";
		return 400;
	}
	/* RFC 6455 4.2.2: the versions understood go back in the 426. */
	if (!h->version13) {
		*why = "Only WebSocket version 13 is supported";
		return 426;
	}
	if (h->nkeys != 1 || !ws_key_valid(h->key, strlen(h->key))) {
		*why = "A WebSocket handshake needs one Sec-WebSocket-Key: base64 of 16 bytes";
		return 400;
	}
	if (!h->host) {
		*why = "A WebSocket handshake needs a Host header";
		return 400;
	}
	if (h->body) {
		*why = "A WebSocket handshake has no body";
		return 400;
	}
	return 0;
}

int
echo_json_init(struct echo_json *ej)
{
	ej->tok = json_tokener_new_ex(ECHO_JSON_DEPTH);
	if (ej->tok == NULL)
		return -1;
	json_tokener_set_flags(ej->tok, JSON_TOKENER_STRICT);
	ej->state = ECHO_JSON_PARTIAL;
	ej->in_string = ej->escaped = false;
	ej->num = ECHO_NUM_NONE;
	return 0;
}

void
echo_json_reset(struct echo_json *ej)
{
	json_tokener_reset(ej->tok);
	ej->state = ECHO_JSON_PARTIAL;
	ej->in_string = ej->escaped = false;
	ej->num = ECHO_NUM_NONE;
}

static bool
all_space(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\r' && buf[i] != '\n')
			return false;
	return true;
}

/*
 * json-c 0.16 in strict mode still lets through things that are not JSON:
 * single-quoted keys, "Infinity", "1.", "00", raw control bytes inside
 * strings, and, since its number state restarts with each piece it is fed,
 * "[1-]" split before the "-". This lexical pass rejects them, following the
 * RFC 8259 number grammar; json-c checks the structure.
 */
static bool
lexically_invalid(struct echo_json *ej, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];
		bool digit = c >= '0' && c <= '9';

		if (ej->in_string) {
			if (ej->escaped)
				ej->escaped = false;
			else if (c == '\\')
				ej->escaped = true;
			else if (c == '"')
				ej->in_string = false;
			else if (c < 0x20)
				return true;
			continue;
		}
		switch (ej->num) {
		case ECHO_NUM_SIGN:
			if (!digit)
				return true;
			ej->num = c == '0' ? ECHO_NUM_ZERO : ECHO_NUM_INT;
			continue;
		case ECHO_NUM_ZERO:
		case ECHO_NUM_INT:
		case ECHO_NUM_FRAC:
			if (digit && ej->num == ECHO_NUM_ZERO)
				return true;		/* leading zero */
			if (digit)
				continue;
			if (c == '.' && ej->num != ECHO_NUM_FRAC) {
				ej->num = ECHO_NUM_DOT;
				continue;
			}
			if (c == 'e' || c == 'E') {
				ej->num = ECHO_NUM_E;
				continue;
			}
			break;				/* the number ended; c is looked at below */
		case ECHO_NUM_DOT:
			if (!digit)
				return true;
			ej->num = ECHO_NUM_FRAC;
			continue;
		case ECHO_NUM_E:
			if (c == '+' || c == '-') {
				ej->num = ECHO_NUM_ESIGN;
				continue;
			}
			/* FALLTHROUGH */
		case ECHO_NUM_ESIGN:
			if (!digit)
				return true;
			ej->num = ECHO_NUM_EXP;
			continue;
		case ECHO_NUM_EXP:
			if (digit)
				continue;
			break;
		case ECHO_NUM_NONE:
			break;
		}
		/* A number cannot run straight into another ("2-3"). */
		if (c == '-' && ej->num != ECHO_NUM_NONE)
			return true;
		ej->num = ECHO_NUM_NONE;
		if (c == '-')
			ej->num = ECHO_NUM_SIGN;
		else if (digit)
			ej->num = c == '0' ? ECHO_NUM_ZERO : ECHO_NUM_INT;
		else if (c == '.' || c == '+' || c == '\'' ||
		    (isalpha(c) && strchr("truefalsn", c) == NULL))
			return true;
		else if (c == '"')
			ej->in_string = true;
	}
	return false;
}

void
echo_json_feed(struct echo_json *ej, const char *buf, size_t len)
{
	struct json_object *obj;
	size_t used;

	if (ej->state == ECHO_JSON_INVALID || len == 0)
		return;
	if (ej->state == ECHO_JSON_DONE) {
		if (!all_space(buf, len))
			ej->state = ECHO_JSON_INVALID;
		return;
	}
	if (memchr(buf, '\0', len) != NULL || lexically_invalid(ej, buf, len)) {
		/* json-c would also take a NUL byte as the end of the input. */
		ej->state = ECHO_JSON_INVALID;
		return;
	}
	while (len > INT32_MAX) {
		echo_json_feed(ej, buf, INT32_MAX);
		buf += INT32_MAX;
		len -= INT32_MAX;
		if (ej->state != ECHO_JSON_PARTIAL) {
			echo_json_feed(ej, buf, len);
			return;
		}
	}
	/* A JSON null parses to a NULL object: success is told by the error code. */
	obj = json_tokener_parse_ex(ej->tok, buf, (int)len);
	json_object_put(obj);
	switch (json_tokener_get_error(ej->tok)) {
	case json_tokener_success:
		used = json_tokener_get_parse_end(ej->tok);
		ej->state = all_space(buf + used, len - used) ? ECHO_JSON_DONE : ECHO_JSON_INVALID;
		break;
	case json_tokener_continue:
		break;
	default:
		ej->state = ECHO_JSON_INVALID;
	}
}

bool
echo_json_finish(struct echo_json *ej)
{
	/* A number cut off after "-", ".", "e" or "e+" is no number. */
	if (ej->num == ECHO_NUM_SIGN || ej->num == ECHO_NUM_DOT || ej->num == ECHO_NUM_E ||
	    ej->num == ECHO_NUM_ESIGN)
		ej->state = ECHO_JSON_INVALID;
	if (ej->state != ECHO_JSON_PARTIAL)
		return ej->state == ECHO_JSON_DONE;
	/* A top-level number or literal is complete only once the input ends. */
	json_object_put(json_tokener_parse_ex(ej->tok, "", 1));
	ej->state = json_tokener_get_error(ej->tok) == json_tokener_success ?
	    ECHO_JSON_DONE : ECHO_JSON_INVALID;
	return ej->state == ECHO_JSON_DONE;
}

void
echo_json_free(struct echo_json *ej)
{
	if (ej->tok != NULL)
		json_tokener_free(ej->tok);
	ej->tok = NULL;
}

struct echo_conn {
	LIST_ENTRY(echo_conn) entry;
	int fd;
	struct event rev;
	struct event wev;
	llhttp_t parser;
	struct evbuffer *out;
	struct evbuffer *body;
	struct echo_json json;

	/* The request being parsed. */
	char target[ECHO_TARGET_MAX];
	size_t target_len;
	size_t head_bytes;
	char field[32];			/* the longest name looked at is 21 bytes */
	size_t field_len;
	char value[64];
	size_t value_len;
	bool value_cut;			/* value holds only the first bytes */
	struct echo_ws_head ws_head;
	uint64_t body_len;
	int error_status;		/* set when a callback rejects the request */
	bool in_request;
	bool want_body;
	bool expect_continue;
	struct timespec started;

	bool close_after;		/* close once out is flushed */
	bool lingering;			/* written out, discarding input until EOF */
	bool peer_closed;		/* EOF seen: flush what is left, then close */
	bool reading_paused;
	char peer[64];

	/* After a 101 to GET /ws: WebSocket frames, reassembled into body. */
	bool ws_accepted;		/* the 101 is queued: switch once llhttp stops */
	bool ws;
	struct ws_parser wsp;
};

static struct {
	struct event_base *base;
	struct echo_options opts;
	int listen_fd;
	struct event listen_ev;
	struct event *sigterm, *sigint, *deadline;
	LIST_HEAD(, echo_conn) conns;
	size_t nconns;
	bool stopping;
	llhttp_settings_t settings;
} echo;

static void conn_close(struct echo_conn *c);
static bool conn_flush(struct echo_conn *c);

static void
maybe_finish_shutdown(void)
{
	if (echo.stopping && echo.nconns == 0)
		event_base_loopbreak(echo.base);
}

static void
conn_close(struct echo_conn *c)
{
	event_del(&c->rev);
	event_del(&c->wev);
	close(c->fd);
	evbuffer_free(c->out);
	evbuffer_free(c->body);
	echo_json_free(&c->json);
	LIST_REMOVE(c, entry);
	echo.nconns--;
	free(c);
	maybe_finish_shutdown();
}

static void
access_log(struct echo_conn *c, int status, size_t bytes)
{
	struct timespec now;
	char st[8], nbytes[24], dur[32];
	int64_t ns;

	if (!echo.opts.access_log || !log_enabled(LOG_LEVEL_INFO))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (int64_t)(now.tv_sec - c->started.tv_sec) * 1000000000 +
	    (now.tv_nsec - c->started.tv_nsec);
	snprintf(st, sizeof(st), "%d", status);
	snprintf(nbytes, sizeof(nbytes), "%zu", bytes);
	format_duration(dur, sizeof(dur), ns);
	log_info("request", "client", c->peer,
	    "method", llhttp_method_name((llhttp_method_t)c->parser.method),
	    "path", c->target, "status", st, "bytes", nbytes, "duration", dur, NULL);
}

/*
 * Queue an error answer, with extra header lines (or NULL); the connection
 * closes after it unless keep_alive.
 */
static void
conn_error(struct echo_conn *c, int status, const char *description, const char *extra,
    bool keep_alive)
{
	bool head = c->in_request && c->parser.method == HTTP_HEAD;

	http_error_response(c->out, status, NULL, description, extra, keep_alive, head);
	if (!keep_alive)
		c->close_after = true;
	access_log(c, status, 0);
}

static int
on_message_begin(llhttp_t *p)
{
	struct echo_conn *c = p->data;

	c->target_len = 0;
	c->head_bytes = 0;
	c->field_len = c->value_len = 0;
	c->body_len = 0;
	c->in_request = true;
	c->want_body = false;
	c->expect_continue = false;
	memset(&c->ws_head, 0, sizeof(c->ws_head));
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	return 0;
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
	struct echo_conn *c = p->data;

	if (c->target_len + len >= sizeof(c->target)) {
		c->error_status = 414;
		return -1;
	}
	memcpy(c->target + c->target_len, at, len);
	c->target_len += len;
	c->target[c->target_len] = '\0';
	return 0;
}

static int
count_head(struct echo_conn *c, size_t len)
{
	c->head_bytes += len;
	if (c->head_bytes > ECHO_HEAD_MAX) {
		c->error_status = 431;
		return -1;
	}
	return 0;
}

/*
 * Keep the first bytes of a header name or value: only Expect and the
 * WebSocket handshake's headers matter here, all short. True when cut.
 */
static bool
append_capped(char *dst, size_t cap, size_t *used, const char *at, size_t len)
{
	size_t room = cap - 1 - *used;
	bool cut = len > room;

	if (cut)
		len = room;
	memcpy(dst + *used, at, len);
	*used += len;
	dst[*used] = '\0';
	return cut;
}

static int
on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct echo_conn *c = p->data;

	append_capped(c->field, sizeof(c->field), &c->field_len, at, len);
	return count_head(c, len);
}

static int
on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct echo_conn *c = p->data;

	if (append_capped(c->value, sizeof(c->value), &c->value_len, at, len))
		c->value_cut = true;
	return count_head(c, len);
}

/* Gather what the WebSocket handshake needs; Connection is llhttp's F_CONNECTION_UPGRADE. */
static void
note_ws_header(struct echo_conn *c)
{
	struct echo_ws_head *h = &c->ws_head;
	size_t len = c->value_len;

	/* Trailing white space is not part of a field value (RFC 9110 5.5). */
	while (len > 0 && (c->value[len - 1] == ' ' || c->value[len - 1] == '\t'))
		len--;
	if (strcasecmp(c->field, "host") == 0) {
		h->host = true;
	} else if (strcasecmp(c->field, "upgrade") == 0) {
		if (!c->value_cut && ws_token_listed(c->value, len, "websocket"))
			h->upgrade = true;
	} else if (strcasecmp(c->field, "sec-websocket-version") == 0) {
		h->nversions++;
		h->version13 = !c->value_cut && len == 2 && memcmp(c->value, "13", 2) == 0;
	} else if (strcasecmp(c->field, "sec-websocket-key") == 0) {
		h->nkeys++;
		h->key[0] = '\0';
		if (!c->value_cut && len == WS_KEY_LEN) {
			memcpy(h->key, c->value, WS_KEY_LEN);
			h->key[WS_KEY_LEN] = '\0';
		}
	}
}

static int
on_header_value_complete(llhttp_t *p)
{
	struct echo_conn *c = p->data;

	if (strcasecmp(c->field, "expect") == 0) {
		if (strcasecmp(c->value, "100-continue") != 0) {
			c->error_status = 417;
			return -1;
		}
		c->expect_continue = true;
	}
	note_ws_header(c);
	c->field_len = c->value_len = 0;
	c->field[0] = c->value[0] = '\0';
	c->value_cut = false;
	return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct echo_conn *c = p->data;
	enum echo_route route = echo_route_match(c->target, c->target_len);

	c->want_body = route == ECHO_ROUTE_REFLECT && p->method == HTTP_POST;
	c->ws_head.http11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
	c->ws_head.connection_upgrade = p->flags & F_CONNECTION_UPGRADE;
	c->ws_head.body = (p->flags & F_CHUNKED) ||
	    ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
	if (c->want_body && (p->flags & F_CONTENT_LENGTH) && p->content_length > echo.opts.max_body) {
		c->error_status = 413;
		return -1;
	}
	if (c->want_body) {
		evbuffer_drain(c->body, evbuffer_get_length(c->body));
		echo_json_reset(&c->json);
		if (c->expect_continue && p->http_major == 1 && p->http_minor >= 1)
			evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct echo_conn *c = p->data;

	if (!c->want_body)
		return 0;
	c->body_len += len;
	if (c->body_len > echo.opts.max_body) {
		c->error_status = 413;
		return -1;
	}
	echo_json_feed(&c->json, at, len);
	return evbuffer_add(c->body, at, len);
}

/* Answer GET /ws: a 101 and the switch to frames, or 400 / 426. */
static void
ws_handshake(struct echo_conn *c, bool keep_alive)
{
	char accept[WS_ACCEPT_LEN + 1], err[128];
	const char *why;
	int status = echo_ws_refusal(&c->ws_head, &why);

	/* An upgrade request refused is closed: its client may already send frames. */
	if (c->parser.upgrade)
		keep_alive = false;
	if (status == 426) {
		conn_error(c, status, why, "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
		    keep_alive);
		return;
	}
	if (status != 0) {
		conn_error(c, status, why, NULL, keep_alive);
		return;
	}
	if (ws_accept_key(c->ws_head.key, WS_KEY_LEN, accept, err, sizeof(err)) == -1) {
		log_error("cannot answer a WebSocket handshake", "error", err, NULL);
		conn_error(c, 500, NULL, NULL, false);
		return;
	}
	/* No Sec-WebSocket-Extensions: nothing is negotiated, permessage-deflate included. */
	evbuffer_add_printf(c->out, "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
	    accept);
	access_log(c, 101, 0);
	if (echo_query_flag(c->target, c->target_len, "close_after_101")) {
		c->close_after = true;
		return;
	}
	if (echo_query_flag(c->target, c->target_len, "greet")) {
		uint8_t h[WS_HEADER_MAX];

		evbuffer_add(c->out, h, ws_frame_header(h, true, WS_OP_TEXT, 5, NULL));
		evbuffer_add(c->out, "hello", 5);
	}
	c->ws_accepted = true;
}

static int
on_message_complete(llhttp_t *p)
{
	struct echo_conn *c = p->data;
	enum echo_route route = echo_route_match(c->target, c->target_len);
	const char *allow = echo_route_disallows(route, p->method);
	bool keep_alive = llhttp_should_keep_alive(p) && !echo.stopping;
	char extra[64];
	size_t len;

	c->in_request = false;
	if (route == ECHO_ROUTE_NOT_FOUND) {
		conn_error(c, 404, NULL, NULL, keep_alive);
	} else if (allow != NULL) {
		snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
		conn_error(c, 405, NULL, extra, keep_alive);
	} else if (route == ECHO_ROUTE_WS) {
		ws_handshake(c, keep_alive);
	} else if (route == ECHO_ROUTE_LIVE) {
		evbuffer_add_printf(c->out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n%s\r\n",
		    keep_alive ? (p->http_minor == 0 ? "Connection: keep-alive\r\n" : "") :
		    "Connection: close\r\n");
		c->close_after = !keep_alive;
		access_log(c, 200, 0);
	} else if (!echo_json_finish(&c->json) || c->body_len == 0) {
		conn_error(c, 400, "The request body could not be parsed as JSON", NULL,
		    keep_alive);
	} else {
		len = evbuffer_get_length(c->body);
		evbuffer_add_printf(c->out, "HTTP/1.1 200 OK\r\n"
		    "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n", len,
		    keep_alive ? (p->http_minor == 0 ? "Connection: keep-alive\r\n" : "") :
		    "Connection: close\r\n");
		evbuffer_add_buffer(c->out, c->body);
		c->close_after = !keep_alive;
		access_log(c, 200, len);
	}
	/* Nothing after a closing answer may be parsed. */
	return c->close_after ? HPE_PAUSED : 0;
}

static void
conn_set_reading(struct echo_conn *c, bool on)
{
	struct timeval tv = { c->ws ? ECHO_WS_IDLE_SEC : ECHO_TIMEOUT_SEC, 0 };

	if (on == !c->reading_paused)
		return;
	c->reading_paused = !on;
	if (on)
		event_add(&c->rev, &tv);
	else
		event_del(&c->rev);
}

static void
conn_start_linger(struct echo_conn *c)
{
	struct timeval tv = { ECHO_LINGER_SEC, 0 };

	/*
	 * Closing with unread input makes the kernel send a reset, which can
	 * destroy the answer before the client reads it (a 413 while the body is
	 * still coming): half-close, then discard input until EOF.
	 */
	c->lingering = true;
	shutdown(c->fd, SHUT_WR);
	c->reading_paused = false;
	event_add(&c->rev, &tv);
}

/* Write what is queued; false when the connection is gone. */
static bool
conn_flush(struct echo_conn *c)
{
	while (evbuffer_get_length(c->out) > 0) {
		if (evbuffer_write(c->out, c->fd) < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				event_add(&c->wev, NULL);
				if (evbuffer_get_length(c->out) > ECHO_OUT_HIGH)
					conn_set_reading(c, false);
				return true;
			}
			conn_close(c);
			return false;
		}
	}
	event_del(&c->wev);
	if (c->peer_closed || (echo.stopping && !c->in_request && !c->close_after)) {
		conn_close(c);
		return false;
	}
	if (c->close_after) {
		if (!c->lingering)
			conn_start_linger(c);
		return true;
	}
	conn_set_reading(c, true);
	return true;
}

/* Send a close frame (code WS_CLOSE_NO_STATUS: none), then close once it is written. */
static void
conn_ws_close(struct echo_conn *c, uint16_t code)
{
	uint8_t f[4];

	evbuffer_add(c->out, f, ws_close_frame(f, code));
	/* What the client sends from now on is discarded, a half-gathered message too. */
	evbuffer_drain(c->body, evbuffer_get_length(c->body));
	c->close_after = true;
}

/* Queue one unfragmented frame from the server. */
static int
ws_send(struct echo_conn *c, enum ws_opcode op, const void *data, size_t len)
{
	uint8_t h[WS_HEADER_MAX];

	if (evbuffer_add(c->out, h, ws_frame_header(h, true, op, len, NULL)) == -1)
		return -1;
	return evbuffer_add(c->out, data, len);
}

/*
 * Frames from the client: each message is echoed whole, as one frame, once
 * its last fragment is in (its pieces wait in body, so the text check is
 * over before anything goes back); pings are answered at once, even
 * between the fragments of a message.
 */
static void
conn_ws_feed(struct echo_conn *c, uint8_t *buf, size_t len)
{
	uint8_t h[WS_HEADER_MAX];
	struct ws_event ev;
	char err[128];
	size_t used, n;
	int r = 0;

	while (len > 0 && !c->close_after) {
		r = ws_parse(&c->wsp, buf, len, &used, &ev, err, sizeof(err));
		buf += used;
		len -= used;
		if (r == 0)
			break;
		if (r == -1) {
			log_debug("websocket protocol error", "client", c->peer, "error", err, NULL);
			conn_ws_close(c, ev.code);
			break;
		}
		switch (ev.type) {
		case WS_EV_DATA:
			if (ev.fin && evbuffer_get_length(c->body) == 0) {
				/* The whole message in one piece: straight back. */
				r = ws_send(c, ev.opcode, ev.data, ev.len);
				break;
			}
			r = evbuffer_add(c->body, ev.data, ev.len);
			if (r == 0 && ev.fin) {
				n = evbuffer_get_length(c->body);
				r = evbuffer_add(c->out, h, ws_frame_header(h, true, ev.opcode, n, NULL));
				if (r == 0)
					r = evbuffer_add_buffer(c->out, c->body);
			}
			break;
		case WS_EV_PING:
			r = ws_send(c, WS_OP_PONG, ev.data, ev.len);
			break;
		case WS_EV_PONG:
			break;		/* unsolicited: nothing to do (RFC 6455 5.5.3) */
		case WS_EV_CLOSE:
			conn_ws_close(c, ev.code);
			break;
		}
		if (r == -1) {
			log_error("out of memory for a WebSocket message", "client", c->peer, NULL);
			conn_ws_close(c, WS_CLOSE_INTERNAL);
		}
	}
}

/* The 101 is queued: what follows on the connection is WebSocket frames. */
static void
conn_ws_begin(struct echo_conn *c)
{
	struct timeval tv = { ECHO_WS_IDLE_SEC, 0 };

	c->ws = true;
	if (!c->reading_paused)
		event_add(&c->rev, &tv);	/* the idle timeout from now on */
	ws_parser_init(&c->wsp, WS_SERVER, echo.opts.max_body);
	/* No more requests, so no more JSON: the tokenizer goes. */
	echo_json_free(&c->json);
	if (echo.stopping)
		conn_ws_close(c, WS_CLOSE_GOING_AWAY);
}

static void
conn_parse(struct echo_conn *c, char *buf, size_t len)
{
	llhttp_errno_t e = llhttp_execute(&c->parser, buf, len);
	const char *pos;

	if (e == HPE_OK || e == HPE_PAUSED)
		return;
	if (e == HPE_PAUSED_UPGRADE) {
		if (c->ws_accepted) {
			/* The rest of buf is already frames. */
			pos = llhttp_get_error_pos(&c->parser);
			if (pos == NULL || pos < buf || pos > buf + len)
				pos = buf + len;
			conn_ws_begin(c);
			conn_ws_feed(c, (uint8_t *)buf + (pos - buf), len - (size_t)(pos - buf));
			return;
		}
		/* No other upgrade here: answer what was asked, then close. */
		c->close_after = true;
		return;
	}
	if (c->error_status == 0)
		log_debug("bad request", "client", c->peer, "error", llhttp_errno_name(e),
		    "reason", llhttp_get_error_reason(&c->parser), NULL);
	conn_error(c, c->error_status != 0 ? c->error_status : 400, NULL, NULL, false);
	c->in_request = false;
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct echo_conn *c = arg;
	char buf[ECHO_READ_CHUNK];
	ssize_t n;

	if (what & EV_TIMEOUT) {
		if (c->ws && !c->close_after) {
			conn_ws_close(c, WS_CLOSE_GOING_AWAY);
			conn_flush(c);
			return;
		}
		if (c->in_request && !c->close_after) {
			conn_error(c, 408, NULL, NULL, false);
			conn_flush(c);
			return;
		}
		conn_close(c);
		return;
	}
	for (;;) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n > 0) {
			/* After a closing answer, input is only drained. */
			if (c->close_after)
				continue;
			if (c->ws)
				conn_ws_feed(c, (uint8_t *)buf, (size_t)n);
			else
				conn_parse(c, buf, (size_t)n);
			if ((size_t)n < sizeof(buf))
				break;
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n == -1 || c->lingering) {
			conn_close(c);
			return;
		}
		/* EOF: answer what is complete, then close (WebSocket: even without a close frame). */
		if (!c->close_after && !c->ws && llhttp_finish(&c->parser) != HPE_OK &&
		    c->in_request)
			conn_error(c, 400, NULL, NULL, false);
		c->peer_closed = true;
		conn_set_reading(c, false);
		break;
	}
	conn_flush(c);
}

static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_flush(arg);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct echo_conn *c;
	struct timeval tv = { ECHO_TIMEOUT_SEC, 0 };
	int fd;

	for (int i = 0; i < 64; i++) {
		sslen = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("accept failed", "error", strerror(errno), NULL);
			return;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL || (c->out = evbuffer_new()) == NULL ||
		    (c->body = evbuffer_new()) == NULL || echo_json_init(&c->json) == -1) {
			log_error("out of memory for a new connection", NULL);
			if (c != NULL) {
				if (c->out != NULL)
					evbuffer_free(c->out);
				if (c->body != NULL)
					evbuffer_free(c->body);
				free(c);
			}
			close(fd);
			continue;
		}
		c->fd = fd;
		net_nodelay(fd);
		net_format_sockaddr(c->peer, sizeof(c->peer), (struct sockaddr *)&ss);
		llhttp_init(&c->parser, HTTP_REQUEST, &echo.settings);
		c->parser.data = c;
		event_assign(&c->rev, echo.base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
		event_assign(&c->wev, echo.base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
		event_add(&c->rev, &tv);
		LIST_INSERT_HEAD(&echo.conns, c, entry);
		echo.nconns++;
	}
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(echo.base);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct echo_conn *c, *next;
	struct timeval tv = { 0, ECHO_SHUTDOWN_MSEC * 1000 };

	if (echo.stopping)
		return;
	echo.stopping = true;
	log_info("shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
	event_del(&echo.listen_ev);
	close(echo.listen_fd);
	echo.listen_fd = -1;
	/*
	 * Idle keep-alive connections go now; busy ones after their answer;
	 * WebSocket clients are told with a close frame (1001, going away).
	 */
	for (c = LIST_FIRST(&echo.conns); c != NULL; c = next) {
		next = LIST_NEXT(c, entry);
		if (c->ws && !c->close_after) {
			conn_ws_close(c, WS_CLOSE_GOING_AWAY);
			conn_flush(c);
		} else if (!c->in_request && evbuffer_get_length(c->out) == 0) {
			conn_close(c);
		}
	}
	echo.deadline = evtimer_new(echo.base, deadline_cb, NULL);
	if (echo.deadline != NULL)
		evtimer_add(echo.deadline, &tv);
	maybe_finish_shutdown();
}

int
echo_worker_run(int fd, const struct echo_options *opts)
{
	struct event_config *cfg;
	struct echo_conn *c;

	memset(&echo, 0, sizeof(echo));
	echo.opts = *opts;
	echo.listen_fd = fd;
	LIST_INIT(&echo.conns);
	llhttp_settings_init(&echo.settings);
	echo.settings.on_message_begin = on_message_begin;
	echo.settings.on_url = on_url;
	echo.settings.on_header_field = on_header_field;
	echo.settings.on_header_value = on_header_value;
	echo.settings.on_header_value_complete = on_header_value_complete;
	echo.settings.on_headers_complete = on_headers_complete;
	echo.settings.on_body = on_body;
	echo.settings.on_message_complete = on_message_complete;

	signal(SIGPIPE, SIG_IGN);
	/* Nothing to reload: a stray SIGHUP must not kill a backend. */
	signal(SIGHUP, SIG_IGN);
	if ((cfg = event_config_new()) == NULL)
		return 1;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK | EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	echo.base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (echo.base == NULL) {
		log_error("cannot create the event loop", NULL);
		return 1;
	}
	event_assign(&echo.listen_ev, echo.base, fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	event_add(&echo.listen_ev, NULL);
	echo.sigterm = evsignal_new(echo.base, SIGTERM, stop_cb, NULL);
	echo.sigint = evsignal_new(echo.base, SIGINT, stop_cb, NULL);
	event_add(echo.sigterm, NULL);
	event_add(echo.sigint, NULL);

	event_base_dispatch(echo.base);

	while ((c = LIST_FIRST(&echo.conns)) != NULL)
		conn_close(c);
	if (echo.listen_fd != -1) {
		event_del(&echo.listen_ev);
		close(echo.listen_fd);
	}
	if (echo.deadline != NULL)
		event_free(echo.deadline);
	event_free(echo.sigterm);
	event_free(echo.sigint);
	event_base_free(echo.base);
	return 0;
}
