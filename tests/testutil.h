/* What every test uses: checks that count failures and name the sub-test they fail in, sub-test
 * selection (--only NAME, --list), random data, error measures, paths into the source tree, one
 * counting/failing allocator hook and the misuse expectation (EXPECT). */
#ifndef MAE_TESTUTIL_H
#define MAE_TESTUTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif
#include "mae.h"

static int tu_failures = 0;
static int tu_checks = 0;

/* ---- sub-tests --------------------------------------------------------------------------------
 * main() calls tu_init(argc, argv), then runs each sub-test as TU_RUN("name", call): with
 * --only NAME (repeatable) only the sub-tests whose name contains NAME run, --list prints the
 * names and runs nothing. A failing CHECK names the sub-test it is in. */
enum { TU_MAX_ONLY = 16 };
static const char *tu_only[TU_MAX_ONLY];
static int tu_n_only, tu_listing, tu_selected;
static char tu_current[128];          /* the running sub-test; "" outside one */
static int tu_sub_failures, tu_sub_checks;

static FILE *tu_list_out;              /* where --list writes the names */

/* Reads --only NAME and --list; other arguments are the test's own. With --list the test's own
 * output (the work its main does outside sub-tests) is silenced, so that only the names show. */
static inline void tu_init(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--only") == 0 && i + 1 < argc && tu_n_only < TU_MAX_ONLY)
            tu_only[tu_n_only++] = argv[++i];
        else if (strcmp(argv[i], "--list") == 0)
            tu_listing = 1;
    }
    tu_list_out = stdout;
#if defined(__unix__) || defined(__APPLE__)
    if (tu_listing) {
        fflush(stdout);
        int fd = dup(fileno(stdout));
        FILE *names = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (names && freopen("/dev/null", "w", stdout))
            tu_list_out = names;
    }
#endif
}

