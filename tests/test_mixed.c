/* Mixed-precision training of a bf16 model (src/model/mixed.c, docs/PRECISION.md):
 *  - the backward products against a double-precision sum of the same bf16-rounded operands
 *    (rounded here by an independent nearest-even rule), within the float32 sum's bound;
 *  - gradients and steps bitwise equal for 1, 2 and 3 threads;
 *  - resume from a checkpoint (the CLI's path: load the file, make it bf16, create, load) is
 *    bitwise an uninterrupted run;
 *  - the bf16 packs follow the master weights after each step; the loss falls on one batch;
 *  - the gradients against the float32 trainer's on the same weights (measured, printed);
 *  - the API: a bf16 model with live contexts refuses, it stays bf16, its tensors are the masters;
 *  - the finetuner on a bf16 classifier: the head's weight gradient at batch 1 is exactly the
 *    product of the rounded operands, the gradients against the float32 finetuner's on the same
 *    weights (between float32 and bf16 distances), threads and resume bitwise;
 *  - checkpoints record the precision: a mismatch on load is MAE_ERR_INVALID_ARG, a file without
 *    the key (written before it existed) is a float32 run's.
 * The gradients against PyTorch float64 autograd: tests/check_mixed.sh. */
#include <time.h>
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"
#include "../src/model/finetune.h"

static mae_config tiny_cfg(void)
{
    mae_config cfg;
    mae_config_init(&cfg, sizeof cfg, "tiny");
    cfg.img_size = 16; cfg.patch_size = 4; cfg.embed_dim = 32; cfg.depth = 2; cfg.num_heads = 4;
    cfg.decoder_embed_dim = 16; cfg.decoder_depth = 1; cfg.decoder_num_heads = 2;
    return cfg;
}

static mae_model *bf16_model(uint64_t seed)
{
    mae_config cfg = tiny_cfg();
    mae_model *m = NULL;
    CHECK_OK(mae_model_create(&cfg, seed, &m));
    if (!m) exit(1);
    CHECK_OK(mae_model_set_precision(m, MAE_PRECISION_BF16));
    return m;
}

/* A trainer at a constant lr (no schedule), so every step moves the weights. */
static mae_trainer *trainer(mae_model *m, int B, int threads, uint64_t seed)
{
    mae_trainer *t = NULL;
    CHECK_OK(mae_trainer_create(m, B, &t));
    if (!t) exit(1);
    mae_train_config tc;
    CHECK_OK(mae_train_config_init(&tc, sizeof tc));
    tc.lr = 1e-3;
    CHECK_OK(mae_trainer_set_config(t, &tc));
    CHECK_OK(mae_trainer_set_seed(t, seed));
    CHECK_OK(mae_trainer_set_threads(t, threads));
    return t;
}

static float *images(int B, uint64_t seed)
{
    uint64_t keep = tu_state;
    tu_seed(seed);
    float *x = tu_malloc((size_t)B * 3 * 16 * 16 * sizeof *x);
    tu_fill(x, (size_t)B * 3 * 16 * 16, -2.0, 2.0);
    tu_state = keep;
    return x;
}

