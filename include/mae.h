/*
 * libmae — Masked Autoencoders (He et al., 2021) for Vision Transformers, in C.
 *
 * This header is the whole public API. Read it top to bottom:
 *
 *   1. status codes, errors, version
 *   2. the model: load, save, create from a config
 *   3. the context: one caller's workspace, RNG and threads (the host's thread pool)
 *   4. the pipeline call mae_forward()
 *   5. the five parts (patch embedder, masker, encoder, decoder, loss), each callable on its own
 *   6. kernels, allocator
 *   7. pretraining: the trainer (backward pass, AdamW, checkpoints)
 *   8. images: PNG/PGM/PPM/IDX files, pixels <-> model tensors, the demo figure
 *   9. classification: the encoder with a head (models_vit.VisionTransformer), class labels
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
 * Features (embeddings) for downstream use: mae_embed() at the end of section 4, not
 * mae_forward (whose latent is in the masker's shuffled order, as the official code's).
 *
 * Conventions
 *   - Every function that can fail returns mae_status; results go to out-parameters, which are
 *     written only on success, and a failure leaks nothing. mae_last_error() gives the detail of
 *     this thread's last failure (valid until this thread's next failing call).
 *   - Ownership: *_create / *_load hand out an object freed with the matching *_free (every
 *     *_free accepts NULL). Part handles and tensor views are owned by their model. Buffers the
 *     caller passes in stay the caller's.
 *   - Tensors are dense row-major float32 arrays in PyTorch's layouts: images [B,C,H,W],
 *     tokens [B,L,D], predictions [B,L,p*p*C] with the patch pixels in (row, col, channel) order.
 *   - Token l of an image is the patch at grid row i = l / (W/p), column j = l % (W/p). Masks are
 *     [B,L] floats with 1 = removed; index arrays are int32_t [B,L].
 *   - Threads: a mae_model is immutable after creation and can be shared by any number of
 *     threads. A mae_ctx belongs to one thread at a time. A trainer updates its model in place and
 *     needs it exclusively while it steps. The model counts its live contexts: mae_trainer_create
 *     on a model made for inference (what create and load give) fails with MAE_ERR_STATE while
 *     any context of it lives, and mae_ctx_create fails with MAE_ERR_STATE while a trainer is
 *     being created for it. Calls that read the model without a context (save, tensor views,
 *     resize, the part handles' tensors) must not run concurrently with mae_trainer_create or a
 *     trainer's step. Results are bitwise identical for any thread count.
 *   - Objects allocate when they are created; forward passes and training steps allocate nothing.
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
/* "MAJOR.MINOR.PATCH", made from the numbers above so that the two cannot disagree. */
#define MAE_VERSION_STRINGIFY_(x) #x
#define MAE_VERSION_STRINGIFY(x) MAE_VERSION_STRINGIFY_(x)
#define MAE_VERSION_STRING MAE_VERSION_STRINGIFY(MAE_VERSION_MAJOR) "." MAE_VERSION_STRINGIFY(MAE_VERSION_MINOR) \
    "." MAE_VERSION_STRINGIFY(MAE_VERSION_PATCH)

/* Values are fixed forever; new codes are only appended. */
typedef enum mae_status {
    MAE_OK = 0,
    MAE_ERR_INVALID_ARG = 1,   /* NULL where a pointer is needed, a value out of range */
    MAE_ERR_NOMEM = 2,         /* an allocation failed, or a size overflowed */
    MAE_ERR_IO = 3,            /* open/read/write/rename failed */
    MAE_ERR_FORMAT = 4,        /* a malformed file */
    MAE_ERR_SHAPE = 5,         /* shapes that disagree (file vs config, batch vs context, ...) */
    MAE_ERR_UNSUPPORTED = 6,   /* valid, but not something this build or model can do */
    MAE_ERR_STATE = 7,         /* call order or object state is wrong */
    MAE_ERR_ABORTED = 8        /* a host callback (abort or progress) asked the call to stop */
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
    /* appended in 1.1: */
    int32_t  decoder_mlp_hidden; /* decoder MLP width; 0 = (int)(decoder_embed_dim * mlp_ratio). Hugging
                                  * Face's decoder_intermediate_size, which may differ from the encoder's */
    int32_t  qkv_bias;           /* 1: the q/k/v projections have a bias (MAE, timm; default); 0: none
                                  * (Hugging Face qkv_bias false), in the encoder and the decoder */
} mae_config;

/* Fill cfg with a preset: "base" (ViT-B/16: 768 x 12, 12 heads), "large" (ViT-L/16: 1024 x 24,
 * 16 heads), "huge" (ViT-H/14: 1280 x 32, 16 heads), each with the 512 x 8 decoder (16 heads),
 * 224 x 224 RGB, mask ratio 0.75, eps 1e-6; or "tiny" (32 x 32, patch 8, 64 x 2 encoder with 4
 * heads, 32 x 1 decoder) for tests. NULL means "base". Pass struct_size = sizeof *cfg. */
MAE_API mae_status mae_config_init(mae_config *cfg, size_t struct_size, const char *preset);

/* Create a model from a config with the official initialization: Xavier-uniform linears (biases
 * zero), the patch embedding's weight Xavier-uniform over its [D, C*p*p] view and its bias uniform
 * in +-1/sqrt(C*p*p), cls_token and mask_token normal(0, 0.02), LayerNorms 1 and 0, fixed 2-D
 * sin-cos position tables; random numbers from an MT19937 seeded with seed. An inconsistent
 * config is MAE_ERR_INVALID_ARG naming the field. */
MAE_API mae_status mae_model_create(const mae_config *cfg, uint64_t seed, mae_model **out);

/* Read a safetensors file with official MAE or Hugging Face ViTMAE tensor names, F32/F16/BF16.
 * path may also be a Hugging Face model directory (as from_pretrained takes it: model.safetensors,
 * or model.safetensors.index.json and its shards, with config.json) or an index file. A
 * config.json beside the weights is read when its model_type is "vit_mae" (and ignored
 * otherwise): its settings must agree with the file's __metadata__ where both give one
 * (MAE_ERR_FORMAT) and with the tensor shapes (MAE_ERR_SHAPE); what libmae cannot compute
 * (hidden_act other than "gelu", dropout) is MAE_ERR_UNSUPPORTED naming the key and value.
 * Settings neither gives come from the shapes (docs/FORMAT.md). A file
 * that holds only the encoder loads; reconstruction on it then fails with MAE_ERR_UNSUPPORTED.
 * A missing or malformed tensor is MAE_ERR_FORMAT and one that disagrees with the config
 * MAE_ERR_SHAPE, each naming the tensor (and both shapes).
 * mae_model_save writes a temporary file, flushes it and renames it over path: a crash never
 * leaves a half-written file there. */
MAE_API mae_status mae_model_load(const char *path, mae_model **out);        /* safetensors */
MAE_API mae_status mae_model_save(const mae_model *m, const char *path);     /* safetensors, atomic */
/* The same with the weights stored as dtype "F32" (= mae_model_save), "F16" or "BF16" (any case):
 * half the file, rounded to nearest, ties to even, subnormals included; NaN keeps its sign, +-inf
 * stays. A finite value that would become inf (|x| >= 65520 in F16, >= 0x1.fffp127 in BF16) is
 * MAE_ERR_UNSUPPORTED, naming the tensor, the element and the value, and nothing is written (a
 * file at path stays as it was). Another dtype: MAE_ERR_INVALID_ARG. A model loaded from an F16
 * file and saved as F16 again gives the same file. */
MAE_API mae_status mae_model_save_as(const mae_model *m, const char *path, const char *dtype);
MAE_API void       mae_model_free(mae_model *m);   /* NULL is fine; free its contexts and trainers first */

MAE_API mae_status mae_model_get_config(const mae_model *m, mae_config *cfg); /* set cfg->struct_size first */

/* A copy of m that runs on height x width images (each a multiple of the patch size, square or
 * not). Fixed sin-cos position tables are regenerated for the new grid (exact); learned ones are
 * resampled bicubically (align_corners = false, as Hugging Face's interpolate_pos_encoding and
 * the official fine-tuning code do), the cls row untouched. */
