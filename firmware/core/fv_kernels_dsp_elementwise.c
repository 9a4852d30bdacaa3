/*
 * Optimised MAX_POOL_2D and ADD for the Cortex-M4 DSP extension: strong definitions of
 * fv_max_pool_opt and fv_add_opt (fv_kernels.h; the runner's weak ones run the reference).
 * Compiled only for ARM, beside core/fv_kernels_dsp.c (the convolutions), whose scratch RAM the
 * ADD borrows for its tables (fv_kernels_dsp.h). Byte for byte equal to fv_kernels_ref.c (the
 * oracle, STYLE habit 2): firmware/tests/test_kernels_dsp.c checks it under QEMU on random shapes
 * and parameters, tests/test_kernels.c on the numpy engine's vectors.
 *
 * Counted under QEMU (make bench-firmware), instructions per output byte, whole layers with the
 * call: max pool 1.89-2.02 with 12, 16 or 24 channels (1.81-1.90 in the loops), 1.93-2.15 with
 * 32, 44, 48, 64 or 128 (1.84-1.92 in the loops; the 2x2x128 and 4x4x48 layers pay the call on
 * few bytes), 2.5-3.4 with other multiples of 4, 4.4-4.9 with counts that are not (11, 18, 22:
 * the window's right cell is not word aligned, so no LDM, and 4 LDR per output word already
 * make 2.75 per byte with the maxima); ADD 8.6-9.6 (8.25 in the loop, the rest the tables;
 * about 8 is the floor of a bit-exact ADD on this core, see the ADD section).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fv_assert.h"
#include "fv_fixedpoint.h"
#include "fv_kernels.h"
#include "fv_kernels_dsp.h"

#if !defined(__ARM_FEATURE_DSP)
#error "fv_kernels_dsp_elementwise.c needs the DSP extension (-mcpu=cortex-m4 or cortex-m7)"
#endif
#if !defined(__OPTIMIZE__)
#error "fv_kernels_dsp_elementwise.c needs optimisation (-Og, -O1 or more; the release and test builds use -O2)"
#endif

static inline int32_t ld_s8x4(const int8_t *p)
{
    int32_t v;
    __builtin_memcpy(&v, p, 4); /* one LDR (unaligned is fine on the M4), even under -fno-builtin */
    return v;
}

static inline void st_s8x4(int8_t *p, int32_t v)
{
    __builtin_memcpy(p, &v, 4); /* one STR */
}

/* ---- MAX_POOL_2D ---------------------------------------------------------------------------- */

/* Bytewise signed maximum of 4 lanes: SSUB8 sets each lane's GE flag where a >= b, SEL takes
 * those lanes from a and the others from b. One asm block, so nothing can come between the flags
 * and their use. */
static inline int32_t max_s8x4(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}

