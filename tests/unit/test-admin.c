/*
 * Unit tests for the administrative state (src/admin.c) on a segment laid out
 * in memory: finding backends by URL or host:port, what a change does to the
 * bit every pick tests, carrying the state into a new generation, and the
 * state file written and read back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "roundguard/admin.h"
#include "roundguard/balance.h"
#include "roundguard/config.h"
#include "unit.h"

struct gen {
	struct config cfg;
	struct shm shm;
	void *base;
};

static char err[1024];

static void
gen_init(struct gen *g, const char *const *urls, size_t n)
{
	size_t size = shm_layout_size((uint32_t)n, 2);

	g->base = aligned_alloc(64, size);
	ck_assert_ptr_nonnull(g->base);
	memset(g->base, 0, size);
	shm_layout_init(g->base, size, (uint32_t)n, 2);
	ck_assert_int_eq(shm_attach(&g->shm, g->base, size), 0);
	config_defaults(&g->cfg);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(config_add_backend(&g->cfg, urls[i], "test", err, sizeof(err)) == 0,
		    "%s", err);
	admin_init(&g->shm, &g->cfg);
}

static void
gen_free(struct gen *g)
{
	config_free(&g->cfg);
	free(g->base);
}

static bool
usable(const struct shm *s, uint32_t b)
{
	uint64_t snap[BALANCE_WORDS(64)];

	shm_usable(s, snap);
	return snap[b / 64] >> (b % 64) & 1;
}

static const char *const three[] = {
	"http://127.0.0.1:8001", "http://127.0.0.1:8002/api", "http://127.0.0.1:8002/v2",
};

START_TEST(find_by_url_or_hostport)
{
	struct gen g;

	gen_init(&g, three, 3);
	ck_assert_int_eq(admin_find(&g.cfg, "http://127.0.0.1:8001"), 0);
	ck_assert_int_eq(admin_find(&g.cfg, "127.0.0.1:8001"), 0);
	ck_assert_int_eq(admin_find(&g.cfg, "http://127.0.0.1:8002/v2"), 2);
	ck_assert_int_eq(admin_find(&g.cfg, "127.0.0.1:8002"), -2);	/* two prefixes */
	ck_assert_int_eq(admin_find(&g.cfg, "127.0.0.1:8003"), -1);
	ck_assert_int_eq(admin_find(&g.cfg, ""), -1);
	gen_free(&g);
}
END_TEST

START_TEST(changes_move_the_enabled_bit)
{
	struct gen g;

	gen_init(&g, three, 3);
	for (uint32_t b = 0; b < 3; b++)
		shm_set_live(&g.shm, b, true);
	ck_assert(usable(&g.shm, 1));
	ck_assert_int_eq(admin_set_state(&g.shm, 1, ADMIN_DRAIN, 5), ADMIN_READY);
	ck_assert(!usable(&g.shm, 1));
	ck_assert(!admin_slot_stale(&g.shm, &g.cfg, 1));	/* a configured backend's stays */
	ck_assert_int_eq(atomic_load(&g.shm.backends[1].admin_changed_ns), 5);
	ck_assert_int_eq(admin_set_state(&g.shm, 1, ADMIN_MAINT, 6), ADMIN_DRAIN);
	ck_assert(!usable(&g.shm, 1));
	ck_assert_int_eq(admin_set_state(&g.shm, 1, ADMIN_READY, 7), ADMIN_MAINT);
	ck_assert(usable(&g.shm, 1));
	/* Weight 0 drains as well; back above 0 it takes traffic again. */
	ck_assert_uint_eq(admin_set_weight(&g.shm, 2, 0, 8), 1);
	ck_assert(!usable(&g.shm, 2));
	ck_assert_uint_eq(admin_set_weight(&g.shm, 2, 4, 9), 0);
	ck_assert(usable(&g.shm, 2));
	/* Not live: never usable, whatever the administrative state. */
	shm_set_live(&g.shm, 0, false);
	ck_assert(!usable(&g.shm, 0));
	ck_assert_uint_eq(admin_changed(&g.shm), 1);
	ck_assert_uint_eq(admin_changed(&g.shm), 2);
	gen_free(&g);
}
END_TEST

