/* TLS contexts of one configuration generation: built by the master before fork, used by its workers. */
#ifndef ROUNDGUARD_TLS_H
#define ROUNDGUARD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>

#include "roundguard/config-t.h"

/* Bytes of the generation's ticket master secret. */
#define TLS_SECRET_LEN 32

/*
 * Every TLS context of one configuration: a server SSL_CTX per TLS listener
 * (certificates, SNI, ALPN, ticket keys), a client SSL_CTX per distinct
 * https backend setting, and each worker's last session per backend.
 */
struct tls_generation;

/*
 * Build the contexts of cfg (validated; listeners and backends indexed as
 * in cfg): load and check every certificate and key, and the backends'
 * ca_file. Meant for the master, as root, before it drops privileges and
 * forks: the children inherit the contexts. A new random ticket secret is
 * drawn for each generation (in memory only). Returns the number of
 * problems, each a line appended to err ("roundguardd.json: listeners[0].
 * tls.certificates[1].cert: \"/etc/x.pem\": certificate expired on
 * 2025-01-01T00:00:00Z (notAfter)"); *out is NULL unless it returns 0.
 */
int tls_generation_new(const struct config *cfg, struct tls_generation **out, char *err,
    size_t errlen);

/* Free every context, certificate, stored session and the ticket secret (wiped). NULL is fine. */
void tls_generation_free(struct tls_generation *g);

/* ---- server side ---- */

/* Listener i's context, or NULL for a plain listener. */
SSL_CTX *tls_server_ctx(const struct tls_generation *g, size_t listener);

/*
 * A new server-side SSL for an accepted connection on a TLS listener, in
 * accept state, buffers released while idle; the caller attaches the socket
 * (SSL_set_fd) and drives SSL_do_handshake(). NULL for a plain listener or
 * when out of memory.
 */
SSL *tls_server_new(const struct tls_generation *g, size_t listener);

enum tls_match {
	TLS_MATCH_NONE,
	TLS_MATCH_WILDCARD,	/* "*.example.com" covers "a.example.com", not "a.b.example.com" */
	TLS_MATCH_EXACT,
};

const char *tls_match_str(enum tls_match m);

/* How a certificate name (pattern) covers a host name; case-insensitive. */
enum tls_match tls_name_match(const char *pattern, const char *host);

/*
 * The certificate the SNI callback serves for servername (NULL: no SNI):
 * the first one with an exact name, else the first with a wildcard that
 * covers it, else certificates[0], or -1 (refused with unrecognized_name)
 * under strict_sni. Certificates of other key types for the same name
 * (RSA beside ECDSA) are offered too; OpenSSL picks by what the client takes.
 */
int tls_server_select(const struct tls_generation *g, size_t listener, const char *servername);

/*
 * Whether the SNI callback refused ssl's handshake (strict_sni, no
 * certificate for the name it asked for, or no name): OpenSSL's own error
 * for that is a bare "callback failed".
 */
bool tls_server_name_refused(const SSL *ssl);

/* ---- session ticket keys ---- */

struct tls_ticket_key {
	unsigned char name[16];
	unsigned char aes[32];		/* AES-256-CBC */
	unsigned char hmac[32];		/* HMAC-SHA256 */
};

/*
 * Keys derived from a master secret and the day number (UTC days since
 * 1970): every worker of a generation derives the same keys without talking
 * to the others, and they change at midnight UTC in all of them at once.
 * Tickets are issued with cur and accepted with cur or prev (then renewed).
 */
struct tls_ticket_keys {
	unsigned char secret[TLS_SECRET_LEN];
	int64_t day;			/* of cur; -1 before the first rotation */
	struct tls_ticket_key cur;
	struct tls_ticket_key prev;
};

/* Day number of a Unix time. */
int64_t tls_day(time_t t);

/* Start keys from secret (rotated to no day yet). */
void tls_ticket_keys_init(struct tls_ticket_keys *k, const unsigned char secret[TLS_SECRET_LEN]);

/* Derive the keys of day and day - 1 (nothing to do if k is at day already); 0 or -1. */
int tls_ticket_keys_rotate(struct tls_ticket_keys *k, int64_t day);

/*
 * Rotate g's ticket keys to today. The ticket callback does it lazily at
 * the first handshake of a new day, so a worker may call this from a daily
 * timer but need not; a reload makes a new generation, with a new secret.
 */
int tls_generation_rotate(struct tls_generation *g);

/* The generation's ticket keys, as the workers use them. */
const struct tls_ticket_keys *tls_generation_keys(const struct tls_generation *g);

/* Replace the ticket secret (tests; a master that keeps tickets across reloads). */
void tls_generation_set_secret(struct tls_generation *g, const unsigned char secret[TLS_SECRET_LEN]);

/* Replace time() for the day number and certificate checks (tests). */
void tls_generation_set_clock(struct tls_generation *g, time_t (*now)(void));

/* ---- client side (https backends) ---- */

/*
 * A new client-side SSL for a connection to backend b (an https one), in
 * connect state: SNI is tls.server_name or the URL's host (none for an IP
 * address), the certificate is checked against that name (or the URL's IP
 * address) unless tls.verify is false, and the worker's last session with
 * this backend is offered for resumption. New sessions the backend sends
 * are kept by themselves (tls_client_session_set()). The caller attaches
 * the socket and drives SSL_do_handshake(). End a connection with
 * SSL_shutdown() before SSL_free(): OpenSSL marks the session of one freed
 * without close_notify not resumable, and the next connection then does a
 * full handshake. NULL with a reason in err.
 */
SSL *tls_client_new(struct tls_generation *g, size_t b, char *err, size_t errlen);

/* This process's last session with backend b, or NULL; borrowed, valid until the next set. */
SSL_SESSION *tls_client_session_get(const struct tls_generation *g, size_t b);

/*
 * Keep s (a reference is taken) as backend b's session, dropping the old
 * one; NULL forgets it (after a failed handshake, say). Sessions that cannot
 * be resumed are not kept.
 */
void tls_client_session_set(struct tls_generation *g, size_t b, SSL_SESSION *s);

/* ---- certificate expiry (for roundguard_tls_certificate_expiry_timestamp_seconds) ---- */

struct tls_cert_expiry {
	const char *listener;		/* the listener's name */
	const char *name;		/* the certificate's first name, "" if it has none */
	int64_t not_after;		/* Unix time */
};

/* Fill out with up to max entries, listeners and certificates in config order; returns how many exist. */
size_t tls_cert_expiry(const struct tls_generation *g, struct tls_cert_expiry *out, size_t max);

#endif