MAE_API mae_status mae_model_resize(const mae_model *m, int height, int width, mae_model **out);
MAE_API mae_status mae_model_has_decoder(const mae_model *m, int *has_decoder);
/* Number of floats in all tensors, in the file's sense (pos tables included; ViT-B/16 MAE:
 * 111,907,840). */
MAE_API mae_status mae_model_num_params(const mae_model *m, size_t *count);
/* Read-only view of one tensor by its official state_dict name. shape gets up to 4 dims.
 * Any out-parameter may be NULL. */
MAE_API mae_status mae_model_tensor(const mae_model *m, const char *name, const float **data,
                                    size_t *count, int *ndim, int64_t shape[4]);
/* The tensors in state_dict order: *count of them, and the name of the index-th (owned by m). */
MAE_API mae_status mae_model_tensor_count(const mae_model *m, int *count);
MAE_API mae_status mae_model_tensor_name(const mae_model *m, int index, const char **name);

/* Progress of a long call: done of total units so far (tensors of a load, blocks of a training
 * pass). Called on the thread that made the call. Returning nonzero cancels it: the call returns
 * MAE_ERR_ABORTED. */
typedef int (*mae_progress_fn)(void *user, int done, int total);

/* mae_model_load, calling progress (may be NULL) after each tensor is read: done = tensors read,
 * total = tensors of the model. Cancelled, it frees everything it made and *out is untouched. */
MAE_API mae_status mae_model_load_progress(const char *path, mae_progress_fn progress, void *user,
                                           mae_model **out);

/* mae_model_load from a file's bytes in memory (size bytes at buf, e.g. embedded in a program or
 * fetched over a network): the same checks, the same model, the same errors. buf is only read
 * during the call, never kept or changed; the model holds its own copy of the weights. */
MAE_API mae_status mae_model_load_memory(const void *buf, size_t size, mae_model **out);
/* Save m as a Hugging Face directory that transformers' from_pretrained loads: dir/config.json
 * (model_type "vit_mae", architectures ViTMAEForPreTraining, or ViTMAEModel for an encoder-only
 * model, and every setting: sizes, heads, both MLP widths, layer_norm_eps, qkv_bias, mask_ratio,
 * norm_pix_loss) and dir/model.safetensors (F32, transformers 5 tensor names, q/k/v split). Both
 * are written into a temporary directory next to dir, which is then renamed to dir: an existing
 * dir (holding only config.json and model weights; anything else is MAE_ERR_IO, nothing written)
 * is moved aside first and removed after. A crash leaves dir either as it was or complete, and
 * at worst a leftover dir.tmp.* or dir.old.* beside it (docs/FORMAT.md). A model running at a
 * non-square size is MAE_ERR_UNSUPPORTED (config.json has one image side). */
MAE_API mae_status mae_model_save_hf(const mae_model *m, const char *dir);
/* The precision a model's linear layers compute in (docs/PRECISION.md). */
typedef enum mae_precision {
    MAE_PRECISION_F32 = 0,    /* float32 throughout (what create and load give) */
    MAE_PRECISION_BF16 = 1    /* linear weights held once as bf16 (about half the memory), inputs
                               * rounded to bf16, products accumulated in float32 */
} mae_precision;

/* Makes m compute in precision. MAE_PRECISION_BF16 rounds every linear weight to bf16 (to nearest,
 * ties to even) and holds it only in that form, packed for the CPU's bf16 kernels (AVX512_BF16,
 * Arm BF16, else a portable one at float32 speed); each linear rounds its input to bf16 and sums
 * the products in float32. LayerNorm, attention, softmax, GELU, the residual stream and the loss
 * stay float32. Call it before any context or trainer exists on m (MAE_ERR_STATE otherwise);
 * tensor views and mae_model_save then give the bf16 weights (mae_model_save writes BF16). It
 * cannot be undone (MAE_ERR_UNSUPPORTED asking F32 of a bf16 model: load the file again). A
 * trainer on a bf16 model trains in mixed precision: float32 master weights (starting from the
 * bf16 weights), gradients and AdamW moments, bf16 operands in the forward and backward products
 * of the linears, the bf16 weights refreshed after every step; the model's tensors are then the
 * master weights. A classifier made from a bf16 model computes in bf16 too, and its finetuner
 * trains it the same way. Setting the precision a model has already does nothing. On failure the
 * model is unchanged. The conversion briefly holds the float32 model and its bf16 copy;
 * mae_model_load_with (below) reads a file straight into bf16. */
MAE_API mae_status mae_model_set_precision(mae_model *m, int precision);
MAE_API mae_status mae_model_get_precision(const mae_model *m, int *precision);

/* Options of a load (mae_model_load_with). Versioned by size like mae_config: call
 * mae_load_options_init(&o, sizeof o) first (it sets the defaults: float32, no progress), then
 * set the fields you need. A larger struct from a newer header is read up to the fields this
 * library knows (mae_version tells which; the others are ignored). */
typedef struct mae_load_options {
    uint32_t struct_size;       /* sizeof(mae_load_options) of the caller's header */
    int32_t  precision;         /* MAE_PRECISION_F32 (default) or MAE_PRECISION_BF16 */
    mae_progress_fn progress;   /* after each tensor read, as in mae_model_load_progress; NULL: none */
    void    *progress_user;     /* passed to progress */
} mae_load_options;
MAE_API mae_status mae_load_options_init(mae_load_options *opts, size_t struct_size);

/* mae_model_load (mae_model_load_memory) with options; opts NULL means the defaults. With
 * precision MAE_PRECISION_BF16 each linear weight is rounded to bf16 and packed as it is read,
 * so the float32 weights are never held (the peak is about the bf16 model plus its widest weight
 * as float32, where loading float32 and converting peaks at the float32 model plus its bf16
 * copy); the model equals, bit for bit, the one mae_model_load then
 * mae_model_set_precision(m, MAE_PRECISION_BF16) give, and reports MAE_PRECISION_BF16. A
 * precision other than the two, or a struct_size below the first version's, is
 * MAE_ERR_INVALID_ARG; a CPU without bf16 kernels MAE_ERR_UNSUPPORTED. Every error of the plain
 * load holds, and on any failure (cancelled too) nothing is kept and *out is untouched. */
MAE_API mae_status mae_model_load_with(const char *path, const mae_load_options *opts, mae_model **out);
MAE_API mae_status mae_model_load_memory_with(const void *buf, size_t size, const mae_load_options *opts,
                                              mae_model **out);

/* ---------------------------------------------------------------------------------------------
 * 3. The context
 * ------------------------------------------------------------------------------------------- */

/* Plans all memory for batches up to max_batch (ViT-B/16 at batch 8: about 75 MB of activations);
 * the forward calls allocate nothing. The model must outlive the context. A context starts with
 * the model's mask ratio, seed 0 and as many threads as the machine has cores (1 without OpenMP).
 * The seed: with noise == NULL a call draws [B,L] values as torch.manual_seed(seed);
 * torch.rand(B, L) does on the CPU (MT19937 seeded with seed & 0xffffffff, each value
 * (u32 & 0xFFFFFF) * 2^-24, row-major), so a seed gives the official demo's masks.
 * set_threads reallocates the per-thread scratch (the only call besides create that allocates);
 * results do not depend on the thread count. */
MAE_API mae_status mae_ctx_create(const mae_model *m, int max_batch, mae_ctx **out);
MAE_API void       mae_ctx_free(mae_ctx *c);                                 /* NULL is fine */
MAE_API mae_status mae_ctx_set_mask_ratio(mae_ctx *c, float ratio);          /* default: the model's; 0 = keep all */
MAE_API mae_status mae_ctx_set_seed(mae_ctx *c, uint64_t seed);              /* for noise == NULL */
/* 1..256 threads for this context's calls (default: the CPUs the process may use). Reallocates
 * the per-thread scratch. With the built-in pool the work runs on fewer threads if the system
 * refuses to create more (see mae_ctx_get_threads); with a host pool, n is the number of tasks
 * each parallel loop is split into. */
