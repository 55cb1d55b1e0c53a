/*
 * libmae — Masked Autoencoders (He et al., 2021) for Vision Transformers, in C.
 *
 * This header is the whole public API. Read it top to bottom:
 *
 *   1. status codes, errors, version
 *   2. the model: load, save, create from a config
 *   3. the context: one caller's workspace, RNG and thread count
 *   4. the pipeline call mae_forward()
 *   5. the five parts (patch embedder, masker, encoder, decoder, loss), each callable on its own
 *   6. kernels, allocator
 *
 * A minimal program:
 *
 *     mae_model *m; mae_ctx *c; float loss;
 *     if (mae_model_load("mae.safetensors", &m) != MAE_OK) { puts(mae_last_error()); return 1; }
 *     if (mae_ctx_create(m, 8, &c) != MAE_OK) { ... }
 *     mae_ctx_set_seed(c, 2);
 *     mae_forward(c, imgs, 8, NULL, &loss, pred, mask, NULL);
 *     mae_ctx_free(c); mae_model_free(m);
 *
 * Conventions
 *   - Every function that can fail returns mae_status; results go to out-parameters, which are
 *     written only on success. mae_last_error() gives the detail of this thread's last failure.
 *   - Tensors are dense row-major float32 arrays in PyTorch's layouts: images [B,C,H,W],
 *     tokens [B,L,D], predictions [B,L,p*p*C] with the patch pixels in (row, col, channel) order.
 *   - Token l of an image is the patch at grid row i = l / (W/p), column j = l % (W/p).
 *   - Threads: a mae_model is immutable after creation and can be shared by any number of
 *     threads. A mae_ctx belongs to one thread at a time. A trainer updates its model in place and
 *     needs it exclusively while it steps.
 *   - Nothing in the library aborts, exits or prints.
 */
#ifndef MAE_H
#define MAE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(MAE_BUILD_DLL)
#  define MAE_API __declspec(dllexport)
#elif defined(_WIN32) && defined(MAE_DLL)
#  define MAE_API __declspec(dllimport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define MAE_API __attribute__((visibility("default")))
#else
#  define MAE_API
#endif

/* ---------------------------------------------------------------------------------------------
 * 1. Status, errors, version
 * ------------------------------------------------------------------------------------------- */

#define MAE_VERSION_MAJOR 1
#define MAE_VERSION_MINOR 0
#define MAE_VERSION_PATCH 0
#define MAE_VERSION_NUMBER (MAE_VERSION_MAJOR * 10000 + MAE_VERSION_MINOR * 100 + MAE_VERSION_PATCH)
#define MAE_VERSION_STRING "1.0.0"

/* Values are fixed forever; new codes are only appended. */
typedef enum mae_status {
    MAE_OK = 0,
    MAE_ERR_INVALID_ARG = 1,   /* NULL where a pointer is needed, a value out of range */
    MAE_ERR_NOMEM = 2,         /* an allocation failed, or a size overflowed */
    MAE_ERR_IO = 3,            /* open/read/write/rename failed */
    MAE_ERR_FORMAT = 4,        /* a malformed file */
    MAE_ERR_SHAPE = 5,         /* shapes that disagree (file vs config, batch vs context, ...) */
    MAE_ERR_UNSUPPORTED = 6,   /* valid, but not something this build or model can do */
    MAE_ERR_STATE = 7          /* call order or object state is wrong */
} mae_status;

MAE_API const char *mae_status_str(mae_status s);      /* static string, never NULL */
MAE_API const char *mae_last_error(void);              /* thread-local detail of this thread's last failure */
MAE_API unsigned    mae_version(void);                 /* MAJOR*10000 + MINOR*100 + PATCH */
MAE_API const char *mae_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * 2. The model: configuration and weights
 * ------------------------------------------------------------------------------------------- */

typedef struct mae_model mae_model;   /* config + weights; immutable, shareable across threads */
typedef struct mae_ctx   mae_ctx;     /* one caller's workspace, RNG, thread count */

/* Architecture of a model. Versioned by size: set struct_size (mae_config_init does) and the
 * library reads only the fields that fit; fields are only ever appended. Names follow the
 * official MaskedAutoencoderViT constructor. */
typedef struct mae_config {
    uint32_t struct_size;        /* sizeof(mae_config) of the caller's header */
    int32_t  img_size;           /* square input side the weights were made for (224) */
    int32_t  patch_size;         /* p; must divide img_size */
    int32_t  in_chans;           /* C: 3 for RGB, 1 for gray */
    int32_t  embed_dim;          /* D */
    int32_t  depth;              /* encoder blocks */
    int32_t  num_heads;          /* must divide embed_dim */
    int32_t  decoder_embed_dim;  /* Dd */
    int32_t  decoder_depth;      /* decoder blocks */
    int32_t  decoder_num_heads;  /* must divide decoder_embed_dim */
    float    mlp_ratio;          /* MLP hidden = (int)(dim * mlp_ratio) */
    int32_t  norm_pix_loss;      /* 0 or 1 */
    float    mask_ratio;         /* default ratio of removed patches, in [0,1) */
    float    layer_norm_eps;     /* 1e-6 in the official weights, 1e-12 in Hugging Face's */
    /* appended in 1.0: */
    int32_t  img_height;         /* input height and width the model runs at; 0 = img_size. */
    int32_t  img_width;          /* Each must be a multiple of patch_size. */
} mae_config;

