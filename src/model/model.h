/* The model's internal structures: configuration, parameter layout, the parts, contexts, and the
 * forward functions that the pipeline, the parts and the trainer share. */
#ifndef MAE_MODEL_H
#define MAE_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "mae.h"
#include "../kernels/kernels.h"
#include "../os/os.h"
#include "../util/util.h"

/* Architecture plus what follows from it. The settings are listed in config_fields.h, which maps
 * each to its mae_config field and metadata key; the derived values are mae_cfg_finish's. */
typedef struct mae_cfg {
    int img, p, C;             /* image side the weights were made for, patch side, channels */
    int ih, iw;                /* image size the model runs at (0 in a config: img x img) */
    int D, depth, H;           /* encoder width, blocks, heads */
    int Dd, ddepth, dH;        /* decoder width, blocks, heads */
    int hidden, dhidden;       /* MLP widths (derived) */
    int dmlp;                  /* decoder MLP width as set; 0 = from mlp_ratio */
    int qkv_bias;              /* the blocks' q/k/v projections have a bias */
    float mlp_ratio, mask_ratio, eps;
    int norm_pix;
    int has_decoder;
    /* derived */
    int gh, gw, L;             /* patch grid and patches per image */
    int P;                     /* p*p*C: one patch's pixels */
} mae_cfg;

/* config.c. The fields that a caller or a file sets are listed once, in config_fields.h; the
 * functions below and the metadata code are generated from that list. */
/* Checks a config (every field's range, then the rules between fields) and fills in the
 * derived fields. */
mae_status mae_cfg_finish(mae_cfg *c);
void mae_cfg_defaults(mae_cfg *c);   /* every field at its default (the "base" preset), with a decoder */
/* c as preset name ("base", "large", "huge", "tiny"); 0 for another name. */
int  mae_cfg_preset(mae_cfg *c, const char *name);
void mae_cfg_from_public(mae_cfg *dst, const mae_config *src);   /* src already size-checked */
void mae_cfg_to_public(mae_config *dst, const mae_cfg *src, size_t struct_size);

/* One tensor of the state_dict, in official order and naming. */
enum { MAE_T_TRAIN = 1, MAE_T_DECAY = 2 };
typedef struct mae_tensor {
    char    name[48];
    size_t  offset, count;     /* in floats, inside the flat parameter buffer */
    int     ndim;
    int64_t shape[4];
    int     flags;             /* MAE_T_TRAIN: learned; MAE_T_DECAY: in AdamW's weight-decay group */
    int     in_place;          /* the floats at offset hold this weight packed for the model's
                                * table, not in PyTorch's layout (a slim model's linears) */
} mae_tensor;

/* Per-block tensor offsets, relative to the block's start. */
typedef struct mae_block_off {
    size_t ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b, size;
} mae_block_off;

/* Offsets of every tensor in the flat buffer (floats). Decoder fields are unused without one. */
typedef struct mae_layout {
    size_t cls, pos, mask_tok, dpos, pe_w, pe_b;
    size_t blocks;        mae_block_off blk;    /* block l starts at blocks + l*blk.size */
    size_t norm_w, norm_b, demb_w, demb_b;
    size_t dblocks;       mae_block_off dblk;
    size_t dnorm_w, dnorm_b, pred_w, pred_b;
    size_t total;
} mae_layout;

/* Pointers into one flat buffer laid out as mae_layout: the weights, their gradients and the
 * optimizer moments all use this same view. */
typedef struct mae_block_w {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} mae_block_w;

typedef struct mae_params {
    float *cls, *pos, *mask_tok, *dpos, *pe_w, *pe_b;
    float *norm_w, *norm_b, *demb_w, *demb_b, *dnorm_w, *dnorm_b, *pred_w, *pred_b;
    float *base;
} mae_params;

void mae_params_view(const mae_layout *lay, float *base, int has_decoder, mae_params *out);
void mae_block_view(const mae_layout *lay, float *base, int decoder, int layer, mae_block_w *out);

/* Packed weights of the linears (pointers into m->packed, or to the weights themselves when the
 * kernel table does not pack). */
typedef struct mae_block_pk { const float *qkv, *proj, *fc1, *fc2; } mae_block_pk;

