#!/bin/sh
# libFuzzer: every tests/fuzz_<name>.c is built with clang -fsanitize=fuzzer,address,undefined
# against the library sources (compiled here with coverage instrumentation, not the Makefile's
# objects) and run for FUZZ_SECONDS (default 20; `make fuzz-long` runs an hour) on its seed corpus
# tests/fuzz_corpus/<name>/. The targets run at the same time (they share the cores). New inputs
# go to $BUILD/fuzz/corpus_<name>/, so the seeds in git stay as they are. -max_len is set per
# target (libFuzzer would otherwise cap inputs at the largest seed): whole small models and
# checkpoints fit. Each target reports its executions and coverage (edges, libFuzzer's "cov"). A
# crash, a leak, a sanitizer report, a timeout or running out of memory fails the check. Skipped
# when clang cannot link a fuzzer (Debian: clang and libclang-rt-14-dev), and in the SANITIZE
# build (the targets are sanitized anyway, and the plain `make test` has run them).
set -eu
BUILD=${BUILD:-build}
secs=${FUZZ_SECONDS:-20}
dir=$BUILD/fuzz
if [ -n "${SANITIZE:-}" ]; then
    echo "fuzz: skipped in the SANITIZE build (the plain make test runs the targets, sanitized)"
    exit 0
fi
mkdir -p "$dir/obj"

cat > "$dir/probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
EOF
if ! command -v clang >/dev/null 2>&1 || ! clang -fsanitize=fuzzer "$dir/probe.c" -o "$dir/probe" 2>/dev/null; then
    echo "fuzz: skipped (no libFuzzer)"
    exit 0
fi

flags="-std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
       -fno-sanitize-recover=undefined -Iinclude -Isrc"
arch=$(clang -dumpmachine | cut -d- -f1)

# The library, one object per source with its instruction-set flags (as the Makefile chooses
# them), two compilers at a time; an object is rebuilt when its source or any header is newer.
newest_header=$(ls -t include/*.h src/*/*.h | head -n 1)
objs=""
running=0
for c in src/*/*.c; do
    isa=""
    case "$c" in
        *_avx2.c)   [ "$arch" = x86_64 ] || continue; isa="-mavx2 -mfma" ;;
        *_avx512.c) [ "$arch" = x86_64 ] || continue; isa="-mavx512f -mavx512vl -mavx512dq -mavx2 -mfma" ;;
        *_neon.c)   [ "$arch" = aarch64 ] || continue ;;
        *_avx512bf16.c) [ "$arch" = x86_64 ] || continue
                    isa="-mavx512f -mavx512vl -mavx512dq -mavx512bw -mavx512bf16 -mavx2 -mfma" ;;
        *_neonbf16.c) [ "$arch" = aarch64 ] || continue; isa="-march=armv8.2-a+bf16" ;;
    esac
    o=$dir/obj/$(echo "$c" | tr / _ | sed 's/\.c$/.o/')
    objs="$objs $o"
    if [ ! -f "$o" ] || [ "$c" -nt "$o" ] || [ "$newest_header" -nt "$o" ]; then
        rm -f "$o"
        # shellcheck disable=SC2086
        clang $flags -fsanitize=fuzzer-no-link $isa -c "$c" -o "$o" 2> "$o.log" &
        running=$((running + 1))
        if [ $running -ge 2 ]; then
            wait
            running=0
        fi
    fi
done
wait
for o in $objs; do
    [ -f "$o" ] || { cat "$o.log"; echo "fuzz: cannot compile the library (${o##*/})"; exit 1; }
done

status=0
names=""
for src in tests/fuzz_*.c; do
    [ -f "$src" ] || continue
    name=$(basename "$src" .c)
    name=${name#fuzz_}
    bin=$dir/fuzz_$name
    # shellcheck disable=SC2086
    clang $flags -fsanitize=fuzzer "$src" $objs -lm -o "$bin" || { echo "fuzz_$name: build failed"; status=1; continue; }
    mkdir -p "$dir/corpus_$name"
    seeds=tests/fuzz_corpus/$name
    [ -d "$seeds" ] || seeds=""
    case $name in
        safetensors) max_len=262144 ;;   # tests/data's tiny model is 134784 bytes
        trainer)     max_len=65536 ;;    # its seed checkpoints are 36 KB
        classifier)  max_len=262144 ;;   # its Hugging Face seed is 247436 bytes
        *)           max_len=65536 ;;
    esac
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$secs" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$dir/$name-" "$dir/corpus_$name" $seeds > "$dir/$name.log" 2>&1 &
    echo $! > "$dir/$name.pid"
    names="$names $name"
done
for name in $names; do
    if wait "$(cat "$dir/$name.pid")"; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/$name.log")
        cov=$(sed -n 's/^#[0-9]*.* cov: \([0-9]*\) .*/\1/p' "$dir/$name.log" | tail -n 1)
        echo "fuzz_$name: ${runs:-?} inputs in ${secs}s, ${cov:-?} edges covered, no crash"
    else
        tail -n 40 "$dir/$name.log"
        echo "fuzz_$name: FAILED; the input is in $dir/$name-*; reproduce with: $dir/fuzz_$name <that file>"
        status=1
    fi
done
[ $status -eq 0 ] && echo "check_fuzz: $(echo $names | wc -w) targets ran clean"
exit $status
