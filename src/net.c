/* Socket helpers: listening sockets, non-blocking connects, address formatting. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "roundguard/net.h"
#include "roundguard/parse.h"

/* The kernel clamps this to net.core.somaxconn. */
#define NET_BACKLOG 4096
#define NET_READ_CHUNK 16384
#define NET_READS_MAX 4	/* per readiness, then other sockets get a turn */

static int
listen_on(const struct sockaddr *sa, socklen_t salen, bool reuseport, bool v6only_off,
    char *err, size_t errlen, const char *shown)
{
	int one = 1, zero = 0;
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd == -1) {
		snprintf(err, errlen, "socket for %s: %s", shown, strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) ||
	    (v6only_off && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) == -1)) {
		snprintf(err, errlen, "setsockopt on %s: %s", shown, strerror(errno));
		goto fail;
	}
	if (bind(fd, sa, salen) == -1) {
		snprintf(err, errlen, "bind %s: %s", shown, strerror(errno));
		goto fail;
	}
	if (listen(fd, NET_BACKLOG) == -1) {
		snprintf(err, errlen, "listen on %s: %s", shown, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int
net_listen(const struct listen_addr *la, bool reuseport, char *err, size_t errlen)
{
	char shown[PARSE_HOST_MAX + 16];
	char port[8];
	struct addrinfo hints, *res = NULL;
	int fd, rc;

	if (la->host[0] == '\0') {
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(la->port),
		    .sin6_addr = IN6ADDR_ANY_INIT };
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(la->port),
		    .sin_addr.s_addr = htonl(INADDR_ANY) };

		snprintf(shown, sizeof(shown), "[::]:%u", la->port);
		fd = listen_on((struct sockaddr *)&sin6, sizeof(sin6), reuseport, true,
		    err, errlen, shown);
		if (fd != -1 || (errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL))
			return fd;
		/* No IPv6 on this host: fall back to every IPv4 address. */
		snprintf(shown, sizeof(shown), "0.0.0.0:%u", la->port);
		return listen_on((struct sockaddr *)&sin, sizeof(sin), reuseport, false,
		    err, errlen, shown);
	}

	snprintf(shown, sizeof(shown), la->is_ipv6 ? "[%s]:%u" : "%s:%u", la->host, la->port);
	snprintf(port, sizeof(port), "%u", la->port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(la->host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "resolve %s: %s", shown, gai_strerror(rc));
		return -1;
	}
	fd = listen_on(res->ai_addr, res->ai_addrlen, reuseport, false, err, errlen, shown);
	freeaddrinfo(res);
	return fd;
}

void
net_format_ip(char *buf, size_t buflen, const struct sockaddr *sa)
{
	const void *addr;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		/* A v4 client on a dual-stack socket reads as ::ffff:a.b.c.d; show a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			addr = &s6->sin6_addr.s6_addr[12];
		else
			addr = &s6->sin6_addr;
		if (inet_ntop(IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) ? AF_INET : AF_INET6,
		    addr, buf, buflen) == NULL)
			snprintf(buf, buflen, "?");
	} else if (sa->sa_family == AF_INET) {
		addr = &((const struct sockaddr_in *)sa)->sin_addr;
		if (inet_ntop(AF_INET, addr, buf, buflen) == NULL)
			snprintf(buf, buflen, "?");
	} else {
		snprintf(buf, buflen, "unix");
	}
}

void
net_addr_set(struct net_addr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			a->family = AF_INET;
			memcpy(a->bytes, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			a->family = AF_INET6;
			memcpy(a->bytes, &s6->sin6_addr, 16);
		}
		a->port = ntohs(s6->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		a->family = AF_INET;
		memcpy(a->bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		a->port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	}
}

socklen_t
net_addr_sockaddr(const struct net_addr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->bytes, 4);
		return sizeof(*in);
	}
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		memcpy(&in6->sin6_addr, a->bytes, 16);
		return sizeof(*in6);
	}
	return 0;
}

/*
 * IPv4 by hand: this runs for every proxied request (X-Forwarded-For), and
 * inet_ntop() costs several times as much.
 */
const char *
net_addr_format(const struct net_addr *a, char *buf, size_t buflen)
{
	if (a->family == AF_INET && buflen >= 16) {
		char *p = buf;

		for (int i = 0; i < 4; i++) {
			unsigned v = a->bytes[i];

			if (v >= 100)
				*p++ = (char)('0' + v / 100);
			if (v >= 10)
				*p++ = (char)('0' + v / 10 % 10);
			*p++ = (char)('0' + v % 10);
			*p++ = i < 3 ? '.' : '\0';
		}
		return buf;
	}
	if (a->family == AF_INET6 && inet_ntop(AF_INET6, a->bytes, buf, (socklen_t)buflen) != NULL)
		return buf;
	snprintf(buf, buflen, a->family == 0 ? "unix" : "?");
	return buf;
}

void
net_format_sockaddr(char *buf, size_t buflen, const struct sockaddr *sa)
{
	char ip[INET6_ADDRSTRLEN];
	unsigned port = 0;
	bool v6 = false;

	net_format_ip(ip, sizeof(ip), sa);
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		port = ntohs(s6->sin6_port);
		v6 = !IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr);
	} else if (sa->sa_family == AF_INET) {
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	}
	snprintf(buf, buflen, v6 ? "[%s]:%u" : "%s:%u", ip, port);
}

