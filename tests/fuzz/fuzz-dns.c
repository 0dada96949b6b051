/*
 * libFuzzer harness for reading DNS responses (src/dns_answer.c) and for
 * the set of discovered backends built from them (src/discover_set.c): the
 * health checker hands dns_answer_parse() whatever a resolver (or anybody
 * who can spoof its UDP answers) sent.
 *
 * The input is one response, read as the answer to "api.test" for each of
 * A, AAAA and SRV (and to "API.Test." for the same result: names compare
 * without case and trailing dot). Checked: counts within DNS_ANSWER_MAX; a
 * result in range, and no records unless DNS_OK (at least one then); every
 * kept record of the asked type, with its address length and a TTL below
 * 2^31 that min_ttl does not exceed; every name NUL-terminated, at most 255
 * bytes, printable ASCII without '"' or '\\', in non-empty labels between
 * single dots; the same bytes give the same answer. Then the targets are
 * gathered as the checker does (the answers' addresses; for SRV, the best
 * priority's targets' addresses from the additional section, with their
 * ports and weights) and settled to at most 16: strictly increasing by
 * family, address and port (so no two the same), each one of the gathered
 * targets, weights in 1-256 and in the order of the gathered weights, and
 * the count plus the cut is the number of distinct targets.
 */
#include <string.h>
#include <sys/socket.h>

#include "roundguard/discover.h"
#include "roundguard/dns_answer.h"

#include "fuzz.h"

#define SETTLE_MAX 16

static const char *const qname = "api.test";

static void
check_name(const char *name, const char *what, size_t i)
{
	size_t len = strnlen(name, DNS_NAME_MAX);

	FUZZ_CHECK(len < DNS_NAME_MAX, "%s %zu: name not terminated", what, i);
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)name[k];

		FUZZ_CHECK(c > 0x20 && c < 0x7f && c != '"' && c != '\\',
		    "%s %zu: byte 0x%02x at %zu", what, i, c, k);
		if (c == '.')
			FUZZ_CHECK(k > 0 && k + 1 < len && name[k + 1] != '.',
			    "%s %zu: empty label in \"%s\"", what, i, name);
	}
}

static void
check_record(const struct dns_record *r, uint16_t want_type, const char *what, size_t i)
{
	if (want_type != 0)
		FUZZ_CHECK(r->type == want_type, "%s %zu: type %u, asked %u", what, i, r->type,
		    want_type);
	else
		FUZZ_CHECK(r->type == DNS_TYPE_A || r->type == DNS_TYPE_AAAA, "%s %zu: type %u",
		    what, i, r->type);
	FUZZ_CHECK(r->ttl <= 0x7fffffffu, "%s %zu: TTL %u", what, i, r->ttl);
	if (r->type == DNS_TYPE_A)
		for (size_t k = 4; k < sizeof(r->addr); k++)
			FUZZ_CHECK(r->addr[k] == 0, "%s %zu: A with more than 4 bytes", what, i);
	if (r->type != DNS_TYPE_SRV)
		FUZZ_CHECK(r->priority == 0 && r->weight == 0 && r->port == 0,
		    "%s %zu: SRV fields on an address", what, i);
	check_name(r->name, what, i);
}

static bool
same_record(const struct dns_record *a, const struct dns_record *b)
{
	return a->type == b->type && a->ttl == b->ttl && memcmp(a->addr, b->addr, 16) == 0 &&
	    a->priority == b->priority && a->weight == b->weight && a->port == b->port &&
	    strcmp(a->name, b->name) == 0;
}

static void
check_same_answer(const struct dns_answer *a, const struct dns_answer *b)
{
	FUZZ_CHECK(a->result == b->result && a->n == b->n && a->nextra == b->nextra &&
	    a->dropped == b->dropped && a->min_ttl == b->min_ttl,
	    "same bytes, another answer: %s %zu %zu / %s %zu %zu", dns_result_str(a->result), a->n,
	    a->nextra, dns_result_str(b->result), b->n, b->nextra);
	for (size_t i = 0; i < a->n; i++)
		FUZZ_CHECK(same_record(&a->rr[i], &b->rr[i]), "answer %zu differs", i);
	for (size_t i = 0; i < a->nextra; i++)
		FUZZ_CHECK(same_record(&a->extra[i], &b->extra[i]), "extra %zu differs", i);
}

static void
check_answer(const struct dns_answer *ans, uint16_t qtype)
{
	FUZZ_CHECK(ans->n <= DNS_ANSWER_MAX, "n %zu", ans->n);
	FUZZ_CHECK(ans->nextra <= DNS_ANSWER_MAX, "nextra %zu", ans->nextra);
	FUZZ_CHECK((int)ans->result >= DNS_OK && ans->result < DNS_RESULTS &&
	    ans->result != DNS_TIMEOUT, "result %d", (int)ans->result);
	FUZZ_CHECK(dns_result_str(ans->result) != NULL, "no name for result %d", (int)ans->result);
	FUZZ_CHECK((ans->result == DNS_OK) == (ans->n > 0), "result %s with %zu records",
	    dns_result_str(ans->result), ans->n);
	if (ans->result != DNS_OK && ans->result != DNS_NODATA)
		FUZZ_CHECK(ans->nextra == 0, "%s with %zu extra records",
		    dns_result_str(ans->result), ans->nextra);
	if (ans->n == 0)
		FUZZ_CHECK(ans->min_ttl == 0, "min_ttl %u without records", ans->min_ttl);
	for (size_t i = 0; i < ans->n; i++) {
		check_record(&ans->rr[i], qtype, "answer", i);
		FUZZ_CHECK(ans->min_ttl <= ans->rr[i].ttl, "min_ttl %u above answer %zu's %u",
		    ans->min_ttl, i, ans->rr[i].ttl);
		if (i > 0 && qtype != DNS_TYPE_SRV)
			FUZZ_CHECK(dns_name_equal(ans->rr[i].name, ans->rr[0].name),
			    "answers owned by \"%s\" and \"%s\"", ans->rr[0].name, ans->rr[i].name);
	}
	for (size_t i = 0; i < ans->nextra; i++)
		check_record(&ans->extra[i], 0, "extra", i);
}

