/* The trainer around the backward pass: AdamW and the schedule against a double-precision
 * reference of torch.optim.AdamW and util/lr_sched.py, the official weight-decay groups, grad
 * norm and clipping, argument checks, no allocation in a step, masks drawn as mae_forward draws
 * them, and a few steps that really lower the loss. */
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"

/* The huge-max_batch check asks for terabytes; under AddressSanitizer a failed malloc must return
 * NULL (as it does in production) rather than abort the test. */
const char *__asan_default_options(void);
__attribute__((visibility("default"), used)) const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static mae_model *tiny_model(float ratio, int norm_pix)
{
    mae_config cfg;
    mae_config_init(&cfg, sizeof cfg, "tiny");
    cfg.img_size = 16; cfg.patch_size = 4; cfg.embed_dim = 32; cfg.depth = 2; cfg.num_heads = 4;
    cfg.decoder_embed_dim = 16; cfg.decoder_depth = 1; cfg.decoder_num_heads = 2;
    cfg.mask_ratio = ratio; cfg.norm_pix_loss = norm_pix;
    mae_model *m = NULL;
    CHECK_OK(mae_model_create(&cfg, 3, &m));
    if (!m) exit(1);
    return m;
}

/* ---- the schedule and AdamW, written from the official code ------------------------------- */

static double sched(double peak, double min_lr, double warmup, double epochs, double e)
{
    if (e < warmup)
        return peak * e / warmup;
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + cos(3.14159265358979323846 * (e - warmup) / (epochs - warmup)));
}

static int decays(const char *name, int ndim)
{
    size_t n = strlen(name);
    return ndim > 1 && !(n >= 5 && strcmp(name + n - 5, ".bias") == 0);
}

