/* The MAE backward pass, one function per op in reverse order of forward.c (llm.c style).
 * Parameter gradients accumulate (+=) into the trainer's gradient buffer; the gradient of the
 * residual stream lives in gb.dres and each branch adds into it. Every product goes through the
 * model's kernel table. Nothing here allocates. */
#include <math.h>
#include <string.h>
#include "model.h"

/* ---- the loss ------------------------------------------------------------------------------- */

/* loss = sum_{b,l} mask * mean_q (pred - target)^2 / sum mask, so
 * d(loss)/d(pred) = 2 (pred - target) * mask / (P * sum mask). */
void mae_loss_backward(const mae_model *m, float *dpred, const float *pred, const float *target,
                       const float *mask, int B, double scale)
{
    size_t BL = (size_t)B * m->cfg.L, P = (size_t)m->cfg.P;
    double den = 0.0;
    for (size_t r = 0; r < BL; r++)
        den += mask[r];
    double k = 2.0 * scale / ((double)P * den);
    for (size_t r = 0; r < BL; r++)
        m->k->loss_grad(dpred + r * P, pred + r * P, target + r * P, mask[r] * k, P);
}

/* ---- linear --------------------------------------------------------------------------------- */

/* The two products of a linear's backward: dx = dy·W (written, if dx), dW += dyᵀ·x (if dw); for
 * a bf16 model with bf16-rounded operands (mixed.c). */
static void linear_products(mae_trainer *t, float *dx, float *dw, const float *dy, const float *x,
                            const float *w, int N, int in, int out)
{
    const mae_kernels *k = t->m->k;
    if (t->round_dy) {
        mae_mixed_linear_products(t, dx, dw, dy, x, w, N, in, out);
        return;
    }
    if (dx)
        k->matmul_nn(&t->ex, dx, dy, w, N, in, out, 0);
    if (dw)
        k->matmul_tn(&t->ex, dw, dy, x, out, in, N, 1);
}

/* y[N,out] = x[N,in]·Wᵀ + b:  dx = dy·W (written, if dx), dW += dyᵀ·x, db += colsum(dy). */
static void linear_backward(mae_trainer *t, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, int N, int in, int out)
{
    if (N == 0)
        return;
    linear_products(t, dx, dw, dy, x, w, N, in, out);
    t->m->k->bias_backward(&t->ex, db, dy, N, out);
}

/* ---- one block ------------------------------------------------------------------------------ */

/* On entry dres = d(loss)/d(x_out); on return dres = d(loss)/d(x_in). */
static void block_backward(mae_trainer *t, int decoder, int layer, const float *x_in, int B, int T)
{
    const mae_model *m = t->m;
    const mae_cfg *c = &m->cfg;
    const mae_kernels *k = m->k;
    const mae_exec *ex = &t->ex;
    const mae_block_acts *a = decoder ? &t->dblk[layer] : &t->eblk[layer];
    int C = decoder ? c->Dd : c->D, H = decoder ? c->dH : c->H;
    int hidden = decoder ? c->dhidden : c->hidden, N = B * T;
    mae_block_w w, g;
    mae_block_view(&m->lay, m->data, decoder, layer, &w);
    mae_block_view(&m->lay, t->grads, decoder, layer, &g);
    float *dres = t->gb.dres, *dc = t->gb.dc, *dh = t->gb.dh, *dqkv = t->gb.dqkv;

    /* x_out = xmid + fc2(GELU(fc1(LN2(xmid)))) */
    linear_backward(t, dh, g.fc2_w, g.fc2_b, dres, a->fch_gelu, w.fc2_w, N, hidden, C);
    k->gelu_backward(ex, dh, a->fch, dh, (size_t)N * hidden);
    linear_backward(t, dc, g.fc1_w, g.fc1_b, dh, a->ln2, w.fc1_w, N, C, hidden);
    k->layernorm_backward(ex, dres, g.ln2_w, g.ln2_b, dc, a->xmid, a->ln2_mean, a->ln2_rstd,
                          w.ln2_w, N, C);
    /* xmid = x_in + proj(attn(LN1(x_in))) */
    linear_backward(t, dc, g.proj_w, g.proj_b, dres, a->atty, w.proj_w, N, C, C);
    k->attention_backward(ex, dqkv, dc, a->qkv, a->probs, B, T, C, H);
    linear_products(t, dc, g.qkv_w, dqkv, a->ln1, w.qkv_w, N, C, 3 * C);
    /* The key bias adds q·b_k to every score of a query's row, which the softmax ignores: its
     * gradient is exactly zero. Summing the float key gradients would leave rounding noise
     * (~1e-9) that AdamW, dividing by sqrt(v), turns into steps of size lr; so it adds nothing. */
    for (int r = 0; r < N; r++)
        memset(dqkv + (size_t)r * 3 * C + C, 0, (size_t)C * sizeof *dqkv);
    if (c->qkv_bias)   /* without one (qkv_bias 0) the slot is no tensor and stays zero */
        k->bias_backward(ex, g.qkv_b, dqkv, N, 3 * C);
    k->layernorm_backward(ex, dres, g.ln1_w, g.ln1_b, dc, x_in, a->ln1_mean, a->ln1_rstd,
                          w.ln1_w, N, C);
}