struct mae_patch_embed { const mae_model *m; };
struct mae_masker      { const mae_model *m; };
struct mae_encoder     { const mae_model *m; };
struct mae_decoder     { const mae_model *m; };
struct mae_loss        { const mae_model *m; };

/* A model holds its linear weights either twice, in PyTorch's layout in data and packed in
 * packed (what a trainer needs: AdamW updates data, then repacks), or, "slim", once: packed in
 * their own floats of data (tensors marked in_place), what mae_model_create and mae_model_load
 * give. A slim model's tensors are read through mae_model_tensor_view / mae_model_tensor_read. */
struct mae_model {
    mae_cfg cfg;
    mae_layout lay;
    float *data;                   /* lay.total floats */
    mae_params w;
    mae_tensor *tensors;
    int n_tensors;
    const mae_kernels *k;          /* the table the weights were packed for */
    float *packed;                 /* NULL when k does not pack */
    const float *pk_pe, *pk_demb, *pk_pred;
    mae_block_pk *pk_blocks, *pk_dblocks;
    int slim;                      /* some tensors are in_place */
    mae_atomic_ptr *cache;         /* [n_tensors] float *: unpacked copies of in_place tensors, made on
                                    * first request and kept until the model is freed */
    int precision;                 /* MAE_PRECISION_F32 or _BF16 (mae_model_set_precision) */
    int had_masters;               /* a trainer gave it master weights (mae_model_keep_masters) */
    mae_atomic_long live_ctx;      /* contexts alive on this model, or MAE_MODEL_CONVERTING while
                                    * mae_trainer_create rewrites the weights (zero from calloc) */
    struct mae_patch_embed part_pe;
    struct mae_masker      part_mk;
    struct mae_encoder     part_enc;
    struct mae_decoder     part_dec;
    struct mae_loss        part_loss;
};

/* live_ctx while a trainer creation holds the model exclusively. */
#define MAE_MODEL_CONVERTING (-1)

/* Builds the tensor table and layout for cfg and allocates zeroed weights (no packing yet). */
mae_status mae_model_alloc(const mae_cfg *cfg, mae_model **out);
/* The same for a bf16 model computing with table v (a bf16 view, mae_kernels_bf16_view): every
 * linear weight has only the floats of its packed bf16 form (in_place), the layout that
 * mae_model_pack_bf16 gives; the loader fills each tensor with mae_model_tensor_write. */
mae_status mae_model_alloc_bf16(const mae_cfg *cfg, const mae_kernels *v, mae_model **out);
/* Packs the linears for the active kernel table, keeping data in PyTorch's layout (a slim model
 * is first unpacked, for its own table); call after the weights are final and again whenever
 * they change (the trainer does after each step). On failure the model is unchanged. */
mae_status mae_model_pack(mae_model *m);
/* The same, but every linear whose packed form is as large as the weight is packed in its own
 * floats (an inference model: weights held once). On failure the model is unchanged. */
mae_status mae_model_pack_slim(mae_model *m);
/* Makes a slim model hold PyTorch-layout master weights again (mae_model_pack for its own
 * table); nothing to do for a model that has them. For trainers. */
mae_status mae_model_keep_masters(mae_model *m);
/* Makes m compute in bf16 with table v (a bf16 view, mae_kernels_bf16_view): the linear weights
 * rounded and packed as bf16 in place, the weight storage compacted to about half. On failure
 * the model is unchanged. For inference models only (precision.c checks). */
mae_status mae_model_pack_bf16(mae_model *m, const mae_kernels *v);
/* Makes an inference model compute in bf16 (mae_model_set_precision's work, precision.c): holds
 * it exclusively (MAE_ERR_STATE while contexts live or a trainer was created on it), then packs
 * it with its table's bf16 view. On failure the model is unchanged. */
mae_status mae_model_to_bf16(mae_model *m);
/* The checks mae_model_set_precision and mae_classifier_set_precision share (fn names the caller,
 * what the holder): want is F32 or BF16, and bf16 weights cannot become float32 again. *todo is
 * 1 when a conversion is needed, 0 when the holder already computes in want. */
