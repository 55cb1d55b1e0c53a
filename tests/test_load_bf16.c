/* Loading straight into bf16 (mae_model_load_with, mae_model_load_memory_with with precision
 * MAE_PRECISION_BF16; docs/PRECISION.md): the model must be, bit for bit, the one that a float32
 * load followed by mae_model_set_precision(BF16) gives (its whole weight storage and every output
 * of a forward), from F32, F16 and BF16 files, a Hugging Face directory (q, k, v stacked into
 * qkv) and memory; the library's peak allocation during the load must stay below the float32
 * weights (which the load-then-convert path exceeds, as the test also checks); every failed
 * allocation must leave nothing behind; misuse gets clean errors. */
#include "testutil.h"
#include <time.h>
#include <unistd.h>
#include "../src/model/model.h"

static char tmp_f32[96], tmp_bf16[96], tmp_hf[96];

typedef struct fwd_out { float *pred, *mask, *latent, loss; size_t np, nm, nl; } fwd_out;

static fwd_out forward(const mae_model *m, const float *img, const float *noise, int B, int threads)
{
    fwd_out o = { NULL, NULL, NULL, NAN, 0, 0, 0 };
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c));
    if (!c)
        return o;
    CHECK_OK(mae_ctx_set_threads(c, threads));
    int L = 0, keep = 0, P = 0;
    CHECK_OK(mae_ctx_get_dims(c, &L, &keep, &P));
    o.np = (size_t)B * L * P;
    o.nm = (size_t)B * L;
    o.nl = (size_t)B * (1 + keep) * m->cfg.D;
    o.pred = tu_malloc(o.np * sizeof *o.pred);
    o.mask = tu_malloc(o.nm * sizeof *o.mask);
    o.latent = tu_malloc(o.nl * sizeof *o.latent);
    tu_poison(o.pred, o.np);
    tu_poison(o.mask, o.nm);
    tu_poison(o.latent, o.nl);
    CHECK_OK(mae_forward(c, img, B, noise, &o.loss, o.pred, o.mask, o.latent));
    mae_ctx_free(c);
    return o;
}

static void free_out(fwd_out *o) { free(o->pred); free(o->mask); free(o->latent); }

static int same_out(const fwd_out *a, const fwd_out *b)
{
    return a->pred && b->pred && a->np == b->np && a->nl == b->nl &&
           memcmp(a->pred, b->pred, a->np * sizeof *a->pred) == 0 &&
           memcmp(a->mask, b->mask, a->nm * sizeof *a->mask) == 0 &&
           memcmp(a->latent, b->latent, a->nl * sizeof *a->latent) == 0 &&
           memcmp(&a->loss, &b->loss, sizeof a->loss) == 0;
}

static mae_load_options bf16_options(void)
{
    mae_load_options o;
    CHECK_OK(mae_load_options_init(&o, sizeof o));
    o.precision = MAE_PRECISION_BF16;
    return o;
}

/* The bf16 load of path (or of its bytes, memory) against load + convert: the same precision,
 * table, layout and storage bytes, and the same forward outputs, bit for bit, at 1 and 2 threads
 * on fresh random images and noise. */
