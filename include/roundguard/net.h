/* Socket helpers: listening sockets, non-blocking connects, address formatting. */
#ifndef ROUNDGUARD_NET_H
#define ROUNDGUARD_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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
 * Resolve a backend host (name or literal) and port to the first stream
 * address getaddrinfo gives; -1 with "\"host\": cannot resolve: ..." in err.
 */
int net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len,
    char *err, size_t errlen);

/* Set TCP_NODELAY; errors ignored (not every socket is TCP). */
void net_nodelay(int fd);

#endif