static void test_adamw(void)
{
    mae_model *m = tiny_model(0.75f, 0);
    mae_trainer *t = NULL;
    CHECK_OK(mae_trainer_create(m, 2, &t));
    mae_train_config tc;
    CHECK_OK(mae_train_config_init(&tc, sizeof tc));
    tc.lr = 1e-2; tc.min_lr = 1e-4; tc.warmup_epochs = 1; tc.epochs = 3; tc.iters_per_epoch = 4;
    tc.accum_iter = 2; tc.weight_decay = 0.05;
    CHECK_OK(mae_trainer_set_config(t, &tc));
    size_t total = m->lay.total;
    float *grads = NULL;
    size_t count = 0;
    CHECK_OK(mae_trainer_grads(t, &grads, &count));
    double *p = tu_malloc(total * sizeof *p), *m1 = tu_malloc(total * sizeof *m1), *m2 = tu_malloc(total * sizeof *m2);
    float *g = tu_malloc(total * sizeof *g), *start = tu_malloc(total * sizeof *start);
    for (size_t i = 0; i < total; i++) { p[i] = m->data[i]; m1[i] = m2[i] = 0; }
    memcpy(start, m->data, total * sizeof *start);
    int n = 0;
    CHECK_OK(mae_model_tensor_count(m, &n));
    for (int s = 0; s < 6; s++) {
        /* gradients: random, with a few large ones; step 4 clips */
        memset(g, 0, total * sizeof *g);
        for (int i = 0; i < n; i++) {
            const char *name = NULL;
            const float *gp;
            size_t cnt;
            CHECK_OK(mae_model_tensor_name(m, i, &name));
            if (mae_trainer_grad(t, name, &gp, &cnt) != MAE_OK)
                continue;   /* frozen */
            tu_fill(g + (gp - grads), cnt, -1.0, 1.0);
        }
        memcpy(grads, g, total * sizeof *g);
        double sq = 0;
        for (size_t i = 0; i < total; i++) sq += (double)g[i] * g[i];
        double norm = sqrt(sq), mul = 1.0;
        tc.clip_grad = s == 4 ? (float)(norm / 2) : 0.0f;
        CHECK_OK(mae_trainer_set_config(t, &tc));
        if (s == 4) mul = tc.clip_grad / (norm + 1e-6);
        double e = (double)(s * 2) / 4, lr = sched(1e-2, 1e-4, 1, 3, e), got_lr = -1;
        CHECK_OK(mae_trainer_get_lr(t, &got_lr));
        CHECK(fabs(got_lr - lr) <= 1e-15, "step %d: lr %.17g, expected %.17g", s, got_lr, lr);
        if (s == 0) CHECK(got_lr == 0.0, "the warmup does not start at 0");
        CHECK_OK(mae_trainer_step(t));
        double gn = -1;
        CHECK_OK(mae_trainer_grad_norm(t, &gn));
        CHECK(fabs(gn - norm) <= 1e-12 * norm, "step %d: grad norm %.17g, expected %.17g", s, gn, norm);
        /* torch.optim.AdamW, single-tensor path, in double */
        double bc1 = 1 - pow(0.9, s + 1), bc2 = 1 - pow(0.95, s + 1);
        for (int i = 0; i < n; i++) {
            const char *name = NULL;
            const float *data, *gp;
            size_t cnt;
            int ndim;
            int64_t shape[4];
            mae_model_tensor_name(m, i, &name);
            mae_model_tensor(m, name, &data, &cnt, &ndim, shape);
            if (mae_trainer_grad(t, name, &gp, &cnt) != MAE_OK)
                continue;
            size_t off = (size_t)(data - m->data);
            double wd = decays(name, ndim) ? 0.05 : 0.0;
            for (size_t j = off; j < off + cnt; j++) {
                double gg = g[j] * mul;
                p[j] *= 1 - lr * wd;
                m1[j] = 0.9 * m1[j] + 0.1 * gg;
                m2[j] = 0.95 * m2[j] + 0.05 * gg * gg;
                p[j] -= lr / bc1 * m1[j] / (sqrt(m2[j]) / sqrt(bc2) + 1e-8);
            }
        }
        int zero = 1;
        for (size_t i = 0; i < total; i++) zero &= grads[i] == 0.0f;
        CHECK(zero, "step %d did not zero the gradients", s);
    }
    int64_t steps = -1;
    CHECK_OK(mae_trainer_get_step(t, &steps));
    CHECK(steps == 6, "step count %lld", (long long)steps);
    /* per tensor: the parameters after 6 steps, and the frozen tables untouched */
    for (int i = 0; i < n; i++) {
        const char *name = NULL;
        const float *data;
        size_t cnt;
        int ndim;
        int64_t shape[4];
        mae_model_tensor_name(m, i, &name);
        mae_model_tensor(m, name, &data, &cnt, &ndim, shape);
        size_t off = (size_t)(data - m->data);
        float *ref = tu_malloc(cnt * sizeof *ref);
        for (size_t j = 0; j < cnt; j++) ref[j] = (float)p[off + j];
        double err = tu_rel_l2(data, ref, cnt);
        CHECK(err <= 1e-6, "%s after 6 AdamW steps: rel err %.3g", name, err);
        if (strstr(name, "pos_embed"))
            CHECK(memcmp(data, start + off, cnt * sizeof *data) == 0, "frozen %s changed", name);
        else
            CHECK(memcmp(data, start + off, cnt * sizeof *data) != 0, "%s did not change", name);
        free(ref);
    }
    /* the packed weights follow the step: the model's forward equals a freshly packed copy's */
    mae_ctx *c = NULL;
    float img[2 * 3 * 16 * 16], noise[2 * 16], l1 = NAN, l2 = NAN;
    tu_fill(img, sizeof img / sizeof *img, -1, 1);
    tu_fill(noise, 32, 0, 1);
    CHECK_OK(mae_ctx_create(m, 2, &c));
    CHECK_OK(mae_forward(c, img, 2, noise, &l1, NULL, NULL, NULL));
    CHECK_OK(mae_model_pack(m));
    CHECK_OK(mae_forward(c, img, 2, noise, &l2, NULL, NULL, NULL));
    CHECK(l1 == l2, "the step left stale packed weights (%g vs %g)", (double)l1, (double)l2);
    mae_ctx_free(c);

    /* non-finite gradients: refused, nothing changes */
    memcpy(start, m->data, total * sizeof *start);
    grads[5] = NAN;
    CHECK(mae_trainer_step(t) == MAE_ERR_STATE, "a NaN gradient was stepped");
    CHECK(memcmp(start, m->data, total * sizeof *start) == 0, "a refused step changed the parameters");
    CHECK_OK(mae_trainer_get_step(t, &steps));
    CHECK(steps == 6, "a refused step counted");
    mae_trainer_free(t);
    mae_model_free(m);
    free(p); free(m1); free(m2); free(g); free(start);
}

