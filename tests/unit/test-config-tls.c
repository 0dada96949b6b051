/* Unit tests for config_tls.c: "listeners" and their "tls", backend objects, their messages and cross-checks. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roundguard/config.h"
#include "unit.h"

#define NS_S INT64_C(1000000000)

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define ERR_LEN 8192
#define DOC_LEN 8192

/* Name given to config_parse_json(), so every message starts with "t.json: ". */
#define NAME "t.json"

#define INTERMEDIATE \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

/* A TLS object that parses, to put around the key under test. */
#define CERTS "'certificates': [{'cert': '/c.pem', 'key': '/k.pem'}]"

static char err[ERR_LEN];

/* Documents are written with ' for " and messages with ` for ", which read better in C. */
static const char *
swap(const char *s, char from)
{
	static char doc[DOC_LEN];
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < sizeof(doc); i++)
		doc[i] = s[i] == from ? '"' : s[i];
	doc[i] = '\0';
	return doc;
}

static const char *
dq(const char *json)
{
	return swap(json, '\'');
}

static const char *
msg(const char *text)
{
	return swap(text, '`');
}

static int
parse(struct config *cfg, const char *json)
{
	const char *doc = dq(json);

	config_defaults(cfg);
	err[0] = '\0';
	return config_parse_json(cfg, NAME, doc, strlen(doc), err, sizeof(err));
}

/* Parse, then validate with err started afresh; the number of validation problems. */
static int
validate(struct config *cfg, const char *json)
{
	int n = parse(cfg, json);

	ck_assert_msg(n == 0, "%s: %d problems: %s", json, n, err);
	err[0] = '\0';
	return config_validate(cfg, err, sizeof(err));
}

static bool
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = text; (p = strstr(p, line)) != NULL; p++) {
		if ((p == text || p[-1] == '\n') && (p[n] == '\0' || p[n] == '\n'))
			return true;
	}
	return false;
}

/* ---- listeners ---- */