MAE_API mae_status mae_ctx_set_threads(mae_ctx *c, int n);
/* keep = floor(L * (1 - ratio)) for the context's current ratio; L = patches per image. */
MAE_API mae_status mae_ctx_get_dims(const mae_ctx *c, int *num_patches, int *keep, int *patch_dim);

/* Cancelling a running call from the host. abort (NULL: none, the default) is called on the
 * calling thread before every transformer block of the context's forward calls (mae_forward,
 * mae_embed, the encoder and decoder parts, mae_classifier_forward) and, inside the blocks,
 * before each macro-tile of a matrix product and each item of the other parallel loops that the
 * calling thread runs; when it returns nonzero the call stops and returns MAE_ERR_ABORTED, and
 * every other thread of the call stops at its next tile or item (so a large batch stops within
 * about one tile per thread; it is not asked again). Its outputs are then unspecified; the
 * model, the context's settings and its RNG are as before the call, and the context is reusable
 * at once. abort is called often (thousands of times per forward pass): keep it to reading a
 * flag. Another thread may flip the flag abort reads at any time. Results do not depend on it. */
typedef int (*mae_abort_fn)(void *user);
MAE_API mae_status mae_ctx_set_abort(mae_ctx *c, mae_abort_fn abort, void *user);

/* Bytes mae_ctx_create(m, max_batch) allocates (the planned buffers, the context itself and its
 * per-thread scratch for nthreads; 0 = the thread count mae_ctx_create starts with), without
 * creating it. */
MAE_API mae_status mae_ctx_memory(const mae_model *m, int max_batch, int nthreads, size_t *bytes);

/* Threads. Every parallel loop of the library is split into at most n tasks (n: the context's or
 * trainer's thread count) that write disjoint outputs, so results are bitwise identical for any
 * thread count and any pool. By default the tasks run on a built-in pool of threads, shared by
 * the whole process and created on first use; if the system cannot create a thread, the work runs
 * on the threads that exist (at least the calling one): never an exit or a print. An OPENMP=1
 * build uses OpenMP instead (whose runtime may exit the process when it cannot create threads).
 *
 * A host with its own job system (a game engine, a tool) can run the tasks itself: run(user,
 * ntasks, fn, task_arg) must call fn(task_arg, i) exactly once for every i in [0, ntasks), on any
 * threads, in any order, concurrently or not (all on the calling thread is fine), and return when
 * every call has returned, with their writes visible to the caller (any mutex, atomic counter or
 * join does that). ntasks <= nthreads; task i may use per-task scratch memory of the library, so
 * two calls with the same i must never overlap (exactly once guarantees it). A task never blocks
 * on another, so a pool that runs some tasks late or on one thread cannot deadlock, and run may be
 * called from several threads at once (different contexts) and from inside the host's own jobs.
 * Versioned by size like mae_config: call mae_thread_pool_init first. */
typedef void (*mae_pool_task)(void *task_arg, int task_index);
typedef struct mae_thread_pool {
    uint32_t struct_size;     /* sizeof(mae_thread_pool) of the caller's header */
    int32_t  nthreads;        /* tasks per loop at most: the workers that may run them at once, 1..256 */
    void   (*run)(void *user, int ntasks, mae_pool_task fn, void *task_arg);
    void    *user;            /* passed to run */
} mae_thread_pool;
MAE_API mae_status mae_thread_pool_init(mae_thread_pool *pool, size_t struct_size);   /* nthreads 1, run NULL */
/* Run this context's loops on pool (copied) and set its thread count to pool->nthreads
 * (reallocates the per-thread scratch; on failure nothing changes). NULL: the built-in pool
 * again, with the thread count kept. */
MAE_API mae_status mae_ctx_set_thread_pool(mae_ctx *c, const mae_thread_pool *pool);
/* The threads the context's loops will use: its thread count, or fewer when the built-in pool
 * could not create enough threads (it creates missing ones now). With a host pool: the count. */
MAE_API mae_status mae_ctx_get_threads(const mae_ctx *c, int *nthreads);
/* The pool that contexts and trainers created afterwards start with (NULL: the built-in one).
 * Not thread-safe with concurrent creation: call it at start-up, like mae_set_allocator. */
MAE_API mae_status mae_set_thread_pool(const mae_thread_pool *pool);

/* Per-op measurement, process-wide, off by default (a task then pays one branch). Every parallel
 * loop of the library belongs to an op kind ("linear", "matmul_nn", "matmul_tn", "attention",
 * "attention_backward", "layernorm", "layernorm_backward", "gelu", "gelu_backward",
 * "bias_backward", "grad_norm", "adamw", "other"); setting a mode clears the table of kinds.
 *   MAE_MEASURE_PROFILE: loops run as usual; each kind sums its loops' wall time and FLOPs (the
 *     library never prints: read the table with mae_measure_op; `mae bench --profile` prints it).
 *   MAE_MEASURE_SIMULATE: loops are NOT computed (outputs of calls are unspecified): each task of
 *     the partition the library makes for the context's thread count T reports its work (FLOPs of
 *     its micro-kernel calls, plus 8 per float it packs), and the loop's tasks are dealt to T lanes
 *     as the built-in pool deals them (the next task to the lane that is free first). work is the
 *     kind's total, span the sum over its loops of the busiest lane's share; its parallel
 *     efficiency at T is work / (T * span). Each loop is one barrier.
 * While a mode other than MAE_MEASURE_OFF is on, no other thread may use the library. */
enum { MAE_MEASURE_OFF = 0, MAE_MEASURE_PROFILE = 1, MAE_MEASURE_SIMULATE = 2 };
MAE_API mae_status mae_measure_set(int mode);
MAE_API mae_status mae_measure_count(int *kinds);   /* op kinds recorded since the last set */
/* Kind i (0 <= i < count): its name (static), loops (barriers), seconds and flops (profile),
 * work and span (simulation). Any output pointer may be NULL. */
MAE_API mae_status mae_measure_op(int i, const char **name, int *loops, double *seconds,
                                  double *flops, double *work, double *span);

/* ---------------------------------------------------------------------------------------------
 * 4. The pipeline
 * ------------------------------------------------------------------------------------------- */

/* imgs [B,C,H,W] (normalized floats); noise [B,L] or NULL (then the context's seeded RNG draws it
 * exactly as torch.manual_seed(seed); torch.rand(B, L) does on the CPU, continuing across calls);
 * each output may be NULL: loss (scalar), pred [B,L,p*p*C], mask [B,L] (1 = removed),
 * latent [B,1+keep,D] (encoder output after its final norm: cls first, then the kept patches in
 * ids_shuffle order, as the official code returns them), keep = floor(L*(1-ratio)).
 * With ratio 0 nothing is masked: the call succeeds and the loss is NaN, as in the official code.
 * batch outside [1, max_batch] is MAE_ERR_SHAPE. Asking for loss or pred from a model without a
 * decoder is MAE_ERR_UNSUPPORTED.
 * Looking for features? Even at ratio 0 the latent's tokens are permuted by the random shuffle
 * (the official behaviour, kept); mae_embed() below gives them in image order, pooled as asked. */
MAE_API mae_status mae_forward(mae_ctx *c, const float *imgs, int batch, const float *noise,
                               float *loss, float *pred, float *mask, float *latent);

/* Embeddings: what the encoder makes of whole images (no masking, no decoder needed), for
 * linear probes, retrieval and fine-tuning heads. Tokens are the encoder's output after its final
 * norm, cls first, then the L patches in image order (token 1 + l is patch l). */
typedef enum mae_pool {
    MAE_POOL_CLS = 0,      /* out [B,D]: the cls token */
    MAE_POOL_MEAN = 1,     /* out [B,D]: the mean of the L patch tokens (summed in double) */
    MAE_POOL_TOKENS = 2    /* out [B,1+L,D]: every token */
} mae_pool;

/* imgs [B,C,H,W] (normalized, e.g. by mae_images_to_input) -> out as pool says, in image order.
 * The context's mask ratio, seed and RNG are neither used nor changed; allocates nothing. */
MAE_API mae_status mae_embed(mae_ctx *c, const float *imgs, int batch, mae_pool pool, float *out);
/* D (floats per pooled embedding) and 1 + L (tokens per image with MAE_POOL_TOKENS). Either
 * out-parameter may be NULL. */
