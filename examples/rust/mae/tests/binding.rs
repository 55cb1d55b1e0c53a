//! The safe wrapper's promises: embeddings in image order and shape checks, a context that moves
//! to another thread, abort, a trainer that drops cleanly. Runs with `cargo test --offline`.
use std::sync::atomic::{AtomicBool, Ordering};

fn tiny(seed: u64) -> mae::Model {
    mae::Model::create(&mae::preset("tiny").unwrap(), seed).unwrap()
}

fn images(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 29 % 113) as f32 - 56.0) / 64.0).collect()
}

#[test]
fn embed_shapes_and_pools() {
    let m = tiny(1);
    let (d, t) = m.embed_dims().unwrap();
    let mut c = mae::Context::new(&m, 2).unwrap();
    let imgs = images(2 * c.image_len());
    let cls = c.embed(&imgs, 2, mae::Pool::Cls).unwrap();
    let mean = c.embed(&imgs, 2, mae::Pool::Mean).unwrap();
    let tok = c.embed(&imgs, 2, mae::Pool::Tokens).unwrap();
    assert_eq!((cls.len(), mean.len(), tok.len()), (2 * d, 2 * d, 2 * t * d));
    for b in 0..2 {
        assert_eq!(&cls[b * d..(b + 1) * d], &tok[b * t * d..b * t * d + d]);
        for k in 0..d {
            let s: f64 = (1..t).map(|l| tok[(b * t + l) * d + k] as f64).sum();
            assert!(((s / (t - 1) as f64) as f32 - mean[b * d + k]).abs() <= 1e-6);
        }
    }
    assert_eq!(c.embed(&imgs[1..], 2, mae::Pool::Cls).unwrap_err().status, 5);
    let mut small = vec![0.0; d];
    assert_eq!(c.embed_into(&imgs, 2, mae::Pool::Cls, &mut small).unwrap_err().status, 5);
    assert!(m.context_memory(2, 1).unwrap() > 0);
}

#[test]
fn context_moves_between_threads() {
    let m = tiny(2);
    let mut c = mae::Context::new(&m, 1).unwrap();
    let imgs = images(c.image_len());
    let here = c.embed(&imgs, 1, mae::Pool::Mean).unwrap();
    let there = std::thread::scope(|s| s.spawn(move || c.embed(&imgs, 1, mae::Pool::Mean).unwrap()).join().unwrap());
    assert_eq!(here, there);
}

#[test]
fn abort_and_latent() {
    let m = tiny(3);
    let stop = AtomicBool::new(false);
    let mut c = mae::Context::new(&m, 1).unwrap();
    c.set_abort(Some(&stop)).unwrap();
    let imgs = images(c.image_len());
    let want = c.embed(&imgs, 1, mae::Pool::Cls).unwrap();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(c.embed(&imgs, 1, mae::Pool::Cls).unwrap_err().status, mae::ffi::ERR_ABORTED);
    stop.store(false, Ordering::Relaxed);
    assert_eq!(c.embed(&imgs, 1, mae::Pool::Cls).unwrap(), want);
    // at ratio 0 the latent's cls row is embed's cls up to the rounding of a shuffled sum
    c.set_mask_ratio(0.0).unwrap();
    let f = c.forward_latent(&imgs, 1, None).unwrap();
    let (d, t) = m.embed_dims().unwrap();
    assert_eq!(f.latent.len(), t * d);
    for k in 0..d {
        assert!((f.latent[k] - want[k]).abs() <= 1e-5 * (1.0 + want[k].abs()));
    }
}