START_TEST(carry_into_a_new_generation)
{
	static const char *const next[] = {
		"http://127.0.0.1:8009", "http://127.0.0.1:8002/v2", "http://127.0.0.1:8001",
	};
	struct gen a, b;

	gen_init(&a, three, 3);
	shm_set_live(&a.shm, 0, true);
	shm_set_live(&a.shm, 2, false);
	atomic_store(&a.shm.backends[2].last_result, CHECK_STATUS);
	atomic_store(&a.shm.backends[2].failures, 3);
	admin_set_state(&a.shm, 0, ADMIN_DRAIN, 11);
	admin_set_weight(&a.shm, 2, 7, 12);
	gen_init(&b, next, 3);
	b.cfg.backends[1].weight = 1;		/* as in the old file: the runtime 7 stays */
	ck_assert_uint_eq(admin_carry(&a.cfg, &a.shm, &b.cfg, &b.shm, 20), 2);
	/* 8001 moved from index 0 to 2, drained and live. */
	ck_assert_uint_eq(atomic_load(&b.shm.backends[2].admin), ADMIN_DRAIN);
	ck_assert_int_eq(atomic_load(&b.shm.backends[2].admin_changed_ns), 11);
	ck_assert(shm_is_live(&b.shm, 2));
	ck_assert(!usable(&b.shm, 2));
	/* /v2 moved from 2 to 1: down, its weight, its check state. */
	ck_assert(!shm_is_live(&b.shm, 1));
	ck_assert_uint_eq(atomic_load(&b.shm.backends[1].weight), 7);
	ck_assert_uint_eq(atomic_load(&b.shm.backends[1].last_result), CHECK_STATUS);
	ck_assert_uint_eq(atomic_load(&b.shm.backends[1].failures), 3);
	/* 8009 is new: it ramps once up. */
	ck_assert_int_eq(atomic_load(&b.shm.backends[0].ramp_since_ns), -1);
	ck_assert_uint_eq(atomic_load(&b.shm.backends[0].admin), ADMIN_READY);
	gen_free(&b);
	/* A weight changed in the file wins over the runtime one. */
	gen_init(&b, next, 3);
	b.cfg.backends[1].weight = 2;
	admin_init(&b.shm, &b.cfg);
	admin_carry(&a.cfg, &a.shm, &b.cfg, &b.shm, 20);
	ck_assert_uint_eq(atomic_load(&b.shm.backends[1].weight), 2);
	gen_free(&b);
	gen_free(&a);
}
END_TEST

