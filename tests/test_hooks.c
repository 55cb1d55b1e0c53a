/* Host hooks: a context's abort (mae_forward, mae_embed, the parts), a trainer's abort and
 * progress, a load's progress. For every cancellation point: the call returns MAE_ERR_ABORTED,
 * the callback was asked exactly as often as documented, and nothing is lost: the context's
 * next call, the trainer's gradients, RNG, step and model, and the next load are bitwise what
 * they would have been had the cancelled call never been made (checked against twins). */
#include <unistd.h>
#include "testutil.h"

typedef struct { int calls, fire_at; } counter;   /* fires (returns 1) on call number fire_at */
static int count_abort(void *user)
{
    counter *k = user;
    return k->calls++ == k->fire_at;
}

static mae_model *tiny(uint64_t seed)
{
    mae_config cfg;
    mae_model *m = NULL;
    CHECK_OK(mae_config_init(&cfg, sizeof cfg, "tiny"));
    CHECK_OK(mae_model_create(&cfg, seed, &m));
    if (!m)
        exit(tu_finish("test_hooks"));
    return m;
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

enum { B = 2 };

static void test_ctx(void)
{
    mae_model *m = tiny(1);
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    CHECK_OK(mae_model_get_config(m, &cfg));
    int blocks = cfg.depth + cfg.decoder_depth;
    mae_ctx *c = NULL, *twin = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c));
    CHECK_OK(mae_ctx_create(m, B, &twin));
    if (!c || !twin)
        return;
    int L, keep, P;
    CHECK_OK(mae_ctx_get_dims(c, &L, &keep, &P));
    size_t npix = (size_t)B * 3 * 32 * 32, npred = (size_t)B * L * P, nlat = (size_t)B * (1 + L) * 64;
    float *imgs = tu_malloc(npix * sizeof(float));
    float *pred = tu_malloc(npred * sizeof(float)), *pred2 = tu_malloc(npred * sizeof(float));
    float *lat = tu_malloc(nlat * sizeof(float)), *lat2 = tu_malloc(nlat * sizeof(float));
    tu_fill(imgs, npix, -1, 1);
    float loss, loss2;

    /* one thread here: the owner's checks inside a parallel loop depend on which items it claims,
     * so only then is their count the same in every call (test_cancel covers more threads) */
    CHECK_OK(mae_ctx_set_threads(c, 1));
    /* a callback that never fires changes nothing, and is asked before every block and inside
     * the blocks (before each macro-tile of the products, each item of the other loops) */
    counter never = { 0, -1 };
    CHECK_OK(mae_ctx_set_abort(c, count_abort, &never));
    CHECK_OK(mae_forward(c, imgs, B, NULL, &loss, pred, NULL, lat));
    CHECK_OK(mae_forward(twin, imgs, B, NULL, &loss2, pred2, NULL, lat2));
    CHECK(never.calls > 2 * blocks, "abort asked %d times for %d blocks: not inside the blocks", never.calls, blocks);
    CHECK(loss == loss2 && same_bits(pred, pred2, npred), "a silent abort callback changed the result");

    /* cancelled at every check in turn (between blocks and inside them): never asked again
     * after it said stop, and the next call continues the RNG as if the cancelled one had never
     * been made */
    for (int at = 0; at < never.calls; at++) {
        counter k = { 0, at };
        CHECK_OK(mae_ctx_set_abort(c, count_abort, &k));
        mae_status s = mae_forward(c, imgs, B, NULL, &loss, pred, NULL, lat);
        CHECK(s == MAE_ERR_ABORTED, "abort at check %d: %s", at, mae_status_str(s));
        CHECK(k.calls == at + 1, "abort at check %d: asked %d times", at, k.calls);
        CHECK(strstr(mae_last_error(), "cancel") != NULL, "error text: %s", mae_last_error());
        CHECK_OK(mae_ctx_set_abort(c, NULL, NULL));
        CHECK_OK(mae_forward(c, imgs, B, NULL, &loss, pred, NULL, lat));
        CHECK_OK(mae_forward(twin, imgs, B, NULL, &loss2, pred2, NULL, lat2));
        CHECK(loss == loss2 && same_bits(pred, pred2, npred) && same_bits(lat, lat2, (size_t)B * (1 + keep) * 64),
              "after a cancel at check %d the context's next call differs from its twin's", at);
    }

    /* mae_embed and the encoder part */
    counter first = { 0, 0 };
    CHECK_OK(mae_ctx_set_abort(c, count_abort, &first));
    CHECK(mae_embed(c, imgs, B, MAE_POOL_TOKENS, lat) == MAE_ERR_ABORTED, "mae_embed not cancelled");
    counter count_embed = { 0, -1 };
    CHECK_OK(mae_ctx_set_abort(c, count_abort, &count_embed));
    CHECK_OK(mae_embed(c, imgs, B, MAE_POOL_MEAN, lat));
    first.calls = 0;
    first.fire_at = count_embed.calls - 1;
    CHECK_OK(mae_ctx_set_abort(c, count_abort, &first));
    CHECK(mae_embed(c, imgs, B, MAE_POOL_MEAN, lat) == MAE_ERR_ABORTED, "mae_embed not cancelled at the last check");
    const mae_encoder *en;
    CHECK_OK(mae_model_encoder(m, &en));
    first.calls = 0;
    first.fire_at = 0;
    CHECK(mae_encoder_forward(en, c, lat2, B, NULL, L, lat) == MAE_ERR_ABORTED, "encoder part not cancelled");
    CHECK_OK(mae_ctx_set_abort(c, NULL, NULL));
    CHECK_OK(mae_embed(c, imgs, B, MAE_POOL_TOKENS, lat));
    CHECK_OK(mae_embed(twin, imgs, B, MAE_POOL_TOKENS, lat2));
    CHECK(same_bits(lat, lat2, nlat), "mae_embed after a cancel differs");
    CHECK(mae_ctx_set_abort(NULL, count_abort, NULL) == MAE_ERR_INVALID_ARG, "set_abort on NULL");
    free(imgs); free(pred); free(pred2); free(lat); free(lat2);
    mae_ctx_free(c);
    mae_ctx_free(twin);
    mae_model_free(m);
}

