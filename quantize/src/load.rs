//! Reading ONNX with tract-onnx and fixing every input to a concrete shape.
//!
//! The runtime needs concrete input facts. Each input takes its shape from `--input-shape
//! NAME=D0,D1,…` when given, else from the model; a symbolic or unknown leading (batch)
//! dimension becomes 1; any other unknown dimension is an error that asks for the flag.
//! [`decluttered`] then gives the float graph both conversions (f32 and int8) start from.

use std::path::Path;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use kestrel_runtime::panic_guard::guard;

use crate::error::ConvertError;

/// An `--input-shape` value: input name and dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputShape {
    /// Input name in the ONNX graph.
    pub name: String,
    /// Dimensions.
    pub dims: Vec<usize>,
}

impl std::str::FromStr for InputShape {
    type Err = String;

    /// Parses `NAME=1,3,224,224` (also `NAME:1x3x224x224`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, dims) = s
            .rsplit_once(['=', ':'])
            .ok_or_else(|| format!("'{s}': expected NAME=D0,D1,... e.g. input=1,3,224,224"))?;
        let dims = dims
            .split([',', 'x'])
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("'{s}': bad dimension '{d}'"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if name.is_empty() || dims.is_empty() || dims.contains(&0) {
            return Err(format!("'{s}': need a name and non-zero dimensions"));
        }
        Ok(InputShape {
            name: name.to_string(),
            dims,
        })
    }
}

/// Loads `path` and returns the typed (analysed, not yet decluttered) graph with concrete
/// input facts.
pub fn load_onnx(path: &Path, shapes: &[InputShape]) -> Result<TypedModel, ConvertError> {
    kestrel_runtime::tract_knobs::apply();
    if !path.is_file() {
        return Err(ConvertError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let load_err = |e: anyhow::Error| ConvertError::Load {
        path: path.into(),
        source: e.into(),
    };
    // Shape annotations inside the file (value_info, output shapes) often carry the exporter's
    // symbolic batch (`DynamicDimension.0`), which then refuses to unify with the batch of 1
    // set below: analysis starts from the input facts alone.
    // tract-onnx asserts on some malformed protobufs: a panic there is a load error too.
    let onnx = crate::binary::bipolar::onnx()
        .with_ignore_value_info(true)
        .with_ignore_output_shapes(true);
    let mut model = guard(|| onnx.model_for_path(path))
        .unwrap_or_else(|message| Err(anyhow::anyhow!(message)))
        .map_err(load_err)?;
    let shape_err = |reason: String| ConvertError::InputShape {
        path: path.into(),
        reason,
    };

    let names: Vec<String> = model
        .inputs
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    for s in shapes {
        if !names.contains(&s.name) {
            return Err(shape_err(format!(
                "--input-shape names '{}', but the inputs are: {}",
                s.name,
                names.join(", ")
            )));
        }
    }
    for (ix, name) in names.iter().enumerate() {
        let fact = model.input_fact(ix).map_err(load_err)?.clone();
        let dt = fact.datum_type.concretize().unwrap_or(DatumType::F32);
        let dims: Vec<usize> = match shapes.iter().find(|s| &s.name == name) {
            Some(s) => s.dims.clone(),
            None => {
                let known: Vec<Option<i64>> = fact
                    .shape
                    .dims()
                    .map(|d| d.concretize().and_then(|d| d.to_i64().ok()))
                    .collect();
                if known.is_empty() && fact.shape.concretize().is_none() {
                    return Err(shape_err(format!(
                        "input '{name}' has an unknown rank: give --input-shape {name}=D0,D1,..."
                    )));
                }
                let mut dims = Vec::with_capacity(known.len());
                for (axis, d) in known.iter().enumerate() {
                    match d {
                        Some(v) if *v > 0 => dims.push(*v as usize),
                        _ if axis == 0 => dims.push(1),
                        _ => {
                            return Err(shape_err(format!(
                                "input '{name}' has an unknown dimension {axis} ({:?}): give \
                                 --input-shape {name}=D0,D1,...",
                                fact.shape
                            )))
                        }
                    }
                }
                dims
            }
        };
        log::info!("input '{name}': {dt:?} {dims:?}");
        model
            .set_input_fact(ix, InferenceFact::dt_shape(dt, dims))
            .map_err(load_err)?;
    }
    guard(|| model.into_typed())
        .unwrap_or_else(|message| Err(anyhow::anyhow!(message)))
        .map_err(|e| ConvertError::Graph {
            path: path.into(),
            stage: "type analysis",
            source: e.into(),
        })
}

/// The float graph every conversion starts from: `typed` decluttered, written-out HardSwishes
/// as tract's op ([`crate::hardswish`]) and, when Kestrel's ops are to be placed
/// (`kestrel_ops`), a channels-last input moved to channels first ([`crate::channels_first`]).
pub fn decluttered(typed: TypedModel, kestrel_ops: bool) -> TractResult<TypedModel> {
    let graph = crate::hardswish::recognized(typed.into_decluttered()?)?;
    if kestrel_ops {
        crate::channels_first::moved(graph)
    } else {
        Ok(graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_input_shapes() {
        let s: InputShape = "x=1,3,48,192".parse().unwrap();
        assert_eq!(
            s,
            InputShape {
                name: "x".into(),
                dims: vec![1, 3, 48, 192]
            }
        );
        let s: InputShape = "in:0=1x3x8x8".parse().unwrap();
        assert_eq!(s.name, "in:0");
        assert!("x=1,a".parse::<InputShape>().is_err());
        assert!("x".parse::<InputShape>().is_err());
        assert!("x=1,0".parse::<InputShape>().is_err());
        assert!("=1,2".parse::<InputShape>().is_err());
    }
}
