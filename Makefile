# libmae — build, test, install.
#   make                 lib/libmae.a and lib/libmae.so.1.0.0 (+ links), examples
#   make demo            reconstruct masked Fashion-MNIST images with the committed small model
#   make test            build and run every test (see tests/run.sh)
#   make test T=png      only the tests whose name contains png (docs/TESTING.md)
#   make help            every target, one line each
#   make pretrain probe  re-create the demo model from Fashion-MNIST, then its linear probes
#   make OPENMP=1        OpenMP instead of the built-in thread pool (opt-in: libgomp exits the
#                        process when it cannot create threads; the built-in pool does not)
#   make CC=clang        any C11 compiler
#   make CC=x86_64-w64-mingw32-gcc   Windows: DLL + import library + static library in
#                        lib/x86_64-w64-mingw32/, objects in build-win/ (docs/BUILDING.md)
#   make SANITIZE=address,undefined test    sanitizer build in build-san/
#   make fuzz-long FUZZ_SECONDS=3600        every fuzz target for that long (not in CI)

VERSION_MAJOR := $(shell sed -n 's/^\#define MAE_VERSION_MAJOR \([0-9]*\).*/\1/p' include/mae.h)
VERSION_MINOR := $(shell sed -n 's/^\#define MAE_VERSION_MINOR \([0-9]*\).*/\1/p' include/mae.h)
VERSION_PATCH := $(shell sed -n 's/^\#define MAE_VERSION_PATCH \([0-9]*\).*/\1/p' include/mae.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

CC      ?= cc
OPENMP  ?= 0
SANITIZE ?=
PREFIX  ?= /usr/local
DESTDIR ?=
TARGET  := $(shell $(CC) -dumpmachine 2>/dev/null)
ARCH    := $(firstword $(subst -, ,$(TARGET)))
# Windows (MinGW-w64) when the compiler's target names mingw: a DLL instead of a shared object.
WINDOWS := $(if $(findstring mingw,$(TARGET)),1,)

OPTFLAGS ?= -O2
WARN    := -Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS  ?= $(OPTFLAGS)
ALLCFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L $(CFLAGS) $(WARN) -fPIC -fvisibility=hidden -Iinclude -Isrc
LDLIBS  := -lm -lpthread

ifeq ($(OPENMP),1)
  ALLCFLAGS += -fopenmp
  LDLIBS += -fopenmp
endif

BUILD := build
ifeq ($(WINDOWS),1)
  # C99 printf (%zu, %td) instead of msvcrt's; the DLL exports what MAE_API marks; no -fPIC
  # (all Windows code is position independent); runtime libraries linked in statically, so that
  # the DLL and the programs need no libgomp/libwinpthread DLL beside them.
  BUILD := build-win
  ALLCFLAGS := $(filter-out -fPIC -D_POSIX_C_SOURCE=200809L,$(ALLCFLAGS)) -D__USE_MINGW_ANSI_STDIO=1 -DMAE_BUILD_DLL
  LDLIBS += -static
  # the POSIX tests compile unchanged against two small stand-ins (tests/win)
  TEST_CFLAGS := -include tests/win/compat.h -Itests/win/include
endif
ifneq ($(SANITIZE),)
  BUILD := build-san
  ALLCFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -g
  LDLIBS += -fsanitize=$(SANITIZE)
endif

# Kernel files carry their instruction set in their name and get its flags; the platform layer
# has one file per OS (src/os).
SRCS := $(sort $(wildcard src/*/*.c))
ifeq ($(WINDOWS),1)
  SRCS := $(filter-out src/os/os_unix.c,$(SRCS))
else
  SRCS := $(filter-out src/os/os_win.c,$(SRCS))
endif
ifeq ($(ARCH),x86_64)
  SRCS := $(filter-out %_neon.c %_neonbf16.c,$(SRCS))
else ifeq ($(ARCH),aarch64)
  SRCS := $(filter-out %_avx2.c %_avx512.c %_avx512bf16.c,$(SRCS))
else
  SRCS := $(filter-out %_neon.c %_neonbf16.c %_avx2.c %_avx512.c %_avx512bf16.c,$(SRCS))
endif
OBJS := $(SRCS:%.c=$(BUILD)/%.o)

$(BUILD)/%_avx2.o: ALLCFLAGS += -mavx2 -mfma
$(BUILD)/%_avx512.o: ALLCFLAGS += -mavx512f -mavx512vl -mavx512dq -mavx2 -mfma
$(BUILD)/%_avx512bf16.o: ALLCFLAGS += -mavx512f -mavx512vl -mavx512dq -mavx512bw -mavx512bf16 -mavx2 -mfma
$(BUILD)/%_neonbf16.o: ALLCFLAGS += -march=armv8.2-a+bf16

LIBDIR := lib
STATIC := $(LIBDIR)/libmae.a
SHARED := $(LIBDIR)/libmae.so.$(VERSION)
ifneq ($(SANITIZE),)
  STATIC := $(BUILD)/libmae.a
  SHARED := $(BUILD)/libmae.so.$(VERSION)
endif
EXE :=
ifeq ($(WINDOWS),1)
  # libmae-1.dll (the major version in the name, as a soname would carry it), its import library
  # libmae.dll.a, and the static libmae.a, in a folder of their own so that they never mix with
  # the native lib/libmae.a
  LIBDIR := lib/$(TARGET)
  STATIC := $(LIBDIR)/libmae.a
  SHARED := $(LIBDIR)/libmae-$(VERSION_MAJOR).dll
  IMPLIB := $(LIBDIR)/libmae.dll.a
  EXE := .exe
endif

TEST_SRCS := $(sort $(wildcard tests/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%$(EXE))
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%$(EXE))

.PHONY: all lib examples test check clean install uninstall bench demo pretrain probe help

all: lib examples

lib: $(STATIC) $(SHARED)

# -MMD -MP: each object (and test, example, benchmark) writes the headers it included to a .d
# file beside it, read back below, so that changing a header rebuilds exactly what includes it.
DEPFLAGS = -MMD -MP -MF $@.d

$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(DEPFLAGS) -c $< -o $@

$(STATIC): $(OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

ifeq ($(WINDOWS),1)
$(SHARED): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $^ -Wl,--out-implib,$(IMPLIB) $(LDLIBS)
else
$(SHARED): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libmae.so.$(VERSION_MAJOR) -o $@ $^ $(LDLIBS)
	ln -sf libmae.so.$(VERSION) $(dir $@)libmae.so.$(VERSION_MAJOR)
	ln -sf libmae.so.$(VERSION_MAJOR) $(dir $@)libmae.so
endif

# Tests link the static library so that they can reach internal functions too. TU_SRCDIR: the
# source tree, where a test finds tests/data from any working directory (tests/testutil.h).
$(BUILD)/tests/%$(EXE): tests/%.c $(STATIC) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(TEST_CFLAGS) $(DEPFLAGS) -Wno-missing-prototypes -DTU_SRCDIR='"$(CURDIR)"' $< -o $@ $(STATIC) $(LDLIBS)

# Windows only (tests/check_windows.sh): what only Windows can get wrong
$(BUILD)/tests/win/%$(EXE): tests/win/%.c $(STATIC) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(DEPFLAGS) -Wno-missing-prototypes -DTU_SRCDIR='"$(CURDIR)"' $< -o $@ $(STATIC) $(LDLIBS)

$(BUILD)/examples/%$(EXE): examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(DEPFLAGS) $< -o $@ $(STATIC) $(LDLIBS)

examples: $(EXAMPLE_BINS)

# T=WORDS: only the tests whose name contains one of the words (unit binaries and check scripts);
# only those binaries are built.
T ?=
TEST_RUN_BINS := $(if $(T),$(foreach b,$(TEST_BINS),$(if $(strip $(foreach w,$(T),$(findstring $(w),$(notdir $(b))))),$(b))),$(TEST_BINS))
test: lib $(TEST_RUN_BINS) $(EXAMPLE_BINS) $(BUILD)/examples/mae$(EXE)
	@BUILD=$(BUILD) SHARED=$(SHARED) CC="$(CC)" SANITIZE="$(SANITIZE)" sh tests/run.sh $(T)

check: test

clean:
	rm -rf build build-san build-win lib/libmae.a lib/libmae.so* lib/*-mingw32

# The main job: a small MAE that this project pretrained on Fashion-MNIST with libmae itself
# (`make pretrain`, weights stored as F16 in examples/data) hides 75% of the patches of ten
# Fashion-MNIST test images and reconstructs them; the grid goes to $(DEMO_OUT).
DEMO_MODEL := examples/data/mae-fmnist.safetensors
DEMO_OUT   := $(BUILD)/demo/reconstruction.png
DEMO_CLASSIFIER := examples/data/mae-fmnist-classifier.safetensors
demo: lib $(BUILD)/examples/mae
	@mkdir -p $(dir $(DEMO_OUT))
	@$(BUILD)/examples/mae info $(DEMO_MODEL) | head -n 3
	$(BUILD)/examples/mae reconstruct $(DEMO_MODEL) $(sort $(wildcard examples/data/*.png)) \
	    --mask-ratio 0.75 --seed 0 -o $(DEMO_OUT)
	@echo "demo: the picture is $(DEMO_OUT) (rows: images; columns: original | masked |" \
	      "reconstruction | reconstruction with the visible patches pasted back)"
	@echo "demo: the same images classified by the encoder fine-tuned from this model ($(DEMO_CLASSIFIER)):"
	@$(BUILD)/examples/mae classify $(DEMO_CLASSIFIER) $(sort $(wildcard examples/data/*.png)) --top 1 --crop-pct 1

# Re-creates the demo weights from Fashion-MNIST (Debian's dataset-fashion-mnist): the
# docs/TRAINING.md run, about 30 minutes on 2 cores; then `make probe` for the linear probes.
PRETRAIN_OUT  ?= $(BUILD)/pretrain
PRETRAIN_ARGS ?= --epochs 7 --warmup 1 --batch 128 --blr 1.5e-3
pretrain: lib $(BUILD)/examples/mae
	$(BUILD)/examples/mae train --out $(PRETRAIN_OUT) $(PRETRAIN_ARGS)
	$(BUILD)/examples/mae convert $(PRETRAIN_OUT)/model.safetensors $(DEMO_MODEL) --dtype f16

probe: lib $(BUILD)/examples/mae
	$(BUILD)/examples/mae probe $(PRETRAIN_OUT)/model.safetensors
	$(BUILD)/examples/mae probe $(PRETRAIN_OUT)/model.safetensors --random
	$(BUILD)/examples/mae probe --pixels

# The benchmark (not a test; docs/PERFORMANCE.md). OpenBLAS, when pkg-config finds it, is linked
# into the benchmark only, as the peer to compare with. BENCH_ARGS="--quick" for a short run.
BENCH_THREADS ?= 2
BENCH_BLAS := $(shell pkg-config --cflags --libs openblas 2>/dev/null)
$(BUILD)/bench/bench_mae: bench/bench_mae.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(DEPFLAGS) -Wno-missing-prototypes $(if $(BENCH_BLAS),-DMAE_BENCH_OPENBLAS) $< -o $@ \
	    $(STATIC) $(BENCH_BLAS) $(LDLIBS) -lpthread

bench: lib $(BUILD)/bench/bench_mae $(BUILD)/examples/mae
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$(BENCH_THREADS) \
	    nice -n 0 $(BUILD)/bench/bench_mae --threads $(BENCH_THREADS) $(BENCH_ARGS)
	$(BUILD)/examples/mae bench --preset base --simulate-threads 64

# ---- install, uninstall, pkg-config, ABI baseline ---------------------------------------------
#   make install PREFIX=/usr DESTDIR=/tmp/stage    header, libmae.a, libmae.so.X.Y.Z + links, mae.pc
#   make uninstall PREFIX=/usr DESTDIR=/tmp/stage  removes exactly those files
#   make abi-baseline                              rewrite tests/abi/libmae.abi (docs/ABI.md)
INSTALL_LIBDIR ?= $(PREFIX)/lib
INSTALL_INCDIR ?= $(PREFIX)/include
PKGCONFIGDIR   ?= $(INSTALL_LIBDIR)/pkgconfig
PC := $(BUILD)/mae.pc

.PHONY: pc abi-baseline $(PC)   # the .pc follows PREFIX on every install

$(PC): lib/mae.pc.in include/mae.h Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(INSTALL_LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INSTALL_INCDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS_PRIVATE@|$(LDLIBS)|' lib/mae.pc.in > $@

pc: $(PC)

install: lib $(PC)
	install -d $(DESTDIR)$(INSTALL_INCDIR) $(DESTDIR)$(INSTALL_LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/mae.h $(DESTDIR)$(INSTALL_INCDIR)/mae.h
	install -m 644 $(STATIC) $(DESTDIR)$(INSTALL_LIBDIR)/libmae.a
	install -m 755 $(SHARED) $(DESTDIR)$(INSTALL_LIBDIR)/libmae.so.$(VERSION)
	ln -sf libmae.so.$(VERSION) $(DESTDIR)$(INSTALL_LIBDIR)/libmae.so.$(VERSION_MAJOR)
	ln -sf libmae.so.$(VERSION_MAJOR) $(DESTDIR)$(INSTALL_LIBDIR)/libmae.so
	install -m 644 $(PC) $(DESTDIR)$(PKGCONFIGDIR)/mae.pc

uninstall:
	rm -f $(DESTDIR)$(INSTALL_INCDIR)/mae.h $(DESTDIR)$(INSTALL_LIBDIR)/libmae.a \
	      $(DESTDIR)$(INSTALL_LIBDIR)/libmae.so.$(VERSION) \
	      $(DESTDIR)$(INSTALL_LIBDIR)/libmae.so.$(VERSION_MAJOR) \
	      $(DESTDIR)$(INSTALL_LIBDIR)/libmae.so $(DESTDIR)$(PKGCONFIGDIR)/mae.pc

abi-baseline:
	sh tests/check_abi.sh --update

# Long fuzzing (not part of make test or CI): every tests/fuzz_*.c target side by side for
# FUZZ_SECONDS each (default an hour), reporting executions and coverage per target
# (docs/TESTING.md records a run). The corpora grow in $(BUILD)/fuzz/corpus_<name>/.
FUZZ_SECONDS ?= 3600
.PHONY: fuzz-long
fuzz-long:
	BUILD=$(BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/check_fuzz.sh

# The command-line tool (examples/cli: one file per subcommand).
CLI_SRCS := $(sort $(wildcard examples/cli/*.c))
$(BUILD)/examples/mae$(EXE): $(CLI_SRCS) examples/cli/cli.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(CLI_SRCS) -o $@ $(STATIC) $(LDLIBS)
examples: $(BUILD)/examples/mae$(EXE)

# The header dependencies that -MMD wrote (none before the first build, which builds everything).
-include $(OBJS:=.d) $(TEST_BINS:=.d) $(EXAMPLE_BINS:=.d) $(BUILD)/bench/bench_mae.d

help:
	@echo "make                    lib/libmae.a, lib/libmae.so.$(VERSION) and the examples"
	@echo "make lib                the static and shared library only"
	@echo "make examples           the example programs and the mae command-line tool ($(BUILD)/examples)"
	@echo "make test               build and run every test: unit binaries, then tests/check_*.sh"
	@echo "make test T=png         only the tests whose name contains png (T='png idx': either word)"
	@echo "make check              the same as make test"
	@echo "make SANITIZE=address,undefined test   the tests under ASan+UBSan, objects in build-san/"
	@echo "make demo               reconstruct masked Fashion-MNIST images with the committed model"
	@echo "make pretrain           re-create the demo model from Fashion-MNIST (about 30 minutes)"
	@echo "make probe              linear probes of the pretrained model (after make pretrain)"
	@echo "make bench              the benchmark, bench/bench_mae.c (BENCH_ARGS=--quick: a short run)"
	@echo "make CC=x86_64-w64-mingw32-gcc   Windows DLL, import and static libraries in lib/x86_64-w64-mingw32/"
	@echo "make install            header, libraries and mae.pc under PREFIX (DESTDIR for staging)"
	@echo "make uninstall          removes exactly what make install installed"
	@echo "make pc                 $(BUILD)/mae.pc only"
	@echo "make amalgamation       dist/libmae.c + dist/mae.h: the whole library as one file"
	@echo "make abi-baseline       rewrite tests/abi/libmae.abi (docs/ABI.md)"
	@echo "make clean              remove build/, build-san/ and the libraries"
	@echo "make help               this list"
	@echo "Variables: CC, OPENMP=1, SANITIZE, CFLAGS/OPTFLAGS, PREFIX, DESTDIR, T, BENCH_ARGS, BENCH_THREADS"

# The one-file library (docs/BUILDING.md): dist/libmae.c + dist/mae.h, every kernel tier inside.
.PHONY: amalgamation
amalgamation:
	python3 tools/amalgamate.py --out dist
