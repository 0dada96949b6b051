/* RFC 6455 WebSocket pieces: the incremental frame parser, frame headers, the accept key, UTF-8. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "roundguard/ws.h"

/* RFC 6455 1.3: appended to the client's key before hashing. */
#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN	36

enum ws_state {
	WS_ST_HEADER,
	WS_ST_PAYLOAD,
	WS_ST_CLOSED,		/* a close frame was read: nothing more is parsed */
	WS_ST_FAILED,
};

void
ws_utf8_init(struct ws_utf8 *u)
{
	u->need = 0;
	u->lo = 0x80;
	u->hi = 0xbf;
}

int
ws_utf8_feed(struct ws_utf8 *u, const uint8_t *buf, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = buf[i];

		if (u->need > 0) {
			if (c < u->lo || c > u->hi)
				return -1;
			u->need--;
			u->lo = 0x80;
			u->hi = 0xbf;
			i++;
			continue;
		}
		/* Text is mostly ASCII: skip it eight bytes at a time. */
		if (c < 0x80) {
			uint64_t w;

			i++;
			while (len - i >= 8) {
				memcpy(&w, buf + i, 8);
				if (w & UINT64_C(0x8080808080808080))
					break;
				i += 8;
			}
			continue;
		}
		/*
		 * The lead byte fixes how many continuation bytes follow, and the
		 * first of them is narrowed where the Unicode table forbids
		 * overlong forms (E0, F0), surrogates (ED) and code points over
		 * U+10FFFF (F4).
		 */
		if (c >= 0xc2 && c <= 0xdf) {
			u->need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			u->need = 2;
			if (c == 0xe0)
				u->lo = 0xa0;
			else if (c == 0xed)
				u->hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			u->need = 3;
			if (c == 0xf0)
				u->lo = 0x90;
			else if (c == 0xf4)
				u->hi = 0x8f;
		} else {
			return -1;	/* a stray continuation byte, C0, C1 or F5-FF */
		}
		i++;
	}
	return 0;
}

bool
ws_utf8_complete(const struct ws_utf8 *u)
{
	return u->need == 0;
}

bool
ws_close_code_valid(unsigned code)
{
	/*
	 * 1004 is reserved, 1005, 1006 and 1015 stand for "no close frame" in
	 * APIs and must never be sent; 1016-2999 are unassigned by the IANA
	 * registry's rules, 3000-4999 are for libraries and applications.
	 */
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	    (code >= 3000 && code <= 4999);
}

void
ws_parser_init(struct ws_parser *p, enum ws_role role, uint64_t max_message)
{
	memset(p, 0, sizeof(*p));
	p->role = role;
	p->max_message = max_message;
	p->state = WS_ST_HEADER;
	p->hdr_need = 2;
	ws_utf8_init(&p->utf8);
}

static int
fail(struct ws_parser *p, struct ws_event *ev, uint16_t code, const char *why, char *err,
    size_t errlen)
{
	p->state = WS_ST_FAILED;
	p->error = why;
	p->error_code = code;
	memset(ev, 0, sizeof(*ev));
	ev->code = code;
	if (errlen > 0)
		snprintf(err, errlen, "%s", why);
	return -1;
}

static bool
is_control(uint8_t op)
{
	return op & 0x8;
}

/* The first byte: RSV bits, the opcode and where it may come. */
static const char *
check_first(struct ws_parser *p)
{
	uint8_t b0 = p->hdr[0];

	p->fin = b0 & 0x80;
	p->opcode = b0 & 0x0f;
	if (b0 & 0x70)
		return "RSV bits set without a negotiated extension";
	switch (p->opcode) {
	case WS_OP_CONT:
		if (!p->in_message)
			return "a continuation frame without a message to continue";
		return NULL;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (p->in_message)
			return "a new data frame inside a fragmented message";
		return NULL;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		return p->fin ? NULL : "a fragmented control frame";
	default:
		return "an unknown opcode";
	}
}

/* The second byte: the mask bit by role, a control frame's length; how long the header is. */
static const char *
check_second(struct ws_parser *p)
{
	uint8_t len7 = p->hdr[1] & 0x7f;

	p->masked = p->hdr[1] & 0x80;
	if (is_control(p->opcode) && len7 > WS_CONTROL_MAX)
		return "a control frame with more than 125 bytes of payload";
	if (p->role == WS_SERVER && !p->masked)
		return "an unmasked frame from a client";
	if (p->role == WS_CLIENT && p->masked)
		return "a masked frame from a server";
	p->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (p->masked ? 4 : 0));
	return NULL;
}

