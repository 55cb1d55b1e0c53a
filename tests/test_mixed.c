/* Mixed-precision training of a bf16 model (src/model/mixed.c, docs/PRECISION.md):
 *  - the backward products against a double-precision sum of the same bf16-rounded operands
 *    (rounded here by an independent nearest-even rule), within the float32 sum's bound;
 *  - gradients and steps bitwise equal for 1, 2 and 3 threads;
 *  - resume from a checkpoint (the CLI's path: load the file, make it bf16, create, load) is
 *    bitwise an uninterrupted run;
 *  - the bf16 packs follow the master weights after each step; the loss falls on one batch;
 *  - the gradients against the float32 trainer's on the same weights (measured, printed);
 *  - the API: a bf16 model with live contexts refuses, it stays bf16, its tensors are the masters.
 * The gradients against PyTorch float64 autograd: tests/check_mixed.sh. */
#include <time.h>
#include <unistd.h>
#include "testutil.h"
#include "../src/model/model.h"

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
    return tu_finish("test_mixed");
}
