/* Unit tests for src/ws.c: frame parser, frame headers, accept key, UTF-8 check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "roundguard/ws.h"
#include "unit.h"

static const uint8_t mask_rfc[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* ---- UTF-8 ---- */

/* 1 valid, 0 incomplete at the end, -1 invalid; the same whichever way s is cut. */
static int
utf8_check(const char *s, size_t len)
{
	struct ws_utf8 u;
	int whole;

	ws_utf8_init(&u);
	if (ws_utf8_feed(&u, (const uint8_t *)s, len) == -1)
		whole = -1;
	else
		whole = ws_utf8_complete(&u) ? 1 : 0;
	for (size_t cut = 0; cut <= len; cut++) {
		int r;

		ws_utf8_init(&u);
		if (ws_utf8_feed(&u, (const uint8_t *)s, cut) == -1 ||
		    ws_utf8_feed(&u, (const uint8_t *)s + cut, len - cut) == -1)
			r = -1;
		else
			r = ws_utf8_complete(&u) ? 1 : 0;
		ck_assert_msg(r == whole, "cut at %zu of %zu: %d, whole: %d", cut, len, r, whole);
	}
	/* Byte by byte. */
	ws_utf8_init(&u);
	{
		int r = 1;

		for (size_t i = 0; i < len && r != -1; i++)
			if (ws_utf8_feed(&u, (const uint8_t *)s + i, 1) == -1)
				r = -1;
		if (r != -1)
			r = ws_utf8_complete(&u) ? 1 : 0;
		ck_assert_int_eq(r, whole);
	}
	return whole;
}

#define UTF8(lit) utf8_check(lit, sizeof(lit) - 1)

START_TEST(utf8_valid)
{
	ck_assert_int_eq(UTF8(""), 1);
	ck_assert_int_eq(UTF8("hello, world: plain ASCII longer than eight bytes"), 1);
	ck_assert_int_eq(UTF8("\x7f"), 1);
	ck_assert_int_eq(UTF8("\xc2\x80"), 1);			/* U+0080 */
	ck_assert_int_eq(UTF8("\xdf\xbf"), 1);			/* U+07FF */
	ck_assert_int_eq(UTF8("\xe0\xa0\x80"), 1);		/* U+0800 */
	ck_assert_int_eq(UTF8("\xed\x9f\xbf"), 1);		/* U+D7FF */
	ck_assert_int_eq(UTF8("\xee\x80\x80"), 1);		/* U+E000 */
	ck_assert_int_eq(UTF8("\xef\xbf\xbf"), 1);		/* U+FFFF */
	ck_assert_int_eq(UTF8("\xf0\x90\x80\x80"), 1);		/* U+10000 */
	ck_assert_int_eq(UTF8("\xf4\x8f\xbf\xbf"), 1);		/* U+10FFFF */
	ck_assert_int_eq(UTF8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), 1);	/* κόσμε */
	ck_assert_int_eq(UTF8("abcdefgh\xe2\x82\xac" "abcdefghijklmnop\xf0\x9f\x98\x80xyz"), 1);
}
END_TEST

START_TEST(utf8_invalid)
{
	ck_assert_int_eq(UTF8("\x80"), -1);			/* stray continuation */
	ck_assert_int_eq(UTF8("abcdefghij\xbf"), -1);
	ck_assert_int_eq(UTF8("\xc0\x80"), -1);			/* overlong NUL */
	ck_assert_int_eq(UTF8("\xc1\xbf"), -1);
	ck_assert_int_eq(UTF8("\xe0\x9f\xbf"), -1);		/* overlong U+07FF */
	ck_assert_int_eq(UTF8("\xf0\x8f\xbf\xbf"), -1);		/* overlong U+FFFF */
	ck_assert_int_eq(UTF8("\xed\xa0\x80"), -1);		/* U+D800, a surrogate */
	ck_assert_int_eq(UTF8("\xed\xbf\xbf"), -1);		/* U+DFFF */
	ck_assert_int_eq(UTF8("\xf4\x90\x80\x80"), -1);		/* U+110000 */
	ck_assert_int_eq(UTF8("\xf5\x80\x80\x80"), -1);
	ck_assert_int_eq(UTF8("\xfe"), -1);
	ck_assert_int_eq(UTF8("\xff"), -1);
	ck_assert_int_eq(UTF8("\xc2\x41"), -1);			/* lead byte, then ASCII */
	ck_assert_int_eq(UTF8("\xe2\x82\xe2\x82\xac"), -1);
	/* κόσμε then a sequence cut off by an invalid byte (Autobahn 6.3.1). */
	ck_assert_int_eq(UTF8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
	    "edited"), -1);
}
END_TEST