START_TEST(state_file_round_trip)
{
	char path[] = "/tmp/rg-admin-test-XXXXXX";
	char file[64];
	struct gen a, b;
	size_t applied;
	int fd = mkstemp(path);

	ck_assert_int_ne(fd, -1);
	close(fd);
	unlink(path);
	snprintf(file, sizeof(file), "%s", path);
	gen_init(&a, three, 3);
	gen_init(&b, three, 3);
	/* No file yet: nothing applied, no error. */
	ck_assert_int_eq(admin_load(file, &b.cfg, &b.shm, 1, &applied, err, sizeof(err)), 0);
	ck_assert_uint_eq(applied, 0);
	admin_set_state(&a.shm, 1, ADMIN_MAINT, 3);
	admin_set_weight(&a.shm, 2, 9, 3);
	ck_assert_msg(admin_save(file, &a.cfg, &a.shm, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(admin_load(file, &b.cfg, &b.shm, 4, &applied, err, sizeof(err)), 0);
	ck_assert_uint_eq(applied, 2);
	ck_assert_uint_eq(atomic_load(&b.shm.backends[1].admin), ADMIN_MAINT);
	ck_assert_uint_eq(atomic_load(&b.shm.backends[2].weight), 9);
	ck_assert_uint_eq(atomic_load(&b.shm.backends[0].admin), ADMIN_READY);
	/* A broken file is named and applies nothing, not even its good entries. */
	{
		FILE *f = fopen(file, "w");

		fputs("{\"version\":1,\"backends\":[{\"url\":\"http://127.0.0.1:8001\",\"admin\":"
		    "\"drain\",\"weight\":1},{\"url\":\"x\",\"admin\":\"gone\",\"weight\":1}]}", f);
		fclose(f);
	}
	ck_assert_int_eq(admin_load(file, &a.cfg, &a.shm, 5, &applied, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, file));
	ck_assert_ptr_nonnull(strstr(err, "backends[1]"));
	ck_assert_uint_eq(atomic_load(&a.shm.backends[0].admin), ADMIN_READY);
	unlink(file);
	gen_free(&a);
	gen_free(&b);
}
END_TEST

/* Two slots of one name, the second holding 10.0.0.5:8080 (as the checker would write it). */
static void
gen_discovered(struct gen *g)
{
	static const char *const urls[] = { "http://api.test:8080", "http://api.test:8080" };
	struct net_addr a = { .family = AF_INET, .bytes = { 10, 0, 0, 5 }, .port = 8080 };

	gen_init(g, urls, 2);
	for (uint32_t i = 0; i < 2; i++) {
		g->cfg.backends[i].discover = CONFIG_DISCOVER_DNS;
		g->cfg.backends[i].discover_first = 0;
		g->cfg.backends[i].discover_max = 2;
	}
	admin_init(&g->shm, &g->cfg);
	shm_slot_write(&g->shm, 1, &a);
	shm_slot_set_state(&g->shm, 1, SHM_SLOT_ACTIVE);
	shm_set_live(&g->shm, 1, true);
}

START_TEST(discovered_state_follows_the_address)
{
	struct net_addr other = { .family = AF_INET, .bytes = { 10, 0, 0, 6 }, .port = 8080 };
	char path[] = "/tmp/rg-admin-test-XXXXXX", text[512] = "";
	struct gen g, n;
	uint32_t seq;
	FILE *f;
	int fd;

	gen_discovered(&g);
	/* Only by the address a slot holds now; not by the entry's URL, nor a free slot. */
	ck_assert_int_eq(admin_find(&g.cfg, "10.0.0.5:8080"), -1);
	ck_assert_int_eq(admin_find_discovered(&g.shm, &g.cfg, "http://api.test:8080", &seq), -1);
	ck_assert_int_eq(admin_find_discovered(&g.shm, &g.cfg, "10.0.0.6:8080", &seq), -1);
	ck_assert_int_eq(admin_find_discovered(&g.shm, &g.cfg, "10.0.0.5:8080", &seq), 1);
	ck_assert_int_eq(admin_set_slot_state(&g.shm, 1, seq, ADMIN_MAINT, 3), ADMIN_READY);
	ck_assert(!usable(&g.shm, 1));
	ck_assert(!admin_slot_stale(&g.shm, &g.cfg, 1));
	/* A reload carries it with the slot (a new segment: a new sequence). */
	gen_discovered(&n);
	shm_slot_set_state(&n.shm, 1, SHM_SLOT_FREE);
	ck_assert_uint_eq(admin_carry(&g.cfg, &g.shm, &n.cfg, &n.shm, 4), 1);
	ck_assert_uint_eq(atomic_load(&n.shm.backends[1].admin), ADMIN_MAINT);
	ck_assert(!admin_slot_stale(&n.shm, &n.cfg, 1));
	ck_assert(!usable(&n.shm, 1));
	gen_free(&n);
	/* Not in the state file: it lasts while the address does. */
	fd = mkstemp(path);
	ck_assert_int_ne(fd, -1);
	close(fd);
	ck_assert_msg(admin_save(path, &g.cfg, &g.shm, err, sizeof(err)) == 0, "%s", err);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_gt(fread(text, 1, sizeof(text) - 1, f), 0);
	fclose(f);
	unlink(path);
	ck_assert_ptr_null(strstr(text, "api.test"));
	/* The slot gets another address: the maint was for the old one. */
	shm_slot_write(&g.shm, 1, &other);
	ck_assert(admin_slot_stale(&g.shm, &g.cfg, 1));
	/* Set for the new address before the sweep: it was ready, not the old one's maint. */
	ck_assert_int_eq(admin_find_discovered(&g.shm, &g.cfg, "10.0.0.6:8080", &seq), 1);
	ck_assert_int_eq(admin_set_slot_state(&g.shm, 1, seq, ADMIN_MAINT, 5), ADMIN_READY);
	ck_assert(!admin_slot_stale(&g.shm, &g.cfg, 1));
	ck_assert_int_eq(atomic_load(&g.shm.backends[1].admin_changed_ns), 5);
	ck_assert_int_eq(admin_set_slot_state(&g.shm, 1, seq, ADMIN_READY, 6), ADMIN_MAINT);
	ck_assert(usable(&g.shm, 1));
	/* Drained, then the name drops the address (the slot drains, then is free). */
	ck_assert_int_eq(admin_find_discovered(&g.shm, &g.cfg, "10.0.0.6:8080", &seq), 1);
	admin_set_slot_state(&g.shm, 1, seq, ADMIN_DRAIN, 6);
	shm_slot_set_state(&g.shm, 1, SHM_SLOT_DRAINING);
	ck_assert(admin_slot_stale(&g.shm, &g.cfg, 1));
	gen_free(&g);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("admin");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, find_by_url_or_hostport);
	tcase_add_test(tc, changes_move_the_enabled_bit);
	tcase_add_test(tc, carry_into_a_new_generation);
	tcase_add_test(tc, state_file_round_trip);
	tcase_add_test(tc, discovered_state_follows_the_address);
	suite_add_tcase(s, tc);
	return unit_run(s, CK_NORMAL);
}