/* ... and the minimum: the lanes where a >= b from b. */
static inline int32_t min_s8x4(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %2, %1" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}

/* the activation range, lane by lane */
static inline int32_t clamp_s8x4(int32_t v, int32_t lo4, int32_t hi4)
{
    return min_s8x4(max_s8x4(v, lo4), hi4);
}

/*
 * The floor of a 2x2 stride-2 window over int8 channels-last data: per output word (4 channels)
 * 4 input words and 3 lane maxima of 2 instructions each (SSUB8 + SEL; no Cortex-M4 instruction
 * takes a bytewise maximum in one), 1.5 instructions per output byte before any load, store or
 * loop. Loading one word per LDR would add 1 per byte; LDM loads many words in one instruction
 * but only consecutive ones into a fixed register list, which is why these row kernels exist for
 * the channel counts whose whole output pixel fits the registers (C = 12, 16, 24: every pool of
 * resnet16-s4-co, two of vgg12-s1's three; wider pixels go in chunks, below). A window's top
 * row is one run of 2C bytes (its two pixels side by side), its bottom row another: per window
 * one LDM of the top-left pixel into the maxima's registers, the rest in LDMs of 3 to 8 words,
 * one STM, compare and branch (once per pair of windows when out_w is even):
 *   C = 16: 3 LDM + 12 maxima (24) + STM + 2 = 30 instructions per 16 bytes, 1.88 per byte (1.81);
 *   C = 12: 2 LDM + 9 maxima (18) + STM + 2 = 23 per 12 bytes, 1.92 (1.83);
 *   C = 24: 7 LDM + 18 maxima (36) + STM + 2 = 46 per 24 bytes, 1.92 (1.88).
 * Each runs the whole image: r0 = the input, r1 = the output, r2 = an mp_geom; in the loop r0 and
 * r1 are the window's top and bottom rows, r2 the output, r3 the output row's end, and the
 * geometry is on the stack for the 9 instructions between output rows. Naked, in assembly,
 * because LDM's register list must be ascending in register number, which only fixed registers
 * can promise. The registers they use beyond r0-r3 and r12 are saved (AAPCS). Every pointer is
 * word aligned (checked by the caller: LDM and STM fault on an unaligned address).
 */
typedef struct {
    int32_t skip;      /* from the end of a window row's top run to the next window row's top row */
    int32_t row;       /* input row, bytes */
    int32_t out_row;   /* output row, bytes (at least one window) */
    const int8_t *end; /* the output's end */
} mp_geom;

/* the arguments, read by the assembly from r0-r2 */
#define MP_IMAGE_ARGS                                                                                  \
    const int8_t *in __attribute__((unused)), int8_t *out __attribute__((unused)),                     \
        const mp_geom *geom __attribute__((unused))
#define MP_MAX(A, B, T) "ssub8 " T ", " A ", " B "\n\tsel " A ", " A ", " B "\n\t"
/* r3-r6 = skip, row, out_row, end, kept at [sp] .. [sp, #12] */
#define MP_PROLOGUE                                                                                    \
    "push {r4-r11, lr}\n\t"                                                                            \
    "ldm r2, {r3, r4, r5, r6}\n\t"                                                                     \
    "push {r3, r4, r5, r6}\n\t"                                                                        \
    "mov r2, r1\n\t"                                                                                   \
    "add r1, r0, r4\n\t"                                                                               \
    "add r3, r2, r5\n\t"
/* after a window: the row's end, else the image's end, else the next row */
#define MP_EPILOGUE                                                                                    \
    "cmp r2, r3\n\t"                                                                                   \
    "bne 1b\n\t"                                                                                       \
    "ldr r12, [sp, #12]\n\t"                                                                           \
    "cmp r2, r12\n\t"                                                                                  \
    "beq 3f\n\t"                                                                                       \
    "ldr r12, [sp]\n\t"                                                                                \
    "add r0, r0, r12\n\t"                                                                              \
    "ldr r12, [sp, #4]\n\t"                                                                            \
    "add r1, r0, r12\n\t"                                                                              \
    "ldr r12, [sp, #8]\n\t"                                                                            \
    "add r3, r2, r12\n\t"                                                                              \
    "b 1b\n\t"                                                                                         \
    "3:\n\t"                                                                                           \
    "add sp, sp, #16\n\t"                                                                              \
    "pop {r4-r11, pc}\n\t"

/* one window of each: its top row's LDMs and maxima, its bottom row's, the output's STM */
#define MP_BODY_C16                                                                                    \
    "ldm r0!, {r4-r11}\n\t" /* top left r4-r7, top right r8-r11 */                                     \
    MP_MAX("r4", "r8", "r12") MP_MAX("r5", "r9", "r12") MP_MAX("r6", "r10", "r12")                     \
    MP_MAX("r7", "r11", "r12")                                                                         \
    "ldm r1!, {r8-r11}\n\t" /* bottom left */                                                          \
    MP_MAX("r4", "r8", "r12") MP_MAX("r5", "r9", "r12") MP_MAX("r6", "r10", "r12")                     \
    MP_MAX("r7", "r11", "r12")                                                                         \
    "ldm r1!, {r8-r11}\n\t" /* bottom right */                                                         \
    MP_MAX("r4", "r8", "r12") MP_MAX("r5", "r9", "r12") MP_MAX("r6", "r10", "r12")                     \
    MP_MAX("r7", "r11", "r12")                                                                         \
    "stm r2!, {r4-r7}\n\t"
#define MP_BODY_C12                                                                                    \
    "ldm r0!, {r4-r9}\n\t" /* top left r4-r6, top right r7-r9 */                                       \
    MP_MAX("r4", "r7", "r12") MP_MAX("r5", "r8", "r12") MP_MAX("r6", "r9", "r12")                      \
    "ldm r1!, {r7-r12}\n\t" /* bottom left r7-r9, bottom right r10-r12 */                              \
    MP_MAX("r4", "r7", "lr") MP_MAX("r5", "r8", "lr") MP_MAX("r6", "r9", "lr")                         \
    MP_MAX("r4", "r10", "lr") MP_MAX("r5", "r11", "lr") MP_MAX("r6", "r12", "lr")                      \
    "stm r2!, {r4-r6}\n\t"
#define MP_BODY_C24                                                                                    \
    "ldm r0!, {r4-r9}\n\t"   /* top left */                                                            \
    "ldm r0!, {r10-r12}\n\t" /* top right, words 0-2 */                                                \
    MP_MAX("r4", "r10", "lr") MP_MAX("r5", "r11", "lr") MP_MAX("r6", "r12", "lr")                      \
    "ldm r0!, {r10-r12}\n\t" /* top right, words 3-5 */                                                \
    MP_MAX("r7", "r10", "lr") MP_MAX("r8", "r11", "lr") MP_MAX("r9", "r12", "lr")                      \
    "ldm r1!, {r10-r12}\n\t" /* bottom left */                                                         \
    MP_MAX("r4", "r10", "lr") MP_MAX("r5", "r11", "lr") MP_MAX("r6", "r12", "lr")                      \
    "ldm r1!, {r10-r12}\n\t"                                                                           \
    MP_MAX("r7", "r10", "lr") MP_MAX("r8", "r11", "lr") MP_MAX("r9", "r12", "lr")                      \
    "ldm r1!, {r10-r12}\n\t" /* bottom right */                                                        \
    MP_MAX("r4", "r10", "lr") MP_MAX("r5", "r11", "lr") MP_MAX("r6", "r12", "lr")                      \
    "ldm r1!, {r10-r12}\n\t"                                                                           \
    MP_MAX("r7", "r10", "lr") MP_MAX("r8", "r11", "lr") MP_MAX("r9", "r12", "lr")                      \
    "stm r2!, {r4-r9}\n\t"
/* NAME takes one window per pass, NAME##x2 two (for an even out_w: the row's end falls after a
 * pair), one compare and branch fewer per pair: 1.83, 1.81 and 1.88 per byte for C = 12, 16, 24
 * (vgg12-s1's first pool: 2.01 per byte with the call, 1.93 with pairs) */
#define MP_IMAGE_NARROW(NAME, BODY)                                                                    \
    __attribute__((naked, noinline)) static void NAME(MP_IMAGE_ARGS)                                   \
    {                                                                                                  \
        __asm__ volatile(MP_PROLOGUE "1:\n\t" BODY MP_EPILOGUE);                                       \
    }                                                                                                  \
    __attribute__((naked, noinline)) static void NAME##x2(MP_IMAGE_ARGS)                               \
    {                                                                                                  \
        __asm__ volatile(MP_PROLOGUE "1:\n\t" BODY BODY MP_EPILOGUE);                                  \
    }
MP_IMAGE_NARROW(mp_image_c16, MP_BODY_C16)
MP_IMAGE_NARROW(mp_image_c12, MP_BODY_C12)
MP_IMAGE_NARROW(mp_image_c24, MP_BODY_C24)

/*
 * The wider pixels (C = 32, 44, 48, 64, 128: vgg11-s5-co's third pool, vgg12-s1's third, the
 * baseline's four): too many words for the registers, so each window goes in chunks of 4 words
 * (16 channels; C = 44's last chunk 3 words), from 4 pointers, one per cell of the
 * window, that each chunk's LDM advances: per chunk 4 LDM, 12 maxima (24), one STM, 29
 * instructions per 16 bytes (1.81 per byte), no loop inside a window (unrolled per C, C an
 * immediate). The cells' order within a window does not matter (max is symmetric), which saves
 * pointer arithmetic: after a window the top-left pointer has reached the top-right cell and the
 * top-right pointer the next window, so two windows take turns, each adding 2C to one pointer
 * per row (2 adds per window), and the loop's compare and branch (3, the row's end on the stack)
 * runs once per 2 windows:
 *   C = 32: 4 chunks + 4 adds + 3 = 123 instructions per 64 bytes, 1.92 per byte;
 *   C = 44: 2 x (2 chunks + a 3-word chunk, 23) + 7 = 169 per 88, 1.92;
 *   C = 48: 1.89; C = 64: 1.87; C = 128: 1.84;
 * per output row 13 more. Registers: r0/r1 the top row's two pointers, r2/r3 the bottom row's,
 * r4-r7 the maxima, r8-r11 the loaded words, lr the SSUB8 scratch, r12 the output. out_w is even
 * (the caller checks), word alignment as for the kernels above.
 */
#define MP_MAXES4 MP_MAX("r4", "r8", "lr") MP_MAX("r5", "r9", "lr") MP_MAX("r6", "r10", "lr") MP_MAX("r7", "r11", "lr")
#define MP_MAXES3 MP_MAX("r4", "r8", "lr") MP_MAX("r5", "r9", "lr") MP_MAX("r6", "r10", "lr")
/* one chunk of N words: the maxima's list L, the loaded words' list M */
#define MP_CHUNK(P, Q, R, S, L, M, MAXES)                                                              \
    "ldm " P "!, {" L "}\n\t"                                                                          \
    "ldm " Q "!, {" M "}\n\t" MAXES "ldm " R "!, {" M "}\n\t" MAXES "ldm " S "!, {" M "}\n\t" MAXES     \
    "stm r12!, {" L "}\n\t"
#define MP_C4(P, Q, R, S) MP_CHUNK(P, Q, R, S, "r4-r7", "r8-r11", MP_MAXES4)
#define MP_C3(P, Q, R, S) MP_CHUNK(P, Q, R, S, "r4-r6", "r8-r10", MP_MAXES3)
/* windows A (r0, r1, r2, r3) and B (the same registers, the other cell of each pair first) */
#define MP_WA(CHUNKS) CHUNKS("r0", "r1", "r2", "r3")
#define MP_WB(CHUNKS) CHUNKS("r1", "r0", "r3", "r2")
#define MP_W2C4(P, Q, R, S) MP_C4(P, Q, R, S) MP_C4(P, Q, R, S)
#define MP_W4C4(P, Q, R, S) MP_W2C4(P, Q, R, S) MP_W2C4(P, Q, R, S)
#define MP_W8C4(P, Q, R, S) MP_W4C4(P, Q, R, S) MP_W4C4(P, Q, R, S)
#define MP_W32(P, Q, R, S) MP_W2C4(P, Q, R, S)
#define MP_W44(P, Q, R, S) MP_W2C4(P, Q, R, S) MP_C3(P, Q, R, S)
#define MP_W48(P, Q, R, S) MP_W2C4(P, Q, R, S) MP_C4(P, Q, R, S)
#define MP_W64(P, Q, R, S) MP_W4C4(P, Q, R, S)
#define MP_W128(P, Q, R, S) MP_W8C4(P, Q, R, S)
/* C and 2C as strings (immediates of ADD), WINDOW the chunks of one window. The geometry on the
 * stack: [sp] skip, +4 row, +8 out_row, +12 the output's end, +16 the output row's end. */
#define MP_IMAGE_WIDE(NAME, C, C2, WINDOW)                                                             \
    __attribute__((naked, noinline)) static void NAME(MP_IMAGE_ARGS)                                   \
    {                                                                                                  \
        __asm__ volatile("push {r4-r11, lr}\n\t"                                                       \
                         "ldm r2, {r3, r4, r5, r6}\n\t"                                                \
                         "add r7, r1, r5\n\t"                                                          \
                         "push {r3, r4, r5, r6, r7}\n\t"                                               \
                         "mov r12, r1\n\t"                                                             \
                         "add r2, r0, r4\n\t"                                                          \
                         "add r1, r0, #" C "\n\t"                                                      \
                         "add r3, r2, #" C "\n\t"                                                      \
                         "1:\n\t" MP_WA(WINDOW)                                                        \
                         "add r0, r0, #" C2 "\n\t"                                                     \
                         "add r2, r2, #" C2 "\n\t" MP_WB(WINDOW)                                       \
                         "add r1, r1, #" C2 "\n\t"                                                     \
                         "add r3, r3, #" C2 "\n\t"                                                     \
                         "ldr lr, [sp, #16]\n\t"                                                       \
                         "cmp r12, lr\n\t"                                                             \
                         "bne 1b\n\t"                                                                  \
                         "ldr lr, [sp, #12]\n\t"                                                       \
                         "cmp r12, lr\n\t"                                                             \
                         "beq 3f\n\t"                                                                  \
                         "ldr lr, [sp, #8]\n\t"                                                        \
                         "add lr, r12, lr\n\t"                                                         \
                         "str lr, [sp, #16]\n\t"                                                       \
                         "ldr lr, [sp]\n\t"                                                            \
                         "add r0, r0, lr\n\t"                                                          \
                         "add r1, r0, #" C "\n\t"                                                      \
                         "ldr lr, [sp, #4]\n\t"                                                        \
                         "add r2, r0, lr\n\t"                                                          \
                         "add r3, r2, #" C "\n\t"                                                      \
                         "b 1b\n\t"                                                                    \
                         "3:\n\t"                                                                      \
                         "add sp, sp, #20\n\t"                                                         \
                         "pop {r4-r11, pc}\n\t");                                                      \
    }
MP_IMAGE_WIDE(mp_image_c32, "32", "64", MP_W32)
MP_IMAGE_WIDE(mp_image_c44, "44", "88", MP_W44)
MP_IMAGE_WIDE(mp_image_c48, "48", "96", MP_W48)
MP_IMAGE_WIDE(mp_image_c64, "64", "128", MP_W64)
MP_IMAGE_WIDE(mp_image_c128, "128", "256", MP_W128)

/* Groups of 3 words of one output pixel of a whole 2x2 window, from 4 pointers (top left, top
 * right, bottom left, bottom right; word aligned) that each LDM advances: 4 LDM, 9 maxima, STM,
 * compare and branch, 25 instructions per 12 bytes (2.08 per byte). d_end - d is a positive
 * multiple of 12. The 3-word lists are fixed registers (an LDM list must ascend). */
static inline void mp_window_groups3(const int8_t **tl, const int8_t **tr, const int8_t **bl, const int8_t **br,
                                     int8_t **d, const int8_t *d_end)
{
    register int32_t a0 __asm__("r4");
    register int32_t a1 __asm__("r5");
    register int32_t a2 __asm__("r6");
    register int32_t b0 __asm__("r8");
    register int32_t b1 __asm__("r9");
    register int32_t b2 __asm__("r10");
    const int8_t *p0 = *tl, *p1 = *tr, *p2 = *bl, *p3 = *br;
    int8_t *o = *d;
    int32_t x;
    __asm__ volatile("1:\n\t"
                     "ldm %[p0]!, {r4, r5, r6}\n\t"
                     "ldm %[p1]!, {r8, r9, r10}\n\t"
                     MP_MAX("r4", "r8", "%[x]") MP_MAX("r5", "r9", "%[x]") MP_MAX("r6", "r10", "%[x]")
                     "ldm %[p2]!, {r8, r9, r10}\n\t"
                     MP_MAX("r4", "r8", "%[x]") MP_MAX("r5", "r9", "%[x]") MP_MAX("r6", "r10", "%[x]")
                     "ldm %[p3]!, {r8, r9, r10}\n\t"
                     MP_MAX("r4", "r8", "%[x]") MP_MAX("r5", "r9", "%[x]") MP_MAX("r6", "r10", "%[x]")
                     "stm %[o]!, {r4, r5, r6}\n\t"
                     "cmp %[o], %[d_end]\n\t"
                     "bne 1b\n\t"
                     : [p0] "+&r"(p0), [p1] "+&r"(p1), [p2] "+&r"(p2), [p3] "+&r"(p3), [o] "+&r"(o), [x] "=&r"(x),
                       "=&r"(a0), "=&r"(a1), "=&r"(a2), "=&r"(b0), "=&r"(b1), "=&r"(b2)
                     : [d_end] "r"(d_end)
                     : "cc", "memory");
    *tl = p0;
    *tr = p1;
    *bl = p2;
    *br = p3;
    *d = o;
}

/* The whole words of one output pixel of a whole 2x2 window, for any other channel count c >= 4:
 * per word 4 LDR (register offsets c, row, row + c from the top-left pointer), 3 maxima, a STR,
 * compare and branch, 13 instructions per 4 bytes. d_end - d is a positive multiple of 4. */
static inline void mp_window_words(const int8_t *s, int8_t *d, const int8_t *d_end, int32_t c, int32_t row)
{
    const int32_t rc = row + c;
    int32_t t, a, b, x;
    __asm__ volatile("1:\n\t"
                     "ldr %[a], [%[s], %[rc]]\n\t"
                     "ldr %[b], [%[s], %[row]]\n\t"
                     "ssub8 %[x], %[b], %[a]\n\t"
                     "sel %[b], %[b], %[a]\n\t"
                     "ldr %[a], [%[s], %[c]]\n\t"
                     "ldr %[t], [%[s]], #4\n\t"
                     "ssub8 %[x], %[t], %[a]\n\t"
                     "sel %[t], %[t], %[a]\n\t"
                     "ssub8 %[x], %[t], %[b]\n\t"
                     "sel %[t], %[t], %[b]\n\t"
                     "str %[t], [%[d]], #4\n\t"
                     "cmp %[d], %[d_end]\n\t"
                     "bne 1b\n\t"
                     : [s] "+&r"(s), [d] "+&r"(d), [t] "=&r"(t), [a] "=&r"(a), [b] "=&r"(b), [x] "=&r"(x)
                     : [rc] "r"(rc), [row] "r"(row), [c] "r"(c), [d_end] "r"(d_end)
                     : "cc", "memory");
}

/* One output pixel of a whole 2x2 window at src (top left) of c >= 4 channels: a word at a time,
 * and when c is not a multiple of 4 the last word is the pixel's last 4 bytes, overlapping the
 * previous word (the same maxima written again): no byte loop, nothing read or written outside
 * the window's pixels. */
static inline void mp_pixel_words(const int8_t *src, size_t c, size_t row, int8_t *o, int clamp, int32_t lo4,
                                  int32_t hi4)
{
    const int8_t *s = src;
    int8_t *d = o;
    int8_t *const d_last = o + c - 4;
    for (;;) {
        int32_t m = max_s8x4(max_s8x4(ld_s8x4(s), ld_s8x4(s + c)), max_s8x4(ld_s8x4(s + row), ld_s8x4(s + row + c)));
        if (clamp) {
            m = clamp_s8x4(m, lo4, hi4);
        }
        st_s8x4(d, m);
        if (d == d_last) {
            return;
        }
        d += 4;
        s += 4;
        if (d > d_last) { /* c % 4 != 0: back to the pixel's last word */
            s -= d - d_last;
            d = d_last;
        }
    }
}

/* One output row of whole 2x2 windows, c >= 4 channels, full activation range: each window's
 * whole words, then when c % 4 != 0 its last 4 bytes, overlapping the last whole word. Out of
 * line (as mp_row_groups3), so that one loop's registers do not crowd the other's. */
__attribute__((noinline)) static void mp_row_words(const int8_t *s, int8_t *d, int32_t out_w, int32_t c, int32_t row)
{
    const size_t cc = (size_t)c, whole = (size_t)(c & ~3);
    for (int32_t ox = 0; ox < out_w; ox++, s += 2 * cc, d += cc) {
        mp_window_words(s, d, d + whole, c, row);
        if (whole != cc) {
            const int8_t *const l = s + cc - 4;
            st_s8x4(d + cc - 4, max_s8x4(max_s8x4(ld_s8x4(l), ld_s8x4(l + cc)),
                                         max_s8x4(ld_s8x4(l + (size_t)row), ld_s8x4(l + (size_t)row + cc))));
        }
    }
}

/* The same for c % 4 == 0, c >= 12 and word-aligned data: groups of 3 words by LDM, then the
 * remaining 1-2 words by LDR. */
__attribute__((noinline)) static void mp_row_groups3(const int8_t *s, int8_t *d, int32_t out_w, int32_t c,
                                                     int32_t row)
{
    const size_t cc = (size_t)c, groups3 = (size_t)(c / 12) * 12u;
    for (int32_t ox = 0; ox < out_w; ox++, s += 2 * cc, d += cc) {
        const int8_t *tl = s, *tr = s + cc, *bl = s + row, *br = s + row + cc;
        int8_t *dd = d;
        mp_window_groups3(&tl, &tr, &bl, &br, &dd, d + groups3);
        if (groups3 != cc) {
            mp_window_words(tl, dd, d + cc, c, row);
        }
    }
}

/*
 * The reference starts each window from -128, the smallest int8, so starting from its first
 * in-image cell gives the same maximum; a window with no cell in the image (padding at least the
 * filter size: never with SAME padding, whose padding is below the filter size) is -128 clamped
 * to the activation range, as in the reference. The activation clamp (a lane maximum with
 * act_min, a minimum with act_max) is skipped when the range is the whole int8 range, as after a
 * ReLU convolution.
 */
void fv_max_pool_opt(const fv_pool_params *p, const int8_t *in, int8_t *out)
{
    const int32_t c = p->c;
    const size_t cc = (size_t)c;
    const size_t row = (size_t)p->in_w * cc;
    const int full = p->act_min == -128 && p->act_max == 127;
    const int32_t lo4 = (int32_t)((uint32_t)(uint8_t)p->act_min * 0x01010101u);
    const int32_t hi4 = (int32_t)((uint32_t)(uint8_t)p->act_max * 0x01010101u);
    int32_t oy, ox;

    if (p->act_min > p->act_max) { /* the reference's clamp order then matters: its own */
        fv_max_pool_ref(p, in, out);
        return;
    }
    if (p->f_h == 2 && p->f_w == 2 && p->stride_h == 2 && p->stride_w == 2 && p->pad_top == 0 && p->pad_left == 0 &&
        2 * p->out_h <= p->in_h && 2 * p->out_w <= p->in_w && p->out_w > 0 && c >= 4) {
        /* every window whole (the zoo's 2x2 pooling of an even image): no clipping */
        void (*image_kernel)(const int8_t *, int8_t *, const mp_geom *) = NULL;
        /* LDM and STM fault on an unaligned address: c % 4 == 0 keeps every pixel aligned */
        const int aligned = (((uintptr_t)in | (uintptr_t)out) & 3u) == 0u && (c & 3) == 0;
        if (full && aligned && p->out_h > 0) {
            image_kernel = c == 16 ? mp_image_c16 : c == 12 ? mp_image_c12 : c == 24 ? mp_image_c24 : NULL;
            if ((p->out_w & 1) == 0) { /* the kernels that take windows in pairs */
                image_kernel = c == 16    ? mp_image_c16x2
                               : c == 12  ? mp_image_c12x2
                               : c == 24  ? mp_image_c24x2
                               : c == 32  ? mp_image_c32
                               : c == 44  ? mp_image_c44
                               : c == 48  ? mp_image_c48
                               : c == 64  ? mp_image_c64
                               : c == 128 ? mp_image_c128
                                          : image_kernel;
            }
        }
        if (image_kernel != NULL) {
            const int32_t out_row = p->out_w * c;
            const mp_geom g = {2 * (int32_t)row - 2 * out_row, (int32_t)row, out_row,
                               out + (size_t)p->out_h * (size_t)out_row};
            image_kernel(in, out, &g);
            return;
        }
        for (oy = 0; oy < p->out_h; oy++) {
            const int8_t *const top = in + (size_t)(2 * oy) * row;
            int8_t *const o = out + (size_t)oy * (size_t)p->out_w * cc;
            if (!full) {
                for (ox = 0; ox < p->out_w; ox++) {
                    mp_pixel_words(top + (size_t)(2 * ox) * cc, cc, row, o + (size_t)ox * cc, 1, lo4, hi4);
                }
                continue;
            }
            if (aligned && c >= 12) {
                mp_row_groups3(top, o, p->out_w, c, (int32_t)row);
            } else {
                mp_row_words(top, o, p->out_w, c, (int32_t)row);
            }
        }
        return;
    }
    for (oy = 0; oy < p->out_h; oy++) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int32_t yb = y0 < 0 ? 0 : y0;
        const int32_t ye = y0 + p->f_h < p->in_h ? y0 + p->f_h : p->in_h;
        for (ox = 0; ox < p->out_w; ox++) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            const int32_t xb = x0 < 0 ? 0 : x0;
            const int32_t xe = x0 + p->f_w < p->in_w ? x0 + p->f_w : p->in_w;
            const int8_t *src = in + (size_t)yb * row + (size_t)xb * cc;
            int8_t *o = out + ((size_t)oy * (size_t)p->out_w + (size_t)ox) * cc;
            const int8_t *const o_end = o + (c & ~3);
            if (ye <= yb || xe <= xb) { /* no cell in the image: the reference's -128, clamped */
                memset(o, (int)clamp_i32(-128, p->act_min, p->act_max), cc);
                continue;
            }
            for (int32_t ch = c & ~3; ch < c; ch++) { /* the last c % 4 channels, byte by byte */
                int32_t m = -128;
                for (int32_t y = yb; y < ye; y++) {
                    for (int32_t x = xb; x < xe; x++) {
                        const int32_t v = src[(size_t)(y - yb) * row + (size_t)(x - xb) * cc + (size_t)ch];
                        m = v > m ? v : m;
                    }
                }
                o[ch] = (int8_t)clamp_i32(m, p->act_min, p->act_max);
            }
            for (; o < o_end; o += 4, src += 4) {
                int32_t m = ld_s8x4(src);
                for (int32_t y = yb; y < ye; y++) {
                    const int8_t *s = src + (size_t)(y - yb) * row;
                    for (int32_t x = xb; x < xe; x++) {
                        m = max_s8x4(m, ld_s8x4(s));
                        s += cc;
                    }
                }
                if (!full) {
                    m = clamp_s8x4(m, lo4, hi4);
                }
                st_s8x4(o, m);
            }
        }
    }
}

