/*
 * One I/O seam per connection side (DESIGN.md): the HTTP state machine and
 * the tunnel read and write through these, never through recv() or OpenSSL
 * themselves. ssl NULL is a plain socket; otherwise every call maps
 * OpenSSL's want-read/want-write onto the connection's edge-triggered events:
 * "would block" either way, and the next edge of either direction tries again.
 */
#ifndef ROUNDGUARD_TRANSPORT_H
#define ROUNDGUARD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "roundguard/metrics-t.h"

struct evbuffer;
struct ssl_st;

/* As net_read() (net.h): 1 drained (*got_data: bytes came), 0 end of file, -1 error. */
int transport_read(int fd, struct ssl_st *ssl, struct evbuffer *buf, bool closing, bool *more,
    bool *got_data);

/*
 * Write from the front of buf and drain what was taken, as evbuffer_write()
 * does: bytes taken (> 0), or -1 with errno EAGAIN when the socket is full or
 * TLS waits for the peer, another errno on an error. Callers loop while bytes
 * remain. Over TLS one call writes one record of up to 16 KiB (small chains
 * gathered, so a head and a short body go out in one record and one send).
 */
int transport_write(int fd, struct ssl_st *ssl, struct evbuffer *buf);

/*
 * One step of a TLS handshake: 1 done, 0 waiting for the peer (either
 * readiness tries again), -1 failed with a short reason in *why ("no shared
 * cipher", "unsupported protocol", "certificate verify failed", ...), -2
 * failed because the peer spoke plain HTTP. Unless result is NULL, *result
 * says how it ended, once it did: ok or resumed, else the class of the
 * failure (transport_handshake_class()).
 */
int transport_handshake(struct ssl_st *ssl, const char **why, enum metrics_tls_result *result);

/*
 * The protocol version ssl's handshake agreed on, as on the wire (0x0303,
 * 0x0304), even when it failed later (no shared cipher, an unknown name);
 * 0 before the server chose one. SSL_version() alone cannot tell: a fresh
 * server SSL already says TLS 1.3.
 */
int transport_version(const struct ssl_st *ssl);

/*
 * The class of a failed handshake step, from SSL_get_error()'s answer, the
 * first error OpenSSL queued (0 if none) and whether the server's SNI
 * callback refused the name (tls_server_name_refused()). OpenSSL's reasons
 * are told apart by their codes (ERR_GET_LIB(), ERR_GET_REASON()), never by
 * their text. No side effects: the unit tests call it with made-up codes.
 */
enum metrics_tls_result transport_handshake_class(int ssl_error, unsigned long err,
    bool name_refused);

/*
 * An idle (pooled) TLS connection became readable: true when that was TLS
 * bookkeeping only (a session ticket), false when it closed or sent data.
 */
bool transport_idle_ok(struct ssl_st *ssl);

/* Before closing: a close_notify if the socket takes it now; never waits. */
void transport_close_notify(struct ssl_st *ssl);

#endif
