//! A model file cannot make the library allocate for what it merely claims: sizes in a
//! file are checked against the file's real size (and the configuration's limits) before
//! anything is built from them. A counting allocator measures what a load allocates.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use varad::model_file::LoadOptions;
use varad::{ErrorKind, Model};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) };
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("varad-limits-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors file from a raw header and data, as an attacker would write it.
fn raw_file(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Loads `path` and returns the error and the peak bytes the attempt added.
fn load_peak(path: &Path) -> (varad::Error, usize) {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let err = Model::load(path, &LoadOptions::default()).unwrap_err();
    (err, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

#[test]
fn claimed_sizes_are_checked_before_allocating() {
    let dir = temp_dir("claims");
    const MB: usize = 1 << 20;

    // A tensor of 100 GB in a file of a few bytes.
    let huge = dir.join("huge.safetensors");
    raw_file(
        &huge,
        r#"{"adapters.0.weight":{"dtype":"F32","shape":[25000000000],"data_offsets":[0,100000000000]}}"#,
        &[0; 16],
    );
    let (err, peak) = load_peak(&huge);
    assert_eq!(err.kind(), ErrorKind::ModelFile, "{err}");
    assert!(peak < MB, "loading a 100 GB claim allocated {peak} bytes");

    // A header length of 2^60 bytes.
    let header = dir.join("header.safetensors");
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&header, bytes).unwrap();
    let (err, peak) = load_peak(&header);
    assert_eq!(err.kind(), ErrorKind::ModelFile, "{err}");
    assert!(peak < MB, "a 2^60-byte header claim allocated {peak} bytes");

    // A real model whose metadata claims the largest predictor the limits allow: refused
    // by the tensor table before any weights are built for the claim.
    let model = common::trained_tiny_model();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let claims = dir.join("claims.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (n, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let json = meta.metadata().as_ref().unwrap()["varad"].clone();
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let config = &mut value["config"];
    config["n_layers"] = 64.into();
    config["expand"] = 16.into();
    config["d_state"] = 256.into();
    for level in value["backbone"]["levels"].as_array_mut().unwrap() {
        level[1] = 65536.into();
    }
    let header_text = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let mut header: serde_json::Value = serde_json::from_str(header_text).unwrap();
    // The metadata with a matching checksum, as a deliberate edit would have it: what
    // refuses the claim is the tensor table, not the checksum.
    let set_metadata = |header: &mut serde_json::Value, value: &serde_json::Value| {
        use sha2::Digest;
        let json = value.to_string();
        let sha: String = sha2::Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        header["__metadata__"]["varad"] = json.into();
        header["__metadata__"]["varad.sha256"] = sha.into();
    };
    set_metadata(&mut header, &value);
    raw_file(&claims, &header.to_string(), &bytes[8 + n..]);
    let (err, peak) = load_peak(&claims);
    assert_eq!(err.kind(), ErrorKind::ModelFile, "{err}");
    assert!(err.message().contains("is missing"), "{err}");
    assert!(peak < 16 * MB, "the claim allocated {peak} bytes");

    // Limits in the stored configuration are the configuration's own.
    value["config"]["n_layers"] = 100000.into();
    set_metadata(&mut header, &value);
    raw_file(&claims, &header.to_string(), &bytes[8 + n..]);
    let (err, _) = load_peak(&claims);
    assert!(err.message().contains("n_layers 100000"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn only_regular_files_are_read() {
    let dir = temp_dir("special");
    // /dev/zero or a folder as the model, and as the backbone a model names: an I/O
    // problem with that path, refused before reading (not read forever).
    for model_path in [Path::new("/dev/zero"), dir.as_path()] {
        let err = Model::load(model_path, &LoadOptions::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(err.message().contains("not a regular file"), "{err}");
        assert!(
            err.message().contains(&model_path.display().to_string()),
            "{err}"
        );
    }
    let model = common::trained_tiny_model();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let err = Model::load(
        &path,
        &LoadOptions {
            backbone: Some(PathBuf::from("/dev/zero")),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("not a regular file"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_empty_path_is_named_as_such() {
    let model = common::trained_tiny_model();
    let err = model.save(Path::new("")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(err.message(), "the path is empty");
    let err = Model::load(Path::new(""), &LoadOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(err.message(), "the path is empty");
    // A path that ends in `..` names a folder.
    let err = model.save(Path::new("..")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.message().contains("names a folder"), "{err}");
}
