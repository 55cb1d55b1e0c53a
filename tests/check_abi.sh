#!/bin/sh
# ABI check: the library's ABI (exported functions and the public types they reach, from DWARF)
# against the committed 1.0 baseline tests/abi/libmae.abi, with Debian's abigail-tools.
# Additions pass (new functions; fields appended to a size-versioned struct); removals and
# changes fail. Skipped when abidw/abidiff are missing. The baseline records no build directory
# (--no-corpus-path, --no-comp-dir-path): only paths inside the repository and system headers.
#
#   sh tests/check_abi.sh            compare (run by make test)
#   sh tests/check_abi.sh --update   rewrite the baseline (make abi-baseline): only when the
#                                    release's ABI is final, see docs/ABI.md
set -eu
BUILD=${BUILD:-build}
baseline=tests/abi/libmae.abi
if ! command -v abidw >/dev/null 2>&1 || ! command -v abidiff >/dev/null 2>&1; then
    echo "check_abi: skipped (no abidw/abidiff: apt-get install abigail-tools)"
    exit 0
fi
dir=$BUILD/check_abi
mkdir -p "$dir"
version=$(for part in MAJOR MINOR PATCH; do
    sed -n "s/^#define MAE_VERSION_$part \([0-9]*\).*/\1/p" include/mae.h; done | paste -sd. -)

# abidw reads types from DWARF: build a separate unoptimized copy with -g, without sanitizers.
make -s BUILD="$dir/obj" LIBDIR="$dir/lib" CFLAGS="-O0 -g" SANITIZE= "$dir/lib/libmae.so.$version" \
    > "$dir/build.log" 2>&1 || { cat "$dir/build.log"; echo "check_abi: debug build failed"; exit 1; }
so=$dir/lib/libmae.so.$version

if [ "${1:-}" = "--update" ]; then
    abidw --no-corpus-path --no-comp-dir-path --headers-dir include --drop-private-types --exported-interfaces-only "$so" > "$baseline"
    echo "check_abi: wrote $baseline ($(grep -c '<elf-symbol' "$baseline") symbols)"
    exit 0
fi
[ -f "$baseline" ] || { echo "check_abi: $baseline is missing (make abi-baseline)"; exit 1; }

set +e
abidiff --no-show-locs --suppressions tests/abi/libmae.suppr --headers-dir2 include --drop-private-types --exported-interfaces-only "$baseline" "$so" > "$dir/diff.txt" 2>&1
rc=$?
set -e
# abidiff's exit code is a bit set: 1 error, 2 usage, 4 some change, 8 an incompatible one.
# Bit 4 alone also covers a changed parameter list, so read the summary too: only additions
# may remain.
removed_or_changed=$(sed -n 's/^\(Functions\|Variables\) changes summary: \([0-9]*\) Removed, \([0-9]*\) Changed.*/\2 \3/p' \
    "$dir/diff.txt" | awk '{ n += $1 + $2 } END { print n + 0 }')
if [ $((rc & 11)) -ne 0 ] || [ "$removed_or_changed" -ne 0 ]; then
    cat "$dir/diff.txt"
    echo "check_abi: incompatible ABI change against $baseline (abidiff exit $rc)"
    exit 1
fi
added=$(sed -n 's/^Functions changes summary: .* \([0-9]*\) Added.*/\1/p' "$dir/diff.txt")
echo "check_abi: ABI compatible with $baseline (${added:-0} functions added since)"
