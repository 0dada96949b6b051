/*
 * libFuzzer harness for the state file's parser (admin_parse_state() in
 * src/admin.c), which reads what an earlier run wrote, or what a person
 * edited, at every start.
 *
 * Checked: an accepted document gives entries with a known state, a weight
 * in 0-256 and a URL without NUL; written back as a state file (the way
 * admin_save() writes one) and parsed again, it gives the same entries in
 * the same order; a refusal always says why.
 */
#include <string.h>

#include <json-c/json.h>

#include "roundguard/admin.h"

#include "fuzz.h"

#define MAX_ENTRIES 64

struct entries {
	size_t n;
	size_t total;
	char url[MAX_ENTRIES][128];
	enum admin_state st[MAX_ENTRIES];
	int weight[MAX_ENTRIES];
};

static void
collect(void *arg, const char *url, enum admin_state st, int weight)
{
	struct entries *e = arg;

	FUZZ_CHECK((unsigned)st < ADMIN_STATES, "state %d", (int)st);
	FUZZ_CHECK(weight >= 0 && weight <= 256, "weight %d", weight);
	e->total++;
	if (e->n == MAX_ENTRIES)
		return;
	snprintf(e->url[e->n], sizeof(e->url[0]), "%s", url);
	e->st[e->n] = st;
	e->weight[e->n] = weight;
	e->n++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct entries a = { 0 }, b = { 0 };
	struct json_object *root, *list;
	char err[256] = "";
	const char *text;

	if (admin_parse_state((const char *)data, size, collect, &a, err, sizeof(err)) == -1) {
		FUZZ_CHECK(err[0] != '\0', "refused without a reason");
		return 0;
	}
	/* Written back: long URLs were cut by collect(), so only documents that fit. */
	for (size_t i = 0; i < a.n; i++)
		if (strlen(a.url[i]) >= sizeof(a.url[0]) - 1)
			return 0;
	if (a.total != a.n)
		return 0;
	root = json_object_new_object();
	list = json_object_new_array();
	json_object_object_add(root, "version", json_object_new_int(1));
	json_object_object_add(root, "backends", list);
	for (size_t i = 0; i < a.n; i++) {
		struct json_object *e = json_object_new_object();

		json_object_object_add(e, "url", json_object_new_string(a.url[i]));
		json_object_object_add(e, "admin", json_object_new_string(admin_state_str(a.st[i])));
		json_object_object_add(e, "weight", json_object_new_int(a.weight[i]));
		json_object_array_add(list, e);
	}
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	FUZZ_CHECK(admin_parse_state(text, strlen(text), collect, &b, err, sizeof(err)) == 0,
	    "written back and refused: %s", err);
	FUZZ_CHECK(a.n == b.n, "%zu entries, then %zu", a.n, b.n);
	for (size_t i = 0; i < a.n; i++)
		FUZZ_CHECK(strcmp(a.url[i], b.url[i]) == 0 && a.st[i] == b.st[i] &&
		    a.weight[i] == b.weight[i], "entry %zu differs", i);
	json_object_put(root);
	return 0;
}
