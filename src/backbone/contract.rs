//! The backbone contract (DESIGN.md, "The backbone"), checked on plain data so that every
//! rule is testable without ONNX Runtime.
//!
//! A backbone ONNX file has one input `[B, 3, H, W]` f32 (RGB in [0, 1]; the graph
//! normalises), one output per hierarchy `[B, C_h, H/s_h, W/s_h]` f32, finest first, and
//! these `metadata_props`:
//!
//! | key | value |
//! |---|---|
//! | `varad.contract` | `1` |
//! | `varad.name` | a name, e.g. `efficientnet-lite0` |
//! | `varad.input_multiple` | H and W must be multiples of it (14 for a ViT/14, 32 for most CNNs) |
//! | `varad.input_size` | the preferred input, `WIDTHxHEIGHT` |
//! | `varad.output_strides` | each output's stride, comma-separated, in output order |
//! | `varad.default_levels` | optional: the outputs a model uses when its configuration names none, comma-separated, finest first (absent = all) |
//!
//! Validation collects every problem it finds, so one error names all that is wrong.

use std::collections::HashMap;

use crate::{Error, ErrorKind, Result};

/// The contract version this library reads.
pub const CONTRACT_VERSION: &str = "1";

/// Element type of a graph input or output, as far as the contract cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementType {
    /// 32-bit float, the only type the contract allows.
    F32,
    /// Anything else, by its ONNX Runtime name.
    Other(String),
}

/// One graph input or output as the session describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Its name in the graph.
    pub name: String,
    /// `None` when it is not a tensor (a sequence or a map).
    pub element: Option<ElementType>,
    /// Dimensions; `-1` where dynamic.
    pub shape: Vec<i64>,
}

/// What an ONNX file says about itself: the raw material of validation.
#[derive(Debug, Clone, Default)]
pub struct GraphDescription {
    /// Graph inputs.
    pub inputs: Vec<TensorSpec>,
    /// Graph outputs.
    pub outputs: Vec<TensorSpec>,
    /// `metadata_props`.
    pub metadata: HashMap<String, String>,
}

/// One feature map the backbone produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLevel {
    /// The output's name in the graph.
    pub name: String,
    /// Its channel count when the graph fixes it, else `None` (known after a run).
    pub channels: Option<usize>,
    /// Input pixels per feature-map cell along each axis.
    pub stride: usize,
}

/// A backbone that meets the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackboneSpec {
    /// `varad.name`.
    pub name: String,
    /// The input's name in the graph.
    pub input_name: String,
    /// Input width and height must be multiples of this.
    pub input_multiple: usize,
    /// The preferred input size, `(width, height)`.
    pub input_size: (usize, usize),
    /// The outputs, finest first.
    pub levels: Vec<OutputLevel>,
    /// `varad.default_levels`: the outputs used when a configuration names none (the
    /// backbone's measured best choice); empty = all of them.
    pub default_levels: Vec<String>,
}

