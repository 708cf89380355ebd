//! Generates `include/varad.h` from the C ABI in `src/ffi/` with the pinned cbindgen.
//! The header is committed; CI regenerates it and fails when it differs.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut config = cbindgen::Config::from_file(Path::new(&crate_dir).join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    let major: u32 = env_number("CARGO_PKG_VERSION_MAJOR");
    let minor: u32 = env_number("CARGO_PKG_VERSION_MINOR");
    let patch: u32 = env_number("CARGO_PKG_VERSION_PATCH");
    config.after_includes = Some(format!(
        "\n/* The version of this header. Compare VARAD_VERSION_NUMBER with varad_version_number()\n   \
         at run time to refuse a library whose major version differs. */\n\
         #define VARAD_VERSION_MAJOR {major}\n\
         #define VARAD_VERSION_MINOR {minor}\n\
         #define VARAD_VERSION_PATCH {patch}\n\
         #define VARAD_VERSION_NUMBER {}\n\
         #define VARAD_VERSION_STRING \"{}\"\n",
        major * 1_000_000 + minor * 1_000 + patch,
        std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION"),
    ));
    let header = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            let mut bytes = Vec::new();
            bindings.write(&mut bytes);
            bytes
        }
        Err(e) => {
            // A parse error in the sources is reported by rustc itself, more clearly.
            println!("cargo:warning=cbindgen could not generate include/varad.h: {e}");
            return;
        }
    };
    let path = Path::new(&crate_dir).join("include/varad.h");
    // Rewriting an unchanged header would touch its mtime and rebuild every C consumer.
    if std::fs::read(&path).ok().as_deref() != Some(header.as_slice()) {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("can create include/");
        std::fs::write(&path, header).expect("can write include/varad.h");
    }
}

fn env_number(key: &str) -> u32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cargo sets {key} to a number"))
}
