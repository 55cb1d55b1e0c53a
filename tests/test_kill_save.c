/* A checkpoint writer killed mid-save leaves the previous checkpoint intact.
 *
 * A child process saves two different trainers (models + AdamW state) to the same path, one
 * after the other, as fast as it can; the parent kills it with SIGKILL at a varying moment. The
 * file at the path must then be byte-identical to one of the two complete checkpoints (saved
 * beforehand to files of their own) and load into a trainer: never empty, never a mixture, never
 * a prefix. Leftover temporary files (the killed writer cannot remove them) are counted and must
 * never carry the checkpoint's own name. POSIX only (fork, kill). */
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "testutil.h"

static int make_trainer(uint64_t seed, mae_model **m, mae_trainer **t)
{
    mae_config cfg;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK)
        return -1;
    /* big enough (~1.5M parameters, 18 MB with the AdamW moments) that a save takes a while */
    cfg.img_size = 32;
    cfg.patch_size = 8;
    cfg.embed_dim = 192;
    cfg.depth = 3;
    cfg.num_heads = 3;
    cfg.decoder_embed_dim = 96;
    cfg.decoder_depth = 1;
    cfg.decoder_num_heads = 3;
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

static void sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void)
{
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

    /* how long one save takes, to spread the kills over it */
    double t0 = now_s();
    CHECK_OK(mae_trainer_save(ta, path));
    double save_s = now_s() - t0;
    long span_us = (long)(save_s * 2e6) + 1000;

    enum { ROUNDS = 24 };
    int intact = 0, as_a = 0, as_b = 0;
    for (int r = 0; r < ROUNDS; r++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            /* the child: save a, b, a, b, ... until killed */
            for (int k = 0;; k++)
                if (mae_trainer_save(k % 2 ? tb : ta, path) != MAE_OK)
                    _exit(3);
        }
        CHECK(pid > 0, "fork failed");
        if (pid <= 0)
            break;
        /* let it finish at least one save sometimes, and land at every phase of a save */
        sleep_us(span_us / 4 + (long)(tu_uniform() * (double)span_us * 2));
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "round %d: the writer ended by itself (status %d)", r, st);

        size_t n;
        unsigned char *got = tu_read_file(path, &n);
        int is_a = got && n == na && memcmp(got, a, na) == 0;
        int is_b = got && n == nb && memcmp(got, b, nb) == 0;
        CHECK(is_a || is_b, "round %d: after the kill the checkpoint (%zu bytes) is neither complete version", r, n);
        free(got);
        mae_status s = mae_trainer_load(is_b ? tb : ta, path);
        CHECK(s == MAE_OK, "round %d: the checkpoint does not load: %s", r, mae_last_error());
        intact += (is_a || is_b) && s == MAE_OK;
        as_a += is_a;
        as_b += is_b;
    }
    /* the kills hit both versions (both were being written when killed) */
    CHECK(as_a > 0 && as_b > 0, "kills left version a %d and b %d times: the timing never varied", as_a, as_b);

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
    printf("%d kills during saves of %.1f ms: checkpoint intact %d times (a %d, b %d), %d temporary files left\n",
           ROUNDS, save_s * 1e3, intact, as_a, as_b, leftovers);
    free(a);
    free(b);
    mae_trainer_free(ta);
    mae_trainer_free(tb);
    mae_model_free(ma);
    mae_model_free(mb);
    return tu_finish("test_kill_save");
}
