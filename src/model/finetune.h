/* Fine-tuning a classifier (main_finetune.py): the finetuner's state, shared by its memory plan,
 * forward and backward pass and optimizer (finetune.c) and its public functions
 * (api/finetune_api.c). */
#ifndef MAE_FINETUNE_H
#define MAE_FINETUNE_H

#include "classifier.h"

struct mae_finetuner {
    mae_classifier *c;
    mae_trainer tr;              /* what mae_block_backward reads: m, ex, eblk, grads, gb, and
                                  * for a bf16 classifier round_dy / round_xw (mixed precision) */
    mae_finetune_config cfg;
    int max_batch;
    int64_t step;
    uint64_t seed;               /* drop path's masks */
    int micro;                   /* forward_backward calls since the last step */
    float *keep;                 /* [depth][2][B] drop path scales: 0 or 1 / keep_prob */
    float *branch;               /* [B,1+L,D] a branch's output, and its gradient */
    double grad_norm;
    float *grads, *m1, *m2;      /* the model's parameter layout (lay.total floats) */
    float *hgrad, *hm1, *hm2;    /* the classifier's head block layout (c->head) */
    size_t head_floats;
    mae_params g;                /* views into grads */
    int *layer;                  /* per model tensor: layer id for the lr scale, -1 = frozen */
    void *arena;
    float *patches, *tokens;     /* [B,L,C*p*p], [B,L,D] */
    float *x;                    /* (depth + 1) streams [B,1+L,D] */
    float *pool_in, *pooled, *pmean, *prstd;   /* [B,D], [B,D], [B], [B] */
    float *logits, *dlogits;     /* [B,K] */
    float *dpooled, *dpool_in;   /* [B,D] */
    float *dpatch;               /* [B*L,D] the patch rows' gradient, gathered */
    mae_block_acts *blk;         /* [depth] */
};

/* finetuner.c: the config's defaults and checks (fn names the caller in messages), creation
 * (the classifier's model made trainable; the error does not name a public call), freeing, the
 * lr schedule as the trainer's, zeroing the gradients, and one AdamW step (MAE_ERR_STATE with
 * nothing changed when the gradients are not finite). */
void mae_finetune_defaults(mae_finetune_config *c);
mae_status mae_finetune_read_config(const char *fn, const mae_finetune_config *in, mae_finetune_config *out);
mae_status mae_finetuner_new(mae_classifier *c, int max_batch, mae_finetuner **out);
void mae_finetuner_destroy(mae_finetuner *f);
mae_train_config mae_finetune_schedule(const mae_finetuner *f);
void mae_finetune_zero(mae_finetuner *f);
mae_status mae_finetune_take_step(mae_finetuner *f);

/* mixed.c: the largest rounded dy and x / W operands of the finetuner's linears (a bf16
 * classifier's mixed-precision backward), for batches up to B. */
void mae_mixed_finetune_sizes(const mae_cfg *c, size_t B, size_t classes, size_t *dy, size_t *xw);

/* Allocates the activations for max_batch (the arena) and the per-thread scratch for n threads. */
mae_status mae_finetune_plan(mae_finetuner *f);
mae_status mae_finetune_set_scratch(mae_finetuner *f, int n);
/* The layer ids and the optimizer groups: lr_scale and weight decay of tensor i of the model
 * (i < n_tensors) or of the head block's parts (i = n_tensors + 0: fc_norm weight, 1: fc_norm
 * bias, 2: head weight, 3: head bias). 0 if the tensor is not trained. */
int mae_finetune_group(const mae_finetuner *f, int i, double *lr_scale, double *wd);
/* Forward + backward; labels or targets as the public call. */
mae_status mae_finetune_run(mae_finetuner *f, const float *imgs, int B, const int32_t *labels,
                            const float *targets, float *loss);
/* Global L2 norm of the trained gradients, in a fixed order. */
double mae_finetune_grad_norm(const mae_finetuner *f);
/* AdamW on every trained tensor with lr * its lr_scale, gradients times grad_mul. */
void mae_finetune_adamw(mae_finetuner *f, double lr, double grad_mul);

#endif
