//! The fuzz targets' bodies (`fuzz/src/bodies.rs`) run as ordinary tests over their seed
//! corpus (`fuzz/corpus/<target>/seed-*`), every crash input ever found
//! (`fuzz/regressions/<target>/*`), and a few hundred deterministic pseudo-random inputs.
//! This is `make fuzz-smoke`: it needs no nightly flags and no sanitizer build, so CI
//! exercises every body in seconds; `make fuzz` runs the real fuzzers.

mod common;

#[path = "../fuzz/src/bodies.rs"]
mod bodies;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The files of `fuzz/<folder>/<target>/`, sorted (none when the folder is absent).
fn inputs(folder: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root().join("fuzz").join(folder).join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    files.retain(|p| p.is_file());
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// `n` pseudo-random inputs of up to `max_len` bytes (xorshift, fixed seed).
fn random_inputs(seed: u64, n: usize, max_len: usize) -> Vec<Vec<u8>> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = (next() % max_len as u64) as usize;
            (0..len).map(|_| next() as u8).collect()
        })
        .collect()
}

/// Runs `body` over the seeds, the regressions and the random inputs; a failure names
/// the file.
fn run(target: &str, body: fn(&[u8]), random: usize, max_len: usize) {
    let seeds = inputs("corpus", target);
    assert!(
        seeds.iter().any(|(p, _)| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")),
        "no seed for {target}: run `cargo test --features internals --test fuzz_corpus -- --ignored`"
    );
    for (path, bytes) in seeds.iter().chain(&inputs("regressions", target)) {
        eprintln!("{}", path.display());
        body(bytes);
    }
    for bytes in random_inputs(target.len() as u64 * 7919, random, max_len) {
        body(&bytes);
    }
}

/// Flips bytes of every seed, one at a time at a stride, so the bodies also see inputs
/// close to valid ones (where the checks that matter are).
fn run_mutations(target: &str, body: fn(&[u8]), per_seed: usize) {
    for (_, seed) in inputs("corpus", target) {
        if seed.is_empty() {
            continue;
        }
        let step = (seed.len() / per_seed).max(1);
        for i in (0..seed.len()).step_by(step) {
            let mut m = seed.clone();
            m[i] ^= 0x5f;
            body(&m);
        }
    }
}

#[test]
fn model_file_corpus() {
    run("model_file", bodies::model_file, 300, 4096);
    run_mutations("model_file", bodies::model_file, 400);
}

/// In a seed with checksums, one flipped byte anywhere is refused: at a stride over the
/// whole file, and at the first and last byte of every tensor and of the metadata JSON.
/// (The format-1 seed, which records none, is the one file the body lets load with
/// flipped tensor data.)
#[test]
fn model_file_flips_in_a_checksummed_seed_are_refused() {
    let seed = std::fs::read(root().join("fuzz/corpus/model_file/seed-tiny.safetensors")).unwrap();
    let parsed = varad::model_file::parse(&seed, &bodies::TINY_CHANNELS).unwrap();
    assert!(parsed.verified, "the seed carries checksums");
    let (n, _) = safetensors::SafeTensors::read_metadata(&seed).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&seed).unwrap();
    let mut offsets: Vec<usize> = (0..seed.len()).step_by(97).collect();
    for (_, view) in tensors.iter() {
        let start = view.data().as_ptr() as usize - seed.as_ptr() as usize;
        offsets.extend([start, start + view.data().len() - 1]);
    }
    // The metadata JSON is a string in the header: from after `"varad":"` to the first
    // quote that no backslash escapes.
    let header = &seed[8..8 + n];
    let key = b"\"varad\":\"";
    let first = header.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let mut last = first;
    while header[last] != b'"' {
        last += if header[last] == b'\\' { 2 } else { 1 };
    }
    offsets.extend([8 + first, 8 + last - 1]);
    for i in offsets {
        let mut flipped = seed.clone();
        flipped[i] ^= 0x01;
        let err = varad::model_file::parse(&flipped, &bodies::TINY_CHANNELS)
            .err()
            .unwrap_or_else(|| panic!("a flip at byte {i} of {} loaded", seed.len()));
        assert_eq!(err.kind(), varad::ErrorKind::ModelFile, "byte {i}: {err}");
    }
}

#[test]
fn contract_corpus() {
    run("contract", bodies::contract, 2000, 512);
    run_mutations("contract", bodies::contract, 200);
}

#[test]
fn image_corpus() {
    run("image", bodies::image, 2000, 1024);
    run_mutations("image", bodies::image, 200);
}

#[test]
fn capi_corpus() {
    run("capi", bodies::capi, 150, 512);
    run_mutations("capi", bodies::capi, 30);
}

/// Writes the seed corpus: a real saved tiny model for `model_file` (in the current
/// format; `seed-tiny-format1.safetensors` beside it is a file of format 1, written by an
/// earlier varad, and stays as it is), and small hand-picked inputs for the others. Run
/// it when the model format changes:
/// `cargo test --features internals --test fuzz_corpus -- --ignored`.
#[test]
#[ignore]
fn write_seeds() {
    let corpus = root().join("fuzz/corpus");
    let dir = corpus.join("model_file");
    std::fs::create_dir_all(&dir).unwrap();
    let model = common::trained_tiny_model();
    let channels: Vec<usize> = model.layout().iter().map(|l| l.channels).collect();
    assert_eq!(
        channels,
        bodies::TINY_CHANNELS,
        "update bodies::TINY_CHANNELS"
    );
    model.save(&dir.join("seed-tiny.safetensors")).unwrap();
    for (target, seeds) in [
        ("contract", random_inputs(11, 8, 256)),
        ("image", random_inputs(12, 8, 512)),
        ("capi", random_inputs(13, 8, 256)),
    ] {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
}
