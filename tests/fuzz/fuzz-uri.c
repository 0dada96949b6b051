/*
 * libFuzzer harness for the request-target and Host checks (src/uri.c):
 * uri_host_check() and uri_target_check() on arbitrary bytes, each compared
 * with a second, plainly written reading of the same grammar (RFC 3986 3.2,
 * RFC 9112 3.2, the comments in include/roundguard/uri.h), and what the
 * proxy relies on checked on what they accept.
 *
 * Input: one selector byte, then the bytes. Selector bit 0: the method is
 * OPTIONS (so "*" may pass).
 *
 * Checked: both functions agree with the reference on accept or refuse; an
 * accepted Host is ASCII VCHAR only, without "@", "/", "?", "#", "\", ",",
 * at most 255 bytes of name and a 1-5 digit port, and is accepted again from
 * another copy, with a port added, and as the authority of "http://<host>/";
 * it is refused with "user@" before it, "/x" or ",h" after it. An accepted
 * target is VCHAR only with no "#"; its offsets lie inside it and cover it
 * (form by form: the asterisk, origin-form from 0 to the end, absolute-form
 * "scheme://" + authority + path up to the end); an absolute-form authority
 * passes uri_host_check() and fits request_head()'s buffer in src/proxy.c;
 * the path part starts with "/" or "?" or is empty, as need_slash says; no
 * percent sign in the path part without two hex digits after it, none
 * encoding NUL; and the origin-form target the proxy sends on ("/" if
 * need_slash, then the path part) is accepted again as origin-form.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "roundguard/uri.h"

#include "fuzz.h"

/* request_head() in src/proxy.c copies an absolute-form authority into char[300]. */
#define PROXY_AUTHORITY_BUF 300

/* Bytes made printable for a message (C escapes); one of two static buffers. */
static const char *
show(const uint8_t *b, size_t n)
{
	static char buf[2][4 * 300 + 8];
	static int k;
	char *out = buf[k++ & 1], *p = out;

	for (size_t i = 0; i < n && p < out + sizeof(buf[0]) - 8; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\')
			*p++ = (char)b[i];
		else
			p += sprintf(p, "\\x%02x", b[i]);
	}
	*p = '\0';
	return out;
}

/* ---- the reference reading ---- */

