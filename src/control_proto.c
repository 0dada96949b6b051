/* The control protocol's pure parts: one request parsed from JSON text and formatted back. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "roundguard/config-t.h"
#include "roundguard/control.h"
#include "roundguard/echo.h"
#include "roundguard/ws.h"

/* A request is one flat object; a few levels more let a nested value be named as the wrong type. */
#define CONTROL_JSON_DEPTH	8
/* Bytes of a key or value shown in a reason, and the room they take escaped and quoted. */
#define SHOW_MAX		40
#define SHOW_BUF		PARSE_QUOTE_BUF(SHOW_MAX)
/* The longest reason: "command: unknown command " + 168 bytes shown + the list of commands. */
_Static_assert(25 + SHOW_BUF + 44 < CONTROL_REASON_MAX, "every reason fits in CONTROL_REASON_MAX");

_Static_assert(CONTROL_BACKEND_MAX == sizeof(((struct config_backend *)0)->url) - 1,
    "a request names any backend URL the configuration accepts");
/* {"command":"weight","backend":"...","weight":256} with every backend byte escaped as \" or \\. */
_Static_assert(46 + 2 * CONTROL_BACKEND_MAX < CONTROL_REQUEST_MAX,
    "every valid request fits in CONTROL_REQUEST_MAX");

static const char *const command_names[] = {
	[CONTROL_STATUS] = "status",
	[CONTROL_DRAIN] = "drain",
	[CONTROL_MAINT] = "maint",
	[CONTROL_READY] = "ready",
	[CONTROL_WEIGHT] = "weight",
};
#define NCOMMANDS (sizeof(command_names) / sizeof(command_names[0]))

const char *
control_command_name(enum control_command c)
{
	if ((unsigned)c >= NCOMMANDS)
		return "unknown";
	return command_names[c];
}

int
control_command_from_name(const char *s, enum control_command *out)
{
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(s, command_names[i]) == 0) {
			*out = (enum control_command)i;
			return 0;
		}
	}
	return -1;
}

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/*
 * n bytes of s quoted for a reason: at most SHOW_MAX of them, '"', '\' and
 * every byte outside printable ASCII escaped, so that a reason stays one line
 * of ASCII (the daemon sends it back inside JSON) whatever the request held.
 */
static const char *
show(char buf[static SHOW_BUF], const char *s, size_t n)
{
	return parse_quote(buf, SHOW_MAX, s, n, true);
}

/*
 * What json-c does not tell about the text: where the top-level value ends,
 * how many members the top-level object has (json-c keeps the last of two
 * equal keys without a word), and whether a string holds "\u0000" (json-c
 * cuts a key there: "command\u0000x" would read as "command").
 */
struct shape {
	size_t end;		/* just past the top-level value's closing bracket; 0: never closed */
	size_t members;
	bool nul;
};

static void
scan(const char *buf, size_t len, struct shape *s)
{
	bool in_string = false;
	size_t depth = 0;

	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < len; i++) {
		char c = buf[i];

		if (in_string) {
			if (c == '\\') {
				if (len - i > 5 && memcmp(buf + i + 1, "u0000", 5) == 0)
					s->nul = true;
				i++;
			} else if (c == '"') {
				in_string = false;
			}
			continue;
		}
		switch (c) {
		case '"':
			in_string = true;
			break;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (depth > 0 && --depth == 0) {
				s->end = i + 1;
				return;
			}
			break;
		case ':':
			/* In the top-level object, outside strings, a colon ends a key. */
			if (depth == 1)
				s->members++;
			break;
		}
	}
}

/*
 * What json-c's strict mode still lets through (single-quoted keys, NaN,
 * "1.", raw control bytes in strings): echo.c's validator refuses it.
 */
static int
rfc8259(const char *buf, size_t len, char *err, size_t errlen)
{
	struct echo_json ej;
	bool ok;

	if (echo_json_init(&ej) == -1)
		return fail(err, errlen, "out of memory");
	echo_json_feed(&ej, buf, len);
	ok = echo_json_finish(&ej);
	echo_json_free(&ej);
	if (!ok)
		return fail(err, errlen, "not valid JSON (RFC 8259: no single quotes, NaN, "
		    "malformed numbers or raw control characters)");
	return 0;
}