START_TEST(listeners_full)
{
	struct config cfg;
	const struct config_listener *l;

	ck_assert_int_eq(validate(&cfg, "{'backends': ['http://127.0.0.1:8001'],"
	    " 'proxy': {'client_timeout': '5s'},"
	    " 'listeners': ["
	    "  {'listen': ':80', 'redirect_https': true, 'redirect_port': 8443},"
	    "  {'listen': '[::1]:8443', 'name': 'public.tls', 'tls': {"
	    "    'certificates': [{'cert': '/etc/rsa.pem', 'key': '/etc/rsa.key'},"
	    "                     {'cert': 'ecdsa.pem', 'key': 'ecdsa.key'}],"
	    "    'min_version': 'TLSv1.3', 'ciphers': 'ECDHE-RSA-AES128-GCM-SHA256:!aNULL',"
	    "    'ciphersuites': 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256',"
	    "    'strict_sni': true, 'session_tickets': false, 'handshake_timeout': '3s'}},"
	    "  {'listen': '127.0.0.1:3000', 'tls': null}"
	    "]}"), 0);
	ck_assert_str_eq(err, "");
	ck_assert(cfg.listeners_set);
	ck_assert(!cfg.listen_set);
	ck_assert_uint_eq(cfg.nlisteners, 3);

	l = &cfg.listeners[0];
	ck_assert_str_eq(l->name, "http-80");
	ck_assert(!l->name_set);
	ck_assert_str_eq(l->addr.host, "");
	ck_assert_uint_eq(l->addr.port, 80);
	ck_assert(!l->tls_set);
	ck_assert(l->redirect_https);
	ck_assert_uint_eq(l->redirect_port, 8443);

	l = &cfg.listeners[1];
	ck_assert_str_eq(l->name, "public.tls");
	ck_assert(l->name_set);
	ck_assert_str_eq(l->addr.host, "::1");
	ck_assert(l->addr.is_ipv6);
	ck_assert_uint_eq(l->addr.port, 8443);
	ck_assert(l->tls_set);
	ck_assert(!l->redirect_https);
	ck_assert_uint_eq(l->tls.ncerts, 2);
	ck_assert_str_eq(l->tls.certs[0].cert, "/etc/rsa.pem");
	ck_assert_str_eq(l->tls.certs[0].key, "/etc/rsa.key");
	ck_assert_str_eq(l->tls.certs[1].cert, "ecdsa.pem");
	ck_assert_str_eq(l->tls.certs[1].key, "ecdsa.key");
	ck_assert_uint_eq(l->tls.min_version, CONFIG_TLS_1_3);
	ck_assert_str_eq(l->tls.ciphers, "ECDHE-RSA-AES128-GCM-SHA256:!aNULL");
	ck_assert_str_eq(l->tls.ciphersuites, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
	ck_assert(l->tls.strict_sni);
	ck_assert(!l->tls.session_tickets);
	ck_assert_int_eq(l->tls.handshake_timeout_ns, 3 * NS_S);

	l = &cfg.listeners[2];
	ck_assert_str_eq(l->name, "http-3000");
	ck_assert(!l->tls_set);
	ck_assert(!l->redirect_https);

	/* "listen" is the first plain listener, for the code that knows one address. */
	ck_assert_str_eq(cfg.listen.host, "");
	ck_assert_uint_eq(cfg.listen.port, 80);
	ck_assert_ptr_eq(config_plain_listen(&cfg), &cfg.listeners[0].addr);
	config_free(&cfg);
}
END_TEST

START_TEST(proxy_protocol_listeners)
{
	struct config cfg;

	ck_assert_int_eq(validate(&cfg, "{'backends': ['http://127.0.0.1:8001'], 'listeners': ["
	    "  {'listen': ':80', 'proxy_protocol': true,"
	    "   'proxy_protocol_from': ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32']},"
	    "  {'listen': ':81', 'proxy_protocol': true},"
	    "  {'listen': ':82'}]}"), 0);
	ck_assert_str_eq(err, "");
	ck_assert(cfg.listeners[0].proxy_protocol);
	ck_assert_uint_eq(cfg.listeners[0].nproxy_from, 3);
	ck_assert_uint_eq(cfg.listeners[0].proxy_from[0].bits, 8);
	ck_assert_uint_eq(cfg.listeners[0].proxy_from[1].bits, 32);
	ck_assert_uint_eq(cfg.listeners[0].proxy_from[2].family, AF_INET6);
	ck_assert(cfg.listeners[1].proxy_protocol);
	ck_assert_uint_eq(cfg.listeners[1].nproxy_from, 0);	/* from anyone */
	ck_assert(!cfg.listeners[2].proxy_protocol);
	config_free(&cfg);
	ck_assert_int_eq(validate(&cfg, "{'backends': [{'url': 'http://127.0.0.1:8001', 'send_proxy': 'v2'},"
	    " {'url': 'http://127.0.0.1:8002', 'send_proxy': null}, 'http://127.0.0.1:8003']}"), 0);
	ck_assert(cfg.backends[0].send_proxy);
	ck_assert(!cfg.backends[1].send_proxy);
	ck_assert(!cfg.backends[2].send_proxy);
	config_free(&cfg);
}
END_TEST

START_TEST(tls_defaults)
{
	struct config cfg;
	const struct config_listener *l;

	ck_assert_int_eq(validate(&cfg, "{'backends': ['http://127.0.0.1:8001'],"
	    " 'proxy': {'client_timeout': '7s'},"
	    " 'listeners': [{'listen': '443', 'tls': {" CERTS "}}]}"), 0);
	l = &cfg.listeners[0];
	ck_assert_str_eq(l->name, "https-443");
	ck_assert(l->tls_set);
	ck_assert_uint_eq(l->tls.ncerts, 1);
	ck_assert_uint_eq(l->tls.min_version, CONFIG_TLS_1_2);
	ck_assert_str_eq(l->tls.ciphers, INTERMEDIATE);
	ck_assert_str_eq(l->tls.ciphersuites, "");
	ck_assert(!l->tls.strict_sni);
	ck_assert(l->tls.session_tickets);
	ck_assert(!l->tls.handshake_timeout_set);
	/* The handshake gets what a request head gets. */
	ck_assert_int_eq(l->tls.handshake_timeout_ns, 7 * NS_S);
	ck_assert(!l->redirect_https);
	ck_assert_uint_eq(l->redirect_port, 443);
	/* No plain listener: -l and -p have nothing to move, "listen" mirrors listeners[0]. */
	ck_assert_ptr_null(config_plain_listen(&cfg));
	ck_assert_uint_eq(cfg.listen.port, 443);
	config_free(&cfg);
}
END_TEST

START_TEST(version_names)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{'listeners': [{'listen': ':443', 'tls': {" CERTS ","
	    " 'min_version': 'tlsv1.2'}}]}"), 0);
	ck_assert_uint_eq(cfg.listeners[0].tls.min_version, CONFIG_TLS_1_2);
	config_free(&cfg);
	ck_assert_int_eq(parse(&cfg, "{'listeners': [{'listen': ':443', 'tls': {" CERTS ","
	    " 'min_version': 'TLSv1.3'}}]}"), 0);
	ck_assert_uint_eq(cfg.listeners[0].tls.min_version, CONFIG_TLS_1_3);
	config_free(&cfg);
}
END_TEST

/* The short form: "listen" becomes listeners[0], and -l/-p (config_plain_listen) move it. */
START_TEST(short_form)
{
	struct config cfg;
	struct listen_addr *la;

	ck_assert_int_eq(validate(&cfg, "{'backends': ['http://127.0.0.1:8001'],"
	    " 'listen': '127.0.0.1:8080'}"), 0);
	ck_assert(cfg.listen_set);
	ck_assert(!cfg.listeners_set);
	ck_assert_uint_eq(cfg.nlisteners, 1);
	ck_assert_str_eq(cfg.listeners[0].name, "http-8080");
	ck_assert_str_eq(cfg.listeners[0].addr.host, "127.0.0.1");
	ck_assert_uint_eq(cfg.listeners[0].addr.port, 8080);
	ck_assert(!cfg.listeners[0].tls_set);
	la = config_plain_listen(&cfg);
	ck_assert_ptr_eq(la, &cfg.listen);
	la->port = 9090;
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.nlisteners, 1);
	ck_assert_uint_eq(cfg.listeners[0].addr.port, 9090);
	ck_assert_str_eq(cfg.listeners[0].name, "http-9090");
	config_free(&cfg);

	/* null is the short form as well, "listen" included. */
	ck_assert_int_eq(validate(&cfg, "{'backends': ['http://127.0.0.1:8001'],"
	    " 'listen': ':4000', 'listeners': null}"), 0);
	ck_assert_uint_eq(cfg.nlisteners, 1);
	ck_assert_uint_eq(cfg.listeners[0].addr.port, 4000);
	config_free(&cfg);

	/* Nothing at all: the default port. */
	ck_assert_int_eq(validate(&cfg, "{'backends': ['http://127.0.0.1:8001']}"), 0);
	ck_assert_uint_eq(cfg.nlisteners, 1);
	ck_assert_str_eq(cfg.listeners[0].name, "http-3000");
	config_free(&cfg);
}
END_TEST

/* -l/-p move the first plain listener, which then is "listen" for the rest of the code. */
START_TEST(plain_listen_moves)
{
	struct config cfg;
	struct listen_addr *la;

	ck_assert_int_eq(parse(&cfg, "{'backends': ['http://127.0.0.1:8001'], 'listeners': ["
	    " {'listen': ':443', 'tls': {" CERTS "}}, {'listen': ':80'}, {'listen': ':81'}]}"), 0);
	la = config_plain_listen(&cfg);
	ck_assert_ptr_eq(la, &cfg.listeners[1].addr);
	la->port = 8080;
	ck_assert_int_eq(config_validate(&cfg, err, sizeof(err)), 0);
	ck_assert_uint_eq(cfg.listen.port, 8080);
	ck_assert_str_eq(cfg.listeners[1].name, "http-8080");
	ck_assert_uint_eq(cfg.listeners[2].addr.port, 81);
	config_free(&cfg);
}
END_TEST

START_TEST(copy_listeners)
{
	struct config cfg, copy;

	ck_assert_int_eq(validate(&cfg, "{'backends': ['https://a.example', "
	    " {'url': 'https://b.example:8443/p', 'tls': {'ca_file': '/ca.pem', 'verify': false}}],"
	    " 'listeners': [{'listen': ':443', 'tls': {" CERTS "}}, {'listen': ':80'}]}"), 0);
	ck_assert_int_eq(config_copy(&copy, &cfg), 0);
	ck_assert_ptr_ne(copy.listeners, cfg.listeners);
	ck_assert_uint_eq(copy.nlisteners, 2);
	ck_assert(memcmp(copy.listeners, cfg.listeners, 2 * sizeof(*cfg.listeners)) == 0);
	/* Backends' resolved addresses are filled later: compare what was parsed. */
	ck_assert(memcmp(&copy.backends[1].tls, &cfg.backends[1].tls, sizeof(cfg.backends[1].tls)) == 0);
	config_free(&cfg);
	ck_assert_str_eq(copy.listeners[0].tls.certs[0].cert, "/c.pem");
	ck_assert_str_eq(copy.backends[0].url, "https://a.example");
	ck_assert(copy.backends[0].tls.verify);
	ck_assert_str_eq(copy.backends[1].tls.ca_file, "/ca.pem");
	ck_assert(!copy.backends[1].tls.verify);
	config_free(&copy);
	ck_assert_ptr_null(copy.listeners);
	ck_assert_uint_eq(copy.nlisteners, 0);
}
END_TEST

/* ---- backends ---- */

START_TEST(backend_objects)
{
	struct config cfg;
	const struct config_backend *b;

	ck_assert_int_eq(validate(&cfg, "{'backends': ["
	    " 'https://api.example',"
	    " {'url': 'https://10.0.0.1:8443/v1', 'tls': {'ca_file': '/etc/ca.pem',"
	    "   'server_name': 'internal.example', 'verify': false}},"
	    " {'url': 'http://127.0.0.1:8001'},"
	    " 'http://127.0.0.1:8002',"
	    " {'url': 'https://[::1]', 'tls': {}}"
	    "]}"), 0);
	ck_assert_uint_eq(cfg.nbackends, 5);

	b = &cfg.backends[0];
	ck_assert_str_eq(b->url, "https://api.example");
	ck_assert(b->addr.tls);
	ck_assert_uint_eq(b->addr.port, 443);
	ck_assert_str_eq(b->addr.hostport, "api.example:443");
	ck_assert(b->tls.verify);
	ck_assert_str_eq(b->tls.ca_file, "");
	ck_assert_str_eq(b->tls.server_name, "");

	b = &cfg.backends[1];
	ck_assert_str_eq(b->url, "https://10.0.0.1:8443/v1");
	ck_assert(b->addr.tls);
	ck_assert_uint_eq(b->addr.port, 8443);
	ck_assert_str_eq(b->addr.prefix, "/v1");
	ck_assert(!b->tls.verify);
	ck_assert_str_eq(b->tls.ca_file, "/etc/ca.pem");
	ck_assert_str_eq(b->tls.server_name, "internal.example");

	b = &cfg.backends[2];
	ck_assert_str_eq(b->url, "http://127.0.0.1:8001");
	ck_assert(!b->addr.tls);
	ck_assert_uint_eq(b->addr.port, 8001);

	ck_assert(!cfg.backends[3].addr.tls);
	ck_assert(cfg.backends[4].addr.tls);
	ck_assert(cfg.backends[4].tls.verify);
	ck_assert_str_eq(cfg.backends[4].addr.hostport, "[::1]:443");
	config_free(&cfg);
}
END_TEST

/* config_add_backend (--backend) takes https too, verified. */
START_TEST(backend_flag_https)
{
	struct config cfg;

	config_defaults(&cfg);
	err[0] = '\0';
	ck_assert_int_eq(config_add_backend(&cfg, "https://h.example:444", "--backend", err,
	    sizeof(err)), 0);
	ck_assert(cfg.backends[0].addr.tls);
	ck_assert(cfg.backends[0].tls.verify);
	ck_assert_uint_eq(cfg.backends[0].addr.port, 444);
	config_free(&cfg);
}
END_TEST

/* ---- one bad value: the exact message ---- */

struct bad_doc {
	const char *json;
	const char *want;	/* the whole of err, with ` for " */
};

#define L0(x) "{'listeners': [{'listen': ':443', " x "}]}"
#define T0(x) L0("'tls': {" CERTS ", " x "}")

static const struct bad_doc bad_docs[] = {
	/* listeners */
	{ "{'listeners': 'x'}",
	  NAME ": listeners: expected an array of listener objects or null, got string" },
	{ "{'listeners': []}",
	  NAME ": listeners: at least one listener is needed (or null to use `listen`)" },
	{ "{'listeners': [5]}",
	  NAME ": listeners[0]: expected an object like {`listen`: `:443`, `tls`: {...}}, got integer" },
	{ "{'listeners': [{}]}", NAME ": listeners[0]: `listen` is required" },
	{ "{'listeners': [{'listen': ':80'}, {'name': 'x'}]}",
	  NAME ": listeners[1]: `listen` is required" },
	{ L0("'port': 443"), NAME ": listeners[0].port: unknown key" },
	{ "{'listeners': [{'listen': 443}]}",
	  NAME ": listeners[0].listen: expected an address like `:443`, got integer" },
	{ "{'listeners': [{'listen': 'localhost'}]}",
	  NAME ": listeners[0].listen: `localhost`: missing port (expected `host:port`, `:port` or `port`)" },
	{ L0("'name': 'a b'"),
	  NAME ": listeners[0].name: `a b`: use 1-63 letters, digits, '.', '_' or '-'" },
	{ L0("'name': ''"), NAME ": listeners[0].name: ``: use 1-63 letters, digits, '.', '_' or '-'" },
	{ L0("'name': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"),
	  NAME ": listeners[0].name: `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`: "
	  "use 1-63 letters, digits, '.', '_' or '-'" },
	{ L0("'name': 3"), NAME ": listeners[0].name: expected a string, got integer" },
	{ L0("'redirect_https': 'yes'"),
	  NAME ": listeners[0].redirect_https: expected a boolean, got string" },
	{ L0("'redirect_https': true, 'redirect_port': 0"),
	  NAME ": listeners[0].redirect_port: 0: out of range (use 1-65535)" },
	{ L0("'redirect_https': true, 'redirect_port': 65536"),
	  NAME ": listeners[0].redirect_port: 65536: out of range (use 1-65535)" },
	{ L0("'redirect_https': true, 'redirect_port': '443'"),
	  NAME ": listeners[0].redirect_port: expected an integer (1-65535), got string" },
	{ L0("'redirect_port': 8443"),
	  NAME ": listeners[0].redirect_port: only with `redirect_https`: true" },
	{ L0("'redirect_https': false, 'redirect_port': 8443"),
	  NAME ": listeners[0].redirect_port: only with `redirect_https`: true" },
	{ L0("'redirect_https': true, 'tls': {" CERTS "}"),
	  NAME ": listeners[0].redirect_https: not with `tls`: a TLS listener already serves https" },
	/* tls */
	{ L0("'tls': 5"), NAME ": listeners[0].tls: expected an object or null, got integer" },
	{ L0("'tls': {}"), NAME ": listeners[0].tls: `certificates` is required "
	  "(at least one {`cert`: FILE, `key`: FILE})" },
	{ L0("'tls': {'certificates': []}"),
	  NAME ": listeners[0].tls.certificates: at least one certificate is needed" },
	{ L0("'tls': {'certificates': {'cert': 'c', 'key': 'k'}}"),
	  NAME ": listeners[0].tls.certificates: expected an array of {`cert`: FILE, `key`: FILE}, "
	  "got object" },
	{ L0("'tls': {'certificates': [{}, {}, {}, {}, {}, {}, {}, {}, {}]}"),
	  NAME ": listeners[0].tls.certificates: 9 certificates: too many (at most 8)" },
	{ L0("'tls': {'certificates': ['c.pem']}"),
	  NAME ": listeners[0].tls.certificates[0]: expected an object like {`cert`: FILE, `key`: FILE}, "
	  "got string" },
	{ L0("'tls': {'certificates': [{'cert': 'c.pem'}]}"),
	  NAME ": listeners[0].tls.certificates[0]: `key` is required" },
	{ L0("'tls': {'certificates': [{'cert': 'a', 'key': 'b'}, {'key': 'k.pem'}]}"),
	  NAME ": listeners[0].tls.certificates[1]: `cert` is required" },
	{ L0("'tls': {'certificates': [{'cert': '', 'key': 'k'}]}"),
	  NAME ": listeners[0].tls.certificates[0].cert: ``: must not be empty" },
	{ L0("'tls': {'certificates': [{'cert': 'c', 'key': 5}]}"),
	  NAME ": listeners[0].tls.certificates[0].key: expected a file name, got integer" },
	{ L0("'tls': {'certificates': [{'cert': 'c', 'key': 'k', 'chain': 'x'}]}"),
	  NAME ": listeners[0].tls.certificates[0].chain: unknown key" },
	{ T0("'min_version': 'TLSv1.1'"),
	  NAME ": listeners[0].tls.min_version: `TLSv1.1`: unknown or unsupported version "
	  "(use `TLSv1.2` or `TLSv1.3`)" },
	{ T0("'min_version': 'SSLv3'"),
	  NAME ": listeners[0].tls.min_version: `SSLv3`: unknown or unsupported version "
	  "(use `TLSv1.2` or `TLSv1.3`)" },
	{ T0("'min_version': 1.2"),
	  NAME ": listeners[0].tls.min_version: expected a string, got number 1.2" },
	{ T0("'ciphers': 'FOO'"),
	  NAME ": listeners[0].tls.ciphers: `FOO`: `FOO` matches no cipher this OpenSSL offers" },
	{ T0("'ciphers': 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA265'"),
	  NAME ": listeners[0].tls.ciphers: `ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA265`: "
	  "`ECDHE-RSA-AES128-GCM-SHA265` matches no cipher this OpenSSL offers" },
	{ T0("'ciphers': 'TLS_AES_128_GCM_SHA256'"),
	  NAME ": listeners[0].tls.ciphers: `TLS_AES_128_GCM_SHA256`: `TLS_AES_128_GCM_SHA256` is a "
	  "TLS 1.3 suite (those go in `ciphersuites`)" },
	{ T0("'ciphers': '!aNULL'"),
	  NAME ": listeners[0].tls.ciphers: `!aNULL`: OpenSSL selects no cipher from it" },
	{ T0("'ciphers': ''"),
	  NAME ": listeners[0].tls.ciphers: ``: must not be empty (leave the key out for the default)" },
	{ T0("'ciphers': ['A']"), NAME ": listeners[0].tls.ciphers: expected a string, got array" },
	{ T0("'ciphersuites': 'TLS_FOO'"),
	  NAME ": listeners[0].tls.ciphersuites: `TLS_FOO`: `TLS_FOO` matches no cipher this OpenSSL "
	  "offers" },
	{ T0("'ciphersuites': 'ECDHE-RSA-AES128-GCM-SHA256'"),
	  NAME ": listeners[0].tls.ciphersuites: `ECDHE-RSA-AES128-GCM-SHA256`: "
	  "`ECDHE-RSA-AES128-GCM-SHA256` is not a TLS 1.3 suite (TLS 1.2 ciphers go in `ciphers`)" },
	{ T0("'ciphersuites': ''"),
	  NAME ": listeners[0].tls.ciphersuites: ``: must not be empty (leave the key out for the "
	  "default)" },
	{ T0("'strict_sni': 'yes'"), NAME ": listeners[0].tls.strict_sni: expected a boolean, got string" },
	{ T0("'session_tickets': 1"),
	  NAME ": listeners[0].tls.session_tickets: expected a boolean, got integer" },
	{ T0("'handshake_timeout': '0s'"),
	  NAME ": listeners[0].tls.handshake_timeout: `0s`: must be longer than 0" },
	{ T0("'handshake_timeout': '5x'"),
	  NAME ": listeners[0].tls.handshake_timeout: `5x`: not a duration: unknown unit `x` "
	  "(use ns, us, ms, s, m, h)" },
	{ T0("'handshake_timeout': 5"),
	  NAME ": listeners[0].tls.handshake_timeout: expected a duration string like `5s`, got integer" },
	{ T0("'ocsp': true"), NAME ": listeners[0].tls.ocsp: unknown key" },
	/* backends */
	{ "{'backends': [{}]}",
	  NAME ": backends[0]: `url` is required (`https://host[:port][/prefix]` or `http://...`, or `srv`)" },
	{ "{'backends': [{'url': 5}]}", NAME ": backends[0].url: expected a URL string, got integer" },
	{ "{'backends': [{'url': 'ftp://x'}]}",
	  NAME ": backends[0].url: `ftp://x`: unsupported scheme `ftp` (use http or https)" },
	{ "{'listeners': [{'listen': ':80', 'proxy_protocol': 1}]}",
	    NAME ": listeners[0].proxy_protocol: expected a boolean, got integer" },
	{ "{'listeners': [{'listen': ':80', 'proxy_protocol_from': ['10.0.0.0/8']}]}",
	    NAME ": listeners[0].proxy_protocol_from: only with \"proxy_protocol\": true" },
	{ "{'listeners': [{'listen': ':80', 'proxy_protocol': true, 'proxy_protocol_from': ['10.0.0.0/33']}]}",
	    NAME ": listeners[0].proxy_protocol_from[0]: \"10.0.0.0/33\": prefix length not in 0-32" },
	{ "{'listeners': [{'listen': ':80', 'proxy_protocol': true, 'proxy_protocol_from': 'lb'}]}",
	    NAME ": listeners[0].proxy_protocol_from: expected an array of addresses or networks, got string" },
	{ "{'backends': [{'url': 'http://x', 'send_proxy': 'v1'}]}",
	    NAME ": backends[0].send_proxy: \"v1\": expected \"v2\" or null (version 1 is not sent)" },
	{ "{'backends': [{'url': 'http://x', 'send_proxy': true}]}",
	    NAME ": backends[0].send_proxy: expected \"v2\" or null, got boolean" },
	{ "{'backends': [{'url': 'https://x', 'weight': 257}]}",
	    NAME ": backends[0].weight: 257: out of range (use 0-256)" },
	{ "{'backends': [{'url': 'https://x', 'weight': '2'}]}",
	    NAME ": backends[0].weight: expected an integer, got string" },
	{ "{'backends': [{'url': 'https://x', 'weigth': 2}]}", NAME ": backends[0].weigth: unknown key" },
	{ "{'backends': [{'url': 'http://x', 'tls': {'verify': false}}]}",
	  NAME ": backends[0].tls: only for https:// backends" },
	{ "{'backends': [{'tls': {}, 'url': 'http://x'}]}",
	  NAME ": backends[0].tls: only for https:// backends" },
	{ "{'backends': [{'url': 'https://x', 'tls': null}]}",
	  NAME ": backends[0].tls: expected an object, got null" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'verify': 'no'}}]}",
	  NAME ": backends[0].tls.verify: expected a boolean, got string" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'ca_file': ''}}]}",
	  NAME ": backends[0].tls.ca_file: ``: must not be empty" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'cert': 'c.pem'}}]}",
	  NAME ": backends[0].tls.cert: unknown key" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'server_name': '10.0.0.1'}}]}",
	  NAME ": backends[0].tls.server_name: `10.0.0.1`: an IP address cannot be sent as SNI (leave "
	  "server_name out to check the certificate against the URL's address)" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'server_name': '::1'}}]}",
	  NAME ": backends[0].tls.server_name: `::1`: an IP address cannot be sent as SNI (leave "
	  "server_name out to check the certificate against the URL's address)" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'server_name': 'a..b'}}]}",
	  NAME ": backends[0].tls.server_name: `a..b`: not a host name (letters, digits, '-' and '_' in "
	  "labels of 1-63 bytes between dots)" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'server_name': 'a b'}}]}",
	  NAME ": backends[0].tls.server_name: `a b`: not a host name (letters, digits, '-' and '_' in "
	  "labels of 1-63 bytes between dots)" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'server_name': 'x.'}}]}",
	  NAME ": backends[0].tls.server_name: `x.`: not a host name (letters, digits, '-' and '_' in "
	  "labels of 1-63 bytes between dots)" },
	{ "{'backends': [{'url': 'https://x', 'tls': {'server_name': ''}}]}",
	  NAME ": backends[0].tls.server_name: ``: not a host name (letters, digits, '-' and '_' in "
	  "labels of 1-63 bytes between dots)" },
};

