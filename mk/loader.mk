# npid-loader extras (included by the Makefile).
#
# augment.o at -O3: the colour-jitter blends only vectorise with GCC's full cost model, which
# takes them from ~4 us to ~0.5 us per 32x32 image (the >= 15,000 img/s target needs it);
# the branch-free hue loop additionally needs -fno-trapping-math (so selects between float
# results may be if-converted; results are unchanged: no reassociation or contraction is
# allowed) and -fno-tree-sink (which would move work back under branches).
# A command-line OPT (make asan sets OPT=-O1) still wins over this.
$(BUILD)/obj/common/augment.o: OPT = -O3 -fno-trapping-math -fno-tree-sink

# The bad-image fixture generator (tests/fixtures/bad-images/mkbad.c): integration scripts
# call $(NPID_BIN)/tools/mkbad-images DIR; `make check` builds it first.
$(BUILD)/tools/mkbad-images: tests/fixtures/bad-images/mkbad.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS_ALL)
check: $(BUILD)/tools/mkbad-images
