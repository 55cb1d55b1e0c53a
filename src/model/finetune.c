/* Fine-tuning a classifier: models_vit.VisionTransformer's forward keeping every activation,
 * its backward (head, pooling norm, pooling, the blocks through mae_block_backward, the
 * embeddings), label-smoothing cross-entropy, and AdamW with util/lr_decay.param_groups_lrd's
 * groups. Nothing here allocates after the plan. */
#include <math.h>
#include <string.h>
#include "finetune.h"

/* ---- memory --------------------------------------------------------------------------------- */

typedef struct planner { unsigned char *base; size_t used; int overflow; } planner;

static void *take(planner *p, size_t a, size_t b, size_t elem)
{
    size_t n, bytes, at = (p->used + 63) & ~(size_t)63;
    if (at < p->used || !mae_mul_size(a, b, &n) || !mae_mul_size(n, elem, &bytes) ||
        !mae_add_size(at, bytes, &p->used)) {
        p->overflow = 1;
        return NULL;
    }
    return p->base ? p->base + at : NULL;
}

static void plan(mae_finetuner *f, planner *p)
{
    const mae_cfg *c = &f->c->m->cfg;
    size_t B = (size_t)f->max_batch, L = (size_t)c->L, T = 1 + L, D = (size_t)c->D;
    size_t BT = B * T, K = (size_t)f->c->classes, Kp = (size_t)c->C * c->p * c->p;
    f->patches = take(p, B * L, Kp, sizeof(float));
    f->tokens = take(p, B * L, D, sizeof(float));
    f->x = take(p, ((size_t)c->depth + 1) * BT, D, sizeof(float));
    f->pool_in = take(p, B, D, sizeof(float));
    f->pooled = take(p, B, D, sizeof(float));
    f->pmean = take(p, B, 1, sizeof(float));
    f->prstd = take(p, B, 1, sizeof(float));
    f->logits = take(p, B, K, sizeof(float));
    f->dlogits = take(p, B, K, sizeof(float));
    f->dpooled = take(p, B, D, sizeof(float));
    f->dpool_in = take(p, B, D, sizeof(float));
    f->dpatch = take(p, B * L, D, sizeof(float));
    f->keep = take(p, (size_t)c->depth * 2, B, sizeof(float));
    f->branch = take(p, BT, D, sizeof(float));
    f->blk = take(p, (size_t)c->depth, 1, sizeof(mae_block_acts));
    for (int l = 0; l < c->depth; l++) {
        mae_block_acts a;
        a.ln1 = take(p, BT, D, sizeof(float));
        a.ln1_mean = take(p, BT, 1, sizeof(float));
        a.ln1_rstd = take(p, BT, 1, sizeof(float));
        a.qkv = take(p, BT, 3 * D, sizeof(float));
        a.probs = take(p, B * (size_t)c->H * T, T, sizeof(float));
        a.atty = take(p, BT, D, sizeof(float));
        a.xmid = take(p, BT, D, sizeof(float));
        a.ln2 = take(p, BT, D, sizeof(float));
        a.ln2_mean = take(p, BT, 1, sizeof(float));
        a.ln2_rstd = take(p, BT, 1, sizeof(float));
        a.fch = take(p, BT, (size_t)c->hidden, sizeof(float));
        a.fch_gelu = take(p, BT, (size_t)c->hidden, sizeof(float));
        if (p->base)
            f->blk[l] = a;
    }
    f->tr.gb.dres = take(p, BT, D, sizeof(float));
    f->tr.gb.dc = take(p, BT, D, sizeof(float));
    f->tr.gb.dqkv = take(p, BT, 3 * D, sizeof(float));
    f->tr.gb.dh = take(p, BT, (size_t)c->hidden, sizeof(float));
    f->tr.eblk = f->blk;
    /* a bf16 classifier: the backward products' rounded operands (mixed.c) */
    f->tr.round_dy = f->tr.round_xw = NULL;
    if (f->c->m->precision == MAE_PRECISION_BF16) {
        size_t dy, xw;
        mae_mixed_finetune_sizes(c, B, K, &dy, &xw);
        f->tr.round_dy = take(p, dy, 1, sizeof(float));
        f->tr.round_xw = take(p, xw, 1, sizeof(float));
    }
}