static void check_equal(const char *tag, const char *path, int memory)
{
    mae_model *ref = NULL, *got = NULL;
    CHECK_OK(mae_model_load(path, &ref));
    if (ref)
        CHECK_OK(mae_model_set_precision(ref, MAE_PRECISION_BF16));
    mae_load_options o = bf16_options();
    if (memory) {
        size_t size = 0;
        unsigned char *buf = tu_read_file(path, &size);
        CHECK(buf != NULL, "%s: cannot read %s", tag, path);
        if (buf)
            CHECK_OK(mae_model_load_memory_with(buf, size, &o, &got));
        free(buf);
    } else {
        CHECK_OK(mae_model_load_with(path, &o, &got));
    }
    if (!ref || !got) {
        mae_model_free(ref); mae_model_free(got);
        return;
    }
    int prec = -1;
    CHECK_OK(mae_model_get_precision(got, &prec));
    CHECK(prec == MAE_PRECISION_BF16, "%s: the loaded model reports precision %d", tag, prec);
    CHECK(got->k == ref->k, "%s: table %s, the converted model's %s", tag, got->k->name, ref->k->name);
    CHECK(got->lay.total == ref->lay.total && got->n_tensors == ref->n_tensors,
          "%s: layout of %zu floats in %d tensors, converted %zu in %d", tag, got->lay.total, got->n_tensors,
          ref->lay.total, ref->n_tensors);
    if (got->lay.total == ref->lay.total) {
        size_t diff = 0;
        for (size_t i = 0; i < got->lay.total; i++)
            diff += memcmp(&got->data[i], &ref->data[i], sizeof(float)) != 0;
        CHECK(diff == 0, "%s: %zu of %zu stored floats differ from the converted model's", tag, diff, got->lay.total);
    }
    for (int i = 0; i < got->n_tensors && i < ref->n_tensors; i++)
        CHECK(got->tensors[i].in_place == ref->tensors[i].in_place && got->tensors[i].offset == ref->tensors[i].offset,
              "%s: tensor %s stored otherwise", tag, got->tensors[i].name);
    int B = 3, L = ref->cfg.L;
    size_t nimg = (size_t)B * ref->cfg.C * ref->cfg.ih * ref->cfg.iw;
    float *img = tu_malloc(nimg * sizeof *img), *noise = tu_malloc((size_t)B * L * sizeof *noise);
    tu_fill(img, nimg, -2, 2);
    tu_fill(noise, (size_t)B * L, 0, 1);
    for (int threads = 1; threads <= 2; threads++) {
        fwd_out a = forward(ref, img, noise, B, threads), b = forward(got, img, noise, B, threads);
        CHECK(same_out(&a, &b), "%s: %d thread(s): the forward differs from load + convert", tag, threads);
        free_out(&a); free_out(&b);
    }
    /* what a converted model does, a loaded one does: F32 refused, BF16 again a no-op, a trainer */
    EXPECT(mae_model_set_precision(got, MAE_PRECISION_F32), MAE_ERR_UNSUPPORTED);
    CHECK_OK(mae_model_set_precision(got, MAE_PRECISION_BF16));
    mae_trainer *t = NULL;
    CHECK_OK(mae_trainer_create(got, 1, &t));
    mae_trainer_free(t);
    free(img); free(noise);
    mae_model_free(ref); mae_model_free(got);
}

/* A fresh random model (a new seed per run) saved as F32, BF16 and a Hugging Face directory. */
static void make_files(int qkv_bias)
{
    mae_config cfg;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    cfg.qkv_bias = qkv_bias;
    mae_model *m = NULL;
    CHECK_OK(mae_model_create(&cfg, (uint64_t)(tu_uniform() * 1e9), &m));
    if (!m)
        return;
    /* learned-looking tables and biases: rounding them must stay exactly float32 */
    int n = 0;
    CHECK_OK(mae_model_tensor_count(m, &n));
    for (int i = 0; i < n; i++)
        if (!m->tensors[i].in_place)
            tu_fill(m->data + m->tensors[i].offset, m->tensors[i].count, -1, 1);
    CHECK_OK(mae_model_save(m, tmp_f32));
    CHECK_OK(mae_model_save_as(m, tmp_bf16, "BF16"));
    CHECK_OK(mae_model_save_hf(m, tmp_hf));
    mae_model_free(m);
}

static void remove_files(void)
{
    char p[160];
    remove(tmp_f32);
    remove(tmp_bf16);
    snprintf(p, sizeof p, "%s/config.json", tmp_hf);
    remove(p);
    snprintf(p, sizeof p, "%s/model.safetensors", tmp_hf);
    remove(p);
    rmdir(tmp_hf);
}

static void test_equal(int qkv_bias)
{
    make_files(qkv_bias);
    check_equal("F32 file", tmp_f32, 0);
    check_equal("BF16 file", tmp_bf16, 0);
    check_equal("HF directory", tmp_hf, 0);
    check_equal("F32 file in memory", tmp_f32, 1);
    remove_files();
}

/* The library's peak allocation while loading path in bf16 (from the path and from memory), and
 * while loading it as float32 and converting: the first must stay below the float32 weights, and
 * within the bf16 model + its largest tensor as float32 + the header + 256 KiB (what
 * test_load's float32 loads are held to); the second is above the float32 weights (the float32
 * model and its bf16 copy at once): the measurement sees the difference. */
