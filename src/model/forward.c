/* The MAE forward pass, part by part, as models_mae.py computes it. The same functions serve
 * inference (one set of activations reused by every layer) and training (one set per layer). */
#include <math.h>
#include <string.h>
#include "model.h"

int mae_keep_count(int L, float ratio)
{
    return (int)((double)L * (1.0 - (double)ratio));
}

/* GELU over n floats split over the threads (element-wise: the split changes nothing). */
typedef struct gelu_job { const mae_kernels *k; float *y; const float *x; size_t n; } gelu_job;
enum { GELU_CHUNK = 1 << 13 };   /* 8192 floats: 19 tasks for batch 1's fc1 output */

static void gelu_task(void *arg, int task, int thread)
{
    const gelu_job *g = arg;
    size_t i0 = (size_t)task * GELU_CHUNK, n = g->n - i0 < GELU_CHUNK ? g->n - i0 : GELU_CHUNK;
    if (mae_measure_mode) {
        mae_task_work(thread, 30.0 * (double)n, 2.0 * (double)n);
        if (mae_measure_mode == MAE_MEASURE_SIMULATE)
            return;
    }
    g->k->gelu(g->y + i0, g->x + i0, n);
}

static void gelu_parallel(const mae_kernels *k, const mae_exec *ex, float *y, const float *x, size_t n)
{
    gelu_job g = { k, y, x, n };
    mae_parallel_for_op(ex, "gelu", (int)((n + GELU_CHUNK - 1) / GELU_CHUNK), gelu_task, &g);
}

/* x = x + proj(attn(LN1(x))); x = x + fc2(GELU(fc1(LN2(x)))) */
void mae_block_forward(const mae_model *m, const mae_exec *ex, int decoder, int layer,
                       mae_block_acts *a, const float *x_in, float *x_out, int B, int T)
{
    const mae_cfg *c = &m->cfg;
    const mae_kernels *k = m->k;
    int C = decoder ? c->Dd : c->D, H = decoder ? c->dH : c->H;
    int hidden = decoder ? c->dhidden : c->hidden;
    int N = B * T;
    mae_block_w w;
    mae_block_view(&m->lay, m->data, decoder, layer, &w);
    const mae_block_pk *pk = decoder ? &m->pk_dblocks[layer] : &m->pk_blocks[layer];

    k->layernorm(ex, a->ln1, a->ln1_mean, a->ln1_rstd, x_in, w.ln1_w, w.ln1_b, N, C, c->eps);
    k->linear(ex, a->qkv, a->ln1, pk->qkv, w.qkv_b, NULL, N, 3 * C, C, MAE_ACT_NONE);
    k->attention(ex, a->atty, a->probs, a->qkv, B, T, C, H);
    k->linear(ex, a->xmid, a->atty, pk->proj, w.proj_b, x_in, N, C, C, MAE_ACT_NONE);
    k->layernorm(ex, a->ln2, a->ln2_mean, a->ln2_rstd, a->xmid, w.ln2_w, w.ln2_b, N, C, c->eps);
    if (a->fch) {
        k->linear(ex, a->fch, a->ln2, pk->fc1, w.fc1_b, NULL, N, hidden, C, MAE_ACT_NONE);
        gelu_parallel(k, ex, a->fch_gelu, a->fch, (size_t)N * hidden);   /* training keeps fch */
    } else {
        k->linear(ex, a->fch_gelu, a->ln2, pk->fc1, w.fc1_b, NULL, N, hidden, C, MAE_ACT_GELU);
    }
    k->linear(ex, x_out, a->fch_gelu, pk->fc2, w.fc2_b, a->xmid, N, C, hidden, MAE_ACT_NONE);
}

int mae_hooks_stop(mae_hooks *h)
{
    if (h->progress && h->progress(h->progress_user, h->done, h->total))
        return 1;
    return h->abort && h->abort(h->abort_user);
}