static int same(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

/* ---- the products ---------------------------------------------------------------------------- */

/* x to bf16 by its own rule: 8 significant bits, to nearest with ties to even (rint in the
 * default rounding mode), in double. The inputs here are far from bf16's subnormal range. */
static double ref_round(float x)
{
    if (x == 0.0f)
        return x;
    int e;
    double f = frexp((double)x, &e);          /* x = f 2^e, 0.5 <= |f| < 1 */
    return ldexp(rint(ldexp(f, 8)), e - 8);   /* f to 8 bits */
}

/* The branch-free rounding of the operands is mae_bf16_round's, bit for bit: random bit patterns
 * (every exponent, NaNs, infinities, subnormals) and the edges. */
static void test_round(void)
{
    enum { N = 1 << 20 };
    uint32_t *u = tu_malloc(N * sizeof *u);
    float *x = tu_malloc(N * sizeof *x), *y = tu_malloc(N * sizeof *y);
    const uint32_t edge[] = { 0, 0x80000000u, 1, 0x807fffffu, 0x00800000u, 0x7f7fffffu, 0x7f7f8000u,
                              0x7f800000u, 0xff800000u, 0x7f800001u, 0xffc00000u, 0x3f808000u,
                              0x3f818000u, 0x3f80ffffu, 0x3f807fffu };
    for (size_t i = 0; i < N; i++)
        u[i] = i < sizeof edge / sizeof edge[0] ? edge[i] : (uint32_t)(tu_uniform() * 4294967296.0);
    memcpy(x, u, N * sizeof *x);
    mae_mixed_round(y, x, N);
    int bad = 0;
    for (size_t i = 0; i < N; i++) {
        float want = mae_bf16_float(mae_bf16_round(x[i]));
        bad += memcmp(&want, &y[i], sizeof want) != 0;
    }
    CHECK(bad == 0, "%d of %d roundings differ from mae_bf16_round", bad, N);
    free(u); free(x); free(y);
}

static void test_products(void)
{
    mae_model *m = bf16_model(11);
    mae_trainer *t = trainer(m, 2, 2, 1);
    CHECK(t->round_dy && t->round_xw, "a bf16 model's trainer has no rounded-operand buffers");
    const double u = 0x1p-24;
    /* shapes of the tiny model's linears at batch 2 (N tokens, in, out: the decoder's qkv and fc2,
     * the encoder's fc1 and fc2 with 1 + 4 tokens kept) and smaller ones (the buffers hold these) */
    const int shapes[][3] = { { 34, 16, 48 }, { 34, 64, 16 }, { 10, 32, 128 }, { 10, 128, 32 }, { 1, 32, 128 }, { 33, 15, 47 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *dy = tu_malloc((size_t)N * out * sizeof *dy), *x = tu_malloc((size_t)N * in * sizeof *x);
        float *w = tu_malloc((size_t)out * in * sizeof *w), *dx = tu_malloc((size_t)N * in * sizeof *dx);
        float *dw = tu_malloc((size_t)out * in * sizeof *dw), *dw0 = tu_malloc((size_t)out * in * sizeof *dw0);
        tu_fill(dy, (size_t)N * out, -1.0, 1.0);
        tu_fill(x, (size_t)N * in, -3.0, 3.0);
        tu_fill(w, (size_t)out * in, -0.5, 0.5);
        tu_fill(dw0, (size_t)out * in, -1.0, 1.0);
        memcpy(dw, dw0, (size_t)out * in * sizeof *dw);
        tu_poison(dx, (size_t)N * in);
        mae_mixed_linear_products(t, dx, dw, dy, x, w, N, in, out);
        int bad = 0, rounded = 0;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < in; j++) {   /* dx = r(dy) r(w): out products, float32 sum */
                double e = 0, S = 0, plain = 0;
                for (int o = 0; o < out; o++) {
                    double p = ref_round(dy[(size_t)n * out + o]) * ref_round(w[(size_t)o * in + j]);
                    e += p; S += fabs(p);
                    plain += (double)dy[(size_t)n * out + o] * w[(size_t)o * in + j];
                }
                double got = dx[(size_t)n * in + j], bound = (out + 1) * u * S + 1e-35;
                bad += !(fabs(got - e) <= bound);
                rounded += fabs(got - plain) > bound;
            }
        for (int o = 0; o < out; o++)
            for (int j = 0; j < in; j++) {   /* dw = dw0 + r(dy)ᵀ r(x): N products and the add */
                double e = dw0[(size_t)o * in + j], S = fabs(e);
                for (int n = 0; n < N; n++) {
                    double p = ref_round(dy[(size_t)n * out + o]) * ref_round(x[(size_t)n * in + j]);
                    e += p; S += fabs(p);
                }
                double got = dw[(size_t)o * in + j], bound = (N + 2) * u * S + 1e-35;
                bad += !(fabs(got - e) <= bound);
            }
        CHECK(bad == 0, "N %d in %d out %d: %d results outside the float32 sum's bound", N, in, out, bad);
        /* the bound is tight enough to see the rounding: most dx differ from the unrounded sums */
        CHECK(rounded > N * in / 2, "N %d in %d out %d: only %d of %d dx differ from the unrounded products",
              N, in, out, rounded, N * in);
        /* dx only (the input gradient through the patch embedding) */
        float *dx2 = tu_malloc((size_t)N * in * sizeof *dx2);
        mae_mixed_linear_products(t, dx2, NULL, dy, NULL, w, N, in, out);
        CHECK(same(dx, dx2, (size_t)N * in * sizeof *dx), "dx alone differs from dx with dw");
        free(dx2); free(dy); free(x); free(w); free(dx); free(dw); free(dw0);
    }
    mae_trainer_free(t);
    mae_model_free(m);
}

/* ---- threads --------------------------------------------------------------------------------- */

typedef struct run_out { float *grads, *params, loss[3]; size_t ng, np; } run_out;

/* forward_backward (kept gradients), then 2 more steps; the weights after them. */
static run_out run_threads(int threads)
{
    mae_model *m = bf16_model(21);
    mae_trainer *t = trainer(m, 3, threads, 5);
    float *imgs = images(3, 77);
    run_out r;
    float *g;
    CHECK_OK(mae_trainer_forward_backward(t, imgs, 3, NULL, &r.loss[0]));
    CHECK_OK(mae_trainer_grads(t, &g, &r.ng));
    r.grads = tu_malloc(r.ng * sizeof *g);
    memcpy(r.grads, g, r.ng * sizeof *g);
    for (int i = 1; i < 3; i++) {
        CHECK_OK(mae_trainer_step(t));
        CHECK_OK(mae_trainer_forward_backward(t, imgs, 3, NULL, &r.loss[i]));
    }
    CHECK_OK(mae_trainer_step(t));
    r.np = m->lay.total;
    r.params = tu_malloc(r.np * sizeof *r.params);
    memcpy(r.params, m->data, r.np * sizeof *r.params);
    free(imgs);
    mae_trainer_free(t);
    mae_model_free(m);
    return r;
}

static void test_threads(void)
{
    run_out one = run_threads(1);
    for (int n = 2; n <= 3; n++) {
        run_out r = run_threads(n);
        CHECK(r.ng == one.ng && same(r.grads, one.grads, one.ng * sizeof(float)), "%d threads: gradients differ from 1 thread's", n);
        CHECK(same(r.loss, one.loss, sizeof r.loss), "%d threads: losses differ from 1 thread's", n);
        CHECK(r.np == one.np && same(r.params, one.params, one.np * sizeof(float)), "%d threads: weights after 3 steps differ", n);
        free(r.grads); free(r.params);
    }
    free(one.grads); free(one.params);
}

/* ---- resume ---------------------------------------------------------------------------------- */

static void test_resume(void)
{
    char ckpt[64];
    snprintf(ckpt, sizeof ckpt, "/tmp/test_mixed_%d.safetensors", (int)getpid());
    float *imgs = images(2, 91);
    float la[4], lb[4];
    /* uninterrupted: 4 steps, the checkpoint after the second */
    mae_model *a = bf16_model(31);
    mae_trainer *ta = trainer(a, 2, 2, 9);
    for (int i = 0; i < 4; i++) {
        CHECK_OK(mae_trainer_forward_backward(ta, imgs, 2, NULL, &la[i]));
        CHECK_OK(mae_trainer_step(ta));
        if (i == 1)
            CHECK_OK(mae_trainer_save(ta, ckpt));
    }
    /* resumed as mae train --resume --precision bf16 does: the checkpoint as a model, made bf16
     * (its weights rounded), a trainer, then the checkpoint's exact masters and state */
    mae_model *b = NULL;
    CHECK_OK(mae_model_load(ckpt, &b));
    if (!b) exit(1);
    CHECK_OK(mae_model_set_precision(b, MAE_PRECISION_BF16));
    mae_trainer *tb = trainer(b, 2, 1, 0);
    CHECK_OK(mae_trainer_load(tb, ckpt));
    for (int i = 2; i < 4; i++) {
        CHECK_OK(mae_trainer_forward_backward(tb, imgs, 2, NULL, &lb[i]));
        CHECK_OK(mae_trainer_step(tb));
    }
    CHECK(same(&la[2], &lb[2], 2 * sizeof(float)), "resumed losses %.9g %.9g, uninterrupted %.9g %.9g",
          (double)lb[2], (double)lb[3], (double)la[2], (double)la[3]);
    CHECK(a->lay.total == b->lay.total && same(a->data, b->data, a->lay.total * sizeof(float)),
          "the resumed run's master weights differ from the uninterrupted run's");
    CHECK(same(ta->exp_avg, tb->exp_avg, a->lay.total * sizeof(float)) &&
          same(ta->exp_avg_sq, tb->exp_avg_sq, a->lay.total * sizeof(float)), "the resumed AdamW moments differ");
    int p = -1;
    CHECK_OK(mae_model_get_precision(b, &p));
    CHECK(p == MAE_PRECISION_BF16, "the resumed model computes in %d", p);
    remove(ckpt);
    free(imgs);
    mae_trainer_free(ta); mae_trainer_free(tb);
    mae_model_free(a); mae_model_free(b);
}

/* ---- the packs follow the masters; the loss falls ------------------------------------------ */

/* pred of a context on m (bf16 packs) for imgs and noise */
static float *predict(mae_model *m, const float *imgs, const float *noise, int B)
{
    mae_ctx *c = NULL;
    CHECK_OK(mae_ctx_create(m, B, &c));
    float *pred = tu_malloc((size_t)B * m->cfg.L * m->cfg.P * sizeof *pred);
    if (c)
        CHECK_OK(mae_forward(c, imgs, B, noise, NULL, pred, NULL, NULL));
    mae_ctx_free(c);
    return pred;
}

static void test_training(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_mixed_m_%d.safetensors", (int)getpid());
    mae_model *m = bf16_model(41);
    mae_trainer *t = trainer(m, 2, 2, 3);
    float *imgs = images(2, 55), noise[2 * 16], first = 0, last = 0;
    tu_fill(noise, 2 * 16, 0.0, 1.0);
    for (int i = 0; i < 40; i++) {   /* one batch, one mask: the loss must fall */
        float l;
        CHECK_OK(mae_trainer_forward_backward(t, imgs, 2, noise, &l));
        CHECK_OK(mae_trainer_step(t));
        if (i == 0) first = l;
        last = l;
    }
    /* the float32 trainer from the same start: the bf16 model's weights written as F32 */
    float last32 = 0;
    {
        mae_model *b = bf16_model(41), *f = NULL;
        CHECK_OK(mae_model_save_as(b, path, "F32"));
        CHECK_OK(mae_model_load(path, &f));
        if (!f) exit(1);
        mae_trainer *tf = trainer(f, 2, 2, 3);
        for (int i = 0; i < 40; i++) {
            CHECK_OK(mae_trainer_forward_backward(tf, imgs, 2, noise, &last32));
            CHECK_OK(mae_trainer_step(tf));
        }
        mae_trainer_free(tf);
        mae_model_free(f);
        mae_model_free(b);
    }
    printf("loss on one batch: %.4f -> %.4f after 40 steps (float32 trainer: %.4f)\n", (double)first,
           (double)last, (double)last32);
    CHECK(last < 0.8f * first, "the loss went from %g to %g in 40 steps on one batch", (double)first, (double)last);
    /* and about as far as float32's: at least 90 % of its fall */
    CHECK(first - last >= 0.9f * (first - last32), "bf16 fell %g, float32 %g", (double)(first - last),
          (double)(first - last32));
    /* the packs a context uses are the masters rounded: the same forward as a model made bf16
     * from the masters written as F32 */
    float *got = predict(m, imgs, noise, 2);
    CHECK_OK(mae_model_save_as(m, path, "F32"));
    mae_model *fresh = NULL;
    CHECK_OK(mae_model_load(path, &fresh));
    if (fresh) {
        CHECK_OK(mae_model_set_precision(fresh, MAE_PRECISION_BF16));
        float *want = predict(fresh, imgs, noise, 2);
        size_t n = (size_t)2 * m->cfg.L * m->cfg.P;
        CHECK(same(got, want, n * sizeof *got), "the trained model's forward is not its masters' bf16 forward "
              "(rel %.3g): the packs were not refreshed", tu_rel_l2(got, want, n));
        free(want);
        mae_model_free(fresh);
    }
    remove(path);
    free(got); free(imgs);
    mae_trainer_free(t);
    mae_model_free(m);
}

/* ---- against the float32 trainer -------------------------------------------------------------- */

static void test_vs_f32(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_mixed_f_%d.safetensors", (int)getpid());
    mae_model *m = bf16_model(51);
    mae_trainer *t = trainer(m, 2, 2, 0);
    CHECK_OK(mae_model_save_as(m, path, "F32"));   /* the masters: bf16 values, so both start equal */
    mae_model *f = NULL;
    CHECK_OK(mae_model_load(path, &f));
    if (!f) exit(1);
    mae_trainer *tf = trainer(f, 2, 2, 0);
    float *imgs = images(2, 66), noise[2 * 16], l16, l32;
    tu_fill(noise, 2 * 16, 0.0, 1.0);
    CHECK_OK(mae_trainer_forward_backward(t, imgs, 2, noise, &l16));
    CHECK_OK(mae_trainer_forward_backward(tf, imgs, 2, noise, &l32));
    CHECK(same(m->data, f->data, m->lay.total * sizeof(float)), "the two models do not start from the same weights");
    size_t n = m->lay.total;
    double e = tu_rel_l2(t->grads, tf->grads, n), worst = 0;
    const char *wname = "";
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *tn = &m->tensors[i];
        if (!(t->tflags[i] & MAE_T_TRAIN))
            continue;
        double r = tu_rel_l2(t->grads + tn->offset, tf->grads + tn->offset, tn->count);
        if (r > worst) { worst = r; wname = tn->name; }
    }
    printf("bf16 vs float32 gradients: rel L2 %.3g (all), worst tensor %.3g (%s); loss %.9g vs %.9g\n",
           e, worst, wname, (double)l16, (double)l32);
    /* bf16 operands: about 2^-9 relative per rounding, a few along each path; zero would mean the
     * products were not rounded */
    CHECK(e > 1e-4 && e < 3e-2, "bf16 gradients rel L2 %.3g from float32's", e);
    remove(path);
    free(imgs);
    mae_trainer_free(t); mae_trainer_free(tf);
    mae_model_free(m); mae_model_free(f);
}

