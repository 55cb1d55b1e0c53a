//! libmae from Rust: the C declarations (`ffi`) and thin safe owners over them. No crates;
//! `cargo build --offline` (build.rs links lib/libmae.so of the source tree, or $MAE_LIB_DIR).
//!
//! ```no_run
//! let model = mae::Model::load("examples/data/mae-fmnist.safetensors")?;
//! let mut ctx = mae::Context::new(&model, 1)?;
//! let imgs = vec![0.0f32; ctx.image_len()];
//! let feats = ctx.embed(&imgs, 1, mae::Pool::Mean)?;   // [1, D], image order
//! # Ok::<(), mae::Error>(())
//! ```
#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int, c_uint};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// The C API, declaration for declaration (include/mae.h).
pub mod ffi {
    use std::os::raw::{c_char, c_float, c_int, c_uint, c_void};

    pub type Status = c_int;
    pub const OK: Status = 0;
    pub const ERR_UNSUPPORTED: Status = 6;
    pub const ERR_STATE: Status = 7;
    pub const ERR_ABORTED: Status = 8;
    pub type AbortFn = Option<unsafe extern "C" fn(user: *mut c_void) -> c_int>;
    pub type ProgressFn = Option<unsafe extern "C" fn(user: *mut c_void, done: c_int, total: c_int) -> c_int>;

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
    }

    extern "C" {
        pub fn mae_status_str(s: Status) -> *const c_char;
        pub fn mae_last_error() -> *const c_char;
        pub fn mae_version() -> c_uint;
        pub fn mae_version_string() -> *const c_char;
        pub fn mae_kernels_name() -> *const c_char;
        pub fn mae_config_init(cfg: *mut Config, struct_size: usize, preset: *const c_char) -> Status;
        pub fn mae_model_create(cfg: *const Config, seed: u64, out: *mut *mut Model) -> Status;
        pub fn mae_model_load(path: *const c_char, out: *mut *mut Model) -> Status;
        pub fn mae_model_save(m: *const Model, path: *const c_char) -> Status;
        pub fn mae_model_free(m: *mut Model);
        pub fn mae_model_get_config(m: *const Model, cfg: *mut Config) -> Status;
        pub fn mae_model_num_params(m: *const Model, count: *mut usize) -> Status;
        pub fn mae_ctx_create(m: *const Model, max_batch: c_int, out: *mut *mut Ctx) -> Status;
        pub fn mae_ctx_free(c: *mut Ctx);
        pub fn mae_ctx_set_mask_ratio(c: *mut Ctx, ratio: c_float) -> Status;
        pub fn mae_ctx_set_seed(c: *mut Ctx, seed: u64) -> Status;
        pub fn mae_ctx_set_threads(c: *mut Ctx, n: c_int) -> Status;
        pub fn mae_ctx_get_dims(c: *const Ctx, num_patches: *mut c_int, keep: *mut c_int, patch_dim: *mut c_int) -> Status;
        pub fn mae_forward(c: *mut Ctx, imgs: *const c_float, batch: c_int, noise: *const c_float, loss: *mut c_float,
                           pred: *mut c_float, mask: *mut c_float, latent: *mut c_float) -> Status;
        pub fn mae_model_has_decoder(m: *const Model, has: *mut c_int) -> Status;
        pub fn mae_model_embed_dims(m: *const Model, embed_dim: *mut c_int, num_tokens: *mut c_int) -> Status;
        pub fn mae_embed(c: *mut Ctx, imgs: *const c_float, batch: c_int, pool: c_int, out: *mut c_float) -> Status;
        pub fn mae_ctx_memory(m: *const Model, max_batch: c_int, nthreads: c_int, bytes: *mut usize) -> Status;
        pub fn mae_ctx_set_abort(c: *mut Ctx, f: AbortFn, user: *mut c_void) -> Status;
        pub fn mae_trainer_create(m: *mut Model, max_batch: c_int, out: *mut *mut Trainer) -> Status;
        pub fn mae_trainer_free(t: *mut Trainer);
        pub fn mae_trainer_set_threads(t: *mut Trainer, n: c_int) -> Status;
        pub fn mae_trainer_set_seed(t: *mut Trainer, seed: u64) -> Status;
        pub fn mae_trainer_set_abort(t: *mut Trainer, f: AbortFn, user: *mut c_void) -> Status;
        pub fn mae_trainer_forward_backward(t: *mut Trainer, imgs: *const c_float, batch: c_int,
                                            noise: *const c_float, loss: *mut c_float) -> Status;
        pub fn mae_trainer_step(t: *mut Trainer) -> Status;
        pub fn mae_trainer_get_step(t: *const Trainer, step: *mut i64) -> Status;
        pub fn mae_trainer_save(t: *const Trainer, path: *const c_char) -> Status;
    }

    pub type Opaque = c_void;
}