MAE_API mae_status mae_model_embed_dims(const mae_model *m, int *embed_dim, int *num_tokens);

/* ---------------------------------------------------------------------------------------------
 * 5. The parts. Handles are views owned by the model (never freed by the caller). Each forward
 *    runs in a context created for the same model (else MAE_ERR_INVALID_ARG), with a batch in
 *    [1, max_batch]; an index array entry outside [0, L) is MAE_ERR_INVALID_ARG. Use them to feed
 *    your own mask, or to take only the encoder's features. mae_forward() is exactly:
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
 * force a lower tier. mae_kernels_force applies to models created or loaded afterwards; models keep
 * the table they were created with. */
MAE_API const char *mae_kernels_name(void);
MAE_API mae_status  mae_kernels_force(const char *name);   /* UNSUPPORTED if the CPU lacks it */
/* The active table with its matrix-product blocking and where it came from, and the CPU it was
 * chosen for, as one line, e.g. "avx512: 10x32 micro-kernel, mc 100, kc 512, nc 256, prefetch
 * none (the tier's own ...); CPU AuthenticAMD family 25 model 97, L1d 32 KiB ...". The block
 * sizes are the tier's measured ones on AMD, derived from the cache sizes elsewhere, or
 * MAE_BLOCKING=mc,kc,nc[,prefetch 0|1] (read once; a malformed value is ignored and said so
 * here). INVALID_ARG when size is too small for the line. */
MAE_API mae_status  mae_kernels_describe(char *buf, size_t size);

/* Bring your own allocator. Set it before creating any object; objects are freed with the
 * allocator that made them. NULL restores malloc/free. alloc must return memory aligned to at
 * least 16 bytes; the library aligns its big buffers itself. Not thread-safe with concurrent
 * allocation: call it at start-up. */
typedef struct mae_allocator {
    void *(*alloc)(void *user, size_t size);
    void  (*free)(void *user, void *ptr);
    void  *user;
} mae_allocator;
MAE_API mae_status mae_set_allocator(const mae_allocator *a);

/* ---------------------------------------------------------------------------------------------
 * 7. Pretraining
 *
 * A trainer owns everything one training process needs: saved activations for batches up to
 * max_batch, the gradients (one flat buffer in the model's parameter layout), the AdamW moments,
 * the step count and an RNG for the masks. It updates its model in place: while it exists, use
 * the model elsewhere only between steps, and never from two threads at once.
 *
 * One optimizer step with accum_iter micro-batches (the official engine_pretrain.py loop):
 *
 *     for (int i = 0; i < cfg.accum_iter; i++)
 *         mae_trainer_forward_backward(t, imgs[i], batch, NULL, &loss);   // adds loss/accum_iter grads
 *     // data parallel: all-reduce mae_trainer_grads() across processes and divide by their number
 *     mae_trainer_step(t);                                                 // AdamW, then zero grads
 *
 * Fixed sin-cos position tables are frozen, as in the official code: they get no gradient and
 * are never updated; learned tables (any other values) are trained (see train_pos). Gradients
 * accumulate in float32.
 * ------------------------------------------------------------------------------------------- */

typedef struct mae_trainer mae_trainer;

/* Optimizer and schedule: AdamW and the per-iteration learning rate of main_pretrain.py /
 * util/lr_sched.py. Versioned by size like mae_config: call mae_train_config_init first; fields
 * are only ever appended.
 *
 * Peak lr = lr if lr > 0, else blr * eff_batch / 256 with
 * eff_batch = batch_size * accum_iter * world_size (batch_size 0 means the trainer's max_batch).
 * Optimizer step s (0-based) uses the data iteration it = s * accum_iter, the fractional epoch
 * e = it / iters_per_epoch (computed as epoch + rest / iters_per_epoch, as the official code)
 * and lr(e) = peak * e / warmup_epochs while e < warmup_epochs, then
 * min_lr + (peak - min_lr) * 0.5 * (1 + cos(pi * (e - warmup_epochs) / (epochs - warmup_epochs))).
 * With iters_per_epoch == 0 the lr is constant (peak). */
typedef struct mae_train_config {
    uint32_t struct_size;      /* sizeof(mae_train_config) of the caller's header */
    int32_t  accum_iter;       /* micro-batches per optimizer step; each adds grad(loss)/accum_iter (1) */
    double   blr;              /* base learning rate (1.5e-4, the paper's recipe) */
    double   lr;               /* absolute peak learning rate; 0 = derive it from blr (0) */
    double   min_lr;           /* floor of the cosine (0) */
    double   weight_decay;     /* decoupled, for tensors with 2+ dims not named *.bias (0.05) */
    double   beta1, beta2;     /* (0.9, 0.95) */
    double   eps;              /* (1e-8) */
    double   warmup_epochs;    /* linear warmup from exactly 0 (40) */
    double   epochs;           /* end of the cosine (400); must exceed warmup_epochs */
    int32_t  iters_per_epoch;  /* data iterations (micro-batches) per epoch; 0 = constant lr (0) */
    int32_t  batch_size;       /* micro-batch per process, for eff_batch; 0 = max_batch (0) */
    int32_t  world_size;       /* processes whose gradients the caller averages, for eff_batch (1) */
    float    clip_grad;        /* clip the global gradient norm to this; 0 = off, as official (0) */
    int32_t  train_pos;        /* position tables: -1 = train a table unless it is the fixed sin-cos
                                * one (official: fixed, frozen), 0 = freeze, 1 = train (-1) */
} mae_train_config;

/* Fill cfg with the official pretraining defaults listed above. */
MAE_API mae_status mae_train_config_init(mae_train_config *cfg, size_t struct_size);

/* Creates a trainer for m (which must have a decoder) with mae_train_config_init's defaults, the
 * model's mask ratio, seed 0 and as many threads as the machine has. All memory is planned here
 * for batches up to max_batch (activations, plus gradients and two AdamW moments: 3 x the
 * parameter count); forward_backward and step allocate nothing. m must outlive it.
 * A model made by mae_model_create/load/resize holds its weights once, packed for inference; the
 * first trainer converts it to trainable form (PyTorch-layout master weights plus packed copies),
 * holding it exclusively meanwhile. So: create the trainer before any context of the model, or
 * free them first; with live contexts it fails with MAE_ERR_STATE ("the model has N live
 * contexts"). A model converted once stays converted, and later trainers need no exclusivity to
 * be created. mae_ctx_create during the conversion fails with MAE_ERR_STATE. */
MAE_API mae_status mae_trainer_create(mae_model *m, int max_batch, mae_trainer **out);
MAE_API void       mae_trainer_free(mae_trainer *t);                          /* NULL is fine */

/* Replace the optimizer/schedule settings (checked: betas in [0,1), eps > 0, accum_iter >= 1,
 * epochs > warmup_epochs when scheduled, ...). Takes effect at the next step; the moments and
 * the step count are kept; an invalid value is MAE_ERR_INVALID_ARG and changes nothing. get fills
 * the fields that fit cfg->struct_size (set it first). */
MAE_API mae_status mae_trainer_set_config(mae_trainer *t, const mae_train_config *cfg);
MAE_API mae_status mae_trainer_get_config(const mae_trainer *t, mae_train_config *cfg);

/* As the context's setters. A ratio must leave at least one patch removed (the loss is a mean
 * over removed patches); a larger kept count than before re-plans the activation memory. */
MAE_API mae_status mae_trainer_set_mask_ratio(mae_trainer *t, float ratio);
MAE_API mae_status mae_trainer_set_seed(mae_trainer *t, uint64_t seed);     /* for noise == NULL */
MAE_API mae_status mae_trainer_set_threads(mae_trainer *t, int n);          /* 1..256 */
/* As mae_ctx_set_thread_pool and mae_ctx_get_threads (section 3). */
MAE_API mae_status mae_trainer_set_thread_pool(mae_trainer *t, const mae_thread_pool *pool);
MAE_API mae_status mae_trainer_get_threads(const mae_trainer *t, int *nthreads);