/* ---- the API ---------------------------------------------------------------------------------- */

static void test_api(void)
{
    mae_model *m = bf16_model(61);
    mae_ctx *c = NULL;
    mae_trainer *t = NULL;
    CHECK_OK(mae_ctx_create(m, 1, &c));
    EXPECT(mae_trainer_create(m, 1, &t), MAE_ERR_STATE);   /* the contexts read the slim weights */
    CHECK(t == NULL, "a trainer was made while a context lived");
    mae_ctx_free(c);
    CHECK_OK(mae_trainer_create(m, 1, &t));
    int p = -1;
    CHECK_OK(mae_model_get_precision(m, &p));
    CHECK(p == MAE_PRECISION_BF16, "a bf16 model with a trainer computes in %d", p);
    CHECK_OK(mae_model_set_precision(m, MAE_PRECISION_BF16));   /* what it has */
    EXPECT(mae_model_set_precision(m, MAE_PRECISION_F32), MAE_ERR_UNSUPPORTED);
    /* a second trainer on it (masters already there), and a context beside the trainer */
    mae_trainer *t2 = NULL;
    CHECK_OK(mae_trainer_create(m, 1, &t2));
    CHECK_OK(mae_ctx_create(m, 1, &c));
    /* tensors are the masters: after a step no longer bf16 values */
    float *imgs = images(1, 3), l;
    CHECK_OK(mae_trainer_forward_backward(t, imgs, 1, NULL, &l));
    CHECK_OK(mae_trainer_step(t));
    const float *w;
    size_t cnt;
    int nd;
    int64_t shape[4];
    CHECK_OK(mae_model_tensor(m, "blocks.0.mlp.fc1.weight", &w, &cnt, &nd, shape));
    int off = 0;
    for (size_t i = 0; i < cnt; i++)
        off += (float)ref_round(w[i]) != w[i];
    CHECK(off > 0, "after a step every fc1 weight is still a bf16 value: the masters are not float32");
    free(imgs);
    mae_ctx_free(c);
    mae_trainer_free(t); mae_trainer_free(t2);
    mae_model_free(m);
}