START_TEST(utf8_incomplete)
{
	ck_assert_int_eq(UTF8("\xc2"), 0);
	ck_assert_int_eq(UTF8("\xe2\x82"), 0);
	ck_assert_int_eq(UTF8("abc\xf0\x9f\x98"), 0);
}
END_TEST

START_TEST(close_codes)
{
	static const unsigned valid[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
	    1012, 1013, 1014, 3000, 3999, 4000, 4999 };
	static const unsigned invalid[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
	    2999, 5000, 65535 };

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		ck_assert_msg(ws_close_code_valid(valid[i]), "%u", valid[i]);
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		ck_assert_msg(!ws_close_code_valid(invalid[i]), "%u", invalid[i]);
}
END_TEST

/* ---- the accept key and header lists ---- */

START_TEST(accept_key_rfc_example)
{
	char out[WS_ACCEPT_LEN + 1], err[128];

	/* RFC 6455 1.3. */
	ck_assert_int_eq(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out, err, sizeof(err)), 0);
	ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	ck_assert_int_eq(ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out, err, sizeof(err)), 0);
	ck_assert_str_eq(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}
END_TEST

START_TEST(key_validation)
{
	char out[WS_ACCEPT_LEN + 1], err[128];

	ck_assert(ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA==", 24));
	ck_assert(ws_key_valid("/////////////////////w==", 24));
	ck_assert(ws_key_valid("++++++++++++++++++++/Q==", 24));
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=", 23));	/* short */
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ===", 25));
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ", 22));	/* no padding */
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZR==", 24));	/* bits past 16 bytes */
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25j*Q==", 24));
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ-=", 24));
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZQ= ", 24));
	ck_assert(!ws_key_valid("dGhlIHNhbXBsZSBub25jZXh4eA==", 28));	/* 17+ bytes */
	ck_assert(!ws_key_valid("", 0));
	ck_assert_int_eq(ws_accept_key("not a key at all!!!!!!==", 24, out, err, sizeof(err)), -1);
	ck_assert(strstr(err, "Sec-WebSocket-Key") != NULL);
}
END_TEST

START_TEST(token_lists)
{
	ck_assert(ws_token_listed("websocket", 9, "websocket"));
	ck_assert(ws_token_listed("WebSocket", 9, "websocket"));
	ck_assert(ws_token_listed("h2c, websocket", 14, "websocket"));
	ck_assert(ws_token_listed(" websocket ,foo", 15, "websocket"));
	ck_assert(ws_token_listed("a,,\tWEBSOCKET\t", 14, "websocket"));
	ck_assert(!ws_token_listed("websockets", 10, "websocket"));
	ck_assert(!ws_token_listed("web socket", 10, "websocket"));
	ck_assert(!ws_token_listed("websocket/13", 12, "websocket"));
	ck_assert(!ws_token_listed("", 0, "websocket"));
	ck_assert(!ws_token_listed(",,", 2, "websocket"));
	/* The length bounds the list, not a NUL. */
	ck_assert(!ws_token_listed("websocket", 8, "websocket"));
}
END_TEST

/* ---- frame headers ---- */

START_TEST(frame_header_lengths)
{
	uint8_t h[WS_HEADER_MAX];

	ck_assert_uint_eq(ws_frame_header(h, true, WS_OP_TEXT, 0, NULL), 2);
	ck_assert_uint_eq(h[0], 0x81);
	ck_assert_uint_eq(h[1], 0x00);
	ck_assert_uint_eq(ws_frame_header(h, false, WS_OP_BINARY, 125, NULL), 2);
	ck_assert_uint_eq(h[0], 0x02);
	ck_assert_uint_eq(h[1], 125);
	ck_assert_uint_eq(ws_frame_header(h, true, WS_OP_BINARY, 126, NULL), 4);
	ck_assert(memcmp(h, "\x82\x7e\x00\x7e", 4) == 0);
	/* RFC 6455 5.7: 256 bytes and 64 KiB. */
	ck_assert_uint_eq(ws_frame_header(h, true, WS_OP_BINARY, 256, NULL), 4);
	ck_assert(memcmp(h, "\x82\x7e\x01\x00", 4) == 0);
	ck_assert_uint_eq(ws_frame_header(h, true, WS_OP_BINARY, 65535, NULL), 4);
	ck_assert(memcmp(h, "\x82\x7e\xff\xff", 4) == 0);
	ck_assert_uint_eq(ws_frame_header(h, true, WS_OP_BINARY, 65536, NULL), 10);
	ck_assert(memcmp(h, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0);
	ck_assert_uint_eq(ws_frame_header(h, true, WS_OP_PING, 5, mask_rfc), 6);
	ck_assert(memcmp(h, "\x89\x85\x37\xfa\x21\x3d", 6) == 0);
	ck_assert_uint_eq(ws_frame_header(h, true, WS_OP_TEXT, UINT64_C(1) << 40, mask_rfc), 14);
	ck_assert(memcmp(h, "\x81\xff\x00\x00\x01\x00\x00\x00\x00\x00\x37\xfa\x21\x3d", 14) == 0);
}
END_TEST

START_TEST(close_frames)
{
	uint8_t f[4];

	ck_assert_uint_eq(ws_close_frame(f, 1000), 4);
	ck_assert(memcmp(f, "\x88\x02\x03\xe8", 4) == 0);
	ck_assert_uint_eq(ws_close_frame(f, 4999), 4);
	ck_assert(memcmp(f, "\x88\x02\x13\x87", 4) == 0);
	ck_assert_uint_eq(ws_close_frame(f, WS_CLOSE_NO_STATUS), 2);
	ck_assert(memcmp(f, "\x88\x00", 2) == 0);
}
END_TEST

START_TEST(mask_offsets)
{
	uint8_t a[11] = "Hello world", b[11];

	memcpy(b, a, sizeof(a));
	ws_mask(b, 11, mask_rfc, 0);
	ck_assert(memcmp(b, "\x7f\x9f\x4d\x51\x58", 5) == 0);	/* RFC 6455 5.7 */
	/* In two pieces, the second from its offset in the frame. */
	ws_mask(b, 3, mask_rfc, 0);
	ws_mask(b + 3, 8, mask_rfc, 3);
	ck_assert(memcmp(a, b, sizeof(a)) == 0);
}
END_TEST

/* ---- the parser ---- */

/*
 * A frame: first byte b0 as given (FIN, RSV, opcode), the minimal length,
 * masked with mask_rfc when masked. Returns its size.
 */
static size_t
frame(uint8_t *out, uint8_t b0, const void *payload, size_t len, bool masked)
{
	size_t n = ws_frame_header(out, false, WS_OP_CONT, len, masked ? mask_rfc : NULL);

	out[0] = b0;
	memcpy(out + n, payload, len);
	if (masked)
		ws_mask(out + n, len, mask_rfc, 0);
	return n + len;
}

/*
 * What a parser makes of in, fed in pieces of piece bytes: a transcript
 * such as "text(5):Hello ping(0): close(1000):bye error(1002)". Data pieces
 * are gathered into whole messages.
 */
struct transcript {
	char text[8192];
	size_t len;
	uint8_t msg[72000];
	size_t msg_len;
	bool msg_started;
	enum ws_opcode msg_op;
	char err[128];
};

/*
 * Check's assertions report each passing check to the forked runner (a
 * write to a pipe): too slow for a loop run for every byte.
 */
#define CHECK(cond) do {							\
	if (!(cond))								\
		ck_abort_msg("check failed: %s", #cond);			\
} while (0)

static void
say(struct transcript *t, const char *fmt, const void *data, size_t len, unsigned num)
{
	int n = snprintf(t->text + t->len, sizeof(t->text) - t->len, fmt, num);

	ck_assert(n > 0 && (size_t)n < sizeof(t->text) - t->len);
	t->len += (size_t)n;
	for (size_t i = 0; i < len && i < 64 && t->len + 5 < sizeof(t->text); i++) {
		unsigned char c = ((const unsigned char *)data)[i];

		t->len += (size_t)snprintf(t->text + t->len, sizeof(t->text) - t->len,
		    c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
	}
	t->text[t->len++] = ' ';
	t->text[t->len] = '\0';
}

static struct transcript *
parse_in_pieces(enum ws_role role, uint64_t max, const uint8_t *in, size_t len, size_t piece)
{
	struct transcript *t = calloc(1, sizeof(*t));
	struct ws_parser p;
	uint8_t *copy = malloc(len + 1);
	size_t off = 0;

	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, in, len);
	ws_parser_init(&p, role, max);
	while (off < len) {
		size_t n = len - off < piece ? len - off : piece, used;
		uint8_t *at = copy + off;
		struct ws_event ev;
		int r;

		for (;;) {
			r = ws_parse(&p, at, n, &used, &ev, t->err, sizeof(t->err));
			CHECK(used <= n);
			if (r == -1) {
				say(t, "error(%u)", NULL, 0, ev.code);
				/* Final: asked again, the same. */
				CHECK(ws_parse(&p, at, n, &used, &ev, NULL, 0) == -1);
				free(copy);
				return t;
			}
			if (r == 0) {
				CHECK(used == n);
				break;
			}
			CHECK(used > 0);	/* no event without taking a byte */
			at += used;
			n -= used;
			switch (ev.type) {
			case WS_EV_DATA:
				CHECK(ev.opcode == WS_OP_TEXT || ev.opcode == WS_OP_BINARY);
				CHECK(!t->msg_started || ev.opcode == t->msg_op);
				t->msg_started = true;
				t->msg_op = ev.opcode;
				CHECK(t->msg_len + ev.len <= sizeof(t->msg));
				memcpy(t->msg + t->msg_len, ev.data, ev.len);
				t->msg_len += ev.len;
				if (ev.fin) {
					say(t, ev.opcode == WS_OP_TEXT ? "text(%u):" : "binary(%u):",
					    t->msg, t->msg_len, (unsigned)t->msg_len);
					t->msg_len = 0;
					t->msg_started = false;
				}
				break;
			case WS_EV_PING:
				say(t, "ping(%u):", ev.data, ev.len, (unsigned)ev.len);
				break;
			case WS_EV_PONG:
				say(t, "pong(%u):", ev.data, ev.len, (unsigned)ev.len);
				break;
			case WS_EV_CLOSE:
				say(t, "close(%u):", ev.data, ev.len, ev.code);
				break;
			}
		}
		off += piece < len - off ? piece : len - off;
	}
	free(copy);
	return t;
}

/* The transcript, checked to be the same in every piece size; the caller frees it. */
static struct transcript *
parse_all(enum ws_role role, uint64_t max, const uint8_t *in, size_t len)
{
	static const size_t pieces[] = { 1, 2, 3, 5, 7, 13, 64, 1000 };
	struct transcript *whole = parse_in_pieces(role, max, in, len, len + 1);

	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		struct transcript *t = parse_in_pieces(role, max, in, len, pieces[i]);

		ck_assert_msg(strcmp(t->text, whole->text) == 0,
		    "in pieces of %zu: \"%s\"; whole: \"%s\"", pieces[i], t->text, whole->text);
		free(t);
	}
	return whole;
}

#define EXPECT(role, max, in, len, want) do {					\
	struct transcript *t_ = parse_all(role, max, in, len);			\
	ck_assert_str_eq(t_->text, want);						\
	free(t_);								\
} while (0)

