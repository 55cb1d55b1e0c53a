#!/bin/sh
# Data parallel training (issue 4): 2 MPI ranks with half the batch each reach the parameters
# (and last averaged gradients) of 1 rank with the whole batch, to float32 rounding. Skipped when
# mpicc/mpiexec are not installed (CI installs Debian's mpich).
set -eu
BUILD=${BUILD:-build}
if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpiexec >/dev/null 2>&1; then
    echo "check_mpi: skipped (no mpicc/mpiexec)"
    exit 0
fi
lib=lib/libmae.a
flags=""
if [ -n "${SANITIZE:-}" ]; then
    lib=$BUILD/libmae.a
    flags="-fsanitize=$SANITIZE -fno-omit-frame-pointer"
fi
dir=$BUILD/check_mpi
mkdir -p "$dir"
# mpich's mpicc runs $MPICH_CC: the compiler the library was built with
MPICH_CC=${CC:-cc} mpicc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Iinclude $flags \
    examples/train_mpi.c "$lib" -fopenmp -lm -o "$dir/train_mpi"
# leak checks do not fit MPI runtimes' own allocations
export ASAN_OPTIONS=detect_leaks=0
mpiexec -n 1 "$dir/train_mpi" --batch 8 --steps 5 --save "$dir/one.bin" > "$dir/one.log"
mpiexec -n 2 "$dir/train_mpi" --batch 8 --steps 5 --compare "$dir/one.bin" --tol 1e-5 > "$dir/two.log" || {
    cat "$dir/one.log" "$dir/two.log"; echo "check_mpi: 2 ranks differ from 1 rank"; exit 1; }
tail -n 2 "$dir/two.log"
echo "check_mpi: 2 ranks x 4 images == 1 rank x 8 images (5 AdamW steps)"