/* The checker's way from one answer to its targets (discover.c), then the settled set. */
static void
check_targets(const struct dns_answer *ans, uint16_t qtype)
{
	static struct discover_target t[DISCOVER_TARGETS_MAX], in[DISCOVER_TARGETS_MAX];
	size_t n = 0, distinct = 0, k, cut = 0;
	uint32_t top = 0;
	bool srv = qtype == DNS_TYPE_SRV;

	if (ans->result != DNS_OK)
		return;
	if (srv) {
		uint16_t prio = discover_srv_priority(ans);

		for (size_t i = 0; i < ans->n; i++)
			FUZZ_CHECK(ans->rr[i].priority >= prio, "priority %u below the best %u",
			    ans->rr[i].priority, prio);
		for (size_t i = 0; i < ans->n; i++) {
			const struct dns_record *s = &ans->rr[i];
			size_t before = n;

			if (s->priority != prio || s->name[0] == '\0' || s->port == 0)
				continue;
			discover_add_addresses(t, &n, DISCOVER_TARGETS_MAX, ans, s->name, s->port,
			    s->weight);
			FUZZ_CHECK(n >= before && n <= DISCOVER_TARGETS_MAX, "%zu targets", n);
			for (size_t j = before; j < n; j++)
				FUZZ_CHECK(t[j].a.port == s->port && t[j].weight == s->weight,
				    "target %zu: port %u weight %u, SRV %u %u", j, t[j].a.port,
				    t[j].weight, s->port, s->weight);
		}
	} else {
		discover_add_addresses(t, &n, DISCOVER_TARGETS_MAX, ans, NULL, 8080, 1);
		FUZZ_CHECK(n == ans->n, "%zu addresses of %zu records", n, ans->n);
	}
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(t[i].a.family == AF_INET || t[i].a.family == AF_INET6, "target %zu: family %u",
		    i, t[i].a.family);
		if (t[i].a.family == AF_INET)
			for (size_t b = 4; b < sizeof(t[i].a.bytes); b++)
				FUZZ_CHECK(t[i].a.bytes[b] == 0, "target %zu: IPv4 with more bytes", i);
		if (t[i].weight > top)
			top = t[i].weight;
	}
	memcpy(in, t, n * sizeof(*t));
	for (size_t i = 0; i < n; i++) {
		size_t j;

		for (j = 0; j < i && !discover_same(&in[j].a, &in[i].a); j++)
			;
		if (j == i)
			distinct++;
	}

	k = discover_settle(t, n, SETTLE_MAX, true, &cut);
	FUZZ_CHECK(k <= SETTLE_MAX && k <= n, "settled %zu of %zu", k, n);
	FUZZ_CHECK(k + cut == distinct, "settled %zu + cut %zu, %zu distinct", k, cut, distinct);
	for (size_t i = 0; i < k; i++) {
		char name[64];
		uint32_t wmax = 0;
		size_t j;

		FUZZ_CHECK(t[i].weight >= 1 && t[i].weight <= 256, "weight %u", t[i].weight);
		if (i > 0) {
			FUZZ_CHECK(discover_target_cmp(&t[i - 1], &t[i]) < 0,
			    "targets %zu and %zu out of order", i - 1, i);
			FUZZ_CHECK(!discover_same(&t[i - 1].a, &t[i].a), "targets %zu and %zu the same",
			    i - 1, i);
		}
		/* One of the gathered targets, with the largest weight it had there, scaled. */
		for (j = 0; j < n; j++) {
			if (!discover_same(&in[j].a, &t[i].a))
				continue;
			if (in[j].weight > wmax)
				wmax = in[j].weight;
		}
		for (j = 0; j < n && !discover_same(&in[j].a, &t[i].a); j++)
			;
		FUZZ_CHECK(j < n, "settled target %zu was not gathered", i);
		if (top <= 256)
			FUZZ_CHECK(t[i].weight == (wmax < 1 ? 1 : wmax), "weight %u, gathered %u",
			    t[i].weight, wmax);
		discover_format(&t[i].a, name, sizeof(name));
		FUZZ_CHECK(name[0] != '\0' && strlen(name) < sizeof(name) - 1, "formatted \"%s\"", name);
		if (srv) {
			/* Scaling keeps the order of the weights. */
			for (size_t m = 0; m < i; m++) {
				uint32_t wm = 0;

				for (j = 0; j < n; j++)
					if (discover_same(&in[j].a, &t[m].a) && in[j].weight > wm)
						wm = in[j].weight;
				if (wm < wmax)
					FUZZ_CHECK(t[m].weight <= t[i].weight, "weights %u < %u scaled to %u > %u",
					    wm, wmax, t[m].weight, t[i].weight);
				else if (wm > wmax)
					FUZZ_CHECK(t[m].weight >= t[i].weight, "weights %u > %u scaled to %u < %u",
					    wm, wmax, t[m].weight, t[i].weight);
			}
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_SRV };
	static struct dns_answer ans, again;

	if (size > 65535)		/* a DNS message over TCP at most */
		return 0;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		dns_answer_parse(data, size, qname, types[i], &ans);
		check_answer(&ans, types[i]);
		dns_answer_parse(data, size, "API.Test.", types[i], &again);
		check_same_answer(&ans, &again);
		check_targets(&ans, types[i]);
	}
	return 0;
}
