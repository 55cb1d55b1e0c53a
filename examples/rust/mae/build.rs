//! An rpath for this crate's tests and example binary: the directory mae-sys linked libmae
//! from (DEP_MAE_LIB_DIR; link arguments of a dependency's build script do not reach here).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MAE_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_MAE_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
}
