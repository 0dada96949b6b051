/*
 * Unit tests for tls.c: keys and self-signed certificates made here with
 * OpenSSL at test time (RSA, ECDSA P-256, a wildcard, a CN-only one, an
 * expired one, one not valid yet), loading and every message, SNI, ALPN,
 * versions, ticket keys and resumption, backend clients; every handshake
 * runs in memory, a client SSL and a server SSL joined by a BIO pair.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "roundguard/config.h"
#include "roundguard/metrics.h"
#include "roundguard/tls.h"
#include "roundguard/transport.h"
#include "unit.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define DAY 86400
#define ERR_LEN 8192
#define DOC_LEN 8192
#define NAME "t.json"

/* What main() makes once, before the tests fork: keys, certificates, their files. */
static struct {
	char dir[256];
	time_t t0;			/* the certificates' validity counts from here */
	EVP_PKEY *rsa, *ec, *ec2, *small;
	X509 *a_rsa, *a_ec, *w, *cn, *expired, *future, *small_cert;
} f;

static char err[ERR_LEN];
static time_t fake_time;

static time_t
fake_now(void)
{
	return fake_time;
}

/* ---- making certificates ---- */

/* main() makes them outside any test, where ck_assert() cannot report. */
#define REQUIRE(cond) do {							\
	if (!(cond)) {								\
		fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #cond);	\
		ERR_print_errors_fp(stderr);					\
		abort();							\
	}									\
} while (0)

static X509 *
make_cert(EVP_PKEY *key, const char *cn, const char *san, long from_days, long to_days)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name;
	X509V3_CTX v3;
	X509_EXTENSION *e;

	REQUIRE(x != NULL);
	REQUIRE(X509_set_version(x, 2) == 1);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	REQUIRE(X509_time_adj_ex(X509_getm_notBefore(x), (int)from_days, 0, &f.t0) != NULL);
	REQUIRE(X509_time_adj_ex(X509_getm_notAfter(x), (int)to_days, 0, &f.t0) != NULL);
	REQUIRE(X509_set_pubkey(x, key) == 1);
	name = X509_get_subject_name(x);
	REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
	    -1, -1, 0) == 1);
	REQUIRE(X509_set_issuer_name(x, name) == 1);
	if (san != NULL) {
		X509V3_set_ctx_nodb(&v3);
		X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
		e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
		REQUIRE(e != NULL);
		REQUIRE(X509_add_ext(x, e, -1) == 1);
		X509_EXTENSION_free(e);
	}
	REQUIRE(X509_sign(x, key, EVP_sha256()) != 0);
	return x;
}

static const char *
path(const char *file)
{
	static char buf[4][512];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", f.dir, file);
	return p;
}

static FILE *
create(const char *file)
{
	FILE *fp = fopen(path(file), "w");

	REQUIRE(fp != NULL);
	return fp;
}

static void
write_cert(const char *file, X509 *x, X509 *also)
{
	FILE *fp = create(file);

	REQUIRE(PEM_write_X509(fp, x) == 1);
	if (also != NULL)
		REQUIRE(PEM_write_X509(fp, also) == 1);
	fclose(fp);
}

static void
write_key(const char *file, EVP_PKEY *k, const char *password)
{
	FILE *fp = create(file);

	REQUIRE(PEM_write_PrivateKey(fp, k, password != NULL ? EVP_aes_128_cbc() : NULL, NULL, 0,
	    NULL, (void *)(uintptr_t)password) == 1);
	fclose(fp);
}

static void
write_text(const char *file, const char *text)
{
	FILE *fp = create(file);

	fputs(text, fp);
	fclose(fp);
}

