/* Turning DNS answers into the set of discovered backends (pure; see discover.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "roundguard/config-t.h"
#include "roundguard/discover.h"

void
discover_format(const struct net_addr *a, char *buf, size_t buflen)
{
	char ip[NET_ADDR_STRLEN];

	net_addr_format(a, ip, sizeof(ip));
	snprintf(buf, buflen, a->family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, (unsigned)a->port);
}

void
discover_set_backend(struct config_backend *be, const struct net_addr *a)
{
	be->salen = net_addr_sockaddr(a, &be->sa);
	discover_format(a, be->addr.hostport, sizeof(be->addr.hostport));
}

bool
discover_same(const struct net_addr *a, const struct net_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	    memcmp(a->bytes, b->bytes, a->family == AF_INET ? 4 : 16) == 0;
}

void
discover_add_addresses(struct discover_target *t, size_t *n, size_t cap,
    const struct dns_answer *ans, const char *owner, uint16_t port, uint32_t weight)
{
	const struct dns_record *rr = owner != NULL ? ans->extra : ans->rr;
	size_t nrr = owner != NULL ? ans->nextra : ans->n;

	for (size_t i = 0; i < nrr && *n < cap; i++) {
		struct discover_target *d = &t[*n];

		if (rr[i].type != DNS_TYPE_A && rr[i].type != DNS_TYPE_AAAA)
			continue;
		if (owner != NULL && !dns_name_equal(rr[i].name, owner))
			continue;
		memset(d, 0, sizeof(*d));
		d->a.family = rr[i].type == DNS_TYPE_A ? AF_INET : AF_INET6;
		memcpy(d->a.bytes, rr[i].addr, rr[i].type == DNS_TYPE_A ? 4 : 16);
		d->a.port = port;
		d->weight = weight;
		(*n)++;
	}
}

uint16_t
discover_srv_priority(const struct dns_answer *ans)
{
	uint16_t best = UINT16_MAX;

	for (size_t i = 0; i < ans->n; i++)
		if (ans->rr[i].type == DNS_TYPE_SRV && ans->rr[i].priority < best)
			best = ans->rr[i].priority;
	return best;
}

int
discover_target_cmp(const struct discover_target *a, const struct discover_target *b)
{
	int c;

	if (a->a.family != b->a.family)
		return a->a.family < b->a.family ? -1 : 1;
	if ((c = memcmp(a->a.bytes, b->a.bytes, sizeof(a->a.bytes))) != 0)
		return c;
	return a->a.port < b->a.port ? -1 : a->a.port > b->a.port;
}

static int
target_cmp(const void *x, const void *y)
{
	return discover_target_cmp(x, y);
}

size_t
discover_settle(struct discover_target *t, size_t n, size_t max, bool srv_weights, size_t *cut)
{
	uint32_t top = 0;
	size_t k = 0;

	if (n > 1)
		qsort(t, n, sizeof(*t), target_cmp);
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && discover_same(&t[k - 1].a, &t[i].a)) {
			if (t[i].weight > t[k - 1].weight)
				t[k - 1].weight = t[i].weight;
			continue;
		}
		t[k++] = t[i];
	}
	*cut = k > max ? k - max : 0;
	if (k > max)
		k = max;
	for (size_t i = 0; i < k; i++)
		if (t[i].weight > top)
			top = t[i].weight;
	for (size_t i = 0; i < k; i++) {
		uint32_t w = t[i].weight;

		/*
		 * SRV weights run to 65535 and ours to 256: above 256 scale them
		 * all down alike. Weight 0 ("rarely, if ever") still gets 1, as
		 * HAProxy does: a weight of 0 here would mean drained.
		 */
		if (srv_weights && top > 256)
			w = (uint32_t)(((uint64_t)w * 256 + top / 2) / top);
		t[i].weight = w < 1 ? 1 : w > 256 ? 256 : w;
	}
	return k;
}