/* Runs the blocks of one stack over acts->x (stream 0 already filled); returns the last stream,
 * or NULL when the hooks stop it: checked before each block, and with an abort callback also
 * inside the block, before each macro-tile of its products and each item of its other parallel
 * loops (a cancel scope, util.h), so that a large batch stops within one tile per thread. */
static float *run_stack(const mae_model *m, const mae_exec *ex, mae_stack_acts *acts, int decoder,
                        int depth, int B, int T, int C, mae_hooks *hooks)
{
    size_t stride = acts->per_layer ? (size_t)B * T * C : 0;
    mae_cancel scope;
    int scoped = hooks && hooks->abort;
    if (scoped)
        mae_cancel_begin(&scope, hooks->abort, hooks->abort_user);
    float *last = acts->x + depth * stride;
    for (int l = 0; l < depth; l++) {
        if (hooks) {
            if (mae_hooks_stop(hooks)) {
                last = NULL;
                break;
            }
            hooks->done++;
        }
        mae_block_acts *a = &acts->blk[acts->per_layer ? l : 0];
        mae_block_forward(m, ex, decoder, l, a, acts->x + l * stride, acts->x + (l + 1) * stride, B, T);
        if (scoped && mae_cancel_stopped(&scope)) {
            last = NULL;
            break;
        }
    }
    if (scoped)
        mae_cancel_end(&scope);
    return last;
}

static mae_status aborted(int decoder)
{
    return mae_fail(MAE_ERR_ABORTED, "cancelled by the host's callback in the %s", decoder ? "decoder" : "encoder");
}

mae_status mae_encoder_run(const mae_model *m, const mae_exec *ex, mae_stack_acts *acts,
                           const float *tokens, const int32_t *ids_shuffle, int keep, int B,
                           float *latent, mae_hooks *hooks)
{
    const mae_cfg *c = &m->cfg;
    int D = c->D, L = c->L, T = 1 + keep;
    float *x = acts->x;
    for (int b = 0; b < B; b++) {
        float *xb = x + (size_t)b * T * D;
        m->k->add(xb, m->w.cls, m->w.pos, (size_t)D);
        for (int i = 0; i < keep; i++) {
            int src = ids_shuffle ? ids_shuffle[(size_t)b * L + i] : i;
            memcpy(xb + (size_t)(1 + i) * D, tokens + ((size_t)b * L + src) * D, (size_t)D * sizeof *x);
        }
    }
    float *last = run_stack(m, ex, acts, 0, c->depth, B, T, D, hooks);
    if (!last)
        return aborted(0);
    m->k->layernorm(ex, latent, acts->norm_mean, acts->norm_rstd, last, m->w.norm_w, m->w.norm_b,
                    B * T, D, c->eps);
    return MAE_OK;
}

mae_status mae_decoder_run(const mae_model *m, const mae_exec *ex, mae_stack_acts *acts,
                           const float *latent, const int32_t *ids_restore, int keep, int B,
                           float *demb, float *dnorm, float *pred, mae_hooks *hooks)
{
    const mae_cfg *c = &m->cfg;
    const mae_kernels *k = m->k;
    int D = c->D, Dd = c->Dd, L = c->L, T = 1 + L, Tk = 1 + keep;
    k->linear(ex, demb, latent, m->pk_demb, m->w.demb_b, NULL, B * Tk, Dd, D, MAE_ACT_NONE);
    float *x = acts->x;
    for (int b = 0; b < B; b++) {
        const float *eb = demb + (size_t)b * Tk * Dd;
        float *xb = x + (size_t)b * T * Dd;
        k->add(xb, eb, m->w.dpos, (size_t)Dd);
        for (int l = 0; l < L; l++) {
            int r = ids_restore ? ids_restore[(size_t)b * L + l] : l;
            const float *src = r < keep ? eb + (size_t)(1 + r) * Dd : m->w.mask_tok;
            k->add(xb + (size_t)(1 + l) * Dd, src, m->w.dpos + (size_t)(1 + l) * Dd, (size_t)Dd);
        }
    }
    float *last = run_stack(m, ex, acts, 1, c->ddepth, B, T, Dd, hooks);
    if (!last)
        return aborted(1);
    /* The cls row's output is dropped, so the final norm and the head see only the L patch rows. */
    for (int b = 0; b < B; b++)
        k->layernorm(ex, dnorm + (size_t)b * L * Dd,
                     acts->norm_mean ? acts->norm_mean + (size_t)b * L : NULL,
                     acts->norm_rstd ? acts->norm_rstd + (size_t)b * L : NULL,
                     last + ((size_t)b * T + 1) * Dd, m->w.dnorm_w, m->w.dnorm_b, L, Dd, c->eps);
    k->linear(ex, pred, dnorm, m->pk_pred, m->w.pred_b, NULL, B * L, c->P, Dd, MAE_ACT_NONE);
    return MAE_OK;
}

