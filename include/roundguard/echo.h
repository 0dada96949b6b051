/* roundguard-echo's request handling: a small llhttp server that reflects JSON. */
#ifndef ROUNDGUARD_ECHO_H
#define ROUNDGUARD_ECHO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roundguard/ws.h"

struct json_tokener;

struct echo_options {
	uint64_t max_body;	/* bytes; larger bodies get 413 */
	bool access_log;	/* one info line per request */
};

enum echo_route {
	ECHO_ROUTE_NOT_FOUND,
	ECHO_ROUTE_REFLECT,
	ECHO_ROUTE_LIVE,
	ECHO_ROUTE_WS,		/* GET /ws: the WebSocket echo */
};

const char *echo_route_str(enum echo_route route);

/* Route a request target; the query string is ignored. */
enum echo_route echo_route_match(const char *target, size_t len);

/*
 * The Allow header value when method (an llhttp method number) is not
 * allowed on route, NULL when it is (or the route does not exist).
 */
const char *echo_route_disallows(enum echo_route route, int method);

/* Whether the query string of target has name=1 among its &-separated items. */
bool echo_query_flag(const char *target, size_t len, const char *name);

/* What the head of a GET /ws said, for the opening handshake (RFC 6455 4.2.1). */
struct echo_ws_head {
	bool http11;		/* HTTP/1.1 or later */
	bool upgrade;		/* an Upgrade header lists "websocket" */
	bool connection_upgrade;	/* Connection lists "upgrade" */
	bool host;		/* a Host header came */
	bool body;		/* Content-Length above 0, or chunked */
	bool version13;		/* Sec-WebSocket-Version is exactly 13 */
	unsigned nversions;	/* Sec-WebSocket-Version headers */
	unsigned nkeys;		/* Sec-WebSocket-Key headers */
	char key[WS_KEY_LEN + 1];	/* the key, when 24 bytes long; else empty */
};

/*
 * 0 when h is a valid opening handshake, else the status to answer with:
 * 426 for a version other than 13 (with "Sec-WebSocket-Version: 13"), 400
 * for anything else; *why is then the error body's description.
 */
int echo_ws_refusal(const struct echo_ws_head *h, const char **why);

enum echo_json_state {
	ECHO_JSON_PARTIAL,	/* nothing or an incomplete value so far */
	ECHO_JSON_DONE,		/* one complete value, only whitespace after it */
	ECHO_JSON_INVALID,
};

/* Position in a JSON number, for the checks json-c leaves out. */
enum echo_num_state {
	ECHO_NUM_NONE,		/* not in a number */
	ECHO_NUM_SIGN,		/* after "-" */
	ECHO_NUM_ZERO,		/* integer part is "0": no digit may follow */
	ECHO_NUM_INT,
	ECHO_NUM_DOT,		/* after "." */
	ECHO_NUM_FRAC,
	ECHO_NUM_E,		/* after "e" */
	ECHO_NUM_ESIGN,		/* after "e+" or "e-" */
	ECHO_NUM_EXP,
};

/*
 * Streaming JSON validation, fed the body piece by piece as it arrives so
 * that it is never copied into one block. Exactly one JSON value (any type)
 * with optional surrounding whitespace is valid.
 */
struct echo_json {
	struct json_tokener *tok;
	enum echo_json_state state;
	bool in_string;		/* lexical state of the checks json-c omits */
	bool escaped;
	enum echo_num_state num;	/* where in a number (RFC 8259 grammar) */
};

int echo_json_init(struct echo_json *ej);
void echo_json_reset(struct echo_json *ej);
void echo_json_feed(struct echo_json *ej, const char *buf, size_t len);
bool echo_json_finish(struct echo_json *ej);
void echo_json_free(struct echo_json *ej);

/*
 * Serve HTTP on the listening socket fd until SIGTERM or SIGINT, then stop
 * accepting, finish the requests in flight (within a second) and return 0;
 * returns 1 when the event loop cannot be set up.
 */
int echo_worker_run(int fd, const struct echo_options *opts);

#endif