START_TEST(bad_value)
{
	const struct bad_doc *c = &bad_docs[_i];
	char want[ERR_LEN];
	struct config cfg;
	int n = parse(&cfg, c->json);

	strlcpy(want, msg(c->want), sizeof(want));
	ck_assert_msg(n == 1, "%s: %d problems: %s", c->json, n, err);
	ck_assert_msg(strcmp(err, want) == 0, "%s:\n got: %s\nwant: %s", c->json, err, want);
	config_free(&cfg);
}
END_TEST

/* 17 listeners, one over the bound. */
START_TEST(too_many_listeners)
{
	char doc[DOC_LEN] = "{'listeners': [";
	struct config cfg;
	int i;

	for (i = 0; i < 17; i++)
		snprintf(doc + strlen(doc), sizeof(doc) - strlen(doc), "%s{'listen': ':%d'}",
		    i > 0 ? ", " : "", 8000 + i);
	strlcat(doc, "]}", sizeof(doc));
	ck_assert_int_eq(parse(&cfg, doc), 1);
	ck_assert_str_eq(err, NAME ": listeners: 17 listeners: too many (at most 16)");
	config_free(&cfg);
	/* 16 are fine. */
	strcpy(strstr(doc, ", {'listen': ':8016'}"), "]}");
	ck_assert_int_eq(parse(&cfg, doc), 0);
	ck_assert_uint_eq(cfg.nlisteners, 16);
	config_free(&cfg);
}
END_TEST