static void test_peak(const char *tag, const char *path)
{
    mae_model *m = NULL;
    CHECK_OK(mae_model_load(path, &m));
    if (!m)
        return;
    size_t f32_bytes = m->lay.total * sizeof(float), largest = 0;
    for (int i = 0; i < m->n_tensors; i++)
        largest = m->tensors[i].count > largest ? m->tensors[i].count : largest;
    mae_model_free(m);
    m = NULL;
    size_t n_file = 0;
    unsigned char *file = tu_read_file(path, &n_file);
    CHECK(file && n_file > 8, "%s: cannot read %s", tag, path);
    if (!file)
        return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | file[i];

    mae_load_options o = bf16_options();
    for (int from_memory = 0; from_memory < 2; from_memory++) {
        tu_alloc_reset();
        CHECK_OK(tu_alloc_install());
        CHECK_OK(from_memory ? mae_model_load_memory_with(file, n_file, &o, &m) : mae_model_load_with(path, &o, &m));
        size_t peak = atomic_load(&tu_alloc.peak), held = atomic_load(&tu_alloc.bytes);
        mae_model_free(m);
        m = NULL;
        mae_set_allocator(NULL);
        size_t bound = held + largest * sizeof(float) + 8 + (size_t)hlen + 256 * 1024;
        printf("%s from %s: peak allocation loading as bf16 %zu bytes (%.3fx the bf16 model's %zu, %.3fx the "
               "float32 weights' %zu; bound %zu)\n", tag, from_memory ? "memory" : "its path", peak,
               (double)peak / (double)held, held, (double)peak / (double)f32_bytes, f32_bytes, bound);
        CHECK(peak < f32_bytes, "%s: loading as bf16 peaks at %zu bytes, not below the float32 weights' %zu",
              tag, peak, f32_bytes);
        CHECK(peak <= bound, "%s: loading as bf16 held %zu bytes at once, more than the bf16 model's %zu + the "
              "largest tensor's %zu + the header's %zu + 256 KiB", tag, peak, held, largest * sizeof(float),
              8 + (size_t)hlen);
    }
    free(file);
    tu_alloc_reset();
    CHECK_OK(tu_alloc_install());
    CHECK_OK(mae_model_load(path, &m));
    if (m)
        CHECK_OK(mae_model_set_precision(m, MAE_PRECISION_BF16));
    size_t peak_old = atomic_load(&tu_alloc.peak), held_old = atomic_load(&tu_alloc.bytes);
    mae_model_free(m);
    mae_set_allocator(NULL);
    printf("%s: load + convert peaks at %zu bytes (%.3fx the bf16 model)\n", tag, peak_old,
           (double)peak_old / (double)held_old);
    CHECK(peak_old > f32_bytes, "%s: load + convert peaks at %zu bytes, below the float32 weights' %zu: the "
          "measurement does not see the float32 copy", tag, peak_old, f32_bytes);
}

/* Every allocation of a bf16 load failing in turn: MAE_ERR_NOMEM, *out untouched, nothing left. */
static void test_faults(void)
{
    make_files(1);
    mae_load_options o = bf16_options();
    mae_model *m = NULL;
    tu_alloc_reset();
    CHECK_OK(tu_alloc_install());
    CHECK_OK(mae_model_load_with(tmp_f32, &o, &m));
    mae_model_free(m);
    long total = tu_alloc.calls;
    CHECK(total > 5 && tu_alloc.live == 0, "a clean load: %ld allocations, %ld left", total, (long)tu_alloc.live);
    for (long k = 1; k <= total; k++) {
        tu_alloc_reset();
        tu_alloc.fail_at = k;
        mae_model *sentinel = (mae_model *)&o;
        m = sentinel;
        mae_status s = mae_model_load_with(tmp_f32, &o, &m);
        CHECK(s == MAE_ERR_NOMEM, "k=%ld: status %s (%s)", k, mae_status_str(s), mae_last_error());
        CHECK(m == sentinel, "k=%ld: *out written on failure", k);
        CHECK(tu_alloc.live == 0 && tu_alloc.bad_frees == 0, "k=%ld: %ld blocks left, %ld bad frees", k,
              (long)tu_alloc.live, (long)tu_alloc.bad_frees);
        if (s == MAE_OK && m != sentinel)
            mae_model_free(m);
    }
    mae_set_allocator(NULL);
    remove_files();
}

static int progress_calls, progress_total, progress_stop;

static int on_progress(void *user, int done, int total)
{
    CHECK(user == &progress_calls, "progress: user pointer not passed");
    CHECK(done == progress_calls + 1, "progress: done %d after %d calls", done, progress_calls);
    progress_calls++;
    progress_total = total;
    return progress_stop && done == progress_stop;
}

/* The options' other fields: progress after each tensor, cancelling; the defaults (NULL options,
 * a struct from mae_load_options_init) load float32; a newer caller's larger struct. */
