/* After mae_ctx_create (and mae_trainer_create), the hot path allocates nothing: forward passes
 * through the pipeline and through the parts, at any batch up to max_batch, any mask ratio, drawn
 * or given noise, and a training step. Counted twice: through the public allocator hook (what the
 * library asks for) and by interposing malloc/calloc/realloc in this binary (what anything under
 * it asks libc for, the OpenMP runtime included).
 *
 * OpenMP: libgomp allocates its thread pool the first time a parallel region runs with a given
 * thread count, so each context first runs one warm-up pass with the thread count it keeps; that
 * is not the library's allocation and a caller sees it once per process. */
#include <stdatomic.h>
#include "testutil.h"

/* ---- libc-level counting ------------------------------------------------------------------ */

/* Sanitizers interpose malloc themselves; there only the hook counts. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#  define NO_INTERPOSE 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#    define NO_INTERPOSE 1
#  endif
#endif

static atomic_int counting;
static atomic_long libc_calls;

#if !defined(NO_INTERPOSE) && defined(__GLIBC__)
#define INTERPOSED 1
/* glibc's own entry points: the interposers count, then forward. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
void *malloc(size_t n);
void *calloc(size_t n, size_t m);
void *realloc(void *p, size_t n);

void *malloc(size_t n)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add(&libc_calls, 1);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t m)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add(&libc_calls, 1);
    return __libc_calloc(n, m);
}
void *realloc(void *p, size_t n)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add(&libc_calls, 1);
    return __libc_realloc(p, n);
}
#else
#define INTERPOSED 0
#endif

/* ---- hook-level counting ------------------------------------------------------------------ */

/* testutil.h's hook counts them (tu_alloc.calls), reset when a window starts. */
static void start(void)
{
    tu_alloc_reset();
    atomic_store(&libc_calls, 0);
    atomic_store(&counting, 1);
}
/* Stops counting and checks that nothing was allocated since start(). */
static void stop(const char *what)
{
    atomic_store(&counting, 0);
    long h = atomic_load(&tu_alloc.calls), l = atomic_load(&libc_calls);
    CHECK(h == 0, "%s: %ld allocations through the hook", what, h);
    CHECK(l == 0, "%s: %ld malloc/calloc/realloc calls", what, l);
}

/* Proves the counters work: an allocation in the window must be seen. */
static void self_test(void)
{
    start();
    void *volatile p = malloc(100);
    atomic_store(&counting, 0);
    free(p);
    if (INTERPOSED)
        CHECK(atomic_load(&libc_calls) == 1, "the malloc interposer does not count (%ld)", atomic_load(&libc_calls));
    mae_ctx *c = NULL;
    mae_config cfg;
    mae_model *m = NULL;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    CHECK_OK(mae_model_create(&cfg, 1, &m));
    start();
    CHECK_OK(mae_ctx_create(m, 1, &c));
    atomic_store(&counting, 0);
    CHECK(atomic_load(&tu_alloc.calls) > 0, "the hook does not count mae_ctx_create's allocations");
    mae_ctx_free(c);
    mae_model_free(m);
}