/* ---- the finetuner on a bf16 classifier ------------------------------------------------------ */

enum { FT_K = 5 };

/* A bf16 classifier: a tiny bf16 model's encoder with a new head (global pooling). */
static mae_classifier *bf16_classifier(uint64_t seed)
{
    mae_model *m = bf16_model(seed);
    mae_classifier *c = NULL;
    CHECK_OK(mae_classifier_create(m, FT_K, 1, seed + 1, &c));
    mae_model_free(m);
    if (!c) exit(1);
    int p = -1;
    CHECK_OK(mae_model_get_precision(c->m, &p));
    CHECK(p == MAE_PRECISION_BF16, "a classifier of a bf16 model computes in %d", p);
    return c;
}

/* A finetuner at a constant lr with drop path (the masks from seed 7), on threads. */
static mae_finetuner *finetuner(mae_classifier *c, int B, int threads, float drop_path)
{
    mae_finetuner *f = NULL;
    CHECK_OK(mae_finetuner_create(c, B, &f));
    if (!f) exit(1);
    mae_finetune_config fc;
    CHECK_OK(mae_finetune_config_init(&fc, sizeof fc));
    fc.lr = 1e-3;
    fc.drop_path = drop_path;
    CHECK_OK(mae_finetuner_set_config(f, &fc));
    CHECK_OK(mae_finetuner_set_seed(f, 7));
    CHECK_OK(mae_finetuner_set_threads(f, threads));
    return f;
}

