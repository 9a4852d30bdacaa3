/*
 * FV_ASSERT: an impossible internal state (STYLE habit 4). Bad input from the wire or a bad
 * model never reaches one: it gets a status code and an ERROR frame. What an assert guards comes
 * from the code generator or from the firmware's own construction (a reply that always fits its
 * buffer, a layer kind the runner checked when it prepared the model).
 *
 *  - On a board (Cortex-M): the trap instruction. UDF raises a UsageFault, escalated to a
 *    HardFault, whose handler spins (ports/stm32f4/startup.c) until the watchdog resets the
 *    board; under QEMU, which has no watchdog, the board falls silent and a test sees it.
 *  - On the host (the virtual board, the C tests, the fuzzer): a message on stderr with the file,
 *    the line and the condition, then abort(), which the sanitizers and the test runner report.
 *
 * A build may define FV_ASSERT itself (-D or before the include) to replace both.
 */
#ifndef FV_ASSERT_H
#define FV_ASSERT_H

#ifndef FV_ASSERT
#if defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M'
#define FV_ASSERT(cond) \
    do { \
        if (!(cond)) { \
            __builtin_trap(); \
        } \
    } while (0)
#else
#include <stdio.h>
#include <stdlib.h>
#define FV_ASSERT(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)
#endif
#endif

#endif /* FV_ASSERT_H */