/* Blocks depth-1 .. 0 of one stack; dres holds d(last stream) on entry, d(stream 0) on return. */
static void stack_backward(mae_trainer *t, int decoder, const mae_stack_acts *s, int depth,
                           int B, int T, int C)
{
    size_t stride = (size_t)B * T * C;
    for (int l = depth - 1; l >= 0; l--)
        block_backward(t, decoder, l, s->x + (size_t)l * stride, B, T);
}

/* ---- the decoder ---------------------------------------------------------------------------- */

void mae_decoder_backward(mae_trainer *t, int B, int keep)
{
    const mae_model *m = t->m;
    const mae_cfg *c = &m->cfg;
    const mae_kernels *k = m->k;
    const mae_exec *ex = &t->ex;
    int D = c->D, Dd = c->Dd, L = c->L, T = 1 + L, Tk = 1 + keep;
    float *dres = t->gb.dres, *dc = t->gb.dc;

    /* pred = decoder_pred(dnorm) */
    linear_backward(t, dc, t->g.pred_w, t->g.pred_b, t->dpred, t->dnorm, m->w.pred_w,
                    B * L, Dd, c->P);
    /* dnorm = decoder_norm(x[:, 1:]); the cls row's output was dropped: its gradient is 0 */
    memset(dres, 0, (size_t)B * T * Dd * sizeof *dres);
    const float *last = t->dec.x + (size_t)c->ddepth * B * T * Dd;
    for (int b = 0; b < B; b++)
        k->layernorm_backward(ex, dres + ((size_t)b * T + 1) * Dd, t->g.dnorm_w, t->g.dnorm_b,
                              dc + (size_t)b * L * Dd, last + ((size_t)b * T + 1) * Dd,
                              t->dec_mean + (size_t)b * L, t->dec_rstd + (size_t)b * L,
                              m->w.dnorm_w, L, Dd);
    stack_backward(t, 1, &t->dec, c->ddepth, B, T, Dd);

    /* Unshuffle: position l held demb row 1 + r (r = ids_restore < keep) or the mask token.
     * Each kept row appears exactly once, so it is assigned. */
    float *ddemb = t->gb.dqkv;   /* [B,Tk,Dd]; dqkv is free until the encoder's blocks */
    for (int b = 0; b < B; b++) {
        const float *db = dres + (size_t)b * T * Dd;
        float *de = ddemb + (size_t)b * Tk * Dd;
        memcpy(de, db, (size_t)Dd * sizeof *de);
        for (int l = 0; l < L; l++) {
            int r = t->ids_restore[(size_t)b * L + l];
            if (r < keep)
                memcpy(de + (size_t)(1 + r) * Dd, db + (size_t)(1 + l) * Dd, (size_t)Dd * sizeof *de);
        }
    }
    /* x = unshuffled + decoder_pos_embed: a learned table gets the sum over the batch */
    if (t->train_dpos)
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < (size_t)T * Dd; i++)
                t->g.dpos[i] += dres[(size_t)b * T * Dd + i];
    /* the shared mask token: the sum over every position it filled */
    for (int d = 0; d < Dd; d++) {
        double s = 0.0;
        for (int b = 0; b < B; b++)
            for (int l = 0; l < L; l++)
                if (t->ids_restore[(size_t)b * L + l] >= keep)
                    s += dres[((size_t)b * T + 1 + l) * Dd + d];
        t->g.mask_tok[d] += (float)s;
    }

    /* demb = decoder_embed(latent) -> d(latent) in dc */
    linear_backward(t, dc, t->g.demb_w, t->g.demb_b, ddemb, t->latent, m->w.demb_w,
                    B * Tk, D, Dd);
}

