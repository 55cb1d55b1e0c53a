#!/bin/sh
# The CMake build (CMakeLists.txt) the three ways a CMake project takes libmae, each time
# building tests/cmake_consumer and running it:
#   package  cmake --install into a prefix (both libraries, mae.h, mae.pc, the CMake package),
#            then find_package(mae) - shared, and static with MAE_USE_STATIC_LIBS;
#            find_package(mae 2.0) must fail (SameMajorVersion);
#   subdir   add_subdirectory(<this tree>) - the static library (a subproject's default);
#   fetch    FetchContent from a local tarball of this tree - the shared library
#            (BUILD_SHARED_LIBS=ON).
# Every consumer must print what the same program prints against the Makefile's library.
# With x86_64-w64-mingw32-gcc, and once the tree has its Windows layer (src/os/), the library
# and the consumer are also cross-built with tests/cmake_consumer/mingw-w64.cmake (and run under
# Wine when wine is installed).
set -eu
BUILD=${BUILD:-build}
SHARED=${SHARED:-lib/libmae.so.1.0.0}
CC=${CC:-cc}
if ! command -v cmake >/dev/null 2>&1; then
    echo "check_cmake: skipped (no cmake)"
    exit 0
fi
if [ -n "${SANITIZE:-}" ]; then
    echo "check_cmake: skipped (sanitizer build; the CMake routes are checked in the plain one)"
    exit 0
fi
src=$(pwd)
dir=$src/$BUILD/check_cmake
rm -rf "$dir"
mkdir -p "$dir"
consumer=$src/tests/cmake_consumer
gen="-DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=$CC"
fail() { echo "check_cmake: $*"; exit 1; }
step() {   # step NAME command...: quiet unless it fails
    name=$1; shift
    "$@" > "$dir/$name.log" 2>&1 || { cat "$dir/$name.log"; fail "$name failed: $*"; }
}

# the reference: the consumer against the Makefile's shared library
libdir=$(dirname "$SHARED")
$CC -std=c11 -Iinclude "$consumer/main.c" "$SHARED" -lm -o "$dir/ref"
LD_LIBRARY_PATH=$libdir "$dir/ref" > "$dir/ref.out" || { cat "$dir/ref.out"; fail "reference run failed"; }
same() {   # same NAME OUTPUT: the route printed what the reference printed
    cmp -s "$dir/ref.out" "$2" || { echo "reference:"; cat "$dir/ref.out"; echo "$1:"; cat "$2"; fail "$1 differs"; }
}

# ---- package: build, install, find_package
prefix=$dir/prefix
step lib-configure cmake -S "$src" -B "$dir/lib" $gen -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib
step lib-build cmake --build "$dir/lib" -j2
step lib-install cmake --install "$dir/lib"
vpart() { sed -n "s/^#define MAE_VERSION_$1 \\([0-9]*\\).*/\\1/p" include/mae.h; }
version=$(vpart MAJOR).$(vpart MINOR).$(vpart PATCH)
major=${version%%.*}
for f in include/mae.h lib/libmae.a "lib/libmae.so.$version" "lib/libmae.so.$major" lib/libmae.so \
         lib/pkgconfig/mae.pc lib/cmake/mae/mae-config.cmake lib/cmake/mae/mae-config-version.cmake \
         lib/cmake/mae/mae-targets.cmake; do
    [ -e "$prefix/$f" ] || fail "cmake --install did not write $f"
done
cmp -s include/mae.h "$prefix/include/mae.h" || fail "the installed mae.h is not include/mae.h"
grep -q "^Version: $version\$" "$prefix/lib/pkgconfig/mae.pc" || fail "mae.pc does not say Version: $version"
grep -q "^libdir=\${prefix}/lib\$" "$prefix/lib/pkgconfig/mae.pc" || fail "mae.pc: wrong libdir"
readelf -d "$prefix/lib/libmae.so.$version" | grep -q "SONAME.*\[libmae\.so\.$major\]" || fail "soname is not libmae.so.$major"
# only mae_* functions leave the shared library, as in the Makefile build
others=$(nm -D --defined-only "$prefix/lib/libmae.so.$version" | awk '$2 ~ /[TDBR]/ && $3 !~ /^mae_/ {print $3}')
[ -z "$others" ] || fail "the CMake libmae.so exports more than mae_*: $others"

step pkg-shared-configure cmake -S "$consumer" -B "$dir/pkg-shared" $gen -DMAE_ROUTE=package -DCMAKE_PREFIX_PATH="$prefix"
step pkg-shared-build cmake --build "$dir/pkg-shared"
"$dir/pkg-shared/consumer" > "$dir/pkg-shared.out" || { cat "$dir/pkg-shared.out"; fail "find_package (shared) consumer failed"; }
same "find_package (shared)" "$dir/pkg-shared.out"
readelf -d "$dir/pkg-shared/consumer" | grep -q "NEEDED.*libmae\.so\.$major\]" || fail "find_package: mae::mae is not the shared library"

