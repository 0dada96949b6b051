/* Unit tests for the PROXY protocol header parser and builder (src/proxyproto.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <check.h>

#include "roundguard/proxyproto.h"
#include "unit.h"

#define B(s) s, sizeof(s) - 1

static const char sig[] = "\r\n\r\n\0\r\nQUIT\n";

struct v1_case {
	const char *text;
	size_t len;
	int want;		/* > 0: the header's length; 0: more needed; -1: refused */
	const char *why;	/* a piece of the reason when refused */
};

static const struct v1_case v1_cases[] = {
	{ B("PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\nGET"), 45, NULL },
	{ B("PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"), 36, NULL },
	{ B("PROXY UNKNOWN\r\n"), 15, NULL },
	{ B("PROXY UNKNOWN ffff::1 whatever 1 2\r\n"), 36, NULL },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n"), 32, NULL },
	{ B(""), 0, NULL },
	{ B("PRO"), 0, NULL },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"), 0, NULL },
	{ B("PROXY TCP4 1.2.3.4"), 0, NULL },
	{ B("GET / HTTP/1.1\r\n\r\n"), -1, "no PROXY header" },
	{ B("PROXI TCP4"), -1, "no PROXY header" },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), -1, "CRLF" },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), -1, "CRLF" },
	{ B("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), -1, "TCP4, TCP6 or UNKNOWN" },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), -1, "its 5 fields" },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), -1, "too many fields" },
	{ B("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), -1, "spacing" },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), -1, "spacing" },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), -1, "port" },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), -1, "port" },
	{ B("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), -1, "port" },
	{ B("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), -1, "address" },
	{ B("PROXY TCP4 ::1 ::1 1 2\r\n"), -1, "address" },
	{ B("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), -1, "address" },
	{ B("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n"), -1, "NUL" },
	{ B("PROXY UNKNOWN 0123456789012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789"), -1, "107" },
};

START_TEST(v1)
{
	const struct v1_case *c = &v1_cases[_i];
	struct proxyproto_header h;
	const char *why = NULL;
	int rc = proxyproto_parse(c->text, c->len, &h, &why);

	ck_assert_msg(rc == c->want, "case %d: %d, want %d (%s)", _i, rc, c->want, why ? why : "");
	if (c->want == -1)
		ck_assert_msg(why != NULL && strstr(why, c->why) != NULL, "case %d: reason %s", _i,
		    why ? why : "(none)");
	if (c->want > 0)
		ck_assert_int_eq(h.version, 1);
}
END_TEST

START_TEST(v1_addresses)
{
	static const char t[] = "PROXY TCP4 192.0.2.1 198.51.100.2 51234 443\r\n";
	struct proxyproto_header h;
	const char *why;
	const struct sockaddr_in *s = (const struct sockaddr_in *)&h.src;
	const struct sockaddr_in *d = (const struct sockaddr_in *)&h.dst;
	char buf[64];

	ck_assert_int_eq(proxyproto_parse(t, sizeof(t) - 1, &h, &why), (int)sizeof(t) - 1);
	ck_assert_int_eq(h.kind, PROXYPROTO_PROXY);
	ck_assert_str_eq(inet_ntop(AF_INET, &s->sin_addr, buf, sizeof(buf)), "192.0.2.1");
	ck_assert_uint_eq(ntohs(s->sin_port), 51234);
	ck_assert_str_eq(inet_ntop(AF_INET, &d->sin_addr, buf, sizeof(buf)), "198.51.100.2");
	ck_assert_uint_eq(ntohs(d->sin_port), 443);
}
END_TEST

/* A v2 header: command byte, family byte, then the address block (and more). */
static size_t
v2(uint8_t *out, uint8_t cmd, uint8_t fam, const void *addr, size_t alen)
{
	memcpy(out, sig, 12);
	out[12] = cmd;
	out[13] = fam;
	out[14] = (uint8_t)(alen >> 8);
	out[15] = (uint8_t)alen;
	memcpy(out + 16, addr, alen);
	return 16 + alen;
}

START_TEST(v2_proxy_local_unknown)
{
	uint8_t buf[600], a4[12] = { 10, 0, 0, 7, 127, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb };
	uint8_t a6[36] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1, [31] = 1, [32] = 0, [33] = 80, [35] = 81 };
	uint8_t tlv[12 + 7] = { 10, 0, 0, 7, 127, 0, 0, 1, 0, 1, 0, 2, 0x02, 0, 4, 'h', 'o', 's', 't' };
	struct proxyproto_header h;
	const char *why;
	size_t n;
	char text[64];

	n = v2(buf, 0x21, 0x11, a4, sizeof(a4));
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 28);
	ck_assert_int_eq(h.version, 2);
	ck_assert_int_eq(h.kind, PROXYPROTO_PROXY);
	ck_assert_str_eq(inet_ntop(AF_INET, &((struct sockaddr_in *)&h.src)->sin_addr, text,
	    sizeof(text)), "10.0.0.7");
	ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&h.src)->sin_port), 8080);
	/* Every prefix is "more, please". */
	for (size_t k = 0; k < n; k++)
		ck_assert_int_eq(proxyproto_parse(buf, k, &h, &why), 0);
	n = v2(buf, 0x21, 0x21, a6, sizeof(a6));
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 52);
	ck_assert_str_eq(inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&h.src)->sin6_addr, text,
	    sizeof(text)), "2001:db8::1");
	ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&h.dst)->sin6_port), 81);
	/* TLVs after the addresses are skipped. */
	n = v2(buf, 0x21, 0x11, tlv, sizeof(tlv));
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 35);
	/* LOCAL: the L4 layer's own health check; addresses, if any, ignored. */
	n = v2(buf, 0x20, 0x00, "", 0);
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 16);
	ck_assert_int_eq(h.kind, PROXYPROTO_LOCAL);
	/* UNSPEC, UNIX, DGRAM: use the connection's own addresses. */
	n = v2(buf, 0x21, 0x00, "", 0);
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 16);
	ck_assert_int_eq(h.kind, PROXYPROTO_UNKNOWN);
	memset(buf + 16, 0, 216);
	n = v2(buf, 0x21, 0x31, buf + 16, 216);
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 232);
	ck_assert_int_eq(h.kind, PROXYPROTO_UNKNOWN);
	n = v2(buf, 0x21, 0x12, a4, sizeof(a4));
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 28);
	ck_assert_int_eq(h.kind, PROXYPROTO_UNKNOWN);
}
END_TEST

