//! The classifier and finetuner through the safe crate: logits against the C CLI (`mae classify
//! --json`, when $MAE_CLI names it; tests/check_ffi.sh does) and against a second path through
//! the C API (cls pooling: head.weight . embed(cls) + head.bias), labels, file round trip, shape
//! errors, and one fine-tuning step lowering the loss on a fixed batch.
use std::path::PathBuf;
use std::process::Command;

const NAMES: [&str; 10] = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"];

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name).to_str().unwrap().to_string()
}

fn tmp(name: &str) -> String {
    std::env::temp_dir().join(format!("mae_rust_{}_{}", std::process::id(), name)).to_str().unwrap().to_string()
}

const IMAGES: [&str; 3] = ["t10k-0000-boot.png", "t10k-0002-trouser.png", "t10k-0008-sandal.png"];

fn inputs(c: &mae::Classifier) -> Vec<f32> {
    let ims: Vec<mae::Image> = IMAGES.iter().map(|n| mae::Image::load(&data(n), 1).unwrap()).collect();
    c.images_to_input(&ims, mae::Filter::Bicubic, true, Some(&mae::FASHION_MNIST_MEAN), Some(&mae::FASHION_MNIST_STD))
        .unwrap()
}

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-5 * scale + 1e-12
}

/// The numbers of `"key":[...]` in one line of JSON (the CLI prints no nested arrays there).
fn json_numbers(line: &str, key: &str) -> Vec<f32> {
    let start = line.find(&format!("\"{}\":[", key)).expect("key") + key.len() + 4;
    let end = start + line[start..].find(']').unwrap();
    line[start..end].split(',').map(|v| v.parse().unwrap()).collect()
}

