/* Reading a DNS response: the records that answer one question (see dns_answer.h). */
#include <string.h>

#include "roundguard/dns_answer.h"

#define DNS_HEADER	12
#define DNS_CLASS_IN	1
#define DNS_POINTERS_MAX	32	/* compression pointers followed in one name */

/* Response codes (RFC 1035 4.1.1). */
#define RCODE_NOERROR	0
#define RCODE_SERVFAIL	2
#define RCODE_NXDOMAIN	3
#define RCODE_REFUSED	5

const char *
dns_result_str(enum dns_result r)
{
	switch (r) {
	case DNS_OK: return "ok";
	case DNS_NODATA: return "nodata";
	case DNS_NXDOMAIN: return "nxdomain";
	case DNS_SERVFAIL: return "servfail";
	case DNS_REFUSED: return "refused";
	case DNS_TIMEOUT: return "timeout";
	case DNS_MALFORMED: return "malformed";
	case DNS_ERROR: break;
	case DNS_RESULTS: break;
	}
	return "error";
}

static char
fold(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

int
dns_name_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	if (la != lb)
		return 0;
	for (size_t i = 0; i < la; i++)
		if (fold(a[i]) != fold(b[i]))
			return 0;
	return 1;
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * The (possibly compressed) name at *off into out, dotted, without the root's
 * dot; *off moves past it in place. Pointers must point backwards, so a
 * crafted message cannot loop. Labels with a dot, a NUL or a byte outside
 * printable ASCII are refused: names end up in logs and metric labels.
 */
static int
read_name(const uint8_t *msg, size_t len, size_t *off, char out[DNS_NAME_MAX])
{
	size_t pos = *off, o = 0, limit = *off;
	int jumps = 0;
	int jumped = 0;

	for (;;) {
		uint8_t l;

		if (pos >= len)
			return -1;
		l = msg[pos];
		if ((l & 0xc0) == 0xc0) {
			size_t to;

			if (pos + 1 >= len || ++jumps > DNS_POINTERS_MAX)
				return -1;
			to = (size_t)(l & 0x3f) << 8 | msg[pos + 1];
			if (!jumped)
				*off = pos + 2;
			jumped = 1;
			if (to >= limit)
				return -1;	/* forwards or onto itself: a loop in the making */
			limit = to;
			pos = to;
			continue;
		}
		if ((l & 0xc0) != 0)
			return -1;	/* 0x40 and 0x80: extended label types, obsolete */
		pos++;
		if (l == 0)
			break;
		if (pos + l > len || o + l + 1 >= DNS_NAME_MAX)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (uint8_t i = 0; i < l; i++) {
			uint8_t c = msg[pos + i];

			if (c <= 0x20 || c >= 0x7f || c == '.' || c == '"' || c == '\\')
				return -1;
			out[o++] = (char)c;
		}
		pos += l;
	}
	out[o] = '\0';
	if (!jumped)
		*off = pos;
	return 0;
}

/* One resource record's fixed part, after its owner name. */
struct rr_head {
	char owner[DNS_NAME_MAX];
	uint16_t type, class;
	uint32_t ttl;
	size_t rdata, rdlen;
};

static int
read_rr(const uint8_t *msg, size_t len, size_t *off, struct rr_head *rr)
{
	if (read_name(msg, len, off, rr->owner) == -1 || *off + 10 > len)
		return -1;
	rr->type = get16(msg + *off);
	rr->class = get16(msg + *off + 2);
	rr->ttl = get32(msg + *off + 4);
	if (rr->ttl > 0x7fffffffu)
		rr->ttl = 0;		/* RFC 2181 8: a TTL with the top bit set means zero */
	rr->rdlen = get16(msg + *off + 8);
	rr->rdata = *off + 10;
	if (rr->rdata + rr->rdlen > len)
		return -1;
	*off = rr->rdata + rr->rdlen;
	return 0;
}

/* An A, AAAA or SRV record's data into r; -1 if its length is wrong. */
static int
read_rdata(const uint8_t *msg, size_t len, const struct rr_head *rr, struct dns_record *r)
{
	size_t off = rr->rdata;

	memset(r, 0, sizeof(*r));
	r->type = rr->type;
	r->ttl = rr->ttl;
	switch (rr->type) {
	case DNS_TYPE_A:
	case DNS_TYPE_AAAA:
		if (rr->rdlen != (rr->type == DNS_TYPE_A ? 4u : 16u))
			return -1;
		memcpy(r->addr, msg + off, rr->rdlen);
		strlcpy(r->name, rr->owner, sizeof(r->name));
		return 0;
	case DNS_TYPE_SRV:
		if (rr->rdlen < 7)
			return -1;
		r->priority = get16(msg + off);
		r->weight = get16(msg + off + 2);
		r->port = get16(msg + off + 4);
		off += 6;
		/* The target must end inside this record's data. */
		if (read_name(msg, rr->rdata + rr->rdlen, &off, r->name) == -1 ||
		    off != rr->rdata + rr->rdlen)
			return -1;
		return 0;
	default:
		return -1;
	}
}

static void
fail(struct dns_answer *out, enum dns_result r)
{
	out->result = r;
	out->n = out->nextra = 0;
	out->min_ttl = 0;
}

void
dns_answer_parse(const uint8_t *msg, size_t len, const char *qname, uint16_t qtype,
    struct dns_answer *out)
{
	char name[DNS_NAME_MAX], target[DNS_NAME_MAX];
	char chain[DNS_CNAME_MAX + 1][DNS_NAME_MAX];	/* qname and the names met since */
	size_t off = DNS_HEADER, answers_at;
	uint16_t qd, an, ns, ar, flags;
	struct rr_head rr;
	uint32_t min_ttl = UINT32_MAX;

	memset(out, 0, sizeof(*out));
	if (len < DNS_HEADER)
		return fail(out, DNS_MALFORMED);
	flags = get16(msg + 2);
	qd = get16(msg + 4);
	an = get16(msg + 6);
	ns = get16(msg + 8);
	ar = get16(msg + 10);
	if (!(flags & 0x8000) || qd != 1)
		return fail(out, DNS_MALFORMED);	/* not a response, or not to one question */
	switch (flags & 0xf) {
	case RCODE_NOERROR: break;
	case RCODE_NXDOMAIN: return fail(out, DNS_NXDOMAIN);
	case RCODE_SERVFAIL: return fail(out, DNS_SERVFAIL);
	case RCODE_REFUSED: return fail(out, DNS_REFUSED);
	default: return fail(out, DNS_ERROR);
	}
	/* The question must be ours. */
	if (read_name(msg, len, &off, name) == -1 || off + 4 > len || !dns_name_equal(name, qname) ||
	    get16(msg + off) != qtype)
		return fail(out, DNS_MALFORMED);
	off += 4;
	answers_at = off;

	/*
	 * The CNAME chain from qname, within the answer section: at most
	 * DNS_CNAME_MAX links, and a name met twice is a loop. Either makes the
	 * answer unusable, rather than taking the records of wherever the walk
	 * happened to stop.
	 */
	strlcpy(target, qname, sizeof(target));
	strlcpy(chain[0], qname, sizeof(chain[0]));
	for (int hops = 0;; hops++) {
		int moved = 0;

		off = answers_at;
		for (uint16_t i = 0; i < an; i++) {
			size_t data;

			if (read_rr(msg, len, &off, &rr) == -1)
				return fail(out, DNS_MALFORMED);
			if (rr.type != DNS_TYPE_CNAME || rr.class != DNS_CLASS_IN ||
			    !dns_name_equal(rr.owner, target))
				continue;
			data = rr.rdata;
			if (read_name(msg, rr.rdata + rr.rdlen, &data, name) == -1)
				return fail(out, DNS_MALFORMED);
			for (int k = 0; k <= hops; k++)
				if (dns_name_equal(name, chain[k]))
					return fail(out, DNS_MALFORMED);
			if (hops + 1 > DNS_CNAME_MAX)
				return fail(out, DNS_MALFORMED);	/* too long a chain */
			strlcpy(target, name, sizeof(target));
			strlcpy(chain[hops + 1], name, sizeof(chain[hops + 1]));
			if (rr.ttl < min_ttl)
				min_ttl = rr.ttl;
			moved = 1;
			break;
		}
		if (!moved)
			break;
	}

	off = answers_at;
	for (uint16_t i = 0; i < an; i++) {
		if (read_rr(msg, len, &off, &rr) == -1)
			return fail(out, DNS_MALFORMED);
		if (rr.type != qtype || rr.class != DNS_CLASS_IN || !dns_name_equal(rr.owner, target))
			continue;
		if (out->n == DNS_ANSWER_MAX) {
			out->dropped++;
			continue;
		}
		if (read_rdata(msg, len, &rr, &out->rr[out->n]) == -1)
			return fail(out, DNS_MALFORMED);
		if (rr.ttl < min_ttl)
			min_ttl = rr.ttl;
		out->n++;
	}
	/* Authority records are skipped; additional A/AAAA records are kept for SRV targets. */
	for (uint32_t i = 0; i < (uint32_t)ns + ar; i++) {
		if (read_rr(msg, len, &off, &rr) == -1) {
			/* A broken additional section costs only the extras (the answers stand). */
			out->nextra = 0;
			break;
		}
		if (i < ns || rr.class != DNS_CLASS_IN ||
		    (rr.type != DNS_TYPE_A && rr.type != DNS_TYPE_AAAA))
			continue;
		if (out->nextra == DNS_ANSWER_MAX) {
			out->dropped++;
			continue;
		}
		if (read_rdata(msg, len, &rr, &out->extra[out->nextra]) == 0)
			out->nextra++;
	}
	out->result = out->n > 0 ? DNS_OK : DNS_NODATA;
	out->min_ttl = out->n > 0 ? min_ttl : 0;
}
