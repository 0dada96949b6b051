/* The JSON walk of config.c, shared with config_tls.c: for the configuration parser only, not a public API. */
#ifndef ROUNDGUARD_CONFIG_JSON_H
#define ROUNDGUARD_CONFIG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "roundguard/config-t.h"

/* Bytes of a key or value echoed in a message, as parse.c does, so a huge value cannot bury the reason. */
#define SHOW_MAX 64
/* Quotes, "..." and every shown byte escaped as \xNN. */
#define QUOTE_MAX (SHOW_MAX * 4 + 8)
/* Room for one problem line before it is appended to the caller's buffer. */
#define LINE_MAX_LEN 4096
#define WHY_MAX 1024
#define KEYPATH_MAX 512

/*
 * Problems found by one call. They are appended to whatever the caller's
 * buffer already holds (start it as ""), so the problems of the file, the
 * environment, the flags and validation can be printed together. A line that
 * does not fit is cut and the buffer ends with "...".
 */
struct problems {
	char *err;
	size_t errlen;
	size_t len;
	bool full;
	int count;
};

/* State of one JSON document walk: where we are, for "health_check.interval"-style messages. */
struct json_ctx {
	struct config *cfg;
	/* What field offsets count from: cfg, or the listener or backend being walked. */
	void *base;
	struct problems *pr;
	const char *name;
	char path[KEYPATH_MAX];
	size_t pathlen;
};

struct field;
typedef void field_fn(struct json_ctx *c, struct json_object *v, const struct field *f);

/* One key of a JSON object: its handler, where the value goes and, for numbers and sizes, its range. */
struct field {
	const char *key;
	field_fn *fn;
	size_t off;		/* from json_ctx.base */
	int64_t min;
	int64_t max;
	const struct field *sub;	/* the keys of a nested object */
};

void config_problem(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "NAME: key.path: reason", or "NAME: reason" at the top level. */
void config_jproblem(struct json_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Quote s for a message like parse.c does: escaped, at most SHOW_MAX bytes shown. */
const char *config_quote(char buf[static QUOTE_MAX], const char *s);

/* The key path: push a key or an index, then pop back to the length they return. */
size_t config_path_push_key(struct json_ctx *c, const char *key);
size_t config_path_push_index(struct json_ctx *c, size_t i);
void config_path_pop(struct json_ctx *c, size_t old);

/* True if v has type t; otherwise one "expected <what>, got <kind>" problem. */
bool config_expect(struct json_ctx *c, struct json_object *v, enum json_type t, const char *what);
/* A string value without NUL bytes, or NULL after one problem. */
const char *config_get_string(struct json_ctx *c, struct json_object *v, const char *what);
bool config_get_listen(struct json_ctx *c, struct json_object *v, struct listen_addr *out,
    const char *what);
/* Every key of obj through table; a key that is not in it is an "unknown key" problem. */
void config_set_object(struct json_ctx *c, struct json_object *obj, const struct field *table);
field_fn config_set_bool;
field_fn config_set_duration;
field_fn config_set_int;		/* into an int, in [min, max] */
field_fn config_set_u32;		/* into a uint32_t, in [min, max] */

/* Whether a listens on every address; "*:3000" or "[::1]:443" as shown in messages. */
bool config_listen_wildcard(const struct listen_addr *a);
void config_format_listen(char *buf, size_t buflen, const struct listen_addr *a);

/* config_tls.c: "listeners", backend objects and their cross-checks (config_validate()). */
field_fn config_tls_set_listeners;
bool config_tls_get_backend(struct json_ctx *c, struct json_object *v, struct config_backend *b);
void config_tls_validate(struct config *cfg, const char *name, struct problems *pr);

/* config_discover.c: discovered names ("discover", "srv", "resolve") and their slots. */
field_fn config_set_discover, config_set_srv, config_set_scheme;
extern const struct field config_resolve_fields[];
void config_discover_finish(struct json_ctx *c, struct json_object *v, struct config_backend *b);
void config_resolve_defaults(struct config_resolve *r);
void config_discover_expand(struct config *cfg, const char *name, struct problems *pr);

#endif
