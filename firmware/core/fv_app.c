/*
 * Message handling. Replies are built in a small static buffer: the largest reply (INFO) is
 * 65 + 32 bytes of payload, far below a request's 3072.
 *
 * Fault injection lives in fv_fault.c, linked into test images only (FV_TEST_BUILD): there a
 * FAULT request arms a fault and every reply goes through fv_fault_send, which applies it. A
 * release image writes replies straight to the port and answers FAULT with ERROR(TEST_ONLY).
 * The #ifdef FV_TEST_BUILD blocks below are the whole seam.
 */
#include "fv_app.h"

#include <string.h>

#include "fv_assert.h"
#include "fv_port.h"

#ifdef FV_TEST_BUILD
#include "fv_fault.h"
const int fv_test_build = 1;
#else
const int fv_test_build = 0;
#endif

#define REPLY_PAYLOAD_MAX (FV_INFO_FIXED_BYTES + FV_MODEL_ID_MAX)
static uint8_t reply_buf[FV_ENCODED_CAP(REPLY_PAYLOAD_MAX)];

/* Length of a C string, at most `cap`: the core takes nothing from libc beyond
 * memcpy/memset/memcmp, and a bound keeps a missing terminator from running off. */
static uint32_t bounded_len(const char *s, uint32_t cap)
{
    uint32_t n = 0;
    while (n < cap && s[n] != '\0') {
        n++;
    }
    return n;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static void send(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len)
{
    const uint32_t n = fv_encode(type, seq, payload, len, reply_buf, sizeof reply_buf);
    /* every reply fits reply_buf by construction: its payload is at most REPLY_PAYLOAD_MAX
     * (HELLO; PING echoes at most 64 bytes, ERROR 2 + 48, RESULT 18) */
    FV_ASSERT(n != 0u);
#ifdef FV_TEST_BUILD
    fv_fault_send(reply_buf, n); /* an armed fault acts on this reply */
#else
    fv_port_write(reply_buf, n);
#endif
}

static void send_error(uint16_t seq, uint8_t code, uint8_t req_type, const char *text)
{
    uint8_t p[2u + FV_ERROR_TEXT_MAX];
    uint32_t tl = bounded_len(text, FV_ERROR_TEXT_MAX);
    p[0] = code;
    p[1] = req_type;
    memcpy(p + 2, text, tl);
    send(FV_MSG_ERROR, seq, p, (uint16_t)(2u + tl));
}

static void on_hello(const fv_app *app, uint16_t seq)
{
    uint8_t p[REPLY_PAYLOAD_MAX];
    const fv_model *m = app->runner.model;
    memset(p, 0, sizeof p);
    p[0] = FV_PROTOCOL_VERSION;
    p[1] = FV_FIRMWARE_MAJOR;
    p[2] = FV_FIRMWARE_MINOR;
    p[3] = FV_FIRMWARE_PATCH;
    fv_port_board_id(p + 4);
    memcpy(p + 16, m->sha256, 8);
    put_u32(p + 24, m->macc);
    put_u32(p + 28, m->arena_bytes);
    put_u32(p + 32, fv_port_clock_hz());
    put_u32(p + 36, fv_port_baud());
    p[40] = (uint8_t)(3072u & 0xFFu);
    p[41] = (uint8_t)(3072u >> 8);
    p[42] = (uint8_t)m->num_classes;
    p[43] = (uint8_t)((fv_test_build ? 1u : 0u) | (app->runner.kernels == FV_KERNELS_OPT ? 2u : 0u));
    put_u32(p + 44, m->weight_bytes);
    const char *name = fv_port_board_name();
    memcpy(p + 48, name, bounded_len(name, 16u));
    uint32_t il = bounded_len(m->id, FV_MODEL_ID_MAX);
    p[64] = (uint8_t)il;
    memcpy(p + FV_INFO_FIXED_BYTES, m->id, il);
    send(FV_MSG_HELLO | FV_MSG_REPLY, seq, p, (uint16_t)(FV_INFO_FIXED_BYTES + il));
}

static void on_classify(const fv_app *app, const fv_msg *msg)
{
    uint8_t p[FV_RESULT_BYTES];
    int8_t out[16];
    if (!app->model_ok) {
        /* a bad model (a layer kind without a kernel), found when the board prepared it */
        send_error(msg->seq, FV_ERR_INTERNAL, msg->type, "model has an unknown layer");
        return;
    }
    uint32_t t0 = fv_port_time_us();
    uint32_t c0 = fv_port_cycles();
    fv_run(&app->runner, app->arena, msg->payload, out, 0, 0);
    uint32_t c1 = fv_port_cycles();
    fv_port_after_inference(fv_port_time_us() - t0);
    uint32_t t1 = fv_port_time_us();
    memcpy(p, out, 10);
    put_u32(p + 10, t1 - t0); /* unsigned difference: correct across one counter wrap */
    put_u32(p + 14, c1 - c0);
    send(FV_MSG_CLASSIFY | FV_MSG_REPLY, msg->seq, p, FV_RESULT_BYTES);
}

/* Types 0x40-0x4F (docs/protocol.md, "Test-only messages"). */
#ifdef FV_TEST_BUILD
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void on_test_message(const fv_msg *msg)
{
    if (msg->type != FV_MSG_FAULT) {
        send_error(msg->seq, FV_ERR_UNKNOWN_TYPE, msg->type, "reserved test-only type");
        return;
    }
    if (msg->len != 5u) {
        send_error(msg->seq, FV_ERR_BAD_LENGTH, msg->type, "fault takes kind u8 and arg u32");
        return;
    }
    const uint8_t kind = msg->payload[0];
    const uint32_t arg = get_u32(msg->payload + 1);
    send(FV_MSG_FAULT | FV_MSG_REPLY, msg->seq, 0, 0); /* ack first, then arm */
    /* a kind the table does not name is acknowledged and arms nothing */
    fv_fault_arm(kind <= FV_FAULT_UNPLUG ? kind : (uint8_t)FV_FAULT_NONE, arg);
}
#else
static void on_test_message(const fv_msg *msg)
{
    send_error(msg->seq, FV_ERR_TEST_ONLY, msg->type, "test-only message: release build");
}
#endif

static void on_frame(fv_app *app, const uint8_t *frame, uint32_t n)
{
    fv_msg msg;
    uint8_t err = fv_parse(frame, n, &msg);
    if (err != FV_ERR_NONE) {
        app->frames_bad++;
        send_error(msg.seq, err, msg.type,
                   err == FV_ERR_BAD_CRC ? "crc mismatch" :
                   err == FV_ERR_BAD_LENGTH ? "length field disagrees with frame" : "frame too short");
        return;
    }
    app->frames_ok++;
    switch (msg.type) {
    case FV_MSG_HELLO:
        if (msg.len != 0) {
            send_error(msg.seq, FV_ERR_BAD_LENGTH, msg.type, "hello takes no payload");
            return;
        }
        on_hello(app, msg.seq);
        return;
    case FV_MSG_PING:
        if (msg.len > FV_PING_MAX) {
            send_error(msg.seq, FV_ERR_BAD_LENGTH, msg.type, "ping payload over 64 bytes");
            return;
        }
        send(FV_MSG_PING | FV_MSG_REPLY, msg.seq, msg.payload, msg.len);
        return;
    case FV_MSG_CLASSIFY:
        if (msg.len != 3072u) {
            send_error(msg.seq, FV_ERR_BAD_LENGTH, msg.type, "classify takes 3072 bytes");
            return;
        }
        on_classify(app, &msg);
        return;
    default:
        break;
    }
    if (msg.type >= FV_MSG_FAULT && msg.type <= FV_MSG_TEST_LAST) {
        on_test_message(&msg);
        return;
    }
    send_error(msg.seq, FV_ERR_UNKNOWN_TYPE, msg.type, "unknown message type");
}

void fv_app_init(fv_app *app, const fv_model *model, int8_t *arena, fv_kernel_set kernels)
{
    fv_decoder_init(&app->dec);
    app->model_ok = fv_runner_prepare(&app->runner, model, kernels) == 0;
    app->arena = arena;
    app->frames_ok = 0;
    app->frames_bad = 0;
#ifdef FV_TEST_BUILD
    fv_fault_arm(FV_FAULT_NONE, 0u); /* a restarted board forgets an armed fault */
#endif
}

void fv_app_rx(fv_app *app, const uint8_t *data, uint32_t n)
{
    if (fv_port_rx_overrun()) {
        /* bytes were lost while we computed: whatever frame is in progress is damaged */
        fv_decoder_init(&app->dec);
        send_error(0, FV_ERR_BUSY, 0, "receive buffer overrun");
    }
    for (uint32_t i = 0; i < n; ++i) {
        uint8_t err = FV_ERR_NONE;
        fv_rx_status st = fv_decoder_push(&app->dec, data[i], &err);
        if (st == FV_RX_FRAME) {
            on_frame(app, app->dec.buf, app->dec.len);
        } else if (st == FV_RX_ERROR) {
            app->frames_bad++;
            send_error(0, err, 0, err == FV_ERR_BAD_LENGTH ? "frame over 3094 bytes" : "bad cobs framing");
        }
    }
}