/* Forward + backward of the MAE loss on imgs [B,C,H,W] with noise [B,L] (NULL: drawn from the
 * trainer's RNG as mae_forward does). Adds d(loss)/d(param) / accum_iter into the gradients and
 * writes the loss (as mae_forward defines it, not divided by accum_iter) to *loss (may be NULL).
 * B in [1, max_batch]. Gradients do not depend on the thread count (bitwise). */
MAE_API mae_status mae_trainer_forward_backward(mae_trainer *t, const float *imgs, int batch,
                                                const float *noise, float *loss);

/* The same, and also writes dimgs [B,C,H,W] = d(loss)/d(imgs) / accum_iter: through the patch
 * embedding and through the loss target (patchify, and the per-patch normalization when the
 * model has norm_pix_loss). */
MAE_API mae_status mae_trainer_forward_backward_input(mae_trainer *t, const float *imgs, int batch,
                                                      const float *noise, float *loss, float *dimgs);

/* The gradient of one trainable tensor, by its official state_dict name, in that tensor's
 * PyTorch layout (count floats). The pointer is owned by the trainer and stays valid until it is
 * freed. A frozen tensor (fixed position tables) has no gradient: MAE_ERR_INVALID_ARG. */
MAE_API mae_status mae_trainer_grad(const mae_trainer *t, const char *name, const float **grad,
                                    size_t *count);

/* All gradients as one writable contiguous buffer in the model's parameter layout (the order of
 * mae_model_tensor's names; frozen tensors' slots are zero), for an all-reduce across processes:
 * the caller may replace the contents before mae_trainer_step. */
MAE_API mae_status mae_trainer_grads(mae_trainer *t, float **grads, size_t *count);

/* One AdamW step with the scheduled lr (official groups: no weight decay for 1-D tensors and
 * biases; cls_token and mask_token decay), then the gradients are zeroed and the step count
 * goes up by one. The global L2 norm of the gradients it used is kept for
 * mae_trainer_grad_norm. Non-finite gradients are MAE_ERR_STATE and change nothing. */
MAE_API mae_status mae_trainer_step(mae_trainer *t);
MAE_API mae_status mae_trainer_zero_grad(mae_trainer *t);

/* The global L2 norm (over all trainable tensors, before clipping) of the gradients the last
 * step used; 0 before the first step. */
MAE_API mae_status mae_trainer_grad_norm(const mae_trainer *t, double *norm);
/* Optimizer steps taken so far, and the learning rate the next step will use. */
MAE_API mae_status mae_trainer_get_step(const mae_trainer *t, int64_t *step);
MAE_API mae_status mae_trainer_get_lr(const mae_trainer *t, double *lr);

/* Checkpoints (safetensors, written atomically): the model's tensors under their official names
 * with the model config in __metadata__ (so the file also loads with mae_model_load), plus the
 * AdamW moments ("optim.exp_avg.<name>", "optim.exp_avg_sq.<name>"), the RNG state, the step
 * count, the mask ratio, the training config and the precision of the run ("trainer.precision":
 * "f32" or "bf16"; the tensors are the float32 masters either way). mae_trainer_load restores all
 * of that into a trainer whose model has the same architecture and precision (a different
 * precision is MAE_ERR_INVALID_ARG, naming both: for a bf16 checkpoint load the file as a model,
 * mae_model_set_precision bf16, then create the trainer; a file without the key is a float32
 * run's); continuing then gives bitwise the parameters of an uninterrupted run. On failure the trainer and its model are unchanged. A checkpoint whose
 * step lies beyond its own schedule (iters_per_epoch > 0 and more steps than the schedule's
 * epochs hold, counted as mae_trainer_get_lr counts them) is MAE_ERR_FORMAT. */
MAE_API mae_status mae_trainer_save(const mae_trainer *t, const char *path);
MAE_API mae_status mae_trainer_load(mae_trainer *t, const char *path);

/* Hooks for a host, as the context's (NULL clears). forward_backward calls abort before every
 * transformer block of its forward pass (and inside those blocks, as the context's) and once
 * more before the backward pass starts, never during it; progress only at the block checks, with
 * done = blocks run, total = depth + decoder_depth + 1 (the
 * backward pass counts as one), then once more with done = total when the backward pass is
 * done (its return value is then ignored). A nonzero return at a check cancels: the call returns
 * MAE_ERR_ABORTED, and the trainer is exactly as before it (gradients, RNG, step, model: the
 * backward pass, which adds into the gradients, has not started). So a cancelled micro-batch
 * needs no mae_trainer_zero_grad; the next call continues as if it had never been made. */
MAE_API mae_status mae_trainer_set_abort(mae_trainer *t, mae_abort_fn abort, void *user);
MAE_API mae_status mae_trainer_set_progress(mae_trainer *t, mae_progress_fn progress, void *user);

/* ---------------------------------------------------------------------------------------------
 * 8. Images: files in and out, model inputs from pixels, pixels from predictions, the demo grid
 *
 * Pixel buffers are 8-bit, rows top to bottom, channels interleaved: 1 gray, 2 gray+alpha,
 * 3 RGB, 4 RGBA. stride is the distance in bytes from one row to the next: 0 means packed
 * (width * channels); a negative stride walks a bottom-up buffer (pass its top row's address).
 * Buffers the library returns are packed and freed with mae_image_free.
 *
 * Readers treat files as hostile: every length and checksum is checked, and images above 2^28
 * pixels, or whose decoding needs more memory than mae_image_set_limit allows (1 GiB by default),
 * are refused (MAE_ERR_UNSUPPORTED) before anything is allocated for them.
 * ------------------------------------------------------------------------------------------- */

/* Reads a PNG (8/16-bit and 1/2/4-bit gray, gray+alpha, RGB, RGBA, palette with tRNS, Adam7
 * interlaced or not; 16-bit samples are rounded to 8 bits) or a binary PGM/PPM (P5/P6, any
 * maxval), told apart by their signature. desired_channels 0 keeps the file's channels (palette
 * -> RGB, or RGBA with tRNS; a tRNS colour key adds alpha); 1..4 converts (gray is replicated,
 * RGB becomes gray by the ITU-R 601 luma, a missing alpha is 255). *channels gets the buffer's
 * channel count. */
MAE_API mae_status mae_image_load(const char *path, int desired_channels, uint8_t **pixels,
                                  int *width, int *height, int *channels);
MAE_API mae_status mae_image_load_memory(const void *data, size_t size, int desired_channels,
                                         uint8_t **pixels, int *width, int *height, int *channels);
/* Frees any buffer returned by a function of this section. NULL is fine. */
MAE_API void       mae_image_free(void *buffer);

/* Writes 8-bit pixels (1..4 channels) as a PNG, atomically (temporary file, flush, rename). */
MAE_API mae_status mae_png_write(const char *path, const uint8_t *pixels, int width, int height,
                                 int channels, ptrdiff_t stride);
/* The same file image in memory: *png (free with mae_image_free), *size bytes. */
MAE_API mae_status mae_png_encode(const uint8_t *pixels, int width, int height, int channels,
                                  ptrdiff_t stride, uint8_t **png, size_t *size);
/* Writes a binary PGM (1 channel) or PPM (3 channels), maxval 255, atomically. */
MAE_API mae_status mae_pnm_write(const char *path, const uint8_t *pixels, int width, int height,
                                 int channels, ptrdiff_t stride);

/* Reads an IDX file (the MNIST / Fashion-MNIST format), plain or gzip-compressed (checked: header
 * fields, CRC-32, ISIZE): unsigned-byte data only (type 0x08), 1..4 dimensions. *data gets the
 * values in file order (free with mae_image_free), dims[0..ndim) the sizes. Fashion-MNIST's
 * train-images-idx3-ubyte.gz gives ndim 3, dims {60000, 28, 28}; its labels ndim 1, {60000}. */
MAE_API mae_status mae_idx_load(const char *path, uint8_t **data, int *ndim, int64_t dims[4]);
MAE_API mae_status mae_idx_load_memory(const void *buf, size_t size, uint8_t **data, int *ndim,
                                       int64_t dims[4]);

/* Resampling filters, as Pillow defines them (antialiased when downscaling). */
typedef enum mae_filter {
    MAE_FILTER_NEAREST = 0,
    MAE_FILTER_BILINEAR = 1,   /* triangle, support 1 */
    MAE_FILTER_BICUBIC = 2     /* Keys cubic with a = -0.5, support 2 (Pillow's BICUBIC) */
} mae_filter;

