/* The administrative state of backends (see include/roundguard/admin.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "roundguard/admin.h"
#include "roundguard/discover.h"
#include "roundguard/schedule.h"

#define STATE_FILE_MAX	(4 * 1024 * 1024)	/* 4096 backends of a few hundred bytes */

static const char *const state_names[ADMIN_STATES] = { "ready", "drain", "maint" };

const char *
admin_state_str(enum admin_state s)
{
	return (unsigned)s < ADMIN_STATES ? state_names[s] : "unknown";
}

int
admin_state_parse(const char *s, enum admin_state *out)
{
	for (unsigned i = 0; i < ADMIN_STATES; i++) {
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum admin_state)i;
			return 0;
		}
	}
	return -1;
}

int
admin_find(const struct config *cfg, const char *name)
{
	int found = -1;

	/* Discovered backends follow their DNS records, not roundguardctl: not found here. */
	for (size_t i = 0; i < cfg->nbackends; i++) {
		if (cfg->backends[i].discover == CONFIG_DISCOVER_NONE &&
		    strcmp(cfg->backends[i].url, name) == 0)
			return (int)i;
	}
	for (size_t i = 0; i < cfg->nbackends; i++) {
		if (cfg->backends[i].discover != CONFIG_DISCOVER_NONE ||
		    strcasecmp(cfg->backends[i].addr.hostport, name) != 0)
			continue;
		if (found != -1)
			return -2;
		found = (int)i;
	}
	return found;
}

/* See admin.h. */
int
admin_find_discovered(const struct shm *s, const struct config *cfg, const char *name,
    uint32_t *seq)
{
	char shown[sizeof(cfg->backends[0].addr.hostport)];
	struct net_addr a;

	for (size_t i = 0; i < cfg->nbackends && i < s->hdr->nbackends; i++) {
		if (cfg->backends[i].discover == CONFIG_DISCOVER_NONE ||
		    shm_slot_state(s, (uint32_t)i) != SHM_SLOT_ACTIVE ||
		    !shm_slot_read(s, (uint32_t)i, &a, seq))
			continue;
		discover_format(&a, shown, sizeof(shown));
		if (strcasecmp(shown, name) == 0)
			return (int)i;
	}
	return -1;
}

/* The bit a pick needs besides live: ready and a weight above 0. */
static void
update_enabled(struct shm *s, uint32_t b)
{
	struct shm_backend *sb = &s->backends[b];

	shm_set_enabled(s, b, atomic_load(&sb->admin) == ADMIN_READY &&
	    atomic_load(&sb->weight) > 0);
}

enum admin_state
admin_set_state(struct shm *s, uint32_t b, enum admin_state st, int64_t now)
{
	struct shm_backend *sb = &s->backends[b];
	enum admin_state old = (enum admin_state)atomic_exchange(&sb->admin, (uint32_t)st);

	if (old != st)
		atomic_store(&sb->admin_changed_ns, now);
	update_enabled(s, b);
	return old;
}

enum admin_state
admin_set_slot_state(struct shm *s, uint32_t b, uint32_t seq, enum admin_state st, int64_t now)
{
	struct shm_backend *sb = &s->backends[b];
	/* A drain or maint the sweep has not cleared yet was the slot's last address's. */
	bool stale = atomic_load(&sb->admin_slot_seq) != seq;
	enum admin_state old;

	atomic_store(&sb->admin_slot_seq, seq);
	old = admin_set_state(s, b, st, now);
	if (!stale || old == ADMIN_READY)
		return old;
	if (old == st)
		atomic_store(&sb->admin_changed_ns, now);
	return ADMIN_READY;
}

bool
admin_slot_stale(const struct shm *s, const struct config *cfg, uint32_t b)
{
	const struct shm_backend *sb = &s->backends[b];

	/* An odd sequence is an address being written: another one, so stale too. */
	return cfg->backends[b].discover != CONFIG_DISCOVER_NONE &&
	    atomic_load(&sb->admin) != ADMIN_READY &&
	    (shm_slot_state(s, b) != SHM_SLOT_ACTIVE ||
	    atomic_load(&sb->slot_seq) != atomic_load(&sb->admin_slot_seq));
}

uint32_t
admin_set_weight(struct shm *s, uint32_t b, uint32_t weight, int64_t now)
{
	struct shm_backend *sb = &s->backends[b];
	uint32_t old = atomic_exchange(&sb->weight, weight);

	if ((old == 0) != (weight == 0))
		atomic_store(&sb->admin_changed_ns, now);
	update_enabled(s, b);
	return old;
}

uint64_t
admin_changed(struct shm *s)
{
	return atomic_fetch_add(&s->hdr->admin_seq, 1) + 1;
}

void
admin_init(struct shm *s, const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nbackends && i < s->hdr->nbackends; i++) {
		atomic_store(&s->backends[i].weight, cfg->backends[i].weight);
		update_enabled(s, (uint32_t)i);
		/* Before any child exists; from then on the checker alone writes the slots. */
		if (cfg->backends[i].discover != CONFIG_DISCOVER_NONE)
			shm_slot_set_state(s, (uint32_t)i, SHM_SLOT_FREE);
	}
}

