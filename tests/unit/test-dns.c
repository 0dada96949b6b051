/*
 * Unit tests for reading DNS responses (src/dns_answer.c) and for turning
 * their records into a set of discovered backends (src/discover_set.c).
 * The messages are built by hand with the small writer below, so each test
 * says byte by byte what a resolver sent.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <check.h>

#include "roundguard/discover.h"
#include "roundguard/dns_answer.h"
#include "unit.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define DNS_TYPE_NS	2
#define DNS_TYPE_SOA	6
#define DNS_TYPE_OPT	41

/* Header flags: QR (a response), RD and RA as a recursive resolver sets them. */
#define FLAGS_RESPONSE	0x8180

/* ---- a tiny DNS message writer ---- */

struct msg {
	uint8_t b[8192];
	size_t n;
	size_t rdlen_at;	/* where the open record's RDLENGTH goes */
};

static void
put8(struct msg *m, uint8_t v)
{
	ck_assert_uint_lt(m->n, sizeof(m->b));
	m->b[m->n++] = v;
}

static void
put16(struct msg *m, uint16_t v)
{
	put8(m, (uint8_t)(v >> 8));
	put8(m, (uint8_t)v);
}

static void
put32(struct msg *m, uint32_t v)
{
	put16(m, (uint16_t)(v >> 16));
	put16(m, (uint16_t)v);
}

static void
put_bytes(struct msg *m, const void *p, size_t len)
{
	ck_assert_uint_le(m->n + len, sizeof(m->b));
	memcpy(m->b + m->n, p, len);
	m->n += len;
}

/* The labels of a dotted name, without the terminating root label. */
static void
put_labels(struct msg *m, const char *name)
{
	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t l = dot != NULL ? (size_t)(dot - name) : strlen(name);

		ck_assert_uint_gt(l, 0);
		ck_assert_uint_lt(l, 64);
		put8(m, (uint8_t)l);
		put_bytes(m, name, l);
		name += l;
		if (*name == '.')
			name++;
	}
}

/* An uncompressed name ("" is the root). Returns its offset, for pointers to it. */
static size_t
put_name(struct msg *m, const char *name)
{
	size_t at = m->n;

	put_labels(m, name);
	put8(m, 0);
	return at;
}

/* A compression pointer to the name at offset to. */
static void
put_ptr(struct msg *m, size_t to)
{
	ck_assert_uint_lt(to, 0x4000);
	put16(m, (uint16_t)(0xc000 | to));
}

/* The header; a question for (qname, qtype) follows when qname is not NULL. */
static void
begin(struct msg *m, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar,
    const char *qname, uint16_t qtype)
{
	memset(m, 0, sizeof(*m));
	put16(m, 0x1234);
	put16(m, flags);
	put16(m, qd);
	put16(m, an);
	put16(m, ns);
	put16(m, ar);
	if (qname != NULL) {
		put_name(m, qname);
		put16(m, qtype);
		put16(m, 1);
	}
}

/* The question's name: always at offset 12. */
#define QNAME_AT 12

/* A record's fixed part, after its owner name; its RDATA follows, then rr_end(). */
static void
rr_begin(struct msg *m, uint16_t type, uint32_t ttl)
{
	put16(m, type);
	put16(m, 1);		/* IN */
	put32(m, ttl);
	m->rdlen_at = m->n;
	put16(m, 0);
}

static void
rr_end(struct msg *m)
{
	size_t len = m->n - m->rdlen_at - 2;

	m->b[m->rdlen_at] = (uint8_t)(len >> 8);
	m->b[m->rdlen_at + 1] = (uint8_t)len;
}

/* An A record owned by the name at offset owner (a pointer). */
static void
rr_a(struct msg *m, size_t owner, uint32_t ttl, const char *ip)
{
	uint8_t a[4];

	ck_assert_int_eq(inet_pton(AF_INET, ip, a), 1);
	put_ptr(m, owner);
	rr_begin(m, DNS_TYPE_A, ttl);
	put_bytes(m, a, 4);
	rr_end(m);
}

static void
rr_aaaa(struct msg *m, size_t owner, uint32_t ttl, const char *ip)
{
	uint8_t a[16];

	ck_assert_int_eq(inet_pton(AF_INET6, ip, a), 1);
	put_ptr(m, owner);
	rr_begin(m, DNS_TYPE_AAAA, ttl);
	put_bytes(m, a, 16);
	rr_end(m);
}

/* An SRV record owned by the name at owner, its target uncompressed: returns the target's offset. */
static size_t
rr_srv(struct msg *m, size_t owner, uint32_t ttl, uint16_t prio, uint16_t weight,
    uint16_t port, const char *target)
{
	size_t at;

	put_ptr(m, owner);
	rr_begin(m, DNS_TYPE_SRV, ttl);
	put16(m, prio);
	put16(m, weight);
	put16(m, port);
	at = put_name(m, target);
	rr_end(m);
	return at;
}

/* A CNAME owned by the name at owner, to target (uncompressed): returns the target's offset. */
static size_t
rr_cname(struct msg *m, size_t owner, uint32_t ttl, const char *target)
{
	size_t at;

	put_ptr(m, owner);
	rr_begin(m, DNS_TYPE_CNAME, ttl);
	at = put_name(m, target);
	rr_end(m);
	return at;
}

static struct dns_answer ans;

static enum dns_result
parse(const struct msg *m, const char *qname, uint16_t qtype)
{
	memset(&ans, 0xa5, sizeof(ans));
	dns_answer_parse(m->b, m->n, qname, qtype, &ans);
	return ans.result;
}

static void
assert_ip(const struct dns_record *r, const char *want)
{
	char buf[INET6_ADDRSTRLEN];

	ck_assert_ptr_nonnull(inet_ntop(r->type == DNS_TYPE_A ? AF_INET : AF_INET6, r->addr, buf,
	    sizeof(buf)));
	ck_assert_str_eq(buf, want);
}