#[test]
fn logits_match_the_cli_and_survive_a_round_trip() {
    let model = mae::Model::load(&data("mae-fmnist.safetensors")).unwrap();
    let mut clf = mae::Classifier::create(&model, 10, true, 7).unwrap();
    drop(model); // the classifier holds its own encoder
    clf.set_labels(Some(&NAMES)).unwrap();
    assert_eq!(clf.label(9).unwrap(), "boot");
    let x = inputs(&clf);
    let mut ctx = clf.context(3).unwrap();
    let logits = clf.forward(&mut ctx, &x, 3).unwrap();
    assert_eq!(logits.len(), 30);
    let path = tmp("clf.safetensors");
    clf.save(&path).unwrap();
    let back = mae::Classifier::load(&path, 10).unwrap();
    assert_eq!(back.labels().unwrap(), NAMES);
    assert!(back.global_pool().unwrap());
    let mut bctx = back.context(3).unwrap();
    assert_eq!(back.forward(&mut bctx, &x, 3).unwrap(), logits, "a saved and loaded classifier differs");
    assert_eq!(mae::Classifier::load(&path, 5).err().unwrap().status, mae::ffi::ERR_SHAPE);
    // a context of another classifier is refused by the library
    assert_eq!(clf.forward(&mut bctx, &x, 3).unwrap_err().status, mae::ffi::ERR_INVALID_ARG);
    // wrong sizes are refused before the library reads anything
    assert_eq!(clf.forward(&mut ctx, &x[1..], 3).unwrap_err().status, mae::ffi::ERR_SHAPE);
    assert_eq!(clf.forward_into(&mut ctx, &x, 3, &mut [0.0; 29]).unwrap_err().status, mae::ffi::ERR_SHAPE);
    assert_eq!(clf.forward(&mut ctx, &x, 0).unwrap_err().status, mae::ffi::ERR_SHAPE);

    let Ok(cli) = std::env::var("MAE_CLI") else {
        eprintln!("MAE_CLI not set: the comparison with `mae classify` is left to tests/check_ffi.sh");
        return;
    };
    let out = Command::new(&cli).args(["classify", "--json", "--crop-pct", "1", "--norm", "fashion-mnist", &path])
        .args(IMAGES.iter().map(|n| data(n))).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    let top = clf.argmax(&logits);
    for (b, line) in lines.iter().enumerate() {
        let want = json_numbers(line, "logits");
        let row = &logits[b * 10..(b + 1) * 10];
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for k in 0..10 {
            assert!(close(row[k], want[k], scale), "image {} class {}: {} vs the CLI's {}", b, k, row[k], want[k]);
        }
        assert!(line.contains(&format!("\"label\":\"{}\",\"index\":{},", NAMES[top[b]], top[b])), "{}", line);
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn cls_pooling_is_the_head_on_the_cls_embedding() {
    let model = mae::Model::load(&data("mae-fmnist.safetensors")).unwrap();
    let clf = mae::Classifier::create(&model, 4, false, 3).unwrap();
    assert!(!clf.global_pool().unwrap());
    assert_eq!(clf.labels().unwrap(), ["0", "1", "2", "3"]);
    let x = inputs(&clf);
    let mut ctx = clf.context(3).unwrap();
    let logits = clf.forward(&mut ctx, &x, 3).unwrap();
    let feats = ctx.embed(&x, 3, mae::Pool::Cls).unwrap();
    let (w, bias) = (clf.tensor("head.weight").unwrap(), clf.tensor("head.bias").unwrap());
    let d = feats.len() / 3;
    assert_eq!(w.len(), 4 * d);
    for b in 0..3 {
        for k in 0..4 {
            let (mut s, mut mag) = (bias[k] as f64, bias[k].abs() as f64);
            for j in 0..d {
                s += w[k * d + j] as f64 * feats[b * d + j] as f64;
                mag += (w[k * d + j] * feats[b * d + j]).abs() as f64;
            }
            assert!(close(logits[b * 4 + k], s as f32, mag as f32), "{} vs {}", logits[b * 4 + k], s);
        }
    }
}

#[test]
fn one_finetuning_step_lowers_the_loss() {
    let model = mae::Model::load(&data("mae-fmnist.safetensors")).unwrap();
    let mut clf = mae::Classifier::create(&model, 10, true, 1).unwrap();
    let x = inputs(&clf);
    let labels = [9, 1, 5];
    let before;
    {
        let mut ft = mae::Finetuner::new(&mut clf, 3).unwrap();
        let mut cfg = ft.config().unwrap();
        cfg.lr = 1e-3;
        cfg.drop_path = 0.0;
        cfg.smoothing = 0.0;
        ft.set_config(&cfg).unwrap();
        ft.set_threads(1).unwrap();
        assert_eq!(ft.forward_backward(&x, 3, &labels[..2]).unwrap_err().status, mae::ffi::ERR_SHAPE);
        assert_eq!(ft.forward_backward(&x, 3, &[9, 1, 10]).unwrap_err().status, mae::ffi::ERR_INVALID_ARG);
        before = ft.forward_backward(&x, 3, &labels).unwrap();
        assert!((before - (10f32).ln()).abs() < 0.01, "a fresh head gives ln 10, got {}", before);
        ft.step().unwrap();
        assert_eq!(ft.steps().unwrap(), 1);
        let after = ft.forward_backward(&x, 3, &labels).unwrap();
        assert!(after < before - 0.01, "loss {} -> {}", before, after);
        ft.zero_grad().unwrap();
    }
    // the classifier was changed in place: its logits now favour the labels' classes more
    let mut ctx = clf.context(3).unwrap();
    let logits = clf.forward(&mut ctx, &x, 3).unwrap();
    let nll: f32 = (0..3).map(|b| {
        let row = &logits[b * 10..b * 10 + 10];
        let m = row.iter().fold(f32::MIN, |a, &v| a.max(v));
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        lse - row[labels[b] as usize]
    }).sum::<f32>() / 3.0;
    assert!(nll < before - 0.01, "{} vs {}", nll, before);
}
