/*
 * libFuzzer harness for roundguard-echo's streaming JSON validation
 * (echo_json_init/feed/finish), which decides between 200 and 400 on
 * POST /reflect.
 *
 * Input: two bytes that choose how the body is cut into pieces (as it would
 * arrive from the network), then the body.
 *
 * Checked:
 * - the verdict does not depend on how the body is cut: piece by piece, in
 *   one piece, and again after echo_json_reset() on the same tokener;
 * - whatever echo accepts, json-c's strict parser accepts too (the brief's
 *   cross-check: echo only ever adds checks on top of json-c);
 * - echo agrees with a small RFC 8259 validator below, both ways (bodies
 *   nested deeper than json-c's limit excepted).
 */
#include <stdbool.h>
#include <string.h>

#include <json-c/json_object.h>
#include <json-c/json_tokener.h>

#include "roundguard/echo.h"

#include "fuzz.h"

/* Set to 0 to only check echo against json-c (the first two points above). */
#ifndef FUZZ_ECHO_RFC8259
#define FUZZ_ECHO_RFC8259 1
#endif

/* echo.c's ECHO_JSON_DEPTH; below it the reference and echo must agree. */
#define DEPTH_LIMIT 512

/* ---- a reference validator: RFC 8259 grammar, bytes >= 0x20 taken as they are in strings ---- */

struct ref {
	const unsigned char *p, *end;
	int depth;
	bool too_deep;
};

static void
ref_ws(struct ref *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static bool
ref_lit(struct ref *r, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
		return false;
	r->p += n;
	return true;
}

static bool
ref_digits(struct ref *r)
{
	const unsigned char *s = r->p;

	while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
		r->p++;
	return r->p > s;
}

static bool
ref_number(struct ref *r)
{
	if (r->p < r->end && *r->p == '-')
		r->p++;
	if (r->p < r->end && *r->p == '0')
		r->p++;
	else if (r->p >= r->end || *r->p < '1' || *r->p > '9' || !ref_digits(r))
		return false;
	if (r->p < r->end && *r->p == '.') {
		r->p++;
		if (!ref_digits(r))
			return false;
	}
	if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
		r->p++;
		if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
			r->p++;
		if (!ref_digits(r))
			return false;
	}
	return true;
}

static bool
ref_string(struct ref *r)
{
	r->p++;		/* the opening quote */
	while (r->p < r->end) {
		unsigned char c = *r->p++;

		if (c == '"')
			return true;
		if (c < 0x20)
			return false;
		if (c != '\\')
			continue;
		if (r->p >= r->end)
			return false;
		c = *r->p++;
		if (c == 'u') {
			for (int i = 0; i < 4; i++, r->p++)
				if (r->p >= r->end || strchr("0123456789abcdefABCDEF", *r->p) == NULL ||
				    *r->p == '\0')
					return false;
		} else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
			return false;
		}
	}
	return false;
}

static bool ref_value(struct ref *r);

static bool
ref_container(struct ref *r, unsigned char close, bool object)
{
	if (++r->depth > DEPTH_LIMIT - 2)
		r->too_deep = true;
	r->p++;
	ref_ws(r);
	if (r->p < r->end && *r->p == close) {
		r->p++;
		r->depth--;
		return true;
	}
	for (;;) {
		if (object) {
			if (r->p >= r->end || *r->p != '"' || !ref_string(r))
				return false;
			ref_ws(r);
			if (r->p >= r->end || *r->p++ != ':')
				return false;
			ref_ws(r);
		}
		if (!ref_value(r))
			return false;
		ref_ws(r);
		if (r->p >= r->end)
			return false;
		if (*r->p == ',') {
			r->p++;
			ref_ws(r);
			continue;
		}
		if (*r->p++ != close)
			return false;
		r->depth--;
		return true;
	}
}

