# STM32F4 boards (included by firmware/Makefile; paths are relative to firmware/).
#
#   make -C firmware BOARD=nucleo-f411re MODEL=vgg12-s31             release image
#   make -C firmware BOARD=netduinoplus2 MODEL=vgg12-s31             QEMU test image (fault injection)
#   make -C firmware BOARD=netduinoplus2 MODEL=vgg12-s31 VARIANT=bench instruction-count bench
#   make -C firmware size-report       flash and RAM of every (board, zoo model) pair
#   make -C firmware bench-firmware    instructions per MAC under QEMU (the rule is in ../../Makefile)
#   make -C firmware test-kernels-dsp  the DSP kernels against the reference, under QEMU
#
# Outputs: build/stm32f4/<board>/<model>/<variant>/firmware.{elf,bin,map}. Every link writes a
# map file and prints the memory use; warnings are errors (STYLE habit 7). The boards this port
# builds are the catalogue's (boards/catalog.json) whose "firmware_port" is stm32f4, each with its
# board file ports/stm32f4/boards/<board>.c; a board's clock, baud, flash and RAM come from the
# catalogue through a generated header and memory map (tools/board_config.py). VARIANT is release
# (no fault injection) by default for real boards and test (FV_TEST_BUILD, which links
# core/fv_fault.c and ports/stm32f4/faults.c) for emulated ones.
# KERNELS=ref makes the image boot with the reference kernels instead of the DSP ones (HELLO's
# flags bit 1 says which run). CATALOG=<path> builds from another catalogue.

ARM_PREFIX ?= arm-none-eabi-
ARM_CC ?= $(ARM_PREFIX)gcc
ARM_OBJCOPY ?= $(ARM_PREFIX)objcopy
ARM_SIZE ?= $(ARM_PREFIX)size
QEMU_ARM ?= qemu-system-arm
BOARD_CONFIG := tools/board_config.py
CATALOG := boards/catalog.json
# the catalogue's reader needs only the standard library: any python3 will do
PYTHON3 ?= $(if $(wildcard $(PYTHON)),$(PYTHON),python3)

# the port's boards, from the catalogue (one python3 start per make invocation: tens of ms)
STM_BOARDS := $(shell $(PYTHON3) $(BOARD_CONFIG) --boards stm32f4 --catalog $(CATALOG))
ifneq ($(.SHELLSTATUS),0)
$(error $(BOARD_CONFIG) --boards stm32f4 failed (its message is above): no board list from $(CATALOG))
endif

STM_ARCH := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
STM_CFLAGS := -std=c99 -O2 -g3 $(WARN) $(STM_ARCH) -ffunction-sections -fdata-sections \
              -fno-common -MMD -MP
STM_LDFLAGS := $(STM_ARCH) -nostartfiles -Wl,--gc-sections \
               -Wl,--print-memory-usage -Wl,--no-warn-rwx-segments
STM_SRC := $(CORE_SRC) core/fv_kernels_dsp.c core/fv_kernels_dsp_elementwise.c ports/stm32f4/startup.c ports/stm32f4/port.c ports/stm32f4/systick.c \
           ports/stm32f4/clock.c

.PHONY: stm32 measure size-report bench-firmware test-kernels-dsp $(STM_BOARDS)

