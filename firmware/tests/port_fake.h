#ifndef PORT_FAKE_H
#define PORT_FAKE_H

#include <stdint.h>

#include "fv_model.h"
#include "fv_port.h"

#define FAKE_OUT_CAP (1u << 16)
extern uint8_t fake_out[FAKE_OUT_CAP];
extern uint32_t fake_out_len;
extern int fake_overrun;
extern int fake_resets;
extern const fv_model fake_model;
extern int8_t fake_arena[3072];
void fake_reset_output(void);

#endif
