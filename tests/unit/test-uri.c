/* Unit tests for the request-target and Host checks (uri_target_check, uri_host_check). */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <check.h>

#include "roundguard/uri.h"
#include "unit.h"

/* Bytes with their length: the cases may hold NUL. */
#define B(s) s, sizeof(s) - 1

/* --- Host ------------------------------------------------------------------------------- */

struct host_case {
	const char *h;
	size_t len;
	/* NULL: accepted; else a piece of the reason it is refused with. */
	const char *why;
};

static const struct host_case host_cases[] = {
	/* reg-name, with and without a port */
	{ B("a"), NULL },
	{ B("example.com"), NULL },
	{ B("Example.COM"), NULL },
	{ B("example.com:80"), NULL },
	{ B("a-b.c_d~e"), NULL },
	{ B("!$&'()*+;="), NULL },
	{ B("."), NULL },
	{ B("xn--bcher-kva.example"), NULL },
	/* percent-encodings: two hex digits, either case; an encoded NUL is refused here too */
	{ B("a%41b"), NULL },
	{ B("%7e"), NULL },
	{ B("%7E:8080"), NULL },
	{ B("a%00b"), "encoded NUL" },
	{ B("a%4"), "byte not allowed" },
	{ B("a%4:80"), "byte not allowed" },
	{ B("a%"), "byte not allowed" },
	{ B("a%zz"), "byte not allowed" },
	{ B("a%g0"), "byte not allowed" },
	{ B("a%0g"), "byte not allowed" },
	/* IPv4 (a reg-name to the grammar: no range check on the numbers) */
	{ B("192.0.2.1"), NULL },
	{ B("192.0.2.1:8080"), NULL },
	{ B("256.256.256.256"), NULL },
	/* ports */
	{ B("h:0"), NULL },
	{ B("h:00000"), NULL },
	{ B("h:1"), NULL },
	{ B("h:65535"), NULL },
	{ B("h:065535"), "1 to 5 digits" },
	{ B("h:65536"), "above 65535" },
	{ B("h:99999"), "above 65535" },
	{ B("h:100000"), "1 to 5 digits" },
	{ B("h:000080"), "1 to 5 digits" },
	{ B("h:"), "1 to 5 digits" },
	{ B("h:8a"), "1 to 5 digits" },
	{ B("h:-1"), "1 to 5 digits" },
	{ B("h:+1"), "1 to 5 digits" },
	{ B("h:80:81"), "1 to 5 digits" },
	{ B("h::80"), "1 to 5 digits" },
	{ B(":80"), "no host name" },
	{ B(":"), "no host name" },
	/* IPv6 in brackets */
	{ B("[::1]"), NULL },
	{ B("[::1]:8080"), NULL },
	{ B("[::1]:65535"), NULL },
	{ B("[2001:db8::1]"), NULL },
	{ B("[2001:DB8:0:0:0:0:0:1]"), NULL },
	{ B("[::ffff:192.0.2.1]:443"), NULL },
	{ B("[::1]:65536"), "above 65535" },
	{ B("[::1]:"), "1 to 5 digits" },
	{ B("[::1]:123456"), "1 to 5 digits" },
	{ B("[::1]x"), "after its IPv6 address" },
	{ B("[::1\0x]"), "IPv6 address is not valid" },
	{ B("[::1\0\r\nX-Evil:1]:80"), "IPv6 address is not valid" },
	{ B("[::1]]"), "after its IPv6 address" },
	{ B("[::1][::2]"), "after its IPv6 address" },
	{ B("[::1"), "unclosed IPv6 bracket" },
	{ B("["), "unclosed IPv6 bracket" },
	{ B("[]"), "IPv6 address is not valid" },
	{ B("[]:80"), "IPv6 address is not valid" },
	{ B("[fe80::1%25eth0]"), "IPv6 address is not valid" },
	{ B("[fe80::1%eth0]"), "IPv6 address is not valid" },
	{ B("[v1.x]"), "IPv6 address is not valid" },
	{ B("[V7.abc]:80"), "IPv6 address is not valid" },
	{ B("[:::1]"), "IPv6 address is not valid" },
	{ B("[1:2:3:4:5:6:7:8:9]"), "IPv6 address is not valid" },
	{ B("[192.0.2.1]"), "IPv6 address is not valid" },
	{ B("[example.com]"), "IPv6 address is not valid" },
	{ B("[0000:0000:0000:0000:0000:0000:0000:0000:0000]"), "IPv6 address is not valid" },
	{ B("::1"), "no host name" },
	{ B("a[::1]"), "byte not allowed" },
	{ B("h]"), "byte not allowed" },
	/* what makes a Host something else than one host */
	{ B(""), "empty" },
	{ B("user@h"), "user information" },
	{ B("user:pw@h:80"), "user information" },
	{ B("@h"), "user information" },
	{ B("[::1]@h"), "user information" },
	{ B("h:80/p"), "path" },
	{ B("h/"), "path" },
	{ B("h?q"), "path" },
	{ B("h#f"), "path" },
	{ B("h\\p"), "path" },
	{ B("[::1]/"), "path" },
	{ B("a, b"), "list" },
	{ B("a,b"), "list" },
	{ B("a b"), "list" },
	{ B("a\tb"), "list" },
	{ B(" a"), "list" },
	{ B("h "), "list" },
	/* bytes outside the host name's set */
	{ B("h\x7f"), "byte not allowed" },
	{ B("h\x80"), "byte not allowed" },
	{ B("h\xc3\xa9"), "byte not allowed" },
	{ B("h\x01"), "byte not allowed" },
	{ B("h\r\nX: 1"), "list" },
	{ B("h\r"), "byte not allowed" },
	{ B("h\0"), "byte not allowed" },
	{ B("\0h"), "byte not allowed" },
	{ B("h\""), "byte not allowed" },
	{ B("h<"), "byte not allowed" },
	{ B("h>"), "byte not allowed" },
	{ B("h{"), "byte not allowed" },
	{ B("h|"), "byte not allowed" },
	{ B("h^"), "byte not allowed" },
	{ B("h`"), "byte not allowed" },
	{ B("h["), "byte not allowed" },
};

