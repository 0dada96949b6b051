/* Unit tests for parse.c: durations, sizes, duration formatting, backend URLs, listen addresses, ports. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "roundguard/parse.h"
#include "unit.h"

#define NS_US INT64_C(1000)
#define NS_MS INT64_C(1000000)
#define NS_S INT64_C(1000000000)
#define NS_M (60 * NS_S)
#define NS_H (60 * NS_M)

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Distinct from any parsed value, to prove failures leave the output alone. */
#define UNTOUCHED_NS INT64_C(-777)
#define UNTOUCHED_BYTES UINT64_C(777777)

struct duration_ok {
	const char *in;
	int64_t ns;
};

static const struct duration_ok duration_ok_cases[] = {
	{ "0", 0 },
	{ "+0", 0 },
	{ "0s", 0 },
	{ "0h0m0s", 0 },
	{ "300ms", 300 * NS_MS },
	{ "1.5s", 1500 * NS_MS },
	{ "2m", 2 * NS_M },
	{ "1h30m", NS_H + 30 * NS_M },
	{ "1m30s", NS_M + 30 * NS_S },
	{ "4m12s", 252 * NS_S },
	{ "0.5ms", 500000 },
	{ "100ns", 100 },
	{ "10us", 10 * NS_US },
	{ "10\xc2\xb5s", 10 * NS_US },	/* micro sign */
	{ "10\xce\xbcs", 10 * NS_US },	/* Greek mu, as Go accepts */
	{ "1.5\xc2\xb5s", 1500 },
	{ ".5s", 500 * NS_MS },
	{ "5.s", 5 * NS_S },
	{ "+5s", 5 * NS_S },
	{ "0.1s", 100 * NS_MS },
	{ "0.3s", 300 * NS_MS },
	{ "1h0.5m", NS_H + 30 * NS_S },
	{ "2h45m30.5s", 2 * NS_H + 45 * NS_M + 30 * NS_S + 500 * NS_MS },
	{ "1s500ms", 1500 * NS_MS },
	{ "1.000000001s", NS_S + 1 },
	{ "1.0000000009s", NS_S },			/* below 1 ns is truncated, as in Go */
	{ "0.333333333333333333333h", INT64_C(1199999999999) },	/* exact, no float error */
	{ "0.000000000000000000000000001h", 0 },
	{ "007s", 7 * NS_S },
	{ "9223372036854775807ns", INT64_MAX },
	{ "2562047h47m16.854775807s", INT64_MAX },
};

START_TEST(duration_parses)
{
	const struct duration_ok *c = &duration_ok_cases[_i];
	char err[256] = "";
	int64_t ns = UNTOUCHED_NS;
	int rc = parse_duration(c->in, &ns, err, sizeof(err));

	ck_assert_msg(rc == 0, "parse_duration(\"%s\") failed: %s", c->in, err);
	ck_assert_msg(ns == c->ns, "parse_duration(\"%s\") = %lld, want %lld", c->in,
	    (long long)ns, (long long)c->ns);
}
END_TEST

struct bad_case {
	const char *in;
	const char *want;	/* substring the message must contain */
};

static const struct bad_case duration_bad_cases[] = {
	{ "", "empty duration" },
	{ "-5s", "negative durations are not allowed" },
	{ "-0", "negative" },
	{ "-", "negative" },
	{ "5", "missing unit" },
	{ "1.5", "missing unit" },
	{ "00", "missing unit" },
	{ "1h30", "missing unit" },
	{ "5x", "unknown unit \"x\"" },
	{ "5S", "unknown unit \"S\"" },
	{ "5sec", "unknown unit \"sec\"" },
	{ "1h-5m", "unknown unit \"h-\"" },
	{ "5s ", "unknown unit \"s \"" },
	{ "5 s", "no space" },
	{ "s", "not a duration" },
	{ "ms", "not a duration" },
	{ "1..5s", "not a duration" },
	{ "1.5.5s", "not a duration" },
	{ " 5s", "not a duration" },
	{ ".", "not a duration" },
	{ ".s", "not a duration" },
	{ "+", "not a duration" },
	{ "++5s", "not a duration" },
	{ "9223372036854775808ns", "too large" },
	{ "2562047h47m16.854775808s", "too large" },
	{ "2562048h", "too large" },
	{ "99999999999999999999s", "too large" },
	{ "9223372036854775807ns1ns", "too large" },
	{ "2562047h47m17s", "too large" },
};

