//! libmae from Rust: the C declarations (`ffi`) and thin safe owners over them. No crates, no
//! build script: `rustc main.rs -L <dir of libmae.so> -l dylib=mae`.
#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int, c_uint};
use std::ptr;

/// The C API, declaration for declaration (include/mae.h).
pub mod ffi {
    use std::os::raw::{c_char, c_float, c_int, c_uint, c_void};

    pub type Status = c_int;
    pub const OK: Status = 0;
    pub const ERR_UNSUPPORTED: Status = 6;

    #[repr(C)]
    pub struct Model {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub struct Ctx {
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

/// What a forward pass gives: the loss, pred [B, L, p*p*C] and mask [B, L] (1 = removed).
pub struct Forward {
    pub loss: f32,
    pub pred: Vec<f32>,
    pub mask: Vec<f32>,
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
        let mut out = Forward { loss: 0.0, pred: vec![0.0; batch * l * p], mask: vec![0.0; batch * l] };
        let noise_ptr = noise.map_or(ptr::null(), |n| n.as_ptr());
        check(unsafe {
            ffi::mae_forward(self.raw, imgs.as_ptr(), batch as c_int, noise_ptr, &mut out.loss,
                             out.pred.as_mut_ptr(), out.mask.as_mut_ptr(), ptr::null_mut())
        })?;
        Ok(out)
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        unsafe { ffi::mae_ctx_free(self.raw) }
    }
}
