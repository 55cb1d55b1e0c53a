/* Sharing a model between contexts and a trainer (issue 18, defect 1). mae_trainer_create turns
 * a slim model (linears packed in their own floats, what mae_model_create and mae_model_load
 * give) into a trainable one, which rewrites its weights: that must never happen under a context
 * that reads them. The model counts its live contexts; creating a trainer on a slim model with
 * contexts alive fails with MAE_ERR_STATE, and a context cannot be created while the model is
 * being converted. The race itself runs here (one thread loops mae_forward, another creates a
 * trainer): before the fix, AddressSanitizer reported a heap-use-after-free; tests/check_tsan.sh
 * runs this binary under ThreadSanitizer too. */
#include <pthread.h>
#include <stdatomic.h>
#include "testutil.h"
#include "model/model.h"

enum { B = 2 };

static mae_model *create_tiny(uint64_t seed)
{
    mae_config cfg;
    mae_model *m = NULL;
    if (mae_config_init(&cfg, sizeof cfg, "tiny") != MAE_OK || mae_model_create(&cfg, seed, &m) != MAE_OK)
        return NULL;
    return m;
}

static size_t image_floats(const mae_model *m)
{
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    if (mae_model_get_config(m, &cfg) != MAE_OK)
        return 0;
    return (size_t)B * cfg.in_chans * cfg.img_size * cfg.img_size;
}

/* ---- the race: forward passes in one thread, mae_trainer_create in another -------------------- */

typedef struct looper {
    mae_ctx *c;
    const float *imgs;
    atomic_int done;        /* forward passes finished */
    atomic_int stop;        /* set by the main thread */
    int failures;
    char error[200];
} looper;

static void *forward_loop(void *arg)
{
    looper *lp = arg;
    float loss;
    /* keeps running a few passes after the trainer creation returned, so that any buffer it
     * freed would be read */
    int after = 0;
    while (after < 3) {
        if (atomic_load(&lp->stop))
            after++;
        if (mae_forward(lp->c, lp->imgs, B, NULL, &loss, NULL, NULL, NULL) != MAE_OK) {
            lp->failures++;
            snprintf(lp->error, sizeof lp->error, "%s", mae_last_error());
        }
        atomic_fetch_add(&lp->done, 1);
    }
    return NULL;
}

static void test_race(void)
{
    mae_model *m = create_tiny(3);
    CHECK(m, "create: %s", mae_last_error());
    if (!m)
        return;
    /* What the library gives is slim wherever the kernel table packs (every SIMD table); the
     * scalar table reads the weights as they are and nothing needs converting. */
    int slim = m->slim;
    size_t n = image_floats(m);
    float *imgs = tu_malloc(n * sizeof *imgs);
    tu_fill(imgs, n, -2, 2);
    looper lp = { NULL, imgs, 0, 0, 0, "" };
    CHECK_OK(mae_ctx_create(m, B, &lp.c));
    CHECK_OK(mae_ctx_set_threads(lp.c, 2));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, forward_loop, &lp) == 0, "pthread_create");
    while (atomic_load(&lp.done) < 2)
        ;   /* the other thread is inside its forward loop */
    mae_trainer *t = NULL;
    mae_status s = mae_trainer_create(m, B, &t);
    atomic_store(&lp.stop, 1);
    pthread_join(th, NULL);
    CHECK(lp.failures == 0, "forward during mae_trainer_create: %s", lp.error);
    if (slim) {
        CHECK(s == MAE_ERR_STATE && !t, "mae_trainer_create on a slim model with a live context: %s (want MAE_ERR_STATE)",
              mae_status_str(s));
        CHECK(strstr(mae_last_error(), "1 live context"), "message does not count the contexts: '%s'", mae_last_error());
    } else {
        CHECK(s == MAE_OK, "mae_trainer_create on a model that needs no conversion: %s", mae_last_error());
    }
    /* once the contexts are gone the trainer can be made, and it trains */
    mae_ctx_free(lp.c);
    if (!t)
        CHECK_OK(mae_trainer_create(m, B, &t));
    float loss = NAN;
    if (t) {
        CHECK_OK(mae_trainer_forward_backward(t, imgs, B, NULL, &loss));
        CHECK_OK(mae_trainer_step(t));
        CHECK(isfinite(loss), "loss %g", (double)loss);
    }
    CHECK(!m->slim, "the trainer's model still holds no master weights");
    mae_trainer_free(t);
    /* the converted model is not mutated by another trainer creation: contexts may live */
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c));
    t = NULL;
    CHECK_OK(mae_trainer_create(m, B, &t));
    CHECK_OK(mae_forward(c, imgs, B, NULL, &loss, NULL, NULL, NULL));
    mae_trainer_free(t);
    mae_ctx_free(c);
    printf("test_share: forward passes in one thread, mae_trainer_create in another: %s\n",
           slim ? "refused with MAE_ERR_STATE" : "allowed (nothing to convert)");
    free(imgs);
    mae_model_free(m);
}

