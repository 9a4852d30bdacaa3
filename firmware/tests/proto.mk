# Protocol tests and the codec fuzzer (included by firmware/Makefile).
#
# test-proto runs tests/test_proto.c twice: built as a test image (FV_TEST_BUILD, with
# core/fv_fault.c: FAULT arms a fault) and as a release image (neither: FAULT is refused with
# ERROR(TEST_ONLY), and the port links without fault hooks).
PROTO_BUILD := $(BUILD)/test
PROTO_VEC := $(PROTO_BUILD)/proto_vectors.h
PROTO_SRC := core/fv_proto.c core/fv_app.c core/fv_runner.c core/fv_kernels_ref.c tests/port_fake.c
PROTO_TEST_SRC := $(PROTO_SRC) $(CORE_TEST_SRC)
PROTO_CFLAGS := -std=c99 -O1 -g $(WARN) -fsanitize=address,undefined -fno-sanitize-recover=all -Icore -Itests
FUZZ_SECONDS ?= 30
CLANG ?= clang

.PHONY: test-proto fuzz-codec

$(PROTO_VEC): $(ROOT)/tests/vectors/protocol.json tests/make_proto_vectors.py
	@mkdir -p $(PROTO_BUILD)
	$(PYTHON) tests/make_proto_vectors.py $< $@

$(PROTO_BUILD)/test_proto: tests/test_proto.c $(PROTO_TEST_SRC) $(wildcard core/*.h) tests/port_fake.h $(PROTO_VEC)
	$(CC) $(PROTO_CFLAGS) -DFV_TEST_BUILD -I$(PROTO_BUILD) -o $@ tests/test_proto.c $(PROTO_TEST_SRC)

$(PROTO_BUILD)/test_proto_release: tests/test_proto.c $(PROTO_SRC) $(wildcard core/*.h) tests/port_fake.h $(PROTO_VEC)
	$(CC) $(PROTO_CFLAGS) -I$(PROTO_BUILD) -o $@ tests/test_proto.c $(PROTO_SRC)

test-proto: $(PROTO_BUILD)/test_proto $(PROTO_BUILD)/test_proto_release
	$(PROTO_BUILD)/test_proto
	$(PROTO_BUILD)/test_proto_release

$(PROTO_BUILD)/fuzz_proto: tests/fuzz_proto.c $(PROTO_TEST_SRC) $(wildcard core/*.h) tests/port_fake.h
	@mkdir -p $(PROTO_BUILD)
	$(CLANG) -std=c99 -O1 -g -DFV_TEST_BUILD -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -Icore -Itests -o $@ tests/fuzz_proto.c $(PROTO_TEST_SRC)

# libFuzzer prints "Done N runs in S second(s)" on success and exits non-zero on a crash
fuzz-codec: $(PROTO_BUILD)/fuzz_proto $(PROTO_VEC)
	@mkdir -p $(PROTO_BUILD)/corpus
	$(PYTHON) -c "import json,pathlib; d=json.load(open('$(ROOT)/tests/vectors/protocol.json')); \
	  [pathlib.Path('$(PROTO_BUILD)/corpus/'+v['name']).write_bytes(bytes.fromhex(v['wire_hex'])) for v in d['frames']+d['rejects']]"
	$(PROTO_BUILD)/fuzz_proto -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -print_final_stats=1 \
	    -artifact_prefix=$(PROTO_BUILD)/ $(PROTO_BUILD)/corpus
