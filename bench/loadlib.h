/*
 * loadlib: what bench/wsload.c and bench/tlsload.c share (see bench/README.md): the clock,
 * fatal errors, option numbers, the -P list and the CPU time of those processes, and the
 * latency histogram with its percentiles. libc only, so that wsload stays free of libssl.
 *
 * Both programs are built from their own file plus bench/loadlib.c (by bench/run, and by
 * hand as bench/README.md shows); each defines load_prog, the prefix of its messages.
 */
#ifndef ROUNDGUARD_BENCH_LOADLIB_H
#define ROUNDGUARD_BENCH_LOADLIB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LOAD_MAX_PIDS	64	/* processes -P may name */

/* Latency histogram: 1 us buckets up to 65.535 ms, then 1 ms buckets up to 120 s. */
#define LOAD_H_FINE	65536
#define LOAD_H_COARSE	120000
#define LOAD_H_BUCKETS	(LOAD_H_FINE + LOAD_H_COARSE + 1)

/* The program's name, "wsload" or "tlsload", the prefix of load_die()'s messages. Defined by
 * each program, not here: one that forgets it fails to link instead of printing a wrong name. */
extern const char *const load_prog;

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t load_now_ns(void);

/* "PROG: MESSAGE" on stderr, then exit status 2 (a bad option or a set-up failure). */
void load_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* s as a number in [min, max], else load_die() naming the option what. */
double load_parse_num(const char *s, const char *what, double min, double max);

/* The processes of -P PID,... whose CPU time is sampled over the window. */
struct load_pids {
	pid_t pid[LOAD_MAX_PIDS];
	int n;
};

/* Add the PIDs of arg (separated by commas or spaces) to p; -P may be given more than once. */
void load_parse_pids(struct load_pids *p, const char *arg);

/* utime + stime of p's processes, in microseconds; one that is gone counts as 0. */
int64_t load_proc_cpu_us(const struct load_pids *p);

/* One thread's latencies (or the sum of all threads'). */
struct load_hist {
	uint64_t *bucket;	/* LOAD_H_BUCKETS counts */
	uint64_t max_us;	/* the largest latency recorded, exactly */
};

/* Allocate h's buckets, all zero. -1 (errno set by calloc) when out of memory. */
int load_hist_init(struct load_hist *h);

/* Count one latency of ns nanoseconds (negative counts as 0). */
void load_hist_record(struct load_hist *h, int64_t ns);

/* Add src's counts to dst, and its maximum. */
void load_hist_merge(struct load_hist *dst, const struct load_hist *src);

/* The latency in us of the sample ranked q * total (rounded, at least the first): a 1 ms
 * bucket reads as its middle; 0 when there are none. total is the caller's count. */
uint64_t load_hist_percentile(const struct load_hist *h, uint64_t total, double q);

/* us as "123us" below 1 ms, else "1.23ms". */
void load_fmt_us(char *buf, size_t len, uint64_t us);

#endif