/* Nothing kept: the state of every failure. */
static void
assert_empty(void)
{
	ck_assert_uint_eq(ans.n, 0);
	ck_assert_uint_eq(ans.nextra, 0);
	ck_assert_uint_eq(ans.min_ttl, 0);
}

/* ---- answers ---- */

START_TEST(a_records)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 3, 0, 0, "api.test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 300, "192.0.2.1");
	rr_a(&m, QNAME_AT, 60, "192.0.2.2");
	rr_a(&m, QNAME_AT, 120, "192.0.2.3");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.n, 3);
	ck_assert_uint_eq(ans.nextra, 0);
	ck_assert_uint_eq(ans.dropped, 0);
	ck_assert_uint_eq(ans.min_ttl, 60);
	assert_ip(&ans.rr[0], "192.0.2.1");
	assert_ip(&ans.rr[1], "192.0.2.2");
	assert_ip(&ans.rr[2], "192.0.2.3");
	ck_assert_uint_eq(ans.rr[0].ttl, 300);
	ck_assert_uint_eq(ans.rr[1].ttl, 60);
	ck_assert_uint_eq(ans.rr[2].ttl, 120);
	for (size_t i = 0; i < 3; i++) {
		ck_assert_uint_eq(ans.rr[i].type, DNS_TYPE_A);
		ck_assert_str_eq(ans.rr[i].name, "api.test");
	}
	ck_assert_str_eq(dns_result_str(ans.result), "ok");
}
END_TEST

/* Names compare without case and without a trailing dot, on both sides. */
START_TEST(names_fold_case)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "API.Test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 5, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test.", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.n, 1);
	ck_assert(dns_name_equal("api.test", "API.TEST."));
	ck_assert(dns_name_equal("api.test.", "api.test"));
	ck_assert(!dns_name_equal("api.test", "api.tes"));
	ck_assert(!dns_name_equal("api.test", "api.test.."));
	ck_assert(!dns_name_equal("api.test", "xapi.test"));
	ck_assert(dns_name_equal("", "."));
}
END_TEST

START_TEST(aaaa_records)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 3, 0, 0, "api.test", DNS_TYPE_AAAA);
	rr_aaaa(&m, QNAME_AT, 30, "2001:db8::1");
	rr_a(&m, QNAME_AT, 1, "192.0.2.9");	/* another type: not an answer, nor its TTL */
	rr_aaaa(&m, QNAME_AT, 40, "2001:db8::2");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_AAAA), DNS_OK);
	ck_assert_uint_eq(ans.n, 2);
	ck_assert_uint_eq(ans.min_ttl, 30);
	ck_assert_uint_eq(ans.rr[0].type, DNS_TYPE_AAAA);
	assert_ip(&ans.rr[0], "2001:db8::1");
	assert_ip(&ans.rr[1], "2001:db8::2");
}
END_TEST

/* An A record's data must be 4 bytes, an AAAA record's 16. */
START_TEST(address_length_checked)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	put_ptr(&m, QNAME_AT);
	rr_begin(&m, DNS_TYPE_A, 5);
	put32(&m, 0xc0000201);
	put8(&m, 0);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);
	assert_empty();

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_AAAA);
	put_ptr(&m, QNAME_AT);
	rr_begin(&m, DNS_TYPE_AAAA, 5);
	put32(&m, 0x20010db8);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_AAAA), DNS_MALFORMED);
	assert_empty();
}
END_TEST

/*
 * SRV: owners compressed (pointers to the question), targets written out,
 * their addresses in the additional section with owners pointing into the
 * SRV records' data; an authority NS record and an EDNS OPT record are skipped.
 */
static void
build_srv(struct msg *m)
{
	size_t ta, tb, tc, ns_at;

	begin(m, FLAGS_RESPONSE, 1, 3, 1, 5, "_http._tcp.api.test", DNS_TYPE_SRV);
	ta = rr_srv(m, QNAME_AT, 100, 10, 60, 8080, "a.api.test");
	tb = rr_srv(m, QNAME_AT, 50, 10, 20, 8081, "b.api.test");
	tc = rr_srv(m, QNAME_AT, 70, 20, 100, 9090, "c.api.test");
	/* authority: api.test NS ns.api.test */
	put_ptr(m, QNAME_AT + 11);	/* "api.test" inside the question's name */
	rr_begin(m, DNS_TYPE_NS, 3600);
	ns_at = put_name(m, "ns.api.test");
	rr_end(m);
	/* additional */
	rr_a(m, ta, 10, "192.0.2.10");
	rr_aaaa(m, ta, 10, "2001:db8::10");
	rr_a(m, tb, 10, "192.0.2.20");
	rr_a(m, ns_at, 10, "192.0.2.53");
	put_name(m, "");			/* OPT: the root's */
	put16(m, DNS_TYPE_OPT);
	put16(m, 1232);
	put32(m, 0);
	put16(m, 0);
	(void)tc;
}

