//! Classifier (an owned mae_classifier: an encoder and a head, images in, logits out) and
//! Finetuner (an owned mae_finetuner, which trains a classifier end to end in place).
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::ptr;

use crate::model::{config_of, image_len_of};
use crate::{c_string, check, check_batch, ffi, shape_error, to_int, Context, Model, Result};

/// An owned mae_classifier. Immutable once made (except its labels, which take &mut self), so
/// it is shared across threads like a Model; contexts for it borrow it (Classifier::context).
pub struct Classifier {
    pub(crate) raw: *mut ffi::Classifier,
    model: *const ffi::Model,
    num_classes: usize,
}

// As Model: the library documents a classifier as immutable and shareable once created.
unsafe impl Send for Classifier {}
unsafe impl Sync for Classifier {}

impl Classifier {
    fn wrap(raw: *mut ffi::Classifier) -> Result<Classifier> {
        let mut model = ptr::null();
        let mut k: c_int = 0;
        let got = check(unsafe { ffi::mae_classifier_model(raw, &mut model) })
            .and_then(|_| check(unsafe { ffi::mae_classifier_num_classes(raw, &mut k) }));
        if let Err(e) = got {
            unsafe { ffi::mae_classifier_free(raw) };
            return Err(e);
        }
        Ok(Classifier { raw, model, num_classes: k as usize })
    }

    /// A classifier from a pretrained model: its encoder copied, a new head initialised as the
    /// official fine-tuning code does, drawn from seed. global_pool: mean of the patch tokens
    /// then fc_norm (the official default), else the cls token after norm. The model is not
    /// kept: drop it when you like.
    pub fn create(model: &Model, num_classes: usize, global_pool: bool, seed: u64) -> Result<Classifier> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_classifier_create(model.raw, to_int(num_classes)?, global_pool as c_int, seed, &mut raw) })?;
        Classifier::wrap(raw)
    }

    /// Reads a classifier file; num_classes 0 takes the file's, any other must match the head
    /// (ERR_SHAPE otherwise: a head is never silently reinitialised).
    pub fn load(path: &str, num_classes: usize) -> Result<Classifier> {
        let p = c_string(path)?;
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_classifier_load(p.as_ptr(), to_int(num_classes)?, &mut raw) })?;
        Classifier::wrap(raw)
    }

    pub fn save(&self, path: &str) -> Result<()> {
        let p = c_string(path)?;
        check(unsafe { ffi::mae_classifier_save(self.raw, p.as_ptr()) })
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn global_pool(&self) -> Result<bool> {
        let mut g: c_int = 0;
        check(unsafe { ffi::mae_classifier_global_pool(self.raw, &mut g) })?;
        Ok(g != 0)
    }

    /// The encoder's config (input channels and size).
    pub fn config(&self) -> Result<ffi::Config> {
        config_of(self.model)
    }

    /// Floats per input image [C, H, W].
    pub fn image_len(&self) -> Result<usize> {
        Ok(image_len_of(&self.config()?))
    }

    pub fn has_labels(&self) -> Result<bool> {
        let mut h: c_int = 0;
        check(unsafe { ffi::mae_classifier_has_labels(self.raw, &mut h) })?;
        Ok(h != 0)
    }

    /// Class index's name: the file's or set_labels', else the index in decimal.
    pub fn label(&self, index: usize) -> Result<String> {
        let mut p: *const c_char = ptr::null();
        check(unsafe { ffi::mae_classifier_label(self.raw, to_int(index)?, &mut p) })?;
        Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    pub fn labels(&self) -> Result<Vec<String>> {
        (0..self.num_classes).map(|i| self.label(i)).collect()
    }

    /// Names for all num_classes classes (each non-empty, at most 255 bytes); None clears.
    pub fn set_labels(&mut self, labels: Option<&[&str]>) -> Result<()> {
        let Some(names) = labels else {
            return check(unsafe { ffi::mae_classifier_set_labels(self.raw, ptr::null()) });
        };
        if names.len() != self.num_classes {
            return Err(shape_error("labels", names.len(), self.num_classes));
        }
        let owned = names.iter().map(|s| c_string(s)).collect::<Result<Vec<_>>>()?;
        let ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        check(unsafe { ffi::mae_classifier_set_labels(self.raw, ptrs.as_ptr()) })
    }

    /// A head or encoder tensor by its official name ("head.weight" [K, D], "head.bias",
    /// "fc_norm.weight", ...), borrowed from the classifier.
    pub fn tensor(&self, name: &str) -> Result<&[f32]> {
        let n = c_string(name)?;
        let mut data: *const f32 = ptr::null();
        let mut count = 0usize;
        check(unsafe { ffi::mae_classifier_tensor(self.raw, n.as_ptr(), &mut data, &mut count) })?;
        Ok(if count == 0 { &[] } else { unsafe { std::slice::from_raw_parts(data, count) } })
    }

    /// A context for this classifier's forward (and for embeddings of its encoder).
    pub fn context(&self, max_batch: usize) -> Result<Context<'_>> {
        Context::for_model(self.model, max_batch)
    }

    /// Logits [B, K] of `batch` normalized images [B, C, H, W] into `logits`; no allocation.
    /// ctx must come from this classifier's context() (else ERR_INVALID_ARG).
    pub fn forward_into(&self, ctx: &mut Context, imgs: &[f32], batch: usize, logits: &mut [f32]) -> Result<()> {
        ctx.check_images(imgs, batch)?;
        if imgs.len() != batch * self.image_len()? {
            return Err(shape_error("imgs", imgs.len(), batch * self.image_len()?));
        }
        if logits.len() != batch * self.num_classes {
            return Err(shape_error("logits", logits.len(), batch * self.num_classes));
        }
        check(unsafe {
            ffi::mae_classifier_forward(self.raw, ctx.raw, imgs.as_ptr(), batch as c_int, logits.as_mut_ptr())
        })
    }

    /// forward_into a new Vec [B, K].
    pub fn forward(&self, ctx: &mut Context, imgs: &[f32], batch: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0; batch * self.num_classes];
        self.forward_into(ctx, imgs, batch, &mut out)?;
        Ok(out)
    }

    /// The index of the largest logit of each image of logits [B, K] (the first on ties).
    pub fn argmax(&self, logits: &[f32]) -> Vec<usize> {
        logits.chunks(self.num_classes.max(1))
            .map(|row| (0..row.len()).fold(0, |best, k| if row[k] > row[best] { k } else { best }))
            .collect()
    }
}