/* Every problem of a listener is reported, and a listener with one is left out. */
START_TEST(all_problems_reported)
{
	struct config cfg;

	ck_assert_int_eq(parse(&cfg, "{'listeners': [{'listen': ':80'},"
	    " {'listen': 'x', 'tls': {'certificates': [], 'min_version': 'x'}, 'bogus': 1},"
	    " {'listen': ':81'}]}"), 4);
	ck_assert(has_line(err, msg(NAME ": listeners[1].listen: `x`: missing port (expected "
	    "`host:port`, `:port` or `port`)")));
	ck_assert(has_line(err, NAME ": listeners[1].tls.certificates: at least one certificate is needed"));
	ck_assert(has_line(err, msg(NAME ": listeners[1].tls.min_version: `x`: unknown or unsupported "
	    "version (use `TLSv1.2` or `TLSv1.3`)")));
	ck_assert(has_line(err, NAME ": listeners[1].bogus: unknown key"));
	ck_assert_uint_eq(cfg.nlisteners, 2);
	ck_assert_uint_eq(cfg.listeners[1].addr.port, 81);
	config_free(&cfg);
}
END_TEST

/* ---- cross-checks ---- */

struct bad_validate {
	const char *json;	/* backends are added */
	const char *want;	/* one line of err, with ` for " */
};

