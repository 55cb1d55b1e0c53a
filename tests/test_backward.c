/* The backward pass against finite differences of an independent double-precision MAE written
 * here from the definitions (models_mae.py), on tiny models with random parameters: every
 * trainable tensor (a sample of its entries) and every input pixel. Also: the gradients are
 * bitwise the same for 1 and 2 threads, accumulate, and scale exactly with accum_iter. */
#include "testutil.h"
#include "../src/model/model.h"

/* ---- the reference: MAE in double ---------------------------------------------------------- */

typedef struct ref {
    const mae_model *m;      /* only for its config and tensor table */
    const double *w;         /* parameters, in the model's flat layout */
    int B;
    const double *imgs;
    const float *noise;
} ref;

static const double *tensor(const ref *r, const char *name)
{
    const mae_tensor *t = mae_model_find(r->m, name);
    if (!t) { fprintf(stderr, "no tensor %s\n", name); exit(2); }
    return r->w + t->offset;
}

static void layernorm(double *y, const double *x, const double *g, const double *b, int C, double eps)
{
    double mu = 0, var = 0;
    for (int c = 0; c < C; c++) mu += x[c];
    mu /= C;
    for (int c = 0; c < C; c++) var += (x[c] - mu) * (x[c] - mu);
    var /= C;
    for (int c = 0; c < C; c++) y[c] = (x[c] - mu) / sqrt(var + eps) * g[c] + b[c];
}

/* y[n] = b[n] + sum_k W[n,k] x[k] */
static void linear(double *y, const double *x, const double *W, const double *b, int N, int K)
{
    for (int n = 0; n < N; n++) {
        double s = b ? b[n] : 0.0;
        for (int k = 0; k < K; k++) s += W[(size_t)n * K + k] * x[k];
        y[n] = s;
    }
}

/* One pre-norm ViT block on x [T,C] in place. */
static void block(const ref *r, const char *prefix, int l, double *x, int T, int C, int H, int hidden)
{
    char nm[96];
#define W(s) (snprintf(nm, sizeof nm, "%s.%d.%s", prefix, l, s), tensor(r, nm))
    const double *ln1w = W("norm1.weight"), *ln1b = W("norm1.bias"), *qkvw = W("attn.qkv.weight"),
                 *qkvb = W("attn.qkv.bias"), *pw = W("attn.proj.weight"), *pb = W("attn.proj.bias"),
                 *ln2w = W("norm2.weight"), *ln2b = W("norm2.bias"), *f1w = W("mlp.fc1.weight"),
                 *f1b = W("mlp.fc1.bias"), *f2w = W("mlp.fc2.weight"), *f2b = W("mlp.fc2.bias");
#undef W
    double eps = r->m->cfg.eps;
    int hd = C / H;
    double *h = calloc((size_t)T * C, sizeof *h), *qkv = calloc((size_t)T * 3 * C, sizeof *qkv);
    double *att = calloc((size_t)T * C, sizeof *att), *tmp = calloc((size_t)(hidden > C ? hidden : C), sizeof *tmp);
    double *s = calloc((size_t)T, sizeof *s), *u = calloc((size_t)C, sizeof *u);
    for (int i = 0; i < T; i++) {
        layernorm(h + (size_t)i * C, x + (size_t)i * C, ln1w, ln1b, C, eps);
        linear(qkv + (size_t)i * 3 * C, h + (size_t)i * C, qkvw, qkvb, 3 * C, C);
    }
    for (int hh = 0; hh < H; hh++)
        for (int i = 0; i < T; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < T; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++)
                    d += qkv[(size_t)i * 3 * C + hh * hd + e] * qkv[(size_t)j * 3 * C + C + hh * hd + e];
                s[j] = d / sqrt((double)hd);
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j < T; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
            for (int e = 0; e < hd; e++) {
                double o = 0;
                for (int j = 0; j < T; j++) o += s[j] / sum * qkv[(size_t)j * 3 * C + 2 * C + hh * hd + e];
                att[(size_t)i * C + hh * hd + e] = o;
            }
        }
    for (int i = 0; i < T; i++) {
        double *xi = x + (size_t)i * C;
        linear(u, att + (size_t)i * C, pw, pb, C, C);
        for (int c = 0; c < C; c++) xi[c] += u[c];
        layernorm(h + (size_t)i * C, xi, ln2w, ln2b, C, eps);
        linear(tmp, h + (size_t)i * C, f1w, f1b, hidden, C);
        for (int k = 0; k < hidden; k++) tmp[k] = 0.5 * tmp[k] * (1.0 + erf(tmp[k] / sqrt(2.0)));
        for (int c = 0; c < C; c++) {
            double v = f2b[c];
            for (int k = 0; k < hidden; k++) v += f2w[(size_t)c * hidden + k] * tmp[k];
            xi[c] += v;
        }
    }
    free(h); free(qkv); free(att); free(tmp); free(s); free(u);
}

