//! The fused output stage of binary conv and dense layers, per output channel `c`:
//!
//! - **float**: `y = mul[c]·dot + bias[c]`, evaluated in f32 as `(mul[c] * dot as f32) +
//!   bias[c]` (two roundings, never a fused multiply-add — the float reference does the same);
//!   it folds batch-norm and the ±α weight scale.
//! - **packed**: the bit of `y` in the packed layout, `bit = !(y ≥ 0)`: set for −1. It is
//!   computed as an integer threshold on `dot`, derived at load by evaluating exactly that f32
//!   expression, so it is bit-exact with the float path, ties at 0 included (`y = 0` binarises
//!   to +1). `y` is monotone in `dot` for finite `mul` and `bias` (f32 rounding is monotone):
//!   for `mul > 0` the bit is `dot < t`, for `mul < 0` it is `dot > t`, for `mul = 0` it is a
//!   constant. Non-finite `mul` or `bias` is refused at load.

use tract_nnef::ast::Parameter;
use tract_nnef::internal::*;

/// What a binary layer outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// f32 values `mul·dot + bias`.
    Float,
    /// Packed bits of `mul·dot + bias` (the input of the next binary layer).
    Packed,
}

impl OutputKind {
    /// The NNEF spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Float => "float",
            OutputKind::Packed => "packed",
        }
    }

    /// Parses the NNEF spelling.
    pub fn parse(s: &str) -> TractResult<OutputKind> {
        match s {
            "float" => Ok(OutputKind::Float),
            "packed" => Ok(OutputKind::Packed),
            _ => bail!("unknown output kind '{s}' (expected \"float\" or \"packed\")"),
        }
    }
}

/// The bit of one channel as a function of its dot product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Threshold {
    /// The bit is this constant.
    Const(bool),
    /// The bit is set when `dot < t`.
    Below(i32),
    /// The bit is set when `dot > t`.
    Above(i32),
}

impl Threshold {
    /// The packed bit for `dot`.
    #[inline]
    pub fn bit(self, dot: i32) -> bool {
        match self {
            Threshold::Const(b) => b,
            Threshold::Below(t) => dot < t,
            Threshold::Above(t) => dot > t,
        }
    }
}

impl Threshold {
    /// The same bit as `(dot < t) XOR flip` (flip 0 or 1), the one form vector kernels
    /// evaluate, valid for every `dot` the layer can produce (|dot| < 2³¹ − 1).
    pub fn less_than(self) -> (i32, u32) {
        match self {
            Threshold::Const(true) => (i32::MAX, 0),
            Threshold::Const(false) => (i32::MIN, 0),
            Threshold::Below(t) => (t, 0),
            // dot > t ⇔ !(dot < t + 1).
            Threshold::Above(t) => (t.saturating_add(1), 1),
        }
    }
}

/// `mul·dot + bias` in f32, exactly as the float reference computes it.
#[inline]
pub fn affine(mul: f32, bias: f32, dot: i32) -> f32 {
    let scaled = mul * dot as f32;
    scaled + bias
}