START_TEST(host_table)
{
	const struct host_case *c = &host_cases[_i];
	const char *why = uri_host_check(c->h, c->len);

	if (c->why == NULL) {
		ck_assert_msg(why == NULL, "case %d \"%.*s\": refused (%s)", _i, (int)c->len, c->h,
		    why);
	} else {
		ck_assert_msg(why != NULL, "case %d \"%.*s\": accepted", _i, (int)c->len, c->h);
		ck_assert_msg(strstr(why, c->why) != NULL, "case %d \"%.*s\": \"%s\", not \"%s\"",
		    _i, (int)c->len, c->h, why, c->why);
	}
}
END_TEST

/* Whether why is a refusal that says piece. */
static bool
refused_with(const char *why, const char *piece)
{
	return why != NULL && strstr(why, piece) != NULL;
}

START_TEST(host_length_limit)
{
	char h[300];

	/* 255 bytes of host name are a DNS name's longest text form; 256 are too many. */
	memset(h, 'a', sizeof(h));
	ck_assert_ptr_null(uri_host_check(h, 255));
	ck_assert(refused_with(uri_host_check(h, 256), "too long"));
	/* The port does not count. */
	memcpy(h + 255, ":65535", 6);
	ck_assert_ptr_null(uri_host_check(h, 261));
	memset(h, 'a', sizeof(h));
	memcpy(h + 256, ":80", 3);
	ck_assert(refused_with(uri_host_check(h, 259), "too long"));
	/* Percent-encodings count as the bytes they are written with. */
	memset(h, 'a', sizeof(h));
	memcpy(h + 252, "%41", 3);
	ck_assert_ptr_null(uri_host_check(h, 255));
	memset(h, 'a', sizeof(h));
	memcpy(h + 253, "%41", 3);
	ck_assert(refused_with(uri_host_check(h, 256), "too long"));
	/* Dotted labels: only the total counts. */
	for (size_t i = 0; i < sizeof(h); i++)
		h[i] = i % 4 == 3 ? '.' : 'b';
	ck_assert_ptr_null(uri_host_check(h, 255));
	ck_assert_ptr_nonnull(uri_host_check(h, 256));
}
END_TEST