/* softmax(z) - smoothed one-hot, as the finetuner computes it (double, then float) */
static void ce_grad(const float *z, int label, double smoothing, float *dz)
{
    double mx = -INFINITY, sum = 0.0;
    for (int k = 0; k < FT_K; k++)
        mx = z[k] > mx ? z[k] : mx;
    for (int k = 0; k < FT_K; k++)
        sum += exp((double)z[k] - mx);
    double lse = mx + log(sum);
    for (int k = 0; k < FT_K; k++) {
        double q = smoothing / FT_K + (k == label ? 1.0 - smoothing : 0.0);
        dz[k] = (float)(exp((double)z[k] - lse) - q);
    }
}

/* Batch 1: the head's weight gradient is one product per element, r(dlogit)·r(pooled), exact in
 * float32; its bias gradient is dlogit. pooled comes from the classifier's own forward (a
 * context before the finetuner), whose logits must equal the finetuner's. */
static void test_ft_head(void)
{
    mae_classifier *c = bf16_classifier(101);
    float *img = images(1, 5), logits[FT_K], z[FT_K], dz[FT_K], loss;
    float *pooled = tu_malloc((size_t)c->m->cfg.D * sizeof *pooled);
    mae_ctx *ctx = NULL;
    CHECK_OK(mae_ctx_create(c->m, 1, &ctx));
    if (!ctx) exit(1);
    CHECK_OK(mae_classifier_forward(c, ctx, img, 1, logits));
    CHECK_OK(mae_classifier_features(c, ctx, img, 1, pooled));
    mae_ctx_free(ctx);
    mae_finetuner *f = finetuner(c, 1, 2, 0.0f);
    int32_t label = 3;
    CHECK_OK(mae_finetuner_forward_backward(f, img, 1, &label, NULL, &loss, z));
    CHECK(same(z, logits, sizeof z), "the finetuner's logits differ from the classifier's forward");
    ce_grad(z, label, 0.1, dz);
    int D = c->m->cfg.D, bad = 0, rounded = 0;
    const float *gw = NULL, *gb = NULL;
    CHECK_OK(mae_finetuner_grad(f, "head.weight", &gw, NULL));
    CHECK_OK(mae_finetuner_grad(f, "head.bias", &gb, NULL));
    for (int k = 0; k < FT_K && gw && gb; k++) {
        bad += gb[k] != dz[k];
        for (int d = 0; d < D; d++) {
            float want = (float)(ref_round(dz[k]) * ref_round(pooled[d]));   /* exact */
            bad += gw[(size_t)k * D + d] != want;
            rounded += want != dz[k] * pooled[d];
        }
    }
    CHECK(bad == 0, "%d head gradients are not the product of the bf16-rounded operands", bad);
    CHECK(rounded > FT_K * D / 2, "only %d of %d products change when rounded: the check sees nothing", rounded, FT_K * D);
    free(img); free(pooled);
    mae_finetuner_free(f);
    mae_classifier_free(c);
}