START_TEST(srv_records)
{
	struct msg m;

	build_srv(&m);
	ck_assert_int_eq(parse(&m, "_http._tcp.api.test", DNS_TYPE_SRV), DNS_OK);
	ck_assert_uint_eq(ans.n, 3);
	ck_assert_uint_eq(ans.min_ttl, 50);
	ck_assert_uint_eq(ans.rr[0].type, DNS_TYPE_SRV);
	ck_assert_uint_eq(ans.rr[0].priority, 10);
	ck_assert_uint_eq(ans.rr[0].weight, 60);
	ck_assert_uint_eq(ans.rr[0].port, 8080);
	ck_assert_str_eq(ans.rr[0].name, "a.api.test");
	ck_assert_uint_eq(ans.rr[1].priority, 10);
	ck_assert_uint_eq(ans.rr[1].weight, 20);
	ck_assert_uint_eq(ans.rr[1].port, 8081);
	ck_assert_str_eq(ans.rr[1].name, "b.api.test");
	ck_assert_uint_eq(ans.rr[2].priority, 20);
	ck_assert_uint_eq(ans.rr[2].port, 9090);
	ck_assert_str_eq(ans.rr[2].name, "c.api.test");
	/* The additional A/AAAA records (the authority's NS and the OPT are not). */
	ck_assert_uint_eq(ans.nextra, 4);
	ck_assert_str_eq(ans.extra[0].name, "a.api.test");
	assert_ip(&ans.extra[0], "192.0.2.10");
	ck_assert_str_eq(ans.extra[1].name, "a.api.test");
	ck_assert_uint_eq(ans.extra[1].type, DNS_TYPE_AAAA);
	assert_ip(&ans.extra[1], "2001:db8::10");
	ck_assert_str_eq(ans.extra[2].name, "b.api.test");
	assert_ip(&ans.extra[2], "192.0.2.20");
	ck_assert_str_eq(ans.extra[3].name, "ns.api.test");
	ck_assert_uint_eq(discover_srv_priority(&ans), 10);
}
END_TEST

/* The checker's way from an SRV answer to targets: the best priority's, with their ports and weights. */
START_TEST(srv_to_targets)
{
	struct discover_target t[DISCOVER_TARGETS_MAX];
	char name[64];
	size_t n = 0, cut = 99, k;
	uint16_t prio;
	struct msg m;

	build_srv(&m);
	ck_assert_int_eq(parse(&m, "_http._tcp.api.test", DNS_TYPE_SRV), DNS_OK);
	prio = discover_srv_priority(&ans);
	for (size_t i = 0; i < ans.n; i++)
		if (ans.rr[i].priority == prio)
			discover_add_addresses(t, &n, COUNT(t), &ans, ans.rr[i].name, ans.rr[i].port,
			    ans.rr[i].weight);
	ck_assert_uint_eq(n, 3);
	k = discover_settle(t, n, 16, true, &cut);
	ck_assert_uint_eq(k, 3);
	ck_assert_uint_eq(cut, 0);
	discover_format(&t[0].a, name, sizeof(name));
	ck_assert_str_eq(name, "192.0.2.10:8080");
	ck_assert_uint_eq(t[0].weight, 60);
	discover_format(&t[1].a, name, sizeof(name));
	ck_assert_str_eq(name, "192.0.2.20:8081");
	ck_assert_uint_eq(t[1].weight, 20);
	discover_format(&t[2].a, name, sizeof(name));
	ck_assert_str_eq(name, "[2001:db8::10]:8080");
	ck_assert_uint_eq(t[2].weight, 60);

	/* Capped: cap is respected, and the answer section (owner NULL) holds no addresses here. */
	n = 0;
	discover_add_addresses(t, &n, 1, &ans, "a.api.test", 1, 1);
	ck_assert_uint_eq(n, 1);
	n = 0;
	discover_add_addresses(t, &n, COUNT(t), &ans, NULL, 1, 1);
	ck_assert_uint_eq(n, 0);
	n = 0;
	discover_add_addresses(t, &n, COUNT(t), &ans, "A.API.TEST.", 1, 1);
	ck_assert_uint_eq(n, 2);
}
END_TEST

/* An SRV target that runs past its record's data, or stops short of it. */
START_TEST(srv_target_bounded)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "_http._tcp.api.test", DNS_TYPE_SRV);
	rr_srv(&m, QNAME_AT, 100, 10, 60, 8080, "a.api.test");
	m.b[m.rdlen_at + 1] -= 2;	/* RDLENGTH two bytes short of the target's end */
	m.n -= 2;
	ck_assert_int_eq(parse(&m, "_http._tcp.api.test", DNS_TYPE_SRV), DNS_MALFORMED);

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "_http._tcp.api.test", DNS_TYPE_SRV);
	rr_srv(&m, QNAME_AT, 100, 10, 60, 8080, "a.api.test");
	put8(&m, 0);			/* a byte after the target, inside RDATA */
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "_http._tcp.api.test", DNS_TYPE_SRV), DNS_MALFORMED);

	/* A target compressed to the question's name is fine. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "_http._tcp.api.test", DNS_TYPE_SRV);
	put_ptr(&m, QNAME_AT);
	rr_begin(&m, DNS_TYPE_SRV, 100);
	put16(&m, 1);
	put16(&m, 2);
	put16(&m, 3);
	put8(&m, 1);
	put8(&m, 'x');
	put_ptr(&m, QNAME_AT + 11);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "_http._tcp.api.test", DNS_TYPE_SRV), DNS_OK);
	ck_assert_str_eq(ans.rr[0].name, "x.api.test");
}
END_TEST

/* A broken additional section costs the extras only; the answers stand. */
START_TEST(broken_additional)
{
	struct msg m;
	size_t ta;

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 2, "_http._tcp.api.test", DNS_TYPE_SRV);
	ta = rr_srv(&m, QNAME_AT, 100, 10, 60, 8080, "a.api.test");
	rr_a(&m, ta, 10, "192.0.2.10");
	/* the second additional record is cut short */
	put_ptr(&m, ta);
	put16(&m, DNS_TYPE_A);
	ck_assert_int_eq(parse(&m, "_http._tcp.api.test", DNS_TYPE_SRV), DNS_OK);
	ck_assert_uint_eq(ans.n, 1);
	ck_assert_uint_eq(ans.nextra, 0);

	/* An A record of the wrong length there is skipped, the others kept. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 2, "_http._tcp.api.test", DNS_TYPE_SRV);
	ta = rr_srv(&m, QNAME_AT, 100, 10, 60, 8080, "a.api.test");
	put_ptr(&m, ta);
	rr_begin(&m, DNS_TYPE_A, 10);
	put16(&m, 1);
	rr_end(&m);
	rr_a(&m, ta, 10, "192.0.2.11");
	ck_assert_int_eq(parse(&m, "_http._tcp.api.test", DNS_TYPE_SRV), DNS_OK);
	ck_assert_uint_eq(ans.nextra, 1);
	assert_ip(&ans.extra[0], "192.0.2.11");
}
END_TEST

/* More records than DNS_ANSWER_MAX: the first are kept, the rest counted. */
START_TEST(too_many_records)
{
	struct msg m;
	char ip[32];

	begin(&m, FLAGS_RESPONSE, 1, DNS_ANSWER_MAX + 6, 0, 0, "api.test", DNS_TYPE_A);
	for (int i = 0; i < DNS_ANSWER_MAX + 6; i++) {
		snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 256, i % 256);
		rr_a(&m, QNAME_AT, 1000 - (uint32_t)i, ip);
	}
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.n, DNS_ANSWER_MAX);
	ck_assert_uint_eq(ans.dropped, 6);
	snprintf(ip, sizeof(ip), "10.0.%d.%d", (DNS_ANSWER_MAX - 1) / 256, (DNS_ANSWER_MAX - 1) % 256);
	assert_ip(&ans.rr[DNS_ANSWER_MAX - 1], ip);
	ck_assert_uint_eq(ans.min_ttl, 1000 - (DNS_ANSWER_MAX - 1));
}
END_TEST