mae_status mae_finetune_plan(mae_finetuner *f)
{
    planner p = { NULL, 0, 0 };
    plan(f, &p);
    if (p.overflow)
        return mae_fail(MAE_ERR_NOMEM, "finetuner: activations for max_batch %d overflow", f->max_batch);
    void *arena = mae_alloc(p.used);
    if (!arena)
        return mae_fail(MAE_ERR_NOMEM, "finetuner: cannot allocate %zu bytes of activations for max_batch %d",
                        p.used, f->max_batch);
    planner q = { arena, 0, 0 };
    plan(f, &q);
    mae_free(f->arena);
    f->arena = arena;
    return MAE_OK;
}

mae_status mae_finetune_set_scratch(mae_finetuner *f, int n)
{
    const mae_model *m = f->c->m;
    const mae_cfg *c = &m->cfg;
    size_t w = (size_t)c->D * 3, total;
    size_t dims[] = { (size_t)c->hidden, (size_t)c->C * c->p * c->p, (size_t)f->c->classes };
    for (int i = 0; i < 3; i++)
        w = dims[i] > w ? dims[i] : w;
    size_t a = m->k->scratch_floats(1 + c->L, (int)w), b = m->k->backward_scratch_floats(1 + c->L, (int)w);
    size_t per = a > b ? a : b;
    if (!mae_mul_size(per, (size_t)n, &total) || !mae_mul_size(total, sizeof(float), &total))
        return mae_fail(MAE_ERR_NOMEM, "finetuner: scratch size overflows");
    float *s = total ? mae_alloc(total) : NULL;
    if (total && !s)
        return mae_fail(MAE_ERR_NOMEM, "finetuner: cannot allocate %zu bytes of scratch", total);
    mae_free(f->tr.ex.scratch);
    f->tr.ex.scratch = s;
    f->tr.ex.scratch_per_thread = per;
    f->tr.ex.nthreads = n;
    return MAE_OK;
}

/* ---- parameter groups (util/lr_decay.param_groups_lrd) --------------------------------------- */

int mae_finetune_group(const mae_finetuner *f, int i, double *lr_scale, double *wd)
{
    const mae_model *m = f->c->m;
    int depth = m->cfg.depth, id, decay;
    if (i < m->n_tensors) {
        if (f->layer[i] < 0)
            return 0;
        const mae_tensor *t = &m->tensors[i];
        id = f->layer[i];
        decay = t->ndim > 1 && strcmp(t->name, "pos_embed") != 0 && strcmp(t->name, "cls_token") != 0;
    } else {
        int part = i - m->n_tensors;   /* fc_norm weight, bias, head weight, bias */
        if (part < 2 && !f->c->global_pool)
            return 0;
        id = depth + 1;
        decay = part == 2;
    }
    *lr_scale = pow(f->cfg.layer_decay, depth + 1 - id);
    *wd = decay ? f->cfg.weight_decay : 0.0;
    return 1;
}

/* ---- drop path (timm DropPath in Block, rates torch.linspace(0, drop_path, depth)) ------------ */

/* The masks of this call: for block l, branch j (attention, MLP), sample b, the scale
 * floor(keep_prob + u) / keep_prob, u from torch.rand(B) after torch.manual_seed(S). */
static void draw_masks(mae_finetuner *f, int B)
{
    int depth = f->c->m->cfg.depth;
    mae_rng r;
    mae_rng_seed(&r, f->seed + (uint64_t)f->step * (uint64_t)f->cfg.accum_iter + (uint64_t)f->micro);
    for (int l = 0; l < depth; l++) {
        /* torch.linspace(0, rate, depth)[l], in float as timm's dpr list */
        float p = depth > 1 ? (float)((double)f->cfg.drop_path * l / (depth - 1)) : 0.0f;
        float keep = 1.0f - p;
        for (int j = 0; j < 2; j++)   /* a block of rate 0 has no DropPath and draws nothing */
            for (int b = 0; b < B; b++)
                f->keep[((size_t)l * 2 + j) * B + b] = p == 0.0f ? 1.0f : floorf(keep + mae_rng_uniform(&r)) / keep;
    }
}

