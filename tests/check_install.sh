#!/bin/sh
# `make install` into a temporary DESTDIR, then build a program against the installed copy with
# pkg-config, once against the shared library and once statically, run both, and check that
# `make uninstall` removes every installed file.
set -eu
BUILD=${BUILD:-build}
if ! command -v pkg-config >/dev/null 2>&1; then
    echo "check_install: skipped (no pkg-config)"
    exit 0
fi
CC=${CC:-cc}
dir=$BUILD/check_install
rm -rf "$dir"
mkdir -p "$dir"
stage=$(cd "$dir" && pwd)/stage
prefix=/opt/libmae
make -s install PREFIX=$prefix DESTDIR="$stage" > "$dir/install.log"

# The prefix trick: mae.pc names /opt/libmae; the sysroot makes pkg-config point into the stage.
export PKG_CONFIG_PATH="$stage$prefix/lib/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$stage"
export PKG_CONFIG_LIBDIR="$PKG_CONFIG_PATH"   # no system .pc files: only ours can answer
version=$(pkg-config --modversion mae)
want=$(for part in MAJOR MINOR PATCH; do
    sed -n "s/^#define MAE_VERSION_$part \([0-9]*\).*/\1/p" include/mae.h; done | paste -sd. -)
[ "$version" = "$want" ] || { echo "check_install: mae.pc says $version, mae.h $want"; exit 1; }

cat > "$dir/prog.c" <<'PROG'
#include <stdio.h>
#include <mae.h>
int main(void)
{
    mae_config cfg;
    mae_model *m = NULL;
    mae_ctx *c = NULL;
    float img[3 * 32 * 32], loss = -1.0f;
    int i;
    if (mae_version() != MAE_VERSION_NUMBER) { puts("header and library disagree"); return 1; }
    for (i = 0; i < 3 * 32 * 32; i++)
        img[i] = (float)(i % 17) / 8.0f - 1.0f;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK || mae_model_create(&cfg, 1, &m) != MAE_OK ||
        mae_ctx_create(m, 1, &c) != MAE_OK || mae_forward(c, img, 1, NULL, &loss, NULL, NULL, NULL) != MAE_OK) {
        printf("failed: %s\n", mae_last_error());
        return 1;
    }
    mae_ctx_free(c);
    mae_model_free(m);
    if (!(loss > 0.0f)) { puts("no loss"); return 1; }
    printf("installed libmae %s: loss %.6f\n", mae_version_string(), loss);
    return 0;
}
PROG

san=""
[ -n "${SANITIZE:-}" ] && san="-fsanitize=$SANITIZE"

# shared: the program must load libmae.so.1 from the stage
# shellcheck disable=SC2046
$CC -std=c99 -Wall -Wextra -pedantic -Werror $san "$dir/prog.c" -o "$dir/prog_shared" \
    $(pkg-config --cflags --libs mae)
LD_LIBRARY_PATH="$stage$prefix/lib" "$dir/prog_shared" > "$dir/shared.out"
readelf -d "$dir/prog_shared" | grep -q 'NEEDED.*libmae\.so\.1\]' || {
    echo "check_install: the shared program does not need libmae.so.1"; exit 1; }
LD_LIBRARY_PATH="$stage$prefix/lib" ldd "$dir/prog_shared" | grep -q "$stage$prefix/lib/libmae.so.1" || {
    echo "check_install: the shared program did not resolve libmae.so.1 in the stage"; exit 1; }

# static: `pkg-config --static` adds Libs.private (-lm, OpenMP); -l:libmae.a picks the archive
# over the shared library that sits beside it
libs=$(pkg-config --static --libs mae | sed 's/-lmae\b/-l:libmae.a/')
# shellcheck disable=SC2086
$CC -std=c99 -Wall -Wextra -pedantic -Werror $san "$dir/prog.c" -o "$dir/prog_static" \
    $(pkg-config --static --cflags mae) $libs
if readelf -d "$dir/prog_static" | grep -q 'libmae'; then
    echo "check_install: the static program still needs libmae.so"; exit 1
fi
"$dir/prog_static" > "$dir/static.out"
cmp -s "$dir/shared.out" "$dir/static.out" || {
    echo "check_install: shared and static runs differ"; cat "$dir/shared.out" "$dir/static.out"; exit 1; }

make -s uninstall PREFIX=$prefix DESTDIR="$stage" > /dev/null
left=$(find "$stage" ! -type d)
[ -z "$left" ] || { echo "check_install: uninstall left: $left"; exit 1; }
cat "$dir/shared.out"
echo "check_install: make install/uninstall, pkg-config shared and static builds run"