mae_status mae_precision_change(const char *fn, const char *what, int have, int want, int *todo);
/* The bf16 view of table k that a bf16 model computes with (mae_kernels_bf16_view), or
 * MAE_ERR_UNSUPPORTED naming k when it has none. */
mae_status mae_model_bf16_table(const mae_kernels *k, const mae_kernels **view);
/* mae_model_keep_masters while holding m exclusively (the live-context count set to
 * MAE_MODEL_CONVERTING): MAE_ERR_STATE, naming fn, while contexts of a slim model live. For the
 * trainer and the finetuner. */
mae_status mae_model_make_trainable(mae_model *m, const char *fn);
/* The same for the pretraining trainer, which also trains a bf16 model, in mixed precision: a
 * slim bf16 model gets float32 master weights in PyTorch's layout (its bf16 weights widened) and
 * its bf16 packs beside them, refreshed by mae_model_repack_threads (docs/PRECISION.md). */
mae_status mae_model_make_trainable_mixed(mae_model *m, const char *fn);
void       mae_model_repack(mae_model *m);     /* same table, storage already there */
void       mae_model_repack_threads(mae_model *m, const mae_exec *ex);   /* the same on ex's threads */
/* Tensor t in PyTorch's layout: a pointer into data, or for an in_place tensor an unpacked copy
 * made once per model (thread-safe; MAE_ERR_NOMEM if it cannot be allocated). */
mae_status mae_model_tensor_view(const mae_model *m, const mae_tensor *t, const float **out);
/* Writes tensor t in PyTorch's layout into dst (t->count floats), unpacking if in_place. */
void       mae_model_tensor_read(const mae_model *m, const mae_tensor *t, float *dst);
/* The inverse: tensor t from src in PyTorch's layout (t->count floats), packed (for a bf16 model:
 * rounded to nearest even) if in_place. */
void       mae_model_tensor_write(mae_model *m, const mae_tensor *t, const float *src);
/* The same for tensor i of model m, as mae_st_write_as's fetch callback (mae_model_save). */
void       mae_model_tensor_fetch(const void *m, int i, float *dst);
const mae_tensor *mae_model_find(const mae_model *m, const char *name);
void       mae_model_destroy(mae_model *m);   /* what mae_model_free does (NULL: nothing) */
/* A copy of m for height x width images (positive), the position tables following the new patch
 * grid: a sin-cos table regenerated, a learned one resampled bicubically (pos_resize.c). */
mae_status mae_model_resized(const mae_model *m, int height, int width, mae_model **out);
/* Official initialization from an RNG. */
void mae_model_init_weights(mae_model *m, uint64_t seed);
/* mae_model_create's work: a model for c (checked and finished here), initialized from seed,
 * packed slim. */
mae_status mae_model_new(const mae_cfg *c, uint64_t seed, mae_model **out);
/* Fixed 2-D sin-cos table [1+gh*gw, dim] (cls row zero), computed in double. */
void mae_sincos_pos_embed(float *out, int dim, int gh, int gw);
/* Whether table [1+gh*gw, dim] is that fixed table (within 1e-6), using tmp of the same size:
 * such a table is frozen in training and regenerated, not resampled, by a resize. */
int  mae_is_sincos_table(const float *table, int dim, int gh, int gw, float *tmp);

/* ---- activations ---------------------------------------------------------------------------- */

/* What one block keeps. In inference one set serves every layer and the optional fields are
 * NULL; in training each layer has its own and all are set. */
typedef struct mae_block_acts {
    float *ln1, *ln1_mean, *ln1_rstd;   /* [BT,C], [BT], [BT] */
    float *qkv;                         /* [BT,3C] */
    float *probs;                       /* [B,H,T,T] or NULL */
    float *atty;                        /* [BT,C] attention output before proj */
    float *xmid;                        /* [BT,C] stream after the attention residual */
    float *ln2, *ln2_mean, *ln2_rstd;   /* [BT,C], [BT], [BT] */
    float *fch;                         /* [BT,hidden] fc1 output before GELU, or NULL (fused) */
    float *fch_gelu;                    /* [BT,hidden] */
} mae_block_acts;