/* ---- the encoder ---------------------------------------------------------------------------- */

void mae_encoder_backward(mae_trainer *t, int B, int keep)
{
    const mae_model *m = t->m;
    const mae_cfg *c = &m->cfg;
    const mae_kernels *k = m->k;
    const mae_exec *ex = &t->ex;
    int D = c->D, L = c->L, T = 1 + keep, K = c->C * c->p * c->p;
    float *dres = t->gb.dres, *dc = t->gb.dc;

    /* latent = norm(x_last) */
    memset(dres, 0, (size_t)B * T * D * sizeof *dres);
    const float *last = t->enc.x + (size_t)c->depth * B * T * D;
    k->layernorm_backward(ex, dres, t->g.norm_w, t->g.norm_b, dc, last, t->enc_mean, t->enc_rstd,
                          m->w.norm_w, B * T, D);
    stack_backward(t, 0, &t->enc, c->depth, B, T, D);

    /* x[:, 0] = cls_token + pos_embed[0] */
    for (int d = 0; d < D; d++) {
        double s = 0.0;
        for (int b = 0; b < B; b++)
            s += dres[(size_t)b * T * D + d];
        t->g.cls[d] += (float)s;
        if (t->train_pos)
            t->g.pos[d] += (float)s;
    }
    /* tokens = patch_embed(imgs) + pos_embed[1:], then the kept ones gathered: a learned table
     * gets each kept token's gradient at its image position */
    if (t->train_pos)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < keep; i++) {
                int src = t->ids_shuffle[(size_t)b * L + i];
                float *gp = t->g.pos + (size_t)(1 + src) * D;
                const float *dr = dres + ((size_t)b * T + 1 + i) * D;
                for (int d = 0; d < D; d++)
                    gp[d] += dr[d];
            }
    if (keep == 0)
        return;
    /* x[:, 1 + i] = tokens[ids_shuffle[i]]: gather the kept rows' gradient and their patches,
     * then the patch embedding (a linear on the (c,u,v) patch vectors). */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < keep; i++) {
            size_t row = (size_t)b * keep + i;
            int src = t->ids_shuffle[(size_t)b * L + i];
            memcpy(dc + row * D, dres + ((size_t)b * T + 1 + i) * D, (size_t)D * sizeof *dc);
            memcpy(t->pkept + row * K, t->patches + ((size_t)b * L + src) * K, (size_t)K * sizeof *dc);
        }
    linear_backward(t, NULL, t->g.pe_w, t->g.pe_b, dc, t->pkept, m->w.pe_w, B * keep, K, D);
}

/* ---- the input images ----------------------------------------------------------------------- */