static const struct bad_validate bad_validates[] = {
	{ "'listen': ':80', 'listeners': [{'listen': ':81'}]",
	  NAME ": listen, listeners: use one or the other (`listen` is the short form of a single "
	  "plain listener)" },
	{ "'listeners': [{'listen': ':443'}, {'listen': '127.0.0.1:443'}]",
	  NAME ": listeners[1].listen: 127.0.0.1:443 conflicts with listeners[0] *:443 "
	  "(the same port on the same or every address)" },
	{ "'listeners': [{'listen': '127.0.0.1:80'}, {'listen': '0.0.0.0:80'}]",
	  NAME ": listeners[1].listen: 0.0.0.0:80 conflicts with listeners[0] 127.0.0.1:80 "
	  "(the same port on the same or every address)" },
	{ "'listeners': [{'listen': '[::1]:80'}, {'listen': ':81'}, {'listen': '[::1]:80', 'name': 'b'}]",
	  NAME ": listeners[2].listen: [::1]:80 conflicts with listeners[0] [::1]:80 "
	  "(the same port on the same or every address)" },
	{ "'listeners': [{'listen': ':80', 'name': 'x'}, {'listen': ':81', 'name': 'x'}]",
	  NAME ": listeners[1].name: `x` is also listeners[0]'s" },
	{ "'listeners': [{'listen': '127.0.0.1:80'}, {'listen': '127.0.0.2:80'}]",
	  NAME ": listeners[1].name: `http-80` is also listeners[0]'s (set `name` on one of them)" },
	{ "'listeners': [{'listen': ':80'}, {'listen': ':9100'}], 'metrics': {'listen': '127.0.0.1:9100'}",
	  NAME ": metrics.listen: 127.0.0.1:9100 conflicts with listeners[1] *:9100 (use another port, "
	  "or null to serve /metrics on the listeners)" },
};