/// A failed call: the status code, its name and the library's message for this thread.
#[derive(Debug, Clone)]
pub struct Error {
    pub status: ffi::Status,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = unsafe { CStr::from_ptr(ffi::mae_status_str(self.status)) };
        write!(f, "{}: {}", name.to_string_lossy(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(status: ffi::Status) -> Result<()> {
    if status == ffi::OK {
        return Ok(());
    }
    let message = unsafe { CStr::from_ptr(ffi::mae_last_error()) }.to_string_lossy().into_owned();
    Err(Error { status, message })
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error { status: 1, message: format!("'{}' contains a NUL byte", s) })
}

fn static_str(p: *const c_char) -> String {
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

pub fn version() -> String {
    static_str(unsafe { ffi::mae_version_string() })
}

pub fn kernels() -> String {
    static_str(unsafe { ffi::mae_kernels_name() })
}

pub fn version_number() -> c_uint {
    unsafe { ffi::mae_version() }
}

impl ffi::Config {
    /// A preset: "base", "large", "huge" or "tiny".
    pub fn preset(name: &str) -> Result<ffi::Config> {
        let mut cfg = ffi::Config::default();
        let n = c_string(name)?;
        check(unsafe { ffi::mae_config_init(&mut cfg, std::mem::size_of::<ffi::Config>(), n.as_ptr()) })?;
        Ok(cfg)
    }
}

/// An owned mae_model. Immutable; contexts borrow it, so it outlives them.
pub struct Model {
    raw: *mut ffi::Model,
}

// The library documents a model as shareable across threads once created.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    pub fn create(cfg: &ffi::Config, seed: u64) -> Result<Model> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_model_create(cfg, seed, &mut raw) })?;
        Ok(Model { raw })
    }

    pub fn load(path: &str) -> Result<Model> {
        let p = c_string(path)?;
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_model_load(p.as_ptr(), &mut raw) })?;
        Ok(Model { raw })
    }

    pub fn save(&self, path: &str) -> Result<()> {
        let p = c_string(path)?;
        check(unsafe { ffi::mae_model_save(self.raw, p.as_ptr()) })
    }

    pub fn config(&self) -> Result<ffi::Config> {
        let mut cfg = ffi::Config { struct_size: std::mem::size_of::<ffi::Config>() as u32, ..Default::default() };
        check(unsafe { ffi::mae_model_get_config(self.raw, &mut cfg) })?;
        Ok(cfg)
    }

    pub fn num_params(&self) -> Result<usize> {
        let mut n = 0usize;
        check(unsafe { ffi::mae_model_num_params(self.raw, &mut n) })?;
        Ok(n)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { ffi::mae_model_free(self.raw) }
    }
}

impl Model {
    pub fn has_decoder(&self) -> Result<bool> {
        let mut h: c_int = 0;
        check(unsafe { ffi::mae_model_has_decoder(self.raw, &mut h) })?;
        Ok(h != 0)
    }

    /// (D, 1 + L): floats per pooled embedding, tokens per image with Pool::Tokens.
    pub fn embed_dims(&self) -> Result<(usize, usize)> {
        let (mut d, mut t): (c_int, c_int) = (0, 0);
        check(unsafe { ffi::mae_model_embed_dims(self.raw, &mut d, &mut t) })?;
        Ok((d as usize, t as usize))
    }

