#!/bin/sh
# mae.h is a clean, self-contained header for every kind of user: C89-era compilers (as far as
# <stdint.h> allows), C99, C11, C++ (its declarations get C linkage: a C++ program links and
# runs against the library), all with -Wall -Wextra -pedantic -Werror, under gcc and clang.
set -eu
BUILD=${BUILD:-build}
dir=$BUILD/check_header
mkdir -p "$dir"
status=0
ran=0
skipped=""   # what could not run here, named in the last line

# Included first (self-contained) and twice (include guard); uses a few types so that the
# declarations are really parsed.
cat > "$dir/use.c" <<'SRC'
#include "mae.h"
#include "mae.h"
int use_header(void);
int use_header(void)
{
    mae_config cfg;
    mae_allocator a;
    mae_status s = MAE_ERR_STATE;
    unsigned v = MAE_VERSION_NUMBER;
    a.alloc = 0; a.free = 0; a.user = 0;
    cfg.struct_size = 0u;
    return s == MAE_OK || cfg.struct_size != 0u || a.user != 0 || v == 0u;
}
SRC
cp "$dir/use.c" "$dir/use.cpp"

try() {   # compiler, flags...: compile use.c/use.cpp; a missing compiler is skipped
    cc=$1; shift
    if ! command -v "$cc" >/dev/null 2>&1; then
        case " $skipped " in *" $cc "*) ;; *) skipped="$skipped $cc" ;; esac
        return 0
    fi
    src=$dir/use.c
    case "$cc" in *++) src=$dir/use.cpp ;; esac
    ran=$((ran + 1))
    if ! "$cc" "$@" -Wall -Wextra -pedantic -Werror -Iinclude -c "$src" -o "$dir/use.o" 2> "$dir/err.log"; then
        echo "check_header: $cc $* fails:"; cat "$dir/err.log"; status=1
    fi
}
for cc in gcc clang; do
    # C89/C90 with the one C99 piece the API needs, <stdint.h>; long long is tolerated there
    try $cc -std=c89 -Wno-long-long
    try $cc -std=c99 -Wstrict-prototypes -Wmissing-prototypes
    try $cc -std=c11 -Wstrict-prototypes -Wmissing-prototypes -Wshadow -Wconversion
done
for cxx in g++ clang++; do
    try $cxx -std=c++98 -Wno-long-long
    try $cxx -std=c++11
    try $cxx -std=c++17 -Wold-style-cast
done

# C linkage: a C++ program calls the library through the header, links and runs.
if command -v g++ >/dev/null 2>&1 && [ -z "${SANITIZE:-}" ] && [ -f lib/libmae.a ]; then
    cat > "$dir/link.cpp" <<'SRC'
#include <cstdio>
#include <cstring>
#include "mae.h"
int main()
{
    mae_config cfg;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK || cfg.patch_size != 8)
        return 1;
    if (mae_config_init(&cfg, sizeof cfg, "no-such-preset") != MAE_ERR_INVALID_ARG)
        return 1;
    std::printf("C++ sees libmae %s, last error: %s\n", mae_version_string(), mae_last_error());
    return std::strcmp(mae_version_string(), MAE_VERSION_STRING) != 0;
}
SRC
    ran=$((ran + 1))
    if g++ -std=c++11 -Wall -Wextra -pedantic -Werror -Iinclude "$dir/link.cpp" lib/libmae.a -fopenmp -lm \
           -o "$dir/link" 2> "$dir/err.log" && "$dir/link" > "$dir/link.out"; then
        cat "$dir/link.out"
    else
        echo "check_header: C++ program does not link or run against libmae.a:"; cat "$dir/err.log"; status=1
    fi
elif [ -z "${SANITIZE:-}" ]; then
    skipped="$skipped C++-link(no g++ or lib/libmae.a)"
fi
[ $status -eq 0 ] || exit 1
[ $ran -gt 0 ] || { echo "check_header: skipped (no gcc, clang, g++ or clang++)"; exit 0; }
echo "check_header: mae.h compiles in $ran configurations (C89..C11, C++98..C++17, -pedantic -Werror)${skipped:+; skipped, compiler missing:$skipped}"