static void test_schedule(void)
{
    mae_model *m = tiny_model(0.75f, 0);
    mae_trainer *t = NULL;
    CHECK_OK(mae_trainer_create(m, 8, &t));
    mae_train_config tc;
    CHECK_OK(mae_train_config_init(&tc, sizeof tc));
    /* the official defaults */
    CHECK(tc.blr == 1.5e-4 && tc.lr == 0 && tc.min_lr == 0 && tc.weight_decay == 0.05 && tc.beta1 == 0.9 &&
          tc.beta2 == 0.95 && tc.eps == 1e-8 && tc.warmup_epochs == 40 && tc.epochs == 400 && tc.accum_iter == 1 &&
          tc.world_size == 1 && tc.clip_grad == 0 && tc.train_pos == -1, "defaults are not the official recipe");
    /* constant lr = blr * eff_batch / 256, eff_batch = max_batch (8) * accum * world */
    double lr;
    tc.accum_iter = 4; tc.world_size = 2;
    CHECK_OK(mae_trainer_set_config(t, &tc));
    CHECK_OK(mae_trainer_get_lr(t, &lr));
    CHECK(lr == 1.5e-4 * (8.0 * 4 * 2) / 256, "peak lr %.17g", lr);
    tc.batch_size = 64; tc.accum_iter = 1; tc.world_size = 64;   /* the paper: 4096 -> 2.4e-3 */
    CHECK_OK(mae_trainer_set_config(t, &tc));
    CHECK_OK(mae_trainer_get_lr(t, &lr));
    CHECK(fabs(lr - 2.4e-3) < 1e-15, "paper peak lr %.17g", lr);
    /* get_config round trip, and a smaller caller struct (version 1 size) works */
    mae_train_config back;
    memset(&back, 0, sizeof back);
    back.struct_size = sizeof back;
    CHECK_OK(mae_trainer_get_config(t, &back));
    CHECK(back.batch_size == 64 && back.world_size == 64 && back.blr == 1.5e-4, "get_config");
    /* invalid settings are refused and change nothing */
    mae_train_config bad = tc;
    bad.beta1 = 1.0;
    CHECK(mae_trainer_set_config(t, &bad) == MAE_ERR_INVALID_ARG, "beta1 = 1 accepted");
    bad = tc; bad.accum_iter = 0;
    CHECK(mae_trainer_set_config(t, &bad) == MAE_ERR_INVALID_ARG, "accum_iter 0 accepted");
    bad = tc; bad.iters_per_epoch = 10; bad.epochs = 5; bad.warmup_epochs = 5;
    CHECK(mae_trainer_set_config(t, &bad) == MAE_ERR_INVALID_ARG, "epochs == warmup accepted");
    bad = tc; bad.eps = 0;
    CHECK(mae_trainer_set_config(t, &bad) == MAE_ERR_INVALID_ARG, "eps 0 accepted");
    bad = tc; bad.lr = NAN;
    CHECK(mae_trainer_set_config(t, &bad) == MAE_ERR_INVALID_ARG, "lr NaN accepted");
    bad = tc; bad.train_pos = 2;
    CHECK(mae_trainer_set_config(t, &bad) == MAE_ERR_INVALID_ARG, "train_pos 2 accepted");
    bad = tc; bad.struct_size = 8;
    CHECK(mae_trainer_set_config(t, &bad) == MAE_ERR_INVALID_ARG, "struct_size 8 accepted");
    CHECK(mae_train_config_init(&bad, 8) == MAE_ERR_INVALID_ARG, "config_init with size 8");
    CHECK_OK(mae_trainer_get_lr(t, &lr));
    CHECK(fabs(lr - 2.4e-3) < 1e-15, "a refused config changed the lr");
    /* warmup then cosine down to min_lr, per optimizer step (it = step * accum_iter) */
    tc.lr = 1e-3; tc.min_lr = 1e-5; tc.warmup_epochs = 2; tc.epochs = 10; tc.iters_per_epoch = 6;
    tc.accum_iter = 3;
    CHECK_OK(mae_trainer_set_config(t, &tc));
    int ok = 1;
    for (int64_t s = 0; s < 20; s++) {
        double want = sched(1e-3, 1e-5, 2, 10, (double)(s * 3) / 6);
        double got = mae_train_lr_at(&t->cfg, t->max_batch, s);
        ok &= fabs(got - want) <= 1e-18;
    }
    CHECK(ok, "schedule differs from the official formula");
    CHECK(mae_train_lr_at(&t->cfg, t->max_batch, 20) == 1e-5, "lr at the end is not min_lr");
    mae_trainer_free(t);
    mae_model_free(m);
}

/* ---- arguments ------------------------------------------------------------------------------ */

