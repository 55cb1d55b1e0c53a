//! Context: an owned mae_ctx (forward passes, embeddings, the abort hook), bound to the lifetime
//! of the model it was made for (a Model, or a Classifier's encoder).
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::model::{config_of, embed_dims_of, image_len_of};
use crate::{check, check_batch, ffi, shape_error, to_int, Model, Result};

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

/// An owned mae_ctx: one caller's workspace, bound to the lifetime 'm of its model.
pub struct Context<'m> {
    pub(crate) raw: *mut ffi::Ctx,
    model: *const ffi::Model,
    cfg: ffi::Config,
    dims: (usize, usize),
    max_batch: usize,
    _model: PhantomData<&'m Model>,
}

// Send: the C API lets a context move between threads (mae.h: "a mae_ctx belongs to one thread
// at a time"); it holds no thread-local state, and every call takes &mut self, so Rust's borrow
// rules keep it to one thread at a time. The model it points to is immutable and shareable
// (Model is Sync). Not Sync: two threads must not call it at once.
unsafe impl Send for Context<'_> {}

impl<'m> Context<'m> {
    pub fn new(model: &'m Model, max_batch: usize) -> Result<Context<'m>> {
        Context::for_model(model.raw, max_batch)
    }

    /// A context on a model handle that outlives 'm (the caller's borrow says so).
    pub(crate) fn for_model(model: *const ffi::Model, max_batch: usize) -> Result<Context<'m>> {
        let cfg = config_of(model)?;
        let dims = embed_dims_of(model)?;
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_ctx_create(model, to_int(max_batch)?, &mut raw) })?;
        Ok(Context { raw, model, cfg, dims, max_batch, _model: PhantomData })
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
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

    /// Floats per image of the input [C, H, W].
    pub fn image_len(&self) -> usize {
        image_len_of(&self.cfg)
    }

    /// Checks imgs against batch before any call reads it.
    pub(crate) fn check_images(&self, imgs: &[f32], batch: usize) -> Result<()> {
        check_batch(batch, self.max_batch)?;
        if imgs.len() != batch * self.image_len() {
            return Err(shape_error("imgs", imgs.len(), batch * self.image_len()));
        }
        Ok(())
    }

    /// One forward pass on `batch` images [B, C, H, W]; `noise` [B, L] or None (the RNG).
    /// Slice lengths are checked here, so the library never reads past them.
    pub fn forward(&mut self, imgs: &[f32], batch: usize, noise: Option<&[f32]>) -> Result<Forward> {
        self.run_forward(imgs, batch, noise, false)
    }

    /// forward, also returning the latent (the encoder's output, shuffled order; for features
    /// in image order use embed).
    pub fn forward_latent(&mut self, imgs: &[f32], batch: usize, noise: Option<&[f32]>) -> Result<Forward> {
        self.run_forward(imgs, batch, noise, true)
    }

    fn run_forward(&mut self, imgs: &[f32], batch: usize, noise: Option<&[f32]>, latent: bool) -> Result<Forward> {
        self.check_images(imgs, batch)?;
        let (l, keep, p) = self.dims()?;
        if let Some(n) = noise {
            if n.len() != batch * l {
                return Err(shape_error("noise", n.len(), batch * l));
            }
        }
        let mut has: c_int = 0;
        check(unsafe { ffi::mae_model_has_decoder(self.model, &mut has) })?;
        let dec = has != 0;
        let d = self.dims.0;
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

    /// Floats mae_embed writes for `batch` images with `pool`.
    pub fn embed_len(&self, batch: usize, pool: Pool) -> usize {
        let (d, t) = self.dims;
        batch * d * if pool == Pool::Tokens { t } else { 1 }
    }

    /// Features of `batch` images [B, C, H, W] in image order (no masking, no decoder needed),
    /// into `out` (embed_len(batch, pool) floats): no allocation.
    pub fn embed_into(&mut self, imgs: &[f32], batch: usize, pool: Pool, out: &mut [f32]) -> Result<()> {
        self.check_images(imgs, batch)?;
        let want = self.embed_len(batch, pool);
        if out.len() != want {
            return Err(shape_error("out", out.len(), want));
        }
        check(unsafe { ffi::mae_embed(self.raw, imgs.as_ptr(), batch as c_int, pool as c_int, out.as_mut_ptr()) })
    }

    /// embed_into a new Vec.
    pub fn embed(&mut self, imgs: &[f32], batch: usize, pool: Pool) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.embed_len(batch, pool)];
        self.embed_into(imgs, batch, pool, &mut out)?;
        Ok(out)
    }

    /// Cancels running calls between blocks, or between tiles of the products inside a block,
    /// while `flag` is set (another thread may set it):
    /// they return ERR_ABORTED and the context stays usable. The flag is borrowed for the
    /// context's lifetime; None clears.
    pub fn set_abort(&mut self, flag: Option<&'m AtomicBool>) -> Result<()> {
        let (f, user) = abort_hook(flag);
        check(unsafe { ffi::mae_ctx_set_abort(self.raw, f, user) })
    }
}

unsafe extern "C" fn read_flag(user: *mut c_void) -> c_int {
    (*(user as *const AtomicBool)).load(Ordering::Relaxed) as c_int
}

pub(crate) fn abort_hook(flag: Option<&AtomicBool>) -> (ffi::AbortFn, *mut c_void) {
    match flag {
        Some(f) => (Some(read_flag), f as *const AtomicBool as *mut c_void),
        None => (None, ptr::null_mut()),
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        unsafe { ffi::mae_ctx_free(self.raw) }
    }
}