ifneq ($(filter $(BOARD),$(STM_BOARDS)),)
ifeq ($(MODEL),)
$(error BOARD=$(BOARD) carries one model: add MODEL=<zoo id> (one of: $(notdir $(patsubst %/,%,$(dir $(TFLITES))))))
endif
STM_EMULATED := $(shell $(PYTHON3) $(BOARD_CONFIG) --boards stm32f4 --emulated --catalog $(CATALOG))
VARIANT ?= $(if $(filter $(BOARD),$(STM_EMULATED)),test,release)
ifeq ($(filter $(VARIANT),release test bench),)
$(error VARIANT=$(VARIANT): use release, test or bench)
endif
# KERNELS=ref links an image that boots with the reference kernels (the config word's flag; the
# emulated fleet patches it per instance); both kernel sets are in every image
KERNELS ?= dsp
ifeq ($(filter $(KERNELS),dsp ref),)
$(error KERNELS=$(KERNELS): use dsp or ref)
endif
STM_BOARD_DIR := $(BUILD)/stm32f4/$(BOARD)
STM_OUT := $(STM_BOARD_DIR)/$(MODEL)/$(VARIANT)$(if $(filter ref,$(KERNELS)),-ref)
STM_ELF := $(STM_OUT)/firmware.elf
STM_BIN := $(STM_OUT)/firmware.bin
STM_MEASURE := $(STM_OUT)/measure.elf
STM_DEFS := $(if $(filter test,$(VARIANT)),-DFV_TEST_BUILD) $(if $(filter bench,$(VARIANT)),-DFV_BENCH) \
            $(if $(filter ref,$(KERNELS)),-DFV_CONFIG_DEFAULT_FLAGS=0u)
STM_MAIN := ports/stm32f4/$(if $(filter bench,$(VARIANT)),bench.c,main.c)
STM_BOARD_SRC := ports/stm32f4/boards/$(subst -,_,$(BOARD)).c
# fault injection (the core's and the port's hooks): test images only, never a release one
STM_TEST_SRC := $(if $(filter test,$(VARIANT)),$(CORE_TEST_SRC) ports/stm32f4/faults.c)
STM_GEN_SRC := $(GEN)/model_$(subst -,_,$(subst .,_,$(MODEL))).c $(GEN)/models.c
STM_ALL_SRC := $(STM_SRC) $(STM_TEST_SRC) $(STM_MAIN) $(STM_BOARD_SRC)
# the model's objects depend on nothing but the model: compiled once, shared by boards and variants
# (a large model, like the int8 baseline's 1.3 MB of weights, is one long compile)
STM_GEN_OBJ := $(BUILD)/stm32f4/gen/$(MODEL)
STM_OBJS := $(patsubst %.c,$(STM_OUT)/obj/%.o,$(STM_ALL_SRC)) \
            $(patsubst $(GEN)/%.c,$(STM_GEN_OBJ)/%.o,$(STM_GEN_SRC))
STM_INC := -Icore -Iports/stm32f4 -Iports/stm32f4/boards -I$(STM_BOARD_DIR) -I$(GEN) -I$(STM_OUT)

$(BOARD) stm32: $(STM_ELF) $(STM_BIN)

# the board's header and memory map, from the catalogue
$(STM_BOARD_DIR)/fv_board.h $(STM_BOARD_DIR)/memory.ld $(STM_BOARD_DIR)/unlimited/memory.ld: $(CATALOG) $(BOARD_CONFIG)
	@mkdir -p $(STM_BOARD_DIR)/unlimited
	$(PYTHON3) $(BOARD_CONFIG) $(BOARD) --catalog $(CATALOG) --header $(STM_BOARD_DIR)/fv_board.h --ld $(STM_BOARD_DIR)/memory.ld
	$(PYTHON3) $(BOARD_CONFIG) $(BOARD) --catalog $(CATALOG) --header $(STM_BOARD_DIR)/fv_board.h \
	    --ld $(STM_BOARD_DIR)/unlimited/memory.ld --unlimited

$(filter-out $(GEN)/models.c,$(STM_GEN_SRC)): $(GEN)/models.c

# the DSP kernels' scratch, sized to the model's longest column
$(STM_OUT)/fv_dsp_limits.h: $(ZOO)/$(MODEL)/model.tflite tools/dsp_limits.py $(DSP_RULES)
	@mkdir -p $(dir $@)
	$(PYTHON) tools/dsp_limits.py $< $@
$(STM_OUT)/obj/core/fv_kernels_dsp.o $(STM_OUT)/obj/core/fv_kernels_dsp_elementwise.o: $(STM_OUT)/fv_dsp_limits.h