/* x_out = x_in + scale_b * branch, row by row of each sample. */
static void add_scaled(float *out, const float *x, const float *branch, const float *scale, int B, size_t per)
{
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < per; i++)
            out[(size_t)b * per + i] = x[(size_t)b * per + i] + scale[b] * branch[(size_t)b * per + i];
}

/* mae_block_forward with drop path on both branches (the branches computed apart from the
 * residual so that they can be scaled). */
static void block_forward_dp(mae_finetuner *f, int l, const float *x_in, float *x_out, int B, int T)
{
    const mae_model *m = f->c->m;
    const mae_cfg *c = &m->cfg;
    const mae_kernels *k = m->k;
    const mae_exec *ex = &f->tr.ex;
    mae_block_acts *a = &f->blk[l];
    int C = c->D, N = B * T;
    size_t per = (size_t)T * C;
    mae_block_w w;
    mae_block_view(&m->lay, m->data, 0, l, &w);
    const mae_block_pk *pk = &m->pk_blocks[l];
    k->layernorm(ex, a->ln1, a->ln1_mean, a->ln1_rstd, x_in, w.ln1_w, w.ln1_b, N, C, c->eps);
    k->linear(ex, a->qkv, a->ln1, pk->qkv, w.qkv_b, NULL, N, 3 * C, C, MAE_ACT_NONE);
    k->attention(ex, a->atty, a->probs, a->qkv, B, T, C, c->H);
    k->linear(ex, f->branch, a->atty, pk->proj, w.proj_b, NULL, N, C, C, MAE_ACT_NONE);
    add_scaled(a->xmid, x_in, f->branch, f->keep + (size_t)l * 2 * B, B, per);
    k->layernorm(ex, a->ln2, a->ln2_mean, a->ln2_rstd, a->xmid, w.ln2_w, w.ln2_b, N, C, c->eps);
    k->linear(ex, a->fch, a->ln2, pk->fc1, w.fc1_b, NULL, N, c->hidden, C, MAE_ACT_NONE);
    k->gelu(a->fch_gelu, a->fch, (size_t)N * c->hidden);
    k->linear(ex, f->branch, a->fch_gelu, pk->fc2, w.fc2_b, NULL, N, C, c->hidden, MAE_ACT_NONE);
    add_scaled(x_out, a->xmid, f->branch, f->keep + ((size_t)l * 2 + 1) * B, B, per);
}

/* The two products of a linear's backward: dx = dy·W (written, if dx), dW += dyᵀ·x (if dw); for
 * a bf16 classifier on bf16-rounded operands, as the pretraining trainer (mixed.c). */
static void linear_products(mae_finetuner *f, float *dx, float *dw, const float *dy, const float *x,
                            const float *w, int N, int in, int out)
{
    const mae_kernels *k = f->c->m->k;
    if (f->tr.round_dy) {
        mae_mixed_linear_products(&f->tr, dx, dw, dy, x, w, N, in, out);
        return;
    }
    if (dx)
        k->matmul_nn(&f->tr.ex, dx, dy, w, N, in, out, 0);
    if (dw)
        k->matmul_tn(&f->tr.ex, dw, dy, x, out, in, N, 1);
}

/* y[N,out] = x·Wᵀ + b: dx = dy·W (written), dW += dyᵀ·x, db += colsum(dy). */
static void linear_bw(mae_finetuner *f, float *dx, float *dw, float *db, const float *dy,
                      const float *x, const float *w, int N, int in, int out)
{
    linear_products(f, dx, dw, dy, x, w, N, in, out);
    f->c->m->k->bias_backward(&f->tr.ex, db, dy, N, out);
}