    /// Bytes a context for max_batch allocates (threads 0: its default thread count).
    pub fn context_memory(&self, max_batch: usize, threads: i32) -> Result<usize> {
        let mut n = 0usize;
        check(unsafe { ffi::mae_ctx_memory(self.raw, to_int(max_batch)?, threads, &mut n) })?;
        Ok(n)
    }
}

fn to_int(n: usize) -> Result<c_int> {
    c_int::try_from(n).map_err(|_| Error { status: 1, message: format!("{} does not fit a C int", n) })
}

fn shape_error(what: &str, got: usize, want: usize) -> Error {
    Error { status: 5, message: format!("{} has {} values, expected {}", what, got, want) }
}

/// How mae_embed pools the encoder's tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// [B, D]: the cls token
    Cls = 0,
    /// [B, D]: the mean of the patch tokens
    Mean = 1,
    /// [B, 1 + L, D]: every token, cls first, patches in image order
    Tokens = 2,
}

/// What a forward pass gives: the loss, pred [B, L, p*p*C] and mask [B, L] (1 = removed);
/// latent [B, 1 + keep, D] in the masker's shuffled order when asked for (forward_latent).
/// Without a decoder loss is NaN and pred is empty.
pub struct Forward {
    pub loss: f32,
    pub pred: Vec<f32>,
    pub mask: Vec<f32>,
    pub latent: Vec<f32>,
}

/// An owned mae_ctx: one caller's workspace, bound to the lifetime of its model.
pub struct Context<'m> {
    raw: *mut ffi::Ctx,
    model: &'m Model,
    max_batch: usize,
}