#[test]
fn trainer_steps_and_drops() {
    let mut m = tiny(4);
    let path = std::env::temp_dir().join(format!("mae_rust_{}.safetensors", std::process::id()));
    {
        let mut t = mae::Trainer::new(&mut m, 2).unwrap();
        t.set_threads(1).unwrap();
        let imgs = images(2 * 3 * 32 * 32);
        let l = t.forward_backward(&imgs, 2, None).unwrap();
        assert!(l > 0.0);
        t.step().unwrap();
        assert_eq!(t.steps().unwrap(), 1);
        assert_eq!(t.forward_backward(&imgs[1..], 2, None).unwrap_err().status, 5);
        // progress: each block and the backward pass, then done = total; cancelling at the last
        // check (before the backward pass) leaves the trainer as it was: the same loss again
        let cfg = mae::preset("tiny").unwrap();
        let total = (cfg.depth + cfg.decoder_depth + 1) as usize;
        let l = ((cfg.img_size / cfg.patch_size) * (cfg.img_size / cfg.patch_size)) as usize;
        let noise = images(2 * l).iter().map(|v| v.abs()).collect::<Vec<f32>>();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        t.set_progress(Some(Box::new(move |d, n| { s2.lock().unwrap().push((d, n)); false }))).unwrap();
        let l1 = t.forward_backward(&imgs, 2, Some(&noise)).unwrap();
        assert_eq!(*seen.lock().unwrap(), (0..=total).map(|d| (d, total)).collect::<Vec<_>>());
        t.set_progress(Some(Box::new(move |d, _| d == total - 1))).unwrap();
        assert_eq!(t.forward_backward(&imgs, 2, Some(&noise)).unwrap_err().status, mae::ffi::ERR_ABORTED);
        t.set_progress(None).unwrap();
        assert_eq!(t.forward_backward(&imgs, 2, Some(&noise)).unwrap(), l1);
        assert_eq!(t.steps().unwrap(), 1);
        t.save(path.to_str().unwrap()).unwrap();
    }
    let back = mae::Model::load(path.to_str().unwrap()).unwrap();
    // load progress: every tensor in order; true cancels (ERR_ABORTED, no model)
    let mut seen = Vec::new();
    drop(mae::Model::load_with_progress(path.to_str().unwrap(), |d, n| { seen.push((d, n)); false }).unwrap());
    assert!(seen.len() > 10 && seen.iter().enumerate().all(|(i, &(d, n))| d == i + 1 && n == seen.len()));
    let e = mae::Model::load_with_progress(path.to_str().unwrap(), |d, _| d == 3).err().unwrap();
    assert_eq!(e.status, mae::ffi::ERR_ABORTED);
    assert_eq!(back.num_params().unwrap(), m.num_params().unwrap());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn bf16_precision() {
    // the same weights in f32 and bf16: embeddings within bf16's rounding, not equal
    let f32m = tiny(4);
    let mut bf = tiny(4);
    assert_eq!(bf.precision().unwrap(), mae::Precision::F32);
    bf.set_precision(mae::Precision::Bf16).unwrap();
    assert_eq!(bf.precision().unwrap(), mae::Precision::Bf16);
    let mut a = mae::Context::new(&f32m, 1).unwrap();
    let mut b = mae::Context::new(&bf, 1).unwrap();
    let imgs = images(a.image_len());
    let x = a.embed(&imgs, 1, mae::Pool::Mean).unwrap();
    let y = b.embed(&imgs, 1, mae::Pool::Mean).unwrap();
    let (mut d2, mut n2) = (0.0f64, 0.0f64);
    for (p, q) in x.iter().zip(&y) {
        d2 += ((p - q) as f64).powi(2);
        n2 += (*p as f64).powi(2);
    }
    let rel = (d2 / n2).sqrt();
    assert!(rel > 0.0 && rel < 3e-2, "bf16 vs f32 relative L2 {rel}");
}

#[test]
fn load_as_bf16() {
    // read straight into bf16: the embeddings of load + set_precision, bit for bit
    let m = tiny(6);
    let path = std::env::temp_dir().join(format!("mae_rust_load_bf16_{}.safetensors", std::process::id()));
    let path = path.to_str().unwrap().to_string();
    m.save(&path).unwrap();
    let mut want = mae::Model::load(&path).unwrap();
    want.set_precision(mae::Precision::Bf16).unwrap();
    let a = mae::Model::load_as(&path, mae::Precision::Bf16).unwrap();
    let b = mae::Model::from_bytes_as(&std::fs::read(&path).unwrap(), mae::Precision::Bf16).unwrap();
    assert_eq!(a.precision().unwrap(), mae::Precision::Bf16);
    assert_eq!(b.precision().unwrap(), mae::Precision::Bf16);
    assert_eq!(mae::Model::load_as(&path, mae::Precision::F32).unwrap().precision().unwrap(), mae::Precision::F32);
    let mut cw = mae::Context::new(&want, 2).unwrap();
    let mut ca = mae::Context::new(&a, 2).unwrap();
    let mut cb = mae::Context::new(&b, 2).unwrap();
    let imgs = images(2 * cw.image_len());
    let x = cw.embed(&imgs, 2, mae::Pool::Tokens).unwrap();
    assert!(x == ca.embed(&imgs, 2, mae::Pool::Tokens).unwrap());
    assert!(x == cb.embed(&imgs, 2, mae::Pool::Tokens).unwrap());
    let _ = std::fs::remove_file(&path);
}