impl BackboneSpec {
    /// Checks a graph description against the contract. The error lists every problem.
    pub fn from_graph(graph: &GraphDescription) -> Result<Self> {
        let mut problems = Vec::new();

        let input_name = match graph.inputs.as_slice() {
            [input] => {
                check_tensor(input, "input", &mut problems);
                if input.shape.len() == 4 && input.shape[1] != 3 && input.shape[1] != -1 {
                    problems.push(format!(
                        "input `{}` has {} channels; the contract wants 3 (RGB)",
                        input.name, input.shape[1]
                    ));
                }
                input.name.clone()
            }
            inputs => {
                let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
                problems.push(format!(
                    "the graph has {} inputs ({}); the contract wants exactly one, [B, 3, H, W] f32",
                    inputs.len(),
                    names.join(", ")
                ));
                String::new()
            }
        };
        if graph.outputs.is_empty() {
            problems
                .push("the graph has no outputs; the contract wants one per feature map".into());
        }
        for output in &graph.outputs {
            check_tensor(output, "output", &mut problems);
        }

        let meta = |key: &str, problems: &mut Vec<String>| -> Option<String> {
            let value = graph.metadata.get(key).cloned();
            if value.is_none() {
                problems.push(format!("metadata_props lacks `{key}`"));
            }
            value
        };
        if let Some(version) = meta("varad.contract", &mut problems) {
            if version != CONTRACT_VERSION {
                problems.push(format!(
                    "`varad.contract` is `{version}`; this library reads version {CONTRACT_VERSION}"
                ));
            }
        }
        let name = meta("varad.name", &mut problems).unwrap_or_default();
        let input_multiple = meta("varad.input_multiple", &mut problems).and_then(|text| {
            let value = text.trim().parse::<usize>().ok().filter(|&m| m > 0);
            if value.is_none() {
                problems.push(format!(
                    "`varad.input_multiple` is `{text}`; expected a positive integer"
                ));
            }
            value
        });
        let input_size = meta("varad.input_size", &mut problems).and_then(|text| {
            let value = parse_size(&text);
            if value.is_none() {
                problems.push(format!(
                    "`varad.input_size` is `{text}`; expected WIDTHxHEIGHT, e.g. 1024x1024"
                ));
            }
            value
        });
        if let (Some((w, h)), Some(m)) = (input_size, input_multiple) {
            if w % m != 0 || h % m != 0 {
                problems.push(format!(
                    "`varad.input_size` {w}x{h} is not a multiple of `varad.input_multiple` {m}"
                ));
            }
        }
        let strides = meta("varad.output_strides", &mut problems).and_then(|text| {
            let value: Option<Vec<usize>> = text
                .split(',')
                .map(|s| s.trim().parse::<usize>().ok().filter(|&s| s > 0))
                .collect();
            match value {
                None => {
                    problems.push(format!(
                        "`varad.output_strides` is `{text}`; expected positive integers separated by commas"
                    ));
                    None
                }
                Some(strides) if strides.len() != graph.outputs.len() => {
                    problems.push(format!(
                        "`varad.output_strides` lists {} strides for {} outputs",
                        strides.len(),
                        graph.outputs.len()
                    ));
                    None
                }
                Some(strides) => Some(strides),
            }
        });
        if let Some(strides) = &strides {
            if strides.windows(2).any(|w| w[0] > w[1]) {
                problems.push(format!(
                    "`varad.output_strides` {strides:?} is not finest first (non-decreasing)"
                ));
            }
            if let Some(m) = input_multiple {
                for (output, &stride) in graph.outputs.iter().zip(strides) {
                    if m % stride != 0 {
                        problems.push(format!(
                            "output `{}` has stride {stride}, which does not divide `varad.input_multiple` {m}: \
                             some valid inputs would not map to a whole grid",
                            output.name
                        ));
                    }
                }
            }
        }

        let default_levels: Vec<String> = match graph.metadata.get("varad.default_levels") {
            None => Vec::new(),
            Some(text) => {
                let names: Vec<String> = text.split(',').map(|s| s.trim().to_string()).collect();
                let positions: Vec<Option<usize>> = names
                    .iter()
                    .map(|n| graph.outputs.iter().position(|o| &o.name == n))
                    .collect();
                if positions.iter().any(Option::is_none)
                    || positions.windows(2).any(|w| w[0] >= w[1])
                {
                    problems.push(format!(
                        "`varad.default_levels` is `{text}`; expected distinct output names, finest first"
                    ));
                }
                names
            }
        };

        if !problems.is_empty() {
            return Err(Error::new(
                ErrorKind::BackboneContract,
                format!(
                    "the backbone does not meet the contract: {}",
                    problems.join("; ")
                ),
            ));
        }
        let strides = strides.unwrap_or_default();
        let levels = graph
            .outputs
            .iter()
            .zip(strides)
            .map(|(output, stride)| OutputLevel {
                name: output.name.clone(),
                channels: usize::try_from(output.shape[1]).ok(),
                stride,
            })
            .collect();
        Ok(BackboneSpec {
            name,
            input_name,
            input_multiple: input_multiple.unwrap_or(1),
            input_size: input_size.unwrap_or((0, 0)),
            levels,
            default_levels,
        })
    }

    /// Checks that an input of `width` x `height` pixels is allowed.
    pub fn check_input_size(&self, width: usize, height: usize) -> Result<()> {
        let m = self.input_multiple;
        if width == 0 || height == 0 || !width.is_multiple_of(m) || !height.is_multiple_of(m) {
            return Err(Error::config(format!(
                "input size {width}x{height} is not a positive multiple of {m}, the input multiple of backbone `{}`; \
                 the nearest allowed size is {}x{}",
                self.name,
                nearest_multiple(width, m),
                nearest_multiple(height, m)
            )));
        }
        Ok(())
    }
}

fn nearest_multiple(value: usize, multiple: usize) -> usize {
    (((value + multiple / 2) / multiple).max(1)) * multiple
}

fn check_tensor(spec: &TensorSpec, role: &str, problems: &mut Vec<String>) {
    match &spec.element {
        None => problems.push(format!("{role} `{}` is not a tensor", spec.name)),
        Some(ElementType::Other(t)) => problems.push(format!(
            "{role} `{}` is {t}; the contract wants f32",
            spec.name
        )),
        Some(ElementType::F32) => {}
    }
    if spec.element.is_some() && spec.shape.len() != 4 {
        problems.push(format!(
            "{role} `{}` has rank {} ({:?}); the contract wants rank 4, [B, C, H, W]",
            spec.name,
            spec.shape.len(),
            spec.shape
        ));
    }
}

