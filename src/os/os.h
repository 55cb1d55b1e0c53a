/* The platform layer: everything that differs between operating systems or compilers, so that
 * the rest of the library has no #ifdef _WIN32 and no compiler builtin. One file per OS
 * (os_unix.c, os_win.c, as SQLite's), the CPU identification in os_cpuid.c, and the few things
 * that must inline (atomics, thread-local storage, prefetch) here.
 *
 * Paths are UTF-8 everywhere; on Windows every open, rename and remove converts them to UTF-16
 * and calls the wide API, so non-ASCII names work. Functions that can fail return 0 on success
 * and -1 with errno set (Windows errors are mapped onto errno values), so that one error-text
 * routine serves every caller. This layer sits below src/util and includes nothing of ours. */
#ifndef MAE_OS_H
#define MAE_OS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- which machine ------------------------------------------------------------------------- */

/* GCC and clang say __x86_64__, MSVC says _M_X64 (and _M_AMD64). */
#if defined(__x86_64__) || defined(_M_X64) || defined(_M_AMD64)
#  define MAE_OS_X86_64 1
#elif defined(__aarch64__) || defined(_M_ARM64)
#  define MAE_OS_AARCH64 1
#endif

/* MSVC's own compiler (not clang-cl, which has the GCC builtins). MAE_OS_FORCE_MSVC_PATHS lets a
 * GCC-compatible compiler take the MSVC branches, so that they are compiled and tested here. */
#if (defined(_MSC_VER) && !defined(__clang__)) || defined(MAE_OS_FORCE_MSVC_PATHS)
#  define MAE_OS_MSVC 1
#endif

/* printf-style format checking. MinGW's "printf" archetype is msvcrt's (no %zu); the library is
 * built with __USE_MINGW_ANSI_STDIO=1, whose printf is the C99 one, gnu_printf. */
#if defined(__MINGW32__) && defined(__GNUC__) && !defined(__clang__)
#  define MAE_PRINTF(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#elif defined(__GNUC__)
#  define MAE_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#  define MAE_PRINTF(fmt, args)
#endif

/* Compiles one function for an instruction-set extension the build does not assume (the caller
 * checks the CPU first), e.g. MAE_OS_TARGET("sse4.2"). MSVC needs nothing: its intrinsics are
 * always available. */
#if defined(__GNUC__) && !defined(MAE_OS_MSVC)
#  define MAE_OS_TARGET(isa) __attribute__((target(isa)))
#else
#  define MAE_OS_TARGET(isa)
#endif

/* ---- files ----------------------------------------------------------------------------------- */

FILE *mae_os_fopen(const char *path, const char *mode);   /* fopen with a UTF-8 path */
int   mae_os_remove(const char *path);
/* Creates path exclusively (fails with EEXIST when it exists), not inherited by child
 * processes, opened "wb". */
FILE *mae_os_create_excl(const char *path);
/* Renames from over to, replacing to atomically if it exists (POSIX rename; MoveFileExW with
 * MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH on Windows). */
int   mae_os_replace(const char *from, const char *to);
/* Flushes f's written data to the disk (fsync / FlushFileBuffers); call fflush first. */
int   mae_os_fsync(FILE *f);
/* Flushes the directory that holds path, so that a rename into it survives a power cut. Best
 * effort (some file systems refuse); a no-op on Windows, where the rename was written through. */
void  mae_os_sync_dir(const char *path);
/* The size of the regular file behind f; -1 (errno EINVAL) when it is not a regular file. */
int   mae_os_file_size(FILE *f, uint64_t *size);
/* Moves f to byte pos from the start (64-bit offsets on every system); 0 or -1. */
int   mae_os_seek(FILE *f, uint64_t pos);

/* ---- directories (the Hugging Face directory reader and writer) ---------------------------- */

/* What is at a path. MAE_OS_NONE also when it cannot be told (errno says why: ENOENT when
 * nothing is there). MAE_OS_OTHER: a device, a pipe, a socket; and when links are not followed,
 * a symbolic link or a Windows junction. */