/* ---- ADD -------------------------------------------------------------------------------------- */

/*
 * The reference, per element: a = mbqm((x1 + off1) << 20, m1, s1), b = mbqm((x2 + off2) << 20,
 * m2, s2), out = clamp(mbqm(a + b, mo, so) + zp). Each input byte takes one of 256 values, so a
 * and b are tabulated once per call (256 + 256 evaluations of the reference's own arithmetic) and
 * each element costs two table loads, an add and the output's requantisation. TFLite's prepare
 * gives the input of the larger scale the real multiplier 1/2 (m = 2^30, shift 0): its a is
 * exactly (x + off) << 19, no table, folded into the add as a shifted operand.
 *
 * The output's requantisation, exactly (s = a + b, |s| < 2^30, mo >= 0, e = -so in [1, 22]):
 * srdhm(s, mo) = floor((2s mo + 2^31) / 2^32) (fv_kernels_dsp.c's rq_byte), and the rounding
 * shift by e adds 2^(e-1) - (t < 0), so with R = (2 zp + 1) 2^(e-1) (zp folded in),
 *     v = (smmlar(2s, mo, R) - (s < 0)) >> e,   out = ssat8(v),
 * taking the sign from s instead of t = srdhm(s, mo): t < 0 implies s < 0 (mo >= 0), and when
 * s < 0 but t = 0, R - 1 and R have the same quotient by 2^e (zp; e >= 1). The tables hold 2a
 * and 2b (the linear input: (x + off) << 20, the shifted operand), so the loop adds 2s directly:
 *
 *     LDRSB x1; LDRSB x2; LDR 2b (table); ADD 2s = 2b + (x1 << 20); SMMLAR; SUB (s < 0);
 *     SSAT 8 with ASR #e; STRB                 8 per byte, + 0.25 (compare, branch per 8)
 *
 * (SSAT shifts only by an immediate: one loop per e in [ADD_E_MIN, ADD_E_MAX]; other shifts take
 * a loop with a separate ASR, 9.5 per byte.)
 *
 * Why not 2 per byte: the loads of the two inputs and the store are 3 instructions per byte
 * already (word loads only move the cost to byte extraction, word stores to byte packing, one
 * instruction per byte either way); the second input's scaling is a rounded product, not
 * linear, so it takes a table load; and the output's rounding depends on the whole 60-bit
 * product of a 29-bit sum and a 31-bit multiplier, which no SIMD (16-bit) instruction forms:
 * one SMMLAR per element, plus the add, the sign's correction and the shift-and-saturate.
 * That is 8 per byte, at least, for any bit-exact ADD on this core that keeps the inputs'
 * rounding; a 65536-entry table of outputs (one load per byte) would take half the F411's RAM
 * per layer, and building it per call about 16 times the zoo's largest ADD.
 *
 * The tables live in the column scratch (FV_DSP_ADD_TABLE_WORDS words, reserved by
 * tools/dsp_limits.py for every model with an ADD); a build whose scratch is smaller, or an ADD
 * of fewer than ADD_MIN_SIZE elements (the tables' ~3,000 instructions would not be repaid),
 * runs the reference.
 */
