# npid-loader extras (included by the Makefile).
#
# augment.o at -O3: the colour-jitter blends only vectorise with GCC's full cost model, which
# takes them from ~4 us to ~0.5 us per 32x32 image (the >= 15,000 img/s target needs it);
# the branch-free hue loop additionally needs -fno-trapping-math (so selects between float
# results may be if-converted; results are unchanged: no reassociation or contraction is
# allowed) and -fno-tree-sink (which would move work back under branches).
# A command-line OPT (make asan sets OPT=-O1) still wins over this.
$(BUILD)/obj/common/augment.o: OPT = -O3 -fno-trapping-math -fno-tree-sink

# make fuzz [FUZZ_SECONDS=60]: libFuzzer (clang, libclang-rt-14-dev) with ASan+UBSan on the
# JPEG decode wrapper, on the PNG and WebP paths of the image front-end and on the
# task-frame decoder, each for a bounded time. Seeds: the bad-image fixtures (JPEG, PNG,
# WebP) plus real JPEGs written by the synth generator. Crashes are written to build/fuzz/
# and fail the target.
# The bad-image fixture generator (tests/fixtures/bad-images/mkbad.c): integration scripts
# call $(NPID_BIN)/tools/mkbad-images DIR; `make check` builds it first.
$(BUILD)/tools/mkbad-images: tests/fixtures/bad-images/mkbad.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS_ALL)
check: $(BUILD)/tools/mkbad-images

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_FLAGS    = -std=c11 -D_GNU_SOURCE -g -O1 -I. $(PKG_CFLAGS) \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIBSRC  := common/jpeg.c common/image.c common/augment.c common/rng.c common/log.c common/proto_task.c \
                common/mp.c

.PHONY: fuzz
$(FUZZ_DIR)/fuzz_%: loader/fuzz/fuzz_%.c $(FUZZ_LIBSRC)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LIBSRC) $(PKG_LIBS) -lm

fuzz: $(FUZZ_DIR)/fuzz_jpeg $(FUZZ_DIR)/fuzz_png $(FUZZ_DIR)/fuzz_webp $(FUZZ_DIR)/fuzz_proto_task $(BUILD)/npid-loader $(BUILD)/tools/mkbad-images
	@rm -rf $(FUZZ_DIR)/seed-jpeg $(FUZZ_DIR)/corpus-jpeg $(FUZZ_DIR)/corpus-png $(FUZZ_DIR)/corpus-webp && mkdir -p $(FUZZ_DIR)/seed-jpeg $(FUZZ_DIR)/corpus-jpeg $(FUZZ_DIR)/corpus-png $(FUZZ_DIR)/corpus-webp $(FUZZ_DIR)/corpus-task
	$(BUILD)/tools/mkbad-images $(FUZZ_DIR)/seed-jpeg/bad >/dev/null
	$(BUILD)/npid-loader synth --out $(FUZZ_DIR)/seed-jpeg/synth --per-class 2 --test-per-class 0 --size 24 --log-level warn >/dev/null
	find $(FUZZ_DIR)/seed-jpeg -type f -size -200k -exec cp {} $(FUZZ_DIR)/corpus-jpeg/ \; 2>/dev/null; true
	cp $(FUZZ_DIR)/seed-jpeg/bad/*.png $(FUZZ_DIR)/corpus-png/ && cp $(FUZZ_DIR)/seed-jpeg/bad/*.webp $(FUZZ_DIR)/corpus-webp/
	cd $(FUZZ_DIR) && ./fuzz_jpeg -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -timeout=10 -max_len=65536 corpus-jpeg
	cd $(FUZZ_DIR) && ./fuzz_png -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -timeout=10 -max_len=65536 corpus-png
	cd $(FUZZ_DIR) && ./fuzz_webp -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -timeout=10 -max_len=65536 corpus-webp
	cd $(FUZZ_DIR) && ./fuzz_proto_task -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -timeout=10 corpus-task