/* ---- CNAMEs ---- */

/* api.test -> x.test -> y.test -> A; the CNAMEs given out of order, the lowest TTL a CNAME's. */
START_TEST(cname_chain)
{
	struct msg m;
	size_t x_at, y_at;

	begin(&m, FLAGS_RESPONSE, 1, 4, 0, 0, "api.test", DNS_TYPE_A);
	x_at = rr_cname(&m, QNAME_AT, 30, "x.test");
	/* the A first, owned by y.test written out, then the CNAME to it from x.test */
	y_at = put_name(&m, "y.test");
	rr_begin(&m, DNS_TYPE_A, 300);
	put32(&m, 0xc0000207);
	rr_end(&m);
	rr_cname(&m, x_at, 600, "y.test");
	rr_a(&m, QNAME_AT, 300, "192.0.2.99");	/* the question's name has an A too: not followed */
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.n, 1);
	assert_ip(&ans.rr[0], "192.0.2.7");
	ck_assert_str_eq(ans.rr[0].name, "y.test");
	ck_assert_uint_eq(ans.min_ttl, 30);
	(void)y_at;
}
END_TEST

/* A CNAME chain that ends without records of the type: NODATA (and no TTL). */
START_TEST(cname_nodata)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_AAAA);
	rr_cname(&m, QNAME_AT, 30, "x.test");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_AAAA), DNS_NODATA);
	assert_empty();
}
END_TEST

/* A name that is its own CNAME: refused. */
START_TEST(cname_self)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 2, 0, 0, "api.test", DNS_TYPE_A);
	rr_cname(&m, QNAME_AT, 30, "API.test.");
	rr_a(&m, QNAME_AT, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);
	assert_empty();
}
END_TEST

/* A loop through two names: followed a bounded number of times, no records of it. */
START_TEST(cname_loop_bounded)
{
	struct msg m;
	size_t x_at;

	begin(&m, FLAGS_RESPONSE, 1, 2, 0, 0, "api.test", DNS_TYPE_A);
	x_at = rr_cname(&m, QNAME_AT, 30, "x.test");
	put_ptr(&m, x_at);
	rr_begin(&m, DNS_TYPE_CNAME, 30);
	put_ptr(&m, QNAME_AT);
	rr_end(&m);
	ck_assert_int_ne(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.n, 0);
}
END_TEST

/*
 * A cycle of 2, 3 or 4 CNAMEs with an A record on every name of it: no
 * answer (a resolver would say SERVFAIL; DNS_CNAME_MAX hops must not land on
 * whichever name of the cycle 8 hops happen to reach).
 */
START_TEST(cname_cycle_no_records)
{
	int len = 2 + _i;
	struct msg m;
	size_t at[4];
	char name[32];

	begin(&m, FLAGS_RESPONSE, 1, (uint16_t)(2 * len), 0, 0, "api.test", DNS_TYPE_A);
	at[0] = QNAME_AT;
	for (int i = 0; i < len; i++) {
		put_ptr(&m, at[i]);
		rr_begin(&m, DNS_TYPE_CNAME, 30);
		if (i + 1 < len) {
			snprintf(name, sizeof(name), "n%d.test", i + 1);
			at[i + 1] = put_name(&m, name);
		} else {
			put_ptr(&m, QNAME_AT);
		}
		rr_end(&m);
	}
	for (int i = 0; i < len; i++) {
		snprintf(name, sizeof(name), "192.0.2.%d", i + 1);
		rr_a(&m, at[i], 30, name);
	}
	ck_assert_msg(parse(&m, "api.test", DNS_TYPE_A) != DNS_OK,
	    "a cycle of %d CNAMEs: %s, %zu records (the first %s's)", len,
	    dns_result_str(ans.result), ans.n, ans.n > 0 ? ans.rr[0].name : "");
	ck_assert_uint_eq(ans.n, 0);
}
END_TEST