/* Every trained gradient of a finetuner, in one array (model layout, then the head block). */
static float *ft_grads(const mae_finetuner *f, size_t *n)
{
    size_t a = f->c->m->lay.total;
    *n = a + f->head_floats;
    float *g = tu_malloc(*n * sizeof *g);
    memcpy(g, f->grads, a * sizeof *g);
    memcpy(g + a, f->hgrad, f->head_floats * sizeof *g);
    return g;
}

/* The bf16 finetuner's gradients against the float32 finetuner's on the same weights (the bf16
 * classifier saved as F32 and loaded: its weights exactly), same images, labels and drop path
 * masks: the rounding of the operands moves them by about 2^-9 relative per product, far more
 * than float32 rounding (the same run twice is bitwise equal) and far less than the gradients. */
static void test_ft_vs_f32(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_mixed_c_%d.safetensors", (int)getpid());
    mae_classifier *c = bf16_classifier(111), *c32 = NULL;
    CHECK_OK(mae_classifier_save_as(c, path, "F32"));   /* save writes BF16 for bf16 */
    CHECK_OK(mae_classifier_load(path, 0, &c32));
    remove(path);
    if (!c32) exit(1);
    float *imgs = images(3, 17), lb, lf;
    int32_t labels[3] = { 0, 4, 2 };
    mae_finetuner *fb = finetuner(c, 3, 2, 0.2f), *ff = finetuner(c32, 3, 2, 0.2f);
    CHECK_OK(mae_finetuner_forward_backward(fb, imgs, 3, labels, NULL, &lb, NULL));
    CHECK_OK(mae_finetuner_forward_backward(ff, imgs, 3, labels, NULL, &lf, NULL));
    size_t nb, nf;
    float *gb = ft_grads(fb, &nb), *gf = ft_grads(ff, &nf);
    CHECK(nb == nf, "layouts differ: %zu and %zu floats", nb, nf);
    double d = tu_rel_l2(gb, gf, nb < nf ? nb : nf), dl = fabs((double)lb - lf) / fabs((double)lf);
    size_t hw = (size_t)2 * c->m->cfg.D, hn = (size_t)FT_K * c->m->cfg.D;   /* head.weight */
    double dh = tu_rel_l2(gb + c->m->lay.total + hw, gf + c32->m->lay.total + hw, hn);
    printf("  finetuner bf16 vs float32 (tiny, batch 3, drop path 0.2): gradients %.2e, head.weight %.2e, loss %.2e\n", d, dh, dl);
    CHECK(d > 1e-5 && d < 3e-2, "bf16 gradients are %.3g (relative L2) from float32's: want (1e-5, 3e-2)", d);
    CHECK(dl < 1e-2, "bf16 loss %.9g, float32 %.9g", (double)lb, (double)lf);
    free(gb); free(gf); free(imgs);
    mae_finetuner_free(fb); mae_finetuner_free(ff);
    mae_classifier_free(c); mae_classifier_free(c32);
}

typedef struct ft_out { float *grads, *params, loss[3]; size_t ng, np; } ft_out;

