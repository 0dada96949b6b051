/*
 * libFuzzer harness for the value parsers of parse.h: parse_duration,
 * parse_size, parse_backend_url, parse_listen_addr, parse_port and
 * format_duration.
 *
 * Input: one selector byte, then the text (copied and NUL-terminated, so an
 * embedded NUL just ends it early). The selector's low 3 bits pick the
 * parser, the rest the size of the error buffer (0 to 1024 bytes, allocated
 * to the exact size so that ASan sees any write past it).
 *
 * Checked beyond "no crash": error messages are NUL-terminated inside their
 * buffer and hold no control bytes (they go into one log line); a failed
 * parse leaves its output alone; what parses formats back to text that
 * parses to the same value (durations, URLs, listen addresses); sizes and
 * ports agree with a naive reference parser.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "roundguard/parse.h"

#include "fuzz.h"

static const size_t errlens[] = { 256, 0, 1, 2, 3, 8, 16, 40, 64, 128, 512, 1024 };

/* An error message: terminated within errlen, one line of printable text. */
static void
check_err(const char *err, size_t errlen, const char *input)
{
	const char *nul;

	if (errlen == 0)
		return;
	nul = memchr(err, '\0', errlen);
	FUZZ_CHECK(nul != NULL, "error message not terminated (input \"%s\")", input);
	for (const char *p = err; p < nul; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f,
		    "control byte 0x%02x in error message \"%s\"", (unsigned char)*p, err);
	if (errlen >= 128)
		FUZZ_CHECK(nul != err, "empty error message for \"%s\"", input);
}

static char *
new_err(size_t errlen)
{
	char *err = malloc(errlen > 0 ? errlen : 1);

	if (err == NULL)
		abort();
	memset(err, 'E', errlen);
	return err;
}

/* ---- durations ---- */

static void
check_format_duration(int64_t ns)
{
	char full[32], cut[32];
	size_t len;

	memset(full, 'X', sizeof(full));
	format_duration(full, sizeof(full), ns);
	FUZZ_CHECK(memchr(full, '\0', sizeof(full)) != NULL, "format_duration(%" PRId64 ") "
	    "not terminated", ns);
	len = strlen(full);
	FUZZ_CHECK(len > 0, "format_duration(%" PRId64 ") is empty", ns);
	for (size_t n = 1; n < sizeof(cut); n++) {
		memset(cut, 'X', sizeof(cut));
		format_duration(cut, n, ns);
		FUZZ_CHECK(strlen(cut) == (len < n - 1 ? len : n - 1) &&
		    strncmp(cut, full, strlen(cut)) == 0,
		    "format_duration(%" PRId64 ") into %zu bytes gave \"%s\", not a prefix of \"%s\"",
		    ns, n, cut, full);
	}
	/* Buffer size 0: nothing written at all. */
	cut[0] = 'X';
	format_duration(cut, 0, ns);
	FUZZ_CHECK(cut[0] == 'X', "format_duration wrote into a 0-byte buffer");

	if (ns >= 0) {
		int64_t back = -1;
		char err[256];

		FUZZ_CHECK(parse_duration(full, &back, err, sizeof(err)) == 0,
		    "format_duration(%" PRId64 ") = \"%s\" does not parse: %s", ns, full, err);
		FUZZ_CHECK(back == ns, "\"%s\" parses to %" PRId64 ", formatted from %" PRId64,
		    full, back, ns);
	} else {
		FUZZ_CHECK(full[0] == '-', "negative %" PRId64 " formatted as \"%s\"", ns, full);
		if (ns != INT64_MIN) {
			int64_t back = -1;
			char err[256];

			FUZZ_CHECK(parse_duration(full + 1, &back, err, sizeof(err)) == 0 &&
			    back == -ns, "\"%s\" does not parse back to %" PRId64, full + 1, -ns);
		}
	}
}

static void
fuzz_duration(const char *s, char *err, size_t errlen)
{
	const int64_t sentinel = INT64_C(-4242);
	int64_t ns = sentinel;
	int rc = parse_duration(s, &ns, err, errlen);

	FUZZ_CHECK(rc == 0 || rc == -1, "parse_duration returned %d", rc);
	if (rc == -1) {
		FUZZ_CHECK(ns == sentinel, "failed parse_duration(\"%s\") wrote %" PRId64, s, ns);
		check_err(err, errlen, s);
		return;
	}
	FUZZ_CHECK(ns >= 0, "parse_duration(\"%s\") = %" PRId64 " < 0", s, ns);
	FUZZ_CHECK(*s != '-' && *s != '\0', "parse_duration accepted \"%s\"", s);
	check_format_duration(ns);
}

/* ---- sizes, against a naive reference ---- */

