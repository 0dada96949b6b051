/* Request-target and Host checks (RFC 9112 3.2, RFC 3986 3.2): what the proxy may forward. */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "roundguard/uri.h"

#define URI_HOST_MAX 255	/* a DNS name's longest text form */

static bool
is_alpha(unsigned char c)
{
	return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_hex(unsigned char c)
{
	return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/*
 * Character sets as 128-bit maps (one test per byte on the hot path, not a
 * strchr()): RFC 3986 unreserved and sub-delims without "," (a comma makes a
 * Host read as a list) for host names; VCHAR but "#", "%" and "?" for a path.
 */
static const uint64_t name_chars[2] = { 0x2bff6fd200000000, 0x47fffffe87fffffe };
static const uint64_t path_chars[2] = { 0x7fffffd600000000, 0x7fffffffffffffff };

static bool
in_set(const uint64_t set[2], unsigned char c)
{
	return c < 128 && (set[c >> 6] >> (c & 63) & 1) != 0;
}

static const char *
port_check(const char *p, size_t len)
{
	unsigned long v = 0;

	if (len == 0 || len > 5)
		return "The port in the Host header must be 1 to 5 digits";
	for (size_t i = 0; i < len; i++) {
		if (!is_digit((unsigned char)p[i]))
			return "The port in the Host header must be 1 to 5 digits";
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	return v > 65535 ? "The port in the Host header is above 65535" : NULL;
}

/*
 * Why a Host that failed is not one host[:port]: user information, a path
 * or a list are named wherever they are; else what the check found.
 */
static const char *
host_refusal(const char *h, size_t len, const char *found)
{
	for (size_t i = 0; i < len; i++) {
		switch (h[i]) {
		case '@':
			return "The Host header carries user information (\"@\")";
		case '/': case '?': case '#': case '\\':
			return "The Host header carries a path";
		case ',': case ' ': case '\t':
			return "The Host header carries a list of hosts";
		default:
			break;
		}
	}
	return found;
}

/* "[IPv6]" and maybe ":port", h[0] being "[". */
static const char *
host_ipv6_check(const char *h, size_t len)
{
	char addr[INET6_ADDRSTRLEN];
	struct in6_addr a6;
	const char *close = memchr(h, ']', len), *end = h + len;
	size_t alen;

	if (close == NULL)
		return "The Host header has an unclosed IPv6 bracket";
	alen = (size_t)(close - h - 1);
	if (alen == 0 || alen >= sizeof(addr))
		return "The Host header's IPv6 address is not valid";
	/* inet_pton() stops at a NUL: only what an address is made of goes in. */
	for (size_t i = 1; i <= alen; i++)
		if (!is_hex((unsigned char)h[i]) && h[i] != ':' && h[i] != '.')
			return "The Host header's IPv6 address is not valid";
	memcpy(addr, h + 1, alen);
	addr[alen] = '\0';
	/* Zone identifiers and IPvFuture are refused with the rest. */
	if (inet_pton(AF_INET6, addr, &a6) != 1)
		return "The Host header's IPv6 address is not valid";
	if (close + 1 == end)
		return NULL;
	if (close[1] != ':')
		return "The Host header has something after its IPv6 address";
	return port_check(close + 2, (size_t)(end - close - 2));
}

const char *
uri_host_check(const char *h, size_t len)
{
	const char *why;
	size_t i;

	if (len == 0)
		return "The Host header is empty";
	if (h[0] == '[')
		return (why = host_ipv6_check(h, len)) != NULL ? host_refusal(h, len, why) : NULL;
	/* A reg-name or IPv4 address: the usual Host takes this loop alone. */
	for (i = 0; i < len && h[i] != ':'; i++) {
		unsigned char c = (unsigned char)h[i];

		if (in_set(name_chars, c))
			continue;
		if (c == '%' && i + 2 < len && is_hex((unsigned char)h[i + 1]) &&
		    is_hex((unsigned char)h[i + 2])) {
			if (h[i + 1] == '0' && h[i + 2] == '0')
				return "The Host header has an encoded NUL (%00)";
			i += 2;
			continue;
		}
		return host_refusal(h, len, "The Host header has a byte not allowed in a host name");
	}
	if (i == 0)
		return host_refusal(h, len, "The Host header has no host name");
	if (i > URI_HOST_MAX)
		return "The host name in the Host header is too long";
	if (i < len && (why = port_check(h + i + 1, len - i - 1)) != NULL)
		return host_refusal(h, len, why);
	return NULL;
}

/*
 * The path-and-query of a target from off on: VCHAR only, no fragment; in the
 * path, percent-encodings well formed and none of them a NUL.
 */
static const char *
path_query_check(const char *t, size_t off, size_t len)
{
	bool in_query = false;

	for (size_t i = off; i < len; i++) {
		unsigned char c = (unsigned char)t[i];

		if (in_set(path_chars, c))
			continue;	/* the usual byte: nothing more to look at */
		if (c <= 0x20 || c >= 0x7f)
			return "The request target has a byte not allowed in a URI";
		if (c == '#')
			return "The request target carries a fragment (\"#\")";
		if (c == '?')
			in_query = true;
		if (c != '%' || in_query)
			continue;
		if (i + 2 >= len || !is_hex((unsigned char)t[i + 1]) ||
		    !is_hex((unsigned char)t[i + 2]))
			return "The request path has a malformed percent-encoding";
		if (t[i + 1] == '0' && t[i + 2] == '0')
			return "The request path has an encoded NUL (%00)";
		i += 2;
	}
	return NULL;
}

const char *
uri_target_check(const char *t, size_t len, bool options, struct uri_target *out)
{
	size_t i, auth_end;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return "The request target is empty";
	if (len == 1 && t[0] == '*') {
		out->form = URI_ASTERISK;
		out->path_len = 1;
		return options ? NULL : "The target \"*\" is only for OPTIONS requests";
	}
	if (t[0] == '/') {
		out->form = URI_ORIGIN;
		out->path_len = len;
		return path_query_check(t, 0, len);
	}
	/* absolute-form: scheme "://" authority [path-abempty] ["?" query] */
	for (i = 0; i < len && t[i] != ':'; i++)
		if (!(is_alpha((unsigned char)t[i]) || (i > 0 && (is_digit((unsigned char)t[i]) ||
		    t[i] == '+' || t[i] == '-' || t[i] == '.'))))
			return "The request target is not a path, an absolute URI or \"*\"";
	if (i == len || i == 0)
		return "The request target is not a path, an absolute URI or \"*\"";
	if (!((i == 4 && strncasecmp(t, "http", 4) == 0) ||
	    (i == 5 && strncasecmp(t, "https", 5) == 0)))
		return "Only http and https absolute request targets are proxied";
	if (len - i < 3 || t[i + 1] != '/' || t[i + 2] != '/')
		return "An absolute request target needs an authority (\"//host\")";
	i += 3;
	for (auth_end = i; auth_end < len && t[auth_end] != '/' && t[auth_end] != '?' &&
	    t[auth_end] != '#'; auth_end++)
		;
	if (uri_host_check(t + i, auth_end - i) != NULL)
		return memchr(t + i, '@', auth_end - i) != NULL ?
		    "The request target carries user information (\"@\")" :
		    "The authority of the absolute request target is not a valid host[:port]";
	out->form = URI_ABSOLUTE;
	out->authority_off = i;
	out->authority_len = auth_end - i;
	out->path_off = auth_end;
	out->path_len = len - auth_end;
	out->need_slash = auth_end == len || t[auth_end] != '/';
	return path_query_check(t, auth_end, len);
}