static ft_out ft_run(int threads)
{
    mae_classifier *c = bf16_classifier(121);
    mae_finetuner *f = finetuner(c, 3, threads, 0.2f);
    float *imgs = images(3, 27);
    int32_t labels[3] = { 1, 1, 4 };
    ft_out r;
    CHECK_OK(mae_finetuner_forward_backward(f, imgs, 3, labels, NULL, &r.loss[0], NULL));
    r.grads = ft_grads(f, &r.ng);
    for (int i = 1; i < 3; i++) {
        CHECK_OK(mae_finetuner_step(f));
        CHECK_OK(mae_finetuner_forward_backward(f, imgs, 3, labels, NULL, &r.loss[i], NULL));
    }
    CHECK_OK(mae_finetuner_step(f));
    r.np = c->m->lay.total + f->head_floats;
    r.params = tu_malloc(r.np * sizeof *r.params);
    memcpy(r.params, c->m->data, c->m->lay.total * sizeof *r.params);
    memcpy(r.params + c->m->lay.total, c->head, f->head_floats * sizeof *r.params);
    free(imgs);
    mae_finetuner_free(f);
    mae_classifier_free(c);
    return r;
}

static void test_ft_threads(void)
{
    ft_out one = ft_run(1);
    for (int n = 2; n <= 3; n++) {
        ft_out r = ft_run(n);
        CHECK(r.ng == one.ng && same(r.grads, one.grads, one.ng * sizeof(float)), "finetuner, %d threads: gradients differ", n);
        CHECK(same(r.loss, one.loss, sizeof r.loss), "finetuner, %d threads: losses differ", n);
        CHECK(r.np == one.np && same(r.params, one.params, one.np * sizeof(float)), "finetuner, %d threads: weights differ", n);
        free(r.grads); free(r.params);
    }
    free(one.grads); free(one.params);
}

/* 4 steps with a checkpoint after 2, against a fresh classifier of the same model resumed from
 * it (as mae finetune --resume: the classifier made again, then the checkpoint's masters). The
 * packs after the load must come from the exact masters, so the forward after the resume, and
 * everything after it, is bitwise the uninterrupted run's. */
static void test_ft_resume(void)
{
    char ckpt[64];
    snprintf(ckpt, sizeof ckpt, "/tmp/test_mixed_f_%d.safetensors", (int)getpid());
    float *imgs = images(2, 37), la[4], lb[4];
    int32_t labels[2] = { 2, 0 };
    mae_classifier *a = bf16_classifier(131), *b = bf16_classifier(131);
    mae_finetuner *fa = finetuner(a, 2, 2, 0.2f), *fb = finetuner(b, 2, 1, 0.0f);
    for (int i = 0; i < 4; i++) {
        CHECK_OK(mae_finetuner_forward_backward(fa, imgs, 2, labels, NULL, &la[i], NULL));
        CHECK_OK(mae_finetuner_step(fa));
        if (i == 1)
            CHECK_OK(mae_finetuner_save(fa, ckpt));
    }
    CHECK_OK(mae_finetuner_load(fb, ckpt));   /* its config too: drop path 0.2 */
    for (int i = 2; i < 4; i++) {
        CHECK_OK(mae_finetuner_forward_backward(fb, imgs, 2, labels, NULL, &lb[i], NULL));
        CHECK_OK(mae_finetuner_step(fb));
    }
    CHECK(same(&la[2], &lb[2], 2 * sizeof(float)), "resumed losses %.9g %.9g, uninterrupted %.9g %.9g",
          (double)lb[2], (double)lb[3], (double)la[2], (double)la[3]);
    CHECK(same(a->m->data, b->m->data, a->m->lay.total * sizeof(float)) &&
          same(a->head, b->head, fa->head_floats * sizeof(float)), "the resumed masters differ from the uninterrupted run's");
    CHECK(same(fa->m1, fb->m1, a->m->lay.total * sizeof(float)) && same(fa->m2, fb->m2, a->m->lay.total * sizeof(float)) &&
          same(fa->hm1, fb->hm1, fa->head_floats * sizeof(float)), "the resumed AdamW moments differ");
    remove(ckpt);
    free(imgs);
    mae_finetuner_free(fa); mae_finetuner_free(fb);
    mae_classifier_free(a); mae_classifier_free(b);
}

/* ---- checkpoints record the precision -------------------------------------------------------- */

/* The file as one written before the precision was recorded: key renamed (same length), and the
 * checksum key too (a file without it loads unchecked, as every older file). */
