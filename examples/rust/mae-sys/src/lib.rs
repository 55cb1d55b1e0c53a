//! The raw C API of libmae (include/mae.h), declaration for declaration, for the safe `mae` crate
//! (examples/rust/mae) or anyone who wants the C calls themselves. Nothing here is safe to call
//! without reading mae.h: every pointer and size is the caller's promise. build.rs links libmae.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_float, c_int, c_uint, c_void};

pub type Status = c_int;
pub const OK: Status = 0;
pub const ERR_INVALID_ARG: Status = 1;
pub const ERR_NOMEM: Status = 2;
pub const ERR_IO: Status = 3;
pub const ERR_FORMAT: Status = 4;
pub const ERR_SHAPE: Status = 5;
pub const ERR_UNSUPPORTED: Status = 6;
pub const ERR_STATE: Status = 7;
pub const ERR_ABORTED: Status = 8;

pub type AbortFn = Option<unsafe extern "C" fn(user: *mut c_void) -> c_int>;
pub type ProgressFn = Option<unsafe extern "C" fn(user: *mut c_void, done: c_int, total: c_int) -> c_int>;

/// mae_pool
pub const POOL_CLS: c_int = 0;
pub const POOL_MEAN: c_int = 1;
pub const POOL_TOKENS: c_int = 2;
/// mae_filter
pub const FILTER_NEAREST: c_int = 0;
pub const FILTER_BILINEAR: c_int = 1;
pub const FILTER_BICUBIC: c_int = 2;

#[repr(C)]
pub struct Model {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Ctx {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Trainer {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Classifier {
    _private: [u8; 0],
}
#[repr(C)]
pub struct Finetuner {
    _private: [u8; 0],
}

/// mae_load_options: versioned by struct_size (set by mae_load_options_init), only ever appended to.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub struct_size: u32,
    pub precision: i32,
    pub progress: ProgressFn,
    pub progress_user: *mut c_void,
}

/// mae_config: versioned by struct_size, only ever appended to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    pub struct_size: u32,
    pub img_size: i32,
    pub patch_size: i32,
    pub in_chans: i32,
    pub embed_dim: i32,
    pub depth: i32,
    pub num_heads: i32,
    pub decoder_embed_dim: i32,
    pub decoder_depth: i32,
    pub decoder_num_heads: i32,
    pub mlp_ratio: c_float,
    pub norm_pix_loss: i32,
    pub mask_ratio: c_float,
    pub layer_norm_eps: c_float,
    pub img_height: i32,
    pub img_width: i32,
    /// 0: decoder_embed_dim * mlp_ratio
    pub decoder_mlp_hidden: i32,
    /// 1: the q/k/v projections have a bias (MAE's; the presets set it)
    pub qkv_bias: i32,
}

/// mae_finetune_config: versioned by struct_size (fill it with mae_finetune_config_init).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FinetuneConfig {
    pub struct_size: u32,
    pub accum_iter: i32,
    pub blr: f64,
    pub lr: f64,
    pub min_lr: f64,
    pub weight_decay: f64,
    pub layer_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub warmup_epochs: f64,
    pub epochs: f64,
    pub iters_per_epoch: i32,
    pub batch_size: i32,
    pub world_size: i32,
    pub smoothing: c_float,
    pub clip_grad: c_float,
    pub drop_path: c_float,
}

