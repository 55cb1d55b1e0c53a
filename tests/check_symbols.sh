#!/bin/sh
# The shared library exports only mae_* symbols, has the soname libmae.so.1 and does not ask for
# an executable stack. A test binary compiled with a stray helper would show up here first.
set -eu
BUILD=${BUILD:-build}
so=${SHARED:-lib/libmae.so.1.0.0}
[ -f "$so" ] || { echo "check_symbols: $so is missing (run make)"; exit 1; }
major=$(sed -n 's/^#define MAE_VERSION_MAJOR \([0-9]*\).*/\1/p' include/mae.h)
status=0

# Defined dynamic symbols, minus the linker's own markers.
nm -D --defined-only "$so" | awk '{print $NF}' \
    | grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' > "$BUILD/check_symbols.list"
bad=$(grep -v '^mae_' "$BUILD/check_symbols.list" || true)
if [ -n "$bad" ]; then
    echo "check_symbols: exported symbols without the mae_ prefix:"; echo "$bad"; status=1
fi
n=$(wc -l < "$BUILD/check_symbols.list")
[ "$n" -gt 0 ] || { echo "check_symbols: no mae_ symbols exported"; status=1; }

# Every function the header declares is exported (an MAE_API left off a definition).
sed -n 's/^MAE_API[^(]*[ *]\(mae_[a-z0-9_]*\)(.*/\1/p' include/mae.h | sort -u > "$BUILD/check_symbols.header"
missing=$(sort -u "$BUILD/check_symbols.list" | comm -23 "$BUILD/check_symbols.header" - || true)
if [ -n "$missing" ]; then
    echo "check_symbols: declared in mae.h but not exported:"; echo "$missing"; status=1
fi

soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libmae.so.$major" ]; then
    echo "check_symbols: soname is '$soname', want libmae.so.$major"; status=1
fi

# PT_GNU_STACK must exist and must not be executable (RWE).
stack=$(readelf -lW "$so" | grep GNU_STACK || true)
case "$stack" in
    "") echo "check_symbols: no PT_GNU_STACK header (the loader would assume an executable stack)"; status=1 ;;
    *RWE*) echo "check_symbols: executable stack: $stack"; status=1 ;;
esac
[ $status -eq 0 ] || exit 1
echo "check_symbols: $n exported symbols, all mae_*, all of mae.h's; soname $soname; stack not executable"
