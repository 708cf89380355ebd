//! Whether a file is an ONNX model at all, before ONNX Runtime is given it: a text file or
//! random bytes named as the backbone is a wrong backbone (a contract error naming the
//! file), not a failure of the runtime.
//!
//! An ONNX file is one serialised `ModelProto`. Its protocol-buffer wire format is checked
//! at the top level only: every field has a valid tag and wire type and fits in the file,
//! and the two fields every model has are there (`ir_version`, field 1, a varint; `graph`,
//! field 7, length-delimited). Anything deeper is ONNX Runtime's to judge.

use crate::{Error, ErrorKind, Result};

/// `ModelProto.ir_version`.
const IR_VERSION: u64 = 1;
/// `ModelProto.graph`.
const GRAPH: u64 = 7;

/// [`ErrorKind::BackboneContract`] unless `bytes` look like a serialised ONNX model.
pub(crate) fn check(bytes: &[u8]) -> Result<()> {
    walk(bytes).map_err(|why| {
        Error::new(
            ErrorKind::BackboneContract,
            format!("not an ONNX model ({why})"),
        )
    })
}

fn walk(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let (mut has_ir_version, mut has_graph) = (false, false);
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let tag = varint(bytes, &mut at).ok_or_else(|| format!("bad field tag at byte {start}"))?;
        let (field, wire_type) = (tag >> 3, tag & 7);
        if field == 0 {
            return Err(format!("field number 0 at byte {start}"));
        }
        match wire_type {
            0 => {
                varint(bytes, &mut at).ok_or_else(|| format!("bad varint at byte {start}"))?;
            }
            1 => at = skip(bytes, at, 8).ok_or("a fixed64 field runs past the end")?,
            2 => {
                let len =
                    varint(bytes, &mut at).ok_or_else(|| format!("bad length at byte {start}"))?;
                let len = usize::try_from(len).map_err(|_| "a field longer than memory")?;
                at = skip(bytes, at, len)
                    .ok_or_else(|| format!("field {field} at byte {start} runs past the end"))?;
            }
            5 => at = skip(bytes, at, 4).ok_or("a fixed32 field runs past the end")?,
            other => return Err(format!("wire type {other} at byte {start}")),
        }
        has_ir_version |= field == IR_VERSION && wire_type == 0;
        has_graph |= field == GRAPH && wire_type == 2;
    }
    match (has_ir_version, has_graph) {
        (true, true) => Ok(()),
        (false, _) => Err("no ir_version".into()),
        (_, false) => Err("no graph".into()),
    }
}

/// A varint at `*at`, advancing past it; `None` if it is cut off or longer than 10 bytes.
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// `at + len` if that is within `bytes`.
fn skip(bytes: &[u8], at: usize, len: usize) -> Option<usize> {
    at.checked_add(len).filter(|&end| end <= bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal model's top level: ir_version 8, a producer name, an empty graph.
    fn minimal() -> Vec<u8> {
        let mut m = vec![0x08, 0x08];
        m.extend([0x12, 0x03, b'v', b'a', b'r']);
        m.extend([0x3a, 0x00]);
        m
    }

    #[test]
    fn a_model_passes() {
        check(&minimal()).unwrap();
        let tiny = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny_vit.onnx"),
        )
        .unwrap();
        check(&tiny).unwrap();
    }

    #[test]
    fn text_random_and_cut_files_are_refused() {
        let text = b"this is not an ONNX file\n";
        let err = check(text).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BackboneContract);
        assert!(err.message().contains("not an ONNX model"), "{err}");
        assert!(check(&[]).is_err());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for n in [1, 7, 100, 4096] {
            let random: Vec<u8> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 56) as u8
                })
                .collect();
            assert!(check(&random).is_err(), "{n} random bytes passed");
        }
        let model = minimal();
        for end in 1..model.len() {
            assert!(check(&model[..end]).is_err(), "cut at {end} passed");
        }
    }

    #[test]
    fn both_required_fields_are_needed() {
        assert!(check(&[0x08, 0x08])
            .unwrap_err()
            .message()
            .contains("no graph"));
        assert!(check(&[0x3a, 0x00])
            .unwrap_err()
            .message()
            .contains("no ir_version"));
    }
}