static int
ref_size(const char *s, uint64_t *out)
{
	static const struct { const char *name; uint64_t mult; } units[] = {
		{ "b", 1 }, { "kib", UINT64_C(1) << 10 }, { "mib", UINT64_C(1) << 20 },
		{ "gib", UINT64_C(1) << 30 }, { "tib", UINT64_C(1) << 40 },
		{ "kb", 1000 }, { "mb", 1000000 }, { "gb", 1000000000 }, { "tb", 1000000000000 },
	};
	unsigned __int128 v = 0;
	const char *p = s;
	uint64_t mult = 1;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT64_MAX)
			return -1;
	}
	if (*p != '\0') {
		size_t i;

		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strcasecmp(p, units[i].name) == 0)
				break;
		if (i == sizeof(units) / sizeof(units[0]))
			return -1;
		mult = units[i].mult;
	}
	v *= mult;
	if (v > UINT64_MAX)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static void
fuzz_size(const char *s, char *err, size_t errlen)
{
	const uint64_t sentinel = UINT64_C(0x4242424242424242);
	uint64_t n = sentinel, want = 0;
	int rc = parse_size(s, &n, err, errlen);
	int ref = ref_size(s, &want);

	FUZZ_CHECK(rc == ref, "parse_size(\"%s\") returned %d, the reference %d", s, rc, ref);
	if (rc == -1) {
		FUZZ_CHECK(n == sentinel, "failed parse_size(\"%s\") wrote %" PRIu64, s, n);
		check_err(err, errlen, s);
		return;
	}
	FUZZ_CHECK(n == want, "parse_size(\"%s\") = %" PRIu64 ", the reference %" PRIu64, s, n, want);
}

/* ---- ports ---- */

static void
fuzz_port(const char *s, char *err, size_t errlen)
{
	uint16_t port = 4242;
	int rc = parse_port(s, &port, err, errlen);
	unsigned long v = 0;
	bool ok = *s != '\0';

	for (const char *p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9') {
			ok = false;
			break;
		}
		if (v <= 70000)
			v = v * 10 + (unsigned long)(*p - '0');
	}
	ok = ok && v >= 1 && v <= 65535;
	FUZZ_CHECK((rc == 0) == ok, "parse_port(\"%s\") returned %d", s, rc);
	if (rc == 0)
		FUZZ_CHECK(port == v, "parse_port(\"%s\") = %u", s, (unsigned)port);
	else {
		FUZZ_CHECK(port == 4242, "failed parse_port(\"%s\") wrote %u", s, (unsigned)port);
		check_err(err, errlen, s);
	}
}

/* ---- backend URLs ---- */

static bool
prefix_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    strchr("-._~!$&'()*+,;=:@/%", c) != NULL;
}

