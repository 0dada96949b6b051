/*
 * libFuzzer harness for the WebSocket frame parser (src/ws.c), which reads
 * what clients send to roundguard-echo's GET /ws.
 *
 * Input: two selector bytes, then the byte stream.
 * - byte 0: bit 0 client role (frames from a server: unmasked), else server
 *   role; bits 1-3 the message limit, from LIMITS below;
 * - byte 1: how the stream is cut into pieces, as recv() would.
 *
 * Checked:
 * - the outcome (messages reassembled from their pieces, control frames, the
 *   close code of a protocol error) is the same in one piece and in pieces,
 *   and the same as a plain reference parser's below, which reads the whole
 *   stream frame by frame as RFC 6455 section 5 words it;
 * - every event keeps the rules: data pieces inside the buffer fed, of a
 *   text or binary message no larger than the limit, text that a reference
 *   UTF-8 decoder below accepts, control payloads of at most 125 bytes,
 *   close codes valid on the wire and close reasons in UTF-8; no event
 *   without taking a byte, and nothing taken beyond what was given;
 * - what was parsed, written again with ws_frame_header (and ws_mask) in
 *   other fragments, parses back to the same;
 * - ws_utf8_* agrees with the reference decoder on the raw stream, and
 *   ws_key_valid / ws_accept_key on its first 24 bytes agree with a base64
 *   round trip through libcrypto.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "roundguard/ws.h"

#include "fuzz.h"

static const uint64_t LIMITS[8] = { 0, 1, 125, 126, 65535, 65536, 1 << 20, UINT64_MAX };

/* ---- a reference UTF-8 decoder: code point by code point, not a state machine ---- */

static bool
ref_utf8(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		size_t n;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			n = 2;
			cp = c & 0x1f;
			min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 3;
			cp = c & 0x0f;
			min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* ---- what a parse produced, as bytes to compare ---- */

struct out {
	uint8_t *buf;
	size_t len, cap;
};

static void
out_add(struct out *o, const void *p, size_t n)
{
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 256;

		while (cap < o->len + n)
			cap *= 2;
		o->buf = realloc(o->buf, cap);
		if (o->buf == NULL)
			abort();
		o->cap = cap;
	}
	if (n > 0)
		memcpy(o->buf + o->len, p, n);
	o->len += n;
}

/* One record: a type byte, an 8-byte length, the bytes. */
static void
record(struct out *o, uint8_t type, const void *p, size_t n)
{
	uint64_t len = n;

	out_add(o, &type, 1);
	out_add(o, &len, sizeof(len));
	out_add(o, p, n);
}

enum {
	REC_TEXT = 'T',
	REC_BINARY = 'B',
	REC_PING = 'P',
	REC_PONG = 'O',
	REC_CLOSE = 'C',	/* 2-byte code (host order) then the reason */
	REC_ERROR = 'E',	/* 2-byte code */
};

struct result {
	struct out rec;		/* the records */
	struct out msg;		/* the message being reassembled */
	bool closed;
};

static void
result_free(struct result *r)
{
	free(r->rec.buf);
	free(r->msg.buf);
}

