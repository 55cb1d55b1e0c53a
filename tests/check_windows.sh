#!/bin/sh
# Windows: cross-builds libmae, its tests and the CLI with MinGW-w64 into build-win/ and runs them
# under Wine (docs/BUILDING.md lists what runs and what does not). Prints "skipped" with the
# reason when MinGW or Wine is missing.
#
#   sh tests/check_windows.sh              (make test runs it)
#   MINGW_CC=x86_64-w64-mingw32-gcc-posix sh tests/check_windows.sh
set -u
cd "$(dirname "$0")/.."
CCW=${MINGW_CC:-x86_64-w64-mingw32-gcc}
if [ -n "${SANITIZE:-}" ]; then
    echo "check_windows: skipped (a sanitizer run; the Windows suite runs in the plain one)"; exit 0
fi
if ! command -v "$CCW" >/dev/null 2>&1; then
    echo "check_windows: skipped ($CCW not found; Debian: apt-get install mingw-w64)"; exit 0
fi
WINE=$(command -v wine64 || command -v wine || true)
if [ -z "$WINE" ]; then
    echo "check_windows: skipped (wine not found; Debian: apt-get install wine64)"; exit 0
fi
B=build-win
fail=0; runs=0
bad() { echo "check_windows: FAIL: $*"; fail=$((fail + 1)); }

# ---- the cross build: every test that compiles with MinGW (test_kill_save forks: its Windows
# counterpart is test_win --kill-save), the CLI, the Windows-only test ------------------------
TESTS=""
for t in tests/test_*.c; do
    n=$(basename "$t" .c)
    [ "$n" = test_kill_save ] && continue
    TESTS="$TESTS $B/tests/$n.exe"
done
start=$(date +%s)
if ! make -s -j2 --no-print-directory CC="$CCW" lib $TESTS $B/tests/win/test_win.exe $B/examples/mae.exe > $B.build.log 2>&1; then
    cat $B.build.log; bad "the MinGW build failed"; exit 1
fi
if grep "warning:" $B.build.log | grep -qv "^make"; then
    grep "warning:" $B.build.log | grep -v "^make" | head -20; bad "the MinGW build has warnings"
fi
LIB=lib/$($CCW -dumpmachine)
for f in libmae-1.dll libmae.dll.a libmae.a; do
    [ -f "$LIB/$f" ] || bad "$LIB/$f was not built"
done
echo "check_windows: built with $CCW in $(($(date +%s) - start)) s"

# ---- Wine -------------------------------------------------------------------------------------
export WINEPREFIX="$PWD/$B/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
[ -d "$WINEPREFIX" ] || "$WINE" cmd /c exit >/dev/null 2>&1   # creates the prefix once
# One wineserver for all the runs: started per run, it exits after each and a run that connects
# while it is going down fails with "wine client error ... Connection reset by peer" (seen in CI).
WINESERVER=$(command -v wineserver || true)
if [ -n "$WINESERVER" ]; then
    "$WINESERVER" -p >/dev/null 2>&1 || true
    trap '"$WINESERVER" -k >/dev/null 2>&1 || true' EXIT
fi
# Windows refuses a commit beyond RAM + page file at once; Wine reserves without a limit, so a
# test that asks for a huge block (to see MAE_ERR_NOMEM) would otherwise page for minutes.
ulimit -v 16000000 2>/dev/null || true
mkdir -p build/tests   # test_trainer writes there

# Sub-checks that call system() with a POSIX shell command (Wine's system() runs cmd.exe):
# excused here, and checked below by other means.
SHELL_CHECKS='MAE_KERNELS=scalar is not obeyed|MAE_KERNELS=nonsense does not fall back|a temporary file was left in /tmp/mae_test_png_'

run() {   # run NAME ARGS...: one Windows program; passes when it passes or only shell checks failed
    name=$1; shift
    runs=$((runs + 1))
    log=$B/$(echo "$name" | tr ' /' '__').log
    t0=$(date +%s)
    "$WINE" "$@" > "$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        echo "  $name: $(tail -n 1 "$log" | sed "s/^$name: //") ($secs s)"
    elif ! grep "FAIL" "$log" | grep -Ev "$SHELL_CHECKS" | grep -q . && grep -q "FAIL" "$log"; then
        echo "  $name: $(tail -n 1 "$log" | sed "s/^$name: //"), all of them shell commands, checked below ($secs s)"
    else
        cat "$log"; bad "$name (exit $rc)"
    fi
}

for t in $TESTS; do
    run "$(basename "$t" .exe)" "$t"
done
# test_png leaves its folder behind when its shell check cannot run: check it here, then remove
for d in /tmp/mae_test_png_*; do
    [ -d "$d" ] || continue
    [ "$(ls -A "$d" | wc -l)" -eq 1 ] || bad "test_png left a temporary file in $d: $(ls -A "$d")"
    rm -rf "$d"
done

# the dispatch picks what the CPU has (a missing CPUID path would mean scalar), and obeys
# MAE_KERNELS (test_kernels' shell check)
best=scalar
grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && best=avx2
grep -qw avx512f /proc/cpuinfo 2>/dev/null && grep -qw avx512vl /proc/cpuinfo && grep -qw avx512dq /proc/cpuinfo && best=avx512
run "dispatch: best tier $best" $B/tests/win/test_win.exe --expect-tier $best
export MAE_KERNELS=scalar
run "dispatch: MAE_KERNELS=scalar" $B/tests/win/test_win.exe --expect-tier scalar
export MAE_KERNELS=nonsense
run "dispatch: MAE_KERNELS=nonsense" $B/tests/win/test_win.exe --expect-tier $best
# the golden test (PyTorch's numbers) on every tier below the best too
for tier in scalar avx2; do
    [ "$tier" = "$best" ] && break
    export MAE_KERNELS=$tier
    run "test_golden on $tier" $B/tests/test_golden.exe
done
unset MAE_KERNELS

# saving over existing files, UTF-8 names, kills during a checkpoint save
run "test_win" $B/tests/win/test_win.exe --kill-save

# the CLI: the reconstruction is byte for byte the native CLI's, and a second run replaces it
MODEL=examples/data/mae-fmnist.safetensors
IMGS=$(ls examples/data/*.png | head -n 3)
run "cli info" $B/examples/mae.exe info $MODEL
for i in 1 2; do
    run "cli reconstruct ($i)" $B/examples/mae.exe reconstruct $MODEL $IMGS --mask-ratio 0.75 --seed 0 -o $B/cli_rec.png
done
if [ -x build/examples/mae ]; then
    build/examples/mae reconstruct $MODEL $IMGS --mask-ratio 0.75 --seed 0 -o $B/cli_rec_native.png >/dev/null 2>&1
    if cmp -s $B/cli_rec.png $B/cli_rec_native.png; then
        echo "  cli: the reconstruction is byte for byte the native one"
    else
        bad "the Windows CLI's reconstruction differs from the native one"
    fi
fi

echo "check_windows: $runs Windows runs under Wine, $fail failed; $(($(date +%s) - start)) s in all"
[ $fail -eq 0 ]