static void strip_key(const char *path, const char *key, const char *renamed)
{
    FILE *fp = fopen(path, "r+b");
    CHECK(fp != NULL, "cannot open %s", path);
    if (!fp) return;
    uint64_t hl = 0;
    unsigned char len8[8];
    CHECK(fread(len8, 1, 8, fp) == 8, "short file");
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | len8[i];
    char *h = tu_malloc((size_t)hl + 1);
    CHECK(fread(h, 1, (size_t)hl, fp) == hl, "short header");
    h[hl] = 0;
    const char *keys[2] = { key, "\"libmae.crc32c\"" }, *names[2] = { renamed, "\"libmae_crc32c\"" };
    for (int i = 0; i < 2; i++) {
        char *at = strstr(h, keys[i]);
        CHECK(at != NULL, "%s: no %s in the header", path, keys[i]);
        if (at)
            memcpy(at, names[i], strlen(names[i]));
    }
    fseek(fp, 8, SEEK_SET);
    fwrite(h, 1, (size_t)hl, fp);
    fclose(fp);
    free(h);
}

static void test_ckpt_precision(void)
{
    char pb[64], pf[64];
    snprintf(pb, sizeof pb, "/tmp/test_mixed_pb_%d.safetensors", (int)getpid());
    snprintf(pf, sizeof pf, "/tmp/test_mixed_pf_%d.safetensors", (int)getpid());
    /* the trainer */
    mae_config cfg = tiny_cfg();
    mae_model *mb = bf16_model(141), *mf = NULL;
    CHECK_OK(mae_model_create(&cfg, 141, &mf));
    if (!mf) exit(1);
    mae_trainer *tb = trainer(mb, 1, 1, 0), *tf = trainer(mf, 1, 1, 0);
    CHECK_OK(mae_trainer_save(tb, pb));
    CHECK_OK(mae_trainer_save(tf, pf));
    EXPECT(mae_trainer_load(tf, pb), MAE_ERR_INVALID_ARG);
    CHECK(strstr(mae_last_error(), "bf16") != NULL, "the message does not name bf16: %s", mae_last_error());
    EXPECT(mae_trainer_load(tb, pf), MAE_ERR_INVALID_ARG);
    CHECK_OK(mae_trainer_load(tb, pb));
    CHECK_OK(mae_trainer_load(tf, pf));
    strip_key(pf, "\"trainer.precision\"", "\"trainer_precision\"");
    CHECK_OK(mae_trainer_load(tf, pf));   /* an old file: a float32 run */
    EXPECT(mae_trainer_load(tb, pf), MAE_ERR_INVALID_ARG);
    mae_trainer_free(tb); mae_trainer_free(tf);
    mae_model_free(mb); mae_model_free(mf);
    /* the finetuner */
    mae_classifier *cb = bf16_classifier(151), *cf = NULL;
    mae_model *m32 = NULL;
    CHECK_OK(mae_model_create(&cfg, 151, &m32));
    if (!m32) exit(1);
    CHECK_OK(mae_classifier_create(m32, FT_K, 1, 1, &cf));
    mae_model_free(m32);
    if (!cf) exit(1);
    mae_finetuner *fb = finetuner(cb, 1, 1, 0.0f), *ff = finetuner(cf, 1, 1, 0.0f);
    CHECK_OK(mae_finetuner_save(fb, pb));
    CHECK_OK(mae_finetuner_save(ff, pf));
    EXPECT(mae_finetuner_load(ff, pb), MAE_ERR_INVALID_ARG);
    CHECK(strstr(mae_last_error(), "bf16") != NULL, "the message does not name bf16: %s", mae_last_error());
    EXPECT(mae_finetuner_load(fb, pf), MAE_ERR_INVALID_ARG);
    CHECK_OK(mae_finetuner_load(fb, pb));
    CHECK_OK(mae_finetuner_load(ff, pf));
    strip_key(pf, "\"finetune.precision\"", "\"finetune_precision\"");
    CHECK_OK(mae_finetuner_load(ff, pf));
    EXPECT(mae_finetuner_load(fb, pf), MAE_ERR_INVALID_ARG);
    remove(pb); remove(pf);
    mae_finetuner_free(fb); mae_finetuner_free(ff);
    mae_classifier_free(cb); mae_classifier_free(cf);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    uint64_t seed = (uint64_t)time(NULL);
    printf("seed %llu\n", (unsigned long long)seed);
    tu_seed(seed);
    TU_RUN("round", test_round());
    TU_RUN("products", test_products());
    TU_RUN("threads", test_threads());
    TU_RUN("resume", test_resume());
    TU_RUN("training", test_training());
    TU_RUN("vs_f32", test_vs_f32());
    TU_RUN("api", test_api());
    TU_RUN("ft_head", test_ft_head());
    TU_RUN("ft_vs_f32", test_ft_vs_f32());
    TU_RUN("ft_threads", test_ft_threads());
    TU_RUN("ft_resume", test_ft_resume());
    TU_RUN("ckpt_precision", test_ckpt_precision());
    return tu_finish("test_mixed");
}