/* A sub-test's name from a format, for sub-tests run in a loop: TU_RUN(tu_name("%s/x", t), ...). */
static inline const char *tu_name(const char *fmt, ...)
{
    static char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

/* Whether the sub-test `name` runs; if so it becomes the current one. */
static inline int tu_begin(const char *name)
{
    int run = tu_n_only == 0;
    for (int i = 0; i < tu_n_only && !run; i++)
        run = strstr(name, tu_only[i]) != NULL;
    if (!run)
        return 0;
    tu_selected++;
    if (tu_listing) {
        fprintf(tu_list_out, "%s\n", name);
        return 0;
    }
    snprintf(tu_current, sizeof tu_current, "%s", name);
    tu_sub_failures = tu_failures;
    tu_sub_checks = tu_checks;
    return 1;
}

static inline void tu_end(void)
{
    if (tu_failures > tu_sub_failures)
        fprintf(stderr, "sub-test %s: %d of %d checks failed\n", tu_current, tu_failures - tu_sub_failures,
                tu_checks - tu_sub_checks);
    tu_current[0] = '\0';
}

#define TU_RUN(name, call) do { if (tu_begin(name)) { call; tu_end(); } } while (0)

/* The "file:line: FAIL [sub-test]: " prefix of a failed check. */
static inline void tu_fail_at(const char *file, int line)
{
    tu_failures++;
    if (tu_current[0])
        fprintf(stderr, "%s:%d: FAIL [%s]: ", file, line, tu_current);
    else
        fprintf(stderr, "%s:%d: FAIL: ", file, line);
}

#define CHECK(cond, ...) do { \
    tu_checks++; \
    if (!(cond)) { tu_fail_at(__FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } while (0)

#define CHECK_OK(expr) do { mae_status s_ = (expr); \
    CHECK(s_ == MAE_OK, "%s -> %s: %s", #expr, mae_status_str(s_), mae_last_error()); } while (0)

/* The closing line "name: N checks, N failed" that tests/run.sh shows. With --only, a selection
 * that matched no sub-test is a failure (a mistyped name must not pass). */
static inline int tu_finish(const char *name)
{
    if (tu_listing) {
        if (tu_selected == 0)
            fprintf(tu_list_out, "(%s has no sub-tests: it runs as one)\n", name);
        fflush(tu_list_out);
        return 0;
    }
    if (tu_n_only > 0 && tu_selected == 0) {
        printf("%s: no sub-test matches --only %s (--list shows the names)\n", name, tu_only[0]);
        return 1;
    }
    printf("%s: %d checks, %d failed", name, tu_checks, tu_failures);
    if (tu_n_only > 0)
        printf(" (%d sub-tests selected by --only)", tu_selected);
    printf("\n");
    return tu_failures ? 1 : 0;
}

/* ---- the source tree ---------------------------------------------------------------------------
 * Tests run from any directory: files of the tree (tests/data/...) are found through $MAE_SRCDIR
 * (tests/run.sh sets it), else the root this binary was built from (TU_SRCDIR, from the
 * Makefile), else the working directory. */
static inline const char *tu_srcdir(void)
{
    const char *d = getenv("MAE_SRCDIR");
    if (d && d[0])
        return d;
#ifdef TU_SRCDIR
    return TU_SRCDIR;
#else
    return ".";
#endif
}

/* srcdir/rel, in one of four static buffers (so that a call can take two paths). */
static inline const char *tu_path(const char *rel)
{
    static char buf[4][1024];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", tu_srcdir(), rel);
    return b;
}

/* ---- the allocator hook ------------------------------------------------------------------------
 * One hook for every test that watches or breaks the library's allocations: set the fields of
 * tu_alloc after tu_alloc_reset(), install with tu_alloc_install(), read the counters, and
 * mae_set_allocator(NULL) when done. */
typedef struct tu_alloc_state {
    atomic_long calls;     /* allocations asked for since the reset (failed ones too) */
    atomic_long live;      /* blocks handed out and not yet freed */
    atomic_long bad_frees; /* frees while no block was live: a double or foreign free */
    long fail_at;          /* this call (1-based) returns NULL; 0: none */
    int fail_after;        /* and every call after it, too */
    size_t cap;            /* a request above cap bytes returns NULL; 0: no cap */
    size_t largest;        /* the largest request */
    int junk;              /* fill every block with 0xff bytes (NaN floats): a read of memory the
                            * library never wrote shows */
    atomic_size_t bytes;   /* bytes handed out and not yet freed */
    atomic_size_t peak;    /* the most bytes out at once since the reset (or tu_alloc_mark) */
} tu_alloc_state;
static tu_alloc_state tu_alloc;

static inline void tu_alloc_reset(void)
{
    atomic_store(&tu_alloc.calls, 0);
    atomic_store(&tu_alloc.live, 0);
    atomic_store(&tu_alloc.bad_frees, 0);
    tu_alloc.fail_at = 0;
    tu_alloc.fail_after = 0;
    tu_alloc.cap = 0;
    tu_alloc.largest = 0;
    tu_alloc.junk = 0;
    atomic_store(&tu_alloc.bytes, 0);
    atomic_store(&tu_alloc.peak, 0);
}

/* Starts a new peak from the bytes out now (a measurement inside a longer sequence). */
static inline void tu_alloc_mark(void)
{
    atomic_store(&tu_alloc.peak, atomic_load(&tu_alloc.bytes));
}

static inline void *tu_hook_alloc(void *user, size_t size)
{
    (void)user;
    long k = atomic_fetch_add(&tu_alloc.calls, 1) + 1;
    if (size > tu_alloc.largest)
        tu_alloc.largest = size;
    if (tu_alloc.fail_at > 0 && (k == tu_alloc.fail_at || (tu_alloc.fail_after && k > tu_alloc.fail_at)))
        return NULL;
    if (tu_alloc.cap > 0 && size > tu_alloc.cap)
        return NULL;
    /* each block carries its size in 16 bytes before it, so that frees can count bytes (malloc's
     * 16-byte alignment is kept) */
    unsigned char *p = size <= (size_t)-1 - 16 ? malloc(size + 16) : NULL;
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    if (tu_alloc.junk)
        memset(p + 16, 0xff, size);
    atomic_fetch_add(&tu_alloc.live, 1);
    size_t now = atomic_fetch_add(&tu_alloc.bytes, size) + size, peak = atomic_load(&tu_alloc.peak);
    while (now > peak && !atomic_compare_exchange_weak(&tu_alloc.peak, &peak, now)) {
    }
    return p + 16;
}

static inline void tu_hook_free(void *user, void *p)
{
    (void)user;
    if (!p)
        return;
    if (atomic_fetch_sub(&tu_alloc.live, 1) <= 0)
        atomic_fetch_add(&tu_alloc.bad_frees, 1);
    unsigned char *b = (unsigned char *)p - 16;
    size_t size;
    memcpy(&size, b, sizeof size);
    atomic_fetch_sub(&tu_alloc.bytes, size);
    free(b);
}

static inline mae_status tu_alloc_install(void)
{
    static const mae_allocator a = { tu_hook_alloc, tu_hook_free, NULL };
    return mae_set_allocator(&a);
}

/* ---- misuse expectations -----------------------------------------------------------------------
 * EXPECT(call, status): the call returns status and, when it fails, sets a message of its own. A
 * known message is set first (mae_kernels_force(NULL) fails with one), so that a failing call
 * that leaves the previous text is caught. */
static inline const char *tu_primed_message(void)
{
    static char msg[512];
    mae_kernels_force(NULL);
    snprintf(msg, sizeof msg, "%s", mae_last_error());
    return msg;
}

#define EXPECT(expr, want) do { \
    const char *p_ = tu_primed_message(); \
    mae_status s_ = (expr); \
    CHECK(s_ == (want), "%s -> %s (%s), want %s", #expr, mae_status_str(s_), mae_last_error(), mae_status_str(want)); \
    if ((want) != MAE_OK) \
        CHECK(mae_last_error()[0] && strcmp(mae_last_error(), p_) != 0, "%s: no message of its own", #expr); \
} while (0)

/* xorshift for test data: independent of the library's RNG */
static uint64_t tu_state = 0x9E3779B97F4A7C15ull;
static inline void tu_seed(uint64_t s) { tu_state = s * 2654435761u + 0x9E3779B97F4A7C15ull; }
static inline double tu_uniform(void)
{
    tu_state ^= tu_state << 13; tu_state ^= tu_state >> 7; tu_state ^= tu_state << 17;
    return (double)(tu_state >> 11) * (1.0 / 9007199254740992.0);
}
static inline void tu_fill(float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * tu_uniform());
}
/* NaN poison so that an unwritten output element fails every comparison */
static inline void tu_poison(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

/* ||a - b|| / ||b|| in double; NaN anywhere gives +inf */
static inline double tu_rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i]))
            return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline void *tu_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "test: out of memory\n"); exit(2); }
    return p;
}