/* Normalization constants of the official models and of Fashion-MNIST, for mean/std below. */
#define MAE_IMAGENET_MEAN { 0.485f, 0.456f, 0.406f }
#define MAE_IMAGENET_STD  { 0.229f, 0.224f, 0.225f }
#define MAE_FASHION_MNIST_MEAN { 0.2860f }
#define MAE_FASHION_MNIST_STD  { 0.3530f }

/* Turns 8-bit pixels into one model input out [out_channels, out_height, out_width]:
 *   1. channels converted as mae_image_load does (gray replicated; RGB -> gray by the 8-bit ITU-R
 *      601 luma; alpha dropped, or 255 where out_channels 2 or 4 asks for one that is missing);
 *   2. geometry: with center_crop 0 the whole image is stretched to out_height x out_width; with
 *      1 the largest centred box of the output's aspect ratio is used (as Resize(shorter side)
 *      followed by CenterCrop); resampled with filter, then clamped to [0, 255];
 *   3. value: (v / 255 - mean[c]) / std[c] in double, rounded to float. mean/std have
 *      out_channels entries; NULL means 0 / 1 (plain v / 255).
 * Same size and no crop copies the pixels exactly, whatever the filter. */
MAE_API mae_status mae_image_to_input(const uint8_t *pixels, int width, int height, int channels,
                                      ptrdiff_t stride, int out_channels, int out_height,
                                      int out_width, mae_filter filter, int center_crop,
                                      const float *mean, const float *std, float *out);

/* The inverse of step 3 for one tensor img [channels, height, width]:
 * round(clamp((x * std[c] + mean[c]) * 255, 0, 255)) into pixels with out_channels (1..4; gray
 * is replicated to RGB, RGB becomes luma, alpha is 255). The official notebook truncates instead
 * of rounding: values differ by at most 1. */
MAE_API mae_status mae_input_to_image(const float *img, int channels, int height, int width,
                                      const float *mean, const float *std, uint8_t *pixels,
                                      ptrdiff_t stride, int out_channels);

/* What a prediction holds, for mae_output_to_image and mae_visualize. */
typedef enum mae_pred_space {
    MAE_PRED_PIXELS = 0,        /* normalized pixels: models trained with norm_pix_loss = 0 */
    MAE_PRED_NORM_OWN = 1,      /* per-patch normalized (norm_pix_loss = 1); each patch gets back the
                                 * mean and unbiased variance of its own pixels in the original
                                 * image (display only: the removed patches' statistics leak in) */
    MAE_PRED_NORM_VISIBLE = 2   /* per-patch normalized; visible patches get their own statistics,
                                 * removed patches the average of the nearest visible patches'
                                 * (Chebyshev distance on the grid): nothing hidden is used */
} mae_pred_space;

/* One image's prediction pred [L, p*p*C] (as mae_forward writes it) -> pixels of the model's
 * height x width: un-normalized per patch as space says (pred * sqrt(var + 1e-6) + mean, the
 * inverse of the loss's target), unpatchified, then as mae_input_to_image. img [C,H,W] is the
 * normalized input (needed by the NORM spaces, else may be NULL); mask [L] (1 = removed) is
 * needed by MAE_PRED_NORM_VISIBLE, which fails with MAE_ERR_INVALID_ARG if no patch is visible. */
MAE_API mae_status mae_output_to_image(const mae_model *m, const float *pred, const float *img,
                                       const float *mask, mae_pred_space space, const float *mean,
                                       const float *std, uint8_t *pixels, ptrdiff_t stride,
                                       int out_channels);

/* The official demo's figure for a batch: one row per image, four panels left to right:
 * original | masked (removed patches set to 0 in normalized space, i.e. the mean colour) |
 * reconstruction | reconstruction with the visible patches pasted back
 * (x * (1 - mask) + y * mask). imgs [B,C,H,W], pred [B,L,p*p*C], mask [B,L] as mae_forward
 * gives them, batch in [1, 4096]; mean/std as for mae_input_to_image (C entries or NULL). Each
 * panel is enlarged scale times (1..16, nearest neighbour, for small images), panels and rows are
 * separated by 2 * scale white pixels. *rgb gets a packed RGB8 buffer of *width x *height (free with
 * mae_image_free). */
MAE_API mae_status mae_visualize(const mae_model *m, const float *imgs, const float *pred,
                                 const float *mask, int batch, mae_pred_space space,
                                 const float *mean, const float *std, int scale, uint8_t **rgb,
                                 int *width, int *height);
/* The same figure written to a PNG file (atomically). */
MAE_API mae_status mae_visualize_png(const mae_model *m, const float *imgs, const float *pred,
                                     const float *mask, int batch, mae_pred_space space,
                                     const float *mean, const float *std, int scale,
                                     const char *path);

/* A batch of 8-bit images of any sizes -> the model's input out [B,C,H,W] (C, H, W the model's
 * in_chans and image size): mae_image_to_input on image b (pixels[b], widths[b] x heights[b],
 * channels[b] of 1..4, strides[b], or packed rows when strides is NULL) into out's b-th image.
 * On failure the error names the image and out is unspecified. */
MAE_API mae_status mae_images_to_input(const mae_model *m, int batch, const uint8_t *const *pixels,
                                       const int *widths, const int *heights, const int *channels,
                                       const ptrdiff_t *strides, mae_filter filter, int center_crop,
                                       const float *mean, const float *std, float *out);
/* Writes size bytes of data as the whole file at path, atomically, as the PNG writers do: a
 * temporary file next to it, flushed to disk (fsync), then renamed over path. On failure
 * (MAE_ERR_IO, the system's reason in mae_last_error: a full disk, a read-only folder, ...) the
 * temporary file is removed and an existing file at path is intact. data may be NULL when size
 * is 0 (an empty file). */
MAE_API mae_status mae_file_write(const char *path, const void *data, size_t size);

/* Decode memory: the most one image or IDX load holds at once while decoding (the decoded data,
 * the inflated rows of a PNG, a gzip IDX's output while it grows, a channel conversion; not the
 * file's own bytes, which mae_image_load and mae_idx_load read first). A load that would need
 * more fails with MAE_ERR_UNSUPPORTED before allocating it. Library-wide, for every thread; the
 * default is 1 GiB (a 16-bit RGBA PNG of 2^28 pixels needs 3 GiB and is refused unless the limit
 * is raised). max_bytes 0 restores the default. */
MAE_API mae_status mae_image_set_limit(size_t max_bytes);
MAE_API size_t     mae_image_get_limit(void);
/* ---------------------------------------------------------------------------------------------
 * 9. Classification
 *
 * A classifier is the encoder as the official fine-tuning code (models_vit.VisionTransformer)
 * computes it: patch embedding, cls token prepended, the full position table added to every
 * token (cls row included; nothing masked), the blocks, then either global pooling (the mean of
 * the L patch tokens, then the LayerNorm fc_norm; the encoder's final norm is not used) or the
 * cls token after the final norm, then head = Linear(D -> num_classes). Like a model it is
 * immutable after creation and shareable across threads; its forward runs in a context made for
 * its model (mae_classifier_model), allocates nothing, and gives bitwise the same logits for any
 * thread count.
 *
 * Files: the official fine-tuned names (the encoder's, plus fc_norm.* with global pooling,
 * norm.* without, and head.weight [num_classes, D], head.bias), or Hugging Face
 * ViTForImageClassification names (vit.* as for ViTMAE, classifier.weight / .bias; cls pooling).
 * __metadata__ may carry num_classes, global_pool (true / false; without it: global pooling
 * exactly when fc_norm.* is there) and the class names as id2label.<i> = name, one key per class
 * (each name at most 255 bytes), all of them or none.
 * ------------------------------------------------------------------------------------------- */

typedef struct mae_classifier mae_classifier;

