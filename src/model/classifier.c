/* The classifier's forward pass, as models_vit.VisionTransformer.forward computes it: patch
 * embedding, cls token, the full position table on every token (nothing masked), the encoder's
 * blocks (mae_block_forward, the pretraining code), then the pooling and the head. */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include "classifier.h"

static void free_labels(mae_classifier *c)
{
    mae_free(c->labels);
    mae_free(c->label_text);
    c->labels = NULL;
    c->label_text = NULL;
}

/* The decimal indices, the names of a head without labels: made once, so that label() hands out
 * pointers it owns without writing anything (the classifier stays immutable). */
static mae_status make_index_names(mae_classifier *c)
{
    size_t n = (size_t)c->classes, bytes = n * 12;   /* an int in decimal fits 12 bytes */
    c->index_names = mae_calloc(n, sizeof *c->index_names);
    c->index_text = mae_alloc(bytes);
    if (!c->index_names || !c->index_text)
        return mae_fail(MAE_ERR_NOMEM, "classifier: cannot allocate the names of %d classes", c->classes);
    for (int i = 0; i < c->classes; i++) {
        c->index_names[i] = c->index_text + (size_t)i * 12;
        snprintf(c->index_names[i], 12, "%d", i);
    }
    return MAE_OK;
}

void mae_classifier_destroy(mae_classifier *c)
{
    if (!c)
        return;
    free_labels(c);
    mae_free(c->index_names);
    mae_free(c->index_text);
    mae_free(c->head_pk);
    mae_free(c->head);
    mae_model_destroy(c->m);
    mae_free(c);
}

mae_status mae_classifier_new(const mae_model *m, int classes, int global_pool, uint64_t seed, mae_classifier **out)
{
    mae_model *enc;
    mae_classifier *c;
    mae_status s = mae_classifier_encoder_copy(m, &enc);
    if (s == MAE_OK)
        s = mae_classifier_alloc(enc, classes, global_pool, &c);
    if (s != MAE_OK)
        return s;
    /* main_finetune.py: trunc_normal_(head.weight, std=2e-5), timm's cut at +-2 (absolute: with
     * this std no draw reaches it, but the rule is kept); bias 0 */
    mae_rng rng;
    mae_rng_seed(&rng, seed);
    size_t n = (size_t)classes * (size_t)enc->cfg.D;
    for (size_t i = 0; i < n; i++) {
        double v;
        do
            v = 2e-5 * mae_rng_normal(&rng);
        while (v < -2.0 || v > 2.0);
        c->head_w[i] = (float)v;
    }
    if ((s = mae_classifier_pack_head(c)) != MAE_OK) {
        mae_classifier_destroy(c);
        return s;
    }
    *out = c;
    return MAE_OK;
}

mae_status mae_classifier_alloc(mae_model *m, int classes, int global_pool, mae_classifier **out)
{
    size_t D = (size_t)m->cfg.D, n;
    mae_classifier *c = mae_calloc(1, sizeof *c);
    if (!c) {
        mae_model_destroy(m);
        return mae_fail(MAE_ERR_NOMEM, "classifier: out of memory");
    }
    c->m = m;
    c->classes = classes;
    c->global_pool = global_pool;
    /* 2D + classes*(D+1) floats: classes <= 10^6 and D < 2^31 fit in size_t, checked anyway */
    if (!mae_mul_size((size_t)classes, D + 1, &n) || !mae_add_size(n, 2 * D, &n) ||
        !(c->head = mae_calloc(n, sizeof(float)))) {
        mae_classifier_destroy(c);
        return mae_fail(MAE_ERR_NOMEM, "classifier: cannot allocate a head of %d classes x %zu", classes, D);
    }
    c->fc_norm_w = c->head;
    c->fc_norm_b = c->head + D;
    c->head_w = c->head + 2 * D;
    c->head_b = c->head_w + (size_t)classes * D;
    for (size_t i = 0; i < D; i++)
        c->fc_norm_w[i] = 1.0f;
    mae_status s = make_index_names(c);
    if (s == MAE_OK)
        s = mae_classifier_pack_head(c);
    if (s != MAE_OK) {
        mae_classifier_destroy(c);
        return s;
    }
    *out = c;
    return MAE_OK;
}