static void test_forward(int threads)
{
    const int B = 3;
    mae_config cfg;
    mae_model *m = NULL;
    mae_ctx *c = NULL;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    cfg.img_height = 24;   /* non-square, to take every path of the grid code */
    cfg.img_width = cfg.img_size;
    CHECK_OK(mae_model_create(&cfg, 4, &m));
    CHECK_OK(mae_ctx_create(m, B, &c));
    if (!m || !c)
        return;
    CHECK_OK(mae_ctx_set_threads(c, threads));
    int L, keep, P;
    CHECK_OK(mae_ctx_get_dims(c, &L, &keep, &P));
    size_t npix = (size_t)cfg.in_chans * 24 * cfg.img_size;
    float *imgs = tu_malloc(sizeof(float) * B * npix), *noise = tu_malloc(sizeof(float) * B * L);
    float *pred = tu_malloc(sizeof(float) * B * L * P), *mask = tu_malloc(sizeof(float) * B * L);
    float *latent = tu_malloc(sizeof(float) * B * (1 + L) * cfg.embed_dim);
    float *tokens = tu_malloc(sizeof(float) * B * L * cfg.embed_dim);
    int32_t *ids = tu_malloc(sizeof(int32_t) * B * L), *rest = tu_malloc(sizeof(int32_t) * B * L);
    tu_fill(imgs, B * npix, -1, 1);
    tu_fill(noise, (size_t)B * L, 0, 1);
    float loss;
    CHECK_OK(mae_forward(c, imgs, B, NULL, &loss, pred, mask, latent));   /* warm-up (OpenMP pool) */

    char what[64];
    snprintf(what, sizeof what, "mae_forward (%d threads)", threads);
    start();
    float ratios[] = { 0.75f, 0.5f, 0.0f, 0.9f };
    for (int r = 0; r < 4; r++) {
        mae_ctx_set_mask_ratio(c, ratios[r]);
        for (int b = 1; b <= B; b++) {
            mae_forward(c, imgs, b, NULL, &loss, pred, mask, latent);
            mae_forward(c, imgs, b, noise, &loss, NULL, NULL, NULL);
            mae_forward(c, imgs, b, noise, NULL, NULL, mask, latent);
        }
    }
    stop(what);

    snprintf(what, sizeof what, "mae_embed (%d threads)", threads);
    start();
    for (int b = 1; b <= B; b++)
        for (int pool = MAE_POOL_CLS; pool <= MAE_POOL_TOKENS; pool++)
            mae_embed(c, imgs, b, (mae_pool)pool, latent);
    stop(what);

    const mae_patch_embed *pe; const mae_masker *mk; const mae_encoder *en; const mae_decoder *de; const mae_loss *lo;
    CHECK_OK(mae_model_patch_embed(m, &pe)); CHECK_OK(mae_model_masker(m, &mk)); CHECK_OK(mae_model_encoder(m, &en));
    CHECK_OK(mae_model_decoder(m, &de)); CHECK_OK(mae_model_loss(m, &lo));
    CHECK_OK(mae_ctx_set_mask_ratio(c, 0.75f));
    snprintf(what, sizeof what, "the five parts (%d threads)", threads);
    start();
    mae_status s = mae_patch_embed_forward(pe, c, imgs, B, tokens);
    if (s == MAE_OK) s = mae_masker_forward(mk, c, B, NULL, ids, rest, mask, &keep);
    if (s == MAE_OK) s = mae_encoder_forward(en, c, tokens, B, ids, keep, latent);
    if (s == MAE_OK) s = mae_decoder_forward(de, c, latent, B, rest, keep, pred);
    if (s == MAE_OK) s = mae_loss_forward(lo, c, imgs, B, pred, mask, &loss);
    if (s == MAE_OK) s = mae_patchify(m, imgs, B, pred);
    if (s == MAE_OK) s = mae_unpatchify(m, pred, B, imgs);
    stop(what);
    CHECK(s == MAE_OK, "parts: %s", mae_last_error());

    free(imgs); free(noise); free(pred); free(mask); free(latent); free(tokens); free(ids); free(rest);
    mae_ctx_free(c);
    mae_model_free(m);
}

static void test_train_step(int threads)
{
    const int B = 2;
    mae_config cfg;
    mae_model *m = NULL;
    mae_trainer *t = NULL;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    CHECK_OK(mae_model_create(&cfg, 5, &m));
    CHECK_OK(mae_trainer_create(m, B, &t));
    if (!m || !t)
        return;
    CHECK_OK(mae_trainer_set_threads(t, threads));
    size_t n = (size_t)B * cfg.in_chans * cfg.img_size * cfg.img_size;
    float *imgs = tu_malloc(n * sizeof *imgs), *dimgs = tu_malloc(n * sizeof *dimgs);
    tu_fill(imgs, n, -1, 1);
    float loss;
    CHECK_OK(mae_trainer_forward_backward(t, imgs, B, NULL, &loss));   /* warm-up */
    CHECK_OK(mae_trainer_step(t));
    char what[64];
    snprintf(what, sizeof what, "a training step (%d threads)", threads);
    start();
    for (int i = 0; i < 2; i++) {
        mae_trainer_forward_backward(t, imgs, 1 + i, NULL, &loss);
        mae_trainer_forward_backward_input(t, imgs, B, NULL, &loss, dimgs);
        mae_trainer_step(t);
    }
    stop(what);
    free(imgs); free(dimgs);
    mae_trainer_free(t);
    mae_model_free(m);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_alloc_reset();
    CHECK_OK(tu_alloc_install());
    tu_seed(9);
    TU_RUN("self_test", self_test());
    TU_RUN("forward/batch1", test_forward(1));
    TU_RUN("forward/batch2", test_forward(2));
    TU_RUN("train_step/batch1", test_train_step(1));
    TU_RUN("train_step/batch2", test_train_step(2));
    CHECK_OK(mae_set_allocator(NULL));
    if (tu_failures == 0)
        printf("test_nomalloc: forward passes, the parts and training steps make no allocation%s\n",
           INTERPOSED ? " (hook and libc counted)" : " (hook counted; libc interposing is off under sanitizers)");
    return tu_finish("test_nomalloc");
}