/* A chain longer than DNS_CNAME_MAX links is refused (malformed), not cut short as NODATA. */
START_TEST(cname_chain_limited)
{
	struct msg m;
	char name[32];
	size_t at = QNAME_AT;

	begin(&m, FLAGS_RESPONSE, 1, DNS_CNAME_MAX + 2, 0, 0, "api.test", DNS_TYPE_A);
	for (int i = 1; i <= DNS_CNAME_MAX + 1; i++) {
		snprintf(name, sizeof(name), "c%d.test", i);
		at = rr_cname(&m, at, 30, name);
	}
	rr_a(&m, at, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);
	ck_assert_uint_eq(ans.n, 0);

	/* One link fewer: the end is reached. */
	begin(&m, FLAGS_RESPONSE, 1, DNS_CNAME_MAX + 1, 0, 0, "api.test", DNS_TYPE_A);
	at = QNAME_AT;
	for (int i = 1; i <= DNS_CNAME_MAX; i++) {
		snprintf(name, sizeof(name), "c%d.test", i);
		at = rr_cname(&m, at, 30, name);
	}
	rr_a(&m, at, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_str_eq(ans.rr[0].name, "c8.test");
}
END_TEST

/* ---- response codes, NODATA ---- */

static const struct {
	uint16_t rcode;
	enum dns_result want;
	const char *str;
} rcodes[] = {
	{ 3, DNS_NXDOMAIN, "nxdomain" },
	{ 2, DNS_SERVFAIL, "servfail" },
	{ 5, DNS_REFUSED, "refused" },
	{ 4, DNS_ERROR, "error" },	/* NOTIMP */
	{ 1, DNS_ERROR, "error" },	/* FORMERR */
};

START_TEST(rcode)
{
	struct msg m;

	/* With an answer record, even: the code decides. */
	begin(&m, (uint16_t)(FLAGS_RESPONSE | rcodes[_i].rcode), 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), rcodes[_i].want);
	assert_empty();
	ck_assert_str_eq(dns_result_str(ans.result), rcodes[_i].str);
}
END_TEST

START_TEST(nodata)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 0, 0, 0, "api.test", DNS_TYPE_A);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_NODATA);
	assert_empty();
	ck_assert_str_eq(dns_result_str(ans.result), "nodata");

	/* An SOA in the authority section, an AAAA in the answers: still no A. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 1, 0, "api.test", DNS_TYPE_A);
	rr_aaaa(&m, QNAME_AT, 30, "2001:db8::1");
	put_ptr(&m, QNAME_AT + 4);
	rr_begin(&m, DNS_TYPE_SOA, 300);
	put_ptr(&m, QNAME_AT);
	put_ptr(&m, QNAME_AT);
	for (int i = 0; i < 5; i++)
		put32(&m, 60);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_NODATA);
	assert_empty();

	/* An A record of another name, or of another class. */
	begin(&m, FLAGS_RESPONSE, 1, 2, 0, 0, "api.test", DNS_TYPE_A);
	put_name(&m, "other.test");
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	put_ptr(&m, QNAME_AT);
	put16(&m, DNS_TYPE_A);
	put16(&m, 3);		/* CH */
	put32(&m, 30);
	put16(&m, 4);
	put32(&m, 0x01020304);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_NODATA);
}
END_TEST

/* ---- malformed ---- */

/* Every prefix of a complete answer is refused (counts promise more than there is). */
START_TEST(truncated)
{
	struct msg m;
	size_t full;

	begin(&m, FLAGS_RESPONSE, 1, 2, 0, 0, "api.test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 30, "192.0.2.1");
	rr_a(&m, QNAME_AT, 30, "192.0.2.2");
	full = m.n;
	for (size_t len = 0; len < full; len++) {
		memset(&ans, 0xa5, sizeof(ans));
		dns_answer_parse(m.b, len, "api.test", DNS_TYPE_A, &ans);
		ck_assert_msg(ans.result == DNS_MALFORMED, "%zu of %zu bytes: %s", len, full,
		    dns_result_str(ans.result));
		assert_empty();
	}
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.n, 2);
}
END_TEST

START_TEST(wrong_question)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "other.test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);
	assert_empty();

	/* A suffix, or one label more, is another name. */
	ck_assert_int_eq(parse(&m, "test", DNS_TYPE_A), DNS_MALFORMED);
	ck_assert_int_eq(parse(&m, "x.other.test", DNS_TYPE_A), DNS_MALFORMED);

	/* The right name, another type. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_AAAA);
	rr_a(&m, QNAME_AT, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);

	/* A query, not a response. */
	begin(&m, 0x0100, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);

	/* No question, or two. */
	begin(&m, FLAGS_RESPONSE, 0, 0, 0, 0, NULL, 0);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);
	begin(&m, FLAGS_RESPONSE, 2, 0, 0, 0, "api.test", DNS_TYPE_A);
	put_ptr(&m, QNAME_AT);
	put16(&m, DNS_TYPE_A);
	put16(&m, 1);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);
}
END_TEST

