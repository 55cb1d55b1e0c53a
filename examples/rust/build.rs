//! Links libmae: from $MAE_LIB_DIR when set (a directory holding libmae.so), else from
//! $MAE_PREFIX/lib (an installed prefix, `make install PREFIX=...`), else from the lib/ of the
//! source tree this crate sits in (after `make`). No library is built here and nothing is
//! downloaded. The directory also goes into the binaries' rpath, so tests and examples run
//! without LD_LIBRARY_PATH.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=MAE_LIB_DIR");
    println!("cargo:rerun-if-env-changed=MAE_PREFIX");
    let dir = if let Ok(d) = env::var("MAE_LIB_DIR") {
        PathBuf::from(d)
    } else if let Ok(p) = env::var("MAE_PREFIX") {
        PathBuf::from(p).join("lib")
    } else {
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../lib")
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    if !dir.join("libmae.so").exists() && !dir.join("libmae.a").exists() {
        println!("cargo:warning=libmae not found in {} (run `make`, or set MAE_LIB_DIR)", dir.display());
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=mae");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:rerun-if-changed=build.rs");
}
