#!/bin/sh
# Runs every test binary given, then the checks that need the built library, and prints the
# closing line "N passed, N failed".
pass=0; fail=0; failed=""
for t in "$@"; do
    if "$t" > "$t.log" 2>&1; then
        pass=$((pass + 1)); tail -n 1 "$t.log"
    else
        fail=$((fail + 1)); failed="$failed $t"; cat "$t.log"; echo "FAILED: $t"
    fi
done
for s in tests/check_*.sh; do
    [ -f "$s" ] || continue
    if sh "$s" > "$BUILD/$(basename "$s").log" 2>&1; then
        pass=$((pass + 1)); tail -n 1 "$BUILD/$(basename "$s").log"
    else
        fail=$((fail + 1)); failed="$failed $s"; cat "$BUILD/$(basename "$s").log"; echo "FAILED: $s"
    fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
