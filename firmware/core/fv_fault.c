/*
 * Fault injection (test images only, see fv_fault.h): one armed fault, applied to the next reply.
 * The effects are docs/protocol.md's fault table.
 */
#include "fv_fault.h"

#include "fv_assert.h"
#include "fv_port.h"
#include "fv_proto.h"

static uint8_t armed_kind = FV_FAULT_NONE;
static uint32_t armed_arg;

void fv_fault_arm(uint8_t kind, uint32_t arg)
{
    FV_ASSERT(kind <= FV_FAULT_UNPLUG);
    armed_kind = kind;
    armed_arg = arg;
}

void fv_fault_send(uint8_t *frame, uint32_t n)
{
    const uint8_t kind = armed_kind;
    const uint32_t arg = armed_arg;
    /* an encoded frame is at least its header's COBS bytes and the delimiter */
    FV_ASSERT(n >= 2u);
    armed_kind = FV_FAULT_NONE;
    switch (kind) {
    case FV_FAULT_NONE:
        break;
    case FV_FAULT_DROP:
        return;
    case FV_FAULT_DELAY:
        fv_port_delay_ms(arg);
        break;
    case FV_FAULT_GARBAGE:
        for (uint32_t i = 0; i < arg; ++i) {
            const uint8_t b = (uint8_t)(fv_port_random() % 255u + 1u); /* never 0x00 inside the noise */
            fv_port_write(&b, 1);
        }
        {
            /* then a delimiter: the host drops the noise as one bad frame and resynchronises in
             * time to read the reply that follows */
            const uint8_t zero = 0x00u;
            fv_port_write(&zero, 1);
        }
        break;
    case FV_FAULT_BAD_CRC:
        /* flip a bit of the last encoded byte before the delimiter: part of the CRC, and still
         * non-zero, so the frame stays a frame */
        frame[n - 2u] = (uint8_t)(frame[n - 2u] == 0x01u ? 0x02u : frame[n - 2u] ^ 0x01u);
        break;
    case FV_FAULT_RESET:
        fv_port_write(frame, n / 2u);
        fv_port_reset();
        return;
    case FV_FAULT_HANG:
        fv_port_hang(arg);
        return;
    case FV_FAULT_UNPLUG:
        fv_port_unplug();
        return;
    default:
        FV_ASSERT(kind <= FV_FAULT_UNPLUG); /* fails: fv_fault_arm admits no other kind */
        break;
    }
    fv_port_write(frame, n);
}