static double ref_loss(const ref *r)
{
    const mae_cfg *c = &r->m->cfg;
    int B = r->B, p = c->p, Cin = c->C, gw = c->gw, L = c->L, D = c->D, Dd = c->Dd, P = c->P;
    int Hi = c->gh * p, Wi = gw * p, keep = (int)((double)L * (1.0 - (double)c->mask_ratio));
    const double *pew = tensor(r, "patch_embed.proj.weight"), *peb = tensor(r, "patch_embed.proj.bias");
    const double *pos = tensor(r, "pos_embed"), *cls = tensor(r, "cls_token"), *mtok = tensor(r, "mask_token");
    const double *dpos = tensor(r, "decoder_pos_embed");
    double *tok = calloc((size_t)L * D, sizeof *tok), *x = calloc((size_t)(1 + L) * D, sizeof *x);
    double *lat = calloc((size_t)(1 + L) * D, sizeof *lat), *y = calloc((size_t)(1 + L) * Dd, sizeof *y);
    double *xd = calloc((size_t)(1 + L) * Dd, sizeof *xd), *nrm = calloc((size_t)Dd, sizeof *nrm);
    double *pred = calloc((size_t)P, sizeof *pred), *t = calloc((size_t)P, sizeof *t);
    int *ids = calloc((size_t)L, sizeof *ids), *restore = calloc((size_t)L, sizeof *restore);
    double num = 0, den = 0;
    for (int b = 0; b < B; b++) {
        const double *img = r->imgs + (size_t)b * Cin * Hi * Wi;
        /* patch embedding (conv weight in (c,u,v) order) + pos_embed[1:] */
        for (int l = 0; l < L; l++)
            for (int d = 0; d < D; d++) {
                double s = peb[d];
                for (int ch = 0; ch < Cin; ch++)
                    for (int u = 0; u < p; u++)
                        for (int v = 0; v < p; v++)
                            s += pew[(((size_t)d * Cin + ch) * p + u) * p + v] *
                                 img[((size_t)ch * Hi + (l / gw) * p + u) * Wi + (l % gw) * p + v];
                tok[(size_t)l * D + d] = s + pos[(size_t)(1 + l) * D + d];
            }
        /* masking: stable argsort of the noise by insertion */
        const float *nz = r->noise + (size_t)b * L;
        for (int i = 0; i < L; i++) {
            int j = i;
            while (j > 0 && nz[ids[j - 1]] > nz[i]) { ids[j] = ids[j - 1]; j--; }
            ids[j] = i;
        }
        for (int i = 0; i < L; i++) restore[ids[i]] = i;
        /* encoder */
        for (int d = 0; d < D; d++) x[d] = cls[d] + pos[d];
        for (int i = 0; i < keep; i++)
            memcpy(x + (size_t)(1 + i) * D, tok + (size_t)ids[i] * D, (size_t)D * sizeof *x);
        for (int l = 0; l < c->depth; l++)
            block(r, "blocks", l, x, 1 + keep, D, c->H, c->hidden);
        for (int i = 0; i <= keep; i++)
            layernorm(lat + (size_t)i * D, x + (size_t)i * D, tensor(r, "norm.weight"), tensor(r, "norm.bias"), D, c->eps);
        /* decoder */
        for (int i = 0; i <= keep; i++)
            linear(y + (size_t)i * Dd, lat + (size_t)i * D, tensor(r, "decoder_embed.weight"), tensor(r, "decoder_embed.bias"), Dd, D);
        for (int d = 0; d < Dd; d++) xd[d] = y[d] + dpos[d];
        for (int l = 0; l < L; l++) {
            const double *src = restore[l] < keep ? y + (size_t)(1 + restore[l]) * Dd : mtok;
            for (int d = 0; d < Dd; d++) xd[(size_t)(1 + l) * Dd + d] = src[d] + dpos[(size_t)(1 + l) * Dd + d];
        }
        for (int l = 0; l < c->ddepth; l++)
            block(r, "decoder_blocks", l, xd, 1 + L, Dd, c->dH, c->dhidden);
        /* head and loss on the removed patches */
        for (int l = 0; l < L; l++) {
            if (restore[l] < keep)
                continue;
            layernorm(nrm, xd + (size_t)(1 + l) * Dd, tensor(r, "decoder_norm.weight"), tensor(r, "decoder_norm.bias"), Dd, c->eps);
            linear(pred, nrm, tensor(r, "decoder_pred.weight"), tensor(r, "decoder_pred.bias"), P, Dd);
            for (int u = 0; u < p; u++)
                for (int v = 0; v < p; v++)
                    for (int ch = 0; ch < Cin; ch++)
                        t[(u * p + v) * Cin + ch] = img[((size_t)ch * Hi + (l / gw) * p + u) * Wi + (l % gw) * p + v];
            if (c->norm_pix) {
                double mu = 0, var = 0;
                for (int q = 0; q < P; q++) mu += t[q];
                mu /= P;
                for (int q = 0; q < P; q++) var += (t[q] - mu) * (t[q] - mu);
                var /= P - 1;
                for (int q = 0; q < P; q++) t[q] = (t[q] - mu) / sqrt(var + 1e-6);
            }
            double e = 0;
            for (int q = 0; q < P; q++) e += (pred[q] - t[q]) * (pred[q] - t[q]);
            num += e / P;
            den += 1;
        }
    }
    free(tok); free(x); free(lat); free(y); free(xd); free(nrm); free(pred); free(t); free(ids); free(restore);
    return num / den;
}

