/* The registry of models a firmware image carries (generated models.c defines it). */
#ifndef FV_MODELS_H
#define FV_MODELS_H

#include <stdint.h>

#include "fv_model.h"

extern const fv_model *const fv_models[];
extern const uint32_t fv_n_models;

#endif /* FV_MODELS_H */
