#!/bin/sh
# ThreadSanitizer: the library and the thread tests built with -fsanitize=thread (clang or gcc,
# whichever links it), then run, and no data race may be reported: tests/test_threads.c (models
# created concurrently, many contexts on one shared model, the built-in pool, host pools),
# tests/test_share.c (mae_trainer_create while another thread runs forward passes),
# tests/test_hooks.c (abort and progress hooks; a trainer on 2 threads) and tests/test_cancel.c
# (the abort asked inside the products: the stop flag every lane reads, a cancel whose flag
# another thread sets, on 1-4 threads).
# The build uses the built-in pool (OPENMP=0): libgomp is not instrumented, so TSan cannot see
# its barriers and would report false races. Skipped when no compiler here can link a TSan program.
set -eu
BUILD=${BUILD:-build}
dir=$BUILD/tsan
mkdir -p "$dir"
printf 'int main(void) { return 0; }\n' > "$dir/probe.c"
tsan_cc=""
for cc in ${CC:-cc} clang gcc; do
    if command -v "$cc" >/dev/null 2>&1 && "$cc" -fsanitize=thread "$dir/probe.c" -o "$dir/probe" 2>/dev/null \
            && "$dir/probe" 2>/dev/null; then
        tsan_cc=$cc
        break
    fi
done
if [ -z "$tsan_cc" ]; then
    echo "check_tsan: skipped (no compiler links -fsanitize=thread: install clang and libclang-rt-dev, or libtsan)"
    exit 0
fi
obj=$dir/$(basename "$tsan_cc")   # one object tree per compiler: their TSan runtimes differ
TESTS="test_threads test_share test_hooks test_cancel"
targets=""
for t in $TESTS; do targets="$targets $obj/tests/$t"; done
make -s BUILD="$obj" SANITIZE=thread OPENMP=0 CC="$tsan_cc" $targets > "$dir/build.log" 2>&1 || {
    cat "$dir/build.log"; echo "check_tsan: build failed"; exit 1; }
# A report makes the process exit non-zero (exitcode) even when every check passed.
export TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1"
for t in $TESTS; do
    bin=$obj/tests/$t
    nm "$bin" | grep -q __tsan_init || { echo "check_tsan: $t is not instrumented"; exit 1; }
    if ! "$bin" > "$dir/$t.log" 2>&1; then
        # older TSan runtimes cannot map their shadow under a kernel's high ASLR entropy: retry without
        if grep -q "unexpected memory mapping" "$dir/$t.log" && command -v setarch >/dev/null 2>&1; then
            setarch "$(uname -m)" -R "$bin" > "$dir/$t.log" 2>&1 || {
                cat "$dir/$t.log"; echo "check_tsan: $t failed"; exit 1; }
        else
            cat "$dir/$t.log"; echo "check_tsan: $t failed"; exit 1
        fi
    fi
    tail -n 2 "$dir/$t.log"
done
echo "check_tsan: no data race reported in $TESTS ($tsan_cc -fsanitize=thread)"