START_TEST(v2_refused)
{
	uint8_t buf[PROXYPROTO_MAX + 64], a4[12] = { 0 };
	struct proxyproto_header h;
	const char *why;
	size_t n;

	n = v2(buf, 0x11, 0x11, a4, sizeof(a4));
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "version"));
	n = v2(buf, 0x22, 0x11, a4, sizeof(a4));
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "command"));
	n = v2(buf, 0x21, 0x11, a4, 8);		/* INET with 8 bytes of addresses */
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "cut short"));
	n = v2(buf, 0x21, 0x41, a4, sizeof(a4));
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "family"));
	/* Announcing more than 4096 bytes: refused before they come. */
	n = v2(buf, 0x21, 0x11, a4, sizeof(a4));
	buf[14] = 0x10, buf[15] = 0x00;
	ck_assert_int_eq(proxyproto_parse(buf, 16, &h, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "4096"));
	/* A signature cut by a wrong byte. */
	memcpy(buf, sig, 12);
	buf[7] = 'X';
	ck_assert_int_eq(proxyproto_parse(buf, 8, &h, &why), -1);
	ck_assert_int_eq(proxyproto_parse("\r\n\r\n", 4, &h, &why), 0);
	ck_assert_int_eq(proxyproto_parse("\x16\x03\x01", 3, &h, &why), -1);	/* a ClientHello */
}
END_TEST

