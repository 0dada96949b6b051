/*
 * Configuration of discovered backends: the backend keys "discover", "srv",
 * "scheme" and "max_backends", the "resolve" section, and the expansion of
 * each discovered name into its slots (config_validate()).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "roundguard/config-json.h"
#include "roundguard/config.h"
#include "roundguard/net.h"

#define NS_S INT64_C(1000000000)

/* "discover": "dns" (every A and AAAA address of the URL's host). */
void
config_set_discover(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_backend *b = c->base;
	char q[QUOTE_MAX];
	const char *s = config_get_string(c, v, "\"dns\"");

	if (s == NULL)
		return;
	if (strcmp(s, "dns") != 0)
		config_jproblem(c, "%s: expected \"dns\" (for SRV records, give \"srv\" instead of "
		    "\"url\")", config_quote(q, s));
	else
		b->discover = CONFIG_DISCOVER_DNS;
}

/* A name to look up: letters, digits, '-', '_' and dots; not an address. */
static bool
dns_name_ok(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '.') {
			if (label == 0 && !(i == n - 1 && i > 0))
				return false;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_') || ++label > 63)
			return false;
	}
	return true;
}

/* "srv": "_http._tcp.api.service.consul" */
void
config_set_srv(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_backend *b = c->base;
	char q[QUOTE_MAX];
	const char *s = config_get_string(c, v, "an SRV name like \"_http._tcp.api.example\"");
	unsigned char ip[4];

	if (s == NULL)
		return;
	if (!dns_name_ok(s) || inet_pton(AF_INET, s, ip) == 1) {
		config_jproblem(c, "%s: not a DNS name", config_quote(q, s));
		return;
	}
	strlcpy(b->srv, s, sizeof(b->srv));
	b->discover = CONFIG_DISCOVER_SRV;
}

/* "scheme": "http" or "https", for "srv" entries (a URL has its own). */
void
config_set_scheme(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_backend *b = c->base;
	char q[QUOTE_MAX];
	const char *s = config_get_string(c, v, "\"http\" or \"https\"");

	if (s == NULL)
		return;
	if (strcmp(s, "http") == 0)
		b->addr.tls = 0;
	else if (strcmp(s, "https") == 0)
		b->addr.tls = 1;
	else
		config_jproblem(c, "%s: expected \"http\" or \"https\"", config_quote(q, s));
}

/*
 * After a backend object's keys: the combinations that make sense. An "srv"
 * entry gets a URL-like name for messages and an address with its scheme;
 * a discovered name's host must be a name.
 */
void
config_discover_finish(struct json_ctx *c, struct json_object *v, struct config_backend *b)
{
	bool has_url = json_object_object_get_ex(v, "url", NULL);
	bool has_scheme = json_object_object_get_ex(v, "scheme", NULL);
	bool has_max = json_object_object_get_ex(v, "max_backends", NULL);
	bool has_srv = json_object_object_get_ex(v, "srv", NULL);
	unsigned char ip[16];

	/* Whatever the order of the keys: "srv" excludes "url" and "discover". */
	if (has_srv && (has_url || json_object_object_get_ex(v, "discover", NULL))) {
		config_jproblem(c, "\"srv\" names the service: give it without \"url\" and "
		    "\"discover\"");
		return;
	}
	if (has_srv && b->srv[0] != '\0') {
		b->discover = CONFIG_DISCOVER_SRV;
		snprintf(b->url, sizeof(b->url), "%s+srv://%s", b->addr.tls ? "https" : "http",
		    b->srv);
		strlcpy(b->addr.host, b->srv, sizeof(b->addr.host));
		snprintf(b->addr.hostport, sizeof(b->addr.hostport), "%s", b->srv);
		b->addr.port = 0;
		if (b->addr.tls && b->tls.server_name[0] == '\0')
			config_jproblem(c, "tls.server_name: required for an https \"srv\" entry "
			    "(the name its backends' certificates carry)");
	} else if (has_scheme && !has_srv) {
		config_jproblem(c, "scheme: only for \"srv\" entries (a URL has its own)");
	}
	if (b->discover == CONFIG_DISCOVER_DNS && b->url[0] != '\0' &&
	    (inet_pton(AF_INET, b->addr.host, ip) == 1 || inet_pton(AF_INET6, b->addr.host, ip) == 1))
		config_jproblem(c, "discover: %s is an address, not a name to look up",
		    b->addr.host);
	if (b->discover == CONFIG_DISCOVER_NONE && has_max)
		config_jproblem(c, "max_backends: only for discovered names (\"discover\" or \"srv\")");
	if (b->discover != CONFIG_DISCOVER_NONE && b->discover_max == 0)
		b->discover_max = CONFIG_DISCOVER_MAX_DEFAULT;
}

