//! The FFI example: the computation of examples/ffi_reference.c through the Rust binding,
//! printed in the same format (tests/check_ffi.sh compares the two).
//!
//!     cargo run --offline --release -- [checkpoint.safetensors]      (in examples/rust)

use std::process::exit;

fn open_model(path: Option<&str>) -> mae::Result<mae::Model> {
    if let Some(p) = path {
        match mae::Model::load(p) {
            Ok(m) => return Ok(m),
            // checkpoints not in this build yet, or not written: the same model, created
            Err(e) if e.status == mae::ffi::ERR_UNSUPPORTED || !std::path::Path::new(p).exists() => {}
            Err(e) => return Err(e),
        }
    }
    mae::Model::create(&mae::preset("tiny")?, 42)
}

fn mask_string(mask: &[f32]) -> String {
    mask.iter().map(|&v| if v != 0.0 { '1' } else { '0' }).collect()
}

fn run(path: Option<&str>) -> mae::Result<()> {
    const B: usize = 2;
    let model = open_model(path)?;
    let cfg = model.config()?;
    let mut ctx = mae::Context::new(&model, B)?;
    let (l, _keep, _p) = ctx.dims()?;
    let npix = B * (cfg.in_chans * cfg.img_size * cfg.img_size) as usize;
    // exact in float32: the same values as the C reference
    let imgs: Vec<f32> = (0..npix).map(|i| (((i * 37) % 101) as f32 - 50.0) / 64.0).collect();
    let noise: Vec<f32> = (0..B * l).map(|i| ((i * 53) % 97) as f32 / 128.0).collect();

    let out = ctx.forward(&imgs, B, Some(&noise))?;
    let sum: f64 = out.pred.iter().map(|&v| v as f64).sum();
    println!("loss {}", fmt9(out.loss as f64));
    println!("pred_sum {}", fmt9(sum));
    println!("pred_head {} {} {} {}", fmt9(out.pred[0] as f64), fmt9(out.pred[1] as f64),
             fmt9(out.pred[2] as f64), fmt9(out.pred[3] as f64));
    println!("mask {}", mask_string(&out.mask));

    ctx.set_seed(2)?;
    let out = ctx.forward(&imgs, B, None)?;
    println!("seed_loss {}", fmt9(out.loss as f64));
    println!("seed_mask {}", mask_string(&out.mask));

    let (d, _t) = model.embed_dims()?;
    for (pool, name) in [(mae::Pool::Cls, "cls"), (mae::Pool::Mean, "mean")] {
        let e = ctx.embed(&imgs, B, pool)?;
        println!("embed_{}_head {} {} {} {}", name, fmt9(e[d] as f64), fmt9(e[d + 1] as f64),
                 fmt9(e[d + 2] as f64), fmt9(e[d + 3] as f64));
    }
    let tokens = ctx.embed(&imgs, B, mae::Pool::Tokens)?;
    println!("embed_tokens_sumsq {}", fmt9(tokens.iter().map(|&v| v as f64 * v as f64).sum()));

    // a wrong size is refused on the Rust side, a bad ratio by the library: both are errors
    assert!(ctx.forward(&imgs[1..], B, None).is_err());
    let e = ctx.set_mask_ratio(1.5).unwrap_err();
    assert_eq!(e.status, 1);
    eprintln!("rust: libmae {} ({}), kernels {}; refused as expected: {}", mae::version(), mae::version_number(),
              mae::kernels(), e);
    Ok(())
}

/// %.9g as C prints it, enough for check_ffi.sh's tolerance-based comparison.
fn fmt9(x: f64) -> String {
    format!("{:.8e}", x)
}

fn main() {
    let path = std::env::args().nth(1);
    if let Err(e) = run(path.as_deref()) {
        eprintln!("rust example: {}", e);
        exit(1);
    }
}