$(STM_OUT)/obj/%.o: %.c $(STM_BOARD_DIR)/fv_board.h | $(GEN)/models.c
	@mkdir -p $(dir $@)
	$(ARM_CC) $(STM_CFLAGS) $(STM_DEFS) $(STM_INC) -c $< -o $@

$(STM_GEN_OBJ)/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	$(ARM_CC) $(STM_CFLAGS) -Icore -I$(GEN) -c $< -o $@

# the image, linked for the board's real memory: a model that does not fit fails here
$(STM_ELF): $(STM_OBJS) ports/stm32f4/stm32f4.ld $(STM_BOARD_DIR)/memory.ld
	$(ARM_CC) $(STM_LDFLAGS) -T ports/stm32f4/stm32f4.ld -L$(STM_BOARD_DIR) -Wl,-Map=$(@:.elf=.map) \
	    $(STM_OBJS) -o $@
	$(ARM_SIZE) $@

$(STM_BIN): $(STM_ELF)
	$(ARM_OBJCOPY) -O binary $< $@

# the same objects linked into 64 MiB regions, for the size report: always links, and is measured
measure: $(STM_MEASURE)
$(STM_MEASURE): $(STM_OBJS) ports/stm32f4/stm32f4.ld $(STM_BOARD_DIR)/unlimited/memory.ld
	$(ARM_CC) $(STM_LDFLAGS) -T ports/stm32f4/stm32f4.ld -L$(STM_BOARD_DIR)/unlimited \
	    -Wl,-Map=$(@:.elf=.map) $(STM_OBJS) -o $@ > /dev/null
	$(ARM_SIZE) $@

-include $(STM_OBJS:.o=.d)
endif

# ---- every pair, every member ---------------------------------------------------------------
STM_MODELS := $(notdir $(patsubst %/,%,$(dir $(TFLITES))))
ENSEMBLE ?= $(ZOO)/ensemble.json
STM_MEMBERS = $(shell $(PYTHON3) -c "import json,sys; print(' '.join(m['id'] for m in json.load(open(sys.argv[1]))['members']))" $(ENSEMBLE))

# One recursive make per (board, model): release objects, linked into unbounded memory and
# measured; then the table, beside the boards' limits and the seed's X-CUBE-AI figures. Fails
# only when an ensemble member does not fit the board it is assigned.
size-report:
	@set -e; for b in $(STM_BOARDS); do for m in $(STM_MODELS); do \
	    $(MAKE) --no-print-directory BOARD=$$b MODEL=$$m VARIANT=release measure > $(BUILD)/size-$$b-$$m.log 2>&1 \
	        || { cat $(BUILD)/size-$$b-$$m.log; exit 1; }; \
	done; done
	$(PYTHON3) tools/size_report.py --build $(BUILD) --zoo $(ZOO) --ensemble $(ENSEMBLE) \
	    --boards $(STM_BOARDS) --models $(STM_MODELS) --json $(BUILD)/size-report.json

# The optimised kernels against the reference, byte for byte, under QEMU's Cortex-M4 (MPS2
# AN386, semihosting): the numpy engine's kernel vectors through the opt functions, then random
# shapes (odd channel counts, strides, dilation, padding, the fallbacks) opt vs ref.
KD_DIR := $(BUILD)/test
KD_FLAGS := -std=c99 -O2 $(WARN) $(STM_ARCH) -ffunction-sections -fdata-sections --specs=rdimon.specs \
            -Wl,--section-start=.vectors=0x0 -Wl,-u,fv_qemu_vectors -Wl,--gc-sections
