//! The library's version, for a program to compare with the header it was compiled
//! against.

use std::ffi::c_char;

const fn parse_u32(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

/// The library's major version (Cargo.toml); the header's `VARAD_VERSION_MAJOR`.
pub(crate) const MAJOR: u32 = parse_u32(env!("CARGO_PKG_VERSION_MAJOR"));
/// The library's minor version; the header's `VARAD_VERSION_MINOR`.
pub(crate) const MINOR: u32 = parse_u32(env!("CARGO_PKG_VERSION_MINOR"));
/// The library's patch version; the header's `VARAD_VERSION_PATCH`.
pub(crate) const PATCH: u32 = parse_u32(env!("CARGO_PKG_VERSION_PATCH"));
/// `MAJOR * 1000000 + MINOR * 1000 + PATCH`; the header's `VARAD_VERSION_NUMBER`.
pub(crate) const NUMBER: u32 = MAJOR * 1_000_000 + MINOR * 1_000 + PATCH;

/// The version as text, e.g. `"1.0.0"`.
pub(crate) const STRING: &str = env!("CARGO_PKG_VERSION");

static VERSION_STRING: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The version of the loaded library, packed as `major * 1000000 + minor * 1000 + patch`
/// (`VARAD_VERSION_NUMBER` is the header's). A binding compares the two and refuses a
/// library whose major version differs.
///
/// Thread safety: any thread, any time. Errors: none.
#[no_mangle]
pub extern "C" fn varad_version_number() -> u32 {
    NUMBER
}

/// The version of the loaded library as text, e.g. `"0.1.0"`.
///
/// Ownership: a static string owned by the library; never free it.
/// Thread safety: any thread, any time. Errors: none.
#[no_mangle]
pub extern "C" fn varad_version_string() -> *const c_char {
    VERSION_STRING.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_matches_cargo_version() {
        let text = format!("{MAJOR}.{MINOR}.{PATCH}");
        assert_eq!(text, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            varad_version_number(),
            MAJOR * 1_000_000 + MINOR * 1_000 + PATCH
        );
        let c = unsafe { std::ffi::CStr::from_ptr(varad_version_string()) };
        assert_eq!(c.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn header_macros_match_cargo_version() {
        let header = include_str!("../../include/varad.h");
        for (name, value) in [
            ("VARAD_VERSION_MAJOR", MAJOR),
            ("VARAD_VERSION_MINOR", MINOR),
            ("VARAD_VERSION_PATCH", PATCH),
            ("VARAD_VERSION_NUMBER", NUMBER),
        ] {
            let line = format!("#define {name} {value}\n");
            assert!(
                header.contains(&line),
                "include/varad.h lacks `{}`",
                line.trim()
            );
        }
        assert!(header.contains(&format!(
            "#define VARAD_VERSION_STRING \"{}\"",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