START_TEST(host_length_bounds_input)
{
	/* len, not a NUL, ends the value: what follows it is never read. */
	ck_assert_ptr_null(uri_host_check("h:80/p", 4));
	ck_assert_ptr_null(uri_host_check("a, b", 1));
	ck_assert_ptr_null(uri_host_check("[::1]x", 5));
	ck_assert_ptr_nonnull(uri_host_check("h:80", 2));
	ck_assert_ptr_nonnull(uri_host_check("a%41", 3));
	ck_assert_ptr_nonnull(uri_host_check("[::1]", 4));
}
END_TEST

/* --- Request target ---------------------------------------------------------------------- */

struct target_case {
	const char *t;
	size_t len;
	bool options;
	const char *why;	/* NULL: accepted, with the fields below */
	enum uri_form form;
	size_t authority_off, authority_len, path_off, path_len;
	bool need_slash;
};

#define ORIGIN(s) { B(s), false, NULL, URI_ORIGIN, 0, 0, 0, sizeof(s) - 1, false }
#define REFUSED(s, why) { B(s), false, why, URI_ORIGIN, 0, 0, 0, 0, false }
#define ABS(s, aoff, alen, poff, plen, slash) \
	{ B(s), false, NULL, URI_ABSOLUTE, aoff, alen, poff, plen, slash }

static const struct target_case target_cases[] = {
	/* origin-form */
	ORIGIN("/"),
	ORIGIN("/a/b?c=d&e"),
	ORIGIN("//x"),
	ORIGIN("/a%2Fb%2f"),
	ORIGIN("/%41%7e"),
	ORIGIN("/a?%00"),
	ORIGIN("/a?%"),
	ORIGIN("/a?%zz"),
	ORIGIN("/a?b?c"),
	ORIGIN("/*"),
	ORIGIN("/a\"b\\c{}|^`<>"),
	ORIGIN("/~!$&'()*+,;=:@[]"),
	ORIGIN("/http://h/"),
	{ B("/a"), true, NULL, URI_ORIGIN, 0, 0, 0, 2, false },
	REFUSED("/%00", "encoded NUL"),
	REFUSED("/a%00b", "encoded NUL"),
	REFUSED("/a%0", "malformed percent-encoding"),
	REFUSED("/a%", "malformed percent-encoding"),
	REFUSED("/a%g0", "malformed percent-encoding"),
	REFUSED("/a%0g", "malformed percent-encoding"),
	REFUSED("/a%%41", "malformed percent-encoding"),
	REFUSED("/a%0?", "malformed percent-encoding"),
	REFUSED("/#", "fragment"),
	REFUSED("/a#f", "fragment"),
	REFUSED("/a?b#f", "fragment"),
	REFUSED("/a b", "not allowed in a URI"),
	REFUSED("/a\tb", "not allowed in a URI"),
	REFUSED("/a\x01", "not allowed in a URI"),
	REFUSED("/a\x7f", "not allowed in a URI"),
	REFUSED("/a\x80", "not allowed in a URI"),
	REFUSED("/\xc3\xa9", "not allowed in a URI"),
	REFUSED("/a\0b", "not allowed in a URI"),
	REFUSED("/a?b c", "not allowed in a URI"),
	REFUSED("/a?\r\n", "not allowed in a URI"),
	REFUSED("", "empty"),
	/* asterisk-form: OPTIONS only */
	{ B("*"), true, NULL, URI_ASTERISK, 0, 0, 0, 1, false },
	REFUSED("*", "only for OPTIONS"),
	{ B("**"), true, "not a path", URI_ORIGIN, 0, 0, 0, 0, false },
	{ B("*/"), true, "not a path", URI_ORIGIN, 0, 0, 0, 0, false },
	{ B("*?"), true, "not a path", URI_ORIGIN, 0, 0, 0, 0, false },
	/* absolute-form: http and https, any case */
	ABS("http://h/p", 7, 1, 8, 2, false),
	ABS("https://h:443/p?q", 8, 5, 13, 4, false),
	ABS("HTTP://H/", 7, 1, 8, 1, false),
	ABS("HtTpS://example.com/", 8, 11, 19, 1, false),
	ABS("http://[::1]:8080/x", 7, 10, 17, 2, false),
	ABS("http://h:65535/", 7, 7, 14, 1, false),
	ABS("http://h?%00", 7, 1, 8, 4, true),
	ABS("http://h//", 7, 1, 8, 2, false),
	ABS("http://a%41/", 7, 4, 11, 1, false),
	{ B("http://h/"), true, NULL, URI_ABSOLUTE, 7, 1, 8, 1, false },
	/* no path: sent as "/", "/?query" */
	ABS("http://h", 7, 1, 8, 0, true),
	ABS("http://h:80", 7, 4, 11, 0, true),
	ABS("http://h?q=1", 7, 1, 8, 4, true),
	ABS("https://h?", 8, 1, 9, 1, true),
	/* not http or https, or no authority */
	REFUSED("httpx://h/", "Only http and https"),
	REFUSED("htt://h/", "Only http and https"),
	REFUSED("ftp://h/", "Only http and https"),
	REFUSED("a+b-c.d://h/", "Only http and https"),
	REFUSED("urn:x", "Only http and https"),
	REFUSED("http:/h", "needs an authority"),
	REFUSED("http:h", "needs an authority"),
	REFUSED("http:", "needs an authority"),
	REFUSED("http:/", "needs an authority"),
	REFUSED("http:\\\\h/", "needs an authority"),
	REFUSED("http", "not a path"),
	REFUSED("h/p", "not a path"),
	REFUSED("1http://h/", "not a path"),
	REFUSED("+http://h/", "not a path"),
	REFUSED("ht tp://h/", "not a path"),
	REFUSED(":foo", "not a path"),
	REFUSED("://h/", "not a path"),
	REFUSED("?q", "not a path"),
	REFUSED("#f", "not a path"),
	/* the authority, checked as a Host value */
	REFUSED("http://", "not a valid host"),
	REFUSED("http:///p", "not a valid host"),
	REFUSED("http://?q", "not a valid host"),
	REFUSED("http://u@h/", "user information"),
	REFUSED("http://u:p@h/", "user information"),
	REFUSED("http://@h", "user information"),
	REFUSED("http://h:/", "not a valid host"),
	REFUSED("http://h:0x1/", "not a valid host"),
	REFUSED("http://h:65536/", "not a valid host"),
	REFUSED("http://a,b/", "not a valid host"),
	REFUSED("http://a b/", "not a valid host"),
	REFUSED("http://h\\x/", "not a valid host"),
	REFUSED("http://[::1/", "not a valid host"),
	REFUSED("http://[fe80::1%25eth0]/", "not a valid host"),
	REFUSED("http://[v1.x]/", "not a valid host"),
	REFUSED("http://[::1]x/", "not a valid host"),
	REFUSED("http://h\x80/", "not a valid host"),
	/* fragments, bytes and encodings after the authority */
	REFUSED("http://h#f", "fragment"),
	REFUSED("http://h/#", "fragment"),
	REFUSED("http://h?q#f", "fragment"),
	REFUSED("http://h/%00", "encoded NUL"),
	REFUSED("http://h/a%0", "malformed percent-encoding"),
	REFUSED("http://h/a b", "not allowed in a URI"),
	REFUSED("http://h?\x7f", "not allowed in a URI"),
};

