/* Socket helpers: listening sockets, non-blocking connects, address formatting. */
#ifndef ROUNDGUARD_NET_H
#define ROUNDGUARD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct evbuffer;
struct listen_addr;

/*
 * Bind and listen on la (host "" = every address, dual-stack where IPv6
 * exists), non-blocking and close-on-exec, with SO_REUSEADDR and, when
 * reuseport is set, SO_REUSEPORT so that several processes can each own a
 * socket on the same port. Returns the fd, or -1 with "bind 127.0.0.1:80:
 * Address already in use"-style text in err.
 */
int net_listen(const struct listen_addr *la, bool reuseport, char *err, size_t errlen);

/* "1.2.3.4:80" or "[::1]:80" for a socket address. */
void net_format_sockaddr(char *buf, size_t buflen, const struct sockaddr *sa);

/* Same for the IP only, without the port (for X-Forwarded-For, logs). */
void net_format_ip(char *buf, size_t buflen, const struct sockaddr *sa);

/*
 * A peer's IP in 18 bytes instead of its 46-byte text: kept by every client
 * connection, formatted when a request needs it (net_addr_format()).
 */
struct net_addr {
	uint8_t family;		/* AF_INET (a v4-mapped IPv6 peer too), AF_INET6, or 0 (unix) */
	uint8_t bytes[16];	/* 4 used for AF_INET */
	uint16_t port;		/* host order; for a PROXY header to a backend */
};

#define NET_ADDR_STRLEN 46	/* INET6_ADDRSTRLEN */

void net_addr_set(struct net_addr *a, const struct sockaddr *sa);

/* a back as a socket address (AF_UNSPEC for 0); returns its length, 0 for none. */
socklen_t net_addr_sockaddr(const struct net_addr *a, struct sockaddr_storage *ss);

/* As net_format_ip() would print it; buflen >= NET_ADDR_STRLEN. Returns buf. */
const char *net_addr_format(const struct net_addr *a, char *buf, size_t buflen);

/*
 * Resolve a backend host (name or literal) and port to the first stream
 * address getaddrinfo gives; -1 with "\"host\": cannot resolve: ..." in err.
 */
int net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len,
    char *err, size_t errlen);

/* Set TCP_NODELAY; errors ignored (not every socket is TCP). */
void net_nodelay(int fd);

/*
 * Read what the non-blocking socket fd holds into buf. Events are
 * edge-triggered (as nginx's are: no re-check of every reported socket in the
 * next epoll_wait), so the caller must come back on its own when *more says
 * the reads stopped after a few full buffers; and when the peer closed
 * (closing: EV_CLOSED, EPOLLRDHUP) the reads go on to the end of file, which
 * no further edge would report. 1 when the socket is drained (*got_data:
 * bytes came), 0 at the end of file, -1 on an error (errno).
 */
int net_read(int fd, struct evbuffer *buf, bool closing, bool *more, bool *got_data);

/*
 * net_read() for a tunnel: read fd, and while out (what waits to be written
 * to the socket to) is empty, send the bytes straight on to to, adding to out
 * only what it did not take; once out holds bytes, reads are added behind
 * them, so the order holds. *got: bytes read (sent or added). A failed send
 * leaves its bytes in out: the caller's next net_write() of out meets the
 * error. Results as net_read()'s (-1: a read error).
 */
int net_relay(int fd, int to, struct evbuffer *out, bool closing, bool *more, size_t *got);

/*
 * evbuffer_write() of buf to the non-blocking socket fd, with send() when
 * buf is one contiguous chain: bytes written, or -1 (errno; EAGAIN: full).
 */
int net_write(int fd, struct evbuffer *buf);

#endif
