# Kernel tests: the reference kernels against vectors computed by the numpy engine.
#
# Include from firmware/Makefile (all paths are relative to firmware/):
#     include tests/kernels.mk
# or run on its own:
#     make -C firmware -f tests/kernels.mk test-kernels
#
# Targets
#   test-kernels        generate build/test/kernel_vectors.h with the venv's python, build
#                       build/test/test_kernels with the host gcc and the strict flags, run it
#   test-kernels-arm    compile core/fv_kernels_ref.c for Cortex-M4 with the same flags and print
#                       its size (arm-none-eabi-gcc; nothing is run)
#   test-kernels-qemu   build the same test for Cortex-M4 (newlib semihosting) and run it on QEMU's
#                       MPS2 AN386 board (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi
#                       qemu-system-arm); optional
#
# Variables (override on the command line): PYTHON, HOST_CC, ARM_CC, ARM_SIZE, QEMU_ARM, KT_SEED.

PYTHON ?= ../.venv/bin/python
HOST_CC ?= gcc
ARM_CC ?= arm-none-eabi-gcc
ARM_SIZE ?= arm-none-eabi-size
QEMU_ARM ?= qemu-system-arm
KT_SEED ?= 20240611

# habit 7: the same warnings for the host and the target build
KT_WARN := -Wall -Wextra -Werror -Wconversion -Wshadow -Wdouble-promotion -Wsign-conversion
KT_CFLAGS := -std=c99 -O2 $(KT_WARN) -ffunction-sections -fdata-sections
KT_ARM_FLAGS := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16

KT_DIR := build/test
KT_VECTORS := $(KT_DIR)/kernel_vectors.h
KT_BIN := $(KT_DIR)/test_kernels
KT_ENGINE := $(wildcard ../service/fleetvote/engine/kernels.py ../service/fleetvote/engine/fixedpoint.py)
KT_SRC := core/fv_kernels_ref.c
KT_HDR := core/fv_kernels.h core/fv_fixedpoint.h core/fv_assert.h

.PHONY: test-kernels test-kernels-arm test-kernels-qemu

test-kernels: $(KT_BIN)
	./$(KT_BIN)

$(KT_DIR):
	mkdir -p $@

$(KT_VECTORS): tests/make_kernel_vectors.py $(KT_ENGINE) | $(KT_DIR)
	$(PYTHON) tests/make_kernel_vectors.py --seed $(KT_SEED) -o $@

$(KT_BIN): tests/test_kernels.c $(KT_SRC) $(KT_HDR) $(KT_VECTORS)
	$(HOST_CC) $(KT_CFLAGS) -Icore -I$(KT_DIR) tests/test_kernels.c $(KT_SRC) -Wl,--gc-sections -o $@

$(KT_DIR)/fv_kernels_ref.arm.o: $(KT_SRC) $(KT_HDR) | $(KT_DIR)
	$(ARM_CC) $(KT_CFLAGS) $(KT_ARM_FLAGS) -Icore -c $(KT_SRC) -o $@

test-kernels-arm: $(KT_DIR)/fv_kernels_ref.arm.o
	$(ARM_SIZE) $<

$(KT_DIR)/test_kernels_m4.elf: tests/test_kernels.c tests/qemu_mps2_an386.c $(KT_SRC) $(KT_HDR) $(KT_VECTORS)
	$(ARM_CC) $(KT_CFLAGS) $(KT_ARM_FLAGS) --specs=rdimon.specs -Icore -I$(KT_DIR) \
		tests/test_kernels.c tests/qemu_mps2_an386.c $(KT_SRC) \
		-Wl,--section-start=.vectors=0x0 -Wl,-u,fv_qemu_vectors -Wl,--gc-sections -o $@

test-kernels-qemu: $(KT_DIR)/test_kernels_m4.elf
	timeout 300 $(QEMU_ARM) -M mps2-an386 -nographic -semihosting -kernel $<