static void test_options(void)
{
    make_files(1);
    mae_load_options o = bf16_options();
    o.progress = on_progress;
    o.progress_user = &progress_calls;
    mae_model *m = NULL;
    progress_calls = 0;
    progress_stop = 0;
    CHECK_OK(mae_model_load_with(tmp_f32, &o, &m));
    CHECK(m && progress_calls == m->n_tensors && progress_total == m->n_tensors,
          "progress called %d times of %d tensors", progress_calls, m ? m->n_tensors : -1);
    mae_model_free(m);
    m = NULL;
    progress_calls = 0;
    progress_stop = 3;
    tu_alloc_reset();
    CHECK_OK(tu_alloc_install());
    EXPECT(mae_model_load_with(tmp_f32, &o, &m), MAE_ERR_ABORTED);
    CHECK(m == NULL && tu_alloc.live == 0, "a cancelled load kept %ld blocks", (long)tu_alloc.live);
    mae_set_allocator(NULL);
    CHECK(progress_calls == 3, "progress called %d times after cancelling at 3", progress_calls);

    int prec = -1;
    CHECK_OK(mae_model_load_with(tmp_f32, NULL, &m));
    if (m) {
        CHECK_OK(mae_model_get_precision(m, &prec));
        CHECK(prec == MAE_PRECISION_F32, "NULL options: precision %d", prec);
        mae_model_free(m);
        m = NULL;
    }
    mae_load_options d;
    memset(&d, 0x5a, sizeof d);
    CHECK_OK(mae_load_options_init(&d, sizeof d));
    CHECK(d.struct_size == sizeof d && d.precision == MAE_PRECISION_F32 && d.progress == NULL &&
          d.progress_user == NULL, "mae_load_options_init: not the defaults");
    /* a newer header's struct: the fields this library knows are read, the rest ignored */
    struct { mae_load_options o; int future[4]; } big;
    memset(&big, 0x5a, sizeof big);
    CHECK_OK(mae_load_options_init(&big.o, sizeof big));
    CHECK(big.o.struct_size == sizeof big && big.o.precision == MAE_PRECISION_F32, "init of a larger struct");
    big.o.precision = MAE_PRECISION_BF16;
    CHECK_OK(mae_model_load_with(tmp_f32, &big.o, &m));
    if (m) {
        CHECK_OK(mae_model_get_precision(m, &prec));
        CHECK(prec == MAE_PRECISION_BF16, "a larger options struct: precision %d", prec);
        mae_model_free(m);
    }
    remove_files();
}

static void test_misuse(void)
{
    make_files(1);
    mae_load_options o = bf16_options();
    mae_model *m = NULL;
    EXPECT(mae_model_load_with(NULL, &o, &m), MAE_ERR_INVALID_ARG);
    EXPECT(mae_model_load_with(tmp_f32, &o, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_model_load_memory_with(NULL, 0, &o, &m), MAE_ERR_FORMAT);
    EXPECT(mae_model_load_memory_with("x", 1, &o, NULL), MAE_ERR_INVALID_ARG);
    EXPECT(mae_load_options_init(NULL, sizeof o), MAE_ERR_INVALID_ARG);
    EXPECT(mae_load_options_init(&o, 4), MAE_ERR_INVALID_ARG);
    mae_load_options bad = bf16_options();
    bad.precision = 2;
    EXPECT(mae_model_load_with(tmp_f32, &bad, &m), MAE_ERR_INVALID_ARG);
    bad.precision = -1;
    EXPECT(mae_model_load_memory_with("x", 1, &bad, &m), MAE_ERR_INVALID_ARG);
    bad = bf16_options();
    bad.struct_size = 0;
    EXPECT(mae_model_load_with(tmp_f32, &bad, &m), MAE_ERR_INVALID_ARG);
    bad.struct_size = sizeof(uint32_t) + sizeof(int32_t);   /* without progress: below version 1 */
    EXPECT(mae_model_load_with(tmp_f32, &bad, &m), MAE_ERR_INVALID_ARG);
    CHECK(m == NULL, "a refused load wrote *out");
    /* a malformed file: the plain load's error, nothing kept */
    size_t size = 0;
    unsigned char *buf = tu_read_file(tmp_f32, &size);
    if (buf) {
        EXPECT(mae_model_load_memory_with(buf, size / 2, &o, &m), MAE_ERR_FORMAT);
        CHECK(m == NULL, "a truncated file wrote *out");
        free(buf);
    }
    EXPECT(mae_model_load_with("/nonexistent/mae.safetensors", &o, &m), MAE_ERR_IO);
    remove_files();
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed((uint64_t)time(NULL) ^ (uint64_t)getpid() << 20);
    snprintf(tmp_f32, sizeof tmp_f32, "/tmp/mae_test_load_bf16_%d_f32.safetensors", (int)getpid());
    snprintf(tmp_bf16, sizeof tmp_bf16, "/tmp/mae_test_load_bf16_%d_bf16.safetensors", (int)getpid());
    snprintf(tmp_hf, sizeof tmp_hf, "/tmp/mae_test_load_bf16_%d_hf", (int)getpid());
    const char *fmnist = tu_path("examples/data/mae-fmnist.safetensors");
    TU_RUN("equal/tiny", test_equal(1));
    TU_RUN("equal/tiny-no-qkv-bias", test_equal(0));
    TU_RUN("equal/fmnist-F16", check_equal("mae-fmnist (F16 file)", fmnist, 0));
    TU_RUN("peak/fmnist", test_peak("mae-fmnist", fmnist));
    TU_RUN("faults", test_faults());
    TU_RUN("options", test_options());
    TU_RUN("misuse", test_misuse());
    return tu_finish("test_load_bf16");
}
