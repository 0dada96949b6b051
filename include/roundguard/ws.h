/* RFC 6455 WebSocket pieces: the incremental frame parser, frame headers, the accept key, UTF-8. */
#ifndef ROUNDGUARD_WS_H
#define ROUNDGUARD_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_HEADER_MAX	14	/* 2 + 8 (64-bit length) + 4 (mask) */
#define WS_CONTROL_MAX	125	/* largest control frame payload */
#define WS_KEY_LEN	24	/* Sec-WebSocket-Key: base64 of 16 bytes */
#define WS_ACCEPT_LEN	28	/* Sec-WebSocket-Accept: base64 of a SHA-1 digest */

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xa,
};

/* The close codes this module produces (RFC 6455 7.4.1). */
enum {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_NO_STATUS = 1005,	/* a close frame without a code; never sent as a code */
	WS_CLOSE_INVALID_DATA = 1007,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
};

/*
 * Streaming UTF-8 validation (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF): a sequence may be cut anywhere between feeds.
 */
struct ws_utf8 {
	uint8_t need;		/* continuation bytes still expected */
	uint8_t lo, hi;		/* the range the next continuation byte must be in */
};

void ws_utf8_init(struct ws_utf8 *u);

/* 0 when buf keeps the text valid so far, -1 when not (then u is spent: init it again). */
int ws_utf8_feed(struct ws_utf8 *u, const uint8_t *buf, size_t len);

/* Whether the text fed so far ends at a character boundary. */
bool ws_utf8_complete(const struct ws_utf8 *u);

/* Whether code may be sent in a close frame: 1000-1003, 1007-1014, 3000-4999. */
bool ws_close_code_valid(unsigned code);

/* Which side's frames the parser reads: a server reads masked client frames. */
enum ws_role {
	WS_SERVER,
	WS_CLIENT,
};

enum ws_event_type {
	WS_EV_DATA,	/* a piece of a text or binary message */
	WS_EV_PING,
	WS_EV_PONG,
	WS_EV_CLOSE,
};

struct ws_event {
	enum ws_event_type type;
	enum ws_opcode opcode;	/* DATA: the message's, WS_OP_TEXT or WS_OP_BINARY */
	/*
	 * The payload, unmasked. DATA: a piece of the message inside the
	 * caller's buffer (possibly empty); control frames: the whole payload,
	 * inside the parser (valid until the next call). CLOSE: the reason only.
	 */
	const uint8_t *data;
	size_t len;
	bool fin;		/* DATA: this piece ends the message */
	uint16_t code;		/* CLOSE: the status code or WS_CLOSE_NO_STATUS; error: the code to close with */
};

/*
 * The frame parser: fed bytes in pieces of any size, it keeps no payload
 * but a control frame's (125 bytes). It checks what RFC 6455 section 5
 * makes a MUST, with no extension negotiated: masking by role, RSV bits,
 * opcodes, control frames short and unfragmented, continuation order,
 * minimal 16/64-bit lengths, UTF-8 of text messages and close reasons, close
 * codes; and that no message is larger than max_message bytes.
 */
struct ws_parser {
	enum ws_role role;
	uint64_t max_message;
	int state;
	const char *error;	/* why it failed, for later calls */
	uint16_t error_code;

	/* The frame being read. */
	uint8_t hdr[WS_HEADER_MAX];
	uint8_t hdr_len, hdr_need;
	uint8_t opcode;
	bool fin;
	bool masked;
	uint8_t mask[4];
	uint64_t frame_len, frame_done;

	/* The data message being read, which may span frames. */
	bool in_message;
	uint8_t msg_opcode;
	uint64_t msg_len;
	struct ws_utf8 utf8;

	uint8_t control[WS_CONTROL_MAX];
};

void ws_parser_init(struct ws_parser *p, enum ws_role role, uint64_t max_message);

/*
 * Parse buf[0, len), unmasking payload bytes in place; *used is how many
 * bytes were taken. Returns 1 with an event in *ev (call again with the
 * rest), 0 when every byte was taken without completing one, -1 on a
 * protocol error: ev->code is the close code to answer with (1002, 1007 or
 * 1009) and err says why. An error is final: later calls return it again.
 * After a close event the peer may send nothing more: later bytes are taken
 * and ignored.
 */
int ws_parse(struct ws_parser *p, uint8_t *buf, size_t len, size_t *used, struct ws_event *ev,
    char *err, size_t errlen);

/*
 * Write a frame header to out (at most WS_HEADER_MAX bytes) and return its
 * length; mask is NULL for a server's frame, 4 bytes for a client's (the
 * payload is then to be masked with ws_mask).
 */
size_t ws_frame_header(uint8_t *out, bool fin, enum ws_opcode op, uint64_t len,
    const uint8_t *mask);

/* XOR buf with mask, as the payload bytes from offset on in their frame. */
void ws_mask(uint8_t *buf, size_t len, const uint8_t mask[4], uint64_t offset);

/*
 * A server's whole close frame (at most 4 bytes) carrying code, or no code
 * for WS_CLOSE_NO_STATUS; returns its length.
 */
size_t ws_close_frame(uint8_t *out, uint16_t code);

/* Whether key is a Sec-WebSocket-Key: canonical base64 of 16 bytes. */
bool ws_key_valid(const char *key, size_t len);

/*
 * Sec-WebSocket-Accept for key: base64(SHA-1(key + the RFC's GUID)), written
 * NUL-terminated to out (WS_ACCEPT_LEN + 1 bytes). 0, or -1 with err set
 * when key is not valid.
 */
int ws_accept_key(const char *key, size_t len, char *out, char *err, size_t errlen);

/* Whether token is one of the comma-separated items of list, case-insensitively. */
bool ws_token_listed(const char *list, size_t len, const char *token);

#endif
