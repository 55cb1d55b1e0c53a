//! Images: 8-bit pixels from files, and the model's normalized input from pixels.
use std::os::raw::{c_int, c_void};
use std::ptr;

use crate::model::{config_of, image_len_of};
use crate::{c_string, check, ffi, shape_error, to_int, Classifier, Error, Model, Result};

/// Resampling filter of the input conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Nearest = 0,
    Bilinear = 1,
    /// Keys cubic, a = -0.5 (Pillow's BICUBIC)
    Bicubic = 2,
}

/// 8-bit pixels, rows top to bottom, channels interleaved (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
}

impl Image {
    /// Reads a PNG or binary PGM/PPM; channels 0 keeps the file's, 1..4 converts.
    pub fn load(path: &str, channels: usize) -> Result<Image> {
        let p = c_string(path)?;
        let mut px: *mut u8 = ptr::null_mut();
        let (mut w, mut h, mut c): (c_int, c_int, c_int) = (0, 0, 0);
        check(unsafe { ffi::mae_image_load(p.as_ptr(), to_int(channels)?, &mut px, &mut w, &mut h, &mut c) })?;
        let n = (w as usize) * (h as usize) * (c as usize);
        let pixels = unsafe { std::slice::from_raw_parts(px, n) }.to_vec();
        unsafe { ffi::mae_image_free(px as *mut c_void) };
        Ok(Image { pixels, width: w as usize, height: h as usize, channels: c as usize })
    }
}

/// mae_images_to_input for the model handle `model`: every image resized (and centre-cropped
/// when center_crop) to the model's size, converted to its channels, then (v/255 - mean)/std
/// (mean/std None: v/255). Returns [B, C, H, W].
fn images_to_input(model: *const ffi::Model, images: &[Image], filter: Filter, center_crop: bool,
                   mean: Option<&[f32]>, std: Option<&[f32]>) -> Result<Vec<f32>> {
    let cfg = config_of(model)?;
    let c = cfg.in_chans as usize;
    for (what, v) in [("mean", mean), ("std", std)] {
        if let Some(v) = v {
            if v.len() != c {
                return Err(shape_error(what, v.len(), c));
            }
        }
    }
    if images.is_empty() {
        return Err(Error { status: ffi::ERR_SHAPE, message: "no images".into() });
    }
    for (i, im) in images.iter().enumerate() {
        if im.pixels.len() != im.width * im.height * im.channels {
            return Err(shape_error(&format!("image {}'s pixels", i), im.pixels.len(), im.width * im.height * im.channels));
        }
    }
    let ptrs: Vec<*const u8> = images.iter().map(|im| im.pixels.as_ptr()).collect();
    let ws = images.iter().map(|im| to_int(im.width)).collect::<Result<Vec<_>>>()?;
    let hs = images.iter().map(|im| to_int(im.height)).collect::<Result<Vec<_>>>()?;
    let cs = images.iter().map(|im| to_int(im.channels)).collect::<Result<Vec<_>>>()?;
    let mut out = vec![0.0f32; images.len() * image_len_of(&cfg)];
    check(unsafe {
        ffi::mae_images_to_input(model, to_int(images.len())?, ptrs.as_ptr(), ws.as_ptr(), hs.as_ptr(), cs.as_ptr(),
                                 ptr::null(), filter as c_int, center_crop as c_int,
                                 mean.map_or(ptr::null(), |m| m.as_ptr()), std.map_or(ptr::null(), |s| s.as_ptr()),
                                 out.as_mut_ptr())
    })?;
    Ok(out)
}

impl Model {
    /// The model's input [B, C, H, W] from 8-bit images of any size (see images_to_input).
    pub fn images_to_input(&self, images: &[Image], filter: Filter, center_crop: bool, mean: Option<&[f32]>,
                           std: Option<&[f32]>) -> Result<Vec<f32>> {
        images_to_input(self.raw, images, filter, center_crop, mean, std)
    }
}

impl Classifier {
    /// As Model::images_to_input, for this classifier's encoder.
    pub fn images_to_input(&self, images: &[Image], filter: Filter, center_crop: bool, mean: Option<&[f32]>,
                           std: Option<&[f32]>) -> Result<Vec<f32>> {
        let mut m = ptr::null();
        check(unsafe { ffi::mae_classifier_model(self.raw, &mut m) })?;
        images_to_input(m, images, filter, center_crop, mean, std)
    }
}

/// Fashion-MNIST's normalization (one channel) and ImageNet's (three).
pub const FASHION_MNIST_MEAN: [f32; 1] = [0.2860];
pub const FASHION_MNIST_STD: [f32; 1] = [0.3530];
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
