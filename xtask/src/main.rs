//! Development tasks of the varad workspace.
//!
//! `cargo run -p xtask -- header` writes `include/varad.h`; with `--check` it writes
//! nothing and fails when the committed header differs from what it would write.
//!
//! The header is `xtask/varad.h.in` with each `@cbindgen FILE...@` line replaced by the
//! declarations cbindgen finds in those files of `src/ffi/`, so the header's sections
//! follow the order a user meets them in (cbindgen alone writes every type before every
//! function), and with the version macros filled in from Cargo.toml.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    match args.first().map(String::as_str) {
        Some("header") => match header(check) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("xtask header: {message}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo run -p xtask -- header [--check]");
            ExitCode::from(2)
        }
    }
}

/// The workspace root (xtask's parent folder).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn header(check: bool) -> Result<(), String> {
    let root = root();
    let template_path = root.join("xtask/varad.h.in");
    let template = std::fs::read_to_string(&template_path)
        .map_err(|e| format!("cannot read {}: {e}", template_path.display()))?;
    let text = render(&root, &template)?;
    let out = root.join("include/varad.h");
    let current = std::fs::read_to_string(&out).unwrap_or_default();
    if check {
        if current != text {
            return Err(format!(
                "{} is stale: run `make header` and commit it",
                out.display()
            ));
        }
        return Ok(());
    }
    if current != text {
        std::fs::write(&out, text).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// The template with its version placeholders and `@cbindgen ...@` lines filled in.
fn render(root: &Path, template: &str) -> Result<String, String> {
    let version = package_version(root)?;
    let parts: Vec<u32> = version
        .split('.')
        .map(|p| {
            p.parse()
                .map_err(|_| format!("version {version} is not x.y.z"))
        })
        .collect::<Result<_, _>>()?;
    let [major, minor, patch] = parts[..] else {
        return Err(format!("version {version} is not x.y.z"));
    };
    let mut out = String::new();
    for line in template.lines() {
        if let Some(files) = line
            .strip_prefix("@cbindgen ")
            .and_then(|rest| rest.strip_suffix('@'))
        {
            out.push_str(&declarations(root, files.split_whitespace())?);
        } else {
            out.push_str(
                &line
                    .replace("@MAJOR@", &major.to_string())
                    .replace("@MINOR@", &minor.to_string())
                    .replace("@PATCH@", &patch.to_string())
                    .replace(
                        "@NUMBER@",
                        &(major * 1_000_000 + minor * 1_000 + patch).to_string(),
                    )
                    .replace("@VERSION@", &version),
            );
            out.push('\n');
        }
    }
    Ok(out)
}

/// The `version` of the `[package]` table of the workspace root's Cargo.toml.
fn package_version(root: &Path) -> Result<String, String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("version") {
                let value = value.trim_start().trim_start_matches('=').trim();
                return Ok(value.trim_matches('"').to_string());
            }
        }
    }
    Err("Cargo.toml has no [package] version".into())
}

/// cbindgen's declarations of the items in `files`, without its guards and includes,
/// with Rust-only doc headings turned into words a C reader expects.
fn declarations<'a>(root: &Path, files: impl Iterator<Item = &'a str>) -> Result<String, String> {
    let mut builder = cbindgen::Builder::new().with_config(config());
    for file in files {
        builder = builder.with_src(root.join(file));
    }
    let bindings = builder
        .generate()
        .map_err(|e| format!("cbindgen failed: {e}"))?;
    let mut bytes = Vec::new();
    bindings.write(&mut bytes);
    let text = String::from_utf8(bytes).map_err(|e| format!("cbindgen wrote non-UTF-8: {e}"))?;
    Ok(c_comments(text.trim()) + "\n")
}

/// The cbindgen settings every section shares: C99 with C++ compatibility, documented,
/// every function declared `VARAD_API`, the value aliases of C enums named as the enums.
fn config() -> cbindgen::Config {
    let mut c = cbindgen::Config {
        language: cbindgen::Language::C,
        cpp_compat: true,
        usize_is_size_t: true,
        documentation: true,
        documentation_style: cbindgen::DocumentationStyle::C99,
        style: cbindgen::Style::Both,
        no_includes: true,
        ..Default::default()
    };
    c.parse.parse_deps = false;
    c.function.prefix = Some("VARAD_API".into());
    c.enumeration.rename_variants = cbindgen::RenameRule::None;
    // Enum-valued fields and arguments are `u32` in Rust (a C caller may pass any value;
    // the library converts it with the enum's TryFrom). In C they carry the enum's name.
    for (alias, name) in [
        ("DeviceValue", "VaradDevice"),
        ("ResizeModeValue", "VaradResizeMode"),
        ("MapNormValue", "VaradMapNorm"),
        ("BeyondDataValue", "VaradBeyondData"),
        ("BankSelectionValue", "VaradBankSelection"),
        ("BankLevelsValue", "VaradBankLevels"),
        ("NeighbourTermValue", "VaradNeighbourTerm"),
        ("ThresholdValue", "VaradThreshold"),
        ("DecisionValue", "VaradDecision"),
        ("PixelFormatValue", "VaradPixelFormat"),
        ("LogLevelValue", "VaradLogLevel"),
    ] {
        c.export.rename.insert(alias.into(), name.into());
    }
    c.export.include = [
        "VaradStatus",
        "VaradPixelFormat",
        "VaradDevice",
        "VaradResizeMode",
        "VaradMapNorm",
        "VaradBeyondData",
        "VaradBankSelection",
        "VaradBankLevels",
        "VaradNeighbourTerm",
        "VaradThreshold",
        "VaradDecision",
        "VaradLogLevel",
    ]
    .map(String::from)
    .to_vec();
    c.export.item_types = vec![
        cbindgen::ItemType::Enums,
        cbindgen::ItemType::Structs,
        cbindgen::ItemType::Unions,
        cbindgen::ItemType::Typedefs,
        cbindgen::ItemType::OpaqueItems,
        cbindgen::ItemType::Functions,
    ];
    c
}

/// Rewrites the Rust doc conventions in cbindgen's comments for C readers: the
/// `# Safety` heading of an unsafe function becomes "Pointers:" before its contract.
fn c_comments(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "// # Safety" {
            let indent = &line[..line.len() - trimmed.len()];
            match lines.next() {
                Some(next) => {
                    let body = next.trim_start().trim_start_matches("//").trim_start();
                    out.push(format!("{indent}// Pointers: {body}"));
                }
                None => out.push(format!("{indent}// Pointers: see above.")),
            }
        } else {
            out.push(line.to_string());
        }
    }
    out.join("\n")
}