#define SERVER_EXPECT(in, len, want) EXPECT(WS_SERVER, 1 << 20, in, len, want)

START_TEST(parser_rfc_examples)
{
	/* RFC 6455 5.7, as read by a client (unmasked) and a server (masked). */
	static const uint8_t hello_unmasked[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
	static const uint8_t hello_masked[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f,
	    0x4d, 0x51, 0x58 };
	static const uint8_t fragmented[] = { 0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f };
	static const uint8_t ping_pong[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,
	    0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };

	EXPECT(WS_CLIENT, 100, hello_unmasked, sizeof(hello_unmasked), "text(5):Hello ");
	SERVER_EXPECT(hello_masked, sizeof(hello_masked), "text(5):Hello ");
	EXPECT(WS_CLIENT, 100, fragmented, sizeof(fragmented), "text(5):Hello ");
	EXPECT(WS_CLIENT, 100, ping_pong, sizeof(ping_pong), "ping(5):Hello pong(5):Hello ");
}
END_TEST

START_TEST(parser_messages)
{
	uint8_t in[4096], big[70000 + 16];
	size_t n = 0;
	uint8_t *payload = malloc(70000);

	n += frame(in + n, 0x81, "", 0, true);
	n += frame(in + n, 0x82, "\x00\xff", 2, true);
	/* Fragmented text with a ping and an unsolicited pong between its fragments. */
	n += frame(in + n, 0x01, "frag", 4, true);
	n += frame(in + n, 0x89, "p1", 2, true);
	n += frame(in + n, 0x00, "", 0, true);
	n += frame(in + n, 0x8a, "", 0, true);
	n += frame(in + n, 0x00, "men", 3, true);
	n += frame(in + n, 0x80, "ted", 3, true);
	/* UTF-8 split across fragments. */
	n += frame(in + n, 0x01, "\xe2\x82", 2, true);
	n += frame(in + n, 0x80, "\xac", 1, true);
	/* An empty final fragment. */
	n += frame(in + n, 0x02, "ab", 2, true);
	n += frame(in + n, 0x80, "", 0, true);
	n += frame(in + n, 0x88, "\x03\xe8" "bye", 5, true);
	/* Taken and ignored after the close. */
	n += frame(in + n, 0x81, "late", 4, true);
	in[n++] = 0xff;
	SERVER_EXPECT(in, n, "text(0): binary(2):\\x00\\xff ping(2):p1 pong(0): "
	    "text(10):fragmented text(3):\\xe2\\x82\\xac binary(2):ab close(1000):bye ");

	/* 16-bit and 64-bit lengths. */
	ck_assert_ptr_nonnull(payload);
	memset(payload, 'x', 70000);
	n = frame(big, 0x82, payload, 300, true);
	EXPECT(WS_SERVER, 1 << 20, big, n, "binary(300):"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ");
	n = frame(big, 0x82, payload, 70000, false);
	EXPECT(WS_CLIENT, 1 << 20, big, n, "binary(70000):"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx ");
	free(payload);
}
END_TEST

START_TEST(parser_close_frames)
{
	uint8_t in[512];
	size_t n;
	char reason[123];

	SERVER_EXPECT(in, frame(in, 0x88, "", 0, true), "close(1005): ");
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xe8", 2, true), "close(1000): ");
	SERVER_EXPECT(in, frame(in, 0x88, "\x0f\xa0", 2, true), "close(4000): ");
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xf4", 2, true), "close(1012): ");
	/* A 1-byte body, invalid codes, a reason that is not UTF-8. */
	SERVER_EXPECT(in, frame(in, 0x88, "\x03", 1, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xed", 2, true), "error(1002) ");	/* 1005 */
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xee", 2, true), "error(1002) ");	/* 1006 */
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xf7", 2, true), "error(1002) ");	/* 1015 */
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xe7", 2, true), "error(1002) ");	/* 999 */
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xf8", 2, true), "error(1002) ");	/* 1016 */
	SERVER_EXPECT(in, frame(in, 0x88, "\x0b\xb7", 2, true), "error(1002) ");	/* 2999 */
	SERVER_EXPECT(in, frame(in, 0x88, "\x13\x88", 2, true), "error(1002) ");	/* 5000 */
	SERVER_EXPECT(in, frame(in, 0x88, "\x00\x00", 2, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xe8\xff", 3, true), "error(1007) ");
	SERVER_EXPECT(in, frame(in, 0x88, "\x03\xe8\xe2\x82", 4, true), "error(1007) ");
	/* The longest reason. */
	memset(reason, 'r', sizeof(reason));
	memcpy(in, "\x03\xe8", 2);
	memcpy(in + 2, reason, sizeof(reason));
	n = frame(in + 130, 0x88, in, 125, true);
	SERVER_EXPECT(in + 130, n, "close(1000):"
	    "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr ");
}
END_TEST

START_TEST(parser_protocol_errors)
{
	uint8_t in[512], payload[200];
	size_t n;

	memset(payload, 'c', sizeof(payload));
	/* Unmasked from a client, masked from a server. */
	SERVER_EXPECT(in, frame(in, 0x81, "hi", 2, false), "error(1002) ");
	EXPECT(WS_CLIENT, 100, in, frame(in, 0x81, "hi", 2, true), "error(1002) ");
	/* RSV1, RSV2, RSV3. */
	SERVER_EXPECT(in, frame(in, 0xc1, "hi", 2, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0xa1, "hi", 2, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0x91, "hi", 2, true), "error(1002) ");
	/* Reserved opcodes. */
	for (uint8_t op = 3; op <= 0xf; op++) {
		if (op == 8 || op == 9 || op == 0xa)
			continue;
		SERVER_EXPECT(in, frame(in, (uint8_t)(0x80 | op), "", 0, true), "error(1002) ");
	}
	/* Control frames: over 125 bytes, fragmented. */
	SERVER_EXPECT(in, frame(in, 0x89, payload, 126, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0x8a, payload, 126, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0x88, payload, 126, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0x09, "p", 1, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0x89, payload, 125, true),
	    "ping(125):cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc ");
	/* A continuation without a start; a new message inside a fragmented one. */
	SERVER_EXPECT(in, frame(in, 0x80, "x", 1, true), "error(1002) ");
	SERVER_EXPECT(in, frame(in, 0x00, "x", 1, true), "error(1002) ");
	n = frame(in, 0x01, "a", 1, true);
	n += frame(in + n, 0x81, "b", 1, true);
	SERVER_EXPECT(in, n, "error(1002) ");
	n = frame(in, 0x02, "a", 1, true);
	n += frame(in + n, 0x01, "b", 1, true);
	SERVER_EXPECT(in, n, "error(1002) ");
	/* A message after a finished one may start again. */
	n = frame(in, 0x81, "a", 1, true);
	n += frame(in + n, 0x80, "b", 1, true);
	SERVER_EXPECT(in, n, "text(1):a error(1002) ");
	/* Lengths not in their minimal form or with the top bit set. */
	SERVER_EXPECT((const uint8_t *)"\x82\xfe\x00\x05\x37\xfa\x21\x3d" "abcde", 13,
	    "error(1002) ");
	SERVER_EXPECT((const uint8_t *)"\x82\xff\x00\x00\x00\x00\x00\x00\xff\xff"
	    "\x37\xfa\x21\x3d", 14, "error(1002) ");
	SERVER_EXPECT((const uint8_t *)"\x82\xff\x80\x00\x00\x00\x00\x01\x00\x00"
	    "\x37\xfa\x21\x3d", 14, "error(1002) ");
	/* Errors come before the rest: a good message first is told. */
	n = frame(in, 0x81, "ok", 2, true);
	in[n++] = 0xc1;
	SERVER_EXPECT(in, n, "text(2):ok error(1002) ");
}
END_TEST

START_TEST(parser_invalid_utf8)
{
	uint8_t in[512];
	size_t n;

	SERVER_EXPECT(in, frame(in, 0x81, "\xff", 1, true), "error(1007) ");
	SERVER_EXPECT(in, frame(in, 0x81, "ab\xed\xa0\x80", 5, true), "error(1007) ");
	/* Ends inside a sequence, in one frame and across fragments. */
	SERVER_EXPECT(in, frame(in, 0x81, "\xe2\x82", 2, true), "error(1007) ");
	n = frame(in, 0x01, "ok\xe2", 3, true);
	n += frame(in + n, 0x80, "\x82", 1, true);
	SERVER_EXPECT(in, n, "error(1007) ");
	n = frame(in, 0x01, "ok\xe2", 3, true);
	n += frame(in + n, 0x00, "\x82", 1, true);
	n += frame(in + n, 0x80, "", 0, true);
	SERVER_EXPECT(in, n, "error(1007) ");
	/* Invalid in the second fragment. */
	n = frame(in, 0x01, "good", 4, true);
	n += frame(in + n, 0x80, "\xc0\xaf", 2, true);
	SERVER_EXPECT(in, n, "error(1007) ");
	/* Binary messages are not text. */
	SERVER_EXPECT(in, frame(in, 0x82, "\xff", 1, true), "binary(1):\\xff ");
}
END_TEST

START_TEST(parser_message_limit)
{
	uint8_t in[512];
	size_t n;

	EXPECT(WS_SERVER, 4, in, frame(in, 0x82, "abcd", 4, true), "binary(4):abcd ");
	EXPECT(WS_SERVER, 4, in, frame(in, 0x82, "abcde", 5, true), "error(1009) ");
	/* Across fragments. */
	n = frame(in, 0x02, "abc", 3, true);
	n += frame(in + n, 0x80, "de", 2, true);
	EXPECT(WS_SERVER, 4, in, n, "error(1009) ");
	n = frame(in, 0x02, "ab", 2, true);
	n += frame(in + n, 0x80, "cd", 2, true);
	n += frame(in + n, 0x81, "efgh", 4, true);
	EXPECT(WS_SERVER, 4, in, n, "binary(4):abcd text(4):efgh ");
	/* Control frames do not count. */
	EXPECT(WS_SERVER, 0, in, frame(in, 0x89, "ping", 4, true), "ping(4):ping ");
	EXPECT(WS_SERVER, 0, in, frame(in, 0x81, "", 0, true), "text(0): ");
	/* A huge declared length is refused at the header. */
	EXPECT(WS_SERVER, 1 << 20,
	    (const uint8_t *)"\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x37\xfa\x21\x3d", 14,
	    "error(1009) ");
}
END_TEST

START_TEST(parser_pieces_point_into_buffer)
{
	struct ws_parser p;
	struct ws_event ev;
	uint8_t in[64];
	size_t n = frame(in, 0x82, "0123456789", 10, true), used;
	char err[64];

	ws_parser_init(&p, WS_SERVER, 100);
	/* Header and 3 payload bytes: a piece of 3, not the end. */
	ck_assert_int_eq(ws_parse(&p, in, 9, &used, &ev, err, sizeof(err)), 1);
	ck_assert_uint_eq(used, 9);
	ck_assert_int_eq(ev.type, WS_EV_DATA);
	ck_assert_ptr_eq(ev.data, in + 6);
	ck_assert_uint_eq(ev.len, 3);
	ck_assert(!ev.fin);
	ck_assert(memcmp(ev.data, "012", 3) == 0);
	ck_assert_int_eq(ws_parse(&p, in + 9, n - 9, &used, &ev, err, sizeof(err)), 1);
	ck_assert_uint_eq(used, n - 9);
	ck_assert(ev.fin);
	ck_assert(memcmp(ev.data, "3456789", 7) == 0);
	ck_assert_int_eq(ws_parse(&p, in, 0, &used, &ev, err, sizeof(err)), 0);
	ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(parser_error_text)
{
	struct ws_parser p;
	struct ws_event ev;
	uint8_t in[16];
	size_t n = frame(in, 0x81, "x", 1, false), used;
	char err[128];

	ws_parser_init(&p, WS_SERVER, 100);
	ck_assert_int_eq(ws_parse(&p, in, n, &used, &ev, err, sizeof(err)), -1);
	ck_assert_uint_eq(ev.code, WS_CLOSE_PROTOCOL);
	ck_assert(strstr(err, "unmasked") != NULL);
	/* A small buffer is cut, never overrun. */
	ck_assert_int_eq(ws_parse(&p, in, n, &used, &ev, err, 5), -1);
	ck_assert_str_eq(err, "an u");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ws");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, utf8_valid);
	tcase_add_test(tc, utf8_invalid);
	tcase_add_test(tc, utf8_incomplete);
	tcase_add_test(tc, close_codes);
	tcase_add_test(tc, accept_key_rfc_example);
	tcase_add_test(tc, key_validation);
	tcase_add_test(tc, token_lists);
	tcase_add_test(tc, frame_header_lengths);
	tcase_add_test(tc, close_frames);
	tcase_add_test(tc, mask_offsets);
	tcase_add_test(tc, parser_rfc_examples);
	tcase_add_test(tc, parser_messages);
	tcase_add_test(tc, parser_close_frames);
	tcase_add_test(tc, parser_protocol_errors);
	tcase_add_test(tc, parser_invalid_utf8);
	tcase_add_test(tc, parser_message_limit);
	tcase_add_test(tc, parser_pieces_point_into_buffer);
	tcase_add_test(tc, parser_error_text);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
