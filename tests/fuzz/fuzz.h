/* Shared bits of the libFuzzer harnesses: the entry point's prototype and a checked assertion. */
#ifndef ROUNDGUARD_FUZZ_H
#define ROUNDGUARD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * An invariant of the code under test. Unlike assert() it stays in every
 * build type, and it says what was checked before abort() makes libFuzzer
 * save the input as a crash.
 */
#define FUZZ_CHECK(cond, ...) do {						\
	if (!(cond)) {								\
		fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,	\
		    #cond);							\
		fprintf(stderr, __VA_ARGS__);					\
		fputc('\n', stderr);						\
		abort();							\
	}									\
} while (0)

/* A NUL-terminated heap copy of n bytes (the fuzzer's buffer has no terminator). */
static inline char *
fuzz_strndup(const uint8_t *data, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		s[i] = (char)data[i];
	s[n] = '\0';
	return s;
}

#endif