impl<'m> Context<'m> {
    pub fn new(model: &'m Model, max_batch: usize) -> Result<Context<'m>> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_ctx_create(model.raw, max_batch.min(c_int::MAX as usize) as c_int, &mut raw) })?;
        Ok(Context { raw, model, max_batch })
    }

    /// (num_patches, keep, patch_dim) for the current mask ratio.
    pub fn dims(&self) -> Result<(usize, usize, usize)> {
        let (mut l, mut k, mut p): (c_int, c_int, c_int) = (0, 0, 0);
        check(unsafe { ffi::mae_ctx_get_dims(self.raw, &mut l, &mut k, &mut p) })?;
        Ok((l as usize, k as usize, p as usize))
    }

    pub fn set_seed(&mut self, seed: u64) -> Result<()> {
        check(unsafe { ffi::mae_ctx_set_seed(self.raw, seed) })
    }

    pub fn set_mask_ratio(&mut self, ratio: f32) -> Result<()> {
        check(unsafe { ffi::mae_ctx_set_mask_ratio(self.raw, ratio) })
    }

    pub fn set_threads(&mut self, n: i32) -> Result<()> {
        check(unsafe { ffi::mae_ctx_set_threads(self.raw, n) })
    }

    /// One forward pass on `batch` images [B, C, H, W]; `noise` [B, L] or None (the RNG).
    /// Slice lengths are checked here, so the library never reads past them.
    pub fn forward(&mut self, imgs: &[f32], batch: usize, noise: Option<&[f32]>) -> Result<Forward> {
        let cfg = self.model.config()?;
        let per_image = (cfg.in_chans * cfg.img_height * cfg.img_width) as usize;
        let (l, _keep, p) = self.dims()?;
        let bad = |what: &str, got: usize, want: usize| Error {
            status: 5,
            message: format!("{} has {} values, expected {}", what, got, want),
        };
        if imgs.len() != batch * per_image {
            return Err(bad("imgs", imgs.len(), batch * per_image));
        }
        if let Some(n) = noise {
            if n.len() != batch * l {
                return Err(bad("noise", n.len(), batch * l));
            }
        }
        if batch > self.max_batch {
            return Err(bad("batch", batch, self.max_batch));
        }
        self.run_forward(imgs, batch, noise, l, p, false)
    }

    /// forward, also returning the latent (the encoder's output, shuffled order; for features
    /// in image order use embed).
    pub fn forward_latent(&mut self, imgs: &[f32], batch: usize, noise: Option<&[f32]>) -> Result<Forward> {
        let cfg = self.model.config()?;
        let per_image = (cfg.in_chans * cfg.img_height * cfg.img_width) as usize;
        let (l, _keep, p) = self.dims()?;
        if imgs.len() != batch * per_image {
            return Err(shape_error("imgs", imgs.len(), batch * per_image));
        }
        if noise.map_or(false, |n| n.len() != batch * l) {
            return Err(shape_error("noise", noise.unwrap().len(), batch * l));
        }
        if batch > self.max_batch {
            return Err(shape_error("batch", batch, self.max_batch));
        }
        self.run_forward(imgs, batch, noise, l, p, true)
    }

    fn run_forward(&mut self, imgs: &[f32], batch: usize, noise: Option<&[f32]>, l: usize, p: usize,
                   latent: bool) -> Result<Forward> {
        let dec = self.model.has_decoder()?;
        let (d, _) = self.model.embed_dims()?;
        let keep = self.dims()?.1;
        let mut out = Forward {
            loss: f32::NAN,
            pred: if dec { vec![0.0; batch * l * p] } else { Vec::new() },
            mask: vec![0.0; batch * l],
            latent: if latent || !dec { vec![0.0; batch * (1 + keep) * d] } else { Vec::new() },
        };
        let noise_ptr = noise.map_or(ptr::null(), |n| n.as_ptr());
        let loss_ptr: *mut f32 = if dec { &mut out.loss } else { ptr::null_mut() };
        let pred_ptr = if dec { out.pred.as_mut_ptr() } else { ptr::null_mut() };
        let lat_ptr = if out.latent.is_empty() { ptr::null_mut() } else { out.latent.as_mut_ptr() };
        check(unsafe {
            ffi::mae_forward(self.raw, imgs.as_ptr(), batch as c_int, noise_ptr, loss_ptr, pred_ptr,
                             out.mask.as_mut_ptr(), lat_ptr)
        })?;
        Ok(out)
    }

    /// Floats per image of the input [C, H, W].
    pub fn image_len(&self) -> usize {
        let cfg = self.model.config().unwrap_or_default();
        (cfg.in_chans * cfg.img_height * cfg.img_width) as usize
    }

    /// Floats mae_embed writes for `batch` images with `pool`.
    pub fn embed_len(&self, batch: usize, pool: Pool) -> Result<usize> {
        let (d, t) = self.model.embed_dims()?;
        Ok(batch * d * if pool == Pool::Tokens { t } else { 1 })
    }

    /// Features of `batch` images [B, C, H, W] in image order (no masking, no decoder needed),
    /// into `out` (embed_len(batch, pool) floats): no allocation.
    pub fn embed_into(&mut self, imgs: &[f32], batch: usize, pool: Pool, out: &mut [f32]) -> Result<()> {
        let per_image = self.image_len();
        if imgs.len() != batch * per_image {
            return Err(shape_error("imgs", imgs.len(), batch * per_image));
        }
        let want = self.embed_len(batch, pool)?;
        if out.len() != want {
            return Err(shape_error("out", out.len(), want));
        }
        if batch == 0 || batch > self.max_batch {
            return Err(shape_error("batch", batch, self.max_batch));
        }
        check(unsafe { ffi::mae_embed(self.raw, imgs.as_ptr(), batch as c_int, pool as c_int, out.as_mut_ptr()) })
    }

    /// embed_into a new Vec.
    pub fn embed(&mut self, imgs: &[f32], batch: usize, pool: Pool) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.embed_len(batch, pool)?];
        self.embed_into(imgs, batch, pool, &mut out)?;
        Ok(out)
    }

    /// Cancels running calls between blocks while `flag` is set (another thread may set it):
    /// they return ERR_ABORTED and the context stays usable. The flag is borrowed for the
    /// context's lifetime; None clears.
    pub fn set_abort(&mut self, flag: Option<&'m AtomicBool>) -> Result<()> {
        let (f, user) = abort_hook(flag);
        check(unsafe { ffi::mae_ctx_set_abort(self.raw, f, user) })
    }
}

unsafe extern "C" fn read_flag(user: *mut std::os::raw::c_void) -> c_int {
    (*(user as *const AtomicBool)).load(Ordering::Relaxed) as c_int
}

