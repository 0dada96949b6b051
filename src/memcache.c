/*
 * A free-list cache in front of malloc for libevent's allocations.
 *
 * A proxied request fills and empties a handful of evbuffers, and an emptied
 * evbuffer frees its chains: about five malloc/free pairs per request. They
 * come in bursts (one loop turn answers dozens of requests), well past the
 * seven blocks per size that glibc's tcache holds, so most of them went the
 * slow way through _int_free and _int_malloc. Here a freed block waits on a
 * per-size list for the next allocation of that size.
 *
 * Classes go in 16-byte steps up to 512 bytes (evbuffers and other small
 * structures: power-of-two classes would nearly double them, and an idle
 * connection keeps three evbuffers), then in powers of two up to 32 KiB,
 * which is how libevent sizes its chains. A 16-byte header in front of each
 * block (which keeps malloc's alignment) records the class, since free() is
 * not told the size.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "roundguard/memcache.h"

#define MEMCACHE_HDR		16
#define MEMCACHE_STEP		16
#define MEMCACHE_STEP_MAX	512
#define MEMCACHE_NSTEPS		(MEMCACHE_STEP_MAX / MEMCACHE_STEP)
#define MEMCACHE_POW_MIN	10	/* 1 KiB, the first class past the steps */
#define MEMCACHE_POW_MAX	15	/* 32 KiB: a 16 KiB read chain with its header */
#define MEMCACHE_NCLASSES	(MEMCACHE_NSTEPS + MEMCACHE_POW_MAX - MEMCACHE_POW_MIN + 1)
#define MEMCACHE_UNCACHED	0xffU
/*
 * What each class keeps. The chains churn: a loop turn of 64 answers frees
 * 128 chains of 1 KiB at its end (client and backend side), so their classes
 * keep up to 128 KiB each. The small structures only come and go with
 * connections.
 */
#define MEMCACHE_KEEP_STEP	32
#define MEMCACHE_KEEP_BYTES	(128 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define MEMCACHE_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEMCACHE_SANITIZED 1
#endif
#endif

struct block_hdr {
	uint32_t cls;
	uint32_t unused;
	uint64_t size;		/* of an uncached block's data */
};

_Static_assert(sizeof(struct block_hdr) == MEMCACHE_HDR, "header keeps 16-byte alignment");

struct free_block {
	struct free_block *next;
};

static struct {
	struct free_block *head;
	uint32_t n;
} lists[MEMCACHE_NCLASSES];

static uint32_t
size_class(size_t size)
{
	uint32_t pow;

	if (size <= MEMCACHE_STEP_MAX)
		return size == 0 ? 0 : (uint32_t)((size - 1) / MEMCACHE_STEP);
	pow = (uint32_t)(64 - __builtin_clzll((unsigned long long)size - 1));
	if (pow < MEMCACHE_POW_MIN)
		pow = MEMCACHE_POW_MIN;
	return pow <= MEMCACHE_POW_MAX ? MEMCACHE_NSTEPS + pow - MEMCACHE_POW_MIN :
	    MEMCACHE_UNCACHED;
}

static size_t
class_size(uint32_t cls)
{
	if (cls < MEMCACHE_NSTEPS)
		return (size_t)(cls + 1) * MEMCACHE_STEP;
	return (size_t)1 << (cls - MEMCACHE_NSTEPS + MEMCACHE_POW_MIN);
}

static uint32_t
class_keep(uint32_t cls)
{
	if (cls < MEMCACHE_NSTEPS)
		return MEMCACHE_KEEP_STEP;
	return (uint32_t)(MEMCACHE_KEEP_BYTES / class_size(cls));
}

static struct block_hdr *
hdr_of(const void *ptr)
{
	return (struct block_hdr *)((char *)(uintptr_t)ptr - MEMCACHE_HDR);
}

void *
memcache_malloc(size_t size)
{
	uint32_t cls = size_class(size);
	struct block_hdr *h;

	if (cls != MEMCACHE_UNCACHED && lists[cls].head != NULL) {
		struct free_block *b = lists[cls].head;

		lists[cls].head = b->next;
		lists[cls].n--;
		return b;
	}
	if (cls == MEMCACHE_UNCACHED) {
		if (size > SIZE_MAX - MEMCACHE_HDR || (h = malloc(MEMCACHE_HDR + size)) == NULL)
			return NULL;
		h->size = size;
	} else if ((h = malloc(MEMCACHE_HDR + class_size(cls))) == NULL) {
		return NULL;
	}
	h->cls = cls;
	return (char *)h + MEMCACHE_HDR;
}

size_t
memcache_block_size(const void *ptr)
{
	const struct block_hdr *h = hdr_of(ptr);

	return h->cls == MEMCACHE_UNCACHED ? (size_t)h->size : class_size(h->cls);
}

void
memcache_free(void *ptr)
{
	struct block_hdr *h;
	struct free_block *b;

	if (ptr == NULL)
		return;
	h = hdr_of(ptr);
	if (h->cls == MEMCACHE_UNCACHED || lists[h->cls].n >= class_keep(h->cls)) {
		free(h);
		return;
	}
	b = ptr;
	b->next = lists[h->cls].head;
	lists[h->cls].head = b;
	lists[h->cls].n++;
}

void *
memcache_realloc(void *ptr, size_t size)
{
	size_t have;
	void *p;

	if (ptr == NULL)
		return memcache_malloc(size);
	if (size == 0) {
		memcache_free(ptr);
		return NULL;
	}
	have = memcache_block_size(ptr);
	if (size <= have)
		return ptr;
	if ((p = memcache_malloc(size)) == NULL)
		return NULL;
	memcpy(p, ptr, have);
	memcache_free(ptr);
	return p;
}

size_t
memcache_cached_bytes(void)
{
	size_t total = 0;

	for (uint32_t cls = 0; cls < MEMCACHE_NCLASSES; cls++)
		total += lists[cls].n * class_size(cls);
	return total;
}

void
memcache_trim(void)
{
	for (uint32_t cls = 0; cls < MEMCACHE_NCLASSES; cls++) {
		while (lists[cls].head != NULL) {
			struct free_block *b = lists[cls].head;

			lists[cls].head = b->next;
			free(hdr_of(b));
		}
		lists[cls].n = 0;
	}
}

void
memcache_install(void)
{
#ifndef MEMCACHE_SANITIZED
	event_set_mem_functions(memcache_malloc, memcache_realloc, memcache_free);
#endif
}
