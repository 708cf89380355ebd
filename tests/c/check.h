/* The checks the C tests share. Include after varad.h (OK() names its status type).
 * CHECK counts a failed condition and goes on; OK stops the program on a status other
 * than VARAD_OK, printing the library's message. Each test reports `failures` at exit. */
#ifndef VARAD_TEST_CHECK_H
#define VARAD_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int failures = 0;

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                            \
        }                                                                          \
    } while (0)

#define OK(call)                                                                        \
    do {                                                                                \
        VaradStatus s_ = (call);                                                        \
        if (s_ != VARAD_OK) {                                                           \
            fprintf(stderr, "%s:%d: %s -> %d: %s\n", __FILE__, __LINE__, #call, (int)s_, \
                    varad_last_error_message());                                        \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

#endif
