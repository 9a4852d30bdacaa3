/*
 * The C codec and the board app against the protocol vectors shared with the Python codec
 * (tests/vectors/protocol.json): every frame encodes to the same wire bytes and decodes back;
 * every reject gets the ERROR code and seq the vectors name; the board keeps serving after
 * garbage, truncation and oversize frames; a model with a layer kind the runner has no kernel for
 * is refused with ERROR(INTERNAL). Built twice (tests/proto.mk): as a test image, where FAULT
 * arms a fault that the next reply suffers, and as a release image (no FV_TEST_BUILD, no
 * fv_fault.c, no fault hooks in the port), which answers every test-only type ERROR(TEST_ONLY).
 */
#include <stdio.h>
#include <string.h>

#include "fv_app.h"
#include "fv_proto.h"
#include "port_fake.h"
#include "proto_vectors.h"

static int passed, failed;

#define CHECK(cond, ...)                         \
    do {                                         \
        if (cond) {                              \
            passed++;                            \
        } else {                                 \
            failed++;                            \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                 \
            printf("\n");                        \
        }                                        \
    } while (0)

/* Decode every frame in fake_out; returns the number found, the last one in *last. */
static int replies(fv_msg *last, uint8_t *last_buf)
{
    static fv_decoder d;
    fv_decoder_init(&d);
    int n = 0;
    for (uint32_t i = 0; i < fake_out_len; ++i) {
        uint8_t err = 0;
        if (fv_decoder_push(&d, fake_out[i], &err) == FV_RX_FRAME) {
            memcpy(last_buf, d.buf, d.len);
            if (fv_parse(last_buf, d.len, last) == FV_ERR_NONE) {
                n++;
            }
        }
    }
    return n;
}

static void test_frames_encode_and_decode_like_the_python_codec(void)
{
    static uint8_t out[FV_ENCODED_CAP(FV_MAX_PAYLOAD)];
    for (size_t k = 0; k < sizeof frames / sizeof frames[0]; ++k) {
        const frame_vec *v = &frames[k];
        uint32_t n = fv_encode(v->type, v->seq, v->payload, (uint16_t)v->payload_len, out, sizeof out);
        CHECK(n == v->wire_len && memcmp(out, v->wire, n) == 0, "%s: encoding differs", v->name);
        fv_decoder d;
        fv_decoder_init(&d);
        fv_rx_status st = FV_RX_NONE;
        uint8_t err = 0;
        for (uint32_t i = 0; i < v->wire_len; ++i) {
            st = fv_decoder_push(&d, v->wire[i], &err);
        }
        fv_msg m;
        CHECK(st == FV_RX_FRAME && fv_parse(d.buf, d.len, &m) == FV_ERR_NONE && m.type == v->type &&
                  m.seq == v->seq && m.len == v->payload_len && memcmp(m.payload, v->payload, m.len) == 0,
              "%s: decoding differs", v->name);
    }
}

static void test_rejects_get_the_named_error_and_seq(void)
{
    static fv_app app;
    static uint8_t buf[FV_MAX_FRAME];
    for (size_t k = 0; k < sizeof rejects / sizeof rejects[0]; ++k) {
        const reject_vec *v = &rejects[k];
        fv_app_init(&app, &fake_model, fake_arena, FV_KERNELS_REF);
        fake_reset_output();
        fv_app_rx(&app, v->wire, v->wire_len);
        fv_msg m;
        int n = replies(&m, buf);
        CHECK(n == 1 && m.type == FV_MSG_ERROR && m.len >= 2 && m.payload[0] == v->code && m.seq == v->seq,
              "%s: expected ERROR code %u seq %u, got %d replies (type 0x%02x code %u seq %u)", v->name,
              v->code, v->seq, n, m.type, m.len ? m.payload[0] : 0, m.seq);
    }
}

static void hello_answers(fv_app *app, const char *what)
{
    static uint8_t wire[64], buf[FV_MAX_FRAME];
    uint32_t n = fv_encode(FV_MSG_HELLO, 77, 0, 0, wire, sizeof wire);
    fake_reset_output();
    fv_app_rx(app, wire, n);
    fv_msg m;
    int k = replies(&m, buf);
    CHECK(k >= 1 && m.type == (FV_MSG_HELLO | FV_MSG_REPLY) && m.seq == 77 && m.len == 65u + 4u &&
              memcmp(m.payload + 65, "fake", 4) == 0,
          "%s: HELLO not answered afterwards", what);
}