#if FV_DSP_PAD_K >= FV_DSP_ADD_TABLE_WORDS /* else fv_add_opt is the reference */
#define ADD_MIN_SIZE 64
#define ADD_LINEAR_MULTIPLIER (1 << 30) /* real multiplier 1/2 with shift 0 */
#define ADD_LEFT_SHIFT 20               /* TFLite's; the loop's shifted operand is an immediate */
#define ADD_SUM_LIMIT (1 << 30)

static inline int32_t smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* table[v] = 2 * scaled (v + offset) + fold for v in [-128, 127] (table points at v = 0); returns
 * the largest |scaled value|. In add_scale's exact form when it applies, in 8 instructions per
 * entry: 2x = (v + offset) << (left_shift + 1) grows by a constant step, and the scaling is
 * non-decreasing in x (multiplier >= 0), so the largest |value| is at one end. */
static int32_t add_table(int32_t *table, int32_t offset, int32_t left_shift, int32_t multiplier, int32_t shift,
                         int32_t fold)
{
    int32_t most = 0;
    if (shift <= -1 && shift >= -22 && multiplier >= 0) {
        const int32_t e = -shift, half = (int32_t)1 << (e - 1);
        const uint32_t step = 2u << left_shift;
        /* |2x| <= 255 * 2^23 < 2^31 for left_shift <= 22; the step past v = 127 wraps unused */
        uint32_t x2 = (uint32_t)(offset - 128) << (left_shift + 1);
        int32_t first = 0, last = 0;
        for (int32_t v = -128; v < 128; v++) {
            const int32_t t = smmulr((int32_t)x2, multiplier);
            last = (t + half - (int32_t)((uint32_t)t >> 31)) >> e;
            table[v] = 2 * last + fold;
            first = v == -128 ? last : first;
            x2 += step;
        }
        first = first < 0 ? -first : first;
        last = last < 0 ? -last : last;
        return first > last ? first : last;
    }
    for (int32_t v = -128; v < 128; v++) {
        const int32_t a = fv_mbqm((v + offset) * ((int32_t)1 << left_shift), multiplier, shift);
        const int32_t abs_a = a < 0 ? -a : a; /* |a| < 2^30: |x| < 2^30 and a multiplier below 1 */
        table[v] = 2 * a + fold;
        most = abs_a > most ? abs_a : most;
    }
    return most;
}

