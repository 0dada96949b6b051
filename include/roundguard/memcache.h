/* A free-list cache in front of malloc for libevent's own allocations. */
#ifndef ROUNDGUARD_MEMCACHE_H
#define ROUNDGUARD_MEMCACHE_H

#include <stddef.h>

/*
 * Route every libevent allocation through the cache (event_set_mem_functions);
 * call before any other libevent function. The processes are single-threaded,
 * so the free lists take no lock. Under AddressSanitizer the cache passes
 * every call straight to malloc, so that use-after-free stays visible.
 */
void memcache_install(void);

/* The cache's allocator functions, also usable directly (and by the tests). */
void *memcache_malloc(size_t size);
void *memcache_realloc(void *ptr, size_t size);
void memcache_free(void *ptr);

/* Bytes held in the free lists, ready for reuse. */
size_t memcache_cached_bytes(void);

/* Usable size of a block from memcache_malloc: at least what was asked for. */
size_t memcache_block_size(const void *ptr);

/* Give every cached block back to malloc. */
void memcache_trim(void);

#endif