static void test_board_keeps_serving_after_garbage_truncation_and_oversize(void)
{
    static fv_app app;
    static uint8_t junk[8000];
    fv_app_init(&app, &fake_model, fake_arena, FV_KERNELS_REF);
    for (size_t i = 0; i < sizeof junk; ++i) {
        junk[i] = (uint8_t)(i % 255u + 1u); /* no zero bytes: one endless frame */
    }
    fake_reset_output();
    fv_app_rx(&app, junk, sizeof junk);
    CHECK(fake_out_len == 0, "no reply may come before a delimiter");
    const uint8_t zero = 0;
    fv_app_rx(&app, &zero, 1);
    static uint8_t buf[FV_MAX_FRAME];
    fv_msg m;
    CHECK(replies(&m, buf) == 1 && m.type == FV_MSG_ERROR && m.payload[0] == FV_ERR_BAD_LENGTH,
          "oversize frame gets BAD_LENGTH");
    hello_answers(&app, "after oversize");

    /* a truncated CLASSIFY (the host gave up mid-frame), then a flush 0x00 */
    static uint8_t wire[FV_ENCODED_CAP(FV_MAX_PAYLOAD)];
    static uint8_t img[3072];
    memset(img, 9, sizeof img);
    uint32_t n = fv_encode(FV_MSG_CLASSIFY, 5, img, 3072, wire, sizeof wire);
    fake_reset_output();
    fv_app_rx(&app, wire, n / 2);
    fv_app_rx(&app, &zero, 1);
    CHECK(replies(&m, buf) == 1 && m.type == FV_MSG_ERROR, "truncated frame gets an ERROR");
    hello_answers(&app, "after truncation");

    /* random garbage with zeros inside */
    for (size_t i = 0; i < sizeof junk; ++i) {
        junk[i] = (uint8_t)((i * 2654435761u) >> 13);
    }
    fv_app_rx(&app, junk, sizeof junk);
    fv_app_rx(&app, &zero, 1);
    hello_answers(&app, "after random garbage");

    /* a full CLASSIFY is answered with a RESULT of 18 bytes and the right seq */
    fake_reset_output();
    fv_app_rx(&app, wire, n);
    CHECK(replies(&m, buf) == 1 && m.type == (FV_MSG_CLASSIFY | FV_MSG_REPLY) && m.seq == 5 && m.len == 18,
          "classify answered");
}

static void test_overrun_is_reported_as_busy(void)
{
    static fv_app app;
    static uint8_t buf[FV_MAX_FRAME];
    fv_app_init(&app, &fake_model, fake_arena, FV_KERNELS_REF);
    fake_overrun = 1;
    fake_reset_output();
    const uint8_t zero = 0;
    fv_app_rx(&app, &zero, 1);
    fv_msg m;
    CHECK(replies(&m, buf) == 1 && m.type == FV_MSG_ERROR && m.payload[0] == FV_ERR_BUSY, "overrun -> BUSY");
}

/* Sends one request and decodes what the board wrote back; returns the number of well-formed
 * frames, the last one in *m. */
static int request(fv_app *app, uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len, fv_msg *m)
{
    static uint8_t wire[FV_ENCODED_CAP(FV_MAX_PAYLOAD)], buf[FV_MAX_FRAME];
    uint32_t n = fv_encode(type, seq, payload, len, wire, sizeof wire);
    fake_reset_output();
    fv_app_rx(app, wire, n);
    return replies(m, buf);
}

static void test_a_model_with_an_unknown_layer_kind_is_refused_at_classify(void)
{
    static const fv_layer layers[1] = {{.kind = (fv_op_kind)0, .params = 0}};
    static fv_model bad;
    static fv_app app;
    static uint8_t img[3072];
    fv_msg m;
    bad = fake_model;
    bad.n_layers = 1;
    bad.layers = layers;
    fv_app_init(&app, &bad, fake_arena, FV_KERNELS_OPT);
    CHECK(request(&app, FV_MSG_CLASSIFY, 9, img, sizeof img, &m) == 1 && m.type == FV_MSG_ERROR &&
              m.payload[0] == FV_ERR_INTERNAL && m.seq == 9,
          "unknown layer kind -> ERROR(INTERNAL)");
    CHECK(request(&app, FV_MSG_HELLO, 10, 0, 0, &m) == 1 && m.type == (FV_MSG_HELLO | FV_MSG_REPLY) &&
              (m.payload[43] & 2u) != 0,
          "the board still says hello, with its kernel set in the flags");
}

static void fault(fv_app *app, uint8_t kind, uint32_t arg, fv_msg *m, int *n)
{
    const uint8_t p[5] = {kind, (uint8_t)arg, (uint8_t)(arg >> 8), (uint8_t)(arg >> 16), (uint8_t)(arg >> 24)};
    *n = request(app, FV_MSG_FAULT, 20, p, sizeof p, m);
}

