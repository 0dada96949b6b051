/* Creating, mapping and reading the shared-memory segment (see shm-t.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "roundguard/balance.h"
#include "roundguard/net.h"
#include "roundguard/schedule.h"
#include "roundguard/shm.h"

static uint64_t
align_up(uint64_t x)
{
	return (x + SHM_CACHELINE - 1) & ~(uint64_t)(SHM_CACHELINE - 1);
}

uint32_t
shm_sched_cap(uint32_t nbackends)
{
	/* Every backend at the top weight, in tenths while one ramps; bounded (schedule.h). */
	uint64_t cap = (uint64_t)nbackends * SCHEDULE_WEIGHT_MAX * SCHEDULE_RAMP_STEPS;

	return (uint32_t)(cap < SCHEDULE_MAX ? cap : SCHEDULE_MAX);
}

size_t
shm_layout_size(uint32_t nbackends, uint32_t nworkers)
{
	uint64_t off = align_up(sizeof(struct shm_header));

	off += 2 * align_up(BALANCE_WORDS(nbackends) * sizeof(uint64_t));
	off += align_up((uint64_t)nbackends * sizeof(struct shm_backend));
	off += align_up((uint64_t)(nworkers + 1) * sizeof(struct shm_worker));
	off += align_up((uint64_t)(nworkers + 1) * nbackends * sizeof(struct metrics_slot));
	off += align_up(2 * (uint64_t)shm_sched_cap(nbackends) * sizeof(_Atomic uint16_t));
	return (size_t)off;
}

void
shm_layout_init(void *base, size_t size, uint32_t nbackends, uint32_t nworkers)
{
	struct shm_header *h = base;
	struct shm_backend *b;
	uint64_t off = align_up(sizeof(struct shm_header));

	h->nbackends = nbackends;
	h->nworkers = nworkers;
	h->live_words = (uint32_t)BALANCE_WORDS(nbackends);
	h->size = size;
	h->off_live = off;
	off += align_up(h->live_words * sizeof(uint64_t));
	h->off_enabled = off;
	off += align_up(h->live_words * sizeof(uint64_t));
	h->off_backends = off;
	off += align_up((uint64_t)nbackends * sizeof(struct shm_backend));
	h->off_workers = off;
	off += align_up((uint64_t)(nworkers + 1) * sizeof(struct shm_worker));
	h->off_stats = off;
	off += align_up((uint64_t)(nworkers + 1) * nbackends * sizeof(struct metrics_slot));
	h->off_sched = off;
	h->sched_cap = shm_sched_cap(nbackends);
	b = (struct shm_backend *)((char *)base + h->off_backends);
	/* Every backend ready at weight 1 until the master says otherwise. */
	for (uint32_t i = 0; i < nbackends; i++) {
		atomic_store_explicit(&b[i].last_result, CHECK_NONE, memory_order_relaxed);
		atomic_store_explicit(&b[i].weight, 1, memory_order_relaxed);
		atomic_store_explicit(&b[i].effective, SCHEDULE_RAMP_STEPS, memory_order_relaxed);
		((_Atomic uint64_t *)((char *)base + h->off_enabled))[i / 64] |=
		    UINT64_C(1) << (i % 64);
	}
	h->layout_version = SHM_LAYOUT_VERSION;
	h->magic = SHM_MAGIC;
}

int
shm_attach(struct shm *s, void *base, size_t size)
{
	struct shm_header *h = base;

	if (size < sizeof(*h) || h->magic != SHM_MAGIC ||
	    h->layout_version != SHM_LAYOUT_VERSION || h->size != size)
		return -1;
	s->hdr = h;
	s->size = size;
	s->live = (_Atomic uint64_t *)((char *)base + h->off_live);
	s->backends = (struct shm_backend *)((char *)base + h->off_backends);
	s->workers = (struct shm_worker *)((char *)base + h->off_workers);
	s->stats = (struct metrics_slot *)((char *)base + h->off_stats);
	s->enabled = (_Atomic uint64_t *)((char *)base + h->off_enabled);
	s->sched[0] = (_Atomic uint16_t *)((char *)base + h->off_sched);
	s->sched[1] = s->sched[0] + h->sched_cap;
	return 0;
}

int
shm_create(struct shm *s, const char *name, uint32_t nbackends, uint32_t nworkers,
    char *err, size_t errlen)
{
	size_t size = shm_layout_size(nbackends, nworkers);
	void *base;
	int fd;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1) {
		int e = errno;	/* EEXIST tells the caller to try another name */

		snprintf(err, errlen, "shm_open(\"%s\") failed: %s", name, strerror(e));
		errno = e;
		return -1;
	}
	if (ftruncate(fd, (off_t)size) == -1) {
		snprintf(err, errlen, "ftruncate(\"%s\", %zu) failed: %s", name, size,
		    strerror(errno));
		goto fail;
	}
	base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		snprintf(err, errlen, "mmap(\"%s\") failed: %s", name, strerror(errno));
		goto fail;
	}
	/*
	 * Counters of every worker and backend: nothing a core dump of one
	 * process needs, and with many backends the largest mapping there is.
	 */
	(void)madvise(base, size, MADV_DONTDUMP);
	shm_layout_init(base, size, nbackends, nworkers);
	shm_attach(s, base, size);
	s->fd = fd;
	snprintf(s->name, sizeof(s->name), "%s", name);
	return 0;
fail:
	close(fd);
	shm_unlink(name);
	return -1;
}

int
shm_chown(struct shm *s, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	if (fchown(s->fd, uid, gid) == -1) {
		snprintf(err, errlen, "fchown(\"%s\", %u, %u) failed: %s", s->name, (unsigned)uid,
		    (unsigned)gid, strerror(errno));
		return -1;
	}
	return 0;
}