/* Health state of one backend, from one segment into another. */
static void
carry_health(struct shm_backend *d, const struct shm_backend *o)
{
	atomic_store(&d->effective, atomic_load(&o->effective));
	atomic_store(&d->ramp_since_ns, atomic_load(&o->ramp_since_ns));
	atomic_store(&d->up, atomic_load(&o->up));
	atomic_store(&d->last_result, atomic_load(&o->last_result));
	atomic_store(&d->last_status, atomic_load(&o->last_status));
	atomic_store(&d->successes, atomic_load(&o->successes));
	atomic_store(&d->failures, atomic_load(&o->failures));
	atomic_store(&d->changed_ns, atomic_load(&o->changed_ns));
}

/*
 * Slot t of a discovered name: the backend the same slot of the same name
 * (same URL or SRV name) held in the last generation, with its health. The
 * new checker takes those as the name's answer until its first lookup, so a
 * reload during a DNS outage keeps serving. Before any child of the new
 * generation exists, so the master may write the slot. Returns 1 if carried.
 */
static size_t
carry_slot(const struct config *fcfg, const struct shm *from, const struct config *tcfg,
    struct shm *to, size_t t)
{
	const struct config_backend *tb = &tcfg->backends[t];
	size_t j = t - tb->discover_first;
	struct net_addr a;
	uint32_t seq;

	for (size_t f = 0; f < fcfg->nbackends; f++) {
		const struct config_backend *fb = &fcfg->backends[f];
		size_t o;

		if (fb->discover != tb->discover || fb->discover_first != f ||
		    strcmp(fb->url, tb->url) != 0)
			continue;
		o = f + j;
		if (j >= fb->discover_max || shm_slot_state(from, (uint32_t)o) != SHM_SLOT_ACTIVE ||
		    !shm_slot_read(from, (uint32_t)o, &a, &seq))
			return 0;
		shm_slot_write(to, (uint32_t)t, &a);
		atomic_store(&to->backends[t].slot_weight, atomic_load(&from->backends[o].slot_weight));
		carry_health(&to->backends[t], &from->backends[o]);
		shm_slot_set_state(to, (uint32_t)t, SHM_SLOT_ACTIVE);
		shm_set_live(to, (uint32_t)t, shm_is_live(from, (uint32_t)o));
		/* A drain or maint set for this address goes with it (for the new slot's sequence). */
		if (atomic_load(&from->backends[o].admin_slot_seq) == seq &&
		    shm_slot_read(to, (uint32_t)t, &a, &seq)) {
			atomic_store(&to->backends[t].admin_changed_ns,
			    atomic_load(&from->backends[o].admin_changed_ns));
			atomic_store(&to->backends[t].admin_slot_seq, seq);
			atomic_store(&to->backends[t].admin, atomic_load(&from->backends[o].admin));
			update_enabled(to, (uint32_t)t);
		}
		return 1;
	}
	return 0;
}

size_t
admin_carry(const struct config *fcfg, const struct shm *from,
    const struct config *tcfg, struct shm *to, int64_t now)
{
	size_t carried = 0;

	for (size_t t = 0; t < tcfg->nbackends; t++) {
		struct shm_backend *d = &to->backends[t];
		const struct shm_backend *o;
		int f = -1;

		/* A discovered name's slots start from the last generation's answer. */
		if (tcfg->backends[t].discover != CONFIG_DISCOVER_NONE) {
			carried += carry_slot(fcfg, from, tcfg, to, t);
			continue;
		}
		for (size_t i = 0; i < fcfg->nbackends; i++) {
			if (fcfg->backends[i].discover == CONFIG_DISCOVER_NONE &&
			    strcmp(fcfg->backends[i].url, tcfg->backends[t].url) == 0) {
				f = (int)i;
				break;
			}
		}
		if (f == -1) {
			/* New: ramps once it is up (slow_start), from its first passing check. */
			atomic_store(&d->ramp_since_ns, -1);
			(void)now;
			continue;
		}
		o = &from->backends[f];
		atomic_store(&d->admin, atomic_load(&o->admin));
		atomic_store(&d->admin_changed_ns, atomic_load(&o->admin_changed_ns));
		/*
		 * The runtime weight stays what roundguardctl made it, unless the
		 * file's weight changed: then the file is the newer word.
		 */
		if (fcfg->backends[f].weight == tcfg->backends[t].weight)
			atomic_store(&d->weight, atomic_load(&o->weight));
		carry_health(d, o);
		shm_set_live(to, (uint32_t)t, shm_is_live(from, (uint32_t)f));
		update_enabled(to, (uint32_t)t);
		carried++;
	}
	return carried;
}

/* ---- the state file ---- */

