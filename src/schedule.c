/* Weighted pick schedules (see include/roundguard/schedule.h). */
#include "roundguard/schedule.h"

static uint64_t
gcd(uint64_t a, uint64_t b)
{
	while (b != 0) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/*
 * r[i] = w[i] divided by the weights' common factor, then scaled down until
 * the sum fits cap. Returns the sum.
 */
static uint64_t
reduce(const uint32_t *w, size_t n, int64_t *r, size_t cap)
{
	uint64_t g = 0, sum = 0;

	for (size_t i = 0; i < n; i++)
		g = gcd(w[i], g);
	if (g == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		r[i] = (int64_t)(w[i] / g);
		sum += (uint64_t)r[i];
	}
	/*
	 * Proportional scaling with a floor of 1 can overshoot cap; repeat with
	 * a smaller target. Each pass shrinks the sum, and n <= cap ends it.
	 */
	for (uint64_t target = cap; sum > cap && target > 0; target = target * 7 / 8) {
		uint64_t total = sum;

		sum = 0;
		for (size_t i = 0; i < n; i++) {
			if (r[i] != 0) {
				uint64_t v = (uint64_t)r[i] * target / total;

				r[i] = v == 0 ? 1 : (int64_t)v;
			}
			sum += (uint64_t)r[i];
		}
	}
	return sum;
}

size_t
schedule_build(const uint32_t *w, size_t n, uint16_t *out, size_t cap, int64_t *scratch)
{
	int64_t *weight = scratch, *current = scratch + n;
	uint64_t sum;

	if (n == 0 || n > cap || n > UINT16_MAX + 1u)
		return 0;
	sum = reduce(w, n, weight, cap);
	for (size_t i = 0; i < n; i++)
		current[i] = 0;
	/*
	 * nginx's smooth weighted round robin: every backend's current grows by
	 * its weight, the largest is picked and falls back by the sum. Ties go
	 * to the lower index, so equal weights give plain round robin. After
	 * sum steps every current is 0 again: the sequence repeats exactly.
	 */
	for (uint64_t k = 0; k < sum; k++) {
		size_t best = 0;

		for (size_t i = 0; i < n; i++) {
			current[i] += weight[i];
			if (weight[i] != 0 && (weight[best] == 0 || current[i] > current[best]))
				best = i;
		}
		current[best] -= (int64_t)sum;
		out[k] = (uint16_t)best;
	}
	return (size_t)sum;
}

uint32_t
schedule_ramp(uint32_t weight, int64_t since_ns, int64_t now_ns, int64_t slow_start_ns)
{
	uint64_t full = (uint64_t)weight * SCHEDULE_RAMP_STEPS, v;
	int64_t elapsed = now_ns - since_ns;

	if (weight == 0 || slow_start_ns <= 0 || elapsed >= slow_start_ns)
		return (uint32_t)full;
	if (elapsed < 0)
		elapsed = 0;
	/* From a tenth (weight) to all of it (weight * 10), linearly. */
	v = weight + (full - weight) * (uint64_t)elapsed / (uint64_t)slow_start_ns;
	return (uint32_t)(v == 0 ? 1 : v);
}