/* A classifier from a pretrained model: its encoder copied (the decoder dropped), a new head
 * initialised as main_finetune.py does (weight trunc_normal_(std = 2e-5), i.e. normal with
 * std 2e-5 cut at +-2, bias 0; fc_norm weight 1, bias 0), from an MT19937 seeded with seed.
 * global_pool: 1 = mean of the patch tokens then fc_norm (the official fine-tuning default),
 * 0 = the cls token after norm. num_classes in [1, 1000000]. No labels (indices). A bf16 model
 * (mae_model_set_precision) gives a bf16 classifier: its encoder's linears and the head compute
 * in bf16 (the head's weights rounded when packed, its float32 values kept); a float32 one a
 * float32 classifier. */
MAE_API mae_status mae_classifier_create(const mae_model *m, int num_classes, int global_pool,
                                         uint64_t seed, mae_classifier **out);

/* Reads a classifier file (F32/F16/BF16, names above). num_classes 0 takes the file's; any
 * other value must equal the head's row count, else MAE_ERR_SHAPE naming both (a head is never
 * silently reinitialised). A file without head.weight / classifier.weight is MAE_ERR_FORMAT
 * (load it with mae_model_load and use mae_classifier_create). */
MAE_API mae_status mae_classifier_load(const char *path, int num_classes, mae_classifier **out);
/* Writes official names (norm.* only with cls pooling, fc_norm.* only with global pooling), the
 * model config, num_classes, global_pool and the labels (if set) in __metadata__; atomically, as
 * mae_model_save. Every tensor as F32, or as BF16 for a bf16 classifier that no finetuner
 * trained (mae_classifier_set_precision). */
MAE_API mae_status mae_classifier_save(const mae_classifier *c, const char *path);
/* The same with every tensor stored as dtype "F32" (= mae_classifier_save of float32), "F16" or "BF16" (any
 * case), with mae_model_save_as's rounding and errors; mae_classifier_load reads all three. */
MAE_API mae_status mae_classifier_save_as(const mae_classifier *c, const char *path, const char *dtype);
MAE_API void       mae_classifier_free(mae_classifier *c);          /* NULL is fine; free its contexts first */

/* The encoder model (owned by c): create forward contexts with mae_ctx_create on it, read its
 * config and tensors. */
MAE_API mae_status mae_classifier_model(const mae_classifier *c, const mae_model **m);
MAE_API mae_status mae_classifier_num_classes(const mae_classifier *c, int *num_classes);
MAE_API mae_status mae_classifier_global_pool(const mae_classifier *c, int *global_pool);

/* Class names. label gives class index's name (owned by c, valid until the labels change or c
 * is freed): the name the file or set_labels gave, else the index in decimal ("7").
 * has_labels says which. set_labels copies num_classes names (each non-empty, at most 255 bytes;
 * labels NULL clears them); not thread-safe with concurrent label reads. */
MAE_API mae_status mae_classifier_label(const mae_classifier *c, int index, const char **label);
MAE_API mae_status mae_classifier_has_labels(const mae_classifier *c, int *has_labels);
MAE_API mae_status mae_classifier_set_labels(mae_classifier *c, const char *const *labels);

/* Read-only view of a head tensor ("head.weight" [num_classes, D], "head.bias", "fc_norm.weight",
 * "fc_norm.bias"; fc_norm only with global pooling) or of an encoder tensor by its official
 * name, as mae_model_tensor. Any out-parameter may be NULL. */
MAE_API mae_status mae_classifier_tensor(const mae_classifier *c, const char *name,
                                         const float **data, size_t *count);

/* imgs [B,C,H,W] (normalized; the model's in_chans and run size) -> logits [B,num_classes]. ctx
 * must have been created for mae_classifier_model(c) (else MAE_ERR_INVALID_ARG); B in
 * [1, max_batch]. The context's abort hook is checked before each block. The context's mask
 * ratio, seed and RNG are neither used nor changed. */
MAE_API mae_status mae_classifier_forward(const mae_classifier *c, mae_ctx *ctx, const float *imgs,
                                          int batch, float *logits);
/* The same forward up to the head: features [B,D] are what the head reads, fc_norm of the mean
 * of the patch tokens (global pooling) or the cls token after norm. A classifier made with
 * mae_classifier_create(m, 1, 1, ...) gives the official linear probe's global-pool features. */
MAE_API mae_status mae_classifier_features(const mae_classifier *c, mae_ctx *ctx, const float *imgs,
                                           int batch, float *features);
/* Makes c compute in precision, with mae_model_set_precision's rules: MAE_PRECISION_BF16 converts
 * the encoder's linear weights as that call does and packs the head for the bf16 kernels (its
 * float32 values kept, rounded when packed), giving exactly the classifier mae_classifier_create
 * makes from a bf16 model (so a float32 file of one, loaded and set to bf16, computes the same
 * bits). Call it before any context exists on mae_classifier_model(c) and before any finetuner
 * is created on c (MAE_ERR_STATE otherwise; not thread-safe with other uses of c). Setting the
 * precision c has already does nothing; F32 of a bf16 classifier is MAE_ERR_UNSUPPORTED (load the
 * file again). On failure c is unchanged. mae_classifier_save of a bf16 classifier writes BF16, as
 * mae_model_save of a bf16 model (one a finetuner trained: its float32 masters, as F32).
 * get_precision: MAE_PRECISION_F32 or _BF16. */
MAE_API mae_status mae_classifier_set_precision(mae_classifier *c, int precision);
MAE_API mae_status mae_classifier_get_precision(const mae_classifier *c, int *precision);

/* Fine-tuning a classifier end to end (main_finetune.py / engine_finetune.py). A finetuner
 * updates its classifier in place (encoder and head): while it exists, use the classifier
 * elsewhere only between steps. It holds activations for batches up to max_batch, gradients and
 * AdamW moments for every trainable tensor, and the step count. The official recipe's parts:
 *   - AdamW (torch.optim.AdamW) with layer-wise lr decay as util/lr_decay.param_groups_lrd:
 *     layer id 0 for cls_token, pos_embed, patch_embed.*; i + 1 for blocks.i.*; depth + 1 for
 *     everything else (norm / fc_norm, head); lr_scale = layer_decay^(depth + 1 - layer id);
 *     no weight decay for 1-D tensors, pos_embed and cls_token; pos_embed is trained;
 *   - the per-iteration schedule of util/lr_sched (warmup from 0, then cosine to min_lr), as
 *     mae_train_config defines it, times each tensor's lr_scale;
 *   - label-smoothing cross-entropy (timm LabelSmoothingCrossEntropy), or a soft-target
 *     cross-entropy on targets the caller makes (mixup / cutmix);
 *   - gradient accumulation (accum_iter) and optional clipping of the global gradient norm.
 *   - checkpoints that resume exactly (mae_finetuner_save / _load).
 *   - mixup / cutmix as timm's Mixup (mode "batch") makes them: mae_mixup below, whose soft
 *     targets go to mae_finetuner_forward_backward.
 *   - mixed precision for a bf16 classifier (one made from a bf16 model), as the trainer's and
 *     PyTorch's autocast: float32 master weights (from the bf16 weights, exact), gradients and
 *     AdamW moments; every linear (patch embedding, the blocks', the head) computes its forward
 *     and its backward products dx = r(dy)·r(W), dW += r(dy)ᵀ·r(x) on bf16-rounded operands with
 *     float32 sums; the bf16 weights are refreshed from the masters after every step; the rest
 *     (LayerNorm, attention, the loss, drop path, layer-wise lr decay) as in float32
 *     (docs/PRECISION.md). mae_classifier_tensor / _save then give the masters.
 *   - drop path (stochastic depth) as timm's DropPath, rate linear over the blocks
 *     (torch.linspace(0, drop_path, depth)), one mask per sample for each block's attention and
 *     MLP branch (kept branches scaled by 1 / keep_prob). The masks of a call are drawn as
 *     torch.manual_seed(S); then, block by block, attention then MLP, torch.rand(B) in float32
 *     and floor(keep_prob + u) would draw them (blocks of rate 0 draw nothing, as timm's), with S = seed + step * accum_iter + (the call's
 *     index within the step) (mod 2^32): reproducible, and the same after a resume. */
typedef struct mae_finetuner mae_finetuner;

/* Versioned by size like mae_config: call mae_finetune_config_init first. Defaults are
 * main_finetune.py's argument defaults (in brackets). */
