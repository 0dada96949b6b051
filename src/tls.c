/* TLS contexts built by the master for a generation: certificates, SNI, ALPN, ticket keys, backend clients. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "roundguard/tls.h"

_Static_assert(CONFIG_TLS_1_2 == TLS1_2_VERSION && CONFIG_TLS_1_3 == TLS1_3_VERSION,
    "config-t.h's versions are the wire ones");

/* A certificate chain or key file is a few KiB; a CA bundle a few hundred. */
#define PEM_FILE_MAX (4 * 1024 * 1024)
#define LINE_MAX_LEN 2048
#define WHY_MAX 512
#define DNS_NAME_MAX 253	/* longest name in a certificate we match SNI against */
#define SECONDS_PER_DAY 86400
#define NAME_FLAGS "command line"

/* "http/1.1" as ALPN puts it on the wire: a length byte, then the name. */
static const unsigned char alpn_http11[] = "\x08http/1.1";
#define ALPN_HTTP11_LEN (sizeof(alpn_http11) - 1)

/* One loaded certificate of a listener, with the names SNI is matched against. */
struct tls_cert {
	X509 *x509;
	EVP_PKEY *pkey;
	STACK_OF(X509) *chain;		/* the intermediates after the leaf */
	int key_type;			/* EVP_PKEY_RSA, EVP_PKEY_EC, ... */
	char **names;			/* subjectAltName DNS entries, else the CN */
	size_t nnames;
	int64_t not_after;
};

struct tls_server {
	struct tls_generation *gen;
	SSL_CTX *ctx;			/* NULL for a plain listener */
	char name[CONFIG_NAME_MAX];
	bool strict_sni;
	struct tls_cert certs[CONFIG_CERTS_MAX];
	size_t ncerts;
	unsigned default_set;		/* bit i: certs[i] is in ctx (no SNI, or none matched) */
};

/* A client context, shared by the https backends that have the same ca_file and verify. */
struct tls_client {
	SSL_CTX *ctx;
	char ca_file[CONFIG_PATH_MAX];	/* "" = the system's paths */
	bool verify;
};

struct tls_backend {
	int client;			/* index in clients, -1 for plain http */
	char name[PARSE_HOST_MAX];	/* sent as SNI and checked, or the address checked */
	bool is_ip;			/* name is an address: no SNI (RFC 6066 3) */
	bool verify;
	SSL_SESSION *session;		/* this process's last one */
};

struct tls_generation {
	struct tls_ticket_keys keys;
	time_t (*now)(void);
	struct tls_server *servers;	/* one per listener */
	size_t nservers;
	struct tls_client *clients;
	size_t nclients;
	struct tls_backend *backends;	/* one per backend, NULL if none is https */
	size_t nbackends;
};

/* Problems, appended one per line to the caller's buffer, as config.c does. */
struct report {
	char *err;
	size_t errlen;
	int count;
	const char *file;
};

/*
 * ex_data slots: a server SSL_CTX's struct tls_server, a client SSL's struct
 * tls_backend, and on a server SSL a mark that strict_sni refused its name.
 */
static int ctx_index = -1;
static int ssl_index = -1;
static int refused_index = -1;
static char refused_mark;

