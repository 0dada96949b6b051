/* The shared-memory segment: the contract between master, workers and health checker. */
#ifndef ROUNDGUARD_SHM_T_H
#define ROUNDGUARD_SHM_T_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "roundguard/metrics-t.h"

#define SHM_MAGIC		0x52475348u	/* "RGSH" */
#define SHM_LAYOUT_VERSION	5u	/* 5: TLS handshake counters in struct shm_worker */
#define SHM_CACHELINE		64

/* Why the last probe of a backend failed; also why a worker gave up on it. */
enum check_result {
	CHECK_OK,
	CHECK_CONNECT_REFUSED,
	CHECK_CONNECT_FAILED,	/* unreachable, no route, ... */
	CHECK_TIMEOUT,
	CHECK_RESET,		/* connection closed or reset before a full answer */
	CHECK_BAD_RESPONSE,	/* not parseable as HTTP */
	CHECK_STATUS,		/* answered, with another status than expected */
	CHECK_RESOLVE,		/* host name did not resolve */
	CHECK_TLS,		/* an https backend's handshake or certificate check failed */
	CHECK_NONE,		/* not probed yet */
};

/* Per-backend health state; written only by the health checker. */
struct shm_backend {
	alignas(SHM_CACHELINE) _Atomic uint32_t up;	/* mirrors the live bit for readers */
	_Atomic uint32_t last_result;	/* enum check_result */
	_Atomic uint32_t last_status;	/* HTTP status of the last answer, 0 if none */
	_Atomic uint32_t successes;	/* consecutive */
	_Atomic uint32_t failures;	/* consecutive */
	_Atomic int64_t changed_ns;	/* CLOCK_MONOTONIC time of the last transition */
	_Atomic uint64_t checks_ok;	/* totals, for roundguard_health_checks_total */
	_Atomic uint64_t checks_failed;
};

/*
 * Per-worker slot; written only by its worker (relaxed), summed by readers.
 * Slot nworkers (one past the last worker) holds totals carried over from
 * an earlier generation, written by the master alone.
 */
enum shm_counter {
	SHM_NO_BACKEND,		/* requests answered 503: nothing live */
	SHM_DROPPED_UNDERSCORE,	/* request header fields with "_" in the name, not forwarded */
	SHM_DROPPED_TRAILER,	/* trailer fields of requests and answers, not forwarded */
	SHM_COUNTERS
};

struct shm_worker {
	alignas(SHM_CACHELINE) _Atomic int32_t pid;
	_Atomic uint64_t requests;
	_Atomic uint64_t connections;
	_Atomic uint64_t counters[SHM_COUNTERS];	/* enum shm_counter; carried over reloads */
	/* Handshakes per listener index; carried over reloads to the listener of the same name. */
	struct metrics_tls tls[METRICS_LISTENERS_MAX];
};

/*
 * Fixed header. Arrays follow at the offsets it records, each aligned to a
 * cache line: live[live_words], backends[nbackends], workers[nworkers + 1],
 * stats[(nworkers + 1) * nbackends] (row w is worker w's, the last row the
 * carried totals). Untouched pages of the segment cost no memory.
 */
struct shm_header {
	uint32_t magic;
	uint32_t layout_version;
	uint32_t nbackends;
	uint32_t nworkers;
	uint32_t live_words;
	uint32_t pad;
	uint64_t size;
	uint64_t off_live;
	uint64_t off_backends;
	uint64_t off_workers;
	uint64_t off_stats;
	_Atomic uint64_t check_passes;	/* completed health-check rounds */
	_Atomic uint64_t worker_restarts;
	/* The round-robin ticket, alone on its cache line: every request bumps it. */
	alignas(SHM_CACHELINE) _Atomic uint64_t rr;
	alignas(SHM_CACHELINE) char end[];
};

#endif