step pkg-static-configure cmake -S "$consumer" -B "$dir/pkg-static" $gen -DMAE_ROUTE=package -DCMAKE_PREFIX_PATH="$prefix" -DMAE_USE_STATIC_LIBS=ON
step pkg-static-build cmake --build "$dir/pkg-static"
"$dir/pkg-static/consumer" > "$dir/pkg-static.out" || { cat "$dir/pkg-static.out"; fail "find_package (static) consumer failed"; }
same "find_package (static)" "$dir/pkg-static.out"
if readelf -d "$dir/pkg-static/consumer" | grep -q libmae; then fail "MAE_USE_STATIC_LIBS: the consumer still needs libmae.so"; fi

mkdir -p "$dir/pkg-v2"
sed 's/find_package(mae 1.0 /find_package(mae 2.0 /' "$consumer/CMakeLists.txt" > "$dir/pkg-v2/CMakeLists.txt"
cp "$consumer/main.c" "$dir/pkg-v2/"
if cmake -S "$dir/pkg-v2" -B "$dir/pkg-v2/build" -DMAE_ROUTE=package -DCMAKE_PREFIX_PATH="$prefix" > "$dir/pkg-v2.log" 2>&1; then
    fail "find_package(mae 2.0) accepted version $version"
fi

# ---- add_subdirectory
step subdir-configure cmake -S "$consumer" -B "$dir/subdir" $gen -DMAE_ROUTE=subdir -DMAE_SOURCE_DIR="$src"
step subdir-build cmake --build "$dir/subdir" -j2
"$dir/subdir/consumer" > "$dir/subdir.out" || { cat "$dir/subdir.out"; fail "add_subdirectory consumer failed"; }
same "add_subdirectory" "$dir/subdir.out"
if readelf -d "$dir/subdir/consumer" | grep -q libmae; then fail "add_subdirectory: expected the static library"; fi

# ---- FetchContent from a local tarball (what a release download is), shared this time
tar -czf "$dir/mae-$version.tar.gz" --transform "s|^|mae-$version/|" CMakeLists.txt cmake include lib/mae.pc.in src
step fetch-configure cmake -S "$consumer" -B "$dir/fetch" $gen -DMAE_ROUTE=fetch -DMAE_URL="$dir/mae-$version.tar.gz" -DBUILD_SHARED_LIBS=ON
step fetch-build cmake --build "$dir/fetch" -j2
"$dir/fetch/consumer" > "$dir/fetch.out" || { cat "$dir/fetch.out"; fail "FetchContent consumer failed"; }
same "FetchContent" "$dir/fetch.out"
readelf -d "$dir/fetch/consumer" | grep -q "NEEDED.*libmae\.so\.$major\]" || fail "FetchContent with BUILD_SHARED_LIBS: not the shared library"

# ---- MinGW-w64 (Windows x64) cross build, once the Windows layer is in the tree
mingw="skipped (no x86_64-w64-mingw32-gcc)"
if command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    if [ ! -d src/os ]; then
        mingw="skipped (the tree has no Windows platform layer, src/os/, yet)"
    else
        wprefix=$dir/mingw-prefix
        tc=-DCMAKE_TOOLCHAIN_FILE=$consumer/mingw-w64.cmake
        step mingw-configure cmake -S "$src" -B "$dir/mingw" "$tc" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$wprefix"
        step mingw-build cmake --build "$dir/mingw" -j2
        step mingw-install cmake --install "$dir/mingw"
        for f in bin/libmae.dll lib/libmae.dll.a lib/libmae.a lib/cmake/mae/mae-config.cmake; do
            [ -e "$wprefix/$f" ] || fail "MinGW: cmake --install did not write $f"
        done
        step mingw-consumer-configure cmake -S "$consumer" -B "$dir/mingw-consumer" "$tc" -DCMAKE_BUILD_TYPE=Release -DMAE_ROUTE=package -DCMAKE_PREFIX_PATH="$wprefix"
        step mingw-consumer-build cmake --build "$dir/mingw-consumer"
        mingw="built (DLL, import library, static library, consumer)"
        if command -v wine >/dev/null 2>&1; then
            cp "$wprefix/bin/libmae.dll" "$dir/mingw-consumer/"
            WINEDEBUG=-all wine "$dir/mingw-consumer/consumer.exe" 2>/dev/null | tr -d '\r' > "$dir/mingw.out" ||
                fail "MinGW consumer failed under Wine"
            same "MinGW under Wine" "$dir/mingw.out"
            mingw="built and run under Wine"
        fi
    fi
fi
cat "$dir/ref.out"
echo "check_cmake: MinGW: $mingw"
echo "check_cmake: find_package (shared, static), add_subdirectory, FetchContent: consumers agree with the Makefile build"