START_TEST(duration_rejects)
{
	const struct bad_case *c = &duration_bad_cases[_i];
	char err[256] = "";
	int64_t ns = UNTOUCHED_NS;

	ck_assert_msg(parse_duration(c->in, &ns, err, sizeof(err)) == -1,
	    "parse_duration(\"%s\") accepted it as %lld", c->in, (long long)ns);
	ck_assert_msg(ns == UNTOUCHED_NS, "parse_duration(\"%s\") wrote its output on failure", c->in);
	ck_assert_msg(strstr(err, c->want) != NULL, "parse_duration(\"%s\"): message \"%s\" lacks \"%s\"",
	    c->in, err, c->want);
}
END_TEST

START_TEST(duration_messages)
{
	char err[256];
	int64_t ns;

	ck_assert_int_eq(parse_duration("5x", &ns, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"5x\": unknown unit \"x\" (use ns, us, ms, s, m, h)");
	ck_assert_int_eq(parse_duration("-5s", &ns, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"-5s\": negative durations are not allowed");
	ck_assert_int_eq(parse_duration("5", &ns, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"5\": missing unit (use ns, us, ms, s, m, h)");
	/* Control bytes are escaped so that a message stays one printable line. */
	ck_assert_int_eq(parse_duration("5\ns", &ns, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"5\\x0as\": unknown unit \"\\x0as\" (use ns, us, ms, s, m, h)");
}
END_TEST

START_TEST(error_messages_truncate_safely)
{
	char err[8];
	char long_in[300];
	char big[512];
	int64_t ns;

	memset(err, 'Z', sizeof(err));
	ck_assert_int_eq(parse_duration("5x", &ns, err, sizeof(err)), -1);
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
	ck_assert_str_eq(err, "\"5x\": u");

	/* A long input is shown cut short so the reason still fits. */
	memset(long_in, '9', sizeof(long_in) - 2);
	long_in[sizeof(long_in) - 2] = 'x';
	long_in[sizeof(long_in) - 1] = '\0';
	ck_assert_int_eq(parse_duration(long_in, &ns, big, sizeof(big)), -1);
	ck_assert_ptr_nonnull(strstr(big, "...\": "));
	ck_assert_ptr_nonnull(strstr(big, "too large"));
}
END_TEST

struct size_ok {
	const char *in;
	uint64_t bytes;
};

static const struct size_ok size_ok_cases[] = {
	{ "0", 0 },
	{ "512", 512 },
	{ "007", 7 },
	{ "512B", 512 },
	{ "512b", 512 },
	{ "0KiB", 0 },
	{ "64KiB", 64 * 1024 },
	{ "64kib", 64 * 1024 },
	{ "64KIB", 64 * 1024 },
	{ "16MiB", 16 * 1024 * 1024 },
	{ "16mib", 16 * 1024 * 1024 },
	{ "1GiB", UINT64_C(1) << 30 },
	{ "1TiB", UINT64_C(1) << 40 },
	{ "1KB", 1000 },
	{ "1kb", 1000 },
	{ "1kB", 1000 },
	{ "2MB", 2000000 },
	{ "3GB", UINT64_C(3000000000) },
	{ "4TB", UINT64_C(4000000000000) },
	{ "18446744073709551615", UINT64_MAX },
	{ "18446744073709551615B", UINT64_MAX },
	{ "16777215TiB", UINT64_C(16777215) << 40 },
	{ "18446744073709551KB", UINT64_C(18446744073709551000) },
};

START_TEST(size_parses)
{
	const struct size_ok *c = &size_ok_cases[_i];
	char err[256] = "";
	uint64_t bytes = UNTOUCHED_BYTES;
	int rc = parse_size(c->in, &bytes, err, sizeof(err));

	ck_assert_msg(rc == 0, "parse_size(\"%s\") failed: %s", c->in, err);
	ck_assert_msg(bytes == c->bytes, "parse_size(\"%s\") = %llu, want %llu", c->in,
	    (unsigned long long)bytes, (unsigned long long)c->bytes);
}
END_TEST

static const struct bad_case size_bad_cases[] = {
	{ "", "empty size" },
	{ "-1", "negative sizes are not allowed" },
	{ "-1KiB", "negative" },
	{ "1.5MiB", "fractions are not allowed" },
	{ "1,5MiB", "fractions" },
	{ "0.5", "fractions" },
	{ "18446744073709551616", "too large" },
	{ "99999999999999999999999", "too large" },
	{ "16777216TiB", "too large" },
	{ "18446744073709552KB", "too large" },
	{ "64k", "use KiB or KB" },
	{ "64K", "use KiB or KB" },
	{ "16m", "use MiB or MB" },
	{ "16M", "use MiB or MB" },
	{ "1g", "use GiB or GB" },
	{ "1G", "use GiB or GB" },
	{ "1t", "use TiB or TB" },
	{ "5x", "unknown unit \"x\"" },
	{ "5PiB", "unknown unit \"PiB\"" },
	{ "5Ki", "unknown unit \"Ki\"" },
	{ "5KiB ", "unknown unit \"KiB \"" },
	{ "0x10", "unknown unit \"x10\"" },
	{ "5 KiB", "no space" },
	{ "KiB", "not a size" },
	{ " 5", "not a size" },
	{ "+5", "not a size" },
};

START_TEST(size_rejects)
{
	const struct bad_case *c = &size_bad_cases[_i];
	char err[256] = "";
	uint64_t bytes = UNTOUCHED_BYTES;

	ck_assert_msg(parse_size(c->in, &bytes, err, sizeof(err)) == -1,
	    "parse_size(\"%s\") accepted it as %llu", c->in, (unsigned long long)bytes);
	ck_assert_msg(bytes == UNTOUCHED_BYTES, "parse_size(\"%s\") wrote its output on failure", c->in);
	ck_assert_msg(strstr(err, c->want) != NULL, "parse_size(\"%s\"): message \"%s\" lacks \"%s\"",
	    c->in, err, c->want);
}
END_TEST

START_TEST(size_messages)
{
	char err[256];
	uint64_t bytes;

	ck_assert_int_eq(parse_size("64k", &bytes, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"64k\": ambiguous unit \"k\" (use KiB or KB)");
	ck_assert_int_eq(parse_size("5x", &bytes, err, sizeof(err)), -1);
	ck_assert_str_eq(err,
	    "\"5x\": unknown unit \"x\" (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)");
}
END_TEST

static const struct duration_ok format_cases[] = {
	{ "0s", 0 },
	{ "1ns", 1 },
	{ "999ns", 999 },
	{ "1\xc2\xb5s", 1000 },
	{ "1.5\xc2\xb5s", 1500 },
	{ "999.999\xc2\xb5s", 999999 },
	{ "1ms", NS_MS },
	{ "1.23ms", 1230000 },
	{ "250ms", 250 * NS_MS },
	{ "999.999999ms", NS_S - 1 },
	{ "1s", NS_S },
	{ "1.5s", 1500 * NS_MS },
	{ "1.000000001s", NS_S + 1 },
	{ "59s", 59 * NS_S },
	{ "1m0s", NS_M },
	{ "1m30s", NS_M + 30 * NS_S },
	{ "4m12s", 252 * NS_S },
	{ "1h0m0s", NS_H },
	{ "1h30m0s", NS_H + 30 * NS_M },
	{ "2h45m30.5s", 2 * NS_H + 45 * NS_M + 30 * NS_S + 500 * NS_MS },
	{ "-1.5s", -1500 * NS_MS },
	{ "-1ns", -1 },
	{ "2562047h47m16.854775807s", INT64_MAX },
	{ "-2562047h47m16.854775808s", INT64_MIN },
};

START_TEST(duration_formats)
{
	const struct duration_ok *c = &format_cases[_i];
	char buf[64];

	memset(buf, 'Z', sizeof(buf));
	format_duration(buf, sizeof(buf), c->ns);
	ck_assert_str_eq(buf, c->in);
}
END_TEST

START_TEST(duration_format_round_trips)
{
	size_t i;

	/* Every non-negative formatted duration parses back to itself. */
	for (i = 0; i < COUNT(format_cases); i++) {
		char buf[64], err[256] = "";
		int64_t ns = UNTOUCHED_NS;

		if (format_cases[i].ns < 0)
			continue;
		format_duration(buf, sizeof(buf), format_cases[i].ns);
		ck_assert_msg(parse_duration(buf, &ns, err, sizeof(err)) == 0, "\"%s\": %s", buf, err);
		ck_assert_msg(ns == format_cases[i].ns, "\"%s\" parsed back as %lld", buf, (long long)ns);
	}
}
END_TEST

START_TEST(duration_format_truncates)
{
	char buf[8];

	memset(buf, 'Z', sizeof(buf));
	format_duration(buf, 4, 252 * NS_S);
	ck_assert_str_eq(buf, "4m1");
	ck_assert_int_eq(buf[4], 'Z');

	/* No room at all: nothing is written. */
	format_duration(buf, 0, 252 * NS_S);
	ck_assert_int_eq(buf[0], '4');
}
END_TEST

struct url_ok {
	const char *in;
	const char *host;
	unsigned port;
	int is_ipv6;
	const char *prefix;
	const char *hostport;
	int tls;
};

static const struct url_ok url_ok_cases[] = {
	{ "http://127.0.0.1:8001", "127.0.0.1", 8001, 0, "", "127.0.0.1:8001", 0 },
	{ "http://localhost", "localhost", 80, 0, "", "localhost:80", 0 },
	{ "http://localhost/", "localhost", 80, 0, "", "localhost:80", 0 },
	{ "HTTP://Example.COM:8080/", "Example.COM", 8080, 0, "", "Example.COM:8080", 0 },
	{ "hTTp://a", "a", 80, 0, "", "a:80", 0 },
	{ "http://[::1]:8080/api/", "::1", 8080, 1, "/api", "[::1]:8080", 0 },
	{ "http://[2001:db8::1]", "2001:db8::1", 80, 1, "", "[2001:db8::1]:80", 0 },
	{ "http://[::ffff:10.0.0.1]:81/", "::ffff:10.0.0.1", 81, 1, "", "[::ffff:10.0.0.1]:81", 0 },
	{ "http://my_host-1.internal:65535/a/b", "my_host-1.internal", 65535, 0, "/a/b",
	    "my_host-1.internal:65535", 0 },
	{ "http://h:1", "h", 1, 0, "", "h:1", 0 },
	{ "http://h/api//", "h", 80, 0, "/api", "h:80", 0 },
	{ "http://h//", "h", 80, 0, "", "h:80", 0 },
	{ "http://h/a%20b/@x:y", "h", 80, 0, "/a%20b/@x:y", "h:80", 0 },
	{ "http://10.0.0.1:8080/v1", "10.0.0.1", 8080, 0, "/v1", "10.0.0.1:8080", 0 },
	{ "http://123abc", "123abc", 80, 0, "", "123abc:80", 0 },
	/* https: TLS to the backend, port 443 unless named. */
	{ "https://x", "x", 443, 0, "", "x:443", 1 },
	{ "HTTPS://Api.Example:8443/v2/", "Api.Example", 8443, 0, "/v2", "Api.Example:8443", 1 },
	{ "https://[::1]", "::1", 443, 1, "", "[::1]:443", 1 },
	{ "https://10.0.0.1:80", "10.0.0.1", 80, 0, "", "10.0.0.1:80", 1 },
};

START_TEST(url_parses)
{
	const struct url_ok *c = &url_ok_cases[_i];
	struct backend_url u;
	char err[256] = "";

	memset(&u, 0xa5, sizeof(u));
	ck_assert_msg(parse_backend_url(c->in, &u, err, sizeof(err)) == 0,
	    "parse_backend_url(\"%s\") failed: %s", c->in, err);
	ck_assert_str_eq(u.host, c->host);
	ck_assert_uint_eq(u.port, c->port);
	ck_assert_int_eq(u.is_ipv6, c->is_ipv6);
	ck_assert_str_eq(u.prefix, c->prefix);
	ck_assert_str_eq(u.hostport, c->hostport);
	ck_assert_int_eq(u.tls, c->tls);
}
END_TEST

static const struct bad_case url_bad_cases[] = {
	{ "", "empty backend URL" },
	{ "httpss://x", "unsupported scheme \"httpss\" (use http or https)" },
	{ "https://", "missing host" },
	{ "https://u@h", "user info" },
	{ "ftp://h", "unsupported scheme \"ftp\"" },
	{ "httpx://h", "unsupported scheme \"httpx\"" },
	{ "127.0.0.1:8001", "missing scheme" },
	{ "localhost", "missing scheme" },
	{ "//h", "missing scheme" },
	{ "http:/h", "missing scheme" },
	{ "://h", "missing scheme" },
	{ "http://user@host", "user info" },
	{ "http://user:pw@host:80/", "user info" },
	{ "http://", "missing host" },
	{ "http:///api", "missing host" },
	{ "http://:80", "missing host" },
	{ "http://h:0", "port \"0\" out of range" },
	{ "http://h:65536", "port \"65536\" out of range" },
	{ "http://h:99999999999999999999", "out of range" },
	{ "http://h:http", "port \"http\" is not a number" },
	{ "http://h:-1", "is not a number" },
	{ "http://h:+80", "is not a number" },
	{ "http://h:0x50", "is not a number" },
	{ "http://h:", "missing port" },
	{ "http://h:/api", "missing port" },
	{ "http://[::1]:", "missing port" },
	{ "http://[::1]:0", "out of range" },
	{ "http://::1:80", "must be in brackets" },
	{ "http://2001:db8::1/", "must be in brackets" },
	{ "http://[::1", "missing \"]\"" },
	{ "http://[::1]x", "unexpected text after \"]\"" },
	{ "http://[zz::1]:80", "invalid IPv6 address \"zz::1\"" },
	{ "http://[127.0.0.1]", "invalid IPv6 address" },
	{ "http://[]", "invalid IPv6 address" },
	{ "http://[fe80::1%25eth0]", "invalid IPv6 address" },
	{ "http://h/?a=1", "query strings are not allowed" },
	{ "http://h?a", "query strings are not allowed" },
	{ "http://h#frag", "fragments are not allowed" },
	{ "http://h/a#b?c", "fragments are not allowed" },
	{ "http://h..x", "empty label" },
	{ "http://.h", "empty label" },
	{ "http://h.", "empty label" },
	{ "http://h$x", "invalid host" },
	{ "http://h\xc3\xa9", "invalid host" },
	{ "http://256.1.1.1", "invalid IPv4 address" },
	{ "http://1.2.3", "invalid IPv4 address" },
	{ "http://ho st", "spaces and control characters" },
	{ " http://h", "spaces and control characters" },
	{ "http://h/a\tb", "spaces and control characters" },
	{ "http://h/a\"b", "invalid character in path prefix" },
	{ "http://h/a<b>", "invalid character in path prefix" },
	{ "http://h/%zz", "invalid character in path prefix" },
	{ "http://h/%2", "invalid character in path prefix" },
};

START_TEST(url_rejects)
{
	const struct bad_case *c = &url_bad_cases[_i];
	struct backend_url u;
	char err[256] = "";

	memset(&u, 0, sizeof(u));
	ck_assert_msg(parse_backend_url(c->in, &u, err, sizeof(err)) == -1,
	    "parse_backend_url(\"%s\") accepted it as %s", c->in, u.hostport);
	ck_assert_msg(u.hostport[0] == '\0', "parse_backend_url(\"%s\") wrote its output", c->in);
	ck_assert_msg(strstr(err, c->want) != NULL,
	    "parse_backend_url(\"%s\"): message \"%s\" lacks \"%s\"", c->in, err, c->want);
}
END_TEST

START_TEST(url_messages)
{
	struct backend_url u;
	char err[256];

	ck_assert_int_eq(parse_backend_url("ftp://x", &u, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"ftp://x\": unsupported scheme \"ftp\" (use http or https)");
	ck_assert_int_eq(parse_backend_url("http://h:65536", &u, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"http://h:65536\": port \"65536\" out of range (use 1-65535)");
	ck_assert_int_eq(parse_backend_url("http://u@h", &u, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"http://u@h\": user info (\"user@\") is not allowed in a backend URL");
}
END_TEST

/* "http://" + labels of 'a' joined by dots, total host length n (odd, >= 1). */
static void
url_with_host_len(char *buf, size_t n)
{
	size_t i;

	strcpy(buf, "http://");
	for (i = 0; i < n; i++)
		buf[7 + i] = (i % 2 == 0) ? 'a' : '.';
	buf[7 + n] = '\0';
}

START_TEST(url_limits)
{
	struct backend_url u;
	char in[2200], err[256];
	size_t n;

	/* 253 bytes is the longest host name; one more is refused. */
	url_with_host_len(in, 253);
	ck_assert_msg(parse_backend_url(in, &u, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(strlen(u.host), 253);
	ck_assert_uint_eq(strlen(u.hostport), 256);
	url_with_host_len(in, 255);
	ck_assert_int_eq(parse_backend_url(in, &u, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "host name too long"));

	/* 63 bytes is the longest label. */
	strcpy(in, "http://");
	memset(in + 7, 'b', 63);
	strcpy(in + 70, ".com");
	ck_assert_msg(parse_backend_url(in, &u, err, sizeof(err)) == 0, "%s", err);
	memset(in + 7, 'b', 64);
	strcpy(in + 71, ".com");
	ck_assert_int_eq(parse_backend_url(in, &u, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "label too long"));

	/* The prefix buffer holds 1023 bytes; trailing slashes do not count. */
	strcpy(in, "http://h");
	n = strlen(in);
	in[n] = '/';
	memset(in + n + 1, 'p', PARSE_PREFIX_MAX - 2);
	strcpy(in + n + PARSE_PREFIX_MAX - 1, "///");
	ck_assert_msg(parse_backend_url(in, &u, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(strlen(u.prefix), PARSE_PREFIX_MAX - 1);
	memset(in + n + 1, 'p', PARSE_PREFIX_MAX - 1);
	in[n + PARSE_PREFIX_MAX] = '\0';
	ck_assert_int_eq(parse_backend_url(in, &u, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "path prefix too long (at most 1023 bytes)"));
}
END_TEST

struct listen_ok {
	const char *in;
	const char *host;
	unsigned port;
	int is_ipv6;
};

static const struct listen_ok listen_ok_cases[] = {
	{ "0.0.0.0:3000", "0.0.0.0", 3000, 0 },
	{ "127.0.0.1:8000", "127.0.0.1", 8000, 0 },
	{ ":3000", "", 3000, 0 },
	{ "*:3000", "", 3000, 0 },
	{ "[::1]:8080", "::1", 8080, 1 },
	{ "[::]:80", "::", 80, 1 },
	{ "3000", "", 3000, 0 },
	{ "65535", "", 65535, 0 },
	{ "1", "", 1, 0 },
	{ "localhost:65535", "localhost", 65535, 0 },
	{ "my-host.example:1", "my-host.example", 1, 0 },
};

START_TEST(listen_parses)
{
	const struct listen_ok *c = &listen_ok_cases[_i];
	struct listen_addr a;
	char err[256] = "";

	memset(&a, 0xa5, sizeof(a));
	ck_assert_msg(parse_listen_addr(c->in, &a, err, sizeof(err)) == 0,
	    "parse_listen_addr(\"%s\") failed: %s", c->in, err);
	ck_assert_str_eq(a.host, c->host);
	ck_assert_uint_eq(a.port, c->port);
	ck_assert_int_eq(a.is_ipv6, c->is_ipv6);
}
END_TEST

static const struct bad_case listen_bad_cases[] = {
	{ "", "empty listen address" },
	{ "localhost", "missing port" },
	{ "*", "missing port" },
	{ "::1:3000", "must be in brackets" },
	{ "::", "must be in brackets" },
	{ ":", "missing port" },
	{ "host:", "missing port" },
	{ ":0", "port \"0\" out of range" },
	{ ":65536", "port \"65536\" out of range" },
	{ "host:abc", "port \"abc\" is not a number" },
	{ "host:-1", "is not a number" },
	{ "[::1]", "missing port" },
	{ "[::1]3000", "unexpected text after \"]\"" },
	{ "[::1", "missing \"]\"" },
	{ "[xyz]:80", "invalid IPv6 address \"xyz\"" },
	{ "[]:80", "invalid IPv6 address" },
	{ "3000x", "not a port number" },
	{ "65536", "port out of range" },
	{ "0", "port out of range" },
	{ "a b:80", "spaces and control characters" },
	{ " :80", "spaces and control characters" },
	{ "h..x:80", "empty label" },
	{ "256.0.0.1:80", "invalid IPv4 address" },
	{ "**:80", "invalid host" },
	{ "h/x:80", "invalid host" },
};

START_TEST(listen_rejects)
{
	const struct bad_case *c = &listen_bad_cases[_i];
	struct listen_addr a;
	char err[256] = "";

	memset(&a, 0, sizeof(a));
	ck_assert_msg(parse_listen_addr(c->in, &a, err, sizeof(err)) == -1,
	    "parse_listen_addr(\"%s\") accepted it as \"%s\" port %u", c->in, a.host, a.port);
	ck_assert_msg(a.port == 0, "parse_listen_addr(\"%s\") wrote its output", c->in);
	ck_assert_msg(strstr(err, c->want) != NULL,
	    "parse_listen_addr(\"%s\"): message \"%s\" lacks \"%s\"", c->in, err, c->want);
}
END_TEST

START_TEST(port_parses)
{
	static const struct {
		const char *in;
		unsigned port;
	} cases[] = {
		{ "1", 1 }, { "80", 80 }, { "8080", 8080 }, { "65535", 65535 }, { "0080", 80 },
	};
	size_t i;

	for (i = 0; i < COUNT(cases); i++) {
		uint16_t port = 0;
		char err[256] = "";

		ck_assert_msg(parse_port(cases[i].in, &port, err, sizeof(err)) == 0,
		    "parse_port(\"%s\") failed: %s", cases[i].in, err);
		ck_assert_uint_eq(port, cases[i].port);
	}
}
END_TEST

static const struct bad_case port_bad_cases[] = {
	{ "", "missing port number" },
	{ "0", "out of range" },
	{ "65536", "out of range" },
	{ "99999999999999999999999", "out of range" },
	{ "-1", "not a port number" },
	{ "+80", "not a port number" },
	{ " 80", "not a port number" },
	{ "80 ", "not a port number" },
	{ "0x50", "not a port number" },
	{ "abc", "not a port number" },
	{ "8O", "not a port number" },
	{ "80.0", "not a port number" },
};

START_TEST(port_rejects)
{
	const struct bad_case *c = &port_bad_cases[_i];
	uint16_t port = 4242;
	char err[256] = "";

	ck_assert_msg(parse_port(c->in, &port, err, sizeof(err)) == -1,
	    "parse_port(\"%s\") accepted it as %u", c->in, port);
	ck_assert_uint_eq(port, 4242);
	ck_assert_msg(strstr(err, c->want) != NULL, "parse_port(\"%s\"): message \"%s\" lacks \"%s\"",
	    c->in, err, c->want);
	ck_assert_ptr_nonnull(strstr(err, "1-65535"));
}
END_TEST

START_TEST(port_messages)
{
	uint16_t port;
	char err[256];

	ck_assert_int_eq(parse_port("65536", &port, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "\"65536\": port out of range (use 1-65535)");
}
END_TEST

START_TEST(listen_flag_forms)
{
	struct listen_addr la;
	char err[256];

	ck_assert_int_eq(parse_listen_flag("127.0.0.1", 3000, &la, err, sizeof(err)), 0);
	ck_assert_str_eq(la.host, "127.0.0.1");
	ck_assert_uint_eq(la.port, 3000);
	ck_assert_int_eq(parse_listen_flag("::1", 3000, &la, err, sizeof(err)), 0);
	ck_assert_str_eq(la.host, "::1");
	ck_assert_int_eq(la.is_ipv6, 1);
	ck_assert_uint_eq(la.port, 3000);
	ck_assert_int_eq(parse_listen_flag("[::1]", 8000, &la, err, sizeof(err)), 0);
	ck_assert_str_eq(la.host, "::1");
	ck_assert_uint_eq(la.port, 8000);
	ck_assert_int_eq(parse_listen_flag("[::1]:8080", 3000, &la, err, sizeof(err)), 0);
	ck_assert_uint_eq(la.port, 8080);
	ck_assert_int_eq(parse_listen_flag("127.0.0.1:8080", 3000, &la, err, sizeof(err)), 0);
	ck_assert_str_eq(la.host, "127.0.0.1");
	ck_assert_uint_eq(la.port, 8080);
	ck_assert_int_eq(parse_listen_flag(":8080", 3000, &la, err, sizeof(err)), 0);
	ck_assert_str_eq(la.host, "");
	ck_assert_uint_eq(la.port, 8080);
	ck_assert_int_eq(parse_listen_flag("*", 3000, &la, err, sizeof(err)), 0);
	ck_assert_str_eq(la.host, "");
	ck_assert_uint_eq(la.port, 3000);
	ck_assert_int_eq(parse_listen_flag("localhost", 3000, &la, err, sizeof(err)), 0);
	ck_assert_str_eq(la.host, "localhost");
	ck_assert_int_eq(parse_listen_flag("127.0.0.1:0", 3000, &la, err, sizeof(err)), -1);
	ck_assert_int_eq(parse_listen_flag("256.1.1.1", 3000, &la, err, sizeof(err)), -1);
	ck_assert_int_eq(parse_listen_flag("", 3000, &la, err, sizeof(err)), -1);
}
END_TEST

static Suite *
parse_suite(void)
{
	Suite *s = suite_create("Parsers");
	TCase *tc;

	tc = tcase_create("duration");
	tcase_add_loop_test(tc, duration_parses, 0, COUNT(duration_ok_cases));
	tcase_add_loop_test(tc, duration_rejects, 0, COUNT(duration_bad_cases));
	tcase_add_test(tc, duration_messages);
	tcase_add_test(tc, error_messages_truncate_safely);
	suite_add_tcase(s, tc);

	tc = tcase_create("size");
	tcase_add_loop_test(tc, size_parses, 0, COUNT(size_ok_cases));
	tcase_add_loop_test(tc, size_rejects, 0, COUNT(size_bad_cases));
	tcase_add_test(tc, size_messages);
	suite_add_tcase(s, tc);

	tc = tcase_create("format_duration");
	tcase_add_loop_test(tc, duration_formats, 0, COUNT(format_cases));
	tcase_add_test(tc, duration_format_round_trips);
	tcase_add_test(tc, duration_format_truncates);
	suite_add_tcase(s, tc);

	tc = tcase_create("backend_url");
	tcase_add_loop_test(tc, url_parses, 0, COUNT(url_ok_cases));
	tcase_add_loop_test(tc, url_rejects, 0, COUNT(url_bad_cases));
	tcase_add_test(tc, url_messages);
	tcase_add_test(tc, url_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("listen_addr");
	tcase_add_loop_test(tc, listen_parses, 0, COUNT(listen_ok_cases));
	tcase_add_loop_test(tc, listen_rejects, 0, COUNT(listen_bad_cases));
	tcase_add_test(tc, listen_flag_forms);
	suite_add_tcase(s, tc);

	tc = tcase_create("port");
	tcase_add_test(tc, port_parses);
	tcase_add_loop_test(tc, port_rejects, 0, COUNT(port_bad_cases));
	tcase_add_test(tc, port_messages);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return unit_run(parse_suite(), CK_NORMAL);
}
