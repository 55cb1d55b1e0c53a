#!/bin/sh
# The NEON tier on an x86 machine: cross-compile the kernels and tests/test_kernels.c for AArch64
# with Debian's gcc-aarch64-linux-gnu and run the test under qemu-user, so the Arm path is
# tested, not just written. Skipped when the cross compiler or qemu is missing
# (apt-get install gcc-aarch64-linux-gnu qemu-user), and on an AArch64 host, where make test
# runs test_kernels natively.
set -eu
BUILD=${BUILD:-build}
CROSS=${CROSS:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
if [ "$(uname -m)" = aarch64 ]; then
    echo "check_neon: skipped (native AArch64: test_kernels covers NEON)"; exit 0
fi
for tool in "$CROSS" "$QEMU"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "check_neon: skipped (no $tool)"; exit 0; }
done
dir=$BUILD/neon
mkdir -p "$dir"
flags="-std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes
       -Wmissing-prototypes -Wno-unused-parameter -Werror -fopenmp -Iinclude -Isrc"
objs=""
for src in src/kernels/*.c src/util/*.c src/os/*.c; do
    case $src in *_avx2.c|*_avx512.c|*_avx512bf16.c) continue ;; esac
    obj=$dir/$(basename "$src" .c).o
    isa=""
    case $src in *_neonbf16.c) isa="-march=armv8.2-a+bf16" ;; esac
    # shellcheck disable=SC2086
    $CROSS $flags $isa -c "$src" -o "$obj" || { echo "check_neon: $src does not build for AArch64"; exit 1; }
    objs="$objs $obj"
done
# shellcheck disable=SC2086
$CROSS $flags -Wno-missing-prototypes -static tests/test_kernels.c $objs -lm -o "$dir/test_kernels" \
    > "$dir/link.log" 2>&1 || { cat "$dir/link.log"; echo "check_neon: test_kernels does not link for AArch64"; exit 1; }
# MAE_TEST_QUICK: the emulator is ~40x slower; the biggest reference products are skipped
MAE_TEST_QUICK=1 MAE_TEST_RUNNER=$QEMU "$QEMU" "$dir/test_kernels" > "$dir/test_kernels.log" 2>&1 || {
    cat "$dir/test_kernels.log"; echo "check_neon: test_kernels failed under $QEMU"; exit 1; }
grep -q "^neon linear" "$dir/test_kernels.log" || {
    cat "$dir/test_kernels.log"; echo "check_neon: the NEON tier did not run"; exit 1; }
echo "check_neon: NEON tier passes test_kernels under $QEMU ($(tail -n 1 "$dir/test_kernels.log"))"
# The neon_bf16 tier (BFDOT) needs the BF16 extension: qemu's "max" CPU has it (HWCAP2_BF16).
# test_bf16 also runs a small model in bf16: it links the rest of the library.
lib=""
for src in src/model/*.c src/io/*.c src/image/*.c src/codec/*.c src/api/*.c; do
    obj=$dir/lib_$(basename "$(dirname "$src")")_$(basename "$src" .c).o
    # shellcheck disable=SC2086
    $CROSS $flags -c "$src" -o "$obj" || { echo "check_neon: $src does not build for AArch64"; exit 1; }
    lib="$lib $obj"
done
# shellcheck disable=SC2086
$CROSS $flags -Wno-missing-prototypes -static tests/test_bf16.c $objs $lib -lm -o "$dir/test_bf16" \
    > "$dir/link_bf16.log" 2>&1 || { cat "$dir/link_bf16.log"; echo "check_neon: test_bf16 does not link for AArch64"; exit 1; }
MAE_TEST_QUICK=1 "$QEMU" -cpu max "$dir/test_bf16" > "$dir/test_bf16.log" 2>&1 || {
    cat "$dir/test_bf16.log"; echo "check_neon: test_bf16 failed under $QEMU -cpu max"; exit 1; }
grep -q "^neon_bf16 linear" "$dir/test_bf16.log" || {
    cat "$dir/test_bf16.log"; echo "check_neon: the neon_bf16 tier did not run"; exit 1; }
echo "check_neon: neon_bf16 tier passes test_bf16 under $QEMU -cpu max ($(tail -n 1 "$dir/test_bf16.log"))"