enum { MAE_OS_NONE = 0, MAE_OS_FILE = 1, MAE_OS_DIR = 2, MAE_OS_OTHER = 3 };
/* follow: 1 looks through a symbolic link at path to its target (stat), 0 looks at the link
 * itself (lstat; on Windows a symbolic-link or junction reparse point). */
int mae_os_path_kind(const char *path, int follow);
int mae_os_mkdir(const char *path);    /* a new directory; EEXIST when path exists */
int mae_os_rmdir(const char *path);    /* removes an empty directory; ENOTEMPTY otherwise */
/* Renames a directory (or file) to a name that is free, on the same file system; EEXIST when
 * to exists. Windows: MoveFileExW without MOVEFILE_REPLACE_EXISTING, written through. POSIX
 * rename would replace an empty directory at to: the check before it leaves a window in which a
 * directory created at to meanwhile is replaced, acceptable for the private names it serves. */
int mae_os_rename(const char *from, const char *to);

/* Calls fn(name, arg) for each entry of the directory path ("." and ".." left out; names in
 * UTF-8 on every system) until fn returns nonzero. 0 when every entry was seen or fn stopped
 * the walk; -1 with errno set when the directory cannot be read (fn may have seen some entries).
 * fn may remove the entry it is given. A callback rather than an iterator: no opaque type. */
int mae_os_dir_each(const char *path, int (*fn)(const char *name, void *arg), void *arg);

/* Whether c separates the parts of a path: '/', and on Windows '\\' too. */
static inline int mae_os_is_sep(char c)
{
#if defined(_WIN32)
    return c == '/' || c == '\\';
#else
    return c == '/';
#endif
}

/* ---- process, errors ------------------------------------------------------------------------ */

long        mae_os_getpid(void);
int         mae_os_ncpus(void);                          /* online processors, at least 1 */
/* The processors this process may run on: its affinity mask (sched_getaffinity; on Windows the
 * process affinity mask, or every active processor when the process spans processor groups),
 * else the online processors; at least 1. */
int         mae_os_ncpus_usable(void);
double      mae_os_seconds(void);                        /* a monotonic clock, in seconds */
/* The text of errno value err in buf, without strerror's shared buffer (thread-safe). */
const char *mae_os_strerror(int err, char *buf, size_t cap);

/* ---- CPU identification (os_cpuid.c; x86-64 only) ------------------------------------------- */

/* r = {eax, ebx, ecx, edx} of CPUID(leaf, subleaf); zeros when leaf is beyond the maximum. */
void               mae_os_cpuid(unsigned leaf, unsigned subleaf, unsigned r[4]);
/* XCR0; only valid when CPUID.1:ECX reports OSXSAVE. */
unsigned long long mae_os_xgetbv0(void);
/* Whether an AArch64 CPU has the BF16 extension (BFDOT/BFMMLA) and the OS reports it; 0 elsewhere. */
int                mae_os_arm_bf16(void);

/* ---- threads --------------------------------------------------------------------------------- */

/* Storage is in place (no allocation); a mae_thread must stay at its address until joined. On
 * Windows the fields hold an SRWLOCK, a CONDITION_VARIABLE, an INIT_ONCE (each one pointer) and
 * a thread HANDLE, so that this header needs no <windows.h>. */
#if defined(_WIN32)
typedef struct mae_mutex { void *opaque; } mae_mutex;
typedef struct mae_cond  { void *opaque; } mae_cond;
typedef struct mae_once  { void *opaque; } mae_once;
#  define MAE_ONCE_INIT { 0 }
#  define MAE_MUTEX_INIT { 0 }   /* SRWLOCK_INIT */
#  define MAE_COND_INIT { 0 }    /* CONDITION_VARIABLE_INIT */
typedef struct mae_thread { void *handle; void (*fn)(void *); void *arg; } mae_thread;
#else
#  include <pthread.h>
typedef struct mae_mutex { pthread_mutex_t m; } mae_mutex;
typedef struct mae_cond  { pthread_cond_t c; } mae_cond;
typedef struct mae_once  { pthread_once_t o; } mae_once;
#  define MAE_ONCE_INIT { PTHREAD_ONCE_INIT }
#  define MAE_MUTEX_INIT { PTHREAD_MUTEX_INITIALIZER }
#  define MAE_COND_INIT { PTHREAD_COND_INITIALIZER }
typedef struct mae_thread { pthread_t t; void (*fn)(void *); void *arg; } mae_thread;
#endif