/* Fill cfg with a preset: "base" (ViT-B/16), "large" (ViT-L/16), "huge" (ViT-H/14), each with the
 * 512x8 decoder, or "tiny" (a 32x32 test model). NULL means "base". */
MAE_API mae_status mae_config_init(mae_config *cfg, size_t struct_size, const char *preset);

/* Create a model from a config with the official initialization (Xavier-uniform linears, the
 * patch-embedding rule, normal(0.02) tokens, fixed 2-D sin-cos position tables), drawn from an
 * RNG seeded with seed. */
MAE_API mae_status mae_model_create(const mae_config *cfg, uint64_t seed, mae_model **out);

/* Read a safetensors file with official MAE or Hugging Face ViTMAE tensor names, F32/F16/BF16.
 * The config comes from __metadata__, else it is inferred from the shapes. A file that holds only
 * the encoder loads; reconstruction on it then fails with MAE_ERR_UNSUPPORTED. */
MAE_API mae_status mae_model_load(const char *path, mae_model **out);        /* safetensors */
MAE_API mae_status mae_model_save(const mae_model *m, const char *path);     /* safetensors, atomic */
MAE_API void       mae_model_free(mae_model *m);                             /* NULL is fine */

MAE_API mae_status mae_model_get_config(const mae_model *m, mae_config *cfg); /* set cfg->struct_size first */

/* A copy of m that runs on height x width images (each a multiple of the patch size, square or
 * not). Fixed sin-cos position tables are regenerated for the new grid (exact); learned ones are
 * resampled bicubically (align_corners = false, as Hugging Face's interpolate_pos_encoding and
 * the official fine-tuning code do), the cls row untouched. */
MAE_API mae_status mae_model_resize(const mae_model *m, int height, int width, mae_model **out);
MAE_API mae_status mae_model_has_decoder(const mae_model *m, int *has_decoder);
/* Number of floats in all tensors, in the file's sense (pos tables included). */
MAE_API mae_status mae_model_num_params(const mae_model *m, size_t *count);
/* Read-only view of one tensor by its official state_dict name. shape gets up to 4 dims.
 * Any out-parameter may be NULL. */
MAE_API mae_status mae_model_tensor(const mae_model *m, const char *name, const float **data,
                                    size_t *count, int *ndim, int64_t shape[4]);
/* The tensors in state_dict order: *count of them, and the name of the index-th (owned by m). */
MAE_API mae_status mae_model_tensor_count(const mae_model *m, int *count);
MAE_API mae_status mae_model_tensor_name(const mae_model *m, int index, const char **name);

/* ---------------------------------------------------------------------------------------------
 * 3. The context
 * ------------------------------------------------------------------------------------------- */

/* Plans all memory for batches up to max_batch; the forward calls allocate nothing. The model
 * must outlive the context. */
MAE_API mae_status mae_ctx_create(const mae_model *m, int max_batch, mae_ctx **out);
MAE_API void       mae_ctx_free(mae_ctx *c);                                 /* NULL is fine */
MAE_API mae_status mae_ctx_set_mask_ratio(mae_ctx *c, float ratio);          /* default: the model's; 0 = keep all */
MAE_API mae_status mae_ctx_set_seed(mae_ctx *c, uint64_t seed);              /* for noise == NULL */
MAE_API mae_status mae_ctx_set_threads(mae_ctx *c, int n);                   /* 1..256; capped by the build */
/* keep = floor(L * (1 - ratio)) for the context's current ratio; L = patches per image. */
MAE_API mae_status mae_ctx_get_dims(const mae_ctx *c, int *num_patches, int *keep, int *patch_dim);

/* ---------------------------------------------------------------------------------------------
 * 4. The pipeline
 * ------------------------------------------------------------------------------------------- */

/* imgs [B,C,H,W] (normalized floats); noise [B,L] or NULL (then the context's seeded RNG draws it
 * exactly as torch.manual_seed(seed); torch.rand(B, L) does on the CPU, continuing across calls);
 * each output may be NULL: loss (scalar), pred [B,L,p*p*C], mask [B,L] (1 = removed),
 * latent [B,1+keep,D] (encoder output after its final norm: cls first, then the kept patches in
 * ids_shuffle order, as the official code returns them), keep = floor(L*(1-ratio)).
 * With ratio 0 nothing is masked: the call succeeds and the loss is NaN, as in the official code.
 * Asking for loss or pred from a model without a decoder is MAE_ERR_UNSUPPORTED. */