/* A stack of blocks (the encoder or the decoder). */
typedef struct mae_stack_acts {
    mae_block_acts *blk;     /* blk[l] if per_layer, else blk[0] for every layer */
    int per_layer;
    float *x;                /* streams: [nblocks+1][B,T,C] if per_layer, else one [B,T,C] */
    float *norm_mean, *norm_rstd;  /* final LayerNorm stats, or NULL */
} mae_stack_acts;

void mae_block_forward(const mae_model *m, const mae_exec *ex, int decoder, int layer,
                       mae_block_acts *a, const float *x_in, float *x_out, int B, int T);

/* A host's hooks for one context or trainer (mae_ctx_set_abort, mae_trainer_set_progress).
 * done counts the blocks a running call has passed, total is what done reaches at its end. */
typedef struct mae_hooks {
    mae_abort_fn abort;
    void *abort_user;
    mae_progress_fn progress;
    void *progress_user;
    int done, total;
} mae_hooks;
/* The check between blocks: reports progress, then asks abort; nonzero = stop. */
int mae_hooks_stop(mae_hooks *h);
/* NULL when h has no callback, so that the block loop pays one pointer test per block. */
static inline mae_hooks *mae_hooks_active(mae_hooks *h)
{
    return h->abort || h->progress ? h : NULL;
}

/* Encoder: tokens [B,L,D] (pos added), ids_shuffle [B,L] or NULL -> latent [B,1+keep,D].
 * hooks (NULL: none) are checked before every block; MAE_ERR_ABORTED (error set) if they stop
 * it, latent then unspecified. */
mae_status mae_encoder_run(const mae_model *m, const mae_exec *ex, mae_stack_acts *acts,
                           const float *tokens, const int32_t *ids_shuffle, int keep, int B,
                           float *latent, mae_hooks *hooks);
/* Decoder: latent [B,1+keep,D] -> demb [B,1+keep,Dd] (decoder_embed output, kept for backward),
 * then stack, final norm over the L patch rows into dnorm [B,L,Dd], pred [B,L,P]. Hooks as the
 * encoder's. */
mae_status mae_decoder_run(const mae_model *m, const mae_exec *ex, mae_stack_acts *acts,
                           const float *latent, const int32_t *ids_restore, int keep, int B,
                           float *demb, float *dnorm, float *pred, mae_hooks *hooks);
/* The load-progress hook of this thread (mae_model_load_progress): called after each tensor a
 * load has filled; nonzero = cancel. 0 when no hook is set. */
int mae_load_progress_tick(int done, int total);
/* Patch embedding: imgs -> patches [B,L,C*p*p] (c,u,v order) -> tokens [B,L,D] (+pos). */
void mae_patch_embed_run(const mae_model *m, const mae_exec *ex, const float *imgs, int B,
                         float *patches, float *tokens);
/* Masking from noise: stable argsort. */
void mae_masker_run(int L, int keep, const float *noise, int B, int32_t *ids_shuffle,
                    int32_t *ids_restore, float *mask);
/* Loss; per_patch [B,L] (optional) receives each patch's MSE; target [B,L,P] (optional)
 * receives the (normalized) target. Returns the loss (NaN if the mask removes nothing). */
float mae_loss_run(const mae_model *m, const float *imgs, const float *pred, const float *mask,
                   int B, float *target);

/* The buffers of one pass through the pipeline: a context's (one set of activations for every
 * block) or a trainer's (one per block, kept for the backward pass). */
typedef struct mae_pass {
    mae_stack_acts *enc, *dec;            /* the encoder's and the decoder's activations */
    float *noise;                         /* [B,L]: the noise drawn when the caller gives none */
    int32_t *ids_shuffle, *ids_restore;   /* [B,L] */
    float *mask;                          /* [B,L] */
    float *patches, *tokens;              /* [B,L,C*p*p], [B,L,D] */
    float *latent, *demb;                 /* [B,1+keep,D], [B,1+keep,Dd] */
    float *dnorm, *pred, *target;         /* [B,L,Dd], [B,L,P], [B,L,P] (the loss's target) */
} mae_pass;
/* The rule for noise: the caller's, or NULL: n uniforms drawn from rng into buf. */
const float *mae_noise_or_draw(mae_rng *rng, const float *noise, float *buf, size_t n);
/* The pipeline, written once for mae_forward and the trainer: the noise (mae_noise_or_draw),
 * patch embedding, masking (keep patches kept), the encoder, then with decode the decoder and,
 * with loss, the loss into *loss. Hooks (NULL: none) are checked before every block; when they
 * stop it, MAE_ERR_ABORTED and the RNG as it was before the call. */