int
admin_save(const char *path, const struct config *cfg, const struct shm *s, char *err,
    size_t errlen)
{
	struct json_object *root = json_object_new_object(), *list = json_object_new_array();
	char tmp[CONFIG_PATH_MAX + 16];
	const char *text;
	size_t len;
	int fd = -1, rc = -1;

	if (root == NULL || list == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	json_object_object_add(root, "version", json_object_new_int(1));
	json_object_object_add(root, "backends", list);
	for (size_t i = 0; i < cfg->nbackends; i++) {
		const struct shm_backend *sb = &s->backends[i];
		uint32_t st = atomic_load(&sb->admin), w = atomic_load(&sb->weight);
		struct json_object *e;

		/*
		 * Only what differs from the configuration: the file then says what was
		 * done. Not a discovered backend's state: it lasts while its address does.
		 */
		if ((st == ADMIN_READY && w == cfg->backends[i].weight) ||
		    cfg->backends[i].discover != CONFIG_DISCOVER_NONE)
			continue;
		e = json_object_new_object();
		json_object_object_add(e, "url", json_object_new_string(cfg->backends[i].url));
		json_object_object_add(e, "admin", json_object_new_string(admin_state_str(st)));
		json_object_object_add(e, "weight", json_object_new_int((int)w));
		json_object_array_add(list, e);
	}
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(text);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	/* Written whole and synced before the rename: a crash leaves the old file or the new. */
	if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) == -1) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno != 0 ? errno : EIO));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) == -1) {
		snprintf(err, errlen, "rename to %s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	if (fd != -1)
		close(fd);
	json_object_put(root);
	return rc;
}

int
admin_parse_state(const char *text, size_t len, admin_entry_fn *cb, void *arg, char *err,
    size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *root, *v, *list;
	int rc = -1;

	if (len > STATE_FILE_MAX) {
		snprintf(err, errlen, "larger than %d bytes", STATE_FILE_MAX);
		return -1;
	}
	if ((tok = json_tokener_new_ex(16)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, text, (int)len);
	if (root == NULL || json_tokener_get_parse_end(tok) < len) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		snprintf(err, errlen, "not a JSON document: %s", root == NULL ?
		    json_tokener_error_desc(e) : "data after its end");
		goto out;
	}
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "version", &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 1) {
		snprintf(err, errlen, "version: expected 1");
		goto out;
	}
	if (!json_object_object_get_ex(root, "backends", &list) ||
	    !json_object_is_type(list, json_type_array)) {
		snprintf(err, errlen, "backends: expected an array");
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *e = json_object_array_get_idx(list, i), *u, *a, *w;
		enum admin_state st;
		int64_t weight;

		if (!json_object_is_type(e, json_type_object) ||
		    !json_object_object_get_ex(e, "url", &u) || !json_object_is_type(u, json_type_string) ||
		    !json_object_object_get_ex(e, "admin", &a) || !json_object_is_type(a, json_type_string) ||
		    admin_state_parse(json_object_get_string(a), &st) == -1 ||
		    !json_object_object_get_ex(e, "weight", &w) || !json_object_is_type(w, json_type_int) ||
		    (weight = json_object_get_int64(w)) < 0 || weight > (int64_t)SCHEDULE_WEIGHT_MAX ||
		    strlen(json_object_get_string(u)) != (size_t)json_object_get_string_len(u)) {
			snprintf(err, errlen, "backends[%zu]: expected {\"url\": string, \"admin\": "
			    "\"ready\"|\"drain\"|\"maint\", \"weight\": 0-256}", i);
			goto out;
		}
		cb(arg, json_object_get_string(u), st, (int)weight);
	}
	rc = 0;
out:
	json_object_put(root);
	json_tokener_free(tok);
	return rc;
}

struct load_ctx {
	const struct config *cfg;
	struct shm *s;
	int64_t now;
	size_t applied;
};

static void
load_entry(void *arg, const char *url, enum admin_state st, int weight)
{
	struct load_ctx *l = arg;

	for (size_t i = 0; i < l->cfg->nbackends; i++) {
		if (l->cfg->backends[i].discover != CONFIG_DISCOVER_NONE ||
		    strcmp(l->cfg->backends[i].url, url) != 0)
			continue;
		admin_set_weight(l->s, (uint32_t)i, (uint32_t)weight, l->now);
		admin_set_state(l->s, (uint32_t)i, st, l->now);
		l->applied++;
		return;
	}
}

static void
check_entry(void *arg, const char *url, enum admin_state st, int weight)
{
	(void)arg, (void)url, (void)st, (void)weight;
}

int
admin_load(const char *path, const struct config *cfg, struct shm *s, int64_t now,
    size_t *applied, char *err, size_t errlen)
{
	struct load_ctx l = { cfg, s, now, 0 };
	char why[256], *text = NULL;
	size_t len = 0;
	ssize_t n;
	int fd, rc = -1;

	*applied = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((text = malloc(STATE_FILE_MAX + 1)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	while (len <= STATE_FILE_MAX && (n = read(fd, text + len, STATE_FILE_MAX + 1 - len)) > 0)
		len += (size_t)n;
	/* All or nothing: checked whole before anything is applied. */
	if (admin_parse_state(text, len, check_entry, NULL, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "%s: %s", path, why);
		goto out;
	}
	admin_parse_state(text, len, load_entry, &l, why, sizeof(why));
	*applied = l.applied;
	rc = 0;
out:
	free(text);
	close(fd);
	return rc;
}