typedef struct mae_finetune_config {
    uint32_t struct_size;      /* sizeof(mae_finetune_config) of the caller's header */
    int32_t  accum_iter;       /* micro-batches per optimizer step (1) */
    double   blr;              /* base lr: peak = blr * eff_batch / 256 (1e-3) */
    double   lr;               /* absolute peak lr; 0 = from blr (0) */
    double   min_lr;           /* floor of the cosine (1e-6) */
    double   weight_decay;     /* decoupled, tensors with 2+ dims except pos_embed, cls_token (0.05) */
    double   layer_decay;      /* layer-wise lr decay, in (0, 1] (0.75) */
    double   beta1, beta2;     /* (0.9, 0.999): torch.optim.AdamW's defaults, as main_finetune.py */
    double   eps;              /* (1e-8) */
    double   warmup_epochs;    /* (5) */
    double   epochs;           /* end of the cosine; must exceed warmup_epochs (50) */
    int32_t  iters_per_epoch;  /* data iterations per epoch; 0 = constant lr (0) */
    int32_t  batch_size;       /* micro-batch per process for eff_batch; 0 = max_batch (0) */
    int32_t  world_size;       /* processes, for eff_batch (1) */
    float    smoothing;        /* label smoothing in [0, 1) for integer labels (0.1) */
    float    clip_grad;        /* clip the global gradient norm to this; 0 = off (0) */
    float    drop_path;        /* stochastic depth rate of the last block, in [0, 1) (0.1) */
} mae_finetune_config;

MAE_API mae_status mae_finetune_config_init(mae_finetune_config *cfg, size_t struct_size);

/* A finetuner for c with the default config and as many threads as the machine has. The
 * classifier's model must have no live context (it is converted to trainable form, as
 * mae_trainer_create does: MAE_ERR_STATE otherwise). c must outlive the finetuner. */
MAE_API mae_status mae_finetuner_create(mae_classifier *c, int max_batch, mae_finetuner **out);
MAE_API void       mae_finetuner_free(mae_finetuner *f);                    /* NULL is fine */
MAE_API mae_status mae_finetuner_set_config(mae_finetuner *f, const mae_finetune_config *cfg);
MAE_API mae_status mae_finetuner_get_config(const mae_finetuner *f, mae_finetune_config *cfg);
MAE_API mae_status mae_finetuner_set_threads(mae_finetuner *f, int n);      /* 1..256 */
MAE_API mae_status mae_finetuner_set_seed(mae_finetuner *f, uint64_t seed); /* drop path's; default 0 */

/* Forward and backward on imgs [B,C,H,W] with either labels [B] (class indices; smoothed by
 * cfg.smoothing: target = (1 - s) one-hot + s / K) or targets [B,K] (soft target rows, e.g. from
 * mixup, used as they are); the other NULL. Adds d(loss)/d(param) / accum_iter into the
 * gradients; *loss (may be NULL) gets the mean cross-entropy over the batch, logits (may be
 * NULL) [B,K] the forward's logits. A label outside [0, K) is MAE_ERR_INVALID_ARG and changes
 * nothing. Bitwise the same for any thread count. */
MAE_API mae_status mae_finetuner_forward_backward(mae_finetuner *f, const float *imgs, int batch,
                                                  const int32_t *labels, const float *targets,
                                                  float *loss, float *logits);
/* One AdamW step with the scheduled lr (each tensor's lr_scale applied), then the gradients are
 * zeroed, the weights repacked, the step count + 1. Non-finite gradients: MAE_ERR_STATE, nothing
 * changes. */
MAE_API mae_status mae_finetuner_step(mae_finetuner *f);
MAE_API mae_status mae_finetuner_zero_grad(mae_finetuner *f);
/* The gradient of a trainable tensor by its official name (encoder tensors, fc_norm.*, head.*);
 * owned by the finetuner. */
MAE_API mae_status mae_finetuner_grad(const mae_finetuner *f, const char *name, const float **grad,
                                      size_t *count);
/* A tensor's parameter group: its lr_scale and weight decay (param_groups_lrd's). */
MAE_API mae_status mae_finetuner_param_group(const mae_finetuner *f, const char *name,
                                             double *lr_scale, double *weight_decay);
MAE_API mae_status mae_finetuner_get_step(const mae_finetuner *f, int64_t *step);
/* The lr the next step uses before the tensors' lr_scale (the head's lr). */
MAE_API mae_status mae_finetuner_get_lr(const mae_finetuner *f, double *lr);
/* Hooks as the trainer's (mae_trainer_set_abort): forward_backward checks them before every
 * block of the forward pass and before the backward pass (progress: done = blocks run, total =
 * depth + 1, then done = total when the call ends). A cancel returns MAE_ERR_ABORTED with the
 * finetuner exactly as before the call (gradients, step, drop path draws, model). */
MAE_API mae_status mae_finetuner_set_abort(mae_finetuner *f, mae_abort_fn abort, void *user);
MAE_API mae_status mae_finetuner_set_progress(mae_finetuner *f, mae_progress_fn progress, void *user);

/* Checkpoints (safetensors, atomic): the classifier file (so it also loads with
 * mae_classifier_load) plus the AdamW moments ("optim.exp_avg.<name>",
 * "optim.exp_avg_sq.<name>"), the step count, the drop path seed, the config
 * ("finetune.<field>") and the precision of the run ("finetune.precision": "f32" or "bf16"; the
 * tensors are the float32 masters either way) in __metadata__. mae_finetuner_load restores all
 * of that into a finetuner whose classifier has the same architecture, pooling and class count
 * (MAE_ERR_SHAPE otherwise; a file without the finetuner's keys is MAE_ERR_FORMAT) and the same
 * precision (MAE_ERR_INVALID_ARG otherwise, naming both: make the classifier from a bf16 model to
 * resume a bf16 run; a file without "finetune.precision" is a float32 run's); the gradients are
 * zeroed. Continuing then gives bitwise
 * the parameters of an uninterrupted run. On failure the finetuner and its classifier are
 * unchanged. */
MAE_API mae_status mae_finetuner_save(const mae_finetuner *f, const char *path);
MAE_API mae_status mae_finetuner_load(mae_finetuner *f, const char *path);

/* Mixup and cutmix of one batch, as timm's Mixup(mode="batch", correct_lam=True) with
 * main_finetune.py's defaults in brackets. Versioned by size: call mae_mixup_config_init. */
typedef struct mae_mixup_config {
    uint32_t struct_size;
    float mixup_alpha;     /* Beta(a, a) for mixup; 0 = off (0.8, the recipe's) */
    float cutmix_alpha;    /* Beta(a, a) for cutmix; 0 = off (1.0, the recipe's) */
    float prob;            /* chance that a batch is mixed at all (1) */
    float switch_prob;     /* with both on: chance of cutmix instead of mixup (0.5) */
    float smoothing;       /* label smoothing of the targets (0.1) */
} mae_mixup_config;
MAE_API mae_status mae_mixup_config_init(mae_mixup_config *cfg, size_t struct_size);

/* Mixes imgs [B,C,H,W] in place with the batch reversed (image b with image B-1-b): mixup
 * x = lam x + (1 - lam) flip(x); cutmix pastes a box of flip(x) (side sqrt(1 - lam) of the
 * image's, centred at a uniform random pixel, clipped; lam then recomputed from its area). Writes
 * targets [B,K] = lam y(b) + (1 - lam) y(B-1-b) with y the smoothed one-hot rows (on
 * 1 - s + s/K, off s/K) and *lam (may be NULL; 1 when not mixed). All random numbers come from an
 * MT19937 seeded with seed, so a step's mix depends on (seed, nothing else): pass e.g. a run seed
 * plus the step count, and a resumed run mixes as the uninterrupted one. B must be even (as
 * timm's), labels in [0, K). */
MAE_API mae_status mae_mixup(const mae_mixup_config *cfg, uint64_t seed, float *imgs, int batch,
                             int channels, int height, int width, const int32_t *labels,
                             int num_classes, float *targets, float *lam);

#ifdef __cplusplus
}
#endif
#endif /* MAE_H */
