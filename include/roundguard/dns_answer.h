/*
 * Reading a DNS response (RFC 1035 4.1): the records that answer one
 * question, with their TTLs. Pure and bounded, so it is fuzzed
 * (tests/fuzz/fuzz-dns.c); the checker's resolver (discover.c) hands it what
 * c-ares received.
 */
#ifndef ROUNDGUARD_DNS_ANSWER_H
#define ROUNDGUARD_DNS_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#define DNS_TYPE_A	1
#define DNS_TYPE_CNAME	5
#define DNS_TYPE_AAAA	28
#define DNS_TYPE_SRV	33

#define DNS_NAME_MAX	256	/* 255 octets in dotted form, and the NUL */
/* Records kept per response, as many as a name's slots (CONFIG_DISCOVER_MAX); more are counted. */
#define DNS_ANSWER_MAX	256
#define DNS_CNAME_MAX	8	/* CNAMEs followed from the question's name */

/* How a lookup ended: the result label of roundguard_dns_lookups_total. */
enum dns_result {
	DNS_OK,			/* at least one record of the asked type */
	DNS_NODATA,		/* the name exists, without such records */
	DNS_NXDOMAIN,
	DNS_SERVFAIL,
	DNS_REFUSED,
	DNS_TIMEOUT,		/* no answer from any resolver */
	DNS_MALFORMED,		/* an answer we cannot read (or the wrong one) */
	DNS_ERROR,		/* anything else: no resolver reachable, out of memory, ... */
	DNS_RESULTS,
};

struct dns_record {
	uint16_t type;			/* DNS_TYPE_A, _AAAA or _SRV */
	uint32_t ttl;
	uint8_t addr[16];		/* A: 4 bytes, AAAA: 16 */
	uint16_t priority, weight, port;	/* SRV */
	char name[DNS_NAME_MAX];	/* SRV: the target; A/AAAA from the additional section: the owner */
};

struct dns_answer {
	enum dns_result result;
	struct dns_record rr[DNS_ANSWER_MAX];	/* the answers of the asked type, in order */
	size_t n;
	/* A and AAAA records of the additional section (an SRV answer's targets' addresses). */
	struct dns_record extra[DNS_ANSWER_MAX];
	size_t nextra;
	size_t dropped;			/* records beyond DNS_ANSWER_MAX */
	uint32_t min_ttl;		/* of rr[] (and the CNAMEs followed); 0 when n == 0 */
};

/* "ok", "nodata", "nxdomain", ... */
const char *dns_result_str(enum dns_result r);

/*
 * Parse the response msg to the question (qname, qtype) into out: the records
 * of qtype owned by qname or by the end of its CNAME chain in the answer
 * section. out->result says how it went (the response code, or
 * DNS_MALFORMED for a message that is cut short, loops or answers another
 * question). Names compare without case and without a trailing dot.
 */
void dns_answer_parse(const uint8_t *msg, size_t len, const char *qname, uint16_t qtype,
    struct dns_answer *out);

/* Same name (ASCII case folded, a trailing dot ignored on either side)? */
int dns_name_equal(const char *a, const char *b);

#endif
