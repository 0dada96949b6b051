/*
 * libFuzzer harness for the control protocol's requests (src/control_proto.c),
 * the JSON that roundguardctl sends and the master reads from anyone who may
 * open its socket.
 *
 * Each input is used twice. As request text, control_request_parse() on the
 * bytes: a refusal has a reason of printable ASCII on one line, shorter
 * than CONTROL_REASON_MAX; an accepted request came from at most CONTROL_REQUEST_MAX bytes,
 * has a command of the enum, a NUL-terminated backend within its array ("" for
 * status, else 1 to CONTROL_BACKEND_MAX bytes of printable ASCII without
 * spaces), a weight of 0-256 for CONTROL_WEIGHT and -1 otherwise, and
 * formatting it gives text of at most CONTROL_REQUEST_MAX bytes that parses
 * back to the same request.
 *
 * As a request built by hand (command from byte 0, 5 being no command; a
 * weight of -100 to 499 from bytes 1-2; the backend from the rest, up to its
 * first NUL), control_request_format() then control_request_parse(): the
 * text is refused exactly when the request breaks one of the rules above,
 * and otherwise reads back as the same request.
 */
#include <stdbool.h>
#include <string.h>

#include "roundguard/control.h"

#include "fuzz.h"

/* Room for any request format() writes: every backend byte escaped as \u00XX. */
#define FORMAT_MAX (6 * CONTROL_BACKEND_MAX + 64)

static bool
backend_ok(const char *b)
{
	size_t n = strlen(b);

	if (n == 0 || n > CONTROL_BACKEND_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)b[i] <= 0x20 || (unsigned char)b[i] >= 0x7f)
			return false;
	}
	return true;
}

static void
check_request(const struct control_request *r)
{
	FUZZ_CHECK((unsigned)r->command <= CONTROL_WEIGHT, "command %d", (int)r->command);
	FUZZ_CHECK(memchr(r->backend, '\0', sizeof(r->backend)) != NULL, "backend not terminated");
	if (r->command == CONTROL_STATUS)
		FUZZ_CHECK(r->backend[0] == '\0', "status with backend \"%s\"", r->backend);
	else
		FUZZ_CHECK(backend_ok(r->backend), "%s with backend \"%s\"",
		    control_command_name(r->command), r->backend);
	if (r->command == CONTROL_WEIGHT)
		FUZZ_CHECK(r->weight >= 0 && r->weight <= CONTROL_WEIGHT_MAX, "weight %d", r->weight);
	else
		FUZZ_CHECK(r->weight == -1, "%s with weight %d", control_command_name(r->command),
		    r->weight);
}

static void
check_reason(const char *err, size_t errlen)
{
	const char *end = memchr(err, '\0', errlen);

	FUZZ_CHECK(end != NULL, "reason not terminated");
	FUZZ_CHECK(end > err, "empty reason");
	FUZZ_CHECK((size_t)(end - err) < CONTROL_REASON_MAX, "reason of %zu bytes: %s",
	    (size_t)(end - err), err);
	for (const char *p = err; p < end; p++)
		FUZZ_CHECK(*p >= 0x20 && *p < 0x7f, "reason \"%s\" has byte 0x%02x", err,
		    (unsigned char)*p);
}

static bool
same(const struct control_request *a, const struct control_request *b)
{
	return a->command == b->command && strcmp(a->backend, b->backend) == 0 &&
	    a->weight == b->weight;
}

/* Formatted and parsed back: the same request. */
static void
round_trip(const struct control_request *r)
{
	static char buf[CONTROL_REQUEST_MAX + 1];
	struct control_request back;
	char err[512];
	int n = control_request_format(r, buf, sizeof(buf));

	FUZZ_CHECK(n > 0 && (size_t)n == strlen(buf), "format gave %d", n);
	FUZZ_CHECK(control_request_parse(buf, (size_t)n, &back, err, sizeof(err)) == 0,
	    "formatted %s refused: %s", buf, err);
	FUZZ_CHECK(same(r, &back), "%s read back as %s \"%s\" %d", buf,
	    control_command_name(back.command), back.backend, back.weight);
}

static void
as_text(const uint8_t *data, size_t size)
{
	struct control_request r;
	char err[1024];
	/* An exact-size heap copy: ASan sees any read past the end. */
	char *copy = malloc(size ? size : 1);

	if (copy == NULL)
		abort();
	memcpy(copy, data, size);
	memset(err, 'x', sizeof(err));
	if (control_request_parse(copy, size, &r, err, sizeof(err)) == 0) {
		FUZZ_CHECK(size <= CONTROL_REQUEST_MAX, "accepted %zu bytes", size);
		check_request(&r);
		round_trip(&r);
	} else {
		check_reason(err, sizeof(err));
	}
	free(copy);
}

static void
as_struct(const uint8_t *data, size_t size)
{
	static char buf[FORMAT_MAX];
	struct control_request r, back;
	char err[1024];
	size_t n;
	int len;
	bool valid;

	if (size < 3)
		return;
	memset(&r, 0, sizeof(r));
	r.command = (enum control_command)(data[0] % 6);
	r.weight = (int)(((unsigned)data[1] << 8 | data[2]) % 600) - 100;
	n = size - 3 < CONTROL_BACKEND_MAX ? size - 3 : CONTROL_BACKEND_MAX;
	memcpy(r.backend, data + 3, n);
	r.backend[n] = '\0';

	len = control_request_format(&r, buf, sizeof(buf));
	if ((unsigned)r.command > CONTROL_WEIGHT) {
		FUZZ_CHECK(len == -1, "command %d formatted", (int)r.command);
		return;
	}
	FUZZ_CHECK(len > 0 && (size_t)len < sizeof(buf), "format gave %d", len);
	/* What format leaves out, parse gives as "" and -1. */
	if (r.command == CONTROL_STATUS)
		r.backend[0] = '\0';
	if (r.command != CONTROL_WEIGHT)
		r.weight = -1;
	valid = (r.command == CONTROL_STATUS || backend_ok(r.backend)) &&
	    (r.command != CONTROL_WEIGHT || (r.weight >= 0 && r.weight <= CONTROL_WEIGHT_MAX));
	if (control_request_parse(buf, (size_t)len, &back, err, sizeof(err)) == 0) {
		FUZZ_CHECK(valid, "invalid request accepted: %s", buf);
		FUZZ_CHECK(same(&r, &back), "%s read back as %s \"%s\" %d", buf,
		    control_command_name(back.command), back.backend, back.weight);
	} else {
		FUZZ_CHECK(!valid, "valid request %s refused: %s", buf, err);
		check_reason(err, sizeof(err));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	as_text(data, size);
	as_struct(data, size);
	return 0;
}
