/* The shared-memory segment: the contract between master, workers and health checker. */
#ifndef ROUNDGUARD_SHM_T_H
#define ROUNDGUARD_SHM_T_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "roundguard/dns_answer.h"
#include "roundguard/metrics-t.h"

#define SHM_MAGIC		0x52475348u	/* "RGSH" */
#define SHM_LAYOUT_VERSION	9u	/* 9: the slot a discovered backend's admin state is for */
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

/*
 * What an operator said of a backend (roundguardctl); written only by the
 * master. Drain: no new requests, those in flight finish, still checked.
 * Maint: no new requests and not checked.
 */
enum admin_state {
	ADMIN_READY,
	ADMIN_DRAIN,
	ADMIN_MAINT,
	ADMIN_STATES,
};

/*
 * A backend's place in the segment. A configured backend is static; a slot
 * of a discovered name (config_backend.discover) is free until the checker
 * gives it an address from an answer, active while answers name it, and
 * draining once they stop: out of the schedule, its exchanges finishing,
 * then free again. Free and draining slots have no series in /metrics.
 */
enum shm_slot {
	SHM_SLOT_STATIC,
	SHM_SLOT_FREE,
	SHM_SLOT_ACTIVE,
	SHM_SLOT_DRAINING,
};

/* Per-backend state: health written only by the checker, the administrative part only by the master. */
struct shm_backend {
	alignas(SHM_CACHELINE) _Atomic uint32_t up;	/* mirrors the live bit for readers */
	_Atomic uint32_t last_result;	/* enum check_result */
	_Atomic uint32_t last_status;	/* HTTP status of the last answer, 0 if none */
	_Atomic uint32_t successes;	/* consecutive */
	_Atomic uint32_t failures;	/* consecutive */
	_Atomic int64_t changed_ns;	/* CLOCK_MONOTONIC time of the last transition */
	_Atomic uint64_t checks_ok;	/* totals, for roundguard_health_checks_total */
	_Atomic uint64_t checks_failed;
	/* Master: enum admin_state, the weight (0-256) and when either last changed. */
	_Atomic uint32_t admin;
	_Atomic uint32_t weight;
	_Atomic int64_t admin_changed_ns;
	/* Checker: the weight in tenths with slow start applied, and when the ramp began (0: none). */
	_Atomic uint32_t effective;
	_Atomic int64_t ramp_since_ns;
	/*
	 * Checker, for slots: enum shm_slot, and the address. slot_seq is odd
	 * while the address changes (a seqlock: readers retry or skip), and
	 * bumped at every change, so a worker sees that its copy is stale.
	 */
	_Atomic uint32_t slot;
	_Atomic uint32_t slot_seq;
	_Atomic uint64_t slot_addr[2];	/* struct net_addr's 16 bytes */
	_Atomic uint32_t slot_family_port;	/* family << 16 | port */
	_Atomic uint32_t slot_weight;	/* from the SRV record (or the entry's weight) */
	/* Checker, in a name's first slot: its lookups by enum dns_result. */
	_Atomic uint64_t dns_lookups[DNS_RESULTS];
	/*
	 * Master, for slots: the slot_seq of the address admin (drain, maint)
	 * was set for. Once the slot holds another address, or none, the master
	 * puts it back to ready (admin_slot_stale()).
	 */
	_Atomic uint32_t admin_slot_seq;
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
 * cache line: live[live_words], enabled[live_words], backends[nbackends],
 * workers[nworkers + 1], stats[(nworkers + 1) * nbackends] (row w is worker
 * w's, the last row the carried totals), sched[2][sched_cap] (two pick
 * schedules, include/roundguard/schedule.h). Untouched pages of the segment
 * cost no memory.
 *
 * enabled: one bit per backend that may take new requests (administratively
 * ready, weight above 0); the master writes it (sequentially consistent), and
 * a pick needs both bits, so a drain holds for every pick that begins after
 * the store. The checker turns live, enabled and the weights into a schedule
 * in the buffer no worker was sent to, then publishes it with one store of
 * sched; sched_admin_seq tells the master which of its changes it includes.
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
	uint64_t off_enabled;
	uint64_t off_sched;
	uint32_t sched_cap;		/* entries of each schedule buffer */
	uint32_t pad2;
	int64_t started_ns;		/* CLOCK_MONOTONIC when the master started (uptime) */
	_Atomic uint64_t admin_seq;	/* master: bumped at every administrative change */
	_Atomic uint64_t sched_admin_seq;	/* checker: the admin_seq its newest schedule includes */
	_Atomic int32_t checker_pid;	/* a worker that takes a backend out tells it (SIGUSR1) */
	uint32_t pad3;
	_Atomic uint64_t check_passes;	/* completed health-check rounds */
	_Atomic uint64_t worker_restarts;
	/* The round-robin ticket, alone on its cache line: every request bumps it. */
	alignas(SHM_CACHELINE) _Atomic uint64_t rr;
	/*
	 * Read on every pick, written when the checker publishes: its own line.
	 * sched: publications so far << 1 | the buffer in use; sched_len[i]:
	 * entries of buffer i (0: nothing may take traffic).
	 */
	alignas(SHM_CACHELINE) _Atomic uint64_t sched;
	_Atomic uint32_t sched_len[2];
	alignas(SHM_CACHELINE) char end[];
};

#endif
