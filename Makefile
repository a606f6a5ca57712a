# npid: non-recursive build. Outputs go under $(BUILD) (default build/).
#
#   make            all programs into build/
#   make check      every test (unit tests, then integration scripts)
#   make asan       the tests under ASan + UBSan (build/asan/)
#   make bench      every benchmark (one JSON line per figure); ONLY=<name> runs one
#   make run        train with the launcher (scripts/npid run; DATA= MODEL= EPOCHS= ...)
#   make install    PREFIX=/usr/local DESTDIR=
#   make clean
#
# Sources are found by name: common/*.c and common/nn/*.c form libnpid; each program
# directory P/ links P/main.c with the rest of P/*.c into npid-P; tests/check_*.c are Check
# suites; bench/bench_*.c are benchmark programs; tools/npid-*.c are test and benchmark
# helpers (mk/tools.mk: built by make check, not installed). Fragments in mk/*.mk add extra
# targets.

.DEFAULT_GOAL := all
BUILD   ?= build
PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
ARCH    ?= -march=native
OPT     ?= -O2
PKGS    := libzmq msgpack openblas libjpeg libpng libwebp
# what each program links (the architecture: bankd is messaging only, the loader decodes,
# the trainer runs the network and decodes nothing, evald runs the network and decodes). Programs link with --no-as-needed, so these lists
# are exactly what each binary needs at run time (tests/it_build_deps.sh checks it).
# msgpack-c is used through its header-only packer (common/mp.h): compiled in, not linked.
bankd_PKGS   := libzmq
loader_PKGS  := libzmq libjpeg libpng libwebp
trainer_PKGS := libzmq openblas
evald_PKGS   := libzmq openblas libjpeg libpng libwebp

# MPI (the data-parallel trainer, trainer/dp.h): on when OpenMPI's pkg-config file is there
# (libopenmpi-dev), MPI=0 builds a trainer without it, MPI=1 insists.
MPI ?= $(shell pkg-config --exists ompi-c && echo 1 || echo 0)
ifeq ($(MPI),1)
trainer_PKGS += ompi-c
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c) -DNPID_MPI
MPI_LIBS   := $(shell pkg-config --libs ompi-c)
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
CHECK_LIBS := $(shell pkg-config --libs check)

CFLAGS  ?= $(OPT) -g $(ARCH)
# -Wno-psabi: below AVX-512, GCC notes every static inline helper taking a 64-byte vector
# (common/nn/vec.h); those are inlined into per-level kernels (common/cpu.h), no real call.
WARN       = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wvla -Wno-psabi
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP -I. $(PKG_CFLAGS) $(CFLAGS) $(SAN)
LDLIBS_ALL = $(PKG_LIBS) $(MPI_LIBS) -lpthread -lm

PROGS      := loader trainer bankd evald
LIB_SRC    := $(wildcard common/*.c common/nn/*.c)
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIBNPID    := $(BUILD)/libnpid.a

# per-program libraries: everything in P/ except main.c (tests link these too)
define prog_rules
$(1)_SRC := $$(filter-out $(1)/main.c,$$(wildcard $(1)/*.c))
$(1)_OBJ := $$($(1)_SRC:%.c=$$(BUILD)/obj/%.o)
$$(BUILD)/lib$(1).a: $$($(1)_OBJ)
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
$$(BUILD)/npid-$(1): $$(BUILD)/obj/$(1)/main.o $$(BUILD)/lib$(1).a $$(LIBNPID)
	$$(CC) $$(ALL_CFLAGS) -Wl,--no-as-needed -o $$@ $$^ \
		$$(shell pkg-config --libs $$($(1)_PKGS)) -lpthread -lm
endef
$(foreach p,$(PROGS),$(eval $(call prog_rules,$(p))))

PROG_LIBS  := $(foreach p,$(PROGS),$(BUILD)/lib$(p).a)
BINS       := $(foreach p,$(PROGS),$(if $(wildcard $(p)/main.c),$(BUILD)/npid-$(p)))

TEST_SRC   := $(wildcard tests/check_*.c)
TEST_BINS  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC  := $(wildcard bench/bench_*.c)
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all check unit integration asan bench install clean run
all: $(BINS) $(LIBNPID)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# only trainer/dp.c sees MPI's header
$(BUILD)/obj/trainer/dp.o: ALL_CFLAGS += $(MPI_CFLAGS)

$(LIBNPID): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# libraries are listed twice so that program code may call common/ and vice versa
$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(PROG_LIBS) $(LIBNPID)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(PROG_LIBS) $(LIBNPID) $(PROG_LIBS) $(LDLIBS_ALL) $(CHECK_LIBS)

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(PROG_LIBS) $(LIBNPID)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(PROG_LIBS) $(LIBNPID) $(PROG_LIBS) $(LDLIBS_ALL)

# tests/run runs the Check binaries, then every tests/it_*.sh integration script;
# ONLY=<pattern> narrows it.
check: all $(TEST_BINS)
	NPID_BIN=$(abspath $(BUILD)) tests/run $(ONLY)

asan:
	$(MAKE) BUILD=build/asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" check

bench: all $(BENCH_BINS)
	NPID_BIN=$(abspath $(BUILD)) bench/run $(ONLY)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 scripts/npid scripts/npid-plot scripts/npid-baselines scripts/npid-keys $(DESTDIR)$(PREFIX)/bin/

# make run [DATA=dir] [MODEL=m] [EPOCHS=n] [LOADERS=n] [RANKS=n] [RUN_DIR=dir] [PRESET=p]
#          [TRAIN_ARGS="..."]
run: all
	DATA="$(DATA)" MODEL="$(MODEL)" EPOCHS="$(EPOCHS)" LOADERS="$(or $(LOADERS),1)" \
	RANKS="$(or $(RANKS),1)" \
	RUN_DIR="$(RUN_DIR)" PRESET="$(or $(PRESET),cifar)" TRAIN_ARGS="$(TRAIN_ARGS)" \
	NPID_BIN=$(abspath $(BUILD)) scripts/npid run

clean:
	rm -rf $(BUILD)

-include $(wildcard mk/*.mk)
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