/* Parse in (a copy: the parser unmasks in place) in pieces chosen by seed (0: in one piece). */
static void
parse(enum ws_role role, uint64_t max, const uint8_t *in, size_t len, uint8_t seed,
    struct result *res)
{
	struct ws_parser p;
	uint8_t *copy = malloc(len + 1);
	uint32_t x = 0x9e3779b9u ^ seed;
	size_t off = 0;
	uint64_t msg_total = 0;
	bool in_msg = false;
	enum ws_opcode msg_op = WS_OP_TEXT;
	char err[64];

	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, in, len);
	memset(res, 0, sizeof(*res));
	ws_parser_init(&p, role, max);
	while (off < len) {
		size_t n = len - off, used;
		uint8_t *at;
		struct ws_event ev;
		int r;

		if (seed != 0) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			if (n > 1 + x % 61)
				n = 1 + x % 61;
		}
		at = copy + off;
		off += n;
		while (n > 0) {
			r = ws_parse(&p, at, n, &used, &ev, err, sizeof(err));
			FUZZ_CHECK(used <= n, "took %zu of %zu bytes", used, n);
			if (r == -1) {
				FUZZ_CHECK(ev.code == WS_CLOSE_PROTOCOL || ev.code == WS_CLOSE_INVALID_DATA ||
				    ev.code == WS_CLOSE_TOO_BIG, "error close code %u", ev.code);
				FUZZ_CHECK(err[0] != '\0', "no reason for close code %u", ev.code);
				record(&res->rec, REC_ERROR, &ev.code, 2);
				FUZZ_CHECK(ws_parse(&p, at, n, &used, &ev, err, sizeof(err)) == -1,
				    "an error that does not last");
				free(copy);
				return;
			}
			if (r == 0) {
				FUZZ_CHECK(used == n, "returned 0 having taken %zu of %zu", used, n);
				break;
			}
			FUZZ_CHECK(r == 1 && used > 0, "r %d, event after %zu bytes", r, used);
			FUZZ_CHECK(!res->closed, "an event after the close");
			switch (ev.type) {
			case WS_EV_DATA:
				FUZZ_CHECK(ev.opcode == WS_OP_TEXT || ev.opcode == WS_OP_BINARY,
				    "data opcode %d", (int)ev.opcode);
				FUZZ_CHECK(!in_msg || ev.opcode == msg_op, "opcode changed in a message");
				FUZZ_CHECK(ev.data >= at && ev.data + ev.len <= at + used,
				    "data piece outside the bytes taken");
				in_msg = true;
				msg_op = ev.opcode;
				msg_total += ev.len;
				FUZZ_CHECK(msg_total <= max, "message of %llu bytes, limit %llu",
				    (unsigned long long)msg_total, (unsigned long long)max);
				out_add(&res->msg, ev.data, ev.len);
				if (ev.fin) {
					FUZZ_CHECK(ev.opcode == WS_OP_BINARY ||
					    ref_utf8(res->msg.buf, res->msg.len),
					    "text message of %zu bytes is not UTF-8", res->msg.len);
					record(&res->rec, ev.opcode == WS_OP_TEXT ? REC_TEXT : REC_BINARY,
					    res->msg.buf, res->msg.len);
					res->msg.len = 0;
					msg_total = 0;
					in_msg = false;
				}
				break;
			case WS_EV_PING:
			case WS_EV_PONG:
				FUZZ_CHECK(ev.len <= WS_CONTROL_MAX, "control payload of %zu", ev.len);
				record(&res->rec, ev.type == WS_EV_PING ? REC_PING : REC_PONG, ev.data,
				    ev.len);
				break;
			case WS_EV_CLOSE:
				FUZZ_CHECK(ev.code == WS_CLOSE_NO_STATUS ? ev.len == 0 :
				    ws_close_code_valid(ev.code), "close code %u", ev.code);
				FUZZ_CHECK(ev.len <= WS_CONTROL_MAX - 2, "close reason of %zu", ev.len);
				FUZZ_CHECK(ref_utf8(ev.data, ev.len), "close reason not UTF-8");
				{
					uint8_t rec[2 + WS_CONTROL_MAX];

					memcpy(rec, &ev.code, 2);
					memcpy(rec + 2, ev.data, ev.len);
					record(&res->rec, REC_CLOSE, rec, 2 + ev.len);
				}
				res->closed = true;
				break;
			}
			at += used;
			n -= used;
		}
	}
	free(copy);
}

/* The kinds of the records, for messages: "TPC", "BE1009". */
static const char *
rec_types(const struct out *o, char *buf, size_t n)
{
	size_t i = 0, w = 0;

	while (i < o->len && w + 8 < n) {
		uint64_t len;

		memcpy(&len, o->buf + i + 1, 8);
		buf[w++] = (char)o->buf[i];
		if (o->buf[i] == REC_ERROR || o->buf[i] == REC_CLOSE) {
			uint16_t code;

			memcpy(&code, o->buf + i + 9, 2);
			w += (size_t)snprintf(buf + w, n - w, "%u", code);
		}
		i += 9 + len;
	}
	buf[w] = '\0';
	return buf;
}

/* ---- a reference parser: the whole stream at once, frame by frame ---- */

/*
 * Whether s, cut short by the end of the input, can still become UTF-8: its
 * last sequence is tried with every kind of continuation byte (the bounds of
 * the ranges the second byte of a sequence may have to be in).
 */
