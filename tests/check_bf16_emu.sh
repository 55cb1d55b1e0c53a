#!/bin/sh
# The avx512_bf16 tier on a CPU without AVX512_BF16: no machine this project tests on has the
# instruction, so the tier would otherwise only be compiled. This links the library's objects with
# two files built again: the tier with vdpbf16ps replaced by an AVX-512F emulation of its
# definition (tests/emu/avx512bf16.h), and cpu.c
# reporting AVX512_BF16 (MAE_EMULATE_AVX512BF16), then
# runs tests/test_bf16.c (the tier's packing, micro-kernel and driver against the reference, and
# bf16 models, which take the tier automatically), tests/test_mixed.c (mixed-precision
# training, whose forward linears run on it) and test_threads' many_threads (a bf16 model's forward,
# training and fine-tuning at 1-64 threads, bitwise). What stays untested is only the instruction itself.
# Skipped on a CPU without AVX-512F, and on one with AVX512_BF16 (make test runs the real tier).
set -eu
BUILD=${BUILD:-build}
CC=${CC:-cc}
SANITIZE=${SANITIZE:-}
if [ "$(uname -m)" != x86_64 ] || ! grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    echo "check_bf16_emu: skipped (needs an x86-64 CPU with AVX-512F to run the emulation)"; exit 0
fi
if grep -qw avx512_bf16 /proc/cpuinfo; then
    echo "check_bf16_emu: skipped (this CPU has AVX512_BF16: test_bf16 runs the real tier)"; exit 0
fi
dir=$BUILD/bf16emu
mkdir -p "$dir"
flags="-std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes
       -Wmissing-prototypes -Wno-unused-parameter -Werror -Iinclude -Isrc -DMAE_EMULATE_AVX512BF16"
[ -n "$SANITIZE" ] && flags="$flags -fsanitize=$SANITIZE -fno-omit-frame-pointer -g"
# Only two files differ from the library's own build ($BUILD/src, made by make test with the same
# flags): cpu.c and the avx512_bf16 tier; the rest links in as built.
[ -f "$BUILD/src/kernels/cpu.o" ] || make -s CC="$CC" SANITIZE="$SANITIZE" lib
objs=""
for src in src/*/*.c; do
    case $src in *_neon.c|*_neonbf16.c|*/os_win.c|*/kernels/cpu.c|*/gemm_bf16_avx512bf16.c) continue ;; esac
    objs="$objs $BUILD/${src%.c}.o"
done
isa="-mavx512f -mavx512vl -mavx512dq -mavx512bw -mavx512bf16 -mavx2 -mfma -include tests/emu/avx512bf16.h"
# shellcheck disable=SC2086
$CC $flags -c src/kernels/cpu.c -o "$dir/kernels_cpu.o" &&
    $CC $flags $isa -c src/kernels/gemm_bf16_avx512bf16.c -o "$dir/kernels_gemm_bf16_avx512bf16.o" ||
    { echo "check_bf16_emu: the emulated files do not build"; exit 1; }
objs="$objs $dir/kernels_cpu.o $dir/kernels_gemm_bf16_avx512bf16.o"
# the emulated object must not contain the instruction (it would fault here, but say why)
if command -v objdump >/dev/null 2>&1 &&
   objdump -d "$dir/kernels_gemm_bf16_avx512bf16.o" | grep -q vdpbf16ps; then
    echo "check_bf16_emu: the emulated tier still contains vdpbf16ps"; exit 1
fi
# Under a sanitizer only test_bf16 (the tier's memory accesses: packing tails, exact scratch);
# the model-level tests there repeat what the plain pass checks, at three times the time.
tests="test_bf16 test_mixed test_threads"
[ -n "$SANITIZE" ] && tests="test_bf16"
for t in $tests; do
    # shellcheck disable=SC2086
    # (-fopenmp when the library was built with OpenMP)
    $CC $flags -Wno-missing-prototypes -DTU_SRCDIR="\"$(pwd)\"" "tests/$t.c" $objs -lm -lpthread \
        -o "$dir/$t" > "$dir/link_$t.log" 2>&1 ||
    $CC $flags -Wno-missing-prototypes -DTU_SRCDIR="\"$(pwd)\"" "tests/$t.c" $objs -lm -lpthread -fopenmp \
        -o "$dir/$t" > "$dir/link_$t.log" 2>&1 || { cat "$dir/link_$t.log"; echo "check_bf16_emu: $t does not link"; exit 1; }
    only=""
    [ $t = test_threads ] && only="--only many_threads"   # the bf16 model at 1-64 threads
    # shellcheck disable=SC2086
    "$dir/$t" $only > "$dir/$t.log" 2>&1 || { cat "$dir/$t.log"; echo "check_bf16_emu: $t failed on the emulated avx512_bf16 tier"; exit 1; }
done
grep -q "^avx512_bf16 linear" "$dir/test_bf16.log" || {
    cat "$dir/test_bf16.log"; echo "check_bf16_emu: the avx512_bf16 tier's kernel tests did not run"; exit 1; }
grep -q "(avx512_bf16): bf16 vs fp32" "$dir/test_bf16.log" || {
    cat "$dir/test_bf16.log"; echo "check_bf16_emu: the bf16 models did not take the avx512_bf16 tier"; exit 1; }
if [ -n "$SANITIZE" ]; then
    echo "check_bf16_emu: the avx512_bf16 tier (vdpbf16ps emulated) passes test_bf16 under $SANITIZE ($(tail -n 1 "$dir/test_bf16.log"))"
    exit 0
fi
echo "check_bf16_emu: the avx512_bf16 tier (vdpbf16ps emulated) passes test_bf16 ($(tail -n 1 "$dir/test_bf16.log")), test_mixed ($(tail -n 1 "$dir/test_mixed.log")) and many_threads ($(tail -n 1 "$dir/test_threads.log"))"