/// The threshold equal to `!(affine(mul, bias, dot) >= 0)` for every `dot` in `[-k, k]`.
pub fn threshold(mul: f32, bias: f32, k: i32) -> TractResult<Threshold> {
    ensure!(
        mul.is_finite() && bias.is_finite(),
        "non-finite mul {mul} or bias {bias}"
    );
    let positive = |d: i32| affine(mul, bias, d) >= 0.0;
    if mul == 0.0 {
        return Ok(Threshold::Const(!positive(0)));
    }
    if mul > 0.0 {
        // Smallest d in [-k, k+1] with positive(d) (k+1: none).
        let (mut lo, mut hi) = (-k, k + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if positive(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(Threshold::Below(lo))
    } else {
        // Largest d in [-k-1, k] with positive(d) (-k-1: none).
        let (mut lo, mut hi) = (-k - 1, k);
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2;
            if positive(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(Threshold::Above(lo))
    }
}

/// Per-channel parameters of the output stage.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputStage {
    /// Float or packed output.
    pub kind: OutputKind,
    /// Per-channel multiplier (f32, one per output channel).
    pub mul: Arc<Tensor>,
    /// Per-channel bias (f32, one per output channel).
    pub bias: Arc<Tensor>,
    /// Per-channel thresholds (packed output only; derived from mul and bias).
    pub thresholds: Vec<Threshold>,
}

impl Eq for OutputStage {}

impl OutputStage {
    /// Builds and checks the stage for `channels` outputs whose dot products lie in `[-k, k]`.
    pub fn new(
        kind: OutputKind,
        mul: Arc<Tensor>,
        bias: Arc<Tensor>,
        channels: usize,
        k: usize,
    ) -> TractResult<OutputStage> {
        for (name, t) in [("mul", &mul), ("bias", &bias)] {
            ensure!(
                t.datum_type() == f32::datum_type() && t.len() == channels,
                "{name} must be {channels} f32 values (one per output channel), got {:?} {:?}",
                t.datum_type(),
                t.shape()
            );
        }
        let k = i32::try_from(k).context("dot product range overflows i32")?;
        let thresholds = if kind == OutputKind::Packed {
            let m = mul.try_as_plain_ram()?;
            let b = bias.try_as_plain_ram()?;
            m.as_slice::<f32>()?
                .iter()
                .zip(b.as_slice::<f32>()?)
                .enumerate()
                .map(|(c, (&m, &b))| threshold(m, b, k).with_context(|| format!("channel {c}")))
                .collect::<TractResult<_>>()?
        } else {
            vec![]
        };
        Ok(OutputStage {
            kind,
            mul,
            bias,
            thresholds,
        })
    }

    /// Per-channel multipliers.
    pub fn mul_slice(&self) -> &[f32] {
        self.mul
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .expect("checked f32")
    }

    /// Per-channel biases.
    pub fn bias_slice(&self) -> &[f32] {
        self.bias
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .expect("checked f32")
    }
}

/// NNEF parameters of a weighted binary layer (conv, dense): `input`, `weights`, `mul`, `bias`,
/// then the layer's own `extra` ones, then `output` ("float" or "packed").
pub(crate) fn layer_parameters(extra: &[Parameter]) -> Vec<Parameter> {
    let mut params = vec![
        TypeName::Integer.tensor().named("input"),
        TypeName::Integer.tensor().named("weights"),
        TypeName::Scalar.tensor().named("mul"),
        TypeName::Scalar.tensor().named("bias"),
    ];
    params.extend_from_slice(extra);
    params.push(TypeName::String.named("output"));
    params
}

/// What every weighted binary layer reads from its NNEF invocation.
pub(crate) struct LayerArgs {
    pub input: OutletId,
    pub weights: Arc<Tensor>,
    pub mul: Arc<Tensor>,
    pub bias: Arc<Tensor>,
    pub kind: OutputKind,
}

/// Reads the parameters of [`layer_parameters`] (not the extra ones).
pub(crate) fn load_layer(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<LayerArgs> {
    Ok(LayerArgs {
        input: invocation.named_arg_as(builder, "input")?,
        weights: invocation.named_arg_as(builder, "weights")?,
        mul: invocation.named_arg_as(builder, "mul")?,
        bias: invocation.named_arg_as(builder, "bias")?,
        kind: OutputKind::parse(&invocation.named_arg_as::<String>(builder, "output")?)?,
    })
}

/// Writes a weighted binary layer's invocation: its input, weights and stage tensors (as
/// variables named after the node), its `extra` attributes and `output`.
pub(crate) fn dump_layer(
    ast: &mut IntoAst,
    node: &TypedNode,
    name: &str,
    weights: &Arc<Tensor>,
    stage: &OutputStage,
    extra: Vec<(&'static str, RValue)>,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    let weights = ast.konst_variable(format!("{}_weights", node.name), weights)?;
    let mul = ast.konst_variable(format!("{}_mul", node.name), &stage.mul)?;
    let bias = ast.konst_variable(format!("{}_bias", node.name), &stage.bias)?;
    let mut attributes = extra;
    attributes.push(("output", tract_nnef::ser::string(stage.kind.as_str())));
    Ok(Some(tract_nnef::ser::invocation(
        name,
        &[input, weights, mul, bias],
        &attributes,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::packing::is_minus_one;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    fn check(mul: f32, bias: f32, k: i32) {
        let t = threshold(mul, bias, k).unwrap();
        for d in -k..=k {
            assert_eq!(
                t.bit(d),
                is_minus_one(affine(mul, bias, d)),
                "mul {mul} bias {bias} dot {d}"
            );
        }
    }

    #[test]
    fn thresholds_match_the_float_expression_exactly() {
        // Ties at zero, negative and zero multipliers, thresholds outside the range.
        for (m, b) in [
            (1.0, 0.0),
            (1.0, -3.0),
            (-1.0, 3.0),
            (-1.0, 0.0),
            (0.0, 0.0),
            (0.0, -1.0),
            (0.5, 1.25),
            (2.0, 1e6),
            (-2.0, 1e6),
            (3.0, -1e6),
            (1e-30, 0.0),
            (-1e-30, -0.0),
        ] {
            check(m, b, 20);
        }
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..2000 {
            let m: f32 = rng.random_range(-4.0f32..4.0);
            // Biases on exact multiples of m make ties likely.
            let b: f32 = if rng.random() {
                m * rng.random_range(-30i32..30) as f32
            } else {
                rng.random_range(-50.0f32..50.0)
            };
            check(m, b, 64);
        }
    }

    #[test]
    fn less_than_form_equals_the_threshold() {
        for t in [
            Threshold::Const(true),
            Threshold::Const(false),
            Threshold::Below(-3),
            Threshold::Below(0),
            Threshold::Above(-1),
            Threshold::Above(7),
        ] {
            let (lt, flip) = t.less_than();
            for dot in -40..40 {
                assert_eq!(t.bit(dot), (dot < lt) ^ (flip != 0), "{t:?} {dot}");
            }
        }
    }

    #[test]
    fn non_finite_parameters_are_refused() {
        assert!(threshold(f32::NAN, 0.0, 4).is_err());
        assert!(threshold(1.0, f32::INFINITY, 4).is_err());
    }

    #[test]
    fn stage_checks_lengths() {
        let mul = Arc::new(tensor1(&[1f32, 2.]));
        let bias = Arc::new(tensor1(&[0f32]));
        let err = OutputStage::new(OutputKind::Float, mul, bias, 2, 9).unwrap_err();
        assert!(format!("{err:#}").contains("bias must be 2 f32"), "{err:#}");
    }
}
