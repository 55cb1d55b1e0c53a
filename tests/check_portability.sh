#!/bin/sh
# MSVC readiness, checked without MSVC (docs/BUILDING.md says what this does and does not prove):
#   1. no GCC-only construct in src/ outside the platform layer src/os: builtins, attributes,
#      inline assembly, POSIX/GCC headers, direct pthread_*/sysconf calls, _Thread_local, _Atomic,
#      GCC's machine macros, #ifdef _WIN32;
#      no OpenMP beyond MSVC's OpenMP 2.0;
#   2. every source compiles with clang in Microsoft mode with the MSVC branches of src/os
#      forced on (MAE_OS_FORCE_MSVC_PATHS: Interlocked atomics, __declspec(thread), _mm_prefetch,
#      __cpuidex/_xgetbv) against MinGW's headers;
#   3. include/mae.h compiles as C and as C++ for the x86_64-pc-windows-msvc target, both as the
#      DLL's consumer (MAE_DLL) and as the DLL itself (MAE_BUILD_DLL).
set -u
cd "$(dirname "$0")/.."
fail=0
bad() { echo "check_portability: FAIL: $*"; fail=$((fail + 1)); }

PAT='__builtin_|__attribute__|__asm__|asm *\(|#include *<(pthread|sched|semaphore|cpuid|unistd|stdatomic|fcntl|dirent|sys/[a-z]*)\.h>|_Thread_local|_Atomic|__x86_64__|__aarch64__|__i386__|defined *\(_WIN32\)|#ifdef *_WIN32|(^|[^_[:alnum:]])(strerror|getpid|fsync|open|fdopen|unlink|sysconf|pthread_[a-z_]+) *\('
echo '    __builtin_prefetch(p);' | grep -Eq "$PAT" || bad "the pattern matches nothing"
hits=$(grep -rnE "$PAT" src --include='*.c' --include='*.h' | grep -v '^src/os/')
if [ -n "$hits" ]; then
    echo "$hits"; bad "GCC- or POSIX-only constructs outside src/os (use the platform layer, src/os/os.h)"
fi
OMP='#pragma omp.*(collapse|task|simd|taskloop|depend|proc_bind|atomic (capture|read|write)|reduction\((min|max))'
hits=$(grep -rnE "$OMP" src)
if [ -n "$hits" ]; then
    echo "$hits"; bad "OpenMP beyond 2.0 (MSVC's)"
fi

if ! command -v clang >/dev/null 2>&1; then
    echo "check_portability: skipped the clang checks (no clang)"
else
    CL="clang -fms-extensions -fsyntax-only -Wall -Wextra -Werror -Wno-unused-parameter"
    if [ -d /usr/share/mingw-w64/include ]; then
        list=$(ls src/*/*.c | grep -v -e '_neon\.c$' -e '_neonbf16\.c$' -e 'os_unix\.c$')
        # two at a time; a file that fails prints its errors
        echo "$list" | xargs -P 2 -I{} sh -c '
            f={}; isa=""
            case $f in *_avx2.c) isa="-mavx2 -mfma";; *_avx512.c) isa="-mavx512f -mavx512vl -mavx512dq -mavx2 -mfma";; esac
            '"$CL"' --target=x86_64-w64-mingw32 -std=c11 -DMAE_OS_FORCE_MSVC_PATHS -DMAE_BUILD_DLL -D__USE_MINGW_ANSI_STDIO=1 -fopenmp=libgomp \
                -Iinclude -Isrc $isa "$f" || echo "FAILED $f"' > "${BUILD:-build}/portability.log" 2>&1
        if grep -q "FAILED" "${BUILD:-build}/portability.log"; then
            cat "${BUILD:-build}/portability.log"; bad "sources do not compile with the MSVC paths"
        else
            echo "check_portability: $(echo "$list" | wc -l) sources compile in clang's Microsoft mode with the MSVC paths of src/os"
        fi
        rm -f "${BUILD:-build}/portability.log"
    else
        echo "check_portability: skipped the MSVC-path compile (no MinGW headers; apt-get install mingw-w64)"
    fi
    printf '#include "mae.h"\nint main(void) { return mae_version() == 0; }\n' > build.mae_h_check.c
    for lang in "c -std=c11" "c++ -std=c++14"; do
        for d in MAE_DLL MAE_BUILD_DLL; do
            $CL --target=x86_64-pc-windows-msvc -ffreestanding -fms-compatibility -Iinclude -D$d -x $lang build.mae_h_check.c ||
                bad "include/mae.h does not compile as ${lang%% *} for MSVC with $d"
        done
    done
    rm -f build.mae_h_check.c
fi
[ $fail -eq 0 ] && echo "check_portability: passed"
[ $fail -eq 0 ]