/* Runs fn exactly once over all threads that pass the same once; the others wait for it. */
void mae_os_once(mae_once *once, void (*fn)(void));

int  mae_thread_create(mae_thread *t, void (*fn)(void *), void *arg);   /* 0 or -1 */
/* The same, for a library's own long-lived worker: the thread starts with every signal blocked,
 * so that the host's signal handlers run on the host's threads only (Windows has no signals:
 * plain mae_thread_create). */
int  mae_thread_create_nosig(mae_thread *t, void (*fn)(void *), void *arg);
void mae_thread_join(mae_thread *t);
int  mae_mutex_init(mae_mutex *m);
void mae_mutex_destroy(mae_mutex *m);
void mae_mutex_lock(mae_mutex *m);
void mae_mutex_unlock(mae_mutex *m);
int  mae_cond_init(mae_cond *c);
void mae_cond_destroy(mae_cond *c);
void mae_cond_wait(mae_cond *c, mae_mutex *m);
void mae_cond_signal(mae_cond *c);
void mae_cond_broadcast(mae_cond *c);

/* fn runs in the child after a fork(), where only the forking thread exists; it may reset the
 * caller's thread state. At most one hook per call of this function; a no-op on Windows, which
 * has no fork. 0 or -1. */
int  mae_os_atfork_child(void (*fn)(void));
/* fn runs when the library is unloaded (dlclose) or the process exits, before the library's code
 * and statics go away: a pool stops its workers there. One hook (a second call replaces it). On
 * Windows a no-op: ExitProcess ends the other threads before the DLL is detached, and joining
 * them from DllMain would wait under the loader lock. */
void mae_os_at_unload(void (*fn)(void));

/* ---- thread-local storage, prefetch, spin hint ----------------------------------------------------------- */

#if defined(MAE_OS_MSVC)
#  define MAE_THREAD_LOCAL __declspec(thread)
#else
#  define MAE_THREAD_LOCAL _Thread_local
#endif

/* A read prefetch into every cache level; a no-op where the compiler offers none. */
#if defined(MAE_OS_MSVC) && defined(MAE_OS_X86_64)
#  include <xmmintrin.h>
#  define mae_prefetch(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#elif defined(__GNUC__) && !defined(MAE_OS_MSVC)
#  define mae_prefetch(p) __builtin_prefetch((p), 0, 3)
#else
#  define mae_prefetch(p) ((void)(p))
#endif

/* A spin-wait hint (x86 pause, Arm yield): a thread polling a flag lets its sibling hyperthread
 * run and does not flood the memory system; nothing where the machine has no such hint. */
#if defined(MAE_OS_MSVC) && defined(MAE_OS_X86_64)
#  include <immintrin.h>
#  define mae_cpu_pause() _mm_pause()
#elif defined(MAE_OS_MSVC) && defined(MAE_OS_AARCH64)
#  include <intrin.h>
#  define mae_cpu_pause() __yield()
#elif defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#  define mae_cpu_pause() __builtin_ia32_pause()
#elif defined(__GNUC__) && defined(__aarch64__)
#  define mae_cpu_pause() __asm__ __volatile__("yield")
#else
#  define mae_cpu_pause() ((void)0)
#endif

/* ---- atomics ---------------------------------------------------------------------------------- */

/* A pointer, a counter and a size that threads share. Loads acquire, stores release,
 * read-modify-write operations (add, compare-and-swap) are sequentially consistent. A long is 32
 * bits on Windows: counters stay within that. The size is for limits a caller sets (64 bits). C11 <stdatomic.h> where the compiler has it,
 * Interlocked functions with MSVC (whose C11 atomics still need /experimental:c11atomics). */
#if defined(MAE_OS_MSVC)
#  include <intrin.h>
typedef struct mae_atomic_ptr { void *volatile v; } mae_atomic_ptr;
typedef struct mae_atomic_long { volatile long v; } mae_atomic_long;

