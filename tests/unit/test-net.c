/* Unit tests for the compact peer address kept by every client connection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include <check.h>

#include "roundguard/net.h"
#include "unit.h"

/* What net_addr_format() prints for sa must be what net_format_ip() prints. */
static void
same_as_format_ip(const struct sockaddr *sa, const char *want)
{
	struct net_addr a;
	char got[NET_ADDR_STRLEN], ref[NET_ADDR_STRLEN];

	net_addr_set(&a, sa);
	net_format_ip(ref, sizeof(ref), sa);
	ck_assert_str_eq(net_addr_format(&a, got, sizeof(got)), want);
	ck_assert_str_eq(got, ref);
}

static void
v4(const char *text)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(80) };

	ck_assert_int_eq(inet_pton(AF_INET, text, &sin.sin_addr), 1);
	same_as_format_ip((struct sockaddr *)&sin, text);
}

static void
v6(const char *text, const char *want)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(80) };

	ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
	same_as_format_ip((struct sockaddr *)&sin6, want);
}

START_TEST(ipv4_every_digit_count)
{
	v4("0.0.0.0");
	v4("127.0.0.1");
	v4("10.20.30.40");
	v4("100.199.200.255");
	v4("255.255.255.255");
	v4("1.10.100.9");
}
END_TEST

START_TEST(ipv6_and_v4_mapped)
{
	v6("::1", "::1");
	v6("2001:db8::8a2e:370:7334", "2001:db8::8a2e:370:7334");
	v6("fe80::1:2:3:4", "fe80::1:2:3:4");
	/* A v4 client on a dual-stack socket is shown as v4. */
	v6("::ffff:192.0.2.128", "192.0.2.128");
	v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}
END_TEST

START_TEST(unix_peer)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct net_addr a;
	char got[NET_ADDR_STRLEN];

	net_addr_set(&a, (struct sockaddr *)&sun);
	ck_assert_str_eq(net_addr_format(&a, got, sizeof(got)), "unix");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("net");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, ipv4_every_digit_count);
	tcase_add_test(tc, ipv6_and_v4_mapped);
	tcase_add_test(tc, unix_peer);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