static void
setup(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(f.dir, sizeof(f.dir), "%s/rg-test-tls.XXXXXX", tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	REQUIRE(mkdtemp(f.dir) != NULL);
	f.t0 = time(NULL);
	REQUIRE((f.rsa = EVP_RSA_gen(2048)) != NULL);
	REQUIRE((f.ec = EVP_EC_gen("P-256")) != NULL);
	REQUIRE((f.ec2 = EVP_EC_gen("P-256")) != NULL);
	/* Under the 2048 bits that OpenSSL's default security level (2 on Debian) asks for. */
	REQUIRE((f.small = EVP_RSA_gen(1024)) != NULL);

	f.a_rsa = make_cert(f.rsa, "a.example", "DNS:a.example,DNS:www.a.example", -1, 30);
	f.a_ec = make_cert(f.ec, "a.example", "DNS:a.example", -1, 40);
	f.w = make_cert(f.ec2, "wildcard", "DNS:*.w.example", -1, 50);
	f.cn = make_cert(f.rsa, "cn.example", NULL, -1, 60);
	f.expired = make_cert(f.rsa, "a.example", "DNS:a.example", -10, -1);
	f.future = make_cert(f.rsa, "a.example", "DNS:a.example", 1, 10);
	f.small_cert = make_cert(f.small, "small.example", "DNS:small.example", -1, 30);

	write_cert("a_rsa.pem", f.a_rsa, NULL);
	write_key("rsa.key", f.rsa, NULL);
	write_cert("a_ec.pem", f.a_ec, NULL);
	write_key("ec.key", f.ec, NULL);
	write_cert("w.pem", f.w, NULL);
	write_key("ec2.key", f.ec2, NULL);
	write_cert("cn.pem", f.cn, NULL);
	write_cert("expired.pem", f.expired, NULL);
	write_cert("future.pem", f.future, NULL);
	write_cert("small.pem", f.small_cert, NULL);
	write_key("small.key", f.small, NULL);
	write_key("encrypted.key", f.rsa, "secret");
	/* A leaf followed by an "intermediate": the chain goes out behind the leaf. */
	write_cert("chain.pem", f.a_rsa, f.w);
	write_text("garbage.txt", "hello, not a certificate\n");
	write_text("bad.pem", "-----BEGIN CERTIFICATE-----\nbm90IERFUg==\n-----END CERTIFICATE-----\n");
	write_text("unreadable.pem", "");
	chmod(path("unreadable.pem"), 0);
	/* Every test certificate as a trust anchor, for backend clients. */
	{
		FILE *fp = create("bundle.pem");

		PEM_write_X509(fp, f.a_rsa);
		PEM_write_X509(fp, f.a_ec);
		PEM_write_X509(fp, f.w);
		PEM_write_X509(fp, f.cn);
		fclose(fp);
	}
}

static void
teardown(void)
{
	static const char *const files[] = { "a_rsa.pem", "rsa.key", "a_ec.pem", "ec.key", "w.pem",
	    "ec2.key", "cn.pem", "expired.pem", "future.pem", "small.pem", "small.key",
	    "encrypted.key", "chain.pem", "garbage.txt", "bad.pem", "unreadable.pem", "bundle.pem" };
	size_t i;

	for (i = 0; i < COUNT(files); i++)
		unlink(path(files[i]));
	rmdir(f.dir);
	X509_free(f.a_rsa);
	X509_free(f.a_ec);
	X509_free(f.w);
	X509_free(f.cn);
	X509_free(f.expired);
	X509_free(f.future);
	X509_free(f.small_cert);
	EVP_PKEY_free(f.rsa);
	EVP_PKEY_free(f.ec);
	EVP_PKEY_free(f.ec2);
	EVP_PKEY_free(f.small);
}

/* ---- configurations ---- */

/* text with ' as " and @ as the fixture's directory. */
static const char *
expand(const char *text)
{
	static char out[DOC_LEN];
	size_t w = 0, i;

	for (i = 0; text[i] != '\0' && w + sizeof(f.dir) + 2 < sizeof(out); i++) {
		if (text[i] == '@') {
			w += (size_t)snprintf(out + w, sizeof(out) - w, "%s", f.dir);
			continue;
		}
		out[w++] = text[i] == '\'' ? '"' : text[i];
	}
	out[w] = '\0';
	return out;
}

/* A validated configuration from listeners and backends written as in expand(). */
static void
make_config(struct config *cfg, const char *listeners, const char *backends)
{
	char doc[DOC_LEN];
	const char *text;

	snprintf(doc, sizeof(doc), "{'listeners': [%s], 'backends': [%s]}", listeners,
	    backends != NULL ? backends : "'http://127.0.0.1:1'");
	text = expand(doc);
	config_defaults(cfg);
	err[0] = '\0';
	ck_assert_msg(config_parse_json(cfg, NAME, text, strlen(text), err, sizeof(err)) == 0, "%s", err);
	ck_assert_msg(config_validate(cfg, err, sizeof(err)) == 0, "%s", err);
}

/* The listener of most tests: a.example as RSA and ECDSA, a wildcard, a CN-only name. */
#define MAIN_CERTS \
	"{'cert': '@/a_rsa.pem', 'key': '@/rsa.key'}, {'cert': '@/a_ec.pem', 'key': '@/ec.key'}," \
	"{'cert': '@/w.pem', 'key': '@/ec2.key'}, {'cert': '@/cn.pem', 'key': '@/rsa.key'}"
#define MAIN_LISTENER "{'listen': ':443', 'tls': {'certificates': [" MAIN_CERTS "]}}"
#define STRICT_LISTENER \
	"{'listen': ':444', 'tls': {'strict_sni': true, 'certificates': [" MAIN_CERTS "]}}"

static struct tls_generation *
generation(const struct config *cfg)
{
	struct tls_generation *g;

	err[0] = '\0';
	ck_assert_msg(tls_generation_new(cfg, &g, err, sizeof(err)) == 0, "%s", err);
	ck_assert_ptr_nonnull(g);
	return g;
}

/* ---- handshakes in memory ---- */

struct client_opts {
	const char *sni;		/* NULL: none */
	const unsigned char *alpn;	/* wire format; NULL: none */
	size_t alpn_len;
	int max_version;		/* 0: any */
	const char *sigalgs;		/* NULL: OpenSSL's */
	bool verify;			/* against the test certificates, for the SNI name */
};

static SSL *
test_client(const struct client_opts *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	X509_STORE *store;
	SSL *ssl;

	ck_assert_ptr_nonnull(ctx);
	if (o->max_version != 0) {
		/* Level 0, so that old versions fail because of the server, not this client. */
		SSL_CTX_set_security_level(ctx, 0);
		ck_assert_int_eq(SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION), 1);
		ck_assert_int_eq(SSL_CTX_set_max_proto_version(ctx, o->max_version), 1);
	}
	/* OpenSSL's macros cast their argument to char *: a copy, not a const one. */
	if (o->sigalgs != NULL) {
		char sigalgs[256];

		strlcpy(sigalgs, o->sigalgs, sizeof(sigalgs));
		ck_assert_int_eq(SSL_CTX_set1_sigalgs_list(ctx, sigalgs), 1);
	}
	if (o->alpn != NULL)
		ck_assert_int_eq(SSL_CTX_set_alpn_protos(ctx, o->alpn, (unsigned)o->alpn_len), 0);
	store = SSL_CTX_get_cert_store(ctx);
	X509_STORE_add_cert(store, f.a_rsa);
	X509_STORE_add_cert(store, f.a_ec);
	X509_STORE_add_cert(store, f.w);
	X509_STORE_add_cert(store, f.cn);
	SSL_CTX_set_verify(ctx, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	ck_assert_ptr_nonnull(ssl);
	if (o->sni != NULL) {
		char sni[256];

		strlcpy(sni, o->sni, sizeof(sni));
		ck_assert_int_eq(SSL_set_tlsext_host_name(ssl, sni), 1);
		if (o->verify)
			ck_assert_int_eq(SSL_set1_host(ssl, o->sni), 1);
	}
	SSL_set_connect_state(ssl);
	return ssl;
}

/* One side's step: 1 done, 0 wants more, -1 failed. */
static int
step(SSL *ssl)
{
	int r = SSL_do_handshake(ssl), e;

	if (r == 1)
		return 1;
	e = SSL_get_error(ssl, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/*
 * Run the handshake between c and s over a BIO pair; true if both ended it.
 * A failed side's alert is read by the other before this returns. Then the
 * client reads what the server sent after the handshake (TLS 1.3 tickets).
 */
static bool
handshake(SSL *c, SSL *s)
{
	BIO *bc, *bs;
	int rc = 0, rs = 0, i;
	char byte;

	ck_assert_int_eq(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	for (i = 0; i < 100 && (rc == 0 || rs == 0); i++) {
		if (rc == 0)
			rc = step(c);
		if (rs == 0)
			rs = step(s);
	}
	ERR_clear_error();
	if (rc != 1 || rs != 1)
		return false;
	ck_assert_int_eq(SSL_read(c, &byte, 1), -1);
	ck_assert_int_eq(SSL_get_error(c, -1), SSL_ERROR_WANT_READ);
	return true;
}

/*
 * Close both ends with close_notify: OpenSSL marks the session of a
 * connection freed without it not resumable (a truncation attack guard).
 */
static void
close_both(SSL *c, SSL *s)
{
	SSL_shutdown(c);
	SSL_shutdown(s);
	SSL_shutdown(s);
	SSL_shutdown(c);
	ERR_clear_error();
}

/* Handshake a test client with listener li of g; the certificate the client got (a reference), or NULL. */
static X509 *
served(struct tls_generation *g, size_t li, const struct client_opts *o)
{
	SSL *c = test_client(o), *s = tls_server_new(g, li);
	X509 *peer = NULL;

	ck_assert_ptr_nonnull(s);
	if (handshake(c, s)) {
		peer = SSL_get1_peer_certificate(c);
		close_both(c, s);
	}
	SSL_free(c);
	SSL_free(s);
	return peer;
}

static void
assert_served(struct tls_generation *g, size_t li, const struct client_opts *o, X509 *want,
    const char *what)
{
	X509 *got = served(g, li, o);

	ck_assert_msg(got != NULL, "%s: handshake failed", what);
	ck_assert_msg(X509_cmp(got, want) == 0, "%s: another certificate was served", what);
	X509_free(got);
}

/* ---- loading ---- */

START_TEST(load_ok)
{
	struct config cfg;
	struct tls_generation *g;
	struct tls_cert_expiry ex[8];
	SSL_CTX *ctx;
	SSL *ssl;

	make_config(&cfg, MAIN_LISTENER ", {'listen': ':80'}, {'listen': ':8443', 'name': 'chain',"
	    " 'tls': {'certificates': [{'cert': '@/chain.pem', 'key': '@/rsa.key'}]}}", NULL);
	g = generation(&cfg);
	ck_assert_str_eq(err, "");
	ctx = tls_server_ctx(g, 0);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_ptr_null(tls_server_ctx(g, 1));
	ck_assert_ptr_null(tls_server_new(g, 1));
	ck_assert_ptr_null(tls_server_ctx(g, 3));
	ck_assert_ptr_nonnull(tls_server_ctx(g, 2));

	/* The settings the design asks for. */
	ck_assert(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
	ck_assert(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
	ck_assert(!(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET));
	ck_assert(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
	ck_assert_int_eq(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
	ck_assert_uint_eq(SSL_CTX_get_max_early_data(ctx), 0);
	ck_assert_uint_eq(SSL_CTX_get_recv_max_early_data(ctx), 0);
	ck_assert_int_eq(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
	ssl = tls_server_new(g, 0);
	ck_assert_ptr_nonnull(ssl);
	ck_assert(SSL_is_server(ssl));
	ck_assert(SSL_get_mode(ssl) & SSL_MODE_RELEASE_BUFFERS);
	SSL_free(ssl);

	/* Expiry: every certificate, in order, with its first name. */
	ck_assert_uint_eq(tls_cert_expiry(g, ex, COUNT(ex)), 5);
	ck_assert_str_eq(ex[0].listener, "https-443");
	ck_assert_str_eq(ex[0].name, "a.example");
	ck_assert_int_eq(ex[0].not_after, (int64_t)f.t0 + 30 * DAY);
	ck_assert_str_eq(ex[1].name, "a.example");
	ck_assert_int_eq(ex[1].not_after, (int64_t)f.t0 + 40 * DAY);
	ck_assert_str_eq(ex[2].name, "*.w.example");
	ck_assert_int_eq(ex[2].not_after, (int64_t)f.t0 + 50 * DAY);
	ck_assert_str_eq(ex[3].name, "cn.example");
	ck_assert_int_eq(ex[3].not_after, (int64_t)f.t0 + 60 * DAY);
	ck_assert_str_eq(ex[4].listener, "chain");
	ck_assert_uint_eq(tls_cert_expiry(g, ex, 2), 5);

	tls_generation_free(g);
	tls_generation_free(NULL);
	config_free(&cfg);
}
END_TEST

/* A chain file's intermediates are sent behind the leaf. */
START_TEST(chain_sent)
{
	struct client_opts o = { .sni = "a.example" };
	struct config cfg;
	struct tls_generation *g;
	SSL *c, *s;

	make_config(&cfg, "{'listen': ':443', 'tls': {'certificates': [{'cert': '@/chain.pem',"
	    " 'key': '@/rsa.key'}]}}", NULL);
	g = generation(&cfg);
	c = test_client(&o);
	s = tls_server_new(g, 0);
	ck_assert(handshake(c, s));
	ck_assert_int_eq(sk_X509_num(SSL_get_peer_cert_chain(c)), 2);
	SSL_free(c);
	SSL_free(s);
	tls_generation_free(g);
	config_free(&cfg);
}
END_TEST

/* The first of them ($OK for the second) with one file swapped for another; the exact problem. */
struct bad_cert {
	const char *certs;	/* the certificates array, written as in expand() */
	const char *want;	/* the whole message, as in expand(); ` for "; "*" at the end: a prefix */
};

static const struct bad_cert bad_certs[] = {
	{ "{'cert': '@/none.pem', 'key': '@/rsa.key'}",
	  NAME ": listeners[0].tls.certificates[0].cert: `@/none.pem`: cannot open: No such file or "
	  "directory" },
	{ "{'cert': '@', 'key': '@/rsa.key'}",
	  NAME ": listeners[0].tls.certificates[0].cert: `@`: is a directory, not a file" },
	{ "{'cert': '@/garbage.txt', 'key': '@/rsa.key'}",
	  NAME ": listeners[0].tls.certificates[0].cert: `@/garbage.txt`: not PEM (no `-----BEGIN` line)" },
	{ "{'cert': '@/rsa.key', 'key': '@/rsa.key'}",
	  NAME ": listeners[0].tls.certificates[0].cert: `@/rsa.key`: no certificate in the file" },
	{ "{'cert': '@/bad.pem', 'key': '@/rsa.key'}",
	  NAME ": listeners[0].tls.certificates[0].cert: `@/bad.pem`: a PEM block that is no valid "
	  "certificate (OpenSSL: *" },
	{ "{'cert': '@/a_rsa.pem', 'key': '@/bad.pem'}",
	  NAME ": listeners[0].tls.certificates[0].key: `@/bad.pem`: no private key in the file" },
	{ "{'cert': '@/a_rsa.pem', 'key': '@/none.key'}",
	  NAME ": listeners[0].tls.certificates[0].key: `@/none.key`: cannot open: No such file or "
	  "directory" },
	{ "{'cert': '@/a_rsa.pem', 'key': '@/a_rsa.pem'}",
	  NAME ": listeners[0].tls.certificates[0].key: `@/a_rsa.pem`: no private key in the file" },
	{ "{'cert': '@/a_rsa.pem', 'key': '@/garbage.txt'}",
	  NAME ": listeners[0].tls.certificates[0].key: `@/garbage.txt`: not PEM (no `-----BEGIN` line)" },
	{ "{'cert': '@/a_rsa.pem', 'key': '@/encrypted.key'}",
	  NAME ": listeners[0].tls.certificates[0].key: `@/encrypted.key`: the key is encrypted "
	  "(give it unencrypted, readable by root only)" },
	{ "{'cert': '@/a_rsa.pem', 'key': '@/ec.key'}",
	  NAME ": listeners[0].tls.certificates[0].key: `@/ec.key`: the key does not match the "
	  "certificate in `@/a_rsa.pem`" },
	{ "{'cert': '@/a_rsa.pem', 'key': '@/rsa.key'}, {'cert': '@/a_ec.pem', 'key': '@/ec2.key'}",
	  NAME ": listeners[0].tls.certificates[1].key: `@/ec2.key`: the key does not match the "
	  "certificate in `@/a_ec.pem`" },
	{ "{'cert': '@/small.pem', 'key': '@/small.key'}",
	  NAME ": listeners[0].tls.certificates[0].cert: `@/small.pem`: OpenSSL refuses it: "
	  "ee key too small" },
};

START_TEST(bad_cert)
{
	const struct bad_cert *c = &bad_certs[_i];
	char listener[DOC_LEN], want[ERR_LEN];
	struct config cfg;
	struct tls_generation *g = (void *)1;
	size_t i;

	snprintf(listener, sizeof(listener), "{'listen': ':443', 'tls': {'certificates': [%s]}}",
	    c->certs);
	make_config(&cfg, listener, NULL);
	strlcpy(want, expand(c->want), sizeof(want));
	for (i = 0; want[i] != '\0'; i++)
		want[i] = want[i] == '`' ? '"' : want[i];
	err[0] = '\0';
	ck_assert_int_eq(tls_generation_new(&cfg, &g, err, sizeof(err)), 1);
	ck_assert_ptr_null(g);
	/* OpenSSL's own words differ between its versions. */
	if (want[0] != '\0' && want[strlen(want) - 1] == '*')
		ck_assert_msg(strncmp(err, want, strlen(want) - 1) == 0, "%s", err);
	else
		ck_assert_str_eq(err, want);
	config_free(&cfg);
}
END_TEST

static const char *
utc(char *buf, size_t len, time_t t)
{
	struct tm tm;

	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	return buf;
}

/* Out of its validity period, with the dates. */
START_TEST(bad_dates)
{
	char want[ERR_LEN], d1[32], d2[32], d3[32];
	struct config cfg;
	struct tls_generation *g;

	make_config(&cfg, "{'listen': ':443', 'tls': {'certificates': ["
	    "{'cert': '@/a_rsa.pem', 'key': '@/rsa.key'}, {'cert': '@/expired.pem', 'key': '@/rsa.key'},"
	    "{'cert': '@/future.pem', 'key': '@/rsa.key'}]}}", NULL);
	err[0] = '\0';
	ck_assert_int_eq(tls_generation_new(&cfg, &g, err, sizeof(err)), 2);
	snprintf(want, sizeof(want), NAME ": listeners[0].tls.certificates[1].cert: \"%s/expired.pem\": "
	    "certificate expired on %s (notAfter)\n"
	    NAME ": listeners[0].tls.certificates[2].cert: \"%s/future.pem\": "
	    "certificate not valid before %s (notBefore; notAfter %s)", f.dir,
	    utc(d1, sizeof(d1), f.t0 - DAY), f.dir, utc(d2, sizeof(d2), f.t0 + DAY),
	    utc(d3, sizeof(d3), f.t0 + 10 * DAY));
	ck_assert_str_eq(err, want);
	config_free(&cfg);
}
END_TEST

/* Every problem of every listener and backend at once; err is appended to. */
START_TEST(all_problems)
{
	struct config cfg;
	struct tls_generation *g;
	const char *lines;

	make_config(&cfg, "{'listen': ':443', 'tls': {'certificates': [{'cert': '@/none.pem', 'key': "
	    "'@/rsa.key'}]}}, {'listen': ':444', 'tls': {'certificates': [{'cert': '@/a_rsa.pem',"
	    " 'key': '@/ec.key'}]}}", "'https://a.example', {'url': 'https://b.example', 'tls':"
	    " {'ca_file': '@/none.pem'}}, {'url': 'https://c.example', 'tls': {'ca_file': '@/rsa.key'}}");
	strcpy(err, "earlier problem");
	ck_assert_int_eq(tls_generation_new(&cfg, &g, err, sizeof(err)), 4);
	lines = expand("earlier problem\n"
	    NAME ": listeners[0].tls.certificates[0].cert: '@/none.pem': cannot open: No such file or directory\n"
	    NAME ": listeners[1].tls.certificates[0].key: '@/ec.key': the key does not match the certificate in '@/a_rsa.pem'\n"
	    NAME ": backends[1].tls.ca_file: '@/none.pem': cannot open: No such file or directory\n"
	    NAME ": backends[2].tls.ca_file: '@/rsa.key': no certificate in the file");
	ck_assert_str_eq(err, lines);
	config_free(&cfg);
}
END_TEST

START_TEST(unreadable)
{
	char want[ERR_LEN];
	struct config cfg;
	struct tls_generation *g;

	if (geteuid() == 0)
		return;		/* root reads it anyway, which is the point of loading as root */
	make_config(&cfg, "{'listen': ':443', 'tls': {'certificates': [{'cert': '@/unreadable.pem',"
	    " 'key': '@/rsa.key'}]}}", NULL);
	err[0] = '\0';
	ck_assert_int_eq(tls_generation_new(&cfg, &g, err, sizeof(err)), 1);
	snprintf(want, sizeof(want), NAME ": listeners[0].tls.certificates[0].cert: "
	    "\"%s/unreadable.pem\": cannot open: Permission denied", f.dir);
	ck_assert_str_eq(err, want);
	config_free(&cfg);
}
END_TEST

/* ---- SNI ---- */

START_TEST(name_match)
{
	ck_assert_int_eq(tls_name_match("a.example", "a.example"), TLS_MATCH_EXACT);
	ck_assert_int_eq(tls_name_match("A.Example", "a.EXAMPLE"), TLS_MATCH_EXACT);
	ck_assert_int_eq(tls_name_match("*.w.example", "x.w.example"), TLS_MATCH_WILDCARD);
	ck_assert_int_eq(tls_name_match("*.W.example", "X.w.EXAMPLE"), TLS_MATCH_WILDCARD);
	/* Exactly one label. */
	ck_assert_int_eq(tls_name_match("*.w.example", "w.example"), TLS_MATCH_NONE);
	ck_assert_int_eq(tls_name_match("*.w.example", "x.y.w.example"), TLS_MATCH_NONE);
	ck_assert_int_eq(tls_name_match("*.w.example", ".w.example"), TLS_MATCH_NONE);
	/* Only a whole first label, and not over a single-label suffix. */
	ck_assert_int_eq(tls_name_match("x*.w.example", "xy.w.example"), TLS_MATCH_NONE);
	ck_assert_int_eq(tls_name_match("*.example", "a.example"), TLS_MATCH_NONE);
	ck_assert_int_eq(tls_name_match("a.example", "b.example"), TLS_MATCH_NONE);
	ck_assert_int_eq(tls_name_match("a.example", ""), TLS_MATCH_NONE);
	ck_assert_int_eq(tls_name_match("a.example", NULL), TLS_MATCH_NONE);
	ck_assert_str_eq(tls_match_str(TLS_MATCH_WILDCARD), "wildcard");
	ck_assert_str_eq(tls_match_str(TLS_MATCH_EXACT), "exact");
	ck_assert_str_eq(tls_match_str(TLS_MATCH_NONE), "none");
}
END_TEST

START_TEST(sni_select)
{
	struct config cfg;
	struct tls_generation *g;

	make_config(&cfg, MAIN_LISTENER ", " STRICT_LISTENER ", {'listen': ':80'}", NULL);
	g = generation(&cfg);
	/* Exact names first, in order; then wildcards; then certificates[0]. */
	ck_assert_int_eq(tls_server_select(g, 0, "a.example"), 0);
	ck_assert_int_eq(tls_server_select(g, 0, "A.EXAMPLE"), 0);
	ck_assert_int_eq(tls_server_select(g, 0, "www.a.example"), 0);
	ck_assert_int_eq(tls_server_select(g, 0, "x.w.example"), 2);
	ck_assert_int_eq(tls_server_select(g, 0, "cn.example"), 3);
	ck_assert_int_eq(tls_server_select(g, 0, "x.y.w.example"), 0);
	ck_assert_int_eq(tls_server_select(g, 0, "w.example"), 0);
	ck_assert_int_eq(tls_server_select(g, 0, "other.example"), 0);
	ck_assert_int_eq(tls_server_select(g, 0, ""), 0);
	ck_assert_int_eq(tls_server_select(g, 0, NULL), 0);
	/* strict_sni: refused unless a certificate covers the name. */
	ck_assert_int_eq(tls_server_select(g, 1, "a.example"), 0);
	ck_assert_int_eq(tls_server_select(g, 1, "x.w.example"), 2);
	ck_assert_int_eq(tls_server_select(g, 1, "other.example"), -1);
	ck_assert_int_eq(tls_server_select(g, 1, NULL), -1);
	/* Not a TLS listener, or none at all. */
	ck_assert_int_eq(tls_server_select(g, 2, "a.example"), -1);
	ck_assert_int_eq(tls_server_select(g, 3, "a.example"), -1);
	tls_generation_free(g);
	config_free(&cfg);
}
END_TEST

#define RSA_SIGALGS "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"
#define EC_SIGALGS "ecdsa_secp256r1_sha256"

/* Real handshakes: the certificate a client gets for its SNI and its signature algorithms. */
START_TEST(sni_handshakes)
{
	struct config cfg;
	struct tls_generation *g;
	struct client_opts o;

	make_config(&cfg, MAIN_LISTENER ", " STRICT_LISTENER, NULL);
	g = generation(&cfg);

	o = (struct client_opts){ .sni = "a.example", .sigalgs = EC_SIGALGS, .verify = true };
	assert_served(g, 0, &o, f.a_ec, "a.example, ECDSA client");
	o.sigalgs = RSA_SIGALGS;
	assert_served(g, 0, &o, f.a_rsa, "a.example, RSA client");
	o = (struct client_opts){ .sni = "www.a.example", .sigalgs = RSA_SIGALGS, .verify = true };
	assert_served(g, 0, &o, f.a_rsa, "www.a.example");
	o = (struct client_opts){ .sni = "x.w.example", .verify = true };
	assert_served(g, 0, &o, f.w, "wildcard");
	o = (struct client_opts){ .sni = "cn.example", .sigalgs = RSA_SIGALGS, .verify = true };
	assert_served(g, 0, &o, f.cn, "CN-only certificate");
	/* Only RSA for cn.example: an ECDSA-only client gets nothing, not a.example's ECDSA one. */
	o.sigalgs = EC_SIGALGS;
	ck_assert_ptr_null(served(g, 0, &o));

	/* Unknown and no SNI: the default certificates, both key types. */
	o = (struct client_opts){ .sni = "other.example", .sigalgs = EC_SIGALGS };
	assert_served(g, 0, &o, f.a_ec, "unknown name, ECDSA client");
	o.sigalgs = RSA_SIGALGS;
	assert_served(g, 0, &o, f.a_rsa, "unknown name, RSA client");
	o = (struct client_opts){ .sigalgs = RSA_SIGALGS };
	assert_served(g, 0, &o, f.a_rsa, "no SNI");
	/* After another name's certificate, the default ones again: nothing sticks to the context. */
	o = (struct client_opts){ .sni = "x.w.example" };
	assert_served(g, 0, &o, f.w, "wildcard again");
	o = (struct client_opts){ .sigalgs = EC_SIGALGS };
	assert_served(g, 0, &o, f.a_ec, "no SNI after a wildcard");

	/* strict_sni */
	o = (struct client_opts){ .sni = "x.w.example", .verify = true };
	assert_served(g, 1, &o, f.w, "strict, covered");
	o = (struct client_opts){ .sni = "other.example" };
	ck_assert_ptr_null(served(g, 1, &o));
	o = (struct client_opts){ .sni = NULL };
	ck_assert_ptr_null(served(g, 1, &o));
	tls_generation_free(g);
	config_free(&cfg);
}
END_TEST

/* The client learns why: an unrecognized_name alert. */
START_TEST(strict_alert)
{
	struct client_opts o = { .sni = "other.example" };
	struct config cfg;
	struct tls_generation *g;
	SSL *c, *s;
	BIO *bc, *bs;
	int i, rc = 0, rs = 0;
	unsigned long e = 0;

	make_config(&cfg, STRICT_LISTENER, NULL);
	g = generation(&cfg);
	c = test_client(&o);
	s = tls_server_new(g, 0);
	ck_assert_int_eq(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	/* The server's own error is cleared, so that what is left is what the client read. */
	for (i = 0; i < 10 && rc == 0; i++) {
		if ((rc = step(c)) != 0)
			break;
		if (rs == 0 && (rs = step(s)) == -1)
			ERR_clear_error();
	}
	ck_assert_int_eq(rs, -1);
	ck_assert_int_eq(rc, -1);
	e = ERR_peek_last_error();
	ck_assert_int_eq(ERR_GET_REASON(e), SSL_R_TLSV1_UNRECOGNIZED_NAME);
	ERR_clear_error();
	SSL_free(c);
	SSL_free(s);
	tls_generation_free(g);
	config_free(&cfg);
}
END_TEST

/* ---- ALPN and versions ---- */

START_TEST(alpn)
{
	static const unsigned char h2_h1[] = "\x02h2\x08http/1.1";
	static const unsigned char h2[] = "\x02h2";
	struct client_opts o = { .sni = "a.example" };
	struct config cfg;
	struct tls_generation *g;
	const unsigned char *sel;
	unsigned int len;
	SSL *c, *s;

	make_config(&cfg, MAIN_LISTENER, NULL);
	g = generation(&cfg);

	o.alpn = h2_h1;
	o.alpn_len = sizeof(h2_h1) - 1;
	c = test_client(&o);
	s = tls_server_new(g, 0);
	ck_assert(handshake(c, s));
	SSL_get0_alpn_selected(c, &sel, &len);
	ck_assert_uint_eq(len, 8);
	ck_assert(memcmp(sel, "http/1.1", 8) == 0);
	SSL_free(c);
	SSL_free(s);

	/* h2 alone: no_application_protocol (RFC 7301 3.2), until the workers speak it. */
	o.alpn = h2;
	o.alpn_len = sizeof(h2) - 1;
	ck_assert_ptr_null(served(g, 0, &o));

	/* No ALPN at all is fine. */
	o.alpn = NULL;
	c = test_client(&o);
	s = tls_server_new(g, 0);
	ck_assert(handshake(c, s));
	SSL_get0_alpn_selected(c, &sel, &len);
	ck_assert_uint_eq(len, 0);
	SSL_free(c);
	SSL_free(s);
	tls_generation_free(g);
	config_free(&cfg);
}
END_TEST

START_TEST(versions)
{
	struct client_opts o = { .sni = "a.example" };
	struct config cfg;
	struct tls_generation *g;
	SSL *c, *s;
	X509 *x;

	make_config(&cfg, MAIN_LISTENER ", {'listen': ':444', 'tls': {'min_version': 'TLSv1.3',"
	    " 'certificates': [" MAIN_CERTS "]}}", NULL);
	g = generation(&cfg);
	/* TLS 1.1 and older: refused. */
	o.max_version = TLS1_1_VERSION;
	ck_assert_ptr_null(served(g, 0, &o));
	o.max_version = TLS1_VERSION;
	ck_assert_ptr_null(served(g, 0, &o));
	/* TLS 1.2 with a cipher of the intermediate list; 1.3 by default. */
	o.max_version = TLS1_2_VERSION;
	c = test_client(&o);
	s = tls_server_new(g, 0);
	ck_assert(handshake(c, s));
	ck_assert_int_eq(SSL_version(c), TLS1_2_VERSION);
	ck_assert_ptr_nonnull(strstr(cfg.listeners[0].tls.ciphers, SSL_get_cipher_name(c)));
	SSL_free(c);
	SSL_free(s);
	o.max_version = 0;
	c = test_client(&o);
	s = tls_server_new(g, 0);
	ck_assert(handshake(c, s));
	ck_assert_int_eq(SSL_version(c), TLS1_3_VERSION);
	SSL_free(c);
	SSL_free(s);
	/* min_version TLSv1.3 refuses 1.2. */
	o.max_version = TLS1_2_VERSION;
	ck_assert_ptr_null(served(g, 1, &o));
	o.max_version = 0;
	ck_assert_ptr_nonnull(x = served(g, 1, &o));
	X509_free(x);
	tls_generation_free(g);
	config_free(&cfg);
}
END_TEST

/* ---- ticket keys ---- */

START_TEST(days)
{
	ck_assert_int_eq(tls_day(0), 0);
	ck_assert_int_eq(tls_day(DAY - 1), 0);
	ck_assert_int_eq(tls_day(DAY), 1);
	ck_assert_int_eq(tls_day(-1), -1);
	ck_assert_int_eq(tls_day(-DAY), -1);
	ck_assert_int_eq(tls_day(-DAY - 1), -2);
	ck_assert_int_eq(tls_day((time_t)1700000000), 19675);
}
END_TEST

START_TEST(ticket_derivation)
{
	unsigned char s1[TLS_SECRET_LEN], s2[TLS_SECRET_LEN];
	struct tls_ticket_keys a, b, c;
	struct tls_ticket_key day1;

	memset(s1, 0x11, sizeof(s1));
	memset(s2, 0x22, sizeof(s2));
	tls_ticket_keys_init(&a, s1);
	tls_ticket_keys_init(&b, s1);
	tls_ticket_keys_init(&c, s2);
	ck_assert_int_eq(a.day, -1);
	ck_assert_int_eq(tls_ticket_keys_rotate(&a, 20000), 0);
	ck_assert_int_eq(tls_ticket_keys_rotate(&b, 20000), 0);
	ck_assert_int_eq(tls_ticket_keys_rotate(&c, 20000), 0);
	/* Same secret, same day: the same keys, in every worker. */
	ck_assert(memcmp(&a.cur, &b.cur, sizeof(a.cur)) == 0);
	ck_assert(memcmp(&a.prev, &b.prev, sizeof(a.prev)) == 0);
	/* Another secret (another generation): other keys. */
	ck_assert(memcmp(&a.cur, &c.cur, sizeof(a.cur)) != 0);
	ck_assert(memcmp(a.cur.name, c.cur.name, sizeof(a.cur.name)) != 0);
	/* The three keys of a day differ from one another, and from the day before. */
	ck_assert(memcmp(a.cur.aes, a.cur.hmac, sizeof(a.cur.aes)) != 0);
	ck_assert(memcmp(&a.cur, &a.prev, sizeof(a.cur)) != 0);
	/* The same day again changes nothing; the next day moves today's key to prev. */
	day1 = a.cur;
	ck_assert_int_eq(tls_ticket_keys_rotate(&a, 20000), 0);
	ck_assert(memcmp(&a.cur, &day1, sizeof(day1)) == 0);
	ck_assert_int_eq(tls_ticket_keys_rotate(&a, 20001), 0);
	ck_assert_int_eq(a.day, 20001);
	ck_assert(memcmp(&a.cur, &day1, sizeof(day1)) != 0);
	ck_assert(memcmp(&a.prev, &day1, sizeof(day1)) == 0);
	/* Derived, not drawn: back to the first day gives its key again. */
	ck_assert_int_eq(tls_ticket_keys_rotate(&a, 20000), 0);
	ck_assert(memcmp(&a.cur, &day1, sizeof(day1)) == 0);
}
END_TEST

/* Each generation draws its own secret. */
START_TEST(generation_secrets)
{
	struct config cfg;
	struct tls_generation *g1, *g2;

	make_config(&cfg, MAIN_LISTENER, NULL);
	g1 = generation(&cfg);
	g2 = generation(&cfg);
	ck_assert(memcmp(tls_generation_keys(g1)->secret, tls_generation_keys(g2)->secret,
	    TLS_SECRET_LEN) != 0);
	ck_assert_int_eq(tls_generation_rotate(g1), 0);
	ck_assert_int_eq(tls_generation_keys(g1)->day, tls_day(time(NULL)));
	tls_generation_free(g1);
	tls_generation_free(g2);
	config_free(&cfg);
}
END_TEST

/* A full handshake with g, then its session; NULL if the server sent none. */
static SSL_SESSION *
first_session(struct tls_generation *g, int max_version)
{
	struct client_opts o = { .sni = "a.example", .max_version = max_version };
	SSL *c = test_client(&o), *s = tls_server_new(g, 0);
	SSL_SESSION *sess;

	ck_assert(handshake(c, s));
	ck_assert(!SSL_session_reused(c));
	sess = SSL_get1_session(c);
	close_both(c, s);
	SSL_free(c);
	SSL_free(s);
	return sess;
}

/* Whether a client offering sess to g resumes it. */
static bool
resumes(struct tls_generation *g, SSL_SESSION *sess, int max_version)
{
	struct client_opts o = { .sni = "a.example", .max_version = max_version };
	SSL *c = test_client(&o), *s = tls_server_new(g, 0);
	bool reused;

	ck_assert_int_eq(SSL_set_session(c, sess), 1);
	ck_assert(handshake(c, s));
	reused = SSL_session_reused(c);
	close_both(c, s);
	SSL_free(c);
	SSL_free(s);
	return reused;
}

/*
 * Two generations with the same secret stand for two workers of one
 * generation: each resumes the other's sessions, on the next day too
 * (yesterday's key), not two days later; another secret never.
 */
START_TEST(tickets_resume)
{
	static const int tls_versions[] = { TLS1_2_VERSION, 0 };
	unsigned char secret[TLS_SECRET_LEN];
	struct config cfg;
	struct tls_generation *w1, *w2, *other;
	SSL_SESSION *sess;
	size_t i;

	memset(secret, 0x5a, sizeof(secret));
	make_config(&cfg, MAIN_LISTENER, NULL);
	w1 = generation(&cfg);
	w2 = generation(&cfg);
	other = generation(&cfg);
	tls_generation_set_secret(w1, secret);
	tls_generation_set_secret(w2, secret);
	tls_generation_set_clock(w1, fake_now);
	tls_generation_set_clock(w2, fake_now);
	tls_generation_set_clock(other, fake_now);
	for (i = 0; i < COUNT(tls_versions); i++) {
		fake_time = f.t0;
		sess = first_session(w1, tls_versions[i]);
		ck_assert_ptr_nonnull(sess);
		ck_assert(SSL_SESSION_is_resumable(sess));
		ck_assert_msg(resumes(w2, sess, tls_versions[i]), "version %x: not resumed by another worker",
		    tls_versions[i]);
		ck_assert_msg(resumes(w1, sess, tls_versions[i]), "version %x: not resumed", tls_versions[i]);
		ck_assert_msg(!resumes(other, sess, tls_versions[i]), "version %x: resumed with another secret",
		    tls_versions[i]);
		fake_time = f.t0 + DAY;
		ck_assert_msg(resumes(w2, sess, tls_versions[i]), "version %x: not resumed the next day",
		    tls_versions[i]);
		fake_time = f.t0 + 2 * DAY;
		ck_assert_msg(!resumes(w2, sess, tls_versions[i]), "version %x: resumed two days later",
		    tls_versions[i]);
		SSL_SESSION_free(sess);
	}
	tls_generation_free(w1);
	tls_generation_free(w2);
	tls_generation_free(other);
	config_free(&cfg);
}
END_TEST

/* session_tickets: false: nothing to resume with, as the server keeps no session cache. */
START_TEST(tickets_off)
{
	struct config cfg;
	struct tls_generation *g;
	SSL_SESSION *sess;

	make_config(&cfg, "{'listen': ':443', 'tls': {'session_tickets': false, 'certificates': ["
	    MAIN_CERTS "]}}", NULL);
	g = generation(&cfg);
	ck_assert(SSL_CTX_get_options(tls_server_ctx(g, 0)) & SSL_OP_NO_TICKET);
	sess = first_session(g, TLS1_2_VERSION);
	ck_assert(!resumes(g, sess, TLS1_2_VERSION));
	SSL_SESSION_free(sess);
	sess = first_session(g, 0);
	ck_assert(sess == NULL || !resumes(g, sess, 0));
	SSL_SESSION_free(sess);
	tls_generation_free(g);
	config_free(&cfg);
}
END_TEST

/* ---- backend clients ---- */

#define BACKENDS \
	"{'url': 'https://a.example:8443', 'tls': {'ca_file': '@/bundle.pem'}}," \
	"{'url': 'https://127.0.0.1', 'tls': {'ca_file': '@/bundle.pem', 'server_name': 'a.example'}}," \
	"{'url': 'https://wrong.example', 'tls': {'ca_file': '@/bundle.pem'}}," \
	"{'url': 'https://wrong2.example', 'tls': {'ca_file': '@/bundle.pem', 'verify': false}}," \
	"{'url': 'https://127.0.0.2', 'tls': {'ca_file': '@/bundle.pem'}}," \
	"'https://a.example:9443'," \
	"'http://127.0.0.1:8001'"

/* Connect backend b of client to listener 0 of server; whether it worked, the verify result. */
static bool
connect_backend(struct tls_generation *client, size_t b, struct tls_generation *server,
    long *verify, bool *reused, const char **sni)
{
	char why[256];
	SSL *c = tls_client_new(client, b, why, sizeof(why)), *s = tls_server_new(server, 0);
	bool ok;

	ck_assert_msg(c != NULL, "%s", why);
	ok = handshake(c, s);
	*verify = SSL_get_verify_result(c);
	*reused = SSL_session_reused(c);
	*sni = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
	if (*sni != NULL)
		*sni = strcmp(*sni, "a.example") == 0 ? "a.example" : "other";
	if (ok) {
		const unsigned char *sel;
		unsigned int len;

		SSL_get0_alpn_selected(c, &sel, &len);
		ck_assert_uint_eq(len, 8);
		close_both(c, s);
	}
	SSL_free(c);
	SSL_free(s);
	return ok;
}

START_TEST(backend_clients)
{
	struct config cfg;
	struct tls_generation *server, *client;
	const char *sni;
	bool reused;
	long v;
	char why[256];

	make_config(&cfg, MAIN_LISTENER, BACKENDS);
	server = generation(&cfg);
	client = generation(&cfg);

	/* Verified against ca_file, for the URL's host, sent as SNI; ALPN http/1.1. */
	ck_assert(connect_backend(client, 0, server, &v, &reused, &sni));
	ck_assert_int_eq(v, X509_V_OK);
	ck_assert(!reused);
	ck_assert_str_eq(sni, "a.example");
	/* The session was kept (TLS 1.3: after the handshake) and is offered next time. */
	ck_assert_ptr_nonnull(tls_client_session_get(client, 0));
	ck_assert(connect_backend(client, 0, server, &v, &reused, &sni));
	ck_assert(reused);
	/* Forgotten: a full handshake again. */
	tls_client_session_set(client, 0, NULL);
	ck_assert_ptr_null(tls_client_session_get(client, 0));
	ck_assert(connect_backend(client, 0, server, &v, &reused, &sni));
	ck_assert(!reused);

	/* An address in the URL, server_name for SNI and the check. */
	ck_assert(connect_backend(client, 1, server, &v, &reused, &sni));
	ck_assert_int_eq(v, X509_V_OK);
	ck_assert_str_eq(sni, "a.example");
	ck_assert_ptr_null(tls_client_session_get(client, 2));

	/* A name the certificate does not carry: refused, unless verify is false. */
	ck_assert(!connect_backend(client, 2, server, &v, &reused, &sni));
	ck_assert_int_eq(v, X509_V_ERR_HOSTNAME_MISMATCH);
	ck_assert_ptr_null(tls_client_session_get(client, 2));
	ck_assert(connect_backend(client, 3, server, &v, &reused, &sni));

	/* An address and no server_name: no SNI, and the certificate must carry the address. */
	ck_assert(!connect_backend(client, 4, server, &v, &reused, &sni));
	ck_assert_int_eq(v, X509_V_ERR_IP_ADDRESS_MISMATCH);
	ck_assert_ptr_null(sni);

	/* The system's CAs by default: a self-signed certificate is refused. */
	ck_assert(!connect_backend(client, 5, server, &v, &reused, &sni));
	ck_assert_int_ne(v, X509_V_OK);

	/* Plain http, or no backend: no SSL. */
	ck_assert_ptr_null(tls_client_new(client, 6, why, sizeof(why)));
	ck_assert_str_eq(why, "not an https backend");
	ck_assert_ptr_null(tls_client_new(client, 7, why, sizeof(why)));
	ck_assert_ptr_null(tls_client_session_get(client, 7));
	tls_client_session_set(client, 7, NULL);

	tls_generation_free(server);
	tls_generation_free(client);
	config_free(&cfg);
}
END_TEST

/* A connection that ends without close_notify spoils its session: the next one starts afresh. */
START_TEST(backend_unclean_close)
{
	struct config cfg;
	struct tls_generation *server, *client;
	const char *sni;
	bool reused;
	long v;
	char why[256];
	SSL *c, *s;

	make_config(&cfg, MAIN_LISTENER, BACKENDS);
	server = generation(&cfg);
	client = generation(&cfg);
	ck_assert(connect_backend(client, 0, server, &v, &reused, &sni));
	c = tls_client_new(client, 0, why, sizeof(why));
	s = tls_server_new(server, 0);
	ck_assert(handshake(c, s));
	ck_assert(SSL_session_reused(c));
	SSL_free(c);
	SSL_free(s);
	ck_assert_ptr_nonnull(tls_client_session_get(client, 0));
	ck_assert(!SSL_SESSION_is_resumable(tls_client_session_get(client, 0)));
	ck_assert(connect_backend(client, 0, server, &v, &reused, &sni));
	ck_assert(!reused);
	ck_assert(connect_backend(client, 0, server, &v, &reused, &sni));
	ck_assert(reused);
	tls_generation_free(server);
	tls_generation_free(client);
	config_free(&cfg);
}
END_TEST

/* With TLS 1.2 the session is there at the end of the handshake. */
START_TEST(backend_session_tls12)
{
	struct config cfg;
	struct tls_generation *server, *client;
	const char *sni;
	bool reused;
	long v;

	make_config(&cfg, MAIN_LISTENER, BACKENDS);
	server = generation(&cfg);
	client = generation(&cfg);
	/* A TLS 1.2 server, standing in for an old backend. */
	ck_assert_int_eq(SSL_CTX_set_max_proto_version(tls_server_ctx(server, 0), TLS1_2_VERSION), 1);
	ck_assert(connect_backend(client, 0, server, &v, &reused, &sni));
	ck_assert_ptr_nonnull(tls_client_session_get(client, 0));
	ck_assert_int_eq(SSL_SESSION_get_protocol_version(tls_client_session_get(client, 0)),
	    TLS1_2_VERSION);
	ck_assert(connect_backend(client, 0, server, &v, &reused, &sni));
	ck_assert(reused);
	tls_generation_free(server);
	tls_generation_free(client);
	config_free(&cfg);
}
END_TEST

/* ---- how a handshake ended (roundguard_tls_handshakes_total) ---- */

#define SSL_ERR(reason) ERR_PACK(ERR_LIB_SSL, 0, (reason))

/* The mapping itself, by OpenSSL's codes. */
START_TEST(handshake_class_table)
{
	static const struct {
		int ssl_error;
		unsigned long err;
		enum metrics_tls_result want;
	} cases[] = {
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_NO_SHARED_CIPHER), METRICS_TLS_NO_SHARED_CIPHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_NO_SHARED_GROUPS), METRICS_TLS_NO_SHARED_CIPHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS),
		    METRICS_TLS_NO_SHARED_CIPHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM),
		    METRICS_TLS_NO_SHARED_CIPHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_UNSUPPORTED_PROTOCOL), METRICS_TLS_UNSUPPORTED_VERSION },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_VERSION_TOO_LOW), METRICS_TLS_UNSUPPORTED_VERSION },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_VERSION_TOO_HIGH), METRICS_TLS_UNSUPPORTED_VERSION },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_WRONG_SSL_VERSION), METRICS_TLS_UNSUPPORTED_VERSION },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_UNSUPPORTED_SSL_VERSION), METRICS_TLS_UNSUPPORTED_VERSION },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_BAD_PROTOCOL_VERSION_NUMBER),
		    METRICS_TLS_UNSUPPORTED_VERSION },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_INAPPROPRIATE_FALLBACK), METRICS_TLS_UNSUPPORTED_VERSION },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_TLSV1_ALERT_PROTOCOL_VERSION),
		    METRICS_TLS_UNSUPPORTED_VERSION },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_HTTP_REQUEST), METRICS_TLS_PLAIN_HTTP },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_HTTPS_PROXY_REQUEST), METRICS_TLS_PLAIN_HTTP },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_UNEXPECTED_EOF_WHILE_READING), METRICS_TLS_CLOSED },
		{ SSL_ERROR_SYSCALL, 0, METRICS_TLS_CLOSED },
		{ SSL_ERROR_ZERO_RETURN, 0, METRICS_TLS_CLOSED },
		/* Garbage, bad records, alerts from the client, the SNI callback's other failures. */
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_WRONG_VERSION_NUMBER), METRICS_TLS_OTHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_PACKET_LENGTH_TOO_LONG), METRICS_TLS_OTHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_RECORD_LENGTH_MISMATCH), METRICS_TLS_OTHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_TLSV1_ALERT_UNKNOWN_CA), METRICS_TLS_OTHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_CALLBACK_FAILED), METRICS_TLS_OTHER },
		{ SSL_ERROR_SSL, SSL_ERR(SSL_R_NO_APPLICATION_PROTOCOL), METRICS_TLS_OTHER },
		{ SSL_ERROR_SSL, 0, METRICS_TLS_OTHER },
		/* The same reason numbers from another library are not the SSL library's. */
		{ SSL_ERROR_SSL, ERR_PACK(ERR_LIB_EVP, 0, SSL_R_NO_SHARED_CIPHER), METRICS_TLS_OTHER },
		{ SSL_ERROR_SSL, ERR_PACK(ERR_LIB_SYS, 0, 104), METRICS_TLS_OTHER },
		{ SSL_ERROR_WANT_X509_LOOKUP, 0, METRICS_TLS_OTHER },
	};
	size_t i;

	for (i = 0; i < COUNT(cases); i++)
		ck_assert_msg(transport_handshake_class(cases[i].ssl_error, cases[i].err, false) ==
		    cases[i].want, "case %zu: %s, want %s", i, metrics_tls_result_str(
		    transport_handshake_class(cases[i].ssl_error, cases[i].err, false)),
		    metrics_tls_result_str(cases[i].want));
	/* A name refused by strict_sni wins over whatever OpenSSL queued for it. */
	for (i = 0; i < COUNT(cases); i++)
		ck_assert_int_eq(transport_handshake_class(cases[i].ssl_error, cases[i].err, true),
		    METRICS_TLS_UNKNOWN_NAME);
}
END_TEST