START_TEST(bad_cross_check)
{
	const struct bad_validate *c = &bad_validates[_i];
	char doc[DOC_LEN], want[ERR_LEN];
	struct config cfg;

	snprintf(doc, sizeof(doc), "{'backends': ['http://127.0.0.1:8001'], %s}", c->json);
	strlcpy(want, msg(c->want), sizeof(want));
	ck_assert_msg(validate(&cfg, doc) == 1, "%s: %s", c->json, err);
	ck_assert_msg(has_line(err, want), "%s:\n got: %s\nwant: %s", c->json, err, want);
	config_free(&cfg);
}
END_TEST

/* Different ports, or two specific addresses on one port, do not conflict. */
START_TEST(no_conflict)
{
	struct config cfg;

	ck_assert_int_eq(validate(&cfg, "{'backends': ['http://127.0.0.1:8001'], 'listeners': ["
	    "{'listen': '127.0.0.1:443', 'name': 'a', 'tls': {" CERTS "}},"
	    "{'listen': '127.0.0.2:443', 'name': 'b', 'tls': {" CERTS "}},"
	    "{'listen': ':80'}], 'metrics': {'listen': '127.0.0.1:9100'}}"), 0);
	config_free(&cfg);
}
END_TEST

static Suite *
config_tls_suite(void)
{
	Suite *s = suite_create("Configuration of TLS");
	TCase *tc;

	tc = tcase_create("listeners");
	tcase_add_test(tc, listeners_full);
	tcase_add_test(tc, proxy_protocol_listeners);
	tcase_add_test(tc, tls_defaults);
	tcase_add_test(tc, version_names);
	tcase_add_test(tc, short_form);
	tcase_add_test(tc, plain_listen_moves);
	tcase_add_test(tc, copy_listeners);
	suite_add_tcase(s, tc);

	tc = tcase_create("backends");
	tcase_add_test(tc, backend_objects);
	tcase_add_test(tc, backend_flag_https);
	suite_add_tcase(s, tc);

	tc = tcase_create("messages");
	tcase_add_loop_test(tc, bad_value, 0, COUNT(bad_docs));
	tcase_add_test(tc, too_many_listeners);
	tcase_add_test(tc, all_problems_reported);
	suite_add_tcase(s, tc);

	tc = tcase_create("validate");
	tcase_add_loop_test(tc, bad_cross_check, 0, COUNT(bad_validates));
	tcase_add_test(tc, no_conflict);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	return unit_run(config_tls_suite(), CK_NORMAL);
}