static bool
ref_utf8_prefix(const uint8_t *s, size_t len)
{
	static const uint8_t cont[] = { 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf };
	size_t start = len, need;
	uint8_t tail[4];

	if (ref_utf8(s, len))
		return true;
	/* The start of the last sequence: at most 3 bytes back. */
	while (start > 0 && len - start < 3 && (s[start - 1] & 0xc0) == 0x80)
		start--;
	if (start == 0 || len - start >= 3)
		return false;
	start--;
	need = s[start] >= 0xf0 ? 4 : s[start] >= 0xe0 ? 3 : s[start] >= 0xc0 ? 2 : 1;
	if (need <= len - start || !ref_utf8(s, start))
		return false;
	memcpy(tail, s + start, len - start);
	for (size_t a = 0; a < 6; a++)
		for (size_t b = 0; b < 6; b++)
			for (size_t c = 0; c < 6; c++) {
				size_t have = len - start, k = have;
				const uint8_t pick[3] = { cont[a], cont[b], cont[c] };

				for (size_t i = 0; k < need; i++)
					tail[k++] = pick[i];
				if (ref_utf8(tail, need))
					return true;
			}
	return false;
}

static void
ref_error(struct result *res, uint16_t code)
{
	record(&res->rec, REC_ERROR, &code, 2);
}

static void
ref_parse(enum ws_role role, uint64_t max, const uint8_t *in, size_t len, struct result *res)
{
	size_t pos = 0;
	bool in_msg = false;
	uint8_t msg_op = 0;
	struct out msg = { 0 };

	memset(res, 0, sizeof(*res));
	while (pos < len) {
		uint8_t b0 = in[pos], b1, op = b0 & 0x0f, len7;
		bool fin = b0 & 0x80, masked, control = op >= 8;
		size_t hl, have;
		uint64_t n;
		uint8_t mask[4] = { 0 };
		uint8_t *payload;

		/* The first byte alone. */
		if ((b0 & 0x70) || !(op <= 2 || (op >= 8 && op <= 10)) ||
		    (op == 0 && !in_msg) || ((op == 1 || op == 2) && in_msg) || (control && !fin)) {
			ref_error(res, WS_CLOSE_PROTOCOL);
			break;
		}
		if (len - pos < 2)
			break;
		b1 = in[pos + 1];
		masked = b1 & 0x80;
		len7 = b1 & 0x7f;
		if ((control && len7 > 125) || masked != (role == WS_SERVER)) {
			ref_error(res, WS_CLOSE_PROTOCOL);
			break;
		}
		hl = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
		if (len - pos < hl)
			break;
		n = len7;
		if (len7 == 126)
			n = (uint64_t)in[pos + 2] << 8 | in[pos + 3];
		else if (len7 == 127)
			for (int i = 0; i < 8; i++)
				n = (i == 0 ? 0 : n << 8) | in[pos + 2 + i];
		if ((len7 == 126 && n < 126) || (len7 == 127 && (n >> 63 || n < 65536))) {
			ref_error(res, WS_CLOSE_PROTOCOL);
			break;
		}
		if (masked)
			memcpy(mask, in + pos + hl - 4, 4);
		if (!control) {
			if (op != 0) {
				in_msg = true;
				msg_op = op;
				msg.len = 0;
			}
			if (msg.len + n > max || n > max) {
				ref_error(res, WS_CLOSE_TOO_BIG);
				break;
			}
		}
		pos += hl;
		have = len - pos < n ? len - pos : (size_t)n;
		payload = malloc(have + 1);
		if (payload == NULL)
			abort();
		for (size_t i = 0; i < have; i++)
			payload[i] = in[pos + i] ^ mask[i & 3];
		pos += have;
		if (!control) {
			out_add(&msg, payload, have);
			free(payload);
			if (msg_op == WS_OP_TEXT) {
				bool whole = have == n && fin;

				if (!(whole ? ref_utf8(msg.buf, msg.len) : ref_utf8_prefix(msg.buf, msg.len))) {
					ref_error(res, WS_CLOSE_INVALID_DATA);
					break;
				}
			}
			if (have < n)
				break;
			if (fin) {
				record(&res->rec, msg_op == WS_OP_TEXT ? REC_TEXT : REC_BINARY, msg.buf,
				    msg.len);
				msg.len = 0;
				in_msg = false;
			}
			continue;
		}
		if (have < n) {
			free(payload);
			break;
		}
		if (op == WS_OP_PING || op == WS_OP_PONG) {
			record(&res->rec, op == WS_OP_PING ? REC_PING : REC_PONG, payload, have);
			free(payload);
			continue;
		}
		/* A close frame: its code and reason, then nothing more. */
		{
			uint8_t rec[2 + WS_CONTROL_MAX];
			uint16_t code = WS_CLOSE_NO_STATUS;
			bool bad_code;

			if (have == 1) {
				free(payload);
				ref_error(res, WS_CLOSE_PROTOCOL);
				break;
			}
			if (have >= 2)
				code = (uint16_t)(payload[0] << 8 | payload[1]);
			bad_code = have >= 2 && !((code >= 1000 && code <= 1003) ||
			    (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999));
			if (bad_code) {
				free(payload);
				ref_error(res, WS_CLOSE_PROTOCOL);
				break;
			}
			if (have > 2 && !ref_utf8(payload + 2, have - 2)) {
				free(payload);
				ref_error(res, WS_CLOSE_INVALID_DATA);
				break;
			}
			memcpy(rec, &code, 2);
			if (have > 2)
				memcpy(rec + 2, payload + 2, have - 2);
			record(&res->rec, REC_CLOSE, rec, have > 2 ? have : 2);
			free(payload);
			break;
		}
	}
	free(msg.buf);
}

