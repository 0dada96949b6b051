/* Pure parsers for user-typed values: Go durations, byte sizes, backend URLs, listen addresses. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "roundguard/parse.h"

/* Inputs are echoed in messages up to this many bytes, so a huge value cannot bury the reason. */
#define QUOTE_SHOW 64
/* Quotes, "..." and every shown byte escaped as \xNN. */
#define QUOTE_MAX PARSE_QUOTE_BUF(QUOTE_SHOW)

/* Longest host name in dotted form and longest label (RFC 1035). */
#define HOST_NAME_MAX_LEN 253
#define HOST_LABEL_MAX_LEN 63

#define DURATION_UNITS_HINT "use ns, us, ms, s, m, h"
#define SIZE_UNITS_HINT "use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"

enum port_result {
	PORT_OK,
	PORT_MISSING,
	PORT_NOT_NUMBER,
	PORT_RANGE,
};

static int fail(char *err, size_t errlen, const char *s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

const char *
parse_quote(char *buf, size_t show, const char *s, size_t n, bool ascii_only)
{
	size_t w = 0, i;

	buf[w++] = '"';
	for (i = 0; i < n && i < show; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			buf[w++] = '\\';
			buf[w++] = (char)c;
		} else if (c < 0x20 || c == 0x7f || (ascii_only && c > 0x7f)) {
			snprintf(buf + w, 5, "\\x%02x", c);
			w += 4;
		} else {
			buf[w++] = (char)c;
		}
	}
	if (i < n) {
		memcpy(buf + w, "...", 3);
		w += 3;
	}
	buf[w++] = '"';
	buf[w] = '\0';
	return buf;
}

/* Quote n bytes of s for a message; control bytes are escaped so the message stays one line. */
static const char *
quote(char buf[static QUOTE_MAX], const char *s, size_t n)
{
	return parse_quote(buf, QUOTE_SHOW, s, n, false);
}

