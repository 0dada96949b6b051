/*
 * libFuzzer harness for the PROXY protocol header parser (src/proxyproto.c),
 * which reads the first bytes of every connection on a listener with
 * "proxy_protocol": the L4 layer's, or anybody's who reaches that port.
 *
 * Checked: a header's length is within what was given and within the
 * limits (107 bytes for v1, 4096 for v2), and the same bytes with anything
 * after them give the same header (the parser never looks past it); "more,
 * please" only while fewer than 4096 bytes came and every prefix is also
 * "more, please"; a refusal says why and stays a refusal with more bytes
 * after it; a PROXY header's addresses are IPv4 or IPv6, the same family
 * both; built again with proxyproto_build_v2() from its addresses, a header
 * parses back to the same addresses.
 */
#include <netinet/in.h>
#include <string.h>

#include "roundguard/proxyproto.h"

#include "fuzz.h"

static bool
same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return memcmp(a, b, sizeof(struct sockaddr_in)) == 0;
	return memcmp(a, b, sizeof(struct sockaddr_in6)) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t more[PROXYPROTO_MAX + 64];
	struct proxyproto_header h, h2;
	const char *why = NULL, *why2 = NULL;
	int rc, rc2;

	if (size > PROXYPROTO_MAX + 32)
		return 0;
	rc = proxyproto_parse(data, size, &h, &why);
	FUZZ_CHECK(rc >= -1, "rc %d", rc);
	memcpy(more, data, size);
	memset(more + size, 'G', sizeof(more) - size);
	rc2 = proxyproto_parse(more, size + 32, &h2, &why2);
	if (rc == -1) {
		FUZZ_CHECK(why != NULL && why[0] != '\0', "refused without a reason");
		FUZZ_CHECK(rc2 == -1, "refused, then %d with more bytes", rc2);
		return 0;
	}
	if (rc == 0) {
		FUZZ_CHECK(size < PROXYPROTO_MAX, "still waiting after %zu bytes", size);
		for (size_t k = 0; k < size; k++)
			FUZZ_CHECK(proxyproto_parse(data, k, &h2, &why2) == 0,
			    "prefix of %zu bytes decided, the whole %zu did not", k, size);
		return 0;
	}
	FUZZ_CHECK((size_t)rc <= size && (size_t)rc == h.len, "length %d of %zu", rc, size);
	FUZZ_CHECK(h.version == 1 || h.version == 2, "version %d", h.version);
	FUZZ_CHECK(h.version == 2 || rc <= PROXYPROTO_V1_MAX, "v1 of %d bytes", rc);
	FUZZ_CHECK(rc <= PROXYPROTO_MAX, "%d bytes", rc);
	FUZZ_CHECK(rc2 == rc && h2.kind == h.kind && h2.version == h.version,
	    "bytes after the header changed it");
	if (h.kind != PROXYPROTO_PROXY)
		return 0;
	FUZZ_CHECK((h.src.ss_family == AF_INET || h.src.ss_family == AF_INET6) &&
	    h.src.ss_family == h.dst.ss_family, "families %d %d", h.src.ss_family,
	    h.dst.ss_family);
	FUZZ_CHECK(same_addr(&h.src, &h2.src) && same_addr(&h.dst, &h2.dst), "addresses differ");
	{
		uint8_t built[PROXYPROTO_V2_BUILD_MAX];
		size_t n = proxyproto_build_v2(built, sizeof(built), (struct sockaddr *)&h.src,
		    (struct sockaddr *)&h.dst);
		struct proxyproto_header h3;

		FUZZ_CHECK(proxyproto_parse(built, n, &h3, &why2) == (int)n, "built header refused");
		/* A v4-mapped IPv6 address is built as IPv4: compare only the others. */
		if (h3.src.ss_family == h.src.ss_family)
			FUZZ_CHECK(h3.kind == PROXYPROTO_PROXY && same_addr(&h3.src, &h.src) &&
			    same_addr(&h3.dst, &h.dst), "built again, the addresses differ");
	}
	return 0;
}
