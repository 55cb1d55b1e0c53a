# Cross toolchain for Debian's MinGW-w64 (x86_64-w64-mingw32-gcc): Windows x64 binaries from
# Linux. cmake -DCMAKE_TOOLCHAIN_FILE=tests/cmake_consumer/mingw-w64.cmake ...
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# BOTH: the package under test is installed to a prefix outside the MinGW sysroot
# (CMAKE_PREFIX_PATH), which ONLY would re-root under /usr/x86_64-w64-mingw32 and miss
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