mae_status mae_classifier_pack_head(mae_classifier *c)
{
    const mae_kernels *k = c->m->k;
    int D = c->m->cfg.D;
    size_t n = k->pack_floats(c->classes, D);
    if (n == 0)
        return MAE_OK;
    if (!c->head_pk) {
        size_t bytes;
        if (!mae_mul_size(n, sizeof(float), &bytes) || !(c->head_pk = mae_alloc(bytes)))
            return mae_fail(MAE_ERR_NOMEM, "classifier: cannot allocate the packed head");
    }
    k->pack(c->head_pk, c->head_w, c->classes, D);
    return MAE_OK;
}

/* The head's bf16 pack is made before the encoder is converted, so a failure of either leaves
 * the classifier as it was; head_w keeps its float32 values (rounded only when packed), as a
 * classifier created from a bf16 model holds them (mae_classifier_new). */
mae_status mae_classifier_to_bf16(mae_classifier *c)
{
    const mae_kernels *view;
    mae_status s = mae_model_bf16_table(c->m->k, &view);
    if (s != MAE_OK)
        return s;
    int D = c->m->cfg.D;
    size_t n = view->pack_floats(c->classes, D), bytes;
    float *pk = NULL;
    if (n > 0) {
        if (!mae_mul_size(n, sizeof(float), &bytes) || !(pk = mae_alloc(bytes)))
            return mae_fail(MAE_ERR_NOMEM, "classifier: cannot allocate the head's bf16 pack");
        view->pack(pk, c->head_w, c->classes, D);
    }
    if ((s = mae_model_to_bf16(c->m)) != MAE_OK) {
        mae_free(pk);
        return s;
    }
    mae_free(c->head_pk);
    c->head_pk = pk;   /* the table mae_classifier_pack_head packs for from now on (m->k is view) */
    return MAE_OK;
}

mae_status mae_classifier_encoder_copy(const mae_model *src, mae_model **out)
{
    mae_cfg cfg = src->cfg;
    cfg.has_decoder = 0;
    mae_model *m;
    mae_status s = mae_cfg_finish(&cfg);
    if (s == MAE_OK)
        s = mae_model_alloc(&cfg, &m);
    if (s != MAE_OK)
        return s;
    for (int i = 0; i < m->n_tensors; i++) {
        const mae_tensor *t = &m->tensors[i], *from = mae_model_find(src, t->name);
        assert(from && from->count == t->count);   /* the encoder's table is the same */
        mae_model_tensor_read(src, from, m->data + t->offset);
    }
    s = mae_model_pack_slim(m);
    /* a bf16 model's encoder computes in bf16 in the classifier too (its weights are bf16 values
     * already: rounding again changes nothing); the finetuner trains it in mixed precision */
    if (s == MAE_OK && src->precision == MAE_PRECISION_BF16)
        s = mae_model_to_bf16(m);
    if (s != MAE_OK) {
        mae_model_destroy(m);
        return s;
    }
    *out = m;
    return MAE_OK;
}

mae_status mae_classifier_labels_set(mae_classifier *c, const char *const *names)
{
    if (!names) {
        free_labels(c);
        return MAE_OK;
    }
    size_t total = 0;
    for (int i = 0; i < c->classes; i++) {
        if (!names[i])
            return mae_fail(MAE_ERR_INVALID_ARG, "label %d is NULL", i);
        size_t len = strlen(names[i]);
        if (len == 0 || len > MAE_CLASSIFIER_MAX_LABEL)
            return mae_fail(MAE_ERR_INVALID_ARG, "label %d is %zu bytes long, not in [1, %d]", i, len,
                            MAE_CLASSIFIER_MAX_LABEL);
        total += len + 1;   /* <= 256 * 10^6: no overflow */
    }
    char **labels = mae_calloc((size_t)c->classes, sizeof *labels);
    char *text = mae_alloc(total);
    if (!labels || !text) {
        mae_free(labels);
        mae_free(text);
        return mae_fail(MAE_ERR_NOMEM, "cannot allocate %zu bytes of labels", total);
    }
    char *at = text;
    for (int i = 0; i < c->classes; i++) {
        size_t len = strlen(names[i]) + 1;
        memcpy(at, names[i], len);
        labels[i] = at;
        at += len;
    }
    free_labels(c);
    c->labels = labels;
    c->label_text = text;
    return MAE_OK;
}

