/*
 * The bench build (VARIANT=bench): no protocol, a report in plain text on the link USART.
 * It runs the image's model on one fixed pseudo-random image, first with the reference kernels,
 * then with the optimised ones, and prints per layer the SysTick ticks it took:
 *
 *   bench model <id> layers <n> macc <macc> clock <hz> dwt <0|1>
 *   overhead <ticks>                       fv_run with no layers: input quantisation, output copy
 *   fused <pairs>                          the (convolution, depthwise) pairs the optimised runner
 *                                          fused at prepare (fv_runner.h, to_planes)
 *   fused_pool <pairs>                     the (convolution, max pool) pairs it fused (to_pool)
 *   layer <ref|opt> <k> <kind> <macc> <ticks>
 *   total <ref|opt> <ticks> out <10 bytes, hex>
 *   done
 *
 * Under QEMU with `-icount shift=0` a tick is 1/0.168 instructions (SysTick at the 168 MHz model
 * clock, 1 ns of virtual time per instruction), so the counts are instruction counts, the same
 * on every run (firmware/tools/bench_firmware.py turns them into instructions per MAC). On a
 * real board the same image reports cycles.
 */
#include <stdint.h>
#include <string.h>

#include "fv_arena.h"
#include "fv_models.h"
#include "fv_port.h"
#include "fv_runner.h"
#include "port.h"

static int8_t arena[FV_ARENA_BYTES] __attribute__((aligned(16)));
static uint8_t pixels[32u * 32u * 3u];

static void put_str(const char *s)
{
    fv_port_write((const uint8_t *)s, (uint32_t)strlen(s));
}

static void put_u64(uint64_t v)
{
    char buf[21];
    uint32_t i = sizeof buf;
    buf[--i] = '\0';
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u && i > 0u);
    put_str(buf + i);
}

/* the pairs a runner mask (to_planes, to_pool: one bit a fused producer) holds */
static uint32_t set_bits(uint64_t mask)
{
    uint32_t n = 0u;
    for (; mask != 0u; mask &= mask - 1u) { /* clears the lowest set bit */
        ++n;
    }
    return n;
}

static void put_hex8(uint8_t b)
{
    static const char digits[] = "0123456789abcdef";
    char s[3] = {digits[b >> 4], digits[b & 0xFu], '\0'};
    put_str(s);
}

typedef struct {
    const char *variant;
    uint64_t last;
} bench_ctx;

static void on_layer(uint32_t k, const fv_layer *layer, void *ctx_)
{
    bench_ctx *ctx = (bench_ctx *)ctx_;
    const uint64_t now = fv_port_ticks();
    const uint64_t took = now - ctx->last;
    put_str("layer ");
    put_str(ctx->variant);
    put_str(" ");
    put_u64(k);
    put_str(" ");
    put_u64((uint64_t)layer->kind);
    put_str(" ");
    put_u64(layer->macc);
    put_str(" ");
    put_u64(took);
    put_str("\n");
    ctx->last = fv_port_ticks(); /* the printing is not the layer's */
}

int main(void)
{
    const fv_model *m = fv_models[0];
    int8_t out[2][16];
    uint32_t state = 0x12345678u;
    fv_port_init();
    for (uint32_t i = 0; i < sizeof pixels; ++i) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        pixels[i] = (uint8_t)(state >> 24);
    }
    put_str("bench model ");
    put_str(m->id);
    put_str(" layers ");
    put_u64(m->n_layers);
    put_str(" macc ");
    put_u64(m->macc);
    put_str(" clock ");
    put_u64(fv_port_clock_hz());
    put_str(" dwt ");
    put_u64((uint64_t)fv_port_dwt_works());
    put_str("\n");
    {
        /* the cost of fv_run around the layers, measured on the model with its layers cut off */
        fv_model bare = *m;
        fv_runner r;
        uint64_t t0, t1;
        bare.n_layers = 0u;
        (void)fv_runner_prepare(&r, &bare, FV_KERNELS_REF); /* no layers: nothing to refuse */
        t0 = fv_port_ticks();
        fv_run(&r, arena, pixels, out[0], 0, 0);
        t1 = fv_port_ticks();
        put_str("overhead ");
        put_u64(t1 - t0);
        put_str("\n");
    }
    for (int v = 0; v < 2; ++v) {
        bench_ctx ctx = {v ? "opt" : "ref", 0u};
        fv_runner r;
        uint64_t t0, t1;
        if (fv_runner_prepare(&r, m, v ? FV_KERNELS_OPT : FV_KERNELS_REF) != 0) {
            put_str("error unknown layer kind\n");
            continue;
        }
        if (v) { /* bench_firmware.py checks them against FV_DSP_FUSED_PAIRS, FV_DSP_POOL_PAIRS (dsp_limits.py) */
            put_str("fused ");
            put_u64(set_bits(r.to_planes));
            put_str("\nfused_pool ");
            put_u64(set_bits(r.to_pool));
            put_str("\n");
        }
        /* the total without the hook (whose printing would count), then the layers with it */
        t0 = fv_port_ticks();
        fv_run(&r, arena, pixels, out[v], 0, 0);
        t1 = fv_port_ticks();
        ctx.last = fv_port_ticks();
        fv_run(&r, arena, pixels, out[v], on_layer, &ctx);
        put_str("total ");
        put_str(ctx.variant);
        put_str(" ");
        put_u64(t1 - t0);
        put_str(" out ");
        for (uint32_t i = 0; i < m->num_classes && i < 16u; ++i) {
            put_hex8((uint8_t)out[v][i]);
        }
        put_str("\n");
    }
    put_str(memcmp(out[0], out[1], m->num_classes) == 0 ? "match 1\n" : "match 0\n");
    put_str("done\n");
    for (;;) {
        fv_port_watchdog_kick();
        fv_port_idle();
    }
}