/* One element of the linear loops up to the shift: x = smmlar(s2, m, r) - (s2 < 0), s2 =
 * t2[in2[i]] + (in1[i] << 20) (the loops below then shift, saturate and store it) */
#define ADD_LIN_HEAD                                                                                   \
    "ldrsb %[x], [%[a]], #1\n\t"                                                                       \
    "ldrsb %[y], [%[b]], #1\n\t"                                                                       \
    "ldr %[y], [%[t], %[y], lsl #2]\n\t"                                                               \
    "add %[y], %[y], %[x], lsl #20\n\t"                                                                \
    "smmlar %[x], %[y], %[m], %[r]\n\t"                                                                \
    "sub %[x], %[x], %[y], lsr #31\n\t"

/* out[i] = ssat8((smmlar(s2, m, r) - (s2 < 0)) >> e), s2 = t2[in2[i]] + (in1[i] << 20), for n a
 * positive multiple of 4 */
static void add_loop_linear(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t n, const int32_t *t2, int32_t m,
                            int32_t r, int32_t e)
{
    const int8_t *const end = out + n;
    int32_t x, y;
#define ADD_LIN_STEP                                                                                   \
    ADD_LIN_HEAD                                                                                       \
    "asr %[x], %[x], %[e]\n\t"                                                                         \
    "ssat %[x], #8, %[x]\n\t"                                                                          \
    "strb %[x], [%[o]], #1\n\t"
    __asm__ volatile("1:\n\t" ADD_LIN_STEP ADD_LIN_STEP ADD_LIN_STEP ADD_LIN_STEP "cmp %[o], %[end]\n\t"
                     "bne 1b\n\t"
                     : [a] "+&r"(in1), [b] "+&r"(in2), [o] "+&r"(out), [x] "=&r"(x), [y] "=&r"(y)
                     : [t] "r"(t2), [m] "r"(m), [r] "r"(r), [e] "r"(e), [end] "r"(end)
                     : "cc", "memory");
#undef ADD_LIN_STEP
}

