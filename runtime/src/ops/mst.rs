//! A binary layer's MST (MST-compression, Vo et al., ICCV 2023) in its NNEF form, shared by
//! the binary dense and conv2d ops: the tree and the weights stored as differences.
//!
//! * The tree, `mst_parents`: the parent of each output channel as parent + 1 (0: a root,
//!   computed from scratch). Empty (the default, so graphs written before it existed load
//!   unchanged): no tree, the dense kernel.
//! * The weights, `mst_weights = "xor"`: a layer with a tree writes each child's packed weight
//!   row as `row(child) XOR row(parent)` and each root's row as it is. A child differs from its
//!   parent in few bits, so its stored row is mostly zero words, and the `.nnef.tgz`'s deflate
//!   shrinks it to about what the paper stores (the positions of the differing bits): no
//!   format of our own, and the archive stays a plain NNEF tar. At load the rows are rebuilt
//!   parents first, so the op receives the same full weights as before; nothing changes at run
//!   time. Graphs without the attribute (written before it, or without a tree) load as
//!   `"full"`. What it saves on mnist-bnn is in `docs/binary.md`.

use tract_nnef::internal::*;
use tract_nnef::ser::{array, numeric, string};

/// The NNEF parameter name of the weights' form.
const PARAM: &str = "mst_weights";

/// The optional `mst_parents` parameter (see the module docs).
pub(crate) fn parents_parameter() -> Parameter {
    TypeName::Integer
        .array()
        .named("mst_parents")
        .default(tract_nnef::ast::Literal::Array(vec![]))
}