/* ---- writing the records again as frames ---- */

static void
put_frame(struct out *o, enum ws_role role, bool fin, enum ws_opcode op, const uint8_t *data,
    size_t len, uint32_t *x)
{
	uint8_t h[WS_HEADER_MAX], mask[4];
	size_t at;

	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	memcpy(mask, x, 4);
	out_add(o, h, ws_frame_header(h, fin, op, len, role == WS_SERVER ? mask : NULL));
	at = o->len;
	out_add(o, data, len);
	if (role == WS_SERVER)
		ws_mask(o->buf + at, len, mask, 0);
}

/*
 * The records of res as a client (server role) or server would send them,
 * split by seed, in o; in expect, the records that should come back (a pong
 * comes before the message it was put into).
 */
static void
reencode(const struct result *res, enum ws_role role, uint8_t seed, struct out *o,
    struct out *expect)
{
	uint32_t x = 0x2545f491u ^ seed;
	size_t i = 0;

	while (i < res->rec.len) {
		uint8_t type = res->rec.buf[i];
		uint64_t len;
		const uint8_t *p;

		memcpy(&len, res->rec.buf + i + 1, 8);
		p = res->rec.buf + i + 9;
		if (type != REC_ERROR && !(seed & 2 && (type == REC_TEXT || type == REC_BINARY)))
			out_add(expect, res->rec.buf + i, 9 + len);
		i += 9 + len;
		switch (type) {
		case REC_TEXT:
		case REC_BINARY: {
			/* Fragments of 1 + x % 300 bytes, a ping between the first two. */
			enum ws_opcode op = type == REC_TEXT ? WS_OP_TEXT : WS_OP_BINARY;
			size_t off = 0, n;
			bool first = true;

			do {
				x ^= x << 7;
				n = len - off;
				if (seed & 1 && n > 1 + x % 300)
					n = 1 + x % 300;
				put_frame(o, role, off + n == len, first ? op : WS_OP_CONT, p + off, n, &x);
				if (first && off + n < len && (seed & 2)) {
					put_frame(o, role, true, WS_OP_PONG, (const uint8_t *)"x", 1, &x);
					record(expect, REC_PONG, "x", 1);
				}
				first = false;
				off += n;
			} while (off < len);
			if (seed & 2)
				record(expect, type, p, len);
			break;
		}
		case REC_PING:
			put_frame(o, role, true, WS_OP_PING, p, len, &x);
			break;
		case REC_PONG:
			put_frame(o, role, true, WS_OP_PONG, p, len, &x);
			break;
		case REC_CLOSE: {
			uint16_t code;
			uint8_t payload[WS_CONTROL_MAX];

			memcpy(&code, p, 2);
			if (code == WS_CLOSE_NO_STATUS) {
				put_frame(o, role, true, WS_OP_CLOSE, payload, 0, &x);
				break;
			}
			payload[0] = (uint8_t)(code >> 8);
			payload[1] = (uint8_t)code;
			memcpy(payload + 2, p + 2, len - 2);
			put_frame(o, role, true, WS_OP_CLOSE, payload, len, &x);
			break;
		}
		default:
			break;		/* the error: not re-sent */
		}
	}
}