/* Compression pointers must point backwards: forward, onto themselves, or in a cycle, refused. */
START_TEST(bad_pointers)
{
	struct msg m;
	size_t at;

	/* An answer's owner pointing forwards (to the next record's owner). */
	begin(&m, FLAGS_RESPONSE, 1, 2, 0, 0, "api.test", DNS_TYPE_A);
	at = m.n;
	put_ptr(&m, at + 16);
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	ck_assert_uint_eq(m.n, at + 16);
	put_name(&m, "api.test");
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);
	assert_empty();

	/* An owner pointing at itself. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	put_ptr(&m, m.n);
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);

	/* The question's name pointing at itself. */
	begin(&m, FLAGS_RESPONSE, 1, 0, 0, 0, NULL, 0);
	put_ptr(&m, QNAME_AT);
	put16(&m, DNS_TYPE_A);
	put16(&m, 1);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);

	/* A label, then a pointer back to that same label: a loop. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	at = m.n;
	put8(&m, 1);
	put8(&m, 'x');
	put_ptr(&m, at);
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);

	/* A pointer past the end of the message. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	put_ptr(&m, 0x3fff);
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);

	/* The extended label types 0x40 and 0x80. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	put8(&m, 0x41);
	put8(&m, 'x');
	put8(&m, 0);
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);

	/*
	 * Pointers to pointers, each further back, are fine: api.test CNAME
	 * www.api.test ("www" + a pointer to the question), www.api.test CNAME
	 * v.www.api.test ("v" + a pointer to that), and its A record's owner a
	 * pointer to the last: three jumps, each to an earlier offset.
	 */
	begin(&m, FLAGS_RESPONSE, 1, 3, 0, 0, "api.test", DNS_TYPE_A);
	put_ptr(&m, QNAME_AT);
	rr_begin(&m, DNS_TYPE_CNAME, 30);
	at = m.n;
	put8(&m, 3);
	put_bytes(&m, "www", 3);
	put_ptr(&m, QNAME_AT);
	rr_end(&m);
	put_ptr(&m, at);
	rr_begin(&m, DNS_TYPE_CNAME, 30);
	{
		size_t v_at = m.n;

		put8(&m, 1);
		put8(&m, 'v');
		put_ptr(&m, at);
		rr_end(&m);
		put_ptr(&m, v_at);
	}
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.n, 1);
	ck_assert_str_eq(ans.rr[0].name, "v.www.api.test");
}
END_TEST

/* Labels with a dot, a NUL, a control byte, a space, a quote, a backslash or a byte above 0x7e. */
static const uint8_t bad_bytes[] = { '.', 0, 0x01, 0x1f, ' ', '"', '\\', 0x7f, 0x80, 0xff };

START_TEST(bad_label_bytes)
{
	struct msg m;
	size_t at;

	/* In an answer's owner. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	put8(&m, 3);
	put8(&m, 'a');
	put8(&m, bad_bytes[_i]);
	put8(&m, 'b');
	put_ptr(&m, QNAME_AT);
	rr_begin(&m, DNS_TYPE_A, 30);
	put32(&m, 0x01020304);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_MALFORMED);
	assert_empty();

	/* In an SRV target. */
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "_http._tcp.api.test", DNS_TYPE_SRV);
	put_ptr(&m, QNAME_AT);
	rr_begin(&m, DNS_TYPE_SRV, 30);
	put16(&m, 1);
	put16(&m, 1);
	put16(&m, 80);
	put8(&m, 2);
	put8(&m, 'a');
	put8(&m, bad_bytes[_i]);
	put8(&m, 0);
	rr_end(&m);
	ck_assert_int_eq(parse(&m, "_http._tcp.api.test", DNS_TYPE_SRV), DNS_MALFORMED);

	/* In the question: "a.b" in one label is not the two labels a, b. */
	begin(&m, FLAGS_RESPONSE, 1, 0, 0, 0, NULL, 0);
	at = m.n;
	put8(&m, 3);
	put8(&m, 'a');
	put8(&m, bad_bytes[_i]);
	put8(&m, 'b');
	put8(&m, 0);
	put16(&m, DNS_TYPE_A);
	put16(&m, 1);
	ck_assert_int_eq(parse(&m, "a.b", DNS_TYPE_A), DNS_MALFORMED);
	(void)at;
}
END_TEST

/* A name of more than 255 bytes dotted is refused. */
START_TEST(long_name)
{
	struct msg m;
	char name[300];
	size_t o = 0;

	/* 4 labels of 63: 4 * 63 + 3 dots = 255 bytes: the longest. */
	for (int i = 0; i < 4; i++) {
		if (i > 0)
			name[o++] = '.';
		memset(name + o, 'a' + i, 63);
		o += 63;
	}
	name[o] = '\0';
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, name, DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, name, DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(strlen(ans.rr[0].name), 255);

	/* One more label makes it too long. */
	memmove(name + 2, name, o + 1);
	name[0] = 'z';
	name[1] = '.';
	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, name, DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 30, "192.0.2.1");
	ck_assert_int_eq(parse(&m, name, DNS_TYPE_A), DNS_MALFORMED);
}
END_TEST

/* RFC 2181 8: a TTL with its top bit set is 0. */
START_TEST(ttl_top_bit)
{
	struct msg m;

	begin(&m, FLAGS_RESPONSE, 1, 2, 0, 0, "api.test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 0x7fffffffu, "192.0.2.1");
	rr_a(&m, QNAME_AT, 0x80000000u, "192.0.2.2");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.rr[0].ttl, 0x7fffffffu);
	ck_assert_uint_eq(ans.rr[1].ttl, 0);
	ck_assert_uint_eq(ans.min_ttl, 0);

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 0xffffffffu, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.min_ttl, 0);

	begin(&m, FLAGS_RESPONSE, 1, 1, 0, 0, "api.test", DNS_TYPE_A);
	rr_a(&m, QNAME_AT, 0x7fffffffu, "192.0.2.1");
	ck_assert_int_eq(parse(&m, "api.test", DNS_TYPE_A), DNS_OK);
	ck_assert_uint_eq(ans.min_ttl, 0x7fffffffu);
}
END_TEST

START_TEST(result_strings)
{
	static const char *const want[] = {
		"ok", "nodata", "nxdomain", "servfail", "refused", "timeout", "malformed", "error",
	};

	for (int r = 0; r < DNS_RESULTS; r++)
		ck_assert_str_eq(dns_result_str((enum dns_result)r), want[r]);
	ck_assert_str_eq(dns_result_str(DNS_RESULTS), "error");
}
END_TEST

/* ---- the set of discovered backends ---- */