/* ---- the checks ----------------------------------------------------------------------------- */

typedef struct spec {
    const char *name;
    int img, p, C, D, depth, H, Dd, ddepth, dH;
    float mlp, ratio;
    int norm_pix, learned_pos, B;
} spec;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_pos(const char *name)
{
    return strcmp(name, "pos_embed") == 0 || strcmp(name, "decoder_pos_embed") == 0;
}

/* A model with every trainable value random (LayerNorm gains near 1, small biases), so that no
 * gradient is trivially zero or one. */
static mae_model *make_model(const spec *s)
{
    mae_config cfg;
    mae_config_init(&cfg, sizeof cfg, "tiny");
    cfg.img_size = s->img; cfg.patch_size = s->p; cfg.in_chans = s->C;
    cfg.embed_dim = s->D; cfg.depth = s->depth; cfg.num_heads = s->H;
    cfg.decoder_embed_dim = s->Dd; cfg.decoder_depth = s->ddepth; cfg.decoder_num_heads = s->dH;
    cfg.mlp_ratio = s->mlp; cfg.mask_ratio = s->ratio; cfg.norm_pix_loss = s->norm_pix;
    mae_model *m = NULL;
    CHECK_OK(mae_model_create(&cfg, 7, &m));
    if (!m) exit(1);
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i];
        float *w = m->data + t->offset;
        if (is_pos(t->name)) {
            if (s->learned_pos) tu_fill(w, t->count, -0.5, 0.5);
        } else if (t->ndim == 1 && ends_with(t->name, ".weight")) {
            tu_fill(w, t->count, 0.7, 1.3);
        } else if (ends_with(t->name, ".bias")) {
            tu_fill(w, t->count, -0.1, 0.1);
        } else if (strstr(t->name, "token")) {
            tu_fill(w, t->count, -0.5, 0.5);
        }
    }
    mae_model_repack(m);
    return m;
}

/* ||g - fd|| / ||fd|| (absolute when fd is zero) */
static double vec_err(const double *g, const double *fd, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(g[i])) return INFINITY;
        num += (g[i] - fd[i]) * (g[i] - fd[i]);
        den += fd[i] * fd[i];
    }
    return den > 1e-24 ? sqrt(num / den) : sqrt(num);
}

#define SAMPLES 20
#define H_FD 1e-5