/* The whole header: the length (minimal, below 2^63) and the mask. */
static const char *
check_length(struct ws_parser *p)
{
	uint8_t len7 = p->hdr[1] & 0x7f;
	size_t at = 2;
	uint64_t len = len7;

	if (len7 == 126) {
		len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
		at = 4;
		if (len < 126)
			return "a 16-bit length below 126";
	} else if (len7 == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | p->hdr[2 + i];
		at = 10;
		if (len >> 63)
			return "a 64-bit length with its most significant bit set";
		if (len <= 0xffff)
			return "a 64-bit length below 65536";
	}
	if (p->masked)
		memcpy(p->mask, p->hdr + at, 4);
	p->frame_len = len;
	p->frame_done = 0;
	return NULL;
}

int
ws_parse(struct ws_parser *p, uint8_t *buf, size_t len, size_t *used, struct ws_event *ev,
    char *err, size_t errlen)
{
	struct ws_utf8 reason;
	size_t off = 0;
	const char *why;

	*used = 0;
	if (p->state == WS_ST_FAILED)
		return fail(p, ev, p->error_code, p->error, err, errlen);
	if (p->state == WS_ST_CLOSED) {
		*used = len;
		return 0;
	}
	while (off < len) {
		if (p->state == WS_ST_HEADER) {
			p->hdr[p->hdr_len++] = buf[off++];
			/* Each byte is judged as soon as it is in. */
			if (p->hdr_len == 1 && (why = check_first(p)) != NULL)
				goto protocol_error;
			if (p->hdr_len == 2 && (why = check_second(p)) != NULL)
				goto protocol_error;
			if (p->hdr_len < p->hdr_need)
				continue;
			if ((why = check_length(p)) != NULL)
				goto protocol_error;
			p->hdr_len = 0;
			p->hdr_need = 2;
			if (!is_control(p->opcode)) {
				if (p->opcode != WS_OP_CONT) {
					p->in_message = true;
					p->msg_opcode = p->opcode;
					p->msg_len = 0;
					ws_utf8_init(&p->utf8);
				}
				/* Told at the header, before any of the payload is read. */
				if (p->frame_len > p->max_message - p->msg_len) {
					*used = off;
					return fail(p, ev, WS_CLOSE_TOO_BIG,
					    "a message larger than the limit", err, errlen);
				}
				p->msg_len += p->frame_len;
			}
			p->state = WS_ST_PAYLOAD;
			if (p->frame_len > 0)
				continue;
			if (!p->fin && !is_control(p->opcode)) {
				p->state = WS_ST_HEADER;	/* an empty fragment tells nothing */
				continue;
			}
			/* An empty final or control frame is told right away, below. */
		}
		/* The payload, or what is due at the end of an empty frame. */
		{
			size_t n = len - off;

			if (n > p->frame_len - p->frame_done)
				n = (size_t)(p->frame_len - p->frame_done);
			if (p->masked)
				ws_mask(buf + off, n, p->mask, p->frame_done);
			if (is_control(p->opcode)) {
				memcpy(p->control + p->frame_done, buf + off, n);
				p->frame_done += n;
				off += n;
				if (p->frame_done < p->frame_len)
					continue;
				p->state = WS_ST_HEADER;
				*used = off;
				memset(ev, 0, sizeof(*ev));
				ev->data = p->control;
				ev->len = (size_t)p->frame_len;
				if (p->opcode == WS_OP_PING) {
					ev->type = WS_EV_PING;
					return 1;
				}
				if (p->opcode == WS_OP_PONG) {
					ev->type = WS_EV_PONG;
					return 1;
				}
				ev->type = WS_EV_CLOSE;
				ev->code = WS_CLOSE_NO_STATUS;
				if (ev->len == 1)
					return fail(p, ev, WS_CLOSE_PROTOCOL,
					    "a close frame with a 1-byte payload", err, errlen);
				if (ev->len >= 2) {
					ev->code = (uint16_t)(p->control[0] << 8 | p->control[1]);
					if (!ws_close_code_valid(ev->code))
						return fail(p, ev, WS_CLOSE_PROTOCOL,
						    "a close code that is not valid on the wire", err,
						    errlen);
					ev->data += 2;
					ev->len -= 2;
					ws_utf8_init(&reason);
					if (ws_utf8_feed(&reason, ev->data, ev->len) == -1 ||
					    !ws_utf8_complete(&reason))
						return fail(p, ev, WS_CLOSE_INVALID_DATA,
						    "a close reason that is not UTF-8", err, errlen);
				}
				p->state = WS_ST_CLOSED;
				return 1;
			}
			if (p->msg_opcode == WS_OP_TEXT &&
			    ws_utf8_feed(&p->utf8, buf + off, n) == -1) {
				*used = off;
				return fail(p, ev, WS_CLOSE_INVALID_DATA,
				    "a text message that is not UTF-8", err, errlen);
			}
			memset(ev, 0, sizeof(*ev));
			ev->type = WS_EV_DATA;
			ev->opcode = p->msg_opcode;
			ev->data = buf + off;
			ev->len = n;
			p->frame_done += n;
			off += n;
			*used = off;
			if (p->frame_done < p->frame_len)
				return 1;
			p->state = WS_ST_HEADER;
			if (!p->fin)
				return 1;
			ev->fin = true;
			p->in_message = false;
			if (p->msg_opcode == WS_OP_TEXT && !ws_utf8_complete(&p->utf8))
				return fail(p, ev, WS_CLOSE_INVALID_DATA,
				    "a text message that ends inside a UTF-8 sequence", err, errlen);
			return 1;
		}
	}
	*used = off;
	return 0;

protocol_error:
	*used = off;
	return fail(p, ev, WS_CLOSE_PROTOCOL, why, err, errlen);
}