/* The same with the shift as SSAT's immediate, ASR folded in (8 instructions per byte), and 8
 * elements per iteration (0.25 per byte for the compare and branch); n a positive multiple of 8.
 * One copy per output shift e in [ADD_E_MIN, ADD_E_MAX] (about 300 bytes of flash each): TFLite's
 * e is about 18 - log2(max(s1, s2) / s_out), 17 and 18 in the zoo; other shifts take
 * add_loop_linear. */
#define ADD_E_MIN 14
#define ADD_E_MAX 22
#define ADD_LIN_STEP_E(E)                                                                              \
    ADD_LIN_HEAD                                                                                       \
    "ssat %[x], #8, %[x], asr #" #E "\n\t"                                                             \
    "strb %[x], [%[o]], #1\n\t"
#define ADD_LOOP_LINEAR_E(E)                                                                           \
    static void add_loop_linear_##E(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t n,       \
                                    const int32_t *t2, int32_t m, int32_t r)                           \
    {                                                                                                  \
        const int8_t *const end = out + n;                                                             \
        int32_t x, y;                                                                                  \
        __asm__ volatile("1:\n\t" ADD_LIN_STEP_E(E) ADD_LIN_STEP_E(E) ADD_LIN_STEP_E(E) ADD_LIN_STEP_E(E) \
                             ADD_LIN_STEP_E(E) ADD_LIN_STEP_E(E) ADD_LIN_STEP_E(E) ADD_LIN_STEP_E(E)     \
                         "cmp %[o], %[end]\n\t"                                                        \
                         "bne 1b\n\t"                                                                  \
                         : [a] "+&r"(in1), [b] "+&r"(in2), [o] "+&r"(out), [x] "=&r"(x), [y] "=&r"(y)  \
                         : [t] "r"(t2), [m] "r"(m), [r] "r"(r), [end] "r"(end)                         \
                         : "cc", "memory");                                                            \
    }