/* block_backward (backward.c) with each branch's gradient scaled by its drop path mask; the
 * residual path passes dres through unscaled. */
static void block_backward_dp(mae_finetuner *f, int l, const float *x_in, int B, int T)
{
    const mae_model *m = f->c->m;
    const mae_cfg *c = &m->cfg;
    const mae_kernels *k = m->k;
    const mae_exec *ex = &f->tr.ex;
    const mae_block_acts *a = &f->blk[l];
    int C = c->D, N = B * T, hidden = c->hidden;
    size_t per = (size_t)T * C;
    mae_block_w w, g;
    mae_block_view(&m->lay, m->data, 0, l, &w);
    mae_block_view(&m->lay, f->grads, 0, l, &g);
    float *dres = f->tr.gb.dres, *dc = f->tr.gb.dc, *dh = f->tr.gb.dh, *dqkv = f->tr.gb.dqkv, *dy = f->branch;
    const float *s1 = f->keep + (size_t)l * 2 * B, *s2 = s1 + B;
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < per; i++)
            dy[(size_t)b * per + i] = s2[b] * dres[(size_t)b * per + i];
    linear_bw(f, dh, g.fc2_w, g.fc2_b, dy, a->fch_gelu, w.fc2_w, N, hidden, C);
    k->gelu_backward(ex, dh, a->fch, dh, (size_t)N * hidden);
    linear_bw(f, dc, g.fc1_w, g.fc1_b, dh, a->ln2, w.fc1_w, N, C, hidden);
    k->layernorm_backward(ex, dres, g.ln2_w, g.ln2_b, dc, a->xmid, a->ln2_mean, a->ln2_rstd, w.ln2_w, N, C);
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < per; i++)
            dy[(size_t)b * per + i] = s1[b] * dres[(size_t)b * per + i];
    linear_bw(f, dc, g.proj_w, g.proj_b, dy, a->atty, w.proj_w, N, C, C);
    k->attention_backward(ex, dqkv, dc, a->qkv, a->probs, B, T, C, c->H);
    linear_products(f, dc, g.qkv_w, dqkv, a->ln1, w.qkv_w, N, C, 3 * C);
    for (int r = 0; r < N; r++)   /* the key bias's gradient is exactly zero (see backward.c) */
        memset(dqkv + (size_t)r * 3 * C + C, 0, (size_t)C * sizeof *dqkv);
    k->bias_backward(ex, g.qkv_b, dqkv, N, 3 * C);
    k->layernorm_backward(ex, dres, g.ln1_w, g.ln1_b, dc, x_in, a->ln1_mean, a->ln1_rstd, w.ln1_w, N, C);
}

/* ---- forward and backward ------------------------------------------------------------------- */

/* Cross-entropy against target rows q (labels smoothed, or the caller's soft targets): the mean
 * over the batch, and dlogits = (softmax - q) * scale. */
static double cross_entropy(mae_finetuner *f, int B, const int32_t *labels, const float *targets, double scale)
{
    int K = f->c->classes;
    double s = f->cfg.smoothing, total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *z = f->logits + (size_t)b * K;
        float *dz = f->dlogits + (size_t)b * K;
        double mx = -INFINITY, sum = 0.0;
        for (int k = 0; k < K; k++)
            mx = z[k] > mx ? z[k] : mx;
        for (int k = 0; k < K; k++)
            sum += exp((double)z[k] - mx);
        double lse = mx + log(sum);
        for (int k = 0; k < K; k++) {
            double q = targets ? targets[(size_t)b * K + k] : s / K + (k == labels[b] ? 1.0 - s : 0.0);
            total += q * (lse - z[k]);
            dz[k] = (float)((exp((double)z[k] - lse) - q) * scale);
        }
    }
    return total / B;
}

/* The host's hooks are checked before each block of the forward pass and before the backward
 * pass (progress: done = blocks run of depth + 1); until the backward pass starts nothing but
 * activations and *loss has changed, so a cancelled call leaves the finetuner as it was. */