void
shm_unmap(struct shm *s)
{
	if (s->hdr != NULL)
		munmap(s->hdr, s->size);
	s->hdr = NULL;
	if (s->fd > 0)
		close(s->fd);
	s->fd = -1;
}

void
shm_destroy(struct shm *s)
{
	shm_unmap(s);
	if (s->name[0] != '\0')
		shm_unlink(s->name);
	s->name[0] = '\0';
}

void
shm_set_live(struct shm *s, uint32_t backend, bool up)
{
	uint64_t bit = UINT64_C(1) << (backend % 64);

	if (up)
		atomic_fetch_or_explicit(&s->live[backend / 64], bit, memory_order_release);
	else
		atomic_fetch_and_explicit(&s->live[backend / 64], ~bit, memory_order_release);
	atomic_store_explicit(&s->backends[backend].up, up, memory_order_relaxed);
}

bool
shm_is_live(const struct shm *s, uint32_t backend)
{
	uint64_t w = atomic_load_explicit(&s->live[backend / 64], memory_order_acquire);

	return (w >> (backend % 64)) & 1;
}

uint32_t
shm_live_count(const struct shm *s)
{
	uint64_t snap[BALANCE_WORDS(4096)];
	size_t n = s->hdr->nbackends;

	balance_snapshot(snap, s->live, n);
	return (uint32_t)balance_count(snap, n);
}

void
shm_set_enabled(struct shm *s, uint32_t backend, bool on)
{
	uint64_t bit = UINT64_C(1) << (backend % 64);

	/* Sequentially consistent: a pick that begins after this returns sees it. */
	if (on)
		atomic_fetch_or(&s->enabled[backend / 64], bit);
	else
		atomic_fetch_and(&s->enabled[backend / 64], ~bit);
}

void
shm_usable(const struct shm *s, uint64_t *snap)
{
	size_t n = s->hdr->nbackends;

	for (size_t w = 0; w < BALANCE_WORDS(n); w++)
		snap[w] = atomic_load_explicit(&s->live[w], memory_order_acquire) &
		    atomic_load(&s->enabled[w]);
}

void
shm_publish_schedule(struct shm *s, const uint16_t *entries, uint32_t len, uint64_t admin_seq)
{
	uint64_t cur = atomic_load_explicit(&s->hdr->sched, memory_order_relaxed);
	unsigned next = (unsigned)(cur & 1) ^ 1;

	if (len > s->hdr->sched_cap)
		len = s->hdr->sched_cap;
	for (uint32_t i = 0; i < len; i++)
		atomic_store_explicit(&s->sched[next][i], entries[i], memory_order_relaxed);
	atomic_store_explicit(&s->hdr->sched_len[next], len, memory_order_relaxed);
	atomic_store_explicit(&s->hdr->sched, ((cur >> 1) + 1) << 1 | next, memory_order_release);
	atomic_store_explicit(&s->hdr->sched_admin_seq, admin_seq, memory_order_release);
}

int
shm_pick(const struct shm *s, uint64_t ticket)
{
	uint64_t usable[BALANCE_WORDS(4096)];
	uint64_t cur = atomic_load_explicit(&s->hdr->sched, memory_order_acquire);
	unsigned i = (unsigned)(cur & 1);

	shm_usable(s, usable);
	return balance_pick_schedule(s->sched[i],
	    atomic_load_explicit(&s->hdr->sched_len[i], memory_order_relaxed), usable,
	    s->hdr->nbackends, ticket);
}

enum shm_slot
shm_slot_state(const struct shm *s, uint32_t backend)
{
	return (enum shm_slot)atomic_load_explicit(&s->backends[backend].slot, memory_order_acquire);
}

void
shm_slot_set_state(struct shm *s, uint32_t backend, enum shm_slot st)
{
	atomic_store_explicit(&s->backends[backend].slot, (uint32_t)st, memory_order_release);
}

void
shm_slot_write(struct shm *s, uint32_t backend, const struct net_addr *a)
{
	struct shm_backend *sb = &s->backends[backend];
	uint32_t seq = atomic_load_explicit(&sb->slot_seq, memory_order_relaxed);
	uint64_t w[2];

	memcpy(w, a->bytes, sizeof(w));
	/* Odd first; the fence keeps the address stores after it (a seqlock's writer side). */
	atomic_store_explicit(&sb->slot_seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&sb->slot_addr[0], w[0], memory_order_relaxed);
	atomic_store_explicit(&sb->slot_addr[1], w[1], memory_order_relaxed);
	atomic_store_explicit(&sb->slot_family_port, (uint32_t)a->family << 16 | a->port,
	    memory_order_relaxed);
	atomic_store_explicit(&sb->slot_seq, seq + 2, memory_order_release);
}

bool
shm_slot_read(const struct shm *s, uint32_t backend, struct net_addr *a, uint32_t *seq)
{
	const struct shm_backend *sb = &s->backends[backend];
	uint32_t before = atomic_load_explicit(&sb->slot_seq, memory_order_acquire), fp;
	uint64_t w[2];

	if (before & 1)
		return false;
	w[0] = atomic_load_explicit(&sb->slot_addr[0], memory_order_relaxed);
	w[1] = atomic_load_explicit(&sb->slot_addr[1], memory_order_relaxed);
	fp = atomic_load_explicit(&sb->slot_family_port, memory_order_relaxed);
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&sb->slot_seq, memory_order_relaxed) != before)
		return false;
	memset(a, 0, sizeof(*a));
	memcpy(a->bytes, w, sizeof(w));
	a->family = (uint8_t)(fp >> 16);
	a->port = (uint16_t)fp;
	*seq = before;
	return a->family != 0;
}
