/*
 * Weighted pick schedules. The health checker turns the backends that may
 * take traffic and their effective weights into one sequence of backend
 * indexes, a smooth interleaving (nginx's smooth weighted round robin) in
 * which each backend appears as often as its weight; it publishes the
 * sequence in the segment, and a worker's pick is entry (ticket mod length).
 * Pure: no I/O, no allocation but the caller's.
 */
#ifndef ROUNDGUARD_SCHEDULE_H
#define ROUNDGUARD_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

/* Entries of one schedule at most (backend indexes fit in 16 bits: CONFIG_BACKENDS_MAX). */
#define SCHEDULE_MAX		65536u
/* Weights a backend may have, as "weight" and roundguardctl weight say. */
#define SCHEDULE_WEIGHT_MAX	256u
/*
 * Slow start works in tenths of a weight, so that a backend of weight 1 can
 * ramp from a tenth of its share too; schedule_build() divides the common
 * factor out again once nothing ramps.
 */
#define SCHEDULE_RAMP_STEPS	10u

/*
 * Fill out[0..cap) with the schedule for weights w[0..n) (0: not in it; n at
 * most 65536). The weights are first divided by their greatest common
 * divisor; if their sum still exceeds cap, they are scaled down in
 * proportion, each non-zero one staying at least 1 (n must not exceed cap).
 * Over any sum(weights) consecutive entries (after that reduction) each
 * backend appears exactly its weight's times, evenly spread: nginx's smooth
 * weighted round robin, ties to the lower index. Returns the length, 0 when
 * every weight is 0. scratch holds 2 * n int64_t.
 */
size_t schedule_build(const uint32_t *w, size_t n, uint16_t *out, size_t cap, int64_t *scratch);

/*
 * A backend's weight in tenths (SCHEDULE_RAMP_STEPS), slow start applied:
 * weight * 10 once the ramp is over (or with no slow start), else rising
 * linearly from weight (a tenth of it) at since_ns to weight * 10 at
 * since_ns + slow_start_ns; at least 1 for a non-zero weight.
 */
uint32_t schedule_ramp(uint32_t weight, int64_t since_ns, int64_t now_ns, int64_t slow_start_ns);

#endif
