/* The platform layer on Windows (MinGW-w64 and MSVC). Paths arrive as UTF-8 and are converted to
 * UTF-16 for the wide API; failures set errno (mapped from GetLastError) like the POSIX side. */
#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <errno.h>
#include <fcntl.h>
#include <io.h>
#include <process.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "os.h"

/* The in-place storage of os.h must hold the Windows objects it stands for. */
_Static_assert(sizeof(SRWLOCK) == sizeof(void *), "mae_mutex holds an SRWLOCK");
_Static_assert(sizeof(CONDITION_VARIABLE) == sizeof(void *), "mae_cond holds a CONDITION_VARIABLE");
_Static_assert(sizeof(INIT_ONCE) == sizeof(void *), "mae_once holds an INIT_ONCE");

#define WPATH_MAX 4096   /* UTF-16 units; longer paths fail with ENAMETOOLONG */

static void set_errno_win(DWORD e)
{
    switch (e) {
    case ERROR_FILE_NOT_FOUND: case ERROR_PATH_NOT_FOUND: case ERROR_INVALID_DRIVE:
        errno = ENOENT; break;
    case ERROR_ACCESS_DENIED: case ERROR_SHARING_VIOLATION: case ERROR_LOCK_VIOLATION:
        errno = EACCES; break;
    case ERROR_FILE_EXISTS: case ERROR_ALREADY_EXISTS:
        errno = EEXIST; break;
    case ERROR_DISK_FULL: case ERROR_HANDLE_DISK_FULL:
        errno = ENOSPC; break;
    case ERROR_NOT_ENOUGH_MEMORY: case ERROR_OUTOFMEMORY:
        errno = ENOMEM; break;
    case ERROR_FILENAME_EXCED_RANGE:
        errno = ENAMETOOLONG; break;
    case ERROR_INVALID_NAME: case ERROR_INVALID_PARAMETER: case ERROR_NO_UNICODE_TRANSLATION:
        errno = EINVAL; break;
    case ERROR_NOT_SAME_DEVICE:
        errno = EXDEV; break;
    case ERROR_DIR_NOT_EMPTY:
        errno = ENOTEMPTY; break;
    case ERROR_DIRECTORY:
        errno = ENOTDIR; break;
    default:
        errno = EIO; break;
    }
}

/* UTF-8 -> UTF-16 into w (WPATH_MAX units); 0, or -1 with errno set. */
static int widen(const char *s, wchar_t *w)
{
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, WPATH_MAX);
    if (n <= 0) {
        DWORD e = GetLastError();
        set_errno_win(e == ERROR_INSUFFICIENT_BUFFER ? ERROR_FILENAME_EXCED_RANGE : e);
        return -1;
    }
    return 0;
}

FILE *mae_os_fopen(const char *path, const char *mode)
{
    wchar_t wpath[WPATH_MAX], wmode[16];
    size_t i = 0;
    for (; mode[i] && i + 1 < sizeof wmode / sizeof wmode[0]; i++)
        wmode[i] = (wchar_t)(unsigned char)mode[i];
    wmode[i] = 0;
    if (widen(path, wpath) != 0)
        return NULL;
    return _wfopen(wpath, wmode);
}

int mae_os_remove(const char *path)
{
    wchar_t w[WPATH_MAX];
    if (widen(path, w) != 0)
        return -1;
    if (!DeleteFileW(w)) {
        set_errno_win(GetLastError());
        return -1;
    }
    return 0;
}

FILE *mae_os_create_excl(const char *path)
{
    wchar_t w[WPATH_MAX];
    if (widen(path, w) != 0)
        return NULL;
    /* CREATE_NEW is the exclusive create; handles are not inherited unless asked for */
    HANDLE h = CreateFileW(w, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL, CREATE_NEW,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        set_errno_win(GetLastError());
        return NULL;
    }
    int fd = _open_osfhandle((intptr_t)h, _O_WRONLY | _O_BINARY);
    if (fd < 0) {
        CloseHandle(h);
        DeleteFileW(w);
        errno = EMFILE;
        return NULL;
    }
    FILE *f = _fdopen(fd, "wb");
    if (!f) {
        int err = errno;
        _close(fd);
        DeleteFileW(w);
        errno = err;
    }
    return f;
}

