/*
 * The host-board protocol, version 1 (docs/protocol.md): COBS frames ending in 0x00, each
 * `type | seq (u16 LE) | length (u16 LE) | payload | crc32 (LE)`.
 *
 * Sans-I/O: the decoder takes bytes one at a time (what a UART interrupt delivers) and says when
 * a frame is complete; the encoder writes into a caller's buffer. Every length is checked against
 * its buffer before a byte is written.
 */
#ifndef FV_PROTO_H
#define FV_PROTO_H

#include <stdint.h>

#define FV_PROTOCOL_VERSION 1u
#define FV_HEADER_BYTES 5u
#define FV_CRC_BYTES 4u
#define FV_MAX_PAYLOAD 3072u
#define FV_MAX_FRAME (FV_HEADER_BYTES + FV_MAX_PAYLOAD + FV_CRC_BYTES) /* 3081, decoded */
#define FV_MAX_ENCODED (FV_MAX_FRAME + (FV_MAX_FRAME + 253u) / 254u)  /* 3094, without 0x00 */

enum {
    FV_MSG_HELLO = 0x01,
    FV_MSG_PING = 0x02,
    FV_MSG_CLASSIFY = 0x03,
    FV_MSG_FAULT = 0x40,        /* 0x40-0x4F: test builds only */
    FV_MSG_TEST_LAST = 0x4F,
    FV_MSG_ERROR = 0x7F,
    FV_MSG_REPLY = 0x80         /* reply type = request type | FV_MSG_REPLY */
};

enum {
    FV_ERR_NONE = 0,
    FV_ERR_BAD_CRC = 1,
    FV_ERR_BAD_LENGTH = 2,
    FV_ERR_UNKNOWN_TYPE = 3,
    FV_ERR_BUSY = 4,
    FV_ERR_BAD_FRAME = 5,
    FV_ERR_TEST_ONLY = 6,
    FV_ERR_INTERNAL = 7
};

enum {
    FV_FAULT_NONE = 0,
    FV_FAULT_DROP = 1,
    FV_FAULT_DELAY = 2,
    FV_FAULT_GARBAGE = 3,
    FV_FAULT_BAD_CRC = 4,
    FV_FAULT_RESET = 5,
    FV_FAULT_HANG = 6,
    FV_FAULT_UNPLUG = 7
};

#define FV_PING_MAX 64u
#define FV_ERROR_TEXT_MAX 48u
#define FV_INFO_FIXED_BYTES 65u
#define FV_MODEL_ID_MAX 32u
#define FV_RESULT_BYTES 18u

typedef struct {
    uint8_t type;
    uint16_t seq;
    uint16_t len;
    const uint8_t *payload;     /* points into the decoder's buffer */
} fv_msg;

/* Incremental COBS decoder into a fixed frame buffer. */
typedef struct {
    uint8_t buf[FV_MAX_FRAME];
    uint32_t len;       /* decoded bytes so far */
    uint8_t remaining;  /* data bytes left in the current COBS block */
    uint8_t zero_after; /* the current block ends with an implied 0x00 (its code was < 0xFF) */
    uint8_t in_frame;   /* at least one byte of the current frame was seen */
    uint8_t overflow;   /* the frame outgrew buf: discard until the delimiter */
    uint8_t broken;     /* inconsistent COBS code: discard until the delimiter */
} fv_decoder;

typedef enum {
    FV_RX_NONE = 0,     /* keep feeding */
    FV_RX_FRAME,        /* a complete decoded frame is in buf[0..len) */
    FV_RX_ERROR         /* a frame was dropped; *error says why */
} fv_rx_status;

void fv_decoder_init(fv_decoder *d);
fv_rx_status fv_decoder_push(fv_decoder *d, uint8_t byte, uint8_t *error);

/* Checks length fields and CRC of a decoded frame; fills *msg (whose header fields are filled as
 * far as they could be read, even on error). Returns FV_ERR_NONE or an error code. */
uint8_t fv_parse(const uint8_t *frame, uint32_t n, fv_msg *msg);

/* COBS-encodes a whole frame (header, payload, CRC) and the 0x00 delimiter into out.
 * Returns the bytes written, or 0 if len > FV_MAX_PAYLOAD or cap is too small. */
uint32_t fv_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint16_t len,
                   uint8_t *out, uint32_t cap);

/* Worst-case encoded size of a payload of `len` bytes, delimiter included. */
#define FV_ENCODED_CAP(len) \
    ((FV_HEADER_BYTES + (len) + FV_CRC_BYTES) + (FV_HEADER_BYTES + (len) + FV_CRC_BYTES) / 254u + 2u)

uint32_t fv_crc32_update(uint32_t crc, const uint8_t *data, uint32_t n);

#endif /* FV_PROTO_H */
