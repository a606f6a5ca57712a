# Test and benchmark helpers (included by the Makefile): each tools/npid-NAME.c is a program
# $(BUILD)/tools/npid-NAME. `make check` builds them all, `make bench` and `make parity` the
# ones their scripts call; `make all` builds none and `make install` installs none.
#
#   npid-consume   stand-in trainer on trainer/taskq.h and trainer/plan.h (loader tests, bench)
#   npid-pixop     augmentation primitives on raw RGB from stdin, and JPEG files decoded at
#                  the DCT scale (tests/it_loader_pil.sh, tests/it_loader_dct_pil.sh)
#   npid-step      one training step from a checkpoint (tests/it_isa_levels.sh, bench/parity.sh)
#   npid-mkckpt    a checkpoint of an untrained network (evald tests, bench/peer/step_parity.py)
#
# A tool links the program libraries its _LIBS names and libnpid (the list given twice, as for
# the tests, so that program code and common/ may call each other) and every package
# library.

TOOL_SRC  := $(wildcard tools/npid-*.c)
TOOL_BINS := $(TOOL_SRC:tools/%.c=$(BUILD)/tools/%)
npid-consume_LIBS := trainer
npid-pixop_LIBS   :=
npid-step_LIBS    := trainer
npid-mkckpt_LIBS  :=

define tool_rule
$$(BUILD)/tools/$(1): $$(BUILD)/obj/tools/$(1).o $$(foreach p,$$($(1)_LIBS),$$(BUILD)/lib$$(p).a) \
		$$(LIBNPID)
	@mkdir -p $$(@D)
	$$(CC) $$(ALL_CFLAGS) -o $$@ $$< $$(filter %.a,$$^) $$(filter %.a,$$^) $$(LDLIBS_ALL)
endef
$(foreach t,$(TOOL_BINS:$(BUILD)/tools/%=%),$(eval $(call tool_rule,$(t))))

check: $(TOOL_BINS)
bench: $(BUILD)/tools/npid-consume
parity: $(BUILD)/tools/npid-step $(BUILD)/tools/npid-mkckpt