mae_status mae_pipeline_run(const mae_model *m, const mae_exec *ex, mae_rng *rng, const mae_pass *p,
                            const float *imgs, int B, int keep, const float *noise, int decode,
                            float *loss, mae_hooks *hk);
void mae_patchify_run(const mae_cfg *c, const float *imgs, int B, float *out);
void mae_unpatchify_run(const mae_cfg *c, const float *patches, int B, float *imgs);
int  mae_keep_count(int L, float ratio);

/* ---- the context ---------------------------------------------------------------------------- */

struct mae_ctx {
    const mae_model *m;
    int max_batch;
    float ratio;
    mae_rng rng;
    mae_exec ex;
    mae_thread_pool host;                 /* ex.host points here when set */
    size_t scratch_per_thread;
    int32_t *ids_shuffle, *ids_restore;   /* [maxB,L] */
    float *noise, *mask;                  /* [maxB,L] */
    float *patches;                       /* [maxB,L,C*p*p] */
    float *tokens;                        /* [maxB,L,D] */
    float *latent;                        /* [maxB,1+L,D] */
    float *demb;                          /* [maxB,1+L,Dd] */
    float *dnorm;                         /* [maxB,L,Dd] */
    float *pred;                          /* [maxB,L,P] */
    float *stream;                        /* [maxB,1+L,maxC] */
    mae_block_acts blk;                   /* shared by all layers */
    mae_stack_acts acts;
    void *arena;
    mae_hooks hooks;                      /* abort only */
};

/* ctx.c: a context for m (counted in m->live_ctx; MAE_ERR_STATE while a trainer creation converts
 * m), its buffers planned for max_batch; freed (and uncounted) by mae_ctx_destroy. */
mae_status mae_ctx_new(const mae_model *m, int max_batch, mae_ctx **out);
void       mae_ctx_destroy(mae_ctx *c);
/* (Re)allocates the per-thread scratch for n threads; the old one stays on failure. */
mae_status mae_ctx_set_scratch(mae_ctx *c, int n);
/* Bytes mae_ctx_create(m, max_batch) allocates with n threads' scratch. */
mae_status mae_ctx_plan_bytes(const mae_model *m, int max_batch, int n, size_t *bytes);

/* ---- training ------------------------------------------------------------------------------- */

/* Scratch of the backward pass, shared by all blocks (sized for the widest stack). */
typedef struct mae_grad_bufs {
    float *dres;    /* [B,T,C] gradient of the residual stream */
    float *dc;      /* [B,T,C] gradient of a LayerNorm output or the attention output */
    float *dqkv;    /* [B,T,3C] */
    float *dh;      /* [B,T,hidden] */
} mae_grad_bufs;

