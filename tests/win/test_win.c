/* What only Windows can get wrong, run under Wine by tests/check_windows.sh:
 *   - saving over an existing file (rename() refuses an existing target on Windows): a model
 *     saved twice to one path, a PNG written twice, each time the new content replacing the
 *     old, no temporary file left;
 *   - UTF-8 paths: a file saved under a non-ASCII name is found by that name through the wide
 *     API (not stored under its bytes read as the ANSI code page);
 *   - the dispatch picks the tier the CPU has (--expect-tier NAME: a missing CPUID path would
 *     fall back to scalar silently);
 *   - a writer killed mid-save (TerminateProcess, Windows' SIGKILL) leaves the previous
 *     checkpoint intact (--kill-save; the child is this program with --child).
 * Windows only: built by the cross build, not by `make test`'s native run. */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <direct.h>
#include <wchar.h>
#include "../testutil.h"

static mae_trainer *make_trainer(uint64_t seed)
{
    mae_config cfg;
    mae_model *m = NULL;
    mae_trainer *t = NULL;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK || mae_model_create(&cfg, seed, &m) != MAE_OK ||
        mae_trainer_create(m, 2, &t) != MAE_OK)
        return NULL;
    size_t n = 2 * 3 * (size_t)cfg.img_size * (size_t)cfg.img_size;
    float *imgs = malloc(n * sizeof *imgs), loss;
    if (!imgs)
        return NULL;
    tu_fill(imgs, n, -1, 1);
    int ok = mae_trainer_forward_backward(t, imgs, 2, NULL, &loss) == MAE_OK && mae_trainer_step(t) == MAE_OK;
    free(imgs);
    return ok ? t : NULL;
}

/* Whether the file at the UTF-8 path holds exactly want (read through the wide API). */
static int same_file(const char *path, const unsigned char *want, size_t n)
{
    wchar_t w[MAX_PATH];
    if (MultiByteToWideChar(CP_UTF8, 0, path, -1, w, MAX_PATH) <= 0)
        return 0;
    FILE *f = _wfopen(w, L"rb");
    if (!f)
        return 0;
    unsigned char *got = malloc(n + 1);
    size_t got_n = got ? fread(got, 1, n + 1, f) : 0;
    fclose(f);
    int same = got && got_n == n && memcmp(got, want, n) == 0;
    free(got);
    return same;
}

/* Files in dir whose name contains ".tmp." (the writer's temporaries). */
static int temp_files(const char *dir)
{
    char pattern[MAX_PATH];
    snprintf(pattern, sizeof pattern, "%s\\*.tmp.*", dir);
    WIN32_FIND_DATAA fd;
    HANDLE h = FindFirstFileA(pattern, &fd);
    int n = 0;
    if (h != INVALID_HANDLE_VALUE) {
        do n++; while (FindNextFileA(h, &fd));
        FindClose(h);
    }
    return n;
}

static void test_overwrite(const char *dir)
{
    mae_config cfg;
    mae_model *a = NULL, *b = NULL;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    CHECK_OK(mae_model_create(&cfg, 1, &a));
    CHECK_OK(mae_model_create(&cfg, 2, &b));
    if (!a || !b)
        return;
    char ref[MAX_PATH], path[MAX_PATH], upath[MAX_PATH];
    snprintf(ref, sizeof ref, "%s\\b.ref", dir);
    snprintf(path, sizeof path, "%s\\model.safetensors", dir);
    /* "modèle-ü.safetensors" in UTF-8 */
    snprintf(upath, sizeof upath, "%s\\mod\xc3\xa8le-\xc3\xbc.safetensors", dir);
    CHECK_OK(mae_model_save(b, ref));
    size_t nb = 0;
    unsigned char *bb = tu_read_file(ref, &nb);
    CHECK(bb != NULL, "cannot read back %s", ref);
    for (int i = 0; i < 2; i++) {
        const char *p = i ? upath : path;
        CHECK_OK(mae_model_save(a, p));
        mae_status s = mae_model_save(b, p);   /* over the existing file */
        CHECK(s == MAE_OK, "saving over %s: %s", p, mae_last_error());
        CHECK(bb && same_file(p, bb, nb), "%s: the second save did not replace the first", p);
        CHECK_OK(mae_model_save(b, p));         /* and once more, over a file of equal size */
        mae_model *back = NULL;
        CHECK_OK(mae_model_load(p, &back));
        mae_model_free(back);
    }
    /* the UTF-8 name reached the file system as UTF-16, not as ANSI bytes */
    wchar_t wname[MAX_PATH];
    swprintf(wname, MAX_PATH, L"%hs\\mod\u00e8le-\u00fc.safetensors", dir);
    FILE *f = _wfopen(wname, L"rb");
    CHECK(f != NULL, "the non-ASCII name was not stored as UTF-16");
    if (f)
        fclose(f);

    /* PNG written twice, different sizes: the second replaces the first */
    char png[MAX_PATH];
    snprintf(png, sizeof png, "%s\\image-\xc3\xa9.png", dir);
    uint8_t px1[4 * 3 * 3], px2[2 * 5];
    for (size_t i = 0; i < sizeof px1; i++)
        px1[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof px2; i++)
        px2[i] = (uint8_t)(200 - i);
    CHECK_OK(mae_png_write(png, px1, 4, 3, 3, 0));
    mae_status s = mae_png_write(png, px2, 5, 2, 1, 0);
    CHECK(s == MAE_OK, "writing a PNG over an existing one: %s", mae_last_error());
    uint8_t *back = NULL;
    int w = 0, h = 0, c = 0;
    CHECK_OK(mae_image_load(png, 0, &back, &w, &h, &c));
    CHECK(back && w == 5 && h == 2 && c == 1 && memcmp(back, px2, sizeof px2) == 0, "the PNG was not replaced");
    mae_image_free(back);

    /* a failed save (the target is a folder) keeps nothing half-written and leaves no temporary */
    char sub[MAX_PATH];
    snprintf(sub, sizeof sub, "%s\\folder", dir);
    _mkdir(sub);
    CHECK(mae_model_save(a, sub) == MAE_ERR_IO, "saving over a folder succeeded");
    CHECK(temp_files(dir) == 0, "a temporary file was left in %s", dir);
    free(bb);
    mae_model_free(a);
    mae_model_free(b);
}

