//! Trainer: an owned mae_trainer, pretraining its model in place.
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::AtomicBool;

use crate::context::abort_hook;
use crate::model::image_len_of;
use crate::{c_string, check, check_batch, ffi, shape_error, to_int, Model, Result};

/// An owned mae_trainer: it borrows the model mutably for its whole life (nothing else can use
/// the model meanwhile, as the C API requires).
pub struct Trainer<'m> {
    raw: *mut ffi::Trainer,
    model: &'m mut Model,
    max_batch: usize,
    // the progress callback C calls, boxed twice so its address (C's user pointer) is stable
    progress: Option<Box<ProgressBox<'m>>>,
}

type ProgressBox<'m> = Box<dyn FnMut(usize, usize) -> bool + Send + 'm>;

unsafe extern "C" fn call_progress(user: *mut c_void, done: c_int, total: c_int) -> c_int {
    let f = &mut *(user as *mut ProgressBox);
    // a panic must not unwind into C: it cancels the call instead
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(done as usize, total as usize))) {
        Ok(cancel) => cancel as c_int,
        Err(_) => 1,
    }
}

// Send for the same reasons as Context: one thread at a time, enforced by &mut self.
unsafe impl Send for Trainer<'_> {}

impl<'m> Trainer<'m> {
    pub fn new(model: &'m mut Model, max_batch: usize) -> Result<Trainer<'m>> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_trainer_create(model.raw, to_int(max_batch)?, &mut raw) })?;
        Ok(Trainer { raw, model, max_batch, progress: None })
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

    /// progress(done, total) is called by forward_backward before every block and before the
    /// backward pass (done = blocks run, total = depth + decoder depth + 1), then once with
    /// done = total; returning true cancels as the abort flag does. None clears.
    pub fn set_progress(&mut self, progress: Option<Box<dyn FnMut(usize, usize) -> bool + Send + 'm>>) -> Result<()> {
        match progress {
            None => {
                check(unsafe { ffi::mae_trainer_set_progress(self.raw, None, ptr::null_mut()) })?;
                self.progress = None;
            }
            Some(f) => {
                let mut boxed: Box<ProgressBox<'m>> = Box::new(f);
                let user = &mut *boxed as *mut ProgressBox<'m> as *mut c_void;
                check(unsafe { ffi::mae_trainer_set_progress(self.raw, Some(call_progress), user) })?;
                self.progress = Some(boxed); // the old one is dropped only after C stopped using it
            }
        }
        Ok(())
    }

    /// Adds the gradients of the MAE loss on `batch` images [B, C, H, W]; returns the loss.
    pub fn forward_backward(&mut self, imgs: &[f32], batch: usize, noise: Option<&[f32]>) -> Result<f32> {
        let cfg = self.model.config()?;
        let l = ((cfg.img_height / cfg.patch_size) * (cfg.img_width / cfg.patch_size)) as usize;
        check_batch(batch, self.max_batch)?;
        if imgs.len() != batch * image_len_of(&cfg) {
            return Err(shape_error("imgs", imgs.len(), batch * image_len_of(&cfg)));
        }
        if let Some(n) = noise {
            if n.len() != batch * l {
                return Err(shape_error("noise", n.len(), batch * l));
            }
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