/* A whole file into memory (free it), *size its length; NULL if it cannot be read. */
static inline unsigned char *tu_read_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    *size = 0;
    if (!fp)
        return NULL;
    long n = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    unsigned char *b = n >= 0 && fseek(fp, 0, SEEK_SET) == 0 ? tu_malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    if (b)
        *size = (size_t)n;
    return b;
}

/* Reference files (the .safetensors files of tests/data), for tests that include
 * src/io/safetensors.h before this header. */
#ifdef MAE_SAFETENSORS_H
/* A tensor of the file as float32, checked to hold `count` values; NULL (and a failed check) if
 * it is missing or has another size. The caller frees it. */
static inline float *tu_st_tensor(const mae_st_file *f, const char *name, size_t count)
{
    const mae_st_entry *e = mae_st_find(f, name);
    CHECK(e != NULL, "reference tensor %s is missing", name);
    if (!e)
        return NULL;
    CHECK(e->count == count, "reference tensor %s has %zu values, expected %zu", name, e->count, count);
    if (e->count != count)
        return NULL;
    float *x = tu_malloc(count * sizeof *x);
    mae_status s = mae_st_read_f32(f, e, x, count);
    CHECK(s == MAE_OK, "reading reference tensor %s: %s", name, mae_last_error());
    if (s != MAE_OK) {
        free(x);
        return NULL;
    }
    return x;
}
#endif

#endif
