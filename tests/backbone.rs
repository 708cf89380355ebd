//! The backbone through the library: ONNX Runtime found and loaded, the contract checked
//! on real ONNX files (tests/data/contract, made by scripts/make_test_backbones.py), runs
//! and their errors, device selection, and the C functions that report the runtime.

use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};

use varad::backbone::{runtime, Backbone, BackboneOptions};
use varad::{Device, ErrorKind};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn cpu() -> BackboneOptions {
    BackboneOptions {
        device: Device::Cpu,
        ..Default::default()
    }
}

/// Where the payload of a serialised ONNX model's `graph` field (field 7) begins.
fn graph_payload_offset(model: &[u8]) -> usize {
    let varint = |at: &mut usize| {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = model[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        value
    };
    let mut at = 0;
    loop {
        let tag = varint(&mut at);
        match tag & 7 {
            0 => {
                varint(&mut at);
            }
            2 => {
                let len = varint(&mut at) as usize;
                if tag >> 3 == 7 {
                    return at;
                }
                at += len;
            }
            other => panic!("wire type {other} at the top level of a test model"),
        }
    }
}

fn pattern(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 31 + seed * 17) % 101) as f32 / 100.0)
        .collect()
}

#[test]
fn good_backbone_runs_a_batch_with_the_declared_strides() {
    let backbone = Backbone::open(&data("contract/good.onnx"), &cpu()).unwrap();
    let spec = backbone.spec();
    assert_eq!(spec.name, "conv-test");
    assert_eq!(spec.input_multiple, 8);
    assert_eq!(backbone.device().active, Device::Cpu);
    assert_eq!(backbone.identity().outputs, ["stride4", "stride8"]);
    assert_eq!(backbone.identity().sha256.len(), 64);

    let (h, w) = (64, 96);
    let a = pattern(3 * h * w, 1);
    let b = pattern(3 * h * w, 2);
    let batch: Vec<f32> = a.iter().chain(&b).copied().collect();
    let maps = backbone.run(&batch, 2, h, w).unwrap();
    assert_eq!(maps.len(), 2);
    assert_eq!(
        (
            maps[0].batch,
            maps[0].channels,
            maps[0].height,
            maps[0].width
        ),
        (2, 8, 16, 24)
    );
    assert_eq!(
        (
            maps[1].batch,
            maps[1].channels,
            maps[1].height,
            maps[1].width
        ),
        (2, 16, 8, 12)
    );

    // Batching must not mix images: each image of the batch equals its own run.
    for (index, single) in [a, b].iter().enumerate() {
        let alone = backbone.run(single, 1, h, w).unwrap();
        for (level, map) in maps.iter().enumerate() {
            assert_eq!(
                map.image(index),
                alone[level].image(0),
                "level {level} image {index}"
            );
        }
    }
    // Different images give different features (the input really reaches the graph).
    assert_ne!(maps[0].image(0), maps[0].image(1));
}

#[test]
fn contract_violations_are_named() {
    let cases = [
        ("contract/no_metadata.onnx", "lacks `varad.contract`"),
        ("contract/no_name.onnx", "lacks `varad.name`"),
        ("contract/uint8_input.onnx", "input `image` is"),
        ("contract/two_inputs.onnx", "2 inputs (image, mask)"),
    ];
    for (file, needle) in cases {
        let err = Backbone::open(&data(file), &cpu()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BackboneContract, "{file}: {err}");
        assert!(
            err.message().contains(needle),
            "{file}: `{needle}` not in: {err}"
        );
        assert!(
            err.message().contains(file),
            "{file}: the path is not named in: {err}"
        );
    }
}

#[test]
fn an_output_that_lies_about_its_stride_is_caught_at_run_time() {
    let backbone = Backbone::open(&data("contract/wrong_stride.onnx"), &cpu()).unwrap();
    let err = backbone
        .run(&pattern(3 * 64 * 64, 0), 1, 64, 64)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BackboneContract);
    assert!(
        err.message()
            .contains("output `stride8` has shape [1, 16, 4, 4]"),
        "{err}"
    );
}

