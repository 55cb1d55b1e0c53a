//! Finds libmae, with plain commands only (no `cc` crate, nothing downloaded), in this order:
//!   1. $MAE_LIB_DIR: a directory holding libmae.so;
//!   2. $MAE_PREFIX/lib: an installed prefix (`make install PREFIX=...`);
//!   3. the lib/ of the libmae source tree this crate sits in (examples/rust/mae-sys), built
//!      there with `make lib` when libmae.so is missing;
//!   4. pkg-config (`pkg-config --libs mae`), for an installed libmae and a crate copied out of
//!      the tree.
//! The directory goes into the rpath of this crate's own binaries, and to dependent crates as
//! DEP_MAE_LIB_DIR (the `links = "mae"` metadata), so the safe crate's tests and examples run
//! without LD_LIBRARY_PATH.
use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn from_tree() -> Option<PathBuf> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").ok()?).join("../../..");
    if !root.join("include/mae.h").exists() || !root.join("Makefile").exists() {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let lib = root.join("lib");
    if !lib.join("libmae.so").exists() {
        // the tree has not been built: `make lib` (the Makefile's own compiler and flags)
        let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
        // make's stdout goes nowhere: cargo reads a build script's stdout for its directives
        let ok = Command::new("make").arg("-C").arg(&root).arg(format!("-j{}", jobs)).arg("lib")
            .stdout(Stdio::null()).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            println!("cargo:warning=`make lib` in {} failed", root.display());
            return None;
        }
    }
    println!("cargo:rerun-if-changed={}", lib.join("libmae.so").display());
    Some(lib)
}

fn from_pkg_config() -> Option<PathBuf> {
    let out = Command::new("pkg-config").args(["--libs-only-L", "mae"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let dir = text.split_whitespace().find_map(|w| w.strip_prefix("-L")).map(PathBuf::from);
    // a system prefix has no -L: the linker finds it on its own
    Some(dir.unwrap_or_default())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=MAE_LIB_DIR");
    println!("cargo:rerun-if-env-changed=MAE_PREFIX");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let dir = if let Ok(d) = env::var("MAE_LIB_DIR") {
        Some(PathBuf::from(d))
    } else if let Ok(p) = env::var("MAE_PREFIX") {
        Some(PathBuf::from(p).join("lib"))
    } else {
        from_tree().or_else(from_pkg_config)
    };
    let dir = match dir {
        Some(d) => d,
        None => {
            println!("cargo:warning=libmae not found: run `make` in the libmae tree, `make install` it, \
                      or set MAE_LIB_DIR");
            PathBuf::new()
        }
    };
    if dir != Path::new("") {
        let dir = dir.canonicalize().unwrap_or(dir);
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        println!("cargo:lib_dir={}", dir.display());
    }
    println!("cargo:rustc-link-lib=dylib=mae");
}