/* The text as one JSON object: the bytes, the syntax, and what scan() finds. */
static int
parse_object(const char *buf, size_t len, struct json_object **rootp, char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *root;
	enum json_tokener_error e;
	struct shape sh;
	size_t i, end;
	struct ws_utf8 u;

	if (len > CONTROL_REQUEST_MAX)
		return fail(err, errlen, "request too large: %zu bytes (at most %d)", len,
		    CONTROL_REQUEST_MAX);
	if (memchr(buf, '\0', len) != NULL)
		return fail(err, errlen, "the request holds a NUL byte");
	ws_utf8_init(&u);
	if (ws_utf8_feed(&u, (const uint8_t *)buf, len) == -1 || !ws_utf8_complete(&u))
		return fail(err, errlen, "the request is not valid UTF-8");
	for (i = 0; i < len && strchr(" \t\r\n", buf[i]) != NULL; i++)
		;
	if (i == len)
		return fail(err, errlen, "empty request");
	if (buf[i] != '{')
		return fail(err, errlen, "not a JSON object");

	scan(buf, len, &sh);
	if ((tok = json_tokener_new_ex(CONTROL_JSON_DEPTH)) == NULL)
		return fail(err, errlen, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, buf, (int)len);
	e = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	/* Strict mode takes white space after the value and refuses anything else there. */
	if (e == json_tokener_continue)
		return fail(err, errlen, "not valid JSON: the object does not end (cut short?)");
	if (e != json_tokener_success && sh.end > 0 && end >= sh.end)
		return fail(err, errlen, "unexpected data after the JSON object (at byte %zu)",
		    sh.end);
	if (e != json_tokener_success)
		return fail(err, errlen, "not valid JSON: %s at byte %zu", json_tokener_error_desc(e),
		    end);
	if (rfc8259(buf, len, err, errlen) == -1)
		goto fail;
	if (sh.nul) {
		fail(err, errlen, "a string holds \\u0000 (NUL)");
		goto fail;
	}
	if (sh.members != (size_t)json_object_object_length(root)) {
		fail(err, errlen, "a key appears more than once");
		goto fail;
	}
	*rootp = root;
	return 0;
fail:
	json_object_put(root);
	return -1;
}

static int
get_backend(struct json_object *v, struct control_request *r, char *err, size_t errlen)
{
	char q[SHOW_BUF];
	const char *s;
	size_t n;

	if (!json_object_is_type(v, json_type_string))
		return fail(err, errlen, "backend: expected a string, got %s",
		    json_type_to_name(json_object_get_type(v)));
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n == 0)
		return fail(err, errlen, "backend: empty (use a backend's URL or host:port)");
	if (n > CONTROL_BACKEND_MAX)
		return fail(err, errlen, "backend: too long: %zu bytes (at most %d)", n,
		    CONTROL_BACKEND_MAX);
	/* No configured URL or host:port holds anything else (parse_backend_url()). */
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return fail(err, errlen, "backend: %s: not a URL or host:port (printable "
			    "ASCII, no spaces)", show(q, s, n));
	}
	memcpy(r->backend, s, n);
	r->backend[n] = '\0';
	return 0;
}

static int
get_weight(struct json_object *v, struct control_request *r, char *err, size_t errlen)
{
	const char *text;
	int64_t w;

	if (json_object_is_type(v, json_type_double)) {
		text = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
		return fail(err, errlen, "weight: %.*s is not an integer", SHOW_MAX, text);
	}
	if (!json_object_is_type(v, json_type_int))
		return fail(err, errlen, "weight: expected an integer, got %s",
		    json_type_to_name(json_object_get_type(v)));
	w = json_object_get_int64(v);
	/* json-c clamps what int64_t cannot hold: do not show the clamped value as if sent. */
	if (w == INT64_MAX || w == INT64_MIN)
		return fail(err, errlen, "weight: out of range (0-%d)", CONTROL_WEIGHT_MAX);
	if (w < 0 || w > CONTROL_WEIGHT_MAX)
		return fail(err, errlen, "weight: %" PRId64 " is out of range (0-%d)", w,
		    CONTROL_WEIGHT_MAX);
	r->weight = (int)w;
	return 0;
}