/*
 * Drive server s with transport_handshake(), as a worker does, and client c
 * (NULL: none, the bytes are in the pair already) with SSL_do_handshake(),
 * until the server's step is over: its return value, *result and the label
 * of the version in *version.
 */
static int
server_ends(SSL *c, SSL *s, enum metrics_tls_result *result, enum metrics_tls_version *version)
{
	const char *why = NULL;
	int rc = 0, rs = 0, i;

	*result = METRICS_TLS_RESULTS;
	for (i = 0; i < 100 && rs == 0; i++) {
		if (c != NULL && rc == 0)
			rc = step(c);
		rs = transport_handshake(s, &why, result);
	}
	ck_assert_int_ne(rs, 0);
	ck_assert_msg(rs == 1 || why != NULL, "no reason for a failure");
	ck_assert_int_lt(*result, METRICS_TLS_RESULTS);
	*version = metrics_tls_version(transport_version(s), *result);
	/* transport_handshake() leaves no error behind for the next connection of the worker. */
	ck_assert_uint_eq(ERR_peek_error(), 0);
	ERR_clear_error();
	return rs;
}

/* A handshake of a test client with listener li of g: how the server saw it end. */
static int
server_result(struct tls_generation *g, size_t li, SSL *c, enum metrics_tls_result *result,
    enum metrics_tls_version *version)
{
	SSL *s = tls_server_new(g, li);
	BIO *bc, *bs;
	int rs;

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	rs = server_ends(c, s, result, version);
	SSL_free(c);
	SSL_free(s);
	return rs;
}