static void
fuzz_backend_url(const char *s, char *err, size_t errlen)
{
	struct backend_url u, again;
	char rebuilt[sizeof(u.hostport) + sizeof(u.prefix) + 16], err2[256];
	size_t n;
	int rc;

	memset(&u, 0x42, sizeof(u));
	rc = parse_backend_url(s, &u, err, errlen);
	FUZZ_CHECK(rc == 0 || rc == -1, "parse_backend_url returned %d", rc);
	if (rc == -1) {
		for (size_t i = 0; i < sizeof(u); i++)
			FUZZ_CHECK(((unsigned char *)&u)[i] == 0x42,
			    "failed parse_backend_url(\"%s\") wrote its output", s);
		check_err(err, errlen, s);
		return;
	}
	FUZZ_CHECK(u.tls == 0 || u.tls == 1, "tls = %d", u.tls);
	FUZZ_CHECK(strncasecmp(s, u.tls ? "https://" : "http://", u.tls ? 8 : 7) == 0,
	    "accepted \"%s\" without http:// or https:// (tls %d)", s, u.tls);
	FUZZ_CHECK(memchr(u.host, '\0', sizeof(u.host)) != NULL && u.host[0] != '\0',
	    "bad host from \"%s\"", s);
	FUZZ_CHECK(memchr(u.prefix, '\0', sizeof(u.prefix)) != NULL, "prefix unterminated");
	FUZZ_CHECK(memchr(u.hostport, '\0', sizeof(u.hostport)) != NULL, "hostport unterminated");
	FUZZ_CHECK(u.port >= 1, "port 0 from \"%s\"", s);
	FUZZ_CHECK(u.is_ipv6 == 0 || u.is_ipv6 == 1, "is_ipv6 = %d", u.is_ipv6);
	FUZZ_CHECK(u.is_ipv6 || strchr(u.host, ':') == NULL, "':' in host \"%s\"", u.host);
	for (const char *p = u.host; *p != '\0'; p++)
		FUZZ_CHECK((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f &&
		    strchr("/?#@[]", *p) == NULL, "byte 0x%02x in host \"%s\" from \"%s\"",
		    (unsigned char)*p, u.host, s);
	n = strlen(u.prefix);
	FUZZ_CHECK(n == 0 || (u.prefix[0] == '/' && u.prefix[n - 1] != '/'),
	    "prefix \"%s\" from \"%s\"", u.prefix, s);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(prefix_char(u.prefix[i]), "byte 0x%02x in prefix \"%s\"",
		    (unsigned char)u.prefix[i], u.prefix);
	snprintf(rebuilt, sizeof(rebuilt), u.is_ipv6 ? "[%s]:%u" : "%s:%u", u.host,
	    (unsigned)u.port);
	FUZZ_CHECK(strcmp(rebuilt, u.hostport) == 0, "hostport \"%s\", expected \"%s\"",
	    u.hostport, rebuilt);

	/* What the parser made of it reads back the same. */
	snprintf(rebuilt, sizeof(rebuilt), "%s://%s%s", u.tls ? "https" : "http", u.hostport, u.prefix);
	FUZZ_CHECK(parse_backend_url(rebuilt, &again, err2, sizeof(err2)) == 0,
	    "\"%s\" (from \"%s\") does not parse again: %s", rebuilt, s, err2);
	FUZZ_CHECK(strcmp(again.host, u.host) == 0 && again.port == u.port &&
	    again.is_ipv6 == u.is_ipv6 && again.tls == u.tls && strcmp(again.prefix, u.prefix) == 0 &&
	    strcmp(again.hostport, u.hostport) == 0,
	    "\"%s\" and \"%s\" parse differently", s, rebuilt);
}

/* ---- listen addresses ---- */

static void
fuzz_listen(const char *s, char *err, size_t errlen)
{
	struct listen_addr a, again;
	char rebuilt[PARSE_HOST_MAX + 16], err2[256];
	int rc;

	memset(&a, 0x42, sizeof(a));
	rc = parse_listen_addr(s, &a, err, errlen);
	FUZZ_CHECK(rc == 0 || rc == -1, "parse_listen_addr returned %d", rc);
	if (rc == -1) {
		for (size_t i = 0; i < sizeof(a); i++)
			FUZZ_CHECK(((unsigned char *)&a)[i] == 0x42,
			    "failed parse_listen_addr(\"%s\") wrote its output", s);
		check_err(err, errlen, s);
		return;
	}
	FUZZ_CHECK(memchr(a.host, '\0', sizeof(a.host)) != NULL, "host unterminated");
	FUZZ_CHECK(a.port >= 1, "port 0 from \"%s\"", s);
	FUZZ_CHECK(a.is_ipv6 || strchr(a.host, ':') == NULL, "':' in host \"%s\"", a.host);
	FUZZ_CHECK(!a.is_ipv6 || a.host[0] != '\0', "empty IPv6 host from \"%s\"", s);
	for (const char *p = a.host; *p != '\0'; p++)
		FUZZ_CHECK((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f &&
		    strchr("/?#@[]*", *p) == NULL, "byte 0x%02x in host \"%s\" from \"%s\"",
		    (unsigned char)*p, a.host, s);

	if (a.host[0] == '\0')
		snprintf(rebuilt, sizeof(rebuilt), ":%u", (unsigned)a.port);
	else
		snprintf(rebuilt, sizeof(rebuilt), a.is_ipv6 ? "[%s]:%u" : "%s:%u", a.host,
		    (unsigned)a.port);
	FUZZ_CHECK(parse_listen_addr(rebuilt, &again, err2, sizeof(err2)) == 0,
	    "\"%s\" (from \"%s\") does not parse again: %s", rebuilt, s, err2);
	FUZZ_CHECK(strcmp(again.host, a.host) == 0 && again.port == a.port &&
	    again.is_ipv6 == a.is_ipv6, "\"%s\" and \"%s\" parse differently", s, rebuilt);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t errlen;
	char *s, *err;

	if (size < 1)
		return 0;
	errlen = errlens[(data[0] >> 3) % (sizeof(errlens) / sizeof(errlens[0]))];
	if ((data[0] & 7) == 7) {
		/* format_duration on a raw 64-bit value. */
		int64_t ns = 0;

		if (size < 1 + sizeof(ns))
			return 0;
		memcpy(&ns, data + 1, sizeof(ns));
		check_format_duration(ns);
		return 0;
	}
	s = fuzz_strndup(data + 1, size - 1);
	err = new_err(errlen);
	switch (data[0] & 7) {
	case 0: fuzz_duration(s, err, errlen); break;
	case 1: fuzz_size(s, err, errlen); break;
	case 2: fuzz_backend_url(s, err, errlen); break;
	case 3: fuzz_listen(s, err, errlen); break;
	case 4: fuzz_port(s, err, errlen); break;
	case 5: fuzz_duration(s, err, errlen); break;
	case 6: fuzz_backend_url(s, err, errlen); break;
	}
	free(err);
	free(s);
	return 0;
}