static double central(ref *r, double *x)
{
    double keep = *x;
    *x = keep + H_FD;
    double up = ref_loss(r);
    *x = keep - H_FD;
    double down = ref_loss(r);
    *x = keep;
    return (up - down) / (2 * H_FD);
}

static void run_spec(const spec *s)
{
    mae_model *m = make_model(s);
    const mae_cfg *c = &m->cfg;
    int B = s->B, L = c->L;
    size_t nimg = (size_t)B * c->C * c->gh * c->p * c->gw * c->p, total = m->lay.total;
    float *imgs = tu_malloc(nimg * sizeof *imgs), *noise = tu_malloc((size_t)B * L * sizeof *noise);
    float *dimgs = tu_malloc(nimg * sizeof *dimgs), *dimgs2 = tu_malloc(nimg * sizeof *dimgs);
    float *g1 = tu_malloc(total * sizeof *g1);
    tu_fill(imgs, nimg, -1.0, 1.0);
    tu_fill(noise, (size_t)B * L, 0.0, 1.0);

    mae_trainer *t = NULL;
    CHECK_OK(mae_trainer_create(m, B, &t));
    if (!t) exit(1);
    float loss = NAN;
    tu_poison(dimgs, nimg);
    CHECK_OK(mae_trainer_forward_backward_input(t, imgs, B, noise, &loss, dimgs));
    float *grads = NULL;
    size_t count = 0;
    CHECK_OK(mae_trainer_grads(t, &grads, &count));
    CHECK(count == total, "grads count %zu != %zu", count, total);
    memcpy(g1, grads, total * sizeof *g1);

    /* the loss against the reference and against the inference pipeline */
    double *w = tu_malloc(total * sizeof *w), *xd = tu_malloc(nimg * sizeof *xd);
    for (size_t i = 0; i < total; i++) w[i] = m->data[i];
    for (size_t i = 0; i < nimg; i++) xd[i] = imgs[i];
    ref r = { m, w, B, xd, noise };
    double lref = ref_loss(&r);
    CHECK(fabs(loss - lref) <= 1e-5 * fabs(lref), "%s: loss %.9g vs reference %.9g", s->name, (double)loss, lref);
    mae_ctx *ctx = NULL;
    float lctx = NAN;
    CHECK_OK(mae_ctx_create(m, B, &ctx));
    CHECK_OK(mae_forward(ctx, imgs, B, noise, &lctx, NULL, NULL, NULL));
    CHECK(fabs(loss - lctx) <= 1e-6 * fabs(lctx), "%s: trainer loss %.9g vs mae_forward %.9g", s->name, (double)loss, (double)lctx);
    mae_ctx_free(ctx);

    /* every tensor: a sample of entries against central differences */
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *tn = &m->tensors[i];
        const float *g = NULL;
        size_t n = 0;
        mae_status st = mae_trainer_grad(t, tn->name, &g, &n);
        if (is_pos(tn->name) && !s->learned_pos) {
            CHECK(st == MAE_ERR_INVALID_ARG, "%s: frozen %s has a gradient", s->name, tn->name);
            int zero = 1;
            for (size_t j = 0; j < tn->count; j++) zero &= g1[tn->offset + j] == 0.0f;
            CHECK(zero, "%s: frozen %s: its gradient slot is not zero", s->name, tn->name);
            continue;
        }
        CHECK(st == MAE_OK && n == tn->count && g == grads + tn->offset, "%s: mae_trainer_grad(%s)", s->name, tn->name);
        double an[SAMPLES], fd[SAMPLES];
        int k = tn->count < SAMPLES ? (int)tn->count : SAMPLES;
        for (int j = 0; j < k; j++) {
            size_t idx = tn->count <= SAMPLES ? (size_t)j : (size_t)(tu_uniform() * tn->count);
            an[j] = g1[tn->offset + idx];
            fd[j] = central(&r, &w[tn->offset + idx]);
        }
        double e = vec_err(an, fd, k);
        CHECK(e <= 1e-4, "%s: %s gradient rel err %.3g vs finite differences", s->name, tn->name, e);
        if (e > worst) { worst = e; worst_name = tn->name; }
    }
    /* every input pixel */
    double *an = tu_malloc(nimg * sizeof *an), *fd = tu_malloc(nimg * sizeof *fd);
    for (size_t i = 0; i < nimg; i++) {
        an[i] = dimgs[i];
        fd[i] = central(&r, &xd[i]);
    }
    double ein = vec_err(an, fd, (int)nimg);
    CHECK(ein <= 1e-4, "%s: input gradient rel err %.3g", s->name, ein);

    /* bitwise the same for 1 and 2 threads */
    CHECK_OK(mae_trainer_zero_grad(t));
    CHECK_OK(mae_trainer_set_threads(t, 1));
    CHECK_OK(mae_trainer_forward_backward_input(t, imgs, B, noise, NULL, dimgs));
    float *g_1 = tu_malloc(total * sizeof *g_1);
    memcpy(g_1, grads, total * sizeof *g_1);
    CHECK_OK(mae_trainer_zero_grad(t));
    CHECK_OK(mae_trainer_set_threads(t, 2));
    CHECK_OK(mae_trainer_forward_backward_input(t, imgs, B, noise, NULL, dimgs2));
    CHECK(memcmp(g_1, grads, total * sizeof *g_1) == 0, "%s: gradients differ between 1 and 2 threads", s->name);
    CHECK(memcmp(dimgs, dimgs2, nimg * sizeof *dimgs) == 0, "%s: input gradients differ between 1 and 2 threads", s->name);
    CHECK(memcmp(g_1, g1, total * sizeof *g_1) == 0, "%s: gradients differ between runs", s->name);

    /* a second pass adds (twice, up to the rounding of sums that already accumulate inside one
     * pass), and accum_iter 2 halves (exactly: a power of two) */
    CHECK_OK(mae_trainer_forward_backward(t, imgs, B, noise, NULL));
    float *g2 = tu_malloc(total * sizeof *g2);
    for (size_t i = 0; i < total; i++) g2[i] = 2.0f * g1[i];
    double e2 = tu_rel_l2(grads, g2, total);
    CHECK(e2 <= 1e-6, "%s: two passes give %.3g away from twice the gradient", s->name, e2);
    free(g2);
    int zero = 1, half = 1;
    mae_train_config tc;
    CHECK_OK(mae_train_config_init(&tc, sizeof tc));
    tc.accum_iter = 2;
    CHECK_OK(mae_trainer_set_config(t, &tc));
    CHECK_OK(mae_trainer_zero_grad(t));
    for (size_t i = 0; i < total; i++) zero &= grads[i] == 0.0f;
    CHECK(zero, "%s: zero_grad left something", s->name);
    float loss2 = NAN;
    CHECK_OK(mae_trainer_forward_backward_input(t, imgs, B, noise, &loss2, dimgs2));
    for (size_t i = 0; i < total; i++) half &= grads[i] == 0.5f * g1[i];
    for (size_t i = 0; i < nimg; i++) half &= dimgs2[i] == 0.5f * dimgs[i];
    CHECK(half, "%s: accum_iter 2 does not halve the gradients", s->name);
    CHECK(loss2 == loss, "%s: the loss is scaled by accum_iter", s->name);

    printf("%s: loss %.6f (ref %.6f), worst parameter gradient rel err %.2e (%s), input %.2e\n",
           s->name, (double)loss, lref, worst, worst_name, ein);
    mae_trainer_free(t);
    mae_model_free(m);
    free(imgs); free(noise); free(dimgs); free(dimgs2); free(g1); free(g_1); free(w); free(xd); free(an); free(fd);
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(20240601);
    const spec specs[] = {
        /* 2 channels, learned position tables, 2 encoder and 2 decoder blocks, pixel loss */
        { "learned", 8, 2, 2, 16, 2, 2, 12, 2, 3, 2.0f, 0.5f, 0, 1, 2 },
        /* gray, fixed sin-cos tables (frozen), norm_pix_loss, odd patch */
        { "normpix", 12, 3, 1, 12, 1, 3, 8, 1, 2, 4.0f, 0.75f, 1, 0, 3 },
        /* keep = 0: the encoder sees the cls token only */
        { "keep0", 8, 2, 1, 8, 1, 2, 8, 1, 2, 2.0f, 0.95f, 1, 1, 2 },
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        TU_RUN(specs[i].name, run_spec(&specs[i]));
    return tu_finish("test_backward");
}