ADD_LOOP_LINEAR_E(14)
ADD_LOOP_LINEAR_E(15)
ADD_LOOP_LINEAR_E(16)
ADD_LOOP_LINEAR_E(17)
ADD_LOOP_LINEAR_E(18)
ADD_LOOP_LINEAR_E(19)
ADD_LOOP_LINEAR_E(20)
ADD_LOOP_LINEAR_E(21)
ADD_LOOP_LINEAR_E(22)
#undef ADD_LOOP_LINEAR_E
#undef ADD_LIN_STEP_E
#undef ADD_LIN_HEAD

typedef void (*add_loop_e)(const int8_t *, const int8_t *, int8_t *, int32_t, const int32_t *, int32_t, int32_t);
static const add_loop_e add_loop_linear_by_e[ADD_E_MAX - ADD_E_MIN + 1] = {
    add_loop_linear_14, add_loop_linear_15, add_loop_linear_16, add_loop_linear_17, add_loop_linear_18,
    add_loop_linear_19, add_loop_linear_20, add_loop_linear_21, add_loop_linear_22};

/* the same with both inputs from tables: s2 = t1[in1[i]] + t2[in2[i]] */
static void add_loop_tables(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t n, const int32_t *t1,
                            const int32_t *t2, int32_t m, int32_t r, int32_t e)
{
    const int8_t *const end = out + n;
    int32_t x, y;
#define ADD_TAB_STEP                                                                                   \
    "ldrsb %[x], [%[a]], #1\n\t"                                                                       \
    "ldrsb %[y], [%[b]], #1\n\t"                                                                       \
    "ldr %[x], [%[t1], %[x], lsl #2]\n\t"                                                              \
    "ldr %[y], [%[t2], %[y], lsl #2]\n\t"                                                              \
    "add %[y], %[y], %[x]\n\t"                                                                         \
    "smmlar %[x], %[y], %[m], %[r]\n\t"                                                                \
    "sub %[x], %[x], %[y], lsr #31\n\t"                                                                \
    "asr %[x], %[x], %[e]\n\t"                                                                         \
    "ssat %[x], #8, %[x]\n\t"                                                                          \
    "strb %[x], [%[o]], #1\n\t"
    __asm__ volatile("1:\n\t" ADD_TAB_STEP ADD_TAB_STEP ADD_TAB_STEP ADD_TAB_STEP "cmp %[o], %[end]\n\t"
                     "bne 1b\n\t"
                     : [a] "+&r"(in1), [b] "+&r"(in2), [o] "+&r"(out), [x] "=&r"(x), [y] "=&r"(y)
                     : [t1] "r"(t1), [t2] "r"(t2), [m] "r"(m), [r] "r"(r), [e] "r"(e), [end] "r"(end)
                     : "cc", "memory");
#undef ADD_TAB_STEP
}