static bool
ref_value(struct ref *r)
{
	if (r->p >= r->end)
		return false;
	switch (*r->p) {
	case '{': return ref_container(r, '}', true);
	case '[': return ref_container(r, ']', false);
	case '"': return ref_string(r);
	case 't': return ref_lit(r, "true");
	case 'f': return ref_lit(r, "false");
	case 'n': return ref_lit(r, "null");
	default: return ref_number(r);
	}
}

/* 1 valid, 0 invalid, -1 nested too deep to compare. */
static int
ref_validate(const uint8_t *data, size_t size)
{
	struct ref r = { data, data + size, 0, false };
	bool ok;

	ref_ws(&r);
	ok = ref_value(&r);
	ref_ws(&r);
	ok = ok && r.p == r.end;
	if (r.too_deep)
		return -1;
	return ok;
}

/* ---- what json-c alone says, strict mode, whole body at once ---- */

static bool
jsonc_strict_ok(const uint8_t *data, size_t size)
{
	struct json_tokener *tok = json_tokener_new_ex(DEPTH_LIMIT);
	struct json_object *obj;
	enum json_tokener_error e;
	size_t end;
	bool ok;

	if (tok == NULL)
		abort();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	e = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_object_put(obj);
	if (e == json_tokener_continue) {
		json_object_put(json_tokener_parse_ex(tok, "", 1));
		e = json_tokener_get_error(tok);
		end = size;
	}
	ok = e == json_tokener_success;
	/* Trailing whitespace only (what echo allows after the value). */
	for (size_t i = end; ok && i < size; i++)
		ok = data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r';
	json_tokener_free(tok);
	return ok;
}

/* Feed body in pieces of 1..max bytes from a small PRNG; 0 for one piece. */
static bool
echo_verdict(struct echo_json *ej, const uint8_t *body, size_t size, uint8_t seed, uint8_t max)
{
	uint32_t x = 0x9e3779b9u ^ seed;
	size_t off = 0;

	while (off < size) {
		size_t n = size - off;

		if (max > 0) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			if (n > (size_t)(x % max) + 1)
				n = (size_t)(x % max) + 1;
			if ((x & 0x700) == 0)
				echo_json_feed(ej, (const char *)body + off, 0);
		}
		echo_json_feed(ej, (const char *)body + off, n);
		off += n;
	}
	return echo_json_finish(ej);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct echo_json ej;
	const uint8_t *body;
	bool pieces, whole, again, jsonc;
	int ref;

	if (size < 2 || size > (1 << 20))
		return 0;
	body = data + 2;
	size -= 2;
	/* libFuzzer's buffer ends exactly at size: ASan catches any read past the body. */
	FUZZ_CHECK(echo_json_init(&ej) == 0, "echo_json_init failed");
	pieces = echo_verdict(&ej, body, size, data[0], (uint8_t)(data[1] % 64));
	echo_json_reset(&ej);
	whole = echo_verdict(&ej, body, size, 0, 0);
	echo_json_free(&ej);
	FUZZ_CHECK(echo_json_init(&ej) == 0, "echo_json_init failed");
	again = echo_verdict(&ej, body, size, 0, 0);
	echo_json_free(&ej);

	FUZZ_CHECK(whole == again, "echo_json_reset changed the verdict: %d after reset, %d fresh",
	    whole, again);
	FUZZ_CHECK(pieces == whole, "the verdict depends on the pieces: %d in pieces (seed %u, "
	    "max %u), %d in one", pieces, data[0], data[1] % 64, whole);

	jsonc = jsonc_strict_ok(body, size);
	FUZZ_CHECK(!whole || jsonc, "echo accepts a body json-c's strict parser rejects");
#if FUZZ_ECHO_RFC8259
	ref = ref_validate(body, size);
	if (ref >= 0)
		FUZZ_CHECK(whole == (ref == 1), "echo says %s, RFC 8259 says %s",
		    whole ? "valid" : "invalid", ref ? "valid" : "invalid");
#else
	(void)ref;
#endif
	return 0;
}
