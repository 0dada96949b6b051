/*
 * Plain and TLS reads and writes behind one interface (transport.h). The
 * plain path is net_read() and evbuffer_write(); the TLS path uses OpenSSL's
 * socket BIO on the same non-blocking descriptor.
 */
#include <errno.h>

#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "roundguard/net.h"
#include "roundguard/tls.h"
#include "roundguard/transport.h"

#define TLS_READ_CHUNK 16384	/* one record's plaintext at most */
#define TLS_WRITE_CHUNK 16384
#define TLS_READS_MAX 8		/* records per readiness, then other sockets get a turn */

/* Reads go through here into an empty evbuffer, as net_read()'s do (see net.c). */
static char tls_scratch[TLS_READ_CHUNK > TLS_WRITE_CHUNK ? TLS_READ_CHUNK : TLS_WRITE_CHUNK];

/* The error queue is per thread and OpenSSL wants it empty before each call it judges. */
static int
tls_error(void)
{
	ERR_clear_error();
	errno = EPROTO;
	return -1;
}

static int
tls_read(SSL *ssl, struct evbuffer *buf, bool *more, bool *got_data)
{
	size_t got;

	for (int i = 0; i < TLS_READS_MAX; i++) {
		int err;

		if (SSL_read_ex(ssl, tls_scratch, TLS_READ_CHUNK, &got) == 1) {
			if (evbuffer_add(buf, tls_scratch, got) == -1)
				return -1;
			*got_data = true;
			continue;
		}
		err = SSL_get_error(ssl, 0);
		switch (err) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:	/* a TLS 1.3 key update answer waits for room */
			return 1;
		case SSL_ERROR_ZERO_RETURN:	/* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
			ERR_clear_error();
			return *got_data ? (*more = true, 1) : 0;
		case SSL_ERROR_SYSCALL:
			if (errno == EAGAIN || errno == EINTR)
				return 1;
			ERR_clear_error();
			return -1;
		default:
			return tls_error();
		}
	}
	/* Records may wait in OpenSSL's buffer or the socket: the caller comes back. */
	*more = true;
	return 1;
}

int
transport_read(int fd, struct ssl_st *ssl, struct evbuffer *buf, bool closing, bool *more,
    bool *got_data)
{
	if (ssl == NULL)
		return net_read(fd, buf, closing, more, got_data);
	*more = false;
	*got_data = false;
	return tls_read(ssl, buf, more, got_data);
}

static int
tls_write(SSL *ssl, struct evbuffer *buf)
{
	struct evbuffer_iovec first;
	size_t len = evbuffer_get_length(buf), n, taken;
	const void *data;

	if (len == 0)
		return 0;
	/*
	 * A retry after want-write must offer the same bytes again, at least as
	 * many (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets them move): buf only
	 * grows at its end until drained, and both choices below offer a prefix
	 * that never shrinks.
	 */
	if (evbuffer_peek(buf, -1, NULL, &first, 1) == 1 &&
	    (first.iov_len >= TLS_WRITE_CHUNK || first.iov_len == len)) {
		data = first.iov_base;
		n = first.iov_len < TLS_WRITE_CHUNK ? first.iov_len : TLS_WRITE_CHUNK;
	} else {
		n = len < TLS_WRITE_CHUNK ? len : TLS_WRITE_CHUNK;
		if (evbuffer_copyout(buf, tls_scratch, n) != (ev_ssize_t)n)
			return -1;
		data = tls_scratch;
	}
	if (SSL_write_ex(ssl, data, n, &taken) == 1) {
		evbuffer_drain(buf, taken);
		return (int)taken;
	}
	switch (SSL_get_error(ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (errno == 0)
			errno = EPIPE;
		return -1;
	default:
		return tls_error();
	}
}

int
transport_write(int fd, struct ssl_st *ssl, struct evbuffer *buf)
{
	if (ssl == NULL)
		return evbuffer_write(buf, fd);
	return tls_write(ssl, buf);
}

int
transport_version(const struct ssl_st *ssl)
{
	/* The server makes the session right after it chose the version (or resumes one). */
	const SSL_SESSION *sess = ssl != NULL ? SSL_get_session(ssl) : NULL;

	return sess != NULL ? SSL_SESSION_get_protocol_version(sess) : 0;
}

enum metrics_tls_result
transport_handshake_class(int ssl_error, unsigned long err, bool name_refused)
{
	if (name_refused)
		return METRICS_TLS_UNKNOWN_NAME;	/* OpenSSL only says "callback failed" */
	switch (ssl_error) {
	case SSL_ERROR_SYSCALL:		/* end of file or a reset without any TLS alert */
	case SSL_ERROR_ZERO_RETURN:	/* end of file with SSL_OP_IGNORE_UNEXPECTED_EOF */
		return METRICS_TLS_CLOSED;
	case SSL_ERROR_SSL:
		break;
	default:
		return METRICS_TLS_OTHER;
	}
	if (ERR_GET_LIB(err) != ERR_LIB_SSL)
		return METRICS_TLS_OTHER;
	switch (ERR_GET_REASON(err)) {
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
		return METRICS_TLS_NO_SHARED_CIPHER;
	case SSL_R_UNSUPPORTED_PROTOCOL:	/* a client's versions all below min_version */
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
	case SSL_R_WRONG_SSL_VERSION:
	case SSL_R_UNSUPPORTED_SSL_VERSION:
	case SSL_R_BAD_PROTOCOL_VERSION_NUMBER:
	case SSL_R_INAPPROPRIATE_FALLBACK:	/* TLS_FALLBACK_SCSV: a downgrade */
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:	/* the client refuses the version chosen */
		return METRICS_TLS_UNSUPPORTED_VERSION;
	case SSL_R_HTTP_REQUEST:		/* "GET ", "POST", "HEAD", "PUT " instead of a record */
	case SSL_R_HTTPS_PROXY_REQUEST:		/* "CONNE" */
		return METRICS_TLS_PLAIN_HTTP;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return METRICS_TLS_CLOSED;
	default:
		return METRICS_TLS_OTHER;
	}
}

int
transport_handshake(struct ssl_st *ssl, const char **why, enum metrics_tls_result *result)
{
	enum metrics_tls_result r;
	unsigned long e;
	int rc = SSL_do_handshake(ssl), err;

	if (rc == 1) {
		if (result != NULL)
			*result = SSL_session_reused(ssl) ? METRICS_TLS_RESUMED : METRICS_TLS_OK;
		return 1;
	}
	switch ((err = SSL_get_error(ssl, rc))) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_SYSCALL:
		*why = errno == 0 || errno == EAGAIN ? "connection closed" : "connection reset";
		e = 0;
		break;
	case SSL_ERROR_ZERO_RETURN:
		*why = "connection closed";
		e = 0;
		break;
	default:
		e = ERR_peek_error();
		*why = e != 0 && ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) :
		    "handshake failed";
		break;
	}
	ERR_clear_error();
	r = transport_handshake_class(err, e, tls_server_name_refused(ssl));
	if (r == METRICS_TLS_UNKNOWN_NAME)
		*why = "no certificate for the server name (strict_sni)";
	if (result != NULL)
		*result = r;
	return r == METRICS_TLS_PLAIN_HTTP ? -2 : -1;
}

void
transport_close_notify(struct ssl_st *ssl)
{
	if (ssl == NULL)
		return;
	/* Only after a handshake, and never on a connection that failed (no alert storm). */
	if (SSL_is_init_finished(ssl))
		(void)SSL_shutdown(ssl);
	ERR_clear_error();
}

bool
transport_idle_ok(struct ssl_st *ssl)
{
	unsigned char byte;
	size_t got;

	/* Records without application data (tickets, a key update) are consumed here. */
	if (SSL_read_ex(ssl, &byte, 1, &got) == 1)
		return false;	/* data nobody asked for */
	switch (SSL_get_error(ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return true;
	default:
		ERR_clear_error();
		return false;
	}
}