/// Reads `mst_parents` (see [`parents_parameter`]): `None` when empty.
pub(crate) fn read_parents(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Option<Vec<Option<usize>>>> {
    let parents: TVec<usize> = invocation.named_arg_as(builder, "mst_parents")?;
    Ok((!parents.is_empty()).then(|| parents.iter().map(|p| p.checked_sub(1)).collect()))
}

/// The `mst_parents` attribute of a layer with a tree (none without one).
pub(crate) fn parents_attribute(
    parents: &Option<Vec<Option<usize>>>,
) -> Option<(&'static str, RValue)> {
    parents.as_ref().map(|parents| {
        (
            "mst_parents",
            array(
                parents
                    .iter()
                    .map(|p| numeric(p.map_or(0, |p| p + 1)))
                    .collect::<Vec<_>>(),
            ),
        )
    })
}

/// The optional `mst_weights` parameter: `"full"` (the default) or `"xor"`.
pub(crate) fn weights_parameter() -> Parameter {
    TypeName::String
        .named(PARAM)
        .default(tract_nnef::ast::Literal::String("full".into()))
}

/// The attribute a layer writes: `"xor"` when it has a tree (its weights then go through
/// [`stored_weights`]), none otherwise.
pub(crate) fn weights_attribute(
    parents: &Option<Vec<Option<usize>>>,
) -> Option<(&'static str, RValue)> {
    parents.as_ref().map(|_| (PARAM, string("xor")))
}

/// The weights as written: child rows XOR their parent's row when there is a tree.
pub(crate) fn stored_weights(
    weights: &Arc<Tensor>,
    row_words: usize,
    parents: &Option<Vec<Option<usize>>>,
) -> TractResult<Arc<Tensor>> {
    let Some(parents) = parents else {
        return Ok(weights.clone());
    };
    let mut stored = weights.as_ref().clone();
    {
        let full = weights.try_as_plain_ram()?;
        let full = full.as_slice::<u64>()?;
        let mut view = stored.try_as_plain_ram_mut()?;
        let out = view.as_slice_mut::<u64>()?;
        check_shape(full.len(), row_words, parents.len())?;
        for (c, parent) in parents.iter().enumerate() {
            if let Some(p) = *parent {
                ensure!(
                    p < parents.len(),
                    "MST parent {p} of channel {c} out of range"
                );
                let (row, prow) = (c * row_words, p * row_words);
                for w in 0..row_words {
                    out[row + w] = full[row + w] ^ full[prow + w];
                }
            }
        }
    }
    Ok(stored.into_arc_tensor())
}

/// Reads the `mst_weights` parameter and returns the full weights: `stored` unchanged for
/// `"full"`, rebuilt parents first for `"xor"` (which needs `parents`).
pub(crate) fn full_weights(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
    stored: Arc<Tensor>,
    row_words: usize,
    parents: Option<&[Option<usize>]>,
) -> TractResult<Arc<Tensor>> {
    let mode: String = invocation.named_arg_as(builder, PARAM)?;
    match (mode.as_str(), parents) {
        ("full", _) => Ok(stored),
        ("xor", Some(parents)) => rebuild(&stored, row_words, parents),
        ("xor", None) => bail!("{PARAM} = \"xor\" needs mst_parents"),
        (other, _) => bail!("unknown {PARAM} {other:?} (expected \"full\" or \"xor\")"),
    }
}

fn check_shape(len: usize, row_words: usize, rows: usize) -> TractResult<()> {
    ensure!(
        row_words > 0 && len == row_words * rows,
        "{PARAM}: {len} weight words are not {rows} rows of {row_words}"
    );
    Ok(())
}

/// Undoes [`stored_weights`]: every row XORed with its parent's rebuilt row, parents first.
fn rebuild(
    stored: &Tensor,
    row_words: usize,
    parents: &[Option<usize>],
) -> TractResult<Arc<Tensor>> {
    ensure!(
        stored.datum_type() == u64::datum_type(),
        "{PARAM}: weights must be u64, got {:?}",
        stored.datum_type()
    );
    let mut full = stored.clone();
    {
        let mut view = full.try_as_plain_ram_mut()?;
        let rows = view.as_slice_mut::<u64>()?;
        check_shape(rows.len(), row_words, parents.len())?;
        let n = parents.len();
        let mut done = vec![false; n];
        let mut chain = Vec::new();
        for c in 0..n {
            // Walk up to a rebuilt row (or a root), then rebuild down the chain.
            let mut at = c;
            while !done[at] {
                chain.push(at);
                ensure!(chain.len() <= n, "{PARAM}: MST parents form a cycle at {c}");
                match parents[at] {
                    Some(p) => {
                        ensure!(
                            p < n,
                            "{PARAM}: MST parent {p} of channel {at} out of range"
                        );
                        at = p;
                    }
                    None => break,
                }
            }
            while let Some(row) = chain.pop() {
                if let Some(p) = parents[row] {
                    let (dst, src) = (row * row_words, p * row_words);
                    for w in 0..row_words {
                        rows[dst + w] ^= rows[src + w];
                    }
                }
                done[row] = true;
            }
        }
    }
    Ok(full.into_arc_tensor())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn xor_rows_rebuild_exactly_in_any_tree_order() {
        let mut rng = SmallRng::seed_from_u64(5);
        let (n, words) = (40, 3);
        let data: Vec<u64> = (0..n * words).map(|_| rng.random()).collect();
        let weights = tensor1(&data)
            .into_shape(&[n, words])
            .unwrap()
            .into_arc_tensor();
        // A random forest whose parents come after their children too (channel order is not
        // tree order), several roots.
        let order: Vec<usize> = {
            let mut o: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                o.swap(i, rng.random_range(0..=i));
            }
            o
        };
        let mut parents = vec![None; n];
        for (i, &c) in order.iter().enumerate().skip(1) {
            if rng.random_range(0..5) > 0 {
                parents[c] = Some(order[rng.random_range(0..i)]);
            }
        }
        let parents = Some(parents);
        let stored = stored_weights(&weights, words, &parents).unwrap();
        assert_ne!(stored, weights);
        let rebuilt = rebuild(&stored, words, parents.as_deref().unwrap()).unwrap();
        assert_eq!(rebuilt, weights);
    }

    #[test]
    fn cycles_and_bad_parents_are_errors() {
        let weights = tensor1(&[1u64, 2, 3]).into_arc_tensor();
        let cycle = [Some(1), Some(2), Some(0)];
        assert!(rebuild(&weights, 1, &cycle)
            .unwrap_err()
            .to_string()
            .contains("cycle"));
        let out_of_range = [None, Some(7), None];
        assert!(rebuild(&weights, 1, &out_of_range)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(rebuild(&weights, 2, &[None, None]).is_err());
    }
}