MAE_API mae_status mae_forward(mae_ctx *c, const float *imgs, int batch, const float *noise,
                               float *loss, float *pred, float *mask, float *latent);

/* ---------------------------------------------------------------------------------------------
 * 5. The parts. Handles are views owned by the model (never freed by the caller). Each forward
 *    runs in a context created for the same model. mae_forward() is exactly:
 *      patch_embed -> masker -> encoder -> decoder -> loss
 * ------------------------------------------------------------------------------------------- */

typedef struct mae_patch_embed mae_patch_embed;
typedef struct mae_masker      mae_masker;
typedef struct mae_encoder     mae_encoder;
typedef struct mae_decoder     mae_decoder;
typedef struct mae_loss        mae_loss;

MAE_API mae_status mae_model_patch_embed(const mae_model *m, const mae_patch_embed **out);
MAE_API mae_status mae_model_masker(const mae_model *m, const mae_masker **out);
MAE_API mae_status mae_model_encoder(const mae_model *m, const mae_encoder **out);
MAE_API mae_status mae_model_decoder(const mae_model *m, const mae_decoder **out);   /* UNSUPPORTED without one */
MAE_API mae_status mae_model_loss(const mae_model *m, const mae_loss **out);

/* imgs [B,C,H,W] -> tokens [B,L,D] = conv(imgs) + pos_embed[1:]. */
MAE_API mae_status mae_patch_embed_forward(const mae_patch_embed *pe, mae_ctx *c, const float *imgs,
                                           int batch, float *tokens);

/* noise [B,L] (NULL: drawn from the context's RNG) -> ids_shuffle = stable argsort(noise),
 * ids_restore = its inverse, mask [B,L] (1 = removed). Any output may be NULL. *keep gets
 * floor(L*(1-ratio)) for the context's ratio. */
MAE_API mae_status mae_masker_forward(const mae_masker *mk, mae_ctx *c, int batch, const float *noise,
                                      int32_t *ids_shuffle, int32_t *ids_restore, float *mask, int *keep);

/* tokens [B,L,D] from the patch embedder; the first keep entries of each row of ids_shuffle [B,L]
 * pick the visible tokens (ids_shuffle NULL: all L tokens in image order, keep must be L).
 * -> latent [B,1+keep,D] after the final norm. */
MAE_API mae_status mae_encoder_forward(const mae_encoder *e, mae_ctx *c, const float *tokens, int batch,
                                       const int32_t *ids_shuffle, int keep, float *latent);

/* latent [B,1+keep,D], ids_restore [B,L] (NULL with keep == L: image order) -> pred [B,L,p*p*C]. */
MAE_API mae_status mae_decoder_forward(const mae_decoder *d, mae_ctx *c, const float *latent, int batch,
                                       const int32_t *ids_restore, int keep, float *pred);

/* Mean over removed patches of the per-patch MSE between pred and patchify(imgs) (normalized per
 * patch when the model has norm_pix_loss). NaN when the mask removes nothing. */
MAE_API mae_status mae_loss_forward(const mae_loss *l, mae_ctx *c, const float *imgs, int batch,
                                    const float *pred, const float *mask, float *loss);

/* imgs [B,C,H,W] -> [B,L,p*p*C], the loss's target layout (no per-patch normalization). */
MAE_API mae_status mae_patchify(const mae_model *m, const float *imgs, int batch, float *patches);
/* [B,L,p*p*C] -> [B,C,H,W]. */
MAE_API mae_status mae_unpatchify(const mae_model *m, const float *patches, int batch, float *imgs);

/* ---------------------------------------------------------------------------------------------
 * 6. Kernels and memory
 * ------------------------------------------------------------------------------------------- */

/* Name of the kernel table new models use: "scalar", "avx2", "avx512" or "neon". The best the
 * CPU and OS support is chosen once; the environment variable MAE_KERNELS or this setter can
 * force a lower tier. Models keep the table they were created with. */
MAE_API const char *mae_kernels_name(void);
MAE_API mae_status  mae_kernels_force(const char *name);   /* UNSUPPORTED if the CPU lacks it */

/* Bring your own allocator. Set it before creating any object; objects are freed with the
 * allocator that made them. NULL restores malloc/free. alloc must return memory aligned to at
 * least 16 bytes; the library aligns its big buffers itself. */
typedef struct mae_allocator {
    void *(*alloc)(void *user, size_t size);
    void  (*free)(void *user, void *ptr);
    void  *user;
} mae_allocator;
MAE_API mae_status mae_set_allocator(const mae_allocator *a);

/* [training API: declared below by the training module] */

#ifdef __cplusplus
}
#endif
#endif /* MAE_H */