#[test]
fn unreadable_files_and_bad_inputs() {
    // Text, or random bytes, named as the backbone: the wrong file, not a runtime failure.
    let err = Backbone::open(&data("contract/not_onnx.onnx"), &cpu()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BackboneContract, "{err}");
    assert!(err.message().contains("not_onnx.onnx"), "{err}");
    assert!(err.message().contains("not an ONNX model"), "{err}");
    let random = std::env::temp_dir().join(format!("varad-random-{}.onnx", std::process::id()));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..65_536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(&random, bytes).unwrap();
    let err = Backbone::open(&random, &cpu()).unwrap_err();
    std::fs::remove_file(&random).unwrap();
    assert_eq!(err.kind(), ErrorKind::BackboneContract, "{err}");
    assert!(err.message().contains("not an ONNX model"), "{err}");

    // A real model damaged inside its graph (an invalid wire type where the graph's
    // first field begins): ONNX Runtime's parser refuses it, still a contract error.
    let mut damaged = std::fs::read(data("tiny_vit.onnx")).unwrap();
    let graph = graph_payload_offset(&damaged);
    damaged[graph] = 0x0f;
    std::fs::write(&random, &damaged).unwrap();
    let err = Backbone::open(&random, &cpu()).unwrap_err();
    std::fs::remove_file(&random).unwrap();
    assert_eq!(err.kind(), ErrorKind::BackboneContract, "{err}");
    assert!(err.message().contains("not a valid ONNX model"), "{err}");

    let err = Backbone::open(&data("contract/missing.onnx"), &cpu()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");

    let backbone = Backbone::open(&data("contract/good.onnx"), &cpu()).unwrap();
    let err = backbone
        .run(&pattern(3 * 60 * 64, 0), 1, 60, 64)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let err = backbone.run(&pattern(10, 0), 1, 64, 64).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = Backbone::open(
        &data("contract/good.onnx"),
        &BackboneOptions {
            intra_threads: Some(0),
            ..cpu()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[test]
fn cuda_is_an_error_when_asked_for_and_a_reported_fallback_on_auto() {
    let runtime = runtime::load(None).unwrap();
    if runtime.has_cuda_provider() {
        eprintln!("skipped: the loaded ONNX Runtime has CUDA; the GPU check covers this machine");
        return;
    }
    let file = data("contract/good.onnx");
    let err = Backbone::open(
        &file,
        &BackboneOptions {
            device: Device::Cuda(0),
            ..cpu()
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cuda, "{err}");
    assert!(
        err.message().contains("no CUDA execution provider"),
        "{err}"
    );

    let auto = Backbone::open(
        &file,
        &BackboneOptions {
            device: Device::Auto,
            ..cpu()
        },
    )
    .unwrap();
    assert_eq!(auto.device().requested, Device::Auto);
    assert_eq!(auto.device().active, Device::Cpu);
    assert!(auto
        .device()
        .fallback_reason
        .as_deref()
        .unwrap()
        .contains("no CUDA execution provider"));
}

#[test]
fn the_runtime_is_loaded_once_and_reported_through_c() {
    let runtime = runtime::load(None).unwrap();
    let info = runtime.info();
    assert!(info.path.is_absolute(), "{info:?}");
    // A second load with the same file, or with none, returns the same runtime.
    assert!(std::ptr::eq(
        runtime,
        runtime::load(Some(&info.path)).unwrap()
    ));
    let err = runtime::load(Some(&data("contract/good.onnx")))
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::RuntimeNotFound);
    assert!(err.message().contains("already loaded"), "{err}");

    unsafe {
        use varad::ffi::*;
        assert_eq!(varad_runtime_load(std::ptr::null()), VaradStatus::VARAD_OK);
        let mut needed = 0usize;
        let status = varad_runtime_version(std::ptr::null_mut(), 0, &mut needed);
        assert_eq!(status, VaradStatus::VARAD_ERR_BUFFER_TOO_SMALL);
        assert_eq!(needed, info.version.len() + 1);
        let message = CStr::from_ptr(varad_last_error_message())
            .to_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("are needed"), "{message}");

        let mut buf = vec![0 as c_char; needed];
        assert_eq!(
            varad_runtime_version(buf.as_mut_ptr(), buf.len(), &mut needed),
            VaradStatus::VARAD_OK
        );
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), info.version);
        assert!(
            varad_last_error_message().is_null(),
            "success clears the last error"
        );

        let mut path = vec![0 as c_char; 4096];
        assert_eq!(
            varad_runtime_path(path.as_mut_ptr(), path.len(), std::ptr::null_mut()),
            VaradStatus::VARAD_OK
        );
        assert_eq!(
            Path::new(CStr::from_ptr(path.as_ptr()).to_str().unwrap()),
            info.path
        );

        let other = c"/nonexistent/libonnxruntime.so";
        assert_eq!(
            varad_runtime_load(other.as_ptr()),
            VaradStatus::VARAD_ERR_RUNTIME_NOT_FOUND
        );
        let mut copy = vec![0 as c_char; 512];
        assert_eq!(
            varad_last_error_copy(copy.as_mut_ptr(), copy.len(), std::ptr::null_mut()),
            VaradStatus::VARAD_OK
        );
        let copied = CStr::from_ptr(copy.as_ptr()).to_str().unwrap();
        // Named as an absolute path: `Z:\nonexistent\...` on Windows.
        assert!(
            copied.contains("nonexistent") && copied.contains("libonnxruntime.so"),
            "{copied}"
        );
        // Copying does not clear it.
        assert!(!varad_last_error_message().is_null());
    }
}