static bool
ip_literal(const char *host, uint16_t port, struct net_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->port = port;
	if (inet_pton(AF_INET, host, out->bytes) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, host, out->bytes) == 1)
		out->family = AF_INET6;
	return out->family != 0 && port != 0;
}

/* "resolvers": ["127.0.0.1:53", "[::1]:5353"]: addresses, not names. */
static void
set_resolvers(struct json_ctx *c, struct json_object *v, const struct field *f)
{
	struct config_resolve *r = &c->cfg->resolve;
	size_t n, old;

	if (v == NULL) {		/* null: /etc/resolv.conf */
		r->nresolvers = 0;
		return;
	}
	if (!config_expect(c, v, json_type_array, "an array of \"address:port\" strings or null"))
		return;
	n = json_object_array_length(v);
	if (n > CONFIG_RESOLVERS_MAX) {
		config_jproblem(c, "%zu resolvers: too many (at most %d)", n, CONFIG_RESOLVERS_MAX);
		return;
	}
	r->nresolvers = 0;
	for (size_t i = 0; i < n; i++) {
		struct listen_addr la;
		char q[QUOTE_MAX], why[WHY_MAX];
		const char *s;

		old = config_path_push_index(c, i);
		s = config_get_string(c, json_object_array_get_idx(v, i), "an \"address:port\" string");
		if (s != NULL) {
			if (parse_listen_addr(s, &la, why, sizeof(why)) == -1)
				config_jproblem(c, "%s", why);
			else if (!ip_literal(la.host, la.port, &r->resolvers[r->nresolvers]))
				config_jproblem(c, "%s: not an IP address and port", config_quote(q, s));
			else
				r->nresolvers++;
		}
		config_path_pop(c, old);
	}
}

#define ROFF(member) offsetof(struct config, resolve.member)

const struct field config_resolve_fields[] = {
	{ "resolvers", set_resolvers, ROFF(resolvers), 0, 0, NULL },
	{ "min_interval", config_set_duration, ROFF(min_interval_ns), 0, 0, NULL },
	{ "max_interval", config_set_duration, ROFF(max_interval_ns), 0, 0, NULL },
	{ "timeout", config_set_duration, ROFF(timeout_ns), 0, 0, NULL },
	{ "hold", config_set_duration, ROFF(hold_ns), 0, 0, NULL },
	{ NULL, NULL, 0, 0, 0, NULL },
};

void
config_resolve_defaults(struct config_resolve *r)
{
	memset(r, 0, sizeof(*r));
	r->min_interval_ns = NS_S;
	r->max_interval_ns = 300 * NS_S;
	r->timeout_ns = 2 * NS_S;
	r->hold_ns = 3600 * NS_S;
}

/*
 * Replace each discovered entry by its max_backends slots, copies of it that
 * know the first slot's index (the checker fills their addresses). Then the
 * segment, the metrics rows and every per-backend array hold that many.
 */
void
config_discover_expand(struct config *cfg, const char *name, struct problems *pr)
{
	const struct config_resolve *r = &cfg->resolve;
	struct config_backend *list;
	size_t total = 0, k = 0;

	if (r->min_interval_ns <= 0 || r->max_interval_ns < r->min_interval_ns)
		config_problem(pr, "%s: resolve.max_interval: must be at least resolve.min_interval "
		    "(and both above 0)", name);
	if (r->timeout_ns <= 0)
		config_problem(pr, "%s: resolve.timeout: must be above 0", name);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		cfg->backends[i].file_index = (uint32_t)i;
		total += cfg->backends[i].discover != CONFIG_DISCOVER_NONE ?
		    cfg->backends[i].discover_max : 1;
	}
	if (total == cfg->nbackends)
		return;
	if (total > CONFIG_BACKENDS_MAX) {
		config_problem(pr, "%s: backends: %zu with every discovered name's max_backends: "
		    "too many (at most %d)", name, total, CONFIG_BACKENDS_MAX);
		return;
	}
	if ((list = calloc(total, sizeof(*list))) == NULL) {
		config_problem(pr, "%s: backends: out of memory", name);
		return;
	}
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct config_backend *b = &cfg->backends[i];
		size_t n = b->discover != CONFIG_DISCOVER_NONE ? b->discover_max : 1;

		for (size_t j = 0; j < n; j++) {
			list[k + j] = *b;
			list[k + j].discover_first = (uint32_t)k;
			list[k + j].salen = 0;	/* no address until the checker gives one */
		}
		k += n;
	}
	free(cfg->backends);
	cfg->backends = list;
	cfg->nbackends = total;
}
