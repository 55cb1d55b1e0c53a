#!/bin/sh
# The one-file amalgamation (tools/amalgamate.py, `make amalgamation`): dist/libmae.c must build
# with one command under gcc (C11, OpenMP, the Makefile's warnings as errors) and clang (its
# default GNU mode, no OpenMP), and each build must
#   - pass the golden test (tests/test_golden.c: every kernel table this CPU has, against the
#     PyTorch references),
#   - pick the same best kernel table at run time as the Makefile build, and run each table
#     MAE_KERNELS names, with the same results to the bit as the Makefile build
#     (tests/cmake_consumer/main.c prints the table and the loss).
# For AArch64 (gcc-aarch64-linux-gnu + qemu-user), the NEON section must build and be chosen.
# With x86_64-w64-mingw32-gcc, and once the tree has its Windows layer (src/os/), it must also
# compile for Windows (compile only).
set -eu
BUILD=${BUILD:-build}
SHARED=${SHARED:-lib/libmae.so.1.0.0}
CC=${CC:-cc}
if ! command -v python3 >/dev/null 2>&1; then
    echo "check_amalgamation: skipped (no python3)"; exit 0
fi
if [ -n "${SANITIZE:-}" ]; then
    echo "check_amalgamation: skipped (sanitizer build; checked in the plain one)"; exit 0
fi
dir=$BUILD/check_amalgamation
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "check_amalgamation: $*"; exit 1; }
python3 tools/amalgamate.py --out "$dir/dist" > "$dir/amalgamate.log" || { cat "$dir/amalgamate.log"; fail "tools/amalgamate.py failed"; }
cmp -s include/mae.h "$dir/dist/mae.h" || fail "dist/mae.h is not include/mae.h"
warn="-Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter -Werror"

# the reference: the consumer against the Makefile's library, per kernel table
probe=tests/cmake_consumer/main.c
$CC -std=c11 -Iinclude "$probe" "$SHARED" -lm -o "$dir/probe_make"
run_make() { LD_LIBRARY_PATH=$(dirname "$SHARED") "$dir/probe_make"; }
tiers="scalar avx2 avx512 neon"

built=""
for cc in gcc clang; do
    command -v $cc >/dev/null 2>&1 || continue
    case $cc in
        gcc) flags="-std=c11 -fopenmp $warn"; libs="-fopenmp" ;;
        *) flags="$warn"; libs="" ;;
    esac
    # the documented command, from inside dist/
    # shellcheck disable=SC2086
    (cd "$dir/dist" && $cc -O2 $flags -c libmae.c -o "../libmae_$cc.o") 2> "$dir/$cc.log" || {
        cat "$dir/$cc.log"; fail "$cc does not build dist/libmae.c warning-free"; }
    # shellcheck disable=SC2086
    $cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc tests/test_golden.c "$dir/libmae_$cc.o" \
        -lm -lpthread $libs -o "$dir/golden_$cc"
    "$dir/golden_$cc" > "$dir/golden_$cc.log" 2>&1 || { cat "$dir/golden_$cc.log"; fail "the golden test fails on the $cc amalgamation"; }
    # shellcheck disable=SC2086
    $cc -O2 -Iinclude "$probe" "$dir/libmae_$cc.o" -lm -lpthread $libs -o "$dir/probe_$cc"
    for t in "" $tiers; do
        want=$(MAE_KERNELS=$t run_make)
        got=$(MAE_KERNELS=$t "$dir/probe_$cc")
        [ "$got" = "$want" ] || fail "$cc, MAE_KERNELS=${t:-(unset)}: Makefile build: $want; amalgamation: $got"
        case $want in *"kernels $t:"*) built="$built $cc:$t" ;; esac
    done
    best=$(run_make | sed 's/.*kernels \([a-z0-9]*\):.*/\1/')
    echo "$cc: $(tail -n 1 "$dir/golden_$cc.log"); best kernel table $best, as in the Makefile build"
done
[ -n "$built" ] || fail "neither gcc nor clang found"

# AArch64: the NEON section builds and is the one chosen (run under qemu-user)
if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1; then
    (cd "$dir/dist" && aarch64-linux-gnu-gcc -O2 -std=c11 -fopenmp $warn -c libmae.c -o ../libmae_arm64.o) \
        2> "$dir/arm64.log" || { cat "$dir/arm64.log"; fail "dist/libmae.c does not build for AArch64"; }
    aarch64-linux-gnu-gcc -O2 -Iinclude -static "$probe" "$dir/libmae_arm64.o" -lm -fopenmp -o "$dir/probe_arm64" 2> "$dir/arm64-link.log"
    got=$(qemu-aarch64 "$dir/probe_arm64")
    case $got in *"kernels neon:"*) ;; *) fail "AArch64: the NEON table was not chosen: $got" ;; esac
    echo "aarch64 (qemu): $got"
else
    echo "aarch64: skipped (no aarch64-linux-gnu-gcc or qemu-aarch64)"
fi

# Windows x64 (compile only), once the Windows layer is in the tree
if ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    echo "mingw: skipped (no x86_64-w64-mingw32-gcc)"
elif [ ! -d src/os ]; then
    echo "mingw: skipped (the tree has no Windows platform layer, src/os/, yet)"
else
    (cd "$dir/dist" && x86_64-w64-mingw32-gcc -O2 -std=c11 $warn -c libmae.c -o ../libmae_mingw.o) \
        2> "$dir/mingw.log" || { cat "$dir/mingw.log"; fail "dist/libmae.c does not build with MinGW-w64"; }
    echo "mingw: dist/libmae.c compiles"
fi
echo "check_amalgamation: dist/libmae.c builds and passes the golden test;" \
     "same tables and results as the Makefile build:$built"