void
net_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int
net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char portstr[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%u", port);
	if ((rc = getaddrinfo(host, portstr, &hints, &res)) != 0) {
		snprintf(err, errlen, "\"%s\": cannot resolve: %s", host, gai_strerror(rc));
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/*
 * The plain-socket transport: the data path's only recv() and send(). A TLS
 * transport replaces these two (and net_write()'s writev()).
 */
static ssize_t
net_recv_some(int fd, void *buf, size_t len)
{
	return recv(fd, buf, len, 0);
}

/* MSG_DONTWAIT: the socket is non-blocking anyway; MSG_NOSIGNAL: EPIPE, never SIGPIPE. */
static ssize_t
net_send_some(int fd, const void *buf, size_t len)
{
	return send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * A read into an empty evbuffer goes through this buffer and is copied in:
 * evbuffer_reserve_space() of NET_READ_CHUNK on an empty evbuffer is a
 * 16 KiB malloc (and free once drained) per read, while a copied small
 * request or answer gets a chain from malloc's per-thread cache. Reads into
 * a buffer that already holds data (a body streaming in) go straight in.
 */
static char read_scratch[NET_READ_CHUNK];

/*
 * One read of fd into buf. With a socket to relay to (not -1) and buf (what
 * waits for it) empty, the bytes are sent on from the scratch buffer, and
 * only what to does not take is added to buf. A failed send leaves the bytes
 * in buf as well: the caller's next write of buf meets the error.
 */
static int
read_into(int fd, int to, struct evbuffer *buf, ssize_t *got)
{
	struct evbuffer_iovec v;
	ssize_t sent = 0;

	if (evbuffer_get_length(buf) == 0) {
		*got = net_recv_some(fd, read_scratch, sizeof(read_scratch));
		if (*got <= 0)
			return *got == 0 ? 0 : (errno == EAGAIN || errno == EINTR ? 1 : -1);
		if (to != -1 && (sent = net_send_some(to, read_scratch, (size_t)*got)) < 0)
			sent = 0;
		if (sent == *got)
			return 1;
		return evbuffer_add(buf, read_scratch + sent, (size_t)(*got - sent)) == 0 ? 1 : -1;
	}
	if (evbuffer_reserve_space(buf, NET_READ_CHUNK, &v, 1) < 1)
		return -1;
	*got = net_recv_some(fd, v.iov_base, v.iov_len);
	if (*got <= 0) {
		v.iov_len = 0;
		evbuffer_commit_space(buf, &v, 1);
		return *got == 0 ? 0 : (errno == EAGAIN || errno == EINTR ? 1 : -1);
	}
	v.iov_len = (size_t)*got;
	evbuffer_commit_space(buf, &v, 1);
	return 1;
}

/* net_read() and net_relay(): to is -1 for a plain read. */
static int
read_some(int fd, int to, struct evbuffer *buf, bool closing, bool *more, size_t *total)
{
	ssize_t got;
	int rc;

	*more = false;
	*total = 0;
	for (int i = 0; i < NET_READS_MAX; i++) {
		if ((rc = read_into(fd, to, buf, &got)) != 1)
			return rc;
		if (got <= 0)
			return 1;
		*total += (size_t)got;
		if (got < NET_READ_CHUNK && !closing)
			return 1;
	}
	*more = true;
	return 1;
}

/* See net.h. */
int
net_read(int fd, struct evbuffer *buf, bool closing, bool *more, bool *got_data)
{
	size_t total;
	int rc = read_some(fd, -1, buf, closing, more, &total);

	*got_data = total > 0;
	return rc;
}

/* See net.h. */
int
net_relay(int fd, int to, struct evbuffer *out, bool closing, bool *more, size_t *got)
{
	return read_some(fd, to, out, closing, more, got);
}

/* See net.h. */
int
net_write(int fd, struct evbuffer *buf)
{
	struct evbuffer_iovec v;
	ssize_t n;

	/* One chain (the usual remainder of a relayed read): send(), without writev's iovec. */
	if (evbuffer_peek(buf, -1, NULL, &v, 1) == 1 && v.iov_len == evbuffer_get_length(buf)) {
		if ((n = net_send_some(fd, v.iov_base, v.iov_len)) > 0)
			evbuffer_drain(buf, (size_t)n);
		return (int)n;
	}
	return evbuffer_write(buf, fd);
}