void mae_classifier_pool(const mae_classifier *c, const mae_exec *ex, const float *x, int B,
                         float *tmp, float *out, float *mean, float *rstd)
{
    const mae_model *m = c->m;
    int D = m->cfg.D, L = m->cfg.L;
    size_t T = 1 + (size_t)L;
    if (c->global_pool) {
        /* x[:, 1:].mean(1), summed in double (closer to the float64 reference than PyTorch's
         * float sum, and independent of the threads), then fc_norm */
        for (int b = 0; b < B; b++) {
            const float *rows = x + ((size_t)b * T + 1) * D;
            for (int d = 0; d < D; d++) {
                double sum = 0.0;
                for (int l = 0; l < L; l++)
                    sum += rows[(size_t)l * D + d];
                tmp[(size_t)b * D + d] = (float)(sum / L);
            }
        }
        m->k->layernorm(ex, out, mean, rstd, tmp, c->fc_norm_w, c->fc_norm_b, B, D, m->cfg.eps);
    } else {
        /* norm(x)[:, 0]: the norm is per token, so only the cls rows need it */
        for (int b = 0; b < B; b++)
            memcpy(tmp + (size_t)b * D, x + (size_t)b * T * D, (size_t)D * sizeof *tmp);
        m->k->layernorm(ex, out, mean, rstd, tmp, m->w.norm_w, m->w.norm_b, B, D, m->cfg.eps);
    }
}

mae_status mae_classifier_run(const mae_classifier *c, mae_ctx *ctx, const float *imgs, int B,
                              float *logits, float *features)
{
    const mae_model *m = c->m;
    const mae_cfg *g = &m->cfg;
    const mae_exec *ex = &ctx->ex;
    int D = g->D, L = g->L, T = 1 + L;
    mae_hooks *hk = mae_hooks_active(&ctx->hooks);
    /* tokens = patch_embed(imgs) + pos_embed[1:] */
    mae_patch_embed_run(m, ex, imgs, B, ctx->patches, ctx->tokens);
    /* x = cat(cls_token + pos_embed[0], tokens): the stream holds [B,1+L,D] */
    float *x = ctx->stream;
    for (int b = 0; b < B; b++) {
        float *xb = x + (size_t)b * T * D;
        m->k->add(xb, m->w.cls, m->w.pos, (size_t)D);
        memcpy(xb + D, ctx->tokens + (size_t)b * L * D, (size_t)L * D * sizeof *x);
    }
    mae_cancel scope;   /* the abort asked inside the blocks too (run_stack in forward.c) */
    if (hk && hk->abort)
        mae_cancel_begin(&scope, hk->abort, hk->abort_user);
    int stopped_at = -1;
    for (int l = 0; l < g->depth && stopped_at < 0; l++) {
        if (hk && mae_hooks_stop(hk))
            stopped_at = l;
        else
            mae_block_forward(m, ex, 0, l, ctx->acts.blk, x, x, B, T);   /* in place, as mae_embed's */
        if (hk && hk->abort && mae_cancel_stopped(&scope))
            stopped_at = l;
    }
    if (hk && hk->abort)
        mae_cancel_end(&scope);
    if (stopped_at >= 0)
        return mae_fail(MAE_ERR_ABORTED, "cancelled by the host's callback in block %d", stopped_at);
    /* the patches and tokens buffers are free now: [B,D] each fits */
    float *pooled = ctx->latent;
    mae_classifier_pool(c, ex, x, B, ctx->tokens, pooled, NULL, NULL);
    if (features)
        memcpy(features, pooled, (size_t)B * D * sizeof *features);
    if (logits)
        m->k->linear(ex, logits, pooled, c->head_pk ? c->head_pk : c->head_w, c->head_b, NULL, B,
                     c->classes, D, MAE_ACT_NONE);
    return MAE_OK;
}