/* ---- trainer ------------------------------------------------------------------------------ */

typedef struct { int calls, cancel_at, last_done, total, ordered; } progress_log;
static int log_progress(void *user, int done, int total)
{
    progress_log *p = user;
    if (p->calls > 0 && done != p->last_done + 1)
        p->ordered = 0;
    if (p->calls == 0 && done != 0)
        p->ordered = 0;
    p->last_done = done;
    p->total = total;
    return p->calls++ == p->cancel_at;
}

static void params(const mae_model *m, float *out, size_t n)
{
    int count;
    size_t at = 0;
    CHECK_OK(mae_model_tensor_count(m, &count));
    for (int i = 0; i < count; i++) {
        const char *name;
        const float *d;
        size_t k;
        CHECK_OK(mae_model_tensor_name(m, i, &name));
        CHECK_OK(mae_model_tensor(m, name, &d, &k, NULL, NULL));
        if (at + k <= n)
            memcpy(out + at, d, k * sizeof *out);
        at += k;
    }
}

static void test_trainer(void)
{
    mae_model *ma = tiny(7), *mb = tiny(7);
    mae_trainer *a = NULL, *b = NULL;
    CHECK_OK(mae_trainer_create(ma, B, &a));
    CHECK_OK(mae_trainer_create(mb, B, &b));
    if (!a || !b)
        return;
    CHECK_OK(mae_trainer_set_threads(a, 2));
    CHECK_OK(mae_trainer_set_threads(b, 1));   /* gradients do not depend on it */
    mae_config cfg;
    cfg.struct_size = sizeof cfg;
    CHECK_OK(mae_model_get_config(ma, &cfg));
    int total = cfg.depth + cfg.decoder_depth + 1;
    size_t npix = (size_t)B * 3 * 32 * 32;
    float *imgs = tu_malloc(npix * sizeof(float)), la, lb;
    tu_fill(imgs, npix, -1, 1);
    float *ga, *gb;
    size_t n, n2;
    CHECK_OK(mae_trainer_grads(a, &ga, &n));
    CHECK_OK(mae_trainer_grads(b, &gb, &n2));
    float *before = tu_malloc(n * sizeof(float));

    /* the same micro-batch into both, then a cancelled one into a, at every check in turn (the
     * count of a silent callback: before each block and the backward pass, and inside the
     * forward blocks; never in the backward pass, which adds into the gradients) */
    counter silent = { 0, -1 };
    CHECK_OK(mae_trainer_set_threads(a, 1));   /* a fixed count of checks, as in test_ctx */
    CHECK_OK(mae_trainer_set_abort(a, count_abort, &silent));
    CHECK_OK(mae_trainer_forward_backward(a, imgs, B, NULL, &la));
    CHECK_OK(mae_trainer_set_abort(a, NULL, NULL));
    CHECK_OK(mae_trainer_forward_backward(b, imgs, B, NULL, &lb));
    CHECK(silent.calls > 2 * total, "trainer abort asked %d times for %d checks between blocks", silent.calls, total);
    int checks = silent.calls;
    for (int at = 0; at < checks; at++) {
        memcpy(before, ga, n * sizeof(float));
        counter k = { 0, at };
        CHECK_OK(mae_trainer_set_abort(a, count_abort, &k));
        mae_status s = mae_trainer_forward_backward(a, imgs, B, NULL, &la);
        CHECK(s == MAE_ERR_ABORTED, "trainer abort at check %d: %s", at, mae_status_str(s));
        CHECK(k.calls == at + 1, "trainer abort at check %d asked %d times", at, k.calls);
        CHECK(same_bits(ga, before, n), "a cancelled forward_backward (check %d) changed the gradients", at);
        CHECK_OK(mae_trainer_set_abort(a, NULL, NULL));
    }
    /* the input-gradient variant too */
    counter k = { 0, checks - 1 };   /* the last: before the backward pass */
    float *dimgs = tu_malloc(npix * sizeof(float));
    CHECK_OK(mae_trainer_set_abort(a, count_abort, &k));
    CHECK(mae_trainer_forward_backward_input(a, imgs, B, NULL, &la, dimgs) == MAE_ERR_ABORTED, "the _input variant was not cancelled");
    CHECK_OK(mae_trainer_set_abort(a, NULL, NULL));
    CHECK_OK(mae_trainer_set_threads(a, 2));
    CHECK(same_bits(ga, gb, n), "after cancelled calls the gradients differ from the twin's");

    /* progress: done = 0 .. total-1 at the checks, then total when the backward pass is done */
    progress_log pl = { 0, -1, -1, 0, 1 };
    CHECK_OK(mae_trainer_set_progress(a, log_progress, &pl));
    CHECK_OK(mae_trainer_forward_backward(a, imgs, B, NULL, &la));
    CHECK_OK(mae_trainer_forward_backward(b, imgs, B, NULL, &lb));
    CHECK(pl.calls == total + 1 && pl.ordered && pl.last_done == total && pl.total == total,
          "progress: %d calls (want %d), ordered %d, last %d/%d", pl.calls, total + 1, pl.ordered, pl.last_done, pl.total);
    CHECK(la == lb && same_bits(ga, gb, n), "the RNG was not restored after the cancels (loss %g vs %g)", (double)la, (double)lb);
    /* a progress callback that returns nonzero cancels like abort */
    memcpy(before, ga, n * sizeof(float));
    progress_log stop = { 0, 1, -1, 0, 1 };
    CHECK_OK(mae_trainer_set_progress(a, log_progress, &stop));
    CHECK(mae_trainer_forward_backward(a, imgs, B, NULL, &la) == MAE_ERR_ABORTED, "progress did not cancel");
    CHECK(stop.calls == 2 && same_bits(ga, before, n), "progress cancel: %d calls, gradients kept %d", stop.calls, same_bits(ga, before, n));
    CHECK_OK(mae_trainer_set_progress(a, NULL, NULL));

    /* the step after all that: same parameters, same step count */
    CHECK_OK(mae_trainer_step(a));
    CHECK_OK(mae_trainer_step(b));
    int64_t sa, sb;
    CHECK_OK(mae_trainer_get_step(a, &sa));
    CHECK_OK(mae_trainer_get_step(b, &sb));
    size_t np;
    CHECK_OK(mae_model_num_params(ma, &np));
    float *pa = tu_malloc(np * sizeof(float)), *pb = tu_malloc(np * sizeof(float));
    params(ma, pa, np);
    params(mb, pb, np);
    CHECK(sa == sb && same_bits(pa, pb, np), "after the step the cancelled trainer's model differs");
    CHECK(mae_trainer_set_abort(NULL, NULL, NULL) == MAE_ERR_INVALID_ARG, "trainer set_abort NULL");
    CHECK(mae_trainer_set_progress(NULL, NULL, NULL) == MAE_ERR_INVALID_ARG, "trainer set_progress NULL");
    free(imgs); free(before); free(dimgs); free(pa); free(pb);
    mae_trainer_free(a); mae_trainer_free(b);
    mae_model_free(ma); mae_model_free(mb);
}

