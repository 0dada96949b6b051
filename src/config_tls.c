/* Configuration of TLS: "listeners" with their "tls" objects, backend objects with "tls", and their cross-checks. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "roundguard/config.h"
#include "roundguard/config-json.h"

/* Mozilla's "intermediate" TLS 1.2 list (ssl-config.mozilla.org, version 5.7). */
#define CIPHERS_INTERMEDIATE \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

/* Longest name in dotted form and longest label (RFC 1035). */
#define DNS_NAME_MAX 253
#define DNS_LABEL_MAX 63

#define LOFF(member) offsetof(struct config_listener, member)
#define BOFF(member) offsetof(struct config_backend, member)

/* ---- values ---- */

/* A file name as written; whether it can be read is tls.c's business, when the master loads it. */
static void
set_file(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	const char *s = config_get_string(c, v, "a file name");

	if (s == NULL)
		return;
	if (*s == '\0')
		config_jproblem(c, "\"\": must not be empty");
	else if (strlen(s) >= CONFIG_PATH_MAX)
		config_jproblem(c, "too long (at most %d bytes)", CONFIG_PATH_MAX - 1);
	else
		strlcpy((char *)c->base + f->off, s, CONFIG_PATH_MAX);
}

/* A port as a JSON integer, 1-65535. */
static void
set_port(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	int64_t n;

	if (!config_expect(c, v, json_type_int, "an integer (1-65535)"))
		return;
	n = json_object_get_int64(v);
	if (n < 1 || n > 65535) {
		config_jproblem(c, "%.*s: out of range (use 1-65535)", SHOW_MAX,
		    json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
		return;
	}
	*(uint16_t *)((char *)c->base + f->off) = (uint16_t)n;
}

/* A listener name names its metric series: short, and nothing that needs escaping anywhere. */
static void
set_listener_name(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_listener *l = c->base;
	char q[QUOTE_MAX];
	const char *s = config_get_string(c, v, "a string");

	if (s == NULL)
		return;
	if (*s == '\0' || strlen(s) >= CONFIG_NAME_MAX ||
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(s)) {
		config_jproblem(c, "%s: use 1-%d letters, digits, '.', '_' or '-'", config_quote(q, s),
		    CONFIG_NAME_MAX - 1);
		return;
	}
	strlcpy(l->name, s, sizeof(l->name));
	l->name_set = true;
}

static void
set_listener_listen(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_listener *l = c->base;

	config_get_listen(c, v, &l->addr, "an address like \":443\"");
}

static void
set_tls_version(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_listener *l = c->base;
	char q[QUOTE_MAX];
	const char *s = config_get_string(c, v, "a string");

	if (s == NULL)
		return;
	if (strcasecmp(s, "TLSv1.2") == 0)
		l->tls.min_version = CONFIG_TLS_1_2;
	else if (strcasecmp(s, "TLSv1.3") == 0)
		l->tls.min_version = CONFIG_TLS_1_3;
	else
		config_jproblem(c, "%s: unknown or unsupported version (use \"TLSv1.2\" or \"TLSv1.3\")",
		    config_quote(q, s));
}

/*
 * Whether OpenSSL takes a cipher list, and each name in it on its own: OpenSSL
 * accepts a list as long as one entry matches, so a typo would silently drop a
 * cipher. Entries starting with '!', '-', '+' or '@' only edit the list. NULL
 * if all is well; otherwise why, with the entry in bad.
 */
static const char *
cipher_problem(const char *list, bool suites, char *bad, size_t badlen)
{
	char copy[CONFIG_CIPHERS_MAX], *p, *e;
	const char *why = NULL;
	SSL_CTX *ctx;
	int ok;

	bad[0] = '\0';
	if ((ctx = SSL_CTX_new(TLS_method())) == NULL) {
		ERR_clear_error();
		return "cannot check it: OpenSSL is out of memory";
	}
	strlcpy(copy, list, sizeof(copy));
	for (p = copy; why == NULL && (e = strsep(&p, suites ? ":" : ": ,")) != NULL;) {
		if (*e == '\0' || (!suites && strchr("!-+@", *e) != NULL))
			continue;
		ok = suites ? SSL_CTX_set_ciphersuites(ctx, e) : SSL_CTX_set_cipher_list(ctx, e);
		if (ok != 1) {
			strlcpy(bad, e, badlen);
			if (!suites && strncmp(e, "TLS_", 4) == 0)
				why = "is a TLS 1.3 suite (those go in \"ciphersuites\")";
			else if (suites && strncmp(e, "TLS_", 4) != 0)
				why = "is not a TLS 1.3 suite (TLS 1.2 ciphers go in \"ciphers\")";
			else
				why = "matches no cipher this OpenSSL offers";
		}
	}
	if (why == NULL) {
		ok = suites ? SSL_CTX_set_ciphersuites(ctx, list) : SSL_CTX_set_cipher_list(ctx, list);
		if (ok != 1)
			why = "OpenSSL selects no cipher from it";
	}
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return why;
}

static void
set_cipher_string(struct json_ctx *c, struct json_object *v, const struct field *f, bool suites)
{
	char q[QUOTE_MAX], qb[QUOTE_MAX], bad[CONFIG_CIPHERS_MAX];
	const char *s = config_get_string(c, v, "a string"), *why;

	if (s == NULL)
		return;
	if (*s == '\0') {
		config_jproblem(c, "\"\": must not be empty (leave the key out for the default)");
		return;
	}
	if (strlen(s) >= CONFIG_CIPHERS_MAX) {
		config_jproblem(c, "too long (at most %d bytes)", CONFIG_CIPHERS_MAX - 1);
		return;
	}
	if ((why = cipher_problem(s, suites, bad, sizeof(bad))) != NULL) {
		if (bad[0] != '\0')
			config_jproblem(c, "%s: %s %s", config_quote(q, s), config_quote(qb, bad), why);
		else
			config_jproblem(c, "%s: %s", config_quote(q, s), why);
		return;
	}
	strlcpy((char *)c->base + f->off, s, CONFIG_CIPHERS_MAX);
}

static void
set_ciphers(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	set_cipher_string(c, v, f, false);
}

static void
set_ciphersuites(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	set_cipher_string(c, v, f, true);
}

static void
set_handshake_timeout(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_listener *l = c->base;
	int before = c->pr->count;

	config_set_duration(c, v, f);
	if (c->pr->count == before)
		l->tls.handshake_timeout_set = true;
}

/* Whether each key in keys (NULL-terminated) is in obj; one "is required" problem per missing one. */
static bool
require(struct json_ctx *c, struct json_object *obj, const char *const *keys, const char *hint)
{
	bool ok = true;

	for (; *keys != NULL; keys++) {
		if (!json_object_object_get_ex(obj, *keys, NULL)) {
			config_jproblem(c, "\"%s\" is required%s", *keys, hint);
			ok = false;
		}
	}
	return ok;
}

static const struct field cert_fields[] = {
	{ "cert", set_file, offsetof(struct config_cert, cert), 0, 0, NULL },
	{ "key", set_file, offsetof(struct config_cert, key), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

/* "certificates": [{"cert": ..., "key": ...}, ...], certs[0] being the default one. */
static void
set_certificates(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	static const char *const keys[] = { "cert", "key", NULL };
	struct config_listener *l = c->base;
	struct json_object *e;
	size_t n, i, old;

	if (!config_expect(c, v, json_type_array, "an array of {\"cert\": FILE, \"key\": FILE}"))
		return;
	n = json_object_array_length(v);
	if (n == 0) {
		config_jproblem(c, "at least one certificate is needed");
		return;
	}
	if (n > CONFIG_CERTS_MAX) {
		config_jproblem(c, "%zu certificates: too many (at most %d)", n, CONFIG_CERTS_MAX);
		return;
	}
	memset(l->tls.certs, 0, sizeof(l->tls.certs));
	for (i = 0; i < n; i++) {
		old = config_path_push_index(c, i);
		e = json_object_array_get_idx(v, i);
		c->base = &l->tls.certs[i];
		if (config_expect(c, e, json_type_object, "an object like {\"cert\": FILE, \"key\": FILE}")) {
			config_set_object(c, e, cert_fields);
			require(c, e, keys, "");
		}
		c->base = l;
		config_path_pop(c, old);
	}
	l->tls.ncerts = n;
}

static const struct field tls_fields[] = {
	{ "certificates", set_certificates, LOFF(tls.certs), 0, 0, NULL },
	{ "min_version", set_tls_version, LOFF(tls.min_version), 0, 0, NULL },
	{ "ciphers", set_ciphers, LOFF(tls.ciphers), 0, 0, NULL },
	{ "ciphersuites", set_ciphersuites, LOFF(tls.ciphersuites), 0, 0, NULL },
	{ "strict_sni", config_set_bool, LOFF(tls.strict_sni), 0, 0, NULL },
	{ "session_tickets", config_set_bool, LOFF(tls.session_tickets), 0, 0, NULL },
	{ "handshake_timeout", set_handshake_timeout, LOFF(tls.handshake_timeout_ns), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

/* A listener's "tls": null or absent is plain HTTP. */
static void
set_listener_tls(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	static const char *const keys[] = { "certificates", NULL };
	struct config_listener *l = c->base;

	memset(&l->tls, 0, sizeof(l->tls));
	l->tls_set = false;
	if (v == NULL)
		return;
	if (!config_expect(c, v, json_type_object, "an object or null"))
		return;
	l->tls_set = true;
	l->tls.min_version = CONFIG_TLS_1_2;
	strlcpy(l->tls.ciphers, CIPHERS_INTERMEDIATE, sizeof(l->tls.ciphers));
	l->tls.session_tickets = true;
	config_set_object(c, v, tls_fields);
	require(c, v, keys, " (at least one {\"cert\": FILE, \"key\": FILE})");
}

/* proxy_protocol_from: the networks (CIDR) whose connections may carry a PROXY header. */
static void
set_proxy_from(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_listener *l = c->base;
	char q[QUOTE_MAX];
	const char *s, *why;
	size_t n, old;

	if (!config_expect(c, v, json_type_array, "an array of addresses or networks"))
		return;
	n = json_object_array_length(v);
	if (n > PROXYPROTO_FROM_MAX) {
		config_jproblem(c, "%zu networks: too many (at most %d)", n, PROXYPROTO_FROM_MAX);
		return;
	}
	l->nproxy_from = 0;
	for (size_t i = 0; i < n; i++) {
		old = config_path_push_index(c, i);
		s = config_get_string(c, json_object_array_get_idx(v, i),
		    "an address or network like \"10.0.0.0/8\"");
		if (s != NULL && proxyproto_cidr_parse(s, &l->proxy_from[l->nproxy_from], &why) == -1)
			config_jproblem(c, "%s: %s", config_quote(q, s), why);
		else if (s != NULL)
			l->nproxy_from++;
		config_path_pop(c, old);
	}
}

static const struct field listener_fields[] = {
	{ "listen", set_listener_listen, LOFF(addr), 0, 0, NULL },
	{ "name", set_listener_name, LOFF(name), 0, 0, NULL },
	{ "tls", set_listener_tls, LOFF(tls), 0, 0, NULL },
	{ "redirect_https", config_set_bool, LOFF(redirect_https), 0, 0, NULL },
	{ "redirect_port", set_port, LOFF(redirect_port), 0, 0, NULL },
	{ "proxy_protocol", config_set_bool, LOFF(proxy_protocol), 0, 0, NULL },
	{ "proxy_protocol_from", set_proxy_from, LOFF(proxy_from), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

/* One entry of "listeners"; true if it was stored in l without a problem. */
static bool
get_listener(struct json_ctx *c, struct json_object *v, struct config_listener *l)
{
	static const char *const keys[] = { "listen", NULL };
	int before = c->pr->count;
	void *base = c->base;
	size_t old;

	if (!config_expect(c, v, json_type_object, "an object like {\"listen\": \":443\", \"tls\": {...}}"))
		return false;
	memset(l, 0, sizeof(*l));
	l->redirect_port = 443;
	c->base = l;
	config_set_object(c, v, listener_fields);
	c->base = base;
	require(c, v, keys, "");
	if (l->tls_set && l->redirect_https) {
		old = config_path_push_key(c, "redirect_https");
		config_jproblem(c, "not with \"tls\": a TLS listener already serves https");
		config_path_pop(c, old);
	} else if (!l->redirect_https && json_object_object_get_ex(v, "redirect_port", NULL)) {
		old = config_path_push_key(c, "redirect_port");
		config_jproblem(c, "only with \"redirect_https\": true");
		config_path_pop(c, old);
	}
	if (!l->proxy_protocol && json_object_object_get_ex(v, "proxy_protocol_from", NULL)) {
		old = config_path_push_key(c, "proxy_protocol_from");
		config_jproblem(c, "only with \"proxy_protocol\": true");
		config_path_pop(c, old);
	}
	return c->pr->count == before;
}

void
config_tls_set_listeners(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config *cfg = c->cfg;
	struct config_listener *list;
	size_t n, i, kept = 0, old;

	if (v == NULL) {
		/* null: the short form, one plain listener at "listen". */
		free(cfg->listeners);
		cfg->listeners = NULL;
		cfg->nlisteners = 0;
		cfg->listeners_set = false;
		return;
	}
	if (!config_expect(c, v, json_type_array, "an array of listener objects or null"))
		return;
	n = json_object_array_length(v);
	if (n == 0) {
		config_jproblem(c, "at least one listener is needed (or null to use \"listen\")");
		return;
	}
	if (n > CONFIG_LISTENERS_MAX) {
		config_jproblem(c, "%zu listeners: too many (at most %d)", n, CONFIG_LISTENERS_MAX);
		return;
	}
	if ((list = calloc(n, sizeof(*list))) == NULL) {
		config_jproblem(c, "out of memory for %zu listeners", n);
		return;
	}
	for (i = 0; i < n; i++) {
		old = config_path_push_index(c, i);
		if (get_listener(c, json_object_array_get_idx(v, i), &list[kept]))
			kept++;
		config_path_pop(c, old);
	}
	free(cfg->listeners);
	cfg->listeners = list;
	cfg->nlisteners = kept;
	cfg->listeners_set = true;
}

/* ---- backend objects ---- */

static void
set_backend_url(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_backend *b = c->base;
	char q[QUOTE_MAX], why[WHY_MAX];
	const char *s = config_get_string(c, v, "a URL string");

	if (s == NULL)
		return;
	if (strlen(s) >= sizeof(b->url)) {
		config_jproblem(c, "%s: URL too long (at most %zu bytes)", config_quote(q, s),
		    sizeof(b->url) - 1);
		return;
	}
	if (parse_backend_url(s, &b->addr, why, sizeof(why)) == -1) {
		config_jproblem(c, "%s", why);
		return;
	}
	strlcpy(b->url, s, sizeof(b->url));
}

/* A DNS name for SNI and the certificate check; an IP address has no SNI (RFC 6066 3). */
static void
set_server_name(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_backend *b = c->base;
	unsigned char ip[16];
	char q[QUOTE_MAX];
	const char *s = config_get_string(c, v, "a host name"), *p;
	size_t label = 0;

	if (s == NULL)
		return;
	if (inet_pton(AF_INET, s, ip) == 1 || inet_pton(AF_INET6, s, ip) == 1) {
		config_jproblem(c, "%s: an IP address cannot be sent as SNI (leave server_name out "
		    "to check the certificate against the URL's address)", config_quote(q, s));
		return;
	}
	for (p = s; *p != '\0'; p++) {
		if (*p == '.' && label > 0 && p[1] != '\0') {
			label = 0;
			continue;
		}
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", *p) ||
		    ++label > DNS_LABEL_MAX)
			break;
	}
	if (*s == '\0' || *p != '\0' || strlen(s) > DNS_NAME_MAX) {
		config_jproblem(c, "%s: not a host name (letters, digits, '-' and '_' in labels of "
		    "1-63 bytes between dots)", config_quote(q, s));
		return;
	}
	strlcpy(b->tls.server_name, s, sizeof(b->tls.server_name));
}

static const struct field backend_tls_fields[] = {
	{ "ca_file", set_file, BOFF(tls.ca_file), 0, 0, NULL },
	{ "server_name", set_server_name, BOFF(tls.server_name), 0, 0, NULL },
	{ "verify", config_set_bool, BOFF(tls.verify), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

static void
set_backend_tls(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	config_set_object(c, v, backend_tls_fields);
}

/* send_proxy: "v2" (the binary version, as HAProxy's send-proxy-v2), or null for none. */
static void
set_send_proxy(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_backend *b = c->base;
	char q[QUOTE_MAX];
	const char *s;

	if (v == NULL) {
		b->send_proxy = false;
		return;
	}
	if ((s = config_get_string(c, v, "\"v2\" or null")) == NULL)
		return;
	if (strcmp(s, "v2") != 0)
		config_jproblem(c, "%s: expected \"v2\" or null (version 1 is not sent)",
		    config_quote(q, s));
	else
		b->send_proxy = true;
}

static const struct field backend_fields[] = {
	{ "url", set_backend_url, BOFF(url), 0, 0, NULL },
	{ "tls", set_backend_tls, BOFF(tls), 0, 0, NULL },
	{ "weight", config_set_u32, BOFF(weight), 0, 256, NULL },
	{ "send_proxy", set_send_proxy, BOFF(send_proxy), 0, 0, NULL },
	{ "discover", config_set_discover, BOFF(discover), 0, 0, NULL },
	{ "srv", config_set_srv, BOFF(srv), 0, 0, NULL },
	{ "scheme", config_set_scheme, BOFF(addr), 0, 0, NULL },
	{ "max_backends", config_set_u32, BOFF(discover_max), 1, CONFIG_DISCOVER_MAX, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

bool
config_tls_get_backend(struct json_ctx *c, struct json_object *v, struct config_backend *b)
{
	static const char *const keys[] = { "url", NULL };
	struct json_object *tls;
	int before = c->pr->count;
	void *base = c->base;
	size_t old;

	memset(b, 0, sizeof(*b));
	b->tls.verify = true;
	b->weight = 1;
	c->base = b;
	config_set_object(c, v, backend_fields);
	c->base = base;
	if (!json_object_object_get_ex(v, "srv", NULL))
		require(c, v, keys, " (\"https://host[:port][/prefix]\" or \"http://...\", "
		    "or \"srv\")");
	config_discover_finish(c, v, b);
	if (b->url[0] != '\0' && !b->addr.tls && json_object_object_get_ex(v, "tls", &tls)) {
		old = config_path_push_key(c, "tls");
		config_jproblem(c, "only for https:// backends");
		config_path_pop(c, old);
	}
	return c->pr->count == before;
}

/* ---- cross-checks ---- */

/* Two sockets that cannot both be bound: with SO_REUSEPORT they would even share connections. */
static bool
listen_conflict(const struct listen_addr *a, const struct listen_addr *b)
{
	if (a->port != b->port)
		return false;
	return config_listen_wildcard(a) || config_listen_wildcard(b) ||
	    strcasecmp(a->host, b->host) == 0;
}

static void
derive_name(struct config_listener *l)
{
	if (!l->name_set)
		snprintf(l->name, sizeof(l->name), "%s-%u", l->tls_set ? "https" : "http",
		    (unsigned)l->addr.port);
}

/* The short form: one plain listener at "listen", so that the master binds from one list. */
static void
validate_short_form(struct config *cfg, const char *name, struct problems *pr)
{
	if (cfg->listeners == NULL && (cfg->listeners = calloc(1, sizeof(*cfg->listeners))) == NULL) {
		config_problem(pr, "%s: listen: out of memory", name);
		return;
	}
	cfg->nlisteners = 1;
	memset(&cfg->listeners[0], 0, sizeof(cfg->listeners[0]));
	cfg->listeners[0].addr = cfg->listen;
	cfg->listeners[0].redirect_port = 443;
	derive_name(&cfg->listeners[0]);
}

void
config_tls_validate(struct config *cfg, const char *name, struct problems *pr)
{
	char a[PARSE_HOST_MAX + 16], b[PARSE_HOST_MAX + 16];
	struct config_listener *l;
	const struct config_listener *plain = NULL;
	size_t i, j;

	if (!cfg->listeners_set) {
		validate_short_form(cfg, name, pr);
		return;
	}
	if (cfg->listen_set)
		config_problem(pr, "%s: listen, listeners: use one or the other (\"listen\" is the short "
		    "form of a single plain listener)", name);
	for (i = 0; i < cfg->nlisteners; i++) {
		l = &cfg->listeners[i];
		derive_name(l);
		if (l->tls_set && !l->tls.handshake_timeout_set)
			l->tls.handshake_timeout_ns = cfg->proxy.client_timeout_ns;
		if (plain == NULL && !l->tls_set)
			plain = l;
	}
	/* Quadratic over at most 16 listeners. */
	for (i = 1; i < cfg->nlisteners; i++) {
		l = &cfg->listeners[i];
		for (j = 0; j < i; j++) {
			if (listen_conflict(&l->addr, &cfg->listeners[j].addr)) {
				config_format_listen(a, sizeof(a), &l->addr);
				config_format_listen(b, sizeof(b), &cfg->listeners[j].addr);
				config_problem(pr, "%s: listeners[%zu].listen: %s conflicts with listeners[%zu] %s "
				    "(the same port on the same or every address)", name, i, a, j, b);
				break;
			}
		}
		/* Names are checked once the addresses are apart: "http-80" twice says nothing new. */
		for (j = j < i ? i : 0; j < i; j++) {
			if (strcmp(l->name, cfg->listeners[j].name) == 0) {
				config_problem(pr, "%s: listeners[%zu].name: \"%s\" is also listeners[%zu]'s%s",
				    name, i, l->name, j, l->name_set ? "" : " (set \"name\" on one of them)");
				break;
			}
		}
	}
	for (i = 0; cfg->metrics.listen_set && i < cfg->nlisteners; i++) {
		if (listen_conflict(&cfg->metrics.listen, &cfg->listeners[i].addr)) {
			config_format_listen(a, sizeof(a), &cfg->metrics.listen);
			config_format_listen(b, sizeof(b), &cfg->listeners[i].addr);
			config_problem(pr, "%s: metrics.listen: %s conflicts with listeners[%zu] %s "
			    "(use another port, or null to serve %s on the listeners)", name, a, i, b,
			    cfg->metrics.path);
		}
	}
	if (plain != NULL)
		cfg->listen = plain->addr;
	else if (cfg->nlisteners > 0)
		cfg->listen = cfg->listeners[0].addr;
}

struct listen_addr *
config_plain_listen(struct config *cfg)
{
	size_t i;

	if (!cfg->listeners_set)
		return &cfg->listen;
	for (i = 0; i < cfg->nlisteners; i++) {
		if (!cfg->listeners[i].tls_set)
			return &cfg->listeners[i].addr;
	}
	return NULL;
}
