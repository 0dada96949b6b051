/* The PROXY protocol, versions 1 and 2 (see include/roundguard/proxyproto.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roundguard/net.h"
#include "roundguard/proxyproto.h"

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};
static const char v1_sig[6] = "PROXY ";

static int
fail(const char **why, const char *what)
{
	*why = what;
	return -1;
}

/* ---- version 1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" ---- */

/* A port: decimal 0-65535 without leading zeros, as the specification writes them. */
static bool
v1_port(const char *s, uint16_t *out)
{
	unsigned long v = 0;

	if (*s == '\0' || (s[0] == '0' && s[1] != '\0') || strlen(s) > 5)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

static bool
v1_addr(const char *s, int family, struct sockaddr_storage *ss, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		return inet_pton(AF_INET, s, &in->sin_addr) == 1;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	return inet_pton(AF_INET6, s, &in6->sin6_addr) == 1;
}

static int
parse_v1(const char *buf, size_t len, struct proxyproto_header *h, const char **why)
{
	char line[PROXYPROTO_V1_MAX + 1], *field[5], *save = NULL, *tok;
	size_t n, nf = 0, scan = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
	uint16_t sport, dport;
	int family;

	/* Up to the CR, byte by byte, so that a prefix is refused as the whole would be. */
	for (n = 0; n < scan && buf[n] != '\r'; n++) {
		if (buf[n] == '\n')
			return fail(why, "v1 line not ended by CRLF");
		if (buf[n] == '\0')
			return fail(why, "NUL in a v1 line");
	}
	if (n == scan)
		return len >= PROXYPROTO_V1_MAX ? fail(why, "v1 line longer than 107 bytes") : 0;
	if (n + 2 > PROXYPROTO_V1_MAX)
		return fail(why, "v1 line longer than 107 bytes");
	if (n + 1 >= len)
		return 0;		/* the LF is still to come */
	if (buf[n + 1] != '\n')
		return fail(why, "v1 line not ended by CRLF");
	memcpy(line, buf, n);
	line[n] = '\0';
	/* Single spaces between fields, none at either end. */
	if (strstr(line, "  ") != NULL || line[n - 1] == ' ')
		return fail(why, "bad spacing in a v1 line");
	memset(h, 0, sizeof(*h));
	h->version = 1;
	h->len = n + 2;
	if (strncmp(line + sizeof(v1_sig), "UNKNOWN", 7) == 0 &&
	    (line[sizeof(v1_sig) + 7] == '\0' || line[sizeof(v1_sig) + 7] == ' ')) {
		/* The sender could not tell: whatever follows is to be ignored. */
		h->kind = PROXYPROTO_UNKNOWN;
		return (int)h->len;
	}
	for (tok = strtok_r(line + sizeof(v1_sig), " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		if (nf == 5)
			return fail(why, "too many fields in a v1 line");
		field[nf++] = tok;
	}
	if (nf != 5)
		return fail(why, "v1 line without its 5 fields");
	if (strcmp(field[0], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(field[0], "TCP6") == 0)
		family = AF_INET6;
	else
		return fail(why, "v1 protocol not TCP4, TCP6 or UNKNOWN");
	if (!v1_port(field[3], &sport) || !v1_port(field[4], &dport))
		return fail(why, "bad port in a v1 line");
	if (!v1_addr(field[1], family, &h->src, sport) || !v1_addr(field[2], family, &h->dst, dport))
		return fail(why, "bad address in a v1 line");
	h->kind = PROXYPROTO_PROXY;
	return (int)h->len;
}

/* ---- version 2: a binary block behind a 12-byte signature ---- */

static int
parse_v2(const uint8_t *p, size_t len, struct proxyproto_header *h, const char **why)
{
	size_t total, alen;
	uint8_t ver = p[12] >> 4, cmd = p[12] & 0x0f, fam, proto;

	if (ver != 2)
		return fail(why, "v2 signature with another version");
	if (cmd > 1)
		return fail(why, "v2 command neither LOCAL nor PROXY");
	if (len < 16)
		return 0;
	fam = p[13] >> 4;
	proto = p[13] & 0x0f;
	total = 16 + ((size_t)p[14] << 8 | p[15]);
	if (total > PROXYPROTO_MAX)
		return fail(why, "v2 header longer than 4096 bytes");
	if (len < total)
		return 0;
	memset(h, 0, sizeof(*h));
	h->version = 2;
	h->len = total;
	if (fam > 3 || proto > 2)
		return fail(why, "v2 address family or protocol unknown");
	alen = fam == 1 ? 12 : fam == 2 ? 36 : fam == 3 ? 216 : 0;
	if (total - 16 < alen)
		return fail(why, "v2 addresses cut short");
	if (cmd == 0) {
		h->kind = PROXYPROTO_LOCAL;
		return (int)total;
	}
	if ((fam != 1 && fam != 2) || proto != 1) {
		h->kind = PROXYPROTO_UNKNOWN;	/* UNSPEC, UNIX, DGRAM: not a TCP client */
		return (int)total;
	}
	h->kind = PROXYPROTO_PROXY;
	if (fam == 1) {
		struct sockaddr_in *s = (struct sockaddr_in *)&h->src, *d = (struct sockaddr_in *)&h->dst;

		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, p + 16, 4);
		memcpy(&d->sin_addr, p + 20, 4);
		memcpy(&s->sin_port, p + 24, 2);
		memcpy(&d->sin_port, p + 26, 2);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;

		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, p + 16, 16);
		memcpy(&d->sin6_addr, p + 32, 16);
		memcpy(&s->sin6_port, p + 48, 2);
		memcpy(&d->sin6_port, p + 50, 2);
	}
	/* TLVs (ALPN, authority, CRC, ...) follow; nothing here needs them. */
	return (int)total;
}

int
proxyproto_parse(const void *buf, size_t len, struct proxyproto_header *h, const char **why)
{
	const uint8_t *p = buf;
	size_t n;

	*why = NULL;
	if (len == 0)
		return 0;
	/* Refused as soon as a byte shows it is neither signature. */
	if (p[0] == 'P') {
		n = len < sizeof(v1_sig) ? len : sizeof(v1_sig);
		if (memcmp(p, v1_sig, n) != 0)
			return fail(why, "no PROXY header");
		return len < sizeof(v1_sig) ? 0 : parse_v1(buf, len, h, why);
	}
	n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
	if (memcmp(p, v2_sig, n) != 0)
		return fail(why, "no PROXY header");
	if (len < 13)
		return 0;
	return parse_v2(p, len, h, why);
}

/* ---- building v2 for backends ---- */

/*
 * sa as IPv4 (a v4-mapped IPv6 address too, as net_addr_set() reads it): its
 * address and port in network order; false if it is not.
 */
static bool
as_v4(const struct sockaddr *sa, uint8_t addr[4], uint8_t port[2])
{
	struct net_addr a;

	net_addr_set(&a, sa);
	if (a.family != AF_INET)
		return false;
	memcpy(addr, a.bytes, 4);
	port[0] = (uint8_t)(a.port >> 8);
	port[1] = (uint8_t)a.port;
	return true;
}

size_t
proxyproto_build_v2(void *out, size_t cap, const struct sockaddr *src, const struct sockaddr *dst)
{
	uint8_t *p = out, sa4[4], da4[4], sp[2], dp[2];
	size_t alen = 0;

	if (cap < PROXYPROTO_V2_BUILD_MAX)
		return 0;
	memcpy(p, v2_sig, sizeof(v2_sig));
	p[12] = 0x21;		/* version 2, PROXY */
	if (src != NULL && dst != NULL && as_v4(src, sa4, sp) && as_v4(dst, da4, dp)) {
		p[13] = 0x11;	/* INET, STREAM */
		memcpy(p + 16, sa4, 4);
		memcpy(p + 20, da4, 4);
		memcpy(p + 24, sp, 2);
		memcpy(p + 26, dp, 2);
		alen = 12;
	} else if (src != NULL && dst != NULL && src->sa_family == AF_INET6 &&
	    dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src;
		const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)dst;

		p[13] = 0x21;	/* INET6, STREAM */
		memcpy(p + 16, &s->sin6_addr, 16);
		memcpy(p + 32, &d->sin6_addr, 16);
		memcpy(p + 48, &s->sin6_port, 2);
		memcpy(p + 50, &d->sin6_port, 2);
		alen = 36;
	} else {
		p[12] = 0x20;	/* LOCAL: nothing to say about the client */
		p[13] = 0x00;
	}
	p[14] = 0;
	p[15] = (uint8_t)alen;
	return 16 + alen;
}