static void test_errors(void)
{
    mae_model *m = tiny_model(0.75f, 0);
    mae_trainer *t = NULL, *t0 = (mae_trainer *)0x1;
    CHECK(mae_trainer_create(NULL, 2, &t) == MAE_ERR_INVALID_ARG, "NULL model");
    CHECK(mae_trainer_create(m, 2, NULL) == MAE_ERR_INVALID_ARG, "NULL out");
    CHECK(mae_trainer_create(m, 0, &t0) == MAE_ERR_INVALID_ARG && t0 == (mae_trainer *)0x1, "max_batch 0");
    CHECK(mae_trainer_create(m, -3, &t0) == MAE_ERR_INVALID_ARG, "max_batch -3");
    CHECK(mae_trainer_create(m, 1 << 30, &t0) == MAE_ERR_NOMEM && t0 == (mae_trainer *)0x1, "a huge max_batch");
    CHECK_OK(mae_trainer_create(m, 2, &t));
    float img[3 * 3 * 16 * 16], loss = 42.0f, dimgs[3 * 16 * 16];
    tu_fill(img, sizeof img / sizeof *img, -1, 1);
    CHECK(mae_trainer_forward_backward(NULL, img, 1, NULL, &loss) == MAE_ERR_INVALID_ARG, "NULL trainer");
    CHECK(mae_trainer_forward_backward(t, NULL, 1, NULL, &loss) == MAE_ERR_INVALID_ARG, "NULL imgs");
    CHECK(mae_trainer_forward_backward(t, img, 0, NULL, &loss) == MAE_ERR_SHAPE, "batch 0");
    CHECK(mae_trainer_forward_backward(t, img, 3, NULL, &loss) == MAE_ERR_SHAPE, "batch > max_batch");
    CHECK(mae_trainer_forward_backward_input(t, img, 1, NULL, &loss, NULL) == MAE_ERR_INVALID_ARG, "NULL dimgs");
    CHECK(loss == 42.0f, "a failed call wrote the loss");
    (void)dimgs;
    const float *g;
    size_t n;
    float *all;
    CHECK(mae_trainer_grad(t, "no.such.tensor", &g, &n) == MAE_ERR_INVALID_ARG, "unknown name");
    CHECK(mae_trainer_grad(t, "pos_embed", &g, &n) == MAE_ERR_INVALID_ARG, "frozen sin-cos table has a gradient");
    CHECK(mae_trainer_grad(t, NULL, &g, &n) == MAE_ERR_INVALID_ARG, "NULL name");
    CHECK(mae_trainer_grad(t, "cls_token", NULL, &n) == MAE_ERR_INVALID_ARG, "NULL grad");
    CHECK(mae_trainer_grads(t, &all, NULL) == MAE_ERR_INVALID_ARG, "NULL count");
    CHECK(mae_trainer_set_threads(t, 0) == MAE_ERR_INVALID_ARG, "0 threads");
    CHECK(mae_trainer_set_threads(t, 257) == MAE_ERR_INVALID_ARG, "257 threads");
    CHECK(mae_trainer_set_mask_ratio(t, 1.0f) == MAE_ERR_INVALID_ARG, "ratio 1");
    CHECK(mae_trainer_set_mask_ratio(t, -0.1f) == MAE_ERR_INVALID_ARG, "ratio < 0");
    CHECK(mae_trainer_set_mask_ratio(t, 0.0f) == MAE_ERR_INVALID_ARG, "ratio 0 (no patch removed)");
    CHECK(mae_trainer_set_mask_ratio(t, NAN) == MAE_ERR_INVALID_ARG, "ratio NaN");
    CHECK(mae_trainer_step(NULL) == MAE_ERR_INVALID_ARG && mae_trainer_zero_grad(NULL) == MAE_ERR_INVALID_ARG &&
          mae_trainer_set_seed(NULL, 1) == MAE_ERR_INVALID_ARG && mae_trainer_set_config(t, NULL) == MAE_ERR_INVALID_ARG &&
          mae_trainer_get_config(NULL, NULL) == MAE_ERR_INVALID_ARG && mae_trainer_grad_norm(t, NULL) == MAE_ERR_INVALID_ARG &&
          mae_trainer_get_step(NULL, NULL) == MAE_ERR_INVALID_ARG && mae_trainer_get_lr(t, NULL) == MAE_ERR_INVALID_ARG,
          "NULL arguments accepted");
    mae_trainer_free(NULL);
    mae_trainer_free(t);
    /* a model whose mask ratio removes nothing: creation works, a pass says why it cannot run */
    mae_model *m0 = tiny_model(0.0f, 0);
    CHECK_OK(mae_trainer_create(m0, 1, &t));
    CHECK(mae_trainer_forward_backward(t, img, 1, NULL, &loss) == MAE_ERR_STATE, "ratio 0 pass");
    mae_trainer_free(t);
    mae_model_free(m0);
    /* an encoder-only model cannot be pretrained */
    mae_cfg ec = m->cfg;
    ec.has_decoder = 0;
    mae_model *enc = NULL;
    CHECK_OK(mae_model_alloc(&ec, &enc));
    CHECK(mae_trainer_create(enc, 1, &t) == MAE_ERR_UNSUPPORTED, "encoder-only model");
    mae_model_free(enc);
    mae_model_free(m);
}

