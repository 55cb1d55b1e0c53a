/* A checkpoint writer killed mid-save leaves the previous checkpoint intact.
 *
 * Two different trainers (models + AdamW state), a and b, are saved once each to files of their
 * own: the two complete versions. In every round the path holds one version (old, written here
 * byte for byte) and a child process saves the other one (new) over it and dies at a point chosen
 * by its own progress, not by a timer: with RLIMIT_FSIZE at k bytes the kernel kills it (SIGXFSZ,
 * as abrupt as SIGKILL: no cleanup runs) the moment its file would pass k bytes. The k are spread
 * over the whole file, the first byte and the last included; in the last two rounds k is the
 * whole size, the save completes and the child kills itself with SIGKILL right after it returns.
 * Killed before its last byte, the writer must leave old at the path byte for byte; after a
 * complete save, new. Either way the file loads into a trainer. The same kill points in every
 * run, however loaded the machine. Leftover temporary files (the killed writer cannot remove
 * them) are counted. POSIX only (fork, setrlimit). */
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"

static int make_trainer(uint64_t seed, mae_model **m, mae_trainer **t)
{
    mae_config cfg;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK)
        return -1;
    if (mae_model_create(&cfg, seed, m) != MAE_OK)
        return -1;
    if (mae_trainer_create(*m, 2, t) != MAE_OK)
        return -1;
    /* one step so that the optimizer state is not zero and differs between the two */
    size_t n = 2 * 3 * 32 * 32;
    float *imgs = malloc(n * sizeof *imgs);
    float loss;
    if (!imgs)
        return -1;
    tu_seed(seed);
    tu_fill(imgs, n, -1, 1);
    int rc = mae_trainer_forward_backward(*t, imgs, 2, NULL, &loss) == MAE_OK &&
             mae_trainer_step(*t) == MAE_OK ? 0 : -1;
    free(imgs);
    return rc;
}

static int write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    int ok = fwrite(b, 1, n, fp) == n;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

/* The child: saves t to path with its files limited to limit bytes, then kills itself. Never
 * returns; exit status 3 means the save failed instead of being killed. */
static void save_and_die(mae_trainer *t, const char *path, size_t limit)
{
    signal(SIGXFSZ, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGXFSZ);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    struct rlimit rl = { (rlim_t)limit, (rlim_t)limit };
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        _exit(4);
    if (mae_trainer_save(t, path) != MAE_OK)
        _exit(3);
    raise(SIGKILL);
    _exit(5);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    char dir[] = "/tmp/mae_kill_save.XXXXXX";
    if (!mkdtemp(dir)) {
        printf("test_kill_save: cannot make a temporary directory\n");
        return 1;
    }
    char path[256], ref_a[256], ref_b[256];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    snprintf(ref_a, sizeof ref_a, "%s/a.ref", dir);
    snprintf(ref_b, sizeof ref_b, "%s/b.ref", dir);

    mae_model *ma = NULL, *mb = NULL;
    mae_trainer *ta = NULL, *tb = NULL;
    CHECK(make_trainer(1, &ma, &ta) == 0 && make_trainer(2, &mb, &tb) == 0, "setup: %s", mae_last_error());
    if (tu_failures)
        return tu_finish("test_kill_save");
    CHECK_OK(mae_trainer_save(ta, ref_a));
    CHECK_OK(mae_trainer_save(tb, ref_b));
    size_t na, nb;
    unsigned char *a = tu_read_file(ref_a, &na), *b = tu_read_file(ref_b, &nb);
    CHECK(a && b && (na != nb || memcmp(a, b, na) != 0), "the two reference checkpoints differ");
    if (!a || !b)
        return tu_finish("test_kill_save");

    enum { ROUNDS = 24, MIDWAY = ROUNDS - 2 };
    int intact = 0, killed_midway = 0, completed = 0;
    for (int r = 0; r < ROUNDS; r++) {
        /* even rounds replace a with b, odd ones b with a */
        const unsigned char *old = r % 2 ? b : a, *new_ = r % 2 ? a : b;
        size_t n_old = r % 2 ? nb : na, n_new = r % 2 ? na : nb;
        /* rounds 0 .. MIDWAY-1: k from 0 to the last byte; then two complete saves */
        size_t k = r < MIDWAY ? (n_new - 1) * (size_t)r / (MIDWAY - 1) : n_new;
        CHECK(write_bytes(path, old, n_old) == 0, "round %d: cannot write the old version", r);

        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
            save_and_die(r % 2 ? ta : tb, path, k);
        CHECK(pid > 0, "fork failed");
        if (pid <= 0)
            break;
        int st = 0;
        waitpid(pid, &st, 0);
        int want_sig = k < n_new ? SIGXFSZ : SIGKILL;
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == want_sig,
              "round %d (killed at byte %zu of %zu): the writer ended otherwise (status %d: %s)", r, k, n_new, st,
              WIFEXITED(st) && WEXITSTATUS(st) == 3 ? "the save failed" : "not the signal expected");
        killed_midway += k < n_new && WIFSIGNALED(st) && WTERMSIG(st) == SIGXFSZ;
        completed += k == n_new && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;

        size_t n;
        unsigned char *got = tu_read_file(path, &n);
        const unsigned char *want = k < n_new ? old : new_;
        size_t n_want = k < n_new ? n_old : n_new;
        int same = got && n == n_want && memcmp(got, want, n) == 0;
        CHECK(same, "round %d: killed at byte %zu of %zu, the checkpoint (%zu bytes) is not the %s version", r, k,
              n_new, n, k < n_new ? "old" : "new");
        free(got);
        mae_status s = mae_trainer_load(want == b ? tb : ta, path);
        CHECK(s == MAE_OK, "round %d: the checkpoint does not load: %s", r, mae_last_error());
        intact += same && s == MAE_OK;
    }
    CHECK(killed_midway == MIDWAY && completed == ROUNDS - MIDWAY, "%d kills mid-save, %d complete saves",
          killed_midway, completed);

    /* clean up, counting what the killed writers left */
    int leftovers = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (strstr(e->d_name, ".tmp."))
            leftovers++;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    printf("%d writers killed at bytes spread over %zu-byte saves, %d after a complete save: checkpoint intact %d times, "
           "%d temporary files left\n", killed_midway, na, completed, intact, leftovers);
    free(a);
    free(b);
    mae_trainer_free(ta);
    mae_trainer_free(tb);
    mae_model_free(ma);
    mae_model_free(mb);
    return tu_finish("test_kill_save");
}
