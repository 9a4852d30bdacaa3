/*
 * Protocol v1 codec: COBS framing, CRC-32, header checks. No I/O, no allocation.
 */
#include "fv_proto.h"

#include <string.h>

/* CRC-32/ISO-HDLC (zlib's): reflected polynomial 0xEDB88320, init and final xor 0xFFFFFFFF.
 * A 16-entry table (64 bytes of flash) and two lookups per byte: a middle way between the
 * 1 KB byte table and the 8-step bit loop. `crc` is the running value before the final xor. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t fv_crc32_update(uint32_t crc, const uint8_t *data, uint32_t n)
{
    for (uint32_t i = 0; i < n; ++i) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
    }
    return crc;
}

void fv_decoder_init(fv_decoder *d)
{
    d->len = 0;
    d->remaining = 0;
    d->zero_after = 0;
    d->in_frame = 0;
    d->overflow = 0;
    d->broken = 0;
}


static void store(fv_decoder *d, uint8_t b)
{
    if (d->len >= FV_MAX_FRAME) { /* checked before the write: never past buf */
        d->overflow = 1;
        return;
    }
    d->buf[d->len++] = b;
}

fv_rx_status fv_decoder_push(fv_decoder *d, uint8_t byte, uint8_t *error)
{
    if (byte == 0x00u) {
        fv_rx_status st = FV_RX_NONE;
        if (!d->in_frame) {
            st = FV_RX_NONE; /* empty frame: a flush from the host, ignored */
        } else if (d->overflow) {
            *error = FV_ERR_BAD_LENGTH;
            st = FV_RX_ERROR;
        } else if (d->broken || d->remaining != 0) {
            *error = FV_ERR_BAD_FRAME; /* the frame ended inside a COBS block */
            st = FV_RX_ERROR;
        } else {
            st = FV_RX_FRAME;  /* the last block's implied zero is not part of the frame */
        }
        if (st != FV_RX_FRAME) {
            fv_decoder_init(d);
        } else {
            d->in_frame = 0;   /* buf/len stay valid until the next byte is pushed */
            d->remaining = 0;
            d->zero_after = 0;
        }
        return st;
    }
    if (!d->in_frame) {
        /* first byte of a new frame: forget the previous (already consumed) one */
        fv_decoder_init(d);
        d->in_frame = 1;
    }
    if (d->overflow || d->broken) {
        return FV_RX_NONE;
    }
    if (d->remaining == 0) {
        /* a code byte: the block holds code - 1 data bytes; a code below 0xFF also stands for
         * the 0x00 that follows the block, unless the frame ends there */
        if (d->zero_after) {
            store(d, 0x00u);
        }
        d->remaining = (uint8_t)(byte - 1u);
        d->zero_after = (byte != 0xFFu) ? 1u : 0u;
    } else {
        store(d, byte);
        d->remaining--;
    }
    return FV_RX_NONE;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | (uint16_t)((uint16_t)p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint8_t fv_parse(const uint8_t *frame, uint32_t n, fv_msg *msg)
{
    msg->type = 0;
    msg->seq = 0;
    msg->len = 0;
    msg->payload = frame + FV_HEADER_BYTES;
    if (n < FV_HEADER_BYTES + FV_CRC_BYTES) {
        if (n >= 3u) {
            msg->type = frame[0];
            msg->seq = get_u16(frame + 1);
        }
        return FV_ERR_BAD_FRAME;
    }
    msg->type = frame[0];
    msg->seq = get_u16(frame + 1);
    msg->len = get_u16(frame + 3);
    if ((uint32_t)msg->len != n - FV_HEADER_BYTES - FV_CRC_BYTES || msg->len > FV_MAX_PAYLOAD) {
        return FV_ERR_BAD_LENGTH;
    }
    uint32_t crc = ~fv_crc32_update(0xFFFFFFFFu, frame, n - FV_CRC_BYTES);
    if (crc != get_u32(frame + n - FV_CRC_BYTES)) {
        return FV_ERR_BAD_CRC;
    }
    return FV_ERR_NONE;
}

/* COBS encoder state over the output buffer: `code_at` is where the current block's code byte
 * goes, written once the block is closed. */
typedef struct {
    uint8_t *out;
    uint32_t cap;
    uint32_t pos;
    uint32_t code_at;
    uint8_t code;
    uint8_t full;  /* out of space */
} cobs_writer;

static void cobs_begin(cobs_writer *w)
{
    w->code_at = w->pos;
    w->code = 1;
    if (w->pos >= w->cap) {
        w->full = 1;
        return;
    }
    w->pos++;
}

static void cobs_close(cobs_writer *w)
{
    if (!w->full) {
        w->out[w->code_at] = w->code;
    }
}

static void cobs_put(cobs_writer *w, uint8_t b)
{
    if (w->full) {
        return;
    }
    if (b == 0x00u) {
        cobs_close(w);
        cobs_begin(w);
        return;
    }
    if (w->pos >= w->cap) {
        w->full = 1;
        return;
    }
    w->out[w->pos++] = b;
    w->code++;
    if (w->code == 0xFFu) {  /* 254 data bytes: the block is full, start another */
        cobs_close(w);
        cobs_begin(w);
    }
}

uint32_t fv_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len,
                   uint8_t *out, uint32_t cap)
{
    if (len > FV_MAX_PAYLOAD) {
        return 0;
    }
    uint8_t header[FV_HEADER_BYTES] = {type, (uint8_t)(seq & 0xFFu), (uint8_t)(seq >> 8),
                                       (uint8_t)(len & 0xFFu), (uint8_t)(len >> 8)};
    uint32_t crc = fv_crc32_update(0xFFFFFFFFu, header, FV_HEADER_BYTES);
    crc = ~fv_crc32_update(crc, payload, len);
    uint8_t tail[FV_CRC_BYTES] = {(uint8_t)(crc & 0xFFu), (uint8_t)((crc >> 8) & 0xFFu),
                                  (uint8_t)((crc >> 16) & 0xFFu), (uint8_t)(crc >> 24)};
    cobs_writer w = {out, cap, 0, 0, 1, 0};
    cobs_begin(&w);
    for (uint32_t i = 0; i < FV_HEADER_BYTES; ++i) {
        cobs_put(&w, header[i]);
    }
    for (uint32_t i = 0; i < len; ++i) {
        cobs_put(&w, payload[i]);
    }
    for (uint32_t i = 0; i < FV_CRC_BYTES; ++i) {
        cobs_put(&w, tail[i]);
    }
    /* a block that just filled up opened an empty one: close it as code 0x01 (no data) only if
     * needed; the decoder treats a trailing 0x01 as "no bytes, no implied zero at the end" */
    cobs_close(&w);
    if (w.full || w.pos >= cap) {
        return 0;
    }
    out[w.pos++] = 0x00u;
    return w.pos;
}