START_TEST(target_table)
{
	const struct target_case *c = &target_cases[_i];
	struct uri_target u;
	const char *why;

	memset(&u, 0xa5, sizeof(u));
	why = uri_target_check(c->t, c->len, c->options, &u);
	if (c->why != NULL) {
		ck_assert_msg(why != NULL, "case %d \"%.*s\": accepted", _i, (int)c->len, c->t);
		ck_assert_msg(strstr(why, c->why) != NULL, "case %d \"%.*s\": \"%s\", not \"%s\"",
		    _i, (int)c->len, c->t, why, c->why);
		return;
	}
	ck_assert_msg(why == NULL, "case %d \"%.*s\": refused (%s)", _i, (int)c->len, c->t, why);
	ck_assert_msg(u.form == c->form, "case %d \"%.*s\": form %d", _i, (int)c->len, c->t,
	    (int)u.form);
	ck_assert_msg(u.authority_off == c->authority_off && u.authority_len == c->authority_len,
	    "case %d \"%.*s\": authority %zu+%zu", _i, (int)c->len, c->t, u.authority_off,
	    u.authority_len);
	ck_assert_msg(u.path_off == c->path_off && u.path_len == c->path_len,
	    "case %d \"%.*s\": path %zu+%zu", _i, (int)c->len, c->t, u.path_off, u.path_len);
	ck_assert_msg(u.need_slash == c->need_slash, "case %d \"%.*s\": need_slash %d", _i,
	    (int)c->len, c->t, u.need_slash);
}
END_TEST