/* ---- the key, against libcrypto's base64 ---- */

static void
check_key(const uint8_t *data, size_t size)
{
	char key[WS_KEY_LEN + 1], accept[WS_ACCEPT_LEN + 1], err[128];
	unsigned char raw[24], again[32];
	bool valid, ref = true;

	if (size < WS_KEY_LEN)
		return;
	memcpy(key, data, WS_KEY_LEN);
	key[WS_KEY_LEN] = '\0';
	valid = ws_key_valid(key, WS_KEY_LEN);
	/* Canonical base64 of 16 bytes: decodes, and encodes back to the very same text. */
	if (memchr(key, '\0', WS_KEY_LEN) != NULL ||
	    EVP_DecodeBlock(raw, (const unsigned char *)key, WS_KEY_LEN) != 18 ||
	    key[22] != '=' || key[23] != '=')
		ref = false;
	if (ref) {
		EVP_EncodeBlock(again, raw, 16);
		ref = memcmp(again, key, WS_KEY_LEN) == 0;
	}
	FUZZ_CHECK(valid == ref, "key \"%s\": ws_key_valid %d, base64 round trip %d", key, valid,
	    ref);
	if (ws_accept_key(key, WS_KEY_LEN, accept, err, sizeof(err)) == 0) {
		FUZZ_CHECK(valid, "accepted the invalid key \"%s\"", key);
		FUZZ_CHECK(strlen(accept) == WS_ACCEPT_LEN && accept[27] == '=',
		    "accept \"%s\"", accept);
	} else {
		FUZZ_CHECK(!valid, "refused the valid key \"%s\": %s", key, err);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result whole, pieces, again, ref;
	struct out wire = { 0 }, expect = { 0 };
	enum ws_role role;
	uint64_t max;
	struct ws_utf8 u;
	bool ok;

	if (size < 2)
		return 0;
	role = data[0] & 1 ? WS_CLIENT : WS_SERVER;
	max = LIMITS[(data[0] >> 1) & 7];

	parse(role, max, data + 2, size - 2, 0, &whole);
	parse(role, max, data + 2, size - 2, data[1] | 1, &pieces);
	FUZZ_CHECK(whole.rec.len == pieces.rec.len &&
	    (whole.rec.len == 0 || memcmp(whole.rec.buf, pieces.rec.buf, whole.rec.len) == 0),
	    "%zu bytes of records whole, %zu in pieces", whole.rec.len, pieces.rec.len);

	ref_parse(role, max, data + 2, size - 2, &ref);
	if (whole.rec.len != ref.rec.len ||
	    (ref.rec.len > 0 && memcmp(whole.rec.buf, ref.rec.buf, ref.rec.len) != 0)) {
		char mine[64], theirs[64];

		FUZZ_CHECK(false, "records %s, the reference parser's %s",
		    rec_types(&whole.rec, mine, sizeof(mine)), rec_types(&ref.rec, theirs, sizeof(theirs)));
	}

	/* Written again in other fragments, the same messages come back. */
	reencode(&whole, role, data[1], &wire, &expect);
	parse(role, max, wire.buf, wire.len, data[1], &again);
	FUZZ_CHECK(again.rec.len == expect.len &&
	    (expect.len == 0 || memcmp(again.rec.buf, expect.buf, expect.len) == 0),
	    "re-encoded frames: %zu bytes of records, %zu expected", again.rec.len, expect.len);

	/* The validator on the raw stream, whole and cut in two. */
	ws_utf8_init(&u);
	ok = ws_utf8_feed(&u, data + 2, size - 2) == 0 && ws_utf8_complete(&u);
	FUZZ_CHECK(ok == ref_utf8(data + 2, size - 2), "ws_utf8 says %d", ok);
	ws_utf8_init(&u);
	{
		size_t cut = data[1] % (size - 1);

		ok = ws_utf8_feed(&u, data + 2, cut) == 0 &&
		    ws_utf8_feed(&u, data + 2 + cut, size - 2 - cut) == 0 && ws_utf8_complete(&u);
		FUZZ_CHECK(ok == ref_utf8(data + 2, size - 2), "ws_utf8 cut at %zu says %d", cut, ok);
	}

	check_key(data + 2, size - 2);

	result_free(&whole);
	result_free(&pieces);
	result_free(&again);
	result_free(&ref);
	free(wire.buf);
	free(expect.buf);
	return 0;
}
