/* The platform layer on POSIX systems (Linux, the BSDs, macOS). */
#define _GNU_SOURCE 1   /* glibc's sched_getaffinity and CPU_COUNT; harmless elsewhere */
#if !defined(_WIN32)
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include "os.h"

FILE *mae_os_fopen(const char *path, const char *mode)
{
    return fopen(path, mode);
}

int mae_os_remove(const char *path)
{
    return remove(path) == 0 ? 0 : -1;
}

FILE *mae_os_create_excl(const char *path)
{
    /* O_CLOEXEC: a process that another thread forks and execs meanwhile must not inherit it */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int err = errno;
        close(fd);
        unlink(path);
        errno = err;
    }
    return f;
}

int mae_os_replace(const char *from, const char *to)
{
    return rename(from, to) == 0 ? 0 : -1;   /* POSIX rename replaces atomically */
}

int mae_os_fsync(FILE *f)
{
    return fsync(fileno(f)) == 0 ? 0 : -1;
}

void mae_os_sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if ((size_t)(slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    else
        return;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int mae_os_file_size(FILE *f, uint64_t *size)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0)
        return -1;
    if (!S_ISREG(st.st_mode) || st.st_size < 0) {
        errno = EINVAL;
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

int mae_os_seek(FILE *f, uint64_t pos)
{
    off_t o = (off_t)pos;
    if (o < 0 || (uint64_t)o != pos)
        return -1;
    return fseeko(f, o, SEEK_SET) == 0 ? 0 : -1;
}

/* ---- directories --------------------------------------------------------------------------- */

int mae_os_path_kind(const char *path, int follow)
{
    struct stat st;
    if ((follow ? stat(path, &st) : lstat(path, &st)) != 0)
        return MAE_OS_NONE;
    return S_ISREG(st.st_mode) ? MAE_OS_FILE : S_ISDIR(st.st_mode) ? MAE_OS_DIR : MAE_OS_OTHER;
}

int mae_os_mkdir(const char *path)
{
    return mkdir(path, 0777) == 0 ? 0 : -1;   /* the umask narrows it, as for files */
}

int mae_os_rmdir(const char *path)
{
    return rmdir(path) == 0 ? 0 : -1;
}

int mae_os_rename(const char *from, const char *to)
{
    struct stat st;
    if (lstat(to, &st) == 0) {   /* rename(2) would replace an empty directory or a file */
        errno = EEXIST;
        return -1;
    }
    return rename(from, to) == 0 ? 0 : -1;
}

int mae_os_dir_each(const char *path, int (*fn)(const char *name, void *arg), void *arg)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int err = 0;
    for (;;) {
        errno = 0;   /* readdir tells the end from a failure only by errno */
        struct dirent *e = readdir(d);
        if (!e) {
            err = errno;
            break;
        }
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && fn(e->d_name, arg) != 0)
            break;
    }
    closedir(d);
    errno = err;
    return err ? -1 : 0;
}

long mae_os_getpid(void)
{
    return (long)getpid();
}

double mae_os_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mae_os_ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1 << 16 ? 1 << 16 : (int)n;
}

int mae_os_ncpus_usable(void)
{
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;   /* 1024 CPUs; a larger machine's mask does not fit, and the count falls back */
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
#endif
    return mae_os_ncpus();
}

/* strerror_r comes in two kinds: XSI returns int and fills buf, GNU (with _GNU_SOURCE) returns
 * the text, which may not be in buf. Which one the C library gave is told by its type. */
static const char *from_xsi(int r, char *buf, size_t cap)
{
    (void)cap;
    return r == 0 ? buf : NULL;
}

static const char *from_gnu(char *r, char *buf, size_t cap)
{
    if (r && r != buf)
        snprintf(buf, cap, "%s", r);
    return r ? buf : NULL;
}

const char *mae_os_strerror(int err, char *buf, size_t cap)
{
    if (!cap)
        return "";
    buf[0] = 0;
    const char *s = _Generic(&strerror_r, int (*)(int, char *, size_t): from_xsi, default: from_gnu)(
        strerror_r(err, buf, cap), buf, cap);
    if (!s || !buf[0])
        snprintf(buf, cap, "error %d", err);
    return buf;
}

/* ---- threads ------------------------------------------------------------------------------- */

void mae_os_once(mae_once *once, void (*fn)(void))
{
    pthread_once(&once->o, fn);
}

static void *trampoline(void *p)
{
    mae_thread *t = p;
    t->fn(t->arg);
    return NULL;
}

int mae_thread_create(mae_thread *t, void (*fn)(void *), void *arg)
{
    t->fn = fn;
    t->arg = arg;
    return pthread_create(&t->t, NULL, trampoline, t) == 0 ? 0 : -1;
}

int mae_thread_create_nosig(mae_thread *t, void (*fn)(void *), void *arg)
{
    /* a new thread inherits its creator's mask: block everything around the creation */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = mae_thread_create(t, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

int mae_os_atfork_child(void (*fn)(void))
{
    return pthread_atfork(NULL, NULL, fn) == 0 ? 0 : -1;
}

static void (*unload_hook)(void);

void mae_os_at_unload(void (*fn)(void))
{
    unload_hook = fn;
}

/* A shared object's destructors run at dlclose and at exit, while its code is still mapped. */
__attribute__((destructor)) static void os_unload(void)
{
    if (unload_hook)
        unload_hook();
}

void mae_thread_join(mae_thread *t)
{
    pthread_join(t->t, NULL);
}

int mae_mutex_init(mae_mutex *m)
{
    return pthread_mutex_init(&m->m, NULL) == 0 ? 0 : -1;
}

void mae_mutex_destroy(mae_mutex *m)
{
    pthread_mutex_destroy(&m->m);
}

void mae_mutex_lock(mae_mutex *m)
{
    pthread_mutex_lock(&m->m);
}

void mae_mutex_unlock(mae_mutex *m)
{
    pthread_mutex_unlock(&m->m);
}

int mae_cond_init(mae_cond *c)
{
    return pthread_cond_init(&c->c, NULL) == 0 ? 0 : -1;
}

void mae_cond_destroy(mae_cond *c)
{
    pthread_cond_destroy(&c->c);
}

void mae_cond_wait(mae_cond *c, mae_mutex *m)
{
    pthread_cond_wait(&c->c, &m->m);
}

void mae_cond_signal(mae_cond *c)
{
    pthread_cond_signal(&c->c);
}

void mae_cond_broadcast(mae_cond *c)
{
    pthread_cond_broadcast(&c->c);
}

#if defined(__linux__) && defined(MAE_OS_AARCH64)
#include <sys/auxv.h>
int mae_os_arm_bf16(void)
{
    return (getauxval(AT_HWCAP2) & (1ul << 14)) != 0;   /* HWCAP2_BF16 */
}
#else
int mae_os_arm_bf16(void)
{
    return 0;   /* no portable query: the bf16 tier stays off, the wide path runs */
}
#endif

#endif