KD_SRC := core/fv_kernels_ref.c core/fv_kernels_dsp.c core/fv_kernels_dsp_elementwise.c tests/qemu_mps2_an386.c
# the header the two DSP files share (their scratch)
$(addprefix $(KD_DIR)/test_kernels_,opt_m4.elf dsp_m4.elf dsp_fused_m4.elf): core/fv_kernels_dsp.h
# the fused test also runs the runner
$(KD_DIR)/test_kernels_dsp_fused_m4.elf: core/fv_runner.h
# the random generator the random tests share (tests/test_rng.h: a change there changes their cases)
$(KD_DIR)/test_kernels_dsp_m4.elf $(KD_DIR)/test_kernels_dsp_fused_m4.elf \
    $(KD_DIR)/test_kernels_dsp_pool_m4.elf: tests/test_rng.h
# the helpers the two fused-pair tests share (tests/test_pair.h: quantisation, producer, comparison)
$(KD_DIR)/test_kernels_dsp_fused_m4.elf $(KD_DIR)/test_kernels_dsp_pool_m4.elf: tests/test_pair.h

$(KD_DIR)/test_kernels_opt_m4.elf: tests/test_kernels.c $(KD_SRC) $(KT_HDR) $(KT_VECTORS)
	$(ARM_CC) $(KD_FLAGS) -DFV_TEST_OPT -Icore -I$(KD_DIR) tests/test_kernels.c $(KD_SRC) -o $@

$(KD_DIR)/test_kernels_dsp_m4.elf: tests/test_kernels_dsp.c $(KD_SRC) $(KT_HDR) | $(KD_DIR)
	$(ARM_CC) $(KD_FLAGS) -DFV_DSP_MAX_K=512 -DFV_DSP_DW_WORDS=256 -DFV_DSP_PW_WORDS=1024 -Icore tests/test_kernels_dsp.c $(KD_SRC) -o $@

# the fused convolution + depthwise pairs, with a model's scratch sizes (room for dsconv26's planes)
$(KD_DIR)/test_kernels_dsp_fused_m4.elf: tests/test_kernels_dsp_fused.c $(KD_SRC) core/fv_runner.c $(KT_HDR) | $(KD_DIR)
	$(ARM_CC) $(KD_FLAGS) -DFV_DSP_DW_WORDS=16384 -DFV_DSP_PW_WORDS=4096 -Icore tests/test_kernels_dsp_fused.c \
	    $(KD_SRC) core/fv_runner.c -o $@

# the fused convolution + max pool pairs, with a model's scratch sizes (the baseline's longest
# column; the pre-widened words of the zoo's builds)
$(KD_DIR)/test_kernels_dsp_pool_m4.elf: tests/test_kernels_dsp_pool.c $(KD_SRC) core/fv_runner.c $(KT_HDR) \
                                        core/fv_kernels_dsp.h core/fv_runner.h | $(KD_DIR)
	$(ARM_CC) $(KD_FLAGS) -DFV_DSP_MAX_K=1152 -DFV_DSP_PW_WORDS=4096 -DFV_DSP_POOL_WORDS=128 -Icore \
	    tests/test_kernels_dsp_pool.c $(KD_SRC) core/fv_runner.c -o $@

test-kernels-dsp: $(KD_DIR)/test_kernels_opt_m4.elf $(KD_DIR)/test_kernels_dsp_m4.elf \
                  $(KD_DIR)/test_kernels_dsp_fused_m4.elf $(KD_DIR)/test_kernels_dsp_pool_m4.elf
	timeout 300 $(QEMU_ARM) -M mps2-an386 -nographic -semihosting -kernel $(KD_DIR)/test_kernels_opt_m4.elf
	timeout 300 $(QEMU_ARM) -M mps2-an386 -nographic -semihosting -kernel $(KD_DIR)/test_kernels_dsp_m4.elf
	timeout 300 $(QEMU_ARM) -M mps2-an386 -nographic -semihosting -kernel $(KD_DIR)/test_kernels_dsp_fused_m4.elf
	timeout 300 $(QEMU_ARM) -M mps2-an386 -nographic -semihosting -kernel $(KD_DIR)/test_kernels_dsp_pool_m4.elf