/* ---- load --------------------------------------------------------------------------------- */

static void test_load(void)
{
    mae_model *m = tiny(3);
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_hooks_%d.safetensors", (int)getpid());
    CHECK_OK(mae_model_save(m, path));
    int count;
    CHECK_OK(mae_model_tensor_count(m, &count));
    progress_log pl = { 0, -1, 0, 0, 1 };
    mae_model *r = NULL;
    CHECK_OK(mae_model_load_progress(path, log_progress, &pl, &r));
    /* the log's "ordered" expects done to start at 0; a load reports after each tensor */
    CHECK(pl.calls == count && pl.last_done == count && pl.total == count, "load progress: %d calls, last %d/%d, %d tensors", pl.calls, pl.last_done, pl.total, count);
    mae_model_free(r);
    for (int at = 0; at < count; at += 5) {
        progress_log stop = { 0, at, 0, 0, 1 };
        mae_model *sentinel = (mae_model *)&stop, *out = sentinel;
        mae_status s = mae_model_load_progress(path, log_progress, &stop, &out);
        CHECK(s == MAE_ERR_ABORTED && out == sentinel, "cancel at tensor %d: %s, out %s", at + 1, mae_status_str(s), out == sentinel ? "kept" : "written");
        CHECK(stop.calls == at + 1, "cancel at tensor %d: %d calls", at + 1, stop.calls);
    }
    /* the hook is gone after the call: a plain load is not cancelled */
    CHECK_OK(mae_model_load(path, &r));
    mae_model_free(r);
    CHECK_OK(mae_model_load_progress(path, NULL, NULL, &r));
    mae_model_free(r);
    CHECK(mae_model_load_progress(NULL, NULL, NULL, &r) == MAE_ERR_INVALID_ARG, "NULL path");
    CHECK(strcmp(mae_status_str(MAE_ERR_ABORTED), "aborted") == 0, "status string: %s", mae_status_str(MAE_ERR_ABORTED));
    unlink(path);
    mae_model_free(m);
}

int main(void)
{
    tu_seed(8);
    test_ctx();
    test_trainer();
    test_load();
    return tu_finish("test_hooks");
}