void mae_patch_embed_run(const mae_model *m, const mae_exec *ex, const float *imgs, int B,
                         float *patches, float *tokens)
{
    const mae_cfg *c = &m->cfg;
    int p = c->p, C = c->C, gw = c->gw, L = c->L, H = c->gh * p, W = gw * p;
    size_t K = (size_t)C * p * p;
    /* im2col in the conv weight's (channel, row, col) order */
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            int i = l / gw, j = l % gw;
            float *dst = patches + ((size_t)b * L + l) * K;
            for (int ch = 0; ch < C; ch++)
                for (int u = 0; u < p; u++)
                    memcpy(dst + ((size_t)ch * p + u) * p,
                           imgs + (((size_t)b * C + ch) * H + (size_t)i * p + u) * W + (size_t)j * p,
                           (size_t)p * sizeof *dst);
        }
    m->k->linear(ex, tokens, patches, m->pk_pe, m->w.pe_b, NULL, B * L, c->D, (int)K, MAE_ACT_NONE);
    for (int b = 0; b < B; b++) {
        float *t = tokens + (size_t)b * L * c->D;
        m->k->add(t, t, m->w.pos + c->D, (size_t)L * c->D);
    }
}

/* Heap sort of indices by (noise, index): the stable argsort, without allocating. */
static int before(const float *v, int32_t a, int32_t b)
{
    return v[a] < v[b] || (v[a] == v[b] && a < b);
}

static void sift(const float *v, int32_t *ix, int start, int n)
{
    int root = start;
    for (;;) {
        int child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && before(v, ix[child], ix[child + 1]))
            child++;
        if (!before(v, ix[root], ix[child]))
            return;
        int32_t t = ix[root]; ix[root] = ix[child]; ix[child] = t;
        root = child;
    }
}

static void argsort(const float *v, int32_t *ix, int n)
{
    for (int i = 0; i < n; i++)
        ix[i] = i;
    for (int s = n / 2 - 1; s >= 0; s--)
        sift(v, ix, s, n);
    for (int end = n - 1; end > 0; end--) {
        int32_t t = ix[0]; ix[0] = ix[end]; ix[end] = t;
        sift(v, ix, 0, end);
    }
}

void mae_masker_run(int L, int keep, const float *noise, int B, int32_t *ids_shuffle,
                    int32_t *ids_restore, float *mask)
{
    for (int b = 0; b < B; b++) {
        int32_t *sh = ids_shuffle + (size_t)b * L, *re = ids_restore + (size_t)b * L;
        argsort(noise + (size_t)b * L, sh, L);
        for (int k = 0; k < L; k++)
            re[sh[k]] = k;
        if (mask)
            for (int l = 0; l < L; l++)
                mask[(size_t)b * L + l] = re[l] >= keep ? 1.0f : 0.0f;
    }
}

/* One patch's pixels in (u,v,c) order, as models_mae.patchify lays them out: for each channel
 * and pixel row, a run of p pixels stored C floats apart. */