/* Raw bytes where a ClientHello belongs, then the end of the stream if eof: how the server ends. */
static int
server_result_raw(struct tls_generation *g, const void *bytes, size_t len, bool eof,
    enum metrics_tls_result *result, enum metrics_tls_version *version)
{
	SSL *s = tls_server_new(g, 0);
	BIO *bc, *bs;
	int rs;

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(s, bs, bs);
	ck_assert_int_eq(BIO_write(bc, bytes, (int)len), (int)len);
	if (eof)
		ck_assert_int_eq(BIO_shutdown_wr(bc), 1);
	rs = server_ends(NULL, s, result, version);
	SSL_free(s);
	BIO_free(bc);
	return rs;
}

/* Real handshakes in memory: what OpenSSL queues for each case lands in the class the metric says. */
START_TEST(handshake_results)
{
	static const char get[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	static const char connect[] = "CONNECT a:443 HTTP/1.1\r\n\r\n";
	static const unsigned char partial_hello[] = {
		0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
	};
	unsigned char garbage[64];
	struct client_opts o = { .sni = "a.example" };
	enum metrics_tls_result r;
	enum metrics_tls_version v;
	struct config cfg;
	struct tls_generation *g;
	SSL_SESSION *sess;
	SSL *c;

	make_config(&cfg, MAIN_LISTENER ", " STRICT_LISTENER, NULL);
	g = generation(&cfg);

	/* Full handshakes, 1.3 and 1.2. */
	ck_assert_int_eq(server_result(g, 0, test_client(&o), &r, &v), 1);
	ck_assert_int_eq(r, METRICS_TLS_OK);
	ck_assert_int_eq(v, METRICS_TLS_V1_3);
	o.max_version = TLS1_2_VERSION;
	ck_assert_int_eq(server_result(g, 0, test_client(&o), &r, &v), 1);
	ck_assert_int_eq(r, METRICS_TLS_OK);
	ck_assert_int_eq(v, METRICS_TLS_V1_2);

	/* Resumed with a ticket. */
	o.max_version = 0;
	sess = first_session(g, 0);
	ck_assert_ptr_nonnull(sess);
	c = test_client(&o);
	ck_assert_int_eq(SSL_set_session(c, sess), 1);
	ck_assert_int_eq(server_result(g, 0, c, &r, &v), 1);
	ck_assert_int_eq(r, METRICS_TLS_RESUMED);
	ck_assert_int_eq(v, METRICS_TLS_V1_3);
	SSL_SESSION_free(sess);

	/* TLS 1.1: refused before any version is agreed. */
	o.max_version = TLS1_1_VERSION;
	ck_assert_int_eq(server_result(g, 0, test_client(&o), &r, &v), -1);
	ck_assert_int_eq(r, METRICS_TLS_UNSUPPORTED_VERSION);
	ck_assert_int_eq(v, METRICS_TLS_VUNKNOWN);

	/* TLS 1.2 with ciphers outside the listener's list (AES-CBC with RSA key exchange). */
	o.max_version = TLS1_2_VERSION;
	c = test_client(&o);
	ck_assert_int_eq(SSL_set_cipher_list(c, "AES128-SHA:@SECLEVEL=0"), 1);
	ck_assert_int_eq(server_result(g, 0, c, &r, &v), -1);
	ck_assert_int_eq(r, METRICS_TLS_NO_SHARED_CIPHER);
	ck_assert_int_eq(v, METRICS_TLS_V1_2);

	/* strict_sni: an unknown name, and none at all. */
	o = (struct client_opts){ .sni = "other.example" };
	ck_assert_int_eq(server_result(g, 1, test_client(&o), &r, &v), -1);
	ck_assert_int_eq(r, METRICS_TLS_UNKNOWN_NAME);
	ck_assert_int_eq(v, METRICS_TLS_V1_3);
	o = (struct client_opts){ .sni = NULL };
	ck_assert_int_eq(server_result(g, 1, test_client(&o), &r, &v), -1);
	ck_assert_int_eq(r, METRICS_TLS_UNKNOWN_NAME);
	/* ... and a known one on the same listener is no refusal. */
	o = (struct client_opts){ .sni = "a.example" };
	ck_assert_int_eq(server_result(g, 1, test_client(&o), &r, &v), 1);
	ck_assert_int_eq(r, METRICS_TLS_OK);

	/* Plain HTTP: -2, so that the worker answers in plain HTTP. */
	ck_assert_int_eq(server_result_raw(g, get, sizeof(get) - 1, false, &r, &v), -2);
	ck_assert_int_eq(r, METRICS_TLS_PLAIN_HTTP);
	ck_assert_int_eq(v, METRICS_TLS_VUNKNOWN);
	ck_assert_int_eq(server_result_raw(g, connect, sizeof(connect) - 1, false, &r, &v), -2);
	ck_assert_int_eq(r, METRICS_TLS_PLAIN_HTTP);

	/* Garbage. */
	memset(garbage, 0, sizeof(garbage));
	ck_assert_int_eq(server_result_raw(g, garbage, sizeof(garbage), false, &r, &v), -1);
	ck_assert_int_eq(r, METRICS_TLS_OTHER);
	ck_assert_int_eq(v, METRICS_TLS_VUNKNOWN);

	/* The client goes away mid-ClientHello, and before sending anything. */
	ck_assert_int_eq(server_result_raw(g, partial_hello, sizeof(partial_hello), true, &r, &v),
	    -1);
	ck_assert_int_eq(r, METRICS_TLS_CLOSED);
	ck_assert_int_eq(v, METRICS_TLS_VUNKNOWN);
	ck_assert_int_eq(server_result_raw(g, "", 0, true, &r, &v), -1);
	ck_assert_int_eq(r, METRICS_TLS_CLOSED);

	tls_generation_free(g);
	config_free(&cfg);
}
END_TEST

static Suite *
tls_suite(void)
{
	Suite *s = suite_create("TLS contexts");
	TCase *tc;

	tc = tcase_create("loading");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, load_ok);
	tcase_add_test(tc, chain_sent);
	tcase_add_loop_test(tc, bad_cert, 0, COUNT(bad_certs));
	tcase_add_test(tc, bad_dates);
	tcase_add_test(tc, all_problems);
	tcase_add_test(tc, unreadable);
	suite_add_tcase(s, tc);

	tc = tcase_create("sni");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, name_match);
	tcase_add_test(tc, sni_select);
	tcase_add_test(tc, sni_handshakes);
	tcase_add_test(tc, strict_alert);
	tcase_add_test(tc, alpn);
	tcase_add_test(tc, versions);
	suite_add_tcase(s, tc);

	tc = tcase_create("tickets");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, days);
	tcase_add_test(tc, ticket_derivation);
	tcase_add_test(tc, generation_secrets);
	tcase_add_test(tc, tickets_resume);
	tcase_add_test(tc, tickets_off);
	suite_add_tcase(s, tc);

	tc = tcase_create("handshake results");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, handshake_class_table);
	tcase_add_test(tc, handshake_results);
	suite_add_tcase(s, tc);

	tc = tcase_create("backends");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, backend_clients);
	tcase_add_test(tc, backend_unclean_close);
	tcase_add_test(tc, backend_session_tls12);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	int rc;

	/* Once for every test: RSA keys take a while, under the sanitizers above all. */
	setup();
	rc = unit_run(tls_suite(), CK_NORMAL);
	teardown();
	return rc;
}