int mae_os_replace(const char *from, const char *to)
{
    wchar_t wf[WPATH_MAX], wt[WPATH_MAX];
    if (widen(from, wf) != 0 || widen(to, wt) != 0)
        return -1;
    /* rename() refuses an existing target on Windows; this replaces it, and returns only once
     * the move is on the disk */
    if (!MoveFileExW(wf, wt, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
        set_errno_win(GetLastError());
        return -1;
    }
    return 0;
}

int mae_os_fsync(FILE *f)
{
    intptr_t h = _get_osfhandle(_fileno(f));
    if (h == -1) {
        errno = EBADF;
        return -1;
    }
    if (!FlushFileBuffers((HANDLE)h)) {
        set_errno_win(GetLastError());
        return -1;
    }
    return 0;
}

void mae_os_sync_dir(const char *path)
{
    (void)path;   /* NTFS journals the rename; MOVEFILE_WRITE_THROUGH waited for it */
}

int mae_os_file_size(FILE *f, uint64_t *size)
{
    struct _stat64 st;   /* the 64-bit variant: plain stat's size is 32 bits here */
    if (_fstat64(_fileno(f), &st) != 0)
        return -1;
    if ((st.st_mode & _S_IFMT) != _S_IFREG || st.st_size < 0) {
        errno = EINVAL;
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

int mae_os_seek(FILE *f, uint64_t pos)
{
    if (pos > (uint64_t)INT64_MAX)
        return -1;
    return _fseeki64(f, (__int64)pos, SEEK_SET) == 0 ? 0 : -1;
}

/* ---- directories --------------------------------------------------------------------------- */

/* Whether the reparse point at w is a link (a symbolic link or a junction), rather than, say, a
 * cloud-storage placeholder that stands for an ordinary file or directory. */
static int is_link(const wchar_t *w)
{
    WIN32_FIND_DATAW fd;
    HANDLE h = FindFirstFileW(w, &fd);   /* no wildcard in w: the entry itself, with its tag */
    if (h == INVALID_HANDLE_VALUE)
        return 1;
    FindClose(h);
    return fd.dwReserved0 == IO_REPARSE_TAG_SYMLINK || fd.dwReserved0 == IO_REPARSE_TAG_MOUNT_POINT;
}

int mae_os_path_kind(const char *path, int follow)
{
    wchar_t w[WPATH_MAX];
    if (widen(path, w) != 0)
        return MAE_OS_NONE;
    DWORD a = GetFileAttributesW(w);   /* of the link itself, when path is one */
    if (a == INVALID_FILE_ATTRIBUTES) {
        set_errno_win(GetLastError());
        return MAE_OS_NONE;
    }
    if ((a & FILE_ATTRIBUTE_REPARSE_POINT) && is_link(w)) {
        if (!follow)
            return MAE_OS_OTHER;
        /* opening follows the link; BACKUP_SEMANTICS lets a directory be opened */
        HANDLE h = CreateFileW(w, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                               FILE_FLAG_BACKUP_SEMANTICS, NULL);
        if (h == INVALID_HANDLE_VALUE) {
            set_errno_win(GetLastError());
            return MAE_OS_NONE;
        }
        BY_HANDLE_FILE_INFORMATION info;
        BOOL ok = GetFileInformationByHandle(h, &info);
        DWORD e = GetLastError();
        CloseHandle(h);
        if (!ok) {
            set_errno_win(e);
            return MAE_OS_NONE;
        }
        a = info.dwFileAttributes;
    }
    return (a & FILE_ATTRIBUTE_DIRECTORY) ? MAE_OS_DIR : (a & FILE_ATTRIBUTE_DEVICE) ? MAE_OS_OTHER : MAE_OS_FILE;
}

int mae_os_mkdir(const char *path)
{
    wchar_t w[WPATH_MAX];
    if (widen(path, w) != 0)
        return -1;
    if (!CreateDirectoryW(w, NULL)) {
        set_errno_win(GetLastError());
        return -1;
    }
    return 0;
}

int mae_os_rmdir(const char *path)
{
    wchar_t w[WPATH_MAX];
    if (widen(path, w) != 0)
        return -1;
    if (!RemoveDirectoryW(w)) {
        set_errno_win(GetLastError());
        return -1;
    }
    return 0;
}

int mae_os_rename(const char *from, const char *to)
{
    wchar_t wf[WPATH_MAX], wt[WPATH_MAX];
    if (widen(from, wf) != 0 || widen(to, wt) != 0)
        return -1;
    /* no MOVEFILE_REPLACE_EXISTING: an existing to fails with ERROR_ALREADY_EXISTS */
    if (!MoveFileExW(wf, wt, MOVEFILE_WRITE_THROUGH)) {
        set_errno_win(GetLastError());
        return -1;
    }
    return 0;
}

int mae_os_dir_each(const char *path, int (*fn)(const char *name, void *arg), void *arg)
{
    wchar_t w[WPATH_MAX];
    if (widen(path, w) != 0)
        return -1;
    size_t n = wcslen(w);
    if (n + 3 > WPATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (n && w[n - 1] != L'/' && w[n - 1] != L'\\')
        w[n++] = L'\\';
    w[n++] = L'*';
    w[n] = 0;
    WIN32_FIND_DATAW fd;
    HANDLE h = FindFirstFileExW(w, FindExInfoBasic, &fd, FindExSearchNameMatch, NULL, 0);
    if (h == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        if (e == ERROR_FILE_NOT_FOUND)   /* no entries at all (a drive root) */
            return 0;
        set_errno_win(e);
        return -1;
    }
    char name[MAX_PATH * 3 + 1];   /* a UTF-16 unit takes at most 3 bytes of UTF-8 */
    DWORD e = ERROR_NO_MORE_FILES;   /* stays so when fn stops the walk */
    for (;;) {
        if (wcscmp(fd.cFileName, L".") != 0 && wcscmp(fd.cFileName, L"..") != 0) {
            if (WideCharToMultiByte(CP_UTF8, 0, fd.cFileName, -1, name, (int)sizeof name, NULL, NULL) <= 0) {
                e = GetLastError();
                break;
            }
            if (fn(name, arg) != 0)
                break;
        }
        if (!FindNextFileW(h, &fd)) {
            e = GetLastError();
            break;
        }
    }
    FindClose(h);
    if (e != ERROR_NO_MORE_FILES) {
        set_errno_win(e);
        return -1;
    }
    return 0;
}

long mae_os_getpid(void)
{
    return (long)GetCurrentProcessId();
}

double mae_os_seconds(void)
{
    LARGE_INTEGER t, f;
    QueryPerformanceCounter(&t);
    QueryPerformanceFrequency(&f);
    return (double)t.QuadPart / (double)f.QuadPart;
}

int mae_os_ncpus(void)
{
    DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    return n < 1 ? 1 : n > 1 << 16 ? 1 << 16 : (int)n;
}

int mae_os_ncpus_usable(void)
{
    /* a process affinity mask covers one processor group; a process that spans groups (the
     * default since Windows 11 on machines with more than 64 processors) may use them all */
    DWORD_PTR proc = 0, sys = 0;
    if (GetActiveProcessorGroupCount() == 1 && GetProcessAffinityMask(GetCurrentProcess(), &proc, &sys)) {
        int n = 0;
        for (; proc; proc &= proc - 1)
            n++;
        if (n > 0)
            return n;
    }
    return mae_os_ncpus();
}

const char *mae_os_strerror(int err, char *buf, size_t cap)
{
    if (!cap)
        return "";
    if (strerror_s(buf, cap, err) != 0 || !buf[0])
        snprintf(buf, cap, "error %d", err);
    return buf;
}

/* ---- threads ------------------------------------------------------------------------------- */

static BOOL CALLBACK once_call(PINIT_ONCE once, PVOID fn, PVOID *ctx)
{
    (void)once;
    (void)ctx;
    void (*f)(void);
    memcpy(&f, &fn, sizeof f);   /* a function pointer carried through a data pointer */
    f();
    return TRUE;
}

void mae_os_once(mae_once *once, void (*fn)(void))
{
    PVOID p;
    memcpy(&p, &fn, sizeof p);
    InitOnceExecuteOnce((PINIT_ONCE)once, once_call, p, NULL);
}

static unsigned __stdcall trampoline(void *p)
{
    mae_thread *t = p;
    t->fn(t->arg);
    return 0;
}

int mae_thread_create(mae_thread *t, void (*fn)(void *), void *arg)
{
    t->fn = fn;
    t->arg = arg;
    /* _beginthreadex rather than CreateThread: the C runtime sets up its per-thread state */
    uintptr_t h = _beginthreadex(NULL, 0, trampoline, t, 0, NULL);
    t->handle = (void *)h;
    return h ? 0 : -1;
}

int mae_thread_create_nosig(mae_thread *t, void (*fn)(void *), void *arg)
{
    return mae_thread_create(t, fn, arg);   /* no signals to block */
}

int mae_os_atfork_child(void (*fn)(void))
{
    (void)fn;   /* no fork */
    return 0;
}

void mae_os_at_unload(void (*fn)(void))
{
    (void)fn;   /* see os.h */
}

void mae_thread_join(mae_thread *t)
{
    WaitForSingleObject((HANDLE)t->handle, INFINITE);
    CloseHandle((HANDLE)t->handle);
}

int mae_mutex_init(mae_mutex *m)
{
    InitializeSRWLock((PSRWLOCK)m);
    return 0;
}

void mae_mutex_destroy(mae_mutex *m)
{
    (void)m;   /* an SRWLOCK holds no resources */
}

void mae_mutex_lock(mae_mutex *m)
{
    AcquireSRWLockExclusive((PSRWLOCK)m);
}

void mae_mutex_unlock(mae_mutex *m)
{
    ReleaseSRWLockExclusive((PSRWLOCK)m);
}

int mae_cond_init(mae_cond *c)
{
    InitializeConditionVariable((PCONDITION_VARIABLE)c);
    return 0;
}

void mae_cond_destroy(mae_cond *c)
{
    (void)c;
}

void mae_cond_wait(mae_cond *c, mae_mutex *m)
{
    SleepConditionVariableSRW((PCONDITION_VARIABLE)c, (PSRWLOCK)m, INFINITE, 0);
}

void mae_cond_signal(mae_cond *c)
{
    WakeConditionVariable((PCONDITION_VARIABLE)c);
}

void mae_cond_broadcast(mae_cond *c)
{
    WakeAllConditionVariable((PCONDITION_VARIABLE)c);
}

int mae_os_arm_bf16(void)
{
    return 0;   /* not queried on Windows: the bf16 tier stays off, the wide path runs */
}

#endif