static bool
hexd(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool
ref_port(const unsigned char *p, size_t n)
{
	unsigned v = 0;

	if (n < 1 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	return v <= 65535;
}

static bool
ref_host(const unsigned char *h, size_t n)
{
	size_t i, name_end;

	if (n == 0)
		return false;
	if (h[0] == '[') {
		char addr[64];
		unsigned char a6[16];
		size_t close;

		/* IPv6address: hex digits, ":" and "." (an IPv4 tail) only, then "]". */
		for (close = 1; close < n && h[close] != ']'; close++)
			if (!hexd(h[close]) && h[close] != ':' && h[close] != '.')
				return false;
		if (close == n || close == 1 || close - 1 >= sizeof(addr))
			return false;
		memcpy(addr, h + 1, close - 1);
		addr[close - 1] = '\0';
		if (inet_pton(AF_INET6, addr, a6) != 1)
			return false;
		if (close + 1 == n)
			return true;
		return h[close + 1] == ':' && ref_port(h + close + 2, n - close - 2);
	}
	for (name_end = 0; name_end < n && h[name_end] != ':'; name_end++)
		;
	if (name_end == 0 || name_end > 255)
		return false;
	for (i = 0; i < name_end; i++) {
		unsigned char c = h[i];

		if (c != '\0' && (isalnum(c) || strchr("-._~!$&'()*+;=", c) != NULL))
			continue;
		if (c == '%' && i + 2 < name_end && hexd(h[i + 1]) && hexd(h[i + 2])) {
			if (h[i + 1] == '0' && h[i + 2] == '0')
				return false;	/* an encoded NUL: refused by choice */
			i += 2;
			continue;
		}
		return false;
	}
	return name_end == n || ref_port(h + name_end + 1, n - name_end - 1);
}

static bool
ref_path_query(const unsigned char *t, size_t n)
{
	bool query = false;

	for (size_t i = 0; i < n; i++) {
		if (t[i] <= 0x20 || t[i] >= 0x7f || t[i] == '#')
			return false;
		if (t[i] == '?')
			query = true;
		if (query || t[i] != '%')
			continue;
		if (i + 2 >= n || !hexd(t[i + 1]) || !hexd(t[i + 2]) ||
		    (t[i + 1] == '0' && t[i + 2] == '0'))
			return false;
		i += 2;
	}
	return true;
}

static bool
ref_target(const unsigned char *t, size_t n, bool options)
{
	size_t s, a;

	if (n == 0)
		return false;
	if (n == 1 && t[0] == '*')
		return options;
	if (t[0] == '/')
		return ref_path_query(t, n);
	if (n >= 7 && strncasecmp((const char *)t, "http://", 7) == 0)
		s = 7;
	else if (n >= 8 && strncasecmp((const char *)t, "https://", 8) == 0)
		s = 8;
	else
		return false;
	for (a = s; a < n && t[a] != '/' && t[a] != '?' && t[a] != '#'; a++)
		;
	return ref_host(t + s, a - s) && ref_path_query(t + a, n - a);
}

/* ---- checks on what is accepted ---- */

static void
check_host(const uint8_t *h, size_t n)
{
	uint8_t *buf = malloc(n + 16);
	struct uri_target u;
	const char *colon = NULL;
	size_t name_len = n;

	if (buf == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(h[i] > 0x20 && h[i] < 0x7f, "accepted Host with byte 0x%02x at %zu", h[i],
		    i);
		FUZZ_CHECK(strchr("@/?#\\,", h[i]) == NULL, "accepted Host with '%c'", h[i]);
	}
	if (h[0] == '[') {
		const uint8_t *close = memchr(h, ']', n);

		FUZZ_CHECK(close != NULL, "accepted Host with an open bracket");
		name_len = (size_t)(close - h) + 1;
		if (name_len < n)
			colon = (const char *)close + 1;
	} else {
		FUZZ_CHECK(memchr(h, '[', n) == NULL && memchr(h, ']', n) == NULL,
		    "accepted Host with a bracket not at the start");
		colon = memchr(h, ':', n);
		if (colon != NULL)
			name_len = (size_t)((const uint8_t *)colon - h);
	}
	FUZZ_CHECK(name_len >= 1 && name_len <= 255, "accepted Host name of %zu bytes", name_len);
	if (colon != NULL) {
		size_t plen = n - name_len - 1;

		FUZZ_CHECK(*colon == ':' && plen >= 1 && plen <= 5, "accepted Host port \"%.*s\"",
		    (int)(n - name_len), colon);
		for (size_t i = 0; i < plen; i++)
			FUZZ_CHECK(isdigit((unsigned char)colon[1 + i]), "accepted Host port \"%.*s\"",
			    (int)plen, colon + 1);
	}

	/* Accepted again from another copy: nothing past len, nothing of the address, counts. */
	memcpy(buf, h, n);
	FUZZ_CHECK(uri_host_check((const char *)buf, n) == NULL, "Host not accepted again");
	/* With a port added when it has none. */
	if (colon == NULL) {
		memcpy(buf + n, ":8080", 5);
		FUZZ_CHECK(uri_host_check((const char *)buf, n + 5) == NULL,
		    "Host refused with \":8080\" added");
		memcpy(buf + n, ":", 1);
		FUZZ_CHECK(uri_host_check((const char *)buf, n + 1) != NULL,
		    "Host accepted with an empty port");
	}
	/* Never with something that makes it another host, a list or a path. */
	memcpy(buf + n, "/x", 2);
	FUZZ_CHECK(uri_host_check((const char *)buf, n + 2) != NULL, "Host accepted with a path");
	memcpy(buf + n, ",h", 2);
	FUZZ_CHECK(uri_host_check((const char *)buf, n + 2) != NULL, "Host list accepted");
	memcpy(buf, "user@", 5);
	memcpy(buf + 5, h, n);
	FUZZ_CHECK(uri_host_check((const char *)buf, n + 5) != NULL,
	    "Host accepted with user information");
	/* And as the authority of an absolute-form target. */
	memcpy(buf, "http://", 7);
	memcpy(buf + 7, h, n);
	buf[7 + n] = '/';
	FUZZ_CHECK(uri_target_check((const char *)buf, n + 8, false, &u) == NULL,
	    "accepted Host refused as an authority");
	FUZZ_CHECK(u.form == URI_ABSOLUTE && u.authority_off == 7 && u.authority_len == n &&
	    u.path_off == n + 7 && u.path_len == 1 && !u.need_slash,
	    "authority of \"http://<host>/\": %zu+%zu, path %zu+%zu", u.authority_off,
	    u.authority_len, u.path_off, u.path_len);
	free(buf);
}

static void
check_target(const uint8_t *t, size_t n, bool options, const struct uri_target *u)
{
	const uint8_t *path;
	size_t q, slen;
	struct uri_target again;
	uint8_t *sent;

	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(t[i] > 0x20 && t[i] < 0x7f, "accepted target with byte 0x%02x at %zu",
		    t[i], i);
		FUZZ_CHECK(t[i] != '#', "accepted target with a fragment");
	}
	switch (u->form) {
	case URI_ASTERISK:
		FUZZ_CHECK(options && n == 1 && t[0] == '*', "asterisk-form for %zu bytes", n);
		FUZZ_CHECK(u->path_off == 0 && u->path_len == 1 && u->authority_len == 0 &&
		    !u->need_slash, "asterisk-form fields");
		return;
	case URI_ORIGIN:
		FUZZ_CHECK(t[0] == '/', "origin-form not starting with '/'");
		FUZZ_CHECK(u->path_off == 0 && u->path_len == n && u->authority_off == 0 &&
		    u->authority_len == 0 && !u->need_slash, "origin-form fields: path %zu+%zu",
		    u->path_off, u->path_len);
		break;
	case URI_ABSOLUTE:
		slen = (n > 5 && (t[4] | 0x20) == 's') ? 5 : 4;
		FUZZ_CHECK(strncasecmp((const char *)t, slen == 5 ? "https://" : "http://",
		    slen + 3) == 0, "absolute-form scheme \"%.*s\"", (int)(n < 8 ? n : 8), t);
		FUZZ_CHECK(u->authority_off == slen + 3, "authority at %zu", u->authority_off);
		FUZZ_CHECK(u->authority_len >= 1 && u->authority_off + u->authority_len <= n,
		    "authority %zu+%zu of %zu bytes", u->authority_off, u->authority_len, n);
		FUZZ_CHECK(u->authority_len < PROXY_AUTHORITY_BUF,
		    "authority of %zu bytes overflows request_head()'s buffer", u->authority_len);
		FUZZ_CHECK(uri_host_check((const char *)t + u->authority_off, u->authority_len) == NULL,
		    "authority \"%.*s\" is not a valid Host", (int)u->authority_len,
		    t + u->authority_off);
		FUZZ_CHECK(memchr(t + u->authority_off, '@', u->authority_len) == NULL,
		    "authority with user information");
		FUZZ_CHECK(u->path_off == u->authority_off + u->authority_len &&
		    u->path_off + u->path_len == n, "path %zu+%zu after authority %zu+%zu of %zu",
		    u->path_off, u->path_len, u->authority_off, u->authority_len, n);
		FUZZ_CHECK(u->path_len == 0 || t[u->path_off] == '/' || t[u->path_off] == '?',
		    "path part starting with '%c'", t[u->path_off]);
		FUZZ_CHECK(u->need_slash == (u->path_len == 0 || t[u->path_off] != '/'),
		    "need_slash %d for path \"%.*s\"", u->need_slash, (int)u->path_len,
		    t + u->path_off);
		break;
	default:
		FUZZ_CHECK(false, "form %d", (int)u->form);
	}

	/* Percent-encodings in the path (not the query): two hex digits, never NUL. */
	path = t + u->path_off;
	for (q = 0; q < u->path_len && path[q] != '?'; q++) {
		if (path[q] != '%')
			continue;
		FUZZ_CHECK(q + 2 < u->path_len && hexd(path[q + 1]) && hexd(path[q + 2]),
		    "malformed percent-encoding accepted at %zu", q);
		FUZZ_CHECK(!(path[q + 1] == '0' && path[q + 2] == '0'), "%%00 accepted in the path");
		q += 2;
	}

	/* What goes on to the backend is an origin-form target that passes again. */
	sent = malloc(u->path_len + 1);
	if (sent == NULL)
		abort();
	slen = 0;
	if (u->need_slash)
		sent[slen++] = '/';
	memcpy(sent + slen, t + u->path_off, u->path_len);
	slen += u->path_len;
	FUZZ_CHECK(uri_target_check((const char *)sent, slen, false, &again) == NULL,
	    "target sent on (\"%.*s\") is refused", (int)slen, sent);
	FUZZ_CHECK(again.form == URI_ORIGIN && again.path_len == slen, "target sent on: form %d",
	    (int)again.form);
	free(sent);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct uri_target u;
	const char *why;
	bool options, ok, want;
	uint8_t *copy;

	if (size < 1)
		return 0;
	options = data[0] & 1;
	data++;
	size--;
	/* An exact-size heap copy: ASan sees any read past the end. */
	copy = malloc(size ? size : 1);
	if (copy == NULL)
		abort();
	memcpy(copy, data, size);

	why = uri_host_check((const char *)copy, size);
	ok = why == NULL;
	want = ref_host(copy, size);
	FUZZ_CHECK(ok == want, "uri_host_check(\"%s\") %s, the grammar says %s",
	    show(copy, size), ok ? "accepts" : why, want ? "valid" : "invalid");
	FUZZ_CHECK(ok || why[0] != '\0', "empty reason");
	if (ok)
		check_host(copy, size);

	why = uri_target_check((const char *)copy, size, options, &u);
	ok = why == NULL;
	want = ref_target(copy, size, options);
	FUZZ_CHECK(ok == want, "uri_target_check(\"%s\", options %d) %s, the grammar says %s",
	    show(copy, size), options, ok ? "accepts" : why, want ? "valid" : "invalid");
	FUZZ_CHECK(ok || why[0] != '\0', "empty reason");
	if (ok)
		check_target(copy, size, options, &u);
	free(copy);
	return 0;
}