static inline int add_is_linear(int32_t multiplier, int32_t shift, int32_t left_shift)
{
    return multiplier == ADD_LINEAR_MULTIPLIER && shift == 0 && left_shift == ADD_LEFT_SHIFT;
}

#endif

void fv_add_opt(const fv_add_params *p, const int8_t *in1, const int8_t *in2, int8_t *out)
{
#if FV_DSP_PAD_K >= FV_DSP_ADD_TABLE_WORDS
    int32_t *const t1 = fv_dsp_scratch + 128; /* t1[v] for v in [-128, 127] */
    int32_t *const t2 = fv_dsp_scratch + 384;
    const int32_t n = p->size;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    const int32_t e = -p->out_shift;
    /* the input whose scaling is linear, if any, goes first (the sum is the same either way) */
    const int swap = !add_is_linear(p->in1_multiplier, p->in1_shift, p->left_shift) &&
                     add_is_linear(p->in2_multiplier, p->in2_shift, p->left_shift);
    const int8_t *const x1 = swap ? in2 : in1;
    const int8_t *const x2 = swap ? in1 : in2;
    const int32_t off1 = swap ? p->in2_offset : p->in1_offset, off2 = swap ? p->in1_offset : p->in2_offset;
    const int32_t m1 = swap ? p->in2_multiplier : p->in1_multiplier, m2 = swap ? p->in1_multiplier : p->in2_multiplier;
    const int32_t s1 = swap ? p->in2_shift : p->in1_shift, s2 = swap ? p->in1_shift : p->in2_shift;
    const int linear = add_is_linear(m1, s1, p->left_shift);
    int32_t most1, most2, i = 0;

    FV_ASSERT(p->left_shift >= 0 && p->left_shift <= 22);
    /* the reference's clamp order matters when the range is empty; an input multiplier above 1
     * (shift > 0; TFLite's are at most 1/2) could take 2a outside int32 */
    if (n < ADD_MIN_SIZE || act_min > act_max || s1 > 0 || s2 > 0) {
        fv_add_ref(p, in1, in2, out);
        return;
    }
    if (linear) {
        /* 2a = (x1 + off1) << 20: off1's part folded into the other table, x1's in the loop */
        most1 = 255 << (ADD_LEFT_SHIFT - 1);
        most2 = add_table(t2, off2, p->left_shift, m2, s2, (int32_t)((uint32_t)off1 << ADD_LEFT_SHIFT));
    } else {
        most1 = add_table(t1, off1, p->left_shift, m1, s1, 0);
        most2 = add_table(t2, off2, p->left_shift, m2, s2, 0);
    }
    if (e >= 1 && e <= 22 && p->out_multiplier >= 0 && most1 + most2 < ADD_SUM_LIMIT && p->output_offset >= -128 &&
        p->output_offset <= 127) {
        const int32_t r = (int32_t)((uint32_t)(2 * p->output_offset + 1) << (e - 1)); /* |zp 2^e| <= 2^29 */
        const int32_t n4 = n & ~3;
        if (linear) {
            int32_t done = n4;
            if (e >= ADD_E_MIN && e <= ADD_E_MAX && (n & ~7) > 0) {
                done = n & ~7;
                add_loop_linear_by_e[e - ADD_E_MIN](x1, x2, out, done, t2, p->out_multiplier, r);
            } else {
                add_loop_linear(x1, x2, out, n4, t2, p->out_multiplier, r, e);
            }
            for (i = done; i < n; i++) {
                const int32_t s2x = t2[x2[i]] + (int32_t)((uint32_t)x1[i] << ADD_LEFT_SHIFT);
                const int32_t v = (smmulr(s2x, p->out_multiplier) + r - (int32_t)((uint32_t)s2x >> 31)) >> e;
                out[i] = (int8_t)clamp_i32(v, -128, 127);
            }
        } else {
            add_loop_tables(x1, x2, out, n4, t1, t2, p->out_multiplier, r, e);
            for (i = n4; i < n; i++) {
                const int32_t s2x = t1[x1[i]] + t2[x2[i]];
                const int32_t v = (smmulr(s2x, p->out_multiplier) + r - (int32_t)((uint32_t)s2x >> 31)) >> e;
                out[i] = (int8_t)clamp_i32(v, -128, 127);
            }
        }
        if (act_min > -128 || act_max < 127) { /* clamp(ssat8(v)) = clamp(v): the range is inside int8 */
            const int32_t lo4 = (int32_t)((uint32_t)(uint8_t)act_min * 0x01010101u);
            const int32_t hi4 = (int32_t)((uint32_t)(uint8_t)act_max * 0x01010101u);
            for (i = 0; i + 4 <= n; i += 4) {
                st_s8x4(out + i, clamp_s8x4(ld_s8x4(out + i), lo4, hi4));
            }
            for (; i < n; i++) {
                out[i] = (int8_t)clamp_i32(out[i], act_min, act_max);
            }
        }
        return;
    }
    /* outside the fast requantisation's range: the tables, then the reference's fv_mbqm */
    for (i = 0; i < n; i++) {
        const int32_t sa = linear ? (x1[i] + off1) * ((int32_t)1 << (ADD_LEFT_SHIFT - 1)) : t1[x1[i]] / 2;
        const int32_t sb = (t2[x2[i]] - (linear ? (int32_t)((uint32_t)off1 << ADD_LEFT_SHIFT) : 0)) / 2;
        const int32_t raw = fv_mbqm(sa + sb, p->out_multiplier, p->out_shift) + p->output_offset;
        out[i] = (int8_t)clamp_i32(raw, act_min, act_max);
    }
#else
    fv_add_ref(p, in1, in2, out);
#endif
}