#ifdef FV_TEST_BUILD
static void test_fault_acts_on_the_next_reply_only(void)
{
    static fv_app app;
    fv_msg m;
    int n;
    fv_app_init(&app, &fake_model, fake_arena, FV_KERNELS_REF);
    fault(&app, FV_FAULT_DROP, 0, &m, &n);
    CHECK(n == 1 && m.type == (FV_MSG_FAULT | FV_MSG_REPLY) && m.len == 0, "FAULT acknowledged, empty");
    CHECK(request(&app, FV_MSG_PING, 21, (const uint8_t *)"x", 1, &m) == 0 && fake_out_len == 0, "DROP: no reply");
    CHECK(request(&app, FV_MSG_PING, 22, (const uint8_t *)"x", 1, &m) == 1 && m.seq == 22, "then replies again");

    fault(&app, FV_FAULT_BAD_CRC, 0, &m, &n);
    CHECK(request(&app, FV_MSG_PING, 23, (const uint8_t *)"x", 1, &m) == 0 && fake_out_len > 0,
          "BAD_CRC: a frame that fails its check");

    int resets = fake_resets;
    fault(&app, FV_FAULT_RESET, 0, &m, &n);
    CHECK(request(&app, FV_MSG_PING, 24, (const uint8_t *)"x", 1, &m) == 0 && fake_resets == resets + 1,
          "RESET: half a reply, then the port's reset");

    fault(&app, FV_FAULT_GARBAGE, 7, &m, &n);
    CHECK(request(&app, FV_MSG_PING, 25, (const uint8_t *)"x", 1, &m) == 1 && m.seq == 25 &&
              fake_out_len > 7u && fake_out[0] != 0 && fake_out[7] == 0,
          "GARBAGE: 7 non-zero bytes, a delimiter, then the reply");

    fault(&app, 99, 0, &m, &n);
    CHECK(n == 1 && m.type == (FV_MSG_FAULT | FV_MSG_REPLY), "an unknown kind is acknowledged");
    CHECK(request(&app, FV_MSG_PING, 26, (const uint8_t *)"x", 1, &m) == 1 && m.seq == 26, "and arms nothing");

    fault(&app, FV_FAULT_DROP, 0, &m, &n);
    fv_app_init(&app, &fake_model, fake_arena, FV_KERNELS_REF);
    CHECK(request(&app, FV_MSG_PING, 27, (const uint8_t *)"x", 1, &m) == 1 && m.seq == 27,
          "a restarted app forgets an armed fault");

    CHECK(request(&app, 0x41, 28, 0, 0, &m) == 1 && m.type == FV_MSG_ERROR && m.payload[0] == FV_ERR_UNKNOWN_TYPE,
          "a reserved test-only type -> UNKNOWN_TYPE");
    CHECK(request(&app, FV_MSG_HELLO, 29, 0, 0, &m) == 1 && (m.payload[43] & 1u) != 0, "HELLO: test build flag");
}
#else
static void test_release_refuses_every_test_only_type(void)
{
    static fv_app app;
    fv_msg m;
    int n;
    fv_app_init(&app, &fake_model, fake_arena, FV_KERNELS_REF);
    fault(&app, FV_FAULT_DROP, 0, &m, &n);
    CHECK(n == 1 && m.type == FV_MSG_ERROR && m.payload[0] == FV_ERR_TEST_ONLY && m.seq == 20,
          "release: FAULT -> ERROR(TEST_ONLY)");
    CHECK(request(&app, FV_MSG_PING, 21, (const uint8_t *)"x", 1, &m) == 1 && m.seq == 21,
          "release: nothing armed, the next request is answered");
    CHECK(request(&app, 0x4F, 22, 0, 0, &m) == 1 && m.type == FV_MSG_ERROR && m.payload[0] == FV_ERR_TEST_ONLY,
          "release: a reserved test-only type -> ERROR(TEST_ONLY)");
    CHECK(request(&app, FV_MSG_HELLO, 23, 0, 0, &m) == 1 && (m.payload[43] & 1u) == 0, "HELLO: release flag");
}
#endif

int main(void)
{
    test_frames_encode_and_decode_like_the_python_codec();
    test_rejects_get_the_named_error_and_seq();
    test_board_keeps_serving_after_garbage_truncation_and_oversize();
    test_overrun_is_reported_as_busy();
    test_a_model_with_an_unknown_layer_kind_is_refused_at_classify();
#ifdef FV_TEST_BUILD
    test_fault_acts_on_the_next_reply_only();
#else
    test_release_refuses_every_test_only_type();
#endif
    printf("%s: %d passed, %d failed\n", fv_test_build ? "test build" : "release build", passed, failed);
    return failed ? 1 : 0;
}