static void report_add(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
report_add(struct report *r, const char *fmt, ...)
{
	char line[LINE_MAX_LEN];
	size_t len, i;
	va_list ap;

	r->count++;
	if (r->err == NULL || r->errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (i = 0; line[i] != '\0'; i++) {
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	}
	len = strnlen(r->err, r->errlen);
	if (len == r->errlen) {
		len = 0;
		r->err[0] = '\0';
	}
	snprintf(r->err + len, r->errlen - len, "%s%s: %s",
	    len > 0 && r->err[len - 1] != '\n' ? "\n" : "", r->file, line);
}

/* The reason of OpenSSL's first error (the cause; later ones say where it surfaced), or what. */
static const char *
ssl_reason(char *buf, size_t buflen, const char *what)
{
	unsigned long e = ERR_peek_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	snprintf(buf, buflen, "%s", r != NULL ? r : what);
	ERR_clear_error();
	return buf;
}

static time_t
real_now(void)
{
	return time(NULL);
}

/* ---- files ---- */

/*
 * Read a whole PEM file into memory; -1 with why (errno's words for what
 * open and read say). The master reads it as root, before dropping privileges.
 */
static int
read_pem(const char *path, char **textp, size_t *lenp, char *why, size_t whylen)
{
	char *text = NULL;
	size_t len = 0;
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		snprintf(why, whylen, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(why, whylen, "cannot stat: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s", S_ISDIR(st.st_mode) ? "is a directory, not a file" :
		    "not a regular file");
		goto fail;
	}
	if (st.st_size > PEM_FILE_MAX) {
		snprintf(why, whylen, "file too large (over 4MiB)");
		goto fail;
	}
	if ((text = malloc((size_t)st.st_size + 1)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	while (len < (size_t)st.st_size) {
		n = read(fd, text + len, (size_t)st.st_size - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(why, whylen, "cannot read: %s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	text[len] = '\0';
	if (strstr(text, "-----BEGIN ") == NULL) {
		snprintf(why, whylen, "not PEM (no \"-----BEGIN\" line)");
		goto fail;
	}
	close(fd);
	*textp = text;
	*lenp = len;
	return 0;
fail:
	free(text);
	close(fd);
	return -1;
}

/* Whether the last PEM error is "no more objects of that type", which ends a file. */
static bool
pem_end(void)
{
	unsigned long e = ERR_peek_last_error();

	return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

/* The leaf and its intermediates from a PEM file. */
static int
load_chain(const char *path, struct tls_cert *c, char *why, size_t whylen)
{
	char *text, r[256];
	size_t len;
	X509 *x;
	BIO *bio;
	int rc = -1;

	if (read_pem(path, &text, &len, why, whylen) == -1)
		return -1;
	ERR_clear_error();
	if ((bio = BIO_new_mem_buf(text, (int)len)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto done;
	}
	if ((c->x509 = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) == NULL) {
		if (pem_end() || strstr(text, "CERTIFICATE-----") == NULL)
			snprintf(why, whylen, "no certificate in the file");
		else
			snprintf(why, whylen, "a PEM block that is no valid certificate (OpenSSL: %s)",
			    ssl_reason(r, sizeof(r), "unreadable"));
		goto done;
	}
	if ((c->chain = sk_X509_new_null()) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto done;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(c->chain, x)) {
			X509_free(x);
			snprintf(why, whylen, "out of memory");
			goto done;
		}
	}
	if (!pem_end()) {
		snprintf(why, whylen, "a PEM block after the first certificate that is no valid "
		    "certificate (OpenSSL: %s)", ssl_reason(r, sizeof(r), "unreadable"));
		goto done;
	}
	rc = 0;
done:
	ERR_clear_error();
	BIO_free(bio);
	free(text);
	return rc;
}

/* PEM password callback: an encrypted key is refused, never prompted for. */
static int
no_password(char *buf, int size, int rwflag, void *u)
{
	*(bool *)u = true;
	return -1;
}

static int
load_key(const char *path, struct tls_cert *c, char *why, size_t whylen)
{
	bool encrypted = false;
	char *text, r[256];
	size_t len;
	BIO *bio;
	int rc = -1;

	if (read_pem(path, &text, &len, why, whylen) == -1)
		return -1;
	ERR_clear_error();
	if ((bio = BIO_new_mem_buf(text, (int)len)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto done;
	}
	if ((c->pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, &encrypted)) == NULL) {
		if (encrypted)
			snprintf(why, whylen, "the key is encrypted (give it unencrypted, readable "
			    "by root only)");
		else if (pem_end() || strstr(text, "PRIVATE KEY-----") == NULL)
			snprintf(why, whylen, "no private key in the file");
		else
			snprintf(why, whylen, "a PEM block that is no valid private key (OpenSSL: %s)",
			    ssl_reason(r, sizeof(r), "unreadable"));
		goto done;
	}
	c->key_type = EVP_PKEY_get_base_id(c->pkey);
	rc = 0;
done:
	ERR_clear_error();
	BIO_free(bio);
	OPENSSL_cleanse(text, len);
	free(text);
	return rc;
}

/* ---- certificate facts ---- */

/* An ASN1_TIME as a Unix time; 0 if it cannot be read. */
static int64_t
asn1_unix(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

static const char *
format_time(char *buf, size_t buflen, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (gmtime_r(&tt, &tm) == NULL || strftime(buf, buflen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, buflen, "?");
	return buf;
}

static int
add_name(struct tls_cert *c, const unsigned char *s, int n)
{
	char **names, *copy;

	/* A name with a NUL in it is a forgery, not a name. */
	if (n <= 0 || n > DNS_NAME_MAX || memchr(s, '\0', (size_t)n) != NULL)
		return 0;
	if ((names = reallocarray(c->names, c->nnames + 1, sizeof(*names))) == NULL)
		return -1;
	c->names = names;
	if ((copy = strndup((const char *)s, (size_t)n)) == NULL)
		return -1;
	c->names[c->nnames++] = copy;
	return 0;
}

/* The names SNI matches: the subjectAltName DNS entries, else the subject's CN (RFC 6125 6.4.4). */
static int
cert_names(struct tls_cert *c)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(c->x509, NID_subject_alt_name, NULL, NULL);
	const X509_NAME *subject;
	const ASN1_STRING *cn;
	unsigned char *utf8;
	int i, n, rc = 0;

	for (i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && rc == 0; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);

		if (gn->type == GEN_DNS)
			rc = add_name(c, ASN1_STRING_get0_data(gn->d.dNSName),
			    ASN1_STRING_length(gn->d.dNSName));
	}
	GENERAL_NAMES_free(sans);
	if (rc == -1 || c->nnames > 0)
		return rc;
	subject = X509_get_subject_name(c->x509);
	i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if (i < 0)
		return 0;
	cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
	if ((n = ASN1_STRING_to_UTF8(&utf8, cn)) < 0)
		return 0;
	rc = add_name(c, utf8, n);
	OPENSSL_free(utf8);
	return rc;
}

static void
cert_free(struct tls_cert *c)
{
	size_t i;

	X509_free(c->x509);
	EVP_PKEY_free(c->pkey);
	sk_X509_pop_free(c->chain, X509_free);
	for (i = 0; i < c->nnames; i++)
		free(c->names[i]);
	free(c->names);
	memset(c, 0, sizeof(*c));
}

/* ---- SNI ---- */

const char *
tls_match_str(enum tls_match m)
{
	switch (m) {
	case TLS_MATCH_NONE:
		return "none";
	case TLS_MATCH_WILDCARD:
		return "wildcard";
	case TLS_MATCH_EXACT:
		return "exact";
	}
	return "unknown";
}

enum tls_match
tls_name_match(const char *pattern, const char *host)
{
	const char *dot;

	if (pattern == NULL || host == NULL || *host == '\0')
		return TLS_MATCH_NONE;
	if (strcasecmp(pattern, host) == 0)
		return TLS_MATCH_EXACT;
	/* "*." and a suffix of two labels at least, as X509_check_host() wants. */
	if (pattern[0] != '*' || pattern[1] != '.' || strchr(pattern + 2, '.') == NULL)
		return TLS_MATCH_NONE;
	dot = strchr(host, '.');
	if (dot == NULL || dot == host)
		return TLS_MATCH_NONE;
	return strcasecmp(dot + 1, pattern + 2) == 0 ? TLS_MATCH_WILDCARD : TLS_MATCH_NONE;
}

/* How well certificate c covers host: its best name. */
static enum tls_match
cert_match(const struct tls_cert *c, const char *host)
{
	enum tls_match best = TLS_MATCH_NONE, m;
	size_t i;

	for (i = 0; i < c->nnames && best != TLS_MATCH_EXACT; i++) {
		m = tls_name_match(c->names[i], host);
		if (m > best)
			best = m;
	}
	return best;
}

/* Certificate pick, plus the first certificate of each other key type that covers host as well. */
static unsigned
cert_set(const struct tls_server *s, size_t pick, const char *host, enum tls_match how)
{
	unsigned set = 1u << pick;
	size_t i, j;

	for (i = 0; i < s->ncerts; i++) {
		bool taken = false;

		for (j = 0; j < s->ncerts; j++) {
			if ((set & (1u << j)) && s->certs[j].key_type == s->certs[i].key_type)
				taken = true;
		}
		if (!taken && host != NULL && cert_match(&s->certs[i], host) == how)
			set |= 1u << i;
	}
	return set;
}

/* tls_server_select() for one server; *set gets the certificates to offer. */
static int
server_select(const struct tls_server *s, const char *host, unsigned *set)
{
	size_t i;

	if (host != NULL && *host != '\0') {
		for (i = 0; i < s->ncerts; i++) {
			if (cert_match(&s->certs[i], host) == TLS_MATCH_EXACT) {
				*set = cert_set(s, i, host, TLS_MATCH_EXACT);
				return (int)i;
			}
		}
		for (i = 0; i < s->ncerts; i++) {
			if (cert_match(&s->certs[i], host) == TLS_MATCH_WILDCARD) {
				*set = cert_set(s, i, host, TLS_MATCH_WILDCARD);
				return (int)i;
			}
		}
	}
	if (s->strict_sni)
		return -1;
	*set = s->default_set;
	return 0;
}

int
tls_server_select(const struct tls_generation *g, size_t listener, const char *servername)
{
	unsigned set;

	if (g == NULL || listener >= g->nservers || g->servers[listener].ctx == NULL)
		return -1;
	return server_select(&g->servers[listener], servername, &set);
}

/*
 * Servername callback, run for every ClientHello, with or without SNI. The
 * SSL starts with the default certificates (the context's); another choice
 * replaces them on this SSL only.
 */
static int
sni_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_server *s = arg;
	const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	unsigned set = 0;
	size_t i;

	if (server_select(s, host, &set) < 0) {
		/* OpenSSL's own error says "callback failed" only: the metrics want to know why. */
		(void)SSL_set_ex_data(ssl, refused_index, &refused_mark);
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	if (set == s->default_set)
		return SSL_TLSEXT_ERR_OK;
	SSL_certs_clear(ssl);
	for (i = 0; i < s->ncerts; i++) {
		const struct tls_cert *c = &s->certs[i];

		if ((set & (1u << i)) && SSL_use_cert_and_key(ssl, c->x509, c->pkey, c->chain, 1) != 1) {
			*alert = SSL_AD_INTERNAL_ERROR;
			return SSL_TLSEXT_ERR_ALERT_FATAL;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

bool
tls_server_name_refused(const SSL *ssl)
{
	return ssl != NULL && refused_index >= 0 &&
	    SSL_get_ex_data(ssl, refused_index) == &refused_mark;
}

/* ALPN: HTTP/1.1 only; a client that offers ALPN without it gets no_application_protocol (RFC 7301 3.2). */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
    unsigned int inlen, void *arg)
{
	unsigned int i;

	/* h2 goes here, first in preference, once the workers speak HTTP/2. */
	for (i = 0; i < inlen && i + 1 + in[i] <= inlen; i += 1u + in[i]) {
		if (in[i] == ALPN_HTTP11_LEN - 1 && memcmp(in + i + 1, alpn_http11 + 1, in[i]) == 0) {
			*out = in + i + 1;
			*outlen = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* ---- session ticket keys ---- */

int64_t
tls_day(time_t t)
{
	int64_t s = (int64_t)t;

	return s >= 0 ? s / SECONDS_PER_DAY : -((-s + SECONDS_PER_DAY - 1) / SECONDS_PER_DAY);
}

void
tls_ticket_keys_init(struct tls_ticket_keys *k, const unsigned char secret[TLS_SECRET_LEN])
{
	OPENSSL_cleanse(k, sizeof(*k));
	memcpy(k->secret, secret, TLS_SECRET_LEN);
	k->day = -1;
}

static int
hmac_sha256(const unsigned char *key, size_t keylen, const void *msg, size_t msglen,
    unsigned char out[32])
{
	unsigned int len = 0;

	return HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &len) != NULL && len == 32 ?
	    0 : -1;
}

/*
 * day key = HMAC-SHA256(secret, day as 8 big-endian bytes); name, AES and
 * HMAC keys = HMAC-SHA256(day key, label), one expansion step as in HKDF.
 */
static int
derive_key(const unsigned char secret[TLS_SECRET_LEN], int64_t day, struct tls_ticket_key *out)
{
	unsigned char msg[8], dk[32], name[32];
	uint64_t d = (uint64_t)day;
	int i, rc = -1;

	for (i = 7; i >= 0; i--, d >>= 8)
		msg[i] = (unsigned char)(d & 0xff);
	if (hmac_sha256(secret, TLS_SECRET_LEN, msg, sizeof(msg), dk) == 0 &&
	    hmac_sha256(dk, sizeof(dk), "name", 4, name) == 0 &&
	    hmac_sha256(dk, sizeof(dk), "aes", 3, out->aes) == 0 &&
	    hmac_sha256(dk, sizeof(dk), "hmac", 4, out->hmac) == 0) {
		memcpy(out->name, name, sizeof(out->name));
		rc = 0;
	}
	OPENSSL_cleanse(dk, sizeof(dk));
	return rc;
}

int
tls_ticket_keys_rotate(struct tls_ticket_keys *k, int64_t day)
{
	struct tls_ticket_key cur, prev;

	if (k->day == day)
		return 0;
	if (derive_key(k->secret, day, &cur) == -1 || derive_key(k->secret, day - 1, &prev) == -1)
		return -1;
	k->cur = cur;
	k->prev = prev;
	k->day = day;
	OPENSSL_cleanse(&cur, sizeof(cur));
	OPENSSL_cleanse(&prev, sizeof(prev));
	return 0;
}

int
tls_generation_rotate(struct tls_generation *g)
{
	return tls_ticket_keys_rotate(&g->keys, tls_day(g->now()));
}

const struct tls_ticket_keys *
tls_generation_keys(const struct tls_generation *g)
{
	return &g->keys;
}

void
tls_generation_set_secret(struct tls_generation *g, const unsigned char secret[TLS_SECRET_LEN])
{
	tls_ticket_keys_init(&g->keys, secret);
}

void
tls_generation_set_clock(struct tls_generation *g, time_t (*now)(void))
{
	g->now = now != NULL ? now : real_now;
}

static int
ticket_mac_init(EVP_MAC_CTX *hctx, const struct tls_ticket_key *k)
{
	OSSL_PARAM params[3];

	/* OSSL_PARAM holds non-const pointers; EVP_MAC_CTX_set_params() only reads them. */
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(uintptr_t)k->hmac,
	    sizeof(k->hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)(uintptr_t)"SHA256",
	    0);
	params[2] = OSSL_PARAM_construct_end();
	return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

/*
 * Ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb): encrypt with
 * today's key; decrypt with today's (1; 2 under TLS 1.3) or yesterday's (2:
 * renew the ticket); 0 for any other name, which means a full handshake.
 */
static int
ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
    EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
	const struct tls_server *s = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
	struct tls_ticket_keys *k;
	const struct tls_ticket_key *key;
	int rc;

	if (s == NULL || tls_generation_rotate(s->gen) == -1)
		return -1;
	k = &s->gen->keys;
	if (enc) {
		key = &k->cur;
		if (RAND_bytes(iv, 16) != 1)
			return -1;
		memcpy(key_name, key->name, sizeof(key->name));
		if (EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, key->aes, iv) != 1)
			return -1;
		return ticket_mac_init(hctx, key) == 0 ? 1 : -1;
	}
	if (memcmp(key_name, k->cur.name, sizeof(k->cur.name)) == 0) {
		key = &k->cur;
		/*
		 * TLS 1.3 tickets are single-use for clients (RFC 8446 C.4): without a
		 * new one on every resumption (OpenSSL sends one only for 2), every
		 * other connection of a client would be a full handshake. nginx's
		 * ticket callback does the same.
		 */
		rc = SSL_version(ssl) == TLS1_3_VERSION ? 2 : 1;
	} else if (memcmp(key_name, k->prev.name, sizeof(k->prev.name)) == 0) {
		key = &k->prev;
		rc = 2;
	} else {
		return 0;
	}
	if (ticket_mac_init(hctx, key) == -1 ||
	    EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, key->aes, iv) != 1)
		return -1;
	return rc;
}

/* ---- server contexts ---- */

/* Load and check certificate i of listener li; one problem on failure. */
static int
server_load_cert(struct tls_server *s, size_t li, size_t i, const struct config_cert *cc,
    time_t now, struct report *r)
{
	struct tls_cert *c = &s->certs[i];
	char why[WHY_MAX], when[32], since[32], ssl[256];
	SSL *probe;

	if (load_chain(cc->cert, c, why, sizeof(why)) == -1) {
		report_add(r, "listeners[%zu].tls.certificates[%zu].cert: \"%s\": %s", li, i, cc->cert, why);
		return -1;
	}
	if (load_key(cc->key, c, why, sizeof(why)) == -1) {
		report_add(r, "listeners[%zu].tls.certificates[%zu].key: \"%s\": %s", li, i, cc->key, why);
		return -1;
	}
	if (X509_check_private_key(c->x509, c->pkey) != 1) {
		ERR_clear_error();
		report_add(r, "listeners[%zu].tls.certificates[%zu].key: \"%s\": the key does not match "
		    "the certificate in \"%s\"", li, i, cc->key, cc->cert);
		return -1;
	}
	c->not_after = asn1_unix(X509_get0_notAfter(c->x509));
	if (X509_cmp_time(X509_get0_notAfter(c->x509), &now) < 0) {
		report_add(r, "listeners[%zu].tls.certificates[%zu].cert: \"%s\": certificate expired on "
		    "%s (notAfter)", li, i, cc->cert, format_time(when, sizeof(when), c->not_after));
		return -1;
	}
	if (X509_cmp_time(X509_get0_notBefore(c->x509), &now) > 0) {
		report_add(r, "listeners[%zu].tls.certificates[%zu].cert: \"%s\": certificate not valid "
		    "before %s (notBefore; notAfter %s)", li, i, cc->cert,
		    format_time(since, sizeof(since), asn1_unix(X509_get0_notBefore(c->x509))),
		    format_time(when, sizeof(when), c->not_after));
		return -1;
	}
	if (cert_names(c) == -1) {
		report_add(r, "listeners[%zu].tls.certificates[%zu].cert: \"%s\": out of memory", li, i,
		    cc->cert);
		return -1;
	}
	/* What OpenSSL itself refuses (a key too small for its security level, say), found now. */
	if ((probe = SSL_new(s->ctx)) == NULL ||
	    SSL_use_cert_and_key(probe, c->x509, c->pkey, c->chain, 1) != 1) {
		report_add(r, "listeners[%zu].tls.certificates[%zu].cert: \"%s\": OpenSSL refuses it: %s",
		    li, i, cc->cert, ssl_reason(ssl, sizeof(ssl), "out of memory"));
		SSL_free(probe);
		return -1;
	}
	SSL_free(probe);
	return 0;
}

/* Settings of a server context; the cipher strings were checked by config_tls.c already. */
static int
server_settings(struct tls_server *s, size_t li, const struct config_listener *l, struct report *r)
{
	const struct config_tls_server *t = &l->tls;
	unsigned char sid[SHA256_DIGEST_LENGTH];
	char ssl[256];

	/*
	 * Renegotiation is a DoS lever and never needed; compression is CRIME. An end
	 * of file without close_notify is an ordinary end (most HTTP clients never
	 * send one; a truncated body is caught by HTTP framing, as on plain TCP).
	 */
	SSL_CTX_set_options(s->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF |
	    (t->session_tickets ? 0 : SSL_OP_NO_TICKET));
	/*
	 * Idle keep-alive connections hold no buffers, as on the plain data path; a write
	 * retried after SSL_ERROR_WANT_WRITE may come from a moved evbuffer chain.
	 */
	SSL_CTX_set_mode(s->ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/*
	 * Read what the socket holds in one read(), not a record header and then
	 * its body in two: one system call less per record (transport.c reads
	 * until OpenSSL wants more anyway, so nothing stays unseen in its buffer).
	 */
	SSL_CTX_set_read_ahead(s->ctx, 1);
	if (SSL_CTX_set_min_proto_version(s->ctx, t->min_version) != 1 ||
	    SSL_CTX_set_cipher_list(s->ctx, t->ciphers) != 1 ||
	    (t->ciphersuites[0] != '\0' && SSL_CTX_set_ciphersuites(s->ctx, t->ciphersuites) != 1)) {
		report_add(r, "listeners[%zu].tls: OpenSSL refuses the settings: %s", li,
		    ssl_reason(ssl, sizeof(ssl), "unknown error"));
		return -1;
	}
	/* The built-in RFC 7919 groups for the DHE-RSA ciphers of the intermediate list. */
	SSL_CTX_set_dh_auto(s->ctx, 1);
	/* Workers are processes: a session cache would be per worker. Tickets resume anywhere. */
	SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
	/* Per listener: a ticket from one listener (other certificates) never resumes on another. */
	SHA256((const unsigned char *)l->name, strlen(l->name), sid);
	SSL_CTX_set_session_id_context(s->ctx, sid, SSL_MAX_SID_CTX_LENGTH);
	/* No 0-RTT: early data can be replayed, and a proxy cannot tell. */
	SSL_CTX_set_max_early_data(s->ctx, 0);
	SSL_CTX_set_recv_max_early_data(s->ctx, 0);
	if (t->session_tickets)
		SSL_CTX_set_tlsext_ticket_key_evp_cb(s->ctx, ticket_cb);
	else
		SSL_CTX_set_num_tickets(s->ctx, 0);
	SSL_CTX_set_tlsext_servername_callback(s->ctx, sni_cb);
	SSL_CTX_set_tlsext_servername_arg(s->ctx, s);
	SSL_CTX_set_alpn_select_cb(s->ctx, alpn_cb, NULL);
	if (SSL_CTX_set_ex_data(s->ctx, ctx_index, s) != 1) {
		report_add(r, "listeners[%zu].tls: out of memory", li);
		return -1;
	}
	return 0;
}

/* Listener li's context with every certificate; problems reported, -1 if any. */
static int
server_build(struct tls_generation *g, size_t li, const struct config_listener *l, struct report *r)
{
	struct tls_server *s = &g->servers[li];
	const char *first;
	time_t now = g->now();
	size_t i;
	int rc = 0;

	s->gen = g;
	strlcpy(s->name, l->name, sizeof(s->name));
	s->strict_sni = l->tls.strict_sni;
	if ((s->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		report_add(r, "listeners[%zu].tls: out of memory", li);
		return -1;
	}
	if (server_settings(s, li, l, r) == -1)
		return -1;
	for (i = 0; i < l->tls.ncerts; i++) {
		if (server_load_cert(s, li, i, &l->tls.certs[i], now, r) == -1)
			rc = -1;
		s->ncerts = i + 1;
	}
	if (rc == -1 || s->ncerts == 0)
		return -1;
	/* Without SNI (or a match): certs[0], and beside it the others of other key types for its name. */
	first = s->certs[0].nnames > 0 ? s->certs[0].names[0] : NULL;
	s->default_set = cert_set(s, 0, first, TLS_MATCH_EXACT);
	for (i = 0; i < s->ncerts; i++) {
		const struct tls_cert *c = &s->certs[i];
		char ssl[256];

		if ((s->default_set & (1u << i)) &&
		    SSL_CTX_use_cert_and_key(s->ctx, c->x509, c->pkey, c->chain, 1) != 1) {
			report_add(r, "listeners[%zu].tls.certificates[%zu].cert: \"%s\": OpenSSL refuses "
			    "it: %s", li, i, l->tls.certs[i].cert, ssl_reason(ssl, sizeof(ssl), "?"));
			return -1;
		}
	}
	return 0;
}

SSL_CTX *
tls_server_ctx(const struct tls_generation *g, size_t listener)
{
	return g != NULL && listener < g->nservers ? g->servers[listener].ctx : NULL;
}

SSL *
tls_server_new(const struct tls_generation *g, size_t listener)
{
	SSL_CTX *ctx = tls_server_ctx(g, listener);
	SSL *ssl;

	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL)
		return NULL;
	SSL_set_accept_state(ssl);
	return ssl;
}

/* ---- client contexts ---- */

/* The CA certificates of ca_file into ctx's store: each one, so that an empty file is an error. */
static int
client_load_ca(SSL_CTX *ctx, const char *path, char *why, size_t whylen)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	char *text, r[256];
	size_t len;
	int n = 0, rc = -1;
	BIO *bio;
	X509 *x;

	if (read_pem(path, &text, &len, why, whylen) == -1)
		return -1;
	ERR_clear_error();
	if ((bio = BIO_new_mem_buf(text, (int)len)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto done;
	}
	while ((x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(store, x) != 1) {
			X509_free(x);
			snprintf(why, whylen, "%s", ssl_reason(r, sizeof(r), "cannot add a certificate"));
			goto done;
		}
		X509_free(x);
		n++;
	}
	if (!pem_end())
		snprintf(why, whylen, "a PEM block that is no valid certificate (OpenSSL: %s)",
		    ssl_reason(r, sizeof(r), "unreadable"));
	else if (n == 0)
		snprintf(why, whylen, "no certificate in the file");
	else
		rc = 0;
done:
	ERR_clear_error();
	BIO_free(bio);
	free(text);
	return rc;
}

/* New session from a backend (TLS 1.3 sends them after the handshake): keep it for the next connection. */
static int
client_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_backend *be = SSL_get_ex_data(ssl, ssl_index);

	if (be != NULL && SSL_SESSION_is_resumable(sess)) {
		SSL_SESSION_up_ref(sess);
		SSL_SESSION_free(be->session);
		be->session = sess;
	}
	return 0;	/* the reference OpenSSL passed is its own to drop */
}

static SSL_CTX *
client_ctx_new(const char *ca_file, bool verify, char *why, size_t whylen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char r[256];

	if (ctx == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);	/* as for listeners: one read() per readiness */
	SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	/* The worker keeps one session per backend itself: OpenSSL's client cache stores nothing. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, client_new_session);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_alpn_protos(ctx, alpn_http11, ALPN_HTTP11_LEN) != 0) {
		snprintf(why, whylen, "%s", ssl_reason(r, sizeof(r), "OpenSSL refuses the settings"));
		goto fail;
	}
	if (ca_file[0] != '\0') {
		if (client_load_ca(ctx, ca_file, why, whylen) == -1)
			goto fail;
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(why, whylen, "cannot use the system's CA certificates: %s",
		    ssl_reason(r, sizeof(r), "unknown error"));
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* Backend b's client settings, sharing a context with an earlier backend that has the same ones. */
static int
client_build(struct tls_generation *g, size_t b, const struct config_backend *cb, struct report *r)
{
	struct tls_backend *be = &g->backends[b];
	const struct config_backend_tls *t = &cb->tls;
	unsigned char ip[16];
	char why[WHY_MAX];
	size_t i;

	be->client = -1;
	be->verify = t->verify;
	for (i = 0; i < g->nclients; i++) {
		if (g->clients[i].verify == t->verify && strcmp(g->clients[i].ca_file, t->ca_file) == 0)
			break;
	}
	if (i == g->nclients) {
		struct tls_client *more = reallocarray(g->clients, g->nclients + 1, sizeof(*more));
		SSL_CTX *ctx = NULL;

		if (more != NULL)
			g->clients = more;
		if (more == NULL || (ctx = client_ctx_new(t->ca_file, t->verify, why, sizeof(why))) == NULL) {
			if (more == NULL)
				report_add(r, "backends[%u]: out of memory", cb->file_index);
			else if (t->ca_file[0] != '\0')
				report_add(r, "backends[%u].tls.ca_file: \"%s\": %s", cb->file_index,
				    t->ca_file, why);
			else
				report_add(r, "backends[%u]: %s", cb->file_index, why);
			return -1;
		}
		g->clients[i].ctx = ctx;
		strlcpy(g->clients[i].ca_file, t->ca_file, sizeof(g->clients[i].ca_file));
		g->clients[i].verify = t->verify;
		g->nclients++;
	}
	be->client = (int)i;
	/* Without server_name, an address in the URL is not sent as SNI; the certificate must carry it. */
	strlcpy(be->name, t->server_name[0] != '\0' ? t->server_name : cb->addr.host, sizeof(be->name));
	be->is_ip = t->server_name[0] == '\0' &&
	    (cb->addr.is_ipv6 || inet_pton(AF_INET, cb->addr.host, ip) == 1);
	return 0;
}

SSL *
tls_client_new(struct tls_generation *g, size_t b, char *err, size_t errlen)
{
	struct tls_backend *be;
	char r[256];
	SSL *ssl;

	if (g == NULL || g->backends == NULL || b >= g->nbackends || g->backends[b].client < 0) {
		snprintf(err, errlen, "not an https backend");
		return NULL;
	}
	be = &g->backends[b];
	if ((ssl = SSL_new(g->clients[be->client].ctx)) == NULL)
		goto fail;
	if (SSL_set_ex_data(ssl, ssl_index, be) != 1 ||
	    (!be->is_ip && SSL_set_tlsext_host_name(ssl, be->name) != 1))
		goto fail;
	if (be->verify) {
		if (be->is_ip) {
			if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), be->name) != 1)
				goto fail;
		} else {
			SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (SSL_set1_host(ssl, be->name) != 1)
				goto fail;
		}
	}
	/* OpenSSL marks a session not resumable when a connection using it ends without close_notify. */
	if (be->session != NULL && !SSL_SESSION_is_resumable(be->session)) {
		SSL_SESSION_free(be->session);
		be->session = NULL;
	}
	if (be->session != NULL && SSL_set_session(ssl, be->session) != 1)
		goto fail;
	SSL_set_connect_state(ssl);
	return ssl;
fail:
	snprintf(err, errlen, "%s", ssl_reason(r, sizeof(r), "out of memory"));
	SSL_free(ssl);
	return NULL;
}

SSL_SESSION *
tls_client_session_get(const struct tls_generation *g, size_t b)
{
	if (g == NULL || g->backends == NULL || b >= g->nbackends)
		return NULL;
	return g->backends[b].session;
}

void
tls_client_session_set(struct tls_generation *g, size_t b, SSL_SESSION *s)
{
	struct tls_backend *be;

	if (g == NULL || g->backends == NULL || b >= g->nbackends)
		return;
	be = &g->backends[b];
	if (s != NULL && (!SSL_SESSION_is_resumable(s) || SSL_SESSION_up_ref(s) != 1))
		s = NULL;
	SSL_SESSION_free(be->session);
	be->session = s;
}

/* ---- generations ---- */

size_t
tls_cert_expiry(const struct tls_generation *g, struct tls_cert_expiry *out, size_t max)
{
	size_t n = 0, i, j;

	for (i = 0; g != NULL && i < g->nservers; i++) {
		const struct tls_server *s = &g->servers[i];

		for (j = 0; s->ctx != NULL && j < s->ncerts; j++, n++) {
			if (n >= max)
				continue;
			out[n].listener = s->name;
			out[n].name = s->certs[j].nnames > 0 ? s->certs[j].names[0] : "";
			out[n].not_after = s->certs[j].not_after;
		}
	}
	return n;
}

static int
indexes_init(void)
{
	if (ctx_index < 0)
		ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (ssl_index < 0)
		ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (refused_index < 0)
		refused_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return ctx_index < 0 || ssl_index < 0 || refused_index < 0 ? -1 : 0;
}

int
tls_generation_new(const struct config *cfg, struct tls_generation **out, char *err,
    size_t errlen)
{
	struct report r = { err, errlen, 0, cfg->file[0] != '\0' ? cfg->file : NAME_FLAGS };
	unsigned char secret[TLS_SECRET_LEN];
	struct tls_generation *g;
	size_t i;

	*out = NULL;
	if ((g = calloc(1, sizeof(*g))) == NULL || indexes_init() == -1) {
		report_add(&r, "TLS: out of memory");
		free(g);
		return r.count;
	}
	g->now = real_now;
	/* The ticket secret of this generation: random, in memory only, shared with the workers by fork. */
	if (RAND_priv_bytes(secret, sizeof(secret)) != 1) {
		report_add(&r, "TLS: no random bytes for the session ticket keys");
		goto fail;
	}
	tls_ticket_keys_init(&g->keys, secret);
	OPENSSL_cleanse(secret, sizeof(secret));
	if (cfg->nlisteners > 0 &&
	    (g->servers = calloc(cfg->nlisteners, sizeof(*g->servers))) == NULL) {
		report_add(&r, "TLS: out of memory");
		goto fail;
	}
	g->nservers = cfg->nlisteners;
	for (i = 0; i < cfg->nlisteners; i++) {
		if (cfg->listeners[i].tls_set)
			server_build(g, i, &cfg->listeners[i], &r);
	}
	/* Per backend, in config order, once any is https; client contexts grow as they differ. */
	for (i = 0; i < cfg->nbackends && g->backends == NULL; i++) {
		if (cfg->backends[i].addr.tls &&
		    (g->backends = calloc(cfg->nbackends, sizeof(*g->backends))) == NULL) {
			report_add(&r, "TLS: out of memory");
			goto fail;
		}
	}
	if (g->backends != NULL)
		g->nbackends = cfg->nbackends;
	for (i = 0; g->backends != NULL && i < cfg->nbackends; i++) {
		const struct config_backend *cb = &cfg->backends[i];

		g->backends[i].client = -1;
		/* The slots of a discovered name share its settings: built (and reported) once. */
		if (cb->discover != CONFIG_DISCOVER_NONE && cb->discover_first != i) {
			g->backends[i] = g->backends[cb->discover_first];
			continue;
		}
		if (cb->addr.tls)
			client_build(g, i, cb, &r);
	}
	if (r.count > 0)
		goto fail;
	*out = g;
	return 0;
fail:
	tls_generation_free(g);
	return r.count;
}

void
tls_generation_free(struct tls_generation *g)
{
	size_t i, j;

	if (g == NULL)
		return;
	for (i = 0; i < g->nservers; i++) {
		SSL_CTX_free(g->servers[i].ctx);
		for (j = 0; j < CONFIG_CERTS_MAX; j++)
			cert_free(&g->servers[i].certs[j]);
	}
	free(g->servers);
	for (i = 0; i < g->nclients; i++)
		SSL_CTX_free(g->clients[i].ctx);
	free(g->clients);
	for (i = 0; i < g->nbackends; i++)
		SSL_SESSION_free(g->backends[i].session);
	free(g->backends);
	OPENSSL_cleanse(&g->keys, sizeof(g->keys));
	free(g);
}