mae_status mae_finetune_run(mae_finetuner *f, const float *imgs, int B, const int32_t *labels,
                            const float *targets, float *loss)
{
    mae_classifier *cl = f->c;
    const mae_model *m = cl->m;
    const mae_cfg *c = &m->cfg;
    const mae_kernels *k = m->k;
    const mae_exec *ex = &f->tr.ex;
    int D = c->D, L = c->L, T = 1 + L, K = cl->classes, Kp = c->C * c->p * c->p;
    size_t stride = (size_t)B * T * D;

    /* forward: models_vit.VisionTransformer with every activation kept */
    mae_patch_embed_run(m, ex, imgs, B, f->patches, f->tokens);
    for (int b = 0; b < B; b++) {
        float *xb = f->x + (size_t)b * T * D;
        k->add(xb, m->w.cls, m->w.pos, (size_t)D);
        memcpy(xb + D, f->tokens + (size_t)b * L * D, (size_t)L * D * sizeof *xb);
    }
    int drop = f->cfg.drop_path > 0.0f;
    if (drop)
        draw_masks(f, B);
    mae_hooks *hk = mae_hooks_active(&f->tr.hooks);
    if (hk) {
        hk->done = 0;
        hk->total = c->depth + 1;
    }
    for (int l = 0; l < c->depth; l++) {
        if (hk && mae_hooks_stop(hk))
            return mae_fail(MAE_ERR_ABORTED, "cancelled by the host's callback before block %d", l);
        if (hk)
            hk->done++;
        if (drop)
            block_forward_dp(f, l, f->x + l * stride, f->x + (l + 1) * stride, B, T);
        else
            mae_block_forward(m, ex, 0, l, &f->blk[l], f->x + l * stride, f->x + (l + 1) * stride, B, T);
    }
    const float *last = f->x + c->depth * stride;
    mae_classifier_pool(cl, ex, last, B, f->pool_in, f->pooled, f->pmean, f->prstd);
    k->linear(ex, f->logits, f->pooled, cl->head_pk ? cl->head_pk : cl->head_w, cl->head_b, NULL, B, K, D,
              MAE_ACT_NONE);
    double l = cross_entropy(f, B, labels, targets, 1.0 / ((double)B * f->cfg.accum_iter));
    if (loss)
        *loss = (float)l;
    if (hk && mae_hooks_stop(hk))
        return mae_fail(MAE_ERR_ABORTED, "cancelled by the host's callback before the backward pass");
    f->micro++;   /* the next micro-batch draws other drop path masks */

    /* head: logits = pooled . Wᵀ + b */
    float *hg_w = f->hgrad + 2 * (size_t)D, *hg_b = hg_w + (size_t)K * D;
    linear_bw(f, f->dpooled, hg_w, hg_b, f->dlogits, f->pooled, cl->head_w, B, D, K);
    /* the pooling norm: fc_norm (global pool) or norm (cls token) */
    memset(f->dpool_in, 0, (size_t)B * D * sizeof *f->dpool_in);
    if (cl->global_pool)
        k->layernorm_backward(ex, f->dpool_in, f->hgrad, f->hgrad + D, f->dpooled, f->pool_in, f->pmean, f->prstd,
                              cl->fc_norm_w, B, D);
    else
        k->layernorm_backward(ex, f->dpool_in, f->g.norm_w, f->g.norm_b, f->dpooled, f->pool_in, f->pmean, f->prstd,
                              m->w.norm_w, B, D);
    /* the pooling: the mean of the patch rows (each gets 1/L), or the cls row */
    float *dres = f->tr.gb.dres;
    memset(dres, 0, stride * sizeof *dres);
    for (int b = 0; b < B; b++) {
        const float *dp = f->dpool_in + (size_t)b * D;
        float *db = dres + (size_t)b * T * D;
        if (!cl->global_pool) {
            memcpy(db, dp, (size_t)D * sizeof *db);
            continue;
        }
        for (int t = 1; t < T; t++)
            for (int d = 0; d < D; d++)
                db[(size_t)t * D + d] = dp[d] / (float)L;
    }
    for (int l2 = c->depth - 1; l2 >= 0; l2--) {
        if (drop)
            block_backward_dp(f, l2, f->x + l2 * stride, B, T);
        else
            mae_block_backward(&f->tr, 0, l2, f->x + l2 * stride, B, T);
    }
    /* x = cat(cls + pos[0], patch_embed(imgs) + pos[1:]): pos_embed is trained */
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) {
            double s = 0.0;
            for (int b = 0; b < B; b++)
                s += dres[((size_t)b * T + t) * D + d];
            f->g.pos[(size_t)t * D + d] += (float)s;
            if (t == 0)
                f->g.cls[d] += (float)s;
        }
    for (int b = 0; b < B; b++)
        memcpy(f->dpatch + (size_t)b * L * D, dres + ((size_t)b * T + 1) * D, (size_t)L * D * sizeof *dres);
    linear_bw(f, NULL, f->g.pe_w, f->g.pe_b, f->dpatch, f->patches, NULL, B * L, Kp, D);
    if (hk && hk->progress)
        (void)hk->progress(hk->progress_user, hk->total, hk->total);   /* done; too late to cancel */
    return MAE_OK;
}