START_TEST(build_and_parse_again)
{
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons(40000) };
	struct sockaddr_in d4 = { .sin_family = AF_INET, .sin_port = htons(443) };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons(1) };
	struct sockaddr_in6 d6 = { .sin6_family = AF_INET6, .sin6_port = htons(2) };
	struct sockaddr_in6 m6 = { .sin6_family = AF_INET6, .sin6_port = htons(3) };
	uint8_t buf[PROXYPROTO_V2_BUILD_MAX];
	struct proxyproto_header h;
	const char *why;
	size_t n;

	inet_pton(AF_INET, "203.0.113.9", &s4.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &d4.sin_addr);
	inet_pton(AF_INET6, "2001:db8::5", &s6.sin6_addr);
	inet_pton(AF_INET6, "::1", &d6.sin6_addr);
	inet_pton(AF_INET6, "::ffff:198.51.100.4", &m6.sin6_addr);
	n = proxyproto_build_v2(buf, sizeof(buf), (struct sockaddr *)&s4, (struct sockaddr *)&d4);
	ck_assert_uint_eq(n, 28);
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 28);
	ck_assert_int_eq(memcmp(&((struct sockaddr_in *)&h.src)->sin_addr, &s4.sin_addr, 4), 0);
	ck_assert_uint_eq(((struct sockaddr_in *)&h.src)->sin_port, s4.sin_port);
	n = proxyproto_build_v2(buf, sizeof(buf), (struct sockaddr *)&s6, (struct sockaddr *)&d6);
	ck_assert_uint_eq(n, 52);
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 52);
	ck_assert_int_eq(h.src.ss_family, AF_INET6);
	/* A v4-mapped client to an IPv4 listener: IPv4 on the wire. */
	n = proxyproto_build_v2(buf, sizeof(buf), (struct sockaddr *)&m6, (struct sockaddr *)&d4);
	ck_assert_uint_eq(n, 28);
	/* Mixed families: LOCAL. */
	n = proxyproto_build_v2(buf, sizeof(buf), (struct sockaddr *)&s6, (struct sockaddr *)&d4);
	ck_assert_uint_eq(n, 16);
	ck_assert_int_eq(proxyproto_parse(buf, n, &h, &why), 16);
	ck_assert_int_eq(h.kind, PROXYPROTO_LOCAL);
	ck_assert_uint_eq(proxyproto_build_v2(buf, 20, NULL, NULL), 0);
}
END_TEST

START_TEST(networks)
{
	struct proxyproto_cidr c[3];
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct sockaddr_in6 b = { .sin6_family = AF_INET6 };
	const char *why;

	ck_assert_int_eq(proxyproto_cidr_parse("10.0.0.0/8", &c[0], &why), 0);
	ck_assert_int_eq(proxyproto_cidr_parse("127.0.0.2", &c[1], &why), 0);
	ck_assert_int_eq(proxyproto_cidr_parse("2001:db8::/33", &c[2], &why), 0);
	inet_pton(AF_INET, "10.200.3.4", &a.sin_addr);
	ck_assert(proxyproto_cidr_match(c, 3, (struct sockaddr *)&a));
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	ck_assert(!proxyproto_cidr_match(c, 3, (struct sockaddr *)&a));
	inet_pton(AF_INET, "127.0.0.2", &a.sin_addr);
	ck_assert(proxyproto_cidr_match(c, 3, (struct sockaddr *)&a));
	inet_pton(AF_INET6, "::ffff:10.1.1.1", &b.sin6_addr);	/* v4-mapped */
	ck_assert(proxyproto_cidr_match(c, 3, (struct sockaddr *)&b));
	inet_pton(AF_INET6, "2001:db8:7fff::1", &b.sin6_addr);
	ck_assert(proxyproto_cidr_match(c, 3, (struct sockaddr *)&b));
	inet_pton(AF_INET6, "2001:db8:8000::1", &b.sin6_addr);
	ck_assert(!proxyproto_cidr_match(c, 3, (struct sockaddr *)&b));
	ck_assert(!proxyproto_cidr_match(c, 0, (struct sockaddr *)&b));
	ck_assert_int_eq(proxyproto_cidr_parse("10.0.0.0/33", &c[0], &why), -1);
	ck_assert_int_eq(proxyproto_cidr_parse("::/129", &c[0], &why), -1);
	ck_assert_int_eq(proxyproto_cidr_parse("10.0.0.0/", &c[0], &why), -1);
	ck_assert_int_eq(proxyproto_cidr_parse("10.0.0.0/8x", &c[0], &why), -1);
	ck_assert_int_eq(proxyproto_cidr_parse("host.example", &c[0], &why), -1);
	ck_assert_int_eq(proxyproto_cidr_parse("", &c[0], &why), -1);
	ck_assert_int_eq(proxyproto_cidr_parse("0.0.0.0/0", &c[0], &why), 0);
	ck_assert(proxyproto_cidr_match(c, 1, (struct sockaddr *)&a));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("proxyproto");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, v1, 0, (int)(sizeof(v1_cases) / sizeof(v1_cases[0])));
	tcase_add_test(tc, v1_addresses);
	tcase_add_test(tc, v2_proxy_local_unknown);
	tcase_add_test(tc, v2_refused);
	tcase_add_test(tc, build_and_parse_again);
	tcase_add_test(tc, networks);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