/* Write "<quoted input>: <reason>" into err; returns -1 so that callers can return it. */
static int
fail(char *err, size_t errlen, const char *s, const char *fmt, ...)
{
	char q[QUOTE_MAX];
	va_list ap;
	int n;

	if (err == NULL || errlen == 0)
		return -1;
	n = snprintf(err, errlen, "%s: ", quote(q, s, strlen(s)));
	if (n < 0 || (size_t)n >= errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Spaces and control bytes are never part of a URL or an address; catching them early gives a clear message. */
static bool
has_space_or_control(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

struct duration_unit {
	const char *name;
	uint64_t ns;
};

/* Go's table: "µs" may be spelled with the micro sign (U+00B5) or Greek mu (U+03BC). */
static const struct duration_unit duration_units[] = {
	{ "ns", 1 },
	{ "us", 1000 },
	{ "\xc2\xb5s", 1000 },
	{ "\xce\xbcs", 1000 },
	{ "ms", 1000000 },
	{ "s", UINT64_C(1000000000) },
	{ "m", UINT64_C(60000000000) },
	{ "h", UINT64_C(3600000000000) },
};

static uint64_t
duration_unit_ns(const char *u, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(duration_units) / sizeof(duration_units[0]); i++) {
		if (strlen(duration_units[i].name) == n && memcmp(duration_units[i].name, u, n) == 0)
			return duration_units[i].ns;
	}
	return 0;
}

int
parse_duration(const char *s, int64_t *ns, char *err, size_t errlen)
{
	const uint64_t max = INT64_MAX;
	const char *p;
	uint64_t total = 0;

	if (s == NULL)
		s = "";
	if (*s == '\0')
		return fail(err, errlen, s, "empty duration (expected e.g. \"500ms\", \"5s\", \"1m30s\")");
	p = s;
	if (*p == '-')
		return fail(err, errlen, s, "negative durations are not allowed");
	/* Go accepts a plus sign; the Go version's PROXY_CHECK_DURATION did too. */
	if (*p == '+')
		p++;
	if (strcmp(p, "0") == 0) {
		*ns = 0;
		return 0;
	}
	if (*p == '\0')
		goto invalid;

	while (*p != '\0') {
		const char *ip = p, *fp, *up;
		size_t il, fl, ul, i;
		uint64_t v = 0, unit, frac = 0;
		char q[QUOTE_MAX];

		if (!is_digit(*p) && *p != '.')
			goto invalid;
		for (; is_digit(*p); p++) {
			unsigned d = (unsigned)(*p - '0');

			if (v > (max - d) / 10)
				goto too_large;
			v = v * 10 + d;
		}
		il = (size_t)(p - ip);
		fp = p;
		fl = 0;
		if (*p == '.') {
			fp = ++p;
			while (is_digit(*p))
				p++;
			fl = (size_t)(p - fp);
		}
		if (il == 0 && fl == 0)
			goto invalid;

		up = p;
		while (*p != '\0' && *p != '.' && !is_digit(*p))
			p++;
		ul = (size_t)(p - up);
		if (ul == 0) {
			if (*p == '\0')
				return fail(err, errlen, s, "missing unit (" DURATION_UNITS_HINT ")");
			goto invalid;
		}
		if (*up == ' ')
			return fail(err, errlen, s, "no space is allowed between a number and its unit");
		unit = duration_unit_ns(up, ul);
		if (unit == 0)
			return fail(err, errlen, s, "unknown unit %s (" DURATION_UNITS_HINT ")",
			    quote(q, up, ul));

		if (v > max / unit)
			goto too_large;
		v *= unit;
		/*
		 * floor(unit * 0.d1d2...dk) exactly, digit by digit from the right: with x the
		 * floor of the tail's value, floor((d * unit + x) / 10) is the floor of the whole,
		 * and nothing exceeds 10 * unit. Truncating, as Go does, rather than rounding.
		 */
		for (i = fl; i-- > 0;)
			frac = ((uint64_t)(fp[i] - '0') * unit + frac) / 10;
		if (frac > max - v)
			goto too_large;
		v += frac;
		if (v > max - total)
			goto too_large;
		total += v;
	}
	*ns = (int64_t)total;
	return 0;

invalid:
	return fail(err, errlen, s,
	    "not a duration (expected numbers with units, e.g. \"500ms\", \"5s\", \"1m30s\")");
too_large:
	return fail(err, errlen, s, "duration too large (at most 2562047h47m16.854775807s)");
}

struct size_unit {
	const char *name;
	uint64_t bytes;		/* 0: ambiguous, rejected with hint */
	const char *hint;
};

static const struct size_unit size_units[] = {
	{ "B", 1, NULL },
	{ "KiB", UINT64_C(1) << 10, NULL },
	{ "MiB", UINT64_C(1) << 20, NULL },
	{ "GiB", UINT64_C(1) << 30, NULL },
	{ "TiB", UINT64_C(1) << 40, NULL },
	{ "KB", UINT64_C(1000), NULL },
	{ "MB", UINT64_C(1000000), NULL },
	{ "GB", UINT64_C(1000000000), NULL },
	{ "TB", UINT64_C(1000000000000), NULL },
	/* "64k" could mean either power; make the user say which. */
	{ "k", 0, "KiB or KB" },
	{ "m", 0, "MiB or MB" },
	{ "g", 0, "GiB or GB" },
	{ "t", 0, "TiB or TB" },
};

int
parse_size(const char *s, uint64_t *bytes, char *err, size_t errlen)
{
	const struct size_unit *unit = NULL;
	const char *p;
	uint64_t v = 0;
	size_t i;
	char q[QUOTE_MAX];

	if (s == NULL)
		s = "";
	p = s;
	if (*s == '\0')
		return fail(err, errlen, s, "empty size (expected e.g. \"512\", \"64KiB\", \"16MiB\")");
	if (*s == '-')
		return fail(err, errlen, s, "negative sizes are not allowed");
	if (!is_digit(*s))
		return fail(err, errlen, s, "not a size (expected e.g. \"512\", \"64KiB\", \"16MiB\")");
	for (; is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			goto too_large;
		v = v * 10 + d;
	}
	if (*p == '.' || *p == ',')
		return fail(err, errlen, s, "fractions are not allowed (use a smaller unit)");
	if (*p == ' ')
		return fail(err, errlen, s, "no space is allowed between the number and its unit");
	if (*p == '\0') {
		*bytes = v;
		return 0;
	}
	for (i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
		if (strcasecmp(p, size_units[i].name) == 0) {
			unit = &size_units[i];
			break;
		}
	}
	if (unit == NULL)
		return fail(err, errlen, s, "unknown unit %s (" SIZE_UNITS_HINT ")",
		    quote(q, p, strlen(p)));
	if (unit->bytes == 0)
		return fail(err, errlen, s, "ambiguous unit %s (use %s)", quote(q, p, strlen(p)),
		    unit->hint);
	if (v > UINT64_MAX / unit->bytes)
		goto too_large;
	*bytes = v * unit->bytes;
	return 0;

too_large:
	return fail(err, errlen, s, "size too large (at most 18446744073709551615 bytes)");
}

/* Go's fmtFrac: v / 10^prec's fraction without trailing zeros, written backwards ending at w. */
static size_t
format_frac(char *buf, size_t w, uint64_t *v, int prec)
{
	bool print = false;
	int i;

	for (i = 0; i < prec; i++) {
		unsigned digit = (unsigned)(*v % 10);

		print = print || digit != 0;
		if (print)
			buf[--w] = (char)('0' + digit);
		*v /= 10;
	}
	if (print)
		buf[--w] = '.';
	return w;
}

/* Decimal v written backwards ending at w. */
static size_t
format_int(char *buf, size_t w, uint64_t v)
{
	do {
		buf[--w] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	return w;
}

/* Built right to left like Go's Duration.String(); 32 bytes hold the longest, INT64_MIN. */
void
format_duration(char *buf, size_t buflen, int64_t ns)
{
	char tmp[32];
	size_t w = sizeof(tmp) - 1;
	bool neg = ns < 0;
	uint64_t u = neg ? -(uint64_t)ns : (uint64_t)ns;

	tmp[w] = '\0';
	if (u < UINT64_C(1000000000)) {
		int prec;

		tmp[--w] = 's';
		if (u == 0) {
			tmp[--w] = '0';
			goto out;
		} else if (u < 1000) {
			prec = 0;
			tmp[--w] = 'n';
		} else if (u < 1000000) {
			prec = 3;
			tmp[--w] = '\xb5';
			tmp[--w] = '\xc2';
		} else {
			prec = 6;
			tmp[--w] = 'm';
		}
		w = format_frac(tmp, w, &u, prec);
		w = format_int(tmp, w, u);
	} else {
		tmp[--w] = 's';
		w = format_frac(tmp, w, &u, 9);
		w = format_int(tmp, w, u % 60);
		u /= 60;
		if (u > 0) {
			tmp[--w] = 'm';
			w = format_int(tmp, w, u % 60);
			u /= 60;
			if (u > 0) {
				tmp[--w] = 'h';
				w = format_int(tmp, w, u);
			}
		}
	}
	if (neg)
		tmp[--w] = '-';
out:
	if (buflen > 0)
		strlcpy(buf, tmp + w, buflen);
}

/* Decimal port 1-65535 from n bytes; digits only, so no sign, space or hex slips through. */
static enum port_result
port_scan(const char *p, size_t n, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0)
		return PORT_MISSING;
	for (i = 0; i < n; i++) {
		if (!is_digit(p[i]))
			return PORT_NOT_NUMBER;
		/* Stop growing once out of range so long inputs cannot wrap. */
		if (v <= 65535)
			v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v == 0 || v > 65535)
		return PORT_RANGE;
	*port = (uint16_t)v;
	return PORT_OK;
}

/* Message for a port embedded in a larger input s. */
static int
port_fail(char *err, size_t errlen, const char *s, const char *p, size_t n, enum port_result r)
{
	char q[QUOTE_MAX];

	switch (r) {
	case PORT_MISSING:
		return fail(err, errlen, s, "missing port number after \":\"");
	case PORT_NOT_NUMBER:
		return fail(err, errlen, s, "port %s is not a number (use 1-65535)", quote(q, p, n));
	default:
		return fail(err, errlen, s, "port %s out of range (use 1-65535)", quote(q, p, n));
	}
}

int
parse_port(const char *s, uint16_t *port, char *err, size_t errlen)
{
	if (s == NULL)
		s = "";
	switch (port_scan(s, strlen(s), port)) {
	case PORT_OK:
		return 0;
	case PORT_MISSING:
		return fail(err, errlen, s, "missing port number (use 1-65535)");
	case PORT_NOT_NUMBER:
		return fail(err, errlen, s, "not a port number (use 1-65535)");
	default:
		return fail(err, errlen, s, "port out of range (use 1-65535)");
	}
}

/* Check n bytes as an IPv6 literal (no brackets, no zone) and copy it to out. */
static bool
ipv6_literal(const char *h, size_t n, char out[static PARSE_HOST_MAX])
{
	struct in6_addr a;

	if (n == 0 || n >= INET6_ADDRSTRLEN)
		return false;
	memcpy(out, h, n);
	out[n] = '\0';
	return inet_pton(AF_INET6, out, &a) == 1;
}

/*
 * Check n bytes as a host name or IPv4 literal and copy it to out; returns NULL
 * or why it is neither. All-digit dotted hosts must be valid IPv4 addresses,
 * since no real host name looks like one.
 */
static const char *
host_name(const char *h, size_t n, char out[static PARSE_HOST_MAX])
{
	struct in_addr a;
	bool numeric = true;
	size_t i, label = 0;

	if (n == 0)
		return "missing host";
	if (n > HOST_NAME_MAX_LEN)
		return "host name too long (at most 253 bytes)";
	for (i = 0; i < n; i++) {
		char c = h[i];

		if (c == '.') {
			if (label == 0)
				return "empty label in host name (check the dots)";
			label = 0;
			continue;
		}
		if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_')
			return "invalid host (use letters, digits, '-', '_' and '.', or an IP address)";
		if (!is_digit(c))
			numeric = false;
		if (++label > HOST_LABEL_MAX_LEN)
			return "host name label too long (at most 63 bytes between dots)";
	}
	if (label == 0)
		return "empty label in host name (check the dots)";
	memcpy(out, h, n);
	out[n] = '\0';
	if (numeric && inet_pton(AF_INET, out, &a) != 1)
		return "invalid IPv4 address";
	return NULL;
}

/* RFC 3986 pchar or '/', with %XX escapes checked; anything else would need escaping on the wire. */
static bool
prefix_valid(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = p[i];

		if (c == '%') {
			if (n - i < 3 || !is_hex(p[i + 1]) || !is_hex(p[i + 2]))
				return false;
			i += 2;
			continue;
		}
		if (is_alpha(c) || is_digit(c) || strchr("-._~!$&'()*+,;=:@/", c) != NULL)
			continue;
		return false;
	}
	return true;
}

int
parse_backend_url(const char *s, struct backend_url *out, char *err, size_t errlen)
{
	struct backend_url u;
	const char *p, *auth, *aend, *end, *host, *hend, *portp = NULL, *bad;
	const char *why;
	size_t n;
	char q[QUOTE_MAX];

	if (s == NULL)
		s = "";
	memset(&u, 0, sizeof(u));
	if (*s == '\0')
		return fail(err, errlen, s, "empty backend URL (expected \"http://host[:port][/prefix]\")");
	if (has_space_or_control(s))
		return fail(err, errlen, s, "spaces and control characters are not allowed in a URL");

	/* RFC 3986 scheme: a letter, then letters, digits, '+', '-', '.'. */
	p = s;
	if (is_alpha(*p)) {
		while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-' || *p == '.')
			p++;
	}
	if (p == s || strncmp(p, "://", 3) != 0)
		return fail(err, errlen, s, "missing scheme (expected \"http://host[:port][/prefix]\")");
	if (p - s == 5 && strncasecmp(s, "https", 5) == 0)
		u.tls = 1;
	else if (p - s != 4 || strncasecmp(s, "http", 4) != 0)
		return fail(err, errlen, s, "unsupported scheme %s (use http or https)",
		    quote(q, s, (size_t)(p - s)));
	auth = p + 3;
	end = auth + strlen(auth);

	bad = strpbrk(auth, "?#");
	if (bad != NULL && *bad == '?')
		return fail(err, errlen, s, "query strings are not allowed in a backend URL");
	if (bad != NULL)
		return fail(err, errlen, s, "fragments are not allowed in a backend URL");

	aend = strchr(auth, '/');
	if (aend == NULL)
		aend = end;
	if (memchr(auth, '@', (size_t)(aend - auth)) != NULL)
		return fail(err, errlen, s, "user info (\"user@\") is not allowed in a backend URL");
	if (aend == auth)
		return fail(err, errlen, s, "missing host");

	if (*auth == '[') {
		host = auth + 1;
		hend = memchr(host, ']', (size_t)(aend - host));
		if (hend == NULL)
			return fail(err, errlen, s, "missing \"]\" after the IPv6 address");
		if (!ipv6_literal(host, (size_t)(hend - host), u.host))
			return fail(err, errlen, s, "invalid IPv6 address %s",
			    quote(q, host, (size_t)(hend - host)));
		u.is_ipv6 = 1;
		if (hend + 1 < aend) {
			if (hend[1] != ':')
				return fail(err, errlen, s, "unexpected text after \"]\" (expected \":port\")");
			portp = hend + 2;
		}
	} else {
		host = auth;
		hend = memchr(auth, ':', (size_t)(aend - auth));
		if (hend != NULL && memchr(hend + 1, ':', (size_t)(aend - hend - 1)) != NULL)
			return fail(err, errlen, s,
			    "IPv6 addresses must be in brackets (e.g. \"http://[::1]:8080\")");
		if (hend == NULL)
			hend = aend;
		else
			portp = hend + 1;
		why = host_name(host, (size_t)(hend - host), u.host);
		if (why != NULL)
			return fail(err, errlen, s, "%s", why);
	}

	u.port = u.tls ? 443 : 80;
	if (portp != NULL) {
		enum port_result r = port_scan(portp, (size_t)(aend - portp), &u.port);

		if (r != PORT_OK)
			return port_fail(err, errlen, s, portp, (size_t)(aend - portp), r);
	}

	/* "/api/" and "/api" proxy the same way; "/" alone is no prefix at all. */
	n = (size_t)(end - aend);
	while (n > 0 && aend[n - 1] == '/')
		n--;
	if (!prefix_valid(aend, n))
		return fail(err, errlen, s,
		    "invalid character in path prefix (use letters, digits, \"-._~/\" or %%XX escapes)");
	if (n >= sizeof(u.prefix))
		return fail(err, errlen, s, "path prefix too long (at most %zu bytes)",
		    sizeof(u.prefix) - 1);
	memcpy(u.prefix, aend, n);
	u.prefix[n] = '\0';

	snprintf(u.hostport, sizeof(u.hostport), u.is_ipv6 ? "[%s]:%u" : "%s:%u", u.host,
	    (unsigned)u.port);
	*out = u;
	return 0;
}

int
parse_listen_addr(const char *s, struct listen_addr *out, char *err, size_t errlen)
{
	struct listen_addr a;
	const char *colon, *portp;
	const char *why;
	enum port_result r;
	char q[QUOTE_MAX];

	if (s == NULL)
		s = "";
	memset(&a, 0, sizeof(a));
	if (*s == '\0')
		return fail(err, errlen, s,
		    "empty listen address (expected \"host:port\", \":port\" or \"port\")");
	if (has_space_or_control(s))
		return fail(err, errlen, s, "spaces and control characters are not allowed in an address");

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL)
			return fail(err, errlen, s, "missing \"]\" after the IPv6 address");
		if (!ipv6_literal(s + 1, (size_t)(close - s - 1), a.host))
			return fail(err, errlen, s, "invalid IPv6 address %s",
			    quote(q, s + 1, (size_t)(close - s - 1)));
		a.is_ipv6 = 1;
		if (close[1] == '\0')
			return fail(err, errlen, s, "missing port (e.g. \"[::1]:3000\")");
		if (close[1] != ':')
			return fail(err, errlen, s, "unexpected text after \"]\" (expected \":port\")");
		portp = close + 2;
	} else {
		colon = strchr(s, ':');
		if (colon == NULL) {
			/* A bare port: "3000". Anything not starting with a digit is a host without port. */
			if (!is_digit(*s))
				return fail(err, errlen, s,
				    "missing port (expected \"host:port\", \":port\" or \"port\")");
			portp = s;
		} else {
			if (strchr(colon + 1, ':') != NULL)
				return fail(err, errlen, s,
				    "IPv6 addresses must be in brackets (e.g. \"[::1]:3000\")");
			/* "" and "*" both mean every address, as in Go and nginx. */
			if (!(colon == s || (colon == s + 1 && *s == '*'))) {
				why = host_name(s, (size_t)(colon - s), a.host);
				if (why != NULL)
					return fail(err, errlen, s, "%s", why);
			}
			portp = colon + 1;
		}
	}

	r = port_scan(portp, strlen(portp), &a.port);
	if (r != PORT_OK) {
		if (portp == s)
			return parse_port(s, &a.port, err, errlen);
		return port_fail(err, errlen, s, portp, strlen(portp), r);
	}
	*out = a;
	return 0;
}

int
parse_listen_flag(const char *s, uint16_t default_port, struct listen_addr *out,
    char *err, size_t errlen)
{
	char buf[PARSE_HOST_MAX + 16];
	const char *colon = strchr(s, ':');
	size_t len = strlen(s);

	if (len == 0) {
		snprintf(err, errlen, "\"\": an address is needed (\"*\" for all addresses)");
		return -1;
	}
	if (s[0] == '[' && s[len - 1] == ']')
		snprintf(buf, sizeof(buf), "%s:%u", s, default_port);	/* "[::1]" */
	else if (colon != NULL && strchr(colon + 1, ':') != NULL && s[0] != '[')
		snprintf(buf, sizeof(buf), "[%s]:%u", s, default_port);	/* "::1" */
	else if (colon == NULL)
		snprintf(buf, sizeof(buf), "%s:%u", s, default_port);	/* "127.0.0.1" */
	else
		return parse_listen_addr(s, out, err, errlen);
	return parse_listen_addr(buf, out, err, errlen);
}
