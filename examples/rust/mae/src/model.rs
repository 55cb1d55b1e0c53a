//! Model: an owned mae_model (create, load, save, its dimensions).
use std::os::raw::{c_int, c_void};
use std::ptr;

use crate::{c_string, check, ffi, to_int, Result};

/// A preset config: "base", "large", "huge" or "tiny".
/// The precision a model's linear layers compute in (mae_precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32 = 0,
    Bf16 = 1,
}

pub fn preset(name: &str) -> Result<ffi::Config> {
    let mut cfg = ffi::Config::default();
    let n = c_string(name)?;
    check(unsafe { ffi::mae_config_init(&mut cfg, std::mem::size_of::<ffi::Config>(), n.as_ptr()) })?;
    Ok(cfg)
}

/// The config of a live model handle (the model's or a classifier's encoder).
pub(crate) fn config_of(raw: *const ffi::Model) -> Result<ffi::Config> {
    let mut cfg = ffi::Config { struct_size: std::mem::size_of::<ffi::Config>() as u32, ..Default::default() };
    check(unsafe { ffi::mae_model_get_config(raw, &mut cfg) })?;
    Ok(cfg)
}

pub(crate) fn embed_dims_of(raw: *const ffi::Model) -> Result<(usize, usize)> {
    let (mut d, mut t): (c_int, c_int) = (0, 0);
    check(unsafe { ffi::mae_model_embed_dims(raw, &mut d, &mut t) })?;
    Ok((d as usize, t as usize))
}

/// Floats per input image [C, H, W] of a config.
pub(crate) fn image_len_of(cfg: &ffi::Config) -> usize {
    (cfg.in_chans as usize) * (cfg.img_height as usize) * (cfg.img_width as usize)
}

/// An owned mae_model. Immutable; contexts borrow it, so it outlives them.
pub struct Model {
    pub(crate) raw: *mut ffi::Model,
}

// The library documents a model as shareable across threads once created.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

unsafe extern "C" fn progress_trampoline<F: FnMut(usize, usize) -> bool>(user: *mut c_void, done: c_int,
                                                                         total: c_int) -> c_int {
    // a panic must not unwind into C: treat it as a cancel
    let f = &mut *(user as *mut F);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(done as usize, total as usize))) {
        Ok(cancel) => cancel as c_int,
        Err(_) => 1,
    }
}

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

    /// Model::load, calling progress(tensors read, tensors) after each tensor; returning true
    /// cancels the load (ERR_ABORTED, nothing kept).
    pub fn load_with_progress<F: FnMut(usize, usize) -> bool>(path: &str, mut progress: F) -> Result<Model> {
        let p = c_string(path)?;
        let mut raw = ptr::null_mut();
        check(unsafe {
            ffi::mae_model_load_progress(p.as_ptr(), Some(progress_trampoline::<F>),
                                         &mut progress as *mut F as *mut c_void, &mut raw)
        })?;
        Ok(Model { raw })
    }

    /// mae_load_options with the library's defaults and `precision`.
    fn load_options(precision: Precision) -> Result<ffi::LoadOptions> {
        let mut o = ffi::LoadOptions { struct_size: 0, precision: 0, progress: None, progress_user: ptr::null_mut() };
        check(unsafe { ffi::mae_load_options_init(&mut o, std::mem::size_of::<ffi::LoadOptions>()) })?;
        o.precision = precision as i32;
        Ok(o)
    }

    /// Model::load computing in `precision`: `Precision::Bf16` reads each weight straight into
    /// bf16 (the float32 weights are never held, so the peak memory is about the bf16 model's);
    /// the model equals, bit for bit, `Model::load` then `set_precision(Precision::Bf16)`.
    pub fn load_as(path: &str, precision: Precision) -> Result<Model> {
        let p = c_string(path)?;
        let o = Self::load_options(precision)?;
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_model_load_with(p.as_ptr(), &o, &mut raw) })?;
        Ok(Model { raw })
    }

    /// Model::from_bytes computing in `precision` (as load_as).
    pub fn from_bytes_as(data: &[u8], precision: Precision) -> Result<Model> {
        let o = Self::load_options(precision)?;
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_model_load_memory_with(data.as_ptr() as *const c_void, data.len(), &o, &mut raw) })?;
        Ok(Model { raw })
    }

    /// A model from a safetensors file's bytes (the same checks as load; nothing of data kept).
    pub fn from_bytes(data: &[u8]) -> Result<Model> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_model_load_memory(data.as_ptr() as *const c_void, data.len(), &mut raw) })?;
        Ok(Model { raw })
    }

    pub fn save(&self, path: &str) -> Result<()> {
        let p = c_string(path)?;
        check(unsafe { ffi::mae_model_save(self.raw, p.as_ptr()) })
    }

    pub fn config(&self) -> Result<ffi::Config> {
        config_of(self.raw)
    }

    /// Makes the model compute its linears in `precision` (docs/PRECISION.md): `Precision::Bf16`
    /// holds the linear weights once as bf16, about half the memory. `&mut self`: no context
    /// or trainer of the model can be alive meanwhile.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        check(unsafe { ffi::mae_model_set_precision(self.raw, precision as c_int) })
    }

    pub fn precision(&self) -> Result<Precision> {
        let mut p: c_int = 0;
        check(unsafe { ffi::mae_model_get_precision(self.raw, &mut p) })?;
        Ok(if p == 1 { Precision::Bf16 } else { Precision::F32 })
    }

    pub fn num_params(&self) -> Result<usize> {
        let mut n = 0usize;
        check(unsafe { ffi::mae_model_num_params(self.raw, &mut n) })?;
        Ok(n)
    }

    pub fn has_decoder(&self) -> Result<bool> {
        let mut h: c_int = 0;
        check(unsafe { ffi::mae_model_has_decoder(self.raw, &mut h) })?;
        Ok(h != 0)
    }

    /// (D, 1 + L): floats per pooled embedding, tokens per image with Pool::Tokens.
    pub fn embed_dims(&self) -> Result<(usize, usize)> {
        embed_dims_of(self.raw)
    }

    /// Bytes a context for max_batch allocates (threads 0: its default thread count).
    pub fn context_memory(&self, max_batch: usize, threads: i32) -> Result<usize> {
        let mut n = 0usize;
        check(unsafe { ffi::mae_ctx_memory(self.raw, to_int(max_batch)?, threads, &mut n) })?;
        Ok(n)
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { ffi::mae_model_free(self.raw) }
    }
}
