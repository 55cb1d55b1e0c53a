/* The classifier (models_vit.VisionTransformer): an encoder-only model plus the pooling norm and
 * the head. Shared by the forward (classifier.c), the files (io/classifier_io.c) and the API. */
#ifndef MAE_CLASSIFIER_H
#define MAE_CLASSIFIER_H

#include "model.h"

#define MAE_CLASSIFIER_MAX_CLASSES 1000000
#define MAE_CLASSIFIER_MAX_LABEL 255   /* bytes of one class name: a __metadata__ value's room */

struct mae_classifier {
    mae_model *m;              /* the encoder (no decoder), owned */
    int classes, global_pool;
    float *head;               /* one block: fc_norm_w [D], fc_norm_b [D], head_w [classes,D], head_b [classes] */
    float *fc_norm_w, *fc_norm_b, *head_w, *head_b;
    float *head_pk;            /* head_w packed for m->k, or NULL when the table reads it as it is */
    char **labels;             /* [classes] names, or NULL: labels are the indices */
    char *label_text;          /* one block holding the names (or the decimal indices) */
    char **index_names;        /* [classes] decimal indices, pointers into index_text */
    char *index_text;
};

/* mae_classifier_create's work: m's encoder copied, a new head of classes rows initialized as
 * main_finetune.py does from seed. */
mae_status mae_classifier_new(const mae_model *m, int classes, int global_pool, uint64_t seed, mae_classifier **out);
/* An empty classifier around m (taken over, freed with it on failure too): head storage
 * allocated (zero; fc_norm weight 1), no labels. */
mae_status mae_classifier_alloc(mae_model *m, int classes, int global_pool, mae_classifier **out);
/* What mae_classifier_free does (NULL: nothing): the classifier with its encoder copy. */
void       mae_classifier_destroy(mae_classifier *c);
/* Packs head_w for the model's kernel table (after the head weights change). */
mae_status mae_classifier_pack_head(mae_classifier *c);
/* Makes a float32 classifier compute in bf16 (mae_classifier_set_precision's work): the encoder
 * converted as mae_model_to_bf16 does (MAE_ERR_STATE while contexts live or after a finetuner was
 * created), the head packed for the bf16 table: what mae_classifier_new gives from a bf16 model.
 * On failure the classifier is unchanged. */
mae_status mae_classifier_to_bf16(mae_classifier *c);
/* A copy of src's encoder: the same config without the decoder, every encoder tensor copied. */
mae_status mae_classifier_encoder_copy(const mae_model *src, mae_model **out);
/* Replaces the labels with copies of names[0..classes) (NULL: clears). */
mae_status mae_classifier_labels_set(mae_classifier *c, const char *const *names);
/* pooled [B,D] from the last stream x [B,1+L,D], written to out (mean + fc_norm, or cls + norm). */
void mae_classifier_pool(const mae_classifier *c, const mae_exec *ex, const float *x, int B,
                         float *tmp, float *out, float *mean, float *rstd);
/* The forward on ctx's buffers: logits [B,classes] and/or features [B,D] (the pooled, normed
 * vector the head reads); either may be NULL. */
mae_status mae_classifier_run(const mae_classifier *c, mae_ctx *ctx, const float *imgs, int B,
                              float *logits, float *features);

#endif
