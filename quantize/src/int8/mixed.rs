//! Mixed precision: which layers stay in float, and which read 16-bit inputs.
//!
//! Two steps back from an all-int8 graph, tried in this order: a layer reads its input
//! quantized to 16 bits (its weights stay int8, twice the 8-bit multiplies; it fixes
//! inputs with long tails, where one 8-bit step over the whole range crushes the rest), then
//! a layer stays float. Both search the same way.
//!
//! Both blame a layer only for what its own quantization does, so a good layer after a bad
//! one is not stepped back. The 16-bit step ranks layers by their *isolated* SQNR (each layer
//! quantized alone with 8-bit inputs, its own output measured, see [`Evaluator::isolated`]):
//! what a 16-bit input fixes shows in the layer's own output. The float step ranks them by
//! their *sensitivity* (each layer alone at the precision the plan gives it, the end-to-end
//! SQNR measured, see [`Evaluator::sensitivity`]): after 16-bit inputs, what is left may only
//! show downstream, behind a sigmoid. `--keep-float auto:DB` keeps every layer whose isolated
//! SQNR is below DB; the default and `--keep-float auto` keep the fewest worst-ranked layers
//! with which the end-to-end SQNR reaches the floor plus a margin (a binary search over the
//! ranking's prefix length, measured on calibration samples; the report then measures on
//! held-out samples).

use std::collections::{HashMap, HashSet};

use tract_onnx::prelude::*;

use super::evaluate::Evaluator;
use super::layers::Layer;

/// Which layers run how: `float` stay float, `wide` (quantized layers) read a 16-bit input,
/// the others are int8.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Precision {
    /// Layers left in float.
    pub float: HashSet<String>,
    /// Quantized layers whose input is 16-bit.
    pub wide: HashSet<String>,
}

impl Precision {
    /// These layers float, none wide.
    pub fn float(float: HashSet<String>) -> Precision {
        Precision {
            float,
            wide: HashSet::new(),
        }
    }
}

/// What a search step does to the layers it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Their inputs become 16-bit.
    Widen,
    /// They stay float.
    Float,
}

impl Step {
    /// `plan` with `names` moved one step back.
    pub fn apply(self, plan: &Precision, names: &[String]) -> Precision {
        let mut p = plan.clone();
        match self {
            Step::Widen => p.wide.extend(names.iter().cloned()),
            Step::Float => {
                p.float.extend(names.iter().cloned());
                p.wide.retain(|n| !names.contains(n));
            }
        }
        p
    }
}

/// End-to-end SQNR above the floor that `auto` aims at on the calibration samples, so that the
/// held-out samples pass too.
pub const MARGIN_DB: f64 = 1.0;

/// Quantized layers (not in `keep`) by isolated SQNR, worst first.
pub fn ranking(layers: &[Layer], isolated: &[(f64, f64)], keep: &HashSet<String>) -> Vec<String> {
    rank(
        layers
            .iter()
            .map(|l| l.name.as_str())
            .zip(isolated.iter().map(|i| i.0)),
        keep,
    )
}

/// Layers by end-to-end SQNR with each quantized alone ([`Evaluator::sensitivity`]),
/// worst first: the order the float step takes them back in.
pub fn ranking_by_sensitivity(
    sensitivity: &[(String, f64)],
    keep: &HashSet<String>,
) -> Vec<String> {
    rank(sensitivity.iter().map(|(n, s)| (n.as_str(), *s)), keep)
}

/// Names not in `keep`, by SQNR ascending.
fn rank<'a>(named: impl Iterator<Item = (&'a str, f64)>, keep: &HashSet<String>) -> Vec<String> {
    let mut ranked: Vec<(&str, f64)> = named.filter(|(n, _)| !keep.contains(*n)).collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    ranked.into_iter().map(|(n, _)| n.to_string()).collect()
}

/// The layers below `db` isolated SQNR.
pub fn below(layers: &[Layer], isolated: &[(f64, f64)], db: f64) -> Vec<String> {
    layers
        .iter()
        .zip(isolated)
        .filter(|(_, (sqnr, _))| *sqnr < db)
        .map(|(l, _)| l.name.clone())
        .collect()
}

/// The shortest prefix of `ranked` that, moved one `step` back from `plan`, brings the
/// end-to-end SQNR on the evaluator's samples to `target_db` and, with `agreement`, the
/// model's agreement measure to its target ([`super::evaluate::Evaluation::meets`]; all of
/// `ranked` if none does).
/// Assumes a longer prefix never hurts, so a binary search over the prefix length.
pub fn fewest_to_reach(
    eval: &Evaluator,
    plan: &Precision,
    (ranked, step): (&[String], Step),
    shift: &HashMap<String, Vec<f32>>,
    (target_db, agreement): (f64, bool),
) -> TractResult<Vec<String>> {
    let passes = |k: usize| -> TractResult<bool> {
        let e = eval.evaluate(&step.apply(plan, &ranked[..k]), shift, false)?;
        log::info!(
            "{}: {k} more layers -> {:.1} dB, {}",
            match step {
                Step::Widen => "16-bit inputs",
                Step::Float => "keep-float auto",
            },
            e.worst_sqnr(),
            e.agreement_text()
        );
        Ok(if agreement {
            e.meets(target_db)
        } else {
            e.worst_sqnr() >= target_db
        })
    };
    let (mut lo, mut hi) = (0usize, ranked.len());
    if passes(lo)? {
        return Ok(vec![]);
    }
    // passes(lo) is false; find the smallest hi with passes(hi).
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if passes(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(ranked[..hi].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_float_step_takes_layers_out_of_wide() {
        let plan = Step::Widen.apply(&Precision::default(), &["a".into(), "b".into()]);
        assert_eq!(plan.wide.len(), 2);
        let plan = Step::Float.apply(&plan, &["a".into()]);
        assert!(plan.float.contains("a") && !plan.wide.contains("a") && plan.wide.contains("b"));
    }

    #[test]
    fn ranks_worst_first_and_skips_kept_layers() {
        let named = [("a", 30.0), ("b", 10.0), ("c", f64::INFINITY), ("d", 20.0)];
        let keep: HashSet<String> = ["d".to_string()].into();
        assert_eq!(rank(named.into_iter(), &keep), vec!["b", "a", "c"]);
    }
}
