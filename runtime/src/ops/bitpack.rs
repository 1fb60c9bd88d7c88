//! `kestrel_bitpack`: float (or int8) tensor → packed bits, where a graph enters the binary
//! domain. `[N, C, H, W]` becomes `[N, H, W, ⌈C/64⌉]` u64 (channels packed, see
//! [`super::packing`]); `[N, K]` becomes `[N, ⌈K/64⌉]`. Bit = 1 for x < 0 (and NaN). The
//! packing runs on the kernels of [`crate::kernels::bitpack`].

use tract_nnef::internal::*;
use tract_nnef::ser::invocation;

use super::packing::words_for;
use crate::kernels;

/// The bitpack operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Bitpack;

/// NNEF name.
pub const NAME: &str = "kestrel_bitpack";

pub(crate) fn register(registry: &mut Registry) {
    registry.register_primitive(
        NAME,
        &[TypeName::Scalar.tensor().named("input")],
        &[("output", TypeName::Integer.tensor())],
        load,
    );
    registry.register_dumper(dump);
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    builder.wire(Bitpack, &[input])
}

fn dump(ast: &mut IntoAst, node: &TypedNode, _op: &Bitpack) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    Ok(Some(invocation(NAME, &[input], &[])))
}

impl Op for Bitpack {
    fn name(&self) -> StaticName {
        "KestrelBitpack".into()
    }
    op_as_typed_op!();
}

impl EvalOp for Bitpack {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = input.cast_to::<f32>()?;
        let view = x.try_as_plain_ram()?;
        let x = view.as_slice::<f32>()?;
        let kernel = kernels::bitpack::select();
        let shape = input.shape();
        let out = match *shape {
            [n, k] => {
                let kw = words_for(k);
                // SAFETY: u64 has no invalid bit patterns, and `pack_row` writes every word.
                let mut out = unsafe { Tensor::uninitialized::<u64>(&[n, kw])? };
                if kw > 0 {
                    let mut view = out.try_as_plain_ram_mut()?;
                    let words = view.as_slice_mut::<u64>()?;
                    for (row, packed) in x.chunks_exact(k).zip(words.chunks_exact_mut(kw)) {
                        kernel.pack_row(row, packed);
                    }
                }
                out
            }
            [n, c, h, w] => {
                let cw = words_for(c);
                let (image, packed) = (c * h * w, h * w * cw);
                // SAFETY: as above; `pack_planes` writes every word of each image.
                let mut out = unsafe { Tensor::uninitialized::<u64>(&[n, h, w, cw])? };
                if packed > 0 {
                    let mut view = out.try_as_plain_ram_mut()?;
                    let words = view.as_slice_mut::<u64>()?;
                    for (src, dst) in x.chunks_exact(image).zip(words.chunks_exact_mut(packed)) {
                        kernel.pack_planes(src, c, dst);
                    }
                }
                out
            }
            _ => bail!(
                "{NAME}: input must be rank 2 [N, K] or rank 4 [N, C, H, W], got rank {}",
                shape.len()
            ),
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for Bitpack {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let f = inputs[0];
        ensure!(
            matches!(
                f.datum_type,
                DatumType::F32 | DatumType::F16 | DatumType::I8
            ),
            "{NAME}: input must be f32, f16 or i8, got {:?}",
            f.datum_type
        );
        let s = &f.shape;
        let dims: TVec<TDim> = match s.rank() {
            2 => tvec![s[0].clone(), words_for(s[1].to_usize()?).into()],
            4 => tvec![
                s[0].clone(),
                s[2].clone(),
                s[3].clone(),
                words_for(s[1].to_usize()?).into()
            ],
            r => bail!("{NAME}: input must be rank 2 [N, K] or rank 4 [N, C, H, W], got rank {r}"),
        };
        Ok(tvec!(u64::fact(dims)))
    }
    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_nchw_channels_into_pixel_words() {
        // N=1, C=2, H=1, W=2: channel 0 = [1, -1], channel 1 = [-1, 0]
        let x = Tensor::from_shape(&[1, 2, 1, 2], &[1f32, -1., -1., 0.]).unwrap();
        let out = Bitpack
            .eval_out_of_plan(tvec!(x.into_tvalue()))
            .unwrap()
            .unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 2, 1]);
        let v = out[0].try_as_plain_ram().unwrap();
        assert_eq!(v.as_slice::<u64>().unwrap(), &[0b10, 0b01]);
    }

    #[test]
    fn packs_rows_past_one_word() {
        let vals: Vec<f32> = (0..130)
            .map(|i| if i % 2 == 0 { -1.0 } else { 1.0 })
            .collect();
        let x = Tensor::from_shape(&[1, 130], &vals).unwrap();
        let out = Bitpack
            .eval_out_of_plan(tvec!(x.into_tvalue()))
            .unwrap()
            .unwrap();
        assert_eq!(out[0].shape(), &[1, 3]);
        let v = out[0].try_as_plain_ram().unwrap();
        let w = v.as_slice::<u64>().unwrap();
        assert_eq!(w[0], 0x5555_5555_5555_5555);
        assert_eq!(w[2], 0b01, "bit 128 set, 129 clear, padding clear");
    }

    #[test]
    fn int8_input_uses_the_same_sign_rule() {
        let x = Tensor::from_shape(&[1, 3], &[-1i8, 0, 5]).unwrap();
        let out = Bitpack
            .eval_out_of_plan(tvec!(x.into_tvalue()))
            .unwrap()
            .unwrap();
        let v = out[0].try_as_plain_ram().unwrap();
        assert_eq!(v.as_slice::<u64>().unwrap(), &[0b001]);
    }
}
