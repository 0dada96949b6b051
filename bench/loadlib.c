/*
 * loadlib: the helpers bench/wsload.c and bench/tlsload.c share (see loadlib.h). Moved here
 * from both, where they were the same code but for die()'s prefix, and kept as they were:
 * bench/run and bench/benchlib.py parse the output they shape (p50_us, p99_us, max_us,
 * cpu_us, "1.23ms"). One addition: load_parse_pids() stops on a failed strdup().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loadlib.h"

int64_t
load_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
load_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", load_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

double
load_parse_num(const char *s, const char *what, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < min || v > max)
		load_die("%s: not a number in [%g, %g]: %s", what, min, max, s);
	return v;
}

void
load_parse_pids(struct load_pids *p, const char *arg)
{
	char *s = strdup(arg), *tok, *save = NULL;

	if (!s)
		load_die("out of memory");
	for (tok = strtok_r(s, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		if (p->n == LOAD_MAX_PIDS)
			load_die("-P: more than %d processes", LOAD_MAX_PIDS);
		/* 1 << 22: PID_MAX_LIMIT on 64-bit Linux. */
		p->pid[p->n++] = (pid_t)load_parse_num(tok, "-P", 1, 1 << 22);
	}
	free(s);
}

/* Read from /proc rather than with getrusage(): the processes are not our children, and the
 * caller samples them at the window's two ends. Only the main thread calls this. */
int64_t
load_proc_cpu_us(const struct load_pids *p)
{
	static long hz;
	int64_t total = 0;

	if (!hz)
		hz = sysconf(_SC_CLK_TCK);
	for (int i = 0; i < p->n; i++) {
		char path[64], buf[1024], *q;
		unsigned long long ut, st;
		ssize_t n;
		int fd;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)p->pid[i]);
		if ((fd = open(path, O_RDONLY)) == -1)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		/* After "(comm) ": state is field 3; utime and stime are fields 14 and 15. The
		 * last ')' because comm may contain one. */
		if (!(q = strrchr(buf, ')')))
			continue;
		if (sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
			total += (int64_t)(ut + st) * 1000000 / hz;
	}
	return total;
}

int
load_hist_init(struct load_hist *h)
{
	h->max_us = 0;
	h->bucket = calloc(LOAD_H_BUCKETS, sizeof(uint64_t));
	return h->bucket ? 0 : -1;
}

void
load_hist_record(struct load_hist *h, int64_t ns)
{
	uint64_t us = ns > 0 ? (uint64_t)ns / 1000 : 0;
	size_t b;

	if (us > h->max_us)
		h->max_us = us;
	if (us < LOAD_H_FINE)
		b = us;
	else if (us / 1000 < LOAD_H_COARSE)
		b = LOAD_H_FINE + us / 1000;
	else
		b = LOAD_H_BUCKETS - 1;	/* 120 s or more: one last bucket */
	h->bucket[b]++;
}

void
load_hist_merge(struct load_hist *dst, const struct load_hist *src)
{
	if (src->max_us > dst->max_us)
		dst->max_us = src->max_us;
	for (size_t b = 0; b < LOAD_H_BUCKETS; b++)
		dst->bucket[b] += src->bucket[b];
}

uint64_t
load_hist_percentile(const struct load_hist *h, uint64_t total, double q)
{
	uint64_t want = (uint64_t)(q * (double)total + 0.5), seen = 0;

	if (want == 0)
		want = 1;
	for (size_t b = 0; b < LOAD_H_BUCKETS; b++) {
		seen += h->bucket[b];
		if (seen >= want)
			return b < LOAD_H_FINE ? b : (b - LOAD_H_FINE) * 1000 + 500;
	}
	return 0;
}

void
load_fmt_us(char *buf, size_t len, uint64_t us)
{
	if (us >= 1000)
		snprintf(buf, len, "%.2fms", (double)us / 1000);
	else
		snprintf(buf, len, "%lluus", (unsigned long long)us);
}