/* ---- the optimizer -------------------------------------------------------------------------- */

/* Tensor i's parameters, gradient and moments (model tensors, then the head block's parts). */
static size_t slot(const mae_finetuner *f, int i, float **w, float **g, float **a, float **v)
{
    const mae_model *m = f->c->m;
    if (i < m->n_tensors) {
        size_t o = m->tensors[i].offset;
        *w = m->data + o, *g = f->grads + o, *a = f->m1 + o, *v = f->m2 + o;
        return m->tensors[i].count;
    }
    size_t D = (size_t)m->cfg.D, K = (size_t)f->c->classes;
    size_t offs[4] = { 0, D, 2 * D, 2 * D + K * D }, counts[4] = { D, D, K * D, K };
    int part = i - m->n_tensors;
    *w = f->c->head + offs[part], *g = f->hgrad + offs[part], *a = f->hm1 + offs[part], *v = f->hm2 + offs[part];
    return counts[part];
}

double mae_finetune_grad_norm(const mae_finetuner *f)
{
    double s = 0.0, scale, wd;
    for (int i = 0; i < f->c->m->n_tensors + 4; i++) {
        float *w, *g, *a, *v;
        if (!mae_finetune_group(f, i, &scale, &wd))
            continue;
        size_t n = slot(f, i, &w, &g, &a, &v);
        for (size_t j = 0; j < n; j++)
            s += (double)g[j] * g[j];
    }
    return sqrt(s);
}

typedef struct adamw_job { mae_finetuner *f; double lr, grad_mul; } adamw_job;

/* One tensor per task: element-wise, so the split cannot change a bit. */
static void adamw_task(void *arg, int i, int thread)
{
    const adamw_job *j = arg;
    mae_finetuner *f = j->f;
    const mae_finetune_config *c = &f->cfg;
    double scale, wd, n = (double)(f->step + 1);
    float *w, *g, *a, *v;
    (void)thread;
    if (!mae_finetune_group(f, i, &scale, &wd))
        return;
    size_t cnt = slot(f, i, &w, &g, &a, &v);
    double lr = j->lr * scale;
    mae_adamw_hp h = { j->grad_mul, 1.0 - c->beta1, c->beta2, 1.0 - c->beta2, 1.0 - lr * wd,
                       lr / (1.0 - pow(c->beta1, n)), sqrt(1.0 - pow(c->beta2, n)), c->eps };
    f->c->m->k->adamw(w, a, v, g, cnt, &h);
}

void mae_finetune_adamw(mae_finetuner *f, double lr, double grad_mul)
{
    adamw_job j = { f, lr, grad_mul };
    mae_parallel_for(&f->tr.ex, f->c->m->n_tensors + 4, adamw_task, &j);
}