/* The members of root as a request: known keys only, those the command takes and no other. */
static int
get_request(struct json_object *root, struct control_request *r, char *err, size_t errlen)
{
	struct json_object *cmd, *backend, *weight;
	const char *name;
	char q[SHOW_BUF];
	bool has_backend, has_weight;

	json_object_object_foreach(root, key, val) {
		(void)val;
		if (strcmp(key, "command") != 0 && strcmp(key, "backend") != 0 &&
		    strcmp(key, "weight") != 0)
			return fail(err, errlen, "unknown key %s (use command, backend, weight)",
			    show(q, key, strlen(key)));
	}
	if (!json_object_object_get_ex(root, "command", &cmd))
		return fail(err, errlen, "command: missing");
	if (!json_object_is_type(cmd, json_type_string))
		return fail(err, errlen, "command: expected a string, got %s",
		    json_type_to_name(json_object_get_type(cmd)));
	if (control_command_from_name(json_object_get_string(cmd), &r->command) == -1)
		return fail(err, errlen, "command: unknown command %s (use status, drain, maint, "
		    "ready or weight)", show(q, json_object_get_string(cmd),
		    (size_t)json_object_get_string_len(cmd)));
	name = control_command_name(r->command);

	has_backend = json_object_object_get_ex(root, "backend", &backend);
	r->backend[0] = '\0';
	if (r->command == CONTROL_STATUS && has_backend)
		return fail(err, errlen, "backend: not taken by %s", name);
	if (r->command != CONTROL_STATUS && !has_backend)
		return fail(err, errlen, "backend: missing (%s needs one)", name);
	if (has_backend && get_backend(backend, r, err, errlen) == -1)
		return -1;

	has_weight = json_object_object_get_ex(root, "weight", &weight);
	r->weight = -1;
	if (r->command != CONTROL_WEIGHT && has_weight)
		return fail(err, errlen, "weight: not taken by %s", name);
	if (r->command == CONTROL_WEIGHT && !has_weight)
		return fail(err, errlen, "weight: missing (weight needs one, 0-%d)",
		    CONTROL_WEIGHT_MAX);
	if (has_weight && get_weight(weight, r, err, errlen) == -1)
		return -1;
	return 0;
}

int
control_request_parse(const char *buf, size_t len, struct control_request *out, char *err,
    size_t errlen)
{
	struct json_object *root = NULL;
	struct control_request r;
	int rc;

	if (buf == NULL) {
		buf = "";
		len = 0;
	}
	if (parse_object(buf, len, &root, err, errlen) == -1)
		return -1;
	memset(&r, 0, sizeof(r));
	rc = get_request(root, &r, err, errlen);
	json_object_put(root);
	if (rc == 0)
		*out = r;
	return rc;
}

/* Appending to a caller's buffer; ok turns false, for good, when something did not fit. */
struct out {
	char *buf;
	size_t len, w;
	bool ok;
};

static void
put(struct out *o, const char *s, size_t n)
{
	if (!o->ok || o->len - o->w <= n) {
		o->ok = false;
		return;
	}
	memcpy(o->buf + o->w, s, n);
	o->w += n;
}

/* s as the contents of a JSON string: quote, backslash and control bytes escaped. */
static void
put_string(struct out *o, const char *s, size_t n)
{
	char esc[8];

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(o, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(o, esc, 6);
		} else {
			put(o, s + i, 1);
		}
	}
}

int
control_request_format(const struct control_request *r, char *buf, size_t len)
{
	struct out o = { buf, len, 0, true };
	char num[32];
	int n;

	if ((unsigned)r->command >= NCOMMANDS || len == 0)
		return -1;
	put(&o, "{\"command\":\"", 12);
	put(&o, command_names[r->command], strlen(command_names[r->command]));
	put(&o, "\"", 1);
	if (r->command != CONTROL_STATUS) {
		put(&o, ",\"backend\":\"", 12);
		put_string(&o, r->backend, strnlen(r->backend, sizeof(r->backend)));
		put(&o, "\"", 1);
	}
	if (r->command == CONTROL_WEIGHT) {
		n = snprintf(num, sizeof(num), ",\"weight\":%d", r->weight);
		put(&o, num, (size_t)n);
	}
	put(&o, "}", 1);
	if (!o.ok)
		return -1;
	buf[o.w] = '\0';
	return (int)o.w;
}
