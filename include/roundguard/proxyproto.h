/*
 * The PROXY protocol (HAProxy's, versions 1 and 2): the header an L4 load
 * balancer in front puts ahead of a connection's first byte to say whose it
 * is, and the version 2 header roundguardd sends to backends that want one.
 * Pure: no I/O, no allocation; fuzzed (tests/fuzz/fuzz-proxyproto.c).
 */
#ifndef ROUNDGUARD_PROXYPROTO_H
#define ROUNDGUARD_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* v1: 107 bytes at most, CRLF included (the specification's limit). */
#define PROXYPROTO_V1_MAX	107
/* v2: 16 bytes and what they announce; with TLVs it may be long, but not longer than this. */
#define PROXYPROTO_MAX		4096
/* What proxyproto_build_v2() writes at most: 16 bytes and two IPv6 addresses and ports. */
#define PROXYPROTO_V2_BUILD_MAX	(16 + 36)
/* Source networks a listener takes PROXY headers from. */
#define PROXYPROTO_FROM_MAX	32

enum proxyproto_kind {
	PROXYPROTO_PROXY,	/* addresses relayed: src is the client */
	PROXYPROTO_LOCAL,	/* v2 LOCAL: the L4 layer itself (its health checks) */
	PROXYPROTO_UNKNOWN,	/* v1 UNKNOWN, v2 UNSPEC, UNIX or DGRAM: keep the connection's */
};

struct proxyproto_header {
	int version;			/* 1 or 2 */
	enum proxyproto_kind kind;
	struct sockaddr_storage src;	/* PROXYPROTO_PROXY: the client, with its port */
	struct sockaddr_storage dst;	/* and the address it connected to */
	size_t len;			/* bytes the header takes on the wire */
};

/*
 * Parse the header at the start of buf (len bytes so far). Returns its
 * length (> 0, h filled), 0 when more bytes are needed (every byte so far can
 * start a valid header, and fewer than PROXYPROTO_MAX arrived), or -1 when it
 * is not one (*why says how, in a few words).
 */
int proxyproto_parse(const void *buf, size_t len, struct proxyproto_header *h, const char **why);

/*
 * A v2 PROXY header for a connection from src to dst (both AF_INET or both
 * AF_INET6; a v4-mapped IPv6 address counts as IPv4), into out (cap bytes,
 * at least PROXYPROTO_V2_BUILD_MAX). Other families give a LOCAL header.
 * Returns its length.
 */
size_t proxyproto_build_v2(void *out, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst);

/* A network: "10.0.0.0/8", "::1/128", or an address alone (all its bits). */
struct proxyproto_cidr {
	uint8_t family;		/* AF_INET or AF_INET6 */
	uint8_t bits;
	uint8_t addr[16];
};

/* Parse s into c: 0, or -1 with *why set. */
int proxyproto_cidr_parse(const char *s, struct proxyproto_cidr *c, const char **why);

/* Whether sa (a v4-mapped IPv6 address counts as IPv4) is in one of the n networks. */
bool proxyproto_cidr_match(const struct proxyproto_cidr *c, size_t n, const struct sockaddr *sa);

#endif