/* Adds the target's contribution for one removed patch: d(loss)/d(target) = -d(loss)/d(pred),
 * through the per-patch normalization when norm_pix_loss is on:
 * t = (x - mean) / s, s = sqrt(var_unbiased + 1e-6)  =>
 * dx = (g - mean(g) - t * sum(g t) / (P - 1)) / s. */
static void target_backward(const mae_cfg *c, const float *imgs, const float *dpred,
                            const float *target, int b, int l, float *dimgs)
{
    int p = c->p, C = c->C, gw = c->gw, H = c->gh * p, W = gw * p, P = c->P;
    int i = l / gw, j = l % gw;
    double mean_g = 0.0, gt = 0.0, inv = 1.0;
    if (c->norm_pix) {
        double mean = 0.0, var = 0.0;
        for (int u = 0; u < p; u++)
            for (int v = 0; v < p; v++)
                for (int ch = 0; ch < C; ch++)
                    mean += imgs[(((size_t)b * C + ch) * H + (size_t)i * p + u) * W + (size_t)j * p + v];
        mean /= P;
        for (int u = 0; u < p; u++)
            for (int v = 0; v < p; v++)
                for (int ch = 0; ch < C; ch++) {
                    double x = imgs[(((size_t)b * C + ch) * H + (size_t)i * p + u) * W + (size_t)j * p + v];
                    var += (x - mean) * (x - mean);
                }
        inv = 1.0 / sqrt(var / (P - 1) + 1e-6);
        for (int q = 0; q < P; q++) {
            mean_g -= dpred[q];
            gt -= (double)dpred[q] * target[q];
        }
        mean_g /= P;
        gt /= P - 1;
    }
    for (int u = 0; u < p; u++)
        for (int v = 0; v < p; v++)
            for (int ch = 0; ch < C; ch++) {
                int q = (u * p + v) * C + ch;
                double g = -(double)dpred[q];
                if (c->norm_pix)
                    g = (g - mean_g - target[q] * gt) * inv;
                dimgs[(((size_t)b * C + ch) * H + (size_t)i * p + u) * W + (size_t)j * p + v] += (float)g;
            }
}

void mae_input_backward(mae_trainer *t, const float *imgs, int B, int keep, float *dimgs)
{
    const mae_model *m = t->m;
    const mae_cfg *c = &m->cfg;
    int p = c->p, C = c->C, gw = c->gw, L = c->L, H = c->gh * p, W = gw * p;
    int K = C * p * p;
    memset(dimgs, 0, (size_t)B * C * H * W * sizeof *dimgs);
    /* through the patch embedding: the kept patches' gradient, written back in (c,u,v) order */
    if (keep > 0) {
        linear_products(t, t->dpkept, NULL, t->gb.dc, NULL, m->w.pe_w, B * keep, K, c->D);
        for (int b = 0; b < B; b++)
            for (int n = 0; n < keep; n++) {
                int l = t->ids_shuffle[(size_t)b * L + n], i = l / gw, j = l % gw;
                const float *src = t->dpkept + ((size_t)b * keep + n) * K;
                for (int ch = 0; ch < C; ch++)
                    for (int u = 0; u < p; u++)
                        for (int v = 0; v < p; v++)
                            dimgs[(((size_t)b * C + ch) * H + (size_t)i * p + u) * W + (size_t)j * p + v] +=
                                src[((size_t)ch * p + u) * p + v];
            }
    }
    /* through the loss target, for the removed patches */
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++)
            if (t->mask[(size_t)b * L + l] != 0.0f)
                target_backward(c, imgs, t->dpred + ((size_t)b * L + l) * c->P,
                                t->target + ((size_t)b * L + l) * c->P, b, l, dimgs);
}

/* One encoder or decoder block's backward, for other trainers of the same blocks (the
 * classifier's fine-tuning, src/model/finetune.c): as block_backward. */
void mae_block_backward(mae_trainer *t, int decoder, int layer, const float *x_in, int B, int T)
{
    block_backward(t, decoder, layer, x_in, B, T);
}
