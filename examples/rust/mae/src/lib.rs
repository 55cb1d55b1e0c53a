//! libmae from Rust: safe owners over the C API of the `mae-sys` crate (re-exported as
//! `mae::ffi`). No crates from outside; `cargo build --offline` (mae-sys's build.rs finds
//! libmae: the source tree's lib/, $MAE_LIB_DIR, $MAE_PREFIX or pkg-config).
//!
//! ```no_run
//! let model = mae::Model::load("examples/data/mae-fmnist.safetensors")?;
//! let mut ctx = mae::Context::new(&model, 1)?;
//! let imgs = vec![0.0f32; ctx.image_len()];
//! let feats = ctx.embed(&imgs, 1, mae::Pool::Mean)?;   // [1, D], image order
//! # Ok::<(), mae::Error>(())
//! ```
//!
//! Classification (README.md's example; the head of a created classifier is untrained):
//!
//! ```no_run
//! let clf = mae::Classifier::create(&mae::Model::load("examples/data/mae-fmnist.safetensors")?, 10, true, 0)?;
//! let img = mae::Image::load("examples/data/t10k-0000-boot.png", 1)?;
//! let x = clf.images_to_input(&[img], mae::Filter::Bicubic, true, Some(&mae::FASHION_MNIST_MEAN), Some(&mae::FASHION_MNIST_STD))?;
//! let logits = clf.forward(&mut clf.context(1)?, &x, 1)?;             // [1, 10]
//! println!("{}", clf.label(clf.argmax(&logits)[0])?);
//! # Ok::<(), mae::Error>(())
//! ```
//!
//! Lifetimes carry the C API's rules: a `Context` borrows its `Model` (or `Classifier`), a
//! `Trainer` borrows its model mutably, a `Finetuner` its classifier; every owner frees its
//! handle on drop.

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::{c_char, c_int, c_uint};

mod classifier;
mod context;
mod image;
mod model;
mod trainer;

pub use classifier::{Classifier, Finetuner};
pub use context::{Context, Forward, Pool};
pub use image::{Filter, Image, FASHION_MNIST_MEAN, FASHION_MNIST_STD, IMAGENET_MEAN, IMAGENET_STD};
pub use model::{preset, Model, Precision};
pub use trainer::Trainer;

/// The C API (the mae-sys crate), for what the safe types do not cover.
pub use mae_sys as ffi;
pub use mae_sys::{Config, FinetuneConfig};

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

pub(crate) fn check(status: ffi::Status) -> Result<()> {
    if status == ffi::OK {
        return Ok(());
    }
    let message = unsafe { CStr::from_ptr(ffi::mae_last_error()) }.to_string_lossy().into_owned();
    Err(Error { status, message })
}

pub(crate) fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error { status: ffi::ERR_INVALID_ARG, message: format!("'{}' contains a NUL byte", s) })
}

pub(crate) fn static_str(p: *const c_char) -> String {
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

pub(crate) fn to_int(n: usize) -> Result<c_int> {
    c_int::try_from(n).map_err(|_| Error { status: ffi::ERR_INVALID_ARG, message: format!("{} does not fit a C int", n) })
}

/// The error for a slice of the wrong length, raised before the library could read past it.
pub(crate) fn shape_error(what: &str, got: usize, want: usize) -> Error {
    Error { status: ffi::ERR_SHAPE, message: format!("{} has {} values, expected {}", what, got, want) }
}

/// A batch outside [1, max_batch].
pub(crate) fn check_batch(batch: usize, max_batch: usize) -> Result<()> {
    if batch == 0 || batch > max_batch {
        return Err(Error { status: ffi::ERR_SHAPE, message: format!("batch {} is outside [1, {}]", batch, max_batch) });
    }
    Ok(())
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