static inline void mae_atomic_ptr_init(mae_atomic_ptr *a, void *v) { a->v = v; }
static inline void *mae_atomic_ptr_load(mae_atomic_ptr *a)
{
    return _InterlockedCompareExchangePointer((void *volatile *)&a->v, NULL, NULL);
}
static inline void mae_atomic_ptr_store(mae_atomic_ptr *a, void *v)
{
    (void)_InterlockedExchangePointer((void *volatile *)&a->v, v);
}
/* Stores desired if the value is expected; returns the value found (== expected on success). */
static inline void *mae_atomic_ptr_cas(mae_atomic_ptr *a, void *expected, void *desired)
{
    return _InterlockedCompareExchangePointer((void *volatile *)&a->v, desired, expected);
}
static inline void mae_atomic_long_init(mae_atomic_long *a, long v) { a->v = v; }
static inline long mae_atomic_long_load(mae_atomic_long *a)
{
    return _InterlockedCompareExchange(&a->v, 0, 0);
}
/* Adds d and returns the previous value. */
static inline long mae_atomic_long_add(mae_atomic_long *a, long d)
{
    return _InterlockedExchangeAdd(&a->v, d);
}
static inline void mae_atomic_long_store(mae_atomic_long *a, long v)
{
    (void)_InterlockedExchange(&a->v, v);
}
/* Stores desired if the value is expected; returns the value found (== expected on success). */
static inline long mae_atomic_long_cas(mae_atomic_long *a, long expected, long desired)
{
    return _InterlockedCompareExchange(&a->v, desired, expected);
}
typedef struct mae_atomic_size { volatile long long v; } mae_atomic_size;
static inline void mae_atomic_size_init(mae_atomic_size *a, size_t v) { a->v = (long long)v; }
static inline size_t mae_atomic_size_load(mae_atomic_size *a)
{
    return (size_t)_InterlockedCompareExchange64(&a->v, 0, 0);
}
static inline void mae_atomic_size_store(mae_atomic_size *a, size_t v)
{
    (void)_InterlockedExchange64(&a->v, (long long)v);
}
#else
#  include <stdatomic.h>
typedef struct mae_atomic_ptr { _Atomic(void *) v; } mae_atomic_ptr;
typedef struct mae_atomic_long { _Atomic(long) v; } mae_atomic_long;

static inline void mae_atomic_ptr_init(mae_atomic_ptr *a, void *v) { atomic_init(&a->v, v); }
static inline void *mae_atomic_ptr_load(mae_atomic_ptr *a)
{
    return atomic_load_explicit(&a->v, memory_order_acquire);
}
static inline void mae_atomic_ptr_store(mae_atomic_ptr *a, void *v)
{
    atomic_store_explicit(&a->v, v, memory_order_release);
}
static inline void *mae_atomic_ptr_cas(mae_atomic_ptr *a, void *expected, void *desired)
{
    atomic_compare_exchange_strong(&a->v, &expected, desired);
    return expected;
}
static inline void mae_atomic_long_init(mae_atomic_long *a, long v) { atomic_init(&a->v, v); }
static inline long mae_atomic_long_load(mae_atomic_long *a)
{
    return atomic_load_explicit(&a->v, memory_order_acquire);
}
static inline long mae_atomic_long_add(mae_atomic_long *a, long d)
{
    return atomic_fetch_add(&a->v, d);
}
static inline void mae_atomic_long_store(mae_atomic_long *a, long v)
{
    atomic_store_explicit(&a->v, v, memory_order_release);
}
static inline long mae_atomic_long_cas(mae_atomic_long *a, long expected, long desired)
{
    atomic_compare_exchange_strong(&a->v, &expected, desired);
    return expected;
}
typedef struct mae_atomic_size { _Atomic(size_t) v; } mae_atomic_size;
static inline void mae_atomic_size_init(mae_atomic_size *a, size_t v) { atomic_init(&a->v, v); }
static inline size_t mae_atomic_size_load(mae_atomic_size *a)
{
    return atomic_load_explicit(&a->v, memory_order_acquire);
}
static inline void mae_atomic_size_store(mae_atomic_size *a, size_t v)
{
    atomic_store_explicit(&a->v, v, memory_order_release);
}
#endif

#endif