/// `1024x768` -> `(1024, 768)`.
fn parse_size(text: &str) -> Option<(usize, usize)> {
    let (w, h) = text.trim().split_once(['x', 'X'])?;
    let w = w.trim().parse().ok().filter(|&v| v > 0)?;
    let h = h.trim().parse().ok().filter(|&v| v > 0)?;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            element: Some(ElementType::F32),
            shape: shape.to_vec(),
        }
    }

    fn good() -> GraphDescription {
        GraphDescription {
            inputs: vec![tensor("image", &[-1, 3, -1, -1])],
            outputs: vec![
                tensor("stride8", &[-1, 40, -1, -1]),
                tensor("stride16", &[-1, 112, -1, -1]),
            ],
            metadata: [
                ("varad.contract", "1"),
                ("varad.name", "efficientnet-lite0"),
                ("varad.input_multiple", "32"),
                ("varad.input_size", "1024x1024"),
                ("varad.output_strides", "8,16"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }

    #[test]
    fn a_good_graph_is_accepted() {
        let spec = BackboneSpec::from_graph(&good()).unwrap();
        assert_eq!(spec.name, "efficientnet-lite0");
        assert_eq!(spec.input_name, "image");
        assert_eq!(spec.input_multiple, 32);
        assert_eq!(spec.input_size, (1024, 1024));
        assert_eq!(
            spec.levels,
            vec![
                OutputLevel {
                    name: "stride8".into(),
                    channels: Some(40),
                    stride: 8
                },
                OutputLevel {
                    name: "stride16".into(),
                    channels: Some(112),
                    stride: 16
                },
            ]
        );
    }

    #[test]
    fn default_levels_are_optional_and_checked() {
        assert!(BackboneSpec::from_graph(&good())
            .unwrap()
            .default_levels
            .is_empty());
        let mut g = good();
        g.metadata
            .insert("varad.default_levels".into(), "stride16".into());
        assert_eq!(
            BackboneSpec::from_graph(&g).unwrap().default_levels,
            ["stride16"]
        );
        for bad in ["stride32", "stride16,stride8", "stride8,stride8", ""] {
            g.metadata.insert("varad.default_levels".into(), bad.into());
            assert!(problems_of(&g).contains("`varad.default_levels`"), "{bad}");
        }
    }

    fn problems_of(graph: &GraphDescription) -> String {
        let err = BackboneSpec::from_graph(graph).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BackboneContract);
        err.to_string()
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let mut g = good();
        g.inputs[0].element = Some(ElementType::Other("uint8".into()));
        g.outputs[1].shape = vec![-1, 112, -1];
        g.metadata.remove("varad.name");
        g.metadata
            .insert("varad.input_multiple".into(), "zero".into());
        let text = problems_of(&g);
        for needle in [
            "input `image` is uint8",
            "output `stride16` has rank 3",
            "lacks `varad.name`",
            "`varad.input_multiple` is `zero`",
        ] {
            assert!(text.contains(needle), "missing `{needle}` in: {text}");
        }
    }

    #[test]
    fn input_rules() {
        let mut g = good();
        g.inputs.push(tensor("mask", &[-1, 1, -1, -1]));
        assert!(problems_of(&g).contains("2 inputs (image, mask)"));
        let mut g = good();
        g.inputs[0].shape = vec![-1, 1, -1, -1];
        assert!(problems_of(&g).contains("1 channels"));
    }

    #[test]
    fn metadata_rules() {
        let cases = [
            ("varad.contract", "2", "reads version 1"),
            ("varad.input_size", "1024", "expected WIDTHxHEIGHT"),
            ("varad.input_size", "1000x1024", "not a multiple"),
            ("varad.output_strides", "8", "1 strides for 2 outputs"),
            ("varad.output_strides", "16,8", "not finest first"),
            ("varad.output_strides", "8,64", "does not divide"),
            ("varad.output_strides", "8,x", "positive integers"),
        ];
        for (key, value, needle) in cases {
            let mut g = good();
            g.metadata.insert(key.into(), value.into());
            let text = problems_of(&g);
            assert!(
                text.contains(needle),
                "{key}={value}: `{needle}` not in: {text}"
            );
        }
        let mut g = good();
        g.outputs.clear();
        g.metadata.insert("varad.output_strides".into(), "".into());
        assert!(problems_of(&g).contains("no outputs"));
    }

    #[test]
    fn input_size_must_be_a_multiple() {
        let spec = BackboneSpec::from_graph(&good()).unwrap();
        spec.check_input_size(2048, 1024).unwrap();
        let err = spec.check_input_size(1000, 1024).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.message().contains("nearest allowed size is 992x1024"),
            "{err}"
        );
        assert!(spec.check_input_size(0, 1024).is_err());
    }
}
