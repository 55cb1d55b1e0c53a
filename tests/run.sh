#!/bin/sh
# The test runner: the unit test binaries ($BUILD/tests/test_*, one per tests/test_*.c), then the
# check scripts (tests/check_*.sh), each with its time, and the closing line "N passed, N failed"
# (CI reads it).
#
#   sh tests/run.sh                 everything (make test)
#   sh tests/run.sh png idx         only the tests whose name contains png or idx (make test T=png)
#
# A name may also be given as a path (build/tests/test_png, tests/check_cli.sh). A name that
# matches no test is an error. Runs from any directory: it works in the source tree, and sets
# MAE_SRCDIR so that the binaries find tests/data there. The environment (set by make test):
# BUILD (build), SHARED (lib/libmae.so.X.Y.Z), CC (cc), SANITIZE (empty). Logs: $BUILD/tests/NAME.log
# for the binaries, $BUILD/NAME.sh.log for the scripts. One binary's sub-tests: $BUILD/tests/NAME
# --list, then --only SUB (docs/TESTING.md).
cd "$(dirname "$0")/.." || exit 2
MAE_SRCDIR=$(pwd)
BUILD=${BUILD:-build}
CC=${CC:-cc}
SANITIZE=${SANITIZE:-}
if [ -z "${SHARED:-}" ]; then
    v=$(for p in MAJOR MINOR PATCH; do sed -n "s/^#define MAE_VERSION_$p \([0-9]*\).*/\1/p" include/mae.h; done |
        paste -sd. -)
    SHARED=lib/libmae.so.$v
    [ -n "$SANITIZE" ] && SHARED=$BUILD/libmae.so.$v
fi
export MAE_SRCDIR BUILD CC SANITIZE SHARED

# The filters: names, or paths reduced to their names.
filters=""
for a in "$@"; do
    a=${a##*/}
    a=${a%.sh}
    a=${a%.c}
    [ -n "$a" ] && filters="$filters $a"
done

# selected NAME: whether NAME contains one of the filters (all are selected without filters)
selected() {
    [ -z "$filters" ] && return 0
    for f in $filters; do
        case $1 in *"$f"*) return 0 ;; esac
    done
    return 1
}

# Nanoseconds since the epoch; whole seconds where date has no %N.
now() {
    t=$(date +%s%N)
    case $t in *N) echo "$(date +%s)000000000" ;; *) echo "$t" ;; esac
}

mkdir -p "$BUILD/tests"
pass=0; fail=0; failed=""; skipped=""
# run NAME LOG COMMAND...: runs one test, prints "ok|skip|FAIL  seconds  last line of its log"
run() {
    name=$1; log=$2; shift 2
    t0=$(now)
    "$@" > "$log" 2>&1
    rc=$?
    secs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    last=$(tail -n 1 "$log")
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1))
        case $last in
            *": skipped"*) skipped="$skipped $name"; printf 'skip %7ss  %s\n' "$secs" "$last" ;;
            *) printf 'ok   %7ss  %s\n' "$secs" "$last" ;;
        esac
    else
        fail=$((fail + 1)); failed="$failed $name"
        cat "$log"
        printf 'FAIL %7ss  %s (exit %d; log %s)\n' "$secs" "$name" "$rc" "$log"
    fi
}

# The tests, in order: the binaries, then the scripts.
tests=""
for f in tests/test_*.c tests/check_*.sh; do
    [ -f "$f" ] || continue
    name=$(basename "$f"); name=${name%.c}; name=${name%.sh}
    selected "$name" && tests="$tests $name"
done
# A filter that matches nothing is a mistake (a typo must not pass as "0 passed").
for f in $filters; do
    case " $tests " in
        *"$f"*) ;;
        *) echo "run.sh: no test name contains '$f' (the names: tests/test_*.c, tests/check_*.sh)"
           exit 1 ;;
    esac
done

for name in $tests; do
    case $name in
        check_*) run "$name" "$BUILD/$name.sh.log" sh "tests/$name.sh" ;;
        *)
            bin=$BUILD/tests/$name
            if [ -x "$bin" ]; then
                run "$name" "$bin.log" "$bin"
            else
                fail=$((fail + 1)); failed="$failed $name"
                echo "FAIL           $name: $bin is not built (make $bin, or make test)"
            fi ;;
    esac
done
[ -n "$skipped" ] && echo "skipped (a tool is missing; see each line):$skipped"
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