/* ---- the networks allowed to send headers ---- */

int
proxyproto_cidr_parse(const char *s, struct proxyproto_cidr *c, const char **why)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned long bits;
	char *end;

	memset(c, 0, sizeof(*c));
	if (n == 0 || n >= sizeof(addr))
		return fail(why, "not an address or network");
	memcpy(addr, s, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET, addr, c->addr) == 1) {
		c->family = AF_INET;
		c->bits = 32;
	} else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
		c->family = AF_INET6;
		c->bits = 128;
	} else {
		return fail(why, "not an IPv4 or IPv6 address");
	}
	if (slash != NULL) {
		if (slash[1] < '0' || slash[1] > '9')
			return fail(why, "prefix length is not a number");
		bits = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || bits > c->bits)
			return fail(why, c->family == AF_INET ? "prefix length not in 0-32" :
			    "prefix length not in 0-128");
		c->bits = (uint8_t)bits;
	}
	return 0;
}

static bool
prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	return rest == 0 || ((a[whole] ^ b[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool
proxyproto_cidr_match(const struct proxyproto_cidr *c, size_t n, const struct sockaddr *sa)
{
	uint8_t a4[4], port[2];
	const uint8_t *a6 = NULL;

	bool v4 = as_v4(sa, a4, port);

	if (sa->sa_family == AF_INET6)
		a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

	for (size_t i = 0; i < n; i++) {
		if (c[i].family == AF_INET && v4 && prefix_equal(c[i].addr, a4, c[i].bits))
			return true;
		if (c[i].family == AF_INET6 && a6 != NULL && prefix_equal(c[i].addr, a6, c[i].bits))
			return true;
	}
	return false;
}