static struct discover_target
tgt(const char *ip, uint16_t port, uint32_t weight)
{
	struct discover_target t;

	memset(&t, 0, sizeof(t));
	if (inet_pton(AF_INET, ip, t.a.bytes) == 1)
		t.a.family = AF_INET;
	else {
		ck_assert_int_eq(inet_pton(AF_INET6, ip, t.a.bytes), 1);
		t.a.family = AF_INET6;
	}
	t.a.port = port;
	t.weight = weight;
	return t;
}

static const char *
fmt(const struct discover_target *t)
{
	static char buf[4][64];
	static int i;

	i = (i + 1) % 4;
	discover_format(&t->a, buf[i], sizeof(buf[i]));
	return buf[i];
}

/* Ordered by family (IPv4 first), address, port. */
START_TEST(settle_order)
{
	struct discover_target t[] = {
		tgt("2001:db8::2", 80, 1),
		tgt("192.0.2.10", 80, 1),
		tgt("192.0.2.9", 80, 1),
		tgt("2001:db8::1", 443, 1),
		tgt("192.0.2.10", 79, 1),
		tgt("10.0.0.1", 65535, 1),
	};
	static const char *const want[] = {
		"10.0.0.1:65535", "192.0.2.9:80", "192.0.2.10:79", "192.0.2.10:80",
		"[2001:db8::1]:443", "[2001:db8::2]:80",
	};
	size_t cut = 99, k;

	k = discover_settle(t, COUNT(t), 16, false, &cut);
	ck_assert_uint_eq(k, COUNT(want));
	ck_assert_uint_eq(cut, 0);
	for (size_t i = 0; i < k; i++)
		ck_assert_str_eq(fmt(&t[i]), want[i]);
}
END_TEST

/* Duplicates merge, the larger weight kept whatever their order. */
START_TEST(settle_dedupe)
{
	struct discover_target t[] = {
		tgt("192.0.2.1", 80, 3),
		tgt("192.0.2.2", 80, 1),
		tgt("192.0.2.1", 80, 7),
		tgt("192.0.2.1", 81, 2),	/* another port: another backend */
		tgt("192.0.2.1", 80, 5),
		tgt("2001:db8::1", 80, 9),
		tgt("2001:db8::1", 80, 4),
	};
	size_t cut = 99, k;

	k = discover_settle(t, COUNT(t), 16, false, &cut);
	ck_assert_uint_eq(k, 4);
	ck_assert_uint_eq(cut, 0);
	ck_assert_str_eq(fmt(&t[0]), "192.0.2.1:80");
	ck_assert_uint_eq(t[0].weight, 7);
	ck_assert_str_eq(fmt(&t[1]), "192.0.2.1:81");
	ck_assert_uint_eq(t[1].weight, 2);
	ck_assert_str_eq(fmt(&t[2]), "192.0.2.2:80");
	ck_assert_uint_eq(t[2].weight, 1);
	ck_assert_str_eq(fmt(&t[3]), "[2001:db8::1]:80");
	ck_assert_uint_eq(t[3].weight, 9);
}
END_TEST

/* Cut to max after the merge: the first in order stay, *cut says how many did not. */
START_TEST(settle_cut)
{
	struct discover_target t[] = {
		tgt("192.0.2.5", 80, 1),
		tgt("192.0.2.4", 80, 1),
		tgt("192.0.2.3", 80, 1),
		tgt("192.0.2.3", 80, 1),
		tgt("192.0.2.2", 80, 1),
		tgt("192.0.2.1", 80, 1),
	};
	struct discover_target one[] = { tgt("192.0.2.1", 80, 1) };
	size_t cut = 99, k;

	k = discover_settle(t, COUNT(t), 3, false, &cut);
	ck_assert_uint_eq(k, 3);
	ck_assert_uint_eq(cut, 2);
	ck_assert_str_eq(fmt(&t[0]), "192.0.2.1:80");
	ck_assert_str_eq(fmt(&t[1]), "192.0.2.2:80");
	ck_assert_str_eq(fmt(&t[2]), "192.0.2.3:80");

	k = discover_settle(one, 1, 1, false, &cut);
	ck_assert_uint_eq(k, 1);
	ck_assert_uint_eq(cut, 0);
	k = discover_settle(one, 0, 16, false, &cut);
	ck_assert_uint_eq(k, 0);
	ck_assert_uint_eq(cut, 0);
}
END_TEST

/* The same targets in any order settle to the same set. */
START_TEST(settle_stable)
{
	struct discover_target a[] = {
		tgt("192.0.2.3", 80, 2), tgt("2001:db8::1", 80, 1), tgt("192.0.2.1", 80, 5),
		tgt("192.0.2.3", 80, 4), tgt("192.0.2.2", 80, 1),
	};
	struct discover_target b[] = {
		tgt("192.0.2.2", 80, 1), tgt("192.0.2.3", 80, 4), tgt("192.0.2.1", 80, 5),
		tgt("2001:db8::1", 80, 1), tgt("192.0.2.3", 80, 2),
	};
	size_t cut, ka, kb;

	ka = discover_settle(a, COUNT(a), 3, false, &cut);
	kb = discover_settle(b, COUNT(b), 3, false, &cut);
	ck_assert_uint_eq(ka, kb);
	for (size_t i = 0; i < ka; i++) {
		ck_assert(discover_same(&a[i].a, &b[i].a));
		ck_assert_uint_eq(a[i].weight, b[i].weight);
	}
}
END_TEST