/* ---- masks, mask ratio, allocation, progress ------------------------------------------------ */

static void test_training(void)
{
    tu_alloc_reset();   /* counts the allocations (tu_alloc.calls) */
    CHECK_OK(tu_alloc_install());
    mae_model *m = tiny_model(0.75f, 1);
    int B = 4;
    mae_trainer *t = NULL;
    mae_ctx *c = NULL;
    CHECK_OK(mae_trainer_create(m, B, &t));
    CHECK_OK(mae_ctx_create(m, B, &c));
    size_t nimg = (size_t)B * 3 * 16 * 16;
    float *img = tu_malloc(nimg * sizeof *img);
    /* smooth images: something a small model can learn to fill in */
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 16; x++)
                    img[((b * 3 + ch) * 16 + y) * 16 + x] = (float)sin(0.3 * (x + 2 * b) + 0.2 * y * (ch + 1));
    /* noise == NULL draws as the context does after the same seed */
    float lt = NAN, lc = NAN;
    CHECK_OK(mae_trainer_set_seed(t, 2));
    CHECK_OK(mae_ctx_set_seed(c, 2));
    CHECK_OK(mae_trainer_forward_backward(t, img, B, NULL, &lt));
    CHECK_OK(mae_forward(c, img, B, NULL, &lc, NULL, NULL, NULL));
    CHECK(fabs(lt - lc) <= 1e-6 * fabs(lc), "seeded masks differ: %g vs %g", (double)lt, (double)lc);
    /* a larger kept count re-plans the activations */
    CHECK_OK(mae_trainer_set_mask_ratio(t, 0.25f));
    CHECK_OK(mae_ctx_set_mask_ratio(c, 0.25f));
    float noise[4 * 16];
    tu_fill(noise, 64, 0, 1);
    CHECK_OK(mae_trainer_forward_backward(t, img, B, noise, &lt));
    CHECK_OK(mae_forward(c, img, B, noise, &lc, NULL, NULL, NULL));
    CHECK(fabs(lt - lc) <= 1e-6 * fabs(lc), "ratio 0.25: %g vs %g", (double)lt, (double)lc);
    CHECK_OK(mae_trainer_set_mask_ratio(t, 0.75f));
    CHECK_OK(mae_trainer_zero_grad(t));

    mae_train_config tc;
    CHECK_OK(mae_train_config_init(&tc, sizeof tc));
    tc.lr = 3e-3; tc.weight_decay = 0.0;
    CHECK_OK(mae_trainer_set_config(t, &tc));
    long before = tu_alloc.calls;
    float first = NAN, last = NAN;
    for (int s = 0; s < 150; s++) {
        CHECK_OK(mae_trainer_forward_backward(t, img, B, NULL, &last));
        CHECK_OK(mae_trainer_step(t));
        if (s == 0) first = last;
    }
    CHECK(tu_alloc.calls == before, "%ld allocations during training steps", tu_alloc.calls - before);
    CHECK(last < 0.5f * first, "150 steps on one batch: loss %g -> %g", (double)first, (double)last);
    printf("training: loss %.4f -> %.4f in 150 steps\n", (double)first, (double)last);
    mae_ctx_free(c);
    mae_trainer_free(t);
    mae_model_free(m);
    free(img);
    mae_set_allocator(NULL);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

/* Trains n steps with masks from the trainer's RNG on a fixed batch. */
static void train_steps(mae_trainer *t, const float *img, int B, int n)
{
    for (int s = 0; s < n; s++) {
        CHECK_OK(mae_trainer_forward_backward(t, img, B, NULL, NULL));
        CHECK_OK(mae_trainer_step(t));
    }
}