START_TEST(target_authority_is_host)
{
	const char *abs = "http://a.example:8080/x?y";
	struct uri_target u;
	char t[400];
	size_t n;

	/* The authority of an accepted absolute-form target is a valid Host, and goes on. */
	ck_assert_ptr_null(uri_target_check(abs, strlen(abs), false, &u));
	ck_assert_uint_eq(u.authority_len, 14);
	ck_assert(memcmp(abs + u.authority_off, "a.example:8080", 14) == 0);
	ck_assert_ptr_null(uri_host_check(abs + u.authority_off, u.authority_len));
	ck_assert_uint_eq(u.path_len, 4);
	ck_assert(memcmp(abs + u.path_off, "/x?y", 4) == 0);

	/* The longest authority: 255 bytes of name and a 5-digit port. */
	memcpy(t, "https://", 8);
	memset(t + 8, 'n', 255);
	memcpy(t + 263, ":65535/", 7);
	n = 270;
	ck_assert_ptr_null(uri_target_check(t, n, false, &u));
	ck_assert_uint_eq(u.authority_off, 8);
	ck_assert_uint_eq(u.authority_len, 261);
	ck_assert_uint_eq(u.path_off, 269);
	ck_assert_uint_eq(u.path_len, 1);
	t[263] = 'n';
	ck_assert_ptr_nonnull(uri_target_check(t, n, false, &u));
}
END_TEST

START_TEST(target_out_reset)
{
	struct uri_target u;

	/* Every call fills out afresh: nothing is left from an earlier absolute-form target. */
	ck_assert_ptr_null(uri_target_check(B("http://h"), false, &u));
	ck_assert(u.need_slash);
	ck_assert_ptr_null(uri_target_check(B("/x"), false, &u));
	ck_assert_int_eq(u.form, URI_ORIGIN);
	ck_assert_uint_eq(u.authority_off, 0);
	ck_assert_uint_eq(u.authority_len, 0);
	ck_assert_uint_eq(u.path_off, 0);
	ck_assert_uint_eq(u.path_len, 2);
	ck_assert(!u.need_slash);
	ck_assert_ptr_null(uri_target_check(B("http://h:1"), false, &u));
	ck_assert_ptr_null(uri_target_check(B("*"), true, &u));
	ck_assert_int_eq(u.form, URI_ASTERISK);
	ck_assert_uint_eq(u.authority_len, 0);
	ck_assert_uint_eq(u.path_off, 0);
	ck_assert_uint_eq(u.path_len, 1);
	ck_assert(!u.need_slash);
}
END_TEST

START_TEST(target_length_bounds_input)
{
	struct uri_target u;

	/* len, not a NUL, ends the target. */
	ck_assert_ptr_null(uri_target_check("/a#f", 2, false, &u));
	ck_assert_uint_eq(u.path_len, 2);
	ck_assert_ptr_null(uri_target_check("/a%00", 2, false, &u));
	ck_assert_ptr_nonnull(uri_target_check("/a%41", 3, false, &u));
	ck_assert_ptr_nonnull(uri_target_check("/a%41", 4, false, &u));
	ck_assert_ptr_null(uri_target_check("*x", 1, true, &u));
	ck_assert_ptr_null(uri_target_check("http://h/p", 8, false, &u));
	ck_assert(u.need_slash);
	ck_assert_uint_eq(u.path_off, 8);
	ck_assert_uint_eq(u.path_len, 0);
	ck_assert_ptr_nonnull(uri_target_check("http://h/p", 7, false, &u));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("uri");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, host_table, 0, (int)(sizeof(host_cases) / sizeof(host_cases[0])));
	tcase_add_test(tc, host_length_limit);
	tcase_add_test(tc, host_length_bounds_input);
	tcase_add_loop_test(tc, target_table, 0,
	    (int)(sizeof(target_cases) / sizeof(target_cases[0])));
	tcase_add_test(tc, target_authority_is_host);
	tcase_add_test(tc, target_out_reset);
	tcase_add_test(tc, target_length_bounds_input);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