impl Drop for Classifier {
    fn drop(&mut self) {
        unsafe { ffi::mae_classifier_free(self.raw) }
    }
}

/// An owned mae_finetuner: fine-tunes its classifier in place (AdamW with layer-wise lr decay,
/// the official schedule, label smoothing, drop path), borrowing it mutably for its whole life.
pub struct Finetuner<'c> {
    raw: *mut ffi::Finetuner,
    classifier: &'c mut Classifier,
    max_batch: usize,
}

// Send for the same reasons as Context: one thread at a time, enforced by &mut self.
unsafe impl Send for Finetuner<'_> {}

impl<'c> Finetuner<'c> {
    /// A finetuner with the default config (mae_finetune_config_init's: main_finetune.py's).
    pub fn new(classifier: &'c mut Classifier, max_batch: usize) -> Result<Finetuner<'c>> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::mae_finetuner_create(classifier.raw, to_int(max_batch)?, &mut raw) })?;
        Ok(Finetuner { raw, classifier, max_batch })
    }

    pub fn config(&self) -> Result<ffi::FinetuneConfig> {
        let mut cfg = ffi::FinetuneConfig {
            struct_size: std::mem::size_of::<ffi::FinetuneConfig>() as u32,
            ..Default::default()
        };
        check(unsafe { ffi::mae_finetuner_get_config(self.raw, &mut cfg) })?;
        Ok(cfg)
    }

    pub fn set_config(&mut self, cfg: &ffi::FinetuneConfig) -> Result<()> {
        let mut c = *cfg;
        c.struct_size = std::mem::size_of::<ffi::FinetuneConfig>() as u32;
        check(unsafe { ffi::mae_finetuner_set_config(self.raw, &c) })
    }

    pub fn set_threads(&mut self, n: i32) -> Result<()> {
        check(unsafe { ffi::mae_finetuner_set_threads(self.raw, n) })
    }

    /// The drop path masks' seed.
    pub fn set_seed(&mut self, seed: u64) -> Result<()> {
        check(unsafe { ffi::mae_finetuner_set_seed(self.raw, seed) })
    }

    fn check_images(&self, imgs: &[f32], batch: usize) -> Result<()> {
        check_batch(batch, self.max_batch)?;
        let per = self.classifier.image_len()?;
        if imgs.len() != batch * per {
            return Err(shape_error("imgs", imgs.len(), batch * per));
        }
        Ok(())
    }

    /// Adds the gradients of the (label-smoothed) cross-entropy of `batch` images [B, C, H, W]
    /// with class indices labels [B]; returns the batch's mean loss.
    pub fn forward_backward(&mut self, imgs: &[f32], batch: usize, labels: &[i32]) -> Result<f32> {
        self.check_images(imgs, batch)?;
        if labels.len() != batch {
            return Err(shape_error("labels", labels.len(), batch));
        }
        let mut loss = 0.0f32;
        check(unsafe {
            ffi::mae_finetuner_forward_backward(self.raw, imgs.as_ptr(), batch as c_int, labels.as_ptr(), ptr::null(),
                                                &mut loss, ptr::null_mut())
        })?;
        Ok(loss)
    }

    /// As forward_backward with soft targets [B, K] (e.g. mixup's), used as they are.
    pub fn forward_backward_soft(&mut self, imgs: &[f32], batch: usize, targets: &[f32]) -> Result<f32> {
        self.check_images(imgs, batch)?;
        let k = self.classifier.num_classes();
        if targets.len() != batch * k {
            return Err(shape_error("targets", targets.len(), batch * k));
        }
        let mut loss = 0.0f32;
        check(unsafe {
            ffi::mae_finetuner_forward_backward(self.raw, imgs.as_ptr(), batch as c_int, ptr::null(), targets.as_ptr(),
                                                &mut loss, ptr::null_mut())
        })?;
        Ok(loss)
    }

    /// One AdamW step with the scheduled lr; the gradients are then zeroed.
    pub fn step(&mut self) -> Result<()> {
        check(unsafe { ffi::mae_finetuner_step(self.raw) })
    }

    pub fn zero_grad(&mut self) -> Result<()> {
        check(unsafe { ffi::mae_finetuner_zero_grad(self.raw) })
    }

    pub fn steps(&self) -> Result<i64> {
        let mut n = 0i64;
        check(unsafe { ffi::mae_finetuner_get_step(self.raw, &mut n) })?;
        Ok(n)
    }

    /// The lr the next step uses (the head's).
    pub fn lr(&self) -> Result<f64> {
        let mut v = 0f64;
        check(unsafe { ffi::mae_finetuner_get_lr(self.raw, &mut v) })?;
        Ok(v)
    }

    /// A checkpoint that resumes exactly (and loads with Classifier::load).
    pub fn save(&self, path: &str) -> Result<()> {
        let p = c_string(path)?;
        check(unsafe { ffi::mae_finetuner_save(self.raw, p.as_ptr()) })
    }

    pub fn load(&mut self, path: &str) -> Result<()> {
        let p = c_string(path)?;
        check(unsafe { ffi::mae_finetuner_load(self.raw, p.as_ptr()) })
    }
}

impl Drop for Finetuner<'_> {
    fn drop(&mut self) {
        unsafe { ffi::mae_finetuner_free(self.raw) }
    }
}