fn abort_hook(flag: Option<&AtomicBool>) -> (ffi::AbortFn, *mut std::os::raw::c_void) {
    match flag {
        Some(f) => (Some(read_flag), f as *const AtomicBool as *mut _),
        None => (None, ptr::null_mut()),
    }
}

// Send: the C API lets a context move between threads (mae.h: "a mae_ctx belongs to one thread
// at a time"); it holds no thread-local state, and every method takes &mut self, so Rust's
// borrow rules already keep it to one thread at a time. Its &Model is Send because Model is Sync
// (immutable, documented shareable). Not Sync: two threads must not call it at once.
unsafe impl Send for Context<'_> {}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        unsafe { ffi::mae_ctx_free(self.raw) }
    }
}

/// An owned mae_trainer: pretrains its model in place, so it borrows the model mutably for its
/// whole life (nothing else can use the model meanwhile, as the C API requires).
pub struct Trainer<'m> {
    raw: *mut ffi::Trainer,
    model: &'m mut Model,
    max_batch: usize,
}

// Send for the same reasons as Context: one thread at a time, enforced by &mut self.
unsafe impl Send for Trainer<'_> {}

impl<'m> Trainer<'m> {
    pub fn new(model: &'m mut Model, max_batch: usize) -> Result<Trainer<'m>> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_trainer_create(model.raw, to_int(max_batch)?, &mut raw) })?;
        Ok(Trainer { raw, model, max_batch })
    }

    pub fn set_threads(&mut self, n: i32) -> Result<()> {
        check(unsafe { ffi::mae_trainer_set_threads(self.raw, n) })
    }

    pub fn set_seed(&mut self, seed: u64) -> Result<()> {
        check(unsafe { ffi::mae_trainer_set_seed(self.raw, seed) })
    }

    /// As Context::set_abort; a cancelled forward_backward leaves the trainer as before it.
    pub fn set_abort(&mut self, flag: Option<&'m AtomicBool>) -> Result<()> {
        let (f, user) = abort_hook(flag);
        check(unsafe { ffi::mae_trainer_set_abort(self.raw, f, user) })
    }

    /// Adds the gradients of the MAE loss on `batch` images [B, C, H, W]; returns the loss.
    pub fn forward_backward(&mut self, imgs: &[f32], batch: usize, noise: Option<&[f32]>) -> Result<f32> {
        let cfg = self.model.config()?;
        let per_image = (cfg.in_chans * cfg.img_height * cfg.img_width) as usize;
        let l = ((cfg.img_height / cfg.patch_size) * (cfg.img_width / cfg.patch_size)) as usize;
        if imgs.len() != batch * per_image {
            return Err(shape_error("imgs", imgs.len(), batch * per_image));
        }
        if noise.map_or(false, |n| n.len() != batch * l) {
            return Err(shape_error("noise", noise.unwrap().len(), batch * l));
        }
        if batch == 0 || batch > self.max_batch {
            return Err(shape_error("batch", batch, self.max_batch));
        }
        let mut loss = 0.0f32;
        let np = noise.map_or(ptr::null(), |n| n.as_ptr());
        check(unsafe { ffi::mae_trainer_forward_backward(self.raw, imgs.as_ptr(), batch as c_int, np, &mut loss) })?;
        Ok(loss)
    }

    /// One AdamW step; the gradients are then zeroed.
    pub fn step(&mut self) -> Result<()> {
        check(unsafe { ffi::mae_trainer_step(self.raw) })
    }

    pub fn steps(&self) -> Result<i64> {
        let mut n = 0i64;
        check(unsafe { ffi::mae_trainer_get_step(self.raw, &mut n) })?;
        Ok(n)
    }

    /// A checkpoint (model, moments, RNG, step) that mae_trainer_load and Model::load read.
    pub fn save(&self, path: &str) -> Result<()> {
        let p = c_string(path)?;
        check(unsafe { ffi::mae_trainer_save(self.raw, p.as_ptr()) })
    }
}

impl Drop for Trainer<'_> {
    fn drop(&mut self) {
        unsafe { ffi::mae_trainer_free(self.raw) }
    }
}