static void test_checkpoint(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mae_test_trainer_%ld.safetensors", (long)getpid());
    int B = 2;
    float img[2 * 3 * 16 * 16];
    tu_fill(img, sizeof img / sizeof *img, -1, 1);
    mae_train_config tc;
    CHECK_OK(mae_train_config_init(&tc, sizeof tc));
    tc.lr = 2e-3; tc.min_lr = 1e-5; tc.warmup_epochs = 1; tc.epochs = 5; tc.iters_per_epoch = 3;
    tc.clip_grad = 5.0f;

    /* uninterrupted: 6 steps */
    mae_model *a = tiny_model(0.75f, 1);
    mae_trainer *ta = NULL;
    CHECK_OK(mae_trainer_create(a, B, &ta));
    CHECK_OK(mae_trainer_set_config(ta, &tc));
    CHECK_OK(mae_trainer_set_seed(ta, 9));
    CHECK_OK(mae_trainer_set_mask_ratio(ta, 0.5f));
    train_steps(ta, img, B, 3);
    mae_status saved = mae_trainer_save(ta, path);
    if (saved == MAE_ERR_UNSUPPORTED) {   /* until src/io has the safetensors writer */
        printf("checkpoint: skipped (%s)\n", mae_last_error());
        mae_trainer_free(ta);
        mae_model_free(a);
        return;
    }
    CHECK(saved == MAE_OK, "mae_trainer_save: %s", mae_last_error());
    train_steps(ta, img, B, 3);

    /* interrupted: a fresh model of the same architecture (other weights, other seed, defaults),
     * loaded from the checkpoint after step 3, then 3 more steps */
    mae_model *b = tiny_model(0.75f, 1);
    mae_trainer *tb = NULL;
    CHECK_OK(mae_trainer_create(b, B, &tb));
    train_steps(tb, img, B, 1);   /* moments and a step count that the load must replace */
    CHECK_OK(mae_trainer_load(tb, path));
    int64_t step = -1;
    CHECK_OK(mae_trainer_get_step(tb, &step));
    CHECK(step == 3, "loaded step %lld", (long long)step);
    mae_train_config back;
    memset(&back, 0, sizeof back);
    back.struct_size = sizeof back;
    CHECK_OK(mae_trainer_get_config(tb, &back));
    CHECK(back.lr == tc.lr && back.epochs == tc.epochs && back.clip_grad == tc.clip_grad &&
          back.iters_per_epoch == tc.iters_per_epoch, "the training config was not restored");
    train_steps(tb, img, B, 3);
    CHECK(memcmp(a->data, b->data, a->lay.total * sizeof(float)) == 0, "resumed parameters differ from the uninterrupted run");
    CHECK(memcmp(ta->exp_avg_sq, tb->exp_avg_sq, a->lay.total * sizeof(float)) == 0, "resumed moments differ");

    /* the checkpoint is also a model file */
    mae_model *c = NULL;
    mae_status s = mae_model_load(path, &c);
    CHECK(s == MAE_OK, "mae_model_load(checkpoint): %s", mae_last_error());
    mae_model_free(c);

    /* failures change nothing */
    float *before = tu_malloc(b->lay.total * sizeof *before);
    memcpy(before, b->data, b->lay.total * sizeof *before);
    CHECK(mae_trainer_load(tb, "/nonexistent-dir/no-such-file.safetensors") != MAE_OK, "loading a missing file");
    CHECK(mae_trainer_load(tb, NULL) == MAE_ERR_INVALID_ARG && mae_trainer_save(NULL, path) == MAE_ERR_INVALID_ARG, "NULL path/trainer");
    CHECK(mae_trainer_save(tb, "/nonexistent-dir/x.safetensors") != MAE_OK, "saving into a missing directory");
    mae_model *other = tiny_model(0.75f, 0);   /* norm_pix_loss differs */
    mae_trainer *to = NULL;
    CHECK_OK(mae_trainer_create(other, B, &to));
    CHECK(mae_trainer_load(to, path) == MAE_ERR_SHAPE, "a checkpoint of another architecture loaded");
    CHECK(memcmp(before, b->data, b->lay.total * sizeof *before) == 0, "a failed load changed the model");
    mae_trainer_free(to);
    mae_model_free(other);
    free(before);
    remove(path);
    mae_trainer_free(ta);
    mae_trainer_free(tb);
    mae_model_free(a);
    mae_model_free(b);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(4);
    TU_RUN("schedule", test_schedule());
    TU_RUN("adamw", test_adamw());
    TU_RUN("errors", test_errors());
    TU_RUN("training", test_training());
    TU_RUN("checkpoint", test_checkpoint());
    return tu_finish("test_trainer");
}
