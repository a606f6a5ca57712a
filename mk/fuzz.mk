# Fuzzing (included by the Makefile): libFuzzer targets built with clang, ASan and UBSan.
#
#   make fuzz    [FUZZ_SECONDS=60]   every target for FUZZ_SECONDS each (longer runs: raise it)
#   make fuzz-ci [FUZZ_SECONDS=60] [FUZZ_CI_IMAGE_SECONDS=20]   what .ci/run runs: the three
#                network decoders for FUZZ_SECONDS each, the image decoders for a shorter slot
#
# Targets (fuzz/fuzz_NAME.c): network decoders proto_bank (bankd requests and the replies
# bank clients read), proto_task (loader <-> trainer frames), event (what evald reads from
# a trainer's PUB socket); image decoders jpeg, png, webp. Seeds (build/fuzz/seed-NAME):
# frames recorded between real processes by fuzz/capture.sh (a tiny training run, a resume,
# an evaluation and the Python bank client, through the fuzz-capture relay); the bad-image
# fixtures and synth JPEGs for the image decoders. Corpora (build/fuzz/corpus-NAME) grow
# across runs. Each target runs under fuzz/run.sh, which prints its runs, rate and coverage;
# every target runs even when one fails, and any finding (crash, sanitizer report, leak,
# timeout, out-of-memory) fails the target with the saved input's path
# (build/fuzz/NAME-crash-<sha1>) and the command that replays it.
# Needs clang and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes): deps/test.txt.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CI_IMAGE_SECONDS ?= 20
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_FLAGS    = -std=c11 -D_GNU_SOURCE -g -O1 -I. $(PKG_CFLAGS) $(FUZZ_SAN)
# the common/ code the targets reach, instrumented for coverage (an archive: each target
# links only what it calls). Warnings for common/ are the GCC build's; clang's are on for
# the targets themselves.
FUZZ_LIBSRC  := common/jpeg.c common/image.c common/imghdr.c common/augment.c common/rng.c \
                common/log.c common/mp.c common/proto_task.c common/proto_bank.c common/event.c \
                common/msg.c common/clock.c common/sig.c common/json.c common/curve.c \
                common/durable.c
FUZZ_LIBOBJ  := $(FUZZ_LIBSRC:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_NET     := proto_bank proto_task event
FUZZ_IMAGE   := jpeg png webp
FUZZ_BINS    := $(foreach n,$(FUZZ_NET) $(FUZZ_IMAGE),$(FUZZ_DIR)/fuzz_$(n))
# -max_len per target: network frames as captured (fuzz/capture.sh keeps those <= 16 KiB)
FUZZ_MAXLEN_NET   := 16384
FUZZ_MAXLEN_IMAGE := 65536

.PHONY: fuzz fuzz-ci
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_DIR)/libnpid-fuzz.a: $(FUZZ_LIBOBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_DIR)/libnpid-fuzz.a
	$(FUZZ_CC) $(FUZZ_FLAGS) $(filter-out -Wno-psabi,$(WARN)) -fsanitize=fuzzer -MMD -MP -o $@ $< \
	    $(FUZZ_DIR)/libnpid-fuzz.a $(PKG_LIBS) -lpthread -lm

# the recording relay is an ordinary program (not instrumented)
$(FUZZ_DIR)/fuzz-capture: fuzz/capture.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS_ALL)

# Seeds, remade when the programs that produced them change. Network: real traffic.
$(FUZZ_DIR)/seeds-net.stamp: fuzz/capture.sh $(FUZZ_DIR)/fuzz-capture $(BINS) tests/bankd_client.py
	rm -rf $(FUZZ_DIR)/traffic $(foreach n,$(FUZZ_NET),$(FUZZ_DIR)/seed-$(n))
	sh fuzz/capture.sh $(BUILD) $(FUZZ_DIR)/fuzz-capture $(FUZZ_DIR)/traffic
	mkdir -p $(foreach n,$(FUZZ_NET),$(FUZZ_DIR)/seed-$(n))
	find $(FUZZ_DIR)/traffic -name 'bank-*' -exec cp {} $(FUZZ_DIR)/seed-proto_bank/ \;
	find $(FUZZ_DIR)/traffic -name 'pybank-*' -exec cp {} $(FUZZ_DIR)/seed-proto_bank/ \;
	find $(FUZZ_DIR)/traffic -name 'task-*' -exec cp {} $(FUZZ_DIR)/seed-proto_task/ \;
	find $(FUZZ_DIR)/traffic -name 'events-*' -exec cp {} $(FUZZ_DIR)/seed-event/ \;
	touch $@
# Images: the bad-image fixtures (JPEG, PNG, WebP) and real JPEGs from the synth generator.
$(FUZZ_DIR)/seeds-image.stamp: $(BUILD)/npid-loader $(BUILD)/tools/mkbad-images
	rm -rf $(FUZZ_DIR)/images $(foreach n,$(FUZZ_IMAGE),$(FUZZ_DIR)/seed-$(n))
	mkdir -p $(FUZZ_DIR)/images $(foreach n,$(FUZZ_IMAGE),$(FUZZ_DIR)/seed-$(n))
	$(BUILD)/tools/mkbad-images $(FUZZ_DIR)/images/bad >/dev/null
	$(BUILD)/npid-loader synth --out $(FUZZ_DIR)/images/synth --per-class 2 --test-per-class 0 \
	    --size 24 --log-level warn >/dev/null
	find $(FUZZ_DIR)/images -type f -size -200k -exec cp {} $(FUZZ_DIR)/seed-jpeg/ \;
	cp $(FUZZ_DIR)/images/bad/*.png $(FUZZ_DIR)/seed-png/
	cp $(FUZZ_DIR)/images/bad/*.webp $(FUZZ_DIR)/seed-webp/
	touch $@

# fuzz_run SECONDS-NET SECONDS-IMAGE: every target in turn, then fails if any did
define fuzz_run
	@rc=0; \
	for n in $(FUZZ_NET); do \
	    sh fuzz/run.sh $(FUZZ_DIR) $$n $(1) $(FUZZ_MAXLEN_NET) || rc=1; \
	done; \
	for n in $(FUZZ_IMAGE); do \
	    sh fuzz/run.sh $(FUZZ_DIR) $$n $(2) $(FUZZ_MAXLEN_IMAGE) || rc=1; \
	done; \
	[ $$rc -eq 0 ] || \
	    echo "fuzz: FAILED: a target found a problem (above); inputs saved in $(FUZZ_DIR)/" >&2; \
	exit $$rc
endef

fuzz: $(FUZZ_BINS) $(FUZZ_DIR)/seeds-net.stamp $(FUZZ_DIR)/seeds-image.stamp
	$(call fuzz_run,$(FUZZ_SECONDS),$(FUZZ_SECONDS))

fuzz-ci: $(FUZZ_BINS) $(FUZZ_DIR)/seeds-net.stamp $(FUZZ_DIR)/seeds-image.stamp
	$(call fuzz_run,$(FUZZ_SECONDS),$(FUZZ_CI_IMAGE_SECONDS))

-include $(wildcard $(FUZZ_DIR)/obj/common/*.d $(FUZZ_DIR)/*.d)