static void gather_patch(const mae_cfg *c, const float *imgs, int b, int l, float *t)
{
    int p = c->p, C = c->C, gw = c->gw, H = c->gh * p, W = gw * p;
    int i = l / gw, j = l % gw;
    for (int ch = 0; ch < C; ch++)
        for (int u = 0; u < p; u++) {
            const float *src = imgs + (((size_t)b * C + ch) * H + (size_t)i * p + u) * W + (size_t)j * p;
            float *dst = t + (size_t)u * p * C + ch;
            for (int v = 0; v < p; v++)
                dst[(size_t)v * C] = src[v];
        }
}

void mae_patchify_run(const mae_cfg *c, const float *imgs, int B, float *out)
{
    for (int b = 0; b < B; b++)
        for (int l = 0; l < c->L; l++)
            gather_patch(c, imgs, b, l, out + ((size_t)b * c->L + l) * c->P);
}

void mae_unpatchify_run(const mae_cfg *c, const float *patches, int B, float *imgs)
{
    int p = c->p, C = c->C, gw = c->gw, L = c->L, H = c->gh * p, W = gw * p;
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            int i = l / gw, j = l % gw;
            const float *src = patches + ((size_t)b * L + l) * c->P;
            for (int u = 0; u < p; u++)
                for (int v = 0; v < p; v++)
                    for (int ch = 0; ch < C; ch++)
                        imgs[(((size_t)b * C + ch) * H + (size_t)i * p + u) * W + (size_t)j * p + v] =
                            src[(u * p + v) * C + ch];
        }
}

float mae_loss_run(const mae_model *m, const float *imgs, const float *pred, const float *mask,
                   int B, float *target)
{
    const mae_cfg *c = &m->cfg;
    int L = c->L, P = c->P;
    double num = 0.0, den = 0.0;
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            float *t = target + ((size_t)b * L + l) * P;
            const float *y = pred + ((size_t)b * L + l) * P;
            gather_patch(c, imgs, b, l, t);   /* normalized by loss_patch */
            double s = m->k->loss_patch(t, y, P, c->norm_pix);
            double w = mask[(size_t)b * L + l];
            if (w == 0.0)
                continue;
            num += s / P * w;
            den += w;
        }
    return (float)(num / den);   /* 0/0 = NaN when nothing is removed, as the official code */
}

/* ---- the pipeline --------------------------------------------------------------------------- */

const float *mae_noise_or_draw(mae_rng *rng, const float *noise, float *buf, size_t n)
{
    if (noise)
        return noise;
    for (size_t i = 0; i < n; i++)
        buf[i] = mae_rng_uniform(rng);
    return buf;
}

mae_status mae_pipeline_run(const mae_model *m, const mae_exec *ex, mae_rng *rng, const mae_pass *p,
                            const float *imgs, int B, int keep, const float *noise, int decode,
                            float *loss, mae_hooks *hk)
{
    int L = m->cfg.L;
    mae_rng rng_before = *rng;   /* 2.5 KB, copied once per pass: negligible next to a block */
    noise = mae_noise_or_draw(rng, noise, p->noise, (size_t)B * L);
    mae_patch_embed_run(m, ex, imgs, B, p->patches, p->tokens);
    mae_masker_run(L, keep, noise, B, p->ids_shuffle, p->ids_restore, p->mask);
    mae_status s = mae_encoder_run(m, ex, p->enc, p->tokens, p->ids_shuffle, keep, B, p->latent, hk);
    if (s == MAE_OK && decode)
        s = mae_decoder_run(m, ex, p->dec, p->latent, p->ids_restore, keep, B, p->demb, p->dnorm,
                            p->pred, hk);
    if (s != MAE_OK) {
        *rng = rng_before;   /* a cancelled call leaves the RNG as it found it */
        return s;
    }
    if (decode && loss)
        *loss = mae_loss_run(m, imgs, p->pred, p->mask, B, p->target);
    return MAE_OK;
}