/* ---- the count: every context created and freed is counted ------------------------------------ */

static void test_count(void)
{
    mae_model *m = create_tiny(4);
    CHECK(m, "create: %s", mae_last_error());
    if (!m)
        return;
    if (!m->slim) {
        printf("test_share: the active kernel table does not pack: no slim model to count on\n");
        mae_model_free(m);
        return;
    }
    mae_ctx *c1 = NULL, *c2 = NULL;
    mae_trainer *t = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c1));
    CHECK_OK(mae_ctx_create(m, 1, &c2));
    CHECK(mae_trainer_create(m, B, &t) == MAE_ERR_STATE && !t, "trainer created beside two contexts");
    CHECK(strstr(mae_last_error(), "2 live contexts"), "message: '%s'", mae_last_error());
    mae_ctx_free(c1);
    CHECK(mae_trainer_create(m, B, &t) == MAE_ERR_STATE && !t, "trainer created beside one context");
    CHECK(strstr(mae_last_error(), "1 live context;"), "message: '%s'", mae_last_error());
    CHECK(m->slim, "a refused trainer creation changed the model");
    mae_ctx_free(c2);
    CHECK_OK(mae_trainer_create(m, B, &t));
    mae_trainer_free(t);
    mae_model_free(m);
}

/* ---- the claim: while a model is being converted no context can be made ------------------------ */

static void test_claim(void)
{
    mae_model *m = create_tiny(5);
    CHECK(m, "create: %s", mae_last_error());
    if (!m)
        return;
    /* what mae_trainer_create holds while it converts */
    CHECK(mae_atomic_long_cas(&m->live_ctx, 0, MAE_MODEL_CONVERTING) == 0, "the model is not free");
    mae_ctx *c = NULL;
    mae_trainer *t = NULL;
    CHECK(mae_ctx_create(m, B, &c) == MAE_ERR_STATE && !c, "a context was created during a conversion");
    CHECK(strstr(mae_last_error(), "mae_trainer_create"), "message: '%s'", mae_last_error());
    CHECK(mae_trainer_create(m, B, &t) == MAE_ERR_STATE && !t, "two conversions at once");
    mae_atomic_long_store(&m->live_ctx, 0);
    CHECK_OK(mae_ctx_create(m, B, &c));
    CHECK(mae_atomic_long_load(&m->live_ctx) == 1, "live contexts %ld, want 1", mae_atomic_long_load(&m->live_ctx));
    mae_ctx_free(c);
    CHECK(mae_atomic_long_load(&m->live_ctx) == 0, "live contexts %ld after the free, want 0", mae_atomic_long_load(&m->live_ctx));
    /* a failed creation is not counted */
    CHECK(mae_ctx_create(m, 0, &c) == MAE_ERR_INVALID_ARG, "max_batch 0 accepted");
    CHECK(mae_atomic_long_load(&m->live_ctx) == 0, "a failed mae_ctx_create was counted");
    mae_model_free(m);
}

int main(void)
{
    tu_seed(18);
    test_race();
    test_count();
    test_claim();
    return tu_finish("test_share");
}