size_t
ws_frame_header(uint8_t *out, bool fin, enum ws_opcode op, uint64_t len, const uint8_t *mask)
{
	size_t n = 2;

	out[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
	} else if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		n = 4;
	} else {
		out[1] = 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	if (mask != NULL) {
		out[1] |= 0x80;
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

void
ws_mask(uint8_t *buf, size_t len, const uint8_t mask[4], uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		buf[i] ^= mask[(offset + i) & 3];
}

size_t
ws_close_frame(uint8_t *out, uint16_t code)
{
	out[0] = 0x80 | WS_OP_CLOSE;
	if (code == WS_CLOSE_NO_STATUS) {
		out[1] = 0;
		return 2;
	}
	out[1] = 2;
	out[2] = (uint8_t)(code >> 8);
	out[3] = (uint8_t)code;
	return 4;
}

static int
base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

bool
ws_key_valid(const char *key, size_t len)
{
	int v;

	/* 16 bytes: 21 characters of 6 bits, one with 2 bits and four zero bits, "==". */
	if (len != WS_KEY_LEN || key[22] != '=' || key[23] != '=')
		return false;
	for (size_t i = 0; i < 21; i++)
		if (base64_value(key[i]) < 0)
			return false;
	v = base64_value(key[21]);
	return v >= 0 && (v & 0x0f) == 0;
}

int
ws_accept_key(const char *key, size_t len, char *out, char *err, size_t errlen)
{
	unsigned char in[WS_KEY_LEN + WS_GUID_LEN], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!ws_key_valid(key, len)) {
		snprintf(err, errlen, "Sec-WebSocket-Key is not the base64 form of 16 bytes");
		return -1;
	}
	memcpy(in, key, WS_KEY_LEN);
	memcpy(in + WS_KEY_LEN, WS_GUID, WS_GUID_LEN);
	if (EVP_Digest(in, sizeof(in), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
		snprintf(err, errlen, "SHA-1 is not available from libcrypto");
		return -1;
	}
	EVP_EncodeBlock((unsigned char *)out, md, 20);
	return 0;
}

bool
ws_token_listed(const char *list, size_t len, const char *token)
{
	size_t tlen = strlen(token), i = 0;

	while (i < len) {
		size_t start, end;

		while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
			i++;
		start = i;
		while (i < len && list[i] != ',')
			i++;
		end = i;
		while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
			end--;
		if (end - start == tlen && tlen > 0 && strncasecmp(list + start, token, tlen) == 0)
			return true;
	}
	return false;
}