extern "C" {
    pub fn mae_status_str(s: Status) -> *const c_char;
    pub fn mae_last_error() -> *const c_char;
    pub fn mae_version() -> c_uint;
    pub fn mae_version_string() -> *const c_char;
    pub fn mae_kernels_name() -> *const c_char;

    // 2. models
    pub fn mae_config_init(cfg: *mut Config, struct_size: usize, preset: *const c_char) -> Status;
    pub fn mae_model_create(cfg: *const Config, seed: u64, out: *mut *mut Model) -> Status;
    pub fn mae_model_load(path: *const c_char, out: *mut *mut Model) -> Status;
    pub fn mae_model_load_progress(path: *const c_char, progress: ProgressFn, user: *mut c_void,
                                   out: *mut *mut Model) -> Status;
    pub fn mae_model_load_memory(buf: *const c_void, size: usize, out: *mut *mut Model) -> Status;
    pub fn mae_model_save(m: *const Model, path: *const c_char) -> Status;
    pub fn mae_model_set_precision(m: *mut Model, precision: c_int) -> Status;
    pub fn mae_load_options_init(opts: *mut LoadOptions, struct_size: usize) -> Status;
    pub fn mae_model_load_with(path: *const c_char, opts: *const LoadOptions, out: *mut *mut Model) -> Status;
    pub fn mae_model_load_memory_with(buf: *const c_void, size: usize, opts: *const LoadOptions,
                                      out: *mut *mut Model) -> Status;
    pub fn mae_model_get_precision(m: *const Model, precision: *mut c_int) -> Status;
    pub fn mae_model_free(m: *mut Model);
    pub fn mae_model_get_config(m: *const Model, cfg: *mut Config) -> Status;
    pub fn mae_model_num_params(m: *const Model, count: *mut usize) -> Status;
    pub fn mae_model_has_decoder(m: *const Model, has: *mut c_int) -> Status;

    // 3. contexts
    pub fn mae_ctx_create(m: *const Model, max_batch: c_int, out: *mut *mut Ctx) -> Status;
    pub fn mae_ctx_free(c: *mut Ctx);
    pub fn mae_ctx_set_mask_ratio(c: *mut Ctx, ratio: c_float) -> Status;
    pub fn mae_ctx_set_seed(c: *mut Ctx, seed: u64) -> Status;
    pub fn mae_ctx_set_threads(c: *mut Ctx, n: c_int) -> Status;
    pub fn mae_ctx_get_threads(c: *const Ctx, n: *mut c_int) -> Status;
    pub fn mae_ctx_get_dims(c: *const Ctx, num_patches: *mut c_int, keep: *mut c_int, patch_dim: *mut c_int) -> Status;
    pub fn mae_ctx_set_abort(c: *mut Ctx, f: AbortFn, user: *mut c_void) -> Status;
    pub fn mae_ctx_memory(m: *const Model, max_batch: c_int, nthreads: c_int, bytes: *mut usize) -> Status;

    // 4. forward and embeddings
    pub fn mae_forward(c: *mut Ctx, imgs: *const c_float, batch: c_int, noise: *const c_float, loss: *mut c_float,
                       pred: *mut c_float, mask: *mut c_float, latent: *mut c_float) -> Status;
    pub fn mae_embed(c: *mut Ctx, imgs: *const c_float, batch: c_int, pool: c_int, out: *mut c_float) -> Status;
    pub fn mae_model_embed_dims(m: *const Model, embed_dim: *mut c_int, num_tokens: *mut c_int) -> Status;

    // 7. pretraining
    pub fn mae_trainer_create(m: *mut Model, max_batch: c_int, out: *mut *mut Trainer) -> Status;
    pub fn mae_trainer_free(t: *mut Trainer);
    pub fn mae_trainer_set_threads(t: *mut Trainer, n: c_int) -> Status;
    pub fn mae_trainer_set_seed(t: *mut Trainer, seed: u64) -> Status;
    pub fn mae_trainer_set_abort(t: *mut Trainer, f: AbortFn, user: *mut c_void) -> Status;
    pub fn mae_trainer_set_progress(t: *mut Trainer, f: ProgressFn, user: *mut c_void) -> Status;
    pub fn mae_trainer_forward_backward(t: *mut Trainer, imgs: *const c_float, batch: c_int,
                                        noise: *const c_float, loss: *mut c_float) -> Status;
    pub fn mae_trainer_step(t: *mut Trainer) -> Status;
    pub fn mae_trainer_get_step(t: *const Trainer, step: *mut i64) -> Status;
    pub fn mae_trainer_get_lr(t: *const Trainer, lr: *mut f64) -> Status;
    pub fn mae_trainer_save(t: *const Trainer, path: *const c_char) -> Status;
    pub fn mae_trainer_load(t: *mut Trainer, path: *const c_char) -> Status;

    // 8. images
    pub fn mae_image_load(path: *const c_char, desired_channels: c_int, pixels: *mut *mut u8, width: *mut c_int,
                          height: *mut c_int, channels: *mut c_int) -> Status;
    pub fn mae_image_free(buffer: *mut c_void);
    pub fn mae_images_to_input(m: *const Model, batch: c_int, pixels: *const *const u8, widths: *const c_int,
                               heights: *const c_int, channels: *const c_int, strides: *const isize,
                               filter: c_int, center_crop: c_int, mean: *const c_float, std: *const c_float,
                               out: *mut c_float) -> Status;

    // 9. classification
    pub fn mae_classifier_create(m: *const Model, num_classes: c_int, global_pool: c_int, seed: u64,
                                 out: *mut *mut Classifier) -> Status;
    pub fn mae_classifier_load(path: *const c_char, num_classes: c_int, out: *mut *mut Classifier) -> Status;
    pub fn mae_classifier_save(c: *const Classifier, path: *const c_char) -> Status;
    pub fn mae_classifier_free(c: *mut Classifier);
    pub fn mae_classifier_model(c: *const Classifier, m: *mut *const Model) -> Status;
    pub fn mae_classifier_num_classes(c: *const Classifier, n: *mut c_int) -> Status;
    pub fn mae_classifier_global_pool(c: *const Classifier, g: *mut c_int) -> Status;
    pub fn mae_classifier_label(c: *const Classifier, index: c_int, label: *mut *const c_char) -> Status;
    pub fn mae_classifier_has_labels(c: *const Classifier, has: *mut c_int) -> Status;
    pub fn mae_classifier_set_labels(c: *mut Classifier, labels: *const *const c_char) -> Status;
    pub fn mae_classifier_tensor(c: *const Classifier, name: *const c_char, data: *mut *const c_float,
                                 count: *mut usize) -> Status;
    pub fn mae_classifier_forward(c: *const Classifier, ctx: *mut Ctx, imgs: *const c_float, batch: c_int,
                                  logits: *mut c_float) -> Status;

    pub fn mae_finetune_config_init(cfg: *mut FinetuneConfig, struct_size: usize) -> Status;
    pub fn mae_finetuner_create(c: *mut Classifier, max_batch: c_int, out: *mut *mut Finetuner) -> Status;
    pub fn mae_finetuner_free(f: *mut Finetuner);
    pub fn mae_finetuner_set_config(f: *mut Finetuner, cfg: *const FinetuneConfig) -> Status;
    pub fn mae_finetuner_get_config(f: *const Finetuner, cfg: *mut FinetuneConfig) -> Status;
    pub fn mae_finetuner_set_threads(f: *mut Finetuner, n: c_int) -> Status;
    pub fn mae_finetuner_set_seed(f: *mut Finetuner, seed: u64) -> Status;
    pub fn mae_finetuner_forward_backward(f: *mut Finetuner, imgs: *const c_float, batch: c_int,
                                          labels: *const i32, targets: *const c_float, loss: *mut c_float,
                                          logits: *mut c_float) -> Status;
    pub fn mae_finetuner_step(f: *mut Finetuner) -> Status;
    pub fn mae_finetuner_zero_grad(f: *mut Finetuner) -> Status;
    pub fn mae_finetuner_get_step(f: *const Finetuner, step: *mut i64) -> Status;
    pub fn mae_finetuner_get_lr(f: *const Finetuner, lr: *mut f64) -> Status;
    pub fn mae_finetuner_save(f: *const Finetuner, path: *const c_char) -> Status;
    pub fn mae_finetuner_load(f: *mut Finetuner, path: *const c_char) -> Status;
}