/* SRV weights {1000, 3000}: scaled into 1-256, about 1:3. */
START_TEST(settle_srv_weights)
{
	struct discover_target t[] = { tgt("192.0.2.1", 80, 1000), tgt("192.0.2.2", 80, 3000) };
	struct discover_target small[] = { tgt("192.0.2.1", 80, 10), tgt("192.0.2.2", 80, 30) };
	struct discover_target big[] = { tgt("192.0.2.1", 80, 1), tgt("192.0.2.2", 80, 65535) };
	size_t cut, k;

	k = discover_settle(t, COUNT(t), 16, true, &cut);
	ck_assert_uint_eq(k, 2);
	ck_assert_uint_eq(t[1].weight, 256);
	ck_assert_uint_ge(t[0].weight, 84);
	ck_assert_uint_le(t[0].weight, 86);
	ck_assert_uint_le(t[1].weight > 3 * t[0].weight ? t[1].weight - 3 * t[0].weight :
	    3 * t[0].weight - t[1].weight, 3);

	/* Small enough already: kept as they are. */
	k = discover_settle(small, COUNT(small), 16, true, &cut);
	ck_assert_uint_eq(small[0].weight, 10);
	ck_assert_uint_eq(small[1].weight, 30);

	/* A tiny share never becomes 0. */
	k = discover_settle(big, COUNT(big), 16, true, &cut);
	ck_assert_uint_eq(big[0].weight, 1);
	ck_assert_uint_eq(big[1].weight, 256);

	/* Without srv_weights, only clamped. */
	t[0] = tgt("192.0.2.1", 80, 1000);
	t[1] = tgt("192.0.2.2", 80, 100);
	k = discover_settle(t, COUNT(t), 16, false, &cut);
	ck_assert_uint_eq(t[0].weight, 256);
	ck_assert_uint_eq(t[1].weight, 100);
}
END_TEST

/* Weight 0 ("rarely, if ever") becomes 1: 0 would mean drained. */
START_TEST(settle_weight_zero)
{
	struct discover_target t[] = { tgt("192.0.2.1", 80, 0), tgt("192.0.2.2", 80, 5) };
	struct discover_target u[] = { tgt("192.0.2.1", 80, 0), tgt("192.0.2.2", 80, 60000) };
	size_t cut;

	ck_assert_uint_eq(discover_settle(t, COUNT(t), 16, true, &cut), 2);
	ck_assert_uint_eq(t[0].weight, 1);
	ck_assert_uint_eq(t[1].weight, 5);
	ck_assert_uint_eq(discover_settle(u, COUNT(u), 16, true, &cut), 2);
	ck_assert_uint_eq(u[0].weight, 1);
	ck_assert_uint_eq(u[1].weight, 256);
	t[0] = tgt("192.0.2.1", 80, 0);
	ck_assert_uint_eq(discover_settle(t, 1, 16, false, &cut), 1);
	ck_assert_uint_eq(t[0].weight, 1);
}
END_TEST

START_TEST(format)
{
	struct discover_target a = tgt("192.0.2.1", 8080, 1);
	struct discover_target b = tgt("2001:db8::1", 443, 1);
	struct discover_target c = tgt("::ffff:192.0.2.1", 1, 1);
	char buf[64];

	discover_format(&a.a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "192.0.2.1:8080");
	discover_format(&b.a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "[2001:db8::1]:443");
	discover_format(&c.a, buf, sizeof(buf));
	ck_assert_str_eq(buf, "[::ffff:192.0.2.1]:1");
	/* Cut to the buffer, still terminated. */
	discover_format(&b.a, buf, 6);
	ck_assert_str_eq(buf, "[2001");
}
END_TEST

START_TEST(same)
{
	struct discover_target a = tgt("192.0.2.1", 80, 1), b = tgt("192.0.2.1", 80, 9);

	ck_assert(discover_same(&a.a, &b.a));
	b.a.port = 81;
	ck_assert(!discover_same(&a.a, &b.a));
	b = tgt("::ffff:192.0.2.1", 80, 1);
	ck_assert(!discover_same(&a.a, &b.a));
	b = tgt("2001:db8::1", 80, 1);
	a = tgt("2001:db8::2", 80, 1);
	ck_assert(!discover_same(&a.a, &b.a));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("DNS answers");
	TCase *tc = tcase_create("answers");

	tcase_add_test(tc, a_records);
	tcase_add_test(tc, names_fold_case);
	tcase_add_test(tc, aaaa_records);
	tcase_add_test(tc, address_length_checked);
	tcase_add_test(tc, srv_records);
	tcase_add_test(tc, srv_to_targets);
	tcase_add_test(tc, srv_target_bounded);
	tcase_add_test(tc, broken_additional);
	tcase_add_test(tc, too_many_records);
	tcase_add_test(tc, result_strings);
	suite_add_tcase(s, tc);

	tc = tcase_create("cname");
	tcase_add_test(tc, cname_chain);
	tcase_add_test(tc, cname_nodata);
	tcase_add_test(tc, cname_self);
	tcase_add_test(tc, cname_loop_bounded);
	tcase_add_loop_test(tc, cname_cycle_no_records, 0, 3);
	tcase_add_test(tc, cname_chain_limited);
	suite_add_tcase(s, tc);

	tc = tcase_create("results");
	tcase_add_loop_test(tc, rcode, 0, (int)COUNT(rcodes));
	tcase_add_test(tc, nodata);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_test(tc, truncated);
	tcase_add_test(tc, wrong_question);
	tcase_add_test(tc, bad_pointers);
	tcase_add_loop_test(tc, bad_label_bytes, 0, (int)COUNT(bad_bytes));
	tcase_add_test(tc, long_name);
	tcase_add_test(tc, ttl_top_bit);
	suite_add_tcase(s, tc);

	tc = tcase_create("set");
	tcase_add_test(tc, settle_order);
	tcase_add_test(tc, settle_dedupe);
	tcase_add_test(tc, settle_cut);
	tcase_add_test(tc, settle_stable);
	tcase_add_test(tc, settle_srv_weights);
	tcase_add_test(tc, settle_weight_zero);
	tcase_add_test(tc, format);
	tcase_add_test(tc, same);
	suite_add_tcase(s, tc);

	return unit_run(s, CK_NORMAL);
}
