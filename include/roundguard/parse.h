/* Pure parsers for the values users type: durations, sizes, backend URLs, listen addresses. */
#ifndef ROUNDGUARD_PARSE_H
#define ROUNDGUARD_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest host name (RFC 1035) plus room for an IPv6 literal with zone. */
#define PARSE_HOST_MAX 256
#define PARSE_PREFIX_MAX 1024

/*
 * Go duration syntax: a sequence of decimal numbers, each with an optional
 * fraction and a unit: "300ms", "1.5s", "2m", "1h30m"; units ns, us, µs, ms,
 * s, m, h. "0" alone is allowed without unit. Empty, negative, unit-less (other
 * than "0"), unknown units and values over INT64_MAX ns are rejected. Result in
 * nanoseconds. 0 on success, -1 with a message in err ("\"5x\": unknown unit
 * \"x\" (use ns, us, ms, s, m, h)").
 */
int parse_duration(const char *s, int64_t *ns, char *err, size_t errlen);

/*
 * Sizes: a non-negative integer with an optional unit: B, KiB, MiB, GiB, TiB
 * (powers of 1024) or KB, MB, GB, TB (powers of 1000, as SI says); units are
 * case-insensitive ("64kib" works). Bare "k"/"m"/"g" are rejected as ambiguous.
 * Overflow and fractions are rejected.
 */
int parse_size(const char *s, uint64_t *bytes, char *err, size_t errlen);

/*
 * Format ns as a short Go-style duration, as Go's Duration.String(): "4m12s",
 * "1.5s", "250ms", "0s", "1h30m0s", "-1.5s"; under 1 ms it uses "µs" (UTF-8).
 * 32 bytes always suffice; a smaller buffer gets a cut, NUL-terminated result.
 */
void format_duration(char *buf, size_t buflen, int64_t ns);

struct backend_url {
	char host[PARSE_HOST_MAX];	/* name or address, IPv6 without brackets */
	uint16_t port;			/* 80 (443 for https) when the URL names none */
	int is_ipv6;			/* host is an IPv6 literal */
	int tls;			/* "https://": TLS to the backend */
	char prefix[PARSE_PREFIX_MAX];	/* path prefix without trailing '/', "" if none */
	char hostport[PARSE_HOST_MAX + 8]; /* "host:port" or "[v6]:port", as shown to users */
};

/*
 * "http://host[:port][/prefix]" or "https://..." with an IPv4 address, a
 * bracketed IPv6 address or a host name. Other schemes, userinfo ("user@"), a missing host, port 0 or
 * over 65535, a non-numeric port, a query or a fragment are rejected.
 */
int parse_backend_url(const char *s, struct backend_url *out, char *err, size_t errlen);

struct listen_addr {
	char host[PARSE_HOST_MAX];	/* "" means all addresses */
	uint16_t port;
	int is_ipv6;
};

/* "host:port", ":port", "*:port", "[::1]:port" or a bare "port". */
int parse_listen_addr(const char *s, struct listen_addr *out, char *err, size_t errlen);

/*
 * The -l/--listen flag: an address alone ("127.0.0.1", "::1", "[::1]", "*")
 * listens on default_port; with a port ("127.0.0.1:8080", "[::1]:8080",
 * ":8080") it is parse_listen_addr().
 */
int parse_listen_flag(const char *s, uint16_t default_port, struct listen_addr *out,
    char *err, size_t errlen);

/* Port number 1-65535 from a decimal string. */
int parse_port(const char *s, uint16_t *port, char *err, size_t errlen);

/*
 * n bytes of s quoted for a message, into buf (PARSE_QUOTE_BUF(show) bytes):
 * at most show of them, then "..."; '"' and '\\' escaped, control bytes (and
 * with ascii_only every byte above 0x7e) as \\xNN, so the message stays one
 * line. Returns buf.
 */
#define PARSE_QUOTE_BUF(show) ((show) * 4 + 8)
const char *parse_quote(char *buf, size_t show, const char *s, size_t n, bool ascii_only);

#endif