struct mae_trainer {
    mae_model *m;
    int max_batch;
    int keep_cap;                         /* the encoder's activations hold 1 + keep_cap tokens */
    float ratio;
    mae_rng rng;
    mae_exec ex;
    mae_thread_pool host;                 /* ex.host points here when set */
    mae_train_config cfg;
    int64_t step;                         /* optimizer steps taken */
    double grad_norm;                     /* of the last step's gradients */
    float *grads, *exp_avg, *exp_avg_sq;  /* lay.total floats each, the parameter layout */
    mae_params g;                         /* named views into grads */
    int train_pos, train_dpos;            /* whether the position tables are learned */
    int *tflags;                          /* per tensor: MAE_T_TRAIN, MAE_T_DECAY as trained here */
    double *norm_parts;                   /* per-chunk partial sums of the gradient norm */
    /* activations and backward scratch: one arena, planned for max_batch and keep_cap */
    void *arena;
    int32_t *ids_shuffle, *ids_restore;   /* [B,L] */
    float *noise, *mask;                  /* [B,L] */
    float *patches, *tokens;              /* [B,L,C*p*p], [B,L,D] */
    float *latent, *enc_mean, *enc_rstd;  /* [B,Te,D], [B*Te] x2 (Te = 1 + keep) */
    float *demb;                          /* [B,Te,Dd] */
    float *dnorm, *dec_mean, *dec_rstd;   /* [B,L,Dd], [B*L] x2 */
    float *pred, *target, *dpred;         /* [B,L,P] */
    float *pkept, *dpkept;                /* [B,keep,C*p*p] kept patches and their gradient */
    mae_block_acts *eblk, *dblk;          /* one per block */
    mae_stack_acts enc, dec;
    mae_grad_bufs gb;
    mae_hooks hooks;                      /* abort and progress */
    /* mixed precision (a bf16 model, mixed.c): the backward products' operands rounded to bf16,
     * in the arena; NULL for a float32 model */
    float *round_dy;                      /* the output gradient of a linear */
    float *round_xw;                      /* its weight, then its input */
};

/* backward.c: the backward pass, part by part; gradients are added into g (a view of the
 * gradient buffer). Each reads the activations the trainer's forward saved. */
/* dpred = scale * d(loss)/d(pred). */
void mae_loss_backward(const mae_model *m, float *dpred, const float *pred, const float *target,
                       const float *mask, int B, double scale);
/* From dpred to d(latent) [B,1+keep,D] (left in t->gb.dc). */
void mae_decoder_backward(mae_trainer *t, int B, int keep);
/* From d(latent) in t->gb.dc to the kept patches' gradient (t->gb.dres rows) and the patch
 * embedding, cls token and block gradients. */
void mae_encoder_backward(mae_trainer *t, int B, int keep);
/* One block's backward: on entry t->gb.dres = d(loss)/d(block output), on return
 * d(loss)/d(x_in); reads t->eblk[layer] (or t->dblk), adds into t->grads. */
void mae_block_backward(mae_trainer *t, int decoder, int layer, const float *x_in, int B, int T);
/* d(loss)/d(imgs) [B,C,H,W] (written) through the patch embedding and the loss target. */
void mae_input_backward(mae_trainer *t, const float *imgs, int B, int keep, float *dimgs);

/* mixed.c: mixed-precision training of a bf16 model (docs/PRECISION.md) */
struct mae_arena;
/* dst = mae_bf16_float(mae_bf16_round(src)), n floats (dst may be src). */
void mae_mixed_round(float *dst, const float *src, size_t n);
/* Takes the rounded operands' buffers from the trainer's arena (nothing for a float32 model). */
void mae_mixed_plan(struct mae_arena *p, mae_trainer *t);
/* The products of a linear's backward with bf16-rounded operands summed in float32, for a
 * trainer whose round_dy is set: dx[N,in] = r(dy)·r(w) (written, if dx), dw[out,in] += r(dy)ᵀ·r(x)
 * (if dw). */
void mae_mixed_linear_products(mae_trainer *t, float *dx, float *dw, const float *dy,
                               const float *x, const float *w, int N, int in, int out);

/* optim.c; the optimizer works on chunks of MAE_TRAIN_CHUNK floats (norm_parts has one per chunk) */
#define MAE_TRAIN_CHUNK 16384
double mae_train_peak_lr(const mae_train_config *c, int max_batch);
double mae_train_lr_at(const mae_train_config *c, int max_batch, int64_t step);
/* Global L2 norm of the trainable gradients, in a fixed order (thread-count independent). */
double mae_train_grad_norm(mae_trainer *t);
/* AdamW on every trainable tensor with lr and the gradients times grad_mul. */
void mae_train_adamw(mae_trainer *t, double lr, double grad_mul);

/* trainer.c */
mae_status mae_trainer_plan(mae_trainer *t, int keep_cap);     /* (re)allocates the arena */
/* One forward + backward pass; *loss gets the loss. MAE_ERR_ABORTED when the hooks stop it,
 * and then the trainer is as before the call. */
mae_status mae_trainer_run(mae_trainer *t, const float *imgs, int B, const float *noise,
                           float *dimgs, float *loss);

#endif