/* The child: saves a, b, a, b, ... to path until terminated. */
static int child(const char *path)
{
    tu_seed(1);
    mae_trainer *a = make_trainer(1), *b = make_trainer(2);
    if (!a || !b)
        return 2;
    for (int k = 0;; k++)
        if (mae_trainer_save(k % 2 ? b : a, path) != MAE_OK)
            return 3;
}

static void test_kill_save(const char *dir)
{
    char self[MAX_PATH];
    GetModuleFileNameA(NULL, self, sizeof self);
    char path[MAX_PATH], ref_a[MAX_PATH], ref_b[MAX_PATH];
    snprintf(path, sizeof path, "%s\\ckpt.safetensors", dir);
    snprintf(ref_a, sizeof ref_a, "%s\\a.ref", dir);
    snprintf(ref_b, sizeof ref_b, "%s\\b.ref", dir);
    tu_seed(1);   /* the same trainers as the child's */
    mae_trainer *ta = make_trainer(1), *tb = make_trainer(2);
    CHECK(ta && tb, "setup: %s", mae_last_error());
    if (!ta || !tb)
        return;
    CHECK_OK(mae_trainer_save(ta, ref_a));
    CHECK_OK(mae_trainer_save(tb, ref_b));
    size_t na = 0, nb = 0;
    unsigned char *a = tu_read_file(ref_a, &na), *b = tu_read_file(ref_b, &nb);
    CHECK(a && b && (na != nb || memcmp(a, b, na) != 0), "the two reference checkpoints differ");
    LARGE_INTEGER f, t0, t1;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&t0);
    CHECK_OK(mae_trainer_save(ta, path));
    QueryPerformanceCounter(&t1);
    double save_ms = (double)(t1.QuadPart - t0.QuadPart) * 1e3 / (double)f.QuadPart;

    enum { ROUNDS = 8 };
    int as_a = 0, as_b = 0;
    for (int r = 0; r < ROUNDS; r++) {
        char cmd[2 * MAX_PATH + 32];
        snprintf(cmd, sizeof cmd, "\"%s\" --child \"%s\"", self, path);
        STARTUPINFOA si;
        memset(&si, 0, sizeof si);
        si.cb = sizeof si;
        PROCESS_INFORMATION pi;
        CHECK(CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi), "CreateProcess failed");
        /* let the child start (a Wine process takes a while) and land at varying save phases */
        DWORD exited = WaitForSingleObject(pi.hProcess, 1500 + (DWORD)(tu_uniform() * save_ms * 6));
        CHECK(exited == WAIT_TIMEOUT, "round %d: the writer ended by itself", r);
        TerminateProcess(pi.hProcess, 9);
        WaitForSingleObject(pi.hProcess, INFINITE);
        CloseHandle(pi.hProcess);
        CloseHandle(pi.hThread);
        size_t n = 0;
        unsigned char *got = tu_read_file(path, &n);
        int is_a = got && n == na && memcmp(got, a, na) == 0;
        int is_b = got && n == nb && memcmp(got, b, nb) == 0;
        CHECK(is_a || is_b, "round %d: after the kill the checkpoint (%zu bytes) is neither complete version", r, n);
        free(got);
        mae_status s = mae_trainer_load(is_b ? tb : ta, path);
        CHECK(s == MAE_OK, "round %d: the checkpoint does not load: %s", r, mae_last_error());
        as_a += is_a;
        as_b += is_b;
    }
    printf("%d kills during saves of %.1f ms: version a %d, b %d times, %d temporary files left\n",
           ROUNDS, save_ms, as_a, as_b, temp_files(dir));
    free(a);
    free(b);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return child(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--expect-tier") == 0) {
        CHECK(strcmp(mae_kernels_name(), argv[2]) == 0, "the dispatch chose '%s', the CPU has '%s'",
              mae_kernels_name(), argv[2]);
        return tu_finish("test_win (dispatch)");
    }
    char dir[MAX_PATH];
    snprintf(dir, sizeof dir, "test_win_%lu", (unsigned long)GetCurrentProcessId());
    CHECK(_mkdir(dir) == 0, "cannot make %s", dir);
    tu_seed(7);
    test_overwrite(dir);
    if (argc == 2 && strcmp(argv[1], "--kill-save") == 0)
        test_kill_save(dir);
    char cmd[MAX_PATH + 32];
    snprintf(cmd, sizeof cmd, "rmdir /s /q %s", dir);   /* cmd.exe under Windows and Wine */
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", dir);
    return tu_finish("test_win");
}
