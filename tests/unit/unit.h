/* What every unit test executable's main() ends with. */
#ifndef ROUNDGUARD_TEST_UNIT_H
#define ROUNDGUARD_TEST_UNIT_H

#include <stdlib.h>

#include <check.h>

/* Run every test of s (printing as mode says); the exit status for main(). */
static inline int
unit_run(Suite *s, enum print_output mode)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, mode);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
